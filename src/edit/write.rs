//! The file side of `edit`: opening and refusing, reading the old chapters, choosing in place
//! or rewrite, the staged write and its one-header flip, the streamed rewrite, and the
//! verification of the result (see the module docs of `edit` for the reasoning). The book is
//! locked (`flock`, exclusive, not waiting) while it is edited, so a second `aiom4b edit` of
//! the same file is refused instead of racing the first.
use super::moov::{self, ChapterTrack, MoovChanges, MoovFacts};
use super::{BookEdit, ChapterEdit, CoverEdit, EditReport, FieldEdit, OldTags};
use crate::error::{Error, Result};
use crate::model::Chapter;
use crate::mp4box::{self, BoxRef, ItemKey, Malformed, TopBox};
use crate::publish::{self, PartFile};
use crate::verify::{M4bSummary, DEFAULT_TOLERANCE_SAMPLES};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

/// Largest `moov` read into memory (as `verify` and `mp4tags`).
const MAX_MOOV_BYTES: u64 = 256 << 20;
/// The smallest padding left after `moov` when the file is rewritten (see the module docs).
const MIN_PADDING: u64 = 16 << 10;
/// Disk sector: a write inside one is atomic, so the flip header must not cross a boundary.
const SECTOR: u64 = 512;

/// Test hook (environment variable): `before-flip` aborts the process (like `kill -9`: no
/// destructor, no cleanup) after the staged write is flushed and before the flip;
/// `after-part` does the same after a rewrite's part file is written, before its rename;
/// `fail-check` makes the check of the written result fail, to test that a failed edit is
/// undone (the part removed, an in-place flip switched back).
const FAULT_ENV: &str = "AIOM4B_EDIT_FAULT";

fn fault(point: &str) {
    if std::env::var(FAULT_ENV).is_ok_and(|v| v == point) {
        tracing::error!("{FAULT_ENV}={point}: aborting as asked (test hook)");
        std::process::abort();
    }
}

/// An opened book: its top-level boxes and its `moov` in memory.
struct Book {
    file: File,
    len: u64,
    tops: Vec<TopBox>,
    moov_top: TopBox,
    moov_buf: Vec<u8>,
    mode: u32,
}

fn refuse(path: &Path, reason: impl Into<String>) -> Error {
    Error::Edit {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn mp4(path: &Path) -> impl Fn(Malformed) -> Error + '_ {
    move |m| Error::Mp4 {
        path: path.to_path_buf(),
        offset: m.offset,
        reason: m.reason,
    }
}

/// Opens `path` for editing (`write`) or reading, refusing what cannot be edited safely.
fn open_book(path: &Path, write: bool) -> Result<Book> {
    let lmeta = fs::symlink_metadata(path).map_err(|e| Error::io(path, "open the book", e))?;
    if lmeta.file_type().is_symlink() {
        return Err(refuse(
            path,
            "it is a symbolic link; edit the file it points to instead",
        ));
    }
    if !lmeta.is_file() {
        return Err(refuse(
            path,
            format!(
                "it is a {}, not a regular file",
                if lmeta.is_dir() {
                    "folder"
                } else {
                    crate::regular::special_kind(&lmeta.file_type())
                }
            ),
        ));
    }
    if write && lmeta.permissions().readonly() {
        return Err(refuse(
            path,
            "the file is read-only; make it writable (chmod u+w) to edit it",
        ));
    }
    let mut file = if write {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, "open the book for writing", e))?
    } else {
        crate::regular::open_regular(path, "open the book")?
    };
    if write {
        // Two edits of one book at once would each flip or rename over the other's work.
        use rustix::fs::{flock, FlockOperation};
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            return Err(if e == rustix::io::Errno::WOULDBLOCK {
                refuse(
                    path,
                    "another program is editing it (it is locked); try again when it is done",
                )
            } else {
                Error::io(path, "lock the book for editing", e.into())
            });
        }
    }
    let meta = file
        .metadata()
        .map_err(|e| Error::io(path, "read the size of the book", e))?;
    if !meta.is_file() {
        return Err(refuse(path, "it is not a regular file"));
    }
    let len = meta.len();
    let io = |e| Error::io(path, "read the book", e);
    let tops = mp4box::top_level_boxes(&mut file, len)
        .map_err(io)?
        .map_err(mp4(path))?;
    if tops.iter().any(|b| b.kind == *b"moof") {
        return Err(refuse(
            path,
            "it is a fragmented MP4 (moof boxes); remux it to a plain M4B first (e.g. `ffmpeg -i IN -c copy OUT.m4b`)",
        ));
    }
    let moovs: Vec<&TopBox> = tops.iter().filter(|b| b.kind == *b"moov").collect();
    let moov_top = match moovs.as_slice() {
        [one] => **one,
        [] => return Err(refuse(path, "it has no 'moov' box; is it an MP4/M4B file?")),
        _ => return Err(refuse(
            path,
            "it has more than one 'moov' box, so readers disagree on what it holds; remux it first",
        )),
    };
    let moov_buf = mp4box::read_top_box(&mut file, &moov_top, MAX_MOOV_BYTES)
        .map_err(io)?
        .map_err(mp4(path))?;
    Ok(Book {
        file,
        len,
        tops,
        moov_top,
        moov_buf,
        mode: meta.permissions().mode() & 0o7777,
    })
}

