//! How healthy each target is, judged from the catalog's runs as of a given time (an injected clock:
//! the same judgement serves `bunker status`, the daemon's `/status` and its metrics, and tests).

use std::collections::BTreeMap;
use std::time::Duration;

use bunker_config::HealthConfig;
use bunker_engine::catalog::{RunRecord, RunStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Critical,
}

impl Level {
    /// `bunker status`'s exit code: 0, 1, 2.
    pub fn exit_code(self) -> i32 {
        self as i32
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetHealth {
    pub target: String,
    pub level: Level,
    /// Why it is not ok, one line each.
    pub reasons: Vec<String>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_success_age_secs: Option<f64>,
    pub last_run_status: Option<RunStatus>,
    /// Failed backups since the last successful one.
    pub consecutive_failures: u32,
    pub failures_7d: u32,
    pub runs_7d: u32,
    /// Age of the newest archived WAL (physical PostgreSQL): the live RPO.
    pub wal_archive_age_secs: Option<f64>,
}

fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or_default()
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{:.1} h", s as f64 / 3600.0),
        _ => format!("{:.1} days", s as f64 / 86400.0),
    }
}

/// Judges `target` from its backup runs (any order) as of `now`. `wal_age` is given for physical
/// PostgreSQL targets (None: nothing archived yet).
pub fn evaluate_target(
    target: &str,
    runs: &[&RunRecord],
    now: DateTime<Utc>,
    thresholds: &HealthConfig,
    physical: Option<Option<Duration>>,
) -> TargetHealth {
    let mut backups: Vec<&RunRecord> = runs.iter().copied().filter(|r| r.operation == "backup").collect();
    backups.sort_by_key(|r| std::cmp::Reverse(r.ended));
    let last_success = backups.iter().find(|r| r.status == RunStatus::Success).map(|r| r.ended);
    let consecutive_failures =
        backups.iter().take_while(|r| r.status != RunStatus::Success).filter(|r| r.status == RunStatus::Failed).count()
            as u32;
    let week = now - chrono::Duration::days(7);
    let recent: Vec<_> = backups.iter().filter(|r| r.ended > week).collect();
    let failures_7d = recent.iter().filter(|r| r.status == RunStatus::Failed).count() as u32;
    let mut level = Level::Ok;
    let mut reasons = Vec::new();
    let mut raise = |l: Level, why: String| {
        level = level.max(l);
        reasons.push(why);
    };
    match last_success {
        None => raise(Level::Critical, "no successful backup yet".into()),
        Some(t) => {
            let a = age(now, t);
            if a >= thresholds.critical_after {
                raise(Level::Critical, format!("last successful backup {} ago", human(a)));
            } else if a >= thresholds.warning_after {
                raise(Level::Warning, format!("last successful backup {} ago", human(a)));
            }
        }
    }
    if consecutive_failures > 0 {
        let last_error = backups.first().and_then(|r| r.error.clone()).unwrap_or_default();
        raise(Level::Warning, format!("{consecutive_failures} failed backup(s) since the last success: {last_error}"));
    }
    // A target that fails now and then but has just succeeded: still worth a look.
    if consecutive_failures == 0 && thresholds.failures_warning > 0 && failures_7d >= thresholds.failures_warning {
        raise(Level::Warning, format!("{failures_7d} failed backups in 7 days (the last one succeeded)"));
    }
    if backups.first().is_some_and(|r| r.status == RunStatus::Warning) {
        raise(Level::Warning, "the last backup is incomplete (some input could not be read)".into());
    }
    let wal_archive_age_secs = match physical {
        None => None,
        Some(None) => {
            raise(Level::Critical, "no WAL archived: is archive_command set to bunker wal-push?".into());
            None
        }
        Some(Some(a)) => {
            if a >= thresholds.wal_critical_after {
                raise(Level::Critical, format!("newest archived WAL is {} old", human(a)));
            } else if a >= thresholds.wal_warning_after {
                raise(Level::Warning, format!("newest archived WAL is {} old", human(a)));
            }
            Some(a.as_secs_f64())
        }
    };
    TargetHealth {
        target: target.to_string(),
        level,
        reasons,
        last_success,
        last_success_age_secs: last_success.map(|t| age(now, t).as_secs_f64()),
        last_run_status: backups.first().map(|r| r.status),
        consecutive_failures,
        failures_7d,
        runs_7d: recent.len() as u32,
        wal_archive_age_secs,
    }
}

