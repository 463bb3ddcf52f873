//! Process lifecycle events from the real kernel: exec, fork, exit, identity.
//! Each test starts its own ksight, makes its own processes, and asserts on
//! the events ksight wrote for exactly those pids.

mod common;

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[test]
fn exec_and_exit_carry_argv_exe_cwd_code_and_parentage() {
    let k = Ksight::start(&[]);
    let (pid, status) = run(Command::new("/bin/sh")
        .args(["-c", "exit 42"])
        .current_dir("/tmp"));
    assert_eq!(status.code(), Some(42));
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);

    let exec = r.one("exec", pid);
    assert_eq!(exec["exec"]["filename"], "/bin/sh");
    assert_eq!(exec["exec"]["exe"], canonical("/bin/sh"));
    assert_eq!(exec["process"]["exe"], canonical("/bin/sh"));
    assert_eq!(argv(exec), ["/bin/sh", "-c", "exit 42"]);
    assert_eq!(exec["exec"]["argv_truncated"], false);
    assert_eq!(exec["exec"]["cwd"], "/tmp");
    assert_eq!(exec["exec"]["interpreter"], Value::Null);
    let me = std::process::id();
    assert_eq!(exec["process"]["ppid"], me);
    assert_eq!(exec["process"]["tid"], pid);
    assert_eq!(exec["process"]["uid"], 0);
    assert_eq!(exec["process"]["euid"], 0);
    assert_eq!(exec["process"]["comm"], "sh");
    assert_eq!(exec["ancestors"][0]["pid"], me);
    assert_eq!(
        exec["ancestors"][0]["exec_id"],
        exec["process"]["parent_exec_id"]
    );
    assert_eq!(exec["v"], 1);
    assert!(exec["time"].as_str().unwrap().ends_with('Z'));

    let exit = r.one("exit", pid);
    assert_eq!(exit["exit"]["code"], 42);
    assert_eq!(exit["exit"]["signal"], Value::Null);
    assert_eq!(exit["exit"]["core_dumped"], false);
    assert_eq!(exit["process"]["exec_id"], exec["process"]["exec_id"]);
    assert_eq!(exit["process"]["exe"], canonical("/bin/sh"));
    assert!(exit["exit"]["lifetime_ns"].as_u64().unwrap() > 0);

    // causal order: fork (by us) -> exec -> exit
    let forks = r.forks_of_child(pid);
    assert_eq!(forks.len(), 1, "{forks:#?}");
    assert_eq!(forks[0]["process"]["pid"], me);
    assert_eq!(
        forks[0]["process"]["exec_id"],
        exec["process"]["parent_exec_id"]
    );
    assert_ne!(
        forks[0]["child"]["exec_id"], exec["process"]["exec_id"],
        "exec starts a new image"
    );
    assert!(r.index(forks[0]) < r.index(exec) && r.index(exec) < r.index(exit));
}

#[test]
fn non_utf8_argv_is_written_as_base64_bytes() {
    let k = Ksight::start(&[]);
    let arg = std::ffi::OsStr::from_bytes(b"\xff\xfeok");
    let (pid, _) = run(Command::new("/bin/true").arg(arg).arg("plain"));
    let r = k.stop();
    let exec = r.one("exec", pid);
    assert_eq!(exec["exec"]["argv"][1], json!({"bytes": "//5vaw=="}));
    assert_eq!(exec["exec"]["argv"][2], "plain");
}

#[test]
fn a_thousand_arguments_are_all_kept() {
    let k = Ksight::start(&[]);
    let args: Vec<String> = (0..1000).map(|i| format!("a{i}")).collect();
    let (pid, _) = run(Command::new("/bin/true").args(&args));
    let r = k.stop();
    let exec = r.one("exec", pid);
    let got = argv(exec);
    assert_eq!(got.len(), 1001);
    assert_eq!(&got[1..], &args[..]);
    assert_eq!(exec["exec"]["argv_truncated"], false);
}

