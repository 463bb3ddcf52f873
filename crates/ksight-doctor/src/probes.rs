//! The doctor's real probes: program types, maps, helpers and every kind of
//! hook, tried on this kernel (ksight-bpf's `probe`), as findings that say
//! what a refusal costs ksight.

use std::path::Path;

use ksight_bpf::probe::{self, Hook, Outcome};

use crate::{Finding, Status};

fn finding(
    id: String,
    group: &'static str,
    title: String,
    status: Status,
    detail: String,
    meaning: &str,
    fix: Option<&str>,
) -> Finding {
    Finding::new(id, group, title, status, detail, meaning).fix_opt(fix)
}

pub(crate) fn describe(o: &Outcome) -> String {
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

/// Every probe of ksight-bpf's `probe`, as findings.
pub fn findings(cgroup2: Option<&Path>) -> Vec<Finding> {
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
