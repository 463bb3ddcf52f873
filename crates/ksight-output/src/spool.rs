//! An output's on-disk spool: the events a receiver could not take yet, in
//! order, surviving a crash of ksight. An append log of segment files
//! (`NNNNNNNNNNNNNNNN.log`, at most [`SEGMENT`] bytes each) and a cursor file
//! (`cursor`: the first segment and offset not yet delivered). Appends are
//! fsync'd by [`Spool::sync`] (the nats output: at least every 200 ms, and at
//! stop), as a file output's batches are; the cursor is replaced atomically
//! (write, fsync, rename) after the receiver acknowledged what it passes.
//! A record cut by a crash (short or with a bad checksum) ends the log: it
//! is cut off at open.
//!
//! Record: `len: u32 LE` (of what follows the checksum), `crc32: u32 LE`,
//! `subject_len: u16 LE`, subject, `id_len: u16 LE`, id, payload.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A segment is closed for appends past this size.
pub const SEGMENT: u64 = 16 << 20;
const HEAD: usize = 8;

/// One spooled message: where it goes, its stable id, its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub subject: String,
    pub id: String,
    /// Shared, not copied, between a publish and the spool.
    pub payload: bytes::Bytes,
    /// Events the message holds: one per line of its payload.
    pub events: u64,
}

