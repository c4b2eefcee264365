//! The timing sections: `e2e` (1-hour book, -j1 / -jN / ffmpeg), `small` (per-file overhead),
//! `memory` (peak RSS of 1 hour vs 10 hours) and `probe` (1,000 small files).
use crate::corpus::Corpus;
use crate::measure::{self, median};
use crate::report::{judge_max, judge_min};
use crate::{Bench, Conversion, Tool, BOOK_10H, BOOK_1H, FEW_LARGE, MANY_SMALL, PROBE_1000};
use serde_json::json;
use std::process::Command;

/// Medians of one variant's runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub max_rss_mib: f64,
    pub realtime_factor: f64,
    /// aiom4b's own stage timings (`--json`), medians; 0 for ffmpeg.
    pub convert_s: f64,
    pub verify_s: f64,
    /// Lowest and highest 1-minute load average seen after the runs.
    pub load: (f64, f64),
    /// aiom4b's stage breakdown (`timings.stages` of `--json`), medians; `None` for ffmpeg.
    pub stages: Option<Stages>,
}

/// Medians of aiom4b's stage breakdown (see `aiom4b::StageTimes`): wall seconds for the steps
/// that run alone, thread-seconds summed over the encoder workers for the rest.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stages {
    /// Wall time outside `Converter::convert`: process start, scan, probe, plan, exit.
    pub outside_s: f64,
    pub index_s: f64,
    pub joins_s: f64,
    pub encode_run_s: f64,
    pub startup_s: f64,
    pub decode_s: f64,
    pub lead_in_s: f64,
    pub encode_s: f64,
    pub verify_decode_s: f64,
    pub silence_s: f64,
    pub handoff_s: f64,
    pub worker_cpu_s: f64,
    pub mux_write_s: f64,
    pub mux_wait_s: f64,
    pub mux_cpu_s: f64,
    pub fsync_s: f64,
    pub finalize_s: f64,
    /// The final check (`timings.verify_secs`).
    pub check_s: f64,
}

impl Stages {
    const KEYS: [&'static str; 15] = [
        "index_secs",
        "joins_secs",
        "encode_run_secs",
        "startup_secs",
        "decode_secs",
        "lead_in_secs",
        "encode_secs",
        "verify_decode_secs",
        "silence_secs",
        "handoff_secs",
        "worker_cpu_secs",
        "mux_write_secs",
        "mux_wait_secs",
        "mux_cpu_secs",
        "fsync_secs",
    ];

