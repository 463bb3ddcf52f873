//! The file-reading half of `ksight doctor`: every check that can be answered by reading files.
//!
//! Owns the reading and judging of what a kernel says about itself in `/proc` and `/sys` (its
//! release, BTF, build config, lockdown mode, LSMs, BPF sysctls) and of what this process may do
//! (capabilities, locked-memory limit, mounts). Each check becomes a [`Finding`]: what was seen,
//! what it means for ksight, and how to fix it. Loading real programs is done elsewhere
//! (`probes.rs`, `features.rs`); `lib.rs` merges them into one report.
//!
//! Invariants:
//! - Every path is relative to the `root` argument, never an absolute host path, so fixture trees
//!   under `tests/fixtures/doctor/` describe other kernels and run on any machine.
//! - No input panics: missing, unreadable, truncated, non-UTF-8 or hostile files (a gzip bomb in
//!   `config.gz`) become findings. Every read is size-capped and every value echoed into a detail
//!   is cleaned of control characters and length-capped.
//! - Ids are stable machine keys and come out in the same order on every host: a missing file
//!   yields a finding that says so, not a missing id. The one exception is the kernel config,
//!   which yields either one `config.CONFIG_*` finding per option or, with no config, one `config`.
//! - Every `warn` or `fail` finding carries a fix.
//! - The kernel version is a hint, never a verdict on a feature: distributions backport BPF
//!   features and configure them out. Only a release older than 4.18 (no BTF format at all)
//!   fails on version alone.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::{Finding, Status};
use flate2::read::GzDecoder;

const KERNEL: &str = "kernel";
const BTF: &str = "btf";
const CONFIG: &str = "config";
const HARDENING: &str = "hardening";
const PRIVILEGES: &str = "privileges";
const MOUNTS: &str = "mounts";

/// (major, minor, patch).
type Version = (u32, u32, u32);

/// The version-to-feature table that matters for eBPF: (first mainline version, feature, what
/// ksight uses it for and what happens without it). Sorted by version. Mainline versions only:
/// distribution kernels often have a feature earlier (backports) or not at all (config).
pub const FEATURE_VERSIONS: &[((u32, u32), &str, &str)] = &[
    (
        (4, 7),
        "tracepoints",
        "classic tracepoint programs; ksight's hooks are tp_btf/raw_tp instead, so only the doctor's probe uses them",
    ),
    (
        (4, 16),
        "bpf-to-bpf calls",
        "calls between BPF functions; ksight inlines its helpers, so it does not depend on them",
    ),
    (
        (4, 17),
        "raw tracepoints",
        "raw_tp fork/exec/exit hooks, ksight's fallback when tp_btf is refused; with neither, ksight cannot observe processes",
    ),
    (
        (4, 17),
        "cgroup connect hooks",
        "cgroup/connect4 and connect6 socket hooks, where ksight's network capture attaches",
    ),
    (
        (4, 18),
        "BTF",
        "the type format behind CO-RE: every ksight program relocates its task_struct/mm/dentry reads with it",
    ),
    (
        (4, 18),
        "bpf_get_current_cgroup_id",
        "the cgroup id on every event and the in-kernel --cgroup filter",
    ),
    (
        (5, 2),
        "global variables",
        "ksight's `const volatile` configuration (argv limit, filters), set before load; without it ksight's programs do not load",
    ),
    (
        (5, 2),
        "1M instructions",
        "verifier room for the exec handler (argv copy, dentry path walk); before it a program is capped at 4096 instructions",
    ),
    (
        (5, 3),
        "bounded loops",
        "loops the verifier checks without unrolling, such as the path walk and the cgroup filter list",
    ),
    (
        (5, 4),
        "vmlinux BTF in sysfs",
        "/sys/kernel/btf/vmlinux, ksight's default BTF source; older kernels need `ksight run --btf FILE`",
    ),
    (
        (5, 5),
        "tp_btf",
        "BTF-typed tracepoints, ksight's default and cheapest fork/exec/exit hooks; without them ksight uses raw_tp",
    ),
    (
        (5, 5),
        "probe_read_user/kernel",
        "separate reads of user memory (argv) and kernel memory (paths); libbpf rewrites them to bpf_probe_read on older kernels",
    ),
    (
        (5, 7),
        "BPF LSM",
        "BPF programs on LSM hooks; ksight observes and never enforces, so it does not need them",
    ),
    (
        (5, 8),
        "ring buffer",
        "ksight's event transport, shared by all CPUs and in order; without it ksight uses per-CPU perf buffers merged by time (--reorder-window latency, more memory)",
    ),
    (
        (5, 8),
        "CAP_BPF/CAP_PERFMON",
        "running ksight without root via file capabilities; before them only root or CAP_SYS_ADMIN can load ksight",
    ),
    (
        (5, 8),
        "task iterators",
        "an in-kernel walk of all tasks; ksight seeds its process table from /proc, so it does not need them",
    ),
    (
        (5, 10),
        "tail calls mixed with bpf-to-bpf calls",
        "combining both in one program (x86-64); ksight uses neither combination today",
    ),
    (
        (5, 10),
        "raw_tp BPF_PROG_TEST_RUN",
        "running a raw_tp program on demand: `ksight bench transport` drives its synthetic producer this way",
    ),
    (
        (5, 11),
        "memcg accounting of BPF memory",
        "maps and programs charged to the memory cgroup instead of RLIMIT_MEMLOCK; before it the memlock limit caps ksight's buffers",
    ),
    (
        (5, 17),
        "bpf_loop",
        "callback loops with up to 8M iterations; ksight's loops are small and bounded, so it does not need it",
    ),
];

/// Memory cgroup accounting of BPF memory: from here on RLIMIT_MEMLOCK no longer applies.
const MEMCG_ACCOUNTING: (u32, u32) = (5, 11);

/// A text file we read is at most a few KiB (mountinfo on a busy container host: a few hundred);
/// the cap keeps a hostile or runaway file from exhausting memory.
const MAX_TEXT_BYTES: u64 = 4 << 20;
/// A decompressed kernel config is about 250 KiB; the cap defuses a gzip bomb in `config.gz`.
const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Values echoed into a detail (release, lockdown file, LSM list) are cut to this many chars.
const MAX_ECHO_CHARS: usize = 200;

/// Kernel version (major, minor, patch) parsed leniently from a release string like
/// "6.18.44-fc-v669", "5.10.0-28-amd64", "4.19.0". The patch level may be missing ("6.12",
/// "6.9-rc1": patch 0); anything after the numbers is ignored. `None` when there is no
/// "major.minor" at the start or a number overflows.
pub fn parse_release(release: &str) -> Option<(u32, u32, u32)> {
    let (major, rest) = leading_number(release.trim())?;
    let (minor, rest) = leading_number(rest.strip_prefix('.')?)?;
    let patch = rest
        .strip_prefix('.')
        .and_then(leading_number)
        .map_or(0, |(patch, _)| patch);
    Some((major, minor, patch))
}

/// The decimal number at the start of `s`, and the rest.
fn leading_number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, rest) = s.split_at_checked(end)?;
    Some((digits.parse().ok()?, rest))
}

/// Every file-based check, in display order. `root` is "/" on a real host; fixtures use their
/// own directory. See the module doc for the invariants.
pub fn host_checks(root: &Path) -> Vec<Finding> {
    host_checks_with(root, None)
}

/// `host_checks`, with the texts of securityfs's `lockdown` and `lsm` files supplied by the
/// caller, for hosts where securityfs is not mounted (the caller can mount it privately).
pub fn host_checks_with(root: &Path, securityfs: Option<(&str, &str)>) -> Vec<Finding> {
    let mut out = Vec::new();
    let (release, version, finding) = check_release(root);
    out.push(finding);
    out.push(check_features(version));
    out.push(check_btf(root));
    out.extend(check_config(root, release.as_deref()));
    out.push(check_lockdown(root, securityfs.map(|s| s.0)));
    out.push(check_lsm(root, securityfs.map(|s| s.1)));
    out.extend(check_sysctls(root));
    out.push(check_caps(root));
    out.push(check_memlock(root, version));
    out.extend(check_mounts(root));
    out
}

// ---- reading ----

/// A text file under `root`: `Ok(None)` when it does not exist, `Err` (a message naming the
/// file) when it exists but cannot be read. Non-UTF-8 bytes are replaced, not rejected: a
/// corrupted file should still show what it holds.
fn read_text(root: &Path, rel: &str) -> Result<Option<String>, String> {
    let file = match File::open(root.join(rel)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("/{rel}: {e}")),
    };
    read_capped(file, MAX_TEXT_BYTES)
        .map(Some)
        .map_err(|e| format!("/{rel}: {e}"))
}

/// A gzip-compressed text file under `root`, with [`read_text`]'s conventions.
fn read_gzip(root: &Path, rel: &str) -> Result<Option<String>, String> {
    let file = match File::open(root.join(rel)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("/{rel}: {e}")),
    };
    read_capped(GzDecoder::new(file), MAX_CONFIG_BYTES)
        .map(Some)
        .map_err(|e| format!("/{rel}: {e}"))
}

