//! Ranking candidates against what the local book says about itself.
//!
//! Each of title, author, narrator and duration gives a fit in 0..1; the score is their
//! weighted mean over the parts the local book knows (title 0.45, author 0.25, duration 0.2,
//! narrator 0.1). Strings are compared normalized (lower case, accents kept, punctuation and
//! "unabridged"/"(Book 3)"-style noise removed, word order ignored) with strsim's
//! normalized Levenshtein similarity, and with word containment, so that a local title
//! "Mistborn 1 - The Final Empire" still fits "The Final Empire". The duration fits 1 within
//! 1 % and falls linearly to 0 at 10 % off (providers round runtimes to the minute).
use super::BookMeta;
use serde::Serialize;

/// What the local book says about itself; `None` parts are not compared.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LocalBook {
    /// Title (tags, or the folder's name).
    pub title: Option<String>,
    /// Author.
    pub author: Option<String>,
    /// Narrator.
    pub narrator: Option<String>,
    /// The exact decoded duration in seconds.
    pub duration_secs: Option<f64>,
}

/// How well each part fits (each 0..1; `None`: not compared).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScoreParts {
    /// Title fit.
    pub title: Option<f64>,
    /// Author fit (the best of the candidate's authors).
    pub author: Option<f64>,
    /// Narrator fit (the best of the candidate's narrators).
    pub narrator: Option<f64>,
    /// Duration fit.
    pub duration: Option<f64>,
}

/// A candidate with its score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// 0..1, higher is better.
    pub score: f64,
    /// The parts of the score.
    pub parts: ScoreParts,
    /// The book.
    pub book: BookMeta,
}

const W_TITLE: f64 = 0.45;
const W_AUTHOR: f64 = 0.25;
const W_DURATION: f64 = 0.2;
const W_NARRATOR: f64 = 0.1;

/// Words of `s`: lower case, letters and digits only, noise words removed, sorted.
fn words(s: &str) -> Vec<String> {
    const NOISE: [&str; 6] = ["unabridged", "abridged", "audiobook", "a", "the", "an"];
    let lower = s.to_lowercase();
    let mut w: Vec<String> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !NOISE.contains(w))
        .map(str::to_string)
        .collect();
    w.sort();
    w.dedup();
    w
}

/// Similarity of two strings in 0..1 (see the module docs).
pub fn similarity(a: &str, b: &str) -> f64 {
    let (wa, wb) = (words(a), words(b));
    if wa.is_empty() || wb.is_empty() {
        return 0.0;
    }
    let lev = strsim::normalized_levenshtein(&wa.join(" "), &wb.join(" "));
    // Containment: the share of the shorter side's words found in the other.
    let (short, long) = if wa.len() <= wb.len() {
        (&wa, &wb)
    } else {
        (&wb, &wa)
    };
    let found = short.iter().filter(|w| long.contains(w)).count() as f64;
    let contained = found / short.len() as f64;
    // Containment alone over-rates one common word: weigh it by how much of the longer
    // side it covers.
    let cover = found / long.len() as f64;
    lev.max(contained * (0.7 + 0.3 * cover))
}

/// Duration fit: 1 within 1 %, 0 at 10 % off or more.
pub fn duration_fit(local_secs: f64, candidate_secs: f64) -> f64 {
    if local_secs <= 0.0 || candidate_secs <= 0.0 {
        return 0.0;
    }
    let rel = (local_secs - candidate_secs).abs() / local_secs;
    ((0.10 - rel) / 0.09).clamp(0.0, 1.0)
}

fn best(local: &str, names: &[String]) -> f64 {
    names
        .iter()
        .map(|n| similarity(local, n))
        .fold(0.0, f64::max)
}

