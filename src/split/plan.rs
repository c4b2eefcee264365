//! Where to cut: chapter spans → parts. Pure arithmetic on sample counts, no I/O.
//!
//! Every cut falls on a chapter boundary. `MaxDuration` and `MaxSize` pack chapters greedily
//! (a part takes chapters while it stays within the limit; a chapter that alone exceeds it
//! becomes a part of its own, with a warning); `Parts(n)` puts the n − 1 cuts at the chapter
//! boundaries nearest to the even shares of the length; `ByChapter` makes one part per chapter.
use super::SplitBy;
use crate::error::{Error, Result};

/// One chapter of the source as the planner sees it: [start, end) in presentation samples and
/// the bytes a part pays for it (its packets and their sample-table entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChapterSpan {
    /// First sample.
    pub start: u64,
    /// One past the last sample.
    pub end: u64,
    /// Bytes a part pays for this chapter.
    pub bytes: u64,
}

/// One planned part: chapters `first..first + count`, [start, end) in presentation samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedPart {
    /// Index of the part's first chapter.
    pub first_chapter: usize,
    /// Number of chapters in the part.
    pub chapter_count: usize,
    /// First sample of the part in the source.
    pub start: u64,
    /// One past its last sample.
    pub end: u64,
}

/// Plans the parts of a book whose chapters are `spans` (in order, contiguous), at `rate`
/// samples per second. `overhead_bytes` is what every part costs besides its chapters
/// (header, tags, cover), used by `MaxSize`. Returns the parts and the warnings.
pub fn plan(
    spans: &[ChapterSpan],
    rate: u32,
    overhead_bytes: u64,
    by: &SplitBy,
) -> Result<(Vec<PlannedPart>, Vec<String>)> {
    if spans.is_empty() {
        return Err(Error::Options(
            "the book has no chapters, and parts are cut only at chapter boundaries; add chapters first (a chapters file at conversion, or `aiom4b edit --chapters-file`)".into(),
        ));
    }
    let mut warnings = Vec::new();
    let groups: Vec<(usize, usize)> = match *by {
        SplitBy::ByChapter => (0..spans.len()).map(|i| (i, 1)).collect(),
        SplitBy::MaxDuration(secs) => {
            if !(secs.is_finite() && secs > 0.0) {
                return Err(Error::Options(format!(
                    "--max-duration {secs}: expected a positive duration such as 20h"
                )));
            }
            let limit = (secs * rate as f64).floor() as u64;
            greedy(
                spans,
                limit,
                |s| s.end - s.start,
                0,
                |c, i| {
                    let secs = (spans[i].end - spans[i].start) as f64 / rate as f64;
                    c.push(format!(
                        "chapter {} is {} long, more than the limit of {}: it is a part of its own",
                        i + 1,
                        clock(secs),
                        clock(limit as f64 / rate as f64)
                    ))
                },
                &mut warnings,
            )
        }
        SplitBy::MaxSize(bytes) => {
            if bytes <= overhead_bytes {
                return Err(Error::Options(format!(
                    "--max-size {bytes} bytes: a part needs more than {overhead_bytes} bytes for its header, tags and cover alone"
                )));
            }
            greedy(
                spans,
                bytes,
                |s| s.bytes,
                overhead_bytes,
                |c, i| {
                    c.push(format!(
                    "chapter {} takes about {} bytes, more than the limit of {bytes}: it is a part of its own",
                    i + 1,
                    spans[i].bytes + overhead_bytes
                ))
                },
                &mut warnings,
            )
        }
        SplitBy::Parts(n) => {
            if n < 2 {
                return Err(Error::Options(format!(
                    "--parts {n}: a split needs at least 2 parts"
                )));
            }
            if n > spans.len() {
                return Err(Error::Options(format!(
                    "--parts {n}: the book has only {} chapter(s), and parts are cut at chapter boundaries",
                    spans.len()
                )));
            }
            balanced(spans, n)
        }
    };
    let parts = groups
        .into_iter()
        .map(|(first, count)| PlannedPart {
            first_chapter: first,
            chapter_count: count,
            start: spans[first].start,
            end: spans[first + count - 1].end,
        })
        .collect();
    Ok((parts, warnings))
}

/// Greedy packing: chapters join the current part while `cost` (plus `base` per part) stays
/// within `limit`; a chapter over the limit on its own is its own part (`oversize` says so).
fn greedy(
    spans: &[ChapterSpan],
    limit: u64,
    cost: impl Fn(&ChapterSpan) -> u64,
    base: u64,
    oversize: impl Fn(&mut Vec<String>, usize),
    warnings: &mut Vec<String>,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut first = 0;
    let mut sum = base;
    for (i, s) in spans.iter().enumerate() {
        let c = cost(s);
        if base + c > limit {
            oversize(warnings, i);
        }
        if i > first && sum + c > limit {
            out.push((first, i - first));
            first = i;
            sum = base;
        }
        sum += c;
    }
    out.push((first, spans.len() - first));
    out
}

