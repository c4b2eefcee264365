//! The chapter list formats people exchange, both ways: aiom4b's own text format, JSON, CUE
//! sheets, FFmpeg's metadata file and (read only) the OGM `CHAPTERxx=` lines of mp4v2's
//! `mp4chaps` and tone.
//!
//! One parser serves `convert --chapters-file`, `edit --chapters-file` and `chapters import`:
//! [`parse`] recognises the format from the file's content (not its name: a `.txt` export of
//! another tool is often FFmpeg's format), [`write`] produces each of them for
//! `chapters export`.
//!
//! Written by hand because no maintained crate reads more than one of these (the `cue` crates
//! wrap libcue and read only CUE; `ffmetadata` parsing lives inside FFmpeg's CLI), and each is a
//! few lines of line-oriented text.
//!
//! | format | read | written | precision of a written start |
//! |---|---|---|---|
//! | `txt` (`HH:MM:SS.mmm Title`) | yes | yes | 1 ms |
//! | `json` | yes | yes | exact (seconds as a float, and `start_samples`) |
//! | `cue` | yes | yes | 1/75 s (a CD frame: the format has nothing finer) |
//! | `ffmetadata` (`;FFMETADATA1`) | yes | yes | exact (`TIMEBASE=1/` the sample rate); any time base read |
//! | OGM (`CHAPTER01=00:00:00.000`) | yes | no | — |
//!
//! The JSON accepted on import is either a list of chapters or an object with a `chapters`
//! list; each chapter has a `title` and a start as `start` / `start_secs` / `startOffsetSec`
//! (seconds, a number or an `HH:MM:SS.mmm` string), `start_ms` / `startOffsetMs`
//! (milliseconds, Audnexus) or `start_samples` with the top-level `sample_rate`. That covers
//! aiom4b's own export, Audiobookshelf's chapter JSON and Audnexus' chapter list.
use crate::chapters::{parse_chapters_text, parse_time, TimedChapter};
use serde::Serialize;
use std::fmt::Write as _;
use std::str::FromStr;

/// A chapter list format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChapterFormat {
    /// aiom4b's text format: `HH:MM:SS.mmm Title` per line (see [`crate::chapters`]).
    Txt,
    /// JSON (see the module docs for the shapes read).
    Json,
    /// A CUE sheet: one `TRACK` per chapter, `INDEX 01 MM:SS:FF`.
    Cue,
    /// FFmpeg's metadata file (`;FFMETADATA1`, `[CHAPTER]` sections).
    FfMetadata,
    /// OGM chapters (`CHAPTER01=…`, `CHAPTER01NAME=…`); read only.
    Ogm,
}

impl ChapterFormat {
    /// The formats `chapters export` writes.
    pub const WRITABLE: [ChapterFormat; 4] = [
        ChapterFormat::Txt,
        ChapterFormat::Json,
        ChapterFormat::Cue,
        ChapterFormat::FfMetadata,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ChapterFormat::Txt => "txt",
            ChapterFormat::Json => "json",
            ChapterFormat::Cue => "cue",
            ChapterFormat::FfMetadata => "ffmetadata",
            ChapterFormat::Ogm => "ogm",
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            ChapterFormat::FfMetadata => "ffmetadata",
            other => other.name(),
        }
    }
}

impl FromStr for ChapterFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "txt" | "text" => Ok(ChapterFormat::Txt),
            "json" => Ok(ChapterFormat::Json),
            "cue" => Ok(ChapterFormat::Cue),
            "ffmetadata" | "ffmeta" | "metadata" => Ok(ChapterFormat::FfMetadata),
            "ogm" => Ok(ChapterFormat::Ogm),
            other => Err(format!(
                "unknown chapter format {other:?}; use txt, json, cue or ffmetadata"
            )),
        }
    }
}

/// Which format `text` is in, from its content.
pub fn sniff(text: &str) -> ChapterFormat {
    let body = text.trim_start_matches('\u{feff}');
    let mut lines = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let first = lines.next().unwrap_or("");
    if first.starts_with(";FFMETADATA") {
        return ChapterFormat::FfMetadata;
    }
    if first.starts_with('{') || first.starts_with('[') {
        return ChapterFormat::Json;
    }
    if is_ogm_line(first) {
        return ChapterFormat::Ogm;
    }
    let cue_words = ["FILE ", "TRACK ", "TITLE ", "PERFORMER ", "REM ", "INDEX "];
    if cue_words
        .iter()
        .any(|w| first.to_ascii_uppercase().starts_with(w))
        && body
            .lines()
            .any(|l| l.trim().to_ascii_uppercase().starts_with("INDEX "))
    {
        return ChapterFormat::Cue;
    }
    ChapterFormat::Txt
}

