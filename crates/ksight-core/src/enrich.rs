//! Enrichment: [`RawEvent`] (what the kernel said) -> [`Event`] (what ksight reports).
//!
//! The [`Enricher`] owns the process table and the cgroup resolver. It is fed
//! every record in ring-buffer order, which is causal order per process (a
//! child's fork record is written before the child first runs), so the table
//! always knows a parent before its child's events arrive.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::cgroup::{container_id, CgroupResolver};
use crate::event::{
    eai_name, signal_name, tcp_state_name, AcceptDetail, Ancestor, Child, ConnectDetail, Detail,
    Event, ExecDetail, ExitDetail, GaiDetail, NetInfo, Process, TcpCloseDetail, TcpStateDetail,
    UdpDetail, WallTime,
};
use crate::procfs::{ProcFs, ProcInfo};
use crate::proctable::{Entry, ProcessTable};
use crate::raw::{
    RawEvent, RawExec, RawExit, RawFork, RawGai, RawTcp, RawUdpFlow, TaskFacts, TcpKind,
};
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
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            ancestors: 4,
            grace_ns: 10_000_000_000,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct CgroupInfo {
    path: Option<Arc<str>>,
    container: Option<Arc<str>>,
}

/// How long after a DNS answer a connection to one of its addresses is named by it.
const NAME_WINDOW_NS: u64 = 10 * 60 * 1_000_000_000;

pub struct Enricher {
    /// getaddrinfo calls in progress: name, when, caller.
    gai_calls: Vec<(String, u64, Process)>,
    /// Addresses seen in DNS answers: the name asked, and when.
    names: HashMap<IpAddr, (String, u64)>,
    cfg: EnrichConfig,
    clock: Clock,
    table: ProcessTable,
    procfs: ProcFs,
    cgroups: CgroupResolver,
    cgroup_cache: HashMap<u64, CgroupInfo>,
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
            gai_calls: Vec::new(),
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

    fn entry_from_proc(&self, info: &ProcInfo) -> Entry {
        let start_ns = self.clock.ticks_to_boot(info.start_ticks);
        let mut e = self.table.bare_entry(info.pid, start_ns, info.ppid);
        e.precise = false;
        e.exe = info.exe.as_ref().map(|p| Arc::new(Text::from(p.clone())));
        e
    }

    /// The table entry of a task, from /proc when the table has none (a
    /// process older than ksight that /proc seeding missed) or a bare one.
    fn entry(&mut self, pid: u32, start_ns: u64, ppid: u32) -> &mut Entry {
        let (procfs, clock) = (&self.procfs, self.clock);
        self.table.get_or_insert_with(pid, start_ns, |t| {
            let mut e = t.bare_entry(pid, start_ns, ppid);
            e.exe = exe_from_proc(procfs, clock, pid, start_ns);
            e
        })
    }

    fn cgroup(&mut self, id: u64) -> CgroupInfo {
        if let Some(c) = self.cgroup_cache.get(&id) {
            return c.clone();
        }
        let path = self.cgroups.path(id);
        let container = path.as_deref().and_then(container_id).map(Arc::from);
        let info = CgroupInfo { path, container };
        if info.path.is_some() {
            if self.cgroup_cache.len() >= 65_536 {
                self.cgroup_cache.clear();
            }
            self.cgroup_cache.insert(id, info.clone());
        }
        info
    }

    /// The process of a task the record was made in: the table's entry, kept current.
    fn process(&mut self, t: &TaskFacts) -> Process {
        let e = self.entry(t.pid, t.start_ns, t.ppid);
        e.ppid = t.ppid;
        let ids = (e.exe.clone(), e.exec_id.clone(), e.parent_exec_id.clone());
        self.describe(t, ids)
    }

