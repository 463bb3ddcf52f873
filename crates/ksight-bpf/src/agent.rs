//! The agent: every sensor the configuration wants, loaded and attached;
//! the record stream; the kernel state the pipeline reads (UDP flows, drop
//! counters, skipped runs).
//!
//! Every attachment is an fd-based BPF link owned by this process: when ksight
//! exits, however it exits (SIGKILL included), the kernel closes the fds and
//! detaches and frees every program and map. Nothing is pinned.
//!
//! Hook choice is probed, not guessed from the kernel version: `Auto` loads the
//! tp_btf programs and, if the kernel refuses the process sensor's, reloads
//! with raw_tp ones. Every other sensor is optional: one the kernel refuses
//! degrades its feature (see [`Agent::degraded`]), never the run.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use libbpf_rs::{Link, MapCore, MapFlags, MapType, Object, PerfBufferBuilder, RingBufferBuilder};

use crate::bpfwatch::BpfWatch;
use crate::files::FileWatch;
use crate::object::{capture_libbpf_log, map, LoadError, SharedMaps};
use crate::sensor::{AttachMode, Config, LoadCx, Sensor};
use crate::transport::{PerfParts, Stream, TransportMode};
use ksight_core::event::TaskFacts;
use ksight_core::files::RawFileEvent;
use ksight_core::kind::{KernelState, WIRE_KINDS};
use ksight_core::kinds::udp::{decode_flow, decode_owner, flow_key};
use ksight_core::net::RawUdpFlow;
use ksight_core::procfs::Listener;
use ksight_core::sideband::RawBpfLoad;
use ksight_wire::{
    ks_cpu_stats, ks_limits, ks_net_flags, ks_sock_tuple, ks_task, ks_tcp_conn, ks_udp_limits,
    ks_udp_sock,
};

/// The largest argv ksight can copy (events.h KS_ARGV_MAX).
pub const ARGV_MAX: u32 = ks_limits::KS_ARGV_MAX.0;

pub use crate::object::MAX_CGROUPS;

/// A sensor that is not running although the configuration wanted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degraded {
    /// The sensor (its object's name).
    pub sensor: &'static str,
    /// The doctor's feature it gives.
    pub feature: &'static str,
    /// Why, in one line: the kernel's refusal.
    pub why: String,
    /// What ksight says about it (`TCP events unavailable: ...`).
    pub message: String,
}

/// One sensor's fate in [`Agent::load_only`].
pub struct SensorLoad {
    pub spec: &'static crate::sensor::Spec,
    /// Its hook flavour when it loaded, or why the kernel refused it.
    pub result: Result<Option<&'static str>, LoadError>,
}

/// The loaded, attached programs.
pub struct Agent {
    /// The running sensors, in load order (the process sensor first).
    sensors: Vec<Box<dyn Sensor>>,
    degraded: Vec<Degraded>,
    /// Every attachment; emptied by `detach`.
    links: RefCell<Vec<Link>>,
    mode: AttachMode,
    transport: TransportMode,
    /// The perf buffer, opened before the programs were attached; taken by `stream`.
    perf: RefCell<Option<PerfParts>>,
    /// Why `Auto` fell back from tp_btf, if it did.
    fallback: Option<String>,
    /// getaddrinfo probes of single processes (`--getaddrinfo lazy`), by pid.
    gai: RefCell<HashMap<u32, Vec<Link>>>,
    gai_lazy: bool,
    /// The fanotify watch on sensitive files (the `file` kind).
    files: Option<FileWatch>,
    /// perf's side band of BPF program loads (the `bpf_load` kind).
    bpf: Option<BpfWatch>,
}

/// A sensor and how its load went.
type Loaded = (Box<dyn Sensor>, Result<(), LoadError>);

