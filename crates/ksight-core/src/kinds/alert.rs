//! `alert`: a detection rule matched an event.
//!
//! Made in userspace by the rules engine (crates/ksight-rules), which sees
//! every event before the filters: `process` is the matched event's, and
//! `alert.event` is the whole matched event as written, so an alert stands
//! alone. An alert that closes a deduplication window carries `suppressed`:
//! how many matches of its key the window folded.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use crate::decode::DecodeError;
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KindSpec, NoRecord};
use crate::model::Header;
use crate::table::{Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub alert: AlertDetail,
}

crate::named_enum! {
    /// How much an alert matters.
    pub enum Severity {
        Info = "info",
        Low = "low",
        Medium = "medium",
        High = "high",
        Critical = "critical",
    }
}

impl Severity {
    /// Its place in the order info < low < medium < high < critical.
    pub fn rank(self) -> u8 {
        self as u8
    }

    pub fn from_name(name: &str) -> Option<Severity> {
        Severity::NAMES.iter().position(|&n| n == name).map(|i| {
            [
                Severity::Info,
                Severity::Low,
                Severity::Medium,
                Severity::High,
                Severity::Critical,
            ][i]
        })
    }
}

/// The matched event, as JSON, written as it is.
#[derive(Debug, Clone)]
pub struct Matched(pub Arc<RawValue>);

impl PartialEq for Matched {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for Matched {}

impl Serialize for Matched {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertDetail {
    /// The rule's id.
    pub rule: Arc<str>,
    pub severity: Severity,
    /// The rule's tags (MITRE ATT&CK ids among them).
    pub tags: Arc<[String]>,
    /// The rule's output template, rendered with the event's fields.
    pub output: String,
    /// This alert closes a deduplication window: the matches it folded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
    pub event: Matched,
}

impl KindSpec for Alert {
    const NAME: &'static str = "alert";
    const WIRE: &'static [u32] = &[];
    type Record = NoRecord;
    type State = ();

    fn decode(_buf: &[u8], _hdr: Header) -> Result<NoRecord, DecodeError> {
        unreachable!("no record has the kind `alert`: WIRE is empty")
    }

    fn born(_hdr: Header, never: NoRecord, _: &mut (), _cx: &mut Cx<'_, Self>) {
        match never {}
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("alert.rule", FieldType::Text, |d| {
            Value::Text(d.alert.rule.as_bytes())
        });
        f.add("alert.severity", FieldType::Enum(Severity::NAMES), |d| {
            Value::Text(d.alert.severity.name().as_bytes())
        });
        f.add("alert.tags", FieldType::List(&FieldType::Text), |d| {
            Value::List(
                d.alert
                    .tags
                    .iter()
                    .map(|t| Value::Text(t.as_bytes()))
                    .collect(),
            )
        });
        f.add("alert.output", FieldType::Text, |d| {
            Value::Text(d.alert.output.as_bytes())
        });
        f.add("alert.suppressed", FieldType::Int, |d| {
            Value::opt_int(d.alert.suppressed)
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let a = &self.alert;
        cell.painted(
            self.colour(),
            format_args!("[{}] {}: {}", a.severity, a.rule, a.output),
        );
        if let Some(n) = a.suppressed {
            let _ = write!(cell, "  ({n} more folded)");
        }
    }

    fn colour(&self) -> Colour {
        if self.alert.severity.rank() >= Severity::High.rank() {
            Colour::Alarm
        } else {
            Colour::Yellow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Critical.rank() > Severity::High.rank());
        assert!(Severity::Info.rank() < Severity::Low.rank());
        assert_eq!(Severity::from_name("medium"), Some(Severity::Medium));
        assert_eq!(Severity::from_name("urgent"), None);
    }
}
