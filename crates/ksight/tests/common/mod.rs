//! Test harness: run the real `ksight` binary as root, create real processes,
//! and read back the JSON events it wrote. The hooks see the whole host, so
//! every assertion filters by pids the test created.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const KSIGHT: &str = env!("CARGO_BIN_EXE_ksight");

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests load BPF programs and must run as root (CI runs them as root)"
    );
}

/// Extra arguments to every ksight started by the tests, e.g. `--attach raw_tp`
/// to run the whole suite on the fallback hooks.
pub fn extra_args() -> Vec<String> {
    std::env::var("KSIGHT_TEST_ARGS")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

pub struct Ksight {
    child: Child,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<String>,
    live: std::sync::Arc<std::sync::Mutex<String>>,
    /// Kernel ids printed by `-v`.
    pub prog_ids: Vec<u32>,
    pub map_ids: Vec<u32>,
}

pub struct Run {
    pub events: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
}

pub fn parse_ids(line: &str, key: &str) -> Vec<u32> {
    let Some(rest) = line.split(key).nth(1) else {
        return Vec::new();
    };
    let inside = rest
        .split(']')
        .next()
        .unwrap_or("")
        .trim_start_matches(" [");
    inside
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

impl Ksight {
    /// Start `ksight run --format json -v ARGS` and wait until it is watching.
    pub fn start(args: &[&str]) -> Ksight {
        require_root();
        // later flags override earlier ones: a test's own args win; no
        // config file unless the test names one (the host's must not count)
        let no_config = (!args.contains(&"--config")).then_some("--no-config");
        let mut child = Command::new(KSIGHT)
            .arg("run")
            .args(no_config)
            .args(["--format", "json", "-v"])
            .args(extra_args())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ksight");
        let mut out = child.stdout.take().unwrap();
        let stdout = thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let (tx, rx) = mpsc::channel::<String>();
        let err = child.stderr.take().unwrap();
        let live = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let live2 = live.clone();
        let stderr = thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                all.push_str(&line);
                all.push('\n');
                if let Ok(mut l) = live2.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
            all
        });
        let mut prog_ids = Vec::new();
        let mut map_ids = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("prog ids") => {
                    prog_ids = parse_ids(&line, "prog ids");
                    map_ids = parse_ids(&line, "map ids");
                }
                Ok(line) if line.starts_with("ksight: watching") => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "ksight did not start: {}",
                        stderr.join().unwrap_or_default()
                    );
                }
            }
        }
        Ksight {
            child,
            stdout,
            stderr,
            live,
            prog_ids,
            map_ids,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it has written to stderr so far.
    #[allow(dead_code)]
    pub fn stderr_so_far(&self) -> String {
        self.live.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Its peak resident memory so far (VmHWM), KiB.
    #[allow(dead_code)]
    pub fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// How many entries this ksight's map `name` holds now (asks bpftool).
    pub fn map_entries(&self, name: &str) -> usize {
        for id in &self.map_ids {
            let show = Command::new("bpftool")
                .args(["-j", "map", "show", "id", &id.to_string()])
                .output()
                .expect("bpftool (apt-get install bpftool)");
            let info: Value = serde_json::from_slice(&show.stdout).unwrap_or_default();
            if info["name"] != name {
                continue;
            }
            let dump = Command::new("bpftool")
                .args(["-j", "map", "dump", "id", &id.to_string()])
                .output()
                .unwrap();
            let entries: Value = serde_json::from_slice(&dump.stdout).expect("bpftool map dump -j");
            return entries.as_array().map_or(0, Vec::len);
        }
        panic!("no map {name} among {:?}", self.map_ids);
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGINT, then collect everything it wrote.
    pub fn stop(self) -> Run {
        self.signal(libc::SIGINT);
        self.finish()
    }

    /// SIGINT, then collect its output without parsing it as JSON.
    pub fn stop_raw(self) -> Run {
        self.signal(libc::SIGINT);
        self.collect(false)
    }

    /// Wait for it to exit by itself (e.g. --duration) and collect.
    pub fn finish(self) -> Run {
        self.collect(true)
    }

    fn collect(mut self, json: bool) -> Run {
        let status = wait_timeout(&mut self.child, Duration::from_secs(30));
        let stdout = String::from_utf8(self.stdout.join().unwrap()).expect("JSON is UTF-8");
        let stderr = self.stderr.join().unwrap();
        let events = (stdout.lines().filter(|_| json))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect();
        Run {
            events,
            stdout,
            stderr,
            status,
        }
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Put a program at `dst` (mode `mode`, e.g. "0755") without ever holding
/// it open for writing in this process: a test thread that forks while
/// this one writes would carry the write fd into its child until that child
/// execs, and an exec of `dst` in that window fails with ETXTBSY. `install`
/// writes it in a process of its own.
pub fn install_exe(src: &Path, dst: &Path, mode: &str) {
    let st = Command::new("install")
        .args(["-m", mode])
        .arg(src)
        .arg(dst)
        .status()
        .expect("spawn install");
    assert!(st.success(), "install {} {}", src.display(), dst.display());
}

/// `install_exe` of bytes: written first to a file nobody runs.
pub fn write_exe(dst: &Path, bytes: &[u8]) {
    let tmp = dst.with_extension("ks-src");
    std::fs::write(&tmp, bytes).unwrap();
    install_exe(&tmp, dst, "0755");
    std::fs::remove_file(&tmp).unwrap();
}

/// Run a command to completion; returns (pid, status).
pub fn run(cmd: &mut Command) -> (u32, ExitStatus) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    (pid, wait_timeout(&mut child, Duration::from_secs(30)))
}

impl Run {
    /// Events of `kind` whose process is `pid`.
    pub fn of(&self, kind: &str, pid: u32) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == kind && e["process"]["pid"] == pid)
            .collect()
    }

    pub fn one(&self, kind: &str, pid: u32) -> &Value {
        let found = self.of(kind, pid);
        assert_eq!(
            found.len(),
            1,
            "expected one {kind} event of pid {pid}, got {found:#?}\nstderr: {}",
            self.stderr
        );
        found[0]
    }

    /// Fork events whose child is `pid`.
    pub fn forks_of_child(&self, pid: u32) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == "fork" && e["child"]["pid"] == pid)
            .collect()
    }

    /// Position of an event in the output.
    pub fn index(&self, ev: &Value) -> usize {
        self.events
            .iter()
            .position(|e| std::ptr::eq(e, ev))
            .expect("event from this run")
    }
}

