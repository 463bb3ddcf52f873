//! Every event field, addressable by name: the registry.
//!
//! The common fields and `process.*` are declared here, each kind's
//! own in its module (`KindSpec::fields`); [`registry`] gathers them once, each
//! field with a getter per kind that has it. Filters, rules and output
//! templates read events through it, and a test holds docs/events.md and the
//! registry to each other, both ways.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use crate::event::{Event, Kind, Process, SCHEMA_VERSION};
use crate::field::Fields;
pub use crate::field::{FieldType, Value};
use crate::kind::KindSpec;
use crate::kinds::{FromDetail, KindVisitor};
use crate::runtime::ContainerInfo;

type Getter = Box<dyn for<'e> Fn(&'e Event) -> Value<'e> + Send + Sync>;

/// One field and how to read it from each kind that has it.
pub struct Field {
    pub path: &'static str,
    pub ty: FieldType,
    /// Indexed by `Kind as usize`: the getter of each kind that has the field.
    getters: Vec<Option<Getter>>,
}

impl Field {
    /// Its value in `ev` (`Null` where `ev`'s kind has no such field).
    pub fn get<'e>(&self, ev: &'e Event) -> Value<'e> {
        match self.getters.get(ev.kind() as usize) {
            Some(Some(get)) => get(ev),
            _ => Value::Null,
        }
    }

    /// The kinds whose events have this field.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        Kind::ALL
            .into_iter()
            .filter(|&k| matches!(self.getters.get(k as usize), Some(Some(_))))
    }

    pub fn has(&self, kind: Kind) -> bool {
        matches!(self.getters.get(kind as usize), Some(Some(_)))
    }
}

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<&str> = self.kinds().map(Kind::name).collect();
        write!(f, "{} ({}; {})", self.path, self.ty, kinds.join(","))
    }
}

/// Every field of every kind.
pub struct Registry {
    fields: Vec<Field>,
    by_path: HashMap<&'static str, usize>,
}

/// The registry, built on first use from the declarations in `event.rs` and `kinds/`.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
        let mut r = Registry {
            fields: Vec::new(),
            by_path: HashMap::new(),
        };
        declare_common(&mut r);
        Kind::visit_all(&mut r);
        r
    });
    &REGISTRY
}

impl Registry {
    pub fn field(&self, path: &str) -> Option<&Field> {
        self.by_path.get(path).map(|&i| &self.fields[i])
    }

    /// In declaration order: common fields, `process.*`, then each kind's.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter()
    }

    fn insert(&mut self, path: &'static str, ty: FieldType, kind: Kind, get: Getter) {
        let i = *self.by_path.entry(path).or_insert_with(|| {
            self.fields.push(Field {
                path,
                ty,
                getters: (0..Kind::ALL.len()).map(|_| None).collect(),
            });
            self.fields.len() - 1
        });
        let field = &mut self.fields[i];
        assert_eq!(
            field.ty, ty,
            "field {path} is declared with two types ({} for {kind})",
            ty
        );
        assert!(
            field.getters[kind as usize].is_none(),
            "field {path} is declared twice for {kind}"
        );
        field.getters[kind as usize] = Some(get);
    }

    /// A field read from the event itself, for the given kinds.
    pub(crate) fn common(
        &mut self,
        path: &'static str,
        ty: FieldType,
        kinds: &[Kind],
        get: for<'e> fn(&'e Event) -> Value<'e>,
    ) {
        for &k in kinds {
            self.insert(path, ty, k, Box::new(get));
        }
    }
}

