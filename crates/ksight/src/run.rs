//! `ksight run`: attach, stream events, stop cleanly.
//!
//! One thread, one direction: ring buffer -> `decode` -> `Enricher` -> `Filter`
//! -> `Sink`. Records arrive in ring order (causal per process). The kernel
//! writes records without waking us (BPF_RB_NO_WAKEUP) unless a backlog builds
//! up, and we poll on a timer, so output lags events by at most
//! `--poll-interval` and a wake-up costs nothing per event.
//!
//! Loss is reported in-band: each interval the per-CPU drop counters are read
//! and any increase becomes a `lost` event, and the exit summary totals them.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ksight_bpf::agent::KINDS;
use ksight_bpf::sys::{clock_now, ktime_now};
use ksight_bpf::{decode, Agent, AttachMode, Config, StreamStats, TransportMode};
use ksight_core::cgroup::CgroupResolver;
use ksight_core::dns::DnsTracker;
use ksight_core::enrich::{EnrichConfig, Enricher};
use ksight_core::event::{Detail, Event, Kind, LostDetail};
use ksight_core::filter::Filter;
use ksight_core::procfs::ProcFs;
use ksight_core::raw::{RawEvent, RawUdpClose, RawUdpFlow};
use ksight_core::sink::{JsonSink, Sink, TableSink};

use crate::cli::{AcceptHook, Attach, Color, Format, RunArgs, Transport};
use crate::preflight;

/// Counters for the exit summary.
#[derive(Debug, Default)]
struct Stats {
    records: u64,
    written: [u64; Kind::ALL.len()],
    filtered: u64,
    duplicate_exits: u64,
    undecodable: u64,
    lost: [u64; KINDS],
    /// Program runs the kernel skipped (nested on one CPU): records possibly lost.
    skipped_runs: u64,
}

/// Everything a record goes through after the ring buffer.
struct Pipeline {
    enricher: Enricher,
    filter: Filter,
    sink: Box<dyn Sink>,
    stats: Stats,
    /// A write failed: the poll loop stops and reports it.
    error: Option<io::Error>,
    /// UDP sockets released since the last poll: their flows are reported after it.
    udp_closed: Vec<RawUdpClose>,
    /// DNS queries waiting for their responses.
    dns: DnsTracker,
}

impl Pipeline {
    /// The ring-buffer callback. Never panics; returns non-zero to stop consuming.
    fn record(&mut self, data: &[u8]) -> i32 {
        self.stats.records += 1;
        let raw = match decode(data) {
            Ok(raw) => raw,
            Err(e) => {
                self.stats.undecodable += 1;
                if self.stats.undecodable <= 5 {
                    eprintln!("ksight: warning: skipped a record: {e}");
                }
                return 0;
            }
        };
        let raw = match raw {
            RawEvent::UdpClose(c) => {
                self.udp_closed.push(c);
                return 0;
            }
            RawEvent::Dns(d) => {
                return match self.dns.packet(d) {
                    Some(tx) => {
                        let ev = self.enricher.dns(tx);
                        self.emit(&ev)
                    }
                    None => 0,
                };
            }
            other => other,
        };
        let exit = matches!(raw, RawEvent::Exit(_));
        match self.enricher.enrich(raw) {
            Some(ev) => self.emit(&ev),
            // an exit already reported (two threads raced to be last); other
            // records that make no event of their own (a getaddrinfo call) pass
            None => {
                if exit {
                    self.stats.duplicate_exits += 1;
                }
                0
            }
        }
    }

    fn emit(&mut self, ev: &Event) -> i32 {
        if !self.filter.matches(ev) {
            self.stats.filtered += 1;
            return 0;
        }
        if let Err(e) = self.sink.write(ev) {
            self.error = Some(e);
            return -1;
        }
        self.stats.written[ev.kind() as usize] += 1;
        0
    }
}

/// Reports UDP flows: those of released sockets after each poll (final), and
/// every `interval` those of open sockets that saw traffic since.
struct UdpReport {
    interval: Duration,
    last: Instant,
    /// last_ns of each open flow when it was last reported
    reported: HashMap<(u64, SocketAddr), u64>,
}

impl UdpReport {
    fn new(interval: Duration) -> Self {
        UdpReport {
            interval,
            last: Instant::now(),
            reported: HashMap::new(),
        }
    }

