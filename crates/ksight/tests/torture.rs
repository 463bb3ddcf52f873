//! Hostile conditions, each with an assertion: a reader that goes away, a
//! full disk, two instances at once, a fork storm against memory, a program
//! whose path is not UTF-8, processes killed around their own exec, a cgroup
//! removed while its events are in flight. (Elsewhere: bad flags and ranges,
//! no privileges and a missing BTF in cli.rs; SIGINT/SIGTERM/SIGKILL leave
//! nothing loaded, cli.rs; a full ring buffer and a 16 KiB ring under an exec
//! storm accounted exactly, cli.rs and transport.rs; huge and non-UTF-8 argv,
//! process.rs; hostile DNS, junk datagrams, getaddrinfo calls and queries
//! left waiting at stop, dns.rs; sockets older than ksight, net.rs.)

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A ksight run on its own pipes: `ksight run -v --no-rules ARGS`.
struct Raw {
    child: Child,
    progs: Vec<u32>,
    maps: Vec<u32>,
    /// All of stderr, once it has exited.
    stderr: std::thread::JoinHandle<String>,
}

/// Started, and returned once it is watching.
fn spawn(args: &[&str]) -> Raw {
    require_root();
    let mut child = Command::new(KSIGHT)
        .args(["run", "-v", "--no-rules", "--no-config"])
        .args(extra_args())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ksight");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (mut progs, mut maps, mut said) = (Vec::new(), Vec::new(), String::new());
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "ksight exited before watching: {said}"
        );
        said.push_str(&line);
        if line.contains("prog ids") {
            progs = parse_ids(&line, "prog ids");
            maps = parse_ids(&line, "map ids");
        }
        if line.starts_with("ksight: watching") {
            break;
        }
    }
    let stderr = std::thread::spawn(move || {
        let _ = err.read_to_string(&mut said);
        said
    });
    Raw {
        child,
        progs,
        maps,
        stderr,
    }
}

