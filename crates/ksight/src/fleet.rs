//! `ksight fleet init|tail|stats`: the fleet stream in NATS JetStream, as
//! the hosts' nats outputs fill it (docs/fleet.md). Servers and credentials
//! come from the config file's nats output (never from the command line,
//! where `ps` shows them), or `--server` for a server without them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use async_nats::jetstream::{self, consumer, stream};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::Value;

use ksight_core::kinds::alert::Severity;
use ksight_output::nats::{subject_token, NatsAuth};
use ksight_output::spec::Target;
use ksight_output::units::{parse_bytes, parse_duration};

use crate::cli::{FleetArgs, FleetCommand, FleetFormat};

pub fn run(args: FleetArgs) -> Result<ExitCode> {
    let (servers, auth) = connection(&args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let opts = auth.options().await.map_err(anyhow::Error::msg)?;
        let client = opts
            .name("ksight fleet")
            .connection_timeout(Duration::from_secs(5))
            .connect(servers.as_slice())
            .await
            .with_context(|| format!("connecting to {}", servers.join(", ")))?;
        let js = jetstream::new(client);
        match args.which {
            FleetCommand::Init {
                replicas,
                max_age,
                max_bytes,
                dedup_window,
                memory,
            } => {
                let info = ensure_stream(
                    &js,
                    StreamSpec {
                        name: args.stream.clone(),
                        prefix: args.prefix.clone(),
                        replicas,
                        max_age: parse_duration(&max_age, Duration::from_secs(1))
                            .map_err(|e| anyhow::anyhow!("--max-age: {e}"))?,
                        max_bytes: match max_bytes {
                            Some(b) => parse_bytes(&b)
                                .map_err(|e| anyhow::anyhow!("--max-bytes: {e}"))?
                                as i64,
                            None => -1,
                        },
                        dedup_window: parse_duration(&dedup_window, Duration::from_secs(1))
                            .map_err(|e| anyhow::anyhow!("--dedup-window: {e}"))?,
                        memory,
                    },
                )
                .await?;
                println!(
                    "stream {}: subjects {}, {} replicas, max age {}, dedup window {}, {} messages",
                    info.config.name,
                    info.config.subjects.join(" "),
                    info.config.num_replicas,
                    humantime::format_duration(info.config.max_age),
                    humantime::format_duration(info.config.duplicate_window),
                    info.state.messages
                );
                Ok(ExitCode::SUCCESS)
            }
            FleetCommand::Tail {
                host,
                kinds,
                severity,
                since,
                format,
                no_follow,
            } => {
                let f = TailFilter::new(&args.prefix, host, kinds, severity)?;
                tail(&js, &args.stream, &f, since.as_deref(), format, no_follow).await
            }
            FleetCommand::Stats { format } => stats(&js, &args.stream, &args.prefix, format).await,
        }
    })
}

/// What `fleet init` makes.
pub struct StreamSpec {
    pub name: String,
    pub prefix: String,
    pub replicas: usize,
    pub max_age: Duration,
    /// -1: no limit.
    pub max_bytes: i64,
    pub dedup_window: Duration,
    pub memory: bool,
}

/// Creates the stream, or updates it to `spec` (idempotent).
pub async fn ensure_stream(js: &jetstream::Context, spec: StreamSpec) -> Result<stream::Info> {
    let cfg = stream::Config {
        name: spec.name.clone(),
        subjects: vec![format!("{}.>", spec.prefix)],
        num_replicas: spec.replicas,
        max_age: spec.max_age,
        max_bytes: spec.max_bytes,
        duplicate_window: spec.dedup_window,
        storage: if spec.memory {
            stream::StorageType::Memory
        } else {
            stream::StorageType::File
        },
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    };
    Ok(match js.get_stream(&spec.name).await {
        Ok(_) => js
            .update_stream(&cfg)
            .await
            .context("updating the stream")?,
        Err(_) => js
            .create_stream(cfg)
            .await
            .context("creating the stream")?
            .get_info()
            .await
            .context("the new stream")?,
    })
}

