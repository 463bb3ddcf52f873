//! `fork`: a new process (or, with `--threads`, a new thread).
//!
//! Born in bpf/process.bpf.c (`on_fork`, at `sched_process_fork`, in the
//! parent's context): `process` is the parent, `child` what it created.

use std::fmt::Write as _;
use std::sync::Arc;

use ksight_wire::{ks_event_kind, ks_fork_event, ks_fork_flags};
use serde::Serialize;

use crate::decode::{copy, task, DecodeError};
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::{Header, TaskFacts};
use crate::table::{Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fork {
    pub child: Child,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Child {
    pub pid: u32,
    pub tid: u32,
    /// `null` for a thread: it shares its process's exec_id.
    pub exec_id: Option<Arc<str>>,
    pub thread: bool,
    pub pidns: u32,
    pub ns_pid: u32,
    pub ns_tid: u32,
}

/// A fork record, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawFork {
    /// The parent: the task that called fork/clone.
    pub task: TaskFacts,
    pub child_pid: u32,
    pub child_tid: u32,
    pub child_start_ns: u64,
    pub child_pidns: u32,
    pub child_ns_pid: u32,
    pub child_ns_tid: u32,
    pub thread: bool,
}

impl KindSpec for Fork {
    const NAME: &'static str = "fork";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_FORK.0];
    type Record = RawFork;
    type State = ();

    fn decode(buf: &[u8], _hdr: Header) -> Result<RawFork, DecodeError> {
        let e: ks_fork_event = copy(buf, 0, "fork")?;
        Ok(RawFork {
            task: task(&e.task),
            child_pid: e.child_pid,
            child_tid: e.child_tid,
            child_start_ns: e.child_start_ns,
            child_pidns: e.child_pidns_ino,
            child_ns_pid: e.child_ns_pid,
            child_ns_tid: e.child_ns_tid,
            thread: e.flags & ks_fork_flags::KS_FORK_THREAD.0 != 0,
        })
    }

    /// `--pid` also matches a fork's child.
    fn subject(f: &RawFork) -> Subject<'_> {
        Subject::Task {
            task: &f.task,
            also: Some(f.child_pid),
        }
    }

    /// A new process enters the table with its parent's exe and exec id as
    /// parent, whether or not the event is shown.
    fn born(hdr: Header, f: RawFork, _: &mut (), cx: &mut Cx<'_, Self>) {
        let keep = cx.keep();
        let en = &mut *cx.enricher;
        let process = en.process(&f.task);
        en.observe(&f.task, hdr.ktime_ns, "fork", false);
        let exec_id = if f.thread {
            None
        } else {
            let parent = en.entry(f.task.pid, f.task.start_ns, f.task.ppid);
            let (file, caps) = (parent.file, parent.caps);
            let mut child = en
                .table
                .bare_entry(f.child_pid, f.child_start_ns, f.task.pid);
            child.parent_exec_id = Some(process.exec_id.clone());
            child.exe = process.exe.clone();
            (child.file, child.caps) = (file, caps);
            let id = child.exec_id.clone();
            en.table.insert(child);
            Some(id)
        };
        if !keep {
            cx.counters.filtered += 1;
            return;
        }
        let child = Child {
            pid: f.child_pid,
            tid: f.child_tid,
            exec_id,
            thread: f.thread,
            pidns: f.child_pidns,
            ns_pid: f.child_ns_pid,
            ns_tid: f.child_ns_tid,
        };
        cx.record_event(&hdr, Some(process), Fork { child });
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("child.pid", FieldType::Int, |d| {
            Value::Int(d.child.pid.into())
        });
        f.add("child.tid", FieldType::Int, |d| {
            Value::Int(d.child.tid.into())
        });
        f.add("child.exec_id", FieldType::Text, |d| {
            d.child
                .exec_id
                .as_deref()
                .map_or(Value::Null, |s| Value::Text(s.as_bytes()))
        });
        f.add("child.thread", FieldType::Bool, |d| {
            Value::Bool(d.child.thread)
        });
        f.add("child.pidns", FieldType::Int, |d| {
            Value::Int(d.child.pidns.into())
        });
        f.add("child.ns_pid", FieldType::Int, |d| {
            Value::Int(d.child.ns_pid.into())
        });
        f.add("child.ns_tid", FieldType::Int, |d| {
            Value::Int(d.child.ns_tid.into())
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let c = &self.child;
        let what = if c.thread { "thread" } else { "child" };
        let id = if c.thread { c.tid } else { c.pid };
        let _ = write!(cell, "→ {what} {id}");
    }

    fn colour(&self) -> Colour {
        Colour::Cyan
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;
    use crate::decode::testing::*;
    use crate::record::{decode, Record};

    #[test]
    fn fork_round_trip() {
        let e = ks_fork_event {
            hdr: hdr(ks_event_kind::KS_EVENT_FORK, size_of::<ks_fork_event>()),
            task: wire_task(),
            child_pid: 20,
            child_tid: 21,
            child_start_ns: 99,
            child_pidns_ino: 7,
            child_ns_pid: 1,
            child_ns_tid: 1,
            flags: ks_fork_flags::KS_FORK_THREAD.0,
        };
        let Record::Fork(_, f) = decode(&bytes_of(&e)).unwrap() else {
            panic!("not fork")
        };
        assert_eq!((f.child_pid, f.child_tid, f.child_start_ns), (20, 21, 99));
        assert_eq!((f.child_pidns, f.child_ns_pid), (7, 1));
        assert!(f.thread);
        assert_eq!(f.task.ppid, 1);
    }
}
