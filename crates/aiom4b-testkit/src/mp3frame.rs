//! Just enough MP3 parsing for the test kit: the ID3v2 tag length, layer III frame headers and
//! the Xing/Info + LAME header of the first frame. Deliberately separate from aiom4b's own
//! parser (`mp3bytes`): the writer's read-back and the tests that cut files at frame boundaries
//! should not trust the code they are testing. It follows the same published layouts (ID3v2.3/4
//! §3.1, the MPEG-1/2 layer III header, the Xing and LAME tag specifications) and refuses what
//! no encoder writes (reserved values, free format); unlike the library's, it never has to
//! cope with hostile input beyond not panicking.
use std::io::{self, Read, Seek, SeekFrom};

/// Bytes in an ID3v2 header.
const ID3V2_HEADER_LEN: usize = 10;

/// ID3v2 tags in a row skipped at the start of a file (taggers sometimes prepend a new one).
const MAX_CHAINED_TAGS: usize = 4;

/// The longest layer III frame: MPEG-1 at 320 kb/s and 32 kHz, with its padding byte.
pub const MAX_FRAME_LEN: usize = 1441;

/// Total length of the ID3v2 tag at the start of `b` (header, body and a v2.4 footer), or `None`
/// unless `b` starts with a valid ID3v2.2–2.4 header.
pub fn id3v2_len(b: &[u8]) -> Option<u64> {
    let &[b'I', b'D', b'3', major, minor, flags, ref size @ ..] = b.get(..ID3V2_HEADER_LEN)? else {
        return None;
    };
    // The size is "synchsafe": 7 bits per byte, the top bit always clear.
    if !(2..=4).contains(&major) || minor == 0xFF || size.iter().any(|x| x & 0x80 != 0) {
        return None;
    }
    let body = size.iter().fold(0u64, |acc, &x| acc << 7 | u64::from(x));
    let footer = if major == 4 && flags & 0x10 != 0 {
        ID3V2_HEADER_LEN as u64
    } else {
        0
    };
    Some(ID3V2_HEADER_LEN as u64 + body + footer)
}

/// The offset of the audio after the ID3v2 tags at the start of `b` (0 without a tag; up to
/// `MAX_CHAINED_TAGS` tags in a row are skipped). May exceed `b.len()` when a tag's end lies beyond it.
pub fn audio_start(b: &[u8]) -> u64 {
    let mut at = 0u64;
    for _ in 0..MAX_CHAINED_TAGS {
        let Some(len) = usize::try_from(at)
            .ok()
            .and_then(|i| b.get(i..))
            .and_then(id3v2_len)
        else {
            break;
        };
        at += len;
    }
    at
}

/// A parsed MPEG audio layer III frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The header's version code: 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5.
    pub version: u8,
    /// Single channel (channel mode `11`).
    pub mono: bool,
    pub sample_rate: u32,
    pub bitrate_bps: u32,
    /// Whole frame length in bytes, header included.
    pub len: usize,
}

impl FrameHeader {
    /// Parses the 4 header bytes at the start of `b`; `None` unless they are a valid layer III
    /// header with a bitrate (free format and reserved values are refused).
    pub fn parse(b: &[u8]) -> Option<FrameHeader> {
        let &[0xFF, b1, b2, b3, ..] = b else {
            return None;
        };
        let (sync, version, layer) = (b1 >> 5, (b1 >> 3) & 3, (b1 >> 1) & 3);
        let (bitrate_index, rate_index) = (usize::from(b2 >> 4), usize::from((b2 >> 2) & 3));
        let emphasis = b3 & 3;
        // Layer code 1 is layer III; version 1, rate 3 and emphasis 2 are reserved.
        if sync != 7 || version == 1 || layer != 1 || rate_index == 3 || emphasis == 2 {
            return None;
        }
        if !(1..15).contains(&bitrate_index) {
            return None;
        }
        let kbps = if version == 3 {
            [
                0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
            ][bitrate_index]
        } else {
            [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160][bitrate_index]
        };
        let sample_rate = [44_100, 48_000, 32_000][rate_index] >> (3 - version.max(1));
        // 1152 (MPEG-1) or 576 samples per frame, 8 bits per byte.
        let samples_per_byte = if version == 3 { 144 } else { 72 };
        Some(FrameHeader {
            version,
            mono: b3 >> 6 == 3,
            sample_rate,
            bitrate_bps: kbps * 1000,
            len: (samples_per_byte * kbps * 1000 / sample_rate) as usize
                + usize::from((b2 >> 1) & 1),
        })
    }

