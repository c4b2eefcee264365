//! Books that are not MP3 (issue 16): FLAC, WAV, Ogg Vorbis, Ogg Opus, AAC and ALAC in MP4,
//! raw ADTS, and a mix with MP3. Every fixture is written by the linked FFmpeg's encoders
//! (`aiom4b_testkit::audio_writer`), so what each file must decode to is known: the samples
//! written. Each is checked against that, against an independent decoder (Symphonia) where it
//! reads the format, and on the converted book (length and every chapter start, exactly, on the
//! engine's clock; the verifier's decode within a frame).
use crate::common::*;
use crate::convert::report_starts;
use aiom4b_testkit::audio_writer::{write_audio, AudioKind, AudioSpec};
use aiom4b_testkit::fixtures::test_jpeg;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Samples per channel Symphonia decodes from `path` (its own demuxers and decoders, gapless).
fn symphonia_samples(path: &Path) -> u64 {
    use symphonia::core::errors::Error as SError;
    let (mut format, id, mut dec) = open_symphonia(path);
    let mut n = 0u64;
    loop {
        match format.next_packet() {
            Ok(Some(p)) if p.track_id == id => n += dec.decode(&p).unwrap().frames() as u64,
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(SError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("{}: symphonia: {e}", path.display()),
        }
    }
    n
}

fn convert_json(book: &Path, out: &Path, args: &[&str]) -> Value {
    let mut all = vec!["convert", "--json", "-o", out.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push(book.to_str().unwrap());
    let o = run(all);
    assert_exit(&o, 0);
    json(&o)
}

fn titles(report: &Value) -> Vec<String> {
    report["chapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap().to_string())
        .collect()
}

/// A book of one format: three files, the last shorter than any codec's frame, lengths that are
/// no whole number of frames.
fn format_book(dir: &Path, kind: AudioKind, rate: u32, channels: u16) -> Vec<(PathBuf, u64)> {
    std::fs::create_dir_all(dir).unwrap();
    [rate + 4_321, rate / 2 + 999, 700]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let p = dir.join(format!(
                "{:02} - Part {}.{}",
                i + 1,
                i + 1,
                kind.extension()
            ));
            let mut spec = AudioSpec::sine(kind, rate, channels, u64::from(*n));
            spec.tags.title = Some(format!("Part {}", i + 1));
            spec.tags.album = Some("Format Book".into());
            spec.tags.artist = Some("Format Author".into());
            spec.tags.track = Some(i as u32 + 1);
            let written = write_audio(&p, &spec).unwrap();
            (p, written)
        })
        .collect()
}

#[test]
fn every_format_converts_with_its_exact_length_and_tags() {
    // (kind, rate, channels, FFmpeg's name for what probe must report)
    let cases = [
        (AudioKind::Flac, 44_100, 2, "flac"),
        (AudioKind::Wav, 22_050, 1, "wav"),
        (AudioKind::Vorbis, 44_100, 2, "vorbis"),
        (AudioKind::Opus, 48_000, 2, "opus"),
        (AudioKind::M4aAac, 44_100, 2, "m4a"),
        (AudioKind::M4aAlac, 44_100, 1, "m4a"),
    ];
    for (kind, rate, channels, name) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let book = tmp.path().join("book");
        let files = format_book(&book, kind, rate, channels);
        // The probe says what each file is and its exact length, which is what was written and
        // what Symphonia (not FFmpeg) decodes.
        let o = run(["probe", "--json", book.to_str().unwrap()]);
        assert_exit(&o, 0);
        let probe = json(&o);
        let tracks = probe["book"]["tracks"]
            .as_array()
            .unwrap_or_else(|| panic!("{probe:#}"));
        assert_eq!(tracks.len(), 3, "{kind:?}");
        for ((path, written), t) in files.iter().zip(tracks) {
            let info = &t["info"];
            assert_eq!(info["format"], name, "{kind:?}: {info:#}");
            assert_eq!(
                info["exact_samples"].as_u64(),
                Some(*written),
                "{kind:?} {}: the container's exact length",
                path.display()
            );
            // Symphonia has no Opus decoder; its Vorbis, FLAC, WAV and ALAC readers give the
            // exact length. Its MP4 reader ignores the edit list, so for AAC it gives every
            // frame whole: the encoder's 1024 samples of priming, the audio, the last frame's
            // padding — which checks that the packets hold exactly that much audio.
            if kind == AudioKind::M4aAac {
                assert_eq!(
                    symphonia_samples(path),
                    (written + 1024).div_ceil(1024) * 1024,
                    "{kind:?} {}: Symphonia's count of whole frames",
                    path.display()
                );
            } else if kind != AudioKind::Opus {
                assert_eq!(
                    symphonia_samples(path),
                    *written,
                    "{kind:?} {}: Symphonia's count",
                    path.display()
                );
            }
        }
        let out = tmp.path().join("out.m4b");
        let report = convert_json(&book, &out, &["--preset", "source"]);
        assert_eq!(report["sample_rate"], rate, "{kind:?}");
        let want: Vec<u64> = files.iter().map(|(_, n)| *n).collect();
        let want_starts = vec![0, want[0], want[0] + want[1]];
        assert_eq!(
            report_starts(&report),
            want_starts,
            "{kind:?}: chapter starts"
        );
        assert_eq!(
            report["total_samples"].as_u64(),
            Some(want.iter().sum::<u64>()),
            "{kind:?}: total"
        );
        assert_eq!(titles(&report), ["Part 1", "Part 2", "Part 3"], "{kind:?}");
        let s = aiom4b::verify::summarize(&out).unwrap();
        assert!(
            s.inconsistencies.is_empty(),
            "{kind:?}: {:?}",
            s.inconsistencies
        );
        assert!(
            s.decoded_samples.abs_diff(want.iter().sum::<u64>()) <= AAC_FRAME,
            "{kind:?}: decoded {} of {}",
            s.decoded_samples,
            want.iter().sum::<u64>()
        );
        assert_eq!(s.tags.album.as_deref(), Some("Format Book"), "{kind:?}");
        assert_eq!(s.tags.artist.as_deref(), Some("Format Author"), "{kind:?}");
    }
}

