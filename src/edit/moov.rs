//! Pure byte work for `edit`: reading what an existing `moov` says (audio track, chapter
//! track, items) and building the new `moov`, its `ilst`, its `chpl` and a QuickTime chapter
//! text track. No file I/O here; every function takes and returns bytes.
use crate::mp4box::{self, fourcc_str, BoxRef, FourCC, ItemKey, Malformed, Parse, TopBox};
use std::collections::BTreeSet;

/// The Nero `chpl` list keeps at most this many chapters (its count is one byte; FFmpeg writes
/// at most 255).
pub(crate) const CHPL_MAX: usize = crate::chapters::CHPL_MAX_CHAPTERS;
/// A `chpl` title is a length byte and the text: cut at 255 bytes on a character boundary.
pub(crate) const CHPL_TITLE_MAX: usize = 255;
/// The chapter track's timescale: milliseconds, as FFmpeg's movenc writes it.
pub(crate) const CHAPTER_TIMESCALE: u32 = 1000;

/// What the edit needs to know about the old `moov`.
#[derive(Debug, Clone)]
pub(crate) struct MoovFacts {
    /// Movie timescale and duration (`mvhd`).
    pub movie_timescale: u32,
    pub movie_duration: u64,
    /// Track ID of the (first) sound track.
    pub audio_id: u32,
    /// The rate chapter starts count in: what a full decoder outputs (twice the timescale for
    /// dual-rate HE-AAC).
    pub rate: u32,
    /// Presentation length in samples at `rate` (priming removed, edit applied).
    pub total_samples: u64,
    /// Number of audio packets.
    pub packets: u64,
    /// Track IDs `tref/chap` of the audio track names that are text tracks.
    pub chapter_ids: Vec<u32>,
    /// Every track ID in the file.
    pub track_ids: Vec<u32>,
    /// The raw `stts`, `stsz`, `stsc` of the audio track (must survive byte for byte).
    pub audio_tables: Vec<Vec<u8>>,
}

fn mal(at: u64, r: impl Into<String>) -> Malformed {
    Malformed::new(at, r)
}

fn traks<'a>(moov: &BoxRef<'a>) -> Parse<Vec<BoxRef<'a>>> {
    let mut out = Vec::new();
    for c in moov.children() {
        let c = c?;
        if c.kind == *b"trak" {
            out.push(c);
        }
    }
    Ok(out)
}

fn trak_id(trak: &BoxRef<'_>) -> Parse<u32> {
    let tkhd = trak
        .child(b"tkhd")?
        .ok_or_else(|| mal(trak.offset, "'trak' has no 'tkhd'"))?;
    mp4box::parse_tkhd_id(&tkhd)
}

fn trak_handler(trak: &BoxRef<'_>) -> Parse<FourCC> {
    let hdlr = trak
        .descend(&[b"mdia", b"hdlr"])?
        .ok_or_else(|| mal(trak.offset, "'trak' has no 'mdia/hdlr'"))?;
    mp4box::parse_hdlr(&hdlr)
}

fn chap_refs(trak: &BoxRef<'_>) -> Parse<Vec<u32>> {
    let mut out = Vec::new();
    if let Some(chap) = trak.descend(&[b"tref", b"chap"])? {
        let mut c = chap.cursor("tref/chap box");
        while c.remaining() >= 4 {
            out.push(c.u32()?);
        }
    }
    Ok(out)
}

/// The output rate of an audio track: the AudioSpecificConfig's (SBR doubles it), else the
/// media timescale.
fn audio_rate(stbl: &BoxRef<'_>, timescale: u32) -> u32 {
    let rate = (|| -> Parse<Option<u32>> {
        let (_, entry) = mp4box::parse_stbl(stbl)?;
        let Some(entry) = entry else { return Ok(None) };
        if entry.kind != *b"mp4a" {
            return Ok(None);
        }
        Ok(mp4box::parse_mp4a(&entry)?
            .esds
            .and_then(|e| e.asc)
            .as_deref()
            .and_then(mp4box::parse_asc)
            .and_then(|a| a.output_rate()))
    })();
    match rate {
        Ok(Some(r)) if r > 0 => r,
        _ => timescale,
    }
}

fn rescale(v: u64, num: u64, den: u64) -> u64 {
    if den == 0 {
        return 0;
    }
    ((v as u128 * num as u128 + den as u128 / 2) / den as u128).min(u64::MAX as u128) as u64
}

