//! The workflow around the engine, tested with fake converters and small folders of dummy
//! files (backups don't care whether the bytes are audio).
//!
//! The crash tests re-run this test binary as a child (`helper_child` with
//! `AIOM4B_TEST_HELPER` set), let it reach a chosen point, `kill -9` it, and check what the next
//! start finds.
use aiom4b::workflow::backup::{BackupStore, CLEANUP_LOG};
use aiom4b::workflow::config::{Config, ConfigError, Origin, Overrides, Setting};
use aiom4b::workflow::logfile::{RotatingFile, RotationPolicy};
use aiom4b::workflow::{
    BatchOptions, BookStatus, ConversionResult, ConvertFn, Error, ErrorCategory, Hooks, JobContext,
    JobError, JobEvent, JobEvents, JobFilter, JobRequest, JobRunner, JobStatus, NoEvents,
    PostAction, SqliteStore, Workflow,
};
use aiom4b::BookMetadata;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HELPER_ENV: &str = "AIOM4B_TEST_HELPER";
const HELPER_DATA_ENV: &str = "AIOM4B_TEST_HELPER_DATA";
const HELPER_SOURCE_ENV: &str = "AIOM4B_TEST_HELPER_SOURCE";

/// A configuration on `data` with every other setting at its default (the process
/// environment is ignored so that a developer's DATA_DIR can't leak in).
fn config(data: &Path, extra: &[(Setting, &str)]) -> Config {
    let mut o = Overrides::default();
    o.set(Setting::DataDir, data.to_string_lossy());
    for (k, v) in extra {
        o.set(*k, *v);
    }
    Config::load_with(&o, &|_| None, None).unwrap()
}

/// A book folder `root/name` with files `(relative path, size)` of pseudo-random bytes.
fn make_book(root: &Path, name: &str, files: &[(&str, usize)]) -> PathBuf {
    let dir = root.join(name);
    for (i, (rel, size)) in files.iter().enumerate() {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let bytes: Vec<u8> = (0..*size).map(|j| (j * 31 + i * 7) as u8).collect();
        fs::write(p, bytes).unwrap();
    }
    dir
}

/// A converter that writes a small file where the workflow asks and names the book.
fn fake_convert(ctx: &JobContext<'_>) -> Result<ConversionResult, JobError> {
    for i in 0..=10 {
        ctx.progress(i as f64 / 10.0);
    }
    fs::write(ctx.part_path(), b"not really an m4b").unwrap();
    Ok(ConversionResult {
        output: ctx.part_path().to_path_buf(),
        metadata: BookMetadata {
            title: Some("Dune: Part/One".into()),
            author: Some("Frank Herbert".into()),
            ..Default::default()
        },
        audio_duration_secs: Some(3600.0),
        ..Default::default()
    })
}

