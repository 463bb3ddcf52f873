//! ksight: an eBPF host monitoring agent. `main` parses the command line,
//! converts it into configuration, and dispatches; each subcommand lives in its
//! own module (`run`, `bench`) or crate (ksight-doctor).

use std::io;
use std::process::ExitCode;

use clap::Parser;

mod bench;
mod cli;
mod preflight;
mod rules;
mod run;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Run(args) => run::run(args.config()).map(|()| ExitCode::SUCCESS),
        cli::Command::Bench(args) => bench::run_bench(args).map(|()| ExitCode::SUCCESS),
        cli::Command::Doctor(args) => ksight_doctor::run(&args.options())
            .map(ExitCode::from)
            .map_err(anyhow::Error::from),
        cli::Command::Rules(args) => match args.which {
            cli::RulesCommand::Check { dirs } => rules::check(&dirs),
            cli::RulesCommand::Test { dirs, baseline } => rules::test(&dirs, baseline),
        },
        cli::Command::Replay(a) => rules::replay(a.file, &a.rules, a.output),
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
