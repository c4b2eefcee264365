//! The library layout (`OUTPUT_LAYOUT=library`, `convert --organize`): each book in a folder of
//! its own under `DATA_DIR/output/library/`, named by `LIBRARY_TEMPLATE` (default
//! `{author}/{series}/{series_part} - {title}`), the file named after the title, and beside it
//! the sidecar files that Audiobookshelf (and Plex's and Jellyfin's audiobook agents) read:
//! `desc.txt` (the description), `reader.txt` (the narrator), `metadata.opf` (Dublin Core with
//! calibre's series fields, as Audiobookshelf's OPF reader takes them) and `cover.jpg`
//! (`cover.png` for a PNG cover).
//!
//! A placeholder without a value is left out together with the separator next to it, and a
//! folder level left without any value is left out: a book without a series is filed as
//! `Author/Title/Title.m4b`. Every level is sanitized like an output name. A book's folder is
//! never shared: when it exists and is not empty, ` (2)`, ` (3)` … is added to the last level,
//! so nothing is ever replaced or mixed up with another book's sidecars.
use crate::model::{BookMetadata, Picture};
use crate::sanitize::sanitize_file_stem;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The default `LIBRARY_TEMPLATE`.
pub const DEFAULT_LIBRARY_TEMPLATE: &str = "{author}/{series}/{series_part} - {title}";

/// The placeholders a library template may use.
const PLACEHOLDERS: [&str; 7] = [
    "title",
    "author",
    "narrator",
    "series",
    "series_part",
    "year",
    "folder",
];

/// Where a book goes when no author is known (Audiobookshelf groups a library by its first
/// level).
const UNKNOWN_AUTHOR: &str = "Unknown Author";

/// Checks a library template: known placeholders, balanced braces, no empty level, `{title}`
/// in the last level (so that two books of one author never share a folder by design).
pub fn check_template(template: &str) -> std::result::Result<(), String> {
    let levels: Vec<&str> = template.split('/').collect();
    for level in &levels {
        let tokens = tokens(level)?;
        if !tokens.iter().any(|t| matches!(t, Token::Var(_))) {
            return Err(format!(
                "level {level:?} of {template:?} has no placeholder; every level needs one, e.g. {DEFAULT_LIBRARY_TEMPLATE}"
            ));
        }
        for t in tokens {
            if let Token::Var(name) = t {
                if !PLACEHOLDERS.contains(&name) {
                    return Err(format!(
                        "unknown placeholder {{{name}}}; known: {}",
                        PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
                    ));
                }
            }
        }
    }
    if !levels.last().is_some_and(|l| l.contains("{title}")) {
        return Err(format!(
            "the last level of {template:?} must contain {{title}}, e.g. {DEFAULT_LIBRARY_TEMPLATE}"
        ));
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Lit(&'a str),
    Var(&'a str),
}

fn tokens(level: &str) -> std::result::Result<Vec<Token<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = level;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            out.push(Token::Lit(&rest[..open]));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {level:?}"))?;
        out.push(Token::Var(&after[..close]));
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unmatched '}}' in {level:?}"));
    }
    if !rest.is_empty() {
        out.push(Token::Lit(rest));
    }
    if out.is_empty() {
        return Err("a level of the library template is empty".into());
    }
    Ok(out)
}

/// The value of a placeholder; empty when the book has none.
fn value(name: &str, meta: &BookMetadata, folder: &str) -> String {
    let get = |s: &Option<String>| s.as_deref().map(str::trim).unwrap_or("").to_string();
    match name {
        "title" => title(meta, folder),
        "author" => match get(&meta.author) {
            a if a.is_empty() => UNKNOWN_AUTHOR.into(),
            a => a,
        },
        "narrator" => get(&meta.narrator),
        "series" => get(&meta.series),
        "series_part" => get(&meta.series_part),
        "year" => get(&meta.year),
        "folder" => folder.to_string(),
        _ => String::new(),
    }
}

/// The book's title: its title tag, else its album, else the folder's name.
pub fn title(meta: &BookMetadata, folder: &str) -> String {
    [&meta.title, &meta.album]
        .into_iter()
        .flatten()
        .map(|s| s.trim())
        .find(|s| !s.is_empty())
        .unwrap_or(folder)
        .to_string()
}

/// Characters that join a placeholder to its neighbour (` - `, `, `, `_` …): dropped with an
/// empty placeholder.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || "-–—_.,;:#".contains(c)
}

