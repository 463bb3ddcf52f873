//! The typed event model: what ksight reports, and its JSON form.
//!
//! One [`Event`] per line of JSON Lines output; docs/events.md documents the
//! schema, versioned by [`SCHEMA_VERSION`]. An event is the part every kind
//! shares (time, CPU, sequence, the process) plus a [`Detail`], which is one
//! kind's type from `kinds/`. JSON is produced only from these types (never
//! from wire structs). Strings shared by many events of one process (exe, exec
//! ids, cgroup paths) are `Arc`s held by the process table, so building an
//! event does not copy them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::field::{FieldType, Registry, Value};
use crate::text::Text;

pub use crate::kinds::{Detail, Kind};

/// Version of the JSON schema in docs/events.md; every event carries it as `v`.
pub const SCHEMA_VERSION: u32 = 1;

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Kind, String> {
        Kind::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown event kind {s:?}: expected one of {}",
                names.join(", ")
            )
        })
    }
}

/// The common record header, as decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the hook ran.
    pub ktime_ns: u64,
    /// Per-CPU sequence number; a gap means records were lost on that CPU.
    pub seq: u64,
    pub cpu: u32,
}

/// A task's identity as the kernel saw it when the hook ran (events.h `ks_task`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskFacts {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// loginuid; `None` when unset (`(uid_t)-1`) or the kernel lacks audit.
    pub auid: Option<u32>,
    /// Creation of the thread-group leader, CLOCK_BOOTTIME ns.
    pub start_ns: u64,
    /// Creation of the real parent's thread-group leader, CLOCK_BOOTTIME ns.
    pub parent_start_ns: u64,
    pub cgroup_id: u64,
    pub pidns: u32,
    pub ns_pid: u32,
    pub ns_tid: u32,
    pub comm: Vec<u8>,
}

/// Wall-clock time, nanoseconds since the Unix epoch; written as RFC 3339 UTC with ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct WallTime(pub u64);

impl WallTime {
    pub fn system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0)
    }
}

impl Serialize for WallTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_nanos(self.system_time()))
    }
}

/// Who an event is about: a process as the kernel saw it, enriched from the process table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub auid: Option<u32>,
    pub comm: Text,
    /// Path of the executable, when known (from exec, or /proc for older processes).
    pub exe: Option<Arc<Text>>,
    /// Unique id of this process image: survives PID reuse, changes at each exec.
    pub exec_id: Arc<str>,
    pub parent_exec_id: Option<Arc<str>>,
    /// When the process (its thread-group leader) was created.
    pub start_time: WallTime,
    pub cgroup_id: u64,
    /// cgroup v2 path relative to the cgroup2 mount, when resolvable.
    pub cgroup: Option<Arc<str>>,
    pub container_id: Option<Arc<str>>,
    /// Inode of the process's pid namespace, and its pid/tid inside it.
    pub pidns: u32,
    pub ns_pid: u32,
    pub ns_tid: u32,
}

/// One event, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: WallTime,
    /// CLOCK_MONOTONIC ns when the hook ran.
    pub ktime: u64,
    pub cpu: u32,
    /// Per-CPU sequence number of the record (`null` for events made in userspace).
    pub seq: Option<u64>,
    /// The process the event is about; `None` for `lost`, and for sockets
    /// whose owner ksight does not know.
    pub process: Option<Process>,
    pub detail: Detail,
}

impl Event {
    pub fn kind(&self) -> Kind {
        self.detail.kind()
    }

    /// The socket a network event is about.
    pub fn net(&self) -> Option<&crate::net::NetInfo> {
        self.detail.net()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            v: u32,
            #[serde(rename = "type")]
            kind: Kind,
            time: WallTime,
            ktime: u64,
            cpu: u32,
            seq: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            process: &'a Option<Process>,
            #[serde(flatten)]
            detail: &'a Detail,
        }
        Json {
            v: SCHEMA_VERSION,
            kind: self.kind(),
            time: self.time,
            ktime: self.ktime,
            cpu: self.cpu,
            seq: self.seq,
            process: &self.process,
            detail: &self.detail,
        }
        .serialize(s)
    }
}