    fn closed(&mut self, agent: &Agent, p: &mut Pipeline) {
        if p.udp_closed.is_empty() {
            return;
        }
        let closes = std::mem::take(&mut p.udp_closed);
        // most sockets name their flows' remotes: a lookup each; the rest
        // (servers with many peers, sockets older than ksight) share one scan
        let scan: HashSet<u64> = closes
            .iter()
            .filter(|c| c.remotes.is_none())
            .map(|c| c.cookie)
            .collect();
        let mut scanned: HashMap<u64, Vec<RawUdpFlow>> = HashMap::new();
        if !scan.is_empty() {
            for f in agent.udp_flows(Some(&scan)) {
                scanned.entry(f.cookie).or_default().push(f);
            }
        }
        for c in &closes {
            let flows = match &c.remotes {
                Some(remotes) => agent.udp_flows_of(c.cookie, remotes),
                None => scanned.remove(&c.cookie).unwrap_or_default(),
            };
            for f in &flows {
                self.reported.remove(&(f.cookie, f.remote));
                let ev = p
                    .enricher
                    .udp(c.owner.as_ref(), c.netns, f, true, c.hdr.ktime_ns);
                p.emit(&ev);
            }
        }
    }

    fn open(&mut self, agent: &Agent, p: &mut Pipeline, force: bool) {
        if !force && self.last.elapsed() < self.interval {
            return;
        }
        self.last = Instant::now();
        let now = ktime_now();
        let mut seen = HashMap::new();
        for f in agent.udp_flows(None) {
            let key = (f.cookie, f.remote);
            seen.insert(key, f.last_ns);
            if self.reported.get(&key) == Some(&f.last_ns) {
                continue; // no traffic since the last report
            }
            let owner = agent.udp_owner(f.cookie);
            let (task, netns) = match &owner {
                Some((t, n)) => (Some(t), *n),
                None => (None, 0),
            };
            let ev = p.enricher.udp(task, netns, &f, false, now);
            p.emit(&ev);
        }
        self.reported = seen;
    }
}

/// Turns increases of the kernel's per-CPU drop counters, and of its counts
/// of skipped program runs, into `lost` events.
struct LossWatch {
    last: Vec<[u64; KINDS]>,
    /// Skipped runs reported so far, by program.
    skipped: HashMap<String, u64>,
    since: u64,
}

impl LossWatch {
    /// Counting from zero: the maps are this run's own, so every drop since
    /// the programs were attached is reported, including those before the
    /// consumer existed (the perf buffer refuses records until it is opened).
    fn new(agent: &Agent, attached_ktime: u64) -> Result<Self> {
        let cpus = agent.drops().context("reading drop counters")?.len();
        Ok(LossWatch {
            last: vec![[0; KINDS]; cpus],
            skipped: HashMap::new(),
            since: attached_ktime,
        })
    }

    fn check(&mut self, agent: &Agent, p: &mut Pipeline) -> Result<()> {
        let now = agent.drops().context("reading drop counters")?;
        let ktime = ktime_now();
        for (cpu, (new, old)) in now.iter().zip(&self.last).enumerate() {
            for k in 0..KINDS {
                let count = new[k].saturating_sub(old[k]);
                let Some(kind) = ksight_bpf::decode::kind(k as u32) else {
                    continue;
                };
                if count == 0 {
                    continue;
                }
                p.stats.lost[k] += count;
                let ev = Event {
                    time: p.enricher.clock().wall(ktime),
                    ktime,
                    cpu: cpu as u32,
                    seq: None,
                    process: None,
                    detail: Detail::Lost {
                        lost: LostDetail {
                            reason: "buffer_full",
                            kind: Some(kind),
                            program: None,
                            count,
                            since_ktime: self.since,
                        },
                    },
                };
                p.emit(&ev);
            }
        }
        for (program, total) in agent.skipped_runs() {
            let seen = self.skipped.entry(program.clone()).or_default();
            let count = total.saturating_sub(*seen);
            *seen = total;
            if count == 0 {
                continue;
            }
            p.stats.skipped_runs += count;
            let ev = Event {
                time: p.enricher.clock().wall(ktime),
                ktime,
                // the kernel counts these per program, not per CPU
                cpu: 0,
                seq: None,
                process: None,
                detail: Detail::Lost {
                    lost: LostDetail {
                        reason: "skipped_runs",
                        kind: None,
                        program: Some(program),
                        count,
                        since_ktime: self.since,
                    },
                },
            };
            p.emit(&ev);
        }
        self.last = now;
        self.since = ktime;
        Ok(())
    }
}