fn hidden_entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn job_lifecycle_listing_and_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(
        tmp.path(),
        "Dune",
        &[("01.mp3", 3000), ("CD2/02.mp3", 2000)],
    );
    let wf = Workflow::open(config(&tmp.path().join("data"), &[])).unwrap();
    let mut req = JobRequest::default();
    req.folders = vec![book.clone()];
    req.options = serde_json::json!({"bitrate": "64k"});
    req.name_template = Some("{author} - {title}".into());
    let out = wf.run_job(req, fake_convert).unwrap();
    let job = &out.job;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(job.progress_percent, 100.0);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.input_bytes, Some(5000));
    assert_eq!(job.audio_duration_secs, Some(3600.0));
    assert_eq!(job.options["bitrate"], "64k");
    let output = job.output_path.clone().unwrap();
    assert_eq!(
        output.file_name().unwrap(),
        "Frank Herbert - Dune - Part-One.m4b"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&output).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(job.backup_paths.len(), 1);
    assert!(job.backup_paths[0].join("metadata.txt").is_file());
    let stages: Vec<_> = job.stage_timings.iter().map(|t| t.stage.as_str()).collect();
    assert_eq!(stages, ["prepare", "backup", "convert", "publish"]);
    assert!(
        hidden_entries(&wf.config().output_dir()).is_empty(),
        "no .part left"
    );

    // The same template again: never overwrites, numbers the second file.
    let mut req = JobRequest::default();
    req.folders = vec![book.clone()];
    req.name_template = Some("{author} - {title}".into());
    req.backup = Some(false);
    let second = wf.run_job(req, fake_convert).unwrap().job;
    assert_eq!(
        second.output_path.unwrap().file_name().unwrap(),
        "Frank Herbert - Dune - Part-One (2).m4b"
    );
    assert!(second.backup_paths.is_empty());

    // A failing converter: categorized, with remedy, .part removed.
    let failing = |ctx: &JobContext<'_>| -> Result<ConversionResult, JobError> {
        fs::write(ctx.part_path(), b"half").unwrap();
        Err(JobError::new(
            ErrorCategory::Input,
            "01.mp3: not an MP3",
            "replace the file",
        ))
    };
    let mut req = JobRequest::default();
    req.folders = vec![book.clone()];
    req.backup = Some(false);
    let failed = wf.run_job(req, failing).unwrap().job;
    assert_eq!(failed.status, JobStatus::Failed);
    let err = failed.error.clone().unwrap();
    assert_eq!(err.category, ErrorCategory::Input);
    assert_eq!(err.remedy, "replace the file");
    assert!(hidden_entries(&wf.config().output_dir()).is_empty());

    // A missing folder is an input error recorded in a job, not a panic.
    let missing = wf
        .run_job(
            {
                let mut o = JobRequest::default();
                o.folders = vec![tmp.path().join("nope")];
                o
            },
            fake_convert,
        )
        .unwrap()
        .job;
    assert_eq!(missing.status, JobStatus::Failed);
    assert_eq!(missing.error.unwrap().category, ErrorCategory::Input);

    // Listing, filtering, lookup by prefix, stats.
    let all = wf.store().list(&JobFilter::default()).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].id, missing.id, "newest first");
    let completed = wf
        .store()
        .list(&JobFilter {
            status: Some(JobStatus::Completed),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(completed.len(), 2);
    assert_eq!(wf.find_job(&job.id.to_string()[..8]).unwrap().id, job.id);
    assert!(matches!(wf.find_job("zzz"), Err(Error::JobNotFound(_))));
    let stats = wf.store().stats().unwrap();
    assert_eq!((stats.total, stats.completed, stats.failed), (4, 2, 2));
    assert_eq!(stats.success_rate, Some(0.5));
    assert_eq!(stats.failures_by_category, vec![(ErrorCategory::Input, 2)]);

    // Archival moves finished jobs out of the live table but keeps them findable.
    let n = wf
        .store()
        .archive_finished(chrono::Utc::now() + chrono::Duration::seconds(1))
        .unwrap();
    assert_eq!(n, 4);
    assert!(wf.store().list(&JobFilter::default()).unwrap().is_empty());
    assert_eq!(wf.store().get(job.id).unwrap().unwrap().id, job.id);
    assert_eq!(wf.store().stats().unwrap().total, 4);
}

/// Records every event as text, with the job it was about.
#[derive(Default)]
struct EventLog(Mutex<Vec<(uuid::Uuid, String)>>);

impl JobEvents for EventLog {
    fn event(&self, job: uuid::Uuid, event: JobEvent<'_>) {
        let text = match event {
            JobEvent::Started { .. } => "started".to_string(),
            JobEvent::Step(step) => step.to_string(),
            JobEvent::Progress { .. } => "progress".to_string(),
            JobEvent::Finished(outcome) => format!("finished {}", outcome.job.status),
            other => format!("{other:?}"),
        };
        self.0.lock().unwrap().push((job, text));
    }
}

#[test]
fn a_created_job_waits_pending_survives_recovery_and_runs_later_with_events() {
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(tmp.path(), "Queued", &[("a.mp3", 100)]);
    let data = tmp.path().join("data");
    let wf = Workflow::open(config(&data, &[])).unwrap();
    let runner = JobRunner::new(&wf, ConvertFn(fake_convert));
    let queued = runner
        .create({
            let mut o = JobRequest::default();
            o.folders = vec![book.clone()];
            o.backup = Some(false);
            o
        })
        .unwrap();
    let id = queued.job().id;
    let stored = wf.store().get(id).unwrap().unwrap();
    assert_eq!(stored.status, JobStatus::Pending);
    assert_eq!(stored.owner, None, "a queued job belongs to no process yet");
    // Another start recovers interrupted jobs; a queued one is not interrupted.
    let other = Workflow::open(config(&data, &[])).unwrap();
    assert_eq!(
        other.store().get(id).unwrap().unwrap().status,
        JobStatus::Pending
    );

    let log = EventLog::default();
    let outcome = runner.run_queued(queued, &log).unwrap();
    assert_eq!(outcome.job.id, id);
    assert_eq!(
        outcome.job.status,
        JobStatus::Completed,
        "{:?}",
        outcome.job.error
    );
    assert!(outcome.job.owner.is_some());
    assert!(outcome.job.output_path.as_ref().unwrap().is_file());
    let events = log.0.into_inner().unwrap();
    assert!(events.iter().all(|(job, _)| *job == id));
    let mut steps: Vec<_> = events.into_iter().map(|(_, e)| e).collect();
    steps.dedup();
    assert_eq!(
        steps,
        [
            "started",
            "validate",
            "prepare",
            "convert",
            "progress",
            "publish",
            "finished completed"
        ]
    );
}

#[test]
fn a_pending_job_of_an_earlier_process_is_requeued_from_the_store_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(tmp.path(), "Requeued", &[("a.mp3", 100)]);
    let data = tmp.path().join("data");
    let id = {
        let wf = Workflow::open(config(&data, &[])).unwrap();
        let runner = JobRunner::new(&wf, ConvertFn(fake_convert));
        let mut request = JobRequest::default();
        request.folders = vec![book.clone()];
        request.backup = Some(false);
        runner.create(request).unwrap().job().id
    };
    // A new process: only the store remembers the job.
    let wf = Workflow::open(config(&data, &[])).unwrap();
    let runner = JobRunner::new(&wf, ConvertFn(fake_convert));
    let job = wf.store().get(id).unwrap().unwrap();
    let mut request = JobRequest::default();
    request.backup = Some(false);
    let queued = runner.requeue(job.clone(), request.clone()).unwrap();
    let outcome = runner
        .run_queued(queued, &aiom4b::workflow::NoEvents)
        .unwrap();
    assert_eq!(
        outcome.job.status,
        JobStatus::Completed,
        "{:?}",
        outcome.job.error
    );
    assert_eq!(outcome.job.source_folders, job.source_folders);
    // Only a pending job can be requeued.
    let done = wf.store().get(id).unwrap().unwrap();
    assert!(runner.requeue(done, request).is_err());
    // A finished job's record can be deleted; a pending one cannot.
    assert!(wf.store().delete_finished(id).unwrap());
    assert!(wf.store().get(id).unwrap().is_none());
    assert!(!wf.store().delete_finished(id).unwrap());
    let mut request = JobRequest::default();
    request.folders = vec![book];
    let pending = runner.create(request).unwrap();
    assert!(!wf.store().delete_finished(pending.job().id).unwrap());
}

