//! The effective configuration and where each value came from.
//!
//! Every setting has an environment variable name (`DATA_DIR`) and a key in
//! `config/aiom4b.toml` (`data_dir`). Precedence: command line > environment > file > default.
//! Every layer is parsed by the same function, so a bad value is rejected the same way wherever
//! it comes from, and the error names the setting as the user wrote it (`--max-file-size-mb`,
//! `MAX_FILE_SIZE_MB` or `max_file_size_mb` in the file) and says what is accepted. The CLI
//! therefore hands its flags for these settings to [`Overrides`] instead of checking them
//! itself. Relative paths are relative to the current directory.
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The default config file, relative to the current directory.
pub const DEFAULT_CONFIG_FILE: &str = "config/aiom4b.toml";
/// The environment variable that names another config file.
pub const CONFIG_FILE_VAR: &str = "AIOM4B_CONFIG";
/// The default output name template: sanitized title plus a timestamp, never colliding in practice.
pub const DEFAULT_NAME_TEMPLATE: &str = "{title}_{timestamp}";

/// A setting, named in code by this enum so that a misspelt name does not compile (the command
/// line, tests and embedders address settings through it, never by string). Its environment
/// variable ([`Setting::var`]) and config-file key ([`Setting::key`]) are the names users write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Setting {
    /// `DEBUG`: debug logging ([`Config::debug`]).
    Debug,
    /// `API_HOST`: address of the REST service ([`Config::api_host`]).
    ApiHost,
    /// `API_PORT`: port of the REST service ([`Config::api_port`]).
    ApiPort,
    /// `MAX_CONCURRENT_JOBS`: books converted at once in a batch
    /// ([`Config::max_concurrent_jobs`]).
    MaxConcurrentJobs,
    /// `USE_ALL_CPUS`: whether the engine gets every core ([`Config::use_all_cpus`]).
    UseAllCpus,
    /// `MAX_FILE_SIZE_MB`: largest accepted input file, in MiB ([`Config::max_file_size_mb`]).
    MaxFileSizeMb,
    /// `MAX_TOTAL_SIZE_MB`: largest accepted total of a book's input files, in MiB
    /// ([`Config::max_total_size_mb`]).
    MaxTotalSizeMb,
    /// `ALLOWED_INPUTS`: the input formats accepted ([`Config::allowed_inputs`]).
    AllowedInputs,
    /// `BACKUP_ENABLED`: back up source folders before processing ([`Config::backup_enabled`]).
    BackupEnabled,
    /// `BACKUP_RETENTION_DAYS`: age in days at which backups are pruned
    /// ([`Config::backup_retention_days`]).
    BackupRetentionDays,
    /// `BACKUP_ENCRYPT_TO`: age recipients new backups are encrypted to
    /// ([`Config::backup_encrypt_to`]).
    BackupEncryptTo,
    /// `DATA_DIR`: folder of the database, output, backups and logs ([`Config::data_dir`]).
    DataDir,
    /// `SOURCE_DIR`: where book folders are looked for ([`Config::source_dir`]).
    SourceDir,
    /// `OUTPUT_MODE`: Unix permissions of written M4B files, octal ([`Config::output_mode`]).
    OutputMode,
    /// `NAME_TEMPLATE`: output file name template ([`Config::name_template`]).
    NameTemplate,
    /// `PROCESSING_TIMEOUT_SECS`: a conversion's time limit in seconds
    /// ([`Config::processing_timeout_secs`]).
    ProcessingTimeoutSecs,
    /// `LOG_MAX_SIZE_MB`: size in MiB at which a log file is rotated
    /// ([`Config::log_max_size_mb`]).
    LogMaxSizeMb,
    /// `LOG_MAX_FILES`: log files kept ([`Config::log_max_files`]).
    LogMaxFiles,
    /// `DATABASE_URL`: the job store ([`Config::database_url`]).
    DatabaseUrl,
    /// `CORS_ORIGINS`: origins whose pages may call the REST service
    /// ([`Config::cors_origins`]).
    CorsOrigins,
    /// `LOG_FORMAT`: where and how the command-line tool logs ([`Config::log_format`]).
    LogFormat,
    /// `OUTPUT_LAYOUT`: `flat` output files, or a `library` of folders with sidecars
    /// ([`Config::output_layout`]).
    OutputLayout,
    /// `LIBRARY_TEMPLATE`: a book's folder in the library layout
    /// ([`Config::library_template`]).
    LibraryTemplate,
}

/// How finished books are filed (`OUTPUT_LAYOUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputLayout {
    /// `DATA_DIR/output/{NAME_TEMPLATE}.m4b`.
    #[default]
    Flat,
    /// `DATA_DIR/output/library/{LIBRARY_TEMPLATE}/{title}.m4b` with `desc.txt`, `reader.txt`,
    /// `metadata.opf` and the cover beside it (see [`crate::workflow::library`]).
    Library,
}

/// How the command-line tool logs (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines on stderr, and JSON lines in `DATA_DIR/logs/` (rotated).
    #[default]
    Text,
    /// Only JSON lines, one stream for a log collector: stdout for `aiom4b serve` (a
    /// container's log), stderr for the commands whose stdout is their output; no log files.
    Json,
}

