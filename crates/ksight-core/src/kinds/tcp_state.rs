//! `tcp_state` (opt-in): every state transition of a TCP socket ksight follows.
//!
//! Born in bpf/net.bpf.c (`inet_sock_set_state`) when `ks_cfg_tcp_states` is set.

use std::fmt::Write as _;

use ksight_wire::ks_event_kind;
use serde::Serialize;

use crate::decode::DecodeError;
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::Header;
use crate::net::{self, NetInfo, TcpState as State};
use crate::table::Cell;
use crate::tcp::{self, RawTcp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpState {
    pub net: NetInfo,
    pub state: TcpStateDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpStateDetail {
    pub old: State,
    pub new: State,
    /// How long the socket was in `old`; `null` when ksight did not see it enter it.
    pub time_in_old_ns: Option<u64>,
}

impl KindSpec for TcpState {
    const NAME: &'static str = "tcp_state";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_TCP_STATE.0];
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
            let state = TcpStateDetail {
                old: State::from_kernel(t.old_state),
                new: State::from_kernel(t.new_state),
                time_in_old_ns: since(t.state_ns),
            };
            TcpState { net, state }
        });
    }

    fn fields(f: &mut Fields<Self>) {
        net::fields(f, |d| &d.net);
        f.add("state.old", FieldType::Enum(State::NAMES), |d| {
            Value::Text(d.state.old.name().as_bytes())
        });
        f.add("state.new", FieldType::Enum(State::NAMES), |d| {
            Value::Text(d.state.new.name().as_bytes())
        });
        f.add("state.time_in_old_ns", FieldType::Duration, |d| {
            Value::opt_int(d.state.time_in_old_ns)
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let _ = write!(
            cell,
            "{} → {}  {} → {}",
            self.net.local, self.net.remote, self.state.old, self.state.new
        );
    }

    fn net(&self) -> Option<&NetInfo> {
        Some(&self.net)
    }
}
