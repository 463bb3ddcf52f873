//! Syslog: RFC 5424 messages over UDP or TCP (octet-counted framing, RFC
//! 6587), or the local socket `/dev/log` (RFC 3164 style, which journald and
//! rsyslog's local socket parse). Severity follows the alert's: critical is
//! crit, high err, medium warning, low notice, info info; a `lost` event is
//! a warning; other events are info.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use ksight_core::event::{Detail, Event};

/// Where messages go: `unix:/dev/log`, `udp://HOST:PORT`, `tcp://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Udp(SocketAddr),
    Tcp(SocketAddr),
}

impl std::str::FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Address, String> {
        let resolve = |hp: &str| -> Result<SocketAddr, String> {
            hp.to_socket_addrs()
                .map_err(|e| format!("{hp}: {e}"))?
                .next()
                .ok_or_else(|| format!("{hp}: no address"))
        };
        if let Some(p) = s.strip_prefix("unix:") {
            Ok(Address::Unix(p.into()))
        } else if let Some(hp) = s.strip_prefix("udp://") {
            Ok(Address::Udp(resolve(hp)?))
        } else if let Some(hp) = s.strip_prefix("tcp://") {
            Ok(Address::Tcp(resolve(hp)?))
        } else {
            Err(format!(
                "{s:?} is not a syslog address: unix:/dev/log, udp://HOST:PORT or tcp://HOST:PORT"
            ))
        }
    }
}

/// The syslog facility, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Facility {
    Auth,
    Authpriv,
    #[default]
    Daemon,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
    Security,
    User,
}

impl Facility {
    fn code(self) -> u8 {
        match self {
            Facility::User => 1,
            Facility::Daemon => 3,
            Facility::Auth | Facility::Security => 4,
            Facility::Authpriv => 10,
            Facility::Local0 => 16,
            Facility::Local1 => 17,
            Facility::Local2 => 18,
            Facility::Local3 => 19,
            Facility::Local4 => 20,
            Facility::Local5 => 21,
            Facility::Local6 => 22,
            Facility::Local7 => 23,
        }
    }
}

/// The message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// `<PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG` (the default over the
    /// network; rsyslog parses it on its local socket too)
    Rfc5424,
    /// `<PRI>APP[PID]: MSG`, which journald's /dev/log understands (the
    /// default on a unix socket)
    Rfc3164,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogConfig {
    pub address: Address,
    pub facility: Facility,
    pub app_name: String,
    pub protocol: Protocol,
}

impl Protocol {
    /// The default for an address.
    pub fn for_address(a: &Address) -> Protocol {
        match a {
            Address::Unix(_) => Protocol::Rfc3164,
            _ => Protocol::Rfc5424,
        }
    }
}

/// The syslog severity of an event (0 emerg .. 7 debug).
pub fn severity(ev: &Event) -> u8 {
    use ksight_core::kinds::alert::Severity;
    match &ev.detail {
        Detail::Alert(a) => match a.alert.severity {
            Severity::Critical => 2,
            Severity::High => 3,
            Severity::Medium => 4,
            Severity::Low => 5,
            Severity::Info => 6,
        },
        Detail::Lost(_) => 4,
        _ => 6,
    }
}

enum Conn {
    Unix(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

pub struct Syslog {
    cfg: SyslogConfig,
    conn: Option<Conn>,
    host: String,
    pid: u32,
}

impl Syslog {
    pub fn new(cfg: SyslogConfig) -> Syslog {
        let host = hostname();
        Syslog {
            cfg,
            conn: None,
            host,
            pid: std::process::id(),
        }
    }

    fn connect(&self) -> io::Result<Conn> {
        Ok(match &self.cfg.address {
            Address::Unix(_) => Conn::Unix(UnixDatagram::unbound()?),
            Address::Udp(a) => {
                let any: SocketAddr = if a.is_ipv4() {
                    "0.0.0.0:0".parse().expect("literal")
                } else {
                    "[::]:0".parse().expect("literal")
                };
                Conn::Udp(UdpSocket::bind(any)?)
            }
            Address::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, Duration::from_secs(2))?;
                s.set_write_timeout(Some(Duration::from_secs(5)))?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
        })
    }

    /// One message: RFC 5424 for the network, RFC 3164 style for the local socket.
    pub fn message(&self, ev: &Event, msg: &[u8], out: &mut Vec<u8>) {
        let pri = self.cfg.facility.code() * 8 + severity(ev);
        let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
        match self.cfg.protocol {
            Protocol::Rfc3164 => {
                let _ = write!(out, "<{pri}>{}[{}]: ", self.cfg.app_name, self.pid);
            }
            Protocol::Rfc5424 => {
                let time = serde_json::to_value(ev.time)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "-".into());
                let _ = write!(
                    out,
                    "<{pri}>1 {time} {} {} {} {} - ",
                    self.host,
                    self.cfg.app_name,
                    self.pid,
                    ev.kind().name()
                );
            }
        }
        out.extend_from_slice(msg);
    }