/// Reads the facts the edit needs from the old `moov`; refuses a file without audio.
pub(crate) fn facts(moov: &BoxRef<'_>) -> Parse<MoovFacts> {
    let mvhd = moov
        .child(b"mvhd")?
        .ok_or_else(|| mal(moov.offset, "'moov' has no 'mvhd'"))?;
    let (movie_timescale, movie_duration) = mp4box::parse_timescale_duration(&mvhd)?;
    if movie_timescale == 0 {
        return Err(mal(mvhd.offset, "the movie timescale (mvhd) is 0"));
    }
    let traks = traks(moov)?;
    let mut track_ids = Vec::new();
    let mut audio = None;
    for t in &traks {
        let id = trak_id(t)?;
        track_ids.push(id);
        if audio.is_none() && trak_handler(t)? == *b"soun" {
            audio = Some((*t, id));
        }
    }
    let Some((a, audio_id)) = audio else {
        return Err(mal(moov.offset, "the file has no audio track"));
    };
    let mdia = a
        .child(b"mdia")?
        .ok_or_else(|| mal(a.offset, "'trak' has no 'mdia'"))?;
    let mdhd = mdia
        .child(b"mdhd")?
        .ok_or_else(|| mal(mdia.offset, "'mdia' has no 'mdhd'"))?;
    let (audio_timescale, _) = mp4box::parse_timescale_duration(&mdhd)?;
    if audio_timescale == 0 {
        return Err(mal(mdhd.offset, "the audio timescale (mdhd) is 0"));
    }
    let stbl = mdia
        .descend(&[b"minf", b"stbl"])?
        .ok_or_else(|| mal(mdia.offset, "the audio track has no sample table"))?;
    let (table, _) = mp4box::parse_stbl(&stbl)?;
    let rate = audio_rate(&stbl, audio_timescale);
    let edits = match a.descend(&[b"edts", b"elst"])? {
        Some(e) => mp4box::parse_elst(&e)?,
        None => Vec::new(),
    };
    let shown = edits.iter().find(|e| e.media_time >= 0);
    let priming = shown.map_or(0, |e| e.media_time as u64);
    let stts = table.total_duration();
    let mut media = stts.saturating_sub(priming);
    if let Some(e) = shown.filter(|e| e.segment_duration > 0) {
        let edit_media = rescale(
            e.segment_duration,
            audio_timescale as u64,
            movie_timescale as u64,
        );
        media = media.min(edit_media.max(1));
    }
    let total_samples = rescale(media, rate as u64, audio_timescale as u64);
    let mut chapter_ids = Vec::new();
    for id in chap_refs(&a)? {
        for t in &traks {
            if trak_id(t)? == id && matches!(&trak_handler(t)?, b"text" | b"sbtl") {
                chapter_ids.push(id);
            }
        }
    }
    let mut audio_tables = Vec::new();
    for k in [b"stts", b"stsz", b"stsc"] {
        let b = stbl.child(k)?.ok_or_else(|| {
            mal(
                stbl.offset,
                format!("the audio track has no '{}'", fourcc_str(k)),
            )
        })?;
        audio_tables.push(raw(&b).to_vec());
    }
    Ok(MoovFacts {
        movie_timescale,
        movie_duration,
        audio_id,
        rate,
        total_samples,
        packets: table.sizes.len() as u64,
        chapter_ids,
        track_ids,
        audio_tables,
    })
}

/// The raw bytes of a box (header included), rebuilt from its parts (header bytes are
/// re-encoded only when the box had a 64-bit size; callers compare these for equality).
pub(crate) fn raw(b: &BoxRef<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.size() as usize);
    push_box(&mut out, &b.kind, b.body);
    out
}

/// Every chunk offset of every track except those in `skip_ids` (tracks being replaced).
pub(crate) fn chunk_offsets(moov: &BoxRef<'_>, skip_ids: &[u32]) -> Parse<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for t in traks(moov)? {
        if skip_ids.contains(&trak_id(&t)?) {
            continue;
        }
        let Some(stbl) = t.descend(&[b"mdia", b"minf", b"stbl"])? else {
            continue;
        };
        let (table, _) = mp4box::parse_stbl(&stbl)?;
        // (offset, bytes) of every chunk, so a whole chunk can be checked against its box.
        match table.chunks(u64::MAX) {
            Ok(chunks) => out.extend(chunks.iter().map(|c| (c.offset, c.bytes))),
            Err(e) => return Err(mal(stbl.offset, e)),
        }
    }
    Ok(out)
}

/// Appends a box with a 32-bit header (64-bit when the body is 4 GiB or more).
pub(crate) fn push_box(out: &mut Vec<u8>, kind: &FourCC, body: &[u8]) {
    let size = body.len() as u64 + 8;
    if size > u32::MAX as u64 {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(&(size + 8).to_be_bytes());
    } else {
        out.extend_from_slice(&(size as u32).to_be_bytes());
        out.extend_from_slice(kind);
    }
    out.extend_from_slice(body);
}

pub(crate) fn boxed(kind: &FourCC, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    push_box(&mut out, kind, body);
    out
}

/// A `free` box of exactly `size` bytes (at least 8).
pub(crate) fn free_box(size: u64) -> Vec<u8> {
    debug_assert!(size >= 8);
    let mut out = Vec::with_capacity(size as usize);
    out.extend_from_slice(&(size as u32).to_be_bytes());
    out.extend_from_slice(b"free");
    out.resize(size as usize, 0);
    out
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------------------------
// Items

/// One `ilst` item to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewItem {
    pub key: ItemKey,
    /// (type code, payload) of each `data` box (several for `covr` with several images).
    pub values: Vec<(u32, Vec<u8>)>,
}

/// Whether two item keys name the same item (freeform names compare case-insensitively, as
/// readers match them).
pub(crate) fn same_key(a: &ItemKey, b: &ItemKey) -> bool {
    match (a, b) {
        (ItemKey::Code(x), ItemKey::Code(y)) => x == y,
        (ItemKey::Freeform { mean: m1, name: n1 }, ItemKey::Freeform { mean: m2, name: n2 }) => {
            m1 == m2 && n1.eq_ignore_ascii_case(n2)
        }
        _ => false,
    }
}

/// Builds the new `ilst` body: old items for which `drop` says yes are removed (the first one
/// of a key gives its place to the new item of the same key, if any), every other old item is
/// copied byte for byte; new items whose key had no old item are appended.
pub(crate) fn edit_ilst(
    old: Option<&BoxRef<'_>>,
    drop: &dyn Fn(&ItemKey) -> bool,
    new: &[NewItem],
) -> Parse<Vec<u8>> {
    let mut body = Vec::new();
    let mut placed: BTreeSet<usize> = BTreeSet::new();
    if let Some(il) = old {
        for item in mp4box::parse_ilst(il)? {
            if drop(&item.key) {
                if let Some(i) = new.iter().position(|n| same_key(&n.key, &item.key)) {
                    if placed.insert(i) {
                        body.extend_from_slice(&encode_item(&new[i]));
                    }
                }
                continue;
            }
            body.extend_from_slice(&raw(&item.raw));
        }
    }
    for (i, n) in new.iter().enumerate() {
        if !placed.contains(&i) {
            body.extend_from_slice(&encode_item(n));
        }
    }
    Ok(body)
}