/// One setting: variable, file key, default, help.
struct Spec {
    setting: Setting,
    var: &'static str,
    key: &'static str,
    default: &'static str,
    help: &'static str,
}

/// Every setting, in the order `aiom4b config` lists them and settings are applied; indexed by
/// `Setting as usize` (a unit test checks that the two orders agree).
const SPECS: &[Spec] = &[
    Spec {
        setting: Setting::Debug,
        var: "DEBUG",
        key: "debug",
        default: "false",
        help: "debug logging",
    },
    Spec {
        setting: Setting::ApiHost,
        var: "API_HOST",
        key: "api_host",
        default: "127.0.0.1",
        help: "address of the REST service",
    },
    Spec {
        setting: Setting::ApiPort,
        var: "API_PORT",
        key: "api_port",
        default: "8000",
        help: "port of the REST service",
    },
    Spec {
        setting: Setting::MaxConcurrentJobs,
        var: "MAX_CONCURRENT_JOBS",
        key: "max_concurrent_jobs",
        default: "4",
        help: "books converted at once in a batch",
    },
    Spec {
        setting: Setting::UseAllCpus,
        var: "USE_ALL_CPUS",
        key: "use_all_cpus",
        default: "true",
        help: "give the engine every core (false: one thread per job)",
    },
    Spec {
        setting: Setting::MaxFileSizeMb,
        var: "MAX_FILE_SIZE_MB",
        key: "max_file_size_mb",
        default: "1000",
        help: "largest accepted input file",
    },
    Spec {
        setting: Setting::MaxTotalSizeMb,
        var: "MAX_TOTAL_SIZE_MB",
        key: "max_total_size_mb",
        default: "50000",
        help: "largest accepted total of a book's input files",
    },
    Spec {
        setting: Setting::AllowedInputs,
        var: "ALLOWED_INPUTS",
        key: "allowed_inputs",
        default: "all",
        help: "input formats accepted: all, or some of mp3,m4a,aac,flac,vorbis,opus,wav (mp3 alone: the strict MP3-only validation)",
    },
    Spec {
        setting: Setting::BackupEnabled,
        var: "BACKUP_ENABLED",
        key: "backup_enabled",
        default: "true",
        help: "back up every source folder before processing",
    },
    Spec {
        setting: Setting::BackupRetentionDays,
        var: "BACKUP_RETENTION_DAYS",
        key: "backup_retention_days",
        default: "30",
        help: "age at which backups are pruned",
    },
    Spec {
        setting: Setting::BackupEncryptTo,
        var: "BACKUP_ENCRYPT_TO",
        key: "backup_encrypt_to",
        default: "",
        help: "encrypt backups with age to these recipients (age1… public keys, comma-separated); empty: not encrypted; restoring then needs `backup restore --identity FILE`",
    },
    Spec {
        setting: Setting::DataDir,
        var: "DATA_DIR",
        key: "data_dir",
        default: "./data",
        help: "database, output, backups and logs",
    },
    Spec {
        setting: Setting::SourceDir,
        var: "SOURCE_DIR",
        key: "source_dir",
        default: "./source",
        help: "where book folders are looked for",
    },
    Spec {
        setting: Setting::OutputMode,
        var: "OUTPUT_MODE",
        key: "output_mode",
        default: "0644",
        help: "permissions of written M4B files (octal)",
    },
    Spec {
        setting: Setting::NameTemplate,
        var: "NAME_TEMPLATE",
        key: "name_template",
        default: DEFAULT_NAME_TEMPLATE,
        help: "output file name: {title} {author} {narrator} {series} {year} {folder} {timestamp}",
    },
    Spec {
        setting: Setting::ProcessingTimeoutSecs,
        var: "PROCESSING_TIMEOUT_SECS",
        key: "processing_timeout_secs",
        default: "0",
        help: "conversion time limit; 0 = derived from the audio length",
    },
    Spec {
        setting: Setting::LogMaxSizeMb,
        var: "LOG_MAX_SIZE_MB",
        key: "log_max_size_mb",
        default: "10",
        help: "size at which a log file is rotated",
    },
    Spec {
        setting: Setting::LogMaxFiles,
        var: "LOG_MAX_FILES",
        key: "log_max_files",
        default: "14",
        help: "log files kept",
    },
    Spec {
        setting: Setting::DatabaseUrl,
        var: "DATABASE_URL",
        key: "database_url",
        default: "",
        help: "job store: empty = SQLite in DATA_DIR; postgres://user:password@host/db = a PostgreSQL shared by several hosts",
    },
    Spec {
        setting: Setting::CorsOrigins,
        var: "CORS_ORIGINS",
        key: "cors_origins",
        default: "",
        help: "origins (comma-separated, exact: https://host:port) allowed to call the REST service from a browser; empty: none",
    },
    Spec {
        setting: Setting::LogFormat,
        var: "LOG_FORMAT",
        key: "log_format",
        default: "text",
        help: "text: terminal lines on stderr, JSON lines in DATA_DIR/logs; json: only JSON lines (instance_id, job_id, stage), on stdout for serve (a container's collector), on stderr for commands whose stdout is their output",
    },
    Spec {
        setting: Setting::OutputLayout,
        var: "OUTPUT_LAYOUT",
        key: "output_layout",
        default: "flat",
        help: "flat: DATA_DIR/output/NAME.m4b; library: DATA_DIR/output/library/Author/Series/Part - Title/Title.m4b with desc.txt, reader.txt, metadata.opf and the cover (Audiobookshelf, Plex, Jellyfin)",
    },
    Spec {
        setting: Setting::LibraryTemplate,
        var: "LIBRARY_TEMPLATE",
        key: "library_template",
        default: crate::workflow::library::DEFAULT_LIBRARY_TEMPLATE,
        help: "a book's folder in the library layout: levels separated by /, with {author} {series} {series_part} {title} {narrator} {year} {folder}; a level without a value is left out",
    },
];

