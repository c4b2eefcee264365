//! Checks of a job request that must pass before anything is written: no backup, no `.part`,
//! no conversion time is spent on a request that could only fail late or damage what the user
//! owns.
//!
//! - The output never replaces or lands on a source: not the same file as any file under the
//!   source folders or any other input (after `canonicalize`, and by device and inode, so hard
//!   links count), not an `.mp3` inside a source folder (it would join the book next time), not
//!   inside a source folder that a post-action moves or deletes, not inside aiom4b's backup or
//!   log folders, not the job database. `overwrite` lifts none of this.
//! - A source is not inside aiom4b's backup folder (convert a restored copy instead), and a
//!   source that contains `DATA_DIR` is never moved or deleted (the live database and backups
//!   would go with it).
//! - A move target is checked up front: not inside the source, the place free, writable, and
//!   with room for the folder when the move crosses file systems (a rename needs none).
use crate::scan::walk::{Event, Walk};
use crate::workflow::config::Config;
use crate::workflow::errors::{Error, Result};
use crate::workflow::post_action::{self, PostAction};
use crate::workflow::{naming, JobRequest};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Checks `request` whose source folders are `folders` (canonical where they exist).
pub(crate) fn check(
    config: &Config,
    request: &JobRequest,
    folders: &[PathBuf],
    template: &str,
) -> Result<()> {
    if folders.is_empty() {
        return Err(Error::Invalid("no source folders given".into()));
    }
    for f in folders {
        if !f.is_dir() {
            return Err(Error::SourceMissing(f.clone()));
        }
    }
    let data_dir = config.protected_dirs().remove(0);
    let backup_dir = canonical_or_absolute(&config.backup_dir());
    for f in folders {
        if f.starts_with(&backup_dir) {
            return Err(Error::Invalid(format!(
                "{}: this folder is inside aiom4b's backup folder ({}); backups are never converted \
                 or changed: restore the backup to another folder and convert \
                 that copy",
                f.display(),
                backup_dir.display()
            )));
        }
    }
    let backup_enabled = request.backup.unwrap_or(config.backup_enabled);
    if request.post_action != PostAction::Keep {
        if !backup_enabled {
            return Err(Error::Invalid(
                "moving or deleting the sources needs backups (a failed move is rolled back from the backup); enable backups, or set BACKUP_ENABLED=true".into(),
            ));
        }
        if let Some(f) = folders.iter().find(|f| data_dir.starts_with(f)) {
            return Err(Error::Invalid(format!(
                "{}: aiom4b's data folder ({}) is inside this source folder; moving or deleting the \
                 folder would take the job database and the backups with it: keep the sources, or \
                 set DATA_DIR to a folder outside the book",
                f.display(),
                data_dir.display()
            )));
        }
    }
    if let PostAction::MoveTo(dir) = &request.post_action {
        for f in folders {
            post_action::move_target(f, dir)?;
        }
        check_move_target(folders, dir)?;
    }
    naming::check_template(template).map_err(|r| Error::Invalid(format!("name template: {r}")))?;
    if let Some(file) = &request.output_file {
        check_output_file(config, request, folders, file)?;
    }
    Ok(())
}

