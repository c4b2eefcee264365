//! aiom4b's own M4B writer: one pass over the output, memory flat in book length.
//!
//! libavformat's mov muxer keeps a ~64-byte entry per AAC frame until the trailer (≈ 10 MB an
//! hour of 128k stereo) and, for `+faststart`, rewrites the whole file a second time to move
//! the index to the front. This writer lays the file out as
//!
//! ```text
//! ftyp │ reserved: free (the moov is filled in here at the end) │ free(8) mdat(8) │ AAC frames … chapter texts
//! ```
//!
//! The reservation is sized from the book's expected frame count (the pipeline knows its
//! length before encoding). While frames stream into `mdat`, their sizes — the only per-frame
//! table that cannot be run-length coded — are written as finished `stsz` entries into the
//! *end* of the reservation, so the writer holds no per-frame state in memory: durations are
//! run-length (`stts`), chunks have a fixed frame count (`stsc`), and only one offset per
//! chunk (64 frames) is kept. At `finish` the `moov` is built (the `stsz` entries stay on disk
//! and are moved within the file to their place), written at the front, and the rest of the
//! reservation becomes a `free` box (which later edits reuse to grow tags in place). If the
//! `moov` does not fit (far more frames or chapter text than expected), the audio is moved
//! forward once to make room: slower, but the file is as it would have been.
//!
//! The boxes follow what FFmpeg 5.1's `ipod` muxer writes for the same stream (its layout is
//! the reference the tests compare against): `mvhd`/`tkhd`/`mdhd`/`elst` switch to version 1
//! exactly where movenc does, the edit list hides the encoder's priming, `esds` carries the
//! AudioSpecificConfig and average/maximum bitrate, a `roll` sample group, the QuickTime
//! chapter text track (`tref chap`), Nero `chpl` and `udta/meta/ilst` with the cover. The
//! chapter track, `chpl`, `dinf` and `ilst` items come from the builders `edit` uses.
//!
//! Hand-written because no maintained Rust crate writes MP4 in one pass with a reserved,
//! front-placed `moov` and on-disk sample tables (`mp4`/`mp4-rust` keep every sample entry in
//! memory and write `moov` at the end; `mp4ameta` only edits tags, see `mp4tags`).
use super::aac::EncodedPacket;
use super::mux::{Brand, MuxChapter, MuxTarget};
use crate::edit::moov::{
    boxed, chapter_samples, chapter_trak, chpl_box, dinf_box, encode_item, full, new_meta,
    offsets_box, Chapter, NewItem,
};
use crate::error::{Error, Result};
use crate::model::Picture;
use crate::mp4box::ItemKey;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The movie clock (`mvhd`, `tkhd`, `elst`): milliseconds, as movenc writes it.
const MOVIE_TIMESCALE: u32 = 1000;
const AUDIO_ID: u32 = 1;
const CHAPTER_ID: u32 = 2;
/// AAC frames per chunk (≈ 1.5 s at 44.1 kHz): one `stco` entry per 64 frames.
pub(crate) const CHUNK_FRAMES: u32 = 64;
/// Reservation room for boxes of known-small size (mvhd, tkhd, stsd, stts, …: ~1.5 KB).
const FIXED_ALLOWANCE: u64 = 4 << 10;
/// Reservation room for the chapter track's tables and `chpl` when the chapters are not known
/// in advance (255 titles of 255 bytes would be ≈ 66 KiB): some 1,500 chapters with short
/// titles. [`Mp4Writer::expect_chapters`] replaces it with the exact need.
const CHAPTER_ALLOWANCE: u64 = 64 << 10;
/// `stsz` entries are written to the reservation in blocks of this many bytes.
const SIZE_BLOCK: usize = 64 << 10;
/// Bytes moved per read/write when the entries are moved to their place.
const MOVE_BLOCK: usize = 1 << 20;

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::io(path, "write the M4B (is the disk full?)", e)
}

/// `v · num / den` rounded to nearest, halves away from zero (FFmpeg's `av_rescale_q`).
fn rescale(v: i64, num: u64, den: u64) -> i64 {
    let (n, d) = (v as i128 * num as i128, den.max(1) as i128);
    let r = if n >= 0 {
        (n + d / 2) / d
    } else {
        -((-n + d / 2) / d)
    };
    r as i64
}

/// `v · num / den` rounded up.
fn rescale_up(v: u64, num: u64, den: u64) -> u64 {
    let d = den.max(1) as u128;
    ((v as u128 * num as u128).div_ceil(d)).min(u64::MAX as u128) as u64
}

/// What the audio track's boxes say, gathered while the frames stream by (no per-frame data:
/// the `stsz` entries live in the file).
#[derive(Debug, Clone, Default)]
pub(crate) struct AudioTrack {
    /// `mdhd` timescale and the `mp4a` entry's rate.
    pub timescale: u32,
    pub channels: u16,
    /// The AudioSpecificConfig.
    pub asc: Vec<u8>,
    /// The encoder's nominal bitrate (bits/s).
    pub bitrate: u64,
    /// Frames written.
    pub frames: u64,
    /// Run-length sample durations (count, delta) in track ticks.
    pub stts: Vec<(u32, u32)>,
    /// Ticks the edit list skips at the start (the encoder's priming).
    pub priming: u64,
    /// File offset of every chunk of [`CHUNK_FRAMES`] frames.
    pub chunk_offsets: Vec<u64>,
    /// Bytes of audio in `mdat`.
    pub audio_bytes: u64,
}

impl AudioTrack {
    fn push_duration(&mut self, d: u32) {
        match self.stts.last_mut() {
            Some((n, v)) if *v == d && *n < u32::MAX => *n += 1,
            _ => self.stts.push((1, d)),
        }
    }
    /// All ticks in `stts`, priming included (the `mdhd` duration).
    pub fn total_ticks(&self) -> u64 {
        self.stts.iter().map(|&(n, d)| n as u64 * d as u64).sum()
    }
    /// Presented ticks: priming excluded.
    pub fn media_ticks(&self) -> u64 {
        self.total_ticks().saturating_sub(self.priming)
    }
}

/// The chapter text track and `chpl`, placed: starts in output samples at `rate` (for `chpl`),
/// ticks in ms (for the text track), where its samples are.
pub(crate) struct ChapterLayout {
    pub chapters: Vec<Chapter>,
    pub rate: u32,
    pub ticks: Vec<u64>,
    pub sizes: Vec<u32>,
    pub total_ticks: u64,
    pub offset: u64,
}

