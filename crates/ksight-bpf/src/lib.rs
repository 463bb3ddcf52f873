//! ksight's kernel boundary: the only crate that needs clang, libbpf, root or `unsafe`.
//!
//! - `bpf/*.bpf.c` are compiled into skeletons by build.rs (`skel`);
//! - [`agent`] loads, configures and attaches them and reads their counters;
//! - [`decode`] is the one place where ring-buffer bytes become typed records;
//! - [`wire`] re-exports the generated record types.

pub mod agent;
pub mod bench;
pub mod decode;
pub mod probe;
pub mod sys;
pub mod transport;
pub mod wire;

mod skel {
    #![allow(clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/process.skel.rs"));
}

mod skel_net {
    #![allow(clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/net.skel.rs"));
}

mod skel_accept {
    #![allow(clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/accept.skel.rs"));
}

mod skel_udp {
    #![allow(clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/udp.skel.rs"));
}

mod skel_floor {
    #![allow(clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/floor.skel.rs"));
}

mod skel_gai {
    #![allow(clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/gai.skel.rs"));
}

mod skel_probe {
    #![allow(clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/probe.skel.rs"));
}

mod skel_bench {
    #![allow(clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/bench.skel.rs"));
}

pub use agent::{AcceptHook, Agent, AttachMode, Config, LoadError};
pub use decode::{decode, DecodeError};
pub use transport::{Stream, StreamStats, TransportMode};
