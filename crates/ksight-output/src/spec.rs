//! An `[[output]]` table of the config file, as written ([`OutputSpec`],
//! every key checked by serde: an unknown one is an error), and as checked
//! ([`OutputPlan`]: one kind's settings, sizes and durations parsed).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use ksight_core::event::{Detail, Event, Kind};
use ksight_core::kinds::alert::Severity;

use crate::file::{Compress, FileConfig, Fsync};
use crate::nats::{NatsAuth, NatsConfig};
use crate::queue::Overflow;
use crate::render::LineFormat;
use crate::syslog::{Facility, SyslogConfig};
use crate::units::{parse_bytes, parse_duration};
use crate::webhook::WebhookConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    Stdout,
    File,
    Syslog,
    Webhook,
    Nats,
}

/// One `[[output]]` table. Keys are kebab-case; those of another kind are
/// refused by [`OutputSpec::plan`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OutputSpec {
    /// Unique among the outputs: named in `lost` events, metrics, messages.
    pub name: String,
    pub kind: OutputKind,
    /// `json` (default), `table`, or `text` (syslog: an alert's rendered
    /// output, else the table's columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<LineFormat>,
    /// Each line from a template of event fields instead of a format:
    /// `"{type} {process.comm}[{process.pid}] {alert.rule}"` (the rules'
    /// output templates: unknown fields are errors, absent ones render `-`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Event kinds this output gets (default: every kind collected).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Only events of these pids (a fork also matches on its child's), as `--pid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pid: Vec<u32>,
    /// Only events of processes with this comm (exact), as `--comm`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comm: Vec<String>,
    /// Only events of processes with this real uid, as `--uid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uid: Vec<u32>,
    /// Only events in containers whose id starts with this, as `--container`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container: Vec<String>,
    /// Only alerts (and `lost` events).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alerts_only: bool,
    /// Only alerts of at least this severity (implies alerts-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<String>,
    /// Only alerts of these rule ids (implies alerts-only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// Events waiting for this output, at most (default 65536).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<usize>,
    /// What a full queue gives up: `drop-oldest` (default) or `drop-newest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<Overflow>,

    // file
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_every: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<Compress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync: Option<Fsync>,

    // syslog
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<Facility>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
    /// `rfc5424` (default over UDP/TCP) or `rfc3164` (default on a unix socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<crate::syslog::Protocol>,

    // webhook
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,

    // nats (docs/fleet.md)
    /// `nats://host:port` of the cluster's servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    /// The subjects' first token (default `ksight`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_prefix: Option<String>,
    /// This host's name in subjects and payloads (default: the machine's,
    /// or `--host-name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_size: Option<String>,
    /// Events of one subject per message at most (1: a message per event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_message: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creds: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

/// Where a checked output writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(FileConfig),
    Syslog(SyslogConfig),
    Webhook(WebhookConfig),
    Nats(Box<NatsConfig>),
}

/// Which events an output gets. `lost` events always pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputFilter {
    pub kinds: Vec<Kind>,
    /// The command line's process filters (pid, comm, uid, container), for
    /// this output only; checked by a core `Filter` made from it.
    pub process: ksight_core::filter::FilterSpec,
    pub alerts_only: bool,
    pub min_severity: Option<Severity>,
    pub rules: Vec<String>,
}

impl OutputFilter {
    pub fn keep(&self, ev: &Event) -> bool {
        let alert = match &ev.detail {
            Detail::Lost(_) => return true,
            Detail::Alert(a) => Some(&a.alert),
            _ => None,
        };
        if !self.kinds.is_empty() && !self.kinds.contains(&ev.kind()) {
            return false;
        }
        let alerts = self.alerts_only || self.min_severity.is_some() || !self.rules.is_empty();
        match alert {
            None => !alerts,
            Some(a) => {
                self.min_severity
                    .is_none_or(|min| a.severity.rank() >= min.rank())
                    && (self.rules.is_empty() || self.rules.iter().any(|r| **r == *a.rule))
            }
        }
    }
}

/// A checked output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPlan {
    pub name: String,
    pub format: LineFormat,
    /// Lines from this template (checked) instead of `format`.
    pub template: Option<String>,
    pub filter: OutputFilter,
    pub queue: usize,
    pub overflow: Overflow,
    pub target: Target,
}

use OutputKind::{File as F, Nats as N, Syslog as S, Webhook as W};

