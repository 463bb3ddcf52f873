//! The fleet stream against real `nats-server`s (Debian's, JetStream on):
//! a three-node cluster on loopback with a three-replica stream, two ksight
//! instances as two hosts, the stream's leader killed mid-storm, the whole
//! cluster down for 20 s; and ksight SIGKILLed during an outage. At the end
//! the stream holds exactly the generated events of each host.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{free_port, install_exe, temp_dir, Ksight, KSIGHT};

struct Node {
    name: String,
    port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

/// nats-server nodes, clustered when more than one.
struct Cluster {
    nodes: Vec<Node>,
}

impl Cluster {
    fn new(dir: &Path, n: usize) -> Cluster {
        Cluster::with(dir, n, "")
    }

    /// `extra`: more of each node's config (e.g. an `authorization` block).
    fn with(dir: &Path, n: usize, extra: &str) -> Cluster {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let nodes = (0..n)
            .map(|i| {
                let name = format!("n{i}");
                let conf = dir.join(format!("{name}.conf"));
                let routes: Vec<String> = ports
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, p)| format!("nats-route://127.0.0.1:{}", p.1))
                    .collect();
                let cluster = if n > 1 {
                    format!(
                        "cluster {{ name: ks, listen: \"127.0.0.1:{}\", routes: [{}] }}",
                        ports[i].1,
                        routes.join(", ")
                    )
                } else {
                    String::new()
                };
                std::fs::write(
                    &conf,
                    format!(
                        "server_name: {name}\nlisten: \"127.0.0.1:{}\"\n\
                         jetstream {{ store_dir: \"{}\" }}\n{cluster}\n{extra}\n",
                        ports[i].0,
                        dir.join(&name).display()
                    ),
                )
                .unwrap();
                Node {
                    name,
                    port: ports[i].0,
                    conf,
                    child: None,
                }
            })
            .collect();
        let mut c = Cluster { nodes };
        for i in 0..n {
            c.start(i);
        }
        c
    }

    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(node.conf.with_extension("log")).unwrap();
        node.child = Some(
            Command::new("nats-server")
                .args(["-c", node.conf.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("nats-server (scripts/setup.sh installs it)"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err() {
            assert!(Instant::now() < deadline, "{} did not listen", node.name);
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn index(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).unwrap()
    }

    fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// `ksight fleet ARGS --server ...`: stdout, or the error.
fn fleet(servers: &[String], args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(KSIGHT);
    cmd.arg("fleet").args(args);
    for s in servers {
        cmd.args(["--server", s]);
    }
    let out = cmd.output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Retries until the cluster answers (its meta leader is elected).
fn init(servers: &[String], replicas: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match fleet(
            servers,
            &["init", "--replicas", replicas, "--dedup-window", "10m"],
        ) {
            Ok(out) => return assert!(out.contains("stream KSIGHT"), "{out}"),
            Err(e) if Instant::now() > deadline => panic!("fleet init: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(500)),
        }
    }
}

fn stats(servers: &[String]) -> Option<Value> {
    let out = fleet(servers, &["stats", "--format", "json"]).ok()?;
    serde_json::from_str(&out).ok()
}

fn execs_stored(servers: &[String], host: &str) -> Option<u64> {
    stats(servers)?["hosts"][host]["kinds"]["exec"].as_u64()
}

/// Waits until the stream holds `n` execs of `host` (and stays there a moment).
fn wait_for(servers: &[String], host: &str, n: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    let mut got = 0;
    while Instant::now() < deadline {
        got = execs_stored(servers, host).unwrap_or(got);
        if got >= n {
            thread::sleep(Duration::from_secs(1));
            return execs_stored(servers, host).unwrap_or(got);
        }
        thread::sleep(Duration::from_millis(500));
    }
    got
}

/// A ksight whose only output is the fleet stream, as host `host`, seeing
/// only the execs of the program [`storm_name`] names.
fn agent(dir: &Path, host: &str, servers: &[String]) -> Ksight {
    let conf = dir.join(format!("{host}.toml"));
    let list: Vec<String> = servers.iter().map(|s| format!("{s:?}")).collect();
    std::fs::write(
        &conf,
        format!(
            "[[output]]\nname = \"fleet\"\nkind = \"nats\"\nservers = [{}]\n\
             spool-dir = \"{}\"\ntimeout = \"2s\"\n",
            list.join(", "),
            dir.join(format!("spool-{host}")).display()
        ),
    )
    .unwrap();
    let comm = storm_name(host);
    Ksight::start(&[
        "--config",
        conf.to_str().unwrap(),
        "--host-name",
        host,
        "--events",
        "exec",
        "--no-rules",
        "--comm",
        &comm,
        "-o",
        "/dev/null",
    ])
}

/// The storm program of a host: unique to this test process (another run of
/// these tests on the machine must not feed this one's agents), a comm of at
/// most 15 characters.
fn storm_name(host: &str) -> String {
    format!("st{host}{}", std::process::id())
}

/// Runs `exe` `n` times, one after the other, `pace` apart.
fn storm(exe: PathBuf, n: u64, pace: Duration) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for _ in 0..n {
            let st = Command::new(&exe).status().unwrap();
            assert!(st.success());
            thread::sleep(pace);
        }
    })
}

fn summary_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("ksight: output fleet:"))
        .unwrap_or("(no output summary)")
}

