//! Audible's public catalog (`https://api.audible.{tld}/1.0/catalog/products`): search by
//! title, author and keywords, and a product by ASIN, in ten regions. No account needed.
use super::{
    html_to_text, normalize_asin, provider_error, BookMeta, ChapterList, HttpClient,
    MetadataProvider, Region, SearchQuery, SeriesRef,
};
use crate::error::Result;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The catalog's address; `{tld}` becomes the region's domain (`com`, `co.uk` …).
pub const AUDIBLE_URL: &str = "https://api.audible.{tld}";

const NAME: &str = "Audible";
const GROUPS: &str = "contributors,product_desc,product_attrs,media,series";

/// The Audible catalog provider.
pub struct AudibleCatalog {
    http: Arc<HttpClient>,
    template: String,
}

#[derive(Deserialize)]
struct Person {
    name: String,
}

#[derive(Deserialize)]
struct Series {
    title: String,
    sequence: Option<String>,
}

#[derive(Deserialize)]
struct Product {
    asin: String,
    title: Option<String>,
    subtitle: Option<String>,
    #[serde(default)]
    authors: Vec<Person>,
    #[serde(default)]
    narrators: Vec<Person>,
    #[serde(default)]
    series: Vec<Series>,
    runtime_length_min: Option<f64>,
    release_date: Option<String>,
    publisher_name: Option<String>,
    #[serde(default)]
    product_images: BTreeMap<String, String>,
    merchandising_summary: Option<String>,
    publisher_summary: Option<String>,
    language: Option<String>,
}

#[derive(Deserialize)]
struct SearchAnswer {
    #[serde(default)]
    products: Vec<Product>,
}

#[derive(Deserialize)]
struct ProductAnswer {
    product: Product,
}

impl AudibleCatalog {
    /// The catalog at Audible's addresses.
    pub fn new(http: Arc<HttpClient>) -> AudibleCatalog {
        AudibleCatalog::with_base(http, AUDIBLE_URL)
    }

    /// The catalog at another address; `{tld}` in `template` becomes the region's domain
    /// (a test server: `http://127.0.0.1:PORT/{tld}`).
    pub fn with_base(http: Arc<HttpClient>, template: &str) -> AudibleCatalog {
        AudibleCatalog {
            http,
            template: template.trim_end_matches('/').to_string(),
        }
    }

    fn base(&self, region: Region) -> String {
        self.template.replace("{tld}", region.tld())
    }

    /// The search URL of `q` in `region`.
    pub fn search_url(&self, q: &SearchQuery, region: Region) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        fn nonempty(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        if let Some(t) = nonempty(&q.title) {
            s.append_pair("title", t);
        }
        if let Some(a) = nonempty(&q.author) {
            s.append_pair("author", a);
        }
        if let Some(k) = nonempty(&q.keywords) {
            s.append_pair("keywords", k);
        }
        let n = if q.limit == 0 { 10 } else { q.limit.min(50) };
        s.append_pair("num_results", &n.to_string())
            .append_pair("products_sort_by", "Relevance")
            .append_pair("response_groups", GROUPS)
            .append_pair("image_sizes", "500,1024,2400");
        format!("{}/1.0/catalog/products?{}", self.base(region), s.finish())
    }

    /// The URL of one product.
    pub fn product_url(&self, asin: &str, region: Region) -> String {
        format!(
            "{}/1.0/catalog/products/{asin}?response_groups={}&image_sizes=500,1024,2400",
            self.base(region),
            GROUPS.replace(',', "%2C")
        )
    }

    fn provider(region: Region) -> String {
        format!("{NAME} ({region})")
    }
}

