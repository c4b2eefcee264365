//! Pure chapter arithmetic: decoded sample counts → chapter starts, and the chapters text file.
//!
//! The one clock: chapter k of a per-file book starts at the sum of the decoded (and resampled)
//! sample counts of files 0..k. Container or header durations are never used — they are off by
//! tens of milliseconds per file, which adds up to seconds over a long book.
//!
//! # Chapters file format (`--chapters-file`)
//! One chapter per line: a start time, whitespace, the title. Times are `HH:MM:SS.mmm`,
//! `H:MM:SS`, `MM:SS(.mmm)` or plain seconds (`754.5`). Empty lines and lines starting with `#`
//! are ignored. Starts must increase; the first chapter is moved to 0 if it starts later (a
//! warning says so), so the whole book is covered. Titles longer than
//! [`MAX_TITLE_BYTES`] are cut on a character boundary (one
//! warning for all of them).
//! ```text
//! # my book
//! 00:00:00.000 Opening Credits
//! 00:12:34.500 Chapter 1: The Storm
//! 1:02:03 Chapter 2
//! ```
use crate::error::{Error, Result};
use crate::model::{Chapter, MAX_TITLE_BYTES};
use std::path::Path;

/// The Nero `chpl` atom stores its chapter count in one byte: beyond this FFmpeg truncates it.
pub const CHPL_MAX_CHAPTERS: usize = 255;

/// Chapter starts for one chapter per track, from each track's decoded length.
pub fn per_track(titles: &[String], track_samples: &[u64]) -> Vec<Chapter> {
    let mut start = 0u64;
    titles
        .iter()
        .zip(track_samples)
        .map(|(t, n)| {
            let c = Chapter {
                title: t.clone(),
                start_samples: start,
            };
            start += n;
            c
        })
        .collect()
}

/// Chapter starts for one chapter per track, except that a track with chapters of its own
/// (`inner[i]`, starts at the track's `source_rates[i]`) contributes those, moved onto the
/// book's clock at `rate` and offset by the track's start. An inner chapter at or past its
/// track's end (a chapter list longer than the audio) is dropped; an empty inner title takes
/// the track's title with its number within the track.
pub fn per_track_with_inner(
    titles: &[String],
    inner: &[Vec<crate::model::InnerChapter>],
    source_rates: &[u32],
    rate: u32,
    track_samples: &[u64],
) -> Vec<Chapter> {
    let mut out = Vec::new();
    let mut start = 0u64;
    for (i, (t, n)) in titles.iter().zip(track_samples).enumerate() {
        let own = inner.get(i).filter(|c| c.len() > 1);
        match own {
            None => out.push(Chapter {
                title: t.clone(),
                start_samples: start,
            }),
            Some(list) => {
                let src = u128::from(source_rates.get(i).copied().unwrap_or(rate).max(1));
                let mut last: Option<u64> = None;
                for (k, c) in list.iter().enumerate() {
                    let at = (u128::from(c.start_samples) * u128::from(rate) + src / 2) / src;
                    let at = u64::try_from(at).unwrap_or(u64::MAX);
                    if (k > 0 && at >= *n) || last.is_some_and(|l| at <= l) {
                        continue;
                    }
                    let at = if k == 0 { 0 } else { at };
                    last = Some(at);
                    let title = if c.title.trim().is_empty() {
                        format!("{t} ({})", k + 1)
                    } else {
                        c.title.clone()
                    };
                    out.push(Chapter {
                        title,
                        start_samples: start + at,
                    });
                }
            }
        }
        start += n;
    }
    out
}

/// A chapter from a chapters file, in seconds (the sample rate is applied later).
#[derive(Debug, Clone, PartialEq)]
pub struct TimedChapter {
    /// Start in seconds from the beginning of the book.
    pub start_secs: f64,
    /// The title (`Chapter N` when the line has none).
    pub title: String,
    /// The 1-based line of the chapters file it came from.
    pub line: usize,
}

