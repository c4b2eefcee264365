//! Where the figures go: one JSON line per measurement on stdout and, at the end, appended to
//! `benches/results/<cpu>-<cores>c-<date>.jsonl` after an `env` line that says what machine,
//! FFmpeg, revision and settings produced them; plus a human table on stdout.
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What produced the figures.
#[derive(Debug, Clone)]
pub struct Environment {
    pub cpu_model: String,
    pub cores: usize,
    pub hostname: String,
    pub aiom4b_version: String,
    pub ffmpeg_version: Option<String>,
    pub git_revision: String,
    pub date: String,
}

impl Environment {
    pub fn collect(bin: &Path, ffmpeg: Option<&Path>) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let first_lines = |out: Option<String>, n: usize| {
            out.map(|s| s.lines().take(n).collect::<Vec<_>>().join(" | "))
        };
        Environment {
            cpu_model,
            cores: crate::cores(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            aiom4b_version: first_lines(output(Command::new(bin).arg("--version")), 3)
                .unwrap_or_else(|| "unknown".into()),
            ffmpeg_version: ffmpeg
                .and_then(|f| first_lines(output(Command::new(f).arg("-version")), 1)),
            git_revision: git_revision(),
            date: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// `amd-epyc-2c-2025-01-31`: the CPU rather than the host name, because containers get
    /// random host names while the CPU is what makes figures comparable.
    pub fn results_stem(&self) -> String {
        let mut slug = String::new();
        for c in self.cpu_model.to_ascii_lowercase().chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c);
            } else if !slug.ends_with('-') {
                slug.push('-');
            }
        }
        let slug: String = slug.trim_matches('-').chars().take(40).collect();
        format!(
            "{}-{}c-{}",
            slug.trim_end_matches('-'),
            self.cores,
            &self.date[..10]
        )
    }
}

/// The stdout of a command that succeeded.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    String::from_utf8(out.stdout).ok()
}

fn git_revision() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let rev = output(Command::new("git").args(["-C", dir, "rev-parse", "HEAD"]))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let dirty = output(Command::new("git").args([
        "-C",
        dir,
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .is_some_and(|s| !s.trim().is_empty());
    if dirty {
        format!("{rev}-dirty")
    } else {
        rev
    }
}

/// Collects JSON lines and table rows; writes the results file at the end.
pub struct Recorder {
    run_id: String,
    lines: Vec<String>,
    table: Vec<(String, Vec<[String; 3]>)>,
}

impl Recorder {
    pub fn new(env: &Environment, settings: Value) -> Self {
        let mut r = Recorder {
            run_id: env.date.clone(),
            lines: Vec::new(),
            table: Vec::new(),
        };
        r.emit(
            "env",
            json!({
                "cpu_model": env.cpu_model,
                "cores": env.cores,
                "hostname": env.hostname,
                "aiom4b_version": env.aiom4b_version,
                "ffmpeg_version": env.ffmpeg_version,
                "git_revision": env.git_revision,
                "date": env.date,
                "settings": settings,
            }),
        );
        r
    }

    /// Prints one JSON line and keeps it for the results file. `kind` says what the line is
    /// (`env`, `run`, `summary`, `splice`, `exactness`, `probe`); `run_id` ties the lines of
    /// one benchmark run together in an appended file.
    pub fn emit(&mut self, kind: &str, mut fields: Value) {
        let obj = fields.as_object_mut().expect("a JSON object");
        obj.insert("type".into(), kind.into());
        obj.insert("run_id".into(), self.run_id.clone().into());
        let line = serde_json::to_string(&fields).expect("serializing a JSON line");
        println!("{line}");
        self.lines.push(line);
    }

    /// Starts a table section (one per benchmark section).
    pub fn section(&mut self, title: impl Into<String>) {
        self.table.push((title.into(), Vec::new()));
    }

    /// One table row: what, the figure, and the target it is judged against (or "").
    pub fn row(&mut self, what: impl Into<String>, value: impl Into<String>, target: &str) {
        let row = [what.into(), value.into(), target.to_string()];
        match self.table.last_mut() {
            Some((_, rows)) => rows.push(row),
            None => self.table.push((String::new(), vec![row])),
        }
    }

    pub fn print_table(&self) {
        let w0 = self
            .table
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|r| r[0].chars().count()))
            .max()
            .unwrap_or(0);
        let w1 = self
            .table
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|r| r[1].chars().count()))
            .max()
            .unwrap_or(0);
        println!();
        for (title, rows) in &self.table {
            println!("== {title}");
            for [a, b, c] in rows {
                println!("  {a:<w0$}  {b:<w1$}  {c}");
            }
        }
    }

    /// Appends every line to `path` (created with its folder when missing).
    pub fn append_to(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        f.sync_all()
    }
}

/// `benches/results/` in the source tree.
pub fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results")
}

/// `value` against an upper bound, as a table's target column.
pub fn judge_max(value: f64, max: f64, label: &str) -> String {
    let verdict = if value <= max { "met" } else { "MISSED" };
    format!("target {label} — {verdict}")
}

/// `value` against a lower bound, as a table's target column.
pub fn judge_min(value: f64, min: f64, label: &str) -> String {
    let verdict = if value >= min { "met" } else { "MISSED" };
    format!("target {label} — {verdict}")
}
