//! What an exec ran with, as the kernel saw it at `sched_process_exec`: the
//! executed file's identity (`exec.file`), what its fds 0-2 are
//! (`exec.stdio`), and how the exec changed its credentials
//! (`exec.privilege`). Decoded from `ks_exec_file`, `ks_stdio` and
//! `ks_exec_cred` (bpf/include/events.h); the exec kind puts them together.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ksight_wire::{
    ks_exec_cred, ks_exec_file, ks_exec_file_flags, ks_sock_tuple, ks_stdio, ks_stdio_type,
};
use serde::Serialize;

use crate::model::WallTime;
use crate::net::Endpoint;
use crate::text::Text;

/// A device number as the kernel encodes it in `s_dev`/`i_rdev` (major << 20 | minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Dev(pub u32);

impl Dev {
    pub fn major(self) -> u32 {
        self.0 >> 20
    }

    pub fn minor(self) -> u32 {
        self.0 & 0xf_ffff
    }

    /// From `stat(2)`'s `st_dev` (glibc's `makedev`), the inverse of [`Dev::to_user`].
    pub fn from_user(d: u64) -> Dev {
        let major = ((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff);
        let minor = ((d >> 12) & 0xffff_ff00) | (d & 0xff);
        Dev(((major as u32) << 20) | (minor as u32 & 0xf_ffff))
    }

    /// As `stat(2)` reports it (glibc's `makedev`).
    pub fn to_user(self) -> u64 {
        let (ma, mi) = (u64::from(self.major()), u64::from(self.minor()));
        ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
    }
}

impl std::fmt::Display for Dev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major(), self.minor())
    }
}

impl Serialize for Dev {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_IWOTH: u32 = 0o002;

/// The executed file (`exec.file`): the inode the kernel ran, not a path
/// looked up afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct ExecFile {
    pub dev: Dev,
    pub inode: u64,
    pub size: u64,
    /// Permission bits, set-id bits included, in octal (`4755`).
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    pub ctime: WallTime,
    pub mtime: WallTime,
    pub nlink: u32,
    // The flags below are written only when true (an exec's JSON is the
    // largest event; most files are none of these).
    /// No name is left: removed before or while it ran (`nlink` 0).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// An anonymous memory file (memfd_create), never on disk.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub memfd: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub writable_by_others: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub setuid: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub setgid: bool,
    /// The file system's type, named where ksight knows its magic (else `0x...`).
    pub fs: String,
    /// SHA-256 of the file's content, when known at write time (see `exe_hash`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<std::sync::Arc<str>>,
}

/// The file system magics a security reader cares to name (include/uapi/linux/magic.h).
fn fs_name(magic: u32) -> String {
    let name = match magic {
        0xef53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794c_7630 => "overlayfs",
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        0x958_458f => "hugetlbfs",
        0x6969 => "nfs",
        0xff53_4d42 => "cifs",
        0x6573_5546 => "fuse",
        0x7371_7368 => "squashfs",
        0x2fc1_2fc1 => "zfs",
        0x4d44 => "vfat",
        0x858_458f => "ramfs",
        0x2867_38b5 => "erofs",
        _ => return format!("{magic:#x}"),
    };
    name.to_string()
}

impl ExecFile {
    /// `exe_leaf`: the last component of the executed file's path (a memfd's is `memfd:NAME`).
    pub fn from_wire(f: &ks_exec_file, exe_leaf: &[u8]) -> ExecFile {
        let mode = f.mode;
        let internal = f.flags & ks_exec_file_flags::KS_FILE_INTERNAL_MNT.0 != 0;
        let time = |sec: i64, nsec: u32| {
            WallTime(
                u64::try_from(sec)
                    .unwrap_or(0)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(u64::from(nsec)),
            )
        };
        ExecFile {
            dev: Dev(f.dev),
            inode: f.ino,
            size: u64::try_from(f.size).unwrap_or(0),
            mode: format!("{:o}", mode & 0o7777),
            uid: f.uid,
            gid: f.gid,
            ctime: time(f.ctime_sec, f.ctime_nsec),
            mtime: time(f.mtime_sec, f.mtime_nsec),
            nlink: f.nlink,
            deleted: f.nlink == 0,
            memfd: internal && exe_leaf.starts_with(b"memfd:"),
            writable_by_others: mode & S_IWOTH != 0,
            setuid: mode & S_IFMT == S_IFREG && mode & S_ISUID != 0,
            setgid: mode & S_IFMT == S_IFREG && mode & S_ISGID != 0,
            fs: fs_name(f.magic),
            sha256: None,
        }
    }

