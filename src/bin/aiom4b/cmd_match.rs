//! `aiom4b match FOLDER|BOOK.m4b`: search Audible's catalog for the book and rank the
//! candidates by how well title, author, narrator and the exact duration fit. Read-only; the
//! answers are cached in DATA_DIR/cache/metadata.
use aiom4b::metadata::rank::{self, LocalBook};
use aiom4b::metadata::{MetadataProvider, Providers, Region, SearchQuery};
use aiom4b::workflow::Config;
use anyhow::{bail, Context as _, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(
    after_help = "Needs the network (Audible's public catalog; no account). Answers are \
cached for 30 days in DATA_DIR/cache/metadata, so asking again costs nothing. \
Apply a candidate with `aiom4b tag BOOK.m4b --asin ASIN`. \
Exit codes: 0 candidates found, 1 none found or the search failed, 2 usage."
)]
pub struct MatchArgs {
    /// A folder of MP3 files (a book before conversion) or a finished .m4b/.m4a.
    #[arg(value_name = "FOLDER|BOOK")]
    pub input: PathBuf,
    /// Search for these words (title, series, anything) instead of the book's title.
    #[arg(long, value_name = "TEXT")]
    pub query: Option<String>,
    /// Search for this author instead of the book's.
    #[arg(long, value_name = "NAME")]
    pub author: Option<String>,
    /// Audible marketplace: us, uk, de, fr, ca, au, in, it, es, jp.
    #[arg(long, default_value = "us", value_parser = parse_region)]
    pub region: Region,
    /// Show at most N candidates (1–50).
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..=50))]
    pub limit: u16,
    /// Print the book's facts and the ranked candidates as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn parse_region(s: &str) -> Result<Region, String> {
    s.parse::<Region>().map_err(|e| e.to_string())
}

/// What the book says about itself: the tags and decoded length of an M4B, or the plan
/// (tags, folder name, exact MP3 lengths) of a folder.
fn local_book(cfg: &Config, input: &Path) -> Result<LocalBook> {
    let meta =
        std::fs::metadata(input).with_context(|| format!("{}: cannot read it", input.display()))?;
    if meta.is_dir() {
        let ins = aiom4b::plan::inspect(
            &[input.to_path_buf()],
            &aiom4b::ScanOptions::default(),
            &cfg.limits(),
            &aiom4b::PlanOptions::default(),
        )?;
        let Some(book) = ins.book else {
            let why: Vec<String> = ins.errors().map(|f| f.message.clone()).collect();
            bail!(
                "{}: not a book folder aiom4b can read ({}); see `aiom4b probe`",
                input.display(),
                why.join("; ")
            );
        };
        Ok(LocalBook::from_book(&book))
    } else {
        Ok(LocalBook::from_summary(&aiom4b::verify::summarize(input)?))
    }
}

pub fn run(cfg: &Config, a: MatchArgs) -> Result<u8> {
    let mut local = local_book(cfg, &a.input)?;
    let query = SearchQuery {
        title: if a.query.is_some() {
            None
        } else {
            local.title.clone()
        },
        author: a.author.clone().or_else(|| local.author.clone()),
        keywords: a.query.clone(),
        limit: a.limit as usize,
    };
    if query.title.is_none() && query.keywords.is_none() {
        bail!(
            "{}: the book has no title to search for; give one with --query \"title words\"",
            a.input.display()
        );
    }
    if local.title.is_none() {
        local.title = a.query.clone();
    }
    if a.author.is_some() {
        local.author = a.author.clone();
    }
    let providers = Providers::new(&cfg.data_dir);
    let ranked = providers.search(&local, &query, a.region)?;
    tracing::debug!(requests = providers.http().requests(), "match done");
    if a.json {
        let doc = serde_json::json!({
            "input": a.input,
            "local": local,
            "region": a.region,
            "provider": providers.audible().name(),
            "candidates": ranked,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_candidates(&a.input, &local, &ranked);
    }
    Ok(if ranked.is_empty() { 1 } else { 0 })
}

fn hm(secs: f64) -> String {
    let m = (secs / 60.0).round() as u64;
    format!("{}h{:02}m", m / 60, m % 60)
}

fn print_candidates(input: &Path, local: &LocalBook, ranked: &[rank::Candidate]) {
    let esc = |s: &str| crate::ui::escape_lines(s).into_owned();
    println!(
        "{}: {} — {}{}",
        esc(&input.display().to_string()),
        esc(local.title.as_deref().unwrap_or("(no title)")),
        esc(local.author.as_deref().unwrap_or("(no author)")),
        local
            .duration_secs
            .map(|d| format!(", {}", hm(d)))
            .unwrap_or_default()
    );
    if ranked.is_empty() {
        println!("no candidates; try --query with other words, --author, or another --region");
        return;
    }
    for (i, c) in ranked.iter().enumerate() {
        let b = &c.book;
        let series = b
            .series
            .as_ref()
            .map(|s| match &s.position {
                Some(p) => format!(" [{} #{p}]", s.name),
                None => format!(" [{}]", s.name),
            })
            .unwrap_or_default();
        println!(
            "{:>2}. {:.2}  {}  {} — {}{}{}{}",
            i + 1,
            c.score,
            b.asin,
            esc(&b.title),
            esc(&b.authors.join(", ")),
            if b.narrators.is_empty() {
                String::new()
            } else {
                format!(" (read by {})", esc(&b.narrators.join(", ")))
            },
            esc(&series),
            b.runtime_secs
                .map(|d| format!(", {}", hm(d)))
                .unwrap_or_default(),
        );
    }
    if let Some(best) = ranked.first() {
        println!(
            "apply one with: aiom4b tag BOOK.m4b --asin {} --region {}",
            best.book.asin, best.book.region
        );
    }
}
