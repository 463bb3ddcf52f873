//! `exit`: a process ended (its last thread), or with `--threads` a thread.
//!
//! Born in bpf/process.bpf.c (`on_exit`, at `sched_process_exit`). Reported
//! once per process even when several threads race to exit last: the table
//! keeps the first exit and the others are counted as duplicates.

use std::fmt::Write as _;

use ksight_wire::{ks_event_kind, ks_exit_event, ks_exit_flags};
use serde::Serialize;

use crate::decode::{copy, task, DecodeError};
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::{signal_name, Header, TaskFacts};
use crate::table::{human_duration, Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exit {
    pub exit: ExitDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExitDetail {
    /// exit(2) status; `null` when a signal ended the process.
    pub code: Option<u8>,
    /// The signal that ended the process; `null` for a normal exit.
    pub signal: Option<u8>,
    pub signal_name: Option<&'static str>,
    pub core_dumped: bool,
    pub lifetime_ns: u64,
    pub utime_ns: u64,
    pub stime_ns: u64,
    pub thread: bool,
}

impl ExitDetail {
    /// From a wait(2)-style status (`task->exit_code`).
    pub fn new(
        exit_code: u32,
        lifetime_ns: u64,
        utime_ns: u64,
        stime_ns: u64,
        thread: bool,
    ) -> Self {
        let sig = (exit_code & 0x7f) as u8;
        let (code, signal, core_dumped) = if sig == 0 {
            (Some(((exit_code >> 8) & 0xff) as u8), None, false)
        } else {
            (None, Some(sig), exit_code & 0x80 != 0)
        };
        ExitDetail {
            code,
            signal,
            signal_name: signal.and_then(signal_name),
            core_dumped,
            lifetime_ns,
            utime_ns,
            stime_ns,
            thread,
        }
    }
}

/// An exit record, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawExit {
    pub task: TaskFacts,
    /// `task->exit_code`, laid out as a wait(2) status.
    pub exit_code: u32,
    pub utime_ns: u64,
    pub stime_ns: u64,
    pub thread: bool,
}

impl KindSpec for Exit {
    const NAME: &'static str = "exit";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_EXIT.0];
    type Record = RawExit;
    type State = ();

    fn decode(buf: &[u8], _hdr: Header) -> Result<RawExit, DecodeError> {
        let e: ks_exit_event = copy(buf, 0, "exit")?;
        Ok(RawExit {
            task: task(&e.task),
            exit_code: e.exit_code,
            utime_ns: e.utime_ns,
            stime_ns: e.stime_ns,
            thread: e.flags & ks_exit_flags::KS_EXIT_THREAD.0 != 0,
        })
    }

    fn subject(x: &RawExit) -> Subject<'_> {
        Subject::Task {
            task: &x.task,
            also: None,
        }
    }

    /// The table marks the process exited (it is forgotten after the grace
    /// period); a second exit of one process is dropped and counted.
    fn born(hdr: Header, x: RawExit, _: &mut (), cx: &mut Cx<'_, Self>) {
        let keep = cx.keep();
        let en = &mut *cx.enricher;
        let process = en.process(&x.task);
        en.observe(&x.task, hdr.ktime_ns, "exit", false);
        if !x.thread
            && !en
                .table
                .mark_exited(x.task.pid, x.task.start_ns, hdr.ktime_ns)
        {
            cx.counters.duplicate_exits += 1;
            return;
        }
        if !x.thread {
            en.gai_targets.exited(x.task.pid);
        }
        if !keep {
            cx.counters.filtered += 1;
            return;
        }
        let lifetime = en
            .clock()
            .mono_to_boot(hdr.ktime_ns)
            .saturating_sub(x.task.start_ns);
        let exit = ExitDetail::new(x.exit_code, lifetime, x.utime_ns, x.stime_ns, x.thread);
        cx.record_event(&hdr, Some(process), Exit { exit });
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("exit.code", FieldType::Int, |d| {
            d.exit.code.map_or(Value::Null, |n| Value::Int(n.into()))
        });
        f.add("exit.signal", FieldType::Int, |d| {
            d.exit.signal.map_or(Value::Null, |n| Value::Int(n.into()))
        });
        f.add("exit.signal_name", FieldType::Text, |d| {
            d.exit
                .signal_name
                .map_or(Value::Null, |n| Value::Text(n.as_bytes()))
        });
        f.add("exit.core_dumped", FieldType::Bool, |d| {
            Value::Bool(d.exit.core_dumped)
        });
        f.add("exit.lifetime_ns", FieldType::Duration, |d| {
            Value::uint(d.exit.lifetime_ns)
        });
        f.add("exit.utime_ns", FieldType::Duration, |d| {
            Value::uint(d.exit.utime_ns)
        });
        f.add("exit.stime_ns", FieldType::Duration, |d| {
            Value::uint(d.exit.stime_ns)
        });
        f.add("exit.thread", FieldType::Bool, |d| {
            Value::Bool(d.exit.thread)
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let exit = &self.exit;
        match (exit.code, exit.signal_name, exit.signal) {
            (Some(code), _, _) => {
                let _ = write!(cell, "code {code}");
            }
            (None, Some(name), _) => cell.push(name),
            (None, None, Some(sig)) => {
                let _ = write!(cell, "signal {sig}");
            }
            (None, None, None) => cell.push("?"),
        }
        if exit.core_dumped {
            cell.push(" (core dumped)");
        }
        let _ = write!(cell, "  after {}", human_duration(exit.lifetime_ns));
        if exit.thread {
            cell.push("  [thread]");
        }
    }

    fn colour(&self) -> Colour {
        match (self.exit.signal, self.exit.code) {
            (Some(_), _) => Colour::Red,
            (None, Some(0)) => Colour::Plain,
            _ => Colour::Yellow,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;
    use crate::decode::testing::*;
    use crate::record::{decode, Record};

    #[test]
    fn exit_round_trip() {
        let e = ks_exit_event {
            hdr: hdr(ks_event_kind::KS_EVENT_EXIT, size_of::<ks_exit_event>()),
            task: wire_task(),
            utime_ns: 5,
            stime_ns: 6,
            exit_code: 9 | 0x80,
            flags: 0,
        };
        let Record::Exit(_, x) = decode(&bytes_of(&e)).unwrap() else {
            panic!("not exit")
        };
        assert_eq!(
            (x.exit_code, x.utime_ns, x.stime_ns, x.thread),
            (0x89, 5, 6, false)
        );
    }

    #[test]
    fn exit_status_split() {
        let s = |c| {
            let d = ExitDetail::new(c, 0, 0, 0, false);
            (d.code, d.signal, d.core_dumped)
        };
        assert_eq!(s(42 << 8), (Some(42), None, false));
        assert_eq!(s(9), (None, Some(9), false));
        assert_eq!(s(11 | 0x80), (None, Some(11), true));
        assert_eq!(s(0), (Some(0), None, false));
    }
}
