//! Reading the kernel clocks ksight's records are stamped with.

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
