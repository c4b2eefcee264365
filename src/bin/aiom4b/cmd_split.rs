//! `aiom4b split BOOK.m4b --max-duration 20h | --max-size 2GB | --parts N | --by-chapter`:
//! the arguments onto [`aiom4b::split::SplitOptions`], and the report.
use crate::human;
use aiom4b::split::{self, SplitBy, SplitOptions};
use anyhow::Result;
use clap::{ArgGroup, Args};
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("by").required(true).args(["max_duration", "max_size", "parts", "by_chapter"])))]
pub struct SplitArgs {
    /// The .m4b (or .m4a) to split; it is only read.
    pub file: PathBuf,
    /// Parts of at most this length (e.g. 20h, 11h30m, 90m); chapters are packed in order,
    /// and a chapter longer than this is a part of its own.
    #[arg(long, value_name = "DURATION", value_parser = split::parse_duration_secs)]
    pub max_duration: Option<f64>,
    /// Parts of at most this size (e.g. 2GB, 4GiB, 500MB).
    #[arg(long, value_name = "SIZE", value_parser = split::parse_size_bytes)]
    pub max_size: Option<u64>,
    /// This many parts of about equal length.
    #[arg(long, value_name = "N")]
    pub parts: Option<usize>,
    /// One .m4a per chapter, named "NN - Chapter title.m4a".
    #[arg(long)]
    pub by_chapter: bool,
    /// Folder for the parts (default: beside the book). Existing files are never replaced.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn split(a: SplitArgs) -> Result<u8> {
    let by = if let Some(s) = a.max_duration {
        SplitBy::MaxDuration(s)
    } else if let Some(b) = a.max_size {
        SplitBy::MaxSize(b)
    } else if let Some(n) = a.parts {
        SplitBy::Parts(n)
    } else {
        SplitBy::ByChapter
    };
    let mut opts = SplitOptions::new(by);
    opts.out_dir = a.out;
    let report = split::split_book(&a.file, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let rate = report.sample_rate.max(1) as f64;
    for p in &report.parts {
        let secs = (p.samples as f64 / rate).round() as u64;
        println!(
            "{}  ({}:{:02}:{:02}, {} chapter(s), {})",
            p.path.display(),
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            p.chapters.len(),
            human::bytes(p.bytes)
        );
    }
    Ok(0)
}
