//! A minimal, defensive reader of the MP4 box (atom) tree: just what `verify` and `mp4tags`
//! need, written by hand so that checking a file FFmpeg wrote does not go
//! through FFmpeg again.
//!
//! Everything here works on byte slices already in memory (the `moov` box of an audiobook is
//! small: sample tables plus a cover) except [`top_level_boxes`], which walks the file itself so
//! that a multi-gigabyte `mdat` is never read. Every length in the file is treated as a claim to
//! be checked: sizes that lie, truncated boxes, size 0 ("to the end"), size 1 (64-bit size
//! follows) and entry counts larger than their box all become a [`Malformed`] error, never a
//! panic or a huge allocation.
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// A box type such as `*b"moov"`; iTunes item keys start with byte 0xA9 (`©`).
pub(crate) type FourCC = [u8; 4];

/// Renders a box type for humans: bytes are Latin-1, so `0xA9 n a m` becomes `©nam`.
pub(crate) fn fourcc_str(k: &FourCC) -> String {
    k.iter().map(|&b| b as char).collect()
}

/// What is wrong with the file, and where (absolute byte offset of the offending box or field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed {
    pub offset: u64,
    pub reason: String,
}

impl Malformed {
    pub(crate) fn new(offset: u64, reason: impl Into<String>) -> Self {
        Malformed {
            offset,
            reason: reason.into(),
        }
    }
}

pub(crate) type Parse<T> = std::result::Result<T, Malformed>;