#[test]
fn transient_failures_are_retried_and_timeouts_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(tmp.path(), "B", &[("a.mp3", 100)]);
    let wf = Workflow::open(config(&tmp.path().join("data"), &[])).unwrap();
    let calls = AtomicUsize::new(0);
    let flaky = |ctx: &JobContext<'_>| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(JobError::new(ErrorCategory::System, "EAGAIN", "retry").transient());
        }
        fake_convert(ctx)
    };
    let mut req = JobRequest::default();
    req.folders = vec![book.clone()];
    req.backup = Some(false);
    let job = wf.run_job(req.clone(), flaky).unwrap().job;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.attempts, 2);

    // A converter that only stops when told: the time limit tells it.
    let stuck = |ctx: &JobContext<'_>| {
        while !ctx.is_cancelled() {
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(JobError::cancelled())
    };
    let started = Instant::now();
    let job = wf
        .run_job(
            {
                let mut o = req;
                o.timeout = Some(Duration::from_millis(200));
                o
            },
            stuck,
        )
        .unwrap()
        .job;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(job.status, JobStatus::Failed);
    let err = job.error.unwrap();
    assert_eq!(err.category, ErrorCategory::Processing);
    assert!(err.message.contains("timed out"), "{}", err.message);
}

/// Spawns this test binary as a helper in `mode`, waits for `marker`, and kills it with SIGKILL.
fn run_helper_and_kill(mode: &str, data: &Path, source: &Path) {
    let marker = data.join("helper-ready");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "workflow::helper_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, mode)
        .env(HELPER_DATA_ENV, data)
        .env(HELPER_SOURCE_ENV, source)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("helper exited early: {status}");
        }
        assert!(Instant::now() < deadline, "helper never got ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap(); // reap it, so its pid is really gone
}

/// The child side of the crash tests, not a test of its own: ignored in a normal run (so it
/// never counts as a pass), run by name with `--ignored` by [`run_helper_and_kill`], which
/// kills it. Run any other way it fails.
#[test]
#[ignore = "not a test: the child process of the kill tests, started by them"]
fn helper_child() {
    let mode = std::env::var(HELPER_ENV).unwrap_or_else(|_| {
        panic!("helper_child is started by the kill tests (run_helper_and_kill), not on its own")
    });
    let data = PathBuf::from(std::env::var(HELPER_DATA_ENV).unwrap());
    let source = PathBuf::from(std::env::var(HELPER_SOURCE_ENV).unwrap());
    let marker = data.join("helper-ready");
    let hang = move || {
        fs::write(&marker, b"").unwrap();
        std::thread::sleep(Duration::from_secs(120));
    };
    let mut wf = Workflow::open(config(&data, &[])).unwrap();
    if mode == "backup" {
        let hang = hang.clone();
        wf = wf.with_hooks(Hooks {
            after_backup_file: Some(Arc::new(move |_| hang())),
            ..Default::default()
        });
    }
    let mut req = JobRequest::default();
    req.folders = vec![source];
    let _ = wf.run_job(req, |ctx| {
        fs::write(ctx.part_path(), b"partial output").unwrap();
        hang();
        fake_convert(ctx)
    });
    panic!("the helper should have been killed");
}

fn assert_recovered(data: &Path) -> Workflow {
    let wf = Workflow::open(config(data, &[])).unwrap();
    let jobs = wf.store().list(&JobFilter::default()).unwrap();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.status, JobStatus::Failed);
    let err = job.error.clone().unwrap();
    assert_eq!(err.category, ErrorCategory::System);
    assert!(err.message.starts_with("interrupted"), "{}", err.message);
    assert!(job.finished_at.is_some());
    assert!(
        hidden_entries(&wf.config().output_dir()).is_empty(),
        "no .part after recovery"
    );
    assert!(
        hidden_entries(&wf.config().backup_dir()).is_empty(),
        "no staging folder after recovery"
    );
    let store = SqliteStore::open(&wf.config().db_path()).unwrap();
    assert_eq!(store.integrity_check().unwrap(), vec!["ok".to_string()]);
    // A second start finds nothing more to do.
    assert!(wf.recover().unwrap().is_empty());
    wf
}

#[test]
fn kill_during_conversion_is_recovered_on_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let book = make_book(tmp.path(), "Book", &[("a.mp3", 5000)]);
    run_helper_and_kill("convert", &data, &book);
    // The state the crash left: a processing job and a .part file.
    let store = SqliteStore::open(&data.join("aiom4b.db")).unwrap();
    let left = aiom4b::workflow::JobStore::list(&store, &JobFilter::default()).unwrap();
    assert_eq!(left[0].status, JobStatus::Processing);
    assert_eq!(hidden_entries(&data.join("output")).len(), 1);
    drop(store);
    let wf = assert_recovered(&data);
    // The backup made before the conversion was complete and stays usable.
    let backups = wf.backups().list().unwrap();
    assert_eq!(backups.len(), 1);
    assert!(wf
        .backups()
        .verify(&backups[0].name)
        .unwrap()
        .problems
        .is_empty());
}

