//! `aiom4b tag BOOK.m4b --asin B0…`: write a book's metadata from Audnexus into the file
//! without re-encoding (through `edit::edit_book`: atomic, verified), with the cover and
//! Audible's chapter list fitted to this audio. A cover or chapter list that cannot be had
//! is a warning; the tags are still written.
use crate::args::{parse_db, parse_secs};
use crate::cmd_match::parse_region;
use aiom4b::chapters::format_samples;
use aiom4b::edit::EditReport;
use aiom4b::metadata::fit::ChapterFit;
use aiom4b::metadata::{self, ApplyOptions, BookMeta, Providers, Region};
use aiom4b::workflow::Config;
use anyhow::{Context as _, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(
    after_help = "Writes title, author(s), narrator(s), series and part (also as ©grp \
\"Series #part\"), description, genres, year, publisher and ASIN (----:com.apple.iTunes:ASIN), the \
cover at full resolution, and Audible's chapters fitted to this audio (brand intro/outro removed \
when the book lacks them, scaled when the editions differ slightly, each mark snapped to a pause; \
refused, keeping the book's chapters, when the lengths differ by more than 2 % or 3 minutes). \
Needs the network (Audnexus); answers are cached in DATA_DIR/cache/metadata. \
Exit codes: 0 tagged (warnings possible), 1 the book or the ASIN could not be used (the book is \
left as it was), 2 usage."
)]
pub struct TagArgs {
    /// The .m4b/.m4a to tag.
    #[arg(value_name = "BOOK")]
    pub file: PathBuf,
    /// The Audible product id (find it with `aiom4b match`), e.g. B0036I54I6.
    #[arg(long, value_name = "ASIN", value_parser = parse_asin)]
    pub asin: String,
    /// Audible marketplace: us, uk, de, fr, ca, au, in, it, es, jp.
    #[arg(long, default_value = "us", value_parser = parse_region)]
    pub region: Region,
    /// Keep the book's cover.
    #[arg(long)]
    pub no_cover: bool,
    /// Keep the book's chapters.
    #[arg(long)]
    pub no_chapters: bool,
    /// How far a chapter mark may move to a pause, e.g. 5s.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_secs)]
    pub snap_window: f64,
    /// Shortest pause a chapter mark may snap to, e.g. 1s.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_secs)]
    pub silence_min: f64,
    /// Quieter than this is silence, in dB below full scale.
    #[arg(long, value_name = "DB", default_value = "-35", allow_hyphen_values = true,
          value_parser = parse_db)]
    pub silence_db: f64,
    /// Show what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the book's metadata, the chapter fit and the edit report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_asin(s: &str) -> Result<String, String> {
    metadata::normalize_asin(s).map_err(|e| e.to_string().replace("invalid option: ", ""))
}

pub fn run(cfg: &Config, a: TagArgs) -> Result<u8> {
    let asin = metadata::normalize_asin(&a.asin)?;
    // The book first: no network for a file that is not there.
    let meta = std::fs::metadata(&a.file)
        .with_context(|| format!("{}: cannot open the book", a.file.display()))?;
    if !meta.is_file() {
        anyhow::bail!(
            "{}: not a regular file; give an .m4b/.m4a",
            a.file.display()
        );
    }
    let providers = Providers::new(&cfg.data_dir);
    let (resolved, mut warnings) =
        providers.resolve_asin(&asin, a.region, !a.no_chapters, !a.no_cover)?;
    let mut opts = ApplyOptions::default();
    opts.silence.threshold_db = a.silence_db;
    opts.silence.min_pause_secs = a.silence_min;
    opts.fit.window_secs = a.snap_window;
    opts.dry_run = a.dry_run;
    let (applied, mut report) = metadata::apply_book(
        &a.file,
        &resolved,
        metadata::tag_edits(&resolved.book),
        &opts,
    )?;
    if !a.dry_run {
        aiom4b::workflow::library::refresh_sidecars_noted(
            &a.file,
            &mut report.changes,
            &mut warnings,
        );
    }
    // The report's warnings are in the applied ones; print each once.
    warnings.extend(applied.warnings.iter().cloned());
    let book = &resolved.book;
    let fitted = applied.chapter_fit.as_ref();
    tracing::debug!(requests = providers.http().requests(), "tag done");
    if a.json {
        let doc = serde_json::json!({
            "file": a.file,
            "asin": asin,
            "region": a.region,
            "dry_run": a.dry_run,
            "book": book,
            "chapter_fit": fitted,
            "cover": applied.cover,
            "warnings": warnings,
            "edit": report,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_report(&a, book, fitted, &warnings, &report);
    }
    Ok(0)
}

fn print_report(
    a: &TagArgs,
    book: &BookMeta,
    fitted: Option<&ChapterFit>,
    warnings: &[String],
    r: &EditReport,
) {
    let esc = |s: &str| crate::ui::escape_lines(s).into_owned();
    println!(
        "{}: {} {} — {} ({} {})",
        esc(&a.file.display().to_string()),
        if a.dry_run {
            "would tag as"
        } else {
            "tagged as"
        },
        esc(&book.title),
        esc(&book.authors.join(", ")),
        book.asin,
        book.region
    );
    for c in &r.changes {
        println!("  {}", esc(c));
    }
    if let Some(f) = fitted {
        println!(
            "  chapters from Audible: {} fitted, confidence {:.2}{}{}{}",
            f.chapters.len(),
            f.confidence,
            if f.intro_removed_ms > 0 {
                format!(", brand intro ({} ms) removed", f.intro_removed_ms)
            } else {
                String::new()
            },
            if f.outro_removed {
                ", brand outro absent"
            } else {
                ""
            },
            if f.scale != 1.0 {
                format!(", scaled ×{:.5}", f.scale)
            } else {
                String::new()
            }
        );
        for (i, c) in f.chapters.iter().enumerate() {
            println!(
                "    {}  {:>+7} ms  {:.2}{}  {}",
                format_samples(c.start_samples, r.sample_rate),
                c.moved_ms,
                c.confidence,
                if c.snapped || i == 0 { " " } else { "*" },
                esc(&c.title)
            );
        }
        if f.chapters.iter().skip(1).any(|c| !c.snapped) {
            println!(
                "    (* no pause within the window: the mark stays where Audible's timing puts it)"
            );
        }
    }
    for w in warnings {
        eprintln!("aiom4b: warning: {}", esc(w));
    }
}