fn is_ogm_line(l: &str) -> bool {
    let Some(rest) = l.strip_prefix("CHAPTER") else {
        return false;
    };
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    digits > 0 && rest[digits..].starts_with('=')
}

/// An error: the 1-based line (0 for the whole file, or the chapter's number in JSON) and what
/// to do, as [`parse_chapters_text`] returns.
pub type ParseError = (usize, String);

/// Parses `text` in the format its content shows (see [`sniff`]).
pub fn parse(text: &str) -> Result<(ChapterFormat, Vec<TimedChapter>), ParseError> {
    let format = sniff(text);
    parse_as(text, format).map(|c| (format, c))
}

/// Parses `text` as `format`. Starts must increase; an empty list is an error.
pub fn parse_as(text: &str, format: ChapterFormat) -> Result<Vec<TimedChapter>, ParseError> {
    let list = match format {
        ChapterFormat::Txt => return parse_chapters_text(text),
        ChapterFormat::Json => parse_json(text)?,
        ChapterFormat::Cue => parse_cue(text)?,
        ChapterFormat::FfMetadata => parse_ffmetadata(text)?,
        ChapterFormat::Ogm => parse_ogm(text)?,
    };
    check_order(list)
}

fn check_order(mut list: Vec<TimedChapter>) -> Result<Vec<TimedChapter>, ParseError> {
    if list.is_empty() {
        return Err((0, "the file lists no chapters".into()));
    }
    for i in 0..list.len() {
        let c = &list[i];
        if !c.start_secs.is_finite() || c.start_secs < 0.0 {
            return Err((c.line, "a chapter start must be a time of 0 or more".into()));
        }
        if i > 0 && c.start_secs <= list[i - 1].start_secs {
            return Err((
                c.line,
                format!(
                    "chapter {:?} starts at {}, not after the previous one; list chapters in order",
                    c.title,
                    crate::chapters::format_millis((c.start_secs * 1000.0) as u64)
                ),
            ));
        }
    }
    for (i, c) in list.iter_mut().enumerate() {
        if c.title.trim().is_empty() {
            c.title = format!("Chapter {}", i + 1);
        }
    }
    Ok(list)
}

fn parse_json(text: &str) -> Result<Vec<TimedChapter>, ParseError> {
    let v: serde_json::Value =
        serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| {
            (
                e.line(),
                format!("not valid JSON ({e}); export a chapter list again or fix the file"),
            )
        })?;
    let rate = v
        .get("sample_rate")
        .and_then(|r| r.as_u64())
        .filter(|r| *r > 0);
    let items = match &v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(o) => match o.get("chapters") {
            Some(serde_json::Value::Array(a)) => a,
            _ => {
                return Err((
                    0,
                    "the JSON object has no \"chapters\" list; expected {\"chapters\": [{\"start\": 0, \"title\": \"…\"}, …]}".into(),
                ))
            }
        },
        _ => return Err((0, "expected a JSON list of chapters or an object with \"chapters\"".into())),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        let obj = item.as_object().ok_or_else(|| {
            (
                n,
                format!("chapter {n} is not an object with a start and a title"),
            )
        })?;
        let secs_field = |k: &str| -> Result<Option<f64>, ParseError> {
            match obj.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::Number(x)) => Ok(x.as_f64()),
                Some(serde_json::Value::String(s)) => parse_time(s.trim()).map(Some).ok_or_else(|| {
                    (n, format!("chapter {n}: cannot read the time {s:?} in \"{k}\"; write seconds or HH:MM:SS.mmm"))
                }),
                Some(_) => Err((n, format!("chapter {n}: \"{k}\" must be a number or a time"))),
            }
        };
        let num = |k: &str| obj.get(k).and_then(|x| x.as_f64());
        let start = if let (Some(s), Some(r)) =
            (obj.get("start_samples").and_then(|x| x.as_u64()), rate)
        {
            s as f64 / r as f64
        } else if let Some(s) = secs_field("start")? {
            s
        } else if let Some(s) = secs_field("start_secs")? {
            s
        } else if let Some(s) = secs_field("startOffsetSec")? {
            // Audnexus gives both; the milliseconds are the precise one.
            num("startOffsetMs").map(|ms| ms / 1000.0).unwrap_or(s)
        } else if let Some(ms) = num("startOffsetMs").or_else(|| num("start_ms")) {
            ms / 1000.0
        } else {
            return Err((
                n,
                format!("chapter {n} has no start (\"start\" in seconds, \"start_ms\" or \"startOffsetMs\")"),
            ));
        };
        let title = obj
            .get("title")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .trim()
            .to_string();
        out.push(TimedChapter {
            start_secs: start,
            title,
            line: n,
        });
    }
    Ok(out)
}

