//! Enforcement on the real kernel (issue 15): rules with an `action`, each
//! scoped to a cgroup of the test's own (the hooks see the whole machine),
//! their traffic in a network namespace of the test's own.
//!
//! - deny_connect: connect() gets EPERM and no SYN leaves (the namespace's TCP
//!   counters do not move), an allowed destination passes, a denied UDP
//!   destination's datagram is refused and never arrives;
//! - monitor mode (no --enforce): nothing is blocked, `would_deny` and an alert;
//! - deny_domain: through a local dnsmasq, the address answered for a denied
//!   name is refused, another name's is not;
//! - kill: the executable never runs (its marker file is never made), its
//!   parent sees SIGKILL; outside the rule's cgroup it runs;
//! - without --enforce-persist nothing stays after SIGKILL of ksight; with it
//!   the deny holds, a second persisted run leaves one copy, and
//!   `ksight enforce clear` removes it.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A cgroup v2 directory of the test's own, removed when dropped.
struct Cgroup {
    /// From the cgroup2 root: `/ks-enf-<pid>-<tag>`.
    rel: String,
    dir: PathBuf,
}

impl Cgroup {
    fn new(tag: &str) -> Cgroup {
        let rel = format!("/ks-enf-{}-{tag}", std::process::id());
        let dir = cgroup2_mount().join(rel.trim_start_matches('/'));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).expect("a cgroup of the test's own");
        Cgroup { rel, dir }
    }

    fn procs(&self) -> String {
        self.dir.join("cgroup.procs").display().to_string()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // its processes are gone; a moment for the kernel to agree
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn rule_dir(tag: &str, text: &str) -> PathBuf {
    let dir = temp_dir(&format!("enf-rules-{tag}"));
    std::fs::write(dir.join("rules.yaml"), text).unwrap();
    dir
}

/// /proc/net/snmp's Tcp ActiveOpens and PassiveOpens, of this namespace.
fn tcp_opens() -> (u64, u64) {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap();
    let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
    let names: Vec<&str> = tcp[0].split_whitespace().collect();
    let vals: Vec<&str> = tcp[1].split_whitespace().collect();
    let get = |n: &str| {
        let i = names.iter().position(|x| *x == n).unwrap();
        vals[i].parse().unwrap()
    };
    (get("ActiveOpens"), get("PassiveOpens"))
}

fn outcome<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => "EPERM".into(),
        Err(e) => format!("error:{e}"),
    }
}

