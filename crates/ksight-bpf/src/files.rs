//! The file watcher: fanotify marks on the watched (sensitive) files and
//! directories, read after each poll. No BPF: a file nobody watches costs
//! nothing, a watched one an event in the kernel's queue per open or change.
//!
//! One fanotify group in FID mode with directory file handles and names
//! (`FAN_REPORT_DFID_NAME`, Linux 5.9+), so that one group reports opens and
//! closes-after-write of files as well as creations, removals and renames in
//! directories, each as (directory handle, name). Marks:
//! - a watched file: opens (when asked), closes after writing, attribute changes;
//! - a watched directory (and its subdirectories, three levels deep): the same
//!   for what is in it, and its entries created, removed, renamed;
//! - the directories above a watched path that may see it appear, vanish or be
//!   replaced (its parent and grandparent, a directory a wildcard lists, the
//!   deepest one that exists of a path that does not yet): their entries only.
//!   An entry event there re-arms every watch (an editor that writes
//!   /etc/shadow by renaming a new file over it: the new inode is marked).
//!
//! Renames come as one event with both names (`FAN_RENAME`, 5.17+), else as a
//! pair of moved-from/moved-to events, paired when consecutive and from one
//! process. Directory handles are resolved to paths through handles taken at
//! arm time (so a directory removed before its events are read still names
//! them), else `open_by_handle_at`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ksight_core::files::{wildcard, FileOp, FileStat, RawFileEvent, WatchEntry};
use ksight_core::text::Text;

/// Changes to a file (or, with `FAN_EVENT_ON_CHILD`, to what is in a directory).
const CHANGES: u64 = libc::FAN_CLOSE_WRITE | libc::FAN_ATTRIB;
/// A directory's entries.
const ENTRIES: u64 = libc::FAN_CREATE | libc::FAN_DELETE | libc::FAN_ONDIR;
const MOVES: u64 = libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO;
/// name_to_handle_at: a handle to identify, not to open (include/uapi/linux/fcntl.h).
const AT_HANDLE_FID: libc::c_long = 0x200;
/// How deep below a watched directory subdirectories are watched.
const DEPTH: usize = 3;
/// At most this many marks (each pins an inode in the kernel).
const MAX_MARKS: usize = 4096;

pub struct FileWatch {
    inner: RefCell<Inner>,
}

