//! Adds the iTunes metadata items FFmpeg 5.1's muxer cannot write — narrator and series — to a
//! finished `.m4b`, touching nothing else.
//!
//! FFmpeg 5.1's `movenc` has no mapping for `©nrt` (narrator) or any series item (unknown keys
//! are dropped unless `use_metadata_tags` switches the whole file to QuickTime `mdta` keys, which
//! iTunes-style readers ignore). So the engine muxes first and this module patches `ilst`.
//!
//! **Why not `mp4ameta`.** Its default write rewrites `chpl` as version 0 (VLC then ignores
//! it), stores the chapter count in one byte without capping (301 chapters become 45) and
//! panics slicing a long non-ASCII title at byte 255. With
//! `WriteConfig { write_meta_items: true, ..WriteConfig::NONE }` and a `ReadConfig` that skips
//! both chapter readers it leaves the chapters alone (tried on a 300-chapter FFmpeg file), but it
//! still (a) reads everything after the change — the whole `mdat`, a gigabyte for a long book —
//! into memory and (b) rewrites the file in place, so a crash midway leaves a broken book. The
//! hand-made patch below streams into a temporary file next to the book and renames it over the
//! original: constant memory, and the book is either the old one or the new one.
//!
//! **What is written** (values are UTF-8 text unless noted; empty values are skipped, `None`
//! leaves an existing item untouched; a written item replaces an item with the same key):
//! - narrator → `©nrt` (Apple's narrator item; read by mediainfo (as `nrt`), AtomicParsley,
//!   mp4ameta, tone; FFmpeg 5.1's demuxer does not show it).
//! - series → `©mvn` (movement name: what tone/m4b-tool write for `--series`, shown by Apple
//!   Music) **and** `----:com.apple.iTunes:SERIES` (freeform; ffprobe shows it as tag `SERIES`,
//!   which Audiobookshelf's prober reads as `series` — the mp3tag convention).
//! - series part → `----:com.apple.iTunes:SERIES-PART` (text, so "1.5" or "3-4" survive; ffprobe
//!   shows `SERIES-PART`, Audiobookshelf's `series-part`) and, when it is a plain integer
//!   0..=65535, also `©mvi` (movement number, a 16-bit integer).
//!
//! **How.** Only `moov` changes: `ilst` gets the new items (existing item boxes are copied byte
//! for byte), the sizes of `ilst`, `meta`, `udta` and `moov` grow, and because the file is
//! faststart (`moov` before `mdat`) every chunk offset (`stco`/`co64`, all tracks) that points
//! past `moov` shifts by the same amount. Every other byte of the file is copied unchanged.
use crate::error::{Error, Result};
use crate::mp4box::{self, fourcc_str, BoxRef, FourCC, ItemKey, Malformed, Parse, TopBox};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The largest `moov` this patcher reads into memory (see `verify`'s limit for the reasoning).
const MAX_MOOV_BYTES: u64 = 256 << 20;

/// The `mean` of iTunes freeform items.
const ITUNES_MEAN: &str = "com.apple.iTunes";

/// Data type codes of `data` boxes (QuickTime "well-known types").
const TYPE_UTF8: u32 = 1;
const TYPE_BE_SIGNED: u32 = 21;

/// One item to (re)write: its key, data type and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewItem {
    pub key: ItemKey,
    pub type_code: u32,
    pub payload: Vec<u8>,
}

impl NewItem {
    fn text(key: ItemKey, value: &str) -> Self {
        NewItem {
            key,
            type_code: TYPE_UTF8,
            payload: value.as_bytes().to_vec(),
        }
    }
}

fn freeform(name: &str) -> ItemKey {
    ItemKey::Freeform {
        mean: ITUNES_MEAN.into(),
        name: name.into(),
    }
}

