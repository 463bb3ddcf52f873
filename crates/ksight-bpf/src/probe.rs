//! Real probes of what this kernel lets ksight do, for `ksight doctor`.
//!
//! Nothing here is inferred from the kernel version: each answer is the
//! kernel's own, from loading (and where it matters attaching, then at once
//! detaching) a program, creating a map, or loading ksight's own programs.
//! Results are facts with the kernel's error; the doctor turns them into
//! findings with meaning and fixes.

use std::os::fd::AsRawFd;
use std::path::Path;

use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapType, ProgramType, UprobeOpts};

use crate::agent::Agent;
use crate::object::{self, capture_libbpf_log, last_libbpf_line, LoadError};
use crate::sensor::{AttachMode, Config};
use crate::transport::TransportMode;

/// The kernel's answer to one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Works,
    /// Refused: the errno name (ENOENT, EPERM, ...) when known, and the message.
    Refused {
        errno: Option<&'static str>,
        message: String,
    },
}

impl Outcome {
    pub fn works(&self) -> bool {
        *self == Outcome::Works
    }

    /// A refusal, explained by the error and by libbpf's last words about it
    /// (e.g. "failed to determine tracepoint ... perf event ID: -ENOENT").
    fn from_err(e: &libbpf_rs::Error) -> Outcome {
        let mut message = e.to_string();
        let logged = last_libbpf_line();
        if let Some(line) = &logged {
            message = format!("{message}: {}", line.trim_start_matches("libbpf: ").trim());
        }
        let errno = errno_name(&e.to_string())
            .or_else(|| logged.as_deref().and_then(errno_in_log))
            .or_else(|| errno_of_kind(e.kind()));
        Outcome::Refused { errno, message }
    }

    /// A refused load or open: the libbpf error inside it.
    fn from_load(e: &LoadError) -> Outcome {
        match e {
            LoadError::Open(e) | LoadError::Load { source: e, .. } => Outcome::from_err(e),
            other => Outcome::Refused {
                errno: None,
                message: other.to_string(),
            },
        }
    }

    fn from_bool(r: libbpf_rs::Result<bool>) -> Outcome {
        match r {
            Ok(true) => Outcome::Works,
            Ok(false) => Outcome::Refused {
                errno: None,
                message: "not supported by this kernel".into(),
            },
            Err(e) => Outcome::from_err(&e),
        }
    }
}

/// The errno in a libbpf-rs message ("... (os error 2)").
fn errno_name(message: &str) -> Option<&'static str> {
    let n: i32 = message
        .rsplit_once("os error ")?
        .1
        .trim_end_matches(')')
        .parse()
        .ok()?;
    Some(match n {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINVAL => "EINVAL",
        libc::EACCES => "EACCES",
        libc::E2BIG => "E2BIG",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        524 => "ENOTSUPP", // kernel-internal, seen through BPF syscalls
        libc::ESRCH => "ESRCH",
        libc::EBADF => "EBADF",
        libc::ENODEV => "ENODEV",
        _ => return None,
    })
}

/// "-ENOENT" and the like in a libbpf log line.
fn errno_in_log(line: &str) -> Option<&'static str> {
    [
        "EPERM",
        "ENOENT",
        "EINVAL",
        "EACCES",
        "E2BIG",
        "EOPNOTSUPP",
        "ENOTSUPP",
        "ESRCH",
        "ENODEV",
    ]
    .into_iter()
    .find(|e| line.contains(&format!("-{e}")))
}

fn errno_of_kind(kind: libbpf_rs::ErrorKind) -> Option<&'static str> {
    use libbpf_rs::ErrorKind as K;
    Some(match kind {
        K::NotFound => "ENOENT",
        K::PermissionDenied => "EPERM",
        K::InvalidInput => "EINVAL",
        K::Unsupported => "EOPNOTSUPP",
        _ => return None,
    })
}

/// Hook kinds ksight could use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Tracepoint,
    RawTracepoint,
    TpBtf,
    Kprobe,
    Fentry,
    Lsm,
    Uprobe,
    Cgroup,
    TaskIter,
}

impl Hook {
    pub const ALL: [Hook; 9] = [
        Hook::TpBtf,
        Hook::RawTracepoint,
        Hook::Tracepoint,
        Hook::Kprobe,
        Hook::Fentry,
        Hook::Lsm,
        Hook::Uprobe,
        Hook::Cgroup,
        Hook::TaskIter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Hook::Tracepoint => "tracepoint",
            Hook::RawTracepoint => "raw_tp",
            Hook::TpBtf => "tp_btf",
            Hook::Kprobe => "kprobe",
            Hook::Fentry => "fentry",
            Hook::Lsm => "lsm",
            Hook::Uprobe => "uprobe",
            Hook::Cgroup => "cgroup",
            Hook::TaskIter => "task_iter",
        }
    }

    fn program(self) -> &'static str {
        match self {
            Hook::Tracepoint => "ks_probe_tracepoint",
            Hook::RawTracepoint => "ks_probe_raw_tp",
            Hook::TpBtf => "ks_probe_tp_btf",
            Hook::Kprobe => "ks_probe_kprobe",
            Hook::Fentry => "ks_probe_fentry",
            Hook::Lsm => "ks_probe_lsm",
            Hook::Uprobe => "ks_probe_uprobe",
            Hook::Cgroup => "ks_probe_cgroup",
            Hook::TaskIter => "ks_probe_iter",
        }
    }
}

