//! Checking a backup against its manifest: every file re-read and hashed, links and folders
//! present, nothing extra. The files of an encrypted backup are checked as stored, against
//! their ciphertext's size and checksum, so no key is needed.
use super::copy::hash_file;
use super::manifest::{self, Entry};
use super::walk::walk;
use super::{dir_name, manifest_problem, BackupStore, VerifyReport};
use crate::workflow::errors::Result;
use std::fs;

impl BackupStore {
    /// Re-reads every file of a backup and compares it with the manifest; also reports missing
    /// and unexpected entries. A manifest that cannot be read is a problem of the report, not
    /// an error: the backup is damaged.
    pub fn verify(&self, name: &str) -> Result<VerifyReport> {
        let path = self.find(name)?;
        let read = match manifest::read(&path) {
            Ok(r) => r,
            Err(e) => {
                let report = VerifyReport {
                    name: dir_name(&path),
                    path,
                    files_checked: 0,
                    problems: vec![manifest_problem(&e)],
                };
                crate::workflow::audit!(action = "backup.verify", backup = %report.name, problems = 1, "verified backup: its manifest is unreadable");
                return Ok(report);
            }
        };
        let mut problems = Vec::new();
        let mut files_checked = 0;
        let mut expected = std::collections::HashSet::new();
        for e in &read.manifest.entries {
            let rel = e.rel();
            expected.insert(rel.to_path_buf());
            let p = path.join(rel);
            let shown = rel.display();
            match e {
                Entry::Dir(_) => {
                    if !p.is_dir() {
                        problems.push(format!("{shown}: folder missing"));
                    }
                }
                Entry::Link { target, .. } => match fs::read_link(&p) {
                    Ok(t) if &t == target => {}
                    Ok(t) => problems.push(format!(
                        "{shown}: link points to {} instead of {}",
                        t.display(),
                        target.display()
                    )),
                    Err(_) => problems.push(format!("{shown}: symbolic link missing")),
                },
                Entry::File {
                    size,
                    hash,
                    age_size,
                    ..
                } => {
                    files_checked += 1;
                    // An encrypted file is checked as stored: its ciphertext (no key needed).
                    let size = age_size.as_ref().unwrap_or(size);
                    match fs::symlink_metadata(&p) {
                        Ok(m) if m.is_file() => {
                            if m.len() != *size {
                                problems
                                    .push(format!("{shown}: size {} instead of {size}", m.len()));
                            } else {
                                match hash_file(&p) {
                                    Ok(h) if h == *hash => {}
                                    Ok(_) => problems.push(format!(
                                        "{shown}: checksum mismatch (content changed)"
                                    )),
                                    Err(err) => {
                                        problems.push(format!("{shown}: unreadable: {err}"))
                                    }
                                }
                            }
                        }
                        _ => problems.push(format!("{shown}: file missing")),
                    }
                }
            }
        }
        for rel in walk(&path)?.iter().map(Entry::rel) {
            if !read.files.iter().any(|f| f == rel) && !expected.contains(rel) {
                problems.push(format!("{}: not in the manifest", rel.display()));
            }
        }
        let report = VerifyReport {
            name: dir_name(&path),
            path,
            files_checked,
            problems,
        };
        crate::workflow::audit!(action = "backup.verify", backup = %report.name, problems = report.problems.len(), "verified backup");
        Ok(report)
    }
}
