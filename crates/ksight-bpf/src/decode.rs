//! The one decode boundary: ring-buffer bytes -> [`RawEvent`].
//!
//! Length-check, read the header, match its kind against the generated
//! constants, copy the body. Nothing here trusts the kernel's bytes: a short
//! record, an unknown kind, or lengths that overrun the record are a
//! [`DecodeError`] (counted by the caller), never a panic.

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, SocketAddr};

use ksight_core::event::Kind;
use ksight_core::raw::{
    Header, RawDns, RawEvent, RawExec, RawExit, RawFork, RawGai, RawTcp, RawUdpClose, RawUdpFlow,
    TaskFacts, TcpKind, Tuple,
};

use crate::wire::*;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{what}: record of {len} bytes, need {need}")]
    Short {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("record ABI version {got}, this ksight reads {want}")]
    Abi { got: u32, want: u32 },
    #[error("unknown address family {0}")]
    Family(u16),
    #[error("exec record: field lengths ({sum} bytes) overrun its data ({len} bytes)")]
    Overrun { sum: usize, len: usize },
}

fn copy<T: plain::Plain + Default>(
    buf: &[u8],
    off: usize,
    what: &'static str,
) -> Result<T, DecodeError> {
    let mut v = T::default();
    let short = DecodeError::Short {
        what,
        len: buf.len(),
        need: off + size_of::<T>(),
    };
    let bytes = buf.get(off..).ok_or(short.clone())?;
    plain::copy_from_bytes(&mut v, bytes).map_err(|_| short)?;
    Ok(v)
}

