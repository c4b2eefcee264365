//! The program's logger: human-readable lines on stderr, JSON lines in `DATA_DIR/logs/`; or,
//! with `LOG_FORMAT=json`, only JSON lines on one stream for a log collector (stdout for
//! `aiom4b serve` in a container, stderr for commands whose stdout is their output).
//!
//! Every JSON line carries, at its top level, what a collector gathering the lines of many
//! instances groups by ([`CollectorJson`]): `instance_id` (this process,
//! `ProcessIdentity::instance_id`), `job_id` (lines of a job) and `stage` (the job's step or
//! engine stage, when known).
//!
//! Both sinks are written by background threads through bounded channels (tracing-appender's
//! non-blocking writer), so a slow terminal or a full disk drops log lines instead of blocking
//! or failing a conversion. Audit events (target `aiom4b::audit`) are the exception: they go
//! through a channel of their own that never drops (`lossy(false)`), so the audit trail is
//! complete; they are a few lines per job, so waiting for a slow disk there costs little, where
//! the debug lines around them could fill any buffer. Lines that were dropped or could not be
//! written are counted and noted in the file as soon as writing works again. The log files
//! rotate by day and by size (`aiom4b::workflow::logfile`). Every event inside a job carries
//! the job's `job_id` (the library's `job` span).
//!
//! Levels: `warn` (plus aiom4b `info`) by default; `-v` or `DEBUG=true` adds debug, `-vv`
//! trace; `-q` only errors. `RUST_LOG`, when set, replaces the stderr filter.
//!
//! Commands that write nothing (`probe`, `verify FILE`, `config`, `folders`) log to stderr
//! only, so that they never create `DATA_DIR` as a side effect.
use aiom4b::workflow::config::{Config, LogFormat};
use aiom4b::workflow::logfile::{RotatingFile, RotationPolicy};
use aiom4b::workflow::process::ProcessIdentity;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tracing::field::Field;
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Lines buffered between the program and each writer thread. 4096 lines of ~300 bytes is
/// about 1 MiB at most: enough to ride out a slow disk for a moment, small enough not to matter.
const CHANNEL_LINES: usize = 4096;
/// The target of the library's audit events (`aiom4b::workflow::audit!`).
const AUDIT_TARGET: &str = "aiom4b::audit";
/// The target of the library's job events (`aiom4b::workflow::events`).
const JOBS_TARGET: &str = "aiom4b::jobs";
/// Jobs whose stage [`CollectorJson`] remembers at most; a job is forgotten at its last line,
/// this bounds the memory should such a line never come (a job ended by a crash of its thread).
const REMEMBERED_JOBS: usize = 1024;

/// Keeps the writer threads running; drop it last: it writes what is queued (tracing-appender
/// waits up to a second per thread, so a hung disk cannot hang the program's exit).
pub struct LogGuard {
    _guards: Vec<WorkerGuard>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // The job log's last lines (a job's result) into the store before the process ends.
        crate::joblog::flush(std::time::Duration::from_secs(1));
    }
}

/// A writer thread for `sink`; `lossy`: drop lines when its channel is full instead of waiting.
fn writer<W: Write + Send + 'static>(
    sink: W,
    lossy: bool,
    name: &str,
) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .buffered_lines_limit(CHANNEL_LINES)
        .lossy(lossy)
        .thread_name(name)
        .finish(sink)
}

/// The log file, shared by the two writer threads (audit lines; the rest). It counts the lines
/// that never reached the file — dropped from the lossy channel, or failed to write (disk
/// full) — and notes their number in the file at the next line that can be written.
/// tracing-appender counts the first kind but says nothing in the file, and ignores the second.
#[derive(Clone)]
struct LogFile(Arc<Mutex<FileState>>);

struct FileState {
    file: RotatingFile,
    /// Lines whose write failed.
    failed: u64,
    /// Lost lines already noted in the file.
    reported: u64,
    /// The lossy channel's drop counter (set once its writer exists).
    dropped: Arc<OnceLock<ErrorCounter>>,
}

impl LogFile {
    fn new(file: RotatingFile, dropped: Arc<OnceLock<ErrorCounter>>) -> Self {
        LogFile(Arc::new(Mutex::new(FileState {
            file,
            failed: 0,
            reported: 0,
            dropped,
        })))
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let dropped = s.dropped.get().map_or(0, |c| c.dropped_lines() as u64);
        let lost = s.failed + dropped;
        if lost > s.reported {
            let note = serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "WARN",
                "target": "aiom4b::logfile",
                "instance_id": instance_id(),
                "fields": {
                    "message": format!("{} log line(s) were dropped (disk full or too slow)", lost - s.reported),
                },
            })
            .to_string()
                + "\n";
            if s.file.write_all(note.as_bytes()).is_ok() {
                s.reported = lost;
            }
        }
        match s.file.write_all(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                s.failed += 1;
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .file
            .flush()
    }
}

