//! Scan + validate + probe → the [`Book`] to write: order, chapter titles, metadata, cover,
//! target format and output name. `aiom4b probe` shows exactly this; `convert` executes it.
//!
//! Validation collects every problem at once (each naming its file and what to do) instead of
//! stopping at the first.
use crate::error::{Error, Result};
use crate::model::*;
use crate::options::{validate_target, ChapterTitles, Limits, Order, PlanOptions, ScanOptions};
use crate::{probe, sanitize, scan};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Everything the input phase found: the book when it can be converted, and all findings.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct Inspection {
    /// What the scan found in each input folder, in the order given.
    pub folders: Vec<FolderSummary>,
    /// The plan; `None` when a finding of severity error blocks conversion.
    pub book: Option<Book>,
    /// All findings, errors first.
    pub findings: Vec<Finding>,
    /// Whether the order came from ID3 disc/track numbers (`--order tags`).
    pub ordered_by_tags: bool,
}

impl Inspection {
    /// The findings of severity [`Severity::Error`]: what blocks the conversion.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
}

/// Puts the files named in `order` (relative paths) first, in that order; the others keep
/// their relative order after them. A stable sort by position, so it never drops a file.
fn reorder(files: &mut [crate::model::ScannedFile], order: &[PathBuf]) {
    let pos = |f: &crate::model::ScannedFile| {
        order
            .iter()
            .position(|p| *p == f.rel_path)
            .unwrap_or(order.len())
    };
    files.sort_by_key(pos);
}

/// Replaces planned chapter titles by the non-empty `overrides` of the same position (cut to
/// the title limit as planned titles are).
fn override_titles(titles: &mut [String], overrides: &[String]) -> Result<()> {
    if overrides.len() > titles.len() {
        return Err(Error::Options(format!(
            "{} chapter titles for {} files; the folder changed since the plan was shown, so \
             review the plan again",
            overrides.len(),
            titles.len()
        )));
    }
    for (t, o) in titles.iter_mut().zip(overrides) {
        let o = o.trim();
        if !o.is_empty() {
            *t = crate::sanitize::truncate_utf8(o, crate::model::MAX_TITLE_BYTES)
                .trim_end()
                .to_owned();
        }
    }
    Ok(())
}

/// Plans the conversion of `folders`, failing with [`Error::Invalid`] listing every blocking problem.
pub fn plan(
    folders: &[PathBuf],
    scan_opts: &ScanOptions,
    limits: &Limits,
    opts: &PlanOptions,
) -> Result<Book> {
    let ins = inspect(folders, scan_opts, limits, opts)?;
    match ins.book {
        Some(b) => Ok(b),
        None => Err(Error::Invalid(
            ins.findings
                .into_iter()
                .filter(|f| f.severity == Severity::Error)
                .collect(),
        )),
    }
}

