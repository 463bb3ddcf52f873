//! `signal`: a process sent another one a signal that ends or stops it by
//! default (SIGKILL, SIGTERM, SIGSTOP, SIGSEGV, ...), or the kernel sent a
//! SIGKILL (the OOM killer).
//!
//! Born in bpf/signal.bpf.c (at `signal_generate`), in the sender's context:
//! `process` is the sender, `signal.target` the process it was sent to. Not
//! reported: signals a process sends itself, SIGCHLD and the other signals
//! whose default is to be ignored, real-time signals, and signals from timers
//! and faults.

use std::fmt::Write as _;

use ksight_wire::{ks_event_kind, ks_signal_event};
use serde::Serialize;

use crate::decode::{copy, task, DecodeError};
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::{signal_name, Header, Process, TaskFacts};
use crate::table::{Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signal {
    pub signal: SignalDetail,
}

crate::named_enum! {
    /// Who sent it, by the kernel's si_code.
    pub enum SignalCode {
        /// kill(2), pidfd_send_signal(2)
        User = "user",
        /// sigqueue(3)
        Queue = "queue",
        /// tkill(2), tgkill(2)
        Tkill = "tkill",
        /// the kernel itself (a SIGKILL: the OOM killer)
        Kernel = "kernel",
        Other = "other",
    }
}

crate::named_enum! {
    /// What became of it (the kernel's TRACE_SIGNAL_*).
    pub enum SignalResult {
        Delivered = "delivered",
        Ignored = "ignored",
        AlreadyPending = "already_pending",
        Overflow = "overflow",
        LostInfo = "lost_info",
        Unknown = "unknown",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignalDetail {
    pub number: u8,
    pub name: Option<&'static str>,
    pub code: SignalCode,
    pub result: SignalResult,
    /// Sent to the whole process, not to one of its threads.
    pub group: bool,
    /// The process it was sent to.
    pub target: Process,
}

/// A signal record, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawSignal {
    /// The sender.
    pub task: TaskFacts,
    pub target: TaskFacts,
    pub sig: i32,
    pub code: i32,
    pub result: u32,
    pub group: bool,
}

impl KindSpec for Signal {
    const NAME: &'static str = "signal";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_SIGNAL.0];
    type Record = RawSignal;
    type State = ();

    fn decode(buf: &[u8], _hdr: Header) -> Result<RawSignal, DecodeError> {
        let e: ks_signal_event = copy(buf, 0, "signal")?;
        Ok(RawSignal {
            task: task(&e.task),
            target: task(&e.target),
            sig: e.sig,
            code: e.code,
            result: e.result,
            group: e.group != 0,
        })
    }

    fn subject(s: &RawSignal) -> Subject<'_> {
        Subject::Task {
            task: &s.task,
            also: None,
        }
    }

    fn born(hdr: Header, s: RawSignal, _: &mut (), cx: &mut Cx<'_, Self>) {
        if !cx.keep() {
            return cx.filtered();
        }
        let en = &mut *cx.enricher;
        let process = en.process(&s.task);
        en.observe(&s.task, hdr.ktime_ns, "signal", false);
        let target = en.process(&s.target);
        let number = u8::try_from(s.sig).unwrap_or(0);
        let signal = SignalDetail {
            number,
            name: signal_name(number),
            code: match s.code {
                0 => SignalCode::User,
                -1 => SignalCode::Queue,
                -6 => SignalCode::Tkill,
                0x80 => SignalCode::Kernel,
                _ => SignalCode::Other,
            },
            result: match s.result {
                0 => SignalResult::Delivered,
                1 => SignalResult::Ignored,
                2 => SignalResult::AlreadyPending,
                3 => SignalResult::Overflow,
                4 => SignalResult::LostInfo,
                _ => SignalResult::Unknown,
            },
            group: s.group,
            target,
        };
        cx.record_event(&hdr, Some(process), Signal { signal });
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("signal.number", FieldType::Int, |d| {
            Value::Int(d.signal.number.into())
        });
        f.add("signal.name", FieldType::Text, |d| {
            d.signal
                .name
                .map_or(Value::Null, |n| Value::Text(n.as_bytes()))
        });
        f.add("signal.code", FieldType::Enum(SignalCode::NAMES), |d| {
            Value::Text(d.signal.code.name().as_bytes())
        });
        f.add("signal.result", FieldType::Enum(SignalResult::NAMES), |d| {
            Value::Text(d.signal.result.name().as_bytes())
        });
        f.add("signal.group", FieldType::Bool, |d| {
            Value::Bool(d.signal.group)
        });
        f.add("signal.target.pid", FieldType::Int, |d| {
            Value::Int(d.signal.target.pid.into())
        });
        f.add("signal.target.tid", FieldType::Int, |d| {
            Value::Int(d.signal.target.tid.into())
        });
        f.add("signal.target.uid", FieldType::Int, |d| {
            Value::Int(d.signal.target.uid.into())
        });
        f.add("signal.target.comm", FieldType::Text, |d| {
            Value::text(&d.signal.target.comm)
        });
        f.add("signal.target.exe", FieldType::Text, |d| {
            Value::opt_text(d.signal.target.exe.as_deref())
        });
        f.add("signal.target.exec_id", FieldType::Text, |d| {
            Value::Text(d.signal.target.exec_id.as_bytes())
        });
        f.add("signal.target.container_id", FieldType::Text, |d| {
            d.signal
                .target
                .container_id
                .as_deref()
                .map_or(Value::Null, |c| Value::Text(c.as_bytes()))
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let s = &self.signal;
        match s.name {
            Some(name) => cell.push(name),
            None => {
                let _ = write!(cell, "signal {}", s.number);
            }
        }
        let _ = write!(cell, " → {} {}", s.target.pid, s.target.comm);
        if s.code != SignalCode::User {
            let _ = write!(cell, " ({})", s.code);
        }
        if s.result != SignalResult::Delivered {
            let _ = write!(cell, " [{}]", s.result);
        }
    }

    fn colour(&self) -> Colour {
        Colour::Red
    }
}
