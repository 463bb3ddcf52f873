//! The fleet output: each event is one message in NATS JetStream, on
//! `<prefix>.<host>.<kind>` (alerts on `<prefix>.<host>.alert.<severity>`),
//! its payload the event's JSON with a `host` field first. Published with
//! acknowledgement, many in flight; each message carries a `Nats-Msg-Id`
//! fixed when the event is first rendered (an instance id and a counter), so
//! the server stores a message sent twice (a retry after a lost ack, a spool
//! replayed after a crash) once, within the stream's duplicate window.
//!
//! What the server does not acknowledge (unreachable, no quorum, a timeout)
//! goes to the output's on-disk [`Spool`], in order; while the spool holds
//! anything, new events go behind it, and it is replayed (oldest first, the
//! cursor moving only past acknowledged messages) whenever the client is
//! connected. A restart with a spool left behind replays it. Only what does
//! not fit in the spool is lost, counted as the output's failures.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::ConnectOptions;

use ksight_core::event::{Detail, Event};

use crate::spool::{Record, Spool};

/// Credentials and TLS, from an `[[output]]` table's keys of the same names
/// (docs/config.md).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsAuth {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// An nkey seed (`SU...`).
    pub nkey: Option<String>,
    /// A `.creds` file (JWT and nkey seed).
    pub creds: Option<PathBuf>,
    /// CA certificates (PEM) that sign the servers'.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that verify clients.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// TLS even where the server does not ask for it.
    pub tls: bool,
}