/// A bounds-checked big-endian reader over one box body. `base` is the absolute file offset of
/// `buf[0]`, so errors can say where in the file the problem is.
#[derive(Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], base: u64, what: &'static str) -> Self {
        Cursor {
            buf,
            pos: 0,
            base,
            what,
        }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Parse<&'a [u8]> {
        if n > self.remaining() {
            return Err(Malformed::new(
                self.offset(),
                format!(
                    "{} is truncated: needs {n} more byte(s), {} left",
                    self.what,
                    self.remaining()
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub(crate) fn skip(&mut self, n: usize) -> Parse<()> {
        self.bytes(n).map(|_| ())
    }
    pub(crate) fn u8(&mut self) -> Parse<u8> {
        Ok(self.bytes(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Parse<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u24(&mut self) -> Parse<u32> {
        let b = self.bytes(3)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }
    pub(crate) fn u32(&mut self) -> Parse<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Parse<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    pub(crate) fn fourcc(&mut self) -> Parse<FourCC> {
        let b = self.bytes(4)?;
        Ok([b[0], b[1], b[2], b[3]])
    }
    /// Version byte and 24-bit flags of a "full box".
    pub(crate) fn full_header(&mut self) -> Parse<(u8, u32)> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00FF_FFFF))
    }
    /// Reads an entry count and checks that `count * entry_len` bytes are really there, so a
    /// lying count can neither over-read nor make the caller allocate gigabytes.
    pub(crate) fn count(&mut self, entry_len: usize) -> Parse<usize> {
        let at = self.offset();
        let n = self.u32()? as usize;
        let need = n.checked_mul(entry_len);
        match need {
            Some(need) if need <= self.remaining() => Ok(n),
            _ => Err(Malformed::new(
                at,
                format!(
                    "{} claims {n} entries of {entry_len} bytes but only {} bytes remain",
                    self.what,
                    self.remaining()
                ),
            )),
        }
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

/// One box inside an in-memory buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BoxRef<'a> {
    pub kind: FourCC,
    /// Absolute file offset of the box header.
    pub offset: u64,
    /// Header length: 8, 16 with a 64-bit size, plus 16 for `uuid` boxes.
    pub header_len: u64,
    /// The box content after the header.
    pub body: &'a [u8],
}

impl<'a> BoxRef<'a> {
    /// Total size of the box including its header.
    pub(crate) fn size(&self) -> u64 {
        self.header_len + self.body.len() as u64
    }
    /// Absolute offset of the first body byte.
    pub(crate) fn body_offset(&self) -> u64 {
        self.offset + self.header_len
    }
    pub(crate) fn end(&self) -> u64 {
        self.offset + self.size()
    }
    pub(crate) fn cursor(&self, what: &'static str) -> Cursor<'a> {
        Cursor::new(self.body, self.body_offset(), what)
    }
    /// The child boxes of a container box.
    pub(crate) fn children(&self) -> Children<'a> {
        children(self.body, self.body_offset())
    }
    /// The first child of the given type, if any (errors in the child list are reported).
    pub(crate) fn child(&self, kind: &FourCC) -> Parse<Option<BoxRef<'a>>> {
        for c in self.children() {
            let c = c?;
            if &c.kind == kind {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
    /// Follows a path of box types below this box, e.g. `[b"mdia", b"minf", b"stbl"]`.
    pub(crate) fn descend(&self, path: &[&FourCC]) -> Parse<Option<BoxRef<'a>>> {
        let mut cur = *self;
        for k in path {
            match cur.child(k)? {
                Some(c) => cur = c,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }
}

/// Parses one box header at the start of `buf`. `abs` is the absolute offset of `buf[0]`.
/// Returns (kind, header length, total size).
fn parse_header(buf: &[u8], abs: u64) -> Parse<(FourCC, u64, u64)> {
    let mut c = Cursor::new(buf, abs, "box header");
    let size32 = c.u32()?;
    let kind = c.fourcc()?;
    let mut header_len = 8u64;
    let size = match size32 {
        // Size 0: the box extends to the end of its container (ISO 14496-12 §4.2).
        0 => buf.len() as u64,
        1 => {
            let large = c
                .u64()
                .map_err(|_| Malformed::new(abs, "box with a 64-bit size is truncated"))?;
            header_len = 16;
            large
        }
        n => n as u64,
    };
    if kind == *b"uuid" {
        c.skip(16)
            .map_err(|_| Malformed::new(abs, "uuid box is truncated before its extended type"))?;
        header_len += 16;
    }
    if size < header_len {
        return Err(Malformed::new(
            abs,
            format!(
                "box '{}' claims a size of {size} bytes, smaller than its own header",
                fourcc_str(&kind)
            ),
        ));
    }
    if size > buf.len() as u64 {
        return Err(Malformed::new(
            abs,
            format!(
                "box '{}' claims {size} bytes but only {} remain in its container",
                fourcc_str(&kind),
                buf.len()
            ),
        ));
    }
    Ok((kind, header_len, size))
}

/// Iterator over the boxes laid end to end in `buf`. After the first error it yields that error
/// and stops: once one size lies, nothing after it can be trusted.
pub(crate) struct Children<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    done: bool,
}

pub(crate) fn children(buf: &[u8], base: u64) -> Children<'_> {
    Children {
        buf,
        pos: 0,
        base,
        done: false,
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Parse<BoxRef<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let abs = self.base + self.pos as u64;
        // Some writers pad a container with a 32-bit zero terminator (QuickTime `udta`).
        if rest.len() < 8 && rest.iter().all(|&b| b == 0) {
            self.done = true;
            return None;
        }
        match parse_header(rest, abs) {
            Ok((kind, header_len, size)) => {
                let size = size as usize; // <= rest.len(), checked by parse_header
                let b = BoxRef {
                    kind,
                    offset: abs,
                    header_len,
                    body: &rest[header_len as usize..size],
                };
                self.pos += size;
                Some(Ok(b))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A box at the top level of the file, located without reading its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopBox {
    pub kind: FourCC,
    pub offset: u64,
    pub header_len: u64,
    pub size: u64,
}

impl TopBox {
    pub(crate) fn end(&self) -> u64 {
        self.offset + self.size
    }
}

/// Walks the top level of a file by reading headers and seeking over bodies.
pub(crate) fn top_level_boxes<R: Read + Seek>(
    f: &mut R,
    file_len: u64,
) -> std::io::Result<Parse<Vec<TopBox>>> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < file_len {
        let avail = (file_len - pos).min(32) as usize;
        let mut hdr = [0u8; 32];
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut hdr[..avail])?;
        // parse_header checks the size against the buffer it gets, so give it a view whose
        // length is the real remainder of the file (the body bytes themselves are not needed).
        let (kind, header_len, size) = match parse_header_top(&hdr[..avail], pos, file_len - pos) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        out.push(TopBox {
            kind,
            offset: pos,
            header_len,
            size,
        });
        pos += size;
    }
    Ok(Ok(out))
}

/// The error for a malformed box of `path`.
pub(crate) fn malformed(path: &Path) -> impl Fn(Malformed) -> crate::error::Error + Copy + '_ {
    move |m: Malformed| crate::error::Error::Mp4 {
        path: path.to_path_buf(),
        offset: m.offset,
        reason: m.reason,
    }
}

/// A finished book opened for reading, as every reader of one starts (verify, silence
/// detection, split): a regular file only (`regular::open_regular`), its size, and its
/// top-level boxes walked without reading any body.
pub(crate) struct OpenedMp4 {
    pub file: std::fs::File,
    pub size: u64,
    pub tops: Vec<TopBox>,
}

impl OpenedMp4 {
    /// Opens `path`; `what` says why, for the error ("open the M4B to split it").
    pub(crate) fn open(path: &Path, what: &'static str) -> crate::error::Result<Self> {
        use crate::error::Error;
        let mut file = crate::regular::open_regular(path, what)?;
        let size = file
            .metadata()
            .map_err(|e| Error::io(path, "read the size of the M4B", e))?
            .len();
        let tops = top_level_boxes(&mut file, size)
            .map_err(|e| Error::io(path, "read the M4B", e))?
            .map_err(malformed(path))?;
        Ok(OpenedMp4 { file, size, tops })
    }

    /// The first `moov` and its bytes (at most `limit` of them).
    pub(crate) fn read_moov(
        &mut self,
        path: &Path,
        limit: u64,
    ) -> crate::error::Result<(TopBox, Vec<u8>)> {
        let mal = malformed(path);
        let top = *self
            .tops
            .iter()
            .find(|b| b.kind == *b"moov")
            .ok_or_else(|| mal(Malformed::new(0, "no 'moov' box: not an MP4/M4B file")))?;
        let buf = read_top_box(&mut self.file, &top, limit)
            .map_err(|e| crate::error::Error::io(path, "read the M4B", e))?
            .map_err(mal)?;
        Ok((top, buf))
    }
}

/// Like [`parse_header`] but for a box whose body is not in memory: `remaining` is the number
/// of bytes from the header to the end of the file.
fn parse_header_top(hdr: &[u8], abs: u64, remaining: u64) -> Parse<(FourCC, u64, u64)> {
    let mut c = Cursor::new(hdr, abs, "top-level box header");
    let size32 = c.u32()?;
    let kind = c.fourcc()?;
    let mut header_len = 8u64;
    let size = match size32 {
        0 => remaining,
        1 => {
            header_len = 16;
            c.u64()?
        }
        n => n as u64,
    };
    if kind == *b"uuid" {
        c.skip(16)?;
        header_len += 16;
    }
    if size < header_len {
        return Err(Malformed::new(
            abs,
            format!(
                "top-level box '{}' claims a size of {size} bytes, smaller than its header",
                fourcc_str(&kind)
            ),
        ));
    }
    if size > remaining {
        return Err(Malformed::new(
            abs,
            format!(
                "top-level box '{}' claims {size} bytes but the file ends {remaining} bytes after its start (truncated file?)",
                fourcc_str(&kind)
            ),
        ));
    }
    Ok((kind, header_len, size))
}

/// Reads a whole top-level box (header included) into memory, refusing boxes above `limit`
/// bytes: `moov` of an audiobook is a few MiB; a claim of gigabytes is a broken file.
pub(crate) fn read_top_box<R: Read + Seek>(
    f: &mut R,
    b: &TopBox,
    limit: u64,
) -> std::io::Result<Parse<Vec<u8>>> {
    if b.size > limit {
        return Ok(Err(Malformed::new(
            b.offset,
            format!(
                "'{}' box is {} bytes, more than the {limit} bytes this reader accepts",
                fourcc_str(&b.kind),
                b.size
            ),
        )));
    }
    let mut buf = vec![0u8; b.size as usize];
    f.seek(SeekFrom::Start(b.offset))?;
    f.read_exact(&mut buf)?;
    Ok(Ok(buf))
}

/// A `stsz` table that [`read_moov_sparse`] left in the file: `count` entries of 4 bytes
/// from `entries_at`, in the `stsz` box at `stsz_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SizesInFile {
    pub stsz_offset: u64,
    pub entries_at: u64,
    pub count: u32,
}

impl SizesInFile {
    /// The entries, read from the file into a vector of exactly their number.
    pub(crate) fn read<R: Read + Seek>(&self, f: &mut R) -> std::io::Result<Vec<u32>> {
        let mut out = Vec::with_capacity(self.count as usize);
        f.seek(SeekFrom::Start(self.entries_at))?;
        let mut r = std::io::BufReader::with_capacity(1 << 16, f);
        let mut e = [0u8; 4];
        for _ in 0..self.count {
            r.read_exact(&mut e)?;
            out.push(u32::from_be_bytes(e));
        }
        Ok(out)
    }
}

/// The `stsz` boxes of `moov`'s tracks (`trak/mdia/minf/stbl/stsz`) with a per-sample table
/// of at least `min_bytes`, found by reading box headers only. Anything unexpected on the way
/// (a header that does not parse, a box past its parent, a table larger than its box) gives
/// none, so that the whole box is read and the parser reports it as it always does.
fn big_stsz_tables<R: Read + Seek>(
    f: &mut R,
    moov: &TopBox,
    min_bytes: u64,
) -> std::io::Result<Vec<SizesInFile>> {
    fn walk<R: Read + Seek>(
        f: &mut R,
        (start, end): (u64, u64),
        path: &[&FourCC],
        min_bytes: u64,
        out: &mut Vec<SizesInFile>,
    ) -> std::io::Result<bool> {
        let mut pos = start;
        while pos < end {
            let avail = (end - pos).min(32) as usize;
            let mut hdr = [0u8; 32];
            f.seek(SeekFrom::Start(pos))?;
            f.read_exact(&mut hdr[..avail])?;
            let Ok((kind, header_len, size)) = parse_header_top(&hdr[..avail], pos, end - pos)
            else {
                return Ok(false);
            };
            match path.split_first() {
                Some((want, [])) if kind == **want => {
                    // version and flags, the uniform size (0: a table follows), the count.
                    if size < header_len + 12 {
                        return Ok(false);
                    }
                    let mut b = [0u8; 12];
                    f.seek(SeekFrom::Start(pos + header_len))?;
                    f.read_exact(&mut b)?;
                    let uniform = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                    let count = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
                    let bytes = count as u64 * 4;
                    if uniform == 0 && bytes > size - header_len - 12 {
                        return Ok(false);
                    }
                    if uniform == 0 && bytes >= min_bytes {
                        out.push(SizesInFile {
                            stsz_offset: pos,
                            entries_at: pos + header_len + 12,
                            count,
                        });
                    }
                }
                Some((want, rest))
                    if kind == **want
                        && !walk(f, (pos + header_len, pos + size), rest, min_bytes, out)? =>
                {
                    return Ok(false);
                }
                _ => {}
            }
            pos += size;
        }
        Ok(true)
    }
    let mut out = Vec::new();
    let path = [b"trak", b"mdia", b"minf", b"stbl", b"stsz"];
    let body = (moov.offset + moov.header_len, moov.end());
    if !walk(f, body, &path, min_bytes, &mut out)? {
        out.clear();
    }
    Ok(out)
}

/// [`read_top_box`] for a `moov`, without the per-sample size tables of at least `min_bytes`:
/// their bytes in the buffer stay zero (never written, so a large buffer's pages there are
/// not even touched) and their places are returned, for [`parse_stbl_with`] to leave alone and
/// for the caller to read straight from the file ([`SizesInFile::read`]). A 30-hour book's
/// `stsz` is 19 MB: read this way, a reader holds it once (as its sizes) instead of twice.
pub(crate) fn read_moov_sparse<R: Read + Seek>(
    f: &mut R,
    moov: &TopBox,
    limit: u64,
    min_bytes: u64,
) -> std::io::Result<Parse<(Vec<u8>, Vec<SizesInFile>)>> {
    if moov.size > limit {
        return read_top_box(f, moov, limit).map(|r| r.map(|b| (b, Vec::new())));
    }
    let holes = big_stsz_tables(f, moov, min_bytes)?;
    let mut buf = vec![0u8; moov.size as usize];
    let mut read = |from: u64, to: u64| -> std::io::Result<()> {
        f.seek(SeekFrom::Start(from))?;
        let (a, b) = ((from - moov.offset) as usize, (to - moov.offset) as usize);
        f.read_exact(&mut buf[a..b])
    };
    let mut pos = moov.offset;
    for h in &holes {
        read(pos, h.entries_at)?;
        pos = h.entries_at + h.count as u64 * 4;
    }
    read(pos, moov.end())?;
    Ok(Ok((buf, holes)))
}

/// Views a whole in-memory top-level box (as returned by [`read_top_box`]) as a [`BoxRef`].
pub(crate) fn as_box_ref<'a>(buf: &'a [u8], top: &TopBox) -> BoxRef<'a> {
    BoxRef {
        kind: top.kind,
        offset: top.offset,
        header_len: top.header_len,
        body: &buf[top.header_len as usize..],
    }
}

/// The children of a `meta` box. ISO `meta` is a full box (4 bytes of version and flags before
/// the children); QuickTime's `meta` is not. Tell them apart by whether a child header starts
/// right away (bytes 4..8 are a box type such as `hdlr`).
pub(crate) fn meta_children<'a>(meta: &BoxRef<'a>) -> Children<'a> {
    let start = meta_children_start(meta.body);
    children(&meta.body[start..], meta.body_offset() + start as u64)
}

/// Offset inside a `meta` body where its children start (see [`meta_children`]).
pub(crate) fn meta_children_start(meta_body: &[u8]) -> usize {
    let quicktime = meta_body.len() >= 8 && &meta_body[4..8] == b"hdlr";
    if quicktime || meta_body.len() < 4 {
        0
    } else {
        4
    }
}

/// Reads an MPEG-4 descriptor length (1 to 4 bytes, 7 bits each).
fn descriptor_len(c: &mut Cursor<'_>) -> Parse<usize> {
    let mut len = 0usize;
    for _ in 0..4 {
        let b = c.u8()?;
        len = (len << 7) | (b & 0x7F) as usize;
        if b & 0x80 == 0 {
            return Ok(len);
        }
    }
    Ok(len)
}

/// What an `mp4a` sample entry says: the ISO "template" channel count and rate (FFmpeg writes
/// 2 channels for mono; the AudioSpecificConfig in `esds` is authoritative), and its `esds`
/// (directly inside, or inside QuickTime's `wave` box).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Mp4aEntry {
    pub version: u16,
    pub channels: u16,
    pub rate: u32,
    pub esds: Option<Esds>,
}