    /// A socket's owner, whose facts date from when the socket was made (or
    /// accepted): it may have exited since, and its pid gone to another
    /// process. Unless the table holds that very process, it is described from
    /// the facts (and /proc, if it still runs) without touching the table: an
    /// entry made for it would replace the pid's new owner, or never be evicted.
    fn owner(&mut self, t: &TaskFacts) -> Process {
        if self.table.get(t.pid, t.start_ns).is_some() {
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
            pidns: t.pidns,
            ns_pid: t.ns_pid,
            ns_tid: t.ns_tid,
        }
    }

    /// Turn one kernel record into an event; `None` for a duplicate exit.
    pub fn enrich(&mut self, raw: RawEvent) -> Option<Event> {
        let hdr = *raw.header();
        let (process, detail) = match raw {
            RawEvent::Exec(x) => some(self.exec(x)),
            RawEvent::Fork(f) => some(self.fork(f)),
            RawEvent::Exit(x) => some(self.exit(x)?),
            RawEvent::Tcp(t) => self.tcp(t),
            // reported with its flows: see `udp`
            RawEvent::UdpClose(_) => return None,
            // made into transactions first: see `dns`
            RawEvent::Dns(_) => return None,
            RawEvent::Gai(g) => return self.gai(g),
        };
        Some(Event {
            time: self.clock.wall(hdr.ktime_ns),
            ktime: hdr.ktime_ns,
            cpu: hdr.cpu,
            seq: Some(hdr.seq),
            process,
            detail,
        })
    }

    /// A UDP flow, read from the kernel's counters at `ktime`; `closed` when
    /// its socket is gone (these are its totals).
    pub fn udp(
        &mut self,
        owner: Option<&TaskFacts>,
        netns: u32,
        flow: &RawUdpFlow,
        closed: bool,
        ktime: u64,
    ) -> Event {
        let process = owner.map(|o| self.owner(o));
        let net = NetInfo {
            protocol: "udp",
            family: if flow.local.is_ipv4() { "ipv4" } else { "ipv6" },
            netns,
            local: flow.local.into(),
            remote: flow.remote.into(),
            sock: format!("{:x}", flow.cookie),
            remote_name: self.name_of(flow.remote.ip(), ktime),
        };
        let udp = UdpDetail {
            packets_sent: flow.packets_sent,
            bytes_sent: flow.bytes_sent,
            packets_received: flow.packets_received,
            bytes_received: flow.bytes_received,
            first_time: self.clock.wall(flow.first_ns),
            last_time: self.clock.wall(flow.last_ns),
            closed,
        };
        Event {
            time: self.clock.wall(ktime),
            ktime,
            cpu: 0,
            seq: None,
            process,
            detail: Detail::Udp { net, udp },
        }
    }

    /// Remember which name the addresses of a DNS answer belong to.
    fn learn_names(&mut self, tx: &crate::dns::Transaction) {
        let Some(q) = &tx.detail.question else {
            return;
        };
        let name = q.name.trim_end_matches('.');
        for a in &tx.detail.answers {
            if let Ok(ip) = a.data.parse::<IpAddr>() {
                self.remember_name(ip, name, tx.ktime);
            }
        }
    }