pub(crate) fn encode_item(item: &NewItem) -> Vec<u8> {
    let mut body = Vec::new();
    let kind = match &item.key {
        ItemKey::Code(k) => *k,
        ItemKey::Freeform { mean, name } => {
            for (k, s) in [(b"mean", mean), (b"name", name)] {
                push_box(&mut body, k, &[&[0u8; 4][..], s.as_bytes()].concat());
            }
            *b"----"
        }
    };
    for (type_code, payload) in &item.values {
        let mut d = Vec::with_capacity(8 + payload.len());
        d.extend_from_slice(&type_code.to_be_bytes());
        d.extend_from_slice(&0u32.to_be_bytes());
        d.extend_from_slice(payload);
        push_box(&mut body, b"data", &d);
    }
    boxed(&kind, &body)
}

// ---------------------------------------------------------------------------------------------
// Chapters

/// One chapter to write: start in samples at the audio rate, title already cut to
/// [`crate::model::MAX_TITLE_BYTES`].
pub(crate) use crate::model::Chapter;

/// The `chpl` box (version 1, as FFmpeg writes it; VLC reads only version 1): at most 255
/// entries, titles cut at 255 bytes, times in 100 ns units.
pub(crate) fn chpl_box(chapters: &[Chapter], rate: u32) -> Vec<u8> {
    let mut body = vec![1, 0, 0, 0, 0, 0, 0, 0];
    let n = chapters.len().min(CHPL_MAX);
    body.push(n as u8);
    for c in &chapters[..n] {
        body.extend_from_slice(&rescale(c.start_samples, 10_000_000, rate as u64).to_be_bytes());
        let t = cut(&c.title, CHPL_TITLE_MAX);
        body.push(t.len() as u8);
        body.extend_from_slice(t.as_bytes());
    }
    boxed(b"chpl", &body)
}

/// The `encd` box FFmpeg appends to every chapter text sample (text encoding 0x100 = UTF-8).
const ENCD: [u8; 12] = [0, 0, 0, 12, b'e', b'n', b'c', b'd', 0, 0, 1, 0];

/// One chapter text sample: 16-bit length, UTF-8 text, `encd` (as FFmpeg writes it).
pub(crate) fn text_sample(title: &str) -> Vec<u8> {
    let t = cut(title, u16::MAX as usize);
    let mut s = Vec::with_capacity(2 + t.len() + ENCD.len());
    s.extend_from_slice(&(t.len() as u16).to_be_bytes());
    s.extend_from_slice(t.as_bytes());
    s.extend_from_slice(&ENCD);
    s
}

/// The chapter starts in track ticks (ms), checked to increase by at least one tick.
pub(crate) fn chapter_ticks(
    chapters: &[Chapter],
    rate: u32,
    total_samples: u64,
) -> Result<Vec<u64>, String> {
    let ticks: Vec<u64> = chapters
        .iter()
        .map(|c| rescale(c.start_samples, CHAPTER_TIMESCALE as u64, rate as u64))
        .collect();
    let end = rescale(total_samples, CHAPTER_TIMESCALE as u64, rate as u64);
    for (i, w) in ticks.windows(2).enumerate() {
        if w[1] <= w[0] {
            return Err(format!(
                "chapters {} and {} start less than 1 ms apart; the chapter track counts in \
                 milliseconds, so move one of them",
                i + 1,
                i + 2
            ));
        }
    }
    if ticks.last().is_some_and(|&l| l >= end) {
        return Err(format!(
            "chapter {} starts at or after the end of the audio",
            ticks.len()
        ));
    }
    Ok(ticks)
}

/// The chapter text samples concatenated (the payload of the chapter `mdat`) and their sizes.
pub(crate) fn chapter_samples(chapters: &[Chapter]) -> (Vec<u8>, Vec<u32>) {
    let mut data = Vec::new();
    let mut sizes = Vec::new();
    for c in chapters {
        let s = text_sample(&c.title);
        sizes.push(s.len() as u32);
        data.extend_from_slice(&s);
    }
    (data, sizes)
}

/// A full box: version, 24-bit flags, then `body`.
pub(crate) fn full(kind: &FourCC, version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + body.len());
    b.extend_from_slice(&((version as u32) << 24 | flags).to_be_bytes());
    b.extend_from_slice(body);
    boxed(kind, &b)
}

/// The unity matrix of `tkhd`.
const MATRIX: [u32; 9] = [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000];

