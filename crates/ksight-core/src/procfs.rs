//! Reading processes out of a `/proc` tree.
//!
//! Owns the parsing of `/proc/PID/{stat,status,cmdline,exe}` and `sys/kernel/random/boot_id`.
//! The root is a parameter so tests (and containers with a host `/proc` mounted elsewhere) can
//! point it anywhere.
//!
//! Invariants: never panics on any file content (truncated, garbage, non-UTF-8) and tolerates
//! processes vanishing between reads. Only `stat` is required; everything else is best-effort,
//! because kernel threads have no `exe`/`cmdline` and a process may exit between two reads.
//! Names and arguments stay raw bytes: Linux does not promise UTF-8 and lossy conversion here
//! would destroy evidence.

use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// `PF_KTHREAD` from `include/linux/sched.h`.
const PF_KTHREAD: u64 = 0x0020_0000;

/// One process as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    /// From `stat`, between the first `(` and the last `)`.
    pub comm: Vec<u8>,
    /// Target of the `exe` link; `None` for kernel threads, or when unreadable or vanished.
    pub exe: Option<Vec<u8>>,
    /// `cmdline` split on NUL; empty for kernel threads.
    pub argv: Vec<Vec<u8>>,
    /// `starttime` (stat field 22): clock ticks since boot, CLOCK_BOOTTIME based.
    pub start_ticks: u64,
    /// Real and effective ids from `status`; `u32::MAX` when unknown.
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    pub kernel_thread: bool,
}

/// A `/proc` tree rooted at an arbitrary directory.
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Pids present under the root, sorted ascending.
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        let mut pids: Vec<u32> = std::fs::read_dir(&self.root)?
            // An entry failing mid-listing is a process that just exited; skip it.
            .filter_map(Result::ok)
            .filter_map(|e| parse_pid(e.file_name().to_str()?))
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// Reads one process. Errors only if `stat` is missing (the io error's kind is kept, so
    /// `NotFound` still means "gone") or unparseable (`InvalidData`); both name the file.
    pub fn read(&self, pid: u32) -> io::Result<ProcInfo> {
        let dir = self.root.join(pid.to_string());
        let stat_path = dir.join("stat");
        let stat = std::fs::read(&stat_path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", stat_path.display())))?;
        let (comm, ppid, flags, start_ticks) = parse_stat(&stat).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: unparseable stat", stat_path.display()),
            )
        })?;

        let exe = std::fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.into_os_string().into_vec());
        let argv = std::fs::read(dir.join("cmdline"))
            .map(|b| split_cmdline(&b))
            .unwrap_or_default();
        let status = std::fs::read(dir.join("status")).unwrap_or_default();
        let (uid, euid) = status_ids(&status, b"Uid:").unwrap_or((u32::MAX, u32::MAX));
        let (gid, egid) = status_ids(&status, b"Gid:").unwrap_or((u32::MAX, u32::MAX));

        Ok(ProcInfo {
            pid,
            ppid,
            comm,
            exe,
            argv,
            start_ticks,
            uid,
            euid,
            gid,
            egid,
            kernel_thread: flags & PF_KTHREAD != 0,
        })
    }

    /// This boot's id; with `start_ticks` it makes a process identity unique across reboots.
    pub fn boot_id(&self) -> io::Result<String> {
        let path = self.root.join("sys/kernel/random/boot_id");
        Ok(std::fs::read_to_string(path)?.trim().to_owned())
    }
}

/// Only canonical decimal names: `u32::from_str` would also take `+5` or `05`, which are not
/// pid directories and would make `read` look up a different path.
fn parse_pid(name: &str) -> Option<u32> {
    let pid: u32 = name.parse().ok()?;
    (pid.to_string() == name).then_some(pid)
}