    /// Sends messages; on a failure the connection is made again once.
    /// How many were sent before the failure, with the error.
    pub fn send(&mut self, messages: &[Vec<u8>]) -> Result<(), (usize, io::Error)> {
        let mut sent = 0;
        for attempt in 0..2 {
            if self.conn.is_none() {
                match self.connect() {
                    Ok(c) => self.conn = Some(c),
                    Err(e) if attempt == 1 => return Err((sent, e)),
                    Err(_) => continue,
                }
            }
            match self.send_from(&messages[sent..]) {
                Ok(()) => return Ok(()),
                Err((n, e)) => {
                    sent += n;
                    self.conn = None;
                    if attempt == 1 {
                        return Err((sent, e));
                    }
                }
            }
        }
        Ok(())
    }

    fn send_from(&mut self, messages: &[Vec<u8>]) -> Result<(), (usize, io::Error)> {
        let conn = self.conn.as_mut().expect("connected");
        match conn {
            Conn::Tcp(s) => {
                // octet counting: one write per batch
                let mut framed = Vec::new();
                for m in messages {
                    let _ = write!(framed, "{} ", m.len());
                    framed.extend_from_slice(m);
                }
                s.write_all(&framed).map_err(|e| (0, e))
            }
            Conn::Udp(s) => {
                let Address::Udp(to) = self.cfg.address else {
                    unreachable!("a UDP connection has a UDP address")
                };
                for (i, m) in messages.iter().enumerate() {
                    s.send_to(m, to).map_err(|e| (i, e))?;
                }
                Ok(())
            }
            Conn::Unix(s) => {
                let Address::Unix(to) = &self.cfg.address else {
                    unreachable!("a unix connection has a path")
                };
                for (i, m) in messages.iter().enumerate() {
                    s.send_to(m, to).map_err(|e| (i, e))?;
                }
                Ok(())
            }
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length; gethostname NUL-terminates
    // within it or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    // RFC 5424: printable ASCII, no spaces; "-" when unknown
    let clean: String = name.chars().filter(|c| c.is_ascii_graphic()).collect();
    if clean.is_empty() {
        "-".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            "unix:/dev/log".parse::<Address>(),
            Ok(Address::Unix("/dev/log".into()))
        );
        assert_eq!(
            "tcp://127.0.0.1:601".parse::<Address>(),
            Ok(Address::Tcp("127.0.0.1:601".parse().unwrap()))
        );
        assert!("127.0.0.1:514".parse::<Address>().is_err());
    }

    #[test]
    fn udp_messages_arrive_as_rfc5424() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = Syslog::new(SyslogConfig {
            address: Address::Udp(rx.local_addr().unwrap()),
            facility: Facility::Local3,
            app_name: "ksight".into(),
            protocol: Protocol::Rfc5424,
        });
        let ev = ksight_core::sink::exit_event(0);
        let mut m = Vec::new();
        s.message(&ev, b"{\"x\":1}\n", &mut m);
        s.send(&[m]).unwrap();
        let mut buf = [0u8; 2048];
        let n = rx.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        // local3 (19) * 8 + info (6)
        assert!(got.starts_with("<158>1 "), "{got}");
        assert!(got.ends_with("- {\"x\":1}"), "{got}");
        assert!(
            got.contains(&format!(" ksight {} exit ", std::process::id())),
            "{got}"
        );
    }

    #[test]
    fn tcp_frames_count_octets_and_a_dead_peer_is_an_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut s = Syslog::new(SyslogConfig {
            address: Address::Tcp(addr),
            facility: Facility::Daemon,
            app_name: "ksight".into(),
            protocol: Protocol::Rfc5424,
        });
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut c, &mut got).unwrap();
            got
        });
        s.send(&[b"abc".to_vec(), b"hello".to_vec()]).unwrap();
        drop(s);
        assert_eq!(t.join().unwrap(), b"3 abc5 hello");
        // nobody listens there any more
        let mut s = Syslog::new(SyslogConfig {
            address: Address::Tcp(addr),
            facility: Facility::Daemon,
            app_name: "ksight".into(),
            protocol: Protocol::Rfc5424,
        });
        assert!(s.send(&[b"x".to_vec()]).is_err());
    }

    #[test]
    fn a_unix_socket_gets_either_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        let ev = ksight_core::sink::exit_event(0);
        for (protocol, prefix) in [
            (Protocol::Rfc3164, "<30>ksight["),
            (Protocol::Rfc5424, "<30>1 "),
        ] {
            let mut s = Syslog::new(SyslogConfig {
                address: Address::Unix(path.clone()),
                facility: Facility::Daemon,
                app_name: "ksight".into(),
                protocol,
            });
            let mut m = Vec::new();
            s.message(&ev, b"hello\n", &mut m);
            s.send(&[m]).unwrap();
            let mut buf = [0u8; 512];
            let n = rx.recv(&mut buf).unwrap();
            let got = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(got.starts_with(prefix) && got.ends_with("hello"), "{got}");
        }
    }
}
