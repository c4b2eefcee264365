//! What happens to a job while it runs, as typed events: the workflow's steps, the engine's
//! stages and progress, findings, and the final result. The CLI draws its bar from them; a
//! server turns them into an event stream. Every event carries the job's id.
use crate::model::Finding;
use crate::progress::{ProgressSink, Stage};
use crate::workflow::request::JobOutcome;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use uuid::Uuid;

/// The workflow's steps of a job, in order. Their names are the stage names of the job
/// record's timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStep {
    /// The request is checked; nothing is written yet.
    Validate,
    /// The engine validates and plans the book, before anything is backed up.
    Prepare,
    /// The source folders are backed up.
    Backup,
    /// The engine writes the job's `.part`.
    Convert,
    /// The `.part` gets its name and permissions and is renamed into place.
    Publish,
    /// The sources are moved or deleted.
    PostAction,
}

impl JobStep {
    /// The stable snake-case name (`post_action`), as in the job record's stage timings.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStep::Validate => "validate",
            JobStep::Prepare => "prepare",
            JobStep::Backup => "backup",
            JobStep::Convert => "convert",
            JobStep::Publish => "publish",
            JobStep::PostAction => "post_action",
        }
    }
}

impl std::fmt::Display for JobStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that happened to a job. Borrowed data lives only for the call.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum JobEvent<'a> {
    /// The job starts running (its record exists).
    Started {
        /// The canonical source folders.
        folders: &'a [PathBuf],
    },
    /// A workflow step begins.
    Step(JobStep),
    /// The engine planned the book: what its progress is measured in.
    Planned {
        /// The book's length.
        duration_secs: f64,
        /// The output sample rate ([`JobEvent::Encoded`] counts samples at this rate).
        sample_rate: u32,
    },
    /// An engine stage begins (scan, probe … verify).
    Engine(Stage),
    /// File `index` of the book is decoded completely: `samples` at the output rate.
    FileDecoded {
        /// The file's 0-based position in the book.
        index: usize,
        /// The MP3 file.
        path: &'a Path,
        /// Its decoded length in samples per channel at the output rate.
        samples: u64,
    },
    /// `done` of about `total` output samples are encoded (see [`ProgressSink::encoded`]).
    Encoded {
        /// Output samples (per channel) encoded so far.
        done: u64,
        /// The expected total: the plan's estimate until the last file is decoded, then exact.
        total: u64,
    },
    /// The job's progress as recorded: a fraction 0..=1, at most twice a second.
    Progress {
        /// Share done, 0.0–1.0 (the job record stores it as a percentage, 0–100).
        fraction: f64,
    },
    /// A problem found by the plan or the engine (soft, or the reason the job fails).
    Finding(&'a Finding),
    /// A transient failure: the conversion runs again after `delay`.
    Retrying {
        /// The attempt that failed, 1-based.
        attempt: u32,
        /// How long the workflow waits before the next attempt.
        delay: Duration,
        /// What failed.
        message: &'a str,
    },
    /// The job ended (completed, failed or cancelled); its final record.
    Finished(&'a JobOutcome),
}

/// Receives the events of jobs. Called from the job's thread and from the engine's threads:
/// implementations must be cheap and must not block.
pub trait JobEvents: Sync {
    /// One event of job `job_id`.
    fn event(&self, job_id: Uuid, event: JobEvent<'_>);
}

/// Events nobody listens to.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl JobEvents for NoEvents {
    fn event(&self, _job_id: Uuid, _event: JobEvent<'_>) {}
}

/// The events of one job: stamps them with its id. As a [`ProgressSink`] it turns the
/// engine's callbacks into events.
#[derive(Clone, Copy)]
pub struct JobEventSink<'a> {
    job_id: Uuid,
    events: &'a dyn JobEvents,
}

impl std::fmt::Debug for JobEventSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobEventSink")
            .field("job_id", &self.job_id)
            .finish_non_exhaustive()
    }
}

impl<'a> JobEventSink<'a> {
    pub(crate) fn new(job_id: Uuid, events: &'a dyn JobEvents) -> Self {
        JobEventSink { job_id, events }
    }

    /// The job the events are about.
    pub fn job_id(&self) -> Uuid {
        self.job_id
    }

    /// Sends one event, and logs the ones a person reading the job's log wants to see.
    pub fn emit(&self, event: JobEvent<'_>) {
        log_event(&event);
        self.events.event(self.job_id, event);
    }
}

