//! ksight: an eBPF host monitoring agent. `main` parses the command line and
//! dispatches; each subcommand lives in its own module.

use std::io;
use std::process::ExitCode;

use clap::Parser;

mod bench;
mod cli;
mod doctor;
mod preflight;
mod run;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Run(args) => run::run(*args).map(|()| ExitCode::SUCCESS),
        cli::Command::Bench(args) => bench::run_bench(args).map(|()| ExitCode::SUCCESS),
        cli::Command::Doctor(args) => doctor::doctor(args),
    };
    match result {
        Ok(code) => code,
        // the reader went away (`ksight run | head`): not an error
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ksight: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
