//! ksight: an eBPF host monitoring agent. `main` parses the command line,
//! converts it into configuration, and dispatches; each subcommand lives in its
//! own module (`run`, `bench`) or crate (ksight-doctor).

use std::io;
use std::process::ExitCode;

use clap::Parser;

mod bench;
mod cli;
mod config;
mod enforce;
mod fleet;
mod metrics;
mod notify;
mod preflight;
mod rules;
mod run;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Run(args) => run_command(*args).map(|()| ExitCode::SUCCESS),
        cli::Command::Config(args) => config_command(args),
        cli::Command::Fleet(args) => fleet::run(args),
        cli::Command::Enforce(args) => enforce::command(args.which),
        cli::Command::Man { dir } => man_pages(&dir).map(|()| ExitCode::SUCCESS),
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

/// `ksight run`: the command line, over the config file's settings if one is read.
fn run_command(args: cli::RunArgs) -> anyhow::Result<()> {
    let Some(path) = config::chosen(args.config.as_deref(), args.no_config) else {
        return run::run(args.config());
    };
    let file = config::ConfigFile::load(&path).map_err(anyhow::Error::msg)?;
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let merged = file.merge(&argv).map_err(anyhow::Error::msg)?;
    let cli::Command::Run(args) = cli::Cli::parse_from(&merged).command else {
        unreachable!("merged from a run command line")
    };
    let mut cfg = args.config();
    if !file.outputs.is_empty() && !config::ConfigFile::classic_output(&merged) {
        cfg.sinks.clear();
    }
    cfg.outputs = file.outputs.clone();
    cfg.config_file = Some(run::ConfigSource {
        path,
        outputs: |p| config::ConfigFile::load(p).map(|f| f.outputs),
    });
    run::run(cfg)
}

/// `ksight config check|show`.
fn config_command(args: cli::ConfigArgs) -> anyhow::Result<ExitCode> {
    let path = args.config.unwrap_or_else(|| config::DEFAULT_PATH.into());
    let file = match config::ConfigFile::load(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ksight: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let argv = ["ksight", "run"].map(std::ffi::OsString::from);
    let merged = match file.merge(&argv) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ksight: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match args.which {
        cli::ConfigCommand::Check => {
            println!(
                "{}: ok: {} [run] settings, {} outputs",
                path.display(),
                file.settings(),
                file.outputs.len()
            );
        }
        cli::ConfigCommand::Show => {
            print!(
                "{}",
                config::ConfigFile::show(&merged, file.specs()).map_err(anyhow::Error::msg)?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ksight man DIR`: a page for the command and one per subcommand, from the
/// same definitions as `--help`.
fn man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let cmd = cli::Cli::command();
    let write = |name: &str, c: clap::Command| -> anyhow::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(c)
            .title(name.to_uppercase())
            .render(&mut out)?;
        std::fs::File::create(dir.join(format!("{name}.1")))?.write_all(&out)?;
        Ok(())
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("ksight-{}", sub.get_name());
        write(
            &name,
            sub.clone()
                .display_name(name.clone())
                .bin_name(format!("ksight {}", sub.get_name())),
        )?;
    }
    write("ksight", cmd)
}
