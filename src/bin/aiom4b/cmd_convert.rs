//! `aiom4b convert` and `aiom4b batch`: thin callers of the library's job runner.
//!
//! Every book is one job of [`aiom4b::workflow::JobRunner`] with aiom4b's engine
//! ([`BookEngine`]): validate → prepare (scan, probe, plan — before the backup, so a folder
//! that cannot be converted costs no backup) → backup → convert into the job's `.part` →
//! publish → move or delete the sources. Here are the arguments, what the user sees of the
//! job's events (the plan's warnings, a bar) and the exit codes.
use crate::args::{AutoMatchArgs, BatchCmdArgs, BookArgs, ConvertArgs, EncodeArgs, MatchArg};
use crate::hints::with_flags;
use crate::workflow_cmds::{self, BatchArgs};
use crate::{ui, EXIT_FAILURE, EXIT_USAGE};
use aiom4b::metadata::fit::FitOptions;
use aiom4b::metadata::rank::LocalBook;
use aiom4b::metadata::{
    self, AppliedMetadata, AutoMatchEngine, LookupBy, LookupRequest, MetadataEngine, Providers,
    ResolvedBook,
};
use aiom4b::workflow::{
    BookEngine, Config, JobEvent, JobEvents, JobOutcome, JobRunner, JobStatus, JobStep,
};
use aiom4b::{ChapterMode, PlanOptions};
use aiom4b::{ConvertReport, ProgressSink, Severity};
use anyhow::{Context as _, Result};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// The engine for every book of one command; its options are also recorded in each job.
fn engine(book: &BookArgs, encode: &EncodeArgs, plan: PlanOptions, cfg: &Config) -> BookEngine {
    // A bitrate or preset given on the command line asks for that format: `auto` then
    // encodes rather than copying the parts' own.
    let asked = plan.target.bitrate_bps.is_some() || plan.target.preset != aiom4b::Preset::Default;
    BookEngine::new(
        book.scan_options(cfg),
        cfg.limits(),
        // The plan judges truncated files, so it must know whether damage is accepted.
        {
            let mut o = plan;
            o.allow_damaged = encode.allow_damaged;
            o
        },
        {
            let mut o = encode.convert_options();
            if asked && o.audio == aiom4b::AudioMode::Auto {
                o.audio = aiom4b::AudioMode::Encode;
            }
            o
        },
    )
}

/// What the user sees of one job: the plan's warnings, then a bar while it converts (with the
/// engine's findings above it).
struct Display {
    show: bool,
    state: Mutex<DisplayState>,
}

#[derive(Default)]
struct DisplayState {
    step: Option<JobStep>,
    sample_rate: u32,
    bar: Option<ui::Bar>,
}

impl Display {
    fn new(show: bool) -> Self {
        Display {
            show,
            state: Mutex::new(DisplayState::default()),
        }
    }
}

impl JobEvents for Display {
    fn event(&self, _job: Uuid, event: JobEvent<'_>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            JobEvent::Step(step) => {
                if let Some(bar) = st.bar.take() {
                    bar.finish();
                }
                if step == JobStep::Convert {
                    st.bar = Some(ui::Bar::new(self.show, st.sample_rate, !self.show));
                }
                st.step = Some(step);
            }
            JobEvent::Planned { sample_rate, .. } => st.sample_rate = sample_rate,
            JobEvent::Engine(stage) => st.bar.iter().for_each(|b| b.stage(stage)),
            JobEvent::Encoded { done, total } => st.bar.iter().for_each(|b| b.encoded(done, total)),
            JobEvent::Finding(f) => match &st.bar {
                Some(bar) => bar.finding(f),
                // The plan's findings, before anything is backed up.
                None if self.show && f.severity >= Severity::Warning => eprintln!(
                    "{}: {}",
                    ui::severity_word(f.severity),
                    ui::escape(&with_flags(&f.to_string()))
                ),
                None => {}
            },
            JobEvent::Finished(_) => {
                if let Some(bar) = st.bar.take() {
                    bar.finish();
                }
            }
            _ => {}
        }
    }
}

/// A batch shows no bar (several books run at once): a line per book in the log.
struct BatchLog;

impl JobEvents for BatchLog {
    fn event(&self, _job: Uuid, event: JobEvent<'_>) {
        if let JobEvent::Started { folders } = event {
            for folder in folders {
                tracing::info!(folder = %folder.display(), "converting");
            }
        }
    }
}

