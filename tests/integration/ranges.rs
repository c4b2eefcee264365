//! The packet index behind the multi-core encoder's ranges: without decoding, it must put every
//! sample where the decoder does, and decoding from any sample must give exactly the samples
//! that decoding the whole file gives from there (bit for bit), in every MP3 flavour an
//! audiobook comes in.
use aiom4b::__internals::decode::{rate_period, resampled_len, RESAMPLE_PREROLL};
use aiom4b::__internals::packets::{
    decode_from, decode_resampled_from, index_mp3, OpenTrack, RangeError, TrackIndex,
    PREROLL_PACKETS,
};
use aiom4b_testkit::fixtures::{
    audio_start, write_mp3, FrameHeader, Length, Mp3Spec, RateControl, Signal,
};
use std::path::Path;

/// The whole file decoded in order by the engine's decoder, at its own rate and channels.
fn whole(path: &Path, rate: u32, channels: usize) -> Vec<Vec<f32>> {
    crate::splice::source_pcm(&[path.to_path_buf()], rate, channels)
}

/// Speech-like files of `secs` seconds each, `00.mp3`, `01.mp3`, … in `book`.
fn speech_files(book: &Path, secs: f64, seeds: std::ops::Range<u64>) {
    std::fs::create_dir_all(book).unwrap();
    for (i, seed) in seeds.enumerate() {
        write_mp3(
            book.join(format!("{i:02}.mp3")),
            &Mp3Spec {
                length: Length::Secs(secs),
                signal: Signal::SpeechLike { seed },
                ..Mp3Spec::default()
            },
        )
        .unwrap();
    }
}

/// Plans `book` into `out` and converts it with the library on a thread of its own. A liveness
/// check, not a timing one: a deadlock must fail the test, not hang the run, so after
/// [`LIVENESS`] the thread is left behind and the test fails.
fn convert_on_thread(
    book: &Path,
    out: &Path,
    options: aiom4b::ConvertOptions,
    sink: impl aiom4b::ProgressSink + Send + 'static,
    cancel: aiom4b::CancelToken,
) -> aiom4b::Result<aiom4b::ConvertReport> {
    use aiom4b::{plan, Converter, Limits, PlanOptions, ScanOptions};
    let plan = plan::plan(
        &[book.to_path_buf()],
        &ScanOptions::default(),
        &Limits::default(),
        &{
            let mut o = PlanOptions::default();
            o.output = Some(out.to_path_buf());
            o
        },
    )
    .unwrap();
    let conv = Converter::new(options);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(conv.convert(&plan, &sink, &cancel));
    });
    rx.recv_timeout(LIVENESS)
        .unwrap_or_else(|_| panic!("{}: no end within {LIVENESS:?}", out.display()))
}

/// How long a conversion here may run before it counts as hung. They take seconds on an idle
/// machine, but the rate-change test's -j2 run (94 segments of 32 frames, each with its
/// lead-in, then the whole book again in order) was seen taking over 120 s on two cores shared
/// with a fuzzer and two builds; a hang never ends, so a generous bound loses nothing.
const LIVENESS: std::time::Duration = std::time::Duration::from_secs(400);

/// Decodes from `from` to the end with the ranged decoder.
fn ranged(path: &Path, from: u64, channels: usize) -> Vec<Vec<f32>> {
    let index = index_mp3(path).unwrap();
    let mut planes = vec![Vec::new(); channels];
    decode_from(
        &mut OpenTrack::open(path).unwrap(),
        &index,
        from,
        channels,
        &|| false,
        &mut |p| {
            for (d, s) in planes.iter_mut().zip(p) {
                d.extend_from_slice(s);
            }
            Ok(true)
        },
    )
    .unwrap_or_else(|e| panic!("{}: from {from}: {e:?}", path.display()));
    planes
}

/// Removes the first MP3 frame after the ID3v2 tag: LAME's Xing/Info frame, which carries the
/// gapless delay and padding. Without it the decoder keeps every sample of every frame.
pub(crate) fn strip_lame_header(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let at = audio_start(&b) as usize;
    let len = FrameHeader::parse(&b[at..])
        .expect("no frame header after the tag")
        .len;
    let frame = &b[at..at + len];
    assert!(
        frame.windows(4).any(|w| w == b"Xing" || w == b"Info"),
        "the first frame is not LAME's header frame"
    );
    b.drain(at..at + len);
    std::fs::write(path, b).unwrap();
}

