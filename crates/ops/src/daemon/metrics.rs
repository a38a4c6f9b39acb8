//! `/metrics`: the Prometheus text format, rendered from the catalog's runs (backups, checks, drills),
//! the health judgement and the daemon's own jobs. Everything is read from the repository, so a daemon
//! restarted on another host exports the same values.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bunker_engine::catalog::{RunRecord, RunStatus};

use super::plan::Planned;
use crate::drill::record::{drills, StoredDrill, TargetDrill};
use crate::health::runs_by_target;
use crate::status::StatusReport;

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

/// The CPU time this process has used, in seconds (user and system, every thread).
pub fn process_cpu_seconds() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass and has no other effect.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) } != 0 {
        return 0.0;
    }
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// The daemon's own cost of keeping the page fresh: the last refresh's CPU time and the history's size.
pub fn render_refresh(cpu_seconds: f64, records: usize) -> String {
    let mut cpu = Family::new(
        "bunker_daemon_refresh_cpu_seconds",
        "gauge",
        "CPU time the daemon's last refresh took: listing the catalog, reading what was new, judging health.",
    );
    cpu.add(&[], (cpu_seconds * 1e6).round() / 1e6);
    let mut records_family = Family::new("bunker_catalog_records", "gauge", "Run records in the repository's catalog.");
    records_family.add(&[], records as f64);
    let mut out = String::new();
    cpu.write(&mut out);
    records_family.write(&mut out);
    out
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
    let mut health_level = Family::new(
        "bunker_health_level",
        "gauge",
        "The target's health as `bunker status` judges it: 0 ok, 1 warning, 2 critical.",
    );
    let mut thresholds = [
        (
            "bunker_health_warning_after_seconds",
            "[health] warning_after: no successful backup for this long is a warning.",
        ),
        (
            "bunker_health_critical_after_seconds",
            "[health] critical_after: no successful backup for this long is critical.",
        ),
        ("bunker_health_wal_warning_after_seconds", "[health] wal_warning_after: a WAL archive this old is a warning."),
        (
            "bunker_health_wal_critical_after_seconds",
            "[health] wal_critical_after: a WAL archive this old is critical.",
        ),
    ]
    .map(|(name, help)| Family::new(name, "gauge", help));
    let mut wal_age = Family::new(
        "bunker_wal_archive_age_seconds",
        "gauge",
        "Age of the newest archived WAL of a physical PostgreSQL target: its live RPO.",
    );
    let mut repo_size = Family::new("bunker_repository_size_bytes", "gauge", "Bytes of every file in the repository.");
    let mut repo_snapshots = Family::new("bunker_repository_snapshots", "gauge", "Snapshots in the repository.");
    let mut recipients = Family::new(
        "bunker_repository_recipients",
        "gauge",
        "Age recipients the repository's content is sealed for (0: a password repository).",
    );
    let mut write_only =
        Family::new("bunker_repository_write_only", "gauge", "1 when this host's key cannot read the content back.");
    let mut lock_period = Family::new(
        "bunker_repository_object_lock_seconds",
        "gauge",
        "The repository's S3 Object Lock period (absent: no lock).",
    );
    let mut lock_earliest = Family::new(
        "bunker_repository_object_lock_earliest_until_timestamp_seconds",
        "gauge",
        "Unix time the earliest lock of an object kept snapshots need ends, as the last object-lock extend left it.",
    );
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
            health_level.add(&[("target", &t.target)], t.level as i32 as f64);
            // The stack file's thresholds, per target, so that alerting rules fire when `status` warns.
            for (family, key) in thresholds.iter_mut().zip([
                "warning_after_secs",
                "critical_after_secs",
                "wal_warning_after_secs",
                "wal_critical_after_secs",
            ]) {
                if let Some(v) = report.thresholds[key].as_f64() {
                    family.add(&[("target", &t.target)], v);
                }
            }
            if let Some(age) = t.wal_archive_age_secs {
                wal_age.add(&[("target", &t.target)], age);
            }
        }
        repo_size.add(&[], report.repository.stored_bytes as f64);
        repo_snapshots.add(&[], report.repository.snapshots as f64);
        recipients.add(&[], report.repository.protection.recipients as f64);
        write_only.add(&[], if report.repository.protection.write_only { 1.0 } else { 0.0 });
        if let Some(lock) = &report.repository.protection.object_lock {
            lock_period.add(&[], lock.period_secs as f64);
            if let Some(t) = lock.earliest_until {
                lock_earliest.add(&[], seconds(t));
            }
        }
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

    let drill = drill_families(runs);
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
        &health_level,
        &thresholds[0],
        &thresholds[1],
        &thresholds[2],
        &thresholds[3],
        &wal_age,
        &repo_size,
        &repo_snapshots,
        &recipients,
        &write_only,
        &lock_period,
        &lock_earliest,
        &check_time,
        &check_ok,
        &job_last,
        &job_exit,
        &job_next,
    ]
    .into_iter()
    .chain(&drill)
    {
        family.write(&mut out);
    }
    out
}