/// Parses an `mp4a` sample entry (versions 0, 1 and 2 of the QuickTime sound description; an
/// unknown version is read as 0).
pub(crate) fn parse_mp4a(entry: &BoxRef<'_>) -> Parse<Mp4aEntry> {
    let mut c = entry.cursor("mp4a sample entry");
    c.skip(8)?; // reserved, data reference index
    let version = c.u16()?;
    c.skip(6)?; // revision, vendor
    let channels = c.u16()?;
    c.skip(6)?; // sample size, compression id, packet size
    let rate = c.u32()? >> 16;
    let children_at = match version {
        1 => 28 + 16,
        2 => 28 + 36,
        _ => 28,
    };
    let body = entry.body.get(children_at..).unwrap_or(&[]);
    let mut esds_box = None;
    for child in children(body, entry.body_offset() + children_at as u64) {
        let child = child?;
        match &child.kind {
            b"esds" => esds_box = esds_box.or(Some(child)),
            b"wave" => esds_box = esds_box.or(child.child(b"esds")?),
            _ => {}
        }
    }
    let esds = match esds_box {
        Some(e) => Some(parse_esds(&e)?),
        None => None,
    };
    Ok(Mp4aEntry {
        version,
        channels,
        rate,
        esds,
    })
}

/// What an `esds` box says about an AAC stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Esds {
    /// MPEG-4 objectTypeIndication (0x40 = MPEG-4 audio).
    pub object_type_indication: u8,
    pub avg_bitrate: u32,
    pub max_bitrate: u32,
    /// The AudioSpecificConfig bytes (DecoderSpecificInfo), if present.
    pub asc: Option<Vec<u8>>,
}

/// Parses the body of an `esds` box (a full box holding an ES_Descriptor).
pub(crate) fn parse_esds(b: &BoxRef<'_>) -> Parse<Esds> {
    let mut c = b.cursor("esds box");
    c.full_header()?;
    let mut out = Esds::default();
    // ES_Descriptor (tag 3)
    let tag = c.u8()?;
    if tag != 0x03 {
        return Err(Malformed::new(
            c.offset(),
            format!("esds: expected ES_Descriptor (tag 3), found tag {tag}"),
        ));
    }
    let len = descriptor_len(&mut c)?;
    let mut es = Cursor::new(
        c.bytes(len.min(c.remaining()))?,
        c.offset(),
        "ES_Descriptor",
    );
    es.u16()?; // ES_ID
    let flags = es.u8()?;
    if flags & 0x80 != 0 {
        es.u16()?; // dependsOn_ES_ID
    }
    if flags & 0x40 != 0 {
        let url_len = es.u8()? as usize;
        es.skip(url_len)?;
    }
    if flags & 0x20 != 0 {
        es.u16()?; // OCR_ES_Id
    }
    while es.remaining() > 0 {
        let tag = es.u8()?;
        let len = descriptor_len(&mut es)?;
        let body = es.bytes(len.min(es.remaining()))?;
        if tag == 0x04 {
            let mut d = Cursor::new(body, 0, "DecoderConfigDescriptor");
            out.object_type_indication = d.u8()?;
            d.u8()?; // streamType, upStream, reserved
            d.u24()?; // bufferSizeDB
            out.max_bitrate = d.u32()?;
            out.avg_bitrate = d.u32()?;
            while d.remaining() > 0 {
                let tag = d.u8()?;
                let len = descriptor_len(&mut d)?;
                let body = d.bytes(len.min(d.remaining()))?;
                if tag == 0x05 {
                    out.asc = Some(body.to_vec());
                }
            }
        }
    }
    Ok(out)
}

