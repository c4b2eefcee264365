//! The steps of one job, in order: [`Run::validate`], [`Run::prepare`], [`Run::backup`],
//! [`Run::convert`], [`Run::publish`], [`Run::post_action`], then [`Run::finish`] records the
//! end. Each step records what it did in the job before the next begins (write-ahead), so
//! that recovery after a crash knows what to clean up.
use crate::convert::ConvertReport;
use crate::options::SplitAt;
use crate::publish::{self, PartFile};
use crate::split::PreparedSplit;
use crate::workflow::backup::BackupInfo;
use crate::workflow::config::OutputLayout;
use crate::workflow::context::JobContext;
use crate::workflow::engine::JobEngine;
use crate::workflow::errors::{Error, ErrorCategory, JobError, Result};
use crate::workflow::events::{JobEvent, JobEventSink, JobStep};
use crate::workflow::jobs::{self, Job, JobFailure, JobStatus, StageTiming};
use crate::workflow::lease::{self, Heartbeat};
use crate::workflow::library;
use crate::workflow::post_action::{self, PostAction};
use crate::workflow::request::{ConversionResult, JobOutcome, JobRequest};
use crate::workflow::watchdog::{auto_timeout, Watchdog};
use crate::workflow::{audit, folders, naming, preflight, retry, Workflow};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Conversion attempts per job when failures are transient.
const MAX_ATTEMPTS: u32 = 3;

type StepResult<T> = std::result::Result<T, JobError>;

/// One job while it runs: its record, what the store holds of it, and what it was asked.
pub(crate) struct Run<'w> {
    pub(crate) wf: &'w Workflow,
    pub(crate) job: Job,
    /// The status the store holds (an update only succeeds if it still holds it).
    pub(crate) stored: JobStatus,
    /// The output is in place: what fails afterwards does not undo the book.
    pub(crate) published: bool,
    pub(crate) request: JobRequest,
    pub(crate) output_dir: PathBuf,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) events: JobEventSink<'w>,
    /// The engine's report, kept once the conversion succeeded (a later step may still fail).
    pub(crate) report: Option<ConvertReport>,
    /// The lease's renewal, for a job claimed from a shared queue.
    pub(crate) heartbeat: Option<Arc<Heartbeat>>,
}

impl<'w> Run<'w> {
    /// All steps; the error is the job's failure (recorded by [`Run::finish`]).
    pub(crate) fn steps<E: JobEngine>(
        &mut self,
        engine: &E,
        part: PartFile,
    ) -> StepResult<Vec<String>> {
        let template = self.validate()?;
        let plan = self.prepare(engine)?;
        let backups = self.backup()?;
        let mut result = self.convert(engine, &plan, &part)?;
        self.report = result.report.take();
        let mut warnings = std::mem::take(&mut result.warnings);
        warnings.extend(self.publish(part, &result, &template, engine.split_at())?);
        self.post_action(&backups)?;
        Ok(warnings)
    }