    /// What ties a hash to this very file: it changes when its content may have.
    pub fn key(&self) -> FileKey {
        FileKey {
            dev: self.dev,
            inode: self.inode,
            ctime: self.ctime.0,
            size: self.size,
        }
    }
}

/// A file's identity for hashing: (dev, inode, ctime, size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: Dev,
    pub inode: u64,
    pub ctime: u64,
    pub size: u64,
}

crate::named_enum! {
    /// What an fd of stdio is.
    pub enum StdioType {
        /// not open
        None = "none",
        File = "file",
        Dir = "dir",
        /// a terminal: a pty, a virtual console, /dev/tty
        Tty = "tty",
        /// another character device (/dev/null, ...)
        Char = "char",
        Block = "block",
        /// a pipe or a FIFO
        Pipe = "pipe",
        Socket = "socket",
        /// an anonymous inode (eventfd, epoll, ...)
        Other = "other",
    }
}

/// One of fds 0, 1, 2 (`exec.stdio`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stdio {
    pub fd: u8,
    #[serde(rename = "type")]
    pub kind: StdioType,
    /// Files and directories; character devices of fixed number (`/dev/null`, `/dev/pts/3`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Text>,
    /// Character and block devices: `major:minor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Dev>,
    /// Pipes: both ends of one pipe share it (`a | b`: a's fd 1 is b's fd 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<StdioSocket>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StdioSocket {
    /// `unix`, `ipv4`, `ipv6`, `netlink`, ... (or the number).
    pub family: String,
    /// `tcp`, `udp`, ... for IP sockets; `stream`, `dgram`, `seqpacket` for others.
    pub protocol: String,
    /// IP sockets only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<Endpoint>,
}

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

fn family_name(f: u16) -> String {
    match f {
        AF_UNIX => "unix".into(),
        AF_INET => "ipv4".into(),
        AF_INET6 => "ipv6".into(),
        16 => "netlink".into(),
        17 => "packet".into(),
        40 => "vsock".into(),
        n => n.to_string(),
    }
}

fn sock_type_name(t: u16) -> String {
    match t {
        1 => "stream".into(),
        2 => "dgram".into(),
        3 => "raw".into(),
        5 => "seqpacket".into(),
        n => n.to_string(),
    }
}

fn ip_protocol_name(p: u16, sock_type: u16) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        262 => "mptcp".into(),
        0 => sock_type_name(sock_type),
        n => n.to_string(),
    }
}

/// Addresses of an IP socket tuple (network byte order, IPv4 in the first four bytes).
pub fn tuple_addrs(t: &ks_sock_tuple) -> Option<(SocketAddr, SocketAddr)> {
    let ip = |b: &[u8; 16]| -> Option<IpAddr> {
        match t.family {
            AF_INET => Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()),
            AF_INET6 => Some(Ipv6Addr::from(*b).into()),
            _ => None,
        }
    };
    Some((
        SocketAddr::new(ip(&t.saddr)?, t.sport),
        SocketAddr::new(ip(&t.daddr)?, t.dport),
    ))
}

/// Terminals: virtual consoles and serial lines (4), /dev/tty and the console
/// (5:0, 5:1), ptys (136-143).
fn is_tty(rdev: Dev) -> bool {
    matches!(
        (rdev.major(), rdev.minor()),
        (4, _) | (5, 0 | 1) | (136..=143, _)
    )
}

