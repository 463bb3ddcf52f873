//! The ptrace hook (bpf/ptrace.bpf.c): a process gains access to another's
//! memory (ptrace attach, process_vm_writev, /proc/PID/mem). Optional: fentry
//! where the kernel allows it, else a kprobe, else a documented gap.

use crate::sensor::{HookDef, HookSensor, Spec};

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

pub struct Ptrace;

impl HookDef for Ptrace {
    const SPEC: &'static Spec = &SPEC;
    const NAME: &'static str = "ptrace";
    const OBJECT: &'static [u8] = crate::object!("ptrace");
    const PREFIX: &'static str = "ks_ptrace";
}

pub type Sensor = HookSensor<Ptrace>;