/// A QuickTime chapter text track laid out as FFmpeg 5.1's movenc writes one (`tkhd` flags 2:
/// in the movie but disabled, an edit list covering the movie, `mdhd` timescale 1000, handler
/// `text` "SubtitleHandler", `gmhd` with `gmin` and `text`, a `text` sample entry with the
/// `ftab` font table, one chunk holding all samples at `chunk_offset`).
pub(crate) fn chapter_trak(
    id: u32,
    ticks: &[u64],
    sizes: &[u32],
    total_ticks: u64,
    movie_duration: u64,
    chunk_offset: u64,
) -> Vec<u8> {
    let u32c = |v: u64| v.min(u32::MAX as u64) as u32;
    let mut tkhd = Vec::new();
    tkhd.extend_from_slice(&[0; 8]); // creation, modification
    tkhd.extend_from_slice(&id.to_be_bytes());
    tkhd.extend_from_slice(&[0; 4]);
    tkhd.extend_from_slice(&u32c(movie_duration).to_be_bytes());
    tkhd.extend_from_slice(&[0; 8]); // reserved
    tkhd.extend_from_slice(&[0; 4]); // layer, alternate group
    tkhd.extend_from_slice(&[0; 4]); // volume 0 (not audio), reserved
    for m in MATRIX {
        tkhd.extend_from_slice(&m.to_be_bytes());
    }
    tkhd.extend_from_slice(&[0; 8]); // width, height
    let tkhd = full(b"tkhd", 0, 2, &tkhd);

    let mut elst = 1u32.to_be_bytes().to_vec();
    elst.extend_from_slice(&u32c(movie_duration).to_be_bytes());
    elst.extend_from_slice(&0u32.to_be_bytes()); // media time 0
    elst.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate 1.0
    let edts = boxed(b"edts", &full(b"elst", 0, 0, &elst));

    let mut mdhd = vec![0; 8];
    mdhd.extend_from_slice(&CHAPTER_TIMESCALE.to_be_bytes());
    mdhd.extend_from_slice(&u32c(total_ticks).to_be_bytes());
    mdhd.extend_from_slice(&[0; 4]); // language, quality
    let mdhd = full(b"mdhd", 0, 0, &mdhd);
    let mut hdlr = vec![0; 4];
    hdlr.extend_from_slice(b"text");
    hdlr.extend_from_slice(&[0; 12]);
    hdlr.extend_from_slice(b"SubtitleHandler\0");
    let hdlr = full(b"hdlr", 0, 0, &hdlr);

    // gmhd: gmin (graphics mode 0x40, opcolor 0x8000 ×3) and the `text` media info atom.
    let gmin = full(
        b"gmin",
        0,
        0,
        &[0, 0x40, 0x80, 0, 0x80, 0, 0x80, 0, 0, 0, 0, 0],
    );
    let mut text_info = Vec::new();
    for m in MATRIX {
        text_info.extend_from_slice(&m.to_be_bytes());
    }
    let gmhd = boxed(b"gmhd", &[gmin, boxed(b"text", &text_info)].concat());
    let dinf = dinf_box();

    // The text sample entry body exactly as FFmpeg 5.1 writes it for chapters: reserved, data
    // reference index 1, display flags, justification, colours, text box, font (ID 1), then
    // the `ftab` font table with one font of ID 1 and an empty name.
    const TEXT_ENTRY: [u8; 51] = [
        0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 13, b'f', b't', b'a', b'b', 0, 1, 0, 1, 0,
    ];
    let entry = TEXT_ENTRY.to_vec();
    let stsd = full(
        b"stsd",
        0,
        0,
        &[&1u32.to_be_bytes()[..], &boxed(b"text", &entry)].concat(),
    );

    // Run-length durations and, when every sample has the same size, one size for all: as
    // movenc writes them (mediainfo reads the chapter track's last duration from the runs).
    let n = ticks.len();
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for i in 0..n {
        let next = ticks.get(i + 1).copied().unwrap_or(total_ticks);
        let d = u32c(next.saturating_sub(ticks[i]));
        match runs.last_mut() {
            Some((count, delta)) if *delta == d => *count += 1,
            _ => runs.push((1, d)),
        }
    }
    let mut stts = (runs.len() as u32).to_be_bytes().to_vec();
    for (count, delta) in runs {
        stts.extend_from_slice(&count.to_be_bytes());
        stts.extend_from_slice(&delta.to_be_bytes());
    }
    let stts = full(b"stts", 0, 0, &stts);
    let mut stsc = 1u32.to_be_bytes().to_vec();
    for v in [1, n as u32, 1] {
        stsc.extend_from_slice(&v.to_be_bytes());
    }
    let stsc = full(b"stsc", 0, 0, &stsc);
    let uniform = match sizes {
        [first, rest @ ..] if rest.iter().all(|s| s == first) => *first,
        _ => 0,
    };
    let mut stsz = uniform.to_be_bytes().to_vec();
    stsz.extend_from_slice(&(n as u32).to_be_bytes());
    if uniform == 0 {
        for s in sizes {
            stsz.extend_from_slice(&s.to_be_bytes());
        }
    }
    let stsz = full(b"stsz", 0, 0, &stsz);
    let stco = offsets_box(&[chunk_offset], chunk_offset > u32::MAX as u64);
    let stbl = boxed(b"stbl", &[stsd, stts, stsc, stsz, stco].concat());
    let minf = boxed(b"minf", &[gmhd, dinf, stbl].concat());
    let mdia = boxed(b"mdia", &[mdhd, hdlr, minf].concat());
    boxed(b"trak", &[tkhd, edts, mdia].concat())
}

/// The `dinf` every track carries: one `url ` reference with flag 1 (the data is in this file).
pub(crate) fn dinf_box() -> Vec<u8> {
    let url = full(b"url ", 0, 1, &[]);
    let dref = full(b"dref", 0, 0, &[&1u32.to_be_bytes()[..], &url].concat());
    boxed(b"dinf", &dref)
}

/// An `stco` (or `co64` when `wide`) box.
pub(crate) fn offsets_box(offsets: &[u64], wide: bool) -> Vec<u8> {
    let mut b = (offsets.len() as u32).to_be_bytes().to_vec();
    for &o in offsets {
        if wide {
            b.extend_from_slice(&o.to_be_bytes());
        } else {
            b.extend_from_slice(&(o as u32).to_be_bytes());
        }
    }
    full(if wide { b"co64" } else { b"stco" }, 0, 0, &b)
}

// ---------------------------------------------------------------------------------------------
// The new moov

/// The new chapter track: its samples' layout and where its one chunk will be.
pub(crate) struct ChapterTrack<'c> {
    pub chapters: &'c [Chapter],
    pub ticks: Vec<u64>,
    pub sizes: Vec<u32>,
    pub total_ticks: u64,
    pub chunk_offset: u64,
}

/// What changes in `moov`.
pub(crate) struct MoovChanges<'c> {
    /// The new `ilst` body, or `None` to keep the old `ilst` byte for byte.
    pub ilst: Option<Vec<u8>>,
    /// `Some(track)`: replace the chapters (track and `chpl`); `Some` of an empty list removes
    /// both; `None` keeps them.
    pub chapters: Option<Option<ChapterTrack<'c>>>,
}

