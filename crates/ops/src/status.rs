//! The health of a stack: each target judged from the catalog (and, for kinds that keep data beside
//! their snapshots, that data: archived WAL), the repository's size and growth, the last check and drill.
//! `bunker status` prints it; the daemon serves it at `/status` and notifies changes.

use std::collections::BTreeSet;

use bunker_config::{Config, HealthConfig};
use bunker_engine::catalog::{RunRecord, RunStatus};
use bunker_engine::Repository;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::health::{self, Level, TargetHealth};
use crate::Result;

/// What `bunker status --json` prints and the daemon serves at `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub level: Level,
    pub time: DateTime<Utc>,
    pub targets: Vec<TargetHealth>,
    pub repository: RepositorySummary,
    pub last_check: Option<RunBrief>,
    pub last_drill: Option<RunBrief>,
    pub thresholds: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepositorySummary {
    pub stored_bytes: u64,
    pub snapshots: usize,
    pub growth_7d_bytes: u64,
    pub protection: Protection,
}

/// What protects the repository's content.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Protection {
    /// The age recipients content is sealed for (a recipients repository); 0: the password opens everything.
    pub recipients: usize,
    /// Whether this host's key is write-only (it backs up but cannot read content back).
    pub write_only: bool,
    /// S3 Object Lock, when the repository has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<LockSummary>,
}

/// A repository's S3 Object Lock, and what the last `object-lock extend` left.
#[derive(Debug, Clone, Serialize)]
pub struct LockSummary {
    pub mode: String,
    pub period_secs: u64,
    /// When the last successful extension ran, and the earliest lock end it left among the objects kept
    /// snapshots need (objects written since are locked later than that).
    pub extended: Option<DateTime<Utc>>,
    pub earliest_until: Option<DateTime<Utc>>,
}

impl Protection {
    pub fn of(repo: &Repository, runs: &[RunRecord]) -> Self {
        let object_lock = repo.config().object_lock.map(|lock| {
            let last = runs
                .iter()
                .filter(|r| r.operation == "object-lock" && r.status == RunStatus::Success)
                .filter_map(|r| match crate::details::Details::of(r) {
                    crate::details::Details::ObjectLock(d) if !d.dry_run => Some((r.ended, d)),
                    _ => None,
                })
                .max_by_key(|(ended, _)| *ended);
            LockSummary {
                mode: lock.mode.to_string(),
                period_secs: lock.period_secs,
                extended: last.as_ref().map(|(t, _)| *t),
                earliest_until: last.and_then(|(_, d)| d.earliest_until),
            }
        });
        Protection { recipients: repo.recipients().len(), write_only: !repo.reads_content(), object_lock }
    }

    /// One line for `status`.
    pub fn describe(&self) -> String {
        let mut line = match (self.recipients, self.write_only) {
            (0, _) => "password (every key reads the content)".to_string(),
            (n, true) => format!("content sealed for {n} age recipient(s); this host's key is write-only"),
            (n, false) => format!("content sealed for {n} age recipient(s); opened here with an identity"),
        };
        if let Some(lock) = &self.object_lock {
            let period = humantime::format_duration(std::time::Duration::from_secs(lock.period_secs));
            line.push_str(&format!("; S3 Object Lock, {} mode, {period}", lock.mode));
            match lock.earliest_until {
                Some(t) => {
                    // A week ahead, or half the period for a shorter one.
                    let warn = chrono::Duration::seconds((lock.period_secs / 2).min(7 * 86_400) as i64);
                    let soon = t < Utc::now() + warn;
                    line.push_str(&format!(
                        ", earliest lock end {}{}",
                        t.format("%Y-%m-%d %H:%M UTC"),
                        if soon { " (soon: run `bunker object-lock extend`)" } else { "" }
                    ));
                }
                None => line.push_str(" (never extended: run `bunker object-lock extend`)"),
            }
        }
        line
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunBrief {
    pub ended: DateTime<Utc>,
    pub status: RunStatus,
    pub error: Option<String>,
}

/// What the repository holds, from one listing (no file is read): what `status` shows of it.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Stored {
    pub bytes: u64,
    pub snapshots: usize,
}

impl Stored {
    pub fn of(repo: &Repository) -> Result<Stored> {
        Ok(Self::listed(repo)?)
    }

    /// [`Stored::of`] as of this host's recent listing while the catalog has not changed
    /// ([`Repository::recent`]): what `status` shows. Archived WAL grows the repository without a run
    /// record, so the size shown may be up to the memo's age (10 minutes by default) old.
    pub fn recent(repo: &Repository) -> Result<Stored> {
        Ok(repo.recent("stored", || Self::listed(repo))?)
    }

