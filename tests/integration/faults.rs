//! The fault suite: what a user owns survives every crash, signal, full or read-only disk, lost
//! race and hostile request — checked on the real program with real audio.
//!
//! The program stops itself at a named point of a job when `AIOM4B_TEST_STOP_AT` says so (a
//! SIGSTOP, see `workflow_cmds::test_stop_hooks`), so each case kills it (`kill -9`, SIGTERM …)
//! or changes the world under it at exactly that point, not "some time later". After every case:
//! the sources are byte-identical (BLAKE3 of every file, mode and size), no temporary is left
//! anywhere (no hidden entry, `.part`, `.tmp` or `.lock` in any folder the run touched), the job
//! is in a final state with the right error category, and `PRAGMA integrity_check` is `ok`.
//!
//! Disks that are full, tiny or read-only are made without root: the child process gets its own
//! mount namespace (inside a user namespace when not root) with a tmpfs of the wanted size or a
//! read-only one, or a file-size limit (`RLIMIT_FSIZE`, the write fails with EFBIG).
use crate::common::{digest_tree, WORKFLOW_VARS};
use aiom4b_testkit::fixtures::{write_book, Mp3Spec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the program may take to reach a stop point or to finish a small book.
const DEADLINE: Duration = Duration::from_secs(120);

/// One test's world: `data/`, `source/Book/`, `out/` under a temporary folder.
struct World {
    tmp: tempfile::TempDir,
    data: PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        World { tmp, data }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn out(&self) -> PathBuf {
        let o = self.root().join("out");
        fs::create_dir_all(&o).unwrap();
        o
    }

    /// A book of `files` MP3s of 4 s (mono 22.05 kHz: quick to write and convert; the default
    /// output, 128 kb/s stereo, makes about 190 KB of M4B).
    fn book(&self, name: &str, files: usize) -> PathBuf {
        let dir = self.root().join("source").join(name);
        let spec = Mp3Spec {
            sample_rate: 22_050,
            channels: 1,
            ..Mp3Spec::default()
        };
        write_book(&dir, files, 4.0, &spec).unwrap();
        dir
    }

    /// A book of `files` MP3s of `secs` at 44.1 kHz stereo: taken by the multi-core path, which
    /// reports progress while it encodes (a stop at "convert" then lands mid-book, with work
    /// left for a signal to interrupt).
    fn cd_book(&self, name: &str, files: usize, secs: f64) -> PathBuf {
        let dir = self.root().join("source").join(name);
        write_book(&dir, files, secs, &Mp3Spec::default()).unwrap();
        dir
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_aiom4b"));
        c.args(args)
            .current_dir(self.root())
            .env("DATA_DIR", &self.data)
            .env("SOURCE_DIR", self.root().join("source"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("AIOM4B_TEST_STOP_AT");
        for v in WORKFLOW_VARS {
            c.env_remove(v);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        finish(self.command(args).spawn().unwrap())
    }

    /// Starts the program and waits until it has stopped itself at `stage`.
    fn stopped_at(&self, stage: &str, args: &[&str]) -> Child {
        let mut cmd = self.command(args);
        cmd.env("AIOM4B_TEST_STOP_AT", stage);
        stopped(cmd.spawn().unwrap(), stage)
    }

    /// A book of three 4 s files converted to `out/book.m4b` with `--split-at 5s` (three
    /// parts), stopped at `stage`: the book's folder with its digest from before the run, the
    /// output asked for, the child.
    #[allow(clippy::type_complexity)]
    fn split_stopped_at(
        &self,
        stage: &str,
    ) -> ((PathBuf, BTreeMap<PathBuf, String>), PathBuf, Child) {
        let book = self.book("Book", 3);
        let before = digest(&book);
        let output = self.out().join("book.m4b");
        let args = [
            "convert",
            "-q",
            book.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            "--split-at",
            "5s",
        ];
        let child = self.stopped_at(stage, &args);
        ((book, before), output, child)
    }

    /// Every job, after the recovery that opening the workflow runs.
    fn jobs(&self) -> Vec<Value> {
        let out = self.run(&["jobs", "list", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        match serde_json::from_slice(&out.stdout).unwrap() {
            Value::Array(jobs) => jobs,
            other => panic!("not a list: {other}"),
        }
    }

    /// The only job, after recovery.
    fn job(&self) -> Value {
        let mut jobs = self.jobs();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        jobs.remove(0)
    }

    /// The database is sound.
    fn assert_db_ok(&self) {
        let store = aiom4b::workflow::SqliteStore::open(&self.data.join("aiom4b.db")).unwrap();
        assert_eq!(store.integrity_check().unwrap(), vec!["ok".to_string()]);
    }

    /// Nothing temporary anywhere below the world's folder (or `extra`).
    fn assert_no_temporaries(&self, extra: &[&Path]) {
        let mut left = leftovers(self.root());
        for dir in extra {
            left.extend(leftovers(dir));
        }
        assert!(left.is_empty(), "left behind: {left:#?}");
    }
}

/// Hidden entries and temporaries (`.part`, `.tmp`, `.lock`) below `dir`.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with('.')
            || name.ends_with(".part")
            || name.ends_with(".tmp")
            || name.ends_with(".lock")
        {
            out.push(path.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(leftovers(&path));
        }
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits for the child to end (killing it after [`DEADLINE`]) and returns its output.
fn finish(child: Child) -> Output {
    crate::common::wait_with_deadline(child, DEADLINE)
}

/// Waits until `child` is stopped (state `T` in `/proc/PID/stat`); fails the test with its
/// output if it ends first.
fn stopped(mut child: Child, stage: &str) -> Child {
    let start = Instant::now();
    loop {
        let stat = fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
        // The state follows the command name in parentheses, which may contain spaces.
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        {
            return child;
        }
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the program ended before reaching {stage:?}: {:?}\nstdout: {}\nstderr: {}",
                out.status,
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        assert!(start.elapsed() < DEADLINE, "never reached {stage:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, sig).unwrap();
}

/// `kill -9` and reap (so its pid is gone for the next start's recovery).
fn kill9(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Lets a stopped child go on and waits for it.
fn resume(child: Child) -> Output {
    signal(&child, rustix::process::Signal::CONT);
    finish(child)
}

fn category(job: &Value) -> &str {
    job["error"]["category"].as_str().unwrap_or("")
}

fn message(job: &Value) -> &str {
    job["error"]["message"].as_str().unwrap_or("")
}

/// A disk for the child alone: in a private mount namespace (a user namespace too when not
/// root, so no privileges are needed), a tmpfs of `size` on `dir`, read-only if asked. The
/// mount vanishes with the child.
fn private_tmpfs(cmd: &mut Command, dir: &Path, size: &str, read_only: bool) {
    let target = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let data = CString::new(format!("size={size}")).unwrap();
    let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
    let root = uid.is_root();
    let uid_map = format!("0 {} 1", uid.as_raw());
    let gid_map = format!("0 {} 1", gid.as_raw());
    // SAFETY: between fork and exec the closure only makes system calls and writes to /proc
    // files through preallocated buffers; it touches no lock another thread could hold.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            let mut flags = libc::CLONE_NEWNS;
            if !root {
                flags |= libc::CLONE_NEWUSER;
            }
            check(libc::unshare(flags))?;
            if !root {
                fs::write("/proc/self/setgroups", "deny")?;
                fs::write("/proc/self/uid_map", &uid_map)?;
                fs::write("/proc/self/gid_map", &gid_map)?;
            }
            // Keep the mount out of the parent's namespace (systemd makes "/" shared).
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            let mut mflags = 0;
            if read_only {
                mflags |= libc::MS_RDONLY;
            }
            check(libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                mflags,
                data.as_ptr().cast(),
            ))
        });
    }
}

fn digest(dir: &Path) -> BTreeMap<PathBuf, String> {
    digest_tree(dir)
}

// --- kill -9 at every stage ------------------------------------------------------------------

/// What the job record must say after a kill at `stage` and the next start's recovery.
fn assert_recovered(stage: &str, job: &Value, output: &Path) {
    match stage {
        "publish" | "backup" | "convert" => {
            assert_eq!(job["status"], "failed", "{stage}: {job}");
            assert_eq!(category(job), "system", "{stage}: {job}");
            assert!(message(job).starts_with("interrupted"), "{stage}: {job}");
            assert!(!output.exists(), "{stage}: nothing is published");
        }
        "published" => {
            // Killed after the rename, before the record said so: the book is complete, and
            // the job says so instead of "crash".
            assert_eq!(job["status"], "completed", "{stage}: {job}");
            assert!(job["error"].is_null(), "{stage}: {job}");
            assert_eq!(job["output_path"], output.to_string_lossy().as_ref());
            let v = crate::common::run(["verify", output.to_str().unwrap()]);
            assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
        }
        other => unreachable!("{other}"),
    }
}

#[test]
fn kill_9_at_every_stage_loses_nothing_and_leaves_nothing() {
    for stage in ["backup", "convert", "publish", "published"] {
        let w = World::new();
        let book = w.book("Book", 3);
        let before = digest(&book);
        let output = w.out().join("book.m4b");
        // -o outside DATA_DIR (its part lives beside it) and a narrator (the tag patcher's
        // sibling temporary).
        let child = w.stopped_at(
            stage,
            &[
                "convert",
                "-q",
                book.to_str().unwrap(),
                "-o",
                output.to_str().unwrap(),
                "--narrator",
                "Someone",
            ],
        );
        if stage == "convert" {
            // As if killed while the tags were patched: the part's sibling exists too.
            let part = fs::read_dir(w.out())
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".part"))
                .expect("the part exists while converting");
            fs::write(aiom4b::__internals::sibling_temp(&part, "tags"), b"half").unwrap();
            // And while an edit rewrote it (convert --asin applies the metadata to the part).
            fs::write(aiom4b::__internals::sibling_temp(&part, "edit"), b"half").unwrap();
        }
        kill9(child);
        let job = w.job();
        assert_recovered(stage, &job, &output);
        assert_eq!(digest(&book), before, "{stage}: sources unchanged");
        w.assert_no_temporaries(&[]);
        w.assert_db_ok();
    }
}

#[test]
fn kill_9_while_publishing_split_parts_is_finished_by_recovery() {
    // `--split-at 5s` on three files of 4 s: three parts. The record names the parts once all
    // are written and verified; a kill before, between or after their renames is finished by
    // the next start (roll forward), so the user gets all parts or, before that point, none.
    for stage in ["publish", "publish-part", "published"] {
        let w = World::new();
        let ((book, before), output, child) = w.split_stopped_at(stage);
        let published_before_kill = fs::read_dir(w.out())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(" of 3.m4b"))
            .count();
        assert_eq!(
            published_before_kill,
            match stage {
                "publish" => 0,
                "publish-part" => 1,
                _ => 3,
            },
            "{stage}"
        );
        kill9(child);
        let job = w.job();
        assert_eq!(job["status"], "completed", "{stage}: {job}");
        assert!(job["error"].is_null(), "{stage}: {job}");
        let parts: Vec<PathBuf> = job["output_parts"]
            .as_array()
            .unwrap_or_else(|| panic!("{stage}: no parts in {job}"))
            .iter()
            .map(|p| PathBuf::from(p.as_str().unwrap()))
            .collect();
        assert_eq!(parts.len(), 3, "{stage}: {job}");
        let mut bytes = 0;
        for (k, p) in parts.iter().enumerate() {
            assert_eq!(
                p.file_name().unwrap().to_string_lossy(),
                format!("book - Part {} of 3.m4b", k + 1)
            );
            let v = crate::common::run(["verify", p.to_str().unwrap()]);
            assert_eq!(v.status.code(), Some(0), "{stage}: {}", text(&v.stderr));
            bytes += fs::metadata(p).unwrap().len();
        }
        assert_eq!(job["output_bytes"].as_u64(), Some(bytes), "{stage}: {job}");
        assert!(!output.exists(), "{stage}: the whole book is not published");
        assert_eq!(digest(&book), before, "{stage}: sources unchanged");
        w.assert_no_temporaries(&[]);
        w.assert_db_ok();
    }
}

#[test]
fn kill_9_while_writing_split_parts_leaves_nothing() {
    // Killed while the parts are written (before the record names them): the job failed as
    // interrupted, no part is published, and every temporary is gone.
    let w = World::new();
    let (_, _, child) = w.split_stopped_at("split");
    let temps = fs::read_dir(w.out())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .count();
    assert!(
        temps >= 2,
        "the book's part and a written part exist: {temps}"
    );
    kill9(child);
    let job = w.job();
    assert_eq!(job["status"], "failed", "{job}");
    assert!(message(&job).starts_with("interrupted"), "{job}");
    assert_eq!(
        fs::read_dir(w.out()).unwrap().count(),
        0,
        "nothing is published"
    );
    w.assert_no_temporaries(&[]);
    w.assert_db_ok();
}

#[test]
fn kill_9_during_a_move_to_another_file_system_is_cleaned_and_a_later_move_works() {
    let w = World::new();
    let book = w.book("Book", 2);
    let before = digest(&book);
    // /dev/shm is a tmpfs on Linux: another file system than the temporary folder, so the move
    // is a checked copy through a staging folder.
    let target = tempfile::tempdir_in("/dev/shm").expect("/dev/shm (tmpfs) is needed");
    let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&fs::metadata(p).unwrap());
    assert_ne!(
        dev(target.path()),
        dev(&book),
        "/dev/shm must be another file system"
    );
    let args = [
        "convert",
        "-q",
        book.to_str().unwrap(),
        "--move-source-to",
        target.path().to_str().unwrap(),
    ];
    let child = w.stopped_at("move", &args);
    assert!(
        !leftovers(target.path()).is_empty(),
        "the staging folder and its lock exist while moving"
    );
    kill9(child);
    let job = w.job();
    // The book was published before the move began: completed, with what was left undone.
    assert_eq!(job["status"], "completed", "{job}");
    assert!(message(&job).contains("post-action"), "{job}");
    assert_eq!(digest(&book), before);
    w.assert_no_temporaries(&[target.path()]);
    assert!(fs::read_dir(target.path()).unwrap().next().is_none());

    // The same move again works.
    let out = w.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!book.exists(), "moved away");
    assert_eq!(digest(&target.path().join("Book")), before);
    w.assert_no_temporaries(&[target.path()]);
    w.assert_db_ok();
}

#[test]
fn kill_9_before_deleting_the_sources_keeps_them() {
    let w = World::new();
    let book = w.book("Book", 2);
    let before = digest(&book);
    let child = w.stopped_at(
        "remove",
        &["convert", "-q", book.to_str().unwrap(), "--delete-source"],
    );
    kill9(child);
    let job = w.job();
    assert_eq!(job["status"], "completed", "{job}");
    assert!(message(&job).contains("post-action (delete)"), "{job}");
    // The record keeps the library's words; `aiom4b status` adds the command to run.
    assert!(job["error"]["remedy"]
        .as_str()
        .unwrap()
        .contains("from its backup"));
    assert_eq!(digest(&book), before);
    w.assert_no_temporaries(&[]);
    w.assert_db_ok();
}

// --- signals ---------------------------------------------------------------------------------

#[test]
fn sigterm_and_sighup_cancel_like_ctrl_c() {
    use rustix::process::Signal;
    for (sig, code) in [(Signal::TERM, 143), (Signal::HUP, 129), (Signal::INT, 130)] {
        let w = World::new();
        let book = w.cd_book("Book", 2, 30.0);
        let before = digest(&book);
        let output = w.out().join("book.m4b");
        let child = w.stopped_at(
            "convert",
            &[
                "convert",
                book.to_str().unwrap(),
                "-o",
                output.to_str().unwrap(),
            ],
        );
        // Pending while stopped; handled as soon as it goes on.
        signal(&child, sig);
        let out = resume(child);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{sig:?}: {}",
            text(&out.stderr)
        );
        let job = w.job();
        assert_eq!(job["status"], "cancelled", "{sig:?}: {job}");
        assert!(!output.exists());
        assert_eq!(digest(&book), before);
        w.assert_no_temporaries(&[]);
        w.assert_db_ok();
    }
}

