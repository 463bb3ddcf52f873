//! The pipeline on records a real kernel produced (scripts/capture-records.sh:
//! a shell running echo, one TCP connection on loopback, one DNS query to a
//! local dnsmasq), decoded and made into events without root, without BPF,
//! without the host's /proc: what the kernel said is enough.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;

use ksight_core::cgroup::CgroupResolver;
use ksight_core::enrich::{Clock, EnrichConfig, Enricher};
use ksight_core::event::{Detail, Event};
use ksight_core::filter::{Filter, FilterSpec};
use ksight_core::pipeline::{NoKernel, Pipeline, PipelineConfig};
use ksight_core::procfs::ProcFs;
use ksight_core::sink::Sink;

const RECORDS: &[u8] = include_bytes!("fixtures/records/scenario.bin");
const PIDS: &str = include_str!("fixtures/records/scenario.txt");

struct Keep(Rc<RefCell<Vec<Event>>>);

impl Sink for Keep {
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        self.0.borrow_mut().push(ev.clone());
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn records() -> Vec<&'static [u8]> {
    let mut out = Vec::new();
    let mut rest = RECORDS;
    while rest.len() >= 4 {
        let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push(&rest[4..4 + n]);
        rest = &rest[4 + n..];
    }
    assert!(rest.is_empty(), "a whole number of records");
    out
}

fn pid(role: &str) -> u32 {
    PIDS.lines()
        .find_map(|l| l.strip_prefix(role)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {role} in scenario.txt"))
}

/// Every record through a pipeline (no /proc, no kernel state) with `spec`.
fn replay(spec: FilterSpec) -> (Vec<Event>, ksight_core::pipeline::Stats) {
    let clock = Clock {
        wall_minus_mono: 1_700_000_000_000_000_000,
        boot_minus_mono: 0,
        clk_tck: 100,
    };
    let enricher = Enricher::new(
        EnrichConfig::default(),
        clock,
        "f1x7",
        ProcFs::new("/nonexistent-proc"),
        CgroupResolver::new(None),
    );
    let out = Rc::new(RefCell::new(Vec::new()));
    let mut p = Pipeline::new(
        PipelineConfig::default(),
        enricher,
        Filter::new(spec),
        Box::new(Keep(out.clone())),
    );
    for r in records() {
        assert_eq!(p.record(r), 0);
    }
    p.finish(&NoKernel, u64::MAX / 2);
    let stats = p.stats().clone();
    let events = out.take();
    (events, stats)
}

fn of<'a>(events: &'a [Event], kind: &str, pid: u32) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.kind().name() == kind && e.process.as_ref().is_some_and(|p| p.pid == pid))
        .collect()
}

#[test]
fn every_captured_record_decodes() {
    let (events, stats) = replay(FilterSpec::default());
    assert_eq!(
        stats.undecodable, 0,
        "re-run scripts/capture-records.sh after a layout change"
    );
    assert_eq!(stats.records as usize, records().len());
    assert!(events.len() > 100, "{}", events.len());
    // in kernel order per CPU
    let mut last: HashMap<u32, u64> = HashMap::new();
    for e in &events {
        if let Some(seq) = e.seq {
            let prev = last.insert(e.cpu, seq);
            assert!(
                prev.is_none_or(|p| p < seq),
                "cpu {} seq {seq} after {prev:?}",
                e.cpu
            );
        }
    }
}

