//! The library layout (`convert --organize`, `OUTPUT_LAYOUT=library`; issue 19): the book in
//! `library/Author/Series/Part - Title/Title.m4b` with `desc.txt`, `reader.txt`,
//! `metadata.opf` and the cover beside it. The OPF is read back with an XML parser that did not
//! write it (roxmltree), the cover compared with the book's own, and a second book of the same
//! name gets a folder of its own (nothing replaced).
use crate::cli_workflow::{code, hidden, text, Env};
use std::fs;
use std::path::{Path, PathBuf};

const TAGS: [&str; 14] = [
    "--title",
    "The Final Empire",
    "--author",
    "Brandon Sanderson",
    "--narrator",
    "Michael Kramer",
    "--series",
    "Mistborn",
    "--series-part",
    "1",
    "--description",
    "A <heist> & an empire.",
    "--genre",
    "Fantasy/Epic",
];

/// Converts `source/name` with `--organize` and `extra`; returns the published book.
fn organize(env: &Env, name: &str, extra: &[&str]) -> PathBuf {
    let src = env.source().join(name);
    let mut args = vec!["convert", "--json", "--organize", src.to_str().unwrap()];
    args.extend(extra);
    let out = env.run(&args);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    PathBuf::from(doc["output_path"].as_str().unwrap())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn organize_files_the_book_with_sidecars_and_never_shares_a_folder() {
    let env = Env::new();
    let dir = env.book("Mistborn 1", 2, 1.0);
    let jpeg = aiom4b_testkit::fixtures::test_jpeg(64, 48);
    fs::write(dir.join("cover.jpg"), &jpeg).unwrap();
    let book = organize(&env, "Mistborn 1", &TAGS);
    let folder = env
        .output_dir()
        .join("library/Brandon Sanderson/Mistborn/1 - The Final Empire");
    assert_eq!(book, folder.join("The Final Empire.m4b"));
    assert_eq!(
        names(&folder),
        [
            "The Final Empire.m4b",
            "cover.jpg",
            "desc.txt",
            "metadata.opf",
            "reader.txt"
        ]
    );
    assert_eq!(
        fs::read_to_string(folder.join("desc.txt")).unwrap(),
        "A <heist> & an empire.\n"
    );
    assert_eq!(
        fs::read_to_string(folder.join("reader.txt")).unwrap(),
        "Michael Kramer\n"
    );
    // The cover beside the book is the book's own (as written into it).
    let s = aiom4b::verify::summarize(&book).unwrap();
    assert_eq!(s.cover.as_ref().unwrap().bytes, jpeg.len() as u64);
    assert_eq!(fs::read(folder.join("cover.jpg")).unwrap(), jpeg);
    // metadata.opf, read by a parser that did not write it.
    let xml = fs::read_to_string(folder.join("metadata.opf")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    const DC: &str = "http://purl.org/dc/elements/1.1/";
    const OPF: &str = "http://www.idpf.org/2007/opf";
    assert_eq!(doc.root_element().tag_name().name(), "package");
    assert_eq!(doc.root_element().tag_name().namespace(), Some(OPF));
    let dc = |name: &str| -> Vec<(String, Option<String>)> {
        doc.descendants()
            .filter(|n| n.tag_name().name() == name && n.tag_name().namespace() == Some(DC))
            .map(|n| {
                (
                    n.text().unwrap_or("").to_string(),
                    n.attribute((OPF, "role")).map(str::to_string),
                )
            })
            .collect()
    };
    assert_eq!(dc("title"), [("The Final Empire".to_string(), None)]);
    assert_eq!(
        dc("creator"),
        [
            ("Brandon Sanderson".to_string(), Some("aut".to_string())),
            ("Michael Kramer".to_string(), Some("nrt".to_string()))
        ]
    );
    assert_eq!(dc("description")[0].0, "A <heist> & an empire.");
    let subjects: Vec<String> = dc("subject").into_iter().map(|s| s.0).collect();
    assert_eq!(subjects, ["Fantasy", "Epic"]);
    let meta = |name: &str| {
        doc.descendants()
            .find(|n| n.tag_name().name() == "meta" && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("content"))
            .map(str::to_string)
    };
    assert_eq!(meta("calibre:series").as_deref(), Some("Mistborn"));
    assert_eq!(meta("calibre:series_index").as_deref(), Some("1"));

    // The same book again: a folder of its own; the first is untouched.
    let before: Vec<Vec<u8>> = names(&folder)
        .iter()
        .map(|n| fs::read(folder.join(n)).unwrap())
        .collect();
    let again = organize(&env, "Mistborn 1", &TAGS);
    let second = folder.with_file_name("1 - The Final Empire (2)");
    assert_eq!(again, second.join("The Final Empire.m4b"));
    assert_eq!(names(&second).len(), 5);
    let after: Vec<Vec<u8>> = names(&folder)
        .iter()
        .map(|n| fs::read(folder.join(n)).unwrap())
        .collect();
    assert!(before == after, "the first book's folder is unchanged");

    // No series: no series level; no narrator, no description: no reader.txt, desc.txt; no
    // cover: no cover file. Nothing hidden is left anywhere.
    env.book("Plain", 2, 1.0);
    let plain = organize(
        &env,
        "Plain",
        &["--title", "Solo", "--author", "Ann Author"],
    );
    assert_eq!(
        plain,
        env.output_dir().join("library/Ann Author/Solo/Solo.m4b")
    );
    assert_eq!(names(plain.parent().unwrap()), ["Solo.m4b", "metadata.opf"]);
    for d in [&folder, &second, &plain.parent().unwrap().to_path_buf()] {
        assert!(hidden(d).is_empty(), "{}: {:?}", d.display(), hidden(d));
    }
    assert!(hidden(&env.output_dir()).is_empty());
}

#[test]
fn the_library_template_is_configurable_and_checked() {
    let env = Env::new();
    env.book("B", 2, 1.0);
    let mut cmd = env.command(&[
        "convert",
        "--json",
        env.source().join("B").to_str().unwrap(),
        "--title",
        "T",
        "--author",
        "A",
        "--narrator",
        "N",
    ]);
    cmd.env("OUTPUT_LAYOUT", "library")
        .env("LIBRARY_TEMPLATE", "{narrator}/{year} - {title}");
    let out = cmd.output().unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(env.output_dir().join("library/N/T/T.m4b").is_file());

    for (bad, says) in [
        ("{author}/{nope}/{title}", "unknown placeholder {nope}"),
        ("{title}/{author}", "must contain {title}"),
    ] {
        let mut cmd = env.command(&["convert", env.source().join("B").to_str().unwrap()]);
        cmd.env("LIBRARY_TEMPLATE", bad);
        let out = cmd.output().unwrap();
        assert_eq!(code(&out), 2, "{bad}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains("LIBRARY_TEMPLATE") && err.contains(says),
            "{bad}: {err}"
        );
    }
    let out = env.run(&["convert", "--organize", "--name-template", "{title}", "x"]);
    assert_eq!(code(&out), 2, "--organize names the file itself");
}
