//! `aiom4b edit`: change the tags, the cover and the chapters of a finished M4B/M4A without
//! re-encoding — atomically, and verified like a conversion.
//!
//! Works on any M4B/M4A with one `moov` and an audio track, not only aiom4b's. Only `moov`
//! changes, plus a small `mdat` of its own for chapter text samples; the audio's sample data
//! and its `stts`/`stsz`/`stsc` stay byte for byte (only chunk offsets move when data moves).
//!
//! # What is written
//!
//! Tags ([`TagEdits`], each a [`FieldEdit`]: keep, set or clear) map to the items `convert`
//! writes (`convert::mux_metadata` and `mp4tags::extra_items`):
//!
//! | field | items |
//! |---|---|
//! | title | `©nam`; also `©alb` when the album equalled the old title or was absent |
//! | author | `©ART` and `aART` |
//! | narrator | `©nrt` and `©wrt` (composer: what Audiobookshelf reads) |
//! | series | `©mvn` and `----:com.apple.iTunes:SERIES` (and `tvsh` if the file has one) |
//! | series part | `----:com.apple.iTunes:SERIES-PART`, and `©mvi` when a whole number 0–65535 |
//! | genre | `©gen` (a numeric `gnre` is removed) |
//! | year | `©day` |
//! | description | `desc` and `ldes` |
//! | comment | `©cmt` |
//! | publisher | `©pub` and `----:com.apple.iTunes:PUBLISHER` (FFmpeg, so ffprobe-based readers such as Audiobookshelf, shows only the second) |
//! | grouping | `©grp` (`aiom4b tag` writes the series and part there, as players group by it) |
//! | ASIN | `----:com.apple.iTunes:ASIN` |
//! | cover | `covr` (JPEG data type 13, PNG 14) |
//!
//! Clearing removes every item of the field; setting replaces them (in the place of the first
//! one). A value that is empty after trimming clears. Items not touched are copied byte for
//! byte. Values are cut on a character boundary at [`crate::MAX_TITLE_BYTES`] (description and
//! comment at [`crate::MAX_LONG_TEXT_BYTES`]), with a warning.
//!
//! Chapters ([`ChapterEdit`]) are written in both formats, consistently: a QuickTime chapter
//! text track (all chapters; referenced by the audio track's `tref/chap`; built byte for byte
//! the way FFmpeg 5.1's movenc builds one, so ffprobe, mediainfo, AtomicParsley and Apple's
//! players read it) and the Nero list `moov/udta/chpl` (version 1, the first 255 chapters,
//! titles cut at 255 bytes). The chapter track replaces the old one (keeping its ID) or is
//! added after the audio track (with `tref/chap` and a larger `mvhd` next track ID). Its
//! samples (16-bit length, UTF-8 title, FFmpeg's `encd` box) live in a small `mdat` of their
//! own; the old samples become unreferenced bytes.
//!
//! # How it writes
//!
//! **In place, when the new boxes fit** beside the old `moov`: in a `free`/`skip` box right
//! after it, in one right before it, or at the end of the file when `moov` is the last box.
//! The new `moov`, a `free` gap and the chapter `mdat` (in that order, so that the gap stays
//! next to `moov` for the next edit) are first written *inside* that free region — the file
//! is unchanged for every reader, since the region is still one `free` box (at the end of the
//! file, the region is first appended as an 8-byte `free` header of size 0, "to the end of the
//! file") — and flushed (`fsync`), then read back and compared. Then ONE header write flips the
//! file to the new `moov`:
//!
//! - region after `moov` (or the end of the file): the old `moov`'s 8-byte header becomes
//!   `free` with size old + 8, so it swallows the region's header and the next box is the new
//!   `moov`;
//! - region before `moov`: after the staged boxes a `free` header spanning up to the old
//!   `moov`'s end was written too; the region's header becomes an 8-byte `free`, so the next
//!   box is the new `moov` and the old one lies inside that trailing `free`.
//!
//! The flip is flushed again. Every state a crash can leave is a valid file with exactly one
//! `moov`: before the flip the old book (plus unused bytes in a `free` box), after it the new
//! one. The flip is done only when its 8 bytes lie in one 512-byte disk sector (sector writes
//! are atomic; an 8-byte write across two could tear); else the file is rewritten.
//!
//! **Otherwise the whole file is rewritten** to a hidden part file beside it
//! (`crate::publish`: `.{name}.{pid}.part`, stale parts of killed edits removed first, the part
//! removed on any failure), in the layout `ftyp, moov, free (padding), mdat (chapter samples),
//! then every other original box byte for byte` (the audio `mdat` …), streamed with constant
//! memory, chunk offsets remapped (`stco` becomes `co64` if an offset passes 4 GiB). `moov`
//! comes first (faststart kept, or made for a file whose `moov` was at the end). Unreferenced
//! `free`/`skip`/`wide` boxes and `mdat`s no track points into (old chapter samples) are left
//! out. The padding is `max(16 KiB, moov / 10)`: 16 KiB holds a new set of tags or a few
//! hundred chapter titles, 10 % of a long book's `moov` (its sample tables) covers a
//! proportionally larger edit, and both are small next to the audio. The padding sits
//! *between* `moov` and the chapter `mdat` so that it is the "region after `moov`" of the
//! next edit, which then happens in place. The part gets the original's permissions, is
//! flushed, verified and renamed over the original (readers see the old or the new file;
//! like any save-by-rename it gives the file a new inode owned by the editing user: hard links
//! keep the old book).
//!
//! # Verification
//!
//! After writing, the result is read back by the independent reader (`verify::summarize`:
//! box walker and Symphonia, which decodes every packet) and checked: the audio track's
//! packet count and its `stts`/`stsz`/`stsc` bytes are unchanged; for a rewrite every audio
//! chunk is compared byte for byte with the original's; the chapter track and `chpl` hold the
//! requested chapters (starts within [`crate::verify::DEFAULT_TOLERANCE_SAMPLES`]); every
//! edited tag and the cover read back as asked. A failed rewrite removes the part and leaves
//! the original. In place, the staged bytes are re-read and compared before the flip, and a
//! check that fails after the flip flips back (the old `moov` is still intact inside the
//! `free` box that swallowed it; for the end-of-file case the file is truncated back to its
//! old length). Problems the file had before the edit (the reader's inconsistencies, packets
//! the decoder rejects) are reported as warnings, not failures: the audio bytes are proven
//! unchanged, so the edit cannot have caused them.
//!
//! **Refused** with an error naming the file: fragmented MP4 (`moof`), no audio track, several
//! `moov`s, a symbolic link or anything but a regular file, a read-only file.
pub(crate) mod moov;
mod write;

