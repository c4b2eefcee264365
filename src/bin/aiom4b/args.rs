//! Command-line arguments (clap) and their mapping onto the library's option structs — the one
//! place where low-level flags become high-level options.
//!
//! Settings that the workflow's configuration also knows (`DATA_DIR`, `MAX_FILE_SIZE_MB`,
//! `NAME_TEMPLATE`, `USE_ALL_CPUS`, `DEBUG` …) are read from [`Config`] only — command line >
//! environment > config file > default. Their flags are handed to it as [`Overrides`]
//! ([`Cli::overrides`]) and checked there, once, so a flag, a variable and the file can't
//! disagree and a bad value is the same usage error (exit 2) wherever it comes from.
use crate::workflow_cmds::{BatchArgs, ConfigArgs, JobArgs, WorkflowCommand};
use aiom4b::workflow::config::Setting;
use aiom4b::workflow::{Config, Overrides};
use aiom4b::BookMetadata;
use aiom4b::*;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "aiom4b", version = crate::version_line(), long_version = crate::long_version(),
          about = "Turn folders of MP3 audiobook files into one M4B audiobook (AAC, chapters, metadata, cover)",
          after_help = "Exit codes: 0 ok, 1 conversion/verification failure or bad input, 2 usage or invalid configuration, 130 interrupted (Ctrl-C; 143 SIGTERM, 129 SIGHUP: the job is cancelled cleanly).")]
pub struct Cli {
    // A heading of their own, so that `convert --help` does not mix them into its flags.
    #[command(flatten, next_help_heading = "Global options")]
    pub global: ConfigArgs,
    /// Only errors; no progress bar.
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what a conversion of the folders would do, without writing anything.
    Probe(ProbeArgs),
    /// Convert the folders into one .m4b, as a job (backup, record, naming, post-actions).
    Convert(Box<ConvertArgs>),
    /// Convert every book folder of a library, several at once.
    Batch(BatchCmdArgs),
    /// Check an .m4b with an independent reader and print its summary (backups: `backup verify`).
    Verify(VerifyArgs),
    /// Change tags, cover or chapters of a finished .m4b/.m4a without re-encoding (in place
    /// when it fits, atomic, verified).
    Edit(crate::cmd_edit::EditArgs),
    /// Split an .m4b into parts at chapter boundaries, without re-encoding.
    Split(crate::cmd_split::SplitArgs),
    /// Search Audible's catalog for a book (a folder or an .m4b) and rank the candidates by
    /// title, author, narrator and duration.
    Match(crate::cmd_match::MatchArgs),
    /// Tag an .m4b from Audible by ASIN (Audnexus): metadata, cover, and Audible's chapters
    /// fitted to its audio, without re-encoding.
    Tag(crate::cmd_tag::TagArgs),
    /// Run the conversion service: REST API, job queue, live progress (see the README).
    Serve(crate::serve::ServeArgs),
    /// Run jobs from the shared job store (DATABASE_URL), without the API: one of several
    /// workers on one or many hosts (see docs/scale-out.md).
    Worker(crate::serve::worker::WorkerArgs),
    /// Ask a running `aiom4b serve` whether it is alive (GET /api/v1/health); exit 0 if it is. For
    /// container health checks and service watchdogs.
    Health(crate::serve::health_check::HealthArgs),
    #[command(flatten)]
    Workflow(WorkflowCommand),
    /// The chapters of a finished .m4b: export and import them (txt, json, cue, ffmetadata), or
    /// detect chapters from its pauses.
    #[command(subcommand)]
    Chapters(crate::cmd_chapters::ChaptersCommand),
    /// Print the shell completion script for bash, zsh or fish.
    Completions(crate::cmd_docs::CompletionsArgs),
    /// Print the manual page (aiom4b.1), or write every page into --dir.
    Man(crate::cmd_docs::ManArgs),
}

