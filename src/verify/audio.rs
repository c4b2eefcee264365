//! The audio track: its sample entry (codec, rate, channels, AAC profile, HE-AAC's core),
//! its presentation length from `stts` and the edit list, and the decoder's cross-count.
use super::decode::decode_all;
use super::movie::{Movie, Track};
use super::summary::M4bSummary;
use super::timing::{edit_mapping, presentation_length};
use crate::mp4box::{self, fourcc_str};
use std::fs::File;

pub(super) fn summarize_audio(
    s: &mut M4bSummary,
    file: &File,
    file_size: u64,
    movie: &Movie<'_>,
    a: &Track<'_>,
    runs: Option<&[super::VerifiedRun]>,
) -> mp4box::Parse<()> {
    let entry_kind = a.table.entry_kind;
    s.codec = entry_kind
        .as_ref()
        .map(fourcc_str)
        .unwrap_or_else(|| "none".into());
    let mut asc_bytes = None;
    if let (Some(entry), Some(b"mp4a")) = (&a.entry, entry_kind.as_ref()) {
        let mp4a = mp4box::parse_mp4a(entry)?;
        if mp4a.version > 2 {
            s.inconsistencies.push(format!(
                "unknown mp4a sample entry version {}",
                mp4a.version
            ));
        }
        let (entry_channels, entry_rate) = (mp4a.channels, mp4a.rate);
        s.channels = entry_channels;
        s.sample_rate = entry_rate;
        s.core_channels = entry_channels;
        s.core_sample_rate = entry_rate;
        match mp4a.esds {
            Some(e) => {
                if e.object_type_indication == 0x40 {
                    s.codec = "aac".into();
                } else {
                    s.codec = format!("mp4a.{:02x}", e.object_type_indication);
                }
                // The sample entry's channel count and rate are ISO "template" fields (FFmpeg
                // writes 2 channels for mono): the AudioSpecificConfig is authoritative.
                // Apple's convention for dual-rate HE-AAC puts the core's rate in the entry.
                if let Some(asc) = e.asc.as_deref().and_then(mp4box::parse_asc) {
                    s.profile = Some(aac_profile(asc.profile_object_type()));
                    if let Some(r) = asc.output_rate() {
                        s.sample_rate = r;
                    }
                    if let Some(r) = asc.sample_rate {
                        s.core_sample_rate = r;
                    }
                    if asc.channel_config != 0 {
                        s.channels = asc.output_channel_config() as u16;
                        s.core_channels = asc.channel_config as u16;
                    }
                }
                asc_bytes = e.asc;
            }
            None => s
                .inconsistencies
                .push("the mp4a sample entry has no 'esds' (decoder configuration)".into()),
        }
    }
    if a.table.entry_count > 1 {
        s.inconsistencies.push(format!(
            "the audio track has {} sample descriptions; players use only the first",
            a.table.entry_count
        ));
    }

    // Length: stts minus the priming the edit list hides, clamped to the edit duration.
    let rate = s.sample_rate as u64;
    let stts_media = a.table.total_duration();
    let edit = edit_mapping(&a.edits);
    if edit.non_empty > 1 {
        s.inconsistencies.push(format!(
            "the audio edit list has {} segments; many players honour only the first",
            edit.non_empty
        ));
    }
    if edit.empty > 0 {
        s.inconsistencies.push(format!(
            "the audio starts after {:.3} s of empty edit",
            edit.empty as f64 / movie.timescale.max(1) as f64
        ));
    }
    if a.duration != stts_media {
        s.inconsistencies.push(format!(
            "the audio mdhd duration ({}) differs from the sum of its stts ({stts_media})",
            a.duration
        ));
    }
    if a.table.stts_sample_count() != a.table.sizes.len() as u64 {
        s.inconsistencies.push(format!(
            "stts describes {} samples but stsz lists {}",
            a.table.stts_sample_count(),
            a.table.sizes.len()
        ));
    }
    let len = presentation_length(stts_media, a.timescale, movie.timescale, rate, &edit);
    let l = &mut s.length;
    l.priming_samples = len.priming_samples;
    l.stts_samples = len.stts_samples;
    l.edit_duration_samples = len.edit_duration_samples;
    l.packets = a.table.sizes.len() as u64;
    l.source = if len.clamped_to_edit {
        "sum of stts minus elst priming, clamped to the elst duration"
    } else {
        "sum of stts minus elst priming"
    }
    .into();
    s.decoded_samples = len.samples;
    if let (true, Some(edit)) = (len.edit_disagrees, len.edit_duration_samples) {
        s.inconsistencies.push(format!(
            "the audio edit lasts {edit} samples but the coded audio after priming is {}",
            len.after_priming
        ));
    }
    if rate > 0 {
        s.duration_secs = s.decoded_samples as f64 / rate as f64;
    }
    let payload: u64 = a.table.sizes.iter().map(|&x| x as u64).sum();
    if s.duration_secs > 0.0 {
        s.bitrate_bps = (payload as f64 * 8.0 / s.duration_secs).round() as u64;
    }

    // Decode every packet with Symphonia's AAC decoder.
    match a.table.chunks(file_size) {
        Err(e) => s.inconsistencies.push(format!("audio sample table: {e}")),
        Ok(chunks) => {
            if s.codec == "aac" {
                let d = match runs {
                    // Decoded while encoding: the file must hold exactly those packets.
                    Some(runs) => super::stream::check_runs(file, &a.table, &chunks, runs),
                    None => decode_all(
                        file,
                        &a.table,
                        &chunks,
                        asc_bytes.as_deref(),
                        s.core_sample_rate,
                        s.core_channels,
                    ),
                };
                // Symphonia decodes the core only: scale its counts to output samples.
                let sbr_ratio = if s.core_sample_rate > 0 && s.sample_rate > s.core_sample_rate {
                    (s.sample_rate / s.core_sample_rate) as u64
                } else {
                    1
                };
                let l = &mut s.length;
                l.decoded_packets = d.packets;
                l.decoder_samples = d.samples * sbr_ratio;
                l.decode_errors = d.errors;
                l.first_decode_error = d.first_error;
                if l.decode_errors == 0 {
                    // The decoder sees whole frames: it must cover stts, by less than a frame.
                    let frame = (d.max_frame * sbr_ratio).max(1);
                    if l.decoder_samples < l.stts_samples
                        || l.decoder_samples - l.stts_samples >= frame
                    {
                        s.inconsistencies.push(format!(
                            "the AAC decoder produced {} samples but stts accounts for {}",
                            l.decoder_samples, l.stts_samples
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

pub(super) fn aac_profile(object_type: u8) -> String {
    match object_type {
        1 => "Main".into(),
        2 => "LC".into(),
        3 => "SSR".into(),
        4 => "LTP".into(),
        5 => "HE-AAC".into(),
        23 => "LD".into(),
        29 => "HE-AACv2".into(),
        39 => "ELD".into(),
        n => format!("AOT {n}"),
    }
}
