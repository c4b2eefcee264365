//! Writing the M4B. Two writers behind one interface ([`M4bMuxer`]):
//!
//! - **aiom4b's own** ([`super::mp4write`], the default): one pass, the `moov` filled into
//!   space reserved at the front, memory flat in book length.
//! - **libavformat's** `ipod` muxer (the reference the tests compare against; chosen with the
//!   environment variable `AIOM4B_MUXER=libavformat`): the `M4B ` brand and `+faststart`, one
//!   AAC track, an optional cover as an attached picture (FFmpeg turns it into `covr`), metadata
//!   items, and chapters (FFmpeg writes them both as a QuickTime chapter track and as a Nero
//!   `chpl` atom). It keeps ~64 bytes per AAC frame until the trailer and rewrites the whole
//!   file once more to move the index to the front.
//!
//! Chapters are added after the audio, just before the trailer: movenc builds the chapter track
//! in `write_trailer` when chapters appeared after the header, which lets chapter starts come
//! from the decoded sample clock instead of from container durations.
//!
//! Write errors (e.g. a full disk) are surfaced: FFmpeg records I/O errors in the AVIOContext
//! and `avio_close` reports a failed final flush; both are checked, so a truncated file is never
//! mistaken for a finished one.
use super::aac::{EncodedPacket, StreamParams};
use super::mp4write::Mp4Writer;
use crate::error::{Error, Result};
use crate::model::Picture;
use ff::ffi;
use ffmpeg_next as ff;
use std::path::{Path, PathBuf};

/// The environment variable that selects libavformat's muxer (`libavformat`) instead of
/// aiom4b's own writer: the reference for tests and a fallback should a player mind the new
/// files.
pub const MUXER_ENV: &str = "AIOM4B_MUXER";

/// Which writer [`M4bMuxer::create`] uses (from [`MUXER_ENV`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxerKind {
    /// aiom4b's own one-pass writer (default).
    Native,
    /// libavformat's `ipod` muxer with `+faststart`.
    Libavformat,
}

impl MuxerKind {
    /// The writer [`MUXER_ENV`] asks for (`libavformat`/`lavf`/`ffmpeg`; anything else: native).
    pub fn from_env() -> MuxerKind {
        match std::env::var(MUXER_ENV).map(|v| v.to_ascii_lowercase()) {
            Ok(v) if matches!(v.as_str(), "libavformat" | "lavf" | "ffmpeg") => {
                MuxerKind::Libavformat
            }
            _ => MuxerKind::Native,
        }
    }
}

/// An open M4B being written.
pub struct M4bMuxer {
    inner: Inner,
    /// The file and the packets written so far: the key of the tests' tamper hook.
    #[cfg(feature = "internals")]
    tamper: (PathBuf, u64),
}

enum Inner {
    Native(Box<Mp4Writer>),
    Lavf(LavfMuxer),
}

/// The file type the header declares (`ftyp` major brand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brand {
    /// `M4B `: an audiobook (`.m4b`).
    M4b,
    /// `M4A `: audio (`.m4a`).
    M4a,
}

/// What either writer is created for: the file, the stream, its tags and cover, the brand.
#[derive(Clone, Copy)]
pub(crate) struct MuxTarget<'a> {
    pub path: &'a Path,
    pub params: &'a StreamParams,
    pub metadata: &'a [(String, String)],
    pub cover: Option<&'a Picture>,
    pub brand: Brand,
}

/// A chapter for the muxer: title and [start, end) in output samples.
#[derive(Debug, Clone)]
pub struct MuxChapter {
    pub title: String,
    pub start: i64,
    pub end: i64,
}

impl M4bMuxer {
    /// Creates `path` (normally a `.part` file) and writes the header, with the writer
    /// [`MUXER_ENV`] chooses. `params` describe the encoder's stream (rate, channels, AudioSpecificConfig, priming).
    #[allow(dead_code)] // the integration tests' entry point
    pub fn create(
        path: &Path,
        params: &StreamParams,
        metadata: &[(String, String)],
        cover: Option<&Picture>,
    ) -> Result<Self> {
        Self::create_with(
            MuxerKind::from_env(),
            path,
            params,
            metadata,
            cover,
            Brand::M4b,
        )
    }

