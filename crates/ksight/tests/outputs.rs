//! Outputs as a service, end to end: a config file with several outputs at
//! once (a real rsyslogd over TCP, a rotating file, a webhook served by this
//! test), each with exact counts; a receiver that dies loses only its own
//! events, counted and reported in-band to the others; rotation under a
//! storm keeps every line exactly once.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// rsyslogd on a loopback TCP port of its own, writing each message's
/// severity, app name, msgid and text, one per line.
struct Rsyslog {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Rsyslog {
    fn start(dir: &Path) -> Rsyslog {
        let port = free_port();
        let out = dir.join("syslog.out");
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{d}\")\n\
                 module(load=\"imtcp\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"ks\")\n\
                 template(name=\"ks\" type=\"string\" string=\"%syslogseverity-text% %app-name% %msgid%|%msg%\\n\")\n\
                 ruleset(name=\"ks\") {{ action(type=\"omfile\" file=\"{o}\" template=\"ks\") }}\n",
                d = dir.display(),
                o = out.display()
            ),
        )
        .unwrap();
        let rsyslogd = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("rsyslogd (scripts/setup.sh installs rsyslog)");
        let child = Command::new(rsyslogd)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "rsyslogd does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Rsyslog { child, out, port }
    }

    /// (severity, app, msgid, text) of each message, once rsyslogd has
    /// written `n` of them (or 10 s have passed).
    fn messages(&self, at_least: usize) -> Vec<(String, String, String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let got: Vec<_> = text
                .lines()
                .map(|l| {
                    let (head, msg) = l.split_once('|').unwrap();
                    let h: Vec<&str> = head.split(' ').collect();
                    let msg = msg.trim_start().to_string();
                    (h[0].to_string(), h[1].to_string(), h[2].to_string(), msg)
                })
                .collect();
            if got.len() >= at_least || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP server that takes POSTs (keep-alive) and keeps their NDJSON
/// events, until it is stopped: then it closes its listener and connections.
struct Webhook {
    url: String,
    events: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Webhook {
    fn start() -> Webhook {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let url = format!("http://{}/ingest", l.local_addr().unwrap());
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ev2, stop2) = (events.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (ev3, stop3) = (ev2.clone(), stop2.clone());
                        conns.push(std::thread::spawn(move || serve(c, &ev3, &stop3)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            drop(l);
            for c in conns {
                let _ = c.join();
            }
        });
        Webhook {
            url,
            events,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(c: std::net::TcpStream, events: &Mutex<Vec<Value>>, stop: &AtomicBool) {
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut r = BufReader::new(c);
    loop {
        let mut len = 0usize;
        let mut first = true;
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(_) if stop.load(Ordering::Relaxed) => return,
                Err(_) if first && line.is_empty() => continue,
                Err(_) => return,
            }
            first = false;
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        {
            let mut evs = events.lock().unwrap();
            for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                evs.push(serde_json::from_slice(line).unwrap());
            }
        }
        let _ = r
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    }
}

/// The lines of a file output and its rotated files, oldest first.
fn file_events(path: &Path) -> Vec<Value> {
    let dir = path.parent().unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut rotated: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&format!("{name}.")).then(|| (n, e.path()))
        })
        .collect();
    // PATH.STAMP[.N]: by stamp, then N as a number
    rotated.sort_by_key(|(n, _)| {
        let rest = &n[name.len() + 1..];
        let (stamp, seq) = rest.split_once('.').unwrap_or((rest, "0"));
        (stamp.to_string(), seq.parse::<u64>().unwrap_or(0))
    });
    let mut out = Vec::new();
    for p in rotated
        .into_iter()
        .map(|(_, p)| p)
        .chain([path.to_path_buf()])
    {
        let text = std::fs::read_to_string(&p).unwrap();
        for line in text.lines() {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")));
        }
    }
    out
}

/// `n` runs of a copy of /bin/true named `ks-out-probe`: their pids.
fn probes(dir: &Path, n: usize) -> Vec<u64> {
    let exe = dir.join("ks-out-probe");
    if !exe.exists() {
        install_exe(Path::new("/bin/true"), &exe, "0755");
    }
    (0..n)
        .map(|_| {
            let (pid, st) = run(&mut Command::new(&exe));
            assert!(st.success());
            u64::from(pid)
        })
        .collect()
}

/// Exec events of these pids, each exactly once: how many.
fn count_execs(events: &[Value], pids: &[u64], what: &str) -> usize {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for e in events.iter().filter(|e| e["type"] == "exec") {
        *seen
            .entry(e["process"]["pid"].as_u64().unwrap())
            .or_default() += 1;
    }
    let dup: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(dup.is_empty(), "{what}: duplicates {dup:?}");
    pids.iter().filter(|p| seen.contains_key(p)).count()
}

