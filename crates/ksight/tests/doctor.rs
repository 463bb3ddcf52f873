//! `ksight doctor` on this machine (real probes) and on fixture trees of other kernels.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn doctor(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(KSIGHT)
        .arg("doctor")
        .args(["--format", "json"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor JSON: {e}\n{stderr}"));
    (out.status.code(), json, stderr)
}

fn find<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no finding {id}"))
}

fn fixture(name: &str) -> String {
    format!(
        "{}/../ksight-doctor/tests/fixtures/doctor/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// What the brief measured on this machine: the doctor must say the same.
#[test]
fn a_real_run_reports_what_is_true_of_this_machine() {
    require_root();
    let (code, r, stderr) = doctor(&[]);
    // everything but the accept() and ptrace hooks, which need kprobes or
    // fentry, and module loads, which this kernel cannot do
    assert_eq!(code, Some(1), "ksight runs degraded here: {r:#}");
    assert_eq!(r["verdict"], "degraded");
    let features = r["features"].as_array().unwrap();
    let mut less: Vec<(&str, &str)> = features
        .iter()
        .filter(|f| f["state"] != "active")
        .map(|f| (f["name"].as_str().unwrap(), f["state"].as_str().unwrap()))
        .collect();
    less.sort();
    assert_eq!(
        less,
        [
            ("accept attribution", "degraded"),
            ("credential changes", "degraded"),
            ("kernel module loads", "unavailable"),
            ("ptrace and memory access", "unavailable"),
        ],
        "{features:#?}"
    );
    for name in ["sensitive files", "BPF program loads"] {
        assert!(
            features
                .iter()
                .any(|f| f["name"] == name && f["state"] == "active"),
            "{name}: {features:#?}"
        );
    }
    let accept = find(&r, "load.accept.tp_btf.ringbuf");
    let why = accept["detail"].as_str().unwrap();
    assert!(
        why.contains("fexit")
            && why.contains("Operation not permitted")
            && why.contains("kretprobe"),
        "{accept}"
    );
    assert!(
        stderr.is_empty(),
        "libbpf's messages go into the findings: {stderr}"
    );
    assert_eq!(find(&r, "btf.vmlinux")["status"], "ok");
    assert_eq!(find(&r, "map.ringbuf")["status"], "ok");
    let kprobe = find(&r, "hook.kprobe");
    assert_eq!(kprobe["status"], "info");
    assert!(
        kprobe["detail"].as_str().unwrap().contains("ENOENT"),
        "{kprobe}"
    );
    for hook in ["hook.fentry", "hook.lsm"] {
        let f = find(&r, hook);
        assert!(f["detail"].as_str().unwrap().contains("EPERM"), "{f}");
        assert_ne!(f["status"], "fail", "ksight does not need {hook}");
    }
    for hook in ["hook.tp_btf", "hook.raw_tp", "hook.uprobe", "hook.cgroup"] {
        assert_eq!(find(&r, hook)["status"], "ok", "{hook}");
    }
    let lockdown = find(&r, "lockdown");
    assert!(
        lockdown["detail"].as_str().unwrap().contains("[integrity]"),
        "{lockdown}"
    );
    assert_eq!(lockdown["status"], "warn");
    assert_eq!(find(&r, "load.process.tp_btf.ringbuf")["status"], "ok");
    assert_eq!(find(&r, "load.process.raw_tp.perf")["status"], "ok");
    assert!(features
        .iter()
        .any(|f| f["name"] == "process events" && f["state"] == "active"));
    for f in r["findings"].as_array().unwrap() {
        if f["status"] == "warn" || f["status"] == "fail" {
            assert!(!f["meaning"].as_str().unwrap().is_empty(), "{f}");
        }
    }
}

#[test]
fn a_4_19_kernel_without_btf_cannot_run() {
    let (code, r, _) = doctor(&["--root", &fixture("4.19-nobtf")]);
    assert_eq!(code, Some(2));
    assert_eq!(r["verdict"], "cannot_run");
    let btf = find(&r, "btf.vmlinux");
    assert_eq!(btf["status"], "fail");
    assert!(btf["fix"]
        .as_str()
        .unwrap()
        .contains("CONFIG_DEBUG_INFO_BTF"));
}

#[test]
fn a_5_4_kernel_runs_degraded_without_a_ring_buffer() {
    let (code, r, _) = doctor(&["--root", &fixture("5.4-noringbuf")]);
    assert_eq!(code, Some(1));
    assert_eq!(find(&r, "btf.vmlinux")["status"], "ok");
    assert!(find(&r, "kernel.features")["detail"]
        .as_str()
        .unwrap()
        .contains("ring buffer"));
}

#[test]
fn a_hardened_host_is_explained() {
    let (code, r, _) = doctor(&["--root", &fixture("hardened")]);
    assert_eq!(code, Some(2));
    assert_eq!(
        find(&r, "lockdown")["status"],
        "fail",
        "confidentiality stops BPF kernel reads"
    );
    assert_eq!(find(&r, "sysctl.bpf_jit_harden")["status"], "warn");
    assert_eq!(find(&r, "sysctl.unprivileged_bpf_disabled")["status"], "ok");
    assert_eq!(find(&r, "caps")["status"], "fail");
}

#[test]
fn a_missing_kernel_config_is_a_warning_not_a_failure() {
    let (code, r, _) = doctor(&["--root", &fixture("noconfig")]);
    assert_eq!(code, Some(0));
    assert_eq!(find(&r, "config")["status"], "warn");
    assert!(r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| !f["id"].as_str().unwrap().starts_with("config.CONFIG_")));
}

#[test]
fn the_table_is_grouped_with_fixes_and_a_verdict() {
    let out = Command::new(KSIGHT)
        .args(["doctor", "--color", "never", "--root", &fixture("hardened")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    for header in [
        "\nkernel\n",
        "\nbtf\n",
        "\nhardening\n",
        "\nprivileges\n",
        "\nmounts\n",
    ] {
        assert!(text.contains(header), "{header:?} in {text}");
    }
    assert!(text.contains("✘ fail") && text.contains("fix:"), "{text}");
    assert!(text.trim_end().ends_with("(exit 2)"), "{text}");
    assert!(!text.contains('\x1b'));
}

#[test]
fn without_privileges_the_doctor_still_reports() {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            KSIGHT,
            "doctor",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(find(&r, "caps")["status"], "fail");
    assert!(find(&r, "caps")["fix"]
        .as_str()
        .unwrap()
        .contains("cap_bpf"));
}
