//! Fuzz the DNS path exactly as ksight runs it: captured bytes (UDP, or a
//! TCP segment with its length prefix) through DnsTracker, query then reply.
#![no_main]

use ksight_core::dns::{DnsTracker, RawDns};
use ksight_core::event::Header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut t = DnsTracker::new();
    let (tcp, body) = match data.split_first() {
        Some((flag, rest)) => (flag & 1 == 1, rest),
        None => (false, data),
    };
    for (i, egress) in [true, false].into_iter().enumerate() {
        let p = RawDns {
            hdr: Header { ktime_ns: i as u64, seq: 0, cpu: 0 },
            owner: None,
            netns: 0,
            cookie: 1,
            src: "127.0.0.1:5000".parse().unwrap(),
            dst: "127.0.0.1:53".parse().unwrap(),
            egress,
            len: body.len() as u32,
            data: body.to_vec(),
            tcp,
        };
        let _ = t.packet(p);
    }
    let _ = t.expire(u64::MAX, 1_000);
});
