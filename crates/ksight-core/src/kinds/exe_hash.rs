//! `exe_hash`: the SHA-256 of an exec's file, when it was not known as the
//! exec was written (a file ksight had not hashed yet).
//!
//! Made in userspace: `exec` asks the hash worker (crate::hash) for the file
//! the kernel ran, identified by (dev, inode, ctime, size); the answer comes
//! back here, after a poll, as one event naming the exec (`process.exec_id`).
//! A file that was replaced or written to between the exec and the read is
//! `changed`, never hashed wrong.

use std::sync::Arc;

use serde::Serialize;

use crate::context::Dev;
use crate::decode::DecodeError;
use crate::field::{FieldType, Fields, Value};
use crate::hash::HashStatus;
use crate::kind::{Cx, KernelState, KindSpec, NoRecord};
use crate::model::Header;
use crate::table::{Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExeHash {
    pub exe_hash: ExeHashDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExeHashDetail {
    pub status: HashStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Arc<str>>,
    /// The file the exec ran, by identity.
    pub dev: Dev,
    pub inode: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl KindSpec for ExeHash {
    const NAME: &'static str = "exe_hash";
    const WIRE: &'static [u32] = &[];
    type Record = NoRecord;
    type State = ();

    fn decode(_buf: &[u8], _hdr: Header) -> Result<NoRecord, DecodeError> {
        unreachable!("no record has the kind `exe_hash`: WIRE is empty")
    }

    fn born(_hdr: Header, never: NoRecord, _: &mut (), _cx: &mut Cx<'_, Self>) {
        match never {}
    }

    /// The worker's answers since the last poll, one per exec that waited
    /// (at stop, after waiting a moment for the last ones).
    fn tick(_: &mut (), cx: &mut Cx<'_, Self>, _kernel: &dyn KernelState, last: bool) {
        if last {
            cx.enricher.hashes.settle(std::time::Duration::from_secs(2));
        }
        for a in cx.enricher.hashes.answers() {
            let detail = ExeHashDetail {
                status: a.outcome.status,
                sha256: a.outcome.sha256,
                dev: a.key.dev,
                inode: a.key.inode,
                error: a.outcome.error,
            };
            let now = cx.now;
            cx.state_event(now, Some(a.waiter), ExeHash { exe_hash: detail });
        }
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("exe_hash.status", FieldType::Enum(HashStatus::NAMES), |d| {
            Value::Text(d.exe_hash.status.name().as_bytes())
        });
        f.add("exe_hash.sha256", FieldType::Text, |d| {
            d.exe_hash
                .sha256
                .as_ref()
                .map_or(Value::Null, |h| Value::Text(h.as_bytes()))
        });
        f.add("exe_hash.dev", FieldType::Text, |d| {
            Value::Bytes(d.exe_hash.dev.to_string().into_bytes())
        });
        f.add("exe_hash.inode", FieldType::Int, |d| {
            Value::uint(d.exe_hash.inode)
        });
        f.add("exe_hash.error", FieldType::Text, |d| {
            d.exe_hash
                .error
                .as_ref()
                .map_or(Value::Null, |e| Value::Text(e.as_bytes()))
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let h = &self.exe_hash;
        match &h.sha256 {
            Some(s) => cell.push(s),
            None => cell.push(h.status.name()),
        }
    }

    fn colour(&self) -> Colour {
        match self.exe_hash.status {
            HashStatus::Changed => Colour::Yellow,
            _ => Colour::Plain,
        }
    }
}