/// Decode one record.
pub fn decode(buf: &[u8]) -> Result<RawEvent, DecodeError> {
    let hdr: ks_event_hdr = copy(buf, 0, "header")?;
    if hdr.abi != ks_abi::KS_ABI_VERSION.0 {
        return Err(DecodeError::Abi {
            got: hdr.abi,
            want: ks_abi::KS_ABI_VERSION.0,
        });
    }
    // the kernel's size is authoritative when it is shorter than what we got
    let buf = &buf[..(hdr.size as usize).min(buf.len())];
    let header = Header {
        ktime_ns: hdr.ktime,
        seq: hdr.seq,
        cpu: hdr.cpu,
    };
    match ks_event_kind(hdr.kind) {
        ks_event_kind::KS_EVENT_EXEC => exec(buf, header).map(RawEvent::Exec),
        ks_event_kind::KS_EVENT_FORK => {
            let e: ks_fork_event = copy(buf, 0, "fork")?;
            Ok(RawEvent::Fork(RawFork {
                hdr: header,
                task: task(&e.task),
                child_pid: e.child_pid,
                child_tid: e.child_tid,
                child_start_ns: e.child_start_ns,
                child_pidns: e.child_pidns_ino,
                child_ns_pid: e.child_ns_pid,
                child_ns_tid: e.child_ns_tid,
                thread: e.flags & ks_fork_flags::KS_FORK_THREAD.0 != 0,
            }))
        }
        ks_event_kind::KS_EVENT_EXIT => {
            let e: ks_exit_event = copy(buf, 0, "exit")?;
            Ok(RawEvent::Exit(RawExit {
                hdr: header,
                task: task(&e.task),
                exit_code: e.exit_code,
                utime_ns: e.utime_ns,
                stime_ns: e.stime_ns,
                thread: e.flags & ks_exit_flags::KS_EXIT_THREAD.0 != 0,
            }))
        }
        k @ (ks_event_kind::KS_EVENT_CONNECT
        | ks_event_kind::KS_EVENT_ACCEPT
        | ks_event_kind::KS_EVENT_LISTEN
        | ks_event_kind::KS_EVENT_TCP_CLOSE
        | ks_event_kind::KS_EVENT_TCP_STATE) => {
            let e: ks_tcp_event = copy(buf, 0, "tcp")?;
            // each skeleton has its own copy of the shared types: read the
            // task through the one `task()` knows (same header, same layout)
            let owner: ks_task = copy(buf, offset_of!(ks_tcp_event, task), "tcp task")?;
            let kind = match k {
                ks_event_kind::KS_EVENT_CONNECT => TcpKind::Connect,
                ks_event_kind::KS_EVENT_ACCEPT => TcpKind::Accept,
                ks_event_kind::KS_EVENT_LISTEN => TcpKind::Listen,
                ks_event_kind::KS_EVENT_TCP_CLOSE => TcpKind::Close,
                _ => TcpKind::State,
            };
            let flag = |f: ks_net_flags| e.flags & f.0 != 0;
            Ok(RawEvent::Tcp(RawTcp {
                hdr: header,
                kind,
                owner: flag(ks_net_flags::KS_NET_OWNER).then(|| task(&owner)),
                tuple: tuple(&e.tuple)?,
                sock: e.sock,
                outbound: flag(ks_net_flags::KS_NET_OUTBOUND),
                inbound: flag(ks_net_flags::KS_NET_INBOUND),
                accepted: flag(ks_net_flags::KS_NET_ACCEPTED),
                start_ns: e.start_ns,
                state_ns: e.state_ns,
                bytes_sent: e.bytes_sent,
                bytes_received: e.bytes_received,
                retransmits: e.retransmits,
                error: e.error,
                old_state: e.old_state,
                new_state: e.new_state,
            }))
        }
        ks_event_kind::KS_EVENT_UDP_CLOSE => {
            let e: ks_udp_close_event = copy(buf, 0, "udp close")?;
            let off = offset_of!(ks_udp_close_event, sock) + offset_of!(ks_udp_sock, owner);
            let owner: ks_task = copy(buf, off, "udp owner")?;
            let known = e.flags & ks_net_flags::KS_NET_OWNER.0 != 0;
            let n = e.sock.nremotes as usize;
            let remotes = (known && n <= e.sock.remotes.len()).then(|| {
                e.sock.remotes[..n]
                    .iter()
                    .filter_map(|r| {
                        let ip = match r.family {
                            AF_INET => {
                                IpAddr::from([r.raddr[0], r.raddr[1], r.raddr[2], r.raddr[3]])
                            }
                            AF_INET6 => IpAddr::from(r.raddr),
                            _ => return None,
                        };
                        Some(SocketAddr::new(ip, r.rport))
                    })
                    .collect()
            });
            Ok(RawEvent::UdpClose(RawUdpClose {
                hdr: header,
                cookie: e.cookie,
                owner: known.then(|| task(&owner)),
                netns: e.sock.netns,
                remotes,
            }))
        }
        ks_event_kind::KS_EVENT_DNS => {
            let data_off = offset_of!(ks_dns_event, data);
            if buf.len() < data_off {
                return Err(DecodeError::Short {
                    what: "dns",
                    len: buf.len(),
                    need: data_off,
                });
            }
            // the record is cut at its payload: read it as a zero-padded full one
            let mut full = vec![0u8; size_of::<ks_dns_event>()];
            let n = buf.len().min(full.len());
            full[..n].copy_from_slice(&buf[..n]);
            let e: ks_dns_event = copy(&full, 0, "dns")?;
            let owner: ks_task = copy(buf, offset_of!(ks_dns_event, task), "dns owner")?;
            let caplen = e.caplen as usize;
            let data = buf
                .get(data_off..data_off + caplen)
                .ok_or(DecodeError::Overrun {
                    sum: caplen,
                    len: buf.len().saturating_sub(data_off),
                })?;
            let ip = |b: &[u8; 16]| -> Result<IpAddr, DecodeError> {
                match e.family {
                    AF_INET => Ok(IpAddr::from([b[0], b[1], b[2], b[3]])),
                    AF_INET6 => Ok(IpAddr::from(*b)),
                    f => Err(DecodeError::Family(f)),
                }
            };
            Ok(RawEvent::Dns(RawDns {
                hdr: header,
                owner: (e.flags & ks_net_flags::KS_NET_OWNER.0 != 0).then(|| task(&owner)),
                netns: e.netns,
                cookie: e.cookie,
                src: SocketAddr::new(ip(&e.saddr)?, e.sport),
                dst: SocketAddr::new(ip(&e.daddr)?, e.dport),
                egress: e.egress != 0,
                len: e.len,
                data: data.to_vec(),
                tcp: e.flags & ks_net_flags::KS_NET_TCP.0 != 0,
            }))
        }
        ks_event_kind::KS_EVENT_GAI => {
            let e: ks_gai_event = copy(buf, 0, "getaddrinfo")?;
            let t: ks_task = copy(buf, offset_of!(ks_gai_event, task), "getaddrinfo task")?;
            // getaddrinfo lists an address once per socket type: keep each once
            let mut addrs: Vec<IpAddr> = Vec::new();
            for (a, f) in e.addrs.iter().zip(e.families) {
                let ip = match f {
                    AF_INET => IpAddr::from([a[0], a[1], a[2], a[3]]),
                    AF_INET6 => IpAddr::from(*a),
                    _ => continue,
                };
                if !addrs.contains(&ip) {
                    addrs.push(ip);
                }
            }
            Ok(RawEvent::Gai(RawGai {
                hdr: header,
                task: task(&t),
                returned: e.phase == ks_gai_phase::KS_GAI_RETURN.0,
                name: cstr(&e.name),
                ret: e.ret,
                latency_ns: e.latency_ns,
                addrs,
            }))
        }
        _ => Err(DecodeError::UnknownKind(hdr.kind)),
    }
}

