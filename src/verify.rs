//! Independent check of a written `.m4b`: a different reader than the writer.
//!
//! The engine writes through FFmpeg; this module reads back through a hand-written box walker
//! ([`crate::mp4box`]), Symphonia's AAC decoder, Symphonia's MP4 demuxer (as a header
//! cross-check) and `mp4ameta` (as a tag and chapter-track cross-check) — never FFmpeg. It
//! produces a normalized [`M4bSummary`] (what a test or the user wants to know about the
//! output: codec, rate, channels, exact length, chapters, tags, cover, layout) and
//! [`check`]s it against [`Expectations`].
//!
//! **Length.** The audio length is the *presentation* length: the edit list (`elst`) hides the
//! encoder's priming samples (1024 for FFmpeg's native AAC encoder) and the last frame is trimmed
//! by its `stts` duration. [`M4bSummary::decoded_samples`] is therefore
//! `sum(stts) - priming`, clamped to the edit's duration when the edit ends earlier. The AAC
//! decoder decodes every packet and its sample count is cross-checked against that: it must be
//! at least `sum(stts)` and less than one frame more (the decoder cannot know the trimmed tail).
//!
//! **HE-AAC** (SBR, from the FDK encoder) is stored as Apple writes it: the track's timescale is
//! the AAC core's rate (half the output rate), the edit list hides the core's delay, and the
//! AudioSpecificConfig signals SBR/PS explicitly. Lengths are converted to output samples.
//! Symphonia decodes only the AAC core (it has no SBR), which is enough to check that every
//! packet decodes and to count frames; the core's counts are scaled to the output rate.
//!
//! **Chapter times** are presentation times: 0 is the first audible sample after the priming.
//! The QuickTime chapter track has its own timescale (FFmpeg: 1/1000 s) and edit list; `chpl`
//! counts in 100 ns units. Both are converted to samples at the audio rate.
//!
//! What FFmpeg 5.1's `ipod` muxer writes (checked by the integration tests): major brand
//! `M4A ` (not `M4B `), a `chpl` of version 1 with at most 255 entries, a text chapter track of
//! timescale 1000 referenced by `tref/chap`, chapters added after `write_header` included, and
//! an attached picture stored as `covr` (no video track).
use crate::error::{Error, Result};
use crate::model::{BookMetadata, Chapter};
use crate::mp4box::{
    self, fourcc_str, parse_ilst, BoxRef, Cursor, DataValue, Edit, FourCC, ItemKey, Malformed,
    SampleTable, TopBox,
};
use crate::options::AacProfile;
use serde::Serialize;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// How far (in output samples) a length or a chapter start may be from what was expected.
///
/// One AAC frame: AAC codes audio in 1024-sample frames, so the encoder's flush (the last,
/// partial frame) is the only place where a correct writer's length can legitimately differ
/// from the sample-exact plan; chapter marks stored at 1 ms (QuickTime track) or 100 ns
/// (`chpl`) resolution are well inside it (1 ms = 44 samples at 44.1 kHz).
pub const DEFAULT_TOLERANCE_SAMPLES: u64 = 1024;

/// Largest `moov` box accepted: sample tables of a 100-hour book plus a large cover stay far
/// below this; a bigger claim means a broken file, and it is read into memory.
const MAX_MOOV_BYTES: u64 = 256 << 20;

/// Largest single AAC packet accepted: an AAC frame holds at most 6144 bits per channel
/// (ISO 14496-3 §4.5.3), 1536 bytes for stereo; anything far above is a broken sample table.
const MAX_AAC_PACKET_BYTES: u32 = 64 << 10;

/// Chunks larger than this are read sample by sample instead of in one read.
const MAX_CHUNK_READ_BYTES: u64 = 16 << 20;

/// A normalized summary of an `.m4b` as an independent reader sees it.
#[derive(Debug, Clone, Serialize)]
pub struct M4bSummary {
    pub path: PathBuf,
    pub file_size: u64,
    /// `ftyp` major brand; FFmpeg 5.1's `ipod` muxer writes `M4A `.
    pub major_brand: String,
    pub compatible_brands: Vec<String>,
    /// Top-level boxes in file order, e.g. `["ftyp", "moov", "free", "mdat"]`.
    pub top_level: Vec<String>,
    /// `moov` comes before the first `mdat` (players can start without reading the whole file).
    pub faststart: bool,
    /// Some track uses 64-bit chunk offsets (`co64`) rather than `stco`.
    pub uses_co64: bool,
    pub tracks: Vec<TrackSummary>,
    pub audio_tracks: usize,
    /// `"aac"` for MPEG-4 AAC in `mp4a`, else the sample entry type; `"none"` without audio.
    pub codec: String,
    /// AAC profile from the AudioSpecificConfig (`"LC"`, `"HE-AAC"`, `"HE-AACv2"` …).
    pub profile: Option<String>,
    /// The rate and channels a full decoder outputs.
    pub sample_rate: u32,
    pub channels: u16,
    /// What the AAC core alone decodes to (an AAC-LC-only decoder, such as Symphonia's):
    /// half the rate under dual-rate SBR (HE-AAC), one channel under parametric stereo
    /// (HE-AAC v2); otherwise the same as `sample_rate` and `channels`.
    pub core_sample_rate: u32,
    pub core_channels: u16,
    /// Presentation length in samples (priming removed); see the module docs.
    pub decoded_samples: u64,
    pub duration_secs: f64,
    /// Audio payload bits per second of presentation.
    pub bitrate_bps: u64,
    /// The numbers `decoded_samples` comes from, and its decoder cross-check.
    pub length: AudioLength,
    /// The QuickTime chapter track referenced by the audio track's `tref/chap`.
    pub chapter_track: Option<ChapterTrackSummary>,
    /// The Nero chapter list `moov/udta/chpl`.
    pub chpl: Option<ChplSummary>,
    pub tags: TagSummary,
    pub cover: Option<CoverSummary>,
    /// Disagreements between the readers and internal contradictions of the file.
    /// Each one is a problem for [`check`].
    pub inconsistencies: Vec<String>,
}

/// One track as listed in `moov`.
#[derive(Debug, Clone, Serialize)]
pub struct TrackSummary {
    pub id: u32,
    /// Handler type: `soun`, `text`, `vide` …
    pub handler: String,
    /// Sample entry type: `mp4a`, `text` …
    pub sample_entry: Option<String>,
    pub timescale: u32,
    pub samples: u64,
}

