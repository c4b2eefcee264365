//! Fitting Audible's chapter list onto this book's audio.
//!
//! Audible's list is on Audible's timeline: its first chapter includes the brand intro
//! ("This is Audible"), the last the brand outro, and Audible's edition may be a little
//! longer or shorter than this one (another master, trimmed silence). The fit:
//!
//! 1. **Which parts this book has.** Of Audible's runtime with and without the intro and the
//!    outro, the one closest to this book's exact length is taken; when it is without the
//!    intro, every mark moves earlier by the intro's length.
//! 2. **Same edition?** If that length still differs by more than 2 % or 3 minutes, the list
//!    is for another edition (abridged, another narrator, a dramatization) and the fit is
//!    refused: the book keeps its chapters.
//! 3. **Scale** only when the lengths differ (by more than a second): every mark is
//!    multiplied by this length / Audible's.
//! 4. **Snap** each mark to the nearest pause within the window (±5 s by default) using the
//!    book's detected pauses ([`crate::silence::snap`]: where speech resumes, less
//!    [`crate::silence::CHAPTER_LEAD_SECS`]); a mark with no pause near stays where the
//!    arithmetic put it.
//!
//! Each chapter reports how far the snap moved it and a confidence: 1 for the first chapter,
//! from 1 (no move) down to 0.5 (a move of the whole window) for a snapped mark, 0.3 for a
//! mark that found no pause. The fit's confidence is their mean.
use super::{provider_error, ChapterList};
use crate::error::Result;
use crate::model::Chapter;
use crate::silence::{self, Pause};
use serde::Serialize;

/// How a chapter list is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct FitOptions {
    /// A mark may move this far (seconds, either way) to a pause. Default 5.
    pub window_secs: f64,
    /// Refuse when the lengths differ by more than this share. Default 0.02.
    pub max_diff_ratio: f64,
    /// Refuse when the lengths differ by more than this many seconds. Default 180.
    pub max_diff_secs: f64,
    /// Scale only when the lengths differ by more than this many seconds. Default 1.
    pub scale_above_secs: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            window_secs: 5.0,
            max_diff_ratio: 0.02,
            max_diff_secs: 180.0,
            scale_above_secs: 1.0,
        }
    }
}

/// One fitted chapter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FittedChapter {
    /// The title from Audible.
    pub title: String,
    /// Audible's start, seconds on Audible's timeline.
    pub audible_start_secs: f64,
    /// Where offset and scale put it, seconds on this book's timeline.
    pub expected_start_secs: f64,
    /// The final start in samples at the book's rate.
    pub start_samples: u64,
    /// The final start in seconds.
    pub start_secs: f64,
    /// How far the snap moved it, in milliseconds (negative: earlier).
    pub moved_ms: i64,
    /// Whether a pause was found within the window.
    pub snapped: bool,
    /// 0..1.
    pub confidence: f64,
}

/// The result of a fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChapterFit {
    /// The chapters, in order; the first starts at 0.
    pub chapters: Vec<FittedChapter>,
    /// The brand intro removed from every mark (0: the book has it).
    pub intro_removed_ms: u64,
    /// Whether the book lacks the brand outro.
    pub outro_removed: bool,
    /// This book's length / Audible's (after removing intro/outro); 1 when not scaled.
    pub scale: f64,
    /// This book's exact length in seconds.
    pub book_secs: f64,
    /// Audible's runtime in seconds (intro and outro included).
    pub audible_secs: f64,
    /// The mean of the chapters' confidences.
    pub confidence: f64,
    /// Chapters dropped or merged, and other remarks.
    pub warnings: Vec<String>,
}

impl ChapterFit {
    /// The chapters to write.
    pub fn chapters(&self) -> Vec<Chapter> {
        self.chapters
            .iter()
            .map(|c| Chapter {
                title: c.title.clone(),
                start_samples: c.start_samples,
            })
            .collect()
    }
}

