//! The typed event model: what ksight reports, and its JSON form.
//!
//! One [`Event`] per line of JSON Lines output; docs/events.md documents the
//! schema, versioned by [`SCHEMA_VERSION`]. JSON is produced only from these
//! types (never from wire structs). Strings shared by many events of one
//! process (exe, exec ids, cgroup paths) are `Arc`s held by the process table,
//! so building an event does not copy them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::text::Text;

/// Version of the JSON schema in docs/events.md; every event carries it as `v`.
pub const SCHEMA_VERSION: u32 = 1;

/// Event kinds, in the order they are documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    Exec,
    Fork,
    Exit,
    Connect,
    Accept,
    Listen,
    TcpClose,
    TcpState,
    Udp,
    Dns,
    Getaddrinfo,
    Lost,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Exec,
        Kind::Fork,
        Kind::Exit,
        Kind::Connect,
        Kind::Accept,
        Kind::Listen,
        Kind::TcpClose,
        Kind::TcpState,
        Kind::Udp,
        Kind::Dns,
        Kind::Getaddrinfo,
        Kind::Lost,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Fork => "fork",
            Kind::Exit => "exit",
            Kind::Connect => "connect",
            Kind::Accept => "accept",
            Kind::Listen => "listen",
            Kind::TcpClose => "tcp_close",
            Kind::TcpState => "tcp_state",
            Kind::Udp => "udp",
            Kind::Dns => "dns",
            Kind::Getaddrinfo => "getaddrinfo",
            Kind::Lost => "lost",
        }
    }

    /// TCP/UDP events, which the network programs produce.
    pub fn is_network(self) -> bool {
        matches!(
            self,
            Kind::Connect
                | Kind::Accept
                | Kind::Listen
                | Kind::TcpClose
                | Kind::TcpState
                | Kind::Udp
                | Kind::Dns
                | Kind::Getaddrinfo
        )
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecDetail {
    /// The path given to execve, as given (may be relative).
    pub filename: Text,
    /// The program that was asked for: for a binary, the path of the file the
    /// kernel opened; for a script, the script's path.
    pub exe: Arc<Text>,
    /// The interpreter running a `#!` script, resolved; `null` for binaries.
    pub interpreter: Option<Text>,
    pub argv: Vec<Text>,
    pub argv_truncated: bool,
    pub cwd: Text,
    pub tty: Option<Text>,
    /// The thread that called execve when it was not the leader (it took over the pid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_tid: Option<u32>,
    /// A path was deeper than ksight walks; its leading components are missing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ancestor {
    pub pid: u32,
    pub exe: Option<Arc<Text>>,
    pub exec_id: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Child {
    pub pid: u32,
    pub tid: u32,
    /// `null` for a thread: it shares its process's exec_id.
    pub exec_id: Option<Arc<str>>,
    pub thread: bool,
    pub pidns: u32,
    pub ns_pid: u32,
    pub ns_tid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExitDetail {
    /// exit(2) status; `null` when a signal ended the process.
    pub code: Option<u8>,
    /// The signal that ended the process; `null` for a normal exit.
    pub signal: Option<u8>,
    pub signal_name: Option<&'static str>,
    pub core_dumped: bool,
    pub lifetime_ns: u64,
    pub utime_ns: u64,
    pub stime_ns: u64,
    pub thread: bool,
}

impl ExitDetail {
    /// Split a wait(2)-style status (`task->exit_code`).
    pub fn status(exit_code: u32) -> (Option<u8>, Option<u8>, bool) {
        let sig = (exit_code & 0x7f) as u8;
        if sig == 0 {
            (Some(((exit_code >> 8) & 0xff) as u8), None, false)
        } else {
            (None, Some(sig), exit_code & 0x80 != 0)
        }
    }
}

/// One end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// IPv4, IPv6, or IPv4-mapped IPv6 (`::ffff:1.2.3.4`), in their natural text form.
    pub addr: IpAddr,
    pub port: u16,
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Self {
        Endpoint {
            addr: a.ip(),
            port: a.port(),
        }
    }
}

/// Which socket an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetInfo {
    pub protocol: &'static str,
    pub family: &'static str,
    /// Inode of the socket's network namespace.
    pub netns: u32,
    pub local: Endpoint,
    pub remote: Endpoint,
    /// Opaque id shared by all events of one connection.
    pub sock: String,
    /// The name a DNS answer seen shortly before gave for the remote address
    /// (the name that was asked: `www.example.com`, not its CNAME target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_name: Option<String>,
}

/// How an accepted connection was attributed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceptDetail {
    /// `accept`: `process` called accept() on it (the accept hook, where the
    /// kernel allows one); `listener`: `process` owns the listening socket.
    pub by: &'static str,
    /// From the handshake's completion to accept(); `null` when ksight did
    /// not see the handshake or has no accept hook.
    pub queued_ns: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectDetail {
    /// success, refused, timeout, unreachable, aborted (closed before the
    /// handshake completed) or error.
    pub result: &'static str,
    /// The errno name (ECONNREFUSED, ...) of a failure.
    pub error: Option<&'static str>,
    pub errno: Option<u32>,
    /// From connect() to the outcome.
    pub latency_ns: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpCloseDetail {
    /// out (we connected), in (we accepted).
    pub direction: &'static str,
    pub start_time: Option<WallTime>,
    pub duration_ns: Option<u64>,
    /// Payload bytes the peer acknowledged (tcp_sock bytes_acked).
    pub bytes_sent: u64,
    /// Payload bytes received in order (tcp_sock bytes_received).
    pub bytes_received: u64,
    pub retransmits: u32,
    /// The state the connection left for CLOSE (e.g. ESTABLISHED, FIN_WAIT2, LAST_ACK).
    pub last_state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpStateDetail {
    pub old: &'static str,
    pub new: &'static str,
    /// How long the socket was in `old`; `null` when ksight did not see it enter it.
    pub time_in_old_ns: Option<u64>,
}

/// A UDP flow: one socket's traffic with one remote address and port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UdpDetail {
    pub packets_sent: u64,
    /// UDP payload bytes.
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub first_time: WallTime,
    pub last_time: WallTime,
    /// The socket is closed: these are the flow's totals. Otherwise the totals
    /// so far of a flow still open (reported every --udp-interval).
    #[serde(rename = "final")]
    pub closed: bool,
}

/// A libc getaddrinfo call, as the application saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GaiDetail {
    pub name: Text,
    /// `ok`, or the EAI_* error (EAI_NONAME, EAI_AGAIN, ...).
    pub result: String,
    /// Up to 4 of the addresses returned.
    pub addresses: Vec<IpAddr>,
    pub latency_ns: u64,
}

/// glibc's EAI_* codes.
pub fn eai_name(ret: i32) -> String {
    match ret {
        0 => "ok".into(),
        -1 => "EAI_BADFLAGS".into(),
        -2 => "EAI_NONAME".into(),
        -3 => "EAI_AGAIN".into(),
        -4 => "EAI_FAIL".into(),
        -6 => "EAI_FAMILY".into(),
        -7 => "EAI_SOCKTYPE".into(),
        -8 => "EAI_SERVICE".into(),
        -10 => "EAI_MEMORY".into(),
        -11 => "EAI_SYSTEM".into(),
        -5 => "EAI_NODATA".into(),
        n => format!("EAI_{n}"),
    }
}

/// Linux TCP state names (include/net/tcp_states.h).
pub fn tcp_state_name(state: u32) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        13 => "BOUND_INACTIVE",
        _ => "UNKNOWN",
    }
}

