//! The config file (`/etc/ksight/ksight.toml`, or `--config PATH`):
//!
//! ```toml
//! [run]                   # any `ksight run` flag, by its long name
//! events = ["exec", "connect"]
//! ringbuf-size = "16M"
//! rules = ["default", "/etc/ksight/rules.d"]
//!
//! [[output]]              # any number; see docs/config.md
//! name = "alerts"
//! kind = "syslog"
//! min-severity = "high"
//! ```
//!
//! `[run]` keys become command-line arguments placed before the real ones,
//! unless the command line sets that flag itself: the command line wins, and
//! every flag has its key without a second list of settings to keep in step.
//! Errors name the file, line and column.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory};
use ksight_output::spec::OutputPlan;
use ksight_output::OutputSpec;
use serde::Deserialize;
use toml::Spanned;

use crate::cli::Cli;

/// Read when `--config` is not given, if it exists.
pub const DEFAULT_PATH: &str = "/etc/ksight/ksight.toml";

/// Flags that are about the config file itself: no keys.
const NOT_KEYS: &[&str] = &["config", "no_config", "help"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    run: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    output: Vec<Spanned<OutputSpec>>,
}

/// A config file, read and checked.
pub struct ConfigFile {
    pub path: PathBuf,
    text: String,
    run: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    pub outputs: Vec<OutputPlan>,
    specs: Vec<OutputSpec>,
}

