//! Reading the book to split with our own box reader (never libavformat's mov demuxer, which
//! the minimal static FFmpeg lacks): the audio track's packets (where each lies in the file and
//! its place on the media clock), the edit list's priming, the AudioSpecificConfig, and the
//! cover's bytes. Tags, chapters and the presentation length come from [`verify::summarize`].
use crate::error::{Error, Result};
use crate::model::Picture;
use crate::mp4box::{self, Malformed};
use crate::verify::{self, M4bSummary};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Largest `moov` read into memory (as in `verify`).
const MAX_MOOV_BYTES: u64 = 256 << 20;

/// One AAC packet of the source: bytes at `offset`, media time [start, start + duration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packet {
    pub offset: u64,
    pub size: u32,
    pub start: u64,
    pub duration: u64,
}

pub(crate) struct Source {
    pub path: PathBuf,
    pub file: File,
    pub summary: M4bSummary,
    pub packets: Vec<Packet>,
    /// The audio track's clock (the output rate, or the AAC core's for dual-rate HE-AAC).
    pub media_timescale: u32,
    /// The output sample rate (presentation samples per second).
    pub rate: u32,
    /// Media time of presentation sample 0 (the edit list's media_time: encoder priming).
    pub priming_media: u64,
    /// Presentation length in output samples.
    pub total_samples: u64,
    pub asc: Vec<u8>,
    pub cover: Option<Picture>,
}

impl Source {
    /// Output samples → media ticks (exact for the rates aiom4b writes: equal, or 2:1).
    pub fn to_media(&self, samples: u64) -> u64 {
        (samples as u128 * self.media_timescale as u128 / self.rate as u128) as u64
    }
    /// Media ticks → output samples.
    pub fn to_samples(&self, media: u64) -> i64 {
        (media as i128 * self.rate as i128 / self.media_timescale as i128) as i64
    }
}

pub(crate) fn read(path: &Path) -> Result<Source> {
    let summary = verify::summarize(path)?;
    let bad =
        |reason: String| Error::Options(format!("{}: cannot split: {reason}", path.display()));
    if summary.codec != "aac" || summary.audio_tracks != 1 {
        return Err(bad(format!(
            "expected one AAC audio track, found {} audio track(s) of codec {}",
            summary.audio_tracks, summary.codec
        )));
    }
    if summary.length.decode_errors > 0 {
        return Err(bad(format!(
            "{} audio packet(s) do not decode ({}); the copies would carry the damage",
            summary.length.decode_errors,
            summary.length.first_decode_error.as_deref().unwrap_or("")
        )));
    }
    let mut opened = mp4box::OpenedMp4::open(path, "open the M4B to split it")?;
    let (moov_top, buf) = opened.read_moov(path, MAX_MOOV_BYTES)?;
    let (file, file_size) = (opened.file, opened.size);
    let mal = mp4box::malformed(path);
    let moov = mp4box::as_box_ref(&buf, &moov_top);
    let audio = read_audio_track(&moov, file_size).map_err(mal)?;
    let (timescale, table, asc, edits) = audio.ok_or_else(|| bad("no audio track".into()))?;
    if edits.iter().any(|e| e.media_time < 0) {
        return Err(bad(
            "the audio starts after an empty edit (a delay); such books are not split".into(),
        ));
    }
    let asc = asc.ok_or_else(|| bad("the audio track has no AudioSpecificConfig".into()))?;

    let mut packets = Vec::with_capacity(table.sizes.len());
    let chunks = table
        .chunks(file_size)
        .map_err(|e| mal(Malformed::new(moov_top.offset, e)))?;
    let mut durations = table
        .stts
        .iter()
        .flat_map(|&(n, d)| std::iter::repeat_n(d as u64, n as usize));
    let mut t = 0u64;
    for c in &chunks {
        let mut off = c.offset;
        for i in c.first_sample..c.first_sample + c.sample_count {
            let size = table.sizes[i];
            let duration = durations.next().unwrap_or(0);
            packets.push(Packet {
                offset: off,
                size,
                start: t,
                duration,
            });
            off += size as u64;
            t += duration;
        }
    }

    let cover = read_extras(&moov).map_err(mal)?.cover;
    let rate = summary.sample_rate.max(1);
    let mut s = Source {
        path: path.to_path_buf(),
        file,
        packets,
        media_timescale: timescale,
        rate,
        priming_media: 0,
        total_samples: summary.decoded_samples,
        asc,
        cover,
        summary,
    };
    s.priming_media = s.to_media(s.summary.length.priming_samples);
    Ok(s)
}