/// Parses a chapters file in any format [`crate::chapter_formats`] reads (recognised from its
/// content): aiom4b's text format, JSON, CUE, FFmpeg metadata or OGM.
pub fn parse_chapters_file(path: &Path) -> Result<Vec<TimedChapter>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(path, "cannot read the chapters file", e))?;
    crate::chapter_formats::parse(&text)
        .map(|(_, chapters)| chapters)
        .map_err(|(line, reason)| Error::ChaptersFile {
            path: path.to_path_buf(),
            line,
            reason,
        })
}

/// Parses chapters text; errors carry the 1-based line number.
pub fn parse_chapters_text(text: &str) -> std::result::Result<Vec<TimedChapter>, (usize, String)> {
    let mut out: Vec<TimedChapter> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (time, title) = match line.split_once(char::is_whitespace) {
            Some((t, rest)) => (t, rest.trim()),
            None => (line, ""),
        };
        let secs = parse_time(time).ok_or_else(|| {
            // Quote only the start of what was found: a line may be megabytes long.
            let shown = crate::sanitize::truncate_utf8(time, 40);
            let more = if shown.len() < time.len() { "…" } else { "" };
            (
                line_no,
                format!(
                    "cannot read the time {shown:?}{more}; write it as HH:MM:SS.mmm followed by the title"
                ),
            )
        })?;
        if let Some(prev) = out.last() {
            if secs <= prev.start_secs {
                return Err((line_no, format!("chapter starts at {time}, not after the previous one; list chapters in order")));
            }
        }
        let title = if title.is_empty() {
            format!("Chapter {}", out.len() + 1)
        } else {
            title.to_string()
        };
        out.push(TimedChapter {
            start_secs: secs,
            title,
            line: line_no,
        });
    }
    if out.is_empty() {
        return Err((0, "the file lists no chapters".into()));
    }
    Ok(out)
}

/// `HH:MM:SS.mmm`, `MM:SS`, `SS.mmm` → seconds.
pub fn parse_time(s: &str) -> Option<f64> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut total = 0.0f64;
    for (i, p) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit() || (last && c == '.')) {
            return None;
        }
        let v: f64 = p.parse().ok()?;
        if i > 0 && v >= 60.0 {
            return None;
        }
        total = total * 60.0 + v;
    }
    total.is_finite().then_some(total)
}

/// A duration as people write it on a command line → seconds (finite, ≥ 0): plain seconds
/// (`90`, `2.5`), a time (`1:30:00`, `02:03.5`, see [`parse_time`]) or numbers with units
/// (`20h`, `1h30m`, `90min`, `7.5s`, `500ms`). A number after a unit needs its own unit
/// (`1h30` is refused: minutes or seconds?).
pub fn parse_duration(s: &str) -> Option<f64> {
    let t = s.trim().to_ascii_lowercase();
    if t.is_empty() {
        return None;
    }
    if let Some(v) = parse_time(&t) {
        return Some(v);
    }
    let mut total = 0.0f64;
    let mut rest = t.as_str();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = [
            ("ms", 0.001),
            ("min", 60.0),
            ("h", 3600.0),
            ("m", 60.0),
            ("s", 1.0),
        ]
        .iter()
        .find(|(u, _)| rest.starts_with(u))
        .map(|(u, mul)| (*mul, u.len()))?;
        rest = &rest[len..];
        total += value * unit;
    }
    total.is_finite().then_some(total)
}

/// Formats samples as `HH:MM:SS.mmm` (truncated to the millisecond).
pub fn format_samples(samples: u64, rate: u32) -> String {
    format_millis((samples as u128 * 1000 / rate.max(1) as u128) as u64)
}