#[test]
fn kill_during_backup_publishes_no_partial_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let book = make_book(
        tmp.path(),
        "Book",
        &[("a.mp3", 5000), ("b.mp3", 5000), ("c.mp3", 10)],
    );
    run_helper_and_kill("backup", &data, &book);
    let staging = hidden_entries(&data.join("backup"));
    assert!(
        staging.iter().any(|n| n.starts_with(".tmp-")),
        "{staging:?}"
    );
    let wf = assert_recovered(&data);
    assert!(wf.backups().list().unwrap().is_empty());
    assert_eq!(fs::read_dir(wf.config().backup_dir()).unwrap().count(), 0);
}

#[test]
fn backup_refuses_when_the_disk_is_too_small() {
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    fs::create_dir(&small).unwrap();
    // A book larger than the free space of the disk it is on, at no cost: a sparse file whose
    // length exceeds what is available (no root, no tmpfs; the check reads lengths only).
    let book = make_book(
        tmp.path(),
        "Big",
        &[("a.mp3", 1_500_000), ("b.mp3", 800_000)],
    );
    let available = aiom4b::workflow::backup::available_space(&small).unwrap();
    fs::File::options()
        .write(true)
        .open(book.join("b.mp3"))
        .unwrap()
        .set_len(available + (1 << 30))
        .unwrap();
    let store = BackupStore::new(small.join("backup"));
    match store.create(&book, None) {
        Err(Error::InsufficientSpace {
            needed, available, ..
        }) => {
            assert!(needed > available);
        }
        other => panic!("expected InsufficientSpace, got {other:?}"),
    }
    assert_eq!(
        fs::read_dir(small.join("backup")).unwrap().count(),
        0,
        "nothing written"
    );

    // Through a job: failed as an output problem with a remedy, nothing converted.
    let wf = Workflow::open(config(&small.join("data"), &[])).unwrap();
    let job = wf
        .run_job(
            {
                let mut o = JobRequest::default();
                o.folders = vec![book];
                o
            },
            |_| panic!("must not convert without a backup"),
        )
        .unwrap()
        .job;
    assert_eq!(job.status, JobStatus::Failed);
    let err = job.error.unwrap();
    assert_eq!(err.category, ErrorCategory::Output);
    assert!(
        err.message.contains("not enough free space"),
        "{}",
        err.message
    );
    assert!(err.remedy.contains("prune"), "{}", err.remedy);
    assert!(hidden_entries(&wf.config().backup_dir()).is_empty());
}

#[test]
fn verify_catches_a_modified_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(
        tmp.path(),
        "Book",
        &[("01.mp3", 4000), ("CD2/02.mp3", 3000), ("metadata.txt", 10)],
    );
    let store = BackupStore::new(tmp.path().join("backup"));
    let info = store.create(&book, None).unwrap();
    assert_eq!(info.files, 3);
    // The source had its own metadata.txt: it is backed up as is, the manifest goes beside it.
    assert_eq!(
        fs::read(info.path.join("metadata.txt")).unwrap(),
        fs::read(book.join("metadata.txt")).unwrap()
    );
    assert!(store.verify(&info.name).unwrap().problems.is_empty());

    // Flip one byte without changing the size.
    let victim = info.path.join("CD2/02.mp3");
    let mut bytes = fs::read(&victim).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&victim, bytes).unwrap();
    fs::write(info.path.join("stray.txt"), b"x").unwrap();
    let report = store.verify(&info.name).unwrap();
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(report.problems[0].contains("CD2/02.mp3: checksum mismatch"));
    assert!(report.problems[1].contains("stray.txt: not in the manifest"));
    // A damaged backup is never restored.
    assert!(matches!(
        store.restore(&info.name, Some(&tmp.path().join("r")), true),
        Err(Error::Checksum { .. })
    ));
}

#[test]
fn retention_prunes_by_name_time_and_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(tmp.path(), "Book", &[("a.mp3", 100)]);
    let store = BackupStore::new(tmp.path().join("backup"));
    let fresh = store.create(&book, None).unwrap();
    let second = store.create(&book, None).unwrap();
    assert_ne!(
        fresh.name, second.name,
        "same-second backups get distinct names"
    );
    // An old backup: a real backup renamed to carry an old time.
    let old = store.create(&book, None).unwrap();
    let old_name = "Book_20200101_120000";
    fs::rename(&old.path, store.dir().join(old_name)).unwrap();
    // Something that is not ours stays.
    fs::create_dir(store.dir().join("my notes")).unwrap();

    let pruned = store.prune(30, chrono::Local::now()).unwrap();
    assert_eq!(
        pruned.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        [old_name]
    );
    assert!(!store.dir().join(old_name).exists());
    assert!(fresh.path.exists() && second.path.exists());
    assert!(store.dir().join("my notes").exists());
    let log = fs::read_to_string(store.dir().join(CLEANUP_LOG)).unwrap();
    assert_eq!(log.lines().count(), 1);
    assert!(
        log.contains(&format!("deleted\t{old_name}\tcreated 2020-01-01 12:00:00")),
        "{log}"
    );
    // Retention 0 keeps everything.
    assert!(store
        .prune(0, chrono::Local::now() + chrono::Duration::days(999))
        .unwrap()
        .is_empty());
}

