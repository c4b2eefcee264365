//! The output-name template (`src/workflow/naming.rs`): `check_template` on any text, and
//! `render` with any metadata. Input: fields separated by the byte 0xFF (never part of UTF-8):
//! template, title, album, author, narrator, series, year, folder, timestamp; a missing field
//! is `None` (empty for the folder and timestamp).
//!
//! A rendered name is always one usable file name — never empty, never `.` or `..`, no `/` or
//! NUL, at most 255 bytes with the `.m4b` extension — and a fixed point of the sanitizer.
//! `render` must not panic on templates `check_template` refuses either.
#![no_main]
use aiom4b::sanitize::sanitize_file_stem;
use aiom4b::workflow::naming::{check_template, render};
use aiom4b::BookMetadata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut fields = data
        .split(|&b| b == 0xFF)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let template = fields.next().unwrap_or_default();
    let mut next = || fields.next();
    let meta = BookMetadata {
        title: next(),
        album: next(),
        author: next(),
        narrator: next(),
        series: next(),
        year: next(),
        ..BookMetadata::default()
    };
    let folder = next().unwrap_or_default();
    let timestamp = next().unwrap_or_default();

    if let Err(e) = check_template(&template) {
        assert!(!e.is_empty());
    }
    let name = render(&template, &meta, &folder, &timestamp);
    assert!(!name.is_empty());
    assert!(name != "." && name != "..", "{name:?}");
    assert!(!name.contains(['/', '\0']), "{name:?}");
    assert!(name.len() + ".m4b".len() <= 255, "{} bytes", name.len());
    assert_eq!(sanitize_file_stem(&name), name, "not a fixed point");
});
