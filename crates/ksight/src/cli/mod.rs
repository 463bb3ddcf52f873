//! The command line: parsed once (clap), converted once into the
//! configuration types the rest of ksight runs on ([`RunConfig`],
//! `ksight_doctor::Options`), which import nothing from here. The enums a flag
//! takes are the configuration's own (`clap::ValueEnum` through each crate's
//! `cli` feature); bad flags are reported by clap with exit code 2.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ksight_bpf::{AcceptHook, AttachMode, GaiAttach, TransportMode};
use ksight_core::event::Kind;
use ksight_core::files::WatchEntry;
use ksight_core::filter::FilterSpec;
use ksight_core::hash::HashMode;
use ksight_core::sink::{Color, Format, SinkSpec};
use ksight_doctor::DoctorFormat;

use crate::run::{RulesSource, RunConfig};

pub mod bench;

#[derive(Parser, Debug)]
#[command(
    name = "ksight",
    version,
    about = "eBPF host monitoring: process, network and DNS events, attributed and ordered"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Attach to the kernel and stream events until interrupted (or --duration).
    Run(Box<RunArgs>),
    /// Can this kernel run ksight? Each finding with its meaning and fix.
    /// Exit code: 0 runs fully, 1 runs degraded, 2 cannot run.
    Doctor(DoctorArgs),
    /// Measure ksight on this machine.
    Bench(bench::BenchArgs),
    /// Check rule files, or run their tests.
    Rules(RulesArgs),
    /// Run rules over a recorded stream (ksight's JSON Lines) and write the alerts.
    Replay(ReplayArgs),
    /// Check the config file, or print the configuration it makes.
    Config(ConfigArgs),
    /// The fleet stream in NATS JetStream: create it, follow it, count it.
    Fleet(FleetArgs),
    /// Enforcement that outlives ksight (`run --enforce-persist`): show it, remove it.
    Enforce(EnforceArgs),
    /// Write the man pages (ksight.1, ksight-run.1, ...) into DIR (packaging).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

#[derive(Args, Debug)]
pub struct EnforceArgs {
    #[command(subcommand)]
    pub which: crate::enforce::EnforceCommand,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub which: ConfigCommand,
    /// The config file (default: /etc/ksight/ksight.toml).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Read and check the file: every key known, every value valid; errors
    /// as file:line:col. Exit 0 or 1.
    Check,
    /// Print the effective configuration (the file over the defaults) as TOML.
    Show,
}

#[derive(Args, Debug)]
pub struct FleetArgs {
    #[command(subcommand)]
    pub which: FleetCommand,
    /// A NATS server (repeat for several; default: the servers of the config
    /// file's nats output, else nats://127.0.0.1:4222).
    #[arg(long = "server", global = true, value_name = "URL")]
    pub servers: Vec<String>,
    /// The config file whose nats output gives the servers and credentials
    /// (default: /etc/ksight/ksight.toml when it exists).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Which nats output of the config file (default: the first).
    #[arg(long, global = true, value_name = "NAME")]
    pub output: Option<String>,
    /// The stream's name.
    #[arg(long, global = true, default_value = "KSIGHT")]
    pub stream: String,
    /// The subjects' first token (as the outputs' `subject-prefix`).
    #[arg(long, global = true, default_value = "ksight")]
    pub prefix: String,
}

