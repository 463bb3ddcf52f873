//! An event as the bytes of one line, in an output's format.

use serde::{Deserialize, Serialize};

use ksight_core::event::{Detail, Event};
use ksight_core::sink::{Sink, TableSink};

/// How an output writes each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineFormat {
    /// one JSON object, the schema of docs/events.md
    #[default]
    Json,
    /// the table's columns (no colour; files and stdout get a header first)
    Table,
    /// short text: an alert's rendered output, otherwise the table's columns
    /// (syslog)
    Text,
}

/// Renders events into a reused buffer.
pub struct Renderer {
    format: LineFormat,
    table: TableSink<Vec<u8>>,
    template: Option<ksight_rules::template::Template>,
}

impl Renderer {
    /// `header`: a table output's first line names the columns.
    pub fn new(format: LineFormat, header: bool) -> Renderer {
        let table = TableSink::new(Vec::with_capacity(512), false);
        Renderer {
            template: None,
            format,
            table: if header && format == LineFormat::Table {
                table
            } else {
                table.without_header()
            },
        }
    }

    /// Lines from a template (checked by the output's plan) instead.
    pub fn with_template(mut self, src: Option<&str>) -> Renderer {
        self.template = src.and_then(|s| ksight_rules::template::Template::parse(s, &[]).ok());
        self
    }

    /// Appends the event's line, with its newline, to `out`.
    pub fn line(&mut self, ev: &Event, out: &mut Vec<u8>) {
        if let Some(t) = &self.template {
            out.extend_from_slice(t.render(ev).as_bytes());
            out.push(b'\n');
            return;
        }
        match self.format {
            LineFormat::Json => {
                // serialising an Event cannot fail (no map with non-string keys)
                let _ = serde_json::to_writer(&mut *out, ev);
                out.push(b'\n');
            }
            LineFormat::Text if matches!(&ev.detail, Detail::Alert(_)) => {
                if let Detail::Alert(a) = &ev.detail {
                    let a = &a.alert;
                    out.extend_from_slice(
                        format!("[{}] {}: {}\n", a.severity.name(), a.rule, a.output).as_bytes(),
                    );
                }
            }
            LineFormat::Table | LineFormat::Text => {
                let _ = self.table.write(ev);
                out.append(self.table.out_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_templates() {
        let ev = ksight_core::sink::exit_event(0);
        let mut out = Vec::new();
        Renderer::new(LineFormat::Json, true).line(&ev, &mut out);
        assert!(out.starts_with(b"{\"v\":1,\"type\":\"exit\"") && out.ends_with(b"\n"));
        out.clear();
        let mut t = Renderer::new(LineFormat::Json, false)
            .with_template(Some("{type} pid={process.pid} exe={process.exe}"));
        t.line(&ev, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "exit pid=42 exe=-\n");
    }
}
