//! The agent as a command: detaching, loss accounting, outputs, filters, errors.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn detach_after(signal: i32) {
    let k = Ksight::start(&[]);
    let (progs, maps) = (k.prog_ids.clone(), k.map_ids.clone());
    assert!(progs.len() >= 8, "process, TCP and UDP programs: {progs:?}");
    assert!(maps.len() >= 3);
    for &id in &progs {
        assert!(
            bpf_object_exists("prog", id),
            "prog {id} loaded while running"
        );
    }
    for &id in &maps {
        assert!(
            bpf_object_exists("map", id),
            "map {id} loaded while running"
        );
    }
    k.signal(signal);
    let r = k.finish();
    if signal == libc::SIGKILL {
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&r.status),
            Some(9)
        );
    } else {
        assert!(r.status.success(), "{}", r.stderr);
        assert!(
            r.stderr.contains("ksight: stopped after"),
            "summary: {}",
            r.stderr
        );
    }
    assert_all_gone(&progs, &maps);
}

#[test]
fn nothing_stays_loaded_after_sigint() {
    detach_after(libc::SIGINT);
}

#[test]
fn nothing_stays_loaded_after_sigterm() {
    detach_after(libc::SIGTERM);
}

#[test]
fn nothing_stays_loaded_after_sigkill() {
    detach_after(libc::SIGKILL);
}

#[test]
fn a_full_buffer_is_reported_in_band_and_in_the_summary() {
    // one page of buffer, and a consumer frozen while processes run
    // process records only: every record then becomes an event (UDP releases
    // and DNS queries are records that do not), so sequence gaps are all loss
    let k = Ksight::start(&[
        "--ringbuf-size",
        "4K",
        "--perf-pages",
        "1",
        "--events",
        "exec,fork,exit",
        // every event then has a sequence number (alerts have none)
        "--no-rules",
    ]);
    k.signal(libc::SIGSTOP);
    for _ in 0..50 {
        run(&mut Command::new("/bin/true"));
    }
    k.signal(libc::SIGCONT);
    // records after the loss make the gaps visible in the sequence numbers:
    // one process pinned to each CPU, so that no CPU's loss is at its tail
    std::thread::sleep(Duration::from_millis(100));
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    for cpu in 0..cpus {
        let mut cmd = Command::new("/bin/true");
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        run(&mut cmd);
    }
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);
    let lost: Vec<&Value> = (r.events.iter())
        .filter(|e| e["type"] == "lost" && e["lost"]["reason"] == "buffer_full")
        .collect();
    assert!(!lost.is_empty(), "50 processes cannot fit in 4 KiB");
    let in_band: u64 = lost
        .iter()
        .map(|e| e["lost"]["count"].as_u64().unwrap())
        .sum();
    let summary = r
        .stderr
        .lines()
        .find(|l| l.starts_with("ksight: stopped"))
        .expect("summary");
    assert!(
        summary.contains(&format!(" {in_band} lost (")),
        "{summary} vs {in_band}"
    );
    for e in &lost {
        assert!(["exec", "fork", "exit"].contains(&e["lost"]["kind"].as_str().unwrap()));
        assert_eq!(e["seq"], Value::Null);
        assert!(e.get("process").is_none());
    }
    // the gaps in each CPU's sequence numbers are accounted for by lost events
    let mut by_cpu: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    // (records only: events made from state, exe_hash answers and the like, have no seq)
    for e in r.events.iter().filter(|e| e["seq"].is_u64()) {
        by_cpu
            .entry(e["cpu"].as_u64().unwrap())
            .or_default()
            .push(e["seq"].as_u64().unwrap());
    }
    // (each run's sequence numbers start at 0, so a loss before a CPU's
    // first delivered record is a gap too)
    let mut gaps = 0;
    for seqs in by_cpu.values() {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "per-CPU order");
        gaps += seqs[0] + seqs.windows(2).map(|w| w[1] - w[0] - 1).sum::<u64>();
    }
    assert_eq!(gaps, in_band, "sequence gaps vs lost events: {by_cpu:?}");
}

#[test]
fn raw_tracepoint_fallback_reports_the_same() {
    let k = Ksight::start(&["--attach", "raw_tp"]);
    let (pid, _) = run(Command::new("/bin/sh").args(["-c", "exit 9"]));
    let r = k.stop();
    assert!(r.stderr.contains("via raw_tp"), "{}", r.stderr);
    assert_eq!(argv(r.one("exec", pid)), ["/bin/sh", "-c", "exit 9"]);
    assert_eq!(r.one("exit", pid)["exit"]["code"], 9);
    assert_eq!(r.forks_of_child(pid).len(), 1);
}

