//! `aiom4b edit BOOK.m4b …`: change tags, cover and chapters of a finished book without
//! re-encoding (the library's `edit` module does the work), or of every book under a folder
//! with `--each`.
use crate::ui::escape;
use crate::{EXIT_FAILURE, EXIT_USAGE};
use aiom4b::edit::{self, BookEdit, ChapterEdit, CoverEdit, EditReport, FieldEdit, TagEdits};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(
    after_help = "An empty value clears a tag: --narrator \"\" removes the narrator. \
Exit codes: 0 edited (or nothing to change), 1 an edit failed or was refused (the book is left as it was), 2 usage."
)]
pub struct EditArgs {
    /// The .m4b/.m4a to edit.
    #[arg(required_unless_present = "each", conflicts_with = "each")]
    pub file: Option<PathBuf>,
    /// Edit every .m4b/.m4a under this folder (recursively) the same way; a failure does not
    /// stop the others.
    #[arg(long, value_name = "DIR")]
    pub each: Option<PathBuf>,
    /// Book title (©nam; also ©alb when the album followed the title).
    #[arg(long, value_name = "T")]
    pub title: Option<String>,
    /// Author (©ART and aART).
    #[arg(long, value_name = "A")]
    pub author: Option<String>,
    /// Narrator (©nrt and ©wrt).
    #[arg(long, value_name = "N")]
    pub narrator: Option<String>,
    /// Series name (©mvn and SERIES).
    #[arg(long, value_name = "S")]
    pub series: Option<String>,
    /// Position in the series, e.g. 3 or 1.5 (SERIES-PART, and ©mvi when a whole number).
    #[arg(long, value_name = "P")]
    pub series_part: Option<String>,
    /// Genre (©gen).
    #[arg(long, value_name = "G")]
    pub genre: Option<String>,
    /// Year or date (©day).
    #[arg(long, value_name = "Y")]
    pub year: Option<String>,
    /// Description (desc and ldes).
    #[arg(long, value_name = "D")]
    pub description: Option<String>,
    /// Comment (©cmt).
    #[arg(long, value_name = "C")]
    pub comment: Option<String>,
    /// Replace the cover with this JPEG or PNG.
    #[arg(long, value_name = "IMG", conflicts_with = "no_cover")]
    pub cover: Option<PathBuf>,
    /// Remove the cover.
    #[arg(long)]
    pub no_cover: bool,
    /// Replace the chapters with those of this chapters file (one "START TITLE" per line).
    #[arg(long, value_name = "F", conflicts_with_all = ["chapter", "shift"])]
    pub chapters_file: Option<PathBuf>,
    /// Rename one chapter: N=TITLE (N counts from 1); repeatable.
    #[arg(long, value_name = "N=TITLE", conflicts_with = "shift")]
    pub chapter: Vec<String>,
    /// Move every chapter mark: seconds or [H:]MM:SS(.mmm), with a sign, e.g. -2.5s or +1:02.5.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub shift: Option<String>,
    /// Show what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report(s) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `-2.5`, `-2.5s`, `+1:02.5` → seconds.
pub fn parse_shift(s: &str) -> Option<f64> {
    let s = s.trim();
    let (sign, rest) = match s.as_bytes().first()? {
        b'-' => (-1.0, &s[1..]),
        b'+' => (1.0, &s[1..]),
        _ => (1.0, s),
    };
    aiom4b::chapters::parse_duration(rest).map(|v| sign * v)
}

fn parse_rename(s: &str) -> Result<(usize, String)> {
    let (n, title) = s.split_once('=').with_context(|| {
        format!("--chapter {s:?}: write N=TITLE, e.g. --chapter 3=\"The Storm\"")
    })?;
    let n: usize = n
        .trim()
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .with_context(|| format!("--chapter {s:?}: {n:?} is not a chapter number (1, 2, …)"))?;
    Ok((n, title.to_string()))
}

/// The parts of the edit that are the same for every book.
struct Request {
    tags: TagEdits,
    cover: CoverEdit,
    chapters_file: Option<(PathBuf, Vec<aiom4b::chapters::TimedChapter>)>,
    renames: Vec<(usize, String)>,
    shift_secs: Option<f64>,
}

impl Request {
    fn from_args(a: &EditArgs) -> Result<Request> {
        let f = |v: &Option<String>| FieldEdit::from_option(v.as_deref());
        let tags = TagEdits {
            title: f(&a.title),
            author: f(&a.author),
            narrator: f(&a.narrator),
            series: f(&a.series),
            series_part: f(&a.series_part),
            genre: f(&a.genre),
            year: f(&a.year),
            description: f(&a.description),
            comment: f(&a.comment),
            ..TagEdits::default()
        };
        let cover = match (&a.cover, a.no_cover) {
            (Some(p), _) => {
                let data = read_limited(p, aiom4b::MAX_COVER_BYTES as u64)?;
                let pic = aiom4b::probe::picture_from_bytes(data).with_context(|| {
                    format!(
                        "{}: not a JPEG or PNG image; convert it to JPEG or PNG",
                        p.display()
                    )
                })?;
                CoverEdit::Set(pic)
            }
            (None, true) => CoverEdit::Remove,
            (None, false) => CoverEdit::Keep,
        };
        let chapters_file = match &a.chapters_file {
            Some(p) => Some((p.clone(), aiom4b::chapters::parse_chapters_file(p)?)),
            None => None,
        };
        let renames = a
            .chapter
            .iter()
            .map(|s| parse_rename(s))
            .collect::<Result<Vec<_>>>()?;
        let shift_secs = match &a.shift {
            Some(s) => Some(parse_shift(s).with_context(|| {
                format!("--shift {s:?}: write seconds or [H:]MM:SS(.mmm) with a sign, e.g. -2.5s or +1:02.5")
            })?),
            None => None,
        };
        Ok(Request {
            tags,
            cover,
            chapters_file,
            renames,
            shift_secs,
        })
    }