impl NatsAuth {
    /// Connect options with these credentials (a creds file is read now).
    pub async fn options(&self) -> Result<ConnectOptions, String> {
        let mut o = ConnectOptions::new();
        if let Some(path) = &self.creds {
            o = o
                .credentials_file(path)
                .await
                .map_err(|e| format!("creds {}: {e}", path.display()))?;
        }
        match (&self.user, &self.password) {
            (Some(u), Some(p)) => o = o.user_and_password(u.clone(), p.clone()),
            (None, None) => {}
            _ => return Err("user and password go together".into()),
        }
        if let Some(t) = &self.token {
            o = o.token(t.clone());
        }
        if let Some(seed) = &self.nkey {
            o = o.nkey(seed.clone());
        }
        if let Some(ca) = &self.tls_ca {
            o = o.add_root_certificates(ca.clone());
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => o = o.add_client_certificate(c.clone(), k.clone()),
            (None, None) => {}
            _ => return Err("tls-cert and tls-key go together".into()),
        }
        if self.tls {
            o = o.require_tls(true);
        }
        Ok(o)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// `nats://host:port` of one or more servers of the cluster.
    pub servers: Vec<String>,
    /// The subjects' first token (`ksight`).
    pub prefix: String,
    /// The host's name in subjects and payloads; `None`: the machine's.
    pub host: Option<String>,
    pub spool_dir: PathBuf,
    pub spool_size: u64,
    /// How long a published message may wait for its acknowledgement.
    pub timeout: Duration,
    /// Messages in flight at most.
    pub in_flight: usize,
    /// Events of one subject per message at most (1: each event its own message).
    pub events_per_message: usize,
    pub auth: NatsAuth,
}

/// What the fleet output did beyond the queue's counts (for the summary and
/// metrics).
#[derive(Debug, Default)]
pub struct NatsStats {
    /// Acknowledged by the stream.
    pub acked: AtomicU64,
    /// Acknowledged as duplicates (sent before, stored once).
    pub duplicates: AtomicU64,
    /// Events waiting in the spool.
    pub spooled: AtomicU64,
    /// Events that ever went to the spool (the server did not take them at once).
    pub spilled: AtomicU64,
}

/// The header that says how many events a message holds (one per line).
pub const EVENTS_HEADER: &str = "Ksight-Events";

fn events_in(r: &Record) -> u64 {
    r.events()
}

/// A subject token from a host name: NATS tokens cannot hold `.`, `*`, `>`
/// or white space, which become `_`.
pub fn subject_token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

/// The machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// What an event's subject ends with: its kind, and an alert's severity.
type SubjectTail = (&'static str, Option<&'static str>);

fn subject_tail(ev: &Event) -> SubjectTail {
    match &ev.detail {
        Detail::Alert(a) => ("alert", Some(a.alert.severity.name())),
        d => (d.kind().name(), None),
    }
}

/// The subject of an event.
pub fn subject(prefix: &str, host: &str, ev: &Event) -> String {
    match subject_tail(ev) {
        (kind, Some(sev)) => format!("{prefix}.{host}.{kind}.{sev}"),
        (kind, None) => format!("{prefix}.{host}.{kind}"),
    }
}

pub struct Nats {
    cfg: NatsConfig,
    host: String,
    host_json: Vec<u8>,
    token: String,
    instance: String,
    next_id: u64,
    rt: tokio::runtime::Runtime,
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    spool: Spool,
    pub stats: Arc<NatsStats>,
    last_replay: Option<Instant>,
    last_sync: Instant,
    /// Said once per outage.
    spooling_said: bool,
}

impl Nats {
    /// Opens the spool (what a crash left is replayed) and starts connecting
    /// in the background: a server not there yet is not an error.
    pub fn open(cfg: NatsConfig) -> Result<Nats, String> {
        let spool =
            Spool::open(&cfg.spool_dir, cfg.spool_size).map_err(|e| format!("spool: {e}"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("out-nats")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let host = cfg.host.clone().unwrap_or_else(hostname);
        let token = subject_token(&host);
        let servers = cfg.servers.clone();
        let (client, js) = rt.block_on(async {
            let o = cfg.auth.options().await?;
            let client = o
                .name(format!("ksight {host}"))
                .retry_on_initial_connect()
                .max_reconnects(None)
                .connection_timeout(Duration::from_secs(2))
                .reconnect_delay_callback(|n| Duration::from_millis((n as u64 * 100).min(1000)))
                .connect(servers.as_slice())
                .await
                .map_err(|e| format!("{}: {e}", servers.join(", ")))?;
            let js = async_nats::jetstream::ContextBuilder::new()
                .timeout(cfg.timeout)
                // one more than publish() keeps waiting: it never blocks on a permit
                .max_ack_inflight(cfg.in_flight.max(1) + 1)
                .backpressure_on_inflight(true)
                .build(client.clone());
            Ok::<_, String>((client, js))
        })?;
        let stats = Arc::new(NatsStats::default());
        stats.spooled.store(spool.events(), Ordering::Relaxed);
        if !spool.is_empty() {
            eprintln!(
                "ksight: output nats: {} events left in the spool {} by an earlier run: replayed first",
                spool.events(),
                cfg.spool_dir.display()
            );
        }
        let spooling_said = !spool.is_empty();
        Ok(Nats {
            host_json: serde_json::to_vec(&host).expect("a string serialises"),
            host,
            token,
            instance: instance_id(),
            next_id: 0,
            rt,
            client,
            js,
            spool,
            stats,
            last_replay: None,
            last_sync: Instant::now(),
            spooling_said,
            cfg,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Messages per publish round.
    pub fn batch(&self) -> usize {
        self.cfg.in_flight.max(1)
    }

    /// Events the output's thread takes from its queue at once.
    pub fn events_per_batch(&self) -> usize {
        8192
    }

    /// The messages of a batch of events (each with its JSON line): events
    /// of one subject, in order, up to `events-per-message` of them (and
    /// 256 KiB) per message, one JSON object with `host` per line; each
    /// message with its stable id.
    pub fn messages<'a>(
        &mut self,
        evs: impl Iterator<Item = (&'a Event, &'a [u8])>,
    ) -> Vec<Record> {
        let max = self.cfg.events_per_message.max(1);
        // below the server's max_payload (1 MiB by default), headers aside
        let server_max = self.client.server_info().max_payload;
        let max_bytes = match server_max {
            0 => 256 << 10,
            m => (256 << 10).min(m.saturating_sub(8 << 10).max(1)),
        };
        // messages being filled, by subject: the subject's text is made once
        // per message, not per event
        let mut open: Vec<(SubjectTail, &Event, Vec<u8>, usize)> = Vec::new();
        let mut out = Vec::new();
        for (ev, json_line) in evs {
            let tail = subject_tail(ev);
            let at = match open.iter().position(|m| m.0 == tail) {
                Some(i) => i,
                None => {
                    open.push((tail, ev, Vec::with_capacity(1024), 0));
                    open.len() - 1
                }
            };
            let (_, _, payload, n) = &mut open[at];
            if *n > 0 {
                payload.push(b'\n');
            }
            let line = json_line.strip_suffix(b"\n").unwrap_or(json_line);
            payload.extend_from_slice(b"{\"host\":");
            payload.extend_from_slice(&self.host_json);
            if line.len() > 2 {
                payload.push(b',');
                payload.extend_from_slice(&line[1..]);
            } else {
                payload.push(b'}');
            }
            *n += 1;
            if *n >= max || payload.len() >= max_bytes {
                let (_, first, payload, _) = open.swap_remove(at);
                let subject = subject(&self.cfg.prefix, &self.token, first);
                out.push(self.record(subject, payload));
            }
        }
        for (_, first, payload, _) in open {
            let subject = subject(&self.cfg.prefix, &self.token, first);
            out.push(self.record(subject, payload));
        }
        out
    }

    fn record(&mut self, subject: String, payload: Vec<u8>) -> Record {
        self.next_id += 1;
        Record::new(
            subject,
            format!("{}-{}", self.instance, self.next_id),
            payload,
        )
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Publishes `recs` in order with at most `in_flight` waiting for their
    /// acknowledgement (the oldest is awaited before one more is sent, so a
    /// round of any size cannot wait on itself), each given `timeout` from
    /// when it was sent. At the first one not acknowledged nothing more is
    /// sent: what was acknowledged is an unbroken prefix of `recs` (later
    /// events never overtake earlier ones), and an outage costs one timeout,
    /// not one per message. How many were acknowledged, and why the next
    /// one was not.
    fn publish(&self, recs: &[Record]) -> (usize, Option<String>) {
        let js = &self.js;
        let stats = &self.stats;
        let window = self.cfg.in_flight.max(1);
        let timeout = self.cfg.timeout;
        self.rt.block_on(async {
            type Sent = Result<PublishAckFuture, PublishError>;
            let settle = |n: u64, sent: tokio::time::Instant, f: Sent| async move {
                let ack = tokio::time::timeout_at(
                    sent + timeout,
                    std::future::IntoFuture::into_future(f?),
                )
                .await
                .map_err(|_| PublishError::new(PublishErrorKind::TimedOut))??;
                if ack.duplicate {
                    stats.duplicates.fetch_add(n, Ordering::Relaxed);
                }
                stats.acked.fetch_add(n, Ordering::Relaxed);
                Ok::<(), PublishError>(())
            };
            let mut acked = 0;
            let mut failed: Option<String> = None;
            let why = |e: PublishError| match e.kind() {
                PublishErrorKind::StreamNotFound => {
                    "no stream takes these subjects (`ksight fleet init` makes it)".to_string()
                }
                _ => e.to_string(),
            };
            let mut pending = std::collections::VecDeque::with_capacity(window);
            for r in recs {
                if pending.len() >= window {
                    let (n, sent, f) = pending.pop_front().expect("a pending publish");
                    if let Err(e) = settle(n, sent, f).await {
                        failed = Some(why(e));
                        break;
                    }
                    acked += 1;
                }
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(EVENTS_HEADER, events_in(r).to_string().as_str());
                let p = PublishMessage::build()
                    .payload(r.payload.clone())
                    .headers(headers)
                    .message_id(&r.id);
                let sent = tokio::time::Instant::now();
                let f = js.send_publish(r.subject.clone(), p).await;
                pending.push_back((events_in(r), sent, f));
            }
            // what is in flight: counted only up to the first failure (a later
            // one acknowledged is stored, and its replay is a duplicate)
            while let Some((n, sent, f)) = pending.pop_front() {
                match settle(n, sent, f).await {
                    Ok(()) if failed.is_none() => acked += 1,
                    Ok(()) => {}
                    Err(e) => {
                        failed.get_or_insert_with(|| why(e));
                    }
                }
            }
            (acked, failed)
        })
    }

    /// Delivers records in order: straight to the stream when nothing is
    /// spooled and the server acknowledges, else into the spool; into the
    /// spool too when the output is `behind` (events come faster than the
    /// stream acknowledges them: the spool, not the queue, absorbs the
    /// difference, and nothing is dropped until it is full). How many events
    /// were kept (acknowledged or spooled) and, when some were not, why.
    pub fn deliver(
        &mut self,
        recs: Vec<Record>,
        behind: &dyn Fn() -> bool,
    ) -> (usize, Option<String>) {
        let total: u64 = recs.iter().map(events_in).sum();
        let behind_now = behind();
        let mut refused = None;
        let mut err = None;
        let rest: Vec<Record> = if self.spool.is_empty() && self.connected() && !behind_now {
            let (done, why) = self.publish(&recs);
            if done == recs.len() {
                return (total as usize, None);
            }
            refused = why;
            recs.into_iter().skip(done).collect()
        } else {
            recs
        };
        let total_rest: u64 = rest.iter().map(events_in).sum();
        let (n, failed) = self.spool.append(&rest);
        let kept: u64 = rest[..n].iter().map(events_in).sum();
        if let Some(e) = failed {
            err = Some(format!("spool: {e}"));
        }
        self.stats.spilled.fetch_add(kept, Ordering::Relaxed);
        self.sync_spool(false);
        if kept < total_rest && err.is_none() {
            err = Some(format!(
                "the spool {} is full ({} bytes): {} events dropped",
                self.cfg.spool_dir.display(),
                self.cfg.spool_size,
                total_rest - kept
            ));
        }
        if kept > 0 && !self.spooling_said {
            self.spooling_said = true;
            let why = if !self.connected() {
                "the server does not acknowledge (not connected)".to_string()
            } else if behind_now {
                "events come faster than the stream acknowledges them".to_string()
            } else {
                format!(
                    "the stream does not acknowledge ({})",
                    refused.as_deref().unwrap_or("no answer in time")
                )
            };
            eprintln!(
                "ksight: output nats: {why}: spooling to {}",
                self.cfg.spool_dir.display()
            );
        }
        self.stats
            .spooled
            .store(self.spool.events(), Ordering::Relaxed);
        self.replay(Duration::from_millis(500), behind);
        ((total - (total_rest - kept)) as usize, err)
    }

    /// Replays the spool while connected and acknowledged, for at most
    /// `budget` and only while the queue is not `behind` (new events wait in
    /// the queue meanwhile); at most one try a second while the server does
    /// not answer.
    pub fn replay(&mut self, budget: Duration, behind: &dyn Fn() -> bool) {
        if self.spool.is_empty() || !self.connected() {
            return;
        }
        if self
            .last_replay
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let start = Instant::now();
        while !self.spool.is_empty() && start.elapsed() < budget && !behind() {
            // rounds of 64 messages: the queue is looked at between them
            let recs = match self.spool.peek(self.batch().min(64)) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("ksight: output nats: reading the spool: {e}");
                    break;
                }
            };
            let (done, _) = self.publish(&recs);
            if let Err(e) = self.spool.consume(&recs[..done]) {
                eprintln!("ksight: output nats: the spool's cursor: {e}");
                break;
            }
            self.stats
                .spooled
                .store(self.spool.events(), Ordering::Relaxed);
            if done < recs.len() {
                self.last_replay = Some(Instant::now());
                return;
            }
        }
        self.last_replay = None;
        if self.spool.is_empty() && self.spooling_said {
            self.spooling_said = false;
            eprintln!("ksight: output nats: the spool is replayed, publishing directly again");
        }
    }

    /// The spool to the disk at least every 200 ms (`now`: at once).
    pub fn sync_spool(&mut self, now: bool) {
        if now || self.last_sync.elapsed() >= Duration::from_millis(200) {
            if let Err(e) = self.spool.sync() {
                eprintln!("ksight: output nats: the spool's fsync: {e}");
            }
            self.last_sync = Instant::now();
        }
    }

    /// At stop: a last replay (at most `limit`); what is left stays spooled.
    pub fn close(&mut self, limit: Duration) {
        self.sync_spool(true);
        self.last_replay = None;
        self.replay(limit, &|| false);
        if !self.spool.is_empty() {
            eprintln!(
                "ksight: output nats: {} events stay in the spool {} (replayed at the next start)",
                self.spool.events(),
                self.cfg.spool_dir.display()
            );
        }
    }
}

/// 16 hex digits from the kernel's random source: what makes message ids of
/// this run unique.
fn instance_id() -> String {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap_or_default();
    let hex: String = uuid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(16)
        .collect();
    if hex.len() == 16 {
        hex
    } else {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        format!("{:016x}", t ^ (std::process::id() as u64) << 48)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_of_events_and_hosts() {
        let ev = ksight_core::sink::exit_event(0);
        assert_eq!(subject("ksight", "web-1", &ev), "ksight.web-1.exit");
        assert_eq!(subject_token("a.b c*>"), "a_b_c__");
        assert_eq!(subject_token(""), "_");
    }
}
