//! What the user sees: the progress bar (a [`ProgressSink`]), the human-readable tables, and
//! the escaping of everything that reaches a terminal.
//!
//! File names and tags come from the user's files and may hold terminal control sequences
//! (`ESC [31m`, `ESC ] 0;title BEL`) or bidirectional overrides (U+202E) that recolour the
//! terminal, set its title or show a name reversed. Every path, tag and message printed for a
//! human goes through [`escape`] (or [`escape_lines`] for multi-line text), which writes such
//! characters as visible escapes the way `ls --quoting-style=escape` does; JSON output is
//! exact, its encoder escapes control characters itself.
use crate::human;
use aiom4b::plan::Inspection;
use aiom4b::{Finding, ProgressSink, Severity, Stage};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::borrow::Cow;
use std::ffi::OsStr;
use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;
use std::time::Instant;

/// Draws an indicatif bar with percent, speed (× realtime) and ETA when stderr is a terminal.
pub struct Bar {
    bar: Option<ProgressBar>,
    rate: u32,
    start: Mutex<Option<Instant>>,
    quiet: bool,
}

impl Bar {
    pub fn new(enabled: bool, rate: u32, quiet: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let b =
                ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr_with_hz(4));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix:>8} [{bar:36}] {percent:>3}% {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        Bar {
            bar,
            rate,
            start: Mutex::new(None),
            quiet,
        }
    }
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl ProgressSink for Bar {
    fn stage(&self, stage: Stage) {
        if let Some(b) = &self.bar {
            b.set_prefix(format!("{stage:?}").to_lowercase());
        }
        if stage == Stage::Convert {
            *self.start.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
    }
    fn encoded(&self, done: u64, total: u64) {
        let Some(b) = &self.bar else { return };
        b.set_length(total.max(1));
        b.set_position(done.min(total));
        if let Some(t0) = *self.start.lock().unwrap_or_else(|p| p.into_inner()) {
            let secs = t0.elapsed().as_secs_f64();
            if secs > 0.2 {
                b.set_message(format!(
                    "{:.0}× realtime",
                    done as f64 / self.rate as f64 / secs
                ));
            }
        }
    }
    fn finding(&self, f: &Finding) {
        if self.quiet {
            return;
        }
        let line = format!("{}: {}", severity_word(f.severity), escape(&f.to_string()));
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }
}

pub fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// Characters a terminal does not simply show: C0 and C1 controls and DEL (escape sequences,
/// bell, carriage return, backspace) and the invisible bidirectional formatting characters
/// (U+202A–U+202E, U+2066–U+2069, marks) and line/paragraph separators, which reorder or
/// break what follows them.
fn unsafe_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c if c.is_ascii() => out.push_str(&format!("\\x{:02x}", c as u32)),
        c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
    }
}