/// An A query for `name` to 127.0.0.1:53; the first answer's address.
fn resolve(name: &str) -> String {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    s.send_to(&q, "127.0.0.1:53").unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = s.recv_from(&mut buf).unwrap();
    // one question, then an A answer with a compressed name: its address ends the message
    let a = &buf[n - 4..n];
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// Not a test: in the namespace and cgroup it is started in, with a TCP
/// listener and a UDP socket on 0.0.0.0:$KS_PORT, try $KS_DENIED then
/// $KS_ALLOWED (or the addresses DNS gives for $KS_DENIED_NAME,
/// $KS_ALLOWED_NAME) over TCP and UDP; print what happened as `key=value`.
#[test]
#[ignore = "helper process for the enforcement tests"]
fn helper_enf_net() {
    let env = |k: &str| std::env::var(k).ok();
    let port: u16 = env("KS_PORT").unwrap().parse().unwrap();
    let listener = TcpListener::bind(("0.0.0.0", port)).unwrap();
    std::thread::spawn(move || for _ in listener.incoming() {});
    let udp = UdpSocket::bind(("0.0.0.0", port)).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let (denied, allowed) = match env("KS_DENIED_NAME") {
        Some(n) => (resolve(&n), resolve(&env("KS_ALLOWED_NAME").unwrap())),
        None => (env("KS_DENIED").unwrap(), env("KS_ALLOWED").unwrap()),
    };
    let before = tcp_opens();
    let t = TcpStream::connect_timeout(
        &format!("{denied}:{port}").parse().unwrap(),
        Duration::from_secs(2),
    );
    let after = tcp_opens();
    println!("tcp_denied={}", outcome(t));
    println!("active_delta={}", after.0 - before.0);
    println!("passive_delta={}", after.1 - before.1);
    let t = TcpStream::connect_timeout(
        &format!("{allowed}:{port}").parse().unwrap(),
        Duration::from_secs(2),
    );
    println!("tcp_allowed={}", outcome(t));
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    let mut buf = [0u8; 64];
    println!(
        "udp_denied={}",
        outcome(s.send_to(b"denied", format!("{denied}:{port}")))
    );
    println!(
        "udp_denied_arrived={}",
        udp.recv_from(&mut buf)
            .is_ok_and(|(n, _)| &buf[..n] == b"denied")
    );
    println!(
        "udp_allowed={}",
        outcome(s.send_to(b"allowed", format!("{allowed}:{port}")))
    );
    println!(
        "udp_allowed_arrived={}",
        udp.recv_from(&mut buf)
            .is_ok_and(|(n, _)| &buf[..n] == b"allowed")
    );
}

/// A namespace with 10.77.0.1 and 10.78.0.1 on its loopback.
fn net_ns(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    for a in ["10.77.0.1/32", "10.78.0.1/32"] {
        ip(&["-n", &ns.0, "addr", "add", a, "dev", "lo"]).unwrap();
    }
    ns
}

/// Run the helper in `ns` and `cg`; its `key=value` lines, and its pid.
fn net_helper(ns: &Netns, cg: &Cgroup, envs: &[(&str, &str)]) -> (u32, Vec<(String, String)>) {
    let mut helper = helper_command("helper_enf_net");
    helper.arg("--nocapture");
    let inner = ns.exec(helper);
    // into the cgroup first: `ip netns exec` mounts a sysfs of the
    // namespace's own, without the cgroup2 mount under it
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo $$ > \"$0\"; exec \"$@\""])
        .arg(cg.procs())
        .arg(inner.get_program())
        .args(inner.get_args())
        .env("KS_PORT", free_port().to_string());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let st = wait_timeout(&mut child, Duration::from_secs(30));
    assert!(st.success(), "the helper failed: {out}");
    let kv = out
        .lines()
        // libtest writes "test helper_enf_net ... " before the first line
        .filter_map(|l| l.rsplit("... ").next()?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (pid, kv)
}

fn get<'a>(kv: &'a [(String, String)], k: &str) -> &'a str {
    kv.iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {k} in {kv:?}"))
}

fn enforcements(r: &Run, pid: u32) -> Vec<&Value> {
    r.of("enforcement", pid)
}

fn alerts_of<'a>(r: &'a Run, rule: &str) -> Vec<&'a Value> {
    r.events
        .iter()
        .filter(|e| e["type"] == "alert" && e["alert"]["rule"] == rule)
        .collect()
}

/// ksight with `rules`, acting, writing only enforcement events (and alerts).
fn enforcing(rules: &Path) -> Ksight {
    Ksight::start(&[
        "--enforce",
        "--events",
        "enforcement",
        "--rules",
        rules.to_str().unwrap(),
    ])
}

/// The helper's destinations in `net_ns`: one the rules deny, one they do not.
const ADDRS: &[(&str, &str)] = &[("KS_DENIED", "10.77.0.1"), ("KS_ALLOWED", "10.78.0.1")];

fn deny_rule(cg: &Cgroup) -> String {
    format!(
        "- rule: test_deny_net\n  description: test\n  action: deny_connect\n  \
         condition: net.remote.addr in cidr(10.77.0.0/24) and process.cgroup startswith \"{}\"\n  \
         severity: high\n  output: \"{{process.exe}} to {{net.remote.addr}}:{{net.remote.port}}\"\n",
        cg.rel
    )
}