/// Where the presentation length comes from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AudioLength {
    /// Samples hidden at the start by the edit list (`elst` media_time): encoder priming.
    pub priming_samples: u64,
    /// Duration of the audio edit in samples (rounded up from the movie timescale, so it is
    /// only precise to one movie tick: 1 ms = 44.1 samples with FFmpeg's timescale 1000).
    pub edit_duration_samples: Option<u64>,
    /// Sum of the `stts` durations: every coded sample, priming included, tail trimmed.
    pub stts_samples: u64,
    /// Number of audio packets (`stsz` entries).
    pub packets: u64,
    /// Packets the AAC decoder decoded without error.
    pub decoded_packets: u64,
    /// Samples the AAC decoder produced for all packets (priming and the full last frame), in
    /// output samples: Symphonia decodes only the AAC core, so under dual-rate SBR its count
    /// is doubled.
    pub decoder_samples: u64,
    pub decode_errors: u64,
    pub first_decode_error: Option<String>,
    /// How `decoded_samples` was derived.
    pub source: String,
}

/// One chapter mark as read back. `start_samples` is in the audio's sample rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChapterMark {
    pub title: String,
    pub start_samples: u64,
    pub start_secs: f64,
}

/// The QuickTime chapter track.
#[derive(Debug, Clone, Serialize)]
pub struct ChapterTrackSummary {
    pub track_id: u32,
    /// The track's media timescale (FFmpeg: 1000).
    pub timescale: u32,
    pub chapters: Vec<ChapterMark>,
}

/// The Nero chapter list (`chpl`).
#[derive(Debug, Clone, Serialize)]
pub struct ChplSummary {
    /// VLC reads only version 1.
    pub version: u8,
    /// The 8-bit entry count in the box (FFmpeg writes at most 255 entries).
    pub declared_count: u8,
    pub chapters: Vec<ChapterMark>,
}

/// iTunes-style tags from `moov/udta/meta/ilst`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TagSummary {
    /// `©nam`
    pub title: Option<String>,
    /// `©ART`
    pub artist: Option<String>,
    /// `aART`
    pub album_artist: Option<String>,
    /// `©alb`
    pub album: Option<String>,
    /// `©wrt`
    pub composer: Option<String>,
    /// `©gen`
    pub genre: Option<String>,
    /// `©day`
    pub date: Option<String>,
    /// `©cmt`
    pub comment: Option<String>,
    /// `desc`
    pub description: Option<String>,
    /// `ldes`
    pub long_description: Option<String>,
    /// `©nrt`
    pub narrator: Option<String>,
    /// `©too`
    pub encoder: Option<String>,
    /// `stik` (2 = audiobook)
    pub media_type: Option<u8>,
    /// `----:com.apple.iTunes:SERIES`, else `©mvn`
    pub series: Option<String>,
    /// `----:com.apple.iTunes:SERIES-PART`, else `©mvi`
    pub series_part: Option<String>,
    /// Every item key in file order (`©nam`, `----:com.apple.iTunes:SERIES` …).
    pub keys: Vec<String>,
}

/// The cover image.
#[derive(Debug, Clone, Serialize)]
pub struct CoverSummary {
    /// `jpeg`, `png` or what else the data looks like.
    pub format: String,
    pub bytes: u64,
    /// Stored as the iTunes `covr` item (what players read), not only as a video track.
    pub in_covr: bool,
    /// Number of images in `covr`.
    pub count: usize,
}

/// What the written file should contain.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub sample_rate: u32,
    pub channels: u16,
    /// Presentation length in output samples, when known.
    pub total_samples: Option<u64>,
    /// See [`DEFAULT_TOLERANCE_SAMPLES`].
    pub tolerance_samples: u64,
    /// The chapters as planned (starts in output samples); `Some(vec![])` = no chapters.
    pub chapters: Option<Vec<Chapter>>,
    /// The metadata as planned; only the `Some` fields are compared.
    pub metadata: Option<BookMetadata>,
    /// A cover must be present (`true`) or absent (`false`).
    pub cover: bool,
    /// The AAC profile the encoder was asked for; `None` accepts any.
    pub profile: Option<AacProfile>,
}

impl Expectations {
    /// Expects the given format and nothing else (no length, chapters, metadata or cover).
    pub fn new(sample_rate: u32, channels: u16) -> Self {
        Expectations {
            sample_rate,
            channels,
            total_samples: None,
            tolerance_samples: DEFAULT_TOLERANCE_SAMPLES,
            chapters: None,
            metadata: None,
            cover: false,
            profile: Some(AacProfile::Lc),
        }
    }
}