    fn stopped(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Why a stopped job stopped: its lease was lost, or it was cancelled.
    fn stop_error(&self) -> JobError {
        match &self.heartbeat {
            Some(h) if h.lost() => lease::lost_error(),
            _ => JobError::cancelled(),
        }
    }

    fn step(&self, step: JobStep) {
        self.events.emit(JobEvent::Step(step));
    }

    /// Writes the job if the stored status is still `stored`; then `stored` follows the job.
    fn save(&mut self) -> StepResult<()> {
        if !self
            .wf
            .store
            .update(&self.job, self.stored)
            .map_err(Error::from)?
        {
            if self.heartbeat.is_some() {
                // Fenced off: another process holds the job now.
                return Err(lease::lost_error());
            }
            return Err(JobError::new(
                ErrorCategory::System,
                "the job record was changed by another process",
                "check the job's status and run the conversion again",
            ));
        }
        self.stored = self.job.status;
        Ok(())
    }

    /// Checks the request before anything is written (see `preflight`), creates the output
    /// folder and records the input size. Returns the output name template.
    fn validate(&mut self) -> StepResult<String> {
        self.step(JobStep::Validate);
        let config = &self.wf.config;
        let template = self
            .request
            .name_template
            .clone()
            .unwrap_or_else(|| config.name_template.clone());
        preflight::check(config, &self.request, &self.job.source_folders, &template)?;
        fs::create_dir_all(&self.output_dir)
            .map_err(|e| Error::io(&self.output_dir, "create output folder", e))?;
        let mut input_bytes = 0;
        for f in &self.job.source_folders {
            input_bytes += folders::folder_stats(f)?.total_bytes;
        }
        self.job.input_bytes = Some(input_bytes);
        self.save()?;
        Ok(template)
    }

    /// The engine validates and plans the input, before time and space go into backups.
    fn prepare<E: JobEngine>(&mut self, engine: &E) -> StepResult<E::Plan> {
        self.step(JobStep::Prepare);
        let t = Instant::now();
        let events = self.events;
        let folders = self.job.source_folders.clone();
        let plan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.prepare(&folders, &events)
        }))
        .unwrap_or_else(|panic| Err(panic_error("preparing the conversion", panic)))?;
        push_timing(&mut self.job, JobStep::Prepare, t);
        if self.stopped() {
            return Err(self.stop_error());
        }
        Ok(plan)
    }

    /// Backs up each source folder (when enabled), recording each backup as it is made.
    fn backup(&mut self) -> StepResult<Vec<BackupInfo>> {
        let mut backups = Vec::new();
        if self.request.backup.unwrap_or(self.wf.config.backup_enabled) {
            self.step(JobStep::Backup);
            let t = Instant::now();
            // A job run again from the queue (its earlier holder died) keeps the backups that
            // attempt finished: each is recorded only once complete, and is made once per job.
            let earlier = std::mem::take(&mut self.job.backup_paths);
            for (i, f) in self.job.source_folders.clone().iter().enumerate() {
                if self.stopped() {
                    return Err(self.stop_error());
                }
                let kept = earlier
                    .get(i)
                    .and_then(|p| self.wf.backups.info(p))
                    // The same job and folder (by name: another host may mount it elsewhere).
                    .filter(|b| {
                        b.job == Some(self.job.id)
                            && b.source.as_deref().and_then(Path::file_name) == f.file_name()
                    });
                let info = match kept {
                    Some(info) => {
                        tracing::info!(target: "aiom4b::jobs", path = %info.path.display(), "backup made by an earlier attempt kept");
                        info
                    }
                    None => self.wf.backups.create(f, Some(self.job.id))?,
                };
                self.job.backup_paths.push(info.path.clone());
                self.save()?;
                backups.push(info);
            }
            push_timing(&mut self.job, JobStep::Backup, t);
            // Retention is applied whenever new backups are made, so the folder stays bounded
            // without a scheduler; a failure here must not fail the conversion.
            if let Err(e) = self
                .wf
                .backups
                .prune(self.wf.config.backup_retention_days, chrono::Local::now())
            {
                tracing::warn!(error = %e, "pruning expired backups failed");
            }
        }
        if self.stopped() {
            return Err(self.stop_error());
        }
        Ok(backups)
    }

    /// The engine writes the `.part`, under the time limit; transient failures are retried.
    fn convert<E: JobEngine>(
        &mut self,
        engine: &E,
        plan: &E::Plan,
        part: &PartFile,
    ) -> StepResult<ConversionResult> {
        self.step(JobStep::Convert);
        let wf = self.wf;
        self.job.status = JobStatus::Processing;
        self.job.started_at = Some(jobs::now_millis());
        self.save()?;
        let explicit = self.request.timeout.or_else(|| {
            (wf.config.processing_timeout_secs > 0)
                .then(|| Duration::from_secs(wf.config.processing_timeout_secs))
        });
        // Before the engine knows the audio length: assume the lowest sensible bitrate
        // (32 kb/s), which overestimates the length and so errs on the generous side.
        let input_bytes = self.job.input_bytes.unwrap_or(0);
        let limit = explicit.unwrap_or_else(|| auto_timeout(input_bytes as f64 * 8.0 / 32_000.0));
        let watchdog = Watchdog::start(limit, self.cancel.clone());
        let part_path = part.path().to_path_buf();
        let source_folders = self.job.source_folders.clone();
        let ctx = JobContext {
            id: self.job.id,
            folders: &source_folders,
            part_path: &part_path,
            engine_threads: self
                .request
                .engine_threads
                .unwrap_or_else(|| wf.config.engine_threads(1))
                .max(1),
            cancel: self.cancel.clone(),
            store: &*wf.store,
            hooks: &wf.hooks,
            throttle: Mutex::new((None, 0.0)),
            watchdog: &watchdog,
            auto_timeout: explicit.is_none(),
            events: self.events,
        };
        let t = Instant::now();
        let retry_policy = retry::Backoff {
            attempts: MAX_ATTEMPTS,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        let result = loop {
            self.job.attempts += 1;
            self.save()?;
            let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                engine.convert(&ctx, plan)
            }))
            .unwrap_or_else(|panic| Err(panic_error("the converter", panic)));
            match attempt {
                Ok(r) => break r,
                Err(_) if self.stopped() => {
                    return Err(match watchdog.timed_out() {
                        Some(limit) => JobError::new(
                            ErrorCategory::Processing,
                            format!("timed out after {} s", limit.as_secs()),
                            "raise PROCESSING_TIMEOUT_SECS, or look for an input file that hangs the decoder",
                        ),
                        None => self.stop_error(),
                    });
                }
                Err(e) if e.transient && self.job.attempts < MAX_ATTEMPTS => {
                    publish::remove_temporaries(&part.temporaries());
                    let delay = retry_policy.delay(self.job.attempts - 1);
                    tracing::warn!(
                        attempt = self.job.attempts,
                        ?delay,
                        "transient failure, retrying: {}",
                        e.message
                    );
                    self.events.emit(JobEvent::Retrying {
                        attempt: self.job.attempts,
                        delay,
                        message: &e.message,
                    });
                    std::thread::sleep(delay);
                }
                Err(e) => return Err(e),
            }
        };
        drop(ctx);
        drop(watchdog);
        push_timing(&mut self.job, JobStep::Convert, t);
        self.job
            .stage_timings
            .extend(result.stage_timings.iter().cloned());
        self.job.audio_duration_secs = result.audio_duration_secs;
        self.job.audio = result.report.as_ref().map(|r| r.audio.clone());
        self.job.progress_percent = 100.0;
        Ok(result)
    }

    /// Names the output (or takes the exact file asked for), records it, and renames the
    /// `.part` into place with its permissions — or, with `split_at` and a book over the limit,
    /// publishes its parts instead ([`Run::publish_parts`]). Returns the split's warnings.
    fn publish(
        &mut self,
        part: PartFile,
        result: &ConversionResult,
        template: &str,
        split_at: Option<SplitAt>,
    ) -> StepResult<Vec<String>> {
        let place = self.output_place(result, template);
        let published = self.publish_book(part, result, &place, split_at);
        let Some(folder) = place.library_folder else {
            return published;
        };
        match published {
            Ok(mut warnings) => {
                warnings.extend(self.write_sidecars(&folder, result));
                Ok(warnings)
            }
            Err(e) => {
                // The book's folder (and the levels above it) made for nothing.
                library::prune_empty(&folder, &self.output_dir);
                Err(e)
            }
        }
    }

    /// Where a generated name goes: the output folder and the name template's stem, or in the
    /// library layout a free folder of its own (made here) and the title.
    fn output_place(&self, result: &ConversionResult, template: &str) -> OutputPlace {
        let cfg = &self.wf.config;
        if self.request.output_file.is_some() || cfg.output_layout != OutputLayout::Library {
            return OutputPlace {
                dir: self.output_dir.clone(),
                stem: self.output_stem(result, template),
                library_folder: None,
            };
        }
        let source = self.source_folder_name();
        let rel = library::folder_for(&cfg.library_template, &result.metadata, &source);
        let folder = library::free_folder(&self.output_dir.join("library").join(rel));
        OutputPlace {
            dir: folder.clone(),
            stem: crate::sanitize::sanitize_file_stem(&library::title(&result.metadata, &source)),
            library_folder: Some(folder),
        }
    }

    /// The first source folder's name (`{folder}` in templates).
    fn source_folder_name(&self) -> String {
        self.job.source_folders[0]
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The library layout's sidecar files beside the published book (`library` module), each
    /// through a temporary recorded in the job and a rename that replaces nothing. The book is
    /// in place already: a sidecar that cannot be written is a warning, not a failed job.
    fn write_sidecars(&mut self, folder: &Path, result: &ConversionResult) -> Vec<String> {
        let Some(book) = self.job.output_path.clone() else {
            return Vec::new();
        };
        let mut warnings = Vec::new();
        // Read back from the book: what an engine wrote after the conversion (the ASIN and
        // publisher of `--asin`, Audible's cover) is in the file, not in the plan.
        let stored = match crate::split::extras_of(&book) {
            Ok(c) => c,
            Err(e) => {
                warnings.push(format!(
                    "the cover and ASIN are not written beside the book: {e}"
                ));
                Default::default()
            }
        };
        let title = library::title(&result.metadata, &self.source_folder_name());
        let extras = library::BookExtras {
            asin: stored.asin.as_deref(),
            publisher: stored.publisher.as_deref(),
            cover: stored.cover.as_ref(),
        };
        let files = library::sidecars(&result.metadata, &title, extras);
        let job_part = self.job.part_path.clone().unwrap_or_else(|| book.clone());
        let temps: Vec<PathBuf> = files
            .iter()
            .map(|f| publish::split_part_temp(&folder.join(f.name), &job_part))
            .collect();
        self.job.temp_paths.extend(temps.iter().cloned());
        if let Err(e) = self.save() {
            warnings.push(format!("no sidecar files were written: {}", e.message));
            return warnings;
        }
        let mode = Some(self.wf.config.output_mode);
        for (f, temp) in files.iter().zip(temps) {
            let target = folder.join(f.name);
            let written = fs::write(&temp, &f.data)
                .and_then(|()| PartFile::at(&temp).publish_to(&target, mode, false));
            if let Err(e) = written {
                let _ = fs::remove_file(&temp);
                warnings.push(format!("{} was not written: {e}", target.display()));
            }
        }
        warnings
    }

    /// [`Run::publish`] without the library's sidecars.
    fn publish_book(
        &mut self,
        part: PartFile,
        result: &ConversionResult,
        place: &OutputPlace,
        split_at: Option<SplitAt>,
    ) -> StepResult<Vec<String>> {
        self.step(JobStep::Publish);
        let t = Instant::now();
        let produced = &result.output;
        match fs::metadata(produced) {
            Ok(m) if m.is_file() && m.len() > 0 => {}
            _ => {
                return Err(JobError::new(
                    ErrorCategory::Processing,
                    format!(
                        "the converter reported success but {} is missing or empty",
                        produced.display()
                    ),
                    "this is a bug in aiom4b; please report it",
                ))
            }
        }
        // The fence: a worker that was paused past its lease finds here that another one took
        // the job over, and publishes nothing. (What remains is the moment between this check
        // and the rename; the lease is fresh then, a whole lease length.)
        if let Some(h) = &self.heartbeat {
            h.confirm()?;
        }
        if place.library_folder.is_some() {
            fs::create_dir_all(&place.dir)
                .map_err(|e| Error::io(&place.dir, "create the book's library folder", e))?;
        }
        if let Some(limit) = split_at {
            if let Some(warnings) = self.publish_parts(&part, place, limit, t)? {
                return Ok(warnings);
            }
        }
        // The record names the output before the rename (write-ahead): if the process dies
        // right after it, recovery finds the published file instead of calling it a crash.
        let mode = Some(self.wf.config.output_mode);
        let hooks = &self.wf.hooks;
        let final_path = match self.request.output_file.clone() {
            Some(file) => {
                self.job.output_path = Some(file.clone());
                self.save()?;
                hooks.stage("publish");
                part.publish_to(&file, mode, self.request.overwrite)
                    .map_err(|e| publish_error(&file, e))?;
                file
            }
            None => {
                let stem = place.stem.clone();
                let output_dir = place.dir.clone();
                let candidate = |n: u32| numbered(&output_dir, &stem, n);
                part.publish_numbered(mode, candidate, |target| {
                    self.job.output_path = Some(target.to_path_buf());
                    self.save().map_err(std::io::Error::other)?;
                    hooks.stage("publish");
                    Ok(())
                })
                .map_err(|e| publish_error(&output_dir.join(format!("{stem}.m4b")), e))?
            }
        };
        self.published = true;
        hooks.stage("published");
        self.job.output_bytes = fs::metadata(&final_path).ok().map(|m| m.len());
        self.job.output_path = Some(final_path.clone());
        push_timing(&mut self.job, JobStep::Publish, t);
        self.save()?;
        audit!(action = "output.write", job_id = %self.job.id, path = %final_path.display(), bytes = self.job.output_bytes.unwrap_or(0), "wrote output");
        Ok(Vec::new())
    }

    /// The output's file name without `.m4b`, from the name template.
    fn output_stem(&self, result: &ConversionResult, template: &str) -> String {
        naming::render(
            template,
            &result.metadata,
            &self.source_folder_name(),
            &naming::timestamp(chrono::Local::now()),
        )
    }

    /// `--split-at`: when the verified book in `part` is over `limit`, writes its parts (each
    /// verified) to temporaries recorded in the job first, records the parts' names (the
    /// write-ahead that lets recovery finish publishing them), and publishes all of them.
    /// `Ok(None)` when the book fits in one part: the caller publishes it as one file. The
    /// whole book's `part` is removed by its owner once the parts are in place.
    fn publish_parts(
        &mut self,
        part: &PartFile,
        place: &OutputPlace,
        limit: SplitAt,
        t: Instant,
    ) -> StepResult<Option<Vec<String>>> {
        let candidate = |n: u32| match &self.request.output_file {
            Some(file) => file.clone(),
            None => numbered(&place.dir, &place.stem, n),
        };
        let first = candidate(1);
        let engine_error = |e: crate::Error| JobError::from_engine(e, &first);
        let Some(mut split) =
            PreparedSplit::new(part.path(), &first, &limit.by()).map_err(engine_error)?
        else {
            return Ok(None);
        };
        let overwrite = self.request.overwrite && self.request.output_file.is_some();
        if self.request.output_file.is_some() {
            if !overwrite {
                split.check_names().map_err(engine_error)?;
            }
        } else {
            // Generated names are never replaced: the first ` (n)` under which every part's
            // name is free.
            let mut n = 1;
            loop {
                match split.check_names() {
                    Ok(()) => break,
                    Err(crate::Error::OutputExists(_)) if n < 1000 => {
                        n += 1;
                        split.retarget(&candidate(n));
                    }
                    Err(e) => return Err(engine_error(e)),
                }
            }
        }
        let job_part = self
            .job
            .part_path
            .clone()
            .unwrap_or_else(|| part.path().into());
        let temps: Vec<PathBuf> = split
            .finals()
            .iter()
            .map(|f| publish::split_part_temp(f, &job_part))
            .collect();
        self.job
            .temp_paths
            .extend(temps.iter().flat_map(|t| publish::temporaries_of(t)));
        self.save()?;
        let hooks = &self.wf.hooks;
        let written = split
            .write(&temps, |k| {
                if k == 0 {
                    hooks.stage("split");
                }
            })
            .map_err(engine_error)?;
        if let Some(h) = &self.heartbeat {
            h.confirm()?;
        }
        // Write-ahead: from here on the parts are decided (all written and verified); a crash
        // before the last rename is finished by recovery.
        self.job.output_parts = written.finals().to_vec();
        self.job.output_path = Some(written.finals()[0].clone());
        self.save()?;
        let hooks = &self.wf.hooks;
        hooks.stage("publish");
        let report = written
            .publish(Some(self.wf.config.output_mode), overwrite, |k| {
                if k == 0 {
                    hooks.stage("publish-part");
                }
            })
            .map_err(engine_error)?;
        self.published = true;
        hooks.stage("published");
        let bytes: u64 = report.parts.iter().map(|p| p.bytes).sum();
        self.job.output_bytes = Some(bytes);
        push_timing(&mut self.job, JobStep::Publish, t);
        self.save()?;
        for p in &report.parts {
            audit!(action = "output.write", job_id = %self.job.id, path = %p.path.display(), bytes = p.bytes, "wrote output part");
        }
        Ok(Some(report.warnings))
    }

    /// Moves or deletes the sources (only with backups; checked by `validate`); a failure
    /// rolls the folder back from its backup.
    fn post_action(&mut self, backups: &[BackupInfo]) -> StepResult<()> {
        if self.request.post_action == PostAction::Keep {
            return Ok(());
        }
        self.step(JobStep::PostAction);
        let t = Instant::now();
        if let PostAction::MoveTo(dir) = &self.request.post_action {
            let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            self.job
                .temp_paths
                .extend(post_action::move_temporaries(&dir, self.job.id));
            self.save()?;
        }
        for (f, b) in self.job.source_folders.iter().zip(backups) {
            post_action::apply(
                &self.request.post_action,
                self.job.id,
                f,
                b,
                &self.wf.backups,
                &self.wf.hooks,
            )?;
        }
        push_timing(&mut self.job, JobStep::PostAction, t);
        Ok(())
    }

    /// Records how the job ended and writes its audit line.
    pub(crate) fn finish(self, result: StepResult<Vec<String>>) -> Result<JobOutcome> {
        let Run {
            wf,
            mut job,
            stored,
            published,
            report,
            ..
        } = self;
        let mut warnings = match result {
            Ok(warnings) => {
                job.status = JobStatus::Completed;
                job.progress_percent = 100.0;
                job.error = None;
                warnings
            }
            // The output is in place and verified; what failed after it (moving or deleting the
            // sources, which was rolled back) is recorded, but the job did what it was for.
            Err(e) if published => {
                tracing::error!(target: "aiom4b::jobs", category = %e.category, remedy = %e.remedy, "after the output was written: {}", e.message);
                job.status = JobStatus::Completed;
                job.progress_percent = 100.0;
                job.error = Some(JobFailure::from(&e));
                vec![format!("the book was written, but {}", e.message)]
            }
            Err(e) => {
                // Its temporaries are gone (the part file was dropped by the steps); it was
                // never published, so it has no output.
                job.output_path = None;
                job.output_bytes = None;
                job.status = if e.cancelled {
                    JobStatus::Cancelled
                } else {
                    JobStatus::Failed
                };
                job.error = Some(JobFailure::from(&e));
                match e.cancelled {
                    // Target `aiom4b::jobs`: the CLI shows the failure itself, so its terminal log
                    // leaves these out (the JSON log file keeps them).
                    true => tracing::warn!(target: "aiom4b::jobs", "job cancelled"),
                    false => {
                        tracing::error!(target: "aiom4b::jobs", category = %e.category, remedy = %e.remedy, "job failed: {}", e.message)
                    }
                }
                Vec::new()
            }
        };
        job.finished_at = Some(jobs::now_millis());
        match wf.store.update(&job, stored) {
            Ok(true) => {}
            Ok(false) => {
                // Another process decided about this job meanwhile (it thought we were dead);
                // the stored decision stands.
                tracing::warn!("job record was changed by another process; keeping its version");
                if let Some(j) = wf.store.get(job.id)? {
                    job = j;
                }
            }
            // The output is published and verified: a record that cannot be written (a full
            // disk under the database) must not turn that into a failure. The record still
            // names the output (written before publishing), so recovery will complete it.
            Err(e) if published => {
                tracing::error!(error = %e, "the job record could not be updated");
                warnings.push(format!(
                    "the job record could not be updated ({e}); the book is complete, and the next start of aiom4b records the job as completed"
                ));
            }
            Err(e) => return Err(e.into()),
        }
        audit!(
            action = "job.finish",
            job_id = %job.id,
            status = %job.status,
            output = job.output_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            error_category = job.error.as_ref().map(|e| e.category.as_str()).unwrap_or(""),
            "job {}", job.status
        );
        // The report describes the published book; a job that published nothing has none.
        let report = report.filter(|_| job.status == JobStatus::Completed);
        Ok(JobOutcome {
            job,
            warnings,
            report,
        })
    }
}

