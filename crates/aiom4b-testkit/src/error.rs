//! The test kit's error type: which file, which step, and why.
use std::path::{Path, PathBuf};

/// Everything writing or reading a fixture can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{path}: {what}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// An FFmpeg call failed; `what` says which step.
    #[error("{}FFmpeg failed to {what}: {source}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Av {
        path: Option<PathBuf>,
        what: String,
        #[source]
        source: ffmpeg_next::Error,
    },
    /// A spec that cannot be written (a sample rate MP3 cannot carry, a NUL in a tag, …).
    #[error("invalid fixture spec: {0}")]
    Options(String),
    /// A written file failed its read-back check.
    #[error("{path}: check failed: {}", .problems.join("; "), path = .path.display())]
    Verify {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// The test kit's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with its path and the operation that failed.
    pub fn io(path: impl Into<PathBuf>, what: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            what,
            source,
        }
    }

    /// An FFmpeg error, optionally tied to a file.
    pub fn av(path: Option<&Path>, what: impl Into<String>, source: ffmpeg_next::Error) -> Self {
        Error::Av {
            path: path.map(Path::to_path_buf),
            what: what.into(),
            source,
        }
    }
}
