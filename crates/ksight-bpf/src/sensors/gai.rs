//! The getaddrinfo sensor (bpf/gai.bpf.c): uprobes on the host's libc.

use std::path::{Path, PathBuf};

use libbpf_rs::{Link, Object};

use crate::object::LoadError;
use crate::sensor::{self, GaiAttach, LoadCx, Spec};

static SPEC: Spec = Spec {
    name: "gai",
    order: 40,
    wanted_by: &["getaddrinfo"],
    after: None,
    publishes: &[],
    flavoured: false,
    hooks: "uprobes on getaddrinfo in libc (per process once it sends DNS, or all)",
    feature: "getaddrinfo",
    degraded: |why| format!("getaddrinfo events unavailable: {why}"),
};

#[derive(Default)]
pub struct Sensor {
    obj: Option<Object>,
}

impl sensor::Sensor for Sensor {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn load(&mut self, cx: &mut LoadCx<'_>) -> Result<(), LoadError> {
        let o = cx.open("gai", crate::object!("gai"))?;
        self.obj = Some(o.load("getaddrinfo (uprobe)")?);
        Ok(())
    }

    /// The entry and return probes, on getaddrinfo in the host's libc, for
    /// every process (`--getaddrinfo all`); lazily, nothing yet: each process
    /// gets its own with [`attach_pid`] once it has sent DNS.
    fn attach(&mut self, cx: &LoadCx<'_>) -> Result<Vec<Link>, LoadError> {
        if cx.cfg.gai == GaiAttach::Lazy {
            return Ok(Vec::new());
        }
        let libc = crate::sys::libc_path().ok_or_else(|| {
            LoadError::Config("no libc found to attach getaddrinfo probes to".into())
        })?;
        probes(self.obj.as_ref().expect("loaded"), -1, &libc)
    }

    fn object(&self) -> Option<&Object> {
        self.obj.as_ref()
    }
}

/// Both probes on getaddrinfo in `libc`, for one process (`pid`) or all (-1).
fn probes(obj: &Object, pid: i32, libc: &Path) -> Result<Vec<Link>, LoadError> {
    let mut links = Vec::new();
    for prog in obj.progs_mut() {
        let retprobe = prog.name() == "ks_gai_exit";
        let opts = libbpf_rs::UprobeOpts {
            func_name: Some("getaddrinfo".into()),
            retprobe,
            ..Default::default()
        };
        let link = prog
            .attach_uprobe_with_opts(pid, libc, 0, opts)
            .map_err(|source| LoadError::Attach {
                prog: prog.name().to_string_lossy().into_owned(),
                target: format!("getaddrinfo in {}", libc.display()),
                source,
            })?;
        links.push(link);
    }
    Ok(links)
}

/// The libc `pid` has mapped, as a path that reaches it from here (through
/// the process's root: a container's libc is its own).
fn libc_of(proc_root: &Path, pid: u32) -> Option<PathBuf> {
    let maps = std::fs::read_to_string(proc_root.join(format!("{pid}/maps"))).ok()?;
    let lib = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            let name = p.rsplit('/').next().unwrap_or_default();
            name.starts_with("libc.so") || name.starts_with("libc-") || name.starts_with("ld-musl")
        })?;
    Some(proc_root.join(format!("{pid}/root{lib}")))
}

/// getaddrinfo probes for one process: its libc's getaddrinfo, for it alone
/// (a pid-bound uprobe is installed into no other process's mapping). `None`:
/// it maps no libc (static, Go), or it is gone.
pub fn attach_pid(obj: &Object, pid: u32) -> Result<Option<Vec<Link>>, LoadError> {
    let Some(libc) = libc_of(Path::new("/proc"), pid) else {
        return Ok(None);
    };
    let pid = i32::try_from(pid).map_err(|_| LoadError::Config(format!("pid {pid}")))?;
    probes(obj, pid, &libc).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_libc_through_its_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("7")).unwrap();
        std::fs::write(
            dir.path().join("7/maps"),
            "7f0-7f1 r-xp 00000000 fe:00 1 /usr/lib/x86_64-linux-gnu/libm.so.6\n\
             7f2-7f3 r-xp 00000000 fe:00 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n",
        )
        .unwrap();
        assert_eq!(
            libc_of(dir.path(), 7),
            Some(dir.path().join("7/root/usr/lib/x86_64-linux-gnu/libc.so.6"))
        );
        std::fs::write(
            dir.path().join("7/maps"),
            "7f0-7f1 r-xp 0 fe:00 1 /app/static\n",
        )
        .unwrap();
        assert_eq!(libc_of(dir.path(), 7), None);
        assert_eq!(libc_of(dir.path(), 8), None, "gone");
    }
}
