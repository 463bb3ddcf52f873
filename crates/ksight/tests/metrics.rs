//! `--metrics`: a real Prometheus (Debian's package) scrapes ksight on
//! loopback, and the test reads the values back through its HTTP API.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, target_port: u16) -> Prometheus {
        let port = free_port();
        let conf = dir.join("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
                 scrape_configs:\n  - job_name: ksight\n    static_configs:\n\
                 \x20     - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (scripts/setup.sh installs it)");
        Prometheus { child, port }
    }

    /// The instant vector of `query`, through the HTTP API.
    fn query(&self, query: &str) -> Vec<Value> {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5", "-G"])
            .arg(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .arg("--data-urlencode")
            .arg(format!("query={query}"))
            .output()
            .unwrap();
        if !out.status.success() {
            return Vec::new();
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The first sample's value of `query` once `ok` holds for it (30 s at most).
    fn wait_for(&self, query: &str, ok: impl Fn(f64) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.query(query);
            if let Some(s) = r.first() {
                let v: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
                if ok(v) {
                    return s.clone();
                }
            }
            assert!(Instant::now() < deadline, "{query}: {r:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_ksight_and_reads_its_counters() {
    let dir = temp_dir("metrics");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let k = Ksight::start(&["--metrics", &addr, "--events", "exec,exit", "--no-rules"]);
    assert!(k
        .stderr_so_far()
        .contains(&format!("metrics at http://{addr}/metrics")));
    let prom = Prometheus::start(&dir, port);
    prom.wait_for("up{job=\"ksight\"}", |v| v == 1.0);
    let exe = dir.join("ks-metric-probe");
    install_exe(Path::new("/bin/true"), &exe, "0755");
    for _ in 0..50 {
        assert!(run(&mut Command::new(&exe)).1.success());
    }
    prom.wait_for("ksight_events_total{kind=\"exec\"}", |v| v >= 50.0);
    let info = prom.wait_for("ksight_build_info", |v| v == 1.0);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(info["metric"]["kernel"], release.trim());
    prom.wait_for("ksight_resident_memory_bytes", |v| v > 1e6);
    prom.wait_for("ksight_process_table_entries", |v| v > 10.0);
    prom.wait_for("ksight_ring_usage_ratio", |v| (0.0..=1.0).contains(&v));
    prom.wait_for("sum(ksight_lost_total)", |v| v == 0.0);
    let programs = prom.query("ksight_bpf_program_runs_total");
    assert!(
        programs
            .iter()
            .any(|p| p["metric"]["program"] == "ks_exec_btf"
                || p["metric"]["program"] == "ks_exec_raw"),
        "{programs:?}"
    );
    let r = k.stop();
    // ksight's own count is at least what Prometheus saw
    let written = r.events.iter().filter(|e| e["type"] == "exec").count();
    assert!(written >= 50, "{}", r.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
