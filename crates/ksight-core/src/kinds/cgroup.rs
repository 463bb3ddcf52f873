//! `cgroup`: a cgroup v2 directory was made (a container, a systemd unit or
//! session starting), by `process`.
//!
//! Born in bpf/cgroup.bpf.c (at `cgroup_mkdir`), in the maker's context. Its
//! path is remembered before the event is written, so the events of a cgroup
//! removed soon after (a container that runs one command) are still named:
//! every kind's `process.cgroup` and `process.container_id` rely on it.

use std::fmt::Write as _;

use ksight_wire::{ks_cgroup_event, ks_event_kind};
use serde::Serialize;

use crate::decode::{copy, task, DecodeError};
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::{Header, TaskFacts};
use crate::table::{Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cgroup {
    pub cgroup: CgroupDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupDetail {
    /// What the events of tasks in it carry as `process.cgroup_id`.
    pub id: u64,
    /// From the cgroup2 root: `/system.slice/docker-<id>.scope`.
    pub path: String,
    /// The path was longer than ksight copies (256 bytes): cut, and not
    /// remembered (events in it are named by a walk of the tree instead).
    pub truncated: bool,
}

/// A cgroup record, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawCgroup {
    pub task: TaskFacts,
    pub id: u64,
    pub path: String,
    pub truncated: bool,
}

impl KindSpec for Cgroup {
    const NAME: &'static str = "cgroup";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_CGROUP.0];
    type Record = RawCgroup;
    type State = ();

    fn decode(buf: &[u8], _hdr: Header) -> Result<RawCgroup, DecodeError> {
        let e: ks_cgroup_event = copy(buf, 0, "cgroup")?;
        let len = (e.len as usize).min(e.path.len());
        let bytes: Vec<u8> = e.path[..len].iter().map(|&c| c as u8).collect();
        // names are directory names (any byte but '/' and NUL): lossy
        // only for the rare non-UTF-8 one
        Ok(RawCgroup {
            task: task(&e.task),
            id: e.id,
            path: String::from_utf8_lossy(&bytes).into_owned(),
            truncated: e.truncated != 0,
        })
    }

    fn subject(c: &RawCgroup) -> Subject<'_> {
        Subject::Task {
            task: &c.task,
            also: None,
        }
    }

    fn born(hdr: Header, c: RawCgroup, _: &mut (), cx: &mut Cx<'_, Self>) {
        // whatever the filters say: later events in it need the name
        if !c.truncated {
            cx.enricher.learn_cgroup(c.id, &c.path);
        }
        if !cx.keep() {
            return cx.filtered();
        }
        let process = cx.enricher.process(&c.task);
        let cgroup = CgroupDetail {
            id: c.id,
            path: c.path,
            truncated: c.truncated,
        };
        cx.record_event(&hdr, Some(process), Cgroup { cgroup });
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("cgroup.id", FieldType::Int, |d| Value::uint(d.cgroup.id));
        f.add("cgroup.path", FieldType::Text, |d| {
            Value::Text(d.cgroup.path.as_bytes())
        });
        f.add("cgroup.truncated", FieldType::Bool, |d| {
            Value::Bool(d.cgroup.truncated)
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let _ = write!(cell, "mkdir {}", self.cgroup.path);
        if self.cgroup.truncated {
            cell.push("…");
        }
    }

    fn colour(&self) -> Colour {
        Colour::Blue
    }
}
