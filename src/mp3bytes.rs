//! MP3 bytes, parsed in one place: the ID3v2 tag length, the MPEG audio layer III frame header,
//! the Xing/Info (+ LAME) and VBRI headers of the first frame, and the content sniffer that tells
//! an MP3 from a file that was only renamed `.mp3`.
//!
//! Everything here works on byte slices or a caller's reader (no FFmpeg), never panics whatever
//! the bytes, and is fuzzed (`fuzz/`, target `mp3bytes`). The scanner and the prober use it;
//! before, each had its own copy and they disagreed. (The test kit, `crates/aiom4b-testkit`,
//! keeps a small reader of its own for its MP3 writer's read-back, on purpose: a check that
//! shares the library's parser cannot catch that parser's mistakes.) The rules chosen:
//!
//! * **ID3v2 length**: the four size bytes are "synchsafe" (7 bits each); a byte with the top
//!   bit set means the header is damaged, and then there is no tag (FFmpeg's `ff_id3v2_match`
//!   says the same) rather than a length made up from masked bits. The 10-byte footer exists
//!   only in ID3v2.4; the same flag bit is undefined in v2.2/v2.3 and adds nothing there.
//! * **Frame header**: reserved values (version `01`, layer `00`, bitrate `1111`, rate `11`,
//!   emphasis `10`) and free format (bitrate `0000`, whose length cannot be computed) make a
//!   header invalid.
//! * **VBR headers** are read where the encoder puts them — Xing/Info right after the side
//!   information of the first frame at the audio start, VBRI 32 bytes after its header — never
//!   searched for in the audio, where the bytes `Info` or `Xing` can occur by chance. The LAME
//!   extension's delay and padding count only behind the encoder strings FFmpeg's demuxer trusts
//!   (`LAME`, `Lavf`, `Lavc`), since FFmpeg is what decodes the book.
use std::io::{self, Read, Seek, SeekFrom};

/// Bytes in an ID3v2 header (and in a v2.4 footer).
pub const ID3V2_HEADER_LEN: usize = 10;

/// Consecutive ID3v2 tags skipped at the start of a file (some taggers prepend a new tag
/// instead of rewriting the old one); more than this is not a tagger's doing.
const MAX_CHAINED_TAGS: usize = 4;

/// The longest layer III frame: MPEG-1 at 320 kb/s and 32 kHz (MPEG-2 at 160 kb/s and 8 kHz is
/// the same), with its padding byte.
pub const MAX_FRAME_LEN: usize = 1441;

/// How much of the file [`sniff`] reads per window.
pub(crate) const SNIFF_WINDOW: u64 = 64 * 1024;

/// Total length of the ID3v2 tag at the start of `b` (header, body and a v2.4 footer), or `None`
/// when `b` does not start with a valid ID3v2 header (versions 2.2–2.4).
pub fn id3v2_len(b: &[u8]) -> Option<u64> {
    let h = b.get(..ID3V2_HEADER_LEN)?;
    if &h[..3] != b"ID3" || !(2..=4).contains(&h[3]) || h[4] == 0xFF {
        return None;
    }
    if h[6..10].iter().any(|&x| x & 0x80 != 0) {
        return None;
    }
    let size = h[6..10]
        .iter()
        .fold(0u64, |acc, &x| (acc << 7) | u64::from(x));
    let footer = if h[3] == 4 && h[5] & 0x10 != 0 {
        ID3V2_HEADER_LEN as u64
    } else {
        0
    };
    Some(ID3V2_HEADER_LEN as u64 + size + footer)
}

/// The offset of the audio after the ID3v2 tags at the start of `b` (0 without a tag). Tags
/// whose end lies beyond `b` still count: the result may exceed `b.len()`. Only the fuzz target
/// calls it (against [`read_vbr_tag`]'s reader-based skip); the test kit has its own.
#[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
pub fn audio_start(b: &[u8]) -> u64 {
    let mut at = 0u64;
    for _ in 0..MAX_CHAINED_TAGS {
        match usize::try_from(at)
            .ok()
            .and_then(|i| b.get(i..))
            .and_then(id3v2_len)
        {
            Some(len) => at += len,
            None => break,
        }
    }
    at
}

