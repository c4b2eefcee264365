//! Cover pictures from bytes: the type and size of a JPEG or PNG, sniffed from its header
//! without decoding. No FFmpeg here; it lives in `av` because the demuxer's attached pictures
//! ([`super::input`]) need it, and so do the planner and the converter above (through
//! `crate::probe`, which re-exports it).
use crate::model::Picture;

/// Picture helper for callers that read cover files: decodes nothing, only sniffs the type and
/// size from the header bytes.
pub fn picture_from_bytes(data: Vec<u8>) -> Option<Picture> {
    let (mime, w, h) = image_facts(&data)?;
    Some(Picture {
        mime: mime.to_string(),
        data,
        width: w,
        height: h,
    })
}

/// (mime, width, height) of a JPEG or PNG from its header.
pub fn image_facts(data: &[u8]) -> Option<(&'static str, Option<u32>, Option<u32>)> {
    if data.len() > 24 && data.starts_with(b"\x89PNG\r\n\x1a\n") {
        let w = u32::from_be_bytes(data[16..20].try_into().ok()?);
        let h = u32::from_be_bytes(data[20..24].try_into().ok()?);
        return Some(("image/png", Some(w), Some(h)));
    }
    if data.len() > 4 && data[0] == 0xFF && data[1] == 0xD8 {
        // Walk the JPEG segments to the first start-of-frame marker for the size.
        let mut i = 2;
        while i + 9 < data.len() {
            if data[i] != 0xFF {
                i += 1;
                continue;
            }
            let marker = data[i + 1];
            if marker == 0xFF {
                i += 1;
                continue;
            }
            let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
            if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
                let h = u16::from_be_bytes([data[i + 5], data[i + 6]]) as u32;
                let w = u16::from_be_bytes([data[i + 7], data[i + 8]]) as u32;
                return Some(("image/jpeg", Some(w), Some(h)));
            }
            i += 2 + len;
        }
        return Some(("image/jpeg", None, None));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&[8, 2, 0, 0, 0]);
        b
    }

    /// SOI, an APP0 segment of `app_len` bytes, then a SOF0 for `width × height`.
    fn jpeg_header(app_len: u16, width: u16, height: u16) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
        b.extend_from_slice(&app_len.to_be_bytes());
        b.resize(b.len() + usize::from(app_len) - 2, 0);
        b.extend_from_slice(&[0xFF, 0xC0, 0, 17, 8]);
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        b
    }

    #[test]
    fn png_size_comes_from_ihdr() {
        assert_eq!(
            image_facts(&png_header(640, 480)),
            Some(("image/png", Some(640), Some(480)))
        );
    }

    #[test]
    fn jpeg_size_comes_from_the_first_start_of_frame_after_other_segments() {
        assert_eq!(
            image_facts(&jpeg_header(16, 600, 400)),
            Some(("image/jpeg", Some(600), Some(400)))
        );
    }

    #[test]
    fn a_jpeg_without_a_start_of_frame_has_no_size() {
        let mut b = jpeg_header(16, 1, 1);
        b.truncate(20);
        assert_eq!(image_facts(&b), Some(("image/jpeg", None, None)));
    }

    #[test]
    fn other_bytes_are_no_picture() {
        assert_eq!(image_facts(b"GIF89a\x01\0\x01\0\0\0\0"), None);
        assert_eq!(image_facts(&png_header(1, 1)[..20]), None);
        assert_eq!(picture_from_bytes(b"not an image".to_vec()), None);
        let picture = picture_from_bytes(png_header(2, 3)).unwrap();
        assert_eq!(
            (picture.mime.as_str(), picture.width, picture.height),
            ("image/png", Some(2), Some(3))
        );
    }
}
