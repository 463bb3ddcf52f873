//! `exec`: a successful execve/execveat, with argv, paths, what it ran with
//! (the file's identity, stdio, privilege: crate::context) and ancestors.
//!
//! Born in bpf/process.bpf.c (`on_exec`, at `sched_process_exec`); the record
//! (`ks_exec_event`) carries argv and the paths back to back in its data.

use std::fmt::Write as _;
use std::mem::offset_of;
use std::sync::Arc;

use ksight_wire::{
    ks_event_kind, ks_exec_cred, ks_exec_event, ks_exec_file, ks_exec_flags, ks_exec_info,
    ks_stdio, ks_task,
};
use serde::Serialize;

use std::os::unix::ffi::OsStringExt;

use crate::context::{Creds, Dev, ExecFile, Privilege, Stdio, StdioType, ALL_CAPS};
use crate::decode::{copy, cstr, task, DecodeError};
use crate::field::{FieldType, Fields, Value};
use crate::kind::{Cx, KindSpec, Subject};
use crate::model::{Header, TaskFacts};
use crate::table::{Cell, Colour};
use crate::text::Text;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exec {
    pub exec: ExecDetail,
    /// The parent chain, nearest first.
    pub ancestors: Vec<Ancestor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecDetail {
    /// The path given to execve, as given (may be relative).
    pub filename: Text,
    /// The program that was asked for: for a binary, the path of the file the
    /// kernel opened; for a script, the script's path.
    pub exe: Arc<Text>,
    /// The interpreter running a `#!` script, resolved; `null` for binaries.
    pub interpreter: Option<Text>,
    pub argv: Vec<Text>,
    pub argv_truncated: bool,
    pub cwd: Text,
    pub tty: Option<Text>,
    /// The thread that called execve when it was not the leader (it took over the pid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_tid: Option<u32>,
    /// A path was deeper than ksight walks; its leading components are missing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_truncated: bool,
    /// The file the kernel ran (for a script, its interpreter), as its inode said.
    pub file: ExecFile,
    /// fds 0, 1 and 2.
    pub stdio: Vec<Stdio>,
    /// Present when the exec changed the credentials (set-id bits, file capabilities).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privilege: Option<Privilege>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ancestor {
    pub pid: u32,
    pub exe: Option<Arc<Text>>,
    pub exec_id: Arc<str>,
    /// Its image's file, when ksight saw the exec (or the fork) that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<AncestorFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AncestorFile {
    pub dev: Dev,
    pub inode: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Arc<str>>,
}

/// An exec record, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawExec {
    pub task: TaskFacts,
    pub old_tid: u32,
    pub argv: Vec<Vec<u8>>,
    pub argv_truncated: bool,
    /// argv could not be read at all (it is empty then).
    pub argv_fault: bool,
    /// The path given to execve, as given.
    pub filename: Vec<u8>,
    /// Absolute path of the file the kernel opened for `filename`; `None` for scripts.
    pub exe: Option<Vec<u8>>,
    /// Absolute path of the interpreter that runs a `#!` (or binfmt_misc) script.
    pub interpreter: Option<Vec<u8>>,
    pub cwd: Vec<u8>,
    /// A path walk stopped early: the path lacks its leading components.
    pub path_truncated: bool,
    pub tty: Option<Vec<u8>>,
    pub file: ExecFile,
    pub creds: Creds,
    pub stdio: Vec<Stdio>,
}

const STDIO: &[(&str, FieldType)] = &[
    ("fd", FieldType::Int),
    ("type", FieldType::Enum(StdioType::NAMES)),
    ("path", FieldType::Text),
    ("inode", FieldType::Int),
    ("socket.family", FieldType::Text),
    ("socket.protocol", FieldType::Text),
    ("socket.local.addr", FieldType::Ip),
    ("socket.local.port", FieldType::Int),
    ("socket.remote.addr", FieldType::Ip),
    ("socket.remote.port", FieldType::Int),
];

const ANCESTOR: &[(&str, FieldType)] = &[
    ("pid", FieldType::Int),
    ("exe", FieldType::Text),
    ("exec_id", FieldType::Text),
    ("file.sha256", FieldType::Text),
];

