//! Enrichment: what only userspace knows, added to what the kernel said.
//!
//! The [`Enricher`] owns the state every kind shares: the process table (exec
//! ids, exe of non-exec events, ancestors), the cgroup resolver, the names DNS
//! answers gave to addresses, and the getaddrinfo calls in flight. The kinds'
//! `born` functions use it; it is fed every record in ring-buffer order, which
//! is causal order per process (a child's fork record is written before the
//! child first runs), so the table always knows a parent before its child's
//! events arrive.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::cgroup::{container_id, CgroupResolver};
use crate::hash::{HashConfig, Hashes};
use crate::model::{Process, TaskFacts, WallTime};
use crate::procfs::{ProcFs, ProcInfo};
use crate::proctable::{Entry, ProcessTable, Seen};
use crate::runtime::{ContainerInfo, ContainerResolver, RuntimeConfig};
use crate::text::Text;

/// Converts kernel clocks. Refresh it periodically: NTP moves the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, ns.
    pub wall_minus_mono: i64,
    /// CLOCK_BOOTTIME - CLOCK_MONOTONIC, ns (time spent suspended).
    pub boot_minus_mono: i64,
    /// USER_HZ: the unit of /proc start times.
    pub clk_tck: u64,
}

impl Clock {
    pub fn wall(&self, mono_ns: u64) -> WallTime {
        WallTime(mono_ns.saturating_add_signed(self.wall_minus_mono))
    }

    /// A CLOCK_BOOTTIME instant (a task's creation) as wall-clock time.
    pub fn boot_wall(&self, boot_ns: u64) -> WallTime {
        WallTime(
            boot_ns
                .saturating_add_signed(self.wall_minus_mono)
                .saturating_add_signed(-self.boot_minus_mono),
        )
    }

    /// A recent CLOCK_MONOTONIC instant (a record's) as CLOCK_BOOTTIME.
    pub fn mono_to_boot(&self, mono_ns: u64) -> u64 {
        mono_ns.saturating_add_signed(self.boot_minus_mono)
    }

    /// A /proc start time (clock ticks of CLOCK_BOOTTIME) as CLOCK_BOOTTIME ns, the
    /// clock of the kernel side's task start times.
    pub fn ticks_to_boot(&self, ticks: u64) -> u64 {
        ticks.saturating_mul(1_000_000_000 / self.clk_tck.max(1))
    }

    /// Precision of a /proc start time.
    pub fn tick_ns(&self) -> u64 {
        1_000_000_000 / self.clk_tck.max(1)
    }
}

#[derive(Debug, Clone)]
pub struct EnrichConfig {
    /// How many ancestors an exec carries.
    pub ancestors: usize,
    /// How long exited processes stay known (their late children's events need them).
    pub grace_ns: u64,
    /// Hashing executed files.
    pub hash: HashConfig,
    /// Where container runtimes are asked about containers; `None`: not asked.
    pub containers: Option<RuntimeConfig>,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            ancestors: 4,
            grace_ns: 10_000_000_000,
            hash: HashConfig::default(),
            containers: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct CgroupInfo {
    path: Option<Arc<str>>,
    container: Option<Arc<str>>,
    /// The runtime's description, once known (asked until then).
    meta: Option<Arc<ContainerInfo>>,
}

/// How long after a DNS answer a connection to one of its addresses is named by it.
const NAME_WINDOW_NS: u64 = 10 * 60 * 1_000_000_000;

/// A getaddrinfo call in progress: the name, when, and the caller.
pub struct GaiCall {
    pub name: String,
    pub ktime: u64,
    pub caller: Process,
}

/// Processes to give getaddrinfo probes (`--getaddrinfo lazy`): those that
/// sent a DNS query, each once; and those given them that have ended. The
/// binary hands both to the agent after each poll.
#[derive(Debug, Default)]
pub struct GaiTargets {
    given: std::collections::HashSet<u32>,
    attach: Vec<u32>,
    detach: Vec<u32>,
}

/// Processes asked for at most (the agent keeps fewer).
const GAI_TARGETS: usize = 4096;

impl GaiTargets {
    /// `pid` sent a DNS query.
    pub fn sent_dns(&mut self, pid: u32) {
        if self.given.len() < GAI_TARGETS && self.given.insert(pid) {
            self.attach.push(pid);
        }
    }