struct Inner {
    fd: OwnedFd,
    watches: Vec<(WatchEntry, Arc<str>)>,
    /// `FAN_RENAME` works (5.17+).
    rename: bool,
    /// Per filesystem (fsid), a directory on it: `open_by_handle_at` needs one.
    mounts: HashMap<[i32; 2], OwnedFd>,
    /// Directory handles (fsid + handle bytes) to paths, from arm time and lookups.
    dirs: HashMap<Vec<u8>, PathBuf>,
    /// Marked in the last arming, and with what.
    marked: HashMap<PathBuf, u64>,
    /// Marks the kernel refused, by path, with why (said once).
    refused: HashMap<PathBuf, String>,
    overflows: u64,
    me: u32,
    buf: Vec<u8>,
    /// A moved-from event waiting for its moved-to (kernels before 5.17).
    moved_from: Option<(u32, PathBuf)>,
    /// Also watch in other mount namespaces (containers), through the root
    /// of one process of each (`/proc/<pid>/root`).
    containers: bool,
    roots: Vec<PathBuf>,
    scanned: Option<std::time::Instant>,
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

fn fsid_of(p: &Path) -> io::Result<[i32; 2]> {
    let c = cstr(p)?;
    // SAFETY: statfs fills one struct statfs through a valid pointer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsid_t is two C ints (its field is private in libc).
    Ok(unsafe { std::mem::transmute::<libc::fsid_t, [i32; 2]>(st.f_fsid) })
}

/// The handle of `p`, keyed as fanotify reports it (fsid, then
/// `struct file_handle` without its header's padding: bytes, type, handle).
fn handle_key(p: &Path, fsid: [i32; 2]) -> Option<Vec<u8>> {
    let c = cstr(p).ok()?;
    let mut buf = [0u8; 8 + 128];
    buf[..4].copy_from_slice(&128u32.to_ne_bytes());
    let mut mount_id: libc::c_int = 0;
    // AT_HANDLE_FID (6.5+): the handle fanotify reports, also on filesystems
    // whose handles cannot be opened (overlayfs: containers); before, the plain one
    let mut r = -1;
    for flags in [AT_HANDLE_FID, 0] {
        buf[..4].copy_from_slice(&128u32.to_ne_bytes());
        // SAFETY: name_to_handle_at writes a struct file_handle of at most
        // handle_bytes (128, MAX_HANDLE_SZ) after its 8-byte header, and an int.
        r = unsafe {
            libc::syscall(
                libc::SYS_name_to_handle_at,
                libc::AT_FDCWD,
                c.as_ptr(),
                buf.as_mut_ptr(),
                &mut mount_id,
                flags,
            )
        };
        if r == 0 {
            break;
        }
    }
    if r != 0 {
        return None;
    }
    let n = u32::from_ne_bytes(buf[..4].try_into().ok()?) as usize;
    let mut key = Vec::with_capacity(16 + n);
    key.extend_from_slice(&fsid[0].to_ne_bytes());
    key.extend_from_slice(&fsid[1].to_ne_bytes());
    key.extend_from_slice(&buf[..8 + n.min(128)]);
    Some(key)
}

fn now_ns() -> u64 {
    crate::sys::ktime_now()
}

fn stat(p: &Path) -> Option<FileStat> {
    let m = std::fs::symlink_metadata(p).ok()?;
    Some(FileStat {
        size: m.size(),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        inode: m.ino(),
    })
}

fn has_wildcard(s: &OsStr) -> bool {
    s.as_bytes().iter().any(|&b| b == b'*' || b == b'?')
}

impl FileWatch {
    /// A fanotify group with every watch armed. Errors: the kernel lacks
    /// fanotify or `FAN_REPORT_DFID_NAME` (before 5.9), or ksight lacks
    /// CAP_SYS_ADMIN.
    /// `containers`: the same paths in every other mount namespace too.
    pub fn new(watches: &[WatchEntry], containers: bool) -> io::Result<FileWatch> {
        Self::with(watches, true, containers)
    }

    /// `whole_renames`: ask for FAN_RENAME where the kernel has it (false:
    /// moved-from/moved-to halves, as before 5.17; for tests).
    fn with(
        watches: &[WatchEntry],
        whole_renames: bool,
        containers: bool,
    ) -> io::Result<FileWatch> {
        let flags = libc::FAN_CLASS_NOTIF
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK
            | libc::FAN_REPORT_DFID_NAME;
        // SAFETY: fanotify_init takes flags and returns a new fd or -1.
        let fd = unsafe {
            libc::fanotify_init(flags, (libc::O_RDONLY | libc::O_LARGEFILE) as libc::c_uint)
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            let why = match e.raw_os_error() {
                Some(libc::EINVAL) => {
                    "this kernel's fanotify has no FAN_REPORT_DFID_NAME (Linux 5.9+)"
                }
                Some(libc::EPERM) => "fanotify needs CAP_SYS_ADMIN",
                Some(libc::ENOSYS) => "this kernel has no fanotify (CONFIG_FANOTIFY)",
                _ => "fanotify_init failed",
            };
            return Err(io::Error::new(e.kind(), format!("{why}: {e}")));
        }
        // SAFETY: fd is a new descriptor this function owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut inner = Inner {
            fd,
            watches: watches
                .iter()
                .map(|w| (w.clone(), Arc::from(w.pattern.to_string_lossy().as_ref())))
                .collect(),
            rename: whole_renames,
            mounts: HashMap::new(),
            dirs: HashMap::new(),
            marked: HashMap::new(),
            refused: HashMap::new(),
            overflows: 0,
            me: std::process::id(),
            buf: vec![0; 64 << 10],
            moved_from: None,
            containers,
            roots: Vec::new(),
            scanned: None,
        };
        if containers {
            inner.roots = other_roots();
            inner.scanned = Some(std::time::Instant::now());
        }
        inner.arm();
        Ok(FileWatch {
            inner: RefCell::new(inner),
        })
    }