/// `n` parts with the cuts at the chapter boundaries nearest to k/n of the length, each cut
/// after the previous one and leaving a chapter for every part still to come.
fn balanced(spans: &[ChapterSpan], n: usize) -> Vec<(usize, usize)> {
    let start = spans[0].start;
    let total = spans[spans.len() - 1].end - start;
    // cuts[k] = index of the first chapter of part k + 1.
    let mut cuts = Vec::with_capacity(n - 1);
    let mut prev = 0usize;
    for k in 1..n {
        let target = start + (total as u128 * k as u128 / n as u128) as u64;
        let lo = prev + 1;
        let hi = spans.len() - (n - k); // leave one chapter for each later part
        let best = (lo..=hi)
            .min_by_key(|&i| spans[i].start.abs_diff(target))
            .unwrap_or(lo);
        cuts.push(best);
        prev = best;
    }
    let mut out = Vec::with_capacity(n);
    let mut first = 0;
    for c in cuts {
        out.push((first, c - first));
        first = c;
    }
    out.push((first, spans.len() - first));
    out
}

fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 1000;

    /// Chapters of the given lengths in seconds at RATE, 1 byte per sample.
    fn spans(secs: &[u64]) -> Vec<ChapterSpan> {
        let mut t = 0;
        secs.iter()
            .map(|&s| {
                let sp = ChapterSpan {
                    start: t,
                    end: t + s * RATE as u64,
                    bytes: s * RATE as u64,
                };
                t = sp.end;
                sp
            })
            .collect()
    }

    fn groups(parts: &[PlannedPart]) -> Vec<usize> {
        parts.iter().map(|p| p.chapter_count).collect()
    }

    #[test]
    fn max_duration_packs_greedily_at_chapter_boundaries() {
        let s = spans(&[4, 4, 4, 4, 4]);
        let (p, w) = plan(&s, RATE, 0, &SplitBy::MaxDuration(10.0)).unwrap();
        assert_eq!(groups(&p), [2, 2, 1]);
        assert!(w.is_empty());
        assert_eq!(p[1].start, 8000);
        assert_eq!(p[1].end, 16000);
        assert_eq!(p[2].end, 20000);
        // Exactly at the limit still fits.
        let (p, _) = plan(&s, RATE, 0, &SplitBy::MaxDuration(8.0)).unwrap();
        assert_eq!(groups(&p), [2, 2, 1]);
    }

    #[test]
    fn a_chapter_longer_than_the_limit_is_its_own_part_with_a_warning() {
        let s = spans(&[3, 30, 3, 3]);
        let (p, w) = plan(&s, RATE, 0, &SplitBy::MaxDuration(10.0)).unwrap();
        assert_eq!(groups(&p), [1, 1, 2]);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("chapter 2"), "{w:?}");
    }

    #[test]
    fn a_book_within_the_limit_is_one_part() {
        let (p, _) = plan(&spans(&[1, 2]), RATE, 0, &SplitBy::MaxDuration(3600.0)).unwrap();
        assert_eq!(groups(&p), [2]);
    }

    #[test]
    fn max_size_counts_the_overhead_of_every_part() {
        let s = spans(&[4, 4, 4]);
        // 4000 bytes a chapter + 1000 overhead: two chapters are 9000.
        let (p, _) = plan(&s, RATE, 1000, &SplitBy::MaxSize(9000)).unwrap();
        assert_eq!(groups(&p), [2, 1]);
        let (p, _) = plan(&s, RATE, 1000, &SplitBy::MaxSize(8999)).unwrap();
        assert_eq!(groups(&p), [1, 1, 1]);
        assert!(plan(&s, RATE, 1000, &SplitBy::MaxSize(1000)).is_err());
    }

    #[test]
    fn parts_balance_the_durations() {
        // 10 + 1 + 1 + 10 + 1 + 1: halves at 12 s; boundaries at 10, 11, 12, 22, 23.
        let s = spans(&[10, 1, 1, 10, 1, 1]);
        let (p, _) = plan(&s, RATE, 0, &SplitBy::Parts(2)).unwrap();
        assert_eq!(groups(&p), [3, 3]);
        let (p, _) = plan(
            &spans(&[1, 1, 1, 1, 1, 1, 1, 1, 1]),
            RATE,
            0,
            &SplitBy::Parts(3),
        )
        .unwrap();
        assert_eq!(groups(&p), [3, 3, 3]);
    }

    #[test]
    fn parts_leave_a_chapter_for_every_part() {
        // All the length in the first chapter: the cuts still give each part one chapter.
        let (p, _) = plan(&spans(&[100, 1, 1]), RATE, 0, &SplitBy::Parts(3)).unwrap();
        assert_eq!(groups(&p), [1, 1, 1]);
        let (p, _) = plan(&spans(&[1, 1, 100]), RATE, 0, &SplitBy::Parts(3)).unwrap();
        assert_eq!(groups(&p), [1, 1, 1]);
        assert!(plan(&spans(&[1, 1]), RATE, 0, &SplitBy::Parts(3)).is_err());
        assert!(plan(&spans(&[1, 1]), RATE, 0, &SplitBy::Parts(1)).is_err());
    }

    #[test]
    fn by_chapter_is_one_part_per_chapter() {
        let (p, _) = plan(&spans(&[1, 2, 3]), RATE, 0, &SplitBy::ByChapter).unwrap();
        assert_eq!(groups(&p), [1, 1, 1]);
        assert_eq!((p[2].start, p[2].end), (3000, 6000));
    }

    #[test]
    fn no_chapters_is_refused_with_what_to_do() {
        let e = plan(&[], RATE, 0, &SplitBy::Parts(2))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no chapters") && e.contains("--chapters-file"),
            "{e}"
        );
    }
}
