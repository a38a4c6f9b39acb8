//! `[retention]` (the default for every target) and a target's own `retention = { … }`, which overrides
//! it key by key. Counts follow restic (`keep_daily = 7`: the newest snapshot of each of the last 7 days
//! that have one); `keep_within` and `min_age` are durations ("30d", "12h"). `min_age` is the floor below
//! which nothing is removed: 7 days unless set (`"0s"` turns it off).
//!
//! A rule can also be switched off, so that a target can say "not by this rule" over what `[retention]`
//! says: `keep_* = 0`, and `keep_within = "0s"` or `"none"`, mean no rule of that kind (in `[retention]`
//! too, where it is the same as leaving the key out). `retention = "none"` on a target switches every rule
//! off: `bunker forget` keeps all its snapshots, as for a target without a policy (`min_age`, inherited
//! from `[retention]`, then only floors `--keep-*` given on the command line). While a section is read, an
//! off rule is held as a zero; [`Config::retention_for`](crate::Config::retention_for) hands back the
//! policy in force with those left out, so no caller ever sees a rule that keeps 0.

use std::time::Duration;

use toml::Value;

use crate::error::{Error, Result};
use crate::spans::{Document, KeyPath};

/// The floor when none is configured.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

const KEYS: &str = "keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within, min_age";

/// A retention policy. Each rule is `None` when not in force. Only a target's own keys as written
/// ([`TargetConfig::retention`](crate::TargetConfig::retention)) hold a rule switched off, as `Some(0)`
/// (or a zero `keep_within`), which overrides `[retention]`; [`Config::retention`](crate::Config::retention)
/// and what [`Config::retention_for`](crate::Config::retention_for) returns never do.
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
    /// `retention = "none"`: every rule switched off, `min_age` left to `[retention]`.
    pub fn none() -> Self {
        RetentionConfig {
            keep_last: Some(0),
            keep_hourly: Some(0),
            keep_daily: Some(0),
            keep_weekly: Some(0),
            keep_monthly: Some(0),
            keep_yearly: Some(0),
            keep_within: Some(Duration::ZERO),
            min_age: None,
        }
    }

    /// Reads a target's `retention`: a table, or `"none"` ([`RetentionConfig::none`]). Off rules stay as
    /// zeros, to override `[retention]`.
    pub(crate) fn from_target_value(value: &Value, doc: &Document, path: &KeyPath) -> Result<Self> {
        match value {
            Value::String(s) if s == "none" => Ok(RetentionConfig::none()),
            Value::Table(_) => Self::from_value(value, doc, path),
            other => Err(Error::WrongType {
                path: doc.path.clone(),
                line: doc.value_line(path),
                key: path.to_string(),
                expected: "a table (e.g. { keep_daily = 7, keep_weekly = 4 }) or \"none\"",
                found: match other {
                    Value::String(_) => "another string",
                    other => other.type_str(),
                },
            }),
        }
    }

    /// Reads a retention table found at `path` (`retention` or `targets.NAME.retention`), off rules as zeros.
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
                    Value::Integer(n) if (0..=u32::MAX as i64).contains(n) => {
                        *slot = Some(*n as u32);
                        Ok(())
                    }
                    Value::Integer(_) => Err(Error::WrongType {
                        path: doc.path.clone(),
                        line,
                        key: key_path.to_string(),
                        expected: "a count of 0 or more (0: none by this rule)",
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
            let duration = |slot: &mut Option<Duration>, none_allowed: bool| -> Result<()> {
                let expected = if none_allowed {
                    "a duration string like \"30d\" or \"12h\" (\"0s\" or \"none\": no such rule)"
                } else {
                    "a duration string like \"30d\" or \"12h\""
                };
                let wrong = |found| Error::WrongType {
                    path: doc.path.clone(),
                    line,
                    key: key_path.to_string(),
                    expected,
                    found,
                };
                let text = match value {
                    Value::String(s) => s,
                    other => return Err(wrong(other.type_str())),
                };
                *slot = Some(match text.as_str() {
                    "none" if none_allowed => Duration::ZERO,
                    text => humantime::parse_duration(text).map_err(|_| wrong("something else"))?,
                });
                Ok(())
            };
            match key.as_str() {
                "keep_last" => count(&mut out.keep_last)?,
                "keep_hourly" => count(&mut out.keep_hourly)?,
                "keep_daily" => count(&mut out.keep_daily)?,
                "keep_weekly" => count(&mut out.keep_weekly)?,
                "keep_monthly" => count(&mut out.keep_monthly)?,
                "keep_yearly" => count(&mut out.keep_yearly)?,
                "keep_within" => duration(&mut out.keep_within, true)?,
                "min_age" => duration(&mut out.min_age, false)?,
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

    /// `self` with every key `over` sets replacing it (an off rule of `over` too).
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

    /// The policy in force: the rules switched off (a count of 0, a zero `keep_within`) left out.
    pub fn in_force(&self) -> RetentionConfig {
        let count = |n: Option<u32>| n.filter(|n| *n > 0);
        RetentionConfig {
            keep_last: count(self.keep_last),
            keep_hourly: count(self.keep_hourly),
            keep_daily: count(self.keep_daily),
            keep_weekly: count(self.keep_weekly),
            keep_monthly: count(self.keep_monthly),
            keep_yearly: count(self.keep_yearly),
            keep_within: self.keep_within.filter(|d| !d.is_zero()),
            min_age: self.min_age,
        }
    }

    /// Whether any rule keeps anything (a policy without one would remove all but the guarded snapshots).
    /// A rule switched off keeps nothing.
    pub fn has_rules(&self) -> bool {
        let in_force = self.in_force();
        in_force.keep_last.is_some()
            || in_force.keep_hourly.is_some()
            || in_force.keep_daily.is_some()
            || in_force.keep_weekly.is_some()
            || in_force.keep_monthly.is_some()
            || in_force.keep_yearly.is_some()
            || in_force.keep_within.is_some()
    }

    /// The floor in force: `min_age`, else [`DEFAULT_MIN_AGE`].
    pub fn floor(&self) -> Duration {
        self.min_age.unwrap_or(DEFAULT_MIN_AGE)
    }
}
