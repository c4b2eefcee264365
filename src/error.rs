//! The library's error type: what went wrong, where (file, track index), and what to do next.
//!
//! Soft problems (a mixed sample rate, a truncated `chpl`) are data — see
//! [`crate::model::Finding`] — and only blocking problems become an [`Error`].
use std::path::PathBuf;

/// Everything the library can fail with. Every variant that concerns a file carries its path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file or folder the operation was on.
        path: PathBuf,
        /// The operation that failed, as a phrase for the message (e.g. "cannot read").
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Validation found problems that block a conversion; all of them are listed.
    #[error("{} problem(s) in the input:\n{}", .0.len(), format_findings(.0))]
    Invalid(Vec<crate::model::Finding>),
    /// A file could not be opened or decoded as MP3.
    #[error("{path}: not a decodable MP3 file: {reason}. Remove it from the folder or replace it with a good copy")]
    NotMp3 {
        /// The file.
        path: PathBuf,
        /// Why it is not usable (e.g. "the file is empty (0 bytes)", "no valid MPEG audio
        /// header found").
        reason: String,
    },
    /// A file could not be opened or decoded as any accepted audio format (`ALLOWED_INPUTS`
    /// beyond MP3).
    #[error("{path}: not a usable audio file: {reason}. Remove it from the folder or replace it with a good copy")]
    NotAudio {
        /// The file.
        path: PathBuf,
        /// Why it is not usable.
        reason: String,
    },
    /// Decoding a file failed in the middle (damaged frames, truncation).
    #[error(
        "{path}: {reason}; replace the file, or allow damaged input to keep the audio that decodes"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Number of frames the decoder rejected (0 when the file only holds less audio than
        /// it announces).
        errors: u64,
        /// What is wrong: the frames the decoder rejected and its first error, and how many
        /// seconds and samples are missing when the file holds less audio than it announces.
        reason: String,
    },
    /// An FFmpeg call failed; `what` says which step.
    #[error("{}FFmpeg failed to {what}: {source}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Av {
        /// The file being read or written, when the step concerns one.
        path: Option<PathBuf>,
        /// The step that failed, as a verb phrase (e.g. "open the AAC encoder (44100 Hz, 2 ch,
        /// 128000 b/s)").
        what: String,
        /// FFmpeg's error code and message.
        #[source]
        source: AvError,
    },
    /// The AAC encoder library (FDK AAC) failed; `what` says which step. FFmpeg's own
    /// encoder reports through [`Error::Av`].
    #[error("the AAC encoder failed to {what}: {reason}; convert again with the native AAC encoder and report it")]
    Encoder {
        /// The step that failed, as a verb phrase (e.g. "encode AAC").
        what: String,
        /// The encoder library's description of the failure, with its error code.
        reason: String,
    },
    /// Options that cannot work together or values out of range.
    #[error("invalid option: {0}")]
    Options(String),
    /// The cover image is unusable.
    #[error("{path}: cover image rejected: {reason}")]
    Cover {
        /// The image file, or the MP3 the picture is embedded in.
        path: PathBuf,
        /// Why it was rejected (too large, not JPEG/PNG, unreadable …).
        reason: String,
    },
    /// The chapters file could not be parsed.
    #[error("{path}:{line}: {reason}")]
    ChaptersFile {
        /// The chapters file.
        path: PathBuf,
        /// The 1-based line at fault; 0 when the problem is the whole file (no chapters).
        line: usize,
        /// What is wrong with the line and how to fix it.
        reason: String,
    },
    /// The written file failed its independent check.
    #[error("{path}: verification failed: {}", .problems.join("; "))]
    Verify {
        /// The written `.m4b` (possibly still under its temporary name).
        path: PathBuf,
        /// Every difference between the file and what was asked, one sentence each.
        problems: Vec<String>,
    },
    /// An MP4/M4B file's box structure is broken, or uses a feature aiom4b does not handle
    /// (fragmented MP4, compact sample sizes).
    #[error("{path}: not a readable MP4 file: {reason} (at byte {offset}); if aiom4b wrote this file, convert again and report it")]
    Mp4 {
        /// The MP4/M4B file.
        path: PathBuf,
        /// Absolute byte offset in the file of the box or field at fault (0 when the whole
        /// file is at fault, e.g. it has no `moov` box).
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// `aiom4b edit` refuses the file or the edit (a symbolic link, a read-only or fragmented
    /// file, no audio track, a chapter that does not exist …).
    #[error("{path}: cannot edit: {reason}")]
    Edit {
        /// The book being edited.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// A metadata provider (Audnexus, Audible's catalog) failed or answered something
    /// unusable: no such ASIN, rate limited, unreachable, malformed answer.
    #[error("{provider}: {what}: {reason}")]
    Metadata {
        /// The provider, e.g. "Audnexus" or "Audible (uk)".
        provider: String,
        /// What was asked, e.g. "book B0036I54I6".
        what: String,
        /// What went wrong and what to do.
        reason: String,
    },
    /// The output already exists and overwriting was not allowed.
    #[error(
        "{0}: the output file already exists; choose another output name, or allow overwriting"
    )]
    OutputExists(PathBuf),
    /// The conversion was cancelled (Ctrl-C or a cancelled token).
    #[error("cancelled")]
    Cancelled,
    /// A worker thread panicked; this is a bug in aiom4b.
    #[error("internal error in {0} (a thread panicked); please report it")]
    Internal(String),
}

/// An error from FFmpeg's libraries: its code and FFmpeg's own message. FFmpeg's Rust types
/// stay inside the library, so this is what callers match on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AvError {
    /// FFmpeg's error code (`AVERROR(…)`, negative), e.g. `-28` for "no space left on device".
    pub code: i32,
    /// FFmpeg's description of the code.
    pub message: String,
}

impl AvError {
    /// The operating system's error number, when the code wraps one (`AVERROR(errno)`).
    pub fn errno(&self) -> Option<i32> {
        match ffmpeg_next::Error::from(self.code) {
            ffmpeg_next::Error::Other { errno } => Some(errno),
            _ => None,
        }
    }
}

impl From<ffmpeg_next::Error> for AvError {
    fn from(e: ffmpeg_next::Error) -> Self {
        AvError {
            code: i32::from(e),
            message: e.to_string(),
        }
    }
}

/// The library's result alias.
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
    pub(crate) fn av(
        path: Option<&std::path::Path>,
        what: impl Into<String>,
        source: ffmpeg_next::Error,
    ) -> Self {
        Error::Av {
            path: path.map(|p| p.to_path_buf()),
            what: what.into(),
            source: AvError::from(source),
        }
    }

    /// True when the error is the user's cancellation rather than a failure.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled)
    }
}

fn format_findings(findings: &[crate::model::Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("  - {f}"))
        .collect::<Vec<_>>()
        .join("\n")
}