#[test]
fn the_index_places_every_sample_where_the_decoder_does() {
    let tmp = tempfile::tempdir().unwrap();
    let speech = |seed| Signal::SpeechLike { seed };
    let cases: Vec<(&str, Mp3Spec, bool)> = vec![
        (
            "cbr 44.1k stereo",
            Mp3Spec {
                length: Length::Samples(44_100 * 7 + 333),
                signal: speech(3),
                ..Mp3Spec::default()
            },
            false,
        ),
        (
            "vbr 44.1k mono",
            Mp3Spec {
                length: Length::Samples(44_100 * 6 + 1),
                channels: 1,
                rate_control: RateControl::Vbr { quality: 5 },
                signal: speech(4),
                ..Mp3Spec::default()
            },
            false,
        ),
        (
            "mpeg-2 22.05k (576-sample frames), low bitrate",
            Mp3Spec {
                length: Length::Samples(22_050 * 9 + 700),
                sample_rate: 22_050,
                channels: 1,
                rate_control: RateControl::Cbr {
                    bitrate_bps: 32_000,
                },
                signal: speech(5),
                ..Mp3Spec::default()
            },
            false,
        ),
        (
            "48k stereo without the LAME header",
            Mp3Spec {
                length: Length::Samples(48_000 * 5 + 77),
                sample_rate: 48_000,
                signal: speech(6),
                ..Mp3Spec::default()
            },
            true,
        ),
        (
            "shorter than one frame",
            Mp3Spec {
                length: Length::Samples(300),
                ..Mp3Spec::default()
            },
            false,
        ),
    ];
    for (name, spec, strip) in cases {
        let path = tmp
            .path()
            .join(format!("{}.mp3", name.replace([' ', '(', ')', ','], "_")));
        write_mp3(&path, &spec).unwrap();
        if strip {
            strip_lame_header(&path);
        }
        let channels = usize::from(spec.channels);
        let reference = whole(&path, spec.sample_rate, channels);
        let n = reference[0].len() as u64;
        let index = index_mp3(&path).unwrap();
        assert_eq!(index.total(), n, "{name}: indexed total");
        assert_eq!(index.rate, spec.sample_rate, "{name}");
        if !strip {
            assert_eq!(n, spec.samples(), "{name}: gapless length");
        }
        // From the start, inside the first frames (where the encoder delay is trimmed), on and
        // around frame boundaries, past the pre-roll distance, and at the very end.
        let frame = if spec.sample_rate < 32_000 { 576 } else { 1152 };
        let far = frame * (PREROLL_PACKETS as u64 + 10) + 5;
        for from in [
            0,
            1,
            481,
            frame - 1,
            frame,
            3 * frame + 17,
            far,
            n / 2,
            n - 1,
        ] {
            if from >= n {
                continue;
            }
            let got = ranged(&path, from, channels);
            for c in 0..channels {
                assert_eq!(
                    got[c].len() as u64,
                    n - from,
                    "{name}: from {from}: length, channel {c}"
                );
                assert!(
                    got[c] == reference[c][from as usize..],
                    "{name}: from {from}: samples differ from the in-order decode, channel {c}"
                );
            }
        }
    }
}

/// One open file serves several ranges in turn, as a worker's does: forward from where the
/// last range stopped (the packets in between are read, not decoded), and backward (the file
/// is opened again). Every range is bit-exact.
#[test]
fn an_open_file_serves_ranges_forward_and_backward() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("long.mp3");
    write_mp3(
        &path,
        &Mp3Spec {
            length: Length::Secs(20.0),
            signal: Signal::SpeechLike { seed: 11 },
            ..Mp3Spec::default()
        },
    )
    .unwrap();
    let reference = whole(&path, 44_100, 2);
    let index = index_mp3(&path).unwrap();
    let mut file = OpenTrack::open(&path).unwrap();
    // (from, length): later, much later, then back to before the first.
    for (from, len) in [
        (100_000u64, 50_000usize),
        (400_000, 30_000),
        (20_000, 70_000),
    ] {
        let mut got: Vec<Vec<f32>> = vec![Vec::new(); 2];
        decode_from(&mut file, &index, from, 2, &|| false, &mut |p| {
            let take = (len - got[0].len()).min(p[0].len());
            for (d, s) in got.iter_mut().zip(p) {
                d.extend_from_slice(&s[..take]);
            }
            Ok(got[0].len() < len)
        })
        .unwrap();
        for c in 0..2 {
            assert!(
                got[c] == reference[c][from as usize..from as usize + len],
                "range from {from}: channel {c} differs"
            );
        }
    }
}