#[test]
fn m4a_parts_bring_their_chapters_and_cover_and_a_renamed_file_is_what_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    const RATE: u32 = 44_100;
    let cover = aiom4b::probe::picture_from_bytes(test_jpeg(64, 64)).unwrap();
    let mut lens = Vec::new();
    // Part 2 is named .mp3 but is an M4A: it is taken for what it is.
    for (i, name) in ["Part 1.m4b", "Part 2.mp3"].iter().enumerate() {
        let n = RATE as u64 * 3 + 777 * (i as u64 + 1);
        let mut spec = AudioSpec::sine(AudioKind::M4aAac, RATE, 2, n);
        spec.tags.album = Some("Chaptered".into());
        spec.tags.title = Some(format!("Part {}", i + 1));
        spec.cover = Some(cover.clone());
        spec.chapters = vec![
            (0, format!("P{} Opening", i + 1)),
            (RATE as u64 + 123, format!("P{} Middle", i + 1)),
            (2 * RATE as u64 + 456, format!("P{} End", i + 1)),
        ];
        lens.push(write_audio(book.join(name), &spec).unwrap());
    }
    let o = run(["probe", "--json", book.to_str().unwrap()]);
    assert_exit(&o, 0);
    let probe = json(&o);
    let second = &probe["book"]["tracks"][1]["info"];
    assert_eq!(second["format"], "m4a", "{second:#}");
    assert_eq!(second["codec"], "aac");
    assert_eq!(second["chapters"].as_array().map(Vec::len), Some(3));

    let out = tmp.path().join("out.m4b");
    let report = convert_json(&book, &out, &["--preset", "source"]);
    let inner = [0, RATE as u64 + 123, 2 * RATE as u64 + 456];
    let mut want = Vec::new();
    for (i, _) in lens.iter().enumerate() {
        let offset: u64 = lens[..i].iter().sum();
        want.extend(inner.iter().map(|s| s + offset));
    }
    assert_eq!(
        report_starts(&report),
        want,
        "the parts' own chapters, offset"
    );
    assert_eq!(
        titles(&report),
        [
            "P1 Opening",
            "P1 Middle",
            "P1 End",
            "P2 Opening",
            "P2 Middle",
            "P2 End"
        ]
    );
    assert_eq!(report["total_samples"].as_u64(), Some(lens.iter().sum()));
    let s = aiom4b::verify::summarize(&out).unwrap();
    assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
    assert_eq!(s.chapter_track.as_ref().unwrap().chapters.len(), 6);
    assert!(s.cover.is_some(), "the parts' cover");
    assert_eq!(s.tags.album.as_deref(), Some("Chaptered"));

    // --chapters per-file: one per part, as before.
    let out2 = tmp.path().join("per-file.m4b");
    let report = convert_json(
        &book,
        &out2,
        &["--preset", "source", "--chapters", "per-file"],
    );
    assert_eq!(report_starts(&report), [0, lens[0]]);
}