    /// The edit of one book (chapter times need its rate and length).
    fn for_book(&self, book: &Path) -> Result<(BookEdit, Vec<String>)> {
        let mut warnings = Vec::new();
        let chapters = if let Some((path, timed)) = &self.chapters_file {
            let (_, rate, total) = edit::read_chapters(book)?;
            let (list, w) = aiom4b::chapters::timed_to_samples(timed, rate, total, path)?;
            warnings.extend(w);
            ChapterEdit::Replace(list)
        } else if !self.renames.is_empty() {
            ChapterEdit::Rename(self.renames.clone())
        } else if let Some(secs) = self.shift_secs {
            let (_, rate, _) = edit::read_chapters(book)?;
            ChapterEdit::ShiftSamples((secs * rate as f64).round() as i64)
        } else {
            ChapterEdit::Keep
        };
        Ok((
            BookEdit {
                tags: self.tags.clone(),
                cover: self.cover.clone(),
                chapters,
            },
            warnings,
        ))
    }
}

fn read_limited(p: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    // Only a regular file: opening a FIFO would block, a device would never end.
    let meta =
        std::fs::metadata(p).with_context(|| format!("{}: cannot open the cover", p.display()))?;
    if !meta.is_file() {
        bail!("{}: the cover is not a regular file", p.display());
    }
    let f = std::fs::File::open(p)
        .with_context(|| format!("{}: cannot open the cover", p.display()))?;
    let mut data = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("{}: cannot read the cover", p.display()))?;
    if data.len() as u64 > limit {
        bail!(
            "{}: the cover is larger than {} MiB; use a smaller JPEG (e.g. 1400×1400)",
            p.display(),
            limit >> 20
        );
    }
    Ok(data)
}

