//! The `aiom4b` command: glue between the arguments and the library. anyhow lives here only.
mod args;
mod ui;

use aiom4b::{plan, CancelToken, Converter, Error};
use anyhow::Context as _;
use args::{Cli, Command};
use clap::Parser;
use std::process::ExitCode;

pub fn version_line() -> String {
    format!("{} ({})", env!("CARGO_PKG_VERSION"), env!("AIOM4B_GIT_REV"))
}

pub fn long_version() -> String {
    let libs: Vec<String> = aiom4b::av::library_versions()
        .into_iter()
        .map(|(n, v)| format!("{n} {v}"))
        .collect();
    format!(
        "{}\nencoders: {}\nlinked: {}",
        version_line(),
        aiom4b::av::encode::COMPILED_ENCODERS,
        libs.join(", ")
    )
}

/// Exit codes (documented in the README and `--help`).
const EXIT_FAILURE: u8 = 1;
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // clap uses 2 for usage errors and 0 for --help/--version.
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    init_logging(&cli);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let interrupted = e.downcast_ref::<Error>().is_some_and(|e| e.is_cancelled());
            if interrupted {
                eprintln!("aiom4b: interrupted; nothing was written");
                return ExitCode::from(EXIT_INTERRUPTED);
            }
            eprintln!("aiom4b: error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn init_logging(cli: &Cli) {
    let debug_env = std::env::var("DEBUG")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
        .unwrap_or(false);
    let level = match (cli.quiet, cli.verbose, debug_env) {
        (true, _, _) => "error",
        (_, 0, false) => "warn",
        (_, 1, false) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIOM4B_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("aiom4b={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Probe(a) => {
            let ins = plan::inspect(
                &a.input.folders,
                &a.input.scan_options(),
                &a.input.limits(),
                &a.input.plan_options(),
            )?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&ins)?);
            } else {
                ui::print_inspection(&ins);
            }
            Ok(if ins.book.is_some() { 0 } else { EXIT_FAILURE })
        }
        Command::Convert(a) => {
            let ins = plan::inspect(
                &a.input.folders,
                &a.input.scan_options(),
                &a.input.limits(),
                &a.input.plan_options(),
            )?;
            let Some(book) = ins.book.clone() else {
                let errors: Vec<_> = ins.errors().cloned().collect();
                return Err(Error::Invalid(errors).into());
            };
            if !cli.quiet && !a.json {
                for f in book
                    .findings
                    .iter()
                    .filter(|f| f.severity >= aiom4b::Severity::Warning)
                {
                    eprintln!("{}: {f}", ui::severity_word(f.severity));
                }
            }
            let cancel = CancelToken::new();
            let c2 = cancel.clone();
            // First Ctrl-C cancels cleanly (the .part is removed); a second one exits at once.
            let hits = std::sync::atomic::AtomicUsize::new(0);
            let _ = ctrlc::set_handler(move || {
                if hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                    std::process::exit(EXIT_INTERRUPTED as i32);
                }
                c2.cancel();
            });
            let bar = ui::Bar::new(
                !cli.quiet && !a.json,
                book.target.sample_rate,
                cli.quiet || a.json,
            );
            let result = Converter::new(a.convert_options()).convert(&book, &bar, &cancel);
            bar.finish();
            let report =
                result.with_context(|| format!("converting {}", book.output_path.display()))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if !cli.quiet {
                println!(
                    "{}  {}  {} chapters  {:.1} MB  {:.0}× realtime",
                    report.output_path.display(),
                    aiom4b::chapters::format_samples(report.total_samples, report.sample_rate),
                    report.chapters.len(),
                    report.size_bytes as f64 / 1_048_576.0,
                    report.realtime_factor
                );
            }
            Ok(0)
        }
        Command::Verify(a) => {
            let summary = aiom4b::verify::summarize(&a.file)?;
            let mut exp = aiom4b::verify::Expectations::new(summary.sample_rate, summary.channels);
            exp.cover = summary.cover.is_some();
            exp.profile = None; // LC, HE-AAC and HE-AAC v2 are all audiobook profiles
            let mut problems = aiom4b::verify::check(&summary, &exp);
            if summary.major_brand != "M4B " {
                problems.push(format!(
                    "brand is {:?}; audiobook players look for \"M4B \"",
                    summary.major_brand
                ));
            }
            if a.json {
                let doc = serde_json::json!({ "ok": problems.is_empty(), "problems": problems, "summary": summary });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                ui::print_summary(&summary, &problems);
            }
            Ok(if problems.is_empty() { 0 } else { EXIT_FAILURE })
        }
    }
}