/// The job's story as log lines (target `aiom4b::jobs`: the log file and the job's own log in
/// the store; the terminal shows the same through the progress bar instead). Progress and
/// per-file events are left out at INFO: they are many and say nothing new.
///
/// A line that belongs to a stage says which in its `stage` field: the workflow's step
/// ([`JobStep::as_str`]), or the engine's stage in lowercase (`scan` … `verify`); a log
/// collector groups a job's lines by it.
fn log_event(event: &JobEvent<'_>) {
    const T: &str = "aiom4b::jobs";
    match *event {
        JobEvent::Started { folders } => {
            let list: Vec<_> = folders.iter().map(|f| f.display().to_string()).collect();
            tracing::info!(target: T, folders = ?list, "job started");
        }
        JobEvent::Step(step) => tracing::info!(
            target: T,
            step = step.as_str(),
            stage = step.as_str(),
            "step: {step}"
        ),
        JobEvent::Planned {
            duration_secs,
            sample_rate,
        } => tracing::info!(
            target: T,
            stage = JobStep::Prepare.as_str(),
            duration_secs,
            sample_rate,
            "planned {:.1} s of audio at {sample_rate} Hz",
            duration_secs
        ),
        JobEvent::Engine(stage) => tracing::info!(
            target: T,
            stage = format!("{stage:?}").to_lowercase(),
            "engine: {stage:?}"
        ),
        JobEvent::FileDecoded {
            index,
            path,
            samples,
        } => tracing::debug!(
            target: T,
            stage = JobStep::Convert.as_str(),
            index,
            path = %path.display(),
            samples,
            "file decoded"
        ),
        JobEvent::Encoded { .. } | JobEvent::Progress { .. } => {}
        JobEvent::Finding(f) => {
            let path = f.path.as_ref().map(|p| p.display().to_string());
            let remedy = f.remedy.as_deref();
            match f.severity {
                crate::model::Severity::Error => {
                    tracing::error!(target: T, kind = ?f.kind, path, remedy, "{}", f.message)
                }
                crate::model::Severity::Warning => {
                    tracing::warn!(target: T, kind = ?f.kind, path, remedy, "{}", f.message)
                }
                crate::model::Severity::Info => {
                    tracing::info!(target: T, kind = ?f.kind, path, remedy, "{}", f.message)
                }
            }
        }
        JobEvent::Retrying {
            attempt,
            delay,
            message,
        } => tracing::warn!(
            target: T,
            stage = JobStep::Convert.as_str(),
            attempt,
            delay_secs = delay.as_secs_f64(),
            "attempt {attempt} failed ({message}); trying again in {:.1} s",
            delay.as_secs_f64()
        ),
        JobEvent::Finished(outcome) => {
            let job = &outcome.job;
            let output = job.output_path.as_ref().map(|p| p.display().to_string());
            match &job.error {
                // The workflow has said "job cancelled" already (steps.rs).
                Some(_) if job.status == crate::workflow::JobStatus::Cancelled => {}
                Some(e) if job.status != crate::workflow::JobStatus::Completed => tracing::error!(
                    target: T,
                    status = job.status.as_str(),
                    category = ?e.category,
                    remedy = e.remedy.as_str(),
                    "job {}: {}",
                    job.status,
                    e.message
                ),
                _ => tracing::info!(
                    target: T,
                    status = job.status.as_str(),
                    output,
                    output_bytes = job.output_bytes,
                    "job {}",
                    job.status
                ),
            }
            for w in &outcome.warnings {
                tracing::warn!(target: T, "{w}");
            }
        }
    }
}

impl ProgressSink for JobEventSink<'_> {
    fn stage(&self, stage: Stage) {
        self.emit(JobEvent::Engine(stage));
    }
    fn file_decoded(&self, index: usize, path: &Path, samples: u64) {
        self.emit(JobEvent::FileDecoded {
            index,
            path,
            samples,
        });
    }
    fn encoded(&self, done: u64, total: u64) {
        self.emit(JobEvent::Encoded { done, total });
    }
    fn finding(&self, finding: &Finding) {
        self.emit(JobEvent::Finding(finding));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log(Mutex<Vec<(Uuid, String)>>);
    impl JobEvents for Log {
        fn event(&self, job_id: Uuid, event: JobEvent<'_>) {
            self.0.lock().unwrap().push((job_id, format!("{event:?}")));
        }
    }

    #[test]
    fn the_sink_stamps_the_job_and_maps_the_engine_callbacks() {
        let log = Log::default();
        let id = Uuid::new_v4();
        let sink = JobEventSink::new(id, &log);
        sink.stage(Stage::Convert);
        sink.encoded(5, 10);
        sink.file_decoded(0, Path::new("a.mp3"), 7);
        sink.emit(JobEvent::Step(JobStep::Publish));
        let got = log.0.into_inner().unwrap();
        assert!(got.iter().all(|(j, _)| *j == id));
        let texts: Vec<_> = got.into_iter().map(|(_, t)| t).collect();
        assert_eq!(
            texts,
            [
                "Engine(Convert)",
                "Encoded { done: 5, total: 10 }",
                "FileDecoded { index: 0, path: \"a.mp3\", samples: 7 }",
                "Step(Publish)",
            ]
        );
    }

    #[test]
    fn step_names_are_the_timing_stage_names() {
        let names: Vec<_> = [
            JobStep::Validate,
            JobStep::Prepare,
            JobStep::Backup,
            JobStep::Convert,
            JobStep::Publish,
            JobStep::PostAction,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            names,
            [
                "validate",
                "prepare",
                "backup",
                "convert",
                "publish",
                "post_action"
            ]
        );
        assert_eq!(
            serde_json::to_string(&JobStep::PostAction).unwrap(),
            "\"post_action\""
        );
    }
}
