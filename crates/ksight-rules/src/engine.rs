//! Rules evaluated on events: which fire, and when a storm of one alert is
//! folded. Generic over where the events come from (a live event, a replayed
//! line): the same engine decides on both, so replay gives the alerts a live
//! run gave.
//!
//! - Only the rules of an event's kind are evaluated (the index of `RuleSet`).
//! - `threshold: {count, window, by}`: a rule fires on the `count`-th match of
//!   a key within `window` of its first.
//! - `dedup: {by, window}`: the first alert of a key opens a window; further
//!   alerts of that key in it are folded (counted, not written); when the
//!   window ends (a later match of the key, a poll past its end, or the stop),
//!   one more alert carries `suppressed`: how many were folded, with the last
//!   of them as its event. Nothing is folded silently.

use std::collections::HashMap;
use std::time::Instant;

use ksight_core::registry::Value;

use crate::compile::{At, Memo, Source};
use crate::rules::{Rule, RuleSet};

/// A rule fired: the alert to write.
#[derive(Debug, Clone)]
pub struct Fired<E> {
    pub rule: usize,
    pub event: E,
    pub output: String,
    /// Set on the alert that closes a deduplication window.
    pub suppressed: Option<u64>,
}

/// One rule's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleStats {
    /// Events of its kinds it was evaluated on.
    pub evaluated: u64,
    /// Of those, events its condition held on (exceptions aside).
    pub matched: u64,
    pub alerts: u64,
    /// Alerts folded into a deduplication window.
    pub suppressed: u64,
    sampled_ns: u64,
    samples: u64,
}

impl RuleStats {
    /// Mean evaluation time, from one evaluation in every [`SAMPLE`].
    pub fn ns_per_eval(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.sampled_ns as f64 / self.samples as f64)
    }
}

/// One event in this many has its evaluation timed.
pub const SAMPLE: u64 = 64;

/// Open windows (or threshold counts) a rule keeps at most; past that, every
/// window of the rule is closed (their summaries written) and it starts over.
const MAX_KEYS: usize = 16_384;

struct Window<E> {
    until: u64,
    folded: u64,
    last: Option<E>,
}

pub struct Engine<E> {
    set: RuleSet,
    stats: Vec<RuleStats>,
    windows: Vec<HashMap<Vec<u8>, Window<E>>>,
    counts: Vec<HashMap<Vec<u8>, (u64, u64)>>,
    events: u64,
    /// Kept between events so evaluation allocates nothing.
    memo: Memo<'static>,
    /// Matches of `kill_userspace` rules (every match, folded or not), for
    /// the caller to act on: (rule, event).
    kills: Vec<(usize, E)>,
    /// Only a live run acts on kills (a replay or a test does not).
    collect_kills: bool,
}

