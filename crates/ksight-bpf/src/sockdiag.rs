//! The kernel's own list of open TCP and UDP sockets (NETLINK_SOCK_DIAG,
//! the interface `ss` uses): addresses, state, inode and, what /proc/net
//! does not give, the socket cookie, the key ksight's BPF tables use.
//!
//! Read once at start, for sockets older than ksight: their owners come from
//! /proc (the process holding the inode), and userspace writes them into the
//! kernel's tables so the hooks can attribute what those sockets do later.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use ksight_core::procfs::{ProcFs, SocketHolders};

/// One socket, as inet_diag_msg describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagSocket {
    /// IPPROTO_TCP (6) or IPPROTO_UDP (17).
    pub protocol: u8,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// TCP_* state (UDP: 7 unconnected, 1 connected).
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub cookie: u64,
    /// 0 for sockets without a file (TIME_WAIT, request sockets).
    pub inode: u64,
}

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const TCP_LISTEN: u8 = 10;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDR: usize = 16;
/// inet_diag_msg: family, state, timer, retrans, inet_diag_sockid (48 bytes),
/// expires, rqueue, wqueue, uid, inode.
const DIAG_MSG: usize = 72;

/// Every TCP and UDP socket (IPv4 and IPv6) of the calling thread's network
/// namespace. A protocol the kernel cannot list (udp_diag not built) is an
/// error for that protocol only: its sockets are missing from the result,
/// and the error is returned beside them.
pub fn dump_all() -> (Vec<DiagSocket>, Vec<io::Error>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for protocol in [IPPROTO_TCP, IPPROTO_UDP] {
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            match dump(family, protocol) {
                Ok(mut v) => out.append(&mut v),
                Err(e) => errors.push(io::Error::new(
                    e.kind(),
                    format!(
                        "sock_diag {} {}: {e}",
                        if protocol == IPPROTO_TCP {
                            "tcp"
                        } else {
                            "udp"
                        },
                        if family == libc::AF_INET as u8 {
                            "ipv4"
                        } else {
                            "ipv6"
                        }
                    ),
                )),
            }
        }
    }
    (out, errors)
}

/// `dump_all` in the network namespace `ns` (a `/proc/PID/ns/net` path): on a
/// thread of its own that joins it (setns) and ends after.
pub fn dump_all_in(ns: &Path) -> io::Result<(Vec<DiagSocket>, Vec<io::Error>)> {
    let file = std::fs::File::open(ns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread only; the fd is valid for the call.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(dump_all())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("sock_diag thread panicked")))
    })
}

/// TCP connections and UDP sockets open now in each network namespace
/// (sock_diag, through a thread that joins the namespace), with their
/// holders; listeners and sockets without a holder are left out. What
/// could not be read is returned as text beside them.
pub fn old_sockets(procfs: &ProcFs, holders: &SocketHolders) -> (Vec<OldSocket>, Vec<String>) {
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    for (&netns, &first) in &holders.netns {
        let path = procfs.root().join(first.to_string()).join("ns/net");
        let (socks, errs) = match dump_all_in(&path) {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("network namespace {netns}: {e}"));
                continue;
            }
        };
        errors.extend(
            errs.iter()
                .map(|e| format!("network namespace {netns}: {e}")),
        );
        for sock in socks {
            if sock.protocol == IPPROTO_TCP && sock.state == TCP_LISTEN {
                continue;
            }
            if let Some(&pid) = holders.by_inode.get(&sock.inode) {
                out.push(OldSocket { netns, sock, pid });
            }
        }
    }
    (out, errors)
}

/// A TCP connection or UDP socket older than the scan, and its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldSocket {
    pub netns: u32,
    pub sock: DiagSocket,
    /// The lowest pid holding it (a server's parent, whose workers inherited it).
    pub pid: u32,
}

/// One dump request: every socket of `family`/`protocol`, all states.
pub fn dump(family: u8, protocol: u8) -> io::Result<Vec<DiagSocket>> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let req = request(family, protocol);
    // SAFETY: req is a valid buffer of req.len() bytes; a zeroed
    // sockaddr_nl addresses the kernel.
    let sent = unsafe {
        let mut sa: libc::sockaddr_nl = std::mem::zeroed();
        sa.nl_family = libc::AF_NETLINK as u16;
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is writable for buf.len() bytes.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(out);
        }
        match parse(&buf[..n as usize], protocol, &mut out)? {
            Parsed::More => {}
            Parsed::Done => return Ok(out),
        }
    }
}

fn request(family: u8, protocol: u8) -> Vec<u8> {
    let len = NLMSG_HDR + 56;
    let mut r = Vec::with_capacity(len);
    r.extend_from_slice(&(len as u32).to_ne_bytes());
    r.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r.extend_from_slice(&1u32.to_ne_bytes()); // seq
    r.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
                                              // inet_diag_req_v2: family, protocol, ext, pad, states, sockid (zero: any)
    r.extend_from_slice(&[family, protocol, 0, 0]);
    r.extend_from_slice(&u32::MAX.to_ne_bytes());
    r.resize(len, 0);
    r
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    More,
    Done,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

/// The netlink messages of one datagram: sockets appended to `out`.
fn parse(mut b: &[u8], protocol: u8, out: &mut Vec<DiagSocket>) -> io::Result<Parsed> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {what}"));
    while b.len() >= NLMSG_HDR {
        let len = u32_at(b, 0) as usize;
        let kind = u16::from_ne_bytes([b[4], b[5]]);
        if len < NLMSG_HDR || len > b.len() {
            return Err(bad("a message's length runs past the datagram"));
        }
        let body = &b[NLMSG_HDR..len];
        match kind {
            NLMSG_DONE => return Ok(Parsed::Done),
            NLMSG_ERROR => {
                let errno = body
                    .get(..4)
                    .map(|e| i32::from_ne_bytes(e.try_into().unwrap()));
                return match errno {
                    Some(0) => Ok(Parsed::Done),
                    Some(e) => Err(io::Error::from_raw_os_error(-e)),
                    None => Err(bad("a short error message")),
                };
            }
            SOCK_DIAG_BY_FAMILY => {
                if body.len() < DIAG_MSG {
                    return Err(bad("a short inet_diag_msg"));
                }
                if let Some(s) = socket(body, protocol) {
                    out.push(s);
                }
            }
            _ => {}
        }
        // messages are 4-byte aligned
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
    }
    Ok(Parsed::More)
}

