//! What the user sees: the progress bar (a [`ProgressSink`]) and the human-readable tables.
use aiom4b::chapters::format_samples;
use aiom4b::plan::Inspection;
use aiom4b::{Finding, ProgressSink, Severity, Stage};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
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
        let line = format!("{}: {f}", severity_word(f.severity));
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

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}

fn hms(secs: f64) -> String {
    let s = secs.max(0.0);
    format!(
        "{:02}:{:02}:{:06.3}",
        (s / 3600.0) as u64,
        (s / 60.0) as u64 % 60,
        s % 60.0
    )
}

fn short(p: &Path) -> String {
    p.to_string_lossy().replace(['\n', '\r'], "␤")
}

/// The human-readable plan for `aiom4b probe`.
pub fn print_inspection(ins: &Inspection) {
    for f in &ins.folders {
        println!(
            "Folder {}: {} MP3 file(s), {}",
            short(&f.path),
            f.mp3_count,
            mb(f.total_bytes)
        );
    }
    if let Some(book) = &ins.book {
        let m = &book.metadata;
        println!();
        println!("Title:     {}", m.title.as_deref().unwrap_or("-"));
        println!("Author:    {}", m.author.as_deref().unwrap_or("-"));
        println!("Narrator:  {}", m.narrator.as_deref().unwrap_or("-"));
        if let Some(g) = &m.genre {
            println!("Genre:     {g}");
        }
        if let Some(y) = &m.year {
            println!("Year:      {y}");
        }
        println!(
            "Cover:     {}",
            match &book.cover {
                Some(c) => format!(
                    "{} {}×{} from {}",
                    c.picture.mime,
                    c.picture.width.unwrap_or(0),
                    c.picture.height.unwrap_or(0),
                    match &c.source {
                        aiom4b::CoverSource::Embedded { path } =>
                            format!("embedded in {}", short(path)),
                        aiom4b::CoverSource::File { path } => short(path),
                    }
                ),
                None => "none".into(),
            }
        );
        let t = book.target;
        println!(
            "Output:    {}  (AAC-LC {} kb/s, {}, {} Hz)",
            short(&book.output_path),
            t.bitrate_bps / 1000,
            if t.channels == 1 { "mono" } else { "stereo" },
            t.sample_rate
        );
        if ins.ordered_by_tags {
            println!("Order:     by ID3 disc/track numbers");
        }
        println!();
        println!("  #  start         duration      format                title / file");
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
            println!(
                "{:>3}  {}  {}{} {:>5} Hz {} {:>3}k {}{}  {}\n                                                        {}",
                i + 1,
                hms(start),
                exact,
                hms(d),
                info.sample_rate,
                if info.channels == 1 { "mono  " } else { "stereo" },
                info.bitrate_bps / 1000,
                if info.vbr { "VBR" } else { "CBR" },
                conv,
                tr.chapter_title,
                short(&tr.rel_path),
            );
            start += d;
        }
        println!();
        println!(
            "{} chapter(s), {} total, {}  (~ = estimate from the header; exact lengths come from decoding; * = resampled/remixed)",
            book.tracks.len(),
            hms(book.duration_secs()),
            mb(book.total_bytes())
        );
        let _ = format_samples; // kept for symmetry with convert's chapter listing
    }
    if !ins.findings.is_empty() {
        println!();
        for f in &ins.findings {
            println!("{}: {f}", severity_word(f.severity));
        }
    }
}

/// The human-readable summary for `aiom4b verify`.
pub fn print_summary(s: &aiom4b::verify::M4bSummary, problems: &[String]) {
    println!("File:      {}  ({})", short(&s.path), mb(s.file_size));
    println!(
        "Container: brand {:?}, boxes {}, {}{}",
        s.major_brand,
        s.top_level.join(" "),
        if s.faststart {
            "index at the front"
        } else {
            "index at the end"
        },
        if s.uses_co64 { ", 64-bit offsets" } else { "" }
    );
    println!(
        "Audio:     {} {} {} Hz {} ch, {} kb/s, {} samples = {}",
        s.codec,
        s.profile.as_deref().unwrap_or(""),
        s.sample_rate,
        s.channels,
        s.bitrate_bps / 1000,
        s.decoded_samples,
        hms(s.duration_secs)
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
            println!("{k:<10} {v}");
        }
    }
    if let Some(c) = &s.cover {
        println!("Cover:     {} {}", c.format, mb(c.bytes));
    }
    match (&s.chapter_track, &s.chpl) {
        (Some(ct), chpl) => {
            println!(
                "Chapters:  {} in the QuickTime track{}",
                ct.chapters.len(),
                chpl.as_ref()
                    .map(|c| format!(", {} in chpl (v{})", c.chapters.len(), c.version))
                    .unwrap_or_default()
            );
            for (i, c) in ct.chapters.iter().enumerate() {
                println!("  {:>3}  {}  {}", i + 1, hms(c.start_secs), c.title);
            }
        }
        (None, Some(c)) => println!("Chapters:  {} in chpl only", c.chapters.len()),
        (None, None) => println!("Chapters:  none"),
    }
    if problems.is_empty() {
        println!("OK");
    } else {
        for p in problems {
            println!("problem: {p}");
        }
    }
}
