//! A file output that rotates itself: by size and by age, keeping a number
//! of rotated files and a total size, compressing them if asked. Lines are
//! whole in every file: rotation happens between batches, after a flush, so
//! no line is split across two files or written twice.
//!
//! Rotated files are named `PATH.YYYYmmddTHHMMSSZ[.N][.gz]`, which sorts in
//! the order they were written.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compress {
    #[default]
    None,
    Gzip,
}

/// When the file's data is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fsync {
    /// never explicitly (the kernel writes it back)
    Never,
    /// when a file is rotated or closed
    #[default]
    Rotate,
    /// after every batch (at most once per poll interval)
    Batch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    pub path: PathBuf,
    /// Rotate once the file holds this many bytes (0: never by size).
    pub rotate_size: u64,
    /// Rotate a file this old (None: never by age).
    pub rotate_every: Option<Duration>,
    /// Rotated files kept (0: no limit).
    pub keep: usize,
    /// Total bytes of rotated files kept (0: no limit).
    pub keep_size: u64,
    pub compress: Compress,
    pub fsync: Fsync,
}

impl FileConfig {
    /// A file that never rotates, with the default fsync policy.
    pub fn plain(path: impl Into<PathBuf>) -> FileConfig {
        FileConfig {
            path: path.into(),
            rotate_size: 0,
            rotate_every: None,
            keep: 0,
            keep_size: 0,
            compress: Compress::None,
            fsync: Fsync::Rotate,
        }
    }
}

pub struct RotatingFile {
    cfg: FileConfig,
    out: Option<BufWriter<File>>,
    size: u64,
    opened: Instant,
    /// The last rotation's stamp and suffix: names within one second go up.
    last: (String, u64),
}

impl RotatingFile {
    /// Opens (appends to) the file; its directory must exist.
    pub fn open(cfg: FileConfig) -> io::Result<RotatingFile> {
        let mut f = RotatingFile {
            cfg,
            out: None,
            size: 0,
            opened: Instant::now(),
            last: (String::new(), 0),
        };
        f.reopen()?;
        Ok(f)
    }

    /// Opens the path again (after an external logrotate moved the file).
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.cfg.path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("opening {}: {e}", self.cfg.path.display()),
                )
            })?;
        self.size = file.metadata()?.len();
        self.opened = Instant::now();
        self.out = Some(BufWriter::with_capacity(1 << 16, file));
        Ok(())
    }

    /// Writes one batch of whole lines, then rotates if the file is due.
    pub fn write_batch(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.out.is_none() {
            self.reopen()?;
        }
        let out = self.out.as_mut().expect("opened above");
        out.write_all(bytes)?;
        out.flush()?;
        self.size += bytes.len() as u64;
        if self.cfg.fsync == Fsync::Batch {
            out.get_ref().sync_data()?;
        }
        if self.due() {
            self.rotate()?;
        }
        Ok(())
    }

    /// Rotation by age, checked when no batch comes.
    pub fn tick(&mut self) -> io::Result<()> {
        if self.size > 0 && self.due() {
            self.rotate()?;
        }
        Ok(())
    }

    fn due(&self) -> bool {
        (self.cfg.rotate_size > 0 && self.size >= self.cfg.rotate_size)
            || self
                .cfg
                .rotate_every
                .is_some_and(|every| self.opened.elapsed() >= every)
    }

    /// Moves the file aside, starts a new one, compresses and prunes.
    pub fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
            if self.cfg.fsync != Fsync::Never {
                out.get_ref().sync_all()?;
            }
        }
        let aside = self.free_name();
        std::fs::rename(&self.cfg.path, &aside)?;
        self.reopen()?;
        if self.cfg.compress == Compress::Gzip {
            gzip(&aside)?;
        }
        self.prune()
    }

    /// `PATH.<UTC time>`, or with `.N` after another rotation in the same
    /// second (N above any earlier one's, even if pruned since: names sort in
    /// the order of writing).
    fn free_name(&mut self) -> PathBuf {
        let stamp = utc_stamp(SystemTime::now());
        let base = format!("{}.{stamp}", self.cfg.path.display());
        let taken = |p: &str| Path::new(p).exists() || Path::new(&format!("{p}.gz")).exists();
        let mut n = if self.last.0 == stamp {
            self.last.1 + 1
        } else {
            0
        };
        let name = |n: u64| {
            if n == 0 {
                base.clone()
            } else {
                format!("{base}.{n}")
            }
        };
        while taken(&name(n)) {
            n += 1;
        }
        self.last = (stamp, n);
        name(n).into()
    }

    /// Rotated files of this output, oldest first, with their sizes.
    pub fn rotated(&self) -> io::Result<Vec<(PathBuf, u64)>> {
        let dir = match self.cfg.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .cfg
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!("{name}.");
        let mut files: Vec<(PathBuf, u64, SystemTime, String)> = std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let rest = n.strip_prefix(&prefix)?;
                // a stamp: 8 digits, T, 6 digits, Z
                let stamp = rest.get(..16)?;
                (stamp.as_bytes()[8] == b'T' && stamp.ends_with('Z')).then_some(())?;
                let m = e.metadata().ok()?;
                Some((e.path(), m.len(), m.modified().ok()?, n))
            })
            .collect();
        // by name (stamp, then .N), which is the order of writing
        files.sort_by_key(|f| natural_key(&f.3));
        Ok(files.into_iter().map(|(p, len, _, _)| (p, len)).collect())
    }

    fn prune(&self) -> io::Result<()> {
        let mut files = self.rotated()?;
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        while !files.is_empty()
            && ((self.cfg.keep > 0 && files.len() > self.cfg.keep)
                || (self.cfg.keep_size > 0 && total > self.cfg.keep_size))
        {
            let (path, len) = files.remove(0);
            std::fs::remove_file(&path)?;
            total -= len;
        }
        Ok(())
    }

    pub fn close(&mut self) -> io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
            if self.cfg.fsync != Fsync::Never {
                out.get_ref().sync_all()?;
            }
        }
        Ok(())
    }
}

