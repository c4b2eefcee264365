//! Independent check of a written `.m4b`: a different reader than the writer.
//!
//! The engine writes through FFmpeg; this module reads back through a hand-written box walker
//! (`mp4box.rs`), Symphonia's AAC decoder, Symphonia's MP4 demuxer (as a header
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
//!
//! **While converting.** The conversion's own check need not decode the written file again:
//! on the multi-core path every encoder worker decodes its packets with the same Symphonia
//! decoder as they come out of the encoder ([`PacketCheck`], `stream.rs`), and
//! [`summarize_streamed`] reads the written file as [`summarize`] does but, instead of
//! decoding, requires its packets (read through its own sample table) to match those runs'
//! BLAKE3 digests, the runs covering every packet. A packet lost, added, reordered or changed
//! between encoder and disk fails it — including changes that still decode, which a second
//! decode would have passed.
//!
//! # Layout
//!
//! This file keeps the entry points ([`summarize`], [`verify`]) and the file-level reads
//! (`ftyp`, the top-level layout). `summary.rs` holds the public data ([`M4bSummary`],
//! [`Expectations`] …), `check.rs` compares a summary with expectations, `movie.rs` parses
//! `moov` into tracks and checks their sample tables, `timing.rs` owns the edit-list and
//! timescale arithmetic, `audio.rs` the audio track (sample entry, length), `decode.rs`
//! decodes every packet (the only threads here), `chapters.rs` the chapter track and `chpl`,
//! `tags.rs` the `ilst` items, `cross_check.rs` the second opinions of Symphonia and mp4ameta,
//! `stream.rs` the decode while converting and its digest check.
mod audio;
pub(crate) mod chapters;
mod check;
mod cross_check;
mod decode;
mod movie;
mod stream;
mod summary;
mod tags;
mod timing;

pub use check::check;
pub use stream::{PacketCheck, VerifiedRun};
pub use summary::{
    AudioLength, ChapterMark, ChapterTrackSummary, ChplSummary, CoverSummary, Expectations,
    M4bSummary, TagSummary, TrackSummary,
};

use crate::error::{Error, Result};
use crate::mp4box::{self, fourcc_str, parse_ilst, Malformed, TopBox};
use audio::summarize_audio;
use chapters::{parse_chpl, read_chapter_track};
use cross_check::{cross_check_mp4ameta, cross_check_symphonia};
use movie::{check_sample_tables, parse_movie, Track};
use std::path::Path;
use tags::read_tags;

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
/// Every per-sample `stsz` table is read from the file into the sample table directly, not
/// through the `moov` buffer ([`mp4box::read_moov_sparse`]): one path for every book, so
/// the small files of the tests and the fuzz target take the one that long books take.
const SIZES_IN_FILE_MIN_BYTES: u64 = 0;

/// Largest single AAC packet accepted: an AAC frame holds at most 6144 bits per channel
/// (ISO 14496-3 §4.5.3), 1536 bytes for stereo; anything far above is a broken sample table.
const MAX_AAC_PACKET_BYTES: u32 = 64 << 10;

/// Chunks larger than this are read sample by sample instead of in one read.
const MAX_CHUNK_READ_BYTES: u64 = 16 << 20;

/// Reads `path` and summarizes it. Fails only when the file cannot be read or its box
/// structure is broken; everything else (wrong codec, decode errors …) is data for [`check`].
///
/// Only a regular file is read (a FIFO or a device is refused at once, see
/// `regular::open_regular`), and the box structure, the timescales and every track's
/// sample table are checked before any other reader (Symphonia, mp4ameta) sees the file:
/// those readers divide by the timescales and index with the tables, and panic or log
/// line after line when they lie.
pub fn summarize(path: &Path) -> Result<M4bSummary> {
    summarize_with(path, None)
}

/// [`summarize`] for a file whose packets were decoded while it was written
/// ([`PacketCheck`]): instead of decoding every packet again, the file's packets are read
/// through its own sample table and must match the `runs`' digests, the runs covering every
/// packet. Everything else is read and checked as [`summarize`] does.
pub fn summarize_streamed(path: &Path, runs: &[VerifiedRun]) -> Result<M4bSummary> {
    summarize_with(path, Some(runs))
}

fn summarize_with(path: &Path, runs: Option<&[VerifiedRun]>) -> Result<M4bSummary> {
    let mp4box::OpenedMp4 {
        file: mut f,
        size: file_size,
        tops,
    } = mp4box::OpenedMp4::open(path, "open the M4B to verify it")?;
    let io = |e| Error::io(path, "read the M4B", e);
    let mal = mp4box::malformed(path);

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
    // The audio's frame sizes (4 bytes a frame) are read once, straight into the sample
    // table, not also into the `moov` buffer.
    let (moov_buf, sizes_in_file) =
        mp4box::read_moov_sparse(&mut f, moov_top, MAX_MOOV_BYTES, SIZES_IN_FILE_MIN_BYTES)
            .map_err(io)?
            .map_err(mal)?;
    let audio_stts_total = summarize_moov(
        &mut s,
        &mut f,
        file_size,
        (&moov_buf, moov_top, &sizes_in_file),
        runs,
    )?;
    // The `moov` and this reader's sample tables (4 bytes a frame each) are gone before
    // Symphonia builds its own (another 4 bytes a frame): a long book's verification holds
    // one copy at a time, not three.
    drop(moov_buf);
    cross_check_symphonia(&mut s, &f, audio_stts_total);
    cross_check_mp4ameta(&mut s, &f);
    Ok(s)
}

/// Reads everything [`summarize`] takes from the `moov` (its tracks, the audio, the chapter
/// track, `chpl` and tags) into `s`; returns the audio track's `stts` total (media timescale)
/// for the Symphonia cross-check, which runs once the tables here are dropped.
fn summarize_moov(
    s: &mut M4bSummary,
    f: &mut std::fs::File,
    file_size: u64,
    (moov_buf, moov_top, sizes_in_file): (&[u8], &TopBox, &[mp4box::SizesInFile]),
    runs: Option<&[VerifiedRun]>,
) -> Result<Option<u64>> {
    let path = s.path.clone();
    let io = |e| Error::io(&path, "read the M4B", e);
    let mal = mp4box::malformed(&path);
    let moov = mp4box::as_box_ref(moov_buf, moov_top);
    let mut movie = parse_movie(&moov, sizes_in_file).map_err(mal)?;
    for t in &mut movie.tracks {
        if let Some(at) = t.table.sizes_in_file.take() {
            t.table.sizes = at.read(f).map_err(io)?;
        }
    }
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
        summarize_audio(s, f, file_size, &movie, a, runs).map_err(mal)?;
        s.chapter_track = read_chapter_track(
            s.sample_rate,
            f,
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
                    read_tags(&items, s);
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
    Ok(audio.first().map(|a| a.table.total_duration()))
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
