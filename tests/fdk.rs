//! The FDK AAC encoder (cargo feature `fdk-aac`) end to end: books of generated MP3 files are
//! converted with `--encoder fdk` at AAC-LC, HE-AAC and HE-AAC v2 and read back by readers that
//! did not write them: the structure and the exact length through `verify` (hand-written box
//! walker, Symphonia's AAC decoder for every packet — the AAC core only, for HE-AAC), the audio
//! through FFmpeg's decoder (which has SBR) for alignment, and the coding error against the
//! decoded source for the splice and SNR comparisons.
//!
//! Run with `cargo test --release --features fdk-aac --test fdk` (release: these encode real
//! audio). A test target of its own (Cargo.toml), not part of the integration suite.
#![cfg(feature = "fdk-aac")]

use aiom4b::__internals::decode::decode_file;
use aiom4b::__internals::input::open_mp3;
use aiom4b::verify::{self, Expectations, M4bSummary};
use aiom4b::Chapter;
use aiom4b::{plan, CancelToken, ConvertReport, Converter, NoProgress};
use aiom4b::{
    AacProfile, ConvertOptions, EncoderChoice, Limits, PlanOptions, ScanOptions, TargetSpec,
};
use aiom4b_testkit::fixtures::{write_mp3, Length, Mp3Spec, RateControl, Signal};
use aiom4b_testkit::m4b_reader::decode_m4b;
use aiom4b_testkit::quality;
use std::path::{Path, PathBuf};

/// Segments of 1024 frames (half the default) so a short book has several joins; a join's
/// quality depends on the lead-in, not on the segment length.
const TEST_SEGMENT_FRAMES: u64 = 1024;

/// FFmpeg's HE-AAC decoder does not remove the SBR filter banks' delay (481 core samples, 962
/// output samples) that Apple's decoder compensates and the edit list therefore leaves in (as
/// Apple's encoders write it): through FFmpeg the audio comes out this much late.
const FFMPEG_SBR_DECODER_DELAY: i64 = 962;

/// Writes one MP3 per entry of `lengths` (exact samples at `rate`) into `dir`: speech-like, or
/// pink noise when `noise` (no pauses, so that every block can be judged).
fn write_book(
    dir: &Path,
    rate: u32,
    channels: u16,
    lengths: &[u64],
    seed: u64,
    noise: bool,
) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let path = dir.join(format!("{:02} - Part {}.mp3", i + 1, i + 1));
            let spec = Mp3Spec {
                length: Length::Samples(n),
                sample_rate: rate,
                channels,
                rate_control: RateControl::Cbr {
                    bitrate_bps: if rate < 32_000 { 96_000 } else { 192_000 },
                },
                signal: if noise {
                    Signal::Noise {
                        amplitude: 0.5,
                        seed: seed + i as u64,
                    }
                } else {
                    Signal::SpeechLike {
                        seed: seed + i as u64,
                    }
                },
                ..Mp3Spec::default()
            };
            let w = write_mp3(&path, &spec).unwrap();
            assert_eq!(w.samples, n, "{}: fixture length", path.display());
            path
        })
        .collect()
}

/// Decodes the book's MP3 files as the pipeline does: the source the encoder saw.
fn source_pcm(paths: &[PathBuf], rate: u32, channels: u16) -> Vec<Vec<f32>> {
    let mut planes = vec![Vec::new(); channels as usize];
    for p in paths {
        decode_file(
            open_mp3(p).unwrap(),
            rate,
            channels as usize,
            16_384,
            &|| false,
            &mut |chunk| {
                for (d, s) in planes.iter_mut().zip(&chunk.planes) {
                    d.extend_from_slice(s);
                }
                Ok(())
            },
        )
        .unwrap();
    }
    planes
}

struct Encoding {
    encoder: EncoderChoice,
    profile: AacProfile,
    rate: u32,
    channels: u16,
    bitrate_bps: u64,
    jobs: usize,
}

impl Encoding {
    fn fdk(profile: AacProfile, rate: u32, channels: u16, bitrate_bps: u64) -> Self {
        Encoding {
            encoder: EncoderChoice::Fdk,
            profile,
            rate,
            channels,
            bitrate_bps,
            jobs: 1,
        }
    }
    fn name(&self) -> String {
        format!(
            "{:?}-{:?}-{}-{}ch-{}k-j{}",
            self.encoder,
            self.profile,
            self.rate,
            self.channels,
            self.bitrate_bps / 1000,
            self.jobs
        )
    }
}

