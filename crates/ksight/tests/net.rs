//! TCP events from the real kernel: the test owns its traffic (loopback, or
//! network namespaces it creates and removes) and its processes, and asserts
//! on the events ksight wrote for them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const NET_EVENTS: &str = "connect,accept,listen,tcp_close";

/// Not a test: a network peer in its own process, so that each end of a
/// connection has its own pid. KSIGHT_NET_HELPER picks the role:
/// - `client`: connect to KS_ADDR, send KS_SEND bytes, read until EOF;
/// - `server`: listen on KS_ADDR, say "ready", accept once, read KS_SEND bytes,
///   write KS_RECV bytes, close;
/// - `timeout`: connect to KS_ADDR with one SYN retry and expect ETIMEDOUT.
#[test]
#[ignore = "helper process for the network tests"]
fn helper_net() {
    let role = std::env::var("KSIGHT_NET_HELPER").unwrap();
    let addr: SocketAddr = std::env::var("KS_ADDR").unwrap().parse().unwrap();
    let send: usize = std::env::var("KS_SEND").map_or(0, |v| v.parse().unwrap());
    let recv: usize = std::env::var("KS_RECV").map_or(0, |v| v.parse().unwrap());
    match role.as_str() {
        "client" => {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&vec![b'c'; send]).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            assert_eq!(got.len(), recv);
        }
        "server" => {
            let l = TcpListener::bind(addr).unwrap();
            // straight to the fd: the test harness captures println!
            let line = format!("ready {}\n", l.local_addr().unwrap().port());
            std::io::stdout().write_all(line.as_bytes()).unwrap();
            std::io::stdout().flush().unwrap();
            let (mut s, _) = l.accept().unwrap();
            let mut got = vec![0; send];
            s.read_exact(&mut got).unwrap();
            s.write_all(&vec![b's'; recv]).unwrap();
        }
        "timeout" => {
            let err = connect_with(addr, |fd| {
                let one: libc::c_int = 1;
                // SAFETY: setsockopt on our own socket with a valid int option.
                unsafe {
                    libc::setsockopt(
                        fd,
                        libc::IPPROTO_TCP,
                        libc::TCP_SYNCNT,
                        (&one as *const libc::c_int).cast(),
                        4,
                    )
                };
            });
            assert_eq!(err, libc::ETIMEDOUT);
        }
        r => panic!("unknown role {r}"),
    }
}

fn sockaddr_in(v4: std::net::SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A blocking connect through libc, after `setup(fd)`: returns 0 or the errno.
fn connect_with(addr: SocketAddr, setup: impl FnOnce(i32)) -> i32 {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    // SAFETY: plain socket calls on a socket this function owns and closes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        setup(fd);
        let sa = sockaddr_in(v4);
        let rc = libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), 16);
        let err = if rc == 0 {
            0
        } else {
            *libc::__errno_location()
        };
        libc::close(fd);
        err
    }
}

fn helper(role: &str, addr: &str, send: usize, recv: usize) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--ignored",
        "--exact",
        "helper_net",
        "--test-threads",
        "1",
        "--nocapture",
    ])
    .env("KSIGHT_NET_HELPER", role)
    .env("KS_ADDR", addr)
    .env("KS_SEND", send.to_string())
    .env("KS_RECV", recv.to_string());
    c
}

/// The one event of `kind` whose socket has this local or remote port on `side`.
fn by_port<'a>(r: &'a Run, kind: &str, side: &str, port: u16) -> Vec<&'a Value> {
    r.events
        .iter()
        .filter(|e| e["type"] == kind && e["net"][side]["port"] == port)
        .collect()
}

fn one<'a>(found: Vec<&'a Value>, what: &str) -> &'a Value {
    assert_eq!(found.len(), 1, "{what}: {found:#?}");
    found[0]
}

