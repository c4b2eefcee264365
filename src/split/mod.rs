//! Splitting a finished book into parts at chapter boundaries, without re-encoding.
//!
//! Sequence: read the source with our own box reader (`source.rs`: packets, priming, the
//! AudioSpecificConfig, the cover; tags and chapters from [`verify::summarize`]) → [`plan`]
//! the parts (pure, `plan.rs`) → refuse if any final name exists → write every part to a
//! hidden temporary beside its final place with the same muxer, tags and verification as
//! `convert` → publish all parts without replacing anything. On any failure every temporary
//! is removed, and parts published before the failure are removed again, so a split leaves all
//! its parts or none.
//!
//! **Exact timeline.** The packets are copied byte for byte. A part covering presentation
//! samples [s, e) of the source needs the media from `s + priming`. An AAC frame's output
//! overlaps the previous frame (MDCT overlap-add), so the part starts one packet *before* the
//! packet holding that sample ([`PREROLL_PACKETS`]) and hides that pre-roll packet plus the
//! offset into the next one as its own priming: its first packet gets pts `−priming`, and the
//! muxer (movenc) turns the negative start into the edit list's `media_time`, whatever its
//! size (movenc writes `media_time = −first dts`; one to two frames here). The part's last
//! packet gets the duration up to `e` (as the encoder's last packet ends the book), so the
//! part's presentation ends exactly at `e`. Decoded and joined, the parts give the source's
//! decoded samples exactly (tested with FFmpeg's decoder, which honours edit lists).
//! One caveat: a decoder's noise generator (AAC perceptual noise substitution) runs on from
//! the start of the file, so frames with PNS decode to different noise; FFmpeg's encoder uses
//! PNS only on noise-like bands at low bitrates.
mod plan;
mod source;

pub(crate) use source::extras_of;

pub use plan::{plan, ChapterSpan, PlannedPart};

use crate::av::aac::StreamParams;
use crate::av::encode::EncodedPacket;
use crate::av::mux::{narrator_series_metadata, Brand, M4bMuxer, MuxChapter, MuxerKind};
use crate::error::{Error, Result};
use crate::model::{BookMetadata, Chapter};
use crate::publish::PartFile;
use crate::verify::{self, Expectations, TagSummary};
use serde::Serialize;
use source::Source;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Packets decoded before a part's first sample and hidden by its edit list. One is enough
/// for AAC-LC: a frame's output depends only on the previous frame's overlap. HE-AAC's SBR
/// filter banks reach further back, so it gets two (not tested sample for sample: no
/// decoder at hand decodes SBR identically in both files).
pub const PREROLL_PACKETS: usize = 1;
const PREROLL_PACKETS_SBR: usize = 2;

/// Bytes every part costs besides its chapters' packets, its tags and its cover (`ftyp`, the
/// `moov` skeleton, the chapter track, `free` padding): a few KB measured, 16 KiB allowed, so
/// that `--max-size` is a ceiling, not a target.
const PART_OVERHEAD_BYTES: u64 = 16 << 10;
/// Sample-table bytes per packet (stsz 4, stts/stsc/stco amortized), for `--max-size`.
const TABLE_BYTES_PER_PACKET: u64 = 8;

/// How to cut the book.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitBy {
    /// Parts of at most this many seconds (greedy; a longer chapter is a part of its own).
    MaxDuration(f64),
    /// Parts of at most this many bytes (greedy; a larger chapter is a part of its own).
    MaxSize(u64),
    /// This many parts of about equal length.
    Parts(usize),
    /// One `.m4a` per chapter.
    ByChapter,
}

/// What [`split_book`] does.
#[derive(Debug, Clone)]
pub struct SplitOptions {
    /// Where to cut.
    pub by: SplitBy,
    /// Folder for the parts; `None` = beside the book.
    pub out_dir: Option<PathBuf>,
    /// The name the part names start with (`{name} - Part k of n.m4b`); `None` = the book's
    /// title tag, else its file name.
    pub name: Option<String>,
}

