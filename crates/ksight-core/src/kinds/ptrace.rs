//! `ptrace`: a process gained access to another one's memory: ptrace attach
//! or seize (gdb -p, strace -p), process_vm_readv/writev, /proc/PID/mem,
//! pidfd_getfd.
//!
//! Born in bpf/ptrace.bpf.c, at the kernel's access check
//! (`security_ptrace_access_check` in attach mode) through fentry or a kprobe,
//! whichever the kernel allows; where neither, the kind is unavailable and
//! the doctor says why. `process` is the one asking, `ptrace.target` the one
//! it reaches into.

use std::fmt::Write as _;

use ksight_wire::{ks_event_kind, ks_ptrace_event};
use serde::Serialize;

use crate::decode::{copy, task, DecodeError};
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::{Header, Process, TaskFacts};
use crate::table::{Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ptrace {
    pub ptrace: PtraceDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PtraceDetail {
    /// The syscall that asked: `ptrace`, `process_vm_writev`,
    /// `process_vm_readv`, `open` (/proc/PID/mem and the like), `pidfd_getfd`,
    /// `perf_event_open`, ...; `syscall_<n>` for others.
    pub syscall: String,
    /// ptrace's request, when the syscall is ptrace: `attach`, `seize`, or
    /// its number.
    pub request: Option<String>,
    /// The process it reaches into.
    pub target: Process,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawPtrace {
    pub task: TaskFacts,
    pub target: TaskFacts,
    pub syscall: u64,
    pub arg0: u64,
    pub mode: u32,
}

/// x86-64 syscall numbers that reach the access check in attach mode.
fn syscall_name(nr: u64) -> String {
    match nr {
        2 | 257 | 437 => "open",
        101 => "ptrace",
        298 => "perf_event_open",
        310 => "process_vm_readv",
        311 => "process_vm_writev",
        312 => "kcmp",
        438 => "pidfd_getfd",
        440 => "process_madvise",
        _ => return format!("syscall_{nr}"),
    }
    .to_string()
}

fn request_name(r: u64) -> String {
    match r {
        16 => "attach".into(),
        0x4206 => "seize".into(),
        n => n.to_string(),
    }
}

impl KindSpec for Ptrace {
    const NAME: &'static str = "ptrace";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_PTRACE.0];
    type Record = RawPtrace;
    type State = ();

    fn decode(buf: &[u8], _hdr: Header) -> Result<RawPtrace, DecodeError> {
        let e: ks_ptrace_event = copy(buf, 0, "ptrace")?;
        Ok(RawPtrace {
            task: task(&e.task),
            target: task(&e.target),
            syscall: e.syscall,
            arg0: e.arg0,
            mode: e.mode,
        })
    }

    fn subject(p: &RawPtrace) -> Subject<'_> {
        Subject::Task {
            task: &p.task,
            also: None,
        }
    }

    fn born(hdr: Header, p: RawPtrace, _: &mut (), cx: &mut Cx<'_, Self>) {
        if !cx.keep() {
            return cx.filtered();
        }
        let en = &mut *cx.enricher;
        let process = en.process(&p.task);
        en.observe(&p.task, hdr.ktime_ns, "ptrace", false);
        let target = en.process(&p.target);
        let syscall = syscall_name(p.syscall);
        let request = (p.syscall == 101).then(|| request_name(p.arg0));
        cx.record_event(
            &hdr,
            Some(process),
            Ptrace {
                ptrace: PtraceDetail {
                    syscall,
                    request,
                    target,
                },
            },
        );
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("ptrace.syscall", FieldType::Text, |d| {
            Value::Text(d.ptrace.syscall.as_bytes())
        });
        f.add("ptrace.request", FieldType::Text, |d| {
            Value::opt_str(d.ptrace.request.as_deref())
        });
        f.add("ptrace.target.pid", FieldType::Int, |d| {
            Value::Int(d.ptrace.target.pid.into())
        });
        f.add("ptrace.target.uid", FieldType::Int, |d| {
            Value::Int(d.ptrace.target.uid.into())
        });
        f.add("ptrace.target.comm", FieldType::Text, |d| {
            Value::text(&d.ptrace.target.comm)
        });
        f.add("ptrace.target.exe", FieldType::Text, |d| {
            Value::opt_text(d.ptrace.target.exe.as_deref())
        });
        f.add("ptrace.target.exec_id", FieldType::Text, |d| {
            Value::Text(d.ptrace.target.exec_id.as_bytes())
        });
        f.add("ptrace.target.container_id", FieldType::Text, |d| {
            d.ptrace
                .target
                .container_id
                .as_deref()
                .map_or(Value::Null, |c| Value::Text(c.as_bytes()))
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let p = &self.ptrace;
        cell.push(&p.syscall);
        if let Some(r) = &p.request {
            let _ = write!(cell, " {r}");
        }
        let _ = write!(cell, " → {} {}", p.target.pid, p.target.comm);
    }

    fn colour(&self) -> Colour {
        Colour::Red
    }
}
