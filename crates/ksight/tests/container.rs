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

#[test]
fn a_podman_container_is_named_by_its_runtime() {
    require_root();
    if let Err(e) = sh("podman", &["--version"]) {
        return skip(&format!("no podman ({e}); scripts/setup.sh installs it"));
    }
    let Some(busybox) = static_busybox() else {
        return skip("no static busybox (package busybox-static)");
    };
    let name = format!("ksight-e2e-{}", std::process::id());
    let image = format!("localhost/{name}:1");
    let _cleanup = Cleanup(name.clone(), image.clone());
    let dir = temp_dir("container");
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "true"] {
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
    )
    .unwrap();
    if let Err(e) = sh(
        "podman",
        &["import", "--quiet", tar.to_str().unwrap(), &image],
    ) {
        return skip(&format!("podman cannot import an image: {e}"));
    }

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
    let mut failures = Vec::new();
    let mut ran = false;
    for runtime in [None, Some("runc")] {
        let mut a: Vec<&str> = Vec::new();
        if let Some(r) = runtime {
            a.extend(["--runtime", r]);
        }
        a.extend(args);
        match sh("podman", &a) {
            Ok(_) => {
                ran = true;
                break;
            }
            Err(e) => failures.push(e),
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (r, rn) = (all.stop(), named.stop());
    if !ran {
        return skip(&format!("no container starts: {}", failures.join("; ")));
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