/// How much to log, and where.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOptions {
    /// `-v` count.
    pub verbose: u8,
    /// `-q`: only errors on stderr (the log file is unaffected).
    pub quiet: bool,
    /// Also write JSON lines into `DATA_DIR/logs/` (creating it); keep each job's lines in
    /// the store.
    pub files: bool,
    /// The command writes nothing of its own on stdout (`serve`): with `LOG_FORMAT=json`, the
    /// JSON lines go there; otherwise on stderr.
    pub stdout_free: bool,
}

/// This process's instance id, computed once.
fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| ProcessIdentity::current().instance_id())
}

/// The JSON lines' format: tracing-subscriber's JSON (the event's `fields`, the current `span`
/// and the `spans` list) with three keys lifted to the top level, so that a collector needs no
/// knowledge of aiom4b's spans to group the lines of many instances and jobs:
/// - `instance_id`: on every line;
/// - `job_id`: the event's own `job_id` field, else the innermost span's (the library's `job`
///   span);
/// - `stage`: the event's own `stage` (or `step`) field, else the innermost span's, else the
///   last stage this job's lines named (so the lines between two step events carry the step
///   they belong to); absent when no stage is known yet.
///
/// It parses what the JSON formatter wrote and writes it again: tracing-subscriber's JSON
/// format has no hook for extra top-level keys, and writing our own JSON event formatter
/// would repeat its span and field handling. Log lines are few (hundreds per job), so the
/// second pass costs nothing that matters.
pub struct CollectorJson<F> {
    inner: F,
    /// The last stage of each job whose lines are being written.
    stages: Mutex<HashMap<String, String>>,
}

impl<F> CollectorJson<F> {
    fn new(inner: F) -> Self {
        CollectorJson {
            inner,
            stages: Mutex::new(HashMap::new()),
        }
    }

    /// Adds `instance_id`, `job_id` and `stage` to one parsed line.
    fn lift(&self, line: &mut Map<String, Value>) {
        let fields = line.get("fields").and_then(Value::as_object);
        // The spans, innermost first.
        let spans: Vec<&Map<String, Value>> = line
            .get("spans")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .rev()
            .filter_map(Value::as_object)
            .collect();
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        };
        let find = |keys: &[&str]| {
            let own = fields.and_then(|f| keys.iter().find_map(|k| f.get(*k)));
            own.or_else(|| {
                spans
                    .iter()
                    .find_map(|s| keys.iter().find_map(|k| s.get(*k)))
            })
            .and_then(text)
        };
        let job_id = find(&["job_id"]);
        let mut stage = find(&["stage", "step"]);
        // The job's last line: its Finished event (`status`, from the library's job events).
        let last = line.get("target").and_then(Value::as_str) == Some(JOBS_TARGET)
            && fields.is_some_and(|f| f.contains_key("status"));
        if let Some(job) = &job_id {
            let mut stages = self.stages.lock().unwrap_or_else(PoisonError::into_inner);
            match &stage {
                Some(s) => {
                    if stages.len() >= REMEMBERED_JOBS && !stages.contains_key(job) {
                        stages.clear();
                    }
                    stages.insert(job.clone(), s.clone());
                }
                None => stage = stages.get(job).cloned(),
            }
            if last {
                stages.remove(job);
            }
        }
        line.insert("instance_id".into(), instance_id().into());
        if let Some(job) = job_id {
            line.insert("job_id".into(), job.into());
        }
        if let Some(stage) = stage {
            line.insert("stage".into(), stage.into());
        }
    }
}

impl<S, N, F> FormatEvent<S, N> for CollectorJson<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match serde_json::from_str::<Map<String, Value>>(&line) {
            Ok(mut parsed) => {
                self.lift(&mut parsed);
                writeln!(writer, "{}", Value::Object(parsed))
            }
            // Not expected from the JSON formatter; the line as it is rather than none.
            Err(_) => writer.write_str(&line),
        }
    }
}

/// The JSON lines layer writing to `make_writer` (unfiltered).
fn json_layer<S, W>(make_writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .map_event_format(CollectorJson::new)
        .with_writer(make_writer)
}

