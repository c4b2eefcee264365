//! The conversion: a planned [`Book`] → a verified `.m4b` at its final path, or nothing there.
//!
//! Sequence: check options and cover → create `.<name>.<pid>.part` beside the final path →
//! pipeline (decode → encode → mux, chapters from the one sample clock) → extra metadata items →
//! fsync → independent verification → rename into place without overwriting (unless asked) →
//! fsync the directory. Any failure or cancellation removes the `.part`; sources are only read.
//!
//! [`Converter::convert`] does all of it. [`Converter::convert_to_part`] stops before the
//! rename and writes to a temporary the caller names and publishes — the workflow's job
//! `.part`, which its crash recovery knows — so a job has exactly one temporary file.
use crate::av::mux::{narrator_series_metadata, Brand, M4bMuxer, MuxChapter, MuxerKind};
use crate::chapters;
use crate::error::{Error, Result};
use crate::model::{Book, BookMetadata, Chapter, Finding, FindingKind, Picture, Severity};
use crate::options::{validate_target, ChapterMode, ConvertOptions, EncoderSettings};
use crate::pipeline::copy::AudioChoice;
use crate::pipeline::{self, PipelineJob, TrackJob};
use crate::progress::{CancelToken, ProgressSink, Stage};
use crate::publish::{self, PartFile};
use crate::silence::{self, Pause, Snapped};
use crate::verify::VerifiedRun;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Largest accepted cover file. Players show covers of a few hundred KB; 16 MiB is far beyond
/// any real cover and keeps a mistaken multi-GB "image" out of the file.
pub const MAX_COVER_BYTES: usize = 16 << 20;
/// Largest accepted cover side in pixels (Apple asks for at most 3000; allow generous slack).
pub const MAX_COVER_SIDE: u32 = 8192;

/// Hands the memory the conversion freed back to the system before the check of the written
/// file allocates its sample tables (4 bytes a frame, ~19 MB for a 30-hour book). The
/// conversion's threads free their buffers into glibc's per-thread arenas, which keep the
/// pages: without this, the check's tables land on top of them and a 30-hour book's peak RSS
/// is the check's (101 MiB measured), not the conversion's (80 MiB). Other allocators
/// return such memory themselves; there is nothing to do for them.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What became of the audio ([`crate::AudioMode`]); also kept in the job record
/// ([`crate::workflow::jobs::Job::audio`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AudioUsed {
    /// The parts' AAC packets were copied (only the joins re-encoded).
    pub copied: bool,
    /// Why: the copy's facts, or why encoding was needed.
    pub why: String,
}

/// What a finished conversion reports.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ConvertReport {
    /// The written file: the final path after [`Converter::convert`], the caller's temporary
    /// after [`Converter::convert_to_part`].
    pub output_path: PathBuf,
    /// Size of the written file in bytes.
    pub size_bytes: u64,
    /// Output sample rate in Hz.
    pub sample_rate: u32,
    /// Output channel count (1 = mono, 2 = stereo).
    pub channels: u16,
    /// Requested AAC bitrate in bits per second (the target, not a measured average).
    pub bitrate_bps: u64,
    /// Audio length in samples per channel at `sample_rate`, as decoded (encoder priming and
    /// padding not counted).
    pub total_samples: u64,
    /// Audio length in seconds (`total_samples / sample_rate`).
    pub duration_secs: f64,
    /// The chapters as written, starts in samples at `sample_rate`.
    pub chapters: Vec<Chapter>,
    /// Number of input files converted.
    pub tracks: usize,
    /// Number of AAC packets (frames) written.
    pub packets: u64,
    /// Worker threads the conversion was given ([`ConvertOptions::effective_jobs`]).
    pub threads: usize,
    /// Output samples where independently encoded segments meet (multi-core encoding); empty
    /// with one encoder.
    pub joins: Vec<u64>,
    /// Wall-clock seconds per stage.
    pub timings: Timings,
    /// Audio seconds per wall-clock second of the conversion stage.
    pub realtime_factor: f64,
    /// Non-blocking findings: the plan's warnings and infos, then those raised while
    /// converting (accepted damage, chapter warnings, a truncated `chpl`).
    pub findings: Vec<Finding>,
    /// With [`ConvertOptions::snap_to_silence`]: every chapter mark, where it went and how far
    /// it moved (`found: false`: no pause in the window, the mark stayed). Empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapped: Vec<Snapped>,
    /// With [`ConvertOptions::split_at`], when the book was longer or larger: the published
    /// parts, in order (`output_path` is then the first, `size_bytes` their sum). Empty when
    /// the book is one file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<crate::split::PartInfo>,
    /// Whether the audio was copied or encoded, and why.
    pub audio: AudioUsed,
}

