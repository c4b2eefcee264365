//! Writes the seed inputs of the fuzz targets from the project's own fixtures, one folder per
//! target: MP3s of each MPEG version, rate control and layout (plus the hostile fixtures), M4Bs
//! converted by the library from generated books, and the text inputs in the formats each
//! target documents (fuzz/fuzz_targets/*.rs). The committed seeds (`fuzz/seeds/`) are these,
//! minimized with `cargo fuzz cmin`; see docs/fuzzing.md.
//!
//! ```text
//! cargo run --release --example fuzz_seeds -- /tmp/seeds
//! ```
use aiom4b::plan::plan;
use aiom4b::workflow::config::{Config, DEFAULT_NAME_TEMPLATE};
use aiom4b::{
    BookMetadata, CancelToken, ConvertOptions, Converter, Limits, NoProgress, Picture, PlanOptions,
    ScanOptions, Tags,
};
use aiom4b_testkit::fixtures::{self, Length, Mp3Spec, RateControl, Signal};
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: fuzz_seeds OUT_DIR")?);
    let work = tempfile::tempdir()?;
    let put = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)
    };

    // MP3: short files of every flavour the sniffer and the header parsers must know.
    let cover = Picture {
        mime: "image/jpeg".into(),
        data: fixtures::test_jpeg(16, 16),
        width: Some(16),
        height: Some(16),
    };
    let tags = Tags {
        title: Some("Chapter One".into()),
        album: Some("Seed Book".into()),
        artist: Some("A. Author".into()),
        ..Tags::default()
    };
    let flavours: [(&str, u32, u16, RateControl, bool); 5] = [
        (
            "cbr-44k-stereo-tagged",
            44_100,
            2,
            RateControl::Cbr {
                bitrate_bps: 128_000,
            },
            true,
        ),
        (
            "vbr-48k-mono",
            48_000,
            1,
            RateControl::Vbr { quality: 2 },
            false,
        ),
        (
            "cbr-22k-mpeg2",
            22_050,
            2,
            RateControl::Cbr {
                bitrate_bps: 64_000,
            },
            false,
        ),
        (
            "cbr-8k-mpeg25-mono",
            8_000,
            1,
            RateControl::Cbr {
                bitrate_bps: 16_000,
            },
            false,
        ),
        (
            "vbr-32k-stereo",
            32_000,
            2,
            RateControl::Vbr { quality: 6 },
            false,
        ),
    ];
    for (name, rate, channels, rate_control, tagged) in flavours {
        let path = work.path().join(format!("{name}.mp3"));
        fixtures::write_mp3(
            &path,
            &Mp3Spec {
                length: Length::Secs(0.15),
                sample_rate: rate,
                channels,
                rate_control,
                signal: Signal::SpeechLike { seed: 1 },
                tags: if tagged {
                    tags.clone()
                } else {
                    Tags::default()
                },
                cover: tagged.then(|| cover.clone()),
            },
        )?;
        put("mp3", name, &std::fs::read(&path)?)?;
    }
    for (path, kind) in fixtures::write_hostile(work.path().join("hostile"))? {
        let bytes = std::fs::read(&path)?;
        // The 64 KiB of noise and the 4 s files teach little that the rest do not.
        if bytes.len() <= 8 * 1024 {
            put("mp3", &format!("hostile-{kind}"), &bytes)?;
        }
    }

    // M4B: books converted by the library; one with narrator and series (patched into ilst).
    for (name, files, meta) in [
        ("two-chapters-cover", 2, BookMetadata::default()),
        (
            "one-chapter-narrator-series",
            1,
            BookMetadata {
                narrator: Some("N. Narrator".into()),
                series: Some("Seeds".into()),
                series_part: Some("2".into()),
                ..BookMetadata::default()
            },
        ),
    ] {
        let m4b = convert_book(work.path(), name, files, &cover, meta)?;
        put("mp4box", name, &m4b)?;
        put("verify", name, &m4b)?;
    }

    // Chapters files, behind the target's 12-byte header (rate, book length in samples).
    let chapters = [
        "# my book\n00:00:00.000 Opening Credits\n00:12:34.500 Chapter 1: The Storm\n1:02:03 Chapter 2\n",
        "\u{feff}0 Intro\n754.5 Middle\n\n# comment\n99:59:59.999 End\n",
        "00:00 A\n00:00 B\n",
        "1:75 bad time\n",
        "0\n1\n2\n",
    ];
    for (i, text) in chapters.iter().enumerate() {
        let mut b = 44_100u32.to_le_bytes().to_vec();
        b.extend_from_slice(&(44_100u64 * 3600).to_le_bytes());
        b.extend_from_slice(text.as_bytes());
        put("chapters", &format!("chapters-{i}"), &b)?;
    }

    // Config: the documented template file, and values from each source.
    let sep = [0xFFu8];
    let template_file = Config::template_file();
    let config_inputs: [&[&[u8]]; 4] = [
        &[template_file.as_bytes()],
        &[
            b"data_dir = \"/srv/books\"\nmax_concurrent_jobs = 2\nname_template = \"{author} - {title}\"\n",
            b"DEBUG=yes\nOUTPUT_MODE=0640",
            b"API_PORT=8080",
            b"7d",
        ],
        &[b"", b"MAX_FILE_SIZE_MB=0\nNAME_TEMPLATE={bogus}", b"", b"abc"],
        &[b"use_all_cpus = true\nbackup_retention_days = 30\n", b"", b"LOG_MAX_FILES=14", b"12h"],
    ];
    for (i, parts) in config_inputs.iter().enumerate() {
        put("config", &format!("config-{i}"), &parts.join(&sep[..]))?;
    }

    // Templates and names.
    let naming: [&[&str]; 3] = [
        &[
            DEFAULT_NAME_TEMPLATE,
            "Dune: Messiah",
            "",
            "Frank Herbert",
            "",
            "",
            "",
            "Dune",
            "20260101_120000",
        ],
        &[
            "{author}/{series} {year} - {title}",
            "../../etc/passwd",
            "",
            "A/B",
            "N",
            "S",
            "1965",
            "f",
            "t",
        ],
        &["{title", "CON", "x", "", "", "", "", "", ""],
    ];
    for (i, fields) in naming.iter().enumerate() {
        let joined: Vec<&[u8]> = fields.iter().map(|f| f.as_bytes()).collect();
        put("naming", &format!("naming-{i}"), &joined.join(&sep[..]))?;
    }
    for (i, s) in [
        "The Hobbit",
        "Dune: Messiah",
        "../../etc/passwd",
        "evil\u{202E}bm4.exe",
        "CON.txt",
        "03 - Intro (Part 1)",
        "  . -x. ",
        "Caf\u{65}\u{301}",
    ]
    .iter()
    .enumerate()
    {
        put("sanitize", &format!("name-{i}"), s.as_bytes())?;
    }
    println!("wrote seeds to {}", out.display());
    Ok(())
}

/// Converts a generated book of `files` 0.5-second chapters to M4B and returns its bytes.
fn convert_book(
    work: &Path,
    name: &str,
    files: usize,
    cover: &Picture,
    overrides: BookMetadata,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let dir = work.join(name);
    let template = Mp3Spec {
        signal: Signal::SpeechLike { seed: 3 },
        cover: Some(cover.clone()),
        ..Mp3Spec::default()
    };
    fixtures::write_book(&dir, files, 0.5, &template)?;
    let out = work.join(format!("{name}.m4b"));
    let mut opts = PlanOptions::default();
    opts.overrides = overrides;
    opts.output = Some(out.clone());
    let book = plan(&[dir], &ScanOptions::default(), &Limits::default(), &opts)?;
    Converter::new(ConvertOptions::default()).convert(&book, &NoProgress, &CancelToken::new())?;
    Ok(std::fs::read(&out)?)
}
