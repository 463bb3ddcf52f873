//! The UDP sensor (bpf/udp.bpf.c): per-flow counters and DNS capture, by
//! cgroup programs on the cgroup v2 root (or on the --cgroup subtrees).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use libbpf_rs::{Link, Object};

use crate::object::LoadError;
use crate::sensor::{self, LoadCx, Spec};

static SPEC: Spec = Spec {
    name: "udp",
    order: 30,
    wanted_by: &["udp", "dns"],
    after: None,
    publishes: &[],
    flavoured: false,
    hooks: "cgroup_skb ingress/egress, cgroup sock_create/sock_release",
    feature: "UDP flows",
    degraded: |why| format!("UDP flows unavailable: {why}"),
};

#[derive(Default)]
pub struct Sensor {
    obj: Option<Object>,
}

impl sensor::Sensor for Sensor {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn load(&mut self, cx: &mut LoadCx<'_>) -> Result<(), LoadError> {
        let mut o = cx.open("udp", crate::object!("udp"))?;
        let mut ports = [0u16; 4];
        if cx.cfg.wants("dns") {
            for (slot, port) in ports.iter_mut().zip(&cx.cfg.dns_ports) {
                *slot = *port;
            }
        }
        let bytes: Vec<u8> = ports.iter().flat_map(|p| p.to_ne_bytes()).collect();
        o.knob("ks_cfg_dns_ports", &bytes)?;
        let obj = o.load("UDP (cgroup)")?;
        cx.fill_ports(&obj)?;
        self.obj = Some(obj);
        Ok(())
    }

    /// To the filtered cgroups, or to the cgroup v2 root.
    fn attach(&mut self, cx: &LoadCx<'_>) -> Result<Vec<Link>, LoadError> {
        let obj = self.obj.as_ref().expect("loaded");
        let cfg = cx.cfg;
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
        let mut links = Vec::new();
        for path in &targets {
            let dir = File::open(path).map_err(|source| LoadError::Cgroup {
                path: path.clone(),
                source,
            })?;
            for prog in obj.progs_mut() {
                let link =
                    prog.attach_cgroup(dir.as_raw_fd())
                        .map_err(|source| LoadError::Attach {
                            prog: prog.name().to_string_lossy().into_owned(),
                            target: format!("cgroup {}", path.display()),
                            source,
                        })?;
                links.push(link);
            }
        }
        Ok(links)
    }

    fn object(&self) -> Option<&Object> {
        self.obj.as_ref()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
