//! # aiom4b-testkit — inputs and measurements for aiom4b's tests, benchmarks and examples
//!
//! Not part of the shipped library (`publish = false`): aiom4b uses it as a dev-dependency.
//! Everything is generated at run time by the FFmpeg libraries the converter links, so neither
//! an `ffmpeg` binary nor committed audio files are needed.
//!
//! - [`fixtures`]: deterministic signals, MP3 files and whole books, cover images, hostile files.
//! - [`mp3_writer`] / [`image_writer`]: the encoders behind them (libmp3lame, mjpeg, png).
//! - [`audio_writer`]: FLAC, WAV, Ogg Vorbis/Opus, AAC/ALAC in MP4 (chapters, cover) and ADTS
//!   files, for the input-format tests.
//! - [`m4b_reader`]: decodes a written M4B back to PCM, for coding-error measurements.
//! - [`quality`]: block error, SNR and the splice-quality comparison.
//! - [`age_keys`]: age key pairs and identity files for the encrypted-backup tests.
//! - [`postgres`]: a throw-away PostgreSQL server and a fresh database per test, and a
//!   private server a test can stop and start again.
//!
//! It sees aiom4b only through its public API. The MP3 writer checks its Xing/LAME header with
//! a small reader of its own (`mp3frame`), not with the library's parser, so a mistake in
//! either shows up against the other.
pub mod age_keys;
pub mod audio_writer;
pub mod fixtures;
pub mod image_writer;
pub mod m4b_reader;
pub mod mp3_writer;
mod mp3frame;
pub mod postgres;
pub mod quality;

mod error;
pub use error::{Error, Result};

/// Initializes FFmpeg once per process. Unless logging was set up already (aiom4b routes
/// FFmpeg's log to `tracing` when it initializes first), FFmpeg's default stderr logger is
/// limited to errors: libmp3lame's warnings ("Trying to remove 1152 samples…", see
/// [`mp3_writer`]) are expected here and would only clutter test and example output.
fn init() {
    use ffmpeg_next::util::log::{self, Level};
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        // Registration is a no-op on FFmpeg ≥ 4 but harmless; the error cannot happen there.
        let _ = ffmpeg_next::init();
        if matches!(log::get_level(), Ok(Level::Info)) {
            log::set_level(Level::Error);
        }
    });
}