/// One level rendered: `None` when none of its placeholders has a value.
fn render_level(level: &str, meta: &BookMetadata, folder: &str) -> Option<String> {
    let toks = tokens(level).ok()?;
    let vals: Vec<Option<String>> = toks
        .iter()
        .map(|t| match t {
            Token::Var(n) => Some(value(n, meta, folder)),
            Token::Lit(_) => None,
        })
        .collect();
    if !vals.iter().flatten().any(|v| !v.is_empty()) {
        return None;
    }
    let mut out = String::new();
    let mut skip_separator = false;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Token::Var(_) => {
                let v = vals[i].as_deref().unwrap_or("");
                if v.is_empty() {
                    // Drop the separator before it (already written) or, at the start, after it.
                    let trimmed = out.trim_end_matches(is_separator).len();
                    if trimmed == 0 {
                        skip_separator = true;
                    }
                    out.truncate(trimmed);
                } else {
                    out.push_str(v);
                    skip_separator = false;
                }
            }
            Token::Lit(l) => {
                if skip_separator {
                    out.push_str(l.trim_start_matches(is_separator));
                } else {
                    out.push_str(l);
                }
                skip_separator = false;
            }
        }
    }
    // Brackets around a placeholder that had no value.
    let out = out.replace("()", "").replace("[]", "");
    let s = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let s = s.trim_matches(is_separator);
    (!s.is_empty()).then(|| sanitize_file_stem(s))
}

/// The book's folder relative to the library root, by `template`.
pub fn folder_for(template: &str, meta: &BookMetadata, source_folder: &str) -> PathBuf {
    let mut p = PathBuf::new();
    for level in template.split('/') {
        if let Some(name) = render_level(level, meta, source_folder) {
            p.push(name);
        }
    }
    if p.as_os_str().is_empty() {
        p.push(sanitize_file_stem(&title(meta, source_folder)));
    }
    p
}

/// The first of `dir`, `dir (2)`, `dir (3)` … that does not exist or is an empty folder.
pub fn free_folder(dir: &Path) -> PathBuf {
    let free = |d: &Path| match std::fs::read_dir(d) {
        Ok(mut entries) => entries.next().is_none(),
        Err(_) => std::fs::symlink_metadata(d).is_err(),
    };
    if free(dir) {
        return dir.to_path_buf();
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (2..)
        .map(|n| dir.with_file_name(format!("{name} ({n})")))
        .find(|d| free(d))
        .expect("an unbounded range")
}

/// Removes `folder` and the levels above it while they are empty, stopping at `root` (a book
/// folder made for a job that then published nothing).
pub fn prune_empty(folder: &Path, root: &Path) {
    let mut dir = Some(folder);
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// One file written beside the book.
#[derive(Debug, Clone, PartialEq)]
pub struct Sidecar {
    /// Its name in the book's folder.
    pub name: &'static str,
    /// Its contents.
    pub data: Vec<u8>,
}

/// What a book's sidecars carry besides its [`BookMetadata`]: identifiers and the cover as
/// stored in the published file.
#[derive(Debug, Clone, Copy, Default)]
pub struct BookExtras<'a> {
    /// Audible's product id (`----:com.apple.iTunes:ASIN`).
    pub asin: Option<&'a str>,
    /// The publisher.
    pub publisher: Option<&'a str>,
    /// The cover.
    pub cover: Option<&'a Picture>,
}

/// The sidecar files of a book: `desc.txt` and `reader.txt` when it has a description and a
/// narrator, `metadata.opf` always, the cover as `cover.jpg` or `cover.png` when it has one.
pub fn sidecars(meta: &BookMetadata, title: &str, extras: BookExtras<'_>) -> Vec<Sidecar> {
    let mut out = Vec::new();
    let text = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| format!("{s}\n").into_bytes())
    };
    if let Some(d) = text(&meta.description) {
        out.push(Sidecar {
            name: "desc.txt",
            data: d,
        });
    }
    if let Some(r) = text(&meta.narrator) {
        out.push(Sidecar {
            name: "reader.txt",
            data: r,
        });
    }
    out.push(Sidecar {
        name: "metadata.opf",
        data: opf(meta, title, extras).into_bytes(),
    });
    if let Some(c) = extras.cover {
        out.push(Sidecar {
            name: if c.mime == "image/png" {
                "cover.png"
            } else {
                "cover.jpg"
            },
            data: c.data.clone(),
        });
    }
    out
}