/// Undoes the quoting of a CUE value: `"a \"b\""` → `a "b"`; unquoted values are kept.
fn cue_value(s: &str) -> String {
    let s = s.trim();
    match s.strip_prefix('"') {
        Some(inner) => {
            let inner = inner.strip_suffix('"').unwrap_or(inner);
            inner.replace("\\\"", "\"")
        }
        None => s.to_string(),
    }
}

/// The `TRACK` of a CUE sheet being read.
struct CueTrack {
    title: String,
    /// Its `INDEX 01` in seconds.
    start: Option<f64>,
    /// The line of its `TRACK`.
    line: usize,
}

impl CueTrack {
    fn finish(self, out: &mut Vec<TimedChapter>) -> Result<(), ParseError> {
        let start = self.start.ok_or((
            self.line,
            "a TRACK has no INDEX 01 line; give every track its start".to_string(),
        ))?;
        out.push(TimedChapter {
            start_secs: start,
            title: self.title,
            line: self.line,
        });
        Ok(())
    }
}

fn parse_cue(text: &str) -> Result<Vec<TimedChapter>, ParseError> {
    let mut out: Vec<TimedChapter> = Vec::new();
    let mut track: Option<CueTrack> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_start_matches('\u{feff}').trim();
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match word.to_ascii_uppercase().as_str() {
            "TRACK" => {
                if let Some(t) = track.take() {
                    t.finish(&mut out)?;
                }
                track = Some(CueTrack {
                    title: String::new(),
                    start: None,
                    line: line_no,
                });
            }
            "TITLE" => {
                if let Some(t) = track.as_mut() {
                    t.title = cue_value(rest);
                }
            }
            "INDEX" => {
                let Some(t) = track.as_mut() else { continue };
                let mut it = rest.split_whitespace();
                let (num, time) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
                if num.trim_start_matches('0') != "1" {
                    continue; // INDEX 00 is the pre-gap
                }
                let secs = cue_time(time).ok_or_else(|| {
                    (
                        line_no,
                        format!("cannot read the CUE time {time:?}; write it as MM:SS:FF (75 frames a second)"),
                    )
                })?;
                t.start = Some(secs);
            }
            _ => {}
        }
    }
    if let Some(t) = track.take() {
        t.finish(&mut out)?;
    }
    Ok(out)
}

/// `MM:SS:FF` (minutes may exceed 99) → seconds.
fn cue_time(s: &str) -> Option<f64> {
    let mut it = s.split(':');
    let (m, sec, f) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let all_digits = |x: &str| !x.is_empty() && x.chars().all(|c| c.is_ascii_digit());
    if !(all_digits(m) && all_digits(sec) && all_digits(f)) {
        return None;
    }
    let (m, sec, f): (u64, u64, u64) = (m.parse().ok()?, sec.parse().ok()?, f.parse().ok()?);
    (sec < 60 && f < 75).then(|| (m * 60 + sec) as f64 + f as f64 / 75.0)
}