/// Runs the whole input phase and returns what it found, even when the input is not convertible.
/// `Err` only for option errors (e.g. an impossible target format or an unreadable `--cover`).
pub fn inspect(
    folders: &[PathBuf],
    scan_opts: &ScanOptions,
    limits: &Limits,
    opts: &PlanOptions,
) -> Result<Inspection> {
    let s = scan::scan(folders, scan_opts);
    let mut findings = s.findings.clone();
    let mut files = s.files.clone();
    if !opts.track_order.is_empty() {
        reorder(&mut files, &opts.track_order);
    }

    // Size limits.
    let max_file = limits.max_file_size_mb.saturating_mul(1 << 20);
    let mut too_large = vec![false; files.len()];
    for (i, f) in files.iter().enumerate() {
        if f.size_bytes > max_file {
            too_large[i] = true;
            findings.push(
                Finding::error(
                    FindingKind::FileTooLarge,
                    &f.path,
                    format!(
                        "{} MB is over the {} MB limit per file",
                        f.size_bytes >> 20,
                        limits.max_file_size_mb
                    ),
                )
                .with_remedy("raise the per-file size limit (MAX_FILE_SIZE_MB), or split the file"),
            );
        }
    }
    let total: u64 = files.iter().map(|f| f.size_bytes).sum();
    if total > limits.max_total_size_mb.saturating_mul(1 << 20) {
        findings.push(
            Finding::new(
                Severity::Error,
                FindingKind::TotalTooLarge,
                folders.first().cloned(),
                format!(
                    "the input totals {} MB, over the {} MB limit",
                    total >> 20,
                    limits.max_total_size_mb
                ),
            )
            .with_remedy(
                "raise the total size limit (MAX_TOTAL_SIZE_MB), or convert the folders separately",
            ),
        );
    }

    // Content: FFmpeg (the one demuxer the file's first bytes call for, see `av::input`)
    // decodes the first frames of every file in parallel; a cheap MP3 sniff gives a precise
    // reason when that fails.
    let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    let results = probe::probe_all_as(&paths, scan_opts.inputs);
    let mut infos: Vec<Option<TrackInfo>> = Vec::with_capacity(files.len());
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(info) if !too_large[i] => infos.push(Some(info)),
            Ok(_) => infos.push(None),
            Err(e) => {
                let path = &files[i].path;
                // Under MP3-only validation, a file that is plainly another container is
                // named for what it is (sniffed once, only for a file that failed).
                let other_container = if scan_opts.inputs.is_mp3_only() {
                    scan::sniff_container(path)
                        .ok()
                        .filter(|c| *c != scan::Container::Mpeg)
                } else {
                    None
                };
                let (kind, msg) = match (&e, scan::sniff_mp3(path)) {
                    // A file that cannot be opened (no read permission) is not "not an MP3":
                    // the sniffer cannot open it either, so this comes first.
                    (Error::Io { source, .. }, _) => {
                        (FindingKind::Unreadable, format!("cannot be read: {source}"))
                    }
                    (_, Err(reason)) if files[i].size_bytes == 0 => {
                        (FindingKind::EmptyFile, reason)
                    }
                    _ if other_container.is_some() => (
                        FindingKind::NotMp3,
                        format!(
                            "is {} audio, not MP3: only MP3 is accepted (ALLOWED_INPUTS=mp3)",
                            other_container.map_or("other", |c| c.label())
                        ),
                    ),
                    (Error::NotAudio { reason, .. }, _) => (
                        FindingKind::NotMp3,
                        format!("not a usable audio file: {reason}"),
                    ),
                    (_, Err(reason)) => (FindingKind::NotMp3, format!("not an MP3 file: {reason}")),
                    (Error::NotMp3 { reason, .. }, Ok(())) => (
                        FindingKind::NotMp3,
                        format!("not a decodable MP3: {reason}"),
                    ),
                    (other, _) => (FindingKind::NotMp3, other.to_string()),
                };
                let remedy = match kind {
                    FindingKind::Unreadable => {
                        "check its permissions (chmod +r) or remove it from the folder"
                    }
                    _ if scan_opts.inputs.is_mp3_only() => {
                        "remove it from the folder or replace it with a good MP3 copy"
                    }
                    _ => "remove it from the folder or replace it with a good copy",
                };
                findings.push(Finding::error(kind, path, msg).with_remedy(remedy));
                infos.push(None);
            }
        }
    }

    // A book aiom4b wrote, lying next to the files it was made from (converted into the source
    // folder, then converted again): it would be converted into itself, doubling the audio.
    // Such books are left out when the folder holds anything else; books of aiom4b's alone
    // (parts of a split) are merged as asked.
    let own = |i: &Option<TrackInfo>| i.as_ref().is_some_and(|i| i.made_by_aiom4b);
    if infos.iter().any(own) && !infos.iter().all(own) {
        let mut kept_files = Vec::with_capacity(files.len());
        let mut kept_infos = Vec::with_capacity(infos.len());
        for (f, i) in files.into_iter().zip(infos) {
            if own(&i) {
                findings.push(
                    Finding::warning(
                        FindingKind::SkippedEntry,
                        Some(f.path.clone()),
                        "is a book aiom4b wrote; left out, so the book is not converted into itself",
                    )
                    .with_remedy("move it out of the folder, or convert it on its own"),
                );
            } else {
                kept_files.push(f);
                kept_infos.push(i);
            }
        }
        files = kept_files;
        infos = kept_infos;
    }

    // --order tags: disc/track numbers from ID3 when every file has them.
    let mut ordered_by_tags = false;
    if scan_opts.order == Order::Tags && infos.iter().all(Option::is_some) {
        let keys: Vec<(Option<u32>, Option<u32>)> = infos
            .iter()
            .map(|i| {
                i.as_ref()
                    .map(|i| (i.tags.disc, i.tags.track))
                    .unwrap_or((None, None))
            })
            .collect();
        let idx: Vec<usize> = match scan::tag_order(&files, &keys) {
            Some(order) => {
                ordered_by_tags = true;
                order
            }
            None => (0..files.len()).collect(),
        };
        files = idx.iter().map(|i| files[*i].clone()).collect();
        let mut reordered = Vec::with_capacity(infos.len());
        for i in idx {
            reordered.push(infos[i].take());
        }
        infos = reordered;
    }

    findings.extend(truncation_findings(&mut infos, opts.allow_damaged));

    let blocked = findings.iter().any(|f| f.severity == Severity::Error);
    let mut ins = Inspection {
        folders: s.folders.clone(),
        book: None,
        findings,
        ordered_by_tags,
    };
    if blocked {
        sort_findings(&mut ins.findings);
        return Ok(ins);
    }
    let tracks_info: Vec<TrackInfo> = infos
        .into_iter()
        .map(|i| i.expect("no errors, so every file probed"))
        .collect();
    let book = build_book(
        folders,
        &s.folders,
        &files,
        tracks_info,
        opts,
        &mut ins.findings,
    )?;
    sort_findings(&mut ins.findings);
    ins.book = Some(book);
    Ok(ins)
}

