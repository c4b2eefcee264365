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

/// One setting: variable, file key, default, help.
struct Spec {
    var: &'static str,
    key: &'static str,
    default: &'static str,
    help: &'static str,
}

const SPECS: &[Spec] = &[
    Spec {
        var: "DEBUG",
        key: "debug",
        default: "false",
        help: "debug logging",
    },
    Spec {
        var: "API_HOST",
        key: "api_host",
        default: "127.0.0.1",
        help: "address of the REST service",
    },
    Spec {
        var: "API_PORT",
        key: "api_port",
        default: "8000",
        help: "port of the REST service",
    },
    Spec {
        var: "MAX_CONCURRENT_JOBS",
        key: "max_concurrent_jobs",
        default: "4",
        help: "books converted at once in a batch",
    },
    Spec {
        var: "USE_ALL_CPUS",
        key: "use_all_cpus",
        default: "true",
        help: "give the engine every core (false: one thread per job)",
    },
    Spec {
        var: "MAX_FILE_SIZE_MB",
        key: "max_file_size_mb",
        default: "1000",
        help: "largest accepted input file",
    },
    Spec {
        var: "MAX_TOTAL_SIZE_MB",
        key: "max_total_size_mb",
        default: "50000",
        help: "largest accepted total of a book's input files",
    },
    Spec {
        var: "BACKUP_ENABLED",
        key: "backup_enabled",
        default: "true",
        help: "back up every source folder before processing",
    },
    Spec {
        var: "BACKUP_RETENTION_DAYS",
        key: "backup_retention_days",
        default: "30",
        help: "age at which backups are pruned",
    },
    Spec {
        var: "DATA_DIR",
        key: "data_dir",
        default: "./data",
        help: "database, output, backups and logs",
    },
    Spec {
        var: "SOURCE_DIR",
        key: "source_dir",
        default: "./source",
        help: "where book folders are looked for",
    },
    Spec {
        var: "OUTPUT_MODE",
        key: "output_mode",
        default: "0644",
        help: "permissions of written M4B files (octal)",
    },
    Spec {
        var: "NAME_TEMPLATE",
        key: "name_template",
        default: DEFAULT_NAME_TEMPLATE,
        help: "output file name: {title} {author} {narrator} {series} {year} {folder} {timestamp}",
    },
    Spec {
        var: "PROCESSING_TIMEOUT_SECS",
        key: "processing_timeout_secs",
        default: "0",
        help: "conversion time limit; 0 = derived from the audio length",
    },
    Spec {
        var: "LOG_MAX_SIZE_MB",
        key: "log_max_size_mb",
        default: "10",
        help: "size at which a log file is rotated",
    },
    Spec {
        var: "LOG_MAX_FILES",
        key: "log_max_files",
        default: "14",
        help: "log files kept",
    },
];

/// Where a value came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Origin {
    #[default]
    Default,
    File(PathBuf),
    Env,
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
        var: &'static str,
        /// The setting as the user wrote it: the command-line flag, the file key or the
        /// environment variable.
        name: String,
        value: String,
        origin: Origin,
        reason: String,
    },
    /// The config file could not be read or parsed.
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// The config file has a key aiom4b does not know (a typo would otherwise go unnoticed).
    #[error("{path}: unknown setting {key:?}; known settings: {known}")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
}

/// Values given on the command line, as `(VARIABLE, text)` pairs, plus the config file to read.
/// The CLI maps its flags here (`--data-dir` → `DATA_DIR`, `--name-template` → `NAME_TEMPLATE`)
/// so that they are checked exactly like the environment and the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// An explicit config file (`--config`); it must exist.
    pub config_file: Option<PathBuf>,
    pub values: Vec<(&'static str, String)>,
    /// The flag each value came from (`MAX_FILE_SIZE_MB` → `--max-file-size-mb`), for errors.
    pub flags: Vec<(&'static str, &'static str)>,
}

impl Overrides {
    /// Adds a command-line value for the setting named by its environment variable.
    pub fn set(&mut self, var: &'static str, value: impl Into<String>) -> &mut Self {
        self.values.push((var, value.into()));
        self
    }

    /// [`Overrides::set`] for a value given as `flag` (named in the error if it is invalid).
    pub fn set_flag(
        &mut self,
        var: &'static str,
        flag: &'static str,
        value: impl Into<String>,
    ) -> &mut Self {
        self.flags.push((var, flag));
        self.set(var, value)
    }

    fn flag(&self, var: &str) -> Option<&'static str> {
        self.flags
            .iter()
            .rev()
            .find(|(v, _)| *v == var)
            .map(|f| f.1)
    }
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub debug: bool,
    pub api_host: String,
    pub api_port: u16,
    pub max_concurrent_jobs: usize,
    pub use_all_cpus: bool,
    pub max_file_size_mb: u64,
    pub max_total_size_mb: u64,
    pub backup_enabled: bool,
    pub backup_retention_days: u32,
    pub data_dir: PathBuf,
    pub source_dir: PathBuf,
    /// Unix permission bits of written M4B files.
    pub output_mode: u32,
    pub name_template: String,
    /// 0 = derived from the audio length (see `Workflow::run_job`).
    pub processing_timeout_secs: u64,
    pub log_max_size_mb: u64,
    pub log_max_files: usize,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    origins: BTreeMap<&'static str, (String, Origin)>,
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
    pub var: &'static str,
    pub key: &'static str,
    pub value: String,
    pub origin: String,
    pub help: &'static str,
}

