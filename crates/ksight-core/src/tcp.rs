//! The TCP record that `connect`, `accept`, `listen`, `tcp_close` and
//! `tcp_state` are all born from: one layout in events.h (`ks_tcp_event`),
//! told apart by its kind, and the event every one of them makes of it.

use std::net::SocketAddr;

use ksight_wire::{ks_net_flags, ks_sock_tuple, ks_tcp_event};

use crate::decode::{copy, ip, task, DecodeError};
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::{Header, Process, TaskFacts};
use crate::net::{NetInfo, OwnerSource, Protocol};

/// A TCP socket's endpoints, as the kernel holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub netns: u32,
}

impl Default for Tuple {
    fn default() -> Self {
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        Tuple {
            local: any,
            remote: any,
            netns: 0,
        }
    }
}

/// A TCP record (events.h `ks_tcp_event`), decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawTcp {
    /// The socket's owner, captured in process context; `None` when unknown.
    pub owner: Option<TaskFacts>,
    pub tuple: Tuple,
    /// Kernel address of the socket: an opaque id shared by a connection's records.
    pub sock: u64,
    pub outbound: bool,
    pub inbound: bool,
    /// `owner` called accept() on it (the accept hook); otherwise an inbound
    /// connection's owner is its listener's.
    pub accepted: bool,
    /// `owner` was read from /proc at start (a listener older than ksight).
    pub owner_procfs: bool,
    /// When the connection began (connect called / accept completed); 0 if unknown.
    pub start_ns: u64,
    /// When it entered `old_state`; 0 if unknown.
    pub state_ns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retransmits: u32,
    /// errno (sk_err) of a failed connect; 0 otherwise.
    pub error: u32,
    pub old_state: u32,
    pub new_state: u32,
}

/// Addresses in network byte order (IPv4 in the first 4 bytes), ports in host order.
fn tuple(t: &ks_sock_tuple) -> Result<Tuple, DecodeError> {
    Ok(Tuple {
        local: SocketAddr::new(ip(t.family, &t.saddr)?, t.sport),
        remote: SocketAddr::new(ip(t.family, &t.daddr)?, t.dport),
        netns: t.netns,
    })
}

/// The record of every TCP kind.
pub fn decode_tcp(buf: &[u8]) -> Result<RawTcp, DecodeError> {
    let e: ks_tcp_event = copy(buf, 0, "tcp")?;
    let flag = |f: ks_net_flags| e.flags & f.0 != 0;
    Ok(RawTcp {
        owner: flag(ks_net_flags::KS_NET_OWNER).then(|| task(&e.task)),
        tuple: tuple(&e.tuple)?,
        sock: e.sock,
        outbound: flag(ks_net_flags::KS_NET_OUTBOUND),
        inbound: flag(ks_net_flags::KS_NET_INBOUND),
        accepted: flag(ks_net_flags::KS_NET_ACCEPTED),
        owner_procfs: flag(ks_net_flags::KS_NET_PROCFS),
        start_ns: e.start_ns,
        state_ns: e.state_ns,
        bytes_sent: e.bytes_sent,
        bytes_received: e.bytes_received,
        retransmits: e.retransmits,
        error: e.error,
        old_state: e.old_state,
        new_state: e.new_state,
    })
}

/// Who a TCP record is about: its owner, if the kernel knew it.
pub fn tcp_subject(t: &RawTcp) -> Subject<'_> {
    match &t.owner {
        Some(task) => Subject::Task { task, also: None },
        None => Subject::Nobody,
    }
}

/// A TCP record's event: its owner (captured in process context by the kernel
/// side) is the process, `detail` makes the kind's part from the socket and
/// the time since an instant of the record (`None` for an unknown instant).
pub fn tcp_event<K: KindSpec>(
    hdr: &Header,
    t: &RawTcp,
    cx: &mut Cx<'_, K>,
    detail: impl FnOnce(NetInfo, &dyn Fn(u64) -> Option<u64>) -> K,
) {
    if !cx.keep() {
        return cx.filtered();
    }
    let process: Option<Process> = t.owner.as_ref().map(|o| cx.enricher.owner(o));
    let mut net = NetInfo::new(
        Protocol::Tcp,
        t.tuple.netns,
        t.tuple.local,
        t.tuple.remote,
        t.sock,
    );
    net.remote_name = cx.enricher.name_of(t.tuple.remote.ip(), hdr.ktime_ns);
    if t.owner
        .as_ref()
        .is_some_and(|o| t.owner_procfs || o.from_procfs)
    {
        net.owner_source = Some(OwnerSource::Procfs);
    }
    let now = hdr.ktime_ns;
    let since = move |from: u64| (from != 0).then(|| now.saturating_sub(from));
    let detail = detail(net, &since);
    cx.record_event(hdr, process, detail);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testing::*;
    use crate::record::{decode, Record};
    use ksight_wire::ks_event_kind;
    use std::mem::size_of;

    #[test]
    fn tcp_round_trip_v4_and_v6() {
        let mut e = ks_tcp_event {
            hdr: hdr(ks_event_kind::KS_EVENT_TCP_CLOSE, size_of::<ks_tcp_event>()),
            sock: 0xffff_8880_0000_1000,
            start_ns: 5,
            bytes_sent: 1000,
            bytes_received: 2000,
            retransmits: 1,
            old_state: 1,
            new_state: 7,
            flags: ks_net_flags::KS_NET_OUTBOUND.0 | ks_net_flags::KS_NET_OWNER.0,
            task: wire_task(),
            ..Default::default()
        };
        e.tuple.family = 2;
        e.tuple.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.tuple.daddr[..4].copy_from_slice(&[10, 1, 2, 3]);
        e.tuple.sport = 40000;
        e.tuple.dport = 443;
        e.tuple.netns = 4026531840;
        let Record::TcpClose(_, t) = decode(&bytes_of(&e)).unwrap() else {
            panic!("not tcp_close")
        };
        assert_eq!(t.tuple.local.to_string(), "127.0.0.1:40000");
        assert_eq!(t.tuple.remote.to_string(), "10.1.2.3:443");
        assert!(t.outbound && !t.inbound);
        assert_eq!(t.owner.as_ref().unwrap().pid, 10);
        assert_eq!(
            (t.bytes_sent, t.bytes_received, t.retransmits),
            (1000, 2000, 1)
        );

        e.tuple.family = 10;
        e.tuple.daddr = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1];
        e.tuple.saddr = [0; 16];
        e.tuple.saddr[15] = 1;
        e.flags = 0;
        e.hdr.kind = ks_event_kind::KS_EVENT_ACCEPT.0;
        let Record::Accept(_, t) = decode(&bytes_of(&e)).unwrap() else {
            panic!("not accept")
        };
        assert_eq!(t.tuple.remote.to_string(), "[::ffff:192.0.2.1]:443");
        assert_eq!(t.tuple.local.to_string(), "[::1]:40000");
        assert!(t.owner.is_none());
        assert!(!t.accepted);

        // from the accept() hook: the acceptor owns it
        e.flags = ks_net_flags::KS_NET_INBOUND.0
            | ks_net_flags::KS_NET_OWNER.0
            | ks_net_flags::KS_NET_ACCEPTED.0;
        let Record::Accept(_, t) = decode(&bytes_of(&e)).unwrap() else {
            panic!("not accept")
        };
        assert!(t.accepted && t.inbound && t.owner.is_some());

        e.tuple.family = 1;
        assert_eq!(decode(&bytes_of(&e)), Err(DecodeError::Family(1)));
    }
}