/// `PATH:LINE:COL: message`.
fn at(path: &Path, text: &str, offset: usize, msg: impl std::fmt::Display) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{}:{line}:{col}: {msg}", path.display())
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::parse(path, text)
    }

    pub fn parse(path: &Path, text: String) -> Result<ConfigFile, String> {
        let raw: Raw = toml::from_str(&text).map_err(|e| {
            let off = e.span().map_or(0, |s| s.start);
            at(path, &text, off, e.message().trim())
        })?;
        let mut names = std::collections::HashSet::new();
        let mut outputs = Vec::new();
        let mut specs = Vec::new();
        for o in &raw.output {
            let plan = o
                .get_ref()
                .plan()
                .map_err(|e| at(path, &text, o.span().start, e))?;
            if !names.insert(plan.name.clone()) {
                return Err(at(
                    path,
                    &text,
                    o.span().start,
                    format!("two outputs are named {}", plan.name),
                ));
            }
            outputs.push(plan);
            specs.push(o.get_ref().clone());
        }
        let cfg = ConfigFile {
            path: path.to_path_buf(),
            text,
            run: raw.run,
            outputs,
            specs,
        };
        // every key names a flag and has a value of its shape
        cfg.arguments(&|_| false)?;
        Ok(cfg)
    }

    fn at(&self, offset: usize, msg: impl std::fmt::Display) -> String {
        at(&self.path, &self.text, offset, msg)
    }

    /// The `[run]` keys as arguments, each with where it was written,
    /// leaving out the flags `on_command_line` says the command line sets.
    fn arguments(
        &self,
        on_command_line: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<(Vec<OsString>, usize)>, String> {
        let cmd = Cli::command();
        let run = cmd.find_subcommand("run").expect("a run subcommand");
        let mut out = Vec::new();
        for (key, value) in &self.run {
            let id = key.get_ref().replace('-', "_");
            let arg = run
                .get_arguments()
                .find(|a| a.get_id() == id.as_str() && !NOT_KEYS.contains(&id.as_str()))
                .ok_or_else(|| {
                    self.at(
                        key.span().start,
                        format!(
                            "unknown key `{}` in [run]: not a `ksight run` flag",
                            key.get_ref()
                        ),
                    )
                })?;
            if on_command_line(&id) {
                continue;
            }
            let flag = format!("--{}", arg.get_long().expect("run flags are long"));
            let takes_values = arg.get_action().takes_values();
            let many = matches!(arg.get_action(), ArgAction::Append);
            let scalar = |v: &toml::Value| -> Result<String, String> {
                match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    toml::Value::Integer(i) => Ok(i.to_string()),
                    toml::Value::Float(f) => Ok(f.to_string()),
                    toml::Value::Boolean(b) => Ok(b.to_string()),
                    toml::Value::Datetime(d) => Ok(d.to_string()),
                    _ => Err(self.at(
                        value.span().start,
                        format!("`{}`: a string, number or boolean", key.get_ref()),
                    )),
                }
            };
            let args: Vec<OsString> = match (value.get_ref(), takes_values) {
                (toml::Value::Boolean(true), false) => vec![flag.into()],
                (toml::Value::Boolean(false), false) => vec![],
                (_, false) => {
                    return Err(self.at(
                        value.span().start,
                        format!("`{}` is a switch: true or false", key.get_ref()),
                    ))
                }
                (toml::Value::Array(items), true) => {
                    if !many && items.len() != 1 {
                        return Err(self.at(
                            value.span().start,
                            format!("`{}` takes one value, not a list", key.get_ref()),
                        ));
                    }
                    items
                        .iter()
                        .map(|v| scalar(v).map(|s| format!("{flag}={s}").into()))
                        .collect::<Result<_, _>>()?
                }
                (v, true) => vec![format!("{flag}={}", scalar(v)?).into()],
            };
            out.push((args, value.span().start));
        }
        Ok(out)
    }

    /// The command line with the file's `[run]` settings put in front of the
    /// flags it does not set. `argv` is the whole command line, `ksight run ...`.
    pub fn merge(&self, argv: &[OsString]) -> Result<Vec<OsString>, String> {
        let matches = Cli::command()
            .try_get_matches_from(argv)
            .map_err(|e| e.to_string())?;
        let run = matches
            .subcommand_matches("run")
            .ok_or("a config file is for `ksight run`")?;
        let set = |id: &str| run.value_source(id) == Some(ValueSource::CommandLine);
        let file_args = self.arguments(&set)?;
        let at_run = argv
            .iter()
            .position(|a| a == "run")
            .ok_or("a config file is for `ksight run`")?;
        let head = &argv[..=at_run];
        let tail = &argv[at_run + 1..];
        // each setting alone first: a bad value is named by its place in the file
        for (args, offset) in &file_args {
            let mut one: Vec<OsString> = head.to_vec();
            one.extend(args.iter().cloned());
            if let Err(e) = Cli::command().try_get_matches_from(&one) {
                let msg = e.to_string();
                let msg = msg
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                return Err(self.at(*offset, msg));
            }
        }
        let mut merged = head.to_vec();
        merged.extend(file_args.into_iter().flat_map(|(a, _)| a));
        merged.extend(tail.iter().cloned());
        Ok(merged)
    }

    /// The effective configuration as TOML: every `ksight run` setting with
    /// its value (from the command line, the file, or the default), then the
    /// outputs.
    pub fn show(merged: &[OsString], specs: &[OutputSpec]) -> Result<String, String> {
        let cmd = Cli::command();
        let matches = cmd
            .clone()
            .try_get_matches_from(merged)
            .map_err(|e| e.to_string())?;
        let run = matches
            .subcommand_matches("run")
            .ok_or("not `ksight run`")?;
        let run_cmd = cmd.find_subcommand("run").expect("a run subcommand");
        let mut table = toml::Table::new();
        for arg in run_cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if NOT_KEYS.contains(&id) || arg.is_hide_set() {
                continue;
            }
            let key = arg.get_long().expect("run flags are long").to_string();
            let value = if !arg.get_action().takes_values() {
                Some(toml::Value::Boolean(run.get_flag(id)))
            } else {
                run.get_raw(id).map(|vals| {
                    let vals: Vec<toml::Value> = vals
                        .map(|v| toml::Value::String(v.to_string_lossy().into_owned()))
                        .collect();
                    match arg.get_action() {
                        ArgAction::Append => toml::Value::Array(vals),
                        _ => vals.into_iter().next().expect("a value"),
                    }
                })
            };
            if let Some(v) = value {
                table.insert(key, v);
            }
        }
        let mut doc = toml::Table::new();
        doc.insert("run".into(), toml::Value::Table(table));
        let mut out = toml::to_string(&doc).map_err(|e| e.to_string())?;
        for s in specs {
            // secrets are not printed: `show` output goes to terminals and tickets
            let mut s = s.clone();
            for v in [&mut s.password, &mut s.token, &mut s.nkey] {
                if v.is_some() {
                    *v = Some("(secret, not shown)".into());
                }
            }
            let t = toml::to_string(&s).map_err(|e| e.to_string())?;
            out.push_str("\n[[output]]\n");
            out.push_str(&t);
        }
        Ok(out)
    }

    /// Whether the merged command line asks for the classic single output
    /// (`--output` or `--format`, on the command line or in `[run]`): it then
    /// runs beside the `[[output]]` tables; otherwise they are the outputs.
    pub fn classic_output(merged: &[OsString]) -> bool {
        let Ok(m) = Cli::command().try_get_matches_from(merged) else {
            return true;
        };
        let Some(run) = m.subcommand_matches("run") else {
            return true;
        };
        ["output", "format"].iter().any(|id| {
            run.value_source(id)
                .is_some_and(|s| s != ValueSource::DefaultValue)
        })
    }

    pub fn specs(&self) -> &[OutputSpec] {
        &self.specs
    }

    pub fn settings(&self) -> usize {
        self.run.len()
    }
}

