//! The `aiom4b` command: glue between the arguments and the library. anyhow lives here only.
mod args;
mod cmd_chapter_files;
mod cmd_chapters;
mod cmd_convert;
mod cmd_docs;
mod cmd_edit;
mod cmd_inspect;
mod cmd_match;
mod cmd_split;
mod cmd_tag;
mod hints;
mod human;
mod joblog;
mod logging;
mod serve;
mod signals;
mod ui;
mod web;
mod workflow_cmds;

use aiom4b::workflow::Config;
use aiom4b::Error;
use args::{Cli, Command};
use clap::Parser;
use std::process::ExitCode;

pub fn version_line() -> String {
    format!("{} ({})", env!("CARGO_PKG_VERSION"), env!("AIOM4B_GIT_REV"))
}

pub fn long_version() -> String {
    let libs: Vec<String> = aiom4b::library_versions()
        .into_iter()
        .map(|(n, v)| format!("{n} {v}"))
        .collect();
    let ffmpeg = aiom4b::ffmpeg_build();
    format!(
        "{}\nencoders: {}\nFFmpeg: {} ({})\nlinked: {}\nFFmpeg configuration: {}",
        version_line(),
        aiom4b::COMPILED_ENCODERS,
        ffmpeg.version,
        ffmpeg.linkage,
        libs.join(", "),
        ffmpeg.configuration
    )
}

/// Exit codes (documented in `--help`).
const EXIT_FAILURE: u8 = 1;
/// Bad arguments (clap's own code) or an invalid configuration value, which is the same
/// mistake made in the environment or the config file.
const EXIT_USAGE: u8 = 2;

/// glibc raises its mmap threshold up to 32 MB after large blocks are freed, after which the
/// segmented encoder's ~30 MB PCM buffers (allocated on one thread, freed on another) are
/// carved from heap arenas and fragment them: ~45 MB more peak RSS on a 1-hour book. A fixed
/// 1 MB threshold keeps big buffers in their own mappings, returned to the system when freed.
/// Process-wide allocator policy belongs to the program, not to the library.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// `aiom4b verify --json | head` must end quietly when the reader goes away, as Unix tools do,
/// instead of panicking in `println!` on EPIPE: restore the default SIGPIPE action that the
/// Rust runtime ignores.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal disposition to its default, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A panic that the library catches inside another library (Symphonia or mp4ameta reading a
/// hostile file) becomes a problem in its report; its message goes to the debug log, not to
/// the terminal. Every other panic is printed as usual.
fn quiet_contained_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if aiom4b::panic_is_contained() {
            tracing::debug!("contained panic in another library: {info}");
        } else {
            default(info);
        }
    }));
}

fn main() -> ExitCode {
    tune_allocator();
    default_sigpipe();
    signals::install();
    quiet_contained_panics();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // clap uses 2 for usage errors and 0 for --help/--version.
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    // Completions and man pages come from the clap definitions alone: no configuration (a
    // broken config file must not stop a package build from generating them), no logging,
    // nothing created in DATA_DIR.
    let cli = match cli {
        Cli {
            command: Command::Completions(a),
            ..
        } => return generated(cmd_docs::completions(a)),
        Cli {
            command: Command::Man(a),
            ..
        } => return generated(cmd_docs::man(a)),
        cli => cli,
    };
    // Loading reads the environment and the config file but creates nothing; folders are
    // created by the commands that need them (`probe` and `verify FILE` never do).
    let cfg = match Config::load(&cli.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aiom4b: error: {}", ui::escape_lines(&format!("{e:#}")));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let _log = logging::init(
        &cfg,
        logging::LogOptions {
            verbose: cli.global.verbose,
            quiet: cli.quiet,
            files: cli.command.uses_data_dir(),
            // `serve` prints only its address on stdout; every other command's stdout is its
            // output (reports, `--json`), which log lines must not break into.
            stdout_free: matches!(cli.command, Command::Serve(_) | Command::Worker(_)),
        },
    );
    // `serve` ends its jobs as cancelled on a signal and exits 0: a stopped service is no error.
    let has_job = matches!(
        cli.command,
        Command::Convert(_) | Command::Batch(_) | Command::Serve(_) | Command::Worker(_)
    );
    match run(cli, &cfg) {
        // Convert and batch end their jobs as cancelled and say so; any other command that a
        // signal interrupted exits as interrupted even if it got to the end meanwhile.
        Ok(_) if !has_job && signals::interrupted().is_some() => {
            ExitCode::from(signals::interrupted().unwrap_or(130))
        }
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let interrupted = e.downcast_ref::<Error>().is_some_and(|e| e.is_cancelled());
            if interrupted {
                eprintln!("aiom4b: interrupted; nothing was written");
                return ExitCode::from(signals::exit_code());
            }
            tracing::debug!("{e:?}");
            // Errors name files, whose names may hold terminal control sequences.
            let text = format!("{e:#}");
            eprintln!(
                "aiom4b: error: {}",
                ui::escape_lines(&hints::with_flags(&text))
            );
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The exit of `completions` and `man`, which run before logging is set up.
fn generated(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("aiom4b: error: {}", ui::escape_lines(&format!("{e:#}")));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(cli: Cli, cfg: &Config) -> anyhow::Result<u8> {
    match cli.command {
        Command::Probe(a) => cmd_inspect::probe(cfg, a),
        Command::Verify(a) => cmd_inspect::verify(a),
        Command::Edit(a) => cmd_edit::edit(a),
        Command::Chapters(c) => cmd_chapters::run(c),
        Command::Split(a) => cmd_split::split(a),
        Command::Match(a) => cmd_match::run(cfg, a),
        Command::Tag(a) => cmd_tag::run(cfg, a),
        Command::Convert(a) => cmd_convert::convert(cfg, *a, cli.quiet),
        Command::Batch(a) => cmd_convert::batch(cfg, a),
        Command::Serve(a) => serve::run(cfg, a),
        Command::Worker(a) => serve::worker::run(cfg, a),
        Command::Health(a) => serve::health_check::run(cfg, a),
        // Workflow commands report "found failures" as 1, like the rest.
        Command::Workflow(w) => Ok(workflow_cmds::run(w, cfg)?.clamp(0, 1) as u8),
        Command::Completions(_) | Command::Man(_) => {
            unreachable!("answered in main before the configuration is loaded")
        }
    }
}
