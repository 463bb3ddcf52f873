//! Where events go. One [`Sink`] trait, interchangeable outputs: JSON Lines
//! (the documented schema), the table for humans (its cells: `table.rs`), a counting
//! sink for benchmarks; a [`FanOut`] writes to several, so that one failing
//! output does not stop the others. Sinks buffer; the caller flushes after
//! each batch so output latency stays bounded by the poll interval.
//!
//! A [`SinkSpec`] says what to open (format, colour, file); the command line
//! and, later, a config file make them.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use std::fmt::Write as _;

use crate::event::Event;
use crate::table::{clock_utc, Cell, Colour, DIM, RESET};

pub trait Sink {
    fn write(&mut self, ev: &Event) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;

    /// Outputs that failed, and how many events each could not take.
    fn failures(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// At stop: deliver what is still held (queued outputs drain).
    fn close(&mut self) -> io::Result<()> {
        self.flush()
    }

    /// Files are opened again at their paths (SIGUSR1, after an external
    /// logrotate moved them).
    fn reopen(&mut self) {}

    /// Lines for the summary at stop: what each output did.
    fn report(&self) -> Vec<String> {
        Vec::new()
    }
}

/// One JSON object per line (docs/events.md).
pub struct JsonSink<W: Write> {
    out: W,
    /// One event is serialised here, then written with one call: serde_json
    /// makes many small writes, which cost a dynamic call each on a `dyn Write`.
    line: Vec<u8>,
}

impl<W: Write> JsonSink<W> {
    pub fn new(out: W) -> Self {
        JsonSink {
            out,
            line: Vec::with_capacity(1024),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    /// Where lines go (an output that renders into a buffer takes them here).
    pub fn out_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, ev)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Counts events; writes nothing (benchmarks).
#[derive(Debug, Default)]
pub struct CountingSink {
    pub count: u64,
}

impl Sink for CountingSink {
    fn write(&mut self, _ev: &Event) -> io::Result<()> {
        self.count += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Collects events (tests).
impl Sink for Vec<Event> {
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        self.push(ev.clone());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Aligned columns, one line per event, optionally coloured by kind.
pub struct TableSink<W: Write> {
    out: W,
    color: bool,
    header_done: bool,
    line: String,
}

impl<W: Write> TableSink<W> {
    pub fn new(out: W, color: bool) -> Self {
        TableSink {
            out,
            color,
            header_done: false,
            line: String::with_capacity(256),
        }
    }

    /// Lines only, no header (each line stands alone: a syslog message).
    pub fn without_header(mut self) -> Self {
        self.header_done = true;
        self
    }

    pub fn out_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

impl<W: Write> Sink for TableSink<W> {
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        if !self.header_done {
            self.header_done = true;
            let (dim, reset) = if self.color { (DIM, RESET) } else { ("", "") };
            writeln!(
                self.out,
                "{dim}{:<12} {:<9} {:>7} {:>7} {:>5} {:<16} DETAIL{reset}",
                "TIME(UTC)", "EVENT", "PID", "PPID", "UID", "COMM",
            )?;
        }
        let line = &mut self.line;
        line.clear();
        let _ = write!(line, "{:<12} ", clock_utc(ev.time.0));
        let kind = ev.kind().name();
        let colour = ev.detail.colour();
        if self.color && colour != Colour::Plain {
            let _ = write!(line, "{}{kind:<9}{RESET} ", colour.code());
        } else {
            let _ = write!(line, "{kind:<9} ");
        }
        match &ev.process {
            Some(p) => {
                let _ = write!(
                    line,
                    "{:>7} {:>7} {:>5} {:<16} ",
                    p.pid,
                    p.ppid,
                    p.uid,
                    p.comm.to_string()
                );
            }
            None => {
                let _ = write!(line, "{:>7} {:>7} {:>5} {:<16} ", "-", "-", "-", "-");
            }
        }
        ev.detail.table(&mut Cell::new(line, self.color, ev.cpu));
        line.push('\n');
        self.out.write_all(line.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

crate::named_enum! {
    /// How events are written.
    #[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
    pub enum Format {
        /// table on a terminal, JSON Lines otherwise
        Auto = "auto",
        /// JSON Lines, the schema in docs/events.md
        Json = "json",
        /// aligned columns for humans
        Table = "table",
    }
}

crate::named_enum! {
    /// Colour in table output.
    #[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
    pub enum Color {
        /// on a terminal, unless NO_COLOR is set
        Auto = "auto",
        Always = "always",
        Never = "never",
    }
}

impl Color {
    /// Whether to colour output that goes to a terminal (`to_tty`) or not.
    pub fn enabled(self, to_tty: bool) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => to_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }
}

/// One output: what to write, how, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSpec {
    pub format: Format,
    pub color: Color,
    /// A file, or standard output.
    pub output: Option<PathBuf>,
}

impl SinkSpec {
    /// A name for messages: the file, or "stdout".
    pub fn name(&self) -> String {
        match &self.output {
            Some(p) => p.display().to_string(),
            None => "stdout".into(),
        }
    }

    pub fn open(&self) -> io::Result<Box<dyn Sink>> {
        let to_tty = self.output.is_none() && io::stdout().is_terminal();
        let table = match self.format {
            Format::Auto => to_tty,
            Format::Json => false,
            Format::Table => true,
        };
        let out: Box<dyn Write> = match &self.output {
            Some(path) => Box::new(File::create(path).map_err(|e| {
                io::Error::new(e.kind(), format!("creating {}: {e}", path.display()))
            })?),
            None => Box::new(io::stdout()),
        };
        let out = BufWriter::with_capacity(1 << 16, out);
        Ok(if table {
            Box::new(TableSink::new(out, self.color.enabled(to_tty)))
        } else {
            Box::new(JsonSink::new(out))
        })
    }
}

/// Several outputs. A write error takes its output out (counted, and said once
/// on stderr) and the others go on; only when every output has failed is the
/// first error returned, which stops ksight.
pub struct FanOut {
    outputs: Vec<Output>,
}

struct Output {
    name: String,
    sink: Box<dyn Sink>,
    /// Events this output could not take (from its first error on).
    errors: u64,
    failed: Option<io::Error>,
}

impl FanOut {
    pub fn new(outputs: Vec<(String, Box<dyn Sink>)>) -> Self {
        FanOut {
            outputs: outputs
                .into_iter()
                .map(|(name, sink)| Output {
                    name,
                    sink,
                    errors: 0,
                    failed: None,
                })
                .collect(),
        }
    }

    fn all_failed(&mut self) -> io::Result<()> {
        if self.outputs.iter().all(|o| o.failed.is_some()) {
            let first = self.outputs.iter_mut().find_map(|o| o.failed.take());
            // one error, once; later calls find the outputs still failed
            let e = first.unwrap_or_else(|| io::Error::other("every output has failed"));
            for o in &mut self.outputs {
                o.failed.get_or_insert_with(|| io::Error::other("failed"));
            }
            return Err(e);
        }
        Ok(())
    }

    fn each(&mut self, mut op: impl FnMut(&mut dyn Sink) -> io::Result<()>) -> io::Result<()> {
        let many = self.outputs.len() > 1;
        for o in &mut self.outputs {
            if o.failed.is_some() {
                o.errors += 1;
                continue;
            }
            if let Err(e) = op(o.sink.as_mut()) {
                o.errors += 1;
                if many {
                    eprintln!("ksight: output {} failed, the others go on: {e}", o.name);
                }
                o.failed = Some(e);
            }
        }
        self.all_failed()
    }
}

impl Sink for FanOut {
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        self.each(|s| s.write(ev))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.each(|s| s.flush())
    }

    fn failures(&self) -> Vec<(String, u64)> {
        self.outputs
            .iter()
            .filter(|o| o.errors > 0)
            .map(|o| (o.name.clone(), o.errors))
            .collect()
    }

    fn close(&mut self) -> io::Result<()> {
        self.each(|s| s.close())
    }

    fn reopen(&mut self) {
        for o in &mut self.outputs {
            o.sink.reopen();
        }
    }

    fn report(&self) -> Vec<String> {
        self.outputs.iter().flat_map(|o| o.sink.report()).collect()
    }
}

/// An `exit` event of a made-up process (pid 42, `comm` with an escape),
/// with this wait(2) status: for tests of outputs.
pub fn exit_event(code: u32) -> Event {
    use crate::event::{Process, WallTime};
    use crate::kinds::exit::{Exit, ExitDetail};
    use crate::text::Text;
    Event {
        time: WallTime(3_723_004_000_000),
        ktime: 1,
        cpu: 0,
        seq: Some(7),
        process: Some(Process {
            pid: 42,
            tid: 42,
            ppid: 1,
            uid: 0,
            gid: 0,
            euid: 0,
            egid: 0,
            auid: None,
            comm: Text::from("sle\u{1b}ep"),
            exe: None,
            exec_id: "x:1:42".into(),
            parent_exec_id: None,
            start_time: WallTime(0),
            cgroup_id: 1,
            cgroup: Some("/".into()),
            container_id: None,
            container: None,
            pidns: 1,
            ns_pid: 42,
            ns_tid: 42,
        }),
        detail: Exit {
            exit: ExitDetail::new(code, 1_500_000, 0, 0, false),
        }
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::lost::{Lost, LostDetail, LostReason};

    pub(crate) use super::exit_event;

    #[test]
    fn table_lines_are_aligned_and_escaped() {
        let mut out = Vec::new();
        let mut sink = TableSink::new(&mut out, false);
        sink.write(&exit_event(9 | 0x80)).unwrap();
        sink.write(&exit_event(3 << 8)).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("TIME(UTC)"));
        let want = format!(
            "01:02:03.004 {:<9} {:>7} {:>7} {:>5} sle\\u{{1b}}ep",
            "exit", 42, 1, 0
        );
        assert!(lines[1].starts_with(&want), "{:?}", lines[1]);
        assert!(
            lines[1].contains("SIGKILL (core dumped)  after 1.5ms"),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains("code 3"));
        assert_eq!(lines[1].find("DETAIL"), None);
        assert_eq!(lines[0].find("DETAIL"), lines[1].find("SIGKILL"));
    }

    #[test]
    fn colour_only_when_asked() {
        let mut plain = Vec::new();
        TableSink::new(&mut plain, false)
            .write(&exit_event(0))
            .unwrap();
        assert!(!plain.contains(&0x1b));
        let mut coloured = Vec::new();
        TableSink::new(&mut coloured, true)
            .write(&exit_event(9))
            .unwrap();
        assert!(String::from_utf8(coloured).unwrap().contains("\x1b[31m"));
    }

    #[test]
    fn json_is_one_line_per_event() {
        let mut out = Vec::new();
        let mut sink = JsonSink::new(&mut out);
        sink.write(&exit_event(42 << 8)).unwrap();
        let lost = Event {
            process: None,
            detail: Lost {
                lost: LostDetail {
                    stage: crate::kinds::lost::LostStage::Kernel,
                    output: None,
                    reason: LostReason::BufferFull,
                    kind: Some("fork"),
                    program: None,
                    count: 2,
                    since_ktime: 0,
                },
            }
            .into(),
            ..exit_event(0)
        };
        sink.write(&lost).unwrap();
        let text = String::from_utf8(out).unwrap();
        let v: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(v[0]["exit"]["code"], 42);
        assert_eq!(v[0]["exit"]["signal"], serde_json::Value::Null);
        assert_eq!(v[0]["process"]["comm"], "sle\u{1b}ep");
        assert_eq!(v[1]["type"], "lost");
        // the common fields come first, as documented
        assert!(text.starts_with("{\"v\":1,\"type\":\"exit\",\"time\":"));
    }

    struct Failing;
    impl Sink for Failing {
        fn write(&mut self, _: &Event) -> io::Result<()> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_failing_output_does_not_stop_the_others() {
        let mut fan = FanOut::new(vec![
            ("bad".into(), Box::new(Failing)),
            ("good".into(), Box::new(CountingSink::default())),
        ]);
        for _ in 0..3 {
            fan.write(&exit_event(0)).unwrap();
        }
        assert_eq!(fan.failures(), [("bad".to_string(), 3)]);
        let mut alone = FanOut::new(vec![("bad".into(), Box::new(Failing))]);
        let e = alone.write(&exit_event(0)).unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        assert!(alone.write(&exit_event(0)).is_err(), "and stays failed");
    }
}