/// Servers and credentials: `--server`, else the config file's nats output.
fn connection(args: &FleetArgs) -> Result<(Vec<String>, NatsAuth)> {
    let path = args.config.clone().or_else(|| {
        Path::new(crate::config::DEFAULT_PATH)
            .exists()
            .then(|| crate::config::DEFAULT_PATH.into())
    });
    let mut found = None;
    if let Some(path) = &path {
        let file = match crate::config::ConfigFile::load(path) {
            Ok(f) => f,
            // the default file (root's, it may hold passwords) is not needed
            // to reach a server named on the command line
            Err(_) if args.config.is_none() && !args.servers.is_empty() => {
                crate::config::ConfigFile::parse(path, String::new()).map_err(anyhow::Error::msg)?
            }
            Err(e) => bail!("{e}"),
        };
        found = file.outputs.iter().find_map(|o| match &o.target {
            Target::Nats(n) if args.output.as_ref().is_none_or(|w| *w == o.name) => {
                Some((n.servers.clone(), n.auth.clone()))
            }
            _ => None,
        });
        if found.is_none() && args.output.is_some() {
            bail!(
                "{}: no nats output named {}",
                path.display(),
                args.output.as_deref().unwrap_or_default()
            );
        }
    }
    let (servers, auth) = found.unwrap_or_default();
    let servers = match (args.servers.is_empty(), servers.is_empty()) {
        (false, _) => args.servers.clone(),
        (true, false) => servers,
        (true, true) => vec!["nats://127.0.0.1:4222".into()],
    };
    Ok((servers, auth))
}

/// What `tail` shows: the narrowest subject the server can filter on, and
/// what it cannot (a host glob, several kinds, a minimum severity) checked here.
struct TailFilter {
    subject: String,
    host: Option<String>,
    kinds: Vec<String>,
    severity: Option<Severity>,
}

impl TailFilter {
    fn new(
        prefix: &str,
        host: Option<String>,
        kinds: Vec<String>,
        severity: Option<String>,
    ) -> Result<TailFilter> {
        for k in &kinds {
            k.parse::<ksight_core::event::Kind>()
                .map_err(anyhow::Error::msg)?;
        }
        let severity = severity
            .map(|s| {
                Severity::from_name(&s).ok_or_else(|| {
                    anyhow::anyhow!("--severity {s:?}: one of {}", Severity::NAMES.join(", "))
                })
            })
            .transpose()?;
        let glob = |h: &str| h.contains(['*', '?']);
        let host_tok = match &host {
            Some(h) if !glob(h) => subject_token(h),
            _ => "*".into(),
        };
        let kind_part = match (kinds.as_slice(), severity) {
            (_, Some(_)) => "alert.*".to_string(),
            ([k], None) if k == "alert" => "alert.*".into(),
            ([k], None) => k.clone(),
            _ => ">".into(),
        };
        let host = host.filter(|h| glob(h));
        Ok(TailFilter {
            subject: format!("{prefix}.{host_tok}.{kind_part}"),
            host,
            kinds,
            severity,
        })
    }

    fn keep(&self, ev: &Value) -> bool {
        let host = ev["host"].as_str().unwrap_or_default();
        let kind = ev["type"].as_str().unwrap_or_default();
        self.host.as_ref().is_none_or(|g| glob_match(g, host))
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
            && self.severity.is_none_or(|min| {
                ev["alert"]["severity"]
                    .as_str()
                    .and_then(Severity::from_name)
                    .is_some_and(|s| s.rank() >= min.rank())
            })
    }
}

