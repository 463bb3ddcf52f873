//! BPF programs loaded by anyone else, from perf's side band: a dummy
//! software event per CPU with `bpf_event` set makes the kernel write a
//! `PERF_RECORD_BPF_EVENT` into its ring at every program load and unload,
//! stamped with the loading task (`sample_id_all`: pid, tid) and the time
//! (CLOCK_MONOTONIC, ksight's clock). Paid only at program loads (which the
//! kernel announces this way to `perf` anyway): no hook on any syscall,
//! nothing that fentry, kprobes or BPF-LSM would need. Rings are read after
//! each poll; nobody waits on them, so the kernel never wakes anyone.
//!
//! The program's info (type, name, creator's uid, maps) is asked by id right
//! after: a program unloaded in between is reported with its id and tag only.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};

use ksight_core::sideband::{BpfProgInfo, RawBpfLoad};

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_DUMMY: u64 = 9;
const PERF_SAMPLE_TID: u64 = 1 << 1;
const PERF_SAMPLE_TIME: u64 = 1 << 2;
/// perf_event_attr's flag bits.
const SAMPLE_ID_ALL: u64 = 1 << 18;
const USE_CLOCKID: u64 = 1 << 25;
const BPF_EVENT: u64 = 1 << 30;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const PERF_RECORD_LOST: u32 = 2;
const PERF_RECORD_BPF_EVENT: u32 = 18;
const PERF_BPF_EVENT_PROG_LOAD: u16 = 1;
/// Data pages per CPU (a record is 40 bytes: 800 loads between two polls).
const PAGES: usize = 8;

/// `struct perf_event_attr` up to PERF_ATTR_SIZE_VER5 (112 bytes; every
/// kernel since 4.1 takes it).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved: u16,
}

struct Ring {
    _fd: OwnedFd,
    base: *mut u8,
    len: usize,
    page: usize,
}

// SAFETY: the mapping belongs to this Ring alone; it is only read and its
// tail written through &mut self.
unsafe impl Send for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: base/len are the mapping made in `open`.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

impl Ring {
    fn open(cpu: i32) -> io::Result<Ring> {
        let attr = PerfEventAttr {
            kind: PERF_TYPE_SOFTWARE,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: PERF_COUNT_SW_DUMMY,
            sample_type: PERF_SAMPLE_TID | PERF_SAMPLE_TIME,
            flags: SAMPLE_ID_ALL | USE_CLOCKID | BPF_EVENT,
            clockid: libc::CLOCK_MONOTONIC,
            ..Default::default()
        };
        // SAFETY: perf_event_open reads one attr of `size` bytes; returns a new fd or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                -1 as libc::pid_t,
                cpu,
                -1 as libc::c_int,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor, ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = page * (1 + PAGES);
        // SAFETY: map the event's ring: a control page and PAGES data pages.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Ring {
            _fd: fd,
            base: base.cast(),
            len,
            page,
        })
    }

    /// Every record written since the last read, each as its bytes.
    fn read(&mut self, mut each: impl FnMut(u32, &[u8])) {
        let size = (self.len - self.page) as u64;
        // SAFETY: data_head (offset 1024) and data_tail (1032) are u64s of the
        // control page, 8-aligned; the kernel writes head, we write tail.
        let head_ptr = unsafe { self.base.add(1024) } as *const u64;
        let tail_ptr = unsafe { self.base.add(1032) } as *mut u64;
        let head = unsafe { std::ptr::read_volatile(head_ptr) };
        fence(Ordering::Acquire);
        let mut tail = unsafe { std::ptr::read_volatile(tail_ptr) };
        let data = unsafe { self.base.add(self.page) };
        let mut rec = Vec::new();
        while tail + 8 <= head {
            let at = |off: u64| ((tail + off) % size) as usize;
            let mut hdr = [0u8; 8];
            for (i, b) in hdr.iter_mut().enumerate() {
                // SAFETY: at() is within the data pages.
                *b = unsafe { *data.add(at(i as u64)) };
            }
            let kind = u32::from_ne_bytes(hdr[..4].try_into().expect("4 bytes"));
            let len = u16::from_ne_bytes([hdr[6], hdr[7]]) as u64;
            if len < 8 || tail + len > head {
                break;
            }
            rec.clear();
            // SAFETY: as above, byte by byte across the wrap.
            rec.extend((0..len).map(|i| unsafe { *data.add(at(i)) }));
            each(kind, &rec);
            tail += len;
        }
        fence(Ordering::Release);
        // SAFETY: see above.
        unsafe { std::ptr::write_volatile(tail_ptr, head.max(tail)) };
    }
}