/// The fields every event has (`v`, `type`, `time`, ...) and those of its
/// `process` (every kind but `lost`).
pub(crate) fn declare_common(r: &mut Registry) {
    let all: Vec<Kind> = Kind::ALL.to_vec();
    r.common("v", FieldType::Int, &all, |_| {
        Value::Int(SCHEMA_VERSION.into())
    });
    r.common("type", FieldType::Kind, &all, |e| {
        Value::Text(e.kind().name().as_bytes())
    });
    r.common("time", FieldType::Time, &all, |e| Value::Time(e.time));
    r.common("ktime", FieldType::Int, &all, |e| Value::uint(e.ktime));
    r.common("cpu", FieldType::Int, &all, |e| Value::Int(e.cpu.into()));
    r.common("seq", FieldType::Int, &all, |e| {
        e.seq.map_or(Value::Null, Value::uint)
    });
    let with_process: Vec<Kind> = all.into_iter().filter(|k| k.name() != "lost").collect();
    let k = &with_process;
    macro_rules! process {
        ($path:literal, $ty:expr, |$p:ident| $get:expr) => {
            r.common($path, $ty, k, |e| match &e.process {
                Some($p) => $get,
                None => Value::Null,
            })
        };
    }
    process!("process.pid", FieldType::Int, |p| Value::Int(p.pid.into()));
    process!("process.tid", FieldType::Int, |p| Value::Int(p.tid.into()));
    process!("process.ppid", FieldType::Int, |p| Value::Int(
        p.ppid.into()
    ));
    process!("process.uid", FieldType::Int, |p| Value::Int(p.uid.into()));
    process!("process.gid", FieldType::Int, |p| Value::Int(p.gid.into()));
    process!("process.euid", FieldType::Int, |p| Value::Int(
        p.euid.into()
    ));
    process!("process.egid", FieldType::Int, |p| Value::Int(
        p.egid.into()
    ));
    process!("process.auid", FieldType::Int, |p| p
        .auid
        .map_or(Value::Null, |a| Value::Int(a.into())));
    process!("process.comm", FieldType::Text, |p| Value::Text(
        p.comm.as_bytes()
    ));
    process!("process.exe", FieldType::Text, |p| Value::opt_text(
        p.exe.as_deref()
    ));
    process!("process.exec_id", FieldType::Text, |p| Value::Text(
        p.exec_id.as_bytes()
    ));
    process!("process.parent_exec_id", FieldType::Text, |p| p
        .parent_exec_id
        .as_deref()
        .map_or(Value::Null, |s| Value::Text(s.as_bytes())));
    process!("process.start_time", FieldType::Time, |p| Value::Time(
        p.start_time
    ));
    process!("process.cgroup_id", FieldType::Int, |p| Value::uint(
        p.cgroup_id
    ));
    process!("process.cgroup", FieldType::Text, |p| p
        .cgroup
        .as_deref()
        .map_or(Value::Null, |s| Value::Text(s.as_bytes())));
    process!("process.container_id", FieldType::Text, |p| p
        .container_id
        .as_deref()
        .map_or(Value::Null, |s| Value::Text(s.as_bytes())));
    process!("process.pidns", FieldType::Int, |p| Value::Int(
        p.pidns.into()
    ));
    process!("process.ns_pid", FieldType::Int, |p| Value::Int(
        p.ns_pid.into()
    ));
    process!("process.ns_tid", FieldType::Int, |p| Value::Int(
        p.ns_tid.into()
    ));
}

/// Name of a Linux signal number (x86_64 numbering).
pub fn signal_name(sig: u8) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match sig {
        1..=31 => Some(NAMES[sig as usize - 1]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(9), Some("SIGKILL"));
        assert_eq!(signal_name(15), Some("SIGTERM"));
        assert_eq!(signal_name(31), Some("SIGSYS"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(64), None);
    }

    #[test]
    fn kinds_are_listed_in_documentation_order() {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(&names[..3], ["exec", "fork", "exit"]);
        assert_eq!(names.last(), Some(&"lost"));
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(k));
            for &w in k.wire() {
                assert_eq!(Kind::of_wire(w), Some(k), "{k}");
            }
        }
    }
}