/// A `moov` with a hole where the audio track's `stsz` entries go (`4 × frames` bytes,
/// streamed in from the file): `head`, the entries, `tail`.
#[derive(Debug, Clone)]
pub(crate) struct MoovParts {
    pub head: Vec<u8>,
    pub hole: u64,
    pub tail: Vec<u8>,
}

impl MoovParts {
    pub fn len(&self) -> u64 {
        self.head.len() as u64 + self.hole + self.tail.len() as u64
    }

    /// Wraps `before`, `inner` and `after` in a box of `kind` (64-bit size when needed).
    fn wrap(kind: &[u8; 4], before: &[u8], inner: MoovParts, after: &[u8]) -> MoovParts {
        let body = before.len() as u64 + inner.len() + after.len() as u64;
        let mut head = Vec::with_capacity(16 + before.len() + inner.head.len());
        if body + 8 > u32::MAX as u64 {
            head.extend_from_slice(&1u32.to_be_bytes());
            head.extend_from_slice(kind);
            head.extend_from_slice(&(body + 16).to_be_bytes());
        } else {
            head.extend_from_slice(&((body + 8) as u32).to_be_bytes());
            head.extend_from_slice(kind);
        }
        head.extend_from_slice(before);
        head.extend_from_slice(&inner.head);
        let mut tail = inner.tail;
        tail.extend_from_slice(after);
        MoovParts {
            head,
            hole: inner.hole,
            tail,
        }
    }

    /// The whole box with `entries` in the hole (tests and small files).
    #[cfg(test)]
    pub fn assemble(&self, sizes: &[u32]) -> Vec<u8> {
        assert_eq!(sizes.len() as u64 * 4, self.hole);
        let mut out = self.head.clone();
        for s in sizes {
            out.extend_from_slice(&s.to_be_bytes());
        }
        out.extend_from_slice(&self.tail);
        out
    }
}

/// The unity matrix of `mvhd`/`tkhd`.
const MATRIX: [u32; 9] = [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000];

fn matrix(out: &mut Vec<u8>) {
    for m in MATRIX {
        out.extend_from_slice(&m.to_be_bytes());
    }
}

/// Creation/modification time 0, then `timescale` (if any) and `duration`, 32- or 64-bit.
fn times(out: &mut Vec<u8>, v1: bool, timescale: Option<u32>, id: Option<u32>, duration: u64) {
    out.extend_from_slice(&[0; 8][..if v1 { 8 } else { 4 }]);
    out.extend_from_slice(&[0; 8][..if v1 { 8 } else { 4 }]);
    if let Some(ts) = timescale {
        out.extend_from_slice(&ts.to_be_bytes());
    }
    if let Some(id) = id {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
    }
    if v1 {
        out.extend_from_slice(&duration.to_be_bytes());
    } else {
        out.extend_from_slice(&(duration as u32).to_be_bytes());
    }
}

fn mvhd(duration: u64, next_id: u32) -> Vec<u8> {
    // movenc: version 1 once the longest track does not fit 32 bits.
    let v1 = duration >= u32::MAX as u64;
    let mut b = Vec::new();
    times(&mut b, v1, Some(MOVIE_TIMESCALE), None, duration);
    b.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate 1.0
    b.extend_from_slice(&0x0100u16.to_be_bytes()); // volume 1.0
    b.extend_from_slice(&[0; 10]);
    matrix(&mut b);
    b.extend_from_slice(&[0; 24]); // pre-defined
    b.extend_from_slice(&next_id.to_be_bytes());
    full(b"mvhd", v1 as u8, 0, &b)
}

fn audio_tkhd(duration: u64) -> Vec<u8> {
    let v1 = duration >= i32::MAX as u64;
    let mut b = Vec::new();
    times(&mut b, v1, None, Some(AUDIO_ID), duration);
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&0u16.to_be_bytes()); // layer
    b.extend_from_slice(&1u16.to_be_bytes()); // alternate group (movenc: 1 for audio)
    b.extend_from_slice(&0x0100u16.to_be_bytes()); // volume
    b.extend_from_slice(&[0; 2]);
    matrix(&mut b);
    b.extend_from_slice(&[0; 8]); // width, height
    full(b"tkhd", v1 as u8, 3, &b) // enabled, in movie
}

/// One edit showing `duration` (movie ticks) from media time `start` (track ticks).
fn edts(duration: u64, start: u64) -> Vec<u8> {
    let v1 = duration >= i32::MAX as u64 || start >= i32::MAX as u64;
    let mut b = 1u32.to_be_bytes().to_vec();
    if v1 {
        b.extend_from_slice(&duration.to_be_bytes());
        b.extend_from_slice(&start.to_be_bytes());
    } else {
        b.extend_from_slice(&(duration as u32).to_be_bytes());
        b.extend_from_slice(&(start as u32).to_be_bytes());
    }
    b.extend_from_slice(&0x0001_0000u32.to_be_bytes());
    boxed(b"edts", &full(b"elst", v1 as u8, 0, &b))
}

fn mdhd(timescale: u32, duration: u64) -> Vec<u8> {
    let v1 = duration >= i32::MAX as u64;
    let mut b = Vec::new();
    times(&mut b, v1, Some(timescale), None, duration);
    b.extend_from_slice(&0x55c4u16.to_be_bytes()); // language "und"
    b.extend_from_slice(&[0; 2]);
    full(b"mdhd", v1 as u8, 0, &b)
}

/// An MPEG-4 descriptor with the 4-byte length movenc writes.
fn descr(tag: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len() as u32;
    let mut out = vec![tag, (n >> 21) as u8 | 0x80, (n >> 14) as u8 | 0x80];
    out.extend_from_slice(&[(n >> 7) as u8 | 0x80, (n & 0x7f) as u8]);
    out.extend_from_slice(body);
    out
}

fn esds(a: &AudioTrack) -> Vec<u8> {
    // movenc: the average over the whole track, the maximum at least the nominal rate.
    let avg = if a.total_ticks() > 0 {
        (a.audio_bytes as u128 * 8 * a.timescale as u128 / a.total_ticks() as u128) as u64
    } else {
        0
    };
    let max = avg.max(a.bitrate);
    let mut dc = vec![0x40, 0x15, 0, 0, 0]; // AAC, audio stream, buffer size 0
    dc.extend_from_slice(&(max.min(u32::MAX as u64) as u32).to_be_bytes());
    dc.extend_from_slice(&(avg.min(u32::MAX as u64) as u32).to_be_bytes());
    if !a.asc.is_empty() {
        dc.extend_from_slice(&descr(5, &a.asc));
    }
    let mut es = AUDIO_ID.to_be_bytes()[2..].to_vec();
    es.push(0);
    es.extend_from_slice(&descr(4, &dc));
    es.extend_from_slice(&descr(6, &[2]));
    full(b"esds", 0, 0, &descr(3, &es))
}

