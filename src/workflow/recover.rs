//! Recovery after a crash: jobs left `pending` or `processing` by a process of this host that
//! no longer runs are cleaned up and recorded as what they became.
use crate::publish;
use crate::workflow::category::ErrorCategory;
use crate::workflow::errors::Result;
use crate::workflow::jobs::{self, Job, JobFailure, JobFilter, JobStatus};
use crate::workflow::process::Liveness;
use crate::workflow::{audit, Workflow};
use std::fs;
use std::path::PathBuf;

impl Workflow {
    /// as interrupted. Jobs of other hosts and of live processes are left alone. Returns the
    /// recovered jobs.
    pub fn recover(&self) -> Result<Vec<Job>> {
        let mut recovered = Vec::new();
        for status in [JobStatus::Pending, JobStatus::Processing] {
            let filter = JobFilter {
                status: Some(status),
                ..Default::default()
            };
            for mut job in self.store.list(&filter)? {
                let Some(owner) = job.owner.clone() else {
                    continue; // queued for a worker, not owned by any process yet
                };
                if job.lease.is_some() {
                    // Claimed from the shared queue: when its holder dies, the lease runs out
                    // and the queue runs it again (JobStore::requeue_expired).
                    continue;
                }
                if owner.liveness() != Liveness::Dead {
                    continue;
                }
                // The output path is recorded just before the rename, while the part still
                // exists; so the job was published only if its part is gone. A book split into
                // parts records them once all are written and verified: what the crash left
                // unrenamed is published now (roll forward).
                let unpublished =
                    job.part_path.as_ref().is_some_and(|p| p.exists()) && !finish_parts(&job);
                for p in publish::remove_temporaries(&job_temporaries(&job)) {
                    tracing::info!(path = %p.display(), "removed what an interrupted job left");
                }
                let backups = job
                    .backup_paths
                    .iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<_>>();
                job.finished_at = Some(jobs::now_millis());
                // Published before the process ended: the book is complete (it is verified
                // before it is published); say what was left undone instead of "crash".
                let published = job
                    .output_path
                    .clone()
                    .filter(|p| !unpublished && p.is_file());
                if let Some(output) = published {
                    job.output_bytes = if job.output_parts.is_empty() {
                        fs::metadata(&output).ok().map(|m| m.len())
                    } else {
                        Some(
                            job.output_parts
                                .iter()
                                .filter_map(|p| fs::metadata(p).ok())
                                .map(|m| m.len())
                                .sum(),
                        )
                    };
                    job.status = JobStatus::Completed;
                    job.progress_percent = 100.0;
                    job.error = job.post_action.as_ref().map(|action| JobFailure {
                        category: ErrorCategory::System,
                        message: format!(
                            "the book was written to {}, but process {} on {} ended before the post-action ({action}) was finished",
                            output.display(), owner.pid, owner.hostname
                        ),
                        remedy: format!(
                            "check the source folders; restore an incomplete one from its backup ({})",
                            backups.join(", ")
                        ),
                    });
                    if self.store.update(&job, status)? {
                        audit!(action = "job.recovered", job_id = %job.id, output = %output.display(), "job was published before its process ended; recorded as completed");
                        recovered.push(job);
                    }
                    continue;
                }
                job.status = JobStatus::Failed;
                job.error = Some(JobFailure {
                    category: ErrorCategory::System,
                    message: format!(
                        "interrupted: process {} on {} ended while the job was {status} (crash, kill or power loss)",
                        owner.pid, owner.hostname
                    ),
                    remedy: if backups.is_empty() {
                        "run the conversion again".into()
                    } else {
                        format!(
                            "run the conversion again; if a source folder looks incomplete, restore it from its backup ({})",
                            backups.join(", ")
                        )
                    },
                });
                if self.store.update(&job, status)? {
                    audit!(action = "job.interrupted", job_id = %job.id, pid = owner.pid, "marked interrupted job failed");
                    recovered.push(job);
                }
            }
        }
        Ok(recovered)
    }
}

/// Publishes the recorded [`Job::output_parts`] that a crash left in their temporaries; true
/// when every part is in place afterwards (false for a job that has no parts).
fn finish_parts(job: &Job) -> bool {
    let Some(job_part) = &job.part_path else {
        return false;
    };
    if job.output_parts.is_empty() {
        return false;
    }
    let mut all = true;
    for part in &job.output_parts {
        if part.is_file() {
            continue;
        }
        let temp = publish::split_part_temp(part, job_part);
        match publish::rename_noreplace(&temp, part) {
            Ok(()) => {
                tracing::info!(path = %part.display(), "published a part an interrupted job had written and verified");
            }
            Err(e) => {
                tracing::warn!(path = %part.display(), temp = %temp.display(), error = %e, "could not finish publishing a part of an interrupted job");
                all = false;
            }
        }
    }
    if let Some(dir) = job.output_parts[0].parent() {
        let _ = publish::fsync_dir(dir);
    }
    all
}

/// The temporaries of a job as recorded: [`Job::temp_paths`], or for records written before
/// that list existed, the `.part` and its sibling temporaries.
fn job_temporaries(job: &Job) -> Vec<PathBuf> {
    if !job.temp_paths.is_empty() {
        return job.temp_paths.clone();
    }
    job.part_path
        .as_ref()
        .map(|p| publish::temporaries_of(p))
        .unwrap_or_default()
}
