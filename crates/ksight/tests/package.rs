//! The Debian package, installed into a clean root (dpkg-deb -x): its files,
//! its default config (valid), its systemd unit (systemd-analyze verify), and
//! the unit's ExecStart run as systemd runs it: within the unit's capability
//! bounding set, with $NOTIFY_SOCKET and $WATCHDOG_USEC. It must say READY,
//! feed the watchdog, write events, reload on SIGHUP, and stop cleanly.
//! (This machine has no systemd as PID 1; where one is, the same unit runs.)

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The value of `Key=` in the unit.
fn unit_key<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

/// Notifications received, waiting up to 30 s for one containing `want`.
fn wait_notify(sock: &UnixDatagram, got: &mut Vec<String>, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while !got.iter().any(|m| m.contains(want)) {
        assert!(Instant::now() < deadline, "no {want} in {got:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

fn wait_file_contains(path: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(path)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            Instant::now() < deadline,
            "{text:?} never in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_package_installs_and_its_unit_runs_ready_reloads_and_stops() {
    require_root();
    let dir = temp_dir("package");
    let out = Command::new(repo().join("scripts/package-deb.sh"))
        .arg(env!("CARGO_BIN_EXE_ksight"))
        .arg(dir.join("deb"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let deb = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let root = dir.join("root");
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    let control = Command::new("dpkg-deb")
        .args(["-f", &deb, "Package"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&control.stdout).trim(), "ksight");
    let conffiles = Command::new("dpkg-deb")
        .args(["-I", &deb, "conffiles"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&conffiles.stdout).trim(),
        "/etc/ksight/ksight.toml",
        "the config is a conffile: an upgrade keeps the admin's changes"
    );
    for f in [
        "usr/bin/ksight",
        "lib/systemd/system/ksight.service",
        "etc/ksight/ksight.toml",
        "usr/share/man/man1/ksight.1.gz",
        "usr/share/man/man1/ksight-run.1.gz",
        "usr/share/doc/ksight/config.md",
    ] {
        assert!(root.join(f).exists(), "{f} is not in the package");
    }
    let ksight = root.join("usr/bin/ksight");

    // the shipped config is valid
    let check = Command::new(&ksight)
        .args(["config", "check", "--config"])
        .arg(root.join("etc/ksight/ksight.toml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");

    // the unit as systemd reads it (paths pointed at the extracted root)
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/ksight.service")).unwrap();
    assert_eq!(unit_key(&unit, "Type"), "notify");
    let here = unit
        .replace("/usr/bin/ksight", ksight.to_str().unwrap())
        .replace("/bin/kill", "/usr/bin/kill");
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let u = dir.join("ksight.service");
        std::fs::write(&u, &here).unwrap();
        let v = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&u)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&v.stderr);
        assert!(v.status.success() && said.trim().is_empty(), "{said}");
    }

    // the shipped config, its log directory and syslog socket moved here
    let logs = dir.join("log");
    std::fs::create_dir_all(&logs).unwrap();
    let syslog = UnixDatagram::bind(dir.join("devlog")).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let shipped = std::fs::read_to_string(root.join("etc/ksight/ksight.toml")).unwrap();
    let config_text = shipped
        .replace("/var/log/ksight", logs.to_str().unwrap())
        .replace(
            "unix:/dev/log",
            &format!("unix:{}", dir.join("devlog").display()),
        );
    let config = dir.join("ksight.toml");
    std::fs::write(&config, &config_text).unwrap();

    // ExecStart, within CapabilityBoundingSet, with systemd's environment
    let exec: Vec<String> = unit_key(&here, "ExecStart")
        .replace("/etc/ksight/ksight.toml", config.to_str().unwrap())
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let caps: Vec<String> = unit_key(&unit, "CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let notify = UnixDatagram::bind(dir.join("notify")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut child = Command::new("setpriv")
        .arg(format!("--bounding-set=-all,{}", caps.join(",")))
        .arg("--")
        .args(&exec)
        .env("NOTIFY_SOCKET", dir.join("notify"))
        .env("WATCHDOG_USEC", "1000000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut s);
        s
    });
    let mut said = Vec::new();
    wait_notify(&notify, &mut said, "READY=1");
    wait_notify(&notify, &mut said, "WATCHDOG=1");

    // an event reaches the shipped file output
    let probe = dir.join("ks-pkg-probe");
    install_exe(Path::new("/bin/true"), &probe, "0755");
    assert!(run(&mut Command::new(&probe)).1.success());
    let events = logs.join("events.json");
    wait_file_contains(&events, "ks-pkg-probe");

    // SIGHUP (ExecReload): a second file output appears
    let second = logs.join("second.json");
    std::fs::write(
        &config,
        format!(
            "{config_text}\n[[output]]\nname = \"second\"\nkind = \"file\"\npath = \"{}\"\n",
            second.display()
        ),
    )
    .unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(run(&mut Command::new(&probe)).1.success());
        if std::fs::read_to_string(&second)
            .unwrap_or_default()
            .contains("ks-pkg-probe")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the reload added no output");
        std::thread::sleep(Duration::from_millis(200));
    }

    // systemctl stop: SIGTERM, STOPPING=1, exit 0, nothing left loaded
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = wait_timeout(&mut child, Duration::from_secs(30));
    let err = err_thread.join().unwrap();
    assert!(st.success(), "{st:?}\n{err}");
    wait_notify(&notify, &mut said, "STOPPING=1");
    assert!(err.contains("outputs reloaded"), "{err}");
    assert!(err.contains("output events: "), "{err}");
    let left = Command::new("bpftool").args(["prog", "show"]).output();
    if let Ok(left) = left {
        let text = String::from_utf8_lossy(&left.stdout);
        let pid = format!("pids ksight({})", child.id());
        assert!(!text.contains(&pid), "programs left behind:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