pub fn edit(a: EditArgs) -> Result<u8> {
    let req = Request::from_args(&a)?;
    let empty = req.tags == TagEdits::default()
        && req.cover == CoverEdit::Keep
        && req.chapters_file.is_none()
        && req.renames.is_empty()
        && req.shift_secs.is_none();
    if empty {
        eprintln!("aiom4b: error: nothing to change; give at least one of --title … --comment, --cover/--no-cover, --chapters-file, --chapter, --shift");
        return Ok(EXIT_USAGE);
    }
    let books: Vec<PathBuf> = match (&a.file, &a.each) {
        (Some(f), _) => vec![f.clone()],
        (None, Some(dir)) => {
            let mut found = Vec::new();
            collect_books(dir, &mut found)
                .with_context(|| format!("{}: cannot list the folder", dir.display()))?;
            found.sort();
            if found.is_empty() {
                bail!("{}: no .m4b or .m4a file found", dir.display());
            }
            found
        }
        (None, None) => unreachable!("clap requires FILE or --each"),
    };
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for book in &books {
        let result = req.for_book(book).and_then(|(e, w)| {
            let mut r = if a.dry_run {
                edit::preview_edit(book, &e)?
            } else {
                let mut r = edit::edit_book(book, &e)?;
                aiom4b::workflow::library::refresh_sidecars_noted(
                    book,
                    &mut r.changes,
                    &mut r.warnings,
                );
                r
            };
            r.warnings.splice(0..0, w);
            Ok(r)
        });
        match result {
            Ok(r) => {
                if !a.json {
                    print_report(&r, a.dry_run);
                }
                reports.push(r);
            }
            Err(e) => {
                let text = format!("{e:#}");
                if !a.json || a.each.is_none() {
                    eprintln!("aiom4b: error: {}", crate::ui::escape_lines(&text));
                }
                failed.push((book.clone(), text));
            }
        }
    }
    if a.json {
        let doc = if a.each.is_some() {
            serde_json::json!({
                "edited": reports,
                "failed": failed.iter().map(|(p, e)| serde_json::json!({"path": p, "error": e})).collect::<Vec<_>>(),
                "dry_run": a.dry_run,
            })
        } else {
            match reports.first() {
                Some(r) => serde_json::to_value(r)?,
                None => return Ok(EXIT_FAILURE),
            }
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if a.each.is_some() {
        println!(
            "{} book(s) {}, {} failed",
            reports.len(),
            if a.dry_run { "checked" } else { "edited" },
            failed.len()
        );
        for (p, _) in &failed {
            println!("  failed: {}", escape(&p.display().to_string()));
        }
    }
    Ok(if failed.is_empty() { 0 } else { EXIT_FAILURE })
}

/// Every .m4b/.m4a under `dir` (symbolic links are not followed: an edit refuses them).
fn collect_books(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let path = entry.path();
        if ft.is_dir() {
            collect_books(&path, out)?;
        } else if ft.is_file() {
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase());
            if matches!(ext.as_deref(), Some("m4b" | "m4a")) {
                out.push(path);
            }
        }
    }
    Ok(())
}

pub fn print_report(r: &EditReport, dry_run: bool) {
    let how = match (dry_run, r.in_place) {
        (true, true) => "would be edited in place".to_string(),
        (true, false) => "would be rewritten (no room for the change beside moov)".to_string(),
        (false, true) => format!("edited in place ({} bytes written)", r.bytes_written),
        (false, false) => format!("rewritten ({} bytes)", r.bytes_written),
    };
    println!("{}: {how}", escape(&r.path.display().to_string()));
    for c in &r.changes {
        println!("  {}", escape(c));
    }
    for w in &r.warnings {
        println!("  warning: {}", escape(w));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_parse_with_sign_and_unit() {
        assert_eq!(parse_shift("-2.5"), Some(-2.5));
        assert_eq!(parse_shift("-2.5s"), Some(-2.5));
        assert_eq!(parse_shift("+1:02.5"), Some(62.5));
        assert_eq!(parse_shift("3"), Some(3.0));
        assert_eq!(parse_shift("abc"), None);
        assert_eq!(parse_shift("-"), None);
    }

    #[test]
    fn renames_parse() {
        assert_eq!(
            parse_rename("3=The Storm").unwrap(),
            (3, "The Storm".into())
        );
        assert_eq!(parse_rename("1=a=b").unwrap(), (1, "a=b".into()));
        assert!(parse_rename("0=x").is_err());
        assert!(parse_rename("x").is_err());
    }
}
