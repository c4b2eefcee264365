//! How an Ogg file ends: its last whole page, found in the file's tail.
//!
//! A whole Ogg stream ends with a page that carries the end-of-stream flag. A file cut short (an
//! interrupted download or copy) ends inside a page instead, and nothing else says so: FFmpeg
//! takes the book's length from the last whole page's granule position, decodes up to there
//! without an error, and a conversion would quietly lose the rest of the book.
//!
//! Written by hand because the question is small and no crate answers it cheaply: the `ogg`
//! crate and symphonia's Ogg reader read pages forward from the start (a whole book), and
//! FFmpeg's demuxer, which reads the last pages for the duration, does not say how the file
//! ends. The page CRC is symphonia's (the Ogg polynomial, unreflected, initial value 0).
//! Works on byte slices, never panics whatever the bytes, and is fuzzed (with the MP3 parsers,
//! target `mp3`, which takes every input as a whole file).
use symphonia::core::checksum::Crc32;
use symphonia::core::io::Monitor;

/// Bytes of a page header before its segment table.
pub const PAGE_HEADER_LEN: usize = 27;
/// The largest page: a header, 255 lacing values and 255 segments of 255 bytes.
pub const MAX_PAGE_LEN: usize = PAGE_HEADER_LEN + 255 + 255 * 255;
/// Bytes at the end of a file that always hold its last whole page and any partial page after
/// it.
pub const TAIL_LEN: usize = 2 * MAX_PAGE_LEN;
/// The header-type flag of the last page of a logical stream.
const END_OF_STREAM: u8 = 0x04;

/// One whole, CRC-checked page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OggPage {
    /// Bytes, header included.
    pub len: usize,
    pub header_type: u8,
    pub granule: i64,
    pub serial: u32,
}

/// Parses the page at the start of `b`: `None` unless a whole page with a correct CRC is there.
pub fn parse_page(b: &[u8]) -> Option<OggPage> {
    let header = b.get(..PAGE_HEADER_LEN)?;
    if &header[..4] != b"OggS" || header[4] != 0 {
        return None;
    }
    let segments = usize::from(header[26]);
    let lacing = b.get(PAGE_HEADER_LEN..PAGE_HEADER_LEN + segments)?;
    let body: usize = lacing.iter().map(|&l| usize::from(l)).sum();
    let len = PAGE_HEADER_LEN + segments + body;
    let page = b.get(..len)?;
    let stored = u32::from_le_bytes(page[22..26].try_into().ok()?);
    let mut crc = Crc32::new(0);
    crc.process_buf_bytes(&page[..22]);
    crc.process_buf_bytes(&[0; 4]);
    crc.process_buf_bytes(&page[26..]);
    (crc.crc() == stored).then(|| OggPage {
        len,
        header_type: header[5],
        granule: i64::from_le_bytes(header[6..14].try_into().expect("8 bytes")),
        serial: u32::from_le_bytes(header[14..18].try_into().expect("4 bytes")),
    })
}

/// How an Ogg file ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OggEnd {
    /// Its last whole page ends a stream.
    Complete,
    /// It ends inside a page: after its last whole page (which does not end the stream) come
    /// `partial` bytes of a page begun and not finished.
    CutInPage { partial: usize },
    /// Its last whole page does not end the stream, and no partial page follows it (the file
    /// ends on a page boundary, or with `trailing` bytes that are not an Ogg page).
    NoEndMark { trailing: usize },
}

/// How the file whose last bytes are `tail` (at least its last [`TAIL_LEN`] bytes, or the whole
/// file) ends; `None` when no whole page is there (not an Ogg file's end).
pub fn ending(tail: &[u8]) -> Option<OggEnd> {
    // The last whole page: every capture pattern is tried, since the window may begin inside a
    // page; the CRC tells a page from the pattern's bytes inside audio.
    let mut last: Option<(usize, OggPage)> = None;
    let mut at = 0;
    while let Some(i) = find(&tail[at..], b"OggS") {
        let offset = at + i;
        if let Some(p) = parse_page(&tail[offset..]) {
            last = Some((offset, p));
        }
        at = offset + 1;
    }
    let (offset, page) = last?;
    let rest = &tail[offset + page.len..];
    Some(if page.header_type & END_OF_STREAM != 0 {
        OggEnd::Complete
    } else if rest.starts_with(b"OggS") || (rest.len() < 4 && b"OggS".starts_with(rest)) {
        if rest.is_empty() {
            OggEnd::NoEndMark { trailing: 0 }
        } else {
            OggEnd::CutInPage {
                partial: rest.len(),
            }
        }
    } else {
        OggEnd::NoEndMark {
            trailing: rest.len(),
        }
    })
}

