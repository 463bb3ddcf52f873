//! `ksight bench overhead`: what ksight costs the workloads of the host it watches.
//!
//! Each workload (`workload.rs`) runs as a child process inside a network
//! namespace of the benchmark's own (loopback, with dnsmasq answering on
//! 127.0.0.1:53 and an /etc/netns resolv.conf pointing at it), alternately in
//! four configurations: no ksight (baseline), ksight writing full JSON to
//! /dev/null, ksight writing to a file, and the floor: ksight's hooks with
//! programs that return at once. Runs rotate (A B C D, B C D A, ...); each
//! cell is the median with its spread; the time and workload CPU added per
//! operation are paired: each run minus the baseline run of the same rotation,
//! median and spread of those differences. For ksight runs it also records the
//! events it wrote and lost (from its summary), its CPU time during the
//! workload, peak RSS, time to attach, and each BPF program's run count and
//! run time (kernel.bpf_stats_enabled, restored afterwards).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ksight_bpf::bench::Floor;
use serde_json::json;

use super::{hold_cpu_awake, machine, median, si};
use crate::cli::bench::{OverheadArgs, Workload};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Setup {
    Baseline,
    /// --breakdown: only some objects, to see where each one's cost lands.
    Process,
    Tcp,
    UdpDns,
    Ksight,
    /// The default run with getaddrinfo probes in every process (`--getaddrinfo all`).
    GaiAll,
    /// The same, without detection rules: what the rules add.
    KsightNoRules,
    KsightFile,
    /// ksight with 1,000 deny entries, a deny_domain and a kill rule loaded (--enforcement).
    Enforce,
    Floor,
}

/// The rules `Setup::Enforce` loads beside the shipped ones.
const ENFORCE_RULES: &str = "/tmp/ksight-bench-enforce-rules";

/// A deny_connect rule with `n` /32 destinations in 10.0.0.0/8 (no workload
/// connects there): the cost of the lookups on every connect and sendto.
fn enforce_rules(n: usize) -> String {
    let nets: Vec<String> = (0..n)
        .map(|i| format!("10.{}.{}.1/32", i / 250, i % 250))
        .collect();
    // and one rule of each other kernel action, so that every enforcement
    // program runs (the answers hook per packet, the kill hook per exec):
    // names and a directory no workload touches
    format!(
        "- rule: bench_deny\n  description: bench\n  action: deny_connect\n  \
         condition: net.remote.addr in cidr({})\n  severity: low\n  output: bench\n\
         - rule: bench_deny_domain\n  description: bench\n  action: deny_domain\n  \
         condition: net.remote_name glob \"*.ksight-bench.invalid\"\n  severity: low\n  output: bench\n\
         - rule: bench_kill\n  description: bench\n  action: kill\n  \
         condition: process.exe startswith \"{ENFORCE_RULES}/\"\n  severity: low\n  output: bench\n",
        nets.join(", ")
    )
}

impl Setup {
    const ALL: [Setup; 5] = [
        Setup::Baseline,
        Setup::Ksight,
        Setup::KsightNoRules,
        Setup::KsightFile,
        Setup::Floor,
    ];
    /// One object more at each step: process (and signal), + TCP, + UDP and
    /// DNS, + getaddrinfo (the default run, lazy probes), and the probes in
    /// every process instead.
    const BREAKDOWN: [Setup; 7] = [
        Setup::Baseline,
        Setup::Process,
        Setup::Tcp,
        Setup::UdpDns,
        Setup::Ksight,
        Setup::GaiAll,
        Setup::Floor,
    ];
    const ENFORCEMENT: [Setup; 3] = [Setup::Baseline, Setup::Ksight, Setup::Enforce];

