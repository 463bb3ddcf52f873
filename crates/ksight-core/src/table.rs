//! The table for humans: each kind writes its DETAIL column into a [`Cell`]
//! (`KindSpec::table`) and names its [`Colour`]; the table sink (`sink.rs`)
//! writes the common columns around them.

use std::fmt::{self, Write as _};

/// The colour of an event's EVENT column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Plain,
    Green,
    Cyan,
    Yellow,
    Red,
    Blue,
    /// Loss: bold magenta, for the whole line.
    Alarm,
}

impl Colour {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Colour::Plain => "",
            Colour::Green => "\x1b[32m",
            Colour::Cyan => "\x1b[36m",
            Colour::Yellow => "\x1b[33m",
            Colour::Red => "\x1b[31m",
            Colour::Blue => "\x1b[34m",
            Colour::Alarm => "\x1b[1;35m",
        }
    }
}

pub(crate) const DIM: &str = "\x1b[2m";
pub(crate) const RESET: &str = "\x1b[0m";

/// Where a kind writes its DETAIL column.
pub struct Cell<'a> {
    line: &'a mut String,
    color: bool,
    cpu: u32,
}

impl<'a> Cell<'a> {
    pub(crate) fn new(line: &'a mut String, color: bool, cpu: u32) -> Self {
        Cell { line, color, cpu }
    }

    /// The CPU the event's hook ran on (for `lost`: whose records were lost).
    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    pub fn push(&mut self, s: &str) {
        self.line.push_str(s);
    }

    /// `text` in `colour` (when colour is on).
    pub fn painted(&mut self, colour: Colour, text: fmt::Arguments<'_>) {
        if self.color && colour != Colour::Plain {
            let _ = write!(self.line, "{}{text}{RESET}", colour.code());
        } else {
            let _ = self.line.write_fmt(text);
        }
    }
}

impl fmt::Write for Cell<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.line.push_str(s);
        Ok(())
    }
}

/// `HH:MM:SS.mmm` (UTC) of a wall time.
pub(crate) fn clock_utc(ns: u64) -> String {
    let ms = ns / 1_000_000;
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

/// A duration for humans: 850µs, 12.3ms, 4.56s, 2m03s, 5h02m.
pub fn human_duration(ns: u64) -> String {
    let us = ns / 1_000;
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else if us < 60_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us < 3_600_000_000 {
        let s = us / 1_000_000;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = us / 60_000_000;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_humans() {
        assert_eq!(human_duration(850_000), "850µs");
        assert_eq!(human_duration(12_300_000), "12.3ms");
        assert_eq!(human_duration(4_560_000_000), "4.56s");
        assert_eq!(human_duration(123_000_000_000), "2m03s");
    }
}
