//! Stamps the version and git revision into the binary for `aiom4b --version`, and with the
//! `static-ffmpeg` feature checks that FFMPEG_DIR is the prefix vendor/ffmpeg/build.sh made.
//! Small and offline: it only asks the local git, and tolerates its absence (a source tarball).
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FFMPEG_DIR");
    if std::env::var_os("CARGO_FEATURE_STATIC_FFMPEG").is_some() {
        static_ffmpeg();
    }
    // A build without .git (the container's context, a source tarball) may be told its revision.
    println!("cargo:rerun-if-env-changed=AIOM4B_GIT_REV");
    let given = std::env::var("AIOM4B_GIT_REV")
        .ok()
        .filter(|r| !r.trim().is_empty() && r.trim() != "unknown");
    let (rev, dirty) = match given {
        Some(r) => (r.trim().to_string(), false),
        None => git_revision(),
    };
    println!(
        "cargo:rustc-env=AIOM4B_GIT_REV={}{}",
        rev,
        if dirty { "-dirty" } else { "" }
    );
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
    println!("cargo:rerun-if-changed=build.rs");
}

/// The `static-ffmpeg` feature links whatever FFMPEG_DIR holds (ffmpeg-sys-next reads it too):
/// make sure it is the vendored build, say how to get one otherwise, and link what its
/// libraries need beyond libc/libm (the test profile's libmp3lame) after them: a link argument
/// goes at the end of the command line, where a static archive's dependencies must be.
fn static_ffmpeg() {
    const HOW: &str = "run vendor/ffmpeg/build.sh, then build with the FFMPEG_DIR it prints, e.g. \
FFMPEG_DIR=$PWD/target/ffmpeg/7.1.5 cargo build --release --features static-ffmpeg \
(docs/static-build.md)";
    let Some(dir) = std::env::var_os("FFMPEG_DIR") else {
        panic!("the static-ffmpeg feature needs FFMPEG_DIR: {HOW}");
    };
    let dir = Path::new(&dir);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    // The recipe build.sh leaves in the prefix: the version on its first line, then the
    // SHA-256 and the configure flags (the test profile's include libmp3lame).
    let Some(recipe) = read("aiom4b-recipe") else {
        panic!(
            "FFMPEG_DIR={} is not a prefix built by vendor/ffmpeg/build.sh (no aiom4b-recipe \
             in it): {HOW}",
            dir.display()
        );
    };
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("aiom4b-recipe").display()
    );
    if !dir.join("lib/libavcodec.a").exists() {
        panic!(
            "FFMPEG_DIR={} has no lib/libavcodec.a: {HOW}",
            dir.display()
        );
    }
    let version = recipe.lines().next().unwrap_or("unknown");
    let profile = if recipe.lines().any(|l| l == "--enable-libmp3lame") {
        "tests"
    } else {
        "minimal"
    };
    println!(
        "cargo:rustc-env=AIOM4B_FFMPEG_VENDORED={} ({} profile, vendor/ffmpeg/build.sh)",
        version.trim(),
        profile
    );
    // A static FFmpeg lists what it needs on its `Libs:` line (`Libs.private:` with shared
    // libraries). glibc's parts are in every root; anything else (libatomic, the test
    // profile's libmp3lame) is linked from its static archive, found the way the compiler
    // finds it, so the binary needs nothing that a minimal Debian lacks.
    let mut libs: Vec<String> = Vec::new();
    for pc in ["libavformat", "libavcodec", "libswresample", "libavutil"] {
        let text = read(&format!("lib/pkgconfig/{pc}.pc")).unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| l.starts_with("Libs:") || l.starts_with("Libs.private:"))
        {
            for flag in line.split_whitespace().skip(1) {
                let Some(name) = flag.strip_prefix("-l") else {
                    continue;
                };
                let ffmpeg_own = ["avformat", "avcodec", "swresample", "avutil"];
                let glibc = ["m", "pthread", "dl", "c", "rt"];
                if ffmpeg_own.contains(&name) || glibc.contains(&name) {
                    continue;
                }
                let flag = static_archive(name)
                    .map(|a| format!("-l:{a}"))
                    .unwrap_or_else(|| flag.to_string());
                if !libs.contains(&flag) {
                    libs.push(flag);
                }
            }
        }
    }
    for flag in libs {
        println!("cargo:rustc-link-arg={flag}");
    }
}

/// `libNAME.a` when the C compiler knows one (`cc -print-file-name` answers the bare name when
/// it does not), for `-l:libNAME.a`.
fn static_archive(name: &str) -> Option<String> {
    let file = format!("lib{name}.a");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(cc)
        .arg(format!("-print-file-name={file}"))
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if path == file || !Path::new(&path).exists() {
        return None;
    }
    let dir = Path::new(&path).parent()?.to_path_buf();
    println!("cargo:rustc-link-search=native={}", dir.display());
    Some(file)
}

/// The short revision of HEAD and whether tracked files changed; "unknown" without git.
fn git_revision() -> (String, bool) {
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    (rev, dirty)
}
