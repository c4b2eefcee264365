//! Running one child process and measuring it: wall time around spawn → reap, and the child's
//! own CPU time and peak RSS from `wait4` (which reports exactly the reaped child, unlike
//! `getrusage(RUSAGE_CHILDREN)`, whose `ru_maxrss` is the maximum over every child so far).
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// What one run cost.
#[derive(Debug, Clone, Default)]
pub struct RunCost {
    pub wall_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
    /// Peak resident set size of the child, in MiB (Linux reports `ru_maxrss` in KiB).
    pub max_rss_mib: f64,
}

impl RunCost {
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// A finished run: its cost and its standard output.
pub struct Finished {
    pub cost: RunCost,
    pub stdout: Vec<u8>,
}

/// Runs `cmd` to completion with stdin closed, stdout captured and stderr written to
/// `stderr_log`. Panics with the log's tail when the child fails: a benchmark of a failing
/// command measures nothing.
pub fn run(cmd: &mut Command, stderr_log: &Path) -> Finished {
    let log = std::fs::File::create(stderr_log).expect("creating the stderr log");
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    // Read stdout before reaping: a child blocked on a full pipe would never exit.
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_end(&mut stdout)
        .expect("reading the child's stdout");
    let (status, usage) = wait4(child.id());
    let wall_s = t0.elapsed().as_secs_f64();
    // `child` is dropped without `wait`: it has been reaped above, and dropping a `Child`
    // neither waits nor kills.
    drop(child);
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !ok {
        let text = std::fs::read_to_string(stderr_log).unwrap_or_default();
        let tail: String = text
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        panic!("{cmd:?} failed (wait status {status}):\n{tail}");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Finished {
        cost: RunCost {
            wall_s,
            user_s: secs(usage.ru_utime),
            sys_s: secs(usage.ru_stime),
            max_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        },
        stdout,
    }
}

fn wait4(pid: u32) -> (libc::c_int, libc::rusage) {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data, so all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child that nobody else reaps (std only reaps in
        // `wait`/`try_wait`, which we never call); both pointers point to live locals.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == pid as libc::pid_t {
            return (status, usage);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            panic!("wait4({pid}): {err}");
        }
    }
}

/// The median (mean of the middle two for even counts); 0 for no values.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}