/// Plans and converts the book in `dir` (the conversion verifies its own output).
fn convert(dir: &Path, out_dir: &Path, e: &Encoding) -> (ConvertReport, PathBuf) {
    let out = out_dir.join(format!("{}.m4b", e.name()));
    let mut opts = PlanOptions::default();
    opts.output = Some(out.clone());
    opts.target = {
        let mut o = TargetSpec::default();
        o.sample_rate = Some(e.rate);
        o.channels = Some(e.channels);
        o.bitrate_bps = Some(e.bitrate_bps);
        o
    };
    let book = plan::plan(
        &[dir.to_path_buf()],
        &ScanOptions::default(),
        &Limits::default(),
        &opts,
    )
    .unwrap();
    let conv = Converter::new({
        let mut o = ConvertOptions::default();
        o.encoder = e.encoder;
        o.profile = e.profile;
        o.jobs = e.jobs;
        o.overwrite = true;
        o.segment_frames = TEST_SEGMENT_FRAMES;
        o
    });
    let report = conv
        .convert(&book, &NoProgress, &CancelToken::new())
        .unwrap_or_else(|err| panic!("{}: {err}", e.name()));
    (report, out)
}

/// The lag (decoded index − source index) in `lo..=hi` that best correlates channel 0 of the
/// two over one second from `from`, and the normalized correlation there.
fn best_lag(
    source: &[f32],
    decoded: &[f32],
    from: usize,
    len: usize,
    lo: i64,
    hi: i64,
) -> (i64, f64) {
    let mut best = (0, f64::MIN);
    for lag in lo..=hi {
        let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
        for i in from..from + len {
            let j = i as i64 + lag;
            if j < 0 || j as usize >= decoded.len() || i >= source.len() {
                continue;
            }
            let (x, y) = (source[i] as f64, decoded[j as usize] as f64);
            xy += x * y;
            xx += x * x;
            yy += y * y;
        }
        let c = xy / (xx * yy).sqrt().max(1e-12);
        if c > best.1 {
            best = (lag, c);
        }
    }
    best
}

/// The decoded output realigned to the source: FFmpeg's SBR delay removed for HE-AAC.
fn aligned(decoded: Vec<Vec<f32>>, profile: AacProfile) -> Vec<Vec<f32>> {
    let skip = match profile {
        AacProfile::Lc => 0,
        _ => FFMPEG_SBR_DECODER_DELAY as usize,
    };
    decoded
        .into_iter()
        .map(|p| p[skip.min(p.len())..].to_vec())
        .collect()
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|v| (*v as f64) * (*v as f64)).sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    quality::percentile(&v, 0.5)
}

