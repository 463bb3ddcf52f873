//! `bpf_load`: a process other than ksight loaded a BPF program into the
//! kernel (a rootkit's, another agent's, a developer's).
//!
//! Born in perf's side band, not in a hook of ksight's: ksight-bpf's
//! `bpfwatch` reads the `PERF_RECORD_BPF_EVENT` records the kernel writes at
//! every program load (with the loading task and the time) after each poll,
//! asks the kernel for the program's info by id, and hands them here through
//! [`KernelState::bpf_loads`]. The loader usually exits at once: its identity
//! comes from the process table (its exec and fork were seen), else /proc.

use std::fmt::Write as _;

use serde::Serialize;

use crate::decode::DecodeError;
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KernelState, KindSpec, NoRecord};
use crate::model::Header;
use crate::sideband::RawBpfLoad;
use crate::table::{Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BpfLoad {
    pub bpf: BpfDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BpfDetail {
    pub id: u32,
    /// The program's tag (a hash of its instructions), hex, as bpftool shows it.
    pub tag: String,
    /// The thread that loaded it.
    pub tid: u32,
    /// `null` when the program was gone before ksight asked about it.
    pub prog_type: Option<String>,
    pub name: Option<String>,
    pub uid: Option<u32>,
    pub maps: Option<u32>,
    pub insns: Option<u32>,
    pub gpl: Option<bool>,
}

impl BpfDetail {
    fn of(l: &RawBpfLoad) -> Self {
        let mut tag = String::with_capacity(16);
        for b in l.tag {
            let _ = write!(tag, "{b:02x}");
        }
        let i = l.info.as_ref();
        BpfDetail {
            id: l.id,
            tag,
            tid: l.tid,
            prog_type: i.map(|i| i.prog_type.clone()),
            name: i.map(|i| i.name.clone()),
            uid: i.map(|i| i.uid),
            maps: i.map(|i| i.maps),
            insns: i.map(|i| i.insns),
            gpl: i.map(|i| i.gpl),
        }
    }
}

impl KindSpec for BpfLoad {
    const NAME: &'static str = "bpf_load";
    const WIRE: &'static [u32] = &[];
    type Record = NoRecord;
    /// Loads waiting for the records before them (`side_delay_ns`).
    type State = std::collections::VecDeque<RawBpfLoad>;

    fn decode(_buf: &[u8], _hdr: Header) -> Result<NoRecord, DecodeError> {
        unreachable!("no record has the kind `bpf_load`: WIRE is empty")
    }

    fn born(
        _hdr: Header,
        never: NoRecord,
        _: &mut std::collections::VecDeque<RawBpfLoad>,
        _cx: &mut Cx<'_, Self>,
    ) {
        match never {}
    }

    fn tick(
        waiting: &mut std::collections::VecDeque<RawBpfLoad>,
        cx: &mut Cx<'_, Self>,
        kernel: &dyn KernelState,
        last: bool,
    ) {
        waiting.extend(kernel.bpf_loads());
        let due = cx.now.saturating_sub(cx.config.side_delay_ns);
        while let Some(l) = waiting.pop_front_if(|l| last || l.ktime <= due) {
            let process = cx.enricher.task_of(l.pid).map(|t| cx.enricher.owner(&t));
            cx.state_event(
                l.ktime,
                process,
                BpfLoad {
                    bpf: BpfDetail::of(&l),
                },
            );
        }
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("bpf.id", FieldType::Int, |d| {
            Value::uint(u64::from(d.bpf.id))
        });
        f.add("bpf.tag", FieldType::Text, |d| {
            Value::Text(d.bpf.tag.as_bytes())
        });
        f.add("bpf.tid", FieldType::Int, |d| {
            Value::uint(u64::from(d.bpf.tid))
        });
        f.add("bpf.prog_type", FieldType::Text, |d| {
            Value::opt_str(d.bpf.prog_type.as_deref())
        });
        f.add("bpf.name", FieldType::Text, |d| {
            Value::opt_str(d.bpf.name.as_deref())
        });
        f.add("bpf.uid", FieldType::Int, |d| {
            Value::opt_int(d.bpf.uid.map(u64::from))
        });
        f.add("bpf.maps", FieldType::Int, |d| {
            Value::opt_int(d.bpf.maps.map(u64::from))
        });
        f.add("bpf.insns", FieldType::Int, |d| {
            Value::opt_int(d.bpf.insns.map(u64::from))
        });
        f.add("bpf.gpl", FieldType::Bool, |d| {
            d.bpf.gpl.map_or(Value::Null, Value::Bool)
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let b = &self.bpf;
        let mut s = format!(
            "{} {} id {}",
            b.prog_type.as_deref().unwrap_or("?"),
            b.name.as_deref().unwrap_or("?"),
            b.id
        );
        if b.prog_type.is_none() {
            s.push_str(" (gone before ksight asked)");
        }
        cell.push(&s);
    }

    fn colour(&self) -> Colour {
        Colour::Yellow
    }
}
