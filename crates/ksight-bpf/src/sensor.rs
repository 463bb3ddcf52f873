//! What a sensor is: one BPF object (`bpf/<name>.bpf.c`) and how ksight loads
//! and attaches it, behind one small trait. The agent runs a list of them;
//! the doctor loads each one (so no object can be missing there); a sensor the
//! kernel refuses degrades its feature, never the run (but for the process
//! sensor, without which nothing works).
//!
//! Each module in `sensors/` is one sensor; build.rs lists them.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use libbpf_rs::{Link, Object};

use crate::object::{self, LoadError, Opened, SharedMaps};
use crate::transport::TransportMode;
use ksight_core::event::Kind;
use ksight_core::files::WatchEntry;

/// Which flavour of tracepoint program to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum AttachMode {
    /// tp_btf where the kernel accepts it, else raw tracepoints
    Auto,
    /// BTF-typed tracepoints (5.5+): cheapest, needs kernel BTF
    #[cfg_attr(feature = "cli", value(name = "tp_btf"))]
    TpBtf,
    /// raw tracepoints (4.17+)
    #[cfg_attr(feature = "cli", value(name = "raw_tp"))]
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

/// Which processes get the getaddrinfo probes (gai.bpf.c). A uprobe on libc
/// is installed into every mapping of libc, so in `all` every exec of a
/// dynamically linked program on the host pays for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum GaiAttach {
    /// a process once it has sent a DNS query (its first lookup is seen as
    /// packets only); no other process pays anything
    Lazy,
    /// every process, from the start
    All,
}

impl fmt::Display for GaiAttach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GaiAttach::Lazy => "lazy",
            GaiAttach::All => "all",
        })
    }
}

/// How accepted TCP connections are attributed (accept.bpf.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum AcceptHook {
    /// fexit where the kernel allows it, else kretprobe, else off
    Auto,
    /// fexit/inet_csk_accept (needs BTF, refused under lockdown)
    Fexit,
    /// kretprobe/inet_csk_accept (needs CONFIG_KPROBES)
    Kretprobe,
    /// accepted connections are attributed to the listener's owner
    Off,
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
    /// The event kinds asked for; empty: every kind but `tcp_state`. A sensor
    /// is loaded when a kind it serves is asked for.
    pub kinds: Vec<Kind>,
    /// Hook accept() to attribute accepted connections to their acceptor.
    pub accept: AcceptHook,
    /// The cgroup v2 mount: where the UDP programs attach when no cgroup filter is set.
    pub cgroup_root: Option<PathBuf>,
    /// Network events only for these ports (local or remote); empty = all. At most 64.
    pub ports: Vec<u16>,
    /// No network events whose remote end is a loopback address.
    pub no_loopback: bool,
    /// Ports whose datagrams and segments are DNS (at most 4).
    pub dns_ports: Vec<u16>,
    /// Which processes the getaddrinfo probes go into.
    pub gai: GaiAttach,
    /// The files and directories the `file` kind watches (fanotify).
    pub file_watch: Vec<WatchEntry>,
    /// The same paths in every other mount namespace (containers).
    pub file_watch_containers: bool,
    /// The rules the kernel enforces; `None` (the doctor): every enforcement
    /// program is loaded, none attached.
    pub policy: Option<std::sync::Arc<ksight_core::enforce::Policy>>,
    /// Pin the enforcement programs and maps so that they outlive ksight.
    pub enforce_persist: bool,
    /// Destinations enforcement never denies (the resolvers, ksight's endpoints).
    pub enforce_allow: Vec<std::net::IpAddr>,
    /// Addresses of DNS answers for denied names the kernel holds at most.
    pub enforce_answers_max: u32,
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
            kinds: Vec::new(),
            accept: AcceptHook::Auto,
            cgroup_root: None,
            ports: Vec::new(),
            no_loopback: false,
            dns_ports: vec![53],
            gai: GaiAttach::Lazy,
            file_watch: ksight_core::files::default_watches(),
            file_watch_containers: false,
            policy: None,
            enforce_persist: false,
            enforce_allow: Vec::new(),
            enforce_answers_max: 16384,
        }
    }
}

impl Config {
    /// Is this kind asked for (by name)?
    pub fn wants(&self, kind: &str) -> bool {
        if self.kinds.is_empty() {
            kind != "tcp_state"
        } else {
            self.kinds.iter().any(|k| k.name() == kind)
        }
    }
}

