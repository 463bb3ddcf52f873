//! What a field is: a dotted path into an event's JSON (`process.exe`,
//! `net.remote.port`, `dns.question.name`, `exec.argv`), a [`FieldType`], and
//! a way to read its [`Value`]. Each kind lists its own fields with
//! [`Fields`] (`KindSpec::fields`); `registry.rs` gathers every kind's, and
//! the common ones, into the registry that filters, rules and templates read.

use std::fmt;
use std::net::IpAddr;

use crate::model::WallTime;
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
    /// Text that had to be decoded (a replayed event's `{"bytes": ...}`).
    Bytes(Vec<u8>),
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

    pub fn opt_str(t: Option<&'a str>) -> Value<'a> {
        t.map_or(Value::Null, |t| Value::Text(t.as_bytes()))
    }

    pub fn opt_text(t: Option<&'a Text>) -> Value<'a> {
        t.map_or(Value::Null, Value::text)
    }

    pub fn opt_int(n: Option<u64>) -> Value<'static> {
        n.map_or(Value::Null, Value::uint)
    }

    /// The bytes of a text value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Text(t) => Some(t),
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// Reads one field from a kind's detail.
pub type Getter<D> = Box<dyn for<'a> Fn(&'a D) -> Value<'a> + Send + Sync>;

/// Where a kind declares its fields (`KindSpec::fields`).
pub struct Fields<D> {
    pub(crate) list: Vec<(&'static str, FieldType, Getter<D>)>,
}

impl<D> Default for Fields<D> {
    fn default() -> Self {
        Fields { list: Vec::new() }
    }
}

impl<D> Fields<D> {
    /// A field of this kind, read from its detail.
    pub fn add<G>(&mut self, path: &'static str, ty: FieldType, get: G)
    where
        G: for<'a> Fn(&'a D) -> Value<'a> + Send + Sync + 'static,
    {
        self.list.push((path, ty, Box::new(get)));
    }
}
