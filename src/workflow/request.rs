//! What a job is asked to do ([`JobRequest`]), what the engine gives back
//! ([`ConversionResult`]) and how the job ended ([`JobOutcome`]).
use crate::convert::ConvertReport;
use crate::model::BookMetadata;
use crate::workflow::jobs::{Job, JobStatus, StageTiming};
use crate::workflow::post_action::PostAction;
use std::path::PathBuf;
use std::time::Duration;

/// What to convert and what to do around it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct JobRequest {
    /// The source folders of one book, in order.
    pub folders: Vec<PathBuf>,
    /// The conversion options, recorded in the job as given (the workflow does not read them).
    pub options: serde_json::Value,
    /// Back up the folders first; `None` follows `BACKUP_ENABLED`.
    pub backup: Option<bool>,
    /// Output file name template; `None` follows `NAME_TEMPLATE`.
    pub name_template: Option<String>,
    /// Output folder; `None` is `DATA_DIR/output`.
    pub output_dir: Option<PathBuf>,
    /// An exact output file (`-o`): replaces the folder and the name template; the `.part` is
    /// written beside it so that publishing is one rename on one file system.
    pub output_file: Option<PathBuf>,
    /// Replace an existing `output_file` (generated names are never replaced: they get ` (2)`).
    pub overwrite: bool,
    /// What to do with the source folders after success.
    pub post_action: PostAction,
    /// Conversion time limit; `None` follows `PROCESSING_TIMEOUT_SECS` (0 = from audio length).
    pub timeout: Option<Duration>,
    /// Threads the engine may use; `None` = all cores (or 1 with `USE_ALL_CPUS=false`).
    pub engine_threads: Option<usize>,
    /// Files the conversion reads besides the source folders (a cover, a chapters file): the
    /// output may never replace one of them.
    pub inputs: Vec<PathBuf>,
}

/// What the engine ([`crate::workflow::JobEngine::convert`]) reports on success.
#[derive(Debug, Clone, Default)]
pub struct ConversionResult {
    /// The file written; normally [`crate::workflow::JobContext::part_path`]. It must be on the output folder's
    /// file system (it is renamed into place).
    pub output: PathBuf,
    /// Title, author … for the output name.
    pub metadata: BookMetadata,
    /// Length of the written audio in seconds, for the job record.
    pub audio_duration_secs: Option<f64>,
    /// The engine's own stages (scan, probe, decode …), stored with the workflow's.
    pub stage_timings: Vec<StageTiming>,
    /// Soft problems worth showing to the user.
    pub warnings: Vec<String>,
    /// The engine's full report, when the engine is aiom4b's ([`crate::workflow::BookEngine`]).
    pub report: Option<ConvertReport>,
}

/// The end of a job.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// The final job record (status, output path, error …).
    pub job: Job,
    /// Warnings for the user: the engine's (a completed job's), and what failed after the
    /// output was published.
    pub warnings: Vec<String>,
    /// The engine's report of the successful conversion ([`ConversionResult::report`]).
    pub report: Option<ConvertReport>,
}

impl JobOutcome {
    /// True when the job completed (its output is published).
    pub fn succeeded(&self) -> bool {
        self.job.status == JobStatus::Completed
    }
}
