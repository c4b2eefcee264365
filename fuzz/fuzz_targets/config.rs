//! The configuration (`src/workflow/config.rs`): any config file text, environment and command
//! line values, and `parse_age`. Never a panic; an accepted configuration satisfies every
//! documented bound; what `aiom4b config` shows, given back on the command line, gives the
//! same configuration; and one value is accepted or refused alike whether it comes from the
//! command line, the environment or the file ("every layer is parsed by the same function").
#![no_main]
use aiom4b::workflow::config::{cutoff, parse_age, Config, ConfigError, Overrides, Setting};
use aiom4b::workflow::naming::check_template;
use aiom4b_fuzz::MemFile;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// (setting, file key) of every setting, in the order settings are applied.
fn settings() -> &'static [(Setting, &'static str)] {
    static S: OnceLock<Vec<(Setting, &'static str)>> = OnceLock::new();
    S.get_or_init(|| {
        Config::default()
            .describe()
            .into_iter()
            .map(|v| (v.setting, v.key))
            .collect()
    })
}

thread_local! {
    static FILE: RefCell<MemFile> = RefCell::new(MemFile::new("aiom4b.toml"));
}

fn load(
    file: Option<&str>,
    env: &BTreeMap<Setting, String>,
    cli: &[(Setting, String)],
) -> Result<Config, ConfigError> {
    FILE.with(|f| {
        let mut f = f.borrow_mut();
        let mut overrides = Overrides::default();
        if let Some(text) = file {
            overrides.config_file = Some(f.set(text.as_bytes()).to_path_buf());
        }
        for (setting, value) in cli {
            overrides.set(*setting, value.clone());
        }
        Config::load_with(
            &overrides,
            &|k| env.get(&Setting::from_var(k)?).cloned(),
            None,
        )
    })
}

fn values(c: &Config) -> Vec<String> {
    c.describe().into_iter().map(|v| v.value).collect()
}

/// The outcome that must not depend on where a value came from.
fn outcome(r: &Result<Config, ConfigError>) -> Result<Vec<String>, String> {
    match r {
        Ok(c) => Ok(values(c)),
        Err(ConfigError::Invalid { var, .. }) => Err(var.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fuzz_target!(|data: &[u8]| {
    let s = settings();
    let mut parts = data
        .split(|&b| b == 0xFF)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let file = parts.next().filter(|f| !f.is_empty());
    let pairs = |text: Option<String>| -> Vec<(Setting, String)> {
        let text = text.unwrap_or_default();
        text.lines()
            .map(|line| {
                let (name, value) = line.split_once('=').unwrap_or((line, ""));
                let var = s
                    .iter()
                    .find(|(v, _)| v.var() == name)
                    .unwrap_or(&s[name.len() % s.len()])
                    .0;
                (var, value.to_string())
            })
            .collect()
    };
    let env: BTreeMap<Setting, String> = pairs(parts.next()).into_iter().collect();
    let cli = pairs(parts.next());
    let age = parts.next().unwrap_or_default();

    if let Ok(c) = load(file.as_deref(), &env, &cli) {
        assert!(
            check_template(&c.name_template).is_ok(),
            "{:?}",
            c.name_template
        );
        assert!(c.output_mode <= 0o777 && c.output_mode & 0o600 == 0o600);
        assert!(c.api_port >= 1 && !c.api_host.is_empty());
        assert!((1..=256).contains(&c.max_concurrent_jobs));
        assert!(c.max_file_size_mb >= 1 && c.log_max_size_mb >= 1 && c.log_max_files >= 1);
        assert!(!c.data_dir.as_os_str().is_empty() && !c.source_dir.as_os_str().is_empty());
        // Shown values given back on the command line: the same configuration.
        let shown: Vec<(Setting, String)> = c
            .describe()
            .into_iter()
            .map(|v| (v.setting, v.value))
            .collect();
        let again = load(None, &BTreeMap::new(), &shown).expect("shown values load again");
        assert_eq!(values(&again), values(&c));
    }

    // The same (non-blank) values from each source alone. A blank environment variable counts
    // as unset (as in most programs), so blanks are left out.
    let given: BTreeMap<Setting, String> = env
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let from_env = load(None, &given, &[]);
    let as_cli: Vec<(Setting, String)> = given.iter().map(|(k, v)| (*k, v.clone())).collect();
    let from_cli = load(None, &BTreeMap::new(), &as_cli);
    let mut table = toml::Table::new();
    for (k, v) in &given {
        table.insert(k.key().to_string(), toml::Value::String(v.clone()));
    }
    let text = toml::to_string(&table).expect("a table of strings serializes");
    let from_file = load(Some(&text), &BTreeMap::new(), &[]);
    assert_eq!(
        outcome(&from_env),
        outcome(&from_cli),
        "environment vs command line"
    );
    assert_eq!(
        outcome(&from_env),
        outcome(&from_file),
        "environment vs file"
    );

    if let Ok(d) = parse_age(&age) {
        assert!(d >= chrono::Duration::zero(), "{age:?} is {d}");
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time");
        assert!(cutoff(now, d) <= now);
    }
});
