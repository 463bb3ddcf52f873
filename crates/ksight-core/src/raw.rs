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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEvent {
    Exec(RawExec),
    Fork(RawFork),
    Exit(RawExit),
}

impl RawEvent {
    pub fn header(&self) -> &Header {
        match self {
            RawEvent::Exec(e) => &e.hdr,
            RawEvent::Fork(e) => &e.hdr,
            RawEvent::Exit(e) => &e.hdr,
        }
    }
}