/// Undoes FFmpeg's metadata escaping (`\=`, `\;`, `\#`, `\\`, `\` + newline).
fn ffmeta_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn ffmeta_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '=' | ';' | '#' | '\\' | '\n') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn parse_ffmetadata(text: &str) -> Result<Vec<TimedChapter>, ParseError> {
    // Join escaped line breaks first, keeping track of the line each logical line starts on.
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.trim_start_matches('\u{feff}');
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        acc.push_str(raw);
        let trailing = acc.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            acc.pop();
            acc.push_str("\\\n");
            pending = Some((start, acc));
        } else {
            logical.push((start, acc));
        }
    }
    if let Some(p) = pending {
        logical.push(p);
    }

    struct Section {
        line: usize,
        tb: (u64, u64),
        start: Option<i64>,
        title: String,
    }
    let mut sections: Vec<Section> = Vec::new();
    let mut in_chapter = false;
    for (line_no, line) in &logical {
        let t = line.trim();
        if t.is_empty() || t.starts_with(';') || t.starts_with('#') {
            continue;
        }
        if t.starts_with('[') {
            in_chapter = t.eq_ignore_ascii_case("[CHAPTER]");
            if in_chapter {
                sections.push(Section {
                    line: *line_no,
                    tb: (1, 1_000_000_000),
                    start: None,
                    title: String::new(),
                });
            }
            continue;
        }
        if !in_chapter {
            continue;
        }
        let Some(sec) = sections.last_mut() else {
            continue;
        };
        // The key ends at the first unescaped '='.
        let mut split = None;
        let mut esc = false;
        for (i, c) in t.char_indices() {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '=' {
                split = Some(i);
                break;
            }
        }
        let Some(at) = split else { continue };
        let (key, value) = (ffmeta_unescape(&t[..at]), &t[at + 1..]);
        match key.to_ascii_uppercase().as_str() {
            "TIMEBASE" => {
                let tb = value
                    .split_once('/')
                    .and_then(|(n, d)| {
                        Some((n.trim().parse::<u64>().ok()?, d.trim().parse::<u64>().ok()?))
                    })
                    .filter(|(n, d)| *n > 0 && *d > 0)
                    .ok_or_else(|| {
                        (
                            *line_no,
                            format!("cannot read TIMEBASE={value}; write it as 1/1000"),
                        )
                    })?;
                sec.tb = tb;
            }
            "START" => {
                sec.start = Some(value.trim().parse().map_err(|_| {
                    (*line_no, format!("cannot read START={value}; it must be a whole number of TIMEBASE units"))
                })?);
            }
            "TITLE" => sec.title = ffmeta_unescape(value),
            _ => {}
        }
    }
    sections
        .into_iter()
        .map(|s| {
            let start = s
                .start
                .ok_or((s.line, "a [CHAPTER] has no START line".to_string()))?;
            Ok(TimedChapter {
                start_secs: start as f64 * s.tb.0 as f64 / s.tb.1 as f64,
                title: s.title.trim().to_string(),
                line: s.line,
            })
        })
        .collect()
}

fn parse_ogm(text: &str) -> Result<Vec<TimedChapter>, ParseError> {
    let mut starts: Vec<(String, f64, usize)> = Vec::new();
    let mut names: std::collections::HashMap<String, String> = Default::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start_matches('\u{feff}').trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let Some(rest) = key.strip_prefix("CHAPTER") else {
            continue;
        };
        if let Some(num) = rest.strip_suffix("NAME") {
            names.insert(num.to_string(), value.trim().to_string());
        } else if rest.chars().all(|c| c.is_ascii_digit()) {
            let secs = parse_time(value.trim()).ok_or_else(|| {
                (
                    i + 1,
                    format!("cannot read the time {value:?}; write it as HH:MM:SS.mmm"),
                )
            })?;
            starts.push((rest.to_string(), secs, i + 1));
        }
    }
    Ok(starts
        .into_iter()
        .map(|(num, secs, line)| TimedChapter {
            start_secs: secs,
            title: names.remove(&num).unwrap_or_default(),
            line,
        })
        .collect())
}

/// A chapter to write: its start in samples and its title.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportChapter {
    /// Start in samples of `rate`.
    pub start_samples: u64,
    /// The title.
    pub title: String,
}

/// The JSON `chapters export` writes (and [`parse`] reads back to the sample).
#[derive(Serialize)]
struct JsonExport<'a> {
    sample_rate: u32,
    duration: f64,
    total_samples: u64,
    chapters: Vec<JsonChapter<'a>>,
}

#[derive(Serialize)]
struct JsonChapter<'a> {
    index: usize,
    start: f64,
    end: f64,
    start_samples: u64,
    end_samples: u64,
    title: &'a str,
}