/// The drill families. Per target, the newest drill that included the target (a later drill of other
/// targets leaves its values); for the stack, the newest drill of all. A drill that failed before it
/// could judge (no point, no server binaries…) records no details: it counts as a failed drill but has
/// no RTO or RPO.
fn drill_families(runs: &[RunRecord]) -> Vec<Family> {
    let mut success = Family::new(
        "bunker_drill_success",
        "gauge",
        "1 when the target passed the newest restore drill that included it.",
    );
    let mut rto = Family::new(
        "bunker_drill_rto_seconds",
        "gauge",
        "The target's RTO measured by that drill: the drill's start to the target restored and verified.",
    );
    let mut rpo = Family::new(
        "bunker_drill_rpo_seconds",
        "gauge",
        "The target's RPO measured by that drill: the age of its newest snapshot drilled when the drill started.",
    );
    let mut last_time =
        Family::new("bunker_drill_last_timestamp_seconds", "gauge", "Unix time the newest restore drill started.");
    let mut last_ok = Family::new("bunker_drill_last_success", "gauge", "1 when the newest restore drill passed.");
    let mut last_ok_time = Family::new(
        "bunker_drill_last_success_timestamp_seconds",
        "gauge",
        "Unix time the newest restore drill that passed started.",
    );
    let mut total_rto = Family::new(
        "bunker_drill_total_rto_seconds",
        "gauge",
        "The stack's RTO measured by the newest restore drill: its start to the last target verified.",
    );
    let mut total_rpo = Family::new(
        "bunker_drill_total_rpo_seconds",
        "gauge",
        "The stack's RPO measured by the newest restore drill: the recovery point's age when it started.",
    );

    let mut all = drills(runs);
    all.sort_by_key(|d| d.started);
    let mut per_target: BTreeMap<&str, &TargetDrill> = BTreeMap::new();
    for t in all.iter().filter_map(|d| d.record.as_ref()).flat_map(|r| &r.targets) {
        per_target.insert(&t.target, t);
    }
    for (target, t) in per_target {
        success.add(&[("target", target)], if t.passed { 1.0 } else { 0.0 });
        rto.add(&[("target", target)], t.rto_seconds);
        rpo.add(&[("target", target)], t.rpo_seconds);
    }
    if let Some(newest) = all.last() {
        last_time.add(&[], seconds(newest.started));
        last_ok.add(&[], if passed(newest) { 1.0 } else { 0.0 });
        if let Some(record) = &newest.record {
            total_rto.add(&[], record.rto_seconds);
            total_rpo.add(&[], record.rpo_seconds);
        }
    }
    if let Some(ok) = all.iter().rev().find(|d| passed(d)) {
        last_ok_time.add(&[], seconds(ok.started));
    }
    vec![success, rto, rpo, last_time, last_ok, last_ok_time, total_rto, total_rpo]
}

