//! Sniffing files: [`sniff_mp3`] is the cheap "does this look like MP3" check validation runs.
use crate::mp3bytes;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Cheaply checks that `path` looks like an MP3 file; the error says what it is instead.
///
/// Reads at most a few 64 KiB windows (see `mp3bytes::sniff` for what is accepted).
/// Never opens anything but a regular file (opening a FIFO would block).
pub fn sniff_mp3(path: &Path) -> Result<(), String> {
    let meta = fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".to_string());
    }
    if meta.len() == 0 {
        return Err("empty file (0 bytes)".to_string());
    }
    let mut file = fs::File::open(path).map_err(|e| format!("cannot be opened: {e}"))?;
    mp3bytes::sniff(meta.len(), &mut |at| read_window(&mut file, at))
}

fn read_window(file: &mut fs::File, at: u64) -> Result<Vec<u8>, String> {
    file.seek(SeekFrom::Start(at))
        .map_err(|e| format!("cannot be read: {e}"))?;
    let mut buf = Vec::new();
    file.take(mp3bytes::SNIFF_WINDOW)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot be read: {e}"))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use tempfile::TempDir;

    fn mkfifo(path: &Path) -> bool {
        Command::new("mkfifo")
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    // -- sniff_mp3 ----------------------------------------------------------------------------
    // What the sniffer accepts is tested on bytes in `mp3bytes`; these test the file plumbing.

    fn sniff_bytes(bytes: &[u8]) -> Result<(), String> {
        let t = TempDir::new().unwrap();
        let p = t.path().join("x.mp3");
        fs::write(&p, bytes).unwrap();
        sniff_mp3(&p)
    }

    #[test]
    fn sniff_reads_the_windows_it_needs_from_the_file() {
        use crate::mp3bytes::tests::{cat, frames, id3, MPEG1_128K};
        assert_eq!(sniff_bytes(&frames(MPEG1_128K, 3)), Ok(()));
        // The audio begins past the first window; the tag ends just inside it.
        for body in [300 * 1024, 64 * 1024 - 100] {
            let tag = id3(3, body, false);
            assert_eq!(sniff_bytes(&cat(&[&tag, &frames(MPEG1_128K, 5)])), Ok(()));
            assert_eq!(
                sniff_bytes(&cat(&[&tag, &frames(MPEG1_128K, 1)])),
                Ok(()),
                "a lone frame at the end of the file"
            );
        }
        assert_eq!(sniff_bytes(b""), Err("empty file (0 bytes)".to_string()));
        assert_eq!(
            sniff_bytes(&id3(3, 100, false)),
            Err("contains only an ID3 tag, no audio".to_string())
        );
    }

    #[test]
    fn sniff_never_opens_a_fifo() {
        let t = TempDir::new().unwrap();
        let p = t.path().join("pipe.mp3");
        assert!(mkfifo(&p));
        // Opening a FIFO for reading blocks until a writer appears: this would hang.
        assert_eq!(sniff_mp3(&p), Err("is not a regular file".to_string()));
        assert_eq!(
            sniff_mp3(t.path()),
            Err("is not a regular file".to_string())
        );
        assert!(sniff_mp3(&t.path().join("missing.mp3"))
            .unwrap_err()
            .starts_with("cannot be read"));
    }
}
