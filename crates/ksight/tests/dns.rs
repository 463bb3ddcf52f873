//! DNS events against a real resolver: dnsmasq on 127.0.0.1:53 inside a
//! network namespace the test creates, with an /etc/netns resolv.conf so
//! glibc inside it asks that resolver. Clients: a raw sendto/recvfrom client
//! (our own helper process) and glibc via `getent ahosts`.

mod common;

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Not a test: a raw DNS client in its own process: one A query for $KS_NAME
/// to 127.0.0.1:53 with sendto/recvfrom, after sending $KS_GARBAGE junk datagrams.
#[test]
#[ignore = "helper process for the DNS tests"]
fn helper_dns_client() {
    let name = std::env::var("KS_NAME").unwrap();
    let garbage: usize = std::env::var("KS_GARBAGE").map_or(0, |g| g.parse().unwrap());
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for i in 0..garbage {
        s.send_to(&[0xff, i as u8, 0x00], "127.0.0.1:53").unwrap();
    }
    let qtype: u8 = std::env::var("KS_QTYPE").map_or(1, |t| t.parse().unwrap());
    let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, qtype, 0, 1]);
    s.send_to(&q, "127.0.0.1:53").unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = s.recv_from(&mut buf).unwrap();
    assert!(n > 12);
    if buf[2] & 0x02 != 0 {
        // truncated (TC): ask again over TCP, as resolvers do
        use std::io::{Read, Write};
        let mut t = std::net::TcpStream::connect("127.0.0.1:53").unwrap();
        q[1] = 0xce;
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        t.write_all(&framed).unwrap();
        let mut len = [0u8; 2];
        t.read_exact(&mut len).unwrap();
        let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
        t.read_exact(&mut answer).unwrap();
        assert!(answer.len() > 512);
    }
    if std::env::var_os("KS_CONNECT").is_some() {
        // dnsmasq also listens on TCP 53: a connection to the address just resolved
        drop(std::net::TcpStream::connect("127.0.0.1:53").unwrap());
    }
}

/// A namespace with dnsmasq serving known records; removed when dropped.
struct Resolver {
    ns: Netns,
    dnsmasq: Child,
}