impl SplitOptions {
    /// Cut by `by`, parts beside the book, named after its title.
    pub fn new(by: SplitBy) -> Self {
        SplitOptions {
            by,
            out_dir: None,
            name: None,
        }
    }
}

/// One written part.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PartInfo {
    /// The published part.
    pub path: PathBuf,
    /// Where the part starts in the source, in presentation samples.
    pub start_samples: u64,
    /// The part's length in samples.
    pub samples: u64,
    /// The part's chapters, starts relative to the part.
    pub chapters: Vec<Chapter>,
    /// The part's file size.
    pub bytes: u64,
}

/// What a split did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SplitReport {
    /// The book that was split.
    pub source: PathBuf,
    /// Its sample rate (the unit of the sample counts).
    pub sample_rate: u32,
    /// The parts, in order.
    pub parts: Vec<PartInfo>,
    /// Soft problems (a chapter over the limit, a cover that could not be copied).
    pub warnings: Vec<String>,
}

/// The source's chapters as spans covering [0, total): the first starts at 0 (audio before
/// the first mark belongs to it), marks past the end or out of order are dropped.
fn chapter_list(src: &Source) -> Vec<Chapter> {
    let s = &src.summary;
    let marks = s
        .chapter_track
        .as_ref()
        .map(|t| &t.chapters)
        .filter(|c| !c.is_empty())
        .or(s.chpl.as_ref().map(|c| &c.chapters))
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<Chapter> = Vec::new();
    for m in marks {
        let start = if out.is_empty() { 0 } else { m.start_samples };
        if start >= src.total_samples || out.last().is_some_and(|l| start <= l.start_samples) {
            continue;
        }
        out.push(Chapter {
            title: m.title,
            start_samples: start,
        });
    }
    out
}

fn spans(src: &Source, chapters: &[Chapter]) -> Vec<ChapterSpan> {
    chapters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let end = chapters
                .get(i + 1)
                .map_or(src.total_samples, |n| n.start_samples);
            let (a, b) = (
                src.priming_media + src.to_media(c.start_samples),
                src.priming_media + src.to_media(end),
            );
            let bytes = src
                .packets
                .iter()
                .filter(|p| p.start >= a && p.start < b)
                .map(|p| p.size as u64 + TABLE_BYTES_PER_PACKET)
                .sum();
            ChapterSpan {
                start: c.start_samples,
                end,
                bytes,
            }
        })
        .collect()
}

/// The source's tags as the metadata convert writes.
pub fn book_metadata(t: &TagSummary) -> BookMetadata {
    BookMetadata {
        title: t.title.clone(),
        author: t.artist.clone().or_else(|| t.album_artist.clone()),
        narrator: t.narrator.clone().or_else(|| t.composer.clone()),
        album: t.album.clone(),
        genre: t.genre.clone(),
        year: t.date.clone(),
        description: t.long_description.clone().or_else(|| t.description.clone()),
        comment: t.comment.clone(),
        series: t.series.clone(),
        series_part: t.series_part.clone(),
    }
}

/// Plans the split of `path` without writing anything: the parts and the warnings.
pub fn plan_book(path: &Path, by: &SplitBy) -> Result<(Vec<PlannedPart>, Vec<String>)> {
    let src = source::read(path)?;
    plan_source(&src, by)
}

fn plan_source(src: &Source, by: &SplitBy) -> Result<(Vec<PlannedPart>, Vec<String>)> {
    let chapters = chapter_list(src);
    let t = &src.summary.tags;
    // Every text tag, twice: the description is written as `desc` and `ldes`, the narrator
    // as `©nrt` and `©wrt`, the series in three items; plus 64 bytes of box headers each.
    let tags: u64 = [
        &t.title,
        &t.artist,
        &t.album_artist,
        &t.album,
        &t.composer,
        &t.genre,
        &t.date,
        &t.comment,
        &t.description,
        &t.long_description,
        &t.narrator,
        &t.series,
        &t.series_part,
    ]
    .iter()
    .map(|v| v.as_ref().map_or(0, |s| 2 * s.len() as u64 + 64))
    .sum();
    let chapter_titles: u64 = chapters.iter().map(|c| 2 * c.title.len() as u64 + 32).sum();
    let overhead = PART_OVERHEAD_BYTES
        + tags
        + chapter_titles
        + src.cover.as_ref().map_or(0, |c| c.data.len() as u64);
    plan(&spans(src, &chapters), src.rate, overhead, by).map_err(|e| match e {
        Error::Options(m) => Error::Options(format!("{}: {m}", src.path.display())),
        e => e,
    })
}