/// Scores one candidate.
pub fn score(local: &LocalBook, book: &BookMeta) -> (f64, ScoreParts) {
    fn nonempty(s: &Option<String>) -> Option<&str> {
        s.as_deref().filter(|s| !s.trim().is_empty())
    }
    let mut parts = ScoreParts::default();
    if let Some(t) = nonempty(&local.title) {
        let full = match &book.subtitle {
            Some(s) => format!("{}: {s}", book.title),
            None => book.title.clone(),
        };
        parts.title = Some(similarity(t, &book.title).max(similarity(t, &full)));
    }
    if let Some(a) = nonempty(&local.author) {
        parts.author = Some(best(a, &book.authors));
    }
    if let Some(n) = nonempty(&local.narrator) {
        parts.narrator = Some(best(n, &book.narrators));
    }
    if let Some(d) = local.duration_secs.filter(|d| *d > 0.0) {
        parts.duration = Some(book.runtime_secs.map_or(0.0, |r| duration_fit(d, r)));
    }
    let weighted = [
        (parts.title, W_TITLE),
        (parts.author, W_AUTHOR),
        (parts.narrator, W_NARRATOR),
        (parts.duration, W_DURATION),
    ];
    let (sum, weights) = weighted
        .iter()
        .filter_map(|(v, w)| v.map(|v| (v * w, *w)))
        .fold((0.0, 0.0), |(s, ws), (v, w)| (s + v, ws + w));
    let score = if weights > 0.0 { sum / weights } else { 0.0 };
    (score, parts)
}

/// Scores every candidate and sorts them best first (ties keep the provider's order).
pub fn rank(local: &LocalBook, books: Vec<BookMeta>) -> Vec<Candidate> {
    let mut c: Vec<Candidate> = books
        .into_iter()
        .map(|book| {
            let (score, parts) = score(local, &book);
            Candidate { score, parts, book }
        })
        .collect();
    c.sort_by(|a, b| b.score.total_cmp(&a.score));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(title: &str, author: &str, narrator: &str, mins: f64) -> BookMeta {
        BookMeta {
            title: title.into(),
            authors: vec![author.into()],
            narrators: vec![narrator.into()],
            runtime_secs: Some(mins * 60.0),
            ..Default::default()
        }
    }

    #[test]
    fn similar_strings_fit_and_others_do_not() {
        assert!(similarity("The Final Empire", "the final empire") > 0.99);
        assert!(similarity("Mistborn 1 - The Final Empire", "The Final Empire") > 0.7);
        assert!(similarity("Sanderson, Brandon", "Brandon Sanderson") > 0.99);
        assert!(similarity("The Final Empire", "The Well of Ascension") < 0.5);
        assert_eq!(similarity("", "x"), 0.0);
    }

    #[test]
    fn durations_fit_within_a_percent() {
        assert_eq!(duration_fit(3600.0, 3610.0), 1.0);
        assert_eq!(duration_fit(3600.0, 4000.0), 0.0);
        let mid = duration_fit(3600.0, 3600.0 * 1.05);
        assert!(mid > 0.4 && mid < 0.6, "{mid}");
    }

    #[test]
    fn the_right_edition_ranks_first() {
        let local = LocalBook {
            title: Some("The Final Empire".into()),
            author: Some("Brandon Sanderson".into()),
            narrator: Some("Michael Kramer".into()),
            duration_secs: Some(24.0 * 3600.0 + 39.0 * 60.0),
        };
        let books = vec![
            book(
                "The Well of Ascension",
                "Brandon Sanderson",
                "Michael Kramer",
                1769.0,
            ),
            book(
                "The Final Empire",
                "Brandon Sanderson",
                "Someone Else",
                1300.0,
            ),
            book(
                "The Final Empire",
                "Brandon Sanderson",
                "Michael Kramer",
                1479.0,
            ),
        ];
        let r = rank(&local, books);
        assert_eq!(r[0].book.narrators[0], "Michael Kramer");
        assert_eq!(r[0].book.title, "The Final Empire");
        assert!(r[0].score > 0.95, "{:?}", r[0]);
        assert_eq!(r[1].book.narrators[0], "Someone Else");
        assert!(r[2].score < r[1].score);
        assert!(r.iter().all(|c| (0.0..=1.0).contains(&c.score)));
    }
}
