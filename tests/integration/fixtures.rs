//! The fixture generators, checked with readers that did not write the files: Symphonia decodes
//! the MP3s (gapless length, rate, channels, pitch), the `id3` crate reads the tags and the
//! APIC frame, and `ffprobe` gives libavformat's own view.
use aiom4b::{Picture, Tags};
use aiom4b_testkit::fixtures::{
    noise, sine, speech_like, test_jpeg, test_png, write_book, write_hostile, write_mp3, Length,
    Mp3Spec, RateControl, Signal,
};
use id3::TagLike;
use std::path::{Path, PathBuf};
use symphonia::core::errors::Error as SymphoniaError;

/// A sine's frequency measured from zero crossings over a whole second or more is within this
/// fraction of the true one; a wrong sample rate would be off by ≥ 8 % (44.1 vs 48 kHz).
const FREQUENCY_TOLERANCE: f64 = 0.002;

/// What Symphonia decoded from a file.
struct Decoded {
    sample_rate: u32,
    channels: usize,
    /// Samples per channel the demuxer promises from the Xing/LAME header (gapless).
    header_frames: Option<u64>,
    /// Interleaved samples, trimmed by the gapless delay and padding.
    samples: Vec<f32>,
    /// Packets the decoder rejected as damaged.
    decode_errors: usize,
}

impl Decoded {
    fn frames(&self) -> u64 {
        (self.samples.len() / self.channels) as u64
    }

    fn channel(&self, ch: usize) -> Vec<f32> {
        self.samples
            .iter()
            .skip(ch)
            .step_by(self.channels)
            .copied()
            .collect()
    }
}

fn decode(path: &Path) -> Decoded {
    let (mut format, params, header_frames, mut decoder) = crate::common::open_gapless_mp3(path);
    let mut decoded = Decoded {
        sample_rate: params.sample_rate.unwrap(),
        channels: params.channels.unwrap().count(),
        header_frames,
        samples: Vec::new(),
        decode_errors: 0,
    };
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(e) => panic!("{}: demuxing failed: {e}", path.display()),
        };
        match decoder.decode(&packet) {
            Ok(buf) => {
                let mut out = Vec::new();
                buf.copy_to_vec_interleaved::<f32>(&mut out);
                decoded.samples.extend_from_slice(&out);
            }
            Err(SymphoniaError::DecodeError(_)) => decoded.decode_errors += 1,
            Err(e) => panic!("{}: decoding failed: {e}", path.display()),
        }
    }
    decoded
}

/// Frequency from rising zero crossings with hysteresis (MP3 noise must not add crossings).
fn measured_frequency(samples: &[f32], rate: u32) -> f64 {
    let threshold = 0.05;
    let mut crossings = Vec::new();
    let mut armed = false;
    for (i, &s) in samples.iter().enumerate() {
        if s < -threshold {
            armed = true;
        } else if armed && s > threshold {
            crossings.push(i);
            armed = false;
        }
    }
    let (first, last) = (crossings[0], *crossings.last().unwrap());
    (crossings.len() - 1) as f64 * f64::from(rate) / (last - first) as f64
}

fn peak(samples: &[f32]) -> f32 {
    samples.iter().fold(0.0f32, |m, s| m.max(s.abs()))
}

fn rms(samples: &[f32]) -> f32 {
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len().max(1) as f32).sqrt()
}

fn full_tags() -> Tags {
    Tags {
        title: Some("Kapitel 3: Überfahrt".into()),
        album: Some("Die lange Reise".into()),
        artist: Some("Anna Autorin".into()),
        album_artist: Some("Anna Autorin & Co".into()),
        composer: Some("Kai Komponist".into()),
        genre: Some("Audiobook".into()),
        year: Some("2019".into()),
        track: Some(3),
        track_total: Some(12),
        disc: Some(1),
        disc_total: Some(2),
        comment: Some("Read by Nora Narrator".into()),
    }
}

