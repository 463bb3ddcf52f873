//! The transport benchmark's kernel side: a synthetic producer (bench.bpf.c,
//! run with BPF_PROG_TEST_RUN on each CPU at a paced rate) and a consumer that
//! measures what arrives, as it arrives (before any reordering).
//!
//! One [`run`] = load the producer for one transport, produce for a while,
//! drain, and report delivered / lost / generated (the kernel's per-CPU
//! sequence counters), delivery latency, arrival-order inversions and the
//! consumer thread's CPU time.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ksight_wire::ks_cpu_stats;
use libbpf_rs::{MapCore, MapFlags, Object, PerfBufferBuilder, RingBufferBuilder};

use crate::object::{self, map, LoadError};
use crate::sys::ktime_now;

fn lib_err(e: LoadError) -> libbpf_rs::Error {
    libbpf_rs::Error::from(std::io::Error::other(e.to_string()))
}

/// The transports compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchTransport {
    /// ksight's default: ring buffer, wake-ups batched (timed poll + threshold).
    RingbufBatched,
    /// Ring buffer with a wake-up per record (libbpf's default behaviour).
    RingbufEager,
    /// Per-CPU perf buffer, a wake-up per record.
    Perf,
}

impl BenchTransport {
    pub const ALL: [BenchTransport; 3] = [
        BenchTransport::RingbufBatched,
        BenchTransport::RingbufEager,
        BenchTransport::Perf,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BenchTransport::RingbufBatched => "ringbuf",
            BenchTransport::RingbufEager => "ringbuf-eager",
            BenchTransport::Perf => "perf",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchCase {
    pub transport: BenchTransport,
    /// Records per second over all CPUs; `None` = as fast as the producers go.
    pub rate: Option<u64>,
    /// Record size in bytes, header included (32..=4096).
    pub size: u32,
    pub duration: Duration,
    pub ringbuf_bytes: u32,
    pub perf_pages: usize,
    /// The batched consumer's poll interval (ksight's --poll-interval).
    pub poll: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct BenchResult {
    /// Records the producers tried to send (sum of per-CPU sequence numbers).
    pub generated: u64,
    pub delivered: u64,
    /// Records the kernel refused (drop counters).
    pub lost: u64,
    /// Delivered per second of production.
    pub rate: f64,
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    /// Records read with an older timestamp than one read before them.
    pub inversions: u64,
    /// Consumer thread CPU time (user + system) per delivered record, µs.
    pub consumer_us_per_record: f64,
    /// Consumer thread CPU time as a share of one CPU.
    pub consumer_cpu: f64,
}

fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills a valid, zeroed rusage for the calling thread.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed by reference for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn load(case: &BenchCase, batch: u32) -> libbpf_rs::Result<Object> {
    let mut o = object::open("bench", crate::object!("bench"), None).map_err(lib_err)?;
    let perf = case.transport == BenchTransport::Perf;
    let wakeup: u64 = match case.transport {
        BenchTransport::RingbufBatched => u64::from(case.ringbuf_bytes / 32),
        _ => 0,
    };
    (|| -> Result<(), LoadError> {
        o.knob("ks_cfg_batch", &batch.to_ne_bytes())?;
        o.knob("ks_cfg_size", &case.size.to_ne_bytes())?;
        o.knob("ks_cfg_perf", &u32::from(perf).to_ne_bytes())?;
        o.knob("ks_cfg_wakeup_bytes", &wakeup.to_ne_bytes())?;
        o.transport(perf)?;
        o.max_entries("ks_events", case.ringbuf_bytes)
    })()
    .map_err(lib_err)?;
    o.load("bench").map_err(lib_err)
}

/// Per-CPU (seq, drops) summed: what the producers generated and what was refused.
fn counters(obj: &Object) -> libbpf_rs::Result<(u64, u64)> {
    let stats = map(obj, "ks_stats").expect("common.bpf.h defines ks_stats");
    let per_cpu = stats.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)?;
    let mut seq = 0;
    let mut drops = 0;
    for bytes in per_cpu.into_iter().flatten() {
        let mut st = ks_cpu_stats::default();
        let _ = plain::copy_from_bytes(&mut st, &bytes);
        seq += st.seq;
        drops += st.drops.iter().sum::<u64>();
    }
    Ok((seq, drops))
}

#[derive(Default)]
struct Seen {
    delivered: u64,
    max_ktime: u64,
    inversions: u64,
    latencies_ns: Vec<u64>,
}

impl Seen {
    fn record(&mut self, data: &[u8]) {
        let Some(k) = data.get(..8) else { return };
        let ktime = u64::from_ne_bytes(k.try_into().expect("8 bytes"));
        self.delivered += 1;
        if ktime < self.max_ktime {
            self.inversions += 1;
        }
        self.max_ktime = self.max_ktime.max(ktime);
        // every 8th record is enough for percentiles and keeps the cost off the consumer
        if self.delivered.is_multiple_of(8) {
            self.latencies_ns.push(ktime_now().saturating_sub(ktime));
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1e3
}

/// Run one case. The calling thread is the consumer; one producer thread per CPU.
pub fn run(case: &BenchCase) -> libbpf_rs::Result<BenchResult> {
    let cpus = libbpf_rs::num_possible_cpus()?
        .min(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let batch: u32 = if case.rate.is_some() { 16 } else { 64 };
    let obj = load(case, batch)?;
    let ks_perf = map(&obj, "ks_perf").expect("common.bpf.h defines ks_perf");
    let ks_events = map(&obj, "ks_events").expect("common.bpf.h defines ks_events");
    let seen = std::cell::RefCell::new(Seen::default());
    let deliver = |data: &[u8]| {
        seen.borrow_mut().record(data);
        0
    };

    // the consumer exists before the first record: a perf event array without
    // its perf events refuses output, which would count as loss
    let perf = if case.transport == BenchTransport::Perf {
        Some(
            PerfBufferBuilder::new(&ks_perf)
                .pages(case.perf_pages)
                .sample_cb(|_cpu, data: &[u8]| {
                    deliver(data);
                })
                .build()?,
        )
    } else {
        None
    };
    let ring = if perf.is_none() {
        let mut b = RingBufferBuilder::new();
        b.add(&ks_events, deliver)?;
        Some(b.build()?)
    } else {
        None
    };
    let consume = |timeout: Duration| {
        if let Some(pb) = &perf {
            let _ = pb.poll(timeout);
        }
        if let Some(rb) = &ring {
            rb.poll_raw(timeout);
            rb.consume_raw();
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let prog_fd = {
        let prog = obj
            .progs()
            .find(|p| p.name() == "ks_bench")
            .expect("bench.bpf.c's program");
        (prog.as_fd().try_clone_to_owned()).map_err(libbpf_rs::Error::from)?
    };
    let per_cpu_rate = case.rate.map(|r| r as f64 / cpus as f64);
    let cpu0 = thread_cpu();
    let start = Instant::now();
    let producers: Vec<_> = (0..cpus)
        .map(|cpu| {
            let stop = Arc::clone(&stop);
            let fd = prog_fd.try_clone().expect("dup prog fd");
            std::thread::spawn(move || produce(fd, cpu, batch, per_cpu_rate, &stop))
        })
        .collect();
    let end = start + case.duration;
    // the batched ring consumer polls on ksight's timer; the others are woken per record
    let timeout = match case.transport {
        BenchTransport::RingbufBatched => case.poll,
        _ => Duration::from_millis(100),
    };
    while Instant::now() < end {
        consume(timeout);
    }
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        let _ = p.join();
    }
    let produced_for = start.elapsed();
    if let Some(pb) = &perf {
        let _ = pb.consume();
    }
    if let Some(rb) = &ring {
        rb.consume_raw();
    }
    drop((perf, ring));
    let consumer = thread_cpu().saturating_sub(cpu0);
    let (generated, lost) = counters(&obj)?;
    let mut seen = seen.into_inner();
    seen.latencies_ns.sort_unstable();
    let secs = produced_for.as_secs_f64();
    Ok(BenchResult {
        generated,
        delivered: seen.delivered,
        lost,
        rate: seen.delivered as f64 / secs,
        latency_p50_us: percentile(&seen.latencies_ns, 0.50),
        latency_p99_us: percentile(&seen.latencies_ns, 0.99),
        inversions: seen.inversions,
        consumer_us_per_record: consumer.as_secs_f64() * 1e6 / seen.delivered.max(1) as f64,
        consumer_cpu: consumer.as_secs_f64() / secs,
    })
}

/// One producer: run the program on `cpu` until told to stop, paced to `rate` records/s.
fn produce(
    prog: std::os::fd::OwnedFd,
    cpu: usize,
    batch: u32,
    rate: Option<f64>,
    stop: &AtomicBool,
) {
    use std::os::fd::AsRawFd;
    pin_to_cpu(cpu);
    let start = Instant::now();
    let mut sent: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut opts = libbpf_rs::libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_test_run_opts>() as _,
            flags: libbpf_rs::libbpf_sys::BPF_F_TEST_RUN_ON_CPU,
            cpu: cpu as u32,
            ..Default::default()
        };
        // SAFETY: a valid program fd and a fully initialised opts struct of the size it declares.
        let rc =
            unsafe { libbpf_rs::libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
        if rc != 0 {
            return;
        }
        sent += u64::from(batch);
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            let now = start.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
}

/// ksight's hooks with do-nothing programs attached (bpf/floor.bpf.c): the
/// floor of `ksight bench overhead`. Detached when dropped.
pub struct Floor {
    _links: Vec<libbpf_rs::Link>,
    _obj: Object,
}

impl Floor {
    pub fn attach(cgroup_root: &std::path::Path) -> libbpf_rs::Result<Floor> {
        use std::os::fd::AsRawFd;
        let obj = object::open("floor", crate::object!("floor"), None)
            .and_then(|o| o.load("floor"))
            .map_err(lib_err)?;
        let cgroup = std::fs::File::open(cgroup_root).map_err(libbpf_rs::Error::from)?;
        let mut links = Vec::new();
        for prog in obj.progs_mut() {
            let section = prog.section().to_string_lossy().into_owned();
            links.push(if section.starts_with("cgroup") {
                prog.attach_cgroup(cgroup.as_raw_fd())?
            } else {
                prog.attach()?
            });
        }
        Ok(Floor {
            _links: links,
            _obj: obj,
        })
    }
}

/// Name, run count and total run time of the given programs (run counts and
/// times need kernel.bpf_stats_enabled=1 while they run).
pub fn prog_stats(ids: &[u32]) -> Vec<(String, u64, u64)> {
    libbpf_rs::query::ProgInfoIter::default()
        .filter(|p| ids.contains(&p.id))
        .map(|p| {
            (
                p.name.to_string_lossy().into_owned(),
                p.run_cnt,
                p.run_time_ns,
            )
        })
        .collect()
}
