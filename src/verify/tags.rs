//! iTunes-style tags (`moov/udta/meta/ilst`) and the `covr` cover into the summary.
use super::summary::{CoverSummary, M4bSummary};
use crate::mp4box::{self, DataValue, ItemKey};

pub(super) fn text_value(v: &DataValue<'_>) -> Option<String> {
    match v.type_code {
        1 | 0 => Some(String::from_utf8_lossy(v.payload).into_owned()),
        2 => {
            let units: Vec<u16> = v
                .payload
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

pub(super) fn int_value(v: &DataValue<'_>) -> Option<i64> {
    let p = v.payload;
    match p.len() {
        1 => Some(p[0] as i8 as i64),
        2 => Some(i16::from_be_bytes([p[0], p[1]]) as i64),
        4 => Some(i32::from_be_bytes([p[0], p[1], p[2], p[3]]) as i64),
        8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(p);
            Some(i64::from_be_bytes(a))
        }
        _ => None,
    }
}

pub(super) fn image_format(v: &DataValue<'_>) -> String {
    match v.payload {
        [0xFF, 0xD8, 0xFF, ..] => "jpeg".into(),
        [0x89, b'P', b'N', b'G', ..] => "png".into(),
        [b'B', b'M', ..] => "bmp".into(),
        _ => match v.type_code {
            13 => "jpeg (by type code, bad data)".into(),
            14 => "png (by type code, bad data)".into(),
            n => format!("unknown (type {n})"),
        },
    }
}

pub(super) fn read_tags(items: &[mp4box::Item<'_>], s: &mut M4bSummary) {
    let t = &mut s.tags;
    let mut mvn = None;
    let mut mvi = None;
    for item in items {
        t.keys.push(item.key.to_string());
        let first = item.values.first();
        let text = first.and_then(text_value);
        match &item.key {
            ItemKey::Code(k) => match k {
                b"\xa9nam" => t.title = text,
                b"\xa9ART" => t.artist = text,
                b"aART" => t.album_artist = text,
                b"\xa9alb" => t.album = text,
                b"\xa9wrt" => t.composer = text,
                b"\xa9gen" => t.genre = text,
                b"\xa9day" => t.date = text,
                b"\xa9cmt" => t.comment = text,
                b"desc" => t.description = text,
                b"ldes" => t.long_description = text,
                b"\xa9nrt" => t.narrator = text,
                b"\xa9too" => t.encoder = text,
                b"\xa9mvn" => mvn = text,
                b"\xa9mvi" => mvi = first.and_then(int_value).map(|n| n.to_string()),
                b"stik" => t.media_type = first.and_then(int_value).map(|n| n as u8),
                b"covr" => {
                    if let Some(v) = first {
                        s.cover = Some(CoverSummary {
                            format: image_format(v),
                            bytes: v.payload.len() as u64,
                            in_covr: true,
                            count: item.values.len(),
                        });
                    }
                }
                _ => {}
            },
            ItemKey::Freeform { name, .. } => match name.to_ascii_uppercase().as_str() {
                "SERIES" => t.series = text,
                "SERIES-PART" => t.series_part = text,
                _ => {}
            },
        }
    }
    if t.series.is_none() {
        t.series = mvn;
    }
    if t.series_part.is_none() {
        t.series_part = mvi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(type_code: u32, payload: &[u8]) -> DataValue<'_> {
        DataValue { type_code, payload }
    }

    #[test]
    fn text_values_by_type_code() {
        assert_eq!(
            text_value(&v(1, "Dûne".as_bytes())).as_deref(),
            Some("Dûne")
        );
        assert_eq!(text_value(&v(0, b"x")).as_deref(), Some("x"));
        assert_eq!(
            text_value(&v(2, &[0, b'h', 0, b'i'])).as_deref(),
            Some("hi")
        );
        assert_eq!(text_value(&v(21, &[1])), None);
    }

    #[test]
    fn int_values_are_big_endian_and_signed_by_width() {
        assert_eq!(int_value(&v(21, &[2])), Some(2));
        assert_eq!(int_value(&v(21, &[0xFF])), Some(-1));
        assert_eq!(int_value(&v(21, &[0x01, 0x00])), Some(256));
        assert_eq!(int_value(&v(21, &[0, 0, 0x01, 0x00])), Some(256));
        assert_eq!(int_value(&v(21, &[0, 0, 0, 0, 0, 0, 0, 7])), Some(7));
        assert_eq!(int_value(&v(21, &[1, 2, 3])), None);
        assert_eq!(int_value(&v(21, &[])), None);
    }

    #[test]
    fn image_format_trusts_the_bytes_before_the_type_code() {
        assert_eq!(image_format(&v(14, &[0xFF, 0xD8, 0xFF, 0xE0])), "jpeg");
        assert_eq!(image_format(&v(13, b"\x89PNG\r\n")), "png");
        assert_eq!(image_format(&v(0, b"BM..")), "bmp");
        assert_eq!(
            image_format(&v(13, b"junk")),
            "jpeg (by type code, bad data)"
        );
        assert_eq!(image_format(&v(99, b"")), "unknown (type 99)");
    }
}
