//! End-to-end benchmark of the `aiom4b` binary against the `ffmpeg` CLI (see benches/README.md).
//!
//! `cargo bench` builds the release (`bench` profile) binary and this program, which generates
//! a deterministic corpus once (cached in `target/bench-corpus/`), runs the sections chosen by
//! `AIOM4B_BENCH` (default all: `e2e,small,memory,probe,splice,finished`) with `AIOM4B_BENCH_REPS`
//! repetitions (default 3), prints a table and JSON lines, and appends the lines to
//! `benches/results/`. Runs of different variants are interleaved (A B C A B C) so that the
//! noise of a shared machine hits all alike; figures are medians, and comparisons are ratios
//! of medians from the same run. Nothing here asserts a timing: targets are reported.
mod copy;
mod corpus;
mod formats;
mod measure;
mod memory_long;
mod report;
mod sections;
mod splice;

use corpus::{Corpus, CorpusSpec, Layout};
use measure::RunCost;
use report::Recorder;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The sections in their run order.
const SECTIONS: [&str; 10] = [
    "e2e",
    "small",
    "memory",
    "probe",
    "splice",
    "finished",
    "copy",
    "formats",
    "builds",
    // Not by default: a 30-hour point takes half an hour (see memory_long.rs).
    "memory-long",
];
/// What runs without AIOM4B_BENCH: `builds` needs a second binary (AIOM4B_BENCH_OTHER_BIN);
/// `formats` takes about 15 minutes (five 1-hour conversions, three times).
const DEFAULT_SECTIONS: [&str; 7] = [
    "e2e", "small", "memory", "probe", "splice", "finished", "copy",
];

/// The 1-hour book of the issues: 20 chapters of 3 minutes.
pub const BOOK_1H: CorpusSpec = CorpusSpec {
    name: "book1h",
    layout: Layout::Book {
        files: 20,
        secs_each: 180.0,
    },
};
/// Per-file overhead: the same 1,000 s as many small files and as few large ones.
pub const MANY_SMALL: CorpusSpec = CorpusSpec {
    name: "small500x2s",
    layout: Layout::Book {
        files: 500,
        secs_each: 2.0,
    },
};
pub const FEW_LARGE: CorpusSpec = CorpusSpec {
    name: "large10x100s",
    layout: Layout::Book {
        files: 10,
        secs_each: 100.0,
    },
};
/// Memory over book length: 10 hours as one 30-minute file under 20 names.
pub const BOOK_10H: CorpusSpec = CorpusSpec {
    name: "book10h",
    layout: Layout::Linked {
        secs: 1800.0,
        copies: 20,
    },
};
/// Probe speed: 1,000 small files.
pub const PROBE_1000: CorpusSpec = CorpusSpec {
    name: "probe1000x2s",
    layout: Layout::Book {
        files: 1000,
        secs_each: 2.0,
    },
};
/// Splice quality and exactness: 10 minutes in 20 files, so that it has as many file joins as
/// the 1-hour book while three full decodings (source, -j1, -jN) fit in ~650 MB.
pub const SPLICE_10M: CorpusSpec = CorpusSpec {
    name: "splice20x30s",
    layout: Layout::Book {
        files: 20,
        secs_each: 30.0,
    },
};

/// Logical CPUs available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// What is being run on a corpus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tool {
    /// aiom4b with FFmpeg's native AAC encoder (`--encoder native`: a build with the `fdk-aac`
    /// feature would otherwise use FDK).
    Aiom4b {
        jobs: usize,
    },
    /// aiom4b with the Fraunhofer FDK encoder (`--encoder fdk`), when the binary has it.
    Fdk {
        jobs: usize,
    },
    /// FDK with its afterburner off (`AIOM4B_FDK_AFTERBURNER=0`): what the quality stage costs.
    FdkFast {
        jobs: usize,
    },
    /// The second binary of the `builds` section (AIOM4B_BENCH_OTHER_BIN), e.g. the static build.
    Other {
        jobs: usize,
    },
    Ffmpeg,
}