/// Splits `path` into parts as `opts` says; all parts are written and verified before any is
/// published, and none replaces an existing file.
pub fn split_book(path: &Path, opts: &SplitOptions) -> Result<SplitReport> {
    let src = source::read(path)?;
    let (parts, warnings) = plan_source(&src, &opts.by)?;
    let by_chapter = opts.by == SplitBy::ByChapter;
    if parts.len() < 2 && !by_chapter {
        return Err(Error::Options(format!(
            "{}: the book fits in one part ({} chapter(s), {:.0} s); nothing to split",
            path.display(),
            chapter_list(&src).len(),
            src.total_samples as f64 / src.rate as f64
        )));
    }
    let dir = match &opts.out_dir {
        Some(d) => d.clone(),
        None => path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(&dir, "cannot create the folder for the parts", e))?;
    let finals = part_paths(&src, &parts, &dir, opts);
    let prepared = PreparedSplit {
        src,
        parts,
        finals,
        by_chapter,
        warnings,
    };
    prepared.run(false)
}

fn part_paths(
    src: &Source,
    parts: &[PlannedPart],
    dir: &Path,
    opts: &SplitOptions,
) -> Vec<PathBuf> {
    let n = parts.len();
    let name = opts
        .name
        .clone()
        .or_else(|| src.summary.tags.title.clone())
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| {
            src.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let chapters = chapter_list(src);
    let width = n.to_string().len().max(2);
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if opts.by == SplitBy::ByChapter {
                let title = &chapters[p.first_chapter].title;
                let stem =
                    crate::sanitize::sanitize_file_stem(&format!("{:0width$} - {title}", i + 1));
                dir.join(format!("{stem}.m4a"))
            } else {
                let stem =
                    crate::sanitize::sanitize_file_stem(&format!("{name} - Part {} of {n}", i + 1));
                dir.join(format!("{stem}.m4b"))
            }
        })
        .collect()
}

/// A split planned on a finished book, its part names chosen, nothing written yet: the
/// steps of [`split_book`] one by one, for a caller that records each step (the workflow
/// names the temporaries in its job record before they exist, and the parts before they are
/// published, so that recovery after a crash knows them).
pub struct PreparedSplit {
    src: Source,
    parts: Vec<PlannedPart>,
    finals: Vec<PathBuf>,
    by_chapter: bool,
    warnings: Vec<String>,
}

impl PreparedSplit {
    /// Plans the split of the finished (verified) temporary `book` into parts named after
    /// `final_path` (`{stem} - Part k of n.m4b` beside it). `Ok(None)` when the book fits in
    /// one part: the caller publishes it as it is.
    pub fn new(book: &Path, final_path: &Path, by: &SplitBy) -> Result<Option<PreparedSplit>> {
        let src = source::read(book)?;
        let (parts, warnings) = plan_source(&src, by)?;
        if parts.len() < 2 {
            return Ok(None);
        }
        let mut split = PreparedSplit {
            src,
            parts,
            finals: Vec::new(),
            by_chapter: false,
            warnings,
        };
        split.retarget(final_path);
        Ok(Some(split))
    }