impl Book {
    fn moov(&self) -> BoxRef<'_> {
        mp4box::as_box_ref(&self.moov_buf, &self.moov_top)
    }
}

/// The chapters of `path` (starts in samples at the audio rate), the audio rate and the
/// audio's length in samples: from the QuickTime chapter track, else from `chpl`, else none.
pub fn read_chapters(path: &Path) -> Result<(Vec<Chapter>, u32, u64)> {
    let book = open_book(path, false)?;
    let moov = book.moov();
    let facts = moov::facts(&moov).map_err(|m| no_audio(path, m))?;
    let chapters = chapters_of(path, &book, &facts)?;
    Ok((chapters, facts.rate, facts.total_samples))
}

fn no_audio(path: &Path, m: Malformed) -> Error {
    if m.reason.contains("no audio track") {
        refuse(path, "it has no audio track")
    } else {
        mp4(path)(m)
    }
}

fn chapters_of(path: &Path, book: &Book, facts: &MoovFacts) -> Result<Vec<Chapter>> {
    let moov = book.moov();
    let m = mp4(path);
    if let Some(&id) = facts.chapter_ids.first() {
        for t in moov.children() {
            let t = t.map_err(&m)?;
            if t.kind != *b"trak" {
                continue;
            }
            let tkhd = t.child(b"tkhd").map_err(&m)?;
            if tkhd
                .map(|h| mp4box::parse_tkhd_id(&h))
                .transpose()
                .map_err(&m)?
                != Some(id)
            {
                continue;
            }
            return chapter_track(path, book, facts, &t);
        }
    }
    if let Some(chpl) = moov.descend(&[b"udta", b"chpl"]).map_err(&m)? {
        let mut c = chpl.cursor("chpl box");
        let mut out = Vec::new();
        let r: mp4box::Parse<()> = (|| {
            let (v, _) = c.full_header()?;
            if v == 1 {
                c.u32()?;
            }
            let n = c.u8()?;
            for _ in 0..n {
                let start = c.u64()?;
                let len = c.u8()? as usize;
                let title = String::from_utf8_lossy(c.bytes(len)?).into_owned();
                out.push(Chapter {
                    title,
                    start_samples: rescale(start, facts.rate as u64, 10_000_000),
                });
            }
            Ok(())
        })();
        r.map_err(&m)?;
        return Ok(out);
    }
    Ok(Vec::new())
}

fn rescale(v: u64, num: u64, den: u64) -> u64 {
    if den == 0 {
        return 0;
    }
    ((v as u128 * num as u128 + den as u128 / 2) / den as u128).min(u64::MAX as u128) as u64
}

