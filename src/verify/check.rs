//! Comparing a summary with what was expected: format, length, chapters, tags, cover.
use super::summary::{ChapterMark, Expectations, M4bSummary, TagSummary};
use crate::model::{BookMetadata, Chapter};
use crate::options::AacProfile;

/// Compares a summary with what was expected. Returns the problems; empty means the file is
/// good. Chapter starts and the length are compared within `exp.tolerance_samples`.
pub fn check(s: &M4bSummary, exp: &Expectations) -> Vec<String> {
    let mut p: Vec<String> = s.inconsistencies.clone();
    let tol = exp.tolerance_samples;
    let rate = exp.sample_rate.max(1) as f64;
    let secs = |n: u64| n as f64 / rate;

    if s.audio_tracks != 1 {
        p.push(format!(
            "{} audio tracks; an audiobook needs exactly one",
            s.audio_tracks
        ));
    }
    if s.codec != "aac" {
        p.push(format!("audio codec is {}, expected AAC", s.codec));
    }
    if let (Some(profile), Some(want)) = (&s.profile, exp.profile) {
        let want = profile_name(want);
        if profile != want {
            p.push(format!("AAC profile is {profile}, expected {want}"));
        }
    }
    if s.sample_rate != exp.sample_rate {
        p.push(format!(
            "sample rate is {} Hz, expected {} Hz",
            s.sample_rate, exp.sample_rate
        ));
    }
    if s.channels != exp.channels {
        p.push(format!(
            "{} channel(s), expected {}",
            s.channels, exp.channels
        ));
    }
    if s.length.decode_errors > 0 {
        p.push(format!(
            "{} of {} audio packets failed to decode (first: {})",
            s.length.decode_errors,
            s.length.packets,
            s.length.first_decode_error.as_deref().unwrap_or("?")
        ));
    }
    if let Some(total) = exp.total_samples {
        if s.decoded_samples.abs_diff(total) > tol {
            p.push(format!(
                "audio is {} samples ({:.3} s) long, expected {} ({:.3} s)",
                s.decoded_samples,
                secs(s.decoded_samples),
                total,
                secs(total)
            ));
        }
    }
    if !s.faststart {
        p.push("'moov' is not before 'mdat' (not faststart): streaming players must read the whole file first".into());
    }

    // Chapters: the two lists must agree with each other, and with the plan when given.
    if let (Some(ct), Some(cl)) = (&s.chapter_track, &s.chpl) {
        for (i, (a, b)) in ct.chapters.iter().zip(&cl.chapters).enumerate() {
            if a.start_samples.abs_diff(b.start_samples) > tol {
                p.push(format!(
                    "chapter {}: chapter track starts at {:.3} s but chpl at {:.3} s",
                    i + 1,
                    a.start_secs,
                    b.start_secs
                ));
            }
        }
    }
    for c in s.chapter_track.iter().flat_map(|t| &t.chapters) {
        if c.start_samples > s.decoded_samples {
            p.push(format!(
                "chapter \"{}\" starts at {:.3} s, after the end of the audio ({:.3} s)",
                c.title, c.start_secs, s.duration_secs
            ));
        }
    }
    if let Some(want) = &exp.chapters {
        check_chapters(s, want, tol, &mut p);
    }
    if let Some(m) = &exp.metadata {
        check_metadata(&s.tags, m, &mut p);
    }
    match (&s.cover, exp.cover) {
        (None, true) => p.push("no cover image ('covr' item missing)".into()),
        (Some(c), true) => {
            if !c.in_covr {
                p.push(format!(
                    "the cover is stored only as a {} video track, not as 'covr': players will not show it",
                    c.format
                ));
            } else if c.bytes == 0 || !(c.format == "jpeg" || c.format == "png") {
                p.push(format!(
                    "the cover is {} bytes of {}; expected a JPEG or PNG image",
                    c.bytes, c.format
                ));
            }
        }
        (Some(c), false) => p.push(format!(
            "a cover ({}, {} bytes) is present but none was expected",
            c.format, c.bytes
        )),
        (None, false) => {}
    }
    p
}

/// Most entries a `chpl` box can hold: its count is one byte.
const CHPL_MAX_ENTRIES: usize = 255;
/// Longest `chpl` title in bytes: its length is one byte.
const CHPL_MAX_TITLE_BYTES: usize = 255;

