//! `aiom4b chapters export BOOK.m4b` and `aiom4b chapters import BOOK.m4b FILE`: a finished
//! book's chapter list out to, and back in from, the formats of `aiom4b::chapter_formats`.
//! Import is an `edit` of the chapters only (no re-encoding, atomic, verified).
use crate::EXIT_FAILURE;
use aiom4b::chapter_formats::{self, ChapterFormat, ExportChapter};
use aiom4b::edit::{self, BookEdit, ChapterEdit};
use aiom4b::silence;
use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

fn parse_format(s: &str) -> std::result::Result<ChapterFormat, String> {
    let f: ChapterFormat = s.parse()?;
    if ChapterFormat::WRITABLE.contains(&f) {
        Ok(f)
    } else {
        Err(format!(
            "{s} is read only; export as txt, json, cue or ffmetadata"
        ))
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The .m4b/.m4a whose chapters to write out.
    pub book: PathBuf,
    /// txt ("HH:MM:SS.mmm Title"), json (exact, with sample positions), cue or ffmetadata.
    #[arg(long, short, default_value = "txt", value_parser = parse_format)]
    pub format: ChapterFormat,
    /// Write to this file (never replacing one) instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The .m4b/.m4a whose chapters to replace (in place when the file has room; audio untouched).
    pub book: PathBuf,
    /// The chapter list: text, JSON, CUE, FFmpeg metadata or OGM (recognised from the content).
    pub file: PathBuf,
    /// Move every mark to the nearest pause (of at least --silence-min below --silence-db)
    /// within this window, e.g. 2s; says how far each moved and which found none.
    #[arg(long, value_name = "DURATION", value_parser = crate::args::parse_secs)]
    pub snap_to_silence: Option<f64>,
    #[command(flatten)]
    pub silence: crate::args::SilenceArgs,
    /// Show the chapters that would be written; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn export(a: ExportArgs) -> Result<u8> {
    let (chapters, rate, total) = edit::read_chapters(&a.book)?;
    if chapters.is_empty() {
        eprintln!(
            "{}: the book has no chapters (neither a chapter track nor a chpl list)",
            a.book.display()
        );
        return Ok(EXIT_FAILURE);
    }
    let list: Vec<ExportChapter> = chapters
        .iter()
        .map(|c| ExportChapter {
            start_samples: c.start_samples,
            title: c.title.clone(),
        })
        .collect();
    let name = a
        .book
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = chapter_formats::write(a.format, &list, rate, total, &name);
    match &a.output {
        None => {
            std::io::stdout().write_all(text.as_bytes())?;
        }
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| {
                    format!(
                        "cannot create {} (an existing file is never replaced; choose another name)",
                        path.display()
                    )
                })?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "{} chapters written to {} ({})",
                list.len(),
                path.display(),
                a.format.name()
            );
        }
    }
    Ok(0)
}

pub fn import(a: ImportArgs) -> Result<u8> {
    let timed = aiom4b::chapters::parse_chapters_file(&a.file)?;
    let (_, rate, total) = edit::read_chapters(&a.book)?;
    let (mut chapters, mut warnings) =
        aiom4b::chapters::timed_to_samples(&timed, rate, total, &a.file)?;
    let mut snapped = None;
    if let Some(window) = a.snap_to_silence {
        let opts = a.silence.options();
        opts.validate()?;
        let found = silence::detect_file(&a.book, &opts)?;
        let candidates = silence::chapter_pauses(&found.pauses, found.sample_rate, &opts);
        let window = (window * found.sample_rate as f64).round() as u64;
        let result = silence::snap(&chapters, &candidates, found.sample_rate, window);
        for s in &result {
            if !s.found {
                warnings.push(format!(
                    "chapter {:?} at {}: no pause within the window; left where it was",
                    s.chapter.title,
                    aiom4b::chapters::format_samples(s.chapter.start_samples, rate)
                ));
            }
        }
        chapters = result.iter().map(|s| s.chapter.clone()).collect();
        snapped = Some(result);
    }
    let change = BookEdit {
        chapters: ChapterEdit::Replace(chapters),
        ..BookEdit::default()
    };
    let mut report = if a.dry_run {
        edit::preview_edit(&a.book, &change)?
    } else {
        edit::edit_book(&a.book, &change)?
    };
    report.warnings.splice(0..0, warnings);
    if a.json {
        let doc = serde_json::json!({ "edit": report, "snapped": snapped });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    if let Some(result) = &snapped {
        for s in result.iter().filter(|s| s.found && s.moved_by != 0) {
            println!(
                "  snapped {:?} by {:+.3} s to {}",
                s.chapter.title,
                s.moved_by as f64 / rate as f64,
                aiom4b::chapters::format_samples(s.chapter.start_samples, rate)
            );
        }
    }
    crate::cmd_edit::print_report(&report, a.dry_run);
    Ok(0)
}
