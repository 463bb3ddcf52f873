//! `module_load`: a kernel module was loaded (insmod, modprobe, a rootkit's
//! own loader), by whom, and whether its signature was verified.
//!
//! Born in bpf/kmod.bpf.c (at `module_load`), in the loader's context, after
//! the kernel accepted the module and before its init ran.

use ksight_wire::{ks_event_kind, ks_module_event};
use serde::Serialize;

use crate::decode::{copy, task, DecodeError};
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::{Header, TaskFacts};
use crate::table::{Cell, Colour};
use crate::text::Text;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleLoad {
    pub module: ModuleDetail,
}

crate::named_enum! {
    /// What the kernel said of the module's signature.
    pub enum Signature {
        /// verified against a trusted key
        Verified = "verified",
        /// none, or not verified (the kernel allowed it: not enforcing)
        Unverified = "unverified",
        /// this kernel does not check module signatures
        Unchecked = "unchecked",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleDetail {
    pub name: Text,
    pub signature: Signature,
    /// The module's own taint flags, as /proc/modules letters (`O` out of
    /// tree, `E` unsigned, `P` proprietary, ...); empty when none.
    pub taints: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawModule {
    pub task: TaskFacts,
    pub name: Vec<u8>,
    pub taints: u64,
    pub sig_ok: u32,
}

/// The kernel's taint letters by bit (kernel/panic.c taint_flags).
const TAINT_LETTERS: &[u8; 20] = b"PFSRMBUDAWCIOELKXTNJ";

fn taint_letters(bits: u64) -> String {
    TAINT_LETTERS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, &c)| c as char)
        .collect()
}

impl KindSpec for ModuleLoad {
    const NAME: &'static str = "module_load";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_MODULE_LOAD.0];
    type Record = RawModule;
    type State = ();

    fn decode(buf: &[u8], _hdr: Header) -> Result<RawModule, DecodeError> {
        let e: ks_module_event = copy(buf, 0, "module_load")?;
        let name: Vec<u8> = e
            .name
            .iter()
            .map(|&c| c as u8)
            .take_while(|&c| c != 0)
            .collect();
        Ok(RawModule {
            task: task(&e.task),
            name,
            taints: e.taints,
            sig_ok: e.sig_ok,
        })
    }

    fn subject(m: &RawModule) -> Subject<'_> {
        Subject::Task {
            task: &m.task,
            also: None,
        }
    }

    fn born(hdr: Header, m: RawModule, _: &mut (), cx: &mut Cx<'_, Self>) {
        if !cx.keep() {
            return cx.filtered();
        }
        let process = cx.enricher.process(&m.task);
        cx.enricher
            .observe(&m.task, hdr.ktime_ns, "module_load", false);
        let module = ModuleDetail {
            name: Text::from(m.name),
            signature: match m.sig_ok {
                1 => Signature::Verified,
                0 => Signature::Unverified,
                _ => Signature::Unchecked,
            },
            taints: taint_letters(m.taints),
        };
        cx.record_event(&hdr, Some(process), ModuleLoad { module });
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("module.name", FieldType::Text, |d| {
            Value::Text(d.module.name.as_bytes())
        });
        f.add("module.signature", FieldType::Enum(Signature::NAMES), |d| {
            Value::Text(d.module.signature.name().as_bytes())
        });
        f.add("module.taints", FieldType::Text, |d| {
            Value::Text(d.module.taints.as_bytes())
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let m = &self.module;
        let mut s = format!("{} ({})", m.name, m.signature.name());
        if !m.taints.is_empty() {
            s.push_str(" taints ");
            s.push_str(&m.taints);
        }
        cell.push(&s);
    }

    fn colour(&self) -> Colour {
        match self.module.signature {
            Signature::Verified => Colour::Yellow,
            _ => Colour::Red,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_letters_follow_the_kernel() {
        // TAINT_OOT_MODULE (12) and TAINT_UNSIGNED_MODULE (13)
        assert_eq!(taint_letters((1 << 12) | (1 << 13)), "OE");
        assert_eq!(taint_letters(1), "P");
        assert_eq!(taint_letters(0), "");
    }
}