/// Installs the global subscriber. Never fails: without a log folder, logs go to stderr only.
pub fn init(cfg: &Config, opts: LogOptions) -> LogGuard {
    let level = match (opts.verbose, cfg.debug) {
        (0, false) => 0,
        (0, true) | (1, _) => 1,
        _ => 2,
    };
    let stderr_filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| {
            EnvFilter::new(match level {
                _ if opts.quiet => "error",
                // Audit lines are for the file; on the terminal they would repeat the output.
                // FFmpeg's own messages (aiom4b::ffmpeg) are detail for -v: aiom4b reports the
                // failures that matter itself, naming the file. Symphonia's (through the `log`
                // bridge; `symphonia` matches every symphonia_* crate) only with -vv: it logs an
                // ERROR line with a path into its source for every bad AAC frame, hundreds for
                // one damaged file, which `verify` already counts and reports.
                0 => "warn,aiom4b=info,aiom4b::audit=warn,aiom4b::jobs=off,aiom4b::ffmpeg=warn,symphonia=off",
                1 => "info,aiom4b=debug,symphonia=off",
                _ => "debug,aiom4b=trace",
            })
        });
    let file_filter = EnvFilter::new(file_filter_text(level));

    let mut guards = Vec::new();
    if cfg.log_format == LogFormat::Json {
        // One stream of JSON lines for a collector: no terminal text, no files. Audit lines
        // through a channel that never drops, as for the file.
        fn both<W: Write + Send + 'static>(
            sink: impl Fn() -> W,
            guards: &mut Vec<WorkerGuard>,
        ) -> impl for<'w> MakeWriter<'w, Writer = impl Write> + 'static {
            let (lossy, g1) = writer(sink(), true, "aiom4b-log-json");
            let (audit, g2) = writer(sink(), false, "aiom4b-log-audit");
            guards.extend([g1, g2]);
            audit
                .with_filter(|m: &tracing::Metadata<'_>| m.target() == AUDIT_TARGET)
                .or_else(lossy)
        }
        let filter = || {
            std::env::var("RUST_LOG")
                .ok()
                .and_then(|s| EnvFilter::try_new(s).ok())
                .unwrap_or_else(|| {
                    EnvFilter::new(if opts.quiet {
                        "error"
                    } else {
                        file_filter_text(level)
                    })
                })
        };
        let json = if opts.stdout_free {
            json_layer(both(std::io::stdout, &mut guards))
                .with_filter(filter())
                .boxed()
        } else {
            json_layer(both(std::io::stderr, &mut guards))
                .with_filter(filter())
                .boxed()
        };
        let job_log = opts.files.then(crate::joblog::layer);
        let _ = tracing_subscriber::registry()
            .with(json)
            .with(job_log)
            .try_init();
        return LogGuard { _guards: guards };
    }
    let (stderr, guard) = writer(std::io::stderr(), true, "aiom4b-log-stderr");
    guards.push(guard);
    let stderr_layer = tracing_subscriber::fmt::layer()
        .fmt_fields(terminal_fields())
        .with_writer(stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .with_filter(stderr_filter);
    let policy = RotationPolicy {
        dir: cfg.logs_dir(),
        prefix: "aiom4b".into(),
        max_bytes: cfg.log_max_size_mb.saturating_mul(1 << 20),
        max_files: cfg.log_max_files,
    };
    let file_layer = opts
        .files
        .then(|| std::fs::create_dir_all(&policy.dir))
        .and_then(Result::ok)
        .map(|_| {
            let counter = Arc::new(OnceLock::new());
            let file = LogFile::new(RotatingFile::new(policy), counter.clone());
            let (lossy, lossy_guard) = writer(file.clone(), true, "aiom4b-log-file");
            let _ = counter.set(lossy.error_counter());
            let (audit, audit_guard) = writer(file, false, "aiom4b-log-audit");
            guards.extend([lossy_guard, audit_guard]);
            let make_writer = audit
                .with_filter(|m: &tracing::Metadata<'_>| m.target() == AUDIT_TARGET)
                .or_else(lossy);
            json_layer(make_writer).with_filter(file_filter)
        });
    let file_missing = opts.files && file_layer.is_none();
    // try_init: a second init (tests, embedding) keeps the first subscriber instead of panicking.
    // Commands that keep jobs (those that write files) also keep each job's lines in the store.
    let job_log = opts.files.then(crate::joblog::layer);
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .with(job_log)
        .try_init();
    if file_missing {
        tracing::warn!(dir = %cfg.logs_dir().display(), "cannot write log files; logging to stderr only");
    }
    LogGuard { _guards: guards }
}

/// The JSON lines' filter at a verbosity level (0 default, 1 `-v`/`DEBUG`, 2 `-vv`).
fn file_filter_text(level: u8) -> &'static str {
    match level {
        0 => "info,symphonia=error",
        1 => "debug",
        _ => "trace",
    }
}