#[test]
fn loopback_v4_and_v6_connections_report_exact_bytes_duration_and_both_pids() {
    let k = Ksight::start(&["--events", NET_EVENTS]);
    let me = std::process::id();
    let mut cases = Vec::new();
    for (host, send, recv) in [("127.0.0.1", 12_345, 67_890), ("::1", 777, 100_000)] {
        let listener = TcpListener::bind((host, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = vec![0; send];
            s.read_exact(&mut got).unwrap();
            s.write_all(&vec![b's'; recv]).unwrap();
        });
        let addr = SocketAddr::new(host.parse().unwrap(), port).to_string();
        let (client, status) = run(&mut helper("client", &addr, send, recv));
        assert!(status.success());
        server.join().unwrap();
        cases.push((host, port, client, send, recv));
    }
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);

    for (host, port, client, send, recv) in cases {
        let family = if host.contains(':') { "ipv6" } else { "ipv4" };
        let listen = one(by_port(&r, "listen", "local", port), "listen");
        assert_eq!(listen["process"]["pid"], me);
        assert_eq!(listen["net"]["local"]["addr"], host);
        assert_eq!(listen["net"]["family"], family);

        let connect = one(by_port(&r, "connect", "remote", port), "connect");
        assert_eq!(connect["process"]["pid"], client);
        assert_eq!(connect["connect"]["result"], "success");
        assert_eq!(connect["net"]["remote"]["addr"], host);
        let cport = connect["net"]["local"]["port"].as_u64().unwrap() as u16;
        assert_ne!(cport, 0);

        let accept = one(by_port(&r, "accept", "remote", cport), "accept");
        assert_eq!(accept["process"]["pid"], me, "the listener's owner accepts");
        assert_eq!(accept["net"]["local"]["port"], port);
        // with an accept() hook (fexit, kretprobe) the acceptor is named and the
        // time it waited in the queue known; without, the listener's owner
        if r.stderr.contains("(accept() via ") {
            assert_eq!(accept["accept"]["by"], "accept");
            assert!(accept["accept"]["queued_ns"].is_u64(), "{accept}");
        } else {
            assert_eq!(accept["accept"]["by"], "listener");
            assert!(accept["accept"]["queued_ns"].is_null(), "{accept}");
        }

        let out = one(by_port(&r, "tcp_close", "local", cport), "client close");
        assert_eq!(out["process"]["pid"], client);
        assert_eq!(out["tcp"]["direction"], "out");
        assert_eq!(out["tcp"]["bytes_sent"], send);
        assert_eq!(out["tcp"]["bytes_received"], recv);
        assert_eq!(out["net"]["sock"], connect["net"]["sock"]);
        assert!(out["tcp"]["duration_ns"].as_u64().unwrap() > 0);

        let inb = one(by_port(&r, "tcp_close", "remote", cport), "server close");
        assert_eq!(inb["process"]["pid"], me);
        assert_eq!(inb["tcp"]["direction"], "in");
        assert_eq!(inb["tcp"]["bytes_sent"], recv);
        assert_eq!(inb["tcp"]["bytes_received"], send);
        assert_eq!(inb["net"]["sock"], accept["net"]["sock"]);
        // order: connect before its close, accept before its close
        assert!(r.index(connect) < r.index(out) && r.index(accept) < r.index(inb));
    }
}

#[test]
fn refused_and_non_blocking_connects_report_their_outcome() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead: SocketAddr = closed.local_addr().unwrap();
    drop(closed);
    let live = TcpListener::bind("127.0.0.1:0").unwrap();
    let live_addr = live.local_addr().unwrap();

    let k = Ksight::start(&["--events", "connect"]);
    assert_eq!(connect_with(dead, |_| {}), libc::ECONNREFUSED);
    // non-blocking: EINPROGRESS, then the outcome
    let SocketAddr::V4(v4) = live_addr else {
        unreachable!()
    };
    // SAFETY: a socket this test owns; poll waits for it to become writable.
    let (rc, so_error) = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        let sa = sockaddr_in(v4);
        let rc = libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), 16);
        let errno = *libc::__errno_location();
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        libc::poll(&mut pfd, 1, 5000);
        let mut err: libc::c_int = -1;
        let mut len: libc::socklen_t = 4;
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        );
        libc::close(fd);
        ((rc, errno), err)
    };
    assert_eq!(rc, (-1, libc::EINPROGRESS));
    assert_eq!(so_error, 0);
    let _ = live.accept();
    let r = k.stop();

    let refused = one(by_port(&r, "connect", "remote", dead.port()), "refused");
    assert_eq!(refused["connect"]["result"], "refused");
    assert_eq!(refused["connect"]["error"], "ECONNREFUSED");
    assert_eq!(refused["process"]["pid"], std::process::id());
    let ok = one(
        by_port(&r, "connect", "remote", live_addr.port()),
        "non-blocking",
    );
    assert_eq!(ok["connect"]["result"], "success");
    assert_eq!(ok["process"]["pid"], std::process::id());
}

