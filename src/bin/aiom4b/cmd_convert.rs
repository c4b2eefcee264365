//! `aiom4b convert` and `aiom4b batch`: the engine run as workflow jobs.
//!
//! Every book is one job of `aiom4b::workflow`: prepare (scan, probe, plan — before the backup,
//! so a folder that cannot be converted costs no backup) → backup → the engine writes the job's
//! `.part` ([`Converter::convert_to_part`]) → the workflow names it, sets its permissions,
//! publishes it and moves or deletes the sources. The engine's cancel token is the job's cancel
//! flag, and its progress goes into the job record as well as to the bar.
use crate::args::{BatchCmdArgs, BookArgs, ConvertArgs, EncodeArgs};
use crate::workflow_cmds::{self, BatchArgs};
use crate::{ui, EXIT_FAILURE, EXIT_USAGE};
use aiom4b::options::{ChapterMode, ConvertOptions, Limits, PlanOptions, ScanOptions};
use aiom4b::workflow::{
    Config, ConversionResult, JobContext, JobError, JobOutcome, JobStatus, StageTiming,
};
use aiom4b::{
    plan, Book, CancelToken, ConvertReport, Converter, Finding, NoProgress, ProgressSink, Severity,
    Stage,
};
use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the engine needs for every book of one command; also recorded in each job.
struct Engine {
    scan: ScanOptions,
    limits: Limits,
    plan: PlanOptions,
    convert: ConvertOptions,
}

impl Engine {
    fn new(book: &BookArgs, encode: &EncodeArgs, plan: PlanOptions, cfg: &Config) -> Self {
        Engine {
            scan: book.scan_options(cfg),
            limits: cfg.limits(),
            // The plan judges truncated files, so it must know whether damage is accepted.
            plan: PlanOptions {
                allow_damaged: encode.allow_damaged,
                ..plan
            },
            convert: encode.convert_options(),
        }
    }

    /// The options as the job record keeps them (`aiom4b status ID --json`).
    fn options_json(&self) -> serde_json::Value {
        serde_json::json!({
            "scan": self.scan,
            "limits": self.limits,
            "plan": self.plan,
            "convert": self.convert,
        })
    }

    /// The job's prepare step: scan, probe and plan. Blocking findings fail the job as input
    /// errors, with each file's remedy.
    fn plan(&self, folders: &[PathBuf]) -> Result<Book, JobError> {
        Ok(plan::plan(folders, &self.scan, &self.limits, &self.plan)?)
    }

    /// The job's convert step: the planned book into the job's `.part`, which the workflow
    /// publishes. `display` also gets the progress (the bar, or nothing).
    fn convert(
        &self,
        ctx: &JobContext<'_>,
        book: &Book,
        display: &dyn ProgressSink,
    ) -> Result<(ConversionResult, ConvertReport), JobError> {
        ctx.set_audio_duration(book.duration_secs());
        let converter = Converter::new(ConvertOptions {
            jobs: ctx.engine_threads(),
            ..self.convert.clone()
        });
        let cancel = CancelToken::from_flag(ctx.cancel_flag());
        let report = converter
            .convert_to_part(book, ctx.part_path(), &Tee(display, ctx), &cancel)
            .map_err(|e| JobError::from_engine(e, ctx.part_path()))?;
        let ms = |secs: f64| (secs * 1000.0).round() as u64;
        let t = &report.timings;
        let result = ConversionResult {
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
        };
        Ok((result, report))
    }
}

/// Forwards the engine's progress to two sinks: what the user sees and the job record.
struct Tee<'a>(&'a dyn ProgressSink, &'a dyn ProgressSink);

impl ProgressSink for Tee<'_> {
    fn stage(&self, stage: Stage) {
        self.0.stage(stage);
        self.1.stage(stage);
    }
    fn file_decoded(&self, index: usize, path: &Path, samples: u64) {
        self.0.file_decoded(index, path, samples);
        self.1.file_decoded(index, path, samples);
    }
    fn encoded(&self, done: u64, total: u64) {
        self.0.encoded(done, total);
        self.1.encoded(done, total);
    }
    fn finding(&self, finding: &Finding) {
        self.0.finding(finding);
        self.1.finding(finding);
    }
}