/// Every format takes the multi-core ranged path, each worker decoding its own stretch of the
/// files (from a file's start, as the in-order path decodes it), with the in-order clock,
/// packets and chapters; resampled formats too (22.05 kHz WAV, 48 kHz Opus to 44.1 kHz).
#[test]
fn every_format_converts_on_the_multi_core_path_as_in_order() {
    use aiom4b_testkit::fixtures::Signal;
    // (kind, rate, channels, files resampled)
    let cases = [
        (AudioKind::Flac, 44_100, 2, 0),
        (AudioKind::Wav, 22_050, 1, 3),
        (AudioKind::Vorbis, 44_100, 2, 0),
        (AudioKind::Opus, 48_000, 1, 3),
        (AudioKind::M4aAac, 44_100, 2, 0),
        (AudioKind::M4aAlac, 44_100, 1, 0),
    ];
    for (kind, rate, channels, resampled) in cases {
        eprintln!("{kind:?}");
        let tmp = tempfile::tempdir().unwrap();
        let book = tmp.path().join("book");
        std::fs::create_dir_all(&book).unwrap();
        // Segments of 1024 frames (23.2 s) put joins inside every file.
        let paths: Vec<PathBuf> = [30.3, 25.1, 20.7]
            .iter()
            .enumerate()
            .map(|(i, secs)| {
                let p = book.join(format!("{:02}.{}", i + 1, kind.extension()));
                let mut spec =
                    AudioSpec::sine(kind, rate, channels, (secs * f64::from(rate)) as u64);
                spec.signal = Signal::Noise {
                    amplitude: 0.5,
                    seed: 40 + i as u64,
                };
                write_audio(&p, &spec).unwrap();
                p
            })
            .collect();
        let bitrate = if channels == 1 { "64k" } else { "128k" };
        crate::resampled::check_ranged_book(&book, &paths, channels, bitrate, resampled, false);
    }
}

