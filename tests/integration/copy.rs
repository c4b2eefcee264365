//! Lossless copy (issue 16): a book of AAC-LC parts in MP4 is written with the parts' own
//! packets, only the frames around each join encoded again.
//!
//! Read back by readers that did not write it: Symphonia's MP4 demuxer gives both the parts'
//! and the book's packets (compared byte for byte) and decodes the book's length; FFmpeg's
//! decoder (`decode_m4b`) gives the audio, compared with the decoded parts laid where the
//! report says each starts. The joins are held to the bar of re-encoding: their blocks may not
//! be worse than the same blocks of the book encoded whole at the parts' bitrate.
use crate::common::*;
use crate::convert::{convert_ok as convert, report_starts as starts};
use aiom4b_testkit::audio_writer::{delay_mp4_start, write_audio, AudioKind, AudioSpec};
use aiom4b_testkit::fixtures::Signal;
use aiom4b_testkit::m4b_reader::decode_m4b;
use aiom4b_testkit::quality::{block_errors, BLOCK, SILENCE_DBFS};
use std::path::{Path, PathBuf};

const RATE: u32 = 44_100;

/// Every audio packet of an MP4 file, in order (Symphonia's demuxer).
fn packets(path: &Path) -> Vec<Vec<u8>> {
    use symphonia::core::errors::Error as SError;
    let (mut format, id, _) = open_symphonia(path);
    let mut out = Vec::new();
    loop {
        match format.next_packet() {
            Ok(Some(p)) if p.track_id == id => out.push(p.data.to_vec()),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(SError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("{}: symphonia: {e}", path.display()),
        }
    }
    out
}

struct Part {
    path: PathBuf,
    /// Its exact length, and its audio as FFmpeg decodes it (edit list applied, cut there).
    len: u64,
    pcm: Vec<Vec<f32>>,
    /// Its first packet's decoded samples before its audio.
    priming: u64,
    /// Its own chapters' starts (as written: a later edit start does not move them).
    marks: Vec<u64>,
}

/// A book of M4A parts (speech-like, stereo, 96 kb/s) of odd lengths, each with three
/// chapters of its own; the third part starts like an Apple encoder's (2112 priming).
fn m4a_book(dir: &Path, seconds: &[f64]) -> Vec<Part> {
    std::fs::create_dir_all(dir).unwrap();
    let mut parts = Vec::new();
    for (i, secs) in seconds.iter().enumerate() {
        let n = (secs * RATE as f64) as u64 + 333 * i as u64 + 17;
        let mut spec = AudioSpec::sine(AudioKind::M4aAac, RATE, 2, n);
        spec.signal = Signal::SpeechLike { seed: 7 + i as u64 };
        spec.tags.album = Some("Copied".into());
        spec.tags.title = Some(format!("Part {}", i + 1));
        spec.chapters = vec![
            (0, format!("P{} A", i + 1)),
            (n / 3, format!("P{} B", i + 1)),
            (2 * n / 3, format!("P{} C", i + 1)),
        ];
        let path = dir.join(format!("{:02} Part.m4a", i + 1));
        let mut len = write_audio(&path, &spec).unwrap();
        let mut priming = 1024;
        if i == 2 {
            delay_mp4_start(&path, 1088);
            len -= 1088;
            priming = 2112;
        }
        let (_, mut pcm) = decode_m4b(&path).unwrap();
        for c in pcm.iter_mut() {
            assert!(c.len() as u64 >= len);
            c.truncate(len as usize);
        }
        parts.push(Part {
            path,
            len,
            pcm,
            priming,
            marks: spec.chapters.iter().map(|(s, _)| *s).collect(),
        });
    }
    parts
}

/// The parts' audio laid at `at` (silence between, overlaps summed) over `total` samples.
fn laid(parts: &[Part], at: &[u64], total: u64) -> Vec<Vec<f32>> {
    let mut out = vec![vec![0f32; total as usize]; 2];
    for (p, &a) in parts.iter().zip(at) {
        for (c, plane) in out.iter_mut().enumerate() {
            for (i, v) in p.pcm[c].iter().enumerate() {
                if let Some(x) = plane.get_mut(a as usize + i) {
                    *x = (*x + v).clamp(-1.0, 1.0);
                }
            }
        }
    }
    out
}

/// SNR (dB) of each measured block within `reach` blocks of each position in `joins`: the
/// worst per join, silence skipped.
fn worst_snr_near(
    reference: &[Vec<f32>],
    decoded: &[Vec<f32>],
    joins: &[u64],
    reach: usize,
) -> Vec<f64> {
    let (err, sig) = block_errors(reference, decoded);
    joins
        .iter()
        .map(|&j| {
            let b = j as usize / BLOCK;
            (b.saturating_sub(reach)..(b + reach).min(err.len()))
                .filter(|&k| sig[k] > SILENCE_DBFS)
                .map(|k| sig[k] - err[k])
                .fold(f64::INFINITY, f64::min)
        })
        .collect()
}

#[test]
fn m4a_parts_are_copied_with_their_chapters_and_joins_as_good_as_re_encoding() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    let parts = m4a_book(&book, &[6.0, 5.0, 7.0, 4.5]);
    let out = tmp.path().join("copied.m4b");
    let report = convert(&book, &out, &[]);
    assert_eq!(report["audio"]["copied"], true, "{:#}", report["audio"]);
    let why = report["audio"]["why"].as_str().unwrap();
    assert!(why.contains("AAC-LC at 44100 Hz 2 ch"), "{why}");

    // Where each part starts: its first chapter. Within half a frame of its exact place,
    // never drifting; its own chapters follow it exactly.
    let st = starts(&report);
    assert_eq!(st.len(), 3 * parts.len());
    let mut exact = 0u64;
    let mut at = Vec::new();
    for (k, p) in parts.iter().enumerate() {
        let b = st[3 * k];
        assert!(
            b.abs_diff(exact) <= 512,
            "part {k} starts at {b}, exactly {exact}"
        );
        assert_eq!(st[3 * k + 1], b + p.marks[1]);
        assert_eq!(st[3 * k + 2], b + p.marks[2]);
        at.push(b);
        exact += p.len;
    }
    let total = at.last().unwrap() + parts.last().unwrap().len;
    assert_eq!(report["total_samples"].as_u64(), Some(total));
    let s = aiom4b::verify::summarize(&out).unwrap();
    assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
    assert_eq!(s.decoded_samples, total, "the verifier's decoded length");
    assert_eq!(s.chapter_track.as_ref().unwrap().chapters.len(), 12);

    // The parts' packets, byte for byte, where the grid puts them; only the windows differ.
    let book_packets = packets(&out);
    let e = parts[0].priming;
    let mut matched = 0usize;
    for (p, &b) in parts.iter().zip(&at) {
        let own = packets(&p.path);
        let first = (e + b - p.priming) / 1024;
        for (j, pk) in own.iter().enumerate().take(own.len() - 5).skip(5) {
            assert_eq!(
                &book_packets[first as usize + j],
                pk,
                "{} packet {j}",
                p.path.display()
            );
            matched += 1;
        }
    }
    let re_encoded = book_packets.len() - matched;
    assert!(
        re_encoded <= 16 * (parts.len() - 1) + 20,
        "{re_encoded} of {} packets are not the parts'",
        book_packets.len()
    );

    // The audio: the copied stretches decode to the parts' own samples; the joins are no
    // worse than re-encoding the book whole at the parts' bitrate.
    let (_, mut dec) = decode_m4b(&out).unwrap();
    for c in dec.iter_mut() {
        c.truncate(total as usize);
    }
    let reference = laid(&parts, &at, total);
    let (err, sig) = block_errors(&reference, &dec);
    let joins: Vec<u64> = at[1..].to_vec();
    let far: Vec<f64> = (0..err.len())
        .filter(|&k| {
            sig[k] > SILENCE_DBFS
                && joins
                    .iter()
                    .all(|&j| (k * BLOCK).abs_diff(j as usize) > 12 * BLOCK)
        })
        .map(|k| sig[k] - err[k])
        .collect();
    let worst_far = far.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        worst_far > 60.0,
        "copied audio decodes as the parts do: worst {worst_far:.1} dB"
    );
    let copied_joins = worst_snr_near(&reference, &dec, &joins, 4);

    let whole = tmp.path().join("encoded.m4b");
    let encoded = convert(&book, &whole, &["--audio", "encode", "--bitrate", "96k"]);
    assert_eq!(encoded["audio"]["copied"], false);
    assert_eq!(
        encoded["total_samples"].as_u64(),
        Some(exact),
        "encoding keeps the exact sum"
    );
    let exact_at: Vec<u64> = parts
        .iter()
        .scan(0u64, |acc, p| {
            let a = *acc;
            *acc += p.len;
            Some(a)
        })
        .collect();
    let (_, mut whole_dec) = decode_m4b(&whole).unwrap();
    for c in whole_dec.iter_mut() {
        c.truncate(exact as usize);
    }
    let encoded_joins = worst_snr_near(
        &laid(&parts, &exact_at, exact),
        &whole_dec,
        &exact_at[1..],
        4,
    );
    eprintln!("joins' worst blocks: copied {copied_joins:.1?} dB, re-encoded whole {encoded_joins:.1?} dB");
    for (k, (c, w)) in copied_joins.iter().zip(&encoded_joins).enumerate() {
        assert!(
            *c >= w - 1.0,
            "join {k}: worst block {c:.1} dB copied, {w:.1} dB re-encoded whole"
        );
    }
}

