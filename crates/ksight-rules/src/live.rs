//! The rules engine as a stage of ksight's pipeline: it sees every event
//! before the filters and writes `alert` events after the events that fired
//! them.

use std::sync::Arc;

use ksight_core::enforce::{Action, KillOutcome, Mode, Policy};
use ksight_core::event::{Detail, Event, Kind};
use ksight_core::kinds::alert::{Alert, AlertDetail, Matched};
use ksight_core::kinds::enforcement::{EnforceResult, Enforcement};
use ksight_core::pipeline::Stage;

use crate::engine::{Engine, Fired};
use crate::rules::RuleSet;

/// Sends SIGKILL to the process of an event, if it is still that process
/// image (the binary's, with the system calls).
pub type Killer = Box<dyn FnMut(&Event) -> KillOutcome>;

pub struct LiveRules {
    engine: Engine<Event>,
    fired: Vec<Fired<Event>>,
    /// Alerts made outside an event's turn (a reload's closed windows).
    pending: Vec<Event>,
    /// `kill_userspace` rules act with it; without (or without --enforce)
    /// they only say what they would have done.
    killer: Option<Killer>,
    enforce: bool,
    /// Kill rules by content (`exec.file.sha256`): the policy the kernel
    /// runs, to name the files that hash to theirs.
    policy: Option<Policy>,
    /// Files learned to be such executables since the last take: (dev in
    /// the kernel's encoding, inode, rules), for the kernel's map.
    learned: Vec<(u32, u64, u64)>,
}

impl LiveRules {
    pub fn new(set: RuleSet) -> Self {
        let mut engine = Engine::new(set);
        engine.collect_kills();
        LiveRules {
            engine,
            fired: Vec::new(),
            pending: Vec::new(),
            killer: None,
            enforce: false,
            policy: None,
            learned: Vec::new(),
        }
    }

    /// The policy the kernel enforces: its kill rules by content make this
    /// stage watch execs and their hashes.
    pub fn set_policy(&mut self, policy: Policy) {
        let by_content = policy.rules.iter().any(|r| !r.sha256.is_empty());
        self.policy = by_content.then_some(policy);
    }

    /// Executables learned since the last call (see `learned`).
    pub fn take_learned(&mut self) -> Vec<(u32, u64, u64)> {
        std::mem::take(&mut self.learned)
    }

    /// An exec whose file's hash a kill rule names: the file goes to the
    /// kernel (its next exec is killed there), and this process, which ran
    /// before the hash was known, is killed from here.
    fn by_content(&mut self, ev: &Event, out: &mut Vec<Event>) {
        let Some(policy) = &self.policy else {
            return;
        };
        let (sha, dev, ino) = match &ev.detail {
            Detail::Exec(x) => (
                x.exec.file.sha256.clone(),
                x.exec.file.dev,
                x.exec.file.inode,
            ),
            Detail::ExeHash(h) => (h.exe_hash.sha256.clone(), h.exe_hash.dev, h.exe_hash.inode),
            _ => return,
        };
        let Some(sha) = sha else {
            return;
        };
        let mask = policy.sha256_rules(&sha);
        if mask == 0 {
            return;
        }
        self.learned.push((dev.0, ino, mask));
        // this process: by the first of those rules whose cgroup holds it
        // (the kernel applies the same scope to the next execs)
        let cgroup = ev.process.as_ref().and_then(|p| p.cgroup.as_deref());
        let Some(rule) = policy.rules.iter().enumerate().find_map(|(i, r)| {
            let under = match (&r.cgroup, cgroup) {
                (None, _) => true,
                (Some(c), Some(p)) => {
                    c == "/"
                        || p == c
                        || p.strip_prefix(c.as_str())
                            .is_some_and(|t| t.starts_with('/'))
                }
                (Some(_), None) => false,
            };
            // a parent scope is the kernel's to judge, at the next exec
            (mask & (1 << i) != 0 && under && r.ancestor_exes.is_empty()).then_some(r)
        }) else {
            return;
        };
        let acts = policy.effective(rule) == Mode::Enforce;
        let result = match (&mut self.killer, acts) {
            (Some(k), true) => match k(ev) {
                KillOutcome::Killed => EnforceResult::Killed,
                KillOutcome::Gone => EnforceResult::Gone,
                KillOutcome::Failed(_) => EnforceResult::Failed,
            },
            _ => EnforceResult::WouldKill,
        };
        out.push(Enforcement::userspace_kill(
            ev,
            &rule.id,
            Action::Kill,
            result,
        ));
    }

