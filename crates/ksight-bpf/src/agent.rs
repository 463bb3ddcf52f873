//! Load, configure and attach ksight's BPF programs; read their counters.
//!
//! Every attachment is an fd-based BPF link owned by this process: when ksight
//! exits, however it exits (SIGKILL included), the kernel closes the fds and
//! detaches and frees every program and map. Nothing is pinned.
//!
//! Hook choice is probed, not guessed from the kernel version: `Auto` loads the
//! tp_btf programs and, if the kernel refuses them, reloads with raw_tp ones.
//! Better hooks that only some kernels allow (the accept() hook: fexit or
//! kretprobe) are tried in order of preference, and their absence degrades
//! one detail, never the run.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{
    Link, MapCore, MapFlags, MapType, OpenObject, PerfBufferBuilder, PrintLevel, RingBufferBuilder,
};

use crate::decode;
use crate::skel::{OpenProcessSkel, ProcessSkel, ProcessSkelBuilder};
use crate::skel_accept::{AcceptSkel, AcceptSkelBuilder};
use crate::skel_gai::{GaiSkel, GaiSkelBuilder};
use crate::skel_net::{NetSkel, NetSkelBuilder};
use crate::skel_udp::{UdpSkel, UdpSkelBuilder};
use crate::transport::{PerfParts, Stream, TransportMode};
use crate::wire::{ks_cpu_stats, ks_event_kind, ks_limits};
use ksight_core::raw::{RawUdpFlow, TaskFacts};

/// Which flavour of tracepoint program to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// tp_btf where the kernel accepts it, else raw_tp.
    Auto,
    /// BTF-typed tracepoints (5.5+): cheapest, needs kernel BTF.
    TpBtf,
    /// Raw tracepoints (4.17+).
    RawTp,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Auto => "auto",
            AttachMode::TpBtf => "tp_btf",
            AttachMode::RawTp => "raw_tp",
        })
    }
}

/// How accepted TCP connections are attributed (accept.bpf.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptHook {
    /// The best hook this kernel allows: fexit, else kretprobe, else none.
    Auto,
    /// fexit/inet_csk_accept (5.5+, BTF; refused under lockdown).
    Fexit,
    /// kretprobe/inet_csk_accept (CONFIG_KPROBES).
    Kretprobe,
    /// No accept hook: accepted connections are the listener owner's.
    Off,
}

impl AcceptHook {
    /// The flavours to try, best first: each is (name, program, label).
    /// The older fexit signature goes first: on a 6.10+ kernel its extra
    /// arguments fail verification, while the newer one would load on an
    /// older kernel and read `int *err` as the returned socket.
    fn flavours(self) -> &'static [(&'static str, &'static str, &'static str)] {
        const FEXIT: [(&str, &str, &str); 2] = [
            (
                "fexit",
                "ks_accept_fexit_old",
                "fexit (signature before 6.10)",
            ),
            ("fexit", "ks_accept_fexit", "fexit (6.10+ signature)"),
        ];
        const ALL: [(&str, &str, &str); 3] = [
            FEXIT[0],
            FEXIT[1],
            ("kretprobe", "ks_accept_kretprobe", "kretprobe"),
        ];
        match self {
            AcceptHook::Auto => &ALL,
            AcceptHook::Fexit => &FEXIT,
            AcceptHook::Kretprobe => &ALL[2..],
            AcceptHook::Off => &[],
        }
    }
}

