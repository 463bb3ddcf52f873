//! What an event kind is: the [`KindSpec`] trait that each module of `kinds/`
//! implements once, what a kind works with ([`Cx`]: the enricher, the
//! counters, the settings; [`KernelState`]: the kernel's maps), and the
//! [`kinds!`] macro that derives every match site from the list of kinds.
//!
//! A kind declares, in one place: its name (the JSON `type`, the `--events`
//! value, the name in rules), the kernel records it is born from (events.h's
//! `enum ks_event_kind`), how their bytes decode, what the pipeline does with a
//! decoded record, its JSON detail (the type itself, serialised with serde), its
//! fields, and its table cell. From the list of kinds, the macro makes the
//! `Kind`, `Detail` and `Record` enums and the dispatch over them; nothing
//! else names every kind.
//!
//! Layers: this module and the ones it uses (`model`, `decode`, `field`,
//! `net`, `table`, `enrich`) know no kind; the kinds use them; `kinds/mod.rs`
//! gathers the kinds; `event`, `registry`, `record`, `filter`, `sink` and
//! `pipeline` use the gathered enums. No module imports one above it.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::SocketAddr;

use ksight_wire::ks_event_kind;
use serde::Serialize;

use crate::decode::DecodeError;
use crate::enrich::Enricher;
use crate::field::Fields;
use crate::files::RawFileEvent;
use crate::model::{EventOf, Header, Process, TaskFacts};
use crate::net::{NetInfo, RawUdpFlow};
use crate::sideband::RawBpfLoad;
use crate::table::{Cell, Colour};

/// One event kind. Implemented by the type that holds the kind's detail: the
/// part of its JSON after the common fields (`{"exec": ..., "ancestors": ...}`
/// for `exec`), which is what `Serialize` writes.
pub trait KindSpec: Sized + Clone + fmt::Debug + PartialEq + Serialize + 'static {
    /// The kind's name: the JSON `type`, the `--events` value, its name in
    /// rules; events.h's `KS_EVENT_<NAME>` for kinds born in the kernel.
    const NAME: &'static str;
    /// The kernel record kinds (events.h `KS_EVENT_*`) this kind decodes;
    /// empty for kinds made in userspace (`lost`).
    const WIRE: &'static [u32];
    /// Where the kind comes in lists (help, summary): its first wire kind,
    /// userspace kinds last.
    const RANK: u32 = match Self::WIRE.first() {
        Some(w) => *w,
        None => u32::MAX,
    };

    /// What the kernel's record says, decoded but not enriched.
    type Record: fmt::Debug + Clone + PartialEq;
    /// Kind-private state the pipeline keeps between records (a DNS query
    /// waiting for its answer, UDP sockets released since the last poll).
    type State: Default;

    /// Bytes of one record of one of [`Self::WIRE`]'s kinds, header included
    /// (already read into `hdr`), into its decoded form.
    fn decode(buf: &[u8], hdr: Header) -> Result<Self::Record, DecodeError>;

    /// The process a cheap filter (pid, comm, uid) can judge the record by,
    /// before any enrichment. [`Subject::Later`] when only the built event tells.
    fn subject(_rec: &Self::Record) -> Subject<'_> {
        Subject::Later
    }

    /// What the pipeline does with a decoded record: bookkeeping (the process
    /// table, state) and, unless the cheap filter refused it, the event(s).
    fn born(hdr: Header, rec: Self::Record, state: &mut Self::State, cx: &mut Cx<'_, Self>);

    /// Called after each poll (with `last` once more at stop): events made
    /// from state rather than from one record.
    fn tick(
        _state: &mut Self::State,
        _cx: &mut Cx<'_, Self>,
        _kernel: &dyn KernelState,
        _last: bool,
    ) {
    }

    /// This kind's fields, by dotted path (the common and `process.*` ones are
    /// declared once for all kinds, in `registry.rs`).
    fn fields(f: &mut Fields<Self>);

    /// The table's DETAIL column.
    fn table(&self, cell: &mut Cell<'_>);

    /// The colour of the table's EVENT column.
    fn colour(&self) -> Colour {
        Colour::Plain
    }

    /// The socket, for network kinds.
    fn net(&self) -> Option<&NetInfo> {
        None
    }
}

/// Who a record is about, as far as a cheap filter is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// The event's process will be this task; `also` is another pid the event
    /// matches on (a fork's child).
    Task {
        task: &'a TaskFacts,
        also: Option<u32>,
    },
    /// The event will have no process (a socket whose owner is unknown).
    Nobody,
    /// Only the built event tells (DNS transactions, UDP flows).
    Later,
}

