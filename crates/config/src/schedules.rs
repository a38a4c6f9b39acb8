//! `[schedules]`: what `bunker daemon` runs and when. Each key is a job; its value is a cron pattern (five
//! fields, or six with seconds first) whose job kind is the key, or a table with `cron` and `run` (the
//! kind) and the kind's options. `timezone` (an IANA name, UTC by default) and `jitter` (a random delay
//! of up to that much before each run, none by default) apply to every job unless the job sets its own.
//!
//! ```toml
//! [schedules]
//! timezone = "Europe/Berlin"
//! jitter = "5m"
//! backup = "0 1 * * *"                 # backup --all
//! forget = "0 4 * * *"                 # forget by the stack's policies, then prune
//! check = "0 5 * * 0"                  # check --read-data-subset n/7, n rotating
//! copy = "0 2 * * *"                   # copy --to every secondary repository
//! drill = "0 6 * * 0"                  # drill the latest point ([drill] report: its HTML report)
//! status = "*/10 * * * *"              # judge health; notify on warnings
//!
//! [schedules.cache-hourly]
//! run = "backup"
//! group = "cache"                      # a [groups] entry; default every target
//! cron = "0 * * * *"
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use toml::Value;

use crate::error::{Error, Result};
use crate::spans::{Document, KeyPath};

/// What a scheduled job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// `backup --all`, or `--group`, as one recovery point.
    Backup,
    /// `forget` by each target's retention policy, then `prune`.
    Forget,
    /// `check --read-data-subset n/N`, n moving on by one each run so N runs read every pack.
    Check,
    /// `copy --to` one or every secondary repository.
    Copy,
    /// Health evaluation (`status`): warnings and critical targets are notified.
    Status,
    /// `drill` of the latest recovery point (with `--report` when `[drill] report` is set).
    Drill,
}

impl JobKind {
    pub const NAMES: &'static str = "backup, forget, check, copy, status or drill";

    pub fn parse(name: &str) -> Option<JobKind> {
        Some(match name {
            "backup" => JobKind::Backup,
            "forget" => JobKind::Forget,
            "check" => JobKind::Check,
            "copy" => JobKind::Copy,
            "status" => JobKind::Status,
            "drill" => JobKind::Drill,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Forget => "forget",
            JobKind::Check => "check",
            JobKind::Copy => "copy",
            JobKind::Status => "status",
            JobKind::Drill => "drill",
        }
    }
}

/// One scheduled job.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The job's key in `[schedules]`.
    pub name: String,
    pub kind: JobKind,
    /// The pattern as written.
    pub cron: String,
    pattern: croner::Cron,
    pub timezone: Tz,
    pub jitter: Duration,
    /// Backup: the group to back up (default: every target).
    pub group: Option<String>,
    /// Copy: the secondary repository (default: every one).
    pub to: Option<String>,
    /// Check: the number of parts the rotating data check cycles through (default 7).
    pub parts: u32,
    /// 1-based line of the job's key.
    pub line: usize,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.kind, &self.cron, self.timezone, self.jitter, &self.group, &self.to, self.parts)
            == (
                &other.name,
                other.kind,
                &other.cron,
                other.timezone,
                other.jitter,
                &other.group,
                &other.to,
                other.parts,
            )
    }
}

impl Schedule {
    /// The first time after `after` the pattern matches in the job's time zone (`None`: never again).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        self.pattern.find_next_occurrence(&local, false).ok().map(|t| t.with_timezone(&Utc))
    }

    /// The last time at or before `at` the pattern matched (`None`: it never has).
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.timezone);
        self.pattern.find_previous_occurrence(&local, true).ok().map(|t| t.with_timezone(&Utc))
    }
}

/// Default number of parts of the rotating data check: a week of daily checks reads everything once.
pub const DEFAULT_CHECK_PARTS: u32 = 7;

const JOB_KEYS: &str = "run, cron, timezone, jitter, group, to, parts";