#[test]
fn a_100k_argv_is_cut_at_the_bound_and_flagged() {
    let k = Ksight::start(&["--argv-max", "8192"]);
    let big = "x".repeat(100 * 1024);
    let (pid, _) = run(Command::new("/bin/true").arg("first").arg(&big));
    let r = k.stop();
    let exec = r.one("exec", pid);
    assert_eq!(exec["exec"]["argv_truncated"], true);
    let got = argv(exec);
    assert_eq!(&got[..2], ["/bin/true", "first"]);
    let bytes: usize = got.iter().map(|a| a.len() + 1).sum();
    // the bound counts NUL separators; the cut argument has none
    assert_eq!(bytes - 1, 8192, "argv bytes kept");
    assert!(got[2].chars().all(|c| c == 'x'));
}

#[test]
fn a_script_reports_itself_as_exe_and_its_interpreter() {
    let dir = temp_dir("script");
    let script = dir.join("hello.sh");
    write_exe(&script, b"#!/bin/sh\nexit 7\n");
    let k = Ksight::start(&[]);
    let (pid, status) = run(Command::new("./hello.sh").arg("arg1").current_dir(&dir));
    assert_eq!(status.code(), Some(7));
    let r = k.stop();
    let exec = r.one("exec", pid);
    let script = script.to_string_lossy();
    assert_eq!(exec["exec"]["filename"], "./hello.sh");
    assert_eq!(exec["exec"]["exe"], *script);
    assert_eq!(exec["exec"]["interpreter"], canonical("/bin/sh"));
    // the kernel rewrites argv for #!: interpreter, script path, then the arguments
    assert_eq!(argv(exec), ["/bin/sh", "./hello.sh", "arg1"]);
    assert_eq!(r.one("exit", pid)["exit"]["code"], 7);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn death_by_sigkill_reports_the_signal_not_a_code() {
    let k = Ksight::start(&[]);
    let mut child = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(5));
    assert!(!status.success());
    let r = k.stop();
    let exit = r.one("exit", pid);
    assert_eq!(exit["exit"]["signal"], 9);
    assert_eq!(exit["exit"]["signal_name"], "SIGKILL");
    assert_eq!(exit["exit"]["code"], Value::Null);
    assert!(exit["exit"]["lifetime_ns"].as_u64().unwrap() >= 50_000_000);
}

#[test]
fn fork_without_exec_and_exec_of_a_missing_file() {
    let k = Ksight::start(&[]);
    // dash forks a subshell for `( ... )`, and forks then fails to exec the missing file
    let (sh, _) = run(Command::new("/bin/sh")
        .args(["-c", "(exit 3); /nonexistent/ksight-missing-binary; exit 0"]));
    let r = k.stop();
    let forks: Vec<&Value> = r.of("fork", sh);
    assert_eq!(forks.len(), 2, "{forks:#?}");
    let children: Vec<u32> = forks
        .iter()
        .map(|f| f["child"]["pid"].as_u64().unwrap() as u32)
        .collect();
    for (child, code) in children.iter().zip([3, 127]) {
        assert!(r.of("exec", *child).is_empty(), "no exec for child {child}");
        let exit = r.one("exit", *child);
        assert_eq!(exit["exit"]["code"], code);
        // never exec'd: still the shell's image, with the exec id its fork gave it
        assert_eq!(exit["process"]["exe"], canonical("/bin/sh"));
        let fork = r.forks_of_child(*child)[0];
        assert_eq!(exit["process"]["exec_id"], fork["child"]["exec_id"]);
        assert_eq!(fork["child"]["thread"], false);
        assert_eq!(
            exit["process"]["parent_exec_id"],
            fork["process"]["exec_id"]
        );
    }
}

/// Not a test: the multi-threaded process for `threads_*`, run as
/// `<this test binary> --ignored --exact helper_threads`.
#[test]
#[ignore = "helper process for threads_are_hidden_unless_asked"]
fn helper_threads() {
    let handles: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(|| std::thread::sleep(Duration::from_millis(30))))
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn run_thread_helper() -> u32 {
    let (pid, status) = run(Command::new(std::env::current_exe().unwrap()).args([
        "--ignored",
        "--exact",
        "helper_threads",
        "--test-threads",
        "1",
    ]));
    assert!(status.success());
    pid
}