impl Setting {
    /// Every setting, in the order `aiom4b config` lists them.
    pub fn all() -> impl Iterator<Item = Setting> {
        SPECS.iter().map(|s| s.setting)
    }

    fn spec(self) -> &'static Spec {
        &SPECS[self as usize]
    }

    /// The environment variable (`DATA_DIR`).
    pub fn var(self) -> &'static str {
        self.spec().var
    }

    /// The key in the config file (`data_dir`).
    pub fn key(self) -> &'static str {
        self.spec().key
    }

    /// The built-in default, as text.
    pub fn default_text(self) -> &'static str {
        self.spec().default
    }

    /// One line of help.
    pub fn help(self) -> &'static str {
        self.spec().help
    }

    /// The setting whose environment variable is `var`.
    pub fn from_var(var: &str) -> Option<Setting> {
        Setting::all().find(|s| s.var() == var)
    }

    /// The setting whose config-file key is `key`.
    pub fn from_key(key: &str) -> Option<Setting> {
        Setting::all().find(|s| s.key() == key)
    }
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.var())
    }
}

/// Where a value came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default ([`Setting::default_text`]).
    #[default]
    Default,
    /// The config file at this path.
    File(PathBuf),
    /// The setting's environment variable ([`Setting::var`]).
    Env,
    /// The command line, through [`Overrides`].
    Cli,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(p) => write!(f, "file {}", p.display()),
            Origin::Env => f.write_str("environment"),
            Origin::Cli => f.write_str("command line"),
        }
    }
}

/// Configuration problems; every variant names the setting or file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value does not parse or is out of range.
    #[error("invalid {name} = {value:?} (from {origin}{}): {reason}",
            if name == var { String::new() } else { format!(", setting {var}") })]
    Invalid {
        /// The setting's environment variable name (`API_PORT`), whatever layer the value
        /// came from.
        var: &'static str,
        /// The setting as the user wrote it: the command-line flag, the file key or the
        /// environment variable.
        name: String,
        /// The value as given (untrimmed).
        value: String,
        /// The layer the value came from.
        origin: Origin,
        /// What is accepted, e.g. "expected a whole number from 1 to 65535".
        reason: String,
    },
    /// The config file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The config file.
        path: PathBuf,
        /// The I/O or TOML error, as text.
        reason: String,
    },
    /// The config file has a key aiom4b does not know (a typo would otherwise go unnoticed).
    #[error("{path}:{line}: unknown setting {key:?}{}; known settings: {known}",
            match suggestion { Some(s) => format!(" (did you mean {s:?}?)"), None => String::new() })]
    UnknownKey {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the key in the file.
        line: usize,
        /// The unknown key as written in the file.
        key: String,
        /// The known key closest to `key`, when one is close.
        suggestion: Option<&'static str>,
        /// Every known key, comma-separated.
        known: String,
    },
}

/// Values given on the command line, plus the config file to read. The CLI maps its flags here
/// (`--data-dir` → [`Setting::DataDir`]) so that they are checked exactly like the environment
/// and the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// An explicit config file (`--config`); it must exist.
    pub config_file: Option<PathBuf>,
    /// `(setting, text, flag)`: the last value given for a setting wins; the flag (when given)
    /// is how the user wrote it, for errors.
    values: Vec<(Setting, String, Option<&'static str>)>,
}

impl Overrides {
    /// No values, and `config_file` (`--config`) if given.
    pub fn new(config_file: Option<PathBuf>) -> Overrides {
        Overrides {
            config_file,
            values: Vec::new(),
        }
    }

    /// Adds a command-line value for `setting`.
    pub fn set(&mut self, setting: Setting, value: impl Into<String>) -> &mut Self {
        self.values.push((setting, value.into(), None));
        self
    }

    /// [`Overrides::set`] for a value given as `flag` (named in the error if it is invalid).
    pub fn set_flag(
        &mut self,
        setting: Setting,
        flag: &'static str,
        value: impl Into<String>,
    ) -> &mut Self {
        self.values.push((setting, value.into(), Some(flag)));
        self
    }

