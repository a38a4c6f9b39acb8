//! Line numbers for errors.
//!
//! The text is parsed once into toml's span-carrying tree (`toml::de::DeTable`: every key and value is a
//! `Spanned` with its byte range). The loader works on a plain `toml::Table` built from that tree and, when it
//! has something to report, looks the offending key path up in the tree and turns the byte offset into a
//! line. This stays exact for every way TOML can spell a table (`[a.b]` headers, dotted keys, inline tables,
//! arrays of tables) where searching the text for `[targets.NAME]` would not.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::{Spanned, Value};

use crate::error::{Error, Result};

/// Where a value sits in the document: `targets.app-db.assert[0].sql`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub(crate) fn key(key: &str) -> Self {
        KeyPath(vec![Segment::Key(key.to_owned())])
    }

    pub(crate) fn child(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.push_key(key);
        path
    }

    pub(crate) fn push_key(&mut self, key: &str) {
        self.0.push(Segment::Key(key.to_owned()));
    }

    pub(crate) fn push_index(&mut self, index: usize) {
        self.0.push(Segment::Index(index));
    }

    pub(crate) fn pop(&mut self) {
        self.0.pop();
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The parsed text with its spans, able to say on which line a key or value is.
pub(crate) struct Document<'t> {
    text: &'t str,
    pub(crate) path: PathBuf,
    tree: Spanned<DeTable<'t>>,
}

impl<'t> Document<'t> {
    /// Parses `text`; a syntax error becomes `PATH:LINE:COL: message` with toml's first message line.
    pub(crate) fn parse(text: &'t str, path: &Path) -> Result<Self> {
        let tree = DeTable::parse(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |span| line_column(text, span.start));
            let message = e.message().lines().next().unwrap_or("invalid TOML").trim().to_owned();
            Error::Syntax { path: path.to_owned(), line, column, message }
        })?;
        Ok(Document { text, path: path.to_owned(), tree })
    }

    /// The whole document as a plain table (without spans).
    pub(crate) fn table(&self) -> Result<toml::Table> {
        let deserializer = toml::de::Deserializer::from(self.tree.clone());
        toml::Table::deserialize(deserializer).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |span| line_column(self.text, span.start));
            let message = e.message().lines().next().unwrap_or("invalid TOML").trim().to_owned();
            Error::Syntax { path: self.path.clone(), line, column, message }
        })
    }

    /// Line of the key that ends `path` (for a table, the line that first names it), or of the nearest
    /// enclosing key found.
    pub(crate) fn key_line(&self, path: &KeyPath) -> usize {
        self.line_of(path, true)
    }

    /// Line of the value at `path`, or of the nearest enclosing value found.
    /// `path`'s value is not what the key takes: the error, at the value's line.
    pub(crate) fn wrong_type(&self, path: &KeyPath, expected: &'static str, found: &toml::Value) -> Error {
        Error::WrongType {
            path: self.path.clone(),
            line: self.value_line(path),
            key: path.to_string(),
            expected,
            found: found.type_str(),
        }
    }

    pub(crate) fn value_line(&self, path: &KeyPath) -> usize {
        self.line_of(path, false)
    }

    /// Whether the document has a value at `path` (whatever its type).
    pub(crate) fn contains(&self, path: &KeyPath) -> bool {
        let mut current: Option<&DeValue> = None;
        for segment in &path.0 {
            let found = match (segment, current) {
                (Segment::Key(key), None) => entry(self.tree.get_ref(), key).map(|(_, v)| v),
                (Segment::Key(key), Some(value)) => value.as_table().and_then(|t| entry(t, key)).map(|(_, v)| v),
                (Segment::Index(index), Some(value)) => value.as_array().and_then(|a| a.get(*index)),
                (Segment::Index(_), None) => None,
            };
            let Some(value) = found else { return false };
            current = Some(value.get_ref());
        }
        current.is_some()
    }

    fn line_of(&self, path: &KeyPath, want_key: bool) -> usize {
        let offset = self.span_of(path, want_key).map_or(0, |span| span.start);
        line_column(self.text, offset).0
    }

    fn span_of(&self, path: &KeyPath, want_key: bool) -> Option<Range<usize>> {
        let mut best = None;
        let mut current: Option<&DeValue> = None;
        for (i, segment) in path.0.iter().enumerate() {
            let found = match (segment, current) {
                (Segment::Key(key), None) => entry(self.tree.get_ref(), key),
                (Segment::Key(key), Some(value)) => value.as_table().and_then(|t| entry(t, key)),
                (Segment::Index(index), Some(value)) => value.as_array().and_then(|a| a.get(*index)).map(|v| (None, v)),
                (Segment::Index(_), None) => None,
            };
            let Some((key_span, value)) = found else { break };
            best = match key_span {
                Some(span) if want_key && i + 1 == path.0.len() => Some(span),
                _ => Some(value.span()),
            };
            current = Some(value.get_ref());
        }
        best
    }
}