impl Record {
    pub fn new(subject: String, id: String, payload: Vec<u8>) -> Record {
        let events = match payload.is_empty() {
            true => 0,
            false => payload.iter().filter(|&&b| b == b'\n').count() as u64 + 1,
        };
        Record {
            subject,
            id,
            payload: payload.into(),
            events,
        }
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    fn encoded_len(&self) -> usize {
        HEAD + 4 + self.subject.len() + self.id.len() + self.payload.len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEAD]);
        for s in [self.subject.as_bytes(), self.id.as_bytes()] {
            out.extend_from_slice(&(s.len() as u16).to_le_bytes());
            out.extend_from_slice(s);
        }
        out.extend_from_slice(&self.payload);
        let body = &out[start + HEAD..];
        let (len, crc) = (body.len() as u32, crc32fast::hash(body));
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// The record at the start of `buf` and its size; `None` when `buf` holds
    /// no whole, intact record.
    fn decode(buf: &[u8]) -> Option<(Record, usize)> {
        let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?);
        let body = buf.get(HEAD..HEAD + len)?;
        if crc32fast::hash(body) != crc {
            return None;
        }
        let mut at = 0;
        let mut field = || -> Option<&[u8]> {
            let n = u16::from_le_bytes(body.get(at..at + 2)?.try_into().ok()?) as usize;
            let f = body.get(at + 2..at + 2 + n)?;
            at += 2 + n;
            Some(f)
        };
        let subject = String::from_utf8(field()?.to_vec()).ok()?;
        let id = String::from_utf8(field()?.to_vec()).ok()?;
        Some((Record::new(subject, id, body[at..].to_vec()), HEAD + len))
    }
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Segment numbers and sizes, oldest first; the last takes appends.
    segments: VecDeque<(u64, u64)>,
    /// The first byte not yet delivered: in `segments[0]`.
    cursor: u64,
    records: u64,
    /// Events in the waiting records.
    events: u64,
    tail: Option<File>,
    /// Appended since the last fsync.
    unsynced: bool,
    /// Segments roll past this size: 16 MiB, or a quarter of a small spool.
    segment_size: u64,
    /// The cursor file's segment at open: new segments are numbered from it.
    base: u64,
    /// Held (flock) while the spool is open: one writer per directory.
    _lock: File,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, holding at most `max_bytes`:
    /// what an earlier run left is kept, a torn last record cut off.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir).map_err(|e| at(dir, e))?;
        let mut nums: Vec<u64> = fs::read_dir(dir)
            .map_err(|e| at(dir, e))?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        nums.sort_unstable();
        let (mut first, mut cursor) = (0, 0);
        if let Ok(s) = fs::read_to_string(dir.join("cursor")) {
            let mut it = s.split_whitespace().map(str::parse::<u64>);
            if let (Some(Ok(seg)), Some(Ok(off))) = (it.next(), it.next()) {
                (first, cursor) = (seg, off);
            }
        }
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).map_err(|e| at(&lock_path, e))?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{}: in use by another output or ksight process (spool-dir must be its own)",
                    dir.display()
                ),
            ));
        }
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segments: VecDeque::new(),
            cursor: 0,
            records: 0,
            events: 0,
            tail: None,
            unsynced: false,
            segment_size: SEGMENT.min((max_bytes / 4).max(64 << 10)),
            base: first,
            _lock: lock,
        };
        for n in nums {
            let path = spool.segment(n);
            if n < first {
                fs::remove_file(&path).map_err(|e| at(&path, e))?;
                continue;
            }
            let data = fs::read(&path).map_err(|e| at(&path, e))?;
            let from = if n == first { cursor as usize } else { 0 };
            let mut off = from.min(data.len());
            while let Some((r, size)) = Record::decode(&data[off..]) {
                off += size;
                spool.records += 1;
                spool.events += r.events();
            }
            if off < data.len() {
                // a record cut by a crash: it and anything after it go
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(off as u64)?;
                f.sync_all()?;
            }
            spool.segments.push_back((n, off as u64));
        }
        if spool.segments.front().is_some_and(|s| s.0 == first) {
            spool.cursor = cursor.min(spool.segments[0].1);
        }
        if (spool.segments.front().map_or(first, |s| s.0), spool.cursor) != (first, cursor) {
            // the cursor file said more than the log holds (a crash cut it):
            // it says what is true before anything is appended after it
            spool.save_cursor()?;
        }
        Ok(spool)
    }

    fn segment(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:016}.log"))
    }

    /// Records waiting.
    pub fn len(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Events in the waiting records.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Bytes the spool holds on disk (delivered parts of the first segment
    /// included until it is removed).
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.1).sum()
    }

    /// Appends records in order (written, not yet fsync'd: [`Spool::sync`]):
    /// how many are kept (those that fit under the size limit and were
    /// written), and the error that stopped it, if one did. A write that
    /// fails leaves the log as it was before it.
    pub fn append(&mut self, recs: &[Record]) -> (usize, Option<io::Error>) {
        // what waits, not what was delivered and not yet removed
        let mut room = self.max_bytes.saturating_sub(self.bytes() - self.cursor);
        let (mut buf, mut chunk) = (Vec::new(), (0usize, 0u64));
        let mut kept = 0;
        for r in recs {
            let n = r.encoded_len() as u64;
            if n > room {
                break;
            }
            if self
                .segments
                .back()
                .is_none_or(|s| s.1 + buf.len() as u64 >= self.segment_size)
            {
                if let Err(e) = self.commit(&buf, chunk).and_then(|()| self.roll()) {
                    return (kept, Some(e));
                }
                kept += chunk.0;
                (buf, chunk) = (Vec::new(), (0, 0));
            }
            r.encode(&mut buf);
            room -= n;
            chunk = (chunk.0 + 1, chunk.1 + r.events());
        }
        if let Err(e) = self.commit(&buf, chunk) {
            return (kept, Some(e));
        }
        (kept + chunk.0, None)
    }

    /// Writes `buf` (`records` records holding `events` events) at the end
    /// of the last segment, or nothing: a failed write is cut off again.
    fn commit(&mut self, buf: &[u8], (records, events): (usize, u64)) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let (n, size) = *self.segments.back().expect("a segment to write");
        let path = self.segment(n);
        if self.tail.is_none() {
            self.tail = Some(
                OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| at(&path, e))?,
            );
        }
        let f = self.tail.as_mut().expect("opened");
        if let Err(e) = f.write_all(buf) {
            let _ = f.set_len(size);
            self.tail = None;
            return Err(at(&path, e));
        }
        self.segments.back_mut().expect("a segment").1 += buf.len() as u64;
        self.records += records as u64;
        self.events += events;
        self.unsynced = true;
        Ok(())
    }

    /// Flushes what was appended to the disk (fsync), if anything was.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            if let Some(f) = &self.tail {
                f.sync_data()?;
            }
            self.unsynced = false;
        }
        Ok(())
    }

    fn roll(&mut self) -> io::Result<()> {
        if let Some(f) = self.tail.take() {
            f.sync_data()?;
        }
        // numbered on from the last, or from the cursor's (an emptied spool
        // dir with its cursor left: a lower number would be taken as delivered)
        let n = self.segments.back().map_or(self.base, |s| s.0 + 1);
        let path = self.segment(n);
        File::create(&path).map_err(|e| at(&path, e))?;
        File::open(&self.dir)?.sync_all()?;
        self.segments.push_back((n, 0));
        Ok(())
    }

    /// Up to `max` records from the cursor, oldest first, without consuming them.
    pub fn peek(&self, max: usize) -> io::Result<Vec<Record>> {
        let mut out = Vec::new();
        let mut from = self.cursor;
        for &(n, size) in &self.segments {
            let path = self.segment(n);
            let mut f = None;
            while out.len() < max && from < size {
                let f = match &mut f {
                    Some(f) => f,
                    None => f.insert(File::open(&path).map_err(|e| at(&path, e))?),
                };
                // a chunk of at most 4 MiB, or the whole record that starts it
                f.seek(SeekFrom::Start(from))?;
                let mut head = [0u8; HEAD];
                f.read_exact(&mut head)?;
                let first = HEAD as u64 + u32::from_le_bytes(head[..4].try_into().unwrap()) as u64;
                let want = (size - from).min((4 << 20).max(first));
                f.seek(SeekFrom::Start(from))?;
                let mut data = Vec::new();
                f.take(want).read_to_end(&mut data)?;
                let mut off = 0;
                while out.len() < max {
                    let Some((r, len)) = Record::decode(&data[off..]) else {
                        break;
                    };
                    out.push(r);
                    off += len;
                }
                if off == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: a damaged record at {from}", path.display()),
                    ));
                }
                from += off as u64;
            }
            from = 0;
        }
        Ok(out)
    }

    /// The first waiting records were delivered (`done`, as [`Spool::peek`]
    /// gave them): the cursor passes them (written atomically), finished
    /// segments are removed.
    pub fn consume(&mut self, done: &[Record]) -> io::Result<()> {
        // the records the cursor passes are on the disk before it is
        self.sync()?;
        for r in done {
            self.drop_finished()?;
            self.cursor += r.encoded_len() as u64;
            self.records = self.records.saturating_sub(1);
            self.events = self.events.saturating_sub(r.events());
        }
        self.drop_finished()?;
        self.save_cursor()
    }

    fn drop_finished(&mut self) -> io::Result<()> {
        while self.segments.len() > 1 && self.cursor >= self.segments[0].1 {
            self.drop_front()?;
        }
        Ok(())
    }

    fn drop_front(&mut self) -> io::Result<()> {
        let (seg, _) = self.segments.pop_front().expect("a segment");
        self.cursor = 0;
        self.save_cursor()?;
        let path = self.segment(seg);
        fs::remove_file(&path).map_err(|e| at(&path, e))
    }

    fn save_cursor(&self) -> io::Result<()> {
        let seg = self.segments.front().map_or(0, |s| s.0);
        let tmp = self.dir.join("cursor.tmp");
        let mut f = File::create(&tmp).map_err(|e| at(&tmp, e))?;
        writeln!(f, "{seg} {}", self.cursor)?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join("cursor"))?;
        File::open(&self.dir)?.sync_all()
    }
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> Record {
        Record::new(
            format!("ksight.a.exec{}", i % 3),
            format!("id-{i}"),
            vec![b'x'; i % 200],
        )
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_restarts() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), 1 << 30).unwrap();
        // big payloads so the records span several segments
        let big: Vec<Record> = (0..40)
            .map(|i| {
                let r = rec(i);
                Record::new(r.subject, r.id, vec![i as u8; 1 << 20])
            })
            .collect();
        assert_eq!(s.append(&big).0, 40);
        assert!(s.segments.len() >= 3, "{:?}", s.segments);
        assert!(s.peek(5).unwrap() == big[..5]);
        let first = s.peek(18).unwrap();
        s.consume(&first).unwrap();
        drop(s);
        let mut s = Spool::open(d.path(), 1 << 30).unwrap();
        assert_eq!(s.len(), 22);
        let mut got = Vec::new();
        while !s.is_empty() {
            let p = s.peek(7).unwrap();
            assert!(!p.is_empty());
            s.consume(&p).unwrap();
            got.extend(p);
        }
        assert!(got == big[18..], "{} records", got.len());
        assert_eq!(s.segments.len(), 1, "finished segments are removed");
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_the_limit_holds() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), 1 << 20).unwrap();
        let recs: Vec<Record> = (0..100).map(rec).collect();
        assert_eq!(s.append(&recs).0, 100);
        let seg = s.segment(s.segments[0].0);
        drop(s);
        // a crash in the middle of the next append
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        let mut s = Spool::open(d.path(), 1 << 20).unwrap();
        assert_eq!(s.len(), 100);
        assert_eq!(s.peek(1000).unwrap(), recs);
        // full: what does not fit is refused, not kept
        let huge = Record::new("s".into(), "i".into(), vec![0; 1 << 20]);
        assert_eq!(s.append(&[rec(100), huge, rec(101)]).0, 1);
        assert_eq!(s.len(), 101);
    }

    #[test]
    fn one_writer_per_directory_and_a_small_spool_does_not_fill_for_good() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), 1 << 20).unwrap();
        let e = Spool::open(d.path(), 1 << 20).err().unwrap();
        assert!(e.to_string().contains("in use"), "{e}");
        // 20 MiB through a 1 MiB spool, in and out
        let big: Vec<Record> = (0..8)
            .map(|i| Record::new("s".into(), format!("{i}"), vec![b'x'; 100 << 10]))
            .collect();
        for round in 0..25 {
            let (n, err) = s.append(&big);
            assert!(err.is_none() && n >= 8, "round {round}: {n} kept");
            let p = s.peek(100).unwrap();
            assert_eq!(p.len(), n);
            s.consume(&p).unwrap();
            assert!(s.is_empty());
        }
        assert!(s.bytes() <= 1 << 20, "{} bytes on disk", s.bytes());
    }
}