    /// Every event queued since the last call.
    pub fn read(&self) -> Vec<RawFileEvent> {
        let mut out = Vec::new();
        self.inner.borrow_mut().read(&mut out);
        out
    }

    /// Queue overflows so far (each lost at least one event).
    pub fn overflows(&self) -> u64 {
        self.inner.borrow().overflows
    }

    /// Paths marked now.
    pub fn marks(&self) -> usize {
        self.inner.borrow().marked.len()
    }

    /// Marks the kernel refused (path, why).
    pub fn refused(&self) -> Vec<(PathBuf, String)> {
        let i = self.inner.borrow();
        let mut v: Vec<_> = i
            .refused
            .iter()
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        v.sort();
        v
    }

    /// Renames come whole (`FAN_RENAME`, 5.17+), not as two halves.
    pub fn whole_renames(&self) -> bool {
        self.inner.borrow().rename
    }
}

impl Inner {
    /// Mark every watch anew: a path whose inode was replaced gets the new one
    /// (marking an inode again with the same mask changes nothing).
    fn arm(&mut self) {
        self.marked.clear();
        if self.dirs.len() > 4 * MAX_MARKS {
            self.dirs.clear();
        }
        let watches: Vec<WatchEntry> = self.watches.iter().map(|(w, _)| w.clone()).collect();
        // the host's first: a directory both see is named by its host path
        let roots: Vec<PathBuf> = std::iter::once(PathBuf::from("/"))
            .chain(self.roots.iter().cloned())
            .collect();
        for root in &roots {
            for w in &watches {
                let parts: Vec<OsString> = w.parts().into_iter().map(OsStr::to_owned).collect();
                self.walk(root, root, &parts, w.opens);
            }
        }
    }

