//! The workflow's commands (`folders`, `status`, `jobs`, `stats`, `backup`, `config`), the
//! flags every conversion shares (`--no-backup`, `--move-source-to`, `--delete-source`,
//! `--name-template`, `--timeout`) and the batch summary. Glue only: every capability is in
//! `aiom4b::workflow`; here are argument types, tables and exit codes.
use crate::hints::with_flags;
use crate::human;
use crate::ui;
use aiom4b::workflow::backup::BackupInfo;
use aiom4b::workflow::config::{self, Config, Overrides, Setting};
use aiom4b::workflow::folders;
use aiom4b::workflow::{
    BatchOptions, BatchReport, BookStatus, Job, JobEngine, JobEvents, JobFilter, JobRequest,
    JobRunner, JobStatus, PostAction, Workflow,
};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Exit code when the command worked.
pub const EXIT_OK: i32 = 0;
/// Exit code when it ran but found failures (a failed book, a damaged backup).
pub const EXIT_FAILURES: i32 = 1;

/// Options every command shares (flatten into the top-level parser). They override the
/// environment and the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Config file [default: config/aiom4b.toml, or $AIOM4B_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data folder: database, output, backups, logs [env: DATA_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where book folders are looked for [env: SOURCE_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    pub source_dir: Option<PathBuf>,
    /// Books converted at once in a batch [env: MAX_CONCURRENT_JOBS]
    #[arg(long, global = true, value_name = "N")]
    pub max_concurrent_jobs: Option<String>,
    /// More log output on stderr (-v debug, -vv trace); DEBUG=true is like -v
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// text, or json: only JSON lines for a log collector, on stdout for serve [env: LOG_FORMAT]
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

impl ConfigArgs {
    /// The command-line layer of the configuration.
    pub fn overrides(&self) -> Overrides {
        let mut o = Overrides::new(self.config.clone());
        if let Some(d) = &self.data_dir {
            o.set_flag(Setting::DataDir, "--data-dir", d.to_string_lossy());
        }
        if let Some(d) = &self.source_dir {
            o.set_flag(Setting::SourceDir, "--source-dir", d.to_string_lossy());
        }
        if let Some(n) = &self.max_concurrent_jobs {
            o.set_flag(
                Setting::MaxConcurrentJobs,
                "--max-concurrent-jobs",
                n.clone(),
            );
        }
        if let Some(f) = &self.log_format {
            o.set_flag(Setting::LogFormat, "--log-format", f.clone());
        }
        o
    }
}

/// Flags of a conversion job (flatten into `convert` and `batch`).
#[derive(Debug, Clone, Default, Args)]
pub struct JobArgs {
    /// Don't back up the source folders first (overrides BACKUP_ENABLED)
    #[arg(long)]
    pub no_backup: bool,
    /// After success, move each source folder into DIR (rolled back from the backup on failure)
    #[arg(long, value_name = "DIR", conflicts_with = "delete_source")]
    pub move_source_to: Option<PathBuf>,
    /// After success, delete each source folder (restored from the backup if deleting fails)
    #[arg(long)]
    pub delete_source: bool,
    /// Output name, e.g. "{author} - {title}" [env: NAME_TEMPLATE; default "{title}_{timestamp}"]
    #[arg(long, value_name = "TEMPLATE")]
    pub name_template: Option<String>,
    /// File the book into the library: DATA_DIR/output/library/Author/Series/Part - Title/
    /// Title.m4b with desc.txt, reader.txt, metadata.opf and the cover beside it (as
    /// Audiobookshelf, Plex and Jellyfin read them) [env: OUTPUT_LAYOUT=library; folder levels:
    /// LIBRARY_TEMPLATE]
    #[arg(long, conflicts_with = "name_template")]
    pub organize: bool,
    /// Conversion time limit in seconds; 0 = from the audio length [env: PROCESSING_TIMEOUT_SECS]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<String>,
}

