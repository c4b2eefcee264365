//! `verify` and `mp4tags` against files written by FFmpeg's `ipod` muxer.
//!
//! Inputs are made with the `ffmpeg` CLI (only here, in tests; without it the tests fail,
//! naming the package that `scripts/setup.sh` installs). They pin down what FFmpeg 5.1 actually
//! writes (brand, `chpl` version and truncation, chapter track timescale, `covr` from an
//! attached picture) and prove that adding narrator/series items leaves chapters, audio and
//! every other box as they were.
use crate::common::run_tool;
use aiom4b::verify::{self, Expectations};
use aiom4b::Error;
use aiom4b::{BookMetadata, Chapter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const RATE: u32 = 44_100;

fn ffmpeg(args: &[&str]) {
    let out = run_tool(
        Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-y"])
            .args(args),
    );
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What to put in a test book.
struct Spec<'a> {
    secs: u32,
    channels: u16,
    /// (start in ms, title); each chapter ends where the next starts.
    chapters: Vec<(u64, String)>,
    tags: &'a [(&'a str, &'a str)],
    cover: bool,
}

/// Writes an `.m4b` through `ffmpeg -f ipod -movflags +faststart` (the engine's muxer setup).
fn make_m4b(dir: &Path, name: &str, spec: &Spec<'_>) -> PathBuf {
    let mut meta = String::from(";FFMETADATA1\n");
    for (k, v) in spec.tags {
        meta.push_str(&format!("{k}={v}\n"));
    }
    let end_ms = spec.secs as u64 * 1000;
    for (i, (start, title)) in spec.chapters.iter().enumerate() {
        let end = spec.chapters.get(i + 1).map_or(end_ms, |c| c.0);
        meta.push_str(&format!(
            "[CHAPTER]\nTIMEBASE=1/1000\nSTART={start}\nEND={end}\ntitle={title}\n"
        ));
    }
    let meta_path = dir.join(format!("{name}.ffmeta"));
    std::fs::write(&meta_path, meta).unwrap();
    let out = dir.join(format!("{name}.m4b"));
    let sine = format!("sine=f=440:d={}:sample_rate={RATE}", spec.secs);
    let ch = spec.channels.to_string();
    let cover = dir.join(format!("{name}.jpg"));
    let (cover_s, meta_s, out_s) = (
        cover.to_str().unwrap(),
        meta_path.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let mut args = vec!["-f", "lavfi", "-i", &sine, "-f", "ffmetadata", "-i", meta_s];
    if spec.cover {
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "color=c=red:s=64x64",
            "-frames:v",
            "1",
            cover_s,
        ]);
        args.extend(["-i", cover_s, "-map", "0:a", "-map", "2"]);
        args.extend(["-c:v", "copy", "-disposition:v", "attached_pic"]);
    } else {
        args.extend(["-map", "0:a"]);
    }
    args.extend(["-map_metadata", "1", "-map_chapters", "1", "-ac", &ch]);
    args.extend([
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-f",
        "ipod",
        "-movflags",
        "+faststart",
        out_s,
    ]);
    ffmpeg(&args);
    out
}

fn ms_to_samples(ms: u64) -> u64 {
    ms * RATE as u64 / 1000
}

fn planned(chapters: &[(u64, String)]) -> Vec<Chapter> {
    chapters
        .iter()
        .map(|(ms, t)| Chapter {
            title: t.clone(),
            start_samples: ms_to_samples(*ms),
        })
        .collect()
}

const TAGS: &[(&str, &str)] = &[
    ("title", "Der Zauberberg"),
    ("artist", "Thomas Mann"),
    ("album_artist", "Thomas Mann"),
    ("album", "Der Zauberberg"),
    ("composer", "Gert Westphal"),
    ("genre", "Audiobook"),
    ("date", "1924"),
    ("comment", "made by a test"),
    ("description", "Hans Castorp fährt nach Davos."),
    (
        "synopsis",
        "Hans Castorp fährt nach Davos und bleibt sieben Jahre.",
    ),
    ("media_type", "2"),
];