use crate::error::{Error, Result};
use crate::model::{Chapter, Picture, MAX_LONG_TEXT_BYTES, MAX_TITLE_BYTES};
use crate::mp4box::ItemKey;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub use write::read_chapters;

/// What to do with one tag field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FieldEdit {
    /// Leave the field's items as they are (byte for byte).
    #[default]
    Keep,
    /// Write this value (an empty or blank value clears).
    Set(String),
    /// Remove every item of the field.
    Clear,
}

impl FieldEdit {
    /// `Keep` for `None`, `Clear` for an empty or blank value, else `Set`.
    pub fn from_option(v: Option<&str>) -> FieldEdit {
        match v {
            None => FieldEdit::Keep,
            Some(s) if s.trim().is_empty() => FieldEdit::Clear,
            Some(s) => FieldEdit::Set(s.to_string()),
        }
    }
    fn value(&self) -> Option<Option<&str>> {
        match self {
            FieldEdit::Keep => None,
            FieldEdit::Set(s) if !s.trim().is_empty() => Some(Some(s.trim())),
            _ => Some(None),
        }
    }
    fn is_keep(&self) -> bool {
        matches!(self, FieldEdit::Keep)
    }
}

/// The tag fields an edit may set or clear (see the module docs for the items of each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagEdits {
    /// `©nam` (and `©alb` when it equalled the title).
    pub title: FieldEdit,
    /// `©ART` and `aART`.
    pub author: FieldEdit,
    /// `©nrt` and `©wrt`.
    pub narrator: FieldEdit,
    /// `©mvn`, freeform `SERIES` (and `tvsh` when present).
    pub series: FieldEdit,
    /// Freeform `SERIES-PART` and `©mvi`.
    pub series_part: FieldEdit,
    /// `©gen`.
    pub genre: FieldEdit,
    /// `©day`.
    pub year: FieldEdit,
    /// `desc` and `ldes`.
    pub description: FieldEdit,
    /// `©cmt`.
    pub comment: FieldEdit,
    /// `©pub` and freeform `PUBLISHER`.
    pub publisher: FieldEdit,
    /// `©grp`.
    pub grouping: FieldEdit,
    /// Freeform `----:com.apple.iTunes:ASIN` (Audible's product id).
    pub asin: FieldEdit,
}

