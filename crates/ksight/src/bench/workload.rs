//! Workload generators for `ksight bench overhead`, run as
//! `ksight bench workload KIND --count N` in a child process (inside the
//! benchmark's network namespace), so that they can be timed alike with and
//! without ksight. Each prints `{"ops": N, "secs": S, "cpu": C}` (C: its own
//! and its children's CPU seconds). Loopback only, bounded
//! in count.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cli::bench::{Workload, WorkloadArgs};

/// The directory of the `files` workload, which the benchmark's ksight watches.
pub const FILES_DIR: &str = "/tmp/ksight-bench-files";

/// A DNS query for `name`, type A, class IN, with recursion desired.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

pub fn run(a: WorkloadArgs) -> Result<()> {
    let n = a.count;
    let t = Instant::now();
    match a.kind {
        Workload::Exec => {
            for _ in 0..n {
                let st = std::process::Command::new("/bin/true").status()?;
                if !st.success() {
                    bail!("/bin/true failed");
                }
            }
        }
        Workload::Connect => {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            let server = std::thread::spawn(move || -> std::io::Result<()> {
                for _ in 0..n {
                    let (mut s, _) = listener.accept()?;
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b)?;
                    s.write_all(&b)?;
                }
                Ok(())
            });
            for _ in 0..n {
                let mut c = TcpStream::connect(addr)?;
                c.write_all(b"x")?;
                let mut b = [0u8; 1];
                c.read_exact(&mut b)?;
            }
            server.join().expect("server thread")?;
        }
        Workload::Dns => {
            let mut buf = [0u8; 512];
            for i in 0..n {
                let s = UdpSocket::bind("127.0.0.1:0")?;
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                s.send_to(&query(i as u16, &a.name), "127.0.0.1:53")?;
                s.recv_from(&mut buf)
                    .context("no answer from the resolver on 127.0.0.1:53")?;
            }
        }
        Workload::Gai => {
            for _ in 0..n {
                let found = std::net::ToSocketAddrs::to_socket_addrs(&(a.name.as_str(), 80))
                    .with_context(|| format!("getaddrinfo({})", a.name))?
                    .count();
                if found == 0 {
                    bail!("getaddrinfo({}) found nothing", a.name);
                }
                if a.pause_ms > 0 {
                    std::thread::sleep(Duration::from_millis(a.pause_ms));
                }
            }
        }
        Workload::Files => {
            let dir = std::path::Path::new(FILES_DIR);
            std::fs::create_dir_all(dir)?;
            let mut buf = [0u8; 64];
            for i in 0..n {
                let p = dir.join(format!("f{}", i % 16));
                std::fs::File::create(&p)?.write_all(&buf)?;
                std::fs::File::open(&p)?.read_exact(&mut buf)?;
            }
        }
        Workload::Syscall => {
            for _ in 0..n {
                // SAFETY: getppid has no preconditions.
                std::hint::black_box(unsafe { libc::getppid() });
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    // CPU charged to the workload itself and its children (the execs): where
    // in-kernel probe costs land, whoever's wall time they take
    let cpu = cpu_secs(libc::RUSAGE_SELF) + cpu_secs(libc::RUSAGE_CHILDREN);
    println!("{{\"ops\": {n}, \"secs\": {secs}, \"cpu\": {cpu}}}");
    Ok(())
}

fn cpu_secs(who: i32) -> f64 {
    // SAFETY: rusage is plain data, written whole by getrusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and a pointer to a rusage.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
