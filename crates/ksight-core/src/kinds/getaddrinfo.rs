//! `getaddrinfo`: a libc getaddrinfo call, as the application saw it.
//!
//! Born in bpf/gai.bpf.c: a uprobe on entry (the name) and a uretprobe on
//! return (result, addresses, latency), two records of this kind. The call
//! is remembered between them, so that a `dns` event of a local resolver can
//! name the application waiting for that name (`dns.asked_by`).

use std::fmt::Write as _;
use std::net::IpAddr;

use ksight_wire::{ks_event_kind, ks_getaddrinfo_event, ks_getaddrinfo_phase};
use serde::Serialize;

use crate::decode::{copy, cstr, task, DecodeError, AF_INET, AF_INET6};
use crate::enrich::GaiCall;
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KernelState, KindSpec, Subject};
use crate::model::{EventOf, Header, TaskFacts};
use crate::table::{human_duration, Cell, Colour};
use crate::text::Text;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Getaddrinfo {
    pub getaddrinfo: GaiDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GaiDetail {
    pub name: Text,
    /// `ok`, or the EAI_* error (EAI_NONAME, EAI_AGAIN, ...); `pending`: it
    /// had not returned when ksight stopped.
    pub result: String,
    /// Up to 4 of the addresses returned.
    pub addresses: Vec<IpAddr>,
    /// The call's duration; for a `pending` one, how long it had waited.
    pub latency_ns: u64,
}

/// A getaddrinfo call (entered) or its result (returned), decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawGai {
    pub task: TaskFacts,
    /// `false`: the call was entered; `true`: it returned (ret, addrs, latency).
    pub returned: bool,
    pub name: Vec<u8>,
    pub ret: i32,
    pub latency_ns: u64,
    pub addrs: Vec<IpAddr>,
}

/// glibc's EAI_* codes.
pub fn eai_name(ret: i32) -> String {
    match ret {
        0 => "ok".into(),
        -1 => "EAI_BADFLAGS".into(),
        -2 => "EAI_NONAME".into(),
        -3 => "EAI_AGAIN".into(),
        -4 => "EAI_FAIL".into(),
        -6 => "EAI_FAMILY".into(),
        -7 => "EAI_SOCKTYPE".into(),
        -8 => "EAI_SERVICE".into(),
        -10 => "EAI_MEMORY".into(),
        -11 => "EAI_SYSTEM".into(),
        -5 => "EAI_NODATA".into(),
        n => format!("EAI_{n}"),
    }
}

impl KindSpec for Getaddrinfo {
    const NAME: &'static str = "getaddrinfo";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_GETADDRINFO.0];
    type Record = RawGai;
    type State = ();

    fn decode(buf: &[u8], _hdr: Header) -> Result<RawGai, DecodeError> {
        let e: ks_getaddrinfo_event = copy(buf, 0, "getaddrinfo")?;
        // getaddrinfo lists an address once per socket type: keep each once
        let mut addrs: Vec<IpAddr> = Vec::new();
        for (a, f) in e.addrs.iter().zip(e.families) {
            let ip = match f {
                AF_INET => IpAddr::from([a[0], a[1], a[2], a[3]]),
                AF_INET6 => IpAddr::from(*a),
                _ => continue,
            };
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
        Ok(RawGai {
            task: task(&e.task),
            returned: e.phase == ks_getaddrinfo_phase::KS_GAI_RETURN.0,
            name: cstr(&e.name),
            ret: e.ret,
            latency_ns: e.latency_ns,
            addrs,
        })
    }

    fn subject(g: &RawGai) -> Subject<'_> {
        Subject::Task {
            task: &g.task,
            also: None,
        }
    }

    /// Entered: remembered (for `dns.asked_by`). Returned: forgotten, its
    /// addresses remembered under the name, and the event.
    fn born(hdr: Header, g: RawGai, _: &mut (), cx: &mut Cx<'_, Self>) {
        let keep = cx.keep();
        let en = &mut *cx.enricher;
        let name = String::from_utf8_lossy(&g.name)
            .trim_end_matches('.')
            .to_string();
        let process = en.process(&g.task);
        if !g.returned {
            if en.gai_calls.len() >= 4096 {
                en.gai_calls.clear();
            }
            en.gai_calls.push(GaiCall {
                name,
                ktime: hdr.ktime_ns,
                caller: process,
            });
            return;
        }
        en.gai_calls.retain(|c| {
            !(c.name == name && c.caller.pid == process.pid && c.caller.tid == process.tid)
        });
        for ip in &g.addrs {
            en.remember_name(*ip, &name, hdr.ktime_ns);
        }
        if !keep {
            cx.counters.filtered += 1;
            return;
        }
        let getaddrinfo = GaiDetail {
            name: Text::from(g.name),
            result: eai_name(g.ret),
            addresses: g.addrs,
            latency_ns: g.latency_ns,
        };
        cx.record_event(&hdr, Some(process), Getaddrinfo { getaddrinfo });
    }

    /// At stop, every call still waiting for its return: reported, result
    /// `pending`, with how long it had waited (its state would go otherwise).
    fn tick(_: &mut (), cx: &mut Cx<'_, Self>, _: &dyn KernelState, last: bool) {
        if !last {
            return;
        }
        let now = cx.now;
        let calls = std::mem::take(&mut cx.enricher.gai_calls);
        cx.counters.gai_pending += calls.len() as u64;
        for c in calls {
            let getaddrinfo = GaiDetail {
                name: Text::from(c.name.into_bytes()),
                result: "pending".into(),
                addresses: Vec::new(),
                latency_ns: now.saturating_sub(c.ktime),
            };
            let ev = EventOf {
                time: cx.enricher.clock().wall(now),
                ktime: now,
                cpu: 0,
                seq: None,
                process: Some(c.caller),
                detail: Getaddrinfo { getaddrinfo },
            };
            cx.emit(ev);
        }
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("getaddrinfo.name", FieldType::Text, |d| {
            Value::text(&d.getaddrinfo.name)
        });
        f.add("getaddrinfo.result", FieldType::Text, |d| {
            Value::Text(d.getaddrinfo.result.as_bytes())
        });
        f.add(
            "getaddrinfo.addresses",
            FieldType::List(&FieldType::Ip),
            |d| {
                Value::List(
                    d.getaddrinfo
                        .addresses
                        .iter()
                        .map(|a| Value::Ip(*a))
                        .collect(),
                )
            },
        );
        f.add("getaddrinfo.latency_ns", FieldType::Duration, |d| {
            Value::uint(d.getaddrinfo.latency_ns)
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let g = &self.getaddrinfo;
        let _ = write!(cell, "getaddrinfo({}) {}", g.name, g.result);
        for a in &g.addresses {
            let _ = write!(cell, " {a}");
        }
        let _ = write!(cell, " ({})", human_duration(g.latency_ns));
    }

    fn colour(&self) -> Colour {
        Colour::Cyan
    }
}