impl Config {
    /// Loads from the process environment and `config/aiom4b.toml` (or `$AIOM4B_CONFIG`, or
    /// `overrides.config_file`), with `overrides` on top.
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
        let mut table = toml::Table::new();
        let mut config_file = None;
        if let Some(path) = file {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    table = text.parse::<toml::Table>().map_err(|e| ConfigError::File {
                        path: path.clone(),
                        reason: e.to_string().trim().to_string(),
                    })?;
                    config_file = Some(path);
                }
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ConfigError::File {
                        path,
                        reason: e.to_string(),
                    })
                }
            }
        }
        if let Some(path) = &config_file {
            if let Some(key) = table.keys().find(|k| !SPECS.iter().any(|s| s.key == *k)) {
                return Err(ConfigError::UnknownKey {
                    path: path.clone(),
                    key: key.clone(),
                    known: SPECS.iter().map(|s| s.key).collect::<Vec<_>>().join(", "),
                });
            }
        }

        let mut cfg = Config {
            debug: false,
            api_host: String::new(),
            api_port: 0,
            max_concurrent_jobs: 0,
            use_all_cpus: true,
            max_file_size_mb: 0,
            max_total_size_mb: 0,
            backup_enabled: true,
            backup_retention_days: 0,
            data_dir: PathBuf::new(),
            source_dir: PathBuf::new(),
            output_mode: 0,
            name_template: String::new(),
            processing_timeout_secs: 0,
            log_max_size_mb: 0,
            log_max_files: 0,
            config_file: config_file.clone(),
            origins: BTreeMap::new(),
        };
        for spec in SPECS {
            let cli = overrides
                .values
                .iter()
                .rev()
                .find(|(v, _)| *v == spec.var)
                .map(|(_, s)| (s.clone(), Origin::Cli));
            let from_env = || nonempty(env(spec.var)).map(|s| (s, Origin::Env));
            let from_file = || {
                let path = config_file.clone()?;
                let value = table.get(spec.key)?;
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    other => other.to_string(),
                };
                Some((text, Origin::File(path)))
            };
            let (raw, origin) = cli
                .or_else(from_env)
                .or_else(from_file)
                .unwrap_or_else(|| (spec.default.to_string(), Origin::Default));
            cfg.apply(spec.var, raw.trim())
                .map_err(|reason| ConfigError::Invalid {
                    var: spec.var,
                    name: match &origin {
                        Origin::Cli => overrides.flag(spec.var).unwrap_or(spec.var).to_string(),
                        Origin::File(_) => spec.key.to_string(),
                        Origin::Env | Origin::Default => spec.var.to_string(),
                    },
                    value: raw.clone(),
                    origin: origin.clone(),
                    reason,
                })?;
            cfg.origins
                .insert(spec.var, (raw.trim().to_string(), origin));
        }
        Ok(cfg)
    }

    fn apply(&mut self, var: &str, raw: &str) -> Result<(), String> {
        match var {
            "DEBUG" => self.debug = parse_bool(raw)?,
            "API_HOST" => {
                if raw.is_empty() || raw.contains(char::is_whitespace) {
                    return Err("expected a host name or IP address".into());
                }
                self.api_host = raw.to_string();
            }
            "API_PORT" => self.api_port = parse_num(raw, 1, 65_535)? as u16,
            "MAX_CONCURRENT_JOBS" => self.max_concurrent_jobs = parse_num(raw, 1, 256)? as usize,
            "USE_ALL_CPUS" => self.use_all_cpus = parse_bool(raw)?,
            "MAX_FILE_SIZE_MB" => self.max_file_size_mb = parse_num(raw, 1, 1 << 40)?,
            "MAX_TOTAL_SIZE_MB" => self.max_total_size_mb = parse_num(raw, 1, 1 << 40)?,
            "BACKUP_ENABLED" => self.backup_enabled = parse_bool(raw)?,
            "BACKUP_RETENTION_DAYS" => {
                self.backup_retention_days = parse_num(raw, 0, 36_500)? as u32
            }
            "DATA_DIR" => self.data_dir = parse_path(raw)?,
            "SOURCE_DIR" => self.source_dir = parse_path(raw)?,
            "OUTPUT_MODE" => {
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
            "NAME_TEMPLATE" => {
                crate::workflow::naming::check_template(raw)?;
                self.name_template = raw.to_string();
            }
            "PROCESSING_TIMEOUT_SECS" => {
                self.processing_timeout_secs = parse_num(raw, 0, 7 * 24 * 3600)?
            }
            "LOG_MAX_SIZE_MB" => self.log_max_size_mb = parse_num(raw, 1, 1 << 20)?,
            "LOG_MAX_FILES" => self.log_max_files = parse_num(raw, 1, 10_000)? as usize,
            _ => unreachable!("every spec has a parser"),
        }
        Ok(())
    }

    /// Every setting with its value and origin, in a stable order (for `aiom4b config`).
    pub fn describe(&self) -> Vec<SettingView> {
        SPECS
            .iter()
            .map(|s| {
                let (value, origin) = self.origins.get(s.var).cloned().unwrap_or_default();
                SettingView {
                    var: s.var,
                    key: s.key,
                    value,
                    origin: origin.to_string(),
                    help: s.help,
                }
            })
            .collect()
    }

    /// Where the value of the setting named `var` came from.
    pub fn origin(&self, var: &str) -> Option<&Origin> {
        self.origins.get(var).map(|(_, o)| o)
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
                Ok(_) if spec.var != "OUTPUT_MODE" => spec.default.to_string(),
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
    fn template_file_parses_and_is_all_comments() {
        let t: toml::Table = Config::template_file().parse().unwrap();
        assert!(t.is_empty());
    }
}
