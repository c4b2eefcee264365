//! The four error categories of the specification, at the bottom of the workflow's modules:
//! the job record stores them ([`crate::workflow::jobs`]) and the errors are sorted into them
//! ([`crate::workflow::errors`]), so both import this and neither imports the other's kin.
use serde::{Deserialize, Serialize};

/// The four error categories of the specification; stored in the job record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorCategory {
    /// Invalid folders, missing files, undecodable MP3s, permission problems on the input.
    Input,
    /// The conversion itself failed (FFmpeg, resources, timeout, a bug).
    Processing,
    /// Writing the result failed: file system problems, disk space, name collisions.
    Output,
    /// The environment failed: database, interrupted process, hardware.
    System,
}

impl ErrorCategory {
    /// The stable lowercase name used in the database and in `--json` output.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCategory::Input => "input",
            ErrorCategory::Processing => "processing",
            ErrorCategory::Output => "output",
            ErrorCategory::System => "system",
        }
    }

    /// Parses [`ErrorCategory::as_str`] back.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "input" => ErrorCategory::Input,
            "processing" => ErrorCategory::Processing,
            "output" => ErrorCategory::Output,
            "system" => ErrorCategory::System,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
