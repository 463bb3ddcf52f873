//! Sensitive files: the watch list, and what the file watcher reports.
//!
//! The watcher itself is fanotify, in the kernel boundary crate (ksight-bpf
//! `files`): marks on the watched files and directories only, so a file
//! nobody watches costs nothing. It hands the `file` kind [`RawFileEvent`]s
//! through [`crate::kind::KernelState`].

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::text::Text;

crate::named_enum! {
    /// What happened to a watched file.
    pub enum FileOp {
        /// opened (fanotify does not say for reading or for writing; a write
        /// shows as `write` when the file is closed)
        Open = "open",
        /// closed after it was opened for writing
        Write = "write",
        /// created (a file, a directory, a link) in a watched place
        Create = "create",
        /// removed
        Delete = "delete",
        /// renamed or moved, into, out of or within a watched place
        Rename = "rename",
        /// mode, owner, timestamps or extended attributes changed (chmod, chown)
        Attrib = "attrib",
    }
}

/// One watch: a file or a directory (and what is below it, three levels
/// deep), by absolute path; a component may hold `*` and `?` wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEntry {
    pub pattern: PathBuf,
    /// Opens are reported too, not only changes (secrets: who reads them).
    pub opens: bool,
}

impl WatchEntry {
    /// `PATH` as given on the command line or in the config file.
    pub fn parse(s: &str, opens: bool) -> Result<WatchEntry, String> {
        let p = Path::new(s.trim_end_matches('/'));
        let p = if p.as_os_str().is_empty() {
            Path::new("/")
        } else {
            p
        };
        if !p.is_absolute() {
            return Err(format!("{s:?}: a watched path must be absolute"));
        }
        if p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(format!("{s:?}: no `.` or `..` in a watched path"));
        }
        if p == Path::new("/") {
            return Err(format!("{s:?}: watching the whole tree is not supported"));
        }
        Ok(WatchEntry {
            pattern: p.to_path_buf(),
            opens,
        })
    }

    /// The pattern's components after the root.
    pub fn parts(&self) -> Vec<&std::ffi::OsStr> {
        self.pattern
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// Whether `path` is this watch's file or directory, or below it. Per
    /// file event and watch: no allocation.
    pub fn covers(&self, path: &Path) -> bool {
        fn normal(c: Component<'_>) -> Option<&[u8]> {
            match c {
                Component::Normal(s) => Some(s.as_encoded_bytes()),
                _ => None,
            }
        }
        let mut have = path.components().filter_map(normal);
        self.pattern
            .components()
            .filter_map(normal)
            .all(|w| have.next().is_some_and(|h| wildcard(w, h)))
    }
}

/// Secrets: opens are reported too.
pub const DEFAULT_SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/root/.ssh",
    "/home/*/.ssh",
];

/// Persistence and identity: changes only (these are read all the time: every
/// `ls -l` reads /etc/passwd, cron reads its tables every minute).
pub const DEFAULT_CHANGES: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/ld.so.preload",
    "/etc/cron*",
    "/var/spool/cron",
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/etc/pam.d",
    "/etc/profile.d",
];

/// The watch list ksight runs with unless told otherwise.
pub fn default_watches() -> Vec<WatchEntry> {
    DEFAULT_SECRETS
        .iter()
        .map(|p| (p, true))
        .chain(DEFAULT_CHANGES.iter().map(|p| (p, false)))
        .map(|(p, opens)| WatchEntry::parse(p, opens).expect("the defaults are valid"))
        .collect()
}

/// `*` (any run of bytes) and `?` (one byte) in one path component.
pub fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// What the file's inode said right after the event (`stat`; absent when it
/// is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub inode: u64,
}

/// One fanotify event on a watched path, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFileEvent {
    /// CLOCK_MONOTONIC ns when ksight read it.
    pub ktime: u64,
    /// The process that caused it (its thread group).
    pub pid: u32,
    pub op: FileOp,
    /// The watched path it is about (a rename: the new path when that is
    /// watched, else the old one).
    pub path: Text,
    /// A rename's old and new paths, where the kernel told them.
    pub from: Option<Text>,
    pub to: Option<Text>,
    /// It is a directory.
    pub dir: bool,
    /// The watch entry it matched, as configured.
    pub watch: Arc<str>,
    pub stat: Option<FileStat>,
    /// In another mount namespace (a container): a process of it, through
    /// whose root ksight watches (`--file-watch-containers`); the paths are as
    /// that namespace sees them.
    pub root_pid: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_component() {
        assert!(wildcard(b"cron*", b"cron.d"));
        assert!(wildcard(b"cron*", b"cron"));
        assert!(wildcard(b"*", b"alice"));
        assert!(wildcard(b"a?c", b"abc"));
        assert!(!wildcard(b"a?c", b"ac"));
        assert!(!wildcard(b"cron*", b"anacrontab"));
        assert!(!wildcard(b"shadow", b"shadow-"));
        assert!(wildcard(b"*.conf", b"a.b.conf"));
        assert!(!wildcard(b"*.conf", b"a.confx"));
    }

    #[test]
    fn a_watch_covers_its_path_and_what_is_below() {
        let w = WatchEntry::parse("/home/*/.ssh", true).unwrap();
        assert!(w.covers(Path::new("/home/alice/.ssh")));
        assert!(w.covers(Path::new("/home/alice/.ssh/authorized_keys")));
        assert!(!w.covers(Path::new("/home/alice/.bashrc")));
        assert!(!w.covers(Path::new("/home")));
        let f = WatchEntry::parse("/etc/shadow", true).unwrap();
        assert!(f.covers(Path::new("/etc/shadow")));
        assert!(!f.covers(Path::new("/etc/shadow-")));
    }

    #[test]
    fn watched_paths_are_absolute_and_plain() {
        assert!(WatchEntry::parse("etc/shadow", true).is_err());
        assert!(WatchEntry::parse("/etc/../shadow", true).is_err());
        assert!(WatchEntry::parse("/", true).is_err());
        assert_eq!(
            WatchEntry::parse("/etc/cron.d/", false).unwrap().pattern,
            Path::new("/etc/cron.d")
        );
        assert_eq!(default_watches().len(), 15);
    }
}