#[derive(Debug, Clone)]
pub struct HookProbe {
    pub hook: Hook,
    /// What was attached to, for the report.
    pub target: String,
    pub load: Outcome,
    /// `None` when the load already failed.
    pub attach: Option<Outcome>,
}

/// Load (and attach, then detach) one program of each hook kind.
pub fn hooks(cgroup2: Option<&Path>) -> Vec<HookProbe> {
    capture_libbpf_log();
    Hook::ALL
        .into_iter()
        .map(|hook| probe_hook(hook, cgroup2))
        .collect()
}

fn probe_hook(hook: Hook, cgroup2: Option<&Path>) -> HookProbe {
    let _ = last_libbpf_line(); // start from a clean log
    let mut target = match hook {
        Hook::Tracepoint | Hook::RawTracepoint | Hook::TpBtf => "sched/sched_process_exec".into(),
        Hook::Kprobe | Hook::Fentry => "do_nanosleep".into(),
        Hook::Lsm => "bprm_check_security".into(),
        Hook::Uprobe => "getpid in libc".into(),
        Hook::Cgroup => "connect4 on the cgroup v2 root".into(),
        Hook::TaskIter => "iter/task".into(),
    };
    let refused = |load: Outcome, target: String| HookProbe {
        hook,
        target,
        load,
        attach: None,
    };
    let mut open = match object::open("probe", crate::object!("probe"), None) {
        Ok(o) => o,
        Err(e) => return refused(Outcome::from_load(&e), target),
    };
    open.programs(|name, _| name == hook.program());
    let obj = match open.load("probe") {
        Ok(o) => o,
        Err(e) => return refused(Outcome::from_load(&e), target),
    };
    let Some(prog) = obj.progs_mut().find(|p| p.name() == hook.program()) else {
        return HookProbe {
            hook,
            target,
            load: Outcome::Refused {
                errno: None,
                message: "program missing from the probe object".into(),
            },
            attach: None,
        };
    };
    let attached = match hook {
        Hook::Uprobe => match crate::sys::libc_path() {
            Some(libc) => {
                target = format!("getpid in {}", libc.display());
                let opts = UprobeOpts {
                    func_name: Some("getpid".into()),
                    ..Default::default()
                };
                prog.attach_uprobe_with_opts(std::process::id() as i32, libc, 0, opts)
            }
            None => Err(libbpf_rs::Error::from_raw_os_error(libc::ENOENT)),
        },
        Hook::Cgroup => match cgroup2.map(std::fs::File::open) {
            Some(Ok(dir)) => prog.attach_cgroup(dir.as_raw_fd()),
            Some(Err(e)) => Err(libbpf_rs::Error::from(e)),
            None => Err(libbpf_rs::Error::from_raw_os_error(libc::ENOENT)),
        },
        _ => prog.attach(),
    };
    // the link is dropped here: detached at once
    HookProbe {
        hook,
        target,
        load: Outcome::Works,
        attach: Some(match attached {
            Ok(_link) => Outcome::Works,
            Err(e) => Outcome::from_err(&e),
        }),
    }
}