impl JobArgs {
    /// Adds the flags that set configuration values (`--name-template`, `--timeout`) to the
    /// command-line layer of the configuration, which checks them like the environment's.
    pub fn add_overrides(&self, o: &mut Overrides) {
        if let Some(t) = &self.name_template {
            o.set_flag(Setting::NameTemplate, "--name-template", t.clone());
        }
        if self.organize {
            o.set_flag(Setting::OutputLayout, "--organize", "library".to_string());
        }
        if let Some(t) = &self.timeout {
            o.set_flag(Setting::ProcessingTimeoutSecs, "--timeout", t.clone());
        }
    }

    /// The workflow request for `folders`; `options` is recorded in the job as given. The name
    /// template and the time limit come from the configuration, where [`Self::add_overrides`]
    /// put this command's values.
    pub fn request(&self, folders: Vec<PathBuf>, options: serde_json::Value) -> Result<JobRequest> {
        Ok({
            let mut o = JobRequest::default();
            o.folders = folders;
            o.options = options;
            o.backup = self.no_backup.then_some(false);
            o.name_template = None;
            o.output_dir = None;
            o.output_file = None;
            o.overwrite = false;
            o.post_action = match (&self.move_source_to, self.delete_source) {
                (Some(dir), _) => PostAction::MoveTo(dir.clone()),
                (None, true) => PostAction::Delete,
                (None, false) => PostAction::Keep,
            };
            o.timeout = None;
            o.engine_threads = None;
            o.inputs = Vec::new();
            o
        })
    }
}

/// `--older-than AGE`: checked while parsing, so that a bad age is a usage error (exit 2).
fn age_arg(s: &str) -> std::result::Result<String, String> {
    config::parse_age(s).map(|_| s.to_string())
}

/// Flags of `batch LIBRARY_DIR` and `convert --each`.
#[derive(Debug, Clone, Default, Args)]
pub struct BatchArgs {
    /// Convert books again that were converted before
    #[arg(long)]
    pub force: bool,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub job: JobArgs,
}

/// The book folders of a library (`batch LIBRARY_DIR`).
pub fn library_books(dir: &Path) -> Result<Vec<PathBuf>> {
    let books = folders::discover_books(dir)?;
    if books.is_empty() {
        bail!("{}: no book folders with MP3 files found", dir.display());
    }
    Ok(books.into_iter().map(|b| b.path).collect())
}

/// Runs a batch with `runner` and prints its summary; the exit code is non-zero when any book
/// failed. `options` are the engine's options as each job records them.
pub fn run_batch<E: JobEngine>(
    runner: &JobRunner<'_, E>,
    books: &[PathBuf],
    args: &BatchArgs,
    options: serde_json::Value,
    events: &dyn JobEvents,
) -> Result<i32> {
    let mut opts = BatchOptions::default();
    opts.force = args.force;
    opts.concurrency = None;
    opts.request = args.job.request(Vec::new(), options)?;
    let report = runner.run_batch(books, &opts, events);
    if args.json {
        emit(&(serde_json::to_string_pretty(&report)? + "\n"));
    } else {
        emit_text(&batch_table(&report));
    }
    Ok(if report.all_ok() {
        EXIT_OK
    } else {
        EXIT_FAILURES
    })
}

