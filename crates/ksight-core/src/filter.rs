//! Which events the user asked to see.
//!
//! (cgroups are filtered in the kernel, where it saves buffer space: see
//! `ksight_bpf::Config::cgroups`.)
//!
//! Within one criterion the values are alternatives (`--pid 1 --pid 2`: either);
//! different criteria must all hold. `lost` events always pass: a filter never
//! hides that something was lost.

use std::collections::BTreeSet;

use crate::event::{Detail, Event, Kind};

#[derive(Debug, Clone, Default)]
pub struct Filter {
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

impl Filter {
    pub fn matches(&self, ev: &Event) -> bool {
        let kind = ev.kind();
        if kind == Kind::Lost {
            return true;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&kind) {
            return false;
        }
        let Some(p) = &ev.process else {
            // no owner known: it cannot match a process criterion
            return self.pids.is_empty()
                && self.comms.is_empty()
                && self.uids.is_empty()
                && self.containers.is_empty();
        };
        if !self.pids.is_empty() {
            let child = match &ev.detail {
                Detail::Fork { child } => Some(child.pid),
                _ => None,
            };
            if !self
                .pids
                .iter()
                .any(|&pid| pid == p.pid || Some(pid) == child)
            {
                return false;
            }
        }
        if !self.comms.is_empty() && !self.comms.iter().any(|c| c.as_bytes() == p.comm.as_bytes()) {
            return false;
        }
        if !self.uids.is_empty() && !self.uids.contains(&p.uid) {
            return false;
        }
        if !self.containers.is_empty() {
            let id = p.container_id.as_deref().unwrap_or("");
            if id.is_empty() || !self.containers.iter().any(|c| id.starts_with(c.as_str())) {
                return false;
            }
        }
        true
    }
}
