//! Prometheus metrics (`--metrics ADDR`, off by default): a snapshot of
//! ksight's counters, taken by the poll loop once a second and encoded by
//! `prometheus-client`; a small HTTP server thread answers `GET /metrics`
//! with the latest one. A scrape never touches the pipeline.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use ksight_bpf::agent::ProgramStats;
use ksight_output::outputs::OutputCounts;

/// What the metrics say, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Events written, by kind.
    pub events: Vec<(&'static str, u64)>,
    /// Lost, by (kind, stage): the kernel's per kind, the outputs' as `any`.
    pub lost: Vec<(String, &'static str, u64)>,
    pub ring_usage: Option<f64>,
    /// By rule: matches, suppressed.
    pub rules: Vec<(String, u64, u64)>,
    /// Enforcement: acts (or would-be acts in monitor mode) by rule, and DNS
    /// answer addresses the full answers map refused.
    pub enforcements: Vec<(String, u64)>,
    pub answers_refused: Option<u64>,
    pub outputs: Vec<OutputCounts>,
    pub process_table: usize,
    pub programs: Vec<ProgramStats>,
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub kernel: String,
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        fn family<'a, M: EncodeMetric>(
            enc: &mut DescriptorEncoder,
            name: &str,
            help: &str,
            rows: impl IntoIterator<Item = (Vec<(&'a str, String)>, M)>,
            kind: prometheus_client::metrics::MetricType,
        ) -> Result<(), std::fmt::Error> {
            let mut m = enc.encode_descriptor(name, help, None, kind)?;
            let mut rows: Vec<_> = rows.into_iter().collect();
            if rows.len() == 1 && rows[0].0.is_empty() {
                // one value, no labels: `name value`, not `name{} value`
                let (_, metric) = rows.remove(0);
                return metric.encode(m);
            }
            for (labels, metric) in rows {
                metric.encode(m.encode_family(&labels)?)?;
            }
            Ok(())
        }
        use prometheus_client::metrics::MetricType::{Counter, Gauge};
        family(
            &mut enc,
            "ksight_events",
            "Events written, by kind.",
            self.events
                .iter()
                .map(|(k, n)| (vec![("kind", k.to_string())], ConstCounter::new(*n))),
            Counter,
        )?;
        family(
            &mut enc,
            "ksight_lost",
            "Events lost, by kind and stage (kernel: the ring or perf buffer refused the record, or a program run was skipped; output: an output dropped or could not deliver it).",
            self.lost.iter().map(|(k, s, n)| {
                (
                    vec![("kind", k.clone()), ("stage", s.to_string())],
                    ConstCounter::new(*n),
                )
            }),
            Counter,
        )?;
        if let Some(u) = self.ring_usage {
            family(
                &mut enc,
                "ksight_ring_usage_ratio",
                "How full the ring buffer was at the last poll (0 to 1).",
                [(vec![], ConstGauge::new(u))],
                Gauge,
            )?;
        }
        family(
            &mut enc,
            "ksight_rule_matches",
            "Events that matched each rule.",
            self.rules
                .iter()
                .map(|(r, m, _)| (vec![("rule", r.clone())], ConstCounter::new(*m))),
            Counter,
        )?;
        family(
            &mut enc,
            "ksight_rule_suppressed",
            "Matches folded into an earlier alert (deduplication), by rule.",
            self.rules
                .iter()
                .map(|(r, _, s)| (vec![("rule", r.clone())], ConstCounter::new(*s))),
            Counter,
        )?;
        family(
            &mut enc,
            "ksight_enforcements",
            "Connections denied and execs killed (or, in monitor mode, that would have been), by rule, counted in the kernel.",
            self.enforcements
                .iter()
                .map(|(r, n)| (vec![("rule", r.clone())], ConstCounter::new(*n))),
            Counter,
        )?;
        if let Some(n) = self.answers_refused {
            family(
                &mut enc,
                "ksight_enforce_answers_refused",
                "Addresses of DNS answers for denied names not added: the answers map was full.",
                [(vec![], ConstCounter::new(n))],
                Counter,
            )?;
        }
        let outs = |f: fn(&OutputCounts) -> u64| {
            self.outputs
                .iter()
                .map(move |o| (vec![("output", o.name.clone())], f(o)))
                .collect::<Vec<_>>()
        };
        family(
            &mut enc,
            "ksight_output_queue_depth",
            "Events waiting in each output's queue.",
            outs(|o| o.queued as u64)
                .into_iter()
                .map(|(l, v)| (l, ConstGauge::new(v as i64))),
            Gauge,
        )?;
        let fleet = |f: fn(ksight_output::FleetCounts) -> u64| {
            self.outputs
                .iter()
                .filter_map(move |o| Some((vec![("output", o.name.clone())], f(o.fleet?))))
                .collect::<Vec<_>>()
        };
        family(
            &mut enc,
            "ksight_fleet_spooled",
            "Events waiting in each nats output's on-disk spool.",
            fleet(|f| f.spooled)
                .into_iter()
                .map(|(l, v)| (l, ConstGauge::new(v as i64))),
            Gauge,
        )?;
        type FleetRow = (
            &'static str,
            &'static str,
            fn(ksight_output::FleetCounts) -> u64,
        );
        let fleet_counters: [FleetRow; 3] = [
            (
                "ksight_fleet_acked",
                "Events each nats output had acknowledged by the stream.",
                |f| f.acked,
            ),
            (
                "ksight_fleet_duplicates",
                "Events acknowledged as stored before (a retry, deduplicated by message id).",
                |f| f.duplicates,
            ),
            (
                "ksight_fleet_spilled",
                "Events that went to the on-disk spool because the stream did not take them at once.",
                |f| f.spilled,
            ),
        ];
        for (name, help, f) in fleet_counters {
            let rows = fleet(f).into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
            family(&mut enc, name, help, rows, Counter)?;
        }
        type Row = (&'static str, &'static str, fn(&OutputCounts) -> u64);
        let counters: [Row; 3] = [
            (
                "ksight_output_delivered",
                "Events each output delivered.",
                |o| o.delivered,
            ),
            (
                "ksight_output_dropped",
                "Events each output's full queue dropped.",
                |o| o.dropped,
            ),
            (
                "ksight_output_errors",
                "Events each output could not deliver (a failed write or send).",
                |o| o.failed,
            ),
        ];
        for (name, help, f) in counters {
            let rows = outs(f).into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
            family(&mut enc, name, help, rows, Counter)?;
        }
        family(
            &mut enc,
            "ksight_process_table_entries",
            "Processes in ksight's process table (live, and exited ones kept for --grace).",
            [(vec![], ConstGauge::new(self.process_table as i64))],
            Gauge,
        )?;
        family(
            &mut enc,
            "ksight_bpf_program_run_seconds",
            "Time the kernel spent running each ksight program (counted only while kernel.bpf_stats_enabled is 1).",
            self.programs.iter().map(|p| {
                (
                    vec![("program", p.name.clone())],
                    ConstCounter::new(p.run_time_ns as f64 / 1e9),
                )
            }),
            Counter,
        )?;
        family(
            &mut enc,
            "ksight_bpf_program_runs",
            "Runs of each ksight program (counted only while kernel.bpf_stats_enabled is 1).",
            self.programs.iter().map(|p| {
                (
                    vec![("program", p.name.clone())],
                    ConstCounter::new(p.run_count),
                )
            }),
            Counter,
        )?;
        family(
            &mut enc,
            "ksight_cpu_seconds",
            "CPU time ksight's userspace used (user and system).",
            [(vec![], ConstCounter::new(self.cpu_seconds))],
            Counter,
        )?;
        family(
            &mut enc,
            "ksight_resident_memory_bytes",
            "ksight's resident memory.",
            [(vec![], ConstGauge::new(self.rss_bytes as i64))],
            Gauge,
        )?;
        family(
            &mut enc,
            "ksight_build_info",
            "ksight's version and the running kernel, as labels; the value is 1.",
            [(
                vec![
                    ("version", env!("CARGO_PKG_VERSION").to_string()),
                    ("kernel", self.kernel.clone()),
                ],
                ConstGauge::new(1i64),
            )],
            Gauge,
        )?;
        Ok(())
    }
}

impl Snapshot {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        // encoding into a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// ksight's own CPU time (seconds) and resident memory (bytes).
pub fn own_usage() -> (f64, u64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = secs(ru.ru_utime) + secs(ru.ru_stime);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page);
    (cpu, rss)
}

/// The HTTP endpoint: the latest rendered snapshot.
pub struct Server {
    text: Arc<Mutex<String>>,
    pub addr: SocketAddr,
}

impl Server {
    pub fn start(addr: SocketAddr) -> Result<Server> {
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("--metrics {addr}: listening for Prometheus"))?;
        let addr = listener.local_addr()?;
        let text = Arc::new(Mutex::new(String::new()));
        let shared = text.clone();
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
                    let body = shared.lock().map(|t| t.clone()).unwrap_or_default();
                    answer(conn, &body);
                }
            })?;
        Ok(Server { text, addr })
    }

    pub fn update(&self, snap: &Snapshot) {
        let text = snap.render();
        if let Ok(mut t) = self.text.lock() {
            *t = text;
        }
    }
}