#[test]
fn gapless_length_is_exact_for_cbr_and_vbr_at_every_rate_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for sample_rate in [22_050, 44_100, 48_000] {
        for channels in [1, 2] {
            for rate_control in [
                RateControl::Cbr {
                    bitrate_bps: if sample_rate < 32_000 {
                        64_000
                    } else {
                        128_000
                    },
                },
                RateControl::Vbr { quality: 2 },
            ] {
                // Deliberately not a multiple of either frame size (1152 or 576).
                let samples = u64::from(sample_rate) + 4321;
                let spec = Mp3Spec {
                    length: Length::Samples(samples),
                    sample_rate,
                    channels,
                    rate_control,
                    signal: Signal::SpeechLike { seed: 1 },
                    ..Mp3Spec::default()
                };
                let path = dir
                    .path()
                    .join(format!("{sample_rate}-{channels}-{rate_control:?}.mp3"));
                let written = write_mp3(&path, &spec).unwrap();
                assert_eq!(written.samples, samples);
                assert_eq!(
                    written.xing.vbr,
                    matches!(rate_control, RateControl::Vbr { .. })
                );
                let decoded = decode(&path);
                let case = format!("{sample_rate} Hz, {channels} ch, {rate_control:?}");
                if (decoded.sample_rate, decoded.channels) != (sample_rate, usize::from(channels))
                    || decoded.header_frames != Some(samples)
                    || decoded.frames() != samples
                    || decoded.decode_errors != 0
                {
                    failures.push(format!(
                        "{case}: decoded {} Hz {} ch, header {:?}, {} samples, {} errors; wanted {samples}",
                        decoded.sample_rate,
                        decoded.channels,
                        decoded.header_frames,
                        decoded.frames(),
                        decoded.decode_errors
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn gapless_length_is_exact_at_frame_boundaries_and_for_tiny_files() {
    let dir = tempfile::tempdir().unwrap();
    for samples in [1, 100, 1151, 1152, 1153, 1152 * 10] {
        let spec = Mp3Spec {
            length: Length::Samples(samples),
            ..Mp3Spec::default()
        };
        let path = dir.path().join(format!("{samples}.mp3"));
        write_mp3(&path, &spec).unwrap();
        let decoded = decode(&path);
        assert_eq!(decoded.frames(), samples, "{samples} samples requested");
    }
}

#[test]
fn decoded_sine_has_the_requested_pitch() {
    let dir = tempfile::tempdir().unwrap();
    for (sample_rate, freq_hz) in [(22_050, 441.0), (44_100, 1000.0), (48_000, 1234.5)] {
        let spec = Mp3Spec {
            length: Length::Secs(2.0),
            sample_rate,
            channels: 2,
            signal: Signal::Sine {
                freq_hz,
                amplitude: 0.5,
            },
            ..Mp3Spec::default()
        };
        let path = dir.path().join(format!("sine-{sample_rate}.mp3"));
        write_mp3(&path, &spec).unwrap();
        let decoded = decode(&path);
        for ch in 0..2 {
            let measured = measured_frequency(&decoded.channel(ch), decoded.sample_rate);
            assert!(
                (measured / freq_hz - 1.0).abs() < FREQUENCY_TOLERANCE,
                "{sample_rate} Hz, channel {ch}: measured {measured:.2} Hz, wanted {freq_hz} Hz"
            );
        }
        // The level survives too (MP3 at 128 kb/s changes a clean sine's peak by well under 1 dB).
        let level = peak(&decoded.samples);
        assert!(
            (0.45..0.56).contains(&level),
            "{sample_rate} Hz: peak {level}"
        );
    }
}

#[test]
fn signals_are_deterministic_and_shaped_as_documented() {
    let tone = sine(100.0, 0.5, 8000, 2, 0.25);
    assert_eq!(tone.len(), 4000 * 2);
    assert!((peak(&tone) - 0.25).abs() < 1e-3);
    assert_eq!(tone[2], tone[3], "both channels carry the tone");

    let pink = noise(1.0, 44_100, 2, 0.5, 7);
    assert_eq!(pink, noise(1.0, 44_100, 2, 0.5, 7));
    assert_ne!(pink, noise(1.0, 44_100, 2, 0.5, 8));
    assert!((0.25..=0.55).contains(&peak(&pink)), "peak {}", peak(&pink));
    assert_ne!(pink[0], pink[1], "noise is independent per channel");

    let speech = speech_like(30.0, 44_100, 1, 3);
    assert_eq!(speech, speech_like(30.0, 44_100, 1, 3));
    assert_ne!(speech, speech_like(30.0, 44_100, 1, 4));
    // Loudest syllable ≤ −6 dBFS (plus plosive clicks ≤ −3 dBFS).
    assert!(peak(&speech) <= 0.71, "peak {}", peak(&speech));
    // 10 ms windows: pauses of faint room noise and syllables over a wide range of levels.
    let window_db: Vec<f32> = speech
        .chunks_exact(441)
        .map(|w| 20.0 * rms(w).max(1e-9).log10())
        .collect();
    let quiet = window_db.iter().filter(|&&db| db < -55.0).count();
    let loud = window_db.iter().filter(|&&db| db > -25.0).count();
    let faint = window_db
        .iter()
        .filter(|&&db| (-45.0..-30.0).contains(&db))
        .count();
    let silent = window_db.iter().filter(|&&db| db < -90.0).count();
    let n = window_db.len();
    assert!(quiet > n / 5, "{quiet} of {n} windows are pauses");
    assert!(loud > n / 20, "{loud} of {n} windows are loud");
    assert!(faint > n / 50, "{faint} of {n} windows are quiet speech");
    assert_eq!(silent, 0, "pauses carry room noise, not digital silence");
}

#[test]
fn tags_are_written_as_id3v2_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tagged.mp3");
    let spec = Mp3Spec {
        length: Length::Secs(0.5),
        tags: full_tags(),
        ..Mp3Spec::default()
    };
    write_mp3(&path, &spec).unwrap();

    let tag = id3::Tag::read_from_path(&path).unwrap();
    assert_eq!(tag.version(), id3::Version::Id3v23);
    assert_eq!(tag.title(), Some("Kapitel 3: Überfahrt"));
    assert_eq!(tag.album(), Some("Die lange Reise"));
    assert_eq!(tag.artist(), Some("Anna Autorin"));
    assert_eq!(tag.album_artist(), Some("Anna Autorin & Co"));
    assert_eq!(
        tag.get("TCOM").and_then(|f| f.content().text()),
        Some("Kai Komponist")
    );
    assert_eq!(tag.genre(), Some("Audiobook"));
    assert_eq!(tag.year(), Some(2019));
    assert_eq!((tag.track(), tag.total_tracks()), (Some(3), Some(12)));
    assert_eq!((tag.disc(), tag.total_discs()), (Some(1), Some(2)));
    let comments: Vec<_> = tag.comments().map(|c| c.text.as_str()).collect();
    assert_eq!(comments, ["Read by Nora Narrator"]);
    assert_eq!(tag.pictures().count(), 0);
}

#[test]
fn cover_is_an_apic_front_cover_with_the_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for (mime, data) in [
        ("image/jpeg", test_jpeg(64, 48)),
        ("image/png", test_png(40, 30)),
    ] {
        let path = dir.path().join(format!("cover-{}.mp3", &mime[6..]));
        let spec = Mp3Spec {
            length: Length::Samples(44_100 + 1),
            tags: Tags {
                title: Some("With cover".into()),
                ..Tags::default()
            },
            cover: Some(Picture {
                mime: mime.into(),
                data: data.clone(),
                width: None,
                height: None,
            }),
            ..Mp3Spec::default()
        };
        write_mp3(&path, &spec).unwrap();

        let tag = id3::Tag::read_from_path(&path).unwrap();
        let pictures: Vec<_> = tag.pictures().collect();
        assert_eq!(pictures.len(), 1, "{mime}");
        assert_eq!(
            pictures[0].picture_type,
            id3::frame::PictureType::CoverFront
        );
        assert_eq!(pictures[0].mime_type, mime);
        assert!(pictures[0].data == data, "{mime}: APIC bytes differ");
        assert_eq!(tag.title(), Some("With cover"));
        // The cover must not disturb the audio or its gapless length.
        assert_eq!(decode(&path).frames(), 44_100 + 1, "{mime}");
    }
}

#[test]
fn test_images_have_the_requested_size() {
    let png = test_png(40, 30);
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 40);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 30);

    let jpeg = test_jpeg(65, 33); // odd sizes exercise the 4:2:0 edge handling
    assert_eq!(&jpeg[..2], b"\xFF\xD8");
    assert_eq!(&jpeg[jpeg.len() - 2..], b"\xFF\xD9");
    let sof = jpeg
        .windows(2)
        .position(|w| w == b"\xFF\xC0")
        .expect("baseline SOF0 marker");
    let height = u16::from_be_bytes([jpeg[sof + 5], jpeg[sof + 6]]);
    let width = u16::from_be_bytes([jpeg[sof + 7], jpeg[sof + 8]]);
    assert_eq!((width, height), (65, 33));
}

#[test]
fn paths_are_files_not_ffmpeg_urls() {
    let dir = tempfile::tempdir().unwrap();
    let mut names: Vec<std::ffi::OsString> = [
        "concat:a.mp3|b.mp3",
        "file:x.mp3",
        "pipe:1.mp3",
        "http:example.mp3",
        "Kapitel ä – 😀 ?*.mp3",
    ]
    .iter()
    .map(Into::into)
    .collect();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        names.push(std::ffi::OsString::from_vec(
            b"latin1 \xe9t\xe9.mp3".to_vec(),
        ));
    }
    let spec = Mp3Spec {
        length: Length::Samples(5000),
        ..Mp3Spec::default()
    };
    for name in names {
        let path = dir.path().join(&name);
        write_mp3(&path, &spec).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(decode(&path).frames(), 5000, "{name:?}");
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    entries.retain(|e| e.as_ref().unwrap().path().is_file());
    assert_eq!(
        entries.len(),
        6,
        "exactly the named files, nothing elsewhere"
    );
}

#[test]
fn invalid_specs_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.mp3");
    let bad = [
        Mp3Spec {
            sample_rate: 44_000,
            ..Mp3Spec::default()
        },
        Mp3Spec {
            channels: 3,
            ..Mp3Spec::default()
        },
        Mp3Spec {
            rate_control: RateControl::Vbr { quality: 10 },
            ..Mp3Spec::default()
        },
        Mp3Spec {
            tags: Tags {
                title: Some("nul\0inside".into()),
                ..Tags::default()
            },
            ..Mp3Spec::default()
        },
        Mp3Spec {
            cover: Some(Picture {
                mime: "image/gif".into(),
                data: b"GIF89a".to_vec(),
                width: None,
                height: None,
            }),
            ..Mp3Spec::default()
        },
    ];
    for spec in bad {
        let err = write_mp3(&path, &spec).expect_err("invalid spec accepted");
        assert!(matches!(err, aiom4b_testkit::Error::Options(_)), "{err}");
    }
    let missing_dir = dir.path().join("no/such/dir/x.mp3");
    let err = write_mp3(&missing_dir, &Mp3Spec::default()).unwrap_err();
    assert!(matches!(err, aiom4b_testkit::Error::Io { .. }), "{err}");
}

#[test]
fn book_has_numbered_tagged_chapter_files() {
    let dir = tempfile::tempdir().unwrap();
    let template = Mp3Spec {
        signal: Signal::SpeechLike { seed: 5 },
        tags: Tags {
            album: Some("Fixture Saga".into()),
            ..Tags::default()
        },
        ..Mp3Spec::default()
    };
    let paths = write_book(dir.path().join("book"), 3, 1.5, &template).unwrap();
    let names: Vec<_> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "01 - Chapter 1.mp3",
            "02 - Chapter 2.mp3",
            "03 - Chapter 3.mp3"
        ]
    );
    let mut chapters_audio = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let tag = id3::Tag::read_from_path(path).unwrap();
        let n = i as u32 + 1;
        assert_eq!(tag.title(), Some(format!("Chapter {n}").as_str()));
        assert_eq!((tag.track(), tag.total_tracks()), (Some(n), Some(3)));
        assert_eq!(tag.album(), Some("Fixture Saga"));
        assert_eq!(tag.artist(), Some("Fixture Author"));
        let decoded = decode(path);
        assert_eq!(decoded.frames(), 66_150);
        chapters_audio.push(decoded.samples);
    }
    assert_ne!(
        chapters_audio[0], chapters_audio[1],
        "chapters get their own seeds"
    );
}