#[test]
fn sigint_while_probing_exits_130() {
    let w = World::new();
    let book = w.book("Book", 2);
    let child = w.stopped_at("probe", &["probe", book.to_str().unwrap()]);
    signal(&child, rustix::process::Signal::INT);
    let out = resume(child);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
}

// --- races -----------------------------------------------------------------------------------

#[test]
fn a_lost_rename_race_keeps_the_other_file_and_leaves_no_temporary() {
    let w = World::new();
    let book = w.book("Book", 2);
    let output = w.out().join("book.m4b");
    let child = w.stopped_at(
        "publish",
        &[
            "convert",
            "-q",
            book.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ],
    );
    fs::write(&output, b"someone else's file").unwrap();
    let out = resume(child);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(fs::read(&output).unwrap(), b"someone else's file");
    let job = w.job();
    assert_eq!(job["status"], "failed");
    assert_eq!(category(&job), "output", "{job}");
    assert!(job["output_path"].is_null(), "{job}");
    w.assert_no_temporaries(&[]);
    w.assert_db_ok();
}

#[test]
fn two_writers_of_one_output_one_wins_and_nothing_is_left() {
    let w = World::new();
    let book = w.book("Book", 2);
    let output = w.out().join("book.m4b");
    let args = [
        "convert",
        "-q",
        book.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ];
    let first = w.stopped_at("publish", &args);
    let second = w.run(&args);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    let won = fs::read(&output).unwrap();
    let out = resume(first);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        fs::read(&output).unwrap(),
        won,
        "the winner's file is untouched"
    );
    let jobs = w.jobs();
    let statuses: Vec<&str> = jobs.iter().map(|j| j["status"].as_str().unwrap()).collect();
    assert!(
        statuses.contains(&"completed") && statuses.contains(&"failed"),
        "{jobs:?}"
    );
    w.assert_no_temporaries(&[]);
    w.assert_db_ok();
}

