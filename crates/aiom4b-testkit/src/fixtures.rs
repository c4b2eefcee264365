//! Test and benchmark inputs generated at run time: deterministic signals, MP3 files encoded by
//! the linked libmp3lame (see [`crate::mp3_writer`]), whole "books" of chapter files, tiny
//! cover images and hostile files for validation tests.
//!
//! Everything is deterministic — the same arguments give the same samples and bytes on every
//! run (a seeded xorshift generator, no `rand`) — so a failing test replays exactly. Signals are
//! interleaved `f32` frames (`L R L R …` for stereo) within −1.0..=1.0.
//!
//! ```no_run
//! use aiom4b_testkit::fixtures::{write_mp3, Length, Mp3Spec, Signal};
//! let spec = Mp3Spec {
//!     length: Length::Samples(44_100 * 3 + 17),
//!     signal: Signal::SpeechLike { seed: 7 },
//!     ..Mp3Spec::default()
//! };
//! let written = write_mp3("/tmp/chapter.mp3", &spec)?;
//! assert_eq!(written.samples, 44_100 * 3 + 17);
//! # Ok::<(), aiom4b_testkit::Error>(())
//! ```
use crate::error::{Error, Result};
use crate::image_writer;
use crate::mp3_writer::{Mp3Settings, Mp3Writer};
use aiom4b::{Picture, Tags};
use std::f64::consts::TAU;
use std::path::{Path, PathBuf};

pub use crate::image_writer::ImageFormat;
pub use crate::mp3_writer::{Mp3Written, RateControl, XingHeader};
/// The test kit's MP3 byte parsers (not the library's), for tests that cut files at frame
/// boundaries.
pub use crate::mp3frame::{audio_start, id3v2_len, FrameHeader, MAX_FRAME_LEN};

// ---------------------------------------------------------------------------------------------
// Signals

/// A sine tone on every channel, `amplitude` peak.
pub fn sine(freq_hz: f64, secs: f64, rate: u32, channels: u16, amplitude: f32) -> Vec<f32> {
    render(
        Signal::Sine { freq_hz, amplitude }
            .source(rate, channels)
            .as_mut(),
        secs_to_samples(secs, rate),
        channels,
    )
}

/// Pink-ish noise (−3 dB/octave from a three-pole filter on white noise), independent per
/// channel, peaking near `amplitude` (RMS about 14 dB below it).
pub fn noise(secs: f64, rate: u32, channels: u16, amplitude: f32, seed: u64) -> Vec<f32> {
    render(
        Signal::Noise { amplitude, seed }
            .source(rate, channels)
            .as_mut(),
        secs_to_samples(secs, rate),
        channels,
    )
}

/// Speech-like material for encoder-quality tests and benchmarks: phrases of 1–4 syllables
/// (100–300 ms each) separated by 200–800 ms pauses of faint room noise (about −65 dBFS).
/// Syllables are voiced (a sawtooth glottal source at a gliding 100–250 Hz fundamental through
/// three formant resonators), fricative (high-passed noise), or voiced after a plosive click;
/// each is normalized to a peak between −30 and −6 dBFS. Channels carry the same voice, as a
/// mono recording in a stereo file does. Generation runs at several hundred times realtime.
pub fn speech_like(secs: f64, rate: u32, channels: u16, seed: u64) -> Vec<f32> {
    render(
        Signal::SpeechLike { seed }.source(rate, channels).as_mut(),
        secs_to_samples(secs, rate),
        channels,
    )
}

/// What a fixture MP3 contains.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Digital silence.
    Silence,
    /// See [`sine`].
    Sine { freq_hz: f64, amplitude: f32 },
    /// See [`noise`].
    Noise { amplitude: f32, seed: u64 },
    /// See [`speech_like`].
    SpeechLike { seed: u64 },
}

impl Signal {
    /// The same kind of signal with a seed derived from `salt`, so the files of a book differ.
    fn reseeded(&self, salt: u64) -> Signal {
        match self {
            Signal::Noise { amplitude, seed } => Signal::Noise {
                amplitude: *amplitude,
                seed: seed.wrapping_add(salt),
            },
            Signal::SpeechLike { seed } => Signal::SpeechLike {
                seed: seed.wrapping_add(salt),
            },
            other => other.clone(),
        }
    }