impl fmt::Display for AcceptHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AcceptHook::Auto => "auto",
            AcceptHook::Fexit => "fexit",
            AcceptHook::Kretprobe => "kretprobe",
            AcceptHook::Off => "off",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Ring buffer size in bytes: a power of two, at least one page.
    pub ringbuf_bytes: u32,
    /// Force a consumer wake-up once this many bytes are waiting.
    pub wakeup_bytes: u64,
    /// argv bytes copied per exec, clamped to [64, KS_ARGV_MAX].
    pub argv_max: u32,
    /// Report threads (creation and exit), not only processes.
    pub threads: bool,
    pub attach: AttachMode,
    pub transport: TransportMode,
    /// Perf buffer pages per CPU (a power of two), when the perf buffer is used.
    pub perf_pages: usize,
    /// BTF of the running kernel, for kernels that do not expose /sys/kernel/btf/vmlinux.
    pub btf: Option<PathBuf>,
    /// Report only tasks under these cgroup v2 directories (absolute paths), decided in the kernel.
    pub cgroups: Vec<PathBuf>,
    /// Load the network programs (TCP connect/accept/listen/close).
    pub net: bool,
    /// Report every TCP state transition (tcp_state events).
    pub tcp_states: bool,
    /// Hook accept() to attribute accepted connections to their acceptor (with `net`).
    pub accept: AcceptHook,
    /// Count UDP flows (cgroup programs on `cgroup_root`, or on `cgroups` when given).
    pub udp: bool,
    /// The cgroup v2 mount: where the UDP programs attach when no cgroup filter is set.
    pub cgroup_root: Option<PathBuf>,
    /// Network events only for these ports (local or remote); empty = all. At most 64.
    pub ports: Vec<u16>,
    /// No network events whose remote end is a loopback address.
    pub no_loopback: bool,
    /// UDP ports whose datagrams are DNS (at most 4; empty: none captured).
    pub dns_ports: Vec<u16>,
    /// Trace libc getaddrinfo (uprobes on the host's libc).
    pub gai: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ringbuf_bytes: 8 << 20,
            wakeup_bytes: 256 << 10,
            argv_max: 16 << 10,
            threads: false,
            attach: AttachMode::Auto,
            transport: TransportMode::Auto,
            perf_pages: 128,
            btf: None,
            cgroups: Vec::new(),
            net: true,
            tcp_states: false,
            accept: AcceptHook::Auto,
            udp: true,
            cgroup_root: None,
            ports: Vec::new(),
            no_loopback: false,
            dns_ports: vec![53],
            gai: true,
        }
    }
}

/// The largest argv ksight can copy (events.h KS_ARGV_MAX).
pub const ARGV_MAX: u32 = ks_limits::KS_ARGV_MAX.0;

/// How many cgroups the in-kernel filter takes (common.bpf.h KS_MAX_CGROUPS).
pub const MAX_CGROUPS: usize = 8;

/// Number of record kinds, which sizes the drop counters.
pub const KINDS: usize = ks_event_kind::KS_EVENT_KIND_MAX.0 as usize;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the BPF object: {0}")]
    Open(#[source] libbpf_rs::Error),
    #[error("the kernel rejected ksight's {what} programs: {source}{}", verifier_tail(.log))]
    Load {
        /// Which programs: "tp_btf", "raw_tp TCP", "UDP", ...
        what: String,
        #[source]
        source: libbpf_rs::Error,
        /// The relevant tail of libbpf's log (the verifier's last words).
        log: Vec<String>,
    },
    #[error("no accept() hook on this kernel: {0}")]
    NoAcceptHook(String),
    #[error("{tp_btf}\nThe raw tracepoint fallback failed too: {raw_tp}")]
    Both {
        tp_btf: Box<LoadError>,
        raw_tp: Box<LoadError>,
    },
    #[error("attaching {prog} to {target}: {source:#} (`ksight doctor` lists the hooks this kernel has)")]
    Attach {
        prog: String,
        target: String,
        #[source]
        source: libbpf_rs::Error,
    },
}

impl LoadError {
    /// One line: the error without the verifier log's tail.
    pub fn summary(&self) -> String {
        match self {
            LoadError::Load { source, .. } => format!("refused by the kernel: {source:#}"),
            LoadError::Attach { target, source, .. } => {
                format!("attaching to {target}: {source:#}")
            }
            other => other.to_string(),
        }
    }
}

fn verifier_tail(log: &[String]) -> String {
    if log.is_empty() {
        return String::new();
    }
    let mut s = String::from("\nlast lines of the libbpf/verifier log:");
    for l in log {
        s.push_str("\n  | ");
        s.push_str(l);
    }
    s
}

/// libbpf's messages, kept so that a load failure can show the verifier log.
/// libbpf's print callback is a plain fn, hence a global.
static LIBBPF_LOG: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
const LOG_KEEP: usize = 400;

fn libbpf_print(_level: PrintLevel, msg: String) {
    if std::env::var_os("KSIGHT_LIBBPF_DEBUG").is_some() {
        eprint!("libbpf: {msg}");
    }
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        for line in msg.lines() {
            if log.len() >= LOG_KEEP {
                log.pop_front();
            }
            log.push_back(line.to_string());
        }
    }
}

/// Send libbpf's messages to ksight's log instead of stderr (they are shown
/// with the error they explain). `KSIGHT_LIBBPF_DEBUG=1` prints them too.
pub fn capture_libbpf_log() {
    libbpf_rs::set_print(Some((PrintLevel::Debug, libbpf_print)));
}

/// The last line libbpf logged, cleared: the detail behind a refused probe.
pub fn last_libbpf_line() -> Option<String> {
    take_log_tail(usize::MAX)
        .into_iter()
        .rev()
        .find(|l| l.contains("libbpf:") || l.contains("-E"))
}

