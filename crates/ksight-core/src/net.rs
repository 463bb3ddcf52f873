//! What the network kinds share: the socket (`net` in their JSON, `net.*`
//! fields), its protocol, family and TCP states.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::field::{FieldType, Fields, Value};

crate::named_enum! {
    pub enum Protocol { Tcp = "tcp", Udp = "udp" }
}

crate::named_enum! {
    pub enum Family { Ipv4 = "ipv4", Ipv6 = "ipv6" }
}

impl Family {
    pub fn of(addr: SocketAddr) -> Family {
        if addr.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }
}

crate::named_enum! {
    /// Linux TCP states (include/net/tcp_states.h).
    pub enum TcpState {
        Established = "ESTABLISHED",
        SynSent = "SYN_SENT",
        SynRecv = "SYN_RECV",
        FinWait1 = "FIN_WAIT1",
        FinWait2 = "FIN_WAIT2",
        TimeWait = "TIME_WAIT",
        Close = "CLOSE",
        CloseWait = "CLOSE_WAIT",
        LastAck = "LAST_ACK",
        Listen = "LISTEN",
        Closing = "CLOSING",
        NewSynRecv = "NEW_SYN_RECV",
        BoundInactive = "BOUND_INACTIVE",
        Unknown = "UNKNOWN",
    }
}

impl TcpState {
    pub fn from_kernel(state: u32) -> TcpState {
        const STATES: [TcpState; 13] = [
            TcpState::Established,
            TcpState::SynSent,
            TcpState::SynRecv,
            TcpState::FinWait1,
            TcpState::FinWait2,
            TcpState::TimeWait,
            TcpState::Close,
            TcpState::CloseWait,
            TcpState::LastAck,
            TcpState::Listen,
            TcpState::Closing,
            TcpState::NewSynRecv,
            TcpState::BoundInactive,
        ];
        match state {
            1..=13 => STATES[state as usize - 1],
            _ => TcpState::Unknown,
        }
    }
}

/// One end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// IPv4, IPv6, or IPv4-mapped IPv6 (`::ffff:1.2.3.4`), in their natural text form.
    pub addr: IpAddr,
    pub port: u16,
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Self {
        Endpoint {
            addr: a.ip(),
            port: a.port(),
        }
    }
}

impl std::fmt::Display for Endpoint {
    /// As people write it: 1.2.3.4:80, [::1]:80.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        SocketAddr::new(self.addr, self.port).fmt(f)
    }
}

/// Which socket an event is about (`net` in its JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetInfo {
    pub protocol: Protocol,
    pub family: Family,
    /// Inode of the socket's network namespace.
    pub netns: u32,
    pub local: Endpoint,
    pub remote: Endpoint,
    /// Opaque id shared by all events of one connection.
    pub sock: String,
    /// The name a DNS answer seen shortly before gave for the remote address
    /// (the name that was asked: `www.example.com`, not its CNAME target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_name: Option<String>,
    /// How the owner (`process`) was found, when not by a hook in the kernel:
    /// `procfs`, read from /proc at start (a socket older than ksight).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_source: Option<OwnerSource>,
}

crate::named_enum! {
    /// How a socket's owner was found when the kernel's hooks did not see it.
    pub enum OwnerSource {
        /// from /proc/PID/fd (and /proc/PID/net or sock_diag) at start
        Procfs = "procfs",
    }
}

impl NetInfo {
    pub fn new(
        protocol: Protocol,
        netns: u32,
        local: SocketAddr,
        remote: SocketAddr,
        sock: u64,
    ) -> NetInfo {
        NetInfo {
            protocol,
            family: Family::of(local),
            netns,
            local: local.into(),
            remote: remote.into(),
            sock: format!("{sock:x}"),
            remote_name: None,
            owner_source: None,
        }
    }

    /// Say how the socket's owner was found, when it was not by a hook.
    pub fn owned_by(&mut self, owner: Option<&crate::model::TaskFacts>) {
        if owner.is_some_and(|o| o.from_procfs) {
            self.owner_source = Some(OwnerSource::Procfs);
        }
    }
}

/// One UDP flow's counters, as read from the kernel's flow map (udp.bpf.c's
/// `ks_udp_flows`, decoded by the `udp` kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawUdpFlow {
    pub cookie: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub first_ns: u64,
    pub last_ns: u64,
    pub packets_sent: u64,
    /// UDP payload bytes.
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
}

/// The `net.*` fields of a network kind, whose detail's socket `net` gives.
pub fn fields<D: 'static>(f: &mut Fields<D>, net: for<'a> fn(&'a D) -> &'a NetInfo) {
    f.add("net.protocol", FieldType::Enum(Protocol::NAMES), move |d| {
        Value::Text(net(d).protocol.name().as_bytes())
    });
    f.add("net.family", FieldType::Enum(Family::NAMES), move |d| {
        Value::Text(net(d).family.name().as_bytes())
    });
    f.add("net.netns", FieldType::Int, move |d| {
        Value::Int(net(d).netns.into())
    });
    f.add("net.local.addr", FieldType::Ip, move |d| {
        Value::Ip(net(d).local.addr)
    });
    f.add("net.local.port", FieldType::Int, move |d| {
        Value::Int(net(d).local.port.into())
    });
    f.add("net.remote.addr", FieldType::Ip, move |d| {
        Value::Ip(net(d).remote.addr)
    });
    f.add("net.remote.port", FieldType::Int, move |d| {
        Value::Int(net(d).remote.port.into())
    });
    f.add("net.sock", FieldType::Text, move |d| {
        Value::Text(net(d).sock.as_bytes())
    });
    f.add("net.remote_name", FieldType::Text, move |d| {
        net(d)
            .remote_name
            .as_deref()
            .map_or(Value::Null, |n| Value::Text(n.as_bytes()))
    });
    f.add(
        "net.owner_source",
        FieldType::Enum(OwnerSource::NAMES),
        move |d| {
            net(d)
                .owner_source
                .map_or(Value::Null, |o| Value::Text(o.name().as_bytes()))
        },
    );
}

/// Names of the errno values a socket reports.
pub fn errno_name(errno: u32) -> Option<&'static str> {
    Some(match errno {
        1 => "EPERM",
        13 => "EACCES",
        32 => "EPIPE",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        100 => "ENETDOWN",
        101 => "ENETUNREACH",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        112 => "EHOSTDOWN",
        113 => "EHOSTUNREACH",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_state_names() {
        assert_eq!(TcpState::from_kernel(6).name(), "TIME_WAIT");
        assert_eq!(TcpState::from_kernel(99).name(), "UNKNOWN");
        assert_eq!(TcpState::from_kernel(0), TcpState::Unknown);
    }
}
