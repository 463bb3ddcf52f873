//! DNS: captured datagrams -> transactions (query, answers, latency).
//!
//! The kernel side copies the payload of UDP datagrams and TCP segments to or
//! from a DNS port (at most 1024 bytes, events.h KS_DNS_MAX) and parses nothing. Here hickory-proto parses them; it
//! bounds what it reads by the buffer, refuses compression loops and lying
//! counts, and returns an error rather than panicking, so a malformed packet
//! is counted and skipped. A query seen leaving a socket waits (bounded in
//! number and time) for the response with the same id on the same socket;
//! a query seen arriving is the resolver's side of a transaction and is
//! matched the same way against its reply.

use std::collections::HashMap;
use std::net::SocketAddr;

use hickory_proto::op::{Message, MessageType};
use serde::Serialize;

use crate::event::{Header, TaskFacts};
use crate::net::Protocol;

/// A datagram to or from a DNS port, as captured (payload not parsed yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDns {
    pub hdr: Header,
    /// The socket's owner, captured at socket creation; `None` when unknown.
    pub owner: Option<TaskFacts>,
    pub netns: u32,
    pub cookie: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Sent by this host's socket (else received).
    pub egress: bool,
    /// The full UDP payload (or TCP segment payload) length; `data` may hold less.
    pub len: u32,
    pub data: Vec<u8>,
    /// A TCP segment: `data` starts with the message's 2-byte length.
    pub tcp: bool,
}

impl RawDns {
    /// This socket's end, and the other.
    fn ends(&self) -> (SocketAddr, SocketAddr) {
        if self.egress {
            (self.src, self.dst)
        } else {
            (self.dst, self.src)
        }
    }
}

crate::named_enum! {
    /// Which side of a transaction this host's process was.
    pub enum Role {
        /// a process here asked
        Client = "client",
        /// a process here answered (a local resolver)
        Server = "server",
    }
}

crate::named_enum! {
    pub enum Status {
        /// the response parsed
        Answered = "answered",
        /// no response within --dns-timeout
        Timeout = "timeout",
        /// a response came, whole, and did not parse (`error` says why)
        Malformed = "malformed",
        /// still waiting when ksight stopped
        Pending = "pending",
    }
}

/// The header of a response that did not parse (or was captured cut): what
/// could be read of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseHeader {
    /// The message's size in bytes (over TCP, without its length prefix).
    pub size: u32,
    /// The header's flags word (QR, opcode, AA, TC, RD, RA, Z, rcode).
    pub flags: u16,
    pub questions: u16,
    pub answers: u16,
    pub authorities: u16,
    pub additionals: u16,
}

/// The question of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Question {
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
    pub class: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    /// The record's data in presentation form (an address, a name, "10 mx.example.", ...).
    pub data: String,
}

/// One DNS transaction, or a query that got no answer in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsDetail {
    pub role: Role,
    pub id: u16,
    pub question: Option<Question>,
    pub status: Status,
    /// NOERROR, NXDOMAIN, SERVFAIL, ... (`null` without an answer)
    pub rcode: Option<String>,
    pub answers: Vec<Answer>,
    /// The server's address and port (`127.0.0.1:53`, `[::1]:53`).
    pub resolver: String,
    pub transport: Protocol,
    /// From the query leaving (or arriving at) the socket to the response.
    pub latency_ns: Option<u64>,
    /// The response said TC (truncated: the client should retry over TCP).
    pub truncated: bool,
    /// Why the response was not parsed (status `malformed`; or `answered`
    /// when the response was larger than ksight captures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The header of a response that was not parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseHeader>,
    /// How long the query had waited (status `timeout` and `pending`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited_ns: Option<u64>,
    /// The application whose getaddrinfo call was waiting for this name when a
    /// local resolver (the `process` here) asked upstream; optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asked_by: Option<AskedBy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AskedBy {
    pub pid: u32,
    pub comm: crate::text::Text,
    pub exec_id: std::sync::Arc<str>,
}

/// What the tracker makes of a datagram or a timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub ktime: u64,
    pub owner: Option<TaskFacts>,
    pub netns: u32,
    pub cookie: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub detail: DnsDetail,
}