type AudioTrack = (u32, mp4box::SampleTable, Option<Vec<u8>>, Vec<mp4box::Edit>);

/// The first sound track: (media timescale, sample table, AudioSpecificConfig, edit list).
fn read_audio_track(
    moov: &mp4box::BoxRef<'_>,
    _file_size: u64,
) -> mp4box::Parse<Option<AudioTrack>> {
    for trak in moov.children() {
        let trak = trak?;
        if trak.kind != *b"trak" {
            continue;
        }
        let Some(mdia) = trak.child(b"mdia")? else {
            continue;
        };
        let Some(hdlr) = mdia.child(b"hdlr")? else {
            continue;
        };
        if mp4box::parse_hdlr(&hdlr)? != *b"soun" {
            continue;
        }
        let mdhd = mdia
            .child(b"mdhd")?
            .ok_or_else(|| Malformed::new(mdia.offset, "the audio track has no 'mdhd'"))?;
        let (timescale, _) = mp4box::parse_timescale_duration(&mdhd)?;
        if timescale == 0 {
            return Err(Malformed::new(mdhd.offset, "the audio timescale is 0"));
        }
        let stbl = mdia
            .descend(&[b"minf", b"stbl"])?
            .ok_or_else(|| Malformed::new(mdia.offset, "the audio track has no 'stbl'"))?;
        let (table, entry) = mp4box::parse_stbl(&stbl)?;
        let edits = match trak.descend(&[b"edts", b"elst"])? {
            Some(e) => mp4box::parse_elst(&e)?,
            None => Vec::new(),
        };
        let asc = match entry.filter(|e| e.kind == *b"mp4a") {
            Some(entry) => mp4box::parse_mp4a(&entry)?.esds.and_then(|e| e.asc),
            None => None,
        };
        return Ok(Some((timescale, table, asc, edits)));
    }
    Ok(None)
}

/// The cover, ASIN and publisher stored in an M4B's `ilst`: what a library's sidecar files
/// carry besides the plan's tags (a `--asin` conversion writes these into the part).
#[derive(Debug, Clone, Default)]
pub(crate) struct StoredExtras {
    pub cover: Option<Picture>,
    pub asin: Option<String>,
    pub publisher: Option<String>,
}

/// The [`StoredExtras`] of the M4B at `path`.
pub(crate) fn extras_of(path: &Path) -> Result<StoredExtras> {
    let mut opened = mp4box::OpenedMp4::open(path, "open the M4B to read its tags")?;
    let (moov_top, buf) = opened.read_moov(path, MAX_MOOV_BYTES)?;
    let moov = mp4box::as_box_ref(&buf, &moov_top);
    read_extras(&moov).map_err(mp4box::malformed(path))
}

fn read_extras(moov: &mp4box::BoxRef<'_>) -> mp4box::Parse<StoredExtras> {
    let mut out = StoredExtras::default();
    let Some(meta) = moov.descend(&[b"udta", b"meta"])? else {
        return Ok(out);
    };
    let text = |v: Option<&mp4box::DataValue<'_>>| {
        v.map(|v| String::from_utf8_lossy(v.payload).trim().to_string())
            .filter(|t| !t.is_empty())
    };
    for c in mp4box::meta_children(&meta) {
        let c = c?;
        if c.kind != *b"ilst" {
            continue;
        }
        for item in mp4box::parse_ilst(&c)? {
            match &item.key {
                mp4box::ItemKey::Code(k) if k == b"covr" && out.cover.is_none() => {
                    if let Some(v) = item.values.first() {
                        let mime = match v.payload {
                            [0x89, b'P', b'N', b'G', ..] => "image/png",
                            _ => "image/jpeg",
                        };
                        out.cover = Some(Picture {
                            mime: mime.into(),
                            data: v.payload.to_vec(),
                            width: None,
                            height: None,
                        });
                    }
                }
                mp4box::ItemKey::Freeform { name, .. } if name.eq_ignore_ascii_case("ASIN") => {
                    out.asin = text(item.values.first());
                }
                mp4box::ItemKey::Freeform { name, .. }
                    if name.eq_ignore_ascii_case("PUBLISHER") =>
                {
                    out.publisher = text(item.values.first());
                }
                _ => {}
            }
        }
    }
    Ok(out)
}