impl Tool {
    pub fn label(&self) -> String {
        match self {
            Tool::Aiom4b { jobs } => format!("aiom4b -j{jobs}"),
            Tool::Fdk { jobs } => format!("aiom4b -j{jobs} fdk"),
            Tool::FdkFast { jobs } => format!("aiom4b -j{jobs} fdk, no afterburner"),
            Tool::Other { jobs } => format!("other aiom4b -j{jobs}"),
            Tool::Ffmpeg => "ffmpeg".into(),
        }
    }
    fn slug(&self) -> String {
        match self {
            Tool::Aiom4b { jobs } => format!("j{jobs}"),
            Tool::Fdk { jobs } => format!("j{jobs}-fdk"),
            Tool::FdkFast { jobs } => format!("j{jobs}-fdk-fast"),
            Tool::Other { jobs } => format!("other-j{jobs}"),
            Tool::Ffmpeg => "ffmpeg".into(),
        }
    }
}

/// One conversion's measurement.
pub struct Conversion {
    pub cost: RunCost,
    /// `aiom4b convert --json`'s report (timings, sample counts); `None` for ffmpeg.
    pub report: Option<Value>,
    pub output: PathBuf,
    /// The 1-minute load average right after the run: other developers share the machine, and
    /// this says how contended it was.
    pub loadavg_1m: f64,
}

/// Shared state of a benchmark run.
pub struct Bench {
    pub bin: PathBuf,
    /// A second aiom4b binary to compare with (`builds` section): AIOM4B_BENCH_OTHER_BIN.
    pub other_bin: Option<PathBuf>,
    pub ffmpeg: Option<PathBuf>,
    pub corpus_root: PathBuf,
    /// Scratch space for outputs and logs (`target/bench-out/`).
    pub work: PathBuf,
    pub reps: usize,
    pub cores: usize,
    /// The binary has the FDK encoder (built with the `fdk-aac` feature).
    pub fdk: bool,
    pub rec: Recorder,
}

impl Bench {
    pub fn corpus(&self, spec: &CorpusSpec) -> Corpus {
        spec.ensure(&self.corpus_root)
    }

    /// Converts `corpus` with `tool` into `target/bench-out/<corpus>-<tool>.m4b` and measures
    /// it. aiom4b runs at its defaults (verification included) apart from the thread count;
    /// ffmpeg runs the command of the issues: concat demuxer, native AAC at 128 kb/s.
    pub fn convert(&self, tool: Tool, corpus: &Corpus) -> Conversion {
        self.convert_with(tool, corpus, &[])
    }

    /// [`Bench::convert`] with extra aiom4b arguments (ignored for ffmpeg).
    pub fn convert_with(&self, tool: Tool, corpus: &Corpus, extra: &[&str]) -> Conversion {
        let output = self
            .work
            .join(format!("{}-{}.m4b", corpus.name, tool.slug()));
        let log = self
            .work
            .join(format!("{}-{}.stderr", corpus.name, tool.slug()));
        let _ = std::fs::remove_file(&output);
        let mut cmd = match tool {
            Tool::Aiom4b { jobs }
            | Tool::Other { jobs }
            | Tool::Fdk { jobs }
            | Tool::FdkFast { jobs } => {
                let bin = match tool {
                    Tool::Other { .. } => self.other_bin.as_ref().expect("AIOM4B_BENCH_OTHER_BIN"),
                    _ => &self.bin,
                };
                let mut c = Command::new(bin);
                c.arg("convert")
                    .arg(&corpus.dir)
                    .arg("-o")
                    .arg(&output)
                    .args(["-j", &jobs.to_string(), "-q", "--json"])
                    // The engine against ffmpeg: no source backup (a file copy, not conversion
                    // work), and job records kept in the bench's own work folder.
                    .arg("--no-backup")
                    .env("DATA_DIR", self.work.join("data"))
                    .args(extra);
                match tool {
                    Tool::Fdk { .. } => c.args(["--encoder", "fdk"]),
                    Tool::FdkFast { .. } => c
                        .args(["--encoder", "fdk"])
                        .env("AIOM4B_FDK_AFTERBURNER", "0"),
                    // Only a build with FDK knows the choice is needed (and FDK is its default).
                    Tool::Aiom4b { .. } if self.fdk => c.args(["--encoder", "native"]),
                    _ => &mut c,
                };
                c
            }
            Tool::Ffmpeg => {
                let list = self.work.join(format!("{}.concat.txt", corpus.name));
                write_concat_list(&list, &corpus.files);
                let mut c = Command::new(self.ffmpeg.as_ref().expect("ffmpeg is installed"));
                c.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
                    .args(["-f", "concat", "-safe", "0", "-i"])
                    .arg(&list)
                    .args(["-c:a", "aac", "-b:a", "128k"])
                    .arg(&output);
                c
            }
        };
        let done = measure::run(&mut cmd, &log);
        let report = match tool {
            Tool::Ffmpeg => None,
            _ => Some(
                serde_json::from_slice(&done.stdout)
                    .unwrap_or_else(|e| panic!("aiom4b --json printed no report: {e}")),
            ),
        };
        Conversion {
            cost: done.cost,
            report,
            output,
            loadavg_1m: loadavg(),
        }
    }