struct Pending {
    ktime: u64,
    transport: Protocol,
    owner: Option<TaskFacts>,
    netns: u32,
    local: SocketAddr,
    remote: SocketAddr,
    role: Role,
    question: Option<Question>,
}

/// Queries waiting for their response, at most: a flood of unanswered ones is bounded.
const MAX_PENDING: usize = 65_536;

/// Matches queries to responses.
#[derive(Default)]
pub struct DnsTracker {
    pending: HashMap<(u64, u16, SocketAddr), Pending>,
    /// Datagrams that did not parse as DNS.
    pub malformed: u64,
    /// Of those, responses to a query ksight saw: reported as transactions.
    pub malformed_answers: u64,
}

/// Bytes of a parse error kept in `error`.
const ERROR_MAX: usize = 200;

fn question(m: &Message) -> Option<Question> {
    m.queries.first().map(|q| Question {
        name: q.name.to_string(),
        qtype: q.query_type.to_string(),
        class: q.query_class.to_string(),
    })
}

impl DnsTracker {
    pub fn new() -> Self {
        DnsTracker::default()
    }

    /// A captured datagram: a completed transaction when it answers a pending query.
    pub fn packet(&mut self, p: RawDns) -> Option<Transaction> {
        // over TCP a message follows its 2-byte length; only a message that
        // starts (and ends) in this segment is read
        let bytes = if p.tcp {
            let n = p
                .data
                .get(..2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            match n.and_then(|n| p.data.get(2..2 + n)) {
                Some(m) => m,
                None => {
                    self.malformed += 1;
                    return None;
                }
            }
        } else {
            &p.data[..]
        };
        let transport = if p.tcp { Protocol::Tcp } else { Protocol::Udp };
        let (local, remote) = p.ends();
        let m = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.malformed += 1;
                let tx = self.unparsed(&p, bytes, e.to_string());
                if tx.is_some() {
                    self.malformed_answers += 1;
                }
                return tx;
            }
        };
        let id = m.metadata.id;
        match m.metadata.message_type {
            MessageType::Query => {
                if self.pending.len() >= MAX_PENDING {
                    return None; // bounded: a flood of unanswered queries
                }
                let role = if p.egress { Role::Client } else { Role::Server };
                self.pending.insert(
                    (p.cookie, id, remote),
                    Pending {
                        ktime: p.hdr.ktime_ns,
                        transport,
                        owner: p.owner,
                        netns: p.netns,
                        local,
                        remote,
                        role,
                        question: question(&m),
                    },
                );
                None
            }
            MessageType::Response => {
                let q = self.pending.remove(&(p.cookie, id, remote));
                let answers = m
                    .answers
                    .iter()
                    .map(|r| Answer {
                        name: r.name.to_string(),
                        rtype: r.record_type().to_string(),
                        ttl: r.ttl,
                        data: r.data.to_string(),
                    })
                    .collect();
                let (owner, netns, role, asked, latency) = match q {
                    // the response may know the owner when the query did not
                    // (a socket older than ksight, named by its first send)
                    Some(q) => (
                        q.owner.or(p.owner),
                        if q.netns != 0 { q.netns } else { p.netns },
                        q.role,
                        q.question,
                        Some(p.hdr.ktime_ns.saturating_sub(q.ktime)),
                    ),
                    // a response whose query we did not see (ksight started in between)
                    None => (
                        p.owner,
                        p.netns,
                        if p.egress { Role::Server } else { Role::Client },
                        None,
                        None,
                    ),
                };
                let resolver = if role == Role::Client { remote } else { local }.to_string();
                Some(Transaction {
                    ktime: p.hdr.ktime_ns,
                    owner,
                    netns,
                    cookie: p.cookie,
                    local,
                    remote,
                    detail: DnsDetail {
                        role,
                        id,
                        question: asked.or_else(|| question(&m)),
                        status: Status::Answered,
                        rcode: Some(m.metadata.response_code.to_string()),
                        answers,
                        resolver,
                        transport,
                        latency_ns: latency,
                        truncated: m.metadata.truncation,
                        error: None,
                        response: None,
                        waited_ns: None,
                        asked_by: None,
                    },
                })
            }
        }
    }

    /// A message that did not parse: when its header says it is a response
    /// to a query waiting here (same socket, id and server), that query's
    /// transaction, `malformed` (or `answered` without answers when ksight
    /// captured only part of it), with what the header says.
    fn unparsed(&mut self, p: &RawDns, bytes: &[u8], why: String) -> Option<Transaction> {
        let (local, remote) = p.ends();
        // a whole UDP payload, or a TCP message: its own length
        let size = if p.tcp { bytes.len() as u32 } else { p.len };
        let cut = (bytes.len() as u64) < u64::from(size);
        let word = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        if bytes.len() < 12 {
            return None; // not even a header
        }
        let (id, flags) = (word(0), word(2));
        if flags & 0x8000 == 0 {
            return None; // a query: nothing waits for it
        }
        let q = self.pending.remove(&(p.cookie, id, remote))?;
        let rcode = hickory_proto::op::ResponseCode::from(0, (flags & 0xf) as u8);
        let mut error = if cut {
            format!(
                "larger than ksight captures ({} of {size} bytes): answers not read",
                bytes.len()
            )
        } else {
            why
        };
        if error.len() > ERROR_MAX {
            let mut end = ERROR_MAX;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
        }
        let role = q.role;
        Some(Transaction {
            ktime: p.hdr.ktime_ns,
            owner: q.owner.or_else(|| p.owner.clone()),
            netns: if q.netns != 0 { q.netns } else { p.netns },
            cookie: p.cookie,
            local,
            remote,
            detail: DnsDetail {
                role,
                id,
                question: q.question,
                status: if cut {
                    Status::Answered
                } else {
                    Status::Malformed
                },
                rcode: Some(rcode.to_string()),
                answers: Vec::new(),
                resolver: if role == Role::Client { remote } else { local }.to_string(),
                transport: q.transport,
                latency_ns: Some(p.hdr.ktime_ns.saturating_sub(q.ktime)),
                truncated: flags & 0x0200 != 0,
                error: Some(error),
                response: Some(ResponseHeader {
                    size,
                    flags,
                    questions: word(4),
                    answers: word(6),
                    authorities: word(8),
                    additionals: word(10),
                }),
                waited_ns: None,
                asked_by: None,
            },
        })
    }

    /// Every query still waiting, as `pending` transactions (at stop).
    pub fn drain(&mut self, now_ktime: u64) -> Vec<Transaction> {
        let all: Vec<_> = self.pending.keys().copied().collect();
        self.unanswered(all, now_ktime, Status::Pending)
    }

    /// Queries that waited `timeout` ns or longer at `now_ktime`, as unanswered transactions.
    pub fn expire(&mut self, now_ktime: u64, timeout: u64) -> Vec<Transaction> {
        if self.pending.is_empty() {
            return Vec::new(); // every poll: nothing to walk, nothing to allocate
        }
        let late: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ktime.saturating_sub(p.ktime) >= timeout)
            .map(|(k, _)| *k)
            .collect();
        self.unanswered(late, now_ktime, Status::Timeout)
    }

    /// These waiting queries, ended with `status` at `now_ktime`, oldest first.
    fn unanswered(
        &mut self,
        keys: Vec<(u64, u16, SocketAddr)>,
        now_ktime: u64,
        status: Status,
    ) -> Vec<Transaction> {
        let mut out: Vec<Transaction> = keys
            .into_iter()
            .filter_map(|k| {
                let p = self.pending.remove(&k)?;
                Some(Transaction {
                    owner: p.owner,
                    netns: p.netns,
                    cookie: k.0,
                    local: p.local,
                    remote: p.remote,
                    detail: DnsDetail {
                        role: p.role,
                        id: k.1,
                        question: p.question,
                        status,
                        rcode: None,
                        answers: Vec::new(),
                        resolver: if p.role == Role::Client {
                            p.remote
                        } else {
                            p.local
                        }
                        .to_string(),
                        transport: p.transport,
                        latency_ns: None,
                        truncated: false,
                        error: None,
                        response: None,
                        waited_ns: Some(now_ktime.saturating_sub(p.ktime)),
                        asked_by: None,
                    },
                    // the query's time, for the order
                    ktime: p.ktime,
                })
            })
            .collect();
        // in the order the queries were sent; each reported at `now_ktime`
        out.sort_by_key(|t| t.ktime);
        for t in &mut out {
            t.ktime = now_ktime;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in n.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    fn query(id: u16, n: &str) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend(name(n));
        q.extend_from_slice(&[0, 1, 0, 1]);
        q
    }

    /// A response with one A record (name by compression pointer to the question).
    fn answer(id: u16, n: &str, ip: [u8; 4], rcode: u8) -> Vec<u8> {
        let mut r = id.to_be_bytes().to_vec();
        r.extend_from_slice(&[
            0x81,
            0x80 | rcode,
            0,
            1,
            0,
            if rcode == 0 { 1 } else { 0 },
            0,
            0,
            0,
            0,
        ]);
        r.extend(name(n));
        r.extend_from_slice(&[0, 1, 0, 1]);
        if rcode == 0 {
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&ip);
        }
        r
    }

    fn raw(data: Vec<u8>, egress: bool, ktime: u64) -> RawDns {
        let host: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
        RawDns {
            hdr: Header {
                ktime_ns: ktime,
                seq: 0,
                cpu: 0,
            },
            owner: None,
            netns: 7,
            cookie: 99,
            src: if egress { host } else { server },
            dst: if egress { server } else { host },
            egress,
            len: data.len() as u32,
            data,
            tcp: false,
        }
    }

    #[test]
    fn a_query_and_its_answer_make_a_transaction() {
        let mut t = DnsTracker::new();
        assert!(t.packet(raw(query(7, "a.test"), true, 100)).is_none());
        let tx = t
            .packet(raw(answer(7, "a.test", [10, 1, 1, 1], 0), false, 350))
            .unwrap();
        let d = &tx.detail;
        assert_eq!(
            (d.role, d.id, d.status),
            (Role::Client, 7, Status::Answered)
        );
        assert_eq!(d.question.as_ref().unwrap().name, "a.test.");
        assert_eq!(d.question.as_ref().unwrap().qtype, "A");
        assert_eq!(d.rcode.as_deref(), Some("No Error"));
        assert_eq!(d.answers[0].data, "10.1.1.1");
        assert_eq!(d.answers[0].ttl, 60);
        assert_eq!(d.latency_ns, Some(250));
        assert_eq!(d.resolver.to_string(), "127.0.0.1:53");
    }

    #[test]
    fn nxdomain_and_timeouts() {
        let mut t = DnsTracker::new();
        t.packet(raw(query(1, "nx.test"), true, 0));
        let tx = t
            .packet(raw(answer(1, "nx.test", [0; 4], 3), false, 10))
            .unwrap();
        assert!(tx.detail.answers.is_empty());
        assert_ne!(tx.detail.rcode.as_deref(), Some("No Error"));
        t.packet(raw(query(2, "slow.test"), true, 0));
        assert!(t.expire(999, 1_000).is_empty());
        let late = t.expire(1_000, 1_000);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].detail.status, Status::Timeout);
        assert!(t.expire(5_000, 1_000).is_empty());
    }

    /// A response to `id` whose answer is a chain of compression pointers.
    fn pointer_chain(id: u16) -> Vec<u8> {
        let mut r = id.to_be_bytes().to_vec();
        // QR, RD, RA; NXDOMAIN; 1 question, 1 answer
        r.extend_from_slice(&[0x81, 0x83, 0, 1, 0, 1, 0, 0, 0, 0]);
        r.extend(name("evil.test"));
        r.extend_from_slice(&[0, 1, 0, 1]);
        let at = r.len() as u8;
        // a pointer to a pointer to the first: a loop
        r.extend_from_slice(&[0xc0, at + 2, 0xc0, at]);
        r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 6, 6, 6, 6]);
        r
    }

    #[test]
    fn a_response_that_does_not_parse_ends_its_query_as_malformed() {
        let mut t = DnsTracker::new();
        t.packet(raw(query(5, "evil.test"), true, 1_000));
        let bad = pointer_chain(5);
        let size = bad.len() as u32;
        let tx = t
            .packet(raw(bad, false, 1_400))
            .expect("the query's transaction");
        let d = &tx.detail;
        assert_eq!(
            (d.status, d.id, d.role),
            (Status::Malformed, 5, Role::Client)
        );
        assert_eq!(d.latency_ns, Some(400));
        assert_eq!(d.question.as_ref().unwrap().name, "evil.test.");
        assert_eq!(d.rcode.as_deref(), Some("Non-Existent Domain"));
        assert!(d.answers.is_empty());
        assert!(!d.error.as_deref().unwrap().is_empty());
        let h = d.response.as_ref().unwrap();
        assert_eq!((h.size, h.flags), (size, 0x8183));
        assert_eq!(
            (h.questions, h.answers, h.authorities, h.additionals),
            (1, 1, 0, 0)
        );
        assert_eq!((t.malformed, t.malformed_answers), (1, 1));
        // the query is answered: no timeout follows
        assert!(t.expire(u64::MAX, 1).is_empty());
        // the same bytes with no query waiting: counted, not reported
        assert!(t.packet(raw(pointer_chain(5), false, 2_000)).is_none());
        assert_eq!((t.malformed, t.malformed_answers), (2, 1));
    }

    #[test]
    fn a_response_larger_than_the_capture_is_answered_without_answers() {
        let mut t = DnsTracker::new();
        t.packet(raw(query(6, "big.test"), true, 0));
        let whole = answer(6, "big.test", [1, 2, 3, 4], 0);
        let mut cut = raw(whole[..whole.len() - 6].to_vec(), false, 50);
        cut.len = whole.len() as u32;
        let tx = t.packet(cut).unwrap();
        let d = &tx.detail;
        assert_eq!(d.status, Status::Answered);
        assert_eq!(d.rcode.as_deref(), Some("No Error"));
        assert!(d
            .error
            .as_deref()
            .unwrap()
            .starts_with("larger than ksight captures"));
        assert_eq!(d.response.as_ref().unwrap().answers, 1);
    }

    #[test]
    fn queries_waiting_at_stop_are_pending_oldest_first() {
        let mut t = DnsTracker::new();
        t.packet(raw(query(2, "later.test"), true, 300));
        let mut other = raw(query(1, "first.test"), true, 100);
        other.cookie = 98;
        t.packet(other);
        let left = t.drain(1_000);
        let got: Vec<(u16, Status, Option<u64>, u64)> = left
            .iter()
            .map(|x| (x.detail.id, x.detail.status, x.detail.waited_ns, x.ktime))
            .collect();
        assert_eq!(
            got,
            [
                (1, Status::Pending, Some(900), 1_000),
                (2, Status::Pending, Some(700), 1_000)
            ]
        );
        assert!(t.drain(2_000).is_empty());
    }

    /// Every input the fuzzer kept (fuzz/corpus/dns, `scripts/fuzz.sh`), replayed
    /// as the fuzz target does: the first byte picks UDP or TCP framing. A crash
    /// the fuzzer finds goes into the corpus and is then tested here forever.
    #[test]
    fn the_fuzz_corpus_replays_without_panic() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/dns");
        let entries = std::fs::read_dir(dir).expect("the kept fuzz corpus");
        let mut n = 0;
        for e in entries.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            let (tcp, body) = match data.split_first() {
                Some((flag, rest)) => (flag & 1 == 1, rest.to_vec()),
                None => (false, data.clone()),
            };
            let mut t = DnsTracker::new();
            for egress in [true, false] {
                let mut p = raw(body.clone(), egress, 1);
                p.tcp = tcp;
                let _ = t.packet(p);
            }
            let _ = t.expire(u64::MAX, 1_000);
            n += 1;
        }
        assert!(n > 100, "the corpus is kept in the repository: {n} inputs");
    }

    #[test]
    fn hostile_input_is_counted_not_fatal() {
        let mut t = DnsTracker::new();
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0; 11],
            // a compression pointer to itself
            vec![
                0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
            ],
            // counts that lie
            vec![0, 1, 0x81, 0x80, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
            // an oversize label
            [
                &[0u8, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f][..],
                &[b'a'; 300][..],
            ]
            .concat(),
        ];
        let good = answer(9, "a.test", [1, 2, 3, 4], 0);
        for n in 0..good.len() {
            inputs.push(good[..n].to_vec());
        }
        let mut x: u64 = 0x2545f4914f6cdd1d;
        for _ in 0..3000 {
            let mut b = good.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % b.len();
                b[i] = (x >> 24) as u8;
            }
            inputs.push(b);
        }
        for data in inputs {
            let _ = t.packet(raw(data, false, 1));
        }
        assert!(t.malformed > 10);
    }
}