impl Resolver {
    fn start() -> Resolver {
        let ns = Netns::new("dns");
        ns.resolv_conf("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n");
        let dnsmasq = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
            ])
            .args([
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--user=root",
                "--pid-file",
            ])
            .args(["--address=/a.test/10.1.1.1", "--address=/a.test/fd00::1"])
            .args([
                "--cname=alias.test,a.test",
                "--local=/nx.test/",
                "--log-facility=/dev/null",
                "--address=/local.test/127.0.0.1",
                // a TXT answer too big for 512 bytes of UDP: TC, then TCP
                &format!(
                    "--txt-record=big.test,{}",
                    "x".repeat(250) + "," + &"y".repeat(250) + "," + &"z".repeat(100)
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        let r = Resolver { ns, dnsmasq };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !r.getent("a.test").status.success() {
            assert!(Instant::now() < deadline, "dnsmasq does not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn getent(&self, name: &str) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns.0, "getent", "ahosts", name])
            .output()
            .unwrap()
    }

    fn raw_client(&self, name: &str, garbage: usize) -> u32 {
        self.client(name, garbage, false)
    }

    fn client(&self, name: &str, garbage: usize, connect: bool) -> u32 {
        self.client_typed(name, garbage, connect, 1)
    }

    fn client_typed(&self, name: &str, garbage: usize, connect: bool, qtype: u8) -> u32 {
        let mut cmd = Command::new("ip");
        cmd.env("KS_QTYPE", qtype.to_string());
        if connect {
            cmd.env("KS_CONNECT", "1");
        }
        let (pid, st) = run(cmd
            .args(["netns", "exec", &self.ns.0])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "helper_dns_client",
                "--test-threads",
                "1",
            ])
            .env("KS_NAME", name)
            .env("KS_GARBAGE", garbage.to_string()));
        assert!(st.success(), "the raw client got an answer");
        pid
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        // the namespace goes after, with the field
        let _ = self.dnsmasq.kill();
        let _ = self.dnsmasq.wait();
    }
}

fn dns_of(r: &Run, pid: u32) -> Vec<&Value> {
    r.events
        .iter()
        .filter(|e| {
            e["type"] == "dns" && e["process"]["pid"] == pid && e["dns"]["role"] == "client"
        })
        .collect()
}

#[test]
fn raw_queries_report_names_types_answers_rcode_latency_and_the_asking_pid() {
    let res = Resolver::start();
    let k = Ksight::start(&["--events", "dns"]);
    let a = res.raw_client("a.test", 0);
    let alias = res.raw_client("alias.test", 0);
    let nx = res.raw_client("nx.test", 0);
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);

    let ev = &dns_of(&r, a)[0];
    let d = &ev["dns"];
    assert_eq!(d["question"]["name"], "a.test.");
    assert_eq!(d["question"]["type"], "A");
    assert_eq!(d["status"], "answered");
    assert_eq!(d["rcode"], "No Error");
    assert_eq!(d["answers"][0]["data"], "10.1.1.1");
    assert_eq!(d["resolver"], "127.0.0.1:53");
    assert_eq!(d["transport"], "udp");
    assert!(d["latency_ns"].as_u64().unwrap() > 0);
    assert_eq!(d["id"], 0xabcd);

    let chain = &dns_of(&r, alias)[0]["dns"]["answers"];
    let types: Vec<&str> = chain
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    // dnsmasq answers a --cname to an --address target with the CNAME alone
    assert_eq!(types[0], "CNAME", "{chain}");
    assert_eq!(chain[0]["name"], "alias.test.");
    assert_eq!(chain[0]["data"], "a.test.");

    let nxd = &dns_of(&r, nx)[0]["dns"];
    assert_ne!(nxd["rcode"], "No Error");
    assert!(nxd["answers"].as_array().unwrap().is_empty());

    // the resolver's side of the same transactions, attributed to dnsmasq
    let served = r
        .events
        .iter()
        .filter(|e| e["type"] == "dns" && e["dns"]["role"] == "server")
        .filter(|e| e["process"]["comm"] == "dnsmasq")
        .count();
    let servers: Vec<_> = r
        .events
        .iter()
        .filter(|e| e["type"] == "dns" && e["dns"]["role"] == "server")
        .collect();
    assert!(
        served >= 3,
        "dnsmasq answered our three queries: {servers:#?}"
    );
}

#[test]
fn glibc_getaddrinfo_is_seen_with_both_queries() {
    let res = Resolver::start();
    let k = Ksight::start(&["--events", "dns,exec"]);
    // `ip netns exec` execs getent: same pid (other tests run getent too)
    let (pid, st) =
        run(Command::new("ip").args(["netns", "exec", &res.ns.0, "getent", "ahosts", "a.test"]));
    assert!(st.success());
    let r = k.stop();
    // two execs of one pid: ip, then the getent it runs
    assert!(r
        .of("exec", pid)
        .iter()
        .any(|e| e["process"]["comm"] == "getent"));
    let mut types: Vec<String> = dns_of(&r, pid)
        .iter()
        .map(|e| e["dns"]["question"]["type"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    assert_eq!(
        types,
        ["A", "AAAA"],
        "glibc asks both over one socket (sendmmsg)"
    );
    let aaaa = dns_of(&r, pid)
        .into_iter()
        .find(|e| e["dns"]["question"]["type"] == "AAAA")
        .unwrap();
    assert_eq!(aaaa["dns"]["answers"][0]["data"], "fd00::1");
}

#[test]
fn malformed_datagrams_are_skipped_and_ksight_keeps_going() {
    let res = Resolver::start();
    let k = Ksight::start(&["--events", "dns"]);
    let pid = res.raw_client("a.test", 5);
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);
    assert!(r.stderr.contains("did not parse as DNS"), "{}", r.stderr);
    assert_eq!(
        dns_of(&r, pid).len(),
        1,
        "the good query after the junk is still reported"
    );
}

/// A DNS query for `name` (type A), id `id`.
fn query_bytes(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Not a test: in its own network namespace, a hostile server on
/// 127.0.0.66:53 answers each query with its question and an answer whose
/// name is a loop of compression pointers; this process asks it for
/// evil.test, then asks 127.0.0.67:53 (nobody there) for never.test and
/// exits at once, without waiting.
#[test]
#[ignore = "helper process for the DNS tests"]
fn helper_hostile_server() {
    let server = UdpSocket::bind("127.0.0.66:53").unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        loop {
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let mut r = buf[..n].to_vec();
            r[2] = 0x81; // QR, RD
            r[3] = 0x80; // RA, NOERROR
            r[7] = 1; // one answer
            let at = r.len() as u8;
            r.extend_from_slice(&[0xc0, at + 2, 0xc0, at]);
            r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 6, 6, 6, 6]);
            server.send_to(&r, from).unwrap();
        }
    });
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send_to(&query_bytes(0x4242, "evil.test"), "127.0.0.66:53")
        .unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = s.recv_from(&mut buf).unwrap();
    println!("\nKS-SIZE {n}");
    let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
    quiet
        .send_to(&query_bytes(0x4343, "never.test"), "127.0.0.67:53")
        .unwrap();
}