/// Seconds spent per stage.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Timings {
    /// Decoding, encoding and muxing (the pipeline).
    pub convert_secs: f64,
    /// Writing the extra tags (narrator, series) and flushing the file to disk.
    pub finalize_secs: f64,
    /// The independent verification (about 0 when it is turned off).
    pub verify_secs: f64,
    /// The whole call, from the first check to the file in place (publishing included for
    /// [`Converter::convert`]).
    pub total_secs: f64,
    /// Where the time went, stage by stage.
    pub stages: StageTimes,
}

/// Where a conversion's time went. Wall seconds for the steps that run alone (indexing, placing
/// the joins, the encode run, fsync, the final check); *thread-seconds* summed over the encoder
/// workers for what they do in turn (so on `N` workers they add up to about `N ×` the encode
/// run's wall time), and thread CPU seconds where the kernel tells them.
///
/// On the in-order paths (`--jobs 1`, and books the workers cannot split by seeking) the
/// *workers* are every thread of the encode run but the muxer: the decoders (their `decode`
/// time, and `handoff` while they wait to pass PCM on), the segmenter that streams PCM to the
/// encoders (`silence`, and `handoff` while it waits for PCM, budget or a free encoder), and
/// the encoders (`startup`, `lead_in`, `encode`, and `handoff` while they wait for PCM or to
/// pass packets on). `index_secs` and `joins_secs` stay 0 there (no index, no planned joins),
/// and so does `verify_decode_secs` (the final check decodes the file). The lossless copy
/// fills the join and muxer figures.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct StageTimes {
    /// Demuxing every file to learn its packets' exact lengths (wall).
    pub index_secs: f64,
    /// Decoding around each planned join to move it into a pause (wall). In a lossless copy:
    /// until the last join window was encoded (wall; the copying runs beside it).
    pub joins_secs: f64,
    /// The encode run: workers and muxer from the first segment to the trailer (wall).
    pub encode_run_secs: f64,
    /// Segments encoded (each a fresh encoder).
    pub segments: u64,
    /// Workers: opening each segment's encoder and input files (thread-seconds).
    pub startup_secs: f64,
    /// Workers: demuxing and decoding (and resampling) the input, pre-roll included.
    pub decode_secs: f64,
    /// Workers: encoding the lead-in, whose packets are thrown away.
    pub lead_in_secs: f64,
    /// Workers: encoding the kept packets.
    pub encode_secs: f64,
    /// Workers: decoding their own packets with the independent decoder (verification while
    /// encoding).
    pub verify_decode_secs: f64,
    /// Workers: finding pauses (chapters from silence, snapping), when asked for.
    pub silence_secs: f64,
    /// Workers: waiting to hand packets to the muxer or for the next segment.
    pub handoff_secs: f64,
    /// Workers' CPU time (user + system), summed.
    pub worker_cpu_secs: f64,
    /// The muxer: writing packets, the index and the trailer.
    pub mux_write_secs: f64,
    /// The muxer: waiting for packets.
    pub mux_wait_secs: f64,
    /// The muxer thread's CPU time.
    pub mux_cpu_secs: f64,
    /// Flushing the file to disk (part of `finalize_secs`).
    pub fsync_secs: f64,
    /// The packets were decoded by the independent decoder while encoding, and the final check
    /// compared the file's packets with them instead of decoding the file again.
    pub verified_while_encoding: bool,
}

/// Converts planned books. Cheap to create; one converter can run several books in turn.
#[derive(Debug, Clone, Default)]
pub struct Converter {
    options: ConvertOptions,
}

impl Converter {
    /// A converter that converts with `options`.
    pub fn new(options: ConvertOptions) -> Self {
        Converter { options }
    }

    /// The options this converter converts with.
    pub fn options(&self) -> &ConvertOptions {
        &self.options
    }