/// The fields of an AudioSpecificConfig that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Asc {
    /// The AAC core's object type (2 = AAC-LC), also under SBR/PS signalling.
    pub object_type: u8,
    /// The core's sampling frequency.
    pub sample_rate: Option<u32>,
    /// The core's channel configuration (1 for HE-AAC v2: parametric stereo codes a mono core).
    pub channel_config: u8,
    /// SBR is signalled (explicitly, hierarchical or backward compatible): the output rate.
    pub sbr_rate: Option<u32>,
    /// Parametric stereo is signalled.
    pub ps: bool,
}

impl Asc {
    /// The object type that names the profile: 29 (HE-AAC v2) with parametric stereo, 5
    /// (HE-AAC) with SBR, else the core's.
    pub fn profile_object_type(&self) -> u8 {
        if self.ps {
            29
        } else if self.sbr_rate.is_some() {
            5
        } else {
            self.object_type
        }
    }

    /// The rate a full decoder outputs.
    pub fn output_rate(&self) -> Option<u32> {
        self.sbr_rate.or(self.sample_rate)
    }

    /// The channel configuration a full decoder outputs (parametric stereo makes two of one).
    pub fn output_channel_config(&self) -> u8 {
        if self.ps && self.channel_config == 1 {
            2
        } else {
            self.channel_config
        }
    }
}

const ASC_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Object types signalling SBR and PS hierarchically (ISO 14496-3 §1.6.2.1).
const AOT_SBR: u32 = 5;
const AOT_PS: u32 = 29;
/// Sync words of the backward-compatible SBR and PS extensions (ISO 14496-3 §1.6.6.2).
const SYNC_SBR: u32 = 0x2b7;
const SYNC_PS: u32 = 0x548;

/// Parses an AudioSpecificConfig (ISO 14496-3 §1.6.2.1) as far as the profile, rates and
/// channels go: the core's fields, SBR/PS signalled hierarchically (object type 5 or 29 first)
/// or backward compatibly (a sync extension after the core's GASpecificConfig). A config the
/// parser cannot follow to its end (a program config element) keeps what was read before it.
pub(crate) fn parse_asc(asc: &[u8]) -> Option<Asc> {
    struct Bits<'a> {
        data: &'a [u8],
        at: usize,
    }
    impl Bits<'_> {
        // A tiny MSB-first bit reader; ASC fields are not byte aligned.
        fn read(&mut self, n: usize) -> Option<u32> {
            let mut v = 0;
            for _ in 0..n {
                let b = self.data.get(self.at / 8)?;
                v = (v << 1) | ((b >> (7 - self.at % 8)) & 1) as u32;
                self.at += 1;
            }
            Some(v)
        }
        fn left(&self) -> usize {
            (self.data.len() * 8).saturating_sub(self.at)
        }
        fn object_type(&mut self) -> Option<u32> {
            let t = self.read(5)?;
            if t == 31 {
                Some(32 + self.read(6)?)
            } else {
                Some(t)
            }
        }
        fn rate(&mut self) -> Option<Option<u32>> {
            let idx = self.read(4)?;
            if idx == 15 {
                Some(Some(self.read(24)?))
            } else {
                Some(ASC_RATES.get(idx as usize).copied())
            }
        }
    }
    let mut b = Bits { data: asc, at: 0 };
    let mut object_type = b.object_type()?;
    let sample_rate = b.rate()?;
    let channel_config = b.read(4)? as u8;
    let mut out = Asc {
        object_type: object_type.min(255) as u8,
        sample_rate,
        channel_config,
        sbr_rate: None,
        ps: false,
    };
    if object_type == AOT_SBR || object_type == AOT_PS {
        out.ps = object_type == AOT_PS;
        out.sbr_rate = b.rate()?;
        object_type = b.object_type()?;
        out.object_type = object_type.min(255) as u8;
        return Some(out);
    }
    // GASpecificConfig of the AAC object types (§4.4.1), to reach a sync extension after it.
    if !matches!(object_type, 1..=4 | 6 | 7 | 17 | 19..=23) || channel_config == 0 {
        return Some(out);
    }
    let Some(_frame_length) = b.read(1) else {
        return Some(out);
    };
    let parsed = (|| {
        if b.read(1)? == 1 {
            b.read(14)?; // coreCoderDelay
        }
        let extension = b.read(1)?;
        if object_type == 6 || object_type == 20 {
            b.read(3)?; // layerNr
        }
        if extension == 1 {
            if object_type == 22 {
                b.read(16)?; // numOfSubFrame, layer_length
            }
            if matches!(object_type, 17 | 19 | 20 | 23) {
                b.read(3)?; // resilience flags
            }
            b.read(1)?; // extensionFlag3
        }
        Some(())
    })();
    if parsed.is_none() || b.left() < 16 || b.read(11) != Some(SYNC_SBR) {
        return Some(out);
    }
    if b.object_type() == Some(AOT_SBR) && b.read(1) == Some(1) {
        out.sbr_rate = b.rate().flatten();
        if b.left() >= 12 && b.read(11) == Some(SYNC_PS) {
            out.ps = b.read(1) == Some(1);
        }
    }
    Some(out)
}

/// One entry of an edit list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Edit {
    /// Duration in the movie timescale (`mvhd`).
    pub segment_duration: u64,
    /// Start in the media timescale; -1 = an empty edit (silence / nothing shown).
    pub media_time: i64,
}

pub(crate) fn parse_elst(b: &BoxRef<'_>) -> Parse<Vec<Edit>> {
    let mut c = b.cursor("elst box");
    let (version, _) = c.full_header()?;
    let entry_len = if version == 1 { 20 } else { 12 };
    let n = c.count(entry_len)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (segment_duration, media_time) = if version == 1 {
            (c.u64()?, c.u64()? as i64)
        } else {
            (c.u32()? as u64, c.u32()? as i32 as i64)
        };
        c.u32()?; // media rate (16.16)
        out.push(Edit {
            segment_duration,
            media_time,
        });
    }
    Ok(out)
}

/// (timescale, duration) of an `mvhd` or `mdhd` box: both put them at the same place.
pub(crate) fn parse_timescale_duration(b: &BoxRef<'_>) -> Parse<(u32, u64)> {
    let mut c = b.cursor("mvhd/mdhd box");
    let (version, _) = c.full_header()?;
    if version == 1 {
        c.skip(16)?;
        Ok((c.u32()?, c.u64()?))
    } else {
        c.skip(8)?;
        Ok((c.u32()?, c.u32()? as u64))
    }
}

