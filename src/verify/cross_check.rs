//! Second opinions: Symphonia's MP4 demuxer and `mp4ameta` read the same file their own way,
//! and every disagreement with this reader becomes an inconsistency.
use super::summary::M4bSummary;
use std::fs::File;
use std::io::{Seek, SeekFrom};

/// A second handle on the already opened (and checked) file, at its start. It shares the
/// offset with `file`, so it is only used once the caller is done with its own reads.
pub(super) fn rewound(file: &File) -> Option<File> {
    let mut f = file.try_clone().ok()?;
    f.seek(SeekFrom::Start(0)).ok()?;
    Some(f)
}

/// Symphonia's MP4 demuxer parses `moov` on its own: its view of the audio track must match.
/// `audio_stts_total` is this reader's sum of the audio track's `stts`.
pub(super) fn cross_check_symphonia(
    s: &mut M4bSummary,
    file: &File,
    audio_stts_total: Option<u64>,
) {
    use symphonia::core::codecs::audio::well_known::CODEC_ID_AAC;
    use symphonia::core::formats::{FormatOptions, FormatReader};
    use symphonia::core::io::MediaSourceStream;
    use symphonia::default::formats::IsoMp4Reader;
    if s.audio_tracks == 0 {
        return;
    }
    let Some(file) = rewound(file) else {
        s.inconsistencies
            .push("cannot read the file again for Symphonia's MP4 reader".into());
        return;
    };
    let r = crate::contained::contain(|| {
        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let reader = IsoMp4Reader::try_new(mss, FormatOptions::default())?;
        Ok::<_, symphonia::core::errors::Error>(reader.tracks().iter().find_map(|t| {
            let params = t.codec_params.as_ref()?.audio()?;
            (params.codec == CODEC_ID_AAC).then(|| {
                (
                    params.sample_rate,
                    params.channels.as_ref().map(|c| c.count() as u16),
                    // The sum of the track's `stts` in its own timescale: 0.6 reads no `mdhd`
                    // duration (0.5's `n_frames` was that), and this reader's `mdhd` is
                    // already checked against its own `stts` sum.
                    t.duration.map(|d| d.get()),
                )
            })
        }))
    });
    match r {
        Err(_) => s
            .inconsistencies
            .push("Symphonia's MP4 reader panicked on this file".into()),
        Ok(Err(e)) => s
            .inconsistencies
            .push(format!("Symphonia's MP4 reader cannot open the file: {e}")),
        Ok(Ok(None)) if s.codec == "aac" => s
            .inconsistencies
            .push("Symphonia's MP4 reader finds no AAC track".into()),
        Ok(Ok(None)) => {}
        Ok(Ok(Some((rate, channels, stts_total)))) => {
            // Symphonia may report the core's rate and channels (HE-AAC); either is consistent.
            if rate.is_some_and(|r| r != s.sample_rate && r != s.core_sample_rate) {
                s.inconsistencies.push(format!(
                    "Symphonia reads {} Hz, this reader {} Hz",
                    rate.unwrap_or(0),
                    s.sample_rate
                ));
            }
            if channels.is_some_and(|c| c != s.channels && c != s.core_channels) {
                s.inconsistencies.push(format!(
                    "Symphonia reads {} channel(s), this reader {}",
                    channels.unwrap_or(0),
                    s.channels
                ));
            }
            if let (Some(n), Some(ours)) = (stts_total, audio_stts_total) {
                if n != ours {
                    s.inconsistencies.push(format!(
                        "Symphonia reads a media duration (sum of stts) of {n}, this reader {ours}"
                    ));
                }
            }
        }
    }
}

/// `mp4ameta` reads tags, the cover and the chapter track its own way: they must agree.
/// (Its `chpl` reader is not used: it rejects the mid-character cut FFmpeg makes in titles
/// longer than 255 bytes.)
pub(super) fn cross_check_mp4ameta(s: &mut M4bSummary, file: &File) {
    let cfg = mp4ameta::ReadConfig {
        read_meta_items: true,
        read_image_data: true,
        read_chapter_list: false,
        read_chapter_track: true,
        read_audio_info: false,
        ..mp4ameta::ReadConfig::DEFAULT
    };
    let Some(mut file) = rewound(file) else {
        s.inconsistencies
            .push("cannot read the file again for mp4ameta".into());
        return;
    };
    let r = crate::contained::contain(|| {
        // Buffered: mp4ameta reads box headers a few bytes at a time.
        mp4ameta::Tag::read_with(&mut std::io::BufReader::new(&mut file), &cfg)
    });
    let tag = match r {
        Err(_) => {
            s.inconsistencies
                .push("mp4ameta panicked reading this file".into());
            return;
        }
        Ok(Err(e)) => {
            // Its message carries the I/O error's Debug form on a second line: keep one line.
            let e = e.to_string();
            let first = e.lines().next().unwrap_or_default().trim_end_matches(':');
            s.inconsistencies
                .push(format!("mp4ameta cannot read this file: {first}"));
            return;
        }
        Ok(Ok(t)) => t,
    };
    let mut differ = |what: &str, a: Option<&str>, b: Option<&str>| {
        if a != b {
            s.inconsistencies
                .push(format!("{what}: mp4ameta reads {a:?}, this reader {b:?}"));
        }
    };
    let nrt = mp4ameta::Fourcc(*b"\xa9nrt");
    differ("title", tag.title(), s.tags.title.as_deref());
    differ("artist", tag.artist(), s.tags.artist.as_deref());
    differ("album", tag.album(), s.tags.album.as_deref());
    differ(
        "narrator",
        tag.strings_of(&nrt).next(),
        s.tags.narrator.as_deref(),
    );
    let art = tag.artwork().map(|a| a.data.len() as u64);
    let ours = s.cover.as_ref().filter(|c| c.in_covr).map(|c| c.bytes);
    if art != ours {
        s.inconsistencies.push(format!(
            "cover: mp4ameta reads {art:?} bytes, this reader {ours:?}"
        ));
    }
    let theirs = tag.chapter_track();
    let ours = s
        .chapter_track
        .as_ref()
        .map(|t| t.chapters.as_slice())
        .unwrap_or(&[]);
    if theirs.len() != ours.len() {
        s.inconsistencies.push(format!(
            "chapter track: mp4ameta reads {} chapters, this reader {}",
            theirs.len(),
            ours.len()
        ));
    } else {
        for (i, (a, b)) in theirs.iter().zip(ours).enumerate() {
            // mp4ameta ignores the chapter track's edit list; FFmpeg's starts at 0, so the
            // times agree to the track's 1 ms resolution.
            if a.title != b.title || (a.start.as_secs_f64() - b.start_secs).abs() > 0.002 {
                s.inconsistencies.push(format!(
                    "chapter {}: mp4ameta reads {:?} at {:.3} s, this reader {:?} at {:.3} s",
                    i + 1,
                    a.title,
                    a.start.as_secs_f64(),
                    b.title,
                    b.start_secs
                ));
                break;
            }
        }
    }
}