/// Reads the chapter text track `t`: each sample's title and presentation start.
fn chapter_track(
    path: &Path,
    book: &Book,
    facts: &MoovFacts,
    t: &BoxRef<'_>,
) -> Result<Vec<Chapter>> {
    let m = mp4(path);
    let mdhd = t
        .descend(&[b"mdia", b"mdhd"])
        .map_err(&m)?
        .ok_or_else(|| m(Malformed::new(t.offset, "chapter track has no mdhd")))?;
    let (ts, _) = mp4box::parse_timescale_duration(&mdhd).map_err(&m)?;
    if ts == 0 {
        return Err(m(Malformed::new(
            mdhd.offset,
            "chapter track timescale is 0",
        )));
    }
    let stbl = t
        .descend(&[b"mdia", b"minf", b"stbl"])
        .map_err(&m)?
        .ok_or_else(|| m(Malformed::new(t.offset, "chapter track has no stbl")))?;
    let (table, _) = mp4box::parse_stbl(&stbl).map_err(&m)?;
    let edits = match t.descend(&[b"edts", b"elst"]).map_err(&m)? {
        Some(e) => mp4box::parse_elst(&e).map_err(&m)?,
        None => Vec::new(),
    };
    // Empty edits before the first shown one delay the track (movie ticks); the shown one's
    // media time is where the track's presentation starts.
    let empty: u64 = edits
        .iter()
        .take_while(|e| e.media_time < 0)
        .map(|e| e.segment_duration)
        .sum();
    let media_start = edits
        .iter()
        .find(|e| e.media_time >= 0)
        .map_or(0, |e| e.media_time as u64);
    let chunks = table
        .chunks(book.len)
        .map_err(|e| m(Malformed::new(stbl.offset, format!("chapter track: {e}"))))?;
    let times = table.sample_times(table.sizes.len());
    let mut out = Vec::new();
    for chunk in chunks {
        if chunk.bytes > 16 << 20 {
            return Err(m(Malformed::new(
                chunk.offset,
                "chapter chunk is implausibly large",
            )));
        }
        let mut buf = vec![0u8; chunk.bytes as usize];
        book.file
            .read_exact_at(&mut buf, chunk.offset)
            .map_err(|e| Error::io(path, "read the chapter track", e))?;
        let mut pos = 0usize;
        for i in chunk.first_sample..chunk.first_sample + chunk.sample_count {
            let size = table.sizes[i] as usize;
            let sample = &buf[pos..pos + size];
            pos += size;
            let title = crate::verify::chapters::text_sample(sample).ok_or_else(|| {
                m(Malformed::new(
                    chunk.offset,
                    format!("chapter sample {} is not a text sample", i + 1),
                ))
            })?;
            let Some(&tm) = times.get(i) else { break };
            let secs_num = tm.saturating_sub(media_start) as u128 * facts.movie_timescale as u128
                + empty as u128 * ts as u128;
            let den = ts as u128 * facts.movie_timescale as u128;
            let start = ((secs_num * facts.rate as u128 + den / 2) / den).min(u64::MAX as u128);
            out.push(Chapter {
                title,
                start_samples: start as u64,
            });
        }
    }
    Ok(out)
}

/// The tag values of the old `ilst` (text items only; for reports and the album rule).
fn old_tags(ilst: Option<&BoxRef<'_>>) -> mp4box::Parse<OldTags> {
    let mut out = OldTags::default();
    if let Some(il) = ilst {
        for item in mp4box::parse_ilst(il)? {
            if let Some(v) = item.values.first().filter(|v| v.type_code == 1) {
                out.values
                    .push((item.key, String::from_utf8_lossy(v.payload).into_owned()));
            }
        }
    }
    Ok(out)
}

/// Everything decided before writing.
struct Plan {
    facts: MoovFacts,
    ilst: Option<Vec<u8>>,
    /// `Some(list)`: new chapters (empty: remove).
    chapters: Option<Vec<Chapter>>,
    /// The chapter `mdat` payload and sample sizes, when there are new chapters.
    chapter_data: Vec<u8>,
    chapter_sizes: Vec<u32>,
    chapter_ticks: Vec<u64>,
    total_ticks: u64,
    changes: Vec<String>,
    warnings: Vec<String>,
    old_chapters: Vec<Chapter>,
}

impl Plan {
    fn chapter_mdat_len(&self) -> u64 {
        match &self.chapters {
            Some(list) if !list.is_empty() => 8 + self.chapter_data.len() as u64,
            _ => 0,
        }
    }
    /// The new `moov` with the chapter chunk at `chapter_offset` (its data, after the header).
    fn build(
        &self,
        moov: &BoxRef<'_>,
        chapter_offset: u64,
        map: &dyn Fn(u64) -> Option<u64>,
    ) -> mp4box::Parse<Vec<u8>> {
        let track = self.chapters.as_ref().map(|list| {
            (!list.is_empty()).then(|| ChapterTrack {
                chapters: list,
                ticks: self.chapter_ticks.clone(),
                sizes: self.chapter_sizes.clone(),
                total_ticks: self.total_ticks,
                chunk_offset: chapter_offset,
            })
        });
        moov::build_moov(
            moov,
            &self.facts,
            &MoovChanges {
                ilst: self.ilst.clone(),
                chapters: track,
            },
            map,
        )
    }
}

