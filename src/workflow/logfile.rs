//! Log files that rotate by day and by size, written off the caller's thread.
//!
//! This is a plain `io::Write` sink, not a logger: the binary plugs it into its
//! `tracing-subscriber` layer (the library installs nothing). Two rules shape it:
//!
//! - **Logging never blocks a conversion.** Lines go through a bounded channel to one writer
//!   thread; when the channel is full (a slow or hung disk) the line is dropped and counted.
//! - **Logging never fails a conversion.** A write error (full disk) drops the line, closes the
//!   file and retries opening on a later line; the number of lost lines is written as soon as
//!   writing works again.
//!
//! Files are `{prefix}.{YYYY-MM-DD}.{NNN}.jsonl`: a new one starts at midnight (local time) and
//! when the current one would pass `max_bytes`; only the newest `max_files` are kept.
use chrono::{Local, NaiveDate};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Lines buffered between the program and the writer thread. 4096 lines of ~300 bytes is about
/// 1 MiB at most: enough to ride out a slow disk for a moment, small enough not to matter.
pub const CHANNEL_LINES: usize = 4096;

/// Where and how much to keep.
#[derive(Debug, Clone)]
pub struct RotationPolicy {
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

/// The sending side: cheap to clone, never blocks. Each `write` call is sent as one unit, so
/// callers should write whole lines (tracing-subscriber writes one event per call).
#[derive(Clone)]
pub struct NonBlocking {
    tx: Sender<Option<Vec<u8>>>,
    dropped: Arc<AtomicU64>,
}

impl NonBlocking {
    /// Lines lost so far (channel full or write failed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Write for NonBlocking {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.tx.try_send(Some(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Always "succeeds": a lost log line must never become an error for the caller.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps the writer thread alive; dropping it writes what is queued (waiting at most two
/// seconds, so a hung disk cannot hang the program's exit).
pub struct WriterGuard {
    tx: Sender<Option<Vec<u8>>>,
    finished: Receiver<()>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        // `None` asks the thread to finish after the lines queued before it. Clones of the
        // sender live on in the subscriber, so closing the channel is not an option.
        if self.tx.send_timeout(None, Duration::from_secs(1)).is_ok() {
            let _ = self.finished.recv_timeout(Duration::from_secs(2));
        }
    }
}

/// Starts the writer thread for `sink`.
pub fn non_blocking<W: Write + Send + 'static>(
    mut sink: W,
) -> io::Result<(NonBlocking, WriterGuard)> {
    let (tx, rx) = bounded::<Option<Vec<u8>>>(CHANNEL_LINES);
    let (done_tx, finished) = bounded::<()>(1);
    let dropped = Arc::new(AtomicU64::new(0));
    let lost = dropped.clone();
    std::thread::Builder::new()
        .name("aiom4b-log-writer".into())
        .spawn(move || {
            let mut reported = 0;
            while let Ok(Some(line)) = rx.recv() {
                let missing = lost.load(Ordering::Relaxed);
                if missing > reported {
                    let note = format!(
                        "{{\"timestamp\":\"{}\",\"level\":\"WARN\",\"target\":\"aiom4b::logfile\",\"fields\":{{\"message\":\"{} log line(s) were dropped (disk full or too slow)\"}}}}\n",
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                        missing - reported
                    );
                    if sink.write_all(note.as_bytes()).is_ok() {
                        reported = missing;
                    }
                }
                if sink.write_all(&line).is_err() {
                    lost.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = sink.flush();
            let _ = done_tx.send(());
        })?;
    let guard = WriterGuard {
        tx: tx.clone(),
        finished,
    };
    Ok((NonBlocking { tx, dropped }, guard))
}