/// `aiom4b convert FOLDER...` (one book) or `aiom4b convert --each FOLDER...` (a batch).
pub fn convert(cfg: &Config, a: ConvertArgs, quiet: bool) -> Result<u8> {
    let mut engine = engine(&a.input.book, &a.encode, a.input.plan_options(cfg), cfg);
    if a.chapters_file.is_some() && a.encode.chapters == Some(crate::args::ChaptersArg::Silence) {
        eprintln!(
            "aiom4b: error: --chapters silence and --chapters-file both say where chapters come from; give one (--snap-to-silence moves a chapters file's marks to pauses)"
        );
        return Ok(EXIT_USAGE);
    }
    // A bad pause or chapter length is a usage error, before any job or backup exists.
    if let Err(e) = engine.convert.validate_chapters() {
        eprintln!("aiom4b: error: {e}");
        return Ok(EXIT_USAGE);
    }
    if let Some(f) = &a.chapters_file {
        engine.convert.chapters = ChapterMode::File(f.clone());
    }
    if a.each {
        let batch = BatchArgs {
            force: a.force,
            json: a.json,
            job: a.job.clone(),
        };
        let cover_given = a.input.meta.cover.is_some();
        return run_books(
            cfg,
            &a.input.folders,
            engine,
            &batch,
            &a.lookup.auto,
            cover_given,
        );
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
            eprintln!(
                "aiom4b: error: {}",
                ui::escape_lines(&with_flags(&e.to_string()))
            );
            return Ok(EXIT_USAGE);
        }
        Err(e @ aiom4b::workflow::Error::MoveTargetFull { .. }) => {
            eprintln!(
                "aiom4b: error: {}",
                ui::escape_lines(&with_flags(&e.to_string()))
            );
            return Ok(EXIT_FAILURE);
        }
        _ => {}
    }
    let show = !quiet && !a.json;
    // --asin / --match auto: the book resolved now (the network is asked after the
    // request's checks, before any job or backup exists); its fields become the plan's overrides.
    let lookup = match (&a.lookup.asin, a.lookup.auto.match_mode) {
        (None, None) => None,
        _ => Some(resolve(cfg, &a, &mut engine, quiet)),
    };
    request.options = engine.options_json();

    crate::signals::watch(&wf);
    let (outcome, meta) = match lookup {
        Some(Lookup {
            resolved: Some(resolved),
            fit,
            warnings,
            notice,
        }) => {
            let silence = engine.convert.silence;
            let wrapped = MetadataEngine::new(engine, resolved, silence, fit);
            let outcome = JobRunner::new(&wf, &wrapped).run(request, &Display::new(show))?;
            let applied = wrapped.applied();
            let doc = match &applied {
                Some(m) => {
                    let mut d = serde_json::to_value(m)?;
                    d["applied"] = true.into();
                    let mut w = warnings.clone();
                    w.extend(m.warnings.iter().cloned());
                    d["warnings"] = serde_json::json!(w);
                    d
                }
                None => {
                    serde_json::json!({ "applied": false, "warnings": warnings, "notice": notice })
                }
            };
            (outcome, Some((doc, applied)))
        }
        Some(Lookup {
            resolved: None,
            warnings,
            notice,
            ..
        }) => {
            let outcome = JobRunner::new(&wf, &engine).run(request, &Display::new(show))?;
            let doc =
                serde_json::json!({ "applied": false, "warnings": warnings, "notice": notice });
            (outcome, Some((doc, None)))
        }
        None => (
            JobRunner::new(&wf, &engine).run(request, &Display::new(show))?,
            None,
        ),
    };
    finish_one(&outcome, a.json, quiet, meta.as_ref())
}

/// The book `--asin`/`--match auto` resolved before the job, or why there is none.
struct Lookup {
    resolved: Option<ResolvedBook>,
    fit: FitOptions,
    /// Provider failures and what was left out (already printed).
    warnings: Vec<String>,
    /// Why no book is applied (already printed).
    notice: Option<String>,
}

