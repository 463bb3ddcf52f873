//! `ksight bench transport`: ring buffer vs perf buffer, side by side, on this machine.
//!
//! For each producer rate and record size, the transports run in alternating
//! order (A B C, B C A, C A B, ...) so that drift in the machine's state hits
//! them alike; each cell reports the median and the spread (min-max) over the
//! runs. Every run is checked for exact accounting: delivered + lost must equal
//! what the producers generated.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ksight_bpf::bench::{run, BenchCase, BenchResult, BenchTransport};
use ksight_bpf::{Agent, Config};
use ksight_core::cgroup::CgroupResolver;
use ksight_core::enrich::EnrichConfig;
use ksight_core::event::Event;
use ksight_core::filter::{Filter, FilterSpec};
use ksight_core::pipeline::{Pipeline, PipelineConfig};
use ksight_core::record::decode;
use ksight_core::sink::{CountingSink, JsonSink, Sink, TableSink};
use serde_json::json;

use crate::cli::bench::{Bench, BenchArgs, PipelineArgs, Rate, RulesBenchArgs, TransportArgs};
use crate::{preflight, run};

mod fleet;
mod overhead;
mod workload;

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("max"),
            Some(r) => f.write_str(&si(r as f64)),
        }
    }
}

/// 1234567 -> "1.23M".
fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (med, v[0], v[n - 1])
}

/// Hold /dev/cpu_dma_latency at 0 while benchmarking: idle vCPUs that halt at
/// once make the numbers swing. Released when dropped.
fn hold_cpu_awake() -> Option<File> {
    let mut f = File::options()
        .write(true)
        .open("/dev/cpu_dma_latency")
        .ok()?;
    f.write_all(&0i32.to_ne_bytes()).ok()?;
    Some(f)
}

pub fn machine() -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let mem_kb: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    json!({
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "cpu": model,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "memory_gib": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0,
        "ksight": env!("CARGO_PKG_VERSION"),
    })
}

pub fn run_bench(args: BenchArgs) -> Result<()> {
    if let Bench::Workload(w) = args.which {
        return workload::run(w);
    }
    preflight::check_privileges()?;
    match args.which {
        Bench::Transport(t) => transport(t),
        Bench::Pipeline(p) => pipeline(p),
        Bench::Overhead(o) => overhead::overhead(o),
        Bench::Rules(r) => rules(r),
        Bench::Fleet(f) => fleet::fleet(f),
        Bench::Workload(_) => unreachable!("handled above"),
    }
}