fn stsd(a: &AudioTrack) -> Vec<u8> {
    let mut e = vec![0; 6];
    e.extend_from_slice(&1u16.to_be_bytes()); // data reference index
    e.extend_from_slice(&[0; 8]); // version, revision, vendor
    e.extend_from_slice(&a.channels.to_be_bytes());
    e.extend_from_slice(&16u16.to_be_bytes());
    e.extend_from_slice(&[0; 4]); // compression ID, packet size
    let rate = if a.timescale <= u16::MAX as u32 {
        a.timescale
    } else {
        0
    };
    e.extend_from_slice(&(rate << 16).to_be_bytes());
    e.extend_from_slice(&esds(a));
    let entry = boxed(b"mp4a", &e);
    full(b"stsd", 0, 0, &[&1u32.to_be_bytes()[..], &entry].concat())
}

fn stts(a: &AudioTrack) -> Vec<u8> {
    let mut b = (a.stts.len() as u32).to_be_bytes().to_vec();
    for &(n, d) in &a.stts {
        b.extend_from_slice(&n.to_be_bytes());
        b.extend_from_slice(&d.to_be_bytes());
    }
    full(b"stts", 0, 0, &b)
}

/// Every chunk holds [`CHUNK_FRAMES`] frames but the last, which holds the rest.
fn stsc(a: &AudioTrack) -> Vec<u8> {
    let chunks = a.chunk_offsets.len() as u32;
    let last = (a.frames - (chunks.max(1) as u64 - 1) * CHUNK_FRAMES as u64) as u32;
    let mut runs = Vec::new();
    if chunks > 1 {
        runs.push((1, CHUNK_FRAMES));
    }
    if chunks > 0 && (last != CHUNK_FRAMES || chunks == 1) {
        runs.push((chunks, last));
    }
    let mut b = (runs.len() as u32).to_be_bytes().to_vec();
    for (first, n) in runs {
        for v in [first, n, 1] {
            b.extend_from_slice(&v.to_be_bytes());
        }
    }
    full(b"stsc", 0, 0, &b)
}

/// The `stsz` header; its `4 × frames` bytes of entries are the hole of [`MoovParts`].
fn stsz(a: &AudioTrack) -> MoovParts {
    let mut head = ((20 + 4 * a.frames) as u32).to_be_bytes().to_vec();
    head.extend_from_slice(b"stsz");
    head.extend_from_slice(&[0; 8]); // version, flags, sample size 0 (sizes follow)
    head.extend_from_slice(&(a.frames as u32).to_be_bytes());
    MoovParts {
        head,
        hole: 4 * a.frames,
        tail: Vec::new(),
    }
}

/// The AAC `roll` sample group movenc writes: every frame needs the one before it.
fn roll_groups(frames: u64) -> Vec<u8> {
    let mut d = b"roll".to_vec();
    d.extend_from_slice(&2u32.to_be_bytes()); // default length
    d.extend_from_slice(&1u32.to_be_bytes());
    d.extend_from_slice(&(-1i16).to_be_bytes());
    let mut g = b"roll".to_vec();
    g.extend_from_slice(&1u32.to_be_bytes());
    g.extend_from_slice(&(frames as u32).to_be_bytes());
    g.extend_from_slice(&1u32.to_be_bytes());
    [full(b"sgpd", 1, 0, &d), full(b"sbgp", 0, 0, &g)].concat()
}

fn sound_hdlr() -> Vec<u8> {
    let mut b = vec![0; 4];
    b.extend_from_slice(b"soun");
    b.extend_from_slice(&[0; 12]);
    b.extend_from_slice(b"SoundHandler\0");
    full(b"hdlr", 0, 0, &b)
}

/// The whole `moov` but the `stsz` entries: audio track, chapter track (if any), `udta` with
/// `meta/ilst` (`ilst_body`) and `chpl`.
pub(crate) fn build_moov(
    a: &AudioTrack,
    chapters: Option<&ChapterLayout>,
    ilst_body: &[u8],
) -> MoovParts {
    let audio_ms = rescale_up(a.media_ticks(), MOVIE_TIMESCALE as u64, a.timescale as u64);
    let chapters = chapters.filter(|c| !c.chapters.is_empty());
    let movie_ms = chapters.map_or(audio_ms, |c| audio_ms.max(c.total_ticks));
    let next_id = if chapters.is_some() {
        CHAPTER_ID + 1
    } else {
        AUDIO_ID + 1
    };

    let wide = a.chunk_offsets.last().is_some_and(|&o| o > u32::MAX as u64);
    let stbl = MoovParts::wrap(
        b"stbl",
        &[stsd(a), stts(a), stsc(a)].concat(),
        stsz(a),
        &[offsets_box(&a.chunk_offsets, wide), roll_groups(a.frames)].concat(),
    );
    let smhd = full(b"smhd", 0, 0, &[0; 4]);
    let minf = MoovParts::wrap(b"minf", &[smhd, dinf_box()].concat(), stbl, &[]);
    let mdia = MoovParts::wrap(
        b"mdia",
        &[mdhd(a.timescale, a.total_ticks()), sound_hdlr()].concat(),
        minf,
        &[],
    );
    let mut before_mdia = audio_tkhd(audio_ms);
    before_mdia.extend_from_slice(&edts(audio_ms, a.priming));
    if chapters.is_some() {
        let chap = boxed(b"chap", &CHAPTER_ID.to_be_bytes());
        before_mdia.extend_from_slice(&boxed(b"tref", &chap));
    }
    let trak = MoovParts::wrap(b"trak", &before_mdia, mdia, &[]);

    let mut after = Vec::new();
    let mut udta = new_meta(ilst_body);
    if let Some(c) = chapters {
        after.extend_from_slice(&chapter_trak(
            CHAPTER_ID,
            &c.ticks,
            &c.sizes,
            c.total_ticks,
            movie_ms,
            c.offset,
        ));
        udta.extend_from_slice(&chpl_box(&c.chapters, c.rate));
    }
    after.extend_from_slice(&boxed(b"udta", &udta));
    MoovParts::wrap(b"moov", &mvhd(movie_ms, next_id), trak, &after)
}