/// Finds the files that were cut short, so `probe` reports them too and a conversion refuses
/// them before it starts: MP3s that hold less audio than their LAME/Xing header announces
/// (judged as `convert` judges them when it decodes them, same slack), and Ogg files that end
/// inside a page ([`ogg_ending`]).
///
/// An MP3 counts as truncated when it is both shorter in bytes than the header's byte count
/// and shorter in samples than its exact sample count (by the packet index: demuxing without
/// decoding, a fraction of a second per hour of audio, in parallel). Only the first needs no
/// more than a look at the header, so a complete file costs nothing more to plan. A file that
/// has all its bytes but fewer frames is damaged inside, which only decoding can tell and
/// name: that is left to the conversion, as are files without the header's counts (nothing
/// tells a truncated one from a short one) and an index that fails.
///
/// A truncated file's [`TrackInfo`] then carries the length it really has, so the plan's
/// duration is right and a conversion that accepts it (`allow_damaged`) does not report it a
/// second time.
fn truncation_findings(infos: &mut [Option<TrackInfo>], allow_damaged: bool) -> Vec<Finding> {
    use rayon::prelude::*;
    let mut found: Vec<(usize, Finding)> = infos
        .par_iter_mut()
        .enumerate()
        .filter_map(|(i, info)| {
            let info = info.as_mut()?;
            let f = match info.format {
                InputFormat::Mp3 => mp3_truncation(info, allow_damaged),
                InputFormat::Opus | InputFormat::Vorbis => ogg_ending(info, allow_damaged),
                _ => None,
            };
            f.map(|f| (i, f))
        })
        .collect();
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, f)| f).collect()
}

/// An MP3 shorter than its LAME/Xing header's counts (see [`truncation_findings`]).
fn mp3_truncation(info: &mut TrackInfo, allow_damaged: bool) -> Option<Finding> {
    let promised = info.exact_samples?;
    let tag = probe::read_vbr_tag(&info.path)?;
    let stream_bytes = tag.stream_bytes?;
    if info.size_bytes.saturating_sub(tag.audio_start) >= stream_bytes {
        return None;
    }
    let there = crate::av::packets::index_mp3(&info.path).ok()?.total();
    if there + crate::pipeline::TRUNCATION_SLACK_SAMPLES >= promised {
        return None;
    }
    let rate = info.sample_rate.max(1) as f64;
    let message = format!(
        "the file is truncated: {:.2} s of audio missing, {there} of the {promised} samples its header announces are there",
        (promised - there) as f64 / rate
    );
    info.exact_samples = Some(there);
    info.duration = std::time::Duration::from_secs_f64(there as f64 / rate);
    let kept = format!(
        "the {:.2} s that are there are kept, and chapter times follow them",
        there as f64 / rate
    );
    Some(cut_short(info, allow_damaged, message, &kept))
}

/// A file cut short: an error with the way out, or, when damage is allowed, a warning that
/// says what is `kept`.
fn cut_short(info: &TrackInfo, allow_damaged: bool, message: String, kept: &str) -> Finding {
    if allow_damaged {
        Finding::warning(
            FindingKind::Damaged,
            Some(info.path.clone()),
            format!("{message}; {kept}"),
        )
        .with_remedy("replace the file with a good copy")
    } else {
        Finding::error(FindingKind::Damaged, &info.path, message).with_remedy(
            "replace the file with a good copy, or allow damaged input to keep the audio that is there",
        )
    }
}

/// An Ogg file (Opus, Vorbis) that does not end its stream. Its length comes from its last
/// whole page, so a file cut short decodes without an error to wherever the cut is: only its
/// last bytes tell (a partial page, and no end-of-stream page). Such a file is damaged like a
/// truncated MP3 (how much is missing, the file cannot say). A file that ends on a whole page
/// without the end-of-stream mark may be cut at a page boundary, or written by a tool that
/// never marks the end (some stream recorders): a warning.
fn ogg_ending(info: &TrackInfo, allow_damaged: bool) -> Option<Finding> {
    use crate::oggbytes::{file_ending, OggEnd};
    let there = info.duration.as_secs_f64();
    match file_ending(&info.path).ok()?? {
        OggEnd::Complete => None,
        OggEnd::CutInPage { partial } => {
            let message = format!(
                "the file is cut short: it ends {partial} bytes into an Ogg page, without the page that ends its stream, so the audio after {there:.2} s is missing (how much, the file cannot say)"
            );
            let kept = format!("the {there:.2} s that are there are kept");
            Some(cut_short(info, allow_damaged, message, &kept))
        }
        OggEnd::NoEndMark { trailing } => {
            let after = if trailing > 0 {
                format!(" (then {trailing} bytes that are not an Ogg page)")
            } else {
                String::new()
            };
            Some(
                Finding::warning(
                    FindingKind::Damaged,
                    Some(info.path.clone()),
                    format!("the file's last Ogg page{after} does not end its stream: it may be cut short; its {there:.2} s are kept"),
                )
                .with_remedy("compare the file's length with its source's"),
            )
        }
    }
}

