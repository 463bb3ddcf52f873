//! The parts every event is made of: the record header, the kernel's view of a
//! task, the enriched process, wall-clock time. Below the kinds: every kind's
//! module uses these, and none of them knows any kind.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::runtime::ContainerInfo;

use crate::text::Text;

/// Version of the JSON schema in docs/events.md; every event carries it as `v`.
pub const SCHEMA_VERSION: u32 = 1;

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
    /// Read from /proc by ksight, not recorded by a hook: the owner of a
    /// socket older than ksight (written `net.owner_source: "procfs"`).
    pub from_procfs: bool,
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
    /// The container, as its runtime describes it (name, image, labels, pod),
    /// once ksight has asked (the first events of a new container lack it; a
    /// `container` event announces it when known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Arc<ContainerInfo>>,
    /// Inode of the process's pid namespace, and its pid/tid inside it.
    pub pidns: u32,
    pub ns_pid: u32,
    pub ns_tid: u32,
}

/// An event whose kind-specific part is `D`: what a kind makes (`D` its own
/// type), and, with `D` = `Detail`, what ksight writes (`event::Event`).
#[derive(Debug, Clone, PartialEq)]
pub struct EventOf<D> {
    pub time: WallTime,
    /// CLOCK_MONOTONIC ns when the hook ran.
    pub ktime: u64,
    pub cpu: u32,
    /// Per-CPU sequence number of the record (`null` for events made in userspace).
    pub seq: Option<u64>,
    /// The process the event is about; `None` for `lost`, and for sockets
    /// whose owner ksight does not know.
    pub process: Option<Process>,
    pub detail: D,
}

impl<D> EventOf<D> {
    /// The same event with its detail converted (a kind's into `Detail`).
    pub fn map<E>(self, f: impl FnOnce(D) -> E) -> EventOf<E> {
        EventOf {
            time: self.time,
            ktime: self.ktime,
            cpu: self.cpu,
            seq: self.seq,
            process: self.process,
            detail: f(self.detail),
        }
    }
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
}