/// Builds the new `moov` box. `map` moves every kept chunk offset (identity in place; the new
/// position of its box when the file is rewritten) and fails for one it cannot place.
pub(crate) fn build_moov(
    moov: &BoxRef<'_>,
    facts: &MoovFacts,
    changes: &MoovChanges<'_>,
    map: &dyn Fn(u64) -> Option<u64>,
) -> Parse<Vec<u8>> {
    let chapter_rate = facts.rate;
    let replace_chapters = changes.chapters.is_some();
    let new_track = changes.chapters.as_ref().and_then(|c| c.as_ref());
    // The new chapter track's ID: the old one's when there was one, else the next free ID.
    let new_id = facts
        .chapter_ids
        .first()
        .copied()
        .unwrap_or_else(|| facts.track_ids.iter().copied().max().unwrap_or(0) + 1);
    let mut body = Vec::new();
    let mut wrote_chapter_trak = false;
    let mut saw_udta = false;
    let new_trak = |t: &ChapterTrack<'_>| {
        chapter_trak(
            new_id,
            &t.ticks,
            &t.sizes,
            t.total_ticks,
            facts.movie_duration,
            t.chunk_offset,
        )
    };
    for c in moov.children() {
        let c = c?;
        match &c.kind {
            b"mvhd" if replace_chapters && new_track.is_some() => {
                body.extend_from_slice(&mvhd_next_id(&c, new_id + 1)?);
            }
            b"trak" => {
                let id = trak_id(&c)?;
                if replace_chapters && facts.chapter_ids.contains(&id) {
                    // The old chapter track goes; the new one takes the first one's place.
                    if let (Some(t), false) = (new_track, wrote_chapter_trak) {
                        body.extend_from_slice(&new_trak(t));
                        wrote_chapter_trak = true;
                    }
                    continue;
                }
                let chap = if id == facts.audio_id && replace_chapters {
                    Some((new_track.map(|_| new_id), &facts.chapter_ids[..]))
                } else {
                    None
                };
                body.extend_from_slice(&rebuild_trak(&c, chap, map)?);
                if id == facts.audio_id {
                    if let (Some(t), true) = (new_track, facts.chapter_ids.is_empty()) {
                        // A new chapter track goes right after the audio track, as FFmpeg
                        // orders them.
                        body.extend_from_slice(&new_trak(t));
                        wrote_chapter_trak = true;
                    }
                }
            }
            b"udta" => {
                saw_udta = true;
                body.extend_from_slice(&rebuild_udta(Some(&c), changes, chapter_rate)?);
            }
            _ => body.extend_from_slice(&raw(&c)),
        }
    }
    if !saw_udta {
        let u = rebuild_udta(None, changes, chapter_rate)?;
        if u.len() > 8 {
            body.extend_from_slice(&u);
        }
    }
    Ok(boxed(b"moov", &body))
}

fn mvhd_next_id(mvhd: &BoxRef<'_>, at_least: u32) -> Parse<Vec<u8>> {
    let mut body = mvhd.body.to_vec();
    let at = if body.first() == Some(&1) { 108 } else { 96 };
    let Some(field) = body.get_mut(at..at + 4) else {
        return Err(mal(mvhd.offset, "'mvhd' is too short"));
    };
    let old = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
    if old < at_least {
        field.copy_from_slice(&at_least.to_be_bytes());
    }
    Ok(boxed(b"mvhd", &body))
}

/// Copies a `trak`, remapping its chunk offsets (`stco` becomes `co64` when an offset passes
/// 4 GiB) and, when `chap` is `Some((new, old))`, rewriting its `tref/chap`: the `old` chapter
/// track IDs leave, `new` (if any) comes first, other references (e.g. a track of chapter
/// images) stay. Everything else is copied byte for byte.
fn rebuild_trak(
    trak: &BoxRef<'_>,
    chap: Option<(Option<u32>, &[u32])>,
    map: &dyn Fn(u64) -> Option<u64>,
) -> Parse<Vec<u8>> {
    let mut body = Vec::new();
    let mut tref_done = false;
    for c in trak.children() {
        let c = c?;
        match &c.kind {
            b"tref" if chap.is_some() => {
                tref_done = true;
                let (new, old) = chap.unwrap_or_default();
                let mut ids: Vec<u32> = new.into_iter().collect();
                let mut t = Vec::new();
                for r in c.children() {
                    let r = r?;
                    if r.kind != *b"chap" {
                        t.extend_from_slice(&raw(&r));
                        continue;
                    }
                    let mut cur = r.cursor("tref/chap box");
                    while cur.remaining() >= 4 {
                        let id = cur.u32()?;
                        if !old.contains(&id) && !ids.contains(&id) {
                            ids.push(id);
                        }
                    }
                }
                if !ids.is_empty() {
                    let refs: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
                    push_box(&mut t, b"chap", &refs);
                }
                if !t.is_empty() {
                    push_box(&mut body, b"tref", &t);
                }
            }
            b"mdia" => {
                if let (Some((Some(id), _)), false) = (chap, tref_done) {
                    // FFmpeg puts tref before mdia.
                    push_box(&mut body, b"tref", &boxed(b"chap", &id.to_be_bytes()));
                    tref_done = true;
                }
                body.extend_from_slice(&rebuild_path(&c, &[b"minf", b"stbl"], map)?);
            }
            _ => body.extend_from_slice(&raw(&c)),
        }
    }
    Ok(boxed(b"trak", &body))
}

