//! What an event kind is: the [`KindSpec`] trait that each module of `kinds/`
//! implements once, and the [`kinds!`] macro that derives every match site from
//! the list of those modules.
//!
//! A kind declares, in one place: its name (the JSON `type`, the `--events`
//! value, the name in rules), the kernel records it is born from (events.h's
//! `enum ks_event_kind`), how their bytes decode, what the pipeline does with a
//! decoded record, its JSON detail (the type itself, serialised with serde), its
//! fields for the registry, and its table cell. From the list of kinds, the
//! macro makes the [`Kind`](crate::event::Kind) enum, the
//! [`Detail`](crate::event::Detail) and [`Record`](crate::record::Record)
//! enums and the dispatch over them; nothing else names every kind.

use std::fmt;

use serde::Serialize;

use crate::event::{Event, Header, TaskFacts};
use crate::field::Fields;
use crate::net::NetInfo;
use crate::pipeline::{Cx, KernelState};
use crate::record::DecodeError;
use crate::table::{Cell, Colour};

/// One event kind. Implemented by the type that holds the kind's detail: the
/// part of its JSON after the common fields (`{"exec": ..., "ancestors": ...}`
/// for `exec`), which is what `Serialize` writes.
pub trait KindSpec: Sized + Clone + fmt::Debug + PartialEq + Serialize + 'static {
    /// The kind's name: the JSON `type`, the `--events` value, its name in rules.
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
    fn born(hdr: Header, rec: Self::Record, state: &mut Self::State, cx: &mut Cx<'_>);

    /// Called after each poll (with `last` once more at stop): events made
    /// from state rather than from one record.
    fn tick(_state: &mut Self::State, _cx: &mut Cx<'_>, _kernel: &dyn KernelState, _last: bool) {}

    /// This kind's fields, by dotted path (the common and `process.*` ones are
    /// declared once for all kinds, in `event.rs`).
    fn fields(f: &mut Fields<Self>);

    /// The table's DETAIL column.
    fn table(&self, ev: &Event, cell: &mut Cell<'_>);

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

            pub(crate) fn declare_fields(registry: &mut $crate::field::Registry) {
                $(registry.declare::<$module::$ty>(Kind::$ty);)+
            }
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

            pub fn table(&self, ev: &$crate::event::Event, cell: &mut $crate::table::Cell<'_>) {
                match self { $(Detail::$ty(d) => d.table(ev, cell)),+ }
            }

            pub fn colour(&self) -> $crate::table::Colour {
                match self { $(Detail::$ty(d) => d.colour()),+ }
            }
        }

        $(
            impl $crate::kind::FromDetail for $module::$ty {
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
            $($ty($crate::event::Header, <$module::$ty as $crate::kind::KindSpec>::Record)),+
        }

        impl Record {
            pub fn kind(&self) -> Kind {
                match self { $(Record::$ty(..) => Kind::$ty),+ }
            }

            pub fn header(&self) -> &$crate::event::Header {
                match self { $(Record::$ty(h, _) => h),+ }
            }

            pub(crate) fn decode_as(
                wire: u32,
                buf: &[u8],
                hdr: $crate::event::Header,
            ) -> Result<Record, $crate::record::DecodeError> {
                $(
                    if <$module::$ty>::WIRE.contains(&wire) {
                        return <$module::$ty>::decode(buf, hdr).map(|r| Record::$ty(hdr, r));
                    }
                )+
                Err($crate::record::DecodeError::UnknownKind(wire))
            }

            pub fn subject(&self) -> $crate::kind::Subject<'_> {
                match self { $(Record::$ty(_, r) => <$module::$ty>::subject(r)),+ }
            }
        }

        /// Every kind's private state.
        #[derive(Default)]
        #[allow(non_snake_case)]
        pub(crate) struct States { $($ty: <$module::$ty as $crate::kind::KindSpec>::State),+ }

        impl States {
            pub(crate) fn born(&mut self, rec: Record, cx: &mut $crate::pipeline::Cx<'_>) {
                match rec { $(Record::$ty(h, r) => <$module::$ty>::born(h, r, &mut self.$ty, cx)),+ }
            }

            /// In documentation order: UDP flows, then DNS timeouts, then loss.
            pub(crate) fn tick(
                &mut self,
                cx: &mut $crate::pipeline::Cx<'_>,
                kernel: &dyn $crate::pipeline::KernelState,
                last: bool,
            ) {
                for kind in Kind::ALL {
                    match kind {
                        $(Kind::$ty => <$module::$ty>::tick(&mut self.$ty, cx, kernel, last),)+
                    }
                }
            }
        }
    };
}

/// Borrow a kind's detail out of an event's. Implemented by [`kinds!`].
pub trait FromDetail: Sized {
    const KIND: crate::event::Kind;
    fn from_detail(d: &crate::event::Detail) -> Option<&Self>;
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