/// The record type of kinds made in userspace: there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRecord {}

/// Number of wire record kinds (events.h KS_EVENT_KIND_MAX): the size of the
/// kernel's drop counters.
pub const WIRE_KINDS: usize = ks_event_kind::KS_EVENT_KIND_MAX.0 as usize;

/// What the pipeline reads from the kernel besides records: state the BPF
/// programs keep in maps.
pub trait KernelState {
    /// The UDP flows the kernel has counted: all, or those of the given
    /// sockets, which are then removed (their sockets are gone).
    fn udp_flows(&self, only: Option<&HashSet<u64>>) -> Vec<RawUdpFlow>;
    /// The flows of a released socket with these remotes, removed from the
    /// kernel's map: a lookup each, no scan.
    fn udp_flows_of(&self, cookie: u64, remotes: &[SocketAddr]) -> Vec<RawUdpFlow>;
    /// The owner the kernel recorded for a UDP socket, and its netns.
    fn udp_owner(&self, cookie: u64) -> Option<(TaskFacts, u32)>;
    /// Records the kernel could not deliver so far: per CPU, by wire kind.
    fn drops(&self) -> io::Result<Vec<[u64; WIRE_KINDS]>>;
    /// Per program, the runs the kernel skipped so far (nested on one CPU).
    fn skipped_runs(&self) -> Vec<(String, u64)>;
    /// The file watcher's events since the last call, in order (none when
    /// it does not run).
    fn file_events(&self) -> Vec<RawFileEvent> {
        Vec::new()
    }
    /// File events the kernel's fanotify queue dropped so far (overflows).
    fn file_overflows(&self) -> u64 {
        0
    }
    /// BPF programs others loaded since the last call, in order.
    fn bpf_loads(&self) -> Vec<RawBpfLoad> {
        Vec::new()
    }
    /// Records of BPF loads the kernel's side-band buffer dropped so far.
    fn bpf_loads_lost(&self) -> u64 {
        0
    }
    /// Addresses of DNS answers for denied names the enforcement's full
    /// map refused so far.
    fn enforce_answers_refused(&self) -> u64 {
        0
    }
}

/// What the kinds count, for the exit summary.
#[derive(Debug, Clone)]
pub struct Counters {
    /// Events a filter refused.
    pub filtered: u64,
    pub duplicate_exits: u64,
    /// Records the kernel refused, by wire kind.
    pub lost: [u64; WIRE_KINDS],
    /// Program runs the kernel skipped (nested on one CPU): records possibly lost.
    pub skipped_runs: u64,
    /// Datagrams on DNS ports that did not parse as DNS.
    pub dns_malformed: u64,
    /// Of those, responses to a query ksight saw (reported, status `malformed`).
    pub dns_malformed_answers: u64,
    /// Queries still waiting for their response at stop (reported, `pending`).
    pub dns_pending: u64,
    /// getaddrinfo calls that had not returned at stop (reported, `pending`).
    pub gai_pending: u64,
    /// Events of the side channels lost: fanotify queue overflows, BPF load
    /// records perf's side band dropped (reported, `lost`).
    pub side_lost: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            filtered: 0,
            duplicate_exits: 0,
            lost: [0; WIRE_KINDS],
            skipped_runs: 0,
            dns_malformed: 0,
            dns_malformed_answers: 0,
            dns_pending: 0,
            gai_pending: 0,
            side_lost: 0,
        }
    }
}

/// Settings of the kinds that keep state.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// How often open UDP flows with new traffic are reported.
    pub udp_interval_ns: u64,
    /// A DNS query with no response after this long is reported as unanswered.
    pub dns_timeout_ns: u64,
    /// When the programs were attached (CLOCK_MONOTONIC ns): losses are
    /// counted from then.
    pub started_ktime: u64,
    /// How long the transport may hold a record back (the perf buffer's
    /// reorder window; 0 for the ring buffer): events of the side channels
    /// (fanotify, perf's side band) wait as long, so that the records before
    /// them (a process's exec) are in first.
    pub side_delay_ns: u64,
    /// The ids of the rules the kernel enforces, by their bit
    /// (bpf/enforce.bpf.c), to name them in `enforcement` events.
    pub enforce_rules: Vec<std::sync::Arc<str>>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            udp_interval_ns: 10_000_000_000,
            dns_timeout_ns: 5_000_000_000,
            started_ktime: 0,
            side_delay_ns: 0,
            enforce_rules: Vec::new(),
        }
    }
}