/// Fits `list` onto a book of `total_samples` at `rate` whose pauses are `pauses` (the
/// candidates to snap to, in order: usually the pauses of at least a second or so). Refuses
/// (an [`Error::Metadata`](crate::Error::Metadata)) when the lengths say it is another
/// edition.
pub fn fit(
    list: &ChapterList,
    total_samples: u64,
    rate: u32,
    pauses: &[Pause],
    opts: &FitOptions,
) -> Result<ChapterFit> {
    let what = format!("chapters of {}", list.asin);
    let book_ms = total_samples as f64 * 1000.0 / rate.max(1) as f64;
    let r = list.runtime_ms as f64;
    let (intro, outro) = (list.brand_intro_ms as f64, list.brand_outro_ms as f64);
    // (length, intro removed, outro removed)
    let models = [
        (r, false, false),
        (r - intro, true, false),
        (r - outro, false, true),
        (r - intro - outro, true, true),
    ];
    let (len_ms, no_intro, no_outro) = models
        .into_iter()
        .filter(|m| m.0 > 0.0)
        .min_by(|a, b| (a.0 - book_ms).abs().total_cmp(&(b.0 - book_ms).abs()))
        .ok_or_else(|| provider_error("Audnexus", &what, "the chapter list has no runtime"))?;
    let diff_ms = book_ms - len_ms;
    if diff_ms.abs() > opts.max_diff_secs * 1000.0 || diff_ms.abs() > opts.max_diff_ratio * len_ms {
        return Err(provider_error(
            "Audnexus",
            &what,
            format!(
                "Audible's edition is {} long and this book {} ({:+.1} %): not the same \
                 edition, so the chapters are not fitted (the book keeps its chapters); find the \
                 ASIN of this edition with `aiom4b match`",
                hms(len_ms / 1000.0),
                hms(book_ms / 1000.0),
                diff_ms / len_ms * 100.0
            ),
        ));
    }
    let scale = if diff_ms.abs() > opts.scale_above_secs * 1000.0 {
        book_ms / len_ms
    } else {
        1.0
    };
    let offset = if no_intro { intro } else { 0.0 };
    let to_samples = |ms: f64| (ms / 1000.0 * rate as f64).round().max(0.0) as u64;
    let mut warnings = Vec::new();
    let mut marks: Vec<(Chapter, f64, f64)> = Vec::new(); // chapter, audible secs, expected secs
    for (i, c) in list.chapters.iter().enumerate() {
        let expected_ms = if i == 0 {
            0.0
        } else {
            ((c.start_ms as f64 - offset) * scale).max(0.0)
        };
        let s = to_samples(expected_ms);
        if s >= total_samples {
            warnings.push(format!(
                "chapter {} \"{}\" would start after the end of this book; dropped",
                i + 1,
                c.title
            ));
            continue;
        }
        if let Some(last) = marks.last() {
            if s <= last.0.start_samples {
                warnings.push(format!(
                    "chapter {} \"{}\" would not start after the one before; dropped",
                    i + 1,
                    c.title
                ));
                continue;
            }
        }
        marks.push((
            Chapter {
                title: c.title.clone(),
                start_samples: s,
            },
            c.start_ms as f64 / 1000.0,
            expected_ms / 1000.0,
        ));
    }
    let window = (opts.window_secs.max(0.0) * rate as f64).round() as u64;
    let plain: Vec<Chapter> = marks.iter().map(|m| m.0.clone()).collect();
    let snapped = silence::snap(&plain, pauses, rate, window);
    let chapters: Vec<FittedChapter> = snapped
        .into_iter()
        .zip(&marks)
        .enumerate()
        .map(|(i, (s, (_, audible, expected)))| {
            let confidence = if i == 0 {
                1.0
            } else if s.found {
                1.0 - 0.5 * (s.moved_by.unsigned_abs() as f64 / window.max(1) as f64).min(1.0)
            } else {
                0.3
            };
            FittedChapter {
                title: s.chapter.title,
                audible_start_secs: *audible,
                expected_start_secs: *expected,
                start_samples: s.chapter.start_samples,
                start_secs: s.chapter.start_samples as f64 / rate as f64,
                moved_ms: (s.moved_by as f64 * 1000.0 / rate as f64).round() as i64,
                snapped: s.found && i > 0,
                confidence,
            }
        })
        .collect();
    let confidence = if chapters.is_empty() {
        0.0
    } else {
        chapters.iter().map(|c| c.confidence).sum::<f64>() / chapters.len() as f64
    };
    Ok(ChapterFit {
        chapters,
        intro_removed_ms: if no_intro { list.brand_intro_ms } else { 0 },
        outro_removed: no_outro && list.brand_outro_ms > 0,
        scale,
        book_secs: book_ms / 1000.0,
        audible_secs: r / 1000.0,
        confidence,
        warnings,
    })
}

fn hms(secs: f64) -> String {
    let s = secs.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::ProviderChapter;

    const RATE: u32 = 1000; // one sample per millisecond keeps the arithmetic readable

    fn list(starts: &[u64], runtime: u64, intro: u64, outro: u64) -> ChapterList {
        ChapterList {
            asin: "B000000000".into(),
            brand_intro_ms: intro,
            brand_outro_ms: outro,
            chapters: starts
                .iter()
                .enumerate()
                .map(|(i, &s)| ProviderChapter {
                    title: format!("Chapter {}", i + 1),
                    start_ms: s,
                    length_ms: 0,
                })
                .collect(),
            runtime_ms: runtime,
            is_accurate: true,
        }
    }

    fn pause(a: u64, b: u64) -> Pause {
        Pause { start: a, end: b }
    }

    #[test]
    fn the_intro_is_removed_when_the_book_lacks_it_and_marks_snap() {
        // Book: 600 s without the 2 s intro; pauses end at 100.5, 300.5 s (marks 100.0, 300.0).
        let l = list(&[0, 102_300, 301_800], 602_000 + 1_000, 2_000, 1_000);
        let pauses = [pause(98_500, 100_500), pause(298_000, 300_500)];
        let f = fit(&l, 600_000, RATE, &pauses, &FitOptions::default()).unwrap();
        assert_eq!(f.intro_removed_ms, 2_000);
        assert!(f.outro_removed);
        assert_eq!(f.scale, 1.0);
        let starts: Vec<u64> = f.chapters.iter().map(|c| c.start_samples).collect();
        assert_eq!(starts, [0, 100_000, 300_000]);
        assert_eq!(f.chapters[1].moved_ms, -300);
        assert!(f.chapters[1].snapped && f.chapters[1].confidence > 0.9);
    }

    #[test]
    fn another_edition_is_refused_and_a_slightly_different_one_scaled() {
        let l = list(&[0, 100_000], 700_000, 0, 0);
        let e = fit(&l, 600_000, RATE, &[], &FitOptions::default()).unwrap_err();
        assert!(e.to_string().contains("not the same edition"), "{e}");
        // 1 % longer: scaled, no pause near: kept where scaled, low confidence.
        let l = list(&[0, 100_000], 606_000, 0, 0);
        let f = fit(&l, 600_000, RATE, &[], &FitOptions::default()).unwrap();
        assert!((f.scale - 600.0 / 606.0).abs() < 1e-9);
        assert_eq!(f.chapters[1].start_samples, 99_010);
        assert!(!f.chapters[1].snapped);
        assert_eq!(f.chapters[1].confidence, 0.3);
    }
}