/// Program types, map types and helpers ksight uses or could use.
#[derive(Debug, Clone)]
pub struct Support {
    pub prog_types: Vec<(&'static str, Outcome)>,
    pub map_types: Vec<(&'static str, Outcome)>,
    /// Helpers, probed from a raw tracepoint program.
    pub helpers: Vec<(&'static str, Outcome)>,
}

pub fn support() -> Support {
    capture_libbpf_log();
    // tracing and lsm types cannot be probed without an attach target: the
    // hook probes (tp_btf, fentry, lsm, iter) test them for real
    let prog_types = [
        ("tracepoint", ProgramType::Tracepoint),
        ("raw_tracepoint", ProgramType::RawTracepoint),
        ("kprobe/uprobe", ProgramType::Kprobe),
        ("cgroup_sock_addr", ProgramType::CgroupSockAddr),
        ("cgroup_sock", ProgramType::CgroupSock),
        ("cgroup_skb", ProgramType::CgroupSkb),
        ("sock_ops", ProgramType::SockOps),
        ("sched_cls (tc)", ProgramType::SchedCls),
        ("xdp", ProgramType::Xdp),
    ]
    .map(|(n, t)| (n, Outcome::from_bool(t.is_supported())))
    .to_vec();
    let map_types = [
        ("ringbuf", MapType::RingBuf),
        ("perf_event_array", MapType::PerfEventArray),
        ("lru_hash", MapType::LruHash),
        ("percpu_array", MapType::PercpuArray),
        ("task_storage", MapType::TaskStorage),
        ("sk_storage", MapType::SkStorage),
        ("cgroup_array", MapType::CgroupArray),
    ]
    .map(|(n, t)| (n, Outcome::from_bool(t.is_supported())))
    .to_vec();
    let helpers = [
        ("bpf_ringbuf_output", libbpf_sys::BPF_FUNC_ringbuf_output),
        ("bpf_ringbuf_query", libbpf_sys::BPF_FUNC_ringbuf_query),
        (
            "bpf_perf_event_output",
            libbpf_sys::BPF_FUNC_perf_event_output,
        ),
        (
            "bpf_probe_read_kernel",
            libbpf_sys::BPF_FUNC_probe_read_kernel,
        ),
        ("bpf_probe_read_user", libbpf_sys::BPF_FUNC_probe_read_user),
        (
            "bpf_probe_read_kernel_str",
            libbpf_sys::BPF_FUNC_probe_read_kernel_str,
        ),
        (
            "bpf_get_current_cgroup_id",
            libbpf_sys::BPF_FUNC_get_current_cgroup_id,
        ),
        (
            "bpf_current_task_under_cgroup",
            libbpf_sys::BPF_FUNC_current_task_under_cgroup,
        ),
        (
            "bpf_get_current_task",
            libbpf_sys::BPF_FUNC_get_current_task,
        ),
        ("bpf_ktime_get_ns", libbpf_sys::BPF_FUNC_ktime_get_ns),
        ("bpf_loop", libbpf_sys::BPF_FUNC_loop),
    ]
    .map(|(n, id)| {
        (
            n,
            Outcome::from_bool(ProgramType::RawTracepoint.is_helper_supported(id)),
        )
    })
    .to_vec();
    Support {
        prog_types,
        map_types,
        helpers,
    }
}

/// ksight's own programs, loaded (not attached) in one configuration.
#[derive(Debug, Clone)]
pub struct OwnLoad {
    pub attach: AttachMode,
    pub transport: TransportMode,
    /// The process sensor, without which nothing runs.
    pub outcome: Outcome,
    /// The error in full (verifier log tail included) when refused.
    pub detail: Option<String>,
    /// Every other sensor, when the process sensor loaded.
    pub sensors: Vec<OwnSensor>,
}

/// One of ksight's sensors, loaded in one configuration.
#[derive(Debug, Clone)]
pub struct OwnSensor {
    pub spec: &'static crate::sensor::Spec,
    pub outcome: Outcome,
    /// Its hook flavour (the accept() hook), or the error in full.
    pub detail: Option<String>,
}

fn refused(e: &LoadError) -> (Outcome, Option<String>) {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or_default().to_string();
    (
        Outcome::Refused {
            errno: errno_name(&first),
            message: first,
        },
        Some(full),
    )
}

/// Load every sensor in each hook flavour and transport, without attaching.
pub fn own_programs() -> Vec<OwnLoad> {
    let mut out = Vec::new();
    for (attach, transport) in [
        (AttachMode::TpBtf, TransportMode::Ringbuf),
        (AttachMode::RawTp, TransportMode::Ringbuf),
        (AttachMode::TpBtf, TransportMode::Perf),
        (AttachMode::RawTp, TransportMode::Perf),
    ] {
        let cfg = Config {
            attach,
            transport,
            ..Config::default()
        };
        let (outcome, detail, sensors) = match Agent::load_only(&cfg) {
            Ok(loads) => {
                let sensors = loads
                    .into_iter()
                    .filter(|l| !l.spec.wanted_by.is_empty())
                    .map(|l| {
                        let (outcome, detail) = match &l.result {
                            Ok(hook) => (Outcome::Works, hook.map(str::to_string)),
                            Err(e) => refused(e),
                        };
                        OwnSensor {
                            spec: l.spec,
                            outcome,
                            detail,
                        }
                    })
                    .collect();
                (Outcome::Works, None, sensors)
            }
            Err(e) => {
                let (o, d) = refused(&e);
                (o, d, Vec::new())
            }
        };
        out.push(OwnLoad {
            attach,
            transport,
            outcome,
            detail,
            sensors,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_come_from_libbpf_messages() {
        assert_eq!(
            errno_name("Operation not permitted (os error 1)"),
            Some("EPERM")
        );
        assert_eq!(
            errno_name("No such file or directory (os error 2)"),
            Some("ENOENT")
        );
        assert_eq!(errno_name("weird"), None);
        assert_eq!(errno_name("x (os error 9999)"), None);
    }
}
