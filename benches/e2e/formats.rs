//! The `formats` section (issue 16: "say in the README what each format gets, and measure
//! it"): the 1-hour book as MP3 (the bench's own), as FLAC, as Ogg Opus 64 kb/s and as AAC-LC
//! parts re-encoded (`--audio encode`), each as 20 files, and as one FLAC file of the whole
//! hour (reached by seeking) and one Opus file (encoded in book order, streamed segments). Same binary, same run, `-jN`, medians of the reps, wall, CPU and
//! peak RSS, each against MP3's, and which path each took (ranged or in order).
//!
//! The FLAC and Opus files are made from the MP3s by the `ffmpeg` CLI (the section needs it,
//! like the baseline); the AAC parts by `aiom4b split`.
use crate::corpus::Corpus;
use crate::measure::median;
use crate::{Bench, Tool, BOOK_1H};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Converts every file of `mp3` with `ffmpeg -c:a codec args` into `dir` (once: a finished
/// folder is marked and reused), or into one file when `one` names it.
fn transcode(
    b: &Bench,
    mp3: &Corpus,
    dir: &Path,
    ext: &str,
    codec_args: &[&str],
    one: Option<&str>,
) -> Vec<PathBuf> {
    let done = dir.join(".complete");
    let ffmpeg = b.ffmpeg.as_ref().expect("checked by the caller");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("creating a corpus folder");
        let run = |inputs: &[&Path], out: &Path| {
            let mut c = Command::new(ffmpeg);
            c.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]);
            if inputs.len() == 1 {
                c.arg("-i").arg(inputs[0]);
            } else {
                let list = dir.join("concat.txt");
                let text: String = inputs
                    .iter()
                    .map(|p| {
                        format!(
                            "file '{}'\n",
                            p.display().to_string().replace('\'', "'\\''")
                        )
                    })
                    .collect();
                std::fs::write(&list, text).expect("writing the concat list");
                c.args(["-f", "concat", "-safe", "0", "-i"]).arg(&list);
            }
            let st = c
                .args(codec_args)
                .arg(out)
                .status()
                .expect("running ffmpeg");
            assert!(st.success(), "ffmpeg failed making {}", out.display());
        };
        match one {
            Some(name) => {
                let inputs: Vec<&Path> = mp3.files.iter().map(PathBuf::as_path).collect();
                run(&inputs, &dir.join(name));
                let _ = std::fs::remove_file(dir.join("concat.txt"));
            }
            None => {
                for f in &mp3.files {
                    let stem = f.file_stem().expect("a file name").to_string_lossy();
                    run(&[f], &dir.join(format!("{stem}.{ext}")));
                }
            }
        }
        std::fs::write(&done, b"").expect("marking the corpus complete");
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("reading a corpus folder")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

