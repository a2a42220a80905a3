//! `shop`: the demo shop's command line (see `flowscope_demo::cli`).

use std::process::ExitCode;

use clap::Parser;
use flowscope_demo::cli::{Cli, run};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command, &[]).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
