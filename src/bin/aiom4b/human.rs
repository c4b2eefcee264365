//! Sizes and durations for people: the one place the CLI turns a byte count or a length in
//! seconds into text, so every table and summary uses the same units.
//!
//! Sizes are binary and labelled so (`1.43 MiB`), by indicatif's [`HumanBytes`]. Durations are
//! clock readings, not indicatif's `HumanDuration` ("89 minutes"): a book's length and its
//! chapter starts are compared by eye down a column, and a chapters file is written in the same
//! `HH:MM:SS.mmm` the library's [`aiom4b::chapters::format_millis`] produces.
use indicatif::HumanBytes;

/// A byte count in binary units: `512 B`, `1.43 MiB`, `2.00 GiB`.
pub fn bytes(n: u64) -> String {
    HumanBytes(n).to_string()
}

/// A time or length as `HH:MM:SS.mmm` (chapter starts, track and book lengths), rounded to the
/// millisecond; negative and non-finite values read as zero.
pub fn timestamp(secs: f64) -> String {
    aiom4b::chapters::format_millis(millis(secs))
}

/// A length to the second as `H:MM:SS` (totals in `stats` and job details).
pub fn clock(secs: f64) -> String {
    let s = (millis(secs) + 500) / 1000;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn millis(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        // `as` saturates: a length beyond u64 milliseconds reads as the largest.
        (secs * 1000.0).round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units_labelled_as_such() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.00 KiB");
        assert_eq!(bytes(1_500_000), "1.43 MiB");
        assert_eq!(bytes(3 << 30), "3.00 GiB");
    }

    #[test]
    fn timestamps_carry_into_the_next_unit() {
        assert_eq!(timestamp(0.0), "00:00:00.000");
        assert_eq!(timestamp(3723.5), "01:02:03.500");
        // 59.9996 s is one minute, not "00:00:60.000".
        assert_eq!(timestamp(59.9996), "00:01:00.000");
        assert_eq!(timestamp(-1.0), "00:00:00.000");
        assert_eq!(timestamp(f64::NAN), "00:00:00.000");
        assert_eq!(timestamp(100.0 * 3600.0), "100:00:00.000");
    }

    #[test]
    fn clock_rounds_to_the_second() {
        assert_eq!(clock(0.0), "0:00:00");
        assert_eq!(clock(59.5), "0:01:00");
        assert_eq!(clock(59.4), "0:00:59");
        assert_eq!(clock(3723.0), "1:02:03");
        assert_eq!(clock(-5.0), "0:00:00");
    }
}