#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Create the stream, or update its limits (idempotent).
    Init {
        /// Copies of each message in the cluster (1, 3 or 5).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Messages older than this are removed.
        #[arg(long, default_value = "7d")]
        max_age: String,
        /// The stream's size at most (the oldest go first); default unlimited.
        #[arg(long, value_name = "BYTES")]
        max_bytes: Option<String>,
        /// How long the server remembers message ids, against messages sent
        /// twice (a spool replayed after a crash within it is stored once).
        #[arg(long, default_value = "2m")]
        dedup_window: String,
        /// Keep the stream in memory, not on disk (tests, benchmarks).
        #[arg(long)]
        memory: bool,
    },
    /// Follow the stream across hosts, filtered in the server by subject.
    Tail {
        /// Hosts whose events to show (a glob: `web-*`).
        #[arg(long, value_name = "GLOB")]
        host: Option<String>,
        /// Event kinds, comma-separated (`exec,connect`).
        #[arg(long = "type", value_name = "KINDS", value_delimiter = ',')]
        kinds: Vec<String>,
        /// Only alerts of at least this severity.
        #[arg(long, value_name = "MIN")]
        severity: Option<String>,
        /// From this long ago (`10m`) or this time (RFC 3339); default: from now on.
        #[arg(long, value_name = "AGO|TIME")]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: FleetFormat,
        /// Stop at the end of the stream instead of waiting for more.
        #[arg(long)]
        no_follow: bool,
    },
    /// Per host: events stored, by kind, when the last came and its delay.
    Stats {
        #[arg(long, value_enum, default_value = "table")]
        format: FleetFormat,
    },
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub which: RulesCommand,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Load and type-check a rule directory; errors as file:line:col. Exit 0 or 1.
    Check {
        /// Rule directories, loaded in order as one set; `default` is the
        /// shipped pack (none given: the shipped pack alone)
        dirs: Vec<PathBuf>,
    },
    /// Run every rule's fixtures (`tests:`); with --baseline, list the rules that
    /// fire on a capture of a normal host. Exit 0 when every fixture passes.
    Test {
        /// Rule directories, loaded in order as one set; `default` is the
        /// shipped pack (none given: the shipped pack alone)
        dirs: Vec<PathBuf>,
        /// A capture (`ksight run --format json -o FILE`) to run the rules over.
        #[arg(long)]
        baseline: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A JSON Lines file written by `ksight run --format json` (`-`: standard input).
    pub file: PathBuf,
    /// Rule directories, in order; `default` is the shipped pack (the default).
    #[arg(long)]
    pub rules: Vec<PathBuf>,
    /// Write the alerts here instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[arg(long, value_enum, default_value_t = DoctorFormat::Table)]
    pub format: DoctorFormat,
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// Read /proc and /sys under this directory instead of / (real probes are
    /// then skipped: they can only test the running kernel).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
}

impl DoctorArgs {
    pub fn options(self) -> ksight_doctor::Options {
        ksight_doctor::Options {
            format: self.format,
            color: self.color,
            root: self.root,
        }
    }
}

#[derive(Args, Debug)]
#[command(args_override_self = true)]
pub struct RunArgs {
    /// A config file: `[run]` holds any of these flags by name (the command
    /// line wins), `[[output]]` tables add outputs. Default:
    /// /etc/ksight/ksight.toml when it exists.
    #[arg(long, conflicts_with = "no_config")]
    pub config: Option<PathBuf>,

    /// Read no config file, not even the default one.
    #[arg(long)]
    pub no_config: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,

    /// Event kinds to show, comma-separated (default: all but tcp_state; lost events
    /// are always shown).
    #[arg(long, value_delimiter = ',', value_parser = parse_kind, help = events_help())]
    pub events: Vec<Kind>,

    /// Only events of these pids (a fork also matches on its child's pid).
    #[arg(long, value_delimiter = ',')]
    pub pid: Vec<u32>,

    /// Network events only for these ports, local or remote (decided in the kernel; at most 64).
    #[arg(long, value_delimiter = ',')]
    pub port: Vec<u16>,

    /// No network events whose remote end is a loopback address (decided in the kernel).
    #[arg(long)]
    pub no_loopback: bool,

    /// Only events of processes with this comm (exact; repeat the flag for more: a comm
    /// may contain commas).
    #[arg(long)]
    pub comm: Vec<String>,

    /// Only events of processes with this real uid.
    #[arg(long, value_delimiter = ',')]
    pub uid: Vec<u32>,

    /// Only events in this cgroup v2 path or below it (e.g. /system.slice); decided in the kernel;
    /// at most 8 (repeat the flag: a path may contain commas).
    #[arg(long)]
    pub cgroup: Vec<String>,