    /// What the repository holds after `added` records, as far as they say: a backup adds what it
    /// stored and its snapshot (its index and snapshot files, a few KiB, wait for the next listing);
    /// records of operations that write no repository data change nothing. `None` when one may have
    /// changed it in a way its record does not tell (forget, prune, copy, repair): list again.
    pub fn after(self, added: &[&RunRecord]) -> Option<Stored> {
        // Operations whose runs leave the repository's data as it was (their record aside).
        const NEUTRAL: &[&str] =
            &["point", "restore", "verify", "drill", "hook", "wal-fetch", "wal-verify", "check", "status", "notify"];
        let mut s = self;
        for r in added {
            match r.operation.as_str() {
                "backup" => {
                    s.bytes += r.bytes_stored;
                    s.snapshots += usize::from(r.snapshot.is_some());
                }
                op if NEUTRAL.contains(&op) => {}
                _ => return None,
            }
        }
        Some(s)
    }

    fn listed(repo: &Repository) -> bunker_engine::Result<Stored> {
        let objects = repo.storage().list("")?;
        Ok(Stored {
            bytes: objects.iter().filter(|o| !o.path.starts_with("tmp/")).map(|o| o.size).sum(),
            snapshots: objects.iter().filter(|o| o.path.starts_with("snapshots/")).count(),
        })
    }
}

/// Judges every target of the stack file (without one, every target the catalog has seen backed up)
/// from `runs` as of `now`.
pub fn gather(
    stack: Option<&Config>,
    repo: &Repository,
    runs: &[RunRecord],
    now: DateTime<Utc>,
) -> Result<StatusReport> {
    judge(stack, repo, runs, now, Stored::recent(repo)?)
}

/// [`gather`] with what the repository holds already known (the daemon lists it only when the
/// history changed).
pub fn judge(
    stack: Option<&Config>,
    repo: &Repository,
    runs: &[RunRecord],
    now: DateTime<Utc>,
    stored: Stored,
) -> Result<StatusReport> {
    let thresholds = stack.map(|s| s.health.clone()).unwrap_or_default();
    let by_target = health::runs_by_target(runs);
    let targets: Vec<String> = match stack {
        Some(s) => s.targets.iter().map(|t| t.name.clone()).collect(),
        None => by_target
            .iter()
            .filter(|(_, rs)| rs.iter().any(|r| r.operation == "backup"))
            .map(|(t, _)| t.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let mut judged: Vec<TargetHealth> = Vec::new();
    for target in &targets {
        // What the target keeps beside its snapshots (archived WAL), as its kind reports it.
        let live = match stack.and_then(|s| s.target(target)) {
            Some(t) => match bunker_sources::kind_of_target(t) {
                Ok(kind) => kind.live_data(repo, t)?,
                Err(_) => None,
            },
            None => None,
        };
        let wal = live.map(|l| l.newest.and_then(|t| t.elapsed().ok()).filter(|_| l.files > 0));
        let none = Vec::new();
        let runs = by_target.get(target).unwrap_or(&none);
        judged.push(health::evaluate_target(target, runs, now, &thresholds, wal));
    }
    let week = now - chrono::Duration::days(7);
    // What runs added, less what prune freed since: never more than the repository holds.
    let growth_7d_bytes: u64 =
        runs.iter().filter(|r| r.ended > week).map(|r| r.bytes_stored).sum::<u64>().min(stored.bytes);
    let last = |op: &str| -> Option<RunBrief> {
        runs.iter().filter(|r| r.operation == op).max_by_key(|r| r.ended).map(|r| RunBrief {
            ended: r.ended,
            status: r.status,
            error: r.error.clone(),
        })
    };
    Ok(StatusReport {
        level: judged.iter().map(|t| t.level).max().unwrap_or(Level::Ok),
        time: now,
        repository: RepositorySummary {
            stored_bytes: stored.bytes,
            snapshots: stored.snapshots,
            growth_7d_bytes,
            protection: Protection::of(repo, runs),
        },
        last_check: last("check"),
        last_drill: last("drill"),
        thresholds: thresholds_json(&thresholds),
        targets: judged,
    })
}

fn thresholds_json(t: &HealthConfig) -> serde_json::Value {
    serde_json::json!({
        "warning_after_secs": t.warning_after.as_secs(),
        "critical_after_secs": t.critical_after.as_secs(),
        "wal_warning_after_secs": t.wal_warning_after.as_secs(),
        "wal_critical_after_secs": t.wal_critical_after.as_secs(),
        "failures_warning": t.failures_warning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(operation: &str, snapshot: Option<&str>, stored: u64) -> RunRecord {
        let mut r = RunRecord::new(operation, Utc::now(), RunStatus::Success);
        r.snapshot = snapshot.map(str::to_string);
        r.bytes_stored = stored;
        r
    }

    #[test]
    fn the_stored_size_follows_backup_records_and_is_listed_again_after_others() {
        let start = Stored { bytes: 1000, snapshots: 3 };
        let backup = run("backup", Some("ab12"), 250);
        let failed = run("backup", None, 40);
        let drill = run("drill", None, 0);
        let s = start.after(&[&backup, &failed, &drill]).expect("backups and drills say what changed");
        assert_eq!((s.bytes, s.snapshots), (1290, 4));
        for op in ["forget", "prune", "copy", "repair", "wal-push", "some-future-operation"] {
            assert!(start.after(&[&backup, &run(op, None, 0)]).is_none(), "{op}: list again");
        }
    }
}