/// Metadata keys as FFmpeg names them, in the order movenc writes their `ilst` items:
/// text items, then one-byte/four-byte integers (type 21).
const TEXT_ITEMS: [(&str, &[u8; 4]); 18] = [
    ("title", b"\xa9nam"),
    ("artist", b"\xa9ART"),
    ("album_artist", b"aART"),
    ("composer", b"\xa9wrt"),
    ("album", b"\xa9alb"),
    ("date", b"\xa9day"),
    ("encoding_tool", b"\xa9too"),
    ("comment", b"\xa9cmt"),
    ("genre", b"\xa9gen"),
    ("copyright", b"cprt"),
    ("grouping", b"\xa9grp"),
    ("lyrics", b"\xa9lyr"),
    ("description", b"desc"),
    ("synopsis", b"ldes"),
    ("show", b"tvsh"),
    ("episode_id", b"tven"),
    ("network", b"tvnw"),
    ("keywords", b"keyw"),
];
const INT_ITEMS: [(&str, &[u8; 4], usize); 6] = [
    ("episode_sort", b"tves", 4),
    ("season_number", b"tvsn", 4),
    ("media_type", b"stik", 1),
    ("hd_video", b"hdvd", 1),
    ("gapless_playback", b"pgap", 1),
    ("compilation", b"cpil", 1),
];
/// The keys this writer adds beyond movenc's: narrator and series items that `mp4tags`
/// otherwise patches in afterwards (see [`crate::mp4tags::extra_items`]).
pub(crate) const NARRATOR_KEY: &str = "aiom4b:narrator";
pub(crate) const SERIES_KEY: &str = "aiom4b:series";
pub(crate) const SERIES_PART_KEY: &str = "aiom4b:series_part";

