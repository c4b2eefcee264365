//! Workflow errors: what failed, where (path, job, backup), which of the four categories it
//! belongs to (input, processing, output, system), what the user should do next, and whether
//! trying again can help.
//!
//! Two types live here. [`Error`] is what workflow functions return (a `thiserror` enum with
//! paths). [`JobError`] is the flat, storable form written into a job record — category,
//! message, remedy — and the error type the injected converter returns.
pub use crate::workflow::category::ErrorCategory;
use crate::workflow::config::ConfigError;
use crate::workflow::jobs::{JobFailure, StoreError};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::PathBuf;

/// Everything a workflow operation can fail with. Every variant concerning a file carries its path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file or folder the operation was on.
        path: PathBuf,
        /// The operation that failed, as a short phrase (e.g. "read folder").
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The job database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A source folder does not exist or is not a folder.
    #[error("{0}: source folder not found or not a folder; check the path")]
    SourceMissing(PathBuf),
    /// The file system holding `path` has less free space than the operation needs.
    #[error(
        "{path}: not enough free space: {needed} bytes needed, {available} bytes available to \
         unprivileged users; free some space, prune old backups, or point DATA_DIR \
          at a larger disk"
    )]
    InsufficientSpace {
        /// The folder to be written into: the backup folder, the folder a restore writes
        /// into, or the staging folder of a move to another file system.
        path: PathBuf,
        /// Bytes the operation needs: the files' sizes plus margins (1 MiB, and 4 KiB per
        /// entry for a backup).
        needed: u64,
        /// Bytes free there for unprivileged users (reserved blocks excluded).
        available: u64,
    },
    /// The folder to move the sources to is on another file system with too little room for the
    /// source folders (found before converting).
    #[error(
        "{path}: not enough free space to move the source folder there: {needed} bytes needed, \
         {available} bytes available; free space there or choose another folder to move the \
         sources to"
    )]
    MoveTargetFull {
        /// The folder the sources are to be moved to.
        path: PathBuf,
        /// Bytes the move needs: the source files on other file systems, 4 KiB per file and
        /// 1 MiB of margin.
        needed: u64,
        /// Bytes free there for unprivileged users (reserved blocks excluded).
        available: u64,
    },
    /// A copied file does not match its original (or a backup no longer matches its manifest).
    #[error("{path}: checksum verification failed: {}", .problems.join("; "))]
    Checksum {
        /// The original file whose copy differs, or the backup folder that fails its check.
        path: PathBuf,
        /// Each mismatch, one sentence each.
        problems: Vec<String>,
    },
    /// A backup's `metadata.txt` is missing or unreadable.
    #[error("{path}: {reason}; this folder is not a complete aiom4b backup")]
    Manifest {
        /// The manifest file (`metadata.txt` or its JSON sidecar).
        path: PathBuf,
        /// What is wrong: "missing", unreadable, does not parse, or the two files disagree.
        reason: String,
    },
    /// No backup, or more than one, matches the given name.
    #[error("backup {0:?} not found; see the list of backups")]
    BackupNotFound(String),
    /// An encrypted backup was to be restored without an identity to decrypt it.
    #[error(
        "backup {backup} is encrypted (to {}); restoring it needs the age identity file that \
         holds one of those keys: `aiom4b backup restore {backup} --identity FILE`",
        .recipients.join(", ")
    )]
    IdentityNeeded {
        /// The backup's name.
        backup: String,
        /// The public keys (`age1…`) it is encrypted to.
        recipients: Vec<String>,
    },
    /// The identity file given holds none of the keys an encrypted backup was encrypted to.
    /// Names public keys only.
    #[error(
        "backup {backup} was encrypted to {}; the identity file {file} holds none of its keys \
         (its public keys: {}); nothing was restored",
        .recipients.join(", "),
        if .holds.is_empty() { "none".to_string() } else { .holds.join(", ") }
    )]
    WrongIdentity {
        /// The backup's name.
        backup: String,
        /// The public keys (`age1…`) it is encrypted to.
        recipients: Vec<String>,
        /// The identity file.
        file: PathBuf,
        /// The public keys of the identities in that file.
        holds: Vec<String>,
    },
    /// No job, or more than one, matches the given id.
    #[error("job {0:?} not found (or the prefix is ambiguous); see the list of jobs")]
    JobNotFound(String),
    /// The destination of a restore, move or output already exists and would be overwritten.
    #[error(
        "{0}: already exists; aiom4b never overwrites it: move it away or choose another place"
    )]
    Exists(PathBuf),
    /// The output file (`-o`) already exists and overwriting was not asked for.
    #[error("{0}: the output file already exists; choose another output name, or allow overwriting to replace it")]
    OutputFileExists(PathBuf),
    /// Moving or deleting a source folder after the conversion failed half-way.
    #[error(
        "{path}: {action} failed: {reason}; {}",
        if *.restored {
            format!("the folder was restored from backup {backup}")
        } else {
            format!("restoring it from backup {backup} ALSO failed: restore it with `aiom4b backup restore {backup}`")
        }
    )]
    SourceAction {
        /// The source folder.
        path: PathBuf,
        /// What was being done, as a phrase ("moving the source folder", "deleting the source
        /// folder").
        action: &'static str,
        /// The I/O error that interrupted it.
        reason: String,
        /// The folder was restored from its backup (true), or restoring failed too (false).
        restored: bool,
        /// The name of the backup to restore the folder from.
        backup: String,
    },
    /// The request contradicts itself or the configuration.
    #[error("{0}")]
    Invalid(String),
}

