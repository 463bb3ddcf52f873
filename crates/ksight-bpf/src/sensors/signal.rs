//! The signal sensor (bpf/signal.bpf.c): signals one process sends another.

use libbpf_rs::{Link, Object};

use crate::object::{attach_all, LoadError};
use crate::sensor::{self, LoadCx, Spec};

static SPEC: Spec = Spec {
    name: "signal",
    order: 50,
    wanted_by: &["signal"],
    after: None,
    publishes: &[],
    flavoured: true,
    hooks: "signal_generate",
    feature: "signals",
    degraded: |why| format!("signal events unavailable: {why}"),
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
        let mut o = cx.open("signal", crate::object!("signal"))?;
        cx.tracepoints(&mut o);
        self.obj = Some(o.load(&format!("{} signal", cx.mode))?);
        Ok(())
    }

    fn attach(&mut self, _cx: &LoadCx<'_>) -> Result<Vec<Link>, LoadError> {
        attach_all(self.obj.as_ref().expect("loaded"))
    }

    fn object(&self) -> Option<&Object> {
        self.obj.as_ref()
    }
}