pub fn formats(b: &mut Bench) {
    if b.ffmpeg.is_none() {
        eprintln!("formats: needs the ffmpeg CLI to make its FLAC and Opus books; left out");
        b.rec.section("formats: left out (no ffmpeg CLI)");
        return;
    }
    let mp3 = b.corpus(&BOOK_1H);
    let jobs = b.cores;
    let tool = Tool::Aiom4b { jobs };
    let root = b.corpus_root.clone();
    let corpus = |name: &'static str, files: Vec<PathBuf>| Corpus {
        name,
        dir: files[0].parent().expect("a folder").to_path_buf(),
        files,
        audio_secs: mp3.audio_secs,
        layout: mp3.layout,
    };
    let flac = corpus(
        "book1h-flac",
        transcode(
            b,
            &mp3,
            &root.join("book1h-flac"),
            "flac",
            &["-c:a", "flac"],
            None,
        ),
    );
    let opus = corpus(
        "book1h-opus",
        transcode(
            b,
            &mp3,
            &root.join("book1h-opus"),
            "opus",
            &["-c:a", "libopus", "-b:a", "64k"],
            None,
        ),
    );
    let one_flac = corpus(
        "book1h-one-flac",
        transcode(
            b,
            &mp3,
            &root.join("book1h-one-flac"),
            "flac",
            &["-c:a", "flac"],
            Some("book.flac"),
        ),
    );
    // One Opus file: every worker would decode it from its start to reach its stretch, so it
    // is encoded in book order, its PCM streamed to the workers. Made from the one FLAC file:
    // the concat demuxer leaves each MP3's delay and padding as timestamp gaps, which the Ogg
    // muxer writes into its granule positions, so an Opus file made from the MP3s announces
    // 0.69 s more than it holds (and is refused as truncated).
    let one_opus = corpus(
        "book1h-one-opus",
        transcode(
            b,
            &one_flac,
            &root.join("book1h-one-opus"),
            "opus",
            &["-c:a", "libopus", "-b:a", "64k"],
            Some("book.opus"),
        ),
    );
    // AAC-LC parts: the book converted by aiom4b and split in 20.
    let book = b.convert(tool, &mp3).output;
    let m4a = corpus("book1h-m4a", b.split_book(&book, 20, "formats-m4a-parts"));

    let variants: [(&str, &Corpus, &[&str]); 6] = [
        ("MP3, 20 files", &mp3, &[]),
        ("FLAC, 20 files", &flac, &[]),
        ("Opus 64k, 20 files", &opus, &[]),
        (
            "AAC-LC parts re-encoded, 20 files",
            &m4a,
            &["--audio", "encode"],
        ),
        ("FLAC, one file", &one_flac, &[]),
        ("Opus 64k, one file", &one_opus, &[]),
    ];
    let n = variants.len();
    let (mut walls, mut cpus, mut rss) = (
        vec![Vec::new(); n],
        vec![Vec::new(); n],
        vec![Vec::new(); n],
    );
    let mut segments = vec![0u64; n];
    for rep in 0..b.reps {
        for (k, (label, corpus, args)) in variants.iter().enumerate() {
            let c = b.convert_with(tool, corpus, args);
            let stages = c
                .report
                .as_ref()
                .map(|r| r["timings"]["stages"].clone())
                .unwrap_or_default();
            // Segments are only counted by the ranged path.
            segments[k] = stages["segments"].as_u64().unwrap_or(0);
            eprintln!("    ({} ranged segments)", segments[k]);
            b.record_labeled_run("formats", corpus, label, rep, &c);
            walls[k].push(c.cost.wall_s);
            cpus[k].push(c.cost.cpu_s());
            rss[k].push(c.cost.max_rss_mib);
            let _ = std::fs::remove_file(&c.output);
        }
    }
    let wall: Vec<f64> = walls.iter().map(|v| median(v)).collect();
    let cpu: Vec<f64> = cpus.iter().map(|v| median(v)).collect();
    let mem: Vec<f64> = rss.iter().map(|v| median(v)).collect();
    b.rec.section(format!(
        "formats: the 1-hour book in each format, -j{jobs}, medians of {}",
        b.reps
    ));
    for (k, (label, _, _)) in variants.iter().enumerate() {
        let path = if segments[k] > 0 {
            "ranged"
        } else {
            "in order"
        };
        b.rec.row(
            label.to_string(),
            format!(
                "{:.1} s wall ({:.2}× MP3), {:.1} s cpu ({:.2}×), {:.1} MiB, {path}",
                wall[k],
                wall[k] / wall[0],
                cpu[k],
                cpu[k] / cpu[0],
                mem[k]
            ),
            "",
        );
    }
    b.rec.emit(
        "derived",
        json!({
            "section": "formats",
            "variants": variants.iter().enumerate().map(|(k, (l, c, _))| json!({
                "variant": l,
                "corpus": c.name,
                "median_wall_s": wall[k],
                "median_cpu_s": cpu[k],
                "median_max_rss_mib": mem[k],
                "wall_vs_mp3": wall[k] / wall[0],
                "cpu_vs_mp3": cpu[k] / cpu[0],
                "ranged_segments": segments[k],
            })).collect::<Vec<_>>(),
        }),
    );
}
