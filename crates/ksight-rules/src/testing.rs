//! `ksight rules test`: every rule's fixtures (`tests:`), and a baseline run
//! (a capture of a normal host) that lists the rules that fire on it.

use std::io::{self, BufRead};

use crate::engine::Engine;
use crate::rules::RuleSet;
use crate::source::JsonEvent;

/// What the fixtures said.
#[derive(Debug, Default)]
pub struct TestReport {
    pub passed: usize,
    /// One line per failed test: where it is and what happened.
    pub failed: Vec<String>,
    /// Rules with no test at all.
    pub untested: Vec<String>,
}

/// Run every rule's tests, each rule alone, each test from a clean state.
pub fn run(set: RuleSet) -> TestReport {
    let mut report = TestReport::default();
    let mut engine: Engine<JsonEvent> = Engine::new(set);
    let mut fired = Vec::new();
    for r in 0..engine.rules().rules.len() {
        let rule = engine.rule(r);
        let id = rule.id.to_string();
        if rule.tests.is_empty() {
            report.untested.push(id);
            continue;
        }
        let tests: Vec<(bool, Vec<JsonEvent>, String)> = rule
            .tests
            .iter()
            .map(|t| (t.expect_match, t.events.clone(), t.origin.clone()))
            .collect();
        for (expect, events, origin) in tests {
            engine.reset();
            fired.clear();
            for ev in &events {
                let ktime = ev.tree().get("ktime").and_then(|k| k.as_u64()).unwrap_or(0);
                engine.eval_rule(r, ev, ktime, &mut fired);
            }
            let got = !fired.is_empty();
            if got == expect {
                report.passed += 1;
            } else {
                report.failed.push(format!(
                    "{origin}: rule {id}: expected {}, got {}",
                    if expect { "a match" } else { "no match" },
                    if got { "a match" } else { "none" }
                ));
            }
        }
    }
    report
}

/// Every rule that fires on a capture, with how many alerts.
pub fn baseline(set: RuleSet, input: impl BufRead) -> io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    crate::replay::replay(input, set, &mut out)?;
    let mut counts: Vec<(String, u64)> = Vec::new();
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).map_err(io::Error::other)?;
        let rule = v["alert"]["rule"].as_str().unwrap_or_default().to_string();
        match counts.iter_mut().find(|(r, _)| *r == rule) {
            Some((_, n)) => *n += 1,
            None => counts.push((rule, 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(counts)
}