#[test]
fn hostile_files_are_what_they_claim() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_hostile(dir.path()).unwrap();
    let kinds: Vec<_> = files.iter().map(|(_, kind)| *kind).collect();
    assert_eq!(
        kinds,
        [
            "empty",
            "id3_only",
            "text",
            "random",
            "png",
            "m3u",
            "truncated",
            "corrupt_middle"
        ]
    );
    let bytes = |kind: &str| -> (PathBuf, Vec<u8>) {
        let path = files.iter().find(|(_, k)| *k == kind).unwrap().0.clone();
        let data = std::fs::read(&path).unwrap();
        (path, data)
    };
    assert!(files.iter().all(|(p, _)| p.extension().unwrap() == "mp3"));
    assert!(bytes("empty").1.is_empty());
    let (id3_path, id3_bytes) = bytes("id3_only");
    assert_eq!(&id3_bytes[..4], b"ID3\x03");
    assert_eq!(
        id3::Tag::read_from_path(&id3_path).unwrap().title(),
        Some("Only a tag")
    );
    assert!(
        !bytes("random").1.contains(&0xFF),
        "no byte can start an MPEG sync"
    );
    assert_eq!(&bytes("png").1[..4], b"\x89PNG");
    assert!(bytes("m3u").1.starts_with(b"#EXTM3U\n"));
    assert!(std::str::from_utf8(&bytes("text").1).is_ok());

    // Damaged files: the header still promises 4 s, the audio does not deliver it intact.
    let promised = 4 * 44_100;
    let truncated = decode(&bytes("truncated").0);
    assert_eq!(truncated.header_frames, Some(promised));
    assert!(
        truncated.frames() < promised * 7 / 10 && truncated.frames() > promised / 2,
        "truncated at about 60 %: {} samples",
        truncated.frames()
    );
    let (corrupt_path, _) = bytes("corrupt_middle");
    let corrupt = decode(&corrupt_path);
    assert_eq!(corrupt.header_frames, Some(promised));
    assert!(
        corrupt.decode_errors > 0 || corrupt.frames() != promised,
        "the damage is visible to a decoder: {} errors, {} samples",
        corrupt.decode_errors,
        corrupt.frames()
    );
}

