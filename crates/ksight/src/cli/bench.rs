//! `ksight bench`'s command line: what each benchmark takes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: Bench,
}

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// Ring buffer (batched and eager wake-ups) vs perf buffer: throughput, loss, latency, order, consumer CPU.
    Transport(TransportArgs),
    /// Where ksight's userspace time goes per event: decode, enrich, serialise, write.
    Pipeline(PipelineArgs),
    /// What ksight costs exec, connect, DNS and syscall storms, against no ksight and a no-op floor.
    Overhead(OverheadArgs),
    /// What evaluating the detection rules costs per event: the shipped pack, and 200 rules.
    Rules(RulesBenchArgs),
    /// Events per second published with acknowledgements to a local 1-node and
    /// 3-node JetStream (nats-server started for the run), CPU per event.
    Fleet(FleetBenchArgs),
    /// One workload of the overhead benchmark, timed (run by it in a child process).
    #[command(hide = true)]
    Workload(WorkloadArgs),
}

#[derive(Args, Debug)]
pub struct PipelineArgs {
    /// Processes started to capture real records from (each: fork, exec, exit).
    #[arg(long, default_value_t = 2000)]
    pub processes: usize,
    /// Times the captured records are replayed through the pipeline.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

#[derive(Args, Debug)]
pub struct FleetBenchArgs {
    /// Events published per run (real exec and TCP events, repeated).
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Runs per cluster size (alternating).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Cluster sizes to start (1, 3 or 5 nodes each).
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    pub nodes: Vec<usize>,
    /// The output's queue (default: twice the events: it never fills);
    /// a small one shows the spool absorbing what the stream cannot take yet.
    #[arg(long)]
    pub queue: Option<usize>,
    /// Offer the events at this rate (events/s) rather than all at once.
    #[arg(long)]
    pub rate: Option<u64>,
    /// The output's `events-per-message` (1: a message per event).
    #[arg(long, default_value_t = 64)]
    pub events_per_message: usize,
}

#[derive(Args, Debug)]
pub struct RulesBenchArgs {
    /// Processes started to capture real records from (each: fork, exec, exit).
    #[arg(long, default_value_t = 2000)]
    pub processes: usize,
    /// TCP connections on loopback captured too (each: connect, accept, two closes).
    #[arg(long, default_value_t = 500)]
    pub connections: usize,
    /// Times the events are evaluated, per rule set.
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
}

#[derive(Args, Debug)]
pub struct TransportArgs {
    /// Producer rates over all CPUs, records/s ("max": as fast as the producers go).
    #[arg(long, value_delimiter = ',', default_value = "20k,200k,1M,max", value_parser = parse_rate)]
    pub rates: Vec<Rate>,
    /// Record sizes in bytes, header included (32 to 4096).
    #[arg(long, value_delimiter = ',', default_value = "64,1024")]
    pub sizes: Vec<u32>,
    /// Production time per run.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Runs per transport and case (alternating).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    #[arg(long, default_value = "8M", value_parser = super::parse_size)]
    pub ringbuf_size: u32,
    #[arg(long, default_value_t = 128)]
    pub perf_pages: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub Option<u64>);

pub fn parse_rate(s: &str) -> Result<Rate, String> {
    if s == "max" {
        return Ok(Rate(None));
    }
    let (num, mult) = match s.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1_000),
        None => match s.strip_suffix(['m', 'M']) {
            Some(n) => (n, 1_000_000),
            None => (s, 1),
        },
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Rate(Some(n * mult))),
        _ => Err(format!("{s:?} is not a rate such as 200k or max")),
    }
}

#[derive(Args, Debug)]
pub struct OverheadArgs {
    /// Runs per configuration and workload (alternating).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Multiplies every workload's operation count (1.0: exec 1000, connect 3000,
    /// dns 5000, gai 2000, syscall 5M, files 20000).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    #[arg(long, value_delimiter = ',', value_enum)]
    pub workloads: Vec<Workload>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where each object's cost lands: ksight with one object more at each
    /// step (process, + TCP, + UDP/DNS, + getaddrinfo = the default run)
    /// instead of the usual setups.
    #[arg(long)]
    pub breakdown: bool,

    /// Compare ksight with and without enforcement rules loaded (1,000 denied
    /// /32 destinations, a denied name and a kill directory the workloads never
    /// reach, in --enforce mode): what the enforcement hooks add to every
    /// connection, DNS answer and exec.
    #[arg(long, conflicts_with = "breakdown")]
    pub enforcement: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// fork + exec of /bin/true
    Exec,
    /// TCP connect/accept/1-byte exchange/close on 127.0.0.1
    Connect,
    /// DNS query over UDP with sendto/recvfrom to the resolver on 127.0.0.1:53, a new socket each
    Dns,
    /// glibc getaddrinfo of a name the resolver answers
    Gai,
    /// getppid in a tight loop: the tax on every process, traced or not
    Syscall,
    /// write (create, write 64 bytes, close) then read (open, read, close) a
    /// file in a directory ksight watches (`--file-watch`, opens and changes)
    Files,
}

impl Workload {
    pub const ALL: [Workload; 6] = [
        Workload::Exec,
        Workload::Connect,
        Workload::Dns,
        Workload::Gai,
        Workload::Syscall,
        Workload::Files,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Exec => "exec",
            Workload::Connect => "connect",
            Workload::Dns => "dns",
            Workload::Gai => "gai",
            Workload::Syscall => "syscall",
            Workload::Files => "files",
        }
    }
}

#[derive(Args, Debug)]
pub struct WorkloadArgs {
    #[arg(value_enum)]
    pub kind: Workload,
    /// Operations to perform.
    #[arg(long)]
    pub count: u64,
    /// Name to resolve (dns, gai).
    #[arg(long, default_value = "bench.ksight.test")]
    pub name: String,
    /// gai: milliseconds to sleep between lookups (a long-lived resolving process).
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("max"), Ok(Rate(None)));
        assert_eq!(parse_rate("200k"), Ok(Rate(Some(200_000))));
        assert_eq!(parse_rate("2M"), Ok(Rate(Some(2_000_000))));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }
}