fn plan(path: &Path, book: &Book, edit: &BookEdit) -> Result<Plan> {
    let moov = book.moov();
    let m = mp4(path);
    let facts = moov::facts(&moov).map_err(|e| no_audio(path, e))?;
    let old_chapters = chapters_of(path, book, &facts)?;
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    let cover = match &edit.cover {
        CoverEdit::Set(pic) => CoverEdit::Set(crate::convert::check_cover(pic, path)?),
        c => c.clone(),
    };
    let ilst = if super::items_untouched(edit) {
        None
    } else {
        let old_ilst = moov::find_ilst(&moov).map_err(&m)?;
        let olds = old_tags(old_ilst.as_ref()).map_err(&m)?;
        let has_tvsh = olds.get(b"tvsh").is_some();
        let p = super::plan_items(&edit.tags, &cover, &olds, has_tvsh);
        changes.extend(p.changes);
        warnings.extend(p.warnings);
        let drop = p.drop;
        let body = moov::edit_ilst(
            old_ilst.as_ref(),
            &|k: &ItemKey| drop.iter().any(|d| moov::same_key(d, k)),
            &p.new,
        )
        .map_err(&m)?;
        Some(body)
    };
    let chapters = match super::plan_chapters(
        path,
        &edit.chapters,
        &old_chapters,
        facts.total_samples,
        facts.rate,
    )? {
        Some((list, w)) => {
            warnings.extend(w);
            changes.push(match &edit.chapters {
                ChapterEdit::Rename(r) => format!("chapters: {} renamed", r.len()),
                ChapterEdit::ShiftSamples(d) => format!(
                    "chapters: shifted by {:+.3} s ({} → {} chapters)",
                    *d as f64 / facts.rate as f64,
                    old_chapters.len(),
                    list.len()
                ),
                _ => format!("chapters: {} → {} chapters", old_chapters.len(), list.len()),
            });
            Some(list)
        }
        None => None,
    };
    let (chapter_data, chapter_sizes) = chapters
        .as_deref()
        .map(moov::chapter_samples)
        .unwrap_or_default();
    let chapter_ticks = match &chapters {
        Some(list) => moov::chapter_ticks(list, facts.rate, facts.total_samples)
            .map_err(|r| refuse(path, r))?,
        None => Vec::new(),
    };
    let total_ticks = rescale(
        facts.total_samples,
        moov::CHAPTER_TIMESCALE as u64,
        facts.rate as u64,
    );
    Ok(Plan {
        facts,
        ilst,
        chapters,
        chapter_data,
        chapter_sizes,
        chapter_ticks,
        total_ticks,
        changes,
        warnings,
        old_chapters,
    })
}

/// Where an in-place edit writes, and the one header write that flips to it.
struct Staged {
    /// (offset, bytes) writes that build the new boxes inside the free region.
    writes: Vec<(u64, Vec<u8>)>,
    /// The flip: (offset, new header, old header) — 8 bytes each.
    flip: (u64, [u8; 8], [u8; 8]),
    /// The file grows to this length (end-of-file case) or stays.
    new_len: u64,
}

fn header8(kind: &[u8; 4], size: u64) -> Option<[u8; 8]> {
    let size = u32::try_from(size).ok()?;
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&size.to_be_bytes());
    h[4..].copy_from_slice(kind);
    Some(h)
}

fn one_sector(at: u64) -> bool {
    at / SECTOR == (at + 7) / SECTOR
}

/// Padding left after `moov` for later in-place edits (see the module docs).
fn padding_for(moov_len: u64) -> u64 {
    MIN_PADDING.max(moov_len / 10)
}

