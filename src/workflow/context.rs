//! What the engine gets while it converts one job: where to write, how many threads, progress
//! (into the job record and the job's events), cancellation and the time limit.
use crate::model::Finding;
use crate::progress::{ProgressSink, Stage};
use crate::workflow::events::{JobEvent, JobEventSink};
use crate::workflow::hooks::Hooks;
use crate::workflow::jobs::JobStore;
use crate::workflow::watchdog::{auto_timeout, Watchdog};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Progress is written at most this often…
const PROGRESS_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// …and only when it moved by at least this many percentage points.
const PROGRESS_MIN_STEP: f64 = 1.0;

/// What the converter gets: the job id, where to write, progress, cancellation.
/// Shared by reference with the engine's threads (it is `Sync`).
pub struct JobContext<'a> {
    pub(crate) id: Uuid,
    pub(crate) folders: &'a [PathBuf],
    pub(crate) part_path: &'a Path,
    pub(crate) engine_threads: usize,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) store: &'a dyn JobStore,
    pub(crate) hooks: &'a Hooks,
    /// (time of the last write, percent written)
    pub(crate) throttle: Mutex<(Option<Instant>, f64)>,
    pub(crate) watchdog: &'a Watchdog,
    pub(crate) auto_timeout: bool,
    pub(crate) events: JobEventSink<'a>,
}

impl std::fmt::Debug for JobContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.id)
            .field("part_path", &self.part_path)
            .finish_non_exhaustive()
    }
}

impl JobContext<'_> {
    /// The id of the job being run.
    pub fn job_id(&self) -> Uuid {
        self.id
    }

    /// The (canonical) source folders of the book.
    pub fn source_folders(&self) -> &[PathBuf] {
        self.folders
    }

    /// Where to write the M4B: a hidden `.part` file in the output folder, removed if the job
    /// fails and after a crash; renamed to its final name on success. Any other temporary file
    /// whose name starts with this file's name is cleaned up the same way.
    pub fn part_path(&self) -> &Path {
        self.part_path
    }

    /// Threads the engine should use for this job (cores shared between concurrent jobs).
    pub fn engine_threads(&self) -> usize {
        self.engine_threads
    }

    /// Reports progress as a fraction 0..=1. Cheap to call per packet: database writes are
    /// throttled to at most two per second and only on a change of at least one percent.
    /// A failing write is logged and ignored — progress never fails a conversion.
    pub fn progress(&self, fraction: f64) {
        let percent = (fraction * 100.0).clamp(0.0, 100.0);
        let mut t = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        let due =
            t.0.is_none_or(|last| last.elapsed() >= PROGRESS_MIN_INTERVAL);
        if !due || percent - t.1 < PROGRESS_MIN_STEP {
            return;
        }
        let first = t.0.is_none();
        *t = (Some(Instant::now()), percent);
        drop(t);
        if first {
            self.hooks.stage("convert");
        }
        if let Err(e) = self.store.set_progress(self.id, percent) {
            tracing::debug!(error = %e, "progress not recorded");
        }
        self.events.emit(JobEvent::Progress {
            fraction: percent / 100.0,
        });
    }

    /// True once the job should stop: cancelled by the user or past its time limit. The
    /// converter checks it per packet and returns [`crate::workflow::JobError::cancelled`].
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The flag behind [`JobContext::is_cancelled`], for the engine's own cancel token.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// The job's events, for what the engine reports besides progress.
    pub fn events(&self) -> JobEventSink<'_> {
        self.events
    }

    /// Tells the workflow the audio length once known, so the derived time limit fits the book.
    /// Ignored when the limit was set explicitly.
    pub fn set_audio_duration(&self, secs: f64) {
        if self.auto_timeout && secs.is_finite() && secs >= 0.0 {
            self.watchdog.set_limit(auto_timeout(secs));
        }
    }
}

/// Share of the job's progress that encoding covers; the rest is finishing, verifying and
/// publishing, so a job does not sit at 100 % while its file is still being checked.
const ENCODE_PROGRESS_SHARE: f64 = 0.95;

/// The engine reports progress straight into the job record (throttled by
/// [`JobContext::progress`]) and to the job's events (every call).
impl ProgressSink for JobContext<'_> {
    fn stage(&self, stage: Stage) {
        self.events.stage(stage);
    }
    fn file_decoded(&self, index: usize, path: &Path, samples: u64) {
        self.events.file_decoded(index, path, samples);
    }
    fn encoded(&self, done: u64, total: u64) {
        self.events.encoded(done, total);
        if total > 0 {
            self.progress(ENCODE_PROGRESS_SHARE * (done.min(total) as f64 / total as f64));
        }
    }
    fn finding(&self, finding: &Finding) {
        self.events.finding(finding);
    }
}
