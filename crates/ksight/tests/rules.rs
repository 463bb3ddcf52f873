//! Detections on the real kernel: attacks played on loopback raise exactly the
//! alert they should, with the right process; storms are folded and counted;
//! rules reload on SIGHUP; replaying a recorded stream gives the live alerts.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn alerts<'a>(r: &'a Run, rule: &str) -> Vec<&'a Value> {
    r.events
        .iter()
        .filter(|e| e["type"] == "alert" && e["alert"]["rule"] == rule)
        .collect()
}

/// A listener on 127.0.0.1, and the port.
fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[test]
fn a_reverse_shell_raises_one_alert_naming_the_shell() {
    let k = Ksight::start(&["--events", "connect,exec"]);
    let (l, port) = listener();
    // bash connects to the listener and hands it its stdin and stdout
    let (pid, st) = run(Command::new("/bin/bash").args([
        "-c",
        &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; echo id >&3; exec 3>&-"),
    ]));
    assert!(st.success());
    let (mut c, _) = l.accept().unwrap();
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    assert_eq!(got, "id\n");
    // an ordinary client connecting is no shell
    let (curl, _) = run(Command::new("/usr/bin/curl").args([
        "-s",
        "-m",
        "2",
        &format!("http://127.0.0.1:{port}/"),
    ]));
    let r = k.stop();
    let a = alerts(&r, "shell_outbound_connection");
    assert_eq!(a.len(), 1, "{a:#?}\n{}", r.stderr);
    assert_eq!(a[0]["process"]["pid"], pid);
    assert_eq!(a[0]["alert"]["severity"], "high");
    assert_eq!(a[0]["alert"]["event"]["type"], "connect");
    assert_eq!(a[0]["alert"]["event"]["net"]["remote"]["port"], port);
    assert!(a[0]["alert"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "T1059.004"));
    let out = a[0]["alert"]["output"].as_str().unwrap();
    assert!(out.contains(&format!("127.0.0.1:{port}")), "{out}");
    assert!(
        r.events
            .iter()
            .all(|e| !(e["type"] == "alert" && e["process"]["pid"] == curl)),
        "curl is not a shell"
    );
    // the alert follows the event that fired it
    let connect = r
        .events
        .iter()
        .position(|e| e["type"] == "connect" && e["process"]["pid"] == pid)
        .unwrap();
    assert!(r.index(a[0]) > connect);
    assert!(
        r.stderr.contains("shell_outbound_connection "),
        "per-rule counters: {}",
        r.stderr
    );
}

/// One HTTP answer with `body`, on a thread.
fn http_once(body: &'static str) -> u16 {
    let (l, port) = listener();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let mut req = [0u8; 1024];
            let _ = c.read(&mut req);
            let _ = write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn curl_piped_to_sh_raises_one_alert() {
    let k = Ksight::start(&["--events", "exec"]);
    let port = http_once("echo ksight-was-here\n");
    let (pid, st) = run(Command::new("/bin/sh").args([
        "-c",
        &format!("curl -s http://127.0.0.1:{port}/install.sh | sh"),
    ]));
    assert!(st.success());
    let (other, _) = run(Command::new("/bin/sh").args(["-c", "echo curl | cat"]));
    let r = k.stop();
    let a = alerts(&r, "download_piped_to_shell");
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0]["process"]["pid"], pid);
    assert!(r
        .events
        .iter()
        .all(|e| !(e["type"] == "alert" && e["process"]["pid"] == other)));
}

/// The exec_from_dev_shm alerts of one program (other tests run theirs at the same time).
fn shm_alerts<'a>(r: &'a Run, exe: &Path) -> Vec<&'a Value> {
    alerts(r, "exec_from_dev_shm")
        .into_iter()
        .filter(|a| a["alert"]["event"]["exec"]["exe"] == exe.to_str().unwrap())
        .collect()
}

fn shm_copy(tag: &str) -> PathBuf {
    let p = PathBuf::from(format!("/dev/shm/ks-{tag}-{}", std::process::id()));
    install_exe(Path::new("/bin/true"), &p, "0755");
    p
}

