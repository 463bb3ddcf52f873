//! What the kernel said, typed but not yet enriched.
//!
//! `ksight-bpf`'s decoder turns each ring-buffer record into one [`RawEvent`];
//! [`crate::enrich::Enricher`] turns that into an [`crate::event::Event`] by adding
//! what only userspace knows (exec ids, exe of non-exec events, cgroup paths,
//! ancestors). Nothing here has been interpreted beyond splitting byte fields.

/// The common record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the hook ran.
    pub ktime_ns: u64,
    /// Per-CPU sequence number; a gap means records were lost on that CPU.
    pub seq: u64,
    pub cpu: u32,
}

/// A task's identity as the kernel saw it when the hook ran.
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
    /// Start of the thread-group leader, CLOCK_MONOTONIC ns.
    pub start_ns: u64,
    /// Start of the real parent's thread-group leader, CLOCK_MONOTONIC ns.
    pub parent_start_ns: u64,
    pub cgroup_id: u64,
    pub pidns: u32,
    pub ns_pid: u32,
    pub ns_tid: u32,
    pub comm: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawExec {
    pub hdr: Header,
    pub task: TaskFacts,
    pub old_tid: u32,
    pub argv: Vec<Vec<u8>>,
    pub argv_truncated: bool,
    /// argv could not be read at all (it is empty then).
    pub argv_fault: bool,
    /// The path given to execve, as given.
    pub filename: Vec<u8>,
    /// Absolute path of the file the kernel opened for `filename`; `None` for scripts.
    pub exe: Option<Vec<u8>>,
    /// Absolute path of the interpreter that runs a `#!` (or binfmt_misc) script.
    pub interpreter: Option<Vec<u8>>,
    pub cwd: Vec<u8>,
    /// A path walk stopped early: the path lacks its leading components.
    pub path_truncated: bool,
    pub tty: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawFork {
    pub hdr: Header,
    /// The parent: the task that called fork/clone.
    pub task: TaskFacts,
    pub child_pid: u32,
    pub child_tid: u32,
    pub child_start_ns: u64,
    pub child_pidns: u32,
    pub child_ns_pid: u32,
    pub child_ns_tid: u32,
    pub thread: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawExit {
    pub hdr: Header,
    pub task: TaskFacts,
    /// `task->exit_code`, laid out as a wait(2) status.
    pub exit_code: u32,
    pub utime_ns: u64,
    pub stime_ns: u64,
    pub thread: bool,
}

/// Which TCP record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcpKind {
    /// The outcome of an outbound connect (established, or failed with `error`).
    #[default]
    Connect,
    /// An inbound connection completed its handshake.
    Accept,
    /// A socket started listening.
    Listen,
    /// A connection ended.
    Close,
    /// Any state transition (opt-in).
    State,
}

/// A TCP socket's endpoints, as the kernel holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    pub local: std::net::SocketAddr,
    pub remote: std::net::SocketAddr,
    pub netns: u32,
}

impl Default for Tuple {
    fn default() -> Self {
        let any = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        Tuple {
            local: any,
            remote: any,
            netns: 0,
        }
    }
}
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawTcp {
    pub hdr: Header,
    pub kind: TcpKind,
    /// The socket's owner, captured in process context; `None` when unknown.
    pub owner: Option<TaskFacts>,
    pub tuple: Tuple,
    /// Kernel address of the socket: an opaque id shared by a connection's records.
    pub sock: u64,
    pub outbound: bool,
    pub inbound: bool,
    /// `owner` called accept() on it (the accept hook); otherwise an inbound
    /// connection's owner is its listener's.
    pub accepted: bool,
    /// When the connection began (connect called / accept completed); 0 if unknown.
    pub start_ns: u64,
    /// When it entered `old_state`; 0 if unknown.
    pub state_ns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retransmits: u32,
    /// errno (sk_err) of a failed connect; 0 otherwise.
    pub error: u32,
    pub old_state: u32,
    pub new_state: u32,
}

/// A UDP socket was released: its flows are final.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawUdpClose {
    pub hdr: Header,
    pub cookie: u64,
    /// The socket's owner, captured at socket creation; `None` when unknown.
    pub owner: Option<TaskFacts>,
    pub netns: u32,
    /// The remotes of the socket's flows, when the kernel could list them all;
    /// `None`: look for its flows by scanning.
    pub remotes: Option<Vec<std::net::SocketAddr>>,
}

/// One UDP flow's counters, as read from the kernel's flow map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawUdpFlow {
    pub cookie: u64,
    pub local: std::net::SocketAddr,
    pub remote: std::net::SocketAddr,
    pub first_ns: u64,
    pub last_ns: u64,
    pub packets_sent: u64,
    /// UDP payload bytes.
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
}

/// A datagram to or from a DNS port, as captured (payload not parsed yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDns {
    pub hdr: Header,
    /// The socket's owner, captured at socket creation; `None` when unknown.
    pub owner: Option<TaskFacts>,
    pub netns: u32,
    pub cookie: u64,
    pub src: std::net::SocketAddr,
    pub dst: std::net::SocketAddr,
    /// Sent by this host's socket (else received).
    pub egress: bool,
    /// The full UDP payload (or TCP segment payload) length; `data` may hold less.
    pub len: u32,
    pub data: Vec<u8>,
    /// A TCP segment: `data` starts with the message's 2-byte length.
    pub tcp: bool,
}

/// A libc getaddrinfo call (entered) or its result (returned).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawGai {
    pub hdr: Header,
    pub task: TaskFacts,
    /// `false`: the call was entered; `true`: it returned (ret, addrs, latency).
    pub returned: bool,
    pub name: Vec<u8>,
    pub ret: i32,
    pub latency_ns: u64,
    pub addrs: Vec<std::net::IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEvent {
    Exec(RawExec),
    Fork(RawFork),
    Exit(RawExit),
    Tcp(RawTcp),
    UdpClose(RawUdpClose),
    Dns(RawDns),
    Gai(RawGai),
}

impl RawEvent {
    pub fn header(&self) -> &Header {
        match self {
            RawEvent::Exec(e) => &e.hdr,
            RawEvent::Fork(e) => &e.hdr,
            RawEvent::Exit(e) => &e.hdr,
            RawEvent::Tcp(e) => &e.hdr,
            RawEvent::UdpClose(e) => &e.hdr,
            RawEvent::Dns(e) => &e.hdr,
            RawEvent::Gai(e) => &e.hdr,
        }
    }
}