/// The config file to read: `--config PATH`, else the default if it exists;
/// none with `--no-config`.
pub fn chosen(explicit: Option<&Path>, none: bool) -> Option<PathBuf> {
    if none {
        return None;
    }
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => Path::new(DEFAULT_PATH)
            .exists()
            .then(|| PathBuf::from(DEFAULT_PATH)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse(Path::new("k.toml"), text.to_string())
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn run_keys_become_flags_and_the_command_line_wins() {
        let c = parse(
            "[run]\nformat = \"json\"\nevents = [\"exec\", \"exit\"]\nno-loopback = true\n\
             threads = false\npoll_interval = \"50ms\"\nancestors = 2\n",
        )
        .unwrap();
        let merged = c
            .merge(&argv(&["ksight", "run", "--format", "table", "--pid", "7"]))
            .unwrap();
        let cli = <Cli as clap::Parser>::try_parse_from(&merged).unwrap();
        let crate::cli::Command::Run(args) = cli.command else {
            panic!()
        };
        assert_eq!(
            args.format,
            ksight_core::sink::Format::Table,
            "the command line wins"
        );
        assert_eq!(args.events.len(), 2);
        assert!(args.no_loopback && !args.threads);
        assert_eq!(args.poll_interval, std::time::Duration::from_millis(50));
        assert_eq!((args.ancestors, args.pid.clone()), (2, vec![7]));
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let e = parse("[run]\nformat = \"json\"\n  bogus-key = 1\n")
            .err()
            .unwrap();
        assert!(e.starts_with("k.toml:3:3: unknown key `bogus-key`"), "{e}");
        let e = parse("[runn]\n").err().unwrap();
        assert!(e.starts_with("k.toml:1:"), "{e}");
        let e = parse("[run]\nno-loopback = \"yes\"\n").err().unwrap();
        assert!(
            e.starts_with("k.toml:2:15: `no-loopback` is a switch"),
            "{e}"
        );
        let e = parse("[[output]]\nname = \"a\"\nkind = \"file\"\n")
            .err()
            .unwrap();
        assert!(
            e.starts_with("k.toml:1:1: output a: a file output needs `path`"),
            "{e}"
        );
        let e = parse("[[output]]\nname = \"a\"\nkind = \"stdout\"\nurl = \"x\"\n")
            .err()
            .unwrap();
        assert!(e.contains("url not for a stdout output"), "{e}");
        let e = parse("[[output]]\nname = \"a\"\nkind = \"stdout\"\nspeed = 1\n")
            .err()
            .unwrap();
        assert!(e.starts_with("k.toml:4:1: unknown field `speed`"), "{e}");
        let e = parse(
            "[[output]]\nname = \"a\"\nkind = \"stdout\"\n[[output]]\nname = \"a\"\nkind = \"stdout\"\n",
        )
        .err()
        .unwrap();
        assert!(e.contains("two outputs are named a"), "{e}");
        // a bad value is named by its place in the file
        let c = parse("[run]\n\npoll-interval = \"0s\"\n").unwrap();
        let e = c.merge(&argv(&["ksight", "run"])).unwrap_err();
        assert!(e.starts_with("k.toml:3:17: "), "{e}");
        assert!(e.contains("between 1ms and 1s"), "{e}");
    }

    #[test]
    fn show_hides_secrets() {
        let c = parse(
            "[[output]]\nname = \"f\"\nkind = \"nats\"\nservers = [\"nats://h:4222\"]\nuser = \"u\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        let merged = c.merge(&argv(&["ksight", "run"])).unwrap();
        let text = ConfigFile::show(&merged, c.specs()).unwrap();
        assert!(
            !text.contains("hunter2") && text.contains("user = \"u\""),
            "{text}"
        );
    }

    #[test]
    fn show_prints_every_setting_and_reads_back() {
        let c = parse(
            "[run]\nevents = [\"exec\"]\n[[output]]\nname = \"all\"\nkind = \"file\"\npath = \"/tmp/x\"\nrotate-size = \"1M\"\n",
        )
        .unwrap();
        let merged = c.merge(&argv(&["ksight", "run", "--grace", "3s"])).unwrap();
        let text = ConfigFile::show(&merged, c.specs()).unwrap();
        assert!(text.contains("events = [\"exec\"]"), "{text}");
        assert!(text.contains("grace = \"3s\""), "{text}");
        assert!(text.contains("ringbuf-size = \"8M\""), "{text}");
        assert!(text.contains("rotate-size = \"1M\""), "{text}");
        // what show prints is a config file that means the same
        let again = parse(&text).unwrap();
        assert_eq!(again.outputs, c.outputs);
        let merged2 = again.merge(&argv(&["ksight", "run"])).unwrap();
        assert_eq!(ConfigFile::show(&merged2, again.specs()).unwrap(), text);
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    /// docs/config.md lists every `ksight run` flag and every `[[output]]` key.
    #[test]
    fn the_reference_lists_every_key() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md"))
                .unwrap();
        let cmd = Cli::command();
        let run = cmd.find_subcommand("run").unwrap();
        let missing: Vec<String> = run
            .get_arguments()
            .filter(|a| !NOT_KEYS.contains(&a.get_id().as_str()) && !a.is_hide_set())
            .map(|a| a.get_long().unwrap().to_string())
            .filter(|k| !doc.contains(&format!("| `{k}` |")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/config.md lacks [run] keys {missing:?}"
        );
        // every key an output may have, from the spec itself
        let full = "name = \"x\"\nkind = \"file\"\nformat = \"json\"\ntemplate = \"{type}\"\nevents = [\"exec\"]\npid = [1]\ncomm = [\"c\"]\nuid = [0]\ncontainer = [\"ab\"]\n\
                    alerts-only = true\nmin-severity = \"low\"\nrules = [\"r\"]\nqueue = 5\n\
                    overflow = \"drop-newest\"\npath = \"/p\"\nrotate-size = \"1M\"\n\
                    rotate-every = \"1h\"\nkeep = 1\nkeep-size = \"1G\"\ncompress = \"gzip\"\n\
                    fsync = \"batch\"\naddress = \"unix:/dev/log\"\nfacility = \"daemon\"\n\
                    app-name = \"k\"\nprotocol = \"rfc5424\"\nurl = \"http://x\"\nheaders = { a = \"b\" }\nbatch = 1\n\
                    timeout = \"1s\"\nretries = 1\nservers = [\"nats://a:1\"]\nsubject-prefix = \"k\"\n\
                    host = \"h\"\nspool-dir = \"/s\"\nspool-size = \"1G\"\nevents-per-message = 8\nuser = \"u\"\npassword = \"p\"\n\
                    token = \"t\"\nnkey = \"SU\"\ncreds = \"/c\"\ntls-ca = \"/ca\"\ntls-cert = \"/c\"\n\
                    tls-key = \"/k\"\ntls = true\n";
        let spec: OutputSpec = toml::from_str(full).unwrap();
        let keys = toml::to_string(&spec).unwrap();
        let mut n = 0;
        // `k = v` lines, then `[table]` lines (whose own lines are values)
        let mut in_table = false;
        for line in keys.lines() {
            let k = if let Some(t) = line.strip_prefix('[') {
                in_table = true;
                t.trim_end_matches(']')
            } else if !in_table && line.contains(" = ") {
                line.split(" = ").next().unwrap()
            } else {
                continue;
            };
            n += 1;
            assert!(
                doc.contains(&format!("| `{k}` |")),
                "docs/config.md lacks output key {k}"
            );
        }
        assert!(n >= 38, "{keys}");
    }
}
