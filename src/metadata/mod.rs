//! Book metadata from the network: search Audible's public catalog, fetch a book and its
//! chapter list by ASIN from Audnexus, rank candidates against a local book, and fit an
//! Audible chapter list onto this book's audio.
//!
//! Everything here is optional: nothing else in aiom4b needs the network, and a provider's
//! failure is an [`Error::Metadata`](crate::Error::Metadata) naming the provider, what was
//! asked and what to do.
//!
//! - [`MetadataProvider`]: search by title/author/keywords, book by ASIN, chapters by ASIN.
//!   Two implementations: [`Audnexus`] (`api.audnex.us`: books and chapters by ASIN) and
//!   [`AudibleCatalog`] (`api.audible.{tld}/1.0/catalog/products`: search, and books by ASIN,
//!   in ten [`Region`]s).
//! - [`HttpClient`]: the blocking HTTP both use: timeouts, retries with exponential backoff on
//!   5xx and transport errors, `429` honouring `Retry-After`, a polite gap between requests to
//!   one host, the `aiom4b/<version>` User-Agent, and an on-disk JSON cache (key: the URL;
//!   a re-run within the TTL makes no request).
//! - [`rank`]: candidates scored 0..1 against what the local book says (title, author,
//!   narrator, exact duration).
//! - [`tag_edits`] and [`fit_to_file`]: what applying a book means for a file (the edit
//!   itself is [`crate::edit::edit_book`]).
//! - [`fit`]: an Audible chapter list fitted onto this audio (brand intro/outro removed when
//!   the book lacks it, scaled when the editions' lengths differ slightly, each mark snapped
//!   to a pause); a different edition is refused.
//! - [`Providers`], [`apply_book`]: the one way every front end finds a book and writes it
//!   into a file (`match`, `tag`, `convert --asin`/`--match auto`, the service).
//! - [`MetadataEngine`]: `convert --asin`/`--match auto`: a job engine that applies a book
//!   resolved before the job to the verified `.part` before the workflow publishes it.
mod apply;
mod audible;
mod audnexus;
mod cache;
mod engine;
pub mod fit;
mod http;
mod lookup;
pub mod rank;

pub use apply::{fit_to_file, tag_edits};
pub use audible::AudibleCatalog;
pub use audible::AUDIBLE_URL;
pub use audnexus::Audnexus;
pub use audnexus::AUDNEXUS_URL;
pub use cache::{Cache, DEFAULT_TTL};
pub use engine::{
    overrides, AppliedMetadata, AutoMatchEngine, MatchedBook, MetadataEngine, ResolvedBook,
};
pub use http::{HttpClient, HttpOptions};
pub use lookup::{
    apply_book, ApplyOptions, Lookup, LookupBy, LookupRequest, Providers, AUDIBLE_URL_ENV,
    AUDNEXUS_URL_ENV, DEFAULT_MATCH_THRESHOLD,
};

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An Audible marketplace. Audnexus takes the code (`?region=uk`); Audible's catalog lives
/// at `api.audible.{tld}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// United States (`audible.com`).
    #[default]
    Us,
    /// United Kingdom (`audible.co.uk`).
    Uk,
    /// Germany (`audible.de`).
    De,
    /// France (`audible.fr`).
    Fr,
    /// Canada (`audible.ca`).
    Ca,
    /// Australia (`audible.com.au`).
    Au,
    /// India (`audible.in`).
    In,
    /// Italy (`audible.it`).
    It,
    /// Spain (`audible.es`).
    Es,
    /// Japan (`audible.co.jp`).
    Jp,
}

impl Region {
    /// Every region.
    pub const ALL: [Region; 10] = [
        Region::Us,
        Region::Uk,
        Region::De,
        Region::Fr,
        Region::Ca,
        Region::Au,
        Region::In,
        Region::It,
        Region::Es,
        Region::Jp,
    ];

