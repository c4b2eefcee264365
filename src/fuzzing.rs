//! Entry points for the fuzz targets in `fuzz/`, compiled only with the cargo feature `fuzzing`
//! (as `aiom4b::__fuzz`): the crate's internal byte parsers, reachable without making them part
//! of the public API. Nothing here is stable or meant for any other caller.
//!
//! The functions that walk internal data structures check their invariants themselves (with
//! `assert!`), since the fuzz crate cannot see those types: a failed assertion is a finding.
use crate::mp4box::{self, BoxRef, Parse};
use std::io::Cursor;

pub use crate::mp3bytes::{
    audio_start, id3v2_len, FrameHeader, LameTrim, VbrKind, VbrTag, ID3V2_HEADER_LEN, MAX_FRAME_LEN,
};

pub use crate::oggbytes::{
    ending as ogg_ending, parse_page as parse_ogg_page, OggEnd, OggPage, TAIL_LEN as OGG_TAIL_LEN,
};

/// The VBR header of the frame at the start of `frame`.
pub fn parse_vbr_tag(frame: &[u8]) -> Option<VbrTag> {
    crate::mp3bytes::parse_vbr_tag(frame)
}

/// The VBR header of the first frame after the ID3v2 tags of the file `file`, read through the
/// same `Read + Seek` path the prober and the MP3 writer use.
pub fn read_vbr_tag(file: &[u8]) -> Option<VbrTag> {
    crate::mp3bytes::read_vbr_tag(&mut Cursor::new(file)).expect("reading memory cannot fail")
}

/// The content sniffer on a whole file in memory.
pub fn sniff_mp3(file: &[u8]) -> Result<(), String> {
    crate::mp3bytes::sniff_bytes(file)
}

/// What [`walk_mp4`] saw.
#[derive(Debug, Default)]
pub struct Mp4Walk {
    /// Boxes visited, at every level.
    pub boxes: usize,
    /// Errors reported by the parsers (a hostile file is expected to produce some).
    pub malformed: usize,
    /// `moov` boxes that the tag patcher rewrote.
    pub patched: usize,
}

/// Deepest nesting followed; real files go about 10 deep (`moov/trak/mdia/minf/stbl/stsd/…`).
const MAX_DEPTH: usize = 32;
/// Largest top-level box read into memory (the fuzzer's inputs are far smaller anyway).
const MAX_BOX_BYTES: u64 = 64 << 20;

/// Walks the whole box tree of `file` the way `verify` and `mp4tags` do — top-level boxes by
/// seeking, then every box in memory — and runs every box parser on every box of its kind,
/// checking what the parsers promise: sample-table chunks lie inside the file and cover every
/// sample once, in order; a patched `moov` is one well-formed box that holds the new items.
pub fn walk_mp4(file: &[u8]) -> Mp4Walk {
    let mut walk = Mp4Walk::default();
    let len = file.len() as u64;
    let tops = match mp4box::top_level_boxes(&mut Cursor::new(file), len) {
        Ok(Ok(t)) => t,
        Ok(Err(_)) => {
            walk.malformed += 1;
            return walk;
        }
        Err(e) => panic!("reading memory failed: {e}"),
    };
    let mut end = 0;
    for top in &tops {
        assert_eq!(top.offset, end, "top-level boxes are contiguous");
        assert!(top.size >= top.header_len && top.end() <= len);
        end = top.end();
        let buf = match mp4box::read_top_box(&mut Cursor::new(file), top, MAX_BOX_BYTES) {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                walk.malformed += 1;
                continue;
            }
            Err(e) => panic!("reading a top-level box from memory failed: {e}"),
        };
        let b = mp4box::as_box_ref(&buf, top);
        if visit(&b, len, 0, &mut walk).is_err() {
            walk.malformed += 1;
        }
        if top.kind == *b"moov" {
            patch(&buf, top, &mut walk);
        }
    }
    walk
}