    /// Only events in containers whose id starts with this (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub container: Vec<String>,

    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, value_parser = duration_between::<1_000_000, { u64::MAX }>)]
    pub duration: Option<Duration>,

    /// Write events to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    /// Colour in table output; NO_COLOR in the environment means never for auto.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,

    /// Also report threads: their creation and their exit.
    #[arg(long)]
    pub threads: bool,

    /// argv bytes kept per exec (64 to 32768); longer argv are cut and flagged.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(64..=32768))]
    pub argv_max: u32,

    /// Parents listed with each exec.
    #[arg(long, default_value_t = 4)]
    pub ancestors: usize,

    /// Hash every executed file (SHA-256, on a worker thread, off the event path):
    /// `exec.file.sha256` when known, else an `exe_hash` event follows.
    #[arg(long, value_enum, default_value_t = HashMode::Sha256)]
    pub hash: HashMode,

    /// Executed files larger than this are not hashed (K, M, G suffixes).
    #[arg(long, default_value = "256M", value_parser = parse_bytes)]
    pub hash_max_size: u64,

    /// Bytes per second the hash worker reads at most (K, M, G suffixes; at least 64K).
    #[arg(long, default_value = "64M", value_parser = parse_rate)]
    pub hash_rate: u64,

    /// Which processes get the getaddrinfo probes: `lazy`, a process once it has
    /// sent a DNS query (its first lookup is then seen as packets only; no other
    /// process pays anything), or `all` (a uprobe in every libc mapping: every
    /// exec of a dynamically linked program pays for it).
    #[arg(long, value_enum, default_value_t = GaiAttach::Lazy)]
    pub getaddrinfo: GaiAttach,

    /// Also watch this file or directory (and what is below it, three levels
    /// deep) for `file` events: opens and changes. Absolute; `*` and `?` match
    /// within one component (`/home/*/.ssh`). Repeatable; adds to the defaults.
    #[arg(long, value_name = "PATH", value_parser = parse_watch_opens)]
    pub file_watch: Vec<WatchEntry>,

    /// Also watch this file or directory for changes only (writes, creations,
    /// removals, renames, chmod/chown), not opens. Repeatable.
    #[arg(long, value_name = "PATH", value_parser = parse_watch_changes)]
    pub file_watch_changes: Vec<WatchEntry>,

    /// Watch the same paths in containers too (every other mount namespace,
    /// through a process's /proc/PID/root; found every 2 seconds): their
    /// events carry the container's paths and `file.root_pid`.
    #[arg(long)]
    pub file_watch_containers: bool,

    /// Do not watch the default sensitive files (/etc/shadow, ~/.ssh, /etc/cron*,
    /// /etc/systemd/system, ...: docs/events.md lists them).
    #[arg(long)]
    pub no_default_file_watch: bool,

    /// Do not ask container runtimes (docker, podman, containerd, CRI-O) about
    /// containers: events then carry `process.container_id` only.
    #[arg(long)]
    pub no_container_meta: bool,

    /// Tracepoint program flavour.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub attach: AttachMode,

    /// Hook accept() to name the process that accepted each connection (with `auto`,
    /// where the kernel allows it; a named hook the kernel refuses is an error).
    #[arg(long, value_enum, default_value_t = AcceptHook::Auto)]
    pub accept_hook: AcceptHook,

    /// BTF of the running kernel, for kernels without /sys/kernel/btf/vmlinux.
    #[arg(long)]
    pub btf: Option<PathBuf>,

    /// How records leave the kernel.
    #[arg(long, value_enum, default_value_t = TransportMode::Auto)]
    pub transport: TransportMode,

    /// Perf buffer size per CPU, in 4 KiB pages (power of two), when the perf buffer is used.
    #[arg(long, default_value_t = 128)]
    pub perf_pages: usize,

    /// Perf buffer only: how long a record may wait for earlier ones from other CPUs
    /// (added latency; covers the time between a hook's timestamp and its record landing).
    #[arg(long, default_value = "5ms", value_parser = duration_between::<100_000, 1_000_000_000>)]
    pub reorder_window: Duration,

    /// Ring buffer size (power of two; K and M suffixes), shared by all CPUs.
    #[arg(long, default_value = "8M", value_parser = parse_size)]
    pub ringbuf_size: u32,

    /// Longest delay between an event and its output when the host is quiet
    /// (busy hosts wake ksight earlier, at 1/32 of the ring buffer).
    #[arg(long, default_value = "20ms", value_parser = duration_between::<1_000_000, 1_000_000_000>)]
    pub poll_interval: Duration,

    /// How often open UDP flows with new traffic are reported (closed ones are reported at once).
    #[arg(long, default_value = "10s", value_parser = duration_between::<100_000_000, 3_600_000_000_000>)]
    pub udp_interval: Duration,

    /// Ports whose UDP datagrams and TCP segments are parsed as DNS (at most 4).
    #[arg(long, value_delimiter = ',', default_value = "53")]
    pub dns_port: Vec<u16>,

    /// A DNS query with no response after this long is reported as unanswered.
    #[arg(long, default_value = "5s", value_parser = duration_between::<100_000_000, 600_000_000_000>)]
    pub dns_timeout: Duration,

    /// How long exited processes stay in the process table.
    #[arg(long, default_value = "10s", value_parser = duration_between::<100_000_000, 3_600_000_000_000>)]
    pub grace: Duration,

    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464;
    /// off by default).
    #[arg(long)]
    pub metrics: Option<std::net::SocketAddr>,

    /// This host's name in the fleet stream (nats outputs without `host`;
    /// default: the machine's host name).
    #[arg(long, value_name = "NAME")]
    pub host_name: Option<String>,

    /// Print load details (hook flavour, kernel ids of programs and maps) to stderr.
    #[arg(short, long)]
    pub verbose: bool,

    /// Detection rules: a directory of YAML rule files; repeat it to load several
    /// as one set, in order (`--rules default --rules /etc/ksight/rules.d`: the
    /// shipped pack, then site files that append to it). Default: the shipped
    /// pack. SIGHUP reloads the directories.
    #[arg(long, conflicts_with = "no_rules")]
    pub rules: Vec<PathBuf>,

    /// Run no detection rules.
    #[arg(long)]
    pub no_rules: bool,

    /// Let the rules with an `action` act (deny connections, kill at exec).
    /// Without it they run in monitor mode: each writes what it would have
    /// done, as an `enforcement` event and an alert, and nothing is stopped.
    #[arg(long, conflicts_with = "no_rules")]
    pub enforce: bool,

    /// Pin the enforcement programs and maps in /sys/fs/bpf/ksight/enforce so
    /// they keep enforcing when ksight exits or crashes (fail-closed);
    /// `ksight enforce status|clear` show and remove them. Default: enforcement
    /// ends with ksight (fail-open).
    #[arg(long, conflicts_with = "no_rules")]
    pub enforce_persist: bool,

    /// Addresses of DNS answers for denied names the kernel holds (tests).
    #[arg(long, hide = true, default_value_t = 16384)]
    pub enforce_answers_max: u32,

    /// Write only alerts (and lost events); collect only the event kinds the rules need.
    #[arg(long, conflicts_with = "no_rules")]
    pub alerts_only: bool,

    /// Also write every raw kernel record to this file (a u32 length, little
    /// endian, then the bytes): fixtures for the pipeline's tests.
    #[arg(long, hide = true)]
    pub capture: Option<PathBuf>,
}

