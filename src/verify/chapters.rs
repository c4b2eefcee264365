//! The two chapter lists: the QuickTime chapter track (`tref/chap`) and Nero's `chpl`.
use super::movie::{Movie, Track};
use super::summary::{ChapterMark, ChapterTrackSummary, ChplSummary};
use super::timing::{edit_mapping, presentation_start, rescale};
use super::MAX_CHUNK_READ_BYTES;
use crate::mp4box::{self, BoxRef, Cursor};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// Reads the chapter track the audio track refers to (`tref/chap`). Contradictions inside it
/// are pushed to `problems`; only I/O errors fail.
pub(super) fn read_chapter_track(
    rate: u32,
    f: &mut File,
    file_size: u64,
    movie: &Movie<'_>,
    audio: &Track<'_>,
    problems: &mut Vec<String>,
) -> std::io::Result<Option<ChapterTrackSummary>> {
    let Some(t) = audio
        .chapter_refs
        .iter()
        .find_map(|id| movie.tracks.iter().find(|t| t.id == *id))
    else {
        if !audio.chapter_refs.is_empty() {
            problems.push(format!(
                "tref/chap names chapter track(s) {:?} but no such track exists",
                audio.chapter_refs
            ));
        }
        return Ok(None);
    };
    let mut out = ChapterTrackSummary {
        track_id: t.id,
        timescale: t.timescale,
        chapters: Vec::new(),
    };
    let chunks = match t.table.chunks(file_size) {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("chapter track sample table: {e}"));
            Vec::new()
        }
    };
    let times = t.table.sample_times(t.table.sizes.len());
    if times.len() != t.table.sizes.len() {
        problems.push(format!(
            "the chapter track's stts covers {} samples but it has {}",
            times.len(),
            t.table.sizes.len()
        ));
    }
    let edit = edit_mapping(&t.edits);
    let rate = rate as u64;
    for chunk in &chunks {
        let mut buf = vec![0u8; chunk.bytes.min(MAX_CHUNK_READ_BYTES) as usize];
        f.seek(SeekFrom::Start(chunk.offset))?;
        f.read_exact(&mut buf)?;
        let mut pos = 0usize;
        for i in chunk.first_sample..chunk.first_sample + chunk.sample_count {
            let size = t.table.sizes[i] as usize;
            let Some(sample) = buf.get(pos..pos + size) else {
                problems.push(format!("chapter sample {} is too large to read", i + 1));
                break;
            };
            pos += size;
            let title = text_sample(sample).unwrap_or_else(|| {
                problems.push(format!(
                    "chapter sample {} is not a valid text sample",
                    i + 1
                ));
                String::new()
            });
            let Some(&t_media) = times.get(i) else { break };
            if t_media < edit.media_time {
                problems.push(format!(
                    "chapter \"{title}\" lies before the start of the chapter track's edit"
                ));
            }
            let (start_samples, start_secs) =
                presentation_start(t_media, &edit, t.timescale, movie.timescale, rate);
            out.chapters.push(ChapterMark {
                title,
                start_samples,
                start_secs,
            });
        }
    }
    Ok(Some(out))
}

/// Decodes a QuickTime text sample: a 16-bit length, the text (UTF-8, or UTF-16 with a byte
/// order mark), then optional boxes such as `encd`.
pub(crate) fn text_sample(sample: &[u8]) -> Option<String> {
    let mut c = Cursor::new(sample, 0, "text sample");
    let len = c.u16().ok()? as usize;
    let text = c.bytes(len).ok()?;
    let utf16 = |be: bool, b: &[u8]| {
        let units: Vec<u16> = b
            .chunks_exact(2)
            .map(|p| {
                if be {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    u16::from_le_bytes([p[0], p[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    Some(match text {
        [0xFE, 0xFF, rest @ ..] => utf16(true, rest),
        [0xFF, 0xFE, rest @ ..] => utf16(false, rest),
        _ => String::from_utf8_lossy(text).into_owned(),
    })
}

pub(super) fn parse_chpl(b: &BoxRef<'_>, rate: u32, problems: &mut Vec<String>) -> ChplSummary {
    let mut c = b.cursor("chpl box");
    let mut out = ChplSummary {
        version: 0,
        declared_count: 0,
        chapters: Vec::new(),
    };
    let r: mp4box::Parse<()> = (|| {
        let (version, _) = c.full_header()?;
        out.version = version;
        if version == 1 {
            c.u32()?; // reserved
        }
        out.declared_count = c.u8()?;
        for _ in 0..out.declared_count {
            let start = c.u64()?;
            let len = c.u8()? as usize;
            let title = c.bytes(len)?;
            out.chapters.push(ChapterMark {
                title: String::from_utf8_lossy(title).into_owned(),
                // chpl times are in 100 ns units.
                start_samples: rescale(start, rate as u64, 10_000_000),
                start_secs: start as f64 / 1e7,
            });
        }
        Ok(())
    })();
    if let Err(e) = r {
        problems.push(format!("chpl: {} (at byte {})", e.reason, e.offset));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut s = (text.len() as u16).to_be_bytes().to_vec();
        s.extend_from_slice(text);
        s.extend_from_slice(tail);
        s
    }

    #[test]
    fn text_samples_in_utf8_and_utf16() {
        // FFmpeg appends an `encd` box after the text; it is not part of the title.
        let encd = [0, 0, 0, 12, b'e', b'n', b'c', b'd', 0, 0, 1, 0];
        assert_eq!(
            text_sample(&sample("Kapitel 1 – Ä".as_bytes(), &encd)).as_deref(),
            Some("Kapitel 1 – Ä")
        );
        assert_eq!(
            text_sample(&sample(&[0xFE, 0xFF, 0, b'A', 0, b'b'], &[])).as_deref(),
            Some("Ab")
        );
        assert_eq!(
            text_sample(&sample(&[0xFF, 0xFE, b'A', 0, b'b', 0], &[])).as_deref(),
            Some("Ab")
        );
        assert_eq!(text_sample(&sample(b"", &[])).as_deref(), Some(""));
    }

    #[test]
    fn a_text_sample_shorter_than_its_length_is_invalid() {
        assert_eq!(text_sample(&[0, 5, b'a', b'b']), None);
        assert_eq!(text_sample(&[0]), None);
        assert_eq!(text_sample(&[]), None);
    }
}