    /// Bounded: when full, names older than the window go, and if none has, all.
    fn remember_name(&mut self, ip: IpAddr, name: &str, ktime: u64) {
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
    fn name_of(&self, ip: IpAddr, ktime: u64) -> Option<String> {
        let (name, at) = self.names.get(&ip)?;
        (ktime.saturating_sub(*at) <= NAME_WINDOW_NS).then(|| name.clone())
    }

    /// A getaddrinfo call: entered (remembered, for `asked_by`) or returned (an event).
    fn gai(&mut self, g: RawGai) -> Option<Event> {
        let name = String::from_utf8_lossy(&g.name)
            .trim_end_matches('.')
            .to_string();
        let process = self.process(&g.task);
        if !g.returned {
            if self.gai_calls.len() >= 4096 {
                self.gai_calls.clear();
            }
            self.gai_calls.push((name, g.hdr.ktime_ns, process));
            return None;
        }
        self.gai_calls
            .retain(|(n, _, p)| !(n == &name && p.pid == process.pid && p.tid == process.tid));
        for ip in &g.addrs {
            self.remember_name(*ip, &name, g.hdr.ktime_ns);
        }
        Some(Event {
            time: self.clock.wall(g.hdr.ktime_ns),
            ktime: g.hdr.ktime_ns,
            cpu: g.hdr.cpu,
            seq: Some(g.hdr.seq),
            process: Some(process),
            detail: Detail::Getaddrinfo {
                getaddrinfo: GaiDetail {
                    name: Text::from(g.name),
                    result: eai_name(g.ret),
                    addresses: g.addrs,
                    latency_ns: g.latency_ns,
                },
            },
        })
    }

    /// A DNS transaction (or an unanswered query).
    pub fn dns(&mut self, mut tx: crate::dns::Transaction) -> Event {
        let process = tx.owner.as_ref().map(|o| self.owner(o));
        // a resolver asking upstream for a name an application is waiting on
        if let (Some(p), Some(q)) = (&process, &tx.detail.question) {
            let name = q.name.trim_end_matches('.');
            let waiting = self.gai_calls.iter().rev().find(|(n, at, caller)| {
                n == name && caller.pid != p.pid && tx.ktime.saturating_sub(*at) < 10_000_000_000
            });
            if let Some((_, _, caller)) = waiting {
                tx.detail.asked_by = Some(crate::dns::AskedBy {
                    pid: caller.pid,
                    comm: caller.comm.clone(),
                    exec_id: caller.exec_id.clone(),
                });
            }
        }
        let net = NetInfo {
            protocol: tx.detail.transport,
            family: if tx.local.is_ipv4() { "ipv4" } else { "ipv6" },
            netns: tx.netns,
            local: tx.local.into(),
            remote: tx.remote.into(),
            sock: format!("{:x}", tx.cookie),
            remote_name: None,
        };
        self.learn_names(&tx);
        Event {
            time: self.clock.wall(tx.ktime),
            ktime: tx.ktime,
            cpu: 0,
            seq: None,
            process,
            detail: Detail::Dns {
                net,
                dns: tx.detail,
            },
        }
    }

    /// A TCP record: its owner (captured in process context by the kernel side) is the process.
    fn tcp(&mut self, t: RawTcp) -> (Option<Process>, Detail) {
        let process = t.owner.as_ref().map(|o| self.owner(o));
        let net = NetInfo {
            protocol: "tcp",
            family: if t.tuple.local.is_ipv4() {
                "ipv4"
            } else {
                "ipv6"
            },
            netns: t.tuple.netns,
            local: t.tuple.local.into(),
            remote: t.tuple.remote.into(),
            sock: format!("{:x}", t.sock),
            remote_name: self.name_of(t.tuple.remote.ip(), t.hdr.ktime_ns),
        };
        let since = |from: u64| (from != 0).then(|| t.hdr.ktime_ns.saturating_sub(from));
        let detail = match t.kind {
            TcpKind::Connect => {
                let (result, error, errno) = ConnectDetail::outcome(t.new_state, t.error);
                let connect = ConnectDetail {
                    result,
                    error,
                    errno,
                    latency_ns: since(t.start_ns),
                };
                Detail::Connect { net, connect }
            }
            TcpKind::Accept => Detail::Accept {
                net,
                accept: AcceptDetail {
                    by: if t.accepted { "accept" } else { "listener" },
                    queued_ns: t.accepted.then(|| since(t.start_ns)).flatten(),
                },
            },
            TcpKind::Listen => Detail::Listen { net },
            TcpKind::Close => Detail::TcpClose {
                net,
                tcp: TcpCloseDetail {
                    direction: match (t.outbound, t.inbound) {
                        (true, _) => "out",
                        (_, true) => "in",
                        _ => "unknown",
                    },
                    start_time: (t.start_ns != 0).then(|| self.clock.wall(t.start_ns)),
                    duration_ns: since(t.start_ns),
                    bytes_sent: t.bytes_sent,
                    bytes_received: t.bytes_received,
                    retransmits: t.retransmits,
                    last_state: tcp_state_name(t.old_state),
                },
            },
            TcpKind::State => Detail::TcpState {
                net,
                state: TcpStateDetail {
                    old: tcp_state_name(t.old_state),
                    new: tcp_state_name(t.new_state),
                    time_in_old_ns: since(t.state_ns),
                },
            },
        };
        (process, detail)
    }

    fn exec(&mut self, x: RawExec) -> (Process, Detail) {
        let t = &x.task;
        let parent_exec_id = self.entry(t.ppid, t.parent_start_ns, 0).exec_id.clone();
        // a script's exe is the script: filename, made absolute against cwd
        let exe = match &x.exe {
            Some(exe) => exe.clone(),
            None => absolute(&x.cwd, &x.filename),
        };
        let exe = Arc::new(Text::from(exe));
        let exec_id = self.table.exec_id(t.pid, x.hdr.ktime_ns);
        let e = self.entry(t.pid, t.start_ns, t.ppid);
        e.exec_id = exec_id;
        e.parent_exec_id = Some(parent_exec_id);
        e.exe = Some(exe.clone());
        e.exited = false;
        let process = self.process(t);
        let ancestors = self
            .table
            .ancestors(t.pid, self.cfg.ancestors)
            .into_iter()
            .map(|a| Ancestor {
                pid: a.pid,
                exe: a.exe.clone(),
                exec_id: a.exec_id.clone(),
            })
            .collect();
        let exec = ExecDetail {
            filename: Text::from(x.filename),
            exe,
            interpreter: x.interpreter.map(Text::from),
            argv: x.argv.into_iter().map(Text::from).collect(),
            argv_truncated: x.argv_truncated,
            cwd: Text::from(x.cwd),
            tty: x.tty.map(Text::from),
            old_tid: (x.old_tid != t.pid).then_some(x.old_tid),
            path_truncated: x.path_truncated,
        };
        (process, Detail::Exec { exec, ancestors })
    }

    fn fork(&mut self, f: RawFork) -> (Process, Detail) {
        let process = self.process(&f.task);
        let exec_id = if f.thread {
            None
        } else {
            let mut child = self
                .table
                .bare_entry(f.child_pid, f.child_start_ns, f.task.pid);
            child.parent_exec_id = Some(process.exec_id.clone());
            child.exe = process.exe.clone();
            let id = child.exec_id.clone();
            self.table.insert(child);
            Some(id)
        };
        let child = Child {
            pid: f.child_pid,
            tid: f.child_tid,
            exec_id,
            thread: f.thread,
            pidns: f.child_pidns,
            ns_pid: f.child_ns_pid,
            ns_tid: f.child_ns_tid,
        };
        (process, Detail::Fork { child })
    }

    fn exit(&mut self, x: RawExit) -> Option<(Process, Detail)> {
        let process = self.process(&x.task);
        if !x.thread
            && !self
                .table
                .mark_exited(x.task.pid, x.task.start_ns, x.hdr.ktime_ns)
        {
            return None;
        }
        let (code, signal, core_dumped) = ExitDetail::status(x.exit_code);
        let exit = ExitDetail {
            code,
            signal,
            signal_name: signal.and_then(signal_name),
            core_dumped,
            lifetime_ns: self
                .clock
                .mono_to_boot(x.hdr.ktime_ns)
                .saturating_sub(x.task.start_ns),
            utime_ns: x.utime_ns,
            stime_ns: x.stime_ns,
            thread: x.thread,
        };
        Some((process, Detail::Exit { exit }))
    }

    /// Forget processes that exited more than the grace period before `now_ktime`.
    pub fn evict(&mut self, now_ktime: u64) {
        self.table.evict(now_ktime);
    }
}

fn some((p, d): (Process, Detail)) -> (Option<Process>, Detail) {
    (Some(p), d)
}

/// `path` if absolute, else `cwd/path` (a leading "./" dropped). No other normalisation:
/// ".." may cross a symlink, and the kernel did not resolve it for us here.
fn absolute(cwd: &[u8], path: &[u8]) -> Vec<u8> {
    if path.first() == Some(&b'/') || cwd.is_empty() {
        return path.to_vec();
    }
    let rel = path.strip_prefix(b"./").unwrap_or(path);
    let mut out = cwd.to_vec();
    if out.last() != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(rel);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::Header;

    fn enricher() -> Enricher {
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

    fn task(pid: u32, start: u64, ppid: u32, pstart: u64) -> TaskFacts {
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

    fn hdr(ktime: u64) -> Header {
        Header {
            ktime_ns: ktime,
            seq: 0,
            cpu: 0,
        }
    }

    #[test]
    fn an_exited_socket_owner_does_not_replace_the_new_holder_of_its_pid() {
        let mut en = enricher();
        let exec = |en: &mut Enricher, t: TaskFacts, at: u64| {
            en.enrich(RawEvent::Exec(RawExec {
                hdr: hdr(at),
                task: t,
                filename: b"/bin/x".to_vec(),
                exe: Some(b"/bin/x".to_vec()),
                ..Default::default()
            }))
            .unwrap()
        };
        // the owner made its socket, handed it on and exited; pid 100 was reused
        let new_holder = exec(&mut en, task(100, 50, 1, 1), 60);
        let flow = RawUdpFlow {
            cookie: 7,
            local: "127.0.0.1:5000".parse().unwrap(),
            remote: "127.0.0.1:53".parse().unwrap(),
            first_ns: 10,
            last_ns: 70,
            packets_sent: 1,
            bytes_sent: 1,
            packets_received: 0,
            bytes_received: 0,
        };
        let old_owner = task(100, 5, 1, 1);
        let ev = en.udp(Some(&old_owner), 1, &flow, true, 80);
        let p = ev.process.unwrap();
        assert_eq!(&*p.exec_id, "b00t:5:100", "the owner's own id");
        assert!(p.exe.is_none());
        // the new holder's next event keeps its identity
        let again = en.process(&task(100, 50, 1, 1));
        assert_eq!(again.exec_id, new_holder.process.unwrap().exec_id);
        assert!(again.exe.is_some());
    }

    #[test]
    fn processes_older_than_ksight_are_recognised_after_the_machine_slept() {
        // started 1 s after boot; the machine has since slept an hour, so
        // CLOCK_BOOTTIME runs 3600 s ahead of CLOCK_MONOTONIC
        let mut en = enricher();
        en.set_clock(Clock {
            wall_minus_mono: 1_000_000_000_000_000_000,
            boot_minus_mono: 3_600_000_000_000,
            clk_tck: 100,
        });
        let seeded = en.entry_from_proc(&crate::procfs::ProcInfo {
            pid: 300,
            ppid: 1,
            comm: b"old".to_vec(),
            exe: Some(b"/usr/sbin/old".to_vec()),
            argv: Vec::new(),
            start_ticks: 100,
            uid: 0,
            euid: 0,
            gid: 0,
            egid: 0,
            kernel_thread: false,
        });
        let seeded_id = seeded.exec_id.clone();
        en.table.insert(seeded);
        // the kernel side reports the task's creation in CLOCK_BOOTTIME: 1 s
        let x = en
            .enrich(RawEvent::Exit(RawExit {
                hdr: hdr(7_200_000_000_000),
                task: task(300, 1_000_000_000, 1, 1),
                ..Default::default()
            }))
            .unwrap();
        let p = x.process.as_ref().unwrap();
        assert_eq!(p.exec_id, seeded_id, "the same process");
        assert_eq!(
            p.exe.as_deref().map(|t| t.to_string()).as_deref(),
            Some("/usr/sbin/old")
        );
        let Detail::Exit { exit } = &x.detail else {
            panic!()
        };
        // exit at mono 7200 s = boot 10800 s, start at boot 1 s
        assert_eq!(exit.lifetime_ns, 10_799_000_000_000);
        // wall clock of the start: boot 1 s - (boot - mono) + (wall - mono)
        assert_eq!(
            p.start_time,
            WallTime(1_000_000_000 + 1_000_000_000_000_000_000 - 3_600_000_000_000)
        );
    }

    #[test]
    fn remembered_names_are_bounded() {
        let mut en = enricher();
        for i in 0..70_000u32 {
            en.enrich(RawEvent::Gai(RawGai {
                hdr: hdr(u64::from(i)),
                task: task(100, 5, 1, 1),
                returned: true,
                name: b"many.test".to_vec(),
                addrs: vec![IpAddr::from(i.to_be_bytes())],
                ..Default::default()
            }));
        }
        assert!(en.names.len() <= 65_536, "{}", en.names.len());
        // the newest is still known
        let last = IpAddr::from(69_999u32.to_be_bytes());
        assert_eq!(en.name_of(last, 70_000).as_deref(), Some("many.test"));
    }

    #[test]
    fn fork_exec_exit_chain_carries_ids_and_ancestors() {
        let mut en = enricher();
        let exec_parent = en
            .enrich(RawEvent::Exec(RawExec {
                hdr: hdr(10),
                task: task(100, 5, 1, 1),
                filename: b"/bin/sh".to_vec(),
                exe: Some(b"/usr/bin/dash".to_vec()),
                cwd: b"/".to_vec(),
                ..Default::default()
            }))
            .unwrap();
        let parent_id = exec_parent.process.as_ref().unwrap().exec_id.clone();
        assert_eq!(&*parent_id, "b00t:10:100");

        let fork = en
            .enrich(RawEvent::Fork(RawFork {
                hdr: hdr(20),
                task: task(100, 5, 1, 1),
                child_pid: 101,
                child_tid: 101,
                child_start_ns: 20,
                ..Default::default()
            }))
            .unwrap();
        let Detail::Fork { child } = &fork.detail else {
            panic!()
        };
        assert_eq!(child.exec_id.as_deref(), Some("b00t:20:101"));

        let exec = en
            .enrich(RawEvent::Exec(RawExec {
                hdr: hdr(30),
                task: task(101, 20, 100, 5),
                filename: b"run.sh".to_vec(),
                exe: None,
                interpreter: Some(b"/usr/bin/dash".to_vec()),
                cwd: b"/tmp".to_vec(),
                argv: vec![b"sh".to_vec(), b"run.sh".to_vec()],
                ..Default::default()
            }))
            .unwrap();
        let p = exec.process.as_ref().unwrap();
        assert_eq!(p.parent_exec_id.as_deref(), Some(&*parent_id));
        let Detail::Exec { exec: d, ancestors } = &exec.detail else {
            panic!()
        };
        assert_eq!(d.exe.to_string(), "/tmp/run.sh");
        assert_eq!(ancestors[0].pid, 100);
        assert_eq!(
            ancestors[0].exe.as_ref().unwrap().to_string(),
            "/usr/bin/dash"
        );

        let exit = RawEvent::Exit(RawExit {
            hdr: hdr(90),
            task: task(101, 20, 100, 5),
            exit_code: 42 << 8,
            ..Default::default()
        });
        let ev = en.enrich(exit.clone()).unwrap();
        let Detail::Exit { exit: x } = &ev.detail else {
            panic!()
        };
        assert_eq!((x.code, x.signal, x.lifetime_ns), (Some(42), None, 70));
        assert_eq!(
            ev.process
                .as_ref()
                .unwrap()
                .exe
                .as_ref()
                .unwrap()
                .to_string(),
            "/tmp/run.sh"
        );
        assert!(en.enrich(exit).is_none(), "duplicate exit dropped");
    }

    #[test]
    fn absolute_paths() {
        assert_eq!(absolute(b"/tmp", b"./x.sh"), b"/tmp/x.sh");
        assert_eq!(absolute(b"/", b"x"), b"/x");
        assert_eq!(absolute(b"/tmp", b"/bin/x"), b"/bin/x");
    }
}