impl Cli {
    /// The command-line layer of the configuration: the global options and the command's
    /// flags that set a configuration value.
    pub fn overrides(&self) -> Overrides {
        let mut o = self.global.overrides();
        match &self.command {
            Command::Probe(a) => a.input.book.add_overrides(&mut o),
            Command::Convert(a) => {
                a.input.book.add_overrides(&mut o);
                a.job.add_overrides(&mut o);
            }
            Command::Batch(a) => {
                a.book.add_overrides(&mut o);
                a.batch.job.add_overrides(&mut o);
            }
            Command::Verify(_)
            | Command::Edit(_)
            | Command::Split(_)
            | Command::Match(_)
            | Command::Tag(_)
            | Command::Serve(_)
            | Command::Worker(_)
            | Command::Health(_)
            | Command::Workflow(_)
            | Command::Chapters(_)
            | Command::Completions(_)
            | Command::Man(_) => {}
        }
        o
    }
}

impl Command {
    /// Whether the command works in `DATA_DIR` (database, outputs, backups) and so also logs
    /// there. The others must not create it.
    pub fn uses_data_dir(&self) -> bool {
        match self {
            Command::Convert(_) | Command::Batch(_) | Command::Serve(_) | Command::Worker(_) => {
                true
            }
            Command::Probe(_)
            | Command::Verify(_)
            | Command::Edit(_)
            | Command::Chapters(_)
            | Command::Split(_)
            // They write only their cache (DATA_DIR/cache/metadata), and log to the terminal.
            | Command::Match(_)
            | Command::Tag(_)
            | Command::Health(_)
            | Command::Completions(_)
            | Command::Man(_) => false,
            Command::Workflow(w) => !matches!(
                w,
                WorkflowCommand::Config { .. } | WorkflowCommand::Folders { .. }
            ),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Folders with the book's MP3 files, in book order (with --each: one book per folder).
    #[arg(required = true, value_name = "FOLDER")]
    pub folders: Vec<PathBuf>,
    #[command(flatten)]
    pub book: BookArgs,
    #[command(flatten)]
    pub meta: MetaArgs,
    /// Output file; replaces DATA_DIR/output and the name template.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

/// How a book folder is read and what format it becomes (shared by convert and batch).
#[derive(Args, Debug, Clone)]
pub struct BookArgs {
    /// File order: natural (2 before 10, disc folders as a whole), alpha, or tags (ID3 disc/track).
    #[arg(long, value_enum, default_value_t = OrderArg::Natural)]
    pub order: OrderArg,
    /// How many folder levels to descend (1 = only the folder itself).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub max_depth: u32,
    /// Largest accepted MP3 file in MB [env: MAX_FILE_SIZE_MB; default 1000]
    #[arg(long, value_name = "MB")]
    pub max_file_size_mb: Option<String>,
    /// Largest accepted total of all files in MB [env: MAX_TOTAL_SIZE_MB; default 50000]
    #[arg(long, value_name = "MB")]
    pub max_total_size_mb: Option<String>,
    /// Chapter titles from ID3 titles, from file names, or auto (tags unless missing or all identical).
    #[arg(long, value_enum, default_value_t = TitlesArg::Auto)]
    pub chapter_titles: TitlesArg,
    #[command(flatten)]
    pub format: FormatArgs,
}

#[derive(Args, Debug, Clone)]
pub struct FormatArgs {
    /// Preset: default (128k stereo 44.1 kHz), speech (64k mono), source (follow the inputs).
    #[arg(long, value_enum, default_value_t = PresetArg::Default)]
    pub preset: PresetArg,
    /// AAC bitrate, e.g. 128k, 64000.
    #[arg(long, value_parser = parse_bitrate)]
    pub bitrate: Option<u64>,
    /// Output channels (1 or 2).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=2))]
    pub channels: Option<u16>,
    /// Output sample rate in Hz (an AAC rate: 8000 … 96000).
    #[arg(long, value_parser = parse_sample_rate)]
    pub sample_rate: Option<u32>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct MetaArgs {
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub author: Option<String>,
    #[arg(long)]
    pub narrator: Option<String>,
    #[arg(long)]
    pub album: Option<String>,
    #[arg(long)]
    pub genre: Option<String>,
    #[arg(long)]
    pub year: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long)]
    pub comment: Option<String>,
    #[arg(long)]
    pub series: Option<String>,
    #[arg(long)]
    pub series_part: Option<String>,
    /// Cover image (JPEG or PNG) instead of the embedded or folder cover.
    #[arg(long, value_name = "IMG")]
    pub cover: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Machine-readable JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub encode: EncodeArgs,
    #[command(flatten)]
    pub job: JobArgs,
    /// Convert each FOLDER as a book of its own (a batch), instead of all as one book.
    #[arg(long, conflicts_with_all = ["output", "chapters_file", "jobs", "overwrite"])]
    pub each: bool,
    /// With --each: convert books again that were converted before.
    #[arg(long, requires = "each")]
    pub force: bool,
    /// Replace an existing -o file (generated names never replace anything).
    #[arg(long, requires = "output")]
    pub overwrite: bool,
    /// Engine threads (default: all cores when USE_ALL_CPUS is true, else 1).
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Chapters from a file: "HH:MM:SS.mmm Title" lines, JSON, CUE, FFmpeg metadata or OGM
    /// (recognised from the content; see `aiom4b chapters export`).
    #[arg(long, value_name = "FILE", conflicts_with = "no_chapters")]
    pub chapters_file: Option<PathBuf>,
    /// Print a machine-readable JSON report at the end (with the job id).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lookup: LookupArgs,
}

/// `convert --asin` / `--match auto`: the book's metadata from Audible (Audnexus).
#[derive(Args, Debug, Clone)]
pub struct LookupArgs {
    /// Tag the book from Audible by ASIN (Audnexus): title, authors, narrators, series and
    /// part, description, genres, year, publisher, ASIN, the full-size cover and Audible's
    /// chapters fitted to this audio's pauses. Tag flags (--title …), --cover and
    /// --chapters-file/--no-chapters/--chapters silence still win. A provider failure is a
    /// warning: the book is converted with the folder's tags.
    #[arg(long, value_name = "ASIN", value_parser = parse_asin,
          conflicts_with_all = ["each", "match_mode"])]
    pub asin: Option<String>,
    #[command(flatten)]
    pub auto: AutoMatchArgs,
}