/// Reads `[schedules]`; each job is read on its own, its errors pushed to `errors` (a job with an error
/// is left out).
pub(crate) fn from_value(value: &Value, doc: &Document, errors: &mut Vec<Error>) -> Vec<Schedule> {
    let section = KeyPath::key("schedules");
    let Value::Table(table) = value else {
        errors.push(doc.wrong_type(&section, "a table ([schedules])", value));
        return Vec::new();
    };
    let timezone = match table.get("timezone").map(|v| timezone(v, doc, &section.child("timezone"))) {
        Some(Ok(tz)) => tz,
        Some(Err(e)) => {
            errors.push(e);
            Tz::UTC
        }
        None => Tz::UTC,
    };
    let jitter = match table.get("jitter").map(|v| duration(v, doc, &section.child("jitter"))) {
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            errors.push(e);
            Duration::ZERO
        }
        None => Duration::ZERO,
    };
    let mut jobs = Vec::new();
    for (name, value) in table {
        if matches!(name.as_str(), "timezone" | "jitter") {
            continue;
        }
        match job(name, value, doc, &section, timezone, jitter) {
            Ok(job) => jobs.push(job),
            Err(e) => errors.push(e),
        }
    }
    jobs.sort_by_key(|j| j.line);
    jobs
}

fn job(
    name: &str,
    value: &Value,
    doc: &Document,
    section: &KeyPath,
    timezone: Tz,
    jitter: Duration,
) -> Result<Schedule> {
    let path = section.child(name);
    let line = doc.key_line(&path);
    Ok(match value {
        Value::String(cron) => {
            let kind = JobKind::parse(name).ok_or_else(|| Error::Invalid {
                path: doc.path.clone(),
                line,
                key: path.to_string(),
                detail: format!(
                    "a job given by its pattern alone must be named after its kind ({}); \
                         otherwise write a table with run = \"KIND\" and cron = \"…\"",
                    JobKind::NAMES
                ),
            })?;
            Schedule {
                name: name.to_string(),
                kind,
                pattern: pattern(cron, doc, &path)?,
                cron: cron.clone(),
                timezone,
                jitter,
                group: None,
                to: None,
                parts: DEFAULT_CHECK_PARTS,
                line,
            }
        }
        Value::Table(job) => job_table(name, job, doc, &path, timezone, jitter)?,
        other => return Err(doc.wrong_type(&path, "a cron pattern or a table with run and cron", other)),
    })
}

fn job_table(
    name: &str,
    table: &toml::Table,
    doc: &Document,
    path: &KeyPath,
    timezone: Tz,
    jitter: Duration,
) -> Result<Schedule> {
    let line = doc.key_line(path);
    if let Some(key) = table.keys().find(|k| !JOB_KEYS.split(", ").any(|known| known == k.as_str())) {
        let key_path = path.child(key);
        return Err(Error::UnknownKey {
            path: doc.path.clone(),
            line: doc.key_line(&key_path),
            key: key_path.to_string(),
            expected: JOB_KEYS,
        });
    }
    let string = |key: &str| -> Result<Option<String>> {
        match table.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(Error::Empty {
                path: doc.path.clone(),
                line: doc.value_line(&path.child(key)),
                key: path.child(key).to_string(),
            }),
            Some(other) => Err(doc.wrong_type(&path.child(key), "a string", other)),
        }
    };
    let kind_name = string("run")?.unwrap_or_else(|| name.to_string());
    let kind = JobKind::parse(&kind_name).ok_or_else(|| Error::Invalid {
        path: doc.path.clone(),
        line: if table.contains_key("run") { doc.value_line(&path.child("run")) } else { line },
        key: path.child("run").to_string(),
        detail: format!("say which kind of job this is: run = one of {}", JobKind::NAMES),
    })?;
    let Some(cron) = string("cron")? else {
        return Err(Error::MissingKey {
            path: doc.path.clone(),
            line,
            key: path.child("cron").to_string(),
            hint: "add cron = \"MIN HOUR DOM MON DOW\" (e.g. \"0 1 * * *\")",
        });
    };
    let group = string("group")?;
    let to = string("to")?;
    let parts = match table.get("parts") {
        None => DEFAULT_CHECK_PARTS,
        Some(Value::Integer(n)) if (1..=1000).contains(n) => *n as u32,
        Some(other) => return Err(doc.wrong_type(&path.child("parts"), "a whole number from 1 to 1000", other)),
    };
    let misplaced = |key: &str, allowed: JobKind| -> Result<()> {
        if table.contains_key(key) && kind != allowed {
            return Err(Error::Invalid {
                path: doc.path.clone(),
                line: doc.key_line(&path.child(key)),
                key: path.child(key).to_string(),
                detail: format!("only {} jobs take {key}; remove it", allowed.as_str()),
            });
        }
        Ok(())
    };
    misplaced("group", JobKind::Backup)?;
    misplaced("to", JobKind::Copy)?;
    misplaced("parts", JobKind::Check)?;
    Ok(Schedule {
        name: name.to_string(),
        kind,
        pattern: pattern(&cron, doc, &path.child("cron"))?,
        cron,
        timezone: match table.get("timezone") {
            Some(v) => self::timezone(v, doc, &path.child("timezone"))?,
            None => timezone,
        },
        jitter: match table.get("jitter") {
            Some(v) => duration(v, doc, &path.child("jitter"))?,
            None => jitter,
        },
        group,
        to,
        parts,
        line,
    })
}