impl KindSpec for Exec {
    const NAME: &'static str = "exec";
    const WIRE: &'static [u32] = &[ks_event_kind::KS_EVENT_EXEC.0];
    type Record = RawExec;
    type State = ();

    fn decode(buf: &[u8], _hdr: Header) -> Result<RawExec, DecodeError> {
        let t: ks_task = copy(buf, offset_of!(ks_exec_event, task), "exec task")?;
        let info: ks_exec_info = copy(buf, offset_of!(ks_exec_event, info), "exec info")?;
        let wfile: ks_exec_file = copy(buf, offset_of!(ks_exec_event, file), "exec file")?;
        let wcred: ks_exec_cred = copy(buf, offset_of!(ks_exec_event, cred), "exec cred")?;
        let io = offset_of!(ks_exec_event, stdio);
        let one = std::mem::size_of::<ks_stdio>();
        let wstdio: [ks_stdio; 3] = [
            copy(buf, io, "exec stdio")?,
            copy(buf, io + one, "exec stdio")?,
            copy(buf, io + 2 * one, "exec stdio")?,
        ];
        let data = buf
            .get(offset_of!(ks_exec_event, data)..)
            .unwrap_or_default();
        let lens = [
            info.argv_len,
            info.filename_len,
            info.exe_len,
            info.interp_len,
            info.cwd_len,
            wstdio[0].path_len,
            wstdio[1].path_len,
            wstdio[2].path_len,
        ]
        .map(usize::from);
        let sum: usize = lens.iter().sum();
        if sum > data.len() {
            return Err(DecodeError::Overrun {
                what: "exec record",
                sum,
                len: data.len(),
            });
        }
        let mut rest = data;
        let [argv, filename, exe, interp, cwd, io0, io1, io2] = lens.map(|n| {
            let (field, tail) = rest.split_at(n);
            rest = tail;
            field
        });
        let flag = |f: ks_exec_flags| info.flags & f.0 != 0;
        let script = flag(ks_exec_flags::KS_EXEC_SCRIPT);
        // the file that runs: the binary, or a script's interpreter
        let ran = if script { interp } else { exe };
        let leaf = ran.split(|&b| b == 0).next().unwrap_or_default();
        let stdio_trunc = flag(ks_exec_flags::KS_EXEC_STDIO_TRUNCATED);
        let stdio = [io0, io1, io2]
            .iter()
            .zip(&wstdio)
            .zip(0u8..)
            .map(|((path, w), fd)| {
                let path = if path.is_empty() {
                    Vec::new()
                } else {
                    join_path(path, stdio_trunc)
                };
                Stdio::from_wire(fd, w, path)
            })
            .collect();
        Ok(RawExec {
            task: task(&t),
            old_tid: info.old_tid,
            argv: split_argv(argv),
            argv_truncated: flag(ks_exec_flags::KS_EXEC_ARGV_TRUNCATED),
            argv_fault: flag(ks_exec_flags::KS_EXEC_ARGV_FAULT),
            filename: filename.to_vec(),
            exe: (!script).then(|| join_path(exe, flag(ks_exec_flags::KS_EXEC_EXE_TRUNCATED))),
            interpreter: script
                .then(|| join_path(interp, flag(ks_exec_flags::KS_EXEC_INTERP_TRUNCATED))),
            cwd: join_path(cwd, flag(ks_exec_flags::KS_EXEC_CWD_TRUNCATED)),
            path_truncated: flag(ks_exec_flags::KS_EXEC_EXE_TRUNCATED)
                || flag(ks_exec_flags::KS_EXEC_INTERP_TRUNCATED)
                || flag(ks_exec_flags::KS_EXEC_CWD_TRUNCATED),
            tty: Some(cstr(&info.tty)).filter(|t| !t.is_empty()),
            file: ExecFile::from_wire(&wfile, leaf),
            creds: Creds::from_wire(&wcred),
            stdio,
        })
    }

