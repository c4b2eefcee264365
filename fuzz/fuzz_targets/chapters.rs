//! The chapters-file parser (`src/chapters.rs` and every format of `src/chapter_formats.rs`:
//! text, JSON, CUE, FFmpeg metadata, OGM) on arbitrary text, then the conversion of its
//! chapters to sample positions, and a written export read back. Input: 4 bytes sample rate and 8 bytes book length in samples
//! (little endian), then the file's text.
//!
//! Never a panic; a parse is a non-empty list of chapters with strictly increasing starts and
//! line numbers (chapter numbers for JSON); the sample positions of an accepted list start at 0, strictly increase and lie
//! inside the book (two chapters at one sample would be an empty chapter).
#![no_main]
use aiom4b::chapter_formats::{self, ChapterFormat, ExportChapter};
use aiom4b::chapters::{format_samples, parse_time, timed_to_samples};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((head, text)) = data.split_at_checked(12) else {
        return;
    };
    let rate = u32::from_le_bytes(head[..4].try_into().unwrap()) % 200_000 + 1;
    let total = u64::from_le_bytes(head[4..].try_into().unwrap());
    let text = String::from_utf8_lossy(text);
    let lines = text.lines().count();
    match chapter_formats::parse(&text) {
        Ok((format, chapters)) => {
            assert!(!chapters.is_empty());
            let bound = if format == ChapterFormat::Json {
                chapters.len()
            } else {
                lines
            };
            for c in &chapters {
                assert!(c.start_secs.is_finite() && c.start_secs >= 0.0, "{c:?}");
                assert!((1..=bound).contains(&c.line), "{c:?}");
                assert!(!c.title.trim().is_empty());
            }
            for w in chapters.windows(2) {
                assert!(w[0].start_secs < w[1].start_secs, "{w:?}");
                assert!(w[0].line < w[1].line, "{w:?}");
            }
            if let Ok((marks, _warnings)) = timed_to_samples(&chapters, rate, total, Path::new("x"))
            {
                assert_eq!(marks.len(), chapters.len());
                assert_eq!(marks[0].start_samples, 0);
                for w in marks.windows(2) {
                    assert!(
                        w[0].start_samples < w[1].start_samples,
                        "{w:?} at {rate} Hz"
                    );
                }
                assert!(marks.iter().all(|m| m.start_samples < total));
                // What `chapters export` writes reads back as the same list.
                let export: Vec<ExportChapter> = marks
                    .iter()
                    .map(|m| ExportChapter {
                        start_samples: m.start_samples,
                        title: m.title.clone(),
                    })
                    .collect();
                for f in [ChapterFormat::Json, ChapterFormat::FfMetadata] {
                    let written = chapter_formats::write(f, &export, rate, total, "b.m4b");
                    let (found, back) = chapter_formats::parse(&written)
                        .unwrap_or_else(|e| panic!("{f:?} export does not read back: {e:?}"));
                    assert_eq!(found, f);
                    assert_eq!(back.len(), export.len(), "{f:?}");
                }
            }
        }
        Err((line, reason)) => {
            // JSON errors name the chapter, not the line.
            let json = chapter_formats::sniff(&text) == ChapterFormat::Json;
            assert!(json || line <= lines, "{line} > {lines}");
            assert!(!reason.is_empty());
        }
    }
    for word in text.split_whitespace().take(8) {
        if let Some(t) = parse_time(word) {
            assert!(t.is_finite() && t >= 0.0);
        }
    }
    let _ = format_samples(total, rate);
});