fn pattern(text: &str, doc: &Document, path: &KeyPath) -> Result<croner::Cron> {
    croner::parser::CronParser::new().parse(text).map_err(|e| Error::Invalid {
        path: doc.path.clone(),
        line: doc.value_line(path),
        key: path.to_string(),
        detail: format!("not a cron pattern ({e}); write five fields MIN HOUR DOM MON DOW, or six with seconds first"),
    })
}

fn timezone(value: &Value, doc: &Document, path: &KeyPath) -> Result<Tz> {
    match value {
        Value::String(name) => name.parse::<Tz>().map_err(|_| Error::Invalid {
            path: doc.path.clone(),
            line: doc.value_line(path),
            key: path.to_string(),
            detail: format!("unknown time zone {name:?}; use an IANA name such as \"UTC\" or \"Europe/Berlin\""),
        }),
        other => Err(doc.wrong_type(path, "a time zone name such as \"Europe/Berlin\"", other)),
    }
}

fn duration(value: &Value, doc: &Document, path: &KeyPath) -> Result<Duration> {
    let parsed = match value {
        Value::String(text) => humantime::parse_duration(text).ok(),
        _ => None,
    };
    parsed.ok_or_else(|| Error::WrongType {
        path: doc.path.clone(),
        line: doc.value_line(path),
        key: path.to_string(),
        expected: "a duration string like \"5m\"",
        found: value.type_str(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::TimeZone;

    use crate::Config;

    use super::*;

    fn schedules(text: &str) -> Result<Vec<Schedule>> {
        Config::parse_with_env(text, Path::new("/etc/bunker.toml"), &|_| None).map(|c| c.schedules)
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn short_and_long_forms() {
        let jobs = schedules(
            "[schedules]\njitter = \"5m\"\nbackup = \"0 1 * * *\"\n\n[schedules.cache]\nrun = \"backup\"\n\
             group = \"cache\"\ncron = \"0 * * * *\"\njitter = \"0s\"\n",
        )
        .unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            (jobs[0].name.as_str(), jobs[0].kind, jobs[0].jitter),
            ("backup", JobKind::Backup, Duration::from_secs(300))
        );
        assert_eq!(
            (jobs[1].name.as_str(), jobs[1].group.as_deref(), jobs[1].jitter),
            ("cache", Some("cache"), Duration::ZERO)
        );
        assert_eq!(jobs[1].line, 5);
    }

    #[test]
    fn next_and_last_follow_the_time_zone() {
        let jobs = schedules("[schedules]\ntimezone = \"Europe/Berlin\"\nbackup = \"0 1 * * *\"\n").unwrap();
        let job = &jobs[0];
        // 01:00 in Berlin is 00:00 UTC in winter and 23:00 UTC the day before in summer.
        assert_eq!(job.next_after(utc(2026, 11, 21, 12, 0, 0)), Some(utc(2026, 11, 22, 0, 0, 0)));
        assert_eq!(job.next_after(utc(2026, 7, 1, 12, 0, 0)), Some(utc(2026, 7, 1, 23, 0, 0)));
        assert_eq!(job.last_at_or_before(utc(2026, 11, 22, 0, 0, 0)), Some(utc(2026, 11, 22, 0, 0, 0)));
        assert_eq!(job.last_at_or_before(utc(2026, 11, 21, 23, 59, 59)), Some(utc(2026, 11, 21, 0, 0, 0)));
    }

    #[test]
    fn seconds_are_allowed_as_a_sixth_field() {
        let jobs = schedules("[schedules]\nstatus = \"*/2 * * * * *\"\n").unwrap();
        assert_eq!(jobs[0].next_after(utc(2026, 1, 1, 0, 0, 0)), Some(utc(2026, 1, 1, 0, 0, 2)));
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = schedules("[schedules]\nbackup = \"61 * * * *\"\n").unwrap_err().to_string();
        assert!(e.starts_with("/etc/bunker.toml:2: ") && e.contains("schedules.backup") && e.contains("cron"), "{e}");
        let e = schedules("[schedules]\nnightly = \"0 1 * * *\"\n").unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("named after its kind"), "{e}");
        let e =
            schedules("[schedules]\ntimezone = \"Mars/Olympus\"\nbackup = \"0 1 * * *\"\n").unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("unknown time zone"), "{e}");
        let e = schedules("[schedules.x]\nrun = \"backup\"\n").unwrap_err().to_string();
        assert!(e.contains("schedules.x.cron is missing"), "{e}");
        let e = schedules("[schedules.x]\nrun = \"forget\"\ncron = \"0 1 * * *\"\nto = \"offsite\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":4:") && e.contains("only copy jobs take to"), "{e}");
        let e = schedules("[schedules.x]\nrun = \"explode\"\ncron = \"0 1 * * *\"\n").unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("run = one of"), "{e}");
    }

    #[test]
    fn drill_jobs_in_both_forms() {
        let jobs = schedules(
            "[schedules]\ndrill = \"0 4 * * 0\"\n\n[schedules.weekday-drill]\nrun = \"drill\"\n\
             cron = \"30 5 * * 1-5\"\ntimezone = \"Europe/Berlin\"\n",
        )
        .unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            (jobs[0].name.as_str(), jobs[0].kind, jobs[0].cron.as_str()),
            ("drill", JobKind::Drill, "0 4 * * 0")
        );
        assert_eq!((jobs[1].name.as_str(), jobs[1].kind), ("weekday-drill", JobKind::Drill));
        assert_eq!((jobs[0].group.as_deref(), jobs[0].to.as_deref()), (None, None));
        // 2026-11-21 is a Saturday: the next Sunday 04:00 UTC.
        assert_eq!(jobs[0].next_after(utc(2026, 11, 21, 12, 0, 0)), Some(utc(2026, 11, 22, 4, 0, 0)));
        assert_eq!(JobKind::parse("drill"), Some(JobKind::Drill));
        assert_eq!(JobKind::Drill.as_str(), "drill");
        assert!(JobKind::NAMES.contains("drill"));
    }

    #[test]
    fn drill_jobs_take_no_other_kinds_options() {
        for (key, value, owner) in
            [("group", "\"cache\"", "backup"), ("to", "\"offsite\"", "copy"), ("parts", "7", "check")]
        {
            let text = format!("[schedules.d]\nrun = \"drill\"\ncron = \"0 4 * * 0\"\n{key} = {value}\n");
            let e = schedules(&text).unwrap_err().to_string();
            assert!(e.contains(":4:") && e.contains(&format!("only {owner} jobs take {key}")), "{e}");
        }
    }
}
