//! ksight's own sensors, loaded on this kernel in every hook flavour and
//! transport (not attached: the accept() hook alone is attached for a moment),
//! and what follows for each feature.
//!
//! Every sensor of ksight-bpf is loaded, so a new BPF object cannot be
//! forgotten here. The features come from [`ROWS`], one per feature; a sensor
//! without a row still gets one, named by its `Spec::feature`.

use ksight_bpf::probe::{self, Outcome, OwnLoad, OwnSensor};
use ksight_bpf::sensor::Spec;
use ksight_bpf::{AttachMode, TransportMode};
use serde::Serialize;

use crate::probes::describe;
use crate::{Finding, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureState {
    Active,
    Degraded,
    Unavailable,
}

#[derive(Debug, Clone, Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub state: FeatureState,
    pub detail: String,
}

/// One feature a sensor gives.
struct Row<'a> {
    name: &'static str,
    sensor: &'static str,
    /// When it runs; `{hooks}` is the tracepoint flavour, `{hook}` the sensor's own choice.
    active: &'a str,
    /// When the kernel refuses the sensor (the process sensor runs).
    refused: FeatureState,
    /// Followed by the kernel's reason when it ends with ": ".
    refused_detail: &'static str,
}

const ROWS: &[Row<'static>] = &[
    Row {
        name: "TCP events",
        sensor: "net",
        active: "connect, accept, listen, tcp_close, tcp_state via {hooks}",
        refused: FeatureState::Unavailable,
        refused_detail:
            "the kernel refused the network programs (see the ksight programs findings)",
    },
    Row {
        name: "accept attribution",
        sensor: "accept",
        active: "an accepted connection names the process that called accept() \
                 (hook: {hook} on inet_csk_accept)",
        refused: FeatureState::Degraded,
        refused_detail: "an accepted connection names the listening socket's owner (read \
                         from /proc for listeners opened before ksight started): no accept() \
                         hook (fexit needs BTF and no lockdown, kretprobe CONFIG_KPROBES; the \
                         load.accept findings say why)",
    },
    Row {
        name: "UDP flows",
        sensor: "udp",
        active: "per-flow packet and byte counts",
        refused: FeatureState::Unavailable,
        refused_detail: "the kernel refused the UDP programs: ",
    },
    Row {
        name: "DNS events",
        sensor: "udp",
        active: "queries, answers and latency over UDP and TCP",
        refused: FeatureState::Unavailable,
        refused_detail: "the kernel refused the UDP programs: ",
    },
    Row {
        name: "getaddrinfo",
        sensor: "gai",
        active: "libc getaddrinfo calls as the application saw them (uprobes on the libc of each process that sends DNS; on every process with --getaddrinfo all)",
        refused: FeatureState::Unavailable,
        refused_detail: "the kernel refused the getaddrinfo uprobes: ",
    },
    Row {
        name: "credential changes",
        sensor: "creds",
        active: "cred_change events as each change happens (hook: {hook} on commit_creds)",
        refused: FeatureState::Degraded,
        refused_detail: "cred_change events found late, by comparing the credentials the other \
                         hooks record in a process's own context (its next fork, exit, signal, \
                         module load or ptrace access); no commit_creds hook (fentry is refused \
                         under lockdown, a kprobe needs CONFIG_KPROBES): ",
    },
    Row {
        name: "ptrace and memory access",
        sensor: "ptrace",
        active: "ptrace attach/seize, process_vm_readv/writev, /proc/PID/mem, pidfd_getfd \
                 (hook: {hook} on security_ptrace_access_check)",
        refused: FeatureState::Unavailable,
        refused_detail: "no ptrace events (a documented gap: the access check is reachable only \
                         by fentry, refused under lockdown, or a kprobe, which needs \
                         CONFIG_KPROBES): ",
    },
];

fn load_finding(
    id: String,
    title: String,
    works: bool,
    detail: String,
    meaning: String,
) -> Finding {
    let status = if works { Status::Ok } else { Status::Info };
    Finding::new(id, "ksight programs", title, status, detail, meaning)
}