/// A flow from the kernel's ks_udp_flows map (key and value bytes).
pub fn udp_flow(key: &[u8], value: &[u8]) -> Result<RawUdpFlow, DecodeError> {
    let k: ks_udp_flow_key = copy(key, 0, "udp flow key")?;
    let v: ks_udp_flow = copy(value, 0, "udp flow")?;
    let ip = |b: &[u8; 16]| -> Result<IpAddr, DecodeError> {
        match k.family {
            AF_INET => Ok(IpAddr::from([b[0], b[1], b[2], b[3]])),
            AF_INET6 => Ok(IpAddr::from(*b)),
            f => Err(DecodeError::Family(f)),
        }
    };
    Ok(RawUdpFlow {
        cookie: k.cookie,
        local: SocketAddr::new(ip(&v.laddr)?, v.lport),
        remote: SocketAddr::new(ip(&k.raddr)?, k.rport),
        first_ns: v.first_ns,
        last_ns: v.last_ns,
        packets_sent: v.packets_out,
        bytes_sent: v.bytes_out,
        packets_received: v.packets_in,
        bytes_received: v.bytes_in,
    })
}

/// The owner recorded for a UDP socket (a ks_udp_socks value): the task and its netns.
pub fn udp_owner(value: &[u8]) -> Result<(TaskFacts, u32), DecodeError> {
    let owner: ks_task = copy(value, offset_of!(ks_udp_sock, owner), "udp owner")?;
    let netns: u32 = {
        let off = offset_of!(ks_udp_sock, netns);
        let b = value.get(off..off + 4).ok_or(DecodeError::Short {
            what: "udp owner",
            len: value.len(),
            need: off + 4,
        })?;
        u32::from_ne_bytes(b.try_into().expect("4 bytes"))
    };
    Ok((task(&owner), netns))
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Addresses in network byte order (IPv4 in the first 4 bytes), ports in host order.
fn tuple(t: &ks_sock_tuple) -> Result<Tuple, DecodeError> {
    let ip = |b: &[u8; 16]| -> Result<IpAddr, DecodeError> {
        match t.family {
            AF_INET => Ok(IpAddr::from([b[0], b[1], b[2], b[3]])),
            AF_INET6 => Ok(IpAddr::from(*b)),
            f => Err(DecodeError::Family(f)),
        }
    };
    Ok(Tuple {
        local: SocketAddr::new(ip(&t.saddr)?, t.sport),
        remote: SocketAddr::new(ip(&t.daddr)?, t.dport),
        netns: t.netns,
    })
}

/// The event kind a wire kind number (a drop-counter index) stands for.
pub fn kind(wire: u32) -> Option<Kind> {
    match ks_event_kind(wire) {
        ks_event_kind::KS_EVENT_EXEC => Some(Kind::Exec),
        ks_event_kind::KS_EVENT_FORK => Some(Kind::Fork),
        ks_event_kind::KS_EVENT_EXIT => Some(Kind::Exit),
        ks_event_kind::KS_EVENT_CONNECT => Some(Kind::Connect),
        ks_event_kind::KS_EVENT_ACCEPT => Some(Kind::Accept),
        ks_event_kind::KS_EVENT_LISTEN => Some(Kind::Listen),
        ks_event_kind::KS_EVENT_TCP_CLOSE => Some(Kind::TcpClose),
        ks_event_kind::KS_EVENT_TCP_STATE => Some(Kind::TcpState),
        ks_event_kind::KS_EVENT_UDP_CLOSE => Some(Kind::Udp),
        ks_event_kind::KS_EVENT_DNS => Some(Kind::Dns),
        ks_event_kind::KS_EVENT_GAI => Some(Kind::Getaddrinfo),
        _ => None,
    }
}

fn exec(buf: &[u8], hdr: Header) -> Result<RawExec, DecodeError> {
    let t: ks_task = copy(buf, offset_of!(ks_exec_event, task), "exec task")?;
    let info: ks_exec_info = copy(buf, offset_of!(ks_exec_event, info), "exec info")?;
    let data = buf
        .get(offset_of!(ks_exec_event, data)..)
        .unwrap_or_default();
    let lens = [
        info.argv_len,
        info.filename_len,
        info.exe_len,
        info.interp_len,
        info.cwd_len,
    ]
    .map(usize::from);
    let sum: usize = lens.iter().sum();
    if sum > data.len() {
        return Err(DecodeError::Overrun {
            sum,
            len: data.len(),
        });
    }
    let mut rest = data;
    let [argv, filename, exe, interp, cwd] = lens.map(|n| {
        let (field, tail) = rest.split_at(n);
        rest = tail;
        field
    });
    let flag = |f: ks_exec_flags| info.flags & f.0 != 0;
    let script = flag(ks_exec_flags::KS_EXEC_SCRIPT);
    Ok(RawExec {
        hdr,
        task: task(&t),
        old_tid: info.old_tid,
        argv: split_argv(argv),
        argv_truncated: flag(ks_exec_flags::KS_EXEC_ARGV_TRUNCATED),
        argv_fault: flag(ks_exec_flags::KS_EXEC_ARGV_FAULT),
        filename: filename.to_vec(),
        exe: (!script).then(|| join_path(exe, flag(ks_exec_flags::KS_EXEC_EXE_TRUNCATED))),
        interpreter: script
            .then(|| join_path(interp, flag(ks_exec_flags::KS_EXEC_INTERP_TRUNCATED))),
        cwd: join_path(cwd, flag(ks_exec_flags::KS_EXEC_CWD_TRUNCATED)),
        path_truncated: flag(ks_exec_flags::KS_EXEC_EXE_TRUNCATED)
            || flag(ks_exec_flags::KS_EXEC_INTERP_TRUNCATED)
            || flag(ks_exec_flags::KS_EXEC_CWD_TRUNCATED),
        tty: Some(cstr(&info.tty)).filter(|t| !t.is_empty()),
    })
}

fn task(t: &ks_task) -> TaskFacts {
    TaskFacts {
        pid: t.pid,
        tid: t.tid,
        ppid: t.ppid,
        uid: t.uid,
        gid: t.gid,
        euid: t.euid,
        egid: t.egid,
        auid: (t.auid != u32::MAX).then_some(t.auid),
        start_ns: t.start_ns,
        parent_start_ns: t.parent_start_ns,
        cgroup_id: t.cgroup_id,
        pidns: t.pidns_ino,
        ns_pid: t.ns_pid,
        ns_tid: t.ns_tid,
        comm: cstr(&t.comm),
    }
}

/// Bytes of a C char array up to its first NUL.
fn cstr(chars: &[i8]) -> Vec<u8> {
    chars
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect()
}

/// argv as /proc/pid/cmdline lays it out: NUL-terminated strings. Empty
/// arguments are real; only the terminator after the last one is dropped.
fn split_argv(bytes: &[u8]) -> Vec<Vec<u8>> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    bytes.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

/// Leaf-first NUL-terminated components ("ls\0bin\0usr\0") -> "/usr/bin/ls".
/// A truncated walk lacks its leading components, so it gets no leading "/".
fn join_path(components: &[u8], truncated: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(components.len() + 1);
    let parts = components
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .rev();
    for (i, part) in parts.enumerate() {
        if i > 0 || !truncated {
            out.push(b'/');
        }
        out.extend_from_slice(part);
    }
    if out.is_empty() && !truncated {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T: plain::Plain>(v: &T) -> Vec<u8> {
        // SAFETY: T is Plain (no padding, any bit pattern valid), so its bytes are initialised.
        unsafe { plain::as_bytes(v) }.to_vec()
    }

    fn hdr(kind: ks_event_kind, size: usize) -> ks_event_hdr {
        ks_event_hdr {
            ktime: 1234,
            seq: 9,
            kind: kind.0,
            size: size as u32,
            cpu: 1,
            abi: ks_abi::KS_ABI_VERSION.0,
        }
    }

    fn net_hdr(kind: ks_event_kind, size: usize) -> crate::skel_net::types::ks_event_hdr {
        let h = hdr(kind, size);
        crate::skel_net::types::ks_event_hdr {
            ktime: h.ktime,
            seq: h.seq,
            kind: h.kind,
            size: h.size,
            cpu: h.cpu,
            abi: h.abi,
        }
    }

    fn wire_task() -> ks_task {
        let mut t = ks_task {
            pid: 10,
            tid: 11,
            ppid: 1,
            uid: 1000,
            auid: u32::MAX,
            start_ns: 77,
            cgroup_id: 5,
            pidns_ino: 4026531836,
            ns_pid: 10,
            ns_tid: 11,
            ..Default::default()
        };
        for (d, s) in t.comm.iter_mut().zip(b"bash") {
            *d = *s as i8;
        }
        t
    }

    fn exec_record(argv: &[u8], filename: &[u8], exe: &[u8], cwd: &[u8], flags: u32) -> Vec<u8> {
        let data_off = offset_of!(ks_exec_event, data);
        let mut info = ks_exec_info {
            flags,
            old_tid: 10,
            argv_len: argv.len() as u16,
            filename_len: filename.len() as u16,
            exe_len: exe.len() as u16,
            interp_len: 0,
            cwd_len: cwd.len() as u16,
            ..Default::default()
        };
        for (d, s) in info.tty.iter_mut().zip(b"pts/3") {
            *d = *s as i8;
        }
        let data: Vec<u8> = [argv, filename, exe, cwd].concat();
        let size = data_off + data.len();
        let mut buf = vec![0u8; size];
        buf[..size_of::<ks_event_hdr>()]
            .copy_from_slice(&bytes_of(&hdr(ks_event_kind::KS_EVENT_EXEC, size)));
        let t_off = offset_of!(ks_exec_event, task);
        buf[t_off..t_off + size_of::<ks_task>()].copy_from_slice(&bytes_of(&wire_task()));
        let i_off = offset_of!(ks_exec_event, info);
        buf[i_off..i_off + size_of::<ks_exec_info>()].copy_from_slice(&bytes_of(&info));
        buf[data_off..].copy_from_slice(&data);
        buf
    }

    #[test]
    fn exec_round_trip() {
        let rec = exec_record(
            b"ls\0-l\0\0\xff\0",
            b"/bin/ls",
            b"ls\0bin\0usr\0",
            b"root\0",
            0,
        );
        let RawEvent::Exec(e) = decode(&rec).unwrap() else {
            panic!("not exec")
        };
        assert_eq!(
            e.hdr,
            Header {
                ktime_ns: 1234,
                seq: 9,
                cpu: 1
            }
        );
        assert_eq!(e.task.pid, 10);
        assert_eq!(e.task.comm, b"bash");
        assert_eq!(e.task.auid, None);
        assert_eq!(e.argv, [&b"ls"[..], b"-l", b"", b"\xff"]);
        assert_eq!(e.filename, b"/bin/ls");
        assert_eq!(e.exe.as_deref(), Some(&b"/usr/bin/ls"[..]));
        assert_eq!(e.interpreter, None);
        assert_eq!(e.cwd, b"/root");
        assert_eq!(e.tty.as_deref(), Some(&b"pts/3"[..]));
        assert!(!e.argv_truncated && !e.path_truncated);
    }

    #[test]
    fn exec_flags_and_edge_paths() {
        let flags =
            ks_exec_flags::KS_EXEC_ARGV_TRUNCATED.0 | ks_exec_flags::KS_EXEC_CWD_TRUNCATED.0;
        let rec = exec_record(b"a\0bc", b"x", b"", b"c\0b\0", flags);
        let RawEvent::Exec(e) = decode(&rec).unwrap() else {
            panic!("not exec")
        };
        assert!(e.argv_truncated && e.path_truncated);
        assert_eq!(e.argv, [&b"a"[..], b"bc"]);
        assert_eq!(e.exe.as_deref(), Some(&b"/"[..]), "the root itself");
        assert_eq!(e.cwd, b"b/c", "truncated: no leading slash");
    }

    #[test]
    fn exec_lengths_that_overrun_are_an_error() {
        let mut rec = exec_record(b"a\0", b"x", b"", b"", 0);
        let i_off = offset_of!(ks_exec_event, info);
        // argv_len follows flags and old_tid
        rec[i_off + 8..i_off + 10].copy_from_slice(&u16::MAX.to_ne_bytes());
        assert!(matches!(decode(&rec), Err(DecodeError::Overrun { .. })));
    }

    #[test]
    fn fork_round_trip() {
        let e = ks_fork_event {
            hdr: hdr(ks_event_kind::KS_EVENT_FORK, size_of::<ks_fork_event>()),
            task: wire_task(),
            child_pid: 20,
            child_tid: 21,
            child_start_ns: 99,
            child_pidns_ino: 7,
            child_ns_pid: 1,
            child_ns_tid: 1,
            flags: ks_fork_flags::KS_FORK_THREAD.0,
        };
        let RawEvent::Fork(f) = decode(&bytes_of(&e)).unwrap() else {
            panic!("not fork")
        };
        assert_eq!((f.child_pid, f.child_tid, f.child_start_ns), (20, 21, 99));
        assert_eq!((f.child_pidns, f.child_ns_pid), (7, 1));
        assert!(f.thread);
        assert_eq!(f.task.ppid, 1);
    }

    #[test]
    fn exit_round_trip() {
        let e = ks_exit_event {
            hdr: hdr(ks_event_kind::KS_EVENT_EXIT, size_of::<ks_exit_event>()),
            task: wire_task(),
            utime_ns: 5,
            stime_ns: 6,
            exit_code: 9 | 0x80,
            flags: 0,
        };
        let RawEvent::Exit(x) = decode(&bytes_of(&e)).unwrap() else {
            panic!("not exit")
        };
        assert_eq!(
            (x.exit_code, x.utime_ns, x.stime_ns, x.thread),
            (0x89, 5, 6, false)
        );
    }

    #[test]
    fn tcp_round_trip_v4_and_v6() {
        let mut e = ks_tcp_event {
            hdr: net_hdr(ks_event_kind::KS_EVENT_TCP_CLOSE, size_of::<ks_tcp_event>()),
            sock: 0xffff_8880_0000_1000,
            start_ns: 5,
            bytes_sent: 1000,
            bytes_received: 2000,
            retransmits: 1,
            old_state: 1,
            new_state: 7,
            flags: ks_net_flags::KS_NET_OUTBOUND.0 | ks_net_flags::KS_NET_OWNER.0,
            ..Default::default()
        };
        e.tuple.family = 2;
        e.tuple.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.tuple.daddr[..4].copy_from_slice(&[10, 1, 2, 3]);
        e.tuple.sport = 40000;
        e.tuple.dport = 443;
        e.tuple.netns = 4026531840;
        let mut rec = bytes_of(&e);
        let t_off = offset_of!(ks_tcp_event, task);
        rec[t_off..t_off + size_of::<ks_task>()].copy_from_slice(&bytes_of(&wire_task()));
        let RawEvent::Tcp(t) = decode(&rec).unwrap() else {
            panic!("not tcp")
        };
        assert_eq!(t.kind, TcpKind::Close);
        assert_eq!(t.tuple.local.to_string(), "127.0.0.1:40000");
        assert_eq!(t.tuple.remote.to_string(), "10.1.2.3:443");
        assert!(t.outbound && !t.inbound);
        assert_eq!(t.owner.as_ref().unwrap().pid, 10);
        assert_eq!(
            (t.bytes_sent, t.bytes_received, t.retransmits),
            (1000, 2000, 1)
        );

        e.tuple.family = 10;
        e.tuple.daddr = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1];
        e.tuple.saddr = [0; 16];
        e.tuple.saddr[15] = 1;
        e.flags = 0;
        e.hdr.kind = ks_event_kind::KS_EVENT_ACCEPT.0;
        let RawEvent::Tcp(t) = decode(&bytes_of(&e)).unwrap() else {
            panic!("not tcp")
        };
        assert_eq!(t.kind, TcpKind::Accept);
        assert_eq!(t.tuple.remote.to_string(), "[::ffff:192.0.2.1]:443");
        assert_eq!(t.tuple.local.to_string(), "[::1]:40000");
        assert!(t.owner.is_none());
        assert!(!t.accepted);

        // from the accept() hook: the acceptor owns it
        e.flags = ks_net_flags::KS_NET_INBOUND.0
            | ks_net_flags::KS_NET_OWNER.0
            | ks_net_flags::KS_NET_ACCEPTED.0;
        let RawEvent::Tcp(t) = decode(&bytes_of(&e)).unwrap() else {
            panic!("not tcp")
        };
        assert!(t.accepted && t.inbound && t.owner.is_some());

        e.tuple.family = 1;
        assert_eq!(decode(&bytes_of(&e)), Err(DecodeError::Family(1)));
    }

    #[test]
    fn unknown_kind_and_short_buffers_are_errors() {
        let h = hdr(ks_event_kind(77), size_of::<ks_event_hdr>());
        assert_eq!(decode(&bytes_of(&h)), Err(DecodeError::UnknownKind(77)));
        assert!(matches!(decode(&[0u8; 7]), Err(DecodeError::Short { .. })));
        let h = hdr(ks_event_kind::KS_EVENT_EXIT, size_of::<ks_event_hdr>());
        assert!(matches!(
            decode(&bytes_of(&h)),
            Err(DecodeError::Short { what: "exit", .. })
        ));
        let mut full = bytes_of(&ks_fork_event {
            hdr: hdr(ks_event_kind::KS_EVENT_FORK, 8),
            ..Default::default()
        });
        assert!(decode(&full).is_err(), "size field shorter than the struct");
        full.truncate(3);
        assert!(decode(&full).is_err());
        let mut bad_abi = hdr(ks_event_kind::KS_EVENT_FORK, 32);
        bad_abi.abi = 99;
        assert!(matches!(
            decode(&bytes_of(&bad_abi)),
            Err(DecodeError::Abi { .. })
        ));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // a cheap deterministic fuzz: every prefix of valid records, and noise
        let rec = exec_record(b"ls\0", b"/bin/ls", b"ls\0bin\0", b"\0", 0);
        for n in 0..rec.len() {
            let _ = decode(&rec[..n]);
        }
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..2000 {
            let mut buf = rec.clone();
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % buf.len();
                buf[i] = (x >> 32) as u8;
            }
            let _ = decode(&buf);
        }
    }
}
