//! What a drill found, as stored in the catalog: the `details` of its `drill` run (FORMAT.md, "Drill
//! records"). `bunker drills`, the HTML report and the daemon's metrics read it back from there, so a
//! host that never ran a drill still shows the drills another host ran.

use serde::{Deserialize, Serialize};

pub use bunker_sources::drill::Check;

/// One target of the point, restored into scratch and verified.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetDrill {
    pub target: String,
    /// The snapshot kind drilled (`postgres-logical`, `postgres-physical`, `redis-rdb`, `s3`, `files`, `stream`).
    pub kind: String,
    /// The snapshots restored (full IDs).
    pub snapshots: Vec<String>,
    /// Where it was restored: a scratch URL or directory (no password in it).
    pub restored_into: String,
    pub passed: bool,
    /// Start of the drill's work on this target (provisioning included) to verified.
    pub rto_seconds: f64,
    pub provision_seconds: f64,
    pub restore_seconds: f64,
    pub verify_seconds: f64,
    /// Bytes the restore wrote.
    pub bytes: u64,
    pub throughput_bytes_per_second: f64,
    /// This target's `rto_objective`, when it has one.
    pub rto_objective_seconds: Option<f64>,
    /// The age of its newest snapshot in the point when the drill started.
    pub rpo_seconds: f64,
    pub rpo_objective_seconds: Option<f64>,
    /// Physical PostgreSQL: the age of the newest archived WAL when the drill started.
    pub live_rpo_seconds: Option<f64>,
    pub checks: Vec<Check>,
    /// Why the target failed before its checks could say (a restore error, a missing server binary…).
    pub error: Option<String>,
}

/// An `after_restore` smoke test run against the restored stack (or a target's own hook), or one
/// that was not run and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookResult {
    pub command: String,
    /// Whose it is: `drill` (the stack's `[drill]`), `group NAME`, or `target NAME` (its own
    /// `after_restore`). Older records have none: the stack's.
    #[serde(default = "stack_scope")]
    pub scope: String,
    /// Whether it ran: a target's own hook runs in a drill only where the target opts in
    /// (`drill_after_restore = true`); otherwise it is listed, not run.
    #[serde(default = "ran")]
    pub ran: bool,
    pub passed: bool,
    pub seconds: f64,
    /// The exit status and the tail of its output.
    pub detail: String,
}

fn stack_scope() -> String {
    "drill".into()
}

fn ran() -> bool {
    true
}

/// A whole drill: the details of its `drill` run in the catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// The recovery point drilled (`--point`), or none when the drill took each target's newest snapshot.
    pub point: Option<String>,
    /// When the point (or the newest of the snapshots drilled) was taken.
    pub point_time: chrono::DateTime<chrono::Utc>,
    pub passed: bool,
    /// Start of the drill to the last target verified (hooks excluded): the stack's measured RTO.
    pub rto_seconds: f64,
    pub rto_objective_seconds: Option<f64>,
    /// The point's age when the drill started: the stack's measured RPO.
    pub rpo_seconds: f64,
    pub rpo_objective_seconds: Option<f64>,
    pub bytes_restored: u64,
    pub targets: Vec<TargetDrill>,
    pub hooks: Vec<HookResult>,
    /// Why the drill failed, one line each: failed checks, missed objectives, failed hooks.
    pub problems: Vec<String>,
    /// Scratch instances left running (`--keep`): how to connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
}

impl DrillRecord {
    /// Decides `passed` and `problems` from the targets, the hooks and the objectives.
    pub fn judge(&mut self) {
        let mut problems = Vec::new();
        for t in &mut self.targets {
            let mut failed: Vec<String> = Vec::new();
            if let Some(e) = &t.error {
                failed.push(e.clone());
            }
            failed.extend(t.checks.iter().filter(|c| !c.passed).map(|c| format!("{}: {}", c.name, c.detail)));
            if let Some(obj) = t.rto_objective_seconds.filter(|o| t.rto_seconds > *o) {
                failed.push(format!("RTO {} over its objective {}", secs(t.rto_seconds), secs(obj)));
            }
            if let Some(obj) = t.rpo_objective_seconds.filter(|o| t.rpo_seconds > *o) {
                failed.push(format!("RPO {} over its objective {}", secs(t.rpo_seconds), secs(obj)));
            }
            t.passed = failed.is_empty();
            let snapshot =
                t.snapshots.first().map(|s| format!(" snapshot {}", &s[..s.len().min(8)])).unwrap_or_default();
            problems.extend(failed.into_iter().map(|f| format!("{}{snapshot}: {f}", t.target)));
        }
        if let Some(obj) = self.rto_objective_seconds.filter(|o| self.rto_seconds > *o) {
            problems.push(format!("total RTO {} over the objective {}", secs(self.rto_seconds), secs(obj)));
        }
        if let Some(obj) = self.rpo_objective_seconds.filter(|o| self.rpo_seconds > *o) {
            problems.push(format!("RPO {} over the objective {}", secs(self.rpo_seconds), secs(obj)));
        }
        for h in self.hooks.iter().filter(|h| h.ran && !h.passed) {
            let whose = if h.scope == "drill" { String::new() } else { format!(" ({})", h.scope) };
            problems.push(format!("after_restore {:?}{whose}: {}", h.command, h.detail));
        }
        if self.targets.is_empty() {
            problems.push("nothing was drilled".into());
        }
        self.passed = problems.is_empty();
        self.problems = problems;
    }
}