/// One sensor's finding in one configuration; `None` for a sensor whose
/// programs do not depend on the hook flavour, but in its tp_btf row.
fn sensor_finding(l: &OwnLoad, s: &OwnSensor) -> Option<Finding> {
    let spec = s.spec;
    let (id, title) = if spec.flavoured {
        (
            format!("load.{}.{}.{}", spec.name, l.attach, l.transport),
            format!("{}.bpf.c via {} + {}", spec.name, l.attach, l.transport),
        )
    } else if l.attach == AttachMode::TpBtf {
        (
            format!("load.{}.{}", spec.name, l.transport),
            format!("{}.bpf.c via {}", spec.name, l.transport),
        )
    } else {
        return None;
    };
    let detail = match (&s.outcome, &s.detail) {
        (Outcome::Works, Some(hook)) => format!("attaches via {hook}"),
        (Outcome::Works, None) => "loads (not attached)".into(),
        (o, Some(full)) => format!("{}\n{full}", describe(o)),
        (o, None) => describe(o),
    };
    let meaning = format!(
        "ksight's {} programs ({}.bpf.c: {}), verified by this kernel",
        spec.feature, spec.name, spec.hooks
    );
    Some(load_finding(id, title, s.outcome.works(), detail, meaning))
}

/// Load ksight's sensors in each configuration; add their findings; derive the features.
pub fn features(findings: &mut Vec<Finding>) -> Vec<Feature> {
    let loads = probe::own_programs();
    for l in &loads {
        let detail = match &l.detail {
            None => "loads (not attached)".to_string(),
            Some(d) => d.clone(),
        };
        findings.push(load_finding(
            format!("load.process.{}.{}", l.attach, l.transport),
            format!("process.bpf.c via {} + {}", l.attach, l.transport),
            l.outcome.works(),
            detail,
            "ksight's own fork/exec/exit programs, verified by this kernel".into(),
        ));
        findings.extend(l.sensors.iter().filter_map(|s| sensor_finding(l, s)));
    }
    // the configuration ksight would run
    let best = [
        (AttachMode::TpBtf, TransportMode::Ringbuf),
        (AttachMode::RawTp, TransportMode::Ringbuf),
        (AttachMode::TpBtf, TransportMode::Perf),
        (AttachMode::RawTp, TransportMode::Perf),
    ]
    .into_iter()
    .find_map(|(a, t)| {
        loads
            .iter()
            .find(|l| l.attach == a && l.transport == t && l.outcome.works())
    });
    let mut out = vec![process_feature(best)];
    let specs: Vec<&'static Spec> = ksight_bpf::sensors::all()
        .iter()
        .map(|s| s.spec())
        .filter(|s| !s.wanted_by.is_empty())
        .collect();
    for spec in specs {
        let rows: Vec<&Row<'_>> = ROWS.iter().filter(|r| r.sensor == spec.name).collect();
        let hooks = format!("{} (hooks: {})", spec.feature, spec.hooks);
        let generic = [Row {
            name: spec.feature,
            sensor: spec.name,
            active: &hooks,
            refused: FeatureState::Unavailable,
            refused_detail: "the kernel refused its programs: ",
        }];
        let rows: Vec<&Row<'_>> = if rows.is_empty() {
            generic.iter().collect()
        } else {
            rows
        };
        if spec.name == "kmod" && !ksight_bpf::sensors::kmod::kernel_has_modules() {
            out.push(Feature {
                name: spec.feature,
                state: FeatureState::Unavailable,
                detail: "this kernel has no module support (no /proc/modules): no module can \
                         be loaded, nothing to watch"
                    .into(),
            });
            continue;
        }
        for row in rows {
            out.push(feature(row, spec, best));
        }
    }
    out.push(cgroup_filter(findings));
    out.push(sensitive_files());
    out.push(bpf_loads());
    out
}

/// The `bpf_load` kind: perf's side band opens on this kernel.
fn bpf_loads() -> Feature {
    match ksight_bpf::bpfwatch::BpfWatch::new() {
        Ok(_) => Feature {
            name: "BPF program loads",
            state: FeatureState::Active,
            detail: "bpf_load events from perf's side band (PERF_RECORD_BPF_EVENT): paid only \
                     at program loads"
                .into(),
        },
        Err(e) => Feature {
            name: "BPF program loads",
            state: FeatureState::Unavailable,
            detail: format!("no bpf_load events: {e}"),
        },
    }
}