    /// `pid` ended.
    pub fn exited(&mut self, pid: u32) {
        if self.given.remove(&pid) {
            self.detach.push(pid);
        }
    }

    /// (to attach, to detach) since the last call; a process that came and
    /// went in between is in neither.
    pub fn take(&mut self) -> (Vec<u32>, Vec<u32>) {
        let attach = std::mem::take(&mut self.attach);
        let detach = std::mem::take(&mut self.detach);
        let both: Vec<u32> = attach
            .iter()
            .copied()
            .filter(|p| detach.contains(p))
            .collect();
        (
            attach.into_iter().filter(|p| !both.contains(p)).collect(),
            detach.into_iter().filter(|p| !both.contains(p)).collect(),
        )
    }
}

pub struct Enricher {
    /// Who should get getaddrinfo probes (fed by the `dns` and `exit` kinds).
    pub gai_targets: GaiTargets,
    /// Container runtimes' descriptions of containers, fetched off the event
    /// path (the `container` kind announces each once known).
    pub containers: Option<ContainerResolver>,
    /// Hashes of executed files, and the worker that makes them (`exec` asks,
    /// `exe_hash` answers); an answer goes back with the asking exec's process.
    pub hashes: Hashes<Process>,
    /// getaddrinfo calls in progress (the `getaddrinfo` kind keeps them here:
    /// `dns` events name the application a resolver asks for).
    pub gai_calls: Vec<GaiCall>,
    /// Credential changes found by comparing hooks' records (`observe`), for
    /// the `cred_change` kind.
    pub cred_changes: Vec<CredChange>,
    /// The commit_creds hook runs: it reports changes as they happen, and
    /// comparisons only keep the baseline.
    pub cred_hook: bool,
    /// Addresses seen in DNS answers: the name asked, and when.
    names: HashMap<IpAddr, (String, u64)>,
    pub cfg: EnrichConfig,
    clock: Clock,
    pub table: ProcessTable,
    procfs: ProcFs,
    cgroups: CgroupResolver,
    cgroup_cache: HashMap<u64, CgroupInfo>,
}

/// What a hook recorded of a process, as the table keeps it.
fn seen_of(t: &TaskFacts) -> Seen {
    let mut comm = [0u8; 16];
    let n = t.comm.len().min(16);
    comm[..n].copy_from_slice(&t.comm[..n]);
    Seen {
        uid: t.uid,
        gid: t.gid,
        euid: t.euid,
        egid: t.egid,
        auid: t.auid,
        cgroup_id: t.cgroup_id,
        pidns: t.pidns,
        ns_pid: t.ns_pid,
        comm,
    }
}

/// A process's credentials differed from what an earlier hook recorded of
/// it, with no exec between.
#[derive(Debug, Clone)]
pub struct CredChange {
    /// When the record that showed it was made.
    pub ktime: u64,
    /// The process as that record saw it (the new credentials).
    pub task: TaskFacts,
    pub before: Seen,
    /// The kind of the record that showed it.
    pub by: &'static str,
}

/// The exe of (pid, start_ns) from /proc, if that process still runs.
fn exe_from_proc(procfs: &ProcFs, clock: Clock, pid: u32, start_ns: u64) -> Option<Arc<Text>> {
    let info = procfs.read(pid).ok()?;
    let seen = clock.ticks_to_boot(info.start_ticks);
    if seen.abs_diff(start_ns) > 2 * clock.tick_ns() {
        return None; // another process has the pid now
    }
    info.exe.map(|p| Arc::new(Text::from(p)))
}

impl Enricher {
    pub fn new(
        cfg: EnrichConfig,
        clock: Clock,
        boot: &str,
        procfs: ProcFs,
        cgroups: CgroupResolver,
    ) -> Self {
        let table = ProcessTable::new(boot, cfg.grace_ns, 2 * clock.tick_ns());
        Enricher {
            gai_targets: GaiTargets::default(),
            containers: cfg.containers.clone().map(ContainerResolver::new),
            hashes: Hashes::new(cfg.hash, procfs.root().to_path_buf()),
            gai_calls: Vec::new(),
            cred_changes: Vec::new(),
            cred_hook: false,
            names: HashMap::new(),
            cfg,
            clock,
            table,
            procfs,
            cgroups,
            cgroup_cache: HashMap::new(),
        }
    }

    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    /// Load every process /proc lists. Returns how many were loaded; processes
    /// that vanish mid-read are skipped.
    pub fn seed(&mut self) -> std::io::Result<usize> {
        let infos: Vec<ProcInfo> = (self.procfs.pids()?.into_iter())
            .filter_map(|pid| self.procfs.read(pid).ok())
            .collect();
        for info in &infos {
            let e = self.entry_from_proc(info);
            self.table.insert(e);
        }
        // parent exec ids, now that every parent is in
        for info in &infos {
            let parent = self.table.get_pid(info.ppid).map(|p| p.exec_id.clone());
            if let Some(e) = self.table.get_pid_mut(info.pid) {
                e.parent_exec_id = parent;
            }
        }
        Ok(infos.len())
    }

