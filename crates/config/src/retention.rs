//! `[retention]` (the default for every target) and a target's own `retention = { … }`, which overrides
//! it key by key. Counts follow restic (`keep_daily = 7`: the newest snapshot of each of the last 7 days
//! that have one); `keep_within` and `min_age` are durations ("30d", "12h"). `min_age` is the floor below
//! which nothing is removed: 7 days unless set (`"0s"` turns it off).

use std::time::Duration;

use toml::Value;

use crate::error::{Error, Result};
use crate::spans::{Document, KeyPath};

/// The floor when none is configured.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

const KEYS: &str = "keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within, min_age";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionConfig {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<Duration>,
    pub min_age: Option<Duration>,
}

impl RetentionConfig {
    /// Reads a retention table found at `path` (`retention` or `targets.NAME.retention`).
    pub(crate) fn from_value(value: &Value, doc: &Document, path: &KeyPath) -> Result<Self> {
        let Value::Table(table) = value else {
            return Err(Error::WrongType {
                path: doc.path.clone(),
                line: doc.key_line(path),
                key: path.to_string(),
                expected: "a table (e.g. { keep_daily = 7, keep_weekly = 4 })",
                found: value.type_str(),
            });
        };
        let mut out = RetentionConfig::default();
        for (key, value) in table {
            let key_path = path.child(key);
            let line = doc.value_line(&key_path);
            let count = |slot: &mut Option<u32>| -> Result<()> {
                match value {
                    Value::Integer(n) if (1..=u32::MAX as i64).contains(n) => {
                        *slot = Some(*n as u32);
                        Ok(())
                    }
                    Value::Integer(_) => Err(Error::WrongType {
                        path: doc.path.clone(),
                        line,
                        key: key_path.to_string(),
                        expected: "a count of at least 1 (remove the key to keep none by this rule)",
                        found: "a number out of range",
                    }),
                    other => Err(Error::WrongType {
                        path: doc.path.clone(),
                        line,
                        key: key_path.to_string(),
                        expected: "a whole number",
                        found: other.type_str(),
                    }),
                }
            };
            let duration = |slot: &mut Option<Duration>| -> Result<()> {
                let text = match value {
                    Value::String(s) => s,
                    other => {
                        return Err(Error::WrongType {
                            path: doc.path.clone(),
                            line,
                            key: key_path.to_string(),
                            expected: "a duration string like \"30d\" or \"12h\"",
                            found: other.type_str(),
                        })
                    }
                };
                *slot = Some(humantime::parse_duration(text).map_err(|_| Error::WrongType {
                    path: doc.path.clone(),
                    line,
                    key: key_path.to_string(),
                    expected: "a duration string like \"30d\" or \"12h\"",
                    found: "something else",
                })?);
                Ok(())
            };
            match key.as_str() {
                "keep_last" => count(&mut out.keep_last)?,
                "keep_hourly" => count(&mut out.keep_hourly)?,
                "keep_daily" => count(&mut out.keep_daily)?,
                "keep_weekly" => count(&mut out.keep_weekly)?,
                "keep_monthly" => count(&mut out.keep_monthly)?,
                "keep_yearly" => count(&mut out.keep_yearly)?,
                "keep_within" => duration(&mut out.keep_within)?,
                "min_age" => duration(&mut out.min_age)?,
                _ => {
                    return Err(Error::UnknownKey {
                        path: doc.path.clone(),
                        line: doc.key_line(&key_path),
                        key: key_path.to_string(),
                        expected: KEYS,
                    })
                }
            }
        }
        Ok(out)
    }

    /// `self` with every key `over` sets replacing it.
    pub fn overridden_by(&self, over: &RetentionConfig) -> RetentionConfig {
        RetentionConfig {
            keep_last: over.keep_last.or(self.keep_last),
            keep_hourly: over.keep_hourly.or(self.keep_hourly),
            keep_daily: over.keep_daily.or(self.keep_daily),
            keep_weekly: over.keep_weekly.or(self.keep_weekly),
            keep_monthly: over.keep_monthly.or(self.keep_monthly),
            keep_yearly: over.keep_yearly.or(self.keep_yearly),
            keep_within: over.keep_within.or(self.keep_within),
            min_age: over.min_age.or(self.min_age),
        }
    }

    /// Whether any rule keeps anything (a policy without one would remove all but the guarded snapshots).
    pub fn has_rules(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
            || self.keep_within.is_some()
    }

    /// The floor in force: `min_age`, else [`DEFAULT_MIN_AGE`].
    pub fn floor(&self) -> Duration {
        self.min_age.unwrap_or(DEFAULT_MIN_AGE)
    }
}
