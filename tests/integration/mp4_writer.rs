//! aiom4b's own M4B writer (the default) against libavformat's muxer (`AIOM4B_MUXER=libavformat`,
//! the reference): the same book converted by both must decode to the same samples and read
//! the same in ffprobe, mediainfo, AtomicParsley and `verify::summarize` — length, chapters
//! (more than `chpl`'s 255), tags (narrator and series included) and cover. The new file must
//! be faststart without a second pass: `moov` first, then the unused reservation as `free`.
//! (The 64-bit duration and `co64` edges are unit tests of the box builders, `av::mp4write`;
//! memory flat in book length is an `--ignored` test here, it writes 31 hours of frames.)
use crate::common::*;
use aiom4b::__internals::encode::{open_encoder, EncodedPacket};
use aiom4b::__internals::mux::{Brand, M4bMuxer, MuxChapter, MuxerKind};
use aiom4b::verify::summarize;
use aiom4b::{AacCoder, AacProfile, EncoderChoice, EncoderSettings, Picture, Tags, TargetFormat};
use aiom4b_testkit::fixtures::{test_jpeg, write_mp3, Length, Mp3Spec, Signal};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Three files (speech-like noise, different lengths, a JPEG cover in the first) and a
/// chapters file with 300 marks over them.
fn book(dir: &Path) -> (PathBuf, PathBuf) {
    let folder = dir.join("book");
    std::fs::create_dir_all(&folder).unwrap();
    let jpeg = test_jpeg(160, 120);
    for (i, secs) in [7.3, 5.1, 9.6].iter().enumerate() {
        let spec = Mp3Spec {
            length: Length::Secs(*secs),
            signal: Signal::SpeechLike { seed: i as u64 + 1 },
            tags: Tags {
                title: Some(format!("Teil {}", i + 1)),
                album: Some("Das Buch".into()),
                artist: Some("Anna Autorin".into()),
                genre: Some("Hörbuch".into()),
                year: Some("2021".into()),
                track: Some(i as u32 + 1),
                ..Tags::default()
            },
            cover: (i == 0).then(|| Picture {
                mime: "image/jpeg".into(),
                data: jpeg.clone(),
                width: Some(160),
                height: Some(120),
            }),
            ..Mp3Spec::default()
        };
        write_mp3(folder.join(format!("0{}.mp3", i + 1)), &spec).unwrap();
    }
    // 300 chapters, 70 ms apart: more than chpl's 255, every one a real mark.
    let list: String = (0..300)
        .map(|k| {
            let ms = k * 70;
            format!(
                "00:00:{:02}.{:03} Kapitel {} – ä\n",
                ms / 1000,
                ms % 1000,
                k + 1
            )
        })
        .collect();
    let chapters = dir.join("chapters.txt");
    std::fs::write(&chapters, list).unwrap();
    (folder, chapters)
}

fn convert(folder: &Path, chapters: &Path, out: &Path, muxer: &str) {
    let mut cmd = aiom4b();
    cmd.env("AIOM4B_MUXER", muxer)
        .args(["convert", "--quiet", "-o"])
        .arg(out)
        .arg("--chapters-file")
        .arg(chapters)
        .args([
            "--narrator",
            "Nora Sprecherin",
            "--description",
            "Über das Buch",
        ])
        .args(["--series", "Reisen", "--series-part", "2"])
        .arg(folder);
    assert_exit(&run_cmd(cmd), 0);
}

/// [`book`] converted by aiom4b's own writer to `dir/name`; the book's folder and chapters.
fn converted(dir: &Path, name: &str) -> (PathBuf, (PathBuf, PathBuf)) {
    let (folder, chapters) = book(dir);
    let out = dir.join(name);
    convert(&folder, &chapters, &out, "native");
    (out, (folder, chapters))
}

/// What ffprobe says, without what differs by design (file size, overall bit rate, the stream
/// index of the chapter track, which libavformat's muxer numbers after the cover).
fn probe_view(path: &Path) -> Value {
    let mut p = ffprobe(path);
    let f = p["format"].as_object_mut().unwrap();
    for k in ["filename", "size", "bit_rate"] {
        f.remove(k);
    }
    let streams = p["streams"].as_array_mut().unwrap();
    for s in streams.iter_mut() {
        let s = s.as_object_mut().unwrap();
        s.remove("id");
        // The chapter text track's bit rate follows its sample table's layout.
        if s.get("codec_type").and_then(Value::as_str) != Some("audio") {
            s.remove("bit_rate");
        }
    }
    p
}

