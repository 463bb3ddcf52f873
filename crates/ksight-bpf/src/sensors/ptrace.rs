//! The ptrace hook (bpf/ptrace.bpf.c): a process gains access to another's
//! memory (ptrace attach, process_vm_writev, /proc/PID/mem). Optional: fentry
//! where the kernel allows it, else a kprobe, else a documented gap.

use libbpf_rs::{Link, Object};

use crate::object::LoadError;
use crate::sensor::{self, first_attaching, LoadCx, Spec};

static SPEC: Spec = Spec {
    name: "ptrace",
    order: 60,
    wanted_by: &["ptrace"],
    after: None,
    publishes: &[],
    flavoured: false,
    hooks: "security_ptrace_access_check: fentry, else a kprobe",
    feature: "ptrace and memory access",
    degraded: |why| format!("ptrace events unavailable ({why})"),
};

#[derive(Default)]
pub struct Sensor {
    obj: Option<Object>,
    link: Option<Link>,
    flavour: Option<&'static str>,
}

impl sensor::Sensor for Sensor {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn load(&mut self, cx: &mut LoadCx<'_>) -> Result<(), LoadError> {
        let (obj, link, flavour) =
            first_attaching(cx, "ptrace", crate::object!("ptrace"), "ks_ptrace")?;
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