/// The runs of each target (by the target a run names; `NAME/part` counts for `NAME`).
pub fn runs_by_target(runs: &[RunRecord]) -> BTreeMap<String, Vec<&RunRecord>> {
    let mut out: BTreeMap<String, Vec<&RunRecord>> = BTreeMap::new();
    for r in runs {
        if let Some(t) = &r.target {
            let base = t.split('/').next().unwrap_or(t);
            out.entry(base.to_string()).or_default().push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &str, status: RunStatus, ended: DateTime<Utc>) -> RunRecord {
        let mut r = RunRecord::new(op, ended - chrono::Duration::minutes(1), status);
        r.ended = ended;
        r.target = Some("db".into());
        if status == RunStatus::Failed {
            r.error = Some("connection refused".into());
        }
        r
    }

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().with_timezone(&Utc) + chrono::Duration::hours(h)
    }

    fn judge(runs: &[RunRecord], now: DateTime<Utc>) -> TargetHealth {
        let refs: Vec<&RunRecord> = runs.iter().collect();
        evaluate_target("db", &refs, now, &HealthConfig::default(), None)
    }

    #[test]
    fn age_of_the_last_success_sets_the_level() {
        let runs = vec![run("backup", RunStatus::Success, at(0)), run("restore", RunStatus::Success, at(30))];
        assert_eq!(judge(&runs, at(1)).level, Level::Ok);
        assert_eq!(judge(&runs, at(25)).level, Level::Ok);
        let h = judge(&runs, at(27));
        assert_eq!(h.level, Level::Warning, "{:?}", h.reasons);
        assert!(h.reasons[0].contains("27.0 h ago"), "{:?}", h.reasons);
        assert_eq!(judge(&runs, at(49)).level, Level::Critical, "a restore is not a backup");
        assert_eq!(judge(&[], at(0)).level, Level::Critical);
        assert_eq!(judge(&[], at(0)).reasons, ["no successful backup yet"]);
    }

    #[test]
    fn failures_since_the_last_success_are_counted_and_warned() {
        let runs = vec![
            run("backup", RunStatus::Failed, at(-200)),
            run("backup", RunStatus::Success, at(0)),
            run("backup", RunStatus::Failed, at(2)),
            run("backup", RunStatus::Failed, at(3)),
        ];
        let h = judge(&runs, at(4));
        assert_eq!((h.consecutive_failures, h.failures_7d, h.runs_7d), (2, 2, 3));
        assert_eq!(h.level, Level::Warning);
        assert!(h.reasons.iter().any(|r| r.contains("2 failed backup(s)") && r.contains("connection refused")));
        assert_eq!(h.last_run_status, Some(RunStatus::Failed));
    }

    #[test]
    fn repeated_failures_within_a_week_warn_even_after_a_success() {
        let mut runs = vec![];
        for h in [0, 10, 20] {
            runs.push(run("backup", RunStatus::Failed, at(h)));
            runs.push(run("backup", RunStatus::Success, at(h + 1)));
        }
        let h = judge(&runs, at(22));
        assert_eq!((h.consecutive_failures, h.failures_7d), (0, 3));
        assert_eq!(h.level, Level::Warning, "{:?}", h.reasons);
        assert!(h.reasons.iter().any(|r| r.contains("3 failed backups in 7 days")), "{:?}", h.reasons);
        // Fewer than the threshold, or the check turned off: ok.
        assert_eq!(judge(&runs[2..], at(22)).level, Level::Ok);
        let refs: Vec<&RunRecord> = runs.iter().collect();
        let off = HealthConfig { failures_warning: 0, ..HealthConfig::default() };
        assert_eq!(evaluate_target("db", &refs, at(22), &off, None).level, Level::Ok);
        // A week later they no longer count.
        assert_eq!(judge(&runs, at(24 * 8)).failures_7d, 0);
    }

    #[test]
    fn the_wal_archive_age_judges_physical_targets() {
        let runs = [run("backup", RunStatus::Success, at(0))];
        let refs: Vec<&RunRecord> = runs.iter().collect();
        let t = HealthConfig::default();
        let with = |age: Option<u64>| evaluate_target("db", &refs, at(1), &t, Some(age.map(Duration::from_secs))).level;
        assert_eq!(with(Some(30)), Level::Ok);
        assert_eq!(with(Some(900)), Level::Warning);
        assert_eq!(with(Some(7200)), Level::Critical);
        assert_eq!(with(None), Level::Critical);
    }
}