/// Plans an in-place edit, if the new boxes fit beside the old `moov`; `Err` says why not.
fn stage(book: &Book, plan: &Plan) -> std::result::Result<Staged, String> {
    let top = &book.moov_top;
    if top.header_len != 8 {
        return Err("the old moov has a 64-bit header".into());
    }
    let moov = book.moov();
    let c_len = plan.chapter_mdat_len();
    let old_header: [u8; 8] = book.moov_buf[..8].try_into().unwrap_or_default();
    let idx = book
        .tops
        .iter()
        .position(|b| b == top)
        .ok_or("moov not found among the top-level boxes")?;
    // Data the kept tracks point at must not lie in the region.
    let chunks = moov::chunk_offsets(&moov, &plan.replaced_ids()).map_err(|e| e.reason)?;
    let free_of_chunks = |r: &TopBox| !chunks.iter().any(|&(o, n)| o < r.end() && o + n > r.offset);
    let build = |chapter_offset: u64| {
        plan.build(&moov, chapter_offset, &|o| Some(o))
            .map_err(|e| format!("{} (at byte {})", e.reason, e.offset))
    };
    let chapter_mdat = || -> Vec<u8> {
        let mut v = Vec::with_capacity(c_len as usize);
        if c_len > 0 {
            moov::push_box(&mut v, b"mdat", &plan.chapter_data);
        }
        v
    };
    // [new moov][free gap][chapter mdat] laid into `space` bytes starting at `at`, as writes:
    // the gap's body is not written (whatever it holds is inside a free box either way).
    type Writes = Vec<(u64, Vec<u8>)>;
    let lay = |at: u64, space: u64| -> std::result::Result<Writes, String> {
        if c_len + 8 > space {
            return Err(format!(
                "the chapters ({c_len} bytes) need more than the {space} free bytes"
            ));
        }
        let chapter_at = at + space - c_len;
        let new_moov = build(chapter_at + 8)?;
        let m = new_moov.len() as u64;
        if m + c_len > space {
            return Err(format!(
                "the new moov ({m} bytes) and chapters ({c_len} bytes) need more than the {space} free bytes"
            ));
        }
        let gap = space - m - c_len;
        if (1..8).contains(&gap) {
            return Err("the free space left over would be smaller than a box header".into());
        }
        let mut first = new_moov;
        if gap > 0 {
            first.extend_from_slice(&header8(b"free", gap).ok_or("the free gap is too large")?);
        }
        let mut writes = vec![(at, first)];
        if c_len > 0 {
            writes.push((chapter_at, chapter_mdat()));
        }
        Ok(writes)
    };
    let next = book.tops.get(idx + 1);
    let prev = idx.checked_sub(1).and_then(|i| book.tops.get(i));
    // 1. A free box right after moov.
    if let Some(r) = next.filter(|r| moov::is_free(r) && r.header_len == 8 && free_of_chunks(r)) {
        if one_sector(top.offset) {
            if let Ok(writes) = lay(r.offset + 8, r.size - 8) {
                let flip = header8(b"free", top.size + 8).ok_or("moov too large")?;
                return Ok(Staged {
                    writes,
                    flip: (top.offset, flip, old_header),
                    new_len: book.len,
                });
            }
        }
    }
    // 2. moov is the last box: append at the end of the file.
    if next.is_none() && top.end() == book.len && one_sector(top.offset) {
        // Lay out once to learn the moov size, then give it padding for the next edit.
        let m = build(0)?.len() as u64;
        let space = m + padding_for(m) + c_len;
        let mut writes = lay(book.len + 8, space)?;
        let flip = header8(b"free", top.size + 8).ok_or("moov too large")?;
        let mut header = [0u8; 8];
        header[4..].copy_from_slice(b"free"); // size 0: "to the end of the file"
        writes.insert(0, (book.len, header.to_vec()));
        return Ok(Staged {
            writes,
            flip: (top.offset, flip, old_header),
            new_len: book.len + 8 + space,
        });
    }
    // 3. A free box right before moov.
    if let Some(r) = prev.filter(|r| moov::is_free(r) && r.header_len == 8 && free_of_chunks(r)) {
        if one_sector(r.offset) && r.size >= 24 {
            // [free 8][new moov][gap][chapters][free header … to the old moov's end]
            let space = r.size - 16;
            let mut writes = lay(r.offset + 8, space)?;
            let tail_at = r.offset + 8 + space;
            writes.push((
                tail_at,
                header8(b"free", top.end() - tail_at)
                    .ok_or("moov too large")?
                    .to_vec(),
            ));
            let old_r: [u8; 8] = header8(b"free", r.size).ok_or("region too large")?;
            return Ok(Staged {
                writes,
                flip: (r.offset, header8(b"free", 8).unwrap_or_default(), old_r),
                new_len: book.len,
            });
        }
    }
    Err("no free space next to moov".into())
}

impl Plan {
    /// Track IDs whose data is replaced (the old chapter track, when chapters change).
    fn replaced_ids(&self) -> Vec<u32> {
        if self.chapters.is_some() {
            self.facts.chapter_ids.clone()
        } else {
            Vec::new()
        }
    }
}

/// The edit (or its preview): see the module docs.
pub(super) fn edit(path: &Path, edit: &BookEdit, preview: bool) -> Result<EditReport> {
    let book = open_book(path, !preview)?;
    let plan = plan(path, &book, edit)?;
    let staged = stage(&book, &plan);
    let mut report = EditReport {
        path: path.to_path_buf(),
        in_place: staged.is_ok(),
        bytes_written: 0,
        changes: plan.changes.clone(),
        chapters: plan
            .chapters
            .clone()
            .unwrap_or_else(|| plan.old_chapters.clone()),
        sample_rate: plan.facts.rate,
        warnings: plan.warnings.clone(),
        summary: None,
    };
    if preview {
        return Ok(report);
    }
    if let Err(why) = &staged {
        tracing::debug!(path = %path.display(), "rewriting the whole file: {why}");
    }
    let (bytes, summary) = match staged {
        Ok(s) => in_place(path, book, &plan, s, edit)?,
        Err(_) => rewrite(path, book, &plan, edit)?,
    };
    report.bytes_written = bytes;
    report.warnings.extend(summary.1);
    report.summary = Some(summary.0);
    Ok(report)
}

type Checked = (M4bSummary, Vec<String>);

