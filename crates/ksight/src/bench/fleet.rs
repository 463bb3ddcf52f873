//! `ksight bench fleet`: the nats output's throughput with acknowledgements,
//! against JetStream clusters of 1 and 3 `nats-server`s started on loopback
//! for the run (file storage, replicas = nodes), and the CPU each event costs
//! ksight (its output thread and the poll thread's queueing) and the servers.
//! Runs alternate between the cluster sizes; medians and spreads. `spooled`:
//! events that went through the spool because the stream did not take them
//! at once (0: the rate was sustained by publishing alone).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ksight_core::sink::Sink;

use super::{capture, events_of, hold_cpu_awake, median, si};
use crate::cli::bench::FleetBenchArgs;
use crate::fleet::{ensure_stream, StreamSpec};

/// nats-server nodes on loopback, killed when dropped.
struct Servers {
    children: Vec<Child>,
    urls: Vec<String>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_servers(dir: &Path, n: usize) -> Result<Servers> {
    let ports: Vec<(u16, u16)> = (0..n)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<Result<_>>()?;
    let mut s = Servers {
        children: Vec::new(),
        urls: Vec::new(),
    };
    for (i, (port, cport)) in ports.iter().enumerate() {
        let routes: Vec<String> = ports
            .iter()
            .filter(|p| p.1 != *cport)
            .map(|p| format!("nats-route://127.0.0.1:{}", p.1))
            .collect();
        let cluster = match n {
            1 => String::new(),
            _ => format!(
                "cluster {{ name: bench, listen: \"127.0.0.1:{cport}\", routes: [{}] }}",
                routes.join(", ")
            ),
        };
        let conf = dir.join(format!("n{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server_name: n{i}\nlisten: \"127.0.0.1:{port}\"\n\
                 jetstream {{ store_dir: \"{}\" }}\n{cluster}\n",
                dir.join(format!("n{i}")).display()
            ),
        )?;
        s.children.push(
            Command::new("nats-server")
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting nats-server (Debian: apt-get install nats-server)")?,
        );
        s.urls.push(format!("nats://127.0.0.1:{port}"));
    }
    // the stream, once the cluster has elected its meta leader
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(async {
        loop {
            let tried = async {
                let c = async_nats::connect(s.urls.as_slice()).await?;
                let js = async_nats::jetstream::new(c);
                ensure_stream(
                    &js,
                    StreamSpec {
                        name: "KSIGHT".into(),
                        prefix: "ksight".into(),
                        replicas: n,
                        max_age: Duration::from_secs(3600),
                        max_bytes: -1,
                        dedup_window: Duration::from_secs(120),
                        memory: false,
                    },
                )
                .await?;
                anyhow::Ok(())
            };
            match tried.await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    })?;
    Ok(s)
}

fn cpu_of(pid: u32) -> f64 {
    // utime and stime, fields 14 and 15 of /proc/PID/stat, in clock ticks
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    f.iter().sum::<f64>() / hz
}

fn self_cpu() -> f64 {
    // SAFETY: rusage is plain data, written whole by getrusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct Sample {
    rate: f64,
    ksight_us: f64,
    server_us: f64,
    spooled: u64,
    duplicates: u64,
}

fn one_run(
    servers: &Servers,
    spool: PathBuf,
    events: &[ksight_core::event::Event],
    queue: usize,
    rate: Option<u64>,
    per_message: usize,
) -> Result<Sample> {
    let _ = std::fs::remove_dir_all(&spool);
    let list: Vec<String> = servers.urls.iter().map(|u| format!("{u:?}")).collect();
    let plan = toml::from_str::<ksight_output::OutputSpec>(&format!(
        "name = \"fleet\"\nkind = \"nats\"\nservers = [{}]\nspool-dir = {:?}\nhost = \"bench\"\nqueue = {}\nevents-per-message = {}\n",
        list.join(", "),
        spool.display().to_string(),
        queue.max(1),
        per_message.max(1)
    ))?
    .plan()
    .map_err(anyhow::Error::msg)?;
    let mut outs = ksight_output::Outputs::start(vec![plan])?;
    // connected before the clock starts
    std::thread::sleep(Duration::from_millis(300));
    let pids: Vec<u32> = servers.children.iter().map(Child::id).collect();
    let server_cpu = || pids.iter().map(|&p| cpu_of(p)).sum::<f64>();
    let (t, c, sc) = (Instant::now(), self_cpu(), server_cpu());
    for (i, ev) in events.iter().enumerate() {
        outs.write(ev)?;
        if let Some(r) = rate.filter(|_| i % 1000 == 999) {
            let due = t + Duration::from_secs_f64((i + 1) as f64 / r.max(1) as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
    let n = events.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let c = &outs.counts()[0];
        if c.delivered + c.dropped + c.failed >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("the run did not finish in 300 s: {c:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let (wall, cpu, scpu) = (t.elapsed().as_secs_f64(), self_cpu() - c, server_cpu() - sc);
    let counts = outs.finish(Duration::from_secs(30));
    let c = &counts[0];
    if c.dropped + c.failed > 0 {
        bail!("events lost: {c:?}");
    }
    let f = c.fleet.unwrap_or_default();
    let (duplicates, spooled) = (f.duplicates, f.spilled);
    Ok(Sample {
        rate: n as f64 / wall,
        ksight_us: cpu * 1e6 / n as f64,
        server_us: scpu * 1e6 / n as f64,
        spooled,
        duplicates,
    })
}

pub fn fleet(a: FleetBenchArgs) -> Result<()> {
    if a.runs == 0 || a.events == 0 || a.nodes.is_empty() {
        bail!("--runs, --events and --nodes must not be empty");
    }
    if let Some(n) = a.nodes.iter().find(|&&n| !(1..=5).contains(&n)) {
        bail!("--nodes {n}: 1 to 5");
    }
    let _awake = hold_cpu_awake();
    let records = capture(500, 500)?;
    let real = events_of(&records)?;
    if real.is_empty() {
        bail!("no events captured");
    }
    let events: Vec<_> = real.iter().cycle().take(a.events).cloned().collect();
    let avg = events
        .iter()
        .map(|e| serde_json::to_vec(e).map_or(0, |v| v.len()))
        .sum::<usize>()
        / events.len();
    let dir = std::env::temp_dir().join(format!("ksight-bench-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "ksight bench fleet: {} events per run ({} real exec/fork/exit/TCP events repeated, {avg} bytes of JSON on average), {} runs per cluster",
        a.events,
        real.len(),
        a.runs
    );
    let clusters: Vec<(usize, Servers)> = a
        .nodes
        .iter()
        .map(|&n| {
            let d = dir.join(format!("c{n}"));
            std::fs::create_dir_all(&d)?;
            Ok((n, start_servers(&d, n)?))
        })
        .collect::<Result<_>>()?;
    let mut samples: Vec<Vec<Sample>> = clusters.iter().map(|_| Vec::new()).collect();
    for run in 0..a.runs {
        for k in 0..clusters.len() {
            let i = (k + run) % clusters.len();
            // twice the events: never half full, so the output publishes rather than spools
            let queue = a.queue.unwrap_or(2 * events.len() + 1);
            let s = one_run(
                &clusters[i].1,
                dir.join("spool"),
                &events,
                queue,
                a.rate,
                a.events_per_message,
            )?;
            samples[i].push(s);
        }
    }
    drop(clusters);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{:<10} {:>26} {:>24} {:>24} {:>8} {:>10}",
        "cluster",
        "events/s (min-max)",
        "ksight µs CPU/event",
        "servers µs CPU/event",
        "spooled",
        "duplicates"
    );
    for (n, s) in a.nodes.iter().zip(samples) {
        let (r, rl, rh) = median(s.iter().map(|x| x.rate).collect());
        let (k, kl, kh) = median(s.iter().map(|x| x.ksight_us).collect());
        let (v, vl, vh) = median(s.iter().map(|x| x.server_us).collect());
        println!(
            "{:<10} {:>26} {:>24} {:>24} {:>8} {:>10}",
            format!("{n} node{}", if *n == 1 { "" } else { "s" }),
            format!("{} ({}-{})", si(r), si(rl), si(rh)),
            format!("{k:.2} ({kl:.2}-{kh:.2})"),
            format!("{v:.2} ({vl:.2}-{vh:.2})"),
            s.iter().map(|x| x.spooled).sum::<u64>(),
            s.iter().map(|x| x.duplicates).sum::<u64>(),
        );
    }
    Ok(())
}