    /// The code Audnexus and the command line use (`us`, `uk` …).
    pub fn code(self) -> &'static str {
        match self {
            Region::Us => "us",
            Region::Uk => "uk",
            Region::De => "de",
            Region::Fr => "fr",
            Region::Ca => "ca",
            Region::Au => "au",
            Region::In => "in",
            Region::It => "it",
            Region::Es => "es",
            Region::Jp => "jp",
        }
    }

    /// The top-level domain of the region's Audible site (`com`, `co.uk` …).
    pub fn tld(self) -> &'static str {
        match self {
            Region::Us => "com",
            Region::Uk => "co.uk",
            Region::De => "de",
            Region::Fr => "fr",
            Region::Ca => "ca",
            Region::Au => "com.au",
            Region::In => "in",
            Region::It => "it",
            Region::Es => "es",
            Region::Jp => "co.jp",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Region {
    type Err = Error;
    fn from_str(s: &str) -> Result<Region> {
        let s = s.trim().to_ascii_lowercase();
        Region::ALL
            .into_iter()
            .find(|r| r.code() == s || (s == "gb" && *r == Region::Uk))
            .ok_or_else(|| {
                Error::Options(format!(
                    "unknown region {s:?}; use one of {}",
                    Region::ALL.map(|r| r.code()).join(", ")
                ))
            })
    }
}

/// A series a book belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesRef {
    /// The series' name.
    pub name: String,
    /// The book's position as the provider writes it (`"1"`, `"2.5"`, `"Book 3"` …).
    pub position: Option<String>,
}

/// A book as a provider describes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BookMeta {
    /// The provider that answered ("Audnexus", "Audible").
    pub provider: String,
    /// The region asked.
    pub region: Region,
    /// Audible's product id, e.g. `B0036I54I6`.
    pub asin: String,
    /// The title (without the subtitle).
    pub title: String,
    /// The subtitle, often "Book 1 of the … series".
    pub subtitle: Option<String>,
    /// The authors, in the provider's order.
    pub authors: Vec<String>,
    /// The narrators.
    pub narrators: Vec<String>,
    /// The (primary) series.
    pub series: Option<SeriesRef>,
    /// The description as plain text (HTML tags removed).
    pub description: Option<String>,
    /// Genres and tags, most general first.
    pub genres: Vec<String>,
    /// Release date as the provider writes it (ISO 8601, `2010-01-01…`).
    pub release_date: Option<String>,
    /// The publisher.
    pub publisher: Option<String>,
    /// The largest cover image's URL.
    pub image_url: Option<String>,
    /// Runtime in seconds (providers give whole minutes: ±30 s).
    pub runtime_secs: Option<f64>,
    /// The language ("english" …).
    pub language: Option<String>,
}

impl BookMeta {
    /// The year of the release date, when it starts with four digits.
    pub fn year(&self) -> Option<String> {
        let d = self.release_date.as_deref()?;
        let y: String = d.chars().take(4).collect();
        (y.len() == 4 && y.chars().all(|c| c.is_ascii_digit())).then_some(y)
    }
}

/// One chapter of an Audible chapter list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderChapter {
    /// The title.
    pub title: String,
    /// Start in milliseconds on Audible's timeline (brand intro included).
    pub start_ms: u64,
    /// Length in milliseconds.
    pub length_ms: u64,
}

/// Audible's chapter list of a book (from Audnexus).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChapterList {
    /// The ASIN.
    pub asin: String,
    /// Length of Audible's brand intro ("This is Audible …") at the start, in ms.
    pub brand_intro_ms: u64,
    /// Length of the brand outro at the end, in ms.
    pub brand_outro_ms: u64,
    /// The chapters in order.
    pub chapters: Vec<ProviderChapter>,
    /// The whole runtime in ms (intro and outro included).
    pub runtime_ms: u64,
    /// Audnexus' flag: the list was checked against the audio.
    pub is_accurate: bool,
}

/// What to search for. Empty fields are left out of the query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Title words.
    pub title: Option<String>,
    /// Author.
    pub author: Option<String>,
    /// Free keywords (anything: title, series, narrator …).
    pub keywords: Option<String>,
    /// At most this many results (1..=50; 0 = 10).
    pub limit: usize,
}

/// A source of book metadata. Methods a provider cannot answer return an
/// [`Error::Metadata`] saying which provider can.
pub trait MetadataProvider {
    /// The provider's name for messages ("Audnexus", "Audible").
    fn name(&self) -> &'static str;
    /// Books matching `query` in `region`, in the provider's order.
    fn search(&self, query: &SearchQuery, region: Region) -> Result<Vec<BookMeta>>;
    /// The book with this ASIN in `region`.
    fn book(&self, asin: &str, region: Region) -> Result<BookMeta>;
    /// Audible's chapter list of the book with this ASIN in `region`.
    fn chapters(&self, asin: &str, region: Region) -> Result<ChapterList>;
}