/// Two namespaces of the test's own joined by a veth pair: `<net>.1` in the
/// first, `<net>.2` in the second.
fn joined(ta: &str, tb: &str, net: &str) -> (Netns, Netns) {
    let a = Netns::new(ta);
    let b = Netns::new(tb);
    let id = std::process::id() % 100_000;
    let (va, vb) = (format!("ks{ta}{id}"), format!("ks{tb}{id}"));
    ip(&[
        "-n", &a.0, "link", "add", &va, "type", "veth", "peer", "name", &vb, "netns", &b.0,
    ])
    .unwrap();
    ip(&[
        "-n",
        &a.0,
        "addr",
        "add",
        &format!("{net}.1/24"),
        "dev",
        &va,
    ])
    .unwrap();
    ip(&[
        "-n",
        &b.0,
        "addr",
        "add",
        &format!("{net}.2/24"),
        "dev",
        &vb,
    ])
    .unwrap();
    ip(&["-n", &a.0, "link", "set", &va, "up"]).unwrap();
    ip(&["-n", &b.0, "link", "set", &vb, "up"]).unwrap();
    (a, b)
}

/// Run a server helper in `ns` and a client helper in `client_ns`; returns their pids.
fn serve_once(ns: &Netns, client_ns: &Netns, addr: &str) -> (u32, u32) {
    let mut server = ns
        .exec(helper("server", addr, 10, 20))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = server.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines().map_while(Result::ok);
        let _ = tx.send(lines.any(|l| l.contains("ready ")));
        lines.for_each(drop);
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)),
        Ok(true),
        "server helper"
    );
    let (client, st) = run(&mut client_ns.exec(helper("client", addr, 10, 20)));
    assert!(st.success());
    assert!(wait_timeout(&mut server, Duration::from_secs(10)).success());
    (server.id(), client)
}

#[test]
fn port_and_loopback_filters_apply_in_the_kernel() {
    // --port: only the chosen port's connection
    let wanted = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let (wp, op) = (
        wanted.local_addr().unwrap().port(),
        other.local_addr().unwrap().port(),
    );
    let k = Ksight::start(&[
        "--events",
        NET_EVENTS,
        "--port",
        &wp.to_string(),
        "--no-rules",
    ]);
    let l1 = TcpListener::bind("127.0.0.1:0").unwrap(); // a listener on another port
    drop(TcpStream::connect(("127.0.0.1", wp)).unwrap());
    drop(TcpStream::connect(("127.0.0.1", op)).unwrap());
    drop(wanted.accept().unwrap());
    drop(other.accept().unwrap());
    std::thread::sleep(Duration::from_millis(50));
    let r = k.stop();
    drop(l1);
    assert!(!r.events.is_empty());
    for e in r.events.iter().filter(|e| e["type"] != "lost") {
        let ports = [&e["net"]["local"]["port"], &e["net"]["remote"]["port"]];
        assert!(ports.contains(&&Value::from(wp)), "only port {wp}: {e}");
    }
    assert_eq!(by_port(&r, "connect", "remote", wp).len(), 1);

    // --no-loopback: the loopback exchange disappears, the veth one stays
    let (a, b) = joined("la", "lb", "10.214.0");
    let k = Ksight::start(&[
        "--events",
        "connect,accept,tcp_close,udp",
        "--no-loopback",
        "--no-rules",
    ]);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    drop(TcpStream::connect(l.local_addr().unwrap()).unwrap());
    drop(l.accept().unwrap());
    let (ua, _) = udp_exchange("127.0.0.1", (2, 10), (2, 10));
    let (server, client) = serve_once(&b, &a, "10.214.0.2:7071");
    let r = k.stop();
    for e in r.events.iter().filter(|e| e["type"] != "lost") {
        let remote = e["net"]["remote"]["addr"].as_str().unwrap();
        assert!(
            !remote.starts_with("127.") && remote != "::1",
            "loopback kept: {e}"
        );
    }
    assert!(udp_flows(&r, ua).is_empty());
    assert_eq!(r.of("connect", client).len(), 1);
    assert_eq!(r.of("accept", server).len(), 1);
}