fn three_chapters() -> Vec<(u64, String)> {
    vec![
        (0, "Vorsatz".to_string()),
        (10_000, "Ankunft – Ümläute ✓".to_string()),
        (20_000, "Three".to_string()),
    ]
}

fn full_expectations(chapters: &[(u64, String)], secs: u32, channels: u16) -> Expectations {
    Expectations {
        total_samples: Some(secs as u64 * RATE as u64),
        chapters: Some(planned(chapters)),
        metadata: Some(BookMetadata {
            title: Some("Der Zauberberg".into()),
            author: Some("Thomas Mann".into()),
            album: Some("Der Zauberberg".into()),
            genre: Some("Audiobook".into()),
            year: Some("1924".into()),
            comment: Some("made by a test".into()),
            description: Some("Hans Castorp fährt nach Davos und bleibt sieben Jahre.".into()),
            ..Default::default()
        }),
        cover: true,
        ..Expectations::new(RATE, channels)
    }
}

#[test]
fn summarize_reads_what_ffmpeg_writes() {
    let dir = tempfile::tempdir().unwrap();
    let chapters = three_chapters();
    let path = make_m4b(
        dir.path(),
        "book",
        &Spec {
            secs: 30,
            channels: 2,
            chapters: chapters.clone(),
            tags: TAGS,
            cover: true,
        },
    );
    let s = verify::summarize(&path).unwrap();
    assert!(s.inconsistencies.is_empty(), "{:#?}", s.inconsistencies);

    // What FFmpeg 5.1's ipod muxer writes.
    assert_eq!(s.major_brand, "M4A ", "the ipod muxer writes M4A, not M4B");
    assert_eq!(s.top_level, ["ftyp", "moov", "free", "mdat"]);
    assert!(s.faststart);
    assert!(!s.uses_co64);
    assert_eq!(s.audio_tracks, 1);
    assert_eq!(
        (s.codec.as_str(), s.profile.as_deref()),
        ("aac", Some("LC"))
    );
    assert_eq!((s.sample_rate, s.channels), (RATE, 2));
    // Native AAC encoder: 1024 priming samples hidden by the edit list, tail trimmed by stts.
    assert_eq!(s.length.priming_samples, 1024);
    assert_eq!(s.decoded_samples, 30 * RATE as u64, "{:#?}", s.length);
    assert_eq!(s.length.stts_samples, 30 * RATE as u64 + 1024);
    assert_eq!(s.length.decoded_packets, s.length.packets);
    assert!(s.length.decoder_samples - s.length.stts_samples < 1024);
    assert!(
        (60_000..70_000).contains(&s.bitrate_bps),
        "{}",
        s.bitrate_bps
    );

    let ct = s.chapter_track.as_ref().expect("chapter track");
    assert_eq!(
        ct.timescale, 1000,
        "FFmpeg's chapter track counts milliseconds"
    );
    let got: Vec<_> = ct
        .chapters
        .iter()
        .map(|c| (c.start_samples, c.title.as_str()))
        .collect();
    let want: Vec<_> = chapters
        .iter()
        .map(|(ms, t)| (ms_to_samples(*ms), t.as_str()))
        .collect();
    assert_eq!(got, want);
    let chpl = s.chpl.as_ref().expect("chpl");
    assert_eq!((chpl.version, chpl.declared_count), (1, 3));
    assert_eq!(chpl.chapters, ct.chapters);

    assert_eq!(s.tags.title.as_deref(), Some("Der Zauberberg"));
    assert_eq!(s.tags.composer.as_deref(), Some("Gert Westphal"));
    assert_eq!(s.tags.media_type, Some(2));
    assert_eq!(s.tags.narrator, None, "FFmpeg 5.1 cannot write ©nrt");
    assert!(s.tags.encoder.as_deref().unwrap().starts_with("Lavf"));
    let cover = s.cover.as_ref().expect("cover");
    assert!(
        cover.in_covr,
        "an attached_pic stream becomes covr in ipod mode"
    );
    assert_eq!(cover.format, "jpeg");
    assert_eq!(
        s.tracks.len(),
        2,
        "audio + chapter text track, no video track"
    );

    assert_eq!(
        verify::check(&s, &full_expectations(&chapters, 30, 2)),
        Vec::<String>::new()
    );
    verify::verify(&path, &full_expectations(&chapters, 30, 2)).unwrap();
    // The summary serializes (the CLI prints it with --json).
    assert!(serde_json::to_string(&s)
        .unwrap()
        .contains("\"major_brand\":\"M4A \""));
}