/// mediainfo's durations, frame counts, tags, cover and chapter menu.
fn mediainfo_view(path: &Path) -> Value {
    let out = run_tool(Command::new("mediainfo").arg("--Output=JSON").arg(path));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut keep = serde_json::Map::new();
    for t in v["media"]["track"].as_array().unwrap() {
        let kind = t["@type"].as_str().unwrap().to_string();
        let fields: &[&str] = match kind.as_str() {
            "General" => &[
                "Duration",
                "Title",
                "Album",
                "Performer",
                "Album_Performer",
                "Composer",
                "Genre",
                "Recorded_Date",
                "Description",
                "Cover",
                "ContentType",
                "Encoded_Application",
                "CodecID",
                "extra",
            ],
            "Audio" => &[
                "Duration",
                "FrameCount",
                "SamplingCount",
                "SamplingRate",
                "Channels",
                "Format",
                "Source_Duration",
                "Source_FrameCount",
                "extra",
            ],
            "Menu" => &["Duration", "extra"],
            _ => &[],
        };
        let mut m = serde_json::Map::new();
        for f in fields {
            if let Some(x) = t.get(*f) {
                m.insert(f.to_string(), x.clone());
            }
        }
        // The chapter track's ID (which Menu the audio names) differs by design: libavformat
        // numbers the cover stream first.
        if let Some(e) = m.get_mut("extra").and_then(Value::as_object_mut) {
            e.remove("Menus");
        }
        let n = keep.len();
        keep.insert(format!("{n} {kind}"), Value::Object(m));
    }
    Value::Object(keep)
}

/// Every leaf of `v` by its path, for a readable difference.
fn leaves(v: &Value, path: String, out: &mut std::collections::BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, x)| leaves(x, format!("{path}/{k}"), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| leaves(x, format!("{path}/{i}"), out)),
        _ => {
            out.insert(path, v.clone());
        }
    }
}

/// Asserts `ours == reference`, listing the leaves that differ.
#[track_caller]
fn assert_same(ours: &Value, reference: &Value, what: &str) {
    let (mut a, mut b) = (Default::default(), Default::default());
    leaves(ours, String::new(), &mut a);
    leaves(reference, String::new(), &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: ours {:?}, reference {:?}", a.get(k), b.get(k)))
        .collect();
    assert!(diff.is_empty(), "{what} differs:\n{}", diff.join("\n"));
}

/// AtomicParsley's list of the iTunes items (the cover as a count).
fn atomicparsley_view(path: &Path) -> String {
    let out = run_tool(Command::new("AtomicParsley").arg(path).arg("-t"));
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `verify::summarize` without what differs by design (path, size, box order, track IDs).
fn summary_view(path: &Path) -> Value {
    let s = summarize(path).unwrap();
    assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
    assert!(s.faststart, "{}: moov after mdat", path.display());
    let mut v = serde_json::to_value(&s).unwrap();
    let o = v.as_object_mut().unwrap();
    for k in ["path", "file_size", "top_level", "tracks"] {
        o.remove(k);
    }
    if let Some(t) = o.get_mut("chapter_track").and_then(Value::as_object_mut) {
        t.remove("track_id");
    }
    v
}

#[test]
fn both_writers_make_the_same_book() {
    let tmp = tempfile::tempdir().unwrap();
    let (ours, (folder, chapters)) = converted(tmp.path(), "ours.m4b");
    let reference = tmp.path().join("reference.m4b");
    convert(&folder, &chapters, &reference, "libavformat");

    let pcm = decoded(&ours);
    assert!(
        pcm.len() > 4 * 2 * 44_100 * 20,
        "{} bytes of PCM",
        pcm.len()
    );
    assert!(pcm == decoded(&reference), "the decoded samples differ");
    assert_same(&probe_view(&ours), &probe_view(&reference), "ffprobe");
    assert_same(
        &mediainfo_view(&ours),
        &mediainfo_view(&reference),
        "mediainfo",
    );
    assert_eq!(
        atomicparsley_view(&ours),
        atomicparsley_view(&reference),
        "AtomicParsley"
    );
    assert_same(
        &summary_view(&ours),
        &summary_view(&reference),
        "verify::summarize",
    );

    // What both were compared on is really there.
    let s = summarize(&ours).unwrap();
    assert_eq!(s.chapter_track.as_ref().unwrap().chapters.len(), 300);
    let chpl = s.chpl.as_ref().unwrap();
    assert_eq!((chpl.declared_count, chpl.chapters.len()), (255, 255));
    assert_eq!(s.tags.narrator.as_deref(), Some("Nora Sprecherin"));
    assert_eq!(s.tags.series.as_deref(), Some("Reisen"));
    assert_eq!(s.tags.series_part.as_deref(), Some("2"));
    assert_eq!(
        s.cover.as_ref().unwrap().bytes,
        test_jpeg(160, 120).len() as u64
    );
    let p = ffprobe(&ours);
    assert_eq!(p["chapters"].as_array().unwrap().len(), 300);
    assert_eq!(p["format"]["tags"]["SERIES"], "Reisen", "{p:#}");
    // One pass: the index first, the rest of its reservation free, then the audio.
    assert_eq!(s.top_level, ["ftyp", "moov", "free", "free", "mdat"]);
    assert_eq!(
        summarize(&reference).unwrap().top_level,
        ["ftyp", "moov", "free", "mdat"]
    );
}

/// The free box after the new writer's `moov` takes the first edit in place: no rewrite of
/// the book (libavformat's books have no room, and their first edit rewrites the file).
#[test]
fn a_new_book_is_edited_in_place_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (ours, _) = converted(tmp.path(), "ours.m4b");
    let before = std::fs::metadata(&ours).unwrap().len();
    let pcm = decoded(&ours);
    let mut cmd = aiom4b();
    cmd.arg("edit").arg(&ours).args([
        "--json",
        "--title",
        "Ein neuer Titel",
        "--chapter",
        "2=Zwei",
    ]);
    let out = run_cmd(cmd);
    assert_exit(&out, 0);
    let r = json(&out);
    assert_eq!(r["in_place"], true, "{r:#}");
    assert_eq!(std::fs::metadata(&ours).unwrap().len(), before);
    assert!(decoded(&ours) == pcm, "the audio changed");
    let s = summarize(&ours).unwrap();
    assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
    assert_eq!(s.tags.title.as_deref(), Some("Ein neuer Titel"));
    assert_eq!(s.chapter_track.unwrap().chapters[1].title, "Zwei");
}

/// A split into parts goes through the same writer (`.m4a` brand for a lone chapter aside):
/// each part of both writers decodes the same and reads the same.
#[test]
fn split_parts_match_between_writers() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, _) = converted(tmp.path(), "whole.m4b");
    let mut parts = Vec::new();
    for muxer in ["native", "libavformat"] {
        let dir = tmp.path().join(muxer);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = aiom4b();
        cmd.env("AIOM4B_MUXER", muxer)
            .args(["split", "--quiet", "--parts", "2", "--out"])
            .arg(&dir)
            .arg(&whole);
        assert_exit(&run_cmd(cmd), 0);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 2, "{files:?}");
        parts.push(files);
    }
    for (ours, reference) in parts[0].iter().zip(&parts[1]) {
        assert!(decoded(ours) == decoded(reference), "{}", ours.display());
        assert_same(&probe_view(ours), &probe_view(reference), "ffprobe");
        assert_same(
            &mediainfo_view(ours),
            &mediainfo_view(reference),
            "mediainfo",
        );
        assert_same(&summary_view(ours), &summary_view(reference), "summary");
        assert_eq!(atomicparsley_view(ours), atomicparsley_view(reference));
    }
}

