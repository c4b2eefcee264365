//! The crate's one directory walker, with one set of rules for every caller: the scan, `aiom4b
//! folders`, the backup copy and the source folder's move and delete.
//!
//! # Rules
//!
//! * **Order.** Depth first; the entries of a folder in byte order of their names (directory
//!   order is arbitrary, so this makes every walk deterministic, e.g. which of two links to one
//!   folder is entered first). A folder's [`Event::Entry`] comes before its contents and its
//!   [`Event::Leave`] after them.
//! * **Depth.** The walked folder's own entries are at depth 1, their children at 2, and so
//!   on. With `max_depth = Some(n)`, a folder at depth `n` is reported ([`Event::TooDeep`])
//!   and not entered; `None` has no limit.
//! * **Symbolic links and hidden entries**, by [`Policy`]:
//!   - [`Policy::Book`] (reading a book: the scan, `aiom4b folders`): a link is followed only
//!     when its canonical target lies inside the canonical walked folder, because a stray link
//!     must not pull in anything on the disk (the user can pass that folder instead). Every
//!     folder is entered at most once, by canonical path, so a link loop or a second link to a
//!     folder is reported ([`Skip::AlreadyWalked`]), never walked forever or twice. Hidden
//!     entries (a leading `.`, which includes macOS AppleDouble `._*` files) are skipped.
//!   - [`Policy::Tree`] (changing a tree: copy, move, delete): links are reported as links
//!     ([`Entry::meta`] is the link's own) and never followed, so a delete or a copy never
//!     reaches outside the tree; hidden entries are included, since a copy or a delete must
//!     see every entry.
//! * **Exclusions.** An entry whose canonical path lies under one of `exclude` (canonical
//!   paths; aiom4b's data folder) is reported ([`Skip::Excluded`]) and not entered.
//! * **Problems** are events too; the walker never stops on its own. A visitor that returns
//!   `Err` stops the walk (the tree operations stop at the first problem; the scan notes each
//!   one and goes on).
//!
//! Why not `walkdir`: its `follow_links` follows every link (out of the folder too) and only
//! detects loops through ancestors, yielding errors for them; the scanner's rules (follow
//! only inside the folder, enter each folder once, name what was skipped and why) would be a
//! filter on top with most of this code again. `walkdir` fits the tree operations alone, and
//! one walker with two documented policies beats two walkers.
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// How a walk treats symbolic links and hidden entries (see the module's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Reading a book: links followed inside the folder only, each folder once, hidden skipped.
    Book,
    /// Changing a tree: links reported as links and never followed, hidden entries included.
    Tree,
}

/// What to walk and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Walk<'a> {
    pub(crate) policy: Policy,
    /// Deepest level entered (1 = the folder's own entries only); `None` = no limit.
    pub(crate) max_depth: Option<usize>,
    /// Canonical folders not entered, nor anything below them.
    pub(crate) exclude: &'a [PathBuf],
}

/// One entry met by the walk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    /// The path relative to the walked folder.
    pub(crate) rel: &'a Path,
    /// The walked folder joined with `rel`.
    pub(crate) path: &'a Path,
    pub(crate) name: &'a OsStr,
    /// The entry's metadata; of the target for a followed link ([`Policy::Book`]), of the
    /// link itself under [`Policy::Tree`].
    pub(crate) meta: &'a fs::Metadata,
    /// Its identity: the canonical path (links resolved) under [`Policy::Book`]; under
    /// [`Policy::Tree`] the canonical walked folder joined with `rel`.
    pub(crate) canonical: &'a Path,
}

/// Why an entry was not reported as an [`Event::Entry`].
#[derive(Debug)]
pub(crate) enum Skip {
    /// Its metadata could not be read (it may have vanished meanwhile).
    Unexaminable(io::Error),
    /// A symbolic link whose target does not exist (or cannot be resolved).
    BrokenLink(io::Error),
    /// A symbolic link whose target's metadata could not be read.
    LinkTargetUnexaminable(io::Error),
    /// A symbolic link to `target`, outside the walked folder; not followed.
    LinkOutside { target: PathBuf, is_dir: bool },
    /// A folder already walked (reached again through a link); not entered again.
    AlreadyWalked,
    /// Under one of [`Walk::exclude`].
    Excluded,
}