/// `--match auto` (convert, `convert --each`, batch): each book matched on Audible.
#[derive(Args, Debug, Clone)]
pub struct AutoMatchArgs {
    /// auto: search Audible's catalog for the book (its tags or folder name, author, exact
    /// length) and apply the best candidate as --asin does when its score reaches
    /// --match-threshold; otherwise keep the folder's tags and say so. With several books
    /// (--each, batch) each is matched on its own.
    #[arg(long = "match", value_name = "MODE", value_enum)]
    pub match_mode: Option<MatchArg>,
    /// Audible marketplace for --asin/--match: us, uk, de, fr, ca, au, in, it, es, jp.
    #[arg(long, default_value = "us", value_parser = crate::cmd_match::parse_region)]
    pub region: aiom4b::metadata::Region,
    /// Lowest score (0–1) at which --match auto applies the best candidate.
    #[arg(long, value_name = "SCORE", default_value_t = aiom4b::metadata::DEFAULT_MATCH_THRESHOLD,
          value_parser = parse_score)]
    pub match_threshold: f64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchArg {
    Auto,
}

fn parse_asin(s: &str) -> Result<String, String> {
    aiom4b::metadata::normalize_asin(s).map_err(|e| e.to_string().replace("invalid option: ", ""))
}

fn parse_score(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a score; give a number from 0 to 1, e.g. 0.75"
        )),
    }
}