pub fn canonical(path: &str) -> String {
    std::fs::canonicalize(path)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Strings of a JSON argv.
pub fn argv(ev: &Value) -> Vec<String> {
    ev["exec"]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap_or("<bytes>").to_string())
        .collect()
}

/// A fresh directory for one test's files.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ksight-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
pub fn cgroup2_mount() -> std::path::PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    ksight_core::cgroup::cgroup2_mount(&info).expect("a cgroup2 mount")
}

/// A network namespace of the test's own (loopback up), removed with its
/// /etc/netns files when dropped. Names are unique per process and test.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("ks-{tag}-{}-{n}", std::process::id());
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name]).expect("ip netns add (iproute2)");
        ip(&["-n", &name, "link", "set", "lo", "up"]).unwrap();
        Netns(name)
    }

    /// The inode of the namespace, as events report it.
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.0))
            .unwrap()
            .ino()
    }

    /// The resolv.conf `ip netns exec` gives the programs it runs here.
    pub fn resolv_conf(&self, text: &str) {
        let etc = format!("/etc/netns/{}", self.0);
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(format!("{etc}/resolv.conf"), text).unwrap();
    }

    /// `cmd`, run inside this namespace by `ip netns exec` (which execs it: same pid).
    pub fn exec(&self, cmd: Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        c.envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.0));
    }
}

/// Run `ip ARGS`; its stderr on failure.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Does the kernel still have this BPF object? Asks bpftool, the kernel's own listing.
pub fn bpf_object_exists(kind: &str, id: u32) -> bool {
    let out = Command::new("bpftool")
        .args([kind, "show", "id", &id.to_string()])
        .output()
        .expect("bpftool (apt-get install bpftool)");
    out.status.success()
}

/// Freeing programs and maps is deferred (RCU, work queues): allow a moment.
pub fn assert_all_gone(k_progs: &[u32], k_maps: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> = (k_progs.iter().map(|&id| ("prog", id)))
            .chain(k_maps.iter().map(|&id| ("map", id)))
            .filter(|&(kind, id)| bpf_object_exists(kind, id))
            .map(|(kind, id)| format!("{kind} {id}"))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still loaded after ksight exited: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` children, one at a time, each calling only `_exit(0)` and reaped:
/// the body of the fork-storm helpers.
pub fn fork_and_reap(n: u32) {
    for _ in 0..n {
        // SAFETY: the child calls only _exit.
        match unsafe { libc::fork() } {
            0 => unsafe { libc::_exit(0) },
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            child => {
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(child, &mut st, 0) };
            }
        }
    }
}

/// This test binary run again for one of its `#[ignore]`d helper tests.
pub fn helper_command(name: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--ignored", "--exact", name, "--test-threads", "1"]);
    c
}

/// A loopback TCP port free now (for a server a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