/// The items [`write_extra_items`] writes for the given values (see the module docs).
pub(crate) fn extra_items(
    narrator: Option<&str>,
    series: Option<&str>,
    series_part: Option<&str>,
) -> Vec<NewItem> {
    fn nonempty(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    let mut items = Vec::new();
    if let Some(n) = nonempty(narrator) {
        items.push(NewItem::text(ItemKey::Code(*b"\xa9nrt"), n));
    }
    if let Some(s) = nonempty(series) {
        items.push(NewItem::text(ItemKey::Code(*b"\xa9mvn"), s));
        items.push(NewItem::text(freeform("SERIES"), s));
    }
    if let Some(p) = nonempty(series_part) {
        if let Ok(n) = p.parse::<u16>() {
            items.push(NewItem {
                key: ItemKey::Code(*b"\xa9mvi"),
                type_code: TYPE_BE_SIGNED,
                payload: n.to_be_bytes().to_vec(),
            });
        }
        items.push(NewItem::text(freeform("SERIES-PART"), p));
    }
    items
}

/// Adds narrator (`©nrt`) and series items to an existing `.m4b` without touching chapters,
/// audio or any other box (see the module docs for the items and the method). Does nothing
/// when every value is `None` or empty.
pub fn write_extra_items(
    path: &Path,
    narrator: Option<&str>,
    series: Option<&str>,
    series_part: Option<&str>,
) -> Result<()> {
    let items = extra_items(narrator, series, series_part);
    if items.is_empty() {
        return Ok(());
    }
    write_items(path, &items)
}

/// Replaces or adds `items` in the `ilst` of `path`.
pub(crate) fn write_items(path: &Path, items: &[NewItem]) -> Result<()> {
    let mal = mp4box::malformed(path);
    let mut src = File::open(path).map_err(|e| Error::io(path, "open the M4B to add tags", e))?;
    let meta = src
        .metadata()
        .map_err(|e| Error::io(path, "read the size of the M4B", e))?;
    let file_len = meta.len();
    let read_err = |e| Error::io(path, "read the M4B to add tags", e);
    let tops = mp4box::top_level_boxes(&mut src, file_len)
        .map_err(read_err)?
        .map_err(mal)?;
    if let Some(m) = tops.iter().find(|b| b.kind == *b"moof") {
        return Err(mal(Malformed::new(
            m.offset,
            "fragmented MP4 (moof) cannot be tagged by this patcher",
        )));
    }
    let moovs: Vec<&TopBox> = tops.iter().filter(|b| b.kind == *b"moov").collect();
    let moov_top = match moovs.as_slice() {
        [one] => **one,
        [] => return Err(mal(Malformed::new(0, "no 'moov' box"))),
        _ => {
            return Err(mal(Malformed::new(
                moovs[1].offset,
                "more than one 'moov' box",
            )))
        }
    };
    let moov_buf = mp4box::read_top_box(&mut src, &moov_top, MAX_MOOV_BYTES)
        .map_err(read_err)?
        .map_err(mal)?;
    let new_moov = patch_moov(&moov_buf, &moov_top, items).map_err(mal)?;

    // Write next to the original, then rename over it: the book is never half-written.
    // A sibling temporary of the part file, so whoever owns the part also removes this.
    let tmp = crate::publish::sibling_temp(path, crate::publish::TAGS_SIBLING);
    let result = (|| -> std::io::Result<()> {
        let out = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, out);
        src.seek(SeekFrom::Start(0))?;
        copy_exact(&mut src, &mut w, moov_top.offset)?;
        w.write_all(&new_moov)?;
        src.seek(SeekFrom::Start(moov_top.end()))?;
        copy_exact(&mut src, &mut w, file_len - moov_top.end())?;
        let out = w.into_inner().map_err(|e| e.into_error())?;
        out.set_permissions(meta.permissions())?;
        out.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&tmp, "write the tagged copy of the M4B", e));
    }
    drop(src);
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, "replace the M4B with its tagged copy", e)
    })
}

fn copy_exact(r: &mut impl Read, w: &mut impl Write, n: u64) -> std::io::Result<()> {
    let copied = std::io::copy(&mut r.take(n), w)?;
    if copied != n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the file ended {} bytes early", n - copied),
        ));
    }
    Ok(())
}

