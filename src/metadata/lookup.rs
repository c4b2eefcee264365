//! One way to find a provider's book and apply it to a file, for every front end: `aiom4b
//! match`/`tag`, `convert --asin`/`--match auto` (one book or a batch), and the service's
//! `GET /api/v1/match` and `POST /api/v1/jobs/{id}/tag`.
//!
//! - [`Providers`]: the HTTP client (cached in `DATA_DIR/cache/metadata`) and both providers,
//!   at the public addresses or the ones [`AUDNEXUS_URL_ENV`]/[`AUDIBLE_URL_ENV`] name.
//! - [`Providers::search`]: the catalog's answers ranked against the local book.
//! - [`Providers::resolve_asin`]: a book by ASIN with its chapter list and cover; only the
//!   book itself is required, what else cannot be had is a warning.
//! - [`Providers::resolve`]: `--asin` or `--match auto`, never failing: a provider failure or
//!   no confident match is a warning or notice, and the caller goes on without a book.
//! - [`apply_book`]: a resolved book written into an M4B in place (through
//!   [`crate::edit::edit_book`]: atomic, verified), with Audible's chapters fitted to its
//!   pauses.
use super::fit::{ChapterFit, FitOptions};
use super::rank::{self, Candidate, LocalBook};
use super::{
    fetch_cover, fit_to_file, AppliedMetadata, AudibleCatalog, Audnexus, BookMeta, Cache,
    HttpClient, HttpOptions, MetadataProvider, Region, ResolvedBook, SearchQuery, DEFAULT_TTL,
};
use crate::edit::{self, BookEdit, ChapterEdit, CoverEdit, EditReport, TagEdits};
use crate::error::Result;
use crate::silence::SilenceOptions;
use std::path::Path;
use std::sync::Arc;

/// Environment variable naming Audnexus' address (a mirror, or a test server); the default is
/// [`super::AUDNEXUS_URL`].
pub const AUDNEXUS_URL_ENV: &str = "AIOM4B_AUDNEXUS_URL";
/// Environment variable naming Audible's catalog address; `{tld}` in it becomes the region's
/// domain. The default is [`super::AUDIBLE_URL`].
pub const AUDIBLE_URL_ENV: &str = "AIOM4B_AUDIBLE_URL";
/// The `--match auto` threshold when none is given: a candidate scoring below it is not
/// applied.
pub const DEFAULT_MATCH_THRESHOLD: f64 = 0.75;

/// The metadata providers of one front end, sharing one HTTP client (its pacing and cache).
pub struct Providers {
    http: Arc<HttpClient>,
    audnexus: Audnexus,
    audible: AudibleCatalog,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers").finish_non_exhaustive()
    }
}

impl Providers {
    /// Both providers with answers cached for [`DEFAULT_TTL`] in
    /// `data_dir/cache/metadata`, at the addresses the environment names (see
    /// [`AUDNEXUS_URL_ENV`], [`AUDIBLE_URL_ENV`]) or the public ones.
    pub fn new(data_dir: &Path) -> Providers {
        let cache = Cache::new(data_dir.join("cache").join("metadata"), DEFAULT_TTL);
        let http = Arc::new(HttpClient::new(HttpOptions::default(), Some(cache)));
        let env = |k: &str| std::env::var(k).ok().filter(|u| !u.is_empty());
        let audnexus = match env(AUDNEXUS_URL_ENV) {
            Some(u) => Audnexus::with_base(http.clone(), &u),
            None => Audnexus::new(http.clone()),
        };
        let audible = match env(AUDIBLE_URL_ENV) {
            Some(u) => AudibleCatalog::with_base(http.clone(), &u),
            None => AudibleCatalog::new(http.clone()),
        };
        Providers {
            http,
            audnexus,
            audible,
        }
    }

    /// Providers built by the caller (other addresses, other HTTP options).
    pub fn with(http: Arc<HttpClient>, audnexus: Audnexus, audible: AudibleCatalog) -> Providers {
        Providers {
            http,
            audnexus,
            audible,
        }
    }

    /// The shared HTTP client (its request count, its cache).
    pub fn http(&self) -> &Arc<HttpClient> {
        &self.http
    }

    /// Audnexus: books and chapter lists by ASIN.
    pub fn audnexus(&self) -> &Audnexus {
        &self.audnexus
    }

    /// Audible's catalog: search.
    pub fn audible(&self) -> &AudibleCatalog {
        &self.audible
    }