fn sink(args: &RunArgs) -> Result<Box<dyn Sink>> {
    let to_tty = args.output.is_none() && io::stdout().is_terminal();
    let table = match args.format {
        Format::Auto => to_tty,
        Format::Json => false,
        Format::Table => true,
    };
    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => to_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let out: Box<dyn Write> = match &args.output {
        Some(path) => {
            Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => Box::new(io::stdout()),
    };
    let out = BufWriter::with_capacity(1 << 16, out);
    Ok(if table {
        Box::new(TableSink::new(out, color))
    } else {
        Box::new(JsonSink::new(out))
    })
}

/// The cgroup directories `--cgroup` names, under the cgroup2 mount.
fn cgroup_dirs(args: &RunArgs, cgroups: &CgroupResolver) -> Result<Vec<PathBuf>> {
    if args.cgroup.is_empty() {
        return Ok(Vec::new());
    }
    let mount = cgroups
        .mount()
        .context("--cgroup needs cgroup v2, and no cgroup2 file system is mounted")?;
    args.cgroup
        .iter()
        .map(|c| {
            let dir = mount.join(c.trim_start_matches('/'));
            if dir.is_dir() {
                Ok(dir)
            } else {
                bail!(
                    "--cgroup {c}: no such cgroup ({} does not exist)",
                    dir.display()
                )
            }
        })
        .collect()
}

fn config(args: &RunArgs, cgroups: Vec<PathBuf>, cgroup_root: Option<PathBuf>) -> Config {
    Config {
        ringbuf_bytes: args.ringbuf_size,
        wakeup_bytes: u64::from(args.ringbuf_size / 32),
        argv_max: args.argv_max,
        threads: args.threads,
        attach: match args.attach {
            Attach::Auto => AttachMode::Auto,
            Attach::TpBtf => AttachMode::TpBtf,
            Attach::RawTp => AttachMode::RawTp,
        },
        transport: match args.transport {
            Transport::Auto => TransportMode::Auto,
            Transport::Ringbuf => TransportMode::Ringbuf,
            Transport::Perf => TransportMode::Perf,
        },
        perf_pages: args.perf_pages,
        btf: args.btf.clone(),
        cgroups,
        // network programs only when some network kind is wanted
        net: args.events.is_empty() || args.events.iter().any(|k| k.is_network()),
        tcp_states: args.events.contains(&Kind::TcpState),
        accept: match args.accept_hook {
            AcceptHook::Auto => ksight_bpf::AcceptHook::Auto,
            AcceptHook::Fexit => ksight_bpf::AcceptHook::Fexit,
            AcceptHook::Kretprobe => ksight_bpf::AcceptHook::Kretprobe,
            AcceptHook::Off => ksight_bpf::AcceptHook::Off,
        },
        udp: args.events.is_empty()
            || args.events.contains(&Kind::Udp)
            || args.events.contains(&Kind::Dns),
        cgroup_root,
        gai: args.events.is_empty() || args.events.contains(&Kind::Getaddrinfo),
        ports: args.port.clone(),
        no_loopback: args.no_loopback,
        dns_ports: if args.events.is_empty() || args.events.contains(&Kind::Dns) {
            args.dns_port.clone()
        } else {
            Vec::new()
        },
    }
}

fn filter(args: &RunArgs) -> Filter {
    Filter {
        kinds: args.events.iter().copied().collect(),
        pids: args.pid.clone(),
        comms: args.comm.clone(),
        uids: args.uid.clone(),
        containers: args.container.clone(),
    }
}

/// An enricher for this host's /proc, clocks and boot.
pub fn host_enricher(cfg: EnrichConfig, cgroups: CgroupResolver) -> Enricher {
    let procfs = ProcFs::new("/proc");
    let boot = procfs.boot_id().unwrap_or_default();
    let boot = boot.get(..8).unwrap_or("00000000");
    Enricher::new(cfg, clock_now(), boot, procfs, cgroups)
}

pub fn run(args: RunArgs) -> Result<()> {
    let started = Instant::now();
    preflight::check_privileges()?;
    preflight::check_btf(args.btf.as_deref())?;
    let sink = sink(&args)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }

    let cgroups = CgroupResolver::from_mountinfo_file("/proc/self/mountinfo".as_ref());
    let root = cgroups.mount().map(PathBuf::from);
    let attached_ktime = ktime_now();
    let cfg = config(&args, cgroup_dirs(&args, &cgroups)?, root);
    let agent = Agent::start(&cfg)?;
    if let Some(why) = agent.fallback() {
        eprintln!("ksight: degraded: tp_btf programs refused, using raw tracepoints ({why})");
    }
    if let Some(why) = agent.net_error() {
        eprintln!("ksight: degraded: TCP events unavailable: {why}");
    }
    if let Some(why) = agent.accept_error() {
        if cfg.accept != ksight_bpf::AcceptHook::Auto {
            bail!("--accept-hook {}: {why}", cfg.accept);
        }
        eprintln!(
            "ksight: degraded: accepted connections are attributed to their listener's owner \
             ({why})"
        );
    }
    if let Some(why) = agent.gai_error() {
        eprintln!("ksight: degraded: getaddrinfo events unavailable: {why}");
    }
    if let Some(why) = agent.udp_error() {
        eprintln!("ksight: degraded: UDP flows unavailable: {why}");
    }
    if args.transport == Transport::Auto && agent.transport() == TransportMode::Perf {
        eprintln!(
            "ksight: degraded: no BPF ring buffer on this kernel (5.8+), using the perf buffer: \
             records are merged across CPUs with {} of added latency",
            humantime::format_duration(args.reorder_window)
        );
    }
    if args.verbose {
        let (progs, maps) = agent.kernel_ids();
        eprintln!(
            "ksight: loaded via {} and {}: prog ids {progs:?}, map ids {maps:?}",
            agent.mode(),
            agent.transport()
        );
    }

    let enrich_cfg = EnrichConfig {
        ancestors: args.ancestors,
        grace_ns: args.grace.as_nanos() as u64,
    };
    let mut enricher = host_enricher(enrich_cfg, cgroups);
    let known = enricher.seed().context("reading /proc")?;

    let pipeline = RefCell::new(Pipeline {
        enricher,
        filter: filter(&args),
        sink,
        stats: Stats::default(),
        error: None,
        udp_closed: Vec::new(),
        dns: DnsTracker::new(args.dns_timeout.as_nanos() as u64),
    });
    let mut stream = agent
        .stream(
            |data| pipeline.borrow_mut().record(data),
            args.reorder_window,
        )
        .with_context(|| format!("setting up the {} consumer", agent.transport()))?;
    let mut loss = LossWatch::new(&agent, attached_ktime)?;
    let mut udp = UdpReport::new(args.udp_interval);
    eprintln!(
        "ksight: watching: {} programs attached via {}{}, records through {}, {known} processes known, in {} ms",
        agent.links(),
        agent.mode(),
        agent
            .accept_hook()
            .map(|h| format!(" (accept() via {h})"))
            .unwrap_or_default(),
        agent.transport(),
        started.elapsed().as_millis()
    );

    // a --duration too long to add is no deadline at all
    let deadline = args.duration.and_then(|d| Instant::now().checked_add(d));
    let mut last_clock = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let timeout = match deadline {
            Some(d) => args
                .poll_interval
                .min(d.saturating_duration_since(Instant::now())),
            None => args.poll_interval,
        };
        let polled = stream.poll(timeout);
        let mut p = pipeline.borrow_mut();
        if let Some(e) = p.error.take() {
            return Err(e).context("writing events");
        }
        polled.context("reading records from the kernel")?;
        udp.closed(&agent, &mut p);
        udp.open(&agent, &mut p, false);
        for tx in p.dns.expire(ktime_now()) {
            let ev = p.enricher.dns(tx);
            p.emit(&ev);
        }
        loss.check(&agent, &mut p)?;
        if last_clock.elapsed() >= Duration::from_secs(1) {
            p.enricher.set_clock(clock_now());
            last_clock = Instant::now();
        }
        p.enricher.evict(ktime_now());
        p.sink.flush().context("writing events")?;
    }

    // detach, then drain what the kernel wrote and account for what it refused:
    // nothing written between the last read and the detach goes unread
    agent.detach();
    let drained = stream.drain();
    let mut p = pipeline.borrow_mut();
    drained.context("reading records from the kernel")?;
    // closed sockets' flows, then the open ones' totals so far
    udp.closed(&agent, &mut p);
    udp.open(&agent, &mut p, true);
    if let Some(e) = p.error.take() {
        return Err(e).context("writing events");
    }
    loss.check(&agent, &mut p)?;
    p.sink.flush().context("writing events")?;
    summary(&p.stats, stream.stats(), started.elapsed());
    if p.dns.malformed > 0 {
        eprintln!(
            "ksight: {} datagrams on DNS ports did not parse as DNS and were skipped",
            p.dns.malformed
        );
    }
    Ok(())
}