#[test]
fn restore_round_trip_never_overwrites_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(
        tmp.path(),
        "Book",
        &[("01.mp3", 4000), ("CD2/02.mp3", 3000)],
    );
    std::os::unix::fs::symlink("01.mp3", book.join("link.mp3")).unwrap();
    fs::create_dir(book.join("empty")).unwrap();
    let original: Vec<u8> = fs::read(book.join("01.mp3")).unwrap();
    let store = BackupStore::new(tmp.path().join("backup"));
    let info = store.create(&book, None).unwrap();

    // The live folder changes; restoring puts the backup back and keeps the changed one aside.
    fs::write(book.join("01.mp3"), b"edited").unwrap();
    fs::remove_dir_all(book.join("CD2")).unwrap();
    let r = store.restore(&info.name, None, true).unwrap();
    assert_eq!(r.target, fs::canonicalize(&book).unwrap());
    assert_eq!(fs::read(book.join("01.mp3")).unwrap(), original);
    assert!(book.join("CD2/02.mp3").is_file());
    assert!(book.join("empty").is_dir());
    assert_eq!(
        fs::read_link(book.join("link.mp3")).unwrap(),
        PathBuf::from("01.mp3")
    );
    let aside = r.displaced.unwrap();
    assert_eq!(fs::read(aside.join("01.mp3")).unwrap(), b"edited");

    // Restore elsewhere; the original place is untouched.
    let r = store
        .restore(&info.name[..6], Some(&tmp.path().join("elsewhere")), true)
        .unwrap();
    assert_eq!(r.target, tmp.path().join("elsewhere/Book"));
    assert_eq!(
        fs::read(r.target.join("CD2/02.mp3")).unwrap(),
        fs::read(book.join("CD2/02.mp3")).unwrap()
    );
    assert!(r.displaced.is_none());
    assert!(hidden_entries(&tmp.path().join("elsewhere")).is_empty());
    assert!(matches!(
        store.restore("nope", None, true),
        Err(Error::BackupNotFound(_))
    ));
}

#[test]
fn delete_source_failing_midway_restores_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(
        tmp.path(),
        "Book",
        &[("01.mp3", 1000), ("02.mp3", 1000), ("CD2/03.mp3", 1000)],
    );
    let before: Vec<(PathBuf, Vec<u8>)> = ["01.mp3", "02.mp3", "CD2/03.mp3"]
        .iter()
        .map(|r| (PathBuf::from(r), fs::read(book.join(r)).unwrap()))
        .collect();
    let removed = Arc::new(AtomicUsize::new(0));
    let counter = removed.clone();
    let wf = Workflow::open(config(&tmp.path().join("data"), &[]))
        .unwrap()
        .with_hooks(Hooks {
            before_source_remove: Some(Arc::new(move |_| {
                // Let one file go, then fail like a permission problem would.
                if counter.fetch_add(1, Ordering::SeqCst) >= 1 {
                    Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
                } else {
                    Ok(())
                }
            })),
            ..Default::default()
        });
    let job = wf
        .run_job(
            {
                let mut o = JobRequest::default();
                o.folders = vec![book.clone()];
                o.post_action = PostAction::Delete;
                o
            },
            fake_convert,
        )
        .unwrap()
        .job;
    assert!(
        removed.load(Ordering::SeqCst) >= 2,
        "the failure happened midway"
    );
    // The book was written: the job completed, and its record says what went wrong after.
    assert_eq!(job.status, JobStatus::Completed);
    assert!(job.output_path.as_ref().unwrap().is_file());
    let err = job.error.unwrap();
    assert_eq!(err.category, ErrorCategory::Output);
    assert!(
        err.message.contains("restored from backup"),
        "{}",
        err.message
    );
    for (rel, bytes) in &before {
        assert_eq!(
            &fs::read(book.join(rel)).unwrap(),
            bytes,
            "{}",
            rel.display()
        );
    }
    assert!(
        job.output_path.unwrap().is_file(),
        "the book itself was written"
    );
    assert!(
        hidden_entries(tmp.path()).is_empty(),
        "no restore leftovers beside the folder"
    );

    // Without the failure the folder goes; deleting without a backup is refused up front.
    let wf = Workflow::open(config(&tmp.path().join("data"), &[])).unwrap();
    let mut req = JobRequest::default();
    req.folders = vec![book.clone()];
    req.post_action = PostAction::Delete;
    req.backup = Some(false);
    let refused = wf.run_job(req.clone(), fake_convert).unwrap().job;
    assert_eq!(refused.status, JobStatus::Failed);
    assert!(book.exists());
    let done = wf
        .run_job(
            {
                let mut o = req;
                o.backup = None;
                o
            },
            fake_convert,
        )
        .unwrap()
        .job;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert!(!book.exists());

    // Moving: the folder lands in the target, nothing is left behind.
    let book2 = make_book(tmp.path(), "Book2", &[("01.mp3", 10)]);
    let moved = wf
        .run_job(
            {
                let mut o = JobRequest::default();
                o.folders = vec![book2.clone()];
                o.post_action = PostAction::MoveTo(tmp.path().join("done"));
                o
            },
            fake_convert,
        )
        .unwrap()
        .job;
    assert_eq!(moved.status, JobStatus::Completed, "{:?}", moved.error);
    assert!(!book2.exists());
    assert!(tmp.path().join("done/Book2/01.mp3").is_file());
}