/// `aiom4b convert FOLDER...` (one book) or `aiom4b convert --each FOLDER...` (a batch).
pub fn convert(cfg: &Config, a: ConvertArgs, quiet: bool) -> Result<u8> {
    let mut engine = Engine::new(&a.input.book, &a.encode, a.input.plan_options(cfg), cfg);
    if let Some(f) = &a.chapters_file {
        engine.convert.chapters = ChapterMode::File(f.clone());
    }
    if a.each {
        let batch = BatchArgs {
            force: a.force,
            json: a.json,
            job: a.job.clone(),
        };
        return run_books(cfg, &a.input.folders, &engine, &batch);
    }

    let mut request = a
        .job
        .request(a.input.folders.clone(), engine.options_json())?;
    request.output_file = match &a.input.output {
        Some(o) => Some(std::path::absolute(o).with_context(|| format!("-o {}", o.display()))?),
        None => None,
    };
    request.overwrite = a.overwrite;
    request.engine_threads = a.jobs.map(usize::from);
    request.inputs = [&a.chapters_file, &a.input.meta.cover]
        .into_iter()
        .flatten()
        .cloned()
        .collect();

    let wf = Arc::new(workflow_cmds::open(cfg)?);
    // A request that could only damage what the user owns (an output onto a source, a source
    // inside the backup folder, an unwritable move target) is a usage error: refused before a
    // job exists. Other problems (a missing folder, a full disk) fail the job as before.
    match wf.preflight(&request) {
        Err(e @ aiom4b::workflow::Error::Invalid(_)) => {
            eprintln!("aiom4b: error: {}", ui::escape_lines(&e.to_string()));
            return Ok(EXIT_USAGE);
        }
        Err(e @ aiom4b::workflow::Error::MoveTargetFull { .. }) => {
            eprintln!("aiom4b: error: {}", ui::escape_lines(&e.to_string()));
            return Ok(EXIT_FAILURE);
        }
        _ => {}
    }
    crate::signals::watch(&wf);
    let show = !quiet && !a.json;
    let mut report = None;
    let outcome = wf.run_job_prepared(
        request,
        |folders| {
            let book = engine.plan(folders)?;
            if show {
                for f in book
                    .findings
                    .iter()
                    .filter(|f| f.severity >= Severity::Warning)
                {
                    eprintln!(
                        "{}: {}",
                        ui::severity_word(f.severity),
                        ui::escape(&f.to_string())
                    );
                }
            }
            Ok(book)
        },
        |ctx, book| {
            let bar = ui::Bar::new(show, book.target.sample_rate, !show);
            let converted = engine.convert(ctx, book, &bar);
            bar.finish();
            let (result, r) = converted?;
            report = Some(r);
            Ok(result)
        },
    )?;
    finish_one(&outcome, report, a.json, quiet)
}

/// Prints the outcome of one job; returns the exit code.
fn finish_one(
    outcome: &JobOutcome,
    report: Option<ConvertReport>,
    json: bool,
    quiet: bool,
) -> Result<u8> {
    let job = &outcome.job;
    if json {
        let mut doc = match (&report, job.status) {
            (Some(r), JobStatus::Completed) => serde_json::to_value(r)?,
            _ => serde_json::json!({}),
        };
        // The engine reported its `.part`; the user wants the published file.
        doc["output_path"] = serde_json::json!(job.output_path);
        doc["size_bytes"] = serde_json::json!(job.output_bytes);
        doc["job_id"] = serde_json::json!(job.id);
        doc["status"] = serde_json::json!(job.status);
        doc["error"] = serde_json::json!(job.error);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    let short_id = &job.id.to_string()[..8];
    match job.status {
        JobStatus::Completed => {
            if !json && !quiet {
                let output = job.output_path.clone().unwrap_or_default();
                match &report {
                    Some(r) => println!(
                        "{}  {}  {} chapters  {:.1} MB  {:.0}× realtime  (job {short_id})",
                        ui::path(&output),
                        aiom4b::chapters::format_samples(r.total_samples, r.sample_rate),
                        r.chapters.len(),
                        job.output_bytes.unwrap_or(r.size_bytes) as f64 / 1_048_576.0,
                        r.realtime_factor
                    ),
                    None => println!("{}  (job {short_id})", ui::path(&output)),
                }
            }
            // Written, but what was asked afterwards (moving or deleting the sources) failed:
            // the book is there, and the exit code says not everything was done.
            if let Some(e) = &job.error {
                eprintln!(
                    "aiom4b: the book was written, but: {} ({} error)\n  what to do: {}",
                    ui::escape_lines(&e.message),
                    e.category,
                    ui::escape_lines(&e.remedy)
                );
                return Ok(EXIT_FAILURE);
            }
            Ok(0)
        }
        JobStatus::Cancelled => {
            eprintln!("aiom4b: interrupted; job {short_id} cancelled, no output was written");
            Ok(crate::signals::exit_code())
        }
        _ => {
            match &job.error {
                Some(e) => eprintln!(
                    "aiom4b: error: {} ({} error)\n  what to do: {}\n  job: {} (details: aiom4b status {short_id})",
                    ui::escape_lines(&e.message),
                    e.category,
                    ui::escape_lines(&e.remedy),
                    job.id
                ),
                None => eprintln!("aiom4b: error: job {} ended {}", job.id, job.status),
            }
            Ok(EXIT_FAILURE)
        }
    }
}

/// `aiom4b batch LIBRARY_DIR`.
pub fn batch(cfg: &Config, a: BatchCmdArgs) -> Result<u8> {
    let books = workflow_cmds::library_books(&a.library)?;
    let engine = Engine::new(&a.book, &a.encode, a.book.plan_options(cfg), cfg);
    run_books(cfg, &books, &engine, &a.batch)
}

/// One job per book folder through the workflow's batch runner, which divides the cores:
/// each book's engine gets the threads its `JobContext` offers. No bar (several books run at
/// once); a line per book in the log, the summary table at the end.
fn run_books(cfg: &Config, books: &[PathBuf], engine: &Engine, batch: &BatchArgs) -> Result<u8> {
    let wf = Arc::new(workflow_cmds::open(cfg)?);
    crate::signals::watch(&wf);
    let code = workflow_cmds::run_batch(
        &wf,
        books,
        batch,
        engine.options_json(),
        |folder| {
            tracing::info!(folder = %folder.display(), "converting");
            engine.plan(&[folder.to_path_buf()])
        },
        |_, ctx, book| engine.convert(ctx, book, &NoProgress).map(|(r, _)| r),
    )?;
    if wf.is_cancelled() {
        eprintln!("aiom4b: interrupted; unfinished books were cancelled");
        return Ok(crate::signals::exit_code());
    }
    Ok(if code == workflow_cmds::EXIT_OK {
        0
    } else {
        EXIT_FAILURE
    })
}