/// What the walk reports, in walk order.
#[derive(Debug)]
pub(crate) enum Event<'a> {
    /// A file, a folder (before its contents), a link ([`Policy::Tree`]) or a special file.
    Entry(Entry<'a>),
    /// After the contents of a folder reported by [`Event::Entry`].
    Leave(Entry<'a>),
    /// A folder at the depth limit; not entered.
    TooDeep(Entry<'a>),
    /// An entry left out, and why.
    Skipped {
        path: &'a Path,
        name: &'a OsStr,
        reason: Skip,
    },
    /// A folder that cannot be listed (`rel` is empty for the walked folder itself).
    Unreadable {
        path: &'a Path,
        rel: &'a Path,
        error: io::Error,
    },
    /// One entry of the folder `dir` could not be read; the others are still walked.
    EntryUnreadable { dir: &'a Path, error: io::Error },
}

impl Walk<'_> {
    /// Walks `root` by [`Policy::Book`] rules.
    pub(crate) fn book(max_depth: Option<usize>) -> Walk<'static> {
        Walk {
            policy: Policy::Book,
            max_depth,
            exclude: &[],
        }
    }

    /// Walks `root` by [`Policy::Tree`] rules, without limit.
    pub(crate) fn tree() -> Walk<'static> {
        Walk {
            policy: Policy::Tree,
            max_depth: None,
            exclude: &[],
        }
    }

    /// Walks `root`, calling `visit` for every event; stops at the first `Err` it returns.
    /// A `root` that cannot be resolved is reported as [`Event::Unreadable`].
    pub(crate) fn run<E>(
        &self,
        root: &Path,
        mut visit: impl FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        match fs::canonicalize(root) {
            Ok(canon) => self.run_canonical(root, &canon, visit),
            Err(error) => visit(Event::Unreadable {
                path: root,
                rel: Path::new(""),
                error,
            }),
        }
    }

    /// [`Walk::run`] for a `root` whose canonical path the caller already has.
    pub(crate) fn run_canonical<E>(
        &self,
        root: &Path,
        root_canon: &Path,
        mut visit: impl FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut w = Walker {
            walk: self,
            root,
            root_canon,
            visited: HashSet::from([root_canon.to_path_buf()]),
            visit: &mut visit,
        };
        w.walk_dir(Path::new(""), root_canon, 1)
    }
}

struct Walker<'a, 'v, E> {
    walk: &'a Walk<'a>,
    root: &'a Path,
    root_canon: &'a Path,
    /// Canonical folders already entered: the loop guard ([`Policy::Book`]).
    visited: HashSet<PathBuf>,
    visit: &'v mut dyn FnMut(Event<'_>) -> Result<(), E>,
}

