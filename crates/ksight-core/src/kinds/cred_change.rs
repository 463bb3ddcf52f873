//! `cred_change`: a process's user or group ids (or, seen by the hook, its
//! effective capabilities) changed while it ran the same image: setuid(),
//! setresgid(), capset(), a kernel exploit's `commit_creds`.
//!
//! Born in bpf/creds.bpf.c at `commit_creds` (fentry, else a kprobe) where the
//! kernel allows either: each change as it happens (`cred.found_by`
//! `commit_creds`). Elsewhere made in userspace, by comparison: every hook that runs in a process's own
//! context (fork, exit, a signal it sends, a module it loads) records its
//! credentials; the enricher compares them with what the last such hook (or
//! its exec) recorded, and queues a difference with no exec between
//! ([`crate::enrich::Enricher::observe`]). Written after the poll that found it,
//! with `cred.found_by` (the kind of the record that showed it): late, but
//! reported. A change made and undone between two hooks is not seen; one
//! made by a process that then does nothing hooked until it exits shows at
//! its exit.

use serde::Serialize;

use ksight_wire::{ks_cred_event, ks_event_kind};

use crate::context::cap_names;
use crate::decode::{copy, task, DecodeError};
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KernelState, KindSpec, Subject};
use crate::model::{Header, TaskFacts};
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

impl Ids {
    /// (uid, euid, gid, egid)
    fn new((uid, euid, gid, egid): (u32, u32, u32, u32)) -> Self {
        Ids {
            uid,
            euid,
            gid,
            egid,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredDetail {
    /// As the process's exec or an earlier hook recorded them.
    pub before: Ids,
    /// As the record that showed the change saw them (also in `process`).
    pub after: Ids,
    /// `commit_creds` (the hook, as it happened), or the kind of the record
    /// that showed it: `fork`, `exit`, `signal`, `module_load`, `ptrace`.
    pub found_by: &'static str,
    /// Root gained: an effective uid of 0 where there was none.
    pub to_root: bool,
    /// Effective capabilities gained (the hook only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caps_gained: Option<Vec<String>>,
}

/// A commit_creds record: the task with its old credentials, and the new.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawCred {
    pub task: TaskFacts,
    pub after: (u32, u32, u32, u32),
    pub caps_before: u64,
    pub caps_after: u64,
}

impl KindSpec for CredChange {
    const NAME: &'static str = "cred_change";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_CRED_CHANGE.0];
    type Record = RawCred;
    type State = ();

    fn decode(buf: &[u8], _hdr: Header) -> Result<RawCred, DecodeError> {
        let e: ks_cred_event = copy(buf, 0, "cred_change")?;
        Ok(RawCred {
            task: task(&e.task),
            after: (e.uid, e.euid, e.gid, e.egid),
            caps_before: e.old_cap_effective,
            caps_after: e.new_cap_effective,
        })
    }

    fn subject(c: &RawCred) -> Subject<'_> {
        Subject::Task {
            task: &c.task,
            also: None,
        }
    }

    /// The hook's record: written now, and the new credentials become the
    /// baseline the comparisons start from.
    fn born(hdr: Header, c: RawCred, _: &mut (), cx: &mut Cx<'_, Self>) {
        let t = &c.task;
        let before = Ids::new((t.uid, t.euid, t.gid, t.egid));
        let after = Ids::new(c.after);
        let mut now = t.clone();
        (now.uid, now.euid, now.gid, now.egid) = c.after;
        let en = &mut *cx.enricher;
        en.observe(&now, hdr.ktime_ns, "commit_creds", true);
        if !cx.keep() {
            return cx.filtered();
        }
        let process = cx.enricher.process(&now);
        let gained = c.caps_after & !c.caps_before;
        let cred = CredDetail {
            before,
            after,
            found_by: "commit_creds",
            to_root: before.euid != 0 && after.euid == 0,
            caps_gained: Some(cap_names(gained)),
        };
        cx.record_event(&hdr, Some(process), CredChange { cred });
    }

    fn tick(_: &mut (), cx: &mut Cx<'_, Self>, _kernel: &dyn KernelState, _last: bool) {
        for c in std::mem::take(&mut cx.enricher.cred_changes) {
            let (b, t) = (c.before, &c.task);
            let before = Ids::new((b.uid, b.euid, b.gid, b.egid));
            let after = Ids::new((t.uid, t.euid, t.gid, t.egid));
            let process = cx.enricher.owner(t);
            let cred = CredDetail {
                before,
                after,
                found_by: c.by,
                to_root: before.euid != 0 && after.euid == 0,
                caps_gained: None,
            };
            cx.state_event(c.ktime, Some(process), CredChange { cred });
        }
    }

    fn fields(f: &mut Fields<Self>) {
        // the eight ids: each path, its side and its id
        type Side = fn(&CredDetail) -> &Ids;
        type Id = fn(&Ids) -> u32;
        let (before, after): (Side, Side) = (|c| &c.before, |c| &c.after);
        let ids: [Id; 4] = [|i| i.uid, |i| i.euid, |i| i.gid, |i| i.egid];
        const PATHS: [[&str; 4]; 2] = [
            [
                "cred.before.uid",
                "cred.before.euid",
                "cred.before.gid",
                "cred.before.egid",
            ],
            [
                "cred.after.uid",
                "cred.after.euid",
                "cred.after.gid",
                "cred.after.egid",
            ],
        ];
        for (paths, side) in PATHS.iter().zip([before, after]) {
            for (path, id) in paths.iter().zip(ids) {
                f.add(path, FieldType::Int, move |d| {
                    Value::uint(u64::from(id(side(&d.cred))))
                });
            }
        }
        f.add("cred.found_by", FieldType::Text, |d| {
            Value::Text(d.cred.found_by.as_bytes())
        });
        f.add("cred.to_root", FieldType::Bool, |d| {
            Value::Bool(d.cred.to_root)
        });
        f.add("cred.caps_gained", FieldType::List(&FieldType::Text), |d| {
            d.cred.caps_gained.as_ref().map_or(Value::Null, |c| {
                Value::List(c.iter().map(|s| Value::Text(s.as_bytes())).collect())
            })
        });
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