#[test]
fn a_shell_that_runs_echo() {
    let (events, _) = replay(FilterSpec::default());
    let sh = pid("sh");
    let execs = of(&events, "exec", sh);
    assert_eq!(execs.len(), 1);
    let Detail::Exec(shell) = &execs[0].detail else {
        panic!()
    };
    assert_eq!(shell.exec.argv[..2], ["sh".into(), "-c".into()]);
    let sh_p = execs[0].process.as_ref().unwrap();
    // the shell forks a child, which execs echo
    let forks = of(&events, "fork", sh);
    assert_eq!(forks.len(), 1);
    let Detail::Fork(f) = &forks[0].detail else {
        panic!()
    };
    let child = f.child.pid;
    let echo_ev = of(&events, "exec", child);
    assert_eq!(echo_ev.len(), 1);
    let Detail::Exec(echo) = &echo_ev[0].detail else {
        panic!()
    };
    assert_eq!(echo.exec.exe.to_string(), "/usr/bin/echo");
    assert_eq!(
        echo.exec.argv,
        [
            "/bin/echo".into(),
            "ksight-fixture".into(),
            "1".into(),
            "2".into()
        ]
    );
    let echo_p = echo_ev[0].process.as_ref().unwrap();
    assert_eq!(echo_p.ppid, sh);
    assert_eq!(echo_p.parent_exec_id.as_deref(), Some(&*sh_p.exec_id));
    assert_eq!(echo.ancestors[0].pid, sh);
    assert_eq!(echo.ancestors[0].exec_id, sh_p.exec_id);
    assert_ne!(
        Some(&echo_p.exec_id),
        f.child.exec_id.as_ref(),
        "a new image"
    );
    // each ends with its own image
    for (p, image, exe) in [
        (child, echo_p, "/usr/bin/echo"),
        (sh, sh_p, "/usr/bin/dash"),
    ] {
        let exits = of(&events, "exit", p);
        assert_eq!(exits.len(), 1, "pid {p}");
        let Detail::Exit(x) = &exits[0].detail else {
            panic!()
        };
        assert_eq!((x.exit.code, x.exit.signal), (Some(0), None));
        let exit_p = exits[0].process.as_ref().unwrap();
        assert_eq!(exit_p.exec_id, image.exec_id);
        assert_eq!(
            exit_p.exe.as_deref().map(ToString::to_string).as_deref(),
            Some(exe)
        );
    }
    assert!(execs[0].ktime < forks[0].ktime && forks[0].ktime < echo_ev[0].ktime);
}

#[test]
fn one_tcp_connection_on_loopback() {
    let (events, _) = replay(FilterSpec::default());
    let (server, client) = (pid("server"), pid("client"));
    let listen = of(&events, "listen", server);
    assert_eq!(listen.len(), 1);
    assert_eq!(listen[0].net().unwrap().local.port, 40123);
    let connect = of(&events, "connect", client);
    assert_eq!(connect.len(), 1);
    let Detail::Connect(c) = &connect[0].detail else {
        panic!()
    };
    assert_eq!(c.connect.result.name(), "success");
    assert_eq!(c.net.remote.port, 40123);
    assert_eq!(c.net.remote.addr.to_string(), "127.0.0.1");
    let accept = of(&events, "accept", server);
    assert_eq!(accept.len(), 1);
    assert_eq!(accept[0].net().unwrap().remote.port, c.net.local.port);
    // one close each side, one byte each way
    for (pid, dir) in [(client, "out"), (server, "in")] {
        let closes = of(&events, "tcp_close", pid);
        assert_eq!(closes.len(), 1, "pid {pid}");
        let Detail::TcpClose(t) = &closes[0].detail else {
            panic!()
        };
        assert_eq!(t.tcp.direction.name(), dir);
        assert_eq!((t.tcp.bytes_sent, t.tcp.bytes_received), (1, 1));
        if dir == "out" {
            assert_eq!(t.net.sock, c.net.sock, "the connection's id");
        }
    }
}

#[test]
fn one_dns_query_and_its_answer() {
    let (events, _) = replay(FilterSpec::default());
    let dig = pid("dig");
    let dns = of(&events, "dns", dig);
    assert_eq!(dns.len(), 1, "{dns:#?}");
    let Detail::Dns(d) = &dns[0].detail else {
        panic!()
    };
    assert_eq!(d.dns.role.name(), "client");
    assert_eq!(d.dns.status.name(), "answered");
    let q = d.dns.question.as_ref().unwrap();
    assert_eq!(
        (q.name.as_str(), q.qtype.as_str()),
        ("fixture.ksight.test.", "A")
    );
    assert_eq!(d.dns.answers[0].data, "10.9.8.7");
    assert_eq!(d.dns.resolver, "127.0.0.1:5353");
    assert!(d.dns.latency_ns.is_some());
    // the resolver's side of it: dnsmasq answered
    let server = events.iter().any(|e| {
        matches!(&e.detail, Detail::Dns(s) if s.dns.role.name() == "server"
            && s.dns.id == d.dns.id
            && s.dns.question.as_ref().is_some_and(|sq| sq.name == q.name))
    });
    assert!(server);
}

#[test]
fn filters_give_the_same_events_as_filtering_afterwards() {
    let (all, _) = replay(FilterSpec::default());
    let sh = pid("sh");
    let spec = FilterSpec {
        pids: vec![sh],
        ..Default::default()
    };
    let (only, stats) = replay(spec.clone());
    let filter = Filter::new(spec);
    let expected: Vec<&Event> = all.iter().filter(|e| filter.matches(e)).collect();
    assert_eq!(only.iter().collect::<Vec<_>>(), expected);
    assert!(
        only.len() >= 4,
        "exec, fork, exit of the shell: {}",
        only.len()
    );
    assert!(stats.counters.filtered > 100);
}