#[test]
fn a_connect_to_an_unrouted_address_times_out() {
    // inside a namespace of our own, 192.0.2.2 is reached over a veth pair
    // through a neighbour entry naming a MAC nobody has: the peer end drops
    // every SYN, nothing leaves the namespace, the connect times out
    let ns = Netns::new("timeout");
    ip(&[
        "-n", &ns.0, "link", "add", "kst0", "type", "veth", "peer", "name", "kst1",
    ])
    .unwrap();
    ip(&["-n", &ns.0, "addr", "add", "192.0.2.1/24", "dev", "kst0"]).unwrap();
    ip(&["-n", &ns.0, "link", "set", "kst0", "up"]).unwrap();
    ip(&["-n", &ns.0, "link", "set", "kst1", "up"]).unwrap();
    ip(&[
        "-n",
        &ns.0,
        "neigh",
        "add",
        "192.0.2.2",
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "kst0",
        "nud",
        "permanent",
    ])
    .unwrap();
    let k = Ksight::start(&["--events", "connect"]);
    let (pid, status) = run(&mut ns.exec(helper("timeout", "192.0.2.2:9", 0, 0)));
    assert!(status.success(), "the helper saw ETIMEDOUT");
    let r = k.stop();
    let connects: Vec<&Value> = r.events.iter().filter(|e| e["type"] == "connect").collect();
    assert_eq!(
        r.of("connect", pid).len(),
        1,
        "one connect of pid {pid}; all connects: {connects:#?}\n{}",
        r.stderr
    );
    let c = one(r.of("connect", pid), "timed-out connect");
    assert_eq!(c["connect"]["result"], "timeout");
    assert_eq!(c["connect"]["error"], "ETIMEDOUT");
    assert_eq!(c["net"]["remote"]["addr"], "192.0.2.2");
    assert_eq!(c["net"]["netns"], ns.inode());
    assert!(
        c["connect"]["latency_ns"].as_u64().unwrap() >= 1_000_000_000,
        "at least one SYN retry"
    );
}

#[test]
fn two_namespaces_joined_by_a_veth_pair_carry_their_own_netns_and_addresses() {
    let (a, b) = joined("a", "b", "10.213.0");
    let k = Ksight::start(&["--events", NET_EVENTS]);
    let mut server = b
        .exec(helper("server", "10.213.0.2:7070", 3000, 4000))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // the test harness prints its own text around it; never wait forever
    let out = server.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines().map_while(Result::ok);
        let ready = lines.any(|l| l.contains("ready "));
        let _ = tx.send(ready);
        lines.for_each(drop); // keep reading: a closed pipe would fail the helper
    });
    if rx.recv_timeout(Duration::from_secs(20)) != Ok(true) {
        let _ = server.kill();
        panic!("the server helper did not start");
    }
    let (client, status) = run(&mut a.exec(helper("client", "10.213.0.2:7070", 3000, 4000)));
    assert!(status.success());
    assert!(wait_timeout(&mut server, Duration::from_secs(10)).success());
    let r = k.stop();

    let listen = one(r.of("listen", server.id()), "listen");
    assert_eq!(listen["net"]["netns"], b.inode());
    let connect = one(r.of("connect", client), "connect");
    assert_eq!(connect["net"]["netns"], a.inode());
    assert_eq!(connect["net"]["local"]["addr"], "10.213.0.1");
    assert_eq!(connect["net"]["remote"]["addr"], "10.213.0.2");
    let accept = one(r.of("accept", server.id()), "accept");
    assert_eq!(accept["net"]["netns"], b.inode());
    assert_eq!(accept["net"]["remote"]["addr"], "10.213.0.1");
    let closes = r.of("tcp_close", client);
    let out = one(closes, "client close");
    assert_eq!(
        (
            out["tcp"]["bytes_sent"].as_u64(),
            out["tcp"]["bytes_received"].as_u64()
        ),
        (Some(3000), Some(4000))
    );
    let inb = one(r.of("tcp_close", server.id()), "server close");
    assert_eq!(inb["net"]["netns"], b.inode());
    assert_eq!(
        (
            inb["tcp"]["bytes_sent"].as_u64(),
            inb["tcp"]["bytes_received"].as_u64()
        ),
        (Some(4000), Some(3000))
    );
}

