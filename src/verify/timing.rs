//! The edit-list and timescale arithmetic: media ticks, movie ticks and output samples.
//!
//! Three clocks meet in an MP4 audio track: the track's media timescale (`mdhd`: the sample
//! rate for AAC-LC, the AAC core's rate for HE-AAC), the movie timescale (`mvhd`, in which the
//! edit list's segment durations count) and the output sample rate the summary reports in.
//! Every conversion goes through `u128` and clamps, and sums saturate, so no value a file can
//! hold makes them overflow or panic; a hostile value gives a large length that `check`
//! reports, never a wrapped-around small one.
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

/// What a track's edit list (`elst`) shows of its media.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct EditMapping {
    /// Empty edits (media time -1) before the first edit that shows media, in movie ticks.
    pub(super) empty: u64,
    /// The first media time shown, in media ticks: the encoder priming the edit hides.
    pub(super) media_time: u64,
    /// The first shown segment's duration in movie ticks; `None` means "the rest of the
    /// media" (a duration of 0 in an unfragmented file, or no edit list at all).
    pub(super) segment: Option<u64>,
    /// How many edits show media (players honour only the first).
    pub(super) non_empty: usize,
}

/// The presentation mapping of a track's edit list; an empty list shows all media from 0.
pub(super) fn edit_mapping(edits: &[Edit]) -> EditMapping {
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
        Some(e) => EditMapping {
            empty,
            media_time: e.media_time as u64,
            // A segment duration of 0 in an unfragmented file means "the rest of the media".
            segment: (e.segment_duration > 0).then_some(e.segment_duration),
            non_empty,
        },
        None => EditMapping {
            empty,
            ..EditMapping::default()
        },
    }
}

/// The audio track's lengths in output samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PresentationLength {
    /// The edit's first media time: priming the player skips.
    pub(super) priming_samples: u64,
    /// The sum of `stts`: everything coded, priming included.
    pub(super) stts_samples: u64,
    /// The first shown edit segment, rounded up (it counts in coarser movie ticks).
    pub(super) edit_duration_samples: Option<u64>,
    /// `stts_samples - priming_samples`: the coded audio after the priming.
    pub(super) after_priming: u64,
    /// What a player presents: `after_priming`, or the edit's duration when the edit ends
    /// more than one movie tick earlier.
    pub(super) samples: u64,
    /// Whether `samples` was cut to the edit's duration.
    pub(super) clamped_to_edit: bool,
    /// The edit's duration and `after_priming` differ by more than one movie tick.
    pub(super) edit_disagrees: bool,
}

/// The presentation length of an audio track whose `stts` sums to `stts_media` media ticks,
/// at the output rate `rate`, given its edit list's `edit` mapping.
pub(super) fn presentation_length(
    stts_media: u64,
    media_timescale: u32,
    movie_timescale: u32,
    rate: u64,
    edit: &EditMapping,
) -> PresentationLength {
    let media_ts = media_timescale as u64;
    let to_samples = |t: u64| {
        if media_ts == rate {
            t
        } else {
            rescale(t, rate, media_ts)
        }
    };
    let priming_samples = to_samples(edit.media_time);
    let stts_samples = to_samples(stts_media);
    let edit_duration_samples = edit
        .segment
        .map(|d| rescale_up(d, rate, movie_timescale as u64));
    let after_priming = stts_samples.saturating_sub(priming_samples);
    // The edit duration is in movie ticks; only an edit shorter by more than one tick really
    // cuts the audio (a rounding difference must not clamp away real samples).
    let tick = rescale_up(1, rate, movie_timescale as u64);
    let (samples, clamped_to_edit) = match edit_duration_samples {
        Some(e) if after_priming > e.saturating_add(tick) => (e, true),
        _ => (after_priming, false),
    };
    let edit_disagrees = edit_duration_samples.is_some_and(|e| {
        e.saturating_add(tick) < after_priming || e > after_priming.saturating_add(tick)
    });
    PresentationLength {
        priming_samples,
        stts_samples,
        edit_duration_samples,
        after_priming,
        samples,
        clamped_to_edit,
        edit_disagrees,
    }
}