fn transport(a: TransportArgs) -> Result<()> {
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if let Some(bad) = a.sizes.iter().find(|s| !(32..=4096).contains(*s)) {
        bail!("record size {bad} is outside 32..4096 bytes");
    }
    let _awake = hold_cpu_awake();
    let command: Vec<String> = std::env::args().collect();
    let machine = machine();
    eprintln!(
        "ksight bench transport: {} cases x {} transports x {} runs of {}, on {} ({} CPUs, kernel {})",
        a.rates.len() * a.sizes.len(),
        BenchTransport::ALL.len(),
        a.runs,
        humantime::format_duration(a.duration),
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cpus"],
        machine["kernel"].as_str().unwrap_or("?"),
    );
    println!(
        "{:>6} {:>5}  {:<13} {:>22} {:>8} {:>7} {:>9} {:>9} {:>10} {:>8} {:>6}",
        "rate",
        "size",
        "transport",
        "delivered/s (min-max)",
        "vs perf",
        "lost%",
        "p50 µs",
        "p99 µs",
        "inversions",
        "µs/rec",
        "cpu%"
    );
    let mut cases_json = Vec::new();
    for &rate in &a.rates {
        for &size in &a.sizes {
            let mut results: Vec<Vec<BenchResult>> = vec![Vec::new(); BenchTransport::ALL.len()];
            for rep in 0..a.runs {
                for k in 0..BenchTransport::ALL.len() {
                    let i = (rep + k) % BenchTransport::ALL.len();
                    let case = BenchCase {
                        transport: BenchTransport::ALL[i],
                        rate: rate.0,
                        size,
                        duration: a.duration,
                        ringbuf_bytes: a.ringbuf_size,
                        perf_pages: a.perf_pages,
                        poll: Duration::from_millis(20),
                    };
                    let r = run(&case).with_context(|| {
                        format!("running {} at {rate} x {size} B", case.transport.name())
                    })?;
                    if r.delivered + r.lost != r.generated {
                        bail!(
                            "accounting broken for {} at {rate} x {size} B: delivered {} + lost {} != generated {}",
                            case.transport.name(), r.delivered, r.lost, r.generated
                        );
                    }
                    results[i].push(r);
                }
            }
            let perf_rate = median(results[2].iter().map(|r| r.rate).collect()).0;
            for (t, rs) in BenchTransport::ALL.iter().zip(&results) {
                let m = |f: fn(&BenchResult) -> f64| median(rs.iter().map(f).collect());
                let rate_m = m(|r| r.rate);
                let lost = m(|r| 100.0 * r.lost as f64 / r.generated.max(1) as f64);
                let (p50, p99) = (m(|r| r.latency_p50_us), m(|r| r.latency_p99_us));
                let inv = m(|r| r.inversions as f64);
                let us = m(|r| r.consumer_us_per_record);
                let cpu = m(|r| 100.0 * r.consumer_cpu);
                println!(
                    "{:>6} {:>5}  {:<13} {:>22} {:>7.2}x {:>7.2} {:>9.0} {:>9.0} {:>10.0} {:>8.3} {:>6.1}",
                    rate.to_string(),
                    size,
                    t.name(),
                    format!("{} ({}-{})", si(rate_m.0), si(rate_m.1), si(rate_m.2)),
                    rate_m.0 / perf_rate.max(1.0),
                    lost.0,
                    p50.0,
                    p99.0,
                    inv.0,
                    us.0,
                    cpu.0
                );
                cases_json.push(json!({
                    "rate": rate.0, "size": size, "transport": t.name(),
                    "delivered_per_s": {"median": rate_m.0, "min": rate_m.1, "max": rate_m.2},
                    "vs_perf": rate_m.0 / perf_rate.max(1.0),
                    "lost_pct": {"median": lost.0, "min": lost.1, "max": lost.2},
                    "latency_p50_us": {"median": p50.0, "min": p50.1, "max": p50.2},
                    "latency_p99_us": {"median": p99.0, "min": p99.1, "max": p99.2},
                    "inversions": {"median": inv.0, "min": inv.1, "max": inv.2},
                    "consumer_us_per_record": {"median": us.0, "min": us.1, "max": us.2},
                    "consumer_cpu_pct": {"median": cpu.0, "min": cpu.1, "max": cpu.2},
                    "runs": rs.iter().map(|r| json!({
                        "generated": r.generated, "delivered": r.delivered, "lost": r.lost,
                        "rate": r.rate, "p50_us": r.latency_p50_us, "p99_us": r.latency_p99_us,
                        "inversions": r.inversions, "consumer_us_per_record": r.consumer_us_per_record,
                    })).collect::<Vec<_>>(),
                }));
            }
        }
    }
    if let Some(path) = &a.json {
        let doc = json!({"command": command.join(" "), "machine": machine, "cases": cases_json});
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Capture the real records of `n` process lifecycles from the kernel.
fn capture(n: usize, connections: usize) -> Result<Vec<Vec<u8>>> {
    let agent = Agent::start(&Config::default())?;
    let records = RefCell::new(Vec::new());
    let mut stream = agent.stream(
        |data| {
            records.borrow_mut().push(data.to_vec());
            0
        },
        Duration::from_millis(5),
    )?;
    for i in 0..n {
        // a realistic argv: a few arguments, one of them a path
        std::process::Command::new("/bin/true")
            .args(["--flag", "value", &format!("/tmp/file-{i}.txt")])
            .status()
            .context("running /bin/true")?;
        if i % 100 == 0 {
            stream.poll(Duration::ZERO)?;
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    for i in 0..connections {
        let c = std::net::TcpStream::connect(addr)?;
        let (s, _) = listener.accept()?;
        drop(c);
        drop(s);
        if i % 100 == 0 {
            stream.poll(Duration::ZERO)?;
        }
    }
    stream.drain()?;
    drop(stream);
    Ok(records.into_inner())
}

fn pipeline(a: PipelineArgs) -> Result<()> {
    if a.runs == 0 || a.processes == 0 {
        bail!("--runs and --processes must be at least 1");
    }
    let _awake = hold_cpu_awake();
    let records = capture(a.processes, 0)?;
    eprintln!(
        "ksight bench pipeline: {} real records from {} processes, {} replays",
        records.len(),
        a.processes,
        a.runs
    );
    let stages = ["decode", "enrich", "json", "table", "write", "queue"];
    // decode: bytes -> records; enrich: the pipeline (process table, events,
    // filter) into a counting sink; json, table: serialising the events
    let mut per_stage: Vec<Vec<f64>> = vec![Vec::new(); stages.len()];
    let mut devnull = std::io::BufWriter::with_capacity(1 << 16, File::create("/dev/null")?);
    for _ in 0..a.runs {
        // each replay starts from a fresh, seeded process table, as ksight does
        let fresh = |sink: Box<dyn Sink>| -> Result<Pipeline> {
            let mut enricher = run::host_enricher(
                EnrichConfig::default(),
                CgroupResolver::from_mountinfo_file("/proc/self/mountinfo".as_ref()),
            );
            enricher.seed()?;
            Ok(Pipeline::new(
                PipelineConfig::default(),
                enricher,
                Filter::new(FilterSpec::default()),
                sink,
            ))
        };
        let t = Instant::now();
        let raws: Vec<_> = records.iter().filter_map(|r| decode(r).ok()).collect();
        let decode_t = t.elapsed();
        let mut p = fresh(Box::<CountingSink>::default())?;
        let t = Instant::now();
        for r in raws.iter().cloned() {
            p.push(r);
        }
        let enrich_t = t.elapsed();
        // the same again, kept, for the output stages
        let kept = Rc::new(RefCell::new(Vec::with_capacity(records.len())));
        let mut p = fresh(Box::new(Keep(kept.clone())))?;
        for r in raws {
            p.push(r);
        }
        let events = kept.take();
        let mut json = JsonSink::new(Vec::with_capacity(records.len() * 1024));
        let t = Instant::now();
        for ev in &events {
            json.write(ev)?;
        }
        let json_t = t.elapsed();
        let mut table = TableSink::new(Vec::with_capacity(records.len() * 256), false);
        let t = Instant::now();
        for ev in &events {
            table.write(ev)?;
        }
        let table_t = t.elapsed();
        let bytes = json.into_inner();
        let t = Instant::now();
        devnull.write_all(&bytes)?;
        devnull.flush()?;
        let write_t = t.elapsed();
        // a config file output's cost to the poll thread: filter, share, queue
        // (its own thread renders and writes to /dev/null meanwhile)
        let plan = ksight_output::OutputSpec {
            path: Some("/dev/null".into()),
            queue: Some(events.len().max(1)),
            ..toml::from_str("name = \"bench\"\nkind = \"file\"\n")?
        }
        .plan()
        .map_err(anyhow::Error::msg)?;
        let mut outs = ksight_output::Outputs::start(vec![plan])?;
        let t = Instant::now();
        for ev in &events {
            outs.write(ev)?;
        }
        let queue_t = t.elapsed();
        outs.finish(std::time::Duration::from_secs(30));
        let n = records.len().max(1) as f64;
        for (i, d) in [decode_t, enrich_t, json_t, table_t, write_t, queue_t]
            .iter()
            .enumerate()
        {
            per_stage[i].push(d.as_secs_f64() * 1e6 / n);
        }
    }
    println!("{:<8} {:>22}", "stage", "µs/record (min-max)");
    let mut total = 0.0;
    for (name, v) in stages.iter().zip(per_stage) {
        let (m, lo, hi) = median(v);
        if *name != "table" && *name != "queue" {
            total += m;
        }
        println!("{name:<8} {:>10.3} ({lo:.3}-{hi:.3})", m);
    }
    println!(
        "total    {total:>10.3} µs/record for JSON output: one core keeps up with {} records/s",
        si(1e6 / total)
    );
    Ok(())
}

/// The events a fresh pipeline makes of `records`.
fn events_of(records: &[Vec<u8>]) -> Result<Vec<Event>> {
    let mut enricher = run::host_enricher(
        EnrichConfig::default(),
        CgroupResolver::from_mountinfo_file("/proc/self/mountinfo".as_ref()),
    );
    enricher.seed()?;
    let kept = Rc::new(RefCell::new(Vec::with_capacity(records.len())));
    let mut p = Pipeline::new(
        PipelineConfig::default(),
        enricher,
        Filter::new(FilterSpec::default()),
        Box::new(Keep(kept.clone())),
    );
    for r in records {
        p.record(r);
    }
    Ok(kept.take())
}

/// The shipped pack, its rules copied under new ids until there are `n`.
fn pack_of(n: usize) -> ksight_rules::RuleSet {
    let mut sources: Vec<(String, String)> = Vec::new();
    let mut count = 0;
    let mut copy = 0;
    while count < n {
        for (name, text) in ksight_rules::DEFAULT_PACK {
            let rules = text.matches("- rule: ").count();
            if copy == 0 {
                sources.push((name.to_string(), text.to_string()));
            } else if rules > 0 {
                let renamed = text.replace("- rule: ", &format!("- rule: c{copy}_"));
                sources.push((format!("{name}#{copy}"), renamed));
            }
            count += rules;
        }
        copy += 1;
    }
    ksight_rules::load(&sources).expect("copies of the shipped pack load")
}

fn rules(a: RulesBenchArgs) -> Result<()> {
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let _awake = hold_cpu_awake();
    let records = capture(a.processes, a.connections)?;
    let events = events_of(&records)?;
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for e in &events {
        let k = e.kind().name();
        match kinds.iter_mut().find(|(n, _)| *n == k) {
            Some((_, c)) => *c += 1,
            None => kinds.push((k, 1)),
        }
    }
    eprintln!(
        "ksight bench rules: {} real events ({}), {} evaluations each",
        events.len(),
        kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        a.runs
    );
    println!(
        "{:<22} {:>6} {:>26} {:>14}",
        "rules", "enabled", "ns/event median (min-max)", "exec ns/event"
    );
    let sets = [
        (
            "shipped pack",
            ksight_rules::default_pack().map_err(|e| anyhow::anyhow!("{e:?}"))?,
        ),
        ("200 rules", pack_of(200)),
    ];
    let execs: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind().name() == "exec")
        .collect();
    let mut engines: Vec<_> = sets
        .into_iter()
        .map(|(label, set)| {
            (
                label,
                set.enabled(),
                ksight_rules::Engine::<Event>::new(set),
            )
        })
        .collect();
    // Runs alternate between the sets, so this machine's slow phases fall on both.
    let mut per_event = vec![Vec::new(); engines.len()];
    let mut per_exec = vec![Vec::new(); engines.len()];
    let mut fired = Vec::new();
    for _ in 0..a.runs {
        for (i, (_, _, engine)) in engines.iter_mut().enumerate() {
            let t = Instant::now();
            for e in &events {
                engine.eval(e, e.ktime, &mut fired);
                fired.clear();
            }
            per_event[i].push(t.elapsed().as_secs_f64() * 1e9 / events.len().max(1) as f64);
            let t = Instant::now();
            for e in &execs {
                engine.eval(*e, e.ktime, &mut fired);
                fired.clear();
            }
            per_exec[i].push(t.elapsed().as_secs_f64() * 1e9 / execs.len().max(1) as f64);
        }
    }
    for (i, (label, enabled, _)) in engines.iter().enumerate() {
        let (m, lo, hi) = median(std::mem::take(&mut per_event[i]));
        let (x, _, _) = median(std::mem::take(&mut per_exec[i]));
        println!(
            "{label:<22} {enabled:>6} {:>26} {x:>14.0}",
            format!("{m:.0} ({lo:.0}-{hi:.0})")
        );
    }
    Ok(())
}

/// Keeps the events it is given.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spread() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }
}