fn sort_findings(f: &mut [Finding]) {
    f.sort_by_key(|x| std::cmp::Reverse(x.severity));
}

fn build_book(
    folders: &[PathBuf],
    summaries: &[FolderSummary],
    files: &[ScannedFile],
    infos: Vec<TrackInfo>,
    opts: &PlanOptions,
    findings: &mut Vec<Finding>,
) -> Result<Book> {
    let formats: Vec<(u32, u16)> = infos.iter().map(|i| (i.sample_rate, i.channels)).collect();
    let target = opts.target.resolve(&formats);
    validate_target(&target)?;

    // Mixed formats are fine (each file is converted on its own), but worth showing.
    let mut rates: Vec<u32> = formats.iter().map(|f| f.0).collect();
    rates.sort_unstable();
    rates.dedup();
    let mut chans: Vec<u16> = formats.iter().map(|f| f.1).collect();
    chans.sort_unstable();
    chans.dedup();
    let vbr = infos.iter().filter(|i| i.vbr).count();
    if rates.len() > 1 || chans.len() > 1 || (vbr > 0 && vbr < infos.len()) {
        findings.push(Finding::new(
            Severity::Info,
            FindingKind::MixedFormats,
            None,
            format!(
                "mixed inputs: rates {:?} Hz, channels {:?}, {} of {} VBR; each file is converted to {} Hz {} on its own, so pitch and speed stay right",
                rates,
                chans,
                vbr,
                infos.len(),
                target.sample_rate,
                if target.channels == 1 { "mono" } else { "stereo" }
            ),
        ));
    }

    let (mut titles, cut_titles) = capped_chapter_titles(files, &infos, opts.chapter_titles);
    override_titles(&mut titles, &opts.chapter_title_overrides)?;
    let tracks: Vec<PlannedTrack> = infos
        .into_iter()
        .zip(files)
        .zip(titles)
        .map(|((info, f), title)| PlannedTrack {
            needs_resample: info.sample_rate != target.sample_rate,
            needs_remix: info.channels != target.channels,
            info,
            rel_path: f.rel_path.clone(),
            chapter_title: title,
        })
        .collect();

    let mut metadata = book_metadata(folders, &tracks, &opts.overrides);
    let cut_tags = cap_metadata(&mut metadata);
    if let Some(f) = shortened_finding(&tracks, &cut_titles, &cut_tags) {
        findings.push(f);
    }
    let cover = if opts.no_cover {
        None
    } else {
        find_cover(folders, &tracks, opts.cover.as_deref(), findings)?
    };
    let output_path = match &opts.output {
        Some(p) => p.clone(),
        None => {
            let data = opts
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("data"));
            let stem =
                sanitize::sanitize_file_stem(metadata.title.as_deref().unwrap_or("audiobook"));
            data.join("output").join(format!("{stem}.m4b"))
        }
    };
    Ok(Book {
        folders: summaries.to_vec(),
        tracks,
        metadata,
        cover,
        target,
        output_path,
        findings: findings
            .iter()
            .filter(|f| f.severity != Severity::Error)
            .cloned()
            .collect(),
    })
}

/// Chapter titles: ID3 titles when every file has one and they are not all the same (or the
/// user asked for tags), else cleaned file names. Empty titles become "Chapter N"; repeated
/// titles get " (2)", " (3)" … so every chapter can be told apart in a player. Titles longer
/// than [`MAX_TITLE_BYTES`] are cut on a character boundary.
pub fn chapter_titles(
    files: &[ScannedFile],
    infos: &[TrackInfo],
    mode: ChapterTitles,
) -> Vec<String> {
    capped_chapter_titles(files, infos, mode).0
}

