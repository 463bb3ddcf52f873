//! ksight's pure-Rust side: the event model, the pipeline, the sinks. No
//! libbpf, no `unsafe` (the wire types' `Plain` impls live in ksight-wire).
//!
//! Data flows one way through these modules:
//! `record` (bytes -> a decoded kernel record) -> `pipeline` (cheap filter;
//! the kind's `born`: `enrich` with the process table and cgroups; `filter`)
//! -> `sink` (JSON Lines, `table`). Everything about one event kind lives in
//! its module under `kinds/`; `kind` says what a kind is, `field` makes every
//! field addressable by name.

pub mod cgroup;
pub mod dns;
pub mod enrich;
pub mod event;
pub mod field;
pub mod filter;
pub mod kind;
pub mod kinds;
pub mod net;
pub mod pipeline;
pub mod procfs;
pub mod proctable;
pub mod record;
pub mod sink;
pub mod table;
pub mod text;