/// The `-o` file: a file, not an input, not where it feeds back into a book or into aiom4b's own
/// folders, and not replacing anything unless asked.
fn check_output_file(
    config: &Config,
    request: &JobRequest,
    folders: &[PathBuf],
    file: &Path,
) -> Result<()> {
    if file.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: the output is a folder; give a file name such as book.m4b",
            file.display()
        )));
    }
    // Where the output really goes: through a symbolic link at the file itself, or in a folder
    // reached through links.
    let resolved = resolve(file);
    let refuse = |why: String| {
        Err(Error::Invalid(format!(
            "{}: refusing to write the output there: {why}",
            file.display()
        )))
    };
    if let Ok(meta) = fs::metadata(file) {
        let id = (meta.dev(), meta.ino());
        for f in folders {
            if let Some(input) = files_under(f).into_iter().find(|(_, i)| *i == id) {
                let named = std::path::absolute(file).is_ok_and(|a| a == input.0);
                return refuse(format!(
                    "it is the source file {} (the same file{}); an output never replaces a source",
                    input.0.display(),
                    if named { "" } else { ", through a link" }
                ));
            }
        }
        for input in &request.inputs {
            if fs::metadata(input).is_ok_and(|m| (m.dev(), m.ino()) == id) {
                return refuse(format!(
                    "it is the input file {}; an output never replaces an input",
                    input.display()
                ));
            }
        }
    }
    for f in folders {
        if !resolved.starts_with(f) {
            continue;
        }
        if crate::scan::is_mp3_name(resolved.file_name().unwrap_or_default()) {
            return refuse(format!(
                "it is an .mp3 name inside the source folder {}, so it would become part of the book the next time",
                f.display()
            ));
        }
        if request.post_action != PostAction::Keep {
            return refuse(format!(
                "it is inside the source folder {}, which is moved or deleted after the conversion",
                f.display()
            ));
        }
    }
    let own = [
        (canonical_or_absolute(&config.backup_dir()), "backup"),
        (canonical_or_absolute(&config.logs_dir()), "log"),
    ];
    for (dir, what) in own {
        if resolved.starts_with(&dir) {
            return refuse(format!(
                "it is inside aiom4b's {what} folder {}; write it elsewhere (the default is {})",
                dir.display(),
                config.output_dir().display()
            ));
        }
    }
    let db = canonical_or_absolute(&config.db_path());
    let db_files = ["", "-wal", "-shm", "-journal"].map(|s| {
        let mut p = db.clone().into_os_string();
        p.push(s);
        PathBuf::from(p)
    });
    if db_files.contains(&resolved) {
        return refuse("it is aiom4b's job database".into());
    }
    // Checked again when publishing (without replacing); this only saves the work.
    if !request.overwrite && fs::symlink_metadata(file).is_ok() {
        return Err(Error::OutputFileExists(file.to_path_buf()));
    }
    Ok(())
}

/// A move target must take the folders: writable, and with room for them when the move is a
/// copy across file systems.
fn check_move_target(folders: &[PathBuf], dir: &Path) -> Result<()> {
    let dir = fs::canonicalize(dir).map_err(|e| Error::io(dir, "resolve folder", e))?;
    // access(2) answers for the file system too: a read-only mount is EROFS even for root.
    if let Err(e) = rustix::fs::access(
        &dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    ) {
        return Err(Error::Invalid(format!(
            "{}: cannot write to the folder to move the sources to: {}; choose a writable folder",
            dir.display(),
            std::io::Error::from(e)
        )));
    }
    let dir_dev = fs::metadata(&dir)
        .map_err(|e| Error::io(&dir, "read folder", e))?
        .dev();
    let mut needed = 0u64;
    for f in folders {
        let dev = fs::metadata(f)
            .map_err(|e| Error::io(f, "read folder", e))?
            .dev();
        if dev != dir_dev {
            needed += files_under(f)
                .iter()
                .filter_map(|(p, _)| fs::symlink_metadata(p).ok())
                .map(|m| m.len() + 4096)
                .sum::<u64>();
        }
    }
    if needed > 0 {
        needed += 1 << 20;
        let available = crate::workflow::backup::available_space(&dir)
            .map_err(|e| Error::io(&dir, "query free space", e))?;
        if available < needed {
            return Err(Error::MoveTargetFull {
                path: dir,
                needed,
                available,
            });
        }
    }
    Ok(())
}

/// Every regular file below `root` (links to files followed, links to folders not entered),
/// with its device and inode: the crate's one walker under its tree rules (hidden entries too,
/// links reported and never entered), resolving each link to a file. Unreadable folders are
/// passed over: this guards writes, it does not judge the book.
fn files_under(root: &Path) -> Vec<(PathBuf, (u64, u64))> {
    let mut out = Vec::new();
    let walked: std::result::Result<(), std::convert::Infallible> = Walk::tree().run(root, |ev| {
        if let Event::Entry(e) = ev {
            let ft = e.meta.file_type();
            if ft.is_file() || ft.is_symlink() {
                if let Some(meta) = fs::metadata(e.path).ok().filter(|m| m.is_file()) {
                    out.push((
                        fs::canonicalize(e.path).unwrap_or_else(|_| e.path.to_path_buf()),
                        (meta.dev(), meta.ino()),
                    ));
                }
            }
        }
        Ok(())
    });
    let Ok(()) = walked;
    out
}

/// The canonical form of `file`, resolving its folder when the file itself does not exist yet.
fn resolve(file: &Path) -> PathBuf {
    if let Ok(p) = fs::canonicalize(file) {
        return p;
    }
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => canonical_or_absolute(parent).join(name),
        _ => abs,
    }
}

fn canonical_or_absolute(p: &Path) -> PathBuf {
    fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}