/// Splits a list of names as tags write them ("A, B", "A & B", "A; B").
fn names(s: &Option<String>) -> Vec<String> {
    s.as_deref()
        .unwrap_or("")
        .split([',', ';', '&'])
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// The OPF package document: Dublin Core title, creators (`aut`), narrators (`nrt`),
/// description, publisher, date, subjects (the genre, split at `/`), the identifier (the ASIN
/// as `opf:scheme="ASIN"`, else a UUID: the package's `unique-identifier` must name one), and
/// calibre's `calibre:series` / `calibre:series_index` — the fields Audiobookshelf's OPF
/// reader takes.
pub fn opf(meta: &BookMetadata, title: &str, extras: BookExtras<'_>) -> String {
    use quick_xml::escape::escape;
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <package xmlns=\"http://www.idpf.org/2007/opf\" version=\"2.0\" unique-identifier=\"BookId\">\n\
         \x20 <metadata xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:opf=\"http://www.idpf.org/2007/opf\">\n",
    );
    let mut el = |tag: &str, attrs: &str, v: &str| {
        let _ = writeln!(x, "    <{tag}{attrs}>{}</{tag}>", escape(v));
    };
    match extras.asin.map(str::trim).filter(|a| !a.is_empty()) {
        Some(asin) => el("dc:identifier", " id=\"BookId\" opf:scheme=\"ASIN\"", asin),
        None => el(
            "dc:identifier",
            " id=\"BookId\" opf:scheme=\"uuid\"",
            &format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        ),
    }
    el("dc:title", "", title);
    for a in names(&meta.author) {
        el("dc:creator", " opf:role=\"aut\"", &a);
    }
    for n in names(&meta.narrator) {
        el("dc:creator", " opf:role=\"nrt\"", &n);
    }
    let field = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(d) = field(&meta.description) {
        el("dc:description", "", &d);
    }
    if let Some(p) = extras.publisher.map(str::trim).filter(|p| !p.is_empty()) {
        el("dc:publisher", "", p);
    }
    if let Some(y) = field(&meta.year) {
        el("dc:date", "", &y);
    }
    for g in field(&meta.genre)
        .unwrap_or_default()
        .split('/')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        el("dc:subject", "", g);
    }
    if let Some(s) = field(&meta.series) {
        let _ = writeln!(
            x,
            "    <meta name=\"calibre:series\" content=\"{}\"/>",
            escape(s.as_str())
        );
        if let Some(p) = field(&meta.series_part) {
            let _ = writeln!(
                x,
                "    <meta name=\"calibre:series_index\" content=\"{}\"/>",
                escape(p.as_str())
            );
        }
    }
    // Marks the file as aiom4b's, so that a later tag or edit may rewrite it
    // ([`refresh_sidecars`]) and never a file someone else wrote.
    let _ = writeln!(
        x,
        "    <meta name=\"{GENERATOR_META}\" content=\"aiom4b {}\"/>",
        env!("CARGO_PKG_VERSION")
    );
    x.push_str("  </metadata>\n</package>\n");
    x
}

/// The `<meta name=…>` that marks a `metadata.opf` as written by aiom4b.
const GENERATOR_META: &str = "aiom4b:generator";

/// What the tags of a finished book say, as the plan's metadata (for its sidecars).
fn metadata_of(t: &crate::verify::TagSummary) -> BookMetadata {
    let pick = |a: &Option<String>, b: &Option<String>| {
        a.clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| b.clone().filter(|s| !s.trim().is_empty()))
    };
    BookMetadata {
        title: t.title.clone(),
        author: pick(&t.artist, &t.album_artist),
        narrator: pick(&t.narrator, &t.composer),
        album: t.album.clone(),
        genre: t.genre.clone(),
        year: t
            .date
            .as_deref()
            .map(|d| d.chars().take(4).collect::<String>())
            .filter(|y| y.len() == 4 && y.chars().all(|c| c.is_ascii_digit())),
        description: pick(&t.long_description, &t.description),
        comment: t.comment.clone(),
        series: t.series.clone(),
        series_part: t.series_part.clone(),
    }
}

