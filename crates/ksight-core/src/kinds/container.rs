//! `container`: a container, as its runtime describes it, the first time
//! ksight learns it (name, image and digest, labels, pod, runtime).
//!
//! Made in userspace: a process's cgroup names a container id
//! (crate::cgroup), the enricher asks the runtime about it off the event path
//! (crate::runtime), and once the answer is in, this kind says so once. Events
//! of the container's processes carry it as `process.container` from then on;
//! the ones before it (the container's first execs, usually) only have
//! `process.container_id`, which this event completes.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use crate::decode::DecodeError;
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KernelState, KindSpec, NoRecord};
use crate::model::Header;
use crate::runtime::ContainerInfo;
use crate::table::{Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    pub container: Arc<ContainerInfo>,
}

impl KindSpec for Container {
    const NAME: &'static str = "container";
    const WIRE: &'static [u32] = &[];
    type Record = NoRecord;
    type State = ();

    fn decode(_buf: &[u8], _hdr: Header) -> Result<NoRecord, DecodeError> {
        unreachable!("no record has the kind `container`: WIRE is empty")
    }

    fn born(_hdr: Header, never: NoRecord, _: &mut (), _cx: &mut Cx<'_, Self>) {
        match never {}
    }

    /// The containers described since the last poll.
    fn tick(_: &mut (), cx: &mut Cx<'_, Self>, _kernel: &dyn KernelState, _last: bool) {
        let Some(r) = &cx.enricher.containers else {
            return;
        };
        let now = cx.now;
        for c in r.take_resolved() {
            cx.state_event(now, None, Container { container: c });
        }
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("container.id", FieldType::Text, |d| {
            Value::Text(d.container.id.as_bytes())
        });
        f.add("container.name", FieldType::Text, |d| {
            Value::opt_str(d.container.name.as_deref())
        });
        f.add("container.image", FieldType::Text, |d| {
            Value::opt_str(d.container.image.as_deref())
        });
        f.add("container.image_digest", FieldType::Text, |d| {
            Value::opt_str(d.container.image_digest.as_deref())
        });
        f.add("container.runtime", FieldType::Text, |d| {
            Value::Text(d.container.runtime.as_str().as_bytes())
        });
        f.add("container.labels", FieldType::List(&FieldType::Text), |d| {
            Value::List(
                d.container
                    .labels
                    .iter()
                    .map(|(k, v)| Value::Bytes(format!("{k}={v}").into_bytes()))
                    .collect(),
            )
        });
        f.add("container.pod.name", FieldType::Text, |d| {
            Value::opt_str(d.container.pod.as_ref().map(|p| p.name.as_str()))
        });
        f.add("container.pod.namespace", FieldType::Text, |d| {
            Value::opt_str(d.container.pod.as_ref().map(|p| p.namespace.as_str()))
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let c = &self.container;
        let id = c.id.get(..12).unwrap_or(&c.id);
        let _ = write!(
            cell,
            "{} {} {}",
            c.name.as_deref().unwrap_or(id),
            c.image.as_deref().unwrap_or("-"),
            c.runtime.as_str()
        );
        if let Some(p) = &c.pod {
            let _ = write!(cell, "  pod {}/{}", p.namespace, p.name);
        }
    }

    fn colour(&self) -> Colour {
        Colour::Blue
    }
}
