//! `verify::summarize` and `verify::check` on arbitrary bytes taken as an `.m4b`: the box
//! reader plus the readers it cross-checks with (Symphonia's MP4 demuxer and AAC decoder,
//! mp4ameta). Nothing may panic — not even inside those readers, where verify would catch it
//! but a user still sees "thread 'main' panicked" on stderr (issue 10, item 13).
//!
//! Until verify validates what it hands to the other readers, a known panic in one of them
//! ends every run within seconds. To explore past it, set `AIOM4B_FUZZ_FOREIGN_PANICS=DIR`:
//! a panic raised inside a crate from the cargo registry is then logged on one line, its input
//! saved once per panic site as `DIR/foreign-<hash>`, and left to verify's `catch_unwind`.
//! Panics in aiom4b itself stay fatal either way.
#![no_main]
use aiom4b::verify::{check, summarize, Expectations};
use aiom4b_fuzz::MemFile;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Mutex;

thread_local! {
    static FILE: RefCell<MemFile> = RefCell::new(MemFile::new("verify.m4b"));
}

/// The input being run, for the panic hook (verify decodes on threads of its own).
static INPUT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn tolerate_foreign_panics(dir: PathBuf) {
    use std::hash::{Hash, Hasher};
    std::fs::create_dir_all(&dir).expect("create the foreign-panic folder");
    let fatal = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let site = info
            .location()
            .filter(|l| l.file().contains("/.cargo/registry/"))
            .map(|l| format!("{}:{}", l.file(), l.line()));
        let Some(site) = site else {
            return fatal(info);
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        site.hash(&mut h);
        let path = dir.join(format!("foreign-{:016x}", h.finish()));
        if !path.exists() {
            eprintln!(
                "foreign panic at {site} (caught by verify), input saved as {}",
                path.display()
            );
            let input = INPUT.lock().unwrap_or_else(|e| e.into_inner()).clone();
            std::fs::write(&path, input).expect("save the input");
        }
    }));
}

fuzz_target!(
    init: {
        if let Some(dir) = std::env::var_os("AIOM4B_FUZZ_FOREIGN_PANICS") {
            tolerate_foreign_panics(dir.into());
        }
    },
    |file: &[u8]| {
        *INPUT.lock().unwrap_or_else(|e| e.into_inner()) = file.to_vec();
        FILE.with(|f| {
            let mut f = f.borrow_mut();
            let path = f.set(file).to_path_buf();
            if let Ok(s) = summarize(&path) {
                assert_eq!(s.file_size, file.len() as u64);
                assert!(s.audio_tracks <= s.tracks.len());
                // The summary is what `verify --json` prints.
                serde_json::to_string(&s).expect("the summary serializes");
                for exp in [Expectations::new(44_100, 2), Expectations::new(22_050, 1)] {
                    let _ = check(&s, &exp);
                }
            }
        });
    }
);