/// What to do with the cover (`covr`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CoverEdit {
    /// Leave it.
    #[default]
    Keep,
    /// Replace it (JPEG or PNG; checked like `convert`'s cover).
    Set(Picture),
    /// Remove it.
    Remove,
}

/// What to do with the chapters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ChapterEdit {
    /// Leave the chapter track and `chpl` byte for byte.
    #[default]
    Keep,
    /// Replace them (starts in samples at the audio rate, as [`read_chapters`] returns it;
    /// an empty list removes the chapters). A first chapter after 0 is moved to 0.
    Replace(Vec<Chapter>),
    /// Rename chapters: (1-based number, new title); several at once.
    Rename(Vec<(usize, String)>),
    /// Move every mark by this many samples at the audio rate. Marks pushed before 0 are
    /// clamped to 0 (only the last of those is kept), marks pushed to or past the end are
    /// dropped, and the first chapter stays at 0; the report's warnings say so.
    ShiftSamples(i64),
}

/// Everything one edit changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BookEdit {
    /// Tag fields.
    pub tags: TagEdits,
    /// The cover.
    pub cover: CoverEdit,
    /// The chapters.
    pub chapters: ChapterEdit,
}

impl BookEdit {
    /// True when the edit changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == BookEdit::default()
    }
}

/// What an edit did (or, for [`preview_edit`], would do).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EditReport {
    /// The edited file.
    pub path: PathBuf,
    /// `true`: `moov` was replaced in place with one header write; `false`: the file was
    /// rewritten and renamed over the original.
    pub in_place: bool,
    /// Bytes written to the file (in place) or the size of the rewritten file.
    pub bytes_written: u64,
    /// One line per change, e.g. `title: "Old" → "New"`.
    pub changes: Vec<String>,
    /// The chapters after the edit (starts in samples at `sample_rate`).
    pub chapters: Vec<Chapter>,
    /// The audio rate chapter starts count in.
    pub sample_rate: u32,
    /// Soft problems: shortened values, dropped chapter marks, problems the file had before.
    pub warnings: Vec<String>,
    /// The independent reader's summary of the result (`None` for a preview).
    pub summary: Option<crate::verify::M4bSummary>,
}

/// Edits `path` (see the module docs): in place when the new boxes fit, else by rewriting it;
/// verified either way.
pub fn edit_book(path: &Path, edit: &BookEdit) -> Result<EditReport> {
    write::edit(path, edit, false)
}

/// What [`edit_book`] would change, without writing anything (`in_place` says which way it
/// would write).
pub fn preview_edit(path: &Path, edit: &BookEdit) -> Result<EditReport> {
    write::edit(path, edit, true)
}

/// The tag values of a file as the edit sees them (for reports).
#[derive(Debug, Clone, Default)]
pub(crate) struct OldTags {
    pub values: Vec<(ItemKey, String)>,
}

impl OldTags {
    fn get(&self, code: &[u8; 4]) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == ItemKey::Code(*code))
            .map(|(_, v)| v.as_str())
    }
}

fn code(k: &[u8; 4]) -> ItemKey {
    ItemKey::Code(*k)
}

fn freeform(name: &str) -> ItemKey {
    ItemKey::Freeform {
        mean: "com.apple.iTunes".into(),
        name: name.into(),
    }
}

const TYPE_UTF8: u32 = 1;
const TYPE_JPEG: u32 = 13;
const TYPE_PNG: u32 = 14;
const TYPE_BE_SIGNED: u32 = 21;

fn text_item(key: ItemKey, v: &str) -> moov::NewItem {
    moov::NewItem {
        key,
        values: vec![(TYPE_UTF8, v.as_bytes().to_vec())],
    }
}