    /// [`M4bMuxer::create`] with the writer chosen by the caller and the major brand `brand`
    /// (`M4A ` for a single chapter saved as an `.m4a`).
    pub fn create_with(
        kind: MuxerKind,
        path: &Path,
        params: &StreamParams,
        metadata: &[(String, String)],
        cover: Option<&Picture>,
        brand: Brand,
    ) -> Result<Self> {
        let target = MuxTarget {
            path,
            params,
            metadata,
            cover,
            brand,
        };
        let inner = match kind {
            MuxerKind::Native => Inner::Native(Box::new(Mp4Writer::create(target)?)),
            MuxerKind::Libavformat => Inner::Lavf(LavfMuxer::create(target)?),
        };
        Ok(M4bMuxer {
            inner,
            #[cfg(feature = "internals")]
            tamper: (path.to_path_buf(), 0),
        })
    }

    /// Tells the writer how long the book will be — `samples` output samples, `frame_samples`
    /// per packet, `priming` before the first — so the index's space can be reserved at the
    /// front. Before the first [`M4bMuxer::write`]; an estimate is fine (a longer book still
    /// makes a correct file, with the index at the end).
    pub fn expect_samples(mut self, samples: u64, params: &StreamParams) -> Self {
        if let Inner::Native(w) = &mut self.inner {
            w.expect_samples(
                samples,
                params.frame_samples as u64,
                params.priming_samples.max(0) as u64,
            );
        }
        self
    }

    /// Tells the writer the chapters' titles in advance (e.g. when splitting a book), so the
    /// index's space is reserved to the byte instead of with room for many chapters. Before
    /// the first [`M4bMuxer::write`]; `finish` may still get other chapters.
    pub fn expect_chapters(mut self, titles: &[&str]) -> Self {
        if let Inner::Native(w) = &mut self.inner {
            w.expect_chapters(titles);
        }
        self
    }

    /// Writes one AAC packet; timestamps are in output samples.
    pub fn write(&mut self, p: &EncodedPacket) -> Result<()> {
        #[cfg(feature = "internals")]
        let tampered = {
            let (path, n) = &mut self.tamper;
            *n += 1;
            crate::pipeline::tamper::apply(path, *n - 1, p)
        };
        #[cfg(feature = "internals")]
        let p = tampered.as_ref().unwrap_or(p);
        match &mut self.inner {
            Inner::Native(w) => w.write(p),
            Inner::Lavf(m) => m.write(p),
        }
    }

    /// Adds the chapters, writes the index and closes the file, reporting any write error on
    /// the way.
    pub fn finish(self, chapters: &[MuxChapter]) -> Result<()> {
        match self.inner {
            Inner::Native(w) => w.finish(chapters),
            Inner::Lavf(m) => m.finish(chapters),
        }
    }
}

