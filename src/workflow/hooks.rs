//! Fault-injection points for the tests: a kill during a backup, a failing deletion, a crash
//! at a named stage of a job. Empty in production.
use std::path::Path;
use std::sync::Arc;

/// Fault-injection points for tests (kill during backup, failing deletions). Not for production.
#[doc(hidden)]
#[derive(Clone, Default)]
#[allow(clippy::type_complexity)]
pub struct Hooks {
    /// Called after each file copied into a backup's staging folder.
    pub after_backup_file: Option<Arc<dyn Fn(&Path) + Send + Sync>>,
    /// Called before each file of a source folder is removed; an error aborts the removal.
    pub before_source_remove: Option<Arc<dyn Fn(&Path) -> std::io::Result<()> + Send + Sync>>,
    /// Called when a job reaches a point where a crash is worth testing: `convert` (the first
    /// progress write), `publish` (output recorded, part complete, before the rename),
    /// `published` (after the rename, before the record says so), `move` (a cross-file-system
    /// move's staging folder exists, before the copy); with `--split-at`, `split` (the first
    /// part written, the rest not) and `publish-part` (the first part renamed, the rest not),
    /// while `publish` and `published` are before the first and after the last part's rename.
    pub at_stage: Option<Arc<dyn Fn(&str) + Send + Sync>>,
}

impl Hooks {
    pub(crate) fn stage(&self, name: &str) {
        if let Some(hook) = &self.at_stage {
            hook(name);
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").finish_non_exhaustive()
    }
}
