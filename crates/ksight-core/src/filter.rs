//! Which events the user asked to see.
//!
//! (cgroups are filtered in the kernel, where it saves buffer space: see
//! `ksight_bpf::Config::cgroups`.)
//!
//! Within one criterion the values are alternatives (`--pid 1 --pid 2`: either);
//! different criteria must all hold. `lost` events always pass: a filter never
//! hides that something was lost.
//!
//! Criteria are read through the field registry (`process.pid`, `child.pid`,
//! `process.comm`, `process.uid`, `process.container_id`). Those a record
//! already decides (pid, comm, uid: the kernel's task facts) are also checked
//! by [`Filter::pre`] before any enrichment, so a filtered-out record costs no
//! table lookup, /proc read or cgroup resolution.

use std::collections::BTreeSet;

use crate::event::{Event, Kind, TaskFacts};
use crate::kind::Subject;
use crate::registry::{registry, Field, Value};

/// What the user asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterSpec {
    /// Kinds to show; empty = all.
    pub kinds: BTreeSet<Kind>,
    /// The process's pid, or a forked child's pid.
    pub pids: Vec<u32>,
    /// Exact comm.
    pub comms: Vec<String>,
    pub uids: Vec<u32>,
    /// Container id prefix.
    pub containers: Vec<String>,
}

/// A [`FilterSpec`] with its fields looked up.
#[derive(Debug, Clone)]
pub struct Filter {
    spec: FilterSpec,
    pid: &'static Field,
    child_pid: &'static Field,
    comm: &'static Field,
    uid: &'static Field,
    container: &'static Field,
    lost: Kind,
}

impl Filter {
    pub fn new(spec: FilterSpec) -> Filter {
        let r = registry();
        let field = |p: &str| r.field(p).unwrap_or_else(|| panic!("field {p} registered"));
        Filter {
            spec,
            pid: field("process.pid"),
            child_pid: field("child.pid"),
            comm: field("process.comm"),
            uid: field("process.uid"),
            container: field("process.container_id"),
            lost: Kind::from_name("lost").expect("the lost kind"),
        }
    }

    pub fn spec(&self) -> &FilterSpec {
        &self.spec
    }

    fn no_process_criteria(&self) -> bool {
        let s = &self.spec;
        s.pids.is_empty() && s.comms.is_empty() && s.uids.is_empty() && s.containers.is_empty()
    }

    /// Before enrichment: can an event of `kind` about `subject` pass?
    /// (Never false for one that [`Filter::matches`] would keep.)
    pub fn pre(&self, kind: Kind, subject: Subject<'_>) -> bool {
        let s = &self.spec;
        if kind == self.lost {
            return true;
        }
        if !s.kinds.is_empty() && !s.kinds.contains(&kind) {
            return false;
        }
        match subject {
            Subject::Later => true,
            Subject::Nobody => self.no_process_criteria(),
            Subject::Task { task, also } => self.task_matches(task, also),
        }
    }

    fn task_matches(&self, t: &TaskFacts, also: Option<u32>) -> bool {
        let s = &self.spec;
        (s.pids.is_empty() || s.pids.iter().any(|&p| p == t.pid || Some(p) == also))
            && (s.comms.is_empty() || s.comms.iter().any(|c| c.as_bytes() == t.comm))
            && (s.uids.is_empty() || s.uids.contains(&t.uid))
    }

    pub fn matches(&self, ev: &Event) -> bool {
        let s = &self.spec;
        let kind = ev.kind();
        if kind == self.lost {
            return true;
        }
        if !s.kinds.is_empty() && !s.kinds.contains(&kind) {
            return false;
        }
        if ev.process.is_none() {
            // no owner known: it cannot match a process criterion
            return self.no_process_criteria();
        }
        let int = |f: &Field| match f.get(ev) {
            Value::Int(n) => Some(n),
            _ => None,
        };
        if !s.pids.is_empty() {
            let (pid, child) = (int(self.pid), int(self.child_pid));
            if !s
                .pids
                .iter()
                .any(|&p| Some(i64::from(p)) == pid || Some(i64::from(p)) == child)
            {
                return false;
            }
        }
        if !s.comms.is_empty() {
            let comm = self.comm.get(ev);
            if !s
                .comms
                .iter()
                .any(|c| comm.as_bytes() == Some(c.as_bytes()))
            {
                return false;
            }
        }
        if !s.uids.is_empty() {
            let uid = int(self.uid);
            if !s.uids.iter().any(|&u| Some(i64::from(u)) == uid) {
                return false;
            }
        }
        if !s.containers.is_empty() {
            // an id prefix, or the name its runtime gives it
            let value = self.container.get(ev);
            let id = value.as_bytes().unwrap_or_default();
            let name = ev
                .process
                .as_ref()
                .and_then(|p| p.container.as_ref())
                .and_then(|c| c.name.as_deref());
            if id.is_empty()
                || !s
                    .containers
                    .iter()
                    .any(|c| id.starts_with(c.as_bytes()) || name == Some(c.as_str()))
            {
                return false;
            }
        }
        true
    }
}