/// A book of one long file: a FLAC or an AAC-LC M4B at the book's rate is reached by seeking,
/// so it takes the ranged path; an Opus file would have every worker decode it from its start
/// to reach its stretch, so it is encoded in book order instead. All exactly.
#[test]
fn a_book_of_one_long_file_seeks_or_goes_in_order() {
    for (kind, rate, ranged) in [
        (AudioKind::Flac, 44_100, true),
        (AudioKind::M4aAac, 44_100, true),
        (AudioKind::Opus, 48_000, false),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let book = tmp.path().join("book");
        std::fs::create_dir_all(&book).unwrap();
        let path = book.join(format!("01.{}", kind.extension()));
        let n = write_audio(
            &path,
            &AudioSpec::sine(kind, rate, 2, 80 * u64::from(rate) + 5),
        )
        .unwrap();
        let out = tmp.path().join("out.m4b");
        let o = run([
            "convert",
            "-v",
            "--json",
            "-j2",
            "--audio",
            "encode",
            "--segment-frames",
            "1024",
            "--sample-rate",
            &rate.to_string(),
            "-o",
            out.to_str().unwrap(),
            book.to_str().unwrap(),
        ]);
        assert_exit(&o, 0);
        let log = stderr(&o);
        let report = json(&o);
        assert_eq!(report["total_samples"].as_u64(), Some(n), "{kind:?}");
        if ranged {
            assert!(
                log.contains("each worker decoding its own range")
                    && !log.contains("in book order")
                    && !log.contains("no exact seek"),
                "{kind:?}: {log}"
            );
            assert!(
                report["timings"]["stages"]["segments"].as_u64() >= Some(3),
                "{report:#}"
            );
        } else {
            assert!(
                log.contains("a second time")
                    && log.contains("encoding streamed segments in book order"),
                "{kind:?}: {log}"
            );
        }
        let s = aiom4b::verify::summarize(&out).unwrap();
        assert!(
            s.inconsistencies.is_empty(),
            "{kind:?}: {:?}",
            s.inconsistencies
        );
        assert!(
            s.decoded_samples.abs_diff(n) <= AAC_FRAME,
            "{kind:?}: decoded {} of {n}",
            s.decoded_samples
        );
    }
}

#[test]
fn a_book_mixing_mp3_and_flac_converts_with_exact_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    let mp3 = book.join("01.mp3");
    aiom4b_testkit::fixtures::write_mp3(&mp3, &sine_spec(440.0, 44_100 + 333, 44_100, 2, false))
        .unwrap();
    let flac = book.join("02.flac");
    let n = write_audio(&flac, &AudioSpec::sine(AudioKind::Flac, 44_100, 2, 30_001)).unwrap();
    let first = symphonia_length(&mp3).samples;
    let out = tmp.path().join("out.m4b");
    let report = convert_json(&book, &out, &[]);
    assert_eq!(report_starts(&report), [0, first]);
    assert_eq!(report["total_samples"].as_u64(), Some(first + n));

    // The finished book put back into the folder is not taken as a third part: converting the
    // folder again would otherwise double the audio.
    std::fs::copy(&out, book.join("03 - Book.m4b")).unwrap();
    let o = run(["probe", "--json", book.to_str().unwrap()]);
    assert_exit(&o, 0);
    let doc = json(&o);
    assert_eq!(
        doc["book"]["tracks"].as_array().unwrap().len(),
        2,
        "{doc:#}"
    );
    let skipped = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "skipped_entry")
        .unwrap_or_else(|| panic!("no finding for the book aiom4b wrote: {doc:#}"));
    assert!(
        skipped["path"].as_str().unwrap().ends_with("03 - Book.m4b"),
        "{skipped:#}"
    );
    assert!(
        skipped["message"]
            .as_str()
            .unwrap()
            .contains("aiom4b wrote"),
        "{skipped:#}"
    );
}

#[test]
fn allowed_inputs_mp3_refuses_other_formats_by_name_and_content() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    // A FLAC named .mp3: MP3-only validation names what it is.
    write_audio(
        book.join("01.mp3"),
        &AudioSpec::sine(AudioKind::Flac, 44_100, 1, 5_000),
    )
    .unwrap();
    let mut cmd = aiom4b();
    cmd.env("ALLOWED_INPUTS", "mp3")
        .args(["probe", "--json"])
        .arg(&book);
    let o = run_cmd(cmd);
    assert_ne!(o.status.code(), Some(0));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(text.contains("01.mp3") && text.contains("FLAC"), "{text}");
    // A bad value is refused with the valid names.
    let mut cmd = aiom4b();
    cmd.env("ALLOWED_INPUTS", "mp3,wma")
        .args(["probe"])
        .arg(&book);
    let o = run_cmd(cmd);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("ALLOWED_INPUTS") && stderr(&o).contains("flac"),
        "{}",
        stderr(&o)
    );
    // By default the same file converts.
    let o = run(["probe", "--json", book.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["book"]["tracks"][0]["info"]["format"], "flac");
}