/// Decodes a resampled range with `file`: from output sample `from`, `len` samples or to the
/// end.
fn ranged_resampled(
    file: &mut OpenTrack,
    index: &TrackIndex,
    (out_rate, out_total, channels): (u32, u64, usize),
    from: u64,
    len: Option<usize>,
) -> Vec<Vec<f32>> {
    let mut got: Vec<Vec<f32>> = vec![Vec::new(); channels];
    let limit = len.unwrap_or(usize::MAX);
    decode_resampled_from(
        file,
        index,
        out_rate,
        out_total,
        from,
        channels,
        &|| false,
        &mut |p| {
            let take = (limit - got[0].len()).min(p[0].len());
            for (d, s) in got.iter_mut().zip(p) {
                d.extend_from_slice(&s[..take]);
            }
            Ok(got[0].len() < limit)
        },
    )
    .unwrap_or_else(|e| panic!("from {from}: {e:?}"));
    got
}

/// The multi-core path's resampling: before decoding, the index and the resampler's arithmetic
/// give every resampled file's exact length, and decoding from any output sample gives exactly
/// the samples the in-order decode (`decode_file`: one resampler per file, flushed at its end)
/// gives from there, bit for bit, to the end of the file: from the start, inside the resampler's
/// pre-roll, on and around the first sample that needs a mid-file start, in the middle, in the
/// last frame. Every MP3 rate family, mono and stereo, up- and downmixed after resampling.
#[test]
fn a_resampled_file_decodes_from_any_sample_as_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let speech = |seed| Signal::SpeechLike { seed };
    let spec = |rate: u32, channels: u16, samples: u64, seed: u64| Mp3Spec {
        length: Length::Samples(samples),
        sample_rate: rate,
        channels,
        rate_control: RateControl::Cbr {
            bitrate_bps: if rate < 32_000 { 32_000 } else { 128_000 },
        },
        signal: speech(seed),
        ..Mp3Spec::default()
    };
    // (name, file, output rate, output channels, strip the LAME header)
    let cases: Vec<(&str, Mp3Spec, u32, usize, bool)> = vec![
        (
            "22.05k mono to 44.1k stereo",
            spec(22_050, 1, 22_050 * 9 + 700, 21),
            44_100,
            2,
            false,
        ),
        (
            "22.05k mono to 44.1k mono",
            spec(22_050, 1, 22_050 * 4 + 1, 22),
            44_100,
            1,
            false,
        ),
        (
            "48k stereo to 44.1k stereo",
            spec(48_000, 2, 48_000 * 6 + 77, 23),
            44_100,
            2,
            false,
        ),
        (
            "48k stereo to 44.1k mono",
            spec(48_000, 2, 48_000 * 4 + 5, 24),
            44_100,
            1,
            false,
        ),
        (
            "44.1k stereo to 48k",
            spec(44_100, 2, 44_100 * 4 + 333, 25),
            48_000,
            2,
            false,
        ),
        (
            "24k mono vbr to 44.1k",
            Mp3Spec {
                rate_control: RateControl::Vbr { quality: 6 },
                ..spec(24_000, 1, 24_000 * 5 + 3, 26)
            },
            44_100,
            2,
            false,
        ),
        (
            "11.025k mono (mpeg-2.5) to 44.1k",
            spec(11_025, 1, 11_025 * 6 + 9, 27),
            44_100,
            2,
            false,
        ),
        (
            "8k mono to 44.1k",
            spec(8_000, 1, 8_000 * 6 + 1, 28),
            44_100,
            1,
            false,
        ),
        (
            "32k stereo to 44.1k",
            spec(32_000, 2, 32_000 * 5 + 500, 29),
            44_100,
            2,
            false,
        ),
        (
            "48k stereo to 22.05k mono",
            spec(48_000, 2, 48_000 * 4 + 1, 30),
            22_050,
            1,
            false,
        ),
        (
            "48k without the LAME header to 44.1k",
            spec(48_000, 2, 48_000 * 4 + 9, 31),
            44_100,
            2,
            true,
        ),
        (
            "22.05k shorter than one frame",
            spec(22_050, 1, 300, 32),
            44_100,
            2,
            false,
        ),
    ];
    for (name, spec, out_rate, channels, strip) in cases {
        let path = tmp.path().join(format!(
            "{}.mp3",
            name.replace([' ', '(', ')', ',', '.'], "_")
        ));
        write_mp3(&path, &spec).unwrap();
        if strip {
            strip_lame_header(&path);
        }
        let reference = whole(&path, out_rate, channels);
        let n = reference[0].len() as u64;
        let index = index_mp3(&path).unwrap();
        assert_eq!(index.rate, spec.sample_rate, "{name}");
        let predicted = resampled_len(index.rate, out_rate, index.total())
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: no exact ratio"));
        assert_eq!(
            predicted, n,
            "{name}: predicted length against the in-order decode"
        );
        let (p, q) = rate_period(index.rate, out_rate).unwrap();
        // The first output whose resampler starts in the middle of the file.
        let mid = (RESAMPLE_PREROLL + p) * q / p;
        let frame = if spec.sample_rate < 32_000 { 576 } else { 1152 } * q / p;
        let mut file = OpenTrack::open(&path).unwrap();
        for from in [
            0,
            1,
            481,
            mid - 1,
            mid,
            mid + 1,
            3 * frame + 17,
            n / 3,
            n / 2,
            n - frame / 2,
            n - 1,
        ] {
            if from >= n {
                continue;
            }
            let got = ranged_resampled(&mut file, &index, (out_rate, n, channels), from, None);
            for c in 0..channels {
                assert_eq!(got[c].len() as u64, n - from, "{name}: from {from}: length");
                assert!(
                    got[c] == reference[c][from as usize..],
                    "{name}: from {from}: samples differ from the in-order decode, channel {c}"
                );
            }
        }
        // Bounded ranges with one open file, forward then back, as a worker's.
        if n > 4 * mid {
            for (from, len) in [(n / 4, 5_000usize), (n / 2, 7_000), (mid + 3, 9_000)] {
                let got =
                    ranged_resampled(&mut file, &index, (out_rate, n, channels), from, Some(len));
                for c in 0..channels {
                    assert!(
                        got[c] == reference[c][from as usize..from as usize + len],
                        "{name}: range {from}+{len}: channel {c} differs"
                    );
                }
            }
        }
    }
}

