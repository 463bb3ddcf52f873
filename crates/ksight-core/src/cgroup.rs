//! cgroup v2 attribution: container ids named by cgroup paths, the cgroup2 mount point, and
//! resolving the cgroup id the kernel reports (`bpf_get_current_cgroup_id`) back to a path.
//!
//! Invariants: nothing here panics on any input; the resolver's filesystem walk is bounded in
//! depth, directory count and frequency, and treats directories vanishing mid-walk as normal,
//! since cgroups come and go constantly on container hosts.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAX_DEPTH: usize = 32;
const MAX_DIRS: usize = 100_000;
const MAX_CACHE: usize = 65_536;
const DEFAULT_MIN_RESCAN: Duration = Duration::from_secs(1);

/// The container id a cgroup path names, if any: a 64-digit lowercase hex component, alone
/// (`/docker/<id>`, `/kubepods/burstable/pod<uid>/<id>`) or after the last `-` or `:` of a
/// component, minus an optional `.scope` (`docker-<id>.scope`, `cri-containerd-<id>.scope`,
/// `crio-<id>.scope`, `libpod-<id>.scope`, `...pod<uid>.slice:cri-containerd:<id>`).
/// Returns the last such id, so nested containers resolve to the innermost.
///
/// `crio-conmon-<id>.scope` and `libpod-conmon-<id>.scope` are not matched: they hold the
/// runtime's monitor process, which runs outside the container.
pub fn container_id(cgroup_path: &str) -> Option<&str> {
    cgroup_path.rsplit('/').find_map(|component| {
        let name = component.strip_suffix(".scope").unwrap_or(component);
        let (prefix, id) = name.rsplit_once(['-', ':']).unwrap_or(("", name));
        (is_container_id(id) && !prefix.ends_with("conmon")).then_some(id)
    })
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Find the cgroup2 mount point in a mountinfo file (fields: the 5th is the mount point, the fs
/// type follows " - "). Works on hybrid hosts, where cgroup2 sits at `/sys/fs/cgroup/unified`
/// beside v1 controllers. If cgroup2 is mounted several times, a mount of the hierarchy's root
/// wins over a bind mount of a subtree, as only the former yields full paths.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut subtree = None;
    for line in mountinfo.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(root), Some(mount_point)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        // The optional fields before " - " vary in number, so the separator is searched for.
        if fields.skip_while(|f| *f != "-").nth(1) != Some("cgroup2") {
            continue;
        }
        let mount_point = unescape_octal(mount_point);
        if root == "/" {
            return Some(mount_point);
        }
        subtree.get_or_insert(mount_point);
    }
    subtree
}