#[test]
fn filters_by_comm_and_kind() {
    let dir = temp_dir("filter");
    let exe = dir.join("ks-filter-me");
    install_exe(std::path::Path::new("/bin/true"), &exe, "0755");
    // (no rules: their alerts pass a kind filter, and this binary runs from /tmp)
    let k = Ksight::start(&["--comm", "ks-filter-me", "--events", "exec", "--no-rules"]);
    let (pid, _) = run(&mut Command::new(&exe));
    run(&mut Command::new("/bin/true"));
    let r = k.stop();
    let _ = std::fs::remove_dir_all(&dir);
    // the exec, and its file's hash that follows it (asking for execs asks for that)
    let kinds: Vec<&str> = r
        .events
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds == ["exec"] || kinds == ["exec", "exe_hash"],
        "{:#?}",
        r.events
    );
    assert!(r.events.iter().all(|e| e["process"]["pid"] == pid));
    assert_eq!(r.one("exec", pid)["process"]["comm"], "ks-filter-me");
}

#[test]
fn filters_by_pid_match_the_process_and_forked_children() {
    let mut sh = Command::new("/bin/sh")
        .args(["-c", "read x; /bin/true; exit 0"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sh_pid = sh.id();
    let k = Ksight::start(&["--pid", &sh_pid.to_string()]);
    std::io::Write::write_all(&mut sh.stdin.take().unwrap(), b"\n").unwrap();
    wait_timeout(&mut sh, Duration::from_secs(10));
    run(&mut Command::new("/bin/true"));
    let r = k.stop();
    assert!(!r.events.is_empty());
    for e in &r.events {
        let child = e["child"]["pid"].as_u64();
        assert!(
            e["process"]["pid"] == sh_pid || child == Some(sh_pid as u64),
            "unfiltered event {e}"
        );
    }
    assert_eq!(r.of("fork", sh_pid).len(), 1);
    assert_eq!(r.of("exit", sh_pid).len(), 1);
}

#[test]
fn table_output_is_aligned_and_colour_follows_the_flag() {
    let k = Ksight::start(&["--format", "table", "--color", "always"]);
    let (pid, _) = run(Command::new("/bin/sh").args(["-c", "exit 5"]));
    let r = k.stop_raw();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].contains("TIME(UTC)") && lines[0].contains("DETAIL"),
        "{}",
        lines[0]
    );
    let exit = lines
        .iter()
        .find(|l| l.contains("exit") && l.contains(&format!(" {pid} ")) && l.contains("code 5"))
        .unwrap_or_else(|| panic!("no exit line for {pid}:\n{}", r.stdout));
    assert!(
        exit.contains("\x1b[33m"),
        "non-zero exit in yellow: {exit:?}"
    );

    let k = Ksight::start(&["--format", "table", "--color", "never"]);
    run(Command::new("/bin/sh").args(["-c", "exit 5"]));
    let r = k.stop_raw();
    assert!(r.stdout.contains("code 5"));
    assert!(!r.stdout.contains('\x1b'));
}

#[test]
fn duration_and_output_file() {
    let dir = temp_dir("output");
    let file = dir.join("events.jsonl");
    let k = Ksight::start(&["--duration", "700ms", "--output", file.to_str().unwrap()]);
    let (pid, _) = run(&mut Command::new("/bin/true"));
    let r = k.finish();
    assert!(r.status.success(), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "events went to the file");
    let text = std::fs::read_to_string(&file).unwrap();
    let execs = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "exec" && e["process"]["pid"] == pid)
        .count();
    assert_eq!(execs, 1);
    let _ = std::fs::remove_dir_all(dir);
}

fn ksight(args: &[&str]) -> std::process::Output {
    Command::new(KSIGHT).args(args).output().unwrap()
}

#[test]
fn without_privileges_the_error_says_how_to_fix_it() {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            KSIGHT,
            "run",
        ])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_BPF") && err.contains("sudo"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn a_missing_btf_file_is_a_clear_error() {
    let out = ksight(&["run", "--btf", "/nonexistent/vmlinux.btf"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--btf") && err.contains("does not exist"),
        "{err}"
    );
}

/// A valid BTF blob describing no types: CO-RE relocations cannot resolve against it.
fn empty_btf(dir: &std::path::Path) -> std::path::PathBuf {
    let mut blob = Vec::new();
    blob.extend_from_slice(&0xeb9f_u16.to_le_bytes()); // magic
    blob.extend_from_slice(&[1, 0]); // version, flags
    for v in [24u32, 0, 0, 0, 1] {
        // hdr_len, type_off, type_len, str_off, str_len
        blob.extend_from_slice(&v.to_le_bytes());
    }
    blob.push(0); // the empty string
    let path = dir.join("empty.btf");
    std::fs::write(&path, blob).unwrap();
    path
}