#[test]
fn threads_are_hidden_unless_asked() {
    let k = Ksight::start(&[]);
    let pid = run_thread_helper();
    let r = k.stop();
    assert!(r
        .of("fork", pid)
        .iter()
        .all(|f| f["child"]["thread"] == false));
    assert!(r.of("fork", pid).is_empty(), "the helper forks no process");
    assert_eq!(
        r.of("exit", pid).len(),
        1,
        "one exit for the process, none per thread"
    );

    let k = Ksight::start(&["--threads"]);
    let pid = run_thread_helper();
    let r = k.stop();
    let threads: Vec<&Value> = r
        .of("fork", pid)
        .into_iter()
        .filter(|f| f["child"]["thread"] == true)
        .collect();
    assert!(threads.len() >= 3, "{threads:#?}");
    for t in &threads {
        assert_eq!(t["child"]["pid"], pid, "a thread belongs to its process");
        assert_ne!(t["child"]["tid"], pid);
        assert_eq!(t["child"]["exec_id"], Value::Null);
    }
    let exits = r.of("exit", pid);
    let thread_exits = exits.iter().filter(|e| e["exit"]["thread"] == true).count();
    assert!(thread_exits >= 3, "{exits:#?}");
    assert_eq!(
        exits
            .iter()
            .filter(|e| e["exit"]["thread"] == false)
            .count(),
        1
    );
}

