//! Security signals beyond exec and sockets, on the real kernel: BPF
//! programs loaded by others (perf's side band).

mod common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// BPF_PROG_LOAD of a socket filter `r0 = 0; exit` named `name`; the fd.
fn load_socket_filter(name: &str) -> OwnedFd {
    let insns: [u64; 2] = [
        // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 0
        u64::from_le_bytes([0xb7, 0, 0, 0, 0, 0, 0, 0]),
        // BPF_JMP | BPF_EXIT
        u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
    ];
    let license = c"GPL";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // BPF_PROG_TYPE_SOCKET_FILTER
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes()); // insn_cnt
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    let n = name.len().min(15);
    attr[48..48 + n].copy_from_slice(&name.as_bytes()[..n]); // prog_name
                                                             // SAFETY: BPF_PROG_LOAD reads `attr` (128 bytes) and the arrays it points to.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            5, // BPF_PROG_LOAD
            attr.as_ptr(),
            attr.len() as u32,
        )
    };
    assert!(
        fd >= 0,
        "BPF_PROG_LOAD: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new descriptor, ours.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn loads_of(r: &Run, name: &str) -> Vec<Value> {
    r.events
        .iter()
        .filter(|e| e["type"] == "bpf_load" && e["bpf"]["name"] == name)
        .cloned()
        .collect()
}

#[test]
fn a_bpf_program_loaded_by_another_process_is_reported_with_its_loader() {
    let k = Ksight::start(&["--events", "bpf_load,exec"]);
    let me = std::process::id();
    let ksight = k.pid();
    let held = load_socket_filter("ks_test_held");
    // one loaded and closed at once: gone before ksight asks about it
    let tid = unsafe { libc::gettid() } as u32;
    drop(load_socket_filter("ks_test_gone"));
    std::thread::sleep(Duration::from_millis(300));
    let r = k.stop();
    drop(held);
    let l = loads_of(&r, "ks_test_held");
    assert_eq!(l.len(), 1, "{l:#?}\n{}", r.stderr);
    let b = &l[0]["bpf"];
    assert_eq!(l[0]["process"]["pid"], me);
    assert_eq!(b["prog_type"], "socket_filter");
    assert_eq!(b["insns"], 2);
    assert_eq!(b["uid"], 0);
    assert_eq!(b["tid"], tid);
    assert_eq!(b["tag"].as_str().unwrap().len(), 16);
    // the other: reported by id and tag, with its loader, info or not
    let gone: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| {
            e["type"] == "bpf_load" && e["process"]["pid"] == me && e["bpf"]["id"] != b["id"]
        })
        .collect();
    assert_eq!(gone.len(), 1, "{gone:#?}");
    // the shipped rule: one alert for both (same image, same type within its window)
    let alerts: Vec<&Value> = r
        .of("alert", me)
        .into_iter()
        .filter(|a| a["alert"]["rule"] == "bpf_program_loaded")
        .collect();
    assert!(!alerts.is_empty() && alerts.len() <= 2, "{alerts:#?}");
    assert!(gone[0]["bpf"]["name"].is_null() || gone[0]["bpf"]["name"] == "ks_test_gone");
    // ksight's own programs are never reported
    assert!(r
        .events
        .iter()
        .all(|e| e["type"] != "bpf_load" || e["process"]["pid"] != ksight));
}

/// Helper: drop to uid/gid 65534 with setresgid/setresuid (no exec), fork a
/// child that exits at once, then exit.
#[test]
#[ignore]
fn helper_drop_privileges_then_fork() {
    // SAFETY: plain syscalls on this process.
    unsafe {
        assert_eq!(libc::setresgid(65534, 65534, 65534), 0);
        assert_eq!(libc::setresuid(65534, 65534, 65534), 0);
        let child = libc::fork();
        if child == 0 {
            libc::_exit(0);
        }
        let mut st = 0;
        libc::waitpid(child, &mut st, 0);
        libc::_exit(0);
    }
}

#[test]
fn a_process_that_changes_its_uid_without_an_exec_is_reported_at_its_next_hook() {
    let k = Ksight::start(&["--events", "cred_change,exec,fork,exit"]);
    let (pid, st) = run(&mut helper_command("helper_drop_privileges_then_fork"));
    assert!(st.success());
    // a setuid binary's exec is not a cred_change
    let (su, _) = run(Command::new("su").args(["nobody", "-s", "/bin/true"]));
    std::thread::sleep(Duration::from_millis(300));
    let r = k.stop();
    let c = r.of("cred_change", pid);
    // with the commit_creds hook (fentry or kprobe), each change as it
    // happens: setresgid, then setresuid; else one comparison at the fork
    let hooked = !r
        .stderr
        .contains("credential changes are found by comparing");
    if hooked {
        assert_eq!(c.len(), 2, "{c:#?}");
        assert!(c.iter().all(|e| e["cred"]["found_by"] == "commit_creds"));
        assert_eq!(c[1]["cred"]["after"]["uid"], 65534);
        assert!(r.of("cred_change", su).is_empty());
        return;
    }
    assert_eq!(
        c.len(),
        1,
        "once, at the first hook after it: {c:#?}\n{}",
        r.stderr
    );
    let cred = &c[0]["cred"];
    assert_eq!(cred["before"]["uid"], 0);
    assert_eq!(cred["before"]["euid"], 0);
    assert_eq!(cred["after"]["uid"], 65534);
    assert_eq!(cred["after"]["egid"], 65534);
    assert_eq!(cred["found_by"], "fork");
    assert_eq!(cred["to_root"], false);
    assert_eq!(c[0]["process"]["uid"], 65534);
    // the fork that showed it comes first, the exit saw nothing new
    let fork = r.of("fork", pid);
    assert!(!fork.is_empty());
    assert!(r.index(fork[0]) < r.index(c[0]));
    assert!(
        r.of("cred_change", su).is_empty(),
        "{:#?}",
        r.of("cred_change", su)
    );
}

#[test]
fn a_ptrace_attach_is_reported_or_the_missing_hook_is_said() {
    let k = Ksight::start(&["--events", "ptrace,exec"]);
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let target = child.id() as libc::pid_t;
    // SAFETY: attach to our own child, wait for its stop, detach.
    unsafe {
        assert_eq!(
            libc::ptrace(libc::PTRACE_ATTACH, target, 0, 0),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
        let mut st = 0;
        libc::waitpid(target, &mut st, 0);
        libc::ptrace(libc::PTRACE_DETACH, target, 0, 0);
    }
    let _ = child.kill();
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(300));
    let r = k.stop();
    let me = std::process::id();
    let events = r.of("ptrace", me);
    if r.stderr.contains("degraded: ptrace events unavailable") {
        // this kernel: no fentry (lockdown) and no kprobes; it says why
        assert!(r.stderr.contains("fentry"), "{}", r.stderr);
        assert!(events.is_empty());
    } else {
        let attach: Vec<&&Value> = events
            .iter()
            .filter(|e| e["ptrace"]["request"] == "attach")
            .collect();
        assert_eq!(attach.len(), 1, "{events:#?}");
        assert_eq!(attach[0]["ptrace"]["syscall"], "ptrace");
        assert_eq!(attach[0]["ptrace"]["target"]["pid"], target);
    }
}