/// What a kind's `born` and `tick` work with.
pub struct Cx<'a, K> {
    pub enricher: &'a mut Enricher,
    pub counters: &'a mut Counters,
    pub config: &'a PipelineConfig,
    /// CLOCK_MONOTONIC ns: the record's time in `born`, the poll's in `tick`.
    pub now: u64,
    keep: bool,
    out: &'a mut Vec<EventOf<K>>,
}

impl<'a, K> Cx<'a, K> {
    /// Made by `kinds!`'s dispatch.
    #[doc(hidden)]
    pub fn new(
        enricher: &'a mut Enricher,
        counters: &'a mut Counters,
        config: &'a PipelineConfig,
        now: u64,
        keep: bool,
        out: &'a mut Vec<EventOf<K>>,
    ) -> Self {
        Cx {
            enricher,
            counters,
            config,
            now,
            keep,
            out,
        }
    }

    /// Whether the cheap filter lets the record's event through: when not,
    /// the kind does its bookkeeping, calls [`Cx::filtered`] and makes no event.
    pub fn keep(&self) -> bool {
        self.keep
    }

    /// The record's event was filtered out before it was made.
    pub fn filtered(&mut self) {
        self.counters.filtered += 1;
    }

    /// The event of a kernel record.
    pub fn record_event(&mut self, hdr: &Header, process: Option<Process>, detail: K) {
        self.out.push(EventOf {
            time: self.enricher.clock().wall(hdr.ktime_ns),
            ktime: hdr.ktime_ns,
            cpu: hdr.cpu,
            seq: Some(hdr.seq),
            process,
            detail,
        });
    }

    /// An event ksight made from state at `ktime` (no record of its own: no
    /// sequence number, CPU 0).
    pub fn state_event(&mut self, ktime: u64, process: Option<Process>, detail: K) {
        self.out.push(EventOf {
            time: self.enricher.clock().wall(ktime),
            ktime,
            cpu: 0,
            seq: None,
            process,
            detail,
        });
    }

    /// Any event.
    pub fn emit(&mut self, ev: EventOf<K>) {
        self.out.push(ev);
    }
}