/// Track id from `tkhd`.
pub(crate) fn parse_tkhd_id(b: &BoxRef<'_>) -> Parse<u32> {
    let mut c = b.cursor("tkhd box");
    let (version, _) = c.full_header()?;
    c.skip(if version == 1 { 16 } else { 8 })?;
    c.u32()
}

/// Handler type from `hdlr` (`soun`, `text`, `vide`, `mdir` …).
pub(crate) fn parse_hdlr(b: &BoxRef<'_>) -> Parse<FourCC> {
    let mut c = b.cursor("hdlr box");
    c.full_header()?;
    c.u32()?; // pre_defined / component type
    c.fourcc()
}

/// A parsed sample table (`stbl`) of one track.
#[derive(Debug, Clone, Default)]
pub(crate) struct SampleTable {
    /// (sample_count, sample_delta) runs.
    pub stts: Vec<(u32, u32)>,
    /// Per-sample sizes (expanded when `stsz` has one uniform size).
    pub sizes: Vec<u32>,
    /// (first_chunk (1-based), samples_per_chunk, sample_description_index).
    pub stsc: Vec<(u32, u32, u32)>,
    pub chunk_offsets: Vec<u64>,
    pub uses_co64: bool,
    /// Sample entry type from `stsd` (`mp4a`, `text` …) and its box.
    pub entry_kind: Option<FourCC>,
    pub entry_count: u32,
    /// Set by [`parse_stbl_with`] for a table [`read_moov_sparse`] left in the file: `sizes`
    /// is empty until the caller reads them.
    pub sizes_in_file: Option<SizesInFile>,
}

/// Most samples a track may claim with a uniform `stsz`: 2^27 AAC frames are > 800 hours at
/// 44.1 kHz. A larger claim is a broken file, not something to allocate.
const MAX_UNIFORM_SAMPLES: usize = 1 << 27;

pub(crate) fn parse_stbl<'a>(stbl: &BoxRef<'a>) -> Parse<(SampleTable, Option<BoxRef<'a>>)> {
    parse_stbl_with(stbl, &[])
}

/// [`parse_stbl`] of a `moov` read by [`read_moov_sparse`]: a `stsz` listed in `in_file` is
/// checked as any other (its count must fit its box) but its entries are not read from the
/// buffer, where they are not; [`SampleTable::sizes_in_file`] says where they are.
pub(crate) fn parse_stbl_with<'a>(
    stbl: &BoxRef<'a>,
    in_file: &[SizesInFile],
) -> Parse<(SampleTable, Option<BoxRef<'a>>)> {
    let mut t = SampleTable::default();
    let mut entry = None;
    for child in stbl.children() {
        let child = child?;
        match &child.kind {
            b"stsd" => {
                let mut c = child.cursor("stsd box");
                c.full_header()?;
                t.entry_count = c.u32()?;
                let entries = children(c.rest(), child.body_offset() + 8);
                if let Some(first) = entries.into_iter().next() {
                    let first = first?;
                    t.entry_kind = Some(first.kind);
                    entry = Some(first);
                }
            }
            b"stts" => {
                let mut c = child.cursor("stts box");
                c.full_header()?;
                let n = c.count(8)?;
                t.stts = (0..n)
                    .map(|_| Ok((c.u32()?, c.u32()?)))
                    .collect::<Parse<_>>()?;
            }
            b"stsz" => {
                let mut c = child.cursor("stsz box");
                c.full_header()?;
                let uniform = c.u32()?;
                let elsewhere = in_file.iter().find(|h| h.stsz_offset == child.offset);
                if let (0, Some(h)) = (uniform, elsewhere) {
                    let n = c.count(4)?;
                    if n != h.count as usize {
                        return Err(Malformed::new(
                            child.offset,
                            "stsz changed while it was read",
                        ));
                    }
                    t.sizes_in_file = Some(*h);
                } else if uniform == 0 {
                    t.sizes_in_file = None;
                    let n = c.count(4)?;
                    let mut sizes = Vec::with_capacity(n);
                    for _ in 0..n {
                        sizes.push(c.u32()?);
                    }
                    t.sizes = sizes;
                } else {
                    let at = c.offset();
                    let n = c.u32()? as usize;
                    if n > MAX_UNIFORM_SAMPLES {
                        return Err(Malformed::new(at, format!("stsz claims {n} samples")));
                    }
                    t.sizes_in_file = None;
                    t.sizes = vec![uniform; n];
                }
            }
            b"stz2" => {
                return Err(Malformed::new(
                    child.offset,
                    "compact sample sizes (stz2) are not supported",
                ))
            }
            b"stsc" => {
                let mut c = child.cursor("stsc box");
                c.full_header()?;
                let n = c.count(12)?;
                t.stsc = (0..n)
                    .map(|_| Ok((c.u32()?, c.u32()?, c.u32()?)))
                    .collect::<Parse<_>>()?;
            }
            b"stco" => {
                let mut c = child.cursor("stco box");
                c.full_header()?;
                let n = c.count(4)?;
                t.chunk_offsets = (0..n).map(|_| Ok(c.u32()? as u64)).collect::<Parse<_>>()?;
            }
            b"co64" => {
                let mut c = child.cursor("co64 box");
                c.full_header()?;
                let n = c.count(8)?;
                t.chunk_offsets = (0..n).map(|_| c.u64()).collect::<Parse<_>>()?;
                t.uses_co64 = true;
            }
            _ => {}
        }
    }
    Ok((t, entry))
}

/// A chunk of consecutive samples stored together: where it is and which samples it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkRun {
    pub offset: u64,
    pub first_sample: usize,
    pub sample_count: usize,
    pub bytes: u64,
}

impl SampleTable {
    /// Total duration in media timescale units (sum of `stts`).
    /// Saturating: a hostile `stts` can hold entries whose products add up past `u64` (found by
    /// fuzzing); such a table is rejected later for not matching the sample count.
    pub(crate) fn total_duration(&self) -> u64 {
        self.stts
            .iter()
            .fold(0u64, |t, &(n, d)| t.saturating_add(n as u64 * d as u64))
    }
    pub(crate) fn stts_sample_count(&self) -> u64 {
        self.stts.iter().map(|&(n, _)| n as u64).sum()
    }
    /// Start time (media timescale) of every sample, at most `limit` of them.
    pub(crate) fn sample_times(&self, limit: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut t = 0u64;
        'outer: for &(n, d) in &self.stts {
            for _ in 0..n {
                if out.len() >= limit {
                    break 'outer;
                }
                out.push(t);
                t += d as u64;
            }
        }
        out
    }
    /// Expands `stsc` into one [`ChunkRun`] per chunk, checking that the sample-to-chunk map,
    /// the sizes and the chunk offsets agree and stay inside the file.
    pub(crate) fn chunks(&self, file_len: u64) -> std::result::Result<Vec<ChunkRun>, String> {
        let n_chunks = self.chunk_offsets.len();
        let mut out = Vec::with_capacity(n_chunks);
        let mut sample = 0usize;
        for (i, &(first, per_chunk, _)) in self.stsc.iter().enumerate() {
            let first = first as usize;
            let next_first = match self.stsc.get(i + 1) {
                Some(&(nf, _, _)) => nf as usize,
                None => n_chunks + 1,
            };
            if first == 0 || next_first <= first || next_first > n_chunks + 1 {
                return Err(format!(
                    "stsc entry {} covers chunks {first}..{next_first} but there are {n_chunks} chunks",
                    i + 1
                ));
            }
            for chunk in first..next_first {
                let count = per_chunk as usize;
                if sample + count > self.sizes.len() {
                    return Err(format!(
                        "stsc maps more samples than the {} that stsz lists",
                        self.sizes.len()
                    ));
                }
                let bytes: u64 = self.sizes[sample..sample + count]
                    .iter()
                    .map(|&s| s as u64)
                    .sum();
                let offset = self.chunk_offsets[chunk - 1];
                if offset.checked_add(bytes).is_none_or(|end| end > file_len) {
                    return Err(format!(
                        "chunk {chunk} ({bytes} bytes at offset {offset}) lies beyond the end of the file ({file_len} bytes)"
                    ));
                }
                out.push(ChunkRun {
                    offset,
                    first_sample: sample,
                    sample_count: count,
                    bytes,
                });
                sample += count;
            }
        }
        if sample != self.sizes.len() {
            return Err(format!(
                "stsc maps {sample} samples but stsz lists {}",
                self.sizes.len()
            ));
        }
        Ok(out)
    }
}

