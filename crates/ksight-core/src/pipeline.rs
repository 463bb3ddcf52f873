//! The pipeline: decoded kernel records in, events out to the sinks.
//!
//! ```text
//! bytes -> record::decode -> cheap filter (pid, comm, uid: from the record)
//!       -> the kind's `born` (process table, state; the event)
//!       -> filter (every criterion, on the event's fields) -> sink
//! ```
//!
//! After each poll, [`Pipeline::tick`] lets the kinds that keep state make
//! events from it (UDP flows read from the kernel's counters, DNS queries that
//! timed out, lost records); at stop, [`Pipeline::finish`] once more. The
//! kernel's side of that state comes through [`KernelState`], which the agent
//! implements, so the whole pipeline runs in tests without root, on records
//! captured from a real kernel.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;

use crate::enrich::Enricher;
use crate::event::{Event, Kind, TaskFacts};
use crate::filter::Filter;
pub use crate::kind::{Counters, KernelState, PipelineConfig, WIRE_KINDS};
use crate::kinds::{States, Step};
use crate::net::RawUdpFlow;
use crate::record::{decode, Record};
use crate::sink::Sink;

/// A kernel with no state: for replaying records.
pub struct NoKernel;

impl KernelState for NoKernel {
    fn udp_flows(&self, _: Option<&HashSet<u64>>) -> Vec<RawUdpFlow> {
        Vec::new()
    }
    fn udp_flows_of(&self, _: u64, _: &[SocketAddr]) -> Vec<RawUdpFlow> {
        Vec::new()
    }
    fn udp_owner(&self, _: u64) -> Option<(TaskFacts, u32)> {
        None
    }
    fn drops(&self) -> io::Result<Vec<[u64; WIRE_KINDS]>> {
        Ok(Vec::new())
    }
    fn skipped_runs(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// Counters for the exit summary.
#[derive(Debug, Clone)]
pub struct Stats {
    pub records: u64,
    pub undecodable: u64,
    /// Events written, indexed by `Kind as usize`.
    pub written: [u64; Kind::ALL.len()],
    /// What the kinds counted (filtered, lost, ...).
    pub counters: Counters,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            records: 0,
            undecodable: 0,
            written: [0; Kind::ALL.len()],
            counters: Counters::default(),
        }
    }
}

/// Something that sees every event the pipeline makes, before the filter,
/// and may add events of its own after it (the rules engine, with alerts).
pub trait Stage {
    /// Whether it needs the events of `kind` whatever the filters say (the
    /// cheap filter then lets their records through; the filter still
    /// decides what is written).
    fn wants(&self, kind: Kind) -> bool;
    fn event(&mut self, ev: &Event, out: &mut Vec<Event>);
    /// After each poll (`now`: CLOCK_MONOTONIC ns), and with `last` at stop.
    fn tick(&mut self, now: u64, last: bool, out: &mut Vec<Event>);
    /// For reaching the stage's own methods (a reload).
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

pub struct Pipeline {
    config: PipelineConfig,
    enricher: Enricher,
    filter: Filter,
    sink: Box<dyn Sink>,
    states: States,
    stats: Stats,
    /// Events made by one step, before the filter and the sink.
    out: Vec<Event>,
    stage: Option<Box<dyn Stage>>,
    /// Events the stage made for one event.
    staged: Vec<Event>,
    /// A write failed: the caller stops and reports it.
    error: Option<io::Error>,
}

impl Pipeline {
    pub fn new(
        config: PipelineConfig,
        enricher: Enricher,
        filter: Filter,
        sink: Box<dyn Sink>,
    ) -> Self {
        Pipeline {
            config,
            enricher,
            filter,
            sink,
            states: States::default(),
            stats: Stats::default(),
            out: Vec::with_capacity(16),
            stage: None,
            staged: Vec::new(),
            error: None,
        }
    }