#[test]
fn check_lists_every_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let chapters = three_chapters();
    let path = make_m4b(
        dir.path(),
        "book",
        &Spec {
            secs: 30,
            channels: 1,
            chapters: chapters.clone(),
            tags: &TAGS[..3],
            cover: false,
        },
    );
    let s = verify::summarize(&path).unwrap();
    assert_eq!(
        s.channels, 1,
        "mono, although the mp4a entry says 2 (a template field)"
    );
    let mut exp = full_expectations(&chapters, 30, 2);
    exp.sample_rate = 48_000;
    exp.total_samples = Some(30 * RATE as u64 + 2 * verify::DEFAULT_TOLERANCE_SAMPLES);
    let mut wrong = planned(&chapters);
    wrong[1].start_samples += 2 * verify::DEFAULT_TOLERANCE_SAMPLES;
    wrong[2].title = "Drei".into();
    exp.chapters = Some(wrong);
    exp.metadata.as_mut().unwrap().narrator = Some("Gert Westphal".into());
    let problems = verify::check(&s, &exp);
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(
        has("sample rate is 44100 Hz, expected 48000"),
        "{problems:#?}"
    );
    assert!(has("1 channel(s), expected 2"), "{problems:#?}");
    assert!(has("audio is 1323000 samples"), "{problems:#?}");
    assert!(has("chapter track chapter 2 \"Ankunft"), "{problems:#?}");
    assert!(has("chpl chapter 2"), "{problems:#?}");
    assert!(has("title \"Three\", expected \"Drei\""), "{problems:#?}");
    assert!(has("narrator (©nrt) is None"), "{problems:#?}");
    assert!(has("no cover image"), "{problems:#?}");
    assert!(has("genre (©gen) is None"), "{problems:#?}");
    match verify::verify(&path, &exp) {
        Err(Error::Verify {
            path: p,
            problems: v,
        }) => {
            assert_eq!(p, path);
            assert_eq!(v, problems);
        }
        other => panic!("expected Error::Verify, got {other:?}"),
    }
    // No chapters expected, but there are some.
    let mut exp = Expectations::new(RATE, 1);
    exp.chapters = Some(Vec::new());
    assert!(verify::check(&s, &exp)
        .iter()
        .any(|p| p.contains("no chapters were expected")));
}

/// Chapters added to the output context only after `write_header` still reach the file
/// (FFmpeg 5.1 creates the chapter track in `write_trailer`): the engine relies on this.
#[test]
fn chapters_added_after_write_header_are_written() {
    use ffmpeg_next as ff;
    let dir = tempfile::tempdir().unwrap();
    let src = make_m4b(
        dir.path(),
        "src",
        &Spec {
            secs: 6,
            channels: 1,
            chapters: Vec::new(),
            tags: &[],
            cover: false,
        },
    );
    let out = dir.path().join("late.m4b");
    ff::init().unwrap();
    let mut ictx = ff::format::input(&src).unwrap();
    let mut octx = ff::format::output_as(&out, "ipod").unwrap();
    let ist = ictx.streams().best(ff::media::Type::Audio).unwrap();
    let (idx, itb) = (ist.index(), ist.time_base());
    let mut ost = octx
        .add_stream(ff::encoder::find(ff::codec::Id::None))
        .unwrap();
    ost.set_parameters(ist.parameters());
    let mut opts = ff::Dictionary::new();
    opts.set("movflags", "+faststart");
    octx.write_header_with(opts).unwrap();
    for i in 0..3i64 {
        octx.add_chapter(i, (1, 1000), i * 2000, (i + 1) * 2000, format!("Late {i}"))
            .unwrap();
    }
    let otb = octx.stream(0).unwrap().time_base();
    for (s, mut p) in ictx.packets() {
        if s.index() == idx {
            p.rescale_ts(itb, otb);
            p.set_stream(0);
            p.set_position(-1);
            p.write_interleaved(&mut octx).unwrap();
        }
    }
    octx.write_trailer().unwrap();
    drop(octx);
    let s = verify::summarize(&out).unwrap();
    let ct = s
        .chapter_track
        .expect("chapter track written from write_trailer");
    assert_eq!(ct.chapters.len(), 3);
    assert_eq!(ct.chapters[2].start_samples, ms_to_samples(4000));
    assert_eq!(s.chpl.expect("chpl").declared_count, 3);
}

