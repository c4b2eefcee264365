//! Encodes a small RGB image to JPEG or PNG with the linked FFmpeg's own mjpeg/png encoders, so
//! cover tests need no committed image files.
//!
//! No swscale: PNG takes RGB24 as is, and the RGB → full-range YUV 4:2:0 conversion JPEG needs
//! is a few lines of BT.601 arithmetic done here.
use crate::error::{Error, Result};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::{codec, format, frame, Packet};

/// An image file format FFmpeg can write and an ID3 APIC frame can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    /// The MIME type an APIC frame or an MP4 `covr` atom names it by.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
        }
    }
}

/// Encodes `rgb` (`width × height` pixels, 3 bytes each, rows top to bottom) as one image file.
pub fn encode_rgb24(format: ImageFormat, width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>> {
    crate::init();
    if width == 0 || height == 0 || rgb.len() != width as usize * height as usize * 3 {
        return Err(Error::Options(format!(
            "{} bytes are not a {width}×{height} RGB24 image",
            rgb.len()
        )));
    }
    let av = |what: &'static str| move |e: ffmpeg::Error| Error::av(None, what, e);
    let (codec_id, pixel) = match format {
        // yuvj420p is the full-range format the mjpeg encoder accepts without lowering
        // its standard compliance.
        ImageFormat::Jpeg => (codec::Id::MJPEG, format::Pixel::YUVJ420P),
        ImageFormat::Png => (codec::Id::PNG, format::Pixel::RGB24),
    };
    let image_codec = codec::encoder::find(codec_id)
        .ok_or(ffmpeg::Error::EncoderNotFound)
        .map_err(av("find an image encoder"))?;
    let mut enc = codec::Context::new_with_codec(image_codec)
        .encoder()
        .video()
        .map_err(av("set up the image encoder"))?;
    enc.set_width(width);
    enc.set_height(height);
    enc.set_format(pixel);
    // Video encoders refuse to open without a time base, even for a single picture.
    enc.set_time_base((1, 25));
    let mut encoder = enc
        .open_as(image_codec)
        .map_err(av("open the image encoder"))?;

    let mut picture = frame::Video::new(pixel, width, height);
    match format {
        ImageFormat::Png => fill_rgb24(&mut picture, width, height, rgb),
        ImageFormat::Jpeg => fill_yuv420_full_range(&mut picture, width, height, rgb),
    }
    picture.set_pts(Some(0));
    encoder
        .send_frame(&picture)
        .map_err(av("encode the image"))?;
    encoder.send_eof().map_err(av("flush the image encoder"))?;
    let mut packet = Packet::empty();
    encoder
        .receive_packet(&mut packet)
        .map_err(av("receive the encoded image"))?;
    packet
        .data()
        .map(<[u8]>::to_vec)
        .ok_or(ffmpeg::Error::InvalidData)
        .map_err(av("receive the encoded image"))
}

fn fill_rgb24(picture: &mut frame::Video, width: u32, height: u32, rgb: &[u8]) {
    let stride = picture.stride(0);
    let row_bytes = width as usize * 3;
    let plane = picture.data_mut(0);
    for (y, row) in rgb
        .chunks_exact(row_bytes)
        .take(height as usize)
        .enumerate()
    {
        plane[y * stride..y * stride + row_bytes].copy_from_slice(row);
    }
}

/// Full-range BT.601 (JFIF) conversion; chroma is the mean of each 2×2 block.
fn fill_yuv420_full_range(picture: &mut frame::Video, width: u32, height: u32, rgb: &[u8]) {
    let (w, h) = (width as usize, height as usize);
    let px = |x: usize, y: usize| {
        let i = (y.min(h - 1) * w + x.min(w - 1)) * 3;
        (
            f32::from(rgb[i]),
            f32::from(rgb[i + 1]),
            f32::from(rgb[i + 2]),
        )
    };
    let to_u8 = |v: f32| v.round().clamp(0.0, 255.0) as u8;

    let stride = picture.stride(0);
    let luma = picture.data_mut(0);
    for y in 0..h {
        for x in 0..w {
            let (r, g, b) = px(x, y);
            luma[y * stride + x] = to_u8(0.299 * r + 0.587 * g + 0.114 * b);
        }
    }
    for (plane, weights) in [
        (1, [-0.168_736, -0.331_264, 0.5]),
        (2, [0.5, -0.418_688, -0.081_312]),
    ] {
        let stride = picture.stride(plane);
        let chroma = picture.data_mut(plane);
        for cy in 0..h.div_ceil(2) {
            for cx in 0..w.div_ceil(2) {
                let mut sum = 0.0;
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let (r, g, b) = px(2 * cx + dx, 2 * cy + dy);
                    sum += weights[0] * r + weights[1] * g + weights[2] * b;
                }
                chroma[cy * stride + cx] = to_u8(128.0 + sum / 4.0);
            }
        }
    }
}
