//! Container limits: a book longer than 27 h (the 32-bit duration limit at 44.1 kHz) and a file
//! over 4 GiB (the 32-bit chunk-offset limit) must stay valid — FFmpeg's movenc switches to
//! 64-bit fields by itself, and these tests check that it does.
//!
//! They write real AAC packets (silence, encoded once and repeated) straight through the muxer,
//! so they take seconds rather than the hours a real encode would. Still heavy on disk (4 GiB),
//! so they are `#[ignore]`d: run them with `cargo test --release -- --ignored container`.
use aiom4b::__internals::encode::{open_encoder, AudioEncoder, EncodedPacket};
use aiom4b::__internals::mux::{M4bMuxer, MuxChapter};
use aiom4b::{AacCoder, AacProfile, EncoderChoice, EncoderSettings, TargetFormat};

fn silence_packets(settings: &EncoderSettings) -> (Box<dyn AudioEncoder>, Vec<EncodedPacket>) {
    let mut enc = open_encoder(settings).unwrap();
    let frame = enc.params().frame_samples;
    let zeros = vec![0f32; frame];
    let planes: Vec<&[f32]> = (0..settings.target.channels)
        .map(|_| zeros.as_slice())
        .collect();
    let mut out = Vec::new();
    for _ in 0..32 {
        enc.encode(&planes, &mut out).unwrap();
    }
    (enc, out)
}

/// Writes `frames` packets built from `payload`, with chapters every hour.
fn write_long(path: &std::path::Path, frames: u64, payload: Option<Vec<u8>>) -> u64 {
    let settings = EncoderSettings::new(
        TargetFormat::default(),
        EncoderChoice::Native,
        AacCoder::Twoloop,
        AacProfile::Lc,
    );
    let (enc, pkts) = silence_packets(&settings);
    let params = enc.params();
    let steady = payload.unwrap_or_else(|| pkts[20].data.clone());
    let meta = vec![
        ("title".to_string(), "Long".to_string()),
        ("media_type".to_string(), "2".to_string()),
    ];
    let mut mux = M4bMuxer::create(path, &params, &meta, None).unwrap();
    let f = params.frame_samples as i64;
    for j in 0..frames as i64 {
        mux.write(&EncodedPacket {
            data: steady.clone(),
            pts: j * f - params.priming_samples,
            duration: f,
        })
        .unwrap();
    }
    let total = frames as i64 * f - params.priming_samples;
    let hour = 3600 * params.sample_rate as i64;
    let chapters: Vec<MuxChapter> = (0..)
        .map(|h| h * hour)
        .take_while(|s| *s < total)
        .map(|s| MuxChapter {
            title: format!("Hour {}", s / hour + 1),
            start: s,
            end: (s + hour).min(total),
        })
        .collect();
    mux.finish(&chapters).unwrap();
    total as u64
}

#[test]
#[ignore = "writes 28 hours of packets; run with --ignored"]
fn container_longer_than_27_hours_keeps_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.m4b");
    let frames = 28 * 3600 * 44_100 / 1024 + 1;
    let total = write_long(&path, frames, None);
    let s = aiom4b::verify::summarize(&path).unwrap();
    assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
    assert!(
        s.decoded_samples.abs_diff(total) <= 1024,
        "{} vs {total}",
        s.decoded_samples
    );
    assert!(s.duration_secs > 27.5 * 3600.0);
    let ct = s.chapter_track.expect("chapter track");
    assert_eq!(ct.chapters.len(), 28);
    assert!((ct.chapters[27].start_secs - 27.0 * 3600.0).abs() < 0.01);
}

#[test]
#[ignore = "writes a 4.3 GB file; run with --ignored"]
fn container_over_4_gib_uses_64_bit_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.m4b");
    // Large (garbage) payloads reach 4 GiB in few packets; only the structure is checked.
    let frames = 4_400_000_000u64 / 6000;
    write_long(&path, frames, Some(vec![0x21; 6000]));
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 1 << 32);
    let s = aiom4b::verify::summarize(&path).unwrap();
    assert!(s.uses_co64, "a file over 4 GiB needs co64 chunk offsets");
    assert!(s.faststart);
}
