//! The issue's promise: evaluating rules allocates nothing on the hot path.
//! Counted with a global allocator over the shipped pack, on events that
//! fire nothing and whose fields are scalars (a list field, argv or the
//! ancestors, is built once per event by the event itself, not the engine).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use ksight_rules::{default_pack, Engine, JsonEvent};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn evaluating_quiet_events_allocates_nothing() {
    let lines = [
        r#"{"type":"connect","process":{"comm":"curl","exe":"/usr/bin/curl","pid":5,"exec_id":"e"},"net":{"remote":{"addr":"192.0.2.7","port":443},"remote_name":"deb.debian.org"},"connect":{"result":"success"}}"#,
        r#"{"type":"listen","process":{"comm":"nginx","exe":"/usr/sbin/nginx","pid":6,"exec_id":"f"},"net":{"local":{"addr":"0.0.0.0","port":80}}}"#,
        r#"{"type":"fork","process":{"comm":"make","exe":"/usr/bin/make","pid":7,"exec_id":"g"}}"#,
    ];
    let events: Vec<JsonEvent> = lines
        .iter()
        .map(|l| JsonEvent::parse(l).expect("an event"))
        .collect();
    let mut engine: Engine<JsonEvent> = Engine::new(default_pack().expect("the pack loads"));
    let mut out = Vec::new();
    // The first pass sizes the engine's buffers and warms the regex caches.
    for e in &events {
        engine.eval(e, 1, &mut out);
    }
    assert!(out.is_empty(), "these events fire nothing: {:?}", out.len());
    let evaluated: u64 = engine.stats().map(|(_, s)| s.evaluated).sum();
    assert!(evaluated >= 3, "rules were evaluated on them ({evaluated})");
    let before = ALLOCS.load(Ordering::Relaxed);
    for i in 0..1000 {
        for e in &events {
            engine.eval(e, 2 + i, &mut out);
        }
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert!(out.is_empty());
    assert_eq!(allocs, 0, "allocations in 3000 evaluations");
}