/// Undoes the kernel's `\ooo` escaping of space, tab, newline and backslash in mountinfo paths.
/// The result may not be UTF-8, hence bytes rather than `String`.
pub fn unescape_octal(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let escaped = if c == b'\\' {
            b.get(i + 1..i + 4).and_then(octal_byte)
        } else {
            None
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

fn octal_byte(digits: &[u8]) -> Option<u8> {
    digits.iter().try_fold(0u8, |acc, &d| {
        let d = d.checked_sub(b'0').filter(|d| *d < 8)?;
        acc.checked_mul(8)?.checked_add(d)
    })
}

/// Resolves a cgroup v2 id (which equals the inode number of the cgroup's directory in
/// cgroupfs; the root cgroup's is 1) into its path relative to the cgroup2 mount
/// (`"/"` for the root, `"/system.slice/foo.service"` otherwise).
#[derive(Debug)]
pub struct CgroupResolver {
    mount: Option<PathBuf>,
    /// Entries are never evicted individually: events often arrive after their cgroup is gone
    /// (short-lived containers), and 64-bit kernfs ids are not reused, so an old entry stays
    /// correct. Only the size bound clears it.
    cache: HashMap<u64, Arc<str>>,
    last_scan: Option<Instant>,
    min_rescan: Duration,
    /// The largest id a walk found or was asked for: kernfs ids only grow, so
    /// a larger one is a cgroup made since (a new container), worth a walk
    /// at once; a smaller unknown one is gone, and waits for the throttle.
    max_id: u64,
    /// Tree walks so far.
    walks: u64,
}

impl CgroupResolver {
    pub fn new(mount: Option<PathBuf>) -> Self {
        Self {
            mount,
            cache: HashMap::new(),
            last_scan: None,
            min_rescan: DEFAULT_MIN_RESCAN,
            max_id: 0,
            walks: 0,
        }
    }

    /// Mount from `cgroup2_mount` on the file's content; `None` if unreadable or absent.
    pub fn from_mountinfo_file(path: &Path) -> Self {
        // Lossy: the kernel does not escape non-UTF-8 bytes, and one odd unrelated mount line
        // must not hide the cgroup2 one.
        let mount = std::fs::read(path)
            .ok()
            .and_then(|b| cgroup2_mount(&String::from_utf8_lossy(&b)));
        Self::new(mount)
    }

    pub fn mount(&self) -> Option<&Path> {
        self.mount.as_deref()
    }

    /// The kernel made cgroup `id` at `path` (cgroup.bpf.c): known before
    /// any event made in it, so it stays named once removed.
    pub fn learn(&mut self, id: u64, path: &str) {
        if self.cache.len() >= MAX_CACHE && !self.cache.contains_key(&id) {
            self.cache.clear();
        }
        self.max_id = self.max_id.max(id);
        self.cache.insert(id, Arc::from(path));
    }

    /// Minimum interval between two tree walks triggered by cache misses.
    pub fn set_min_rescan(&mut self, interval: Duration) {
        self.min_rescan = interval;
    }

    /// Cached; on a miss, rescans the whole tree at once for an id newer than any seen (a
    /// cgroup created since the last walk), else at most once per `min_rescan`, so a storm
    /// of unknown ids does not walk the tree per event. `None` if still unknown after that.
    pub fn path(&mut self, id: u64) -> Option<Arc<str>> {
        if let Some(path) = self.cache.get(&id) {
            return Some(Arc::clone(path));
        }
        let mount = self.mount.as_deref()?;
        let newer = id > self.max_id;
        if !newer
            && self
                .last_scan
                .is_some_and(|t| t.elapsed() < self.min_rescan)
        {
            return None;
        }
        self.last_scan = Some(Instant::now());
        self.walks += 1;
        // asked once, a new id that the walk does not find waits like the others
        self.max_id = self.max_id.max(id);
        let max_id = &mut self.max_id;

        let cache = &mut self.cache;
        // Kept apart from the cache because a tree larger than the bound clears the cache mid-walk.
        let mut hit = None;
        walk(mount, |ino, path| {
            if ino == id {
                hit = Some(Arc::clone(&path));
            }
            *max_id = (*max_id).max(ino);
            if cache.len() >= MAX_CACHE && !cache.contains_key(&ino) {
                cache.clear();
            }
            cache.insert(ino, path);
        });
        if let Some(path) = &hit {
            cache.insert(id, Arc::clone(path));
        }
        hit
    }
}

/// Visits `(inode, path relative to mount)` for the mount and its subdirectories, bounded by
/// `MAX_DEPTH` and `MAX_DIRS`. Unreadable or vanished directories are skipped, not errors.
fn walk(mount: &Path, mut visit: impl FnMut(u64, Arc<str>)) {
    let Ok(meta) = std::fs::metadata(mount) else {
        return;
    };
    visit(meta.ino(), Arc::from("/"));
    let mut dirs = 1;
    let mut stack = vec![(mount.to_path_buf(), String::new(), 0)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // DirEntry::metadata does not follow symlinks, so a link cannot make the walk loop.
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_dir() {
                continue;
            }
            if dirs >= MAX_DIRS {
                return;
            }
            dirs += 1;
            let child = format!("{rel}/{}", entry.file_name().to_string_lossy());
            visit(meta.ino(), Arc::from(child.as_str()));
            if depth + 1 < MAX_DEPTH {
                stack.push((entry.path(), child, depth + 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;

    const ID: &str = "4d1c0e4f1b3a5e9c8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn container_id_runtime_patterns() {
        let uid = "pod0b8e9c2a-1f2d-4e5a-9b7c-3d2e1f0a9b8c";
        let uid_ = "pod0b8e9c2a_1f2d_4e5a_9b7c_3d2e1f0a9b8c";
        let cases = [
            // docker, cgroupfs and systemd drivers
            format!("/docker/{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            // containerd under kubelet, systemd driver and containerd's own slice:prefix:name
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-{uid_}.slice/cri-containerd-{ID}.scope"),
            format!("/system.slice/containerd.service/kubepods-besteffort-{uid_}.slice:cri-containerd:{ID}"),
            // cri-o
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-{uid_}.slice/crio-{ID}.scope"),
            // podman, root and rootless (whose container gets a nested leaf)
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"),
            // kubelet cgroupfs driver: guaranteed, burstable, besteffort
            format!("/kubepods/{uid}/{ID}"),
            format!("/kubepods/burstable/{uid}/{ID}"),
            format!("/kubepods/besteffort/{uid}/{ID}"),
            // the innermost of nested containers
            format!("/docker/{ID2}/docker/{ID}"),
            ID.to_owned(),
        ];
        for path in &cases {
            assert_eq!(container_id(path), Some(ID), "{path}");
        }
    }

    #[test]
    fn container_id_non_matches() {
        let upper = ID.to_uppercase();
        let cases = [
            String::new(),
            "/".to_owned(),
            "/user.slice/user-0.slice/session-1.scope".to_owned(),
            format!("/docker/{upper}"),
            format!("/system.slice/docker-{upper}.scope"),
            format!("/docker/{}", &ID[1..]),
            format!("/docker/{ID}0"),
            format!("/docker/{ID}.slice"),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!("/system.slice/crio-conmon-{ID}.scope"),
        ];
        for path in &cases {
            assert_eq!(container_id(path), None, "{path}");
        }
    }

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
36 31 0:33 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
";

    #[test]
    fn cgroup2_mount_variants() {
        assert_eq!(
            cgroup2_mount(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );

        let pure = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
garbage line
35 22 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
        assert_eq!(cgroup2_mount(pure), Some(PathBuf::from("/sys/fs/cgroup")));

        let v1_only: String = HYBRID
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| l.to_owned() + "\n")
            .collect();
        assert_eq!(cgroup2_mount(&v1_only), None);
        assert_eq!(cgroup2_mount(""), None);
    }

    #[test]
    fn cgroup2_mount_escapes_and_root_preference() {
        let info = "\
40 22 0:30 /docker/abc /mnt/sub rw - cgroup2 cgroup2 rw
41 22 0:30 / /mnt/my\\040cg\\134x\\777 rw shared:3 - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(info),
            Some(PathBuf::from("/mnt/my cg\\x\\777"))
        );
        assert_eq!(
            cgroup2_mount(info.lines().next().unwrap()),
            Some(PathBuf::from("/mnt/sub"))
        );
        assert_eq!(unescape_octal("\\04"), PathBuf::from("\\04"));
    }

    #[test]
    fn resolver_from_mountinfo_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mountinfo");
        fs::write(&file, HYBRID).unwrap();
        let r = CgroupResolver::from_mountinfo_file(&file);
        assert_eq!(r.mount(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(
            CgroupResolver::from_mountinfo_file(&dir.path().join("nope")).mount(),
            None
        );
    }

    fn ino(p: &Path) -> u64 {
        fs::metadata(p).unwrap().ino()
    }

    #[test]
    fn resolver_paths_and_rescan_throttle() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/file"), b"").unwrap();
        let mut r = CgroupResolver::new(Some(root.to_path_buf()));
        r.set_min_rescan(Duration::from_secs(3600));

        assert_eq!(r.path(ino(&root.join("a/b"))).as_deref(), Some("/a/b"));
        assert_eq!(r.path(ino(root)).as_deref(), Some("/"));
        assert_eq!(r.path(ino(&root.join("a"))).as_deref(), Some("/a"));

        assert_eq!(r.walks, 1);

        // An unknown id older than what the walk saw: gone, and throttled.
        assert_eq!(r.path(1), None);
        assert_eq!(r.walks, 1);
        // A newer one: a cgroup made since the walk, looked for at once, once.
        assert_eq!(r.path(u64::MAX - 1), None);
        assert_eq!(r.path(u64::MAX - 1), None);
        assert_eq!(r.walks, 2);

        fs::create_dir(root.join("c")).unwrap();
        let c = ino(&root.join("c"));
        r.set_min_rescan(Duration::ZERO);
        assert_eq!(r.path(c).as_deref(), Some("/c"));

        // Removed cgroups still resolve, for late events.
        fs::remove_dir(root.join("c")).unwrap();
        assert_eq!(r.path(c).as_deref(), Some("/c"));
        assert_eq!(r.path(u64::MAX), None);
    }

    #[test]
    fn resolver_depth_bound_and_odd_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut deep = dir.path().to_path_buf();
        let mut inos = Vec::new();
        for _ in 0..=MAX_DEPTH {
            deep.push("d");
            fs::create_dir(&deep).unwrap();
            inos.push(ino(&deep));
        }
        let odd = dir.path().join(std::ffi::OsStr::from_bytes(b"x\xff y"));
        fs::create_dir(&odd).unwrap();

        let mut r = CgroupResolver::new(Some(dir.path().to_path_buf()));
        r.set_min_rescan(Duration::ZERO);
        let at_limit = "/d".repeat(MAX_DEPTH);
        assert_eq!(
            r.path(inos[MAX_DEPTH - 1]).as_deref(),
            Some(at_limit.as_str())
        );
        assert_eq!(r.path(inos[MAX_DEPTH]), None);
        assert_eq!(r.path(ino(&odd)).as_deref(), Some("/x\u{fffd} y"));
    }

    #[test]
    fn resolver_without_mount() {
        let mut r = CgroupResolver::new(None);
        assert_eq!(r.mount(), None);
        assert_eq!(r.path(1), None);
        let mut r = CgroupResolver::new(Some(PathBuf::from("/nonexistent/ksight-cgroup")));
        assert_eq!(r.path(1), None);
    }
}
