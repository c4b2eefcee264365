//! `aiom4b chapters …`: the chapters of a finished book. `export`/`import` (in
//! `cmd_chapter_files`) move the list out and in; `detect` proposes chapters from the
//! book's pauses (one decode with the library's own reader, [`aiom4b::silence::detect_file`]),
//! in the chapters-file format that `--chapters-file` reads, or as JSON with the pauses.
use crate::args::SilenceArgs;
use crate::EXIT_USAGE;
use aiom4b::chapters::format_samples;
use aiom4b::silence;
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ChaptersCommand {
    /// Propose chapters at the pauses of BOOK.m4b: "HH:MM:SS.mmm Title" lines (a chapters
    /// file for `--chapters-file`), or JSON with every pause.
    Detect(DetectArgs),
    /// Write BOOK's chapter list as txt, json, cue or ffmetadata (standard output or -o FILE).
    Export(crate::cmd_chapter_files::ExportArgs),
    /// Replace BOOK's chapters with a list in any format --chapters-file reads (no re-encoding).
    Import(crate::cmd_chapter_files::ImportArgs),
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    /// The .m4b (or .m4a) to read.
    #[arg(value_name = "BOOK")]
    pub file: PathBuf,
    /// JSON: the chapters, every pause found (seconds and samples), rate and length.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub silence: SilenceArgs,
}

pub fn run(c: ChaptersCommand) -> Result<u8> {
    match c {
        ChaptersCommand::Detect(a) => detect(a),
        ChaptersCommand::Export(a) => crate::cmd_chapter_files::export(a),
        ChaptersCommand::Import(a) => crate::cmd_chapter_files::import(a),
    }
}

fn detect(a: DetectArgs) -> Result<u8> {
    let opts = a.silence.options();
    if let Err(e) = opts.validate() {
        eprintln!("aiom4b: error: {e}");
        return Ok(EXIT_USAGE);
    }
    let t0 = std::time::Instant::now();
    let found = silence::detect_file(&a.file, &opts)
        .with_context(|| format!("finding the pauses of {}", a.file.display()))?;
    let rate = found.sample_rate;
    let chapters = silence::chapters_from_pauses(&found.pauses, found.total_samples, rate, &opts);
    let secs = found.total_samples as f64 / rate.max(1) as f64;
    let elapsed = t0.elapsed().as_secs_f64();
    tracing::debug!(
        file = %a.file.display(),
        audio_secs = secs,
        elapsed_secs = elapsed,
        realtime = secs / elapsed.max(1e-9),
        pauses = found.pauses.len(),
        "pauses found"
    );
    if a.json {
        let at = |s: u64| s as f64 / rate.max(1) as f64;
        let long = silence::chapter_pauses(&found.pauses, rate, &opts);
        let doc = serde_json::json!({
            "file": a.file,
            "sample_rate": rate,
            "total_samples": found.total_samples,
            "duration_secs": secs,
            "options": opts,
            "chapters": chapters.iter().map(|c| serde_json::json!({
                "title": c.title,
                "start": format_samples(c.start_samples, rate),
                "start_secs": at(c.start_samples),
                "start_samples": c.start_samples,
            })).collect::<Vec<_>>(),
            "pauses": found.pauses.iter().map(|p| serde_json::json!({
                "start_secs": at(p.start),
                "end_secs": at(p.end),
                "start_samples": p.start,
                "end_samples": p.end,
                "chapter_pause": long.contains(p),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for c in &chapters {
            println!("{} {}", format_samples(c.start_samples, rate), c.title);
        }
    }
    Ok(0)
}