/// One request: `GET /metrics` gets the text, anything else 404.
fn answer(conn: std::net::TcpStream, body: &str) {
    let mut r = BufReader::new(conn);
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    // the headers, up to the blank line
    let mut line = String::new();
    while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" && line != "\n" {
        line.clear();
    }
    let mut conn = r.into_inner();
    let path = first.split_whitespace().nth(1).unwrap_or("");
    let _ = if first.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        write!(
            conn,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let snap = Snapshot {
            events: vec![("exec", 3)],
            lost: vec![("exec".into(), "kernel", 1)],
            ring_usage: Some(0.25),
            rules: vec![("ksight.shell".into(), 2, 1)],
            enforcements: vec![("no_metadata".into(), 4)],
            answers_refused: Some(0),
            outputs: vec![
                OutputCounts {
                    name: "file".into(),
                    delivered: 5,
                    dropped: 1,
                    failed: 2,
                    queued: 7,
                    fleet: None,
                },
                OutputCounts {
                    name: "fleet".into(),
                    delivered: 10,
                    dropped: 0,
                    failed: 0,
                    queued: 0,
                    fleet: Some(ksight_output::FleetCounts {
                        acked: 8,
                        duplicates: 1,
                        spooled: 2,
                        spilled: 3,
                    }),
                },
            ],
            process_table: 9,
            programs: vec![ProgramStats {
                name: "ks_exec_btf".into(),
                run_time_ns: 1_500_000_000,
                run_count: 4,
                skipped: 0,
            }],
            cpu_seconds: 0.5,
            rss_bytes: 4096,
            kernel: "6.18.0".into(),
        };
        let t = snap.render();
        for want in [
            "ksight_events_total{kind=\"exec\"} 3",
            "ksight_lost_total{kind=\"exec\",stage=\"kernel\"} 1",
            "ksight_ring_usage_ratio 0.25",
            "ksight_rule_matches_total{rule=\"ksight.shell\"} 2",
            "ksight_rule_suppressed_total{rule=\"ksight.shell\"} 1",
            "ksight_output_queue_depth{output=\"file\"} 7",
            "ksight_output_dropped_total{output=\"file\"} 1",
            "ksight_output_errors_total{output=\"file\"} 2",
            "ksight_fleet_acked_total{output=\"fleet\"} 8",
            "ksight_fleet_duplicates_total{output=\"fleet\"} 1",
            "ksight_fleet_spilled_total{output=\"fleet\"} 3",
            "ksight_fleet_spooled{output=\"fleet\"} 2",
            "ksight_process_table_entries 9",
            "ksight_bpf_program_run_seconds_total{program=\"ks_exec_btf\"} 1.5",
            "ksight_cpu_seconds_total 0.5",
            "ksight_resident_memory_bytes 4096",
            "ksight_build_info{version=",
        ] {
            assert!(t.contains(want), "{want} not in\n{t}");
        }
    }

    #[test]
    fn the_endpoint_serves_metrics_and_nothing_else() {
        let s = Server::start("127.0.0.1:0".parse().unwrap()).unwrap();
        s.update(&Snapshot {
            events: vec![("fork", 11)],
            ..Default::default()
        });
        let get = |path: &str| {
            let mut c = std::net::TcpStream::connect(s.addr).unwrap();
            write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            std::io::Read::read_to_string(&mut c, &mut out).unwrap();
            out
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("ksight_events_total{kind=\"fork\"} 11"), "{ok}");
        assert!(get("/").starts_with("HTTP/1.1 404"));
    }
}
