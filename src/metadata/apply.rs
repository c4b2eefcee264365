//! Applying a provider's book to a file: the tag edits it means, and its chapter list fitted
//! to the file's pauses. `aiom4b tag` and the service use these; `edit::edit_book` writes.
use super::fit::{self, ChapterFit, FitOptions};
use super::rank::LocalBook;
use super::{BookMeta, ChapterList};
use crate::edit::{FieldEdit, TagEdits};
use crate::error::Result;
use crate::silence::{self, SilenceOptions};
use std::path::Path;

fn set(v: Option<String>) -> FieldEdit {
    match v {
        Some(s) if !s.trim().is_empty() => FieldEdit::Set(s),
        _ => FieldEdit::Keep,
    }
}

/// The tag fields of `b`: title, authors and narrators (joined with ", "), series and part
/// (also as `©grp` "Series #part", which players group by), genres (joined with "/", as
/// Audiobookshelf and the Mp3tag Audible scripts separate them), year, description,
/// publisher and ASIN. Fields the provider does not give are kept as they are; the comment
/// is never touched.
pub fn tag_edits(b: &BookMeta) -> TagEdits {
    let join = |v: &[String]| (!v.is_empty()).then(|| v.join(", "));
    let (series, part) = match &b.series {
        Some(s) => (Some(s.name.clone()), s.position.clone()),
        None => (None, None),
    };
    let grouping = series.as_ref().map(|s| match &part {
        Some(p) => format!("{s} #{p}"),
        None => s.clone(),
    });
    TagEdits {
        title: FieldEdit::Set(b.title.clone()),
        author: set(join(&b.authors)),
        narrator: set(join(&b.narrators)),
        series: set(series),
        series_part: set(part),
        genre: set((!b.genres.is_empty()).then(|| b.genres.join("/"))),
        year: set(b.year()),
        description: set(b.description.clone()),
        comment: FieldEdit::Keep,
        publisher: set(b.publisher.clone()),
        grouping: set(grouping),
        asin: FieldEdit::Set(b.asin.clone()),
    }
}

/// Fits `list` onto the M4B/M4A at `path`: one decode finds its pauses (those of at least
/// `silence.min_pause_secs` are the snap candidates), then [`fit::fit`].
pub fn fit_to_file(
    path: &Path,
    list: &ChapterList,
    silence: &SilenceOptions,
    opts: &FitOptions,
) -> Result<ChapterFit> {
    let found = silence::detect_file(path, silence)?;
    let pauses = silence::chapter_pauses(&found.pauses, found.sample_rate, silence);
    fit::fit(list, found.total_samples, found.sample_rate, &pauses, opts)
}

impl LocalBook {
    /// What a planned book (a folder before conversion) says: its metadata (tags, or the
    /// folder's name) and the exact length of its MP3s.
    pub fn from_book(book: &crate::Book) -> LocalBook {
        let m = &book.metadata;
        LocalBook {
            title: m.title.clone().or_else(|| m.album.clone()),
            author: m.author.clone(),
            narrator: m.narrator.clone(),
            duration_secs: Some(book.duration_secs()).filter(|d| *d > 0.0),
        }
    }

    /// What a finished book says: its tags and its exact decoded length.
    pub fn from_summary(s: &crate::verify::M4bSummary) -> LocalBook {
        let t = &s.tags;
        LocalBook {
            title: t.title.clone().or_else(|| t.album.clone()),
            author: t.artist.clone().or_else(|| t.album_artist.clone()),
            narrator: t.narrator.clone().or_else(|| t.composer.clone()),
            duration_secs: Some(s.duration_secs).filter(|d| *d > 0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::SeriesRef;

    #[test]
    fn a_book_becomes_tag_edits_and_missing_fields_are_kept() {
        let b = BookMeta {
            asin: "B002UZMLXM".into(),
            title: "The Final Empire".into(),
            authors: vec!["A One".into(), "B Two".into()],
            series: Some(SeriesRef {
                name: "Mistborn".into(),
                position: Some("1".into()),
            }),
            genres: vec!["Fantasy".into(), "Epic".into()],
            release_date: Some("2008-04-01".into()),
            ..Default::default()
        };
        let t = tag_edits(&b);
        assert_eq!(t.author, FieldEdit::Set("A One, B Two".into()));
        assert_eq!(t.grouping, FieldEdit::Set("Mistborn #1".into()));
        assert_eq!(t.genre, FieldEdit::Set("Fantasy/Epic".into()));
        assert_eq!(t.year, FieldEdit::Set("2008".into()));
        assert_eq!(t.narrator, FieldEdit::Keep);
        assert_eq!(t.publisher, FieldEdit::Keep);
        assert_eq!(t.comment, FieldEdit::Keep);
        assert_eq!(t.asin, FieldEdit::Set("B002UZMLXM".into()));
    }
}