fn in_place(
    path: &Path,
    book: Book,
    plan: &Plan,
    s: Staged,
    edit: &BookEdit,
) -> Result<(u64, Checked)> {
    let f = &book.file;
    let wio = |e| Error::io(path, "write the edited boxes into the book", e);
    for (i, (at, bytes)) in s.writes.iter().enumerate() {
        f.write_all_at(bytes, *at).map_err(wio)?;
        if i == 0 && s.new_len > book.len {
            // The end-of-file header first on its own, so the file never ends in a torn
            // header; then the file grows (zeros) to hold the whole free region.
            f.sync_data().map_err(wio)?;
            f.set_len(s.new_len).map_err(wio)?;
        }
    }
    f.sync_data().map_err(wio)?;
    let bytes: u64 = s.writes.iter().map(|(_, b)| b.len() as u64).sum();
    // Read back what was staged before trusting it.
    for (at, bytes) in &s.writes {
        let mut back = vec![0u8; bytes.len()];
        f.read_exact_at(&mut back, *at)
            .map_err(|e| Error::io(path, "read back the staged boxes", e))?;
        if &back != bytes {
            undo_append(&book, &s);
            return Err(Error::Verify {
                path: path.to_path_buf(),
                problems: vec![
                    "the staged boxes read back differently from what was written; \
                                the book is unchanged"
                        .into(),
                ],
            });
        }
    }
    fault("before-flip");
    let (at, new_h, old_h) = s.flip;
    f.write_all_at(&new_h, at).map_err(wio)?;
    f.sync_data().map_err(wio)?;
    match check(path, &book, plan, edit, None) {
        Ok(c) => Ok((bytes + 8, c)),
        Err(e) => {
            // Flip back: the old moov is intact inside the free box that swallowed it.
            let back = f.write_all_at(&old_h, at).and_then(|_| f.sync_data());
            if let Err(io) = back {
                tracing::error!(path = %path.display(), error = %io, "could not restore the old moov after a failed check");
            } else {
                undo_append(&book, &s);
            }
            Err(e)
        }
    }
}

/// Truncates what an end-of-file edit appended (only valid while the old moov is in use).
fn undo_append(book: &Book, s: &Staged) {
    if s.new_len > book.len {
        let _ = book.file.set_len(book.len);
        let _ = book.file.sync_all();
    }
}

fn rewrite(path: &Path, book: Book, plan: &Plan, edit: &BookEdit) -> Result<(u64, Checked)> {
    let moov = book.moov();
    let m = mp4(path);
    for p in publish::clean_stale_pid_parts(path) {
        tracing::info!(path = %p.display(), "removed an unfinished edit of an earlier run");
    }
    // A part file (a job's `.part`, edited before it is published) is rewritten through its
    // `edit` sibling, which its owner records with it, so that recovery after a crash removes
    // it; a user's book through `.{name}.{pid}.part`, removed by the next edit once that
    // process is gone.
    let part = if publish::is_part_file(path) {
        PartFile::at(publish::sibling_temp(path, publish::EDIT_SIBLING))
    } else {
        PartFile::for_process(path)
    };
    // Which top-level boxes stay: everything but moov, padding and mdats no kept track uses.
    let chunks = moov::chunk_offsets(&moov, &plan.replaced_ids()).map_err(&m)?;
    let used = |b: &TopBox| chunks.iter().any(|&(o, _)| o >= b.offset && o < b.end());
    let kept: Vec<TopBox> = book
        .tops
        .iter()
        .filter(|b| b.kind != *b"moov")
        .filter(|b| used(b) || !matches!(&b.kind, b"free" | b"skip" | b"wide" | b"mdat"))
        .copied()
        .collect();
    let (ftyp, rest): (Vec<TopBox>, Vec<TopBox>) =
        kept.into_iter().partition(|b| b.kind == *b"ftyp");
    let head: u64 = ftyp.iter().map(|b| b.size).sum();
    let c_len = plan.chapter_mdat_len();
    // Lay out with an assumed moov size until the built moov fits it (see `padding_for`).
    let mut assumed = book.moov_top.size;
    let (new_moov, padding, positions) = loop {
        let pad = padding_for(assumed);
        let mut pos = head + assumed + pad + c_len;
        let mut positions = Vec::with_capacity(rest.len());
        for b in &rest {
            positions.push((*b, pos));
            pos += b.size;
        }
        let map = |o: u64| {
            positions
                .iter()
                .find(|(b, _)| o >= b.offset && o < b.end())
                .map(|(b, p)| p + (o - b.offset))
        };
        let built = plan
            .build(&moov, head + assumed + pad + 8, &map)
            .map_err(&m)?;
        let len = built.len() as u64;
        if len <= assumed {
            // A smaller moov leaves its difference to the padding.
            break (built, pad + (assumed - len), positions);
        }
        assumed = len.max(assumed + 8);
    };
    let wio = |e| Error::io(part.path(), "write the edited copy of the book", e);
    let written = (|| -> std::io::Result<u64> {
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(part.path())?;
        let mut w = BufWriter::with_capacity(1 << 20, out);
        let mut src = &book.file;
        let mut n = 0u64;
        for b in &ftyp {
            n += copy_box(&mut src, &mut w, b)?;
        }
        w.write_all(&new_moov)?;
        w.write_all(&moov::free_box(padding))?;
        n += new_moov.len() as u64 + padding;
        if c_len > 0 {
            let mut mdat = Vec::new();
            moov::push_box(&mut mdat, b"mdat", &plan.chapter_data);
            w.write_all(&mdat)?;
            n += c_len;
        }
        for (b, p) in &positions {
            debug_assert_eq!(*p, n);
            n += copy_box(&mut src, &mut w, b)?;
        }
        let out = w.into_inner().map_err(|e| e.into_error())?;
        out.set_permissions(fs::Permissions::from_mode(book.mode))?;
        out.sync_all()?;
        Ok(n)
    })()
    .map_err(wio)?;
    let checked = check(part.path(), &book, plan, edit, Some(&positions))?;
    fault("after-part");
    part.publish_to(path, Some(book.mode), true)
        .map_err(|e| Error::io(path, "replace the book with its edited copy", e))?;
    let mut checked = checked;
    checked.0.path = path.to_path_buf();
    Ok((written, checked))
}

