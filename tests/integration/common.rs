//! Small helpers shared by the probe, convert and splice tests: running the `aiom4b` binary
//! with a deadline, writing fixture books, an independent (Symphonia) MP3 length, a pitch
//! meter, digests of a folder, and leftovers of a failed conversion.
#![allow(dead_code)] // each test module uses a different subset

use aiom4b_testkit::fixtures::{write_mp3, Length, Mp3Spec, RateControl, Signal};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any single CLI run in these tests may take before it counts as hung. Generous: the
/// longest conversion here takes a few seconds even on two loaded cores; a hang never ends.
pub const CLI_DEADLINE: Duration = Duration::from_secs(180);

/// One AAC frame in output samples: the only place a correct writer's length may differ from
/// the sample-exact plan (the encoder's last, partial frame), and far more than a chapter
/// mark's storage rounding (1 ms in the QuickTime chapter track).
pub const AAC_FRAME: u64 = 1024;

/// Samples a resampled file may differ from `round(n · out / in)`: swresample's flush emits
/// the filter tail rounded to whole output samples, so the count is exact to a sample or two.
pub const RESAMPLE_SLACK: u64 = 4;

/// A sine's frequency measured over ≥ 1 s is within this fraction of the true one after
/// MP3 → AAC; a wrong rate is off by ≥ 8.8 % (44.1 vs 48 kHz), a wrong speed by 2×.
pub const FREQUENCY_TOLERANCE: f64 = 0.005;

/// Variables the program reads; the workflow tests remove them so they see the defaults.
pub const WORKFLOW_VARS: &[&str] = &[
    "AIOM4B_CONFIG",
    "DEBUG",
    "RUST_LOG",
    "BACKUP_ENABLED",
    "BACKUP_RETENTION_DAYS",
    "BACKUP_ENCRYPT_TO",
    "MAX_CONCURRENT_JOBS",
    "USE_ALL_CPUS",
    "MAX_FILE_SIZE_MB",
    "MAX_TOTAL_SIZE_MB",
    "OUTPUT_MODE",
    "NAME_TEMPLATE",
    "PROCESSING_TIMEOUT_SECS",
    "LOG_FORMAT",
    "OUTPUT_LAYOUT",
    "LIBRARY_TEMPLATE",
];

/// The `aiom4b` binary built for these tests.
pub fn aiom4b() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aiom4b"));
    // Defaults that could leak in from the developer's environment.
    for var in [
        "DATA_DIR",
        "MAX_FILE_SIZE_MB",
        "MAX_TOTAL_SIZE_MB",
        "USE_ALL_CPUS",
        "AIOM4B_LOG",
        "DEBUG",
    ] {
        c.env_remove(var);
    }
    c.stdin(Stdio::null());
    c
}

/// Runs `aiom4b args…` to completion (panicking after [`CLI_DEADLINE`]).
pub fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = aiom4b();
    cmd.args(args);
    run_cmd(cmd)
}

/// Runs a prepared command with output captured, killing it and failing the test if it does
/// not finish within [`CLI_DEADLINE`].
pub fn run_cmd(mut cmd: Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start aiom4b");
    wait_with_deadline(child, CLI_DEADLINE)
}

/// Waits for `child`, reading its output on helper threads so a full pipe cannot block it.
pub fn wait_with_deadline(mut child: Child, deadline: Duration) -> Output {
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut b).ok();
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut b).ok();
        b
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for aiom4b") {
            break s;
        }
        if t0.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("aiom4b did not finish within {deadline:?} (hung?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// Runs `f` on its own thread and fails the test if it takes longer than `deadline` (the
/// thread is left behind; the test process ends soon after).
pub fn within<T: Send + 'static>(deadline: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(deadline) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("did not finish within {deadline:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the timed closure panicked"),
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parses stdout as JSON, with the whole output in the panic message when it is not.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); status {:?}\nstdout:\n{}\nstderr:\n{}",
            o.status,
            stdout(o),
            stderr(o)
        )
    })
}

/// The findings of a `--json` report (`convert`, `probe`) whose `field` is `value`.
pub fn findings_where<'a>(
    report: &'a serde_json::Value,
    field: &str,
    value: &str,
) -> Vec<&'a serde_json::Value> {
    report["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings in {report:#}"))
        .iter()
        .filter(|f| f[field] == value)
        .collect()
}

/// Asserts the exit code, showing both streams when it differs.
#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// A sine MP3 spec: `samples` per channel at `rate`, `channels`, CBR unless `vbr`.
pub fn sine_spec(freq_hz: f64, samples: u64, rate: u32, channels: u16, vbr: bool) -> Mp3Spec {
    Mp3Spec {
        length: Length::Samples(samples),
        sample_rate: rate,
        channels,
        rate_control: if vbr {
            RateControl::Vbr { quality: 4 }
        } else {
            RateControl::Cbr {
                bitrate_bps: if rate < 32_000 { 64_000 } else { 128_000 },
            }
        },
        signal: Signal::Sine {
            freq_hz,
            amplitude: 0.5,
        },
        ..Mp3Spec::default()
    }
}