#[test]
fn tcp_state_transitions_are_opt_in() {
    // (alerts pass an --events filter; these tests are about the filters alone)
    let k = Ksight::start(&["--events", "tcp_state", "--no-rules"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (s, _) = listener.accept().unwrap();
    c.write_all(b"x").unwrap();
    drop(c);
    drop(s);
    std::thread::sleep(Duration::from_millis(50));
    let r = k.stop();
    assert!(r
        .events
        .iter()
        .all(|e| e["type"] == "tcp_state" || e["type"] == "lost"));
    let client: Vec<(&str, &str)> = r
        .events
        .iter()
        .filter(|e| e["net"]["remote"]["port"] == port && e["process"]["pid"] == std::process::id())
        .map(|e| {
            (
                e["state"]["old"].as_str().unwrap(),
                e["state"]["new"].as_str().unwrap(),
            )
        })
        .collect();
    let all_of_port: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["net"]["remote"]["port"] == port || e["net"]["local"]["port"] == port)
        .collect();
    assert!(
        client.len() >= 4,
        "{client:?}\nevery event of the port: {all_of_port:#?}\nstderr: {}",
        r.stderr
    );
    assert_eq!(client[0], ("CLOSE", "SYN_SENT"));
    assert_eq!(client[1], ("SYN_SENT", "ESTABLISHED"));
    assert_eq!(client.last().unwrap().1, "CLOSE");
    let timed = r
        .events
        .iter()
        .filter(|e| e["net"]["remote"]["port"] == port && e["state"]["old"] == "ESTABLISHED")
        .count();
    assert_eq!(timed, 1, "the client leaves ESTABLISHED once");

    // not asked for: none
    let k = Ksight::start(&["--events", "connect"]);
    drop(TcpStream::connect(("127.0.0.1", port)));
    let r = k.stop();
    assert!(r.events.iter().all(|e| e["type"] != "tcp_state"));
}

/// Datagrams of known size each way between two sockets of this process.
fn udp_exchange(host: &str, out: (usize, usize), back: (usize, usize)) -> (SocketAddr, SocketAddr) {
    let a = std::net::UdpSocket::bind((host, 0)).unwrap();
    let b = std::net::UdpSocket::bind((host, 0)).unwrap();
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    a.connect(ba).unwrap(); // a connected socket: send(), not sendto()
    let mut buf = [0u8; 2048];
    for _ in 0..out.0 {
        a.send(&vec![1u8; out.1]).unwrap();
        assert_eq!(b.recv_from(&mut buf).unwrap().0, out.1);
    }
    for _ in 0..back.0 {
        b.send_to(&vec![2u8; back.1], aa).unwrap();
        assert_eq!(a.recv(&mut buf).unwrap(), back.1);
    }
    (aa, ba)
}

fn udp_flows(r: &Run, local: SocketAddr) -> Vec<&Value> {
    r.events
        .iter()
        .filter(|e| {
            e["type"] == "udp"
                && e["net"]["local"]["port"] == local.port()
                && e["net"]["local"]["addr"] == local.ip().to_string()
        })
        .collect()
}

#[test]
fn udp_datagrams_are_counted_per_flow_exactly_in_v4_and_v6() {
    let k = Ksight::start(&["--events", "udp"]);
    let v4 = udp_exchange("127.0.0.1", (7, 123), (4, 321));
    let v6 = udp_exchange("::1", (3, 1000), (9, 10));
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);
    for ((a, b), (out, back)) in [
        (v4, ((7u64, 123u64), (4u64, 321u64))),
        (v6, ((3, 1000), (9, 10))),
    ] {
        let fa = udp_flows(&r, a);
        assert_eq!(
            fa.len(),
            1,
            "one flow record per (socket, remote), not one per datagram: {fa:#?}"
        );
        let fa = fa[0];
        assert_eq!(fa["udp"]["final"], true);
        assert_eq!(fa["process"]["pid"], std::process::id());
        assert_eq!(fa["net"]["protocol"], "udp");
        assert_eq!(fa["net"]["remote"]["port"], b.port());
        assert_eq!(fa["udp"]["packets_sent"], out.0);
        assert_eq!(fa["udp"]["bytes_sent"], out.0 * out.1);
        assert_eq!(fa["udp"]["packets_received"], back.0);
        assert_eq!(fa["udp"]["bytes_received"], back.0 * back.1);
        let fb = one(udp_flows(&r, b), "the other end");
        assert_eq!(fb["udp"]["packets_sent"], back.0);
        assert_eq!(fb["udp"]["bytes_received"], out.0 * out.1);
        assert_eq!(fb["net"]["remote"]["port"], a.port());
    }
}

