//! How long the catalog keeps its history: `[catalog] keep = "2y"`, applied by `prune` as it folds the
//! catalog. Unset, every run record is kept forever.
//!
//! A record older than `keep` goes, except:
//! - the newest record, and the newest successful one, of each operation and target (what `status`
//!   judges a target by: a target last backed up three years ago says so, never "no backup");
//! - recovery points, drill records and records of runs that did not succeed, for as long as a snapshot
//!   they concern is in the repository (a point whose snapshots are kept stays restorable by its ID; the
//!   proof that a snapshot restored, or the trace that it did not, lives as long as the snapshot does).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use bunker_engine::catalog::{RunRecord, RunStatus};
use bunker_engine::repository::FileKind;
use bunker_engine::segment::FoldReport;
use bunker_engine::{FileId, Repository};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::details::Details;
use crate::Result;

/// What retention reads of a drill's record: the snapshots each target restored (tolerant of any
/// record version that has them).
#[derive(Deserialize)]
struct DrilledTargets {
    #[serde(default)]
    targets: Vec<DrilledTarget>,
}

#[derive(Deserialize)]
struct DrilledTarget {
    #[serde(default)]
    snapshots: Vec<String>,
}

/// The snapshots a record is about: the one it made or read, a point's members, every one a drill restored.
fn snapshots_of(r: &RunRecord) -> Vec<String> {
    let mut out: Vec<String> = r.snapshot.iter().cloned().collect();
    match Details::of(r) {
        Details::Point(p) => out.extend(p.snapshots),
        Details::Drill(value) => {
            if let Ok(d) = DrilledTargets::deserialize(&value) {
                out.extend(d.targets.into_iter().flat_map(|t| t.snapshots));
            }
        }
        _ => {}
    }
    out
}

/// Which records [`expire`] keeps, decided once for the whole history.
pub struct Keep {
    cutoff: DateTime<Utc>,
    /// IDs of records that stay whatever their age.
    pinned: HashSet<FileId>,
}

impl Keep {
    /// The policy for `runs` (the whole history) as of `now`, given the snapshots the repository holds.
    pub fn new(runs: &[RunRecord], keep: Duration, now: DateTime<Utc>, snapshots: &[FileId]) -> Keep {
        let cutoff = now - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
        let present: BTreeSet<String> = snapshots.iter().map(|s| s.to_hex()).collect();
        let holds = |reference: &str| {
            !reference.is_empty()
                && present.range(reference.to_string()..).next().is_some_and(|full| full.starts_with(reference))
        };
        let mut newest: HashMap<(&str, Option<&str>, bool), &RunRecord> = HashMap::new();
        let mut pinned = HashSet::new();
        for r in runs {
            for success in [false, true] {
                if success && r.status != RunStatus::Success {
                    continue;
                }
                let slot = newest.entry((r.operation.as_str(), r.target.as_deref(), success)).or_insert(r);
                if r.started >= slot.started {
                    *slot = r;
                }
            }
            let traced = matches!(r.operation.as_str(), "point" | "drill") || r.status != RunStatus::Success;
            if r.started < cutoff && traced && snapshots_of(r).iter().any(|s| holds(s)) {
                pinned.extend(r.id);
            }
        }
        pinned.extend(newest.values().filter_map(|r| r.id));
        Keep { cutoff, pinned }
    }

    pub fn keeps(&self, r: &RunRecord) -> bool {
        r.started >= self.cutoff || r.id.is_some_and(|id| self.pinned.contains(&id))
    }
}

/// How many run records [`expire`] would drop now (for `prune --dry-run`).
pub fn expiring(repo: &Repository, keep: Duration, now: DateTime<Utc>) -> Result<usize> {
    let runs = repo.load_runs()?;
    let policy = Keep::new(&runs, keep, now, &repo.list_files(FileKind::Snapshot)?);
    Ok(runs.iter().filter(|r| !policy.keeps(r)).count())
}