/// A drill passed when its record says so and its run neither failed nor was interrupted.
fn passed(drill: &StoredDrill) -> bool {
    let finished = drill.status == RunStatus::Success.as_str() || drill.status == RunStatus::Warning.as_str();
    finished && drill.record.as_ref().is_some_and(|r| r.passed)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::drill::record::DrillRecord;

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

    fn target_drill(name: &str, passed: bool, rto: f64, rpo: f64) -> TargetDrill {
        TargetDrill {
            target: name.into(),
            kind: "redis-rdb".into(),
            passed,
            rto_seconds: rto,
            rpo_seconds: rpo,
            bytes: 1000,
            ..Default::default()
        }
    }

    /// A `drill` run at 04:MINUTE with `record` as its details (`None`: it failed before it judged).
    fn drill_run(minute: u32, status: RunStatus, record: Option<DrillRecord>) -> RunRecord {
        let mut r = run("drill", "", status, minute, 0, 0);
        r.target = None;
        r.started = chrono::Utc.with_ymd_and_hms(2026, 11, 22, 4, minute, 0).unwrap();
        r.ended = r.started + chrono::Duration::seconds(90);
        if let Some(record) = record {
            r.details = serde_json::to_value(record).unwrap();
        } else {
            r.error = Some("no recovery point to drill".into());
        }
        r
    }

    fn drill_record(passed: bool, rto: f64, rpo: f64, targets: Vec<TargetDrill>) -> DrillRecord {
        DrillRecord { passed, rto_seconds: rto, rpo_seconds: rpo, targets, ..Default::default() }
    }

    fn stamp(minute: u32) -> i64 {
        chrono::Utc.with_ymd_and_hms(2026, 11, 22, 4, minute, 0).unwrap().timestamp()
    }

    #[test]
    fn drills_render_per_target_and_for_the_stack() {
        let runs = vec![drill_run(
            0,
            RunStatus::Failed,
            Some(drill_record(
                false,
                75.5,
                3600.0,
                vec![target_drill("db", true, 75.5, 3600.0), target_drill("cache", false, 12.0, 1800.0)],
            )),
        )];
        let text = render(None, &runs, &[]);
        for line in [
            "# HELP bunker_drill_success 1 when the target passed the newest restore drill that included it.\n",
            "# TYPE bunker_drill_success gauge\n",
            "bunker_drill_success{target=\"cache\"} 0\n",
            "bunker_drill_success{target=\"db\"} 1\n",
            "bunker_drill_rto_seconds{target=\"db\"} 75.5\n",
            "bunker_drill_rto_seconds{target=\"cache\"} 12\n",
            "bunker_drill_rpo_seconds{target=\"db\"} 3600\n",
            "bunker_drill_rpo_seconds{target=\"cache\"} 1800\n",
            &format!("bunker_drill_last_timestamp_seconds {}\n", stamp(0)),
            "bunker_drill_last_success 0\n",
            "bunker_drill_total_rto_seconds 75.5\n",
            "bunker_drill_total_rpo_seconds 3600\n",
            "# TYPE bunker_drill_total_rpo_seconds gauge\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("bunker_drill_last_success_timestamp_seconds"), "no drill passed yet:\n{text}");
        assert!(text.contains("bunker_runs_total{target=\"\",operation=\"drill\",status=\"failed\"} 1\n"));
    }

    #[test]
    fn a_target_keeps_its_newest_drill_when_a_later_drill_left_it_out() {
        let runs = vec![
            drill_run(
                0,
                RunStatus::Success,
                Some(drill_record(
                    true,
                    80.0,
                    600.0,
                    vec![target_drill("db", true, 70.0, 600.0), target_drill("cache", true, 9.0, 300.0)],
                )),
            ),
            // The second drill (--targets db) failed on db and did not include cache.
            drill_run(
                30,
                RunStatus::Failed,
                Some(drill_record(false, 65.0, 900.0, vec![target_drill("db", false, 65.0, 900.0)])),
            ),
        ];
        // The catalog's order is no promise: the newest drill wins by its start.
        let reversed: Vec<RunRecord> = runs.iter().rev().cloned().collect();
        for runs in [runs, reversed] {
            let text = render(None, &runs, &[]);
            for line in [
                "bunker_drill_success{target=\"db\"} 0\n",
                "bunker_drill_rto_seconds{target=\"db\"} 65\n",
                "bunker_drill_rpo_seconds{target=\"db\"} 900\n",
                "bunker_drill_success{target=\"cache\"} 1\n",
                "bunker_drill_rto_seconds{target=\"cache\"} 9\n",
                "bunker_drill_rpo_seconds{target=\"cache\"} 300\n",
                &format!("bunker_drill_last_timestamp_seconds {}\n", stamp(30)),
                "bunker_drill_last_success 0\n",
                &format!("bunker_drill_last_success_timestamp_seconds {}\n", stamp(0)),
                "bunker_drill_total_rto_seconds 65\n",
                "bunker_drill_total_rpo_seconds 900\n",
            ] {
                assert!(text.contains(line), "missing {line:?} in\n{text}");
            }
        }
    }

    #[test]
    fn a_drill_that_failed_before_judging_fails_the_stack_without_values() {
        let earlier = drill_record(true, 40.0, 120.0, vec![target_drill("db", true, 40.0, 120.0)]);
        let runs = vec![drill_run(0, RunStatus::Success, Some(earlier)), drill_run(30, RunStatus::Failed, None)];
        let text = render(None, &runs, &[]);
        for line in [
            &format!("bunker_drill_last_timestamp_seconds {}\n", stamp(30)),
            "bunker_drill_last_success 0\n",
            &format!("bunker_drill_last_success_timestamp_seconds {}\n", stamp(0)),
            // Per target, the earlier drill still stands.
            "bunker_drill_success{target=\"db\"} 1\n",
            "bunker_drill_rto_seconds{target=\"db\"} 40\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("bunker_drill_total_rto_seconds"), "{text}");
        assert!(!text.contains("bunker_drill_total_rpo_seconds"), "{text}");

        // Only a drill that never judged: the stack metrics, no per-target ones.
        let text = render(None, &[drill_run(5, RunStatus::Failed, None)], &[]);
        assert!(text.contains("bunker_drill_last_success 0\n"), "{text}");
        assert!(text.contains(&format!("bunker_drill_last_timestamp_seconds {}\n", stamp(5))), "{text}");
        for absent in
            ["bunker_drill_success", "bunker_drill_rto_seconds", "bunker_drill_rpo_seconds", "bunker_drill_total"]
        {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
        // A record that passed inside an interrupted run is no passed drill.
        let interrupted = drill_record(true, 40.0, 120.0, vec![target_drill("db", true, 40.0, 120.0)]);
        let text = render(None, &[drill_run(5, RunStatus::Interrupted, Some(interrupted))], &[]);
        assert!(text.contains("bunker_drill_last_success 0\n"), "{text}");
    }

    #[test]
    fn drill_targets_are_escaped_and_absent_without_drills() {
        let record = drill_record(true, 1.0, 2.0, vec![target_drill("we\"ird", true, 1.0, 2.0)]);
        let text = render(None, &[drill_run(0, RunStatus::Success, Some(record))], &[]);
        assert!(text.contains("bunker_drill_success{target=\"we\\\"ird\"} 1\n"), "{text}");
        assert!(text.contains("bunker_drill_last_success 1\n"), "{text}");
        let text = render(None, &[run("backup", "db", RunStatus::Success, 0, 1, 1)], &[]);
        assert!(!text.contains("bunker_drill"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(render_labels(&[("target", "a\"b\\c\nd")]), "{target=\"a\\\"b\\\\c\\nd\"}");
        assert_eq!(render_labels(&[]), "");
    }
}