/// Peak resident memory of this process so far (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Writes `hours` of AAC frames (one real encoded frame, repeated) with a chapter an hour
/// through the muxer `kind`, as the pipeline does, and removes the file.
fn write_hours(kind: MuxerKind, dir: &Path, hours: u64) {
    let settings = EncoderSettings::new(
        TargetFormat::default(),
        EncoderChoice::Native,
        AacCoder::Twoloop,
        AacProfile::Lc,
    );
    let mut enc = open_encoder(&settings).unwrap();
    let params = enc.params();
    let f = params.frame_samples;
    let noise: Vec<f32> = (0..f)
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.3)
        .collect();
    let planes = [noise.as_slice(), noise.as_slice()];
    let mut pkts = Vec::new();
    while pkts.len() < 8 {
        enc.encode(&planes, &mut pkts).unwrap();
    }
    let payload = pkts[6].data.clone();
    let total = hours as i64 * 3600 * params.sample_rate as i64;
    let frames = (total + params.priming_samples) / f as i64 + 1;
    let path = dir.join("memory.m4b");
    let meta = vec![("title".to_string(), "Long".to_string())];
    let mut mux = M4bMuxer::create_with(kind, &path, &params, &meta, None, Brand::M4b)
        .unwrap()
        .expect_samples(total as u64, &params);
    for j in 0..frames {
        mux.write(&EncodedPacket {
            data: payload.clone(),
            pts: j * f as i64 - params.priming_samples,
            duration: f as i64,
        })
        .unwrap();
    }
    let hour = 3600 * params.sample_rate as i64;
    let chapters: Vec<MuxChapter> = (0..hours as i64)
        .map(|h| MuxChapter {
            title: format!("Hour {}", h + 1),
            start: h * hour,
            end: ((h + 1) * hour).min(total),
        })
        .collect();
    mux.finish(&chapters).unwrap();
    std::fs::remove_file(&path).unwrap();
}

/// The writer's memory does not grow with the book: 30 hours of frames raise this process's
/// peak RSS by less than 8 MiB over 1 hour (libavformat's muxer, measured the same way after
/// it, grows by ~10 MB an hour — which shows the meter sees growth).
#[test]
#[ignore = "writes 2 × 31 hours of frames (≈ 3.5 GB, one file at a time); run with --ignored"]
fn writer_memory_is_flat_in_book_length() {
    let tmp = tempfile::tempdir().unwrap();
    let mut growth = Vec::new();
    for kind in [MuxerKind::Native, MuxerKind::Libavformat] {
        write_hours(kind, tmp.path(), 1);
        let one = peak_rss_kib();
        write_hours(kind, tmp.path(), 30);
        let thirty = peak_rss_kib();
        eprintln!("{kind:?}: peak RSS {one} KiB after 1 h, {thirty} KiB after 30 h");
        growth.push(thirty.saturating_sub(one));
    }
    assert!(growth[0] < 8 << 10, "our writer grew by {} KiB", growth[0]);
    assert!(
        growth[1] > 100 << 10,
        "libavformat grew by only {} KiB",
        growth[1]
    );
}