/// [`refresh_sidecars`] for a report: a line in `changes` naming the files rewritten, or a
/// warning when they could not be (the book itself is already edited).
pub fn refresh_sidecars_noted(book: &Path, changes: &mut Vec<String>, warnings: &mut Vec<String>) {
    match refresh_sidecars(book) {
        Ok(w) if w.is_empty() => {}
        Ok(w) => changes.push(format!(
            "beside the book: {} rewritten",
            w.iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(e) => warnings.push(format!(
            "{e}; the files beside the book (metadata.opf …) still describe it as it was"
        )),
    }
}

/// After a tag or an edit of `book`: rewrites the sidecar files beside it from what the book
/// now says, when they are aiom4b's (a `metadata.opf` beside it that aiom4b wrote — the
/// library layout's folder is the book's own). Each file is written to a temporary and renamed
/// over the old one; a cover that is no longer there, or changed format, is removed. Returns
/// the files written (empty: no sidecars of aiom4b's beside the book). The book is not moved
/// when its author or series changed.
pub fn refresh_sidecars(book: &Path) -> crate::Result<Vec<PathBuf>> {
    let Some(folder) = book.parent() else {
        return Ok(Vec::new());
    };
    let opf_path = folder.join("metadata.opf");
    match std::fs::read_to_string(&opf_path) {
        Ok(text) if text.contains(&format!("name=\"{GENERATOR_META}\"")) => {}
        _ => return Ok(Vec::new()),
    }
    let summary = crate::verify::summarize(book)?;
    let stored = crate::split::extras_of(book)?;
    let meta = metadata_of(&summary.tags);
    let folder_name = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let title = title(&meta, &folder_name);
    let extras = BookExtras {
        asin: stored.asin.as_deref(),
        publisher: stored.publisher.as_deref(),
        cover: stored.cover.as_ref(),
    };
    let files = sidecars(&meta, &title, extras);
    let mut written = Vec::new();
    for f in &files {
        let target = folder.join(f.name);
        let temp = folder.join(format!(".{}.aiom4b-refresh", f.name));
        let io = |e| crate::Error::io(&target, "rewrite the sidecar file", e);
        std::fs::write(&temp, &f.data)
            .and_then(|()| std::fs::rename(&temp, &target))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                io(e)
            })?;
        written.push(target);
    }
    for stale in ["cover.jpg", "cover.png", "desc.txt", "reader.txt"] {
        if !files.iter().any(|f| f.name == stale) {
            let _ = std::fs::remove_file(folder.join(stale));
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(author: &str, series: &str, part: &str, title: &str) -> BookMetadata {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        BookMetadata {
            title: opt(title),
            author: opt(author),
            series: opt(series),
            series_part: opt(part),
            ..BookMetadata::default()
        }
    }

    #[test]
    fn levels_without_a_value_are_left_out_with_their_separators() {
        let t = DEFAULT_LIBRARY_TEMPLATE;
        let f = |m: &BookMetadata| folder_for(t, m, "src");
        assert_eq!(
            f(&meta(
                "Brandon Sanderson",
                "Mistborn",
                "1",
                "The Final Empire"
            )),
            PathBuf::from("Brandon Sanderson/Mistborn/1 - The Final Empire")
        );
        assert_eq!(
            f(&meta(
                "Brandon Sanderson",
                "Mistborn",
                "",
                "The Final Empire"
            )),
            PathBuf::from("Brandon Sanderson/Mistborn/The Final Empire")
        );
        assert_eq!(
            f(&meta("Andy Weir", "", "", "Project Hail Mary")),
            PathBuf::from("Andy Weir/Project Hail Mary")
        );
        assert_eq!(
            f(&meta("", "", "", "")),
            PathBuf::from("Unknown Author/src")
        );
        // Names are sanitized per level: a slash in a tag never makes a level.
        assert_eq!(
            f(&meta("AC/DC", "", "", "../../etc")),
            PathBuf::from(format!(
                "{}/{}",
                sanitize_file_stem("AC/DC"),
                sanitize_file_stem("../../etc")
            ))
        );
        assert!(!f(&meta("AC/DC", "", "", "../../etc"))
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir)));
        // A separator after an empty first placeholder, and one before an empty last.
        let m = meta("A", "", "", "T");
        assert_eq!(
            folder_for("{author}/{year} - {title} - {series}", &m, "s"),
            PathBuf::from("A/T")
        );
        assert_eq!(
            folder_for("{author} ({narrator})/{title} [{year}]", &m, "s"),
            PathBuf::from("A/T")
        );
    }

    #[test]
    fn templates_are_checked() {
        assert!(check_template(DEFAULT_LIBRARY_TEMPLATE).is_ok());
        assert!(check_template("{author}/{title}").is_ok());
        for bad in [
            "{author}/{nope}/{title}",
            "{author}//{title}",
            "{author}/Books/{title}",
            "{title}/{author}",
            "{author}/{title",
            "",
        ] {
            assert!(check_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_used_folder_gets_a_number() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("Book");
        assert_eq!(free_folder(&d), d);
        std::fs::create_dir(&d).unwrap();
        assert_eq!(free_folder(&d), d, "an empty folder is free");
        std::fs::write(d.join("x"), b"").unwrap();
        assert_eq!(free_folder(&d), tmp.path().join("Book (2)"));
        std::fs::write(tmp.path().join("Book (2)"), b"a file").unwrap();
        assert_eq!(free_folder(&d), tmp.path().join("Book (3)"));
    }

    #[test]
    fn sidecars_hold_what_the_book_has() {
        let mut m = meta("Anna A & Bert B", "Reisen", "2", "Die <Reise>");
        m.narrator = Some("Nora N".into());
        m.description = Some("Eine \"Beschreibung\" & mehr.".into());
        m.genre = Some("Fantasy/Epic".into());
        m.year = Some("2019".into());
        let cover = Picture {
            mime: "image/png".into(),
            data: vec![0x89, b'P', b'N', b'G'],
            width: None,
            height: None,
        };
        let extras = BookExtras {
            asin: Some("B0TESTASIN"),
            publisher: Some("Verlag & Co"),
            cover: Some(&cover),
        };
        let s = sidecars(&m, "Die <Reise>", extras);
        let names: Vec<&str> = s.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["desc.txt", "reader.txt", "metadata.opf", "cover.png"]
        );
        assert_eq!(s[0].data, b"Eine \"Beschreibung\" & mehr.\n");
        assert_eq!(s[1].data, b"Nora N\n");
        let opf = String::from_utf8(s[2].data.clone()).unwrap();
        assert!(
            opf.contains("<dc:title>Die &lt;Reise&gt;</dc:title>"),
            "{opf}"
        );
        assert!(opf.contains("<dc:creator opf:role=\"aut\">Anna A</dc:creator>"));
        assert!(opf.contains("<dc:creator opf:role=\"aut\">Bert B</dc:creator>"));
        assert!(opf.contains("<dc:creator opf:role=\"nrt\">Nora N</dc:creator>"));
        assert!(opf.contains("<dc:subject>Epic</dc:subject>"));
        assert!(opf.contains("<meta name=\"calibre:series_index\" content=\"2\"/>"));
        assert!(opf.contains(
            "<dc:identifier id=\"BookId\" opf:scheme=\"ASIN\">B0TESTASIN</dc:identifier>"
        ));
        assert!(opf.contains("<dc:publisher>Verlag &amp; Co</dc:publisher>"));
        let bare = sidecars(&meta("", "", "", "T"), "T", BookExtras::default());
        let opf = String::from_utf8(bare[0].data.clone()).unwrap();
        assert!(
            opf.contains("<dc:identifier id=\"BookId\" opf:scheme=\"uuid\">urn:uuid:"),
            "the unique-identifier names an element: {opf}"
        );
        assert_eq!(
            bare.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["metadata.opf"]
        );
    }
}
