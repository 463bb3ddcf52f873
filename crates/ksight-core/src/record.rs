//! The one decode boundary: ring-buffer bytes -> [`Record`].
//!
//! Length-check, read the header, find the kind whose `WIRE` lists the
//! header's kind, and let its module copy the body out of the generated wire
//! types (ksight-wire). Nothing here trusts the kernel's bytes: a short record,
//! an unknown kind, or lengths that overrun the record are a [`DecodeError`]
//! (counted by the pipeline), never a panic.

use std::mem::size_of;
use std::net::IpAddr;

use ksight_wire::{ks_abi, ks_event_hdr, ks_task};

use crate::event::{Header, TaskFacts};

pub use crate::kinds::Record;

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

/// Decode one record.
pub fn decode(buf: &[u8]) -> Result<Record, DecodeError> {
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
    Record::decode_as(hdr.kind, buf, header)
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
    }
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
    use ksight_wire::ks_event_kind;

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
    use super::testing::*;
    use super::*;
    use ksight_wire::{ks_event_kind, ks_fork_event};

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
    fn every_wire_kind_has_one_decoder() {
        use crate::event::Kind;
        for k in 1..ks_event_kind::KS_EVENT_KIND_MAX.0 {
            let owners: Vec<Kind> = Kind::ALL
                .into_iter()
                .filter(|kind| kind.wire().contains(&k))
                .collect();
            assert!(owners.len() <= 1, "wire kind {k} has decoders {owners:?}");
        }
    }
}