/// Take libbpf's log so far and keep the part that explains a load failure.
fn take_log_tail(max: usize) -> Vec<String> {
    let Ok(mut log) = LIBBPF_LOG.lock() else {
        return Vec::new();
    };
    let lines: Vec<String> = log.drain(..).collect();
    log_tail(&lines, max)
}

/// The verifier's output between libbpf's BEGIN/END PROG LOAD LOG markers
/// (its last `max` lines: the verifier states its reason last), else the last
/// `max` libbpf messages.
fn log_tail(lines: &[String], max: usize) -> Vec<String> {
    let end = lines.iter().rposition(|l| l.contains("END PROG LOAD LOG"));
    let begin = end.and_then(|e| {
        lines[..e]
            .iter()
            .rposition(|l| l.contains("BEGIN PROG LOAD LOG"))
    });
    let slice = match (begin, end) {
        (Some(b), Some(e)) => &lines[b + 1..e],
        _ => lines,
    };
    slice[slice.len().saturating_sub(max)..].to_vec()
}

/// What `Agent::load_only` made of the optional objects.
pub struct OptionalLoads {
    pub net: Option<Result<(), LoadError>>,
    /// The accept() hook's flavour, attached for a moment and detached
    /// (when `cfg.net` and the TCP programs loaded, and `cfg.accept` is not `Off`).
    pub accept: Option<Result<&'static str, LoadError>>,
    pub udp: Option<Result<(), LoadError>>,
}

/// The loaded, attached programs.
pub struct Agent {
    skel: ProcessSkel<'static>,
    /// The network programs; `None` when not asked for or refused (see `net_error`).
    net: Option<NetSkel<'static>>,
    net_error: Option<String>,
    /// The accept() hook and its flavour; `None` when not asked for or refused.
    accept: Option<(AcceptSkel<'static>, &'static str)>,
    accept_error: Option<String>,
    /// The UDP programs; `None` when not asked for or refused (see `udp_error`).
    udp: Option<UdpSkel<'static>>,
    udp_error: Option<String>,
    /// The getaddrinfo uprobes; `None` when not asked for or refused.
    gai: Option<GaiSkel<'static>>,
    gai_error: Option<String>,
    /// Every attachment; emptied by `detach`.
    links: std::cell::RefCell<Vec<Link>>,
    mode: AttachMode,
    transport: TransportMode,
    /// The perf buffer, opened before the programs were attached; taken by `stream`.
    perf: std::cell::RefCell<Option<PerfParts>>,
    /// Why `Auto` fell back from tp_btf, if it did.
    fallback: Option<String>,
}

impl Agent {
    /// Load and attach. With `AttachMode::Auto`, a kernel that refuses tp_btf
    /// programs gets raw_tp ones; the reason is kept in [`Agent::fallback`].
    pub fn start(cfg: &Config) -> Result<Agent, LoadError> {
        validate(cfg)?;
        capture_libbpf_log();
        let mut cfg = cfg.clone();
        if cfg.transport == TransportMode::Auto {
            // a real probe: distributions backport, so the version says little
            let ring = MapType::RingBuf.is_supported().unwrap_or(false);
            cfg.transport = if ring {
                TransportMode::Ringbuf
            } else {
                TransportMode::Perf
            };
        }
        let cfg = &cfg;
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

    /// Load ksight's programs as `cfg` says (an exact hook flavour and
    /// transport, not `Auto`), without attaching them, and unload them: the
    /// doctor's test of whether this kernel accepts them.
    /// Also the TCP and UDP programs' results (when `cfg.net` / `cfg.udp`),
    /// loaded into the process programs' maps as `ksight run` does, and the
    /// accept() hook's (which only attaching proves: a kretprobe loads anywhere).
    pub fn load_only(cfg: &Config) -> Result<OptionalLoads, LoadError> {
        validate(cfg)?;
        capture_libbpf_log();
        let skel = Self::load(cfg, cfg.attach)?;
        let mut net = cfg.net.then(|| load_net(cfg, cfg.attach, &skel));
        let accept = match &mut net {
            Some(Ok(n)) if cfg.accept != AcceptHook::Off => {
                Some(start_accept(cfg, &skel, n, &mut Vec::new()).map(|(_, flavour)| flavour))
            }
            _ => None,
        };
        Ok(OptionalLoads {
            net: net.map(|r| r.map(drop)),
            accept,
            udp: cfg.udp.then(|| load_udp(cfg, &skel).map(drop)),
        })
    }

    fn load(cfg: &Config, mode: AttachMode) -> Result<ProcessSkel<'static>, LoadError> {
        take_log_tail(0);
        // The skeleton borrows its object storage for as long as it lives,
        // which is as long as the agent: give it a small 'static allocation.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut builder = ProcessSkelBuilder::default();
        if let Some(btf) = &cfg.btf {
            builder
                .obj_builder
                .btf_custom_path(btf)
                .map_err(LoadError::Open)?;
        }
        let mut open = builder.open(storage).map_err(LoadError::Open)?;
        configure(&mut open, cfg, mode).map_err(LoadError::Open)?;
        open.load().map_err(|source| LoadError::Load {
            what: mode.to_string(),
            source,
            log: take_log_tail(30),
        })
    }