    /// Names the parts after `final_path` instead (`{stem} - Part k of n.m4b` beside it): the
    /// next candidate when a name is taken.
    pub fn retarget(&mut self, final_path: &Path) {
        let dir = final_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let opts = SplitOptions {
            by: SplitBy::Parts(self.parts.len()),
            out_dir: None,
            name: final_path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned()),
        };
        self.finals = part_paths(&self.src, &self.parts, &dir, &opts);
    }

    /// Where the parts will be published, in order.
    pub fn finals(&self) -> &[PathBuf] {
        &self.finals
    }

    /// All steps for a caller without a job record: names checked (unless `overwrite`),
    /// parts written to the library's `.{name}.{pid}.part` temporaries, then published.
    pub fn run(self, overwrite: bool) -> Result<SplitReport> {
        if !overwrite {
            self.check_names()?;
        }
        let temps = self
            .finals
            .iter()
            .map(|f| PartFile::for_process(f).keep())
            .collect::<Vec<_>>();
        self.write(&temps, |_| {})?.publish(None, overwrite, |_| {})
    }

    /// `Err(OutputExists)` when a part's name is taken (nothing is written then), or an
    /// options error when two parts would get the same name.
    pub fn check_names(&self) -> Result<()> {
        for f in &self.finals {
            if std::fs::symlink_metadata(f).is_ok() {
                return Err(Error::OutputExists(f.clone()));
            }
        }
        let mut names = std::collections::HashSet::new();
        if let Some(dup) = self.finals.iter().find(|f| !names.insert(*f)) {
            return Err(Error::Options(format!(
                "{}: two parts would get the same name (chapters with the same title?); split by parts or duration instead",
                dup.display()
            )));
        }
        Ok(())
    }

    /// Writes and verifies every part to `temps` (one per part, in order, each beside its
    /// final place), calling `after_each(k)` once part k (0-based) is written. On failure every
    /// temporary written is removed.
    pub fn write(
        self,
        temps: &[PathBuf],
        mut after_each: impl FnMut(usize),
    ) -> Result<WrittenSplit> {
        let PreparedSplit {
            src,
            parts,
            finals,
            by_chapter,
            mut warnings,
        } = self;
        assert_eq!(temps.len(), finals.len(), "one temporary per part");
        let cover = match &src.cover {
            Some(c) => match crate::convert::check_cover(c, &src.path) {
                Ok(c) => Some(c),
                Err(e) => {
                    warnings.push(format!("the cover is not copied: {e}"));
                    None
                }
            },
            None => None,
        };
        let chapters = chapter_list(&src);
        let book = book_metadata(&src.summary.tags);
        let n = parts.len();
        let mut written = Vec::with_capacity(n);
        let mut infos = Vec::with_capacity(n);
        for (i, ((p, fin), temp)) in parts.iter().zip(&finals).zip(temps).enumerate() {
            let temp = PartFile::at(temp);
            let part_chapters: Vec<Chapter> = chapters
                [p.first_chapter..p.first_chapter + p.chapter_count]
                .iter()
                .map(|c| Chapter {
                    title: c.title.clone(),
                    start_samples: c.start_samples - p.start,
                })
                .collect();
            let mut meta = book.clone();
            meta.album = book.album.clone().or_else(|| book.title.clone());
            meta.title = Some(if by_chapter {
                chapters[p.first_chapter].title.clone()
            } else {
                match &book.title {
                    Some(t) => format!("{t} (Part {} of {n})", i + 1),
                    None => format!("Part {} of {n}", i + 1),
                }
            });
            write_part(
                &src,
                p,
                &part_chapters,
                &meta,
                (i + 1, n, if by_chapter { Brand::M4a } else { Brand::M4b }),
                cover.as_ref(),
                temp.path(),
            )?;
            let bytes = std::fs::metadata(temp.path()).map(|m| m.len()).unwrap_or(0);
            infos.push(PartInfo {
                path: fin.clone(),
                start_samples: p.start,
                samples: p.end - p.start,
                chapters: part_chapters,
                bytes,
            });
            written.push(temp);
            after_each(i);
        }
        Ok(WrittenSplit {
            source: src.path.clone(),
            sample_rate: src.rate,
            temps: written,
            finals,
            infos,
            warnings,
        })
    }
}