fn convert(p: Product, region: Region) -> Option<BookMeta> {
    let title = p.title?.trim().to_string();
    if title.is_empty() {
        return None;
    }
    // The largest image: keys are sizes in pixels.
    let image_url = p
        .product_images
        .iter()
        .max_by_key(|(k, _)| k.parse::<u32>().unwrap_or(0))
        .map(|(_, v)| super::best_image_url(v));
    let description = p
        .publisher_summary
        .as_deref()
        .or(p.merchandising_summary.as_deref())
        .map(html_to_text)
        .filter(|s| !s.is_empty());
    Some(BookMeta {
        provider: NAME.into(),
        region,
        asin: p.asin,
        title,
        subtitle: p.subtitle.filter(|s| !s.trim().is_empty()),
        authors: p.authors.into_iter().map(|a| a.name).collect(),
        narrators: p.narrators.into_iter().map(|a| a.name).collect(),
        series: p.series.into_iter().next().map(|s| SeriesRef {
            name: s.title,
            position: s.sequence.filter(|p| !p.trim().is_empty()),
        }),
        description,
        genres: Vec::new(),
        release_date: p.release_date,
        publisher: p.publisher_name,
        image_url,
        runtime_secs: p.runtime_length_min.map(|m| m * 60.0),
        language: p.language,
    })
}

impl MetadataProvider for AudibleCatalog {
    fn name(&self) -> &'static str {
        NAME
    }

    fn search(&self, q: &SearchQuery, region: Region) -> Result<Vec<BookMeta>> {
        let provider = Self::provider(region);
        if [&q.title, &q.author, &q.keywords]
            .iter()
            .all(|v| v.as_deref().is_none_or(|v| v.trim().is_empty()))
        {
            return Err(provider_error(
                &provider,
                "search",
                "nothing to search for; give a title, an author or keywords (--query)",
            ));
        }
        let url = self.search_url(q, region);
        let answer = self
            .http
            .get_json::<SearchAnswer>(&provider, "search", &url)?
            .ok_or_else(|| {
                provider_error(
                    &provider,
                    "search",
                    "the catalog answered 404; try again later",
                )
            })?;
        Ok(answer
            .products
            .into_iter()
            .filter_map(|p| convert(p, region))
            .collect())
    }

    fn book(&self, asin: &str, region: Region) -> Result<BookMeta> {
        let asin = normalize_asin(asin)?;
        let provider = Self::provider(region);
        let what = format!("book {asin}");
        let url = self.product_url(&asin, region);
        let missing = || {
            provider_error(
                &provider,
                &what,
                format!(
                    "no such ASIN {asin} in region {region}; check the ASIN, or try the region \
                     where the book is sold"
                ),
            )
        };
        let answer = self
            .http
            .get_json::<ProductAnswer>(&provider, &what, &url)?
            .ok_or_else(missing)?;
        convert(answer.product, region).ok_or_else(missing)
    }

    fn chapters(&self, asin: &str, region: Region) -> Result<ChapterList> {
        Err(provider_error(
            &Self::provider(region),
            &format!("chapters of {asin}"),
            "Audible's public catalog has no chapter lists; Audnexus has them",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::HttpOptions;

    #[test]
    fn search_urls_name_the_region_and_the_query() {
        let http = Arc::new(HttpClient::new(HttpOptions::default(), None));
        let a = AudibleCatalog::new(http);
        let q = SearchQuery {
            title: Some("The Way of Kings".into()),
            author: Some("Brandon Sanderson".into()),
            keywords: None,
            limit: 5,
        };
        let url = a.search_url(&q, Region::Uk);
        assert!(
            url.starts_with("https://api.audible.co.uk/1.0/catalog/products?title=The+Way+of+Kings&author=Brandon+Sanderson&num_results=5&products_sort_by=Relevance&response_groups=contributors%2Cproduct_desc%2Cproduct_attrs%2Cmedia%2Cseries"),
            "{url}"
        );
        assert!(a
            .search_url(&q, Region::Jp)
            .starts_with("https://api.audible.co.jp/"));
        assert!(a
            .product_url("B0036I54I6", Region::Au)
            .starts_with("https://api.audible.com.au/1.0/catalog/products/B0036I54I6?"));
    }
}
