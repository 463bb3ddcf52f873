//! `dns`: one DNS transaction (a query and its response, or a query that got
//! none in time), over UDP or TCP.
//!
//! Born in bpf/udp.bpf.c: its cgroup_skb programs copy datagrams and TCP
//! segments to or from the DNS ports (`ks_dns_event`); they are parsed only
//! here, by [`DnsTracker`](crate::dns::DnsTracker), which matches responses to
//! queries. Answers teach the enricher which name an address had, for the
//! `net.remote_name` of later connections.

use std::fmt::Write as _;
use std::mem::offset_of;
use std::net::{IpAddr, SocketAddr};

use ksight_wire::{ks_dns_event, ks_event_kind, ks_net_flags};
use serde::Serialize;

use crate::decode::{copy_padded, ip, task, DecodeError};
use crate::dns::{AskedBy, DnsDetail, DnsTracker, RawDns, Role, Status, Transaction};
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KernelState, KindSpec};
use crate::model::{EventOf, Header};
use crate::net::{self, NetInfo, Protocol};
use crate::table::{human_duration, Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dns {
    pub net: NetInfo,
    pub dns: DnsDetail,
}

const ANSWER: &[(&str, FieldType)] = &[
    ("name", FieldType::Text),
    ("type", FieldType::Text),
    ("ttl", FieldType::Int),
    ("data", FieldType::Text),
];

impl KindSpec for Dns {
    const NAME: &'static str = "dns";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_DNS.0];
    type Record = RawDns;
    type State = DnsTracker;

    fn decode(buf: &[u8], hdr: Header) -> Result<RawDns, DecodeError> {
        // the record is cut at its payload: read it as a zero-padded full one
        let data_off = offset_of!(ks_dns_event, data);
        let e: ks_dns_event = copy_padded(buf, data_off, "dns")?;
        let caplen = e.caplen as usize;
        let data = buf
            .get(data_off..data_off + caplen)
            .ok_or(DecodeError::Overrun {
                what: "dns record",
                sum: caplen,
                len: buf.len().saturating_sub(data_off),
            })?;
        Ok(RawDns {
            hdr,
            owner: (e.flags & ks_net_flags::KS_NET_OWNER.0 != 0).then(|| task(&e.task)),
            netns: e.netns,
            cookie: e.cookie,
            src: SocketAddr::new(ip(e.family, &e.saddr)?, e.sport),
            dst: SocketAddr::new(ip(e.family, &e.daddr)?, e.dport),
            egress: e.egress != 0,
            len: e.len,
            data: data.to_vec(),
            tcp: e.flags & ks_net_flags::KS_NET_TCP.0 != 0,
        })
    }

    fn born(_hdr: Header, p: RawDns, tracker: &mut DnsTracker, cx: &mut Cx<'_, Self>) {
        let tx = tracker.packet(p);
        cx.counters.dns_malformed = tracker.malformed;
        cx.counters.dns_malformed_answers = tracker.malformed_answers;
        if let Some(tx) = tx {
            let ev = transaction(tx, cx);
            cx.emit(ev);
        }
    }

    /// Queries that waited longer than `--dns-timeout`; at stop, every query
    /// still waiting (`pending`).
    fn tick(tracker: &mut DnsTracker, cx: &mut Cx<'_, Self>, _: &dyn KernelState, last: bool) {
        let ended = if last {
            let pending = tracker.drain(cx.now);
            cx.counters.dns_pending += pending.len() as u64;
            pending
        } else {
            tracker.expire(cx.now, cx.config.dns_timeout_ns)
        };
        for tx in ended {
            let ev = transaction(tx, cx);
            cx.emit(ev);
        }
    }

    fn fields(f: &mut Fields<Self>) {
        net::fields(f, |d| &d.net);
        f.add("dns.role", FieldType::Enum(Role::NAMES), |d| {
            Value::Text(d.dns.role.name().as_bytes())
        });
        f.add("dns.id", FieldType::Int, |d| Value::Int(d.dns.id.into()));
        f.add("dns.question.name", FieldType::Text, |d| {
            d.dns
                .question
                .as_ref()
                .map_or(Value::Null, |q| Value::Text(q.name.as_bytes()))
        });
        f.add("dns.question.type", FieldType::Text, |d| {
            d.dns
                .question
                .as_ref()
                .map_or(Value::Null, |q| Value::Text(q.qtype.as_bytes()))
        });
        f.add("dns.question.class", FieldType::Text, |d| {
            d.dns
                .question
                .as_ref()
                .map_or(Value::Null, |q| Value::Text(q.class.as_bytes()))
        });
        f.add("dns.status", FieldType::Enum(Status::NAMES), |d| {
            Value::Text(d.dns.status.name().as_bytes())
        });
        f.add("dns.rcode", FieldType::Text, |d| {
            d.dns
                .rcode
                .as_deref()
                .map_or(Value::Null, |r| Value::Text(r.as_bytes()))
        });
        f.add("dns.answers", FieldType::Records(ANSWER), |d| {
            Value::List(
                d.dns
                    .answers
                    .iter()
                    .map(|a| {
                        Value::Record(vec![
                            Value::Text(a.name.as_bytes()),
                            Value::Text(a.rtype.as_bytes()),
                            Value::Int(a.ttl.into()),
                            Value::Text(a.data.as_bytes()),
                        ])
                    })
                    .collect(),
            )
        });
        f.add("dns.resolver", FieldType::Text, |d| {
            Value::Text(d.dns.resolver.as_bytes())
        });
        f.add("dns.transport", FieldType::Enum(Protocol::NAMES), |d| {
            Value::Text(d.dns.transport.name().as_bytes())
        });
        f.add("dns.latency_ns", FieldType::Duration, |d| {
            Value::opt_int(d.dns.latency_ns)
        });
        f.add("dns.truncated", FieldType::Bool, |d| {
            Value::Bool(d.dns.truncated)
        });
        f.add("dns.error", FieldType::Text, |d| {
            d.dns
                .error
                .as_deref()
                .map_or(Value::Null, |e| Value::Text(e.as_bytes()))
        });
        type Header = fn(&crate::dns::ResponseHeader) -> u64;
        let header: [(&str, Header); 6] = [
            ("dns.response.size", |h| h.size.into()),
            ("dns.response.flags", |h| h.flags.into()),
            ("dns.response.questions", |h| h.questions.into()),
            ("dns.response.answers", |h| h.answers.into()),
            ("dns.response.authorities", |h| h.authorities.into()),
            ("dns.response.additionals", |h| h.additionals.into()),
        ];
        for (path, get) in header {
            f.add(path, FieldType::Int, move |d| {
                d.dns
                    .response
                    .as_ref()
                    .map_or(Value::Null, |h| Value::uint(get(h)))
            });
        }
        f.add("dns.waited_ns", FieldType::Duration, |d| {
            Value::opt_int(d.dns.waited_ns)
        });
        f.add("dns.asked_by.pid", FieldType::Int, |d| {
            d.dns
                .asked_by
                .as_ref()
                .map_or(Value::Null, |a| Value::Int(a.pid.into()))
        });
        f.add("dns.asked_by.comm", FieldType::Text, |d| {
            d.dns
                .asked_by
                .as_ref()
                .map_or(Value::Null, |a| Value::text(&a.comm))
        });
        f.add("dns.asked_by.exec_id", FieldType::Text, |d| {
            d.dns
                .asked_by
                .as_ref()
                .map_or(Value::Null, |a| Value::Text(a.exec_id.as_bytes()))
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let dns = &self.dns;
        let q = dns.question.as_ref();
        let _ = write!(
            cell,
            "{} {} {} → {} {}",
            dns.role,
            q.map_or("?", |q| q.qtype.as_str()),
            q.map_or("?", |q| q.name.as_str()),
            dns.resolver,
            dns.rcode.as_deref().unwrap_or(dns.status.name())
        );
        for a in &dns.answers {
            let _ = write!(cell, " {}", a.data);
        }
        if let Some(ns) = dns.latency_ns {
            let _ = write!(cell, " ({})", human_duration(ns));
        }
        if let Some(ns) = dns.waited_ns {
            let _ = write!(cell, " (waited {})", human_duration(ns));
        }
        if let Some(e) = &dns.error {
            let _ = write!(cell, " [{e}]");
        }
    }

    fn colour(&self) -> Colour {
        match self.dns.status {
            Status::Answered => Colour::Cyan,
            Status::Malformed => Colour::Red,
            Status::Timeout | Status::Pending => Colour::Yellow,
        }
    }

    fn net(&self) -> Option<&NetInfo> {
        Some(&self.net)
    }
}

/// A transaction's event: the socket's owner; the application a resolver
/// asked for, when a getaddrinfo call was waiting for the name; and the
/// answers' addresses remembered under the name asked.
fn transaction(mut tx: Transaction, cx: &mut Cx<'_, Dns>) -> EventOf<Dns> {
    let en = &mut *cx.enricher;
    let process = tx.owner.as_ref().map(|o| en.owner(o));
    // a process that resolves names: its getaddrinfo calls are worth probing
    if let (Some(p), Role::Client) = (&process, tx.detail.role) {
        en.gai_targets.sent_dns(p.pid);
    }
    // a resolver asking upstream for a name an application is waiting on
    if let (Some(p), Some(q)) = (&process, &tx.detail.question) {
        let name = q.name.trim_end_matches('.');
        let waiting = en.gai_calls.iter().rev().find(|c| {
            c.name == name
                && c.caller.pid != p.pid
                && tx.ktime.saturating_sub(c.ktime) < 10_000_000_000
        });
        if let Some(c) = waiting {
            tx.detail.asked_by = Some(AskedBy {
                pid: c.caller.pid,
                comm: c.caller.comm.clone(),
                exec_id: c.caller.exec_id.clone(),
            });
        }
    }
    if let Some(q) = &tx.detail.question {
        let name = q.name.trim_end_matches('.');
        for a in &tx.detail.answers {
            if let Ok(ip) = a.data.parse::<IpAddr>() {
                en.remember_name(ip, name, tx.ktime);
            }
        }
    }
    let mut net = NetInfo::new(
        tx.detail.transport,
        tx.netns,
        tx.local,
        tx.remote,
        tx.cookie,
    );
    net.owned_by(tx.owner.as_ref());
    EventOf {
        time: en.clock().wall(tx.ktime),
        ktime: tx.ktime,
        cpu: 0,
        seq: None,
        process,
        detail: Dns {
            net,
            dns: tx.detail,
        },
    }
}
