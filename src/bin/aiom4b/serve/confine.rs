//! Path confinement: every folder a request names is relative to SOURCE_DIR and stays there.
//!
//! A requested path is refused before it touches the file system when it is empty, absolute,
//! holds NUL, or has a `.`/`..` component (the router has already decoded `%2e%2e` into `..`,
//! and `%2F` into `/`). What is left is joined to the canonical SOURCE_DIR and canonicalized:
//! a symlink that resolves outside is refused (403). The queue checks a job's folders again
//! right before it runs ([`SourceRoot::recheck`]), so a folder swapped for a symlink after the
//! request was accepted is not read either; the scan itself never follows links inside a book
//! folder.
use super::api::ApiError;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub struct SourceRoot {
    root: PathBuf,
}

impl SourceRoot {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(SourceRoot {
            root: std::fs::canonicalize(dir)?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The canonical folder for `rel` (relative to SOURCE_DIR), or why not.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, ApiError> {
        let bad = |why: &str| {
            ApiError::forbidden(
                "path_outside_source",
                format!("{why}: {rel:?}"),
                "give a folder path relative to SOURCE_DIR, as GET /api/v1/folders lists them",
            )
        };
        if rel.is_empty() {
            return Err(bad("empty path"));
        }
        if rel.contains('\0') {
            return Err(bad("the path holds a NUL character"));
        }
        let p = Path::new(rel);
        for c in p.components() {
            match c {
                Component::Normal(_) => {}
                Component::RootDir | Component::Prefix(_) => {
                    return Err(bad("absolute paths are not allowed"))
                }
                Component::ParentDir | Component::CurDir => {
                    return Err(bad("`..` and `.` are not allowed in paths"))
                }
            }
        }
        // `a/./b` has no CurDir component once parsed; a literal "." segment does.
        if rel.split('/').any(|s| s == "." || s == "..") {
            return Err(bad("`..` and `.` are not allowed in paths"));
        }
        let joined = self.root.join(p);
        let canonical = std::fs::canonicalize(&joined).map_err(|_| {
            ApiError::not_found(
                "folder_not_found",
                format!("no folder {rel:?} under SOURCE_DIR"),
                "list the folders with GET /api/v1/folders",
            )
        })?;
        if !canonical.starts_with(&self.root) {
            return Err(bad("the path leads outside SOURCE_DIR (through a symlink)"));
        }
        if !canonical.is_dir() {
            return Err(ApiError::not_found(
                "folder_not_found",
                format!("{rel:?} is not a folder"),
                "list the folders with GET /api/v1/folders",
            ));
        }
        Ok(canonical)
    }

    /// A folder accepted earlier (canonical) still resolves to itself, inside SOURCE_DIR.
    pub fn recheck(&self, canonical: &Path) -> Result<(), ApiError> {
        let now = std::fs::canonicalize(canonical).map_err(|_| {
            ApiError::not_found(
                "folder_not_found",
                "the folder is gone".to_string(),
                "list the folders with GET /api/v1/folders",
            )
        })?;
        if now != canonical || !now.starts_with(&self.root) {
            return Err(ApiError::forbidden(
                "path_outside_source",
                "the folder was replaced by a link since the request was accepted".to_string(),
                "convert folders that lie under SOURCE_DIR",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_forms_are_refused_before_the_file_system() {
        let tmp = std::env::temp_dir().join(format!("aiom4b-confine-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("src/book")).unwrap();
        let root = SourceRoot::new(&tmp.join("src")).unwrap();
        assert!(root.resolve("book").is_ok());
        for bad in [
            "",
            "../src/book",
            "book/..",
            "/etc",
            "a\0b",
            "./book",
            "book/.",
        ] {
            let e = root.resolve(bad).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::FORBIDDEN, "{bad:?}");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