#[test]
fn batch_isolates_a_bad_book_and_skips_converted_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("library");
    make_book(&lib, "Author/Alpha", &[("01.mp3", 100)]);
    make_book(&lib, "Author/Bad", &[("01.mp3", 100)]);
    make_book(&lib, "Gamma", &[("CD1/01.mp3", 100), ("CD2/01.mp3", 100)]);
    make_book(&lib, "Delta", &[("01.mp3", 100)]);
    fs::create_dir_all(lib.join("Empty/stuff")).unwrap();
    let books: Vec<PathBuf> = aiom4b::workflow::folders::discover_books(&lib)
        .unwrap()
        .into_iter()
        .map(|b| b.path)
        .collect();
    assert_eq!(
        books
            .iter()
            .map(|b| b.strip_prefix(&lib).unwrap().to_str().unwrap())
            .collect::<Vec<_>>(),
        ["Author/Alpha", "Author/Bad", "Delta", "Gamma"]
    );

    let wf = Workflow::open(config(
        &tmp.path().join("data"),
        &[(Setting::MaxConcurrentJobs, "2")],
    ))
    .unwrap();
    let running = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    let convert = |ctx: &JobContext<'_>| {
        let folder = &ctx.source_folders()[0];
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        running.fetch_sub(1, Ordering::SeqCst);
        assert!(ctx.engine_threads() >= 1);
        if folder.ends_with("Bad") {
            if ctx.job_id().as_u128() % 2 == 0 {
                panic!("the engine crashed on this book");
            }
            return Err(JobError::new(
                ErrorCategory::Input,
                "damaged MP3",
                "replace it",
            ));
        }
        fake_convert(ctx)
    };
    let mut opts = BatchOptions::default();
    opts.request = {
        let mut o = JobRequest::default();
        o.backup = Some(false);
        o
    };
    let batch = |books: &[PathBuf], opts: &BatchOptions| {
        JobRunner::new(&wf, ConvertFn(convert)).run_batch(books, opts, &NoEvents)
    };
    let report = batch(&books, &opts);
    let statuses: Vec<_> = report.books.iter().map(|b| b.status).collect();
    assert_eq!(
        statuses,
        [
            BookStatus::Converted,
            BookStatus::Failed,
            BookStatus::Converted,
            BookStatus::Converted
        ]
    );
    assert!(!report.all_ok());
    assert_eq!(report.concurrency, 2);
    assert!(peak.load(Ordering::SeqCst) <= 2);
    // Either a clean failure or a panic in the engine: both are contained to the book.
    let category = report.books[1].error.as_ref().unwrap().category;
    assert!(matches!(
        category,
        ErrorCategory::Input | ErrorCategory::Processing
    ));

    // Again: converted books are skipped, the bad one is tried again.
    let again = batch(&books, &opts);
    let statuses: Vec<_> = again.books.iter().map(|b| b.status).collect();
    assert_eq!(
        statuses,
        [
            BookStatus::Skipped,
            BookStatus::Failed,
            BookStatus::Skipped,
            BookStatus::Skipped
        ]
    );
    assert_eq!(again.books[0].output, report.books[0].output);
    // --force converts everything again.
    let forced = batch(&books[..1], &{
        let mut o = opts.clone();
        o.force = true;
        o
    });
    assert_eq!(forced.books[0].status, BookStatus::Converted);
}

