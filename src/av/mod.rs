//! The only place FFmpeg appears: opening inputs safely, decoding, resampling, encoding, muxing.
//! Keeping it here keeps FFmpeg replaceable; the rest of the crate sees plain Rust types
//! ([`PcmChunk`](decode::PcmChunk), [`EncodedPacket`](aac::EncodedPacket)).
pub mod aac;
pub mod decode;
pub mod encode;
#[cfg(feature = "fdk-aac")]
pub mod fdk;
pub mod input;
pub(crate) mod mp4write;
pub mod mux;
pub mod packets;
pub mod picture;

use std::sync::Once;

static INIT: Once = Once::new();

/// Initializes FFmpeg once per process. FFmpeg's own log goes to `tracing` (target
/// `aiom4b::ffmpeg`; its errors at info level, its warnings at debug level) instead of stderr:
/// the library never prints, and every FFmpeg failure that matters is turned into an
/// [`Error`](crate::Error) naming the file anyway — the log only adds detail for `-v`.
pub fn init() {
    INIT.call_once(|| {
        // Registration is a no-op on FFmpeg ≥ 4 but harmless; the error cannot happen there.
        let _ = ffmpeg_next::init();
        log_bridge::install();
    });
}

#[cfg(target_arch = "x86_64")]
mod log_bridge {
    use ffmpeg_next::ffi;
    use std::ffi::{c_char, c_int, c_void, CStr};

    pub(super) fn install() {
        // SAFETY: setting FFmpeg's global log level and callback; the callback below is a plain
        // function that only formats into a stack buffer.
        unsafe {
            ffi::av_log_set_level(ffi::AV_LOG_WARNING);
            ffi::av_log_set_callback(Some(callback));
        }
    }

    unsafe extern "C" fn callback(
        avcl: *mut c_void,
        level: c_int,
        fmt: *const c_char,
        vl: *mut ffi::__va_list_tag,
    ) {
        if level > ffi::AV_LOG_WARNING {
            return;
        }
        let mut line = [0 as c_char; 1024];
        let mut prefix: c_int = 1;
        // SAFETY: FFmpeg hands us a valid format string and va_list for this call; the buffer
        // is ours and its size is passed, so av_log_format_line2 NUL-terminates within it.
        let text = unsafe {
            ffi::av_log_format_line2(
                avcl,
                level,
                fmt,
                vl,
                line.as_mut_ptr(),
                line.len() as c_int,
                &mut prefix,
            );
            CStr::from_ptr(line.as_ptr()).to_string_lossy()
        };
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        if level <= ffi::AV_LOG_ERROR {
            tracing::info!(target: "aiom4b::ffmpeg", "{text}");
        } else {
            tracing::debug!(target: "aiom4b::ffmpeg", "{text}");
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod log_bridge {
    /// The va_list type of FFmpeg's log callback differs per architecture; elsewhere FFmpeg's
    /// log is simply silenced.
    pub(super) fn install() {
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Quiet);
    }
}

/// Which FFmpeg this build carries: its version string, how it is linked, and the configure line
/// it was built with (`aiom4b --version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfmpegBuild {
    /// FFmpeg's own version string (`av_version_info`), e.g. `7.1.5-aiom4b`.
    pub version: String,
    /// `static: 7.1.5 (minimal profile, vendor/ffmpeg/build.sh)` or `shared libraries of the system`.
    pub linkage: String,
    /// The `./configure` arguments (`avcodec_configuration`).
    pub configuration: String,
}

/// The FFmpeg in this process (see [`FfmpegBuild`]).
pub fn ffmpeg_build() -> FfmpegBuild {
    // SAFETY: both return pointers to static NUL-terminated strings inside libavutil/libavcodec.
    let (version, configuration) = unsafe {
        (
            std::ffi::CStr::from_ptr(ffmpeg_next::ffi::av_version_info()),
            std::ffi::CStr::from_ptr(ffmpeg_next::ffi::avcodec_configuration()),
        )
    };
    let linkage = match option_env!("AIOM4B_FFMPEG_VENDORED") {
        Some(v) => format!("static: {v}"),
        None => "shared libraries of the system".to_string(),
    };
    FfmpegBuild {
        version: version.to_string_lossy().into_owned(),
        linkage,
        configuration: configuration.to_string_lossy().trim().to_string(),
    }
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