    pub(crate) fn entry_from_proc(&self, info: &ProcInfo) -> Entry {
        let start_ns = self.clock.ticks_to_boot(info.start_ticks);
        let mut e = self.table.bare_entry(info.pid, start_ns, info.ppid);
        e.precise = false;
        e.exe = info.exe.as_ref().map(|p| Arc::new(Text::from(p.clone())));
        e
    }

    /// The table entry of a task, from /proc when the table has none (a
    /// process older than ksight that /proc seeding missed) or a bare one.
    pub fn entry(&mut self, pid: u32, start_ns: u64, ppid: u32) -> &mut Entry {
        let (procfs, clock) = (&self.procfs, self.clock);
        self.table.get_or_insert_with(pid, start_ns, |t| {
            let mut e = t.bare_entry(pid, start_ns, ppid);
            e.exe = exe_from_proc(procfs, clock, pid, start_ns);
            e
        })
    }

    fn cgroup(&mut self, id: u64) -> CgroupInfo {
        if let Some(c) = self.cgroup_cache.get_mut(&id) {
            // a container not described yet: ask again (the resolver asks its
            // runtime once, and remembers a failure for a while)
            if let (Some(cid), None, Some(r)) = (&c.container, &c.meta, &self.containers) {
                c.meta = r.lookup(cid);
            }
            return c.clone();
        }
        let path = self.cgroups.path(id);
        let container = path.as_deref().and_then(container_id).map(Arc::from);
        let meta = match (&container, &self.containers) {
            (Some(cid), Some(r)) => r.lookup(cid),
            _ => None,
        };
        let info = CgroupInfo {
            path,
            container,
            meta,
        };
        if info.path.is_some() {
            if self.cgroup_cache.len() >= 65_536 {
                self.cgroup_cache.clear();
            }
            self.cgroup_cache.insert(id, info.clone());
        }
        info
    }

    /// The process of a task the record was made in: the table's entry, kept current.
    pub fn process(&mut self, t: &TaskFacts) -> Process {
        let e = self.entry(t.pid, t.start_ns, t.ppid);
        e.ppid = t.ppid;
        if e.seen.is_none() {
            e.seen = Some(seen_of(t));
        }
        let ids = (e.exe.clone(), e.exec_id.clone(), e.parent_exec_id.clone());
        self.describe(t, ids)
    }

    /// A socket's owner, whose facts date from when the socket was made (or
    /// accepted): it may have exited since, and its pid gone to another
    /// process. Unless the table holds that very process, it is described from
    /// the facts (and /proc, if it still runs) without touching the table: an
    /// entry made for it would replace the pid's new owner, or never be evicted.
    /// A cgroup the kernel just made (the `cgroup` kind).
    pub fn learn_cgroup(&mut self, id: u64, path: &str) {
        self.cgroups.learn(id, path);
    }