    /// From `dir` (which exists), the rest of a watch's path.
    fn walk(&mut self, root: &Path, dir: &Path, rest: &[OsString], opens: bool) {
        let Some((comp, tail)) = rest.split_first() else {
            return;
        };
        let glob = has_wildcard(comp);
        let names: Vec<OsString> = if glob {
            let mut v: Vec<OsString> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| wildcard(comp.as_bytes(), n.as_bytes()))
                .collect();
            v.sort();
            v
        } else {
            vec![comp.clone()]
        };
        let mut missing = names.is_empty();
        for name in names {
            let p = dir.join(&name);
            match std::fs::metadata(&p) {
                Ok(m) if tail.is_empty() => self.target(&p, m.is_dir(), opens, 0),
                Ok(m) if m.is_dir() => self.walk(root, &p, tail, opens),
                Ok(_) => {}
                Err(_) => missing = true,
            }
        }
        // where the next step may appear, vanish or be replaced
        if dir != root && (glob || missing || rest.len() <= 2) {
            self.mark(dir, ENTRIES | self.moves());
        }
    }

    fn moves(&self) -> u64 {
        if self.rename {
            libc::FAN_RENAME
        } else {
            MOVES
        }
    }

    fn target(&mut self, p: &Path, dir: bool, opens: bool, depth: usize) {
        let open = if opens { libc::FAN_OPEN } else { 0 };
        if !dir {
            self.mark(p, CHANGES | open);
            return;
        }
        let mask = CHANGES | open | ENTRIES | self.moves() | libc::FAN_EVENT_ON_CHILD;
        self.mark(p, mask);
        if depth >= DEPTH {
            return;
        }
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        subdirs.sort();
        for s in subdirs {
            self.target(&s, true, opens, depth + 1);
        }
    }

    fn mark(&mut self, p: &Path, mut mask: u64) {
        let old = self.marked.get(p).copied().unwrap_or(0);
        if old & mask == mask {
            self.remember_dir(p);
            return;
        }
        if self.marked.len() >= MAX_MARKS && old == 0 {
            self.refused
                .entry(p.to_path_buf())
                .or_insert_with(|| format!("more than {MAX_MARKS} marks"));
            return;
        }
        let Ok(c) = cstr(p) else { return };
        loop {
            // SAFETY: fanotify_mark reads a NUL-terminated path.
            let r = unsafe {
                libc::fanotify_mark(
                    self.fd.as_raw_fd(),
                    libc::FAN_MARK_ADD,
                    mask,
                    libc::AT_FDCWD,
                    c.as_ptr(),
                )
            };
            if r == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) && mask & libc::FAN_RENAME != 0 {
                // before 5.17: renames as moved-from/moved-to pairs
                self.rename = false;
                mask = (mask & !libc::FAN_RENAME) | MOVES;
                continue;
            }
            if e.raw_os_error() != Some(libc::ENOENT) {
                self.refused
                    .entry(p.to_path_buf())
                    .or_insert_with(|| e.to_string());
            }
            return;
        }
        self.marked.insert(p.to_path_buf(), old | mask);
        self.remember_dir(p);
    }

    /// A marked directory's handle, so that its events name it even after it
    /// is gone; and a way into its filesystem for handles not known.
    fn remember_dir(&mut self, p: &Path) {
        if !p.is_dir() {
            return;
        }
        let Ok(fsid) = fsid_of(p) else { return };
        if let std::collections::hash_map::Entry::Vacant(v) = self.mounts.entry(fsid) {
            if let Ok(f) = std::fs::File::open(p) {
                v.insert(OwnedFd::from(f));
            }
        }
        if let Some(key) = handle_key(p, fsid) {
            self.dirs.entry(key).or_insert_with(|| p.to_path_buf());
        }
    }

    /// The directory of a handle fanotify reported: `key` is fsid + handle.
    fn resolve(&mut self, key: &[u8]) -> Option<PathBuf> {
        if let Some(p) = self.dirs.get(key) {
            return Some(p.clone());
        }
        let fsid = [
            i32::from_ne_bytes(key.get(0..4)?.try_into().ok()?),
            i32::from_ne_bytes(key.get(4..8)?.try_into().ok()?),
        ];
        let mount = self.mounts.get(&fsid)?.as_raw_fd();
        let mut handle = key.get(8..)?.to_vec();
        if handle.len() < 8 {
            return None;
        }
        // SAFETY: handle holds a struct file_handle (header and its bytes, as
        // the kernel reported them); open_by_handle_at reads it and returns a
        // new fd or -1.
        let fd = unsafe {
            libc::open_by_handle_at(
                mount,
                handle.as_mut_ptr().cast(),
                libc::O_PATH | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: a new descriptor, ours to close.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let p = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        if p.as_os_str().as_bytes().ends_with(b" (deleted)") {
            return None;
        }
        if self.dirs.len() < 4 * MAX_MARKS {
            self.dirs.insert(key.to_vec(), p.clone());
        }
        Some(p)
    }

    /// A path under a watched container root: the pid whose root it is, and
    /// the path as that mount namespace sees it.
    fn in_root(&self, p: &Path) -> Option<(u32, PathBuf)> {
        let root = self.roots.iter().find(|r| p.starts_with(r))?;
        let pid = root.parent()?.file_name()?.to_str()?.parse().ok()?;
        Some((pid, Path::new("/").join(p.strip_prefix(root).ok()?)))
    }

    fn watch_of(&self, p: &Path) -> Option<Arc<str>> {
        let inner = self.in_root(p);
        let p = inner.as_ref().map_or(p, |(_, q)| q.as_path());
        self.watches
            .iter()
            .find(|(w, _)| w.covers(p))
            .map(|(_, name)| name.clone())
    }

    fn read(&mut self, out: &mut Vec<RawFileEvent>) {
        let first = out.len();
        let mut rearm = false;
        // containers come and go: their roots again every two seconds
        if self.containers
            && self
                .scanned
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(2))
        {
            self.scanned = Some(std::time::Instant::now());
            let roots = other_roots();
            if roots != self.roots {
                self.roots = roots;
                rearm = true;
            }
        }
        loop {
            // SAFETY: read into our buffer, at most its length.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                )
            };
            if n <= 0 {
                break;
            }
            let buf = std::mem::take(&mut self.buf);
            let now = now_ns();
            let mut at = 0usize;
            let n = n as usize;
            while at + 24 <= n {
                let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
                if len < 24 || at + len > n {
                    break;
                }
                let ev = &buf[at..at + len];
                at += len;
                rearm |= self.event(ev, now, out);
            }
            self.buf = buf;
        }
        self.flush_moved_from(out, now_ns());
        // paths in a container, as the container sees them
        for e in &mut out[first..] {
            let path = Path::new(OsStr::from_bytes(e.path.as_bytes())).to_path_buf();
            let Some((pid, inner)) = self.in_root(&path) else {
                continue;
            };
            e.root_pid = Some(pid);
            e.path = Text::new(inner.into_os_string().into_vec());
            for t in [&mut e.from, &mut e.to].into_iter().flatten() {
                let p = Path::new(OsStr::from_bytes(t.as_bytes())).to_path_buf();
                if let Some((_, q)) = self.in_root(&p) {
                    *t = Text::new(q.into_os_string().into_vec());
                }
            }
        }
        if rearm {
            self.arm();
        }
    }

    /// One event (metadata and info records); whether the watches need re-arming.
    fn event(&mut self, ev: &[u8], now: u64, out: &mut Vec<RawFileEvent>) -> bool {
        let meta_len = u16::from_ne_bytes([ev[6], ev[7]]) as usize;
        let mask = u64::from_ne_bytes(ev[8..16].try_into().expect("8 bytes"));
        let fd = i32::from_ne_bytes(ev[16..20].try_into().expect("4 bytes"));
        let pid = i32::from_ne_bytes(ev[20..24].try_into().expect("4 bytes")) as u32;
        if fd >= 0 {
            // not in FID mode; never expected, but never leaked
            // SAFETY: the kernel gave us this descriptor.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        if mask & libc::FAN_Q_OVERFLOW != 0 {
            self.overflows += 1;
            return false;
        }
        // the names it carries: (info type, directory, name)
        let mut names: Vec<(u8, PathBuf)> = Vec::with_capacity(2);
        let mut at = meta_len.max(24);
        while at + 4 <= ev.len() {
            let kind = ev[at];
            let len = u16::from_ne_bytes([ev[at + 2], ev[at + 3]]) as usize;
            if len < 4 || at + len > ev.len() {
                break;
            }
            let rec = &ev[at + 4..at + len];
            at += len;
            if !matches!(
                kind,
                libc::FAN_EVENT_INFO_TYPE_DFID_NAME
                    | libc::FAN_EVENT_INFO_TYPE_DFID
                    | libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
                    | libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME
            ) || rec.len() < 16
            {
                continue;
            }
            // fsid (8), then struct file_handle: handle_bytes (4), type (4), bytes
            let hb = u32::from_ne_bytes(rec[8..12].try_into().expect("4 bytes")) as usize;
            let end = (16 + hb).min(rec.len());
            let key = &rec[..end];
            let name = &rec[end..];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            let Some(dir) = self.resolve(key) else {
                continue;
            };
            let path = if name.is_empty() || name == b"." {
                dir
            } else {
                dir.join(OsStr::from_bytes(name))
            };
            names.push((kind, path));
        }
        if pid == self.me {
            return false;
        }
        let is_dir = mask & libc::FAN_ONDIR != 0;
        let entry = mask & (libc::FAN_CREATE | libc::FAN_DELETE | libc::FAN_RENAME | MOVES) != 0;
        let named = |t: u8| names.iter().find(|(k, _)| *k == t).map(|(_, p)| p.clone());
        if mask & libc::FAN_RENAME != 0 {
            let from = named(libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME);
            let to = named(libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME);
            let watched = to
                .as_deref()
                .and_then(|p| Some((p, self.watch_of(p)?)))
                .or_else(|| from.as_deref().and_then(|p| Some((p, self.watch_of(p)?))));
            if let Some((path, watch)) = watched {
                out.push(RawFileEvent {
                    ktime: now,
                    pid,
                    op: FileOp::Rename,
                    path: Text::new(path.as_os_str().as_bytes()),
                    from: from.as_ref().map(|p| Text::new(p.as_os_str().as_bytes())),
                    to: to.as_ref().map(|p| Text::new(p.as_os_str().as_bytes())),
                    dir: is_dir,
                    watch,
                    stat: to.as_deref().and_then(stat),
                    root_pid: None,
                });
            }
            return true;
        }
        let Some(path) = named(libc::FAN_EVENT_INFO_TYPE_DFID_NAME)
            .or_else(|| named(libc::FAN_EVENT_INFO_TYPE_DFID))
        else {
            return entry;
        };
        if mask & libc::FAN_MOVED_FROM != 0 {
            self.flush_moved_from(out, now);
            self.moved_from = Some((pid, path));
            return true;
        }
        if mask & libc::FAN_MOVED_TO != 0 {
            let from = match self.moved_from.take() {
                Some((p, from)) if p == pid => Some(from),
                other => {
                    self.moved_from = other;
                    self.flush_moved_from(out, now);
                    None
                }
            };
            let watch = self
                .watch_of(&path)
                .or_else(|| from.as_deref().and_then(|p| self.watch_of(p)));
            if let Some(watch) = watch {
                out.push(RawFileEvent {
                    ktime: now,
                    pid,
                    op: FileOp::Rename,
                    path: Text::new(path.as_os_str().as_bytes()),
                    from: from.map(|p| Text::new(p.into_os_string().into_vec())),
                    to: Some(Text::new(path.as_os_str().as_bytes())),
                    dir: is_dir,
                    watch,
                    stat: stat(&path),
                    root_pid: None,
                });
            }
            return true;
        }
        self.flush_moved_from(out, now);
        // the kernel merges events on one name that follow each other
        // (created, then written and closed): one event per bit, in the order
        // they can happen
        let ops = [
            (libc::FAN_CREATE, FileOp::Create),
            (libc::FAN_OPEN, FileOp::Open),
            (libc::FAN_CLOSE_WRITE, FileOp::Write),
            (libc::FAN_ATTRIB, FileOp::Attrib),
            (libc::FAN_DELETE, FileOp::Delete),
        ];
        let Some(watch) = self.watch_of(&path) else {
            return entry;
        };
        let st = if mask & libc::FAN_DELETE != 0 {
            None
        } else {
            stat(&path)
        };
        let bytes = Text::new(path.into_os_string().into_vec());
        for (bit, op) in ops {
            // a directory's own opens (a listing) are not file opens
            if mask & bit == 0 || (op == FileOp::Open && is_dir) {
                continue;
            }
            out.push(RawFileEvent {
                ktime: now,
                pid,
                op,
                path: bytes.clone(),
                from: None,
                to: None,
                dir: is_dir,
                watch: watch.clone(),
                stat: st,
                root_pid: None,
            });
        }
        entry
    }

    /// A moved-from with no moved-to after it: moved out of the watched places.
    fn flush_moved_from(&mut self, out: &mut Vec<RawFileEvent>, now: u64) {
        let Some((pid, from)) = self.moved_from.take() else {
            return;
        };
        if let Some(watch) = self.watch_of(&from) {
            out.push(RawFileEvent {
                ktime: now,
                pid,
                op: FileOp::Rename,
                path: Text::new(from.as_os_str().as_bytes()),
                from: Some(Text::new(from.into_os_string().into_vec())),
                to: None,
                dir: false,
                watch,
                stat: None,
                root_pid: None,
            });
        }
    }
}

