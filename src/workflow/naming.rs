//! Output names: template → sanitized file name (publishing is `crate::publish`'s).
//!
//! Placeholders: `{title}`, `{author}`, `{narrator}`, `{series}`, `{year}`, `{folder}` (the
//! first source folder's name) and `{timestamp}` (`YYYYMMDD_HHMMSS`, local time). A template
//! without `{timestamp}` is used as written; when the name is taken, ` (2)`, ` (3)`, … is added.
use crate::model::BookMetadata;

const PLACEHOLDERS: [&str; 7] = [
    "title",
    "author",
    "narrator",
    "series",
    "year",
    "folder",
    "timestamp",
];

/// Checks that a template only uses known placeholders and has balanced braces.
pub fn check_template(template: &str) -> std::result::Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}}; known: {}",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
            ));
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unmatched '}}' in {template:?}"));
    }
    if template.trim().is_empty() {
        return Err("the template is empty".into());
    }
    Ok(())
}

/// The local time as used in names: `YYYYMMDD_HHMMSS`.
pub fn timestamp(t: chrono::DateTime<chrono::Local>) -> String {
    t.format("%Y%m%d_%H%M%S").to_string()
}

/// Fills the template and sanitizes the result into a file stem (no extension).
/// Missing fields fall back to the folder name (title) or `Unknown`.
pub fn render(template: &str, meta: &BookMetadata, folder: &str, timestamp: &str) -> String {
    let unknown = || "Unknown".to_string();
    let value = |name: &str| -> String {
        let nonempty = |s: &Option<String>| s.clone().filter(|v| !v.trim().is_empty());
        match name {
            "title" => nonempty(&meta.title)
                .or_else(|| nonempty(&meta.album))
                .unwrap_or_else(|| folder.to_string()),
            "author" => nonempty(&meta.author).unwrap_or_else(unknown),
            "narrator" => nonempty(&meta.narrator).unwrap_or_else(unknown),
            "series" => nonempty(&meta.series).unwrap_or_default(),
            "year" => nonempty(&meta.year).unwrap_or_default(),
            "folder" => folder.to_string(),
            "timestamp" => timestamp.to_string(),
            _ => String::new(),
        }
    };
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                out.push_str(&value(&after[..close]));
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    // The whole name is sanitized (not only the values), so a template can't inject '/' either.
    crate::sanitize::sanitize_file_stem(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert!(check_template("{author} - {title}").is_ok());
        assert!(check_template("{autor}").is_err());
        assert!(check_template("{title").is_err());
        let meta = BookMetadata {
            title: Some("Dune".into()),
            author: Some("Frank Herbert".into()),
            ..Default::default()
        };
        assert_eq!(
            render(
                "{author} - {title}",
                &meta,
                "dune-folder",
                "20240101_000000"
            ),
            "Frank Herbert - Dune"
        );
        assert_eq!(
            render(
                "{title}_{timestamp}",
                &BookMetadata::default(),
                "Folder",
                "20240101_000000"
            ),
            "Folder_20240101_000000"
        );
    }
}
