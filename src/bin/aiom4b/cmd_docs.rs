//! `aiom4b completions SHELL` and `aiom4b man [--dir DIR]`: shell completion scripts
//! (clap_complete) and manual pages (clap_mangen) generated from the clap definitions in
//! [`crate::args`], so they always name the flags this binary really has.
//!
//! Both run before the configuration is loaded (see `main`): they read no config file, open no
//! database, start no logging and create nothing in `DATA_DIR`, so a package build or a fresh
//! machine can generate them with nothing set up. They write to stdout (or into `--dir`) only.
use crate::args::Cli;
use anyhow::{Context, Result};
use clap::{Args, CommandFactory, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The binary's name as the shells and `man` see it.
const BIN: &str = "aiom4b";

#[derive(Args, Debug)]
#[command(
    after_help = "Install (each shell reads its own place at start-up):\n  \
    bash: aiom4b completions bash > ~/.local/share/bash-completion/completions/aiom4b\n  \
    zsh:  aiom4b completions zsh > ~/.zfunc/_aiom4b   (with fpath+=~/.zfunc before compinit)\n  \
    fish: aiom4b completions fish > ~/.config/fish/completions/aiom4b.fish"
)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: ShellArg,
}

/// The shells whose scripts the tests check (`bash -n`, `zsh -n`, `fish --no-execute`, and
/// real completions in bash and fish). clap_complete also knows elvish and PowerShell; they are
/// left out until someone can test them.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ShellArg {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write aiom4b.1 and one page per subcommand (aiom4b-convert.1, aiom4b-jobs-list.1 …)
    /// into DIR, e.g. /usr/local/share/man/man1, instead of aiom4b.1 to stdout.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell`.
pub fn completions(args: CompletionsArgs) -> Result<u8> {
    let shell = match args.shell {
        ShellArg::Bash => clap_complete::Shell::Bash,
        ShellArg::Zsh => clap_complete::Shell::Zsh,
        ShellArg::Fish => clap_complete::Shell::Fish,
    };
    // Into a buffer first: clap_complete panics when a write fails (a full disk behind `>`),
    // where an error message is due.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut script);
    write_stdout(&script)?;
    Ok(0)
}

/// Prints the main page, or writes every page into `--dir` and prints the paths written.
pub fn man(args: ManArgs) -> Result<u8> {
    let cmd = command();
    let Some(dir) = args.dir else {
        write_stdout(render(clap_mangen::Man::new(cmd))?.as_bytes())?;
        return Ok(0);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    write_pages(cmd, &dir, &mut written)?;
    let mut list = String::new();
    for path in written {
        list.push_str(&format!("{}\n", path.display()));
    }
    write_stdout(list.as_bytes())?;
    Ok(0)
}

/// The clap command as the pages describe it: built (so that nested subcommands carry their
/// full names, `aiom4b-jobs-list`), without the `help` subcommand, which needs no page.
fn command() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// One page for `cmd` and each visible subcommand below it. This is clap_mangen's own
/// `generate_to`, but it also returns the paths, which `man --dir` prints.
fn write_pages(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let page = clap_mangen::Man::new(cmd);
    let path = dir.join(page.get_filename());
    std::fs::write(&path, render(page)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in subs {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

/// The page as roff in plain ASCII: every other character (the help texts' "…", "—") becomes
/// groff's `\[uXXXX]` escape, which groff and mandoc both read. Raw UTF-8 in a page renders only
/// where `man` runs it through preconv first (man-db does, plain `groff` does not and warns).
fn render(page: clap_mangen::Man) -> Result<String> {
    let mut roff = Vec::new();
    page.render(&mut roff)?;
    let roff = String::from_utf8(roff).context("clap_mangen wrote a page that is not UTF-8")?;
    let mut ascii = String::with_capacity(roff.len());
    for c in roff.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            ascii.push_str(&format!("\\[u{:04X}]", c as u32));
        }
    }
    Ok(ascii)
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}
