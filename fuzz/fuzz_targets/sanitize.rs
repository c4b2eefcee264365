//! The sanitizers (`src/sanitize.rs`) on any text.
//!
//! `sanitize_file_stem`: never empty, never `.` or `..`, no `/`, `\` or NUL, no control
//! characters, no leading `-`/`.`/space and no trailing `.`/space, at most `MAX_STEM_BYTES`
//! (so the name with `.m4b` fits in 255 bytes), one path component, and idempotent.
//!
//! `clean_title_from_stem`: no control characters and no whitespace at either end (unless
//! nothing printable is left, when the stem comes back unchanged); a stem that does not start
//! with a digit only has its whitespace and underscores tidied.
#![no_main]
use aiom4b::sanitize::{clean_title_from_stem, sanitize_file_stem, MAX_STEM_BYTES};
use libfuzzer_sys::fuzz_target;
use unicode_normalization::UnicodeNormalization;

fuzz_target!(|s: &str| {
    let stem = sanitize_file_stem(s);
    assert!(!stem.is_empty());
    assert!(stem != "." && stem != "..", "{stem:?}");
    assert!(!stem.contains(['/', '\\', '\0']), "{stem:?}");
    assert!(!stem.chars().any(char::is_control), "{stem:?}");
    assert!(!stem.starts_with(['-', '.', ' ']), "{stem:?}");
    assert!(!stem.ends_with(['.', ' ']), "{stem:?}");
    assert!(stem.len() <= MAX_STEM_BYTES && MAX_STEM_BYTES + ".m4b".len() <= 255);
    assert_eq!(
        std::path::Path::new(&stem).components().count(),
        1,
        "{stem:?}"
    );
    assert_eq!(sanitize_file_stem(&stem), stem, "not idempotent for {s:?}");

    let title = clean_title_from_stem(s);
    let nfc: String = s.nfc().collect();
    let tidy = nfc
        .chars()
        .map(|c| if c == '_' || c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if tidy.is_empty() {
        assert_eq!(title, s);
    } else {
        assert!(!title.chars().any(char::is_control), "{title:?}");
        assert_eq!(title.trim(), title, "{title:?}");
        assert!(!title.is_empty());
    }
    if !nfc.trim_start().starts_with(|c: char| c.is_ascii_digit()) && !tidy.is_empty() {
        assert_eq!(title, tidy, "from {s:?}");
    }
});
