//! `[targets.NAME]`: one thing to back up. This module knows only the name and the `type`; what else a
//! target says is the business of the source named by `type`, which reads it with [`TargetConfig::options`].

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use crate::error::{Error, Result};
use crate::spans::{Document, KeyPath};

/// Longest target name accepted; names end up in snapshot tags and file names.
pub use crate::error::MAX_NAME_LEN;

/// One `[targets.NAME]` table, interpolated, with `type` taken out of `options`.
#[derive(Clone, PartialEq)]
pub struct TargetConfig {
    pub name: String,
    /// The `type` key: which source handles this target (`postgres`, `files`, …). Never empty.
    pub kind: String,
    /// Every other key of the table, for the source to read with [`TargetConfig::options`].
    pub options: Table,
    /// 1-based line where the file first names this target (usually its `[targets.NAME]` header).
    pub line: usize,
    /// The config file, so that errors about this target can say where it is.
    pub origin: PathBuf,
    /// Commands run around its backups and restores (taken out of `options`: every source has them).
    pub hooks: Hooks,
    /// Its own `retention = { … }` keys as written, over `[retention]` (taken out of `options` too): a rule
    /// it switches off (`keep_daily = 0`, `retention = "none"`) is held as a zero here. Read the policy in
    /// force with [`Config::retention_for`](crate::Config::retention_for), which never shows a zero.
    pub retention: Option<crate::RetentionConfig>,
    /// Its own `rto_objective` / `rpo_objective`, which `bunker drill` holds it to (taken out of `options`).
    pub objectives: crate::Objectives,
}

/// `before_backup`, `after_backup`, `before_restore`, `after_restore`, `hook_timeout` and
/// `drill_after_restore` of a target.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hooks {
    pub before_backup: Option<String>,
    pub after_backup: Option<String>,
    pub before_restore: Option<String>,
    pub after_restore: Option<String>,
    /// How long one hook may run (default 5 minutes).
    pub timeout: std::time::Duration,
    /// `drill_after_restore = true`: a drill runs `after_restore` too, once it has restored this target into
    /// its scratch instance. Off by default, because a hook written for a real restore may act on
    /// production (rebuild a live search index, call a live service).
    pub drill_after_restore: bool,
}

/// Hook keys a target table may hold besides its source's options.
const HOOK_KEYS: [&str; 4] = ["before_backup", "after_backup", "before_restore", "after_restore"];

/// Prints option keys but not their values: an option (a URL with a password, a token) may be a secret.
impl fmt::Debug for TargetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("line", &self.line)
            .field("origin", &self.origin)
            .finish()
    }
}