#[test]
fn config_precedence_and_invalid_values() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("aiom4b.toml");
    fs::write(
        &file,
        "data_dir = \"/from/file\"\napi_port = 1111\nmax_concurrent_jobs = 2\nbackup_enabled = false\n",
    )
    .unwrap();
    let env = |k: &str| match k {
        "API_PORT" => Some("2222".to_string()),
        "DEBUG" => Some("yes".to_string()),
        "MAX_CONCURRENT_JOBS" => Some("5".to_string()),
        _ => None,
    };
    let mut cli = Overrides::default();
    cli.set(Setting::MaxConcurrentJobs, "3");
    let cfg = Config::load_with(&cli, &env, Some(&file)).unwrap();
    assert_eq!(cfg.data_dir, PathBuf::from("/from/file"));
    assert_eq!(cfg.origin(Setting::DataDir), &Origin::File(file.clone()));
    assert_eq!(cfg.api_port, 2222);
    assert_eq!(cfg.origin(Setting::ApiPort), &Origin::Env);
    assert_eq!(cfg.max_concurrent_jobs, 3);
    assert_eq!(cfg.origin(Setting::MaxConcurrentJobs), &Origin::Cli);
    assert!(cfg.debug);
    assert!(!cfg.backup_enabled);
    assert_eq!(cfg.backup_retention_days, 30);
    assert_eq!(cfg.origin(Setting::BackupRetentionDays), &Origin::Default);
    assert_eq!(cfg.api_host, "127.0.0.1");
    let described = cfg.describe();
    assert!(described
        .iter()
        .any(|s| s.var == "API_PORT" && s.value == "2222" && s.origin == "environment"));

    let invalid = |env: &dyn Fn(&str) -> Option<String>, file: Option<&Path>| {
        Config::load_with(&Overrides::default(), env, file).unwrap_err()
    };
    let e = invalid(
        &|k| (k == "MAX_CONCURRENT_JOBS").then(|| "zero".into()),
        None,
    );
    assert!(
        matches!(
            &e,
            ConfigError::Invalid {
                var: "MAX_CONCURRENT_JOBS",
                origin: Origin::Env,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("MAX_CONCURRENT_JOBS"));
    let e = invalid(&|k| (k == "USE_ALL_CPUS").then(|| "maybe".into()), None);
    assert!(
        e.to_string().contains("USE_ALL_CPUS") && e.to_string().contains("true or false"),
        "{e}"
    );
    let e = invalid(&|k| (k == "NAME_TEMPLATE").then(|| "{titel}".into()), None);
    assert!(e.to_string().contains("unknown placeholder"), "{e}");
    let e = invalid(&|k| (k == "OUTPUT_MODE").then(|| "999".into()), None);
    assert!(e.to_string().contains("OUTPUT_MODE"), "{e}");

    fs::write(&file, "backup_enabled = \"perhaps\"\n").unwrap();
    let e = invalid(&|_| None, Some(&file));
    assert!(
        e.to_string().contains("BACKUP_ENABLED") && e.to_string().contains("aiom4b.toml"),
        "{e}"
    );
    fs::write(&file, "data_dri = \"x\"\n").unwrap();
    assert!(matches!(
        invalid(&|_| None, Some(&file)),
        ConfigError::UnknownKey { .. }
    ));
    fs::write(&file, "not toml [").unwrap();
    assert!(matches!(
        invalid(&|_| None, Some(&file)),
        ConfigError::File { .. }
    ));
    // An explicitly named file must exist; the default one may be missing.
    let missing = tmp.path().join("missing.toml");
    let e = Config::load_with(&Overrides::new(Some(missing.clone())), &|_| None, None);
    assert!(matches!(e, Err(ConfigError::File { .. })));
    assert!(Config::load_with(&Overrides::default(), &|_| None, Some(&missing)).is_ok());
}

#[test]
fn log_files_rotate_by_size_and_day_and_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let day = Arc::new(Mutex::new(
        chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
    ));
    let clock = day.clone();
    let policy = RotationPolicy {
        dir: tmp.path().join("logs"),
        prefix: "aiom4b".into(),
        max_bytes: 100,
        max_files: 4,
    };
    let mut file =
        RotatingFile::with_clock(policy.clone(), Box::new(move || *clock.lock().unwrap()));
    let line = format!("{}\n", "x".repeat(39)); // 40 bytes: two lines per file
    for _ in 0..5 {
        file.write_all(line.as_bytes()).unwrap();
    }
    let names = |f: &RotatingFile| -> Vec<String> {
        f.files()
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        names(&file),
        [
            "aiom4b.2024-01-01.000.jsonl",
            "aiom4b.2024-01-01.001.jsonl",
            "aiom4b.2024-01-01.002.jsonl"
        ]
    );
    *day.lock().unwrap() = chrono::NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
    file.write_all(line.as_bytes()).unwrap();
    file.write_all(line.as_bytes()).unwrap();
    file.write_all(line.as_bytes()).unwrap();
    // Four files at most: the oldest went.
    assert_eq!(
        names(&file),
        [
            "aiom4b.2024-01-01.001.jsonl",
            "aiom4b.2024-01-01.002.jsonl",
            "aiom4b.2024-01-02.000.jsonl",
            "aiom4b.2024-01-02.001.jsonl"
        ]
    );
    for p in file.files().unwrap() {
        assert!(fs::metadata(p).unwrap().len() <= 100);
    }

    // The non-blocking writer in front of the file (tracing-appender) is the binary's: its
    // flush-on-exit test is `logging::tests::queued_lines_are_written_when_the_guards_drop`.
}

