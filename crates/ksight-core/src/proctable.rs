//! The process table: what ksight knows about every live process.
//!
//! Seeded from /proc at start, then kept current by fork/exec/exit events, so
//! that an event of any process (also one older than ksight) carries its exe,
//! exec id and parent chain.
//!
//! Invariants:
//! - one entry per pid; an entry is the same process as an event's task only
//!   if their start times agree (exactly, or within `tolerance_ns` for entries
//!   seeded from /proc, whose start time has clock-tick precision). A mismatch
//!   means the pid was reused: the old entry is replaced.
//! - exited entries stay `grace_ns` (so late events of their children still
//!   find their parent) and are then evicted; at most `max_exited` wait, the
//!   oldest go first when more do. Memory is bounded by live processes plus that.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::context::FileKey;
use crate::text::Text;

#[derive(Debug, Clone)]
pub struct Entry {
    pub pid: u32,
    /// Thread-group leader creation, CLOCK_BOOTTIME ns (the kernel side's and /proc's clock).
    pub start_ns: u64,
    /// `start_ns` came from a kernel event, not from /proc's clock ticks.
    pub precise: bool,
    pub ppid: u32,
    pub exec_id: Arc<str>,
    pub parent_exec_id: Option<Arc<str>>,
    pub exe: Option<Arc<Text>>,
    /// The image's file (from its exec, or its parent's at fork): ties it to
    /// the hash of that file.
    pub file: Option<FileKey>,
    /// Capabilities permitted after its last exec, when ksight saw it.
    pub caps: Option<u64>,
    /// Its credentials and names as the last hook that ran in it recorded
    /// them: who it is when an event names only its pid (a file event).
    pub seen: Option<Seen>,
    pub exited: bool,
}

/// What a hook recorded of a process, kept without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub auid: Option<u32>,
    pub cgroup_id: u64,
    pub pidns: u32,
    pub ns_pid: u32,
    pub comm: [u8; 16],
}

pub struct ProcessTable {
    entries: HashMap<u32, Entry>,
    /// (exit ktime, pid, start_ns) in exit order.
    exited: VecDeque<(u64, u32, u64)>,
    boot: Arc<str>,
    grace_ns: u64,
    tolerance_ns: u64,
    max_exited: usize,
}