    /// Audible's catalog searched with `query`, the answers ranked against `local`, best
    /// first, at most `query.limit` (10 when 0).
    pub fn search(
        &self,
        local: &LocalBook,
        query: &SearchQuery,
        region: Region,
    ) -> Result<Vec<Candidate>> {
        let found = self.audible.search(query, region)?;
        let mut ranked = rank::rank(local, found);
        // A catalog may answer more than asked.
        ranked.truncate(if query.limit == 0 { 10 } else { query.limit });
        Ok(ranked)
    }

    /// The book with this ASIN from Audnexus, with its chapter list (`chapters`) and its
    /// cover at full resolution (`cover`). Fails only when the book itself cannot be had; a
    /// chapter list or cover that cannot is a warning in the second value.
    pub fn resolve_asin(
        &self,
        asin: &str,
        region: Region,
        chapters: bool,
        cover: bool,
    ) -> Result<(ResolvedBook, Vec<String>)> {
        let book = self.audnexus.book(asin, region)?;
        Ok(self.complete(book, None, region, chapters, cover))
    }

    /// Adds the chapter list and the cover to a chosen book.
    fn complete(
        &self,
        book: BookMeta,
        score: Option<f64>,
        region: Region,
        chapters: bool,
        cover: bool,
    ) -> (ResolvedBook, Vec<String>) {
        let mut warnings = Vec::new();
        let mut resolved = ResolvedBook::new(book, score);
        if chapters {
            match self.audnexus.chapters(&resolved.book.asin, region) {
                Ok(list) => resolved.chapters = Some(list),
                Err(e) => warnings.push(format!("{e}; the book keeps its chapters")),
            }
        }
        if cover {
            match &resolved.book.image_url {
                None => warnings.push(format!(
                    "{} has no cover for this book; the book keeps its cover",
                    resolved.book.provider
                )),
                Some(url) => match fetch_cover(&self.http, self.audnexus.name(), url) {
                    Ok(pic) => resolved.cover = Some(pic),
                    Err(e) => warnings.push(format!("{e}; the book keeps its cover")),
                },
            }
        }
        (resolved, warnings)
    }

    /// `--asin` or `--match auto` (see [`LookupBy`]). Never fails: when no book is chosen,
    /// [`Lookup::resolved`] is `None` and the warnings or the notice say why.
    pub fn resolve(&self, req: &LookupRequest) -> Lookup {
        let mut look = Lookup::default();
        let keep = req.keeping.as_str();
        let picked: Option<(BookMeta, Option<f64>)> = match &req.by {
            LookupBy::Asin(asin) => match self.audnexus.book(asin, req.region) {
                Ok(b) => Some((b, None)),
                Err(e) => {
                    look.warnings.push(format!("{e}; {keep}"));
                    None
                }
            },
            LookupBy::Match { local, threshold } => {
                match self.best_match(local, *threshold, req.region, keep, &mut look) {
                    Some(c) => match self.audnexus.book(&c.book.asin, req.region) {
                        Ok(b) => Some((b, Some(c.score))),
                        Err(e) => {
                            // The catalog's own description of the book is the next best thing.
                            look.warnings.push(format!(
                                "{e}; using Audible's catalog entry for {} instead",
                                c.book.asin
                            ));
                            Some((c.book, Some(c.score)))
                        }
                    },
                    None => None,
                }
            }
        };
        if let Some((book, score)) = picked {
            let (resolved, warnings) =
                self.complete(book, score, req.region, req.chapters, req.cover);
            look.warnings.extend(warnings);
            look.resolved = Some(resolved);
        }
        look
    }

    /// The best candidate for `local` when it reaches `threshold`; otherwise `None` and the
    /// notice or warning saying why.
    fn best_match(
        &self,
        local: &LocalBook,
        threshold: f64,
        region: Region,
        keep: &str,
        look: &mut Lookup,
    ) -> Option<Candidate> {
        let Some(title) = local.title.clone() else {
            look.notice = Some(format!(
                "match: the book has no title to search for; {keep} (give it a title, or an ASIN)"
            ));
            return None;
        };
        let query = SearchQuery {
            title: Some(title),
            author: local.author.clone(),
            keywords: None,
            limit: 10,
        };
        let ranked = match self.search(local, &query, region) {
            Ok(r) => r,
            Err(e) => {
                look.warnings.push(format!("{e}; {keep}"));
                return None;
            }
        };
        let Some(best) = ranked.into_iter().next() else {
            look.notice = Some(format!(
                "match: Audible's catalog ({region}) has no candidates; {keep} (try `aiom4b match` with --query, or an ASIN)"
            ));
            return None;
        };
        if best.score < threshold {
            look.notice = Some(format!(
                "no confident match (best {:.2}: {} {} — {}; threshold {threshold:.2}); {keep} \
                 (see `aiom4b match`, then an ASIN, or a lower threshold)",
                best.score,
                best.book.asin,
                best.book.title,
                best.book.authors.join(", "),
            ));
            return None;
        }
        Some(best)
    }
}