#[test]
fn a_binary_run_from_dev_shm_raises_one_alert() {
    let exe = shm_copy("shm");
    let k = Ksight::start(&["--events", "exec"]);
    let (pid, _) = run(&mut Command::new(&exe));
    let (ok, _) = run(&mut Command::new("/bin/true"));
    let r = k.stop();
    let _ = std::fs::remove_file(&exe);
    let a = shm_alerts(&r, &exe);
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0]["process"]["pid"], pid);
    assert_eq!(a[0]["alert"]["event"]["exec"]["exe"], exe.to_str().unwrap());
    assert!(a[0]["alert"].get("suppressed").is_none());
    assert!(r
        .events
        .iter()
        .all(|e| !(e["type"] == "alert" && e["process"]["pid"] == ok)));
}

#[test]
fn a_storm_is_folded_into_one_alert_per_window_with_its_count() {
    let exe = shm_copy("storm");
    let k = Ksight::start(&["--events", "exec"]);
    let n = 1000;
    let mut pids = Vec::new();
    for _ in 0..n {
        pids.push(run(&mut Command::new(&exe)).0);
    }
    let r = k.stop();
    let _ = std::fs::remove_file(&exe);
    // (other tests run programs from /dev/shm at the same time)
    let a = shm_alerts(&r, &exe);
    assert_eq!(
        a.len(),
        2,
        "the window's alert and the one that closes it: {a:#?}"
    );
    assert_eq!(a[0]["process"]["pid"], pids[0]);
    assert!(a[0]["alert"].get("suppressed").is_none());
    assert_eq!(a[1]["alert"]["suppressed"], n - 1);
    assert_eq!(a[1]["process"]["pid"], pids[n - 1], "the last folded event");
    assert!(r.stderr.contains("ksight: rules: "), "{}", r.stderr);
}

/// ksight run to its end, without the kernel (rules check, rules test, replay).
fn ks(args: &[&str]) -> std::process::Output {
    Command::new(KSIGHT).args(args).output().unwrap()
}

fn rule_dir(tag: &str, rules: &str) -> PathBuf {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("rules.yaml"), rules).unwrap();
    dir
}

fn rule(id: &str, comm: &str) -> String {
    format!(
        "- rule: {id}\n  events: [exec]\n  condition: process.comm == {comm}\n  severity: low\n  tags: [T1059]\n  output: \"{{process.comm}} ran\"\n"
    )
}

/// Run `true` under another name, so its comm is `name`.
fn run_as(dir: &Path, name: &str) -> u32 {
    let exe = dir.join(name);
    if !exe.exists() {
        install_exe(Path::new("/bin/true"), &exe, "0755");
    }
    run(&mut Command::new(&exe)).0
}