/// The workflow's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with its path and the operation that failed.
    pub fn io(path: impl Into<PathBuf>, what: &'static str, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            what,
            source,
        }
    }

    /// The category this error is filed under in a job record.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::Io { source, .. } => io_category(source),
            Error::Store(_) => ErrorCategory::System,
            Error::Config(_) | Error::SourceMissing(_) | Error::Invalid(_) => ErrorCategory::Input,
            Error::BackupNotFound(_) | Error::JobNotFound(_) => ErrorCategory::Input,
            Error::IdentityNeeded { .. } | Error::WrongIdentity { .. } => ErrorCategory::Input,
            Error::InsufficientSpace { .. }
            | Error::MoveTargetFull { .. }
            | Error::Exists(_)
            | Error::OutputFileExists(_) => ErrorCategory::Output,
            Error::Checksum { .. } | Error::Manifest { .. } => ErrorCategory::Output,
            Error::SourceAction { .. } => ErrorCategory::Output,
        }
    }

    /// What the user should do next (repeated in the job record's remedy column).
    pub fn remedy(&self) -> String {
        match self {
            Error::Io { source, .. } => io_remedy(source).to_string(),
            Error::Store(e) => e.remedy().to_string(),
            Error::Config(_) => "fix the named setting (see the effective configuration)".into(),
            Error::SourceMissing(_) => "check the folder path and that it is readable".into(),
            Error::InsufficientSpace { .. } => {
                "free disk space or prune old backups, then retry".into()
            }
            Error::MoveTargetFull { .. } => {
                "free space in the move target or choose another folder to move the sources to"
                    .into()
            }
            Error::Checksum { .. } => {
                "a file changed while being copied or the disk is faulty; retry, and check the disk if it happens again".into()
            }
            Error::Manifest { .. } => "use another backup from the list of backups".into(),
            Error::BackupNotFound(_) => "see the list of backups".into(),
            Error::IdentityNeeded { .. } => {
                "pass the age identity file whose public key is one of the backup's recipients (--identity FILE)".into()
            }
            Error::WrongIdentity { .. } => {
                "pass the identity file whose public key (`age-keygen -y FILE` prints it) is one of the backup's recipients".into()
            }
            Error::JobNotFound(_) => "see the list of jobs".into(),
            Error::Exists(_) => "move the existing file or folder away, or choose another destination".into(),
            Error::OutputFileExists(_) => "choose another output name, or allow overwriting".into(),
            Error::SourceAction { restored: true, .. } => {
                "the M4B was written; check the permissions of the source folder and move or delete it by hand".into()
            }
            Error::SourceAction { backup, .. } => {
                format!("restore the folder with `aiom4b backup restore {backup}` (with --identity FILE if the backup is encrypted)")
            }
            Error::Invalid(_) => "change the options as the message says".into(),
        }
    }

    /// True when trying the same operation again may succeed (EINTR, EAGAIN, a busy database).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io { source, .. } => io_is_transient(source),
            Error::Store(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// True for I/O errors that a retry can fix: interrupted or would-block system calls, time-outs.
pub fn io_is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Disk full, quota and read-only file systems are output problems; missing files and
/// permissions are input problems; anything else is the system's.
fn io_category(e: &io::Error) -> ErrorCategory {
    use rustix::io::Errno;
    let full = [Errno::NOSPC, Errno::DQUOT, Errno::ROFS].map(|c| c.raw_os_error());
    if e.raw_os_error().is_some_and(|code| full.contains(&code)) {
        return ErrorCategory::Output;
    }
    match e.kind() {
        io::ErrorKind::NotFound
        | io::ErrorKind::PermissionDenied
        | io::ErrorKind::IsADirectory
        | io::ErrorKind::InvalidData
        | io::ErrorKind::UnexpectedEof => ErrorCategory::Input,
        io::ErrorKind::AlreadyExists => ErrorCategory::Output,
        _ => ErrorCategory::System,
    }
}

/// errno values that mean "no room to write": a full disk, a quota, a file larger than the file
/// system or the process's file-size limit allows.
const NO_ROOM: [rustix::io::Errno; 3] = [
    rustix::io::Errno::NOSPC,
    rustix::io::Errno::DQUOT,
    rustix::io::Errno::FBIG,
];
/// errno values that mean "may not write here".
const NOT_WRITABLE: [rustix::io::Errno; 3] = [
    rustix::io::Errno::ROFS,
    rustix::io::Errno::ACCESS,
    rustix::io::Errno::PERM,
];

/// The errno behind an engine error, for I/O and FFmpeg failures.
fn engine_errno(e: &crate::Error) -> Option<i32> {
    match e {
        crate::Error::Io { source, .. } => source.raw_os_error(),
        crate::Error::Av { source, .. } => source.errno(),
        _ => None,
    }
}

fn engine_path(e: &crate::Error) -> Option<&std::path::Path> {
    match e {
        crate::Error::Io { path, .. } => Some(path),
        crate::Error::Av { path, .. } => path.as_deref(),
        _ => None,
    }
}

fn io_remedy(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) {
        return "the disk is full: free space or prune old backups, then retry";
    }
    match e.kind() {
        io::ErrorKind::NotFound => "check that the path exists",
        io::ErrorKind::PermissionDenied => "check the permissions of the file and its folder",
        io::ErrorKind::IsADirectory => "give the path of a file, not of a folder",
        _ if io_is_transient(e) => "retry; the system was busy",
        _ => "check the disk and the path, then retry",
    }
}

