//! `[catalog]`: how long the repository's history (its run records) is kept.
//!
//! ```toml
//! [catalog]
//! keep = "2y"   # records older than this go at `bunker prune`; unset: kept forever
//! ```
//! Recovery points, drills and failures about snapshots the repository still holds are kept however old (see
//! `bunker-ops`'s `history` module).

use std::time::Duration;

use toml::Value;

use crate::error::{Error, Result};
use crate::spans::{Document, KeyPath};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogConfig {
    /// How long run records are kept; `None`: forever.
    pub keep: Option<Duration>,
}

impl CatalogConfig {
    pub(crate) fn from_value(value: &Value, doc: &Document) -> Result<Self> {
        let path = KeyPath::key("catalog");
        let Value::Table(table) = value else {
            return Err(Error::WrongType {
                path: doc.path.clone(),
                line: doc.key_line(&path),
                key: "catalog".into(),
                expected: "a table ([catalog])",
                found: value.type_str(),
            });
        };
        let mut out = CatalogConfig::default();
        for (key, value) in table {
            let key_path = path.child(key);
            if key != "keep" {
                return Err(Error::UnknownKey {
                    path: doc.path.clone(),
                    line: doc.key_line(&key_path),
                    key: key_path.to_string(),
                    expected: "keep",
                });
            }
            let parsed = match value {
                Value::String(text) => humantime::parse_duration(text).ok().filter(|d| !d.is_zero()),
                _ => None,
            };
            out.keep = Some(parsed.ok_or_else(|| Error::WrongType {
                path: doc.path.clone(),
                line: doc.value_line(&key_path),
                key: key_path.to_string(),
                expected: "a duration string like \"2y\" or \"400days\" (leave the key out to keep history forever)",
                found: value.type_str(),
            })?);
        }
        Ok(out)
    }
}