/// The /dev name of a character device whose number is fixed
/// (Documentation/admin-guide/devices.txt): the kernel does not walk stdio
/// devices' paths, the number says which they are.
fn char_device_path(rdev: Dev) -> Option<String> {
    let (ma, mi) = (rdev.major(), rdev.minor());
    Some(match (ma, mi) {
        (1, 3) => "/dev/null".into(),
        (1, 5) => "/dev/zero".into(),
        (1, 7) => "/dev/full".into(),
        (1, 8) => "/dev/random".into(),
        (1, 9) => "/dev/urandom".into(),
        (1, 11) => "/dev/kmsg".into(),
        (4, 0..=63) => format!("/dev/tty{mi}"),
        (4, 64..=255) => format!("/dev/ttyS{}", mi - 64),
        (5, 0) => "/dev/tty".into(),
        (5, 1) => "/dev/console".into(),
        (5, 2) => "/dev/ptmx".into(),
        (136..=143, _) => format!("/dev/pts/{}", (ma - 136) * 256 + mi),
        _ => return None,
    })
}

impl Stdio {
    /// `path`: its path, already joined (empty when it has none).
    pub fn from_wire(fd: u8, s: &ks_stdio, path: Vec<u8>) -> Stdio {
        let t = ks_stdio_type(u32::from(s.r#type));
        let kind = match t {
            ks_stdio_type::KS_STDIO_FILE => StdioType::File,
            ks_stdio_type::KS_STDIO_DIR => StdioType::Dir,
            ks_stdio_type::KS_STDIO_CHAR if is_tty(Dev(s.rdev)) => StdioType::Tty,
            ks_stdio_type::KS_STDIO_CHAR => StdioType::Char,
            ks_stdio_type::KS_STDIO_BLOCK => StdioType::Block,
            ks_stdio_type::KS_STDIO_PIPE => StdioType::Pipe,
            ks_stdio_type::KS_STDIO_SOCKET => StdioType::Socket,
            ks_stdio_type::KS_STDIO_NONE => StdioType::None,
            _ => StdioType::Other,
        };
        let socket = (kind == StdioType::Socket).then(|| {
            let ip = matches!(s.sock.family, AF_INET | AF_INET6);
            let addrs = if ip { tuple_addrs(&s.sock) } else { None };
            StdioSocket {
                family: family_name(s.sock.family),
                protocol: if ip {
                    ip_protocol_name(s.protocol, s.sock_type)
                } else {
                    sock_type_name(s.sock_type)
                },
                local: addrs.map(|(l, _)| l.into()),
                remote: addrs.map(|(_, r)| r.into()),
            }
        });
        let device = matches!(kind, StdioType::Tty | StdioType::Char | StdioType::Block)
            .then_some(Dev(s.rdev));
        let path = if !path.is_empty() {
            Some(Text::from(path))
        } else if kind != StdioType::Block {
            device
                .and_then(char_device_path)
                .map(|p| Text::from(p.into_bytes()))
        } else {
            None
        };
        Stdio {
            fd,
            kind,
            path,
            device,
            inode: (kind == StdioType::Pipe).then_some(s.ino),
            socket,
        }
    }
}

/// Linux capability names, by number (include/uapi/linux/capability.h).
pub const CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The names of the capabilities set in `bits` (unknown ones as `CAP_<n>`).
pub fn cap_names(bits: u64) -> Vec<String> {
    (0..64)
        .filter(|i| bits & (1 << i) != 0)
        .map(|i| {
            CAPS.get(i)
                .map_or_else(|| format!("CAP_{i}"), |n| n.to_string())
        })
        .collect()
}

/// All capabilities a root process holds by default on this ABI.
pub const ALL_CAPS: u64 = (1 << CAPS.len()) - 1;

/// The credentials an exec left, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Creds {
    pub cap_effective: u64,
    pub cap_permitted: u64,
    /// The kernel applied set-id bits or file capabilities (bprm->per_clear,
    /// or AT_SECURE).
    pub changed: bool,
}

impl Creds {
    pub fn from_wire(c: &ks_exec_cred) -> Creds {
        Creds {
            cap_effective: c.cap_effective,
            cap_permitted: c.cap_permitted,
            changed: c.per_clear != 0 || c.secure != 0,
        }
    }
}

/// How an exec raised privilege (`exec.privilege`): present only when the
/// kernel says the exec changed the credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Privilege {
    /// A set-user-id file made the effective uid its owner's, other than the caller's.
    pub setuid: bool,
    /// Likewise for the group.
    pub setgid: bool,
    /// Capabilities permitted now that were not before (file capabilities, or
    /// a set-uid-root file).
    pub caps_gained: Vec<String>,
}

