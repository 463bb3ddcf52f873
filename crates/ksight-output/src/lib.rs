//! Outputs as a service. Any number at once, each declared by an
//! `[[output]]` table of the config file ([`spec::OutputSpec`]): a kind
//! (stdout, file, syslog, webhook), a format, a filter and a bounded queue.
//!
//! The flow: the pipeline writes each event into [`Outputs`] (a core `Sink`)
//! on the poll thread, which only filters and queues it (an `Arc`, no
//! formatting); each output's thread takes batches from its queue, renders
//! them and delivers them. A slow or dead receiver fills its own queue only:
//! the queue then drops its oldest (or newest) events, counted, and the
//! others go on. After each poll the losses since the last one become `lost`
//! events (stage `output`, the output's name) written to every output.
//!
//! No output runs a program (no "pipe to command"): a child process that
//! stalls or dies would be a second, unaccounted queue, and a command line in
//! a config file is a way to run code as root. Send to syslog or a webhook
//! and let the receiver run what it likes.

pub mod file;
pub mod nats;
pub mod outputs;
pub mod queue;
pub mod render;
pub mod spec;
pub mod spool;
pub mod syslog;
pub mod units;
pub mod webhook;

pub use outputs::{FleetCounts, Outputs, SharedOutputs};
pub use spec::OutputSpec;
