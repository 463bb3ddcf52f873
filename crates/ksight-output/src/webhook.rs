//! A webhook: each batch of events is one HTTP POST of NDJSON (one JSON
//! event per line, `Content-Type: application/x-ndjson`), with the configured
//! headers (a token), retried with exponential backoff; TLS through rustls
//! for `https://` URLs. A batch is delivered when the receiver answers 2xx.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Events per POST at most.
    pub batch: usize,
    /// For one request: connect, send, answer.
    pub timeout: Duration,
    /// Attempts after the first, before a batch is given up (counted lost).
    pub retries: u32,
}

pub struct Webhook {
    cfg: WebhookConfig,
    agent: ureq::Agent,
    /// The receiver failed the last batch: the next one is tried once, not
    /// retried, until it answers again (a dead receiver must not hold every
    /// batch for the whole backoff).
    down: bool,
}

impl Webhook {
    pub fn new(cfg: WebhookConfig) -> Webhook {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(true)
            .build()
            .into();
        Webhook {
            cfg,
            agent,
            down: false,
        }
    }

    pub fn batch(&self) -> usize {
        self.cfg.batch.max(1)
    }

    /// POSTs one NDJSON body, retrying with backoff (100 ms, doubling, at
    /// most 5 s between attempts). The last error when every attempt failed.
    pub fn post(&mut self, body: &[u8]) -> Result<(), String> {
        let attempts = if self.down { 1 } else { 1 + self.cfg.retries };
        let mut backoff = Duration::from_millis(100);
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            let mut req = self
                .agent
                .post(&self.cfg.url)
                .header("Content-Type", "application/x-ndjson");
            for (k, v) in &self.cfg.headers {
                req = req.header(k, v);
            }
            match req.send(body) {
                Ok(_) => {
                    self.down = false;
                    return Ok(());
                }
                Err(e) => last = format!("POST {}: {e}", self.cfg.url),
            }
        }
        self.down = true;
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    /// A one-connection-at-a-time HTTP server answering `status` to each
    /// request: the bodies and headers it got.
    type Requests = std::thread::JoinHandle<Vec<(String, Vec<u8>)>>;

    fn server(status: u16, requests: usize) -> (String, Requests) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/events", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..requests {
                let (c, _) = l.accept().unwrap();
                let mut r = BufReader::new(c);
                let (mut head, mut len) = (String::new(), 0usize);
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let mut c = r.into_inner();
                write!(
                    c,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
                .unwrap();
                got.push((head, body));
            }
            got
        });
        (url, t)
    }

    fn hook(url: String, retries: u32) -> Webhook {
        Webhook::new(WebhookConfig {
            url,
            headers: vec![("Authorization".into(), "Bearer t0ken".into())],
            batch: 100,
            timeout: Duration::from_secs(2),
            retries,
        })
    }

    #[test]
    fn a_batch_is_posted_as_ndjson_with_the_headers() {
        let (url, t) = server(200, 1);
        hook(url, 0).post(b"{\"a\":1}\n{\"a\":2}\n").unwrap();
        let got = t.join().unwrap();
        assert_eq!(got[0].1, b"{\"a\":1}\n{\"a\":2}\n");
        let head = got[0].0.to_ascii_lowercase();
        assert!(head.starts_with("post /events http/1.1"), "{head}");
        assert!(head.contains("authorization: bearer t0ken"), "{head}");
        assert!(
            head.contains("content-type: application/x-ndjson"),
            "{head}"
        );
    }

    #[test]
    fn errors_are_retried_then_given_up_and_a_dead_receiver_is_tried_once() {
        let (url, t) = server(503, 3);
        let mut h = hook(url.clone(), 2);
        let e = h.post(b"x\n").unwrap_err();
        assert!(e.contains("503"), "{e}");
        assert_eq!(t.join().unwrap().len(), 3, "first try and two retries");
        // the server is gone: one attempt, at once
        let started = std::time::Instant::now();
        assert!(h.post(b"y\n").is_err());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
