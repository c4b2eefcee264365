//! File-name sanitizing.
//!
//! TEMPORARY (workflow branch only): a minimal stand-in so the workflow builds and its tests
//! run. The real sanitizer is written on another branch with the same signature and REPLACES
//! this whole file at merge; do not extend it here.

/// Turns arbitrary text into a safe file stem (no extension): no path separators, control
/// characters or characters Windows forbids, no leading/trailing dots or spaces, at most 200
/// bytes, never empty.
pub fn sanitize_file_stem(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    let mut out = mapped
        .trim_matches(|c: char| c == '.' || c.is_whitespace())
        .to_string();
    while out.len() > 200 {
        out.pop();
    }
    if out.is_empty() {
        "untitled".to_string()
    } else {
        out
    }
}
