//! `[drill]`: how `bunker drill` proves the stack restorable. The stack's objectives (`rto_objective`:
//! start of the drill to the last target verified; `rpo_objective`: the point's age when drilled), the
//! targets drilled, the `after_restore` smoke tests run against the restored stack, and where S3 objects
//! are restored (a temporary directory unless `scratch_s3` names a bucket and prefix). A target's own
//! `rto_objective` / `rpo_objective` keys hold it to its own objectives.

use std::path::PathBuf;
use std::time::Duration;

use toml::Value;

use crate::error::{Error, Result};
use crate::spans::{duration, strings, Document, KeyPath};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillConfig {
    pub rto_objective: Option<Duration>,
    pub rpo_objective: Option<Duration>,
    /// The targets drilled (empty: every target of the point).
    pub targets: Vec<String>,
    /// Shell commands run in turn once every target is restored, with `BUNKER_DRILL_*` in their environment.
    pub after_restore: Vec<String>,
    /// How long one `after_restore` command may run (default 10 minutes).
    pub hook_timeout: Duration,
    /// `s3://bucket/prefix?endpoint=…`: restore S3 targets under this prefix (a fresh sub-prefix per
    /// drill, removed afterwards) instead of into a temporary directory.
    pub scratch_s3: Option<String>,
    /// Where the daemon's scheduled drills write their HTML report.
    pub report: Option<PathBuf>,
    /// 1-based line of `[drill]`, for errors about the section as a whole.
    pub line: usize,
}

impl Default for DrillConfig {
    fn default() -> Self {
        DrillConfig {
            rto_objective: None,
            rpo_objective: None,
            targets: Vec::new(),
            after_restore: Vec::new(),
            hook_timeout: Duration::from_secs(600),
            scratch_s3: None,
            report: None,
            line: 0,
        }
    }
}

const KEYS: &str = "rto_objective, rpo_objective, targets, after_restore, hook_timeout, scratch_s3, report";

impl DrillConfig {
    pub(crate) fn from_value(value: &Value, doc: &Document, base: &std::path::Path) -> Result<Self> {
        let path = KeyPath::key("drill");
        let Value::Table(table) = value else { return Err(doc.wrong_type(&path, "a table ([drill])", value)) };
        let mut out = DrillConfig { line: doc.key_line(&path), ..Default::default() };
        for (key, value) in table {
            let key_path = path.child(key);
            match key.as_str() {
                "rto_objective" => out.rto_objective = Some(duration(value, doc, &key_path)?),
                "rpo_objective" => out.rpo_objective = Some(duration(value, doc, &key_path)?),
                "hook_timeout" => out.hook_timeout = duration(value, doc, &key_path)?,
                "targets" => out.targets = strings(value, doc, &key_path, "a list of target names")?,
                "after_restore" => {
                    out.after_restore = strings(value, doc, &key_path, "a command or a list of commands")?
                }
                "scratch_s3" => match value {
                    Value::String(s) if s.starts_with("s3://") => out.scratch_s3 = Some(s.clone()),
                    _ => return Err(doc.wrong_type(&key_path, "an s3://bucket/prefix URL", value)),
                },
                "report" => match value {
                    Value::String(s) if !s.is_empty() => out.report = Some(base.join(s)),
                    _ => return Err(doc.wrong_type(&key_path, "a file path", value)),
                },
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
}

/// `rto_objective` / `rpo_objective` of a target (taken out of its options like its hooks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Objectives {
    pub rto: Option<Duration>,
    pub rpo: Option<Duration>,
}