    /// Converts `book` to `book.output_path`.
    ///
    /// ```no_run
    /// use aiom4b::{plan, Converter, ConvertOptions, NoProgress, CancelToken};
    /// # fn main() -> aiom4b::Result<()> {
    /// let book = plan::plan(&["/books/Dune".into()], &Default::default(), &Default::default(), &Default::default())?;
    /// let report = Converter::new(ConvertOptions::default()).convert(&book, &NoProgress, &CancelToken::new())?;
    /// println!("{} ({} chapters)", report.output_path.display(), report.chapters.len());
    /// # Ok(()) }
    /// ```
    pub fn convert(
        &self,
        book: &Book,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<ConvertReport> {
        let t0 = Instant::now();
        let opts = &self.options;
        let final_path = book.output_path.clone();
        if final_path.exists() && !opts.overwrite {
            return Err(Error::OutputExists(final_path));
        }
        let dir = final_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(&dir, "cannot create the output folder", e))?;
        // What a killed earlier run for this output left behind goes first.
        for p in publish::clean_stale_pid_parts(&final_path) {
            tracing::info!(path = %p.display(), "removed an unfinished output of an earlier run");
        }
        let part = PartFile::for_process(&final_path);
        let mut report = self.convert_to_part(book, part.path(), progress, cancel)?;
        if let Some(limit) = &opts.split_at {
            if let Some(split) =
                crate::split::PreparedSplit::new(part.path(), &final_path, &limit.by())?
            {
                let parts = split.run(opts.overwrite)?;
                // `part` (the whole book) is dropped here, which removes it.
                progress.stage(Stage::Done);
                report.output_path = parts.parts[0].path.clone();
                report.size_bytes = parts.parts.iter().map(|p| p.bytes).sum();
                report.findings.extend(
                    parts
                        .warnings
                        .iter()
                        .map(|w| Finding::warning(FindingKind::Other, None, w.clone())),
                );
                report.parts = parts.parts;
                report.timings.total_secs = t0.elapsed().as_secs_f64();
                return Ok(report);
            }
        }
        // convert_to_part hands over a finished, verified file; if publishing fails, the part
        // file removes it and its siblings.
        part.publish_to(&final_path, None, opts.overwrite)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::OutputExists(final_path.clone()),
                _ => Error::io(&final_path, "cannot move the finished file into place", e),
            })?;
        progress.stage(Stage::Done);
        report.size_bytes = std::fs::metadata(&final_path)
            .map(|m| m.len())
            .unwrap_or(report.size_bytes);
        report.output_path = final_path;
        report.timings.total_secs = t0.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Writes `book` to `part` exactly — muxed, tagged, flushed to disk and verified — and
    /// leaves naming and publishing to the caller; `book.output_path` is not used.
    ///
    /// This is the entry point for callers that own the temporary file, such as the workflow,
    /// whose job record names its `.part` so that crash recovery can remove it: the engine then
    /// adds no temporary of its own, and there is one `.part` per conversion. On failure or
    /// cancellation `part` is removed; the report's `output_path` is `part`.
    pub fn convert_to_part(
        &self,
        book: &Book,
        part: &Path,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<ConvertReport> {
        let t0 = Instant::now();
        let opts = &self.options;
        validate_target(&book.target)?;
        if book.tracks.is_empty() {
            return Err(Error::Options("the book has no tracks".into()));
        }
        opts.validate_chapters()?;
        let cover = match &book.cover {
            Some(c) => Some(check_cover(&c.picture, cover_path(c))?),
            None => None,
        };
        let timed = match &opts.chapters {
            ChapterMode::File(p) => Some((chapters::parse_chapters_file(p)?, p.clone())),
            _ => None,
        };
        // Removes the part and its sibling temporaries unless everything below succeeds.
        let guard = PartFile::at(part);

        progress.stage(Stage::Convert);
        let target = book.target;
        let settings = EncoderSettings {
            target,
            encoder: opts.encoder,
            coder: opts.coder,
            profile: opts.profile,
        };
        // Copy the parts' AAC packets when they allow it (and `--audio` does not forbid it).
        let choice = pipeline::copy::decide(book, opts)?;
        let audio = match &choice {
            AudioChoice::Copy(p) => AudioUsed {
                copied: true,
                why: p.why.clone(),
            },
            AudioChoice::Encode(why) => AudioUsed {
                copied: false,
                why: why.clone(),
            },
        };
        tracing::info!(copied = audio.copied, why = %audio.why, "audio");
        // A first encoder instance tells the muxer the stream's parameters (its
        // AudioSpecificConfig and priming); the pipeline opens its own. A copy's stream is
        // the parts'.
        let params = match &choice {
            AudioChoice::Copy(p) => p.params.clone(),
            AudioChoice::Encode(_) => crate::av::encode::open_encoder(&settings)?.params(),
        };
        let estimated_total = (book.duration_secs() * target.sample_rate as f64) as u64;
        let m = &book.metadata;
        let has_extras = m.narrator.is_some() || m.series.is_some() || m.series_part.is_some();
        let mut metadata = mux_metadata(m);
        // aiom4b's own writer puts narrator and series into the index it writes; libavformat's
        // cannot, and they are patched in after it (below).
        let muxer = MuxerKind::from_env();
        metadata.extend(narrator_series_metadata(
            m.narrator.as_deref(),
            m.series.as_deref(),
            m.series_part.as_deref(),
        ));
        let open_muxer = || {
            M4bMuxer::create_with(muxer, part, &params, &metadata, cover.as_ref(), Brand::M4b)
                .map(|mx| mx.expect_samples(estimated_total, &params))
        };

        let tracks: Vec<TrackJob> = book
            .tracks
            .iter()
            .map(|t| TrackJob {
                path: t.info.path.clone(),
                exact_source_samples: t.info.exact_samples,
                source_rate: t.info.sample_rate,
                format: t.info.format,
            })
            .collect();
        let job = PipelineJob {
            tracks: &tracks,
            target,
            encoder: settings,
            stream: params.clone(),
            threads: opts.effective_jobs(),
            allow_damaged: opts.allow_damaged,
            segment_frames: opts.segment_frames,
            verify: opts.verify,
            estimated_total,
            silence: opts.needs_pauses().then_some(opts.silence),
        };
        let mut warnings: Vec<Finding> = book.findings.clone();
        let chapter_warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let snapped = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Snapped>::new()));
        let builder = chapter_builder(
            book,
            opts,
            timed,
            target.sample_rate,
            chapter_warnings.clone(),
            snapped.clone(),
        );
        let t_conv = Instant::now();
        let outcome = match &choice {
            AudioChoice::Copy(plan) => {
                let how = (opts.coder, opts.effective_jobs());
                pipeline::copy::run(plan, how, open_muxer()?, builder, progress, cancel)?
            }
            AudioChoice::Encode(_) => pipeline::run(&job, &open_muxer, builder, progress, cancel)?,
        };
        let convert_secs = t_conv.elapsed().as_secs_f64();
        for w in chapter_warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            warnings.push(Finding::warning(FindingKind::Other, None, w));
        }
        let snapped = std::mem::take(&mut *snapped.lock().unwrap_or_else(|p| p.into_inner()));
        // Logged (a warning per mark that found no pause) like the chapters file's warnings,
        // and kept in the report, whose `snapped` list the CLI prints.
        for f in snap_findings(&snapped, target.sample_rate) {
            match f.severity {
                Severity::Info => tracing::info!("{}", f.message),
                _ => tracing::warn!("{}", f.message),
            }
            warnings.push(f);
        }
        // The pipeline's own findings: they count a truncation as damage, which the raw
        // decoder statistics do not (a truncated file would read "0 damaged frame(s)").
        warnings.extend(outcome.findings.iter().cloned());
        if outcome.chapters.len() > chapters::CHPL_MAX_CHAPTERS {
            let f = Finding::warning(
                FindingKind::ChplTruncated,
                None,
                format!(
                    "{} chapters: the Nero chapter list (chpl, read by VLC) holds only the first {}; \
                     the QuickTime chapter track (Apple Books, BookPlayer) has all of them",
                    outcome.chapters.len(),
                    chapters::CHPL_MAX_CHAPTERS
                ),
            );
            progress.finding(&f);
            warnings.push(f);
        }

        progress.stage(Stage::Finalize);
        let t_fin = Instant::now();
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        // Items FFmpeg's muxer cannot write (narrator, series), patched into `ilst` without
        // touching the chapters.
        if has_extras && muxer == MuxerKind::Libavformat {
            crate::mp4tags::write_extra_items(
                part,
                m.narrator.as_deref(),
                m.series.as_deref(),
                m.series_part.as_deref(),
            )?;
        }
        let t_sync = Instant::now();
        sync_file(part)?;
        let mut stages = outcome.stages.clone();
        stages.fsync_secs = t_sync.elapsed().as_secs_f64();
        let finalize_secs = t_fin.elapsed().as_secs_f64();

        let t_ver = Instant::now();
        let chapters_out: Vec<Chapter> = outcome
            .chapters
            .iter()
            .map(|c| Chapter {
                title: c.title.clone(),
                start_samples: c.start as u64,
            })
            .collect();
        if opts.verify {
            progress.stage(Stage::Verify);
            release_freed_memory();
            let streamed: Option<&[VerifiedRun]> = outcome.verified.as_deref();
            stages.verified_while_encoding = streamed.is_some();
            crate::verify_hook::verify_written(
                part,
                book,
                outcome.total_samples,
                &chapters_out,
                cover.is_some(),
                opts.profile,
                streamed,
            )?;
        }
        let verify_secs = t_ver.elapsed().as_secs_f64();
        // The breakdown, for the log (the report carries it too).
        tracing::info!(
            convert_secs,
            index_secs = stages.index_secs,
            joins_secs = stages.joins_secs,
            encode_run_secs = stages.encode_run_secs,
            segments = stages.segments,
            workers_decode_secs = stages.decode_secs,
            workers_lead_in_secs = stages.lead_in_secs,
            workers_encode_secs = stages.encode_secs,
            workers_verify_decode_secs = stages.verify_decode_secs,
            workers_startup_secs = stages.startup_secs,
            workers_handoff_secs = stages.handoff_secs,
            workers_cpu_secs = stages.worker_cpu_secs,
            mux_write_secs = stages.mux_write_secs,
            mux_wait_secs = stages.mux_wait_secs,
            fsync_secs = stages.fsync_secs,
            final_check_secs = verify_secs,
            verified_while_encoding = stages.verified_while_encoding,
            "where the conversion's time went"
        );
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        guard.keep();
        let size_bytes = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let duration_secs = outcome.total_samples as f64 / target.sample_rate as f64;
        Ok(ConvertReport {
            output_path: part.to_path_buf(),
            size_bytes,
            sample_rate: target.sample_rate,
            channels: target.channels,
            bitrate_bps: params.bitrate_bps,
            total_samples: outcome.total_samples,
            duration_secs,
            chapters: chapters_out,
            tracks: tracks.len(),
            packets: outcome.packets,
            threads: job.threads,
            joins: outcome.joins.clone(),
            timings: Timings {
                convert_secs,
                finalize_secs,
                verify_secs,
                total_secs: t0.elapsed().as_secs_f64(),
                stages,
            },
            realtime_factor: if convert_secs > 0.0 {
                duration_secs / convert_secs
            } else {
                0.0
            },
            findings: warnings,
            snapped,
            parts: Vec::new(),
            audio,
        })
    }
}