    /// How `kill_userspace` rules act: `enforce` is `--enforce`.
    pub fn set_killer(&mut self, enforce: bool, killer: Killer) {
        self.enforce = enforce;
        self.killer = Some(killer);
    }

    /// The `kill_userspace` matches of the last event: each killed (or,
    /// in monitor mode, not), with an `enforcement` event saying which.
    fn kills(&mut self, out: &mut Vec<Event>) {
        for (r, ev) in self.engine.take_kills() {
            let rule = self.engine.rule(r);
            let acts = self.enforce && rule.mode != Some(Mode::Monitor);
            let result = match (&mut self.killer, acts) {
                (Some(k), true) => match k(&ev) {
                    KillOutcome::Killed => EnforceResult::Killed,
                    KillOutcome::Gone => EnforceResult::Gone,
                    KillOutcome::Failed(why) => {
                        let pid = ev.process.as_ref().map_or(0, |p| p.pid);
                        eprintln!(
                            "ksight: warning: rule {}: killing pid {pid}: {why}",
                            rule.id
                        );
                        EnforceResult::Failed
                    }
                },
                _ => EnforceResult::WouldKill,
            };
            out.push(Enforcement::userspace_kill(
                &ev,
                &rule.id,
                Action::KillUserspace,
                result,
            ));
        }
    }

    pub fn engine(&self) -> &Engine<Event> {
        &self.engine
    }

    /// A new rule set: rules (added, removed, changed).
    pub fn reload(&mut self, set: RuleSet) -> (usize, usize, usize) {
        let changes = set.changes_from(self.engine.rules());
        self.engine.replace(set, &mut self.fired);
        let fired = std::mem::take(&mut self.fired);
        for f in fired {
            let a = self.alert(f);
            self.pending.push(a);
        }
        changes
    }

    fn alert(&self, f: Fired<Event>) -> Event {
        let rule = self.engine.rule(f.rule);
        let ev = f.event;
        let json = serde_json::value::to_raw_value(&ev).expect("an event serialises");
        Event {
            time: ev.time,
            ktime: ev.ktime,
            cpu: ev.cpu,
            seq: None,
            process: ev.process.clone(),
            detail: Alert {
                alert: AlertDetail {
                    rule: rule.id.clone(),
                    severity: rule.severity,
                    tags: rule.tags.clone(),
                    output: f.output,
                    suppressed: f.suppressed,
                    event: Matched(Arc::from(json)),
                },
            }
            .into(),
        }
    }

    fn flush(&mut self, out: &mut Vec<Event>) {
        out.append(&mut self.pending);
        let fired = std::mem::take(&mut self.fired);
        for f in fired {
            out.push(self.alert(f));
        }
    }
}

impl Stage for LiveRules {
    fn wants(&self, kind: Kind) -> bool {
        self.engine.rules().wants(kind)
            || (self.policy.is_some() && matches!(kind, Kind::Exec | Kind::ExeHash))
    }

    fn event(&mut self, ev: &Event, out: &mut Vec<Event>) {
        self.engine.eval(ev, ev.ktime, &mut self.fired);
        self.kills(out);
        self.by_content(ev, out);
        if !self.fired.is_empty() || !self.pending.is_empty() {
            self.flush(out);
        }
    }

    fn tick(&mut self, now: u64, last: bool, out: &mut Vec<Event>) {
        if last {
            self.engine.finish(&mut self.fired);
        } else {
            self.engine.sweep(now, &mut self.fired);
        }
        self.flush(out);
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