/// A resampled file that ends anywhere else than its predicted length (here: the caller's
/// length is one sample off) stops the ranged run as a mismatch, after the resampler's flush.
#[test]
fn a_resampled_file_that_ends_off_its_predicted_length_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("r.mp3");
    write_mp3(
        &path,
        &Mp3Spec {
            length: Length::Samples(22_050 * 3 + 11),
            sample_rate: 22_050,
            channels: 1,
            signal: Signal::SpeechLike { seed: 33 },
            ..Mp3Spec::default()
        },
    )
    .unwrap();
    let index = index_mp3(&path).unwrap();
    let n = resampled_len(22_050, 44_100, index.total())
        .unwrap()
        .unwrap();
    for (total, from) in [(n + 1, 0), (n - 1, n / 2)] {
        let r = decode_resampled_from(
            &mut OpenTrack::open(&path).unwrap(),
            &index,
            44_100,
            total,
            from,
            2,
            &|| false,
            &mut |_| Ok(true),
        );
        match r {
            Err(RangeError::Mismatch(why)) => {
                assert!(
                    why.contains("r.mp3") && why.contains(&format!("{n}")),
                    "{why}"
                )
            }
            other => panic!("length {total} from {from}: expected a mismatch, got {other:?}"),
        }
    }
}

#[test]
fn a_file_that_decodes_differently_from_its_index_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a.mp3");
    let spec = Mp3Spec {
        length: Length::Secs(8.0),
        signal: Signal::SpeechLike { seed: 9 },
        ..Mp3Spec::default()
    };
    write_mp3(&path, &spec).unwrap();
    let index = index_mp3(&path).unwrap();
    // The file changes after indexing: a longer take of the same chapter.
    write_mp3(
        &path,
        &Mp3Spec {
            length: Length::Secs(9.0),
            ..spec
        },
    )
    .unwrap();
    let r = decode_from(
        &mut OpenTrack::open(&path).unwrap(),
        &index,
        44_100,
        2,
        &|| false,
        &mut |_| Ok(true),
    );
    match r {
        Err(RangeError::Mismatch(why)) => assert!(why.contains("a.mp3"), "{why}"),
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

/// Default multi-core conversions put their joins in the quietest place near the planned cut
/// (a join carries two encoders' quantization choices; in a pause nothing of that is heard),
/// report them, and stay exact. A caller-given segment length keeps joins on its grid.
#[test]
fn joins_move_into_a_nearby_pause_and_are_reported() {
    use crate::common::*;
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    // Speech, a 1.5 s pause 2–4 s before the planned cut (two 1024-frame segments: the cut is
    // at 1024 frames, 23.8 s), then speech to the end.
    let parts = [
        ("01.mp3", 20.0, Signal::SpeechLike { seed: 41 }),
        ("02.mp3", 1.5, Signal::Silence),
        ("03.mp3", 24.0, Signal::SpeechLike { seed: 42 }),
    ];
    let mut paths = Vec::new();
    for (name, secs, signal) in parts {
        let p = book.join(name);
        write_mp3(
            &p,
            &Mp3Spec {
                length: Length::Secs(secs),
                signal,
                ..Mp3Spec::default()
            },
        )
        .unwrap();
        paths.push(p);
    }
    let mut source: Vec<f32> = Vec::new();
    for p in &paths {
        let planes = whole(p, 44_100, 2);
        source.extend(planes[0].iter().zip(&planes[1]).map(|(l, r)| l * l + r * r));
    }
    let frame = AAC_FRAME as usize;
    // Energy of the three frames whose decoded audio a join at `j` (samples) touches.
    let around = |j: u64| -> f64 {
        let c = j as usize / frame;
        source[(c - 2) * frame..((c + 1) * frame).min(source.len())]
            .iter()
            .map(|&e| e as f64)
            .sum()
    };
    let planned = 1024 * AAC_FRAME;

    let convert_json = |extra: &[&str], name: &str| {
        let output = tmp.path().join(name);
        let mut args = vec!["convert", "--json", "-o", output.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(book.to_str().unwrap());
        let out = run(args);
        assert_exit(&out, 0);
        json(&out)
    };
    let default = convert_json(&["-j2"], "default.m4b");
    let joins: Vec<u64> = default["joins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(joins.len(), 1, "{default:#}");
    let j = joins[0];
    assert_eq!(j % AAC_FRAME, 0, "joins are on the frame grid");
    let pause = (20.0 * 44_100.0) as u64..(21.5 * 44_100.0) as u64;
    assert!(
        pause.contains(&(j - 2 * AAC_FRAME)) && pause.contains(&(j + AAC_FRAME)),
        "join at {j} (planned {planned}) is not inside the pause {pause:?}"
    );
    assert!(
        around(j) < around(planned) * 1e-3,
        "the join is not quieter"
    );
    assert_eq!(default["total_samples"], (45.5 * 44_100.0) as u64);

    // The reference and a caller-given grid.
    let single = convert_json(&["-j1"], "single.m4b");
    assert_eq!(single["joins"].as_array().unwrap().len(), 0);
    assert_eq!(single["packets"], default["packets"]);
    let grid = convert_json(&["-j2", "--segment-frames", "512"], "grid.m4b");
    let grid_joins: Vec<u64> = grid["joins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        grid_joins,
        [512 * AAC_FRAME, 1024 * AAC_FRAME, 1536 * AAC_FRAME]
    );
}

/// Cancelling a multi-core conversion in the middle ends it promptly with `Cancelled` and no
/// file, whatever the dispatcher, the workers and the muxer were waiting on at the time.
#[test]
fn cancelling_in_the_middle_of_many_segments_ends_promptly() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    speech_files(&book, 40.0, 60..63);
    cancel_at_a_quarter(&book, tmp.path(), &[64, 256]);
}

/// Converts `book` into `dir` at `-j2` with each of `segment_frames`, cancelling once a quarter
/// is encoded: `Cancelled`, no output and no `.part` left in `dir`, within the liveness limit.
pub(crate) fn cancel_at_a_quarter(book: &Path, dir: &Path, segment_frames: &[u64]) {
    use aiom4b::{CancelToken, ConvertOptions, Error, ProgressSink};
    struct CancelAt(CancelToken);
    impl ProgressSink for CancelAt {
        fn encoded(&self, done: u64, total: u64) {
            if done * 4 >= total {
                self.0.cancel();
            }
        }
    }
    let out = dir.join("cancelled.m4b");
    for &segment_frames in segment_frames {
        let cancel = CancelToken::new();
        let mut options = ConvertOptions::default();
        options.jobs = 2;
        options.segment_frames = segment_frames;
        let r = convert_on_thread(book, &out, options, CancelAt(cancel.clone()), cancel);
        assert!(
            matches!(r, Err(Error::Cancelled)),
            "segments of {segment_frames}: {r:?}"
        );
        assert!(!out.exists(), "no output after a cancel");
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".part"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

/// A file that only turns out different from its index once a worker decodes it (here the
/// sample rate changes in the middle: the demuxer announces the first part's rate), late in a
/// book of many segments: the ranged run stops — every thread, including a dispatcher waiting
/// for a segment slot — and the book is converted again in order, exactly like `-j1`.
#[test]
fn a_file_that_changes_rate_midway_is_converted_again_in_order() {
    use aiom4b::{CancelToken, ConvertOptions, NoProgress};
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    speech_files(&book, 30.0, 70..72);
    let mut bytes = Vec::new();
    for (rate, seed) in [(44_100, 72), (48_000, 73)] {
        let part = tmp.path().join(format!("part{rate}.mp3"));
        write_mp3(
            &part,
            &Mp3Spec {
                length: Length::Secs(10.0),
                sample_rate: rate,
                signal: Signal::SpeechLike { seed },
                ..Mp3Spec::default()
            },
        )
        .unwrap();
        let mut b = std::fs::read(&part).unwrap();
        if !bytes.is_empty() {
            // Only frames in the middle of a file: drop the second part's tag.
            b.drain(..audio_start(&b) as usize);
        }
        bytes.extend(b);
    }
    std::fs::write(book.join("02 - two rates.mp3"), bytes).unwrap();
    let convert = |jobs: usize, name: &str| {
        let mut options = ConvertOptions::default();
        options.jobs = jobs;
        options.segment_frames = 32;
        let out = tmp.path().join(name);
        convert_on_thread(&book, &out, options, NoProgress, CancelToken::new())
            .unwrap_or_else(|e| panic!("-j{jobs}: {e}"))
    };
    let single = convert(1, "single.m4b");
    let multi = convert(2, "multi.m4b");
    assert_eq!(multi.total_samples, single.total_samples);
    assert_eq!(multi.packets, single.packets);
    // 48 kHz for 10 s at 44.1 kHz: the second part was resampled, not taken at its index.
    assert!(
        single.total_samples > 70 * 44_100,
        "{}",
        single.total_samples
    );
}

/// Verification while encoding (every worker decodes its own packets with the verifier's
/// independent decoder, and the final check matches the file's packets against what was
/// decoded) still catches a packet changed after the encoder: a bit flipped on its way to the
/// muxer (the test hook `tamper`) fails the conversion with a verification error naming the
/// packets and leaves nothing at the output path. The same book unharmed passes, checked the
/// same way. The flip is in the packet's last byte, where the damaged packet still decodes:
/// the old second decode of the written file would not have noticed it.
#[test]
fn a_packet_changed_between_encoder_and_muxer_fails_verification() {
    use aiom4b::__internals::tamper;
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    speech_files(&book, 12.0, 40..43);
    let options = || {
        let mut o = aiom4b::ConvertOptions::default();
        o.jobs = 2;
        // Several segments, so the damaged packet is in the middle of one that is not first.
        o.segment_frames = 256;
        o
    };
    let good = tmp.path().join("good");
    std::fs::create_dir_all(&good).unwrap();
    let report = convert_on_thread(
        &book,
        &good.join("book.m4b"),
        options(),
        aiom4b::NoProgress,
        aiom4b::CancelToken::new(),
    )
    .expect("the unharmed book converts and verifies");
    assert!(
        report.timings.stages.verified_while_encoding,
        "the ranged path decodes its packets while encoding"
    );
    assert!(report.joins.len() >= 2, "joins: {:?}", report.joins);

    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    tamper::corrupt_packet_in(&bad, 300);
    let err = convert_on_thread(
        &book,
        &bad.join("book.m4b"),
        options(),
        aiom4b::NoProgress,
        aiom4b::CancelToken::new(),
    )
    .expect_err("a packet changed after it was decoded must fail verification");
    match &err {
        aiom4b::Error::Verify { problems, .. } => assert!(
            problems
                .iter()
                .any(|p| p.contains("differ from the packets decoded while encoding")),
            "{problems:?}"
        ),
        other => panic!("expected a verification error, got {other}"),
    }
    assert!(!bad.join("book.m4b").exists());
    crate::common::assert_no_part(&bad);
}
