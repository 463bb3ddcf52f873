//! The enforcement sensor (bpf/enforce.bpf.c): the rules with an `action`,
//! resolved on this host (paths to inodes, cgroup paths to ids) into the
//! kernel's maps, and attached where they act: the cgroup v2 root
//! (connect4/6, sendmsg4/6, the DNS answers' ingress) and sched_process_exec.
//!
//! Fail-open by default: every program and map goes with ksight. With
//! `--enforce-persist` the links and the maps `ksight enforce status` reads
//! are pinned under [`PIN_DIR`] and outlive ksight (a crash, a restart); a
//! new persisted run attaches its own programs first, then removes the
//! earlier pins, so there is no gap and never two copies.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ksight_core::context::Dev;
use ksight_core::enforce::{fold_nets, Action, Cidr, Mode, Policy, PolicyRule, MAX_RULES};
use ksight_wire::{
    ks_enf_addr, ks_enf_answer, ks_enf_domain, ks_enf_file, ks_enf_flags, ks_enf_net4, ks_enf_net6,
    ks_enf_rule, ks_enf_stats,
};
use libbpf_rs::{Link, MapCore, MapFlags, Object};

use crate::object::{self, LoadError};
use crate::sensor::{self, LoadCx, Spec};

static SPEC: Spec = Spec {
    name: "enforce",
    order: 15,
    wanted_by: &["enforcement"],
    after: None,
    publishes: &[],
    flavoured: true,
    hooks: "cgroup connect4/6, sendmsg4/6, cgroup_skb ingress (DNS answers), sched_process_exec",
    feature: "enforcement",
    degraded: |why| format!("enforcement unavailable: {why}"),
};

/// Where `--enforce-persist` pins the links and maps.
pub const PIN_DIR: &str = "/sys/fs/bpf/ksight/enforce";

#[derive(Default)]
pub struct Sensor {
    obj: Option<Object>,
}

/// A wire type's bytes, as the kernel's maps hold it.
fn bytes<T: plain::Plain>(v: &T) -> Vec<u8> {
    // SAFETY: every ks_* type is plain data (generated from events.h, padding explicit).
    unsafe { plain::as_bytes(v) }.to_vec()
}

/// A wire type from a map's value; zeros where the value is short (it is
/// not: the map's value type is T).
fn from_bytes<T: plain::Plain + Default>(b: &[u8]) -> T {
    let mut v = T::default();
    let _ = plain::copy_from_bytes(&mut v, b);
    v
}

/// A file as the kernel names it: s_dev's encoding, inode.
fn kernel_id(path: &Path) -> std::io::Result<(u32, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((Dev::from_user(m.dev()).0, m.ino()))
}

fn file_key(dev: u32, ino: u64) -> Vec<u8> {
    bytes(&ks_enf_file {
        ino,
        dev,
        ..Default::default()
    })
}

fn addr_key(addr: std::net::IpAddr) -> Vec<u8> {
    let mut k = ks_enf_addr::default();
    match addr.to_canonical() {
        std::net::IpAddr::V4(a) => {
            k.addr[..4].copy_from_slice(&a.octets());
            k.family = 2;
        }
        std::net::IpAddr::V6(a) => {
            k.addr = a.octets();
            k.family = 10;
        }
    }
    bytes(&k)
}

fn lpm_key(c: &Cidr) -> Vec<u8> {
    let prefixlen = u32::from(c.bits);
    match c.addr {
        std::net::IpAddr::V4(a) => bytes(&ks_enf_net4 {
            prefixlen,
            addr: a.octets(),
        }),
        std::net::IpAddr::V6(a) => bytes(&ks_enf_net6 {
            prefixlen,
            addr: a.octets(),
        }),
    }
}

/// Per-rule masks of a kind of key, merged: several rules may name one port.
fn or_into(v: &mut Vec<(Vec<u8>, u64)>, key: Vec<u8>, bit: u64) {
    match v.iter_mut().find(|(k, _)| *k == key) {
        Some((_, m)) => *m |= bit,
        None => v.push((key, bit)),
    }
}

/// What the maps are to hold, and the knobs, for a policy.
#[derive(Default)]
struct Tables {
    rules: Vec<ks_enf_rule>,
    names: Vec<String>,
    nets4: Vec<(Vec<u8>, u64)>,
    nets6: Vec<(Vec<u8>, u64)>,
    ports: Vec<(Vec<u8>, u64)>,
    domains: Vec<(Vec<u8>, [u64; 2])>,
    exes: Vec<(Vec<u8>, u64)>,
    dirs: Vec<(Vec<u8>, u64)>,
    parents: Vec<(Vec<u8>, u64)>,
    ancestor_rules: u64,
    cgroups: Vec<(Vec<u8>, u64)>,
    exe_rules: u64,
    cgroup_rules: u64,
    kill_rules: u64,
    enforce_rules: u64,
    tcp_rules: u64,
    udp_rules: u64,
    /// What could not be resolved: said on stderr, the rule matches less.
    warnings: Vec<String>,
}