impl Privilege {
    /// `uid`/`euid`/`gid`/`egid`: after the exec; `caps_before`: the
    /// permitted set the process had before, if known.
    pub fn of(
        creds: &Creds,
        file: &ExecFile,
        ids: (u32, u32, u32, u32),
        caps_before: u64,
    ) -> Option<Privilege> {
        if !creds.changed {
            return None;
        }
        let (uid, euid, gid, egid) = ids;
        Some(Privilege {
            setuid: file.setuid && euid == file.uid && euid != uid,
            setgid: file.setgid && egid == file.gid && egid != gid,
            caps_gained: cap_names(creds.cap_permitted & !caps_before),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn devices_convert_both_ways() {
        for d in [
            Dev(0),
            Dev((8 << 20) | 1),
            Dev((259 << 20) | 0x12345),
            Dev((4095 << 20) | 0xfffff),
        ] {
            assert_eq!(Dev::from_user(d.to_user()), d, "{d}");
        }
        // glibc's makedev(254, 1)
        assert_eq!(Dev::from_user((254 << 8) | 1), Dev((254 << 20) | 1));
    }

    use super::*;

    #[test]
    fn devices_and_ttys() {
        let pts3 = Dev((136 << 20) | 3);
        assert_eq!(pts3.to_string(), "136:3");
        assert!(is_tty(pts3));
        assert!(!is_tty(Dev((1 << 20) | 3)), "/dev/null");
        assert!(!is_tty(Dev((5 << 20) | 2)), "/dev/ptmx");
        assert_eq!(char_device_path(pts3).as_deref(), Some("/dev/pts/3"));
        assert_eq!(
            char_device_path(Dev((137 << 20) | 1)).as_deref(),
            Some("/dev/pts/257")
        );
        assert_eq!(
            char_device_path(Dev((1 << 20) | 3)).as_deref(),
            Some("/dev/null")
        );
        assert_eq!(char_device_path(Dev((10 << 20) | 200)), None);
        assert_eq!(Dev((8 << 20) | 1).to_user(), 0x801);
        assert_eq!(Dev((259 << 20) | 5).to_user(), (259 << 8) | 5);
    }

    #[test]
    fn caps_by_name() {
        assert_eq!(
            cap_names(1 << 13 | 1 << 21),
            ["CAP_NET_RAW", "CAP_SYS_ADMIN"]
        );
        assert_eq!(cap_names(1 << 50), ["CAP_50"]);
        assert_eq!(cap_names(ALL_CAPS).len(), 41);
    }

    #[test]
    fn files_and_privilege() {
        let w = ks_exec_file {
            ino: 7,
            size: 100,
            ctime_sec: 2,
            ctime_nsec: 5,
            mode: 0o104_755,
            uid: 0,
            nlink: 0,
            magic: 0x0102_1994,
            flags: ks_exec_file_flags::KS_FILE_INTERNAL_MNT.0,
            ..Default::default()
        };
        let f = ExecFile::from_wire(&w, b"memfd:x (deleted)");
        assert_eq!(f.mode, "4755");
        assert!(f.setuid && !f.setgid && f.deleted && f.memfd && !f.writable_by_others);
        assert_eq!(f.fs, "tmpfs");
        assert_eq!(f.ctime.0, 2_000_000_005);
        let not_memfd = ExecFile::from_wire(&ks_exec_file { flags: 0, ..w }, b"memfd:x");
        assert!(!not_memfd.memfd, "a file merely named so");
        let creds = Creds {
            cap_permitted: ALL_CAPS,
            cap_effective: ALL_CAPS,
            changed: true,
        };
        let p = Privilege::of(&creds, &f, (1000, 0, 1000, 1000), 0).unwrap();
        assert!(p.setuid && !p.setgid);
        assert_eq!(p.caps_gained.len(), 41);
        assert!(Privilege::of(
            &Creds {
                changed: false,
                ..creds
            },
            &f,
            (1000, 0, 1000, 1000),
            0
        )
        .is_none());
    }
}