/// Load `sensors` on threads. A chain is a sensor and those loaded only
/// `after` it (which reuse the maps it publishes): one thread loads it in
/// order, and leaves out a sensor whose dependency failed (that failure is
/// said once, there). The first sensor (the process one, the slowest to
/// verify and the one everything needs) has a thread to itself; the other
/// chains share the remaining CPUs, so that it does not wait for them.
fn load_chains(cx: &LoadCx<'_>, sensors: Vec<Box<dyn Sensor>>) -> Result<Vec<Loaded>, LoadError> {
    let mut chains: Vec<Vec<Box<dyn Sensor>>> = Vec::new();
    for s in sensors {
        let after = s.spec().after;
        match chains
            .iter_mut()
            .find(|c| after.is_some_and(|a| c.iter().any(|l| l.spec().name == a)))
        {
            Some(chain) => chain.push(s),
            None if after.is_none() => chains.push(vec![s]),
            None => {} // what it needs is not wanted
        }
    }
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = cpus.clamp(2, chains.len().max(2));
    let mut groups: Vec<Vec<Box<dyn Sensor>>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, chain) in chains.into_iter().enumerate() {
        let g = if i == 0 {
            0
        } else {
            1 + (i - 1) % (workers - 1)
        };
        groups[g].extend(chain);
    }
    groups.retain(|g| !g.is_empty());
    let chains = groups;
    let mut shared = Vec::new();
    for _ in &chains {
        shared.push(cx.shared.try_clone()?);
    }
    let (cfg, mode) = (cx.cfg, cx.mode);
    let loaded = std::thread::scope(|scope| {
        let threads: Vec<_> = chains
            .into_iter()
            .zip(shared.iter_mut())
            .map(|(chain, shared)| {
                scope.spawn(move || {
                    let mut cx = LoadCx { cfg, mode, shared };
                    let mut done: Vec<Loaded> = Vec::new();
                    for mut s in chain {
                        let after = s.spec().after;
                        let ok = after.is_none_or(|a| {
                            done.iter().any(|(l, r)| l.spec().name == a && r.is_ok())
                        });
                        if ok {
                            let r = s.load(&mut cx);
                            done.push((s, r));
                        }
                    }
                    done
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a sensor's load panicked"))
            .collect()
    });
    Ok(loaded)
}

/// Processes with their own getaddrinfo probes, at most: past it, more are
/// not given any (their lookups are still seen as packets).
pub const GAI_PROCESSES: usize = 512;

impl Agent {
    /// Load and attach. With `AttachMode::Auto`, a kernel that refuses tp_btf
    /// programs gets raw_tp ones; the reason is kept in [`Agent::fallback`].
    pub fn start(cfg: &Config) -> Result<Agent, LoadError> {
        let cfg = &resolve(cfg)?;
        match cfg.attach {
            AttachMode::Auto => match Self::start_mode(cfg, AttachMode::TpBtf) {
                Ok(agent) => Ok(agent),
                Err(first) => match Self::start_mode(cfg, AttachMode::RawTp) {
                    Ok(mut agent) => {
                        agent.fallback = Some(first.to_string());
                        Ok(agent)
                    }
                    Err(second) => Err(LoadError::Both {
                        tp_btf: Box::new(first),
                        raw_tp: Box::new(second),
                    }),
                },
            },
            mode => Self::start_mode(cfg, mode),
        }
    }

    /// Load every sensor as `cfg` says (an exact hook flavour and transport,
    /// not `Auto`) without attaching, and unload them: the doctor's test of
    /// whether this kernel accepts ksight's programs. The process sensor's
    /// refusal is the error; every other sensor's result is listed (the
    /// accept() hook is attached for a moment: only attaching proves it).
    pub fn load_only(cfg: &Config) -> Result<Vec<SensorLoad>, LoadError> {
        validate(cfg)?;
        capture_libbpf_log();
        let mut shared =
            SharedMaps::create(cfg.ringbuf_bytes, cfg.transport == TransportMode::Perf)?;
        let mut cx = LoadCx {
            cfg,
            mode: cfg.attach,
            shared: &mut shared,
        };
        let mut out = Vec::new();
        let mut loaded: Vec<&'static str> = Vec::new();
        for mut s in crate::sensors::all() {
            let spec = s.spec();
            if spec.after.is_some_and(|a| !loaded.contains(&a)) {
                continue;
            }
            match s.load(&mut cx) {
                Ok(()) => {
                    loaded.push(spec.name);
                    out.push(SensorLoad {
                        spec,
                        result: Ok(s.hook()),
                    });
                }
                Err(e) if spec.wanted_by.is_empty() => return Err(e),
                Err(e) => out.push(SensorLoad {
                    spec,
                    result: Err(e),
                }),
            }
        }
        Ok(out)
    }

    fn start_mode(cfg: &Config, mode: AttachMode) -> Result<Agent, LoadError> {
        let mut shared =
            SharedMaps::create(cfg.ringbuf_bytes, cfg.transport == TransportMode::Perf)?;
        let cx = LoadCx {
            cfg,
            mode,
            shared: &mut shared,
        };
        let mut degraded = Vec::new();
        let mut sensors: Vec<Box<dyn Sensor>> = Vec::new();
        let refused = |s: &dyn Sensor, e: &LoadError| {
            let spec = s.spec();
            let why = e.to_string();
            Degraded {
                sensor: spec.name,
                feature: spec.feature,
                message: (spec.degraded)(&why),
                why,
            }
        };
        // load every wanted sensor at once, each on a thread with those that
        // need it after it (loading is a BTF parse and a verifier run, tens of
        // ms each); the accept() hook also attaches there: only attaching
        // tells whether the kernel takes it
        let wanted = crate::sensors::all()
            .into_iter()
            .filter(|s| s.wanted(cfg))
            .collect();
        for (s, result) in load_chains(&cx, wanted)? {
            match result {
                Ok(()) => sensors.push(s),
                // the process sensor: nothing runs without it
                Err(e) if s.spec().wanted_by.is_empty() => return Err(e),
                Err(e) => degraded.push(refused(s.as_ref(), &e)),
            }
        }
        sensors.sort_by_key(|s| s.spec().order);
        let process = sensors[0].object().expect("the process sensor loaded");
        // the perf buffer before any program runs: until its per-CPU buffers
        // are in ks_perf, bpf_perf_event_output refuses every record
        let perf = if cfg.transport == TransportMode::Perf {
            let ks_perf = map(process, "ks_perf").expect("common.bpf.h defines ks_perf");
            let parts = PerfParts::open(|sample, lost| {
                PerfBufferBuilder::new(&ks_perf)
                    .pages(cfg.perf_pages)
                    .sample_cb(sample)
                    .lost_cb(lost)
                    .build()
            })
            .map_err(|e| LoadError::Config(format!("opening the perf buffer: {e:#}")))?;
            Some(parts)
        } else {
            None
        };
        // attach in load order; a sensor whose programs do not all attach
        // leaves none attached, and takes those that need it along
        let mut links: Vec<Link> = Vec::new();
        let mut starts: Vec<(&'static str, usize)> = Vec::new();
        let mut running: Vec<Box<dyn Sensor>> = Vec::new();
        for mut s in sensors {
            let spec = s.spec();
            if spec
                .after
                .is_some_and(|a| !running.iter().any(|r| r.spec().name == a))
            {
                continue; // its dependency failed to attach: said once, there
            }
            match s.attach(&cx) {
                Ok(own) => {
                    // a sensor that needs another one detaches after it: its
                    // links go before that one's (links are dropped last first)
                    let at = match spec
                        .after
                        .and_then(|a| starts.iter().find(|(n, _)| *n == a))
                    {
                        Some(&(_, i)) => i,
                        None => links.len(),
                    };
                    for (_, i) in starts.iter_mut().filter(|(_, i)| *i >= at) {
                        *i += own.len();
                    }
                    starts.push((spec.name, at));
                    links.splice(at..at, own);
                    running.push(s);
                }
                Err(e) if spec.wanted_by.is_empty() => return Err(e),
                Err(e) => degraded.push(refused(s.as_ref(), &e)),
            }
        }
        // the file watcher: fanotify, no BPF; its marks go with its fd
        let files = if cfg.wants("file") && !cfg.file_watch.is_empty() {
            match FileWatch::new(&cfg.file_watch, cfg.file_watch_containers) {
                Ok(w) => Some(w),
                Err(e) => {
                    degraded.push(Degraded {
                        sensor: "files",
                        feature: "sensitive files",
                        why: e.to_string(),
                        message: format!("sensitive files unavailable: {e}"),
                    });
                    None
                }
            }
        } else {
            None
        };
        // BPF programs others load: perf's side band, after ours loaded
        let bpf = if cfg.wants("bpf_load") {
            match BpfWatch::new() {
                Ok(w) => Some(w),
                Err(e) => {
                    degraded.push(Degraded {
                        sensor: "bpfwatch",
                        feature: "BPF program loads",
                        why: e.to_string(),
                        message: format!("BPF program loads unavailable: {e}"),
                    });
                    None
                }
            }
        } else {
            None
        };
        Ok(Agent {
            sensors: running,
            files,
            bpf,
            degraded,
            links: RefCell::new(links),
            mode,
            transport: cfg.transport,
            perf: RefCell::new(perf),
            fallback: None,
            gai: RefCell::new(HashMap::new()),
            gai_lazy: cfg.gai == crate::GaiAttach::Lazy,
        })
    }

    /// The file watcher, when it runs.
    pub fn file_watch(&self) -> Option<&FileWatch> {
        self.files.as_ref()
    }

    /// Sensors the configuration wanted that the kernel refused, and why.
    pub fn degraded(&self) -> &[Degraded] {
        &self.degraded
    }

    /// A running sensor's hook flavour (`fexit`, `kretprobe` for `accept`).
    pub fn hook(&self, sensor: &str) -> Option<&'static str> {
        self.sensor(sensor).and_then(|s| s.hook())
    }

    fn sensor(&self, name: &str) -> Option<&dyn Sensor> {
        self.sensors
            .iter()
            .find(|s| s.spec().name == name)
            .map(|s| s.as_ref())
    }

    fn object(&self, sensor: &str) -> Option<&Object> {
        self.sensor(sensor).and_then(|s| s.object())
    }

    fn process(&self) -> &Object {
        self.sensors[0].object().expect("the process sensor runs")
    }

    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    pub fn links(&self) -> usize {
        self.links.borrow().len()
    }

    /// The running sensors' names, in load order.
    pub fn sensors(&self) -> Vec<&'static str> {
        self.sensors.iter().map(|s| s.spec().name).collect()
    }

    /// Listeners older than ksight, each with its owner read from /proc, put
    /// in the TCP object's listener table where the kernel's hooks have not
    /// put one since (a listen() seen live wins): their accepted connections
    /// then have an owner, marked `net.owner_source: procfs`. How many went in.
    pub fn seed_listeners(&self, listeners: &[(Listener, TaskFacts)]) -> Result<usize, LoadError> {
        let Some(table) = self.object("net").and_then(|o| map(o, "ks_listeners")) else {
            return Ok(0);
        };
        let task_len = std::mem::size_of::<ks_task>();
        // tcp.bpf.h: struct ks_listener { struct ks_task owner; __u32 sockets, flags; }
        if table.value_size() as usize != task_len + 8 || table.key_size() != 8 {
            return Err(LoadError::Config(format!(
                "ks_listeners holds {}-byte keys and {}-byte values, not tcp.bpf.h's 8 and {}: \
                 listeners older than ksight stay unattributed",
                table.key_size(),
                table.value_size(),
                task_len + 8
            )));
        }
        let mut n = 0;
        for (l, owner) in listeners {
            let mut key = l.netns.to_ne_bytes().to_vec();
            key.extend_from_slice(&l.port.to_ne_bytes());
            key.extend_from_slice(&l.family.to_ne_bytes());
            let task = ksight_core::decode::ks_task_of(owner);
            // SAFETY: ks_task is plain data (generated from events.h, padding explicit).
            let mut value = unsafe { plain::as_bytes(&task) }.to_vec();
            value.extend_from_slice(&l.sockets.max(1).to_ne_bytes());
            value.extend_from_slice(&ks_net_flags::KS_NET_PROCFS.0.to_ne_bytes());
            if table.update(&key, &value, MapFlags::NO_EXIST).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// TCP connections and UDP sockets older than ksight (sock_diag gave
    /// their cookies, /proc their owners, marked from_procfs), written where
    /// the hooks look for a socket they did not see begin: ks_tcp_seed (a
    /// connection moves to the live table at its next state change, so its
    /// close is reported with its owner and bytes) and ks_udp_socks (its flows
    /// and DNS datagrams get the owner). An entry the hooks made meanwhile
    /// wins. `inbound`: whether a connection's local port is listened on.
    /// How many of each went in.
    pub fn seed_sockets(
        &self,
        sockets: &[(SeedSocket, TaskFacts)],
    ) -> Result<(usize, usize), LoadError> {
        let tcp = self.object("net").and_then(|o| map(o, "ks_tcp_seed"));
        let udp = self.object("udp").and_then(|o| map(o, "ks_udp_socks"));
        for (m, name, value) in [
            (&tcp, "ks_tcp_seed", std::mem::size_of::<ks_tcp_conn>()),
            (&udp, "ks_udp_socks", std::mem::size_of::<ks_udp_sock>()),
        ] {
            if let Some(m) = m.as_ref().filter(|m| m.value_size() as usize != value) {
                return Err(LoadError::Config(format!(
                    "{name} holds {}-byte values, not events.h's {value}: \
                     sockets older than ksight stay unattributed",
                    m.value_size()
                )));
            }
        }
        let (mut n_tcp, mut n_udp) = (0, 0);
        for (s, owner) in sockets {
            let task = ksight_core::decode::ks_task_of(owner);
            let d = &s.sock;
            if d.protocol == crate::sockdiag::IPPROTO_TCP {
                let Some(m) = &tcp else { continue };
                let mut tuple = ks_sock_tuple {
                    netns: s.netns,
                    sport: d.local.port(),
                    dport: d.remote.port(),
                    family: d.family,
                    ..Default::default()
                };
                put_addr(&mut tuple.saddr, d.local.ip());
                put_addr(&mut tuple.daddr, d.remote.ip());
                let dir = if s.inbound {
                    ks_net_flags::KS_NET_INBOUND.0
                } else {
                    ks_net_flags::KS_NET_OUTBOUND.0
                };
                let conn = ks_tcp_conn {
                    owner: task,
                    tuple,
                    flags: dir | ks_net_flags::KS_NET_OWNER.0 | ks_net_flags::KS_NET_PROCFS.0,
                    ..Default::default()
                };
                // SAFETY: plain data generated from events.h, padding explicit.
                let value = unsafe { plain::as_bytes(&conn) };
                n_tcp += m
                    .update(&d.cookie.to_ne_bytes(), value, MapFlags::ANY)
                    .is_ok() as usize;
            } else {
                let Some(m) = &udp else { continue };
                let sock = ks_udp_sock {
                    owner: task,
                    netns: s.netns,
                    // its flows are not listed: its release scans for them
                    nremotes: ks_udp_limits::KS_UDP_REMOTES.0 + 1,
                    ..Default::default()
                };
                // SAFETY: as above.
                let value = unsafe { plain::as_bytes(&sock) };
                n_udp += m
                    .update(&d.cookie.to_ne_bytes(), value, MapFlags::NO_EXIST)
                    .is_ok() as usize;
            }
        }
        Ok((n_tcp, n_udp))
    }

    /// Give one process the getaddrinfo probes (`--getaddrinfo lazy`: it has
    /// sent DNS). Ok(false): nothing to do (no getaddrinfo sensor, not lazy,
    /// already done, no libc in it, or GAI_PROCESSES reached).
    pub fn attach_getaddrinfo(&self, pid: u32) -> Result<bool, LoadError> {
        let Some(obj) = self.object("gai").filter(|_| self.gai_lazy) else {
            return Ok(false);
        };
        let mut gai = self.gai.borrow_mut();
        if gai.contains_key(&pid) || gai.len() >= GAI_PROCESSES {
            return Ok(false);
        }
        match crate::sensors::gai::attach_pid(obj, pid)? {
            Some(links) => {
                gai.insert(pid, links);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// A process that had its own getaddrinfo probes ended: drop them.
    pub fn detach_getaddrinfo(&self, pid: u32) -> bool {
        self.gai.borrow_mut().remove(&pid).is_some()
    }

    /// Processes with their own getaddrinfo probes now.
    pub fn getaddrinfo_processes(&self) -> usize {
        self.gai.borrow().len()
    }

    /// Detach every program (the maps stay, for a last read): after this, the
    /// buffer holds every record the programs will ever write, and the drop
    /// counters every record they refused.
    pub fn detach(&self) {
        // last attached, first detached: the TCP state program goes before the
        // accept() hook that relies on it
        self.gai.borrow_mut().clear();
        let mut links = self.links.borrow_mut();
        while links.pop().is_some() {}
        drop(links);
        // a program already running on another CPU still finishes its record
        std::thread::sleep(Duration::from_millis(20));
    }

    /// The buffer in use: `Ringbuf` or `Perf` (never `Auto` once started).
    pub fn transport(&self) -> TransportMode {
        self.transport
    }

    /// The record stream: `deliver` sees each record's bytes, in causal order,
    /// and returns non-zero to stop the current pass. `window` is the perf
    /// buffer's reorder window (see `transport`). One stream per agent: the
    /// perf buffer moves into the first.
    pub fn stream<'cb>(
        &'cb self,
        deliver: impl FnMut(&[u8]) -> i32 + 'cb,
        window: Duration,
    ) -> libbpf_rs::Result<Stream<'cb>> {
        if self.transport == TransportMode::Perf {
            let parts = self.perf.borrow_mut().take().ok_or_else(|| {
                libbpf_rs::Error::from(io::Error::other("the perf stream was taken already"))
            })?;
            return Ok(Stream::perf(Box::new(deliver), window, parts));
        }
        let events = map(self.process(), "ks_events").expect("common.bpf.h defines ks_events");
        let mut b = RingBufferBuilder::new();
        b.add(&events, deliver)?;
        Ok(Stream::ring(b.build()?))
    }

    /// Kernel ids of the loaded programs and maps, to check that none outlives ksight.
    /// Enforcement's kernel counters: acts by rule bit, answer addresses
    /// added, and refused by the full answers map. None when not enforcing.
    pub fn enforcement(&self) -> Option<(Vec<u64>, u64, u64)> {
        crate::enforce::counters(self.sensor("enforce")?.object()?)
    }

    /// Add an executable (kernel dev encoding, inode) to kill rules' `mask`.
    pub fn enforce_add_exe(&self, dev: u32, ino: u64, mask: u64) -> Result<(), String> {
        let obj = self
            .sensor("enforce")
            .and_then(|s| s.object())
            .ok_or("enforcement is not running")?;
        crate::enforce::add_exe(obj, dev, ino, mask)
    }

    /// Delete the DNS answer addresses whose TTL (and grace) ended before
    /// `now_ns` (CLOCK_MONOTONIC); how many.
    pub fn expire_answers(&self, now_ns: u64) -> usize {
        self.sensor("enforce")
            .and_then(|s| s.object())
            .map_or(0, |o| crate::enforce::expire_answers(o, now_ns))
    }

    pub fn kernel_ids(&self) -> (Vec<u32>, Vec<u32>) {
        let mut progs = Vec::new();
        let mut maps = Vec::new();
        for obj in self.sensors.iter().filter_map(|s| s.object()) {
            progs.extend(
                (obj.progs())
                    .filter(|p| p.autoload())
                    .filter_map(|p| libbpf_rs::Program::id_from_fd(p.as_fd()).ok()),
            );
            maps.extend((obj.maps()).filter_map(|m| m.info().ok().map(|i| i.info.id)));
        }
        maps.sort_unstable();
        maps.dedup();
        (progs, maps)
    }
}

impl KernelState for Agent {
    fn udp_flows(&self, only: Option<&HashSet<u64>>) -> Vec<RawUdpFlow> {
        let Some(map) = self.object("udp").and_then(|o| map(o, "ks_udp_flows")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for key in map.keys() {
            // the cookie leads the key (ks_udp_flow_key)
            let Some(cookie) = key
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_ne_bytes)
            else {
                continue;
            };
            if only.is_some_and(|set| !set.contains(&cookie)) {
                continue;
            }
            let Ok(Some(value)) = map.lookup(&key, MapFlags::ANY) else {
                continue;
            };
            if let Ok(flow) = decode_flow(&key, &value) {
                out.push(flow);
            }
            if only.is_some() {
                let _ = map.delete(&key);
            }
        }
        out
    }

    fn udp_flows_of(&self, cookie: u64, remotes: &[SocketAddr]) -> Vec<RawUdpFlow> {
        let Some(map) = self.object("udp").and_then(|o| map(o, "ks_udp_flows")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for r in remotes {
            let key = flow_key(cookie, *r);
            // SAFETY: ks_udp_flow_key is Plain (ksight-wire): its bytes are initialised.
            let bytes = unsafe { plain::as_bytes(&key) };
            if let Ok(Some(value)) = map.lookup(bytes, MapFlags::ANY) {
                if let Ok(flow) = decode_flow(bytes, &value) {
                    out.push(flow);
                }
                let _ = map.delete(bytes);
            }
        }
        out
    }

    fn udp_owner(&self, cookie: u64) -> Option<(TaskFacts, u32)> {
        let map = map(self.object("udp")?, "ks_udp_socks")?;
        let value = map.lookup(&cookie.to_ne_bytes(), MapFlags::ANY).ok()??;
        decode_owner(&value).ok()
    }

    /// Records the kernel could not deliver so far: per CPU, by kind.
    fn drops(&self) -> io::Result<Vec<[u64; WIRE_KINDS]>> {
        let stats = map(self.process(), "ks_stats").expect("common.bpf.h defines ks_stats");
        let key = 0u32.to_ne_bytes();
        let per_cpu = stats
            .lookup_percpu(&key, MapFlags::ANY)
            .map_err(io::Error::other)?;
        Ok(per_cpu
            .into_iter()
            .flatten()
            .map(|bytes| {
                let mut st = ks_cpu_stats::default();
                // a short value cannot happen (the map's value type is ks_cpu_stats); zeros if it did
                let _ = plain::copy_from_bytes(&mut st, &bytes);
                st.drops
            })
            .collect())
    }

    /// Per program (by name), the runs the kernel skipped so far because
    /// another run of the same program was in progress on that CPU (a
    /// softirq interrupting it): `recursion_misses` (5.12+; 0 before). Each
    /// may have been a record, so they are reported as lost.
    fn skipped_runs(&self) -> Vec<(String, u64)> {
        self.program_stats()
            .into_iter()
            .map(|p| (p.name, p.skipped))
            .collect()
    }

    fn file_events(&self) -> Vec<RawFileEvent> {
        self.files.as_ref().map_or_else(Vec::new, FileWatch::read)
    }

    fn file_overflows(&self) -> u64 {
        self.files.as_ref().map_or(0, FileWatch::overflows)
    }

    fn enforce_answers_refused(&self) -> u64 {
        self.enforcement().map_or(0, |(_, _, refused)| refused)
    }

    fn bpf_loads(&self) -> Vec<RawBpfLoad> {
        self.bpf.as_ref().map_or_else(Vec::new, BpfWatch::read)
    }

    fn bpf_loads_lost(&self) -> u64 {
        self.bpf.as_ref().map_or(0, BpfWatch::lost)
    }
}

/// What the kernel counts of one loaded program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    /// Time spent running it and its runs: counted by the kernel only while
    /// `kernel.bpf_stats_enabled` is 1 (it costs every run a clock read).
    pub run_time_ns: u64,
    pub run_count: u64,
    /// Runs skipped (nested on one CPU).
    pub skipped: u64,
}

impl Agent {
    /// How full the ring buffer is now (0 to 1): its producer and consumer
    /// positions, read from the map's first two pages (mapped read-only for
    /// the call). `None` with the perf buffer.
    pub fn ring_usage(&self) -> Option<f64> {
        let events = map(self.process(), "ks_events")?;
        if events.map_type() != MapType::RingBuf {
            return None;
        }
        let size = events.max_entries() as u64;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: a read-only shared mapping of the ring buffer's consumer
        // and producer pages (the layout libbpf maps too); unmapped below.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                events.as_fd().as_raw_fd(),
                0,
            );
            if p == libc::MAP_FAILED {
                return None;
            }
            let consumer = std::ptr::read_volatile(p as *const u64);
            let producer = std::ptr::read_volatile((p as *const u8).add(page) as *const u64);
            libc::munmap(p, 2 * page);
            Some(producer.saturating_sub(consumer) as f64 / size.max(1) as f64)
        }
    }

    /// Every loaded program's counters, one syscall each.
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        let mut out = Vec::new();
        for obj in self.sensors.iter().filter_map(|s| s.object()) {
            for prog in obj.progs().filter(|p| p.autoload()) {
                // SAFETY: bpf_prog_info is plain data; the kernel writes at most `len` bytes.
                let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
                // SAFETY: a valid prog fd, and an info buffer of `len` bytes.
                let rc = unsafe {
                    libbpf_sys::bpf_prog_get_info_by_fd(
                        prog.as_fd().as_raw_fd(),
                        &mut info,
                        &mut len,
                    )
                };
                if rc == 0 {
                    out.push(ProgramStats {
                        name: prog.name().to_string_lossy().into_owned(),
                        run_time_ns: info.run_time_ns,
                        run_count: info.run_cnt,
                        skipped: info.recursion_misses,
                    });
                }
            }
        }
        out
    }
}

/// `cfg` with its transport decided (a real probe: distributions backport,
/// so the version says little), after checking it.
fn resolve(cfg: &Config) -> Result<Config, LoadError> {
    validate(cfg)?;
    capture_libbpf_log();
    let mut cfg = cfg.clone();
    if cfg.transport == TransportMode::Auto {
        let ring = MapType::RingBuf.is_supported().unwrap_or(false);
        cfg.transport = if ring {
            TransportMode::Ringbuf
        } else {
            TransportMode::Perf
        };
    }
    Ok(cfg)
}

fn validate(cfg: &Config) -> Result<(), LoadError> {
    let rb = cfg.ringbuf_bytes;
    if !rb.is_power_of_two() || rb < 4096 {
        return Err(LoadError::Config(format!(
            "ring buffer size {rb} must be a power of two of at least 4096 bytes"
        )));
    }
    if !cfg.perf_pages.is_power_of_two() {
        return Err(LoadError::Config(format!(
            "perf buffer pages per CPU ({}) must be a power of two",
            cfg.perf_pages
        )));
    }
    if cfg.ports.len() > 64 {
        return Err(LoadError::Config(format!(
            "at most 64 ports can be filtered on, {} given",
            cfg.ports.len()
        )));
    }
    if cfg.dns_ports.len() > 4 {
        return Err(LoadError::Config(format!(
            "at most 4 DNS ports, {} given",
            cfg.dns_ports.len()
        )));
    }
    if cfg.cgroups.len() > MAX_CGROUPS {
        return Err(LoadError::Config(format!(
            "at most {MAX_CGROUPS} cgroups can be filtered on, {} given",
            cfg.cgroups.len()
        )));
    }
    if !(64..=ARGV_MAX).contains(&cfg.argv_max) {
        return Err(LoadError::Config(format!(
            "argv bound {} must be between 64 and {ARGV_MAX} bytes",
            cfg.argv_max
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configuration_is_refused_before_loading() {
        let bad_ring = Config {
            ringbuf_bytes: 3 << 20,
            ..Config::default()
        };
        assert!(matches!(validate(&bad_ring), Err(LoadError::Config(_))));
        let bad_argv = Config {
            argv_max: ARGV_MAX + 1,
            ..Config::default()
        };
        assert!(matches!(validate(&bad_argv), Err(LoadError::Config(_))));
        assert!(validate(&Config::default()).is_ok());
    }

    #[test]
    fn every_sensor_has_an_object_and_a_place() {
        let all = crate::sensors::all();
        assert_eq!(
            all[0].spec().name,
            "process",
            "the process sensor loads first"
        );
        assert!(all[0].spec().wanted_by.is_empty());
        for s in &all[1..] {
            let spec = s.spec();
            assert!(
                !spec.wanted_by.is_empty(),
                "{}: only the process sensor is required",
                spec.name
            );
            for k in spec.wanted_by {
                assert!(
                    ksight_core::event::Kind::from_name(k).is_some(),
                    "{}: no kind {k}",
                    spec.name
                );
            }
            if let Some(a) = spec.after {
                let before = all.iter().position(|o| o.spec().name == a).unwrap();
                let me = all.iter().position(|o| o.spec().name == spec.name).unwrap();
                assert!(before < me, "{} loads after {a}", spec.name);
            }
        }
    }
}

/// A socket older than ksight, for [`Agent::seed_sockets`].
#[derive(Debug, Clone)]
pub struct SeedSocket {
    pub netns: u32,
    pub sock: crate::sockdiag::DiagSocket,
    /// A TCP connection whose local port is listened on: accepted, not made.
    pub inbound: bool,
}

fn put_addr(out: &mut [u8; 16], ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        std::net::IpAddr::V6(v6) => *out = v6.octets(),
    }
}
