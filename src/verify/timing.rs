//! The edit-list and timescale arithmetic: media ticks, movie ticks and output samples.
use crate::mp4box::Edit;

/// `v * num / den` rounded to nearest, without overflow; 0 when `den` is 0.
pub(super) fn rescale(v: u64, num: u64, den: u64) -> u64 {
    if den == 0 {
        return 0;
    }
    ((v as u128 * num as u128 + den as u128 / 2) / den as u128).min(u64::MAX as u128) as u64
}

/// `v * num / den` rounded up.
pub(super) fn rescale_up(v: u64, num: u64, den: u64) -> u64 {
    if den == 0 {
        return 0;
    }
    (v as u128 * num as u128)
        .div_ceil(den as u128)
        .min(u64::MAX as u128) as u64
}

/// The presentation mapping of a track's edit list: (leading empty time in movie ticks,
/// first media time shown, its segment duration in movie ticks, number of non-empty edits).
pub(super) fn edit_mapping(edits: &[Edit]) -> (u64, u64, Option<u64>, usize) {
    let mut empty = 0u64;
    let mut first: Option<&Edit> = None;
    let mut non_empty = 0;
    for e in edits {
        if e.media_time < 0 {
            if first.is_none() {
                empty = empty.saturating_add(e.segment_duration);
            }
        } else {
            non_empty += 1;
            if first.is_none() {
                first = Some(e);
            }
        }
    }
    match first {
        Some(e) => (
            empty,
            e.media_time as u64,
            // A segment duration of 0 in an unfragmented file means "the rest of the media".
            (e.segment_duration > 0).then_some(e.segment_duration),
            non_empty,
        ),
        None => (empty, 0, None, 0),
    }
}