/// The side band of every CPU.
pub struct BpfWatch {
    rings: std::cell::RefCell<Vec<Ring>>,
    lost: std::cell::Cell<u64>,
    me: u32,
}

impl BpfWatch {
    /// One ring per possible CPU (an offline CPU's is skipped). Errors when
    /// none opens: the kernel lacks `bpf_event` (before 5.1) or perf events.
    pub fn new() -> io::Result<BpfWatch> {
        let cpus = libbpf_rs::num_possible_cpus().unwrap_or(1);
        let mut rings = Vec::new();
        let mut first_err = None;
        for cpu in 0..cpus {
            match Ring::open(cpu as i32) {
                Ok(r) => rings.push(r),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if rings.is_empty() {
            let e = first_err.unwrap_or_else(|| io::Error::other("no CPU"));
            return Err(io::Error::new(
                e.kind(),
                format!("perf_event_open with bpf_event (Linux 5.1+): {e}"),
            ));
        }
        Ok(BpfWatch {
            rings: std::cell::RefCell::new(rings),
            lost: std::cell::Cell::new(0),
            me: std::process::id(),
        })
    }

    /// Programs loaded since the last call (not by ksight), ordered by time.
    pub fn read(&self) -> Vec<RawBpfLoad> {
        let mut out = Vec::new();
        let mut lost = 0u64;
        for ring in self.rings.borrow_mut().iter_mut() {
            ring.read(|kind, rec| match kind {
                PERF_RECORD_BPF_EVENT if rec.len() >= 40 => {
                    let ty = u16::from_ne_bytes([rec[8], rec[9]]);
                    let id = u32::from_ne_bytes(rec[12..16].try_into().expect("4 bytes"));
                    let tag: [u8; 8] = rec[16..24].try_into().expect("8 bytes");
                    let pid = u32::from_ne_bytes(rec[24..28].try_into().expect("4 bytes"));
                    let tid = u32::from_ne_bytes(rec[28..32].try_into().expect("4 bytes"));
                    let ktime = u64::from_ne_bytes(rec[32..40].try_into().expect("8 bytes"));
                    if ty == PERF_BPF_EVENT_PROG_LOAD && pid != self.me {
                        out.push(RawBpfLoad {
                            ktime,
                            pid,
                            tid,
                            id,
                            tag,
                            info: None,
                        });
                    }
                }
                PERF_RECORD_LOST if rec.len() >= 24 => {
                    lost += u64::from_ne_bytes(rec[16..24].try_into().expect("8 bytes"));
                }
                _ => {}
            });
        }
        self.lost.set(self.lost.get() + lost);
        out.sort_by_key(|l| l.ktime);
        for l in &mut out {
            l.info = prog_info(l.id);
        }
        out
    }

    /// Records the kernel could not write into a full ring, so far.
    pub fn lost(&self) -> u64 {
        self.lost.get()
    }
}

/// What the kernel says of a loaded program, by id; `None` when it is gone.
pub fn prog_info(id: u32) -> Option<BpfProgInfo> {
    // SAFETY: returns a new fd or a negative error.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a new descriptor, ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: the kernel fills at most `len` bytes of `info`; no array
    // pointers are set, so it copies no arrays.
    let r = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if r != 0 {
        return None;
    }
    // SAFETY: libbpf returns a static string or null.
    let ty = unsafe { libbpf_sys::libbpf_bpf_prog_type_str(info.type_) };
    let prog_type = if ty.is_null() {
        format!("type {}", info.type_)
    } else {
        unsafe { std::ffi::CStr::from_ptr(ty) }
            .to_string_lossy()
            .into_owned()
    };
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Some(BpfProgInfo {
        prog_type,
        name: String::from_utf8_lossy(&name).into_owned(),
        uid: info.created_by_uid,
        maps: info.nr_map_ids,
        insns: info.xlated_prog_len / 8,
        gpl: info.gpl_compatible() != 0,
    })
}
