//! The program's logger: human-readable lines on stderr, JSON lines in `DATA_DIR/logs/`.
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
use aiom4b::workflow::config::Config;
use aiom4b::workflow::logfile::{RotatingFile, RotationPolicy};
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tracing::field::Field;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Lines buffered between the program and each writer thread. 4096 lines of ~300 bytes is
/// about 1 MiB at most: enough to ride out a slow disk for a moment, small enough not to matter.
const CHANNEL_LINES: usize = 4096;
/// The target of the library's audit events (`aiom4b::workflow::audit!`).
const AUDIT_TARGET: &str = "aiom4b::audit";

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
            let note = format!(
                "{{\"timestamp\":\"{}\",\"level\":\"WARN\",\"target\":\"aiom4b::logfile\",\"fields\":{{\"message\":\"{} log line(s) were dropped (disk full or too slow)\"}}}}\n",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                lost - s.reported
            );
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
    /// Also write JSON lines into `DATA_DIR/logs/` (creating it).
    pub files: bool,
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
    let file_filter = EnvFilter::new(match level {
        0 => "info,symphonia=error",
        1 => "debug",
        _ => "trace",
    });

    let mut guards = Vec::new();
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
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(make_writer)
                .with_filter(file_filter)
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