/// The `file` kind: a fanotify group in FID mode, a mark on a directory of
/// our own (removed after), and whether renames come whole.
fn sensitive_files() -> Feature {
    let dir = std::env::temp_dir().join(format!("ksight-doctor-files-{}", std::process::id()));
    let result = std::fs::create_dir_all(&dir).and_then(|()| ksight_bpf::files::probe(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(whole) => Feature {
            name: "sensitive files",
            state: FeatureState::Active,
            detail: format!(
                "file events on watched paths via fanotify (FAN_REPORT_DFID_NAME, no BPF){}",
                if whole {
                    ""
                } else {
                    "; renames as moved-from/moved-to halves (FAN_RENAME needs 5.17)"
                }
            ),
        },
        Err(e) => Feature {
            name: "sensitive files",
            state: FeatureState::Unavailable,
            detail: format!("no file events: {e}"),
        },
    }
}

fn process_feature(best: Option<&OwnLoad>) -> Feature {
    match best {
        Some(l) if (l.attach, l.transport) == (AttachMode::TpBtf, TransportMode::Ringbuf) => {
            Feature {
                name: "process events",
                state: FeatureState::Active,
                detail: "fork, exec, exit via tp_btf, delivered through the ring buffer".into(),
            }
        }
        Some(l) => Feature {
            name: "process events",
            state: FeatureState::Degraded,
            detail: format!(
                "via {} and the {} buffer{}{}",
                l.attach,
                l.transport,
                if l.attach == AttachMode::RawTp {
                    "; tp_btf refused"
                } else {
                    ""
                },
                if l.transport == TransportMode::Perf {
                    "; no ring buffer: per-CPU buffers merged by time (+ --reorder-window latency)"
                } else {
                    ""
                }
            ),
        },
        None => Feature {
            name: "process events",
            state: FeatureState::Unavailable,
            detail: "the kernel refused every configuration of ksight's programs (see the \
                     ksight programs findings)"
                .into(),
        },
    }
}

/// A row's feature in the configuration ksight would run.
fn feature(row: &Row<'_>, spec: &Spec, best: Option<&OwnLoad>) -> Feature {
    let unavailable = |detail: String| Feature {
        name: row.name,
        state: FeatureState::Unavailable,
        detail,
    };
    let Some(l) = best else {
        return unavailable("no process events".into());
    };
    let mine = l.sensors.iter().find(|s| s.spec.name == spec.name);
    match mine {
        Some(s) if s.outcome.works() => Feature {
            name: row.name,
            state: FeatureState::Active,
            detail: row
                .active
                .replace("{hooks}", &l.attach.to_string())
                .replace("{hook}", s.detail.as_deref().unwrap_or("?")),
        },
        Some(s) => Feature {
            name: row.name,
            state: row.refused,
            detail: if row.refused_detail.ends_with(": ") {
                let why = match &s.outcome {
                    Outcome::Refused { message, .. } => message.as_str(),
                    Outcome::Works => "",
                };
                format!("{}{why}", row.refused_detail)
            } else {
                row.refused_detail.to_string()
            },
        },
        // not loaded at all: the sensor it needs was refused
        None => unavailable(match spec.after {
            Some(dep) => format!("needs the {dep} sensor, which the kernel refused"),
            None => "not loaded".into(),
        }),
    }
}

fn cgroup_filter(findings: &[Finding]) -> Feature {
    let ok = |id: &str| {
        findings
            .iter()
            .any(|f| f.id == id && f.status == Status::Ok)
    };
    let active = ok("helper.bpf_current_task_under_cgroup") && ok("map.cgroup_array");
    Feature {
        name: "in-kernel cgroup filter",
        state: if active {
            FeatureState::Active
        } else {
            FeatureState::Unavailable
        },
        detail: if active {
            "--cgroup is decided in the kernel".into()
        } else {
            "--cgroup needs bpf_current_task_under_cgroup and cgroup arrays".into()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_names_a_sensor_that_exists() {
        let all = ksight_bpf::sensors::all();
        for row in ROWS {
            assert!(
                all.iter().any(|s| s.spec().name == row.sensor),
                "feature {} names no sensor {}",
                row.name,
                row.sensor
            );
        }
    }
}
