//! `/metrics`: the Prometheus text format, rendered from the catalog's runs, the health judgement and
//! the daemon's own jobs. Everything is read from the repository, so a daemon restarted on another host
//! exports the same values.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bunker_engine::catalog::{RunRecord, RunStatus};

use super::plan::Planned;
use crate::commands::status::StatusReport;
use crate::health::runs_by_target;

/// One metric family: its HELP, TYPE and samples (labels already rendered).
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Family { name, help, kind, samples: Vec::new() }
    }

    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        self.samples.push((render_labels(labels), value));
    }

    fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            let _ = writeln!(out, "{}{labels} {}", self.name, number(*value));
        }
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// `{a="x",b="y"}` with the text format's escapes; empty for no labels.
fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn seconds(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The whole `/metrics` page.
pub fn render(report: Option<&StatusReport>, runs: &[RunRecord], jobs: &[Planned]) -> String {
    let mut up = Family::new("bunker_up", "gauge", "1 while the daemon answers.");
    up.add(&[], 1.0);

    let mut last_success = Family::new(
        "bunker_last_success_timestamp_seconds",
        "gauge",
        "Unix time the target's last successful backup ended.",
    );
    let mut last_run =
        Family::new("bunker_last_run_timestamp_seconds", "gauge", "Unix time the target's last backup ended.");
    let mut duration =
        Family::new("bunker_backup_duration_seconds", "gauge", "How long the target's last successful backup took.");
    let mut bytes = Family::new(
        "bunker_backup_bytes",
        "gauge",
        "Bytes the target's last successful backup read from the source and stored in the repository.",
    );
    let mut runs_total = Family::new(
        "bunker_runs_total",
        "counter",
        "Runs recorded in the repository's catalog, by target, operation and status.",
    );
    let mut failures =
        Family::new("bunker_consecutive_failures", "gauge", "Failed backups of the target since its last success.");
    let mut health = Family::new("bunker_target_health", "gauge", "The target's health: 0 ok, 1 warning, 2 critical.");
    let mut wal_age = Family::new(
        "bunker_wal_archive_age_seconds",
        "gauge",
        "Age of the newest archived WAL of a physical PostgreSQL target: its live RPO.",
    );
    let mut repo_size = Family::new("bunker_repository_size_bytes", "gauge", "Bytes of every file in the repository.");
    let mut repo_snapshots = Family::new("bunker_repository_snapshots", "gauge", "Snapshots in the repository.");
    let mut check_time =
        Family::new("bunker_last_check_timestamp_seconds", "gauge", "Unix time the last repository check ended.");
    let mut check_ok = Family::new("bunker_last_check_success", "gauge", "1 when the last repository check passed.");
    let mut job_last =
        Family::new("bunker_job_last_run_timestamp_seconds", "gauge", "Unix time the daemon last started the job.");
    let mut job_exit =
        Family::new("bunker_job_last_exit_code", "gauge", "Exit code of the job's last run by the daemon.");
    let mut job_next =
        Family::new("bunker_job_next_run_timestamp_seconds", "gauge", "Unix time the daemon will next run the job.");

    for (target, target_runs) in runs_by_target(runs) {
        let mut backups: Vec<&RunRecord> = target_runs.iter().copied().filter(|r| r.operation == "backup").collect();
        backups.sort_by_key(|r| r.ended);
        let t = target.as_str();
        if let Some(last) = backups.last() {
            last_run.add(&[("target", t)], seconds(last.ended));
        }
        if let Some(ok) = backups.iter().rev().find(|r| r.status == RunStatus::Success) {
            last_success.add(&[("target", t)], seconds(ok.ended));
            duration.add(&[("target", t)], ok.duration_secs());
            // A target of several snapshots (one per database) records one run each: sum the last set.
            let same: Vec<&&RunRecord> = backups.iter().filter(|r| r.started == ok.started).collect();
            let read: u64 = same.iter().map(|r| r.bytes_read).sum();
            let stored: u64 = same.iter().map(|r| r.bytes_stored).sum();
            bytes.add(&[("target", t), ("kind", "read")], read as f64);
            bytes.add(&[("target", t), ("kind", "stored")], stored as f64);
        }
    }
    let mut counts: BTreeMap<(String, String, &'static str), u64> = BTreeMap::new();
    for r in runs {
        let target = r.target.as_deref().map(|t| t.split('/').next().unwrap_or(t)).unwrap_or("").to_string();
        *counts.entry((target, r.operation.clone(), r.status.as_str())).or_default() += 1;
    }
    for ((target, operation, status), n) in &counts {
        runs_total.add(&[("target", target), ("operation", operation), ("status", status)], *n as f64);
    }

    if let Some(report) = report {
        for t in &report.targets {
            failures.add(&[("target", &t.target)], t.consecutive_failures as f64);
            health.add(&[("target", &t.target)], t.level as i32 as f64);
            if let Some(age) = t.wal_archive_age_secs {
                wal_age.add(&[("target", &t.target)], age);
            }
        }
        repo_size.add(&[], report.repository.stored_bytes as f64);
        repo_snapshots.add(&[], report.repository.snapshots as f64);
        if let Some(check) = &report.last_check {
            check_time.add(&[], seconds(check.ended));
            check_ok.add(&[], if check.status == RunStatus::Success { 1.0 } else { 0.0 });
        }
    }

    for job in jobs {
        let name = job.schedule.name.as_str();
        if let Some(t) = job.last_started {
            job_last.add(&[("schedule", name)], seconds(t));
        }
        if let Some(code) = job.last_exit {
            job_exit.add(&[("schedule", name)], code as f64);
        }
        if let Some(t) = job.next {
            job_next.add(&[("schedule", name)], seconds(t));
        }
    }

    let mut out = String::new();
    for family in [
        &up,
        &last_success,
        &last_run,
        &duration,
        &bytes,
        &runs_total,
        &failures,
        &health,
        &wal_age,
        &repo_size,
        &repo_snapshots,
        &check_time,
        &check_ok,
        &job_last,
        &job_exit,
        &job_next,
    ] {
        family.write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn run(op: &str, target: &str, status: RunStatus, minute: u32, read: u64, stored: u64) -> RunRecord {
        let started = chrono::Utc.with_ymd_and_hms(2026, 11, 21, 1, minute, 0).unwrap();
        let mut r = RunRecord::new(op, started, status);
        r.ended = started + chrono::Duration::seconds(30);
        r.target = Some(target.into());
        r.bytes_read = read;
        r.bytes_stored = stored;
        r
    }

    #[test]
    fn backups_render_per_target() {
        let runs = vec![
            run("backup", "db", RunStatus::Success, 0, 100, 40),
            run("backup", "db", RunStatus::Failed, 5, 0, 0),
            run("backup", "cache", RunStatus::Success, 1, 7, 3),
            run("restore", "db", RunStatus::Success, 9, 100, 0),
        ];
        let text = render(None, &runs, &[]);
        let t0 = chrono::Utc.with_ymd_and_hms(2026, 11, 21, 1, 0, 30).unwrap().timestamp();
        assert!(text.contains(&format!("bunker_last_success_timestamp_seconds{{target=\"db\"}} {t0}\n")), "{text}");
        assert!(text.contains("bunker_backup_duration_seconds{target=\"db\"} 30\n"));
        assert!(text.contains("bunker_backup_bytes{target=\"db\",kind=\"read\"} 100\n"));
        assert!(text.contains("bunker_backup_bytes{target=\"db\",kind=\"stored\"} 40\n"));
        assert!(text.contains("bunker_runs_total{target=\"db\",operation=\"backup\",status=\"failed\"} 1\n"));
        assert!(text.contains("bunker_runs_total{target=\"db\",operation=\"restore\",status=\"success\"} 1\n"));
        assert!(text.contains("# TYPE bunker_runs_total counter\n"));
        assert!(text.starts_with("# HELP bunker_up"));
        // Every sample line is NAME{labels} VALUE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap_or_else(|_| panic!("bad sample {line}"));
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(render_labels(&[("target", "a\"b\\c\nd")]), "{target=\"a\\\"b\\\\c\\nd\"}");
        assert_eq!(render_labels(&[]), "");
    }
}
