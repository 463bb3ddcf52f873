//! `ksight replay`: the rules on a recorded stream (ksight's JSON Lines),
//! without the kernel, the process table or /proc: the events carry every
//! field the rules read. The alerts are the ones a live run makes of the same
//! events, written the same way (windows close at the event past their end
//! instead of at the next poll: the same alerts, perhaps in another place).

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::engine::{Engine, Fired};
use crate::rules::RuleSet;
use crate::source::JsonEvent;

/// What a replay read and wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayCounts {
    pub events: u64,
    /// Lines that were not JSON events (reported on stderr, first few).
    pub bad: u64,
    /// Alert lines in the input (not evaluated: rules do not see alerts).
    pub alerts_in: u64,
    pub alerts_out: u64,
}

#[derive(Deserialize)]
struct Common<'a> {
    #[serde(borrow)]
    time: Option<&'a RawValue>,
    #[serde(default)]
    ktime: u64,
    #[serde(default)]
    cpu: u32,
    #[serde(borrow)]
    process: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct AlertLine<'a> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    time: Option<&'a RawValue>,
    ktime: u64,
    cpu: u32,
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<&'a RawValue>,
    alert: AlertBody<'a>,
}

#[derive(Serialize)]
struct AlertBody<'a> {
    rule: &'a str,
    severity: &'a str,
    tags: &'a [String],
    output: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressed: Option<u64>,
    event: &'a RawValue,
}

/// Replay `input` through `set`, writing alert lines to `out`.
pub fn replay(input: impl BufRead, set: RuleSet, out: &mut impl Write) -> io::Result<ReplayCounts> {
    let mut engine: Engine<JsonEvent> = Engine::new(set);
    let mut counts = ReplayCounts::default();
    let mut fired = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let ev = match JsonEvent::parse(&line) {
            Ok(ev) => ev,
            Err(e) => {
                counts.bad += 1;
                if counts.bad <= 5 {
                    eprintln!("ksight: line {}: not an event: {e}", n + 1);
                }
                continue;
            }
        };
        if ev.kind().name() == "alert" {
            counts.alerts_in += 1;
            continue;
        }
        counts.events += 1;
        let ktime = ev.tree().get("ktime").and_then(|k| k.as_u64()).unwrap_or(0);
        engine.sweep(ktime, &mut fired);
        engine.eval(&ev, ktime, &mut fired);
        counts.alerts_out += write(&engine, &mut fired, out)?;
    }
    engine.finish(&mut fired);
    counts.alerts_out += write(&engine, &mut fired, out)?;
    Ok(counts)
}

use crate::compile::Source as _;

fn write(
    engine: &Engine<JsonEvent>,
    fired: &mut Vec<Fired<JsonEvent>>,
    out: &mut impl Write,
) -> io::Result<u64> {
    let mut n = 0;
    for f in fired.drain(..) {
        let rule = engine.rule(f.rule);
        let raw: &RawValue = serde_json::from_str(&f.event.raw).map_err(io::Error::other)?;
        let common: Common<'_> = serde_json::from_str(&f.event.raw).map_err(io::Error::other)?;
        let line = AlertLine {
            v: ksight_core::event::SCHEMA_VERSION,
            kind: "alert",
            time: common.time,
            ktime: common.ktime,
            cpu: common.cpu,
            seq: None,
            process: common.process,
            alert: AlertBody {
                rule: &rule.id,
                severity: rule.severity.name(),
                tags: &rule.tags,
                output: &f.output,
                suppressed: f.suppressed,
                event: raw,
            },
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}
