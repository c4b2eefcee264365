//! Book order: natural order of names and paths, disc folders, and the ID3 tag order.
//!
//! [`natural_cmp`] and the disc-folder rule ([`disc_folder`]) are the one implementation of
//! these rules in the crate: the scan orders files with them and `workflow::folders` uses the
//! same rule to recognise a book made of disc folders.
use crate::model::ScannedFile;
use crate::options::Order;
use std::cmp::Ordering;
use std::ffi::OsStr;
use std::path::Path;
use unicode_normalization::UnicodeNormalization;

/// Sorts `items` into book order by their path relative to the scanned folder.
pub(super) fn sort_by_book_order<T>(items: &mut [T], order: Order, rel: impl Fn(&T) -> &Path) {
    match order {
        // Path's own order is component-wise byte order, i.e. code-point order per component
        // for UTF-8 names (so `a/…` sorts before `a b/…` regardless of '/' vs ' ').
        Order::Alpha => items.sort_by(|a, b| rel(a).cmp(rel(b))),
        // Tags are read later by probe; until then the natural order is the answer and the
        // tie-break for `order_by_tags`.
        Order::Natural | Order::Tags => {
            items.sort_by_cached_key(|c| PathKey::new(rel(c)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Natural order

/// One run of a name: digits compare by value, text case-insensitively. `Num` sorts before
/// `Text` at the same position (`1.mp3` before `a.mp3`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Chunk {
    Num(Number),
    Text(String),
}

/// An arbitrary-length decimal number without its leading zeros (`""` is zero).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Number(String);

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        // Without leading zeros, a longer digit string is a larger number; equal lengths
        // compare digit by digit. No parsing, so 40-digit "numbers" in names cannot overflow.
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The natural-order key of one name: the runs, plus each number's count of leading zeros as
/// a secondary key (so `01` and `1` are distinct but adjacent).
#[derive(Debug, Clone, Default)]
struct NameKey {
    chunks: Vec<Chunk>,
    zeros: Vec<usize>,
}

impl NameKey {
    fn new(name: &str) -> NameKey {
        let mut key = NameKey::default();
        key.push_runs(&fold(name));
        key
    }

    /// Appends the runs of an already folded string.
    fn push_runs(&mut self, folded: &str) {
        let mut rest = folded;
        while let Some(first) = rest.chars().next() {
            let is_digit = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != is_digit)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(end);
            if is_digit {
                let stripped = run.trim_start_matches('0');
                self.zeros.push(run.len() - stripped.len());
                self.chunks.push(Chunk::Num(Number(stripped.to_string())));
            } else {
                self.chunks.push(Chunk::Text(run.to_string()));
            }
            rest = tail;
        }
    }

    /// The key of a folder name: a disc folder's spelling is replaced by a canonical one so all
    /// disc folders order by number (`CD 2` < `cd10` < `Disc 11 - Finale`).
    fn new_dir(name: &str) -> NameKey {
        let folded = fold(name);
        let mut key = NameKey::default();
        match disc_folder(&folded) {
            Some((word, number, rest)) => {
                key.chunks.push(Chunk::Text(word.to_string()));
                key.push_runs(number);
                key.push_runs(rest);
            }
            None => key.push_runs(&folded),
        }
        key
    }
}

/// Compatibility-normalizes (full-width digits become ASCII, ligatures split) and lowercases,
/// so visually equal names compare equal before the byte tie-break.
fn fold(s: &str) -> String {
    s.nfkc().collect::<String>().to_lowercase()
}

/// The words that start a disc-folder name, each with the spelling it orders as. Spellings of
/// one word share a canonical form (`CD 2` and `Disk 3` order as `disc 2`, `disc 3`); `volume`
/// comes before its prefix `vol` so the longer word wins.
const DISC_WORDS: [(&str, &str); 9] = [
    ("disc", "disc "),
    ("disk", "disc "),
    ("cd", "disc "),
    ("part", "part "),
    ("teil", "teil "),
    ("volume", "volume "),
    ("vol", "vol "),
    ("side", "side "),
    ("tape", "tape "),
];

/// Recognizes a folded disc-folder name: a [`DISC_WORDS`] word, optional separators
/// (` `, `_`, `-`, `.`, `#`), then a number. Returns the canonical word, the digits and the
/// rest of the name.
fn disc_folder(folded: &str) -> Option<(&'static str, &str, &str)> {
    let (canonical, after) = DISC_WORDS
        .iter()
        .find_map(|(w, canon)| folded.strip_prefix(w).map(|a| (*canon, a)))?;
    let after = after.trim_start_matches([' ', '_', '-', '.', '#']);
    let digits_end = after
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after.len());
    if digits_end == 0 {
        return None;
    }
    let (digits, rest) = after.split_at(digits_end);
    Some((canonical, digits, rest))
}

/// True when a folder `name` looks like one disc (or part) of a book: `CD1`, `cd 02`,
/// `Disc 3`, `Disk-4`, `Part 1`, `Teil 2`, `Vol. 1`, `CD1 - The Start`, or a bare number `01`.
///
/// Stricter than the ordering rule in one way: letters glued to the number (`CD1a`) or a
/// number followed by text without a separator (`1984 Orwell`) make it a title, not a disc.
/// Used by `workflow::folders` to tell a book made of disc folders from a shelf of books.
pub fn is_disc_folder(name: &str) -> bool {
    let folded = fold(name.trim());
    match disc_folder(&folded) {
        Some((_, _, rest)) => !rest.starts_with(|c: char| c.is_alphanumeric()),
        None => !folded.is_empty() && folded.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Compares two names in natural order: `track2` < `Track10`, `a` = `A` up to the final
/// tie-break.
///
/// Names are split into runs of ASCII digits and of other characters (after NFKC, so
/// full-width digits count). Digit runs compare by value at any length; text runs compare
/// case-insensitively (Unicode lowercasing after NFKC); a number sorts before text at the same
/// position. When that finds no difference, numbers with fewer leading zeros come first (`1`
/// before `01`), and finally the raw bytes decide, so the order is total and deterministic.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (ka, kb) = (NameKey::new(a), NameKey::new(b));
    ka.chunks
        .cmp(&kb.chunks)
        .then_with(|| ka.zeros.cmp(&kb.zeros))
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// The book-order key of a relative path: components compared in turn, a file before a
/// folder at the same level, then leading zeros, then raw bytes (a total order).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PathKey {
    /// Per component: (is a folder, runs). `false < true` puts files before folders.
    components: Vec<(bool, Vec<Chunk>)>,
    zeros: Vec<usize>,
    raw: Vec<u8>,
}

impl PathKey {
    fn new(rel: &Path) -> PathKey {
        let parts: Vec<&OsStr> = rel.iter().collect();
        let mut components = Vec::with_capacity(parts.len());
        let mut zeros = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            // Non-UTF-8 names order by their lossy text; the raw bytes still break ties.
            let name = part.to_string_lossy();
            let is_dir = i + 1 < parts.len();
            let key = if is_dir {
                NameKey::new_dir(&name)
            } else {
                NameKey::new(&name)
            };
            zeros.extend(key.zeros);
            components.push((is_dir, key.chunks));
        }
        PathKey {
            components,
            zeros,
            raw: rel.as_os_str().as_encoded_bytes().to_vec(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tag order

/// The permutation that puts `files` in ID3 disc/track order, or `None` when the tags cannot
/// be trusted with the order.
///
/// `keys[i]` is `(disc, track)` of `files[i]`. The result lists indices into `files` in the new
/// order; apply it to every vector aligned with `files`. Tags are used only when every file has
/// a track number and no two files of one input folder share a (disc, track) pair — track
/// numbers that restart in each disc folder without disc tags would otherwise interleave the
/// discs. A missing disc number counts as disc 1. Input folders keep their order; the current
/// (natural) order breaks no ties since pairs are unique, and is the fallback.
pub fn tag_order(files: &[ScannedFile], keys: &[(Option<u32>, Option<u32>)]) -> Option<Vec<usize>> {
    if files.len() != keys.len() || files.is_empty() {
        return None;
    }
    let mut sort_keys = Vec::with_capacity(files.len());
    for (i, (file, (disc, track))) in files.iter().zip(keys).enumerate() {
        let track = (*track)?;
        sort_keys.push((file.folder_index, disc.unwrap_or(1), track, i));
    }
    sort_keys.sort_unstable();
    if sort_keys
        .windows(2)
        .any(|w| (w[0].0, w[0].1, w[0].2) == (w[1].0, w[1].1, w[1].2))
    {
        return None;
    }
    Some(sort_keys.into_iter().map(|k| k.3).collect())
}

/// Reorders `files` by ID3 disc/track numbers (see [`tag_order`]); returns whether the tags
/// were used. When they are not, `files` is left untouched (natural order).
///
/// `keys[i]` belongs to `files[i]` as passed in; callers holding other vectors aligned with
/// `files` should use [`tag_order`] and apply the permutation to all of them.
pub fn order_by_tags(files: &mut [ScannedFile], keys: &[(Option<u32>, Option<u32>)]) -> bool {
    let Some(perm) = tag_order(files, keys) else {
        return false;
    };
    let reordered: Vec<ScannedFile> = perm.iter().map(|&i| files[i].clone()).collect();
    files.clone_from_slice(&reordered);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sort_natural(names: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort_by(|a, b| natural_cmp(a, b));
        v
    }

    // -- natural_cmp --------------------------------------------------------------------------

    #[test]
    fn natural_numbers_compare_by_value() {
        assert_eq!(natural_cmp("2", "10"), Ordering::Less);
        assert_eq!(natural_cmp("track2", "Track10"), Ordering::Less);
        assert_eq!(natural_cmp("a9b", "a10a"), Ordering::Less);
        assert_eq!(natural_cmp("010", "9"), Ordering::Greater);
        assert_eq!(
            sort_natural(&["10.mp3", "1.mp3", "2.mp3", "Chapter 11", "Chapter 2"]),
            ["1.mp3", "2.mp3", "10.mp3", "Chapter 2", "Chapter 11"]
        );
    }

    #[test]
    fn natural_numbers_have_no_length_limit() {
        let big = format!("1{}", "0".repeat(40));
        let smaller = "9".repeat(40);
        assert_eq!(natural_cmp(&big, &smaller), Ordering::Greater);
        assert_eq!(
            natural_cmp(&format!("x{big}"), &format!("x{big}1")),
            Ordering::Less
        );
    }

    #[test]
    fn natural_leading_zeros_only_break_ties() {
        assert_eq!(natural_cmp("01", "2"), Ordering::Less);
        assert_eq!(natural_cmp("1", "01"), Ordering::Less);
        assert_eq!(natural_cmp("01", "001"), Ordering::Less);
        assert_eq!(
            sort_natural(&["001", "1", "01", "0", "00"]),
            ["0", "00", "1", "01", "001"]
        );
        // Zeros decide only after the whole name compared equal by value.
        assert_eq!(natural_cmp("01b", "1a"), Ordering::Greater);
    }

    #[test]
    fn natural_text_is_case_insensitive_with_a_byte_tie_break() {
        assert_eq!(natural_cmp("a", "B"), Ordering::Less);
        assert_eq!(natural_cmp("B", "a"), Ordering::Greater);
        assert_eq!(natural_cmp("A", "a"), Ordering::Less); // b'A' < b'a'
        assert_eq!(natural_cmp("a", "a"), Ordering::Equal);
        // Unicode lowercasing: É and é are the same letter.
        assert_eq!(natural_cmp("Éa", "éb"), Ordering::Less);
        assert_eq!(natural_cmp("ÄRGER 2", "ärger 10"), Ordering::Less);
    }

    #[test]
    fn natural_normalizes_compatibility_forms() {
        // Full-width digits are digits; the ligature "ﬁ" is "fi".
        assert_eq!(natural_cmp("２", "10"), Ordering::Less);
        assert_eq!(natural_cmp("ﬁle 2", "file 10"), Ordering::Less);
        // NFC vs NFD spellings of "é" are equal up to the byte tie-break.
        assert_ne!(natural_cmp("e\u{301}1", "\u{e9}1"), Ordering::Equal);
        assert_eq!(natural_cmp("e\u{301}2", "\u{e9}10"), Ordering::Less);
    }

    #[test]
    fn natural_numbers_sort_before_text() {
        assert_eq!(natural_cmp("1", "a"), Ordering::Less);
        assert_eq!(natural_cmp("", "a"), Ordering::Less);
        assert_eq!(natural_cmp("", ""), Ordering::Equal);
    }

    #[test]
    fn natural_order_is_total_and_consistent() {
        let names = [
            "",
            "0",
            "00",
            "1",
            "01",
            "a",
            "A",
            "a1",
            "a01",
            "A1",
            "a 1",
            "a10",
            "a2",
            "b",
            "B2",
            "é",
            "E\u{301}",
            "２",
            "x.mp3",
            "X.MP3",
            "10x",
            "x10",
            "ﬁ",
            "fi",
            "\u{1F4A5}",
        ];
        for a in names {
            for b in names {
                let ab = natural_cmp(a, b);
                assert_eq!(ab, natural_cmp(b, a).reverse(), "{a:?} {b:?}");
                assert_eq!(ab == Ordering::Equal, a == b, "{a:?} {b:?}");
                for c in names {
                    if ab != Ordering::Greater && natural_cmp(b, c) != Ordering::Greater {
                        assert_ne!(natural_cmp(a, c), Ordering::Greater, "{a:?} {b:?} {c:?}");
                    }
                }
            }
        }
        let forward = sort_natural(&names);
        let mut reversed = names;
        reversed.reverse();
        assert_eq!(sort_natural(&reversed), forward);
    }

    // -- order_by_tags ------------------------------------------------------------------------

    fn files(specs: &[(usize, &str)]) -> Vec<ScannedFile> {
        specs
            .iter()
            .map(|&(folder_index, rel)| ScannedFile {
                path: PathBuf::from("/book").join(rel),
                rel_path: PathBuf::from(rel),
                size_bytes: 1,
                folder_index,
            })
            .collect()
    }

    fn order_of(f: &[ScannedFile]) -> Vec<&str> {
        f.iter().map(|f| f.rel_path.to_str().unwrap()).collect()
    }

    #[test]
    fn tags_reorder_when_every_file_has_a_track() {
        let mut f = files(&[(0, "a.mp3"), (0, "b.mp3"), (0, "c.mp3")]);
        let keys = [(None, Some(3)), (None, Some(1)), (None, Some(2))];
        assert_eq!(tag_order(&f, &keys), Some(vec![1, 2, 0]));
        assert!(order_by_tags(&mut f, &keys));
        assert_eq!(order_of(&f), ["b.mp3", "c.mp3", "a.mp3"]);
    }

    #[test]
    fn tags_use_disc_numbers() {
        let mut f = files(&[(0, "x1.mp3"), (0, "x2.mp3"), (0, "y1.mp3"), (0, "y2.mp3")]);
        let keys = [
            (Some(2), Some(1)),
            (Some(2), Some(2)),
            (Some(1), Some(1)),
            (None, Some(2)),
        ];
        assert!(order_by_tags(&mut f, &keys));
        assert_eq!(order_of(&f), ["y1.mp3", "y2.mp3", "x1.mp3", "x2.mp3"]);
    }

    #[test]
    fn tags_keep_the_input_folders_in_order() {
        let mut f = files(&[(0, "a.mp3"), (0, "b.mp3"), (1, "c.mp3")]);
        let keys = [(None, Some(2)), (None, Some(1)), (None, Some(1))];
        assert!(order_by_tags(&mut f, &keys));
        assert_eq!(order_of(&f), ["b.mp3", "a.mp3", "c.mp3"]);
    }

    #[test]
    fn tags_are_ignored_when_incomplete_or_ambiguous() {
        let original = files(&[(0, "CD1/01.mp3"), (0, "CD1/02.mp3"), (0, "CD2/01.mp3")]);
        let cases: [&[(Option<u32>, Option<u32>)]; 4] = [
            // A file without a track number.
            &[(None, Some(2)), (None, None), (None, Some(1))],
            // Track numbers restarting per disc folder without disc tags: would interleave.
            &[(None, Some(1)), (None, Some(2)), (None, Some(1))],
            // Keys not aligned with the files.
            &[(None, Some(1))],
            &[],
        ];
        for keys in cases {
            let mut f = original.clone();
            assert!(!order_by_tags(&mut f, keys), "{keys:?}");
            assert_eq!(f, original);
        }
        assert!(!order_by_tags(&mut [], &[]));
    }

    // -- disc folders -------------------------------------------------------------------------

    #[test]
    fn disc_names() {
        for n in [
            "CD1",
            "cd 02",
            "Disc 3",
            "Disk-4",
            "Part 1",
            "01",
            "CD1 - The Start",
            // Words and spellings the two former lists did not share.
            "Teil 2",
            "Vol. 1",
            "Volume 3",
            "Side 2",
            "Tape_4",
            "CD #5",
            " CD 6 ",
            "ＣＤ７",
        ] {
            assert!(is_disc_folder(n), "{n}");
        }
        for n in [
            "Dune",
            "Bonus",
            "1984 Orwell",
            "Extras",
            "CD1a",
            "Partition 2",
            "Volcano",
            "cd",
            "",
            " ",
        ] {
            assert!(!is_disc_folder(n), "{n}");
        }
    }

    #[test]
    fn every_disc_word_orders_its_folders_by_number() {
        for (word, _) in DISC_WORDS {
            let spaced = format!("{word} 2/a.mp3");
            let glued = format!("{word}10/a.mp3");
            let dotted = format!("{}. 3/a.mp3", word.to_uppercase());
            let mut paths = vec![glued.clone(), dotted.clone(), spaced.clone()];
            sort_by_book_order(&mut paths, Order::Natural, |p| Path::new(p));
            assert_eq!(paths, [spaced, dotted, glued], "{word}");
        }
    }

    #[test]
    fn spellings_of_one_disc_word_interleave_by_number() {
        let mut paths = vec!["Disk 3/a.mp3", "cd2/a.mp3", "Disc 1/a.mp3", "CD 10/a.mp3"];
        sort_by_book_order(&mut paths, Order::Natural, |p| Path::new(*p));
        assert_eq!(
            paths,
            ["Disc 1/a.mp3", "cd2/a.mp3", "Disk 3/a.mp3", "CD 10/a.mp3"]
        );
    }

    #[test]
    fn disc_folder_rule_applies_to_folders_not_files() {
        // As folders, both are disc folders and order by number; as file names, by text.
        let mut paths = vec!["disk 2/x.mp3", "cd 10/x.mp3"];
        sort_by_book_order(&mut paths, Order::Natural, |p| Path::new(*p));
        assert_eq!(paths, ["disk 2/x.mp3", "cd 10/x.mp3"]);
        let mut paths = vec!["disk 2.mp3", "cd 10.mp3"];
        sort_by_book_order(&mut paths, Order::Natural, |p| Path::new(*p));
        assert_eq!(paths, ["cd 10.mp3", "disk 2.mp3"]);
    }

    #[test]
    fn files_come_before_folders_and_alpha_is_byte_order() {
        let mut paths = vec!["a/1.mp3", "b.mp3", "a.mp3", "A/0.mp3"];
        sort_by_book_order(&mut paths, Order::Natural, |p| Path::new(*p));
        assert_eq!(paths, ["a.mp3", "b.mp3", "A/0.mp3", "a/1.mp3"]);
        sort_by_book_order(&mut paths, Order::Alpha, |p| Path::new(*p));
        // Component-wise: the folder `a` sorts before the file `a.mp3`.
        assert_eq!(paths, ["A/0.mp3", "a/1.mp3", "a.mp3", "b.mp3"]);
    }
}
