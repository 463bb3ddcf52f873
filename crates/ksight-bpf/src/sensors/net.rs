//! The TCP sensor (bpf/net.bpf.c): connect, accept, listen, tcp_close and
//! tcp_state, from TCP state changes. Its connection and listener tables are
//! published for the accept() hook.

use libbpf_rs::{Link, Object};

use crate::object::{attach_all, LoadError};
use crate::sensor::{self, LoadCx, Spec};

static SPEC: Spec = Spec {
    name: "net",
    order: 10,
    // DNS over TCP and UDP flows name sockets this object follows
    wanted_by: &[
        "connect",
        "accept",
        "listen",
        "tcp_close",
        "tcp_state",
        "udp",
        "dns",
        "getaddrinfo",
    ],
    after: None,
    publishes: &[
        "ks_tcp_conns",
        "ks_listeners",
        "ks_ports",
        "ks_accept_hooked",
    ],
    flavoured: true,
    hooks: "inet_sock_set_state",
    feature: "TCP events",
    degraded: |why| format!("TCP events unavailable: {why}"),
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
        let mut o = cx.open("net", crate::object!("net"))?;
        let states = cx.cfg.wants("tcp_state");
        o.knob("ks_cfg_tcp_states", &u32::from(states).to_ne_bytes())?;
        cx.tracepoints(&mut o);
        let obj = o.load(&format!("{} TCP", cx.mode))?;
        cx.fill_ports(&obj)?;
        cx.shared.publish(&obj, SPEC.publishes)?;
        self.obj = Some(obj);
        Ok(())
    }

    fn attach(&mut self, _cx: &LoadCx<'_>) -> Result<Vec<Link>, LoadError> {
        attach_all(self.obj.as_ref().expect("loaded"))
    }

    fn object(&self) -> Option<&Object> {
        self.obj.as_ref()
    }
}
