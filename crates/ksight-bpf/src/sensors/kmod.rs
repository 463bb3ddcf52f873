//! The kernel module sensor (bpf/kmod.bpf.c): modules loaded, by whom.

use libbpf_rs::{Link, Object};

use crate::object::{attach_all, LoadError};
use crate::sensor::{self, Config, LoadCx, Spec};

static SPEC: Spec = Spec {
    name: "kmod",
    order: 55,
    wanted_by: &["module_load"],
    after: None,
    publishes: &[],
    flavoured: true,
    hooks: "module_load",
    feature: "kernel module loads",
    degraded: |why| format!("module_load events unavailable: {why}"),
};

#[derive(Default)]
pub struct Sensor {
    obj: Option<Object>,
}

/// A kernel built without module support has no module_load tracepoint and
/// nothing to watch.
pub fn kernel_has_modules() -> bool {
    std::path::Path::new("/proc/modules").exists()
}

impl sensor::Sensor for Sensor {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn wanted(&self, cfg: &Config) -> bool {
        cfg.wants("module_load") && kernel_has_modules()
    }

    fn load(&mut self, cx: &mut LoadCx<'_>) -> Result<(), LoadError> {
        let mut o = cx.open("kmod", crate::object!("kmod"))?;
        cx.tracepoints(&mut o);
        self.obj = Some(o.load(&format!("{} kmod", cx.mode))?);
        Ok(())
    }

    fn attach(&mut self, _cx: &LoadCx<'_>) -> Result<Vec<Link>, LoadError> {
        attach_all(self.obj.as_ref().expect("loaded"))
    }

    fn object(&self) -> Option<&Object> {
        self.obj.as_ref()
    }
}