    /// Medians over `runs`; `None` when the reports carry no breakdown (ffmpeg, older builds).
    fn of(runs: &[Conversion]) -> Option<Stages> {
        let reports: Vec<(&serde_json::Value, f64)> = runs
            .iter()
            .filter_map(|c| Some((c.report.as_ref()?.get("timings")?, c.cost.wall_s)))
            .collect();
        if reports.is_empty() || reports.iter().any(|(t, _)| t.get("stages").is_none()) {
            return None;
        }
        let med = |f: &dyn Fn(&serde_json::Value, f64) -> f64| {
            median(&reports.iter().map(|(t, w)| f(t, *w)).collect::<Vec<_>>())
        };
        let stage = |k: &str| med(&|t, _| t["stages"][k].as_f64().unwrap_or(0.0));
        let v: Vec<f64> = Self::KEYS.iter().map(|k| stage(k)).collect();
        Some(Stages {
            outside_s: med(&|t, w| w - t["total_secs"].as_f64().unwrap_or(0.0)),
            index_s: v[0],
            joins_s: v[1],
            encode_run_s: v[2],
            startup_s: v[3],
            decode_s: v[4],
            lead_in_s: v[5],
            encode_s: v[6],
            verify_decode_s: v[7],
            silence_s: v[8],
            handoff_s: v[9],
            worker_cpu_s: v[10],
            mux_write_s: v[11],
            mux_wait_s: v[12],
            mux_cpu_s: v[13],
            fsync_s: v[14],
            finalize_s: med(&|t, _| t["finalize_secs"].as_f64().unwrap_or(0.0)),
            check_s: med(&|t, _| t["verify_secs"].as_f64().unwrap_or(0.0)),
        })
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "outside_convert_s": self.outside_s,
            "index_s": self.index_s,
            "joins_s": self.joins_s,
            "encode_run_s": self.encode_run_s,
            "workers_startup_s": self.startup_s,
            "workers_decode_s": self.decode_s,
            "workers_lead_in_s": self.lead_in_s,
            "workers_encode_s": self.encode_s,
            "workers_verify_decode_s": self.verify_decode_s,
            "workers_silence_s": self.silence_s,
            "workers_handoff_s": self.handoff_s,
            "workers_cpu_s": self.worker_cpu_s,
            "mux_write_s": self.mux_write_s,
            "mux_wait_s": self.mux_wait_s,
            "mux_cpu_s": self.mux_cpu_s,
            "workers_cpu_split_est_s": {
                "decode": self.worker_cpu_split()[0],
                "lead_in": self.worker_cpu_split()[1],
                "encode": self.worker_cpu_split()[2],
                "verify_decode": self.worker_cpu_split()[3],
            },
            "fsync_s": self.fsync_s,
            "finalize_s": self.finalize_s,
            "final_check_s": self.check_s,
        })
    }

    /// The workers' thread-seconds in proportion to their CPU time: an estimate of each
    /// stage's CPU that holds on a contended machine, where the thread-seconds include time
    /// spent preempted. (decode, lead-in, encode, verify-decode)
    fn worker_cpu_split(&self) -> [f64; 4] {
        let busy = self.decode_s
            + self.lead_in_s
            + self.encode_s
            + self.verify_decode_s
            + self.startup_s
            + self.silence_s;
        let k = if busy > 0.0 {
            self.worker_cpu_s / busy
        } else {
            0.0
        };
        [
            self.decode_s * k,
            self.lead_in_s * k,
            self.encode_s * k,
            self.verify_decode_s * k,
        ]
    }

    /// The breakdown as three table cells: the wall-clock steps in order, the workers'
    /// thread-seconds, and the workers' CPU split by them.
    fn cells(&self) -> (String, String, String) {
        let [d, l, e, v] = self.worker_cpu_split();
        (
            format!(
                "outside convert (scan/probe/plan) {:.2} | index {:.2} | joins {:.2} | encode run {:.2} \
                 | finalize {:.2} (fsync {:.2}) | final check {:.2}",
                self.outside_s,
                self.index_s,
                self.joins_s,
                self.encode_run_s,
                self.finalize_s,
                self.fsync_s,
                self.check_s
            ),
            format!(
                "decode {:.2}, lead-in {:.2}, encode {:.2}, verify-decode {:.2}, start-up {:.2}, \
                 hand-off/wait {:.2}, silence {:.2}; cpu {:.2} | mux write {:.2}, wait {:.2}, cpu {:.2}",
                self.decode_s,
                self.lead_in_s,
                self.encode_s,
                self.verify_decode_s,
                self.startup_s,
                self.handoff_s,
                self.silence_s,
                self.worker_cpu_s,
                self.mux_write_s,
                self.mux_wait_s,
                self.mux_cpu_s
            ),
            format!(
                "decode {d:.2}, lead-in {l:.2}, encode {e:.2}, verify-decode {v:.2} (of {:.2} CPU-s)",
                self.worker_cpu_s
            ),
        )
    }
}

/// Runs every `(corpus, tool)` pair `reps` times, interleaved: rep 0 of all pairs, then rep 1
/// of all pairs, … so that a noisy minute on the shared machine hurts every variant alike.
/// Returns the summaries in the order of `pairs`.
fn interleaved(b: &mut Bench, section: &str, pairs: &[(&Corpus, Tool)]) -> Vec<Summary> {
    let mut runs: Vec<Vec<Conversion>> = pairs.iter().map(|_| Vec::new()).collect();
    for rep in 0..b.reps {
        for (k, (corpus, tool)) in pairs.iter().enumerate() {
            let c = b.convert(*tool, corpus);
            b.record_run(section, corpus, *tool, rep, &c);
            let _ = std::fs::remove_file(&c.output);
            runs[k].push(c);
        }
    }
    pairs
        .iter()
        .zip(&runs)
        .map(|((corpus, tool), runs)| summarize(b, section, corpus, *tool, runs))
        .collect()
}

fn summarize(
    b: &mut Bench,
    section: &str,
    corpus: &Corpus,
    tool: Tool,
    runs: &[Conversion],
) -> Summary {
    let med = |f: &dyn Fn(&Conversion) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let timing = |c: &Conversion, key: &str| {
        c.report
            .as_ref()
            .and_then(|r| r["timings"][key].as_f64())
            .unwrap_or(0.0)
    };
    let wall_s = med(&|c| c.cost.wall_s);
    let s = Summary {
        wall_s,
        cpu_s: med(&|c| c.cost.cpu_s()),
        max_rss_mib: med(&|c| c.cost.max_rss_mib),
        realtime_factor: corpus.audio_secs / wall_s,
        convert_s: med(&|c| timing(c, "convert_secs")),
        verify_s: med(&|c| timing(c, "verify_secs")),
        load: runs.iter().fold((f64::MAX, f64::MIN), |(lo, hi), c| {
            (lo.min(c.loadavg_1m), hi.max(c.loadavg_1m))
        }),
        stages: Stages::of(runs),
    };
    b.rec.emit(
        "summary",
        json!({
            "section": section,
            "corpus": corpus.name,
            "files": corpus.files.len(),
            "audio_s": corpus.audio_secs,
            "variant": tool.label(),
            "reps": runs.len(),
            "median_wall_s": s.wall_s,
            "median_cpu_s": s.cpu_s,
            "median_max_rss_mib": s.max_rss_mib,
            "realtime_factor": s.realtime_factor,
            "median_convert_s": s.convert_s,
            "median_verify_s": s.verify_s,
            "walls_s": runs.iter().map(|c| c.cost.wall_s).collect::<Vec<_>>(),
            "loadavg_1m_min_max": [s.load.0, s.load.1],
            "median_stages": s.stages.map(|st| st.json()),
        }),
    );
    s
}