/// Reads `path` and summarizes it. Fails only when the file cannot be read or its box
/// structure is broken; everything else (wrong codec, decode errors …) is data for [`check`].
///
/// Only a regular file is read (a FIFO or a device is refused at once, see
/// [`crate::scan::open_regular`]), and the box structure, the timescales and every track's
/// sample table are checked before any other reader (Symphonia, mp4ameta) sees the file:
/// those readers divide by the timescales and index with the tables, and panic or log
/// line after line when they lie.
pub fn summarize(path: &Path) -> Result<M4bSummary> {
    let mut f = crate::scan::open_regular(path, "open the M4B to verify it")?;
    let file_size = f
        .metadata()
        .map_err(|e| Error::io(path, "read the size of the M4B", e))?
        .len();
    let io = |e| Error::io(path, "read the M4B", e);
    let mal = |m: Malformed| Error::Mp4 {
        path: path.to_path_buf(),
        offset: m.offset,
        reason: m.reason,
    };
    let tops = mp4box::top_level_boxes(&mut f, file_size)
        .map_err(io)?
        .map_err(mal)?;

    let mut s = M4bSummary {
        path: path.to_path_buf(),
        file_size,
        major_brand: String::new(),
        compatible_brands: Vec::new(),
        top_level: tops.iter().map(|b| fourcc_str(&b.kind)).collect(),
        faststart: false,
        uses_co64: false,
        tracks: Vec::new(),
        audio_tracks: 0,
        codec: "none".into(),
        profile: None,
        sample_rate: 0,
        channels: 0,
        core_sample_rate: 0,
        core_channels: 0,
        decoded_samples: 0,
        duration_secs: 0.0,
        bitrate_bps: 0,
        length: AudioLength::default(),
        chapter_track: None,
        chpl: None,
        tags: TagSummary::default(),
        cover: None,
        inconsistencies: Vec::new(),
    };

    if let Some(ftyp) = tops.iter().find(|b| b.kind == *b"ftyp") {
        let buf = mp4box::read_top_box(&mut f, ftyp, 4096)
            .map_err(io)?
            .map_err(mal)?;
        let b = mp4box::as_box_ref(&buf, ftyp);
        let mut c = b.cursor("ftyp box");
        s.major_brand = fourcc_str(&c.fourcc().map_err(mal)?);
        c.u32().map_err(mal)?; // minor version
        while c.remaining() >= 4 {
            s.compatible_brands
                .push(fourcc_str(&c.fourcc().map_err(mal)?));
        }
    } else {
        s.inconsistencies
            .push("no 'ftyp' box: players may not recognize the file".into());
    }
    if tops.iter().any(|b| b.kind == *b"moof") {
        return Err(mal(Malformed::new(
            0,
            "fragmented MP4 (moof boxes) is not an audiobook layout aiom4b reads",
        )));
    }
    let moovs: Vec<&TopBox> = tops.iter().filter(|b| b.kind == *b"moov").collect();
    let moov_top = match moovs.as_slice() {
        [one] => *one,
        [] => return Err(mal(Malformed::new(0, "no 'moov' box"))),
        _ => {
            return Err(mal(Malformed::new(
                moovs[1].offset,
                "more than one 'moov' box",
            )))
        }
    };
    let mdats: Vec<&TopBox> = tops.iter().filter(|b| b.kind == *b"mdat").collect();
    s.faststart = mdats.first().is_some_and(|m| moov_top.end() <= m.offset);
    let moov_buf = mp4box::read_top_box(&mut f, moov_top, MAX_MOOV_BYTES)
        .map_err(io)?
        .map_err(mal)?;
    let moov = mp4box::as_box_ref(&moov_buf, moov_top);
    let movie = parse_movie(&moov).map_err(mal)?;
    check_sample_tables(&movie, file_size).map_err(mal)?;
    s.uses_co64 = movie.tracks.iter().any(|t| t.table.uses_co64);
    s.tracks = movie
        .tracks
        .iter()
        .map(|t| TrackSummary {
            id: t.id,
            handler: fourcc_str(&t.handler),
            sample_entry: t.table.entry_kind.as_ref().map(fourcc_str),
            timescale: t.timescale,
            samples: t.table.sizes.len() as u64,
        })
        .collect();
    let audio: Vec<&Track> = movie
        .tracks
        .iter()
        .filter(|t| t.handler == *b"soun")
        .collect();
    s.audio_tracks = audio.len();

    if let Some(a) = audio.first() {
        summarize_audio(&mut s, &f, file_size, &movie, a).map_err(mal)?;
        s.chapter_track = read_chapter_track(
            s.sample_rate,
            &mut f,
            file_size,
            &movie,
            a,
            &mut s.inconsistencies,
        )
        .map_err(io)?;
    }
    if let Some(udta) = moov.child(b"udta").map_err(mal)? {
        if let Some(chpl) = udta.child(b"chpl").map_err(mal)? {
            s.chpl = Some(parse_chpl(&chpl, s.sample_rate, &mut s.inconsistencies));
        }
        if let Some(meta) = udta.child(b"meta").map_err(mal)? {
            for c in mp4box::meta_children(&meta) {
                let c = c.map_err(mal)?;
                if c.kind == *b"ilst" {
                    let items = parse_ilst(&c).map_err(mal)?;
                    read_tags(&items, &mut s);
                }
            }
        }
    }
    if s.cover.is_none() {
        // A picture stored only as a video track (not `covr`) is something players ignore:
        // report it so `check` can say so.
        if let Some(v) = movie.tracks.iter().find(|t| t.handler == *b"vide") {
            s.cover = Some(CoverSummary {
                format: v
                    .table
                    .entry_kind
                    .as_ref()
                    .map(fourcc_str)
                    .unwrap_or_default(),
                bytes: v.table.sizes.first().copied().unwrap_or(0) as u64,
                in_covr: false,
                count: 0,
            });
        }
    }
    cross_check_symphonia(&mut s, &f, &movie);
    cross_check_mp4ameta(&mut s, &f);
    Ok(s)
}

/// Summarizes and checks `path`; `Err(Error::Verify)` lists every problem found.
pub fn verify(path: &Path, exp: &Expectations) -> Result<M4bSummary> {
    let s = summarize(path)?;
    let problems = check(&s, exp);
    if problems.is_empty() {
        Ok(s)
    } else {
        Err(Error::Verify {
            path: path.to_path_buf(),
            problems,
        })
    }
}

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

fn check_chapters(s: &M4bSummary, want: &[Chapter], tol: u64, p: &mut Vec<String>) {
    let compare = |what: &str,
                   got: &[ChapterMark],
                   want: &[Chapter],
                   titles_cut: bool,
                   p: &mut Vec<String>| {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let want_title = if titles_cut {
                let b = w.title.as_bytes();
                String::from_utf8_lossy(&b[..b.len().min(CHPL_MAX_TITLE_BYTES)]).into_owned()
            } else {
                w.title.clone()
            };
            if g.title != want_title {
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

fn check_metadata(t: &TagSummary, m: &BookMetadata, p: &mut Vec<String>) {
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

// ---------------------------------------------------------------------------------------------
// moov parsing

struct Movie<'a> {
    timescale: u32,
    tracks: Vec<Track<'a>>,
}

struct Track<'a> {
    id: u32,
    handler: FourCC,
    timescale: u32,
    duration: u64,
    edits: Vec<Edit>,
    chapter_refs: Vec<u32>,
    table: SampleTable,
    /// Where the track's `stbl` box starts, for errors about its tables.
    stbl_offset: u64,
    entry: Option<BoxRef<'a>>,
}

fn parse_movie<'a>(moov: &BoxRef<'a>) -> mp4box::Parse<Movie<'a>> {
    let mvhd = moov
        .child(b"mvhd")?
        .ok_or_else(|| Malformed::new(moov.offset, "'moov' has no 'mvhd'"))?;
    let (timescale, _) = mp4box::parse_timescale_duration(&mvhd)?;
    if timescale == 0 {
        return Err(Malformed::new(
            mvhd.offset,
            "the movie timescale (mvhd) is 0, so no time in the file can be read",
        ));
    }
    let mut tracks = Vec::new();
    for trak in moov.children() {
        let trak = trak?;
        if trak.kind != *b"trak" {
            continue;
        }
        let missing = |what: &str| Malformed::new(trak.offset, format!("'trak' has no '{what}'"));
        let tkhd = trak.child(b"tkhd")?.ok_or_else(|| missing("tkhd"))?;
        let mdia = trak.child(b"mdia")?.ok_or_else(|| missing("mdia"))?;
        let mdhd = mdia.child(b"mdhd")?.ok_or_else(|| missing("mdia/mdhd"))?;
        let hdlr = mdia.child(b"hdlr")?.ok_or_else(|| missing("mdia/hdlr"))?;
        let stbl = mdia
            .descend(&[b"minf", b"stbl"])?
            .ok_or_else(|| missing("mdia/minf/stbl"))?;
        let (media_ts, media_dur) = mp4box::parse_timescale_duration(&mdhd)?;
        if media_ts == 0 {
            return Err(Malformed::new(
                mdhd.offset,
                "a track's timescale (mdhd) is 0, so none of its times can be read",
            ));
        }
        let edits = match trak.descend(&[b"edts", b"elst"])? {
            Some(e) => mp4box::parse_elst(&e)?,
            None => Vec::new(),
        };
        let mut chapter_refs = Vec::new();
        if let Some(chap) = trak.descend(&[b"tref", b"chap"])? {
            let mut c = chap.cursor("tref/chap box");
            while c.remaining() >= 4 {
                chapter_refs.push(c.u32()?);
            }
        }
        let (table, entry) = mp4box::parse_stbl(&stbl)?;
        tracks.push(Track {
            stbl_offset: stbl.offset,
            id: mp4box::parse_tkhd_id(&tkhd)?,
            handler: mp4box::parse_hdlr(&hdlr)?,
            timescale: media_ts,
            duration: media_dur,
            edits,
            chapter_refs,
            table,
            entry,
        });
    }
    Ok(Movie { timescale, tracks })
}