/// Parse the content of /proc/PID/stat: returns (comm, ppid, flags, start_ticks).
/// Pure function, fuzz-safe.
pub fn parse_stat(buf: &[u8]) -> Option<(Vec<u8>, u32, u64, u64)> {
    // comm is arbitrary bytes, including spaces and ')', but the kernel writes nothing
    // parenthesised after it, so the last ')' is the only reliable delimiter.
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = buf[open + 1..close].to_vec();
    // Fields after comm, 0-based here, 1-based in proc(5): state=3, ppid=4, flags=9, starttime=22.
    let mut fields = buf[close + 1..]
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty());
    let ppid = parse_num(fields.nth(1)?)?;
    let flags = parse_num(fields.nth(4)?)?;
    let start_ticks = parse_num(fields.nth(12)?)?;
    Some((comm, ppid, flags, start_ticks))
}

fn parse_num<T: std::str::FromStr>(field: &[u8]) -> Option<T> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// The kernel NUL-terminates every argument, so the final split piece is always empty and
/// not an argument; interior empty pieces are genuine empty arguments and are kept.
fn split_cmdline(buf: &[u8]) -> Vec<Vec<u8>> {
    let mut argv: Vec<Vec<u8>> = buf.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
    if argv.last().is_some_and(Vec::is_empty) {
        argv.pop();
    }
    argv
}