#[test]
fn a_denied_destination_gets_eperm_and_nothing_leaves_an_allowed_one_passes() {
    let cg = Cgroup::new("deny");
    let ns = net_ns("deny");
    let rules = rule_dir("deny", &deny_rule(&cg));
    let k = enforcing(&rules);
    assert!(
        k.stderr_so_far()
            .contains("enforcement: 1 rule (1 enforcing, 0 monitoring)"),
        "{}",
        k.stderr_so_far()
    );
    let (pid, kv) = net_helper(&ns, &cg, ADDRS);
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(get(&kv, "tcp_denied"), "EPERM", "{kv:?}");
    // the peer side: no SYN was sent, none arrived
    assert_eq!(get(&kv, "active_delta"), "0");
    assert_eq!(get(&kv, "passive_delta"), "0");
    assert_eq!(get(&kv, "tcp_allowed"), "ok");
    assert_eq!(get(&kv, "udp_denied"), "EPERM");
    assert_eq!(get(&kv, "udp_denied_arrived"), "false");
    assert_eq!(get(&kv, "udp_allowed"), "ok");
    assert_eq!(get(&kv, "udp_allowed_arrived"), "true");

    let evs = enforcements(&r, pid);
    assert_eq!(evs.len(), 2, "{evs:#?}");
    for (ev, proto) in evs.iter().zip(["tcp", "udp"]) {
        assert_eq!(ev["enforcement"]["action"], "deny_connect");
        assert_eq!(ev["enforcement"]["rule"], "test_deny_net");
        assert_eq!(ev["enforcement"]["result"], "denied");
        assert_eq!(ev["net"]["protocol"], proto);
        assert_eq!(ev["net"]["remote"]["addr"], "10.77.0.1");
        assert_eq!(ev["process"]["cgroup"], cg.rel.as_str());
    }
    let alerts = alerts_of(&r, "test_deny_net");
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    let port = evs[0]["net"]["remote"]["port"].to_string();
    let output = alerts[0]["alert"]["output"].as_str().unwrap();
    assert!(
        output.ends_with(&format!("to 10.77.0.1:{port}")),
        "{output}"
    );
}

#[test]
fn monitor_mode_blocks_nothing_and_says_what_it_would_have_denied() {
    let cg = Cgroup::new("monitor");
    let ns = net_ns("monitor");
    let rules = rule_dir("monitor", &deny_rule(&cg));
    let k = Ksight::start(&[
        "--events",
        "enforcement",
        "--rules",
        rules.to_str().unwrap(),
    ]);
    let (pid, kv) = net_helper(&ns, &cg, ADDRS);
    let r = k.stop();
    assert!(
        r.stderr.contains("monitor mode: nothing is stopped"),
        "{}",
        r.stderr
    );
    assert_eq!(get(&kv, "tcp_denied"), "ok", "{kv:?}");
    assert_eq!(get(&kv, "udp_denied_arrived"), "true");
    let evs = enforcements(&r, pid);
    assert_eq!(evs.len(), 2, "{evs:#?}");
    assert!(evs
        .iter()
        .all(|e| e["enforcement"]["result"] == "would_deny"));
    assert_eq!(alerts_of(&r, "test_deny_net").len(), 2);
}

/// dnsmasq, stopped when dropped.
struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dnsmasq in `ns`, answering x.bad.test and x.good.test (and `extra` records).
fn dnsmasq(ns: &Netns) -> Dnsmasq {
    dnsmasq_with(ns, &[])
}