    /// `book` split by `aiom4b split --parts N` into a fresh `work/<folder>`: the parts in order.
    pub fn split_book(&self, book: &Path, parts: usize, folder: &str) -> Vec<PathBuf> {
        let dir = self.work.join(folder);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the parts folder");
        let st = Command::new(&self.bin)
            .arg("split")
            .arg(book)
            .args(["--parts", &parts.to_string(), "--out"])
            .arg(&dir)
            .status()
            .expect("running aiom4b split");
        assert!(st.success(), "aiom4b split failed");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("reading the parts")
            .map(|e| e.expect("a part").path())
            .collect();
        files.sort();
        files
    }

    /// Emits the JSON line of one conversion.
    pub fn record_run(
        &mut self,
        section: &str,
        corpus: &Corpus,
        tool: Tool,
        rep: usize,
        c: &Conversion,
    ) {
        self.record_labeled_run(section, corpus, &tool.label(), rep, c);
    }

    /// [`Bench::record_run`] for a variant that is more than its tool (extra arguments).
    pub fn record_labeled_run(
        &mut self,
        section: &str,
        corpus: &Corpus,
        label: &str,
        rep: usize,
        c: &Conversion,
    ) {
        let timings = c
            .report
            .as_ref()
            .and_then(|r| r.get("timings"))
            .cloned()
            .unwrap_or(Value::Null);
        let line = json!({
            "section": section,
            "corpus": corpus.name,
            "files": corpus.files.len(),
            "audio_s": corpus.audio_secs,
            "variant": label,
            "rep": rep,
            "wall_s": c.cost.wall_s,
            "cpu_s": c.cost.cpu_s(),
            "user_s": c.cost.user_s,
            "sys_s": c.cost.sys_s,
            "max_rss_mib": c.cost.max_rss_mib,
            "realtime_factor": corpus.audio_secs / c.cost.wall_s,
            "aiom4b_timings": timings,
            "loadavg_1m": c.loadavg_1m,
        });
        eprintln!(
            "  {:<12} {:<14} rep {rep}: {:7.2} s wall  {:7.2} s cpu  {:6.1} MiB  {:6.1}× realtime",
            corpus.name,
            label,
            c.cost.wall_s,
            c.cost.cpu_s(),
            c.cost.max_rss_mib,
            corpus.audio_secs / c.cost.wall_s
        );
        self.rec.emit("run", line);
    }
}

/// The 1-minute load average (`/proc/loadavg`), or -1 when unreadable.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(-1.0)
}