fn wait_for(k: &Ksight, what: &str, deadline: Duration) {
    let start = Instant::now();
    while !k.stderr_so_far().contains(what) {
        assert!(
            start.elapsed() < deadline,
            "no {what:?} in {}",
            k.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_applies_a_good_pack_and_refuses_a_bad_one() {
    let dir = rule_dir("hup", &rule("first", "ks-one"));
    let bins = temp_dir("hup-bin");
    let k = Ksight::start(&["--events", "exec", "--rules", dir.to_str().unwrap()]);
    let one = run_as(&bins, "ks-one");
    // a good pack: a second rule
    std::fs::write(
        dir.join("rules.yaml"),
        rule("first", "ks-one") + &rule("second", "ks-two"),
    )
    .unwrap();
    k.signal(libc::SIGHUP);
    wait_for(&k, "rules reloaded", Duration::from_secs(5));
    let two = run_as(&bins, "ks-two");
    // a bad pack: refused whole, the two rules run on
    std::fs::write(dir.join("rules.yaml"), rule("first", "ks-one") + "- rule: broken\n  events: [exec]\n  condition: process.commm == x\n  severity: low\n  output: x\n").unwrap();
    k.signal(libc::SIGHUP);
    wait_for(&k, "were not reloaded", Duration::from_secs(5));
    let two_again = run_as(&bins, "ks-two");
    let r = k.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&bins);
    assert!(
        r.stderr.contains("1 added, 0 removed, 0 changed"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            "rules.yaml:9:14: unknown field `process.commm` (did you mean `process.comm`?)"
        ),
        "{}",
        r.stderr
    );
    let fired = |rule: &str| -> Vec<u64> {
        alerts(&r, rule)
            .iter()
            .map(|a| a["process"]["pid"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(fired("first"), [u64::from(one)]);
    assert_eq!(fired("second"), [u64::from(two), u64::from(two_again)]);
}

#[test]
fn replay_gives_the_alerts_of_the_live_run() {
    let exe = shm_copy("replay");
    let out = temp_dir("replay").join("events.jsonl");
    let k = Ksight::start(&["--events", "exec,exit", "-o", out.to_str().unwrap()]);
    for _ in 0..20 {
        run(&mut Command::new(&exe));
    }
    run(Command::new("/bin/sh").args(["-c", "cat /etc/shadow >/dev/null"]));
    let r = k.stop_raw();
    assert!(r.status.success(), "{}", r.stderr);
    let _ = std::fs::remove_file(&exe);
    let text = std::fs::read_to_string(&out).unwrap();
    let live: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.contains("\"type\":\"alert\""))
        .collect();
    assert!(
        live.len() >= 3,
        "two for /dev/shm, one for /etc/shadow: {live:#?}"
    );
    let replay = Command::new(KSIGHT)
        .arg("replay")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let replayed = String::from_utf8(replay.stdout).unwrap();
    let replayed: BTreeSet<&str> = replayed.lines().collect();
    assert_eq!(replayed, live, "byte for byte, as a set");
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
}

#[test]
fn rules_check_and_test_report_file_line_and_column() {
    let ok = ks(&["rules", "check"]);
    assert!(ok.status.success());
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("rules ("),
        "{ok:?}"
    );
    let dir = rule_dir(
        "check",
        "- rule: r\n  events: [dns]\n  condition: exec.cwd == /\n  severity: low\n  output: x\n",
    );
    let bad = ks(&["rules", "check", dir.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("rules.yaml:3:14: `exec.cwd` is not a field of dns events"),
        "{err}"
    );
    let tests = ks(&["rules", "test"]);
    assert!(
        tests.status.success(),
        "{}",
        String::from_utf8_lossy(&tests.stdout)
    );
    // a fixture that fails makes the command fail
    let dir2 = rule_dir(
        "fixture",
        &(rule("r", "sh")
            + "  tests:\n    - expect: match\n      event: {type: exec, process: {comm: bash}}\n"),
    );
    let failing = ks(&["rules", "test", dir2.to_str().unwrap()]);
    assert_eq!(failing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&failing.stdout).contains("FAIL"),
        "{failing:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn a_site_directory_extends_the_shipped_pack() {
    let site = rule_dir(
        "site",
        "- list: shells\n  items: [myshell]\n  append: true\n\
         - rule: site_shell\n  events: [exec]\n  condition: is_shell and exec.cwd == /srv\n  severity: low\n  \
         tags: [T1059]\n  output: x\n  tests:\n    - expect: match\n      \
         event: {type: exec, process: {comm: myshell}, exec: {cwd: /srv}}\n    - expect: no match\n      \
         event: {type: exec, process: {comm: mysh}, exec: {cwd: /srv}}\n",
    );
    let both = ks(&["rules", "test", "default", site.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&both.stdout);
    assert!(
        both.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&both.stderr)
    );
    assert!(out.contains("the shipped rules + "), "{out}");
    // alone, the site file names a list and a macro nobody declared
    let alone = ks(&["rules", "check", site.to_str().unwrap()]);
    assert_eq!(alone.status.code(), Some(1));
    let err = String::from_utf8_lossy(&alone.stderr);
    assert!(err.contains("rules.yaml:1:"), "{err}");
    let _ = std::fs::remove_dir_all(&site);
}

#[test]
fn alerts_only_writes_alerts() {
    let exe = shm_copy("only");
    let k = Ksight::start(&["--alerts-only"]);
    run(&mut Command::new(&exe));
    run(&mut Command::new("/bin/true"));
    let r = k.stop();
    let _ = std::fs::remove_file(&exe);
    assert!(!alerts(&r, "exec_from_dev_shm").is_empty(), "{}", r.stderr);
    assert!(
        r.events
            .iter()
            .all(|e| e["type"] == "alert" || e["type"] == "lost"),
        "{:#?}",
        r.events.iter().map(|e| &e["type"]).collect::<Vec<_>>()
    );
}
