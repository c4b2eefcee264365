//! What the program tells the user when something is off: damaged backups are listed as
//! damaged. End to end through the binary, with the helpers of `cli_workflow`.
use crate::cli_workflow::{code, text, Env};
use aiom4b::workflow::BackupStore;
use serde_json::Value;
use std::fs;

// --- damaged backups ---------------------------------------------------------------------------

#[test]
fn damaged_backups_are_listed_and_verified_as_damaged() {
    let env = Env::new();
    let store = BackupStore::new(env.data().join("backup"));
    let intact = store.create(&env.book("Intact", 1, 0.5), None).unwrap();
    let empty = store.create(&env.book("Emptied", 1, 0.5), None).unwrap();
    let garbled = store.create(&env.book("Garbled", 2, 0.5), None).unwrap();
    fs::write(empty.path.join("metadata.txt"), b"").unwrap();
    fs::write(
        garbled.path.join("metadata.txt"),
        "# aiom4b backup\nversion: 1\n---\nfile\tnot-a-hash\tten\t01.mp3\n",
    )
    .unwrap();
    // A folder that is not a backup (no manifest, no backup name) is not aiom4b's business.
    fs::create_dir_all(store.dir().join("my notes")).unwrap();

    // The library lists all three, the two broken ones with the reason.
    let listed = store.list().unwrap();
    let names: Vec<&str> = listed.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for b in &listed {
        assert_eq!(b.damaged.is_some(), b.name != intact.name, "{b:?}");
    }
    let damaged_empty = listed.iter().find(|b| b.name == empty.name).unwrap();
    assert!(
        damaged_empty
            .damaged
            .as_deref()
            .unwrap()
            .contains("metadata.txt: empty"),
        "{damaged_empty:?}"
    );
    assert_eq!(damaged_empty.files, 1, "the files that are there");

    let out = env.run(&["backup", "list"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for b in [&empty, &garbled] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&b.name))
            .unwrap_or_else(|| panic!("{} not listed:\n{table}", b.name));
        assert!(row.contains("DAMAGED"), "{row}");
    }
    assert!(table.contains(&intact.name), "{table}");
    assert!(!table.contains("my notes"), "{table}");

    let out = env.run(&["backup", "list", "--json"]);
    assert_eq!(code(&out), 1);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 3, "{json:#}");
    let garbled_json = list.iter().find(|b| b["name"] == garbled.name).unwrap();
    assert!(
        garbled_json["damaged"]
            .as_str()
            .unwrap()
            .contains("malformed"),
        "{garbled_json:#}"
    );
    assert_eq!(garbled_json["source"], Value::Null);

    let out = env.run(&["backup", "verify"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for b in [&empty, &garbled] {
        assert!(
            report.contains(&format!("DAMAGED {}", b.name)),
            "{}:\n{report}",
            b.name
        );
    }
    assert!(
        report.contains(&format!("ok      {}", intact.name)),
        "{report}"
    );

    // By name too, and a damaged backup is never restored.
    let out = env.run(&["backup", "verify", &empty.name]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    let restore_to = env.data().join("restored");
    let out = env.run(&[
        "backup",
        "restore",
        &garbled.name,
        "--to",
        restore_to.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    assert!(!restore_to.join("Garbled").exists());
}

#[test]
fn a_backup_whose_manifest_was_deleted_is_damaged_not_absent() {
    let env = Env::new();
    let store = BackupStore::new(env.data().join("backup"));
    let b = store.create(&env.book("Dune", 1, 0.5), None).unwrap();
    fs::remove_file(b.path.join("metadata.txt")).unwrap();
    let out = env.run(&["backup", "list"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("metadata.txt: missing"),
        "{}",
        text(&out.stdout)
    );
    let out = env.run(&["backup", "verify"]);
    assert_eq!(code(&out), 1);
    assert!(text(&out.stdout).contains(&format!("DAMAGED {}", b.name)));
}