/// The stderr lines' fields, each value escaped for the terminal ([`crate::ui::escape`]): log
/// events carry file names and tags (`path=…`), which may hold control sequences. tracing's
/// own formatter escapes ESC and a few others but not bidi overrides (U+202E) or CR.
fn terminal_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    tracing_subscriber::fmt::format::debug_fn(
        |w: &mut Writer<'_>, field: &Field, value: &dyn std::fmt::Debug| {
            let text = format!("{value:?}");
            let text = crate::ui::escape(&text);
            if field.name() == "message" {
                write!(w, "{text}")
            } else {
                write!(w, "{}={text}", field.name())
            }
        },
    )
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_in(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            out.extend(text.lines().map(str::to_string));
        }
        out
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The JSON lines of a job carry `instance_id`, `job_id` and `stage` at the top level,
    /// `stage` also on the lines between two step events; lines outside a job carry only the
    /// instance.
    #[test]
    fn json_lines_carry_instance_job_and_stage() {
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::registry().with(json_layer(move || sink.clone()));
        let job = "0b5e2f6c-2b64-4d4e-9d77-5d6c1f6b2a10";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("service started");
            let span = tracing::info_span!("job", job_id = %job);
            let _in = span.enter();
            tracing::info!(target: JOBS_TARGET, folders = ?["/b"], "job started");
            tracing::info!(target: JOBS_TARGET, step = "backup", stage = "backup", "step: backup");
            tracing::info!(target: "aiom4b::workflow::backup", "copied 3 files");
            tracing::info!(target: JOBS_TARGET, stage = "convert", "engine: Convert");
            tracing::info!(target: AUDIT_TARGET, action = "job.finish", "audit");
            tracing::info!(target: JOBS_TARGET, status = "completed", "job completed");
            tracing::info!(target: "aiom4b::workflow::runner", "after the end");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 8, "{text}");
        let me = ProcessIdentity::current().instance_id();
        assert!(
            lines.iter().all(|l| l["instance_id"] == me.as_str()),
            "{text}"
        );
        assert!(lines[0].get("job_id").is_none() && lines[0].get("stage").is_none());
        assert!(lines[1..].iter().all(|l| l["job_id"] == job), "{text}");
        let stages: Vec<Option<&str>> = lines[1..].iter().map(|l| l["stage"].as_str()).collect();
        assert_eq!(
            stages,
            [
                None,
                Some("backup"),
                Some("backup"),
                Some("convert"),
                Some("convert"),
                Some("convert"),
                None
            ],
            "{text}"
        );
        // The formatter's own keys are still there.
        assert_eq!(lines[2]["fields"]["message"], "step: backup");
        assert_eq!(lines[2]["span"]["name"], "job");
    }

    /// Everything queued is written when the guards drop (the program's exit), through both
    /// writers into one file, and nothing is reported lost.
    #[test]
    fn queued_lines_are_written_when_the_guards_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let policy = RotationPolicy {
            dir: tmp.path().to_path_buf(),
            prefix: "aiom4b".into(),
            max_bytes: 1 << 20,
            max_files: 4,
        };
        let counter = Arc::new(OnceLock::new());
        let file = LogFile::new(RotatingFile::new(policy), counter.clone());
        let (mut lossy, g1) = writer(file.clone(), true, "test-lossy");
        let _ = counter.set(lossy.error_counter());
        let (mut audit, g2) = writer(file, false, "test-audit");
        for i in 0..100 {
            lossy
                .write_all(format!("{{\"n\":{i}}}\n").as_bytes())
                .unwrap();
            audit
                .write_all(format!("{{\"audit\":{i}}}\n").as_bytes())
                .unwrap();
        }
        drop((g1, g2));
        let lines = lines_in(tmp.path());
        let dropped = lossy.error_counter().dropped_lines();
        assert_eq!(dropped, 0);
        assert_eq!(lines.len(), 200, "{lines:?}");
        assert!(!lines.iter().any(|l| l.contains("dropped")));
    }
}
