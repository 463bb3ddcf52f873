//! ksight's pure-Rust side: the event kinds, decoding, the pipeline, the sinks.
//! No libbpf, no `unsafe` (the wire types' `Plain` impls live in ksight-wire).
//!
//! Data flows one way through these modules:
//! `record` (bytes -> a decoded kernel record) -> `pipeline` (cheap filter;
//! the kind's `born`: `enrich` with the process table and cgroups; `filter`)
//! -> `sink` (JSON Lines, the table). Everything about one event kind lives in
//! its module under `kinds/`; `kind` says what a kind is; `registry` makes
//! every field addressable by name. Modules are layered as listed below: each
//! uses only those listed before it.

// below the kinds: they know no kind
pub mod cgroup;
pub mod context;
pub mod decode;
pub mod dns;
pub mod enrich;
pub mod field;
pub mod files;
pub mod hash;
pub mod model;
pub mod net;
pub mod procfs;
pub mod proctable;
pub mod runtime;
pub mod sideband;
pub mod table;
pub mod text;
// what a kind is, and the helpers the TCP kinds share
pub mod kind;
// enforcement policy (uses named_enum!; the enforcement kind reads it)
pub mod enforce;
pub mod tcp;
// the kinds, one module each, and the enums gathered from them
pub mod kinds;
// above the kinds
pub mod event;
pub mod filter;
pub mod pipeline;
pub mod record;
pub mod registry;
pub mod sink;