/// Copies container `b`, descending along `path` to `stbl`, whose `stco`/`co64` are remapped.
fn rebuild_path(
    b: &BoxRef<'_>,
    path: &[&FourCC],
    map: &dyn Fn(u64) -> Option<u64>,
) -> Parse<Vec<u8>> {
    let mut body = Vec::new();
    for c in b.children() {
        let c = c?;
        match (&c.kind, path.first()) {
            (k, Some(p)) if k == *p => body.extend_from_slice(&rebuild_path(&c, &path[1..], map)?),
            (b"stco" | b"co64", None) => {
                let wide_in = c.kind == *b"co64";
                let mut cur = c.cursor("chunk offset box");
                cur.full_header()?;
                let n = cur.count(if wide_in { 8 } else { 4 })?;
                let mut offs = Vec::with_capacity(n);
                for _ in 0..n {
                    let at = cur.offset();
                    let o = if wide_in {
                        cur.u64()?
                    } else {
                        cur.u32()? as u64
                    };
                    let m = map(o).ok_or_else(|| {
                        mal(
                            at,
                            format!("chunk offset {o} points at no data box this edit can place"),
                        )
                    })?;
                    offs.push(m);
                }
                let wide = offs.iter().any(|&o| o > u32::MAX as u64);
                if wide == wide_in && map_is_identity(&c, &offs)? {
                    body.extend_from_slice(&raw(&c));
                } else {
                    body.extend_from_slice(&offsets_box(&offs, wide || wide_in));
                }
            }
            _ => body.extend_from_slice(&raw(&c)),
        }
    }
    Ok(boxed(&b.kind, &body))
}

