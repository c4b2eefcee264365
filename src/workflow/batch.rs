//! Many books at once: `aiom4b batch LIBRARY_DIR` and `aiom4b convert --each FOLDER...`.
//!
//! One job per book folder, at most `MAX_CONCURRENT_JOBS` at a time on a bounded pool of named
//! threads. The cores are divided: each book's engine gets `max(1, cores / concurrent)`
//! threads, so the pool and the engine's own parallelism together don't oversubscribe the
//! machine. A book already converted (a completed job for the same folder whose output still
//! exists) is skipped unless `force`. One book failing — even panicking — does not stop the
//! others; the report lists every book.
use crate::workflow::engine::JobEngine;
use crate::workflow::events::JobEvents;
use crate::workflow::jobs::{JobFailure, JobFilter, JobStatus};
use crate::workflow::request::JobRequest;
use crate::workflow::runner::JobRunner;
use crate::workflow::Workflow;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use uuid::Uuid;

/// How to run a batch.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BatchOptions {
    /// Convert books that were converted before.
    pub force: bool,
    /// Books at once; `None` follows `MAX_CONCURRENT_JOBS`.
    pub concurrency: Option<usize>,
    /// Settings for every book's job; its `folders` and `engine_threads` are set per book.
    pub request: JobRequest,
}

/// What happened to one book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BookStatus {
    /// Its job completed: the book is written (a failure after publishing, such as moving the
    /// sources, is in [`BookResult::error`]).
    Converted,
    /// Converted before (see [`BookResult::output`]).
    Skipped,
    /// Its job failed, or it could not be run at all (see [`BookResult::error`]).
    Failed,
    /// Cancelled while running, or not started because the batch was cancelled.
    Cancelled,
}

/// One line of the batch summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BookResult {
    /// The book folder, as given.
    pub folder: PathBuf,
    /// What happened to it.
    pub status: BookStatus,
    /// The job that ran; for a skipped book, the earlier job that converted it; `None` when no
    /// job was started.
    pub job_id: Option<Uuid>,
    /// The written `.m4b` (for a skipped book, the earlier one).
    pub output: Option<PathBuf>,
    /// Why it failed or was cancelled; for a converted book, what failed after publishing.
    pub error: Option<JobFailure>,
    /// Wall-clock seconds spent on this book.
    pub elapsed_secs: f64,
}

/// The batch summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchReport {
    /// One result per book, in the order given.
    pub books: Vec<BookResult>,
    /// Books that ran at once.
    pub concurrency: usize,
    /// Engine threads per book.
    pub engine_threads: usize,
}

impl BatchReport {
    /// How many books ended with `status`.
    pub fn count(&self, status: BookStatus) -> usize {
        self.books.iter().filter(|b| b.status == status).count()
    }

    /// True when no book failed or was cancelled.
    pub fn all_ok(&self) -> bool {
        self.count(BookStatus::Failed) == 0 && self.count(BookStatus::Cancelled) == 0
    }
}

/// The completed job that already converted `folder`, if its output still exists.
pub fn already_converted(wf: &Workflow, folder: &Path) -> crate::workflow::Result<Option<Uuid>> {
    let folder = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
    let filter = JobFilter {
        status: Some(JobStatus::Completed),
        source_folder: Some(folder),
        include_archived: true,
        limit: Some(20),
    };
    Ok(wf
        .store()
        .list(&filter)?
        .into_iter()
        .find(|j| j.output_path.as_ref().is_some_and(|p| p.is_file()))
        .map(|j| j.id))
}

impl<E: JobEngine> JobRunner<'_, E> {
    /// Converts each folder of `books` as one book, several at once (see the module
    /// documentation). `events` get every book's job events, from several threads.
    pub fn run_batch(
        &self,
        books: &[PathBuf],
        options: &BatchOptions,
        events: &dyn JobEvents,
    ) -> BatchReport {
        run(self, books, options, events)
    }
}