/// Wait for `child` to exit on its own, running `/bin/true` meanwhile so that
/// events keep coming.
fn exits_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "ksight still running after {limit:?}"
        );
        run(&mut Command::new("/bin/true"));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_reader_that_goes_away_ends_ksight_cleanly() {
    // `ksight run | head -1`
    let mut k = spawn(&["--format", "json", "--events", "exec"]);
    let mut out = BufReader::new(k.child.stdout.take().unwrap());
    run(&mut Command::new("/bin/true"));
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"v\":"), "{first}");
    drop(out);
    let st = exits_within(&mut k.child, Duration::from_secs(10));
    let stderr = k.stderr.join().unwrap();
    assert!(
        st.success(),
        "a closed pipe is the reader's choice: {st:?} {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_all_gone(&k.progs, &k.maps);
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_nothing_loaded() {
    let mut k = spawn(&["--format", "json", "-o", "/dev/full"]);
    let st = exits_within(&mut k.child, Duration::from_secs(10));
    let stderr = k.stderr.join().unwrap();
    assert_eq!(st.code(), Some(1), "{st:?} {stderr}");
    assert!(
        stderr.contains("ksight: error: writing events: No space left on device"),
        "{stderr}"
    );
    assert_all_gone(&k.progs, &k.maps);
}

#[test]
fn two_instances_at_once_both_see_everything() {
    let a = Ksight::start(&["--events", "exec", "--no-rules"]);
    let b = Ksight::start(&["--events", "exec", "--no-rules"]);
    let (pid, _) = run(&mut Command::new("/bin/true"));
    let (ra, rb) = (a.stop(), b.stop());
    assert_eq!(ra.one("exec", pid)["exec"]["filename"], "/bin/true");
    assert_eq!(rb.one("exec", pid)["exec"]["filename"], "/bin/true");
    assert!(ra.status.success() && rb.status.success());
}

/// Not a test: fork $KS_FORKS children that exit at once, one at a time.
#[test]
#[ignore = "helper process for the torture tests"]
fn helper_forks() {
    fork_and_reap(std::env::var("KS_FORKS").unwrap().parse().unwrap());
}

#[test]
fn sixty_thousand_forks_keep_memory_bounded_and_lose_nothing() {
    const FORKS: u32 = 60_000;
    let k = Ksight::start(&["--events", "fork,exit", "--no-rules"]);
    let mut child = helper_command("helper_forks")
        .env("KS_FORKS", FORKS.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let helper = child.id();
    // ~10 s alone here; slower on a loaded CI machine (other tests run beside it)
    let st = wait_timeout(&mut child, Duration::from_secs(180));
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(200));
    let peak_kib = k.peak_rss_kib();
    let r = k.stop();
    // the helper's own forks; its children exit, each one event
    let forks = r
        .events
        .iter()
        .filter(|e| e["type"] == "fork" && e["process"]["pid"] == helper)
        .count();
    assert_eq!(forks as u32, FORKS, "{}", r.stderr);
    assert!(
        !r.events.iter().any(|e| e["type"] == "lost"),
        "{}",
        r.stderr
    );
    assert!(
        peak_kib < 64 << 10,
        "peak RSS {peak_kib} KiB over {FORKS} forks"
    );
}

#[test]
fn a_program_whose_path_is_not_utf8_is_reported_as_bytes() {
    let dir = temp_dir("nonutf8");
    let exe = dir.join(OsStr::from_bytes(b"ks-\xff\xfe"));
    install_exe(std::path::Path::new("/bin/true"), &exe, "0755");
    let k = Ksight::start(&["--events", "exec", "--no-rules"]);
    let (pid, st) = run(&mut Command::new(&exe));
    assert!(st.success());
    let r = k.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let exec = r.one("exec", pid);
    // bytes, not a lossy string: base64 of the whole path
    use base64::Engine as _;
    let path = exe.as_os_str().as_bytes();
    let want = base64::engine::general_purpose::STANDARD.encode(path);
    assert_eq!(
        exec["exec"]["filename"],
        serde_json::json!({ "bytes": want })
    );
    assert_eq!(exec["exec"]["exe"], serde_json::json!({ "bytes": want }));
}

#[test]
fn a_cgroup_removed_while_its_events_are_in_flight_is_still_named() {
    // a container that runs one command and is gone: its cgroup is removed
    // before ksight's next poll reads the records made in it
    let k = Ksight::start(&["--events", "exec,exit", "--no-rules"]);
    let mut seen = Vec::new();
    for i in 0..5 {
        let name = format!("ksight-gone-{}-{i}", std::process::id());
        let dir = cgroup2_mount().join(&name);
        std::fs::create_dir(&dir).unwrap();
        let script = format!("echo $$ > {}/cgroup.procs && exec /bin/true", dir.display());
        let (pid, status) = run(Command::new("/bin/sh").args(["-c", &script]));
        assert!(status.success());
        std::fs::remove_dir(&dir).unwrap();
        seen.push((pid, name));
    }
    let r = k.stop();
    for (pid, name) in seen {
        for kind in ["exec", "exit"] {
            let ev = r
                .of(kind, pid)
                .into_iter()
                .find(|e| e["process"]["comm"] == "true")
                .unwrap_or_else(|| panic!("{kind} of /bin/true in {name}"));
            assert_eq!(
                ev["process"]["cgroup"],
                format!("/{name}"),
                "{kind}: {ev:#}"
            );
        }
    }
    // not asked for: the cgroup events are not written, their names were used
    assert!(!r.events.iter().any(|e| e["type"] == "cgroup"));
}

#[test]
fn a_cgroup_made_is_reported_with_its_maker() {
    let k = Ksight::start(&["--events", "cgroup", "--no-rules"]);
    let name = format!("ksight-made-{}", std::process::id());
    let dir = cgroup2_mount().join(&name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    let r = k.stop();
    let made: Vec<_> = r
        .events
        .iter()
        .filter(|e| e["type"] == "cgroup" && e["cgroup"]["path"] == format!("/{name}"))
        .collect();
    assert_eq!(made.len(), 1, "{:#?}", r.events);
    assert_eq!(made[0]["process"]["pid"], std::process::id());
    assert!(made[0]["cgroup"]["id"].as_u64().unwrap() > 1);
    assert_eq!(made[0]["cgroup"]["truncated"], false);
}

/// Not a test: $KS_KILLS children that exec /bin/true, each killed by this
/// process after a delay that grows from 0 to ~300 µs: some die before their
/// exec, some while the kernel records it or ksight reads /proc about it,
/// some after. Prints each child's pid.
#[test]
#[ignore = "helper process for the torture tests"]
fn helper_exec_kill() {
    let n: u32 = std::env::var("KS_KILLS").unwrap().parse().unwrap();
    let prog = c"/bin/true";
    let argv = [prog.as_ptr(), std::ptr::null()];
    // pids wrap while other tests fork: the test keeps only the children of this helper
    let mut pids = format!("\nKS-HELPER {}\n", std::process::id());
    for i in 0..n {
        // SAFETY: the child calls only execv and _exit.
        match unsafe { libc::fork() } {
            0 => unsafe {
                libc::execv(prog.as_ptr(), argv.as_ptr());
                libc::_exit(127)
            },
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            child => {
                let until = Instant::now() + Duration::from_micros((i % 30) as u64 * 10);
                while Instant::now() < until {}
                let mut st = 0;
                // SAFETY: our own child, still unreaped.
                unsafe {
                    libc::kill(child, libc::SIGKILL);
                    libc::waitpid(child, &mut st, 0);
                }
                pids.push_str(&format!("\nKS-PID {child}\n"));
            }
        }
    }
    use std::io::Write as _;
    std::io::stdout().write_all(pids.as_bytes()).unwrap();
}

#[test]
fn processes_killed_around_their_own_exec_are_reported_whole() {
    const KILLS: u32 = 600;
    let k = Ksight::start(&["--events", "fork,exec,exit", "--no-rules"]);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_exec_kill",
            "--test-threads",
            "1",
        ])
        .env("KS_KILLS", KILLS.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tagged = |tag: &str| -> Vec<u64> {
        stdout
            .lines()
            .filter_map(|l| l.split(tag).nth(1)?.trim().parse().ok())
            .collect()
    };
    let pids = tagged("KS-PID ");
    let helper = tagged("KS-HELPER ")[0];
    assert_eq!(pids.len() as u32, KILLS);
    std::thread::sleep(Duration::from_millis(200));
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);
    assert!(r.stderr.contains(" 0 undecodable"), "{}", r.stderr);
    assert!(
        !r.events.iter().any(|e| e["type"] == "lost"),
        "{}",
        r.stderr
    );
    let (mut execs, mut killed_after_exec) = (0, 0);
    let mut seen = std::collections::BTreeSet::new();
    for pid in pids {
        if !seen.insert(pid) {
            continue; // the helper's pid came round again: both children are checked below
        }
        let mine: Vec<&serde_json::Value> = r
            .events
            .iter()
            .filter(|e| match e["type"].as_str() {
                Some("fork") => e["child"]["pid"] == pid && e["process"]["pid"] == helper,
                Some("exec" | "exit") => {
                    e["process"]["pid"] == pid && e["process"]["ppid"] == helper
                }
                _ => false,
            })
            .collect();
        // one child per fork: a reused pid is a second child, in order after the first
        for child in mine.split_inclusive(|e| e["type"] == "exit") {
            let kinds: Vec<&str> = child.iter().map(|e| e["type"].as_str().unwrap()).collect();
            assert!(
                kinds == ["fork", "exit"] || kinds == ["fork", "exec", "exit"],
                "pid {pid}: {kinds:?}"
            );
            let exit = child.last().unwrap();
            if kinds.len() == 3 {
                execs += 1;
                // the exec record is whole even when /proc had nothing left to read
                let exec = child[1];
                assert_eq!(exec["exec"]["filename"], "/bin/true", "{exec:#}");
                assert_eq!(exec["process"]["exe"], canonical("/bin/true"), "{exec:#}");
                if exit["exit"]["signal_name"] == "SIGKILL" {
                    killed_after_exec += 1;
                }
            }
        }
        let forks = mine.iter().filter(|e| e["type"] == "fork").count();
        let expected = stdout.matches(&format!("KS-PID {pid}\n")).count();
        assert_eq!(forks, expected, "pid {pid}: {forks} forks reported");
    }
    eprintln!("{KILLS} children: {execs} exec'd, {killed_after_exec} of those killed");
    assert!(execs > 0, "no child got as far as its exec");
}