fn escape_with(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| unsafe_on_terminal(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_on_terminal(c) && !keep(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` safe to print on a terminal as one line: control and bidi characters become `\x1b`,
/// `\n`, `\u{202e}` …
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, |_| false)
}

/// [`escape`] for text whose line breaks are its own (messages with a remedy on a second line).
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    escape_with(s, |c| c == '\n')
}

/// A file name or path, escaped as [`escape`]; bytes that are not UTF-8 become `\xNN`.
pub fn path(p: impl AsRef<OsStr>) -> String {
    let mut out = String::new();
    for chunk in p.as_ref().as_bytes().utf8_chunks() {
        out.push_str(&escape(chunk.valid()));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Prints `text` to stdout, escaped for the terminal (its own line breaks kept); a closed pipe
/// (`aiom4b jobs list | head`) is not an error.
pub fn print_text(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout()
        .lock()
        .write_all(escape_lines(text).as_bytes());
}

/// Appends one line to a report that [`print_text`] prints.
macro_rules! out {
    ($o:ident) => { $o.push('\n') };
    ($o:ident, $($arg:tt)*) => {{
        $o.push_str(&format!($($arg)*));
        $o.push('\n');
    }};
}

/// The human-readable plan for `aiom4b probe`.
pub fn print_inspection(ins: &Inspection) {
    let mut o = String::new();
    for f in &ins.folders {
        out!(
            o,
            "Folder {}: {} MP3 file(s), {}",
            path(&f.path),
            f.mp3_count,
            human::bytes(f.total_bytes)
        );
    }
    if let Some(book) = &ins.book {
        let m = &book.metadata;
        out!(o);
        out!(
            o,
            "Title:     {}",
            escape(m.title.as_deref().unwrap_or("-"))
        );
        out!(
            o,
            "Author:    {}",
            escape(m.author.as_deref().unwrap_or("-"))
        );
        out!(
            o,
            "Narrator:  {}",
            escape(m.narrator.as_deref().unwrap_or("-"))
        );
        if let Some(g) = &m.genre {
            out!(o, "Genre:     {}", escape(g));
        }
        if let Some(y) = &m.year {
            out!(o, "Year:      {}", escape(y));
        }
        out!(
            o,
            "Cover:     {}",
            match &book.cover {
                Some(c) => format!(
                    "{} {}×{} from {}",
                    escape(&c.picture.mime),
                    c.picture.width.unwrap_or(0),
                    c.picture.height.unwrap_or(0),
                    match &c.source {
                        aiom4b::CoverSource::Embedded { path: p } =>
                            format!("embedded in {}", path(p)),
                        aiom4b::CoverSource::File { path: p } => path(p),
                    }
                ),
                None => "none".into(),
            }
        );
        let t = book.target;
        out!(
            o,
            "Output:    {}  (AAC-LC {} kb/s, {}, {} Hz)",
            path(&book.output_path),
            t.bitrate_bps / 1000,
            if t.channels == 1 { "mono" } else { "stereo" },
            t.sample_rate
        );
        if ins.ordered_by_tags {
            out!(o, "Order:     by ID3 disc/track numbers");
        }
        out!(o);
        out!(
            o,
            "  #  start         duration      format                title / file"
        );
        let mut start = 0.0;
        for (i, tr) in book.tracks.iter().enumerate() {
            let info = &tr.info;
            let d = info.duration_secs();
            let exact = if info.exact_samples.is_some() {
                " "
            } else {
                "~"
            };
            let conv = if tr.needs_resample || tr.needs_remix {
                "*"
            } else {
                " "
            };
            out!(o,
                "{:>3}  {}  {}{} {:>5} Hz {} {:>3}k {}{}  {}\n                                                        {}",
                i + 1,
                human::timestamp(start),
                exact,
                human::timestamp(d),
                info.sample_rate,
                if info.channels == 1 { "mono  " } else { "stereo" },
                info.bitrate_bps / 1000,
                match info.format {
                    aiom4b::InputFormat::Mp3 if info.vbr => "VBR",
                    aiom4b::InputFormat::Mp3 => "CBR",
                    aiom4b::InputFormat::M4a if info.codec == "alac" => "ALAC",
                    aiom4b::InputFormat::M4a => "M4A",
                    aiom4b::InputFormat::Aac => "AAC",
                    aiom4b::InputFormat::Flac => "FLAC",
                    aiom4b::InputFormat::Vorbis => "OGG",
                    aiom4b::InputFormat::Opus => "OPUS",
                    aiom4b::InputFormat::Wav => "WAV",
                },
                conv,
                if info.chapters.is_empty() {
                    escape(&tr.chapter_title).into_owned()
                } else {
                    format!(
                        "{} ({} chapters of its own)",
                        escape(&tr.chapter_title),
                        info.chapters.len()
                    )
                },
                path(&tr.rel_path),
            );
            start += d;
        }
        out!(o);
        out!(o,
            "{} chapter(s), {} total, {}  (~ = estimate from the header; exact lengths come from decoding; * = resampled/remixed)",
            book.tracks
                .iter()
                .map(|t| t.info.chapters.len().max(1))
                .sum::<usize>(),
            human::timestamp(book.duration_secs()),
            human::bytes(book.total_bytes())
        );
    }
    if !ins.findings.is_empty() {
        out!(o);
        for f in &ins.findings {
            out!(
                o,
                "{}: {}",
                severity_word(f.severity),
                escape(&f.to_string())
            );
        }
    }
    print_text(&o);
}

/// The human-readable summary for `aiom4b verify`.
pub fn print_summary(s: &aiom4b::verify::M4bSummary, problems: &[String]) {
    let mut o = String::new();
    out!(
        o,
        "File:      {}  ({})",
        path(&s.path),
        human::bytes(s.file_size)
    );
    out!(
        o,
        "Container: brand {:?}, boxes {}, {}{}",
        s.major_brand,
        escape(&s.top_level.join(" ")),
        if s.faststart {
            "index at the front"
        } else {
            "index at the end"
        },
        if s.uses_co64 { ", 64-bit offsets" } else { "" }
    );
    out!(
        o,
        "Audio:     {} {} {} Hz {} ch, {} kb/s, {} samples = {}",
        escape(&s.codec),
        escape(s.profile.as_deref().unwrap_or("")),
        s.sample_rate,
        s.channels,
        s.bitrate_bps / 1000,
        s.decoded_samples,
        human::timestamp(s.duration_secs)
    );
    let t = &s.tags;
    for (k, v) in [
        ("Title", &t.title),
        ("Author", &t.artist),
        ("Narrator", &t.narrator),
        ("Album", &t.album),
        ("Genre", &t.genre),
        ("Year", &t.date),
        ("Series", &t.series),
        ("Encoder", &t.encoder),
    ] {
        if let Some(v) = v {
            out!(o, "{k:<10} {}", escape(v));
        }
    }
    if let Some(c) = &s.cover {
        out!(
            o,
            "Cover:     {} {}",
            escape(&c.format),
            human::bytes(c.bytes)
        );
    }
    match (&s.chapter_track, &s.chpl) {
        (Some(ct), chpl) => {
            out!(
                o,
                "Chapters:  {} in the QuickTime track{}",
                ct.chapters.len(),
                chpl.as_ref()
                    .map(|c| format!(", {} in chpl (v{})", c.chapters.len(), c.version))
                    .unwrap_or_default()
            );
            for (i, c) in ct.chapters.iter().enumerate() {
                out!(
                    o,
                    "  {:>3}  {}  {}",
                    i + 1,
                    human::timestamp(c.start_secs),
                    escape(&c.title)
                );
            }
        }
        (None, Some(c)) => out!(o, "Chapters:  {} in chpl only", c.chapters.len()),
        (None, None) => out!(o, "Chapters:  none"),
    }
    if problems.is_empty() {
        out!(o, "OK");
    } else {
        for p in problems {
            out!(o, "problem: {}", escape(p));
        }
    }
    print_text(&o);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn controls_and_bidi_become_visible_escapes() {
        assert_eq!(
            escape("02\x1b[31mRED\x1b]0;pwned\x07\u{202e}.mp3"),
            "02\\x1b[31mRED\\x1b]0;pwned\\x07\\u{202e}.mp3"
        );
        assert_eq!(escape("a\tb\r\nc\u{7f}\u{9b}"), "a\\tb\\r\\nc\\x7f\\u{9b}");
        assert_eq!(
            escape("\u{2066}x\u{2069}\u{200f}"),
            "\\u{2066}x\\u{2069}\\u{200f}"
        );
        // Ordinary text, accents, CJK and emoji are left alone (and not copied).
        assert!(matches!(escape("Hörbuch – 三体 📚"), Cow::Borrowed(_)));
        assert_eq!(escape_lines("one\ntwo\x1b"), "one\ntwo\\x1b");
    }

    #[test]
    fn paths_keep_bytes_that_are_not_utf8_visible() {
        let p = OsStr::from_bytes(b"book/\xff\x1b.mp3");
        assert_eq!(path(p), "book/\\xff\\x1b.mp3");
    }
}
