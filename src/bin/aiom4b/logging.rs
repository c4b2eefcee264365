//! The program's logger: human-readable lines on stderr, JSON lines in `DATA_DIR/logs/`.
//!
//! Both sinks are written by background threads through bounded channels
//! (`aiom4b::workflow::logfile`), so a slow terminal or a full disk drops log lines instead of
//! blocking or failing a conversion. Every event inside a job carries the job's `job_id` (the
//! library's `job` span); audit events (target `aiom4b::audit`) always reach the file.
//!
//! Levels: `warn` (plus aiom4b `info`) by default; `-v` or `DEBUG=true` adds debug, `-vv`
//! trace; `-q` only errors. `RUST_LOG`, when set, replaces the stderr filter.
//!
//! Commands that write nothing (`probe`, `verify FILE`, `config`, `folders`) log to stderr
//! only, so that they never create `DATA_DIR` as a side effect.
use aiom4b::workflow::config::Config;
use aiom4b::workflow::logfile::{self, RotatingFile, RotationPolicy, WriterGuard};
use std::io::IsTerminal;
use tracing::field::Field;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Keeps the writer threads running; drop it last (it writes what is queued).
pub struct LogGuard {
    _guards: Vec<WriterGuard>,
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
        0 => "info,symphonia_core=error,symphonia_bundle_mp3=error,symphonia_format_isomp4=error,symphonia_codec_aac=error",
        1 => "debug",
        _ => "trace",
    });

    let mut guards = Vec::new();
    let stderr_layer = logfile::non_blocking(std::io::stderr()).ok().map(|(w, g)| {
        guards.push(g);
        tracing_subscriber::fmt::layer()
            .fmt_fields(terminal_fields())
            .with_writer(move || w.clone())
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .without_time()
            .with_filter(stderr_filter)
    });
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
        .and_then(|_| logfile::non_blocking(RotatingFile::new(policy)).ok())
        .map(|(w, g)| {
            guards.push(g);
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(move || w.clone())
                .with_filter(file_filter)
        });
    let file_missing = opts.files && file_layer.is_none();
    // try_init: a second init (tests, embedding) keeps the first subscriber instead of panicking.
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
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