/// Where a sample at media time `t_media` of a track with timescale `track_timescale` and edit
/// mapping `edit` starts in the presentation: the leading empty edit (movie ticks) plus the
/// media time after the edit's start (a time before it counts as the start). Returns
/// (output samples at `rate`, seconds).
pub(super) fn presentation_start(
    t_media: u64,
    edit: &EditMapping,
    track_timescale: u32,
    movie_timescale: u32,
    rate: u64,
) -> (u64, f64) {
    let after = t_media.saturating_sub(edit.media_time);
    let secs = edit.empty as f64 / movie_timescale.max(1) as f64
        + after as f64 / track_timescale.max(1) as f64;
    let samples = rescale(edit.empty, rate, movie_timescale as u64).saturating_add(rescale(
        after,
        rate,
        track_timescale as u64,
    ));
    (samples, secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(segment_duration: u64, media_time: i64) -> Edit {
        Edit {
            segment_duration,
            media_time,
        }
    }

    /// FFmpeg's layout: AAC-LC at 44.1 kHz in a 44.1 kHz track, a 1 ms movie timescale, 1024
    /// samples of priming hidden by the edit.
    const RATE: u64 = 44_100;
    const FRAMES: u64 = 100;
    const PRIMING: i64 = 1024;

    fn lc(segment_ms: u64) -> PresentationLength {
        let m = edit_mapping(&[edit(segment_ms, PRIMING)]);
        presentation_length(FRAMES * 1024, 44_100, 1000, RATE, &m)
    }

    #[test]
    fn rescale_rounds_to_nearest_and_up() {
        assert_eq!(rescale(3, 1, 2), 2); // 1.5 → 2
        assert_eq!(rescale(5, 1, 4), 1); // 1.25 → 1
        assert_eq!(rescale(1000, 44_100, 48_000), 919); // 918.75
        assert_eq!(rescale_up(1, 44_100, 1000), 45); // 44.1
        assert_eq!(rescale_up(2000, 44_100, 1000), 88_200); // exact stays exact
        assert_eq!(rescale_up(5, 1, 4), 2);
    }

    #[test]
    fn rescale_never_overflows_or_divides_by_zero() {
        assert_eq!(rescale(u64::MAX, u64::MAX, 1), u64::MAX);
        assert_eq!(rescale(u64::MAX, u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(rescale(u64::MAX, 1, u64::MAX), 1);
        assert_eq!(rescale_up(u64::MAX, 2, 1), u64::MAX);
        assert_eq!(rescale_up(u64::MAX, u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(rescale(7, 3, 0), 0);
        assert_eq!(rescale_up(7, 3, 0), 0);
    }

    #[test]
    fn empty_edit_list_shows_all_media() {
        let m = edit_mapping(&[]);
        assert_eq!(m, EditMapping::default());
        let l = presentation_length(10_240, 44_100, 1000, RATE, &m);
        assert_eq!(l.priming_samples, 0);
        assert_eq!(l.stts_samples, 10_240);
        assert_eq!(l.edit_duration_samples, None);
        assert_eq!(l.samples, 10_240);
        assert!(!l.clamped_to_edit && !l.edit_disagrees);
    }

    #[test]
    fn edit_mapping_takes_the_first_shown_edit() {
        let m = edit_mapping(&[edit(500, -1), edit(1000, 2048), edit(300, -1), edit(100, 0)]);
        assert_eq!(
            m,
            EditMapping {
                empty: 500,
                media_time: 2048,
                segment: Some(1000),
                non_empty: 2,
            }
        );
        // Duration 0 means the rest of the media; only empty edits show nothing.
        assert_eq!(edit_mapping(&[edit(0, 1024)]).segment, None);
        let only_empty = edit_mapping(&[edit(7, -1), edit(8, -1)]);
        assert_eq!((only_empty.empty, only_empty.non_empty), (15, 0));
        assert_eq!(
            edit_mapping(&[edit(u64::MAX, -1), edit(u64::MAX, -1)]).empty,
            u64::MAX
        );
    }

    #[test]
    fn the_edits_media_time_hides_the_priming() {
        // 101 376 samples after the priming last 2298.78 ms: 2299 on the 1 ms movie clock.
        let l = lc(2299);
        assert_eq!(l.priming_samples, 1024);
        assert_eq!(l.stts_samples, 102_400);
        assert_eq!(l.after_priming, 101_376);
        assert_eq!(l.edit_duration_samples, Some(101_386)); // 2299 × 44.1, rounded up
        assert_eq!(l.samples, 101_376);
        assert!(!l.clamped_to_edit && !l.edit_disagrees);
    }

    #[test]
    fn an_edit_within_one_movie_tick_is_rounding_not_a_cut() {
        // 2298 ms is 34 samples short; one tick is 45 samples.
        let l = lc(2298);
        assert_eq!(l.edit_duration_samples, Some(101_342));
        assert_eq!(l.samples, 101_376);
        assert!(!l.clamped_to_edit && !l.edit_disagrees);
    }

    #[test]
    fn a_shorter_edit_cuts_the_audio() {
        let l = lc(2000);
        assert_eq!(l.edit_duration_samples, Some(88_200));
        assert_eq!(l.samples, 88_200);
        assert!(l.clamped_to_edit && l.edit_disagrees);
        // A longer edit cannot lengthen the audio, but it is a contradiction.
        let l = lc(3000);
        assert_eq!(l.samples, 101_376);
        assert!(!l.clamped_to_edit && l.edit_disagrees);
    }

    #[test]
    fn he_aac_counts_in_the_core_timescale() {
        // The track counts at the core's 22.05 kHz; the output is 44.1 kHz. The edit hides
        // 1056 core ticks of delay, i.e. 2112 output samples.
        let m = edit_mapping(&[edit(0, 1056)]);
        let l = presentation_length(50 * 1024, 22_050, 44_100, RATE, &m);
        assert_eq!(l.priming_samples, 2112);
        assert_eq!(l.stts_samples, 102_400);
        assert_eq!(l.samples, 100_288);
        // A movie timescale equal to the output rate: one tick is one sample.
        let m = edit_mapping(&[edit(100_287, 1056)]);
        let l = presentation_length(50 * 1024, 22_050, 44_100, RATE, &m);
        assert_eq!((l.samples, l.clamped_to_edit), (100_288, false));
        let m = edit_mapping(&[edit(100_286, 1056)]);
        let l = presentation_length(50 * 1024, 22_050, 44_100, RATE, &m);
        assert_eq!((l.samples, l.clamped_to_edit), (100_286, true));
    }

    #[test]
    fn odd_timescales_round_to_nearest() {
        // A 48 kHz media clock read at 44.1 kHz: 1000 ticks are 918.75 samples.
        let m = edit_mapping(&[edit(0, 1000)]);
        let l = presentation_length(48_000, 48_000, 600, RATE, &m);
        assert_eq!(l.priming_samples, 919);
        assert_eq!(l.stts_samples, 44_100);
        assert_eq!(l.samples, 44_100 - 919);
    }

    #[test]
    fn hostile_values_saturate_instead_of_wrapping() {
        // A 64-bit edit far longer than any audio: the edit does not clamp, it disagrees.
        let m = edit_mapping(&[edit(u64::MAX, 0)]);
        let l = presentation_length(1024, 44_100, 1, RATE, &m);
        assert_eq!(l.edit_duration_samples, Some(u64::MAX));
        assert_eq!(l.samples, 1024);
        assert!(!l.clamped_to_edit && l.edit_disagrees);
        // An stts sum far beyond the edit: clamped to the edit.
        let m = edit_mapping(&[edit(1000, 0)]);
        let l = presentation_length(u64::MAX, 1, 1000, RATE, &m);
        assert_eq!(l.stts_samples, u64::MAX);
        assert_eq!((l.samples, l.clamped_to_edit), (44_100, true));
        // Priming beyond the coded audio leaves nothing, not a wrapped huge length.
        let m = edit_mapping(&[edit(0, i64::MAX)]);
        let l = presentation_length(1024, 44_100, 1000, RATE, &m);
        assert_eq!(l.samples, 0);
        // No rate (no audio sample entry): everything is 0 samples.
        let l = presentation_length(1024, 44_100, 1000, 0, &edit_mapping(&[]));
        assert_eq!((l.stts_samples, l.samples), (0, 0));
    }

    #[test]
    fn chapter_starts_add_the_empty_edit_and_drop_the_media_offset() {
        // FFmpeg's chapter track: 1 ms media and movie timescales, no edit offset.
        let none = EditMapping::default();
        assert_eq!(
            presentation_start(1500, &none, 1000, 1000, RATE),
            (66_150, 1.5)
        );
        assert_eq!(presentation_start(1, &none, 1000, 1000, RATE).0, 44); // 44.1
                                                                          // 250 movie ticks of empty edit, the track's edit starting at media time 500.
        let m = EditMapping {
            empty: 250,
            media_time: 500,
            segment: None,
            non_empty: 1,
        };
        assert_eq!(
            presentation_start(1500, &m, 1000, 1000, RATE),
            (55_125, 1.25)
        );
        // A sample before the edit's start counts as the start.
        assert_eq!(
            presentation_start(100, &m, 1000, 1000, RATE),
            (11_025, 0.25)
        );
        // Movie (600) and track (1000) timescales differ: 300 movie ticks are 0.5 s.
        let m = EditMapping {
            empty: 300,
            ..EditMapping::default()
        };
        assert_eq!(presentation_start(1000, &m, 1000, 600, RATE), (66_150, 1.5));
        let huge = EditMapping {
            empty: u64::MAX,
            ..EditMapping::default()
        };
        assert_eq!(presentation_start(u64::MAX, &huge, 1, 1, RATE).0, u64::MAX);
    }
}
