//! One BPF object, generically: open it from the bytes build.rs compiled, set
//! its `const volatile` knobs by name (found in its BTF), point its shared
//! maps at those of objects loaded before it, choose which programs load,
//! load it (with the verifier's last words on failure), attach it.
//!
//! Every sensor goes through here, so what differs between sensors is only
//! what they say, not how they talk to libbpf.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use libbpf_rs::btf::types::{DataSec, Var};
use libbpf_rs::btf::Btf;
use libbpf_rs::{Link, MapCore, MapHandle, MapType, Object, ObjectBuilder, OpenObject, PrintLevel};

/// The bytes of `bpf/<name>.bpf.c`, compiled by build.rs.
#[macro_export]
macro_rules! object {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".bpf.o"))
    };
}

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
    #[error("no hook on this kernel: {0}")]
    NoHook(String),
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
    /// The kernel refused the programs with EPERM at load: a hook type it
    /// does not allow (fexit under lockdown), not these programs' code (the
    /// verifier says EACCES or EINVAL). libbpf-rs keeps the errno only in the
    /// io::Error's text, which ends the message.
    pub fn permission_denied(&self) -> bool {
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM).to_string();
        matches!(self, LoadError::Load { source, .. } if format!("{source:#}").ends_with(&eperm))
    }

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

thread_local! {
    /// libbpf's messages, kept so that a load failure can show the verifier
    /// log. libbpf's print callback is a plain fn, called on the thread that
    /// loads: one log per thread, so objects loaded at once keep theirs apart.
    static LIBBPF_LOG: RefCell<VecDeque<String>> = const { RefCell::new(VecDeque::new()) };
}
const LOG_KEEP: usize = 400;

fn libbpf_print(_level: PrintLevel, msg: String) {
    if std::env::var_os("KSIGHT_LIBBPF_DEBUG").is_some() {
        eprint!("libbpf: {msg}");
    }
    LIBBPF_LOG.with_borrow_mut(|log| {
        for line in msg.lines() {
            if log.len() >= LOG_KEEP {
                log.pop_front();
            }
            log.push_back(line.to_string());
        }
    });
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
pub(crate) fn take_log_tail(max: usize) -> Vec<String> {
    let lines: Vec<String> = LIBBPF_LOG.with_borrow_mut(|log| log.drain(..).collect());
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

/// How many cgroups the in-kernel filter takes (common.bpf.h KS_MAX_CGROUPS).
pub const MAX_CGROUPS: usize = 8;

/// Maps objects share, by name: those every object has, made first
/// ([`SharedMaps::create`]: the ring buffer, the counters, the cgroup filter),
/// and those an object publishes for the ones loaded after it (the TCP tables
/// for the accept() hook).
#[derive(Default)]
pub struct SharedMaps {
    maps: HashMap<String, OwnedFd>,
}

impl SharedMaps {
    /// The maps every object shares, made before any object loads, so that
    /// all objects can load at once: the transport's buffer (`ks_events`, or
    /// `ks_perf` on the perf buffer), the per-CPU counters (`ks_stats`) and
    /// the cgroup filter (`ks_cgroups`), as common.bpf.h declares them (a
    /// declaration that drifted from these fails every load: the verifier
    /// checks each access against the map it is given).
    pub fn create(ringbuf_bytes: u32, perf: bool) -> Result<SharedMaps, LoadError> {
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let cpus = libbpf_rs::num_possible_cpus().map_err(LoadError::Open)? as u32;
        let stats = std::mem::size_of::<ksight_wire::ks_cpu_stats>() as u32;
        let mut wanted = vec![
            ("ks_stats", MapType::PercpuArray, 4, stats, 1),
            ("ks_cgroups", MapType::CgroupArray, 4, 4, MAX_CGROUPS as u32),
        ];
        wanted.push(if perf {
            ("ks_perf", MapType::PerfEventArray, 4, 4, cpus.max(1))
        } else {
            ("ks_events", MapType::RingBuf, 0, 0, ringbuf_bytes)
        });
        let mut maps = HashMap::new();
        for (name, ty, key, value, entries) in wanted {
            let m = MapHandle::create(ty, Some(name), key, value, entries, &opts)
                .map_err(|e| LoadError::Config(format!("creating the {name} map: {e:#}")))?;
            let fd = m
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| LoadError::Open(e.into()))?;
            maps.insert(name.to_string(), fd);
        }
        Ok(SharedMaps { maps })
    }

    /// The same maps (their fds duplicated), for a sensor loaded on another thread.
    pub fn try_clone(&self) -> Result<SharedMaps, LoadError> {
        let mut maps = HashMap::new();
        for (name, fd) in &self.maps {
            let fd = fd.try_clone().map_err(|e| LoadError::Open(e.into()))?;
            maps.insert(name.clone(), fd);
        }
        Ok(SharedMaps { maps })
    }

    /// Publish `obj`'s maps of these names.
    pub fn publish(&mut self, obj: &Object, names: &[&str]) -> Result<(), LoadError> {
        for m in obj.maps() {
            let name = m.name().to_string_lossy();
            if names.contains(&name.as_ref()) {
                let fd = m
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| LoadError::Open(e.into()))?;
                self.maps.insert(name.into_owned(), fd);
            }
        }
        Ok(())
    }
}