fn socket(m: &[u8], protocol: u8) -> Option<DiagSocket> {
    let family = m[0] as u16;
    let addr = |off: usize| -> Option<IpAddr> {
        match family {
            2 => Some(IpAddr::V4(Ipv4Addr::new(
                m[off],
                m[off + 1],
                m[off + 2],
                m[off + 3],
            ))),
            10 => Some(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&m[off..off + 16]).ok()?,
            ))),
            _ => None,
        }
    };
    // inet_diag_sockid at 4: sport, dport (big endian), src[16], dst[16], if, cookie[2]
    let sport = u16::from_be_bytes([m[4], m[5]]);
    let dport = u16::from_be_bytes([m[6], m[7]]);
    let cookie = u32_at(m, 44) as u64 | (u32_at(m, 48) as u64) << 32;
    Some(DiagSocket {
        protocol,
        family,
        state: m[1],
        local: SocketAddr::new(addr(8)?, sport),
        remote: SocketAddr::new(addr(24)?, dport),
        cookie,
        inode: u32_at(m, 68) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(family: u8, state: u8, sport: u16, dport: u16, cookie: u64, inode: u32) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDR + DIAG_MSG];
        m[..4].copy_from_slice(&((NLMSG_HDR + DIAG_MSG) as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        let b = &mut m[NLMSG_HDR..];
        b[0] = family;
        b[1] = state;
        b[4..6].copy_from_slice(&sport.to_be_bytes());
        b[6..8].copy_from_slice(&dport.to_be_bytes());
        b[8..12].copy_from_slice(&[127, 0, 0, 1]);
        b[24..28].copy_from_slice(&[10, 0, 0, 2]);
        b[44..48].copy_from_slice(&(cookie as u32).to_ne_bytes());
        b[48..52].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
        b[68..72].copy_from_slice(&inode.to_ne_bytes());
        m
    }

    #[test]
    fn parses_messages_and_done() {
        let mut dgram = message(2, 1, 40000, 53, 0x1_0000_0002, 777);
        dgram.extend(message(2, 10, 80, 0, 5, 778));
        let mut out = Vec::new();
        assert_eq!(parse(&dgram, IPPROTO_TCP, &mut out).unwrap(), Parsed::More);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(out[0].remote, "10.0.0.2:53".parse().unwrap());
        assert_eq!(out[0].cookie, 0x1_0000_0002);
        assert_eq!(out[0].inode, 777);
        assert_eq!(out[1].state, TCP_LISTEN);
        let mut done = vec![0u8; NLMSG_HDR + 4];
        done[..4].copy_from_slice(&((NLMSG_HDR + 4) as u32).to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert_eq!(parse(&done, IPPROTO_TCP, &mut out).unwrap(), Parsed::Done);
    }

    #[test]
    fn hostile_datagrams_are_errors_not_panics() {
        let mut out = Vec::new();
        // a length past the end, a length below the header, a short body
        let mut m = message(2, 1, 1, 2, 3, 4);
        m[..4].copy_from_slice(&9999u32.to_ne_bytes());
        assert!(parse(&m, IPPROTO_TCP, &mut out).is_err());
        m[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(parse(&m, IPPROTO_TCP, &mut out).is_err());
        m[..4].copy_from_slice(&((NLMSG_HDR + 10) as u32).to_ne_bytes());
        assert!(parse(&m, IPPROTO_TCP, &mut out).is_err());
        // an errno
        let mut e = vec![0u8; NLMSG_HDR + 4];
        e[..4].copy_from_slice(&((NLMSG_HDR + 4) as u32).to_ne_bytes());
        e[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        e[NLMSG_HDR..].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(
            parse(&e, IPPROTO_TCP, &mut out).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        // random bytes never panic
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20_000 {
            let len = (x % 200) as usize;
            let mut d = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                d.push(x as u8);
            }
            let _ = parse(&d, IPPROTO_UDP, &mut out);
        }
    }

    /// The real kernel lists a socket this test holds, with its inode.
    #[test]
    fn lists_a_real_socket() {
        use std::os::unix::fs::MetadataExt;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", l.as_raw_fd()))
            .unwrap()
            .ino();
        let socks = match dump(libc::AF_INET as u8, IPPROTO_TCP) {
            Ok(s) => s,
            // a sandbox without NETLINK_SOCK_DIAG
            Err(e) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) => return,
            Err(e) => panic!("{e}"),
        };
        let s = socks
            .iter()
            .find(|s| s.local.port() == port)
            .expect("our listener is listed");
        assert_eq!((s.state, s.inode), (TCP_LISTEN, inode));
        assert_ne!(s.cookie, 0);
    }
}