/// A book that goes in order at `-j2` (one long Opus file: every worker would have to decode it
/// from its start) streams each segment's input to its worker as it is decoded. The clock,
/// packets and joins are exact and the segmented encoding as a whole is as good as the single
/// encoder's, for segments shorter than the lead-in (every sample goes to several workers), of
/// an odd length, and longer ones; a cancel in the middle ends the conversion with
/// `Cancelled`, no file and no part left (within the liveness limit: no thread waits forever).
/// An in-order conversion's stage breakdown (`--json`'s `timings.stages`) says where its time
/// went: every stage that ran has time, the ones that did not run (index, joins, verification
/// while encoding) have none, and the threads' times add up to at most each thread's whole
/// run (`threads` of them) and to at least the encoder stage's.
fn in_order_stages(report: &Value, segments: u64, threads: f64) {
    let st = &report["timings"]["stages"];
    let f = |k: &str| {
        st[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} missing: {st:#}"))
    };
    assert_eq!(st["segments"].as_u64(), Some(segments), "{st:#}");
    let run = f("encode_run_secs");
    assert!(run > 0.0, "{st:#}");
    for k in [
        "decode_secs",
        "encode_secs",
        "handoff_secs",
        "worker_cpu_secs",
        "mux_write_secs",
        "mux_wait_secs",
        "mux_cpu_secs",
    ] {
        assert!(f(k) > 0.0, "{k}: {st:#}");
    }
    if segments > 1 {
        assert!(f("lead_in_secs") > 0.0 && f("startup_secs") > 0.0, "{st:#}");
    }
    for k in ["index_secs", "joins_secs", "verify_decode_secs"] {
        assert_eq!(f(k), 0.0, "{k}: {st:#}");
    }
    let threads_secs: f64 = [
        "startup_secs",
        "decode_secs",
        "lead_in_secs",
        "encode_secs",
        "silence_secs",
        "handoff_secs",
    ]
    .iter()
    .map(|k| f(k))
    .sum();
    assert!(
        threads_secs <= threads * run * 1.02 + 0.01 && threads_secs >= 0.5 * run,
        "{threads_secs} thread-seconds in a run of {run} s: {st:#}"
    );
    // The muxer waits for the encoders for most of the run and writes in the rest.
    assert!(
        f("mux_wait_secs") + f("mux_write_secs") <= run * 1.02,
        "{st:#}"
    );
}

#[test]
fn a_book_in_order_streams_its_segments_exactly_and_stops_cleanly() {
    use aiom4b_testkit::fixtures::Signal;
    use aiom4b_testkit::m4b_reader::decode_m4b;
    use aiom4b_testkit::quality::splice_report;
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    let path = book.join("01.opus");
    let mut spec = AudioSpec::sine(AudioKind::Opus, 48_000, 2, 100 * 48_000 + 777);
    spec.signal = Signal::SpeechLike { seed: 91 };
    let n = write_audio(&path, &spec).unwrap();
    let source = crate::splice::source_pcm(std::slice::from_ref(&path), 48_000, 2);
    assert_eq!(source[0].len() as u64, n);
    let common = ["-v", "--sample-rate", "48000", "--bitrate", "128k"];
    let convert = |name: &str, args: &[&str]| {
        let out = tmp.path().join(name);
        let mut all = vec!["convert", "--json", "-o", out.to_str().unwrap()];
        all.extend_from_slice(&common);
        all.extend_from_slice(args);
        all.push(book.to_str().unwrap());
        let o = run(all);
        assert_exit(&o, 0);
        let (_, pcm) = decode_m4b(&out).unwrap();
        (json(&o), stderr(&o), out, pcm)
    };
    let (single, _, _, single_pcm) = convert("j1.m4b", &["-j1"]);
    assert_eq!(single["total_samples"].as_u64(), Some(n));
    // One decoder and one encoder thread.
    in_order_stages(&single, 1, 2.0);
    // 293 frames: the book (4688.26 frames) ends just past the planned end of its 16th
    // segment, inside that segment's lead-out, so the last segment keeps packets past it.
    assert_eq!(n.div_ceil(AAC_FRAME), 16 * 293 + 1);
    for seg in [32u64, 293, 2048] {
        let name = format!("seg{seg}.m4b");
        let seg_arg = seg.to_string();
        let (multi, log, out, pcm) = convert(&name, &["-j2", "--segment-frames", &seg_arg]);
        assert!(
            log.contains("encoding streamed segments in book order")
                && log.contains("segmented encoding, streamed"),
            "segments of {seg}: {log}"
        );
        assert!(log.contains(&format!("segment_frames={seg}")), "{log}");
        assert_eq!(
            multi["total_samples"].as_u64(),
            Some(n),
            "segments of {seg}"
        );
        assert_eq!(multi["packets"], single["packets"], "segments of {seg}");
        let joins: Vec<u64> = multi["joins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j.as_u64().unwrap())
            .collect();
        let want: Vec<u64> = (1..)
            .map(|k| k * seg * AAC_FRAME)
            // Segment k exists once the book goes on past segment k − 1's 2-frame lead-out.
            .take_while(|j| *j + 2 * AAC_FRAME < n)
            .collect();
        assert_eq!(joins, want, "segments of {seg}");
        // Two decoders (one finds no track), the segmenter and two encoders.
        in_order_stages(&multi, want.len() as u64 + 1, 5.0);
        let s = aiom4b::verify::summarize(&out).unwrap();
        assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
        assert_eq!(pcm[0].len(), single_pcm[0].len(), "segments of {seg}");
        let r = splice_report(&source, &single_pcm, &pcm, &joins);
        eprintln!(
            "in order, segments of {seg}: {}",
            serde_json::to_string(&r).unwrap()
        );
        // A sample out of place, or a piece sent twice or not at all, would cost far more
        // than a decibel everywhere after it.
        assert!(
            r.median_snr_segmented_db > r.median_snr_single_db - 1.0,
            "segments of {seg}: {r:#?}"
        );
        if seg != 32 {
            assert!(r.mean_other_excess_db < 1.0, "segments of {seg}: {r:#?}");
        }
    }

    crate::ranges::cancel_at_a_quarter(&book, tmp.path(), &[64, 300]);
}

/// The offsets of the pages of the Ogg file `bytes`, walked from the start by their headers
/// (the test's own walk, not the library's tail reader).
fn ogg_pages(bytes: &[u8]) -> Vec<usize> {
    let mut pages = Vec::new();
    let mut at = 0;
    while at + 27 <= bytes.len() {
        assert_eq!(&bytes[at..at + 4], b"OggS", "page at {at}");
        let segments = bytes[at + 26] as usize;
        let body: usize = bytes[at + 27..at + 27 + segments]
            .iter()
            .map(|&l| l as usize)
            .sum();
        pages.push(at);
        at += 27 + segments + body;
    }
    assert_eq!(at, bytes.len(), "the file is whole pages");
    pages
}

/// `bytes` with the page at `at` changed by `edit` (its header bytes), CRC set again.
fn edit_ogg_page(bytes: &[u8], at: usize, edit: impl Fn(&mut [u8])) -> Vec<u8> {
    use symphonia::core::checksum::Crc32;
    use symphonia::core::io::Monitor;
    let mut b = bytes.to_vec();
    edit(&mut b[at..at + 27]);
    b[at + 22..at + 26].fill(0);
    let mut crc = Crc32::new(0);
    crc.process_buf_bytes(&b[at..]);
    let c = crc.crc().to_le_bytes();
    b[at + 22..at + 26].copy_from_slice(&c);
    b
}

/// Ogg files that do not hold what they say (an Ogg file's length is its last page's
/// position, so nothing else tells): one cut short (an interrupted download; FFmpeg decodes it
/// without an error to the cut), one whose page positions run ahead of its packets (a gap, as
/// ffmpeg's concat demuxer writes), and one whose last page does not end the stream. The first
/// two are refused by name with the way out, at `-j1` and `-j2`, and converted with a warning
/// when damage is allowed; the third converts whole with a warning. Sources are never touched.
#[test]
fn ogg_files_cut_short_or_with_gaps_are_named_and_refused_unless_damage_is_allowed() {
    for kind in [AudioKind::Opus, AudioKind::Vorbis] {
        let tmp = tempfile::tempdir().unwrap();
        let rate = 48_000u32;
        let good = tmp.path().join(format!("good.{}", kind.extension()));
        let n = write_audio(&good, &AudioSpec::sine(kind, rate, 2, 20 * u64::from(rate))).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let last = *ogg_pages(&bytes).last().unwrap();
        assert_ne!(
            bytes[last + 5] & 4,
            0,
            "{kind:?}: the writer ends the stream"
        );
        let cut = bytes[..bytes.len() * 6 / 10].to_vec();
        // Half a second more than the packets hold, in the last page's granule position.
        let gap = edit_ogg_page(&bytes, last, |h| {
            let g = i64::from_le_bytes(h[6..14].try_into().unwrap()) + i64::from(rate / 2);
            h[6..14].copy_from_slice(&g.to_le_bytes());
        });
        let open_end = edit_ogg_page(&bytes, last, |h| h[5] &= !4);
        for (case, data) in [("cut", cut), ("gap", gap), ("open", open_end)] {
            let book = tmp.path().join(case);
            std::fs::create_dir_all(&book).unwrap();
            let file = format!("01 - {case}.{}", kind.extension());
            std::fs::write(book.join(&file), &data).unwrap();
            let before = digest_tree(&book);
            let out_dir = tmp.path().join(format!("{case}-out"));
            let output = out_dir.join("book.m4b");
            let convert = |extra: &[&str]| {
                let mut args = vec!["convert", "--json", "--sample-rate", "48000"];
                args.extend_from_slice(&["-o", output.to_str().unwrap()]);
                args.extend_from_slice(extra);
                args.push(book.to_str().unwrap());
                run(args)
            };
            let (what, allowed_samples) = match case {
                "cut" => ("cut short", None),
                "gap" => ("gap in its timeline", Some(n)),
                _ => ("does not end its stream", Some(n)),
            };
            if case != "open" {
                for jobs in ["-j1", "-j2"] {
                    let o = convert(&[jobs]);
                    assert_exit(&o, 1);
                    let err = stderr(&o);
                    assert!(
                        err.contains(&file) && err.contains(what) && err.contains("--allow-damaged"),
                        "{kind:?} {case} {jobs}: the message must name the file, the problem and the way out:\n{err}"
                    );
                    // Neither decoder damage nor a truncation is claimed where there is none.
                    assert!(
                        !err.contains("damaged frame") && !err.contains("truncated"),
                        "{kind:?} {case} {jobs}: {err}"
                    );
                    assert!(!output.exists(), "{kind:?} {case} {jobs}: output written");
                    assert_no_part(&out_dir);
                }
            }
            let allow: &[&str] = if case == "open" {
                &["-j2"]
            } else {
                &["-j2", "--allow-damaged"]
            };
            let o = convert(allow);
            assert_exit(&o, 0);
            let report = json(&o);
            let findings = findings_where(&report, "kind", "damaged");
            assert!(
                findings.len() == 1
                    && findings[0]["severity"] == "warning"
                    && findings[0]["message"].as_str().unwrap().contains(what)
                    && findings[0]["path"].as_str().unwrap().ends_with(&file),
                "{kind:?} {case}: {findings:#?}"
            );
            let total = report["total_samples"].as_u64().unwrap();
            match allowed_samples {
                // What was there before the cut.
                None => assert!(
                    total > n / 2 && total < n * 7 / 10,
                    "{kind:?}: {total} of {n}"
                ),
                // Every sample the packets hold (with a gap, the last packet untrimmed: its
                // page's position no longer says where the audio ends).
                Some(all) => assert!(
                    total >= all && total <= all + 2048,
                    "{kind:?} {case}: {total} of {all}"
                ),
            }
            let s = aiom4b::verify::summarize(&output).unwrap();
            assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
            assert_eq!(
                digest_tree(&book),
                before,
                "{kind:?} {case}: source changed"
            );
        }
    }
}
