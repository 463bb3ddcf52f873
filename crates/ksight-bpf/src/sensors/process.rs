//! The process sensor (bpf/process.bpf.c): fork, exec, exit. Always loaded,
//! first: its object owns the ring (or perf) buffer, the per-CPU counters and
//! the --cgroup filter, which every later object reuses.

use std::fs::File;
use std::os::fd::AsRawFd;

use libbpf_rs::{Link, MapCore, MapFlags, Object};

use crate::object::{attach_all, map, LoadError};
use crate::sensor::{self, LoadCx, Spec};

static SPEC: Spec = Spec {
    name: "process",
    order: 0,
    wanted_by: &[],
    after: None,
    publishes: &[],
    flavoured: true,
    hooks: "sched_process_fork, sched_process_exec, sched_process_exit",
    feature: "process events",
    degraded: |why| format!("process events unavailable: {why}"),
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
        let cfg = cx.cfg;
        let mut o = cx.open("process", crate::object!("process"))?;
        o.knob("ks_cfg_argv_max", &cfg.argv_max.to_ne_bytes())?;
        o.knob("ks_cfg_threads", &u32::from(cfg.threads).to_ne_bytes())?;
        let cpus = libbpf_rs::num_possible_cpus().map_err(LoadError::Open)? as u32;
        o.max_entries("ks_scratch", cpus.max(1))?;
        cx.tracepoints(&mut o);
        let obj = o.load(&cx.mode.to_string())?;
        // the in-kernel cgroup filter, filled before any program runs
        let cgroups = map(&obj, "ks_cgroups").expect("common.bpf.h defines ks_cgroups");
        for (i, path) in cfg.cgroups.iter().enumerate() {
            let dir = File::open(path).map_err(|source| LoadError::Cgroup {
                path: path.clone(),
                source,
            })?;
            let key = (i as u32).to_ne_bytes();
            let fd = dir.as_raw_fd().to_ne_bytes();
            cgroups
                .update(&key, &fd, MapFlags::ANY)
                .map_err(|e| LoadError::Cgroup {
                    path: path.clone(),
                    source: std::io::Error::other(e),
                })?;
        }
        self.obj = Some(obj);
        Ok(())
    }

    fn attach(&mut self, _cx: &LoadCx<'_>) -> Result<Vec<Link>, LoadError> {
        attach_all(self.obj.as_ref().expect("loaded"))
    }

    fn object(&self) -> Option<&Object> {
        self.obj.as_ref()
    }
}