impl RunArgs {
    pub fn config(self) -> RunConfig {
        RunConfig {
            agent: ksight_bpf::Config {
                gai: self.getaddrinfo,
                ringbuf_bytes: self.ringbuf_size,
                wakeup_bytes: u64::from(self.ringbuf_size / 32),
                argv_max: self.argv_max,
                threads: self.threads,
                attach: self.attach,
                transport: self.transport,
                perf_pages: self.perf_pages,
                btf: self.btf,
                cgroups: Vec::new(),
                kinds: self.events.clone(),
                accept: self.accept_hook,
                cgroup_root: None,
                ports: self.port,
                no_loopback: self.no_loopback,
                dns_ports: self.dns_port,
                file_watch: {
                    let mut w = if self.no_default_file_watch {
                        Vec::new()
                    } else {
                        ksight_core::files::default_watches()
                    };
                    w.extend(self.file_watch);
                    w.extend(self.file_watch_changes);
                    w
                },
                file_watch_containers: self.file_watch_containers,
                policy: None,
                enforce_persist: self.enforce_persist,
                enforce_allow: Vec::new(),
                enforce_answers_max: self.enforce_answers_max,
            },
            cgroups: self.cgroup,
            filter: FilterSpec {
                kinds: self.events.into_iter().collect(),
                pids: self.pid,
                comms: self.comm,
                uids: self.uid,
                containers: self.container,
            },
            sinks: vec![SinkSpec {
                format: self.format,
                color: self.color,
                output: self.output,
            }],
            ancestors: self.ancestors,
            hash: ksight_core::hash::HashConfig {
                enabled: self.hash == HashMode::Sha256,
                max_size: self.hash_max_size,
                rate: self.hash_rate,
            },
            container_meta: !self.no_container_meta,
            grace: self.grace,
            udp_interval: self.udp_interval,
            dns_timeout: self.dns_timeout,
            duration: self.duration,
            poll_interval: self.poll_interval,
            reorder_window: self.reorder_window,
            verbose: self.verbose,
            capture: self.capture,
            rules: match self.no_rules {
                true => RulesSource::Off,
                false => RulesSource::Packs(crate::rules::packs(&self.rules)),
            },
            alerts_only: self.alerts_only,
            enforce: self.enforce,
            outputs: Vec::new(),
            config_file: None,
            metrics: self.metrics,
            host_name: self.host_name,
        }
    }
}

