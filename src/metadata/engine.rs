//! `convert --asin` / `--match auto`: a job engine that applies a provider's book to what
//! another engine (normally [`crate::workflow::BookEngine`]) wrote, before the workflow
//! publishes it.
//!
//! The book is resolved before the job runs (the network is asked there, so a job never waits
//! on it); its title, authors, narrators, series, part, description, genres and year go into
//! the plan's metadata overrides ([`overrides`]), so the output's name, the library layout and
//! the tags written by the conversion use them. What a conversion cannot write — publisher,
//! ASIN, `©grp`, the full-size cover and Audible's chapters fitted to this audio's pauses —
//! [`MetadataEngine`] writes into the verified `.part` with the in-place edit
//! ([`crate::edit::edit_book`]) that `aiom4b tag` uses. Everything there is optional: a cover
//! or chapter list that cannot be used, even an edit that fails, is a warning and the book is
//! published with what the conversion wrote.
use super::fit::{ChapterFit, FitOptions};
use super::lookup::{apply_book, ApplyOptions, LookupBy, LookupRequest, Providers};
use super::{tag_edits, BookMeta, ChapterList, Region};
use crate::edit::{FieldEdit, TagEdits};
use crate::model::BookMetadata;
use crate::silence::SilenceOptions;
use crate::workflow::{
    BookEngine, ConversionResult, JobContext, JobEngine, JobError, JobEventSink,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A provider's book chosen before the job runs, with what to write besides the tags.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResolvedBook {
    /// The book (from Audnexus by ASIN).
    pub book: BookMeta,
    /// The match score when it was chosen by `--match auto` (`None`: given by ASIN).
    pub score: Option<f64>,
    /// Audible's chapter list, to fit onto the audio (`None`: keep the conversion's chapters).
    pub chapters: Option<ChapterList>,
    /// The cover to write (`None`: keep the conversion's).
    pub cover: Option<crate::Picture>,
}

impl ResolvedBook {
    /// A book to apply; no chapters, no cover.
    pub fn new(book: BookMeta, score: Option<f64>) -> Self {
        ResolvedBook {
            book,
            score,
            chapters: None,
            cover: None,
        }
    }
}

/// The plan's metadata with the book's fields filled in where `given` (the user's own tag
/// flags) has none: title (also as album), authors and narrators (joined with ", "), series and
/// part, description, genres (joined with "/") and year. The comment stays the user's.
pub fn overrides(given: &BookMetadata, b: &BookMeta) -> BookMetadata {
    let join = |v: &[String], sep: &str| (!v.is_empty()).then(|| v.join(sep));
    let or = |mine: &Option<String>, theirs: Option<String>| {
        mine.clone()
            .or_else(|| theirs.filter(|s| !s.trim().is_empty()))
    };
    let (series, part) = match &b.series {
        Some(s) => (Some(s.name.clone()), s.position.clone()),
        None => (None, None),
    };
    let title = or(&given.title, Some(b.title.clone()));
    BookMetadata {
        title: title.clone(),
        author: or(&given.author, join(&b.authors, ", ")),
        narrator: or(&given.narrator, join(&b.narrators, ", ")),
        album: or(&given.album, title),
        genre: or(&given.genre, join(&b.genres, "/")),
        year: or(&given.year, b.year()),
        description: or(&given.description, b.description.clone()),
        comment: given.comment.clone(),
        series: or(&given.series, series),
        series_part: or(&given.series_part, part),
    }
}

/// What applying the book to one output did (the `metadata` object of `convert --json`).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct AppliedMetadata {
    /// The ASIN applied.
    pub asin: String,
    /// The region it was fetched from.
    pub region: Region,
    /// The provider's title.
    pub title: String,
    /// The match score (`--match auto`), `None` when given by ASIN.
    pub score: Option<f64>,
    /// The file edited (the job's `.part`).
    pub output: PathBuf,
    /// One line per change the in-place edit made (e.g. `publisher: … → …`).
    pub changes: Vec<String>,
    /// Whether the provider's cover was written.
    pub cover: bool,
    /// Audible's chapters as fitted onto this audio, when written.
    pub chapter_fit: Option<ChapterFit>,
    /// What could not be applied, and the edit's own remarks.
    pub warnings: Vec<String>,
}

/// Wraps an engine: prepares and converts through it, then applies a [`ResolvedBook`] to the
/// verified `.part` (see the module docs). One engine is for one book.
#[derive(Debug)]
pub struct MetadataEngine<E> {
    inner: E,
    resolved: ResolvedBook,
    silence: SilenceOptions,
    fit: FitOptions,
    applied: Mutex<Option<AppliedMetadata>>,
}

impl<E> MetadataEngine<E> {
    /// `resolved` applied after `inner`'s conversion; pauses found with `silence`, Audible's
    /// marks fitted with `fit`.
    pub fn new(inner: E, resolved: ResolvedBook, silence: SilenceOptions, fit: FitOptions) -> Self {
        MetadataEngine {
            inner,
            resolved,
            silence,
            fit,
            applied: Mutex::new(None),
        }
    }

