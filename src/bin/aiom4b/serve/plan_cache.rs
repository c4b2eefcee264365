//! The plans of book folders, kept while their folders do not change.
//!
//! A page view asks for a folder's plan, its cover and its thumbnail; the library view asks
//! for every folder's plan. Each plan opens and parses every MP3 of the book, so without a
//! cache one view probed a folder two to four times. A plan is kept under the folder's
//! canonical path together with the folder's [`Fingerprint`] (every entry's size, times and
//! inode; no file read), and used again only while the fingerprint is the same: a file added,
//! removed, replaced or rewritten (even with its old modification time put back) plans anew.
//!
//! - **One plan at a time per folder:** requests for a folder whose plan is being made wait
//!   for it instead of making their own (the slot's `OnceLock`).
//! - **Bounded:** least recently used plans go first once the kept plans (their pictures
//!   above all: every MP3 may embed its own cover) pass [`BUDGET_BYTES`].
//! - **Failures** are kept for [`ERROR_TTL`] only: a folder that cannot be planned now (a file
//!   being copied in) is tried again soon even if nothing visible changed.
use aiom4b::scan::{fingerprint_folder, Fingerprint};
use aiom4b::{Book, ScanOptions};
use lru::LruCache;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Memory the kept plans may take (estimated).
pub const BUDGET_BYTES: usize = 64 << 20;
/// Plans kept at most, whatever their size.
const MAX_ENTRIES: usize = 2048;
/// How long a failed plan is answered from the cache.
pub const ERROR_TTL: Duration = Duration::from_secs(30);

pub type Planned = Result<Arc<Book>, Arc<String>>;

struct Slot {
    fingerprint: Fingerprint,
    made: Instant,
    value: OnceLock<Planned>,
    /// Its estimated size once made (0 before).
    weight: std::sync::atomic::AtomicUsize,
}

impl Slot {
    fn fresh(&self, fingerprint: Fingerprint) -> bool {
        self.fingerprint == fingerprint
            && !matches!(self.value.get(), Some(Err(_)) if self.made.elapsed() > ERROR_TTL)
    }
}

struct State {
    map: LruCache<PathBuf, Arc<Slot>>,
    bytes: usize,
}

pub struct PlanCache {
    state: Mutex<State>,
    budget: usize,
}

impl Default for PlanCache {
    fn default() -> Self {
        PlanCache::with_budget(BUDGET_BYTES)
    }
}

impl PlanCache {
    pub fn with_budget(budget: usize) -> Self {
        PlanCache {
            state: Mutex::new(State {
                map: LruCache::unbounded(),
                bytes: 0,
            }),
            budget,
        }
    }

    /// The plan of `folder` (canonical), from the cache while the folder is unchanged, else
    /// made by `make` (blocking: call it off the async threads).
    pub fn plan(
        &self,
        folder: &Path,
        scan: &ScanOptions,
        make: impl FnOnce() -> Result<Book, String>,
    ) -> Planned {
        let fingerprint = fingerprint_folder(folder, scan);
        let slot = {
            let mut st = self.lock();
            match st.map.get(folder) {
                Some(s) if s.fresh(fingerprint) => s.clone(),
                _ => {
                    let s = Arc::new(Slot {
                        fingerprint,
                        made: Instant::now(),
                        value: OnceLock::new(),
                        weight: Default::default(),
                    });
                    if let Some(old) = st.map.put(folder.to_path_buf(), s.clone()) {
                        st.bytes -= old.weight.load(std::sync::atomic::Ordering::Relaxed);
                    }
                    s
                }
            }
        };
        let mut made = false;
        let value = slot
            .value
            .get_or_init(|| {
                made = true;
                make().map(Arc::new).map_err(Arc::new)
            })
            .clone();
        metrics::counter!(
            "aiom4b_plan_cache_requests_total",
            "result" => if made { "miss" } else { "hit" }
        )
        .increment(1);
        if made {
            self.account(folder, &slot, weight(&value));
        }
        value
    }

