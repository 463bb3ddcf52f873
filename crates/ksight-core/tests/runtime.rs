//! The container resolver against a real podman, as root: an image built
//! locally (a static busybox imported as a rootfs, no registry), a container
//! with a name and labels, and the resolver asked about its id through
//! podman's Docker-compatible API and, separately, through podman's files.
//!
//! Where podman cannot run (not root, no podman, no static busybox, no
//! container starts), the test says why and passes, unless
//! `KSIGHT_REQUIRE_PODMAN=1`, which makes that a failure.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ksight_core::cgroup::container_id;
use ksight_core::runtime::{ContainerInfo, ContainerResolver, Runtime, RuntimeConfig};

/// Runs a command; its trimmed stdout, or what went wrong.
fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn skip(why: &str) {
    if std::env::var_os("KSIGHT_REQUIRE_PODMAN").is_some_and(|v| v == "1") {
        panic!("podman test required but cannot run: {why}");
    }
    eprintln!("SKIP runtime podman test: {why}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let uid = s.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            Some(uid.split_whitespace().nth(1)? == "0") // effective uid
        })
        .unwrap_or(false)
}

/// A statically linked busybox (no PT_INTERP program header), which runs in
/// a rootfs that has nothing else.
fn static_busybox() -> Option<PathBuf> {
    [
        "/bin/busybox",
        "/usr/bin/busybox",
        "/usr/lib/busybox/busybox",
    ]
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
        let (Some(phoff), Some(phentsize), Some(phnum)) = (u(0x20, 8), u(0x36, 2), u(0x38, 2))
        else {
            return false;
        };
        elf.starts_with(b"\x7fELF\x02\x01")
            && (0..phnum)
                .all(|i| u((phoff + i * phentsize) as usize, 4).is_some_and(|ptype| ptype != 3))
    })
}

/// Removes what the test made, whatever happens.
struct Cleanup {
    container: String,
    image: String,
    service: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut service) = self.service.take() {
            let _ = service.kill();
            let _ = service.wait();
        }
        let _ = run("podman", &["rm", "-f", "-t", "0", &self.container]);
        let _ = run("podman", &["rmi", "-f", &self.image]);
    }
}