    pub(crate) fn source(&self, rate: u32, channels: u16) -> Box<dyn Source> {
        let channels = usize::from(channels.max(1));
        match *self {
            Signal::Silence => Box::new(Silence),
            Signal::Sine { freq_hz, amplitude } => Box::new(Sine {
                radians_per_sample: TAU * freq_hz / f64::from(rate),
                n: 0,
                amplitude,
                channels,
            }),
            Signal::Noise { amplitude, seed } => Box::new(PinkNoise {
                rng: Rng::new(seed),
                amplitude,
                state: vec![[0.0; 3]; channels],
            }),
            Signal::SpeechLike { seed } => Box::new(SpeechLike::new(seed, rate, channels)),
        }
    }
}

/// Fills interleaved frames; `out.len()` is a multiple of the channel count it was made for.
pub(crate) trait Source {
    fn fill(&mut self, out: &mut [f32]);
}

fn render(source: &mut dyn Source, frames: u64, channels: u16) -> Vec<f32> {
    let mut out = vec![0.0; frames as usize * usize::from(channels.max(1))];
    source.fill(&mut out);
    out
}

fn secs_to_samples(secs: f64, rate: u32) -> u64 {
    // `as` saturates: NaN and negative durations give 0 samples.
    (secs * f64::from(rate)).round() as u64
}

struct Silence;

impl Source for Silence {
    fn fill(&mut self, out: &mut [f32]) {
        out.fill(0.0);
    }
}

struct Sine {
    radians_per_sample: f64,
    /// Computing the phase from the sample index (in f64) keeps long tones free of drift.
    n: u64,
    amplitude: f32,
    channels: usize,
}

impl Source for Sine {
    fn fill(&mut self, out: &mut [f32]) {
        for frame in out.chunks_exact_mut(self.channels) {
            let v = self.amplitude * (self.radians_per_sample * self.n as f64).sin() as f32;
            frame.fill(v);
            self.n += 1;
        }
    }
}

struct PinkNoise {
    rng: Rng,
    amplitude: f32,
    /// Paul Kellet's "economy" pink filter state, one set per channel.
    state: Vec<[f32; 3]>,
}

impl Source for PinkNoise {
    fn fill(&mut self, out: &mut [f32]) {
        let channels = self.state.len();
        for frame in out.chunks_exact_mut(channels) {
            for (sample, b) in frame.iter_mut().zip(self.state.iter_mut()) {
                let white = self.rng.bipolar();
                b[0] = 0.997_65 * b[0] + white * 0.099_046;
                b[1] = 0.963 * b[1] + white * 0.296_516_4;
                b[2] = 0.57 * b[2] + white * 1.052_691_3;
                // For uniform white input the sum has an RMS of about 1.7 and peaks near ±8 in
                // millions of samples; 0.12 makes `amplitude` the practical peak.
                let pink = (b[0] + b[1] + b[2] + white * 0.1848) * 0.12;
                *sample = (pink * self.amplitude).clamp(-1.0, 1.0);
            }
        }
    }
}

/// Formants (F1, F2, F3 in Hz) of five vowels, rounded from Peterson & Barney's averages.
const VOWELS: [[f32; 3]; 5] = [
    [730.0, 1090.0, 2440.0], // a
    [530.0, 1840.0, 2480.0], // e
    [270.0, 2290.0, 3010.0], // i
    [570.0, 840.0, 2410.0],  // o
    [300.0, 870.0, 2240.0],  // u
];

struct SpeechLike {
    rng: Rng,
    rate: f32,
    channels: usize,
    /// Mono samples of the current phrase or pause, rendered ahead so each syllable can be
    /// normalized to its level; `pos` is the read position.
    segment: Vec<f32>,
    pos: usize,
    next_is_pause: bool,
    /// One-pole low-passed white noise: the "room" under everything, pauses included.
    room: f32,
}

impl SpeechLike {
    /// Room noise level; low-passing takes about 12 dB off the white noise's ±1 peak.
    const ROOM_GAIN: f32 = 0.002;

