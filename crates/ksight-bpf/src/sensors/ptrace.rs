//! The ptrace hook (bpf/ptrace.bpf.c): a process gains access to another's
//! memory (ptrace attach, process_vm_writev, /proc/PID/mem). Optional: fentry
//! where the kernel allows it, else a kprobe, else a documented gap. Each
//! flavour is loaded *and attached* to know whether this kernel takes it
//! (fentry is refused at load or attach under lockdown).

use libbpf_rs::{Link, Object};

use crate::object::{attach_all, LoadError};
use crate::sensor::{self, LoadCx, Spec};
use crate::sensors::accept::kprobes_exist;

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

/// (flavour, program), best first.
const FLAVOURS: [(&str, &str); 2] = [
    ("fentry", "ks_ptrace_fentry"),
    ("kprobe", "ks_ptrace_kprobe"),
];

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
        let mut reasons = Vec::new();
        for (flavour, program) in FLAVOURS {
            if flavour == "kprobe" && !kprobes_exist() {
                reasons.push(
                    "kprobe: not tried: this kernel has no kprobes (CONFIG_KPROBES)".to_string(),
                );
                continue;
            }
            let mut attempt = || -> Result<(Object, Link), LoadError> {
                let mut o = cx.open("ptrace", crate::object!("ptrace"))?;
                o.programs(|name, _| name == program);
                let obj = o.load(&format!("ptrace hook ({flavour})"))?;
                let link = attach_all(&obj)?.pop().expect("one program");
                Ok((obj, link))
            };
            match attempt() {
                Ok((obj, link)) => {
                    self.obj = Some(obj);
                    self.link = Some(link);
                    self.flavour = Some(flavour);
                    return Ok(());
                }
                Err(e) => reasons.push(format!("{flavour}: {}", e.summary())),
            }
        }
        Err(LoadError::NoHook(reasons.join("; ")))
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