/// Whether the offsets are unchanged (then the table is copied byte for byte).
fn map_is_identity(c: &BoxRef<'_>, offs: &[u64]) -> Parse<bool> {
    let wide = c.kind == *b"co64";
    let mut cur = c.cursor("chunk offset box");
    cur.full_header()?;
    cur.u32()?;
    for &o in offs {
        let old = if wide { cur.u64()? } else { cur.u32()? as u64 };
        if old != o {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The new `udta`: `meta` with the new `ilst` (or the old one), the new `chpl` (or the old one),
/// every other child byte for byte.
fn rebuild_udta(udta: Option<&BoxRef<'_>>, changes: &MoovChanges<'_>, rate: u32) -> Parse<Vec<u8>> {
    let mut body = Vec::new();
    let mut saw_meta = false;
    let mut saw_chpl = false;
    let new_chpl = changes.chapters.as_ref().map(|c| match c {
        Some(t) if !t.chapters.is_empty() => chpl_box(t.chapters, rate),
        _ => Vec::new(),
    });
    if let Some(u) = udta {
        for c in u.children() {
            let c = c?;
            match &c.kind {
                b"meta" if changes.ilst.is_some() && !saw_meta => {
                    saw_meta = true;
                    body.extend_from_slice(&rebuild_meta(
                        &c,
                        changes.ilst.as_deref().unwrap_or(&[]),
                    )?);
                }
                b"chpl" if new_chpl.is_some() => {
                    if !saw_chpl {
                        body.extend_from_slice(new_chpl.as_deref().unwrap_or(&[]));
                    }
                    saw_chpl = true;
                }
                _ => body.extend_from_slice(&raw(&c)),
            }
        }
    }
    if let (Some(ilst), false) = (&changes.ilst, saw_meta) {
        body.extend_from_slice(&new_meta(ilst));
    }
    if let (Some(chpl), false) = (&new_chpl, saw_chpl) {
        body.extend_from_slice(chpl);
    }
    Ok(boxed(b"udta", &body))
}

fn rebuild_meta(meta: &BoxRef<'_>, ilst_body: &[u8]) -> Parse<Vec<u8>> {
    let start = mp4box::meta_children_start(meta.body);
    let mut body = meta.body[..start].to_vec();
    let mut saw = false;
    for c in mp4box::meta_children(meta) {
        let c = c?;
        if c.kind == *b"ilst" {
            if !saw {
                push_box(&mut body, b"ilst", ilst_body);
            }
            saw = true;
        } else {
            body.extend_from_slice(&raw(&c));
        }
    }
    if !saw {
        push_box(&mut body, b"ilst", ilst_body);
    }
    Ok(boxed(b"meta", &body))
}

/// An ISO `meta` full box with the iTunes `hdlr` (`mdir`/`appl`) around a new `ilst`.
pub(crate) fn new_meta(ilst_body: &[u8]) -> Vec<u8> {
    let mut hdlr = vec![0u8; 4];
    hdlr.extend_from_slice(b"mdir");
    hdlr.extend_from_slice(b"appl");
    hdlr.extend_from_slice(&[0; 8]);
    hdlr.push(0);
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&full(b"hdlr", 0, 0, &hdlr));
    push_box(&mut body, b"ilst", ilst_body);
    boxed(b"meta", &body)
}

/// The `ilst` box of a `moov`, if any.
pub(crate) fn find_ilst<'a>(moov: &BoxRef<'a>) -> Parse<Option<BoxRef<'a>>> {
    let Some(meta) = moov.descend(&[b"udta", b"meta"])? else {
        return Ok(None);
    };
    for c in mp4box::meta_children(&meta) {
        let c = c?;
        if c.kind == *b"ilst" {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Views a whole in-memory `moov` as a box at `offset`.
#[cfg(test)]
pub(crate) fn view(buf: &[u8], offset: u64) -> Parse<BoxRef<'_>> {
    let mut it = mp4box::children(buf, offset);
    match it.next() {
        Some(Ok(b)) if b.kind == *b"moov" && b.size() == buf.len() as u64 => Ok(b),
        Some(Err(e)) => Err(e),
        _ => Err(mal(offset, "the buffer is not one 'moov' box")),
    }
}

/// Whether `top` is a box a later edit may overwrite: `free` or `skip` (QuickTime's `wide`
/// is padding too, but only 8 bytes, kept for a 64-bit `mdat` header).
pub(crate) fn is_free(top: &TopBox) -> bool {
    matches!(&top.kind, b"free" | b"skip")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        boxed(kind, body)
    }

    #[test]
    fn chpl_is_version_1_capped_at_255_with_cut_titles() {
        let long = "ä".repeat(200); // 400 bytes
        let chapters: Vec<Chapter> = (0..300)
            .map(|i| Chapter {
                title: if i == 0 {
                    long.clone()
                } else {
                    format!("C{i}")
                },
                start_samples: i * 44_100,
            })
            .collect();
        let b = chpl_box(&chapters, 44_100);
        let parsed = mp4box::children(&b, 0).next().unwrap().unwrap();
        let mut c = parsed.cursor("chpl");
        assert_eq!(c.full_header().unwrap().0, 1);
        c.u32().unwrap();
        assert_eq!(c.u8().unwrap(), 255);
        assert_eq!(c.u64().unwrap(), 0);
        let len = c.u8().unwrap() as usize;
        assert_eq!(len, 254, "255 bytes would split an ä");
        assert!(std::str::from_utf8(c.bytes(len).unwrap()).is_ok());
        assert_eq!(c.u64().unwrap(), 10_000_000, "one second in 100 ns units");
    }

    #[test]
    fn text_sample_matches_ffmpeg() {
        // Bytes of FFmpeg 5.1's chapter sample "One" (ffmpeg -i x.wav -i meta.txt out.m4b).
        let ffmpeg = hex("00034f6e650000000c656e636400000100");
        assert_eq!(text_sample("One"), ffmpeg);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The chapter trak FFmpeg 5.1 wrote for two chapters (0 ms "One", 2000 ms "Twö", 5 s of
    /// audio, track ID 2, samples at offset 44) — ours must be the same bytes.
    #[test]
    fn chapter_trak_is_ffmpegs_layout() {
        let ffmpeg = hex(concat!(
            "000002177472616b0000005c746b6864000000020000000000000000000000020000000000001388",
            "000000000000000000000000000000000001000000000000000000000000000000010000000000000000",
            "000000000000400000000000000000000000000000246564747300",
            "00001c656c737400000000000000010000138800000000000100000000018f6d646961000000206d6468",
            "64000000000000000000000000000003e800001388000000000000003068646c72000000000000000074",
            "6578740000000000000000000000005375627469746c6548616e646c657200000001376d696e66000000",
            "4c676d686400000018676d696e000000000040800080008000000000000000002c746578740001000000",
            "000000000000000000000000010000000000000000000000000000400000000000002464696e66000000",
            "1c6472656600000000000000010000000c75726c2000000001000000bf7374626c0000004b7374736400",
            "000000000000010000003b7465787400000000000000010000000100000000000000000000000000000000",
            "000000010000000000000000000d6674616200010001000000002073747473000000000000000200000001",
            "000007d00000000100000bb80000001c7374736300000000000000010000000100000002000000010000",
            "001c7374737a0000000000000000000000020000001100000012000000147374636f0000000000000001",
            "0000002c"
        ));
        let ours = chapter_trak(2, &[0, 2000], &[17, 18], 5000, 5000, 44);
        assert_eq!(ours.len(), ffmpeg.len());
        assert_eq!(ours, ffmpeg);
    }

    #[test]
    fn chapter_ticks_must_increase_by_a_millisecond() {
        let ch = |s: u64| Chapter {
            title: "x".into(),
            start_samples: s,
        };
        assert_eq!(
            chapter_ticks(&[ch(0), ch(44_100)], 44_100, 88_200).unwrap(),
            vec![0, 1000]
        );
        assert!(chapter_ticks(&[ch(0), ch(10)], 44_100, 88_200).is_err());
        assert!(chapter_ticks(&[ch(0), ch(88_200)], 44_100, 88_200).is_err());
    }

    #[test]
    fn ilst_edit_replaces_in_place_and_keeps_others_verbatim() {
        let item = |k: &[u8; 4], v: &str| NewItem {
            key: ItemKey::Code(*k),
            values: vec![(1, v.as_bytes().to_vec())],
        };
        let old = [
            encode_item(&item(b"\xa9nam", "Old")),
            // An item with odd bytes (locale 7) must survive byte for byte.
            bx(b"\xa9gen", &bx(b"data", b"\0\0\0\x01\0\0\0\x07Horror")),
            encode_item(&item(b"\xa9nam", "Duplicate")),
        ]
        .concat();
        let ilst = bx(b"ilst", &old);
        let il = mp4box::children(&ilst, 0).next().unwrap().unwrap();
        let key = ItemKey::Code(*b"\xa9nam");
        let new = vec![item(b"\xa9nam", "New"), item(b"\xa9nrt", "Reader")];
        let nrt = ItemKey::Code(*b"\xa9nrt");
        let body = edit_ilst(Some(&il), &|k| *k == key || *k == nrt, &new).unwrap();
        let out = bx(b"ilst", &body);
        let il = mp4box::children(&out, 0).next().unwrap().unwrap();
        let items = mp4box::parse_ilst(&il).unwrap();
        let keys: Vec<String> = items.iter().map(|i| i.key.to_string()).collect();
        assert_eq!(keys, ["©nam", "©gen", "©nrt"]);
        assert_eq!(items[0].values[0].payload, b"New");
        assert_eq!(
            raw(&items[1].raw),
            bx(b"\xa9gen", &bx(b"data", b"\0\0\0\x01\0\0\0\x07Horror"))
        );
    }

    /// A minimal movie: mvhd, audio trak (stco into mdat), udta; then the new moov with a
    /// chapter track added, offsets remapped by +100 and a new ilst.
    #[test]
    fn build_moov_adds_a_chapter_track_and_remaps_offsets() {
        let mut mvhd = vec![0u8; 100];
        mvhd[12..16].copy_from_slice(&1000u32.to_be_bytes());
        mvhd[16..20].copy_from_slice(&5000u32.to_be_bytes());
        mvhd[96..100].copy_from_slice(&2u32.to_be_bytes());
        let mut tkhd = vec![0u8; 84];
        tkhd[12..16].copy_from_slice(&1u32.to_be_bytes());
        let mut mdhd = vec![0u8; 24];
        mdhd[12..16].copy_from_slice(&44_100u32.to_be_bytes());
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(b"soun");
        hdlr.extend_from_slice(&[0; 13]);
        let stts = full(b"stts", 0, 0, &[0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 4, 0]);
        let stsz = full(b"stsz", 0, 0, &[0, 0, 0, 10, 0, 0, 0, 5]);
        let stsc = full(
            b"stsc",
            0,
            0,
            &[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 1],
        );
        let stbl = bx(
            b"stbl",
            &[stts.clone(), stsz, stsc, offsets_box(&[1000], false)].concat(),
        );
        let trak = bx(
            b"trak",
            &[
                bx(b"tkhd", &tkhd),
                bx(
                    b"mdia",
                    &[bx(b"mdhd", &mdhd), bx(b"hdlr", &hdlr), bx(b"minf", &stbl)].concat(),
                ),
            ]
            .concat(),
        );
        let moov = bx(b"moov", &[bx(b"mvhd", &mvhd), trak].concat());
        let m = view(&moov, 0).unwrap();
        let facts = facts(&m).unwrap();
        assert_eq!((facts.audio_id, facts.rate, facts.packets), (1, 44_100, 5));
        assert_eq!(facts.total_samples, 5 * 1024);
        let chapters = vec![
            Chapter {
                title: "A".into(),
                start_samples: 0,
            },
            Chapter {
                title: "B".into(),
                start_samples: 2048,
            },
        ];
        let ticks = chapter_ticks(&chapters, 44_100, facts.total_samples).unwrap();
        let (_, sizes) = chapter_samples(&chapters);
        let changes = MoovChanges {
            ilst: Some(encode_item(&NewItem {
                key: ItemKey::Code(*b"\xa9nam"),
                values: vec![(1, b"T".to_vec())],
            })),
            chapters: Some(Some(ChapterTrack {
                chapters: &chapters,
                ticks,
                sizes,
                total_ticks: 116,
                chunk_offset: 7,
            })),
        };
        let new = build_moov(&m, &facts, &changes, &|o| Some(o + 100)).unwrap();
        let n = view(&new, 0).unwrap();
        let f2 = super::facts(&n).unwrap();
        assert_eq!(f2.chapter_ids, vec![2]);
        assert_eq!(
            f2.audio_tables, facts.audio_tables,
            "stts/stsz/stsc unchanged"
        );
        let offs = chunk_offsets(&n, &[]).unwrap();
        assert_eq!(offs, vec![(1100, 50), (7, 30)]);
        // next_track_ID moved past the new track.
        let mvhd = n.child(b"mvhd").unwrap().unwrap();
        assert_eq!(&mvhd.body[96..100], &3u32.to_be_bytes());
        assert!(find_ilst(&n).unwrap().is_some());
        assert!(n.descend(&[b"udta", b"chpl"]).unwrap().is_some());
        // Removing the chapters again drops track, tref and chpl.
        let none = MoovChanges {
            ilst: None,
            chapters: Some(None),
        };
        let back = build_moov(&n, &f2, &none, &|o| Some(o)).unwrap();
        let b = view(&back, 0).unwrap();
        let f3 = super::facts(&b).unwrap();
        assert!(f3.chapter_ids.is_empty() && f3.track_ids == vec![1]);
        assert!(b.descend(&[b"udta", b"chpl"]).unwrap().is_none());
        assert!(b.descend(&[b"trak", b"tref"]).unwrap().is_none());
        // An offset the map cannot place is an error, not a silent copy.
        assert!(build_moov(&m, &facts, &none, &|_| None).is_err());
    }

    #[test]
    fn replacing_chapters_keeps_other_chapter_references() {
        let stbl = bx(b"stbl", &offsets_box(&[10], false));
        let mdia = bx(b"mdia", &bx(b"minf", &stbl));
        let refs: Vec<u8> = [2u32, 9].iter().flat_map(|i| i.to_be_bytes()).collect();
        let trak = bx(
            b"trak",
            &[
                bx(b"tkhd", &[0; 84]),
                bx(b"tref", &bx(b"chap", &refs)),
                mdia,
            ]
            .concat(),
        );
        let t = mp4box::children(&trak, 0).next().unwrap().unwrap();
        let out = rebuild_trak(&t, Some((Some(5), &[2])), &|o| Some(o)).unwrap();
        let t = mp4box::children(&out, 0).next().unwrap().unwrap();
        assert_eq!(chap_refs(&t).unwrap(), vec![5, 9]);
        let out = rebuild_trak(&t, Some((None, &[5])), &|o| Some(o)).unwrap();
        let t = mp4box::children(&out, 0).next().unwrap().unwrap();
        assert_eq!(chap_refs(&t).unwrap(), vec![9]);
        // Untouched (`None`): byte for byte.
        assert_eq!(rebuild_trak(&t, None, &|o| Some(o)).unwrap(), out);
    }

    #[test]
    fn stco_becomes_co64_past_4_gib() {
        let stbl = bx(b"stbl", &offsets_box(&[10, 20], false));
        let minf = bx(b"minf", &stbl);
        let b = mp4box::children(&minf, 0).next().unwrap().unwrap();
        let out = rebuild_path(&b, &[b"stbl"], &|o| Some(o + (5 << 30))).unwrap();
        let b = mp4box::children(&out, 0).next().unwrap().unwrap();
        let stbl = b.child(b"stbl").unwrap().unwrap();
        let (t, _) = mp4box::parse_stbl(&stbl).unwrap();
        assert!(t.uses_co64);
        assert_eq!(t.chunk_offsets, vec![10 + (5 << 30), 20 + (5 << 30)]);
    }
}
