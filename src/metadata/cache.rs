//! The on-disk cache of provider answers: one file per URL under a folder (the CLI uses
//! `DATA_DIR/cache/metadata`), named by the BLAKE3 hash of the URL, holding the URL on its
//! first line (checked on reading) and the body after it. An entry older than the TTL (by
//! its modification time) is fetched again. Only answers that parsed are stored, so a
//! malformed or failed answer is never served from the cache. Writes go to a temporary file
//! renamed into place: a reader sees a whole entry or none.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The default time an answer stays fresh: book metadata rarely changes.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A folder of cached answers.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    ttl: Duration,
}

impl Cache {
    /// A cache in `dir` (created on the first write) whose entries are fresh for `ttl`.
    pub fn new(dir: impl Into<PathBuf>, ttl: Duration) -> Cache {
        Cache {
            dir: dir.into(),
            ttl,
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, url: &str) -> PathBuf {
        let h = blake3::hash(url.as_bytes()).to_hex();
        self.dir.join(format!("{}.cache", &h[..32]))
    }

    /// The cached body for `url`, when there is a fresh one.
    pub fn get(&self, url: &str) -> Option<Vec<u8>> {
        let path = self.file(url);
        let meta = std::fs::metadata(&path).ok()?;
        let age = SystemTime::now()
            .duration_since(meta.modified().ok()?)
            .unwrap_or_default();
        if age > self.ttl {
            return None;
        }
        let data = std::fs::read(&path).ok()?;
        let nl = data.iter().position(|&b| b == b'\n')?;
        (data[..nl] == *url.as_bytes()).then(|| data[nl + 1..].to_vec())
    }

    /// Stores `body` for `url`; a failure is logged and otherwise ignored (the cache only
    /// saves requests).
    pub fn put(&self, url: &str, body: &[u8]) {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let path = self.file(url);
            let tmp = self
                .dir
                .join(format!(".{}.{}.tmp", std::process::id(), fastrand::u64(..)));
            let mut data = Vec::with_capacity(url.len() + 1 + body.len());
            data.extend_from_slice(url.as_bytes());
            data.push(b'\n');
            data.extend_from_slice(body);
            std::fs::write(&tmp, &data)?;
            std::fs::rename(&tmp, &path).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
        };
        if let Err(e) = write() {
            tracing::warn!(dir = %self.dir.display(), "cannot write the metadata cache: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_expire() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Cache::new(tmp.path().join("c"), DEFAULT_TTL);
        assert_eq!(c.get("http://x/a"), None);
        c.put("http://x/a", b"{\"a\":1}\nmore");
        assert_eq!(c.get("http://x/a").unwrap(), b"{\"a\":1}\nmore");
        assert_eq!(c.get("http://x/b"), None);
        let stale = Cache::new(tmp.path().join("c"), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(stale.get("http://x/a"), None);
    }
}