/// What a sensor is, for the agent, `-v` and the doctor.
#[derive(Debug)]
pub struct Spec {
    /// Its object: `bpf/<name>.bpf.c`.
    pub name: &'static str,
    /// Its place in lists (`-v`, the doctor) and in attach order. Sensors
    /// load at once, on threads; one that needs another's maps says `after`.
    pub order: u32,
    /// The kinds it serves: it is loaded when one of them is asked for.
    /// Empty: always (the process sensor, without which nothing runs).
    pub wanted_by: &'static [&'static str],
    /// Loaded only when this sensor is running (the accept hook needs the TCP tables).
    pub after: Option<&'static str>,
    /// The maps later objects reuse, by name.
    pub publishes: &'static [&'static str],
    /// Its programs come as tp_btf and raw_tp twins (`--attach` picks).
    pub flavoured: bool,
    /// Where it hooks, for the doctor and `-v`.
    pub hooks: &'static str,
    /// The doctor's name for what it gives.
    pub feature: &'static str,
    /// What ksight says when the kernel refuses it, given why.
    pub degraded: fn(&str) -> String,
}

/// One BPF object ksight runs. `Send`: the agent loads sensors on threads of
/// their own (each a BTF parse and a verifier run, tens of ms).
pub trait Sensor: Send {
    fn spec(&self) -> &'static Spec;

    /// Whether `cfg` needs this sensor.
    fn wanted(&self, cfg: &Config) -> bool {
        let s = self.spec();
        s.wanted_by.is_empty() || s.wanted_by.iter().any(|k| cfg.wants(k))
    }

    /// Open, configure and load the object into the kernel (verified, not
    /// attached), its shared maps pointed at those published before it.
    fn load(&mut self, cx: &mut LoadCx<'_>) -> Result<(), LoadError>;

    /// Attach every program; the links are the caller's. On an error,
    /// nothing of this sensor stays attached.
    fn attach(&mut self, cx: &LoadCx<'_>) -> Result<Vec<Link>, LoadError>;

    /// The loaded object.
    fn object(&self) -> Option<&Object>;

    /// The hook flavour it chose, when it chooses one (`fexit`, `kretprobe`).
    fn hook(&self) -> Option<&'static str> {
        None
    }
}

/// What loading a sensor needs.
pub struct LoadCx<'a> {
    pub cfg: &'a Config,
    /// The tracepoint flavour (never `Auto` here).
    pub mode: AttachMode,
    pub shared: &'a mut SharedMaps,
}

impl LoadCx<'_> {
    /// Open an object with what every object shares set up: the transport
    /// and its knobs, the --cgroup, --port and --no-loopback knobs, and the
    /// maps published by the sensors loaded before.
    pub fn open(&mut self, name: &'static str, bytes: &'static [u8]) -> Result<Opened, LoadError> {
        let cfg = self.cfg;
        let mut o = object::open(name, bytes, cfg.btf.as_deref())?;
        let perf = cfg.transport == TransportMode::Perf;
        o.knob_if_any("ks_cfg_perf", &u32::from(perf).to_ne_bytes())?;
        o.knob_if_any("ks_cfg_wakeup_bytes", &cfg.wakeup_bytes.to_ne_bytes())?;
        o.knob_if_any("ks_cfg_cgroups", &(cfg.cgroups.len() as u32).to_ne_bytes())?;
        o.knob_if_any("ks_cfg_ports", &(cfg.ports.len() as u32).to_ne_bytes())?;
        o.knob_if_any(
            "ks_cfg_no_loopback",
            &u32::from(cfg.no_loopback).to_ne_bytes(),
        )?;
        o.transport(perf)?;
        o.share(self.shared)?;
        Ok(o)
    }

    /// Keep the programs of the chosen tracepoint flavour (`tp_btf/` or `raw_tp/` sections).
    pub fn tracepoints(&self, o: &mut Opened) {
        let want = match self.mode {
            AttachMode::RawTp => "raw_tp/",
            _ => "tp_btf/",
        };
        o.programs(|_, section| section.starts_with(want));
    }

    /// The --port filter's map, filled.
    pub fn fill_ports(&self, obj: &Object) -> Result<(), LoadError> {
        let keys: Vec<Vec<u8>> = self
            .cfg
            .ports
            .iter()
            .map(|p| p.to_ne_bytes().to_vec())
            .collect();
        object::fill_set(obj, "ks_ports", &keys)
    }
}