/// Table rows with a variant's stage breakdown, when it has one.
fn stage_rows(b: &mut Bench, label: &str, s: &Summary) {
    if let Some(st) = s.stages {
        let (wall, workers, cpu) = st.cells();
        b.rec.row(format!("{label}: stages, wall s"), wall, "");
        b.rec
            .row(format!("{label}: workers' thread-s"), workers, "");
        b.rec.row(
            format!("{label}: workers' CPU-s (est.)"),
            cpu,
            "thread-s scaled to the workers' CPU",
        );
    }
}

fn cost_cell(s: &Summary) -> String {
    format!(
        "{:.1} s wall, {:.1} s cpu, {:.0} MiB, {:.0}× rt, load {:.1}–{:.1}",
        s.wall_s, s.cpu_s, s.max_rss_mib, s.realtime_factor, s.load.0, s.load.1
    )
}

/// The 1-hour book at -j1, -jN (and -j2 when N > 2) and through the ffmpeg CLI.
pub fn e2e(b: &mut Bench) {
    let book = b.corpus(&BOOK_1H);
    let n = b.cores;
    // AIOM4B_BENCH_J1=0 leaves out the single-thread run (the longest after ffmpeg's) when only
    // the multi-core figures are wanted; its ratios are then left out too.
    let with_j1 = n == 1 || std::env::var("AIOM4B_BENCH_J1").map_or(true, |v| v != "0");
    let mut tools = Vec::new();
    if with_j1 {
        tools.push(Tool::Aiom4b { jobs: 1 });
    }
    if n > 1 {
        tools.push(Tool::Aiom4b { jobs: n });
    }
    if n > 2 {
        tools.push(Tool::Aiom4b { jobs: 2 });
    }
    if b.fdk {
        tools.push(Tool::Fdk { jobs: n });
        tools.push(Tool::FdkFast { jobs: n });
    }
    if b.ffmpeg.is_some() {
        tools.push(Tool::Ffmpeg);
    }
    let pairs: Vec<(&Corpus, Tool)> = tools.iter().map(|t| (&book, *t)).collect();
    let sums = interleaved(b, "e2e", &pairs);
    let get = |t: Tool| tools.iter().position(|x| *x == t).map(|i| sums[i]);

    b.rec.section(format!(
        "e2e: {} files, {:.0} min, 44.1 kHz stereo 128k CBR; medians of {} (verification on)",
        book.files.len(),
        book.audio_secs / 60.0,
        b.reps
    ));
    for (t, s) in tools.iter().zip(&sums) {
        b.rec.row(t.label(), cost_cell(s), "");
    }
    for (t, s) in tools.iter().zip(&sums) {
        stage_rows(b, &t.label(), s);
    }
    let jn = get(Tool::Aiom4b { jobs: n }).expect("always run");
    let j1 = get(Tool::Aiom4b { jobs: 1 });
    let fdk = get(Tool::Fdk { jobs: n });
    let fdk_fast = get(Tool::FdkFast { jobs: n });
    let ff = get(Tool::Ffmpeg);
    let mut summary = json!({
        "section": "e2e",
        "corpus": book.name,
        "cores": n,
        "jn_convert_s": jn.convert_s,
        "jn_verify_s": jn.verify_s,
        "jn_cpu_s": jn.cpu_s,
    });
    if let Some(j1) = j1 {
        summary["j1_convert_s"] = j1.convert_s.into();
        summary["j1_verify_s"] = j1.verify_s.into();
    }
    if let Some(f) = fdk {
        summary["fdk_wall_s"] = f.wall_s.into();
        summary["fdk_cpu_s"] = f.cpu_s.into();
        summary["fdk_convert_s"] = f.convert_s.into();
        summary["fdk_verify_s"] = f.verify_s.into();
    }
    if let Some(ff) = ff {
        summary["ffmpeg_wall_s"] = ff.wall_s.into();
        summary["ffmpeg_cpu_s"] = ff.cpu_s.into();
        // One variant against ffmpeg: the wall ratio, and what it would be with every core to
        // itself — aiom4b's CPU spread perfectly over N cores against ffmpeg's CPU (its
        // pipeline is one thread, so wall ≈ CPU when idle). On a contended machine this
        // separates the program's own limits from the load.
        let mut against_ffmpeg = |r: Summary, key: &str, label: &str, bar: f64, bar_text: &str| {
            let ratio = r.wall_s / ff.wall_s;
            let idle = r.cpu_s / n as f64 / ff.cpu_s;
            summary[format!("ratio_{key}_to_ffmpeg")] = ratio.into();
            summary[format!("ratio_{key}_to_ffmpeg_cpu_bound")] = idle.into();
            b.rec.row(
                format!("wall aiom4b -j{n}{label} ÷ ffmpeg"),
                format!("{ratio:.3}"),
                &judge_max(ratio, bar, bar_text),
            );
            b.rec.row(
                format!("cpu-bound ratio: cpu -j{n}{label} ÷ {n} ÷ cpu ffmpeg"),
                format!("{idle:.3}"),
                "best case on an idle machine",
            );
        };
        against_ffmpeg(jn, "jn", "", 0.50, "≤ 0.50");
        if let Some(f) = fdk {
            against_ffmpeg(f, "fdk", " fdk", 0.10, "≤ 0.10");
        }
        if let Some(f) = fdk_fast {
            against_ffmpeg(
                f,
                "fdk_no_afterburner",
                " fdk, no afterburner",
                0.10,
                "≤ 0.10",
            );
            summary["fdk_no_afterburner_wall_s"] = f.wall_s.into();
            summary["fdk_no_afterburner_cpu_s"] = f.cpu_s.into();
        }
        if let Some(j1) = j1 {
            summary["ratio_j1_to_ffmpeg"] = (j1.wall_s / ff.wall_s).into();
            summary["cpu_ratio_j1_to_ffmpeg"] = (j1.cpu_s / ff.cpu_s).into();
            b.rec.row(
                "wall aiom4b -j1 ÷ ffmpeg",
                format!("{:.3}", j1.wall_s / ff.wall_s),
                "",
            );
            b.rec.row(
                "cpu aiom4b -j1 ÷ ffmpeg (same work?)",
                format!("{:.3}", j1.cpu_s / ff.cpu_s),
                "",
            );
        }
    }
    if let (true, Some(j1)) = (n > 1, j1) {
        let speedup = j1.wall_s / jn.wall_s;
        let eff = speedup / n as f64;
        summary["speedup_jn_vs_j1"] = speedup.into();
        summary["parallel_efficiency"] = eff.into();
        summary["cpu_ratio_jn_to_j1"] = (jn.cpu_s / j1.cpu_s).into();
        b.rec.row(
            format!("speedup -j{n} vs -j1"),
            format!("{speedup:.2}×"),
            "",
        );
        b.rec.row(
            "parallel efficiency",
            format!("{:.0} %", eff * 100.0),
            &judge_min(eff, 0.9, "≥ 90 %"),
        );
        b.rec.row(
            format!("cpu -j{n} ÷ cpu -j1 (segmenting overhead)"),
            format!("{:.3}", jn.cpu_s / j1.cpu_s),
            "",
        );
        if n > 2 {
            if let Some(j2) = get(Tool::Aiom4b { jobs: 2 }) {
                let eff2 = j1.wall_s / j2.wall_s / 2.0;
                summary["parallel_efficiency_j2"] = eff2.into();
                b.rec.row(
                    "parallel efficiency -j2",
                    format!("{:.0} %", eff2 * 100.0),
                    "",
                );
            }
        }
    }
    b.rec.row(
        format!("-j{n}: convert / verify stage (aiom4b --json)"),
        format!("{:.1} s / {:.1} s", jn.convert_s, jn.verify_s),
        "",
    );
    b.rec.emit("derived", summary);
}

