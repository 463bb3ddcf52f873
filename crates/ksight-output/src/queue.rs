//! One output's bounded queue, between the poll thread (which pushes) and
//! the output's thread (which takes batches). Full, it drops the oldest or
//! the newest event, as configured, and counts it: the poll thread never
//! waits for an output.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a full queue gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overflow {
    /// the oldest event waiting (the receiver gets the latest when it is back)
    #[default]
    DropOldest,
    /// the new event (the receiver gets an unbroken prefix)
    DropNewest,
}

/// What happened to an output's events, counted by the queue and the
/// output's thread (read by the poll thread for `lost` events and metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Delivered (written, sent and acknowledged where the receiver does).
    pub delivered: AtomicU64,
    /// Dropped by the full queue.
    pub dropped: AtomicU64,
    /// Taken from the queue but not delivered (a failed write or send).
    pub failed: AtomicU64,
}

impl Stats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// A queue item: `counted` items are the events the output's loss accounting
/// is about; the others (the `lost` events themselves) may exceed the bound
/// and are never counted, so a loss report cannot feed on itself.
pub struct Item<T> {
    pub value: T,
    pub counted: bool,
}

pub struct Queue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    cap: usize,
    overflow: Overflow,
    pub stats: Stats,
}

struct State<T> {
    items: VecDeque<Item<T>>,
    /// Of `items`, the counted ones (the bound applies to them).
    counted: usize,
    /// Taken by the consumer and not yet said [`Queue::done`].
    in_flight: usize,
    closed: bool,
}

impl<T> Queue<T> {
    pub fn new(cap: usize, overflow: Overflow) -> Queue<T> {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                counted: 0,
                in_flight: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            cap: cap.max(1),
            overflow,
            stats: Stats::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // a panicked output thread leaves the data intact: go on with it
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue one event; never waits. A full queue drops one counted event
    /// (the oldest waiting, or this one) and counts it.
    pub fn push(&self, value: T, counted: bool) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        if counted && s.counted >= self.cap {
            match self.overflow {
                Overflow::DropNewest => {
                    Stats::add(&self.stats.dropped, 1);
                    return;
                }
                Overflow::DropOldest => {
                    if let Some(i) = s.items.iter().position(|it| it.counted) {
                        s.items.remove(i);
                        s.counted -= 1;
                        Stats::add(&self.stats.dropped, 1);
                    }
                }
            }
        }
        s.counted += usize::from(counted);
        s.items.push_back(Item { value, counted });
        drop(s);
        self.ready.notify_one();
    }

    /// Up to `max` items, waiting at most `wait` for the first. `None` once
    /// the queue is closed and empty.
    pub fn pop_batch(&self, max: usize, wait: Duration) -> Option<Vec<Item<T>>> {
        let mut s = self.lock();
        if s.items.is_empty() && !s.closed {
            s = self
                .ready
                .wait_timeout(s, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if s.items.is_empty() {
            return (!s.closed).then(Vec::new);
        }
        let n = s.items.len().min(max);
        s.in_flight += n;
        let batch: Vec<Item<T>> = s.items.drain(..n).collect();
        s.counted -= batch.iter().filter(|i| i.counted).count();
        Some(batch)
    }

    /// The consumer has dealt with `n` items it took (delivered or counted).
    pub fn done(&self, n: usize) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(n);
    }

    /// Nothing waits and nothing is being delivered: the counters are final
    /// for what was pushed so far.
    pub fn settled(&self) -> bool {
        let s = self.lock();
        s.items.is_empty() && s.in_flight == 0
    }

    /// No more pushes; the output's thread drains what is left and ends.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(q: &Queue<u32>) -> Vec<u32> {
        q.pop_batch(100, Duration::ZERO)
            .unwrap()
            .into_iter()
            .map(|i| i.value)
            .collect()
    }

    #[test]
    fn a_full_queue_drops_the_oldest_or_the_newest_and_counts_it() {
        let q = Queue::new(3, Overflow::DropOldest);
        for v in 0..5 {
            q.push(v, true);
        }
        assert_eq!(values(&q), [2, 3, 4]);
        assert_eq!(Stats::get(&q.stats.dropped), 2);
        let q = Queue::new(3, Overflow::DropNewest);
        for v in 0..5 {
            q.push(v, true);
        }
        assert_eq!(values(&q), [0, 1, 2]);
        assert_eq!(Stats::get(&q.stats.dropped), 2);
    }

    #[test]
    fn uncounted_items_pass_a_full_queue_and_are_never_dropped() {
        let q = Queue::new(2, Overflow::DropOldest);
        q.push(100, false);
        q.push(1, true);
        q.push(2, true);
        q.push(101, false);
        q.push(3, true);
        assert_eq!(values(&q), [100, 2, 101, 3]);
        assert_eq!(Stats::get(&q.stats.dropped), 1);
    }

    #[test]
    fn close_lets_the_consumer_drain_then_end() {
        let q = Queue::new(10, Overflow::DropOldest);
        q.push(1, true);
        q.close();
        q.push(2, true);
        assert_eq!(values(&q), [1]);
        assert!(q.pop_batch(10, Duration::from_secs(5)).is_none());
    }

    #[test]
    fn a_waiting_consumer_wakes_for_a_push() {
        let q = std::sync::Arc::new(Queue::new(10, Overflow::DropOldest));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop_batch(10, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        q.push(7, true);
        let got = t.join().unwrap().unwrap();
        assert_eq!(got[0].value, 7);
    }
}