    fn new(seed: u64, rate: u32, channels: usize) -> Self {
        SpeechLike {
            rng: Rng::new(seed),
            rate: rate as f32,
            channels,
            segment: Vec::new(),
            pos: 0,
            next_is_pause: false,
            room: 0.0,
        }
    }

    fn ms(&mut self, lo: f32, hi: f32) -> usize {
        (self.rng.range(lo, hi) * 0.001 * self.rate) as usize
    }

    fn next_segment(&mut self) {
        self.segment.clear();
        self.pos = 0;
        if self.next_is_pause {
            let n = self.ms(200.0, 800.0);
            self.segment.resize(n, 0.0);
        } else {
            let syllables = 1 + self.rng.below(4);
            for s in 0..syllables {
                if s > 0 {
                    let gap = self.ms(20.0, 60.0);
                    self.segment.resize(self.segment.len() + gap, 0.0);
                }
                self.syllable();
            }
        }
        self.next_is_pause = !self.next_is_pause;
    }

    fn syllable(&mut self) {
        let n = self.ms(100.0, 300.0);
        let level = db_to_amplitude(self.rng.range(-30.0, -6.0));
        let kind = self.rng.unit();
        if kind < 0.15 {
            // Plosive: a short decaying click 6 dB above the syllable, a closure, then the vowel.
            let start = self.segment.len();
            let click = self.ms(5.0, 12.0).max(1);
            for i in 0..click {
                let env = (-4.0 * i as f32 / click as f32).exp();
                let v = self.rng.bipolar() * env;
                self.segment.push(v);
            }
            normalize_peak(&mut self.segment[start..], (2.0 * level).min(0.7));
            let closure = self.ms(10.0, 25.0);
            self.segment.resize(self.segment.len() + closure, 0.0);
            self.voiced(n, level);
        } else if kind < 0.35 {
            // Fricatives are shorter and quieter than vowels.
            self.fricative(n * 2 / 3, level * 0.5);
        } else {
            self.voiced(n, level);
        }
    }

    fn voiced(&mut self, n: usize, level: f32) {
        let f0_start = self.rng.range(100.0, 250.0);
        let f0_end = f0_start * self.rng.range(0.8, 1.25);
        let vowel = VOWELS[self.rng.below(VOWELS.len())];
        let top = 0.45 * self.rate;
        let mut formants = [0, 1, 2].map(|k| {
            let f = (vowel[k] * self.rng.range(0.9, 1.1)).min(top);
            Biquad::bandpass(self.rate, f, [80.0, 120.0, 160.0][k])
        });
        let start = self.segment.len();
        let mut phase = 0.0f32;
        for i in 0..n {
            let f0 = f0_start + (f0_end - f0_start) * (i as f32 / n as f32);
            phase += f0 / self.rate;
            if phase >= 1.0 {
                phase -= 1.0;
            }
            // A sawtooth has every harmonic, like the glottal pulse train; a little breath noise.
            let source = (1.0 - 2.0 * phase) + 0.05 * self.rng.bipolar();
            let v = formants[0].process(source)
                + 0.5 * formants[1].process(source)
                + 0.25 * formants[2].process(source);
            self.segment
                .push(v * envelope(i, n, 0.015 * self.rate, 0.04 * self.rate));
        }
        normalize_peak(&mut self.segment[start..], level);
    }

    fn fricative(&mut self, n: usize, level: f32) {
        let mut hiss = Biquad::highpass(self.rate, (0.4 * self.rate).min(4000.0));
        let start = self.segment.len();
        for i in 0..n {
            let v = hiss.process(self.rng.bipolar());
            self.segment
                .push(v * envelope(i, n, 0.02 * self.rate, 0.03 * self.rate));
        }
        normalize_peak(&mut self.segment[start..], level);
    }
}

impl Source for SpeechLike {
    fn fill(&mut self, out: &mut [f32]) {
        for frame in out.chunks_exact_mut(self.channels) {
            while self.pos == self.segment.len() {
                self.next_segment();
            }
            self.room += 0.1 * (self.rng.bipolar() - self.room);
            let v = self.segment[self.pos] + Self::ROOM_GAIN * self.room;
            self.pos += 1;
            frame.fill(v);
        }
    }
}

