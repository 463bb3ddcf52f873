//! The transport contract, in whichever mode KSIGHT_TEST_ARGS selects
//! (`--transport ringbuf` or `--transport perf`): records of one process
//! arrive in causal order, and every record is either delivered or counted lost.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A cgroup of our own, so that the kernel-side filter keeps exactly our records.
struct Cgroup {
    dir: PathBuf,
    name: String,
}

impl Cgroup {
    fn new(tag: &str) -> Cgroup {
        let name = format!("ksight-{tag}-{}", std::process::id());
        let dir = cgroup2_mount().join(&name);
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap();
        Cgroup { dir, name }
    }

    fn path(&self) -> String {
        format!("/{}", self.name)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn join_cgroup(dir: &Path) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .unwrap();
    write!(f, "{}", std::process::id()).unwrap();
}

/// Not a test: the storm, run as a child process by the tests below. It moves
/// itself into $KSIGHT_STORM_CGROUP, starts $KSIGHT_STORM_N short-lived
/// processes from two threads (so that they spread over the CPUs), and leaves
/// the cgroup before exiting: the cgroup sees exactly N forks, N execs and N exits.
#[test]
#[ignore = "helper process for the transport tests"]
fn helper_storm() {
    let dir = PathBuf::from(std::env::var("KSIGHT_STORM_CGROUP").unwrap());
    let n: usize = std::env::var("KSIGHT_STORM_N").unwrap().parse().unwrap();
    join_cgroup(&dir);
    let threads: Vec<_> = (0..2)
        .map(|t| {
            std::thread::spawn(move || {
                for _ in (t..n).step_by(2) {
                    let st = Command::new("/bin/true").status().unwrap();
                    assert!(st.success());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    join_cgroup(&cgroup2_mount());
}

fn storm(cg: &Cgroup, n: usize) -> u32 {
    let (pid, status) = run(Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_storm",
            "--test-threads",
            "1",
        ])
        .env("KSIGHT_STORM_CGROUP", &cg.dir)
        .env("KSIGHT_STORM_N", n.to_string()));
    assert!(status.success());
    pid
}

#[test]
fn records_of_each_process_arrive_in_causal_order() {
    let cg = Cgroup::new("order");
    // no cgroup events: the other tests make their cgroups meanwhile
    let k = Ksight::start(&["--cgroup", &cg.path(), "--events", "fork,exec,exit"]);
    let n = 400;
    let helper = storm(&cg, n);
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);

    let mut seen: HashMap<u64, Vec<&str>> = HashMap::new();
    let mut cpus = std::collections::BTreeSet::new();
    // records only (an exe_hash answer follows an exec, made from state)
    for e in r
        .events
        .iter()
        .filter(|e| e["seq"].is_u64() || e["type"] == "lost")
    {
        cpus.insert(e["cpu"].as_u64().unwrap());
        let (pid, kind) = match e["type"].as_str().unwrap() {
            "fork" => (e["child"]["pid"].as_u64().unwrap(), "fork"),
            "lost" => panic!("nothing may be lost here: {e}"),
            kind => (e["process"]["pid"].as_u64().unwrap(), kind),
        };
        seen.entry(pid).or_default().push(kind);
    }
    assert_eq!(
        seen.len(),
        n,
        "one entry per child, nothing else in the cgroup"
    );
    let bad: Vec<_> = seen
        .iter()
        .filter(|(_, kinds)| kinds[..] != ["fork", "exec", "exit"])
        .collect();
    assert!(bad.is_empty(), "order violations: {bad:?}");
    for e in r.events.iter().filter(|e| e["type"] == "fork") {
        assert_eq!(e["process"]["pid"], helper);
    }
    assert!(
        cpus.len() > 1 || num_cpus() == 1,
        "the storm spread over the CPUs"
    );
    // perf mode: the merge repaired every inversion it saw
    if let Some(line) = r.stderr.lines().find(|l| l.contains("too late to merge")) {
        assert!(line.contains(", 0 arrived too late"), "{line}");
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn delivered_plus_lost_equals_generated_exactly() {
    let cg = Cgroup::new("loss");
    // one page of buffer, and a consumer frozen during the storm: most records cannot fit
    let k = Ksight::start(&[
        "--cgroup",
        &cg.path(),
        "--ringbuf-size",
        "4K",
        "--perf-pages",
        "1",
        // every event is the storm's or a loss (no alerts; no cgroup events
        // of the other tests, which make their cgroups meanwhile)
        "--no-rules",
        "--events",
        "fork,exec,exit",
    ]);
    k.signal(libc::SIGSTOP);
    let n = 300;
    let helper = storm(&cg, n);
    k.signal(libc::SIGCONT);
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);

    let lost = assert_accounted(&r, helper, n);
    assert!(lost > 0, "a 4 KiB buffer cannot hold {n} processes");
}

/// Every fork, exec and exit of the storm (`n` children of `helper`) was
/// delivered or counted lost, nothing else appeared: how many were lost.
fn assert_accounted(r: &Run, helper: u32, n: usize) -> usize {
    let mut delivered: HashMap<&str, usize> = HashMap::new();
    let mut lost: HashMap<&str, usize> = HashMap::new();
    for e in &r.events {
        match e["type"].as_str().unwrap() {
            "lost" => {
                *lost.entry(e["lost"]["kind"].as_str().unwrap()).or_default() +=
                    e["lost"]["count"].as_u64().unwrap() as usize
            }
            kind => {
                let ours = match kind {
                    "fork" => e["process"]["pid"] == helper,
                    _ => e["process"]["ppid"] == helper,
                };
                assert!(ours, "only the storm is in the cgroup: {e}");
                *delivered.entry(kind).or_default() += 1;
            }
        }
    }
    for kind in ["fork", "exec", "exit"] {
        let (d, l) = (
            delivered.get(kind).copied().unwrap_or(0),
            lost.get(kind).copied().unwrap_or(0),
        );
        assert_eq!(
            d + l,
            n,
            "{kind}: {d} delivered + {l} lost != {n} generated"
        );
    }
    lost.values().sum()
}

#[test]
fn an_exec_storm_through_a_16_kib_ring_accounts_for_every_record() {
    // a consumer that keeps up as well as it can, a ring of 16 KiB, an
    // exec storm on every CPU: whatever does not fit is counted, exactly
    let cg = Cgroup::new("ring16k");
    let k = Ksight::start(&[
        "--cgroup",
        &cg.path(),
        "--ringbuf-size",
        "16K",
        "--perf-pages",
        "4",
        "--no-rules",
        "--events",
        "fork,exec,exit",
    ]);
    let n = 3000;
    let helper = storm(&cg, n);
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);
    let lost = assert_accounted(&r, helper, n);
    eprintln!("16 KiB ring, {n} execs: {lost} records lost");
}

#[test]
fn records_from_the_moment_of_attach_are_delivered() {
    // processes start and end all through ksight's start-up (attach, reading
    // /proc, opening the consumer): none of their records may be refused
    let mut busy = Command::new("/bin/sh")
        .args(["-c", "while :; do /bin/true; done"])
        .spawn()
        .unwrap();
    let k = Ksight::start(&["--events", "exec,fork,exit"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = k.stop();
    let _ = busy.kill();
    let _ = busy.wait();
    assert!(r.status.success(), "{}", r.stderr);
    let lost: Vec<&serde_json::Value> = r.events.iter().filter(|e| e["type"] == "lost").collect();
    assert!(lost.is_empty(), "{lost:#?}");
    // process records only: each CPU's sequence starts at 0 and has no gap
    let mut by_cpu: HashMap<u64, Vec<u64>> = HashMap::new();
    for e in r.events.iter().filter(|e| e["seq"].is_u64()) {
        by_cpu
            .entry(e["cpu"].as_u64().unwrap())
            .or_default()
            .push(e["seq"].as_u64().unwrap());
    }
    assert!(!by_cpu.is_empty());
    for (cpu, mut seqs) in by_cpu {
        seqs.sort_unstable();
        let want: Vec<u64> = (0..seqs.len() as u64).collect();
        assert_eq!(
            seqs, want,
            "CPU {cpu}: records missing from the start or between"
        );
    }
}
