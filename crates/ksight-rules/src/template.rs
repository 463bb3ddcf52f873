//! Output templates: `{process.exe} connected to {net.remote.addr}:{net.remote.port}`,
//! checked against the registry at load and rendered only when a rule fires.
//! `{{` and `}}` are literal braces; an absent field renders as `-`.

use std::fmt::Write as _;

use ksight_core::event::Kind;
use ksight_core::registry::{registry, Field, Value};

use crate::compile::Source;

#[derive(Debug)]
enum Part {
    Text(String),
    Field(&'static Field),
}

#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Errors name the byte offset in the template.
    pub fn parse(src: &str, kinds: &[Kind]) -> Result<Template, (usize, String)> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = src.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|x| x.1) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|x| x.1) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let rest = &src[i + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err((i, "`{` is not closed (write `{{` for a brace)".into()));
                    };
                    let path = rest[..end].trim();
                    let Some(f) = registry().field(path) else {
                        return Err((i + 1, format!("unknown field `{path}`")));
                    };
                    if let Some(k) = kinds.iter().find(|k| !f.has(**k)) {
                        return Err((i + 1, format!("`{path}` is not a field of {k} events")));
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Field(f));
                    for _ in 0..end + 1 {
                        chars.next();
                    }
                }
                '}' => return Err((i, "a lone `}` (write `}}` for a brace)".into())),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    pub fn render(&self, src: &dyn Source) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => write_value(&mut out, &src.get(f)),
            }
        }
        out
    }
}

fn write_value(out: &mut String, v: &Value<'_>) {
    match v {
        Value::Null => out.push('-'),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Text(t) => out.push_str(&String::from_utf8_lossy(t)),
        Value::Bytes(b) => out.push_str(&String::from_utf8_lossy(b)),
        Value::Ip(a) => {
            let _ = write!(out, "{a}");
        }
        Value::Time(t) => {
            let _ = write!(out, "{}", humantime::format_rfc3339_nanos(t.system_time()));
        }
        Value::List(items) | Value::Record(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(out, item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        let exec = [Kind::from_name("exec").unwrap()];
        assert!(Template::parse("{process.exe} ran {exec.argv} {{x}}", &exec).is_ok());
        assert!(Template::parse("{net.remote.port}", &exec)
            .unwrap_err()
            .1
            .contains("not a field of exec"));
        assert_eq!(Template::parse("a {process.exee}", &exec).unwrap_err().0, 3);
        assert!(Template::parse("a {process.exe", &exec).is_err());
        assert!(Template::parse("a } b", &exec).is_err());
    }
}
