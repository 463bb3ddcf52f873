//! `udp`: one UDP flow (a socket's traffic with one remote address and port),
//! reported when its socket closes and periodically while it is open.
//!
//! UDP is counted, not streamed: bpf/udp.bpf.c's cgroup programs count
//! datagrams per flow in the `ks_udp_flows` map. A socket's release sends one
//! record (`ks_udp_event`); after the poll that read it, its flows are read
//! from the map (through [`KernelState`]), reported as final and removed.
//! Every `--udp-interval`, open flows with traffic since their last report
//! are reported too.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;

use ksight_wire::{
    ks_event_kind, ks_net_flags, ks_udp_event, ks_udp_flow, ks_udp_flow_key, ks_udp_sock,
};
use serde::Serialize;

use crate::decode::{copy, ip, task, DecodeError};
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KernelState, KindSpec};
use crate::model::{EventOf, Header, TaskFacts, WallTime};
use crate::net::{self, NetInfo, Protocol, RawUdpFlow};
use crate::table::Cell;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Udp {
    pub net: NetInfo,
    pub udp: UdpDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UdpDetail {
    pub packets_sent: u64,
    /// UDP payload bytes.
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub first_time: WallTime,
    pub last_time: WallTime,
    /// The socket is closed: these are the flow's totals. Otherwise the totals
    /// so far of a flow still open (reported every --udp-interval).
    #[serde(rename = "final")]
    pub closed: bool,
}

/// A UDP socket was released: its flows are final.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawUdpClose {
    pub ktime: u64,
    pub cookie: u64,
    /// The socket's owner, captured at socket creation; `None` when unknown.
    pub owner: Option<TaskFacts>,
    pub netns: u32,
    /// The remotes of the socket's flows, when the kernel could list them all;
    /// `None`: look for its flows by scanning.
    pub remotes: Option<Vec<SocketAddr>>,
}

/// A flow from the kernel's ks_udp_flows map (key and value bytes).
pub fn decode_flow(key: &[u8], value: &[u8]) -> Result<RawUdpFlow, DecodeError> {
    let k: ks_udp_flow_key = copy(key, 0, "udp flow key")?;
    let v: ks_udp_flow = copy(value, 0, "udp flow")?;
    Ok(RawUdpFlow {
        cookie: k.cookie,
        local: SocketAddr::new(ip(k.family, &v.laddr)?, v.lport),
        remote: SocketAddr::new(ip(k.family, &k.raddr)?, k.rport),
        first_ns: v.first_ns,
        last_ns: v.last_ns,
        packets_sent: v.packets_out,
        bytes_sent: v.bytes_out,
        packets_received: v.packets_in,
        bytes_received: v.bytes_in,
    })
}

/// The ks_udp_flows key of a socket's flow with `remote`.
pub fn flow_key(cookie: u64, remote: SocketAddr) -> ks_udp_flow_key {
    let mut key = ks_udp_flow_key {
        cookie,
        rport: remote.port(),
        ..Default::default()
    };
    match remote.ip() {
        std::net::IpAddr::V4(v4) => {
            key.family = crate::decode::AF_INET;
            key.raddr[..4].copy_from_slice(&v4.octets());
        }
        std::net::IpAddr::V6(v6) => {
            key.family = crate::decode::AF_INET6;
            key.raddr = v6.octets();
        }
    }
    key
}

/// The owner recorded for a UDP socket (a ks_udp_socks value): the task and its netns.
pub fn decode_owner(value: &[u8]) -> Result<(TaskFacts, u32), DecodeError> {
    let s: ks_udp_sock = copy(value, 0, "udp owner")?;
    Ok((task(&s.owner), s.netns))
}

/// Open flows' reports, and the closes waiting for the poll to end.
#[derive(Default)]
pub struct Report {
    /// Sockets released since the last poll.
    closed: Vec<RawUdpClose>,
    /// When open flows were last reported (CLOCK_MONOTONIC ns; 0: not yet).
    last: u64,
    /// last_ns of each open flow when it was last reported
    reported: HashMap<(u64, SocketAddr), u64>,
}

impl Report {
    /// Closed sockets' flows: most sockets name their flows' remotes, a
    /// lookup each; the rest (servers with many peers, sockets older than
    /// ksight) share one scan.
    fn closed(&mut self, cx: &mut Cx<'_, Udp>, kernel: &dyn KernelState) {
        if self.closed.is_empty() {
            return;
        }
        let closes = std::mem::take(&mut self.closed);
        let scan: HashSet<u64> = closes
            .iter()
            .filter(|c| c.remotes.is_none())
            .map(|c| c.cookie)
            .collect();
        let mut scanned: HashMap<u64, Vec<RawUdpFlow>> = HashMap::new();
        if !scan.is_empty() {
            for f in kernel.udp_flows(Some(&scan)) {
                scanned.entry(f.cookie).or_default().push(f);
            }
        }
        for c in &closes {
            let flows = match &c.remotes {
                Some(remotes) => kernel.udp_flows_of(c.cookie, remotes),
                None => scanned.remove(&c.cookie).unwrap_or_default(),
            };
            for f in &flows {
                self.reported.remove(&(f.cookie, f.remote));
                let ev = flow_event(cx, c.owner.as_ref(), c.netns, f, true, c.ktime);
                cx.emit(ev);
            }
        }
    }