/// Reads the tail of the file at `path` and says how it ends (`Ok(None)`: no Ogg page there).
pub fn file_ending(path: &std::path::Path) -> std::io::Result<Option<OggEnd>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = crate::regular::open_regular(path, "read the end of the Ogg file")
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let size = f.metadata()?.len();
    let start = size.saturating_sub(TAIL_LEN as u64);
    f.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity((size - start) as usize);
    f.take(TAIL_LEN as u64).read_to_end(&mut tail)?;
    Ok(ending(&tail))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page with `body` as its one packet (at most 255 × 255 bytes), CRC set.
    fn page(header_type: u8, granule: i64, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut lacing = vec![255u8; body.len() / 255];
        lacing.push((body.len() % 255) as u8);
        let mut p = b"OggS\0".to_vec();
        p.push(header_type);
        p.extend_from_slice(&granule.to_le_bytes());
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(&seq.to_le_bytes());
        p.extend_from_slice(&[0; 4]);
        p.push(lacing.len() as u8);
        p.extend_from_slice(&lacing);
        p.extend_from_slice(body);
        let mut crc = Crc32::new(0);
        crc.process_buf_bytes(&p);
        let c = crc.crc().to_le_bytes();
        p[22..26].copy_from_slice(&c);
        p
    }

    #[test]
    fn the_end_of_a_stream_a_cut_and_a_missing_end_mark_are_told_apart() {
        // "OggS" inside the audio must not pass for a page.
        let body: Vec<u8> = (0..3000u32)
            .flat_map(|i| if i % 97 == 0 { *b"OggS" } else { [i as u8; 4] })
            .collect();
        let mut file = page(0x02, 0, 0, b"head");
        for k in 1..40 {
            file.extend(page(0, k * 960, k as u32, &body[..5000]));
        }
        let whole = [
            file.clone(),
            page(END_OF_STREAM, 40 * 960, 40, &body[..900]),
        ]
        .concat();
        assert_eq!(ending(&whole), Some(OggEnd::Complete));
        let p = parse_page(&whole[whole.len() - 900 - 27 - 4..]).unwrap();
        assert_eq!((p.granule, p.serial, p.len), (40 * 960, 7, 900 + 27 + 4));
        // Trailing bytes after the last page do not hide its end mark.
        assert_eq!(
            ending(&[whole.as_slice(), b"TAG junk"].concat()),
            Some(OggEnd::Complete)
        );
        // Cut anywhere inside the last page, its first bytes included.
        for cut in [1, 3, 4, 27, 300, 900] {
            assert_eq!(
                ending(&whole[..whole.len() - cut]),
                Some(OggEnd::CutInPage {
                    partial: 900 + 27 + 4 - cut
                }),
                "cut {cut}"
            );
        }
        // Only the tail is read: the same answers from the last TAIL_LEN bytes.
        let tail = &whole[whole.len().saturating_sub(TAIL_LEN)..whole.len() - 10];
        assert_eq!(
            ending(tail),
            Some(OggEnd::CutInPage {
                partial: 900 + 27 + 4 - 10
            })
        );
        assert_eq!(ending(&file), Some(OggEnd::NoEndMark { trailing: 0 }));
        assert_eq!(
            ending(&[file.as_slice(), b"TAG"].concat()),
            Some(OggEnd::NoEndMark { trailing: 3 })
        );
        // A flipped bit in the last page: it is not a page, so the file is cut in it.
        let mut bad = whole.clone();
        let n = bad.len();
        bad[n - 5] ^= 1;
        assert!(matches!(ending(&bad), Some(OggEnd::CutInPage { .. })));
        assert_eq!(ending(b"not an ogg file at all, OggS"), None);
        assert_eq!(ending(&[]), None);
    }
}