#[test]
fn a_hostile_answer_is_malformed_and_a_query_left_waiting_is_pending() {
    let ns = Netns::new("hostile");
    let k = Ksight::start(&["--events", "dns"]);
    let out = ns
        .exec({
            let mut c = Command::new(std::env::current_exe().unwrap());
            c.args([
                "--ignored",
                "--exact",
                "helper_hostile_server",
                "--nocapture",
                "--test-threads",
                "1",
            ]);
            c
        })
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let size: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.split("KS-SIZE ").nth(1)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("the helper's answer size: {out:?}"));
    // well within --dns-timeout (5 s): the second query is still waiting
    std::thread::sleep(Duration::from_millis(300));
    let r = k.stop();
    let of = |name: &str, role: &str| -> Vec<&Value> {
        r.events
            .iter()
            .filter(|e| {
                e["type"] == "dns"
                    && e["dns"]["question"]["name"] == name
                    && e["dns"]["role"] == role
            })
            .collect()
    };
    let evil = of("evil.test.", "client");
    assert_eq!(evil.len(), 1, "{evil:#?}\n{}", r.stderr);
    let d = &evil[0]["dns"];
    assert_eq!(d["status"], "malformed", "{d:#}");
    assert_eq!(d["id"], 0x4242);
    assert_eq!(d["resolver"], "127.0.0.66:53");
    assert_eq!(d["rcode"], "No Error");
    assert!(d["latency_ns"].as_u64().unwrap() > 0, "{d:#}");
    assert!(!d["error"].as_str().unwrap().is_empty(), "{d:#}");
    assert_eq!(d["response"]["size"], size);
    assert_eq!(d["response"]["flags"], 0x8180);
    assert_eq!(d["response"]["questions"], 1);
    assert_eq!(d["response"]["answers"], 1);
    // the server's side of it: its own reply did not parse either
    assert_eq!(of("evil.test.", "server")[0]["dns"]["status"], "malformed");
    // the query nobody answered, reported at stop
    let never = of("never.test.", "client");
    assert_eq!(never.len(), 1, "{}", r.stderr);
    assert_eq!(never[0]["dns"]["status"], "pending");
    assert_eq!(never[0]["dns"]["latency_ns"], Value::Null);
    assert!(never[0]["dns"]["waited_ns"].as_u64().unwrap() >= 300_000_000);
    assert_eq!(never[0]["process"]["pid"], evil[0]["process"]["pid"]);
    assert!(r.stderr.contains("2 answered a query"), "{}", r.stderr);
    // counted in the summary (with any other test's queries left waiting)
    let waiting = r
        .stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("ksight: ")?
                .split(" DNS queries were still waiting")
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(waiting >= 1, "{}", r.stderr);
}