#[test]
fn long_lived_udp_flows_are_reported_while_open() {
    let k = Ksight::start(&["--events", "udp", "--udp-interval", "200ms"]);
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    a.send_to(&[0; 10], ba).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    a.send_to(&[0; 20], ba).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    drop(a);
    drop(b);
    let r = k.stop();
    let flows = udp_flows(&r, aa);
    let open: Vec<_> = flows
        .iter()
        .filter(|f| f["udp"]["final"] == false)
        .collect();
    assert!(
        open.len() >= 2,
        "reported while open, once per change: {flows:#?}"
    );
    assert_eq!(open[0]["udp"]["bytes_sent"], 10);
    let last = flows.last().unwrap();
    assert_eq!(last["udp"]["final"], true);
    assert_eq!(last["udp"]["bytes_sent"], 30);
    assert_eq!(last["udp"]["packets_sent"], 2);
}

/// A TCP socket bound to `addr` with SO_REUSEADDR, not yet listening.
fn bound(addr: std::net::SocketAddrV4) -> i32 {
    // SAFETY: plain socket calls on a new socket, owned by the caller.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            4,
        );
        let sa = sockaddr_in(addr);
        assert_eq!(
            libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), 16),
            0
        );
        fd
    }
}

#[test]
fn other_sockets_on_a_listening_port_do_not_hide_its_connections() {
    // the listener table is keyed by port: a listen() that fails with
    // EADDRINUSE, and a second listener on another address of the same port
    // that closes, must not make ksight forget the live listener
    let k = Ksight::start(&["--events", NET_EVENTS]);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let live = bound(format!("127.0.0.1:{port}").parse().unwrap());
    let busy = bound(format!("127.0.0.1:{port}").parse().unwrap());
    let other = bound(format!("127.0.0.2:{port}").parse().unwrap());
    // SAFETY: listen/close on the sockets made above.
    unsafe {
        assert_eq!(libc::listen(live, 8), 0);
        assert_eq!(libc::listen(busy, 8), -1, "the port is taken");
        assert_eq!(libc::listen(other, 8), 0);
        libc::close(busy);
        libc::close(other);
    }
    // SAFETY: `live` is a listening socket this test owns.
    let listener = unsafe { <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(live) };
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (served, _) = listener.accept().unwrap();
    drop((client, served));
    std::thread::sleep(Duration::from_millis(100));
    let r = k.stop();
    let me = std::process::id();
    let accepts: Vec<&Value> = by_port(&r, "accept", "local", port);
    assert_eq!(accepts.len(), 1, "{:#?}", r.events);
    assert_eq!(accepts[0]["process"]["pid"], me);
    let closes: Vec<&Value> = by_port(&r, "tcp_close", "local", port);
    assert_eq!(closes.len(), 1, "the served end's close");
    assert_eq!(closes[0]["tcp"]["direction"], "in");
}

