//! Getting records out of the kernel, in order, whichever buffer carries them.
//!
//! - **Ring buffer** (5.8+): one buffer for all CPUs, records in the order they
//!   were reserved, which is causal order. Delivered as they are read.
//! - **Perf buffer** (the fallback): one buffer per CPU, so a child's exec on
//!   CPU 1 can be read before its fork on CPU 0. Records are held in a heap
//!   and released in kernel-timestamp order once no earlier record can still
//!   arrive: after a pass that drained every CPU's buffer, begun at time P,
//!   every record stamped before P - window is in hand (`window` covers the
//!   few microseconds between a hook reading the clock and its record landing
//!   in the buffer). The cost is added latency of one poll interval plus the
//!   window. A record that still arrives behind one already released is
//!   delivered at once and counted as `late`.
//!
//! The consumer sees the same thing either way: record bytes, in causal order.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use libbpf_rs::{PerfBuffer, RingBuffer};

use crate::sys::ktime_now;

/// Which buffer carries records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum TransportMode {
    /// the ring buffer where the kernel has it (5.8+), else the perf buffer
    Auto,
    Ringbuf,
    Perf,
}

impl std::fmt::Display for TransportMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportMode::Auto => "auto",
            TransportMode::Ringbuf => "ringbuf",
            TransportMode::Perf => "perf",
        })
    }
}

/// What the stream noticed about order and loss (perf buffer only; zeros for the ring).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Records that arrived with an older timestamp than one read before them:
    /// the disorder the merge repaired.
    pub out_of_order_arrivals: u64,
    /// Records that arrived after a later record had been released: order not repaired.
    pub late: u64,
    /// Samples the perf buffer reported lost (the same losses the per-kind
    /// drop counters count; a cross-check).
    pub perf_lost: u64,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    ktime: u64,
    arrival: u64,
    data: Vec<u8>,
}

#[derive(Default)]
struct Reorder {
    heap: BinaryHeap<Reverse<Pending>>,
    arrivals: u64,
    max_seen: u64,
    released: u64,
    stats: StreamStats,
}

impl Reorder {
    fn push(&mut self, data: &[u8]) {
        // the header's first field is the ktime; a runt record sorts first and
        // goes on to the decoder, which reports it
        let ktime = data
            .get(..8)
            .map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")));
        if ktime < self.max_seen {
            self.stats.out_of_order_arrivals += 1;
        }
        self.max_seen = self.max_seen.max(ktime);
        self.arrivals += 1;
        self.heap.push(Reverse(Pending {
            ktime,
            arrival: self.arrivals,
            data: data.to_vec(),
        }));
    }

    /// The next record stamped at or before `cutoff`.
    fn pop_until(&mut self, cutoff: u64) -> Option<Pending> {
        if self.heap.peek()?.0.ktime > cutoff {
            return None;
        }
        let Reverse(p) = self.heap.pop()?;
        if p.ktime < self.released {
            self.stats.late += 1;
        }
        self.released = self.released.max(p.ktime);
        Some(p)
    }
}

type Deliver<'a> = Box<dyn FnMut(&[u8]) -> i32 + 'a>;

/// An open perf buffer whose samples wait in the reorder heap until a
/// [`Stream`] takes them. Opened before any program is attached: until its
/// per-CPU buffers are in the map, the kernel refuses every record.
pub(crate) struct PerfParts {
    buf: PerfBuffer<'static>,
    reorder: Rc<RefCell<Reorder>>,
}

impl PerfParts {
    /// `build` makes the PerfBuffer from the two callbacks it is given.
    pub(crate) fn open(
        build: impl FnOnce(
            Box<dyn FnMut(i32, &[u8])>,
            Box<dyn FnMut(i32, u64)>,
        ) -> libbpf_rs::Result<PerfBuffer<'static>>,
    ) -> libbpf_rs::Result<Self> {
        let reorder = Rc::new(RefCell::new(Reorder::default()));
        let (r1, r2) = (Rc::clone(&reorder), Rc::clone(&reorder));
        let buf = build(
            Box::new(move |_cpu, data| r1.borrow_mut().push(data)),
            Box::new(move |_cpu, n| r2.borrow_mut().stats.perf_lost += n),
        )?;
        Ok(PerfParts { buf, reorder })
    }
}

enum Inner<'a> {
    Ring(RingBuffer<'a>),
    Perf {
        buf: PerfBuffer<'static>,
        reorder: Rc<RefCell<Reorder>>,
        deliver: Deliver<'a>,
        window_ns: u64,
    },
}

/// Records from the kernel, in causal order, handed to the `deliver` callback
/// given at construction (see `Agent::stream`).
pub struct Stream<'a> {
    inner: Inner<'a>,
}

/// Records one pass over the ring buffer delivers at most.
const RING_BATCH: usize = 1 << 16;

