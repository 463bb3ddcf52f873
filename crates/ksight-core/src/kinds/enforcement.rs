//! `enforcement`: a rule with an `action` acted (a connect denied, an exec
//! killed) or, in monitor mode, would have.
//!
//! Born in bpf/enforce.bpf.c: at cgroup/connect4/6 and sendmsg4/6 for
//! `deny_connect` and `deny_domain` (in the caller's context, before anything
//! is sent), at sched_process_exec for `kill` (in the new image's context,
//! before it runs). `process` is the caller (deny) or the killed process.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ksight_wire::{ks_enf_action, ks_enf_result, ks_enforce_event, ks_event_kind};
use serde::Serialize;

use crate::context::Dev;
use crate::decode::{copy, task, DecodeError};
use crate::enforce::Action;
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::{Header, TaskFacts};
use crate::net::{Endpoint, Protocol};
use crate::table::{Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enforcement {
    pub enforcement: EnforcementDetail,
    /// deny: the destination refused (the `net.*` fields of `connect` and
    /// `udp`, so that a rule's output and dedup read the same fields on both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<EnforcedNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnforcedNet {
    pub protocol: Protocol,
    pub remote: Endpoint,
    /// The name DNS answered for the destination, when ksight saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_name: Option<String>,
}

crate::named_enum! {
    /// What happened.
    pub enum EnforceResult {
        /// the connect()/sendto() failed with EPERM; nothing was sent
        Denied = "denied",
        /// monitor mode: it was let through
        WouldDeny = "would_deny",
        /// SIGKILL before the new image ran
        Killed = "killed",
        /// monitor mode: it was let run
        WouldKill = "would_kill",
        /// the kernel refused to send the signal
        Failed = "failed",
        /// kill_userspace: the process had exited, or was another image by then
        Gone = "gone",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnforcementDetail {
    pub action: Action,
    /// The rule's id (`rule-<bit>` if ksight does not know it: a program
    /// pinned by another run).
    pub rule: String,
    pub result: EnforceResult,
    /// kill: the executed file's identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileId>,
}

impl Enforcement {
    /// The `enforcement` event of a kill from userspace of `ev`'s process
    /// (`kill_userspace`, or a `kill` by content whose hash was not known
    /// at exec): made by ksight, after `ev`.
    pub fn userspace_kill(
        ev: &crate::event::Event,
        rule: &str,
        action: Action,
        result: EnforceResult,
    ) -> crate::event::Event {
        crate::event::Event {
            time: ev.time,
            ktime: ev.ktime,
            cpu: ev.cpu,
            seq: None,
            process: ev.process.clone(),
            detail: Enforcement {
                enforcement: EnforcementDetail {
                    action,
                    rule: rule.to_string(),
                    result,
                    file: None,
                },
                net: None,
            }
            .into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FileId {
    pub dev: Dev,
    pub ino: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawEnforcement {
    pub task: TaskFacts,
    pub rule: u32,
    pub action: u32,
    pub result: u32,
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub sotype: u16,
    pub exe: Option<(u32, u64)>,
}

impl KindSpec for Enforcement {
    const NAME: &'static str = "enforcement";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_ENFORCEMENT.0];
    type Record = RawEnforcement;
    type State = ();

    fn decode(buf: &[u8], _hdr: Header) -> Result<RawEnforcement, DecodeError> {
        let e: ks_enforce_event = copy(buf, 0, "enforcement")?;
        let addr = match e.family {
            2 => Some(IpAddr::V4(Ipv4Addr::new(
                e.addr[0], e.addr[1], e.addr[2], e.addr[3],
            ))),
            10 => Some(IpAddr::V6(Ipv6Addr::from(e.addr))),
            _ => None,
        };
        let kill = e.action == ks_enf_action::KS_ENF_KILL.0;
        Ok(RawEnforcement {
            task: task(&e.task),
            rule: e.rule,
            action: e.action,
            result: e.result,
            addr: if kill { None } else { addr },
            port: e.port,
            sotype: e.sotype,
            exe: kill.then_some((e.exe_dev, e.exe_ino)),
        })
    }

    fn subject(r: &RawEnforcement) -> Subject<'_> {
        Subject::Task {
            task: &r.task,
            also: None,
        }
    }

    fn born(hdr: Header, r: RawEnforcement, _: &mut (), cx: &mut Cx<'_, Self>) {
        if !cx.keep() {
            return cx.filtered();
        }
        let process = cx.enricher.process(&r.task);
        let action = match r.action {
            a if a == ks_enf_action::KS_ENF_KILL.0 => Action::Kill,
            a if a == ks_enf_action::KS_ENF_DENY_DOMAIN.0 => Action::DenyDomain,
            _ => Action::DenyConnect,
        };
        let result = match r.result {
            x if x == ks_enf_result::KS_ENF_DENIED.0 => EnforceResult::Denied,
            x if x == ks_enf_result::KS_ENF_WOULD_DENY.0 => EnforceResult::WouldDeny,
            x if x == ks_enf_result::KS_ENF_KILLED.0 => EnforceResult::Killed,
            x if x == ks_enf_result::KS_ENF_WOULD_KILL.0 => EnforceResult::WouldKill,
            _ => EnforceResult::Failed,
        };
        let rule = cx
            .config
            .enforce_rules
            .get(r.rule as usize)
            .map_or_else(|| format!("rule-{}", r.rule), |id| id.to_string());
        let net = r.addr.map(|addr| EnforcedNet {
            protocol: if r.sotype == 2 {
                Protocol::Udp
            } else {
                Protocol::Tcp
            },
            remote: Endpoint { addr, port: r.port },
            remote_name: cx.enricher.name_of(addr, hdr.ktime_ns),
        });
        let enforcement = EnforcementDetail {
            action,
            rule,
            result,
            file: r.exe.map(|(dev, ino)| FileId { dev: Dev(dev), ino }),
        };
        cx.record_event(&hdr, Some(process), Enforcement { enforcement, net });
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("enforcement.action", FieldType::Enum(Action::NAMES), |d| {
            Value::Text(d.enforcement.action.name().as_bytes())
        });
        f.add("enforcement.rule", FieldType::Text, |d| {
            Value::Text(d.enforcement.rule.as_bytes())
        });
        f.add(
            "enforcement.result",
            FieldType::Enum(EnforceResult::NAMES),
            |d| Value::Text(d.enforcement.result.name().as_bytes()),
        );
        f.add("enforcement.file.ino", FieldType::Int, |d| {
            Value::opt_int(d.enforcement.file.map(|f| f.ino))
        });
        f.add("net.protocol", FieldType::Enum(Protocol::NAMES), |d| {
            d.net
                .as_ref()
                .map_or(Value::Null, |n| Value::Text(n.protocol.name().as_bytes()))
        });
        f.add("net.remote.addr", FieldType::Ip, |d| {
            d.net
                .as_ref()
                .map_or(Value::Null, |n| Value::Ip(n.remote.addr))
        });
        f.add("net.remote.port", FieldType::Int, |d| {
            Value::opt_int(d.net.as_ref().map(|n| u64::from(n.remote.port)))
        });
        f.add("net.remote_name", FieldType::Text, |d| {
            Value::opt_str(d.net.as_ref().and_then(|n| n.remote_name.as_deref()))
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let e = &self.enforcement;
        let _ = write!(cell, "{} {} by {}", e.result, e.action, e.rule);
        if let Some(net) = &self.net {
            let _ = write!(cell, "  → {} {}", net.protocol, net.remote);
            if let Some(n) = &net.remote_name {
                let _ = write!(cell, " ({n})");
            }
        }
    }

    fn colour(&self) -> Colour {
        match self.enforcement.result {
            EnforceResult::WouldDeny | EnforceResult::WouldKill => Colour::Yellow,
            _ => Colour::Red,
        }
    }
}