// ---------------------------------------------------------------------------------------------
// mp4tags

/// Leaf boxes of `moov` by path (`moov/trak[1]/mdia/minf/stbl/stco`), a reader written again
/// here so that the test does not trust the code it tests.
fn leaves(file: &[u8]) -> (BTreeMap<String, Vec<u8>>, usize, usize) {
    fn walk(buf: &[u8], path: &str, out: &mut BTreeMap<String, Vec<u8>>) {
        let mut pos = 0;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        while pos + 8 <= buf.len() {
            let size = u32::from_be_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
            assert!(
                size >= 8 && pos + size <= buf.len(),
                "bad box at {path}+{pos}"
            );
            let kind: String = buf[pos + 4..pos + 8].iter().map(|&b| b as char).collect();
            let n = seen.entry(kind.clone()).or_default();
            let p = format!("{path}/{kind}[{n}]");
            *n += 1;
            let body = &buf[pos + 8..pos + size];
            match kind.as_str() {
                "trak" | "mdia" | "minf" | "stbl" | "udta" | "edts" | "tref" | "dinf" => {
                    walk(body, &p, out)
                }
                "meta" => walk(&body[4..], &p, out),
                _ => {
                    out.insert(p, buf[pos..pos + size].to_vec());
                }
            }
            pos += size;
        }
    }
    let mut pos = 0;
    let mut out = BTreeMap::new();
    let (mut moov_start, mut moov_end) = (0, 0);
    while pos + 8 <= file.len() {
        let size = u32::from_be_bytes(file[pos..pos + 4].try_into().unwrap()) as usize;
        if &file[pos + 4..pos + 8] == b"moov" {
            walk(&file[pos + 8..pos + size], "moov", &mut out);
            (moov_start, moov_end) = (pos, pos + size);
        }
        pos += size;
    }
    (out, moov_start, moov_end)
}

fn stco_entries(b: &[u8]) -> Vec<u32> {
    let n = u32::from_be_bytes(b[12..16].try_into().unwrap()) as usize;
    (0..n)
        .map(|i| u32::from_be_bytes(b[16 + 4 * i..20 + 4 * i].try_into().unwrap()))
        .collect()
}