/// Everything the output of one FDK conversion must satisfy.
fn check_exact(
    e: &Encoding,
    lengths: &[u64],
    source: &[Vec<f32>],
    out: &Path,
    report: &ConvertReport,
) {
    let name = e.name();
    let total: u64 = lengths.iter().sum();
    assert_eq!(report.total_samples, total, "{name}: pipeline clock");
    let mut starts = vec![0u64];
    for n in &lengths[..lengths.len() - 1] {
        starts.push(starts.last().unwrap() + n);
    }
    let got: Vec<u64> = report.chapters.iter().map(|c| c.start_samples).collect();
    assert_eq!(got, starts, "{name}: planned chapter starts");

    // The independent reader: structure, exact length, every packet decoded (by Symphonia).
    let s: M4bSummary = verify::summarize(out).unwrap();
    let exp = Expectations {
        total_samples: Some(total),
        chapters: Some(
            starts
                .iter()
                .enumerate()
                .map(|(i, &start_samples)| Chapter {
                    title: format!("Part {}", i + 1),
                    start_samples,
                })
                .collect(),
        ),
        profile: Some(e.profile),
        ..Expectations::new(e.rate, e.channels)
    };
    let problems = verify::check(&s, &exp);
    assert!(problems.is_empty(), "{name}: {problems:#?}");
    // Dual-rate HE-AAC counts in core samples in the container: one output sample of rounding.
    let (priming, timescale, frame, tol) = match e.profile {
        AacProfile::Lc => (2048, e.rate, 1024, 0),
        AacProfile::He => (4096, e.rate / 2, 2048, 1),
        AacProfile::Hev2 => (6144, e.rate / 2, 2048, 1),
    };
    assert!(
        s.decoded_samples.abs_diff(total) <= tol,
        "{name}: presentation length {} samples, input {total}",
        s.decoded_samples
    );
    assert_eq!(s.length.priming_samples, priming, "{name}: edit list");
    let audio = s.tracks.iter().find(|t| t.handler == "soun").unwrap();
    assert_eq!(audio.timescale, timescale, "{name}: track timescale");
    assert_eq!(s.length.decode_errors, 0, "{name}: Symphonia decode errors");
    assert_eq!(
        s.length.decoded_packets, s.length.packets,
        "{name}: packets decoded"
    );
    let profile = match e.profile {
        AacProfile::Lc => "LC",
        AacProfile::He => "HE-AAC",
        AacProfile::Hev2 => "HE-AACv2",
    };
    assert_eq!(s.profile.as_deref(), Some(profile), "{name}");
    assert_eq!((s.sample_rate, s.channels), (e.rate, e.channels), "{name}");
    // chpl counts in 100 ns: exact to the sample.
    let chpl: Vec<u64> = s
        .chpl
        .as_ref()
        .unwrap()
        .chapters
        .iter()
        .map(|c| c.start_samples)
        .collect();
    for (a, b) in chpl.iter().zip(&starts) {
        assert!(a.abs_diff(*b) <= 1, "{name}: chpl start {a}, planned {b}");
    }

    // FFmpeg's decoder (with SBR): every sample there, and in place.
    let (rate, decoded) = decode_m4b(out).unwrap();
    // FFmpeg's decoder outputs mono HE-AAC as stereo: with hierarchical signalling the config
    // cannot rule out parametric stereo, so it prepares for it.
    let channels = match e.profile {
        AacProfile::Lc => e.channels as usize,
        _ => 2,
    };
    assert_eq!(
        (rate, decoded.len()),
        (e.rate, channels),
        "{name}: FFmpeg decodes"
    );
    let n = decoded[0].len() as u64;
    assert!(
        n >= total && n < total + frame,
        "{name}: FFmpeg decodes {n} samples for {total}"
    );
    // The correlation peak of SBR output is about a sample wide: its waveform follows the
    // source only in the band-limited core.
    let (expect_lag, lag_tol) = match e.profile {
        AacProfile::Lc => (0, 0),
        _ => (FFMPEG_SBR_DECODER_DELAY, 2),
    };
    // Around the second chapter start (the join between two input files), in the loudest
    // half second: speech pauses are room noise, where coding noise swamps the correlation.
    let half = e.rate as usize / 2;
    let around = (starts[1] as usize).saturating_sub(2 * half);
    let at = (0..8)
        .map(|k| around + k * half / 2)
        .max_by(|a, b| {
            energy(&source[0][*a..*a + half]).total_cmp(&energy(&source[0][*b..*b + half]))
        })
        .unwrap();
    let (lag, corr) = best_lag(
        &source[0],
        &decoded[0],
        at,
        half,
        expect_lag - 1100,
        expect_lag + 1100,
    );
    assert!(
        lag.abs_diff(expect_lag) <= lag_tol && corr > 0.8,
        "{name}: decoded audio is offset by {lag} samples (correlation {corr:.3}), expected {expect_lag}"
    );
}

#[test]
fn fdk_output_is_exact_at_every_profile_rate_and_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        Encoding::fdk(AacProfile::Lc, 44_100, 2, 128_000),
        Encoding::fdk(AacProfile::Lc, 22_050, 1, 48_000),
        Encoding::fdk(AacProfile::Lc, 48_000, 1, 64_000),
        Encoding::fdk(AacProfile::He, 44_100, 2, 48_000),
        Encoding::fdk(AacProfile::He, 48_000, 1, 32_000),
        Encoding::fdk(AacProfile::He, 22_050, 1, 32_000),
        Encoding::fdk(AacProfile::Hev2, 44_100, 2, 32_000),
        Encoding::fdk(AacProfile::Hev2, 48_000, 2, 48_000),
    ];
    for (k, e) in cases.iter().enumerate() {
        // Odd lengths: no file ends on a frame boundary of either frame size.
        let lengths: Vec<u64> = [1.3, 2.1, 0.9]
            .iter()
            .enumerate()
            .map(|(i, secs)| (secs * e.rate as f64) as u64 + 17 * i as u64 + 3)
            .collect();
        let dir = tmp.path().join(format!("book{k}"));
        let paths = write_book(&dir, e.rate, e.channels, &lengths, 100 + k as u64, false);
        let source = source_pcm(&paths, e.rate, e.channels);
        let (report, out) = convert(&dir, tmp.path(), e);
        check_exact(e, &lengths, &source, &out, &report);
    }
}

