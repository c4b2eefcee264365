//! What every [`JobStore`] must do, as one generic test suite. Each backend instantiates it
//! with [`store_suite!`] and a function that makes an empty store; the SQLite store does so in
//! `sqlite.rs`, a PostgreSQL store will do the same, so both keep one contract.
use super::{
    IdempotencyRecord, Job, JobFailure, JobFilter, JobLogLine, JobStatus, JobStore, StageTiming,
};
use crate::workflow::category::ErrorCategory;
use crate::workflow::process::ProcessIdentity;
use chrono::{Duration, Utc};
use std::path::PathBuf;
use uuid::Uuid;

/// Generates one `#[test]` per case of the suite, each on a fresh store from `$make` (an
/// expression giving a value that derefs to a `JobStore`, kept alive for the test).
macro_rules! store_suite {
    ($make:expr) => {
        $crate::workflow::jobs::conformance::store_suite!(@cases $make;
            a_job_reads_back_exactly_as_written,
            ids_are_found_by_prefix_and_wildcards_match_nothing,
            updates_are_conditional_on_the_stored_status,
            progress_is_recorded_only_while_processing_and_clamped,
            lists_are_newest_first_and_filtered,
            finished_jobs_move_to_the_archive_and_stay_readable,
            stats_aggregate_every_job,
            only_finished_jobs_are_deleted_and_their_log_with_them,
            log_lines_page_in_order_per_job,
            idempotency_keys_are_per_caller_and_expire,
            claims_take_the_oldest_free_job_once_each,
            concurrent_claims_never_share_a_job,
            a_lease_is_renewed_only_by_its_holder_and_fences_updates,
            expired_leases_go_back_to_the_queue_or_fail_at_the_maximum,
            cancels_reach_queued_and_held_jobs,
            queue_stats_count_waiting_leased_and_expired,
            a_released_job_is_claimed_again_at_once,
        );
    };
    (@cases $make:expr; $($case:ident,)*) => {
        $(
            #[test]
            fn $case() {
                let store = $make;
                $crate::workflow::jobs::conformance::$case(&*store);
            }
        )*
    };
}
pub(crate) use store_suite;

fn job(folder: &str) -> Job {
    Job::new(vec![PathBuf::from(folder)], serde_json::json!({}))
}

fn finished(folder: &str, status: JobStatus, ago: Duration) -> Job {
    let mut j = job(folder);
    j.status = status;
    let end = super::now_millis() - ago;
    j.created_at = end - Duration::seconds(10);
    j.started_at = Some(end - Duration::seconds(8));
    j.finished_at = Some(end);
    j
}

pub(crate) fn a_job_reads_back_exactly_as_written(s: &dyn JobStore) {
    let mut j = job("/books/Ünïcode & 'quotes' / spaces");
    j.status = JobStatus::Completed;
    j.started_at = Some(j.created_at + Duration::milliseconds(1500));
    j.finished_at = Some(j.created_at + Duration::seconds(9));
    j.progress_percent = 100.0;
    j.source_folders.push(PathBuf::from("/books/CD2"));
    j.options = serde_json::json!({"convert": {"bitrate": 64000, "verify": true}, "x": [1, null]});
    j.output_path = Some(PathBuf::from("/out/Book.m4b"));
    j.backup_paths = vec![
        PathBuf::from("/data/backup/a"),
        PathBuf::from("/data/backup/b"),
    ];
    j.input_bytes = Some(u32::MAX as u64 * 3);
    j.output_bytes = Some(12_345);
    j.audio_duration_secs = Some(3600.25);
    j.stage_timings = vec![
        StageTiming {
            stage: "backup".into(),
            millis: 12,
        },
        StageTiming {
            stage: "convert".into(),
            millis: 7000,
        },
    ];
    j.attempts = 2;
    j.error = Some(JobFailure {
        category: ErrorCategory::Output,
        message: "moving the sources failed".into(),
        remedy: "move them by hand".into(),
    });
    j.owner = Some(ProcessIdentity {
        pid: 4242,
        hostname: "nas".into(),
        start_ticks: Some(99),
    });
    j.part_path = Some(PathBuf::from("/out/.Book.m4b.part"));
    j.temp_paths = vec![PathBuf::from("/out/.Book.m4b.part")];
    j.post_action = Some("move:/done".into());
    j.output_parts = vec![
        PathBuf::from("/out/Book - Part 1 of 2.m4b"),
        PathBuf::from("/out/Book - Part 2 of 2.m4b"),
    ];
    j.audio = Some(crate::convert::AudioUsed {
        copied: true,
        why: "every part is AAC-LC at 44100 Hz, 2 channels".into(),
    });
    s.insert(&j).unwrap();
    assert_eq!(s.get(j.id).unwrap().as_ref(), Some(&j));
    assert_eq!(s.get(Uuid::new_v4()).unwrap(), None);
    // The id is the key.
    assert!(s.insert(&j).is_err(), "a second insert of one id");
}

