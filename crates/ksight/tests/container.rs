//! Containers from the runtime, end to end: a real podman container (its
//! image built here from a static busybox, no registry), a command run in it,
//! and ksight's events naming the container by its runtime's name, image and
//! labels; `--container NAME` keeps its events.
//!
//! Where podman cannot run at all (no podman, no static busybox, no container
//! starts) the test says why and passes, unless `KSIGHT_REQUIRE_PODMAN=1`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

fn sh(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn skip(why: &str) {
    if std::env::var_os("KSIGHT_REQUIRE_PODMAN").is_some_and(|v| v == "1") {
        panic!("podman required but cannot run: {why}");
    }
    eprintln!("SKIP container test: {why}");
}

/// busybox without a program interpreter (no PT_INTERP program header): it
/// runs in a rootfs that holds nothing else.
fn static_busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| {
            let Ok(elf) = std::fs::read(p) else {
                return false;
            };
            let u = |at: usize, n: usize| -> Option<u64> {
                let b = elf.get(at..at + n)?;
                Some(b.iter().rev().fold(0, |acc, &x| acc << 8 | u64::from(x)))
            };
            let (Some(off), Some(size), Some(n)) = (u(0x20, 8), u(0x36, 2), u(0x38, 2)) else {
                return false;
            };
            elf.starts_with(b"\x7fELF\x02\x01")
                && (0..n).all(|i| u((off + i * size) as usize, 4).is_some_and(|t| t != 3))
        })
}

struct Cleanup(String, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = sh("podman", &["rm", "-f", "-t", "0", &self.0]);
        let _ = sh("podman", &["rmi", "-f", &self.1]);
    }
}

/// An image of a static busybox (sh, sleep, true, cat) and an /etc/shadow of
/// its own, imported into podman as `image`.
fn build_image(
    busybox: &std::path::Path,
    dir: &std::path::Path,
    image: &str,
) -> Result<(), String> {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/shadow"), "root:*:20000:0:99999:7:::\n").unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "true", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    sh(
        "tar",
        &[
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    )?;
    sh(
        "podman",
        &["import", "--quiet", tar.to_str().unwrap(), image],
    )
    .map(|_| ())
    .map_err(|e| format!("podman cannot import an image: {e}"))
}

/// `podman run ARGS`, with the default OCI runtime, else runc.
fn run_container(args: &[&str]) -> Result<(), String> {
    let mut failures = Vec::new();
    for runtime in [None, Some("runc")] {
        let mut a: Vec<&str> = Vec::new();
        if let Some(r) = runtime {
            a.extend(["--runtime", r]);
        }
        a.extend(args);
        match sh("podman", &a) {
            Ok(_) => return Ok(()),
            Err(e) => failures.push(e),
        }
    }
    Err(failures.join("; "))
}

/// What each test needs first: podman, a static busybox, an image of its own
/// (name `ksight-e2e-<tag>-<pid>`), removed with its container when the
/// guard drops. `None` (the test passes, saying why) where podman cannot run.
fn prepare(tag: &str) -> Option<(String, String, PathBuf, Cleanup)> {
    require_root();
    if let Err(e) = sh("podman", &["--version"]) {
        skip(&format!("no podman ({e}); scripts/setup.sh installs it"));
        return None;
    }
    let Some(busybox) = static_busybox() else {
        skip("no static busybox (package busybox-static)");
        return None;
    };
    let name = format!("ksight-e2e-{tag}-{}", std::process::id());
    let image = format!("localhost/{name}:1");
    let cleanup = Cleanup(name.clone(), image.clone());
    let dir = temp_dir(&format!("container-{tag}"));
    if let Err(e) = build_image(&busybox, &dir, &image) {
        skip(&e);
        return None;
    }
    Some((name, image, dir, cleanup))
}

#[test]
fn a_podman_container_is_named_by_its_runtime() {
    let Some((name, image, dir, _cleanup)) = prepare("container") else {
        return;
    };

    let all = Ksight::start(&["--events", "exec,container"]);
    let named = Ksight::start(&["--events", "exec", "--container", &name]);
    // the container's first exec (sh) comes before ksight has its runtime's
    // answer; the later ones carry it
    let args = [
        "run",
        "--rm",
        "--name",
        &name,
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--label",
        "ksight.e2e=yes",
        &image,
        "/bin/sh",
        "-c",
        "sleep 1; /bin/true; /bin/sleep 0.1",
    ];
    let ran = run_container(&args);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (r, rn) = (all.stop(), named.stop());
    if let Err(e) = ran {
        return skip(&format!("no container starts: {e}"));
    }
    let in_it: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["type"] == "exec" && e["process"]["container"]["name"] == name.as_str())
        .collect();
    assert!(
        !in_it.is_empty(),
        "no exec named by the runtime\n{}",
        r.stderr
    );
    let c = &in_it[0]["process"]["container"];
    let id = in_it[0]["process"]["container_id"].as_str().unwrap();
    assert_eq!(c["id"], id);
    assert_eq!(c["image"], image.as_str());
    assert_eq!(c["runtime"], "podman");
    assert_eq!(c["labels"]["ksight.e2e"], "yes");
    assert!(
        c["image_digest"].as_str().unwrap().starts_with("sha256:"),
        "{c}"
    );
    assert!(
        in_it.iter().any(|e| e["exec"]["argv"][0] == "/bin/true"),
        "the container's /bin/true: {in_it:#?}"
    );
    // announced once
    let announced: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["type"] == "container" && e["container"]["id"] == id)
        .collect();
    assert_eq!(announced.len(), 1, "{announced:#?}");
    assert_eq!(announced[0]["container"]["name"], name.as_str());
    // --container NAME: its events, and only its
    assert!(
        rn.events.iter().any(|e| e["type"] == "exec"),
        "{}",
        rn.stderr
    );
    for e in rn.events.iter().filter(|e| e["type"] == "exec") {
        assert_eq!(e["process"]["container"]["name"], name.as_str(), "{e}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `--file-watch-containers`: the container's own /etc/shadow, read inside
/// it, is a `file` event with the container's path and its process.
#[test]
fn a_file_read_inside_a_container_is_reported_with_the_container_path() {
    let Some((name, image, dir, _cleanup)) = prepare("files") else {
        return;
    };
    let k = Ksight::start(&[
        "--events",
        "file,exec",
        "--file-watch-containers",
        "--no-default-file-watch",
        "--file-watch",
        "/etc/shadow",
    ]);
    // found within 2 s of its start: it reads after 3, and stays a moment
    // (the file is stat-ed through its root after the read)
    let ran = run_container(&[
        "run",
        "--rm",
        "--name",
        &name,
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        &image,
        "/bin/sh",
        "-c",
        "sleep 3; cat /etc/shadow; sleep 0.5",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = k.stop();
    if let Err(e) = ran {
        return skip(&format!("no container starts: {e}"));
    }
    let reads: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["type"] == "file" && e["process"]["container_id"].is_string())
        .collect();
    assert_eq!(reads.len(), 1, "{reads:#?}\n{}", r.stderr);
    let f = &reads[0]["file"];
    assert_eq!(f["op"], "open");
    assert_eq!(f["path"], "/etc/shadow", "the container's path");
    assert_eq!(f["size"], 26, "its own shadow, not the host's");
    assert!(f["root_pid"].is_u64(), "{f}");
    assert_eq!(reads[0]["process"]["comm"], "cat");
    let _ = std::fs::remove_dir_all(dir);
}