#[test]
fn a_listener_older_than_ksight_has_its_owner_from_procfs() {
    // listening before ksight starts: no hook saw its listen()
    let old = TcpListener::bind("127.0.0.1:0").unwrap();
    let old_port = old.local_addr().unwrap().port();
    let k = Ksight::start(&["--events", "accept,listen,tcp_close", "--no-rules"]);
    assert!(
        !k.stderr_so_far().contains(" 0 TCP listeners,"),
        "{}",
        k.stderr_so_far()
    );
    let new = TcpListener::bind("127.0.0.1:0").unwrap();
    let new_port = new.local_addr().unwrap().port();
    for (l, port) in [(&old, old_port), (&new, new_port)] {
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (s, _) = l.accept().unwrap();
        drop(c);
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(100));
    let r = k.stop();
    let accepted = |port: u16| -> Vec<&Value> {
        r.events
            .iter()
            .filter(|e| e["type"] == "accept" && e["net"]["local"]["port"] == port)
            .collect()
    };
    let a = accepted(old_port);
    assert_eq!(a.len(), 1, "{:#?}\n{}", r.events, r.stderr);
    assert_eq!(a[0]["process"]["pid"], std::process::id());
    assert_eq!(a[0]["net"]["owner_source"], "procfs");
    assert_eq!(a[0]["accept"]["by"], "listener");
    // its close carries the same owner and source
    let closes: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["type"] == "tcp_close" && e["net"]["local"]["port"] == old_port)
        .collect();
    assert_eq!(closes.len(), 1, "{closes:#?}");
    assert_eq!(closes[0]["process"]["pid"], std::process::id());
    assert_eq!(closes[0]["net"]["owner_source"], "procfs");
    // a listener the hooks saw: the kernel named its owner
    let b = accepted(new_port);
    assert_eq!(b.len(), 1, "{:#?}", r.events);
    assert_eq!(b[0]["process"]["pid"], std::process::id());
    assert!(b[0]["net"].get("owner_source").is_none(), "{:#}", b[0]);
    // the same process, whether /proc or the kernel named it (not `comm`:
    // /proc names the process, the kernel the thread that called listen())
    for field in [
        "exec_id",
        "uid",
        "euid",
        "cgroup",
        "cgroup_id",
        "pidns",
        "ns_pid",
    ] {
        assert_eq!(
            a[0]["process"][field], b[0]["process"][field],
            "{field}: {:#} vs {:#}",
            a[0]["process"], b[0]["process"]
        );
    }
}

#[test]
fn connections_and_udp_sockets_older_than_ksight_have_their_owner_from_procfs() {
    use std::net::UdpSocket;
    // a connection established, with bytes both ways, before ksight starts
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut s, _) = l.accept().unwrap();
    let mut buf = vec![0u8; 1000];
    c.write_all(&[1; 100]).unwrap();
    s.read_exact(&mut buf[..100]).unwrap();
    let client_port = c.local_addr().unwrap().port();
    // a UDP socket that only ever receives: no datagram of its own names it
    let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
    let k = Ksight::start(&["--events", "tcp_close,udp", "--no-rules"]);
    let started = k.stderr_so_far();
    assert!(
        !started.contains(" 0 TCP connections") && !started.contains(" 0 UDP sockets"),
        "{started}"
    );
    c.write_all(&[2; 1000]).unwrap();
    s.read_exact(&mut buf).unwrap();
    s.write_all(&[3; 10]).unwrap();
    c.read_exact(&mut buf[..10]).unwrap();
    drop(c);
    drop(s);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(b"hello", quiet.local_addr().unwrap()).unwrap();
    quiet.recv(&mut buf).unwrap();
    let quiet_addr = quiet.local_addr().unwrap();
    drop(quiet);
    std::thread::sleep(Duration::from_millis(200));
    let r = k.stop();
    let me = std::process::id();
    // both ends' closes: the owner from /proc, the bytes of the whole
    // connection (the kernel's counters began with it), no start time
    for (local, direction, sent, received) in
        [(client_port, "out", 1100, 10), (port, "in", 10, 1100)]
    {
        let close = one(by_port(&r, "tcp_close", "local", local), "a close");
        assert_eq!(close["process"]["pid"], me, "{close:#}");
        assert_eq!(close["net"]["owner_source"], "procfs", "{close:#}");
        assert_eq!(close["tcp"]["direction"], direction, "{close:#}");
        assert_eq!(close["tcp"]["bytes_sent"], sent, "{close:#}");
        assert_eq!(close["tcp"]["bytes_received"], received, "{close:#}");
        assert!(close["tcp"]["start_time"].is_null(), "{close:#}");
    }
    let flows: Vec<&Value> = udp_flows(&r, quiet_addr)
        .into_iter()
        .filter(|f| f["udp"]["final"] == true)
        .collect();
    let flow = one(flows, "the quiet socket's final flow");
    assert_eq!(flow["process"]["pid"], me, "{flow:#}");
    assert_eq!(flow["net"]["owner_source"], "procfs", "{flow:#}");
    assert_eq!(flow["udp"]["packets_received"], 1, "{flow:#}");
    // the peer's socket was made under ksight: the kernel named its owner
    let peer_flows = udp_flows(&r, peer.local_addr().unwrap());
    assert!(!peer_flows.is_empty(), "{:#?}", r.events);
    for f in peer_flows {
        assert_eq!(f["process"]["pid"], me);
        assert!(f["net"].get("owner_source").is_none(), "{f:#}");
    }
}
