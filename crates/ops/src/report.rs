//! What the catalog says about a period, per target and per operation: how many runs, the share that
//! succeeded, the average duration and size of successful ones, and the storage they added per day (the
//! numbers runbooks compute from a `backup_records` table with SQL). `bunker report` prints it.

use std::collections::BTreeMap;

use bunker_engine::catalog::{RunRecord, RunStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Serialize, PartialEq)]
pub struct Line {
    pub target: String,
    pub operation: String,
    pub runs: usize,
    pub succeeded: usize,
    /// `succeeded / runs`, 0–1.
    pub success_rate: f64,
    /// Over successful runs.
    pub avg_duration_secs: f64,
    pub avg_bytes_read: f64,
    pub avg_bytes_stored: f64,
    /// Bytes stored by every run of the period, divided by its days.
    pub stored_per_day: f64,
    pub last_success: Option<DateTime<Utc>>,
}

/// The report's lines for runs that started at or after `since`, as of `now`: one per target and
/// operation (runs without a target are grouped under "-"), sorted by target then operation. Runs the
/// daemon records about itself (`schedule`) and per-WAL-segment runs are left out.
pub fn summarise(runs: &[RunRecord], since: DateTime<Utc>, now: DateTime<Utc>, target: Option<&str>) -> Vec<Line> {
    let days = ((now - since).num_seconds() as f64 / 86_400.0).max(1.0 / 24.0);
    let mut groups: BTreeMap<(String, String), Vec<&RunRecord>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.started >= since) {
        if matches!(r.operation.as_str(), "schedule" | "wal-push" | "wal-fetch" | "hook") {
            continue;
        }
        let t = r.target.as_deref().map(|t| t.split('/').next().unwrap_or(t)).unwrap_or("-");
        if target.is_some_and(|want| want != t) {
            continue;
        }
        groups.entry((t.to_string(), r.operation.clone())).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((target, operation), runs)| {
            let ok: Vec<&&RunRecord> = runs.iter().filter(|r| r.status == RunStatus::Success).collect();
            let avg = |f: &dyn Fn(&RunRecord) -> f64| {
                if ok.is_empty() {
                    0.0
                } else {
                    ok.iter().map(|r| f(r)).sum::<f64>() / ok.len() as f64
                }
            };
            Line {
                runs: runs.len(),
                succeeded: ok.len(),
                success_rate: ok.len() as f64 / runs.len() as f64,
                avg_duration_secs: avg(&|r| r.duration_secs()),
                avg_bytes_read: avg(&|r| r.bytes_read as f64),
                avg_bytes_stored: avg(&|r| r.bytes_stored as f64),
                stored_per_day: runs.iter().map(|r| r.bytes_stored as f64).sum::<f64>() / days,
                last_success: ok.iter().map(|r| r.ended).max(),
                target,
                operation,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn run(op: &str, target: Option<&str>, status: RunStatus, day: u32, secs: i64, stored: u64) -> RunRecord {
        let started = Utc.with_ymd_and_hms(2026, 11, day, 1, 0, 0).unwrap();
        let mut r = RunRecord::new(op, started, status);
        r.ended = started + chrono::Duration::seconds(secs);
        r.target = target.map(str::to_string);
        r.bytes_read = stored * 10;
        r.bytes_stored = stored;
        r
    }

    #[test]
    fn rates_averages_and_storage_per_day() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap();
        let since = now - chrono::Duration::days(10);
        let runs = vec![
            run("backup", Some("db"), RunStatus::Success, 12, 10, 100),
            run("backup", Some("db"), RunStatus::Success, 13, 30, 300),
            run("backup", Some("db"), RunStatus::Failed, 14, 5, 0),
            run("backup", Some("db"), RunStatus::Failed, 14, 5, 0),
            run("backup", Some("db/app"), RunStatus::Success, 15, 20, 600),
            run("backup", Some("db"), RunStatus::Success, 1, 99, 9999), // before the period
            run("restore", Some("db"), RunStatus::Success, 16, 40, 0),
            run("schedule", None, RunStatus::Success, 16, 40, 0),
            run("check", None, RunStatus::Failed, 17, 8, 0),
        ];
        let lines = summarise(&runs, since, now, None);
        let keys: Vec<_> = lines.iter().map(|l| (l.target.as_str(), l.operation.as_str())).collect();
        assert_eq!(keys, [("-", "check"), ("db", "backup"), ("db", "restore")]);
        let db = &lines[1];
        assert_eq!((db.runs, db.succeeded), (5, 3));
        assert!((db.success_rate - 0.6).abs() < 1e-9);
        assert!((db.avg_duration_secs - 20.0).abs() < 1e-9);
        assert!((db.avg_bytes_stored - 1000.0 / 3.0).abs() < 1e-6);
        assert!((db.stored_per_day - 100.0).abs() < 1e-9, "1000 bytes over 10 days");
        assert_eq!(lines[0].success_rate, 0.0);
        assert_eq!(summarise(&runs, since, now, Some("nothing")), Vec::new());
    }
}
