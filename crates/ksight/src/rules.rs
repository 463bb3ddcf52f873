//! `ksight rules check|test` and `ksight replay`: rule files without the kernel.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use ksight_rules::RuleSet;

/// Where rules come from: the pack built into ksight, or a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pack {
    Shipped,
    Dir(PathBuf),
}

/// `--rules` values, in order: `default` names the shipped pack (a directory
/// called so is `./default`); none at all means the shipped pack alone.
pub fn packs(args: &[PathBuf]) -> Vec<Pack> {
    if args.is_empty() {
        return vec![Pack::Shipped];
    }
    args.iter()
        .map(|a| {
            if a.as_os_str() == "default" {
                Pack::Shipped
            } else {
                Pack::Dir(a.clone())
            }
        })
        .collect()
}

/// The files of every pack, loaded as one set (a later file may append to
/// what an earlier one declares); errors listed, one per line.
pub fn load(packs: &[Pack]) -> Result<RuleSet> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for p in packs {
        match p {
            Pack::Shipped => sources.extend(ksight_rules::shipped_sources()),
            Pack::Dir(d) => match ksight_rules::read_dir(d) {
                Ok(s) => sources.extend(s),
                Err(e) => errors.extend(e),
            },
        }
    }
    let loaded = if errors.is_empty() {
        ksight_rules::load(&sources)
    } else {
        Err(errors)
    };
    loaded.map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "{} error{} in the rules:\n{}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            lines.join("\n")
        )
    })
}

/// How to name some packs to a person.
pub fn name(packs: &[Pack]) -> String {
    packs
        .iter()
        .map(|p| match p {
            Pack::Shipped => "the shipped rules".to_string(),
            Pack::Dir(d) => d.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

pub fn check(dirs: &[PathBuf]) -> Result<ExitCode> {
    let packs = packs(dirs);
    match load(&packs) {
        Ok(set) => {
            println!(
                "{}: {} rules ({} enabled), for {}",
                name(&packs),
                set.rules.len(),
                set.enabled(),
                set.kinds()
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub fn test(dirs: &[PathBuf], baseline: Option<PathBuf>) -> Result<ExitCode> {
    let packs = packs(dirs);
    let set = match load(&packs) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(capture) = baseline {
        let input = open(&capture)?;
        let fired = ksight_rules::testing::baseline(set, input)
            .with_context(|| format!("reading {}", capture.display()))?;
        if fired.is_empty() {
            println!("no rule fires on {}", capture.display());
        }
        for (rule, n) in &fired {
            println!("{n:>8}  {rule}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = ksight_rules::testing::run(set);
    for f in &report.failed {
        println!("FAIL {f}");
    }
    for r in &report.untested {
        println!("untested: {r}");
    }
    println!(
        "{}: {} fixtures passed, {} failed, {} rules without fixtures",
        name(&packs),
        report.passed,
        report.failed.len(),
        report.untested.len()
    );
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(io::stdin())));
    }
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Box::new(BufReader::with_capacity(1 << 16, f)))
}

pub fn replay(file: PathBuf, rules: &[PathBuf], output: Option<PathBuf>) -> Result<ExitCode> {
    let set = load(&packs(rules))?;
    let input = open(&file)?;
    let mut out: Box<dyn Write> = match &output {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout())),
    };
    let counts = ksight_rules::replay::replay(input, set, &mut out)
        .with_context(|| format!("replaying {}", file.display()))?;
    out.flush()?;
    eprintln!(
        "ksight: replayed {} events: {} alerts{}{}",
        counts.events,
        counts.alerts_out,
        if counts.bad > 0 {
            format!(", {} lines that were not events", counts.bad)
        } else {
            String::new()
        },
        if counts.alerts_in > 0 {
            format!(", {} alert lines of the input skipped", counts.alerts_in)
        } else {
            String::new()
        }
    );
    if counts.events == 0 && counts.bad > 0 {
        bail!("{} holds no event", file.display());
    }
    Ok(ExitCode::SUCCESS)
}