impl TargetConfig {
    /// Deserialises the options into a source's own struct (use `#[serde(deny_unknown_fields)]` on it so a
    /// misspelt key is reported). Errors name the file, the target's line, the target and the key, e.g.
    /// `bunker.toml:12: target app-db: unknown option "databse" (expected one of url, mode, databases)`.
    /// Every misspelt top-level option is named, not only the first.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T> {
        let mut table = self.options.clone();
        let mut unknown: Vec<(String, String)> = Vec::new();
        loop {
            let error = match serde_path_to_error::deserialize::<_, T>(Value::Table(table.clone())) {
                Ok(v) if unknown.is_empty() => return Ok(v),
                Ok(_) => None,
                Err(e) => Some(e),
            };
            // An unknown top-level key: set it aside and read on, to find the others.
            if let Some(e) = &error {
                let segments: Vec<_> = e.path().iter().collect();
                let message = e.inner().message();
                if let (Some((field, expected)), [_]) = (unknown_field(message), segments.as_slice()) {
                    if table.remove(&field).is_some() {
                        unknown.push((field, expected));
                        continue;
                    }
                }
            }
            if !unknown.is_empty() {
                let names: Vec<String> = unknown.iter().map(|(f, _)| format!("{f:?}")).collect();
                let s = if names.len() == 1 { "" } else { "s" };
                let detail = format!("unknown option{s} {} ({}); check the spelling", names.join(", "), unknown[0].1);
                return Err(Error::TargetOption {
                    path: self.origin.clone(),
                    line: self.line,
                    target: self.name.clone(),
                    detail,
                });
            }
            return Err(self.option_error(error.expect("an error")));
        }
    }

    fn option_error(&self, e: serde_path_to_error::Error<toml::de::Error>) -> Error {
        let message = e.inner().message();
        let detail = describe(message);
        // For an unknown key the path ends with that key, which the detail already names.
        let segments: Vec<_> = e.path().iter().collect();
        let keep = if message.starts_with("unknown field") { segments.len().saturating_sub(1) } else { segments.len() };
        let detail = match option_path(&segments[..keep]) {
            key if key.is_empty() => detail,
            key => format!("{key}: {detail}"),
        };
        Error::TargetOption { path: self.origin.clone(), line: self.line, target: self.name.clone(), detail }
    }

    /// Builds a target from its entry under `[targets]` (already interpolated).
    pub(crate) fn from_entry(name: &str, value: &Value, doc: &Document, origin: &Path) -> Result<Self> {
        let path = KeyPath::key("targets").child(name);
        let line = doc.key_line(&path);
        if !is_valid_name(name) {
            return Err(Error::BadTargetName { path: origin.to_owned(), line, name: name.to_owned() });
        }
        let Value::Table(table) = value else {
            return Err(Error::WrongType {
                path: origin.to_owned(),
                line,
                key: path.to_string(),
                expected: "a table ([targets.NAME] with type = \"…\")",
                found: value.type_str(),
            });
        };
        let type_path = path.child("type");
        let kind = match table.get("type") {
            Some(Value::String(kind)) if !kind.is_empty() => kind.clone(),
            Some(Value::String(_)) => {
                return Err(Error::Empty {
                    path: origin.to_owned(),
                    line: doc.value_line(&type_path),
                    key: type_path.to_string(),
                })
            }
            Some(other) => {
                return Err(Error::WrongType {
                    path: origin.to_owned(),
                    line: doc.value_line(&type_path),
                    key: type_path.to_string(),
                    expected: "a string",
                    found: other.type_str(),
                })
            }
            None => {
                return Err(Error::MissingKey {
                    path: origin.to_owned(),
                    line,
                    key: type_path.to_string(),
                    hint: "add type = \"SOURCE\" naming the source that backs it up (e.g. postgres, files)",
                })
            }
        };
        let mut options = table.clone();
        options.remove("type");
        let mut hooks = Hooks { timeout: std::time::Duration::from_secs(300), ..Default::default() };
        for key in HOOK_KEYS.iter().chain(&["hook_timeout"]) {
            let Some(value) = options.remove(*key) else { continue };
            let key_path = path.child(key);
            let Value::String(text) = value else {
                return Err(Error::WrongType {
                    path: origin.to_owned(),
                    line: doc.value_line(&key_path),
                    key: key_path.to_string(),
                    expected: "a string (a shell command, or for hook_timeout a duration like \"5m\")",
                    found: value.type_str(),
                });
            };
            let slot = match *key {
                "before_backup" => &mut hooks.before_backup,
                "after_backup" => &mut hooks.after_backup,
                "before_restore" => &mut hooks.before_restore,
                "after_restore" => &mut hooks.after_restore,
                _ => {
                    hooks.timeout = humantime::parse_duration(&text).map_err(|e| Error::TargetOption {
                        path: origin.to_owned(),
                        line: doc.value_line(&key_path),
                        target: name.to_owned(),
                        detail: format!("hook_timeout: {e} (write e.g. \"5m\")"),
                    })?;
                    continue;
                }
            };
            *slot = Some(text);
        }
        if let Some(value) = options.remove("drill_after_restore") {
            let key_path = path.child("drill_after_restore");
            let Value::Boolean(on) = value else {
                return Err(doc.wrong_type(&key_path, "true or false", &value));
            };
            hooks.drill_after_restore = on;
        }
        let retention = match options.remove("retention") {
            Some(value) => Some(crate::RetentionConfig::from_target_value(&value, doc, &path.child("retention"))?),
            None => None,
        };
        let mut objectives = crate::Objectives::default();
        for (key, slot) in [("rto_objective", &mut objectives.rto), ("rpo_objective", &mut objectives.rpo)] {
            if let Some(value) = options.remove(key) {
                *slot = Some(crate::spans::duration(&value, doc, &path.child(key))?);
            }
        }
        Ok(TargetConfig {
            name: name.to_owned(),
            kind,
            options,
            line,
            origin: origin.to_owned(),
            hooks,
            retention,
            objectives,
        })
    }
}