/// Raised-cosine attack and release, in samples.
fn envelope(i: usize, n: usize, attack: f32, release: f32) -> f32 {
    let ramp = |x: f32| {
        let x = x.clamp(0.0, 1.0);
        0.5 - 0.5 * (std::f32::consts::PI * x).cos()
    };
    ramp(i as f32 / attack.max(1.0)) * ramp((n - i) as f32 / release.max(1.0))
}

fn normalize_peak(samples: &mut [f32], peak: f32) {
    let max = samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if max > 0.0 {
        let gain = peak / max;
        samples.iter_mut().for_each(|s| *s *= gain);
    }
}

fn db_to_amplitude(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// An RBJ-cookbook biquad in transposed direct form II.
struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
    z: [f32; 2],
}

impl Biquad {
    /// Band-pass with 0 dB gain at `center` and the given bandwidth in Hz.
    fn bandpass(rate: f32, center: f32, bandwidth: f32) -> Self {
        let w0 = std::f32::consts::TAU * center / rate;
        let alpha = w0.sin() * bandwidth / (2.0 * center);
        Self::normalized(
            [alpha, 0.0, -alpha],
            [1.0 + alpha, -2.0 * w0.cos(), 1.0 - alpha],
        )
    }

    /// Second-order Butterworth high-pass.
    fn highpass(rate: f32, cutoff: f32) -> Self {
        let w0 = std::f32::consts::TAU * cutoff / rate;
        let alpha = w0.sin() / std::f32::consts::SQRT_2;
        let c = w0.cos();
        Self::normalized(
            [(1.0 + c) / 2.0, -(1.0 + c), (1.0 + c) / 2.0],
            [1.0 + alpha, -2.0 * c, 1.0 - alpha],
        )
    }

    fn normalized(b: [f32; 3], a: [f32; 3]) -> Self {
        Biquad {
            b: b.map(|x| x / a[0]),
            a: [a[1] / a[0], a[2] / a[0]],
            z: [0.0; 2],
        }
    }