#[test]
fn ffprobe_agrees_with_the_fixture_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.mp3");
    let spec = Mp3Spec {
        length: Length::Samples(48_000 * 2 + 99),
        sample_rate: 48_000,
        channels: 1,
        rate_control: RateControl::Vbr { quality: 2 },
        tags: full_tags(),
        cover: Some(Picture {
            mime: "image/jpeg".into(),
            data: test_jpeg(32, 32),
            width: Some(32),
            height: Some(32),
        }),
        ..Mp3Spec::default()
    };
    let written = write_mp3(&path, &spec).unwrap();
    let probe = crate::common::ffprobe(&path);
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{probe:#}");
    let audio = &streams[0];
    assert_eq!(audio["codec_name"], "mp3");
    assert_eq!(audio["sample_rate"], "48000");
    assert_eq!(audio["channels"], 1);
    let picture = &streams[1];
    assert_eq!(picture["codec_name"], "mjpeg");
    assert_eq!(picture["disposition"]["attached_pic"], 1);
    assert_eq!(picture["tags"]["comment"], "Cover (front)");
    let tags = &probe["format"]["tags"];
    assert_eq!(tags["title"], "Kapitel 3: Überfahrt");
    assert_eq!(tags["album"], "Die lange Reise");
    assert_eq!(tags["artist"], "Anna Autorin");
    assert_eq!(tags["album_artist"], "Anna Autorin & Co");
    assert_eq!(tags["track"], "3/12");
    assert_eq!(tags["disc"], "1/2");
    assert_eq!(tags["date"], "2019");
    // libavformat reads the Xing frame count (its duration is whole frames, not trimmed) and
    // the LAME delay (its start time is the delay plus the 529-sample decoder delay).
    let seconds = |key: &str| -> f64 { probe["format"][key].as_str().unwrap().parse().unwrap() };
    let whole_frames = f64::from(written.xing.frames * written.xing.samples_per_frame) / 48_000.0;
    assert!(
        (seconds("duration") - whole_frames).abs() < 1e-5,
        "{probe:#}"
    );
    let start = f64::from(written.xing.encoder_delay + 529) / 48_000.0;
    assert!((seconds("start_time") - start).abs() < 1e-5, "{probe:#}");
}