/// The job error for a panic inside the engine.
fn panic_error(what: &str, panic: Box<dyn std::any::Any + Send>) -> JobError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    JobError::new(
        ErrorCategory::Processing,
        format!("internal error: {what} panicked: {message}"),
        "this is a bug in aiom4b; please report it with the log from data/logs",
    )
}

fn push_timing(job: &mut Job, step: JobStep, since: Instant) {
    job.stage_timings.push(StageTiming {
        stage: step.as_str().into(),
        millis: since.elapsed().as_millis() as u64,
    });
}

/// Where [`Run::publish`] puts a book whose name is generated.
struct OutputPlace {
    /// The folder.
    dir: PathBuf,
    /// The file name without `.m4b` (numbered ` (n)` when taken).
    stem: String,
    /// In the library layout, the book's own folder (= `dir`), which gets the sidecars.
    library_folder: Option<PathBuf>,
}

/// The `n`th name for `stem` in `dir`: `{stem}.m4b`, then `{stem} ({n}).m4b`.
fn numbered(dir: &Path, stem: &str, n: u32) -> PathBuf {
    match n {
        1 => dir.join(format!("{stem}.m4b")),
        n => dir.join(format!("{stem} ({n}).m4b")),
    }
}

/// The workflow error for a failed publish of `target`.
fn publish_error(target: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::OutputFileExists(target.to_path_buf()),
        _ => Error::io(target, "move the finished file into place", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_names_the_step_and_its_message() {
        let e = panic_error("the converter", Box::new("boom"));
        assert_eq!(e.category, ErrorCategory::Processing);
        assert!(
            e.message.contains("the converter panicked: boom"),
            "{}",
            e.message
        );
        let e = panic_error("x", Box::new(String::from("owned")));
        assert!(e.message.ends_with("panicked: owned"));
        let e = panic_error("x", Box::new(42));
        assert!(e.message.ends_with("panicked: "));
    }

    #[test]
    fn a_lost_publish_race_is_output_exists() {
        let e = publish_error(
            Path::new("/o/b.m4b"),
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        );
        assert!(matches!(e, Error::OutputFileExists(p) if p == Path::new("/o/b.m4b")));
        let e = publish_error(Path::new("/o/b.m4b"), std::io::Error::other("disk"));
        assert!(matches!(e, Error::Io { .. }));
    }
}