/// The item changes of an edit: which old items go, which new ones come, and a line per
/// change for the report.
pub(crate) struct ItemPlan {
    pub drop: Vec<ItemKey>,
    pub new: Vec<moov::NewItem>,
    pub changes: Vec<String>,
    pub warnings: Vec<String>,
}

fn describe(v: Option<&str>) -> String {
    match v {
        Some(s) if s.chars().count() > 60 => {
            format!("\"{}…\"", s.chars().take(60).collect::<String>())
        }
        Some(s) => format!("\"{s}\""),
        None => "(none)".into(),
    }
}

/// Plans the `ilst` changes of `tags` and `cover` against the old items.
pub(crate) fn plan_items(
    tags: &TagEdits,
    cover: &CoverEdit,
    old: &OldTags,
    has_tvsh: bool,
) -> ItemPlan {
    let mut p = ItemPlan {
        drop: Vec::new(),
        new: Vec::new(),
        changes: Vec::new(),
        warnings: Vec::new(),
    };
    // (field name, edit, items, limit)
    let fields: [(&str, &FieldEdit, &[&[u8; 4]], usize); 7] = [
        (
            "author",
            &tags.author,
            &[b"\xa9ART", b"aART"],
            MAX_TITLE_BYTES,
        ),
        (
            "narrator",
            &tags.narrator,
            &[b"\xa9nrt", b"\xa9wrt"],
            MAX_TITLE_BYTES,
        ),
        ("genre", &tags.genre, &[b"\xa9gen"], MAX_TITLE_BYTES),
        ("year", &tags.year, &[b"\xa9day"], MAX_TITLE_BYTES),
        (
            "description",
            &tags.description,
            &[b"desc", b"ldes"],
            MAX_LONG_TEXT_BYTES,
        ),
        ("comment", &tags.comment, &[b"\xa9cmt"], MAX_LONG_TEXT_BYTES),
        ("grouping", &tags.grouping, &[b"\xa9grp"], MAX_TITLE_BYTES),
    ];
    let cut_value = |name: &str, v: &str, limit: usize, p: &mut ItemPlan| -> String {
        let c = moov::cut(v, limit);
        if c.len() < v.len() {
            p.warnings.push(format!(
                "{name}: {} bytes is more than the {limit} kept; shortened",
                v.len()
            ));
        }
        c.to_string()
    };
    // Title, with the album when it followed the title.
    if let Some(v) = tags.title.value() {
        let old_title = old.get(b"\xa9nam");
        let album = old.get(b"\xa9alb");
        let album_follows = album.is_none() || album == old_title;
        p.drop.push(code(b"\xa9nam"));
        if album_follows {
            p.drop.push(code(b"\xa9alb"));
        }
        let v = v.map(|v| cut_value("title", v, MAX_TITLE_BYTES, &mut p));
        if let Some(v) = &v {
            p.new.push(text_item(code(b"\xa9nam"), v));
            if album_follows {
                p.new.push(text_item(code(b"\xa9alb"), v));
            }
        }
        p.changes.push(format!(
            "title: {} → {}",
            describe(old_title),
            describe(v.as_deref())
        ));
    }
    for (name, edit, items, limit) in fields {
        let Some(v) = edit.value() else { continue };
        let before = old.get(items[0]).map(str::to_string);
        for k in items {
            p.drop.push(code(k));
        }
        if *items[0] == *b"\xa9gen" {
            p.drop.push(code(b"gnre"));
        }
        let v = v.map(|v| cut_value(name, v, limit, &mut p));
        if let Some(v) = &v {
            for k in items {
                p.new.push(text_item(code(k), v));
            }
        }
        p.changes.push(format!(
            "{name}: {} → {}",
            describe(before.as_deref()),
            describe(v.as_deref())
        ));
    }
    if let Some(v) = tags.series.value() {
        let before = old
            .values
            .iter()
            .find(|(k, _)| moov::same_key(k, &freeform("SERIES")))
            .map(|(_, v)| v.clone())
            .or_else(|| old.get(b"\xa9mvn").map(str::to_string));
        p.drop
            .extend([code(b"\xa9mvn"), freeform("SERIES"), code(b"tvsh")]);
        let v = v.map(|v| cut_value("series", v, MAX_TITLE_BYTES, &mut p));
        if let Some(v) = &v {
            p.new.push(text_item(code(b"\xa9mvn"), v));
            p.new.push(text_item(freeform("SERIES"), v));
            if has_tvsh {
                p.new.push(text_item(code(b"tvsh"), v));
            }
        }
        p.changes.push(format!(
            "series: {} → {}",
            describe(before.as_deref()),
            describe(v.as_deref())
        ));
    }
    if let Some(v) = tags.series_part.value() {
        let before = old
            .values
            .iter()
            .find(|(k, _)| moov::same_key(k, &freeform("SERIES-PART")))
            .map(|(_, v)| v.clone());
        p.drop.extend([code(b"\xa9mvi"), freeform("SERIES-PART")]);
        let v = v.map(|v| cut_value("series part", v, MAX_TITLE_BYTES, &mut p));
        if let Some(v) = &v {
            if let Ok(n) = v.parse::<u16>() {
                p.new.push(moov::NewItem {
                    key: code(b"\xa9mvi"),
                    values: vec![(TYPE_BE_SIGNED, n.to_be_bytes().to_vec())],
                });
            }
            p.new.push(text_item(freeform("SERIES-PART"), v));
        }
        p.changes.push(format!(
            "series part: {} → {}",
            describe(before.as_deref()),
            describe(v.as_deref())
        ));
    }
    // Fields with a freeform item (and maybe a code item too): (name, edit, code, freeform).
    let with_freeform: [(&str, &FieldEdit, Option<&[u8; 4]>, &str); 2] = [
        ("publisher", &tags.publisher, Some(b"\xa9pub"), "PUBLISHER"),
        ("ASIN", &tags.asin, None, "ASIN"),
    ];
    for (name, edit, c, free) in with_freeform {
        let Some(v) = edit.value() else { continue };
        let before = old
            .values
            .iter()
            .find(|(k, _)| moov::same_key(k, &freeform(free)))
            .map(|(_, v)| v.clone())
            .or_else(|| c.and_then(|c| old.get(c)).map(str::to_string));
        p.drop.extend(c.map(code));
        p.drop.push(freeform(free));
        let v = v.map(|v| cut_value(name, v, MAX_TITLE_BYTES, &mut p));
        if let Some(v) = &v {
            if let Some(c) = c {
                p.new.push(text_item(code(c), v));
            }
            p.new.push(text_item(freeform(free), v));
        }
        p.changes.push(format!(
            "{name}: {} → {}",
            describe(before.as_deref()),
            describe(v.as_deref())
        ));
    }
    match cover {
        CoverEdit::Keep => {}
        CoverEdit::Remove => {
            p.drop.push(code(b"covr"));
            p.changes.push("cover: removed".into());
        }
        CoverEdit::Set(pic) => {
            p.drop.push(code(b"covr"));
            let t = if pic.mime == "image/png" {
                TYPE_PNG
            } else {
                TYPE_JPEG
            };
            p.new.push(moov::NewItem {
                key: code(b"covr"),
                values: vec![(t, pic.data.clone())],
            });
            p.changes.push(format!(
                "cover: {} ({} bytes)",
                if t == TYPE_PNG { "PNG" } else { "JPEG" },
                pic.data.len()
            ));
        }
    }
    p
}