fn lost_by(events: &[Value], output: &str) -> u64 {
    events
        .iter()
        .filter(|e| e["type"] == "lost" && e["lost"]["output"] == output)
        .map(|e| {
            assert_eq!(e["lost"]["stage"], "output");
            e["lost"]["count"].as_u64().unwrap()
        })
        .sum()
}

#[test]
fn three_outputs_at_once_each_get_every_event_and_a_dead_one_loses_only_its_own() {
    let dir = temp_dir("outputs");
    let syslog = Rsyslog::start(&dir);
    let mut hook = Webhook::start();
    let file = dir.join("events.json");
    let config = dir.join("ksight.toml");
    // one alert per probe: a rule without dedup
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("probe.yaml"),
        "- rule: output_probe\n  description: the outputs test's probe ran.\n  events: [exec]\n  \
         condition: process.comm = ks-out-probe\n  severity: high\n  tags: [test]\n  \
         output: \"probe pid {process.pid}\"\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            "[run]\n\
             events = [\"exec\"]\n\
             comm = [\"ks-out-probe\"]\n\
             rules = [\"{}\"]\n\
             hash = \"off\"\n\
             [[output]]\n\
             name = \"syslog\"\n\
             kind = \"syslog\"\n\
             address = \"tcp://127.0.0.1:{}\"\n\
             facility = \"local3\"\n\
             min-severity = \"high\"\n\
             format = \"text\"\n\
             [[output]]\n\
             name = \"file\"\n\
             kind = \"file\"\n\
             path = \"{}\"\n\
             rotate-size = \"16K\"\n\
             [[output]]\n\
             name = \"webhook\"\n\
             kind = \"webhook\"\n\
             url = \"{}\"\n\
             events = [\"exec\"]\n\
             headers = {{ Authorization = \"Bearer x\" }}\n\
             batch = 50\n\
             retries = 1\n\
             timeout = \"1s\"\n",
            rules.display(),
            syslog.port,
            file.display(),
            hook.url
        ),
    )
    .unwrap();
    let k = Ksight::start(&["--config", config.to_str().unwrap()]);
    let first = probes(&dir, 150);
    // the webhook has the first ones before it goes away
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_execs(&hook.events(), &first, "webhook") < first.len() {
        assert!(
            Instant::now() < deadline,
            "the webhook got {} of {}",
            hook.events().len(),
            first.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    hook.stop();
    let second = probes(&dir, 150);
    std::thread::sleep(Duration::from_millis(300));
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);
    let all: Vec<u64> = first.iter().chain(&second).copied().collect();

    // the file: every exec once, and the webhook's losses in-band
    let in_file = file_events(&file);
    assert_eq!(
        count_execs(&in_file, &all, "file"),
        all.len(),
        "{}",
        r.stderr
    );
    let rotated = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            n.to_string_lossy().starts_with("events.json.")
        })
        .count();
    assert!(rotated > 0, "300 execs are more than 16K");
    // syslog: an alert per probe, once each, at err (high), as text
    let msgs = syslog.messages(all.len());
    let mut alerted: Vec<u64> = Vec::new();
    let mut syslog_lost = 0;
    for (sev, app, msgid, text) in &msgs {
        assert_eq!(app, "ksight");
        match msgid.as_str() {
            "alert" => {
                assert_eq!(sev, "err", "{text}");
                let pid = text.rsplit("probe pid ").next().unwrap().trim();
                assert!(text.starts_with("[high] output_probe: "), "{text}");
                alerted.push(pid.parse().unwrap());
            }
            "lost" => {
                assert_eq!(sev, "warning");
                assert!(text.contains("lost by output webhook"), "{text}");
                let n = text.split(" event(s) lost").next().unwrap();
                syslog_lost += n.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
            }
            other => panic!("only alerts and losses go to syslog: {other} {text}"),
        }
    }
    let mut sorted = alerted.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), alerted.len(), "an alert written twice");
    assert!(
        all.iter().all(|p| sorted.binary_search(p).is_ok()),
        "{msgs:?}"
    );
    // the webhook: the first ones, and what it missed counted, exactly
    let got = count_execs(&hook.events(), &all, "webhook");
    assert!(got >= first.len());
    let lost = lost_by(&in_file, "webhook");
    assert_eq!(
        got as u64 + lost,
        all.len() as u64,
        "webhook: {got} delivered + {lost} lost\n{}",
        r.stderr
    );
    assert!(lost > 0);
    assert_eq!(lost_by(&in_file, "syslog") + lost_by(&in_file, "file"), 0);
    assert_eq!(syslog_lost, lost, "syslog got the report too");
    assert!(r.stderr.contains("output webhook: "), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Not a test: fork $KS_FORKS children that exit at once.
#[test]
#[ignore = "helper process for the output tests"]
fn helper_forks() {
    fork_and_reap(std::env::var("KS_FORKS").unwrap().parse().unwrap());
}

#[test]
fn rotation_under_a_storm_keeps_every_line_exactly_once() {
    const FORKS: u32 = 50_000;
    let dir = temp_dir("rotation");
    let file = dir.join("storm.json");
    let config = dir.join("ksight.toml");
    std::fs::write(
        &config,
        format!(
            "[run]\nevents = [\"fork\", \"exit\"]\nno-rules = true\n\
             [[output]]\nname = \"storm\"\nkind = \"file\"\npath = \"{}\"\n\
             rotate-size = \"1M\"\ncompress = \"none\"\nqueue = 1000000\n",
            file.display()
        ),
    )
    .unwrap();
    let k = Ksight::start(&["--config", config.to_str().unwrap()]);
    let mut child = helper_command("helper_forks")
        .env("KS_FORKS", FORKS.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let helper = u64::from(child.id());
    let st = wait_timeout(&mut child, Duration::from_secs(180));
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(300));
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);
    let events = file_events(&file);
    // pids wrap over a storm this size: count, and check no line repeats
    let (mut forks, mut exits) = (0u32, 0u32);
    let mut lines = std::collections::HashSet::new();
    for e in &events {
        assert!(lines.insert(e.to_string()), "a line written twice: {e}");
        match e["type"].as_str().unwrap() {
            "fork" if e["process"]["pid"] == helper => forks += 1,
            "exit" if e["process"]["ppid"] == helper => exits += 1,
            "lost" => panic!("nothing may be lost: {e}"),
            _ => {}
        }
    }
    assert_eq!((forks, exits), (FORKS, FORKS), "{}", r.stderr);
    // every line went to exactly one file, and the summary agrees
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("output storm: "))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(
        line.contains(&format!(
            "output storm: {} events delivered, 0 dropped",
            events.len()
        )),
        "{line} vs {} lines",
        events.len()
    );
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert!(files > 5, "{files} files: rotation happened");
    let _ = std::fs::remove_dir_all(&dir);
}