#[test]
fn extra_items_keep_300_chapters_and_everything_else_identical() {
    let dir = tempfile::tempdir().unwrap();
    let mut chapters: Vec<(u64, String)> = (0..300)
        .map(|i| (i * 100, format!("Kapitel {} – Überschrift", i + 1)))
        .collect();
    // A title longer than chpl's 255 bytes, made of 2-byte characters: FFmpeg cuts it at a
    // byte boundary; mp4ameta's chpl writer would panic on it.
    chapters[7].1 = "Ä".repeat(200);
    let path = make_m4b(
        dir.path(),
        "long",
        &Spec {
            secs: 30,
            channels: 2,
            chapters: chapters.clone(),
            tags: TAGS,
            cover: true,
        },
    );
    let before_bytes = std::fs::read(&path).unwrap();
    let before = verify::summarize(&path).unwrap();
    assert!(
        before.inconsistencies.is_empty(),
        "{:#?}",
        before.inconsistencies
    );
    assert_eq!(before.chapter_track.as_ref().unwrap().chapters.len(), 300);
    let chpl = before.chpl.as_ref().unwrap();
    assert_eq!(
        (chpl.version, chpl.declared_count),
        (1, 255),
        "FFmpeg caps chpl at 255"
    );
    assert_eq!(
        chpl.chapters[7].title.len(),
        255 + 2,
        "cut mid-character, shown as U+FFFD"
    );
    let exp = full_expectations(&chapters, 30, 2);
    assert_eq!(verify::check(&before, &exp), Vec::<String>::new());

    aiom4b::__internals::write_extra_items(
        &path,
        Some("Gert Westphal"),
        Some("Die großen Romane"),
        Some("3"),
    )
    .unwrap();

    let after_bytes = std::fs::read(&path).unwrap();
    let after = verify::summarize(&path).unwrap();
    assert!(
        after.inconsistencies.is_empty(),
        "{:#?}",
        after.inconsistencies
    );
    assert_eq!(after.tags.narrator.as_deref(), Some("Gert Westphal"));
    assert_eq!(after.tags.series.as_deref(), Some("Die großen Romane"));
    assert_eq!(after.tags.series_part.as_deref(), Some("3"));
    assert!(after.faststart);
    assert_eq!(after.top_level, before.top_level);

    // Chapters and audio read back the same.
    assert_eq!(
        after.chapter_track.as_ref().unwrap().chapters,
        before.chapter_track.as_ref().unwrap().chapters
    );
    assert_eq!(after.chpl.as_ref().unwrap().chapters, chpl.chapters);
    assert_eq!(after.decoded_samples, before.decoded_samples);
    assert_eq!(after.length.decoder_samples, before.length.decoder_samples);
    assert_eq!(after.length.decode_errors, 0);
    let tags_before = before.tags.clone();
    let mut tags_after = after.tags.clone();
    (
        tags_after.narrator,
        tags_after.series,
        tags_after.series_part,
    ) = (None, None, None);
    tags_after.keys.truncate(tags_before.keys.len());
    assert_eq!(tags_after, tags_before, "existing items unchanged");

    // Byte level: everything after moov is identical, every leaf box in moov is identical
    // except ilst (items added) and the chunk offsets (shifted by exactly the growth).
    let (lb, b_start, b_end) = leaves(&before_bytes);
    let (la, a_start, a_end) = leaves(&after_bytes);
    assert_eq!(a_start, b_start);
    let delta = (a_end - b_end) as u32;
    assert!(delta > 0);
    assert_eq!(&before_bytes[..b_start], &after_bytes[..a_start], "ftyp");
    assert_eq!(
        &before_bytes[b_end..],
        &after_bytes[a_end..],
        "free + mdat untouched"
    );
    assert_eq!(lb.keys().collect::<Vec<_>>(), la.keys().collect::<Vec<_>>());
    for (k, b) in &lb {
        let a = &la[k];
        if k.ends_with("/stco[0]") {
            let shifted: Vec<u32> = stco_entries(b).iter().map(|o| o + delta).collect();
            assert_eq!(stco_entries(a), shifted, "{k}");
        } else if k.ends_with("/ilst[0]") {
            assert!(
                a.len() > b.len() && a[8..].starts_with(&b[8..]),
                "old items kept verbatim"
            );
        } else {
            assert_eq!(a, b, "{k} changed");
        }
    }
    assert!(lb.keys().any(|k| k.ends_with("udta[0]/chpl[0]")));

    // An independent reader sees the new items.
    let tag = mp4ameta::Tag::read_with_path(
        &path,
        &mp4ameta::ReadConfig {
            read_chapter_list: false,
            ..mp4ameta::ReadConfig::DEFAULT
        },
    )
    .unwrap();
    let nrt = mp4ameta::Fourcc(*b"\xa9nrt");
    assert_eq!(tag.strings_of(&nrt).next(), Some("Gert Westphal"));
    assert_eq!(tag.movement(), Some("Die großen Romane"));
    assert_eq!(tag.movement_index(), Some(3));
    assert_eq!(tag.chapter_track().len(), 300);

    // Writing again replaces instead of duplicating, and nothing at all is a no-op.
    aiom4b::__internals::write_extra_items(&path, Some("Other"), None, None).unwrap();
    let again = verify::summarize(&path).unwrap();
    assert_eq!(again.tags.narrator.as_deref(), Some("Other"));
    assert_eq!(again.tags.series.as_deref(), Some("Die großen Romane"));
    assert_eq!(again.tags.keys.iter().filter(|k| *k == "©nrt").count(), 1);
    let bytes = std::fs::read(&path).unwrap();
    aiom4b::__internals::write_extra_items(&path, None, Some(" "), None).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn write_extra_items_reports_paths() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.m4b");
    let e = aiom4b::__internals::write_extra_items(&missing, Some("N"), None, None).unwrap_err();
    assert!(e.to_string().contains("missing.m4b"), "{e}");
    let junk = dir.path().join("junk.m4b");
    std::fs::write(&junk, b"this is not an mp4 file at all").unwrap();
    let e = aiom4b::__internals::write_extra_items(&junk, Some("N"), None, None).unwrap_err();
    assert!(matches!(e, Error::Mp4 { .. }), "{e}");
    assert_eq!(
        std::fs::read(&junk).unwrap(),
        b"this is not an mp4 file at all"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile files

/// A deterministic xorshift generator: the mutations are the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn hostile_files_are_errors_or_findings_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_m4b(
        dir.path(),
        "small",
        &Spec {
            secs: 2,
            channels: 2,
            chapters: three_chapters()[..1].to_vec(),
            tags: &TAGS[..2],
            cover: true,
        },
    );
    let good = std::fs::read(&path).unwrap();
    let (_, moov_start, moov_end) = leaves(&good);
    let bad = dir.path().join("bad.m4b");
    let try_bytes = |bytes: &[u8]| {
        std::fs::write(&bad, bytes).unwrap();
        let r = verify::summarize(&bad);
        if let Err(e) = &r {
            assert!(
                e.to_string().contains("bad.m4b"),
                "error without the path: {e}"
            );
        }
        r
    };

    // Empty, tiny and non-MP4 files.
    assert!(try_bytes(b"").is_err());
    assert!(try_bytes(b"\0\0\0").is_err());
    assert!(try_bytes(&[0xFF; 64]).is_err());
    // Truncated inside moov and inside mdat.
    assert!(try_bytes(&good[..moov_start + 100]).is_err());
    let cut = try_bytes(&good[..good.len() - 1000]);
    assert!(cut.is_err(), "mdat claims more than the file holds");
    // Sizes that lie: moov claiming the whole file, size 0 on moov, 64-bit size on ftyp.
    let mut b = good.clone();
    b[moov_start..moov_start + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(try_bytes(&b).is_err());
    let mut b = good.clone();
    b[moov_start..moov_start + 4].copy_from_slice(&0u32.to_be_bytes());
    let _ = try_bytes(&b); // moov to the end of the file: parses, mdat is inside it
                           // Random byte flips in moov: anything but a panic is fine.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..150 {
        let mut b = good.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = moov_start + (rng.next() as usize % (moov_end - moov_start));
            b[at] = rng.next() as u8;
        }
        let _ = try_bytes(&b);
    }
    // Random flips in the audio data: decode errors are findings, not failures.
    let mut b = good.clone();
    for _ in 0..200 {
        let at = moov_end + 16 + (rng.next() as usize % (b.len() - moov_end - 16));
        b[at] = rng.next() as u8;
    }
    if let Ok(s) = try_bytes(&b) {
        let problems = verify::check(&s, &Expectations::new(RATE, 2));
        assert!(
            s.length.decode_errors > 0 || problems.is_empty(),
            "{problems:?}"
        );
    }
}