    /// The wrapped engine.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// What the last successful conversion's application did.
    pub fn applied(&self) -> Option<AppliedMetadata> {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies the book to `path` (a verified M4B whose tags are `written`): publisher, ASIN,
    /// `©grp` "Series #part" (from the series actually written), the cover and the fitted
    /// chapters. Never fails: what cannot be applied is a warning and leaves the file as it
    /// was in that respect.
    pub fn apply_to(&self, path: &Path, written: &BookMetadata) -> AppliedMetadata {
        apply_resolved(&self.resolved, self.silence, self.fit, path, written)
    }
}

/// [`MetadataEngine::apply_to`] for any resolved book.
fn apply_resolved(
    r: &ResolvedBook,
    silence: SilenceOptions,
    fit: FitOptions,
    path: &Path,
    written: &BookMetadata,
) -> AppliedMetadata {
    let opts = ApplyOptions {
        silence,
        fit,
        dry_run: false,
    };
    match apply_book(path, r, rest_of_tags(&r.book, written), &opts) {
        Ok((applied, _)) => applied,
        Err(e) => AppliedMetadata {
            asin: r.book.asin.clone(),
            region: r.book.region,
            title: r.book.title.clone(),
            score: r.score,
            output: path.to_path_buf(),
            changes: Vec::new(),
            cover: false,
            chapter_fit: None,
            warnings: vec![format!(
                "{e}; the book keeps what the conversion wrote (tags from the plan, the \
                 folder's cover and chapters); `aiom4b tag BOOK.m4b --asin {}` can try again",
                r.book.asin
            )],
        },
    }
}

/// The tag fields the conversion does not write: publisher, ASIN, and `©grp` from the series
/// the conversion wrote (so that a user's `--series` wins there too).
fn rest_of_tags(b: &BookMeta, written: &BookMetadata) -> TagEdits {
    let all = tag_edits(b);
    let grouping = match (&written.series, &written.series_part) {
        (Some(s), Some(p)) => FieldEdit::Set(format!("{s} #{p}")),
        (Some(s), None) => FieldEdit::Set(s.clone()),
        _ => FieldEdit::Keep,
    };
    TagEdits {
        publisher: all.publisher,
        asin: all.asin,
        grouping,
        ..TagEdits::default()
    }
}

impl<E: JobEngine> JobEngine for MetadataEngine<E> {
    type Plan = E::Plan;

    fn prepare(
        &self,
        folders: &[PathBuf],
        events: &JobEventSink<'_>,
    ) -> Result<Self::Plan, JobError> {
        self.inner.prepare(folders, events)
    }

    /// The inner conversion, then the book applied to its verified output; the application's
    /// warnings join the result's.
    fn convert(
        &self,
        ctx: &JobContext<'_>,
        plan: &Self::Plan,
    ) -> Result<ConversionResult, JobError> {
        let mut result = self.inner.convert(ctx, plan)?;
        let applied = self.apply_to(&result.output, &result.metadata);
        after_application(&mut result, &applied);
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = Some(applied);
        Ok(result)
    }

    fn split_at(&self) -> Option<crate::SplitAt> {
        self.inner.split_at()
    }
}

/// The conversion's result after a book was applied to its output: the application's warnings
/// join the result's, and the report describes the file as it now is (Audible's chapters, its
/// size).
fn after_application(result: &mut ConversionResult, applied: &AppliedMetadata) {
    result.warnings.extend(applied.warnings.iter().cloned());
    if let Some(report) = result.report.as_mut() {
        if let Some(f) = &applied.chapter_fit {
            report.chapters = f.chapters();
            // The conversion's snapping is of chapters no longer there.
            report.snapped.clear();
        }
        if let Ok(m) = std::fs::metadata(&result.output) {
            report.size_bytes = m.len();
        }
    }
}

/// `--match auto` for many books (`batch`, `convert --each`): each job matches its own book
/// while it is prepared — the folder planned, Audible's catalog searched with what it says
/// (tags or folder name, author, exact length), the best candidate taken when its score
/// reaches the threshold, the folder planned again with the book's fields as overrides (the
/// user's own flags still win) — and after the conversion the rest (publisher, ASIN, `©grp`,
/// cover, Audible's chapters fitted to the pauses) is written into the verified `.part`, as
/// [`MetadataEngine`] does for one book. No match, or a provider that fails, is a warning in
/// the job's result: the book is converted with the folder's tags.
#[derive(Debug)]
pub struct AutoMatchEngine {
    inner: BookEngine,
    providers: Providers,
    region: Region,
    threshold: f64,
    chapters: bool,
    cover: bool,
    silence: SilenceOptions,
    fit: FitOptions,
}

impl AutoMatchEngine {
    /// Matches each book in `region` against `threshold`; fetches Audible's chapter list when
    /// `chapters` and its cover when `cover`; fits with `fit` on pauses found with the
    /// engine's silence options.
    pub fn new(
        inner: BookEngine,
        providers: Providers,
        region: Region,
        threshold: f64,
        chapters: bool,
        cover: bool,
        fit: FitOptions,
    ) -> Self {
        let silence = inner.convert.silence;
        AutoMatchEngine {
            inner,
            providers,
            region,
            threshold,
            chapters,
            cover,
            silence,
            fit,
        }
    }
}

/// A planned book and what [`AutoMatchEngine`] found for it.
#[derive(Debug)]
pub struct MatchedBook {
    /// The plan (with the matched book's fields when one was found).
    pub book: crate::Book,
    /// The matched book, to apply after the conversion.
    pub resolved: Option<ResolvedBook>,
    /// Why none was, or what could not be had.
    pub notes: Vec<String>,
}

impl JobEngine for AutoMatchEngine {
    type Plan = MatchedBook;