/// Real and effective ids from a `status` line such as `Uid:\t1000\t1000\t1000\t1000`.
fn status_ids(status: &[u8], key: &[u8]) -> Option<(u32, u32)> {
    let line = status
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(key))?;
    let mut ids = line
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty())
        .map(parse_num::<u32>);
    Some((ids.next()??, ids.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;

    /// A typical stat line with the interesting fields set to distinctive values.
    fn stat_line(pid: u32, comm: &[u8], ppid: u32, flags: u64, start: u64) -> Vec<u8> {
        let mut v = format!("{pid} (").into_bytes();
        v.extend_from_slice(comm);
        v.extend_from_slice(
            format!(
                ") S {ppid} {pid} {pid} 0 -1 {flags} 100 0 0 0 1 2 0 0 20 0 1 0 {start} \
                 1000 200 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n"
            )
            .as_bytes(),
        );
        v
    }

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn fs(&self) -> ProcFs {
            ProcFs::new(self.dir.path())
        }
        fn file(&self, rel: &str, content: &[u8]) {
            let p = self.dir.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        fn exe(&self, pid: u32, target: &[u8]) {
            let target = Path::new(std::ffi::OsStr::from_bytes(target));
            std::os::unix::fs::symlink(target, self.dir.path().join(format!("{pid}/exe"))).unwrap();
        }
    }

    #[test]
    fn normal_process() {
        let fx = Fixture::new();
        fx.file("42/stat", &stat_line(42, b"bash", 1, 0x0040_0100, 123_456));
        fx.file("42/cmdline", b"/bin/bash\0-c\0\0echo hi\0");
        fx.file(
            "42/status",
            b"Name:\tbash\nUid:\t1000\t1001\t1002\t1003\nGid:\t2000\t2001\t2002\t2003\n",
        );
        fx.exe(42, b"/usr/bin/bash");
        let p = fx.fs().read(42).unwrap();
        assert_eq!(
            p,
            ProcInfo {
                pid: 42,
                ppid: 1,
                comm: b"bash".to_vec(),
                exe: Some(b"/usr/bin/bash".to_vec()),
                argv: vec![
                    b"/bin/bash".to_vec(),
                    b"-c".to_vec(),
                    vec![],
                    b"echo hi".to_vec()
                ],
                start_ticks: 123_456,
                uid: 1000,
                euid: 1001,
                gid: 2000,
                egid: 2001,
                kernel_thread: false,
            }
        );
    }

    #[test]
    fn comm_with_parens_and_spaces() {
        let fx = Fixture::new();
        fx.file("7/stat", &stat_line(7, b"a) (b c) 9 9", 3, 0, 55));
        let p = fx.fs().read(7).unwrap();
        assert_eq!(p.comm, b"a) (b c) 9 9");
        assert_eq!((p.ppid, p.start_ticks), (3, 55));
    }

    #[test]
    fn non_utf8_comm_and_argv() {
        let fx = Fixture::new();
        fx.file("8/stat", &stat_line(8, b"\xff\xfe(x", 2, 0, 9));
        fx.file("8/cmdline", b"\xc3\x28\0arg\x80");
        fx.exe(8, b"/tmp/\xff");
        let p = fx.fs().read(8).unwrap();
        assert_eq!(p.comm, b"\xff\xfe(x");
        assert_eq!(p.argv, vec![b"\xc3\x28".to_vec(), b"arg\x80".to_vec()]);
        assert_eq!(p.exe.as_deref(), Some(&b"/tmp/\xff"[..]));
    }

    #[test]
    fn missing_optional_files() {
        let fx = Fixture::new();
        fx.file("9/stat", &stat_line(9, b"x", 1, 0, 1));
        let p = fx.fs().read(9).unwrap();
        assert_eq!(p.exe, None);
        assert!(p.argv.is_empty());
        assert_eq!([p.uid, p.euid, p.gid, p.egid], [u32::MAX; 4]);
    }

    #[test]
    fn garbage_status_is_unknown_ids() {
        let fx = Fixture::new();
        fx.file("9/stat", &stat_line(9, b"x", 1, 0, 1));
        fx.file("9/status", b"Uid:\t12\nGid:\tx y\n\xff");
        let p = fx.fs().read(9).unwrap();
        assert_eq!([p.uid, p.euid, p.gid, p.egid], [u32::MAX; 4]);
    }

    #[test]
    fn kernel_thread_flag() {
        let fx = Fixture::new();
        fx.file("2/stat", &stat_line(2, b"kthreadd", 0, 0x0020_8040, 0));
        fx.file("2/cmdline", b"");
        let p = fx.fs().read(2).unwrap();
        assert!(p.kernel_thread);
        assert_eq!((p.ppid, p.exe, p.argv), (0, None, vec![]));
    }

    #[test]
    fn truncated_or_missing_stat_is_error() {
        let fx = Fixture::new();
        let full = stat_line(5, b"x", 1, 0, 77);
        let cut = full.windows(4).position(|w| w == b" 77 ").unwrap();
        fx.file("5/stat", &full[..cut]);
        let err = fx.fs().read(5).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("5/stat"), "{err}");

        let err = fx.fs().read(6).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("6/stat"), "{err}");
    }

    #[test]
    fn parse_stat_never_panics() {
        let full = stat_line(5, b"x", 1, 0, 77);
        for i in 0..full.len() {
            let _ = parse_stat(&full[..i]);
        }
        for bad in [
            &b""[..],
            b")(",
            b"1 (x",
            b"1 x)",
            b"1 (x) S -1 0 0 0 0 0",
            b"\xff(\xff)\xff",
        ] {
            assert_eq!(parse_stat(bad), None);
        }
        assert_eq!(parse_stat(&full), Some((b"x".to_vec(), 1, 0, 77)));
    }

    #[test]
    fn pids_ignore_non_numeric() {
        let fx = Fixture::new();
        for d in [
            "10",
            "2",
            "300",
            "self",
            "net",
            "+4",
            "05",
            "1a",
            "99999999999",
        ] {
            fs::create_dir_all(fx.dir.path().join(d)).unwrap();
        }
        assert_eq!(fx.fs().pids().unwrap(), vec![2, 10, 300]);
    }

    #[test]
    fn boot_id_trimmed() {
        let fx = Fixture::new();
        fx.file(
            "sys/kernel/random/boot_id",
            b"56a90831-3a5b-478e-9237-260d5d512da3\n",
        );
        assert_eq!(
            fx.fs().boot_id().unwrap(),
            "56a90831-3a5b-478e-9237-260d5d512da3"
        );
    }

    #[test]
    fn real_proc_self() {
        let pid = std::process::id();
        let p = ProcFs::new("/proc").read(pid).unwrap();
        let comm = fs::read(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(p.comm, comm.strip_suffix(b"\n").unwrap_or(&comm));
        assert_eq!(p.ppid, std::os::unix::process::parent_id());
        assert!(!p.argv.is_empty() && !p.argv[0].is_empty());
        assert!(p.start_ticks > 0);
        assert!(!p.kernel_thread);
        assert_ne!(p.uid, u32::MAX);
        let exe = std::env::current_exe().unwrap();
        assert_eq!(p.exe.as_deref(), Some(exe.as_os_str().as_bytes()));
        assert!(ProcFs::new("/proc").pids().unwrap().contains(&pid));
    }
}