pub(crate) fn ids_are_found_by_prefix_and_wildcards_match_nothing(s: &dyn JobStore) {
    let a = job("/a");
    let b = job("/b");
    s.insert(&a).unwrap();
    s.insert(&b).unwrap();
    let id = a.id.to_string();
    let found = s.find_by_prefix(&id[..8]).unwrap();
    assert_eq!(found.iter().map(|j| j.id).collect::<Vec<_>>(), [a.id]);
    let upper = s.find_by_prefix(&id[..8].to_ascii_uppercase()).unwrap();
    assert_eq!(upper.len(), 1, "prefixes are case-insensitive");
    assert_eq!(s.find_by_prefix(&id).unwrap().len(), 1);
    for wild in ["%", "_", "", "*", "' OR 1=1 --"] {
        assert!(s.find_by_prefix(wild).unwrap().is_empty(), "{wild:?}");
    }
}

pub(crate) fn updates_are_conditional_on_the_stored_status(s: &dyn JobStore) {
    let mut j = job("/a");
    s.insert(&j).unwrap();
    j.status = JobStatus::Processing;
    j.started_at = Some(super::now_millis());
    assert!(s.update(&j, JobStatus::Pending).unwrap());
    assert_eq!(s.get(j.id).unwrap().unwrap(), j);
    // Another process's decision is not overwritten.
    let mut stale = j.clone();
    stale.status = JobStatus::Failed;
    assert!(!s.update(&stale, JobStatus::Pending).unwrap());
    assert_eq!(s.get(j.id).unwrap().unwrap().status, JobStatus::Processing);
    // Unknown job: nothing updated.
    assert!(!s.update(&job("/x"), JobStatus::Pending).unwrap());
}

pub(crate) fn progress_is_recorded_only_while_processing_and_clamped(s: &dyn JobStore) {
    let mut j = job("/a");
    s.insert(&j).unwrap();
    s.set_progress(j.id, 50.0).unwrap();
    assert_eq!(
        s.get(j.id).unwrap().unwrap().progress_percent,
        0.0,
        "pending"
    );
    j.status = JobStatus::Processing;
    assert!(s.update(&j, JobStatus::Pending).unwrap());
    s.set_progress(j.id, 42.5).unwrap();
    assert_eq!(s.get(j.id).unwrap().unwrap().progress_percent, 42.5);
    s.set_progress(j.id, 250.0).unwrap();
    assert_eq!(s.get(j.id).unwrap().unwrap().progress_percent, 100.0);
    s.set_progress(j.id, -3.0).unwrap();
    assert_eq!(s.get(j.id).unwrap().unwrap().progress_percent, 0.0);
    s.set_progress(Uuid::new_v4(), 10.0).unwrap();
}