fn tables(policy: &Policy, cgroup_root: Option<&Path>) -> Tables {
    let mut t = Tables::default();
    for (i, r) in policy.rules.iter().enumerate().take(MAX_RULES) {
        let bit = 1u64 << i;
        let mut flags = 0;
        if policy.effective(r) == Mode::Enforce {
            flags |= ks_enf_flags::KS_ENF_ENFORCE.0;
            t.enforce_rules |= bit;
        }
        if r.protocols.tcp {
            flags |= ks_enf_flags::KS_ENF_TCP.0;
            t.tcp_rules |= bit;
        }
        if r.protocols.udp {
            flags |= ks_enf_flags::KS_ENF_UDP.0;
            t.udp_rules |= bit;
        }
        let mut rule = ks_enf_rule {
            action: match r.action {
                Action::DenyConnect => 1,
                Action::DenyDomain => 2,
                Action::Kill | Action::KillUserspace => 3,
            },
            ..Default::default()
        };
        if !r.exes.is_empty() || !r.dirs.is_empty() || !r.sha256.is_empty() {
            flags |= ks_enf_flags::KS_ENF_EXE.0;
            if r.action != Action::Kill {
                t.exe_rules |= bit;
            }
        }
        if !r.ancestor_exes.is_empty() {
            t.ancestor_rules |= bit;
        }
        for (paths, into) in [
            (&r.exes, &mut t.exes),
            (&r.dirs, &mut t.dirs),
            (&r.ancestor_exes, &mut t.parents),
        ] {
            for p in paths.iter() {
                match kernel_id(p) {
                    Ok((dev, ino)) => or_into(into, file_key(dev, ino), bit),
                    Err(e) => t.warnings.push(format!(
                        "rule {}: {}: {e} (not matched until ksight restarts)",
                        r.id,
                        p.display()
                    )),
                }
            }
        }
        if let Some(cg) = &r.cgroup {
            flags |= ks_enf_flags::KS_ENF_CGROUP.0;
            t.cgroup_rules |= bit;
            rule.cgroup_level = cg.split('/').filter(|s| !s.is_empty()).count() as u32;
            let dir = cgroup_root.map(|root| root.join(cg.trim_start_matches('/')));
            match dir.as_deref().map(kernel_id) {
                Some(Ok((_, ino))) => {
                    rule.cgroup_id = ino;
                    or_into(&mut t.cgroups, ino.to_ne_bytes().to_vec(), bit);
                }
                Some(Err(e)) => {
                    // in no map: matches no cgroup
                    t.warnings.push(format!(
                        "rule {}: cgroup {cg}: {e} (matches nothing until ksight restarts)",
                        r.id
                    ));
                }
                None => {
                    rule.cgroup_id = u64::MAX;
                    t.warnings
                        .push(format!("rule {}: no cgroup2 file system for {cg}", r.id));
                }
            }
        }
        match r.action {
            Action::Kill | Action::KillUserspace => t.kill_rules |= bit,
            Action::DenyConnect | Action::DenyDomain => {
                if r.ports.is_empty() {
                    or_into(&mut t.ports, 0u32.to_ne_bytes().to_vec(), bit);
                }
                for p in &r.ports {
                    or_into(&mut t.ports, u32::from(*p).to_ne_bytes().to_vec(), bit);
                }
            }
        }
        for d in &r.domains {
            let key = d.hash().to_ne_bytes().to_vec();
            let slot = usize::from(d.subtree);
            match t.domains.iter_mut().find(|(k, _)| *k == key) {
                Some((_, m)) => m[slot] |= bit,
                None => {
                    let mut m = [0; 2];
                    m[slot] = bit;
                    t.domains.push((key, m));
                }
            }
        }
        rule.flags = flags;
        t.rules.push(rule);
        t.names.push(r.id.to_string());
    }
    for (c, mask) in fold_nets(&policy.rules) {
        let into = if c.addr.is_ipv4() {
            &mut t.nets4
        } else {
            &mut t.nets6
        };
        into.push((lpm_key(&c), mask));
    }
    t
}