#[test]
fn fdk_segmented_encoding_is_exact_and_its_joins_are_inaudible() {
    let tmp = tempfile::tempdir().unwrap();
    // Long enough for several segments: 1024 frames each (23.8 s of AAC-LC at 44.1 kHz,
    // 47.6 s of HE-AAC). Pink noise: speech pauses would leave most joins unjudged (silent).
    let rate = 44_100u32;
    let lengths = [
        rate as u64 * 55 + 11,
        rate as u64 * 50 + 7,
        rate as u64 * 40 + 5,
    ];
    let dir = tmp.path().join("book");
    let paths = write_book(&dir, rate, 2, &lengths, 7, true);
    let source = source_pcm(&paths, rate, 2);
    for (profile, bitrate_bps) in [(AacProfile::Lc, 128_000), (AacProfile::He, 48_000)] {
        let single = Encoding::fdk(profile, rate, 2, bitrate_bps);
        let seg = Encoding {
            jobs: 2,
            ..Encoding::fdk(profile, rate, 2, bitrate_bps)
        };
        let (r1, out1) = convert(&dir, tmp.path(), &single);
        let (r2, out2) = convert(&dir, tmp.path(), &seg);
        check_exact(&seg, &lengths, &source, &out2, &r2);
        assert_eq!(
            r1.packets,
            r2.packets,
            "{}: same packets as the single encoder",
            seg.name()
        );
        // Segment k starts with global packet k·SEGMENT_FRAMES, which decodes to the output
        // from its pts on: k·SEGMENT_FRAMES·frame − priming.
        let (frame, priming) = match profile {
            AacProfile::Lc => (1024, 2048),
            _ => (2048, 4096),
        };
        let span = TEST_SEGMENT_FRAMES * frame;
        let total: u64 = lengths.iter().sum();
        let joins: Vec<u64> = (1..)
            .map(|k| k * span - priming)
            .take_while(|j| *j < total)
            .collect();
        assert!(joins.len() >= 2, "the book must have joins");
        let a = aligned(decode_m4b(&out1).unwrap().1, profile);
        let b = aligned(decode_m4b(&out2).unwrap().1, profile);
        let r = quality::splice_report(&source, &a, &b, &joins);
        eprintln!("{}: {r:?}", seg.name());
        assert!(r.passes, "{}: joins are audible: {r:#?}", seg.name());
    }
}

#[test]
fn fdk_snr_is_at_least_natives_at_the_same_bitrate() {
    let tmp = tempfile::tempdir().unwrap();
    let rate = 44_100u32;
    for (channels, bitrate_bps) in [(2u16, 128_000u64), (1, 64_000)] {
        let lengths = [rate as u64 * 20 + 3];
        let dir = tmp.path().join(format!("book{channels}"));
        let paths = write_book(&dir, rate, channels, &lengths, 21, false);
        let source = source_pcm(&paths, rate, channels);
        let fdk = Encoding::fdk(AacProfile::Lc, rate, channels, bitrate_bps);
        let native = Encoding {
            encoder: EncoderChoice::Native,
            ..Encoding::fdk(AacProfile::Lc, rate, channels, bitrate_bps)
        };
        let (_, out_fdk) = convert(&dir, tmp.path(), &fdk);
        let (_, out_native) = convert(&dir, tmp.path(), &native);
        let snr_fdk = median(quality::block_snr(
            &source,
            &decode_m4b(&out_fdk).unwrap().1,
        ));
        let snr_native = median(quality::block_snr(
            &source,
            &decode_m4b(&out_native).unwrap().1,
        ));
        eprintln!("{channels} ch {bitrate_bps} b/s: median block SNR FDK {snr_fdk:.2} dB, native {snr_native:.2} dB");
        assert!(
            snr_fdk >= snr_native,
            "{}: FDK median SNR {snr_fdk:.2} dB < native {snr_native:.2} dB",
            fdk.name()
        );
    }
}

#[test]
fn fdk_refuses_he_aac_v2_in_mono() {
    let settings = aiom4b::EncoderSettings::new(
        aiom4b::TargetFormat {
            sample_rate: 44_100,
            channels: 1,
            bitrate_bps: 32_000,
        },
        EncoderChoice::Fdk,
        Default::default(),
        AacProfile::Hev2,
    );
    let err = aiom4b::__internals::encode::open_encoder(&settings)
        .err()
        .expect("mono HE-AAC v2 must fail");
    assert!(
        err.to_string().contains("HE-AAC (v1) profile for mono"),
        "{err}"
    );
}