/// The metadata entries that carry narrator and series to aiom4b's own writer (libavformat
/// ignores these keys; for it the caller patches the items in with `mp4tags`).
pub fn narrator_series_metadata(
    narrator: Option<&str>,
    series: Option<&str>,
    series_part: Option<&str>,
) -> Vec<(String, String)> {
    use super::mp4write::{NARRATOR_KEY, SERIES_KEY, SERIES_PART_KEY};
    [
        (NARRATOR_KEY, narrator),
        (SERIES_KEY, series),
        (SERIES_PART_KEY, series_part),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
    .collect()
}

/// libavformat's `ipod` muxer.
struct LavfMuxer {
    out: ff::format::context::Output,
    path: PathBuf,
    audio_index: usize,
    audio_tb: ff::Rational,
    rate: i32,
    last_end: i64,
}

// SAFETY: the output context is owned exclusively by this value and only used through `&mut self`
// from one thread at a time (the muxer thread).
unsafe impl Send for LavfMuxer {}

impl LavfMuxer {
    fn create(target: MuxTarget<'_>) -> Result<Self> {
        let MuxTarget {
            path,
            params,
            metadata,
            cover,
            brand,
        } = target;
        super::init();
        let abs = std::path::absolute(path)
            .map_err(|e| Error::io(path, "cannot resolve the output path", e))?;
        let utf8 = abs.to_str().ok_or_else(|| {
            Error::Options(format!(
                "{}: the output path is not valid UTF-8; choose another with -o",
                abs.display()
            ))
        })?;
        // "file:" makes sure FFmpeg treats the name as a local file whatever it looks like.
        let url = format!("file:{utf8}");
        let mut io_opts = ff::Dictionary::new();
        io_opts.set("protocol_whitelist", "file");
        let mut out = ff::format::output_as_with(&url, "ipod", io_opts)
            .map_err(|e| Error::av(Some(path), "create the output file", e))?;

        let rate = params.sample_rate as i32;
        // The track's clock; movenc takes the track timescale (and the mp4a entry's rate) from
        // codecpar's sample rate. Everything below that counts samples is scaled to it.
        let ts = params.media_timescale.max(1) as i64;
        let to_track = |n: i64| n * ts / rate as i64;
        let audio_index;
        {
            let mut st = out
                .add_stream(ff::encoder::find(ff::codec::Id::None))
                .map_err(|e| Error::av(Some(path), "add the audio track", e))?;
            audio_index = st.index();
            // SAFETY: st is a freshly created stream of `out`; its codecpar is ours to fill
            // before write_header. extradata is allocated with av_mallocz (with the padding
            // FFmpeg requires) and owned by codecpar from then on.
            unsafe {
                let par = (*st.as_mut_ptr()).codecpar;
                (*par).codec_type = ffi::AVMediaType::AVMEDIA_TYPE_AUDIO;
                (*par).codec_id = ffi::AVCodecID::AV_CODEC_ID_AAC;
                (*par).sample_rate = ts as i32;
                ffi::av_channel_layout_default(&mut (*par).ch_layout, params.channels as i32);
                (*par).bit_rate = params.bitrate_bps as i64;
                (*par).frame_size = to_track(params.frame_samples as i64) as i32;
                (*par).initial_padding = to_track(params.priming_samples) as i32;
                if !params.extradata.is_empty() {
                    let n = params.extradata.len();
                    let buf =
                        ffi::av_mallocz(n + ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize) as *mut u8;
                    if buf.is_null() {
                        return Err(Error::av(
                            Some(path),
                            "allocate the stream header",
                            ff::Error::from(-(ffi::ENOMEM)),
                        ));
                    }
                    std::ptr::copy_nonoverlapping(params.extradata.as_ptr(), buf, n);
                    (*par).extradata = buf;
                    (*par).extradata_size = n as i32;
                }
            }
            st.set_time_base(ff::Rational::new(1, ts as i32));
        }

        if let Some(pic) = cover {
            let codec_id = match pic.mime.as_str() {
                "image/png" => ff::codec::Id::PNG,
                _ => ff::codec::Id::MJPEG,
            };
            let mut st = out
                .add_stream(ff::encoder::find(ff::codec::Id::None))
                .map_err(|e| Error::av(Some(path), "add the cover", e))?;
            // SAFETY: plain field writes on a stream we just created; the muxer reads them in
            // write_header. ATTACHED_PIC alone: movenc then writes the picture as `covr`
            // instead of a video track.
            unsafe {
                let s = st.as_mut_ptr();
                let par = (*s).codecpar;
                (*par).codec_type = ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
                (*par).codec_id = codec_id.into();
                (*par).width = pic.width.unwrap_or(0) as i32;
                (*par).height = pic.height.unwrap_or(0) as i32;
                (*s).disposition = ffi::AV_DISPOSITION_ATTACHED_PIC;
            }
            st.set_time_base(ff::Rational::new(1, 90_000));
        }

        let mut dict = ff::Dictionary::new();
        for (k, v) in metadata {
            dict.set(k, v);
        }
        out.set_metadata(dict);

        let mut opts = ff::Dictionary::new();
        // Index at the front, so players can seek at once.
        opts.set("movflags", "+faststart");
        // The ipod muxer would say "M4A " (or "M4V " once a cover stream exists); "M4B " is
        // what makes Apple's players treat the file as an audiobook (bookmarking, chapters).
        opts.set(
            "brand",
            match brand {
                Brand::M4b => "M4B ",
                Brand::M4a => "M4A ",
            },
        );
        out.write_header_with(opts)
            .map_err(|e| Error::av(Some(path), "write the header", e))?;
        let audio_tb = out
            .stream(audio_index)
            .map(|s| s.time_base())
            .unwrap_or(ff::Rational::new(1, ts as i32));

        if let Some(pic) = cover {
            let mut pkt = ff::Packet::copy(&pic.data);
            pkt.set_stream(audio_index + 1);
            pkt.set_flags(ff::packet::Flags::KEY);
            pkt.set_pts(Some(0));
            pkt.set_dts(Some(0));
            pkt.write(&mut out)
                .map_err(|e| Error::av(Some(path), "write the cover", e))?;
        }

        Ok(LavfMuxer {
            out,
            path: path.to_path_buf(),
            audio_index,
            audio_tb,
            rate,
            last_end: 0,
        })
    }

    /// Writes one AAC packet; timestamps are in output samples.
    fn write(&mut self, p: &EncodedPacket) -> Result<()> {
        let mut pkt = ff::Packet::copy(&p.data);
        pkt.set_stream(self.audio_index);
        pkt.set_pts(Some(p.pts));
        pkt.set_dts(Some(p.pts));
        pkt.set_duration(p.duration);
        pkt.set_flags(ff::packet::Flags::KEY);
        pkt.rescale_ts(ff::Rational::new(1, self.rate), self.audio_tb);
        self.last_end = p.pts + p.duration;
        pkt.write(&mut self.out)
            .map_err(|e| Error::av(Some(&self.path), "write audio", e))?;
        self.check_io("write audio")
    }

    /// Adds the chapters, writes the trailer (moving the index to the front) and closes the file,
    /// reporting any write error on the way.
    fn finish(mut self, chapters: &[MuxChapter]) -> Result<()> {
        let tb = ff::Rational::new(1, self.rate);
        for (i, ch) in chapters.iter().enumerate() {
            self.out
                .add_chapter(i as i64, tb, ch.start, ch.end.max(ch.start), &ch.title)
                .map_err(|e| Error::av(Some(&self.path), "add a chapter", e))?;
        }
        self.out
            .write_trailer()
            .map_err(|e| Error::av(Some(&self.path), "finish the file (write the index)", e))?;
        self.check_io("finish the file")?;
        // SAFETY: pb was opened by avio_open2 for this context; avio_closep flushes, closes and
        // nulls it, so the context's destructor will not close it again.
        let r = unsafe { ffi::avio_closep(&mut (*self.out.as_mut_ptr()).pb) };
        if r < 0 {
            return Err(Error::av(
                Some(&self.path),
                "close the output file",
                ff::Error::from(r),
            ));
        }
        Ok(())
    }

    fn check_io(&mut self, what: &str) -> Result<()> {
        // SAFETY: reading the error field of the context's open AVIOContext.
        let err = unsafe {
            let pb = (*self.out.as_ptr()).pb;
            if pb.is_null() {
                0
            } else {
                (*pb).error
            }
        };
        if err < 0 {
            return Err(Error::av(
                Some(&self.path),
                what.to_string(),
                ff::Error::from(err),
            ));
        }
        Ok(())
    }
}