fn summary(s: &Stats, stream: StreamStats, elapsed: Duration) {
    let by_kind = |counts: &[u64], kinds: &mut dyn Iterator<Item = (usize, Kind)>| {
        kinds
            .map(|(i, k)| format!("{} {}", k.name(), counts[i]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let written: u64 = s.written.iter().sum();
    let lost: u64 = s.lost.iter().sum();
    let wire_kinds =
        || (0..KINDS).filter_map(|i| ksight_bpf::decode::kind(i as u32).map(|k| (i, k)));
    eprintln!(
        "ksight: stopped after {:.1}s: {} records, {written} events written ({}), {} filtered out, \
         {lost} lost ({}), {} program runs skipped, {} undecodable, {} duplicate exits",
        elapsed.as_secs_f64(),
        s.records,
        by_kind(&s.written, &mut Kind::ALL.into_iter().enumerate()),
        s.filtered,
        by_kind(&s.lost, &mut wire_kinds()),
        s.skipped_runs,
        s.undecodable,
        s.duplicate_exits,
    );
    if stream != StreamStats::default() {
        eprintln!(
            "ksight: perf buffer: {} records arrived out of order and were merged back, \
             {} arrived too late to merge, {} samples reported lost",
            stream.out_of_order_arrivals, stream.late, stream.perf_lost
        );
    }
}
