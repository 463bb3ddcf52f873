//! One module per event kind: everything about a kind is in its file.
//!
//! Each file here is a kind: `tcp_close.rs` declares the type `TcpClose`,
//! which implements [`KindSpec`](crate::kind::KindSpec) (its name, the
//! kernel records it comes from and how they decode, what the pipeline does
//! with them, its JSON, its fields, its table cell). build.rs lists the files
//! of this directory into `$OUT_DIR/kinds.rs`, which declares the modules and
//! invokes [`kinds!`](crate::kinds!) on them: that makes the `Kind`, `Detail`
//! and `Record` enums and all their dispatch. Adding a kind is adding a file
//! (docs/architecture.md has the whole checklist).

include!(concat!(env!("OUT_DIR"), "/kinds.rs"));