    /// Open flows with traffic since their last report, every `interval`.
    fn open(&mut self, cx: &mut Cx<'_, Udp>, kernel: &dyn KernelState, force: bool) {
        let now = cx.now;
        if self.last == 0 {
            self.last = now;
        }
        if !force && now.saturating_sub(self.last) < cx.config.udp_interval_ns {
            return;
        }
        self.last = now;
        let mut seen = HashMap::new();
        for f in kernel.udp_flows(None) {
            let key = (f.cookie, f.remote);
            seen.insert(key, f.last_ns);
            if self.reported.get(&key) == Some(&f.last_ns) {
                continue; // no traffic since the last report
            }
            let owner = kernel.udp_owner(f.cookie);
            let (task, netns) = match &owner {
                Some((t, n)) => (Some(t), *n),
                None => (None, 0),
            };
            let ev = flow_event(cx, task, netns, &f, false, now);
            cx.emit(ev);
        }
        self.reported = seen;
    }
}

/// A flow's event, read from the kernel's counters at `ktime`; `closed` when
/// its socket is gone (these are its totals).
fn flow_event(
    cx: &mut Cx<'_, Udp>,
    owner: Option<&TaskFacts>,
    netns: u32,
    flow: &RawUdpFlow,
    closed: bool,
    ktime: u64,
) -> EventOf<Udp> {
    let en = &mut *cx.enricher;
    let process = owner.map(|o| en.owner(o));
    let mut net = NetInfo::new(Protocol::Udp, netns, flow.local, flow.remote, flow.cookie);
    net.owned_by(owner);
    net.remote_name = en.name_of(flow.remote.ip(), ktime);
    let clock = en.clock();
    let udp = UdpDetail {
        packets_sent: flow.packets_sent,
        bytes_sent: flow.bytes_sent,
        packets_received: flow.packets_received,
        bytes_received: flow.bytes_received,
        first_time: clock.wall(flow.first_ns),
        last_time: clock.wall(flow.last_ns),
        closed,
    };
    EventOf {
        time: clock.wall(ktime),
        ktime,
        cpu: 0,
        seq: None,
        process,
        detail: Udp { net, udp },
    }
}

impl KindSpec for Udp {
    const NAME: &'static str = "udp";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_UDP.0];
    type Record = RawUdpClose;
    type State = Report;

    fn decode(buf: &[u8], hdr: Header) -> Result<RawUdpClose, DecodeError> {
        let e: ks_udp_event = copy(buf, 0, "udp close")?;
        let known = e.flags & ks_net_flags::KS_NET_OWNER.0 != 0;
        let n = e.sock.nremotes as usize;
        let remotes = (known && n <= e.sock.remotes.len()).then(|| {
            e.sock.remotes[..n]
                .iter()
                .filter_map(|r| Some(SocketAddr::new(ip(r.family, &r.raddr).ok()?, r.rport)))
                .collect()
        });
        Ok(RawUdpClose {
            ktime: hdr.ktime_ns,
            cookie: e.cookie,
            owner: known.then(|| task(&e.sock.owner)),
            netns: e.sock.netns,
            remotes,
        })
    }

    /// Reported with its flows after the poll (see [`Report`]); the events
    /// are filtered then, as flows of open sockets are.
    fn born(_hdr: Header, c: RawUdpClose, report: &mut Report, _cx: &mut Cx<'_, Self>) {
        report.closed.push(c);
    }

    fn tick(report: &mut Report, cx: &mut Cx<'_, Self>, kernel: &dyn KernelState, last: bool) {
        report.closed(cx, kernel);
        report.open(cx, kernel, last);
    }

    fn fields(f: &mut Fields<Self>) {
        net::fields(f, |d| &d.net);
        f.add("udp.packets_sent", FieldType::Int, |d| {
            Value::uint(d.udp.packets_sent)
        });
        f.add("udp.packets_received", FieldType::Int, |d| {
            Value::uint(d.udp.packets_received)
        });
        f.add("udp.bytes_sent", FieldType::Int, |d| {
            Value::uint(d.udp.bytes_sent)
        });
        f.add("udp.bytes_received", FieldType::Int, |d| {
            Value::uint(d.udp.bytes_received)
        });
        f.add("udp.first_time", FieldType::Time, |d| {
            Value::Time(d.udp.first_time)
        });
        f.add("udp.last_time", FieldType::Time, |d| {
            Value::Time(d.udp.last_time)
        });
        f.add("udp.final", FieldType::Bool, |d| Value::Bool(d.udp.closed));
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let u = &self.udp;
        let _ = write!(
            cell,
            "{} ⇄ {}  sent {} pkt/{} B, received {} pkt/{} B{}",
            self.net.local,
            self.net.remote,
            u.packets_sent,
            u.bytes_sent,
            u.packets_received,
            u.bytes_received,
            if u.closed { "" } else { " (open)" }
        );
    }

    fn net(&self) -> Option<&NetInfo> {
        Some(&self.net)
    }
}
