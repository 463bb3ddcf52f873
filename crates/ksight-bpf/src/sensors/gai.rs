//! The getaddrinfo sensor (bpf/gai.bpf.c): uprobes on the host's libc.

use libbpf_rs::{Link, Object};

use crate::object::LoadError;
use crate::sensor::{self, LoadCx, Spec};

static SPEC: Spec = Spec {
    name: "gai",
    order: 40,
    wanted_by: &["getaddrinfo"],
    after: None,
    publishes: &[],
    flavoured: false,
    hooks: "uprobes on getaddrinfo in the host's libc",
    feature: "getaddrinfo",
    degraded: |why| format!("getaddrinfo events unavailable: {why}"),
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
        let o = cx.open("gai", crate::object!("gai"))?;
        self.obj = Some(o.load("getaddrinfo (uprobe)")?);
        Ok(())
    }

    /// The entry and return probes, on getaddrinfo in the host's libc, for every process.
    fn attach(&mut self, _cx: &LoadCx<'_>) -> Result<Vec<Link>, LoadError> {
        let obj = self.obj.as_ref().expect("loaded");
        let libc = crate::sys::libc_path().ok_or_else(|| {
            LoadError::Config("no libc found to attach getaddrinfo probes to".into())
        })?;
        let mut links = Vec::new();
        for prog in obj.progs_mut() {
            let retprobe = prog.name() == "ks_gai_exit";
            let opts = libbpf_rs::UprobeOpts {
                func_name: Some("getaddrinfo".into()),
                retprobe,
                ..Default::default()
            };
            let link = prog
                .attach_uprobe_with_opts(-1, &libc, 0, opts)
                .map_err(|source| LoadError::Attach {
                    prog: prog.name().to_string_lossy().into_owned(),
                    target: format!("getaddrinfo in {}", libc.display()),
                    source,
                })?;
            links.push(link);
        }
        Ok(links)
    }

    fn object(&self) -> Option<&Object> {
        self.obj.as_ref()
    }
}