#[test]
fn a_connection_to_a_resolved_address_carries_the_name() {
    let res = Resolver::start();
    let k = Ksight::start(&["--events", "dns,connect,tcp_close"]);
    let pid = res.client("local.test", 0, true);
    // the orphaned socket closes when dnsmasq acknowledges its FIN: a moment later
    std::thread::sleep(Duration::from_millis(200));
    let r = k.stop();
    let connect = r.one("connect", pid);
    assert_eq!(connect["net"]["remote"]["addr"], "127.0.0.1");
    assert_eq!(connect["net"]["remote_name"], "local.test");
    let close = r.of("tcp_close", pid);
    assert_eq!(close[0]["net"]["remote_name"], "local.test");
}

#[test]
fn a_large_answer_is_truncated_over_udp_and_read_over_tcp() {
    let res = Resolver::start();
    let k = Ksight::start(&["--events", "dns"]);
    let pid = res.client_typed("big.test", 0, false, 16);
    std::thread::sleep(Duration::from_millis(100));
    let r = k.stop();
    let mine = dns_of(&r, pid);
    let udp = mine
        .iter()
        .find(|e| e["dns"]["transport"] == "udp")
        .expect("the UDP attempt");
    assert_eq!(udp["dns"]["truncated"], true);
    let tcp = mine
        .iter()
        .find(|e| e["dns"]["transport"] == "tcp")
        .expect("the TCP retry");
    assert_eq!(tcp["dns"]["question"]["type"], "TXT");
    assert_eq!(tcp["dns"]["status"], "answered");
    let txt = tcp["dns"]["answers"][0]["data"].as_str().unwrap();
    assert!(txt.contains(&"y".repeat(250)), "{txt}");
    assert_eq!(tcp["net"]["remote"]["port"], 53);
    assert_eq!(tcp["net"]["protocol"], "tcp");
    assert_eq!(udp["net"]["protocol"], "udp");
}