/// Polls the resolver until it knows `id`, for up to `limit`.
fn resolve(r: &ContainerResolver, id: &str, limit: Duration) -> (Arc<ContainerInfo>, Duration) {
    let start = Instant::now();
    loop {
        if let Some(info) = r.lookup(id) {
            return (info, start.elapsed());
        }
        let s = r.stats();
        assert!(
            start.elapsed() < limit && s.failed == 0,
            "not resolved after {:?}: {s:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn check(info: &ContainerInfo, id: &str, name: &str, image: &str, digest: &str) {
    assert_eq!(&*info.id, id);
    assert_eq!(info.runtime, Runtime::Podman);
    assert_eq!(info.name.as_deref(), Some(name));
    assert_eq!(info.image.as_deref(), Some(image));
    assert_eq!(info.image_digest.as_deref(), Some(digest));
    assert_eq!(
        info.labels.get("ksight.test").map(String::as_str),
        Some("runtime")
    );
    assert_eq!(
        info.labels
            .get("io.kubernetes.pod.name")
            .map(String::as_str),
        Some("fake-pod")
    );
    let pod = info.pod.as_ref().expect("pod from kubelet's labels");
    assert_eq!(
        (pod.name.as_str(), pod.namespace.as_str()),
        ("fake-pod", "fake-ns")
    );
}

/// Mean time of `n` calls of `f`.
fn mean(n: u32, mut f: impl FnMut(u32)) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed() / n
}

#[test]
fn podman_container_resolves_through_api_and_files() {
    if !is_root() {
        return skip("not root (podman's root store and /proc of its containers need it)");
    }
    let version = match run("podman", &["--version"]) {
        Ok(v) => v,
        Err(e) => return skip(&format!("no podman ({e}); scripts/setup.sh installs it")),
    };
    let Some(busybox) = static_busybox() else {
        return skip("no static busybox for the image's rootfs (package busybox-static)");
    };
    eprintln!("{version}, busybox {}", busybox.display());

    let tag = format!("ksight-runtime-test-{}", std::process::id());
    let image = format!("localhost/{tag}:1");
    let mut cleanup = Cleanup {
        container: tag.clone(),
        image: image.clone(),
        service: None,
    };

    // An image from a rootfs tarball: busybox and the applets used.
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let tarball = dir.path().join("rootfs.tar");
    let tarball = tarball.to_str().unwrap();
    run(
        "tar",
        &["-C", rootfs.to_str().unwrap(), "-cf", tarball, "."],
    )
    .unwrap();
    if let Err(e) = run("podman", &["import", "--quiet", tarball, &image]) {
        return skip(&format!("podman cannot import an image: {e}"));
    }

    // Limits at most the usual hard ones: raising them needs CAP_SYS_RESOURCE,
    // which a sandboxed root may lack. crun refuses hybrid cgroup hosts whose
    // v2 hierarchy has controllers; runc does not, so it is the fallback.
    let run_args = [
        "run",
        "-d",
        "--name",
        &tag,
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--label",
        "ksight.test=runtime",
        "--label",
        "io.kubernetes.pod.name=fake-pod",
        "--label",
        "io.kubernetes.pod.namespace=fake-ns",
        &image,
        "/bin/sleep",
        "600",
    ];
    let mut failures = Vec::new();
    let mut id = None;
    for runtime in [None, Some("runc")] {
        let mut args: Vec<&str> = Vec::new();
        if let Some(r) = runtime {
            args.extend(["--runtime", r]);
        }
        args.extend(run_args);
        match run("podman", &args) {
            Ok(out) => {
                id = out.lines().last().map(str::to_owned);
                break;
            }
            Err(e) => {
                failures.push(e);
                let _ = run("podman", &["rm", "-f", "-t", "0", &tag]);
            }
        }
    }
    let Some(id) = id else {
        return skip(&format!("no container starts: {}", failures.join("; ")));
    };
    for f in &failures {
        eprintln!("(fell back to runc after: {f})");
    }
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let digest = run(
        "podman",
        &["image", "inspect", "--format", "{{.Digest}}", &image],
    )
    .unwrap();
    assert!(digest.starts_with("sha256:"), "{digest}");

    // The id ksight gets is the one its cgroup path names.
    let pid = run("podman", &["inspect", "--format", "{{.State.Pid}}", &tag]).unwrap();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroup
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .any(|p| container_id(p) == Some(&id)),
        "no cgroup path of pid {pid} names {id}:\n{cgroup}"
    );

    // The API route: podman's Docker-compatible service on a private socket.
    let socket = dir.path().join("podman.sock");
    let service = Command::new("podman")
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("podman system service");
    cleanup.service = Some(service);
    let start = Instant::now();
    while UnixStream::connect(&socket).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "podman service did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let api = ContainerResolver::new(RuntimeConfig {
        timeout: Duration::from_secs(10),
        ..RuntimeConfig::api_only(vec![socket.clone()])
    });
    let (info, took) = resolve(&api, &id, Duration::from_secs(30));
    check(&info, &id, &tag, &image, &digest);
    eprintln!(
        "api:   resolved in {took:?}: {}",
        serde_json::to_string(&*info).unwrap()
    );
    assert_eq!(api.take_resolved(), [Arc::clone(&info)]);
    let s = api.stats();
    assert_eq!(
        (s.queued, s.resolved, s.failed, s.errors),
        (1, 1, 0, 0),
        "{s:?}"
    );

    // The on-disk route: containers/storage and podman's bolt database.
    let files = ContainerResolver::new(RuntimeConfig::files_only("/"));
    let (from_files, took) = resolve(&files, &id, Duration::from_secs(10));
    check(&from_files, &id, &tag, &image, &digest);
    eprintln!("files: resolved in {took:?}");
    assert_eq!(*from_files, *info, "both routes say the same");
    assert_eq!(files.stats().errors, 0, "{:?}", files.stats());

    // The event path's cost: a hit, and a miss that queues a request.
    let hit = mean(100_000, |_| {
        assert!(files.lookup(&id).is_some());
    });
    let empty = tempfile::tempdir().unwrap();
    let misses = ContainerResolver::new(RuntimeConfig::files_only(empty.path()));
    let miss = mean(1000, |i| {
        assert!(misses.lookup(&format!("{i:064x}")).is_none());
    });
    eprintln!("lookup: hit {hit:?}, miss (queues a request) {miss:?}");
    assert!(hit < Duration::from_micros(50) && miss < Duration::from_micros(200));

    // A container that is gone is not known, and that is no error.
    drop(cleanup);
    let gone = ContainerResolver::new(RuntimeConfig::files_only("/"));
    gone.lookup(&id);
    let start = Instant::now();
    while gone.stats().failed == 0 {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(gone.lookup(&id), None);
    assert_eq!(gone.stats().errors, 0);
}
