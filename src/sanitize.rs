//! Names that are safe to write and pleasant to read: output file stems from book titles
//! ([`sanitize_file_stem`]) and chapter titles from MP3 file stems ([`clean_title_from_stem`]).
//!
//! Titles come from ID3 tags and file names, i.e. from anyone: they may hold path separators,
//! characters Windows or macOS refuse, control and bidi characters that disguise a name
//! (`"evil\u{202E}4pm.exe"`), or be a reserved device name like `CON`. The output must be one
//! plain file name on every common file system.
use unicode_normalization::UnicodeNormalization;

/// Longest stem in UTF-8 bytes: file systems allow 255, and this leaves room for the
/// extension and a suffix such as ` (2)` that a caller may add to avoid a collision.
pub const MAX_STEM_BYTES: usize = 200;

/// The stem used when nothing usable is left of a title.
pub const FALLBACK_STEM: &str = "audiobook";

/// Turns a title into a file stem (no extension) that is valid on Linux, macOS and Windows.
///
/// NFC-normalizes; replaces `/` `\` `<` `>` `|` with `-`, `"` with `'`, `:` with ` -` before a
/// space (`Dune: Messiah` → `Dune - Messiah`) or `-` otherwise; drops `?` `*`, bidi controls and
/// invisible characters; turns control characters into spaces; collapses whitespace; trims
/// spaces and dots and removes leading dashes (a name starting with `-` reads as an option to
/// other tools); avoids Windows device names (`CON` → `CON_`); cuts to [`MAX_STEM_BYTES`] on a
/// character boundary; never returns an empty string ([`FALLBACK_STEM`]).
pub fn sanitize_file_stem(name: &str) -> String {
    let nfc: String = name.nfc().collect();
    let mut mapped = String::with_capacity(nfc.len());
    let mut chars = nfc.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' | '\\' | '<' | '>' | '|' => mapped.push('-'),
            '"' => mapped.push('\''),
            ':' => {
                if chars.peek().is_some_and(|n| n.is_whitespace()) {
                    mapped.push_str(" -");
                } else {
                    mapped.push('-');
                }
            }
            '?' | '*' => {}
            c if is_invisible(c) => {}
            c if c.is_control() => mapped.push(' '),
            c => mapped.push(c),
        }
    }
    // Dropping a character can bring a base letter and a combining mark together
    // (`e?\u{301}`): normalize again, or a second pass would change the name.
    let mapped: String = mapped.nfc().collect();
    let mut stem = trim_stem(&collapse_whitespace(&mapped)).to_string();
    cut_to_max(&mut stem);
    if stem.is_empty() {
        return FALLBACK_STEM.to_string();
    }
    let base_len = stem.find('.').unwrap_or(stem.len());
    if is_windows_reserved(stem[..base_len].trim_end()) {
        // Windows maps `CON`, `con.m4b`, `CON .x` to the console device: write `CON_` instead.
        stem.insert(stem[..base_len].trim_end().len(), '_');
        // `CON.` + 196 bytes has become one byte too long; the cut keeps the `CON_`.
        cut_to_max(&mut stem);
    }
    stem
}

/// Cuts `stem` to [`MAX_STEM_BYTES`] on a character boundary, then trims again: the cut may
/// leave a trailing space or dot, which Windows strips silently.
fn cut_to_max(stem: &mut String) {
    if stem.len() > MAX_STEM_BYTES {
        let mut cut = MAX_STEM_BYTES;
        while !stem.is_char_boundary(cut) {
            cut -= 1;
        }
        stem.truncate(cut);
        *stem = trim_stem(stem).to_string();
    }
}

/// Characters that render as nothing but change how a name reads or compares: bidi controls
/// (which can make `x\u{202E}bm4.exe` display as `xexe.4mb`), zero-width characters, the BOM,
/// the soft hyphen and invisible math operators.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200E}' | '\u{200F}' | '\u{061C}'
        | '\u{200B}'..='\u{200D}'
        | '\u{2060}'..='\u{2064}'
        | '\u{FEFF}' | '\u{00AD}' | '\u{180E}')
}

/// Every run of whitespace (including newlines and no-break spaces) becomes one space.
fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Trims spaces and dots at both ends and dashes at the start (repeatedly: `- .-x` → `x`).
fn trim_stem(s: &str) -> &str {
    let mut t = s;
    loop {
        let next = t
            .trim_matches(|c: char| c == '.' || c.is_whitespace())
            .trim_start_matches('-');
        if next.len() == t.len() {
            return t;
        }
        t = next;
    }
}

