//! The credentials hook (bpf/creds.bpf.c): each commit_creds outside an exec,
//! as it happens. Optional: fentry where the kernel allows it, else a kprobe;
//! else the `cred_change` kind compares what other hooks record (late).

use crate::sensor::{HookDef, HookSensor, Spec};

static SPEC: Spec = Spec {
    name: "creds",
    order: 65,
    wanted_by: &["cred_change"],
    after: None,
    publishes: &[],
    flavoured: false,
    hooks: "commit_creds: fentry, else a kprobe",
    feature: "credential changes",
    degraded: |why| {
        format!(
            "credential changes are found by comparing what other hooks record, late \
             (no commit_creds hook: {why})"
        )
    },
};

pub struct Creds;

impl HookDef for Creds {
    const SPEC: &'static Spec = &SPEC;
    const NAME: &'static str = "creds";
    const OBJECT: &'static [u8] = crate::object!("creds");
    const PREFIX: &'static str = "ks_creds";
}

pub type Sensor = HookSensor<Creds>;