#[test]
fn a_three_node_cluster_loses_nothing_through_a_leader_kill_and_a_full_outage() {
    let dir = temp_dir("fleet3");
    let mut cluster = Cluster::new(&dir, 3);
    let servers = cluster.urls();
    init(&servers, "3");
    let exes: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|h| {
            let p = dir.join(storm_name(h));
            install_exe(Path::new("/bin/true"), &p, "0755");
            p
        })
        .collect();
    let agents: Vec<Ksight> = ["a", "b"]
        .iter()
        .map(|h| agent(&dir, h, &servers))
        .collect();

    // 1: a storm on each host; the stream's leader dies in the middle of it
    const FIRST: u64 = 1500;
    let storms: Vec<_> = exes
        .iter()
        .map(|e| storm(e.clone(), FIRST, Duration::from_millis(2)))
        .collect();
    thread::sleep(Duration::from_secs(2));
    let leader = stats(&servers).expect("stats")["stream"]["leader"]
        .as_str()
        .expect("a leader")
        .to_string();
    let li = cluster.index(&leader);
    cluster.kill(li);
    thread::sleep(Duration::from_secs(4));
    cluster.start(li);
    storms.into_iter().for_each(|s| s.join().unwrap());

    // 2: the whole cluster down for 20 s while both hosts go on
    for i in 0..3 {
        cluster.kill(i);
    }
    const SECOND: u64 = 1000;
    let storms: Vec<_> = exes
        .iter()
        .map(|e| storm(e.clone(), SECOND, Duration::from_millis(5)))
        .collect();
    thread::sleep(Duration::from_secs(20));
    storms.into_iter().for_each(|s| s.join().unwrap());
    for i in 0..3 {
        cluster.start(i);
    }

    let want = FIRST + SECOND;
    let got: Vec<u64> = ["a", "b"]
        .iter()
        .map(|h| wait_for(&servers, h, want, Duration::from_secs(90)))
        .collect();
    let runs: Vec<_> = agents.into_iter().map(Ksight::stop).collect();
    for (h, r) in ["a", "b"].iter().zip(&runs) {
        assert!(r.status.success(), "{}", r.stderr);
        eprintln!("host {h}: {}", summary_line(&r.stderr));
    }
    assert_eq!(got, [want, want], "execs in the stream per host (a, b)");
    // none twice: the subject counts are messages stored, and each exec is
    // one message; tail returns them, each exec_id once
    let out = fleet(
        &servers,
        &[
            "tail",
            "--host",
            "a",
            "--type",
            "exec",
            "--since",
            "10m",
            "--no-follow",
            "--format",
            "json",
        ],
    )
    .unwrap();
    let evs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(evs.len() as u64, want);
    assert!(evs.iter().all(|e| e["host"] == "a" && e["type"] == "exec"));
    let ids: std::collections::HashSet<&str> = evs
        .iter()
        .filter_map(|e| e["process"]["exec_id"].as_str())
        .collect();
    assert_eq!(ids.len() as u64, want);
    // the outage went through the spool, and it is empty now
    for r in &runs {
        let line = summary_line(&r.stderr);
        assert!(line.contains(", 0 in the spool"), "{line}");
        assert!(r.stderr.contains("spooling to"), "{}", r.stderr);
        assert!(line.contains("0 dropped (queue full), 0 failed"), "{line}");
    }
}