    fn prepare(
        &self,
        folders: &[PathBuf],
        events: &JobEventSink<'_>,
    ) -> Result<Self::Plan, JobError> {
        let book = self.inner.prepare(folders, events)?;
        let mut req = LookupRequest::new(
            LookupBy::Match {
                local: super::rank::LocalBook::from_book(&book),
                threshold: self.threshold,
            },
            self.region,
        );
        req.chapters = self.chapters;
        req.cover = self.cover;
        req.keeping = "keeping the folder's tags".into();
        let found = self.providers.resolve(&req);
        let mut notes = found.warnings;
        notes.extend(found.notice);
        let Some(resolved) = found.resolved else {
            return Ok(MatchedBook {
                book,
                resolved: None,
                notes,
            });
        };
        tracing::info!(
            asin = %resolved.book.asin,
            title = %resolved.book.title,
            score = resolved.score,
            "matched on Audible"
        );
        let mut plan = self.inner.plan.clone();
        plan.overrides = overrides(&plan.overrides, &resolved.book);
        let book = crate::plan::plan(folders, &self.inner.scan, &self.inner.limits, &plan)?;
        Ok(MatchedBook {
            book,
            resolved: Some(resolved),
            notes,
        })
    }

    fn convert(
        &self,
        ctx: &JobContext<'_>,
        plan: &Self::Plan,
    ) -> Result<ConversionResult, JobError> {
        let mut inner = self.inner.clone();
        if plan.resolved.as_ref().is_some_and(|r| r.chapters.is_some()) {
            // Audible's marks replace the files' marks: snapping those is wasted work.
            inner.convert.snap_to_silence = None;
        }
        let mut result = inner.convert(ctx, &plan.book)?;
        result.warnings.extend(plan.notes.iter().cloned());
        if let Some(resolved) = &plan.resolved {
            let applied = apply_resolved(
                resolved,
                self.silence,
                self.fit,
                &result.output,
                &result.metadata,
            );
            after_application(&mut result, &applied);
        }
        Ok(result)
    }

    fn split_at(&self) -> Option<crate::SplitAt> {
        self.inner.split_at()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::SeriesRef;

    fn book() -> BookMeta {
        BookMeta {
            asin: "B002UZMLXM".into(),
            title: "The Final Empire".into(),
            authors: vec!["Brandon Sanderson".into()],
            narrators: vec!["Michael Kramer".into()],
            series: Some(SeriesRef {
                name: "Mistborn".into(),
                position: Some("1".into()),
            }),
            genres: vec!["Fantasy".into(), "Epic".into()],
            release_date: Some("2008-04-01".into()),
            publisher: Some("Macmillan Audio".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_users_flags_win_over_the_providers_fields() {
        let given = BookMetadata {
            title: Some("My Title".into()),
            comment: Some("mine".into()),
            ..Default::default()
        };
        let m = overrides(&given, &book());
        assert_eq!(m.title.as_deref(), Some("My Title"));
        assert_eq!(m.album.as_deref(), Some("My Title"));
        assert_eq!(m.author.as_deref(), Some("Brandon Sanderson"));
        assert_eq!(m.narrator.as_deref(), Some("Michael Kramer"));
        assert_eq!(m.series.as_deref(), Some("Mistborn"));
        assert_eq!(m.series_part.as_deref(), Some("1"));
        assert_eq!(m.genre.as_deref(), Some("Fantasy/Epic"));
        assert_eq!(m.year.as_deref(), Some("2008"));
        assert_eq!(m.description, None);
        assert_eq!(m.comment.as_deref(), Some("mine"));
    }

    #[test]
    fn the_edit_writes_only_what_the_conversion_cannot() {
        let written = BookMetadata {
            series: Some("Other".into()),
            series_part: Some("2".into()),
            ..Default::default()
        };
        let t = rest_of_tags(&book(), &written);
        assert_eq!(t.title, FieldEdit::Keep);
        assert_eq!(t.author, FieldEdit::Keep);
        assert_eq!(t.series, FieldEdit::Keep);
        assert_eq!(t.publisher, FieldEdit::Set("Macmillan Audio".into()));
        assert_eq!(t.asin, FieldEdit::Set("B002UZMLXM".into()));
        assert_eq!(t.grouping, FieldEdit::Set("Other #2".into()));
        let none = rest_of_tags(&book(), &BookMetadata::default());
        assert_eq!(none.grouping, FieldEdit::Keep);
    }
}