/// Names of the errno values a socket reports.
pub fn errno_name(errno: u32) -> Option<&'static str> {
    Some(match errno {
        1 => "EPERM",
        13 => "EACCES",
        32 => "EPIPE",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        100 => "ENETDOWN",
        101 => "ENETUNREACH",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        112 => "EHOSTDOWN",
        113 => "EHOSTUNREACH",
        _ => return None,
    })
}

impl ConnectDetail {
    /// The outcome of a connect that left SYN_SENT for `new_state` with `errno`.
    pub fn outcome(
        new_state: u32,
        errno: u32,
    ) -> (&'static str, Option<&'static str>, Option<u32>) {
        if new_state == 1 {
            return ("success", None, None);
        }
        let result = match errno {
            0 => "aborted",
            111 => "refused",
            110 => "timeout",
            101 | 113 | 112 | 100 => "unreachable",
            _ => "error",
        };
        (result, errno_name(errno), (errno != 0).then_some(errno))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostDetail {
    /// `buffer_full`: the kernel refused records (counted per CPU and kind);
    /// `skipped_runs`: the kernel skipped runs of a program because another
    /// run of it was in progress on the same CPU (a softirq interrupting it),
    /// counted per program: the records those runs would have made.
    pub reason: &'static str,
    /// Which kind of record the kernel could not deliver; `null` for skipped
    /// runs (a run makes a record of one of several kinds, or none).
    pub kind: Option<Kind>,
    /// The program whose runs were skipped (`skipped_runs` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    pub count: u64,
    /// The kernel time window in which they were lost: after `since_ktime`, up to the event's `ktime`.
    pub since_ktime: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Detail {
    Exec {
        exec: ExecDetail,
        ancestors: Vec<Ancestor>,
    },
    Fork {
        child: Child,
    },
    Exit {
        exit: ExitDetail,
    },
    Connect {
        net: NetInfo,
        connect: ConnectDetail,
    },
    Accept {
        net: NetInfo,
        accept: AcceptDetail,
    },
    Listen {
        net: NetInfo,
    },
    TcpClose {
        net: NetInfo,
        tcp: TcpCloseDetail,
    },
    TcpState {
        net: NetInfo,
        state: TcpStateDetail,
    },
    Udp {
        net: NetInfo,
        udp: UdpDetail,
    },
    Dns {
        net: NetInfo,
        dns: crate::dns::DnsDetail,
    },
    Getaddrinfo {
        getaddrinfo: GaiDetail,
    },
    Lost {
        lost: LostDetail,
    },
}

/// One event, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub time: WallTime,
    /// CLOCK_MONOTONIC ns when the hook ran.
    pub ktime: u64,
    pub cpu: u32,
    /// Per-CPU sequence number of the record (`null` for events made in userspace).
    pub seq: Option<u64>,
    /// `None` only for `lost`.
    pub process: Option<Process>,
    pub detail: Detail,
}

impl Event {
    pub fn kind(&self) -> Kind {
        match self.detail {
            Detail::Exec { .. } => Kind::Exec,
            Detail::Fork { .. } => Kind::Fork,
            Detail::Exit { .. } => Kind::Exit,
            Detail::Connect { .. } => Kind::Connect,
            Detail::Accept { .. } => Kind::Accept,
            Detail::Listen { .. } => Kind::Listen,
            Detail::TcpClose { .. } => Kind::TcpClose,
            Detail::TcpState { .. } => Kind::TcpState,
            Detail::Udp { .. } => Kind::Udp,
            Detail::Dns { .. } => Kind::Dns,
            Detail::Getaddrinfo { .. } => Kind::Getaddrinfo,
            Detail::Lost { .. } => Kind::Lost,
        }
    }

    /// The socket a network event is about.
    pub fn net(&self) -> Option<&NetInfo> {
        match &self.detail {
            Detail::Connect { net, .. }
            | Detail::Accept { net, .. }
            | Detail::Listen { net }
            | Detail::TcpClose { net, .. }
            | Detail::TcpState { net, .. }
            | Detail::Udp { net, .. }
            | Detail::Dns { net, .. } => Some(net),
            _ => None,
        }
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("v", &SCHEMA_VERSION)?;
        m.serialize_entry("type", &self.kind())?;
        m.serialize_entry("time", &self.time)?;
        m.serialize_entry("ktime", &self.ktime)?;
        m.serialize_entry("cpu", &self.cpu)?;
        m.serialize_entry("seq", &self.seq)?;
        if let Some(p) = &self.process {
            m.serialize_entry("process", p)?;
        }
        match &self.detail {
            Detail::Exec { exec, ancestors } => {
                m.serialize_entry("exec", exec)?;
                m.serialize_entry("ancestors", ancestors)?;
            }
            Detail::Fork { child } => m.serialize_entry("child", child)?,
            Detail::Exit { exit } => m.serialize_entry("exit", exit)?,
            Detail::Connect { net, connect } => {
                m.serialize_entry("net", net)?;
                m.serialize_entry("connect", connect)?;
            }
            Detail::Accept { net, accept } => {
                m.serialize_entry("net", net)?;
                m.serialize_entry("accept", accept)?;
            }
            Detail::Listen { net } => m.serialize_entry("net", net)?,
            Detail::TcpClose { net, tcp } => {
                m.serialize_entry("net", net)?;
                m.serialize_entry("tcp", tcp)?;
            }
            Detail::TcpState { net, state } => {
                m.serialize_entry("net", net)?;
                m.serialize_entry("state", state)?;
            }
            Detail::Udp { net, udp } => {
                m.serialize_entry("net", net)?;
                m.serialize_entry("udp", udp)?;
            }
            Detail::Dns { net, dns } => {
                m.serialize_entry("net", net)?;
                m.serialize_entry("dns", dns)?;
            }
            Detail::Getaddrinfo { getaddrinfo } => m.serialize_entry("getaddrinfo", getaddrinfo)?,
            Detail::Lost { lost } => m.serialize_entry("lost", lost)?,
        }
        m.end()
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
    fn exit_status_split() {
        assert_eq!(ExitDetail::status(42 << 8), (Some(42), None, false));
        assert_eq!(ExitDetail::status(9), (None, Some(9), false));
        assert_eq!(ExitDetail::status(11 | 0x80), (None, Some(11), true));
        assert_eq!(ExitDetail::status(0), (Some(0), None, false));
    }

    #[test]
    fn connect_outcomes() {
        assert_eq!(ConnectDetail::outcome(1, 0), ("success", None, None));
        assert_eq!(
            ConnectDetail::outcome(7, 111),
            ("refused", Some("ECONNREFUSED"), Some(111))
        );
        assert_eq!(
            ConnectDetail::outcome(7, 110),
            ("timeout", Some("ETIMEDOUT"), Some(110))
        );
        assert_eq!(ConnectDetail::outcome(7, 113).0, "unreachable");
        assert_eq!(ConnectDetail::outcome(7, 0).0, "aborted");
        assert_eq!(ConnectDetail::outcome(7, 5), ("error", None, Some(5)));
        assert_eq!(tcp_state_name(6), "TIME_WAIT");
        assert_eq!(tcp_state_name(99), "UNKNOWN");
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(9), Some("SIGKILL"));
        assert_eq!(signal_name(15), Some("SIGTERM"));
        assert_eq!(signal_name(31), Some("SIGSYS"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(64), None);
    }

    #[test]
    fn lost_event_json_shape() {
        let ev = Event {
            time: WallTime(1_700_000_000_123_456_789),
            ktime: 5,
            cpu: 1,
            seq: None,
            process: None,
            detail: Detail::Lost {
                lost: LostDetail {
                    reason: "buffer_full",
                    kind: Some(Kind::Exec),
                    program: None,
                    count: 3,
                    since_ktime: 1,
                },
            },
        };
        let v: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["type"], "lost");
        assert_eq!(v["time"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(v["lost"]["kind"], "exec");
        assert_eq!(v["lost"]["reason"], "buffer_full");
        assert!(v["lost"].get("program").is_none());
        assert_eq!(v["lost"]["count"], 3);
        assert!(v.get("process").is_none());

        let skipped = LostDetail {
            reason: "skipped_runs",
            kind: None,
            program: Some("ks_tcp_btf".into()),
            count: 2,
            since_ktime: 1,
        };
        let v = serde_json::to_value(&skipped).unwrap();
        assert_eq!(v["kind"], serde_json::Value::Null);
        assert_eq!(v["program"], "ks_tcp_btf");
    }
}