    /// The layer these values make: the last value of each setting, with its flag.
    fn layer(&self) -> BTreeMap<Setting, (String, Option<&'static str>)> {
        self.values
            .iter()
            .map(|(s, v, f)| (*s, (v.clone(), *f)))
            .collect()
    }
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Debug logging (`DEBUG`, default false); read by the command-line tool's logger.
    pub debug: bool,
    /// Host name or IP address the REST service listens on (`API_HOST`, default
    /// `127.0.0.1`); nothing in this crate reads it.
    pub api_host: String,
    /// Port of the REST service, 1–65535 (`API_PORT`, default 8000); nothing in this crate
    /// reads it.
    pub api_port: u16,
    /// Books converted at once in a batch, 1–256 (`MAX_CONCURRENT_JOBS`, default 4), unless
    /// the batch request sets its own.
    pub max_concurrent_jobs: usize,
    /// Give the engine every core, divided among the concurrent jobs (`USE_ALL_CPUS`, default
    /// true); false gives each job one engine thread. See [`Config::engine_threads`].
    pub use_all_cpus: bool,
    /// Largest accepted input file in MiB (`MAX_FILE_SIZE_MB`, default 1000).
    pub max_file_size_mb: u64,
    /// Largest accepted total of a book's input files in MiB (`MAX_TOTAL_SIZE_MB`, default
    /// 50000).
    pub max_total_size_mb: u64,
    /// The input formats accepted (`ALLOWED_INPUTS`, default `all`); `mp3` alone is the
    /// specification's MP3-only validation (only `.mp3` names are scanned).
    pub allowed_inputs: crate::model::InputFormats,
    /// Back up every source folder before processing (`BACKUP_ENABLED`, default true), unless
    /// the job request says otherwise.
    pub backup_enabled: bool,
    /// Age in days after which backups are pruned, 0–36500; 0 keeps them all
    /// (`BACKUP_RETENTION_DAYS`, default 30).
    pub backup_retention_days: u32,
    /// The age recipients new backups are encrypted to (`BACKUP_ENCRYPT_TO`, comma-separated
    /// `age1…` public keys, checked when the configuration is loaded; default none: backups
    /// are not encrypted).
    pub backup_encrypt_to: Option<crate::workflow::backup::Recipients>,
    /// Folder of the job database, output, backups and logs (`DATA_DIR`, default `./data`);
    /// see [`Config::db_path`] and the other `*_dir` methods.
    pub data_dir: PathBuf,
    /// Where book folders are looked for when no folder is named (`SOURCE_DIR`, default
    /// `./source`).
    pub source_dir: PathBuf,
    /// Unix permission bits of written M4B files.
    pub output_mode: u32,
    /// Output file name template (`NAME_TEMPLATE`, default [`DEFAULT_NAME_TEMPLATE`]), with
    /// the placeholders `{title}` `{author}` `{narrator}` `{series}` `{year}` `{folder}`
    /// `{timestamp}`.
    pub name_template: String,
    /// 0 = derived from the audio length (see `Workflow::run_job`).
    pub processing_timeout_secs: u64,
    /// How finished books are filed (`OUTPUT_LAYOUT`).
    pub output_layout: OutputLayout,
    /// A book's folder in the library layout (`LIBRARY_TEMPLATE`).
    pub library_template: String,
    /// Size in MiB at which a log file is rotated (`LOG_MAX_SIZE_MB`, default 10); read by
    /// the command-line tool's log writer.
    pub log_max_size_mb: u64,
    /// Number of log files kept (`LOG_MAX_FILES`, default 14); read by the command-line
    /// tool's log writer.
    pub log_max_files: usize,
    /// The job store (`DATABASE_URL`): empty for SQLite in `DATA_DIR` ([`Config::db_path`]),
    /// or a `postgres://` URL. Shown by `aiom4b config` without its password.
    pub database_url: String,
    /// Origins whose pages may call the REST service (`CORS_ORIGINS`, comma-separated exact
    /// origins such as `https://nas.local:8443`; default none: no CORS headers at all).
    pub cors_origins: Vec<String>,
    /// Where and how the command-line tool logs (`LOG_FORMAT`, default [`LogFormat::Text`]).
    pub log_format: LogFormat,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// The text and origin of every setting's effective value.
    origins: BTreeMap<Setting, (String, Origin)>,
}

impl Default for Config {
    /// Every setting at its default.
    fn default() -> Self {
        Config::load_with(&Overrides::default(), &|_| None, None)
            .expect("the built-in defaults are valid")
    }
}

/// One line of `aiom4b config`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SettingView {
    /// The setting (not serialized; `var` names it).
    #[serde(skip)]
    pub setting: Setting,
    /// Its environment variable (`DATA_DIR`).
    pub var: &'static str,
    /// Its config-file key (`data_dir`).
    pub key: &'static str,
    /// The effective value as text, as given (trimmed).
    pub value: String,
    /// Where the value came from, as [`Origin`] displays it (`default`, `environment`,
    /// `command line`, `file <path>`).
    pub origin: String,
    /// One line of help.
    pub help: &'static str,
}

/// The config file's layer: each key's setting, value as text, and line (for errors).
struct FileLayer {
    path: PathBuf,
    values: BTreeMap<Setting, String>,
}