/// Derives the kind enums and their dispatch from the list of kind modules
/// (each `module::Type`, `Type: KindSpec`). Invoked once, in `kinds/mod.rs`,
/// with the list build.rs makes of the files in `kinds/`.
#[macro_export]
#[doc(hidden)]
macro_rules! kinds {
    ($($module:ident :: $ty:ident),+ $(,)?) => {
        use $crate::kind::KindSpec as _;

        /// Every event kind.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Kind { $($ty),+ }

        impl Kind {
            /// Every kind, in documentation order (by wire kind; userspace kinds last).
            pub const ALL: [Kind; [$(stringify!($ty)),+].len()] = {
                let mut all = [$(Kind::$ty),+];
                let mut i = 1;
                while i < all.len() {
                    let mut j = i;
                    while j > 0 && all[j - 1].rank() > all[j].rank() {
                        let t = all[j - 1];
                        all[j - 1] = all[j];
                        all[j] = t;
                        j -= 1;
                    }
                    i += 1;
                }
                all
            };

            /// The JSON `type`, the `--events` value.
            pub const fn name(self) -> &'static str {
                match self { $(Kind::$ty => <$module::$ty>::NAME),+ }
            }

            const fn rank(self) -> u32 {
                match self { $(Kind::$ty => <$module::$ty>::RANK),+ }
            }

            /// The events.h record kinds this kind decodes.
            pub const fn wire(self) -> &'static [u32] {
                match self { $(Kind::$ty => <$module::$ty>::WIRE),+ }
            }

            /// The kind a wire record kind (a drop-counter index) stands for.
            pub fn of_wire(wire: u32) -> Option<Kind> {
                $(if <$module::$ty>::WIRE.contains(&wire) { return Some(Kind::$ty); })+
                None
            }

            pub fn from_name(name: &str) -> Option<Kind> {
                Kind::ALL.into_iter().find(|k| k.name() == name)
            }

            /// Call `v` with each kind's type.
            pub fn visit_all(v: &mut impl KindVisitor) {
                $(v.visit::<$module::$ty>(Kind::$ty);)+
            }
        }

        /// Something done once per kind, with its type (the field registry).
        pub trait KindVisitor {
            fn visit<K: $crate::kind::KindSpec + FromDetail>(&mut self, kind: Kind);
        }

        /// The part of an event that depends on its kind.
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(untagged)]
        #[non_exhaustive]
        pub enum Detail { $($ty($module::$ty)),+ }

        impl Detail {
            pub fn kind(&self) -> Kind {
                match self { $(Detail::$ty(_) => Kind::$ty),+ }
            }

            pub fn net(&self) -> Option<&$crate::net::NetInfo> {
                match self { $(Detail::$ty(d) => d.net()),+ }
            }

            pub fn table(&self, cell: &mut $crate::table::Cell<'_>) {
                match self { $(Detail::$ty(d) => d.table(cell)),+ }
            }

            pub fn colour(&self) -> $crate::table::Colour {
                match self { $(Detail::$ty(d) => d.colour()),+ }
            }
        }

        /// Borrow a kind's detail out of an event's.
        pub trait FromDetail: Sized {
            const KIND: Kind;
            fn from_detail(d: &Detail) -> Option<&Self>;
        }

        $(
            impl FromDetail for $module::$ty {
                const KIND: Kind = Kind::$ty;
                fn from_detail(d: &Detail) -> Option<&Self> {
                    #[allow(unreachable_patterns)]
                    match d { Detail::$ty(x) => Some(x), _ => None }
                }
            }
            impl From<$module::$ty> for Detail {
                fn from(d: $module::$ty) -> Detail { Detail::$ty(d) }
            }
        )+

        /// A decoded kernel record, by the kind it belongs to.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum Record {
            $($ty($crate::model::Header, <$module::$ty as $crate::kind::KindSpec>::Record)),+
        }

        impl Record {
            pub fn kind(&self) -> Kind {
                match self { $(Record::$ty(..) => Kind::$ty),+ }
            }

            pub fn header(&self) -> &$crate::model::Header {
                match self { $(Record::$ty(h, _) => h),+ }
            }

            /// Decode the body of a record whose header says `wire`.
            pub fn decode_as(
                wire: u32,
                buf: &[u8],
                hdr: $crate::model::Header,
            ) -> Result<Record, $crate::decode::DecodeError> {
                $(
                    if <$module::$ty>::WIRE.contains(&wire) {
                        return <$module::$ty>::decode(buf, hdr).map(|r| Record::$ty(hdr, r));
                    }
                )+
                Err($crate::decode::DecodeError::UnknownKind(wire))
            }

            pub fn subject(&self) -> $crate::kind::Subject<'_> {
                match self { $(Record::$ty(_, r) => <$module::$ty>::subject(r)),+ }
            }
        }

        /// Every kind's private state, and the events it made in one step.
        #[derive(Default)]
        #[allow(non_snake_case)]
        pub struct States {
            $($ty: (
                <$module::$ty as $crate::kind::KindSpec>::State,
                Vec<$crate::model::EventOf<$module::$ty>>,
            )),+
        }

        /// What every step shares.
        pub struct Step<'a> {
            pub enricher: &'a mut $crate::enrich::Enricher,
            pub counters: &'a mut $crate::kind::Counters,
            pub config: &'a $crate::kind::PipelineConfig,
            pub now: u64,
            pub out: &'a mut Vec<$crate::model::EventOf<Detail>>,
        }

        impl States {
            /// A record through its kind's `born`; `keep`: the cheap filter's verdict.
            pub fn born(&mut self, rec: Record, keep: bool, s: Step<'_>) {
                match rec {
                    $(Record::$ty(h, r) => {
                        let (state, made) = &mut self.$ty;
                        let mut cx = $crate::kind::Cx::new(s.enricher, s.counters, s.config, s.now, keep, made);
                        <$module::$ty>::born(h, r, state, &mut cx);
                        s.out.extend(made.drain(..).map(|e| e.map(Detail::$ty)));
                    })+
                }
            }

            /// Every kind's `tick`, in documentation order: UDP flows, then
            /// DNS timeouts, then loss.
            pub fn tick(&mut self, kernel: &dyn $crate::kind::KernelState, last: bool, s: Step<'_>) {
                for kind in Kind::ALL {
                    match kind {
                        $(Kind::$ty => {
                            let (state, made) = &mut self.$ty;
                            let mut cx = $crate::kind::Cx::new(&mut *s.enricher, &mut *s.counters, s.config, s.now, true, made);
                            <$module::$ty>::tick(state, &mut cx, kernel, last);
                            s.out.extend(made.drain(..).map(|e| e.map(Detail::$ty)));
                        })+
                    }
                }
            }
        }
    };
}

/// An enum written as one of a fixed set of names (in JSON, the table and rules).
#[macro_export]
#[doc(hidden)]
macro_rules! named_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            /// Every value's name, for the field registry.
            pub const NAMES: &'static [&'static str] = &[$($s),+];

            pub const fn name(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