/// The batch summary table.
pub fn batch_table(report: &BatchReport) -> String {
    let mut rows = vec![vec![
        "STATUS".to_string(),
        "BOOK".into(),
        "TIME".into(),
        "RESULT".into(),
    ]];
    for b in &report.books {
        let status = match b.status {
            BookStatus::Converted => "converted",
            BookStatus::Skipped => "skipped",
            BookStatus::Failed => "FAILED",
            BookStatus::Cancelled => "cancelled",
        };
        let result = match (&b.error, &b.output) {
            (Some(e), _) => format!(
                "{}: {} — {}",
                e.category,
                with_flags(&e.message),
                with_flags(&e.remedy)
            ),
            (None, Some(o)) => o.display().to_string(),
            (None, None) => String::new(),
        };
        rows.push(vec![
            status.into(),
            b.folder.display().to_string(),
            format!("{:.1}s", b.elapsed_secs),
            result,
        ]);
    }
    let mut s = table(&rows);
    s.push_str(&format!(
        "\n{} converted, {} skipped, {} failed, {} cancelled ({} at once, {} engine thread(s) each)\n",
        report.count(BookStatus::Converted),
        report.count(BookStatus::Skipped),
        report.count(BookStatus::Failed),
        report.count(BookStatus::Cancelled),
        report.concurrency,
        report.engine_threads
    ));
    s
}

