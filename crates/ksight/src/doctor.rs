//! `ksight doctor`: can this kernel run ksight, what each finding means, and how to fix it.
//!
//! Three layers, each a list of findings: the host's files (ksight-core's
//! `doctor::host_checks`, which also run on fixture trees via `--root`), real
//! probes of program types, maps, helpers and hook attachment (ksight-bpf's
//! `probe`), and ksight's own programs loaded without attaching. The features
//! table and the exit code follow from the last two:
//! 0 = ksight runs fully, 1 = it runs degraded, 2 = it cannot run.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use ksight_bpf::agent::AttachMode;
use ksight_bpf::probe::{self, Hook, Outcome};
use ksight_bpf::TransportMode;
use ksight_core::cgroup::cgroup2_mount;
use ksight_core::doctor::{host_checks_with, parse_release, Finding, Status};
use serde::Serialize;

use crate::cli::Color;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorFormat {
    Table,
    Json,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureState {
    Active,
    Degraded,
    Unavailable,
}

#[derive(Debug, Clone, Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub state: FeatureState,
    pub detail: String,
}

#[derive(Debug, Serialize)]
struct Report {
    v: u32,
    kernel: String,
    findings: Vec<Finding>,
    features: Vec<Feature>,
    /// "full", "degraded" or "cannot_run".
    verdict: &'static str,
    exit_code: u8,
}

fn finding(
    id: String,
    group: &'static str,
    title: String,
    status: Status,
    detail: String,
    meaning: &str,
    fix: Option<&str>,
) -> Finding {
    Finding {
        id,
        group,
        title,
        status,
        detail,
        meaning: meaning.to_string(),
        fix: fix.map(str::to_string),
    }
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Works => "works".into(),
        Outcome::Refused {
            errno: Some(e),
            message,
        } => format!("refused: {e} ({message})"),
        Outcome::Refused {
            errno: None,
            message,
        } => format!("refused: {message}"),
    }
}

/// What a refused hook means for ksight, by hook: (status when refused, meaning, fix).
fn hook_consequence(
    hook: Hook,
    errno: Option<&str>,
) -> (Status, &'static str, Option<&'static str>) {
    let lockdown = "EPERM as root comes from kernel policy: lockdown (see the hardening group) or an LSM; ksight needs none of these hooks, so nothing needs fixing for it";
    match hook {
        Hook::TpBtf => (
            Status::Warn,
            "ksight's process hooks fall back to raw tracepoints: same events, slightly more overhead per event",
            Some("use a kernel with BTF (CONFIG_DEBUG_INFO_BTF=y, 5.5+)"),
        ),
        Hook::RawTracepoint => (
            Status::Fail,
            "without raw tracepoints (or tp_btf) ksight cannot observe process events",
            Some("raw tracepoints need kernel 4.17+ with CONFIG_BPF_EVENTS=y"),
        ),
        Hook::Tracepoint => (
            Status::Info,
            "ksight does not use classic tracepoints (tp_btf/raw_tp need no tracefs)",
            Some("classic tracepoints need tracefs: mount -t tracefs nodev /sys/kernel/tracing"),
        ),
        Hook::Kprobe => (
            Status::Info,
            if errno == Some("ENOENT") {
                "kprobes are absent (CONFIG_KPROBES unset): ksight's accept() hook cannot use a kretprobe (it prefers fexit)"
            } else {
                "kprobes are refused: ksight's accept() hook cannot use a kretprobe (it prefers fexit)"
            },
            None,
        ),
        Hook::Fentry => (
            Status::Info,
            "fentry/fexit are refused: ksight's accept() hook falls back to a kretprobe, or is off (see accept attribution)",
            (errno == Some("EPERM")).then_some(lockdown),
        ),
        Hook::Lsm => (
            Status::Info,
            "BPF LSM programs are refused; ksight does not use them",
            (errno == Some("EPERM")).then_some(lockdown),
        ),
        Hook::Uprobe => (
            Status::Warn,
            "uprobes are refused: ksight's application-level DNS view (getaddrinfo) needs them",
            Some("enable CONFIG_UPROBE_EVENTS"),
        ),
        Hook::Cgroup => (
            Status::Warn,
            "cgroup socket hooks are refused: ksight's network and DNS capture need them",
            Some("enable CONFIG_CGROUP_BPF and mount cgroup v2"),
        ),
        Hook::TaskIter => (
            Status::Info,
            "task iterators are refused; ksight reads /proc instead",
            None,
        ),
    }
}