fn cover_path(c: &crate::model::Cover) -> &Path {
    match &c.source {
        crate::model::CoverSource::Embedded { path } | crate::model::CoverSource::File { path } => {
            path
        }
    }
}

/// Checks a cover's type and size; returns it with its dimensions filled in.
pub fn check_cover(pic: &Picture, path: &Path) -> Result<Picture> {
    let bad = |reason: String| Error::Cover {
        path: path.to_path_buf(),
        reason,
    };
    if pic.data.len() > MAX_COVER_BYTES {
        return Err(bad(format!(
            "{} bytes is more than the {} MiB limit; use a smaller JPEG (e.g. 1400×1400)",
            pic.data.len(),
            MAX_COVER_BYTES >> 20
        )));
    }
    let (mime, w, h) = crate::probe::image_facts(&pic.data)
        .ok_or_else(|| bad("not a JPEG or PNG image; convert it to JPEG or PNG".into()))?;
    if let (Some(w), Some(h)) = (w, h) {
        if w == 0 || h == 0 || w > MAX_COVER_SIDE || h > MAX_COVER_SIDE {
            return Err(bad(format!(
                "{w}×{h} pixels is outside 1..{MAX_COVER_SIDE} per side; scale it down (e.g. 1400×1400)"
            )));
        }
    }
    Ok(Picture {
        mime: mime.to_string(),
        data: pic.data.clone(),
        width: w,
        height: h,
    })
}