/// A drill as the catalog holds it: its run's facts and its record.
#[derive(Debug, Clone, Serialize)]
pub struct StoredDrill {
    pub started: chrono::DateTime<chrono::Utc>,
    pub ended: chrono::DateTime<chrono::Utc>,
    pub host: String,
    /// The run's status: `success`, `failed`, `interrupted`…
    pub status: String,
    /// The run's one-line error, when the drill failed before it could judge (no point, no binaries…).
    pub error: Option<String>,
    pub record: Option<DrillRecord>,
}

/// Every drill of the catalog, oldest first (from runs already loaded).
pub fn drills(runs: &[bunker_engine::catalog::RunRecord]) -> Vec<StoredDrill> {
    runs.iter()
        .filter(|r| r.operation == "drill")
        .map(|r| StoredDrill {
            started: r.started,
            ended: r.ended,
            host: r.host.clone(),
            status: r.status.as_str().to_string(),
            error: r.error.clone(),
            record: serde_json::from_value(r.details.clone()).ok(),
        })
        .collect()
}

/// Seconds as people read them: `42.3s`, `3m07s`, `2h05m`, `3d04h`.
pub fn secs(s: f64) -> String {
    let whole = s.max(0.0).round() as u64;
    match whole {
        _ if s < 60.0 => format!("{s:.1}s"),
        w if w < 3600 => format!("{}m{:02}s", w / 60, w % 60),
        w if w < 86400 => format!("{}h{:02}m", w / 3600, w % 3600 / 60),
        w => format!("{}d{:02}h", w / 86400, w % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str) -> TargetDrill {
        TargetDrill {
            target: name.into(),
            kind: "redis-rdb".into(),
            snapshots: vec!["0123456789abcdef".into()],
            rto_seconds: 10.0,
            rpo_seconds: 100.0,
            checks: vec![Check::new("keys", true, "3/3")],
            ..Default::default()
        }
    }

    #[test]
    fn a_drill_passes_only_when_every_check_objective_and_hook_does() {
        let mut d =
            DrillRecord { targets: vec![target("cache"), target("db")], rto_seconds: 12.0, ..Default::default() };
        d.judge();
        assert!(d.passed, "{:?}", d.problems);

        d.targets[1].checks.push(Check::new("row counts", false, "orders: 9 rows, recorded 10"));
        d.judge();
        assert!(!d.passed);
        assert!(d.targets[0].passed && !d.targets[1].passed);
        assert_eq!(d.problems, vec!["db snapshot 01234567: row counts: orders: 9 rows, recorded 10"]);

        d.targets[1].checks.pop();
        d.targets[0].rto_objective_seconds = Some(5.0);
        d.rpo_objective_seconds = Some(60.0);
        d.rpo_seconds = 100.0;
        d.hooks.push(HookResult {
            command: "./smoke".into(),
            scope: "drill".into(),
            ran: true,
            passed: false,
            seconds: 1.0,
            detail: "exit 3".into(),
        });
        // A target's own hook that was not run (no opt-in) is listed but fails nothing.
        d.hooks.push(HookResult {
            command: "reindex".into(),
            scope: "target cache".into(),
            ran: false,
            passed: false,
            seconds: 0.0,
            detail: "not run in drills".into(),
        });
        d.judge();
        assert_eq!(
            d.problems,
            vec![
                "cache snapshot 01234567: RTO 10.0s over its objective 5.0s",
                "RPO 1m40s over the objective 1m00s",
                "after_restore \"./smoke\": exit 3",
            ]
        );
    }

    #[test]
    fn an_empty_drill_fails_and_records_round_trip() {
        let mut d = DrillRecord::default();
        d.judge();
        assert!(!d.passed);
        let back: DrillRecord = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(secs(4.25), "4.2s");
        assert_eq!(secs(187.0), "3m07s");
        assert_eq!(secs(7500.0), "2h05m");
        assert_eq!(secs(3.0 * 86400.0 + 4.0 * 3600.0), "3d04h");
    }
}