fn probe_findings(cgroup2: Option<&Path>) -> Vec<Finding> {
    let mut out = Vec::new();
    for h in probe::hooks(cgroup2) {
        let outcome = match &h.attach {
            Some(a) => a.clone(),
            None => h.load.clone(),
        };
        let stage = if h.attach.is_none() { "load" } else { "attach" };
        let id = format!("hook.{}", h.hook.name());
        let title = format!("{} hook", h.hook.name());
        let detail = format!("{}: {} ({stage})", h.target, describe(&outcome));
        out.push(match &outcome {
            Outcome::Works => finding(
                id,
                "probes",
                title,
                Status::Ok,
                detail,
                "loads and attaches on this kernel",
                None,
            ),
            Outcome::Refused { errno, .. } => {
                let (status, meaning, fix) = hook_consequence(h.hook, *errno);
                finding(id, "probes", title, status, detail, meaning, fix)
            }
        });
    }
    let support = probe::support();
    for (name, o) in &support.map_types {
        let (status, meaning, fix) = match (*name, o.works()) {
            (_, true) => (Status::Ok, "available", None),
            ("ringbuf", false) => (
                Status::Warn,
                "no BPF ring buffer (5.8+): ksight uses per-CPU perf buffers and merges them by time, with a few ms more latency and more CPU per event",
                Some("kernel 5.8 or newer"),
            ),
            ("perf_event_array", false) => (
                Status::Fail,
                "no perf buffer: without a ring buffer either, ksight cannot deliver events",
                None,
            ),
            ("cgroup_array", false) => (
                Status::Warn,
                "--cgroup cannot be decided in the kernel",
                None,
            ),
            _ => (Status::Info, "not used by ksight today", None),
        };
        out.push(finding(
            format!("map.{name}"),
            "probes",
            format!("{name} map"),
            status,
            describe(o),
            meaning,
            fix,
        ));
    }
    for (name, o) in &support.prog_types {
        out.push(finding(
            format!("prog.{}", name.split(' ').next().unwrap_or(name)),
            "probes",
            format!("{name} programs"),
            if o.works() { Status::Ok } else { Status::Info },
            describe(o),
            if o.works() {
                "this program type loads"
            } else {
                "this program type is unavailable; the hook table above says what that costs ksight"
            },
            None,
        ));
    }
    for (name, o) in &support.helpers {
        let (status, meaning) = match (*name, o.works()) {
            (_, true) => (Status::Ok, "available to tracing programs"),
            ("bpf_ringbuf_output" | "bpf_ringbuf_query", false) => (
                Status::Warn,
                "no ring buffer helpers: the perf buffer is used",
            ),
            ("bpf_current_task_under_cgroup", false) => {
                (Status::Warn, "--cgroup cannot be decided in the kernel")
            }
            ("bpf_perf_event_output" | "bpf_get_current_task" | "bpf_ktime_get_ns", false) => {
                (Status::Fail, "ksight's programs call it")
            }
            _ => (
                Status::Info,
                "not required (libbpf falls back where it can)",
            ),
        };
        out.push(finding(
            format!("helper.{name}"),
            "probes",
            name.to_string(),
            status,
            describe(o),
            meaning,
            None,
        ));
    }
    out
}

