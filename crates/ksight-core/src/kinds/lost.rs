//! `lost`: records the kernel could not deliver, reported in-band.
//!
//! Made in userspace: after each poll, the per-CPU drop counters (events.h
//! `ks_cpu_stats`, bumped by `ks_emit` when the buffer refuses a record) and
//! each program's count of skipped runs (`recursion_misses`) are read through
//! [`KernelState`]; any increase becomes an event. Filters never hide them.

use std::collections::HashMap;

use serde::Serialize;

use crate::decode::DecodeError;
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KernelState, KindSpec, NoRecord, WIRE_KINDS};
use crate::model::{EventOf, Header};
use crate::table::{Cell, Colour};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lost {
    pub lost: LostDetail,
}

crate::named_enum! {
    /// Why records were lost.
    pub enum LostReason {
        /// the kernel refused records (counted per CPU and kind)
        BufferFull = "buffer_full",
        /// the kernel skipped runs of a program (another run of it was in
        /// progress on the same CPU: a softirq interrupting it)
        SkippedRuns = "skipped_runs",
        /// an output's queue was full (its receiver too slow or gone): the
        /// oldest or newest events waiting were dropped, as configured
        QueueFull = "queue_full",
        /// an output could not deliver events (a write or send failed, retries
        /// ran out)
        OutputFailed = "output_failed",
        /// the kernel's fanotify queue of file events overflowed (`kind`
        /// `file`): events on watched files were dropped
        QueueOverflow = "queue_overflow",
        /// enforcement's bounded map of addresses answered for denied
        /// names was full (`kind` `enforcement`): those addresses are not
        /// denied
        MapFull = "map_full",
    }
}