pub(crate) fn lists_are_newest_first_and_filtered(s: &dyn JobStore) {
    // Three jobs in one millisecond: insertion order breaks the tie.
    let t = super::now_millis();
    let mut ids = Vec::new();
    for (i, folder) in ["/a", "/b", "/a/b"].iter().enumerate() {
        let mut j = job(folder);
        j.created_at = t;
        if i == 1 {
            j.status = JobStatus::Failed;
        }
        s.insert(&j).unwrap();
        ids.push(j.id);
    }
    let mut older = job("/a");
    older.created_at = t - Duration::seconds(5);
    s.insert(&older).unwrap();
    let list = |f: JobFilter| -> Vec<Uuid> { s.list(&f).unwrap().iter().map(|j| j.id).collect() };
    assert_eq!(
        list(JobFilter::default()),
        [ids[2], ids[1], ids[0], older.id]
    );
    assert_eq!(
        list(JobFilter {
            status: Some(JobStatus::Failed),
            ..Default::default()
        }),
        [ids[1]]
    );
    assert_eq!(
        list(JobFilter {
            source_folder: Some(PathBuf::from("/a")),
            ..Default::default()
        }),
        [ids[0], older.id],
        "the folder itself, not a folder below it"
    );
    assert_eq!(
        list(JobFilter {
            limit: Some(2),
            ..Default::default()
        }),
        [ids[2], ids[1]]
    );
}