/// Seeks `r` past the ID3v2 tags at its start and returns where the audio starts.
fn skip_id3v2_tags<R: Read + Seek>(r: &mut R) -> io::Result<u64> {
    let mut at = 0u64;
    for _ in 0..MAX_CHAINED_TAGS {
        r.seek(SeekFrom::Start(at))?;
        let mut head = Vec::with_capacity(ID3V2_HEADER_LEN);
        r.by_ref()
            .take(ID3V2_HEADER_LEN as u64)
            .read_to_end(&mut head)?;
        match id3v2_len(&head) {
            Some(len) => at += len,
            None => break,
        }
    }
    r.seek(SeekFrom::Start(at))?;
    Ok(at)
}

/// A parsed MPEG audio layer III frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The header's own version code: 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5.
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
    /// header (see the module comment for what is refused).
    pub fn parse(b: &[u8]) -> Option<FrameHeader> {
        const MPEG1_KBPS: [u32; 15] = [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ];
        const MPEG2_KBPS: [u32; 15] =
            [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
        let h = b.get(..4)?;
        if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
            return None;
        }
        let version = (h[1] >> 3) & 3;
        let layer = (h[1] >> 1) & 3; // binary 01 is layer III
        let bitrate_index = usize::from(h[2] >> 4);
        let rate_index = usize::from((h[2] >> 2) & 3);
        if version == 1 || layer != 1 || bitrate_index == 0 || bitrate_index == 15 {
            return None;
        }
        if rate_index == 3 || h[3] & 3 == 2 {
            return None;
        }
        let base_rate = [44_100, 48_000, 32_000][rate_index];
        let (sample_rate, kbps) = match version {
            3 => (base_rate, MPEG1_KBPS[bitrate_index]),
            2 => (base_rate / 2, MPEG2_KBPS[bitrate_index]),
            _ => (base_rate / 4, MPEG2_KBPS[bitrate_index]),
        };
        let slot_bytes = if version == 3 { 144 } else { 72 };
        let padding = usize::from((h[2] >> 1) & 1);
        Some(FrameHeader {
            version,
            mono: h[3] >> 6 == 3,
            sample_rate,
            bitrate_bps: kbps * 1000,
            len: (slot_bytes * kbps * 1000 / sample_rate) as usize + padding,
        })
    }

    /// MPEG-1 (rather than MPEG-2 or 2.5).
    pub fn mpeg1(&self) -> bool {
        self.version == 3
    }

    /// Samples per channel in the frame: 1152 (MPEG-1) or 576 (MPEG-2/2.5). Only the fuzz
    /// target calls it.
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
    pub fn samples_per_frame(&self) -> u32 {
        if self.mpeg1() {
            1152
        } else {
            576
        }
    }

    /// Where the side information ends and a Xing/Info tag would start, from the frame start.
    fn xing_offset(&self) -> usize {
        4 + match (self.mpeg1(), self.mono) {
            (true, false) => 32,
            (true, true) => 17,
            (false, false) => 17,
            (false, true) => 9,
        }
    }
}

/// Which VBR header the first frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VbrKind {
    /// `Xing`: variable bitrate (LAME, most encoders).
    Xing,
    /// `Info`: the same header for a constant-bitrate file.
    Info,
    /// Fraunhofer's `VBRI`: variable bitrate.
    Vbri,
}

/// The LAME extension's gapless fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LameTrim {
    /// Samples the encoder added at the start (the decoder's own delay excluded).
    pub encoder_delay: u32,
    /// Samples to drop at the end (the decoder's delay included).
    pub padding: u32,
}

/// The VBR header of the first frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VbrTag {
    pub kind: VbrKind,
    /// The header frame itself.
    pub frame: FrameHeader,
    /// Audio frames after the header frame, when the header has the field.
    pub frames: Option<u32>,
    /// The stream's length in bytes (the header frame included), when the header has the field.
    pub bytes: Option<u32>,
    /// Where the header frame starts in the file (after the ID3v2 tags); 0 from
    /// [`parse_vbr_tag`], which sees only the frame.
    pub audio_start: u64,
    /// The LAME extension, when one is present behind a trusted encoder string.
    pub lame: Option<LameTrim>,
}

