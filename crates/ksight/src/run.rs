//! `ksight run`: wire the agent (ksight-bpf), the pipeline (ksight-core) and the
//! sinks together; poll; stop cleanly.
//!
//! One thread, one direction: ring buffer -> `Pipeline::record` -> sinks. The
//! kernel writes records without waking us (BPF_RB_NO_WAKEUP) unless a backlog
//! builds up, and we poll on a timer, so output lags events by at most
//! `--poll-interval` and a wake-up costs nothing per event. After each poll the
//! pipeline makes the events it owes from state (UDP flows, DNS timeouts, loss).

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ksight_bpf::sys::{clock_now, ktime_now};
use ksight_bpf::{AcceptHook, Agent, StreamStats, TransportMode, GAI_PROCESSES};
use ksight_core::cgroup::CgroupResolver;
use ksight_core::enforce::Policy;
use ksight_core::enrich::{EnrichConfig, Enricher};
use ksight_core::event::Kind;
use ksight_core::filter::{Filter, FilterSpec};
use ksight_core::pipeline::{Pipeline, PipelineConfig, Stats, WIRE_KINDS};
use ksight_core::procfs::ProcFs;
use ksight_core::sink::{FanOut, SinkSpec};
use ksight_rules::live::LiveRules;

use crate::preflight;
use crate::rules::Pack;

/// Which detection rules run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesSource {
    /// The shipped pack and rule directories, loaded in order as one set
    /// (SIGHUP reloads them).
    Packs(Vec<Pack>),
    Off,
}

/// What `ksight run` does, from the command line (later, a config file too).
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The sensors' configuration; `cgroups` and `cgroup_root` are filled here.
    pub agent: ksight_bpf::Config,
    /// `--cgroup` paths, relative to the cgroup2 mount.
    pub cgroups: Vec<String>,
    pub filter: FilterSpec,
    pub sinks: Vec<SinkSpec>,
    /// The config file's `[[output]]` tables, checked: queued outputs, each
    /// on its own thread.
    pub outputs: Vec<ksight_output::spec::OutputPlan>,
    /// The config file the settings came from, and how to read its outputs
    /// again (SIGHUP).
    pub config_file: Option<ConfigSource>,
    /// Serve Prometheus metrics here.
    pub metrics: Option<std::net::SocketAddr>,
    /// The fleet outputs' host name where their `host` is not set.
    pub host_name: Option<String>,
    pub ancestors: usize,
    /// Hashing executed files.
    pub hash: ksight_core::hash::HashConfig,
    /// Ask container runtimes about containers.
    pub container_meta: bool,
    pub grace: Duration,
    pub udp_interval: Duration,
    pub dns_timeout: Duration,
    pub duration: Option<Duration>,
    pub poll_interval: Duration,
    pub reorder_window: Duration,
    pub verbose: bool,
    /// Raw records are also written here.
    pub capture: Option<PathBuf>,
    pub rules: RulesSource,
    /// `--enforce`: the rules with an action act (else they only report).
    pub enforce: bool,
    /// Write only alerts; collect only what the rules need.
    pub alerts_only: bool,
}

/// The cgroup directories `--cgroup` names, under the cgroup2 mount.
fn cgroup_dirs(names: &[String], cgroups: &CgroupResolver) -> Result<Vec<PathBuf>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mount = cgroups
        .mount()
        .context("--cgroup needs cgroup v2, and no cgroup2 file system is mounted")?;
    names
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

/// An enricher for this host's /proc, clocks and boot.
pub fn host_enricher(cfg: EnrichConfig, cgroups: CgroupResolver) -> Enricher {
    let procfs = ProcFs::new("/proc");
    let boot = procfs.boot_id().unwrap_or_default();
    let boot = boot.get(..8).unwrap_or("00000000");
    Enricher::new(cfg, clock_now(), boot, procfs, cgroups)
}

/// A config file: its path, and its outputs read again (the whole file
/// checked: an error in any part refuses the reload).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: std::path::PathBuf,
    pub outputs: fn(&std::path::Path) -> Result<Vec<ksight_output::spec::OutputPlan>, String>,
}

