//! `listen`: a TCP socket started listening (`net.local`).
//!
//! Born in bpf/net.bpf.c, at the socket's transition to LISTEN.

use std::fmt::Write as _;

use ksight_wire::ks_event_kind;
use serde::Serialize;

use crate::decode::DecodeError;
use crate::field::Fields;
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::Header;
use crate::net::{self, NetInfo};
use crate::table::{Cell, Colour};
use crate::tcp::{self, RawTcp};

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
        tcp::decode_tcp(buf)
    }

    fn subject(t: &RawTcp) -> Subject<'_> {
        tcp::tcp_subject(t)
    }

    fn born(hdr: Header, t: RawTcp, _: &mut (), cx: &mut Cx<'_, Self>) {
        tcp::tcp_event(&hdr, &t, cx, |net, _| Listen { net });
    }

    fn fields(f: &mut Fields<Self>) {
        net::fields(f, |d| &d.net);
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let _ = write!(cell, "{} listening", self.net.local);
    }

    fn colour(&self) -> Colour {
        Colour::Blue
    }

    fn net(&self) -> Option<&NetInfo> {
        Some(&self.net)
    }
}
