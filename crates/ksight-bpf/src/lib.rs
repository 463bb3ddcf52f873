//! ksight's kernel boundary: the only crate that loads BPF, and nearly all of
//! ksight's `unsafe` (system calls the libraries do not wrap).
//!
//! - `bpf/*.bpf.c` are compiled by build.rs; [`object`] opens, configures,
//!   loads and attaches one of them, generically;
//! - [`sensor`]: one BPF object and how it is loaded, a trait; `sensors/`
//!   holds one module per object ksight runs;
//! - [`agent`] runs the sensors a configuration wants, streams their records
//!   ([`transport`]) and reads their maps for the pipeline (`KernelState`);
//! - [`probe`] is the doctor's real probes, [`bench`] the benchmarks' programs.
//!
//! Decoding is not here: records become events in ksight-core.

pub mod agent;
pub mod bench;
pub mod bpfwatch;
pub mod files;
pub mod object;
pub mod probe;
pub mod sensor;
pub mod sockdiag;
pub mod sys;
pub mod transport;

/// One module per BPF object ksight runs (listed by build.rs).
pub mod sensors {
    include!(concat!(env!("OUT_DIR"), "/sensors.rs"));
}

/// Enforcement's pins and counters, for `ksight enforce` and `run`.
pub use sensors::enforce;

pub use agent::{Agent, Degraded, SensorLoad, GAI_PROCESSES};
pub use object::LoadError;
pub use sensor::{AcceptHook, AttachMode, Config, GaiAttach};
pub use transport::{Stream, StreamStats, TransportMode};