#[test]
fn a_verifier_rejection_shows_the_verifier_log() {
    require_root();
    let dir = temp_dir("btf");
    let btf = empty_btf(&dir);
    let out = ksight(&["run", "--btf", btf.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the kernel rejected ksight's tp_btf programs"),
        "{err}"
    );
    assert!(err.contains("raw tracepoint fallback failed too"), "{err}");
    assert!(err.contains("verifier log:\n  | "), "{err}");
    // libbpf poisons unresolvable CO-RE relocations; the verifier names them
    assert!(err.contains("invalid CO-RE relocation"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["run", "--format", "xml"][..],
        &["run", "--events", "exec,bogus"],
        &["run", "--ringbuf-size", "3M"],
        &["run", "--duration", "soon"],
        &["frobnicate"],
    ] {
        let out = ksight(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    // values out of range: usage errors that say the range
    for (args, says) in [
        (&["run", "--argv-max", "10"][..], "10 is not in 64..=32768"),
        (
            &["run", "--poll-interval", "0s"],
            "0s must be between 1ms and 1s",
        ),
        (
            &["run", "--dns-timeout", "20m"],
            "20m must be between 100ms and 10m",
        ),
        (&["run", "--hash-rate", "1K"], "1K must be at least 64K"),
        (&["run", "--ringbuf-size", "3M"], "power of two"),
    ] {
        let out = ksight(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn version() {
    let out = ksight(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ksight "));
}

#[test]
fn transport_benchmark_runs_and_accounts_for_every_record() {
    require_root();
    let dir = temp_dir("bench");
    let json = dir.join("t.json");
    let out = ksight(&[
        "bench",
        "transport",
        "--runs",
        "1",
        "--duration",
        "150ms",
        "--rates",
        "50k",
        "--sizes",
        "64",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    for t in ["ringbuf ", "ringbuf-eager", "perf "] {
        assert!(table.contains(t), "{table}");
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let run = &c["runs"][0];
        let (g, d, l) = (
            run["generated"].as_u64().unwrap(),
            run["delivered"].as_u64().unwrap(),
            run["lost"].as_u64().unwrap(),
        );
        assert_eq!(d + l, g, "{c}");
        assert!(g > 1000, "the producers ran: {c}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pipeline_benchmark_times_each_stage_on_real_records() {
    require_root();
    let out = ksight(&["bench", "pipeline", "--processes", "50", "--runs", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    for stage in ["decode", "enrich", "json", "table", "write", "total"] {
        assert!(table.lines().any(|l| l.starts_with(stage)), "{table}");
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let records: usize = err
        .split_whitespace()
        .skip_while(|w| *w != "pipeline:")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(records >= 150, "fork, exec and exit of 50 processes: {err}");
}

#[test]
fn overhead_benchmark_runs_every_setup_and_counts_events() {
    require_root();
    let dir = temp_dir("overhead");
    let json = dir.join("o.json");
    let out = ksight(&[
        "bench",
        "overhead",
        "--runs",
        "1",
        "--scale",
        "0.02",
        "--workloads",
        "exec,dns",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 10, "2 workloads x 5 setups");
    for r in results {
        assert!(r["ops_per_s"]["median"].as_f64().unwrap() > 0.0, "{r}");
        if r["setup"] == "ks no rules" {
            assert!(r["events"].get("alert").is_none(), "{r}");
        }
        if r["setup"] == "ksight" {
            assert_eq!(r["lost"], 0, "{r}");
            if r["workload"] == "exec" {
                assert!(r["events"]["exec"].as_u64().unwrap() >= 20, "{r}");
            } else {
                assert!(r["events"]["udp"].as_u64().unwrap() >= 100, "{r}");
            }
        }
    }
    assert!(!v["programs"].as_array().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_named_accept_hook_runs_or_fails_clearly() {
    // the kretprobe flavour needs kprobes, which the kernel lists as a PMU
    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let out = Command::new(KSIGHT)
        .args([
            "run",
            "--accept-hook",
            "kretprobe",
            "--events",
            "accept",
            "--duration",
            "1s",
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if kprobes {
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("(accept() via kretprobe)"), "{stderr}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(
                "ksight: error: --accept-hook kretprobe: no accept() hook on this kernel"
            ) && stderr.contains("kretprobe/inet_csk_accept"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
