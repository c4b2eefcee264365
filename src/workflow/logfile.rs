//! Log files that rotate by day and by size.
//!
//! This is a plain, synchronous `io::Write` sink, not a logger: the binary puts it behind
//! `tracing-appender`'s non-blocking writer and plugs that into its `tracing-subscriber` layer
//! (the library installs nothing and starts no thread for logging).
//!
//! Files are `{prefix}.{YYYY-MM-DD}.{NNN}.jsonl`: a new one starts at midnight (local time) and
//! when the current one would pass `max_bytes`; only the newest `max_files` are kept.
//!
//! Why not `tracing_appender::rolling`: it rotates by time only (minutely, hourly, daily), and
//! the configuration promises a size limit per file (`LOG_MAX_SIZE_MB`, the spec's "log
//! rotation: automatic log file management"); a day of debug logging of a large batch would
//! otherwise be one unbounded file. A write error (full disk) closes the file and the next
//! line opens it again, so logging resumes when there is room.
use chrono::{Local, NaiveDate};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

/// Where and how much to keep.
#[derive(Debug, Clone)]
pub struct RotationPolicy {
    /// The folder the log files are written in (created when needed).
    pub dir: PathBuf,
    /// File name prefix, e.g. `aiom4b`.
    pub prefix: String,
    /// Size at which a new file is started.
    pub max_bytes: u64,
    /// Files kept (oldest deleted first).
    pub max_files: usize,
}

/// The current file.
struct Current {
    file: File,
    date: NaiveDate,
    seq: u32,
    size: u64,
}

/// A log file that rotates by day and size (see the module documentation). Synchronous.
pub struct RotatingFile {
    policy: RotationPolicy,
    current: Option<Current>,
    today: Box<dyn Fn() -> NaiveDate + Send>,
}

impl RotatingFile {
    /// A rotating file under `policy`, dated by the local clock; nothing is opened until the
    /// first write.
    pub fn new(policy: RotationPolicy) -> Self {
        Self::with_clock(policy, Box::new(|| Local::now().date_naive()))
    }

    /// With an injected clock (tests rotate "at midnight" without waiting).
    pub fn with_clock(policy: RotationPolicy, today: Box<dyn Fn() -> NaiveDate + Send>) -> Self {
        RotatingFile {
            policy,
            current: None,
            today,
        }
    }

    fn file_name(&self, date: NaiveDate, seq: u32) -> String {
        format!(
            "{}.{}.{seq:03}.jsonl",
            self.policy.prefix,
            date.format("%Y-%m-%d")
        )
    }

    /// Our log files, oldest first (the names sort by date, then sequence).
    pub fn files(&self) -> io::Result<Vec<PathBuf>> {
        let start = format!("{}.", self.policy.prefix);
        let mut files: Vec<PathBuf> = fs::read_dir(&self.policy.dir)?
            .filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with(&start) && n.ends_with(".jsonl")
            })
            .map(|e| e.path())
            .collect();
        files.sort();
        Ok(files)
    }

    fn open(&mut self, date: NaiveDate, seq: u32) -> io::Result<()> {
        fs::create_dir_all(&self.policy.dir)?;
        let path = self.policy.dir.join(self.file_name(date, seq));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        self.current = Some(Current {
            file,
            date,
            seq,
            size,
        });
        self.prune();
        Ok(())
    }

    /// After a restart: continue today's newest file.
    fn newest_seq(&self, date: NaiveDate) -> u32 {
        let start = format!("{}.{}.", self.policy.prefix, date.format("%Y-%m-%d"));
        self.files()
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                p.file_name()?
                    .to_str()?
                    .strip_prefix(&start)?
                    .strip_suffix(".jsonl")?
                    .parse()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    }

    fn prune(&self) {
        let Ok(files) = self.files() else { return };
        if files.len() > self.policy.max_files {
            for old in &files[..files.len() - self.policy.max_files] {
                let _ = fs::remove_file(old);
            }
        }
    }
}

impl Write for RotatingFile {
    /// Writes one whole line (or several); rotation happens between writes, never inside one.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let today = (self.today)();
        let len = buf.len() as u64;
        let next = match &self.current {
            None => Some((today, self.newest_seq(today))),
            Some(c) if c.date != today => Some((today, 0)),
            Some(c) if c.size > 0 && c.size + len > self.policy.max_bytes => {
                Some((today, c.seq + 1))
            }
            Some(_) => None,
        };
        if let Some((date, seq)) = next {
            self.current = None;
            self.open(date, seq)?;
            // A reopened file of today may itself be full already.
            if let Some(c) = &self.current {
                if c.size > 0 && c.size + len > self.policy.max_bytes {
                    self.current = None;
                    self.open(date, seq + 1)?;
                }
            }
        }
        let c = self.current.as_mut().expect("opened above");
        match c.file.write_all(buf) {
            Ok(()) => {
                c.size += len;
                Ok(buf.len())
            }
            Err(e) => {
                // Reopen on the next line: the disk may have room again by then.
                self.current = None;
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some(c) => c.file.flush(),
            None => Ok(()),
        }
    }
}