impl ProcessTable {
    /// `boot` prefixes every exec id (a few hex digits of the boot id make ids
    /// from different boots differ); `tolerance_ns` is the precision of /proc start times.
    pub fn new(boot: &str, grace_ns: u64, tolerance_ns: u64) -> Self {
        ProcessTable {
            entries: HashMap::new(),
            exited: VecDeque::new(),
            boot: boot.into(),
            grace_ns,
            tolerance_ns,
            max_exited: 1 << 18,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `<boot>:<start or exec ktime>:<pid>`: unique per boot, since a pid is never
    /// reused at the same nanosecond, and new at every exec.
    pub fn exec_id(&self, pid: u32, ns: u64) -> Arc<str> {
        format!("{}:{ns}:{pid}", self.boot).into()
    }

    /// The entry of (pid, start_ns) if it is that process.
    pub fn get(&self, pid: u32, start_ns: u64) -> Option<&Entry> {
        self.entries.get(&pid).filter(|e| self.same(e, start_ns))
    }

    /// The entry of `pid` if its start time is within /proc's precision of
    /// `start_ns` (a start time read from /proc, not from a hook).
    pub fn get_near(&self, pid: u32, start_ns: u64) -> Option<&Entry> {
        (self.entries.get(&pid)).filter(|e| e.start_ns.abs_diff(start_ns) <= self.tolerance_ns)
    }

    /// Whatever entry `pid` has now, without a start-time check.
    /// Up to `n` live processes other than `pid` whose image is the file
    /// (dev, inode): other ways into a file that no path holds any more.
    pub fn running(&self, key: &FileKey, pid: u32, n: usize) -> Vec<u32> {
        self.entries
            .values()
            .filter(|e| {
                e.pid != pid
                    && !e.exited
                    && e.file
                        .is_some_and(|f| f.dev == key.dev && f.inode == key.inode)
            })
            .map(|e| e.pid)
            .take(n)
            .collect()
    }

    pub fn get_pid(&self, pid: u32) -> Option<&Entry> {
        self.entries.get(&pid)
    }

    pub fn get_pid_mut(&mut self, pid: u32) -> Option<&mut Entry> {
        self.entries.get_mut(&pid)
    }

    fn same(&self, e: &Entry, start_ns: u64) -> bool {
        if e.precise {
            e.start_ns == start_ns
        } else {
            e.start_ns.abs_diff(start_ns) <= self.tolerance_ns
        }
    }

    /// The entry of (pid, start_ns), created by `make` when missing or stale.
    pub fn get_or_insert_with(
        &mut self,
        pid: u32,
        start_ns: u64,
        make: impl FnOnce(&Self) -> Entry,
    ) -> &mut Entry {
        let fresh = match self.entries.get(&pid) {
            Some(e) => !self.same(e, start_ns),
            None => true,
        };
        if fresh {
            let entry = make(self);
            self.entries.insert(pid, entry);
        }
        let e = self
            .entries
            .get_mut(&pid)
            .expect("present: just checked or inserted");
        if !e.precise {
            e.start_ns = start_ns;
            e.precise = true;
        }
        e
    }

    /// An entry made from what only the pid and start time tell.
    pub fn bare_entry(&self, pid: u32, start_ns: u64, ppid: u32) -> Entry {
        Entry {
            pid,
            start_ns,
            precise: true,
            ppid,
            exec_id: self.exec_id(pid, start_ns),
            parent_exec_id: None,
            exe: None,
            file: None,
            caps: None,
            seen: None,
            exited: false,
        }
    }

    /// Insert (or replace) an entry, e.g. from /proc or for a forked child.
    pub fn insert(&mut self, entry: Entry) {
        self.entries.insert(entry.pid, entry);
    }

    /// Mark (pid, start_ns) exited at `ktime`. Returns false if it already was:
    /// the caller drops such duplicate exits (two threads may both report the last exit).
    pub fn mark_exited(&mut self, pid: u32, start_ns: u64, ktime: u64) -> bool {
        let Some(e) = self.entries.get_mut(&pid) else {
            return true;
        };
        if e.exited {
            return false;
        }
        e.exited = true;
        self.exited.push_back((ktime, pid, start_ns));
        true
    }

    /// Evict exited entries older than the grace period at `now_ktime`.
    pub fn evict(&mut self, now_ktime: u64) {
        while let Some(&(t, pid, start)) = self.exited.front() {
            let expired = t.saturating_add(self.grace_ns) <= now_ktime;
            if !expired && self.exited.len() <= self.max_exited {
                break;
            }
            self.exited.pop_front();
            if let Some(e) = self.entries.get(&pid) {
                if e.exited && e.start_ns == start {
                    self.entries.remove(&pid);
                }
            }
        }
    }

    /// The chain of parents above `pid` (not included), nearest first, at most `depth`.
    /// Stops at pid 0, an unknown pid, a loop, or a parent pid now held by a process
    /// younger than its child (the parent exited and its pid was reused).
    pub fn ancestors(&self, pid: u32, depth: usize) -> Vec<&Entry> {
        let mut out: Vec<&Entry> = Vec::with_capacity(depth);
        let Some(mut child) = self.entries.get(&pid) else {
            return out;
        };
        while out.len() < depth && child.ppid != 0 && child.ppid != pid {
            let Some(e) = self.entries.get(&child.ppid) else {
                break;
            };
            if e.start_ns > child.start_ns.saturating_add(self.tolerance_ns)
                || out.iter().any(|a| a.pid == e.pid)
            {
                break;
            }
            out.push(e);
            child = e;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ProcessTable {
        ProcessTable::new("b00t", 1_000, 20)
    }

    #[test]
    fn pid_reuse_replaces_the_entry() {
        let mut t = table();
        let first = t
            .get_or_insert_with(10, 100, |t| t.bare_entry(10, 100, 1))
            .exec_id
            .clone();
        let again = t
            .get_or_insert_with(10, 100, |_| panic!("same process"))
            .exec_id
            .clone();
        assert_eq!(first, again);
        let reused = t
            .get_or_insert_with(10, 5_000, |t| t.bare_entry(10, 5_000, 1))
            .exec_id
            .clone();
        assert_ne!(first, reused);
        assert_eq!(&*reused, "b00t:5000:10");
    }

    #[test]
    fn imprecise_start_matches_within_tolerance_then_becomes_exact() {
        let mut t = table();
        let mut e = t.bare_entry(7, 1_000, 1);
        e.precise = false;
        t.insert(e);
        assert!(t.get(7, 1_015).is_some());
        t.get_or_insert_with(7, 1_015, |_| panic!("within tolerance"));
        assert!(t.get(7, 1_015).unwrap().precise);
        assert!(t.get(7, 1_000).is_none(), "exact once confirmed");
    }

    #[test]
    fn exited_entries_leave_after_grace_and_duplicates_are_refused() {
        let mut t = table();
        t.insert(t.bare_entry(5, 50, 1));
        assert!(t.mark_exited(5, 50, 2_000));
        assert!(!t.mark_exited(5, 50, 2_001), "second exit is a duplicate");
        t.evict(2_500);
        assert!(t.get(5, 50).is_some(), "still in grace");
        t.evict(3_000);
        assert!(t.get(5, 50).is_none());
    }

    #[test]
    fn eviction_spares_a_reused_pid() {
        let mut t = table();
        t.insert(t.bare_entry(5, 50, 1));
        t.mark_exited(5, 50, 0);
        t.insert(t.bare_entry(5, 900, 1));
        t.evict(10_000);
        assert!(t.get(5, 900).is_some());
    }

    #[test]
    fn exited_backlog_is_bounded() {
        let mut t = table();
        t.max_exited = 3;
        for pid in 1..=10 {
            t.insert(t.bare_entry(pid, 1, 0));
            t.mark_exited(pid, 1, 0);
        }
        t.evict(0);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn ancestors_follow_ppid_and_stop_at_loops() {
        let mut t = table();
        t.insert(t.bare_entry(1, 1, 0));
        t.insert(t.bare_entry(2, 2, 1));
        t.insert(t.bare_entry(3, 3, 2));
        t.insert(t.bare_entry(4, 4, 3));
        let pids: Vec<u32> = t.ancestors(4, 10).iter().map(|e| e.pid).collect();
        assert_eq!(pids, [3, 2, 1]);
        assert_eq!(t.ancestors(4, 2).len(), 2);
        t.insert(t.bare_entry(8, 8, 9));
        t.insert(t.bare_entry(9, 9, 8));
        assert_eq!(t.ancestors(8, 10).len(), 1);
    }

    #[test]
    fn ancestors_stop_at_a_reused_parent_pid() {
        let mut t = table();
        t.insert(t.bare_entry(1, 1, 0));
        t.insert(t.bare_entry(3, 300, 2));
        t.insert(t.bare_entry(4, 400, 3));
        // 3's parent, pid 2, exited; the pid now belongs to a younger process
        t.insert(t.bare_entry(2, 1_000, 1));
        let pids: Vec<u32> = t.ancestors(4, 10).iter().map(|e| e.pid).collect();
        assert_eq!(pids, [3]);
    }
}