fn copy_box(src: &mut &File, w: &mut impl Write, b: &TopBox) -> std::io::Result<u64> {
    src.seek(SeekFrom::Start(b.offset))?;
    let n = std::io::copy(&mut src.take(b.size), w)?;
    if n != b.size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the book ended {} bytes early", b.size - n),
        ));
    }
    Ok(n)
}

/// Verifies the edited file `written` (the book itself, or the part of a rewrite, whose data
/// boxes moved as `moved` says): see the module docs for what is checked.
fn check(
    written: &Path,
    old: &Book,
    plan: &Plan,
    edit: &BookEdit,
    moved: Option<&[(TopBox, u64)]>,
) -> Result<Checked> {
    let s = crate::verify::summarize(written)?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    // The audio: same packets, same tables, same bytes.
    let new = open_book(written, false)?;
    let new_moov = new.moov();
    let nf = moov::facts(&new_moov).map_err(mp4(written))?;
    if nf.packets != plan.facts.packets || s.length.packets != plan.facts.packets {
        problems.push(format!(
            "the audio has {} packets, it had {}",
            s.length.packets, plan.facts.packets
        ));
    }
    if nf.audio_tables != plan.facts.audio_tables {
        problems.push("the audio sample tables (stts/stsz/stsc) changed".into());
    }
    if let Some(moved) = moved {
        if let Err(p) = same_audio(old, &new, moved) {
            problems.push(p);
        }
    }
    // Chapters.
    if let Some(want) = &plan.chapters {
        let tol = DEFAULT_TOLERANCE_SAMPLES;
        let track = s
            .chapter_track
            .as_ref()
            .map(|t| &t.chapters[..])
            .unwrap_or(&[]);
        if !marks_match(track, want, usize::MAX, usize::MAX, tol) {
            problems.push(format!(
                "the chapter track holds {} chapter(s), not the {} asked for (or other titles/starts)",
                track.len(),
                want.len()
            ));
        }
        let chpl = s.chpl.as_ref().map(|c| &c.chapters[..]).unwrap_or(&[]);
        if !marks_match(chpl, want, moov::CHPL_MAX, moov::CHPL_TITLE_MAX, tol) {
            problems.push(format!(
                "chpl holds {} chapter(s), not the first {} asked for",
                chpl.len(),
                want.len().min(moov::CHPL_MAX)
            ));
        }
    }
    // Tags and cover.
    let t = &edit.tags;
    let want_text = |f: &FieldEdit, limit: usize| {
        f.value()
            .map(|v| v.map(|v| moov::cut(v, limit).to_string()))
    };
    let short = crate::model::MAX_TITLE_BYTES;
    let long = crate::model::MAX_LONG_TEXT_BYTES;
    // (field, what it should read back as (None: keep), where the reader shows it)
    type TagCheck<'a> = (&'a str, Option<Option<String>>, Vec<&'a Option<String>>);
    let tag_checks: [TagCheck<'_>; 9] = [
        ("title", want_text(&t.title, short), vec![&s.tags.title]),
        (
            "author",
            want_text(&t.author, short),
            vec![&s.tags.artist, &s.tags.album_artist],
        ),
        (
            "narrator",
            want_text(&t.narrator, short),
            vec![&s.tags.narrator, &s.tags.composer],
        ),
        ("series", want_text(&t.series, short), vec![&s.tags.series]),
        (
            "series part",
            want_text(&t.series_part, short),
            vec![&s.tags.series_part],
        ),
        ("genre", want_text(&t.genre, short), vec![&s.tags.genre]),
        ("year", want_text(&t.year, short), vec![&s.tags.date]),
        (
            "description",
            want_text(&t.description, long),
            vec![&s.tags.description, &s.tags.long_description],
        ),
        (
            "comment",
            want_text(&t.comment, long),
            vec![&s.tags.comment],
        ),
    ];
    for (name, want, got) in tag_checks {
        let Some(want) = want else { continue };
        for g in got {
            if *g != want {
                problems.push(format!("{name} reads back as {g:?}, not {want:?}"));
            }
        }
    }
    // The reader's summary has no values for these: their items must be there or gone.
    let key_checks = [
        ("publisher", &t.publisher, "©pub"),
        ("publisher", &t.publisher, "----:com.apple.iTunes:PUBLISHER"),
        ("grouping", &t.grouping, "©grp"),
        ("ASIN", &t.asin, "----:com.apple.iTunes:ASIN"),
    ];
    for (name, f, key) in key_checks {
        let Some(want) = f.value() else { continue };
        let has = s.tags.keys.iter().any(|k| k == key);
        if has != want.is_some() {
            problems.push(format!(
                "{name} ({key}) is {} after the edit",
                if has { "still there" } else { "missing" }
            ));
        }
    }
    match (&edit.cover, &s.cover) {
        (CoverEdit::Set(p), Some(c)) if c.in_covr && c.bytes == p.data.len() as u64 => {}
        (CoverEdit::Set(_), c) => problems.push(format!("the cover reads back as {c:?}")),
        (CoverEdit::Remove, Some(c)) if c.in_covr => {
            problems.push("the cover is still there".into())
        }
        _ => {}
    }
    if s.length.decode_errors > 0 {
        warnings.push(format!(
            "{} audio packet(s) do not decode (first: {}); the audio bytes are unchanged, so the \
             book had them before",
            s.length.decode_errors,
            s.length.first_decode_error.as_deref().unwrap_or("?")
        ));
    }
    warnings.extend(
        s.inconsistencies
            .iter()
            .map(|i| format!("the reader notes: {i}")),
    );
    if std::env::var(FAULT_ENV).is_ok_and(|v| v == "fail-check") {
        problems.push(format!(
            "{FAULT_ENV}=fail-check: the check fails as asked (test hook)"
        ));
    }
    if problems.is_empty() {
        Ok((s, warnings))
    } else {
        Err(Error::Verify {
            path: written.to_path_buf(),
            problems,
        })
    }
}