    fn subject(x: &RawExec) -> Subject<'_> {
        Subject::Task {
            task: &x.task,
            also: None,
        }
    }

    /// A new image: the process's table entry gets its exec id, parent and
    /// exe (whether or not the event is shown: later events need them).
    fn born(hdr: Header, x: RawExec, _: &mut (), cx: &mut Cx<'_, Self>) {
        let keep = cx.keep();
        let en = &mut *cx.enricher;
        let t = &x.task;
        let parent_exec_id = en.entry(t.ppid, t.parent_start_ns, 0).exec_id.clone();
        // a script's exe is the script: filename, made absolute against cwd
        let exe = match &x.exe {
            Some(exe) => exe.clone(),
            None => absolute(&x.cwd, &x.filename),
        };
        let exe = Arc::new(Text::from(exe));
        let exec_id = en.table.exec_id(t.pid, hdr.ktime_ns);
        let e = en.entry(t.pid, t.start_ns, t.ppid);
        // What it could do before the exec, which the kernel no longer shows
        // at this tracepoint: a process whose real uid is not root holds no
        // capability (a setuid() away from root clears them; ambient ones are
        // rare); a root process holds what its last image had, or all.
        let caps_before = if t.uid == 0 {
            e.caps.unwrap_or(ALL_CAPS)
        } else {
            0
        };
        e.exec_id = exec_id;
        e.parent_exec_id = Some(parent_exec_id);
        e.exe = Some(exe.clone());
        e.file = Some(x.file.key());
        e.caps = Some(x.creds.cap_permitted);
        e.exited = false;
        // the new image's credentials: the baseline for later changes
        en.observe(t, hdr.ktime_ns, "exec", true);
        if !keep {
            cx.counters.filtered += 1;
            return;
        }
        let process = en.process(t);
        let ancestors = en
            .table
            .ancestors(t.pid, en.cfg.ancestors)
            .into_iter()
            .map(|a| Ancestor {
                pid: a.pid,
                exe: a.exe.clone(),
                exec_id: a.exec_id.clone(),
                file: a.file.map(|k| AncestorFile {
                    dev: k.dev,
                    inode: k.inode,
                    sha256: en.hashes.known(&k),
                }),
            })
            .collect();
        // the file that ran: known, or asked for (an exe_hash event follows)
        let mut file = x.file;
        let ran = x.interpreter.clone().or_else(|| x.exe.clone());
        let path = (!file.memfd && !file.deleted)
            .then(|| ran.map(|p| std::path::PathBuf::from(std::ffi::OsString::from_vec(p))))
            .flatten();
        if en.hashes.enabled() {
            let key = file.key();
            let mut pids = vec![t.pid];
            if file.deleted {
                pids.extend(en.table.running(&key, t.pid, 4));
            }
            file.sha256 = en.hashes.hash_or_ask(key, pids, path, process.clone());
        }
        let exec = ExecDetail {
            filename: Text::from(x.filename),
            exe,
            interpreter: x.interpreter.map(Text::from),
            argv: x.argv.into_iter().map(Text::from).collect(),
            argv_truncated: x.argv_truncated,
            cwd: Text::from(x.cwd),
            tty: x.tty.map(Text::from),
            old_tid: (x.old_tid != t.pid).then_some(x.old_tid),
            path_truncated: x.path_truncated,
            privilege: Privilege::of(&x.creds, &file, (t.uid, t.euid, t.gid, t.egid), caps_before),
            file,
            stdio: x.stdio,
        };
        cx.record_event(&hdr, Some(process), Exec { exec, ancestors });
    }

    fn fields(f: &mut Fields<Self>) {
        f.add("exec.filename", FieldType::Text, |d| {
            Value::text(&d.exec.filename)
        });
        f.add("exec.exe", FieldType::Text, |d| Value::text(&d.exec.exe));
        f.add("exec.interpreter", FieldType::Text, |d| {
            Value::opt_text(d.exec.interpreter.as_ref())
        });
        f.add("exec.argv", FieldType::List(&FieldType::Text), |d| {
            Value::List(d.exec.argv.iter().map(Value::text).collect())
        });
        f.add("exec.argv_truncated", FieldType::Bool, |d| {
            Value::Bool(d.exec.argv_truncated)
        });
        f.add("exec.cwd", FieldType::Text, |d| Value::text(&d.exec.cwd));
        f.add("exec.tty", FieldType::Text, |d| {
            Value::opt_text(d.exec.tty.as_ref())
        });
        f.add("exec.old_tid", FieldType::Int, |d| {
            Value::opt_int(d.exec.old_tid.map(u64::from))
        });
        f.add("exec.path_truncated", FieldType::Bool, |d| {
            Value::Bool(d.exec.path_truncated)
        });
        let file = |f: &mut Fields<Self>, name, ty, get: fn(&ExecFile) -> Value<'_>| {
            f.add(name, ty, move |d| get(&d.exec.file));
        };
        file(f, "exec.file.dev", FieldType::Text, |x| {
            Value::Bytes(x.dev.to_string().into_bytes())
        });
        file(f, "exec.file.inode", FieldType::Int, |x| {
            Value::uint(x.inode)
        });
        file(f, "exec.file.size", FieldType::Int, |x| Value::uint(x.size));
        file(f, "exec.file.mode", FieldType::Text, |x| {
            Value::Text(x.mode.as_bytes())
        });
        file(f, "exec.file.uid", FieldType::Int, |x| {
            Value::Int(x.uid.into())
        });
        file(f, "exec.file.gid", FieldType::Int, |x| {
            Value::Int(x.gid.into())
        });
        file(f, "exec.file.ctime", FieldType::Time, |x| {
            Value::Time(x.ctime)
        });
        file(f, "exec.file.mtime", FieldType::Time, |x| {
            Value::Time(x.mtime)
        });
        file(f, "exec.file.nlink", FieldType::Int, |x| {
            Value::Int(x.nlink.into())
        });
        file(f, "exec.file.deleted", FieldType::Bool, |x| {
            Value::Bool(x.deleted)
        });
        file(f, "exec.file.memfd", FieldType::Bool, |x| {
            Value::Bool(x.memfd)
        });
        file(f, "exec.file.writable_by_others", FieldType::Bool, |x| {
            Value::Bool(x.writable_by_others)
        });
        file(f, "exec.file.setuid", FieldType::Bool, |x| {
            Value::Bool(x.setuid)
        });
        file(f, "exec.file.setgid", FieldType::Bool, |x| {
            Value::Bool(x.setgid)
        });
        file(f, "exec.file.fs", FieldType::Text, |x| {
            Value::Text(x.fs.as_bytes())
        });
        file(f, "exec.file.sha256", FieldType::Text, |x| {
            x.sha256
                .as_ref()
                .map_or(Value::Null, |h| Value::Text(h.as_bytes()))
        });
        f.add("exec.stdio", FieldType::Records(STDIO), |d| {
            Value::List(d.exec.stdio.iter().map(stdio_record).collect())
        });
        f.add("exec.privilege.setuid", FieldType::Bool, |d| {
            d.exec
                .privilege
                .as_ref()
                .map_or(Value::Null, |p| Value::Bool(p.setuid))
        });
        f.add("exec.privilege.setgid", FieldType::Bool, |d| {
            d.exec
                .privilege
                .as_ref()
                .map_or(Value::Null, |p| Value::Bool(p.setgid))
        });
        f.add(
            "exec.privilege.caps_gained",
            FieldType::List(&FieldType::Text),
            |d| {
                d.exec.privilege.as_ref().map_or(Value::Null, |p| {
                    Value::List(
                        p.caps_gained
                            .iter()
                            .map(|c| Value::Text(c.as_bytes()))
                            .collect(),
                    )
                })
            },
        );
        f.add("ancestors", FieldType::Records(ANCESTOR), |d| {
            Value::List(
                d.ancestors
                    .iter()
                    .map(|a| {
                        Value::Record(vec![
                            Value::Int(a.pid.into()),
                            Value::opt_text(a.exe.as_deref()),
                            Value::Text(a.exec_id.as_bytes()),
                            a.file
                                .as_ref()
                                .and_then(|f| f.sha256.as_ref())
                                .map_or(Value::Null, |h| Value::Text(h.as_bytes())),
                        ])
                    })
                    .collect(),
            )
        });
    }

    fn table(&self, cell: &mut Cell<'_>) {
        let exec = &self.exec;
        let _ = write!(cell, "{}", exec.exe);
        for arg in exec.argv.iter().skip(1) {
            let _ = write!(cell, " {arg}");
        }
        if exec.argv_truncated {
            cell.push(" …");
        }
        if let Some(i) = &exec.interpreter {
            let _ = write!(cell, "  [interp {i}]");
        }
        // what a responder wants to see at a glance
        let file = &exec.file;
        for (on, mark) in [
            (exec.privilege.as_ref().is_some_and(|p| p.setuid), "setuid"),
            (
                exec.privilege
                    .as_ref()
                    .is_some_and(|p| !p.caps_gained.is_empty()),
                "caps+",
            ),
            (file.memfd, "memfd"),
            (file.deleted && !file.memfd, "deleted"),
        ] {
            if on {
                let _ = write!(cell, "  [{mark}]");
            }
        }
        for io in &exec.stdio {
            if let Some(r) = io.socket.as_ref().and_then(|s| s.remote.as_ref()) {
                let _ = write!(cell, "  [fd{} socket {r}]", io.fd);
            }
        }
    }

    fn colour(&self) -> Colour {
        Colour::Green
    }
}