/// Reads at most `cap` bytes. Beyond the cap the text is silently cut: every file read here is
/// far smaller, so only a hostile file loses its tail.
fn read_capped(reader: impl Read, cap: u64) -> io::Result<String> {
    let mut bytes = Vec::new();
    reader.take(cap).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A value read from a file, made safe to print: trimmed, control characters replaced (a
/// terminal must not interpret them), cut to [`MAX_ECHO_CHARS`].
fn clean(s: &str) -> String {
    let s = s.trim();
    let mut out: String = s
        .chars()
        .take(MAX_ECHO_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if s.chars().nth(MAX_ECHO_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn human_bytes(n: u64) -> String {
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64;
    let mut unit = "bytes";
    for next in ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    let text = format!("{value:.1}");
    format!("{} {unit}", text.strip_suffix(".0").unwrap_or(&text))
}

fn version_str((major, minor): (u32, u32)) -> String {
    format!("{major}.{minor}")
}

// ---- kernel ----

const OSRELEASE: &str = "proc/sys/kernel/osrelease";

/// The release string (for `boot/config-<release>`), its parsed version, and the finding.
fn check_release(root: &Path) -> (Option<String>, Option<Version>, Finding) {
    let id = "kernel.release";
    let title = "kernel release";
    let text = match read_text(root, OSRELEASE) {
        Ok(Some(text)) => text,
        unknown => {
            let detail = match unknown {
                Err(e) => format!("cannot read {e}"),
                _ => format!("/{OSRELEASE} is missing"),
            };
            let finding = Finding::new(
                id,
                KERNEL,
                title,
                Status::Warn,
                detail,
                "The kernel version is unknown, so the version hints (kernel.features, memlock) \
                 and the /boot/config-<release> lookup are skipped. Usually /proc is not procfs \
                 here (a container or chroot without /proc).",
            )
            .fix("mount procfs: mount -t proc proc /proc (in a container, run the doctor where ksight itself runs)");
            return (None, None, finding);
        }
    };
    let release = text.trim().to_string();
    let shown = clean(&release);
    let Some(version) = parse_release(&release) else {
        let finding = Finding::new(
            id,
            KERNEL,
            title,
            Status::Info,
            format!("release \"{shown}\" (no version number could be read from it)"),
            "The version hints (kernel.features, memlock) are skipped; the real probes still \
             say what this kernel can do.",
        );
        // A release we cannot parse is still the file name to look for under /boot.
        let release = (!release.is_empty()).then_some(release);
        return (release, None, finding);
    };
    let (major, minor, patch) = version;
    let detail = format!("Linux {shown} (version {major}.{minor}.{patch}), from /{OSRELEASE}");
    let finding = if (major, minor) < (4, 18) {
        Finding::new(
            id,
            KERNEL,
            title,
            Status::Fail,
            detail,
            "Kernels before 4.18 have no BTF, the type information ksight's compile-once (CO-RE) \
             programs relocate against, and before 4.17 not even the raw tracepoints ksight falls \
             back to. No distribution backport adds BTF to such a kernel: ksight cannot run.",
        )
        .fix("upgrade to a newer kernel: 5.8 or later gives ksight everything it uses (ring buffer, CAP_BPF, tp_btf); distribution kernels from 5.4 on usually ship BTF")
    } else if (major, minor) < (5, 2) {
        Finding::new(
            id,
            KERNEL,
            title,
            Status::Warn,
            detail,
            "ksight's programs keep their configuration in global variables (`const volatile`, \
             mainline 5.2). On an older kernel they load only if the distribution backported \
             BPF global data (RHEL 8's 4.18 kernel did); the probe that loads ksight's own \
             programs decides.",
        )
        .fix("if the load probe fails, upgrade to a 5.2+ kernel (5.8+ for the ring buffer and CAP_BPF)")
    } else {
        Finding::new(
            id,
            KERNEL,
            title,
            Status::Info,
            detail,
            "The running kernel. kernel.features lists what its version implies; the real probes \
             decide.",
        )
    };
    (Some(release), Some(version), finding)
}

fn check_features(version: Option<Version>) -> Finding {
    let id = "kernel.features";
    let title = "BPF features by version";
    let hint = "The version is only a hint: distributions backport BPF features (RHEL 8's 4.18 \
                kernel has BTF and the ring buffer) and may configure them out, so the real \
                probes of `ksight doctor` decide.";
    let Some((major, minor, _)) = version else {
        return Finding::new(
            id,
            KERNEL,
            title,
            Status::Info,
            "kernel version unknown: no version-based hints",
            "Nothing can be inferred without a version; the real probes decide.",
        );
    };
    let (implied, predated): (Vec<_>, Vec<_>) = FEATURE_VERSIONS
        .iter()
        .partition(|(since, _, _)| (major, minor) >= *since);
    let list = |rows: &[&((u32, u32), &str, &str)]| {
        if rows.is_empty() {
            return "nothing".to_string();
        }
        rows.iter()
            .map(|(since, name, _)| format!("{name} ({})", version_str(*since)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // What the kernel predates comes first: it is the actionable part, and the table view
    // shows only the start of a long detail.
    let detail = format!(
        "{major}.{minor} predates: {}; implies: {}",
        list(&predated),
        list(&implied)
    );
    let meaning = if predated.is_empty() {
        format!("{hint} Taken at face value, this kernel has every feature in the table.")
    } else {
        let missing: Vec<String> = predated
            .iter()
            .map(|(since, name, uses)| format!("{name} ({}): {uses}", version_str(*since)))
            .collect();
        format!(
            "{hint} Taken at face value, this kernel lacks: {}.",
            missing.join("; ")
        )
    };
    Finding::new(id, KERNEL, title, Status::Info, detail, meaning)
}

// ---- BTF ----

const BTF_VMLINUX: &str = "sys/kernel/btf/vmlinux";
/// `BTF_MAGIC` from include/uapi/linux/btf.h, a u16 in the kernel's byte order at offset 0.
const BTF_MAGIC: u16 = 0xEB9F;
const BTF_FIX: &str = "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (distribution kernels from about 5.4 on: Debian 11+, Ubuntu 20.10+, RHEL 8.2+), or run `ksight run --btf FILE` with a BTF file made for this exact kernel release, e.g. from BTFHub (https://github.com/aquasecurity/btfhub-archive)";

fn check_btf(root: &Path) -> Finding {
    let id = "btf.vmlinux";
    let title = "kernel BTF";
    let fail = |detail: String, meaning: &str| {
        Finding::new(id, BTF, title, Status::Fail, detail, meaning).fix(BTF_FIX)
    };
    let file = match File::open(root.join(BTF_VMLINUX)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return fail(
                format!("/{BTF_VMLINUX} is missing"),
                "This kernel exposes no BTF type information. ksight's CO-RE programs need it to \
                 find task_struct, mm_struct and dentry fields on this exact kernel, and tp_btf \
                 hooks need it too: without it (or --btf), ksight refuses to start.",
            );
        }
        Err(e) => {
            return fail(
                format!("/{BTF_VMLINUX} cannot be read: {e}"),
                "ksight loads the kernel's BTF from this file (it is normally world-readable); \
                 unreadable, ksight refuses to start unless given --btf.",
            );
        }
    };
    let size = file.metadata().map(|m| m.len()).ok();
    let mut head = Vec::new();
    if let Err(e) = file.take(4).read_to_end(&mut head) {
        return fail(
            format!("/{BTF_VMLINUX} cannot be read: {e}"),
            "ksight loads the kernel's BTF from this file; unreadable, ksight refuses to start \
             unless given --btf.",
        );
    }
    let size = size.map_or_else(|| "size unknown".to_string(), human_bytes);
    // The magic is in the kernel's own byte order; accepting both keeps the check right on
    // big-endian hosts (s390x) and for a fixture made on another machine.
    let order = match head.as_slice() {
        [a, b, ..] if u16::from_le_bytes([*a, *b]) == BTF_MAGIC => Some("little-endian"),
        [a, b, ..] if u16::from_be_bytes([*a, *b]) == BTF_MAGIC => Some("big-endian"),
        _ => None,
    };
    match order {
        Some(order) => Finding::new(
            id,
            BTF,
            title,
            Status::Ok,
            format!("/{BTF_VMLINUX}: {size}, BTF magic 0x{BTF_MAGIC:x} ({order})"),
            "ksight's CO-RE programs relocate their kernel struct reads against this type \
             information at load time, and tp_btf hooks can be typed: no --btf needed.",
        ),
        None => {
            let first: Vec<String> = head.iter().take(2).map(|b| format!("{b:02x}")).collect();
            fail(
                format!(
                    "/{BTF_VMLINUX}: {size}, starts with [{}] instead of the BTF magic 9f eb",
                    first.join(" ")
                ),
                "The file is not BTF (truncated or corrupted), so libbpf cannot parse it and \
                 ksight refuses to start unless given --btf.",
            )
        }
    }
}

// ---- kernel build config ----

/// One CONFIG option the doctor reports on.
struct ConfigOption {
    name: &'static str,
    title: &'static str,
    /// Status when the option is off (`=y`/`=m` is always ok).
    off: Status,
    /// What the option gives ksight, shown when it is on.
    enables: &'static str,
    /// What its absence costs ksight, shown when it is off.
    off_means: &'static str,
    /// Required when `off` is warn or fail.
    fix: Option<&'static str>,
}

const TC_UNUSED: &str =
    "ksight watches the network through cgroup socket hooks, not tc, so nothing \
                         ksight does depends on it; tc-based tools (Cilium, some firewalls) do.";
const KPROBES_UNUSED: &str = "ksight does not need kprobes (it avoids hooking unstable kernel \
                              internals); optional extras that would use them stay off.";
const BPF_CORE_FIX: &str = "use a kernel built with CONFIG_BPF=y and CONFIG_BPF_SYSCALL=y (every major distribution kernel has both)";

const CONFIG_OPTIONS: &[ConfigOption] = &[
    ConfigOption {
        name: "CONFIG_BPF",
        title: "BPF core",
        off: Status::Fail,
        enables: "The in-kernel BPF machinery every other BPF option builds on.",
        off_means: "No BPF at all: ksight cannot run.",
        fix: Some(BPF_CORE_FIX),
    },
    ConfigOption {
        name: "CONFIG_BPF_SYSCALL",
        title: "bpf() system call",
        off: Status::Fail,
        enables: "The bpf() system call, through which ksight loads its programs and creates its \
                  ring buffer and maps.",
        off_means: "No bpf() system call: ksight cannot load anything and cannot run.",
        fix: Some(BPF_CORE_FIX),
    },
    ConfigOption {
        name: "CONFIG_BPF_JIT",
        title: "BPF JIT compiler",
        off: Status::Info,
        enables: "Compiling BPF programs to native code (with net.core.bpf_jit_enable=1): \
                  ksight's per-event cost is that of native code.",
        off_means: "ksight's programs run in the BPF interpreter: the same events, at several \
                    times the CPU cost per fork/exec/exit.",
        fix: None,
    },
    ConfigOption {
        name: "CONFIG_HAVE_EBPF_JIT",
        title: "architecture has an eBPF JIT",
        off: Status::Info,
        enables: "This CPU architecture has an eBPF JIT compiler (x86-64, arm64, s390x, ppc64, \
                  riscv64 and others).",
        off_means: "No eBPF JIT for this architecture: ksight's programs are interpreted, at \
                    several times the CPU cost per event.",
        fix: None,
    },
    ConfigOption {
        name: "CONFIG_BPF_EVENTS",
        title: "BPF on tracepoints and probes",
        off: Status::Fail,
        enables: "Attaching BPF programs to tracepoints, raw tracepoints, kprobes and uprobes: \
                  ksight's fork/exec/exit hooks (tp_btf or raw_tp) sit on it.",
        off_means: "ksight's process hooks cannot attach: ksight cannot run.",
        fix: Some("use a kernel built with CONFIG_BPF_EVENTS=y (it needs CONFIG_PERF_EVENTS and CONFIG_KPROBE_EVENTS or CONFIG_UPROBE_EVENTS)"),
    },
    ConfigOption {
        name: "CONFIG_CGROUP_BPF",
        title: "cgroup BPF hooks",
        off: Status::Warn,
        enables: "BPF programs attached to cgroups (connect/sendmsg socket hooks, skb filters): \
                  where ksight's network and DNS capture attach.",
        off_means: "ksight's network and DNS capture stay off; process events are unaffected.",
        fix: Some("use a kernel built with CONFIG_CGROUP_BPF=y (the distribution default; systemd's IPAddressDeny= and IP accounting need it too)"),
    },
    ConfigOption {
        name: "CONFIG_NET_CLS_BPF",
        title: "tc BPF classifier",
        off: Status::Info,
        enables: "The tc BPF classifier (cls_bpf). ksight does not attach tc programs.",
        off_means: TC_UNUSED,
        fix: None,
    },
    ConfigOption {
        name: "CONFIG_NET_CLS_ACT",
        title: "tc actions",
        off: Status::Info,
        enables: "tc actions, with which tc BPF programs drop, redirect or mirror packets. \
                  ksight does not attach tc programs.",
        off_means: TC_UNUSED,
        fix: None,
    },
    ConfigOption {
        name: "CONFIG_NET_SCH_INGRESS",
        title: "ingress/clsact qdisc",
        off: Status::Info,
        enables: "The ingress/clsact qdisc that tc BPF programs hang from. ksight does not \
                  attach tc programs.",
        off_means: TC_UNUSED,
        fix: None,
    },
    ConfigOption {
        name: "CONFIG_LWTUNNEL_BPF",
        title: "BPF on routes",
        off: Status::Info,
        enables: "BPF programs on routes (lightweight tunnel encapsulation). ksight does not use \
                  them.",
        off_means: "ksight does not use route-level BPF: no effect.",
        fix: None,
    },
    ConfigOption {
        name: "CONFIG_DEBUG_INFO_BTF",
        title: "kernel BTF",
        off: Status::Fail,
        enables: "/sys/kernel/btf/vmlinux, this kernel's own type information, which ksight's \
                  CO-RE programs and tp_btf hooks load against.",
        off_means: "No kernel BTF: ksight refuses to start unless given --btf FILE with a BTF \
                    made for this exact kernel.",
        fix: Some(BTF_FIX),
    },
    ConfigOption {
        name: "CONFIG_KPROBES",
        title: "kprobes",
        off: Status::Info,
        enables: "kprobes, dynamic hooks on almost any kernel function. ksight does not need \
                  them.",
        off_means: KPROBES_UNUSED,
        fix: None,
    },
    ConfigOption {
        name: "CONFIG_KPROBE_EVENTS",
        title: "kprobe events",
        off: Status::Info,
        enables: "Creating kprobes through tracefs or perf_event_open, the way BPF programs \
                  attach to them. ksight does not need them.",
        off_means: KPROBES_UNUSED,
        fix: None,
    },
    ConfigOption {
        name: "CONFIG_UPROBE_EVENTS",
        title: "uprobes",
        off: Status::Warn,
        enables: "uprobes, BPF programs on user-space functions: ksight's application-level DNS \
                  view hooks name resolution in libc (getaddrinfo) with them.",
        off_means: "ksight's application-level DNS view stays off; process events and the \
                    cgroup-based network capture are unaffected.",
        fix: Some("use a kernel built with CONFIG_UPROBE_EVENTS=y (the distribution default)"),
    },
    ConfigOption {
        name: "CONFIG_FTRACE_SYSCALLS",
        title: "syscall tracepoints",
        off: Status::Info,
        enables: "The syscalls:sys_enter_*/sys_exit_* tracepoints. ksight deliberately attaches \
                  none (one slows every system call on the host).",
        off_means: "ksight attaches no syscall tracepoints: no effect.",
        fix: None,
    },
    ConfigOption {
        name: "CONFIG_BPF_LSM",
        title: "BPF LSM",
        off: Status::Info,
        enables: "BPF programs on LSM hooks (active only when \"bpf\" is also in the boot-time \
                  LSM list, see lsm). ksight observes and never enforces, so it does not need \
                  them.",
        off_means: "ksight observes and never enforces, so it does not need BPF LSM: no effect.",
        fix: None,
    },
];

/// A kernel config's text and where it came from.
struct KernelConfig {
    source: String,
    text: String,
}

/// `/proc/config.gz` first (it always matches the running kernel), then
/// `/boot/config-<release>`. `Err` lists what was tried, for the detail.
fn load_config(root: &Path, release: Option<&str>) -> Result<KernelConfig, Vec<String>> {
    let mut tried = Vec::new();
    let usable = |source: String, text: String, tried: &mut Vec<String>| {
        // An empty or foreign file would otherwise read as "every option off".
        if text.contains("CONFIG_") {
            Some(KernelConfig { source, text })
        } else {
            tried.push(format!("{source} holds no CONFIG_ lines"));
            None
        }
    };
    match read_gzip(root, "proc/config.gz") {
        Ok(Some(text)) => {
            if let Some(config) = usable("/proc/config.gz".into(), text, &mut tried) {
                return Ok(config);
            }
        }
        Ok(None) => tried.push("/proc/config.gz is missing".into()),
        Err(e) => tried.push(clean(&e)),
    }
    // The release comes from a file: never let it climb out of boot/.
    match release.filter(|r| !r.contains('/') && *r != ".." && *r != ".") {
        Some(release) => {
            let rel = format!("boot/config-{release}");
            match read_text(root, &rel) {
                Ok(Some(text)) => {
                    if let Some(config) = usable(format!("/{rel}"), text, &mut tried) {
                        return Ok(config);
                    }
                }
                Ok(None) => tried.push(format!("/{} is missing", clean(&rel))),
                Err(e) => tried.push(clean(&e)),
            }
        }
        None => tried.push("/boot/config-<release> not looked for: release unknown".into()),
    }
    Err(tried)
}

/// Option name to value: "y", "m", "n" (from "# CONFIG_X is not set") or the literal value.
fn parse_config(text: &str) -> HashMap<&str, &str> {
    let mut options = HashMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            options.insert(name, "n");
        } else if let Some((name, value)) = line.split_once('=') {
            if name.starts_with("CONFIG_") {
                options.insert(name, value);
            }
        }
    }
    options
}

fn check_config(root: &Path, release: Option<&str>) -> Vec<Finding> {
    let config = match load_config(root, release) {
        Ok(config) => config,
        Err(tried) => {
            return vec![Finding::new(
                "config",
                CONFIG,
                "kernel build config",
                Status::Warn,
                format!("no kernel build config: {}", tried.join("; ")),
                "The CONFIG_* checks (BPF syscall, BPF events, cgroup BPF, uprobes, BTF, ...) are \
                 skipped. This alone does not stop ksight: the real probes test the same \
                 capabilities directly.",
            )
            .fix("build the kernel with CONFIG_IKCONFIG=y and CONFIG_IKCONFIG_PROC=y (or `modprobe configs` where it is a module) for /proc/config.gz, or install the kernel's config as /boot/config-$(uname -r) (distribution kernel packages ship it)")];
        }
    };
    let options = parse_config(&config.text);
    let source = &config.source;
    CONFIG_OPTIONS
        .iter()
        .map(|opt| {
            let name = opt.name;
            let value = options.get(name).copied();
            let (on, detail) = match value {
                Some("y") => (true, format!("{name}=y (built in), in {source}")),
                Some("m") => (true, format!("{name}=m (module), in {source}")),
                Some("n") => (false, format!("{name} is not set, in {source}")),
                Some(other) => (true, format!("{name}={}, in {source}", clean(other))),
                None => (
                    false,
                    format!(
                        "{name} does not appear in {source} (the kernel predates it or its \
                         dependencies are off)"
                    ),
                ),
            };
            let (status, meaning) = if on {
                (Status::Ok, opt.enables)
            } else {
                (opt.off, opt.off_means)
            };
            let finding = Finding::new(
                format!("config.{name}"),
                CONFIG,
                opt.title,
                status,
                detail,
                meaning,
            );
            match opt.fix {
                Some(fix) if !on => finding.fix(fix),
                _ => finding,
            }
        })
        .collect()
}

// ---- hardening ----

const LOCKDOWN: &str = "sys/kernel/security/lockdown";
const LSM: &str = "sys/kernel/security/lsm";
const SECURITYFS_FIX: &str = "to see it: mount -t securityfs securityfs /sys/kernel/security";

/// The active mode: the bracketed word in "none [integrity] confidentiality".
fn lockdown_mode(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once('[')?;
    let (mode, _) = rest.split_once(']')?;
    Some(mode.trim())
}

fn check_lockdown(root: &Path, supplied: Option<&str>) -> Finding {
    let id = "lockdown";
    let title = "kernel lockdown";
    let read = match supplied {
        Some(text) => Ok(Some(text.to_string())),
        None => read_text(root, LOCKDOWN),
    };
    let text = match read {
        Ok(Some(text)) => text,
        Ok(None) => {
            return Finding::new(
                id,
                HARDENING,
                title,
                Status::Info,
                format!("/{LOCKDOWN} is missing"),
                "securityfs is not mounted, or the kernel has no lockdown LSM (before 5.4, or \
                 built without CONFIG_SECURITY_LOCKDOWN_LSM): nothing restricts BPF on lockdown \
                 grounds, unless an older distribution kernel carries the pre-5.4 lockdown \
                 patches, which refused BPF altogether under Secure Boot. The real probes show it.",
            )
            .fix(SECURITYFS_FIX);
        }
        Err(e) => {
            return Finding::new(
                id,
                HARDENING,
                title,
                Status::Info,
                format!("cannot read {e}"),
                "The lockdown mode is unknown; the real probes show whether BPF is refused.",
            );
        }
    };
    let detail = format!("/{LOCKDOWN}: {}", clean(&text));
    match lockdown_mode(&text) {
        Some("none") => Finding::new(
            id,
            HARDENING,
            title,
            Status::Ok,
            detail,
            "Not locked down: BPF may read kernel memory and attach to every hook type ksight \
             uses.",
        ),
        Some("integrity") => Finding::new(
            id,
            HARDENING,
            title,
            Status::Warn,
            detail,
            "Integrity mode (usually enforced with Secure Boot) refuses BPF writes to user memory \
             (bpf_probe_write_user), restricts debugfs, and blocks unsigned modules and kexec. \
             ksight uses none of these: its tracepoint hooks, kernel reads and ring buffer all \
             work. One step up, confidentiality, would stop ksight.",
        )
        .fix("nothing is needed for ksight; integrity mode is lifted only by booting without Secure Boot lockdown (lockdown=none), which trades away its protection"),
        Some("confidentiality") => Finding::new(
            id,
            HARDENING,
            title,
            Status::Fail,
            detail,
            "Confidentiality mode refuses BPF reads of kernel memory (bpf_probe_read_kernel and \
             the BPF_CORE_READ built on it), and also kprobes, tracefs and parts of perf. Every \
             ksight program reads task_struct fields that way, so the kernel rejects them at load \
             time: ksight cannot run.",
        )
        .fix("the mode can only be raised while running: reboot without `lockdown=confidentiality` on the kernel command line (see /proc/cmdline and the boot loader config), without a boot script writing `confidentiality` to /sys/kernel/security/lockdown, and with a kernel not built with CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY; `lockdown=integrity` still lets ksight run"),
        _ => Finding::new(
            id,
            HARDENING,
            title,
            Status::Info,
            detail,
            "The active lockdown mode could not be recognized; the real probes show whether BPF \
             is refused.",
        ),
    }
}

fn check_lsm(root: &Path, supplied: Option<&str>) -> Finding {
    let id = "lsm";
    let title = "active LSMs";
    let read = match supplied {
        Some(text) => Ok(Some(text.to_string())),
        None => read_text(root, LSM),
    };
    let text = match read {
        Ok(Some(text)) => text,
        Ok(None) => {
            return Finding::new(
                id,
                HARDENING,
                title,
                Status::Info,
                format!("/{LSM} is missing"),
                "The active LSMs are unknown (securityfs not mounted, or a kernel before 4.20). \
                 ksight needs no particular LSM.",
            )
            .fix(SECURITYFS_FIX);
        }
        Err(e) => {
            return Finding::new(
                id,
                HARDENING,
                title,
                Status::Info,
                format!("cannot read {e}"),
                "The active LSMs are unknown. ksight needs no particular LSM.",
            );
        }
    };
    let lsms: Vec<&str> = text
        .trim()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let has = |name: &str| lsms.contains(&name);
    let mut meaning = vec![if has("bpf") {
        "\"bpf\" is active: BPF LSM programs can attach (ksight does not need them)."
    } else {
        "\"bpf\" is not in the list: BPF LSM programs cannot attach; ksight does not need them \
         (to allow them: CONFIG_BPF_LSM=y and bpf in lsm= on the kernel command line)."
    }];
    if has("selinux") {
        meaning.push(
            "SELinux mediates bpf(): the domain ksight runs in needs the bpf class permissions \
             (map_create, map_read, map_write, prog_load, prog_run) and the perfmon/bpf \
             capability2 permissions; unconfined_t has them.",
        );
    }
    if has("apparmor") {
        meaning.push(
            "AppArmor: a profile confining ksight must allow `capability bpf`, `capability \
             perfmon` (or `capability sys_admin`); unconfined processes are not restricted.",
        );
    }
    if has("lockdown") {
        meaning.push("The lockdown LSM is active: its mode is checked under lockdown.");
    }
    Finding::new(
        id,
        HARDENING,
        title,
        Status::Info,
        format!("/{LSM}: {}", clean(&text)),
        meaning.join(" "),
    )
}

/// A sysctl's value, or why there is none.
enum Sysctl {
    Missing,
    Unreadable(String),
    Value(i64),
}

fn read_sysctl(root: &Path, rel: &str) -> Sysctl {
    match read_text(root, rel) {
        Ok(None) => Sysctl::Missing,
        Err(e) => Sysctl::Unreadable(format!("cannot read {e}")),
        Ok(Some(text)) => match text.trim().parse() {
            Ok(v) => Sysctl::Value(v),
            Err(_) => {
                Sysctl::Unreadable(format!("/{rel} holds \"{}\", not a number", clean(&text)))
            }
        },
    }
}

/// What a sysctl's value means: (status, meaning, fix).
type Judgement = (Status, String, Option<String>);

/// One sysctl finding. `judge` sees only values; missing and unreadable files are info.
fn sysctl_finding(
    root: &Path,
    name: &str,
    title: &str,
    missing_means: &str,
    judge: impl Fn(i64) -> Judgement,
) -> Finding {
    let rel = format!("proc/sys/{}", name.replace('.', "/"));
    let key = name.rsplit('.').next().unwrap_or(name);
    let id = format!("sysctl.{key}");
    match read_sysctl(root, &rel) {
        Sysctl::Missing => Finding::new(
            id,
            HARDENING,
            title,
            Status::Info,
            format!("{name}: not present on this kernel (/{rel} is missing)"),
            missing_means,
        ),
        Sysctl::Unreadable(why) => Finding::new(
            id,
            HARDENING,
            title,
            Status::Info,
            format!("{name}: {why}"),
            "The value is unknown; the real probes show its effect.",
        ),
        Sysctl::Value(v) => {
            let (status, meaning, fix) = judge(v);
            Finding {
                id,
                group: HARDENING,
                title: title.to_string(),
                status,
                detail: format!("{name} = {v}"),
                meaning,
                fix,
            }
        }
    }
}

fn check_sysctls(root: &Path) -> Vec<Finding> {
    let jit_enable = sysctl_finding(
        root,
        "net.core.bpf_jit_enable",
        "BPF JIT",
        "This kernel has no BPF JIT (CONFIG_BPF_JIT off): ksight's programs run in the \
         interpreter, at several times the CPU cost per event.",
        |v| match v {
            1 => (
                Status::Ok,
                "The JIT is on: ksight's programs run as native code.".into(),
                None,
            ),
            2 => (
                Status::Warn,
                "The JIT is on in debug mode: every program's native image, ksight's included, is \
                 dumped to the kernel log when loaded, with kernel addresses."
                    .into(),
                Some("sysctl -w net.core.bpf_jit_enable=1 (persist it in /etc/sysctl.d/)".into()),
            ),
            0 => (
                Status::Warn,
                "The JIT is off: ksight's programs run in the BPF interpreter, at several times \
                 the CPU cost on every fork, exec and exit."
                    .into(),
                Some("sysctl -w net.core.bpf_jit_enable=1 (persist it in /etc/sysctl.d/)".into()),
            ),
            _ => (
                Status::Info,
                "An unexpected value; the JIT state is unknown.".into(),
                None,
            ),
        },
    );
    let harden = match read_sysctl(root, "proc/sys/net/core/bpf_jit_harden") {
        Sysctl::Value(v) => Some(v),
        _ => None,
    };
    let jit_harden = sysctl_finding(
        root,
        "net.core.bpf_jit_harden",
        "BPF JIT hardening",
        "No JIT, so nothing to harden.",
        |v| {
            match v {
            0 => (
                Status::Ok,
                "No constant blinding: ksight's JITed programs run as compiled.".into(),
                None,
            ),
            1 => (
                Status::Info,
                "Constant blinding for unprivileged programs only. ksight loads its programs \
                 privileged, so it pays nothing."
                    .into(),
                None,
            ),
            2 => (
                Status::Warn,
                "Constant blinding for every program, ksight's included: each constant becomes \
                 several instructions, a measurable overhead on every event. It also hides JITed \
                 programs from /proc/kallsyms, so perf cannot name ksight's programs."
                    .into(),
                Some("sysctl -w net.core.bpf_jit_harden=1: unprivileged programs stay hardened, privileged ones like ksight run unblinded (persist it in /etc/sysctl.d/)".into()),
            ),
            _ => (
                Status::Info,
                "An unexpected value; the hardening level is unknown.".into(),
                None,
            ),
        }
        },
    );
    let jit_kallsyms = sysctl_finding(
        root,
        "net.core.bpf_jit_kallsyms",
        "JITed programs in kallsyms",
        "Not present (no JIT): there are no native images to name.",
        |v| {
            let hardened = harden.is_some_and(|h| h > 0);
            let meaning = match (v, hardened) {
                (0, _) => "JITed programs are not in /proc/kallsyms: perf and kernel stack traces \
                           show ksight's programs as unknown addresses (set it to 1 to profile \
                           them)."
                    .to_string(),
                (_, false) => "JITed programs appear in /proc/kallsyms (as bpf_prog_<tag>_<name>, \
                               to root): perf and kernel stack traces can name ksight's programs."
                    .to_string(),
                (_, true) => "Set, but ignored while net.core.bpf_jit_harden is on: perf and \
                              kernel stack traces show ksight's programs as unknown addresses."
                    .to_string(),
            };
            (Status::Info, meaning, None)
        },
    );
    let unprivileged = sysctl_finding(
        root,
        "kernel.unprivileged_bpf_disabled",
        "unprivileged BPF",
        "Not present: this kernel has no switch for unprivileged BPF (very old, or bpf() \
         compiled out).",
        |v| {
            match v {
            0 => (
                Status::Warn,
                "Any local user may load BPF programs (socket filters): a recurring route to \
                 kernel privilege escalation through verifier bugs (e.g. CVE-2021-3490). ksight \
                 runs privileged and is unaffected either way."
                    .into(),
                Some("sysctl -w kernel.unprivileged_bpf_disabled=2 and persist it in /etc/sysctl.d/ (1 also works, but locks it until reboot)".into()),
            ),
            1 => (
                Status::Ok,
                "Unprivileged BPF is disabled and locked: it cannot be re-enabled until reboot. \
                 ksight runs privileged and is unaffected."
                    .into(),
                None,
            ),
            2 => (
                Status::Ok,
                "Unprivileged BPF is disabled, but an administrator may re-enable it (write 0) \
                 without a reboot; 1 would lock it. ksight runs privileged and is unaffected."
                    .into(),
                None,
            ),
            _ => (
                Status::Info,
                "An unexpected value; treat unprivileged BPF as possibly enabled.".into(),
                None,
            ),
        }
        },
    );
    let paranoid = sysctl_finding(
        root,
        "kernel.perf_event_paranoid",
        "perf_event paranoia",
        "Not present: perf events are compiled out (CONFIG_PERF_EVENTS off), and with them the \
         tracepoint and perf buffer attachments ksight needs; the real probes confirm.",
        |v| {
            let level = match v {
                i64::MIN..=-1 => "no restrictions for anyone",
                0 => "unprivileged users may not use raw tracepoint data",
                1 => "unprivileged users may not use CPU-wide events",
                2 => "unprivileged users may profile only their own user space (upstream default)",
                _ => {
                    "unprivileged perf_event_open is denied entirely (a Debian/Ubuntu/Android \
                     patch; upstream treats it as 2)"
                }
            };
            (
                Status::Info,
                format!(
                    "{v}: {level}. ksight runs as root or with CAP_PERFMON, which bypasses this \
                     setting: its perf buffer fallback and probe attachments are unaffected."
                ),
                None,
            )
        },
    );
    let stats = sysctl_finding(
        root,
        "kernel.bpf_stats_enabled",
        "BPF run-time statistics",
        "Not present on this kernel (added in 5.8): per-program run time and run counts are not \
         available.",
        |v| match v {
            0 => (
                Status::Info,
                "Per-program run time is not collected, so no program pays for it (enable it \
                 with sysctl kernel.bpf_stats_enabled=1 to see each program's run time in \
                 bpftool prog show)."
                    .into(),
                None,
            ),
            _ => (
                Status::Info,
                "Per-program run time is collected: every BPF program on the host, ksight's \
                 included, pays two clock reads per run. Leave it off outside measurements."
                    .into(),
                Some("sysctl -w kernel.bpf_stats_enabled=0 when not measuring".into()),
            ),
        },
    );
    vec![
        jit_enable,
        jit_harden,
        jit_kallsyms,
        unprivileged,
        paranoid,
        stats,
    ]
}

// ---- privileges ----

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The capabilities that matter to ksight, in the order the detail lists them.
const KSIGHT_CAPS: &[(u32, &str)] = &[
    (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    (CAP_BPF, "CAP_BPF"),
    (CAP_PERFMON, "CAP_PERFMON"),
    (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
    (CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"),
    (CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE"),
];

const CAPS_FIX: &str = "run ksight as root (sudo ksight run), or grant it capabilities (kernel 5.8+): sudo setcap cap_bpf,cap_perfmon,cap_net_admin,cap_sys_ptrace,cap_dac_read_search+ep \"$(command -v ksight)\", or in its systemd unit AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH";

fn has_cap(caps: u64, cap: u32) -> bool {
    caps.checked_shr(cap).is_some_and(|c| c & 1 == 1)
}

/// The effective capabilities in a /proc/PID/status text (its CapEff line).
pub fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// What loading ksight's programs takes: CAP_SYS_ADMIN, or CAP_BPF and
/// CAP_PERFMON (kernel 5.8+). `ksight run` refuses to start without it.
pub fn can_load_bpf(caps: u64) -> bool {
    has_cap(caps, CAP_SYS_ADMIN) || (has_cap(caps, CAP_BPF) && has_cap(caps, CAP_PERFMON))
}

fn check_caps(root: &Path) -> Finding {
    let id = "caps";
    let title = "capabilities";
    // Doctor and agent are separate runs; only running them the same way makes this apply.
    let whose = "These are the doctor process's own capabilities: run it as ksight runs (same \
                 user, same sudo or systemd unit) for this to apply to ksight.";
    let status_file = read_text(root, "proc/self/status");
    let cap_eff = match &status_file {
        Ok(Some(text)) => text
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(str::trim),
        _ => None,
    };
    let Some(caps) = cap_eff.and_then(|hex| u64::from_str_radix(hex, 16).ok()) else {
        let detail = match (&status_file, cap_eff) {
            (Err(e), _) => format!("cannot read {e}"),
            (Ok(None), _) => "/proc/self/status is missing".to_string(),
            (Ok(Some(_)), None) => "/proc/self/status has no CapEff line".to_string(),
            (Ok(Some(_)), Some(hex)) => format!("CapEff \"{}\" is not hex", clean(hex)),
        };
        return Finding::new(
            id,
            PRIVILEGES,
            title,
            Status::Warn,
            detail,
            format!(
                "Whether this process may load BPF programs is unknown. ksight needs \
                 CAP_SYS_ADMIN (root), or CAP_BPF and CAP_PERFMON on 5.8+. {whose}"
            ),
        )
        .fix(CAPS_FIX);
    };
    let names = |want: bool| -> String {
        let list: Vec<&str> = KSIGHT_CAPS
            .iter()
            .filter(|(cap, _)| has_cap(caps, *cap) == want)
            .map(|(_, name)| *name)
            .collect();
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    };
    let detail = format!(
        "CapEff {caps:016x}: has {}; lacks {}",
        names(true),
        names(false)
    );
    let has = |cap| has_cap(caps, cap);
    if !can_load_bpf(caps) {
        return Finding::new(
            id,
            PRIVILEGES,
            title,
            Status::Fail,
            detail,
            format!(
                "This process cannot load BPF programs or open the perf events they attach \
                 through: ksight needs CAP_SYS_ADMIN (root), or CAP_BPF and CAP_PERFMON \
                 (kernel 5.8+; before 5.8 only CAP_SYS_ADMIN). ksight would refuse to start. \
                 {whose}"
            ),
        )
        .fix(CAPS_FIX);
    }
    let mut gaps = Vec::new();
    if !has(CAP_NET_ADMIN) {
        gaps.push(
            "without CAP_NET_ADMIN the kernel refuses cgroup socket and skb hooks (and tc/XDP), \
             so ksight's network and DNS capture stay off",
        );
    }
    // /proc/PID/exe and cwd of another user's process pass ptrace_may_access only with
    // CAP_SYS_PTRACE; CAP_SYS_ADMIN does not stand in for it.
    if !(has(CAP_SYS_PTRACE) && has(CAP_DAC_READ_SEARCH)) {
        gaps.push(
            "without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH the /proc scan that seeds ksight's \
             process table cannot read other users' exe and cwd links (events themselves are \
             complete)",
        );
    }
    if gaps.is_empty() {
        Finding::new(
            id,
            PRIVILEGES,
            title,
            Status::Ok,
            detail,
            format!(
                "Enough to load and attach ksight's programs, including the network hooks. {whose}"
            ),
        )
    } else {
        Finding::new(
            id,
            PRIVILEGES,
            title,
            Status::Warn,
            detail,
            format!(
                "Enough to load ksight's process programs, but {}. {whose}",
                gaps.join("; and ")
            ),
        )
        .fix(CAPS_FIX)
    }
}

/// A resource limit value from /proc/PID/limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Unlimited,
    Bytes(u64),
}

impl Limit {
    fn parse(s: &str) -> Option<Limit> {
        if s == "unlimited" {
            Some(Limit::Unlimited)
        } else {
            s.parse().ok().map(Limit::Bytes)
        }
    }

    fn show(self) -> String {
        match self {
            Limit::Unlimited => "unlimited".into(),
            Limit::Bytes(n) => human_bytes(n),
        }
    }
}

/// (soft, hard) "Max locked memory" limits.
fn parse_memlock(limits: &str) -> Option<(Limit, Limit)> {
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max locked memory"))?;
    let mut fields = line.split_whitespace();
    Some((Limit::parse(fields.next()?)?, Limit::parse(fields.next()?)?))
}

/// Below this, an 8 MiB ring buffer plus per-CPU scratch and maps is at risk.
const MEMLOCK_ENOUGH: u64 = 64 << 20;

fn check_memlock(root: &Path, version: Option<Version>) -> Finding {
    let id = "memlock";
    let title = "locked-memory limit";
    let limits = read_text(root, "proc/self/limits");
    let Some((soft, hard)) = limits
        .as_ref()
        .ok()
        .and_then(|l| l.as_deref())
        .and_then(parse_memlock)
    else {
        let detail = match limits {
            Err(e) => format!("cannot read {e}"),
            Ok(None) => "/proc/self/limits is missing".to_string(),
            Ok(Some(_)) => {
                "no readable \"Max locked memory\" line in /proc/self/limits".to_string()
            }
        };
        return Finding::new(
            id,
            PRIVILEGES,
            title,
            Status::Info,
            detail,
            "The limit is unknown. It matters only before 5.11, where libbpf raises it itself \
             when allowed.",
        );
    };
    let detail = format!(
        "RLIMIT_MEMLOCK soft {}, hard {} (this process, from /proc/self/limits)",
        soft.show(),
        hard.show()
    );
    if version.is_some_and(|(major, minor, _)| (major, minor) >= MEMCG_ACCOUNTING) {
        return Finding::new(
            id,
            PRIVILEGES,
            title,
            Status::Info,
            detail,
            "Irrelevant here: since 5.11 BPF maps and programs are charged to the memory cgroup, \
             not to RLIMIT_MEMLOCK. (Should this kernel lack that despite its version, libbpf \
             raises the limit itself before loading.)",
        );
    }
    let era = if version.is_some() {
        "Before 5.11"
    } else {
        "On a kernel older than 5.11 (the version is unknown here)"
    };
    match soft {
        Limit::Unlimited => Finding::new(
            id,
            PRIVILEGES,
            title,
            Status::Info,
            detail,
            format!("{era} every BPF map and program counts against this limit; unlimited, it never stops ksight."),
        ),
        Limit::Bytes(n) if n >= MEMLOCK_ENOUGH => Finding::new(
            id,
            PRIVILEGES,
            title,
            Status::Ok,
            detail,
            format!("{era} every BPF map and program counts against this limit; this one leaves room for ksight's buffers (8 MiB ring buffer or 512 KiB of perf buffer per CPU, plus scratch maps)."),
        ),
        Limit::Bytes(_) => Finding::new(
            id,
            PRIVILEGES,
            title,
            Status::Warn,
            detail,
            format!(
                "{era} every BPF map and program counts against this limit, and ksight's buffers \
                 (8 MiB ring buffer or 512 KiB of perf buffer per CPU, plus scratch maps) exceed \
                 it, so map creation fails with EPERM. libbpf raises the limit to unlimited \
                 before loading, which works only if the hard limit allows it or the process has \
                 CAP_SYS_RESOURCE (root has it; a CAP_BPF-only setup does not)."
            ),
        )
        .fix("ulimit -l unlimited in the shell that starts ksight, or LimitMEMLOCK=infinity in its systemd unit (or memlock entries in /etc/security/limits.conf)"),
    }
}

// ---- mounts ----

/// Undoes the kernel's `\ooo` escaping in mountinfo (shared with the cgroup reader).
fn unescape_octal(s: &str) -> String {
    ksight_core::cgroup::unescape_octal(s)
        .to_string_lossy()
        .into_owned()
}

/// (fs type, mount point) for each well-formed mountinfo line. Fields: the 5th is the mount
/// point; the fs type follows the " - " separator, after a variable number of optional fields.
fn parse_mountinfo(text: &str) -> Vec<(&str, String)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let mount_point = fields.nth(4)?;
            let fs_type = fields.skip_while(|f| *f != "-").nth(1)?;
            Some((fs_type, unescape_octal(mount_point)))
        })
        .collect()
}

/// One mount the doctor reports on.
struct MountCheck {
    id: &'static str,
    fs_type: &'static str,
    title: &'static str,
    absent: Status,
    present_means: &'static str,
    absent_means: &'static str,
    fix: &'static str,
}

const MOUNT_CHECKS: &[MountCheck] = &[
    MountCheck {
        id: "mount.tracefs",
        fs_type: "tracefs",
        title: "tracefs",
        absent: Status::Info,
        present_means: "Classic tracepoints and tracefs-based kprobes/uprobes can attach. ksight's \
                        tp_btf/raw_tp hooks do not need tracefs.",
        absent_means: "Classic tracepoints need tracefs; ksight uses tp_btf/raw_tp, which do not. \
                       Uprobes attach through the perf uprobe PMU (4.17+) without it; only older \
                       kernels fall back to tracefs's uprobe_events.",
        fix: "mount -t tracefs nodev /sys/kernel/tracing",
    },
    MountCheck {
        id: "mount.debugfs",
        fs_type: "debugfs",
        title: "debugfs",
        absent: Status::Info,
        present_means: "Mounted. ksight does not need debugfs; older tools look for tracing under \
                        /sys/kernel/debug/tracing.",
        absent_means: "ksight does not need debugfs; only older tools that look for tracing \
                       under /sys/kernel/debug/tracing miss it.",
        fix: "mount -t debugfs none /sys/kernel/debug",
    },
    MountCheck {
        id: "mount.bpffs",
        fs_type: "bpf",
        title: "BPF filesystem",
        absent: Status::Info,
        present_means: "Mounted, for tools that pin programs and maps. ksight pins nothing: every \
                        attachment is an fd-based link that goes away with the process.",
        absent_means: "ksight pins nothing (every attachment is an fd-based link that goes away \
                       with the process), so it does not need bpffs; bpftool and pinning tools do.",
        fix: "mount -t bpf bpf /sys/fs/bpf",
    },
    MountCheck {
        id: "mount.cgroup2",
        fs_type: "cgroup2",
        title: "cgroup v2",
        absent: Status::Warn,
        present_means: "--cgroup filters resolve their paths here, and ksight's network and DNS \
                        cgroup hooks attach to its root.",
        absent_means: "No cgroup v2 hierarchy: --cgroup filters and the network/DNS cgroup hooks \
                       need it, so they are unavailable; process events still carry the cgroup \
                       id the kernel reports.",
        fix: "mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 none /sys/fs/cgroup/unified, or boot with systemd.unified_cgroup_hierarchy=1",
    },
];

fn check_mounts(root: &Path) -> Vec<Finding> {
    let mountinfo = read_text(root, "proc/self/mountinfo");
    let mounts = match &mountinfo {
        Ok(Some(text)) => Some(parse_mountinfo(text)),
        _ => None,
    };
    MOUNT_CHECKS
        .iter()
        .map(|check| {
            let Some(mounts) = &mounts else {
                let detail = match &mountinfo {
                    Err(e) => format!("cannot read {e}"),
                    _ => "/proc/self/mountinfo is missing".to_string(),
                };
                return Finding::new(
                    check.id,
                    MOUNTS,
                    check.title,
                    Status::Info,
                    detail,
                    format!("Whether {} is mounted is unknown.", check.fs_type),
                );
            };
            let points: Vec<String> = mounts
                .iter()
                .filter(|(fs_type, _)| *fs_type == check.fs_type)
                .map(|(_, point)| clean(point))
                .collect();
            if points.is_empty() {
                let finding = Finding::new(
                    check.id,
                    MOUNTS,
                    check.title,
                    check.absent,
                    format!(
                        "no {} mount in /proc/self/mountinfo (this process's mount namespace)",
                        check.fs_type
                    ),
                    check.absent_means,
                );
                finding.fix(check.fix)
            } else {
                Finding::new(
                    check.id,
                    MOUNTS,
                    check.title,
                    Status::Ok,
                    format!("{} mounted at {}", check.fs_type, points.join(", ")),
                    check.present_means,
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/doctor")
            .join(name)
    }

    const FIXTURES: &[&str] = &["4.19-nobtf", "5.4-noringbuf", "hardened", "noconfig"];

    fn get<'a>(findings: &'a [Finding], id: &str) -> &'a Finding {
        findings
            .iter()
            .find(|f| f.id == id)
            .unwrap_or_else(|| panic!("no finding {id} in {findings:#?}"))
    }

    fn worst(findings: &[Finding]) -> Status {
        findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    fn ids_with(findings: &[Finding], status: Status) -> Vec<&str> {
        findings
            .iter()
            .filter(|f| f.status == status)
            .map(|f| f.id.as_str())
            .collect()
    }

    #[test]
    fn parse_release_cases() {
        assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18, 44)));
        assert_eq!(parse_release("5.10.0-28-amd64"), Some((5, 10, 0)));
        assert_eq!(parse_release("4.19.0"), Some((4, 19, 0)));
        assert_eq!(parse_release("4.19.0-27-amd64\n"), Some((4, 19, 0)));
        assert_eq!(parse_release("5.15.0+"), Some((5, 15, 0)));
        assert_eq!(parse_release("6.12"), Some((6, 12, 0)));
        assert_eq!(parse_release("6.9-rc1"), Some((6, 9, 0)));
        assert_eq!(parse_release("6.8.0-rc7"), Some((6, 8, 0)));
        assert_eq!(parse_release("4.18.0-553.el8_10.x86_64"), Some((4, 18, 0)));
        assert_eq!(parse_release(" 5.4.0-150-generic "), Some((5, 4, 0)));
        assert_eq!(parse_release(""), None);
        assert_eq!(parse_release("6"), None);
        assert_eq!(parse_release("6."), None);
        assert_eq!(parse_release("linux-6.1"), None);
        assert_eq!(parse_release("99999999999.1.0"), None);
        assert_eq!(parse_release("é.ü"), None);
    }

    #[test]
    fn feature_table_is_sorted_and_has_the_required_rows() {
        assert!(FEATURE_VERSIONS.windows(2).all(|w| w[0].0 <= w[1].0));
        for (version, name) in [
            ((4, 7), "tracepoints"),
            ((4, 17), "raw tracepoints"),
            ((4, 16), "bpf-to-bpf calls"),
            ((4, 18), "BTF"),
            ((5, 2), "1M instructions"),
            ((5, 2), "global variables"),
            ((5, 3), "bounded loops"),
            ((5, 5), "tp_btf"),
            ((5, 5), "probe_read_user/kernel"),
            ((5, 7), "BPF LSM"),
            ((5, 8), "ring buffer"),
            ((5, 8), "CAP_BPF/CAP_PERFMON"),
            ((5, 8), "task iterators"),
            ((5, 17), "bpf_loop"),
            ((5, 10), "tail calls mixed with bpf-to-bpf calls"),
            ((5, 10), "raw_tp BPF_PROG_TEST_RUN"),
        ] {
            assert!(
                FEATURE_VERSIONS
                    .iter()
                    .any(|(v, n, _)| *v == version && *n == name),
                "missing {name} {version:?}"
            );
        }
    }

    #[test]
    fn debian_4_19_without_btf_cannot_run() {
        let f = host_checks(&fixture("4.19-nobtf"));
        assert_eq!(worst(&f), Status::Fail);
        let mut fails = ids_with(&f, Status::Fail);
        fails.sort_unstable();
        assert_eq!(fails, ["btf.vmlinux", "config.CONFIG_DEBUG_INFO_BTF"]);
        // 4.19 has the BTF format, so the release is not a failure; it predates global
        // variables (5.2), which only the load probe can confirm: a warning.
        let release = get(&f, "kernel.release");
        assert_eq!(release.status, Status::Warn);
        assert!(release.meaning.contains("global variables"));
        assert!(release.detail.contains("4.19.0-27-amd64"));
        // 4.19 has no DEBUG_INFO_BTF option at all: "absent", read from /boot.
        let btf_cfg = get(&f, "config.CONFIG_DEBUG_INFO_BTF");
        assert!(btf_cfg
            .detail
            .contains("does not appear in /boot/config-4.19.0-27-amd64"));
        assert_eq!(get(&f, "config.CONFIG_BPF_SYSCALL").status, Status::Ok);
        assert_eq!(get(&f, "lockdown").status, Status::Info);
        assert_eq!(get(&f, "sysctl.bpf_jit_harden").status, Status::Ok);
        assert_eq!(
            get(&f, "sysctl.unprivileged_bpf_disabled").status,
            Status::Warn
        );
        let stats = get(&f, "sysctl.bpf_stats_enabled");
        assert_eq!(stats.status, Status::Info);
        assert!(stats.detail.contains("not present on this kernel"));
        // 64 KiB on a pre-5.11 kernel.
        assert_eq!(get(&f, "memlock").status, Status::Warn);
        // root on 4.19: CAP_SYS_ADMIN, and CAP_BPF does not exist yet.
        assert_eq!(get(&f, "caps").status, Status::Ok);
        // cgroup v1 only.
        assert_eq!(get(&f, "mount.cgroup2").status, Status::Warn);
        assert_eq!(get(&f, "mount.bpffs").status, Status::Info);
        let tracefs = get(&f, "mount.tracefs");
        assert_eq!(tracefs.status, Status::Ok);
        assert!(tracefs.detail.contains("/sys/kernel/debug/tracing"));
    }

    #[test]
    fn kernel_5_4_has_btf_but_predates_the_ring_buffer() {
        let f = host_checks(&fixture("5.4-noringbuf"));
        let btf = get(&f, "btf.vmlinux");
        assert_eq!(btf.status, Status::Ok, "{btf:#?}");
        assert!(btf.detail.contains("little-endian"));
        let features = get(&f, "kernel.features");
        assert_eq!(features.status, Status::Info);
        let (predated, implied) = features.detail.split_once("; implies:").unwrap();
        assert!(
            predated.contains("ring buffer (5.8)"),
            "{}",
            features.detail
        );
        assert!(predated.starts_with("5.4 predates: "));
        assert!(predated.contains("tp_btf (5.5)"));
        assert!(implied.contains("BTF (4.18)"));
        assert!(!implied.contains("ring buffer"));
        assert!(features.meaning.contains("only a hint"));
        assert!(features.meaning.contains("perf buffers"));
        // The config came from the gzip file.
        let btf_cfg = get(&f, "config.CONFIG_DEBUG_INFO_BTF");
        assert_eq!(btf_cfg.status, Status::Ok);
        assert!(btf_cfg.detail.contains("/proc/config.gz"));
        assert_eq!(get(&f, "config.CONFIG_KPROBES").status, Status::Ok);
        assert_eq!(
            get(&f, "config.CONFIG_NET_CLS_BPF").detail,
            "CONFIG_NET_CLS_BPF=m (module), in /proc/config.gz"
        );
        assert_eq!(get(&f, "config.CONFIG_BPF_LSM").status, Status::Info);
        assert_eq!(get(&f, "lockdown").status, Status::Ok);
        assert_eq!(
            get(&f, "sysctl.unprivileged_bpf_disabled").status,
            Status::Ok
        );
        assert_eq!(get(&f, "memlock").status, Status::Warn);
        assert_eq!(worst(&f), Status::Warn);
    }

    #[test]
    fn hardened_6_1_under_confidentiality_lockdown() {
        let f = host_checks(&fixture("hardened"));
        assert_eq!(get(&f, "kernel.release").status, Status::Info);
        assert_eq!(get(&f, "btf.vmlinux").status, Status::Ok);
        let lockdown = get(&f, "lockdown");
        assert_eq!(lockdown.status, Status::Fail);
        assert!(lockdown.detail.contains("[confidentiality]"));
        assert_eq!(get(&f, "sysctl.bpf_jit_harden").status, Status::Warn);
        assert!(get(&f, "sysctl.bpf_jit_kallsyms")
            .meaning
            .contains("ignored"));
        let unpriv = get(&f, "sysctl.unprivileged_bpf_disabled");
        assert_eq!(unpriv.status, Status::Ok);
        assert!(unpriv.meaning.contains("until reboot"));
        let caps = get(&f, "caps");
        assert_eq!(caps.status, Status::Fail);
        assert!(caps.detail.contains("has none"));
        assert!(get(&f, "lsm").meaning.contains("SELinux"));
        // 6.1: memcg accounting, the limit does not matter.
        assert_eq!(get(&f, "memlock").status, Status::Info);
        assert_eq!(get(&f, "config.CONFIG_BPF_LSM").status, Status::Ok);
        let mut fails = ids_with(&f, Status::Fail);
        fails.sort_unstable();
        assert_eq!(fails, ["caps", "lockdown"]);
    }

    #[test]
    fn no_config_is_one_warning_not_a_failure() {
        let f = host_checks(&fixture("noconfig"));
        let config: Vec<&Finding> = f.iter().filter(|f| f.group == CONFIG).collect();
        assert_eq!(config.len(), 1, "{config:#?}");
        assert_eq!(config[0].id, "config");
        assert_eq!(config[0].status, Status::Warn);
        assert!(config[0].detail.contains("/boot/config-6.12.0 is missing"));
        assert!(!f.iter().any(|f| f.id.starts_with("config.CONFIG_")));
        assert_eq!(worst(&f), Status::Warn);
        assert_eq!(get(&f, "memlock").status, Status::Info);
        assert_eq!(get(&f, "caps").status, Status::Ok);
        assert_eq!(get(&f, "mount.bpffs").detail, "bpf mounted at /sys/fs/bpf");
    }

    #[test]
    fn every_warn_and_fail_has_a_fix() {
        let mut roots: Vec<PathBuf> = FIXTURES.iter().map(|n| fixture(n)).collect();
        roots.push(PathBuf::from("/"));
        let empty = tempfile::tempdir().unwrap();
        roots.push(empty.path().to_path_buf());
        for root in roots {
            for f in host_checks(&root) {
                if f.status >= Status::Warn {
                    assert!(f.fix.is_some(), "{} in {}: {f:#?}", f.id, root.display());
                }
                assert!(!f.meaning.is_empty() && !f.detail.is_empty(), "{f:#?}");
            }
        }
    }

    #[test]
    fn ids_are_unique_and_the_same_on_every_kernel() {
        let non_config = |f: &[Finding]| -> Vec<String> {
            f.iter()
                .filter(|f| f.group != CONFIG)
                .map(|f| f.id.clone())
                .collect()
        };
        let empty = tempfile::tempdir().unwrap();
        let reference = non_config(&host_checks(empty.path()));
        for name in FIXTURES {
            let f = host_checks(&fixture(name));
            let mut ids: Vec<&str> = f.iter().map(|f| f.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), f.len(), "duplicate ids in {name}");
            assert_eq!(non_config(&f), reference, "{name}");
        }
        assert_eq!(
            reference.first().map(String::as_str),
            Some("kernel.release")
        );
    }

    #[test]
    fn real_host_does_not_panic_and_reports_its_release() {
        let f = host_checks(Path::new("/"));
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let finding = get(&f, "kernel.release");
        assert!(
            finding.detail.contains(release.trim()),
            "{finding:#?} vs {release}"
        );
        // JSON is what scripts consume: statuses serialize lowercase.
        let json = serde_json::to_string(&f).unwrap();
        assert!(json.contains("\"id\":\"kernel.release\""));
        assert!(!json.contains("\"status\":\"Ok\""));
    }

    #[test]
    fn empty_root_yields_findings_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = host_checks(dir.path());
        assert_eq!(get(&f, "kernel.release").status, Status::Warn);
        assert_eq!(get(&f, "btf.vmlinux").status, Status::Fail);
        assert_eq!(get(&f, "config").status, Status::Warn);
        assert_eq!(get(&f, "caps").status, Status::Warn);
    }

    /// Every file the doctor reads, filled with hostile content: nothing may panic.
    #[test]
    fn garbage_files_do_not_panic() {
        let files = [
            OSRELEASE,
            BTF_VMLINUX,
            "proc/config.gz",
            LOCKDOWN,
            LSM,
            "proc/sys/net/core/bpf_jit_enable",
            "proc/sys/net/core/bpf_jit_harden",
            "proc/sys/net/core/bpf_jit_kallsyms",
            "proc/sys/kernel/unprivileged_bpf_disabled",
            "proc/sys/kernel/perf_event_paranoid",
            "proc/sys/kernel/bpf_stats_enabled",
            "proc/self/limits",
            "proc/self/status",
            "proc/self/mountinfo",
        ];
        let contents: [&[u8]; 7] = [
            b"",
            b"\xff\xfe\x00\x1b[31m[",
            b"]][[ - - -\n\\\\\\0\\9\\777 \n",
            b"CapEff:\tzzzz\nMax locked memory x y\n",
            b"99999999999999999999999",
            b"-",
            b"1 2 3 4 \\04 x - \n1 2 3 4 5 6 -\n",
        ];
        for content in contents {
            let dir = tempfile::tempdir().unwrap();
            for rel in files {
                let path = dir.path().join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, content).unwrap();
            }
            let f = host_checks(dir.path());
            assert!(f
                .iter()
                .all(|f| f.status != Status::Ok || f.group == MOUNTS));
        }
    }

    #[test]
    fn corrupt_config_gz_falls_back_to_boot() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::write(root.join(OSRELEASE), "6.6.1\n").unwrap();
        std::fs::write(root.join("proc/config.gz"), b"\x1f\x8b\x08garbage").unwrap();
        std::fs::write(root.join("boot/config-6.6.1"), "CONFIG_BPF=y\n").unwrap();
        let f = host_checks(root);
        let bpf = get(&f, "config.CONFIG_BPF");
        assert_eq!(bpf.status, Status::Ok);
        assert!(bpf.detail.contains("/boot/config-6.6.1"));
        assert_eq!(get(&f, "config.CONFIG_BPF_SYSCALL").status, Status::Fail);
    }

    #[test]
    fn a_release_cannot_lead_outside_boot() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::write(dir.path().join("config-x"), "CONFIG_BPF=y\n").unwrap();
        std::fs::write(root.join(OSRELEASE), "../../config-x").unwrap();
        let f = host_checks(&root);
        assert_eq!(get(&f, "config").status, Status::Warn);
    }

    #[test]
    fn parsers() {
        assert_eq!(
            lockdown_mode("none [integrity] confidentiality\n"),
            Some("integrity")
        );
        assert_eq!(
            lockdown_mode("[none] integrity confidentiality"),
            Some("none")
        );
        assert_eq!(lockdown_mode("none integrity confidentiality"), None);
        assert_eq!(lockdown_mode("[none"), None);

        let config = parse_config(
            "#\n# Automatically generated file\nCONFIG_BPF=y\nCONFIG_X=m\n\
             # CONFIG_BPF_LSM is not set\nCONFIG_LSM=\"lockdown,yama\"\n",
        );
        assert_eq!(config.get("CONFIG_BPF"), Some(&"y"));
        assert_eq!(config.get("CONFIG_X"), Some(&"m"));
        assert_eq!(config.get("CONFIG_BPF_LSM"), Some(&"n"));
        assert_eq!(config.get("CONFIG_LSM"), Some(&"\"lockdown,yama\""));
        assert_eq!(config.get("CONFIG_KPROBES"), None);

        assert_eq!(
            parse_memlock(
                "Max locked memory         65536                65536                bytes\n"
            ),
            Some((Limit::Bytes(65536), Limit::Bytes(65536)))
        );
        assert_eq!(
            parse_memlock(
                "Max locked memory         unlimited            unlimited            bytes\n"
            ),
            Some((Limit::Unlimited, Limit::Unlimited))
        );
        assert_eq!(parse_memlock("Max open files 1024 1024 files\n"), None);

        let mounts = parse_mountinfo(
            "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
             40 22 0:12 / /sys/kernel/tracing rw,nosuid - tracefs tracefs rw\n\
             short line\n",
        );
        assert_eq!(
            mounts,
            [
                ("ext3", "/mnt/with space".to_string()),
                ("tracefs", "/sys/kernel/tracing".to_string())
            ]
        );
        assert_eq!(unescape_octal("a\\134b\\04"), "a\\b\\04");

        assert_eq!(human_bytes(64), "64 bytes");
        assert_eq!(human_bytes(65536), "64 KiB");
        assert_eq!(human_bytes(5_872_026), "5.6 MiB");
        assert_eq!(human_bytes(u64::MAX), "16 EiB");
        assert_eq!(clean(" a\x1bb \n"), "a\u{fffd}b");
        assert_eq!(clean(&"x".repeat(300)).chars().count(), MAX_ECHO_CHARS + 1);
    }

    #[test]
    fn capability_combinations() {
        let with_status = |cap_eff: &str| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("proc/self")).unwrap();
            std::fs::write(
                dir.path().join("proc/self/status"),
                format!("Name:\tksight\nCapInh:\t0000000000000000\nCapEff:\t{cap_eff}\n"),
            )
            .unwrap();
            check_caps(dir.path())
        };
        let bit = |b: u32| 1u64 << b;
        // root on 6.x
        assert_eq!(with_status("000001ffffffffff").status, Status::Ok);
        // CAP_BPF + CAP_PERFMON + NET_ADMIN + PTRACE + DAC_READ_SEARCH: the recommended set.
        let set = bit(CAP_BPF)
            | bit(CAP_PERFMON)
            | bit(CAP_NET_ADMIN)
            | bit(CAP_SYS_PTRACE)
            | bit(CAP_DAC_READ_SEARCH);
        assert_eq!(with_status(&format!("{set:016x}")).status, Status::Ok);
        // without NET_ADMIN: process events work, network hooks do not
        let no_net = set & !bit(CAP_NET_ADMIN);
        let f = with_status(&format!("{no_net:016x}"));
        assert_eq!(f.status, Status::Warn);
        assert!(f.meaning.contains("CAP_NET_ADMIN"));
        assert!(f.detail.contains("lacks CAP_SYS_ADMIN, CAP_NET_ADMIN"));
        // CAP_BPF alone cannot open perf events
        assert_eq!(
            with_status(&format!("{:016x}", bit(CAP_BPF))).status,
            Status::Fail
        );
        assert_eq!(with_status("0000000000000000").status, Status::Fail);
        assert_eq!(with_status("nothex").status, Status::Warn);
    }

    #[test]
    fn sysctl_values() {
        let with = |name: &str, value: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("proc/sys").join(name.replace('.', "/"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, value).unwrap();
            let key = format!("sysctl.{}", name.rsplit('.').next().unwrap());
            get(&check_sysctls(dir.path()), &key).clone()
        };
        assert_eq!(with("net.core.bpf_jit_enable", "1\n").status, Status::Ok);
        assert_eq!(with("net.core.bpf_jit_enable", "0\n").status, Status::Warn);
        assert_eq!(with("net.core.bpf_jit_enable", "2\n").status, Status::Warn);
        assert_eq!(with("net.core.bpf_jit_harden", "1\n").status, Status::Info);
        assert_eq!(
            with("kernel.unprivileged_bpf_disabled", "2\n").status,
            Status::Ok
        );
        assert_eq!(
            with("kernel.unprivileged_bpf_disabled", "0\n").status,
            Status::Warn
        );
        assert!(with("kernel.perf_event_paranoid", "4\n")
            .meaning
            .contains("denied entirely"));
        assert_eq!(with("kernel.bpf_stats_enabled", "1\n").status, Status::Info);
        assert_eq!(with("kernel.bpf_stats_enabled", "x\n").status, Status::Info);
    }

    #[test]
    fn memlock_depends_on_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/self")).unwrap();
        std::fs::write(
            dir.path().join("proc/self/limits"),
            "Limit                     Soft Limit           Hard Limit           Units     \n\
             Max locked memory         8388608              8388608              bytes     \n",
        )
        .unwrap();
        assert_eq!(
            check_memlock(dir.path(), Some((5, 10, 0))).status,
            Status::Warn
        );
        assert_eq!(check_memlock(dir.path(), None).status, Status::Warn);
        assert_eq!(
            check_memlock(dir.path(), Some((5, 11, 0))).status,
            Status::Info
        );
    }

    #[test]
    fn btf_with_a_bad_magic_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BTF_VMLINUX);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"\x7fELF").unwrap();
        let f = check_btf(dir.path());
        assert_eq!(f.status, Status::Fail);
        assert!(f.detail.contains("[7f 45]"));
        std::fs::write(&path, b"\xeb\x9f\x01\x00").unwrap();
        assert_eq!(check_btf(dir.path()).status, Status::Ok);
        std::fs::write(&path, b"\x9f").unwrap();
        assert_eq!(check_btf(dir.path()).status, Status::Fail);
    }
}