fn dnsmasq_with(ns: &Netns, extra: &[&str]) -> Dnsmasq {
    let child = Dnsmasq(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, "dnsmasq", "--keep-in-foreground"])
            .args(["--no-resolv", "--no-hosts", "--listen-address=127.0.0.1"])
            .args(["--bind-interfaces", "--user=root", "--pid-file"])
            .args(["--log-facility=/dev/null"])
            .args([
                "--address=/bad.test/10.77.0.1",
                "--address=/good.test/10.78.0.1",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ok = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                "dig",
                "+short",
                "+time=1",
                "@127.0.0.1",
            ])
            .arg("x.good.test")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("10.78.0.1"));
        if ok {
            return child;
        }
        assert!(Instant::now() < deadline, "dnsmasq does not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn deny_domain_refuses_the_address_answered_for_a_denied_name_only() {
    let cg = Cgroup::new("domain");
    let ns = net_ns("domain");
    let resolver = dnsmasq(&ns);
    let rules = rule_dir(
        "domain",
        &format!(
            "- rule: test_deny_domain\n  description: test\n  action: deny_domain\n  \
             condition: net.remote_name glob \"*.bad.test\" and process.cgroup startswith \"{}\"\n  \
             severity: high\n  output: \"{{process.exe}} to {{net.remote_name}}\"\n",
            cg.rel
        ),
    );
    let k = enforcing(&rules);
    let (pid, kv) = net_helper(
        &ns,
        &cg,
        &[
            ("KS_DENIED_NAME", "x.bad.test"),
            ("KS_ALLOWED_NAME", "x.good.test"),
        ],
    );
    let r = k.stop();
    drop(resolver);
    assert_eq!(get(&kv, "tcp_denied"), "EPERM", "{kv:?}\n{}", r.stderr);
    assert_eq!(get(&kv, "tcp_allowed"), "ok");
    assert_eq!(get(&kv, "udp_denied"), "EPERM");
    assert_eq!(get(&kv, "udp_allowed_arrived"), "true");
    let evs = enforcements(&r, pid);
    assert_eq!(evs.len(), 2, "{evs:#?}");
    assert_eq!(evs[0]["enforcement"]["action"], "deny_domain");
    assert_eq!(evs[0]["enforcement"]["result"], "denied");
    assert_eq!(evs[0]["net"]["remote"]["addr"], "10.77.0.1");
}

#[test]
fn a_killed_executable_never_runs_and_its_parent_sees_sigkill() {
    let cg = Cgroup::new("kill");
    let dir = temp_dir("enf-kill");
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    install_exe(Path::new("/usr/bin/touch"), &bin.join("mk"), "0755");
    let rules = rule_dir(
        "kill",
        &format!(
            "- rule: test_kill\n  description: test\n  action: kill\n  \
             condition: process.exe startswith \"{}/\" and process.cgroup startswith \"{}\"\n  \
             severity: critical\n  output: \"{{process.exe}} killed\"\n",
            bin.display(),
            cg.rel
        ),
    );
    let k = enforcing(&rules);
    let d = dir.display();
    let script = format!(
        "echo $$ > {}; {d}/bin/mk {d}/marker; echo $? > {d}/rc",
        cg.procs()
    );
    let (shell, st) = run(Command::new("sh").args(["-c", &script]));
    assert!(st.success());
    // outside the rule's cgroup the same file runs
    let (_, st) = run(Command::new(bin.join("mk")).arg(dir.join("marker2")));
    assert!(st.success());
    let r = k.stop();
    assert!(!dir.join("marker").exists(), "the killed program ran");
    assert!(dir.join("marker2").exists(), "outside the cgroup it runs");
    assert_eq!(
        std::fs::read_to_string(dir.join("rc")).unwrap().trim(),
        "137",
        "the parent sees SIGKILL"
    );
    let evs: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["type"] == "enforcement" && e["process"]["ppid"] == shell)
        .collect();
    assert_eq!(evs.len(), 1, "{:#?}", r.events);
    assert_eq!(evs[0]["enforcement"]["action"], "kill");
    assert_eq!(evs[0]["enforcement"]["result"], "killed");
    assert_eq!(
        evs[0]["process"]["exe"],
        bin.join("mk").display().to_string()
    );
    assert_eq!(alerts_of(&r, "test_kill").len(), 1);
}