#[test]
fn parts_that_cannot_be_copied_are_encoded_and_copy_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    let mut parts = m4a_book(&book, &[4.0, 4.0]);
    // A third part at another rate: copying would play it at the wrong speed.
    let odd = book.join("03 Part.m4a");
    let spec = AudioSpec::sine(AudioKind::M4aAac, 22_050, 2, 22_050 * 4);
    write_audio(&odd, &spec).unwrap();
    parts.truncate(2);

    let out = tmp.path().join("auto.m4b");
    let report = convert(&book, &out, &[]);
    assert_eq!(report["audio"]["copied"], false);
    let why = report["audio"]["why"].as_str().unwrap();
    assert!(why.contains("03 Part.m4a is 22050 Hz"), "{why}");
    let want = parts[0].len + parts[1].len + 44_100 * 4;
    assert_eq!(
        report["total_samples"].as_u64(),
        Some(want),
        "re-encoded exactly"
    );

    let o = run([
        "convert",
        "--audio",
        "copy",
        "-o",
        tmp.path().join("copy.m4b").to_str().unwrap(),
        book.to_str().unwrap(),
    ]);
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--audio copy is not possible") && err.contains("22050 Hz"),
        "{err}"
    );
    assert!(!tmp.path().join("copy.m4b").exists());
}