/// An object opened from its bytes, before load.
pub struct Opened {
    name: &'static str,
    open: OpenObject,
    /// `.rodata` variables: offset and size, by name.
    knobs: HashMap<String, (usize, usize)>,
}

/// Open `bpf/<name>.bpf.c`'s object (`bytes`, from [`object!`]).
pub fn open(
    name: &'static str,
    bytes: &'static [u8],
    btf: Option<&Path>,
) -> Result<Opened, LoadError> {
    take_log_tail(0);
    let mut builder = ObjectBuilder::default();
    builder.name(name).map_err(LoadError::Open)?;
    if let Some(btf) = btf {
        builder.btf_custom_path(btf).map_err(LoadError::Open)?;
    }
    let open = builder.open_memory(bytes).map_err(LoadError::Open)?;
    let mut knobs = HashMap::new();
    if let Ok(Some(btf)) = Btf::from_raw(name, bytes) {
        if let Some(sec) = btf.type_by_name::<DataSec<'_>>(".rodata") {
            for v in sec.iter() {
                if let Some(var) = btf.type_by_id::<Var<'_>>(v.ty) {
                    if let Some(n) = var.name() {
                        knobs.insert(
                            n.to_string_lossy().into_owned(),
                            (v.offset as usize, v.size),
                        );
                    }
                }
            }
        }
    }
    Ok(Opened { name, open, knobs })
}

impl Opened {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Set a `const volatile` knob; an error if the object has no such knob
    /// of that size.
    pub fn knob(&mut self, knob: &str, value: &[u8]) -> Result<(), LoadError> {
        let missing = || {
            LoadError::Config(format!(
                "{}.bpf.c has no knob {knob} of {} bytes",
                self.name,
                value.len()
            ))
        };
        let &(off, size) = self.knobs.get(knob).ok_or_else(missing)?;
        if size != value.len() {
            return Err(missing());
        }
        let mut rodata = self
            .open
            .maps_mut()
            .find(|m| m.name().to_string_lossy().ends_with(".rodata"))
            .ok_or_else(missing)?;
        let data = rodata.initial_value_mut().ok_or_else(missing)?;
        data.get_mut(off..off + size)
            .ok_or_else(missing)?
            .copy_from_slice(value);
        Ok(())
    }

    /// Set a knob the object may not have (those of the shared headers).
    pub fn knob_if_any(&mut self, knob: &str, value: &[u8]) -> Result<(), LoadError> {
        if self.knobs.contains_key(knob) {
            self.knob(knob, value)
        } else {
            Ok(())
        }
    }

    /// Point this object's maps that `shared` holds at those.
    pub fn share(&mut self, shared: &SharedMaps) -> Result<(), LoadError> {
        for mut m in self.open.maps_mut() {
            let name = m.name().to_string_lossy().into_owned();
            if let Some(fd) = shared.maps.get(&name) {
                m.reuse_fd(fd.as_fd()).map_err(LoadError::Open)?;
            }
        }
        Ok(())
    }

