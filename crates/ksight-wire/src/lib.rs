//! The kernel/user contract, `bpf/include/events.h`, as Rust types.
//!
//! Generated at build time (see build.rs) from the BTF of a types-only BPF
//! object that instantiates every `ks_*` type of events.h once: a layout change
//! in events.h changes these types in the same build, and nothing is mirrored
//! by hand. Every `ks_*` struct is `plain::Plain`, so the decoders in
//! ksight-core copy them out of record bytes without `unsafe` of their own.
//!
//! Enums come out as newtypes with associated constants:
//! `ks_event_kind::KS_EVENT_EXEC.0 == 1`.

#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    clippy::all
)]

include!(concat!(env!("OUT_DIR"), "/wire.rs"));