/// The root of one process of each mount namespace other than ksight's
/// (`/proc/<pid>/root`, the lowest pid of each), at most 256: containers, and
/// services with a namespace of their own (whose files are mostly the
/// host's: a directory both see is named by its host path).
fn other_roots() -> Vec<PathBuf> {
    let mine = std::fs::metadata("/proc/self/ns/mnt").map_or(0, |m| m.ino());
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let mut seen = std::collections::HashSet::from([mine]);
    pids.into_iter()
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/mnt")).is_ok_and(|m| seen.insert(m.ino()))
        })
        .take(256)
        .map(|pid| PathBuf::from(format!("/proc/{pid}/root")))
        .collect()
}

/// Does this kernel give ksight what the file watcher needs? For the doctor:
/// a group in FID mode, a mark on `probe` (a directory), whether renames come whole.
pub fn probe(dir: &Path) -> io::Result<bool> {
    let w = FileWatch::new(
        &[WatchEntry {
            pattern: dir.to_path_buf(),
            opens: false,
        }],
        false,
    )?;
    if let Some((p, e)) = w.refused().into_iter().next() {
        return Err(io::Error::other(format!("marking {}: {e}", p.display())));
    }
    Ok(w.whole_renames())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(dir: &Path, whole: bool) -> FileWatch {
        let w = WatchEntry::parse(dir.to_str().unwrap(), false).unwrap();
        FileWatch::with(&[w], whole, false).expect("fanotify (these tests run as root)")
    }

    fn sh(script: &str) {
        let st = std::process::Command::new("sh")
            .args(["-c", script])
            .status()
            .unwrap();
        assert!(st.success(), "{script}");
    }

    fn ops(evs: &[RawFileEvent]) -> Vec<(FileOp, Option<String>, Option<String>)> {
        evs.iter()
            .map(|e| {
                (
                    e.op,
                    e.from.as_ref().map(|t| t.to_string()),
                    e.to.as_ref().map(|t| t.to_string()),
                )
            })
            .collect()
    }

    /// Both ways of reporting a rename give one event with both names (the
    /// halves are paired: consecutive, one process).
    #[test]
    fn renames_whole_or_in_halves_are_one_event_with_both_names() {
        for whole in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let w = watch(dir.path(), whole);
            let (a, b) = (dir.path().join("a"), dir.path().join("b"));
            // by another process: ksight's own accesses are not reported
            sh(&format!(
                "echo x > {0}; mv {0} {1}",
                a.display(),
                b.display()
            ));
            let got = ops(&w.read());
            let (a, b) = (a.display().to_string(), b.display().to_string());
            assert_eq!(
                got,
                [
                    (FileOp::Create, None, None),
                    (FileOp::Write, None, None),
                    (FileOp::Rename, Some(a), Some(b))
                ],
                "whole renames asked: {whole}"
            );
            // moved out to a place not watched: the old name only, halves or not
            let out = tempfile::tempdir().unwrap();
            sh(&format!(
                "mv {} {}",
                dir.path().join("b").display(),
                out.path().join("c").display()
            ));
            let got = w.read();
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0].op, FileOp::Rename);
            assert_eq!(
                got[0].path.to_string(),
                dir.path().join("b").display().to_string()
            );
        }
    }

    #[test]
    fn ksight_s_own_accesses_are_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let w = watch(dir.path(), true);
        std::fs::write(dir.path().join("mine"), "x").unwrap();
        assert!(w.read().is_empty());
    }
}
