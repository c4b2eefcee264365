//! The `copy` section (issue 16): a 1-hour book of AAC-LC parts converted with `--audio copy`
//! against `--audio encode`, same binary, same run, medians of the reps; with the final check
//! (which decodes the whole book either way) and without it (`--no-verify`), which is what the
//! copy itself costs. Goal: copying ≥ 100× faster than re-encoding.
//!
//! The parts are the 1-hour MP3 book converted by aiom4b and split into 10 parts (`aiom4b
//! split --parts 10`): AAC-LC 128 kb/s stereo, each with its own chapters.
use crate::corpus::Corpus;
use crate::measure::median;
use crate::report::judge_min;
use crate::{Bench, Tool, BOOK_1H};
use serde_json::json;

/// Issue 16: copying a 1-hour book at least this many times faster than re-encoding it.
const COPY_SPEEDUP_GOAL: f64 = 100.0;

pub fn copy(b: &mut Bench) {
    let mp3 = b.corpus(&BOOK_1H);
    let jobs = b.cores;
    let tool = Tool::Aiom4b { jobs };
    let book = b.convert(tool, &mp3).output;
    let files = b.split_book(&book, 10, "copy-parts");
    let dir = files[0].parent().expect("a folder").to_path_buf();
    let parts = Corpus {
        name: "m4a10parts1h",
        dir: dir.clone(),
        files,
        audio_secs: mp3.audio_secs,
        layout: mp3.layout,
    };
    let variants: [(&str, &[&str]); 4] = [
        ("copy", &["--audio", "copy"]),
        ("encode", &["--audio", "encode"]),
        ("copy --no-verify", &["--audio", "copy", "--no-verify"]),
        ("encode --no-verify", &["--audio", "encode", "--no-verify"]),
    ];
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for rep in 0..b.reps {
        for (k, (label, args)) in variants.iter().enumerate() {
            let c = b.convert_with(tool, &parts, args);
            let copied = c
                .report
                .as_ref()
                .and_then(|r| r["audio"]["copied"].as_bool())
                .unwrap_or(false);
            assert_eq!(
                copied,
                label.starts_with("copy"),
                "{label}: copied {copied}"
            );
            b.record_labeled_run("copy", &parts, label, rep, &c);
            walls[k].push(c.cost.wall_s);
            cpus[k].push(c.cost.cpu_s());
            let _ = std::fs::remove_file(&c.output);
        }
    }
    let wall: Vec<f64> = walls.iter().map(|v| median(v)).collect();
    let cpu: Vec<f64> = cpus.iter().map(|v| median(v)).collect();
    b.rec.section(format!(
        "copy: 10 AAC-LC parts, 1 hour, -j{jobs}, medians of {}",
        b.reps
    ));
    for (k, (label, _)) in variants.iter().enumerate() {
        b.rec.row(
            label.to_string(),
            format!("{:.2} s wall, {:.2} s cpu", wall[k], cpu[k]),
            "",
        );
    }
    let with_check = wall[1] / wall[0];
    let without = wall[3] / wall[2];
    b.rec.row(
        "encode ÷ copy, wall (final check on)",
        format!("{with_check:.1}×"),
        "the check decodes the whole book either way",
    );
    b.rec.row(
        "encode ÷ copy, wall (--no-verify)",
        format!("{without:.1}×"),
        &judge_min(without, COPY_SPEEDUP_GOAL, "≥ 100×"),
    );
    b.rec.emit(
        "derived",
        json!({
            "section": "copy",
            "median_wall_s": variants.iter().zip(&wall).map(|((l, _), w)| json!({"variant": l, "wall_s": w})).collect::<Vec<_>>(),
            "median_cpu_s": variants.iter().zip(&cpu).map(|((l, _), c)| json!({"variant": l, "cpu_s": c})).collect::<Vec<_>>(),
            "speedup_with_check": with_check,
            "speedup_no_verify": without,
            "goal": COPY_SPEEDUP_GOAL,
        }),
    );
}