/// Windows device names, reserved with any extension and in any case.
fn is_windows_reserved(base: &str) -> bool {
    let upper = base.to_uppercase();
    if matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL") {
        return true;
    }
    // COM0–COM9 and LPT0–LPT9, including the superscript digits Windows also treats as devices.
    let mut chars = upper.chars();
    let prefix: String = chars.by_ref().take(3).collect();
    let rest: Vec<char> = chars.collect();
    (prefix == "COM" || prefix == "LPT")
        && rest.len() == 1
        && matches!(rest[0], '0'..='9' | '¹' | '²' | '³')
}

/// The longest prefix of `s` that is at most `max_bytes` UTF-8 bytes long and ends on a
/// character boundary (a cut never splits a character).
pub fn truncate_utf8(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut cut = max_bytes;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// Turns an MP3 file stem into a chapter title: `03 - The Storm` → `The Storm`.
///
/// Strips a leading track number when a separator follows it (`-`, `–`, `—`, `.`, `_`, `)`,
/// `:`, with or without spaces), turns underscores into spaces, collapses whitespace and
/// control characters, and trims. The number must look like a track number — at most three
/// digits, or zero-padded — so `2001 - A Space Odyssey` keeps its year; a number followed by
/// just a space (`03 The Storm`) is kept too, as it may be part of the title (`1984 Part 1`).
/// Names not starting with a number are left alone (`Chapter 01`). When stripping leaves
/// nothing (`01.`, `07 - `), the number is the title (`01`). Nothing else is trimmed: a closing
/// bracket or final dot belongs to the title (`Intro (Part 1)`, `The End.`). An empty or blank
/// stem comes back unchanged.
pub fn clean_title_from_stem(stem: &str) -> String {
    let nfc: String = stem.nfc().collect();
    let tidy = |s: &str| -> String {
        let spaced: String = s
            .chars()
            .map(|c| if c == '_' || c.is_control() { ' ' } else { c })
            .collect();
        collapse_whitespace(&spaced)
    };
    let trimmed = nfc.trim_start();
    if let Some(rest) = strip_track_number(trimmed) {
        let title = tidy(rest);
        if !title.is_empty() {
            return title;
        }
        // Nothing but a number and its separator: keep the number rather than return nothing.
        // Only here are trailing separators dropped; in a title, a closing `)` or a final `.`
        // (`Intro (Part 1)`, `The End.`) is part of the name.
        return trimmed.chars().take_while(char::is_ascii_digit).collect();
    }
    let whole = tidy(&nfc);
    if whole.is_empty() {
        stem.to_string()
    } else {
        whole
    }
}

/// The rest of `s` after a leading track number and its separator, if it has both.
fn strip_track_number(s: &str) -> Option<&str> {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || (digits > 3 && !s.starts_with('0')) {
        return None;
    }
    let after = &s[digits..];
    let sep_at = after.trim_start_matches([' ', '\t']);
    let mut chars = sep_at.chars();
    let sep = chars.next()?;
    let rest = chars.as_str();
    match sep {
        '-' | '–' | '—' | '_' | ')' | ':' => Some(rest),
        // `1.5 Interlude` is a decimal, not "track 1, title 5 Interlude".
        '.' if !rest.starts_with(|c: char| c.is_ascii_digit()) => Some(rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stem_keeps_a_plain_title() {
        assert_eq!(sanitize_file_stem("The Hobbit"), "The Hobbit");
        assert_eq!(
            sanitize_file_stem("Vol. 2 – Der Zauberberg"),
            "Vol. 2 – Der Zauberberg"
        );
    }

    #[test]
    fn stem_normalizes_to_nfc() {
        // "é" as e + combining acute becomes the single precomposed character.
        assert_eq!(sanitize_file_stem("Caf\u{65}\u{301}"), "Caf\u{e9}");
    }

    #[test]
    fn stem_replaces_path_separators() {
        assert_eq!(sanitize_file_stem("AC/DC"), "AC-DC");
        assert_eq!(sanitize_file_stem("a\\b"), "a-b");
        assert_eq!(sanitize_file_stem("../../etc/passwd"), "etc-passwd");
    }

    #[test]
    fn stem_replaces_characters_windows_refuses() {
        assert_eq!(sanitize_file_stem("Dune: Messiah"), "Dune - Messiah");
        assert_eq!(sanitize_file_stem("12:30"), "12-30");
        assert_eq!(sanitize_file_stem("Who Am I?"), "Who Am I");
        assert_eq!(sanitize_file_stem("A*B"), "AB");
        assert_eq!(sanitize_file_stem("say \"hi\""), "say 'hi'");
        assert_eq!(sanitize_file_stem("a<b>c|d"), "a-b-c-d");
        let s = sanitize_file_stem("<>:\"/\\|?* all");
        assert!(
            !s.contains(['<', '>', ':', '"', '/', '\\', '|', '?', '*']),
            "{s}"
        );
    }

    #[test]
    fn stem_turns_control_characters_into_spaces() {
        assert_eq!(sanitize_file_stem("line\none"), "line one");
        assert_eq!(sanitize_file_stem("tab\there"), "tab here");
        assert_eq!(sanitize_file_stem("bell\u{7}\u{1b}[31m"), "bell [31m");
        assert_eq!(sanitize_file_stem("c1\u{85}x"), "c1 x");
    }

    #[test]
    fn stem_drops_bidi_and_zero_width_characters() {
        assert_eq!(sanitize_file_stem("evil\u{202E}bm4.exe"), "evilbm4.exe");
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}', '\u{200B}', '\u{200C}',
            '\u{200D}', '\u{2060}', '\u{FEFF}',
        ] {
            assert_eq!(
                sanitize_file_stem(&format!("a{c}b")),
                "ab",
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn stem_collapses_whitespace() {
        assert_eq!(sanitize_file_stem("  a \t\u{a0} b   c  "), "a b c");
        assert_eq!(sanitize_file_stem("a\u{2028}b"), "a b");
    }

    #[test]
    fn stem_has_no_leading_dot_or_dash_and_no_trailing_dot() {
        assert_eq!(sanitize_file_stem(".hidden"), "hidden");
        assert_eq!(sanitize_file_stem("-rf"), "rf");
        assert_eq!(sanitize_file_stem("--help"), "help");
        assert_eq!(sanitize_file_stem(" - . -x"), "x");
        assert_eq!(sanitize_file_stem("The End..."), "The End");
        assert_eq!(sanitize_file_stem("a - b"), "a - b");
    }

    #[test]
    fn stem_is_never_empty() {
        for s in [
            "", "   ", "...", "..", ".", "???", "\u{200B}", "-", "\n", "/",
        ] {
            assert_eq!(sanitize_file_stem(s), FALLBACK_STEM, "{s:?}");
        }
    }

    #[test]
    fn stem_avoids_windows_device_names() {
        assert_eq!(sanitize_file_stem("CON"), "CON_");
        assert_eq!(sanitize_file_stem("nul"), "nul_");
        assert_eq!(sanitize_file_stem("Com1"), "Com1_");
        assert_eq!(sanitize_file_stem("LPT9"), "LPT9_");
        assert_eq!(sanitize_file_stem("COM²"), "COM²_");
        assert_eq!(sanitize_file_stem("aux.tar"), "aux_.tar");
        assert_eq!(sanitize_file_stem("CON ."), "CON_");
        // Only exact device names: these are ordinary.
        for s in ["CONAN", "Console", "COM10", "LPT", "NUL book", "prnt"] {
            assert_eq!(sanitize_file_stem(s), s);
        }
    }

    #[test]
    fn stem_is_cut_to_200_bytes_on_a_char_boundary() {
        let ascii = "a".repeat(300);
        assert_eq!(sanitize_file_stem(&ascii).len(), MAX_STEM_BYTES);
        // 'é' is 2 bytes, '€' 3 and '𝄞' 4: no cut may split one.
        for unit in ["é", "€", "𝄞", "a€"] {
            let long = unit.repeat(150);
            let s = sanitize_file_stem(&long);
            assert!(
                s.len() <= MAX_STEM_BYTES && s.len() > MAX_STEM_BYTES - 4,
                "{unit}"
            );
            assert!(long.starts_with(&s));
        }
        // A cut landing after a space must not leave it trailing.
        let spaced = format!("{} {}", "a".repeat(199), "b".repeat(50));
        assert_eq!(sanitize_file_stem(&spaced), "a".repeat(199));
    }

    #[test]
    fn stem_is_a_fixed_point_when_a_dropped_character_joined_a_letter_and_its_accent() {
        // Found by the property test: `?` kept `e` and U+0301 apart through normalization.
        let once = sanitize_file_stem("CONe?\u{301}");
        assert_eq!(once, "CON\u{e9}");
        assert_eq!(sanitize_file_stem(&once), once);
    }

    #[test]
    fn stem_of_a_long_device_name_stays_within_the_limit() {
        // `CON.` + 196 bytes is exactly the limit; `CON_` made it one byte longer.
        let long = format!("CON.{}", "x".repeat(MAX_STEM_BYTES - 4));
        let stem = sanitize_file_stem(&long);
        assert!(stem.len() <= MAX_STEM_BYTES, "{} bytes", stem.len());
        assert!(stem.starts_with("CON_."), "{stem}");
        assert_eq!(sanitize_file_stem(&stem), stem);
    }

    #[test]
    fn stem_of_hostile_names_is_one_plain_component() {
        for s in [
            "concat:x",
            "file:x",
            "$(rm -rf ~)",
            "`id`",
            "it's \"quoted\"",
            "a\nb\rc",
            "💥 emoji",
        ] {
            let out = sanitize_file_stem(s);
            assert!(!out.is_empty());
            assert!(!out.contains(['/', '\\', ':', '\n', '\r']), "{out:?}");
            assert!(!out.starts_with(['-', '.', ' ']), "{out:?}");
            assert_eq!(std::path::Path::new(&out).components().count(), 1);
        }
    }

    #[test]
    fn truncate_utf8_cuts_on_a_char_boundary() {
        assert_eq!(truncate_utf8("abc", 3), "abc");
        assert_eq!(truncate_utf8("abc", 2), "ab");
        assert_eq!(truncate_utf8("", 0), "");
        // 'é' is 2 bytes, '€' 3, '𝄞' 4.
        assert_eq!(truncate_utf8("aé", 2), "a");
        assert_eq!(truncate_utf8("€€", 5), "€");
        assert_eq!(truncate_utf8("𝄞𝄞", 7), "𝄞");
        assert_eq!(truncate_utf8("𝄞", 3), "");
    }

    #[test]
    fn title_strips_a_leading_track_number() {
        assert_eq!(clean_title_from_stem("03 - The Storm"), "The Storm");
        assert_eq!(clean_title_from_stem("03-The Storm"), "The Storm");
        assert_eq!(clean_title_from_stem("3. The Storm"), "The Storm");
        assert_eq!(clean_title_from_stem("003) The Storm"), "The Storm");
        assert_eq!(clean_title_from_stem("12 – Finale"), "Finale");
        assert_eq!(clean_title_from_stem("12: Finale"), "Finale");
        assert_eq!(clean_title_from_stem("0001 - Long Book"), "Long Book");
    }

    #[test]
    fn title_turns_underscores_into_spaces() {
        assert_eq!(clean_title_from_stem("01_the_storm"), "the storm");
        assert_eq!(clean_title_from_stem("the__storm_"), "the storm");
    }

    #[test]
    fn title_keeps_names_that_do_not_start_with_a_track_number() {
        assert_eq!(clean_title_from_stem("Chapter 01"), "Chapter 01");
        assert_eq!(clean_title_from_stem("Prologue"), "Prologue");
        assert_eq!(clean_title_from_stem("03 The Storm"), "03 The Storm");
        assert_eq!(clean_title_from_stem("1984 Part 1"), "1984 Part 1");
        assert_eq!(
            clean_title_from_stem("2001 - A Space Odyssey"),
            "2001 - A Space Odyssey"
        );
        assert_eq!(clean_title_from_stem("1.5 Interlude"), "1.5 Interlude");
    }

    #[test]
    fn title_keeps_its_last_character_when_there_is_no_track_number() {
        // Issue 10: `Intro (Part 1).mp3` became "Intro (Part 1".
        assert_eq!(clean_title_from_stem("Intro (Part 1)"), "Intro (Part 1)");
        assert_eq!(clean_title_from_stem("The End."), "The End.");
        assert_eq!(clean_title_from_stem("Why -"), "Why -");
        assert_eq!(clean_title_from_stem("1984."), "1984.");
        assert_eq!(
            clean_title_from_stem("03 - Intro (Part 1)"),
            "Intro (Part 1)"
        );
    }

    #[test]
    fn title_is_never_emptied() {
        assert_eq!(clean_title_from_stem("01."), "01");
        assert_eq!(clean_title_from_stem("07 - "), "07");
        assert_eq!(clean_title_from_stem("07"), "07");
        assert_eq!(clean_title_from_stem("01_"), "01");
        assert_eq!(clean_title_from_stem(""), "");
    }

    #[test]
    fn title_keeps_trailing_brackets_and_dots() {
        for (stem, want) in [
            ("Intro (Part 1)", "Intro (Part 1)"),
            ("01 - Intro (Part 1)", "Intro (Part 1)"),
            ("01. Intro (Part 1)", "Intro (Part 1)"),
            ("The End.", "The End."),
            ("03 - The End.", "The End."),
            ("To be continued...", "To be continued..."),
            ("12 - To be continued...", "To be continued..."),
            ("Q&A:", "Q&A:"),
            ("(Untitled)", "(Untitled)"),
            ("07_Epilogue_(Bonus)", "Epilogue (Bonus)"),
            ("1984 (Chapter 3).", "1984 (Chapter 3)."),
        ] {
            assert_eq!(clean_title_from_stem(stem), want, "{stem:?}");
        }
    }

    #[test]
    fn title_collapses_whitespace_and_control_characters() {
        assert_eq!(
            clean_title_from_stem("  02 -   The \n Storm  "),
            "The Storm"
        );
        assert_eq!(clean_title_from_stem("02 - a\tb"), "a b");
    }

    // -- properties ---------------------------------------------------------------------------

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use unicode_normalization::UnicodeNormalization;

        /// The characters that break file names or make them lie, then anything at all.
        fn tricky_char() -> impl Strategy<Value = char> {
            prop_oneof![
                prop::sample::select(vec![
                    '/', '\\', '\0', '.', '-', ' ', ':', '"', '?', '*', '<', '>', '|', '\n', '\t',
                    '\u{85}', '\u{a0}', '\u{2028}', '\u{202E}', '\u{200B}', '\u{FEFF}', '\u{301}',
                    '\u{308}', '\u{958}', 'e', 'C', 'O', 'N', 'L', 'P', 'T', '1', '¹', 'é', '€',
                    '𝄞', '_', '(', ')',
                ]),
                any::<char>(),
            ]
        }

        /// Short strings of tricky characters, long ones (past the byte limit), and any text.
        fn title() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::collection::vec(tricky_char(), 0..12).prop_map(String::from_iter),
                prop::collection::vec(tricky_char(), 150..260).prop_map(String::from_iter),
                (
                    prop::sample::select(vec!["CON", "con", "Aux", "NUL", "COM1", "lpt²"]),
                    prop::collection::vec(tricky_char(), 0..260),
                )
                    .prop_map(|(dev, rest)| format!("{dev}{}", String::from_iter(rest))),
                any::<String>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            /// A stem is one safe file name: never empty, never `.`/`..`, no `/`, `\` or NUL, no
            /// control characters, at most MAX_STEM_BYTES (so `.m4b` and a ` (n)` suffix fit in
            /// 255 bytes), and sanitizing it again changes nothing.
            #[test]
            fn stem_is_one_safe_name_and_a_fixed_point(s in title()) {
                let stem = sanitize_file_stem(&s);
                prop_assert!(!stem.is_empty());
                prop_assert!(stem != "." && stem != "..");
                prop_assert!(!stem.contains(['/', '\\', '\0']), "{:?}", stem);
                prop_assert!(!stem.chars().any(char::is_control), "{:?}", stem);
                prop_assert!(!stem.starts_with(['-', '.', ' ']), "{:?}", stem);
                prop_assert!(!stem.ends_with(['.', ' ']), "{:?}", stem);
                prop_assert!(stem.len() <= MAX_STEM_BYTES, "{} bytes", stem.len());
                prop_assert_eq!(std::path::Path::new(&stem).components().count(), 1);
                prop_assert_eq!(sanitize_file_stem(&stem), stem);
            }

            /// A chapter title has no control characters and no surrounding whitespace; a stem
            /// that does not start with a track number keeps all its text, `(Part 1)` and a final
            /// `.` included (only whitespace and underscores are tidied).
            #[test]
            fn title_keeps_the_text_of_a_name_without_a_track_number(s in title()) {
                let title = clean_title_from_stem(&s);
                let nfc: String = s.nfc().collect();
                let tidy = nfc
                    .chars()
                    .map(|c| if c == '_' || c.is_control() { ' ' } else { c })
                    .collect::<String>()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                if tidy.is_empty() {
                    prop_assert_eq!(&title, &s);
                } else {
                    prop_assert!(!title.chars().any(char::is_control), "{:?}", title);
                    prop_assert_eq!(title.trim(), title.as_str());
                    prop_assert!(!title.is_empty());
                    if !nfc.trim_start().starts_with(|c: char| c.is_ascii_digit()) {
                        prop_assert_eq!(&title, &tidy);
                    }
                }
            }
        }
    }
}