pub fn run(mut cfg: RunConfig) -> Result<()> {
    let started = Instant::now();
    preflight::check_privileges()?;
    preflight::check_btf(cfg.agent.btf.as_deref())?;
    let rules = match &cfg.rules {
        RulesSource::Packs(packs) => Some(crate::rules::load(packs)?),
        RulesSource::Off => None,
    };
    let alert = Kind::from_name("alert").expect("the alert kind");
    match (&rules, cfg.alerts_only) {
        (Some(set), true) => {
            if set.enabled() == 0 {
                bail!("--alerts-only, and no rule is enabled");
            }
            cfg.agent.kinds = set.kinds();
            cfg.filter.kinds = [alert].into();
        }
        (None, true) => bail!("--alerts-only needs rules"),
        // alerts pass a kind filter, as lost events do
        (Some(_), false) if !cfg.filter.kinds.is_empty() => {
            cfg.filter.kinds.insert(alert);
        }
        _ => {}
    }
    // an exec's hash may come after it: asking for execs is asking for that too
    let (exec, exe_hash) = (Kind::from_name("exec"), Kind::from_name("exe_hash"));
    if let (Some(exec), Some(exe_hash)) = (exec, exe_hash) {
        if cfg.filter.kinds.contains(&exec) {
            cfg.filter.kinds.insert(exe_hash);
        }
    }
    let mut outputs = Vec::new();
    for spec in &cfg.sinks {
        outputs.push((spec.name(), spec.open()?));
    }
    // the config file's outputs (with a config file, always: SIGHUP may add some)
    let shared = if cfg.config_file.is_some() || !cfg.outputs.is_empty() {
        if let Some(h) = &cfg.host_name {
            ksight_output::spec::default_host(&mut cfg.outputs, h);
        }
        let outs = ksight_output::Outputs::start(cfg.outputs.clone())
            .context("starting the config file's outputs")?;
        let shared = ksight_output::SharedOutputs::new(outs);
        outputs.push(("[[output]]".into(), Box::new(shared.clone())));
        Some(shared)
    } else {
        None
    };
    let sink = Box::new(FanOut::new(outputs));

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("installing signal handlers")?;
    let reopen = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&reopen))
        .context("installing signal handlers")?;

    let cgroups = CgroupResolver::from_mountinfo_file("/proc/self/mountinfo".as_ref());
    let attached_ktime = ktime_now();
    let mut agent_cfg = cfg.agent.clone();
    agent_cfg.cgroups = cgroup_dirs(&cfg.cgroups, &cgroups)?;
    agent_cfg.cgroup_root = cgroups.mount().map(PathBuf::from);
    // lazily placed getaddrinfo probes go where DNS queries come from: the
    // DNS packets must be seen (and not necessarily shown)
    if agent_cfg.gai == ksight_bpf::GaiAttach::Lazy
        && agent_cfg.wants("getaddrinfo")
        && !agent_cfg.wants("dns")
    {
        agent_cfg.kinds.extend(Kind::from_name("dns"));
    }
    let policy = rules
        .as_ref()
        .map(|set| set.policy(cfg.enforce))
        .unwrap_or_default();
    if !policy.is_empty() {
        ksight_bpf::enforce::check(&policy).map_err(anyhow::Error::msg)?;
        agent_cfg.enforce_allow = crate::enforce::never_denied(cfg.metrics);
        agent_cfg.policy = Some(Arc::new(policy.clone()));
    } else if cfg.enforce {
        eprintln!(
            "ksight: warning: --enforce, and no enabled rule has an action: nothing to enforce"
        );
    }
    crate::enforce::warn_if_pinned(&agent_cfg);
    let agent = Agent::start(&agent_cfg)?;
    if let Some(why) = agent.fallback() {
        eprintln!("ksight: degraded: tp_btf programs refused, using raw tracepoints ({why})");
    }
    for d in agent.degraded() {
        if d.sensor == "accept" && agent_cfg.accept != AcceptHook::Auto {
            bail!("--accept-hook {}: {}", agent_cfg.accept, d.why);
        }
        // asked to enforce: not running is safer than running without it
        if d.sensor == "enforce" && cfg.enforce {
            bail!(
                "--enforce: the kernel refused enforcement: {} (`ksight doctor` says what this kernel allows)",
                d.why
            );
        }
        eprintln!("ksight: degraded: {}", d.message);
    }
    if cfg.agent.transport == TransportMode::Auto && agent.transport() == TransportMode::Perf {
        eprintln!(
            "ksight: degraded: no BPF ring buffer on this kernel (5.8+), using the perf buffer: \
             records are merged across CPUs with {} of added latency",
            humantime::format_duration(cfg.reorder_window)
        );
    }
    if cfg.verbose {
        let (progs, maps) = agent.kernel_ids();
        eprintln!(
            "ksight: loaded via {} and {}: sensors {}, prog ids {progs:?}, map ids {maps:?}",
            agent.mode(),
            agent.transport(),
            agent.sensors().join(", "),
        );
    }
    if let Some(w) = agent.file_watch() {
        if cfg.verbose {
            eprintln!(
                "ksight: file watch: {} watched paths, {} marks",
                agent_cfg.file_watch.len(),
                w.marks()
            );
        }
        for (path, why) in w.refused() {
            eprintln!("ksight: warning: not watching {}: {why}", path.display());
        }
    }

    let enrich_cfg = EnrichConfig {
        ancestors: cfg.ancestors,
        grace_ns: cfg.grace.as_nanos() as u64,
        hash: cfg.hash,
        containers: cfg
            .container_meta
            .then(ksight_core::runtime::RuntimeConfig::default),
    };
    let mut enricher = host_enricher(enrich_cfg, cgroups);
    // the commit_creds hook reports credential changes as they happen
    enricher.cred_hook = agent.sensors().contains(&"creds");
    let known = enricher.seed().context("reading /proc")?;
    // sockets older than ksight: their owners from /proc, read after
    // attaching (what the hooks see meanwhile is not overwritten)
    let seeded = seed_old_sockets(&agent, &enricher, cfg.verbose);
    if !policy.is_empty() && agent.sensors().contains(&"enforce") {
        eprintln!(
            "ksight: enforcement: {}",
            crate::enforce::summary(&policy, agent_cfg.enforce_persist)
        );
    }
    let pipeline_cfg = PipelineConfig {
        udp_interval_ns: cfg.udp_interval.as_nanos() as u64,
        dns_timeout_ns: cfg.dns_timeout.as_nanos() as u64,
        started_ktime: attached_ktime,
        side_delay_ns: if agent.transport() == TransportMode::Perf {
            cfg.reorder_window.as_nanos() as u64
        } else {
            0
        },
        enforce_rules: policy.rules.iter().map(|r| r.id.clone()).collect(),
    };
    let mut pipeline = Pipeline::new(
        pipeline_cfg,
        enricher,
        Filter::new(cfg.filter.clone()),
        sink,
    );
    let rules_loaded = rules.as_ref().map(|set| (set.rules.len(), set.enabled()));
    if let Some(set) = rules {
        let mut live = LiveRules::new(set);
        live.set_killer(cfg.enforce, crate::enforce::userspace_killer());
        live.set_policy(policy.clone());
        pipeline.set_stage(Box::new(live));
    }
    let pipeline = RefCell::new(pipeline);
    let mut capture = match &cfg.capture {
        Some(path) => Some(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let mut stream = agent
        .stream(
            |data| {
                if let Some(w) = capture.as_mut() {
                    let _ = w.write_all(&(data.len() as u32).to_le_bytes());
                    let _ = w.write_all(data);
                }
                pipeline.borrow_mut().record(data)
            },
            cfg.reorder_window,
        )
        .with_context(|| format!("setting up the {} consumer", agent.transport()))?;
    let metrics = cfg.metrics.map(crate::metrics::Server::start).transpose()?;
    if let Some(m) = &metrics {
        eprintln!("ksight: metrics at http://{}/metrics", m.addr);
    }
    let watching = format!(
        "watching: {} programs attached via {}{}, records through {}, {known} processes and {seeded} known, {}in {} ms",
        agent.links(),
        agent.mode(),
        agent
            .hook("accept")
            .map(|h| format!(" (accept() via {h})"))
            .unwrap_or_default(),
        agent.transport(),
        match rules_loaded {
            Some((n, on)) => format!("{on} of {n} rules enabled, "),
            None => String::new(),
        },
        started.elapsed().as_millis()
    );
    eprintln!("ksight: {watching}");
    // under systemd (Type=notify): attached and reading
    let mut notifier = crate::notify::Notifier::from_env().context("$NOTIFY_SOCKET")?;
    if let Err(e) = notifier.send(&format!("READY=1\nSTATUS={watching}")) {
        eprintln!("ksight: warning: telling systemd it is ready: {e}");
    }
    let kernel = kernel_release();
    let mut metrics_at = Instant::now() - Duration::from_secs(1);
    // a --duration too long to add is no deadline at all
    let deadline = cfg.duration.and_then(|d| Instant::now().checked_add(d));
    let mut last_clock = Instant::now();
    let mut gai_full = false;
    let mut enforce_at = Instant::now();
    let mut answers_refused = 0;
    loop {
        if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let timeout = match deadline {
            Some(d) => cfg
                .poll_interval
                .min(d.saturating_duration_since(Instant::now())),
            None => cfg.poll_interval,
        };
        let polled = stream.poll(timeout);
        let mut p = pipeline.borrow_mut();
        if reload.swap(false, Ordering::Relaxed) {
            reload_rules(&cfg.rules, &mut p);
            if let (Some(source), Some(outs)) = (&cfg.config_file, &shared) {
                reload_outputs(source, cfg.host_name.as_deref(), outs);
            }
        }
        if reopen.swap(false, Ordering::Relaxed) {
            p.reopen_outputs();
        }
        notifier.alive();
        if let Some(m) = metrics
            .as_ref()
            .filter(|_| metrics_at.elapsed() >= Duration::from_secs(1))
        {
            metrics_at = Instant::now();
            m.update(&snapshot(&mut p, &agent, shared.as_ref(), &kernel, &policy));
        }
        if let Some(e) = p.take_error() {
            return Err(e).context("writing events");
        }
        polled.context("reading records from the kernel")?;
        p.tick(&agent, ktime_now());
        // --getaddrinfo lazy: probes for the processes that started resolving
        let (attach, detach) = p.enricher().gai_targets.take();
        for pid in detach {
            agent.detach_getaddrinfo(pid);
        }
        for pid in attach {
            match agent.attach_getaddrinfo(pid) {
                Ok(true) if cfg.verbose => eprintln!("ksight: getaddrinfo probes for pid {pid}"),
                Ok(false) if !gai_full && agent.getaddrinfo_processes() >= GAI_PROCESSES => {
                    gai_full = true;
                    eprintln!(
                        "ksight: getaddrinfo probes are in {GAI_PROCESSES} processes, the most \
                         ksight gives: the lookups of further processes are seen as packets only"
                    );
                }
                Ok(_) => {}
                // it may have ended meanwhile; its lookups stay visible as packets
                Err(e) if cfg.verbose => eprintln!("ksight: getaddrinfo probes for pid {pid}: {e}"),
                Err(_) => {}
            }
        }
        // kill rules by content: the files just hashed to a named SHA-256
        if let Some(live) = p.stage_mut::<LiveRules>() {
            for (dev, ino, mask) in live.take_learned() {
                if let Err(e) = agent.enforce_add_exe(dev, ino, mask) {
                    eprintln!("ksight: warning: enforcement: adding an executable by content: {e}");
                }
            }
        }
        if enforce_at.elapsed() >= Duration::from_secs(5) {
            enforce_at = Instant::now();
            check_enforcement(&agent, &mut answers_refused);
        }
        if last_clock.elapsed() >= Duration::from_secs(1) {
            p.enricher().set_clock(clock_now());
            last_clock = Instant::now();
        }
        if let Some(e) = p.take_error() {
            return Err(e).context("writing events");
        }
        p.flush().context("writing events")?;
    }

    let _ = notifier.send("STOPPING=1");
    // detach, then drain what the kernel wrote and account for what it refused:
    // nothing written between the last read and the detach goes unread
    agent.detach();
    let drained = stream.drain();
    let stream_stats = stream.stats();
    drop(stream);
    if let Some(mut w) = capture {
        w.flush().context("writing the capture")?;
    }
    let mut p = pipeline.into_inner();
    drained.context("reading records from the kernel")?;
    // closed sockets' flows, then the open ones' totals so far, then loss
    p.finish(&agent, ktime_now());
    if let Some(e) = p.take_error() {
        return Err(e).context("writing events");
    }
    p.flush().context("writing events")?;
    p.close_outputs().context("writing events")?;
    summary(p.stats(), stream_stats, started.elapsed());
    for line in p.output_report() {
        eprintln!("ksight: {line}");
    }
    hash_summary(&p.enricher().hashes);
    if let Some(r) = &p.enricher().containers {
        let s = r.stats();
        if s.queued > 0 {
            eprintln!(
                "ksight: containers: {} described by their runtime, {} not (unknown to every runtime ksight asked), {} errors",
                s.resolved, s.failed, s.errors
            );
        }
    }
    let (counts, refused) = enforcement_counts(&agent, &policy);
    if !counts.is_empty() {
        let each: Vec<String> = counts.iter().map(|(r, n)| format!("{r} {n}")).collect();
        eprintln!(
            "ksight: enforcement: by rule: {}; DNS answer addresses refused (map full): {}",
            each.join(", "),
            refused.unwrap_or(0)
        );
    }
    if let Some(live) = p.stage_mut::<LiveRules>() {
        rules_summary(live);
    }
    for (output, lost) in p.failures() {
        eprintln!("ksight: output {output} failed: {lost} events were not written to it");
    }
    let c = &p.stats().counters;
    if c.dns_malformed > 0 {
        eprintln!(
            "ksight: {} datagrams on DNS ports did not parse as DNS: {} answered a query \
             (reported, status malformed, or answered when larger than ksight captures), \
             the others were skipped",
            c.dns_malformed, c.dns_malformed_answers
        );
    }
    if c.dns_pending > 0 {
        eprintln!(
            "ksight: {} DNS queries were still waiting for their response (reported, status pending)",
            c.dns_pending
        );
    }
    if c.gai_pending > 0 {
        eprintln!(
            "ksight: {} getaddrinfo calls had not returned (reported, result pending)",
            c.gai_pending
        );
    }
    if c.side_lost > 0 {
        eprintln!(
            "ksight: {} losses in the kernel's file event queue or BPF load side band \
             (reported, lost events of kind file or bpf_load)",
            c.side_lost
        );
    }
    Ok(())
}

/// SIGHUP: the rule directory again. A set with errors is refused whole and
/// the rules that run go on.
fn reload_rules(source: &RulesSource, p: &mut Pipeline) {
    let Some(live) = p.stage_mut::<LiveRules>() else {
        return eprintln!("ksight: SIGHUP: no rules run (--no-rules): nothing to reload");
    };
    let RulesSource::Packs(packs) = source else {
        return;
    };
    if packs.iter().all(|p| *p == Pack::Shipped) {
        return eprintln!(
            "ksight: SIGHUP: the shipped rules are built in: nothing to reload (run with --rules DIR)"
        );
    }
    match crate::rules::load(packs) {
        Ok(set) => {
            let (n, on) = (set.rules.len(), set.enabled());
            if set.policy(false) != live.engine().rules().policy(false) {
                eprintln!(
                    "ksight: SIGHUP: the rules with a kernel action changed: what the kernel \
                     enforces is not reloaded (restart ksight to change it); their alerts are"
                );
            }
            let (added, removed, changed) = live.reload(set);
            eprintln!(
                "ksight: rules reloaded from {}: {n} rules ({on} enabled): {added} added, \
                 {removed} removed, {changed} changed",
                crate::rules::name(packs)
            );
        }
        Err(e) => {
            eprintln!("ksight: SIGHUP: the rules were not reloaded, the old ones run on: {e:#}")
        }
    }
}

/// SIGHUP with a config file: its outputs again. A file with an error is
/// refused whole and the outputs that run go on; outputs that did not change
/// are not touched (not an event lost or repeated). `[run]` settings take
/// effect at the next start.
fn reload_outputs(
    source: &ConfigSource,
    host_name: Option<&str>,
    outs: &ksight_output::SharedOutputs,
) {
    let path = &source.path;
    let mut outputs = match (source.outputs)(path) {
        Ok(o) => o,
        Err(e) => {
            return eprintln!(
                "ksight: SIGHUP: {} was not reloaded, the outputs that run go on: {e}",
                path.display()
            )
        }
    };
    if let Some(h) = host_name {
        ksight_output::spec::default_host(&mut outputs, h);
    }
    let n = outputs.len();
    match outs.lock().reconfigure(outputs) {
        Ok((added, removed, changed)) => eprintln!(
            "ksight: outputs reloaded from {}: {n} outputs: {added} added, {removed} removed, \
             {changed} changed ([run] settings take effect at the next start)",
            path.display()
        ),
        Err(e) => eprintln!(
            "ksight: SIGHUP: the outputs of {} could not all start, the others run on: {e}",
            path.display()
        ),
    }
}

/// The metrics, now (docs/metrics.md).
/// Free the expired DNS answer addresses, and say when the answers map
/// refused some (it is bounded: full, a denied name's new addresses are not
/// denied until older ones expire).
fn check_enforcement(agent: &Agent, refused_seen: &mut u64) {
    agent.expire_answers(ktime_now());
    if let Some((_, _, refused)) = agent.enforcement() {
        if refused > *refused_seen {
            eprintln!(
                "ksight: warning: enforcement: {} addresses of DNS answers for denied names were \
                 not added: the answers map is full ({refused} since start)",
                refused - *refused_seen
            );
            *refused_seen = refused;
        }
    }
}

/// Enforcement's counts by rule id, from the kernel's counters by bit.
fn enforcement_counts(agent: &Agent, policy: &Policy) -> (Vec<(String, u64)>, Option<u64>) {
    match agent.enforcement() {
        Some((hits, _, refused)) => (
            policy
                .rules
                .iter()
                .zip(hits)
                .map(|(r, n)| (r.id.to_string(), n))
                .collect(),
            Some(refused),
        ),
        None => (Vec::new(), None),
    }
}

fn snapshot(
    p: &mut Pipeline,
    agent: &Agent,
    outs: Option<&ksight_output::SharedOutputs>,
    kernel: &str,
    policy: &Policy,
) -> crate::metrics::Snapshot {
    let (enforcements, answers_refused) = enforcement_counts(agent, policy);
    let s = p.stats();
    let events = Kind::ALL
        .iter()
        .map(|&k| (k.name(), s.written[k as usize]))
        .collect();
    let mut lost: Vec<(String, &'static str, u64)> = (0..WIRE_KINDS)
        .filter_map(|w| {
            Some((
                Kind::of_wire(w as u32)?.name().to_string(),
                "kernel",
                s.counters.lost[w],
            ))
        })
        .collect();
    lost.push(("skipped_runs".into(), "kernel", s.counters.skipped_runs));
    let outputs = outs.map(|o| o.lock().counts()).unwrap_or_default();
    let output_lost = outputs.iter().map(|o| o.dropped + o.failed).sum();
    lost.push(("any".into(), "output", output_lost));
    let process_table = p.enricher().table().len();
    let rules = p
        .stage_mut::<LiveRules>()
        .map(|live| {
            live.engine()
                .stats()
                .map(|(rule, st)| (rule.id.to_string(), st.matched, st.suppressed))
                .collect()
        })
        .unwrap_or_default();
    let (cpu_seconds, rss_bytes) = crate::metrics::own_usage();
    crate::metrics::Snapshot {
        events,
        lost,
        ring_usage: agent.ring_usage(),
        rules,
        enforcements,
        answers_refused,
        outputs,
        process_table,
        programs: agent.program_stats(),
        cpu_seconds,
        rss_bytes,
        kernel: kernel.to_string(),
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// What hashing executed files did.
fn hash_summary<T>(h: &ksight_core::hash::Hashes<T>) {
    if !h.enabled() {
        return;
    }
    let s = h.stats;
    eprintln!(
        "ksight: hashes: {} files hashed ({:.1} MiB read), {} execs found theirs cached, {} not hashed \
         (changed, vanished, too large, skipped: see exe_hash events){}",
        s.hashed,
        s.bytes as f64 / f64::from(1 << 20),
        s.hits,
        s.failed,
        match (s.unanswered, h.pending()) {
            (0, 0) => String::new(),
            (u, p) => format!(", {} execs got no exe_hash event ({u} beyond the waiters kept per file, {p} files unanswered at stop)", u as usize + p),
        }
    );
}

/// The rules that matched, with their counters, and the cost of evaluating.
fn rules_summary(live: &LiveRules) {
    let engine = live.engine();
    let mut evaluations = 0;
    let mut ns = 0.0;
    let mut lines = Vec::new();
    for (rule, st) in engine.stats() {
        evaluations += st.evaluated;
        if let Some(t) = st.ns_per_eval() {
            ns += t * st.evaluated as f64;
        }
        if st.matched > 0 {
            lines.push(format!(
                "{} {} matches, {} alerts, {} suppressed{}",
                rule.id,
                st.matched,
                st.alerts,
                st.suppressed,
                st.ns_per_eval()
                    .map(|t| format!(", {t:.0} ns per evaluation"))
                    .unwrap_or_default()
            ));
        }
    }
    eprintln!(
        "ksight: rules: {} evaluations{}; {}",
        evaluations,
        if evaluations > 0 && ns > 0.0 {
            format!(
                " ({:.0} ns each on average, sampled)",
                ns / evaluations as f64
            )
        } else {
            String::new()
        },
        if lines.is_empty() {
            "no rule matched".to_string()
        } else {
            lines.join("; ")
        }
    );
}

fn summary(s: &Stats, stream: StreamStats, elapsed: Duration) {
    let list = |items: Vec<String>| items.join(", ");
    let written: u64 = s.written.iter().sum();
    let c = &s.counters;
    let lost: u64 = c.lost.iter().sum();
    let by_kind = Kind::ALL
        .iter()
        .map(|&k| format!("{} {}", k.name(), s.written[k as usize]))
        .collect();
    let lost_by_kind = (0..WIRE_KINDS)
        .filter_map(|w| Kind::of_wire(w as u32).map(|k| format!("{} {}", k.name(), c.lost[w])))
        .collect();
    eprintln!(
        "ksight: stopped after {:.1}s: {} records, {written} events written ({}), {} filtered out, \
         {lost} lost ({}), {} program runs skipped, {} undecodable, {} duplicate exits",
        elapsed.as_secs_f64(),
        s.records,
        list(by_kind),
        c.filtered,
        list(lost_by_kind),
        c.skipped_runs,
        s.undecodable,
        c.duplicate_exits,
    );
    if stream != StreamStats::default() {
        eprintln!(
            "ksight: perf buffer: {} records arrived out of order and were merged back, \
             {} arrived too late to merge, {} samples reported lost",
            stream.out_of_order_arrivals, stream.late, stream.perf_lost
        );
    }
}

/// Sockets older than ksight, with their owners read from /proc, written into
/// the kernel's tables (`net.owner_source: "procfs"` on their events): TCP
/// listeners, connections and UDP sockets. What it found, for the
/// "watching" line. Cost: a readlink per fd of every process, a read of
/// net/tcp and a sock_diag dump per network namespace, once.
fn seed_old_sockets(agent: &Agent, enricher: &Enricher, verbose: bool) -> String {
    use ksight_bpf::agent::SeedSocket;
    use ksight_bpf::sockdiag::{self, IPPROTO_TCP};
    use ksight_core::event::TaskFacts;
    const TCP_CLOSE: u8 = 7;
    let (tcp, udp) = (
        agent.sensors().contains(&"net"),
        agent.sensors().contains(&"udp"),
    );
    if !tcp && !udp {
        return "no sockets".into();
    }
    let procfs = enricher.procfs();
    let holders = procfs.socket_holders();
    let listeners = procfs.tcp_listeners(&holders);
    let mut owners = std::collections::HashMap::new();
    let mut owner = |pid: u32| -> Option<TaskFacts> {
        owners
            .entry(pid)
            .or_insert_with(|| enricher.task_from_proc(pid))
            .clone()
    };
    let warn = |e: &dyn std::fmt::Display| eprintln!("ksight: warning: {e}");
    let mut n_listeners = 0;
    if tcp {
        let with_owners: Vec<_> = listeners
            .iter()
            .filter_map(|l| Some((l.clone(), owner(l.pid)?)))
            .collect();
        n_listeners = agent.seed_listeners(&with_owners).unwrap_or_else(|e| {
            warn(&e);
            0
        });
    }
    let (old, errors) = sockdiag::old_sockets(procfs, &holders);
    if verbose {
        errors.iter().for_each(|e| warn(e));
    }
    let listened: std::collections::HashSet<_> = listeners
        .iter()
        .map(|l| (l.netns, l.port, l.family))
        .collect();
    let seeds: Vec<_> = old
        .into_iter()
        .filter(|o| {
            // a TCP socket that is closed (bound, never connected) has no
            // connection to report
            let is_tcp = o.sock.protocol == IPPROTO_TCP;
            o.sock.cookie != 0
                && if is_tcp {
                    tcp && o.sock.state != TCP_CLOSE
                } else {
                    udp
                }
        })
        .filter_map(|o| {
            let inbound = listened.contains(&(o.netns, o.sock.local.port(), o.sock.family));
            let seed = SeedSocket {
                netns: o.netns,
                sock: o.sock,
                inbound,
            };
            Some((seed, owner(o.pid)?))
        })
        .collect();
    let (n_tcp, n_udp) = agent.seed_sockets(&seeds).unwrap_or_else(|e| {
        warn(&e);
        (0, 0)
    });
    format!("{n_listeners} TCP listeners, {n_tcp} TCP connections and {n_udp} UDP sockets")
}