/// Two builds of aiom4b on the 1-hour book, interleaved with ffmpeg: the bench's binary (the
/// default build, system FFmpeg) and AIOM4B_BENCH_OTHER_BIN (e.g. the self-contained build with
/// its static FFmpeg 7.1), at -jN. Ratios of medians from the same run.
pub fn builds(b: &mut Bench) {
    let Some(other) = b.other_bin.clone() else {
        panic!("the builds section compares two binaries: set AIOM4B_BENCH_OTHER_BIN");
    };
    let book = b.corpus(&BOOK_1H);
    let n = b.cores;
    let mut tools = vec![Tool::Aiom4b { jobs: n }, Tool::Other { jobs: n }];
    if b.ffmpeg.is_some() {
        tools.push(Tool::Ffmpeg);
    }
    let pairs: Vec<(&Corpus, Tool)> = tools.iter().map(|t| (&book, *t)).collect();
    let sums = interleaved(b, "builds", &pairs);
    let version = |bin: &std::path::Path| {
        crate::report::output(Command::new(bin).arg("--version"))
            .and_then(|v| {
                v.lines()
                    .find(|l| l.starts_with("FFmpeg: "))
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    };
    b.rec.section(format!(
        "builds: the 1-hour book at -j{n}, medians of {}: {} against {}",
        b.reps,
        version(&b.bin),
        version(&other)
    ));
    for (t, s) in tools.iter().zip(&sums) {
        b.rec.row(t.label(), cost_cell(s), "");
    }
    let (a, o) = (sums[0], sums[1]);
    let wall = o.wall_s / a.wall_s;
    let cpu = o.cpu_s / a.cpu_s;
    let rss = o.max_rss_mib / a.max_rss_mib;
    b.rec.row(
        "wall other ÷ default",
        format!("{wall:.3}"),
        &judge_max(wall, 1.05, "≤ 1.05"),
    );
    b.rec.row("cpu other ÷ default", format!("{cpu:.3}"), "");
    b.rec
        .row("peak RSS other ÷ default", format!("{rss:.3}"), "");
    let mut summary = json!({
        "section": "builds",
        "corpus": book.name,
        "cores": n,
        "other_bin": other,
        "wall_ratio_other_to_default": wall,
        "cpu_ratio_other_to_default": cpu,
        "rss_ratio_other_to_default": rss,
    });
    if let Some(ff) = sums.get(2) {
        summary["wall_ratio_default_to_ffmpeg"] = (a.wall_s / ff.wall_s).into();
        summary["wall_ratio_other_to_ffmpeg"] = (o.wall_s / ff.wall_s).into();
        b.rec.row(
            "wall default ÷ ffmpeg",
            format!("{:.3}", a.wall_s / ff.wall_s),
            "",
        );
        b.rec.row(
            "wall other ÷ ffmpeg",
            format!("{:.3}", o.wall_s / ff.wall_s),
            "",
        );
    }
    b.rec.emit("derived", summary);
}

/// 500 × 2 s against 10 × 100 s: the same audio, so any difference is per-file overhead.
pub fn small(b: &mut Bench) {
    let many = b.corpus(&MANY_SMALL);
    let few = b.corpus(&FEW_LARGE);
    let n = b.cores;
    let pairs = [
        (&many, Tool::Aiom4b { jobs: n }),
        (&few, Tool::Aiom4b { jobs: n }),
    ];
    let sums = interleaved(b, "small", &pairs);
    let (s, l) = (sums[0], sums[1]);
    let ratio = s.realtime_factor / l.realtime_factor;
    let extra_files = (many.files.len() - few.files.len()) as f64;
    let per_file_ms = (s.wall_s - l.wall_s) / extra_files * 1000.0;
    // CPU per file is less disturbed by other load than wall time.
    let per_file_cpu_ms = (s.cpu_s - l.cpu_s) / extra_files * 1000.0;
    b.rec.section(format!(
        "small: per-file overhead at -j{n}, medians of {}",
        b.reps
    ));
    b.rec.row(
        format!("{} files × 2 s", many.files.len()),
        cost_cell(&s),
        "",
    );
    b.rec.row(
        format!("{} files × 100 s", few.files.len()),
        cost_cell(&l),
        "",
    );
    b.rec.row(
        "realtime factor small ÷ large",
        format!("{ratio:.3}"),
        &judge_min(ratio, 0.9, "nearly the same (≥ 0.90)"),
    );
    b.rec.row(
        "extra wall / cpu per additional file",
        format!("{per_file_ms:.1} ms / {per_file_cpu_ms:.1} ms"),
        "",
    );
    b.rec.emit(
        "derived",
        json!({
            "section": "small",
            "rtf_small_to_large": ratio,
            "extra_wall_ms_per_file": per_file_ms,
            "extra_cpu_ms_per_file": per_file_cpu_ms,
            "convert_s_small": s.convert_s,
            "convert_s_large": l.convert_s,
            "verify_s_small": s.verify_s,
            "verify_s_large": l.verify_s,
        }),
    );
}

/// Peak RSS of the 1-hour and the 10-hour book at -jN, one run each: RSS hardly varies.
///
/// Both run with `--aac-coder fast`: peak RSS does not depend on the coder (the coders share
/// the encoder's buffers; 108.2 vs 108.4 MiB measured on the 10-minute book at -j2), and the
/// fast coder cuts the 10-hour run — otherwise the longest thing in the suite by far — to about
/// a quarter. The 1-hour figure at the default coder is in the `e2e` section.
pub fn memory(b: &mut Bench) {
    let short = b.corpus(&BOOK_1H);
    let long = b.corpus(&BOOK_10H);
    let n = b.cores;
    let tool = Tool::Aiom4b { jobs: n };
    let mut sums = Vec::new();
    let mut packets = Vec::new();
    for corpus in [&short, &long] {
        let c = b.convert_with(tool, corpus, &["--aac-coder", "fast"]);
        b.record_run("memory", corpus, tool, 0, &c);
        let _ = std::fs::remove_file(&c.output);
        packets.push(
            c.report
                .as_ref()
                .and_then(|r| r["packets"].as_u64())
                .unwrap_or(0),
        );
        sums.push(summarize(b, "memory", corpus, tool, &[c]));
    }
    let (s, l) = (sums[0], sums[1]);
    let growth = l.max_rss_mib / s.max_rss_mib;
    // What each additional AAC packet costs in peak memory: FFmpeg's mov muxer keeps one index
    // entry per packet (`MOVIentry`, 64 bytes in libavformat 59) until it writes `moov` at the
    // end, so anything near that figure is the muxer's sample table.
    let extra_packets = packets[1].saturating_sub(packets[0]).max(1) as f64;
    let bytes_per_packet = (l.max_rss_mib - s.max_rss_mib) * 1_048_576.0 / extra_packets;
    b.rec.section(format!(
        "memory: peak RSS at -j{n} --aac-coder fast, one run each"
    ));
    b.rec.row(
        format!("1 h ({} files)", short.files.len()),
        cost_cell(&s),
        &judge_max(s.max_rss_mib, 200.0, "< 200 MiB"),
    );
    b.rec.row(
        format!("10 h ({} × 30 min, hard links)", long.files.len()),
        cost_cell(&l),
        &judge_max(l.max_rss_mib, 200.0, "< 200 MiB"),
    );
    b.rec.row(
        "peak RSS 10 h ÷ 1 h",
        format!("{growth:.2}"),
        &judge_max(growth, 1.25, "about the same (≤ 1.25)"),
    );
    b.rec.row(
        "growth per extra AAC packet",
        format!("{bytes_per_packet:.0} B"),
        "FFmpeg movenc index entry: 64 B",
    );
    b.rec.emit(
        "derived",
        json!({
            "section": "memory",
            "aiom4b_extra_args": "--aac-coder fast",
            "rss_1h_mib": s.max_rss_mib,
            "rss_10h_mib": l.max_rss_mib,
            "rss_ratio_10h_to_1h": growth,
            "packets_1h": packets[0],
            "packets_10h": packets[1],
            "rss_growth_bytes_per_packet": bytes_per_packet,
            "verify_s_10h": l.verify_s,
        }),
    );
}

/// `aiom4b probe` of 1,000 small files (scan, validation and parallel probing; the page cache
/// is warm after one untimed run).
pub fn probe(b: &mut Bench) {
    let corpus = b.corpus(&PROBE_1000);
    let log = b.work.join("probe.stderr");
    let run = |b: &Bench| {
        let mut cmd = Command::new(&b.bin);
        cmd.arg("probe").arg(&corpus.dir).arg("--json");
        measure::run(&mut cmd, &log)
    };
    let warm = run(b);
    let doc: serde_json::Value =
        serde_json::from_slice(&warm.stdout).expect("aiom4b probe --json printed JSON");
    let tracks = doc["book"]["tracks"].as_array().map_or(0, |t| t.len());
    assert_eq!(
        tracks,
        corpus.files.len(),
        "probe planned a book of every file"
    );
    let mut costs = Vec::new();
    for rep in 0..b.reps {
        let c = run(b).cost;
        eprintln!(
            "  probe {} files rep {rep}: {:.3} s wall, {:.3} s cpu, {:.0} MiB",
            tracks,
            c.wall_s,
            c.cpu_s(),
            c.max_rss_mib
        );
        b.rec.emit(
            "run",
            json!({
                "section": "probe",
                "corpus": corpus.name,
                "files": tracks,
                "variant": "aiom4b probe",
                "rep": rep,
                "wall_s": c.wall_s,
                "cpu_s": c.cpu_s(),
                "user_s": c.user_s,
                "sys_s": c.sys_s,
                "max_rss_mib": c.max_rss_mib,
                "loadavg_1m": crate::loadavg(),
            }),
        );
        costs.push(c);
    }
    let wall = median(&costs.iter().map(|c| c.wall_s).collect::<Vec<_>>());
    let cpu = median(&costs.iter().map(|c| c.cpu_s()).collect::<Vec<_>>());
    let rss = median(&costs.iter().map(|c| c.max_rss_mib).collect::<Vec<_>>());
    b.rec.emit(
        "summary",
        json!({
            "section": "probe",
            "corpus": corpus.name,
            "files": tracks,
            "variant": "aiom4b probe",
            "reps": costs.len(),
            "median_wall_s": wall,
            "median_cpu_s": cpu,
            "median_max_rss_mib": rss,
            "files_per_s": tracks as f64 / wall,
        }),
    );
    b.rec.section(format!(
        "probe: {tracks} files × 2 s, warm cache, medians of {}",
        b.reps
    ));
    b.rec.row(
        "aiom4b probe",
        format!(
            "{wall:.3} s wall, {cpu:.3} s cpu, {rss:.0} MiB, {:.0} files/s",
            tracks as f64 / wall
        ),
        &judge_max(wall, 1.0, "well under 1–2 s (≤ 1 s)"),
    );
}

/// The finished-book commands on the 1-hour book (converted once, untimed), each beside a
/// baseline from the same run: `chapters detect` (one decode) against the ffmpeg CLI decoding
/// the same file to nothing; `verify` (one decode); `edit` (the first edit of a converted book
/// rewrites it, the second is in place) and `split --parts 2` against `verify`, since each
/// ends with the independent check of what it wrote, beside a plain copy of the file (`cp`,
/// the I/O floor of anything that rewrites it); and a conversion with
/// `--chapters silence` and one with `--split-at 30m` against one with chapters per file
/// (detection on the decode the conversion does anyway; parts copied from the verified book).
pub fn finished(b: &mut Bench) {
    let corpus = b.corpus(&BOOK_1H);
    let jobs = b.cores;
    let book = b.convert(Tool::Aiom4b { jobs }, &corpus).output;
    let log = b.work.join("finished.stderr");
    let copy = b.work.join("finished-copy.m4b");
    let parts = b.work.join("finished-parts");
    let fresh_copy = || {
        let _ = std::fs::remove_file(&copy);
        std::fs::copy(&book, &copy).expect("copying the converted book");
    };
    type Step<'a> = (&'a str, Box<dyn Fn(&Bench) -> Command + 'a>);
    let mut steps: Vec<Step> = Vec::new();
    if let Some(ffmpeg) = b.ffmpeg.clone() {
        let book = book.clone();
        steps.push((
            "ffmpeg decode",
            Box::new(move |_| {
                let mut c = Command::new(&ffmpeg);
                c.args(["-v", "error", "-i"])
                    .arg(&book)
                    .args(["-f", "null", "-"]);
                c
            }),
        ));
    }
    let aiom4b = |args: Vec<std::ffi::OsString>| -> Box<dyn Fn(&Bench) -> Command> {
        Box::new(move |b: &Bench| {
            let mut c = Command::new(&b.bin);
            c.args(&args);
            c
        })
    };
    steps.push((
        "chapters detect",
        aiom4b(vec![
            "chapters".into(),
            "detect".into(),
            book.clone().into(),
        ]),
    ));
    steps.push(("verify", aiom4b(vec!["verify".into(), book.clone().into()])));
    steps.push((
        "cp (copy floor)",
        Box::new({
            let (book, copy) = (book.clone(), copy.clone());
            move |_| {
                let _ = std::fs::remove_file(&copy);
                let mut c = Command::new("cp");
                c.arg(&book).arg(&copy);
                c
            }
        }),
    ));
    steps.push((
        "edit (rewrite)",
        aiom4b(vec![
            "edit".into(),
            copy.clone().into(),
            "--comment".into(),
            "one".into(),
        ]),
    ));
    steps.push((
        "edit (in place)",
        aiom4b(vec![
            "edit".into(),
            copy.clone().into(),
            "--comment".into(),
            "two".into(),
        ]),
    ));
    steps.push((
        "split --parts 2",
        aiom4b(vec![
            "split".into(),
            copy.clone().into(),
            "--parts".into(),
            "2".into(),
            "--out".into(),
            parts.clone().into(),
        ]),
    ));
    let mut costs: Vec<Vec<RunCostLite>> = steps.iter().map(|_| Vec::new()).collect();
    for rep in 0..b.reps {
        fresh_copy();
        let _ = std::fs::remove_dir_all(&parts);
        std::fs::create_dir_all(&parts).expect("creating the parts folder");
        for (k, (label, make)) in steps.iter().enumerate() {
            let c = measure::run(&mut make(b), &log).cost;
            eprintln!(
                "  {label} rep {rep}: {:.2} s wall, {:.2} s cpu",
                c.wall_s,
                c.cpu_s()
            );
            b.rec.emit(
                "run",
                json!({
                    "section": "finished",
                    "corpus": corpus.name,
                    "variant": label,
                    "rep": rep,
                    "wall_s": c.wall_s,
                    "cpu_s": c.cpu_s(),
                    "max_rss_mib": c.max_rss_mib,
                    "loadavg_1m": crate::loadavg(),
                }),
            );
            costs[k].push(RunCostLite {
                wall_s: c.wall_s,
                cpu_s: c.cpu_s(),
                rss: c.max_rss_mib,
            });
        }
    }
    let med: Vec<RunCostLite> = costs
        .iter()
        .map(|v| RunCostLite {
            wall_s: median(&v.iter().map(|c| c.wall_s).collect::<Vec<_>>()),
            cpu_s: median(&v.iter().map(|c| c.cpu_s).collect::<Vec<_>>()),
            rss: median(&v.iter().map(|c| c.rss).collect::<Vec<_>>()),
        })
        .collect();
    let of = |label: &str| steps.iter().position(|(l, _)| *l == label).map(|k| med[k]);
    b.rec.section(format!(
        "finished books: the 1-hour book ({:.0} s of audio), medians of {}",
        corpus.audio_secs, b.reps
    ));
    for (k, (label, _)) in steps.iter().enumerate() {
        let m = med[k];
        let baseline = match *label {
            "chapters detect" | "verify" => of("ffmpeg decode").map(|f| ("ffmpeg decode", f)),
            // Both end with the independent check of what they wrote (one decode of the book),
            // which is most of their time: `verify` is their floor; `cp` is printed beside.
            "edit (rewrite)" | "edit (in place)" | "split --parts 2" => {
                of("verify").map(|f| ("verify", f))
            }
            _ => None,
        };
        let ratio = baseline
            .map(|(name, f)| format!(", {:.2}× {name}", m.wall_s / f.wall_s))
            .unwrap_or_default();
        b.rec.row(
            *label,
            format!(
                "{:.2} s wall, {:.2} s cpu, {:.0} MiB, {:.0}× realtime{ratio}",
                m.wall_s,
                m.cpu_s,
                m.rss,
                corpus.audio_secs / m.wall_s
            ),
            "",
        );
        b.rec.emit(
            "summary",
            json!({
                "section": "finished",
                "corpus": corpus.name,
                "audio_s": corpus.audio_secs,
                "variant": label,
                "reps": b.reps,
                "median_wall_s": m.wall_s,
                "median_cpu_s": m.cpu_s,
                "median_max_rss_mib": m.rss,
                "baseline": baseline.map(|(n, _)| n),
                "ratio_to_baseline": baseline.map(|(_, f)| m.wall_s / f.wall_s),
            }),
        );
    }
    // Chapters from silence, and parts, during a conversion: the same conversion, interleaved.
    // `--split-at 30m` makes two parts of the hour: packet copies of the verified book, each
    // verified again, instead of one rename.
    let variants: [(&str, &[&str]); 3] = [
        ("convert (per-file chapters)", &[]),
        ("convert --chapters silence", &["--chapters", "silence"]),
        ("convert --split-at 30m", &["--split-at", "30m"]),
    ];
    let mut walls = vec![Vec::new(); variants.len()];
    let mut cpus = vec![Vec::new(); variants.len()];
    for _ in 0..b.reps {
        for (k, (_, extra)) in variants.iter().enumerate() {
            let c = b.convert_with(Tool::Aiom4b { jobs }, &corpus, extra);
            remove_with_parts(&c.output);
            walls[k].push(c.cost.wall_s);
            cpus[k].push(c.cost.cpu_s());
        }
    }
    let (w0, c0) = (median(&walls[0]), median(&cpus[0]));
    for (k, (label, _)) in variants.iter().enumerate().skip(1) {
        let (w1, c1) = (median(&walls[k]), median(&cpus[k]));
        b.rec.row(
            *label,
            format!(
                "{w1:.1} s wall, {c1:.1} s cpu; per-file chapters {w0:.1} s wall, {c0:.1} s cpu: {:.3}× wall, {:.3}× cpu",
                w1 / w0,
                c1 / c0
            ),
            "",
        );
        b.rec.emit(
            "summary",
            json!({
                "section": "finished",
                "corpus": corpus.name,
                "variant": label,
                "reps": b.reps,
                "median_wall_s": w1,
                "median_cpu_s": c1,
                "baseline": variants[0].0,
                "baseline_wall_s": w0,
                "baseline_cpu_s": c0,
                "ratio_to_baseline": w1 / w0,
                "cpu_ratio_to_baseline": c1 / c0,
            }),
        );
    }
    let _ = std::fs::remove_file(&copy);
    let _ = std::fs::remove_dir_all(&parts);
    let _ = std::fs::remove_file(&book);
}

/// Removes a conversion's output, or the parts `--split-at` wrote in its place
/// (`{stem} - Part k of n.m4b` beside it).
fn remove_with_parts(output: &std::path::Path) {
    let _ = std::fs::remove_file(output);
    let (Some(dir), Some(stem)) = (output.parent(), output.file_stem()) else {
        return;
    };
    let prefix = format!("{} - Part ", stem.to_string_lossy());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Medians of one step of [`finished`].
#[derive(Debug, Clone, Copy)]
struct RunCostLite {
    wall_s: f64,
    cpu_s: f64,
    rss: f64,
}
