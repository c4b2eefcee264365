//! The MP3 byte parsers (`src/mp3bytes.rs`) on arbitrary bytes taken as a whole file: the
//! content sniffer, the ID3v2 tag length, the frame header and the VBR (Xing/Info/LAME/VBRI)
//! header. None may panic, and what they return must agree with each other. Also the Ogg
//! page reader (`src/oggbytes.rs`) that tells how an Ogg file ends, on the same bytes.
#![no_main]
use aiom4b::__fuzz::{
    audio_start, id3v2_len, ogg_ending, parse_ogg_page, parse_vbr_tag, read_vbr_tag, sniff_mp3,
    FrameHeader, OggEnd, VbrKind, ID3V2_HEADER_LEN, MAX_FRAME_LEN, OGG_TAIL_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|file: &[u8]| {
    // The tag length counts the header and at most a 28-bit body and a footer.
    if let Some(len) = id3v2_len(file) {
        let h = ID3V2_HEADER_LEN as u64;
        assert!((h..=h + (1 << 28) - 1 + h).contains(&len), "{len}");
        assert!(file.starts_with(b"ID3"));
    }
    let start = audio_start(file);
    assert_eq!(start == 0, id3v2_len(file).is_none());

    // Any frame header the parser accepts describes a real layer III frame.
    if let Some(h) = FrameHeader::parse(file) {
        // The shortest: MPEG-2 at 8 kb/s and 24 kHz.
        assert!((24..=MAX_FRAME_LEN).contains(&h.len), "{h:?}");
        assert!(
            [44_100, 48_000, 32_000, 22_050, 24_000, 16_000, 11_025, 12_000, 8_000]
                .contains(&h.sample_rate),
            "{h:?}"
        );
        assert!((8_000..=320_000).contains(&h.bitrate_bps), "{h:?}");
        assert_eq!(h.mpeg1(), h.samples_per_frame() == 1152);
    }

    // The VBR header read through a reader (prober, MP3 writer) is the one parsed from the
    // bytes at the audio start, and it belongs to a valid first frame.
    let from_slice = usize::try_from(start)
        .ok()
        .and_then(|s| file.get(s..))
        .and_then(parse_vbr_tag)
        // The reader also says where the frame starts; the slice parser sees only the frame.
        .map(|t| aiom4b::__fuzz::VbrTag {
            audio_start: start,
            ..t
        });
    assert_eq!(read_vbr_tag(file), from_slice);
    if let Some(t) = parse_vbr_tag(file) {
        assert_eq!(FrameHeader::parse(file), Some(t.frame));
        assert_eq!(t.is_vbr(), t.kind != VbrKind::Info);
        if let Some(l) = t.lame {
            assert!(l.encoder_delay < 4096 && l.padding < 4096);
        }
    }

    // The sniffer accepts nothing without at least one valid frame header in it.
    let verdict = sniff_mp3(file);
    if verdict.is_ok() {
        assert!(
            (0..file.len()).any(|i| FrameHeader::parse(&file[i..]).is_some()),
            "accepted without a frame header"
        );
    } else {
        assert!(!verdict.unwrap_err().is_empty());
    }
    assert_eq!(sniff_mp3(file), sniff_mp3(file), "deterministic");

    // How the bytes end as an Ogg file: only with a whole, CRC-checked page in them, which ends
    // inside the file; the last two pages' room at the end tells as much as the whole file.
    if let Some(e) = ogg_ending(file) {
        let (at, last) = (0..file.len())
            .filter_map(|i| parse_ogg_page(&file[i..]).map(|p| (i, p)))
            .last()
            .expect("an ending without a page");
        assert!(at + last.len <= file.len() && last.len >= 27, "{last:?}");
        match e {
            OggEnd::Complete => assert_ne!(last.header_type & 4, 0, "{last:?}"),
            OggEnd::CutInPage { partial: rest } | OggEnd::NoEndMark { trailing: rest } => {
                assert_eq!(last.header_type & 4, 0, "{last:?}");
                assert_eq!(at + last.len + rest, file.len(), "{e:?}");
            }
        }
        let from = file.len().saturating_sub(OGG_TAIL_LEN);
        if at >= from {
            assert_eq!(ogg_ending(&file[from..]), Some(e), "the tail alone tells");
        }
    }
});
