//! Who runs a job, and whether that process still lives.
//!
//! A job record carries the pid, the host name and (on Linux) the process start time of the
//! process working on it. After a crash or `kill -9` the next start compares them with the
//! running system: a pid that no longer exists, or exists with another start time (the pid was
//! reused), means the job was interrupted. Jobs of other hosts are left alone: from here we
//! cannot tell whether their process lives.
use crate::publish::pid_exists;
use serde::{Deserialize, Serialize};

/// The identity of a process, as stored in a job record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// The process id.
    pub pid: u32,
    /// The host the process runs on.
    pub hostname: String,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22); `None` off Linux.
    pub start_ticks: Option<u64>,
}

/// What [`ProcessIdentity::liveness`] can tell about a recorded process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// A process with this pid (and, on Linux, this start time) runs on this host.
    Alive,
    /// No such process on this host: the pid is gone, a zombie, or reused by another process.
    Dead,
    /// It ran on another host.
    Unknown,
}

impl ProcessIdentity {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        ProcessIdentity {
            pid,
            hostname: hostname(),
            start_ticks: start_ticks(pid),
        }
    }

    /// The instance id shown in logs, metrics and job records: `hostname:pid:start`, where
    /// `start` is the process start time in ticks since boot (`0` off Linux). Unique across
    /// hosts, and across restarts of a pid on one host.
    pub fn instance_id(&self) -> String {
        format!(
            "{}:{}:{}",
            self.hostname,
            self.pid,
            self.start_ticks.unwrap_or(0)
        )
    }

    /// Whether the recorded process still runs.
    pub fn liveness(&self) -> Liveness {
        if self.hostname != hostname() {
            return Liveness::Unknown;
        }
        if !pid_exists(self.pid) || is_zombie(self.pid) {
            return Liveness::Dead;
        }
        match (self.start_ticks, start_ticks(self.pid)) {
            // Same pid, different start time: the pid was recycled by an unrelated process.
            (Some(recorded), Some(now)) if recorded != now => Liveness::Dead,
            _ => Liveness::Alive,
        }
    }
}

/// The host name (`uname -n`).
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// A killed process whose parent has not reaped it yet still has a pid; it runs no code.
fn is_zombie(pid: u32) -> bool {
    proc_stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_some_and(|state| state == "Z" || state == "X")
}

/// The fields of `/proc/<pid>/stat` from field 3 (state) on.
fn proc_stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces and ')': split after
    // the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The start time of `pid` in ticks since boot, from `/proc/<pid>/stat`.
fn start_ticks(pid: u32) -> Option<u64> {
    // Field 22; the list starts at field 3.
    proc_stat_fields(pid)?.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive() {
        assert_eq!(ProcessIdentity::current().liveness(), Liveness::Alive);
    }

    #[test]
    fn the_instance_id_names_host_pid_and_start() {
        let me = ProcessIdentity::current();
        let id = me.instance_id();
        assert!(
            id.starts_with(&format!("{}:{}:", me.hostname, std::process::id())),
            "{id}"
        );
        let mut later = me.clone();
        later.start_ticks = me.start_ticks.map(|t| t + 1).or(Some(1));
        assert_ne!(later.instance_id(), id);
    }

    #[test]
    fn other_host_is_unknown_and_reused_pid_is_dead() {
        let mut me = ProcessIdentity::current();
        me.hostname.push_str(".elsewhere");
        assert_eq!(me.liveness(), Liveness::Unknown);
        let mut me = ProcessIdentity::current();
        if let Some(t) = me.start_ticks.as_mut() {
            *t += 1;
            assert_eq!(me.liveness(), Liveness::Dead);
        }
    }
}