/// A failure as stored in a job record, and the error type of the injected converter.
///
/// `transient` failures make the workflow retry the conversion (with backoff); a `cancelled`
/// one ends the job as `cancelled` instead of `failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{category} error: {message}")]
pub struct JobError {
    /// Which of the four error categories the failure belongs to.
    pub category: ErrorCategory,
    /// What went wrong, naming the file or folder.
    pub message: String,
    /// What the user should do next.
    pub remedy: String,
    /// Trying again may succeed.
    #[serde(default)]
    pub transient: bool,
    /// The conversion stopped because it was cancelled (Ctrl-C, a cancelled job), not a failure.
    #[serde(default)]
    pub cancelled: bool,
}

impl JobError {
    /// A deterministic failure.
    pub fn new(
        category: ErrorCategory,
        message: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        JobError {
            category,
            message: message.into(),
            remedy: remedy.into(),
            transient: false,
            cancelled: false,
        }
    }

    /// Marks the failure as worth retrying.
    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }

    /// The conversion noticed the cancel flag and stopped.
    pub fn cancelled() -> Self {
        JobError {
            cancelled: true,
            ..JobError::new(
                crate::workflow::jobs::CANCELLED.0,
                crate::workflow::jobs::CANCELLED.1,
                crate::workflow::jobs::CANCELLED.2,
            )
        }
    }
}