#[test]
fn a_process_older_than_ksight_is_known_from_proc() {
    let mut sh = Command::new("/bin/sh")
        .args(["-c", "read x; /bin/true child; exit 5"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let sh_pid = sh.id();
    std::thread::sleep(Duration::from_millis(100)); // let it exec /bin/sh
    let k = Ksight::start(&[]);
    sh.stdin.take().unwrap().write_all(b"go\n").unwrap();
    wait_timeout(&mut sh, Duration::from_secs(10));
    let r = k.stop();

    let exec = r
        .events
        .iter()
        .find(|e| e["type"] == "exec" && e["process"]["ppid"] == sh_pid)
        .unwrap_or_else(|| panic!("exec of the child of {sh_pid}: {}", r.stderr));
    assert_eq!(argv(exec), ["/bin/true", "child"]);
    let parent = &exec["ancestors"][0];
    assert_eq!(parent["pid"], sh_pid);
    assert_eq!(parent["exe"], canonical("/bin/sh"));
    assert_eq!(exec["process"]["parent_exec_id"], parent["exec_id"]);
    assert_eq!(exec["ancestors"][1]["pid"], std::process::id());

    let exit = r.one("exit", sh_pid);
    assert_eq!(exit["exit"]["code"], 5);
    assert_eq!(exit["process"]["exe"], canonical("/bin/sh"));
    assert_eq!(exit["process"]["exec_id"], parent["exec_id"]);
    assert!(exit["exit"]["lifetime_ns"].as_u64().unwrap() >= 100_000_000);
}

#[test]
fn cgroup_id_and_path_are_the_kernels() {
    let name = format!("ksight-test-{}", std::process::id());
    let dir = cgroup2_mount().join(&name);
    std::fs::create_dir(&dir).unwrap();
    let ino = std::fs::metadata(&dir).unwrap().ino();
    let k = Ksight::start(&[]);
    let script = format!("echo $$ > {}/cgroup.procs && exec /bin/true", dir.display());
    let (pid, status) = run(Command::new("/bin/sh").args(["-c", &script]));
    let r = k.stop();
    std::fs::remove_dir(&dir).unwrap();
    assert!(status.success());
    let exec = r
        .of("exec", pid)
        .into_iter()
        .find(|e| e["process"]["comm"] == "true")
        .expect("exec of /bin/true");
    assert_eq!(exec["process"]["cgroup_id"], ino);
    assert_eq!(exec["process"]["cgroup"], format!("/{name}"));
    assert_eq!(exec["process"]["container_id"], Value::Null);
}

#[test]
fn cgroups_made_while_ksight_runs_are_named_at_once() {
    // new containers come in bursts: each new cgroup is named from its first
    // event, though the tree was walked for another one a moment before
    let k = Ksight::start(&[]);
    let mut seen = Vec::new();
    for i in 0..3 {
        let name = format!("ksight-new-{}-{i}", std::process::id());
        let dir = cgroup2_mount().join(&name);
        std::fs::create_dir(&dir).unwrap();
        let script = format!("echo $$ > {}/cgroup.procs && exec /bin/true", dir.display());
        let (pid, status) = run(Command::new("/bin/sh").args(["-c", &script]));
        assert!(status.success());
        seen.push((pid, name, dir));
    }
    let r = k.stop();
    for (pid, name, dir) in seen {
        let _ = std::fs::remove_dir(&dir);
        let exec = r
            .of("exec", pid)
            .into_iter()
            .find(|e| e["process"]["comm"] == "true")
            .expect("exec of /bin/true");
        assert_eq!(exec["process"]["cgroup"], format!("/{name}"));
    }
}

#[test]
fn pid_namespace_pids_are_reported() {
    let host_ns = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    let k = Ksight::start(&[]);
    let (unshare, status) = run(Command::new("unshare").args([
        "--pid",
        "--fork",
        "/bin/sh",
        "-c",
        "/bin/true inside; exit 0",
    ]));
    assert!(status.success());
    let r = k.stop();
    let fork = r.of("fork", unshare);
    let fork = fork
        .iter()
        .find(|f| f["child"]["ns_pid"] == 1)
        .expect("fork into the new namespace");
    let ns = fork["child"]["pidns"].as_u64().unwrap();
    assert_ne!(ns, host_ns);
    let sh = fork["child"]["pid"].as_u64().unwrap() as u32;
    let sh_exec = r.one("exec", sh);
    assert_eq!(sh_exec["process"]["ns_pid"], 1);
    assert_eq!(sh_exec["process"]["pidns"], ns);
    let inner = r
        .events
        .iter()
        .find(|e| e["type"] == "exec" && e["process"]["ppid"] == sh)
        .expect("exec of /bin/true inside");
    assert_eq!(argv(inner), ["/bin/true", "inside"]);
    assert_eq!(inner["process"]["ns_pid"], 2);
    assert_eq!(inner["process"]["pidns"], ns);
    assert_ne!(
        inner["process"]["pid"], 2,
        "the host pid differs from the namespaced one"
    );
    // processes of the host namespace see themselves in it
    let mine = r.one("exec", unshare);
    assert_eq!(mine["process"]["pidns"], host_ns);
    assert_eq!(mine["process"]["ns_pid"], unshare);
}

/// A signal one process sends another: one `signal` event, naming the sender
/// and the target. A process signalling itself, and the SIGCHLD of every
/// exit, make none.
#[test]
fn a_signal_names_its_sender_and_its_target() {
    let k = Ksight::start(&["--events", "signal,exit"]);
    let mut target = Command::new("/bin/sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let tpid = target.id();
    std::thread::sleep(Duration::from_millis(100));
    let (sender, st) = run(Command::new("/bin/sh").args(["-c", &format!("kill -TERM {tpid}")]));
    assert!(st.success());
    let status = target.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15)
    );
    let (selfish, st) = run(Command::new("/bin/sh").args(["-c", "trap '' TERM; kill -TERM $$"]));
    assert!(st.success());
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);

    let sigs: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["type"] == "signal" && e["signal"]["target"]["pid"] == tpid)
        .collect();
    assert_eq!(sigs.len(), 1, "{sigs:#?}\n{}", r.stderr);
    let s = sigs[0];
    assert_eq!(s["process"]["pid"], sender);
    assert_eq!(s["process"]["comm"], "sh");
    assert_eq!(s["signal"]["number"], 15);
    assert_eq!(s["signal"]["name"], "SIGTERM");
    assert_eq!(s["signal"]["code"], "user");
    assert_eq!(s["signal"]["result"], "delivered");
    assert_eq!(s["signal"]["group"], true);
    let t = &s["signal"]["target"];
    assert_eq!(t["comm"], "sleep");
    assert_eq!(t["exe"], canonical("/bin/sleep"));
    // the target is the process that then died of it
    let exit = r.one("exit", tpid);
    assert_eq!(exit["exit"]["signal_name"], "SIGTERM");
    assert_eq!(exit["process"]["exec_id"], t["exec_id"]);
    assert!(r.index(s) < r.index(exit));
    // not reported: a process's signal to itself, and SIGCHLD
    assert!(
        r.of("signal", selfish).is_empty(),
        "{:#?}",
        r.of("signal", selfish)
    );
    assert!(
        r.events
            .iter()
            .all(|e| e["type"] != "signal" || e["signal"]["name"] != "SIGCHLD"),
        "no SIGCHLD"
    );
}