pub(crate) fn finished_jobs_move_to_the_archive_and_stay_readable(s: &dyn JobStore) {
    let old = finished("/old", JobStatus::Completed, Duration::days(10));
    let old_failed = finished("/oldf", JobStatus::Failed, Duration::days(9));
    let recent = finished("/new", JobStatus::Completed, Duration::hours(1));
    let mut pending = job("/pending");
    pending.created_at = super::now_millis() - Duration::days(30);
    for j in [&old, &old_failed, &recent, &pending] {
        s.insert(j).unwrap();
    }
    let cutoff = Utc::now() - Duration::days(7);
    assert_eq!(s.archive_finished(cutoff).unwrap(), 2);
    assert_eq!(s.archive_finished(cutoff).unwrap(), 0, "already archived");
    let live: Vec<Uuid> = s
        .list(&JobFilter::default())
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(live, [recent.id, pending.id]);
    let all = s
        .list(&JobFilter {
            include_archived: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(
        s.get(old.id).unwrap().as_ref(),
        Some(&old),
        "archived, readable"
    );
    assert_eq!(s.find_by_prefix(&old.id.to_string()[..8]).unwrap().len(), 1);
    assert_eq!(s.stats().unwrap().total, 4, "stats count the archive");
}

pub(crate) fn stats_aggregate_every_job(s: &dyn JobStore) {
    assert_eq!(s.stats().unwrap(), Default::default(), "empty store");
    let mut a = finished("/a", JobStatus::Completed, Duration::hours(1));
    a.started_at = Some(a.finished_at.unwrap() - Duration::seconds(10));
    a.input_bytes = Some(1000);
    a.output_bytes = Some(400);
    a.audio_duration_secs = Some(100.0);
    let mut b = finished("/b", JobStatus::Completed, Duration::hours(2));
    b.started_at = Some(b.finished_at.unwrap() - Duration::seconds(30));
    b.input_bytes = Some(3000);
    b.output_bytes = Some(600);
    b.audio_duration_secs = Some(300.0);
    let fail = |cat| {
        let mut f = finished("/f", JobStatus::Failed, Duration::hours(3));
        f.error = Some(JobFailure {
            category: cat,
            message: "x".into(),
            remedy: "y".into(),
        });
        f
    };
    let mut c = finished("/c", JobStatus::Cancelled, Duration::hours(4));
    c.error = Some(JobFailure {
        category: ErrorCategory::Processing,
        message: "cancelled".into(),
        remedy: "again".into(),
    });
    for j in [
        &a,
        &b,
        &fail(ErrorCategory::Input),
        &fail(ErrorCategory::Input),
        &fail(ErrorCategory::System),
        &c,
        &job("/p"),
    ] {
        s.insert(j).unwrap();
    }
    let st = s.stats().unwrap();
    assert_eq!(
        (st.total, st.completed, st.failed, st.cancelled, st.pending),
        (7, 2, 3, 1, 1)
    );
    assert_eq!(st.success_rate, Some(2.0 / 6.0));
    // Times may go through a backend's date arithmetic: equal to a millisecond.
    let close = |got: Option<f64>, want: f64| {
        assert!(
            got.is_some_and(|g| (g - want).abs() < 1e-3),
            "{got:?} vs {want}"
        )
    };
    close(st.processing_secs_min, 10.0);
    close(st.processing_secs_max, 30.0);
    close(st.processing_secs_avg, 20.0);
    assert_eq!((st.input_bytes_total, st.output_bytes_total), (4000, 1000));
    assert_eq!(st.audio_secs_total, 400.0);
    close(st.realtime_factor, 10.0);
    assert_eq!(
        st.failures_by_category,
        [(ErrorCategory::Input, 2), (ErrorCategory::System, 1)],
        "most frequent first, cancelled jobs not counted"
    );
}

fn line(job: Uuid, message: &str) -> JobLogLine {
    let mut fields = serde_json::Map::new();
    fields.insert("n".into(), 7.into());
    fields.insert("path".into(), "/a b/ü".into());
    JobLogLine {
        seq: 0,
        job_id: job,
        time: super::now_millis(),
        level: "INFO".into(),
        target: "aiom4b::jobs".into(),
        message: message.into(),
        fields,
    }
}

pub(crate) fn only_finished_jobs_are_deleted_and_their_log_with_them(s: &dyn JobStore) {
    let done = finished("/a", JobStatus::Completed, Duration::days(10));
    let archived = finished("/b", JobStatus::Failed, Duration::days(10));
    let running = {
        let mut j = job("/c");
        j.status = JobStatus::Processing;
        j
    };
    for j in [&done, &archived, &running] {
        s.insert(j).unwrap();
    }
    s.archive_finished(Utc::now() - Duration::days(7)).unwrap();
    s.append_log(&[line(done.id, "a"), line(running.id, "r")])
        .unwrap();
    assert!(s.delete_finished(archived.id).unwrap(), "archived");
    assert!(s.get(archived.id).unwrap().is_none());
    assert!(
        !s.delete_finished(running.id).unwrap(),
        "a running job stays"
    );
    assert!(s.get(running.id).unwrap().is_some());
    assert_eq!(s.job_log(running.id, 0, 10).unwrap().len(), 1);
    assert!(!s.delete_finished(Uuid::new_v4()).unwrap());
    // The archive run moved `done` too (finished 10 days ago); deleting it takes its lines.
    assert!(s.delete_finished(done.id).unwrap());
    assert!(s.job_log(done.id, 0, 10).unwrap().is_empty());
}

pub(crate) fn log_lines_page_in_order_per_job(s: &dyn JobStore) {
    let a = Uuid::new_v4();
    let b = Uuid::new_v4();
    s.append_log(&[]).unwrap();
    s.append_log(&[line(a, "one"), line(b, "x"), line(a, "two")])
        .unwrap();
    s.append_log(&[line(a, "three")]).unwrap();
    let all = s.job_log(a, 0, 100).unwrap();
    let texts: Vec<_> = all.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(all.iter().all(|l| l.job_id == a && l.seq > 0));
    assert_eq!(all[0].fields, line(a, "").fields);
    assert_eq!(all[0].level, "INFO");
    assert_eq!(all[0].target, "aiom4b::jobs");
    let page = s.job_log(a, all[0].seq, 1).unwrap();
    assert_eq!(page.iter().map(|l| &l.message).collect::<Vec<_>>(), ["two"]);
    assert!(s.job_log(a, all[2].seq, 10).unwrap().is_empty());
    assert_eq!(s.job_log(b, 0, 10).unwrap().len(), 1);
}

pub(crate) fn idempotency_keys_are_per_caller_and_expire(s: &dyn JobStore) {
    let now = super::now_millis();
    let day = Duration::hours(24);
    let rec = |key: &str, caller: &str, at| IdempotencyRecord {
        key: key.into(),
        caller: caller.into(),
        body_hash: format!("hash of {key}"),
        job_ids: vec![Uuid::new_v4(), Uuid::new_v4()],
        created_at: at,
    };
    let old = rec("k-old", "anonymous", now - Duration::hours(25));
    let fresh = rec("k", "anonymous", now);
    s.record_idempotency_key(&old, now - day * 30).unwrap();
    s.record_idempotency_key(&fresh, now - day).unwrap();
    assert_eq!(
        s.find_idempotency_key("k", "anonymous", now - day).unwrap(),
        Some(fresh.clone())
    );
    assert_eq!(
        s.find_idempotency_key("k", "token:abcd", now - day)
            .unwrap(),
        None,
        "another caller's key of the same name"
    );
    assert_eq!(
        s.find_idempotency_key("k-old", "anonymous", now - day)
            .unwrap(),
        None,
        "expired"
    );
    // Recording `fresh` removed keys older than a day: not even an old `since` finds it.
    let epoch = chrono::DateTime::<Utc>::UNIX_EPOCH;
    assert_eq!(
        s.find_idempotency_key("k-old", "anonymous", epoch).unwrap(),
        None
    );
    // Recording a key again replaces it.
    let again = IdempotencyRecord {
        body_hash: "other".into(),
        ..fresh.clone()
    };
    s.record_idempotency_key(&again, now - day).unwrap();
    assert_eq!(
        s.find_idempotency_key("k", "anonymous", now - day).unwrap(),
        Some(again)
    );
}

fn worker(n: u32) -> ProcessIdentity {
    ProcessIdentity {
        pid: 1000 + n,
        hostname: format!("worker-{n}"),
        start_ticks: Some(n as u64),
    }
}

const LONG: std::time::Duration = std::time::Duration::from_secs(600);
const SHORT: std::time::Duration = std::time::Duration::from_millis(20);

pub(crate) fn claims_take_the_oldest_free_job_once_each(s: &dyn JobStore) {
    let t = super::now_millis();
    let mut older = job("/older");
    older.created_at = t - Duration::seconds(2);
    let mut mine = job("/run by its own process");
    mine.created_at = t - Duration::seconds(3);
    mine.owner = Some(worker(9));
    let newer = job("/newer");
    let mut done = finished("/done", JobStatus::Completed, Duration::hours(1));
    done.created_at = t - Duration::days(1);
    for j in [&newer, &older, &mine, &done] {
        s.insert(j).unwrap();
    }
    let first = s.claim_next(&worker(1), LONG).unwrap().expect("a job");
    assert_eq!(first.id, older.id, "the oldest free pending job");
    assert_eq!(first.owner, Some(worker(1)));
    let lease = first.lease.expect("a lease");
    assert!(lease.expires_at > Utc::now() + Duration::seconds(500));
    assert_eq!(s.get(first.id).unwrap().unwrap(), first, "as stored");
    let second = s.claim_next(&worker(2), LONG).unwrap().expect("a job");
    assert_eq!(second.id, newer.id);
    assert_ne!(second.lease.unwrap().token, lease.token);
    assert_eq!(
        s.claim_next(&worker(3), LONG).unwrap(),
        None,
        "a job its own process runs, and a finished one, are not claimed"
    );
}

pub(crate) fn concurrent_claims_never_share_a_job(s: &dyn JobStore) {
    each_claimed_once(s, 12, &|w| claim_all(s, w));
}

/// Claims jobs for worker `w` until none is left; the ids claimed.
fn claim_all(s: &dyn JobStore, w: u32) -> Vec<Uuid> {
    std::iter::from_fn(|| s.claim_next(&worker(w), LONG).unwrap().map(|j| j.id)).collect()
}

/// Inserts `n` pending jobs into `s`, runs `drain` for four workers at once, and checks that
/// every job was claimed exactly once.
fn each_claimed_once(s: &dyn JobStore, n: usize, drain: &(dyn Fn(u32) -> Vec<Uuid> + Sync)) {
    let mut ids: Vec<Uuid> = (0..n)
        .map(|i| {
            let j = job(&format!("/book {i}"));
            s.insert(&j).unwrap();
            j.id
        })
        .collect();
    let mut claimed: Vec<Uuid> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4).map(|w| scope.spawn(move || drain(w))).collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    claimed.sort();
    ids.sort();
    assert_eq!(claimed, ids, "every job exactly once");
}

pub(crate) fn a_lease_is_renewed_only_by_its_holder_and_fences_updates(s: &dyn JobStore) {
    s.insert(&job("/a")).unwrap();
    let mut j = s.claim_next(&worker(1), SHORT).unwrap().unwrap();
    let lease = j.lease.unwrap();
    let renewal = s
        .renew_lease(j.id, lease.token, LONG)
        .unwrap()
        .expect("the holder renews");
    assert!(!renewal.cancel_requested);
    let renewed = renewal.lease;
    assert_eq!(renewed.token, lease.token);
    assert!(renewed.expires_at > lease.expires_at);
    assert_eq!(s.get(j.id).unwrap().unwrap().lease, Some(renewed));
    assert_eq!(
        s.renew_lease(j.id, Uuid::new_v4(), LONG).unwrap(),
        None,
        "another token renews nothing"
    );
    // The holder's updates go through (and leave the renewed lease alone)...
    j.status = JobStatus::Processing;
    assert!(s.update(&j, JobStatus::Pending).unwrap());
    assert_eq!(s.get(j.id).unwrap().unwrap().lease, Some(renewed));
    // ...one without the token does not, nor one with another token.
    let mut stranger = j.clone();
    stranger.lease = None;
    stranger.progress_percent = 50.0;
    assert!(!s.update(&stranger, JobStatus::Processing).unwrap());
    stranger.lease = Some(super::Lease {
        token: Uuid::new_v4(),
        ..lease
    });
    assert!(!s.update(&stranger, JobStatus::Processing).unwrap());
    assert_eq!(s.get(j.id).unwrap().unwrap().progress_percent, 0.0);
}

pub(crate) fn expired_leases_go_back_to_the_queue_or_fail_at_the_maximum(s: &dyn JobStore) {
    s.insert(&job("/a")).unwrap();
    s.insert(&job("/b")).unwrap();
    s.insert(&job("/c")).unwrap();
    // a: processing, expires; b: processing with its attempts used up, expires;
    // c: claimed but still pending (died in its backup), expires.
    let mut a = s.claim_next(&worker(1), SHORT).unwrap().unwrap();
    a.status = JobStatus::Processing;
    a.attempts = 1;
    a.progress_percent = 40.0;
    assert!(s.update(&a, JobStatus::Pending).unwrap());
    let mut b = s.claim_next(&worker(2), SHORT).unwrap().unwrap();
    b.status = JobStatus::Processing;
    b.attempts = 3;
    assert!(s.update(&b, JobStatus::Pending).unwrap());
    let c = s.claim_next(&worker(3), SHORT).unwrap().unwrap();
    // A live lease is not touched.
    s.insert(&job("/d")).unwrap();
    let d = s.claim_next(&worker(4), LONG).unwrap().unwrap();
    std::thread::sleep(SHORT * 3);

    let mut moved = s.requeue_expired(3).unwrap();
    moved.sort_by_key(|(id, _)| *id);
    let mut want = vec![
        (a.id, JobStatus::Pending),
        (b.id, JobStatus::Failed),
        (c.id, JobStatus::Pending),
    ];
    want.sort_by_key(|(id, _)| *id);
    assert_eq!(moved, want);
    let a2 = s.get(a.id).unwrap().unwrap();
    assert_eq!((a2.owner, a2.lease, a2.attempts), (None, None, 1));
    assert_eq!(a2.progress_percent, 0.0);
    assert_eq!(
        s.get(c.id).unwrap().unwrap().attempts,
        1,
        "died before converting"
    );
    let b2 = s.get(b.id).unwrap().unwrap();
    assert!(b2.finished_at.is_some());
    let e = b2.error.expect("why it failed");
    assert_eq!(e.category, ErrorCategory::System);
    assert!(e.message.contains("lease expired"), "{}", e.message);
    assert_eq!(
        s.get(d.id).unwrap().unwrap().lease,
        d.lease,
        "live lease kept"
    );
    // The old holder is fenced off; the job is claimed again by another process.
    a.progress_percent = 99.0;
    assert!(!s.update(&a, JobStatus::Processing).unwrap());
    assert!(s
        .renew_lease(a.id, a.lease.unwrap().token, LONG)
        .unwrap()
        .is_none());
    let mut again = Vec::new();
    while let Some(j) = s.claim_next(&worker(5), LONG).unwrap() {
        again.push(j.id);
    }
    again.sort();
    let mut want = vec![a.id, c.id];
    want.sort();
    assert_eq!(again, want);
    assert!(s.requeue_expired(3).unwrap().is_empty());
}

/// Claims from several connections at once (one store per worker, as separate processes
/// have): every job is claimed exactly once. `open` opens another store on the same database.
pub(crate) fn claims_from_separate_connections_never_share_a_job(
    open: &(dyn Fn() -> Box<dyn JobStore> + Sync),
) {
    each_claimed_once(&*open(), 24, &|w| claim_all(&*open(), w));
}

pub(crate) fn cancels_reach_queued_and_held_jobs(s: &dyn JobStore) {
    use super::CancelRequest;
    // Queued, held by nobody: cancelled at once, with the usual record.
    let queued = job("/queued");
    s.insert(&queued).unwrap();
    assert_eq!(
        s.request_cancel(queued.id).unwrap(),
        CancelRequest::Cancelled
    );
    let q = s.get(queued.id).unwrap().unwrap();
    assert_eq!(q.status, JobStatus::Cancelled);
    assert!(q.finished_at.is_some());
    assert_eq!(q.error.unwrap().message, "cancelled");
    assert_eq!(
        s.request_cancel(queued.id).unwrap(),
        CancelRequest::NotActive
    );
    assert_eq!(
        s.request_cancel(Uuid::new_v4()).unwrap(),
        CancelRequest::NotActive
    );
    // Held under a lease: flagged; the holder learns it at its next renewal and its record
    // stays the holder's to write.
    s.insert(&job("/held")).unwrap();
    let mut held = s.claim_next(&worker(1), LONG).unwrap().unwrap();
    held.status = JobStatus::Processing;
    assert!(s.update(&held, JobStatus::Pending).unwrap());
    assert_eq!(s.request_cancel(held.id).unwrap(), CancelRequest::Requested);
    assert_eq!(
        s.get(held.id).unwrap().unwrap().status,
        JobStatus::Processing
    );
    let token = held.lease.unwrap().token;
    assert!(
        s.renew_lease(held.id, token, LONG)
            .unwrap()
            .unwrap()
            .cancel_requested
    );
    held.status = JobStatus::Cancelled;
    assert!(s.update(&held, JobStatus::Processing).unwrap());
    // Owned by its creating process (no lease): flagged too, not cancelled behind its back.
    let mut own = job("/own");
    own.owner = Some(worker(2));
    s.insert(&own).unwrap();
    assert!(!s.cancel_requested(own.id).unwrap());
    assert_eq!(s.request_cancel(own.id).unwrap(), CancelRequest::Requested);
    assert_eq!(s.get(own.id).unwrap().unwrap().status, JobStatus::Pending);
    // Its process reads the request from the store (it renews no lease).
    assert!(s.cancel_requested(own.id).unwrap());
    let mut ended = s.get(own.id).unwrap().unwrap();
    ended.status = JobStatus::Cancelled;
    assert!(s.update(&ended, JobStatus::Pending).unwrap());
    assert!(!s.cancel_requested(own.id).unwrap(), "only while it runs");
    assert!(!s.cancel_requested(Uuid::new_v4()).unwrap());
    // A holder that dies after the request: its job ends cancelled, not back in the queue.
    s.insert(&job("/dies")).unwrap();
    let dies = s.claim_next(&worker(3), SHORT).unwrap().unwrap();
    assert_eq!(s.request_cancel(dies.id).unwrap(), CancelRequest::Requested);
    std::thread::sleep(SHORT * 3);
    assert_eq!(
        s.requeue_expired(3).unwrap(),
        vec![(dies.id, JobStatus::Cancelled)]
    );
    assert_eq!(
        s.get(dies.id).unwrap().unwrap().status,
        JobStatus::Cancelled
    );
}

pub(crate) fn queue_stats_count_waiting_leased_and_expired(s: &dyn JobStore) {
    use super::QueueStats;
    assert_eq!(s.queue_stats().unwrap(), QueueStats::default());
    for f in ["/a", "/b", "/c", "/d"] {
        s.insert(&job(f)).unwrap();
    }
    let mut own = job("/own");
    own.owner = Some(worker(9));
    s.insert(&own).unwrap();
    s.insert(&finished(
        "/done",
        JobStatus::Completed,
        Duration::seconds(1),
    ))
    .unwrap();
    s.claim_next(&worker(1), LONG).unwrap().unwrap();
    s.claim_next(&worker(2), SHORT).unwrap().unwrap();
    std::thread::sleep(SHORT * 3);
    assert_eq!(
        s.queue_stats().unwrap(),
        QueueStats {
            waiting: 2,
            leased: 1,
            expired: 1
        }
    );
    s.requeue_expired(3).unwrap();
    assert_eq!(
        s.queue_stats().unwrap(),
        QueueStats {
            waiting: 3,
            leased: 1,
            expired: 0
        }
    );
}

pub(crate) fn a_released_job_is_claimed_again_at_once(s: &dyn JobStore) {
    s.insert(&job("/a")).unwrap();
    let mut j = s.claim_next(&worker(1), LONG).unwrap().unwrap();
    let token = j.lease.unwrap().token;
    j.status = JobStatus::Processing;
    j.started_at = Some(super::now_millis());
    j.attempts = 1;
    j.progress_percent = 30.0;
    assert!(s.update(&j, JobStatus::Pending).unwrap());
    assert!(
        !s.release_lease(j.id, Uuid::new_v4(), 0).unwrap(),
        "not by another token"
    );
    assert!(s.release_lease(j.id, token, 0).unwrap());
    let back = s.get(j.id).unwrap().unwrap();
    assert_eq!(back.status, JobStatus::Pending);
    assert_eq!(
        (back.owner, back.lease, back.started_at),
        (None, None, None)
    );
    assert_eq!((back.attempts, back.progress_percent), (0, 0.0));
    // The old holder is fenced off; another process claims it at once.
    assert!(!s.update(&j, JobStatus::Processing).unwrap());
    assert!(!s.release_lease(j.id, token, 0).unwrap());
    let again = s
        .claim_next(&worker(2), LONG)
        .unwrap()
        .expect("claimed again");
    assert_eq!(again.id, j.id);
    assert!(s.requeue_expired(3).unwrap().is_empty());
}
