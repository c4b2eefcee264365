//! TEMPORARY (workflow branch): a minimal entry point to try the workflow commands by hand.
//! The engine developer's main.rs replaces this file at merge (see workflow_cmds.rs for what
//! to wire: ConfigArgs flattened, WorkflowCommand as subcommands, logging::init first).
mod logging;
mod workflow_cmds;

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "aiom4b", version)]
struct Cli {
    #[command(flatten)]
    global: workflow_cmds::ConfigArgs,
    #[command(subcommand)]
    cmd: workflow_cmds::WorkflowCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match cli.global.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aiom4b: {e:#}");
            return ExitCode::from(2);
        }
    };
    let _log = logging::init(&cfg, cli.global.verbose);
    match workflow_cmds::run(cli.cmd, &cfg) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("aiom4b: {e:#}");
            ExitCode::from(1)
        }
    }
}
