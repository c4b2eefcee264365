//! Helpers shared by the fuzz targets.
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An unlinked in-memory file (memfd) reachable by path as `/proc/self/fd/N`, for code that
/// only takes a path: nothing on disk, nothing left behind when the fuzzer stops or crashes.
pub struct MemFile {
    file: File,
    path: PathBuf,
}

impl MemFile {
    pub fn new(name: &str) -> MemFile {
        use std::os::fd::AsRawFd;
        let fd =
            rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC).expect("memfd_create");
        let file = File::from(fd);
        let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        MemFile { file, path }
    }

    /// Replaces the contents with `data` and returns the path to open.
    pub fn set(&mut self, data: &[u8]) -> &Path {
        self.file.set_len(0).expect("truncate the memfd");
        self.file.write_all_at(data, 0).expect("write the memfd");
        self.file.flush().expect("flush the memfd");
        &self.path
    }
}