#[test]
fn a_spool_left_by_a_sigkill_during_an_outage_is_replayed_once() {
    let dir = temp_dir("fleet1");
    let mut server = Cluster::new(&dir, 1);
    let servers = server.urls();
    init(&servers, "1");
    let exe = dir.join(storm_name("c"));
    install_exe(Path::new("/bin/true"), &exe, "0755");
    let k = agent(&dir, "c", &servers);
    storm(exe.clone(), 300, Duration::from_millis(1))
        .join()
        .unwrap();
    assert_eq!(wait_for(&servers, "c", 300, Duration::from_secs(30)), 300);

    server.kill(0);
    storm(exe.clone(), 700, Duration::from_millis(1))
        .join()
        .unwrap();
    // every event reached the spool
    let deadline = Instant::now() + Duration::from_secs(20);
    while !k.stderr_so_far().contains("spooling to") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_secs(3));
    k.signal(libc::SIGKILL);
    let r = k.stop_raw();
    assert!(!r.status.success());
    // the spool as it is now, to replay a second time below: as if ksight had
    // died after publishing it and before its cursor moved
    let spool = dir.join("spool-c");
    let copy = dir.join("spool-c.copy");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&spool)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());

    server.start(0);
    let k = agent(&dir, "c", &servers);
    let got = wait_for(&servers, "c", 1000, Duration::from_secs(60));
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);
    assert!(
        r.stderr.contains("left in the spool") && r.stderr.contains("by an earlier run"),
        "{}",
        r.stderr
    );
    assert_eq!(got, 1000, "{}", r.stderr);
    let line = summary_line(&r.stderr);
    assert!(line.contains(", 0 in the spool"), "{line}");

    // the same spool again: every message is a duplicate, stored once
    std::fs::remove_dir_all(&spool).unwrap();
    std::fs::rename(&copy, &spool).unwrap();
    let k = agent(&dir, "c", &servers);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !k.stderr_so_far().contains("the spool is replayed") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let r = k.stop();
    let line = summary_line(&r.stderr).to_string();
    let acked = |l: &str| -> (u64, u64) {
        let n = |key: &str| -> u64 {
            let before = l.split(key).next().unwrap();
            before
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        (n(" acknowledged by the stream"), n(" as duplicates"))
    };
    let (acks, dups) = acked(&line);
    assert!(acks >= 700 && dups == acks, "{line}");
    assert_eq!(execs_stored(&servers, "c"), Some(1000), "{line}");

    // stopped while the server is away: it ends at once, its events kept
    server.kill(0);
    let k = agent(&dir, "c", &servers);
    storm(exe, 20, Duration::ZERO).join().unwrap();
    thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    let r = k.stop();
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "{:?} to stop",
        t.elapsed()
    );
    assert!(r.status.success(), "{}", r.stderr);
    // the 20 execs (and the exe_hash of the program's first one)
    let line = summary_line(&r.stderr);
    let spooled: u64 = line
        .split(" in the spool")
        .next()
        .and_then(|b| b.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(spooled >= 20, "{line}");
}

#[test]
fn credentials_come_from_the_config_file_for_the_output_and_the_readers() {
    let dir = temp_dir("fleetauth");
    let server = Cluster::with(
        &dir,
        1,
        "authorization { user: ksight, password: \"s3cr3t-pw\" }",
    );
    let url = server.urls()[0].clone();
    let conf = dir.join("auth.toml");
    std::fs::write(
        &conf,
        format!(
            "[[output]]\nname = \"fleet\"\nkind = \"nats\"\nservers = [{url:?}]\n\
             spool-dir = \"{}\"\nuser = \"ksight\"\npassword = \"s3cr3t-pw\"\n\
             batch = 4\nevents-per-message = 1\n",
            dir.join("spool").display()
        ),
    )
    .unwrap();
    // (a message per event, 4 in flight: rounds larger than the window must
    // not wait on themselves)
    // without them the server says no, and the reader says so
    let e = fleet(
        std::slice::from_ref(&url),
        &["--config", "/dev/null", "stats"],
    )
    .unwrap_err();
    assert!(e.to_lowercase().contains("authorization"), "{e}");
    let with_conf = |args: &[&str]| {
        let mut a = vec!["--config", conf.to_str().unwrap()];
        a.extend_from_slice(args);
        fleet(&[], &a)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = with_conf(&["init"]) {
        assert!(Instant::now() < deadline, "fleet init: {e}");
        thread::sleep(Duration::from_millis(300));
    }
    let exe = dir.join(storm_name("d"));
    install_exe(Path::new("/bin/true"), &exe, "0755");
    let k = Ksight::start(&[
        "--config",
        conf.to_str().unwrap(),
        "--host-name",
        "d",
        "--events",
        "exec",
        "--no-rules",
        "--comm",
        &storm_name("d"),
        "-o",
        "/dev/null",
    ]);
    storm(exe, 50, Duration::ZERO).join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = None;
    while Instant::now() < deadline {
        got = with_conf(&["stats", "--format", "json"])
            .ok()
            .and_then(|o| serde_json::from_str::<Value>(&o).ok())
            .and_then(|v| v["hosts"]["d"]["kinds"]["exec"].as_u64());
        if got == Some(50) {
            break;
        }
        thread::sleep(Duration::from_millis(300));
    }
    let r = k.stop();
    assert_eq!(got, Some(50), "{}", r.stderr);
    // `config show` does not print the password
    let show = Command::new(KSIGHT)
        .args(["config", "show", "--config", conf.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.status.success() && !text.contains("s3cr3t-pw"),
        "{text}"
    );
}

#[test]
fn a_stream_nobody_made_is_named_and_its_events_wait_in_the_spool() {
    let dir = temp_dir("fleetnostream");
    let server = Cluster::new(&dir, 1);
    let servers = server.urls();
    let exe = dir.join(storm_name("e"));
    install_exe(Path::new("/bin/true"), &exe, "0755");
    let k = agent(&dir, "e", &servers);
    storm(exe, 5, Duration::ZERO).join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !k.stderr_so_far().contains("spooling to") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let r = k.stop();
    assert!(
        r.stderr
            .contains("no stream takes these subjects (`ksight fleet init` makes it)"),
        "{}",
        r.stderr
    );
    let line = summary_line(&r.stderr);
    assert!(!line.contains(", 0 in the spool"), "{line}");
}