/// An upstream dnsmasq on 127.0.0.2 that knows up.test, and a stub dnsmasq on
/// 127.0.0.1 (where resolv.conf points) that knows nothing and forwards to it.
fn stub_and_upstream(res: &Resolver) -> (Child, Child) {
    let run_dnsmasq = |args: &[&str]| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &res.ns.0,
                "dnsmasq",
                "--keep-in-foreground",
                "--no-hosts",
            ])
            .args([
                "--bind-interfaces",
                "--user=root",
                "--pid-file",
                "--log-facility=/dev/null",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let upstream = run_dnsmasq(&[
        "--no-resolv",
        "--listen-address=127.0.0.2",
        "--address=/up.test/10.7.7.7",
    ]);
    // the stub must not start forwarding before the upstream answers
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = Command::new("ip")
            .args([
                "netns",
                "exec",
                &res.ns.0,
                "dig",
                "+tries=1",
                "+time=1",
                "@127.0.0.2",
                "up.test",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        if st.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the upstream resolver does not answer"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stub = run_dnsmasq(&[
        "--no-resolv",
        "--listen-address=127.0.0.1",
        "--port=53",
        "--server=127.0.0.2",
        "--cache-size=0",
    ]);
    (stub, upstream)
}

#[test]
fn getaddrinfo_is_seen_as_the_application_saw_it_and_names_who_a_stub_asked_for() {
    let mut res = Resolver::start();
    // replace the resolver on 127.0.0.1 with a forwarding stub
    let _ = res.dnsmasq.kill();
    let _ = res.dnsmasq.wait();
    let (mut stub, mut upstream) = stub_and_upstream(&res);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !res.getent("up.test").status.success() {
        assert!(Instant::now() < deadline, "the stub does not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    // every process's getaddrinfo, from the start (getent resolves once and ends)
    let k = Ksight::start(&["--events", "dns,getaddrinfo", "--getaddrinfo", "all"]);
    let (pid, st) =
        run(Command::new("ip").args(["netns", "exec", &res.ns.0, "getent", "ahosts", "up.test"]));
    assert!(st.success());
    let r = k.stop();
    let _ = (stub.kill(), upstream.kill(), stub.wait(), upstream.wait());

    let gai = r.one("getaddrinfo", pid);
    assert_eq!(gai["getaddrinfo"]["name"], "up.test");
    assert_eq!(gai["getaddrinfo"]["result"], "ok");
    assert_eq!(gai["getaddrinfo"]["addresses"][0], "10.7.7.7");
    assert!(gai["getaddrinfo"]["latency_ns"].as_u64().unwrap() > 0);
    // the stub's own query upstream names the application it asked for
    let upstream_q = r
        .events
        .iter()
        .find(|e| {
            e["type"] == "dns"
                && e["dns"]["role"] == "client"
                && e["dns"]["resolver"] == "127.0.0.2:53"
        })
        .expect("the stub's query to the upstream resolver");
    assert_eq!(upstream_q["process"]["comm"], "dnsmasq");
    assert_eq!(upstream_q["dns"]["asked_by"]["pid"], pid);
    assert_eq!(upstream_q["dns"]["asked_by"]["comm"], "getent");
}

#[test]
fn dns_over_tcp_sockets_leave_nothing_in_the_socket_table() {
    // a TCP socket that carried DNS is adopted into the socket-owner table;
    // its release must take it out again
    let res = Resolver::start();
    let k = Ksight::start(&["--events", "dns"]);
    let before = k.map_entries("ks_udp_socks");
    let mut digs = Vec::new();
    for _ in 0..50 {
        let (pid, st) = run(Command::new("ip").args([
            "netns",
            "exec",
            &res.ns.0,
            "dig",
            "+tcp",
            "+tries=1",
            "+time=2",
            "@127.0.0.1",
            "a.test",
        ]));
        assert!(st.success());
        digs.push(pid);
    }
    // dnsmasq's end closes when it reads the client's FIN: a moment later
    std::thread::sleep(Duration::from_millis(300));
    let after = k.map_entries("ks_udp_socks");
    let r = k.stop();
    for pid in digs {
        let mine = dns_of(&r, pid);
        assert_eq!(mine.len(), 1, "dig {pid}: one transaction");
        assert_eq!(mine[0]["dns"]["transport"], "tcp");
    }
    // 50 connections leave 100 entries when releases miss TCP sockets; the
    // table holds every UDP socket on the host, and other tests' come and go
    assert!(
        after < before + 40,
        "{before} entries before, {after} after"
    );
}

#[test]
fn dig_over_udp_and_tcp() {
    let res = Resolver::start();
    let k = Ksight::start(&["--events", "dns"]);
    let dig = |args: &[&str]| {
        let (pid, st) = run(Command::new("ip")
            .args([
                "netns",
                "exec",
                &res.ns.0,
                "dig",
                "+tries=1",
                "+time=2",
                "@127.0.0.1",
            ])
            .args(args));
        assert!(st.success(), "dig {args:?}");
        pid
    };
    let udp = dig(&["a.test", "A"]);
    let tcp = dig(&["+tcp", "a.test", "AAAA"]);
    std::thread::sleep(Duration::from_millis(100));
    let r = k.stop();
    let u = &dns_of(&r, udp)[0]["dns"];
    assert_eq!(
        (u["transport"].as_str(), u["question"]["type"].as_str()),
        (Some("udp"), Some("A"))
    );
    assert_eq!(u["answers"][0]["data"], "10.1.1.1");
    let t = &dns_of(&r, tcp)[0]["dns"];
    assert_eq!(
        (t["transport"].as_str(), t["question"]["type"].as_str()),
        (Some("tcp"), Some("AAAA"))
    );
    assert_eq!(t["answers"][0]["data"], "fd00::1");
    assert!(t["latency_ns"].as_u64().unwrap() > 0);
}

/// A query with a long label, the shape of DNS tunnelling, raises exactly one
/// alert, naming the process that asked; an ordinary query raises none.
#[test]
fn a_dns_tunnel_pattern_raises_one_alert_naming_the_client() {
    let res = Resolver::start();
    let k = Ksight::start(&["--events", "dns"]);
    let label = "mzxw6ytboi4dqmrzgq2tmnzygezdgnbvgy3tqojqgeztenbwgq3dqnzzgiytc";
    let tunnel = res.raw_client(&format!("{label}.t.test"), 0);
    let plain = res.raw_client("a.test", 0);
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);
    let fired: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["type"] == "alert" && e["alert"]["rule"] == "dns_long_label")
        .collect();
    let mine: Vec<&&Value> = fired
        .iter()
        .filter(|a| a["process"]["pid"] == tunnel)
        .collect();
    assert_eq!(mine.len(), 1, "{fired:#?}");
    assert_eq!(
        mine[0]["alert"]["event"]["dns"]["question"]["name"],
        format!("{label}.t.test.")
    );
    assert!(fired.iter().all(|a| a["process"]["pid"] != plain));
}

/// `--getaddrinfo lazy` (the default): a process gets the probes once it has
/// sent a DNS query, so its later lookups are seen as the application saw
/// them; a process that never resolves gets none.
#[test]
fn lazy_getaddrinfo_probes_go_to_processes_that_resolve() {
    let res = Resolver::start();
    let k = Ksight::start(&["--events", "getaddrinfo"]);
    let mut quiet = Command::new("/bin/sleep").arg("1").spawn().unwrap();
    // one process, a lookup every 20 ms for a second and a half
    let n = 75;
    let (pid, st) = run(Command::new("ip").args([
        "netns",
        "exec",
        &res.ns.0,
        KSIGHT,
        "bench",
        "workload",
        "gai",
        "--count",
        &n.to_string(),
        "--name",
        "a.test",
        "--pause-ms",
        "20",
    ]));
    assert!(st.success());
    let _ = quiet.wait();
    let r = k.stop();
    assert!(
        r.stderr
            .contains(&format!("getaddrinfo probes for pid {pid}")),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains(&format!("pid {}", quiet.id())),
        "{}",
        r.stderr
    );
    let seen = r.of("getaddrinfo", pid);
    assert!(
        !seen.is_empty() && seen.len() < n,
        "the first lookups before the probes, then the rest: {}",
        seen.len()
    );
    assert!(seen.iter().all(|e| e["getaddrinfo"]["name"] == "a.test"));
    let addrs = seen[0]["getaddrinfo"]["addresses"].as_array().unwrap();
    assert!(addrs.iter().any(|a| a == "10.1.1.1"), "{addrs:?}");
    // asked for getaddrinfo only: the DNS packets that placed the probes are not shown
    assert!(r.events.iter().all(|e| e["type"] != "dns"));
}

#[test]
fn a_getaddrinfo_call_still_waiting_at_stop_is_reported_pending() {
    // a resolver that never answers: getent waits (up to 5 s) in getaddrinfo
    let ns = Netns::new("gaiwait");
    ns.resolv_conf("nameserver 127.0.0.67\noptions attempts:1 timeout:5\n");
    // it receives the queries (no ICMP refusal ends the wait) and never answers
    let path = format!("/var/run/netns/{}", ns.0);
    let silent = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path).unwrap();
        // SAFETY: setns on this short-lived thread; the socket made here
        // stays in the namespace after the thread ends.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        UdpSocket::bind("127.0.0.67:53").unwrap()
    })
    .join()
    .unwrap();
    let k = Ksight::start(&["--events", "getaddrinfo", "--getaddrinfo", "all"]);
    let mut child = ns
        .exec({
            let mut c = Command::new("getent");
            c.args(["ahosts", "slow.test"]);
            c
        })
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let r = k.stop();
    let _ = (child.kill(), child.wait());
    drop(silent);
    let calls: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["type"] == "getaddrinfo" && e["getaddrinfo"]["name"] == "slow.test")
        .collect();
    assert_eq!(calls.len(), 1, "{calls:#?}\n{}", r.stderr);
    let g = calls[0];
    assert_eq!(g["getaddrinfo"]["result"], "pending", "{g:#}");
    assert_eq!(g["process"]["comm"], "getent", "{g:#}");
    assert!(
        g["getaddrinfo"]["latency_ns"].as_u64().unwrap() >= 500_000_000,
        "{g:#}"
    );
    // counted in the summary (other tests' processes may add theirs)
    assert!(
        r.stderr.contains(" getaddrinfo calls had not returned"),
        "{}",
        r.stderr
    );
}