/// `aiom4b batch LIBRARY_DIR`.
#[derive(Args, Debug)]
pub struct BatchCmdArgs {
    /// The library: every book folder below it (see `aiom4b folders`) is converted.
    #[arg(value_name = "LIBRARY_DIR")]
    pub library: PathBuf,
    #[command(flatten)]
    pub book: BookArgs,
    #[command(flatten)]
    pub encode: EncodeArgs,
    #[command(flatten)]
    pub batch: BatchArgs,
    #[command(flatten)]
    pub auto: AutoMatchArgs,
}

/// Encoder settings (shared by convert and batch).
#[derive(Args, Debug, Clone)]
pub struct EncodeArgs {
    /// AAC encoder: native (FFmpeg's) or fdk (Fraunhofer FDK, when built with the fdk-aac
    /// feature). Default: fdk when compiled in, else native.
    #[arg(long, value_enum)]
    pub encoder: Option<EncoderArg>,
    /// AAC profile: lc, or he / hev2 for small speech files (FDK only).
    #[arg(long, value_enum, default_value_t = ProfileArg::Lc)]
    pub profile: ProfileArg,
    /// AAC coder of the native encoder: twoloop (better) or fast.
    #[arg(long, value_enum, default_value_t = CoderArg::Twoloop)]
    pub aac_coder: CoderArg,
    /// The audio: auto copies AAC-LC parts (in MP4, at one rate and channel count) without
    /// re-encoding, re-encoding only a few frames at each join, and encodes anything else;
    /// copy fails when that is not possible; encode always re-encodes. An explicit --bitrate
    /// or --preset asks for encoding.
    #[arg(long, value_enum, default_value_t = AudioArg::Auto)]
    pub audio: AudioArg,
    /// Write no chapters.
    #[arg(long)]
    pub no_chapters: bool,
    /// Where chapters come from: files (one per input file, a part's own chapters where an
    /// M4B/M4A part has them, or --chapters-file), per-file (one per input file, whatever a part
    /// brings) or silence (at the pauses of the audio; see --silence-db, --silence-min,
    /// --min-chapter, --max-chapter).
    #[arg(long, value_enum, value_name = "FROM", conflicts_with = "no_chapters")]
    pub chapters: Option<ChaptersArg>,
    /// Move every chapter mark to the nearest pause within this window (e.g. 2s), and report
    /// how far each moved and which found no pause.
    #[arg(long, value_name = "DURATION", value_parser = parse_secs)]
    pub snap_to_silence: Option<f64>,
    #[command(flatten)]
    pub silence: SilenceArgs,
    /// Write the book as parts when it is longer or larger than this: a duration (20h,
    /// 11h30m) or a size (4GB, 3.9GiB). Cut at chapter boundaries without a second encode;
    /// each part is a verified M4B named "NAME - Part k of n.m4b" with its chapters, tags and
    /// cover. A book under the limit stays one file.
    #[arg(long, value_name = "LIMIT", value_parser = aiom4b::SplitAt::parse)]
    pub split_at: Option<aiom4b::SplitAt>,
    /// Keep the audio that decodes from files with damaged frames instead of failing.
    #[arg(long)]
    pub allow_damaged: bool,
    /// Skip the independent verification of the written file.
    #[arg(long)]
    pub no_verify: bool,
    /// Frames per segment of the multi-core encoder; 0 = automatic (for splice-quality tests).
    #[arg(long, hide = true, default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub segment_frames: u64,
}

/// How pauses are found and chapters made from them (convert, batch, chapters detect).
#[derive(Args, Debug, Clone, Default)]
pub struct SilenceArgs {
    /// Quieter than this is silence, in dB below full scale (RMS over 10 ms) [default: -35].
    #[arg(long, value_name = "DB", allow_hyphen_values = true, value_parser = parse_db)]
    pub silence_db: Option<f64>,
    /// Shortest pause that starts a chapter or takes a snapped mark, e.g. 1.5s [default: 1.5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_secs)]
    pub silence_min: Option<f64>,
    /// Shortest chapter made from pauses, e.g. 60s or 2m [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_secs)]
    pub min_chapter: Option<f64>,
    /// Longest chapter made from pauses (a longer stretch is split at its longest pause), e.g.
    /// 30m; 0 = no limit [default: 30m].
    #[arg(long, value_name = "DURATION", value_parser = parse_secs)]
    pub max_chapter: Option<f64>,
}