/// The concat demuxer's list: `file '<path>'`, with `'` written as `'\''` as its docs say.
fn write_concat_list(list: &Path, files: &[PathBuf]) {
    let text: String = files
        .iter()
        .map(|f| {
            let p = f.to_string_lossy().replace('\'', r"'\''");
            format!("file '{p}'\n")
        })
        .collect();
    std::fs::write(list, text).expect("writing the concat list");
}

/// The release binary cargo built for this benchmark (`CARGO_BIN_EXE_*` is set for benches),
/// unless `AIOM4B_BIN` names another one.
fn locate_binary() -> PathBuf {
    std::env::var_os("AIOM4B_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_aiom4b")))
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn main() {
    // `cargo test --all-targets` runs this binary without `--bench`; a 25-minute benchmark has
    // no place there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e benchmark: run it with `cargo bench` (see benches/README.md)");
        return;
    }
    let wanted: Vec<String> = std::env::var("AIOM4B_BENCH")
        .unwrap_or_else(|_| DEFAULT_SECTIONS.join(","))
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for w in &wanted {
        if !SECTIONS.contains(&w.as_str()) {
            eprintln!("AIOM4B_BENCH: unknown section {w:?}; choose from {SECTIONS:?}");
            std::process::exit(2);
        }
    }
    let reps: usize = std::env::var("AIOM4B_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3);

    let bin = locate_binary();
    let ffmpeg = find_in_path("ffmpeg");
    // target/release/aiom4b → target/
    let target = bin
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let work = target.join("bench-out");
    std::fs::create_dir_all(&work).expect("creating target/bench-out");
    let env = report::Environment::collect(&bin, ffmpeg.as_deref());
    let settings = json!({
        "sections": wanted,
        "reps": reps,
        "binary": bin,
        "aiom4b_args": "convert DIR -o OUT -j N -q --json (verification on, defaults otherwise)",
        "ffmpeg_args": ffmpeg.as_ref().map(|_| "-f concat -safe 0 -i LIST -c:a aac -b:a 128k OUT.m4b"),
        "corpus": "fixtures::speech_like, 44.1 kHz stereo CBR 128k (libmp3lame); book10h = one 30-min file hard-linked 20 times",
    });
    eprintln!(
        "aiom4b benchmark: {} on {} ({} cores), {} reps, sections {}",
        env.aiom4b_version.lines().next().unwrap_or(""),
        env.cpu_model,
        env.cores,
        reps,
        wanted.join(",")
    );
    if ffmpeg.is_none() {
        eprintln!("ffmpeg not found in PATH: the baseline columns are left out");
    }
    let results = std::env::var_os("AIOM4B_BENCH_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| report::results_dir().join(format!("{}.jsonl", env.results_stem())));
    let mut bench = Bench {
        rec: Recorder::new(&env, settings),
        bin,
        other_bin: std::env::var_os("AIOM4B_BENCH_OTHER_BIN").map(PathBuf::from),
        ffmpeg,
        corpus_root: target.join("bench-corpus"),
        work,
        reps,
        cores: cores(),
        fdk: env.aiom4b_version.contains("FDK"),
    };
    let t0 = std::time::Instant::now();
    for section in SECTIONS.iter().filter(|s| wanted.iter().any(|w| w == *s)) {
        eprintln!("== {section}");
        match *section {
            "e2e" => sections::e2e(&mut bench),
            "small" => sections::small(&mut bench),
            "memory" => sections::memory(&mut bench),
            "probe" => sections::probe(&mut bench),
            "splice" => splice::splice(&mut bench),
            "finished" => sections::finished(&mut bench),
            "copy" => copy::copy(&mut bench),
            "formats" => formats::formats(&mut bench),
            "builds" => sections::builds(&mut bench),
            "memory-long" => memory_long::memory_long(&mut bench),
            _ => unreachable!("checked above"),
        }
    }
    bench.rec.print_table();
    println!("\n(total {:.0} s)", t0.elapsed().as_secs_f64());
    match bench.rec.append_to(&results) {
        Ok(()) => println!("results appended to {}", results.display()),
        Err(e) => eprintln!("could not write {}: {e}", results.display()),
    }
}