pub(super) fn check_chapters(s: &M4bSummary, want: &[Chapter], tol: u64, p: &mut Vec<String>) {
    let compare = |what: &str,
                   got: &[ChapterMark],
                   want: &[Chapter],
                   titles_cut: bool,
                   p: &mut Vec<String>| {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            // A chpl title is cut at 255 bytes: FFmpeg cuts anywhere (a split character reads
            // as U+FFFD), aiom4b's writer on a character boundary; either is the title.
            let (want_title, on_boundary) = if titles_cut {
                let b = w.title.as_bytes();
                let raw = String::from_utf8_lossy(&b[..b.len().min(CHPL_MAX_TITLE_BYTES)]);
                let cut = crate::edit::moov::cut(&w.title, CHPL_MAX_TITLE_BYTES);
                (raw.into_owned(), cut.to_string())
            } else {
                (w.title.clone(), w.title.clone())
            };
            if g.title != want_title && g.title != on_boundary {
                p.push(format!(
                    "{what} chapter {}: title {:?}, expected {:?}",
                    i + 1,
                    g.title,
                    want_title
                ));
            }
            if g.start_samples.abs_diff(w.start_samples) > tol {
                p.push(format!(
                    "{what} chapter {} \"{}\": starts at sample {}, expected {} (more than {tol} samples off)",
                    i + 1,
                    w.title,
                    g.start_samples,
                    w.start_samples
                ));
            }
        }
    };
    if want.is_empty() {
        if s.chapter_track
            .as_ref()
            .is_some_and(|t| !t.chapters.is_empty())
        {
            p.push("a chapter track is present but no chapters were expected".into());
        }
        if s.chpl.as_ref().is_some_and(|c| !c.chapters.is_empty()) {
            p.push("a chpl chapter list is present but no chapters were expected".into());
        }
        return;
    }
    match &s.chapter_track {
        None => p.push(format!(
            "no QuickTime chapter track (expected {} chapters): Apple players will show none",
            want.len()
        )),
        Some(t) => {
            if t.chapters.len() != want.len() {
                p.push(format!(
                    "the chapter track has {} chapters, expected {}",
                    t.chapters.len(),
                    want.len()
                ));
            }
            compare("chapter track", &t.chapters, want, false, p);
        }
    }
    match &s.chpl {
        None => p.push(format!(
            "no chpl chapter list (expected {} chapters): VLC and others will show none",
            want.len()
        )),
        Some(c) => {
            if c.version != 1 {
                p.push(format!(
                    "chpl has version {}; VLC reads only version 1",
                    c.version
                ));
            }
            // chpl's count is one byte: above 255 chapters it is truncated, which is expected
            // (and reported as a finding before conversion), but it must not wrap around.
            let expect_n = want.len().min(CHPL_MAX_ENTRIES);
            if c.chapters.len() != expect_n || c.declared_count as usize != expect_n {
                p.push(format!(
                    "chpl lists {} chapters (count byte {}), expected {}",
                    c.chapters.len(),
                    c.declared_count,
                    expect_n
                ));
            }
            compare("chpl", &c.chapters, want, true, p);
        }
    }
}

pub(super) fn check_metadata(t: &TagSummary, m: &BookMetadata, p: &mut Vec<String>) {
    let mut eq = |what: &str, got: &Option<String>, want: &Option<String>| {
        if let Some(w) = want {
            if got.as_deref() != Some(w.as_str()) {
                p.push(format!("{what} is {got:?}, expected {w:?}"));
            }
        }
    };
    eq("title (©nam)", &t.title, &m.title);
    eq("author (©ART)", &t.artist, &m.author);
    eq("narrator (©nrt)", &t.narrator, &m.narrator);
    eq("album (©alb)", &t.album, &m.album);
    eq("genre (©gen)", &t.genre, &m.genre);
    eq("comment (©cmt)", &t.comment, &m.comment);
    eq("series", &t.series, &m.series);
    eq("series part", &t.series_part, &m.series_part);
    if let Some(y) = &m.year {
        if !t.date.as_deref().is_some_and(|d| d.starts_with(y.as_str())) {
            p.push(format!("date (©day) is {:?}, expected {y:?}", t.date));
        }
    }
    if let Some(d) = &m.description {
        // iTunes shows `desc` (traditionally at most 255 characters) and `ldes` (the full
        // text); either holding the description is fine, and `desc` may be a shortened copy.
        let ok = t.long_description.as_deref() == Some(d.as_str())
            || t.description
                .as_deref()
                .is_some_and(|x| !x.is_empty() && d.starts_with(x.trim_end_matches('…')));
        if !ok {
            p.push(format!(
                "description (desc/ldes) is {:?}, expected {d:?}",
                t.long_description.as_ref().or(t.description.as_ref())
            ));
        }
    }
    if t.media_type != Some(2) {
        p.push(format!(
            "media type (stik) is {:?}, expected 2 (audiobook)",
            t.media_type
        ));
    }
}

/// The profile name [`M4bSummary::profile`] reports for what the encoder was asked for.
pub(super) fn profile_name(p: AacProfile) -> &'static str {
    match p {
        AacProfile::Lc => "LC",
        AacProfile::He => "HE-AAC",
        AacProfile::Hev2 => "HE-AACv2",
    }
}
