//! The engine a job runs: validate and plan the book, then convert it into the job's `.part`.
//!
//! [`JobEngine`] is the seam between the workflow and the conversion: [`BookEngine`] is
//! aiom4b's own engine (scan, probe, plan, [`Converter::convert_to_part`]); tests put a fake
//! in its place ([`ConvertFn`]), so the workflow is tested without FFmpeg.
use crate::model::{Book, Severity};
use crate::options::{ConvertOptions, Limits, PlanOptions, ScanOptions, SplitAt};
use crate::progress::CancelToken;
use crate::workflow::context::JobContext;
use crate::workflow::errors::JobError;
use crate::workflow::events::{JobEvent, JobEventSink};
use crate::workflow::jobs::StageTiming;
use crate::workflow::request::ConversionResult;
use crate::Converter;
use std::path::PathBuf;

/// Converts the books of jobs. Shared by the jobs of a batch, so it is `Sync`.
pub trait JobEngine: Sync {
    /// What [`JobEngine::prepare`] hands to every [`JobEngine::convert`] attempt.
    type Plan;

    /// Validates and plans the book in the canonical source `folders`. Runs once per job,
    /// after the request is checked and before anything is backed up, so an input that cannot
    /// be converted fails its job (category input, with a remedy) without a useless backup.
    /// A panic in it fails the job, not the process.
    fn prepare(
        &self,
        folders: &[PathBuf],
        events: &JobEventSink<'_>,
    ) -> Result<Self::Plan, JobError>;

    /// Writes the book into [`JobContext::part_path`], reporting progress to `ctx` (a
    /// [`crate::ProgressSink`]) and stopping when [`JobContext::is_cancelled`]. Called again
    /// after a transient failure ([`JobError::transient`]); a panic fails the job.
    fn convert(
        &self,
        ctx: &JobContext<'_>,
        plan: &Self::Plan,
    ) -> Result<ConversionResult, JobError>;

    /// Publish the book as parts cut at chapter boundaries when it is longer or larger than
    /// this (`--split-at`): the workflow's publish step then writes the parts as packet copies
    /// of the verified output, each verified, publishes all or none, and lists them in
    /// [`Job::output_parts`](crate::workflow::jobs::Job::output_parts). Default: never.
    fn split_at(&self) -> Option<SplitAt> {
        None
    }
}

impl<E: JobEngine + ?Sized> JobEngine for &E {
    type Plan = E::Plan;
    fn prepare(
        &self,
        folders: &[PathBuf],
        events: &JobEventSink<'_>,
    ) -> Result<Self::Plan, JobError> {
        (**self).prepare(folders, events)
    }
    fn convert(
        &self,
        ctx: &JobContext<'_>,
        plan: &Self::Plan,
    ) -> Result<ConversionResult, JobError> {
        (**self).convert(ctx, plan)
    }
    fn split_at(&self) -> Option<SplitAt> {
        (**self).split_at()
    }
}

/// An engine that is only a convert function (nothing to plan): for tests and simple tools.
#[derive(Debug, Clone, Copy)]
pub struct ConvertFn<F>(pub F);

impl<F> JobEngine for ConvertFn<F>
where
    F: Fn(&JobContext<'_>) -> Result<ConversionResult, JobError> + Sync,
{
    type Plan = ();
    fn prepare(&self, _: &[PathBuf], _: &JobEventSink<'_>) -> Result<(), JobError> {
        Ok(())
    }
    fn convert(&self, ctx: &JobContext<'_>, _: &()) -> Result<ConversionResult, JobError> {
        (self.0)(ctx)
    }
}

/// aiom4b's engine: what every book of one command (or one request) is converted with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BookEngine {
    /// How the book folders are scanned.
    pub scan: ScanOptions,
    /// Size limits the plan enforces.
    pub limits: Limits,
    /// The plan judges damaged files, so its `allow_damaged` should follow the conversion's.
    pub plan: PlanOptions,
    /// How books are converted; `jobs` is replaced per job by
    /// [`JobContext::engine_threads`](crate::workflow::JobContext::engine_threads).
    pub convert: ConvertOptions,
}

impl BookEngine {
    /// An engine with these options for every stage.
    pub fn new(
        scan: ScanOptions,
        limits: Limits,
        plan: PlanOptions,
        convert: ConvertOptions,
    ) -> Self {
        BookEngine {
            scan,
            limits,
            plan,
            convert,
        }
    }

    /// The options as a job record keeps them ([`crate::workflow::JobRequest::options`]).
    pub fn options_json(&self) -> serde_json::Value {
        serde_json::json!({
            "scan": self.scan,
            "limits": self.limits,
            "plan": self.plan,
            "convert": self.convert,
        })
    }
}

impl JobEngine for BookEngine {
    type Plan = Book;

    /// Scan, probe and plan. Blocking findings fail the job as input errors, with each file's
    /// remedy; every finding of the plan is also an event.
    fn split_at(&self) -> Option<SplitAt> {
        self.convert.split_at
    }

    fn prepare(&self, folders: &[PathBuf], events: &JobEventSink<'_>) -> Result<Book, JobError> {
        let book = crate::plan::plan(folders, &self.scan, &self.limits, &self.plan)?;
        events.emit(JobEvent::Planned {
            duration_secs: book.duration_secs(),
            sample_rate: book.target.sample_rate,
        });
        for f in &book.findings {
            events.emit(JobEvent::Finding(f));
        }
        Ok(book)
    }

    /// The planned book into the job's `.part`, which the workflow publishes. The engine's
    /// cancel token is the job's cancel flag; its progress goes to the job record and events.
    fn convert(&self, ctx: &JobContext<'_>, book: &Book) -> Result<ConversionResult, JobError> {
        ctx.set_audio_duration(book.duration_secs());
        let converter = Converter::new(ConvertOptions {
            jobs: ctx.engine_threads(),
            ..self.convert.clone()
        });
        let cancel = CancelToken::from_flag(ctx.cancel_flag());
        let report = converter
            .convert_to_part(book, ctx.part_path(), ctx, &cancel)
            .map_err(|e| JobError::from_engine(e, ctx.part_path()))?;
        let ms = |secs: f64| (secs * 1000.0).round() as u64;
        let t = &report.timings;
        Ok(ConversionResult {
            output: report.output_path.clone(),
            metadata: book.metadata.clone(),
            audio_duration_secs: Some(report.duration_secs),
            stage_timings: [
                ("encode", t.convert_secs),
                ("finalize", t.finalize_secs),
                ("verify", t.verify_secs),
            ]
            .into_iter()
            .map(|(stage, secs)| StageTiming {
                stage: stage.into(),
                millis: ms(secs),
            })
            .collect(),
            warnings: report
                .findings
                .iter()
                .filter(|f| f.severity >= Severity::Warning)
                .map(ToString::to_string)
                .collect(),
            report: Some(report),
        })
    }
}
