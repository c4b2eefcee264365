//! `aiom4b edit` (issue 17) end to end on real files: books converted by aiom4b and books made
//! by the ffmpeg CLI (with and without chapters, `moov` at the end). Results are read back by
//! ffprobe, AtomicParsley (for `©nrt`), `verify::summarize`, and a small sample-table reader
//! here that proves the audio bytes unchanged; decoded audio is compared through ffmpeg.
use crate::common::*;
use aiom4b::verify::summarize;
use aiom4b_testkit::fixtures::{test_jpeg, test_png, write_mp3};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Chapter marks of the QuickTime chapter track count in milliseconds.
const MS: f64 = 0.0015;

fn edit(book: &Path, args: &[&str]) -> Output {
    let mut cmd = aiom4b();
    cmd.arg("edit").arg(book).args(args);
    run_cmd(cmd)
}

/// `aiom4b edit BOOK --json ARGS`, expecting success; the report.
fn edit_ok(book: &Path, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = edit(book, &a);
    assert_exit(&out, 0);
    json(&out)
}

/// A book the ffmpeg CLI writes: 4 s of two tones, stereo AAC, `moov` at the end (no
/// faststart), chapters from an ffmetadata file when `chapters` is given.
fn ffmpeg_book(dir: &Path, name: &str, chapters: &[(u64, &str)]) -> PathBuf {
    let out = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("sine=f=330:d=4:sample_rate=44100,aformat=channel_layouts=stereo");
    if !chapters.is_empty() {
        let mut meta = String::from(";FFMETADATA1\ntitle=Made By FFmpeg\nartist=Someone\n");
        for (i, (start_ms, title)) in chapters.iter().enumerate() {
            let end = chapters.get(i + 1).map_or(4000, |c| c.0);
            meta.push_str(&format!(
                "[CHAPTER]\nTIMEBASE=1/1000\nSTART={start_ms}\nEND={end}\ntitle={title}\n"
            ));
        }
        let m = dir.join(format!("{name}.meta.txt"));
        std::fs::write(&m, meta).unwrap();
        cmd.arg("-i").arg(&m).args(["-map_metadata", "1"]);
    } else {
        cmd.args(["-metadata", "title=Made By FFmpeg"]);
    }
    cmd.args(["-c:a", "aac", "-b:a", "96k"]).arg(&out);
    let o = run_tool(&mut cmd);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// A book aiom4b converts: three MP3 files of 1 s (22.05 kHz mono), one chapter each, with
/// every tag aiom4b writes.
/// A book converted by aiom4b through libavformat's muxer (`AIOM4B_MUXER=libavformat`): `moov`
/// with no room beside it, so the first edit must rewrite the file — the path these tests need.
/// (aiom4b's own writer leaves a free box after `moov`, edited in place at once: see
/// `mp4_writer::a_new_book_is_edited_in_place_at_once`.)
fn aiom4b_book(dir: &Path, name: &str) -> PathBuf {
    let src = dir.join(format!("{name}.src"));
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..3u64 {
        let mut spec = sine_spec(300.0 + 100.0 * i as f64, 22_050, 22_050, 1, false);
        spec.tags.title = Some(format!("Part {}", i + 1));
        write_mp3(src.join(format!("{:02}.mp3", i + 1)), &spec).unwrap();
    }
    let out = dir.join(name);
    let mut cmd = aiom4b();
    cmd.env("AIOM4B_MUXER", "libavformat").args([
        "convert",
        "--quiet",
        "--preset",
        "source",
        "--title",
        "Original Title",
        "--author",
        "Original Author",
        "--narrator",
        "Original Narrator",
        "--series",
        "Original Series",
        "--series-part",
        "1",
        "--genre",
        "Audiobook",
        "--year",
        "2001",
        "--description",
        "Original description",
        "--comment",
        "Original comment",
        "-o",
        out.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert_exit(&run_cmd(cmd), 0);
    out
}

/// The audio track as stored: its raw `stts`, `stsz`, `stsc` boxes and every sample's bytes,
/// read through the sample tables by a reader written here (not the crate's).
#[derive(PartialEq, Eq)]
struct AudioBytes {
    tables: Vec<Vec<u8>>,
    samples: Vec<u8>,
    packets: usize,
}

impl std::fmt::Debug for AudioBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} packets, {} bytes", self.packets, self.samples.len())
    }
}