    /// Adds a made plan's weight (if its slot is still the folder's) and evicts to the budget.
    fn account(&self, folder: &Path, slot: &Arc<Slot>, w: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut st = self.lock();
        if !st.map.peek(folder).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            return;
        }
        slot.weight.store(w, Relaxed);
        st.bytes += w;
        while (st.bytes > self.budget || st.map.len() > MAX_ENTRIES) && st.map.len() > 1 {
            match st.map.pop_lru() {
                Some((_, old)) => st.bytes -= old.weight.load(Relaxed),
                None => break,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change to State is complete before a call that could panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let st = self.lock();
        (st.map.len(), st.bytes)
    }
}

/// Estimated memory of a plan: its pictures (the book's cover and each file's embedded one)
/// and a share per file for names, tags and chapters.
fn weight(p: &Planned) -> usize {
    match p {
        Err(e) => 256 + e.len(),
        Ok(b) => {
            let pictures: usize = b
                .tracks
                .iter()
                .filter_map(|t| t.info.cover.as_ref())
                .map(|c| c.data.len())
                .sum();
            let cover = b.cover.as_ref().map_or(0, |c| c.picture.data.len());
            4096 + b.tracks.len() * 2048 + pictures + cover
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn book(folder: &Path) -> Book {
        aiom4b::plan::plan(
            &[folder.to_path_buf()],
            &ScanOptions::default(),
            &Default::default(),
            &Default::default(),
        )
        .map_err(|e| e.to_string())
        .unwrap()
    }

    fn sample(dir: &Path, name: &str) -> PathBuf {
        let folder = dir.join(name);
        aiom4b_testkit::fixtures::write_book(&folder, 2, 1.0, &Default::default()).unwrap();
        folder.canonicalize().unwrap()
    }

    #[test]
    fn a_plan_is_made_once_until_its_folder_changes() {
        let d = tempfile::tempdir().unwrap();
        let folder = sample(d.path(), "Book");
        let cache = PlanCache::default();
        let made = AtomicUsize::new(0);
        let get = || {
            cache
                .plan(&folder, &ScanOptions::default(), || {
                    made.fetch_add(1, Ordering::SeqCst);
                    Ok(book(&folder))
                })
                .unwrap()
        };
        let first = get();
        let again = get();
        assert!(Arc::ptr_eq(&first, &again), "the same plan again");
        assert_eq!(made.load(Ordering::SeqCst), 1);

        // A new file: planned again, and the new plan has it.
        let extra = folder.join("99 - Extra.mp3");
        fs::copy(&first.tracks[0].info.path, &extra).unwrap();
        let after = get();
        assert_eq!(made.load(Ordering::SeqCst), 2);
        assert_eq!(after.tracks.len(), first.tracks.len() + 1);
        // Removed again: planned again.
        fs::remove_file(&extra).unwrap();
        assert_eq!(get().tracks.len(), first.tracks.len());
        assert_eq!(made.load(Ordering::SeqCst), 3);
        // A cover put in: planned again, with it.
        fs::write(
            folder.join("cover.png"),
            aiom4b_testkit::fixtures::test_png(8, 8),
        )
        .unwrap();
        assert!(get().cover.is_some());
        assert_eq!(made.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn concurrent_requests_share_one_plan() {
        let d = tempfile::tempdir().unwrap();
        let folder = sample(d.path(), "Book");
        let cache = PlanCache::default();
        let made = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    cache
                        .plan(&folder, &ScanOptions::default(), || {
                            made.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(100));
                            Ok(book(&folder))
                        })
                        .unwrap();
                });
            }
        });
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn failures_are_kept_briefly_and_the_budget_evicts_the_oldest() {
        let d = tempfile::tempdir().unwrap();
        let a = sample(d.path(), "A");
        let b = sample(d.path(), "B");
        // Room for about one plan.
        let one = weight(&Ok(Arc::new(book(&a))));
        let cache = PlanCache::with_budget(one + one / 2);
        let made = AtomicUsize::new(0);
        let get = |f: &Path| {
            cache.plan(f, &ScanOptions::default(), || {
                made.fetch_add(1, Ordering::SeqCst);
                Ok(book(f))
            })
        };
        get(&a).unwrap();
        get(&b).unwrap();
        let (n, bytes) = cache.held();
        assert_eq!(n, 1, "A was evicted for B");
        assert!(bytes <= one + one / 2);
        get(&b).unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 2, "B is still there");
        get(&a).unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 3, "A is made again");

        let c = d.path().join("C");
        fs::create_dir(&c).unwrap();
        let c = c.canonicalize().unwrap();
        let failed = cache.plan(&c, &ScanOptions::default(), || Err("no MP3s".into()));
        assert_eq!(failed.unwrap_err().as_str(), "no MP3s");
        let again = cache.plan(&c, &ScanOptions::default(), || unreachable!());
        assert_eq!(
            again.unwrap_err().as_str(),
            "no MP3s",
            "kept within ERROR_TTL"
        );
    }
}
