//! The running outputs: a core `Sink` for the pipeline (filter, queue, report
//! losses) and one thread per output (render, deliver, count).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use ksight_core::event::{Event, WallTime};
use ksight_core::kinds::lost::{Lost, LostReason};
use ksight_core::sink::Sink;

use crate::file::RotatingFile;
use crate::nats::{Nats, NatsStats};
use crate::queue::{Item, Queue, Stats};
use crate::render::{LineFormat, Renderer};
use crate::spec::{OutputFilter, OutputPlan, Target};
use crate::syslog::Syslog;
use crate::webhook::Webhook;

type Shared = Arc<Event>;

/// Every configured output, running.
pub struct Outputs {
    outs: Vec<Running>,
}

struct Running {
    plan: OutputPlan,
    name: String,
    filter: OutputFilter,
    /// `filter.process` as a core filter, when it says anything.
    process: Option<ksight_core::filter::Filter>,
    queue: Arc<Queue<Shared>>,
    reopen: Arc<AtomicBool>,
    /// A fleet output's acknowledgements and spool.
    nats: Option<Arc<NatsStats>>,
    thread: Option<JoinHandle<()>>,
    /// Losses already reported in-band.
    reported: (u64, u64),
    /// The end of the last report's window (CLOCK_MONOTONIC ns).
    since_ktime: u64,
}

/// What one output did, for the summary at stop and for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputCounts {
    pub name: String,
    pub delivered: u64,
    pub dropped: u64,
    pub failed: u64,
    pub queued: usize,
    /// A nats output's acknowledgements and spool.
    pub fleet: Option<FleetCounts>,
}

/// Events, not messages (a message holds up to `events-per-message`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetCounts {
    /// Acknowledged by the stream.
    pub acked: u64,
    /// Of those, acknowledged as stored before (a retry, deduplicated).
    pub duplicates: u64,
    /// Waiting in the spool now.
    pub spooled: u64,
    /// Ever put in the spool (the stream did not take them at once).
    pub spilled: u64,
}

impl Outputs {
    /// Starts every output's thread. A file that cannot be opened is an
    /// error now; a receiver that is not there yet (syslog, webhook) is not:
    /// its events are counted lost until it answers.
    pub fn start(plans: Vec<OutputPlan>) -> io::Result<Outputs> {
        let outs = plans
            .into_iter()
            .map(Running::start)
            .collect::<io::Result<_>>()?;
        Ok(Outputs { outs })
    }