/// Checks an ASIN's shape (10 letters and digits); returns it upper-cased.
pub fn normalize_asin(asin: &str) -> Result<String> {
    let a = asin.trim().to_ascii_uppercase();
    if a.len() == 10 && a.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(a)
    } else {
        Err(Error::Options(format!(
            "{asin:?} is not an ASIN: an ASIN is 10 letters and digits, e.g. B0036I54I6 (the \
             last part of an Audible book's address, or the asin `aiom4b match` prints)"
        )))
    }
}

/// Plain text from the HTML of a description: tags dropped, `<p>`/`<br>` as line breaks, the
/// common entities decoded, blank runs collapsed.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('>') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let tag = rest[i + 1..i + j]
            .trim_start_matches('/')
            .to_ascii_lowercase();
        if tag.starts_with('p') || tag.starts_with("br") || tag.starts_with("li") {
            out.push('\n');
        }
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    let out = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    let lines: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("\n")
}

/// The full-resolution address of an Amazon image: Audible's catalog names sized copies
/// (`…/I/51abc._SL500_.jpg`); without the `._SL500_` part the address is the original
/// upload (usually 2400×2400 or more). Other addresses are returned as they are.
pub fn best_image_url(url: &str) -> String {
    let Some((stem, ext)) = url.rsplit_once('.') else {
        return url.to_string();
    };
    if !url.contains("media-amazon.com/images/") && !url.contains("images-amazon.com/images/") {
        return url.to_string();
    }
    match stem.rsplit_once("._") {
        Some((base, size))
            if size.ends_with('_') && !base.ends_with('/') && !size.contains('/') =>
        {
            format!("{base}.{ext}")
        }
        _ => url.to_string(),
    }
}

/// Downloads a cover image (through the client's cache) and checks it as `convert` checks
/// a cover: JPEG or PNG, at most [`crate::MAX_COVER_BYTES`], sides up to
/// [`crate::MAX_COVER_SIDE`].
pub fn fetch_cover(http: &HttpClient, provider: &str, url: &str) -> Result<crate::Picture> {
    let data = http.get_bytes(provider, "cover", url, crate::MAX_COVER_BYTES as u64, |b| {
        crate::probe::image_facts(b).is_some()
    })?;
    let pic = crate::Picture {
        mime: String::new(),
        data,
        width: None,
        height: None,
    };
    crate::convert::check_cover(&pic, std::path::Path::new(url))
}

pub(crate) fn provider_error(provider: &str, what: &str, reason: impl Into<String>) -> Error {
    Error::Metadata {
        provider: provider.to_string(),
        what: what.to_string(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_parse_and_name_their_sites() {
        assert_eq!("UK".parse::<Region>().unwrap(), Region::Uk);
        assert_eq!("gb".parse::<Region>().unwrap().tld(), "co.uk");
        assert_eq!("jp".parse::<Region>().unwrap().tld(), "co.jp");
        assert_eq!("au".parse::<Region>().unwrap().tld(), "com.au");
        let e = "xx".parse::<Region>().unwrap_err().to_string();
        assert!(e.contains("us, uk, de"), "{e}");
    }

    #[test]
    fn asins_are_checked() {
        assert_eq!(normalize_asin(" b0036i54i6 ").unwrap(), "B0036I54I6");
        assert!(normalize_asin("B0036I54I").is_err());
        assert!(normalize_asin("B0036I54I6/x").is_err());
    }

    #[test]
    fn amazon_images_are_asked_at_full_size() {
        assert_eq!(
            best_image_url("https://m.media-amazon.com/images/I/51abc+X._SL500_.jpg"),
            "https://m.media-amazon.com/images/I/51abc+X.jpg"
        );
        let plain = "https://m.media-amazon.com/images/I/91abc.jpg";
        assert_eq!(best_image_url(plain), plain);
        let other = "http://127.0.0.1:1/img/cover._SL500_.jpg";
        assert_eq!(best_image_url(other), other);
    }

    #[test]
    fn html_becomes_text() {
        assert_eq!(
            html_to_text("<p>One &amp; <b>two</b>.</p><p>Three&nbsp; four</p>"),
            "One & two.\nThree four"
        );
    }
}