impl VbrTag {
    /// Variable bitrate (`Xing` or `VBRI`) rather than constant (`Info`).
    pub fn is_vbr(&self) -> bool {
        self.kind != VbrKind::Info
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Reads the VBR header of the frame that starts `frame` (a valid header must be at offset 0;
/// nothing is searched for). Only the frame's own bytes are looked at.
pub(crate) fn parse_vbr_tag(frame: &[u8]) -> Option<VbrTag> {
    let header = FrameHeader::parse(frame)?;
    let frame = &frame[..frame.len().min(header.len)];
    let tag = |kind, frames, bytes, lame| {
        Some(VbrTag {
            kind,
            frame: header,
            frames,
            bytes,
            audio_start: 0,
            lame,
        })
    };
    // VBRI: magic (4), version (2), delay (2), quality (2), bytes (4), frames (4).
    const VBRI_AT: usize = 4 + 32;
    if frame.get(VBRI_AT..VBRI_AT + 4) == Some(b"VBRI") {
        return tag(
            VbrKind::Vbri,
            be32(frame, VBRI_AT + 14),
            be32(frame, VBRI_AT + 10),
            None,
        );
    }
    let mut at = header.xing_offset();
    let kind = match frame.get(at..at + 4) {
        Some(b"Xing") => VbrKind::Xing,
        Some(b"Info") => VbrKind::Info,
        _ => return None,
    };
    let Some(flags) = be32(frame, at + 4) else {
        return tag(kind, None, None, None);
    };
    at += 8;
    let mut frames = None;
    if flags & 1 != 0 {
        frames = be32(frame, at);
        at += 4;
    }
    let mut bytes = None;
    if flags & 2 != 0 {
        bytes = be32(frame, at);
        at += 4;
    }
    if flags & 4 != 0 {
        at += 100; // TOC
    }
    if flags & 8 != 0 {
        at += 4; // quality
    }
    // LAME extension: encoder string (9), revision/VBR method (1), lowpass (1), peak (4), two
    // replay gains (2 + 2), flags (1), bitrate (1), then 12 bits delay + 12 bits padding.
    let trusted = matches!(frame.get(at..at + 4), Some(b"LAME" | b"Lavf" | b"Lavc"));
    let lame = frame.get(at + 21..at + 24).filter(|_| trusted).map(|t| {
        let v = u32::from_be_bytes([0, t[0], t[1], t[2]]);
        LameTrim {
            encoder_delay: v >> 12,
            padding: v & 0xFFF,
        }
    });
    tag(kind, frames, bytes, lame)
}

/// Reads the VBR header of the first frame after the ID3v2 tags of `r` (see [`parse_vbr_tag`]).
pub(crate) fn read_vbr_tag<R: Read + Seek>(r: &mut R) -> io::Result<Option<VbrTag>> {
    let start = skip_id3v2_tags(r)?;
    let mut frame = Vec::with_capacity(MAX_FRAME_LEN);
    r.take(MAX_FRAME_LEN as u64).read_to_end(&mut frame)?;
    Ok(parse_vbr_tag(&frame).map(|t| VbrTag {
        audio_start: start,
        ..t
    }))
}

// ---------------------------------------------------------------------------------------------
// Content sniffing

/// Cheaply checks that a file of `file_len` bytes looks like an MP3; the error says what it is
/// instead. `read_window(at)` returns up to [`SNIFF_WINDOW`] bytes from offset `at`.
///
/// Reads one window from the start of the audio: from the file's start, or — when ID3v2 tags
/// (often holding a large cover) reach past the first window — from the end of the tags, so at
/// most two windows after the first. Accepts a layer III frame header (valid version, bitrate
/// and sample rate) right at the audio start, or anywhere in the window when a second frame
/// header follows at the computed frame length.
pub(crate) fn sniff(
    file_len: u64,
    read_window: &mut dyn FnMut(u64) -> Result<Vec<u8>, String>,
) -> Result<(), String> {
    if file_len == 0 {
        return Err("empty file (0 bytes)".to_string());
    }
    let head = read_window(0)?;

    // Skip ID3v2 tags; some taggers write more than one in a row.
    let mut start: u64 = 0;
    let mut window = head.clone();
    let mut window_at: u64 = 0;
    let mut tagged = false;
    for _ in 0..MAX_CHAINED_TAGS {
        let local = (start - window_at) as usize;
        let Some(tag_len) = window.get(local..).and_then(id3v2_len) else {
            if window.get(local..local + 3) == Some(b"ID3") {
                return Err("no MPEG audio frames found (damaged ID3 tag header)".to_string());
            }
            break;
        };
        tagged = true;
        start += tag_len;
        if start >= file_len {
            return Err("contains only an ID3 tag, no audio".to_string());
        }
        if start + ID3V2_HEADER_LEN as u64 > window_at + window.len() as u64 {
            window = read_window(start)?;
            window_at = start;
        }
    }
    let mut window_end = window_at + window.len() as u64;
    if start != window_at && window_end < file_len {
        // The tag ended inside the first window: read a full window of audio from its end.
        window = read_window(start)?;
        window_at = start;
        window_end = window_at + window.len() as u64;
    }
    let audio = window
        .get((start - window_at) as usize..)
        .unwrap_or_default();
    let ends_file = window_end >= file_len;
    if tagged && ends_file && audio.iter().all(|&b| b == 0) {
        // Tag padding written outside the declared size: still nothing to play.
        return Err("contains only an ID3 tag, no audio".to_string());
    }

    if let Some(reason) = foreign_format(audio) {
        return Err(reason.to_string());
    }
    if !tagged && looks_like_text(&head) {
        // An extended M3U announces itself; say so, since "my playlist was renamed" and "a text
        // file got in" call for different fixes. A plain M3U is only a list of names: text.
        let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head);
        if text.starts_with(b"#EXTM3U") {
            return Err("is an M3U playlist (a list of file names), not audio".to_string());
        }
        return Err("is a text file / playlist (M3U)".to_string());
    }
    if find_mp3_frames(audio, ends_file) {
        return Ok(());
    }
    if let Some(reason) = other_mpeg(audio) {
        return Err(reason.to_string());
    }
    Err("no MPEG audio frames found".to_string())
}

/// [`sniff`] on bytes in memory (the whole file).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn sniff_bytes(b: &[u8]) -> Result<(), String> {
    sniff(b.len() as u64, &mut |at| {
        let from = usize::try_from(at).unwrap_or(usize::MAX).min(b.len());
        let to = from.saturating_add(SNIFF_WINDOW as usize).min(b.len());
        Ok(b[from..to].to_vec())
    })
}

/// Names a non-MP3 format by its magic bytes.
fn foreign_format(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("is a PNG image renamed .mp3")
    } else if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("is a JPEG image")
    } else if b.starts_with(b"RIFF") {
        Some("is a RIFF/WAVE file")
    } else if b.get(4..8) == Some(b"ftyp") {
        Some("is an MP4/M4A file")
    } else if b.starts_with(b"fLaC") {
        Some("is FLAC")
    } else if b.starts_with(b"OggS") {
        Some("is an Ogg file")
    } else {
        None
    }
}

