//! SHA-256 of executed files, off the event path.
//!
//! An exec names its file by identity ([`FileKey`]: dev, inode, ctime, size,
//! read by the kernel from the inode it runs). The hash of that identity is
//! either known (the cache: the exec carries it) or asked of one worker
//! thread, which reads the file through `/proc/PID/exe` (a deleted file, a
//! memfd, a file inside a container's mount namespace: all readable there),
//! falling back to the path, and checks with `fstat`, before and after
//! reading, that it is the file the kernel ran. A file replaced in between
//! is reported as `changed`, never hashed wrong. The answer comes back as an
//! `exe_hash` event naming the exec.
//!
//! Bounded everywhere: files above `max_size` are not read; the worker reads
//! at most `rate` bytes per second (it sleeps past that); at most `QUEUE`
//! requests wait (more are answered `skipped`); the cache keeps `CACHE`
//! identities, least recently used first out.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::context::FileKey;

crate::named_enum! {
    /// Whether executed files are hashed.
    #[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
    pub enum HashMode {
        Off = "off",
        Sha256 = "sha256",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashConfig {
    pub enabled: bool,
    /// Files larger than this are not hashed (`too_large`).
    pub max_size: u64,
    /// Bytes per second the worker reads at most.
    pub rate: u64,
}

impl Default for HashConfig {
    fn default() -> Self {
        HashConfig {
            enabled: true,
            max_size: 256 << 20,
            rate: 64 << 20,
        }
    }
}

const QUEUE: usize = 4096;
const CACHE: usize = 16_384;
/// Execs of one file waiting for its hash that get their own answer; more
/// are counted in `unanswered`.
const WAITERS: usize = 256;

crate::named_enum! {
    /// How hashing a file ended.
    pub enum HashStatus {
        /// hashed: `sha256` is set
        Ok = "ok",
        /// the file read was not the file the kernel ran (replaced, or
        /// written to while read)
        Changed = "changed",
        /// larger than the size cap
        TooLarge = "too_large",
        /// the process ended and its path no longer holds the file
        Vanished = "vanished",
        /// too many files waiting: not hashed
        Skipped = "skipped",
        /// reading failed (see `error`)
        Error = "error",
    }
}

/// The answer about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: HashStatus,
    pub sha256: Option<Arc<str>>,
    pub error: Option<String>,
}

/// One exec's answer, with what the exec handed in.
#[derive(Debug)]
pub struct Answer<T> {
    pub key: FileKey,
    pub outcome: Outcome,
    pub waiter: T,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HashStats {
    pub hits: u64,
    pub misses: u64,
    pub hashed: u64,
    pub bytes: u64,
    pub failed: u64,
    /// Execs that waited for a hash beyond WAITERS per file: no answer event.
    pub unanswered: u64,
}

struct Job {
    key: FileKey,
    /// The exec's process, then others running the same file.
    pids: Vec<u32>,
    path: Option<PathBuf>,
}

/// The requests waiting: small files first (a large one does not hold them
/// up: its reading stops between chunks to hash them), then large ones.
#[derive(Default)]
struct Queue {
    small: VecDeque<Job>,
    large: VecDeque<Job>,
    closed: bool,
}

impl Queue {
    fn len(&self) -> usize {
        self.small.len() + self.large.len()
    }
}

/// Files up to this size are small.
const SMALL: u64 = 1 << 20;

struct Shared {
    jobs: Mutex<Queue>,
    wake: Condvar,
    done: Mutex<Vec<(FileKey, Outcome)>>,
    bytes: AtomicU64,
    /// Stopping: the file being read is given up (a large file at a low rate
    /// would otherwise hold the stop for minutes).
    stop: AtomicBool,
}

/// The hashes the agent knows, and the worker that finds the others. `T`:
/// what an exec leaves to be given back with its answer.
pub struct Hashes<T> {
    cfg: HashConfig,
    cache: HashMap<FileKey, (Outcome, u64)>,
    clock: u64,
    waiting: HashMap<FileKey, Vec<T>>,
    /// Answers collected, not yet taken by [`Hashes::answers`].
    ready: Vec<Answer<T>>,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    pub stats: HashStats,
}

impl<T> Hashes<T> {
    /// `proc_root`: where /proc is (tests point it elsewhere).
    pub fn new(cfg: HashConfig, proc_root: PathBuf) -> Self {
        let shared = Arc::new(Shared {
            jobs: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            done: Mutex::new(Vec::new()),
            bytes: Default::default(),
            stop: Default::default(),
        });
        let worker = cfg.enabled.then(|| {
            let s = shared.clone();
            std::thread::Builder::new()
                .name("ksight-hash".into())
                .spawn(move || work(&s, cfg, &proc_root))
                .expect("spawning the hash thread")
        });
        Hashes {
            cfg,
            cache: HashMap::new(),
            clock: 0,
            waiting: HashMap::new(),
            ready: Vec::new(),
            shared,
            worker,
            stats: HashStats::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// The hash of a file, if known (an ancestor's: asks nothing).
    pub fn known(&self, key: &FileKey) -> Option<Arc<str>> {
        self.cache.get(key)?.0.sha256.clone()
    }

    /// An exec's file: its hash if known; else `None`, and the file is asked
    /// for (once per identity, whoever else waits for it) and `waiter` comes
    /// back with the answer from [`Hashes::answers`]. A file known not to
    /// hash (too large, ...) is not asked again and gives no answer. `pids`:
    /// processes running it, the exec's first; `path`: where it was.
    pub fn hash_or_ask(
        &mut self,
        key: FileKey,
        pids: Vec<u32>,
        path: Option<PathBuf>,
        waiter: T,
    ) -> Option<Arc<str>> {
        if !self.cfg.enabled {
            return None;
        }
        self.clock += 1;
        if let Some((o, used)) = self.cache.get_mut(&key) {
            *used = self.clock;
            self.stats.hits += 1;
            return o.sha256.clone();
        }
        if self.waiting.contains_key(&key) {
            // in flight: perhaps done by now (a batch of execs of one new
            // file then waits for its first exec's hash only briefly)
            self.collect();
            if let Some((o, used)) = self.cache.get_mut(&key) {
                *used = self.clock;
                self.stats.hits += 1;
                return o.sha256.clone();
            }
        }
        self.stats.misses += 1;
        if let Some(w) = self.waiting.get_mut(&key) {
            if w.len() < WAITERS {
                w.push(waiter);
            } else {
                self.stats.unanswered += 1;
            }
            return None;
        }
        let mut q = self.shared.jobs.lock().expect("hash queue");
        if q.len() >= QUEUE {
            drop(q);
            self.shared.done.lock().expect("hash answers").push((
                key,
                Outcome {
                    status: HashStatus::Skipped,
                    sha256: None,
                    error: None,
                },
            ));
        } else {
            let job = Job { key, pids, path };
            if key.size <= SMALL {
                q.small.push_back(job);
            } else {
                q.large.push_back(job);
            }
            drop(q);
            self.shared.wake.notify_one();
        }
        self.waiting.insert(key, vec![waiter]);
        None
    }

    /// Answers the worker has given since the last call, one per waiting exec.
    pub fn answers(&mut self) -> Vec<Answer<T>> {
        self.collect();
        std::mem::take(&mut self.ready)
    }

    /// Take what the worker finished: into the cache at once (later execs of
    /// the same file find it), and the waiters' answers into `ready`.
    fn collect(&mut self) {
        let done = std::mem::take(&mut *self.shared.done.lock().expect("hash answers"));
        self.stats.bytes = self.shared.bytes.load(Ordering::Relaxed);
        for (key, outcome) in done {
            match outcome.status {
                HashStatus::Ok => self.stats.hashed += 1,
                _ => self.stats.failed += 1,
            }
            // an identity that hashed, or that will not (too large), is settled;
            // the others may do better next time
            if matches!(outcome.status, HashStatus::Ok | HashStatus::TooLarge) {
                self.remember(key, outcome.clone());
            }
            for waiter in self.waiting.remove(&key).unwrap_or_default() {
                self.ready.push(Answer {
                    key,
                    outcome: outcome.clone(),
                    waiter,
                });
            }
        }
    }

    fn remember(&mut self, key: FileKey, o: Outcome) {
        if self.cache.len() >= CACHE {
            // drop the least recently used eighth
            let mut ages: Vec<u64> = self.cache.values().map(|(_, u)| *u).collect();
            let cut = ages.len() / 8;
            let (_, nth, _) = ages.select_nth_unstable(cut);
            let nth = *nth;
            self.cache.retain(|_, (_, u)| *u > nth);
        }
        self.clock += 1;
        self.cache.insert(key, (o, self.clock));
    }

    /// Files asked for and not answered yet.
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }

    /// Wait up to `timeout` for the worker to answer every request (at stop:
    /// the last execs' hashes are not dropped for want of a moment).
    pub fn settle(&self, timeout: Duration) {
        let until = Instant::now() + timeout;
        while self.shared.done.lock().expect("hash answers").len() < self.waiting.len()
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl<T> Drop for Hashes<T> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.jobs.lock().expect("hash queue").closed = true;
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn work(s: &Shared, cfg: HashConfig, proc_root: &std::path::Path) {
    let mut budget = Budget::new(cfg.rate);
    loop {
        let job = {
            let mut q = s.jobs.lock().expect("hash queue");
            loop {
                if q.closed {
                    return;
                }
                if let Some(j) = q.small.pop_front().or_else(|| q.large.pop_front()) {
                    break j;
                }
                q = s.wake.wait(q).expect("hash queue");
            }
        };
        let o = hash_one(&job, cfg, proc_root, &mut budget, s);
        s.done.lock().expect("hash answers").push((job.key, o));
    }
}

/// Reading pace: at most `rate` bytes per second, a token bucket whose burst
/// is an eighth of a second: an idle worker earns no more credit than that, so
/// a file read after a pause is paced from its first bytes.
struct Budget {
    rate: u64,
    last: Instant,
    /// Bytes that may be read now without waiting (negative: owed).
    tokens: f64,
}

impl Budget {
    fn new(rate: u64) -> Self {
        let rate = rate.max(1 << 20);
        Budget {
            rate,
            last: Instant::now(),
            tokens: rate as f64 / 8.0,
        }
    }

    fn burst(&self) -> f64 {
        self.rate as f64 / 8.0
    }

    fn spend(&mut self, n: u64, stop: &AtomicBool) {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate as f64;
        self.last = now;
        self.tokens = (self.tokens + earned).min(self.burst()) - n as f64;
        if self.tokens < 0.0 {
            // in slices: a stop is not kept waiting
            let until = now + Duration::from_secs_f64(-self.tokens / self.rate as f64);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
            }
        }
    }
}

fn is_same(m: &std::fs::Metadata, key: &FileKey) -> bool {
    let ctime = u64::try_from(m.ctime()).unwrap_or(0) * 1_000_000_000
        + u64::try_from(m.ctime_nsec()).unwrap_or(0);
    m.dev() == key.dev.to_user()
        && m.ino() == key.inode
        && m.size() == key.size
        && ctime == key.ctime
}

fn outcome(status: HashStatus, error: Option<String>) -> Outcome {
    Outcome {
        status,
        sha256: None,
        error,
    }
}

fn hash_one(
    job: &Job,
    cfg: HashConfig,
    proc_root: &std::path::Path,
    budget: &mut Budget,
    s: &Shared,
) -> Outcome {
    if job.key.size > cfg.max_size {
        return outcome(HashStatus::TooLarge, None);
    }
    // the processes' own links first: the very file, wherever it is (deleted,
    // a memfd, in another mount namespace); the path last
    let mut candidates: Vec<PathBuf> = job
        .pids
        .iter()
        .map(|p| proc_root.join(p.to_string()).join("exe"))
        .collect();
    candidates.extend(job.path.clone());
    let mut replaced = false;
    let mut file = None;
    for c in candidates {
        let Ok(f) = File::open(&c) else { continue };
        match f.metadata() {
            Ok(m) if is_same(&m, &job.key) => {
                file = Some(f);
                break;
            }
            Ok(_) => replaced = true,
            Err(_) => {}
        }
    }
    let Some(mut f) = file else {
        return outcome(
            if replaced {
                HashStatus::Changed
            } else {
                HashStatus::Vanished
            },
            None,
        );
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                total += n as u64;
                s.bytes.fetch_add(n as u64, Ordering::Relaxed);
                budget.spend(n as u64, &s.stop);
                if s.stop.load(Ordering::Relaxed) {
                    return outcome(HashStatus::Skipped, Some("ksight stopped".into()));
                }
                // a large file gives way to the small ones asked for meanwhile
                if job.key.size > SMALL && total % (1 << 20) < n as u64 {
                    loop {
                        let Some(j) = s.jobs.lock().expect("hash queue").small.pop_front() else {
                            break;
                        };
                        let o = hash_one(&j, cfg, proc_root, budget, s);
                        s.done.lock().expect("hash answers").push((j.key, o));
                    }
                }
                if total > job.key.size {
                    return outcome(HashStatus::Changed, None); // it grew while read
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return outcome(HashStatus::Error, Some(e.to_string())),
        }
    }
    // written to while read: its ctime moved
    match f.metadata() {
        Ok(m) if is_same(&m, &job.key) && total == job.key.size => {}
        Ok(_) => return outcome(HashStatus::Changed, None),
        Err(e) => return outcome(HashStatus::Error, Some(e.to_string())),
    }
    let digest = h.finalize();
    let mut hex = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
    }
    Outcome {
        status: HashStatus::Ok,
        sha256: Some(hex.into()),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::context::Dev;

    fn key_of(path: &std::path::Path) -> FileKey {
        let m = std::fs::metadata(path).unwrap();
        // back to the kernel's encoding from stat's
        let (ma, mi) = (libc_major(m.dev()), libc_minor(m.dev()));
        FileKey {
            dev: Dev((ma << 20) | mi),
            inode: m.ino(),
            ctime: m.ctime() as u64 * 1_000_000_000 + m.ctime_nsec() as u64,
            size: m.size(),
        }
    }

    fn libc_major(d: u64) -> u32 {
        (((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff)) as u32
    }

    fn libc_minor(d: u64) -> u32 {
        (((d >> 12) & 0xffff_ff00) | (d & 0xff)) as u32
    }

    fn wait<T>(h: &mut Hashes<T>) -> Vec<Answer<T>> {
        for _ in 0..500 {
            let a = h.answers();
            if !a.is_empty() {
                return a;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no answer");
    }

    #[test]
    fn an_idle_budget_allows_only_a_short_burst() {
        // idle for a while, then 1 MiB at 1 MiB/s: an eighth of a second comes
        // free, the rest is paced (the bound is a floor: a slow machine only
        // takes longer)
        let stop = AtomicBool::new(false);
        let mut b = Budget::new(1 << 20);
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        for _ in 0..16 {
            b.spend(1 << 16, &stop);
        }
        assert!(
            t.elapsed() >= Duration::from_millis(850),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn hashes_a_file_by_path_once_and_caches_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        let key = key_of(&p);
        // no such pid: the path is the way in
        let mut h: Hashes<u32> = Hashes::new(HashConfig::default(), dir.path().join("noproc"));
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(h.hash_or_ask(key, vec![1], Some(p.clone()), 7), None);
        // the second waits with the first, unless the worker was quicker
        let second = h.hash_or_ask(key, vec![1], Some(p.clone()), 8);
        let a = wait(&mut h);
        let waiters: Vec<u32> = a.iter().map(|a| a.waiter).collect();
        match second {
            None => assert_eq!(waiters, [7, 8]),
            Some(s) => assert_eq!((waiters, &*s), (vec![7], sha)),
        }
        assert_eq!(a[0].outcome.sha256.as_deref(), Some(sha));
        assert_eq!(
            h.hash_or_ask(key, vec![1], Some(p), 9).as_deref(),
            Some(sha),
            "cached"
        );
        assert_eq!(h.known(&key).as_deref(), Some(sha));
        assert_eq!(h.stats.hashed, 1, "one read for three execs");
    }

    #[test]
    fn a_replaced_file_is_changed_not_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        let key = key_of(&p);
        std::thread::sleep(Duration::from_millis(20));
        // same path, another inode
        std::fs::remove_file(&p).unwrap();
        std::fs::File::create(&p)
            .unwrap()
            .write_all(b"abd")
            .unwrap();
        let mut h: Hashes<()> = Hashes::new(HashConfig::default(), dir.path().join("noproc"));
        h.hash_or_ask(key, vec![1], Some(p), ());
        let a = wait(&mut h);
        assert_eq!(a[0].outcome.status, HashStatus::Changed);
        assert_eq!(a[0].outcome.sha256, None);
    }

    #[test]
    fn limits_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        let key = key_of(&p);
        let cfg = HashConfig {
            max_size: 100,
            ..Default::default()
        };
        let mut h: Hashes<()> = Hashes::new(cfg, dir.path().join("noproc"));
        h.hash_or_ask(key, vec![1], Some(p.clone()), ());
        assert_eq!(wait(&mut h)[0].outcome.status, HashStatus::TooLarge);
        assert_eq!(h.hash_or_ask(key, vec![1], Some(p), ()), None);
        assert_eq!(h.pending(), 0, "too large is settled: not asked again");
        let gone = FileKey {
            inode: 1,
            size: 10,
            ..key
        };
        h.hash_or_ask(gone, vec![1], Some(dir.path().join("nothing")), ());
        assert_eq!(wait(&mut h)[0].outcome.status, HashStatus::Vanished);
        let mut off: Hashes<()> = Hashes::new(
            HashConfig {
                enabled: false,
                ..cfg
            },
            dir.path().into(),
        );
        assert_eq!(off.hash_or_ask(key, vec![1], None, ()), None);
        assert!(off.answers().is_empty());
    }

    #[test]
    fn a_large_file_does_not_hold_up_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (big, small) = (dir.path().join("big"), dir.path().join("small"));
        std::fs::write(&big, vec![1u8; 3 << 20]).unwrap();
        std::fs::write(&small, b"abc").unwrap();
        // 1 MiB/s: the large one takes three seconds
        let cfg = HashConfig {
            rate: 1 << 20,
            ..Default::default()
        };
        let mut h: Hashes<&str> = Hashes::new(cfg, dir.path().join("noproc"));
        h.hash_or_ask(key_of(&big), vec![1], Some(big), "big");
        std::thread::sleep(Duration::from_millis(50));
        h.hash_or_ask(key_of(&small), vec![1], Some(small), "small");
        let t = Instant::now();
        let first = wait(&mut h);
        assert_eq!(first[0].waiter, "small");
        assert!(
            t.elapsed() < Duration::from_millis(2000),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut h: Hashes<()> = Hashes::new(
            HashConfig {
                enabled: false,
                ..Default::default()
            },
            "/".into(),
        );
        for i in 0..(CACHE as u64 + 10) {
            let k = FileKey {
                dev: Dev(1),
                inode: i,
                ctime: 0,
                size: 0,
            };
            h.remember(k, outcome(HashStatus::TooLarge, None));
        }
        assert!(h.cache.len() <= CACHE);
        assert!(h.cache.len() > CACHE / 2);
    }
}