fn marks_match(
    got: &[crate::verify::ChapterMark],
    want: &[Chapter],
    max: usize,
    title_max: usize,
    tol: u64,
) -> bool {
    let n = want.len().min(max);
    got.len() == n
        && got.iter().zip(want).all(|(g, w)| {
            g.title == moov::cut(&w.title, title_max)
                && g.start_samples.abs_diff(w.start_samples) <= tol
        })
}

/// Compares every audio chunk of the old file with the chunk it became in the new one.
fn same_audio(old: &Book, new: &Book, moved: &[(TopBox, u64)]) -> std::result::Result<(), String> {
    let o = old.moov();
    let n = new.moov();
    let (Ok(of), Ok(nf)) = (moov::facts(&o), moov::facts(&n)) else {
        return Err("the audio track cannot be read back".into());
    };
    let oc = moov::chunk_offsets(&o, &other_ids(&of)).map_err(|e| e.reason)?;
    let nc = moov::chunk_offsets(&n, &other_ids(&nf)).map_err(|e| e.reason)?;
    if oc.len() != nc.len() {
        return Err(format!(
            "the audio has {} chunks, it had {}",
            nc.len(),
            oc.len()
        ));
    }
    let mut a = vec![0u8; 1 << 20];
    let mut b = vec![0u8; 1 << 20];
    for (i, (&(oo, len), &(no, nlen))) in oc.iter().zip(&nc).enumerate() {
        let expect = moved
            .iter()
            .find(|(bx, _)| oo >= bx.offset && oo < bx.end())
            .map(|(bx, p)| p + (oo - bx.offset));
        if expect != Some(no) || len != nlen {
            return Err(format!("audio chunk {} is not where its data moved", i + 1));
        }
        let mut done = 0u64;
        while done < len {
            let k = (len - done).min(a.len() as u64) as usize;
            let r1 = old.file.read_exact_at(&mut a[..k], oo + done);
            let r2 = new.file.read_exact_at(&mut b[..k], no + done);
            if r1.is_err() || r2.is_err() || a[..k] != b[..k] {
                return Err(format!("audio chunk {} differs from the original", i + 1));
            }
            done += k as u64;
        }
    }
    Ok(())
}

/// Every track ID but the audio's (to list the audio chunks alone).
fn other_ids(f: &MoovFacts) -> Vec<u32> {
    f.track_ids
        .iter()
        .copied()
        .filter(|&id| id != f.audio_id)
        .collect()
}