/// Load ksight's own programs in each configuration and derive the features.
fn features(findings: &mut Vec<Finding>) -> Vec<Feature> {
    let loads = probe::own_programs();
    let works = |a: AttachMode, t: TransportMode| {
        loads
            .iter()
            .any(|l| l.attach == a && l.transport == t && l.outcome.works())
    };
    for l in &loads {
        let detail = match &l.detail {
            None => "loads (not attached)".to_string(),
            Some(d) => d.clone(),
        };
        findings.push(finding(
            format!("load.process.{}.{}", l.attach, l.transport),
            "ksight programs",
            format!("process programs via {} + {}", l.attach, l.transport),
            if l.outcome.works() {
                Status::Ok
            } else {
                Status::Info
            },
            detail,
            "ksight's own fork/exec/exit programs, verified by this kernel",
            None,
        ));
        if let (AttachMode::TpBtf, Some((outcome, detail))) = (l.attach, &l.udp) {
            findings.push(finding(
                format!("load.udp.{}", l.transport),
                "ksight programs",
                format!("UDP/DNS programs via {}", l.transport),
                if outcome.works() { Status::Ok } else { Status::Info },
                detail.clone().unwrap_or_else(|| "loads (not attached)".into()),
                "ksight's UDP flow and DNS programs (cgroup_skb, cgroup sock), verified by this kernel",
                None,
            ));
        }
        if let Some((outcome, detail)) = &l.net {
            findings.push(finding(
                format!("load.net.{}.{}", l.attach, l.transport),
                "ksight programs",
                format!("network programs via {} + {}", l.attach, l.transport),
                if outcome.works() {
                    Status::Ok
                } else {
                    Status::Info
                },
                detail
                    .clone()
                    .unwrap_or_else(|| "loads (not attached)".into()),
                "ksight's TCP programs (inet_sock_set_state), verified by this kernel",
                None,
            ));
        }
        if let Some(accept) = &l.accept {
            findings.push(finding(
                format!("load.accept.{}.{}", l.attach, l.transport),
                "ksight programs",
                format!("accept() hook with {} + {}", l.attach, l.transport),
                if accept.is_ok() {
                    Status::Ok
                } else {
                    Status::Info
                },
                match accept {
                    Ok(flavour) => format!("attaches via {flavour}"),
                    Err(why) => why.clone(),
                },
                "ksight's accept() hook (inet_csk_accept: fexit, else kretprobe), attached for a moment",
                None,
            ));
        }
    }
    let mut out = Vec::new();
    let best = [
        (AttachMode::TpBtf, TransportMode::Ringbuf),
        (AttachMode::RawTp, TransportMode::Ringbuf),
        (AttachMode::TpBtf, TransportMode::Perf),
        (AttachMode::RawTp, TransportMode::Perf),
    ]
    .into_iter()
    .find(|&(a, t)| works(a, t));
    out.push(match best {
        Some((AttachMode::TpBtf, TransportMode::Ringbuf)) => Feature {
            name: "process events",
            state: FeatureState::Active,
            detail: "fork, exec, exit via tp_btf, delivered through the ring buffer".into(),
        },
        Some((a, t)) => Feature {
            name: "process events",
            state: FeatureState::Degraded,
            detail: format!(
                "via {a} and the {t} buffer{}{}",
                if a == AttachMode::RawTp { "; tp_btf refused" } else { "" },
                if t == TransportMode::Perf {
                    "; no ring buffer: per-CPU buffers merged by time (+ --reorder-window latency)"
                } else {
                    ""
                }
            ),
        },
        None => Feature {
            name: "process events",
            state: FeatureState::Unavailable,
            detail: "the kernel refused every configuration of ksight's programs (see the ksight programs findings)".into(),
        },
    });
    let net_works = |a: AttachMode, t: TransportMode| {
        loads.iter().any(|l| {
            l.attach == a && l.transport == t && l.net.as_ref().is_some_and(|(o, _)| o.works())
        })
    };
    out.push(match best {
        Some((a, t)) if net_works(a, t) => Feature {
            name: "TCP events",
            state: FeatureState::Active,
            detail: format!("connect, accept, listen, tcp_close, tcp_state via {a}"),
        },
        _ => Feature {
            name: "TCP events",
            state: FeatureState::Unavailable,
            detail: "the kernel refused the network programs (see the ksight programs findings)"
                .into(),
        },
    });
    // the accept() hook of the configuration ksight would run
    let accept = best.and_then(|(a, t)| {
        loads
            .iter()
            .find(|l| l.attach == a && l.transport == t)
            .and_then(|l| l.accept.clone())
    });
    out.push(match (best, accept) {
        (Some((a, t)), Some(Ok(flavour))) if net_works(a, t) => Feature {
            name: "accept attribution",
            state: FeatureState::Active,
            detail: format!(
                "an accepted connection names the process that called accept() \
                 (hook: {flavour} on inet_csk_accept)"
            ),
        },
        (Some((a, t)), Some(Err(_))) if net_works(a, t) => Feature {
            name: "accept attribution",
            state: FeatureState::Degraded,
            detail: "an accepted connection names the listening socket's owner, and \
                     connections on listeners opened before ksight started are missed: no \
                     accept() hook (fexit needs BTF and no lockdown, kretprobe CONFIG_KPROBES; \
                     the load.accept findings say why)"
                .into(),
        },
        _ => Feature {
            name: "accept attribution",
            state: FeatureState::Unavailable,
            detail: "no TCP events".into(),
        },
    });
    let udp_works = |t: TransportMode| {
        loads
            .iter()
            .any(|l| l.transport == t && l.udp.as_ref().is_some_and(|(o, _)| o.works()))
    };
    let udp_reason = loads
        .iter()
        .find_map(|l| match &l.udp {
            Some((Outcome::Refused { message, .. }, _)) => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_default();
    for (name, what) in [
        ("UDP flows", "per-flow packet and byte counts"),
        ("DNS events", "queries, answers and latency over UDP"),
    ] {
        out.push(match best {
            Some((_, t)) if udp_works(t) => Feature {
                name,
                state: FeatureState::Active,
                detail: what.to_string(),
            },
            _ => Feature {
                name,
                state: FeatureState::Unavailable,
                detail: format!("the kernel refused the UDP programs: {udp_reason}"),
            },
        });
    }
    let cgroup_filter = findings
        .iter()
        .any(|f| f.id == "helper.bpf_current_task_under_cgroup" && f.status == Status::Ok)
        && findings
            .iter()
            .any(|f| f.id == "map.cgroup_array" && f.status == Status::Ok);
    out.push(Feature {
        name: "in-kernel cgroup filter",
        state: if cgroup_filter {
            FeatureState::Active
        } else {
            FeatureState::Unavailable
        },
        detail: if cgroup_filter {
            "--cgroup is decided in the kernel".into()
        } else {
            "--cgroup needs bpf_current_task_under_cgroup and cgroup arrays".into()
        },
    });
    out
}

fn verdict(
    findings: &[Finding],
    features: &[Feature],
    probed: bool,
    version: Option<(u32, u32)>,
) -> (&'static str, u8) {
    let blocking = findings.iter().any(|f| {
        f.status == Status::Fail
            && (f.group == "btf" || f.group == "privileges" || f.id == "lockdown")
    });
    let process = features.iter().find(|f| f.name == "process events");
    if blocking || process.is_some_and(|p| p.state == FeatureState::Unavailable) {
        return ("cannot_run", 2);
    }
    if !probed {
        // without probes, the files and the version are all we know: before
        // 5.8 there is no ring buffer, before 5.5 no tp_btf (fallbacks)
        if findings.iter().any(|f| f.status == Status::Fail) {
            return ("cannot_run", 2);
        }
        return match version {
            Some(v) if v < (5, 8) => ("degraded", 1),
            _ => ("full", 0),
        };
    }
    if features.iter().any(|f| f.state != FeatureState::Active) {
        return ("degraded", 1);
    }
    ("full", 0)
}

pub fn doctor(args: DoctorArgs) -> Result<ExitCode> {
    let real = args.root == Path::new("/");
    // securityfs is often not mounted (containers, minimal VMs): read it privately
    let securityfs = if real {
        ksight_bpf::sys::read_securityfs()
    } else {
        None
    };
    let mut findings = host_checks_with(
        &args.root,
        securityfs.as_ref().map(|(l, s)| (l.as_str(), s.as_str())),
    );
    let mut features = Vec::new();
    let privileged = !findings
        .iter()
        .any(|f| f.group == "privileges" && f.status == Status::Fail);
    let probed = real && privileged;
    if probed {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let cgroup2 = cgroup2_mount(&mountinfo);
        findings.extend(probe_findings(cgroup2.as_deref()));
        features = self::features(&mut findings);
    }
    let kernel = std::fs::read_to_string(args.root.join("proc/sys/kernel/osrelease"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let version = parse_release(&kernel).map(|(a, b, _)| (a, b));
    let (verdict, exit_code) = verdict(&findings, &features, probed, version);
    let report = Report {
        v: 1,
        kernel,
        findings,
        features,
        verdict,
        exit_code,
    };
    let mut out = io::stdout().lock();
    match args.format {
        DoctorFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        DoctorFormat::Table => {
            let color = match args.color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    io::stdout().is_terminal()
                        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                }
            };
            render(&mut out, &report, color, probed)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::from(exit_code))
}

fn render(out: &mut impl Write, r: &Report, color: bool, probed: bool) -> io::Result<()> {
    let paint = |code: &'static str| if color { code } else { "" };
    let reset = paint("\x1b[0m");
    writeln!(out, "ksight doctor: kernel {}", r.kernel)?;
    let mut group = "";
    for f in &r.findings {
        if f.group != group {
            group = f.group;
            writeln!(out, "\n{}{group}{reset}", paint("\x1b[1m"))?;
        }
        let (mark, c) = match f.status {
            Status::Ok => ("✔ ok  ", "\x1b[32m"),
            Status::Info => ("· info", "\x1b[2m"),
            Status::Warn => ("! warn", "\x1b[33m"),
            Status::Fail => ("✘ fail", "\x1b[31m"),
        };
        let detail = f.detail.lines().next().unwrap_or_default();
        writeln!(out, "  {}{mark}{reset}  {:<34} {detail}", paint(c), f.title)?;
        if f.status >= Status::Warn {
            writeln!(
                out,
                "          {}means:{reset} {}",
                paint("\x1b[2m"),
                f.meaning
            )?;
            if let Some(fix) = &f.fix {
                writeln!(out, "          {}fix:{reset}   {fix}", paint("\x1b[2m"))?;
            }
        }
    }
    if probed {
        writeln!(out, "\n{}features{reset}", paint("\x1b[1m"))?;
        for f in &r.features {
            let (word, c) = match f.state {
                FeatureState::Active => ("active     ", "\x1b[32m"),
                FeatureState::Degraded => ("degraded   ", "\x1b[33m"),
                FeatureState::Unavailable => ("unavailable", "\x1b[31m"),
            };
            writeln!(
                out,
                "  {}{word}{reset}  {:<24} {}",
                paint(c),
                f.name,
                f.detail
            )?;
        }
    } else {
        writeln!(
            out,
            "\n(real probes skipped: {})",
            if r.exit_code == 2 {
                "checks above already rule ksight out, or no privileges"
            } else {
                "--root is not / or no privileges"
            }
        )?;
    }
    let says = match r.verdict {
        "full" if probed => "ksight can run fully here",
        "full" => "nothing in these files stops ksight; real probes decide on the host itself",
        "degraded" if probed => "ksight runs here, degraded (see features)",
        "degraded" => "ksight runs here degraded: this kernel predates the ring buffer (5.8), so records go through the perf buffer; real probes decide on the host itself",
        "cannot_run" => "ksight cannot run here (see the failures above)",
        _ => "files checked; run as root on the host itself for the full answer",
    };
    writeln!(out, "\nverdict: {says} (exit {})", r.exit_code)
}