// --- full and read-only disks ----------------------------------------------------------------

#[test]
fn a_full_disk_is_an_output_error_and_leaves_nothing() {
    let w = World::new();
    let book = w.book("Book", 3);
    let before = digest(&book);
    let output = w.out().join("book.m4b");
    let mut cmd = w.command(&[
        "convert",
        "-q",
        "--no-backup",
        book.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    // The book needs ~190 KB; the database, its WAL and the log stay far below this.
    crate::common::limit_file_size(&mut cmd, 120_000);
    let out = finish(cmd.spawn().unwrap());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("disk full at"), "{stderr}");
    assert!(stderr.contains("(output error)"), "{stderr}");
    let job = w.job();
    assert_eq!(category(&job), "output", "{job}");
    assert!(!output.exists());
    assert_eq!(digest(&book), before);
    w.assert_no_temporaries(&[]);
    w.assert_db_ok();
}

#[test]
fn a_read_only_output_folder_is_an_output_error() {
    let w = World::new();
    let book = w.book("Book", 2);
    let out_dir = w.out();
    let output = out_dir.join("book.m4b");
    let mut cmd = w.command(&[
        "convert",
        "-q",
        book.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    private_tmpfs(&mut cmd, &out_dir, "1m", true);
    let out = finish(cmd.spawn().unwrap());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let job = w.job();
    assert_eq!(category(&job), "output", "{job}");
    assert!(message(&job).starts_with("cannot write"), "{job}");
    w.assert_no_temporaries(&[]);
    w.assert_db_ok();
}

#[test]
fn a_move_target_that_cannot_take_the_sources_is_refused_before_converting() {
    for (read_only, code, words) in [
        (true, 2, "cannot write to the --move-source-to folder"),
        (
            false,
            1,
            "not enough free space to move the source folder there",
        ),
    ] {
        let w = World::new();
        let book = w.book("Book", 3);
        let before = digest(&book);
        let target = w.root().join("elsewhere");
        fs::create_dir_all(&target).unwrap();
        let mut cmd = w.command(&[
            "convert",
            "-q",
            book.to_str().unwrap(),
            "--move-source-to",
            target.to_str().unwrap(),
        ]);
        // Read-only, or far smaller than the three MP3s.
        private_tmpfs(&mut cmd, &target, "8k", read_only);
        let out = finish(cmd.spawn().unwrap());
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains(words), "{stderr}");
        assert!(
            !stderr.contains("prune"),
            "no advice about backups: {stderr}"
        );
        // Refused before anything was done: no backup, no output, no job.
        assert!(w.jobs().is_empty());
        assert!(crate::common::entries(&w.data.join("backup")).is_empty());
        assert!(crate::common::entries(&w.data.join("output")).is_empty());
        assert_eq!(digest(&book), before);
        w.assert_no_temporaries(&[]);
    }
}

// --- requests that would damage what the user owns -------------------------------------------

#[test]
fn an_output_never_replaces_a_source() {
    let w = World::new();
    let book = w.book("Book", 2);
    let before = digest(&book);
    let first = fs::read_dir(&book)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "mp3"))
        .unwrap();
    let out_dir = w.out();
    let hard = out_dir.join("hard.m4b");
    fs::hard_link(&first, &hard).unwrap();
    let soft = out_dir.join("soft.m4b");
    std::os::unix::fs::symlink(&first, &soft).unwrap();
    let through_dots = book
        .join("..")
        .join("Book")
        .join(first.file_name().unwrap());
    let backup_dir = w.data.join("backup");
    fs::create_dir_all(&backup_dir).unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (first.clone(), "it is the source file"),
        (through_dots, "it is the source file"),
        (hard.clone(), "the same file"),
        (soft.clone(), "through a link"),
        (book.join("new.mp3"), "would become part of the book"),
        (backup_dir.join("x.m4b"), "backup folder"),
        (w.data.join("aiom4b.db"), "job database"),
    ];
    for (target, words) in cases {
        let out = w.run(&[
            "convert",
            "-q",
            book.to_str().unwrap(),
            "-o",
            target.to_str().unwrap(),
            "--overwrite",
            "--no-backup",
        ]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {}",
            target.display(),
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        assert!(stderr.contains(words), "{}: {stderr}", target.display());
        assert_eq!(digest(&book), before, "{}", target.display());
    }
    // The output inside a folder that is deleted afterwards would be deleted with it.
    let out = w.run(&[
        "convert",
        "-q",
        book.to_str().unwrap(),
        "-o",
        book.join("book.m4b").to_str().unwrap(),
        "--delete-source",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(digest(&book), before);
    assert_eq!(fs::read(&hard).unwrap(), fs::read(&first).unwrap());
    assert!(w.jobs().is_empty(), "refused before a job exists");
    w.assert_no_temporaries(&[]);
}

#[test]
fn a_data_folder_inside_the_book_is_never_part_of_it() {
    let w = World::new();
    let book = w.book("Book", 2);
    // DATA_DIR inside the book folder, converted twice: the second book must not contain the
    // first one's backup (its MP3s) and no backup may hold the live database.
    let w = World {
        data: book.join("data"),
        ..w
    };
    for _ in 0..2 {
        let out = w.run(&["convert", "-q", "--json", book.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["chapters"].as_array().unwrap().len(), 2, "{report}");
        assert_eq!(report["tracks"], 2, "{report}");
    }
    let backups = crate::common::entries(&w.data.join("backup"));
    assert_eq!(backups.len(), 2, "{backups:?}");
    for b in &backups {
        let files = digest(&w.data.join("backup").join(b));
        assert!(
            files.keys().all(|k| !k.starts_with("data")),
            "the data folder was backed up: {files:?}"
        );
    }
    // A source inside the backup folder is refused before anything happens.
    let inside = w.data.join("backup").join(&backups[0]);
    let out = w.run(&["convert", "-q", inside.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("inside aiom4b's backup folder"));
    // Moving or deleting a book that holds the data folder would take the database along.
    let out = w.run(&["convert", "-q", book.to_str().unwrap(), "--delete-source"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(book.join("data").join("aiom4b.db").exists());
    w.assert_db_ok();
}

// --- the job record after a failure behind the published output ------------------------------

#[test]
fn a_store_that_fails_after_publishing_does_not_fail_the_job() {
    use aiom4b::workflow::{
        Config, ConversionResult, Hooks, Job, JobFilter, JobStats, JobStatus, JobStore, Overrides,
        SqliteStore, Workflow,
    };
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// The real store, whose writes fail once `full` is set (as when the disk under the
    /// database fills up).
    struct FillingStore {
        inner: SqliteStore,
        full: Arc<AtomicBool>,
    }
    type R<T> = Result<T, aiom4b::workflow::jobs::StoreError>;
    impl FillingStore {
        fn check(&self) -> R<()> {
            if self.full.load(Ordering::SeqCst) {
                return Err(aiom4b::workflow::jobs::StoreError::Sqlite {
                    path: PathBuf::from("aiom4b.db"),
                    source: rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                        Some("database or disk is full".into()),
                    ),
                });
            }
            Ok(())
        }
    }
    impl JobStore for FillingStore {
        fn insert(&self, job: &Job) -> R<()> {
            self.check()?;
            self.inner.insert(job)
        }
        fn update(&self, job: &Job, expected: JobStatus) -> R<bool> {
            self.check()?;
            self.inner.update(job, expected)
        }
        fn set_progress(&self, id: uuid::Uuid, percent: f64) -> R<()> {
            self.check()?;
            self.inner.set_progress(id, percent)
        }
        fn get(&self, id: uuid::Uuid) -> R<Option<Job>> {
            self.inner.get(id)
        }
        fn find_by_prefix(&self, prefix: &str) -> R<Vec<Job>> {
            self.inner.find_by_prefix(prefix)
        }
        fn list(&self, filter: &JobFilter) -> R<Vec<Job>> {
            self.inner.list(filter)
        }
        fn stats(&self) -> R<JobStats> {
            self.inner.stats()
        }
        fn archive_finished(&self, before: chrono::DateTime<chrono::Utc>) -> R<usize> {
            self.inner.archive_finished(before)
        }
        fn delete_finished(&self, id: uuid::Uuid) -> R<bool> {
            self.inner.delete_finished(id)
        }
        fn append_log(&self, lines: &[aiom4b::workflow::jobs::JobLogLine]) -> R<()> {
            self.check()?;
            self.inner.append_log(lines)
        }
        fn job_log(
            &self,
            id: uuid::Uuid,
            after: i64,
            limit: usize,
        ) -> R<Vec<aiom4b::workflow::jobs::JobLogLine>> {
            self.inner.job_log(id, after, limit)
        }
        fn find_idempotency_key(
            &self,
            key: &str,
            caller: &str,
            since: chrono::DateTime<chrono::Utc>,
        ) -> R<Option<aiom4b::workflow::jobs::IdempotencyRecord>> {
            self.inner.find_idempotency_key(key, caller, since)
        }
        fn record_idempotency_key(
            &self,
            record: &aiom4b::workflow::jobs::IdempotencyRecord,
            expired_before: chrono::DateTime<chrono::Utc>,
        ) -> R<()> {
            self.check()?;
            self.inner.record_idempotency_key(record, expired_before)
        }
        fn claim_next(
            &self,
            owner: &aiom4b::workflow::process::ProcessIdentity,
            ttl: Duration,
        ) -> R<Option<Job>> {
            self.check()?;
            self.inner.claim_next(owner, ttl)
        }
        fn renew_lease(
            &self,
            id: uuid::Uuid,
            token: uuid::Uuid,
            ttl: Duration,
        ) -> R<Option<aiom4b::workflow::jobs::Renewal>> {
            self.check()?;
            self.inner.renew_lease(id, token, ttl)
        }
        fn requeue_expired(&self, max_attempts: u32) -> R<Vec<(uuid::Uuid, JobStatus)>> {
            self.check()?;
            self.inner.requeue_expired(max_attempts)
        }
        fn release_lease(&self, id: uuid::Uuid, token: uuid::Uuid, attempts: u32) -> R<bool> {
            self.check()?;
            self.inner.release_lease(id, token, attempts)
        }
        fn request_cancel(&self, id: uuid::Uuid) -> R<aiom4b::workflow::CancelRequest> {
            self.check()?;
            self.inner.request_cancel(id)
        }
        fn cancel_requested(&self, id: uuid::Uuid) -> R<bool> {
            self.check()?;
            self.inner.cancel_requested(id)
        }
        fn queue_stats(&self) -> R<aiom4b::workflow::QueueStats> {
            self.inner.queue_stats()
        }
    }

    let w = World::new();
    let book = w.book("Book", 1);
    let mut o = Overrides::default();
    o.set(
        aiom4b::workflow::config::Setting::DataDir,
        w.data.to_string_lossy(),
    );
    let config = Config::load_with(&o, &|_| None, None).unwrap();
    config.ensure_data_dirs().unwrap();
    let full = Arc::new(AtomicBool::new(false));
    let store = FillingStore {
        inner: SqliteStore::open(&config.db_path()).unwrap(),
        full: full.clone(),
    };
    let flag = full.clone();
    let wf = Workflow::with_store(config.clone(), Arc::new(store))
        .unwrap()
        .with_hooks(Hooks {
            at_stage: Some(Arc::new(move |stage| {
                if stage == "published" {
                    flag.store(true, Ordering::SeqCst);
                }
            })),
            ..Hooks::default()
        });
    let mut request = aiom4b::workflow::JobRequest::default();
    request.folders = vec![book.clone()];
    request.backup = Some(false);
    let outcome = wf
        .run_job(request, |ctx| {
            fs::write(ctx.part_path(), b"a finished book").unwrap();
            Ok(ConversionResult {
                output: ctx.part_path().to_path_buf(),
                ..Default::default()
            })
        })
        .expect("a published book is not an error");
    assert_eq!(outcome.job.status, JobStatus::Completed);
    let output = outcome.job.output_path.clone().unwrap();
    assert_eq!(fs::read(&output).unwrap(), b"a finished book");
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("the job record could not be updated")),
        "{:?}",
        outcome.warnings
    );
    drop(wf);

    // On disk the record still says `processing` (its last good write, which already named the
    // output). Once its process is gone, the next start records it as completed, not as a crash.
    let conn = rusqlite::Connection::open(config.db_path()).unwrap();
    conn.execute("UPDATE jobs SET pid = 4194305", []).unwrap();
    drop(conn);
    let wf = Workflow::open(config).unwrap();
    let job = wf.find_job(&outcome.job.id.to_string()).unwrap();
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert!(job.error.is_none(), "{job:?}");
    assert_eq!(job.output_path.as_deref(), Some(output.as_path()));
    w.assert_no_temporaries(&[]);
}

#[test]
fn a_deletion_that_fails_halfway_is_restored_and_says_so() {
    let w = World::new();
    let book = w.book("Book", 2);
    // An empty subfolder that is a mount point in the program's view: deleting the folder
    // fails there (EBUSY) after the files are gone, and so does removing the remains after
    // the restore, which must not make the restore look failed.
    let sub = book.join("sub");
    fs::create_dir(&sub).unwrap();
    let before = digest(&book);
    let mut cmd = w.command(&["convert", "-q", book.to_str().unwrap(), "--delete-source"]);
    private_tmpfs(&mut cmd, &sub, "64k", false);
    let out = finish(cmd.spawn().unwrap());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the book was written, but"), "{stderr}");
    assert!(
        stderr.contains("the folder was restored from backup"),
        "{stderr}"
    );
    assert!(!stderr.contains("ALSO failed"), "{stderr}");
    assert_eq!(digest(&book), before, "the folder is whole again");
    assert!(sub.is_dir());
    let job = w.job();
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(category(&job), "output", "{job}");
    assert!(job["output_path"]
        .as_str()
        .is_some_and(|p| Path::new(p).is_file()));
    w.assert_db_ok();
}

#[test]
fn a_deletion_that_fails_halfway_with_an_encrypted_backup_says_how_to_restore_it() {
    // No key is on the machine, so the automatic rollback cannot decrypt: the error must say
    // so and how to restore, and that restore must give the folder back whole.
    use age::secrecy::ExposeSecret;
    let w = World::new();
    let book = w.book("Book", 2);
    let sub = book.join("sub");
    fs::create_dir(&sub).unwrap();
    let before = digest(&book);
    let id = age::x25519::Identity::generate();
    let key = w.root().join("key.txt");
    fs::write(&key, format!("{}\n", id.to_string().expose_secret())).unwrap();
    let mut cmd = w.command(&["convert", "-q", book.to_str().unwrap(), "--delete-source"]);
    cmd.env("BACKUP_ENCRYPT_TO", id.to_public().to_string());
    private_tmpfs(&mut cmd, &sub, "64k", false);
    let out = finish(cmd.spawn().unwrap());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ALSO failed"), "{stderr}");
    let job = w.job();
    let remedy = job["error"]["remedy"].as_str().unwrap_or_default();
    assert!(remedy.contains("--identity FILE"), "{job}");
    let backup = PathBuf::from(job["backup_paths"][0].as_str().unwrap());
    let name = backup.file_name().unwrap().to_str().unwrap();

    let out = w.run(&[
        "backup",
        "restore",
        name,
        "--identity",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(digest(&book), before, "the folder is whole again");
}

// --- the right category and advice ------------------------------------------------------------

#[test]
fn an_mp3_without_read_permission_is_a_permission_problem_not_a_bad_file() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let w = World::new();
    let book = w.book("Book", 2);
    // Readable for others down to the book, so an unprivileged run can enter it.
    let mut dir = book.clone();
    while dir != w.root() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        dir.pop();
    }
    fs::set_permissions(w.root(), fs::Permissions::from_mode(0o755)).unwrap();
    let locked = fs::read_dir(&book)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "mp3"))
        .unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = w.command(&["probe", book.to_str().unwrap()]);
    if rustix::process::geteuid().is_root() {
        // Root reads any file: probe as nobody, to whom the permission applies, with a copy of
        // the program that nobody can run wherever the checkout is (e.g. under a 0700 /root).
        let bin = w.root().join("aiom4b");
        fs::copy(env!("CARGO_BIN_EXE_aiom4b"), &bin).unwrap();
        let mut as_nobody = Command::new(&bin);
        as_nobody
            .args(["probe", book.to_str().unwrap()])
            .current_dir(w.root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .uid(65_534)
            .gid(65_534);
        cmd = as_nobody;
    }
    let out = finish(cmd.spawn().unwrap());
    let all = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("cannot be read: Permission denied"), "{all}");
    assert!(all.contains("chmod"), "{all}");
    assert!(!all.contains("not an MP3"), "{all}");
}