/// Every part written and verified to its temporary, none published yet.
pub struct WrittenSplit {
    source: PathBuf,
    sample_rate: u32,
    temps: Vec<PartFile>,
    finals: Vec<PathBuf>,
    infos: Vec<PartInfo>,
    warnings: Vec<String>,
}

impl WrittenSplit {
    /// Where the parts will be published, in order.
    pub fn finals(&self) -> &[PathBuf] {
        &self.finals
    }

    /// Publishes every part (permissions `mode`; replacing a file only with `overwrite`),
    /// calling `after_each(k)` after part k (0-based) is in place. All or nothing: when one
    /// cannot be published, the parts already published (ours, just made) are removed again
    /// and every temporary is removed.
    pub fn publish(
        self,
        mode: Option<u32>,
        overwrite: bool,
        mut after_each: impl FnMut(usize),
    ) -> Result<SplitReport> {
        let mut published: Vec<PathBuf> = Vec::with_capacity(self.finals.len());
        for (k, (temp, fin)) in self.temps.into_iter().zip(&self.finals).enumerate() {
            if let Err(e) = temp.publish_to(fin, mode, overwrite) {
                for p in &published {
                    let _ = std::fs::remove_file(p);
                }
                return Err(match e.kind() {
                    std::io::ErrorKind::AlreadyExists => Error::OutputExists(fin.clone()),
                    _ => Error::io(fin, "cannot move the finished part into place", e),
                });
            }
            published.push(fin.clone());
            after_each(k);
        }
        Ok(SplitReport {
            source: self.source,
            sample_rate: self.sample_rate,
            parts: self.infos,
            warnings: self.warnings,
        })
    }
}

/// Writes one part to `out` (muxed, tagged, flushed, verified); `out` is removed by its
/// caller's [`PartFile`] on error.
fn write_part(
    src: &Source,
    p: &PlannedPart,
    chapters: &[Chapter],
    meta: &BookMetadata,
    (k, n, brand): (usize, usize, Brand),
    cover: Option<&crate::model::Picture>,
    out: &Path,
) -> Result<()> {
    let pk = &src.packets;
    let m0 = src.priming_media + src.to_media(p.start);
    let m1 = src.priming_media + src.to_media(p.end);
    let first = pk.partition_point(|x| x.start <= m0).saturating_sub(1);
    let preroll = if src.summary.profile.as_deref() == Some("LC") {
        PREROLL_PACKETS
    } else {
        PREROLL_PACKETS_SBR
    };
    let a = first.saturating_sub(preroll);
    let last = pk.partition_point(|x| x.start < m1);
    if last <= a {
        return Err(Error::Options(format!(
            "{}: part {k} ({}..{} samples) holds no audio packet",
            src.path.display(),
            p.start,
            p.end
        )));
    }
    let priming_media = m0 - pk[a].start;
    let params = StreamParams {
        sample_rate: src.rate,
        channels: src.summary.channels,
        bitrate_bps: src.summary.bitrate_bps,
        frame_samples: src.to_samples(pk[a].duration.max(1)) as usize,
        priming_samples: src.to_samples(priming_media),
        extradata: src.asc.clone(),
        media_timescale: src.media_timescale,
    };
    let mut metadata = crate::convert::mux_metadata(meta);
    metadata.push(("track".into(), format!("{k}/{n}")));
    let muxer = MuxerKind::from_env();
    metadata.extend(narrator_series_metadata(
        meta.narrator.as_deref(),
        meta.series.as_deref(),
        meta.series_part.as_deref(),
    ));
    let mut mux = M4bMuxer::create_with(muxer, out, &params, &metadata, cover, brand)?
        .expect_samples(p.end - p.start, &params)
        .expect_chapters(
            &chapters
                .iter()
                .map(|c| c.title.as_str())
                .collect::<Vec<_>>(),
        );
    let mut buf = Vec::new();
    for x in &pk[a..last] {
        buf.resize(x.size as usize, 0);
        src.file
            .read_exact_at(&mut buf, x.offset)
            .map_err(|e| Error::io(&src.path, "read an audio packet", e))?;
        let end = (x.start + x.duration).min(m1);
        mux.write(&EncodedPacket {
            data: buf.clone(),
            pts: src.to_samples(x.start) - src.to_samples(m0),
            duration: src.to_samples(end) - src.to_samples(x.start),
        })?;
    }
    let span = p.end - p.start;
    let mux_chapters: Vec<MuxChapter> = chapters
        .iter()
        .enumerate()
        .map(|(i, c)| MuxChapter {
            title: c.title.clone(),
            start: c.start_samples as i64,
            end: chapters.get(i + 1).map_or(span, |n| n.start_samples) as i64,
        })
        .collect();
    mux.finish(&mux_chapters)?;
    let has_extras = meta.narrator.is_some() || meta.series.is_some() || meta.series_part.is_some();
    if has_extras && muxer == MuxerKind::Libavformat {
        crate::mp4tags::write_extra_items(
            out,
            meta.narrator.as_deref(),
            meta.series.as_deref(),
            meta.series_part.as_deref(),
        )?;
    }
    std::fs::File::open(out)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(out, "cannot flush the part to disk", e))?;

    let exp = Expectations {
        total_samples: Some(span),
        chapters: Some(chapters.to_vec()),
        metadata: Some(meta.clone()),
        cover: cover.is_some(),
        profile: None,
        ..Expectations::new(src.rate, src.summary.channels)
    };
    let s = verify::summarize(out)?;
    let mut problems = verify::check(&s, &exp);
    if s.decoded_samples != span {
        problems.push(format!(
            "the part is {} samples long, not exactly the {span} samples of its chapters",
            s.decoded_samples
        ));
    }
    if s.tags.media_type != Some(2) {
        problems.push(format!(
            "media type (stik) is {:?}, not 2 (audiobook)",
            s.tags.media_type
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Verify {
            path: out.to_path_buf(),
            problems,
        })
    }
}