/// The `ilst` body movenc would write for `metadata` and `cover` (keys matched case-
/// insensitively, the first value of a key wins), followed by the narrator and series items.
pub(crate) fn ilst_body(metadata: &[(String, String)], cover: Option<&Picture>) -> Vec<u8> {
    let get = |k: &str| {
        metadata
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let item = |code: &[u8; 4], type_code: u32, payload: Vec<u8>| {
        encode_item(&NewItem {
            key: ItemKey::Code(*code),
            values: vec![(type_code, payload)],
        })
    };
    let mut body = Vec::new();
    for (k, code) in TEXT_ITEMS {
        if let Some(v) = get(k) {
            body.extend_from_slice(&item(code, 1, v.as_bytes().to_vec()));
        }
    }
    for (k, code, len) in INT_ITEMS {
        if let Some(v) = get(k) {
            let n = leading_int(v);
            let payload = if len == 1 {
                vec![n as u8]
            } else {
                (n as u32).to_be_bytes().to_vec()
            };
            body.extend_from_slice(&item(code, 21, payload));
        }
    }
    if let Some(pic) = cover {
        let type_code = match pic.mime.as_str() {
            "image/png" => 14,
            _ => 13,
        };
        body.extend_from_slice(&item(b"covr", type_code, pic.data.clone()));
    }
    for (k, code) in [("track", b"trkn"), ("disc", b"disk")] {
        let Some(v) = get(k) else { continue };
        let n = leading_int(v);
        if n == 0 {
            continue;
        }
        let of = v.split_once('/').map_or(0, |(_, t)| leading_int(t));
        let mut p = vec![0, 0];
        p.extend_from_slice(&(n as u16).to_be_bytes());
        p.extend_from_slice(&(of as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&item(code, 0, p));
    }
    for it in crate::mp4tags::extra_items(get(NARRATOR_KEY), get(SERIES_KEY), get(SERIES_PART_KEY))
    {
        body.extend_from_slice(&encode_item(&NewItem {
            key: it.key,
            values: vec![(it.type_code, it.payload)],
        }));
    }
    body
}

/// C's `atoi`, as movenc reads numbers: leading digits (after an optional sign), else 0.
fn leading_int(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: i64 = digits.parse().unwrap_or(0);
    if neg {
        -n
    } else {
        n
    }
}

/// The file type box: major brand, minor version 0x200, compatible brands as movenc writes
/// them for the `ipod` muxer.
fn ftyp(brand: Brand) -> Vec<u8> {
    let major: &[u8; 4] = match brand {
        Brand::M4b => b"M4B ",
        Brand::M4a => b"M4A ",
    };
    boxed(
        b"ftyp",
        &[&major[..], &0x200u32.to_be_bytes(), major, b"isom", b"iso2"].concat(),
    )
}

/// Where things are once the header is written.
struct Layout {
    /// Start and length of the reservation (a `free` box until `finish`).
    reserve_at: u64,
    reserve_len: u64,
    /// `stsz` entries this many fit at the end of the reservation; later ones stay in memory.
    scratch_cap: u64,
    /// The 16 bytes before the frames: `free` + `mdat`, or one 64-bit `mdat` header.
    mdat_at: u64,
}

impl Layout {
    fn scratch_at(&self) -> u64 {
        self.reserve_at + self.reserve_len - 4 * self.scratch_cap
    }
}

/// The streaming writer behind [`super::mux::M4bMuxer`] (the default; see there).
pub(crate) struct Mp4Writer {
    path: PathBuf,
    out: BufWriter<File>,
    brand: Brand,
    /// Output samples per second (packet timestamps and chapter marks count these).
    rate: u32,
    /// Expected frames, for sizing the reservation.
    expected_frames: u64,
    /// Room reserved for the chapter track and `chpl`.
    chapter_allowance: u64,
    ilst: Vec<u8>,
    layout: Option<Layout>,
    /// End of the data written so far.
    pos: u64,
    audio: AudioTrack,
    first_dts: Option<i64>,
    last_dts: i64,
    last_duration: i64,
    /// `stsz` entries not yet written to the reservation.
    pending: Vec<u8>,
    /// Entries written to the reservation.
    flushed: u64,
    /// Entries beyond the reservation's capacity (only when the book is far longer than
    /// expected).
    overflow: Vec<u32>,
}

impl Mp4Writer {
    /// Creates (truncates) `path`; the header is written with the first frame, once
    /// [`Mp4Writer::expect_samples`] may have said how long the book is.
    pub fn create(target: MuxTarget<'_>) -> Result<Self> {
        let (path, params) = (target.path, target.params);
        // Read too: the `stsz` entries are read back from the reservation at the end.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(path, "create the output file", e))?;
        let rate = params.sample_rate.max(1);
        Ok(Mp4Writer {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            brand: target.brand,
            rate,
            // Until told otherwise: room for an hour.
            expected_frames: 3600 * rate as u64 / 1024,
            chapter_allowance: CHAPTER_ALLOWANCE,
            ilst: ilst_body(target.metadata, target.cover),
            layout: None,
            pos: 0,
            audio: AudioTrack {
                timescale: params.media_timescale.max(1),
                channels: params.channels,
                asc: params.extradata.clone(),
                bitrate: params.bitrate_bps,
                ..Default::default()
            },
            first_dts: None,
            last_dts: 0,
            last_duration: 0,
            pending: Vec::new(),
            flushed: 0,
            overflow: Vec::new(),
        })
    }

    /// Sizes the reservation for `samples` output samples (plus the encoder's priming) of
    /// `frame_samples` each. Only before the first frame.
    pub fn expect_samples(&mut self, samples: u64, frame_samples: u64, priming: u64) {
        if self.layout.is_none() {
            self.expected_frames = (samples + priming).div_ceil(frame_samples.max(1)) + 1;
        }
    }

    /// Sizes the chapters' share of the reservation for these titles (what the chapter
    /// track and `chpl` will take, built by the same builders). Only before the first frame.
    pub fn expect_chapters(&mut self, titles: &[&str]) {
        if self.layout.is_some() {
            return;
        }
        let n = titles.len() as u64;
        let list: Vec<Chapter> = titles
            .iter()
            .zip(0..)
            .map(|(t, i)| Chapter {
                title: t.to_string(),
                start_samples: i,
            })
            .collect();
        // The worst case of the track's tables: every duration and size different, offsets
        // past 4 GiB.
        let ticks: Vec<u64> = (0..n).map(|i| i * (i + 1)).collect();
        let sizes: Vec<u32> = (0..n as u32).collect();
        let trak = chapter_trak(CHAPTER_ID, &ticks, &sizes, n * n + 1, 1, u64::MAX);
        let tref = 20;
        self.chapter_allowance = trak.len() as u64 + chpl_box(&list, 1).len() as u64 + tref + 512;
    }

    fn to_track(&self, v: i64) -> i64 {
        rescale(v, self.audio.timescale as u64, self.rate as u64)
    }

    fn lay_out(&mut self) -> Result<()> {
        let ftyp = ftyp(self.brand);
        // 5 % more frames than expected (estimates from VBR headers), and 64-bit offsets.
        let cap = self.expected_frames + self.expected_frames / 20 + 256;
        let fixed = FIXED_ALLOWANCE
            + self.ilst.len() as u64
            + self.audio.asc.len() as u64
            + self.chapter_allowance
            + 8 * (cap / CHUNK_FRAMES as u64 + 2);
        let layout = Layout {
            reserve_at: ftyp.len() as u64,
            reserve_len: fixed + 4 * cap,
            scratch_cap: cap,
            mdat_at: ftyp.len() as u64 + fixed + 4 * cap,
        };
        let path = self.path.clone();
        let w = &mut self.out;
        (|| -> std::io::Result<()> {
            w.write_all(&ftyp)?;
            w.write_all(&(layout.reserve_len as u32).to_be_bytes())?;
            w.write_all(b"free")?;
            w.seek(SeekFrom::Start(layout.mdat_at))?;
            // An unfinished file reads as ftyp, free, free, mdat to the end of the file.
            w.write_all(&8u32.to_be_bytes())?;
            w.write_all(b"free")?;
            w.write_all(&0u32.to_be_bytes())?;
            w.write_all(b"mdat")
        })()
        .map_err(|e| io(&path, e))?;
        self.pos = layout.mdat_at + 16;
        self.layout = Some(layout);
        Ok(())
    }

    /// Appends one AAC frame to `mdat`; timestamps in output samples.
    pub fn write(&mut self, p: &EncodedPacket) -> Result<()> {
        if self.layout.is_none() {
            self.lay_out()?;
        }
        let dts = self.to_track(p.pts);
        match self.first_dts {
            None => self.first_dts = Some(dts),
            Some(_) => {
                let d = dts - self.last_dts;
                if !(0..=u32::MAX as i64).contains(&d) {
                    return Err(Error::Internal(format!(
                        "{}: audio packet at {} follows one at {}; packets must be in order",
                        self.path.display(),
                        p.pts,
                        self.last_dts
                    )));
                }
                self.audio.push_duration(d as u32);
            }
        }
        self.last_dts = dts;
        self.last_duration = self.to_track(p.duration).max(0);
        if self.audio.frames % CHUNK_FRAMES as u64 == 0 {
            self.audio.chunk_offsets.push(self.pos);
        }
        self.out.write_all(&p.data).map_err(|e| io(&self.path, e))?;
        self.pos += p.data.len() as u64;
        self.audio.audio_bytes += p.data.len() as u64;
        self.audio.frames += 1;
        self.push_size(p.data.len() as u32)
    }

    fn push_size(&mut self, size: u32) -> Result<()> {
        let cap = self.layout.as_ref().map_or(0, |l| l.scratch_cap);
        if self.flushed + (self.pending.len() / 4) as u64 >= cap {
            self.overflow.push(size);
            return Ok(());
        }
        self.pending.extend_from_slice(&size.to_be_bytes());
        if self.pending.len() >= SIZE_BLOCK {
            self.flush_sizes()?;
        }
        Ok(())
    }

    fn flush_sizes(&mut self) -> Result<()> {
        let Some(l) = &self.layout else { return Ok(()) };
        let at = l.scratch_at() + 4 * self.flushed;
        self.out
            .get_ref()
            .write_all_at(&self.pending, at)
            .map_err(|e| io(&self.path, e))?;
        self.flushed += (self.pending.len() / 4) as u64;
        self.pending.clear();
        Ok(())
    }

    /// Writes the chapter texts, the `moov` and the `mdat` header, and closes the file.
    pub fn finish(mut self, chapters: &[MuxChapter]) -> Result<()> {
        if self.layout.is_none() {
            self.lay_out()?;
        }
        self.flush_sizes()?;
        if self.first_dts.is_some() {
            self.audio
                .push_duration(self.last_duration.min(u32::MAX as i64) as u32);
        }
        self.audio.priming = (-self.first_dts.unwrap_or(0)).max(0) as u64;

        // Chapter texts at the end of mdat, as movenc places them.
        let list: Vec<Chapter> = chapters
            .iter()
            .map(|c| Chapter {
                title: c.title.clone(),
                start_samples: c.start.max(0) as u64,
            })
            .collect();
        let ms = |v: i64| rescale(v.max(0), MOVIE_TIMESCALE as u64, self.rate as u64) as u64;
        let ticks: Vec<u64> = chapters.iter().map(|c| ms(c.start)).collect();
        let total_ticks = chapters
            .last()
            .map_or(0, |c| ms(c.end.max(c.start)))
            .max(ticks.last().copied().unwrap_or(0));
        let (data, sizes) = chapter_samples(&list);
        let layout_chapters = ChapterLayout {
            chapters: list,
            rate: self.rate,
            ticks,
            sizes,
            total_ticks,
            offset: self.pos,
        };
        self.out.write_all(&data).map_err(|e| io(&self.path, e))?;
        self.pos += data.len() as u64;
        self.out.flush().map_err(|e| io(&self.path, e))?;
        let end = self.pos;
        let Some(l) = self.layout.take() else {
            return Err(Error::Internal("mp4 writer: no layout".into()));
        };

        let file = self.out.get_ref();
        let path = &self.path;
        let scratch_at = l.scratch_at();
        let (mut reserve_len, mut mdat_at, mut end) = (l.reserve_len, l.mdat_at, end);
        let mut chapters = layout_chapters;
        let fits = |m: &MoovParts, room: u64| m.len() == room || m.len() + 8 <= room;
        let mut moov = build_moov(&self.audio, Some(&chapters), &self.ilst);
        if !fits(&moov, reserve_len) {
            // Far more frames or chapter text than expected: move the audio once to make room
            // (rare; the index stays in front, where players and `verify` want it).
            tracing::info!(
                path = %path.display(),
                moov_bytes = moov.len(),
                reserved = reserve_len,
                "the index outgrew the space reserved for it; moving the audio to make room"
            );
            while !fits(&moov, reserve_len) {
                let delta = (moov.len() + 8 - reserve_len).next_multiple_of(64 << 10);
                move_within(file, mdat_at, mdat_at + delta, end - mdat_at)
                    .map_err(|e| io(path, e))?;
                for o in &mut self.audio.chunk_offsets {
                    *o += delta;
                }
                chapters.offset += delta;
                (reserve_len, mdat_at, end) = (reserve_len + delta, mdat_at + delta, end + delta);
                moov = build_moov(&self.audio, Some(&chapters), &self.ilst);
            }
        }

        // mdat: 32-bit after an 8-byte free box, or 64-bit over both.
        let mdat_header = if end - mdat_at - 8 <= u32::MAX as u64 {
            let mut h = boxed(b"free", &[]);
            h.extend_from_slice(&((end - mdat_at - 8) as u32).to_be_bytes());
            h.extend_from_slice(b"mdat");
            h
        } else {
            let mut h = 1u32.to_be_bytes().to_vec();
            h.extend_from_slice(b"mdat");
            h.extend_from_slice(&(end - mdat_at).to_be_bytes());
            h
        };
        file.write_all_at(&mdat_header, mdat_at)
            .map_err(|e| io(path, e))?;

        // The stsz entries move from the end of the reservation to their place in the moov,
        // then the rest of the moov is written around them.
        let stored = self.flushed;
        let dest = l.reserve_at + moov.head.len() as u64;
        move_within(file, scratch_at, dest, 4 * stored).map_err(|e| io(path, e))?;
        let over: Vec<u8> = self.overflow.iter().flat_map(|s| s.to_be_bytes()).collect();
        file.write_all_at(&over, dest + 4 * stored)
            .map_err(|e| io(path, e))?;
        file.write_all_at(&moov.head, l.reserve_at)
            .map_err(|e| io(path, e))?;
        file.write_all_at(&moov.tail, dest + moov.hole)
            .map_err(|e| io(path, e))?;
        let rest = reserve_len - moov.len();
        if rest > 0 {
            let mut free = (rest as u32).to_be_bytes().to_vec();
            free.extend_from_slice(b"free");
            file.write_all_at(&free, l.reserve_at + moov.len())
                .map_err(|e| io(path, e))?;
        }
        Ok(())
    }
}

/// Moves `len` bytes of `file` from `src` to `dest` (the ranges may overlap), a block at a time.
fn move_within(file: &File, src: u64, dest: u64, len: u64) -> std::io::Result<()> {
    if src == dest || len == 0 {
        return Ok(());
    }
    let mut buf = vec![0u8; MOVE_BLOCK.min(len as usize)];
    let blocks = len.div_ceil(buf.len() as u64);
    for k in 0..blocks {
        // Forward when moving down, backward when moving up: no block is overwritten before
        // it is read.
        let k = if dest < src { k } else { blocks - 1 - k };
        let at = k * buf.len() as u64;
        let n = (len - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], src + at)?;
        file.write_all_at(&buf[..n], dest + at)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::av::aac::StreamParams;
    use crate::edit::moov::facts;
    use crate::mp4box::{self, BoxRef, ChunkRun};

    fn moov_view(buf: &[u8]) -> BoxRef<'_> {
        crate::edit::moov::view(buf, 0).unwrap()
    }

    /// The audio track's sample table, its chunks checked against a file of `file_len` bytes.
    fn audio_table(m: &BoxRef<'_>, file_len: u64) -> (mp4box::SampleTable, Vec<ChunkRun>) {
        let stbl = m
            .descend(&[b"trak", b"mdia", b"minf", b"stbl"])
            .unwrap()
            .unwrap();
        let (t, _) = mp4box::parse_stbl(&stbl).unwrap();
        let runs = t.chunks(file_len).unwrap();
        (t, runs)
    }

    /// An audio track of `frames` frames of 1024 ticks (the last `last` ticks) whose chunks
    /// start at `base` and hold frames of `size` bytes.
    fn track(frames: u64, last: u32, base: u64, size: u32) -> AudioTrack {
        let mut a = AudioTrack {
            timescale: 44_100,
            channels: 2,
            asc: vec![0x12, 0x10],
            bitrate: 128_000,
            priming: 1024,
            ..Default::default()
        };
        for i in 0..frames {
            if i % CHUNK_FRAMES as u64 == 0 {
                a.chunk_offsets.push(base + i * size as u64);
            }
            a.push_duration(if i + 1 == frames { last } else { 1024 });
            a.frames += 1;
            a.audio_bytes += size as u64;
        }
        a
    }

    fn chapters(starts_ms: &[u64], end_ms: u64, offset: u64) -> ChapterLayout {
        let list: Vec<Chapter> = starts_ms
            .iter()
            .enumerate()
            .map(|(i, &ms)| Chapter {
                title: format!("Chapter {}", i + 1),
                start_samples: ms * 441 / 10,
            })
            .collect();
        let (_, sizes) = chapter_samples(&list);
        ChapterLayout {
            chapters: list,
            rate: 44_100,
            ticks: starts_ms.to_vec(),
            sizes,
            total_ticks: end_ms,
            offset,
        }
    }

    fn version_and_duration(b: &BoxRef<'_>) -> (u8, u64) {
        (b.body[0], mp4box::parse_timescale_duration(b).unwrap().1)
    }

    /// 28 hours at 44.1 kHz: the track's tick count passes 2^32, so `mdhd` must be version 1
    /// (movenc switches at 2^31) and readers must still get the exact length.
    #[test]
    fn a_28_hour_book_gets_a_64_bit_mdhd_and_keeps_its_length() {
        let frames = 28 * 3600 * 44_100 / 1024 + 1;
        let a = track(frames, 700, 1 << 20, 4);
        let want_ticks = (frames - 1) * 1024 + 700;
        assert!(want_ticks > u32::MAX as u64);
        let movie_ms = (want_ticks - 1024) * 1000 / 44_100 + 1;
        let ch = chapters(&[0, 3_600_000], movie_ms, 0);
        let parts = build_moov(&a, Some(&ch), b"");
        let buf = parts.assemble(&vec![4; frames as usize]);
        let m = moov_view(&buf);
        let mdhd = m.descend(&[b"trak", b"mdia", b"mdhd"]).unwrap().unwrap();
        assert_eq!(version_and_duration(&mdhd), (1, want_ticks));
        let f = facts(&m).unwrap();
        assert_eq!(
            f.total_samples,
            want_ticks - 1024,
            "priming hidden by the edit"
        );
        assert_eq!(f.packets, frames);
        assert_eq!((f.movie_timescale, f.movie_duration), (1000, movie_ms));
        let tkhd = m.descend(&[b"trak", b"tkhd"]).unwrap().unwrap();
        assert_eq!(tkhd.body[0], 0, "milliseconds still fit tkhd version 0");
        let elst = m.descend(&[b"trak", b"edts", b"elst"]).unwrap().unwrap();
        let e = mp4box::parse_elst(&elst).unwrap();
        assert_eq!((e[0].segment_duration, e[0].media_time), (movie_ms, 1024));
        assert_eq!(f.chapter_ids, vec![CHAPTER_ID]);
        // Every frame is in a chunk and every chunk where the frames are.
        let (_, runs) = audio_table(&m, u64::MAX);
        assert_eq!(runs.len() as u64, frames.div_ceil(CHUNK_FRAMES as u64));
        assert!(runs
            .iter()
            .all(|r| r.offset == (1 << 20) + 4 * r.first_sample as u64));
    }

    /// Durations past 32 bits in the movie clock (ms; ~50 days) switch mvhd, tkhd and elst to
    /// version 1 as well.
    #[test]
    fn movie_durations_past_32_bits_use_version_1_boxes() {
        let ms = 5_000_000_000u64;
        let b = mvhd(ms, 3);
        let m = mp4box::children(&b, 0).next().unwrap().unwrap();
        assert_eq!(version_and_duration(&m), (1, ms));
        let b = audio_tkhd(ms);
        let t = mp4box::children(&b, 0).next().unwrap().unwrap();
        assert_eq!(t.body[0], 1);
        assert_eq!(mp4box::parse_tkhd_id(&t).unwrap(), AUDIO_ID);
        let b = edts(ms, 2048);
        let e = mp4box::children(&b, 0).next().unwrap().unwrap();
        let e = e.child(b"elst").unwrap().unwrap();
        let list = mp4box::parse_elst(&e).unwrap();
        assert_eq!((list[0].segment_duration, list[0].media_time), (ms, 2048));
    }

    /// Audio beyond 4 GiB: the chunk offsets (and the chapter texts after the audio) need
    /// `co64`; below it `stco` stays.
    #[test]
    fn offsets_past_4_gib_use_co64() {
        for (base, wide) in [(1u64 << 20, false), (5u64 << 30, true)] {
            let frames = 1000;
            let a = track(frames, 1024, base, 400);
            let end = base + frames * 400;
            let ch = chapters(&[0, 10_000], 23_000, end);
            let buf = build_moov(&a, Some(&ch), b"").assemble(&vec![400; frames as usize]);
            let m = moov_view(&buf);
            for trak in m.children().filter_map(|c| c.ok()) {
                if trak.kind != *b"trak" {
                    continue;
                }
                let stbl = trak.descend(&[b"mdia", b"minf", b"stbl"]).unwrap().unwrap();
                let (t, _) = mp4box::parse_stbl(&stbl).unwrap();
                assert_eq!(t.uses_co64, wide, "base {base}");
                assert!(t.chunk_offsets[0] == base || t.chunk_offsets[0] == end);
                t.chunks(u64::MAX).unwrap();
            }
        }
    }

    #[test]
    fn sample_to_chunk_covers_every_frame_count() {
        for frames in [1, 63, 64, 65, 128, 129, 1000] {
            let a = track(frames, 1024, 100, 10);
            let buf = build_moov(&a, None, b"").assemble(&vec![10; frames as usize]);
            let m = moov_view(&buf);
            let (_, runs) = audio_table(&m, u64::MAX);
            let n: usize = runs.iter().map(|r| r.sample_count).sum();
            assert_eq!(n as u64, frames);
            assert!(runs
                .iter()
                .all(|r| r.offset == 100 + 10 * r.first_sample as u64));
            assert!(m.descend(&[b"trak", b"tref"]).unwrap().is_none());
            assert!(m.descend(&[b"udta", b"chpl"]).unwrap().is_none());
        }
    }

    #[test]
    fn items_follow_movencs_order_and_types() {
        let meta: Vec<(String, String)> = [
            ("media_type", "2"),
            ("track", "3/12"),
            ("title", "T"),
            ("aiom4b:narrator", "N"),
            ("artist", "A"),
            ("encoding_tool", "aiom4b"),
            ("unknown", "dropped"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cover = Picture {
            mime: "image/png".into(),
            data: vec![0x89, b'P', b'N', b'G'],
            width: None,
            height: None,
        };
        let body = ilst_body(&meta, Some(&cover));
        let b = boxed(b"ilst", &body);
        let il = mp4box::children(&b, 0).next().unwrap().unwrap();
        let items = mp4box::parse_ilst(&il).unwrap();
        let keys: Vec<String> = items.iter().map(|i| i.key.to_string()).collect();
        assert_eq!(
            keys,
            ["©nam", "©ART", "©too", "stik", "covr", "trkn", "©nrt"]
        );
        assert_eq!(items[3].values[0].type_code, 21);
        assert_eq!(items[3].values[0].payload, [2]);
        assert_eq!(items[4].values[0].type_code, 14, "PNG");
        assert_eq!(items[5].values[0].payload, [0, 0, 0, 3, 0, 12, 0, 0]);
    }

    fn packet(i: u64, pts: i64) -> EncodedPacket {
        // Sizes vary; every byte says which frame it belongs to.
        let len = 100 + (i * 37 % 250) as usize;
        EncodedPacket {
            data: vec![(i % 251) as u8; len],
            pts,
            duration: 1024,
        }
    }

    fn params() -> StreamParams {
        StreamParams {
            sample_rate: 44_100,
            channels: 2,
            bitrate_bps: 128_000,
            frame_samples: 1024,
            priming_samples: 1024,
            extradata: vec![0x12, 0x10],
            media_timescale: 44_100,
        }
    }

    /// Writes `frames` packets after saying to expect `expected` samples (and, if `tell`, the
    /// chapter titles); returns the file.
    fn write_file(
        dir: &Path,
        frames: u64,
        expected: Option<u64>,
        chapters: usize,
        tell: bool,
    ) -> PathBuf {
        let path = dir.join(format!("{frames}-{expected:?}-{chapters}-{tell}.m4b"));
        let meta = vec![("title".to_string(), "Book".to_string())];
        let target = MuxTarget {
            path: &path,
            params: &params(),
            metadata: &meta,
            cover: None,
            brand: Brand::M4b,
        };
        let mut w = Mp4Writer::create(target).unwrap();
        if let Some(e) = expected {
            w.expect_samples(e, 1024, 1024);
        }
        let titles: Vec<String> = (0..chapters)
            .map(|k| format!("{k} {}", "x".repeat(200)))
            .collect();
        if tell {
            w.expect_chapters(&titles.iter().map(String::as_str).collect::<Vec<_>>());
        }
        for i in 0..frames {
            w.write(&packet(i, i as i64 * 1024 - 1024)).unwrap();
        }
        let total = (frames as i64 - 1) * 1024;
        let marks: Vec<MuxChapter> = (0..chapters)
            .map(|k| MuxChapter {
                // Long titles make the index outgrow what was reserved for chapters.
                title: titles[k].clone(),
                start: total * k as i64 / chapters as i64,
                end: total * (k as i64 + 1) / chapters as i64,
            })
            .collect();
        w.finish(&marks).unwrap();
        path
    }

    /// Reads the file back with the box reader: order of the top-level boxes, and every frame's
    /// size and bytes found where the tables say.
    fn check_file(path: &Path, frames: u64) -> Vec<String> {
        let data = std::fs::read(path).unwrap();
        let tops: Vec<BoxRef<'_>> = mp4box::children(&data, 0).map(|b| b.unwrap()).collect();
        let moov = tops.iter().find(|b| b.kind == *b"moov").unwrap();
        let (t, runs) = audio_table(moov, data.len() as u64);
        assert_eq!(t.sizes.len() as u64, frames);
        for r in runs {
            let mut at = r.offset as usize;
            for i in r.first_sample..r.first_sample + r.sample_count {
                let want = packet(i as u64, 0).data;
                assert_eq!(t.sizes[i] as usize, want.len(), "size of frame {i}");
                assert_eq!(&data[at..at + want.len()], &want[..], "bytes of frame {i}");
                at += want.len();
            }
        }
        let f = facts(moov).unwrap();
        assert_eq!(f.total_samples, (frames - 1) * 1024);
        // The chapter texts are where the chapter track says.
        let text = moov
            .children()
            .map(|c| c.unwrap())
            .filter(|c| c.kind == *b"trak")
            .nth(1)
            .unwrap();
        let stbl = text.descend(&[b"mdia", b"minf", b"stbl"]).unwrap().unwrap();
        let (t, _) = mp4box::parse_stbl(&stbl).unwrap();
        let first = t.chunks(data.len() as u64).unwrap()[0];
        let at = first.offset as usize;
        let want = crate::edit::moov::text_sample(&format!("0 {}", "x".repeat(200)));
        assert_eq!(&data[at..at + want.len()], &want[..], "first chapter text");
        tops.iter().map(|b| mp4box::fourcc_str(&b.kind)).collect()
    }

    #[test]
    fn the_index_is_in_front_however_long_the_book_and_its_chapters() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            // As expected: the rest of the reservation is free.
            (3000, 3000, 3),
            // Fewer frames than expected (the entries move further forward).
            (1500, 3000, 3),
            // A few more than the margin: the extra entries come from memory.
            (3500, 3000, 3),
            // Ten times as many: the index no longer fits; the audio moves once.
            (30_000, 3000, 3),
            // Far more chapter text than reserved for: the same.
            (2000, 2000, 3000),
            // Nothing said: room for an hour, and far less written.
            (100, 0, 1),
        ];
        for (frames, expected, chapters) in cases {
            let expected = (expected > 0).then_some(expected * 1024);
            let p = write_file(dir.path(), frames, expected, chapters, false);
            let layout = check_file(&p, frames);
            assert_eq!(
                layout,
                ["ftyp", "moov", "free", "free", "mdat"],
                "{frames} frames"
            );
        }
    }

    /// Chapters told in advance (as `split` does) get just their room: the file is hardly
    /// larger than its boxes, which `split --max-size` counts on.
    #[test]
    fn known_chapters_reserve_just_their_room() {
        let dir = tempfile::tempdir().unwrap();
        for chapters in [1, 300] {
            let p = write_file(dir.path(), 3000, Some(2999 * 1024), chapters, true);
            let layout = check_file(&p, 3000);
            assert_eq!(layout, ["ftyp", "moov", "free", "free", "mdat"]);
            let data = std::fs::read(&p).unwrap();
            let tops: Vec<BoxRef<'_>> = mp4box::children(&data, 0).map(|b| b.unwrap()).collect();
            let free = tops[2].size();
            assert!(free < FIXED_ALLOWANCE + 4096, "{free} bytes free");
        }
    }
}