impl<E> Walker<'_, '_, E> {
    /// Walks the folder at `rel` whose canonical path is `dir_canon`; its entries are at
    /// `depth`.
    fn walk_dir(&mut self, rel: &Path, dir_canon: &Path, depth: usize) -> Result<(), E> {
        let dir = self.root.join(rel);
        let entries = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(error) => {
                return (self.visit)(Event::Unreadable {
                    path: &dir,
                    rel,
                    error,
                })
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => names.push(e.file_name()),
                // A failing entry must not hide the others: report it and read on.
                Err(error) => (self.visit)(Event::EntryUnreadable { dir: &dir, error })?,
            }
        }
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in names {
            self.visit_entry(rel, &dir, dir_canon, &name, depth)?;
        }
        Ok(())
    }

    fn visit_entry(
        &mut self,
        rel: &Path,
        dir: &Path,
        dir_canon: &Path,
        name: &OsStr,
        depth: usize,
    ) -> Result<(), E> {
        let book = self.walk.policy == Policy::Book;
        if book && name.as_encoded_bytes().first() == Some(&b'.') {
            return Ok(());
        }
        let path = dir.join(name);
        let rel = rel.join(name);
        let skip = |reason| Event::Skipped {
            path: &path,
            name,
            reason,
        };
        let lmeta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => return (self.visit)(skip(Skip::Unexaminable(e))),
        };
        let (meta, canonical) = if book && lmeta.file_type().is_symlink() {
            let target = match fs::canonicalize(&path) {
                Ok(t) => t,
                Err(e) => return (self.visit)(skip(Skip::BrokenLink(e))),
            };
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => return (self.visit)(skip(Skip::LinkTargetUnexaminable(e))),
            };
            if !target.starts_with(self.root_canon) {
                let is_dir = meta.is_dir();
                return (self.visit)(skip(Skip::LinkOutside { target, is_dir }));
            }
            (meta, target)
        } else {
            // Not followed: its canonical path is its canonical folder plus its name.
            (lmeta, dir_canon.join(name))
        };
        if self.walk.exclude.iter().any(|x| canonical.starts_with(x)) {
            return (self.visit)(skip(Skip::Excluded));
        }
        let entry = Entry {
            rel: &rel,
            path: &path,
            name,
            meta: &meta,
            canonical: &canonical,
        };
        // Under the tree policy a link's metadata is its own, so `is_dir` is false for it.
        if !meta.is_dir() {
            return (self.visit)(Event::Entry(entry));
        }
        if book && self.visited.contains(&canonical) {
            return (self.visit)(skip(Skip::AlreadyWalked));
        }
        if self.walk.max_depth.is_some_and(|max| depth >= max) {
            return (self.visit)(Event::TooDeep(entry));
        }
        if book {
            self.visited.insert(canonical.clone());
        }
        (self.visit)(Event::Entry(entry))?;
        self.walk_dir(&rel, &canonical, depth + 1)?;
        (self.visit)(Event::Leave(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use tempfile::TempDir;

    fn touch(dir: &Path, rel: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    /// The events of a walk as short strings: `+rel` entry (`/` for a folder, `@` for a
    /// link), `-rel` leave, `>rel` too deep, `!name` skipped, `?` unreadable.
    fn events(walk: &Walk<'_>, root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        walk.run(root, |ev| {
            out.push(match ev {
                Event::Entry(e) => {
                    let kind = if e.meta.is_dir() {
                        "/"
                    } else if e.meta.file_type().is_symlink() {
                        "@"
                    } else {
                        ""
                    };
                    format!("+{}{kind}", e.rel.display())
                }
                Event::Leave(e) => format!("-{}", e.rel.display()),
                Event::TooDeep(e) => format!(">{}", e.rel.display()),
                Event::Skipped { name, reason, .. } => {
                    let why = match reason {
                        Skip::LinkOutside { .. } => "outside",
                        Skip::AlreadyWalked => "again",
                        Skip::BrokenLink(_) => "broken",
                        Skip::Excluded => "excluded",
                        _ => "other",
                    };
                    format!("!{} {why}", name.to_string_lossy())
                }
                Event::Unreadable { .. } | Event::EntryUnreadable { .. } => "?".into(),
            });
            Ok::<(), ()>(())
        })
        .unwrap();
        out
    }

    /// A folder with a hidden file, a subfolder, a link to it, a link out and a loop.
    fn sample() -> (TempDir, PathBuf) {
        let t = TempDir::new().unwrap();
        let root = t.path().join("book");
        touch(&root, "b.mp3");
        touch(&root, ".hidden.mp3");
        touch(&root, "CD1/a.mp3");
        touch(t.path(), "outside/o.mp3");
        symlink(root.join("CD1"), root.join("A-link")).unwrap();
        symlink(t.path().join("outside"), root.join("out")).unwrap();
        symlink(&root, root.join("CD1/up")).unwrap();
        symlink(root.join("gone"), root.join("dangling")).unwrap();
        (t, root)
    }

    #[test]
    fn book_policy_follows_links_inside_once_and_skips_hidden() {
        let (_t, root) = sample();
        assert_eq!(
            events(&Walk::book(None), &root),
            [
                // Byte order: the link to CD1 comes first and walks it; CD1 itself is then
                // a folder already walked, and so is the loop back to the root.
                "+A-link/",
                "+A-link/a.mp3",
                "!up again",
                "-A-link",
                "!CD1 again",
                "+b.mp3",
                "!dangling broken",
                "!out outside",
            ]
        );
    }

    #[test]
    fn tree_policy_reports_links_as_links_and_includes_hidden() {
        let (_t, root) = sample();
        assert_eq!(
            events(&Walk::tree(), &root),
            [
                "+.hidden.mp3",
                "+A-link@",
                "+CD1/",
                "+CD1/a.mp3",
                "+CD1/up@",
                "-CD1",
                "+b.mp3",
                "+dangling@",
                "+out@",
            ]
        );
    }

    #[test]
    fn depth_counts_from_the_folders_own_entries() {
        let t = TempDir::new().unwrap();
        touch(t.path(), "1.mp3");
        touch(t.path(), "d1/2.mp3");
        touch(t.path(), "d1/d2/3.mp3");
        let w = |max| events(&Walk::book(Some(max)), t.path());
        assert_eq!(w(1), ["+1.mp3", ">d1"]);
        assert_eq!(w(2), ["+1.mp3", "+d1/", "+d1/2.mp3", ">d1/d2", "-d1"]);
        let all = [
            "+1.mp3",
            "+d1/",
            "+d1/2.mp3",
            "+d1/d2/",
            "+d1/d2/3.mp3",
            "-d1/d2",
            "-d1",
        ];
        assert_eq!(w(3), all);
        assert_eq!(events(&Walk::tree(), t.path()), all);
    }

    #[test]
    fn exclusions_are_reported_and_not_entered() {
        let t = TempDir::new().unwrap();
        touch(t.path(), "data/db.mp3");
        touch(t.path(), "x.mp3");
        let exclude = [fs::canonicalize(t.path().join("data")).unwrap()];
        for policy in [Policy::Book, Policy::Tree] {
            let walk = Walk {
                policy,
                max_depth: None,
                exclude: &exclude,
            };
            assert_eq!(events(&walk, t.path()), ["!data excluded", "+x.mp3"]);
        }
    }

    #[test]
    fn an_error_from_the_visitor_stops_the_walk() {
        let t = TempDir::new().unwrap();
        for n in ["a", "b", "c"] {
            touch(t.path(), n);
        }
        let mut seen = 0;
        let r = Walk::tree().run(t.path(), |ev| {
            if let Event::Entry(_) = ev {
                seen += 1;
            }
            if seen == 2 {
                Err("stop")
            } else {
                Ok(())
            }
        });
        assert_eq!((r, seen), (Err("stop"), 2));
        let missing = Walk::tree().run(&t.path().join("missing"), |ev| match ev {
            Event::Unreadable { rel, .. } if rel.as_os_str().is_empty() => Err("root"),
            _ => Ok(()),
        });
        assert_eq!(missing, Err("root"));
    }
}