fn events_help() -> String {
    let names: Vec<&str> = Kind::ALL
        .iter()
        .map(|k| k.name())
        .filter(|&n| n != "lost")
        .collect();
    format!(
        "Event kinds to show, comma-separated: {} (default: all but tcp_state; lost events \
         are always shown)",
        names.join(", ")
    )
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    match s.parse::<Kind>()? {
        k if k.name() == "lost" => Err("lost events are always shown".into()),
        k => Ok(k),
    }
}

pub use ksight_output::units::parse_bytes;

/// A duration ("20ms", "5s", "1h") from MIN to MAX ns, both included.
pub fn duration_between<const MIN: u64, const MAX: u64>(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as 20ms or 5s: {e}"))?;
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if ns < MIN || ns > MAX {
        let show = |n: u64| humantime::format_duration(Duration::from_nanos(n)).to_string();
        return Err(if MAX == u64::MAX {
            format!("{s} must be at least {}", show(MIN))
        } else {
            format!("{s} must be between {} and {}", show(MIN), show(MAX))
        });
    }
    Ok(d)
}

/// The hash worker's read rate: at least 64K a second.
fn parse_watch_opens(s: &str) -> Result<WatchEntry, String> {
    WatchEntry::parse(s, true)
}

fn parse_watch_changes(s: &str) -> Result<WatchEntry, String> {
    WatchEntry::parse(s, false)
}

pub fn parse_rate(s: &str) -> Result<u64, String> {
    let bytes = parse_bytes(s)?;
    if bytes < 64 << 10 {
        return Err(format!("{s} must be at least 64K (bytes per second)"));
    }
    Ok(bytes)
}

/// A ring buffer size: "4096", "64K", "8M", a power of two.
pub fn parse_size(s: &str) -> Result<u32, String> {
    let bytes = parse_bytes(s)?;
    if !bytes.is_power_of_two() || !(4096..=1 << 30).contains(&bytes) {
        return Err(format!("{s} must be a power of two between 4K and 1G"));
    }
    Ok(bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates_are_bounded() {
        type P = fn(&str) -> Result<Duration, String>;
        let poll: P = duration_between::<1_000_000, 1_000_000_000>;
        assert_eq!(poll("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(poll("0s"), Err("0s must be between 1ms and 1s".into()));
        assert_eq!(poll("2s"), Err("2s must be between 1ms and 1s".into()));
        assert!(poll("soon").unwrap_err().contains("not a duration"));
        let run_for: P = duration_between::<1_000_000, { u64::MAX }>;
        assert_eq!(run_for("0s"), Err("0s must be at least 1ms".into()));
        assert!(run_for("300days").is_ok());
        assert!(parse_rate("1K").is_err());
        assert_eq!(parse_rate("1M"), Ok(1 << 20));
        for args in [
            &["ksight", "run", "--poll-interval", "0s"][..],
            &["ksight", "run", "--dns-timeout", "1ms"],
            &["ksight", "run", "--argv-max", "10"],
            &["ksight", "run", "--grace", "2h"],
            &["ksight", "run", "--hash-rate", "0"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("3M").is_err());
        assert!(parse_size("17179869185G").is_err(), "no wrap-around");
        assert!(parse_size("1K").is_err());
        assert!(parse_size("x").is_err());
    }

    #[test]
    fn later_flags_override_earlier_ones_and_lists_accumulate() {
        let cli = Cli::try_parse_from([
            "ksight", "run", "--format", "json", "--format", "table", "--pid", "1", "--pid", "2,3",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("parsed as run")
        };
        assert_eq!(args.format, Format::Table);
        assert_eq!(args.pid, [1, 2, 3]);
    }

    #[test]
    fn kinds() {
        assert_eq!(parse_kind("exec").map(Kind::name), Ok("exec"));
        assert!(parse_kind("lost").is_err());
        assert!(parse_kind("nope")
            .unwrap_err()
            .contains("expected one of exec, fork"));
    }

    #[test]
    fn hook_names_are_the_documented_ones() {
        let cli = Cli::try_parse_from([
            "ksight",
            "run",
            "--attach",
            "raw_tp",
            "--accept-hook",
            "kretprobe",
            "--transport",
            "perf",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("parsed as run")
        };
        let cfg = args.config();
        assert_eq!(cfg.agent.attach, AttachMode::RawTp);
        assert_eq!(cfg.agent.accept, AcceptHook::Kretprobe);
        assert_eq!(cfg.agent.transport, TransportMode::Perf);
    }
}
