//! `connect`: the outcome of an outbound TCP connect.
//!
//! Born in bpf/net.bpf.c, when a socket leaves SYN_SENT (`inet_sock_set_state`);
//! its owner is the task that called connect().

use std::fmt::Write as _;

use ksight_wire::ks_event_kind;
use serde::Serialize;

use crate::decode::DecodeError;
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::Header;
use crate::net::{self, errno_name, NetInfo};
use crate::table::{human_duration, Cell, Colour};
use crate::tcp::{self, RawTcp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connect {
    pub net: NetInfo,
    pub connect: ConnectDetail,
}

crate::named_enum! {
    /// How a connect ended.
    pub enum ConnectResult {
        Success = "success",
        /// RST
        Refused = "refused",
        /// SYN retries exhausted
        Timeout = "timeout",
        /// ICMP
        Unreachable = "unreachable",
        /// closed before the handshake completed
        Aborted = "aborted",
        Error = "error",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectDetail {
    pub result: ConnectResult,
    /// The errno name (ECONNREFUSED, ...) of a failure.
    pub error: Option<&'static str>,
    pub errno: Option<u32>,
    pub latency_ns: Option<u64>,
}

impl ConnectDetail {
    /// The outcome of a connect that left SYN_SENT for `new_state` with `errno`.
    pub fn outcome(new_state: u32, errno: u32, latency_ns: Option<u64>) -> ConnectDetail {
        let result = if new_state == 1 {
            ConnectResult::Success
        } else {
            match errno {
                0 => ConnectResult::Aborted,
                111 => ConnectResult::Refused,
                110 => ConnectResult::Timeout,
                101 | 113 | 112 | 100 => ConnectResult::Unreachable,
                _ => ConnectResult::Error,
            }
        };
        let failed = result != ConnectResult::Success;
        ConnectDetail {
            result,
            error: if failed { errno_name(errno) } else { None },
            errno: (failed && errno != 0).then_some(errno),
            latency_ns,
        }
    }
}

impl KindSpec for Connect {
    const NAME: &'static str = "connect";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_CONNECT.0];
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
            let connect = ConnectDetail::outcome(t.new_state, t.error, since(t.start_ns));
            Connect { net, connect }
        });
    }

    fn fields(f: &mut Fields<Self>) {
        net::fields(f, |d| &d.net);
        f.add(
            "connect.result",
            FieldType::Enum(ConnectResult::NAMES),
            |d| Value::Text(d.connect.result.name().as_bytes()),
        );
        f.add("connect.error", FieldType::Text, |d| {
            d.connect
                .error
                .map_or(Value::Null, |e| Value::Text(e.as_bytes()))
        });
        f.add("connect.errno", FieldType::Int, |d| {
            Value::opt_int(d.connect.errno.map(u64::from))
        });
        f.add("connect.latency_ns", FieldType::Duration, |d| {
            Value::opt_int(d.connect.latency_ns)
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let c = &self.connect;
        let _ = write!(
            cell,
            "{} → {}  {}",
            self.net.local, self.net.remote, c.result
        );
        if let Some(e) = c.error {
            let _ = write!(cell, " ({e})");
        }
        if let Some(ns) = c.latency_ns {
            let _ = write!(cell, " in {}", human_duration(ns));
        }
    }

    fn colour(&self) -> Colour {
        if self.connect.result == ConnectResult::Success {
            Colour::Blue
        } else {
            Colour::Red
        }
    }

    fn net(&self) -> Option<&NetInfo> {
        Some(&self.net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_outcomes() {
        let o = |s, e| {
            let d = ConnectDetail::outcome(s, e, None);
            (d.result.name(), d.error, d.errno)
        };
        assert_eq!(o(1, 0), ("success", None, None));
        assert_eq!(o(7, 111), ("refused", Some("ECONNREFUSED"), Some(111)));
        assert_eq!(o(7, 110), ("timeout", Some("ETIMEDOUT"), Some(110)));
        assert_eq!(o(7, 113).0, "unreachable");
        assert_eq!(o(7, 0).0, "aborted");
        assert_eq!(o(7, 5), ("error", None, Some(5)));
    }
}