/// `databases[1]`, `tls.mode`: where inside the options serde failed.
fn option_path(segments: &[&serde_path_to_error::Segment]) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } if out.is_empty() => out.push_str(key),
            Segment::Map { key } | Segment::Enum { variant: key } => out.push_str(&format!(".{key}")),
            Segment::Unknown => out.push_str(if out.is_empty() { "?" } else { ".?" }),
        }
    }
    out
}

/// `[a-zA-Z0-9][a-zA-Z0-9._-]*`, at most [`MAX_NAME_LEN`] characters.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME_LEN
        && matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The field and what was expected instead, from serde's "unknown field" message.
fn unknown_field(message: &str) -> Option<(String, String)> {
    let first = message.lines().next().unwrap_or(message).trim();
    let (field, rest) = first.strip_prefix("unknown field `").and_then(|r| r.split_once('`'))?;
    let expected = rest.trim_start_matches(", ").replace('`', "");
    let expected = if expected == "there are no fields" { "this type takes no options".into() } else { expected };
    Some((field.to_string(), expected))
}

/// Rewords serde's messages about fields as messages about options, and keeps string values out of them.
fn describe(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    if let Some((field, expected)) = unknown_field(message) {
        return format!("unknown option {field:?} ({expected}); check the spelling");
    }
    if let Some(field) = first.strip_prefix("missing field `").and_then(|r| r.strip_suffix('`')) {
        return format!("missing option {field:?}; add it to [targets.NAME]");
    }
    redact_strings(first)
}

/// serde shows an unexpected string as `string "…"`; that string may be a password, so drop it.
fn redact_strings(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        out.push_str("a string");
        let quoted = &rest[at + MARK.len()..];
        let mut escaped = false;
        let end = quoted.char_indices().find(|&(_, c)| {
            let closes = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            closes
        });
        rest = end.map_or("", |(i, _)| &quoted[i + 1..]);
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for good in ["app-db", "a", "0", "db.prod_2", &"x".repeat(MAX_NAME_LEN)] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "-a", ".a", "_a", "a b", "a/b", "é", "a:b", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn serde_messages_become_option_messages() {
        assert_eq!(
            describe("unknown field `databse`, expected one of `url`, `mode`, `databases`"),
            r#"unknown option "databse" (expected one of url, mode, databases); check the spelling"#
        );
        assert_eq!(
            describe("unknown field `x`, expected `url`"),
            r#"unknown option "x" (expected url); check the spelling"#
        );
        assert_eq!(
            describe("unknown field `x`, there are no fields"),
            r#"unknown option "x" (this type takes no options); check the spelling"#
        );
        assert_eq!(describe("missing field `url`\n"), r#"missing option "url"; add it to [targets.NAME]"#);
    }

    #[test]
    fn string_values_are_kept_out_of_messages() {
        assert_eq!(
            redact_strings(r#"invalid type: string "hunter2", expected u32"#),
            "invalid type: a string, expected u32"
        );
        assert_eq!(redact_strings(r#"x string "a\"b" y string "c" z"#), "x a string y a string z");
        assert_eq!(redact_strings(r#"cut string "abc"#), "cut a string");
        assert_eq!(
            redact_strings("invalid type: integer `5`, expected a string"),
            "invalid type: integer `5`, expected a string"
        );
    }
}