    /// One record's bytes, as the ring buffer delivers them. Never panics;
    /// returns non-zero when the output failed (stop consuming).
    pub fn record(&mut self, data: &[u8]) -> i32 {
        self.stats.records += 1;
        match decode(data) {
            Ok(rec) => self.push(rec),
            Err(e) => {
                self.stats.undecodable += 1;
                if self.stats.undecodable <= 5 {
                    eprintln!("ksight: warning: skipped a record: {e}");
                }
                0
            }
        }
    }

    /// One decoded record.
    pub fn push(&mut self, rec: Record) -> i32 {
        let kind = rec.kind();
        let keep = self.filter.pre(kind, rec.subject())
            || self.stage.as_ref().is_some_and(|s| s.wants(kind));
        let now = rec.header().ktime_ns;
        let step = Step {
            enricher: &mut self.enricher,
            counters: &mut self.stats.counters,
            config: &self.config,
            now,
            out: &mut self.out,
        };
        self.states.born(rec, keep, step);
        self.write_out()
    }

    /// After a poll, at `now` (CLOCK_MONOTONIC ns): events made from state,
    /// then forget processes past their grace period.
    pub fn tick(&mut self, kernel: &dyn KernelState, now: u64) -> i32 {
        self.step(kernel, now, false);
        self.enricher.evict(now);
        self.write_out()
    }

    /// At stop, after the last records: the last events made from state.
    pub fn finish(&mut self, kernel: &dyn KernelState, now: u64) -> i32 {
        self.step(kernel, now, true);
        self.write_out()
    }

    fn step(&mut self, kernel: &dyn KernelState, now: u64, last: bool) {
        let step = Step {
            enricher: &mut self.enricher,
            counters: &mut self.stats.counters,
            config: &self.config,
            now,
            out: &mut self.out,
        };
        self.states.tick(kernel, last, step);
        // the events made from state go through the stage first; then what
        // the stage owes at this time (windows that closed)
        self.write_out();
        if let Some(stage) = &mut self.stage {
            stage.tick(now, last, &mut self.staged);
        }
        for ev in std::mem::take(&mut self.staged) {
            self.write(ev);
        }
    }

    fn write_out(&mut self) -> i32 {
        let mut made = std::mem::take(&mut self.out);
        for ev in made.drain(..) {
            if let Some(stage) = &mut self.stage {
                stage.event(&ev, &mut self.staged);
            }
            self.write(ev);
            for ev in std::mem::take(&mut self.staged) {
                self.write(ev);
            }
        }
        self.out = made;
        if self.error.is_some() {
            -1
        } else {
            0
        }
    }

    /// One event through the filter to the sink.
    fn write(&mut self, ev: Event) {
        if self.error.is_some() {
            return;
        }
        if !self.filter.matches(&ev) {
            self.stats.counters.filtered += 1;
            return;
        }
        match self.sink.write(&ev) {
            Ok(()) => self.stats.written[ev.kind() as usize] += 1,
            Err(e) => self.error = Some(e),
        }
    }

    /// The stage every event goes through before the filter (the rules).
    pub fn set_stage(&mut self, stage: Box<dyn Stage>) {
        self.stage = Some(stage);
    }

    /// The stage, as its own type.
    pub fn stage_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.stage.as_mut()?.as_any_mut().downcast_mut()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }

    /// At stop, after [`Pipeline::finish`]: outputs deliver what they hold.
    pub fn close_outputs(&mut self) -> io::Result<()> {
        self.sink.close()
    }

    pub fn reopen_outputs(&mut self) {
        self.sink.reopen()
    }

    /// What each output did, for the summary.
    pub fn output_report(&self) -> Vec<String> {
        self.sink.report()
    }