fn fill(obj: &Object, map: &str, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), LoadError> {
    let m = object::map(obj, map)
        .ok_or_else(|| LoadError::Config(format!("enforce.bpf.c has no map {map}")))?;
    for (k, v) in entries {
        m.update(k, v, MapFlags::ANY)
            .map_err(|e| LoadError::Config(format!("{map}: {e}")))?;
    }
    Ok(())
}

fn masks(v: &[(Vec<u8>, u64)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    v.iter()
        .map(|(k, m)| (k.clone(), m.to_ne_bytes().to_vec()))
        .collect()
}

impl sensor::Sensor for Sensor {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn wanted(&self, cfg: &sensor::Config) -> bool {
        cfg.policy.as_ref().is_some_and(|p| !p.is_empty())
    }

    fn load(&mut self, cx: &mut LoadCx<'_>) -> Result<(), LoadError> {
        let cfg = cx.cfg;
        let empty = Policy::default();
        let policy = cfg.policy.as_deref().unwrap_or(&empty);
        let t = tables(policy, cfg.cgroup_root.as_deref());
        for w in &t.warnings {
            eprintln!("ksight: enforcement: {w}");
        }
        let mut o = cx.open("enforce", crate::object!("enforce"))?;
        o.knob("ks_cfg_self", &std::process::id().to_ne_bytes())?;
        o.knob("ks_cfg_exe_rules", &t.exe_rules.to_ne_bytes())?;
        o.knob("ks_cfg_cgroup_rules", &t.cgroup_rules.to_ne_bytes())?;
        o.knob("ks_cfg_kill_rules", &t.kill_rules.to_ne_bytes())?;
        o.knob("ks_cfg_enforce_rules", &t.enforce_rules.to_ne_bytes())?;
        o.knob("ks_cfg_ancestor_rules", &t.ancestor_rules.to_ne_bytes())?;
        o.knob("ks_cfg_tcp_rules", &t.tcp_rules.to_ne_bytes())?;
        o.knob("ks_cfg_udp_rules", &t.udp_rules.to_ne_bytes())?;
        let port = cfg.dns_ports.first().copied().unwrap_or(53);
        o.knob("ks_cfg_answer_port", &port.to_ne_bytes())?;
        o.max_entries("ks_enf_answers", cfg.enforce_answers_max.max(1))?;
        // without a policy (the doctor) every program, to see that it loads
        let all = cfg.policy.is_none();
        let deny = all || policy.has(Action::DenyConnect) || policy.has(Action::DenyDomain);
        let domains = all || policy.has(Action::DenyDomain);
        let kill = all || policy.has(Action::Kill);
        let tp = match cx.mode {
            sensor::AttachMode::RawTp => "raw_tp/",
            _ => "tp_btf/",
        };
        o.programs(|_, section| match section {
            s if s.starts_with("cgroup/") => deny,
            s if s.starts_with("cgroup_skb/") => domains,
            s => kill && s.starts_with(tp),
        });
        let obj = o.load(&format!("{} enforcement", cx.mode))?;
        let rules: Vec<(Vec<u8>, Vec<u8>)> = t
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| ((i as u32).to_ne_bytes().to_vec(), bytes(r)))
            .collect();
        fill(&obj, "ks_enf_rules", &rules)?;
        let names: Vec<(Vec<u8>, Vec<u8>)> = t
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut v = vec![0u8; 64];
                let b = &n.as_bytes()[..n.len().min(63)];
                v[..b.len()].copy_from_slice(b);
                ((i as u32).to_ne_bytes().to_vec(), v)
            })
            .collect();
        fill(&obj, "ks_enf_names", &names)?;
        fill(&obj, "ks_enf_nets4", &masks(&t.nets4))?;
        fill(&obj, "ks_enf_nets6", &masks(&t.nets6))?;
        fill(&obj, "ks_enf_ports", &masks(&t.ports))?;
        fill(&obj, "ks_enf_exes", &masks(&t.exes))?;
        fill(&obj, "ks_enf_dirs", &masks(&t.dirs))?;
        fill(&obj, "ks_enf_cgroups", &masks(&t.cgroups))?;
        fill(&obj, "ks_enf_parents", &masks(&t.parents))?;
        let domains: Vec<(Vec<u8>, Vec<u8>)> = t
            .domains
            .iter()
            .map(|(k, [exact, subtree])| {
                let v = ks_enf_domain {
                    exact: *exact,
                    subtree: *subtree,
                };
                (k.clone(), bytes(&v))
            })
            .collect();
        fill(&obj, "ks_enf_domains", &domains)?;
        let allow: Vec<(Vec<u8>, Vec<u8>)> = cfg
            .enforce_allow
            .iter()
            .map(|a| (addr_key(*a), vec![1, 0, 0, 0]))
            .collect();
        fill(&obj, "ks_enf_allow", &allow)?;
        self.obj = Some(obj);
        Ok(())
    }

    fn attach(&mut self, cx: &LoadCx<'_>) -> Result<Vec<Link>, LoadError> {
        let obj = self.obj.as_ref().expect("loaded");
        let root = cx.cfg.cgroup_root.clone().ok_or_else(|| {
            LoadError::Config(
                "enforcement of connections needs cgroup v2, and no cgroup2 file system is mounted"
                    .into(),
            )
        })?;
        let mut links = Vec::new();
        for prog in obj.progs_mut() {
            if !prog.autoload() {
                continue;
            }
            let section = prog.section().to_string_lossy().into_owned();
            let name = prog.name().to_string_lossy().into_owned();
            let link = if section.starts_with("cgroup") {
                let dir = File::open(&root).map_err(|source| LoadError::Cgroup {
                    path: root.clone(),
                    source,
                })?;
                prog.attach_cgroup(dir.as_raw_fd())
                    .map_err(|source| LoadError::Attach {
                        prog: name.clone(),
                        target: format!("cgroup {}", root.display()),
                        source,
                    })?
            } else {
                prog.attach().map_err(|source| LoadError::Attach {
                    prog: name.clone(),
                    target: section.clone(),
                    source,
                })?
            };
            links.push((name, link));
        }
        if cx.cfg.enforce_persist {
            persist(obj, &mut links)?;
        }
        Ok(links.into_iter().map(|(_, l)| l).collect())
    }

    fn object(&self) -> Option<&Object> {
        self.obj.as_ref()
    }
}