/// Writes a short good MP3 (0.3 s sine, 22.05 kHz mono: cheap to write, probe and convert).
pub fn small_mp3(path: &Path) {
    write_mp3(path, &sine_spec(440.0, 6615, 22_050, 1, false)).unwrap();
}

/// What Symphonia — not the FFmpeg the engine uses — decodes from an MP3, gapless.
#[derive(Debug, Clone)]
pub struct Mp3Length {
    pub sample_rate: u32,
    pub channels: usize,
    /// Samples per channel after the encoder delay and padding are trimmed.
    pub samples: u64,
}

impl Mp3Length {
    /// The samples this file becomes at `out_rate`.
    pub fn at_rate(&self, out_rate: u32) -> u64 {
        (self.samples as f64 * f64::from(out_rate) / f64::from(self.sample_rate)).round() as u64
    }
}

/// Opens `path` as MP3 with Symphonia (gapless: 0.6 always trims the LAME delay and padding),
/// the independent reader of the tests: its reader, codec parameters, length from the header
/// and decoder.
pub fn open_gapless_mp3(
    path: &Path,
) -> (
    Box<dyn symphonia::core::formats::FormatReader>,
    symphonia::core::codecs::audio::AudioCodecParameters,
    Option<u64>,
    Box<dyn symphonia::core::codecs::audio::AudioDecoder>,
) {
    let (format, params, frames, dec, _) = open_with_symphonia(path, "mp3");
    (format, params, frames, dec)
}

/// Opens `path` with Symphonia, hinted by its extension: the reader, the default audio
/// track's id and a decoder for it.
pub fn open_symphonia(
    path: &Path,
) -> (
    Box<dyn symphonia::core::formats::FormatReader>,
    u32,
    Box<dyn symphonia::core::codecs::audio::AudioDecoder>,
) {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let (format, _, _, dec, id) = open_with_symphonia(path, ext);
    (format, id, dec)
}

#[allow(clippy::type_complexity)]
fn open_with_symphonia(
    path: &Path,
    extension: &str,
) -> (
    Box<dyn symphonia::core::formats::FormatReader>,
    symphonia::core::codecs::audio::AudioCodecParameters,
    Option<u64>,
    Box<dyn symphonia::core::codecs::audio::AudioDecoder>,
    u32,
) {
    use symphonia::core::codecs::audio::AudioDecoderOptions;
    use symphonia::core::formats::probe::Hint;
    use symphonia::core::formats::{FormatOptions, TrackType};
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    let file = std::fs::File::open(path).unwrap();
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(extension);
    let format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{}: symphonia cannot open it: {e}", path.display()));
    let track = format.default_track(TrackType::Audio).unwrap();
    let (id, header_frames) = (track.id, track.num_frames);
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .unwrap()
        .clone();
    let dec = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .unwrap();
    (format, params, header_frames, dec, id)
}

/// Decodes `path` with Symphonia (gapless) and counts its samples.
pub fn symphonia_length(path: &Path) -> Mp3Length {
    use symphonia::core::errors::Error as SError;
    let (mut format, params, _, mut dec) = open_gapless_mp3(path);
    let mut samples = 0u64;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => panic!("{}: demuxing failed: {e}", path.display()),
        };
        match dec.decode(&packet) {
            Ok(buf) => samples += buf.frames() as u64,
            Err(SError::DecodeError(e)) => panic!("{}: decode error: {e}", path.display()),
            Err(e) => panic!("{}: decoding failed: {e}", path.display()),
        }
    }
    Mp3Length {
        sample_rate: params.sample_rate.unwrap(),
        channels: params.channels.unwrap().count(),
        samples,
    }
}

/// Chapter starts a per-file book must have: the running sum of each file's length at `rate`.
pub fn cumulative_starts(paths: &[PathBuf], rate: u32) -> (Vec<u64>, u64) {
    let mut starts = Vec::with_capacity(paths.len());
    let mut at = 0u64;
    for p in paths {
        starts.push(at);
        at += symphonia_length(p).at_rate(rate);
    }
    (starts, at)
}

/// Frequency from rising zero crossings with hysteresis (coding noise adds no crossings).
pub fn frequency(samples: &[f32], rate: u32) -> f64 {
    let threshold = 0.05;
    let mut crossings = Vec::new();
    let mut armed = false;
    for (i, &s) in samples.iter().enumerate() {
        if s < -threshold {
            armed = true;
        } else if armed && s > threshold {
            crossings.push(i);
            armed = false;
        }
    }
    assert!(
        crossings.len() > 2,
        "no tone found ({} crossings)",
        crossings.len()
    );
    let (first, last) = (crossings[0], *crossings.last().unwrap());
    (crossings.len() - 1) as f64 * f64::from(rate) / (last - first) as f64
}

