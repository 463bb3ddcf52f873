//! The one decode boundary: ring-buffer bytes -> [`Record`].
//!
//! Length-check, read the header, find the kind whose `WIRE` lists the
//! header's kind, and let its module copy the body out of the generated wire
//! types (ksight-wire). Nothing here trusts the kernel's bytes: a short record,
//! an unknown kind, or lengths that overrun the record are a [`DecodeError`]
//! (counted by the pipeline), never a panic.

use ksight_wire::{ks_abi, ks_event_hdr};

use crate::decode::copy;
pub use crate::decode::DecodeError;
pub use crate::kinds::Record;
use crate::model::Header;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testing::*;
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