/// Resolves `--asin` (Audnexus) or `--match auto` (inspect the folders, search Audible's
/// catalog, rank, take the best at or above the threshold, fetch it from Audnexus); fills the
/// plan's overrides from it. Never fails: a provider failure or no confident match is a
/// warning or notice (printed here) and the book is converted with the folder's tags.
fn resolve(cfg: &Config, a: &ConvertArgs, engine: &mut BookEngine, quiet: bool) -> Lookup {
    let region = a.lookup.auto.region;
    let keep = "keeping the folder's tags";
    let by = match &a.lookup.asin {
        Some(asin) => Some(LookupBy::Asin(asin.clone())),
        None => match aiom4b::plan::inspect(
            &a.input.folders,
            &engine.scan,
            &engine.limits,
            &engine.plan,
        ) {
            Ok(ins) => ins.book.map(|book| LookupBy::Match {
                local: LocalBook::from_book(&book),
                threshold: a.lookup.auto.match_threshold,
            }),
            // The job reports what is wrong with the folder.
            Err(_) => None,
        },
    };
    let mut look = Lookup {
        resolved: None,
        fit: FitOptions::default(),
        warnings: Vec::new(),
        notice: None,
    };
    if let Some(by) = by {
        let mut req = LookupRequest::new(by, region);
        req.chapters = !(a.chapters_file.is_some()
            || a.encode.no_chapters
            || a.encode.chapters == Some(crate::args::ChaptersArg::Silence));
        req.cover = a.input.meta.cover.is_none();
        req.keeping = keep.into();
        let found = Providers::new(&cfg.data_dir).resolve(&req);
        look.warnings = found.warnings;
        look.notice = found.notice;
        look.resolved = found.resolved;
    }
    if let Some(resolved) = &look.resolved {
        if resolved.chapters.is_some() {
            // Audible's marks replace the files' marks: snapping those is wasted work, and
            // --snap-to-silence is the window of the fit instead.
            if let Some(w) = engine.convert.snap_to_silence.take() {
                look.fit.window_secs = w;
            }
        }
        engine.plan.overrides = metadata::overrides(&engine.plan.overrides, &resolved.book);
        if !quiet {
            eprintln!(
                "aiom4b: metadata from Audible: {} {} — {} ({}{})",
                resolved.book.asin,
                ui::escape(&resolved.book.title),
                ui::escape(&resolved.book.authors.join(", ")),
                region,
                resolved
                    .score
                    .map(|s| format!(", score {s:.2}"))
                    .unwrap_or_default()
            );
        }
    }
    for w in &look.warnings {
        eprintln!("aiom4b: warning: {}", ui::escape_lines(w));
    }
    if let Some(n) = &look.notice {
        if !quiet {
            eprintln!("aiom4b: {}", ui::escape_lines(n));
        }
    }
    look
}