fn wait_for_stderr(k: &Ksight, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !k.stderr_so_far().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in {}",
            k.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_adds_an_output_without_losing_an_event_in_the_others() {
    let dir = temp_dir("reload");
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    let config = dir.join("ksight.toml");
    let file_output = |name: &str, path: &Path| {
        format!(
            "[[output]]\nname = \"{name}\"\nkind = \"file\"\npath = \"{}\"\n",
            path.display()
        )
    };
    let run =
        "[run]\nevents = [\"exec\"]\ncomm = [\"ks-out-probe\"]\nno-rules = true\nhash = \"off\"\n";
    std::fs::write(&config, format!("{run}{}", file_output("a", &a))).unwrap();
    let k = Ksight::start(&["--config", config.to_str().unwrap()]);
    let first = probes(&dir, 100);
    std::fs::write(
        &config,
        format!("{run}{}{}", file_output("a", &a), file_output("b", &b)),
    )
    .unwrap();
    k.signal(libc::SIGHUP);
    wait_for_stderr(&k, "1 added, 0 removed, 0 changed");
    let second = probes(&dir, 100);
    // a broken file is refused whole: both outputs go on
    std::fs::write(&config, format!("{run}{}bogus = 1\n", file_output("a", &a))).unwrap();
    k.signal(libc::SIGHUP);
    wait_for_stderr(&k, "was not reloaded, the outputs that run go on");
    let third = probes(&dir, 100);
    std::thread::sleep(Duration::from_millis(200));
    let r = k.stop();
    assert!(r.status.success(), "{}", r.stderr);
    let all: Vec<u64> = first.iter().chain(&second).chain(&third).copied().collect();
    let in_a = file_events(&a);
    assert_eq!(count_execs(&in_a, &all, "a"), all.len(), "{}", r.stderr);
    assert_eq!(
        in_a.iter().filter(|e| e["type"] == "exec").count(),
        all.len()
    );
    let later: Vec<u64> = second.iter().chain(&third).copied().collect();
    let in_b = file_events(&b);
    assert_eq!(count_execs(&in_b, &later, "b"), later.len(), "{}", r.stderr);
    assert_eq!(count_execs(&in_b, &first, "b"), 0);
    assert!(
        r.stderr.contains("k.toml") || r.stderr.contains("ksight.toml:"),
        "{}",
        r.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}