/// `name.STAMP.N.gz` sorts by STAMP, then N as a number.
fn natural_key(name: &str) -> (String, u64) {
    let core = name.strip_suffix(".gz").unwrap_or(name);
    match core.rsplit_once('.') {
        Some((head, n)) if n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() => {
            (head.to_string(), n.parse().unwrap_or(0))
        }
        _ => (core.to_string(), 0),
    }
}

fn gzip(path: &Path) -> io::Result<()> {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let tmp = PathBuf::from(format!("{}.gz.tmp", path.display()));
    {
        let mut input = File::open(path)?;
        let out = File::create(&tmp)?;
        let mut enc =
            flate2::write::GzEncoder::new(BufWriter::new(out), flate2::Compression::default());
        io::copy(&mut input, &mut enc)?;
        let out = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
    }
    std::fs::rename(&tmp, &gz)?;
    std::fs::remove_file(path)
}

/// `YYYYmmddTHHMMSSZ` in UTC.
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil: (year, month, day) of a day since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn cfg(dir: &Path) -> FileConfig {
        FileConfig {
            rotate_size: 1000,
            ..FileConfig::plain(dir.join("events.json"))
        }
    }

    fn read_all(f: &RotatingFile, path: &Path) -> String {
        let mut text = String::new();
        for (p, _) in f.rotated().unwrap() {
            let mut raw = Vec::new();
            File::open(&p).unwrap().read_to_end(&mut raw).unwrap();
            if p.extension().is_some_and(|e| e == "gz") {
                let mut s = String::new();
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_string(&mut s)
                    .unwrap();
                text.push_str(&s);
            } else {
                text.push_str(&String::from_utf8(raw).unwrap());
            }
        }
        text.push_str(&std::fs::read_to_string(path).unwrap());
        text
    }

    #[test]
    fn every_line_is_kept_exactly_once_and_whole_across_rotations() {
        for compress in [Compress::None, Compress::Gzip] {
            let dir = tempfile::tempdir().unwrap();
            let mut c = cfg(dir.path());
            c.compress = compress;
            let mut f = RotatingFile::open(c.clone()).unwrap();
            let mut want = String::new();
            for batch in 0..50 {
                let mut b = String::new();
                for i in 0..(batch % 7 + 1) {
                    b.push_str(&format!("{{\"batch\":{batch},\"i\":{i}}}\n"));
                }
                want.push_str(&b);
                f.write_batch(b.as_bytes()).unwrap();
            }
            f.close().unwrap();
            let rotated = f.rotated().unwrap();
            assert!(rotated.len() >= 3, "{rotated:?}");
            if compress == Compress::Gzip {
                assert!(rotated.iter().all(|(p, _)| p.extension().unwrap() == "gz"));
            }
            assert_eq!(read_all(&f, &c.path), want);
        }
    }

    #[test]
    fn retention_by_count_and_by_total_size_removes_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.rotate_size = 100;
        c.keep = 3;
        let mut f = RotatingFile::open(c.clone()).unwrap();
        for i in 0..20 {
            f.write_batch(format!("{:0>99}\n", i).as_bytes()).unwrap();
        }
        let kept = f.rotated().unwrap();
        assert_eq!(kept.len(), 3);
        // the newest three: 17, 18, 19 (the live file is empty after a rotation)
        let first = std::fs::read_to_string(&kept[0].0).unwrap();
        assert!(first.trim_start_matches('0').starts_with("17"), "{first}");
        c.keep = 0;
        c.keep_size = 250;
        let mut f = RotatingFile::open(c).unwrap();
        f.write_batch(&[b'x'; 99]).unwrap();
        f.write_batch(b"\n").unwrap();
        assert!(f.rotated().unwrap().iter().map(|x| x.1).sum::<u64>() <= 250);
    }

    #[test]
    fn rotation_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.rotate_size = 0;
        c.rotate_every = Some(Duration::from_millis(50));
        let mut f = RotatingFile::open(c).unwrap();
        f.write_batch(b"one\n").unwrap();
        f.tick().unwrap();
        assert!(f.rotated().unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(60));
        f.tick().unwrap();
        assert_eq!(f.rotated().unwrap().len(), 1);
        // an empty file is not rotated
        std::thread::sleep(Duration::from_millis(60));
        f.tick().unwrap();
        assert_eq!(f.rotated().unwrap().len(), 1);
    }

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(SystemTime::UNIX_EPOCH), "19700101T000000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_587_400);
        assert_eq!(utc_stamp(t), "20251201T111000Z");
        assert!(
            natural_key("e.json.20250101T000000Z.10.gz") > natural_key("e.json.20250101T000000Z.9")
        );
    }
}