    fn start_mode(cfg: &Config, mode: AttachMode) -> Result<Agent, LoadError> {
        let skel = Self::load(cfg, mode)?;
        // the in-kernel cgroup filter, filled before any program runs
        for (i, path) in cfg.cgroups.iter().enumerate() {
            let dir = File::open(path).map_err(|source| LoadError::Cgroup {
                path: path.clone(),
                source,
            })?;
            let key = (i as u32).to_ne_bytes();
            let fd = dir.as_raw_fd().to_ne_bytes();
            (skel.maps.ks_cgroups.update(&key, &fd, MapFlags::ANY)).map_err(|e| {
                LoadError::Cgroup {
                    path: path.clone(),
                    source: std::io::Error::other(e),
                }
            })?;
        }
        // the perf buffer before any program runs: until its per-CPU buffers
        // are in ks_perf, bpf_perf_event_output refuses every record
        let perf = if cfg.transport == TransportMode::Perf {
            let parts = PerfParts::open(|sample, lost| {
                PerfBufferBuilder::new(&skel.maps.ks_perf)
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
        let mut links = Vec::new();
        attach_all(skel.object(), &mut links)?;
        // the network objects are optional: if this kernel refuses one,
        // the rest runs and the reason is reported
        // TCP: the accept() hook goes in before the state-change program, so
        // that accept records have one source from the first connection on
        let (mut net, mut net_error) = optional(cfg.net, || load_net(cfg, mode, &skel));
        let mut net_links = Vec::new();
        let (mut accept, mut accept_error) = match &mut net {
            Some(n) => optional(cfg.accept != AcceptHook::Off, || {
                start_accept(cfg, &skel, n, &mut net_links)
            }),
            None => (None, None),
        };
        if let Some(n) = &net {
            match attach_all(n.object(), &mut net_links) {
                Ok(()) => links.append(&mut net_links),
                Err(e) => {
                    // dropping the links detaches the accept hook too
                    (net, net_error, accept, accept_error) =
                        (None, Some(e.to_string()), None, None);
                }
            }
        }
        // each optional object's links join the others only once all of its
        // programs are attached: one that fails half-way leaves none running
        let (udp, udp_error) = optional(cfg.udp, || {
            let u = load_udp(cfg, &skel)?;
            let mut own = Vec::new();
            attach_cgroups(u.object(), cfg, &mut own)?;
            links.append(&mut own);
            Ok(u)
        });
        let (gai, gai_error) = optional(cfg.gai, || {
            let g = load_gai(cfg, &skel)?;
            let mut own = Vec::new();
            attach_gai(g.object(), &mut own)?;
            links.append(&mut own);
            Ok(g)
        });
        Ok(Agent {
            skel,
            net,
            net_error,
            accept,
            accept_error,
            udp,
            udp_error,
            gai,
            gai_error,
            links: std::cell::RefCell::new(links),
            mode,
            transport: cfg.transport,
            perf: std::cell::RefCell::new(perf),
            fallback: None,
        })
    }

    /// Why the network programs are not running, when they were asked for.
    pub fn net_error(&self) -> Option<&str> {
        self.net_error.as_deref()
    }

    /// The accept() hook's flavour (`fexit`, `kretprobe`), when one is attached.
    pub fn accept_hook(&self) -> Option<&'static str> {
        self.accept.as_ref().map(|(_, flavour)| *flavour)
    }

    /// Why no accept() hook is attached, when one was asked for.
    pub fn accept_error(&self) -> Option<&str> {
        self.accept_error.as_deref()
    }

    /// Why the getaddrinfo uprobes are not running, when they were asked for.
    pub fn gai_error(&self) -> Option<&str> {
        self.gai_error.as_deref()
    }

    /// Why the UDP programs are not running, when they were asked for.
    pub fn udp_error(&self) -> Option<&str> {
        self.udp_error.as_deref()
    }

    /// The UDP flows the kernel has counted: all, or those of the given
    /// sockets, which are then removed (their sockets are gone). A flow that
    /// cannot be decoded is skipped.
    pub fn udp_flows(&self, only: Option<&std::collections::HashSet<u64>>) -> Vec<RawUdpFlow> {
        let Some(udp) = &self.udp else {
            return Vec::new();
        };
        let map = &udp.maps.ks_udp_flows;
        let mut out = Vec::new();
        for key in map.keys() {
            // the cookie leads the key (ks_udp_flow_key)
            let Some(cookie) = key
                .get(..8)
                .map(|b| u64::from_ne_bytes(b.try_into().expect("8")))
            else {
                continue;
            };
            if only.is_some_and(|set| !set.contains(&cookie)) {
                continue;
            }
            let Ok(Some(value)) = map.lookup(&key, MapFlags::ANY) else {
                continue;
            };
            if let Ok(flow) = decode::udp_flow(&key, &value) {
                out.push(flow);
            }
            if only.is_some() {
                let _ = map.delete(&key);
            }
        }
        out
    }

    /// The flows of a released socket with these remotes, removed from the
    /// kernel's map: a lookup each, no scan.
    pub fn udp_flows_of(&self, cookie: u64, remotes: &[std::net::SocketAddr]) -> Vec<RawUdpFlow> {
        let Some(udp) = &self.udp else {
            return Vec::new();
        };
        let map = &udp.maps.ks_udp_flows;
        let mut out = Vec::new();
        for r in remotes {
            let mut key = crate::wire::ks_udp_flow_key {
                cookie,
                rport: r.port(),
                ..Default::default()
            };
            match r.ip() {
                std::net::IpAddr::V4(v4) => {
                    key.family = 2;
                    key.raddr[..4].copy_from_slice(&v4.octets());
                }
                std::net::IpAddr::V6(v6) => {
                    key.family = 10;
                    key.raddr = v6.octets();
                }
            }
            // SAFETY: ks_udp_flow_key is Plain (see wire.rs): its bytes are initialised.
            let bytes = unsafe { plain::as_bytes(&key) };
            if let Ok(Some(value)) = map.lookup(bytes, MapFlags::ANY) {
                if let Ok(flow) = decode::udp_flow(bytes, &value) {
                    out.push(flow);
                }
                let _ = map.delete(bytes);
            }
        }
        out
    }

    /// The owner the kernel recorded for a UDP socket, and its netns.
    pub fn udp_owner(&self, cookie: u64) -> Option<(TaskFacts, u32)> {
        let udp = self.udp.as_ref()?;
        let value = (udp.maps.ks_udp_socks)
            .lookup(&cookie.to_ne_bytes(), MapFlags::ANY)
            .ok()??;
        decode::udp_owner(&value).ok()
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

    /// Detach every program (the maps stay, for a last read): after this, the
    /// buffer holds every record the programs will ever write, and the drop
    /// counters every record they refused.
    pub fn detach(&self) {
        // last attached, first detached: the TCP state program goes before the
        // accept() hook that relies on it
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
                libbpf_rs::Error::from(std::io::Error::other("the perf stream was taken already"))
            })?;
            return Ok(Stream::perf(Box::new(deliver), window, parts));
        }
        let mut b = RingBufferBuilder::new();
        b.add(&self.skel.maps.ks_events, deliver)?;
        Ok(Stream::ring(b.build()?))
    }