/// One value (`data` box) of an iTunes metadata item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataValue<'a> {
    /// Well-known type: 1 UTF-8, 2 UTF-16, 13 JPEG, 14 PNG, 21 signed int, 0 implicit …
    pub type_code: u32,
    pub payload: &'a [u8],
}

/// The key of an iTunes metadata item: a four-character code or a freeform `----` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemKey {
    Code(FourCC),
    Freeform { mean: String, name: String },
}

impl std::fmt::Display for ItemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ItemKey::Code(k) => write!(f, "{}", fourcc_str(k)),
            ItemKey::Freeform { mean, name } => write!(f, "----:{mean}:{name}"),
        }
    }
}

/// One item of `ilst`, with its raw box for byte-exact copies.
#[derive(Debug, Clone)]
pub(crate) struct Item<'a> {
    pub key: ItemKey,
    pub values: Vec<DataValue<'a>>,
    pub raw: BoxRef<'a>,
}

/// Parses the items of an `ilst` box.
pub(crate) fn parse_ilst<'a>(ilst: &BoxRef<'a>) -> Parse<Vec<Item<'a>>> {
    let mut out = Vec::new();
    for item in ilst.children() {
        let item = item?;
        let mut key = ItemKey::Code(item.kind);
        let mut values = Vec::new();
        let (mut mean, mut name) = (None, None);
        for part in item.children() {
            let part = part?;
            match &part.kind {
                b"data" => {
                    let mut c = part.cursor("data box");
                    let type_code = c.u32()? & 0x00FF_FFFF;
                    c.u32()?; // locale
                    values.push(DataValue {
                        type_code,
                        payload: c.rest(),
                    });
                }
                b"mean" | b"name" => {
                    let mut c = part.cursor("mean/name box");
                    c.full_header()?;
                    let s = String::from_utf8_lossy(c.rest()).into_owned();
                    if part.kind == *b"mean" {
                        mean = Some(s);
                    } else {
                        name = Some(s);
                    }
                }
                _ => {}
            }
        }
        if item.kind == *b"----" {
            key = ItemKey::Freeform {
                mean: mean.unwrap_or_default(),
                name: name.unwrap_or_default(),
            };
        }
        out.push(Item {
            key,
            values,
            raw: item,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    /// A `moov` of two tracks, each `trak/mdia/minf/stbl` with `stts` and a `stsz` of
    /// `sizes` (the first uniform when `uniform` is set), after a 20-byte `ftyp`-like box.
    fn two_track_file(sizes: &[&[u32]], uniform: Option<u32>) -> (Vec<u8>, TopBox) {
        let traks: Vec<u8> = sizes
            .iter()
            .enumerate()
            .flat_map(|(k, s)| {
                let mut stsz = vec![0u8; 4];
                match (k, uniform) {
                    (0, Some(u)) => {
                        stsz.extend_from_slice(&u.to_be_bytes());
                        stsz.extend_from_slice(&(s.len() as u32).to_be_bytes());
                    }
                    _ => {
                        stsz.extend_from_slice(&0u32.to_be_bytes());
                        stsz.extend_from_slice(&(s.len() as u32).to_be_bytes());
                        s.iter()
                            .for_each(|v| stsz.extend_from_slice(&v.to_be_bytes()));
                    }
                }
                let mut stts = vec![0u8; 4];
                stts.extend_from_slice(&1u32.to_be_bytes());
                stts.extend_from_slice(&(s.len() as u32).to_be_bytes());
                stts.extend_from_slice(&1024u32.to_be_bytes());
                let stbl = [bx(b"stts", &stts), bx(b"stsz", &stsz)].concat();
                let minf = bx(b"minf", &bx(b"stbl", &stbl));
                bx(b"trak", &bx(b"mdia", &minf))
            })
            .collect();
        let moov = bx(
            b"moov",
            &[bx(b"mvhd", &[0; 8]), traks, bx(b"udta", b"tail")].concat(),
        );
        let file = [bx(b"ftyp", &[7; 12]), moov.clone(), bx(b"mdat", b"x")].concat();
        let top = TopBox {
            kind: *b"moov",
            offset: 20,
            header_len: 8,
            size: moov.len() as u64,
        };
        (file, top)
    }

    fn stbls(buf: &[u8], top: &TopBox, in_file: &[SizesInFile]) -> Vec<SampleTable> {
        let moov = as_box_ref(buf, top);
        moov.children()
            .filter_map(|t| {
                let t = t.unwrap();
                (t.kind == *b"trak").then(|| {
                    let stbl = t.descend(&[b"mdia", b"minf", b"stbl"]).unwrap().unwrap();
                    parse_stbl_with(&stbl, in_file).unwrap().0
                })
            })
            .collect()
    }

    /// The sparse read gives the same tables as the whole read, with every per-sample table
    /// read from the file (and none of its bytes in the buffer); a uniform `stsz` and tables
    /// under the size asked for stay in the buffer.
    #[test]
    fn a_sparse_moov_read_leaves_the_size_tables_in_the_file_and_gives_the_same_tables() {
        let a: Vec<u32> = (0..300).map(|i| 200 + i % 97).collect();
        let b: Vec<u32> = (0..7).map(|i| 9 + i).collect();
        for uniform in [None, Some(371)] {
            let (file, top) = two_track_file(&[&a, &b], uniform);
            let mut f = std::io::Cursor::new(file.clone());
            let whole = read_top_box(&mut f, &top, 1 << 20).unwrap().unwrap();
            let want: Vec<Vec<u32>> = stbls(&whole, &top, &[])
                .into_iter()
                .map(|t| t.sizes)
                .collect();
            for min in [0u64, 100] {
                let (buf, holes) = read_moov_sparse(&mut f, &top, 1 << 20, min)
                    .unwrap()
                    .unwrap();
                assert_eq!(buf.len(), whole.len());
                // Track a's table is 1200 bytes, b's 28: a minimum of 100 leaves b's in.
                let expected_holes = match (uniform, min) {
                    (None, 0) => 2,
                    (Some(_), 0) | (None, _) => 1,
                    (Some(_), _) => 0,
                };
                assert_eq!(holes.len(), expected_holes, "{uniform:?} {min}");
                for h in &holes {
                    let at = (h.entries_at - top.offset) as usize;
                    let hole = &buf[at..at + 4 * h.count as usize];
                    assert!(hole.iter().all(|&x| x == 0), "the table's bytes were read");
                    assert_ne!(&whole[at..at + 4 * h.count as usize], hole);
                }
                let mut got = stbls(&buf, &top, &holes);
                for t in &mut got {
                    if let Some(h) = t.sizes_in_file.take() {
                        assert!(t.sizes.is_empty());
                        t.sizes = h.read(&mut f).unwrap();
                    }
                }
                let got: Vec<Vec<u32>> = got.into_iter().map(|t| t.sizes).collect();
                assert_eq!(got, want, "{uniform:?} {min}");
                // Everything outside the holes is the file's.
                let mut masked = whole.clone();
                for h in &holes {
                    let at = (h.entries_at - top.offset) as usize;
                    masked[at..at + 4 * h.count as usize].fill(0);
                }
                assert!(masked == buf);
            }
        }
    }

    /// A `stsz` whose count does not fit its box, or a box that runs past its parent: the
    /// sparse read leaves nothing out, so the parser sees the whole box and reports it.
    #[test]
    fn a_sparse_moov_read_of_a_lying_table_reads_it_whole() {
        let a: Vec<u32> = (0..50).collect();
        let (file, top) = two_track_file(&[&a, &a], None);
        // The first stsz's count (after its 8-byte header, 4 of version, 4 of uniform size).
        let stsz = file.windows(4).position(|w| w == b"stsz").unwrap() - 4;
        let mut lying = file.clone();
        lying[stsz + 16..stsz + 20].copy_from_slice(&51u32.to_be_bytes());
        let mut f = std::io::Cursor::new(lying.clone());
        let (buf, holes) = read_moov_sparse(&mut f, &top, 1 << 20, 0).unwrap().unwrap();
        assert!(holes.is_empty());
        assert!(buf[..] == lying[20..20 + top.size as usize]);
        let moov = as_box_ref(&buf, &top);
        let trak = moov.child(b"trak").unwrap().unwrap();
        let stbl = trak.descend(&[b"mdia", b"minf", b"stbl"]).unwrap().unwrap();
        let err = parse_stbl_with(&stbl, &holes).unwrap_err();
        assert!(err.reason.contains("claims 51 entries"), "{}", err.reason);
        // A trak that claims more than its moov: nothing is left out either.
        let mut past = file.clone();
        let trak = file.windows(4).position(|w| w == b"trak").unwrap() - 4;
        past[trak..trak + 4].copy_from_slice(&(top.size as u32).to_be_bytes());
        let mut f = std::io::Cursor::new(past);
        let (_, holes) = read_moov_sparse(&mut f, &top, 1 << 20, 0).unwrap().unwrap();
        assert!(holes.is_empty());
    }

    /// Found by the `mp4box` fuzz target: three `stts` runs of 2^32-1 samples of 2^32-1 ticks
    /// overflowed the sum (a panic with overflow checks, a wrong small total without).
    #[test]
    fn a_hostile_stts_total_saturates() {
        let table = SampleTable {
            stts: vec![(u32::MAX, u32::MAX); 3],
            ..SampleTable::default()
        };
        assert_eq!(table.total_duration(), u64::MAX);
    }

    #[test]
    fn walks_nested_boxes_with_offsets() {
        let inner = bx(b"free", b"abc");
        let outer = [bx(b"moov", &inner), bx(b"mdat", b"xy")].concat();
        let kids: Vec<_> = children(&outer, 100).collect::<Parse<_>>().unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(&kids[0].kind, b"moov");
        assert_eq!(kids[0].offset, 100);
        assert_eq!(kids[1].offset, 100 + 19);
        let free = kids[0].child(b"free").unwrap().unwrap();
        assert_eq!(free.offset, 108);
        assert_eq!(free.body, b"abc");
    }

    #[test]
    fn size_zero_extends_to_end_of_container() {
        let mut buf = vec![0, 0, 0, 0];
        buf.extend_from_slice(b"mdat");
        buf.extend_from_slice(&[1, 2, 3]);
        let kids: Vec<_> = children(&buf, 0).collect::<Parse<_>>().unwrap();
        assert_eq!(kids.len(), 1);
        assert_eq!(kids[0].body, &[1, 2, 3]);
    }

    #[test]
    fn size_one_reads_64_bit_size() {
        let mut buf = vec![0, 0, 0, 1];
        buf.extend_from_slice(b"mdat");
        buf.extend_from_slice(&19u64.to_be_bytes());
        buf.extend_from_slice(&[7, 8, 9]);
        buf.extend_from_slice(&bx(b"free", b""));
        let kids: Vec<_> = children(&buf, 0).collect::<Parse<_>>().unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0].header_len, 16);
        assert_eq!(kids[0].body, &[7, 8, 9]);
        assert_eq!(&kids[1].kind, b"free");
    }

    #[test]
    fn lying_sizes_are_errors_not_panics() {
        // Claims 1000 bytes, has 12.
        let mut buf = 1000u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"moov");
        buf.extend_from_slice(&[0; 4]);
        let r: Parse<Vec<_>> = children(&buf, 0).collect();
        let e = r.unwrap_err();
        assert!(e.reason.contains("claims 1000 bytes"), "{e:?}");
        // Size smaller than the header.
        let mut buf = 4u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"moov");
        assert!(children(&buf, 0).collect::<Parse<Vec<_>>>().is_err());
        // 64-bit size that is truncated / too small / huge.
        let mut buf = 1u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"mdat");
        buf.extend_from_slice(&[0, 0]);
        assert!(children(&buf, 0).collect::<Parse<Vec<_>>>().is_err());
        let mut buf = 1u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"mdat");
        buf.extend_from_slice(&8u64.to_be_bytes());
        assert!(children(&buf, 0).collect::<Parse<Vec<_>>>().is_err());
        let mut buf = 1u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"mdat");
        buf.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(children(&buf, 0).collect::<Parse<Vec<_>>>().is_err());
        // A header cut in the middle.
        let buf = [0u8, 0, 0, 9, b'm', b'o'];
        assert!(children(&buf, 0).collect::<Parse<Vec<_>>>().is_err());
        // Zero padding at the end of a container is tolerated.
        let buf = [bx(b"free", b""), vec![0, 0, 0, 0]].concat();
        assert_eq!(
            children(&buf, 0).collect::<Parse<Vec<_>>>().unwrap().len(),
            1
        );
    }

    #[test]
    fn lying_entry_counts_are_rejected_before_allocating() {
        // stts claiming 2^32-1 entries in a 16-byte body.
        let mut body = vec![0, 0, 0, 0];
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        body.extend_from_slice(&[0; 8]);
        let stbl = bx(b"stbl", &bx(b"stts", &body));
        let b = children(&stbl, 0).next().unwrap().unwrap();
        let e = parse_stbl(&b).unwrap_err();
        assert!(e.reason.contains("claims 4294967295 entries"), "{e:?}");
        // Uniform stsz with an absurd count.
        let mut body = vec![0, 0, 0, 0];
        body.extend_from_slice(&100u32.to_be_bytes());
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        let stbl = bx(b"stbl", &bx(b"stsz", &body));
        let b = children(&stbl, 0).next().unwrap().unwrap();
        assert!(parse_stbl(&b).is_err());
    }

    #[test]
    fn top_level_walk_detects_truncation() {
        let file = [bx(b"ftyp", b"M4A \0\0\0\0"), bx(b"mdat", &[0; 10])].concat();
        let mut cur = std::io::Cursor::new(file.clone());
        let tops = top_level_boxes(&mut cur, file.len() as u64)
            .unwrap()
            .unwrap();
        assert_eq!(tops.len(), 2);
        assert_eq!(tops[1].offset, 16);
        assert_eq!(tops[1].size, 18);
        let cut = &file[..file.len() - 3];
        let mut cur = std::io::Cursor::new(cut.to_vec());
        let e = top_level_boxes(&mut cur, cut.len() as u64)
            .unwrap()
            .unwrap_err();
        assert!(e.reason.contains("truncated"), "{e:?}");
        // A trailing fragment shorter than a header.
        let mut f = file.clone();
        f.extend_from_slice(&[0, 0, 0]);
        let mut cur = std::io::Cursor::new(f.clone());
        assert!(top_level_boxes(&mut cur, f.len() as u64).unwrap().is_err());
    }

    #[test]
    fn sample_table_chunks_are_checked() {
        let t = SampleTable {
            sizes: vec![10, 10, 10],
            stsc: vec![(1, 2, 1), (2, 1, 1)],
            chunk_offsets: vec![100, 200],
            ..Default::default()
        };
        let c = t.chunks(1000).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].first_sample, c[0].sample_count, c[0].bytes),
            (0, 2, 20)
        );
        assert_eq!((c[1].first_sample, c[1].sample_count), (2, 1));
        assert!(t.chunks(205).is_err(), "chunk past the end of the file");
        let bad = SampleTable {
            stsc: vec![(1, 5, 1)],
            ..t.clone()
        };
        assert!(bad.chunks(1000).is_err(), "more samples mapped than sizes");
        let bad = SampleTable {
            stsc: vec![(2, 1, 1), (1, 1, 1)],
            ..t
        };
        assert!(bad.chunks(1000).is_err(), "stsc not increasing");
    }

    #[test]
    fn ilst_items_are_parsed() {
        // data box: type 1 (UTF-8), locale 0, payload
        let data = |payload: &[u8]| bx(b"data", &[&[0, 0, 0, 1, 0, 0, 0, 0][..], payload].concat());
        let nrt = bx(b"\xa9nrt", &data("Ünïcode".as_bytes()));
        let mean = bx(b"mean", b"\0\0\0\0com.apple.iTunes");
        let name = bx(b"name", b"\0\0\0\0SERIES");
        let series = bx(b"----", &[mean, name, data(b"Saga")].concat());
        let ilst = bx(b"ilst", &[nrt, series].concat());
        let ilst = children(&ilst, 0).next().unwrap().unwrap();
        let items = parse_ilst(&ilst).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].key.to_string(), "©nrt");
        assert_eq!(items[0].values[0].payload, "Ünïcode".as_bytes());
        assert_eq!(items[1].key.to_string(), "----:com.apple.iTunes:SERIES");
        assert_eq!(items[1].values[0].type_code, 1);
        assert_eq!(items[1].raw.offset, 8 + 8 + 16 + "Ünïcode".len() as u64);
        // A data box too short for its type and locale is an error.
        let ilst = bx(b"ilst", &bx(b"\xa9nam", &bx(b"data", &[0, 0])));
        let ilst = children(&ilst, 0).next().unwrap().unwrap();
        assert!(parse_ilst(&ilst).is_err());
    }

    #[test]
    fn asc_and_esds() {
        // AAC-LC, 44.1 kHz, stereo: 00010 0100 0010 000 → 0x12 0x10
        let asc = parse_asc(&[0x12, 0x10]).unwrap();
        assert_eq!(asc.object_type, 2);
        assert_eq!(asc.sample_rate, Some(44_100));
        assert_eq!(asc.channel_config, 2);
        assert_eq!(asc.sbr_rate, None);
        assert!(parse_asc(&[0x12]).is_none());
        // FFmpeg's native encoder: AAC-LC with a backward-compatible extension saying "no SBR".
        let asc = parse_asc(&[0x12, 0x10, 0x56, 0xe5, 0x00]).unwrap();
        assert_eq!(
            (asc.profile_object_type(), asc.output_rate()),
            (2, Some(44_100))
        );
        // FDK HE-AAC, explicit hierarchical: SBR, core 22.05 kHz stereo, output 44.1 kHz.
        let asc = parse_asc(&[0x2b, 0x92, 0x08, 0x00]).unwrap();
        assert_eq!(asc.object_type, 2);
        assert_eq!(asc.sample_rate, Some(22_050));
        assert_eq!(
            (asc.profile_object_type(), asc.output_rate()),
            (5, Some(44_100))
        );
        assert_eq!(asc.output_channel_config(), 2);
        // FDK HE-AAC v2: PS over a mono core at 24 kHz, output 48 kHz stereo.
        let asc = parse_asc(&[0xeb, 0x09, 0x88, 0x00]).unwrap();
        assert_eq!((asc.channel_config, asc.output_channel_config()), (1, 2));
        assert_eq!(
            (asc.profile_object_type(), asc.output_rate()),
            (29, Some(48_000))
        );
        // Backward-compatible SBR + PS: LC 22.05 kHz mono, 0x2b7, AOT 5, SBR 1, 44.1 kHz,
        // 0x548, PS 1.
        let asc = parse_asc(&[0x13, 0x88, 0x56, 0xe5, 0xa5, 0x48, 0x80]).unwrap();
        assert_eq!(
            (asc.profile_object_type(), asc.output_rate()),
            (29, Some(44_100))
        );
        assert_eq!(asc.output_channel_config(), 2);
        // esds: full header, ES_Descriptor{ id, flags, DecoderConfig{ .., DSI{12 10} } }
        let dsi = [0x05, 2, 0x12, 0x10];
        let mut dcd = vec![0x04, 13 + dsi.len() as u8, 0x40, 0x15, 0, 0, 0];
        dcd.extend_from_slice(&128_000u32.to_be_bytes());
        dcd.extend_from_slice(&128_000u32.to_be_bytes());
        dcd.extend_from_slice(&dsi);
        let mut es = vec![0x03, 3 + dcd.len() as u8, 0, 1, 0];
        es.extend_from_slice(&dcd);
        let body = [vec![0, 0, 0, 0], es].concat();
        let esds = bx(b"esds", &body);
        let b = children(&esds, 0).next().unwrap().unwrap();
        let e = parse_esds(&b).unwrap();
        assert_eq!(e.object_type_indication, 0x40);
        assert_eq!(e.avg_bitrate, 128_000);
        assert_eq!(e.asc.as_deref(), Some(&[0x12, 0x10][..]));
        // Truncated descriptor: error, no panic.
        let cut = bx(b"esds", &body[..10]);
        let b = children(&cut, 0).next().unwrap().unwrap();
        let _ = parse_esds(&b);
    }
}
