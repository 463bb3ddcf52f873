//! The typed event model: what ksight reports, and its JSON form.
//!
//! One [`Event`] per line of JSON Lines output; docs/events.md documents the
//! schema, versioned by [`SCHEMA_VERSION`]. An event is the part every kind
//! shares (time, CPU, sequence, the process) plus a [`Detail`], which is one
//! kind's type from `kinds/`. JSON is produced only from these types (never
//! from wire structs). Strings shared by many events of one process (exe, exec
//! ids, cgroup paths) are `Arc`s held by the process table, so building an
//! event does not copy them.

use serde::{Serialize, Serializer};

pub use crate::kinds::{Detail, Kind};
use crate::model::EventOf;
pub use crate::model::{signal_name, Header, Process, TaskFacts, WallTime, SCHEMA_VERSION};

/// One event, as written: a kind's detail inside the common part.
pub type Event = EventOf<Detail>;

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Kind, String> {
        Kind::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown event kind {s:?}: expected one of {}",
                names.join(", ")
            )
        })
    }
}

impl Event {
    pub fn kind(&self) -> Kind {
        self.detail.kind()
    }

    /// The socket a network event is about.
    pub fn net(&self) -> Option<&crate::net::NetInfo> {
        self.detail.net()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            v: u32,
            #[serde(rename = "type")]
            kind: Kind,
            time: WallTime,
            ktime: u64,
            cpu: u32,
            seq: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            process: &'a Option<Process>,
            #[serde(flatten)]
            detail: &'a Detail,
        }
        Json {
            v: SCHEMA_VERSION,
            kind: self.kind(),
            time: self.time,
            ktime: self.ktime,
            cpu: self.cpu,
            seq: self.seq,
            process: &self.process,
            detail: &self.detail,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_in_documentation_order() {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(&names[..3], ["exec", "fork", "exit"]);
        assert_eq!(names.last(), Some(&"lost"));
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(k));
            for &w in k.wire() {
                assert_eq!(Kind::of_wire(w), Some(k), "{k}");
                // one name everywhere: KS_EVENT_TCP_CLOSE is tcp_close
                assert_eq!(ksight_wire::event_kind_name(w), Some(k.name()));
            }
        }
    }

    #[test]
    fn lost_event_json_shape() {
        let ev = Event {
            time: WallTime(1_700_000_000_123_456_789),
            ktime: 5,
            cpu: 1,
            seq: None,
            process: None,
            detail: crate::kinds::lost::Lost {
                lost: crate::kinds::lost::LostDetail {
                    stage: crate::kinds::lost::LostStage::Kernel,
                    output: None,
                    reason: crate::kinds::lost::LostReason::BufferFull,
                    kind: Some("exec"),
                    program: None,
                    count: 3,
                    since_ktime: 1,
                },
            }
            .into(),
        };
        let v: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["type"], "lost");
        assert_eq!(v["time"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(v["lost"]["kind"], "exec");
        assert_eq!(v["lost"]["reason"], "buffer_full");
        assert_eq!(v["lost"]["stage"], "kernel");
        assert!(v["lost"].get("output").is_none());
        assert!(v["lost"].get("program").is_none());
        assert_eq!(v["lost"]["count"], 3);
        assert!(v.get("process").is_none());

        let skipped = crate::kinds::lost::LostDetail {
            stage: crate::kinds::lost::LostStage::Kernel,
            output: None,
            reason: crate::kinds::lost::LostReason::SkippedRuns,
            kind: None,
            program: Some("ks_tcp_btf".into()),
            count: 2,
            since_ktime: 1,
        };
        let v = serde_json::to_value(&skipped).unwrap();
        assert_eq!(v["kind"], serde_json::Value::Null);
        assert_eq!(v["program"], "ks_tcp_btf");
    }
}
