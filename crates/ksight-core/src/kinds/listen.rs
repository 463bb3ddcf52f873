//! `listen`: a TCP socket started listening (`net.local`).
//!
//! Born in bpf/net.bpf.c, at the socket's transition to LISTEN.

use std::fmt::Write as _;

use ksight_wire::ks_event_kind;
use serde::Serialize;

use crate::event::{Event, Header};
use crate::field::Fields;
use crate::kind::{KindSpec, Subject};
use crate::net::{self, NetInfo, RawTcp};
use crate::pipeline::Cx;
use crate::record::DecodeError;
use crate::table::{Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listen {
    pub net: NetInfo,
}

impl KindSpec for Listen {
    const NAME: &'static str = "listen";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_LISTEN.0];
    type Record = RawTcp;
    type State = ();

    fn decode(buf: &[u8], _hdr: Header) -> Result<RawTcp, DecodeError> {
        net::decode_tcp(buf)
    }

    fn subject(t: &RawTcp) -> Subject<'_> {
        net::tcp_subject(t)
    }

    fn born(hdr: Header, t: RawTcp, _: &mut (), cx: &mut Cx<'_>) {
        net::tcp_event(&hdr, &t, cx, |net, _| Listen { net }.into());
    }

    fn fields(f: &mut Fields<Self>) {
        net::fields(f);
    }

    fn table(&self, _ev: &Event, cell: &mut Cell<'_>) {
        let _ = write!(cell, "{} listening", self.net.local);
    }

    fn colour(&self) -> Colour {
        Colour::Blue
    }

    fn net(&self) -> Option<&NetInfo> {
        Some(&self.net)
    }
}
