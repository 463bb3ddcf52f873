//! Where conditions read fields: a live event, or a line of JSON as ksight
//! wrote it (`ksight replay`, rule tests), read the same way through the
//! registry's types, so that a rule decides the same on both.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use ksight_core::event::{Event, Kind, WallTime};
use ksight_core::registry::{Field, FieldType, Value};
use serde_json::Value as Json;

use crate::compile::Source;

impl Source for Event {
    fn kind(&self) -> Kind {
        Event::kind(self)
    }

    fn get(&self, f: &'static Field) -> Value<'_> {
        f.get(self)
    }
}

/// One event as written (a JSON line), ready to be read by field.
#[derive(Debug, Clone)]
pub struct JsonEvent {
    kind: Kind,
    /// The line, as written: what an alert embeds.
    pub raw: Arc<str>,
    tree: Arc<Json>,
}

impl JsonEvent {
    /// A line of ksight's JSON output; `None` for a line that is no event.
    pub fn parse(line: &str) -> Result<JsonEvent, String> {
        let tree: Json = serde_json::from_str(line).map_err(|e| e.to_string())?;
        JsonEvent::from_tree(tree, line.into())
    }

    /// An event given as a JSON value (a rule test's inline event).
    pub fn from_tree(tree: Json, raw: Arc<str>) -> Result<JsonEvent, String> {
        let kind = tree
            .get("type")
            .and_then(Json::as_str)
            .ok_or("the event has no \"type\"")?;
        let kind =
            Kind::from_name(kind).ok_or_else(|| format!("no event kind is called {kind:?}"))?;
        Ok(JsonEvent {
            kind,
            raw,
            tree: Arc::new(tree),
        })
    }

    pub fn tree(&self) -> &Json {
        &self.tree
    }
}

impl Source for JsonEvent {
    fn kind(&self) -> Kind {
        self.kind
    }

    fn get(&self, f: &'static Field) -> Value<'_> {
        if !f.has(self.kind) {
            return Value::Null;
        }
        let mut at = &*self.tree;
        for part in f.path.split('.') {
            match at.get(part) {
                Some(next) => at = next,
                // a flag is written only when true (`exec.path_truncated`,
                // `exec.file.deleted`): absent from its kind's event is false
                None if f.ty == FieldType::Bool => return Value::Bool(false),
                None => return Value::Null,
            }
        }
        typed(f.ty, at)
    }
}

/// A JSON value read as the registry's type says.
fn typed(ty: FieldType, j: &Json) -> Value<'_> {
    match (ty, j) {
        (_, Json::Null) => Value::Null,
        (FieldType::Int | FieldType::Duration, Json::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
            .map_or(Value::Null, Value::Int),
        (FieldType::Bool, Json::Bool(b)) => Value::Bool(*b),
        (FieldType::Text | FieldType::Enum(_) | FieldType::Kind, Json::String(s)) => {
            Value::Text(s.as_bytes())
        }
        (FieldType::Text, Json::Object(o)) => match o.get("bytes").and_then(Json::as_str) {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_or(Value::Null, Value::Bytes),
            None => Value::Null,
        },
        (FieldType::Ip, Json::String(s)) => s.parse::<IpAddr>().map_or(Value::Null, Value::Ip),
        (FieldType::Time, Json::String(s)) => humantime::parse_rfc3339(s)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(Value::Null, |d| {
                Value::Time(WallTime(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
            }),
        (FieldType::List(elem), Json::Array(items)) => {
            Value::List(items.iter().map(|i| typed(*elem, i)).collect())
        }
        // a map (container labels): its `key=value` pairs, as live events give them
        (FieldType::List(FieldType::Text), Json::Object(map)) => Value::List(
            map.iter()
                .map(|(k, v)| {
                    Value::Bytes(format!("{k}={}", v.as_str().unwrap_or_default()).into_bytes())
                })
                .collect(),
        ),
        (FieldType::Records(fields), Json::Array(items)) => Value::List(
            items
                .iter()
                .map(|i| {
                    Value::Record(
                        fields
                            .iter()
                            .map(|(name, t)| {
                                // a record's field may be a path inside it (`socket.local.addr`)
                                name.split('.')
                                    .try_fold(i, |at, part| at.get(part))
                                    .map_or(Value::Null, |v| typed(*t, v))
                            })
                            .collect(),
                    )
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ksight_core::registry::registry;

    #[test]
    fn json_fields_read_as_their_types() {
        let line = r#"{"v":1,"type":"exec","time":"2026-01-01T00:00:00.000000001Z","ktime":5,"cpu":0,"seq":1,
            "process":{"pid":7,"comm":{"bytes":"/w=="},"exe":"/bin/sh"},
            "exec":{"argv":["sh","-c"],"cwd":"/","stdio":[{"fd":0,"type":"socket","socket":{"remote":{"addr":"::1","port":9}}}]},
            "ancestors":[{"pid":1,"exe":null,"exec_id":"x","file":{"sha256":"ab"}}]}"#;
        let ev = JsonEvent::parse(line).unwrap();
        let r = registry();
        let get = |p: &str| ev.get(r.field(p).unwrap());
        assert_eq!(get("process.pid"), Value::Int(7));
        assert_eq!(get("process.comm"), Value::Bytes(vec![0xff]));
        assert_eq!(get("process.exe"), Value::Text(b"/bin/sh"));
        assert_eq!(get("process.uid"), Value::Null);
        assert_eq!(
            get("exec.argv"),
            Value::List(vec![Value::Text(b"sh"), Value::Text(b"-c")])
        );
        assert_eq!(
            get("time"),
            Value::Time(WallTime(1_767_225_600_000_000_001))
        );
        let Value::List(anc) = get("ancestors") else {
            panic!()
        };
        assert_eq!(
            anc[0],
            Value::Record(vec![
                Value::Int(1),
                Value::Null,
                Value::Text(b"x"),
                Value::Text(b"ab")
            ])
        );
        // a record's field that is a path inside it
        let Value::List(io) = get("exec.stdio") else {
            panic!()
        };
        let Value::Record(fd0) = &io[0] else { panic!() };
        assert_eq!(fd0[0], Value::Int(0));
        assert!(fd0.contains(&Value::Ip("::1".parse().unwrap())), "{fd0:?}");
        assert!(fd0.contains(&Value::Int(9)));
        // a field of another kind reads as absent
        assert_eq!(get("net.remote.port"), Value::Null);
    }
}
