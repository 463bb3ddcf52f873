//! Every event field, addressable by name.
//!
//! A field is a dotted path into an event's JSON (`process.exe`,
//! `net.remote.port`, `dns.question.name`, `exec.argv`), a [`FieldType`], and a
//! getter per kind that has it. The common fields and `process.*` are declared
//! in `event.rs`, each kind's own in its module (`KindSpec::fields`); the
//! [`registry`] gathers them once. Filters, rules and output templates read
//! events through it, and a test holds docs/events.md and the registry to
//! each other, both ways.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::LazyLock;

use crate::event::{Event, Kind, WallTime};
use crate::kind::{FromDetail, KindSpec};
use crate::text::Text;

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Int,
    /// Bytes that are usually UTF-8: names, paths, argv, ids.
    Text,
    Ip,
    Bool,
    /// Nanoseconds.
    Duration,
    Time,
    /// An event kind's name (`type`).
    Kind,
    /// One of a fixed set of names.
    Enum(&'static [&'static str]),
    List(&'static FieldType),
    /// A list of records with these fields (`ancestors`, `dns.answers`).
    Records(&'static [(&'static str, FieldType)]),
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldType::Int => f.write_str("int"),
            FieldType::Text => f.write_str("text"),
            FieldType::Ip => f.write_str("ip"),
            FieldType::Bool => f.write_str("bool"),
            FieldType::Duration => f.write_str("duration"),
            FieldType::Time => f.write_str("time"),
            FieldType::Kind => f.write_str("kind"),
            FieldType::Enum(names) => write!(f, "enum ({})", names.join(", ")),
            FieldType::List(t) => write!(f, "list of {t}"),
            FieldType::Records(fields) => {
                f.write_str("list of {")?;
                for (i, (name, t)) in fields.iter().enumerate() {
                    write!(f, "{}{name}: {t}", if i > 0 { ", " } else { "" })?;
                }
                f.write_str("}")
            }
        }
    }
}

/// A field's value in one event, borrowed from it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// Absent in this event (`null` in its JSON).
    Null,
    Bool(bool),
    Int(i64),
    Text(&'a [u8]),
    Ip(IpAddr),
    Time(WallTime),
    List(Vec<Value<'a>>),
    /// One element of a [`FieldType::Records`] list: its fields, in declared order.
    Record(Vec<Value<'a>>),
}

impl<'a> Value<'a> {
    /// An unsigned count (saturating: no count ksight reports comes near 2^63).
    pub fn uint(n: u64) -> Value<'static> {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }

    pub fn text(t: &'a Text) -> Value<'a> {
        Value::Text(t.as_bytes())
    }

    pub fn opt_text(t: Option<&'a Text>) -> Value<'a> {
        t.map_or(Value::Null, Value::text)
    }

    pub fn opt_int(n: Option<u64>) -> Value<'static> {
        n.map_or(Value::Null, Value::uint)
    }
}

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
        crate::event::declare_common(&mut r);
        Kind::declare_fields(&mut r);
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

    pub(crate) fn declare<D: KindSpec + FromDetail>(&mut self, kind: Kind) {
        D::fields(&mut Fields {
            registry: self,
            kind,
            _detail: PhantomData,
        });
    }
}

/// Makes a closure's signature `for<'e> Fn(&'e Event) -> Value<'e>` (inference alone
/// would give it one lifetime).
fn higher_ranked<F: for<'e> Fn(&'e Event) -> Value<'e>>(f: F) -> F {
    f
}

/// Where a kind declares its fields (`KindSpec::fields`).
pub struct Fields<'r, D> {
    registry: &'r mut Registry,
    kind: Kind,
    _detail: PhantomData<fn(&D)>,
}

impl<D: FromDetail + 'static> Fields<'_, D> {
    /// A field of this kind, read from its detail.
    pub fn add(&mut self, path: &'static str, ty: FieldType, get: for<'a> fn(&'a D) -> Value<'a>) {
        let getter = higher_ranked(move |e| match D::from_detail(&e.detail) {
            Some(d) => get(d),
            None => Value::Null,
        });
        self.registry.insert(path, ty, self.kind, Box::new(getter));
    }
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