/// Formats milliseconds as `HH:MM:SS.mmm`, the timestamp format of chapters files (hours grow
/// past two digits when they must). The CLI's other durations and its byte sizes are in its
/// `human` module; this one is here because a chapters file is a format, not a display.
pub fn format_millis(ms: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Converts file chapters to samples at `rate`, checking them against the book's length.
/// Returns the chapters and warnings.
pub fn timed_to_samples(
    chapters: &[TimedChapter],
    rate: u32,
    total_samples: u64,
    path: &Path,
) -> Result<(Vec<Chapter>, Vec<String>)> {
    let mut warnings = Vec::new();
    let mut cut_lines: Vec<usize> = Vec::new();
    let mut out = Vec::with_capacity(chapters.len());
    for (i, c) in chapters.iter().enumerate() {
        let mut start = (c.start_secs * rate as f64).round() as u64;
        if i == 0 && start > 0 {
            let warning = if start >= total_samples {
                // Later lines past the end are errors; a first one is moved to 0 like any
                // late first chapter, but it says the file does not fit this book at all.
                format!(
                    "{}: the first chapter (line {}) starts at {}, after the end of the book ({}); \
                     is the chapters file for another book or edition? It now starts at 0",
                    path.display(),
                    c.line,
                    format_samples(start, rate),
                    format_samples(total_samples, rate)
                )
            } else {
                format!(
                    "{}: the first chapter starts at {}; it now starts at 0 so the whole book is covered",
                    path.display(),
                    format_samples(start, rate)
                )
            };
            // Also to the log (and so to stderr): the report's findings only reach `--json`.
            tracing::warn!("{warning}");
            warnings.push(warning);
            start = 0;
        }
        if out
            .last()
            .is_some_and(|p: &Chapter| start <= p.start_samples)
        {
            // Starts increase in seconds, but two within one sample of each other (or of 0,
            // where the first one moves) would make an empty chapter (found by fuzzing).
            return Err(Error::ChaptersFile {
                path: path.to_path_buf(),
                line: c.line,
                reason: format!(
                    "chapter starts at {}, less than one sample after the previous one; \
                     move it later or remove the line",
                    format_samples(start, rate)
                ),
            });
        }
        if start >= total_samples {
            return Err(Error::ChaptersFile {
                path: path.to_path_buf(),
                line: c.line,
                reason: format!(
                    "chapter starts at {}, after the end of the book ({}); fix or remove the line",
                    format_samples(start, rate),
                    format_samples(total_samples, rate)
                ),
            });
        }
        let title = crate::sanitize::truncate_utf8(&c.title, MAX_TITLE_BYTES).trim_end();
        if title.len() < c.title.len() {
            cut_lines.push(c.line);
        }
        out.push(Chapter {
            title: title.to_string(),
            start_samples: start,
        });
    }
    if let Some(first) = cut_lines.first() {
        warnings.push(format!(
            "{}: {} chapter title(s) (the first on line {first}) are longer than {MAX_TITLE_BYTES} bytes and were cut to that length",
            path.display(),
            cut_lines.len()
        ));
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_in_every_spelling_the_flags_take() {
        for (s, v) in [
            ("90", 90.0),
            ("2.5s", 2.5),
            ("500ms", 0.5),
            ("5m", 300.0),
            ("90min", 5400.0),
            ("1h30m", 5400.0),
            ("20H", 72000.0),
            ("1:30:00", 5400.0),
            ("02:03.5", 123.5),
            ("0", 0.0),
        ] {
            assert_eq!(super::parse_duration(s), Some(v), "{s}");
        }
        for bad in ["", "h", "10x", "-5", "1h30", "1.2.3s", "1:75"] {
            assert_eq!(super::parse_duration(bad), None, "{bad}");
        }
    }

    use super::*;

    #[test]
    fn per_track_starts_are_cumulative_decoded_lengths() {
        let t: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let c = per_track(&t, &[100, 250, 7]);
        assert_eq!(
            c.iter().map(|c| c.start_samples).collect::<Vec<_>>(),
            vec![0, 100, 350]
        );
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("00:12:34.500"), Some(754.5));
        assert_eq!(parse_time("1:02:03"), Some(3723.0));
        assert_eq!(parse_time("12:34"), Some(754.0));
        assert_eq!(parse_time("754.25"), Some(754.25));
        assert_eq!(parse_time("1:75"), None);
        assert_eq!(parse_time("abc"), None);
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn chapters_text_parses_and_rejects_disorder() {
        let c = parse_chapters_text("# x\n\n00:00:00 Intro\n00:01:00.5 Chapter – ü\n").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].title, "Chapter – ü");
        assert_eq!(c[1].start_secs, 60.5);
        let e = parse_chapters_text("00:01:00 A\n00:00:30 B\n").unwrap_err();
        assert_eq!(e.0, 2);
        assert!(parse_chapters_text("nonsense here\n").is_err());
    }

    #[test]
    fn timed_chapters_checked_against_length() {
        let c = parse_chapters_text("00:00:01 A\n00:00:02 B\n").unwrap();
        let (ch, w) = timed_to_samples(&c, 1000, 5000, Path::new("c.txt")).unwrap();
        assert_eq!(ch[0].start_samples, 0);
        assert_eq!(ch[1].start_samples, 2000);
        assert_eq!(w.len(), 1);
        assert!(timed_to_samples(&c, 1000, 1500, Path::new("c.txt")).is_err());
        // A lone first chapter past the end is moved to 0 with a warning that says so.
        let c = parse_chapters_text("10:00:00 Epilog\n").unwrap();
        let (ch, w) = timed_to_samples(&c, 1000, 5000, Path::new("c.txt")).unwrap();
        assert_eq!(ch[0].start_samples, 0);
        assert!(w[0].contains("after the end of the book"), "{w:?}");
    }

    #[test]
    fn long_titles_are_cut_with_one_warning() {
        // 'é' is 2 bytes: the cut at MAX_TITLE_BYTES must not split one.
        let long = format!("a{}", "é".repeat(40_000));
        let text = format!("00:00:00 {long}\n00:00:01 short\n00:00:02 {long}\n");
        let c = parse_chapters_text(&text).unwrap();
        let (ch, w) = timed_to_samples(&c, 1000, 5000, Path::new("c.txt")).unwrap();
        assert_eq!(ch[0].title.len(), MAX_TITLE_BYTES - 1);
        assert!(long.starts_with(&ch[0].title));
        assert_eq!(ch[1].title, "short");
        assert_eq!(ch[2].title, ch[0].title);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("2 chapter title(s)") && w[0].contains("line 1"),
            "{w:?}"
        );
    }

    #[test]
    fn chapters_within_one_sample_are_an_error_not_an_empty_chapter() {
        // Found by fuzzing: 0 and 0.01 s are the same sample at 1 Hz; at 44.1 kHz the same
        // happens 10 µs apart, after 0 or anywhere later.
        let c = parse_chapters_text("00:00:00.000 A\n00.01 B\n").unwrap();
        assert!(timed_to_samples(&c, 1, 10, Path::new("c.txt")).is_err());
        let c = parse_chapters_text("0 A\n0.00001 B\n").unwrap();
        assert!(timed_to_samples(&c, 44_100, 44_100, Path::new("c.txt")).is_err());
        let c = parse_chapters_text("0 A\n1 B\n0:00:01.00001 C\n").unwrap();
        let e = timed_to_samples(&c, 44_100, 44_100 * 60, Path::new("c.txt")).unwrap_err();
        assert!(matches!(&e, Error::ChaptersFile { line: 3, .. }), "{e}");
        // One sample apart is a chapter.
        let c = parse_chapters_text("0 A\n0.0001 B\n").unwrap();
        let (ch, _) = timed_to_samples(&c, 44_100, 44_100, Path::new("c.txt")).unwrap();
        assert_eq!(ch[1].start_samples, 4);
    }

    #[test]
    fn format_is_hms_millis() {
        assert_eq!(
            format_samples(44_100 * 3723 + 22_050, 44_100),
            "01:02:03.500"
        );
        assert_eq!(format_millis(59_999), "00:00:59.999");
        assert_eq!(format_millis(360_000_000), "100:00:00.000");
    }
}