/// The muxer's metadata keys (FFmpeg's movenc maps them to iTunes atoms).
pub fn mux_metadata(m: &BookMetadata) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, val: &Option<String>| {
        if let Some(x) = val.as_ref().filter(|x| !x.trim().is_empty()) {
            v.push((k.to_string(), x.clone()));
        }
    };
    put("title", &m.title);
    put("album", &m.album.clone().or_else(|| m.title.clone()));
    put("artist", &m.author);
    put("album_artist", &m.author);
    // Audiobookshelf and several players read the narrator from the composer field.
    put("composer", &m.narrator);
    put("genre", &m.genre);
    put("date", &m.year);
    put("comment", &m.comment);
    put("description", &m.description);
    // `synopsis` becomes the long description (ldes), which has no 255-byte limit in players.
    put("synopsis", &m.description);
    put("show", &m.series);
    v.push(("media_type".into(), "2".into())); // stik = 2: audiobook
                                               // movenc writes `©too` from "encoding_tool" ("encoder" is replaced by libavformat's ident).
    v.push((
        "encoding_tool".into(),
        format!("aiom4b {}", env!("CARGO_PKG_VERSION")),
    ));
    v
}

fn chapter_builder(
    book: &Book,
    opts: &ConvertOptions,
    timed: Option<(Vec<chapters::TimedChapter>, PathBuf)>,
    rate: u32,
    warnings: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    snapped: std::sync::Arc<std::sync::Mutex<Vec<Snapped>>>,
) -> pipeline::ChapterBuilder {
    let titles: Vec<String> = book
        .tracks
        .iter()
        .map(|t| t.chapter_title.clone())
        .collect();
    let inner: Vec<Vec<crate::model::InnerChapter>> = book
        .tracks
        .iter()
        .map(|t| t.info.chapters.clone())
        .collect();
    let source_rates: Vec<u32> = book.tracks.iter().map(|t| t.info.sample_rate).collect();
    let mode = opts.chapters.clone();
    let (silence_opts, snap_secs) = (opts.silence, opts.snap_to_silence);
    Box::new(
        move |track_samples: &[u64], total: u64, pauses: &[Pause]| -> Result<Vec<MuxChapter>> {
            let mut list: Vec<Chapter> = match mode {
                ChapterMode::None => Vec::new(),
                ChapterMode::PerFile => chapters::per_track(&titles, track_samples),
                ChapterMode::Auto => chapters::per_track_with_inner(
                    &titles,
                    &inner,
                    &source_rates,
                    rate,
                    track_samples,
                ),
                ChapterMode::File(_) => {
                    let (timed, path) = timed.expect("chapters file parsed before converting");
                    let (list, w) = chapters::timed_to_samples(&timed, rate, total, &path)?;
                    warnings.lock().unwrap_or_else(|p| p.into_inner()).extend(w);
                    list
                }
                ChapterMode::Silence => {
                    silence::chapters_from_pauses(pauses, total, rate, &silence_opts)
                }
            };
            if let Some(secs) = snap_secs {
                let candidates = silence::chapter_pauses(pauses, rate, &silence_opts);
                let window = (secs * rate as f64).round() as u64;
                let result = silence::snap(&list, &candidates, rate, window);
                list = result.iter().map(|s| s.chapter.clone()).collect();
                *snapped.lock().unwrap_or_else(|p| p.into_inner()) = result;
            }
            Ok(list
                .iter()
                .enumerate()
                .map(|(i, c)| MuxChapter {
                    title: c.title.clone(),
                    start: c.start_samples as i64,
                    end: list.get(i + 1).map_or(total, |n| n.start_samples) as i64,
                })
                .collect())
        },
    )
}

