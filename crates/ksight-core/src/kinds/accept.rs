//! `accept`: an inbound TCP connection was accepted.
//!
//! Born in bpf/accept.bpf.c when the accept() hook runs (fexit or kretprobe on
//! `inet_csk_accept`: the accepting thread owns it), else in bpf/net.bpf.c when
//! the handshake completes (the listener's owner owns it).

use std::fmt::Write as _;

use ksight_wire::ks_event_kind;
use serde::Serialize;

use crate::decode::DecodeError;
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::Header;
use crate::net::{self, NetInfo};
use crate::table::{Cell, Colour};
use crate::tcp::{self, RawTcp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accept {
    pub net: NetInfo,
    pub accept: AcceptDetail,
}

crate::named_enum! {
    /// How an accepted connection was attributed.
    pub enum AcceptBy {
        /// `process` called accept() on it (the accept hook)
        Accept = "accept",
        /// `process` owns the listening socket
        Listener = "listener",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceptDetail {
    pub by: AcceptBy,
    /// From the handshake's completion to accept(); `null` when ksight did
    /// not see the handshake or has no accept hook.
    pub queued_ns: Option<u64>,
}

impl KindSpec for Accept {
    const NAME: &'static str = "accept";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_ACCEPT.0];
    type Record = RawTcp;
    type State = ();

    fn decode(buf: &[u8], _hdr: Header) -> Result<RawTcp, DecodeError> {
        tcp::decode_tcp(buf)
    }

    fn subject(t: &RawTcp) -> Subject<'_> {
        tcp::tcp_subject(t)
    }

    fn born(hdr: Header, t: RawTcp, _: &mut (), cx: &mut Cx<'_, Self>) {
        tcp::tcp_event(&hdr, &t, cx, |net, since| {
            let accept = AcceptDetail {
                by: if t.accepted {
                    AcceptBy::Accept
                } else {
                    AcceptBy::Listener
                },
                queued_ns: t.accepted.then(|| since(t.start_ns)).flatten(),
            };
            Accept { net, accept }
        });
    }

    fn fields(f: &mut Fields<Self>) {
        net::fields(f, |d| &d.net);
        f.add("accept.by", FieldType::Enum(AcceptBy::NAMES), |d| {
            Value::Text(d.accept.by.name().as_bytes())
        });
        f.add("accept.queued_ns", FieldType::Duration, |d| {
            Value::opt_int(d.accept.queued_ns)
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let _ = write!(cell, "{} ← {}", self.net.local, self.net.remote);
        if self.accept.by == AcceptBy::Listener {
            cell.push(" (listener's owner)");
        }
    }

    fn colour(&self) -> Colour {
        Colour::Blue
    }

    fn net(&self) -> Option<&NetInfo> {
        Some(&self.net)
    }
}
