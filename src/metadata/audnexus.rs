//! Audnexus (`https://api.audnex.us`): a book and its chapter list by ASIN, in a region.
//! Documented responses: `GET /books/{asin}?region=us` and `GET /books/{asin}/chapters?region=us`.
use super::{
    html_to_text, normalize_asin, provider_error, BookMeta, ChapterList, HttpClient,
    MetadataProvider, ProviderChapter, Region, SearchQuery, SeriesRef,
};
use crate::error::Result;
use serde::Deserialize;
use std::sync::Arc;

/// Audnexus' public address.
pub const AUDNEXUS_URL: &str = "https://api.audnex.us";

const NAME: &str = "Audnexus";

/// The Audnexus provider.
pub struct Audnexus {
    http: Arc<HttpClient>,
    base: String,
}

#[derive(Deserialize)]
struct Person {
    name: String,
}

#[derive(Deserialize)]
struct Series {
    name: String,
    position: Option<String>,
}

#[derive(Deserialize)]
struct Genre {
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Book {
    asin: String,
    title: String,
    subtitle: Option<String>,
    #[serde(default)]
    authors: Vec<Person>,
    #[serde(default)]
    narrators: Vec<Person>,
    series_primary: Option<Series>,
    summary: Option<String>,
    description: Option<String>,
    #[serde(default)]
    genres: Vec<Genre>,
    release_date: Option<String>,
    publisher_name: Option<String>,
    image: Option<String>,
    runtime_length_min: Option<f64>,
    language: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chapter {
    length_ms: u64,
    start_offset_ms: u64,
    title: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chapters {
    asin: String,
    #[serde(default)]
    brand_intro_duration_ms: u64,
    #[serde(default)]
    brand_outro_duration_ms: u64,
    chapters: Vec<Chapter>,
    runtime_length_ms: u64,
    #[serde(default)]
    is_accurate: bool,
}

impl Audnexus {
    /// Audnexus at its public address.
    pub fn new(http: Arc<HttpClient>) -> Audnexus {
        Audnexus::with_base(http, AUDNEXUS_URL)
    }

    /// Audnexus at another address (a mirror, or a test server).
    pub fn with_base(http: Arc<HttpClient>, base: &str) -> Audnexus {
        Audnexus {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// The URL of a book.
    pub fn book_url(&self, asin: &str, region: Region) -> String {
        format!("{}/books/{asin}?region={}", self.base, region.code())
    }

    /// The URL of a book's chapter list.
    pub fn chapters_url(&self, asin: &str, region: Region) -> String {
        format!(
            "{}/books/{asin}/chapters?region={}",
            self.base,
            region.code()
        )
    }
}

fn not_found(what: &str, asin: &str, region: Region) -> crate::Error {
    provider_error(
        NAME,
        what,
        format!(
            "no such ASIN {asin} in region {region} (HTTP 404); check the ASIN, or try the \
             region where the book is sold (--region uk, de …)"
        ),
    )
}

impl MetadataProvider for Audnexus {
    fn name(&self) -> &'static str {
        NAME
    }

    fn search(&self, _query: &SearchQuery, _region: Region) -> Result<Vec<BookMeta>> {
        Err(provider_error(
            NAME,
            "search",
            "Audnexus looks books up by ASIN only; search Audible's catalog instead",
        ))
    }

    fn book(&self, asin: &str, region: Region) -> Result<BookMeta> {
        let asin = normalize_asin(asin)?;
        let what = format!("book {asin}");
        let url = self.book_url(&asin, region);
        let Some(b) = self.http.get_json::<Book>(NAME, &what, &url)? else {
            return Err(not_found(&what, &asin, region));
        };
        let description = b
            .summary
            .as_deref()
            .map(html_to_text)
            .filter(|s| !s.is_empty())
            .or_else(|| b.description.as_deref().map(html_to_text))
            .filter(|s| !s.is_empty());
        // Genres ("genre") before tags ("tag"), each in the provider's order.
        let mut genres: Vec<&Genre> = b.genres.iter().collect();
        genres.sort_by_key(|g| g.kind.as_deref() != Some("genre"));
        Ok(BookMeta {
            provider: NAME.into(),
            region,
            asin: b.asin,
            title: b.title.trim().to_string(),
            subtitle: b.subtitle.filter(|s| !s.trim().is_empty()),
            authors: b.authors.into_iter().map(|p| p.name).collect(),
            narrators: b.narrators.into_iter().map(|p| p.name).collect(),
            series: b.series_primary.map(|s| SeriesRef {
                name: s.name,
                position: s.position.filter(|p| !p.trim().is_empty()),
            }),
            description,
            genres: genres.into_iter().map(|g| g.name.clone()).collect(),
            release_date: b.release_date,
            publisher: b.publisher_name,
            image_url: b.image,
            runtime_secs: b.runtime_length_min.map(|m| m * 60.0),
            language: b.language,
        })
    }

    fn chapters(&self, asin: &str, region: Region) -> Result<ChapterList> {
        let asin = normalize_asin(asin)?;
        let what = format!("chapters of {asin}");
        let url = self.chapters_url(&asin, region);
        let Some(c) = self.http.get_json::<Chapters>(NAME, &what, &url)? else {
            return Err(not_found(&what, &asin, region));
        };
        if c.chapters.is_empty() {
            return Err(provider_error(
                NAME,
                &what,
                "the chapter list is empty; keep the book's chapters (--no-chapters)",
            ));
        }
        Ok(ChapterList {
            asin: c.asin,
            brand_intro_ms: c.brand_intro_duration_ms,
            brand_outro_ms: c.brand_outro_duration_ms,
            chapters: c
                .chapters
                .into_iter()
                .map(|c| ProviderChapter {
                    title: c.title.trim().to_string(),
                    start_ms: c.start_offset_ms,
                    length_ms: c.length_ms,
                })
                .collect(),
            runtime_ms: c.runtime_length_ms,
            is_accurate: c.is_accurate,
        })
    }
}