/// The maps `ksight enforce status` reads, pinned beside the links.
const STATUS_MAPS: &[&str] = &["ks_enf_names", "ks_enf_rules", "ks_enf_stats"];

/// Replace what an earlier persisted run pinned with this run's links and
/// maps: the new links are attached already, so enforcement has no gap.
fn persist(obj: &Object, links: &mut [(String, Link)]) -> Result<(), LoadError> {
    let cfg = |e: String| LoadError::Config(format!("--enforce-persist: {e}"));
    mount_bpffs().map_err(|e| cfg(format!("bpffs at /sys/fs/bpf: {e}")))?;
    clear_pins().map_err(|e| cfg(format!("removing the earlier pins in {PIN_DIR}: {e}")))?;
    std::fs::create_dir_all(PIN_DIR).map_err(|e| cfg(format!("{PIN_DIR}: {e}")))?;
    for (name, link) in links.iter_mut() {
        link.pin(Path::new(PIN_DIR).join(format!("link_{name}")))
            .map_err(|e| cfg(format!("pinning {name}: {e}")))?;
    }
    for name in STATUS_MAPS {
        if let Some(m) = object::map(obj, name) {
            let mut h =
                libbpf_rs::MapHandle::try_from(&m).map_err(|e| cfg(format!("{name}: {e}")))?;
            h.pin(Path::new(PIN_DIR).join(name))
                .map_err(|e| cfg(format!("pinning {name}: {e}")))?;
        }
    }
    Ok(())
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn mount_bpffs() -> std::io::Result<()> {
    let path = CString::new("/sys/fs/bpf").expect("no NUL");
    // SAFETY: statfs on a NUL-terminated path into a zeroed struct it fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } == 0 && st.f_type == BPF_FS_MAGIC {
        return Ok(());
    }
    let fs = CString::new("bpf").expect("no NUL");
    // SAFETY: mount(2) with NUL-terminated strings and no data.
    let rc = unsafe { libc::mount(fs.as_ptr(), path.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Unpin everything under [`PIN_DIR`]: a pinned link whose last reference
/// was its pin detaches. Nothing pinned is not an error.
pub fn clear_pins() -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(PIN_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut n = 0;
    for e in entries {
        std::fs::remove_file(e?.path())?;
        n += 1;
    }
    std::fs::remove_dir(PIN_DIR)?;
    let _ = std::fs::remove_dir(Path::new(PIN_DIR).parent().expect("a parent"));
    Ok(n)
}

/// What a persisted enforcement holds: its links and each rule's counts.
#[derive(Debug, Default)]
pub struct PinnedStatus {
    pub links: Vec<String>,
    /// (rule id, action, enforcing, hits)
    pub rules: Vec<(String, String, bool, u64)>,
    pub answers: u64,
    pub answers_full: u64,
}

/// Read what [`PIN_DIR`] holds; `None` when nothing is pinned.
pub fn pinned_status() -> Result<Option<PinnedStatus>, String> {
    let dir = Path::new(PIN_DIR);
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{PIN_DIR}: {e}")),
    };
    let mut st = PinnedStatus::default();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(l) = name.strip_prefix("link_") {
            st.links.push(l.to_string());
        }
    }
    st.links.sort();
    let open = |n: &str| -> Result<libbpf_rs::MapHandle, String> {
        libbpf_rs::MapHandle::from_pinned_path(dir.join(n)).map_err(|e| format!("{n}: {e}"))
    };
    let (names, rules, stats) = (
        open("ks_enf_names")?,
        open("ks_enf_rules")?,
        open("ks_enf_stats")?,
    );
    let per_cpu = stats
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| format!("ks_enf_stats: {e}"))?
        .unwrap_or_default();
    let (hits, answers, answers_full) = sum_stats(&per_cpu);
    (st.answers, st.answers_full) = (answers, answers_full);
    for i in 0..MAX_RULES as u32 {
        let key = i.to_ne_bytes();
        let Some(n) = names.lookup(&key, MapFlags::ANY).ok().flatten() else {
            continue;
        };
        let id: String = String::from_utf8_lossy(&n)
            .trim_end_matches('\0')
            .to_string();
        if id.is_empty() {
            continue;
        }
        let r: ks_enf_rule = rules
            .lookup(&key, MapFlags::ANY)
            .ok()
            .flatten()
            .map_or_else(Default::default, |v| from_bytes(&v));
        let action = match r.action {
            1 => "deny_connect",
            2 => "deny_domain",
            3 => "kill",
            _ => "?",
        };
        let hits = hits[i as usize];
        st.rules.push((
            id,
            action.to_string(),
            r.flags & ks_enf_flags::KS_ENF_ENFORCE.0 != 0,
            hits,
        ));
    }
    Ok(Some(st))
}