    fn name(self) -> &'static str {
        match self {
            Setup::Baseline => "baseline",
            Setup::Ksight => "ksight",
            Setup::KsightNoRules => "ks no rules",
            Setup::KsightFile => "ksight>file",
            Setup::Process => "ks process",
            Setup::Tcp => "ks +tcp",
            Setup::UdpDns => "ks +udp/dns",
            Setup::GaiAll => "ks gai=all",
            Setup::Enforce => "ks +1k deny",
            Setup::Floor => "floor",
        }
    }

    /// `ksight run` arguments beyond the common ones; None: no agent.
    fn args(self) -> Option<&'static [&'static str]> {
        const PROCESS: &str = "exec,fork,exit,signal";
        Some(match self {
            Setup::Baseline | Setup::Floor => return None,
            Setup::Ksight | Setup::KsightFile => &[],
            Setup::KsightNoRules => &["--no-rules"],
            Setup::GaiAll => &["--getaddrinfo", "all"],
            Setup::Enforce => &["--rules", "default", "--rules", ENFORCE_RULES, "--enforce"],
            Setup::Process => &["--events", PROCESS],
            Setup::Tcp => &[
                "--events",
                "exec,fork,exit,signal,connect,accept,listen,tcp_close",
            ],
            Setup::UdpDns => &[
                "--events",
                "exec,fork,exit,signal,connect,accept,listen,tcp_close,udp,dns",
            ],
        })
    }
}

fn base_count(w: Workload) -> f64 {
    match w {
        Workload::Exec => 1000.0,
        Workload::Connect => 3000.0,
        Workload::Dns => 5000.0,
        Workload::Gai => 2000.0,
        Workload::Syscall => 5_000_000.0,
        Workload::Files => 20_000.0,
    }
}

/// The benchmark's network namespace with its resolver; removed when dropped.
struct Env {
    ns: String,
    resolv_dir: PathBuf,
    dnsmasq: Child,
}