    /// Create only the buffer in use: kernels before 5.8 cannot create a ring buffer.
    pub fn transport(&mut self, perf: bool) -> Result<(), LoadError> {
        for mut m in self.open.maps_mut() {
            match m.name().to_string_lossy().as_ref() {
                "ks_events" => m.set_autocreate(!perf),
                "ks_perf" => m.set_autocreate(perf),
                _ => Ok(()),
            }
            .map_err(LoadError::Open)?;
        }
        Ok(())
    }

    /// Resize a map before load.
    pub fn max_entries(&mut self, map: &str, n: u32) -> Result<(), LoadError> {
        for mut m in self.open.maps_mut() {
            if m.name().to_string_lossy() == map {
                return m.set_max_entries(n).map_err(LoadError::Open);
            }
        }
        Err(LoadError::Config(format!(
            "{}.bpf.c has no map {map}",
            self.name
        )))
    }

    /// Load only the programs `want(name, section)` picks.
    pub fn programs(&mut self, want: impl Fn(&str, &str) -> bool) {
        for mut prog in self.open.progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            let section = prog.section().to_string_lossy().into_owned();
            prog.set_autoload(want(&name, &section));
        }
    }

    /// Load into the kernel: `what` names the programs in the error.
    pub fn load(self, what: &str) -> Result<Object, LoadError> {
        self.open.load().map_err(|source| LoadError::Load {
            what: what.to_string(),
            source,
            log: take_log_tail(30),
        })
    }
}

/// Attach every program the object loaded; each link is fd-based and owned by the caller.
pub fn attach_all(obj: &Object) -> Result<Vec<Link>, LoadError> {
    let mut links = Vec::new();
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
    Ok(links)
}

/// One of a loaded object's maps, by name.
pub fn map<'o>(obj: &'o Object, name: &str) -> Option<libbpf_rs::Map<'o>> {
    obj.maps().find(|m| m.name().to_string_lossy() == name)
}

/// Fill a map of keys (the --port filter's ks_ports).
pub fn fill_set(obj: &Object, name: &str, keys: &[Vec<u8>]) -> Result<(), LoadError> {
    let Some(m) = map(obj, name) else {
        return Ok(());
    };
    for k in keys {
        m.update(k, &[1], libbpf_rs::MapFlags::ANY)
            .map_err(|e| LoadError::Config(format!("{name}: {e}")))?;
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
    fn only_eperm_is_a_refused_hook_type() {
        use libbpf_rs::ErrorExt as _;
        let load = |errno| LoadError::Load {
            what: "x".into(),
            source: Err::<(), _>(libbpf_rs::Error::from_raw_os_error(errno))
                .context("loading program ks_accept_fexit")
                .unwrap_err(),
            log: Vec::new(),
        };
        assert!(load(libc::EPERM).permission_denied());
        // the verifier's refusals: this program, not the hook type
        assert!(!load(libc::EACCES).permission_denied());
        assert!(!load(libc::EINVAL).permission_denied());
        assert!(!LoadError::Config("x".into()).permission_denied());
    }

    #[test]
    fn log_tail_without_markers_is_the_last_lines() {
        let log = lines(&["a", "b", "c"]);
        assert_eq!(log_tail(&log, 2), lines(&["b", "c"]));
        assert!(log_tail(&[], 5).is_empty());
    }

    #[test]
    fn knobs_are_found_by_name() {
        let mut o = open("process", crate::object!("process"), None).unwrap();
        o.knob("ks_cfg_argv_max", &4096u32.to_ne_bytes()).unwrap();
        o.knob_if_any("ks_cfg_ports", &0u32.to_ne_bytes()).unwrap();
        assert!(o.knob("ks_cfg_argv_max", &[0u8; 8]).is_err(), "wrong size");
        assert!(o.knob("ks_cfg_nonesuch", &[0u8; 4]).is_err());
    }
}
