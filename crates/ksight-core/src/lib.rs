//! ksight's pure-Rust side: no libbpf, no `unsafe`.
//!
//! Data flows one way through these modules:
//! `raw` (decoded kernel records) -> `enrich` (process table, cgroups) ->
//! `event` (the typed model) -> `filter` -> `sink` (JSON Lines, table).

pub mod cgroup;
pub mod dns;
pub mod doctor;
pub mod enrich;
pub mod event;
pub mod filter;
pub mod procfs;
pub mod proctable;
pub mod raw;
pub mod sink;
pub mod text;