/// Builds the new `moov` (whole box, header included) with `items` in its `ilst`.
///
/// Pure function over bytes: `moov_buf` is the old box, `top` where it sits in the file.
pub(crate) fn patch_moov(moov_buf: &[u8], top: &TopBox, items: &[NewItem]) -> Parse<Vec<u8>> {
    let moov = mp4box::as_box_ref(moov_buf, top);
    let base = top.offset;
    // Positions below are relative to moov_buf.
    let rel = |abs: u64| (abs - base) as usize;

    // The chain moov > udta > meta > ilst, as far as it exists.
    let udta = moov.child(b"udta")?;
    let meta = match &udta {
        Some(u) => u.child(b"meta")?,
        None => None,
    };
    let ilst = match &meta {
        Some(m) => {
            let mut found = None;
            for c in mp4box::meta_children(m) {
                let c = c?;
                if c.kind == *b"ilst" {
                    found = Some(c);
                    break;
                }
            }
            found
        }
        None => None,
    };

    // The new ilst body: old items not being replaced (verbatim), then the new ones.
    let mut ilst_body = Vec::new();
    if let Some(il) = &ilst {
        for item in mp4box::parse_ilst(il)? {
            if !items.iter().any(|n| n.key == item.key) {
                let raw = item.raw;
                // Copied verbatim, an item of size 0 would swallow the new items after it.
                refuse_size_zero(moov_buf, base, &raw)?;
                ilst_body.extend_from_slice(&moov_buf[rel(raw.offset)..rel(raw.end())]);
            }
        }
    }
    for n in items {
        ilst_body.extend_from_slice(&encode_item(&n.key, n.type_code, &n.payload));
    }
    let new_ilst = boxed(b"ilst", &ilst_body)?;

    // What to splice where, and which ancestors grow.
    let (start, end, insert, ancestors): (usize, usize, Vec<u8>, Vec<BoxRef<'_>>) =
        match (&udta, &meta, &ilst) {
            (Some(u), Some(m), Some(il)) => {
                (rel(il.offset), rel(il.end()), new_ilst, vec![moov, *u, *m])
            }
            (Some(u), Some(m), None) => {
                let at = children_end(
                    moov_buf,
                    base,
                    m.body_offset() + mp4box::meta_children_start(m.body) as u64,
                    mp4box::meta_children(m),
                )?;
                (rel(at), rel(at), new_ilst, vec![moov, *u, *m])
            }
            (Some(u), None, _) => {
                let at = children_end(moov_buf, base, u.body_offset(), u.children())?;
                (rel(at), rel(at), new_meta(&new_ilst)?, vec![moov, *u])
            }
            (None, _, _) => {
                let at = children_end(moov_buf, base, moov.body_offset(), moov.children())?;
                let udta = boxed(b"udta", &new_meta(&new_ilst)?)?;
                (rel(at), rel(at), udta, vec![moov])
            }
        };
    let delta = insert.len() as i64 - (end - start) as i64;
    let mut out = Vec::with_capacity(moov_buf.len() + insert.len());
    out.extend_from_slice(&moov_buf[..start]);
    out.extend_from_slice(&insert);
    out.extend_from_slice(&moov_buf[end..]);

    // Ancestors all start before the splice point, so their headers did not move.
    for a in &ancestors {
        grow_size(&mut out, rel(a.offset), delta, a)?;
    }

    // Shift the chunk offsets that point past the old moov (faststart: all of them).
    let old_end = top.end();
    let new_top = TopBox {
        size: (top.size as i64 + delta) as u64,
        ..*top
    };
    shift_chunk_offsets(&mut out, &new_top, old_end, delta)?;
    Ok(out)
}

/// A box with a 32-bit header around `body`.
fn boxed(kind: &FourCC, body: &[u8]) -> Parse<Vec<u8>> {
    if body.len() > u32::MAX as usize - 8 {
        return Err(Malformed::new(
            0,
            format!("'{}' would exceed 4 GiB", fourcc_str(kind)),
        ));
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    push_header(&mut out, kind, body.len());
    out.extend_from_slice(body);
    Ok(out)
}

/// An ISO `meta` full box with the iTunes `hdlr` (`mdir`/`appl`) around `ilst`.
fn new_meta(ilst: &[u8]) -> Parse<Vec<u8>> {
    let mut hdlr = vec![0u8; 4]; // version, flags
    hdlr.extend_from_slice(&[0, 0, 0, 0]); // pre_defined
    hdlr.extend_from_slice(b"mdir");
    hdlr.extend_from_slice(b"appl");
    hdlr.extend_from_slice(&[0; 8]); // reserved
    hdlr.push(0); // empty name
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&boxed(b"hdlr", &hdlr)?);
    body.extend_from_slice(ilst);
    boxed(b"meta", &body)
}

/// Where a new child goes: after the last parsed child (before any zero terminator).
fn children_end<'a>(
    moov_buf: &[u8],
    base: u64,
    body_start: u64,
    kids: mp4box::Children<'a>,
) -> Parse<u64> {
    let mut end = body_start;
    for c in kids {
        let c = c?;
        refuse_size_zero(moov_buf, base, &c)?;
        end = c.end();
    }
    Ok(end)
}