/// [`chapter_titles`], plus (track index, length in bytes before the cut) of every title that
/// was cut to [`MAX_TITLE_BYTES`].
fn capped_chapter_titles(
    files: &[ScannedFile],
    infos: &[TrackInfo],
    mode: ChapterTitles,
) -> (Vec<String>, Vec<(usize, usize)>) {
    let mut cut: Vec<(usize, usize)> = Vec::new();
    let tag_titles: Vec<Option<String>> = infos
        .iter()
        .map(|i| {
            i.tags
                .title
                .as_ref()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        })
        .collect();
    let all_present = tag_titles.iter().all(Option::is_some);
    let distinct = {
        let mut v: Vec<&String> = tag_titles.iter().flatten().collect();
        v.sort();
        v.dedup();
        v.len()
    };
    let use_tags = match mode {
        ChapterTitles::Tags => true,
        ChapterTitles::Filenames => false,
        ChapterTitles::Auto => all_present && (distinct > 1 || infos.len() == 1),
    };
    let mut out: Vec<String> = files
        .iter()
        .zip(&tag_titles)
        .enumerate()
        .map(|(i, (f, tag))| {
            let from_name = || {
                let stem = f
                    .path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                sanitize::clean_title_from_stem(&stem)
            };
            let t = if use_tags {
                tag.clone().unwrap_or_else(from_name)
            } else {
                from_name()
            };
            let t: String = t
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
                .trim()
                .to_string();
            if t.is_empty() {
                format!("Chapter {}", i + 1)
            } else if t.len() > MAX_TITLE_BYTES {
                // Cut before telling repeats apart, so two long titles that differ only past
                // the cut are numbered like any other repeat.
                cut.push((i, t.len()));
                sanitize::truncate_utf8(&t, MAX_TITLE_BYTES)
                    .trim_end()
                    .to_string()
            } else {
                t
            }
        })
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in out.iter_mut() {
        let n = seen.entry(t.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            let suffix = format!(" ({n})");
            let base = sanitize::truncate_utf8(t, MAX_TITLE_BYTES - suffix.len());
            *t = format!("{base}{suffix}");
        }
    }
    (out, cut)
}