/// The kernel refused an fentry/fexit program with EPERM (lockdown): the
/// other optional hooks do not try theirs (each try is a BTF parse and a
/// load, tens of ms of a start).
pub(crate) static TRAMPOLINES_REFUSED: AtomicBool = AtomicBool::new(false);

/// An optional hook offered as fentry and kprobe twins of one handler
/// (`<prefix>_fentry`, `<prefix>_kprobe` in `bpf/<name>.bpf.c`): the first
/// this kernel loads *and attaches* (fentry is refused under lockdown, at load
/// or attach; kprobes need CONFIG_KPROBES), with its link and flavour; else
/// why neither did.
pub fn first_attaching(
    cx: &mut LoadCx<'_>,
    name: &'static str,
    bytes: &'static [u8],
    prefix: &str,
) -> Result<(Object, Link, &'static str), LoadError> {
    let mut reasons = Vec::new();
    for flavour in ["fentry", "kprobe"] {
        if flavour == "fentry" && TRAMPOLINES_REFUSED.load(Ordering::Relaxed) {
            reasons
                .push("fentry: not tried (the kernel refused another fentry/fexit program)".into());
            continue;
        }
        if flavour == "kprobe" && !kprobes_exist() {
            reasons.push("kprobe: not tried: this kernel has no kprobes (CONFIG_KPROBES)".into());
            continue;
        }
        let program = format!("{prefix}_{flavour}");
        let mut attempt = || -> Result<(Object, Link), LoadError> {
            let mut o = cx.open(name, bytes)?;
            o.programs(|p, _| p == program);
            let obj = o.load(&format!("{name} hook ({flavour})"))?;
            let link = object::attach_all(&obj)?.pop().expect("one program");
            Ok((obj, link))
        };
        match attempt() {
            Ok((obj, link)) => return Ok((obj, link, flavour)),
            Err(e) => {
                if flavour == "fentry" && e.permission_denied() {
                    TRAMPOLINES_REFUSED.store(true, Ordering::Relaxed);
                }
                reasons.push(format!("{flavour}: {}", e.summary()))
            }
        }
    }
    Err(LoadError::NoHook(reasons.join("; ")))
}

/// Whether kprobes can be attached: the kprobe PMU (4.17+) or, before it,
/// tracefs's kprobe_events (libbpf uses either).
pub(crate) fn kprobes_exist() -> bool {
    [
        "/sys/bus/event_source/devices/kprobe",
        "/sys/kernel/tracing/kprobe_events",
        "/sys/kernel/debug/tracing/kprobe_events",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
}

/// What an optional fentry/kprobe hook sensor is: its spec and object.
pub trait HookDef {
    const SPEC: &'static Spec;
    /// `bpf/<NAME>.bpf.c`
    const NAME: &'static str;
    const OBJECT: &'static [u8];
    /// Its programs are `<PREFIX>_fentry` and `<PREFIX>_kprobe`.
    const PREFIX: &'static str;
}

/// A sensor of one optional hook ([`first_attaching`]): attached while
/// loading, its link handed over at attach.
pub struct HookSensor<D> {
    obj: Option<Object>,
    link: Option<Link>,
    flavour: Option<&'static str>,
    def: std::marker::PhantomData<D>,
}

impl<D> Default for HookSensor<D> {
    fn default() -> Self {
        HookSensor {
            obj: None,
            link: None,
            flavour: None,
            def: std::marker::PhantomData,
        }
    }
}

impl<D: HookDef + Send> Sensor for HookSensor<D> {
    fn spec(&self) -> &'static Spec {
        D::SPEC
    }

    fn load(&mut self, cx: &mut LoadCx<'_>) -> Result<(), LoadError> {
        let (obj, link, flavour) = first_attaching(cx, D::NAME, D::OBJECT, D::PREFIX)?;
        (self.obj, self.link, self.flavour) = (Some(obj), Some(link), Some(flavour));
        Ok(())
    }

    fn attach(&mut self, _cx: &LoadCx<'_>) -> Result<Vec<Link>, LoadError> {
        Ok(self.link.take().into_iter().collect())
    }

    fn object(&self) -> Option<&Object> {
        self.obj.as_ref()
    }

    fn hook(&self) -> Option<&'static str> {
        self.flavour
    }
}
