//! `cred_change`: a process's user or group ids changed while it ran the same
//! image: setuid(), setresgid(), a kernel exploit's `commit_creds`.
//!
//! Made in userspace, by comparison: every hook that runs in a process's own
//! context (fork, exit, a signal it sends, a module it loads) records its
//! credentials; the enricher compares them with what the last such hook (or
//! its exec) recorded, and queues a difference with no exec between
//! ([`crate::enrich::Enricher::observe`]). Written after the poll that found it,
//! with `cred.found_by` (the kind of the record that showed it): late, but
//! reported. A change made and undone between two hooks is not seen; one
//! made by a process that then does nothing hooked until it exits shows at
//! its exit. (A hook on `commit_creds` would see each change as it happens;
//! it needs kprobes or fentry, which this design does not require.)

use serde::Serialize;

use crate::decode::DecodeError;
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KernelState, KindSpec, NoRecord};
use crate::model::Header;
use crate::table::{Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredChange {
    pub cred: CredDetail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ids {
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredDetail {
    /// As the process's exec or an earlier hook recorded them.
    pub before: Ids,
    /// As the record that showed the change saw them (also in `process`).
    pub after: Ids,
    /// The kind of that record: `fork`, `exit`, `signal`, `module_load`.
    pub found_by: &'static str,
    /// Root gained: an effective uid of 0 where there was none.
    pub to_root: bool,
}

impl KindSpec for CredChange {
    const NAME: &'static str = "cred_change";
    const WIRE: &'static [u32] = &[];
    type Record = NoRecord;
    type State = ();

    fn decode(_buf: &[u8], _hdr: Header) -> Result<NoRecord, DecodeError> {
        unreachable!("no record has the kind `cred_change`: WIRE is empty")
    }

    fn born(_hdr: Header, never: NoRecord, _: &mut (), _cx: &mut Cx<'_, Self>) {
        match never {}
    }

    fn tick(_: &mut (), cx: &mut Cx<'_, Self>, _kernel: &dyn KernelState, _last: bool) {
        for c in std::mem::take(&mut cx.enricher.cred_changes) {
            let b = c.before;
            let t = &c.task;
            let before = Ids {
                uid: b.uid,
                euid: b.euid,
                gid: b.gid,
                egid: b.egid,
            };
            let after = Ids {
                uid: t.uid,
                euid: t.euid,
                gid: t.gid,
                egid: t.egid,
            };
            let process = cx.enricher.owner(t);
            let cred = CredDetail {
                before,
                after,
                found_by: c.by,
                to_root: before.euid != 0 && after.euid == 0,
            };
            cx.state_event(c.ktime, Some(process), CredChange { cred });
        }
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("cred.before.uid", FieldType::Int, |d| {
            Value::uint(u64::from(d.cred.before.uid))
        });
        f.add("cred.before.euid", FieldType::Int, |d| {
            Value::uint(u64::from(d.cred.before.euid))
        });
        f.add("cred.before.gid", FieldType::Int, |d| {
            Value::uint(u64::from(d.cred.before.gid))
        });
        f.add("cred.before.egid", FieldType::Int, |d| {
            Value::uint(u64::from(d.cred.before.egid))
        });
        f.add("cred.after.uid", FieldType::Int, |d| {
            Value::uint(u64::from(d.cred.after.uid))
        });
        f.add("cred.after.euid", FieldType::Int, |d| {
            Value::uint(u64::from(d.cred.after.euid))
        });
        f.add("cred.after.gid", FieldType::Int, |d| {
            Value::uint(u64::from(d.cred.after.gid))
        });
        f.add("cred.after.egid", FieldType::Int, |d| {
            Value::uint(u64::from(d.cred.after.egid))
        });
        f.add("cred.found_by", FieldType::Text, |d| {
            Value::Text(d.cred.found_by.as_bytes())
        });
        f.add("cred.to_root", FieldType::Bool, |d| Value::Bool(d.cred.to_root));
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let c = &self.cred;
        cell.push(&format!(
            "uid {}/{} gid {}/{} -> uid {}/{} gid {}/{} (seen at {})",
            c.before.uid,
            c.before.euid,
            c.before.gid,
            c.before.egid,
            c.after.uid,
            c.after.euid,
            c.after.gid,
            c.after.egid,
            c.found_by
        ));
    }

    fn colour(&self) -> Colour {
        if self.cred.to_root {
            Colour::Red
        } else {
            Colour::Yellow
        }
    }
}