/// A playlist or other text: no control bytes other than whitespace, no DEL and no 0xFF in
/// the first KiB. That admits UTF-8 and the legacy 8-bit encodings M3U files come in, while
/// MPEG data fails at once (frames start with 0xFF and carry control bytes).
fn looks_like_text(head: &[u8]) -> bool {
    let sample = &head[..head.len().min(1024)];
    !sample.is_empty()
        && sample.iter().all(|&b| {
            matches!(b, b'\t' | b'\n' | b'\r' | 0x0C) || ((0x20..0xFF).contains(&b) && b != 0x7F)
        })
}

/// Looks for layer III frames in `audio`: a header right at the start whose successor is
/// valid or beyond the data, or a header anywhere followed by a second consistent one.
/// `ends_file` says whether `audio` runs to the end of the file.
fn find_mp3_frames(audio: &[u8], ends_file: bool) -> bool {
    let followed = |pos: usize, h: FrameHeader| -> Option<bool> {
        let next = pos + h.len;
        if next + 4 > audio.len() {
            return None; // successor not in the buffer: cannot confirm either way
        }
        Some(
            FrameHeader::parse(&audio[next..])
                .is_some_and(|n| n.version == h.version && n.sample_rate == h.sample_rate),
        )
    };
    if let Some(h) = FrameHeader::parse(audio) {
        match followed(0, h) {
            Some(true) => return true,
            // A lone (maybe truncated) frame right at the audio start of a tiny file: frames
            // are at most ~1.4 KB, so the successor is out of a full window only at the end of
            // the file.
            None if ends_file => return true,
            _ => {}
        }
    }
    // Junk or padding before the first frame is common and decoders resync past it; a header
    // found by search must be confirmed by the next one to rule out chance byte patterns.
    (1..audio.len().saturating_sub(3))
        .filter(|&i| audio[i] == 0xFF)
        .any(|i| FrameHeader::parse(&audio[i..]).is_some_and(|h| followed(i, h) == Some(true)))
}