/// The fields every event has (`v`, `type`, `time`, ...) and those of its
/// `process` (every kind but `lost`).
fn declare_common(r: &mut Registry) {
    let all: Vec<Kind> = Kind::ALL.to_vec();
    r.common("v", FieldType::Int, &all, |_| {
        Value::Int(SCHEMA_VERSION.into())
    });
    r.common("type", FieldType::Kind, &all, |e| {
        Value::Text(e.kind().name().as_bytes())
    });
    r.common("time", FieldType::Time, &all, |e| Value::Time(e.time));
    r.common("ktime", FieldType::Int, &all, |e| Value::uint(e.ktime));
    r.common("cpu", FieldType::Int, &all, |e| Value::Int(e.cpu.into()));
    r.common("seq", FieldType::Int, &all, |e| {
        e.seq.map_or(Value::Null, Value::uint)
    });
    let with_process: Vec<Kind> = all.into_iter().filter(|k| k.name() != "lost").collect();
    let k = &with_process;
    macro_rules! process {
        ($path:literal, $ty:expr, |$p:ident| $get:expr) => {
            r.common($path, $ty, k, |e| match &e.process {
                Some($p) => $get,
                None => Value::Null,
            })
        };
    }
    process!("process.pid", FieldType::Int, |p| Value::Int(p.pid.into()));
    process!("process.tid", FieldType::Int, |p| Value::Int(p.tid.into()));
    process!("process.ppid", FieldType::Int, |p| Value::Int(
        p.ppid.into()
    ));
    process!("process.uid", FieldType::Int, |p| Value::Int(p.uid.into()));
    process!("process.gid", FieldType::Int, |p| Value::Int(p.gid.into()));
    process!("process.euid", FieldType::Int, |p| Value::Int(
        p.euid.into()
    ));
    process!("process.egid", FieldType::Int, |p| Value::Int(
        p.egid.into()
    ));
    process!("process.auid", FieldType::Int, |p| p
        .auid
        .map_or(Value::Null, |a| Value::Int(a.into())));
    process!("process.comm", FieldType::Text, |p| Value::Text(
        p.comm.as_bytes()
    ));
    process!("process.exe", FieldType::Text, |p| Value::opt_text(
        p.exe.as_deref()
    ));
    process!("process.exec_id", FieldType::Text, |p| Value::Text(
        p.exec_id.as_bytes()
    ));
    process!("process.parent_exec_id", FieldType::Text, |p| p
        .parent_exec_id
        .as_deref()
        .map_or(Value::Null, |s| Value::Text(s.as_bytes())));
    process!("process.start_time", FieldType::Time, |p| Value::Time(
        p.start_time
    ));
    process!("process.cgroup_id", FieldType::Int, |p| Value::uint(
        p.cgroup_id
    ));
    process!("process.cgroup", FieldType::Text, |p| p
        .cgroup
        .as_deref()
        .map_or(Value::Null, |s| Value::Text(s.as_bytes())));
    process!("process.container_id", FieldType::Text, |p| p
        .container_id
        .as_deref()
        .map_or(Value::Null, |s| Value::Text(s.as_bytes())));
    process!("process.container.name", FieldType::Text, |p| text(
        meta(p).and_then(|c| c.name.as_ref())
    ));
    process!("process.container.image", FieldType::Text, |p| text(
        meta(p).and_then(|c| c.image.as_ref())
    ));
    process!("process.container.image_digest", FieldType::Text, |p| text(
        meta(p).and_then(|c| c.image_digest.as_ref())
    ));
    process!("process.container.runtime", FieldType::Text, |p| meta(p)
        .map_or(Value::Null, |c| Value::Text(
            c.runtime.as_str().as_bytes()
        )));
    process!(
        "process.container.labels",
        FieldType::List(&FieldType::Text),
        |p| meta(p).map_or(Value::Null, |c| Value::List(
            c.labels
                .iter()
                .map(|(k, v)| Value::Bytes(format!("{k}={v}").into_bytes()))
                .collect()
        ))
    );
    process!("process.container.pod.name", FieldType::Text, |p| meta(p)
        .and_then(|c| c.pod.as_ref())
        .map_or(Value::Null, |pod| Value::Text(pod.name.as_bytes())));
    process!("process.container.pod.namespace", FieldType::Text, |p| {
        meta(p)
            .and_then(|c| c.pod.as_ref())
            .map_or(Value::Null, |pod| Value::Text(pod.namespace.as_bytes()))
    });
    process!("process.pidns", FieldType::Int, |p| Value::Int(
        p.pidns.into()
    ));
    process!("process.ns_pid", FieldType::Int, |p| Value::Int(
        p.ns_pid.into()
    ));
    process!("process.ns_tid", FieldType::Int, |p| Value::Int(
        p.ns_tid.into()
    ));
}

/// The runtime's description of a process's container.
fn meta(p: &Process) -> Option<&ContainerInfo> {
    p.container.as_deref()
}

fn text(t: Option<&String>) -> Value<'_> {
    Value::opt_str(t.map(String::as_str))
}

/// Each kind's fields, read from the event's detail.
impl KindVisitor for Registry {
    fn visit<D: KindSpec + FromDetail>(&mut self, kind: Kind) {
        let mut fields = Fields::<D>::default();
        D::fields(&mut fields);
        for (path, ty, get) in fields.list {
            let getter = higher_ranked(move |e| match D::from_detail(&e.detail) {
                Some(d) => get(d),
                None => Value::Null,
            });
            self.insert(path, ty, kind, Box::new(getter));
        }
    }
}

/// Makes a closure's signature `for<'e> Fn(&'e Event) -> Value<'e>` (inference alone
/// would give it one lifetime).
fn higher_ranked<F: for<'e> Fn(&'e Event) -> Value<'e>>(f: F) -> F {
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_the_common_fields_and_its_own() {
        let r = registry();
        for k in Kind::ALL {
            for path in ["v", "type", "time", "ktime", "cpu", "seq"] {
                assert!(r.field(path).unwrap().has(k), "{path} on {k}");
            }
            let own = r.fields().filter(|f| {
                f.has(k) && !f.path.starts_with("process.") && !f.kinds().eq(Kind::ALL)
            });
            assert!(own.count() > 0, "{k} declares no field");
        }
        let port = r.field("net.remote.port").unwrap();
        assert_eq!(port.ty, FieldType::Int);
        assert!(port.has(Kind::from_name("connect").unwrap()));
        assert!(!port.has(Kind::from_name("exec").unwrap()));
        assert!(r.field("process.exe").is_some());
        assert!(r.field("exec.argv").is_some());
        assert!(r.field("dns.question.name").is_some());
    }
}