/// One `exec.stdio` element, its fields in STDIO's order.
fn stdio_record(io: &Stdio) -> Value<'_> {
    let sock = io.socket.as_ref();
    let end = |e: Option<&crate::net::Endpoint>| {
        e.map_or((Value::Null, Value::Null), |e| {
            (Value::Ip(e.addr), Value::Int(e.port.into()))
        })
    };
    let (la, lp) = end(sock.and_then(|s| s.local.as_ref()));
    let (ra, rp) = end(sock.and_then(|s| s.remote.as_ref()));
    Value::Record(vec![
        Value::Int(io.fd.into()),
        Value::Text(io.kind.name().as_bytes()),
        Value::opt_text(io.path.as_ref()),
        Value::opt_int(io.inode),
        sock.map_or(Value::Null, |s| Value::Text(s.family.as_bytes())),
        sock.map_or(Value::Null, |s| Value::Text(s.protocol.as_bytes())),
        la,
        lp,
        ra,
        rp,
    ])
}

/// argv as /proc/pid/cmdline lays it out: NUL-terminated strings. Empty
/// arguments are real; only the terminator after the last one is dropped.
fn split_argv(bytes: &[u8]) -> Vec<Vec<u8>> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    bytes.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

/// Leaf-first NUL-terminated components ("ls\0bin\0usr\0") -> "/usr/bin/ls".
/// A truncated walk lacks its leading components, so it gets no leading "/".
fn join_path(components: &[u8], truncated: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(components.len() + 1);
    let parts = components
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .rev();
    for (i, part) in parts.enumerate() {
        if i > 0 || !truncated {
            out.push(b'/');
        }
        out.extend_from_slice(part);
    }
    if out.is_empty() && !truncated {
        out.push(b'/');
    }
    out
}

