//! Reading the kernel's records: the wire structs (ksight-wire) copied out of
//! record bytes, and the conversions every kind's decoder shares. Nothing here
//! trusts the bytes: a short buffer or a bad family is a [`DecodeError`].

use std::mem::size_of;
use std::net::IpAddr;

use ksight_wire::{ks_task, ks_task_flags};

use crate::model::TaskFacts;

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
    #[error("{what}: field lengths ({sum} bytes) overrun its data ({len} bytes)")]
    Overrun {
        what: &'static str,
        sum: usize,
        len: usize,
    },
}

/// A wire struct copied out of `buf` at `off`.
pub fn copy<T: plain::Plain + Default>(
    buf: &[u8],
    off: usize,
    what: &'static str,
) -> Result<T, DecodeError> {
    let mut v = T::default();
    let short = || DecodeError::Short {
        what,
        len: buf.len(),
        need: off + size_of::<T>(),
    };
    let bytes = buf.get(off..).ok_or_else(short)?;
    plain::copy_from_bytes(&mut v, bytes).map_err(|_| short())?;
    Ok(v)
}

/// A wire struct whose record may be cut short (a variable-length tail the
/// kernel did not fill): the bytes present, zero-padded. At least `min` bytes
/// must be there.
pub fn copy_padded<T: plain::Plain + Default>(
    buf: &[u8],
    min: usize,
    what: &'static str,
) -> Result<T, DecodeError> {
    if buf.len() < min {
        return Err(DecodeError::Short {
            what,
            len: buf.len(),
            need: min,
        });
    }
    let mut full = vec![0u8; size_of::<T>()];
    let n = buf.len().min(full.len());
    full[..n].copy_from_slice(&buf[..n]);
    copy(&full, 0, what)
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// An address as events.h stores it: network byte order, IPv4 in the first 4 bytes.
pub fn ip(family: u16, b: &[u8; 16]) -> Result<IpAddr, DecodeError> {
    match family {
        AF_INET => Ok(IpAddr::from([b[0], b[1], b[2], b[3]])),
        AF_INET6 => Ok(IpAddr::from(*b)),
        f => Err(DecodeError::Family(f)),
    }
}

pub fn task(t: &ks_task) -> TaskFacts {
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
        from_procfs: t.flags & ks_task_flags::KS_TASK_PROCFS.0 != 0,
    }
}

/// `task`'s inverse: the kernel's record of a task, from what userspace
/// knows of it (a socket's owner read from /proc, handed to the kernel side).
pub fn ks_task_of(t: &TaskFacts) -> ks_task {
    let mut k = ks_task {
        start_ns: t.start_ns,
        parent_start_ns: t.parent_start_ns,
        cgroup_id: t.cgroup_id,
        pid: t.pid,
        tid: t.tid,
        ppid: t.ppid,
        uid: t.uid,
        gid: t.gid,
        euid: t.euid,
        egid: t.egid,
        auid: t.auid.unwrap_or(u32::MAX),
        pidns_ino: t.pidns,
        ns_pid: t.ns_pid,
        ns_tid: t.ns_tid,
        flags: if t.from_procfs {
            ks_task_flags::KS_TASK_PROCFS.0
        } else {
            0
        },
        ..Default::default()
    };
    // NUL-terminated, like the kernel's
    let keep = k.comm.len() - 1;
    for (dst, &b) in k.comm.iter_mut().zip(t.comm.iter().take(keep)) {
        *dst = b as i8;
    }
    k
}

/// Bytes of a C char array up to its first NUL.
pub fn cstr(chars: &[i8]) -> Vec<u8> {
    chars
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Building wire records for the kinds' decode tests.
    use super::*;
    use ksight_wire::{ks_abi, ks_event_hdr, ks_event_kind};

    pub fn bytes_of<T: plain::Plain>(v: &T) -> Vec<u8> {
        // SAFETY: T is Plain (no padding, any bit pattern valid), so its bytes are initialised.
        unsafe { plain::as_bytes(v) }.to_vec()
    }

    pub fn hdr(kind: ks_event_kind, size: usize) -> ks_event_hdr {
        ks_event_hdr {
            ktime: 1234,
            seq: 9,
            kind: kind.0,
            size: size as u32,
            cpu: 1,
            abi: ks_abi::KS_ABI_VERSION.0,
        }
    }

    pub fn wire_task() -> ks_task {
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
}

#[cfg(test)]
mod tests {
    use super::testing::wire_task;
    use super::*;

    #[test]
    fn a_task_goes_back_to_the_kernel_as_it_came() {
        let mut facts = task(&wire_task());
        assert_eq!(task(&ks_task_of(&facts)), facts);
        // a 16-byte comm keeps its NUL, as the kernel's does
        facts.comm = b"0123456789abcdefXYZ".to_vec();
        assert_eq!(task(&ks_task_of(&facts)).comm, b"0123456789abcde");
    }
}