/// Folds the catalog dropping what `[catalog] keep` no longer keeps (see the module docs).
pub fn expire(repo: &Repository, keep: Duration, now: DateTime<Utc>) -> Result<FoldReport> {
    let runs = repo.load_runs()?;
    let snapshots = repo.list_files(FileKind::Snapshot)?;
    let policy = Keep::new(&runs, keep, now, &snapshots);
    Ok(bunker_engine::segment::fold_keeping(repo, &|r| policy.keeps(r))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &str, target: &str, days_ago: i64, status: RunStatus, snapshot: Option<&FileId>, n: u8) -> RunRecord {
        let now = Utc::now();
        let mut r = RunRecord::new(op, now - chrono::Duration::days(days_ago), status);
        r.target = Some(target.into());
        r.snapshot = snapshot.map(|s| s.to_hex());
        r.id = Some(FileId::of(&[n]));
        r
    }

    #[test]
    fn old_records_go_but_what_status_and_kept_snapshots_need_stays() {
        let kept_snapshot = FileId::of(b"kept");
        let gone_snapshot = FileId::of(b"gone");
        let runs = vec![
            run("backup", "db", 900, RunStatus::Success, Some(&gone_snapshot), 1), // old: goes
            run("backup", "db", 800, RunStatus::Failed, None, 2),                  // old failure, no snapshot: goes
            run("verify", "db", 800, RunStatus::Failed, Some(&kept_snapshot), 3),  // about a kept snapshot
            run("verify", "db", 790, RunStatus::Failed, Some(&gone_snapshot), 4),  // db's newest verify
            run("backup", "db", 700, RunStatus::Success, Some(&kept_snapshot), 5), // db's newest success
            run("backup", "db", 10, RunStatus::Failed, None, 6),                   // recent
            run("check", "", 1000, RunStatus::Success, None, 7),                   // the newest check
            run("check", "", 1001, RunStatus::Success, None, 8),                   // an older check: goes
        ];
        let keep = Keep::new(&runs, Duration::from_secs(365 * 86400), Utc::now(), &[kept_snapshot]);
        let kept: Vec<u8> = runs.iter().zip(1u8..).filter(|(r, _)| keep.keeps(r)).map(|(_, n)| n).collect();
        assert_eq!(kept, vec![3, 4, 5, 6, 7]);
    }

    #[test]
    fn a_point_stays_while_its_snapshots_do() {
        let member = FileId::of(b"member");
        let mut old = run("point", "", 900, RunStatus::Success, None, 1);
        old.target = None;
        old.details = serde_json::json!({"point": "20240101T000000Z-abcd", "snapshots": [member.to_hex()]});
        let mut newer = run("point", "", 1, RunStatus::Success, None, 2);
        newer.target = None;
        let day = Duration::from_secs(86400);
        assert!(Keep::new(&[old.clone(), newer.clone()], day, Utc::now(), &[member]).keeps(&old));
        assert!(!Keep::new(&[old.clone(), newer], day, Utc::now(), &[]).keeps(&old), "its snapshots are gone");
    }

    #[test]
    fn a_drill_stays_while_a_snapshot_it_restored_does() {
        let snap = FileId::of(b"drilled");
        let mut drill = run("drill", "", 900, RunStatus::Success, None, 1);
        drill.details = serde_json::json!({"targets": [{"snapshots": [snap.to_hex()[..8].to_string()]}]});
        let newer = run("drill", "", 5, RunStatus::Success, None, 2);
        let day = Duration::from_secs(86400);
        let keep = Keep::new(&[drill.clone(), newer.clone()], day, Utc::now(), &[snap]);
        assert!(keep.keeps(&drill), "the snapshot it drilled is still there");
        let keep = Keep::new(&[drill.clone(), newer], day, Utc::now(), &[FileId::of(b"other")]);
        assert!(!keep.keeps(&drill), "its snapshot is gone");
    }
}
