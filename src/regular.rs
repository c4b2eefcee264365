//! Opening input files: regular files only. A FIFO without a writer blocks an `open` forever and
//! a device such as `/dev/zero` never ends, so every stage that reads a user's file (scan, probe,
//! the decoder's input, verify) opens it here. At the bottom of the crate: it needs nothing else.
use std::fs;
use std::io;
use std::path::Path;

/// Opens `path` for reading, refusing at once anything but a regular file (after following
/// symbolic links): opening a FIFO without a writer blocks forever, and a device such as
/// `/dev/zero` never ends. The type is checked before opening and again on the opened
/// descriptor, which is opened with `O_NONBLOCK` so that even a FIFO swapped in between cannot
/// block (on a regular file the flag changes nothing). `what` names the operation for the error.
pub(crate) fn open_regular(path: &Path, what: &'static str) -> crate::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let refuse = |ft: &fs::FileType| {
        let kind = if ft.is_dir() {
            "folder"
        } else {
            special_kind(ft)
        };
        crate::Error::io(
            path,
            what,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("it is a {kind}, not a regular file"),
            ),
        )
    };
    let meta = fs::metadata(path).map_err(|e| crate::Error::io(path, what, e))?;
    if !meta.is_file() {
        return Err(refuse(&meta.file_type()));
    }
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| crate::Error::io(path, what, e))?;
    let meta = f.metadata().map_err(|e| crate::Error::io(path, what, e))?;
    if !meta.is_file() {
        return Err(refuse(&meta.file_type()));
    }
    Ok(f)
}

/// What kind of special file `ft` is, for messages ("named pipe (FIFO)", "socket", …).
#[cfg(unix)]
pub(crate) fn special_kind(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "named pipe (FIFO)"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
pub(crate) fn special_kind(_ft: &fs::FileType) -> &'static str {
    "special file"
}