fn run<E: JobEngine>(
    runner: &JobRunner<'_, E>,
    books: &[PathBuf],
    options: &BatchOptions,
    events: &dyn JobEvents,
) -> BatchReport {
    let wf = runner.workflow();
    let concurrency = options
        .concurrency
        .unwrap_or(wf.config().max_concurrent_jobs)
        .clamp(1, books.len().max(1));
    let engine_threads = wf.config().engine_threads(concurrency);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<BookResult>>> = Mutex::new(vec![None; books.len()]);
    tracing::info!(
        books = books.len(),
        concurrency,
        engine_threads,
        "batch started"
    );

    let worker = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(folder) = books.get(i) else { return };
        let started = Instant::now();
        let result = if wf.is_cancelled() {
            BookResult {
                folder: folder.clone(),
                status: BookStatus::Cancelled,
                job_id: None,
                output: None,
                error: None,
                elapsed_secs: 0.0,
            }
        } else {
            // A panic outside the converter (which run_job already contains) must not take the
            // other books down with it.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                one_book(runner, folder, options, engine_threads, events)
            }))
            .unwrap_or_else(|_| failed(folder, "internal error: the batch worker panicked"))
        };
        let result = BookResult {
            elapsed_secs: started.elapsed().as_secs_f64(),
            ..result
        };
        results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
    };
    std::thread::scope(|s| {
        for n in 0..concurrency {
            let spawned = std::thread::Builder::new()
                .name(format!("aiom4b-book-{n}"))
                .spawn_scoped(s, worker);
            if spawned.is_err() && n == 0 {
                worker(); // no thread at all: run in this one
            }
        }
    });

    let books = results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .zip(books)
        .map(|(r, folder)| r.unwrap_or_else(|| failed(folder, "not processed")))
        .collect();
    let report = BatchReport {
        books,
        concurrency,
        engine_threads,
    };
    tracing::info!(
        converted = report.count(BookStatus::Converted),
        skipped = report.count(BookStatus::Skipped),
        failed = report.count(BookStatus::Failed),
        cancelled = report.count(BookStatus::Cancelled),
        "batch finished"
    );
    report
}

fn failed(folder: &Path, message: &str) -> BookResult {
    BookResult {
        folder: folder.to_path_buf(),
        status: BookStatus::Failed,
        job_id: None,
        output: None,
        error: Some(JobFailure {
            category: crate::workflow::ErrorCategory::System,
            message: message.into(),
            remedy: "see the log in data/logs".into(),
        }),
        elapsed_secs: 0.0,
    }
}

fn one_book<E: JobEngine>(
    runner: &JobRunner<'_, E>,
    folder: &Path,
    options: &BatchOptions,
    engine_threads: usize,
    events: &dyn JobEvents,
) -> BookResult {
    let wf = runner.workflow();
    if !options.force {
        match already_converted(wf, folder) {
            Ok(Some(job)) => {
                let output = wf
                    .store()
                    .get(job)
                    .ok()
                    .flatten()
                    .and_then(|j| j.output_path);
                tracing::info!(folder = %folder.display(), %job, "already converted; skipped (forcing converts it again)");
                return BookResult {
                    folder: folder.to_path_buf(),
                    status: BookStatus::Skipped,
                    job_id: Some(job),
                    output,
                    error: None,
                    elapsed_secs: 0.0,
                };
            }
            Ok(None) => {}
            Err(e) => return failed(folder, &e.to_string()),
        }
    }
    let request = JobRequest {
        folders: vec![folder.to_path_buf()],
        engine_threads: Some(engine_threads),
        ..options.request.clone()
    };
    match runner.run(request, events) {
        Ok(outcome) => BookResult {
            folder: folder.to_path_buf(),
            status: match outcome.job.status {
                JobStatus::Completed => BookStatus::Converted,
                JobStatus::Cancelled => BookStatus::Cancelled,
                _ => BookStatus::Failed,
            },
            job_id: Some(outcome.job.id),
            output: outcome.job.output_path.clone(),
            error: outcome.job.error.clone(),
            elapsed_secs: 0.0,
        },
        Err(e) => failed(folder, &e.to_string()),
    }
}