/// Prints the outcome of one job; returns the exit code.
fn finish_one(
    outcome: &JobOutcome,
    json: bool,
    quiet: bool,
    meta: Option<&(serde_json::Value, Option<AppliedMetadata>)>,
) -> Result<u8> {
    let job = &outcome.job;
    let report: Option<&ConvertReport> = outcome.report.as_ref();
    if json {
        let mut doc = match (&report, job.status) {
            (Some(r), JobStatus::Completed) => {
                let mut r = (*r).clone();
                crate::hints::findings_with_flags(&mut r.findings);
                serde_json::to_value(r)?
            }
            _ => serde_json::json!({}),
        };
        // The engine reported its `.part`; the user wants the published file.
        doc["output_path"] = serde_json::json!(job.output_path);
        if !job.output_parts.is_empty() {
            doc["parts"] = serde_json::json!(job.output_parts);
        }
        doc["size_bytes"] = serde_json::json!(job.output_bytes);
        doc["job_id"] = serde_json::json!(job.id);
        doc["status"] = serde_json::json!(job.status);
        doc["error"] = serde_json::json!(job.error);
        if let Some((m, _)) = meta {
            doc["metadata"] = m.clone();
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    let short_id = &job.id.to_string()[..8];
    match job.status {
        JobStatus::Completed => {
            if !json && !quiet {
                // A split book: its parts, one per line, then the summary.
                for p in &job.output_parts {
                    println!("{}", ui::path(p));
                }
                let output = match job.output_parts.len() {
                    0 => ui::path(job.output_path.clone().unwrap_or_default()),
                    n => format!("  {n} parts"),
                };
                match &report {
                    Some(r) => println!(
                        "{}  {}  {} chapters  {}  {:.0}× realtime  (job {short_id})",
                        output,
                        aiom4b::chapters::format_samples(r.total_samples, r.sample_rate),
                        r.chapters.len(),
                        crate::human::bytes(job.output_bytes.unwrap_or(r.size_bytes)),
                        r.realtime_factor
                    ),
                    None => println!("{output}  (job {short_id})"),
                }
                if let Some(r) = report {
                    if r.audio.copied {
                        println!("  audio copied, not re-encoded: {}", r.audio.why);
                    }
                    print_snapped(r);
                }
            }
            if let Some((_, Some(m))) = meta {
                print_applied(m, quiet || json);
            }
            // Written, but what was asked afterwards (moving or deleting the sources) failed:
            // the book is there, and the exit code says not everything was done.
            if let Some(e) = &job.error {
                eprintln!(
                    "aiom4b: the book was written, but: {} ({} error)\n  what to do: {}",
                    ui::escape_lines(&with_flags(&e.message)),
                    e.category,
                    ui::escape_lines(&with_flags(&e.remedy))
                );
                return Ok(EXIT_FAILURE);
            }
            Ok(0)
        }
        JobStatus::Cancelled => match crate::signals::interrupted() {
            Some(code) => {
                eprintln!("aiom4b: interrupted; job {short_id} cancelled, no output was written");
                Ok(code)
            }
            // No signal here: someone cancelled the job (`aiom4b jobs cancel`, the service).
            None => {
                eprintln!(
                    "aiom4b: job {short_id} was cancelled from elsewhere (`aiom4b jobs cancel` or \
                     the service); no output was written"
                );
                Ok(EXIT_FAILURE)
            }
        },
        _ => {
            match &job.error {
                Some(e) => eprintln!(
                    "aiom4b: error: {} ({} error)\n  what to do: {}\n  job: {} (details: aiom4b status {short_id})",
                    ui::escape_lines(&with_flags(&e.message)),
                    e.category,
                    ui::escape_lines(&with_flags(&e.remedy)),
                    job.id
                ),
                None => eprintln!("aiom4b: error: job {} ended {}", job.id, job.status),
            }
            Ok(EXIT_FAILURE)
        }
    }
}

/// What `--asin`/`--match auto` wrote into the book after the conversion; its warnings.
fn print_applied(m: &AppliedMetadata, quiet: bool) {
    if !quiet {
        let mut what: Vec<String> = Vec::new();
        if m.cover {
            what.push("cover".into());
        }
        if let Some(f) = &m.chapter_fit {
            what.push(format!(
                "{} chapters from Audible fitted to the pauses (confidence {:.2})",
                f.chapters.len(),
                f.confidence
            ));
        }
        what.extend(
            m.changes
                .iter()
                .filter_map(|c| c.split(':').next())
                .filter(|k| !matches!(*k, "cover" | "chapters"))
                .map(str::to_string),
        );
        println!(
            "metadata {} ({}{}): {}",
            m.asin,
            m.region,
            m.score
                .map(|s| format!(", score {s:.2}"))
                .unwrap_or_default(),
            if what.is_empty() {
                "tags only".to_string()
            } else {
                ui::escape(&what.join(", ")).into_owned()
            }
        );
    }
    for w in &m.warnings {
        eprintln!("aiom4b: warning: {}", ui::escape_lines(w));
    }
}

/// With `--snap-to-silence`: where each chapter mark went and how far it moved.
fn print_snapped(r: &ConvertReport) {
    if r.snapped.is_empty() {
        return;
    }
    println!("chapter marks snapped to pauses:");
    for (i, s) in r.snapped.iter().enumerate() {
        let at = aiom4b::chapters::format_samples(s.chapter.start_samples, r.sample_rate);
        let how = if !s.found {
            "no pause in the window: not moved".to_string()
        } else if s.moved_by == 0 {
            "not moved".to_string()
        } else {
            format!(
                "moved {:+.3} s",
                s.moved_by as f64 / r.sample_rate.max(1) as f64
            )
        };
        println!(
            "  {:>3}  {at}  {}  ({how})",
            i + 1,
            ui::escape(&s.chapter.title)
        );
    }
}

/// `aiom4b batch LIBRARY_DIR`.
pub fn batch(cfg: &Config, a: BatchCmdArgs) -> Result<u8> {
    let books = workflow_cmds::library_books(&a.library)?;
    let engine = engine(&a.book, &a.encode, a.book.plan_options(cfg), cfg);
    if let Err(e) = engine.convert.validate_chapters() {
        eprintln!("aiom4b: error: {e}");
        return Ok(EXIT_USAGE);
    }
    run_books(cfg, &books, engine, &a.batch, &a.auto, false)
}

/// One job per book folder through the runner's batch, which divides the cores: each book's
/// engine gets the threads its `JobContext` offers. No bar (several books run at once); a
/// line per book in the log, the summary table at the end.
fn run_books(
    cfg: &Config,
    books: &[PathBuf],
    engine: BookEngine,
    batch: &BatchArgs,
    auto: &AutoMatchArgs,
    cover_given: bool,
) -> Result<u8> {
    let wf = Arc::new(workflow_cmds::open(cfg)?);
    crate::signals::watch(&wf);
    let options = engine.options_json();
    let code = match auto.match_mode {
        None => {
            let runner = JobRunner::new(&wf, &engine);
            workflow_cmds::run_batch(&runner, books, batch, options, &BatchLog)?
        }
        Some(MatchArg::Auto) => {
            // Audible's chapters unless the user said where chapters come from.
            let chapters = !matches!(
                engine.convert.chapters,
                ChapterMode::None | ChapterMode::Silence | ChapterMode::File(_)
            );
            let mut fit = FitOptions::default();
            if let Some(w) = engine.convert.snap_to_silence {
                fit.window_secs = w;
            }
            let matching = AutoMatchEngine::new(
                engine,
                Providers::new(&cfg.data_dir),
                auto.region,
                auto.match_threshold,
                chapters,
                !cover_given,
                fit,
            );
            let runner = JobRunner::new(&wf, &matching);
            workflow_cmds::run_batch(&runner, books, batch, options, &BatchLog)?
        }
    };
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
