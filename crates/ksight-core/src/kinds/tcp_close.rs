//! `tcp_close`: a TCP connection ksight saw begin has closed, with its byte
//! counts and duration.
//!
//! Born in bpf/net.bpf.c, at the socket's transition to CLOSE.

use std::fmt::Write as _;

use ksight_wire::ks_event_kind;
use serde::Serialize;

use crate::decode::DecodeError;
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::{Header, WallTime};
use crate::net::{self, NetInfo, TcpState};
use crate::table::{human_duration, Cell};
use crate::tcp::{self, RawTcp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpClose {
    pub net: NetInfo,
    pub tcp: TcpCloseDetail,
}

crate::named_enum! {
    /// Who began a connection.
    pub enum Direction {
        /// we connected
        Out = "out",
        /// we accepted
        In = "in",
        Unknown = "unknown",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpCloseDetail {
    pub direction: Direction,
    /// When it began (connect called / handshake completed); `null` if unknown.
    pub start_time: Option<WallTime>,
    pub duration_ns: Option<u64>,
    /// Payload bytes the peer acknowledged (tcp_sock bytes_acked).
    pub bytes_sent: u64,
    /// Payload bytes received in order (tcp_sock bytes_received).
    pub bytes_received: u64,
    pub retransmits: u32,
    /// The state the connection left for CLOSE (e.g. ESTABLISHED, FIN_WAIT2, LAST_ACK).
    pub last_state: TcpState,
}

impl KindSpec for TcpClose {
    const NAME: &'static str = "tcp_close";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_TCP_CLOSE.0];
    type Record = RawTcp;
    type State = ();

    fn decode(buf: &[u8], _hdr: Header) -> Result<RawTcp, DecodeError> {
        tcp::decode_tcp(buf)
    }

    fn subject(t: &RawTcp) -> Subject<'_> {
        tcp::tcp_subject(t)
    }

    fn born(hdr: Header, t: RawTcp, _: &mut (), cx: &mut Cx<'_, Self>) {
        let start_time = (t.start_ns != 0).then(|| cx.enricher.clock().wall(t.start_ns));
        tcp::tcp_event(&hdr, &t, cx, |net, since| {
            let tcp = TcpCloseDetail {
                direction: match (t.outbound, t.inbound) {
                    (true, _) => Direction::Out,
                    (_, true) => Direction::In,
                    _ => Direction::Unknown,
                },
                start_time,
                duration_ns: since(t.start_ns),
                bytes_sent: t.bytes_sent,
                bytes_received: t.bytes_received,
                retransmits: t.retransmits,
                last_state: TcpState::from_kernel(t.old_state),
            };
            TcpClose { net, tcp }
        });
    }

    fn fields(f: &mut Fields<Self>) {
        net::fields(f, |d| &d.net);
        f.add("tcp.direction", FieldType::Enum(Direction::NAMES), |d| {
            Value::Text(d.tcp.direction.name().as_bytes())
        });
        f.add("tcp.start_time", FieldType::Time, |d| {
            d.tcp.start_time.map_or(Value::Null, Value::Time)
        });
        f.add("tcp.duration_ns", FieldType::Duration, |d| {
            Value::opt_int(d.tcp.duration_ns)
        });
        f.add("tcp.bytes_sent", FieldType::Int, |d| {
            Value::uint(d.tcp.bytes_sent)
        });
        f.add("tcp.bytes_received", FieldType::Int, |d| {
            Value::uint(d.tcp.bytes_received)
        });
        f.add("tcp.retransmits", FieldType::Int, |d| {
            Value::Int(d.tcp.retransmits.into())
        });
        f.add("tcp.last_state", FieldType::Enum(TcpState::NAMES), |d| {
            Value::Text(d.tcp.last_state.name().as_bytes())
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let tcp = &self.tcp;
        let arrow = if tcp.direction == Direction::In {
            "←"
        } else {
            "→"
        };
        let _ = write!(
            cell,
            "{} {arrow} {}  sent {} B, received {} B",
            self.net.local, self.net.remote, tcp.bytes_sent, tcp.bytes_received
        );
        if let Some(ns) = tcp.duration_ns {
            let _ = write!(cell, ", {}", human_duration(ns));
        }
        if tcp.retransmits > 0 {
            let _ = write!(cell, ", {} retransmits", tcp.retransmits);
        }
    }

    fn net(&self) -> Option<&NetInfo> {
        Some(&self.net)
    }
}
