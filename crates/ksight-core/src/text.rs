//! Bytes from the kernel that are usually, but not always, UTF-8.
//!
//! Linux names (comm, paths, argv) are byte strings. ksight writes a [`Text`]
//! as a JSON string when the bytes are valid UTF-8, and otherwise as an object
//! `{"bytes": "<base64>"}` holding the exact bytes (ripgrep's JSON printer does
//! the same). Nothing is ever replaced or lost; the table printer shows invalid
//! bytes as `\xNN` escapes.

use std::fmt;

use base64::Engine as _;
use serde::{Serialize, Serializer};

#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Text(Box<[u8]>);

impl Text {
    pub fn new(bytes: impl Into<Box<[u8]>>) -> Self {
        Text(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text::new(s.as_bytes())
    }
}

impl From<Vec<u8>> for Text {
    fn from(v: Vec<u8>) -> Self {
        Text(v.into_boxed_slice())
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.to_str() {
            Some(text) => s.serialize_str(text),
            None => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(
                    "bytes",
                    &base64::engine::general_purpose::STANDARD.encode(&self.0),
                )?;
                m.end()
            }
        }
    }
}

/// Human form: valid UTF-8 as is (control characters escaped), other bytes as `\xNN`.
impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    write!(f, "{c}")?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_a_string() {
        let t = Text::from("héllo");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"héllo\"");
    }

    #[test]
    fn invalid_utf8_is_base64_bytes() {
        let t = Text::from(vec![b'a', 0xff, 0xfe]);
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"bytes":"Yf/+"}"#);
        assert_eq!(t.to_string(), "a\\xff\\xfe");
    }

    #[test]
    fn control_characters_are_escaped_for_humans() {
        assert_eq!(Text::from("a\nb\x1b").to_string(), "a\\nb\\u{1b}");
    }
}