/// How [`Providers::resolve`] chooses the book.
#[derive(Debug, Clone)]
pub enum LookupBy {
    /// This ASIN (`--asin`).
    Asin(String),
    /// The best of Audible's candidates for this book when its score reaches `threshold`
    /// (`--match auto`).
    Match {
        /// What the book says about itself.
        local: LocalBook,
        /// The lowest score applied (0..1).
        threshold: f64,
    },
}

/// What to resolve.
#[derive(Debug, Clone)]
pub struct LookupRequest {
    /// By ASIN or by matching.
    pub by: LookupBy,
    /// The Audible marketplace.
    pub region: Region,
    /// Fetch Audible's chapter list too.
    pub chapters: bool,
    /// Fetch the cover too.
    pub cover: bool,
    /// What happens when no book is chosen, for the messages ("keeping the folder's tags").
    pub keeping: String,
}

impl LookupRequest {
    /// A request for the book, its chapter list and its cover in `region`.
    pub fn new(by: LookupBy, region: Region) -> LookupRequest {
        LookupRequest {
            by,
            region,
            chapters: true,
            cover: true,
            keeping: "keeping the book's own tags".into(),
        }
    }
}

/// What [`Providers::resolve`] found.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// The book to apply; `None`: none (the warnings or the notice say why).
    pub resolved: Option<ResolvedBook>,
    /// Provider failures and what was left out.
    pub warnings: Vec<String>,
    /// Why no book is applied when that is no failure (no title, no confident match).
    pub notice: Option<String>,
}

/// How [`apply_book`] fits and writes.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Pause detection for the chapter fit.
    pub silence: SilenceOptions,
    /// The chapter fit's window and limits.
    pub fit: FitOptions,
    /// Report what would change; write nothing.
    pub dry_run: bool,
}

/// Writes `resolved` into the M4B/M4A at `path` in place: `tags` (normally
/// [`super::tag_edits`] of the book, or only what a conversion could not write), the
/// resolved cover, and the resolved chapter list fitted to the file's pauses. A chapter list
/// that does not fit (another edition) is a warning and the file keeps its chapters. Fails
/// only when the edit itself cannot be made; the file is then as it was.
pub fn apply_book(
    path: &Path,
    resolved: &ResolvedBook,
    tags: TagEdits,
    opts: &ApplyOptions,
) -> Result<(AppliedMetadata, EditReport)> {
    let mut warnings = Vec::new();
    let mut fitted: Option<ChapterFit> = None;
    let chapters = match &resolved.chapters {
        None => ChapterEdit::Keep,
        Some(list) => match fit_to_file(path, list, &opts.silence, &opts.fit) {
            Ok(f) => {
                warnings.extend(f.warnings.iter().cloned());
                let c = ChapterEdit::Replace(f.chapters());
                fitted = Some(f);
                c
            }
            Err(e) => {
                let e = e.to_string();
                // A refused edition says so already.
                warnings.push(if e.contains("keeps its chapters") {
                    e
                } else {
                    format!("{e}; the book keeps its chapters")
                });
                ChapterEdit::Keep
            }
        },
    };
    let cover = match &resolved.cover {
        Some(p) => CoverEdit::Set(p.clone()),
        None => CoverEdit::Keep,
    };
    let edit = BookEdit {
        tags,
        cover,
        chapters,
    };
    let report = if opts.dry_run {
        edit::preview_edit(path, &edit)?
    } else {
        edit::edit_book(path, &edit)?
    };
    warnings.extend(report.warnings.iter().cloned());
    let applied = AppliedMetadata {
        asin: resolved.book.asin.clone(),
        region: resolved.book.region,
        title: resolved.book.title.clone(),
        score: resolved.score,
        output: path.to_path_buf(),
        changes: report.changes.clone(),
        cover: resolved.cover.is_some(),
        chapter_fit: fitted,
        warnings,
    };
    Ok((applied, report))
}
