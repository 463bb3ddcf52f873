//! YAML with positions: a small node tree built from yaml-rust2's parser
//! events, each node with the line and column it starts at, so that every
//! error in a rule file can say where it is.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where a node starts: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Scalar {
        text: String,
        /// A plain (unquoted, single-line) scalar: its text is exactly what
        /// the file holds from `at` on, so columns inside it are exact.
        plain: bool,
        at: Pos,
    },
    Seq {
        items: Vec<Node>,
        at: Pos,
    },
    Map {
        entries: Vec<(String, Node)>,
        at: Pos,
    },
}

impl Node {
    pub fn at(&self) -> Pos {
        match self {
            Node::Scalar { at, .. } | Node::Seq { at, .. } | Node::Map { at, .. } => *at,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map { entries, .. } => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

enum Open {
    Seq(Vec<Node>, Pos),
    /// Entries, a key waiting for its value, the map's position.
    Map(Vec<(String, Node)>, Option<String>, Pos),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    error: Option<(Pos, String)>,
}

fn pos(m: Marker) -> Pos {
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

impl Builder {
    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(items, _)) => items.push(node),
            Some(Open::Map(entries, key, _)) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => match node {
                    Node::Scalar { text, .. } => *key = Some(text),
                    other => {
                        self.error.get_or_insert((
                            other.at(),
                            "a mapping's key must be a plain value".into(),
                        ));
                    }
                },
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = pos(mark);
        match ev {
            Event::Scalar(text, style, _, _) => {
                let plain = style == TScalarStyle::Plain;
                self.push(Node::Scalar { text, plain, at });
            }
            Event::SequenceStart(..) => self.stack.push(Open::Seq(Vec::new(), at)),
            Event::MappingStart(..) => self.stack.push(Open::Map(Vec::new(), None, at)),
            Event::SequenceEnd => {
                if let Some(Open::Seq(items, at)) = self.stack.pop() {
                    self.push(Node::Seq { items, at });
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(entries, _, at)) = self.stack.pop() {
                    self.push(Node::Map { entries, at });
                }
            }
            Event::Alias(_) => {
                self.error
                    .get_or_insert((at, "YAML aliases are not supported in rule files".into()));
            }
            _ => {}
        }
    }
}

/// Parse one YAML document. An empty file is an empty sequence.
pub fn parse(text: &str) -> Result<Node, (Pos, String)> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut b, false).map_err(|e| {
        let m = e.marker();
        (pos(*m), e.info().to_string())
    })?;
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.root.unwrap_or(Node::Seq {
        items: Vec::new(),
        at: Pos { line: 1, col: 1 },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_where_they_are() {
        let text = "- rule: a\n  condition: process.pid == 1\n- list: l\n  items: [x, 'y']\n";
        let root = parse(text).unwrap();
        let Node::Seq { items, .. } = &root else {
            panic!()
        };
        let cond = items[0].get("condition").unwrap();
        assert_eq!(cond.as_str(), Some("process.pid == 1"));
        assert_eq!(cond.at(), Pos { line: 2, col: 14 });
        let Some(Node::Seq { items: l, .. }) = items[1].get("items") else {
            panic!()
        };
        assert_eq!(l[1].as_str(), Some("y"));
        assert!(matches!(l[1], Node::Scalar { plain: false, .. }));
    }

    #[test]
    fn errors_have_positions() {
        let (at, _) = parse("- rule: a\n  x: [1, 2\n").unwrap_err();
        assert!(at.line >= 2, "{at:?}");
        assert!(parse("").is_ok());
    }
}