    /// Records the kernel could not deliver so far: per CPU, by kind.
    pub fn drops(&self) -> libbpf_rs::Result<Vec<[u64; KINDS]>> {
        let key = 0u32.to_ne_bytes();
        let per_cpu = self.skel.maps.ks_stats.lookup_percpu(&key, MapFlags::ANY)?;
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

    /// Kernel ids of the loaded programs and maps, to check that none outlives ksight.
    pub fn kernel_ids(&self) -> (Vec<u32>, Vec<u32>) {
        let objects = self.objects();
        let mut progs = Vec::new();
        let mut maps = Vec::new();
        for obj in objects {
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

    /// Every loaded BPF object.
    fn objects(&self) -> Vec<&libbpf_rs::Object> {
        let mut objects = vec![self.skel.object()];
        objects.extend(self.net.as_ref().map(|n| n.object()));
        objects.extend(self.accept.as_ref().map(|(a, _)| a.object()));
        objects.extend(self.udp.as_ref().map(|u| u.object()));
        objects.extend(self.gai.as_ref().map(|g| g.object()));
        objects
    }

    /// Per program (by name), the runs the kernel skipped so far because
    /// another run of the same program was in progress on that CPU (a
    /// softirq interrupting it): `recursion_misses` (5.12+; 0 before). Each
    /// may have been a record, so they are reported as lost.
    pub fn skipped_runs(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for obj in self.objects() {
            for prog in obj.progs().filter(|p| p.autoload()) {
                // SAFETY: bpf_prog_info is plain data; the kernel writes at most `len` bytes.
                let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
                let rc = unsafe {
                    libbpf_sys::bpf_prog_get_info_by_fd(
                        prog.as_fd().as_raw_fd(),
                        &mut info,
                        &mut len,
                    )
                };
                if rc == 0 {
                    out.push((
                        prog.name().to_string_lossy().into_owned(),
                        info.recursion_misses,
                    ));
                }
            }
        }
        out
    }
}

/// An optional object: loaded and attached when wanted, or the reason it is not.
fn optional<T>(
    wanted: bool,
    start: impl FnOnce() -> Result<T, LoadError>,
) -> (Option<T>, Option<String>) {
    if !wanted {
        return (None, None);
    }
    match start() {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// Attach every program the object loaded; each link is fd-based and owned here.
fn attach_all(obj: &libbpf_rs::Object, links: &mut Vec<Link>) -> Result<(), LoadError> {
    for prog in obj.progs_mut() {
        if !prog.autoload() {
            continue;
        }
        let link = prog.attach().map_err(|source| LoadError::Attach {
            prog: prog.name().to_string_lossy().into_owned(),
            // "tp_btf/sched_process_exec", "kretprobe/inet_csk_accept"
            target: prog.section().to_string_lossy().into_owned(),
            source,
        })?;
        links.push(link);
    }
    Ok(())
}

/// Open one of the network objects with its shared maps (ring or perf
/// buffer, per-CPU counters, cgroup filter) pointed at the process object's,
/// and the knobs of common.bpf.h and netfilter.bpf.h set: one ordered stream,
/// one sequence space, one drop count. A macro: every skeleton has its own
/// generated types for the same maps.
macro_rules! open_shared {
    ($builder:ty, $cfg:expr, $process:expr) => {{
        take_log_tail(0);
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut builder = <$builder>::default();
        if let Some(btf) = &$cfg.btf {
            builder
                .obj_builder
                .btf_custom_path(btf)
                .map_err(LoadError::Open)?;
        }
        let mut open = builder.open(storage).map_err(LoadError::Open)?;
        let shared = (|| -> libbpf_rs::Result<()> {
            let ro = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect("common.bpf.h has const volatile knobs, so .rodata exists");
            let perf = $cfg.transport == TransportMode::Perf;
            ro.ks_cfg_perf = perf.into();
            ro.ks_cfg_wakeup_bytes = $cfg.wakeup_bytes;
            ro.ks_cfg_cgroups = $cfg.cgroups.len() as u32;
            ro.ks_cfg_ports = $cfg.ports.len() as u32;
            ro.ks_cfg_no_loopback = $cfg.no_loopback.into();
            open.maps.ks_events.set_autocreate(!perf)?;
            open.maps.ks_perf.set_autocreate(perf)?;
            if perf {
                open.maps.ks_perf.reuse_fd($process.maps.ks_perf.as_fd())?;
            } else {
                open.maps
                    .ks_events
                    .reuse_fd($process.maps.ks_events.as_fd())?;
            }
            open.maps
                .ks_stats
                .reuse_fd($process.maps.ks_stats.as_fd())?;
            open.maps
                .ks_cgroups
                .reuse_fd($process.maps.ks_cgroups.as_fd())?;
            Ok(())
        })();
        shared.map_err(LoadError::Open)?;
        open
    }};
}

/// Load net.bpf.c (TCP) in the given hook flavour, sharing the process object's maps.
fn load_net(
    cfg: &Config,
    mode: AttachMode,
    process: &ProcessSkel<'static>,
) -> Result<NetSkel<'static>, LoadError> {
    let mut open = open_shared!(NetSkelBuilder, cfg, process);
    if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
        ro.ks_cfg_tcp_states = cfg.tcp_states.into();
    }
    let want = match mode {
        AttachMode::RawTp => "raw_tp/",
        _ => "tp_btf/",
    };
    for mut prog in open.open_object_mut().progs_mut() {
        let section = prog.section().to_string_lossy().into_owned();
        prog.set_autoload(section.starts_with(want));
    }
    let skel = open.load().map_err(|source| LoadError::Load {
        what: format!("{mode} TCP"),
        source,
        log: take_log_tail(30),
    })?;
    fill_ports(&skel.maps.ks_ports, &cfg.ports)?;
    Ok(skel)
}

/// Load and attach accept.bpf.c in the first flavour `cfg.accept` allows that
/// this kernel takes, sharing net.bpf.c's tables, then hand accept records
/// over to it. The error, when none works, names each flavour's reason.
fn start_accept(
    cfg: &Config,
    process: &ProcessSkel<'static>,
    net: &mut NetSkel<'static>,
    links: &mut Vec<Link>,
) -> Result<(AcceptSkel<'static>, &'static str), LoadError> {
    let mut reasons = Vec::new();
    for &(flavour, program, label) in cfg.accept.flavours() {
        let attempt = || -> Result<(AcceptSkel<'static>, Link), LoadError> {
            let mut open = open_shared!(AcceptSkelBuilder, cfg, process);
            let maps = &mut open.maps;
            (|| -> libbpf_rs::Result<()> {
                maps.ks_tcp_conns.reuse_fd(net.maps.ks_tcp_conns.as_fd())?;
                maps.ks_listeners.reuse_fd(net.maps.ks_listeners.as_fd())?;
                maps.ks_ports.reuse_fd(net.maps.ks_ports.as_fd())
            })()
            .map_err(LoadError::Open)?;
            for mut prog in open.open_object_mut().progs_mut() {
                let on = prog.name() == program;
                prog.set_autoload(on);
            }
            let skel = open.load().map_err(|source| LoadError::Load {
                what: format!("accept hook ({flavour})"),
                source,
                log: take_log_tail(30),
            })?;
            let mut new_links = Vec::new();
            attach_all(skel.object(), &mut new_links)?;
            Ok((skel, new_links.pop().expect("one program")))
        };
        match attempt() {
            Ok((skel, link)) => {
                links.push(link);
                // the mmap'ed .bss the net programs read
                if let Some(bss) = net.maps.bss_data.as_deref_mut() {
                    bss.ks_accept_hooked = 1;
                }
                return Ok((skel, flavour));
            }
            Err(e) => reasons.push(format!("{label}: {}", e.summary())),
        }
    }
    Err(LoadError::NoAcceptHook(reasons.join("; ")))
}

/// The --port filter's map (read by netfilter.bpf.h).
fn fill_ports(map: &impl MapCore, ports: &[u16]) -> Result<(), LoadError> {
    for p in ports {
        map.update(&p.to_ne_bytes(), &[1], MapFlags::ANY)
            .map_err(|e| LoadError::Config(format!("--port {p}: {e}")))?;
    }
    Ok(())
}

/// Attach the cgroup programs to the filtered cgroups, or to the cgroup v2 root.
fn attach_cgroups(
    obj: &libbpf_rs::Object,
    cfg: &Config,
    links: &mut Vec<Link>,
) -> Result<(), LoadError> {
    let targets: Vec<PathBuf> = if cfg.cgroups.is_empty() {
        cfg.cgroup_root.iter().cloned().collect()
    } else {
        outermost(&cfg.cgroups)
    };
    if targets.is_empty() {
        return Err(LoadError::Config(
            "UDP flows need cgroup v2, and no cgroup2 file system is mounted".into(),
        ));
    }
    for path in &targets {
        let dir = File::open(path).map_err(|source| LoadError::Cgroup {
            path: path.clone(),
            source,
        })?;
        for prog in obj.progs_mut() {
            let link = prog
                .attach_cgroup(dir.as_raw_fd())
                .map_err(|source| LoadError::Attach {
                    prog: prog.name().to_string_lossy().into_owned(),
                    target: format!("cgroup {}", path.display()),
                    source,
                })?;
            links.push(link);
        }
    }
    Ok(())
}

/// The cgroups of `all` that no other one contains, once each: programs
/// attached to a cgroup and to one inside it would see its packets twice.
fn outermost(all: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for c in all {
        if !out.contains(c) && !all.iter().any(|o| o != c && c.starts_with(o)) {
            out.push(c.clone());
        }
    }
    out
}

/// Load udp.bpf.c (cgroup programs), sharing the process object's maps.
fn load_udp(cfg: &Config, process: &ProcessSkel<'static>) -> Result<UdpSkel<'static>, LoadError> {
    let mut open = open_shared!(UdpSkelBuilder, cfg, process);
    if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
        ro.ks_cfg_dns_ports = [0; 4];
        for (slot, port) in ro.ks_cfg_dns_ports.iter_mut().zip(&cfg.dns_ports) {
            *slot = *port;
        }
    }
    let skel = open.load().map_err(|source| LoadError::Load {
        what: "UDP (cgroup)".into(),
        source,
        log: take_log_tail(30),
    })?;
    fill_ports(&skel.maps.ks_ports, &cfg.ports)?;
    Ok(skel)
}

/// Load gai.bpf.c (libc getaddrinfo uprobes), sharing the process object's maps.
fn load_gai(cfg: &Config, process: &ProcessSkel<'static>) -> Result<GaiSkel<'static>, LoadError> {
    let open = open_shared!(GaiSkelBuilder, cfg, process);
    open.load().map_err(|source| LoadError::Load {
        what: "getaddrinfo (uprobe)".into(),
        source,
        log: take_log_tail(30),
    })
}

/// Attach the entry and return probes to getaddrinfo in the host's libc, for every process.
fn attach_gai(obj: &libbpf_rs::Object, links: &mut Vec<Link>) -> Result<(), LoadError> {
    let libc = crate::probe::libc_path()
        .ok_or_else(|| LoadError::Config("no libc found to attach getaddrinfo probes to".into()))?;
    for prog in obj.progs_mut() {
        let retprobe = prog.name() == "ks_gai_exit";
        let opts = libbpf_rs::UprobeOpts {
            func_name: Some("getaddrinfo".into()),
            retprobe,
            ..Default::default()
        };
        let link = prog
            .attach_uprobe_with_opts(-1, &libc, 0, opts)
            .map_err(|source| LoadError::Attach {
                prog: prog.name().to_string_lossy().into_owned(),
                target: format!("getaddrinfo in {}", libc.display()),
                source,
            })?;
        links.push(link);
    }
    Ok(())
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

fn configure(
    open: &mut OpenProcessSkel<'static>,
    cfg: &Config,
    mode: AttachMode,
) -> libbpf_rs::Result<()> {
    let ro = open
        .maps
        .rodata_data
        .as_deref_mut()
        .expect("process.bpf.c has const volatile knobs, so .rodata exists");
    ro.ks_cfg_argv_max = cfg.argv_max;
    ro.ks_cfg_threads = cfg.threads.into();
    ro.ks_cfg_wakeup_bytes = cfg.wakeup_bytes;
    ro.ks_cfg_cgroups = cfg.cgroups.len() as u32;
    let perf = cfg.transport == TransportMode::Perf;
    ro.ks_cfg_perf = perf.into();
    // create only the buffer in use: kernels before 5.8 cannot create a ring buffer
    open.maps.ks_events.set_autocreate(!perf)?;
    open.maps.ks_perf.set_autocreate(perf)?;
    open.maps.ks_events.set_max_entries(cfg.ringbuf_bytes)?;
    let cpus = libbpf_rs::num_possible_cpus()? as u32;
    open.maps.ks_scratch.set_max_entries(cpus.max(1))?;
    let want = match mode {
        AttachMode::RawTp => "raw_tp/",
        _ => "tp_btf/",
    };
    for mut prog in open.open_object_mut().progs_mut() {
        let section = prog.section().to_string_lossy().into_owned();
        prog.set_autoload(section.starts_with(want));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn log_tail_keeps_the_verifier_part() {
        let log = lines(&[
            "libbpf: loading object",
            "libbpf: prog 'x': -- BEGIN PROG LOAD LOG --",
            "0: (b7) r0 = 0",
            "1: (95) exit",
            "R0 !read_ok",
            "-- END PROG LOAD LOG --",
            "libbpf: failed to load object",
        ]);
        assert_eq!(log_tail(&log, 2), lines(&["1: (95) exit", "R0 !read_ok"]));
        assert_eq!(log_tail(&log, 10).len(), 3);
    }

    #[test]
    fn log_tail_without_markers_is_the_last_lines() {
        let log = lines(&["a", "b", "c"]);
        assert_eq!(log_tail(&log, 2), lines(&["b", "c"]));
        assert!(log_tail(&[], 5).is_empty());
    }

    #[test]
    fn nested_and_repeated_cgroups_attach_once() {
        let p = |s: &str| PathBuf::from(s);
        let all = [
            p("/sys/fs/cgroup/a/b"),
            p("/sys/fs/cgroup/a"),
            p("/sys/fs/cgroup/ab"),
            p("/sys/fs/cgroup/a"),
        ];
        assert_eq!(
            outermost(&all),
            [p("/sys/fs/cgroup/a"), p("/sys/fs/cgroup/ab")]
        );
    }

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
}