    /// The write error that stopped the pipeline, if one did.
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// Outputs that failed, and how many events each could not take.
    pub fn failures(&self) -> Vec<(String, u64)> {
        self.sink.failures()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn enricher(&mut self) -> &mut Enricher {
        &mut self.enricher
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::net::IpAddr;
    use std::rc::Rc;

    use super::*;
    use crate::enrich::testing::{enricher, hdr, task};
    use crate::enrich::Clock;
    use crate::event::{Detail, WallTime};
    use crate::filter::FilterSpec;
    use crate::kinds::exec::RawExec;
    use crate::kinds::exit::RawExit;
    use crate::kinds::fork::RawFork;
    use crate::kinds::getaddrinfo::RawGai;
    use crate::kinds::udp::RawUdpClose;

    struct Collect(Rc<RefCell<Vec<Event>>>);

    impl Sink for Collect {
        fn write(&mut self, ev: &Event) -> io::Result<()> {
            self.0.borrow_mut().push(ev.clone());
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pipeline(spec: FilterSpec) -> (Pipeline, Rc<RefCell<Vec<Event>>>) {
        let out = Rc::new(RefCell::new(Vec::new()));
        let p = Pipeline::new(
            PipelineConfig::default(),
            enricher(),
            Filter::new(spec),
            Box::new(Collect(out.clone())),
        );
        (p, out)
    }

    fn exec(pid: u32, start: u64, ppid: u32, pstart: u64, at: u64, exe: &str) -> Record {
        Record::Exec(
            hdr(at),
            RawExec {
                task: task(pid, start, ppid, pstart),
                filename: exe.as_bytes().to_vec(),
                exe: Some(exe.as_bytes().to_vec()),
                cwd: b"/".to_vec(),
                ..Default::default()
            },
        )
    }

    fn fork(parent: u32, pstart: u64, child: u32, at: u64) -> Record {
        Record::Fork(
            hdr(at),
            RawFork {
                task: task(parent, pstart, 1, 1),
                child_pid: child,
                child_tid: child,
                child_start_ns: at,
                ..Default::default()
            },
        )
    }

    #[test]
    fn fork_exec_exit_chain_carries_ids_and_ancestors() {
        let (mut p, out) = pipeline(FilterSpec::default());
        p.push(exec(100, 5, 1, 1, 10, "/usr/bin/dash"));
        p.push(fork(100, 5, 101, 20));
        p.push(Record::Exec(
            hdr(30),
            RawExec {
                task: task(101, 20, 100, 5),
                filename: b"run.sh".to_vec(),
                exe: None,
                interpreter: Some(b"/usr/bin/dash".to_vec()),
                cwd: b"/tmp".to_vec(),
                argv: vec![b"sh".to_vec(), b"run.sh".to_vec()],
                ..Default::default()
            },
        ));
        let exit = Record::Exit(
            hdr(90),
            RawExit {
                task: task(101, 20, 100, 5),
                exit_code: 42 << 8,
                ..Default::default()
            },
        );
        p.push(exit.clone());
        p.push(exit);
        let evs = out.borrow();
        assert_eq!(evs.len(), 4, "the second exit is dropped");
        assert_eq!(p.stats().counters.duplicate_exits, 1);
        let parent_id = evs[0].process.as_ref().unwrap().exec_id.clone();
        assert_eq!(&*parent_id, "b00t:10:100");
        let Detail::Fork(f) = &evs[1].detail else {
            panic!()
        };
        assert_eq!(f.child.exec_id.as_deref(), Some("b00t:20:101"));
        let pr = evs[2].process.as_ref().unwrap();
        assert_eq!(pr.parent_exec_id.as_deref(), Some(&*parent_id));
        let Detail::Exec(x) = &evs[2].detail else {
            panic!()
        };
        assert_eq!(x.exec.exe.to_string(), "/tmp/run.sh");
        assert_eq!(x.ancestors[0].pid, 100);
        assert_eq!(
            x.ancestors[0].exe.as_ref().unwrap().to_string(),
            "/usr/bin/dash"
        );
        let Detail::Exit(e) = &evs[3].detail else {
            panic!()
        };
        assert_eq!(
            (e.exit.code, e.exit.signal, e.exit.lifetime_ns),
            (Some(42), None, 70)
        );
        let exe = evs[3].process.as_ref().unwrap().exe.as_ref().unwrap();
        assert_eq!(exe.to_string(), "/tmp/run.sh");
    }

    #[test]
    fn cheap_filters_drop_events_but_keep_the_process_table() {
        // --pid 101: the parent's exec and fork are not shown, but the child's
        // exec still names its parent and ancestors
        let (mut p, out) = pipeline(FilterSpec {
            pids: vec![101],
            ..Default::default()
        });
        p.push(exec(100, 5, 1, 1, 10, "/usr/bin/dash"));
        p.push(fork(100, 5, 101, 20));
        p.push(exec(101, 20, 100, 5, 30, "/usr/bin/true"));
        let evs = out.borrow();
        let kinds: Vec<&str> = evs.iter().map(|e| e.kind().name()).collect();
        assert_eq!(kinds, ["fork", "exec"], "the fork matches on its child");
        let Detail::Exec(x) = &evs[1].detail else {
            panic!()
        };
        assert_eq!(
            x.ancestors[0].exe.as_ref().unwrap().to_string(),
            "/usr/bin/dash"
        );
        assert_eq!(p.stats().counters.filtered, 1);
    }

    struct OneFlow(RawUdpFlow);

    impl KernelState for OneFlow {
        fn udp_flows(&self, _: Option<&HashSet<u64>>) -> Vec<RawUdpFlow> {
            Vec::new()
        }
        fn udp_flows_of(&self, cookie: u64, remotes: &[SocketAddr]) -> Vec<RawUdpFlow> {
            let f = &self.0;
            if f.cookie == cookie && remotes.contains(&f.remote) {
                vec![f.clone()]
            } else {
                Vec::new()
            }
        }
        fn udp_owner(&self, _: u64) -> Option<(TaskFacts, u32)> {
            None
        }
        fn drops(&self) -> io::Result<Vec<[u64; WIRE_KINDS]>> {
            let mut d = [0; WIRE_KINDS];
            d[1] = 3;
            Ok(vec![[0; WIRE_KINDS], d])
        }
        fn skipped_runs(&self) -> Vec<(String, u64)> {
            Vec::new()
        }
    }

    /// A program that skips 5 runs between reads; counts the reads.
    struct Skipping(std::cell::Cell<u64>);

    impl KernelState for Skipping {
        fn udp_flows(&self, _: Option<&HashSet<u64>>) -> Vec<RawUdpFlow> {
            Vec::new()
        }
        fn udp_flows_of(&self, _: u64, _: &[SocketAddr]) -> Vec<RawUdpFlow> {
            Vec::new()
        }
        fn udp_owner(&self, _: u64) -> Option<(TaskFacts, u32)> {
            None
        }
        fn drops(&self) -> io::Result<Vec<[u64; WIRE_KINDS]>> {
            Ok(Vec::new())
        }
        fn skipped_runs(&self) -> Vec<(String, u64)> {
            self.0.set(self.0.get() + 1);
            vec![("ks_exec_btf".into(), 5 * self.0.get())]
        }
    }

    #[test]
    fn skipped_runs_are_read_once_a_second_and_at_the_end() {
        let (mut p, out) = pipeline(FilterSpec::default());
        let kernel = Skipping(std::cell::Cell::new(0));
        // 1.5 s of 20 ms polls: one read, at 1 s
        for i in 1..=75 {
            p.tick(&kernel, i * 20_000_000);
        }
        assert_eq!(kernel.0.get(), 1);
        p.finish(&kernel, 1_510_000_000);
        assert_eq!(kernel.0.get(), 2, "read once more at the end");
        let lost: Vec<(u64, u64)> = out
            .borrow()
            .iter()
            .filter_map(|e| match &e.detail {
                crate::kinds::Detail::Lost(l) => Some((l.lost.count, l.lost.since_ktime)),
                _ => None,
            })
            .collect();
        // every skipped run reported, each window starting where the last ended
        assert_eq!(lost, [(5, 0), (5, 1_000_000_000)]);
        assert_eq!(p.stats().counters.skipped_runs, 10);
    }

    #[test]
    fn an_exited_socket_owner_does_not_replace_the_new_holder_of_its_pid() {
        let (mut p, out) = pipeline(FilterSpec::default());
        // the owner made its socket, handed it on and exited; pid 100 was reused
        p.push(exec(100, 50, 1, 1, 60, "/bin/x"));
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
        p.push(Record::Udp(
            hdr(80),
            RawUdpClose {
                ktime: 80,
                cookie: 7,
                owner: Some(task(100, 5, 1, 1)),
                netns: 1,
                remotes: Some(vec![flow.remote]),
            },
        ));
        p.tick(&OneFlow(flow), 90);
        let evs = out.borrow();
        let udp = evs.iter().find(|e| e.kind().name() == "udp").unwrap();
        let owner = udp.process.as_ref().unwrap();
        assert_eq!(&*owner.exec_id, "b00t:5:100", "the owner's own id");
        assert!(owner.exe.is_none());
        // the loss the kernel counted on CPU 1, wire kind 1 (exec)
        let lost = evs.iter().find(|e| e.kind().name() == "lost").unwrap();
        assert_eq!((lost.cpu, lost.seq), (1, None));
        drop(evs);
        assert_eq!(p.stats().counters.lost[1], 3);
        // the new holder's next event keeps its identity
        let again = p.enricher().process(&task(100, 50, 1, 1));
        assert_eq!(&*again.exec_id, "b00t:60:100");
        assert!(again.exe.is_some());
    }

    #[test]
    fn processes_older_than_ksight_are_recognised_after_the_machine_slept() {
        // started 1 s after boot; the machine has since slept an hour, so
        // CLOCK_BOOTTIME runs 3600 s ahead of CLOCK_MONOTONIC
        let (mut p, out) = pipeline(FilterSpec::default());
        let en = p.enricher();
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
        p.push(Record::Exit(
            hdr(7_200_000_000_000),
            RawExit {
                task: task(300, 1_000_000_000, 1, 1),
                ..Default::default()
            },
        ));
        let evs = out.borrow();
        let pr = evs[0].process.as_ref().unwrap();
        assert_eq!(pr.exec_id, seeded_id, "the same process");
        assert_eq!(
            pr.exe.as_deref().map(|t| t.to_string()).as_deref(),
            Some("/usr/sbin/old")
        );
        let Detail::Exit(x) = &evs[0].detail else {
            panic!()
        };
        // exit at mono 7200 s = boot 10800 s, start at boot 1 s
        assert_eq!(x.exit.lifetime_ns, 10_799_000_000_000);
        // wall clock of the start: boot 1 s - (boot - mono) + (wall - mono)
        assert_eq!(
            pr.start_time,
            WallTime(1_000_000_000 + 1_000_000_000_000_000_000 - 3_600_000_000_000)
        );
    }

    #[test]
    fn remembered_names_are_bounded() {
        let (mut p, _out) = pipeline(FilterSpec::default());
        for i in 0..70_000u32 {
            p.push(Record::Getaddrinfo(
                hdr(u64::from(i)),
                RawGai {
                    task: task(100, 5, 1, 1),
                    returned: true,
                    name: b"many.test".to_vec(),
                    addrs: vec![IpAddr::from(i.to_be_bytes())],
                    ..Default::default()
                },
            ));
        }
        let en = p.enricher();
        assert!(en.names_len() <= 65_536, "{}", en.names_len());
        // the newest is still known
        let last = IpAddr::from(69_999u32.to_be_bytes());
        assert_eq!(en.name_of(last, 70_000).as_deref(), Some("many.test"));
    }
}
