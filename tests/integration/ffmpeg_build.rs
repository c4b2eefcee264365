//! What the linked FFmpeg does that the engine's maths relies on, said out loud. The suite runs
//! against the system's FFmpeg (5.1 on Debian 12) and against the vendored static FFmpeg 7.1
//! (`.ci/run`, docs/static-build.md); this test prints the figures of the one it runs with and
//! fails, saying what changed, when a new FFmpeg moves one the timeline or the quality bar
//! depends on: the native AAC encoder's priming and frame length (chapter starts and the
//! exact length are computed from them), the decoded length of a book (exact to the sample),
//! and the encoder's quality at the default bitrate (median block SNR against the source).
use aiom4b::{plan, CancelToken, Converter, NoProgress};
use aiom4b::{ConvertOptions, Limits, PlanOptions, ScanOptions, TargetSpec};
use aiom4b_testkit::fixtures::{write_mp3, Length, Mp3Spec, RateControl, Signal};
use aiom4b_testkit::m4b_reader::decode_m4b;
use aiom4b_testkit::quality;

/// The median block SNR of speech at 128 kb/s stereo on this book: 29.82 dB with FFmpeg 5.1.9
/// (Debian 12's shared libraries), 29.86 dB with the vendored static 7.1.5. The bar is well
/// below both, so only a real loss of quality fails it (a broken encoder or a wrong bitrate
/// costs several dB).
const MIN_MEDIAN_SNR_DB: f64 = 26.0;

#[test]
fn the_linked_ffmpeg_keeps_priming_length_and_quality() {
    let build = aiom4b::ffmpeg_build();
    eprintln!(
        "FFmpeg {} ({}); {:?}",
        build.version,
        build.linkage,
        aiom4b::library_versions()
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("book");
    std::fs::create_dir_all(&dir).unwrap();
    let rate = 44_100u32;
    // Two files, lengths off the AAC frame grid, so the end padding and the join are exercised.
    let lengths = [rate as u64 * 11 + 317, rate as u64 * 9 + 1021];
    let paths: Vec<_> = lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let p = dir.join(format!("{:02}.mp3", i + 1));
            let spec = Mp3Spec {
                length: Length::Samples(n),
                sample_rate: rate,
                channels: 2,
                rate_control: RateControl::Cbr {
                    bitrate_bps: 192_000,
                },
                signal: Signal::SpeechLike {
                    seed: 41 + i as u64,
                },
                ..Mp3Spec::default()
            };
            write_mp3(&p, &spec).unwrap();
            p
        })
        .collect();
    let out = tmp.path().join("book.m4b");
    let mut opts = PlanOptions::default();
    opts.output = Some(out.clone());
    opts.target = {
        let mut t = TargetSpec::default();
        t.sample_rate = Some(rate);
        t.channels = Some(2);
        t.bitrate_bps = Some(128_000);
        t
    };
    let book = plan::plan(
        std::slice::from_ref(&dir),
        &ScanOptions::default(),
        &Limits::default(),
        &opts,
    )
    .unwrap();
    let conv = Converter::new({
        let mut o = ConvertOptions::default();
        o.jobs = 1;
        o.overwrite = true;
        o
    });
    conv.convert(&book, &NoProgress, &CancelToken::new())
        .unwrap();

    let source = crate::splice::source_pcm(&paths, rate, 2);
    // The length the MP3s decode to (gapless), which the book must keep to the sample.
    let total = source[0].len() as u64;
    let summary = aiom4b::verify::summarize(&out).unwrap();
    let len = &summary.length;
    eprintln!(
        "native aac: priming {} samples, {} packets, {} decoded samples",
        len.priming_samples, len.packets, len.decoder_samples
    );
    assert_eq!(
        len.priming_samples, 1024,
        "FFmpeg {}'s aac encoder now primes {} samples; the timeline (chapter starts, the \
         edit list, segment joins) assumes 1024",
        build.version, len.priming_samples
    );
    // The edit list's duration is in the movie's 1/1000 s; the exact length is the packets'
    // samples minus the priming, which the independent reader computes.
    assert_eq!(
        summary.decoded_samples, total,
        "with FFmpeg {} the book's exact length changed",
        build.version
    );
    assert_eq!(
        len.packets,
        (total + 1024).div_ceil(1024),
        "with FFmpeg {} the aac encoder no longer writes one packet per 1024 samples plus its \
         priming",
        build.version
    );

    // FFmpeg's decoder (the test kit's reader) drops the priming but not the end padding.
    let (_, decoded) = decode_m4b(&out).unwrap();
    assert!(
        decoded[0].len() as u64 >= total,
        "FFmpeg {} decodes the book short: {} < {total}",
        build.version,
        decoded[0].len()
    );
    let mut snr = quality::block_snr(&source, &decoded);
    snr.sort_by(f64::total_cmp);
    let median = quality::percentile(&snr, 0.5);
    eprintln!("native aac 128 kb/s stereo speech: median block SNR {median:.2} dB");
    assert!(
        median >= MIN_MEDIAN_SNR_DB,
        "FFmpeg {}'s aac encoder: median block SNR {median:.2} dB < {MIN_MEDIAN_SNR_DB} dB",
        build.version
    );
}