impl FileLayer {
    /// Parses `text` (read from `path`). Every key must name a setting: a typo is an error that
    /// names the key, the file and the line, not a silently ignored line. Values are kept as
    /// text so that every layer goes through the same parser ([`Config::apply`]); a string
    /// `"3"` and a number `3` in the file mean the same, as they do in the environment.
    fn parse(path: &Path, text: &str) -> Result<FileLayer, ConfigError> {
        let table: BTreeMap<toml::Spanned<String>, toml::Value> =
            toml::from_str(text).map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                reason: e.to_string().trim().to_string(),
            })?;
        let mut values = BTreeMap::new();
        for (key, value) in table {
            let Some(setting) = Setting::from_key(key.get_ref()) else {
                let line = text[..key.span().start.min(text.len())]
                    .bytes()
                    .filter(|&b| b == b'\n')
                    .count()
                    + 1;
                return Err(ConfigError::UnknownKey {
                    path: path.to_path_buf(),
                    line,
                    suggestion: closest_key(key.get_ref()),
                    key: key.into_inner(),
                    known: SPECS.iter().map(|s| s.key).collect::<Vec<_>>().join(", "),
                });
            };
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => other.to_string(),
            };
            values.insert(setting, text);
        }
        Ok(FileLayer {
            path: path.to_path_buf(),
            values,
        })
    }
}

/// The known key nearest to a misspelt `key`, if it is a plausible typo of it.
fn closest_key(key: &str) -> Option<&'static str> {
    SPECS
        .iter()
        .map(|s| (strsim::damerau_levenshtein(key, s.key), s.key))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .map(|(_, k)| k)
}