/// Checks that every track's sample tables agree with each other and stay inside the file:
/// `stts` describes as many samples as `stsz` lists, and `stsc`/`stco` map exactly those
/// samples to chunks within the file.
fn check_sample_tables(movie: &Movie<'_>, file_size: u64) -> mp4box::Parse<()> {
    for t in &movie.tracks {
        let listed = t.table.sizes.len() as u64;
        let described = t.table.stts_sample_count();
        let handler = fourcc_str(&t.handler);
        if described != listed {
            return Err(Malformed::new(
                t.stbl_offset,
                format!(
                    "the {handler} track's stts describes {described} samples but its stsz lists {listed}"
                ),
            ));
        }
        if let Err(e) = t.table.chunks(file_size) {
            return Err(Malformed::new(
                t.stbl_offset,
                format!("the {handler} track's sample table: {e}"),
            ));
        }
    }
    Ok(())
}

/// `v * num / den` rounded to nearest, without overflow; 0 when `den` is 0.
fn rescale(v: u64, num: u64, den: u64) -> u64 {
    if den == 0 {
        return 0;
    }
    ((v as u128 * num as u128 + den as u128 / 2) / den as u128).min(u64::MAX as u128) as u64
}

/// `v * num / den` rounded up.
fn rescale_up(v: u64, num: u64, den: u64) -> u64 {
    if den == 0 {
        return 0;
    }
    (v as u128 * num as u128)
        .div_ceil(den as u128)
        .min(u64::MAX as u128) as u64
}

/// The presentation mapping of a track's edit list: (leading empty time in movie ticks,
/// first media time shown, its segment duration in movie ticks, number of non-empty edits).
fn edit_mapping(edits: &[Edit]) -> (u64, u64, Option<u64>, usize) {
    let mut empty = 0u64;
    let mut first: Option<&Edit> = None;
    let mut non_empty = 0;
    for e in edits {
        if e.media_time < 0 {
            if first.is_none() {
                empty = empty.saturating_add(e.segment_duration);
            }
        } else {
            non_empty += 1;
            if first.is_none() {
                first = Some(e);
            }
        }
    }
    match first {
        Some(e) => (
            empty,
            e.media_time as u64,
            // A segment duration of 0 in an unfragmented file means "the rest of the media".
            (e.segment_duration > 0).then_some(e.segment_duration),
            non_empty,
        ),
        None => (empty, 0, None, 0),
    }
}