/// Names MPEG audio that is not layer III (ADTS AAC, MP2, MP1), when the data starts with it.
fn other_mpeg(b: &[u8]) -> Option<&'static str> {
    let h = b.get(..4)?;
    if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
        return None;
    }
    match (h[1] >> 1) & 3 {
        0 if h[1] & 0xF0 == 0xF0 => Some("is an AAC (ADTS) stream, not MP3"),
        2 => Some("is MPEG layer II audio (MP2), not MP3"),
        3 => Some("is MPEG layer I audio (MP1), not MP3"),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// MPEG-1 layer III, 128 kb/s, 44.1 kHz, stereo, no padding: 417-byte frames.
    pub(crate) const MPEG1_128K: [u8; 4] = [0xFF, 0xFB, 0x90, 0x00];

    pub(crate) fn frames(header: [u8; 4], count: usize) -> Vec<u8> {
        raw_frames(
            header,
            FrameHeader::parse(&header).expect("valid header").len,
            count,
        )
    }

    /// `count` frames of `len` bytes starting with `header` (which need not be layer III).
    pub(crate) fn raw_frames(header: [u8; 4], len: usize, count: usize) -> Vec<u8> {
        let mut frame = vec![0u8; len];
        frame[..4].copy_from_slice(&header);
        frame.repeat(count)
    }

    fn syncsafe(size: u32) -> [u8; 4] {
        [21, 14, 7, 0].map(|shift| ((size >> shift) & 0x7F) as u8)
    }

    /// An ID3v2 tag with a body of `body` bytes (plus a footer for v2.4 when asked).
    pub(crate) fn id3(version: u8, body: usize, footer: bool) -> Vec<u8> {
        let size = syncsafe(body as u32);
        let mut t = vec![b'I', b'D', b'3', version, 0, if footer { 0x10 } else { 0 }];
        t.extend_from_slice(&size);
        // Tag frames never contain an MPEG sync; filler that mimics text frames is enough.
        t.extend(std::iter::repeat_n(b'T', body));
        if footer {
            t.extend_from_slice(b"3DI");
            t.extend_from_slice(&[version, 0, 0x10]);
            t.extend_from_slice(&size);
        }
        t
    }

    pub(crate) fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// A first frame (MPEG-1 128 kb/s stereo) holding a Xing or Info header with a frame count
    /// and a LAME extension behind `encoder`, as LAME and FFmpeg's muxer write it.
    fn xing_frame(
        magic: &[u8; 4],
        frames: u32,
        encoder: &[u8; 4],
        delay: u32,
        pad: u32,
    ) -> Vec<u8> {
        let mut f = vec![0u8; 417];
        f[..4].copy_from_slice(&MPEG1_128K);
        let at = 4 + 32;
        f[at..at + 4].copy_from_slice(magic);
        f[at + 4..at + 8].copy_from_slice(&(1u32 | 8).to_be_bytes()); // frames + quality
        f[at + 8..at + 12].copy_from_slice(&frames.to_be_bytes());
        let lame = at + 16;
        f[lame..lame + 4].copy_from_slice(encoder);
        let trim = (delay << 12) | pad;
        f[lame + 21..lame + 24].copy_from_slice(&trim.to_be_bytes()[1..]);
        f
    }

    #[test]
    fn id3v2_len_reads_the_synchsafe_size() {
        assert_eq!(id3v2_len(&id3(3, 1000, false)), Some(1010));
        assert_eq!(id3v2_len(&id3(2, 0, false)), Some(10));
        assert_eq!(id3v2_len(&id3(4, 300, true)), Some(320));
        // The largest size: 28 bits.
        assert_eq!(
            id3v2_len(b"ID3\x03\x00\x00\x7F\x7F\x7F\x7F"),
            Some(10 + (1 << 28) - 1)
        );
        for bad in [
            &b"ID3\x03\x00\x00\x00\x00"[..],    // short
            b"ID3\x01\x00\x00\x00\x00\x00\x00", // no such version
            b"ID3\x05\x00\x00\x00\x00\x00\x00",
            b"ID3\x03\xFF\x00\x00\x00\x00\x00", // revision 0xFF
            b"ID4\x03\x00\x00\x00\x00\x00\x00",
        ] {
            assert_eq!(id3v2_len(bad), None, "{bad:02X?}");
        }
    }

    /// The writer's and the prober's copies masked the top bit away and read a length from a
    /// damaged header; the scanner's refused it. FFmpeg does not take it for a tag either.
    #[test]
    fn id3v2_size_byte_with_the_top_bit_set_is_no_tag() {
        let mut tag = id3(3, 100, false);
        tag[8] |= 0x80;
        assert_eq!(id3v2_len(&tag), None);
        assert_eq!(audio_start(&tag), 0);
    }

    /// The writer's and the prober's copies added a footer whenever flag 0x10 was set; the
    /// scanner's only for v2.4, which is the only version that has one.
    #[test]
    fn id3v2_footer_flag_counts_only_in_v24() {
        let mut v23 = id3(3, 100, false);
        v23[5] = 0x10; // undefined in v2.3
        assert_eq!(id3v2_len(&v23), Some(110));
        let mut v24 = id3(4, 100, true);
        assert_eq!(id3v2_len(&v24), Some(120));
        v24[5] = 0;
        assert_eq!(id3v2_len(&v24), Some(110));
        // So a v2.3 file with the stray flag still has its VBR header found.
        let file = cat(&[&v23, &xing_frame(b"Info", 7, b"Lavc", 576, 1000)]);
        let tag = read_vbr_tag(&mut Cursor::new(&file)).unwrap();
        assert_eq!(tag.map(|t| t.kind), Some(VbrKind::Info));
    }

    #[test]
    fn audio_start_skips_chained_tags() {
        let two = cat(&[&id3(3, 100, false), &id3(4, 50, true), &MPEG1_128K]);
        assert_eq!(audio_start(&two), 110 + 70);
        assert_eq!(audio_start(&MPEG1_128K), 0);
        // A tag that claims more than the buffer holds still ends where it says.
        assert_eq!(audio_start(&id3(3, 100, false)[..20]), 110);
    }

    #[test]
    fn frame_headers_parse_to_their_length() {
        let len = |b: [u8; 4]| FrameHeader::parse(&b).map(|h| h.len);
        assert_eq!(len(MPEG1_128K), Some(417));
        assert_eq!(len([0xFF, 0xFB, 0x92, 0x00]), Some(418));
        // MPEG-2 64 kb/s 22.05 kHz and MPEG-2.5 8 kb/s 8 kHz.
        assert_eq!(len([0xFF, 0xF3, 0x80, 0x00]), Some(208));
        assert_eq!(len([0xFF, 0xE3, 0x18, 0x00]), Some(72));
        // The longest frame.
        assert_eq!(len([0xFF, 0xFB, 0xEA, 0x00]), Some(MAX_FRAME_LEN));
        assert_eq!(len([0xFF, 0xE3, 0xEA, 0x00]), Some(MAX_FRAME_LEN));
        let h = FrameHeader::parse(&[0xFF, 0xF3, 0x80, 0xC0]).unwrap();
        assert_eq!(
            (h.version, h.mono, h.sample_rate, h.bitrate_bps),
            (2, true, 22_050, 64_000)
        );
        assert_eq!(h.samples_per_frame(), 576);
        for bad in [
            [0xFF, 0xEB, 0x90, 0x00], // reserved version
            [0xFF, 0xFD, 0x90, 0x00], // layer II
            [0xFF, 0xF9, 0x90, 0x00], // reserved layer
            [0xFF, 0xFB, 0x00, 0x00], // free format
            [0xFF, 0xFB, 0xF0, 0x00], // bad bitrate
            [0xFF, 0xFB, 0x9C, 0x00], // reserved rate
            [0xFE, 0xFB, 0x90, 0x00], // no sync
        ] {
            assert_eq!(FrameHeader::parse(&bad), None, "{bad:02X?}");
        }
        assert_eq!(FrameHeader::parse(&[0xFF, 0xFB, 0x90]), None, "short");
    }

    /// The writer's copy accepted the reserved emphasis `10`; the scanner's refused it. A
    /// reserved value makes the header invalid, and refusing it keeps chance byte patterns in
    /// non-MP3 data from passing as frames.
    #[test]
    fn reserved_emphasis_makes_a_header_invalid() {
        assert_eq!(FrameHeader::parse(&[0xFF, 0xFB, 0x90, 0x02]), None);
        assert!(FrameHeader::parse(&[0xFF, 0xFB, 0x90, 0x01]).is_some());
    }

    #[test]
    fn vbr_tag_reads_xing_info_and_lame_fields() {
        let t = parse_vbr_tag(&xing_frame(b"Xing", 1234, b"LAME", 576, 1105)).unwrap();
        assert_eq!((t.kind, t.frames), (VbrKind::Xing, Some(1234)));
        assert!(t.is_vbr());
        assert_eq!(
            t.lame,
            Some(LameTrim {
                encoder_delay: 576,
                padding: 1105
            })
        );
        let t = parse_vbr_tag(&xing_frame(b"Info", 9, b"Lavf", 0, 0)).unwrap();
        assert_eq!((t.kind, t.is_vbr()), (VbrKind::Info, false));
        // An unknown encoder string: FFmpeg ignores the delay fields, so do we.
        let t = parse_vbr_tag(&xing_frame(b"Xing", 9, b"XYZ1", 576, 1105)).unwrap();
        assert_eq!((t.frames, t.lame), (Some(9), None));
        // Mono MPEG-1 puts the tag after 17 bytes of side information.
        let mut mono = vec![0u8; 417];
        mono[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0xC0]);
        mono[21..25].copy_from_slice(b"Xing");
        assert_eq!(parse_vbr_tag(&mono).map(|t| t.kind), Some(VbrKind::Xing));
        // VBRI at 32 bytes after the header.
        let mut vbri = vec![0u8; 417];
        vbri[..4].copy_from_slice(&MPEG1_128K);
        vbri[36..40].copy_from_slice(b"VBRI");
        vbri[50..54].copy_from_slice(&77u32.to_be_bytes());
        let t = parse_vbr_tag(&vbri).unwrap();
        assert_eq!(
            (t.kind, t.frames, t.is_vbr()),
            (VbrKind::Vbri, Some(77), true)
        );
        // Truncated anywhere: whatever is there, never a panic.
        let full = xing_frame(b"Xing", 1, b"LAME", 1, 1);
        for n in 0..full.len() {
            let _ = parse_vbr_tag(&full[..n]);
        }
    }

    /// The prober's copy searched the first 2 KiB after the tag for `Xing`, `Info` or `VBRI`
    /// anywhere, so audio bytes spelling `Info` made a CBR file without a header "CBR" and
    /// `Xing` made it "VBR". Only the header's own place counts.
    #[test]
    fn vbr_tag_is_not_searched_for_in_the_audio() {
        let mut file = frames(MPEG1_128K, 4);
        file[600..604].copy_from_slice(b"Xing"); // in the second frame's data
        file[100..104].copy_from_slice(b"Info"); // in the first frame, not at the tag's place
        assert_eq!(read_vbr_tag(&mut Cursor::new(&file)).unwrap(), None);
        // And a header frame must be at the audio start, not after junk.
        let junk = cat(&[&[0u8; 10], &xing_frame(b"Xing", 3, b"LAME", 576, 0)]);
        assert_eq!(read_vbr_tag(&mut Cursor::new(&junk)).unwrap(), None);
    }

    #[test]
    fn read_vbr_tag_skips_chained_tags() {
        let file = cat(&[
            &id3(3, 100, false),
            &id3(4, 40, true),
            &xing_frame(b"Xing", 3, b"LAME", 576, 0),
        ]);
        let t = read_vbr_tag(&mut Cursor::new(&file)).unwrap().unwrap();
        assert_eq!(t.frames, Some(3));
        // A tag longer than the file: no header, no error.
        let cut = &id3(3, 100, false)[..30];
        assert_eq!(read_vbr_tag(&mut Cursor::new(cut)).unwrap(), None);
    }

    // -- sniff ------------------------------------------------------------------------------

    #[test]
    fn sniff_accepts_plain_mp3_frames() {
        assert_eq!(sniff_bytes(&frames(MPEG1_128K, 10)), Ok(()));
        assert_eq!(sniff_bytes(&frames([0xFF, 0xF3, 0x80, 0x00], 10)), Ok(()));
        assert_eq!(sniff_bytes(&frames([0xFF, 0xE3, 0x18, 0x00], 10)), Ok(()));
        // A single frame that is the whole file.
        assert_eq!(sniff_bytes(&frames(MPEG1_128K, 1)), Ok(()));
    }

    #[test]
    fn sniff_accepts_id3_then_frames() {
        let audio = frames(MPEG1_128K, 10);
        assert_eq!(sniff_bytes(&cat(&[&id3(3, 1000, false), &audio])), Ok(()));
        // Two tags in a row.
        assert_eq!(
            sniff_bytes(&cat(&[&id3(3, 100, false), &id3(4, 50, false), &audio])),
            Ok(())
        );
    }

    #[test]
    fn sniff_skips_an_id3v24_footer() {
        // One lone frame after the footer: accepted only if it is found exactly at the end
        // of tag + footer (a frame found by search needs a successor to confirm it).
        let one = frames(MPEG1_128K, 1);
        assert_eq!(sniff_bytes(&cat(&[&id3(4, 300, true), &one])), Ok(()));
        let mut wrong = id3(4, 300, true);
        wrong[5] = 0; // footer present but not flagged: the frame is 10 bytes off
        assert!(sniff_bytes(&cat(&[&wrong, &one])).is_err());
    }

    #[test]
    fn sniff_reads_past_a_tag_larger_than_the_window() {
        // A big embedded cover puts the audio far beyond the first 64 KiB.
        let tag = id3(3, 300 * 1024, false);
        assert_eq!(sniff_bytes(&cat(&[&tag, &frames(MPEG1_128K, 5)])), Ok(()));
        assert_eq!(
            sniff_bytes(&cat(&[&tag, &frames(MPEG1_128K, 1)])),
            Ok(()),
            "a lone frame at the end of the file"
        );
        // A tag ending just inside the first window leaves little audio in it.
        let tag = id3(3, 64 * 1024 - 100, false);
        assert_eq!(sniff_bytes(&cat(&[&tag, &frames(MPEG1_128K, 5)])), Ok(()));
    }

    #[test]
    fn sniff_resyncs_past_junk_before_the_first_frame() {
        let junk = vec![0u8; 3000];
        assert_eq!(sniff_bytes(&cat(&[&junk, &frames(MPEG1_128K, 3)])), Ok(()));
        assert_eq!(
            sniff_bytes(&cat(&[&id3(3, 10, false), &junk, &frames(MPEG1_128K, 3)])),
            Ok(())
        );
        // A lone header after junk is not enough evidence.
        let mut lone = junk.clone();
        lone.extend_from_slice(&MPEG1_128K);
        lone.extend(vec![0x11u8; 2000]);
        assert_eq!(sniff_bytes(&lone), Err("no MPEG audio frames found".into()));
    }

    #[test]
    fn sniff_rejects_id3_without_audio() {
        let only = "contains only an ID3 tag, no audio".to_string();
        assert_eq!(sniff_bytes(&id3(3, 100, false)), Err(only.clone()));
        // The tag claims more than the file holds.
        assert_eq!(sniff_bytes(&id3(3, 100, false)[..50]), Err(only.clone()));
        // Zero padding written after the tag.
        assert_eq!(
            sniff_bytes(&cat(&[&id3(3, 100, false), &[0u8; 500]])),
            Err(only)
        );
        // A damaged size is named as such.
        let mut damaged = cat(&[&id3(3, 100, false), &frames(MPEG1_128K, 3)]);
        damaged[7] = 0x80;
        assert_eq!(
            sniff_bytes(&damaged),
            Err("no MPEG audio frames found (damaged ID3 tag header)".into())
        );
    }

    #[test]
    fn sniff_names_what_the_file_is_instead() {
        let cases: [(&[u8], &str); 12] = [
            (b"", "empty file (0 bytes)"),
            (
                b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
                "is a PNG image renamed .mp3",
            ),
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF\0", "is a JPEG image"),
            (
                b"#EXTM3U\n#EXTINF:1,a\n01.mp3\n",
                "is an M3U playlist (a list of file names), not audio",
            ),
            (
                b"01 - Chapter.mp3\r\n02 - Chapter.mp3\r\n",
                "is a text file / playlist (M3U)",
            ),
            (b"caf\xe9 latin-1 text\n", "is a text file / playlist (M3U)"),
            (b"RIFF\x24\0\0\0WAVEfmt ", "is a RIFF/WAVE file"),
            (b"\0\0\0\x20ftypM4A \0\0\0\0", "is an MP4/M4A file"),
            (b"fLaC\0\0\0\x22", "is FLAC"),
            (b"OggS\0\x02\0\0", "is an Ogg file"),
            (
                b"\xFF\xF1\x50\x80\x02\x1F\xFC",
                "is an AAC (ADTS) stream, not MP3",
            ),
            (b"\0\0\0\0\x01\x02\x03", "no MPEG audio frames found"),
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff_bytes(bytes), Err(want.to_string()), "{want}");
        }
        assert_eq!(
            // MPEG-1 layer II at 128 kb/s, 44.1 kHz: 417-byte frames too.
            sniff_bytes(&raw_frames([0xFF, 0xFD, 0x90, 0x00], 417, 4)),
            Err("is MPEG layer II audio (MP2), not MP3".to_string())
        );
        // A FLAC with an ID3 tag in front is still FLAC.
        assert_eq!(
            sniff_bytes(&cat(&[&id3(3, 20, false), b"fLaC\0\0\0\x22"])),
            Err("is FLAC".to_string())
        );
    }

    #[test]
    fn sniff_rejects_pseudo_random_bytes() {
        // A fixed linear congruential generator: deterministic "noise" without a dependency.
        let mut x: u32 = 0x1234_5678;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        assert_eq!(
            sniff_bytes(&noise),
            Err("no MPEG audio frames found".to_string())
        );
    }
}