/// BLAKE3 of every file under `dir` (relative path → digest), plus each file's mode and size,
/// so any change to a source — content, rename, permission — shows.
pub fn digest_tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if meta.is_dir() {
                walk(root, &p, out);
            } else {
                use std::os::unix::fs::PermissionsExt;
                let hash = if meta.is_file() {
                    blake3::hash(&std::fs::read(&p).unwrap())
                        .to_hex()
                        .to_string()
                } else {
                    String::from("(not a regular file)")
                };
                let mode = meta.permissions().mode();
                out.insert(rel, format!("{hash} {mode:o} {}", meta.len()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Every entry name in `dir` (hidden ones too), sorted; empty when `dir` does not exist.
pub fn entries(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Asserts that `dir` holds no `.part` file (what an unfinished conversion writes).
#[track_caller]
pub fn assert_no_part(dir: &Path) {
    let parts: Vec<String> = entries(dir)
        .into_iter()
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(
        parts.is_empty(),
        "left behind in {}: {parts:?}",
        dir.display()
    );
}

/// Runs a program the tests use as an independent reader or to make their input (`ffmpeg`,
/// `ffprobe`) and returns its output. A missing program fails the test, naming the package
/// that has it: a check must never be skipped because a tool is absent, and
/// `scripts/setup.sh` installs them.
#[track_caller]
pub fn run_tool(cmd: &mut Command) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let package = match program.as_str() {
        "ffmpeg" | "ffprobe" => "ffmpeg",
        "groff" => "groff-base",
        "systemd-analyze" => "systemd",
        other => other,
    };
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run `{program}` ({e}); the tests need it: install the package `{package}` \
             (scripts/setup.sh does, or `apt-get install {package}`)"
        ),
    }
}

/// FFmpeg's decode of `path` as raw f32 (edit list honoured): the samples a player gets.
#[track_caller]
pub fn decoded(path: &Path) -> Vec<u8> {
    let o = run_tool(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-map", "0:a", "-f", "f32le", "-"]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    o.stdout
}

/// `ffprobe -show_format -show_streams -show_chapters` as JSON: libavformat's own view of a
/// file. Fails the test when ffprobe is not installed ([`run_tool`]).
#[track_caller]
pub fn ffprobe(path: &Path) -> serde_json::Value {
    let out = run_tool(
        Command::new("ffprobe")
            .args(["-v", "error", "-print_format", "json"])
            .args(["-show_format", "-show_streams", "-show_chapters"])
            .arg(path),
    );
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Makes every write of the child beyond `bytes` into one file fail with EFBIG ("File too
/// large"), as a full disk fails it with ENOSPC: a full disk for one process, without root or
/// a loop device. `RLIMIT_FSIZE` is inherited through exec; SIGXFSZ, which would otherwise kill
/// the child at the limit, is ignored so that the write returns the error instead.
pub fn limit_file_size(cmd: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure only makes two async-signal-safe system calls
    // (setrlimit, signal) on values it owns; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
}

/// The MP4 tags of `path` as mutagen (Python, Debian's `python3-mutagen`) reads them: every
/// item by its atom name (`©nam`, `----:com.apple.iTunes:ASIN`, …) as a list of strings
/// (`covr`: one `"jpeg:BYTES"`/`"png:BYTES"` per picture), and `length` in seconds. An
/// independent reader of the tags aiom4b writes; panics when no Python has mutagen.
pub fn mutagen_tags(path: &Path) -> serde_json::Value {
    const SCRIPT: &str = r#"
import json, sys
from mutagen.mp4 import MP4, MP4Cover
f = MP4(sys.argv[1])
out = {"length": f.info.length, "tags": {}}
for k, vs in (f.tags or {}).items():
    items = []
    for v in vs:
        if isinstance(v, MP4Cover):
            items.append(("png" if v.imageformat == MP4Cover.FORMAT_PNG else "jpeg") + ":" + str(len(v)))
        elif isinstance(v, bytes):
            items.append(v.decode("utf-8", "replace"))
        else:
            items.append(str(v))
    out["tags"][k] = items
print(json.dumps(out))
"#;
    // Debian's package is for Debian's interpreter; a python3 earlier on PATH (pyenv) may
    // lack it.
    for python in ["python3", "/usr/bin/python3"] {
        let probe = Command::new(python).args(["-c", "import mutagen"]).output();
        if !matches!(probe, Ok(ref o) if o.status.success()) {
            continue;
        }
        let o = run_tool(Command::new(python).args(["-c", SCRIPT]).arg(path));
        assert!(
            o.status.success(),
            "mutagen cannot read {}: {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        return serde_json::from_slice(&o.stdout).unwrap();
    }
    panic!(
        "no python3 with mutagen: the tests read tags with it; install the package \
         `python3-mutagen` (scripts/setup.sh does)"
    );
}