/// Refuses a box whose size field is 0 ("to the end of its container", legal only for the last
/// box of a file) where a box will follow it: readers would take the new box for part of it,
/// and the items would be written where no one finds them (found by fuzzing).
fn refuse_size_zero(moov_buf: &[u8], base: u64, b: &BoxRef<'_>) -> Parse<()> {
    let at = (b.offset - base) as usize;
    if moov_buf.get(at..at + 4) == Some(&[0; 4]) {
        return Err(Malformed::new(
            b.offset,
            format!(
                "'{}' claims to extend to the end of its container (size 0); nothing can be \
                 added after it",
                fourcc_str(&b.kind)
            ),
        ));
    }
    Ok(())
}

/// Adds `delta` to the size field of the box whose header is at `at` in `buf`.
fn grow_size(buf: &mut [u8], at: usize, delta: i64, b: &BoxRef<'_>) -> Parse<()> {
    let size32 = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    match size32 {
        // "Extends to the end of the container": still true after growing.
        0 => Ok(()),
        1 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&buf[at + 8..at + 16]);
            let new = u64::from_be_bytes(a) as i64 + delta;
            buf[at + 8..at + 16].copy_from_slice(&(new as u64).to_be_bytes());
            Ok(())
        }
        n => {
            let new = n as i64 + delta;
            if !(8..=u32::MAX as i64).contains(&new) {
                return Err(Malformed::new(
                    b.offset,
                    format!("'{}' would outgrow a 32-bit size", fourcc_str(&b.kind)),
                ));
            }
            buf[at..at + 4].copy_from_slice(&(new as u32).to_be_bytes());
            Ok(())
        }
    }
}

/// Adds `delta` to every `stco`/`co64` entry at or past `old_moov_end` (data after `moov`).
fn shift_chunk_offsets(buf: &mut [u8], top: &TopBox, old_moov_end: u64, delta: i64) -> Parse<()> {
    if delta == 0 {
        return Ok(());
    }
    // Collect the table positions first (immutable walk), then patch.
    let mut tables: Vec<(usize, usize, bool)> = Vec::new(); // (entries start, count, is co64)
    {
        let moov = mp4box::as_box_ref(buf, top);
        for trak in moov.children() {
            let trak = trak?;
            if trak.kind != *b"trak" {
                continue;
            }
            let Some(stbl) = trak.descend(&[b"mdia", b"minf", b"stbl"])? else {
                continue;
            };
            for c in stbl.children() {
                let c = c?;
                let wide = match &c.kind {
                    b"stco" => false,
                    b"co64" => true,
                    _ => continue,
                };
                let mut cur = c.cursor("chunk offset box");
                cur.full_header()?;
                let n = cur.count(if wide { 8 } else { 4 })?;
                tables.push(((cur.offset() - top.offset) as usize, n, wide));
            }
        }
    }
    for (start, n, wide) in tables {
        let w = if wide { 8 } else { 4 };
        for i in 0..n {
            let at = start + i * w;
            let old = if wide {
                let mut a = [0u8; 8];
                a.copy_from_slice(&buf[at..at + 8]);
                u64::from_be_bytes(a)
            } else {
                u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as u64
            };
            if old < old_moov_end {
                continue; // data before moov (not faststart) does not move
            }
            let new = old as i64 + delta;
            if wide {
                buf[at..at + 8].copy_from_slice(&(new as u64).to_be_bytes());
            } else if (0..=u32::MAX as i64).contains(&new) {
                buf[at..at + 4].copy_from_slice(&(new as u32).to_be_bytes());
            } else {
                return Err(Malformed::new(
                    top.offset + at as u64,
                    "a 32-bit chunk offset (stco) would overflow after adding tags; the file is too close to 4 GiB",
                ));
            }
        }
    }
    Ok(())
}

