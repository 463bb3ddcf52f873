//! `file`: a watched (sensitive) file was opened, written, created, removed,
//! renamed or had its mode or owner changed.
//!
//! Born in the kernel's fanotify queue, not in BPF: ksight-bpf's `files`
//! marks the watched files and directories (`--file-watch`; by default
//! secrets such as /etc/shadow and ~/.ssh, and the places of persistence
//! such as /etc/cron.d and /etc/systemd/system), reads what the kernel queued
//! after each poll (after the ring buffer, so the process's exec came first),
//! and hands it here through [`KernelState::file_events`]. fanotify names the
//! process by pid: its identity comes from /proc while it runs, else from the
//! process table.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use crate::decode::DecodeError;
use crate::field::{FieldType, Fields, Value};
use crate::files::{FileOp, RawFileEvent};
use crate::kind::{Cx, KernelState, KindSpec, NoRecord};
use crate::model::{Header, Process};
use crate::table::{Cell, Colour};
use crate::text::Text;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct File {
    pub file: FileDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDetail {
    pub op: FileOp,
    pub path: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Text>,
    pub dir: bool,
    /// The watch entry that matched.
    pub watch: Arc<str>,
    /// In another mount namespace: a process of it (paths as it sees them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_pid: Option<u32>,
    /// The inode right after the event; absent when it is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Octal, as `ls` and `chmod` say it (`"4755"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setuid: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
}

impl FileDetail {
    fn of(e: RawFileEvent) -> Self {
        let st = e.stat;
        FileDetail {
            op: e.op,
            path: e.path,
            from: e.from,
            to: e.to,
            dir: e.dir,
            watch: e.watch,
            root_pid: e.root_pid,
            size: st.map(|s| s.size),
            mode: st.map(|s| format!("{:o}", s.mode & 0o7777)),
            setuid: st.map(|s| s.mode & 0o6000 != 0),
            uid: st.map(|s| s.uid),
            gid: st.map(|s| s.gid),
            inode: st.map(|s| s.inode),
        }
    }
}

/// Events waiting for the records before them (`side_delay_ns`), and the
/// processes looked up in one poll's batch, by pid: a storm of events from
/// one process reads /proc once.
#[derive(Default)]
pub struct Batch {
    waiting: std::collections::VecDeque<RawFileEvent>,
    seen: Vec<(u32, Option<Process>)>,
}

impl KindSpec for File {
    const NAME: &'static str = "file";
    const WIRE: &'static [u32] = &[];
    type Record = NoRecord;
    type State = Batch;

    fn decode(_buf: &[u8], _hdr: Header) -> Result<NoRecord, DecodeError> {
        unreachable!("no record has the kind `file`: WIRE is empty")
    }

    fn born(_hdr: Header, never: NoRecord, _: &mut Batch, _cx: &mut Cx<'_, Self>) {
        match never {}
    }

    fn tick(b: &mut Batch, cx: &mut Cx<'_, Self>, kernel: &dyn KernelState, last: bool) {
        b.seen.clear();
        b.waiting.extend(kernel.file_events());
        let due = cx.now.saturating_sub(cx.config.side_delay_ns);
        while let Some(e) = b.waiting.pop_front_if(|e| last || e.ktime <= due) {
            let pid = e.pid;
            let process = match b.seen.iter().find(|(p, _)| *p == pid) {
                Some((_, p)) => p.clone(),
                None => {
                    let p = cx.enricher.task_of(pid).map(|t| cx.enricher.owner(&t));
                    if b.seen.len() < 64 {
                        b.seen.push((pid, p.clone()));
                    }
                    p
                }
            };
            let ktime = e.ktime;
            cx.state_event(
                ktime,
                process,
                File {
                    file: FileDetail::of(e),
                },
            );
        }
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("file.op", FieldType::Enum(FileOp::NAMES), |d| {
            Value::Text(d.file.op.name().as_bytes())
        });
        f.add("file.path", FieldType::Text, |d| {
            Value::Text(d.file.path.as_bytes())
        });
        f.add("file.from", FieldType::Text, |d| {
            Value::opt_text(d.file.from.as_ref())
        });
        f.add("file.to", FieldType::Text, |d| {
            Value::opt_text(d.file.to.as_ref())
        });
        f.add("file.dir", FieldType::Bool, |d| Value::Bool(d.file.dir));
        f.add("file.watch", FieldType::Text, |d| {
            Value::Text(d.file.watch.as_bytes())
        });
        f.add("file.root_pid", FieldType::Int, |d| {
            Value::opt_int(d.file.root_pid.map(u64::from))
        });
        f.add("file.size", FieldType::Int, |d| Value::opt_int(d.file.size));
        f.add("file.mode", FieldType::Text, |d| {
            d.file
                .mode
                .as_ref()
                .map_or(Value::Null, |m| Value::Text(m.as_bytes()))
        });
        f.add("file.setuid", FieldType::Bool, |d| {
            d.file.setuid.map_or(Value::Null, Value::Bool)
        });
        f.add("file.uid", FieldType::Int, |d| {
            Value::opt_int(d.file.uid.map(u64::from))
        });
        f.add("file.gid", FieldType::Int, |d| {
            Value::opt_int(d.file.gid.map(u64::from))
        });
        f.add("file.inode", FieldType::Int, |d| {
            Value::opt_int(d.file.inode)
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let f = &self.file;
        let mut s = format!("{} {}", f.op.name(), f.path);
        match f.op {
            FileOp::Rename => match (&f.from, &f.to) {
                (Some(from), Some(to)) => {
                    s = format!("rename {from} -> {to}");
                }
                (Some(from), None) => {
                    let _ = write!(s, " (from {from})");
                }
                (None, Some(to)) if to != &f.path => {
                    let _ = write!(s, " (to {to})");
                }
                _ => {}
            },
            FileOp::Write => {
                if let Some(n) = f.size {
                    let _ = write!(s, " ({n} B)");
                }
            }
            FileOp::Attrib => {
                if let (Some(m), Some(u), Some(g)) = (&f.mode, f.uid, f.gid) {
                    let _ = write!(s, " mode {m} owner {u}:{g}");
                }
            }
            _ => {}
        }
        cell.push(&s);
    }

    fn colour(&self) -> Colour {
        match self.file.op {
            FileOp::Open => Colour::Plain,
            _ => Colour::Yellow,
        }
    }
}