fn ksight_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ksight"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn persisted_enforcement_outlives_a_killed_ksight_once_and_clear_removes_it() {
    let cg = Cgroup::new("persist");
    let ns = net_ns("persist");
    let rules = rule_dir("persist", &deny_rule(&cg));
    let args = [
        "--enforce",
        "--events",
        "enforcement",
        "--rules",
        rules.to_str().unwrap(),
    ];
    // without --enforce-persist: SIGKILL leaves nothing, the connect passes
    let k = Ksight::start(&args);
    let (progs, maps) = (k.prog_ids.clone(), k.map_ids.clone());
    k.signal(libc::SIGKILL);
    let _ = k.stop_raw();
    assert_all_gone(&progs, &maps);
    let (_, kv) = net_helper(&ns, &cg, ADDRS);
    assert_eq!(get(&kv, "tcp_denied"), "ok", "{kv:?}");

    // with it: twice (a restart), each SIGKILLed: the first run's programs
    // go when the second replaces its pins (never two copies), the second's
    // stay and still deny
    let persist: Vec<&str> = args.iter().copied().chain(["--enforce-persist"]).collect();
    let first = Ksight::start(&persist);
    let first_progs = first.prog_ids.clone();
    first.signal(libc::SIGKILL);
    let _ = first.stop_raw();
    let second = Ksight::start(&persist);
    let second_progs = second.prog_ids.clone();
    second.signal(libc::SIGKILL);
    let _ = second.stop_raw();
    let enforcing = |progs: &[u32]| -> Vec<u32> {
        progs
            .iter()
            .copied()
            .filter(|&id| {
                let out = Command::new("bpftool")
                    .args(["prog", "show", "id", &id.to_string()])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).contains("ks_enf_")
            })
            .collect()
    };
    let kept = enforcing(&second_progs);
    assert!(!kept.is_empty(), "the second run's programs stay pinned");
    let first_enf: Vec<u32> = first_progs
        .iter()
        .copied()
        .filter(|id| !second_progs.contains(id))
        .collect();
    assert!(
        enforcing(&first_enf).is_empty(),
        "the first run's enforcement is gone: one copy"
    );
    let (_, kv) = net_helper(&ns, &cg, ADDRS);
    assert_eq!(get(&kv, "tcp_denied"), "EPERM", "{kv:?}");
    assert_eq!(get(&kv, "tcp_allowed"), "ok");

    let st = ksight_cmd(&["enforce", "status"]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(st.status.success(), "{text}");
    assert!(text.contains("test_deny_net"), "{text}");
    assert!(text.contains("ks_enf_connect4"), "{text}");
    let hits: u64 = text
        .lines()
        .find(|l| l.starts_with("test_deny_net"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .parse()
        .unwrap();
    assert!(hits >= 2, "the counter counts while ksight is gone: {text}");

    let clear = ksight_cmd(&["enforce", "clear"]);
    assert!(clear.status.success());
    assert_all_gone(&kept, &[]);
    let (_, kv) = net_helper(&ns, &cg, ADDRS);
    assert_eq!(get(&kv, "tcp_denied"), "ok", "{kv:?}");
    let st = ksight_cmd(&["enforce", "status"]);
    assert!(String::from_utf8_lossy(&st.stdout).contains("no persisted enforcement"));
}

#[test]
fn a_rule_that_would_deny_all_egress_or_that_the_kernel_cannot_decide_is_refused() {
    let broad = rule_dir(
        "broad",
        "- rule: all_out\n  description: x\n  action: deny_connect\n  \
         condition: net.remote.addr in cidr(0.0.0.0/0)\n  severity: high\n  output: x\n",
    );
    let out = ksight_cmd(&["rules", "check", broad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("would deny all egress") && err.contains("allow_broad"),
        "{err}"
    );

    let userspace = rule_dir(
        "regex",
        "- rule: by_regex\n  description: x\n  action: kill\n  \
         condition: process.exe regex \"^/tmp/\"\n  severity: high\n  output: x\n",
    );
    let out = ksight_cmd(&["rules", "check", userspace.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("rules.yaml:4:") && err.contains("kernel"),
        "{err}"
    );
}

#[test]
fn a_userspace_kill_signals_the_process_the_event_names_and_monitor_mode_does_not() {
    let dir = temp_dir("enf-uk");
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    // a shell that waits (`; true`: it does not exec its last command)
    install_exe(Path::new("/bin/sh"), &bin.join("sleeper"), "0755");
    // a condition only userspace decides (a regex over argv)
    let rules = rule_dir(
        "uk",
        &format!(
            "- rule: test_kill_userspace\n  description: test\n  action: kill_userspace\n  \
             events: [exec]\n  condition: process.exe == \"{}\" and any(exec.argv, . regex \"ks-kill-m[e]\")\n  \
             severity: high\n  output: \"{{process.exe}} killed\"\n",
            bin.join("sleeper").display()
        ),
    );
    for enforce in [true, false] {
        let mut args = vec![
            "--events",
            "enforcement",
            "--rules",
            rules.to_str().unwrap(),
        ];
        if enforce {
            args.push("--enforce");
        }
        let k = Ksight::start(&args);
        let started = Instant::now();
        let mut child = Command::new(bin.join("sleeper"))
            .args(["-c", "sleep 3; true", "ks-kill-me"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let st = wait_timeout(&mut child, Duration::from_secs(10));
        let r = k.stop();
        let evs = enforcements(&r, pid);
        assert_eq!(evs.len(), 1, "{:#?}\n{}", r.events, r.stderr);
        assert_eq!(evs[0]["enforcement"]["action"], "kill_userspace");
        use std::os::unix::process::ExitStatusExt;
        if enforce {
            assert_eq!(st.signal(), Some(libc::SIGKILL), "{st:?}");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "killed, not ended"
            );
            assert_eq!(evs[0]["enforcement"]["result"], "killed");
        } else {
            assert!(st.success(), "monitor mode kills nothing: {st:?}");
            assert_eq!(evs[0]["enforcement"]["result"], "would_kill");
        }
    }
}

#[test]
fn a_kill_rule_by_content_kills_the_next_exec_of_a_file_hashed_to_it() {
    let cg = Cgroup::new("sha");
    let dir = temp_dir("enf-sha");
    // a program of its own content: `true` with a tail no other file has
    let mut bytes = std::fs::read("/usr/bin/true").unwrap();
    bytes.extend_from_slice(format!("ksight-test-{}", std::process::id()).as_bytes());
    let prog = dir.join("unique-true");
    write_exe(&prog, &bytes);
    let out = Command::new("sha256sum").arg(&prog).output().unwrap();
    let sha = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let rules = rule_dir(
        "sha",
        &format!(
            "- rule: test_kill_by_content\n  description: test\n  action: kill\n  \
             condition: exec.file.sha256 == {sha} and process.cgroup startswith \"{}\"\n  \
             severity: high\n  output: \"{{process.exe}} killed\"\n",
            cg.rel
        ),
    );
    let k = enforcing(&rules);
    let in_cgroup = |tag: &str| {
        let script = format!(
            "echo $$ > {}; {}; echo $? > {}",
            cg.procs(),
            prog.display(),
            dir.join(tag).display()
        );
        run(Command::new("sh").args(["-c", &script]));
        std::fs::read_to_string(dir.join(tag))
            .unwrap()
            .trim()
            .to_string()
    };
    // the first exec is what makes ksight hash it: it runs (and ends)
    assert_eq!(in_cgroup("first"), "0");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut second = in_cgroup("second");
    while second == "0" && Instant::now() < deadline {
        // the hash is computed on a worker: until it is, execs run
        std::thread::sleep(Duration::from_millis(200));
        second = in_cgroup("second");
    }
    assert_eq!(second, "137", "killed in the kernel once its hash is known");
    // outside the rule's cgroup the same file runs
    let (_, st) = run(&mut Command::new(&prog));
    assert!(st.success());
    let r = k.stop();
    let kernel: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| {
            e["type"] == "enforcement"
                && e["enforcement"]["rule"] == "test_kill_by_content"
                && e["enforcement"]["result"] == "killed"
                && !e["seq"].is_null()
        })
        .collect();
    assert!(!kernel.is_empty(), "{:#?}", r.events);
    assert_eq!(kernel[0]["enforcement"]["action"], "kill");
}

#[test]
fn a_kill_rule_scoped_to_a_parent_kills_only_under_that_parent() {
    let dir = temp_dir("enf-parent");
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    install_exe(Path::new("/usr/bin/touch"), &bin.join("mk"), "0755");
    let parent = dir.join("parent-sh");
    install_exe(Path::new("/bin/sh"), &parent, "0755");
    let rules = rule_dir(
        "parent",
        &format!(
            "- rule: test_kill_under_parent\n  description: test\n  action: kill\n  \
             condition: process.exe startswith \"{}/\" and any(ancestors, .exe == \"{}\")\n  \
             severity: high\n  output: \"{{process.exe}} killed\"\n",
            bin.display(),
            parent.display()
        ),
    );
    let k = enforcing(&rules);
    let d = dir.display();
    // under the parent, one shell deeper: still its descendant
    let (_, st) = run(Command::new(&parent).args([
        "-c",
        &format!("sh -c '{d}/bin/mk {d}/under; echo $? > {d}/rc-under'"),
    ]));
    assert!(st.success());
    let (_, st) = run(Command::new("sh").args([
        "-c",
        &format!("{d}/bin/mk {d}/elsewhere; echo $? > {d}/rc-elsewhere"),
    ]));
    assert!(st.success());
    let r = k.stop();
    assert!(!dir.join("under").exists(), "killed under the parent");
    assert_eq!(
        std::fs::read_to_string(dir.join("rc-under"))
            .unwrap()
            .trim(),
        "137"
    );
    assert!(dir.join("elsewhere").exists(), "runs under another parent");
    let killed = r
        .events
        .iter()
        .filter(|e| {
            e["type"] == "enforcement" && e["enforcement"]["rule"] == "test_kill_under_parent"
        })
        .count();
    assert_eq!(killed, 1, "{}", r.stderr);
}

#[test]
fn a_full_answers_map_is_reported_as_lost_not_ignored() {
    let ns = net_ns("full");
    let resolver = dnsmasq_with(
        &ns,
        &[
            "--address=/a1.full.test/10.79.0.1",
            "--address=/a2.full.test/10.79.0.2",
            "--address=/a3.full.test/10.79.0.3",
        ],
    );
    let rules = rule_dir(
        "full",
        "- rule: test_deny_full\n  description: test\n  action: deny_domain\n  \
         condition: net.remote_name glob \"*.full.test\"\n  severity: high\n  output: x\n",
    );
    let k = Ksight::start(&[
        "--events",
        "enforcement",
        "--enforce-answers-max",
        "2",
        "--rules",
        rules.to_str().unwrap(),
    ]);
    for name in ["a1.full.test", "a2.full.test", "a3.full.test"] {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                "dig",
                "+short",
                "+time=2",
                "@127.0.0.1",
                name,
            ])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("10.79.0."));
    }
    // the lost event comes with a poll; the warning within 5 s
    std::thread::sleep(Duration::from_millis(5500));
    let r = k.stop();
    drop(resolver);
    let lost: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["type"] == "lost" && e["lost"]["reason"] == "map_full")
        .collect();
    assert_eq!(lost.len(), 1, "{:#?}\n{}", r.events, r.stderr);
    assert_eq!(lost[0]["lost"]["kind"], "enforcement");
    assert_eq!(lost[0]["lost"]["count"], 1);
    assert!(r.stderr.contains("the answers map is full"), "{}", r.stderr);
}