/// The keys that only some kinds of output take.
const KIND_KEYS: &[(&str, &[OutputKind])] = &[
    ("path", &[F]),
    ("rotate-size", &[F]),
    ("rotate-every", &[F]),
    ("keep", &[F]),
    ("keep-size", &[F]),
    ("compress", &[F]),
    ("fsync", &[F]),
    ("address", &[S]),
    ("facility", &[S]),
    ("app-name", &[S]),
    ("protocol", &[S]),
    ("url", &[W]),
    ("headers", &[W]),
    ("batch", &[W, N]),
    ("timeout", &[W, N]),
    ("retries", &[W]),
    ("servers", &[N]),
    ("subject-prefix", &[N]),
    ("host", &[N]),
    ("spool-dir", &[N]),
    ("spool-size", &[N]),
    ("events-per-message", &[N]),
    ("user", &[N]),
    ("password", &[N]),
    ("token", &[N]),
    ("nkey", &[N]),
    ("creds", &[N]),
    ("tls-ca", &[N]),
    ("tls-cert", &[N]),
    ("tls-key", &[N]),
    ("tls", &[N]),
];

impl OutputSpec {
    /// Checks the keys against the kind and parses them. The error names the key.
    pub fn plan(&self) -> Result<OutputPlan, String> {
        if self.name.is_empty() || self.name.contains(char::is_whitespace) {
            return Err(format!("output name {:?}: one word, not empty", self.name));
        }
        // the keys set (serde skips the unset ones) that another kind owns
        let set = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let foreign: Vec<&str> = KIND_KEYS
            .iter()
            .filter(|(k, kinds)| set.get(k).is_some() && !kinds.contains(&self.kind))
            .map(|(k, _)| *k)
            .collect();
        if !foreign.is_empty() {
            return Err(format!(
                "output {}: {} not for a {} output",
                self.name,
                foreign.join(", "),
                kind_name(self.kind)
            ));
        }
        let ctx = |e: String| format!("output {}: {e}", self.name);
        let kinds = self
            .events
            .iter()
            .map(|k| k.parse::<Kind>().map_err(|e| ctx(format!("events: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let min_severity = self
            .min_severity
            .as_deref()
            .map(|s| {
                Severity::from_name(s).ok_or_else(|| {
                    ctx(format!(
                        "min-severity {s:?}: one of {}",
                        Severity::NAMES.join(", ")
                    ))
                })
            })
            .transpose()?;
        let size = |key: &str, v: &Option<String>| -> Result<u64, String> {
            v.as_deref()
                .map_or(Ok(0), parse_bytes)
                .map_err(|e| ctx(format!("{key}: {e}")))
        };
        let target = match self.kind {
            OutputKind::Stdout => Target::Stdout,
            OutputKind::File => Target::File(FileConfig {
                path: self
                    .path
                    .clone()
                    .ok_or_else(|| ctx("a file output needs `path`".into()))?,
                rotate_size: size("rotate-size", &self.rotate_size)?,
                rotate_every: self
                    .rotate_every
                    .as_deref()
                    .map(|s| parse_duration(s, Duration::from_secs(1)))
                    .transpose()
                    .map_err(|e| ctx(format!("rotate-every: {e}")))?,
                keep: self.keep.unwrap_or(0),
                keep_size: size("keep-size", &self.keep_size)?,
                compress: self.compress.unwrap_or_default(),
                fsync: self.fsync.unwrap_or_default(),
            }),
            OutputKind::Syslog => {
                let address: crate::syslog::Address = self
                    .address
                    .as_deref()
                    .unwrap_or("unix:/dev/log")
                    .parse()
                    .map_err(|e| ctx(format!("address: {e}")))?;
                Target::Syslog(SyslogConfig {
                    protocol: self
                        .protocol
                        .unwrap_or_else(|| crate::syslog::Protocol::for_address(&address)),
                    address,
                    facility: self.facility.unwrap_or_default(),
                    app_name: self.app_name.clone().unwrap_or_else(|| "ksight".into()),
                })
            }
            OutputKind::Nats => Target::Nats(Box::new(self.nats(&ctx)?)),
            OutputKind::Webhook => {
                let url = self
                    .url
                    .clone()
                    .ok_or_else(|| ctx("a webhook output needs `url`".into()))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ctx(format!("url {url:?}: http:// or https://")));
                }
                Target::Webhook(WebhookConfig {
                    url,
                    headers: self.headers.clone().into_iter().collect(),
                    batch: self.batch.unwrap_or(500).clamp(1, 100_000),
                    timeout: self.timeout(&ctx, Duration::from_secs(10))?,
                    retries: self.retries.unwrap_or(5).min(100),
                })
            }
        };
        let format = match (self.kind, self.format) {
            (OutputKind::Webhook, Some(f)) if f != LineFormat::Json => {
                return Err(ctx("a webhook posts NDJSON: format must be json".into()))
            }
            (OutputKind::Nats, Some(f)) if f != LineFormat::Json => {
                return Err(ctx(
                    "the fleet stream holds JSON: format must be json".into()
                ))
            }
            (_, Some(f)) => f,
            (OutputKind::Syslog, None) => LineFormat::Json,
            (_, None) => LineFormat::Json,
        };
        if let Some(t) = &self.template {
            if self.format.is_some() {
                return Err(ctx(
                    "`template` and `format` both say how lines look: one of them".into(),
                ));
            }
            if matches!(self.kind, OutputKind::Webhook | OutputKind::Nats) {
                return Err(ctx(format!(
                    "a {} output sends JSON: no template",
                    kind_name(self.kind)
                )));
            }
            ksight_rules::template::Template::parse(t, &kinds)
                .map_err(|(at, e)| ctx(format!("template, at byte {at}: {e}")))?;
        }
        let queue = self.queue.unwrap_or(65_536);
        if !(1..=16 << 20).contains(&queue) {
            return Err(ctx(format!("queue {queue}: 1 to 16777216 events")));
        }
        Ok(OutputPlan {
            name: self.name.clone(),
            format,
            template: self.template.clone(),
            filter: OutputFilter {
                kinds,
                process: ksight_core::filter::FilterSpec {
                    pids: self.pid.clone(),
                    comms: self.comm.clone(),
                    uids: self.uid.clone(),
                    containers: self.container.clone(),
                    ..Default::default()
                },
                alerts_only: self.alerts_only,
                min_severity,
                rules: self.rules.clone(),
            },
            queue,
            overflow: self.overflow.unwrap_or_default(),
            target,
        })
    }
}

impl OutputSpec {
    /// `timeout` (at least 100 ms), or `default`.
    fn timeout(
        &self,
        ctx: &dyn Fn(String) -> String,
        default: Duration,
    ) -> Result<Duration, String> {
        Ok(self
            .timeout
            .as_deref()
            .map(|s| parse_duration(s, Duration::from_millis(100)))
            .transpose()
            .map_err(|e| ctx(format!("timeout: {e}")))?
            .unwrap_or(default))
    }

    fn nats(&self, ctx: &dyn Fn(String) -> String) -> Result<NatsConfig, String> {
        if self.servers.is_empty() {
            return Err(ctx(
                "a nats output needs `servers` (e.g. [\"nats://127.0.0.1:4222\"])".into(),
            ));
        }
        for s in &self.servers {
            if s.contains(char::is_whitespace) || s.contains(',') {
                return Err(ctx(format!("servers: {s:?} is not one address")));
            }
        }
        let token_ok = |t: &str| {
            !t.is_empty() && !t.contains(|c: char| c == '*' || c == '>' || c.is_whitespace())
        };
        let prefix = self
            .subject_prefix
            .clone()
            .unwrap_or_else(|| "ksight".into());
        if !prefix.split('.').all(token_ok) {
            return Err(ctx(format!(
                "subject-prefix {prefix:?}: dot-separated tokens without *, > or spaces"
            )));
        }
        if self.host.as_deref().is_some_and(str::is_empty) {
            return Err(ctx("host: not empty".into()));
        }
        Ok(NatsConfig {
            servers: self.servers.clone(),
            prefix,
            host: self.host.clone(),
            spool_dir: self
                .spool_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/lib/ksight/spool").join(&self.name)),
            spool_size: match &self.spool_size {
                Some(v) => parse_bytes(v).map_err(|e| ctx(format!("spool-size: {e}")))?,
                None => 1 << 30,
            },
            timeout: self.timeout(&ctx, Duration::from_secs(5))?,
            in_flight: self.batch.unwrap_or(1024).clamp(1, 65_536),
            events_per_message: self.events_per_message.unwrap_or(64).clamp(1, 10_000),
            auth: NatsAuth {
                user: self.user.clone(),
                password: self.password.clone(),
                token: self.token.clone(),
                nkey: self.nkey.clone(),
                creds: self.creds.clone(),
                tls_ca: self.tls_ca.clone(),
                tls_cert: self.tls_cert.clone(),
                tls_key: self.tls_key.clone(),
                tls: self.tls,
            },
        })
    }
}

/// `host` of the fleet outputs that do not name one (`--host-name`).
pub fn default_host(plans: &mut [OutputPlan], host: &str) {
    for p in plans {
        if let Target::Nats(n) = &mut p.target {
            n.host.get_or_insert_with(|| host.to_string());
        }
    }
}

fn kind_name(k: OutputKind) -> &'static str {
    match k {
        OutputKind::Stdout => "stdout",
        OutputKind::File => "file",
        OutputKind::Syslog => "syslog",
        OutputKind::Webhook => "webhook",
        OutputKind::Nats => "nats",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: OutputKind) -> OutputSpec {
        OutputSpec {
            name: "x".into(),
            kind,
            format: None,
            template: None,
            events: vec![],
            pid: vec![],
            comm: vec![],
            uid: vec![],
            container: vec![],
            alerts_only: false,
            min_severity: None,
            rules: vec![],
            queue: None,
            overflow: None,
            path: None,
            rotate_size: None,
            rotate_every: None,
            keep: None,
            keep_size: None,
            compress: None,
            fsync: None,
            address: None,
            facility: None,
            app_name: None,
            protocol: None,
            url: None,
            headers: BTreeMap::new(),
            batch: None,
            timeout: None,
            retries: None,
            servers: vec![],
            subject_prefix: None,
            host: None,
            spool_dir: None,
            spool_size: None,
            events_per_message: None,
            user: None,
            password: None,
            token: None,
            nkey: None,
            creds: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls: false,
        }
    }

    #[test]
    fn keys_of_another_kind_and_missing_ones_are_errors() {
        let mut s = spec(OutputKind::File);
        assert!(s.plan().unwrap_err().contains("needs `path`"));
        s.path = Some("/tmp/x".into());
        s.url = Some("http://x".into());
        assert!(s.plan().unwrap_err().contains("url not for a file output"));
        s.url = None;
        s.rotate_size = Some("10Q".into());
        assert!(s.plan().unwrap_err().contains("rotate-size"));
        s.rotate_size = Some("10M".into());
        s.events = vec!["exec".into(), "nope".into()];
        assert!(s.plan().unwrap_err().contains("events"));
        s.events = vec!["exec".into()];
        let p = s.plan().unwrap();
        let Target::File(f) = p.target else { panic!() };
        assert_eq!(f.rotate_size, 10 << 20);
        let mut w = spec(OutputKind::Webhook);
        w.url = Some("ftp://x".into());
        assert!(w.plan().is_err());
        w.url = Some("http://127.0.0.1:9/x".into());
        w.format = Some(LineFormat::Table);
        assert!(w.plan().unwrap_err().contains("NDJSON"));
        let mut t = spec(OutputKind::Stdout);
        t.template = Some("{process.pid} {nope.field}".into());
        assert!(t.plan().unwrap_err().contains("unknown field `nope.field`"));
        t.template = Some("{exec.argv}".into());
        t.events = vec!["exit".into()];
        assert!(t.plan().unwrap_err().contains("not a field of exit events"));
        t.events = vec![];
        t.template = Some("{type} {process.pid}".into());
        assert!(t.plan().is_ok());
        let mut y = spec(OutputKind::Syslog);
        y.address = Some("127.0.0.1:514".into());
        assert!(y.plan().unwrap_err().contains("address"));
        let mut n = spec(OutputKind::Nats);
        assert!(n.plan().unwrap_err().contains("needs `servers`"));
        n.servers = vec!["nats://127.0.0.1:4222".into()];
        n.password = Some("p".into());
        n.timeout = Some("2s".into());
        let p = n.plan().unwrap();
        let Target::Nats(c) = p.target else { panic!() };
        assert_eq!(
            (c.timeout, c.events_per_message),
            (Duration::from_secs(2), 64)
        );
        let mut f = spec(OutputKind::File);
        f.path = Some("/tmp/x".into());
        f.servers = vec!["nats://x:1".into()];
        f.tls = true;
        assert!(f
            .plan()
            .unwrap_err()
            .contains("servers, tls not for a file output"));
    }

    #[test]
    fn filters_by_kind_severity_and_rule_and_always_pass_lost() {
        let exit = ksight_core::sink::exit_event(0);
        let f = OutputFilter::default();
        assert!(f.keep(&exit));
        let only_exec = OutputFilter {
            kinds: vec!["exec".parse().unwrap()],
            ..Default::default()
        };
        assert!(!only_exec.keep(&exit));
        let alerts = OutputFilter {
            min_severity: Some(Severity::High),
            ..Default::default()
        };
        assert!(!alerts.keep(&exit));
        let lost = Event {
            process: None,
            detail: ksight_core::kinds::lost::Lost::output(
                "y",
                ksight_core::kinds::lost::LostReason::QueueFull,
                1,
                0,
            )
            .into(),
            ..exit
        };
        assert!(alerts.keep(&lost) && only_exec.keep(&lost));
    }
}