/// Writes `chapters` of a book of `total_samples` at `rate` in `format`. `source` names the
/// book in a CUE sheet's `FILE` line.
pub fn write(
    format: ChapterFormat,
    chapters: &[ExportChapter],
    rate: u32,
    total_samples: u64,
    source: &str,
) -> String {
    let rate = rate.max(1);
    let secs = |s: u64| s as f64 / rate as f64;
    let end_of = |i: usize| {
        chapters
            .get(i + 1)
            .map(|c| c.start_samples)
            .unwrap_or(total_samples)
            .max(chapters[i].start_samples)
    };
    let one_line = |t: &str| t.replace(['\r', '\n'], " ");
    let mut out = String::new();
    match format {
        ChapterFormat::Txt | ChapterFormat::Ogm => {
            for c in chapters {
                let _ = writeln!(
                    out,
                    "{} {}",
                    crate::chapters::format_samples(c.start_samples, rate),
                    one_line(&c.title)
                );
            }
        }
        ChapterFormat::Json => {
            let doc = JsonExport {
                sample_rate: rate,
                duration: secs(total_samples),
                total_samples,
                chapters: chapters
                    .iter()
                    .enumerate()
                    .map(|(i, c)| JsonChapter {
                        index: i + 1,
                        start: secs(c.start_samples),
                        end: secs(end_of(i)),
                        start_samples: c.start_samples,
                        end_samples: end_of(i),
                        title: &c.title,
                    })
                    .collect(),
            };
            out = serde_json::to_string_pretty(&doc).unwrap_or_default();
            out.push('\n');
        }
        ChapterFormat::Cue => {
            let q = |s: &str| one_line(s).replace('"', "\\\"");
            let _ = writeln!(out, "FILE \"{}\" MP4", q(source));
            for (i, c) in chapters.iter().enumerate() {
                // Nearest CD frame (1/75 s).
                let frames = (c.start_samples as u128 * 75 + rate as u128 / 2) / rate as u128;
                let _ = writeln!(out, "  TRACK {:02} AUDIO", i + 1);
                let _ = writeln!(out, "    TITLE \"{}\"", q(&c.title));
                let _ = writeln!(
                    out,
                    "    INDEX 01 {:02}:{:02}:{:02}",
                    frames / 75 / 60,
                    frames / 75 % 60,
                    frames % 75
                );
            }
        }
        ChapterFormat::FfMetadata => {
            out.push_str(";FFMETADATA1\n");
            for (i, c) in chapters.iter().enumerate() {
                // The sample rate as the time base: exact, and FFmpeg reads any time base.
                let _ = write!(
                    out,
                    "\n[CHAPTER]\nTIMEBASE=1/{rate}\nSTART={}\nEND={}\ntitle={}\n",
                    c.start_samples,
                    end_of(i),
                    ffmeta_escape(&c.title)
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Vec<ExportChapter> {
        vec![
            ExportChapter {
                start_samples: 0,
                title: "Opening Credits".into(),
            },
            ExportChapter {
                start_samples: 441_000 + 17,
                title: "Chapter 1: \"The Storm\" = wind; #1 \\ ok".into(),
            },
            ExportChapter {
                start_samples: 44_100 * 3_700 + 33,
                title: "Épilogue — 終わり".into(),
            },
        ]
    }

    fn starts(v: &[TimedChapter], rate: f64) -> Vec<u64> {
        v.iter()
            .map(|c| (c.start_secs * rate).round() as u64)
            .collect()
    }

    #[test]
    fn every_written_format_reads_back_with_its_precision() {
        let rate = 44_100;
        let total = 44_100 * 3_800;
        for f in ChapterFormat::WRITABLE {
            let text = write(f, &list(), rate, total, "My \"Book\".m4b");
            let (found, back) = parse(&text).unwrap_or_else(|e| panic!("{f:?}: {e:?}\n{text}"));
            assert_eq!(found, f, "sniffed format of\n{text}");
            let titles: Vec<&str> = back.iter().map(|c| c.title.as_str()).collect();
            assert_eq!(
                titles,
                list().iter().map(|c| c.title.as_str()).collect::<Vec<_>>(),
                "{f:?}"
            );
            let tolerance = match f {
                ChapterFormat::Json | ChapterFormat::FfMetadata => 0,
                ChapterFormat::Cue => rate as u64 / 75 / 2 + 1,
                _ => rate as u64 / 1000 + 1,
            };
            for (a, b) in starts(&back, rate as f64).iter().zip(list()) {
                assert!(
                    a.abs_diff(b.start_samples) <= tolerance,
                    "{f:?}: {a} vs {}",
                    b.start_samples
                );
            }
        }
    }

    #[test]
    fn reads_audnexus_and_audiobookshelf_json() {
        let audnexus = r#"{"asin":"B0","brandIntroDurationMs":2043,"chapters":[
            {"lengthMs":5000,"startOffsetMs":0,"startOffsetSec":0,"title":"Opening Credits"},
            {"lengthMs":9000,"startOffsetMs":5012,"startOffsetSec":5,"title":"Chapter 1"}]}"#;
        let (f, v) = parse(audnexus).unwrap();
        assert_eq!(f, ChapterFormat::Json);
        assert_eq!(v[1].start_secs, 5.012);
        let abs = r#"[{"id":0,"start":0,"end":12.5,"title":"A"},{"id":1,"start":"00:00:12.500","end":20,"title":"B"}]"#;
        let (_, v) = parse(abs).unwrap();
        assert_eq!((v[1].start_secs, v[1].title.as_str()), (12.5, "B"));
    }

    #[test]
    fn reads_ffmpeg_metadata_with_other_time_bases_and_escapes() {
        let t = ";FFMETADATA1\ntitle=Book\nartist=A\n\n[CHAPTER]\nTIMEBASE=1/44100\nSTART=0\nEND=44100\ntitle=One\\=1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=1500\nEND=3000\ntitle=Two\\\nlines\n[STREAM]\ntitle=not a chapter\n";
        let (f, v) = parse(t).unwrap();
        assert_eq!(f, ChapterFormat::FfMetadata);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].title, "One=1");
        assert_eq!(v[1].title, "Two\nlines");
        assert_eq!(v[1].start_secs, 1.5);
        assert_eq!(v[1].line, 10);
    }

    #[test]
    fn reads_cue_sheets_from_other_tools() {
        let t = "REM GENRE Audiobook\nPERFORMER \"Someone\"\nTITLE \"Book\"\nFILE \"book.mp3\" MP3\n  TRACK 01 AUDIO\n    TITLE \"Intro\"\n    INDEX 01 00:00:00\n  TRACK 02 AUDIO\n    TITLE Part Two\n    INDEX 00 01:01:70\n    INDEX 01 01:02:37\n";
        let (f, v) = parse(t).unwrap();
        assert_eq!(f, ChapterFormat::Cue);
        assert_eq!(v[1].title, "Part Two");
        assert!((v[1].start_secs - (62.0 + 37.0 / 75.0)).abs() < 1e-9);
        let bad = "FILE \"a\" MP3\nTRACK 01 AUDIO\nINDEX 01 00:00:80\n";
        assert_eq!(parse(bad).unwrap_err().0, 3);
    }

    #[test]
    fn reads_ogm_chapters() {
        let t = "CHAPTER01=00:00:00.000\nCHAPTER01NAME=Intro\nCHAPTER02=00:01:02.500\nCHAPTER02NAME=Next\n";
        let (f, v) = parse(t).unwrap();
        assert_eq!(f, ChapterFormat::Ogm);
        assert_eq!((v[1].start_secs, v[1].title.as_str()), (62.5, "Next"));
    }

    #[test]
    fn rejects_out_of_order_and_empty_lists_with_the_line() {
        let t = ";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=5000\ntitle=a\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\ntitle=b\n";
        let (line, why) = parse(t).unwrap_err();
        assert_eq!(line, 6);
        assert!(why.contains("in order"), "{why}");
        assert_eq!(parse("[]").unwrap_err().0, 0);
        assert!(parse("{\"chapters\": 3}").is_err());
        assert!(parse("{not json").unwrap_err().1.contains("not valid JSON"));
        let no_start = r#"[{"title":"x"}]"#;
        assert!(parse(no_start).unwrap_err().1.contains("no start"));
    }

    #[test]
    fn untitled_chapters_get_numbered_titles() {
        let (_, v) = parse(r#"[{"start":0},{"start":3,"title":" "}]"#).unwrap();
        assert_eq!(v[0].title, "Chapter 1");
        assert_eq!(v[1].title, "Chapter 2");
    }

    #[test]
    fn plain_text_stays_the_text_format() {
        let t = "# my book\n00:00:00.000 Opening\n1:02:03 Chapter 2\n";
        let (f, v) = parse(t).unwrap();
        assert_eq!(f, ChapterFormat::Txt);
        assert_eq!(v[1].start_secs, 3723.0);
        // A title that happens to start with a CUE word is still text.
        let (f, _) = parse("00:00 TITLE of it\n").unwrap();
        assert_eq!(f, ChapterFormat::Txt);
    }
}