/// Needs tracing-subscriber, a dependency of the `cli` feature.
#[cfg(feature = "cli")]
#[test]
fn log_lines_of_a_job_carry_its_id() {
    // Alone in a process of its own: tracing caches each callsite's interest globally, and
    // other tests' threads hitting the same callsites without this test's (thread-local)
    // subscriber can leave one cached as "never" despite the rebuild below (1 run in ~6 did).
    const ALONE: &str = "AIOM4B_TEST_LOG_LINES_ALONE";
    if std::env::var_os(ALONE).is_none() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "workflow::log_lines_of_a_job_carry_its_id",
                "--test-threads=1",
            ])
            .env(ALONE, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    use tracing_subscriber::layer::SubscriberExt;
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = buf.clone();
    struct W(Arc<Mutex<Vec<u8>>>);
    impl Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(move || W(sink.clone())),
    );
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(tmp.path(), "Book", &[("a.mp3", 10)]);
    let job = tracing::subscriber::with_default(subscriber, || {
        // Other tests in this binary hit the same callsites on their threads without this
        // subscriber; tracing caches per-callsite interest, and a registration racing with
        // theirs can leave a callsite cached as "never". Rebuild the cache under ours.
        tracing::callsite::rebuild_interest_cache();
        let wf = Workflow::open(config(&tmp.path().join("data"), &[])).unwrap();
        wf.run_job(
            {
                let mut o = JobRequest::default();
                o.folders = vec![book];
                o
            },
            |ctx| {
                tracing::info!("engine says hello");
                fake_convert(ctx)
            },
        )
        .unwrap()
        .job
    });
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let id = job.id.to_string();
    let in_job: Vec<_> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "job")
        .collect();
    assert!(in_job
        .iter()
        .any(|l| l["fields"]["message"] == "engine says hello"));
    assert!(in_job.iter().all(|l| l["span"]["job_id"] == id.as_str()));
    let audits: Vec<_> = lines
        .iter()
        .filter(|l| l["target"] == "aiom4b::audit")
        .map(|l| {
            l["fields"]["action"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        audits,
        ["job.create", "backup.create", "output.write", "job.finish"]
    );
}

/// A worker claims a job from the queue, converts, and while it converts its lease runs out
/// (as if the process were paused past it) and another worker takes the job over: the first
/// one publishes nothing, removes only its own part file, and leaves the job's record to the
/// new holder, who completes it. Then a cancel requested through the store stops a claimed
/// job at the holder's next renewal.
#[test]
fn a_worker_that_lost_its_lease_publishes_nothing_and_a_cancel_request_reaches_a_claimed_job() {
    use aiom4b::workflow::{CancelRequest, LeaseTerms};
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(tmp.path(), "Leased", &[("a.mp3", 100)]);
    let data = tmp.path().join("data");
    let wf = Workflow::open(config(&data, &[])).unwrap();
    let mut request = JobRequest::default();
    request.folders = vec![book.clone()];
    request.backup = Some(true);
    let id = JobRunner::new(&wf, ConvertFn(fake_convert))
        .create(request.clone())
        .unwrap()
        .job()
        .id;
    let ttl = Duration::from_millis(300);
    let first = wf.store().claim_next(wf.owner(), ttl).unwrap().unwrap();
    assert_eq!(first.id, id);
    // Renewing once an hour: the first worker does not notice until its fence.
    let paused = LeaseTerms {
        ttl,
        renew_every: Duration::from_secs(3600),
    };
    let mut other = wf.owner().clone();
    other.pid += 1;
    let taken_over = Mutex::new(None);
    let slow = |ctx: &JobContext<'_>| -> Result<ConversionResult, JobError> {
        let r = fake_convert(ctx);
        // "Paused" past the lease; meanwhile another worker puts the job back and claims it.
        std::thread::sleep(ttl * 3);
        assert_eq!(ctx_store_requeue(&wf), 1);
        let again = wf.store().claim_next(&other, Duration::from_secs(600));
        *taken_over.lock().unwrap() = Some(again.unwrap().unwrap());
        r
    };
    let runner = JobRunner::new(&wf, ConvertFn(slow));
    let queued = runner.claimed(first, request.clone(), paused).unwrap();
    let first_part = queued.job().part_path.clone().unwrap();
    let outcome = runner.run_queued(queued, &NoEvents).unwrap();
    let second = taken_over.lock().unwrap().take().expect("taken over");
    let out = data.join("output");
    assert!(
        fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| e.ok())
            .all(|e| !e.file_name().to_string_lossy().ends_with(".m4b")),
        "the first worker published nothing"
    );
    assert!(!first_part.exists(), "its own part is removed");
    // The record is the new holder's: pending under its lease, not failed by the first.
    assert_eq!(outcome.job.status, JobStatus::Pending, "{:?}", outcome.job);
    assert_eq!(outcome.job.lease, second.lease);
    // The new holder runs it to the end, with a part file of its own.
    let runner = JobRunner::new(&wf, ConvertFn(fake_convert));
    let queued = runner
        .claimed(
            second,
            request.clone(),
            LeaseTerms::new(Duration::from_secs(600)),
        )
        .unwrap();
    assert_ne!(queued.job().part_path.as_ref(), Some(&first_part));
    let done = runner.run_queued(queued, &NoEvents).unwrap().job;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert!(done.output_path.as_ref().unwrap().is_file());
    assert_eq!(hidden_entries(&out), Vec::<String>::new());
    // The backup the first attempt made is the job's only one.
    let backups: Vec<_> = wf
        .backups()
        .list()
        .unwrap()
        .into_iter()
        .filter(|b| b.job == Some(id))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(done.backup_paths, vec![backups[0].path.clone()]);
    request.backup = Some(false);

    // A cancel requested while a claimed job converts stops it within a renewal or two.
    let id = JobRunner::new(&wf, ConvertFn(fake_convert))
        .create(request.clone())
        .unwrap()
        .job()
        .id;
    let claimed = wf
        .store()
        .claim_next(wf.owner(), Duration::from_secs(600))
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, id);
    let waits = |ctx: &JobContext<'_>| -> Result<ConversionResult, JobError> {
        assert_eq!(
            wf.store().request_cancel(ctx.job_id()).unwrap(),
            CancelRequest::Requested
        );
        let t = Instant::now();
        while !ctx.is_cancelled() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the cancel never came"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(JobError::cancelled())
    };
    let terms = LeaseTerms {
        ttl: Duration::from_secs(600),
        renew_every: Duration::from_millis(50),
    };
    let runner = JobRunner::new(&wf, ConvertFn(waits));
    let queued = runner.claimed(claimed, request, terms).unwrap();
    let job = runner.run_queued(queued, &NoEvents).unwrap().job;
    assert_eq!(job.status, JobStatus::Cancelled, "{:?}", job.error);
    assert_eq!(hidden_entries(&out), Vec::<String>::new());
}

/// Puts jobs with expired leases back in the queue; how many.
fn ctx_store_requeue(wf: &Workflow) -> usize {
    wf.store().requeue_expired(3).unwrap().len()
}
