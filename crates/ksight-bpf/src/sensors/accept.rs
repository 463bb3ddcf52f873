//! The accept() hook (bpf/accept.bpf.c): an accepted connection names the
//! thread that accepted it. Tried in order of preference, each flavour loaded
//! *and attached* to know whether this kernel takes it (a kretprobe loads
//! anywhere; fexit is refused at attach under lockdown). It therefore attaches
//! while loading, before the TCP state program attaches, so accept records
//! have one source from the first connection on.

use libbpf_rs::{Link, MapCore, MapFlags, Object};

use crate::object::{attach_all, map, LoadError};
use crate::sensor::{self, AcceptHook, LoadCx, Spec};

static SPEC: Spec = Spec {
    name: "accept",
    order: 20,
    wanted_by: &["accept", "tcp_close"],
    after: Some("net"),
    publishes: &[],
    flavoured: true,
    hooks: "inet_csk_accept: fexit, else a kretprobe",
    feature: "accept attribution",
    degraded: |why| {
        format!("accepted connections are attributed to their listener's owner ({why})")
    },
};

/// The flavours to try, best first: (name, program, label). The older fexit
/// signature goes first: on a 6.10+ kernel its extra arguments fail
/// verification, while the newer one would load on an older kernel and read
/// `int *err` as the returned socket.
fn flavours(hook: AcceptHook) -> &'static [(&'static str, &'static str, &'static str)] {
    const FEXIT: [(&str, &str, &str); 2] = [
        (
            "fexit",
            "ks_accept_fexit_old",
            "fexit (signature before 6.10)",
        ),
        ("fexit", "ks_accept_fexit", "fexit (6.10+ signature)"),
    ];
    const ALL: [(&str, &str, &str); 3] = [
        FEXIT[0],
        FEXIT[1],
        ("kretprobe", "ks_accept_kretprobe", "kretprobe"),
    ];
    match hook {
        AcceptHook::Auto => &ALL,
        AcceptHook::Fexit => &FEXIT,
        AcceptHook::Kretprobe => &ALL[2..],
        AcceptHook::Off => &[],
    }
}

#[derive(Default)]
pub struct Sensor {
    obj: Option<Object>,
    /// Attached while loading; handed over at attach.
    link: Option<Link>,
    flavour: Option<&'static str>,
}

impl sensor::Sensor for Sensor {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn wanted(&self, cfg: &sensor::Config) -> bool {
        cfg.accept != AcceptHook::Off && SPEC.wanted_by.iter().any(|k| cfg.wants(k))
    }

    fn load(&mut self, cx: &mut LoadCx<'_>) -> Result<(), LoadError> {
        let mut reasons = Vec::new();
        // each attempt parses the kernel's BTF and runs the verifier (~20-30
        // ms here): not tried are the flavours known to fail
        // tried even when another hook's fentry was refused: its own reason
        // is what the doctor shows for it
        let mut fexit_refused = false;
        for &(flavour, program, label) in flavours(cx.cfg.accept) {
            if flavour == "fexit" && fexit_refused {
                reasons.push(format!(
                    "{label}: not tried (the kernel refuses fexit programs, as above)"
                ));
                continue;
            }
            if flavour == "kretprobe" && !sensor::kprobes_exist() {
                reasons.push(format!(
                    "{label}: not tried: kretprobe/inet_csk_accept needs kprobes, which this \
                     kernel does not have (no kprobe PMU in /sys/bus/event_source/devices, \
                     no kprobe_events in tracefs)"
                ));
                continue;
            }
            let mut attempt = || -> Result<(Object, Link), LoadError> {
                let mut o = cx.open("accept", crate::object!("accept"))?;
                o.programs(|name, _| name == program);
                let obj = o.load(&format!("accept hook ({flavour})"))?;
                let link = attach_all(&obj)?.pop().expect("one program");
                Ok((obj, link))
            };
            match attempt() {
                Ok((obj, link)) => {
                    // from now on accept records are this object's to send
                    let hooked = map(&obj, "ks_accept_hooked").expect("tcp.bpf.h defines it");
                    hooked
                        .update(&0u32.to_ne_bytes(), &1u32.to_ne_bytes(), MapFlags::ANY)
                        .map_err(LoadError::Open)?;
                    self.obj = Some(obj);
                    self.link = Some(link);
                    self.flavour = Some(flavour);
                    return Ok(());
                }
                Err(e) => {
                    // a permission refusal is about fexit, not this signature
                    if flavour == "fexit" && e.permission_denied() {
                        fexit_refused = true;
                        sensor::TRAMPOLINES_REFUSED
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    reasons.push(format!("{label}: {}", e.summary()));
                }
            }
        }
        Err(LoadError::NoAcceptHook(reasons.join("; ")))
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