fn key<E: Source>(by: &[&'static ksight_core::registry::Field], ev: &E) -> Vec<u8> {
    let mut k = Vec::new();
    for f in by {
        let v = ev.get(f);
        match &v {
            Value::Int(n) => k.extend_from_slice(&n.to_le_bytes()),
            Value::Ip(a) => k.extend_from_slice(a.to_string().as_bytes()),
            Value::Bool(b) => k.push(u8::from(*b)),
            Value::Time(t) => k.extend_from_slice(&t.0.to_le_bytes()),
            other => k.extend_from_slice(other.as_bytes().unwrap_or_default()),
        }
        k.push(0x1f);
    }
    k
}

impl<E: Source + Clone> Engine<E> {
    pub fn new(set: RuleSet) -> Self {
        let n = set.rules.len();
        Engine {
            set,
            stats: vec![RuleStats::default(); n],
            windows: (0..n).map(|_| HashMap::new()).collect(),
            counts: (0..n).map(|_| HashMap::new()).collect(),
            events: 0,
            memo: Memo::new(),
            kills: Vec::new(),
            collect_kills: false,
        }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.set
    }

    pub fn rule(&self, i: usize) -> &Rule {
        &self.set.rules[i]
    }

    /// Every rule with its counters.
    pub fn stats(&self) -> impl Iterator<Item = (&Rule, &RuleStats)> {
        self.set.rules.iter().zip(&self.stats)
    }

    /// A new rule set; the counters of rules that keep their id carry over.
    /// Open windows are closed first (their summaries written to `out`).
    pub fn replace(&mut self, set: RuleSet, out: &mut Vec<Fired<E>>) {
        self.finish(out);
        let stats = set
            .rules
            .iter()
            .map(|r| {
                self.set
                    .rules
                    .iter()
                    .position(|o| o.id == r.id)
                    .map_or_else(RuleStats::default, |i| self.stats[i])
            })
            .collect();
        let n = set.rules.len();
        self.set = set;
        self.stats = stats;
        self.windows = (0..n).map(|_| HashMap::new()).collect();
        self.counts = (0..n).map(|_| HashMap::new()).collect();
    }

    /// Evaluate the rules of `ev`'s kind; `ktime` is the event's (CLOCK_MONOTONIC ns).
    pub fn eval(&mut self, ev: &E, ktime: u64, out: &mut Vec<Fired<E>>) {
        let kind = ev.kind() as usize;
        if self.set.by_kind[kind].is_empty() {
            return;
        }
        self.events = self.events.wrapping_add(1);
        let timed = self.events.is_multiple_of(SAMPLE);
        self.decide(ev, None, timed, ktime, out);
    }

    /// Evaluate one rule alone (its tests), enabled or not.
    pub fn eval_rule(&mut self, r: usize, ev: &E, ktime: u64, out: &mut Vec<Fired<E>>) {
        if self.set.rules[r].kinds.contains(&ev.kind()) {
            self.decide(ev, Some(r), false, ktime, out);
        }
    }

    /// The conditions of one rule, or of every rule of the event's kind, then
    /// what the rules that held do.
    fn decide(
        &mut self,
        ev: &E,
        only: Option<usize>,
        timed: bool,
        ktime: u64,
        out: &mut Vec<Fired<E>>,
    ) {
        let memo = std::mem::take(&mut self.memo).reuse(&self.set.slots);
        let at = At {
            src: ev,
            memo: &memo,
            slots: &self.set.slots,
            elem: None,
        };
        let one;
        let rules = match only {
            Some(r) => {
                one = [r];
                &one[..]
            }
            None => &self.set.by_kind[ev.kind() as usize][..],
        };
        // Conditions borrow the rule set; the rules that held act after.
        let mut hits = Vec::new();
        for &r in rules {
            let rule = &self.set.rules[r];
            let start = timed.then(Instant::now);
            let hit = match (&rule.enforce, self.set.enforcement_rule) {
                // the kernel decided: the event is this rule's own
                (Some(_), Some(f)) if only.is_none() => {
                    ev.get(f).as_bytes() == Some(rule.id.as_bytes())
                }
                _ => (rule.cond)(&at) && !rule.exception.as_ref().is_some_and(|x| x(&at)),
            };
            let st = &mut self.stats[r];
            if let Some(s) = start {
                st.sampled_ns += s.elapsed().as_nanos() as u64;
                st.samples += 1;
            }
            st.evaluated += 1;
            if hit {
                st.matched += 1;
                hits.push(r);
            }
        }
        self.memo = memo.reuse(&Default::default());
        if only.is_none() && self.collect_kills {
            for &r in &hits {
                if self.set.rules[r].userspace_kill {
                    self.kills.push((r, ev.clone()));
                }
            }
        }
        for r in hits {
            self.matched(r, ev, ktime, out);
        }
    }

    /// Keep the `kill_userspace` matches for [`Engine::take_kills`].
    pub fn collect_kills(&mut self) {
        self.collect_kills = true;
    }

    /// The `kill_userspace` matches since the last call.
    pub fn take_kills(&mut self) -> Vec<(usize, E)> {
        std::mem::take(&mut self.kills)
    }

    /// Forget every window and count (between rule tests).
    pub fn reset(&mut self) {
        self.windows.iter_mut().for_each(HashMap::clear);
        self.counts.iter_mut().for_each(HashMap::clear);
    }

    fn matched(&mut self, r: usize, ev: &E, ktime: u64, out: &mut Vec<Fired<E>>) {
        let rule = &self.set.rules[r];
        if let Some(t) = &rule.threshold {
            let k = key(&t.by, ev);
            let counts = &mut self.counts[r];
            if counts.len() >= MAX_KEYS && !counts.contains_key(&k) {
                counts.retain(|_, (start, _)| ktime.saturating_sub(*start) < t.window_ns);
                if counts.len() >= MAX_KEYS {
                    counts.clear();
                }
            }
            let (start, n) = counts.entry(k.clone()).or_insert((ktime, 0));
            if ktime.saturating_sub(*start) >= t.window_ns {
                (*start, *n) = (ktime, 0);
            }
            *n += 1;
            if *n < t.count {
                return;
            }
            counts.remove(&k);
        }
        let Some(d) = &rule.dedup else {
            return self.fire(r, ev.clone(), None, out);
        };
        let k = key(&d.by, ev);
        let window = d.window_ns;
        if self.windows[r].len() >= MAX_KEYS && !self.windows[r].contains_key(&k) {
            self.close(r, |w| w.until <= ktime, out);
            if self.windows[r].len() >= MAX_KEYS {
                self.close(r, |_| true, out);
            }
        }
        match self.windows[r].get_mut(&k) {
            Some(w) if ktime < w.until => {
                w.folded += 1;
                w.last = Some(ev.clone());
                self.stats[r].suppressed += 1;
            }
            Some(_) => {
                let w = self.windows[r].remove(&k).expect("present");
                self.summary(r, w, out);
                self.open(r, k, ktime + window, ev, out);
            }
            None => self.open(r, k, ktime.saturating_add(window), ev, out),
        }
    }

    fn open(&mut self, r: usize, k: Vec<u8>, until: u64, ev: &E, out: &mut Vec<Fired<E>>) {
        self.windows[r].insert(
            k,
            Window {
                until,
                folded: 0,
                last: None,
            },
        );
        self.fire(r, ev.clone(), None, out);
    }

    fn fire(&mut self, r: usize, event: E, suppressed: Option<u64>, out: &mut Vec<Fired<E>>) {
        self.stats[r].alerts += 1;
        let output = self.set.rules[r].output.render(&event);
        out.push(Fired {
            rule: r,
            event,
            output,
            suppressed,
        });
    }

    /// The alert that closes a window that folded something.
    fn summary(&mut self, r: usize, w: Window<E>, out: &mut Vec<Fired<E>>) {
        if let (n @ 1.., Some(last)) = (w.folded, w.last) {
            self.fire(r, last, Some(n), out);
        }
    }

    fn close(&mut self, r: usize, which: impl Fn(&Window<E>) -> bool, out: &mut Vec<Fired<E>>) {
        let keys: Vec<Vec<u8>> = self.windows[r]
            .iter()
            .filter(|(_, w)| which(w))
            .map(|(k, _)| k.clone())
            .collect();
        let mut closing: Vec<Window<E>> = keys
            .into_iter()
            .filter_map(|k| self.windows[r].remove(&k))
            .collect();
        // in the order they were opened, for a stable output
        closing.sort_by_key(|w| w.until);
        for w in closing {
            self.summary(r, w, out);
        }
    }

    /// Windows that ended before `now`: their summaries.
    pub fn sweep(&mut self, now: u64, out: &mut Vec<Fired<E>>) {
        for r in 0..self.set.rules.len() {
            if !self.windows[r].is_empty() {
                self.close(r, |w| w.until <= now, out);
            }
        }
    }

    /// Every open window, at the end: their summaries.
    pub fn finish(&mut self, out: &mut Vec<Fired<E>>) {
        for r in 0..self.set.rules.len() {
            self.close(r, |_| true, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::load;
    use crate::source::JsonEvent;

    fn engine(extra: &str) -> Engine<JsonEvent> {
        let text = format!(
            "- rule: r\n  events: [exec]\n  condition: process.comm == sh\n  severity: low\n  output: \"{{process.pid}}\"\n{extra}"
        );
        Engine::new(load(&[("r.yaml".into(), text)]).unwrap())
    }

    fn exec(pid: u32, comm: &str, ktime: u64) -> JsonEvent {
        JsonEvent::parse(&format!(
            r#"{{"type":"exec","ktime":{ktime},"process":{{"pid":{pid},"comm":"{comm}"}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_storm_is_folded_and_counted() {
        let mut e = engine("  dedup: {by: [process.comm], window: 60s}\n");
        let mut out = Vec::new();
        for i in 0..1000u64 {
            e.eval(&exec(i as u32 + 1, "sh", i * 1000), i * 1000, &mut out);
            e.eval(&exec(5, "bash", i), i, &mut out);
        }
        assert_eq!(out.len(), 1, "one alert opens the window");
        assert_eq!(out[0].output, "1");
        e.sweep(1_000_000, &mut out);
        assert_eq!(out.len(), 1, "the window is still open");
        e.sweep(61_000_000_000, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].suppressed, Some(999));
        assert_eq!(out[1].output, "1000", "the last folded event");
        let (_, st) = e.stats().next().unwrap();
        assert_eq!(
            (st.evaluated, st.matched, st.alerts, st.suppressed),
            (2000, 1000, 2, 999)
        );
        // a new window after the old one
        e.eval(&exec(7, "sh", 62_000_000_000), 62_000_000_000, &mut out);
        assert_eq!(out.len(), 3);
        e.finish(&mut out);
        assert_eq!(out.len(), 3, "nothing folded, no summary");
    }

    #[test]
    fn thresholds_fire_on_the_count_within_the_window() {
        let mut e = engine("  threshold: {count: 3, window: 10s, by: [process.pid]}\n");
        let mut out = Vec::new();
        let s = 1_000_000_000;
        for t in [0, 1, 20, 21, 22] {
            e.eval(&exec(1, "sh", t * s), t * s, &mut out);
        }
        assert_eq!(out.len(), 1, "0, 1 then a new window: 20, 21, 22");
        assert_eq!(
            out[0]
                .event
                .get(ksight_core::registry::registry().field("ktime").unwrap()),
            Value::Int(22 * s as i64)
        );
    }
}