    fn process(&mut self, x: f32) -> f32 {
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}

/// xorshift64* seeded through splitmix64: tiny, fast and plenty for test signals.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 spreads small seeds over the state and never yields the fatal all-zero one
        // (after `| 1`).
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [−1, 1).
    fn bipolar(&mut self) -> f32 {
        2.0 * self.unit() - 1.0
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// MP3 files

/// How long a fixture is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Length {
    /// Seconds, rounded to the nearest sample at the spec's rate.
    Secs(f64),
    /// Exact samples per channel.
    Samples(u64),
}

/// Everything about one fixture MP3. `Default` is 3 s of a 440 Hz sine at −6 dBFS, 44.1 kHz
/// stereo, CBR 128 kb/s, no tags, no cover.
#[derive(Debug, Clone, PartialEq)]
pub struct Mp3Spec {
    pub length: Length,
    /// One of [`crate::mp3_writer::MP3_SAMPLE_RATES`].
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u16,
    pub rate_control: RateControl,
    pub signal: Signal,
    /// Written as ID3v2.3 (track and disc as `n/N` when the total is known).
    pub tags: Tags,
    /// Embedded as the APIC front cover; `mime` must be `image/jpeg` or `image/png`.
    pub cover: Option<Picture>,
}

impl Default for Mp3Spec {
    fn default() -> Self {
        Mp3Spec {
            length: Length::Secs(3.0),
            sample_rate: 44_100,
            channels: 2,
            rate_control: RateControl::Cbr {
                bitrate_bps: 128_000,
            },
            signal: Signal::Sine {
                freq_hz: 440.0,
                amplitude: 0.5,
            },
            tags: Tags::default(),
            cover: None,
        }
    }
}

impl Mp3Spec {
    /// Samples per channel the file will decode to (gapless).
    pub fn samples(&self) -> u64 {
        match self.length {
            Length::Secs(secs) => secs_to_samples(secs, self.sample_rate),
            Length::Samples(n) => n,
        }
    }
}

/// Writes one MP3 as `spec` describes, streaming the signal through the encoder in chunks (so
/// hour-long benchmark inputs need no hour of PCM in memory). The writer checks the Xing/LAME
/// header it produced; the returned summary repeats what it found.
pub fn write_mp3(path: impl AsRef<Path>, spec: &Mp3Spec) -> Result<Mp3Written> {
    /// Samples per channel per chunk: big enough to amortize the calls, small enough for cache.
    const CHUNK: u64 = 8192;
    let path = path.as_ref();
    let settings = Mp3Settings {
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        rate_control: spec.rate_control,
    };
    let mut writer = Mp3Writer::create(path, &settings, &spec.tags, spec.cover.as_ref())?;
    let mut source = spec.signal.source(spec.sample_rate, spec.channels);
    let channels = usize::from(spec.channels);
    let mut buf = vec![0.0f32; CHUNK as usize * channels];
    let total = spec.samples();
    let mut done = 0;
    while done < total {
        let n = (total - done).min(CHUNK) as usize;
        let chunk = &mut buf[..n * channels];
        source.fill(chunk);
        writer.write_interleaved(chunk)?;
        done += n as u64;
    }
    writer.finish()
}

/// Writes a book of `n_files` chapter files into `dir` (created if missing):
/// `01 - Chapter 1.mp3`, `02 - Chapter 2.mp3`, … (more digits from 100 files on), each
/// `secs_each` long, tagged title "Chapter N", track `N/n_files`, and the template's album and
/// artist (default "Fixture Book" / "Fixture Author"). Seeded signals get a different seed per
/// file. Returns the paths in book order.
pub fn write_book(
    dir: impl AsRef<Path>,
    n_files: usize,
    secs_each: f64,
    template: &Mp3Spec,
) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create the book folder", e))?;
    let width = n_files.to_string().len().max(2);
    (1..=n_files)
        .map(|n| {
            let mut spec = template.clone();
            spec.length = Length::Secs(secs_each);
            spec.signal = template.signal.reseeded(n as u64);
            spec.tags.title = Some(format!("Chapter {n}"));
            spec.tags.track = Some(n as u32);
            spec.tags.track_total = Some(n_files as u32);
            spec.tags.album.get_or_insert_with(|| "Fixture Book".into());
            spec.tags
                .artist
                .get_or_insert_with(|| "Fixture Author".into());
            let path = dir.join(format!("{n:0width$} - Chapter {n}.mp3"));
            write_mp3(&path, &spec)?;
            Ok(path)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Images

/// A `width × height` JPEG (a colour gradient) encoded by the linked FFmpeg's mjpeg encoder.
///
/// # Panics
/// If the linked FFmpeg has no mjpeg encoder or the size is zero.
pub fn test_jpeg(width: u32, height: u32) -> Vec<u8> {
    image_writer::encode_rgb24(ImageFormat::Jpeg, width, height, &gradient(width, height))
        .expect("encoding a test JPEG with FFmpeg's mjpeg encoder")
}

/// A `width × height` PNG (a colour gradient) encoded by the linked FFmpeg's png encoder.
///
/// # Panics
/// If the linked FFmpeg has no png encoder or the size is zero.
pub fn test_png(width: u32, height: u32) -> Vec<u8> {
    image_writer::encode_rgb24(ImageFormat::Png, width, height, &gradient(width, height))
        .expect("encoding a test PNG with FFmpeg's png encoder")
}

/// Red grows to the right, green downwards, blue is constant: any orientation bug shows.
fn gradient(width: u32, height: u32) -> Vec<u8> {
    let scale = |i: u32, n: u32| (i * 255 / n.saturating_sub(1).max(1)) as u8;
    (0..height)
        .flat_map(|y| (0..width).flat_map(move |x| [scale(x, width), scale(y, height), 160]))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Hostile files

/// Writes files named `*.mp3` that are not good MP3s into `dir` (created if missing) and returns
/// them with their kind:
///
/// | kind | file | content |
/// |---|---|---|
/// | `empty` | `empty.mp3` | zero bytes |
/// | `id3_only` | `id3-only.mp3` | a valid ID3v2.3 tag and no audio |
/// | `text` | `text.mp3` | a UTF-8 text file |
/// | `random` | `random.mp3` | 64 KiB of random bytes without any `0xFF`, so no MPEG sync can occur by chance |
/// | `png` | `png.mp3` | a PNG image |
/// | `m3u` | `playlist.mp3` | an extended M3U playlist |
/// | `truncated` | `truncated.mp3` | a good 4 s MP3 cut in the middle of a frame at about 60 % |
/// | `corrupt_middle` | `corrupt-middle.mp3` | a good 4 s MP3 with three whole frames at about 40 % overwritten by random bytes |
///
/// The last two keep their Xing header, which still promises the full length.
pub fn write_hostile(dir: impl AsRef<Path>) -> Result<Vec<(PathBuf, &'static str)>> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create the fixture folder", e))?;
    let mut rng = Rng::new(0x0405_711E);
    let random: Vec<u8> = (0..64 * 1024)
        .map(|_| (rng.next_u64() >> 56) as u8)
        .map(|b| if b == 0xFF { 0xFE } else { b })
        .collect();
    let playlist = "#EXTM3U\n#EXTINF:300,Fixture Author - Chapter 1\n01 - Chapter 1.mp3\n\
                    #EXTINF:300,Fixture Author - Chapter 2\n02 - Chapter 2.mp3\n";
    let text = "This is a text file that was renamed to .mp3.\nIt has no audio in it.\n";

    let mut out = Vec::new();
    let mut put = |name: &str, kind: &'static str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, "write a hostile fixture", e))?;
        out.push((path, kind));
        Ok(())
    };
    put("empty.mp3", "empty", &[])?;
    put("id3-only.mp3", "id3_only", &id3_only_tag())?;
    put("text.mp3", "text", text.as_bytes())?;
    put("random.mp3", "random", &random)?;
    put("png.mp3", "png", &test_png(32, 32))?;
    put("playlist.mp3", "m3u", playlist.as_bytes())?;

    let good = Mp3Spec {
        length: Length::Secs(4.0),
        signal: Signal::SpeechLike { seed: 99 },
        ..Mp3Spec::default()
    };
    for (name, kind) in [
        ("truncated.mp3", "truncated"),
        ("corrupt-middle.mp3", "corrupt_middle"),
    ] {
        let path = dir.join(name);
        write_mp3(&path, &good)?;
        let mut bytes =
            std::fs::read(&path).map_err(|e| Error::io(&path, "read a fixture back", e))?;
        let frames = frame_starts(&bytes);
        if frames.len() < 10 {
            return Err(Error::Verify {
                path,
                problems: vec![format!("found only {} MP3 frames to damage", frames.len())],
            });
        }
        if kind == "truncated" {
            let (start, len) = frames[frames.len() * 3 / 5];
            bytes.truncate(start + len / 2);
        } else {
            let k = frames.len() * 2 / 5;
            let (from, to) = (frames[k].0, frames[k + 3].0);
            bytes[from..to]
                .iter_mut()
                .for_each(|b| *b = (rng.next_u64() >> 56) as u8);
        }
        put(name, kind, &bytes)?;
    }
    Ok(out)
}

/// `(offset, length)` of every frame after the ID3v2 tag, walking headers from the first one;
/// stops at the first byte that is not a frame header (e.g. an ID3v1 tag).
fn frame_starts(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut frames = Vec::new();
    let mut at = usize::try_from(audio_start(bytes)).unwrap_or(usize::MAX);
    while let Some(header) = bytes.get(at..).and_then(FrameHeader::parse) {
        frames.push((at, header.len));
        at += header.len;
    }
    frames
}

/// An ID3v2.3 tag with one TIT2 frame and 512 bytes of padding, as a tagger leaves behind.
fn id3_only_tag() -> Vec<u8> {
    let title = b"\0Only a tag"; // encoding byte 0 = ISO-8859-1
    let mut frame = b"TIT2".to_vec();
    frame.extend_from_slice(&(title.len() as u32).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(title);
    let size = frame.len() + 512;
    // The tag size is "syncsafe": 7 bits per byte.
    let syncsafe = [21, 14, 7, 0].map(|shift| ((size >> shift) & 0x7F) as u8);
    let mut tag = b"ID3\x03\x00\x00".to_vec();
    tag.extend_from_slice(&syncsafe);
    tag.extend_from_slice(&frame);
    tag.resize(10 + size, 0);
    tag
}