fn boxes(buf: &[u8]) -> Vec<(&[u8], &[u8], &[u8])> {
    // (type, body, whole box)
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= buf.len() {
        let mut size = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        let mut hdr = 8;
        if size == 1 {
            size = u64::from_be_bytes(buf[at + 8..at + 16].try_into().unwrap()) as usize;
            hdr = 16;
        } else if size == 0 {
            size = buf.len() - at;
        }
        out.push((
            &buf[at + 4..at + 8],
            &buf[at + hdr..at + size],
            &buf[at..at + size],
        ));
        at += size;
    }
    out
}

fn child<'a>(buf: &'a [u8], kind: &[u8]) -> Option<&'a [u8]> {
    boxes(buf).into_iter().find(|b| b.0 == kind).map(|b| b.1)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn audio_bytes(path: &Path) -> AudioBytes {
    let file = std::fs::read(path).unwrap();
    let moov = child(&file, b"moov").expect("moov");
    let trak = boxes(moov)
        .into_iter()
        .filter(|b| b.0 == b"trak")
        .map(|b| b.1)
        .find(|t| {
            let hdlr = child(child(t, b"mdia").unwrap(), b"hdlr").unwrap();
            &hdlr[8..12] == b"soun"
        })
        .expect("an audio track");
    let stbl = child(
        child(child(trak, b"mdia").unwrap(), b"minf").unwrap(),
        b"stbl",
    )
    .unwrap();
    let whole = |k: &[u8]| {
        boxes(stbl)
            .into_iter()
            .find(|b| b.0 == k)
            .map(|b| b.2.to_vec())
            .unwrap()
    };
    let stsz = child(stbl, b"stsz").unwrap();
    let (uniform, n) = (be32(stsz, 4), be32(stsz, 8) as usize);
    let sizes: Vec<usize> = (0..n)
        .map(|i| if uniform != 0 { uniform } else { be32(stsz, 12 + 4 * i) } as usize)
        .collect();
    let stsc = child(stbl, b"stsc").unwrap();
    let runs: Vec<(usize, usize)> = (0..be32(stsc, 4) as usize)
        .map(|i| {
            (
                be32(stsc, 8 + 12 * i) as usize,
                be32(stsc, 12 + 12 * i) as usize,
            )
        })
        .collect();
    let offsets: Vec<usize> = if let Some(c) = child(stbl, b"stco") {
        (0..be32(c, 4) as usize)
            .map(|i| be32(c, 8 + 4 * i) as usize)
            .collect()
    } else {
        let c = child(stbl, b"co64").unwrap();
        (0..be32(c, 4) as usize)
            .map(|i| u64::from_be_bytes(c[8 + 8 * i..16 + 8 * i].try_into().unwrap()) as usize)
            .collect()
    };
    let mut samples = Vec::new();
    let mut s = 0;
    for (ci, &off) in offsets.iter().enumerate() {
        let per = runs.iter().rev().find(|r| r.0 <= ci + 1).unwrap().1;
        let mut at = off;
        for _ in 0..per {
            samples.extend_from_slice(&file[at..at + sizes[s]]);
            at += sizes[s];
            s += 1;
        }
    }
    assert_eq!(s, n, "every packet read");
    AudioBytes {
        tables: vec![whole(b"stts"), whole(b"stsz"), whole(b"stsc")],
        samples,
        packets: n,
    }
}