/// True when the tags and cover are left alone.
pub(crate) fn items_untouched(e: &BookEdit) -> bool {
    let t = &e.tags;
    [
        &t.title,
        &t.author,
        &t.narrator,
        &t.series,
        &t.series_part,
        &t.genre,
        &t.year,
        &t.description,
        &t.comment,
        &t.publisher,
        &t.grouping,
        &t.asin,
    ]
    .iter()
    .all(|f| f.is_keep())
        && e.cover == CoverEdit::Keep
}

/// The chapters after `edit`, with warnings; `None` when the chapters are kept.
pub(crate) fn plan_chapters(
    path: &Path,
    edit: &ChapterEdit,
    old: &[Chapter],
    total_samples: u64,
    rate: u32,
) -> Result<Option<(Vec<Chapter>, Vec<String>)>> {
    let bad = |reason: String| Error::Edit {
        path: path.to_path_buf(),
        reason,
    };
    let mut warnings = Vec::new();
    let mut list = match edit {
        ChapterEdit::Keep => return Ok(None),
        ChapterEdit::Replace(list) => list.clone(),
        ChapterEdit::Rename(renames) => {
            let mut list = old.to_vec();
            for (n, title) in renames {
                let Some(c) = n.checked_sub(1).and_then(|i| list.get_mut(i)) else {
                    return Err(bad(format!(
                        "there is no chapter {n}: the book has {} chapter(s); list them with \
                         `aiom4b chapters export`",
                        old.len()
                    )));
                };
                c.title = title.clone();
            }
            list
        }
        ChapterEdit::ShiftSamples(d) => {
            let mut out: Vec<Chapter> = Vec::new();
            for (i, c) in old.iter().enumerate() {
                let s = c.start_samples as i128 + *d as i128;
                if s >= total_samples as i128 {
                    warnings.push(format!(
                        "chapter {} \"{}\" would start after the end of the audio; dropped",
                        i + 1,
                        c.title
                    ));
                    continue;
                }
                let s = if s < 0 {
                    if i > 0 {
                        warnings.push(format!(
                            "chapter {} \"{}\" would start before 0; it starts at 0",
                            i + 1,
                            c.title
                        ));
                    }
                    0
                } else {
                    s as u64
                };
                if let Some(last) = out.last() {
                    if last.start_samples == 0 && s == 0 {
                        warnings.push(format!(
                            "chapter \"{}\" would be empty (it starts at 0 like the next); dropped",
                            last.title
                        ));
                        out.pop();
                    }
                }
                out.push(Chapter {
                    title: c.title.clone(),
                    start_samples: s,
                });
            }
            out
        }
    };
    if let Some(first) = list.first_mut() {
        if first.start_samples > 0 {
            warnings.push(format!(
                "the first chapter \"{}\" now starts at 0 so the whole book is covered",
                first.title
            ));
            first.start_samples = 0;
        }
    }
    for w in list.windows(2) {
        if w[1].start_samples <= w[0].start_samples {
            return Err(bad(format!(
                "chapter \"{}\" does not start after \"{}\"; chapter starts must increase",
                w[1].title, w[0].title
            )));
        }
    }
    if let Some(last) = list.last() {
        if last.start_samples >= total_samples && list.len() > 1 {
            return Err(bad(format!(
                "chapter \"{}\" starts at or after the end of the audio ({}); is the list for \
                 another book or edition?",
                last.title,
                crate::chapters::format_samples(total_samples, rate)
            )));
        }
    }
    let mut shortened = 0;
    for c in &mut list {
        let t = moov::cut(&c.title, MAX_TITLE_BYTES);
        if t.len() < c.title.len() {
            c.title = t.to_string();
            shortened += 1;
        }
    }
    if shortened > 0 {
        warnings.push(format!(
            "{shortened} chapter title(s) longer than {MAX_TITLE_BYTES} bytes were shortened"
        ));
    }
    if list.len() > moov::CHPL_MAX {
        warnings.push(format!(
            "{} chapters: the Nero chapter list (chpl, read by VLC) holds only the first {}; \
             the QuickTime chapter track has all of them",
            list.len(),
            moov::CHPL_MAX
        ));
    }
    moov::chapter_ticks(&list, rate, total_samples).map_err(bad)?;
    Ok(Some((list, warnings)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(title: &str, s: u64) -> Chapter {
        Chapter {
            title: title.into(),
            start_samples: s,
        }
    }

    #[test]
    fn shift_clamps_drops_and_keeps_the_first_at_zero() {
        let old = vec![
            ch("A", 0),
            ch("B", 44_100),
            ch("C", 88_200),
            ch("D", 400_000),
        ];
        let p = Path::new("b.m4b");
        let (list, w) = plan_chapters(
            p,
            &ChapterEdit::ShiftSamples(-50_000),
            &old,
            420_000,
            44_100,
        )
        .unwrap()
        .unwrap();
        // A and B both land on 0: only B (the later) is kept; D stays.
        assert_eq!(list, vec![ch("B", 0), ch("C", 38_200), ch("D", 350_000)]);
        assert!(w.iter().any(|w| w.contains("dropped")), "{w:?}");
        let (list, w) = plan_chapters(p, &ChapterEdit::ShiftSamples(30_000), &old, 420_000, 44_100)
            .unwrap()
            .unwrap();
        assert_eq!(list, vec![ch("A", 0), ch("B", 74_100), ch("C", 118_200)]);
        assert!(
            w.iter()
                .any(|w| w.contains("\"D\"") && w.contains("dropped")),
            "{w:?}"
        );
        assert!(w.iter().any(|w| w.contains("starts at 0")), "{w:?}");
    }

    #[test]
    fn rename_needs_an_existing_chapter() {
        let old = vec![ch("A", 0), ch("B", 44_100)];
        let p = Path::new("b.m4b");
        let e = ChapterEdit::Rename(vec![(2, "The Storm".into()), (1, "Intro".into())]);
        let (list, _) = plan_chapters(p, &e, &old, 100_000, 44_100)
            .unwrap()
            .unwrap();
        assert_eq!(list, vec![ch("Intro", 0), ch("The Storm", 44_100)]);
        let e = ChapterEdit::Rename(vec![(3, "x".into())]);
        let err = plan_chapters(p, &e, &old, 100_000, 44_100).unwrap_err();
        assert!(err.to_string().contains("no chapter 3"), "{err}");
        let e = ChapterEdit::Replace(vec![ch("A", 0), ch("B", 0)]);
        assert!(plan_chapters(p, &e, &old, 100_000, 44_100).is_err());
    }

    #[test]
    fn title_follows_into_album_only_when_the_album_followed_it() {
        let old = OldTags {
            values: vec![
                (code(b"\xa9nam"), "Old".into()),
                (code(b"\xa9alb"), "Old".into()),
            ],
        };
        let tags = TagEdits {
            title: FieldEdit::Set("New".into()),
            ..Default::default()
        };
        let p = plan_items(&tags, &CoverEdit::Keep, &old, false);
        assert!(p.drop.contains(&code(b"\xa9alb")));
        assert_eq!(p.new.len(), 2);
        let old = OldTags {
            values: vec![
                (code(b"\xa9nam"), "Old".into()),
                (code(b"\xa9alb"), "Collection".into()),
            ],
        };
        let p = plan_items(&tags, &CoverEdit::Keep, &old, false);
        assert!(!p.drop.contains(&code(b"\xa9alb")));
        assert_eq!(p.new.len(), 1);
        assert_eq!(p.changes, ["title: \"Old\" → \"New\""]);
    }

    #[test]
    fn publisher_grouping_and_asin_have_their_items() {
        let old = OldTags {
            values: vec![(freeform("ASIN"), "B000000000".into())],
        };
        let tags = TagEdits {
            publisher: FieldEdit::Set("Tor".into()),
            grouping: FieldEdit::Set("Mistborn #1".into()),
            asin: FieldEdit::Set("B0036I54I6".into()),
            ..Default::default()
        };
        let p = plan_items(&tags, &CoverEdit::Keep, &old, false);
        let keys: Vec<String> = p.new.iter().map(|n| n.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "©grp",
                "©pub",
                "----:com.apple.iTunes:PUBLISHER",
                "----:com.apple.iTunes:ASIN"
            ]
        );
        assert!(p.drop.contains(&freeform("ASIN")));
        assert!(p
            .changes
            .contains(&"ASIN: \"B000000000\" → \"B0036I54I6\"".to_string()));
        assert!(!items_untouched(&BookEdit {
            tags,
            ..Default::default()
        }));
    }

    #[test]
    fn blank_values_clear() {
        assert_eq!(FieldEdit::from_option(Some("  ")), FieldEdit::Clear);
        assert_eq!(FieldEdit::from_option(None), FieldEdit::Keep);
        let tags = TagEdits {
            series_part: FieldEdit::Set("1.5".into()),
            narrator: FieldEdit::Clear,
            ..Default::default()
        };
        let p = plan_items(&tags, &CoverEdit::Keep, &OldTags::default(), true);
        // 1.5 is not a whole number: text only, no ©mvi.
        let keys: Vec<String> = p.new.iter().map(|n| n.key.to_string()).collect();
        assert_eq!(keys, ["----:com.apple.iTunes:SERIES-PART"]);
        assert!(p.drop.contains(&code(b"\xa9wrt")));
    }
}