    /// Samples per channel in the frame: 1152 (MPEG-1) or 576 (MPEG-2/2.5).
    pub fn samples_per_frame(&self) -> u32 {
        if self.version == 3 {
            1152
        } else {
            576
        }
    }

    /// Bytes of side information after the 4-byte header, where a Xing/Info tag starts.
    fn side_info_len(&self) -> usize {
        match (self.version == 3, self.mono) {
            (true, false) => 32,
            (true, true) | (false, false) => 17,
            (false, true) => 9,
        }
    }
}

/// The Xing/Info + LAME header of the first frame, as far as the writer checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XingLame {
    /// `Xing` rather than `Info`.
    pub vbr: bool,
    pub frame: FrameHeader,
    /// Audio frames after the header frame.
    pub frames: u32,
    pub encoder_delay: u32,
    pub padding: u32,
}

/// Reads the Xing/Info header of the first frame after the ID3v2 tags of `r`, with its frame
/// count and its LAME extension's delay and padding; `None` when any of them is missing.
pub fn read_xing_lame<R: Read + Seek>(r: &mut R) -> io::Result<Option<XingLame>> {
    let mut head = [0u8; ID3V2_HEADER_LEN];
    let mut start = 0u64;
    for _ in 0..MAX_CHAINED_TAGS {
        r.seek(SeekFrom::Start(start))?;
        let n = read_up_to(r, &mut head)?;
        match id3v2_len(&head[..n]) {
            Some(len) => start += len,
            None => break,
        }
    }
    r.seek(SeekFrom::Start(start))?;
    let mut frame = vec![0u8; MAX_FRAME_LEN];
    let n = read_up_to(r, &mut frame)?;
    frame.truncate(n);
    Ok(parse_xing_lame(&frame))
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn parse_xing_lame(b: &[u8]) -> Option<XingLame> {
    let frame = FrameHeader::parse(b)?;
    let b = &b[..b.len().min(frame.len)];
    let be32 = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let mut at = 4 + frame.side_info_len();
    let vbr = match b.get(at..at + 4)? {
        b"Xing" => true,
        b"Info" => false,
        _ => return None,
    };
    let flags = be32(at + 4)?;
    at += 8;
    // Fields present by flag, in order: frames, bytes, a 100-byte TOC, quality.
    if flags & 1 == 0 {
        return None;
    }
    let frames = be32(at)?;
    at += 4;
    for (flag, len) in [(2, 4), (4, 100), (8, 4)] {
        if flags & flag != 0 {
            at += len;
        }
    }
    // The LAME extension: a 9-byte encoder string ("LAME3.100", or "Lavc…" from FFmpeg's
    // muxer), then 12 bytes to the 24-bit field of 12-bit delay and 12-bit padding.
    let encoder = b.get(at..at + 4)?;
    if encoder != b"LAME" && encoder != b"Lavc" && encoder != b"Lavf" {
        return None;
    }
    let trim = b.get(at + 21..at + 24)?;
    let trim = u32::from(trim[0]) << 16 | u32::from(trim[1]) << 8 | u32::from(trim[2]);
    Some(XingLame {
        vbr,
        frame,
        frames,
        encoder_delay: trim >> 12,
        padding: trim & 0xFFF,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id3v2_length_is_synchsafe_with_a_v24_footer() {
        let tag = |major: u8, flags: u8, size: [u8; 4]| {
            let mut t = vec![b'I', b'D', b'3', major, 0, flags];
            t.extend_from_slice(&size);
            t
        };
        assert_eq!(id3v2_len(&tag(3, 0, [0, 0, 0x07, 0x68])), Some(10 + 1000));
        assert_eq!(id3v2_len(&tag(4, 0x10, [0, 0, 0, 100])), Some(120));
        assert_eq!(id3v2_len(&tag(3, 0x10, [0, 0, 0, 100])), Some(110));
        assert_eq!(id3v2_len(&tag(3, 0, [0, 0, 0x80, 0])), None);
        assert_eq!(id3v2_len(&tag(5, 0, [0, 0, 0, 1])), None);
        assert_eq!(id3v2_len(&tag(3, 0, [0, 0, 0, 1])[..9]), None);
        let mut two = tag(3, 0, [0, 0, 0, 5]);
        two.resize(15, 0);
        two.extend(tag(4, 0, [0, 0, 0, 0]));
        assert_eq!(audio_start(&two), 25);
        assert_eq!(audio_start(b"\xFF\xFB\x90\x00"), 0);
    }

    #[test]
    fn frame_headers_of_each_version() {
        // MPEG-1 128 kb/s 44.1 kHz stereo: 417 bytes, 418 with padding.
        let h = FrameHeader::parse(&[0xFF, 0xFB, 0x90, 0x00]).unwrap();
        assert_eq!(
            (h.sample_rate, h.bitrate_bps, h.len, h.mono),
            (44_100, 128_000, 417, false)
        );
        assert_eq!(
            FrameHeader::parse(&[0xFF, 0xFB, 0x92, 0xC0]).unwrap().len,
            418
        );
        // MPEG-2 64 kb/s 22.05 kHz mono: 72 × 64000 / 22050 = 208 bytes.
        let h = FrameHeader::parse(&[0xFF, 0xF3, 0x80, 0xC0]).unwrap();
        assert_eq!(
            (h.sample_rate, h.len, h.mono, h.samples_per_frame()),
            (22_050, 208, true, 576)
        );
        // MPEG-2.5 8 kb/s at 8 kHz.
        let h = FrameHeader::parse(&[0xFF, 0xE3, 0x18, 0x00]).unwrap();
        assert_eq!((h.version, h.sample_rate, h.bitrate_bps), (0, 8_000, 8_000));
        // The longest frame.
        let h = FrameHeader::parse(&[0xFF, 0xFB, 0xEA, 0x00]).unwrap();
        assert_eq!(h.len, MAX_FRAME_LEN);
    }

    #[test]
    fn reserved_and_free_format_headers_are_refused() {
        for bad in [
            [0xFF, 0xFB, 0x00, 0x00], // free format
            [0xFF, 0xFB, 0xF0, 0x00], // bitrate 1111
            [0xFF, 0xFB, 0x9C, 0x00], // rate 11
            [0xFF, 0xFB, 0x90, 0x02], // emphasis 10
            [0xFF, 0xEB, 0x90, 0x00], // version 01
            [0xFF, 0xFD, 0x90, 0x00], // layer II
            [0xFE, 0xFB, 0x90, 0x00], // no sync
        ] {
            assert_eq!(FrameHeader::parse(&bad), None, "{bad:02X?}");
        }
        assert_eq!(FrameHeader::parse(&[0xFF, 0xFB, 0x90]), None);
    }

    #[test]
    fn xing_and_lame_fields_are_read_behind_the_side_information() {
        let mut frame = vec![0u8; 417];
        frame[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x00]);
        let at = 4 + 32;
        frame[at..at + 4].copy_from_slice(b"Info");
        frame[at + 4..at + 8].copy_from_slice(&(1u32 | 8).to_be_bytes()); // frames + quality
        frame[at + 8..at + 12].copy_from_slice(&1234u32.to_be_bytes());
        let lame = at + 16;
        frame[lame..lame + 9].copy_from_slice(b"LAME3.100");
        // delay 576, padding 1234: 0x240 << 12 | 0x4D2.
        frame[lame + 21..lame + 24].copy_from_slice(&[0x24, 0x04, 0xD2]);
        let mut file = vec![b'I', b'D', b'3', 3, 0, 0, 0, 0, 0, 20];
        file.resize(30, 0);
        file.extend_from_slice(&frame);
        let x = read_xing_lame(&mut io::Cursor::new(&file))
            .unwrap()
            .unwrap();
        assert_eq!(
            (x.vbr, x.frames, x.encoder_delay, x.padding),
            (false, 1234, 576, 1234)
        );
        // Without the LAME string the trim is unknown.
        file[30 + lame..30 + lame + 4].copy_from_slice(b"XXXX");
        assert_eq!(read_xing_lame(&mut io::Cursor::new(&file)).unwrap(), None);
    }
}
