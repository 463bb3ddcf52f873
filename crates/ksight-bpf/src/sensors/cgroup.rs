//! The cgroup sensor (bpf/cgroup.bpf.c): cgroup v2 directories as they are
//! made, so that events in a cgroup removed soon after are still named.

use libbpf_rs::{Link, Object};

use crate::object::{attach_all, LoadError};
use crate::sensor::{self, LoadCx, Spec};

static SPEC: Spec = Spec {
    name: "cgroup",
    order: 5,
    wanted_by: &["cgroup"],
    after: None,
    publishes: &[],
    flavoured: true,
    hooks: "cgroup_mkdir",
    feature: "cgroup names",
    degraded: |why| {
        format!("cgroups removed before ksight reads their events stay unnamed ({why})")
    },
};

#[derive(Default)]
pub struct Sensor {
    obj: Option<Object>,
}

impl sensor::Sensor for Sensor {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    /// Always: every event's cgroup path may need it, whatever kinds are asked.
    fn wanted(&self, _cfg: &sensor::Config) -> bool {
        true
    }

    fn load(&mut self, cx: &mut LoadCx<'_>) -> Result<(), LoadError> {
        let mut o = cx.open("cgroup", crate::object!("cgroup"))?;
        cx.tracepoints(&mut o);
        self.obj = Some(o.load(&format!("{} cgroup", cx.mode))?);
        Ok(())
    }

    fn attach(&mut self, _cx: &LoadCx<'_>) -> Result<Vec<Link>, LoadError> {
        attach_all(self.obj.as_ref().expect("loaded"))
    }

    fn object(&self) -> Option<&Object> {
        self.obj.as_ref()
    }
}