/// Wait until `epoll_fd` reports a ready buffer, or `timeout`.
fn wait_readable(epoll_fd: i32, timeout: Duration) -> io::Result<()> {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one event slot of our own; the fd is libbpf's epoll instance.
    let rc = unsafe { libc::epoll_wait(epoll_fd, &mut ev, 1, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// `check` for calls that return a count.
fn check_n(rc: i32) -> io::Result<i32> {
    check(rc)?;
    Ok(rc.max(0))
}

fn check(rc: i32) -> io::Result<()> {
    if rc < 0 && rc != -libc::EINTR {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}

fn lib_err(e: libbpf_rs::Error) -> io::Error {
    io::Error::other(e)
}

impl<'a> Stream<'a> {
    pub(crate) fn ring(rb: RingBuffer<'a>) -> Self {
        Stream {
            inner: Inner::Ring(rb),
        }
    }

    /// A perf stream over a buffer opened earlier (see [`PerfParts`]).
    pub(crate) fn perf(deliver: Deliver<'a>, window: Duration, parts: PerfParts) -> Self {
        Stream {
            inner: Inner::Perf {
                buf: parts.buf,
                reorder: parts.reorder,
                deliver,
                window_ns: window.as_nanos() as u64,
            },
        }
    }

    /// Wait up to `timeout` for records, then deliver what is ready.
    pub fn poll(&mut self, timeout: Duration) -> io::Result<()> {
        match &mut self.inner {
            Inner::Ring(rb) => {
                // at most RING_BATCH records a pass, so that a storm the
                // consumer cannot outrun still lets the caller report loss
                // and flush between passes; wait only when nothing is pending
                // (records are written without wake-ups below the threshold,
                // so a quiet wait ends by timeout and the consume does the work)
                if check_n(rb.consume_raw_n(RING_BATCH))? > 0 {
                    return Ok(());
                }
                wait_readable(rb.epoll_fd(), timeout)?;
                check_n(rb.consume_raw_n(RING_BATCH)).map(drop)
            }
            Inner::Perf { buf, .. } => {
                if let Err(e) = buf.poll(timeout) {
                    if e.kind() != libbpf_rs::ErrorKind::Interrupted {
                        return Err(lib_err(e));
                    }
                }
                self.release(false)
            }
        }
    }

    /// Deliver everything the kernel has written, regardless of the window (at stop).
    pub fn drain(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Ring(rb) => check(rb.consume_raw()),
            Inner::Perf { .. } => self.release(true),
        }
    }

    fn release(&mut self, all: bool) -> io::Result<()> {
        let Inner::Perf {
            buf,
            reorder,
            deliver,
            window_ns,
        } = &mut self.inner
        else {
            return Ok(());
        };
        let started = ktime_now();
        buf.consume().map_err(lib_err)?;
        let cutoff = if all {
            u64::MAX
        } else {
            started.saturating_sub(*window_ns)
        };
        loop {
            let next = reorder.borrow_mut().pop_until(cutoff);
            let Some(p) = next else {
                return Ok(());
            };
            if deliver(&p.data) != 0 {
                return Ok(());
            }
        }
    }

    pub fn stats(&self) -> StreamStats {
        match &self.inner {
            Inner::Ring(_) => StreamStats::default(),
            Inner::Perf { reorder, .. } => reorder.borrow().stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ktime: u64) -> Vec<u8> {
        let mut v = ktime.to_ne_bytes().to_vec();
        v.extend_from_slice(b"body");
        v
    }

    #[test]
    fn reorder_releases_in_timestamp_order_up_to_the_cutoff() {
        let mut r = Reorder::default();
        for t in [30, 10, 20, 50] {
            r.push(&rec(t));
        }
        assert_eq!(r.stats.out_of_order_arrivals, 2);
        let mut out = Vec::new();
        while let Some(p) = r.pop_until(35) {
            out.push(p.ktime);
        }
        assert_eq!(out, [10, 20, 30]);
        r.push(&rec(25)); // behind what was released: late, delivered anyway
        assert_eq!(r.pop_until(u64::MAX).unwrap().ktime, 25);
        assert_eq!(r.stats.late, 1);
        assert_eq!(r.pop_until(u64::MAX).unwrap().ktime, 50);
        assert!(r.pop_until(u64::MAX).is_none());
    }

    #[test]
    fn equal_timestamps_keep_arrival_order_and_runts_pass() {
        let mut r = Reorder::default();
        let mut a = rec(5);
        a.push(1);
        let mut b = rec(5);
        b.push(2);
        r.push(&a);
        r.push(&b);
        r.push(&[1, 2, 3]);
        assert_eq!(r.pop_until(5).unwrap().data, [1, 2, 3]);
        assert_eq!(r.pop_until(5).unwrap().data, a);
        assert_eq!(r.pop_until(5).unwrap().data, b);
    }
}