/// What the user is told about snapping: one line with how far the marks moved, and a
/// warning for each mark that found no pause.
fn snap_findings(snapped: &[Snapped], rate: u32) -> Vec<Finding> {
    if snapped.is_empty() {
        return Vec::new();
    }
    let secs = |n: i64| n as f64 / rate.max(1) as f64;
    let moved: Vec<&Snapped> = snapped
        .iter()
        .filter(|s| s.found && s.moved_by != 0)
        .collect();
    let largest = moved.iter().map(|s| s.moved_by.abs()).max().unwrap_or(0);
    let mut out = vec![Finding::new(
        Severity::Info,
        FindingKind::Other,
        None,
        format!(
            "snapped {} of {} chapter marks to pauses (largest move {:.3} s)",
            moved.len(),
            snapped.len(),
            secs(largest)
        ),
    )];
    for (i, s) in snapped.iter().enumerate().filter(|(_, s)| !s.found) {
        out.push(
            Finding::warning(
                FindingKind::Other,
                None,
                format!(
                    "chapter {} \"{}\" at {}: no pause in the snap window; the mark stays",
                    i + 1,
                    s.chapter.title,
                    chapters::format_samples(s.chapter.start_samples, rate)
                ),
            )
            .with_remedy("widen --snap-to-silence, or lower --silence-min / raise --silence-db"),
        );
    }
    out
}

fn sync_file(path: &Path) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|e| Error::io(path, "cannot reopen the written file", e))?;
    f.sync_all()
        .map_err(|e| Error::io(path, "cannot flush the written file to disk", e))
}
