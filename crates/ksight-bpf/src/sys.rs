//! Facts of the host read outside BPF: the kernel clocks records are stamped
//! with, securityfs's lockdown and LSM files, the libc that uprobes go on.

use ksight_core::enrich::Clock;

fn clock_ns(id: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer; the ids used
    // here exist on every Linux kernel ksight can run on.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The current offsets between CLOCK_MONOTONIC (BPF's ktime) and the wall and boot clocks.
pub fn clock_now() -> Clock {
    let mono = clock_ns(libc::CLOCK_MONOTONIC);
    let wall = clock_ns(libc::CLOCK_REALTIME);
    let boot = clock_ns(libc::CLOCK_BOOTTIME);
    let mono2 = clock_ns(libc::CLOCK_MONOTONIC);
    let mid = mono + (mono2 - mono) / 2;
    // SAFETY: sysconf has no memory effects.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Clock {
        wall_minus_mono: wall - mid,
        boot_minus_mono: boot - mid,
        clk_tck: if tck > 0 { tck as u64 } else { 100 },
    }
}

/// CLOCK_MONOTONIC now, in ns: comparable with record timestamps.
pub fn ktime_now() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// The contents of securityfs's `lockdown` and `lsm` files, also where
/// securityfs is not mounted (as in many containers and minimal VMs): then a
/// child process mounts it in a private mount namespace of its own, reads the
/// two files and exits, leaving the host's mounts untouched. Needs root.
pub fn read_securityfs() -> Option<(String, String)> {
    let dir = std::path::Path::new("/sys/kernel/security");
    if let (Ok(l), Ok(s)) = (
        std::fs::read_to_string(dir.join("lockdown")),
        std::fs::read_to_string(dir.join("lsm")),
    ) {
        return Some((l, s));
    }
    let mut fds = [0i32; 2];
    // SAFETY: pipe writes two fds into the array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: the child only makes raw system calls on static strings and a
    // stack buffer (no allocation, no locks), then _exits: fork-safe.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe { securityfs_child(fds[1]) }
    }
    // SAFETY: closing our copy of the write end, then reading the read end we own.
    unsafe { libc::close(fds[1]) };
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: reading into a valid stack buffer of the given length.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    // SAFETY: closing our fd and reaping our own child.
    unsafe {
        libc::close(fds[0]);
        if pid > 0 {
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    let text = String::from_utf8(out).ok()?;
    let (lockdown, lsm) = text.split_once('\0')?;
    (!lockdown.is_empty()).then(|| (lockdown.to_string(), lsm.to_string()))
}

/// In the forked child: private mount namespace, mount securityfs, send
/// "lockdown\0lsm" down the pipe, exit.
unsafe fn securityfs_child(out: i32) -> ! {
    let target = c"/sys/kernel/security";
    let fstype = c"securityfs";
    if libc::unshare(libc::CLONE_NEWNS) != 0
        || libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        || libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
    {
        libc::_exit(1);
    }
    let mut buf = [0u8; 512];
    let files = [
        c"/sys/kernel/security/lockdown",
        c"/sys/kernel/security/lsm",
    ];
    for (i, path) in files.into_iter().enumerate() {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
        if fd >= 0 {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n > 0 {
                libc::write(out, buf.as_ptr().cast(), n as usize);
            }
            libc::close(fd);
        }
        if i == 0 {
            libc::write(out, c"".as_ptr().cast(), 1);
        }
    }
    libc::_exit(0)
}

/// The libc this process runs with: where uprobes on libc functions go.
pub fn libc_path() -> Option<std::path::PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
        .map(std::path::PathBuf::from)
}

/// SIGKILL to `pid` through a pidfd (5.3+), if `is_it()`, asked once the
/// pidfd is open, says the pid is still the process meant: from then on the
/// pidfd names that process, so a pid reused afterwards is never signalled.
pub fn pidfd_kill(pid: u32, is_it: impl FnOnce() -> bool) -> ksight_core::enforce::KillOutcome {
    use ksight_core::enforce::KillOutcome;
    // SAFETY: pidfd_open(2) takes a pid and flags, and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => KillOutcome::Gone,
            _ => KillOutcome::Failed(format!("pidfd_open: {e}")),
        };
    }
    // SAFETY: fd is a new fd this function owns from here.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    if !is_it() {
        return KillOutcome::Gone;
    }
    // SAFETY: pidfd_send_signal(2) on an open pidfd, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        return KillOutcome::Killed;
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ESRCH) => KillOutcome::Gone,
        _ => KillOutcome::Failed(format!("pidfd_send_signal: {e}")),
    }
}