/// Appends a box header for a body of `body_len` bytes (32-bit size; callers keep boxes small).
fn push_header(out: &mut Vec<u8>, kind: &FourCC, body_len: usize) {
    out.extend_from_slice(&((body_len + 8) as u32).to_be_bytes());
    out.extend_from_slice(kind);
}

/// Encodes a `data` box with the given type code and payload (locale 0).
fn encode_data(type_code: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + payload.len());
    push_header(&mut out, b"data", 8 + payload.len());
    out.extend_from_slice(&type_code.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Encodes a whole `ilst` item.
fn encode_item(key: &ItemKey, type_code: u32, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let kind = match key {
        ItemKey::Code(k) => *k,
        ItemKey::Freeform { mean, name } => {
            for (k, s) in [(b"mean", mean), (b"name", name)] {
                push_header(&mut body, k, 4 + s.len());
                body.extend_from_slice(&[0, 0, 0, 0]);
                body.extend_from_slice(s.as_bytes());
            }
            *b"----"
        }
    };
    body.extend_from_slice(&encode_data(type_code, payload));
    let mut out = Vec::with_capacity(body.len() + 8);
    push_header(&mut out, &kind, body.len());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        boxed(kind, body).unwrap()
    }
    fn full(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        bx(kind, &[&[0u8, 0, 0, 0][..], body].concat())
    }
    fn stco(offsets: &[u32]) -> Vec<u8> {
        let mut b = (offsets.len() as u32).to_be_bytes().to_vec();
        for o in offsets {
            b.extend_from_slice(&o.to_be_bytes());
        }
        full(b"stco", &b)
    }
    fn co64(offsets: &[u64]) -> Vec<u8> {
        let mut b = (offsets.len() as u32).to_be_bytes().to_vec();
        for o in offsets {
            b.extend_from_slice(&o.to_be_bytes());
        }
        full(b"co64", &b)
    }
    fn trak(chunk_box: Vec<u8>) -> Vec<u8> {
        bx(
            b"trak",
            &bx(b"mdia", &bx(b"minf", &bx(b"stbl", &chunk_box))),
        )
    }

    /// ftyp + moov(trak(stco) trak(co64) [udta]) + mdat, offsets pointing into mdat.
    fn file(udta: Option<Vec<u8>>) -> (Vec<u8>, TopBox) {
        let ftyp = bx(b"ftyp", b"M4A \0\0\x02\0");
        // Offsets are fixed up after the layout is known.
        let build = |o1: u32, o2: u64| {
            let mut body = [trak(stco(&[o1, o1 + 4])), trak(co64(&[o2]))].concat();
            if let Some(u) = &udta {
                body.extend_from_slice(u);
            }
            bx(b"moov", &body)
        };
        let moov_len = build(0, 0).len();
        let mdat_data = ftyp.len() + moov_len + 8;
        let moov = build(mdat_data as u32, mdat_data as u64 + 8);
        let top = TopBox {
            kind: *b"moov",
            offset: ftyp.len() as u64,
            header_len: 8,
            size: moov.len() as u64,
        };
        let f = [ftyp, moov, bx(b"mdat", b"AAAABBBBCCCC")].concat();
        (f, top)
    }

    fn offsets(moov: &[u8], top: &TopBox) -> Vec<u64> {
        let m = mp4box::as_box_ref(moov, top);
        let mut out = Vec::new();
        for t in m.children() {
            let t = t.unwrap();
            if t.kind != *b"trak" {
                continue;
            }
            let stbl = t.descend(&[b"mdia", b"minf", b"stbl"]).unwrap().unwrap();
            let (table, _) = mp4box::parse_stbl(&stbl).unwrap();
            out.extend(table.chunk_offsets);
        }
        out
    }

    fn items_of(moov: &[u8], top: &TopBox) -> Vec<(String, Vec<u8>)> {
        let m = mp4box::as_box_ref(moov, top);
        let udta = m.child(b"udta").unwrap().unwrap();
        let meta = udta.child(b"meta").unwrap().unwrap();
        let ilst = mp4box::meta_children(&meta)
            .map(|c| c.unwrap())
            .find(|c| c.kind == *b"ilst")
            .unwrap();
        mp4box::parse_ilst(&ilst)
            .unwrap()
            .into_iter()
            .map(|i| (i.key.to_string(), i.values[0].payload.to_vec()))
            .collect()
    }

    fn check_patch(udta: Option<Vec<u8>>) -> Vec<(String, Vec<u8>)> {
        let (f, top) = file(udta);
        let moov = &f[top.offset as usize..(top.offset + top.size) as usize];
        let before = offsets(moov, &top);
        let items = extra_items(Some("Narr Ätor"), Some("Saga"), Some("2"));
        let new = patch_moov(moov, &top, &items).unwrap();
        let delta = new.len() as u64 - moov.len() as u64;
        let new_top = TopBox {
            size: new.len() as u64,
            ..top
        };
        // The whole new moov parses, sizes are consistent, offsets moved by exactly delta.
        let after = offsets(&new, &new_top);
        assert_eq!(after, before.iter().map(|o| o + delta).collect::<Vec<_>>());
        let rebuilt = [
            &f[..top.offset as usize],
            &new[..],
            &f[(top.offset + top.size) as usize..],
        ]
        .concat();
        let mut cur = std::io::Cursor::new(rebuilt.clone());
        let tops = mp4box::top_level_boxes(&mut cur, rebuilt.len() as u64)
            .unwrap()
            .unwrap();
        let mdat = tops.iter().find(|b| b.kind == *b"mdat").unwrap();
        assert_eq!(
            mdat.offset + 8,
            after[0],
            "the first chunk offset points at mdat's data"
        );
        assert_eq!(&rebuilt[after[2] as usize..after[2] as usize + 4], b"CCCC");
        items_of(&new, &new_top)
    }

    #[test]
    fn adds_udta_meta_ilst_when_missing() {
        let items = check_patch(None);
        let keys: Vec<_> = items.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "©nrt",
                "©mvn",
                "----:com.apple.iTunes:SERIES",
                "©mvi",
                "----:com.apple.iTunes:SERIES-PART"
            ]
        );
        assert_eq!(items[0].1, "Narr Ätor".as_bytes());
        assert_eq!(items[3].1, vec![0, 2]);
    }

    #[test]
    fn adds_meta_to_an_existing_udta_before_its_terminator() {
        let chpl = full(b"chpl", &[0, 0, 0, 0, 0]);
        let udta = bx(b"udta", &[chpl, vec![0, 0, 0, 0]].concat());
        check_patch(Some(udta));
    }

    #[test]
    fn replaces_same_key_items_and_keeps_others_verbatim() {
        let old_nrt = encode_item(&ItemKey::Code(*b"\xa9nrt"), 1, b"old narrator, long name");
        let nam = encode_item(&ItemKey::Code(*b"\xa9nam"), 1, b"Title");
        let ilst = bx(b"ilst", &[nam.clone(), old_nrt].concat());
        let meta = full(
            b"meta",
            &[new_meta(&[]).unwrap()[12..45].to_vec(), ilst].concat(),
        );
        let udta = bx(b"udta", &[meta, full(b"chpl", &[1])].concat());
        let items = check_patch(Some(udta));
        assert_eq!(items[0], ("©nam".into(), b"Title".to_vec()));
        assert_eq!(items.iter().filter(|(k, _)| k == "©nrt").count(), 1);
        assert_eq!(items[1], ("©nrt".into(), "Narr Ätor".as_bytes().to_vec()));
    }

    #[test]
    fn shrinking_shifts_offsets_back() {
        let long = "x".repeat(500);
        let old = encode_item(&ItemKey::Code(*b"\xa9nrt"), 1, long.as_bytes());
        let meta = new_meta(&bx(b"ilst", &old)).unwrap();
        let (f, top) = file(Some(bx(b"udta", &meta)));
        let moov = &f[top.offset as usize..(top.offset + top.size) as usize];
        let before = offsets(moov, &top);
        let new = patch_moov(moov, &top, &extra_items(Some("N"), None, None)).unwrap();
        let shrink = moov.len() - new.len();
        assert!(shrink > 400);
        let new_top = TopBox {
            size: new.len() as u64,
            ..top
        };
        let after = offsets(&new, &new_top);
        assert_eq!(
            after,
            before.iter().map(|o| o - shrink as u64).collect::<Vec<_>>()
        );
    }

    #[test]
    fn series_part_that_is_not_a_number_is_text_only() {
        let items = extra_items(None, None, Some("1.5"));
        assert_eq!(items.len(), 1);
        assert_eq!(
            items[0].key.to_string(),
            "----:com.apple.iTunes:SERIES-PART"
        );
        assert!(extra_items(Some("  "), Some(""), None).is_empty());
    }

    #[test]
    fn stco_overflow_is_an_error() {
        let (f, top) = file(None);
        let mut moov = f[top.offset as usize..(top.offset + top.size) as usize].to_vec();
        // Point the first stco entry just below 4 GiB.
        let pos = moov.windows(4).position(|w| w == b"stco").unwrap() + 12;
        moov[pos..pos + 4].copy_from_slice(&(u32::MAX - 2).to_be_bytes());
        let e = patch_moov(&moov, &top, &extra_items(Some("N"), None, None)).unwrap_err();
        assert!(e.reason.contains("overflow"), "{e:?}");
    }

    #[test]
    fn hostile_moov_is_an_error() {
        let (f, top) = file(None);
        let mut moov = f[top.offset as usize..(top.offset + top.size) as usize].to_vec();
        // Make the first trak claim more bytes than moov holds.
        moov[8..12].copy_from_slice(&0xFFFF_u32.to_be_bytes());
        assert!(patch_moov(&moov, &top, &extra_items(Some("N"), None, None)).is_err());
    }

    /// Found by fuzzing: a child of size 0 ("to the end of its container") swallowed the new
    /// `udta` or `meta` appended after it, or the new items after an old item copied verbatim,
    /// so the items were written where no reader finds them.
    #[test]
    fn nothing_is_added_after_a_box_of_size_zero() {
        let free = [&[0u8, 0, 0, 0][..], b"free", b"rest of moov"].concat();
        let data = bx(b"data", b"\0\0\0\x01\0\0\0\0Title");
        let ilst_item = [&[0u8, 0, 0, 0][..], b"\xa9nam", &data].concat();
        let in_ilst = bx(b"udta", &full(b"meta", &bx(b"ilst", &ilst_item)));
        for udta in [None, Some(bx(b"udta", &free)), Some(in_ilst)] {
            let (mut f, top) = file(udta.clone());
            if udta.is_none() {
                // Append the size-0 box as moov's last child.
                let end = (top.offset + top.size) as usize;
                f.splice(end..end, free.iter().copied());
                let size = top.size as u32 + free.len() as u32;
                f[top.offset as usize..top.offset as usize + 4]
                    .copy_from_slice(&size.to_be_bytes());
            }
            let top = TopBox {
                size: u32::from_be_bytes(f[top.offset as usize..][..4].try_into().unwrap()) as u64,
                ..top
            };
            let moov = &f[top.offset as usize..(top.offset + top.size) as usize];
            let e = patch_moov(moov, &top, &extra_items(Some("N"), None, None)).unwrap_err();
            assert!(e.reason.contains("size 0"), "{e:?}");
        }
    }
}