/// The per-CPU counters of a running enforcement: hits by rule, then the
/// answers added and those the full map refused.
pub fn counters(obj: &Object) -> Option<(Vec<u64>, u64, u64)> {
    let m = object::map(obj, "ks_enf_stats")?;
    let per_cpu = m
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .ok()
        .flatten()?;
    Some(sum_stats(&per_cpu))
}

/// `struct ks_enf_stats` summed over CPUs: hits by rule bit, answers added,
/// answers refused.
fn sum_stats(per_cpu: &[Vec<u8>]) -> (Vec<u64>, u64, u64) {
    let mut hits = vec![0u64; MAX_RULES];
    let (mut answers, mut full) = (0, 0);
    for v in per_cpu {
        let st: ks_enf_stats = from_bytes(v);
        hits.iter_mut().zip(st.hits).for_each(|(h, n)| *h += n);
        answers += st.answers;
        full += st.answers_full;
    }
    (hits, answers, full)
}

/// Add an executable to the rules of `mask` (a file ksight hashed to a
/// SHA-256 a kill rule names): its next exec is decided in the kernel.
pub fn add_exe(obj: &Object, dev: u32, ino: u64, mask: u64) -> Result<(), String> {
    let m = object::map(obj, "ks_enf_exes").ok_or("no ks_enf_exes map")?;
    let key = file_key(dev, ino);
    let old = m
        .lookup(&key, MapFlags::ANY)
        .ok()
        .flatten()
        .map_or(0, |v| from_bytes::<u64>(&v));
    m.update(&key, &(old | mask).to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| format!("ks_enf_exes: {e}"))
}

/// Delete the answers whose expiry (TTL + grace, CLOCK_MONOTONIC ns) is
/// before `now_ns`: the kernel ignores them already; this frees their slots.
pub fn expire_answers(obj: &Object, now_ns: u64) -> usize {
    let Some(m) = object::map(obj, "ks_enf_answers") else {
        return 0;
    };
    let expired: Vec<Vec<u8>> = m
        .keys()
        .filter(|k| {
            m.lookup(k, MapFlags::ANY)
                .ok()
                .flatten()
                .is_some_and(|v| from_bytes::<ks_enf_answer>(&v).expires_ns < now_ns)
        })
        .collect();
    expired.iter().filter(|k| m.delete(k).is_ok()).count()
}

/// Rules with a check the kernel cannot apply: said before anything loads.
pub fn check(policy: &Policy) -> Result<(), String> {
    if policy.rules.len() > MAX_RULES {
        return Err(format!(
            "{} rules with an action; the kernel applies at most {MAX_RULES}",
            policy.rules.len()
        ));
    }
    for r in &policy.rules {
        PolicyRule::check(r).map_err(|e| format!("rule {}: {e}", r.id))?;
    }
    Ok(())
}
