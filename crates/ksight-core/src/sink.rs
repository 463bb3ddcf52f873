//! Where events go. One [`Sink`] trait, interchangeable outputs:
//! JSON Lines (the documented schema), a fixed-width table for humans, and a
//! counting sink for benchmarks. Sinks buffer; the caller flushes after each
//! batch so output latency stays bounded by the poll interval.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::event::{Detail, Event};

pub trait Sink {
    fn write(&mut self, ev: &Event) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

/// One JSON object per line (docs/events.md).
pub struct JsonSink<W: Write> {
    out: W,
    /// One event is serialised here, then written with one call: serde_json
    /// makes many small writes, which cost a dynamic call each on a `dyn Write`.
    line: Vec<u8>,
}

impl<W: Write> JsonSink<W> {
    pub fn new(out: W) -> Self {
        JsonSink {
            out,
            line: Vec::with_capacity(1024),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, ev)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Counts events; writes nothing (benchmarks, `--format none`).
#[derive(Debug, Default)]
pub struct CountingSink {
    pub count: u64,
}

impl Sink for CountingSink {
    fn write(&mut self, _ev: &Event) -> io::Result<()> {
        self.count += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Aligned columns, one line per event, optionally coloured by kind.
pub struct TableSink<W: Write> {
    out: W,
    color: bool,
    header_done: bool,
    line: String,
}

const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const MAGENTA: &str = "\x1b[1;35m";
const BLUE: &str = "\x1b[34m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

impl<W: Write> TableSink<W> {
    pub fn new(out: W, color: bool) -> Self {
        TableSink {
            out,
            color,
            header_done: false,
            line: String::with_capacity(256),
        }
    }

    fn paint(&self, code: &'static str) -> &'static str {
        if self.color {
            code
        } else {
            ""
        }
    }
}

/// `HH:MM:SS.mmm` (UTC) of a wall time.
fn clock_utc(ns: u64) -> String {
    let ms = ns / 1_000_000;
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

/// An endpoint as people write it: 1.2.3.4:80, [::1]:80.
fn ep(e: &crate::event::Endpoint) -> String {
    std::net::SocketAddr::new(e.addr, e.port).to_string()
}

/// A duration for humans: 850µs, 12.3ms, 4.56s, 2m03s, 5h02m.
pub fn human_duration(ns: u64) -> String {
    let us = ns / 1_000;
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else if us < 60_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us < 3_600_000_000 {
        let s = us / 1_000_000;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = us / 60_000_000;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

impl<W: Write> Sink for TableSink<W> {
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        if !self.header_done {
            self.header_done = true;
            writeln!(
                self.out,
                "{}{:<12} {:<9} {:>7} {:>7} {:>5} {:<16} DETAIL{}",
                self.paint(DIM),
                "TIME(UTC)",
                "EVENT",
                "PID",
                "PPID",
                "UID",
                "COMM",
                self.paint(RESET)
            )?;
        }
        let colour = match &ev.detail {
            Detail::Exec { .. } => GREEN,
            Detail::Fork { .. } => CYAN,
            Detail::Exit { exit } if exit.signal.is_some() => RED,
            Detail::Exit { exit } if exit.code != Some(0) => YELLOW,
            Detail::Exit { .. } => "",
            Detail::Connect { connect, .. } if connect.result != "success" => RED,
            Detail::Connect { .. } | Detail::Accept { .. } => BLUE,
            Detail::Listen { .. } => BLUE,
            Detail::TcpClose { .. } | Detail::TcpState { .. } | Detail::Udp { .. } => "",
            Detail::Dns { dns, .. } if dns.status != "answered" => YELLOW,
            Detail::Dns { .. } => CYAN,
            Detail::Getaddrinfo { .. } => CYAN,
            Detail::Lost { .. } => MAGENTA,
            #[allow(unreachable_patterns)]
            _ => "",
        };
        let (magenta, reset) = (self.paint(MAGENTA), self.paint(RESET));
        let line = &mut self.line;
        line.clear();
        let _ = write!(line, "{:<12} ", clock_utc(ev.time.0));
        let kind = ev.kind().name();
        if self.color && !colour.is_empty() {
            let _ = write!(line, "{colour}{kind:<9}{RESET} ");
        } else {
            let _ = write!(line, "{kind:<9} ");
        }
        match &ev.process {
            Some(p) => {
                let comm = p.comm.to_string();
                let _ = write!(
                    line,
                    "{:>7} {:>7} {:>5} {:<16} ",
                    p.pid, p.ppid, p.uid, comm
                );
            }
            None => {
                let _ = write!(line, "{:>7} {:>7} {:>5} {:<16} ", "-", "-", "-", "-");
            }
        }
        match &ev.detail {
            Detail::Exec { exec, .. } => {
                let _ = write!(line, "{}", exec.exe);
                for arg in exec.argv.iter().skip(1) {
                    let _ = write!(line, " {arg}");
                }
                if exec.argv_truncated {
                    line.push_str(" …");
                }
                if let Some(i) = &exec.interpreter {
                    let _ = write!(line, "  [interp {i}]");
                }
            }
            Detail::Fork { child } => {
                let what = if child.thread { "thread" } else { "child" };
                let id = if child.thread { child.tid } else { child.pid };
                let _ = write!(line, "→ {what} {id}");
            }
            Detail::Exit { exit } => {
                match (exit.code, exit.signal_name, exit.signal) {
                    (Some(code), _, _) => {
                        let _ = write!(line, "code {code}");
                    }
                    (None, Some(name), _) => line.push_str(name),
                    (None, None, Some(sig)) => {
                        let _ = write!(line, "signal {sig}");
                    }
                    (None, None, None) => line.push('?'),
                }
                if exit.core_dumped {
                    line.push_str(" (core dumped)");
                }
                let _ = write!(line, "  after {}", human_duration(exit.lifetime_ns));
                if exit.thread {
                    line.push_str("  [thread]");
                }
            }
            Detail::Connect { net, connect } => {
                let _ = write!(
                    line,
                    "{} → {}  {}",
                    ep(&net.local),
                    ep(&net.remote),
                    connect.result
                );
                if let Some(e) = connect.error {
                    let _ = write!(line, " ({e})");
                }
                if let Some(ns) = connect.latency_ns {
                    let _ = write!(line, " in {}", human_duration(ns));
                }
            }
            Detail::Accept { net, accept } => {
                let _ = write!(line, "{} ← {}", ep(&net.local), ep(&net.remote));
                if accept.by == "listener" {
                    let _ = write!(line, " (listener's owner)");
                }
            }
            Detail::Listen { net } => {
                let _ = write!(line, "{} listening", ep(&net.local));
            }
            Detail::TcpClose { net, tcp } => {
                let arrow = if tcp.direction == "in" { "←" } else { "→" };
                let _ = write!(
                    line,
                    "{} {arrow} {}  sent {} B, received {} B",
                    ep(&net.local),
                    ep(&net.remote),
                    tcp.bytes_sent,
                    tcp.bytes_received
                );
                if let Some(ns) = tcp.duration_ns {
                    let _ = write!(line, ", {}", human_duration(ns));
                }
                if tcp.retransmits > 0 {
                    let _ = write!(line, ", {} retransmits", tcp.retransmits);
                }
            }
            Detail::TcpState { net, state } => {
                let _ = write!(
                    line,
                    "{} → {}  {} → {}",
                    ep(&net.local),
                    ep(&net.remote),
                    state.old,
                    state.new
                );
            }
            Detail::Udp { net, udp } => {
                let _ = write!(
                    line,
                    "{} ⇄ {}  sent {} pkt/{} B, received {} pkt/{} B{}",
                    ep(&net.local),
                    ep(&net.remote),
                    udp.packets_sent,
                    udp.bytes_sent,
                    udp.packets_received,
                    udp.bytes_received,
                    if udp.closed { "" } else { " (open)" }
                );
            }
            Detail::Dns { dns, .. } => {
                let q = dns.question.as_ref();
                let _ = write!(
                    line,
                    "{} {} {} → {} {}",
                    dns.role,
                    q.map_or("?", |q| q.qtype.as_str()),
                    q.map_or("?", |q| q.name.as_str()),
                    dns.resolver,
                    dns.rcode.as_deref().unwrap_or(dns.status)
                );
                for a in &dns.answers {
                    let _ = write!(line, " {}", a.data);
                }
                if let Some(ns) = dns.latency_ns {
                    let _ = write!(line, " ({})", human_duration(ns));
                }
            }
            Detail::Getaddrinfo { getaddrinfo: g } => {
                let _ = write!(line, "getaddrinfo({}) {}", g.name, g.result);
                for a in &g.addresses {
                    let _ = write!(line, " {a}");
                }
                let _ = write!(line, " ({})", human_duration(g.latency_ns));
            }
            Detail::Lost { lost } => match (lost.kind, &lost.program) {
                (Some(kind), _) => {
                    let _ = write!(
                        line,
                        "{magenta}{} {} record(s) lost on cpu {}{reset}",
                        lost.count,
                        kind.name(),
                        ev.cpu,
                    );
                }
                (None, program) => {
                    let _ = write!(
                        line,
                        "{magenta}{} run(s) of {} skipped by the kernel (nested on one CPU){reset}",
                        lost.count,
                        program.as_deref().unwrap_or("a program"),
                    );
                }
            },
        }
        line.push('\n');
        self.out.write_all(line.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExitDetail, Kind, LostDetail, Process, WallTime};
    use crate::text::Text;

    fn exit_event(code: u32) -> Event {
        let (c, s, core) = ExitDetail::status(code);
        Event {
            time: WallTime(3_723_004_000_000),
            ktime: 1,
            cpu: 0,
            seq: Some(7),
            process: Some(Process {
                pid: 42,
                tid: 42,
                ppid: 1,
                uid: 0,
                gid: 0,
                euid: 0,
                egid: 0,
                auid: None,
                comm: Text::from("sle\u{1b}ep"),
                exe: None,
                exec_id: "x:1:42".into(),
                parent_exec_id: None,
                start_time: WallTime(0),
                cgroup_id: 1,
                cgroup: Some("/".into()),
                container_id: None,
                pidns: 1,
                ns_pid: 42,
                ns_tid: 42,
            }),
            detail: Detail::Exit {
                exit: ExitDetail {
                    code: c,
                    signal: s,
                    signal_name: s.and_then(crate::event::signal_name),
                    core_dumped: core,
                    lifetime_ns: 1_500_000,
                    utime_ns: 0,
                    stime_ns: 0,
                    thread: false,
                },
            },
        }
    }

    #[test]
    fn table_lines_are_aligned_and_escaped() {
        let mut out = Vec::new();
        let mut sink = TableSink::new(&mut out, false);
        sink.write(&exit_event(9 | 0x80)).unwrap();
        sink.write(&exit_event(3 << 8)).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("TIME(UTC)"));
        let want = format!(
            "01:02:03.004 {:<9} {:>7} {:>7} {:>5} sle\\u{{1b}}ep",
            "exit", 42, 1, 0
        );
        assert!(lines[1].starts_with(&want), "{:?}", lines[1]);
        assert!(
            lines[1].contains("SIGKILL (core dumped)  after 1.5ms"),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains("code 3"));
        assert_eq!(lines[1].find("DETAIL"), None);
        assert_eq!(lines[0].find("DETAIL"), lines[1].find("SIGKILL"));
    }

    #[test]
    fn colour_only_when_asked() {
        let mut plain = Vec::new();
        TableSink::new(&mut plain, false)
            .write(&exit_event(0))
            .unwrap();
        assert!(!plain.contains(&0x1b));
        let mut coloured = Vec::new();
        TableSink::new(&mut coloured, true)
            .write(&exit_event(9))
            .unwrap();
        assert!(String::from_utf8(coloured).unwrap().contains(RED));
    }

    #[test]
    fn json_is_one_line_per_event() {
        let mut out = Vec::new();
        let mut sink = JsonSink::new(&mut out);
        sink.write(&exit_event(42 << 8)).unwrap();
        let lost = Event {
            process: None,
            detail: Detail::Lost {
                lost: LostDetail {
                    reason: "buffer_full",
                    kind: Some(Kind::Fork),
                    program: None,
                    count: 2,
                    since_ktime: 0,
                },
            },
            ..exit_event(0)
        };
        sink.write(&lost).unwrap();
        let text = String::from_utf8(out).unwrap();
        let v: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(v[0]["exit"]["code"], 42);
        assert_eq!(v[0]["exit"]["signal"], serde_json::Value::Null);
        assert_eq!(v[0]["process"]["comm"], "sle\u{1b}ep");
        assert_eq!(v[1]["type"], "lost");
    }

    #[test]
    fn durations_for_humans() {
        assert_eq!(human_duration(850_000), "850µs");
        assert_eq!(human_duration(12_300_000), "12.3ms");
        assert_eq!(human_duration(4_560_000_000), "4.56s");
        assert_eq!(human_duration(123_000_000_000), "2m03s");
    }
}