impl SilenceArgs {
    /// The library's options: the flags given, the defaults for the rest.
    pub fn options(&self) -> SilenceOptions {
        let mut o = SilenceOptions::default();
        if let Some(v) = self.silence_db {
            o.threshold_db = v;
        }
        if let Some(v) = self.silence_min {
            o.min_pause_secs = v;
        }
        if let Some(v) = self.min_chapter {
            o.min_chapter_secs = v;
        }
        if let Some(v) = self.max_chapter {
            o.max_chapter_secs = v;
        }
        o
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChaptersArg {
    /// One chapter per input file; a part with chapters of its own (M4B/M4A) brings those.
    Files,
    /// One chapter per input file, ignoring the chapters a part brings.
    PerFile,
    /// At the pauses of the audio.
    Silence,
}

/// `-35`, `-35dB` → dB.
pub fn parse_db(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("dB")
        .or_else(|| t.strip_suffix("db"))
        .unwrap_or(t)
        .trim();
    t.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{s:?} is not a level in dB; write e.g. -35 or -35dB"))
}

/// `1.5`, `1.5s`, `500ms`, `2m`, `1h`, `1h30m`, `1:30` → seconds
/// ([`aiom4b::chapters::parse_duration`]).
pub fn parse_secs(s: &str) -> Result<f64, String> {
    aiom4b::chapters::parse_duration(s)
        .ok_or_else(|| format!("{s:?} is not a duration; write e.g. 2s, 1.5, 500ms, 5m or 1h"))
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The .m4b file to check.
    pub file: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum OrderArg {
    Natural,
    Alpha,
    Tags,
}
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum TitlesArg {
    Auto,
    Tags,
    Filenames,
}
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum PresetArg {
    Default,
    Speech,
    Source,
}
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum EncoderArg {
    Native,
    Fdk,
}
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ProfileArg {
    Lc,
    He,
    Hev2,
}
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioArg {
    Auto,
    Copy,
    Encode,
}
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum CoderArg {
    Twoloop,
    Fast,
}

/// `128k`, `64K`, `96000`, `0.128M` → bits per second.
pub fn parse_bitrate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mul) = if let Some(n) = t.strip_suffix('k') {
        (n, 1_000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 1_000_000.0)
    } else {
        (t.as_str(), 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a bitrate; write e.g. 128k or 64000"))?;
    let bps = (v * mul).round();
    // The range the encoder accepts (options::validate_target), so that a bitrate it would
    // refuse after the backup is a usage error here.
    if !(8_000.0..=320_000.0).contains(&bps) {
        return Err(format!("{s} is out of range; use 16k..320k"));
    }
    Ok(bps as u64)
}

/// An output sample rate AAC supports; any other would fail the job after its backup.
pub fn parse_sample_rate(s: &str) -> Result<u32, String> {
    let hz: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a sample rate in Hz, e.g. 44100"))?;
    if !AAC_SAMPLE_RATES.contains(&hz) {
        return Err(format!(
            "{hz} Hz is not an AAC sample rate; use one of {AAC_SAMPLE_RATES:?}"
        ));
    }
    Ok(hz)
}

impl BookArgs {
    pub fn scan_options(&self, cfg: &Config) -> ScanOptions {
        {
            let mut o = ScanOptions::default();
            o.max_depth = self.max_depth as usize;
            o.order = match self.order {
                OrderArg::Natural => Order::Natural,
                OrderArg::Alpha => Order::Alpha,
                OrderArg::Tags => Order::Tags,
            };
            o.exclude = cfg.protected_dirs();
            o.inputs = cfg.allowed_inputs;
            o
        }
    }
    /// Adds the size limits given as flags to the command-line layer of the configuration.
    pub fn add_overrides(&self, o: &mut Overrides) {
        if let Some(mb) = &self.max_file_size_mb {
            o.set_flag(Setting::MaxFileSizeMb, "--max-file-size-mb", mb.clone());
        }
        if let Some(mb) = &self.max_total_size_mb {
            o.set_flag(Setting::MaxTotalSizeMb, "--max-total-size-mb", mb.clone());
        }
    }

    /// Plan options without metadata overrides, cover or output (a batch's books).
    pub fn plan_options(&self, cfg: &Config) -> PlanOptions {
        {
            let mut o = PlanOptions::default();
            o.chapter_titles = match self.chapter_titles {
                TitlesArg::Auto => ChapterTitles::Auto,
                TitlesArg::Tags => ChapterTitles::Tags,
                TitlesArg::Filenames => ChapterTitles::Filenames,
            };
            o.overrides = BookMetadata::default();
            o.cover = None;
            o.output = None;
            o.data_dir = Some(cfg.data_dir.clone());
            o.target = {
                let mut o = TargetSpec::default();
                o.preset = match self.format.preset {
                    PresetArg::Default => Preset::Default,
                    PresetArg::Speech => Preset::Speech,
                    PresetArg::Source => Preset::Source,
                };
                o.sample_rate = self.format.sample_rate;
                o.channels = self.format.channels;
                o.bitrate_bps = self.format.bitrate;
                o
            };
            // Set from --allow-damaged by the commands that have it (convert, batch).
            o.allow_damaged = false;
            o
        }
    }
}

impl InputArgs {
    pub fn plan_options(&self, cfg: &Config) -> PlanOptions {
        let m = &self.meta;
        {
            let mut o = self.book.plan_options(cfg);
            o.overrides = BookMetadata {
                title: m.title.clone(),
                author: m.author.clone(),
                narrator: m.narrator.clone(),
                album: m.album.clone(),
                genre: m.genre.clone(),
                year: m.year.clone(),
                description: m.description.clone(),
                comment: m.comment.clone(),
                series: m.series.clone(),
                series_part: m.series_part.clone(),
            };
            o.cover = m.cover.clone();
            o.output = self.output.clone();
            o
        }
    }
}

impl EncodeArgs {
    /// The engine's options; `jobs` and the chapters file are set by the caller (they differ
    /// between one book and a batch).
    pub fn convert_options(&self) -> ConvertOptions {
        {
            let mut o = ConvertOptions::default();
            o.encoder = match self.encoder {
                Some(EncoderArg::Native) => EncoderChoice::Native,
                Some(EncoderArg::Fdk) => EncoderChoice::Fdk,
                None => EncoderChoice::best_available(),
            };
            o.profile = match self.profile {
                ProfileArg::Lc => AacProfile::Lc,
                ProfileArg::He => AacProfile::He,
                ProfileArg::Hev2 => AacProfile::Hev2,
            };
            o.coder = match self.aac_coder {
                CoderArg::Twoloop => AacCoder::Twoloop,
                CoderArg::Fast => AacCoder::Fast,
            };
            // Set per job from JobContext::engine_threads.
            o.jobs = 1;
            o.chapters = if self.no_chapters {
                ChapterMode::None
            } else if self.chapters == Some(ChaptersArg::Silence) {
                ChapterMode::Silence
            } else if self.chapters == Some(ChaptersArg::PerFile) {
                ChapterMode::PerFile
            } else {
                ChapterMode::Auto
            };
            o.silence = self.silence.options();
            o.snap_to_silence = self.snap_to_silence;
            o.split_at = self.split_at;
            o.allow_damaged = self.allow_damaged;
            // The workflow publishes; -o --overwrite goes to the job request.
            o.overwrite = false;
            o.verify = !self.no_verify;
            o.segment_frames = self.segment_frames;
            o.audio = match self.audio {
                AudioArg::Auto => aiom4b::AudioMode::Auto,
                AudioArg::Copy => aiom4b::AudioMode::Copy,
                AudioArg::Encode => aiom4b::AudioMode::Encode,
            };
            o
        }
    }
}