impl Config {
    /// Loads from the process environment and `config/aiom4b.toml` (or `$AIOM4B_CONFIG`, or
    /// `overrides.config_file`), with `overrides` on top.
    ///
    /// Environment variables are not checked for typos: their names are the spec's plain
    /// `DATA_DIR`, `DEBUG`…, with no prefix that would tell a misspelt aiom4b variable from
    /// another program's.
    pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
        let env = |k: &str| std::env::var(k).ok();
        Config::load_with(overrides, &env, Some(Path::new(DEFAULT_CONFIG_FILE)))
    }

    /// [`Config::load`] with an explicit environment (for tests and embedding) and default file.
    pub fn load_with(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
        default_file: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        // Which file: --config, then $AIOM4B_CONFIG (both must exist), then the default (optional).
        let nonempty = |s: Option<String>| s.filter(|v| !v.trim().is_empty());
        let (file, required) = match (&overrides.config_file, nonempty(env(CONFIG_FILE_VAR))) {
            (Some(p), _) => (Some(p.clone()), true),
            (None, Some(p)) => (Some(PathBuf::from(p)), true),
            (None, None) => (default_file.map(Path::to_path_buf), false),
        };
        let mut file_layer = None;
        if let Some(path) = file {
            match std::fs::read_to_string(&path) {
                Ok(text) => file_layer = Some(FileLayer::parse(&path, &text)?),
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ConfigError::File {
                        path,
                        reason: e.to_string(),
                    })
                }
            }
        }
        let cli = overrides.layer();

        let mut cfg = Config {
            debug: false,
            api_host: String::new(),
            api_port: 0,
            max_concurrent_jobs: 0,
            use_all_cpus: true,
            max_file_size_mb: 0,
            max_total_size_mb: 0,
            allowed_inputs: crate::model::InputFormats::all(),
            backup_enabled: true,
            backup_retention_days: 0,
            backup_encrypt_to: None,
            data_dir: PathBuf::new(),
            source_dir: PathBuf::new(),
            output_mode: 0,
            name_template: String::new(),
            processing_timeout_secs: 0,
            output_layout: OutputLayout::Flat,
            library_template: String::new(),
            log_max_size_mb: 0,
            log_max_files: 0,
            database_url: String::new(),
            cors_origins: Vec::new(),
            log_format: LogFormat::Text,
            config_file: file_layer.as_ref().map(|f| f.path.clone()),
            origins: BTreeMap::new(),
        };
        for setting in Setting::all() {
            // The layers, highest first: command line > environment > file > default.
            let (raw, origin, name) = if let Some((v, flag)) = cli.get(&setting) {
                (v.clone(), Origin::Cli, flag.unwrap_or(setting.var()))
            } else if let Some(v) = nonempty(env(setting.var())) {
                (v, Origin::Env, setting.var())
            } else if let Some((f, v)) = file_layer
                .as_ref()
                .and_then(|f| Some((f, f.values.get(&setting)?)))
            {
                (v.clone(), Origin::File(f.path.clone()), setting.key())
            } else {
                (
                    setting.default_text().to_string(),
                    Origin::Default,
                    setting.var(),
                )
            };
            cfg.apply(setting, raw.trim())
                .map_err(|reason| ConfigError::Invalid {
                    var: setting.var(),
                    name: name.to_string(),
                    // An age secret key given where a recipient belongs is not repeated.
                    value: if crate::workflow::backup::looks_secret(&raw) {
                        "(an age secret key, not shown)".into()
                    } else {
                        raw.clone()
                    },
                    origin: origin.clone(),
                    reason,
                })?;
            cfg.origins
                .insert(setting, (raw.trim().to_string(), origin));
        }
        Ok(cfg)
    }

    /// Parses `raw` as the value of `setting` and stores it: the one parser of every layer.
    fn apply(&mut self, setting: Setting, raw: &str) -> Result<(), String> {
        match setting {
            Setting::Debug => self.debug = parse_bool(raw)?,
            Setting::ApiHost => {
                if raw.is_empty() || raw.contains(char::is_whitespace) {
                    return Err("expected a host name or IP address".into());
                }
                self.api_host = raw.to_string();
            }
            Setting::ApiPort => self.api_port = parse_num(raw, 1, 65_535)? as u16,
            Setting::MaxConcurrentJobs => {
                self.max_concurrent_jobs = parse_num(raw, 1, 256)? as usize
            }
            Setting::UseAllCpus => self.use_all_cpus = parse_bool(raw)?,
            Setting::MaxFileSizeMb => self.max_file_size_mb = parse_num(raw, 1, 1 << 40)?,
            Setting::MaxTotalSizeMb => self.max_total_size_mb = parse_num(raw, 1, 1 << 40)?,
            Setting::AllowedInputs => self.allowed_inputs = crate::model::InputFormats::parse(raw)?,
            Setting::BackupEnabled => self.backup_enabled = parse_bool(raw)?,
            Setting::BackupRetentionDays => {
                self.backup_retention_days = parse_num(raw, 0, 36_500)? as u32
            }
            Setting::BackupEncryptTo => {
                self.backup_encrypt_to = crate::workflow::backup::Recipients::parse(raw)?
            }
            Setting::DataDir => self.data_dir = parse_path(raw)?,
            Setting::SourceDir => self.source_dir = parse_path(raw)?,
            Setting::OutputMode => {
                let mode = u32::from_str_radix(raw.trim_start_matches("0o"), 8)
                    .map_err(|_| "expected octal permission bits such as 0644".to_string())?;
                if mode > 0o777 {
                    return Err("expected permission bits between 000 and 777".into());
                }
                if mode & 0o600 != 0o600 {
                    return Err("the owner must be able to read and write (e.g. 0644, 0600)".into());
                }
                self.output_mode = mode;
            }
            Setting::NameTemplate => {
                crate::workflow::naming::check_template(raw)?;
                self.name_template = raw.to_string();
            }
            Setting::ProcessingTimeoutSecs => {
                self.processing_timeout_secs = parse_num(raw, 0, 7 * 24 * 3600)?
            }
            Setting::LogMaxSizeMb => self.log_max_size_mb = parse_num(raw, 1, 1 << 20)?,
            Setting::LogMaxFiles => self.log_max_files = parse_num(raw, 1, 10_000)? as usize,
            Setting::DatabaseUrl => {
                let url = raw.trim();
                if !(url.is_empty()
                    || url.starts_with("postgres://")
                    || url.starts_with("postgresql://"))
                {
                    return Err(
                        "expected empty (SQLite in DATA_DIR) or a postgres:// URL".to_string()
                    );
                }
                self.database_url = url.to_string();
            }
            Setting::CorsOrigins => self.cors_origins = parse_origins(raw)?,
            Setting::LogFormat => {
                self.log_format = match raw.to_ascii_lowercase().as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err("expected text or json".into()),
                }
            }
            Setting::OutputLayout => {
                self.output_layout = match raw.to_ascii_lowercase().as_str() {
                    "flat" => OutputLayout::Flat,
                    "library" => OutputLayout::Library,
                    _ => return Err("expected flat or library".into()),
                }
            }
            Setting::LibraryTemplate => {
                crate::workflow::library::check_template(raw)?;
                self.library_template = raw.to_string();
            }
        }
        Ok(())
    }

    /// Every setting with its value and origin, in a stable order (for `aiom4b config`).
    pub fn describe(&self) -> Vec<SettingView> {
        SPECS
            .iter()
            .map(|s| {
                let (mut value, origin) = self.origins.get(&s.setting).cloned().unwrap_or_default();
                if s.setting == Setting::DatabaseUrl {
                    value = crate::workflow::jobs::redact_url(&value);
                }
                SettingView {
                    setting: s.setting,
                    var: s.var,
                    key: s.key,
                    value,
                    origin: origin.to_string(),
                    help: s.help,
                }
            })
            .collect()
    }

    /// Where the value of `setting` came from.
    pub fn origin(&self, setting: Setting) -> &Origin {
        &self.origins[&setting].1
    }

    /// The job database.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("aiom4b.db")
    }
    /// Finished M4B files.
    pub fn output_dir(&self) -> PathBuf {
        self.data_dir.join("output")
    }
    /// Backups of source folders.
    pub fn backup_dir(&self) -> PathBuf {
        self.data_dir.join("backup")
    }
    /// JSON-lines logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    /// The folders that must never be read as part of a book, nor written into by a conversion
    /// other than through the workflow: `DATA_DIR` (backups, output, database, logs), as a
    /// canonical path (absolute when it does not exist yet).
    pub fn protected_dirs(&self) -> Vec<PathBuf> {
        let dir = std::fs::canonicalize(&self.data_dir)
            .or_else(|_| std::path::absolute(&self.data_dir))
            .unwrap_or_else(|_| self.data_dir.clone());
        vec![dir]
    }

    /// Creates `data/{output,backup,logs}`.
    pub fn ensure_data_dirs(&self) -> std::io::Result<()> {
        for d in [self.output_dir(), self.backup_dir(), self.logs_dir()] {
            std::fs::create_dir_all(d)?;
        }
        Ok(())
    }

    /// The engine's size limits from `MAX_FILE_SIZE_MB` and `MAX_TOTAL_SIZE_MB`.
    pub fn limits(&self) -> crate::Limits {
        crate::Limits {
            max_file_size_mb: self.max_file_size_mb,
            max_total_size_mb: self.max_total_size_mb,
        }
    }

    /// Cores this machine offers.
    pub fn cores() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }

    /// Engine threads for one job when `concurrent` jobs run at once: the cores divided among
    /// the jobs (at least one), or one when `USE_ALL_CPUS=false`.
    pub fn engine_threads(&self, concurrent: usize) -> usize {
        if self.use_all_cpus {
            (Self::cores() / concurrent.max(1)).max(1)
        } else {
            1
        }
    }

    /// A commented config file with every setting at its default (`aiom4b config --init`).
    pub fn template_file() -> String {
        let mut s = String::from(
            "# aiom4b configuration. Precedence: command line > environment > this file > default.\n\
             # Each key's environment variable is shown in brackets.\n\n",
        );
        for spec in SPECS {
            let value = match spec.default.parse::<i64>() {
                Ok(_) if spec.setting != Setting::OutputMode => spec.default.to_string(),
                _ if spec.default == "true" || spec.default == "false" => spec.default.to_string(),
                _ => format!("{:?}", spec.default),
            };
            s.push_str(&format!(
                "# {} [{}]\n# {} = {}\n\n",
                spec.help, spec.var, spec.key, value
            ));
        }
        s
    }
}