    /// The /proc tree it reads.
    pub fn procfs(&self) -> &ProcFs {
        &self.procfs
    }

    /// What the kernel would have recorded of `pid`, read from /proc: the
    /// owner of a socket older than ksight. `None` when it is gone.
    pub fn task_from_proc(&self, pid: u32) -> Option<TaskFacts> {
        let info = self.procfs.read(pid).ok()?;
        let id = self.procfs.identity(pid);
        let parent_start_ns = self
            .procfs
            .read(info.ppid)
            .map_or(0, |p| self.clock.ticks_to_boot(p.start_ticks));
        let cgroup_id = match (self.cgroups.mount(), &id.cgroup) {
            (Some(mount), Some(path)) => {
                use std::os::unix::ffi::OsStrExt as _;
                use std::os::unix::fs::MetadataExt as _;
                let rel = std::ffi::OsStr::from_bytes(path).to_owned();
                let rel = std::path::Path::new(&rel);
                let dir = mount.join(rel.strip_prefix("/").unwrap_or(rel));
                std::fs::metadata(dir).map_or(0, |m| m.ino())
            }
            _ => 0,
        };
        Some(TaskFacts {
            pid,
            tid: pid,
            ppid: info.ppid,
            uid: info.uid,
            gid: info.gid,
            euid: info.euid,
            egid: info.egid,
            auid: id.auid,
            start_ns: self.clock.ticks_to_boot(info.start_ticks),
            parent_start_ns,
            cgroup_id,
            pidns: id.pidns,
            ns_pid: id.ns_pid,
            ns_tid: id.ns_pid,
            comm: info.comm,
            from_procfs: true,
        })
    }

    /// What a hook recorded of a process in its own context, now (`exec`:
    /// the new image's credentials; fork, exit, a signal's sender, a module's
    /// loader): compared with what the last such hook recorded, a change not
    /// made by an exec is queued as a credential change found by `by` (the
    /// `cred_change` kind writes them after the poll).
    pub fn observe(&mut self, t: &TaskFacts, ktime: u64, by: &'static str, exec: bool) {
        let now = seen_of(t);
        if self.table.get(t.pid, t.start_ns).is_none() {
            return;
        }
        let Some(e) = self.table.get_pid_mut(t.pid) else {
            return;
        };
        let before = e.seen.replace(now);
        if exec || self.cred_hook {
            return;
        }
        if let Some(b) = before {
            if (b.uid, b.euid, b.gid, b.egid) != (now.uid, now.euid, now.gid, now.egid)
                && self.cred_changes.len() < 4096
            {
                self.cred_changes.push(CredChange {
                    ktime,
                    task: t.clone(),
                    before: b,
                    by,
                });
            }
        }
    }

    /// A process known by its pid alone (a file event): as /proc says now
    /// when it still runs and is the process the table knows by that pid,
    /// else as the last hook that ran in it recorded it. `None` when neither
    /// knows it.
    pub fn task_of(&self, pid: u32) -> Option<TaskFacts> {
        let entry = self.table.get_pid(pid);
        if let Some(t) = self.task_from_proc(pid) {
            if entry.is_none() || self.table.get_near(pid, t.start_ns).is_some() {
                return Some(t);
            }
        }
        let e = entry?;
        let s = e.seen?;
        let comm_len = s.comm.iter().position(|&b| b == 0).unwrap_or(16);
        Some(TaskFacts {
            pid,
            tid: pid,
            ppid: e.ppid,
            uid: s.uid,
            gid: s.gid,
            euid: s.euid,
            egid: s.egid,
            auid: s.auid,
            start_ns: e.start_ns,
            parent_start_ns: self.table.get_pid(e.ppid).map_or(0, |p| p.start_ns),
            cgroup_id: s.cgroup_id,
            pidns: s.pidns,
            ns_pid: s.ns_pid,
            ns_tid: s.ns_pid,
            comm: s.comm[..comm_len].to_vec(),
            from_procfs: false,
        })
    }

