//! `[health]`: when `bunker status` (and the daemon) call a target late. `warning_after` and
//! `critical_after` (26 h and 48 h) measure the time since its last successful backup;
//! `wal_warning_after` and `wal_critical_after` (10 min and 1 h) the age of the newest archived WAL of a
//! physical PostgreSQL target, its live RPO.

use std::time::Duration;

use toml::Value;

use crate::error::{Error, Result};
use crate::spans::{Document, KeyPath};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub warning_after: Duration,
    pub critical_after: Duration,
    pub wal_warning_after: Duration,
    pub wal_critical_after: Duration,
    /// Failed backups within 7 days that make a target a warning even when its last backup succeeded
    /// (a flapping target); 0 turns the check off.
    pub failures_warning: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            warning_after: Duration::from_secs(26 * 3600),
            critical_after: Duration::from_secs(48 * 3600),
            wal_warning_after: Duration::from_secs(600),
            wal_critical_after: Duration::from_secs(3600),
            failures_warning: 3,
        }
    }
}

impl HealthConfig {
    pub(crate) fn from_value(value: &Value, doc: &Document) -> Result<Self> {
        let path = KeyPath::key("health");
        let Value::Table(table) = value else {
            return Err(Error::WrongType {
                path: doc.path.clone(),
                line: doc.key_line(&path),
                key: "health".into(),
                expected: "a table ([health])",
                found: value.type_str(),
            });
        };
        let mut out = HealthConfig::default();
        for (key, value) in table {
            let key_path = path.child(key);
            if key == "failures_warning" {
                out.failures_warning = match value {
                    Value::Integer(n) if (0..=10_000).contains(n) => *n as u32,
                    _ => {
                        return Err(Error::WrongType {
                            path: doc.path.clone(),
                            line: doc.value_line(&key_path),
                            key: key_path.to_string(),
                            expected: "a count of failed backups in 7 days, like 3 (0: off)",
                            found: value.type_str(),
                        })
                    }
                };
                continue;
            }
            let slot = match key.as_str() {
                "warning_after" => &mut out.warning_after,
                "critical_after" => &mut out.critical_after,
                "wal_warning_after" => &mut out.wal_warning_after,
                "wal_critical_after" => &mut out.wal_critical_after,
                _ => {
                    return Err(Error::UnknownKey {
                        path: doc.path.clone(),
                        line: doc.key_line(&key_path),
                        key: key_path.to_string(),
                        expected:
                            "warning_after, critical_after, wal_warning_after, wal_critical_after, failures_warning",
                    })
                }
            };
            let parsed = match value {
                Value::String(text) => humantime::parse_duration(text).ok(),
                _ => None,
            };
            *slot = parsed.ok_or_else(|| Error::WrongType {
                path: doc.path.clone(),
                line: doc.value_line(&key_path),
                key: key_path.to_string(),
                expected: "a duration string like \"26h\" or \"10m\"",
                found: value.type_str(),
            })?;
        }
        if out.critical_after < out.warning_after || out.wal_critical_after < out.wal_warning_after {
            return Err(Error::WrongType {
                path: doc.path.clone(),
                line: doc.key_line(&path),
                key: "health".into(),
                expected: "thresholds whose critical_after is at least their warning_after",
                found: "a critical threshold below its warning one",
            });
        }
        Ok(out)
    }
}