async fn tail(
    js: &jetstream::Context,
    name: &str,
    f: &TailFilter,
    since: Option<&str>,
    format: FleetFormat,
    no_follow: bool,
) -> Result<ExitCode> {
    let mut s = js
        .get_stream(name)
        .await
        .with_context(|| format!("stream {name} (ksight fleet init makes it)"))?;
    let last = s.info().await?.state.last_sequence;
    let since = since.map(start_time).transpose()?;
    let deliver_policy = match since {
        Some(start_time) => consumer::DeliverPolicy::ByStartTime { start_time },
        None if no_follow => consumer::DeliverPolicy::All,
        None => consumer::DeliverPolicy::New,
    };
    // the client recreates an ordered consumer that was reset before its
    // first message from the stream's start: what the policy excludes is
    // skipped here too
    let excluded = |info: &jetstream::message::Info| match since {
        Some(t) => info.published < t,
        None if no_follow => false,
        None => info.stream_sequence <= last,
    };
    let c = s
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: f.subject.clone(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .context("creating the ordered consumer")?;
    // the messages there are now: a bounded read ends after them
    let waiting = c.cached_info().num_pending;
    let mut msgs = c.messages().await?;
    let mut out = std::io::stdout().lock();
    if format == FleetFormat::Table {
        use std::io::Write as _;
        writeln!(
            out,
            "{:<30} {:<12} {:<10} {:>7} {:<16} DETAIL",
            "TIME", "HOST", "TYPE", "PID", "COMM"
        )?;
    }
    loop {
        let next = if no_follow {
            if waiting == 0 {
                break;
            }
            // a leader election or a consumer reset may pause it: not the end
            match tokio::time::timeout(Duration::from_secs(30), msgs.next()).await {
                Ok(m) => m,
                Err(_) => {
                    bail!("the stream sent nothing for 30 s before its end (sequence {last})")
                }
            }
        } else {
            msgs.next().await
        };
        let Some(m) = next else { break };
        let m = m.map_err(|e| anyhow::anyhow!("reading the stream: {e}"))?;
        let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
        let pending = m.info().map(|i| i.pending).unwrap_or(1);
        let skip = m.info().is_ok_and(|i| excluded(&i));
        // a message holds one event per line
        for line in m.payload.split(|&b| b == b'\n').filter(|_| !skip) {
            if let Ok(ev) = serde_json::from_slice::<Value>(line) {
                if f.keep(&ev) {
                    write_event(&mut out, &ev, format, line)?;
                }
            }
        }
        if no_follow && (pending == 0 || seq >= last) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn start_time(v: &str) -> Result<time::OffsetDateTime> {
    let at = match parse_duration(v, Duration::from_millis(1)) {
        Ok(ago) => std::time::SystemTime::now() - ago,
        Err(_) => humantime::parse_rfc3339_weak(v).map_err(|e| {
            anyhow::anyhow!("--since {v:?}: a duration (10m) or a time (RFC 3339): {e}")
        })?,
    };
    let ns = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    Ok(time::OffsetDateTime::from_unix_timestamp_nanos(ns)?)
}

fn write_event(
    out: &mut impl std::io::Write,
    ev: &Value,
    format: FleetFormat,
    raw: &[u8],
) -> std::io::Result<()> {
    if format == FleetFormat::Json {
        out.write_all(raw)?;
        return out.write_all(b"\n");
    }
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    let p = &ev["process"];
    let endpoint = |e: &Value| format!("{}:{}", s(&e["addr"]), e["port"]);
    let detail = match ev["type"].as_str().unwrap_or_default() {
        "exec" => s(&ev["exec"]["filename"]),
        "alert" => format!(
            "[{}] {}: {}",
            s(&ev["alert"]["severity"]),
            s(&ev["alert"]["rule"]),
            s(&ev["alert"]["output"])
        ),
        "dns" => format!(
            "{} {}",
            s(&ev["dns"]["question"]["name"]),
            s(&ev["dns"]["status"])
        ),
        _ if ev["net"].is_object() => format!(
            "{} -> {}",
            endpoint(&ev["net"]["local"]),
            endpoint(&ev["net"]["remote"])
        ),
        _ => String::new(),
    };
    writeln!(
        out,
        "{:<30} {:<12} {:<10} {:>7} {:<16} {}",
        s(&ev["time"]),
        s(&ev["host"]),
        s(&ev["type"]),
        if p.is_object() {
            p["pid"].to_string()
        } else {
            "-".into()
        },
        if p.is_object() {
            s(&p["comm"])
        } else {
            "-".into()
        },
        detail
    )
}

/// A shell-style glob: `*` any run, `?` one character.
fn glob_match(pat: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[derive(Default, serde::Serialize)]
struct HostStats {
    events: u64,
    messages: u64,
    kinds: BTreeMap<String, u64>,
    /// When the stream stored the host's last message (RFC 3339).
    last_stored: Option<String>,
    /// The last message's delay: stored time minus the event's time.
    lag_ms: Option<i64>,
}

async fn stats(
    js: &jetstream::Context,
    name: &str,
    prefix: &str,
    format: FleetFormat,
) -> Result<ExitCode> {
    let s = js
        .get_stream(name)
        .await
        .with_context(|| format!("stream {name} (ksight fleet init makes it)"))?;
    // messages per subject from the stream's own counts; events per subject
    // from each message's Ksight-Events header (its payload stays in the server)
    let mut subjects = s.info_with_subjects(format!("{prefix}.>")).await?;
    let mut hosts: BTreeMap<String, (HostStats, Vec<String>)> = BTreeMap::new();
    let split = |subject: &str| -> (String, String) {
        let rest = subject
            .strip_prefix(&format!("{prefix}."))
            .unwrap_or(subject);
        let (host, kind) = rest.split_once('.').unwrap_or((rest, ""));
        (
            host.into(),
            kind.split('.').next().unwrap_or_default().into(),
        )
    };
    while let Some((subject, count)) = subjects.try_next().await? {
        let (host, _) = split(&subject);
        let h = hosts.entry(host).or_default();
        h.0.messages += count as u64;
        h.1.push(subject.clone());
    }
    let state = s.get_info().await?.state;
    let last_seq = state.last_sequence;
    if state.messages > 0 {
        let c = s
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: format!("{prefix}.>"),
                headers_only: true,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .context("creating the ordered consumer")?;
        let waiting = c.cached_info().num_pending;
        let mut msgs = c.messages().await?;
        let mut seen = 0;
        while seen < waiting {
            seen += 1;
            // a leader election or a consumer reset may pause it: not the end
            let m = match tokio::time::timeout(Duration::from_secs(30), msgs.next()).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) => {
                    bail!("the stream sent nothing for 30 s before its end (sequence {last_seq})")
                }
            };
            let m = m.map_err(|e| anyhow::anyhow!("reading the stream: {e}"))?;
            let n: u64 = m
                .headers
                .as_ref()
                .and_then(|h| h.get(ksight_output::nats::EVENTS_HEADER))
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(1);
            let (host, kind) = split(m.subject.as_str());
            let h = &mut hosts.entry(host).or_default().0;
            h.events += n;
            *h.kinds.entry(kind).or_default() += n;
            let (seq, pending) = m.info().map_or((0, 1), |i| (i.stream_sequence, i.pending));
            if pending == 0 || seq >= last_seq {
                break;
            }
        }
    }
    let mut out = BTreeMap::new();
    for (host, (mut st, subs)) in hosts {
        let mut last: Option<(time::OffsetDateTime, Vec<u8>)> = None;
        for sub in subs {
            if let Ok(m) = s.get_last_raw_message_by_subject(&sub).await {
                if last.as_ref().is_none_or(|l| m.time > l.0) {
                    last = Some((m.time, m.payload.to_vec()));
                }
            }
        }
        if let Some((stored, payload)) = last {
            let fmt = time::format_description::well_known::Rfc3339;
            st.last_stored = stored.format(&fmt).ok();
            let last_line = payload.rsplit(|&b| b == b'\n').next().unwrap_or_default();
            let ev: Value = serde_json::from_slice(last_line).unwrap_or_default();
            if let Some(t) = ev["time"]
                .as_str()
                .and_then(|t| time::OffsetDateTime::parse(t, &fmt).ok())
            {
                st.lag_ms = Some((stored - t).whole_milliseconds() as i64);
            }
        }
        out.insert(host, st);
    }
    let info = s.get_info().await?;
    let leader = info.cluster.as_ref().and_then(|c| c.leader.clone());
    if format == FleetFormat::Json {
        let doc = serde_json::json!({
            "stream": {
                "name": name,
                "messages": info.state.messages,
                "bytes": info.state.bytes,
                "replicas": info.config.num_replicas,
                "leader": leader,
            },
            "hosts": out,
        });
        println!("{doc}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "stream {}: {} messages, {} bytes, {} replicas, leader {}",
        name,
        info.state.messages,
        info.state.bytes,
        info.config.num_replicas,
        leader.as_deref().unwrap_or("-")
    );
    println!(
        "{:<16} {:>10} {:>9} {:<32} {:>9}  KINDS",
        "HOST", "EVENTS", "MESSAGES", "LAST STORED", "LAG ms"
    );
    for (host, st) in &out {
        let kinds: Vec<String> = st.kinds.iter().map(|(k, n)| format!("{k}={n}")).collect();
        println!(
            "{:<16} {:>10} {:>9} {:<32} {:>9}  {}",
            host,
            st.events,
            st.messages,
            st.last_stored.as_deref().unwrap_or("-"),
            st.lag_ms.map_or("-".into(), |l| l.to_string()),
            kinds.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_subject_filters() {
        assert!(glob_match("web-*", "web-12"));
        assert!(glob_match("a?c", "abc") && !glob_match("a?c", "abbc"));
        assert!(!glob_match("web-*", "db-1"));
        let f = TailFilter::new("ksight", Some("a".into()), vec!["exec".into()], None).unwrap();
        assert_eq!(f.subject, "ksight.a.exec");
        let f = TailFilter::new(
            "ksight",
            Some("web-*".into()),
            vec!["exec".into(), "exit".into()],
            None,
        )
        .unwrap();
        assert_eq!(f.subject, "ksight.*.>");
        let ev = |h: &str, k: &str| serde_json::json!({"host": h, "type": k});
        assert!(
            f.keep(&ev("web-1", "exit"))
                && !f.keep(&ev("db", "exit"))
                && !f.keep(&ev("web-1", "dns"))
        );
        let f = TailFilter::new(
            "ksight",
            Some("h.example".into()),
            vec![],
            Some("high".into()),
        )
        .unwrap();
        assert_eq!(f.subject, "ksight.h_example.alert.*");
        let alert = |sev: &str| serde_json::json!({"host": "h.example", "type": "alert", "alert": {"severity": sev}});
        assert!(f.keep(&alert("critical")) && !f.keep(&alert("low")));
        assert!(TailFilter::new("ksight", None, vec!["nope".into()], None).is_err());
    }
}