/// `path` if absolute, else `cwd/path` (a leading "./" dropped). No other normalisation:
/// ".." may cross a symlink, and the kernel did not resolve it for us here.
fn absolute(cwd: &[u8], path: &[u8]) -> Vec<u8> {
    if path.first() == Some(&b'/') || cwd.is_empty() {
        return path.to_vec();
    }
    let rel = path.strip_prefix(b"./").unwrap_or(path);
    let mut out = cwd.to_vec();
    if out.last() != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(rel);
    out
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use ksight_wire::ks_event_hdr;

    use super::*;
    use crate::decode::testing::*;
    use crate::record::{decode, Record};

    fn exec_record(argv: &[u8], filename: &[u8], exe: &[u8], cwd: &[u8], flags: u32) -> Vec<u8> {
        let data_off = offset_of!(ks_exec_event, data);
        let mut info = ks_exec_info {
            flags,
            old_tid: 10,
            argv_len: argv.len() as u16,
            filename_len: filename.len() as u16,
            exe_len: exe.len() as u16,
            interp_len: 0,
            cwd_len: cwd.len() as u16,
            ..Default::default()
        };
        for (d, s) in info.tty.iter_mut().zip(b"pts/3") {
            *d = *s as i8;
        }
        let data: Vec<u8> = [argv, filename, exe, cwd].concat();
        let size = data_off + data.len();
        let mut buf = vec![0u8; size];
        buf[..size_of::<ks_event_hdr>()]
            .copy_from_slice(&bytes_of(&hdr(ks_event_kind::KS_EVENT_EXEC, size)));
        let t_off = offset_of!(ks_exec_event, task);
        buf[t_off..t_off + size_of::<ks_task>()].copy_from_slice(&bytes_of(&wire_task()));
        let i_off = offset_of!(ks_exec_event, info);
        buf[i_off..i_off + size_of::<ks_exec_info>()].copy_from_slice(&bytes_of(&info));
        buf[data_off..].copy_from_slice(&data);
        buf
    }

    fn exec(rec: &[u8]) -> (Header, RawExec) {
        match decode(rec).unwrap() {
            Record::Exec(h, e) => (h, e),
            other => panic!("not exec: {other:?}"),
        }
    }

    #[test]
    fn exec_round_trip() {
        let rec = exec_record(
            b"ls\0-l\0\0\xff\0",
            b"/bin/ls",
            b"ls\0bin\0usr\0",
            b"root\0",
            0,
        );
        let (h, e) = exec(&rec);
        assert_eq!(
            h,
            Header {
                ktime_ns: 1234,
                seq: 9,
                cpu: 1
            }
        );
        assert_eq!(e.task.pid, 10);
        assert_eq!(e.task.comm, b"bash");
        assert_eq!(e.task.auid, None);
        assert_eq!(e.argv, [&b"ls"[..], b"-l", b"", b"\xff"]);
        assert_eq!(e.filename, b"/bin/ls");
        assert_eq!(e.exe.as_deref(), Some(&b"/usr/bin/ls"[..]));
        assert_eq!(e.interpreter, None);
        assert_eq!(e.cwd, b"/root");
        assert_eq!(e.tty.as_deref(), Some(&b"pts/3"[..]));
        assert!(!e.argv_truncated && !e.path_truncated);
    }

    #[test]
    fn exec_flags_and_edge_paths() {
        let flags =
            ks_exec_flags::KS_EXEC_ARGV_TRUNCATED.0 | ks_exec_flags::KS_EXEC_CWD_TRUNCATED.0;
        let (_, e) = exec(&exec_record(b"a\0bc", b"x", b"", b"c\0b\0", flags));
        assert!(e.argv_truncated && e.path_truncated);
        assert_eq!(e.argv, [&b"a"[..], b"bc"]);
        assert_eq!(e.exe.as_deref(), Some(&b"/"[..]), "the root itself");
        assert_eq!(e.cwd, b"b/c", "truncated: no leading slash");
    }

    #[test]
    fn exec_lengths_that_overrun_are_an_error() {
        let mut rec = exec_record(b"a\0", b"x", b"", b"", 0);
        let i_off = offset_of!(ks_exec_event, info);
        // argv_len follows flags and old_tid
        rec[i_off + 8..i_off + 10].copy_from_slice(&u16::MAX.to_ne_bytes());
        assert!(matches!(decode(&rec), Err(DecodeError::Overrun { .. })));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // a cheap deterministic fuzz: every prefix of a valid record, and noise
        let rec = exec_record(b"ls\0", b"/bin/ls", b"ls\0bin\0", b"\0", 0);
        for n in 0..rec.len() {
            let _ = decode(&rec[..n]);
        }
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..2000 {
            let mut buf = rec.clone();
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % buf.len();
                buf[i] = (x >> 32) as u8;
            }
            let _ = decode(&buf);
        }
    }

    #[test]
    fn absolute_paths() {
        assert_eq!(absolute(b"/tmp", b"./x.sh"), b"/tmp/x.sh");
        assert_eq!(absolute(b"/", b"x"), b"/x");
        assert_eq!(absolute(b"/tmp", b"/bin/x"), b"/bin/x");
    }
}
