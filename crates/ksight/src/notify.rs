//! systemd's readiness protocol (sd_notify(3)), without libsystemd: a
//! datagram to `$NOTIFY_SOCKET` (a path, or an abstract name after `@`).
//! `READY=1` once attached, `WATCHDOG=1` at half `$WATCHDOG_USEC` from the
//! poll loop (a hung loop gets ksight restarted), `STOPPING=1` at stop. Without
//! `$NOTIFY_SOCKET` (not under systemd) every call does nothing.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    /// Watchdog pings: how often, and when the last went.
    watchdog: Option<(Duration, Instant)>,
}

impl Notifier {
    /// From the environment systemd gives a `Type=notify` service.
    pub fn from_env() -> io::Result<Notifier> {
        let socket = match std::env::var_os("NOTIFY_SOCKET") {
            Some(path) => {
                let path = path.to_string_lossy().into_owned();
                let addr = match path.strip_prefix('@') {
                    Some(name) => {
                        use std::os::linux::net::SocketAddrExt;
                        SocketAddr::from_abstract_name(name.as_bytes())?
                    }
                    None => SocketAddr::from_pathname(&path)?,
                };
                Some((UnixDatagram::unbound()?, addr))
            }
            None => None,
        };
        // WATCHDOG_PID, when set, must be ours (sd_watchdog_enabled(3))
        let ours = std::env::var("WATCHDOG_PID")
            .map_or(true, |p| p.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(|u| (Duration::from_micros(u / 2), Instant::now()));
        Ok(Notifier { socket, watchdog })
    }

    /// Sends `state` (`READY=1`, `STATUS=...`): Ok(false) without systemd.
    pub fn send(&self, state: &str) -> io::Result<bool> {
        let Some((sock, addr)) = &self.socket else {
            return Ok(false);
        };
        sock.send_to_addr(state.as_bytes(), addr)?;
        Ok(true)
    }

    /// From the poll loop: a watchdog ping when one is due.
    pub fn alive(&mut self) {
        if let Some((every, last)) = &mut self.watchdog {
            if last.elapsed() >= *every {
                *last = Instant::now();
                let _ = self.send("WATCHDOG=1");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_reach_the_socket_and_nothing_happens_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            watchdog: None,
        };
        assert!(n.send("READY=1\nSTATUS=watching").unwrap());
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=watching");
        let off = Notifier {
            socket: None,
            watchdog: None,
        };
        assert!(!off.send("READY=1").unwrap());
    }
}