fn summarize_audio(
    s: &mut M4bSummary,
    file: &File,
    file_size: u64,
    movie: &Movie<'_>,
    a: &Track<'_>,
) -> mp4box::Parse<()> {
    let entry_kind = a.table.entry_kind;
    s.codec = entry_kind
        .as_ref()
        .map(fourcc_str)
        .unwrap_or_else(|| "none".into());
    let mut asc_bytes = None;
    if let (Some(entry), Some(b"mp4a")) = (&a.entry, entry_kind.as_ref()) {
        let mut c = entry.cursor("mp4a sample entry");
        c.skip(8)?; // reserved, data reference index
        let version = c.u16()?;
        c.skip(6)?; // revision, vendor
        let entry_channels = c.u16()?;
        c.skip(6)?; // sample size, compression id, packet size
        let entry_rate = c.u32()? >> 16;
        let children_at = match version {
            0 => 28,
            1 => 28 + 16,
            2 => 28 + 36,
            v => {
                s.inconsistencies
                    .push(format!("unknown mp4a sample entry version {v}"));
                28
            }
        };
        s.channels = entry_channels;
        s.sample_rate = entry_rate;
        s.core_channels = entry_channels;
        s.core_sample_rate = entry_rate;
        let body = entry.body.get(children_at..).unwrap_or(&[]);
        let mut esds = None;
        for child in mp4box::children(body, entry.body_offset() + children_at as u64) {
            let child = child?;
            match &child.kind {
                b"esds" => esds = Some(child),
                // QuickTime puts esds inside a 'wave' box.
                b"wave" => esds = esds.or(child.child(b"esds")?),
                _ => {}
            }
        }
        match esds {
            Some(e) => {
                let e = mp4box::parse_esds(&e)?;
                if e.object_type_indication == 0x40 {
                    s.codec = "aac".into();
                } else {
                    s.codec = format!("mp4a.{:02x}", e.object_type_indication);
                }
                // The sample entry's channel count and rate are ISO "template" fields (FFmpeg
                // writes 2 channels for mono): the AudioSpecificConfig is authoritative.
                // Apple's convention for dual-rate HE-AAC puts the core's rate in the entry.
                if let Some(asc) = e.asc.as_deref().and_then(mp4box::parse_asc) {
                    s.profile = Some(aac_profile(asc.profile_object_type()));
                    if let Some(r) = asc.output_rate() {
                        s.sample_rate = r;
                    }
                    if let Some(r) = asc.sample_rate {
                        s.core_sample_rate = r;
                    }
                    if asc.channel_config != 0 {
                        s.channels = asc.output_channel_config() as u16;
                        s.core_channels = asc.channel_config as u16;
                    }
                }
                asc_bytes = e.asc;
            }
            None => s
                .inconsistencies
                .push("the mp4a sample entry has no 'esds' (decoder configuration)".into()),
        }
    }
    if a.table.entry_count > 1 {
        s.inconsistencies.push(format!(
            "the audio track has {} sample descriptions; players use only the first",
            a.table.entry_count
        ));
    }

    // Length: stts minus the priming the edit list hides, clamped to the edit duration.
    let rate = s.sample_rate as u64;
    let media_ts = a.timescale as u64;
    let to_samples = |t: u64| {
        if media_ts == rate {
            t
        } else {
            rescale(t, rate, media_ts)
        }
    };
    let stts_media = a.table.total_duration();
    let (empty, media_time, seg, non_empty) = edit_mapping(&a.edits);
    if non_empty > 1 {
        s.inconsistencies.push(format!(
            "the audio edit list has {non_empty} segments; many players honour only the first"
        ));
    }
    if empty > 0 {
        s.inconsistencies.push(format!(
            "the audio starts after {:.3} s of empty edit",
            empty as f64 / movie.timescale.max(1) as f64
        ));
    }
    if a.duration != stts_media {
        s.inconsistencies.push(format!(
            "the audio mdhd duration ({}) differs from the sum of its stts ({stts_media})",
            a.duration
        ));
    }
    if a.table.stts_sample_count() != a.table.sizes.len() as u64 {
        s.inconsistencies.push(format!(
            "stts describes {} samples but stsz lists {}",
            a.table.stts_sample_count(),
            a.table.sizes.len()
        ));
    }
    let l = &mut s.length;
    l.priming_samples = to_samples(media_time);
    l.stts_samples = to_samples(stts_media);
    l.edit_duration_samples = seg.map(|d| rescale_up(d, rate, movie.timescale as u64));
    l.packets = a.table.sizes.len() as u64;
    let from_stts = l.stts_samples.saturating_sub(l.priming_samples);
    // The edit duration is in movie ticks; only an edit shorter by more than one tick really
    // cuts the audio (a rounding difference must not clamp away real samples).
    let tick = rescale_up(1, rate, movie.timescale as u64);
    s.decoded_samples = match l.edit_duration_samples {
        Some(edit) if from_stts > edit + tick => {
            l.source = "sum of stts minus elst priming, clamped to the elst duration".into();
            edit
        }
        _ => {
            l.source = "sum of stts minus elst priming".into();
            from_stts
        }
    };
    if let Some(edit) = l.edit_duration_samples {
        if edit + tick < from_stts || edit > from_stts + tick {
            s.inconsistencies.push(format!(
                "the audio edit lasts {edit} samples but the coded audio after priming is {from_stts}"
            ));
        }
    }
    if rate > 0 {
        s.duration_secs = s.decoded_samples as f64 / rate as f64;
    }
    let payload: u64 = a.table.sizes.iter().map(|&x| x as u64).sum();
    if s.duration_secs > 0.0 {
        s.bitrate_bps = (payload as f64 * 8.0 / s.duration_secs).round() as u64;
    }

    // Decode every packet with Symphonia's AAC decoder.
    match a.table.chunks(file_size) {
        Err(e) => s.inconsistencies.push(format!("audio sample table: {e}")),
        Ok(chunks) => {
            if s.codec == "aac" {
                let d = decode_all(
                    file,
                    &a.table,
                    &chunks,
                    asc_bytes.as_deref(),
                    s.core_sample_rate,
                    s.core_channels,
                );
                // Symphonia decodes the core only: scale its counts to output samples.
                let sbr_ratio = if s.core_sample_rate > 0 && s.sample_rate > s.core_sample_rate {
                    (s.sample_rate / s.core_sample_rate) as u64
                } else {
                    1
                };
                let l = &mut s.length;
                l.decoded_packets = d.packets;
                l.decoder_samples = d.samples * sbr_ratio;
                l.decode_errors = d.errors;
                l.first_decode_error = d.first_error;
                if l.decode_errors == 0 {
                    // The decoder sees whole frames: it must cover stts, by less than a frame.
                    let frame = (d.max_frame * sbr_ratio).max(1);
                    if l.decoder_samples < l.stts_samples
                        || l.decoder_samples - l.stts_samples >= frame
                    {
                        s.inconsistencies.push(format!(
                            "the AAC decoder produced {} samples but stts accounts for {}",
                            l.decoder_samples, l.stts_samples
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The profile name [`M4bSummary::profile`] reports for what the encoder was asked for.
fn profile_name(p: AacProfile) -> &'static str {
    match p {
        AacProfile::Lc => "LC",
        AacProfile::He => "HE-AAC",
        AacProfile::Hev2 => "HE-AACv2",
    }
}

fn aac_profile(object_type: u8) -> String {
    match object_type {
        1 => "Main".into(),
        2 => "LC".into(),
        3 => "SSR".into(),
        4 => "LTP".into(),
        5 => "HE-AAC".into(),
        23 => "LD".into(),
        29 => "HE-AACv2".into(),
        39 => "ELD".into(),
        n => format!("AOT {n}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

#[derive(Default)]
struct DecodeStats {
    packets: u64,
    samples: u64,
    errors: u64,
    first_error: Option<String>,
    /// Largest frame the decoder returned (1024 for AAC-LC).
    max_frame: u64,
}

impl DecodeStats {
    fn error(&mut self, sample: usize, what: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("packet {}: {what}", sample + 1));
        }
    }
    fn merge(&mut self, o: DecodeStats) {
        self.packets += o.packets;
        self.samples += o.samples;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.errors += o.errors;
        self.max_frame = self.max_frame.max(o.max_frame);
    }
}

/// Decodes every packet, in parallel over contiguous ranges of samples. AAC-LC frames decode
/// independently apart from the overlap with the previous frame, which changes the first
/// frame's *values* in each range but not its sample count, and counts are what is checked.
fn decode_all(
    file: &File,
    table: &SampleTable,
    chunks: &[mp4box::ChunkRun],
    asc: Option<&[u8]>,
    sample_rate: u32,
    channels: u16,
) -> DecodeStats {
    use symphonia::core::codecs::{CodecParameters, CODEC_TYPE_AAC};
    let mut params = CodecParameters::new();
    params
        .for_codec(CODEC_TYPE_AAC)
        .with_sample_rate(sample_rate);
    if let Some(asc) = asc {
        params.with_extra_data(asc.to_vec().into_boxed_slice());
    } else if let Some(layout) = match channels {
        1 => Some(symphonia::core::audio::Layout::Mono),
        2 => Some(symphonia::core::audio::Layout::Stereo),
        _ => None,
    } {
        params.with_channel_layout(layout);
    }
    let n_samples = table.sizes.len();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
        // Each thread should get at least a minute or so of audio, or it costs more than it saves.
        .min(n_samples / 4096 + 1);
    let per = n_samples.div_ceil(threads.max(1)).max(1);
    let mut total = DecodeStats::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n_samples)
            .step_by(per)
            .enumerate()
            .map(|(i, start)| {
                let params = &params;
                let range = start..(start + per).min(n_samples);
                std::thread::Builder::new()
                    .name(format!("verify-decode-{i}"))
                    .spawn_scoped(scope, move || {
                        decode_run(file, table, chunks, range, params)
                    })
            })
            .collect();
        for h in handles {
            match h {
                Ok(h) => match h.join() {
                    Ok(stats) => total.merge(stats),
                    Err(_) => total.error(0, "a decoding thread panicked"),
                },
                Err(e) => total.error(0, format!("could not start a decoding thread: {e}")),
            }
        }
    });
    total
}

/// Decodes the samples in `range` (sample indices), reading each chunk's share in one read.
/// Reads go through positioned reads on the one open file, so threads share no file offset.
fn decode_run(
    file: &File,
    table: &SampleTable,
    chunks: &[mp4box::ChunkRun],
    range: std::ops::Range<usize>,
    params: &symphonia::core::codecs::CodecParameters,
) -> DecodeStats {
    use symphonia::core::codecs::{Decoder, DecoderOptions};
    use symphonia::core::formats::Packet;
    use symphonia::default::codecs::AacDecoder;

    use std::os::unix::fs::FileExt;
    let mut st = DecodeStats::default();
    let new_decoder = || AacDecoder::try_new(params, &DecoderOptions::default());
    let mut dec = match new_decoder() {
        Ok(d) => d,
        Err(e) => {
            st.error(
                range.start,
                format!("the AAC decoder rejects the stream configuration: {e}"),
            );
            return st;
        }
    };
    let size_sum =
        |r: std::ops::Range<usize>| -> u64 { table.sizes[r].iter().map(|&x| x as u64).sum() };
    // The first chunk that holds a sample of the range (chunks are in sample order).
    let first = chunks.partition_point(|c| c.first_sample + c.sample_count <= range.start);
    let mut buf = Vec::new();
    for chunk in &chunks[first..] {
        if chunk.first_sample >= range.end {
            break;
        }
        let lo = chunk.first_sample.max(range.start);
        let hi = (chunk.first_sample + chunk.sample_count).min(range.end);
        let mut offset = chunk.offset + size_sum(chunk.first_sample..lo);
        let bytes = size_sum(lo..hi);
        let whole = bytes <= MAX_CHUNK_READ_BYTES;
        if whole {
            buf.resize(bytes as usize, 0);
            let r = file.read_exact_at(&mut buf, offset);
            if let Err(e) = r {
                st.error(lo, format!("read error: {e}"));
                st.errors += (hi - lo).saturating_sub(1) as u64;
                continue;
            }
        }
        let mut pos = 0usize;
        for i in lo..hi {
            let size = table.sizes[i];
            let data: &[u8] = if size > MAX_AAC_PACKET_BYTES {
                st.error(i, format!("{size} bytes is too large for an AAC frame"));
                pos += size as usize;
                offset += size as u64;
                continue;
            } else if whole {
                let d = &buf[pos..pos + size as usize];
                pos += size as usize;
                d
            } else {
                buf.resize(size as usize, 0);
                let r = file.read_exact_at(&mut buf, offset);
                offset += size as u64;
                if let Err(e) = r {
                    st.error(i, format!("read error: {e}"));
                    continue;
                }
                &buf[..]
            };
            let pkt = Packet::new_from_slice(0, 0, 0, data);
            // Symphonia is not fuzz-hardened everywhere: a panic on hostile data is turned
            // into a decode error (and a fresh decoder) instead of taking the caller down.
            let r = crate::contained::contain(|| dec.decode(&pkt).map(|b| b.frames()));
            match r {
                Ok(Ok(frames)) => {
                    st.packets += 1;
                    st.samples += frames as u64;
                    st.max_frame = st.max_frame.max(frames as u64);
                }
                Ok(Err(e)) => st.error(i, e),
                Err(_) => {
                    st.error(i, "the AAC decoder panicked");
                    match new_decoder() {
                        Ok(d) => dec = d,
                        Err(_) => return st,
                    }
                }
            }
        }
    }
    st
}

// ---------------------------------------------------------------------------------------------
// Chapters

/// Reads the chapter track the audio track refers to (`tref/chap`). Contradictions inside it
/// are pushed to `problems`; only I/O errors fail.
fn read_chapter_track(
    rate: u32,
    f: &mut File,
    file_size: u64,
    movie: &Movie<'_>,
    audio: &Track<'_>,
    problems: &mut Vec<String>,
) -> std::io::Result<Option<ChapterTrackSummary>> {
    let Some(t) = audio
        .chapter_refs
        .iter()
        .find_map(|id| movie.tracks.iter().find(|t| t.id == *id))
    else {
        if !audio.chapter_refs.is_empty() {
            problems.push(format!(
                "tref/chap names chapter track(s) {:?} but no such track exists",
                audio.chapter_refs
            ));
        }
        return Ok(None);
    };
    let mut out = ChapterTrackSummary {
        track_id: t.id,
        timescale: t.timescale,
        chapters: Vec::new(),
    };
    let chunks = match t.table.chunks(file_size) {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("chapter track sample table: {e}"));
            Vec::new()
        }
    };
    let times = t.table.sample_times(t.table.sizes.len());
    if times.len() != t.table.sizes.len() {
        problems.push(format!(
            "the chapter track's stts covers {} samples but it has {}",
            times.len(),
            t.table.sizes.len()
        ));
    }
    let (empty, media_time, _, _) = edit_mapping(&t.edits);
    let rate = rate as u64;
    for chunk in &chunks {
        let mut buf = vec![0u8; chunk.bytes.min(MAX_CHUNK_READ_BYTES) as usize];
        f.seek(SeekFrom::Start(chunk.offset))?;
        f.read_exact(&mut buf)?;
        let mut pos = 0usize;
        for i in chunk.first_sample..chunk.first_sample + chunk.sample_count {
            let size = t.table.sizes[i] as usize;
            let Some(sample) = buf.get(pos..pos + size) else {
                problems.push(format!("chapter sample {} is too large to read", i + 1));
                break;
            };
            pos += size;
            let title = text_sample(sample).unwrap_or_else(|| {
                problems.push(format!(
                    "chapter sample {} is not a valid text sample",
                    i + 1
                ));
                String::new()
            });
            let Some(&t_media) = times.get(i) else { break };
            if t_media < media_time {
                problems.push(format!(
                    "chapter \"{title}\" lies before the start of the chapter track's edit"
                ));
            }
            // Presentation time = leading empty edit (movie ticks) + (media time - edit start).
            let start_secs = empty as f64 / movie.timescale.max(1) as f64
                + t_media.saturating_sub(media_time) as f64 / t.timescale.max(1) as f64;
            let start_samples = rescale(empty, rate, movie.timescale as u64)
                + rescale(t_media.saturating_sub(media_time), rate, t.timescale as u64);
            out.chapters.push(ChapterMark {
                title,
                start_samples,
                start_secs,
            });
        }
    }
    Ok(Some(out))
}

/// Decodes a QuickTime text sample: a 16-bit length, the text (UTF-8, or UTF-16 with a byte
/// order mark), then optional boxes such as `encd`.
fn text_sample(sample: &[u8]) -> Option<String> {
    let mut c = Cursor::new(sample, 0, "text sample");
    let len = c.u16().ok()? as usize;
    let text = c.bytes(len).ok()?;
    let utf16 = |be: bool, b: &[u8]| {
        let units: Vec<u16> = b
            .chunks_exact(2)
            .map(|p| {
                if be {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    u16::from_le_bytes([p[0], p[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    Some(match text {
        [0xFE, 0xFF, rest @ ..] => utf16(true, rest),
        [0xFF, 0xFE, rest @ ..] => utf16(false, rest),
        _ => String::from_utf8_lossy(text).into_owned(),
    })
}

fn parse_chpl(b: &BoxRef<'_>, rate: u32, problems: &mut Vec<String>) -> ChplSummary {
    let mut c = b.cursor("chpl box");
    let mut out = ChplSummary {
        version: 0,
        declared_count: 0,
        chapters: Vec::new(),
    };
    let r: mp4box::Parse<()> = (|| {
        let (version, _) = c.full_header()?;
        out.version = version;
        if version == 1 {
            c.u32()?; // reserved
        }
        out.declared_count = c.u8()?;
        for _ in 0..out.declared_count {
            let start = c.u64()?;
            let len = c.u8()? as usize;
            let title = c.bytes(len)?;
            out.chapters.push(ChapterMark {
                title: String::from_utf8_lossy(title).into_owned(),
                // chpl times are in 100 ns units.
                start_samples: rescale(start, rate as u64, 10_000_000),
                start_secs: start as f64 / 1e7,
            });
        }
        Ok(())
    })();
    if let Err(e) = r {
        problems.push(format!("chpl: {} (at byte {})", e.reason, e.offset));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tags

fn text_value(v: &DataValue<'_>) -> Option<String> {
    match v.type_code {
        1 | 0 => Some(String::from_utf8_lossy(v.payload).into_owned()),
        2 => {
            let units: Vec<u16> = v
                .payload
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

fn int_value(v: &DataValue<'_>) -> Option<i64> {
    let p = v.payload;
    match p.len() {
        1 => Some(p[0] as i8 as i64),
        2 => Some(i16::from_be_bytes([p[0], p[1]]) as i64),
        4 => Some(i32::from_be_bytes([p[0], p[1], p[2], p[3]]) as i64),
        8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(p);
            Some(i64::from_be_bytes(a))
        }
        _ => None,
    }
}

fn image_format(v: &DataValue<'_>) -> String {
    match v.payload {
        [0xFF, 0xD8, 0xFF, ..] => "jpeg".into(),
        [0x89, b'P', b'N', b'G', ..] => "png".into(),
        [b'B', b'M', ..] => "bmp".into(),
        _ => match v.type_code {
            13 => "jpeg (by type code, bad data)".into(),
            14 => "png (by type code, bad data)".into(),
            n => format!("unknown (type {n})"),
        },
    }
}

fn read_tags(items: &[mp4box::Item<'_>], s: &mut M4bSummary) {
    let t = &mut s.tags;
    let mut mvn = None;
    let mut mvi = None;
    for item in items {
        t.keys.push(item.key.to_string());
        let first = item.values.first();
        let text = first.and_then(text_value);
        match &item.key {
            ItemKey::Code(k) => match k {
                b"\xa9nam" => t.title = text,
                b"\xa9ART" => t.artist = text,
                b"aART" => t.album_artist = text,
                b"\xa9alb" => t.album = text,
                b"\xa9wrt" => t.composer = text,
                b"\xa9gen" => t.genre = text,
                b"\xa9day" => t.date = text,
                b"\xa9cmt" => t.comment = text,
                b"desc" => t.description = text,
                b"ldes" => t.long_description = text,
                b"\xa9nrt" => t.narrator = text,
                b"\xa9too" => t.encoder = text,
                b"\xa9mvn" => mvn = text,
                b"\xa9mvi" => mvi = first.and_then(int_value).map(|n| n.to_string()),
                b"stik" => t.media_type = first.and_then(int_value).map(|n| n as u8),
                b"covr" => {
                    if let Some(v) = first {
                        s.cover = Some(CoverSummary {
                            format: image_format(v),
                            bytes: v.payload.len() as u64,
                            in_covr: true,
                            count: item.values.len(),
                        });
                    }
                }
                _ => {}
            },
            ItemKey::Freeform { name, .. } => match name.to_ascii_uppercase().as_str() {
                "SERIES" => t.series = text,
                "SERIES-PART" => t.series_part = text,
                _ => {}
            },
        }
    }
    if t.series.is_none() {
        t.series = mvn;
    }
    if t.series_part.is_none() {
        t.series_part = mvi;
    }
}

// ---------------------------------------------------------------------------------------------
// Cross-checks with other readers

/// A second handle on the already opened (and checked) file, at its start. It shares the
/// offset with `file`, so it is only used once the caller is done with its own reads.
fn rewound(file: &File) -> Option<File> {
    let mut f = file.try_clone().ok()?;
    f.seek(SeekFrom::Start(0)).ok()?;
    Some(f)
}

/// Symphonia's MP4 demuxer parses `moov` on its own: its view of the audio track must match.
fn cross_check_symphonia(s: &mut M4bSummary, file: &File, movie: &Movie<'_>) {
    use symphonia::core::codecs::CODEC_TYPE_AAC;
    use symphonia::core::formats::{FormatOptions, FormatReader};
    use symphonia::core::io::MediaSourceStream;
    use symphonia::default::formats::IsoMp4Reader;
    if s.audio_tracks == 0 {
        return;
    }
    let Some(file) = rewound(file) else {
        s.inconsistencies
            .push("cannot read the file again for Symphonia's MP4 reader".into());
        return;
    };
    let r = crate::contained::contain(|| {
        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let reader = IsoMp4Reader::try_new(mss, &FormatOptions::default())?;
        Ok::<_, symphonia::core::errors::Error>(
            reader
                .tracks()
                .iter()
                .find(|t| t.codec_params.codec == CODEC_TYPE_AAC)
                .map(|t| {
                    (
                        t.codec_params.sample_rate,
                        t.codec_params.channels.map(|c| c.count() as u16),
                        t.codec_params.n_frames,
                    )
                }),
        )
    });
    let audio = movie.tracks.iter().find(|t| t.handler == *b"soun");
    match r {
        Err(_) => s
            .inconsistencies
            .push("Symphonia's MP4 reader panicked on this file".into()),
        Ok(Err(e)) => s
            .inconsistencies
            .push(format!("Symphonia's MP4 reader cannot open the file: {e}")),
        Ok(Ok(None)) if s.codec == "aac" => s
            .inconsistencies
            .push("Symphonia's MP4 reader finds no AAC track".into()),
        Ok(Ok(None)) => {}
        Ok(Ok(Some((rate, channels, n_frames)))) => {
            // Symphonia may report the core's rate and channels (HE-AAC); either is consistent.
            if rate.is_some_and(|r| r != s.sample_rate && r != s.core_sample_rate) {
                s.inconsistencies.push(format!(
                    "Symphonia reads {} Hz, this reader {} Hz",
                    rate.unwrap_or(0),
                    s.sample_rate
                ));
            }
            if channels.is_some_and(|c| c != s.channels && c != s.core_channels) {
                s.inconsistencies.push(format!(
                    "Symphonia reads {} channel(s), this reader {}",
                    channels.unwrap_or(0),
                    s.channels
                ));
            }
            if let (Some(n), Some(a)) = (n_frames, audio) {
                if n != a.duration {
                    s.inconsistencies.push(format!(
                        "Symphonia reads a media duration of {n}, this reader {}",
                        a.duration
                    ));
                }
            }
        }
    }
}

/// `mp4ameta` reads tags, the cover and the chapter track its own way: they must agree.
/// (Its `chpl` reader is not used: it rejects the mid-character cut FFmpeg makes in titles
/// longer than 255 bytes.)
fn cross_check_mp4ameta(s: &mut M4bSummary, file: &File) {
    let cfg = mp4ameta::ReadConfig {
        read_meta_items: true,
        read_image_data: true,
        read_chapter_list: false,
        read_chapter_track: true,
        read_audio_info: false,
        ..mp4ameta::ReadConfig::DEFAULT
    };
    let Some(mut file) = rewound(file) else {
        s.inconsistencies
            .push("cannot read the file again for mp4ameta".into());
        return;
    };
    let r = crate::contained::contain(|| {
        // Buffered: mp4ameta reads box headers a few bytes at a time.
        mp4ameta::Tag::read_with(&mut std::io::BufReader::new(&mut file), &cfg)
    });
    let tag = match r {
        Err(_) => {
            s.inconsistencies
                .push("mp4ameta panicked reading this file".into());
            return;
        }
        Ok(Err(e)) => {
            // Its message carries the I/O error's Debug form on a second line: keep one line.
            let e = e.to_string();
            let first = e.lines().next().unwrap_or_default().trim_end_matches(':');
            s.inconsistencies
                .push(format!("mp4ameta cannot read this file: {first}"));
            return;
        }
        Ok(Ok(t)) => t,
    };
    let mut differ = |what: &str, a: Option<&str>, b: Option<&str>| {
        if a != b {
            s.inconsistencies
                .push(format!("{what}: mp4ameta reads {a:?}, this reader {b:?}"));
        }
    };
    let nrt = mp4ameta::Fourcc(*b"\xa9nrt");
    differ("title", tag.title(), s.tags.title.as_deref());
    differ("artist", tag.artist(), s.tags.artist.as_deref());
    differ("album", tag.album(), s.tags.album.as_deref());
    differ(
        "narrator",
        tag.strings_of(&nrt).next(),
        s.tags.narrator.as_deref(),
    );
    let art = tag.artwork().map(|a| a.data.len() as u64);
    let ours = s.cover.as_ref().filter(|c| c.in_covr).map(|c| c.bytes);
    if art != ours {
        s.inconsistencies.push(format!(
            "cover: mp4ameta reads {art:?} bytes, this reader {ours:?}"
        ));
    }
    let theirs = tag.chapter_track();
    let ours = s
        .chapter_track
        .as_ref()
        .map(|t| t.chapters.as_slice())
        .unwrap_or(&[]);
    if theirs.len() != ours.len() {
        s.inconsistencies.push(format!(
            "chapter track: mp4ameta reads {} chapters, this reader {}",
            theirs.len(),
            ours.len()
        ));
    } else {
        for (i, (a, b)) in theirs.iter().zip(ours).enumerate() {
            // mp4ameta ignores the chapter track's edit list; FFmpeg's starts at 0, so the
            // times agree to the track's 1 ms resolution.
            if a.title != b.title || (a.start.as_secs_f64() - b.start_secs).abs() > 0.002 {
                s.inconsistencies.push(format!(
                    "chapter {}: mp4ameta reads {:?} at {:.3} s, this reader {:?} at {:.3} s",
                    i + 1,
                    a.title,
                    a.start.as_secs_f64(),
                    b.title,
                    b.start_secs
                ));
                break;
            }
        }
    }
}
