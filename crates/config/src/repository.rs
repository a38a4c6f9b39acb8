//! `[repository]`: where the repository lives and how to get its password.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::error::{Error, Result};
use crate::spans::{Document, KeyPath};

const KEYS: &str = "url, password, password_file, object_lock or object_lock_mode";

/// The `[repository]` section. Relative local paths are already resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryConfig {
    /// A path, `file://PATH` or `s3://BUCKET/PREFIX?…`, as the engine's location parser takes it.
    pub url: String,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// S3 Object Lock for a secondary `copy` creates (`object_lock = "365d"`): how long each object is
    /// retained, and the mode (`governance`, the default, or `compliance`).
    pub object_lock: Option<std::time::Duration>,
    pub object_lock_mode: Option<String>,
}

/// A value that must never be shown: `Debug` and `Display` print `***`. Call [`Secret::expose`] to use it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to the code that needs it (never to a log line).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl RepositoryConfig {
    /// Builds the section found at `section` (`repository` or `repositories.NAME`) from its (already
    /// interpolated) table.
    pub(crate) fn from_table(table: &Table, doc: &Document, base: &Path, section: &KeyPath) -> Result<Self> {
        let known = ["url", "password", "password_file", "object_lock", "object_lock_mode"];
        if let Some(key) = table.keys().find(|k| !known.contains(&k.as_str())) {
            let key_path = section.child(key);
            let line = doc.key_line(&key_path);
            return Err(Error::UnknownKey { path: doc.path.clone(), line, key: key_path.to_string(), expected: KEYS });
        }
        let string = |key: &str| string_value(table, doc, section, key);

        let Some(url) = string("url")? else {
            return Err(Error::MissingKey {
                path: doc.path.clone(),
                line: doc.key_line(section),
                key: section.child("url").to_string(),
                hint: "add url = \"PATH|file://PATH|s3://BUCKET/PREFIX\" to the section",
            });
        };
        let password = string("password")?;
        let password_file = string("password_file")?;
        if password.is_some() && password_file.is_some() {
            return Err(Error::BothPasswords {
                path: doc.path.clone(),
                line: doc.key_line(section),
                section: section.to_string(),
            });
        }
        let invalid = |key: &str, detail: &str| Error::Invalid {
            path: doc.path.clone(),
            line: doc.value_line(&section.child(key)),
            key: section.child(key).to_string(),
            detail: detail.to_string(),
        };
        let object_lock = match string("object_lock")? {
            None => None,
            Some(text) => Some(
                humantime::parse_duration(&text)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| invalid("object_lock", "not a retention period; use e.g. \"30d\" or \"365d\""))?,
            ),
        };
        let object_lock_mode = string("object_lock_mode")?;
        if let Some(mode) = &object_lock_mode {
            if !matches!(mode.as_str(), "governance" | "compliance") {
                return Err(invalid("object_lock_mode", "use \"governance\" or \"compliance\""));
            }
            if object_lock.is_none() {
                return Err(invalid("object_lock_mode", "has no object_lock period beside it"));
            }
        }
        Ok(RepositoryConfig {
            url: resolve_url(&url, base),
            password: password.map(Secret),
            password_file: password_file.map(|p| resolve_path(Path::new(&p), base)),
            object_lock,
            object_lock_mode,
        })
    }
}

/// A string key of `[repository]`: absent is `None`; another type or an empty string is an error.
fn string_value(table: &Table, doc: &Document, section: &KeyPath, key: &str) -> Result<Option<String>> {
    let key_path = section.child(key);
    match table.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => {
            Err(Error::Empty { path: doc.path.clone(), line: doc.value_line(&key_path), key: key_path.to_string() })
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::WrongType {
            path: doc.path.clone(),
            line: doc.value_line(&key_path),
            key: key_path.to_string(),
            expected: "a string",
            found: other.type_str(),
        }),
    }
}

/// Local repository locations relative to the config file are made relative to its directory; other
/// schemes (`s3://…`) are left as they are.
fn resolve_url(url: &str, base: &Path) -> String {
    if let Some(path) = url.strip_prefix("file://") {
        return format!("file://{}", resolve_path(Path::new(path), base).display());
    }
    if has_scheme(url) {
        return url.to_owned();
    }
    resolve_path(Path::new(url), base).display().to_string()
}

/// `scheme://` where scheme is `[a-zA-Z][a-zA-Z0-9+.-]*`, as in RFC 3986.
fn has_scheme(url: &str) -> bool {
    let Some((scheme, _)) = url.split_once("://") else { return false };
    let mut chars = scheme.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
}

/// `base/path` for a relative path, without `./` components; absolute paths are kept.
pub(crate) fn resolve_path(path: &Path, base: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    base.join(path).components().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.expose(), "hunter2");
        let repo = RepositoryConfig {
            url: "/r".into(),
            password: Some(secret),
            password_file: None,
            object_lock: None,
            object_lock_mode: None,
        };
        assert!(!format!("{repo:?}").contains("hunter2"));
        assert!(!format!("{repo:#?}").contains("hunter2"));
    }

    #[test]
    fn local_locations_resolve_against_the_config_directory() {
        let base = Path::new("/etc/bunker");
        assert_eq!(resolve_url("repo", base), "/etc/bunker/repo");
        assert_eq!(resolve_url("./repo/sub", base), "/etc/bunker/repo/sub");
        assert_eq!(resolve_url("../repo", base), "/etc/bunker/../repo");
        assert_eq!(resolve_url("/var/repo", base), "/var/repo");
        assert_eq!(resolve_url("file://repo", base), "file:///etc/bunker/repo");
        assert_eq!(resolve_url("file:///var/repo", base), "file:///var/repo");
        let s3 = "s3://bucket/prefix?endpoint=http://127.0.0.1:9000";
        assert_eq!(resolve_url(s3, base), s3);
        assert_eq!(resolve_path(Path::new("pw"), Path::new("")), Path::new("pw"), "a bare file name stays relative");
    }

    #[test]
    fn object_lock_keys_are_checked() {
        let parse = |text: &str| crate::Config::parse_with_env(text, Path::new("/b.toml"), &|_| None);
        let c =
            parse("[repositories.vault]\nurl = \"/v\"\nobject_lock = \"365d\"\nobject_lock_mode = \"compliance\"\n")
                .unwrap();
        let (_, vault) = &c.secondaries[0];
        assert_eq!(vault.object_lock, Some(std::time::Duration::from_secs(365 * 86_400)));
        assert_eq!(vault.object_lock_mode.as_deref(), Some("compliance"));
        let e = parse("[repositories.vault]\nurl = \"/v\"\nobject_lock = \"a year\"\n").unwrap_err().to_string();
        assert!(e.contains("object_lock") && e.contains("365d"), "{e}");
        let e = parse("[repositories.vault]\nurl = \"/v\"\nobject_lock = \"30d\"\nobject_lock_mode = \"strict\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("governance") && e.contains("compliance"), "{e}");
        let e =
            parse("[repositories.vault]\nurl = \"/v\"\nobject_lock_mode = \"compliance\"\n").unwrap_err().to_string();
        assert!(e.contains("no object_lock period"), "{e}");
    }

    #[test]
    fn schemes_are_recognised_strictly() {
        assert!(has_scheme("s3://b/p"));
        assert!(has_scheme("git+ssh://x"));
        assert!(!has_scheme("dir/with://inside"));
        assert!(!has_scheme("://x"));
        assert!(!has_scheme("/plain/path"));
    }
}