crate::named_enum! {
    /// Where records were lost: on their way out of the kernel, or in one
    /// output (the others got them).
    pub enum LostStage {
        Kernel = "kernel",
        Output = "output",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostDetail {
    pub stage: LostStage,
    pub reason: LostReason,
    /// The output that lost them (`stage` output only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Which kind of record the kernel could not deliver; `null` for skipped
    /// runs (a run makes a record of one of several kinds, or none).
    pub kind: Option<&'static str>,
    /// The program whose runs were skipped (`skipped_runs` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    pub count: u64,
    /// The kernel time window in which they were lost: after `since_ktime`, up to the event's `ktime`.
    pub since_ktime: u64,
}

/// The counters as last seen.
#[derive(Default)]
pub struct Watch {
    /// Per CPU, by wire kind. Counting starts from zero: the maps are this
    /// run's own, so every drop since the programs were attached is reported,
    /// including those before the consumer existed.
    last: Vec<[u64; WIRE_KINDS]>,
    /// Skipped runs reported so far, by program.
    skipped: HashMap<String, u64>,
    /// The end of the last window; `None`: the pipeline's start.
    since: Option<u64>,
    /// File events the fanotify queue dropped, reported so far.
    file_overflows: u64,
    /// BPF load records perf's side band dropped, reported so far.
    bpf_loads_lost: u64,
    /// Answer addresses enforcement's full map refused, reported so far.
    answers_refused: u64,
    /// When skipped runs were last read (`None`: never; they are read at
    /// most once a second, a syscall per program each time).
    skipped_since: Option<u64>,
    warned: bool,
}

/// How often the programs' skipped runs are read, ns.
const SKIPPED_EVERY_NS: u64 = 1_000_000_000;

impl KindSpec for Lost {
    const NAME: &'static str = "lost";
    const WIRE: &'static [u32] = &[];
    type Record = NoRecord;
    type State = Watch;

    fn decode(_buf: &[u8], _hdr: Header) -> Result<NoRecord, DecodeError> {
        unreachable!("no record has the kind `lost`: WIRE is empty")
    }

    fn born(_hdr: Header, never: NoRecord, _: &mut Watch, _cx: &mut Cx<'_, Self>) {
        match never {}
    }

    fn tick(w: &mut Watch, cx: &mut Cx<'_, Self>, kernel: &dyn KernelState, last: bool) {
        let since = w.since.unwrap_or(cx.config.started_ktime);
        let now = cx.now;
        match kernel.drops() {
            Ok(drops) => {
                if w.last.len() < drops.len() {
                    w.last.resize(drops.len(), [0; WIRE_KINDS]);
                }
                for (cpu, (new, old)) in drops.iter().zip(&mut w.last).enumerate() {
                    for k in 0..WIRE_KINDS {
                        let count = new[k].saturating_sub(old[k]);
                        let Some(kind) = ksight_wire::event_kind_name(k as u32) else {
                            continue;
                        };
                        if count == 0 {
                            continue;
                        }
                        cx.counters.lost[k] += count;
                        let lost = LostDetail {
                            stage: LostStage::Kernel,
                            output: None,
                            reason: LostReason::BufferFull,
                            kind: Some(kind),
                            program: None,
                            count,
                            since_ktime: since,
                        };
                        let time = cx.enricher.clock().wall(now);
                        cx.emit(EventOf {
                            time,
                            ktime: now,
                            cpu: cpu as u32,
                            seq: None,
                            process: None,
                            detail: Lost { lost },
                        });
                    }
                    *old = *new;
                }
            }
            Err(e) if !w.warned => {
                w.warned = true;
                eprintln!("ksight: warning: reading the kernel's drop counters: {e}");
            }
            Err(_) => {}
        }
        // what the side channels (fanotify, perf's side band) could not hold
        let sides = [
            (
                kernel.file_overflows(),
                &mut w.file_overflows,
                "file",
                LostReason::QueueOverflow,
            ),
            (
                kernel.bpf_loads_lost(),
                &mut w.bpf_loads_lost,
                "bpf_load",
                LostReason::BufferFull,
            ),
            (
                kernel.enforce_answers_refused(),
                &mut w.answers_refused,
                "enforcement",
                LostReason::MapFull,
            ),
        ];
        for (total, seen, kind, reason) in sides {
            if total <= *seen {
                continue;
            }
            let count = total - *seen;
            *seen = total;
            cx.counters.side_lost += count;
            let lost = LostDetail {
                stage: LostStage::Kernel,
                output: None,
                reason,
                kind: Some(kind),
                program: None,
                count,
                since_ktime: since,
            };
            cx.state_event(now, None, Lost { lost });
        }
        w.since = Some(now);
        let skipped_since = w.skipped_since.unwrap_or(cx.config.started_ktime);
        if !last && now.saturating_sub(skipped_since) < SKIPPED_EVERY_NS {
            return;
        }
        w.skipped_since = Some(now);
        for (program, total) in kernel.skipped_runs() {
            let seen = w.skipped.entry(program.clone()).or_default();
            let count = total.saturating_sub(*seen);
            *seen = total;
            if count == 0 {
                continue;
            }
            cx.counters.skipped_runs += count;
            let lost = LostDetail {
                stage: LostStage::Kernel,
                output: None,
                reason: LostReason::SkippedRuns,
                kind: None,
                program: Some(program),
                count,
                since_ktime: skipped_since,
            };
            // the kernel counts these per program, not per CPU
            cx.state_event(now, None, Lost { lost });
        }
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("lost.stage", FieldType::Enum(LostStage::NAMES), |d| {
            Value::Text(d.lost.stage.name().as_bytes())
        });
        f.add("lost.reason", FieldType::Enum(LostReason::NAMES), |d| {
            Value::Text(d.lost.reason.name().as_bytes())
        });
        f.add("lost.output", FieldType::Text, |d| {
            d.lost
                .output
                .as_deref()
                .map_or(Value::Null, |p| Value::Text(p.as_bytes()))
        });
        f.add("lost.kind", FieldType::Kind, |d| {
            d.lost
                .kind
                .map_or(Value::Null, |k| Value::Text(k.as_bytes()))
        });
        f.add("lost.program", FieldType::Text, |d| {
            d.lost
                .program
                .as_deref()
                .map_or(Value::Null, |p| Value::Text(p.as_bytes()))
        });
        f.add("lost.count", FieldType::Int, |d| Value::uint(d.lost.count));
        f.add("lost.since_ktime", FieldType::Int, |d| {
            Value::uint(d.lost.since_ktime)
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let lost = &self.lost;
        if let Some(output) = &lost.output {
            return cell.painted(
                Colour::Alarm,
                format_args!(
                    "{} event(s) lost by output {output} ({})",
                    lost.count,
                    lost.reason.name()
                ),
            );
        }
        match (lost.kind, &lost.program) {
            (Some(kind), _) => cell.painted(
                Colour::Alarm,
                format_args!(
                    "{} {} record(s) lost on cpu {}",
                    lost.count,
                    kind,
                    cell.cpu()
                ),
            ),
            (None, program) => cell.painted(
                Colour::Alarm,
                format_args!(
                    "{} run(s) of {} skipped by the kernel (nested on one CPU)",
                    lost.count,
                    program.as_deref().unwrap_or("a program"),
                ),
            ),
        }
    }

    fn colour(&self) -> Colour {
        Colour::Alarm
    }
}

impl Lost {
    /// Events one output dropped or could not deliver, between `since_ktime`
    /// and the event's time.
    pub fn output(name: &str, reason: LostReason, count: u64, since_ktime: u64) -> Lost {
        Lost {
            lost: LostDetail {
                stage: LostStage::Output,
                reason,
                output: Some(name.to_string()),
                kind: None,
                program: None,
                count,
                since_ktime,
            },
        }
    }
}