    pub fn owner(&mut self, t: &TaskFacts) -> Process {
        if t.from_procfs {
            // read from /proc: its start time has clock-tick precision, so it
            // matches the table's entry within that, and must not make the
            // entry's start time exact (a hook's later record would then
            // look like another process)
            if let Some(e) = self.table.get_near(t.pid, t.start_ns) {
                let ids = (e.exe.clone(), e.exec_id.clone(), e.parent_exec_id.clone());
                return self.describe(t, ids);
            }
        } else if self.table.get(t.pid, t.start_ns).is_some() {
            return self.process(t);
        }
        let exe = exe_from_proc(&self.procfs, self.clock, t.pid, t.start_ns);
        let exec_id = self.table.exec_id(t.pid, t.start_ns);
        self.describe(t, (exe, exec_id, None))
    }

    fn describe(
        &mut self,
        t: &TaskFacts,
        (exe, exec_id, parent_exec_id): (Option<Arc<Text>>, Arc<str>, Option<Arc<str>>),
    ) -> Process {
        let cg = self.cgroup(t.cgroup_id);
        Process {
            pid: t.pid,
            tid: t.tid,
            ppid: t.ppid,
            uid: t.uid,
            gid: t.gid,
            euid: t.euid,
            egid: t.egid,
            auid: t.auid,
            comm: Text::new(t.comm.as_slice()),
            exe,
            exec_id,
            parent_exec_id,
            start_time: self.clock.boot_wall(t.start_ns),
            cgroup_id: t.cgroup_id,
            cgroup: cg.path,
            container_id: cg.container,
            container: cg.meta,
            pidns: t.pidns,
            ns_pid: t.ns_pid,
            ns_tid: t.ns_tid,
        }
    }

    /// Bounded: when full, names older than the window go, and if none has, all.
    pub fn remember_name(&mut self, ip: IpAddr, name: &str, ktime: u64) {
        const MAX_NAMES: usize = 65_536;
        if self.names.len() >= MAX_NAMES && !self.names.contains_key(&ip) {
            self.names
                .retain(|_, (_, at)| ktime.saturating_sub(*at) <= NAME_WINDOW_NS);
            if self.names.len() >= MAX_NAMES {
                self.names.clear();
            }
        }
        self.names.insert(ip, (name.to_string(), ktime));
    }

    /// The name resolved for `ip` within NAME_WINDOW_NS before `ktime`, if any.
    pub fn name_of(&self, ip: IpAddr, ktime: u64) -> Option<String> {
        let (name, at) = self.names.get(&ip)?;
        (ktime.saturating_sub(*at) <= NAME_WINDOW_NS).then(|| name.clone())
    }

    /// Forget processes that exited more than the grace period before `now_ktime`.
    pub fn evict(&mut self, now_ktime: u64) {
        self.table.evict(now_ktime);
    }

    #[cfg(test)]
    pub(crate) fn names_len(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::model::Header;

    pub fn enricher() -> Enricher {
        let clock = Clock {
            wall_minus_mono: 1_000_000_000_000_000_000,
            boot_minus_mono: 0,
            clk_tck: 100,
        };
        Enricher::new(
            EnrichConfig::default(),
            clock,
            "b00t",
            ProcFs::new("/nonexistent-proc"),
            CgroupResolver::new(None),
        )
    }

    pub fn task(pid: u32, start: u64, ppid: u32, pstart: u64) -> TaskFacts {
        TaskFacts {
            pid,
            tid: pid,
            ppid,
            start_ns: start,
            parent_start_ns: pstart,
            comm: b"x".to_vec(),
            ..Default::default()
        }
    }

    pub fn hdr(ktime: u64) -> Header {
        Header {
            ktime_ns: ktime,
            seq: 0,
            cpu: 0,
        }
    }
}
