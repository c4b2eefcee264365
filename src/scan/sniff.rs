//! Sniffing files: [`sniff_mp3`] is the cheap "does this look like MP3" check validation runs;
//! [`sniff_container`] tells which container a file is by its first bytes (never its name), so
//! FFmpeg is only ever given the one demuxer that container needs.
use crate::mp3bytes;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Cheaply checks that `path` looks like an MP3 file; the error says what it is instead.
///
/// Reads at most a few 64 KiB windows (see `mp3bytes::sniff` for what is accepted).
/// Never opens anything but a regular file (opening a FIFO would block).
pub fn sniff_mp3(path: &Path) -> Result<(), String> {
    let (mut file, len) = open_sniffable(path)?;
    mp3bytes::sniff(len, &mut |at| read_window(&mut file, at))
}

/// Opens a regular, non-empty file for sniffing; `Err` says why it cannot be sniffed.
fn open_sniffable(path: &Path) -> Result<(fs::File, u64), String> {
    let meta = fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".to_string());
    }
    if meta.len() == 0 {
        return Err("empty file (0 bytes)".to_string());
    }
    let file = fs::File::open(path).map_err(|e| format!("cannot be opened: {e}"))?;
    Ok((file, meta.len()))
}

/// A container, by its magic bytes. Which codec is inside is FFmpeg's to say after opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// MPEG audio frames (possibly after ID3v2 tags): MP3.
    Mpeg,
    /// An ISO base media file (`ftyp` first): MP4/M4A/M4B.
    Mp4,
    /// ADTS-framed AAC.
    Adts,
    /// Native FLAC (`fLaC`, possibly after an ID3v2 tag).
    Flac,
    /// Ogg pages (`OggS`): Vorbis or Opus.
    Ogg,
    /// RIFF WAVE.
    Wav,
}

impl Container {
    /// The name of the one libavformat demuxer allowed for it (`format_whitelist` matches
    /// it against the demuxer's name list, e.g. `mov` against `mov,mp4,m4a,3gp,3g2,mj2`).
    pub fn demuxer(self) -> &'static str {
        match self {
            Container::Mpeg => "mp3",
            Container::Mp4 => "mov",
            Container::Adts => "aac",
            Container::Flac => "flac",
            Container::Ogg => "ogg",
            Container::Wav => "wav",
        }
    }
    /// What a message calls it.
    pub fn label(self) -> &'static str {
        match self {
            Container::Mpeg => "MPEG audio",
            Container::Mp4 => "MP4",
            Container::Adts => "ADTS AAC",
            Container::Flac => "FLAC",
            Container::Ogg => "Ogg",
            Container::Wav => "WAV",
        }
    }
}

/// Which container `path` is, from its first bytes; `Err` says what it seems to be instead.
/// A file with MPEG frame syncs and nothing else recognizable is [`Container::Mpeg`]; whether
/// it is really MP3 is [`sniff_mp3`]'s and FFmpeg's to decide.
pub fn sniff_container(path: &Path) -> Result<Container, String> {
    let (mut file, _) = open_sniffable(path)?;
    let head = read_window(&mut file, 0)?;
    // An ID3v2 tag can precede MPEG audio, ADTS and (against the spec, but it happens) FLAC.
    let skip = mp3bytes::id3v2_len(&head).unwrap_or(0);
    let body: Vec<u8> = if skip == 0 {
        head
    } else if (skip as usize) < head.len() {
        head[skip as usize..].to_vec()
    } else {
        read_window(&mut file, skip)?
    };
    Ok(container_of(&body, skip > 0))
}

/// The container of bytes `b` (the file's start after any ID3v2 tag).
pub(crate) fn container_of(b: &[u8], after_id3: bool) -> Container {
    if !after_id3 {
        if b.len() >= 12 && &b[4..8] == b"ftyp" {
            return Container::Mp4;
        }
        if b.starts_with(b"OggS") {
            return Container::Ogg;
        }
        if b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WAVE" {
            return Container::Wav;
        }
    }
    if b.starts_with(b"fLaC") {
        return Container::Flac;
    }
    // ADTS: 12-bit sync, then MPEG version, then layer `00` (MPEG audio frames have layer
    // 01–11), and a valid sampling-frequency index; two such headers in a row.
    let adts_at = |i: usize| {
        b.len() >= i + 7 && b[i] == 0xFF && b[i + 1] & 0xF6 == 0xF0 && (b[i + 2] >> 2) & 0x0F < 13
    };
    if adts_at(0) {
        let len = ((usize::from(b[3] & 0x03)) << 11)
            | (usize::from(b[4]) << 3)
            | (usize::from(b[5]) >> 5);
        if len >= 7 && (b.len() < len + 7 || adts_at(len)) {
            return Container::Adts;
        }
    }
    Container::Mpeg
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
