//! The only place FFmpeg appears: opening inputs safely, decoding, resampling, encoding, muxing.
//! Keeping it here keeps FFmpeg replaceable; the rest of the crate sees plain Rust types
//! ([`PcmChunk`](decode::PcmChunk), [`EncodedPacket`](encode::EncodedPacket)).
pub mod decode;
pub mod encode;
#[cfg(feature = "fdk-aac")]
pub mod fdk;
pub mod image_writer;
pub mod input;
pub mod m4b_reader;
pub mod mp3_writer;
pub mod mux;

use std::sync::Once;

static INIT: Once = Once::new();

/// Initializes FFmpeg once per process and silences its own logging: the library never prints,
/// and every FFmpeg failure is turned into an [`Error`](crate::Error) with the file named.
pub fn init() {
    INIT.call_once(|| {
        // Registration is a no-op on FFmpeg ≥ 4 but harmless; the error cannot happen there.
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Quiet);
    });
}

/// Versions of the FFmpeg libraries linked at run time, e.g. `("libavcodec", "59.37.100")`.
pub fn library_versions() -> Vec<(&'static str, String)> {
    fn v(x: u32) -> String {
        format!("{}.{}.{}", x >> 16, (x >> 8) & 0xff, x & 0xff)
    }
    vec![
        ("libavcodec", v(ffmpeg_next::codec::version())),
        ("libavformat", v(ffmpeg_next::format::version())),
        ("libavutil", v(ffmpeg_next::util::version())),
        (
            "libswresample",
            v(ffmpeg_next::software::resampling::version()),
        ),
    ]
}