/// Comma-separated exact origins: `scheme://host[:port]`, no path, no wildcard.
fn parse_origins(raw: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for o in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let rest = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(['/', '*', ' ']) => {
                out.push(o.to_string())
            }
            _ => {
                return Err(format!(
                    "{o:?} is not an origin; expected comma-separated origins such as https://nas.local:8443"
                ))
            }
        }
    }
    Ok(out)
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false (also 1/0, yes/no, on/off)".into()),
    }
}

fn parse_num(raw: &str, min: u64, max: u64) -> Result<u64, String> {
    let range = || format!("expected a whole number from {min} to {max}");
    let n: u64 = raw.parse().map_err(|_| range())?;
    if !(min..=max).contains(&n) {
        return Err(range());
    }
    Ok(n)
}

fn parse_path(raw: &str) -> Result<PathBuf, String> {
    if raw.is_empty() {
        return Err("expected a folder path".into());
    }
    Ok(PathBuf::from(raw))
}

/// Parses an age such as `7d`, `12h`, `30m`, `2w` or `90s` (as in `jobs clear --older-than`).
pub fn parse_age(s: &str) -> Result<chrono::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 7d, 12h, 30m"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h, d or w")),
    };
    n.checked_mul(secs)
        .and_then(chrono::Duration::try_seconds)
        .ok_or_else(|| format!("{s:?}: too large"))
}

