//! `[groups]`: named sets of targets, backed up together as one recovery point (`bunker backup --group`,
//! a backup job's `group`). Two spellings:
//!
//! ```toml
//! [groups]
//! nightly = ["app-db", "uploads"]          # short: the targets alone
//!
//! [groups.web]                             # long: the targets and what to run once they are restored
//! targets = ["app-db", "uploads"]
//! after_restore = "curl -fsS http://localhost/health"   # a command or a list of commands
//! ```
//!
//! Each group is read on its own here (its shape: a non-empty list of names); whether the names are
//! targets of the file is checked with the other cross-references, in `Config::check_keeping`.

use std::fmt;

use toml::Value;

use crate::error::{Error, Result};
use crate::spans::{Document, KeyPath};

/// One entry of `[groups]`.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Its key in `[groups]`.
    pub name: String,
    /// The targets it names, in the order written; never empty.
    pub targets: Vec<String>,
    /// Shell commands run in turn once the group's targets are restored: its smoke tests, as `[drill]
    /// after_restore` is the stack's (long form only; else empty).
    pub after_restore: Vec<String>,
    /// 1-based line of its key (`web = […]`, or the `[groups.web]` header).
    pub line: usize,
}

/// Shows how many commands, not the commands: interpolation may have put a token in one.
impl fmt::Debug for GroupConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupConfig")
            .field("name", &self.name)
            .field("targets", &self.targets)
            .field("after_restore", &format_args!("{} command(s)", self.after_restore.len()))
            .field("line", &self.line)
            .finish()
    }
}

const KEYS: &str = "targets or after_restore";

/// Reads `[groups]`, in file order; each group's errors are pushed to `errors` and the group left out.
pub(crate) fn from_value(value: &Value, doc: &Document, errors: &mut Vec<Error>) -> Vec<GroupConfig> {
    let section = KeyPath::key("groups");
    let Value::Table(table) = value else {
        errors.push(doc.wrong_type(&section, "a table ([groups])", value));
        return Vec::new();
    };
    let mut groups: Vec<GroupConfig> = table
        .iter()
        .filter_map(|(name, value)| group(name, value, doc, &section.child(name)).map_err(|e| errors.push(e)).ok())
        .collect();
    groups.sort_by_key(|g| g.line);
    groups
}

fn group(name: &str, value: &Value, doc: &Document, path: &KeyPath) -> Result<GroupConfig> {
    let line = doc.key_line(path);
    let (targets, after_restore) = match value {
        Value::Table(table) => {
            if let Some(key) = table.keys().find(|k| !matches!(k.as_str(), "targets" | "after_restore")) {
                let key_path = path.child(key);
                return Err(Error::UnknownKey {
                    path: doc.path.clone(),
                    line: doc.key_line(&key_path),
                    key: key_path.to_string(),
                    expected: KEYS,
                });
            }
            let Some(targets) = table.get("targets") else {
                return Err(Error::MissingKey {
                    path: doc.path.clone(),
                    line,
                    key: path.child("targets").to_string(),
                    hint: "add targets = [\"TARGET\", …] naming the group's targets",
                });
            };
            let after_restore = match table.get("after_restore") {
                Some(value) => {
                    crate::spans::strings(value, doc, &path.child("after_restore"), "a command or a list of commands")?
                }
                None => Vec::new(),
            };
            (names(targets, doc, &path.child("targets"))?, after_restore)
        }
        other => (names(other, doc, path)?, Vec::new()),
    };
    Ok(GroupConfig { name: name.to_owned(), targets, after_restore, line })
}

/// A non-empty list of target names (whether they are targets is checked later).
fn names(value: &Value, doc: &Document, path: &KeyPath) -> Result<Vec<String>> {
    let invalid = |detail: &str| Error::Invalid {
        path: doc.path.clone(),
        line: doc.value_line(path),
        key: path.to_string(),
        detail: detail.to_owned(),
    };
    match value {
        Value::Array(list) if !list.is_empty() => list
            .iter()
            .map(|m| m.as_str().map(str::to_owned).ok_or_else(|| invalid("must be a list of target names")))
            .collect(),
        _ => Err(invalid("must be a non-empty list of target names")),
    }
}