impl From<Error> for JobError {
    fn from(e: Error) -> Self {
        JobError {
            category: e.category(),
            remedy: e.remedy(),
            transient: e.is_transient(),
            cancelled: false,
            message: e.to_string(),
        }
    }
}

impl JobError {
    /// The job error for an engine failure while writing `output` (the job's `.part`): a write
    /// that fails in the output's folder is an output error that says so ("disk full at …",
    /// "cannot write …"), whichever library reported it; anything else as [`From`] files it.
    pub fn from_engine(e: crate::Error, output: &std::path::Path) -> Self {
        let dir = output.parent().unwrap_or(std::path::Path::new("."));
        let on_output = engine_path(&e).is_some_and(|p| p == output || p.parent() == Some(dir));
        let errno = engine_errno(&e).map(rustix::io::Errno::from_raw_os_error);
        match errno {
            Some(n) if on_output && NO_ROOM.contains(&n) => JobError::new(
                ErrorCategory::Output,
                format!("disk full at {}: {e}", dir.display()),
                format!(
                    "free space in {} (or write the book elsewhere with -o), then convert again; \
                     the book needs about its bitrate × its length (128 kb/s: ~58 MB per hour)",
                    dir.display()
                ),
            ),
            Some(n) if on_output && NOT_WRITABLE.contains(&n) => JobError::new(
                ErrorCategory::Output,
                format!("cannot write {}: {e}", dir.display()),
                "choose an output folder you can write to (a read-only or foreign folder cannot take the book)",
            ),
            _ => JobError::from(e),
        }
    }
}

/// Lets the engine's converter return the library error as-is:
/// `converter.convert(..).map_err(JobError::from)`.
impl From<crate::Error> for JobError {
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        if e.is_cancelled() {
            return JobError::cancelled();
        }
        if let E::Invalid(findings) = &e {
            // Each blocking finding says what to do about its file; the job's remedy collects
            // those instead of a generic "fix the files".
            let mut remedies: Vec<String> = Vec::new();
            for f in findings {
                if let Some(r) = &f.remedy {
                    let r = match &f.path {
                        Some(p) => format!("{}: {r}", p.display()),
                        None => r.clone(),
                    };
                    if !remedies.contains(&r) {
                        remedies.push(r);
                    }
                }
            }
            return JobError {
                category: ErrorCategory::Input,
                message: e.to_string(),
                remedy: if remedies.is_empty() {
                    "fix or replace the files named above".into()
                } else {
                    remedies.join("; ")
                },
                transient: false,
                cancelled: false,
            };
        }
        let (category, remedy, transient) = match &e {
            E::Io { source, .. } => (
                io_category(source),
                io_remedy(source),
                io_is_transient(source),
            ),
            E::Invalid(_) | E::NotMp3 { .. } | E::NotAudio { .. } | E::Damaged { .. } => (
                ErrorCategory::Input,
                "fix or replace the files named above",
                false,
            ),
            E::Options(_) | E::Cover { .. } | E::ChaptersFile { .. } => (
                ErrorCategory::Input,
                "fix the option or file named above",
                false,
            ),
            E::OutputExists(_) => (
                ErrorCategory::Output,
                "choose another output name or allow overwriting",
                false,
            ),
            E::Verify { .. } => (
                ErrorCategory::Processing,
                "the written file failed its check; retry, and report it if it persists",
                false,
            ),
            _ => (
                ErrorCategory::Processing,
                "retry; if it fails again, report it with the log in data/logs",
                false,
            ),
        };
        JobError {
            category,
            message: e.to_string(),
            remedy: remedy.to_string(),
            transient,
            cancelled: false,
        }
    }
}

impl From<&JobError> for JobFailure {
    fn from(e: &JobError) -> Self {
        JobFailure {
            category: e.category,
            message: e.message.clone(),
            remedy: e.remedy.clone(),
        }
    }
}