/// Cuts the book's tags to [`MAX_TITLE_BYTES`] (description and comment: to
/// [`MAX_LONG_TEXT_BYTES`]) on a character boundary. Returns (tag name, length before the cut)
/// of each tag that was cut.
fn cap_metadata(m: &mut BookMetadata) -> Vec<(&'static str, usize)> {
    let mut cut = Vec::new();
    let fields: [(&'static str, &mut Option<String>, usize); 10] = [
        ("title", &mut m.title, MAX_TITLE_BYTES),
        ("author", &mut m.author, MAX_TITLE_BYTES),
        ("narrator", &mut m.narrator, MAX_TITLE_BYTES),
        ("album", &mut m.album, MAX_TITLE_BYTES),
        ("genre", &mut m.genre, MAX_TITLE_BYTES),
        ("year", &mut m.year, MAX_TITLE_BYTES),
        ("series", &mut m.series, MAX_TITLE_BYTES),
        ("series part", &mut m.series_part, MAX_TITLE_BYTES),
        ("description", &mut m.description, MAX_LONG_TEXT_BYTES),
        ("comment", &mut m.comment, MAX_LONG_TEXT_BYTES),
    ];
    for (name, value, max) in fields {
        if let Some(v) = value.as_mut().filter(|v| v.len() > max) {
            cut.push((name, v.len()));
            *v = sanitize::truncate_utf8(v, max).trim_end().to_string();
        }
    }
    cut
}

/// One warning for every title and tag that was cut (however many), naming them. `None` when
/// nothing was cut.
fn shortened_finding(
    tracks: &[PlannedTrack],
    titles: &[(usize, usize)],
    tags: &[(&'static str, usize)],
) -> Option<Finding> {
    /// Names listed in the message; the rest are counted.
    const LISTED: usize = 5;
    let mut what: Vec<String> = titles
        .iter()
        .map(|&(i, len)| {
            format!(
                "the chapter title of {} ({len} bytes)",
                tracks[i].rel_path.display()
            )
        })
        .collect();
    what.extend(
        tags.iter()
            .map(|(name, len)| format!("the {name} ({len} bytes)")),
    );
    if what.is_empty() {
        return None;
    }
    let n = what.len();
    let mut listed = what[..n.min(LISTED)].join(", ");
    if n > LISTED {
        listed.push_str(&format!(" and {} more", n - LISTED));
    }
    // One file concerned: name it, so the finding points at what to fix.
    let path = match (titles, tags) {
        ([(i, _)], []) => Some(tracks[*i].info.path.clone()),
        _ => None,
    };
    Some(
        Finding::warning(
            FindingKind::TextShortened,
            path,
            format!(
                "{listed} {} longer than aiom4b writes and {} cut to {MAX_TITLE_BYTES} bytes \
                 ({MAX_LONG_TEXT_BYTES} for descriptions and comments)",
                if n == 1 { "is" } else { "are" },
                if n == 1 { "was" } else { "were" },
            ),
        )
        .with_remedy("nothing to do unless the cut matters; then shorten the tag or file name"),
    )
}

/// Book metadata from the tags (the most common value across files), the folder name as the
/// title fallback, then the user's overrides.
pub fn book_metadata(
    folders: &[PathBuf],
    tracks: &[PlannedTrack],
    overrides: &BookMetadata,
) -> BookMetadata {
    let common = |get: &dyn Fn(&Tags) -> Option<String>| -> Option<String> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for t in tracks {
            if let Some(v) = get(&t.info.tags)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
            {
                match counts.iter_mut().find(|(x, _)| *x == v) {
                    Some(c) => c.1 += 1,
                    None => counts.push((v, 1)),
                }
            }
        }
        // Most common; ties go to the earliest seen (the first file's value).
        let mut best: Option<(String, usize)> = None;
        for (v, c) in counts {
            if best.as_ref().is_none_or(|b| c > b.1) {
                best = Some((v, c));
            }
        }
        best.map(|b| b.0)
    };
    let album = common(&|t| t.album.clone());
    let folder_name = folders.first().and_then(|f| {
        let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
        abs.file_name().map(|n| n.to_string_lossy().into_owned())
    });
    // Without an album tag, the parts' titles often name the book ("Dune, Part 1", "Dune,
    // Part 2"): what they have in common, before the folder's name.
    let titles: Vec<&str> = tracks
        .iter()
        .filter_map(|t| t.info.tags.title.as_deref())
        .collect();
    let from_titles = (titles.len() == tracks.len())
        .then(|| common_title(&titles))
        .flatten();
    let tags = BookMetadata {
        title: album.clone().or(from_titles).or(folder_name),
        author: common(&|t| t.artist.clone()).or_else(|| common(&|t| t.album_artist.clone())),
        narrator: common(&|t| t.composer.clone()),
        album,
        genre: common(&|t| t.genre.clone()),
        year: common(&|t| t.year.clone()),
        description: common(&|t| t.comment.clone()),
        comment: None,
        series: None,
        series_part: None,
    };
    let pick =
        |o: &Option<String>, t: Option<String>| o.clone().filter(|v| !v.trim().is_empty()).or(t);
    BookMetadata {
        title: pick(&overrides.title, tags.title),
        author: pick(&overrides.author, tags.author),
        narrator: pick(&overrides.narrator, tags.narrator),
        album: pick(&overrides.album, tags.album),
        genre: pick(&overrides.genre, tags.genre),
        year: pick(&overrides.year, tags.year),
        description: pick(&overrides.description, tags.description),
        comment: pick(&overrides.comment, tags.comment),
        series: pick(&overrides.series, tags.series),
        series_part: pick(&overrides.series_part, tags.series_part),
    }
}

/// Words that number or label a part rather than name a book: a common prefix that ends in
/// them ("Chapter 1", "Chapter 2") says nothing about the book's title.
const PART_WORDS: [&str; 14] = [
    "part", "chapter", "track", "disc", "disk", "cd", "side", "volume", "vol", "episode",
    "kapitel", "teil", "chapitre", "partie",
];

/// The book's title from its parts' titles: the words they all begin with, less trailing
/// separators, numbers and part words, when at least two parts give it and something with
/// three letters is left ("Dune, Part 1" and "Dune, Part 2" → "Dune"; "Chapter 1" and
/// "Chapter 2" → none).
pub(crate) fn common_title(titles: &[&str]) -> Option<String> {
    if titles.len() < 2 {
        return None;
    }
    let words: Vec<Vec<&str>> = titles
        .iter()
        .map(|t| t.split_whitespace().collect())
        .collect();
    let mut n = 0;
    while words.iter().all(|w| n < w.len() && w[n] == words[0][n]) {
        n += 1;
    }
    let mut kept: Vec<&str> = words[0][..n].to_vec();
    let separator = |c: char| "-–—:;,.()[]/|#".contains(c);
    while let Some(last) = kept.last_mut() {
        let trimmed = last.trim_end_matches(separator);
        let bare = trimmed.trim_start_matches(separator).to_lowercase();
        if bare.is_empty()
            || bare.chars().all(|c| c.is_ascii_digit())
            || PART_WORDS.contains(&bare.as_str())
        {
            kept.pop();
        } else if trimmed.len() != last.len() {
            *last = trimmed;
            break;
        } else {
            break;
        }
    }
    let title = kept.join(" ");
    let letters = title.chars().filter(|c| c.is_alphabetic()).count();
    let generic = kept
        .iter()
        .all(|w| PART_WORDS.contains(&w.trim_matches(separator).to_lowercase().as_str()));
    (letters >= 3 && !generic).then_some(title)
}

/// Reads a cover image file: only a regular file (a FIFO would block, `/dev/zero` never end),
/// and never more than [`crate::convert::MAX_COVER_BYTES`].
fn read_cover_file(p: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let what = "cannot read the cover image";
    let f = crate::regular::open_regular(p, what)?;
    let size = f.metadata().map_err(|e| Error::io(p, what, e))?.len();
    let max = crate::convert::MAX_COVER_BYTES;
    let mut data = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| Error::io(p, what, e))?;
    if data.len() > max {
        return Err(Error::Cover {
            path: p.to_path_buf(),
            reason: format!(
                "{} bytes is more than the {} MiB limit; use a smaller JPEG (e.g. 1400×1400)",
                size.max(data.len() as u64),
                max >> 20
            ),
        });
    }
    Ok(data)
}

/// `--cover`, else the embedded front cover of the first file that has one, else
/// `cover.*`/`folder.*` (jpg/jpeg/png) in the first folder.
fn find_cover(
    folders: &[PathBuf],
    tracks: &[PlannedTrack],
    explicit: Option<&Path>,
    findings: &mut Vec<Finding>,
) -> Result<Option<Cover>> {
    if let Some(p) = explicit {
        let data = read_cover_file(p)?;
        let pic = probe::picture_from_bytes(data).ok_or_else(|| Error::Cover {
            path: p.to_path_buf(),
            reason: "not a JPEG or PNG image; convert it to JPEG or PNG".into(),
        })?;
        crate::convert::check_cover(&pic, p)?;
        return Ok(Some(Cover {
            source: CoverSource::File {
                path: p.to_path_buf(),
            },
            picture: pic,
        }));
    }
    if let Some(t) = tracks.iter().find(|t| t.info.cover.is_some()) {
        let pic = t.info.cover.clone().expect("found above");
        match crate::convert::check_cover(&pic, &t.info.path) {
            Ok(_) => {
                return Ok(Some(Cover {
                    source: CoverSource::Embedded {
                        path: t.info.path.clone(),
                    },
                    picture: pic,
                }))
            }
            Err(e) => findings.push(Finding::warning(
                FindingKind::Cover,
                Some(t.info.path.clone()),
                format!("embedded cover skipped: {e}"),
            )),
        }
    }
    for folder in folders {
        let Ok(rd) = std::fs::read_dir(folder) else {
            continue;
        };
        let mut candidates: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                let stem = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                let ext = p
                    .extension()
                    .map(|s| s.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                matches!(stem.as_str(), "cover" | "folder" | "front")
                    && matches!(ext.as_str(), "jpg" | "jpeg" | "png")
            })
            .collect();
        // cover.* before folder.* before front.*; then by name for a stable choice.
        candidates.sort_by_key(|p| {
            let s = p
                .file_stem()
                .map(|s| s.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            (
                ["cover", "folder", "front"]
                    .iter()
                    .position(|x| *x == s)
                    .unwrap_or(9),
                p.clone(),
            )
        });
        for p in candidates {
            let data = match read_cover_file(&p) {
                Ok(d) => d,
                Err(e @ Error::Cover { .. }) => {
                    findings.push(Finding::warning(
                        FindingKind::Cover,
                        Some(p.clone()),
                        format!("cover image skipped: {e}"),
                    ));
                    continue;
                }
                Err(_) => continue,
            };
            match probe::picture_from_bytes(data) {
                Some(pic) if crate::convert::check_cover(&pic, &p).is_ok() => {
                    return Ok(Some(Cover {
                        source: CoverSource::File { path: p },
                        picture: pic,
                    }))
                }
                _ => findings.push(Finding::warning(
                    FindingKind::Cover,
                    Some(p.clone()),
                    "cover image skipped: not a usable JPEG/PNG",
                )),
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> ScannedFile {
        ScannedFile {
            path: PathBuf::from("/book").join(name),
            rel_path: PathBuf::from(name),
            size_bytes: 1000,
            folder_index: 0,
        }
    }

    fn info(name: &str, title: Option<&str>) -> TrackInfo {
        TrackInfo {
            path: PathBuf::from("/book").join(name),
            size_bytes: 1000,
            sample_rate: 44_100,
            channels: 2,
            bitrate_bps: 128_000,
            vbr: false,
            exact_samples: None,
            duration: std::time::Duration::from_secs(1),
            tags: Tags {
                title: title.map(str::to_string),
                ..Tags::default()
            },
            cover: None,
            picture_count: 0,
            format: crate::model::InputFormat::Mp3,
            codec: "mp3".into(),
            chapters: Vec::new(),
            made_by_aiom4b: false,
        }
    }

    #[test]
    fn the_book_title_is_what_the_parts_titles_share() {
        let t = |v: &[&str]| common_title(v);
        assert_eq!(
            t(&["Dune, Part 1", "Dune, Part 2"]).as_deref(),
            Some("Dune")
        );
        assert_eq!(
            t(&[
                "The Final Empire - 01",
                "The Final Empire - 02",
                "The Final Empire - 10"
            ])
            .as_deref(),
            Some("The Final Empire")
        );
        assert_eq!(
            t(&["Mistborn: Chapter 1", "Mistborn: Chapter 2"]).as_deref(),
            Some("Mistborn")
        );
        assert_eq!(
            t(&["Same Title", "Same Title"]).as_deref(),
            Some("Same Title")
        );
        assert_eq!(t(&["Chapter 1", "Chapter 2"]), None, "only a part word");
        assert_eq!(t(&["01", "02"]), None);
        assert_eq!(t(&["Opening", "Closing"]), None, "nothing shared");
        assert_eq!(t(&["Dune"]), None, "one part says nothing");
        assert_eq!(t(&["Ab 1", "Ab 2"]), None, "too short to be a title");
    }

    #[test]
    fn titles_from_file_names_keep_brackets_and_dots() {
        let names = [
            "01 - Intro (Part 1).mp3",
            "Intro (Part 2).mp3",
            "03. The End.mp3",
            "04 - To be continued....mp3",
        ];
        let files: Vec<ScannedFile> = names.iter().map(|n| file(n)).collect();
        let infos: Vec<TrackInfo> = names.iter().map(|n| info(n, None)).collect();
        assert_eq!(
            chapter_titles(&files, &infos, ChapterTitles::Auto),
            [
                "Intro (Part 1)",
                "Intro (Part 2)",
                "The End",
                "To be continued..."
            ]
        );
    }

    #[test]
    fn a_reviewed_order_and_chapter_titles_apply_and_stale_ones_are_refused() {
        let mut files: Vec<ScannedFile> = ["1.mp3", "2.mp3", "3.mp3"]
            .iter()
            .map(|n| file(n))
            .collect();
        reorder(
            &mut files,
            &[PathBuf::from("3.mp3"), PathBuf::from("1.mp3")],
        );
        let names: Vec<_> = files.iter().map(|f| f.rel_path.clone()).collect();
        assert_eq!(names, ["3.mp3", "1.mp3", "2.mp3"].map(PathBuf::from));
        let mut titles = vec!["a".to_owned(), "b".to_owned()];
        override_titles(&mut titles, &["".into(), " Two ".into()]).unwrap();
        assert_eq!(titles, ["a", "Two"]);
        assert!(override_titles(&mut titles, &["x".into(), "y".into(), "z".into()]).is_err());
    }

    #[test]
    fn long_chapter_titles_are_cut_before_repeats_are_numbered() {
        // 'é' is 2 bytes: an odd cap would split one without the boundary check.
        let long = format!("a{}", "é".repeat(40_000));
        let same_start = format!("{long}, but different at the end");
        let names = ["1.mp3", "2.mp3", "3.mp3"];
        let files: Vec<ScannedFile> = names.iter().map(|n| file(n)).collect();
        let infos = vec![
            info(names[0], Some(&long)),
            info(names[1], Some("short")),
            info(names[2], Some(&same_start)),
        ];
        let (titles, cut) = capped_chapter_titles(&files, &infos, ChapterTitles::Auto);
        assert_eq!(cut, [(0, long.len()), (2, same_start.len())]);
        assert_eq!(titles[0].len(), MAX_TITLE_BYTES - 1);
        assert!(long.starts_with(&titles[0]));
        assert_eq!(titles[1], "short");
        assert!(titles[2].ends_with(" (2)") && titles[2].len() <= MAX_TITLE_BYTES);
        assert_ne!(titles[0], titles[2]);
    }

    #[test]
    fn long_tags_are_cut_and_named_in_one_warning() {
        let mut m = BookMetadata {
            title: Some("t".repeat(MAX_TITLE_BYTES + 1)),
            author: Some("Someone".into()),
            description: Some("d".repeat(MAX_LONG_TEXT_BYTES + 5)),
            comment: Some("c".repeat(MAX_TITLE_BYTES + 1)),
            ..BookMetadata::default()
        };
        let cut = cap_metadata(&mut m);
        assert_eq!(
            cut,
            [
                ("title", MAX_TITLE_BYTES + 1),
                ("description", MAX_LONG_TEXT_BYTES + 5)
            ]
        );
        assert_eq!(m.title.as_ref().unwrap().len(), MAX_TITLE_BYTES);
        assert_eq!(m.author.as_deref(), Some("Someone"));
        assert_eq!(m.description.as_ref().unwrap().len(), MAX_LONG_TEXT_BYTES);
        // A comment may be as long as a description.
        assert_eq!(m.comment.as_ref().unwrap().len(), MAX_TITLE_BYTES + 1);

        let tracks: Vec<PlannedTrack> = ["1.mp3", "2.mp3"]
            .iter()
            .map(|n| PlannedTrack {
                info: info(n, None),
                rel_path: PathBuf::from(n),
                chapter_title: String::new(),
                needs_resample: false,
                needs_remix: false,
            })
            .collect();
        assert!(shortened_finding(&tracks, &[], &[]).is_none());
        let f = shortened_finding(&tracks, &[(1, 70_000)], &cut).unwrap();
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.kind, FindingKind::TextShortened);
        assert!(f.path.is_none(), "several texts: no single file");
        for part in ["2.mp3 (70000 bytes)", "title (1025 bytes)", "description"] {
            assert!(f.message.contains(part), "{part:?} missing: {}", f.message);
        }
        let one = shortened_finding(&tracks, &[(1, 70_000)], &[]).unwrap();
        assert_eq!(one.path.as_deref(), Some(Path::new("/book/2.mp3")));
    }
}