/// A key's span and its value.
fn entry<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<(Option<Range<usize>>, &'a Spanned<DeValue<'i>>)> {
    table.get_key_value(key).map(|(k, v)| (Some(k.span()), v))
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

pub(crate) fn duration(value: &Value, doc: &Document, key: &KeyPath) -> Result<Duration> {
    match value {
        Value::String(text) => humantime::parse_duration(text).ok(),
        _ => None,
    }
    .ok_or_else(|| doc.wrong_type(key, "a duration string like \"15m\" or \"26h\"", value))
}

/// A string or a list of strings (`after_restore`: one command or several).
pub(crate) fn strings(value: &Value, doc: &Document, key: &KeyPath, expected: &'static str) -> Result<Vec<String>> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| doc.wrong_type(key, expected, v)))
            .collect(),
        other => Err(doc.wrong_type(key, expected, other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# comment
[repository]
url = "/r"

[targets.app-db]
type = "postgres"
databases = ["a", "b"]

[[targets.app-db.assert]]
name = "first"

[[targets.app-db.assert]]
name = "second"

[targets]
inline = { type = "files", paths = ["/x"] }
"#;

    fn path(parts: &[&str]) -> KeyPath {
        let mut p = KeyPath::default();
        for part in parts {
            match part.parse::<usize>() {
                Ok(i) => p.push_index(i),
                Err(_) => p.push_key(part),
            }
        }
        p
    }

    #[test]
    fn lines_follow_keys_and_values() {
        let doc = Document::parse(TEXT, Path::new("bunker.toml")).unwrap();
        assert_eq!(doc.key_line(&path(&["repository"])), 2);
        assert_eq!(doc.value_line(&path(&["repository", "url"])), 3);
        assert_eq!(doc.key_line(&path(&["targets", "app-db"])), 5, "a header names the table first");
        assert_eq!(doc.value_line(&path(&["targets", "app-db", "databases", "1"])), 7);
        assert_eq!(doc.value_line(&path(&["targets", "app-db", "assert", "1", "name"])), 13);
        assert_eq!(doc.key_line(&path(&["targets", "inline"])), 16);
        assert_eq!(doc.value_line(&path(&["targets", "inline", "paths", "0"])), 16);
        assert_eq!(doc.key_line(&path(&["targets", "app-db", "nope"])), 5, "falls back to the enclosing table");
        assert!(doc.contains(&path(&["targets", "app-db", "assert", "1", "name"])));
        assert!(doc.contains(&path(&["targets", "inline"])));
        assert!(!doc.contains(&path(&["targets", "app-db", "nope"])), "an enclosing table is not the key");
        assert!(!doc.contains(&path(&["targets", "app-db", "assert", "2"])));
        assert!(!doc.contains(&KeyPath::default()), "the empty path names no value");
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncdé f", 0), (1, 1));
        assert_eq!(line_column("ab\ncdé f", 3), (2, 1));
        assert_eq!(line_column("ab\ncdé f", 7), (2, 4));
        assert_eq!(line_column("x", 99), (1, 2));
    }

    #[test]
    fn key_paths_display_like_toml() {
        assert_eq!(path(&["targets", "app-db", "assert", "0", "sql"]).to_string(), "targets.app-db.assert[0].sql");
        assert_eq!(KeyPath::key("repository").child("url").to_string(), "repository.url");
    }
}