/// The audio as ffmpeg decodes it (s16le).
fn decoded(path: &Path) -> Vec<u8> {
    let o = run_tool(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-map", "0:a", "-f", "s16le", "-"]),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.len() > 10_000);
    o.stdout
}

fn tags(path: &Path) -> serde_json::Map<String, Value> {
    ffprobe(path)["format"]["tags"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn atomicparsley(path: &Path) -> String {
    let o = run_tool(Command::new("AtomicParsley").arg(path).arg("-t"));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn chapters(path: &Path) -> Vec<(f64, String)> {
    ffprobe(path)["chapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["start_time"].as_str().unwrap().parse().unwrap(),
                c["tags"]["title"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn top_level(path: &Path) -> Vec<String> {
    let file = std::fs::read(path).unwrap();
    boxes(&file)
        .iter()
        .map(|b| String::from_utf8_lossy(b.0).into_owned())
        .collect()
}

const ALL_TAGS: [&str; 18] = [
    "--title",
    "New Title",
    "--author",
    "New Author",
    "--narrator",
    "New Narrätor",
    "--series",
    "New Series",
    "--series-part",
    "4",
    "--genre",
    "Fantasy",
    "--year",
    "2024",
    "--description",
    "A new description",
    "--comment",
    "A new comment",
];

#[test]
fn every_tag_is_set_and_cleared_on_an_aiom4b_book_with_the_audio_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let book = aiom4b_book(tmp.path(), "book.m4b");
    let audio = audio_bytes(&book);
    let pcm = decoded(&book);
    let chapters_before = chapters(&book);
    assert_eq!(chapters_before.len(), 3);

    // The converted book has no room beside moov: the first edit rewrites it.
    let r = edit_ok(&book, &ALL_TAGS);
    assert_eq!(r["in_place"], false, "{r:#}");
    let t = tags(&book);
    for (k, v) in [
        ("title", "New Title"),
        ("album", "New Title"),
        ("artist", "New Author"),
        ("album_artist", "New Author"),
        ("composer", "New Narrätor"),
        ("genre", "Fantasy"),
        ("date", "2024"),
        ("description", "A new description"),
        ("synopsis", "A new description"),
        ("comment", "A new comment"),
        ("SERIES", "New Series"),
        ("SERIES-PART", "4"),
        ("show", "New Series"),
    ] {
        assert_eq!(t.get(k).and_then(Value::as_str), Some(v), "{k} in {t:#?}");
    }
    let ap = atomicparsley(&book);
    assert!(ap.contains("Atom \"©nrt\" contains: New Narrätor"), "{ap}");
    assert!(ap.contains("Atom \"©mvn\" contains: New Series"), "{ap}");
    assert!(ap.contains("Atom \"©mvi\" contains: 4"), "{ap}");
    assert_eq!(ap.matches("©nrt").count(), 1, "one narrator item: {ap}");
    // Untouched items stay (media type audiobook, encoder).
    assert!(ap.contains("Atom \"stik\""), "{ap}");
    assert_eq!(
        audio_bytes(&book),
        audio,
        "audio samples and tables unchanged"
    );
    assert_eq!(decoded(&book), pcm, "decoded audio unchanged");
    assert_eq!(chapters(&book), chapters_before, "chapters kept");
    let s = summarize(&book).unwrap();
    assert!(
        s.faststart,
        "moov stays before the audio: {:?}",
        s.top_level
    );
    assert_eq!(s.top_level[..4], ["ftyp", "moov", "free", "mdat"]);

    // The rewrite left room: the second edit (clear everything) happens in place.
    let mut clear = Vec::new();
    for k in ALL_TAGS.iter().step_by(2) {
        clear.push(*k);
        clear.push("");
    }
    let r = edit_ok(&book, &clear);
    assert_eq!(r["in_place"], true, "{r:#}");
    let t = tags(&book);
    for k in [
        "title",
        "album",
        "artist",
        "album_artist",
        "composer",
        "genre",
        "date",
        "description",
        "synopsis",
        "comment",
        "SERIES",
        "SERIES-PART",
        "show",
    ] {
        assert!(!t.contains_key(k), "{k} still in {t:#?}");
    }
    let ap = atomicparsley(&book);
    for k in [
        "©nrt", "©mvn", "©mvi", "©wrt", "©nam", "©ART", "desc", "ldes",
    ] {
        assert!(!ap.contains(&format!("Atom \"{k}\"")), "{k} still in {ap}");
    }
    assert_eq!(audio_bytes(&book), audio);
    assert_eq!(decoded(&book), pcm);
    assert_eq!(chapters(&book), chapters_before);
    assert_no_part(tmp.path());
}

#[test]
fn cover_is_set_replaced_and_removed_in_place_on_an_ffmpeg_book_with_moov_at_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let book = ffmpeg_book(tmp.path(), "ff.m4a", &[(0, "One"), (1500, "Two")]);
    assert_eq!(top_level(&book).last().map(String::as_str), Some("moov"));
    let audio = audio_bytes(&book);
    let pcm = decoded(&book);
    let jpeg = tmp.path().join("c.jpg");
    std::fs::write(&jpeg, test_jpeg(64, 48)).unwrap();
    let png = tmp.path().join("c.png");
    std::fs::write(&png, test_png(32, 32)).unwrap();

    let cover_stream = |p: &Path| -> Option<String> {
        ffprobe(p)["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["disposition"]["attached_pic"] == 1)
            .map(|s| s["codec_name"].as_str().unwrap().to_string())
    };
    // moov is the last box: the new one is appended and the old one becomes free space.
    let r = edit_ok(&book, &["--cover", jpeg.to_str().unwrap()]);
    assert_eq!(r["in_place"], true, "{r:#}");
    assert_eq!(cover_stream(&book).as_deref(), Some("mjpeg"));
    let r = edit_ok(&book, &["--cover", png.to_str().unwrap()]);
    assert_eq!(r["in_place"], true);
    assert_eq!(cover_stream(&book).as_deref(), Some("png"));
    assert_eq!(
        summarize(&book).unwrap().cover.unwrap().bytes,
        test_png(32, 32).len() as u64
    );
    let r = edit_ok(&book, &["--no-cover"]);
    assert_eq!(r["in_place"], true);
    assert_eq!(cover_stream(&book), None);
    assert!(summarize(&book).unwrap().cover.is_none());
    assert_eq!(
        chapters(&book),
        vec![(0.0, "One".to_string()), (1.5, "Two".to_string())]
    );
    assert_eq!(tags(&book)["title"], "Made By FFmpeg");
    assert_eq!(audio_bytes(&book), audio);
    assert_eq!(decoded(&book), pcm);
    assert_no_part(tmp.path());

    // Not an image: refused before anything is written.
    let before = std::fs::read(&book).unwrap();
    let out = edit(&book, &["--cover", book.to_str().unwrap()]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("not a JPEG or PNG"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&book).unwrap(), before);
}

#[test]
fn three_hundred_chapters_replace_none_then_rename_one_and_shift() {
    let tmp = tempfile::tempdir().unwrap();
    let book = ffmpeg_book(tmp.path(), "plain.m4b", &[]);
    assert!(chapters(&book).is_empty());
    let audio = audio_bytes(&book);
    let pcm = decoded(&book);
    let list: String = (0..300)
        .map(|i| format!("{:.3} Kapitel {} – Ä\n", i as f64 * 0.013, i + 1))
        .collect();
    let file = tmp.path().join("chapters.txt");
    std::fs::write(&file, list).unwrap();
    edit_ok(&book, &["--chapters-file", file.to_str().unwrap()]);
    let got = chapters(&book);
    assert_eq!(
        got.len(),
        300,
        "ffprobe reads all 300 from the chapter track"
    );
    for (i, (start, title)) in got.iter().enumerate() {
        assert_eq!(title, &format!("Kapitel {} – Ä", i + 1));
        assert!(
            (start - i as f64 * 0.013).abs() <= MS,
            "chapter {i} at {start}"
        );
    }
    let s = summarize(&book).unwrap();
    assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
    assert_eq!(s.chapter_track.as_ref().unwrap().chapters.len(), 300);
    let chpl = s.chpl.as_ref().unwrap();
    assert_eq!((chpl.version, chpl.declared_count), (1, 255));
    assert_eq!(chpl.chapters.len(), 255);
    assert_eq!(chpl.chapters[254].title, "Kapitel 255 – Ä");
    // mediainfo, another independent reader, sees the chapter menu too.
    let mi = run_tool(Command::new("mediainfo").arg(&book));
    assert!(String::from_utf8_lossy(&mi.stdout).contains("Kapitel 300 – Ä"));
    assert_eq!(audio_bytes(&book), audio);
    assert_eq!(decoded(&book), pcm);

    // Rename two at once, then shift: both consistent in the track and chpl.
    edit_ok(
        &book,
        &["--chapter", "2=The Storm", "--chapter", "300=The End"],
    );
    let got = chapters(&book);
    assert_eq!(got[1].1, "The Storm");
    assert_eq!(got[299].1, "The End");
    assert_eq!(got[2].1, "Kapitel 3 – Ä");
    let r = edit_ok(&book, &["--shift", "+0:00.500"]);
    let got = chapters(&book);
    // The first stays at 0; the others move by 0.5 s; those past the 4 s end are dropped.
    assert_eq!(got[0], (0.0, "Kapitel 1 – Ä".to_string()));
    assert!((got[1].0 - 0.513).abs() <= MS, "{:?}", got[1]);
    assert_eq!(
        got.len(),
        300 - (0..300).filter(|i| *i as f64 * 0.013 + 0.5 >= 4.0).count()
    );
    assert!(
        r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("dropped")),
        "{r:#}"
    );
    let r = edit_ok(&book, &["--shift", "-1s"]);
    let got = chapters(&book);
    assert_eq!(got[0].0, 0.0);
    assert!(
        r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("before 0")),
        "{r:#}"
    );
    let s = summarize(&book).unwrap();
    let track: Vec<String> = s
        .chapter_track
        .unwrap()
        .chapters
        .into_iter()
        .map(|c| c.title)
        .collect();
    let chpl: Vec<String> = s
        .chpl
        .unwrap()
        .chapters
        .into_iter()
        .map(|c| c.title)
        .collect();
    assert_eq!(
        chpl[..],
        track[..track.len().min(255)],
        "chpl and track agree"
    );
    assert_eq!(audio_bytes(&book), audio);
    assert_eq!(decoded(&book), pcm);
    // A chapter that does not exist: a clean error, nothing changed.
    let before = std::fs::read(&book).unwrap();
    let out = edit(&book, &["--chapter", "999=x"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("no chapter 999"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&book).unwrap(), before);
}

#[test]
fn chapters_of_an_ffmpeg_book_are_replaced_and_the_rewrite_moves_moov_first() {
    let tmp = tempfile::tempdir().unwrap();
    let book = ffmpeg_book(tmp.path(), "chap.m4b", &[(0, "Old A"), (2000, "Old B")]);
    let audio = audio_bytes(&book);
    let pcm = decoded(&book);
    // moov at the end always has room after it; a box appended after moov (and FFmpeg's
    // `mdat` before it) leave none, so this edit rewrites the file.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&book)
        .unwrap();
    use std::io::Write;
    f.write_all(&[0, 0, 0, 12, b'u', b'd', b't', b'x', 1, 2, 3, 4])
        .unwrap();
    drop(f);
    let file = tmp.path().join("c.txt");
    std::fs::write(&file, "0 Eins\n1.25 Zwei\n3 Drei\n").unwrap();
    let r = edit_ok(
        &book,
        &["--chapters-file", file.to_str().unwrap(), "--title", "T"],
    );
    assert_eq!(r["in_place"], false, "{r:#}");
    let tl = top_level(&book);
    assert_eq!(tl[..5], ["ftyp", "moov", "free", "mdat", "mdat"], "{tl:?}");
    assert!(
        tl.contains(&"udtx".to_string()),
        "unknown boxes are kept: {tl:?}"
    );
    assert_eq!(
        chapters(&book),
        vec![
            (0.0, "Eins".to_string()),
            (1.25, "Zwei".to_string()),
            (3.0, "Drei".to_string())
        ]
    );
    assert_eq!(audio_bytes(&book), audio);
    assert_eq!(decoded(&book), pcm);
    // The rewrite left padding after moov: the next chapter edit happens in place.
    std::fs::write(&file, "0 Only\n").unwrap();
    let r = edit_ok(&book, &["--chapters-file", file.to_str().unwrap()]);
    assert_eq!(r["in_place"], true, "{r:#}");
    assert_eq!(chapters(&book), vec![(0.0, "Only".to_string())]);
    assert_eq!(audio_bytes(&book), audio);
    assert_no_part(tmp.path());
}

#[test]
fn a_killed_edit_leaves_a_valid_book_and_the_next_edit_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let book = ffmpeg_book(tmp.path(), "k.m4b", &[(0, "One"), (1000, "Two")]);
    let original = std::fs::read(&book).unwrap();
    let audio = audio_bytes(&book);

    // In place: killed after the staged write, before the flip.
    let mut cmd = aiom4b();
    cmd.env("AIOM4B_EDIT_FAULT", "before-flip")
        .arg("edit")
        .arg(&book)
        .args(["--title", "Never"]);
    let out = run_cmd(cmd);
    assert!(!out.status.success(), "the hook aborts the process");
    assert_eq!(tags(&book)["title"], "Made By FFmpeg", "the old book");
    assert_eq!(
        std::fs::read(&book).unwrap()[..original.len()],
        original[..],
        "every old byte in place (only free space appended)"
    );
    let s = summarize(&book).unwrap();
    assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
    assert_eq!(s.chapter_track.unwrap().chapters.len(), 2);
    assert_eq!(audio_bytes(&book), audio);
    // The next edit works (on top of the leftover free space).
    edit_ok(&book, &["--title", "After"]);
    assert_eq!(tags(&book)["title"], "After");
    assert_eq!(audio_bytes(&book), audio);

    // Rewrite: killed after the part was written, before the rename.
    let book2 = aiom4b_book(tmp.path(), "r.m4b");
    let original = std::fs::read(&book2).unwrap();
    let mut cmd = aiom4b();
    cmd.env("AIOM4B_EDIT_FAULT", "after-part")
        .arg("edit")
        .arg(&book2)
        .args(["--title", "Never"]);
    let out = run_cmd(cmd);
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read(&book2).unwrap(),
        original,
        "the original, byte for byte"
    );
    assert!(
        entries(tmp.path()).iter().any(|e| e.ends_with(".part")),
        "the killed edit's part is there: {:?}",
        entries(tmp.path())
    );
    edit_ok(&book2, &["--title", "After"]);
    assert_eq!(tags(&book2)["title"], "After");
    assert_no_part(tmp.path());
}

#[test]
fn hostile_and_unsuitable_files_are_refused_and_left_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let book = ffmpeg_book(tmp.path(), "h.m4b", &[(0, "One")]);
    let whole = std::fs::read(&book).unwrap();

    // moov (at the end) cut short.
    let cut = tmp.path().join("cut.m4b");
    std::fs::write(&cut, &whole[..whole.len() - 200]).unwrap();
    let out = edit(&cut, &["--title", "x"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("cut.m4b"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&cut).unwrap(), whole[..whole.len() - 200]);

    // A moov whose child lies about its size.
    let lying = tmp.path().join("lying.m4b");
    let mut bytes = whole.clone();
    let moov_at = bytes.windows(4).rposition(|w| w == b"moov").unwrap();
    let first_child = moov_at + 4;
    bytes[first_child..first_child + 4].copy_from_slice(&0x00FF_FFFFu32.to_be_bytes());
    std::fs::write(&lying, &bytes).unwrap();
    let out = edit(&lying, &["--title", "x"]);
    assert_exit(&out, 1);
    assert_eq!(std::fs::read(&lying).unwrap(), bytes);

    // Symbolic link, read-only file, fragmented MP4, a folder.
    let link = tmp.path().join("link.m4b");
    std::os::unix::fs::symlink(&book, &link).unwrap();
    let out = edit(&link, &["--title", "x"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    let ro = tmp.path().join("ro.m4b");
    std::fs::write(&ro, &whole).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o444)).unwrap();
    let out = edit(&ro, &["--title", "x"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("read-only"), "{}", stderr(&out));
    let frag = tmp.path().join("frag.m4a");
    let o = run_tool(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&book)
            .args(["-c", "copy", "-movflags", "frag_keyframe+empty_moov"])
            .arg(&frag),
    );
    assert!(o.status.success());
    let out = edit(&frag, &["--title", "x"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("fragmented"), "{}", stderr(&out));
    let out = edit(tmp.path(), &["--title", "x"]);
    assert_exit(&out, 1);
    assert_eq!(
        std::fs::read(&book).unwrap(),
        whole,
        "the real book was never touched"
    );
    // A book another edit holds (its lock) is refused.
    let held = std::fs::File::open(&book).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this test owns and keeps open for the call.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let out = edit(&book, &["--title", "x"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("another program is editing it"),
        "{}",
        stderr(&out)
    );
    drop(held);
    // Nothing to change is a usage error.
    assert_exit(&edit(&book, &[]), 2);
    assert_no_part(tmp.path());
}

#[test]
fn dry_run_writes_nothing_and_each_edits_a_library_continuing_after_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("lib");
    std::fs::create_dir_all(lib.join("b")).unwrap();
    let a = ffmpeg_book(&lib, "a.m4b", &[(0, "One")]);
    let b = ffmpeg_book(&lib.join("b"), "b.m4a", &[]);
    std::fs::write(lib.join("broken.m4b"), b"not an mp4 at all").unwrap();
    let before = std::fs::read(&a).unwrap();
    let out = edit(&a, &["--dry-run", "--series", "Saga"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("would be edited in place"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("series: (none) → \"Saga\""),
        "{}",
        stdout(&out)
    );
    assert_eq!(std::fs::read(&a).unwrap(), before);

    let mut cmd = aiom4b();
    cmd.args(["edit", "--each"])
        .arg(&lib)
        .args(["--series", "Saga", "--series-part", "2"]);
    let out = run_cmd(cmd);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("2 book(s) edited, 1 failed"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("broken.m4b"), "{}", stderr(&out));
    for p in [&a, &b] {
        let t = tags(p);
        assert_eq!(t["SERIES"], "Saga");
        assert_eq!(t["SERIES-PART"], "2");
    }
}

/// `ftyp, free, mdat, free(N), moov, udtx`: the only room is the free box *before* moov. The
/// edit writes the new moov into it and flips the free box's header; a kill before the flip
/// leaves the old book.
#[test]
fn a_free_box_before_moov_is_used_in_place_and_a_kill_there_leaves_the_old_book() {
    let tmp = tempfile::tempdir().unwrap();
    let src = ffmpeg_book(tmp.path(), "src.m4b", &[(0, "One"), (2000, "Two")]);
    let whole = std::fs::read(&src).unwrap();
    let moov_at = boxes(&whole)
        .iter()
        .scan(0usize, |at, b| {
            let here = *at;
            *at += b.2.len();
            Some((here, b.0.to_vec()))
        })
        .find(|(_, k)| k == b"moov")
        .unwrap()
        .0;
    // Nothing points at moov's position, so a box can go before it without other changes.
    let mut free = 30_000u32.to_be_bytes().to_vec();
    free.extend_from_slice(b"free");
    free.resize(30_000, 0);
    let udtx = [0, 0, 0, 12, b'u', b'd', b't', b'x', 1, 2, 3, 4];
    let bytes = [&whole[..moov_at], &free, &whole[moov_at..], &udtx].concat();
    let book = tmp.path().join("before.m4b");
    std::fs::write(&book, &bytes).unwrap();
    let audio = audio_bytes(&book);
    let pcm = decoded(&book);
    assert_eq!(audio, audio_bytes(&src));

    let mut cmd = aiom4b();
    cmd.env("AIOM4B_EDIT_FAULT", "before-flip")
        .arg("edit")
        .arg(&book)
        .args(["--title", "Never", "--chapter", "1=Never"]);
    assert!(!run_cmd(cmd).status.success());
    assert_eq!(std::fs::read(&book).unwrap().len(), bytes.len());
    assert_eq!(tags(&book)["title"], "Made By FFmpeg");
    assert_eq!(chapters(&book)[0].1, "One");
    assert!(summarize(&book).unwrap().inconsistencies.is_empty());

    let file = tmp.path().join("c.txt");
    std::fs::write(&file, "0 Alpha\n0:01.5 Beta\n0:03 Gamma\n").unwrap();
    let r = edit_ok(
        &book,
        &[
            "--title",
            "Before",
            "--chapters-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(r["in_place"], true, "{r:#}");
    assert_eq!(
        std::fs::read(&book).unwrap().len(),
        bytes.len(),
        "nothing appended"
    );
    let tl = top_level(&book);
    assert_eq!(
        tl,
        ["ftyp", "free", "mdat", "free", "moov", "free", "mdat", "free", "udtx"]
    );
    assert_eq!(tags(&book)["title"], "Before");
    assert_eq!(
        chapters(&book),
        vec![
            (0.0, "Alpha".to_string()),
            (1.5, "Beta".to_string()),
            (3.0, "Gamma".to_string())
        ]
    );
    assert_eq!(audio_bytes(&book), audio);
    assert_eq!(decoded(&book), pcm);
    let s = summarize(&book).unwrap();
    assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
    // The gap after the new moov takes the next edit.
    let r = edit_ok(&book, &["--comment", "again"]);
    assert_eq!(r["in_place"], true);
    assert_eq!(tags(&book)["comment"], "again");
    assert_eq!(chapters(&book)[2].1, "Gamma");
}

#[test]
fn an_edit_that_fails_its_check_is_undone_in_place_and_when_rewriting() {
    let tmp = tempfile::tempdir().unwrap();
    let failing = |book: &Path| {
        let mut cmd = aiom4b();
        cmd.env("AIOM4B_EDIT_FAULT", "fail-check")
            .arg("edit")
            .arg(book)
            .args(["--title", "Never", "--chapter", "1=Never"]);
        let out = run_cmd(cmd);
        assert_exit(&out, 1);
        assert!(
            stderr(&out).contains("fail-check"),
            "the check's problem is named: {}",
            stderr(&out)
        );
    };

    // Rewrite (an aiom4b book has no room beside moov): the original stays byte for byte.
    let book = aiom4b_book(tmp.path(), "r.m4b");
    let original = std::fs::read(&book).unwrap();
    failing(&book);
    assert_eq!(std::fs::read(&book).unwrap(), original);
    assert_no_part(tmp.path());

    // In place (after one rewrite there is room): the flip is switched back, so every reader
    // sees the old book; only the free space holds the abandoned boxes.
    edit_ok(&book, &["--title", "Before"]);
    let audio = audio_bytes(&book);
    let pcm = decoded(&book);
    let chapters_before = chapters(&book);
    let tops_before = top_level(&book);
    failing(&book);
    assert_eq!(tags(&book)["title"], "Before");
    assert_eq!(chapters(&book), chapters_before);
    assert_eq!(
        top_level(&book),
        tops_before,
        "the same boxes at the top level"
    );
    assert_eq!(audio_bytes(&book), audio);
    assert_eq!(decoded(&book), pcm);
    let s = summarize(&book).unwrap();
    assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
    assert_no_part(tmp.path());
    // And the next edit works in place.
    let r = edit_ok(&book, &["--title", "After"]);
    assert_eq!(r["in_place"], true, "{r}");
    assert_eq!(tags(&book)["title"], "After");
}