impl Env {
    fn new() -> Result<Env> {
        let ns = format!("ksbench-{}", std::process::id());
        let ip = |args: &[&str]| -> Result<()> {
            let st = Command::new("ip")
                .args(args)
                .status()
                .context("running ip (iproute2)")?;
            if !st.success() {
                bail!("ip {args:?} failed");
            }
            Ok(())
        };
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        // `ip netns exec` bind-mounts this over /etc/resolv.conf for getaddrinfo
        let resolv_dir = PathBuf::from("/etc/netns").join(&ns);
        std::fs::create_dir_all(&resolv_dir)?;
        std::fs::write(
            resolv_dir.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions attempts:1\n",
        )?;
        let dnsmasq = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
            ])
            .args([
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--user=root",
            ])
            .args([
                "--address=/bench.ksight.test/10.9.9.9",
                "--pid-file",
                "--log-facility=/dev/null",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dnsmasq (apt-get install dnsmasq-base)")?;
        let env = Env {
            ns,
            resolv_dir,
            dnsmasq,
        };
        // ready when it answers
        let deadline = Instant::now() + Duration::from_secs(5);
        while env.workload(Workload::Dns, 1).is_err() {
            if Instant::now() > deadline {
                bail!("dnsmasq did not answer on 127.0.0.1:53 in the benchmark namespace");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(env)
    }

    /// Run a workload in the namespace: its operations per second, and its
    /// own CPU per operation (µs).
    fn workload(&self, w: Workload, count: u64) -> Result<(f64, f64)> {
        let me = std::env::current_exe()?;
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(me)
            .args(["bench", "workload", w.name(), "--count", &count.to_string()])
            .stderr(Stdio::piped())
            .output()?;
        if !out.status.success() {
            bail!(
                "workload {} failed: {}",
                w.name(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let (ops, secs, cpu) = (
            v["ops"].as_f64().unwrap_or(0.0),
            v["secs"].as_f64().unwrap_or(0.0),
            v["cpu"].as_f64().unwrap_or(0.0),
        );
        Ok((ops / secs.max(1e-9), cpu * 1e6 / ops.max(1.0)))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.dnsmasq.kill();
        let _ = self.dnsmasq.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.resolv_dir);
    }
}

/// kernel.bpf_stats_enabled on for the benchmark, restored when dropped.
struct BpfStats(Option<String>);

impl BpfStats {
    const PATH: &'static str = "/proc/sys/kernel/bpf_stats_enabled";

    fn enable() -> BpfStats {
        let old = std::fs::read_to_string(Self::PATH).ok();
        let _ = std::fs::write(Self::PATH, "1");
        BpfStats(old)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = std::fs::write(Self::PATH, old.trim());
        }
    }
}

/// A running `ksight run`.
struct Agent {
    child: Child,
    start_ms: f64,
    prog_ids: Vec<u32>,
    stderr: std::thread::JoinHandle<String>,
}

fn parse_ids(line: &str) -> Vec<u32> {
    line.split("prog ids [")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_default()
}

impl Agent {
    fn start(output: &Path, extra: &[&str]) -> Result<Agent> {
        let t = Instant::now();
        let mut child = Command::new(std::env::current_exe()?)
            .args(["run", "--format", "json", "-v", "-o"])
            .arg(output)
            // the `files` workload's directory: opens and changes reported
            .args(["--file-watch", super::workload::FILES_DIR])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let mut prog_ids = Vec::new();
        loop {
            let Some(Ok(line)) = lines.next() else {
                bail!("ksight exited before attaching");
            };
            if line.contains("prog ids") {
                prog_ids = parse_ids(&line);
            }
            if line.starts_with("ksight: watching") {
                break;
            }
        }
        let start_ms = t.elapsed().as_secs_f64() * 1e3;
        let stderr =
            std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
        Ok(Agent {
            child,
            start_ms,
            prog_ids,
            stderr,
        })
    }

    /// CPU time so far, in ns, from the scheduler's own accounting
    /// (/proc/PID/schedstat: exact, where /proc/PID/stat counts 10 ms ticks).
    /// ksight's work happens on its main thread.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/schedstat", self.child.id()))
            .unwrap_or_default();
        let ns = stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Duration::from_nanos(ns)
    }

    fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Run count and run time of each of its programs so far.
    fn prog_stats(&self) -> Vec<(String, u64, u64)> {
        ksight_bpf::bench::prog_stats(&self.prog_ids)
    }

    /// Stop it; events written and lost by kind, from its summary.
    fn stop(mut self) -> Result<(BTreeMap<String, u64>, u64)> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait()?;
        let stderr = self.stderr.join().unwrap_or_default();
        let summary = stderr
            .lines()
            .find(|l| l.starts_with("ksight: stopped"))
            .context("no summary from ksight")?
            .to_string();
        let mut events = BTreeMap::new();
        if let Some(written) = summary
            .split("events written (")
            .nth(1)
            .and_then(|s| s.split(')').next())
        {
            for kv in written.split(", ") {
                if let Some((k, v)) = kv.split_once(' ') {
                    if let Ok(n) = v.parse::<u64>() {
                        if n > 0 && k != "lost" {
                            events.insert(k.to_string(), n);
                        }
                    }
                }
            }
        }
        let lost = summary
            .split(" lost (")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok((events, lost))
    }
}

#[derive(Debug, Default, Clone)]
struct Sample {
    rate: f64,
    /// The workload's own CPU per operation, µs.
    wl_cpu_us: f64,
    events: BTreeMap<String, u64>,
    lost: u64,
    cpu_us_per_1k: f64,
    rss_kib: u64,
    start_ms: f64,
    progs: Vec<(String, u64, u64)>,
}

fn one_run(env: &Env, setup: Setup, w: Workload, count: u64, cgroup_root: &Path) -> Result<Sample> {
    let Some(extra) = setup.args() else {
        // no agent: nothing, or the floor's no-op programs
        let floor = match setup {
            Setup::Floor => {
                Some(Floor::attach(cgroup_root).context("attaching the floor programs")?)
            }
            _ => None,
        };
        let (rate, wl_cpu_us) = env.workload(w, count)?;
        drop(floor);
        return Ok(Sample {
            rate,
            wl_cpu_us,
            ..Sample::default()
        });
    };
    let out = if setup == Setup::KsightFile {
        std::env::temp_dir().join(format!("ksight-bench-{}.jsonl", std::process::id()))
    } else {
        PathBuf::from("/dev/null")
    };
    let agent = Agent::start(&out, extra)?;
    let cpu0 = agent.cpu();
    let (rate, wl_cpu_us) = env.workload(w, count)?;
    // let the last records reach it before reading its CPU time
    std::thread::sleep(Duration::from_millis(50));
    let cpu = agent.cpu().saturating_sub(cpu0);
    let (rss_kib, start_ms, progs) = (agent.peak_rss_kib(), agent.start_ms, agent.prog_stats());
    let (events, lost) = agent.stop()?;
    if setup == Setup::KsightFile {
        let _ = std::fs::remove_file(&out);
    }
    let total: u64 = events.values().sum();
    Ok(Sample {
        rate,
        wl_cpu_us,
        events,
        lost,
        cpu_us_per_1k: cpu.as_secs_f64() * 1e6 / (total.max(1) as f64 / 1000.0),
        rss_kib,
        start_ms,
        progs,
    })
}

pub fn overhead(a: OverheadArgs) -> Result<()> {
    if a.runs == 0 || a.scale <= 0.0 {
        bail!("--runs and --scale must be positive");
    }
    // watched by every agent setup (`--file-watch`): made before any starts
    std::fs::create_dir_all(super::workload::FILES_DIR)?;
    let workloads = if a.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        a.workloads.clone()
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let cgroup_root =
        ksight_core::cgroup::cgroup2_mount(&mountinfo).context("no cgroup v2 mount")?;
    let setups: &[Setup] = if a.breakdown {
        &Setup::BREAKDOWN
    } else if a.enforcement {
        std::fs::create_dir_all(ENFORCE_RULES)?;
        std::fs::write(
            Path::new(ENFORCE_RULES).join("bench.yaml"),
            enforce_rules(1000),
        )?;
        &Setup::ENFORCEMENT
    } else {
        &Setup::ALL
    };
    let _awake = hold_cpu_awake();
    let _stats = BpfStats::enable();
    let env = Env::new()?;
    let machine = machine();
    eprintln!(
        "ksight bench overhead: {} workloads x {} setups x {} runs, scale {}, on {} ({} CPUs, kernel {})",
        workloads.len(),
        setups.len(),
        a.runs,
        a.scale,
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cpus"],
        machine["kernel"].as_str().unwrap_or("?")
    );
    println!(
        "{:<8} {:<12} {:>26} {:>6} {:>20} {:>8} {:>6}  {:<34} {:>9} {:>8} {:>8}",
        "workload",
        "setup",
        "ops/s median (min-max)",
        "ratio",
        "+µs/op paired (min..max)",
        "+wl cpu",
        "lost",
        "events (by kind)",
        "cpu µs/ev",
        "rss MiB",
        "start ms"
    );
    let mut doc = Vec::new();
    let mut prog_rows = Vec::new();
    for &w in &workloads {
        let count = (base_count(w) * a.scale).ceil().max(1.0) as u64;
        let mut samples: BTreeMap<Setup, Vec<Sample>> = BTreeMap::new();
        for rep in 0..a.runs {
            for k in 0..setups.len() {
                let setup = setups[(rep + k) % setups.len()];
                let s = one_run(&env, setup, w, count, &cgroup_root)
                    .with_context(|| format!("{} with {}", w.name(), setup.name()))?;
                samples.entry(setup).or_default().push(s);
            }
        }
        let base = median(samples[&Setup::Baseline].iter().map(|s| s.rate).collect()).0;
        let baseline = &samples[&Setup::Baseline];
        for (setup, ss) in &samples {
            let (rate, lo, hi) = median(ss.iter().map(|s| s.rate).collect());
            // paired: each run against the baseline run of its own rotation,
            // minutes apart at most, so the VM's slow drift cancels out
            let (added_us, added_lo, added_hi) = median(
                ss.iter()
                    .zip(baseline)
                    .map(|(s, b)| 1e6 / s.rate - 1e6 / b.rate)
                    .collect(),
            );
            let (added_cpu, _, _) = median(
                ss.iter()
                    .zip(baseline)
                    .map(|(s, b)| s.wl_cpu_us - b.wl_cpu_us)
                    .collect(),
            );
            let lost: u64 = ss.iter().map(|s| s.lost).sum();
            let events = ss.last().map(|s| s.events.clone()).unwrap_or_default();
            let ev_text = events
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let is_ks = setup.args().is_some();
            let wl_cpu = median(ss.iter().map(|s| s.wl_cpu_us).collect()).0;
            let cpu = median(ss.iter().map(|s| s.cpu_us_per_1k / 1000.0).collect()).0;
            let rss = ss.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0;
            let start = median(ss.iter().map(|s| s.start_ms).collect()).0;
            println!(
                "{:<8} {:<12} {:>26} {:>6.3} {:>20} {:>8} {:>6}  {:<34} {:>9} {:>8} {:>8}",
                w.name(),
                setup.name(),
                format!("{} ({}-{})", si(rate), si(lo), si(hi)),
                rate / base,
                if *setup == Setup::Baseline {
                    "".into()
                } else {
                    format!("{added_us:+.1} ({added_lo:+.0}..{added_hi:+.0})")
                },
                if *setup == Setup::Baseline {
                    format!("({wl_cpu:.1})")
                } else {
                    format!("{added_cpu:+.1}")
                },
                if is_ks { lost.to_string() } else { "".into() },
                if is_ks { ev_text.clone() } else { "".into() },
                if is_ks {
                    format!("{cpu:.2}")
                } else {
                    "".into()
                },
                if is_ks {
                    format!("{rss:.1}")
                } else {
                    "".into()
                },
                if is_ks {
                    format!("{start:.0}")
                } else {
                    "".into()
                },
            );
            // every program under ksight; under enforcement, its own
            if matches!(setup, Setup::Ksight | Setup::Enforce) {
                let mut names: Vec<String> = ss
                    .iter()
                    .flat_map(|s| s.progs.iter().map(|p| p.0.clone()))
                    .filter(|n| *setup == Setup::Ksight || n.starts_with("ks_enf_"))
                    .collect();
                names.sort();
                names.dedup();
                for name in names {
                    let per: Vec<(u64, u64)> = ss
                        .iter()
                        .filter_map(|s| s.progs.iter().find(|p| p.0 == name).map(|p| (p.1, p.2)))
                        .collect();
                    let runs_per_op =
                        median(per.iter().map(|p| p.0 as f64 / count as f64).collect()).0;
                    let ns_per_run =
                        median(per.iter().map(|p| p.1 as f64 / p.0.max(1) as f64).collect()).0;
                    prog_rows.push((w.name(), name, runs_per_op, ns_per_run));
                }
            }
            doc.push(json!({
                "workload": w.name(), "setup": setup.name(), "count": count,
                "ops_per_s": {"median": rate, "min": lo, "max": hi},
                "ratio": rate / base,
                "added_us_per_op": {"median": added_us, "min": added_lo, "max": added_hi},
                "workload_cpu_us_per_op": wl_cpu, "added_workload_cpu_us_per_op": added_cpu,
                "lost": lost, "events": events,
                "cpu_us_per_event": is_ks.then_some(cpu), "peak_rss_mib": is_ks.then_some(rss),
                "start_ms": is_ks.then_some(start),
                "runs": ss.iter().map(|s| s.rate).collect::<Vec<_>>(),
            }));
        }
    }
    println!("\nBPF programs under the ksight setup (kernel.bpf_stats_enabled): medians over runs");
    println!(
        "{:<8} {:<18} {:>10} {:>10}",
        "workload", "program", "runs/op", "ns/run"
    );
    for (w, name, runs, ns) in &prog_rows {
        println!("{w:<8} {name:<18} {runs:>10.2} {ns:>10.0}");
    }
    if let Some(path) = &a.json {
        let programs: Vec<_> = prog_rows
            .iter()
            .map(|(w, n, r, ns)| json!({"workload": w, "program": n, "runs_per_op": r, "ns_per_run": ns}))
            .collect();
        let full = json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "machine": machine, "results": doc, "programs": programs,
        });
        std::fs::write(path, serde_json::to_string_pretty(&full)? + "\n")?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