    /// A new set of outputs (SIGHUP): those unchanged go on untouched (not an
    /// event lost or repeated); removed and changed ones deliver what they
    /// hold (at most 2 s each) and end; new and changed ones start. If one
    /// cannot start, nothing changes. (added, removed, changed).
    pub fn reconfigure(&mut self, plans: Vec<OutputPlan>) -> io::Result<(usize, usize, usize)> {
        let mut fresh = Vec::new();
        let (mut added, mut changed) = (0, 0);
        for plan in &plans {
            match self.outs.iter().find(|o| o.name == plan.name) {
                Some(o) if o.plan == *plan => {}
                Some(_) => changed += 1,
                None => added += 1,
            }
        }
        let removed = self
            .outs
            .iter()
            .filter(|o| !plans.iter().any(|p| p.name == o.name))
            .count();
        // a changed nats output ends before its successor starts: its spool
        // directory has one writer at a time (the successor replays it)
        let (nats_changed, keep): (Vec<Running>, Vec<Running>) =
            std::mem::take(&mut self.outs).into_iter().partition(|o| {
                matches!(o.plan.target, Target::Nats(_))
                    && plans.iter().any(|p| p.name == o.name && *p != o.plan)
            });
        self.outs = keep;
        for mut o in nats_changed {
            o.end(Duration::from_secs(2));
        }
        // start the new ones first (no event reaches them until they are
        // in): one that cannot start leaves everything else as it was
        for plan in plans
            .iter()
            .filter(|p| !self.outs.iter().any(|o| o.plan == **p))
        {
            match Running::start(plan.clone()) {
                Ok(r) => fresh.push(r),
                Err(e) => {
                    for mut r in fresh {
                        r.end(Duration::ZERO);
                    }
                    return Err(e);
                }
            }
        }
        // the removed and changed ones deliver what they hold and end (a
        // changed file output's successor then appends to the same file)
        let (keep, end): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.outs)
            .into_iter()
            .partition(|o| plans.contains(&o.plan));
        for mut o in end {
            o.end(Duration::from_secs(2));
            for line in report(&[o.counts()]) {
                eprintln!("ksight: {line} (ended by a reload)");
            }
        }
        self.outs = keep;
        self.outs.append(&mut fresh);
        Ok((added, removed, changed))
    }

    /// Files are opened again at their paths (SIGUSR1, after an external
    /// logrotate moved them).
    pub fn reopen(&self) {
        for o in &self.outs {
            o.reopen.store(true, Ordering::Relaxed);
        }
    }

    pub fn counts(&self) -> Vec<OutputCounts> {
        self.outs.iter().map(Running::counts).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.outs.iter().map(|o| o.name.clone()).collect()
    }

    /// New losses since the last report, as `lost` events (stage `output`)
    /// queued to every output, the losing one included (a `lost` event is
    /// never dropped by a full queue, and never counted).
    fn report_losses(&mut self) {
        let now = ktime_now();
        let mut reports = Vec::new();
        for o in &mut self.outs {
            let dropped = Stats::get(&o.queue.stats.dropped);
            let failed = Stats::get(&o.queue.stats.failed);
            for (count, reason) in [
                (dropped - o.reported.0, LostReason::QueueFull),
                (failed - o.reported.1, LostReason::OutputFailed),
            ] {
                if count > 0 {
                    reports.push(Lost::output(&o.name, reason, count, o.since_ktime));
                }
            }
            o.reported = (dropped, failed);
            o.since_ktime = now;
        }
        for lost in reports {
            let ev = Arc::new(Event {
                time: wall_now(),
                ktime: now,
                cpu: 0,
                seq: None,
                process: None,
                detail: lost.into(),
            });
            for o in &self.outs {
                o.queue.push(ev.clone(), false);
            }
        }
    }

    /// Stops: lets every output deliver what it holds (or count it lost),
    /// for at most `limit`; reports the last losses in-band to the outputs
    /// still there; then ends the threads. What each output did.
    pub fn finish(mut self, limit: Duration) -> Vec<OutputCounts> {
        self.finish_in_place(limit)
    }

    fn finish_in_place(&mut self, limit: Duration) -> Vec<OutputCounts> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline && !self.outs.iter().all(|o| o.queue.settled()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.report_losses();
        self.shutdown();
        self.counts()
    }

    fn shutdown(&mut self) {
        for o in &self.outs {
            o.queue.close();
        }
        for o in &mut self.outs {
            if let Some(t) = o.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Running {
    fn start(plan: OutputPlan) -> io::Result<Running> {
        let queue = Arc::new(Queue::new(plan.queue, plan.overflow));
        let reopen = Arc::new(AtomicBool::new(false));
        let deliver = Deliver::open(&plan)?;
        let nats = match &deliver {
            Deliver::Nats(n) => Some(n.stats.clone()),
            _ => None,
        };
        let (q, r, name) = (queue.clone(), reopen.clone(), plan.name.clone());
        let (format, template) = (plan.format, plan.template.clone());
        let thread = std::thread::Builder::new()
            .name(format!("out-{}", plan.name))
            .spawn(move || worker(name, format, template, deliver, &q, &r))?;
        Ok(Running {
            name: plan.name.clone(),
            filter: plan.filter.clone(),
            process: (plan.filter.process != Default::default())
                .then(|| ksight_core::filter::Filter::new(plan.filter.process.clone())),
            plan,
            queue,
            reopen,
            nats,
            thread: Some(thread),
            reported: (0, 0),
            since_ktime: ktime_now(),
        })
    }

    fn counts(&self) -> OutputCounts {
        OutputCounts {
            name: self.name.clone(),
            delivered: Stats::get(&self.queue.stats.delivered),
            dropped: Stats::get(&self.queue.stats.dropped),
            failed: Stats::get(&self.queue.stats.failed),
            queued: self.queue.len(),
            fleet: self.nats.as_ref().map(|n| {
                let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
                FleetCounts {
                    acked: get(&n.acked),
                    duplicates: get(&n.duplicates),
                    spooled: get(&n.spooled),
                    spilled: get(&n.spilled),
                }
            }),
        }
    }

    /// Delivers what it holds (for at most `limit`), then ends its thread.
    fn end(&mut self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline && !self.queue.settled() {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.queue.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A summary line per output.
pub fn report(counts: &[OutputCounts]) -> Vec<String> {
    counts
        .iter()
        .map(|c| {
            let fleet = c.fleet.map_or(String::new(), |f| {
                format!(
                    "; {} acknowledged by the stream ({} as duplicates), {} went through the spool, {} in the spool",
                    f.acked, f.duplicates, f.spilled, f.spooled
                )
            });
            format!(
                "output {}: {} events delivered, {} dropped (queue full), {} failed, {} still queued{fleet}",
                c.name, c.delivered, c.dropped, c.failed, c.queued
            )
        })
        .collect()
}

/// [`Outputs`] shared between the pipeline (which writes through it) and
/// the poll loop (which reconfigures it on SIGHUP).
#[derive(Clone)]
pub struct SharedOutputs(pub Arc<std::sync::Mutex<Outputs>>);

impl SharedOutputs {
    pub fn new(o: Outputs) -> SharedOutputs {
        SharedOutputs(Arc::new(std::sync::Mutex::new(o)))
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Outputs> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sink for SharedOutputs {
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        self.lock().write(ev)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.lock().flush()
    }

    fn failures(&self) -> Vec<(String, u64)> {
        self.lock().failures()
    }

    fn close(&mut self) -> io::Result<()> {
        self.lock().close()
    }

    fn reopen(&mut self) {
        Outputs::reopen(&self.lock())
    }

    fn report(&self) -> Vec<String> {
        Sink::report(&*self.lock())
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Sink for Outputs {
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        let mut shared: Option<Shared> = None;
        let counted = !matches!(ev.detail, ksight_core::event::Detail::Lost(_));
        for o in &self.outs {
            if o.filter.keep(ev) && o.process.as_ref().is_none_or(|f| f.matches(ev)) {
                let s = shared.get_or_insert_with(|| Arc::new(ev.clone()));
                o.queue.push(s.clone(), counted);
            }
        }
        Ok(())
    }

    /// After each poll: the losses since the last one, in-band.
    fn flush(&mut self) -> io::Result<()> {
        self.report_losses();
        Ok(())
    }

    fn failures(&self) -> Vec<(String, u64)> {
        self.counts()
            .into_iter()
            .filter(|c| c.dropped + c.failed > 0)
            .map(|c| (c.name, c.dropped + c.failed))
            .collect()
    }

    /// Drains every queue (for at most 10 s: a receiver that is down gets
    /// its remaining events counted lost).
    fn close(&mut self) -> io::Result<()> {
        self.finish_in_place(Duration::from_secs(10));
        Ok(())
    }

    fn reopen(&mut self) {
        Outputs::reopen(self)
    }

    fn report(&self) -> Vec<String> {
        report(&self.counts())
    }
}

/// How one output delivers a batch.
enum Deliver {
    Stdout(io::Stdout),
    File(RotatingFile),
    Syslog(Syslog),
    Webhook(Webhook),
    Nats(Box<Nats>),
}

impl Deliver {
    fn open(plan: &OutputPlan) -> io::Result<Deliver> {
        Ok(match &plan.target {
            Target::Stdout => Deliver::Stdout(io::stdout()),
            Target::File(cfg) => Deliver::File(RotatingFile::open(cfg.clone())?),
            Target::Syslog(cfg) => Deliver::Syslog(Syslog::new(cfg.clone())),
            Target::Webhook(cfg) => Deliver::Webhook(Webhook::new(cfg.clone())),
            Target::Nats(cfg) => {
                Deliver::Nats(Box::new(Nats::open((**cfg).clone()).map_err(|e| {
                    io::Error::other(format!("output {}: {e}", plan.name))
                })?))
            }
        })
    }

    fn batch(&self) -> usize {
        match self {
            Deliver::Webhook(w) => w.batch(),
            Deliver::Nats(n) => n.events_per_batch(),
            _ => 4096,
        }
    }

    /// Delivers the batch; how many of it were delivered, and the error if
    /// not all were. `behind`: whether the queue is more than half full (a
    /// nats output then spools rather than wait for acknowledgements).
    fn deliver(
        &mut self,
        r: &mut Renderer,
        batch: &[Item<Shared>],
        behind: &dyn Fn() -> bool,
    ) -> (usize, Option<String>) {
        let mut buf = Vec::with_capacity(batch.len() * 512);
        match self {
            Deliver::Stdout(out) => {
                batch.iter().for_each(|i| r.line(&i.value, &mut buf));
                let mut out = out.lock();
                match out.write_all(&buf).and_then(|()| out.flush()) {
                    Ok(()) => (batch.len(), None),
                    Err(e) => (0, Some(e.to_string())),
                }
            }
            Deliver::File(f) => {
                batch.iter().for_each(|i| r.line(&i.value, &mut buf));
                match f.write_batch(&buf) {
                    Ok(()) => (batch.len(), None),
                    Err(e) => {
                        // start afresh at the next batch (the disk may have room again)
                        let _ = f.close();
                        (0, Some(e.to_string()))
                    }
                }
            }
            Deliver::Syslog(s) => {
                let messages: Vec<Vec<u8>> = batch
                    .iter()
                    .map(|i| {
                        buf.clear();
                        r.line(&i.value, &mut buf);
                        let mut m = Vec::with_capacity(buf.len() + 64);
                        s.message(&i.value, &buf, &mut m);
                        m
                    })
                    .collect();
                match s.send(&messages) {
                    Ok(()) => (batch.len(), None),
                    Err((sent, e)) => (sent, Some(e.to_string())),
                }
            }
            Deliver::Webhook(w) => {
                batch.iter().for_each(|i| r.line(&i.value, &mut buf));
                match w.post(&buf) {
                    Ok(()) => (batch.len(), None),
                    Err(e) => (0, Some(e)),
                }
            }
            Deliver::Nats(n) => {
                let mut ends = Vec::with_capacity(batch.len());
                for i in batch {
                    r.line(&i.value, &mut buf);
                    ends.push(buf.len());
                }
                let lines = batch.iter().zip(&ends).scan(0, |start, (i, &end)| {
                    let line = (&*i.value, &buf[*start..end]);
                    *start = end;
                    Some(line)
                });
                let recs = n.messages(lines);
                n.deliver(recs, behind)
            }
        }
    }

    fn tick(&mut self, behind: &dyn Fn() -> bool) -> io::Result<()> {
        match self {
            Deliver::File(f) => f.tick(),
            Deliver::Nats(n) => {
                n.sync_spool(false);
                n.replay(Duration::from_millis(500), behind);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        match self {
            Deliver::File(f) => f.reopen(),
            _ => Ok(()),
        }
    }

    fn close(&mut self) {
        match self {
            Deliver::File(f) => {
                let _ = f.close();
            }
            Deliver::Nats(n) => n.close(Duration::from_secs(5)),
            _ => {}
        }
    }
}

/// One output's thread: batches from the queue until it is closed and empty.
fn worker(
    name: String,
    format: LineFormat,
    template: Option<String>,
    mut d: Deliver,
    q: &Queue<Shared>,
    reopen: &AtomicBool,
) {
    let header = matches!(d, Deliver::Stdout(_) | Deliver::File(_));
    let mut r = Renderer::new(format, header).with_template(template.as_deref());
    let max = d.batch();
    let mut failing = false;
    let say = |failing: &mut bool, err: Option<String>| match (err, *failing) {
        (Some(e), false) => {
            *failing = true;
            eprintln!(
                "ksight: output {name}: {e}; its events are counted lost until it recovers, the other outputs go on"
            );
        }
        (None, true) => {
            *failing = false;
            eprintln!("ksight: output {name}: recovered");
        }
        _ => {}
    };
    let behind = || q.len() > q.capacity() / 2;
    while let Some(batch) = q.pop_batch(max, Duration::from_millis(200)) {
        if reopen.swap(false, Ordering::Relaxed) {
            if let Err(e) = d.reopen() {
                say(&mut failing, Some(format!("reopening: {e}")));
            }
        }
        if batch.is_empty() {
            if let Err(e) = d.tick(&behind) {
                say(&mut failing, Some(e.to_string()));
            }
            continue;
        }
        let (done, err) = d.deliver(&mut r, &batch, &behind);
        let counted = |items: &[Item<Shared>]| items.iter().filter(|i| i.counted).count() as u64;
        Stats::add(&q.stats.delivered, counted(&batch[..done]));
        Stats::add(&q.stats.failed, counted(&batch[done..]));
        q.done(batch.len());
        say(&mut failing, err);
    }
    d.close();
}

fn ktime_now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn wall_now() -> WallTime {
    WallTime(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::FileConfig;
    use crate::queue::Overflow;
    use crate::syslog::{Address, Facility, SyslogConfig};

    fn plan(name: &str, target: Target, queue: usize) -> OutputPlan {
        OutputPlan {
            name: name.into(),
            format: LineFormat::Json,
            template: None,
            filter: OutputFilter::default(),
            queue,
            overflow: Overflow::DropOldest,
            target,
        }
    }

    #[test]
    fn a_dead_receiver_loses_only_its_own_events_counted_and_reported_to_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.json");
        // a TCP syslog peer that is not there
        let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        let file = FileConfig::plain(&path);
        let mut outs = Outputs::start(vec![
            plan("file", Target::File(file), 100_000),
            plan(
                "syslog",
                Target::Syslog(SyslogConfig {
                    address: Address::Tcp(addr),
                    facility: Facility::Daemon,
                    app_name: "ksight".into(),
                    protocol: crate::syslog::Protocol::Rfc5424,
                }),
                50,
            ),
        ])
        .unwrap();
        let n = 2000;
        for i in 0..n {
            outs.write(&ksight_core::sink::exit_event(i)).unwrap();
            if i % 500 == 0 {
                outs.flush().unwrap();
            }
        }
        let counts = outs.finish(Duration::from_secs(10));
        let file_c = &counts[0];
        assert_eq!(file_c.delivered, u64::from(n));
        assert_eq!(file_c.dropped + file_c.failed, 0);
        let sys = &counts[1];
        assert_eq!(sys.delivered, 0);
        assert_eq!(sys.dropped + sys.failed, u64::from(n), "{sys:?}");
        // the file has every event and the syslog output's losses, in-band
        let text = std::fs::read_to_string(&path).unwrap();
        let mut exits = 0;
        let mut lost = 0;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            match v["type"].as_str().unwrap() {
                "exit" => exits += 1,
                "lost" => {
                    assert_eq!(v["lost"]["stage"], "output");
                    assert_eq!(v["lost"]["output"], "syslog");
                    lost += v["lost"]["count"].as_u64().unwrap();
                }
                t => panic!("{t}"),
            }
        }
        assert_eq!(exits, n);
        assert_eq!(lost, u64::from(n));
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;
    use crate::file::FileConfig;
    use crate::queue::Overflow;

    fn file_plan(name: &str, path: &std::path::Path) -> OutputPlan {
        OutputPlan {
            name: name.into(),
            format: LineFormat::Json,
            template: None,
            filter: OutputFilter::default(),
            queue: 100_000,
            overflow: Overflow::DropOldest,
            target: Target::File(FileConfig::plain(path)),
        }
    }

    fn lines(p: &std::path::Path) -> Vec<u32> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["exit"]["code"].as_u64().unwrap() as u32
            })
            .collect()
    }

    #[test]
    fn a_reload_adds_and_removes_outputs_without_touching_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        let mut outs = Outputs::start(vec![file_plan("a", &a)]).unwrap();
        let ev = |i: u32| ksight_core::sink::exit_event(i << 8);
        for i in 0..60 {
            outs.write(&ev(i)).unwrap();
        }
        let r = outs
            .reconfigure(vec![file_plan("a", &a), file_plan("b", &b)])
            .unwrap();
        assert_eq!(r, (1, 0, 0));
        for i in 60..120 {
            outs.write(&ev(i)).unwrap();
        }
        // b's settings change: it ends and starts again, a goes on
        let mut b2 = file_plan("b", &b);
        b2.overflow = Overflow::DropNewest;
        b2.queue = 50_000;
        assert_eq!(
            outs.reconfigure(vec![file_plan("a", &a), b2.clone()])
                .unwrap(),
            (0, 0, 1)
        );
        for i in 120..180 {
            outs.write(&ev(i)).unwrap();
        }
        assert_eq!(outs.reconfigure(vec![b2]).unwrap(), (0, 1, 0));
        for i in 180..240 {
            outs.write(&ev(i)).unwrap();
        }
        outs.finish(Duration::from_secs(10));
        assert_eq!(lines(&a), (0..180).collect::<Vec<_>>());
        assert_eq!(lines(&b), (60..240).collect::<Vec<_>>());
        // one that cannot start: nothing changes
        let mut outs = Outputs::start(vec![file_plan("a", &a)]).unwrap();
        let bad = file_plan("c", &dir.path().join("no/such/dir/c.json"));
        assert!(outs.reconfigure(vec![file_plan("a", &a), bad]).is_err());
        assert_eq!(outs.names(), ["a"]);
    }

    #[test]
    fn each_output_has_its_own_process_filter() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        let mut pa = file_plan("a", &a);
        pa.filter.process.pids = vec![42];
        let mut pb = file_plan("b", &b);
        pb.filter.process.comms = vec!["other".into()];
        let mut outs = Outputs::start(vec![pa, pb]).unwrap();
        outs.write(&ksight_core::sink::exit_event(0)).unwrap();
        let c = outs.finish(Duration::from_secs(10));
        assert_eq!((c[0].delivered, c[1].delivered), (1, 0));
    }
}