/// `now - age`, for cut-off times.
pub fn cutoff(now: DateTime<Utc>, age: chrono::Duration) -> DateTime<Utc> {
    now.checked_sub_signed(age)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d").unwrap(), chrono::Duration::days(7));
        assert_eq!(parse_age("12h").unwrap(), chrono::Duration::hours(12));
        assert!(parse_age("7y").is_err());
        assert!(parse_age("d").is_err());
    }

    #[test]
    fn specs_are_indexed_by_setting() {
        for (i, spec) in SPECS.iter().enumerate() {
            assert_eq!(spec.setting as usize, i, "{}", spec.var);
            assert_eq!(Setting::from_var(spec.var), Some(spec.setting));
            assert_eq!(Setting::from_key(spec.key), Some(spec.setting));
            assert_eq!(spec.key, spec.var.to_ascii_lowercase());
        }
        assert_eq!(Setting::from_var("DATA_DIRS"), None);
    }

    fn write_file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("aiom4b.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_misspelt_file_key_is_an_error_naming_key_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "debug = true\n\nbackup_retention_dais = 3\n");
        let e = Config::load_with(&Overrides::default(), &|_| None, Some(&path)).unwrap_err();
        match &e {
            ConfigError::UnknownKey {
                path: p,
                line,
                key,
                suggestion,
                ..
            } => {
                assert_eq!(p, &path);
                assert_eq!(*line, 3);
                assert_eq!(key, "backup_retention_dais");
                assert_eq!(*suggestion, Some("backup_retention_days"));
            }
            other => panic!("{other:?}"),
        }
        let text = e.to_string();
        assert!(text.contains("aiom4b.toml:3:"), "{text}");
        assert!(text.contains("\"backup_retention_dais\""), "{text}");
        assert!(
            text.contains("did you mean \"backup_retention_days\""),
            "{text}"
        );
        // A key nothing like a setting gets no suggestion; a table is a key too.
        let path = write_file(dir.path(), "[server]\nport = 1\n");
        let e = Config::load_with(&Overrides::default(), &|_| None, Some(&path)).unwrap_err();
        assert!(
            matches!(&e, ConfigError::UnknownKey { key, line: 1, suggestion: None, .. } if key == "server"),
            "{e:?}"
        );
    }

    #[test]
    fn every_value_records_its_layer() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(
            dir.path(),
            "api_port = 1111\nmax_concurrent_jobs = \"2\"\ndata_dir = \"/file\"\n",
        );
        let env = |k: &str| match k {
            "API_PORT" => Some("2222".to_string()),
            "MAX_CONCURRENT_JOBS" => Some("5".to_string()),
            // Blank counts as unset: the file's value shows through.
            "DATA_DIR" => Some("  ".to_string()),
            _ => None,
        };
        let mut cli = Overrides::default();
        cli.set(Setting::MaxConcurrentJobs, "9").set_flag(
            Setting::MaxConcurrentJobs,
            "--max-concurrent-jobs",
            "3",
        );
        let cfg = Config::load_with(&cli, &env, Some(&path)).unwrap();
        assert_eq!(cfg.origin(Setting::MaxConcurrentJobs), &Origin::Cli);
        assert_eq!(
            cfg.max_concurrent_jobs, 3,
            "the last command-line value wins"
        );
        assert_eq!(cfg.origin(Setting::ApiPort), &Origin::Env);
        assert_eq!(cfg.api_port, 2222);
        assert_eq!(cfg.origin(Setting::DataDir), &Origin::File(path.clone()));
        assert_eq!(cfg.data_dir, PathBuf::from("/file"));
        assert_eq!(cfg.origin(Setting::Debug), &Origin::Default);
        let shown: Vec<(Setting, String, String)> = cfg
            .describe()
            .into_iter()
            .map(|v| (v.setting, v.value, v.origin))
            .collect();
        assert_eq!(shown.len(), SPECS.len());
        assert!(shown.contains(&(Setting::ApiPort, "2222".into(), "environment".into())));
        assert!(shown.contains(&(
            Setting::DataDir,
            "/file".into(),
            format!("file {}", path.display())
        )));
        assert!(shown.contains(&(Setting::Debug, "false".into(), "default".into())));

        // An invalid value names the setting as the user wrote it, per layer.
        let mut cli = Overrides::default();
        cli.set_flag(Setting::ApiPort, "--port", "0");
        let e = Config::load_with(&cli, &|_| None, None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid --port = \"0\" (from command line, setting API_PORT)"),
            "{e}"
        );
        let path = write_file(dir.path(), "api_port = 0\n");
        let e = Config::load_with(&Overrides::default(), &|_| None, Some(&path)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid api_port = \"0\" (from file "),
            "{e}"
        );
        let e = Config::load_with(
            &Overrides::default(),
            &|k| (k == "API_PORT").then(|| "0".into()),
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid API_PORT = \"0\" (from environment)"),
            "{e}"
        );
    }

    #[cfg(feature = "backup-encryption")]
    #[test]
    fn backup_recipients_are_checked_at_load_and_a_secret_key_is_never_repeated() {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        let public = id.to_public().to_string();
        let env = |v: String| move |k: &str| (k == "BACKUP_ENCRYPT_TO").then(|| v.clone());
        let cfg = Config::load_with(&Overrides::default(), &env(public.clone()), None).unwrap();
        assert_eq!(
            cfg.backup_encrypt_to.as_ref().map(|r| r.keys().to_vec()),
            Some(vec![public.clone()])
        );
        assert_eq!(cfg.origin(Setting::BackupEncryptTo), &Origin::Env);
        assert!(cfg
            .describe()
            .iter()
            .any(|v| v.var == "BACKUP_ENCRYPT_TO" && v.value == public));
        assert!(Config::default().backup_encrypt_to.is_none());

        let e = Config::load_with(&Overrides::default(), &env("age1typo".into()), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid BACKUP_ENCRYPT_TO = \"age1typo\" (from environment)")
                && e.contains("not an age X25519 recipient"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "backup_encrypt_to = \"age1 nope\"\n");
        let e = Config::load_with(&Overrides::default(), &|_| None, Some(&path))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid backup_encrypt_to = "), "{e}");

        let secret = id.to_string().expose_secret().to_string();
        let e = Config::load_with(&Overrides::default(), &env(secret.clone()), None).unwrap_err();
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        assert!(shown.contains("secret key"), "{shown}");
        assert!(
            !shown.contains(&secret) && !debug.contains(&secret),
            "{shown}"
        );
        assert!(!shown.contains(&secret[15..]), "{shown}");
    }

    #[test]
    fn template_file_parses_and_is_all_comments() {
        let t: toml::Table = Config::template_file().parse().unwrap();
        assert!(t.is_empty());
    }
}