/// A TCP socket in LISTEN, as `/proc/PID/net/tcp` or `tcp6` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSocket {
    pub inode: u64,
    pub port: u16,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
}

/// The LISTEN sockets of one `/proc/.../net/tcp` (`family` 2) or `tcp6`
/// (10) file: `sl local_address rem_address st ... uid timeout inode`, the
/// port in hex after the local address's colon, state 0A. Garbage lines are
/// skipped.
pub fn parse_tcp_listeners(buf: &[u8], family: u16) -> Vec<ListenSocket> {
    let text = String::from_utf8_lossy(buf);
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                return None;
            }
            let port = u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok()?;
            let inode: u64 = f[9].parse().ok()?;
            (inode != 0).then_some(ListenSocket {
                inode,
                port,
                family,
            })
        })
        .collect()
}

/// A port listened on in one network namespace, by sockets older than the
/// scan, and the process holding them (the lowest pid among those that do:
/// a server's parent, whose workers inherited the socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub netns: u32,
    pub port: u16,
    pub family: u16,
    /// Sockets listening on it (SO_REUSEPORT, one per address).
    pub sockets: u32,
    pub pid: u32,
}

/// The inode a `/proc` namespace or fd link names: `net:[4026531840]`,
/// `socket:[12345]`.
fn link_inode(target: &Path, kind: &str) -> Option<u64> {
    let t = target.to_str()?;
    t.strip_prefix(kind)?
        .strip_prefix(":[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// What /proc says of a process beyond `ProcInfo`: what the kernel's hooks
/// record of a task (events.h `ks_task`), for a socket's owner read from /proc.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcIdentity {
    /// loginuid; `None` when unset.
    pub auid: Option<u32>,
    /// The cgroup v2 path (`0::/system.slice/x.service`), relative to the mount.
    pub cgroup: Option<Vec<u8>>,
    /// Inode of its pid namespace, and its pid there (`NSpid`'s last value).
    pub pidns: u32,
    pub ns_pid: u32,
}

impl ProcFs {
    /// Best effort: fields that cannot be read are left unset.
    pub fn identity(&self, pid: u32) -> ProcIdentity {
        let dir = self.root.join(pid.to_string());
        let auid = std::fs::read_to_string(dir.join("loginuid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&a| a != u32::MAX);
        let cgroup = std::fs::read(dir.join("cgroup")).ok().and_then(|b| {
            b.split(|&c| c == b'\n')
                .find_map(|l| l.strip_prefix(b"0::"))
                .map(<[u8]>::to_vec)
        });
        let pidns = std::fs::read_link(dir.join("ns/pid"))
            .ok()
            .and_then(|t| link_inode(&t, "pid"))
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let status = std::fs::read(dir.join("status")).unwrap_or_default();
        let ns_pid = status
            .split(|&b| b == b'\n')
            .find_map(|l| l.strip_prefix(b"NSpid:"))
            .and_then(|l| {
                l.split(u8::is_ascii_whitespace)
                    .rfind(|f| !f.is_empty())
                    .and_then(parse_num::<u32>)
            })
            .unwrap_or(pid);
        ProcIdentity {
            auid,
            cgroup,
            pidns,
            ns_pid,
        }
    }

    /// Who holds each socket open now, and one process per network
    /// namespace to read it through: a readdir and a readlink per fd of each
    /// process, once. Processes that vanish or deny reading are skipped.
    pub fn socket_holders(&self) -> SocketHolders {
        let mut h = SocketHolders::default();
        let Ok(pids) = self.pids() else {
            return h;
        };
        for pid in pids {
            let dir = self.root.join(pid.to_string());
            let Some(ns) = std::fs::read_link(dir.join("ns/net"))
                .ok()
                .and_then(|t| link_inode(&t, "net"))
                .and_then(|n| u32::try_from(n).ok())
            else {
                continue;
            };
            // pids ascend: the first seen is the lowest
            h.netns.entry(ns).or_insert(pid);
            let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
                continue;
            };
            for fd in fds.filter_map(Result::ok) {
                if let Some(inode) = std::fs::read_link(fd.path())
                    .ok()
                    .and_then(|t| link_inode(&t, "socket"))
                {
                    h.by_inode.entry(inode).or_insert(pid);
                }
            }
        }
        h
    }

    /// Every TCP listener open now, with its owner: the LISTEN sockets of each
    /// network namespace (one read of `net/tcp` and `net/tcp6` per namespace,
    /// through the first process in it), matched to their holders.
    pub fn tcp_listeners(&self, holders: &SocketHolders) -> Vec<Listener> {
        use std::collections::BTreeMap;
        let mut out: BTreeMap<(u32, u16, u16), Listener> = BTreeMap::new();
        for (&netns, &first) in &holders.netns {
            let dir = self.root.join(first.to_string());
            for (file, family) in [("net/tcp", 2), ("net/tcp6", 10)] {
                let buf = std::fs::read(dir.join(file)).unwrap_or_default();
                for l in parse_tcp_listeners(&buf, family) {
                    let Some(&pid) = holders.by_inode.get(&l.inode) else {
                        continue;
                    };
                    let e = out.entry((netns, l.port, l.family)).or_insert(Listener {
                        netns,
                        port: l.port,
                        family: l.family,
                        sockets: 0,
                        pid,
                    });
                    e.sockets += 1;
                    e.pid = e.pid.min(pid);
                }
            }
        }
        out.into_values().collect()
    }
}

/// Socket holders, from a scan of every process's fds ([`ProcFs::socket_holders`]).
#[derive(Debug, Default, Clone)]
pub struct SocketHolders {
    /// Socket inode (unique on the host) -> the lowest pid holding it.
    pub by_inode: std::collections::HashMap<u64, u32>,
    /// Network namespace inode -> the lowest pid in it.
    pub netns: std::collections::BTreeMap<u32, u32>,
}

#[cfg(test)]
mod listener_tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 556 1 0000000000000000 20 4 30 10 -1\n\
   2: garbage\n";

    #[test]
    fn listening_lines_are_read_and_the_rest_skipped() {
        let got = parse_tcp_listeners(TCP.as_bytes(), 2);
        assert_eq!(
            got,
            [ListenSocket {
                inode: 555,
                port: 8080,
                family: 2
            }]
        );
        assert!(parse_tcp_listeners(b"\xff\xfe", 10).is_empty());
    }

    #[test]
    fn a_listener_is_owned_by_the_lowest_pid_holding_it() {
        let root = tempfile::tempdir().unwrap();
        let proc_ = |pid: u32, ns: u64, fds: &[u64], tcp: Option<&str>| {
            let dir = root.path().join(pid.to_string());
            std::fs::create_dir_all(dir.join("ns")).unwrap();
            std::fs::create_dir_all(dir.join("fd")).unwrap();
            std::fs::create_dir_all(dir.join("net")).unwrap();
            symlink(format!("net:[{ns}]"), dir.join("ns/net")).unwrap();
            for (i, inode) in fds.iter().enumerate() {
                symlink(format!("socket:[{inode}]"), dir.join(format!("fd/{i}"))).unwrap();
            }
            symlink("/dev/null", dir.join("fd/99")).unwrap();
            if let Some(t) = tcp {
                std::fs::write(dir.join("net/tcp"), t).unwrap();
            }
        };
        // a server (100) and its worker (101) share the listener; 102 holds
        // the connected socket only; 200 lives in another namespace where
        // inode 555 means nothing
        proc_(100, 7, &[555], Some(TCP));
        proc_(101, 7, &[555, 556], None);
        proc_(102, 7, &[556], None);
        proc_(200, 8, &[555], Some("header\n"));
        let procfs = ProcFs::new(root.path());
        let got = procfs.tcp_listeners(&procfs.socket_holders());
        assert_eq!(
            got,
            [Listener {
                netns: 7,
                port: 8080,
                family: 2,
                sockets: 1,
                pid: 100
            }]
        );
    }
}