/// Parses a duration such as `20h`, `1h30m`, `90m`, `45s`, `3600` (seconds) or `1:30:00`.
pub fn parse_duration_secs(s: &str) -> std::result::Result<f64, String> {
    crate::chapters::parse_duration(s)
        .filter(|v| *v > 0.0)
        .ok_or_else(|| format!("{s:?}: expected a duration such as 20h, 1h30m, 90m or 1:30:00"))
}

/// Parses a size such as `2GB`, `500MB`, `1.5G` (powers of 1000) or `2GiB` (powers of 1024).
pub fn parse_size_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let err = || format!("{s:?}: expected a size such as 2GB, 500MB or 4GiB");
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| err())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024f64.powi(4),
        _ => return Err(err()),
    };
    let b = v * mult;
    if b.is_finite() && b >= 1.0 && b < u64::MAX as f64 {
        Ok(b as u64)
    } else {
        Err(err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("20h").unwrap(), 72000.0);
        assert_eq!(parse_duration_secs("1h30m").unwrap(), 5400.0);
        assert_eq!(parse_duration_secs("90m").unwrap(), 5400.0);
        assert_eq!(parse_duration_secs("7.5s").unwrap(), 7.5);
        assert_eq!(parse_duration_secs("3600").unwrap(), 3600.0);
        assert_eq!(parse_duration_secs("1:30:00").unwrap(), 5400.0);
        for bad in ["", "h", "10x", "0", "-5", "1h30"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size_bytes("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size_bytes("500mb").unwrap(), 500_000_000);
        assert_eq!(parse_size_bytes("1.5G").unwrap(), 1_500_000_000);
        assert_eq!(parse_size_bytes("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size_bytes("1234").unwrap(), 1234);
        for bad in ["", "GB", "2XB", "0"] {
            assert!(parse_size_bytes(bad).is_err(), "{bad}");
        }
    }
}