fn visit(b: &BoxRef<'_>, file_len: u64, depth: usize, walk: &mut Mp4Walk) -> Parse<()> {
    walk.boxes += 1;
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let children = |kids: mp4box::Children<'_>, walk: &mut Mp4Walk| -> Parse<()> {
        let mut at = None;
        for k in kids {
            let k = k?;
            assert!(k.offset >= b.body_offset() && k.end() <= b.end());
            assert!(at.is_none_or(|a| k.offset >= a), "children in order");
            at = Some(k.end());
            // One bad child must not hide the checks on its siblings' parsers.
            if visit(&k, file_len, depth + 1, walk).is_err() {
                walk.malformed += 1;
            }
        }
        Ok(())
    };
    match &b.kind {
        b"moov" | b"trak" | b"mdia" | b"minf" | b"dinf" | b"edts" | b"udta" | b"tref" => {
            children(b.children(), walk)?
        }
        b"meta" => children(mp4box::meta_children(b), walk)?,
        b"mvhd" | b"mdhd" => {
            mp4box::parse_timescale_duration(b)?;
        }
        b"tkhd" => {
            mp4box::parse_tkhd_id(b)?;
        }
        b"hdlr" => {
            mp4box::parse_hdlr(b)?;
        }
        b"elst" => {
            mp4box::parse_elst(b)?;
        }
        b"esds" => esds(b)?,
        b"ilst" => {
            for item in mp4box::parse_ilst(b)? {
                assert!(item.raw.end() <= b.end());
                let _ = item.key.to_string();
            }
        }
        b"stbl" => {
            let (table, entry) = mp4box::parse_stbl(b)?;
            let _ = table.total_duration();
            let _ = table.stts_sample_count();
            assert!(table.sample_times(1000).windows(2).all(|w| w[0] <= w[1]));
            if let Ok(runs) = table.chunks(file_len) {
                let mut next = 0;
                for r in &runs {
                    assert_eq!(r.first_sample, next, "chunks cover samples in order");
                    assert!(r.offset.checked_add(r.bytes).is_some_and(|e| e <= file_len));
                    next += r.sample_count;
                }
                assert_eq!(next, table.sizes.len(), "chunks cover every sample");
            }
            if let Some(entry) = entry.filter(|e| e.kind == *b"mp4a") {
                // An AudioSampleEntry: 28 bytes of fields, then child boxes (`esds`).
                if let Some(rest) = entry.body.get(28..) {
                    for k in mp4box::children(rest, entry.body_offset() + 28) {
                        let k = k?;
                        if k.kind == *b"esds" {
                            esds(&k)?;
                        }
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn esds(b: &BoxRef<'_>) -> Parse<()> {
    let e = mp4box::parse_esds(b)?;
    if let Some(asc) = e.asc.as_deref().and_then(mp4box::parse_asc) {
        let _ = (
            asc.profile_object_type(),
            asc.output_rate(),
            asc.output_channel_config(),
        );
    }
    Ok(())
}

/// Runs the tag patcher on a `moov` and checks that what it returns is one well-formed `moov`
/// box whose `udta/meta/ilst` holds the new items.
fn patch(moov_buf: &[u8], top: &mp4box::TopBox, walk: &mut Mp4Walk) {
    let items = crate::mp4tags::extra_items(Some("Narrator"), Some("Series"), Some("2"));
    let Ok(out) = crate::mp4tags::patch_moov(moov_buf, top, &items) else {
        walk.malformed += 1;
        return;
    };
    walk.patched += 1;
    let kids: Vec<_> = mp4box::children(&out, top.offset)
        .collect::<Parse<_>>()
        .expect("the patched moov parses");
    assert!(
        matches!(kids.as_slice(), [m] if m.kind == *b"moov"),
        "the patched moov is one box"
    );
    let ilst = kids[0]
        .descend(&[b"udta", b"meta"])
        .expect("udta/meta parse")
        .and_then(|meta| {
            mp4box::meta_children(&meta)
                .filter_map(Result::ok)
                .find(|c| c.kind == *b"ilst")
        })
        .expect("the patched moov has udta/meta/ilst");
    let keys: Vec<_> = mp4box::parse_ilst(&ilst)
        .expect("the new ilst parses")
        .into_iter()
        .map(|i| i.key)
        .collect();
    for n in &items {
        assert!(keys.contains(&n.key), "{} is in the new ilst", n.key);
    }
}

/// A stretch from the middle of `path` decoded as a ranged worker seeks to it
/// ([`crate::av::decode::decode_seeking`]), where its format allows a seek: `Some((from,
/// samples delivered, what the decoder saw))`. Never a panic; never more samples than the
/// stated length leaves after `from`.
pub fn decode_seeking_stretch(
    path: &std::path::Path,
) -> Option<(u64, u64, crate::av::decode::SeekDecode)> {
    use crate::av::{decode, input};
    let open = || input::open_input(path, crate::model::InputFormats::all()).ok();
    let probe = open()?;
    let params = probe.ctx.stream(probe.audio_index)?.parameters();
    // SAFETY: the parameters of an open input's stream, read while it is open.
    let rate = unsafe { (*params.as_ptr()).sample_rate };
    let preroll = decode::seek_preroll(&probe, u32::try_from(rate).ok()?)?;
    let len = probe.length?;
    let from = len / 2;
    let mut delivered = 0u64;
    let got = decode::decode_seeking(open()?, from, preroll, 2, &|| false, &mut |planes| {
        delivered += planes[0].len() as u64;
        Ok(true)
    })
    .ok()??;
    Some((from, delivered, got))
}