/// The workflow's subcommands (the engine's `convert`, `probe`, … live beside them).
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// List book folders under SOURCE_DIR (or DIR) with MP3 count, size and last change
    Folders {
        /// Library folder [default: SOURCE_DIR]
        dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Show one job (id or unique prefix), or an overview of all jobs
    Status {
        job_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List or archive jobs
    Jobs {
        #[command(subcommand)]
        cmd: JobsCommand,
    },
    /// Success rate, processing times, sizes, realtime factor
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// List, verify, prune or restore backups of source folders
    Backup {
        #[command(subcommand)]
        cmd: BackupCommand,
    },
    /// Print the effective configuration and where each value came from
    Config {
        #[arg(long)]
        json: bool,
        /// Write a commented config/aiom4b.toml with every default (never overwrites)
        #[arg(long)]
        init: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first
    List {
        /// pending, processing, completed, failed or cancelled
        #[arg(long, value_parser = ["pending", "processing", "completed", "failed", "cancelled"])]
        status: Option<String>,
        /// Include archived jobs
        #[arg(long)]
        archived: bool,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show a job's own log lines (ID or a unique prefix), oldest first
    Log {
        job_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a pending or running job (ID or a unique prefix), whichever process or host runs
    /// it: a queued job is cancelled at once, a running one stops within about a second
    Cancel { job_id: String },
    /// Move finished jobs older than AGE to the archive (e.g. 7d, 12h, 2w)
    Clear {
        #[arg(long, value_name = "AGE", value_parser = age_arg)]
        older_than: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// List backups, oldest first
    List {
        #[arg(long)]
        json: bool,
    },
    /// Check backups (all, or NAME) against their checksums
    Verify { name: Option<String> },
    /// Delete backups older than BACKUP_RETENTION_DAYS (logged in cleanup_log.txt)
    Prune,
    /// Restore a backup beside the live folder, verify it, then swap it in
    Restore {
        name: String,
        /// Restore into DIR/{folder name} instead of the original place
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
        /// Decrypt an encrypted backup (BACKUP_ENCRYPT_TO) with this age identity file
        /// (AGE-SECRET-KEY-1… lines, as age-keygen writes them)
        #[arg(long, short = 'i', value_name = "FILE")]
        identity: Option<PathBuf>,
    },
}

/// Runs a workflow command; returns the exit code.
pub fn run(cmd: WorkflowCommand, cfg: &Config) -> Result<i32> {
    match cmd {
        WorkflowCommand::Folders { dir, json } => folders_cmd(dir, json, cfg),
        WorkflowCommand::Config { json, init } => config_cmd(json, init, cfg),
        WorkflowCommand::Status { job_id, json } => status_cmd(&open(cfg)?, job_id, json),
        WorkflowCommand::Jobs { cmd } => jobs_cmd(&open(cfg)?, cmd),
        WorkflowCommand::Stats { json } => stats_cmd(&open(cfg)?, json),
        WorkflowCommand::Backup { cmd } => backup_cmd(&open(cfg)?, cmd),
    }
}

/// Opens the workflow (which also recovers interrupted jobs) and reports what it recovered.
pub fn open(cfg: &Config) -> Result<Workflow> {
    let wf = Workflow::open(cfg.clone())
        .with_context(|| format!("opening the data folder {}", cfg.data_dir.display()))?;
    crate::joblog::attach(wf.shared_store());
    Ok(match test_stop_hooks() {
        Some(hooks) => wf.with_hooks(hooks),
        None => wf,
    })
}

/// The fault suite's hook: with `AIOM4B_TEST_STOP_AT=STAGE` the process stops itself (SIGSTOP)
/// the first time a job reaches STAGE (`backup`, `convert`, `publish`, `published`, `move`,
/// `remove`), so that a test can kill it there (`kill -9`, SIGTERM) or change the world under
/// it, deterministically. Unset, nothing is installed.
fn test_stop_hooks() -> Option<aiom4b::workflow::Hooks> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stage = std::env::var("AIOM4B_TEST_STOP_AT").ok()?;
    let fired = Arc::new(AtomicBool::new(false));
    let stop_at = move |name: &str| {
        if name == stage && !fired.swap(true, Ordering::SeqCst) {
            stop_self();
        }
    };
    let stop_at = Arc::new(stop_at);
    let (a, b, c) = (stop_at.clone(), stop_at.clone(), stop_at);
    Some(aiom4b::workflow::Hooks {
        after_backup_file: Some(Arc::new(move |_| a("backup"))),
        before_source_remove: Some(Arc::new(move |_| {
            b("remove");
            Ok(())
        })),
        at_stage: Some(Arc::new(move |name| c(name))),
    })
}

/// Stops this process until a SIGCONT (the fault suite's [`test_stop_hooks`], `probe`'s too).
pub fn stop_self() {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
}

fn folders_cmd(dir: Option<PathBuf>, json: bool, cfg: &Config) -> Result<i32> {
    let dir = match dir {
        Some(d) => d,
        None => {
            // The default source folder is created on first use, so users know where to put books.
            std::fs::create_dir_all(&cfg.source_dir)
                .with_context(|| format!("creating {}", cfg.source_dir.display()))?;
            cfg.source_dir.clone()
        }
    };
    let books = folders::discover_books(&dir)?;
    if json {
        emit(&(serde_json::to_string_pretty(&books)? + "\n"));
        return Ok(EXIT_OK);
    }
    if books.is_empty() {
        emit_text(&format!(
            "no book folders with MP3 files under {}\n",
            dir.display()
        ));
        return Ok(EXIT_OK);
    }
    let mut rows = vec![vec![
        "FOLDER".into(),
        "MP3S".into(),
        "SIZE".into(),
        "LAST CHANGE".into(),
    ]];
    for b in &books {
        let discs = if b.disc_folders > 0 {
            format!(" ({} discs)", b.disc_folders)
        } else {
            String::new()
        };
        rows.push(vec![
            format!("{}{discs}", b.name),
            b.mp3_count.to_string(),
            human::bytes(b.total_bytes),
            b.last_modified
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default(),
        ]);
    }
    emit_text(&table(&rows));
    Ok(EXIT_OK)
}

fn config_cmd(json: bool, init: bool, cfg: &Config) -> Result<i32> {
    if init {
        let path = Path::new(config::DEFAULT_CONFIG_FILE);
        if path.exists() {
            bail!(
                "{}: already exists; edit it, or remove it first",
                path.display()
            );
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, Config::template_file())
            .with_context(|| format!("writing {}", path.display()))?;
        emit_text(&format!("wrote {}\n", path.display()));
        return Ok(EXIT_OK);
    }
    let settings = cfg.describe();
    if json {
        emit(&(serde_json::to_string_pretty(&settings)? + "\n"));
        return Ok(EXIT_OK);
    }
    let mut rows = vec![vec!["SETTING".into(), "VALUE".into(), "FROM".into()]];
    for s in &settings {
        rows.push(vec![s.var.to_string(), s.value.clone(), s.origin.clone()]);
    }
    let mut out = table(&rows);
    out.push_str(&match &cfg.config_file {
        Some(p) => format!("\nconfig file: {}\n", p.display()),
        None => format!(
            "\nconfig file: none ({} not found)\n",
            config::DEFAULT_CONFIG_FILE
        ),
    });
    emit_text(&out);
    Ok(EXIT_OK)
}

fn status_cmd(wf: &Workflow, job_id: Option<String>, json: bool) -> Result<i32> {
    if let Some(id) = job_id {
        let job = wf.find_job(&id)?;
        if json {
            emit(&(serde_json::to_string_pretty(&job)? + "\n"));
        } else {
            emit_text(&job_detail(&job));
        }
        return Ok(EXIT_OK);
    }
    let stats = wf.store().stats()?;
    let running = wf.store().list(&JobFilter {
        status: Some(JobStatus::Processing),
        ..Default::default()
    })?;
    let recent = wf.store().list(&JobFilter {
        limit: Some(5),
        ..Default::default()
    })?;
    if json {
        let v = serde_json::json!({ "stats": stats, "running": running, "recent": recent });
        emit(&(serde_json::to_string_pretty(&v)? + "\n"));
        return Ok(EXIT_OK);
    }
    let mut s = format!(
        "jobs: {} total — {} pending, {} processing, {} completed, {} failed, {} cancelled\n",
        stats.total,
        stats.pending,
        stats.processing,
        stats.completed,
        stats.failed,
        stats.cancelled
    );
    if !running.is_empty() {
        s.push_str("\nrunning:\n");
        s.push_str(&jobs_table(&running));
    }
    if !recent.is_empty() {
        s.push_str("\nrecent:\n");
        s.push_str(&jobs_table(&recent));
    }
    emit_text(&s);
    Ok(EXIT_OK)
}

fn jobs_cmd(wf: &Workflow, cmd: JobsCommand) -> Result<i32> {
    match cmd {
        JobsCommand::List {
            status,
            archived,
            limit,
            json,
        } => {
            let jobs = wf.store().list(&JobFilter {
                status: status.as_deref().and_then(JobStatus::parse),
                source_folder: None,
                limit: Some(limit),
                include_archived: archived,
            })?;
            if json {
                emit(&(serde_json::to_string_pretty(&jobs)? + "\n"));
            } else if jobs.is_empty() {
                emit_text("no jobs\n");
            } else {
                emit_text(&jobs_table(&jobs));
            }
        }
        JobsCommand::Cancel { job_id } => {
            let job = wf.find_job(&job_id)?;
            match wf.store().request_cancel(job.id)? {
                aiom4b::workflow::CancelRequest::Cancelled => {
                    emit_text(&format!("job {} cancelled (it was waiting)\n", job.id));
                }
                aiom4b::workflow::CancelRequest::Requested => {
                    let owner = job.owner.as_ref().map(|o| o.instance_id());
                    emit_text(&format!(
                        "job {} is asked to stop{}; it is recorded cancelled when it has\n",
                        job.id,
                        owner
                            .map(|o| format!(" (running on {o})"))
                            .unwrap_or_default()
                    ));
                }
                aiom4b::workflow::CancelRequest::NotActive => {
                    return Err(aiom4b::workflow::Error::Invalid(format!(
                        "job {} is {}: only pending or running jobs can be cancelled",
                        job.id, job.status
                    ))
                    .into());
                }
            }
        }
        JobsCommand::Log { job_id, json } => {
            let job = wf.find_job(&job_id)?;
            let mut after = 0;
            loop {
                let lines = wf.store().job_log(job.id, after, 1000)?;
                let Some(last) = lines.last() else { break };
                after = last.seq;
                for l in &lines {
                    if json {
                        emit(&(serde_json::to_string(l)? + "\n"));
                    } else {
                        let fields: Vec<String> = l
                            .fields
                            .iter()
                            .map(|(k, v)| match v {
                                serde_json::Value::String(s) => format!("{k}={s}"),
                                v => format!("{k}={v}"),
                            })
                            .collect();
                        emit_text(&format!(
                            "{} {:5} {}{}{}\n",
                            l.time
                                .with_timezone(&chrono::Local)
                                .format("%Y-%m-%d %H:%M:%S%.3f"),
                            l.level,
                            l.message,
                            if fields.is_empty() { "" } else { "  " },
                            fields.join(" ")
                        ));
                    }
                }
            }
        }
        JobsCommand::Clear { older_than } => {
            // Checked by clap already (`age_arg`): a bad value is a usage error (exit 2).
            let age = config::parse_age(&older_than).map_err(anyhow::Error::msg)?;
            let n = wf
                .store()
                .archive_finished(config::cutoff(chrono::Utc::now(), age))?;
            tracing::info!(target: "aiom4b::audit", action = "jobs.archive", count = n, older_than = %older_than, "archived finished jobs");
            emit_text(&format!(
                "archived {n} finished job(s) older than {older_than}\n"
            ));
        }
    }
    Ok(EXIT_OK)
}

fn stats_cmd(wf: &Workflow, json: bool) -> Result<i32> {
    let s = wf.store().stats()?;
    if json {
        emit(&(serde_json::to_string_pretty(&s)? + "\n"));
        return Ok(EXIT_OK);
    }
    let secs = |v: Option<f64>| v.map(|v| format!("{v:.1} s")).unwrap_or_else(|| "-".into());
    let mut out = format!(
        "jobs:            {} ({} completed, {} failed, {} cancelled, {} pending, {} processing)\n\
         success rate:    {}\n\
         processing time: avg {}, min {}, max {}\n\
         converted input: {}\n\
         output:          {}{}\n\
         audio converted: {}\n\
         realtime factor: {}\n",
        s.total,
        s.completed,
        s.failed,
        s.cancelled,
        s.pending,
        s.processing,
        s.success_rate
            .map(|r| format!("{:.1} %", r * 100.0))
            .unwrap_or_else(|| "-".into()),
        secs(s.processing_secs_avg),
        secs(s.processing_secs_min),
        secs(s.processing_secs_max),
        human::bytes(s.input_bytes_total),
        human::bytes(s.output_bytes_total),
        if s.input_bytes_total > 0 {
            format!(
                " ({:.0} % of input)",
                s.output_bytes_total as f64 * 100.0 / s.input_bytes_total as f64
            )
        } else {
            String::new()
        },
        human::clock(s.audio_secs_total),
        s.realtime_factor
            .map(|r| format!("{r:.1}× real time"))
            .unwrap_or_else(|| "-".into()),
    );
    if !s.failures_by_category.is_empty() {
        let parts: Vec<String> = s
            .failures_by_category
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        out.push_str(&format!("failures:        {}\n", parts.join(", ")));
    }
    emit_text(&out);
    Ok(EXIT_OK)
}

fn backup_cmd(wf: &Workflow, cmd: BackupCommand) -> Result<i32> {
    let store = wf.backups();
    match cmd {
        BackupCommand::List { json } => {
            let list = store.list()?;
            let damaged = list.iter().filter(|b| b.damaged.is_some()).count();
            if json {
                emit(&(serde_json::to_string_pretty(&list)? + "\n"));
            } else if list.is_empty() {
                emit_text(&format!("no backups in {}\n", store.dir().display()));
            } else {
                let mut out = backups_table(&list);
                if damaged > 0 {
                    out.push_str(&format!(
                        "\n{damaged} damaged backup(s): they cannot be checked or restored; \
                         see `aiom4b backup verify`\n"
                    ));
                }
                emit_text(&out);
            }
            Ok(if damaged == 0 { EXIT_OK } else { EXIT_FAILURES })
        }
        BackupCommand::Verify { name } => {
            let names = match name {
                Some(n) => vec![n],
                None => store.list()?.into_iter().map(|b| b.name).collect(),
            };
            let mut bad = 0;
            let mut out = String::new();
            for n in names {
                // One unreadable backup must not hide the verdict on the others.
                let (shown, problems, files) = match store.verify(&n) {
                    Ok(r) => (r.name, r.problems, r.files_checked),
                    Err(e) => (n, vec![e.to_string()], 0),
                };
                if problems.is_empty() {
                    out.push_str(&format!("ok      {} ({files} files)\n", ui::escape(&shown)));
                } else {
                    bad += 1;
                    out.push_str(&format!("DAMAGED {}\n", ui::escape(&shown)));
                    for p in &problems {
                        out.push_str(&format!("        {}\n", ui::escape(p)));
                    }
                }
            }
            emit_text(&out);
            Ok(if bad == 0 { EXIT_OK } else { EXIT_FAILURES })
        }
        BackupCommand::Prune => {
            let days = wf.config().backup_retention_days;
            let pruned = store.prune(days, chrono::Local::now())?;
            let mut out = format!(
                "pruned {} backup(s) older than {days} days{}\n",
                pruned.len(),
                if days == 0 {
                    " (BACKUP_RETENTION_DAYS=0 keeps all)"
                } else {
                    ""
                }
            );
            for p in &pruned {
                out.push_str(&format!("  {}\n", p.name));
            }
            emit_text(&out);
            Ok(EXIT_OK)
        }
        BackupCommand::Restore { name, to, identity } => {
            let identity = identity
                .as_deref()
                .map(aiom4b::workflow::backup::Identity::from_file)
                .transpose()?;
            let r = store.restore_with(&name, to.as_deref(), true, identity.as_ref())?;
            let mut out = String::new();
            let encrypted = store
                .info(&store.dir().join(&r.backup))
                .is_some_and(|b| b.encrypted_to.is_some());
            if identity.is_some() && !encrypted {
                out.push_str(&format!(
                    "note: backup {} is not encrypted; --identity was not needed\n",
                    r.backup
                ));
            }
            out.push_str(&format!(
                "restored {} ({} files{}) to {}\n",
                r.backup,
                r.files,
                if encrypted { ", decrypted" } else { "" },
                r.target.display()
            ));
            if let Some(d) = &r.displaced {
                out.push_str(&format!(
                    "the folder that was there is now {}\n",
                    d.display()
                ));
            }
            emit_text(&out);
            Ok(EXIT_OK)
        }
    }
}

fn jobs_table(jobs: &[Job]) -> String {
    let mut rows = vec![vec![
        "ID".into(),
        "STATUS".into(),
        "CREATED".into(),
        "PROGRESS".into(),
        "SOURCE".into(),
        "RESULT".into(),
    ]];
    for j in jobs {
        let result = match (&j.error, &j.output_path) {
            (Some(e), _) => format!("{}: {}", e.category, with_flags(&e.message)),
            (None, Some(p)) if j.output_parts.len() > 1 => {
                format!("{} (+{} parts)", p.display(), j.output_parts.len() - 1)
            }
            (None, Some(p)) => p.display().to_string(),
            _ => String::new(),
        };
        rows.push(vec![
            j.id.to_string()[..8].to_string(),
            j.status.to_string(),
            j.created_at
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            format!("{:.0}%", j.progress_percent),
            j.source_folders
                .iter()
                .map(|f| {
                    f.file_name()
                        .unwrap_or(f.as_os_str())
                        .to_string_lossy()
                        .into_owned()
                })
                .collect::<Vec<_>>()
                .join(", "),
            result,
        ]);
    }
    table(&rows)
}

fn job_detail(j: &Job) -> String {
    let local = |t: &chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let mut s = format!(
        "job       {}\nstatus    {} ({:.0}%)\n",
        j.id, j.status, j.progress_percent
    );
    s.push_str(&format!("created   {}\n", local(&j.created_at)));
    if let Some(t) = &j.started_at {
        s.push_str(&format!("started   {}\n", local(t)));
    }
    if let Some(t) = &j.finished_at {
        s.push_str(&format!("finished  {}\n", local(t)));
    }
    for f in &j.source_folders {
        s.push_str(&format!("source    {}\n", ui::path(f)));
    }
    for b in &j.backup_paths {
        s.push_str(&format!("backup    {}\n", ui::path(b)));
    }
    if j.output_parts.is_empty() {
        if let Some(o) = &j.output_path {
            s.push_str(&format!("output    {}\n", ui::path(o)));
        }
    }
    for (k, p) in j.output_parts.iter().enumerate() {
        s.push_str(&format!("part {:<4} {}\n", k + 1, ui::path(p)));
    }
    if let Some(b) = j.input_bytes {
        s.push_str(&format!("input     {}\n", human::bytes(b)));
    }
    if let Some(b) = j.output_bytes {
        s.push_str(&format!("output    {}\n", human::bytes(b)));
    }
    if let Some(a) = j.audio_duration_secs {
        s.push_str(&format!("audio     {}\n", human::clock(a)));
    }
    if let Some(a) = &j.audio {
        let how = if a.copied {
            "copied, not re-encoded"
        } else {
            "encoded"
        };
        s.push_str(&format!("aac       {how}: {}\n", a.why));
    }
    if !j.stage_timings.is_empty() {
        let t: Vec<String> = j
            .stage_timings
            .iter()
            .map(|t| format!("{} {:.1}s", t.stage, t.millis as f64 / 1000.0))
            .collect();
        s.push_str(&format!("stages    {}\n", t.join(", ")));
    }
    s.push_str(&format!("attempts  {}\n", j.attempts));
    if let Some(o) = &j.owner {
        s.push_str(&format!(
            "process   {} on {} (instance {})\n",
            o.pid,
            o.hostname,
            o.instance_id()
        ));
    }
    if let Some(l) = &j.lease {
        if matches!(j.status, JobStatus::Pending | JobStatus::Processing) {
            s.push_str(&format!(
                "lease     until {}\n",
                l.expires_at
                    .with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
            ));
        }
    }
    if let Some(e) = &j.error {
        s.push_str(&format!(
            "error     {}: {}\nremedy    {}\n",
            e.category,
            with_flags(&e.message),
            with_flags(&e.remedy)
        ));
    }
    s
}

fn backups_table(list: &[BackupInfo]) -> String {
    let mut rows = vec![vec![
        "NAME".into(),
        "FILES".into(),
        "SIZE".into(),
        "ENCRYPTED".into(),
        "SOURCE".into(),
    ]];
    for b in list {
        rows.push(vec![
            b.name.clone(),
            b.files.to_string(),
            human::bytes(b.total_bytes),
            if b.encrypted_to.is_some() { "age" } else { "-" }.into(),
            match (&b.damaged, &b.source) {
                (Some(why), _) => format!("DAMAGED: {why}"),
                (None, Some(source)) => source.display().to_string(),
                (None, None) => String::new(),
            },
        ]);
    }
    table(&rows)
}

/// Left-aligned columns separated by two spaces; the last column is not padded. Cells are
/// escaped for the terminal (a line break in a file name must not break the row).
fn table(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| ui::escape(c).into_owned()).collect())
        .collect();
    let rows = &rows;
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        out.push('\n');
    }
    out
}

/// Writes JSON to stdout, exactly; a closed pipe (`aiom4b jobs list | head`) is not an error.
fn emit(s: &str) {
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}

/// Writes text for humans to stdout, escaped for the terminal ([`ui::print_text`]).
fn emit_text(s: &str) {
    ui::print_text(s);
}
