//! The credentials hook (bpf/creds.bpf.c): each commit_creds outside an exec,
//! as it happens. Optional: fentry where the kernel allows it, else a kprobe;
//! else the `cred_change` kind compares what other hooks record (late).

use libbpf_rs::{Link, Object};

use crate::object::LoadError;
use crate::sensor::{self, first_attaching, LoadCx, Spec};

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
            first_attaching(cx, "creds", crate::object!("creds"), "ks_creds")?;
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
