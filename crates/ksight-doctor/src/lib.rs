//! `ksight doctor`: can this kernel run ksight, what each finding means, and how to fix it.
//!
//! Three layers, each a list of [`Finding`]s: the host's files ([`host`], which
//! also runs on fixture trees via `--root`), real probes of program types,
//! maps, helpers and hook attachment ([`probes`], through ksight-bpf's
//! `probe`), and ksight's own sensors loaded without attaching ([`features`]).
//! The features table and the exit code follow from the last two:
//! 0 = ksight runs fully, 1 = it runs degraded, 2 = it cannot run.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use ksight_core::cgroup::cgroup2_mount;
use ksight_core::sink::Color;
use serde::Serialize;

pub mod features;
pub mod host;
pub mod probes;

pub use features::{Feature, FeatureState};

/// How a finding bears on ksight. The order is severity, so `max()` over findings is the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Info,
    Warn,
    Fail,
}

/// One check's outcome, written for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable machine key, e.g. "kernel.release", "config.CONFIG_BPF_SYSCALL", "mount.bpffs".
    pub id: String,
    /// "kernel" | "btf" | "config" | "hardening" | "privileges" | "mounts".
    pub group: &'static str,
    /// Short human label.
    pub title: String,
    pub status: Status,
    /// What was seen: the value read and the file it came from.
    pub detail: String,
    /// What it means for ksight's features, concretely.
    pub meaning: String,
    /// The command or setting that fixes it; always present for warn and fail.
    pub fix: Option<String>,
}

impl Finding {
    pub(crate) fn new(
        id: impl Into<String>,
        group: &'static str,
        title: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        meaning: impl Into<String>,
    ) -> Finding {
        Finding {
            id: id.into(),
            group,
            title: title.into(),
            status,
            detail: detail.into(),
            meaning: meaning.into(),
            fix: None,
        }
    }

    pub(crate) fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }

    pub(crate) fn fix_opt(mut self, fix: Option<&str>) -> Finding {
        self.fix = fix.map(str::to_string);
        self
    }
}

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum DoctorFormat {
    Table,
    Json,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub format: DoctorFormat,
    pub color: Color,
    /// Read /proc and /sys under this directory instead of / (real probes are
    /// then skipped: they can only test the running kernel).
    pub root: PathBuf,
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

/// Check, print the report, and return the exit code.
pub fn run(opts: &Options) -> io::Result<u8> {
    let real = opts.root == Path::new("/");
    // securityfs is often not mounted (containers, minimal VMs): read it privately
    let securityfs = if real {
        ksight_bpf::sys::read_securityfs()
    } else {
        None
    };
    let mut findings = host::host_checks_with(
        &opts.root,
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
        findings.extend(probes::findings(cgroup2.as_deref()));
        features = features::features(&mut findings);
    }
    let kernel = std::fs::read_to_string(opts.root.join("proc/sys/kernel/osrelease"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let version = host::parse_release(&kernel).map(|(a, b, _)| (a, b));
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
    match opts.format {
        DoctorFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        DoctorFormat::Table => {
            let color = opts.color.enabled(io::stdout().is_terminal());
            render(&mut out, &report, color, probed)?;
        }
    }
    out.flush()?;
    Ok(exit_code)
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
