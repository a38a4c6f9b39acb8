//! What a run record's `details` hold, typed by operation. The engine stores `details` as JSON and knows
//! nothing of operations; this is where they get their shapes (FORMAT.md "Run records" documents each).
//!
//! Versioning: every field a later version added has a default, and fields this version does not know
//! are ignored, so records written before a field existed, or by a newer bunker, still read. A record
//! whose details do not fit its operation's shape at all reads as [`Details::Other`], never as an error:
//! a history is never unreadable because one record is odd.

use bunker_engine::catalog::RunRecord;
use serde::{Deserialize, Serialize};

/// A recovery point's record (operation `point`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PointDetails {
    pub point: String,
    /// The targets it meant to take.
    #[serde(default)]
    pub targets: Vec<String>,
    /// The snapshots it made (hex IDs).
    #[serde(default)]
    pub snapshots: Vec<String>,
    /// The targets whose backup failed.
    #[serde(default)]
    pub failed: Vec<String>,
}

/// A daemon job's record (operation `schedule`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleDetails {
    pub job: String,
    /// `backup`, `forget`, `check`, `copy`, `drill`.
    #[serde(default)]
    pub kind: String,
    /// The commands it ran, as `bunker` arguments joined by spaces.
    #[serde(default)]
    pub commands: Vec<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// A rotating data check's part (`check --read-data-subset N/M`): N. Absent in records before it existed,
    /// whose part is read from the command instead (see [`ScheduleDetails::check_part`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_part: Option<u32>,
}

impl ScheduleDetails {
    /// The part of the data a check job read, from the field, or from the command of older records.
    pub fn check_part(&self) -> Option<u32> {
        self.check_part.or_else(|| {
            let c = self.commands.first().filter(|c| c.starts_with("check "))?;
            c.rsplit(' ').next()?.split_once('/')?.0.parse().ok()
        })
    }
}

/// `check`'s record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckDetails {
    /// `none`, `all`, `10%`, `2/7`.
    #[serde(default)]
    pub read_data: String,
    #[serde(default)]
    pub packs_read: u64,
}

/// `forget`'s record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForgetDetails {
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub removed: u64,
    #[serde(default)]
    pub kept: u64,
}

/// `prune`'s record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PruneDetails {
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub bytes_freed: u64,
    #[serde(default)]
    pub packs_deleted: u64,
    /// Run records `[catalog] keep` dropped (or, in a dry run, would drop).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub runs_dropped: u64,
    /// Unneeded packs left because S3 Object Lock still retains them (or an index file listing them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub packs_retained: u64,
}

/// `object-lock extend`'s record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectLockDetails {
    #[serde(default)]
    pub dry_run: bool,
    /// Objects that must stay locked, and how many of them had their date moved.
    #[serde(default)]
    pub objects: u64,
    #[serde(default)]
    pub extended: u64,
    /// The date the extended objects now carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// The earliest retain-until date among the objects that must stay locked, after the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_until: Option<chrono::DateTime<chrono::Utc>>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `copy`'s record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CopyDetails {
    /// The secondary's name in the stack file.
    pub to: String,
    #[serde(default)]
    pub snapshots: u64,
    #[serde(default)]
    pub packs: u64,
    #[serde(default)]
    pub objects: u64,
    #[serde(default)]
    pub runs: u64,
    #[serde(default)]
    pub bytes: u64,
}

/// A restore's record (by any route), and `verify`'s: what the kind recorded, plus how it was checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreDetails {
    /// What landed was checked against the snapshot.
    #[serde(default)]
    pub verified: bool,
    /// The target's hooks that ran (`before_restore`, `after_restore`).
    #[serde(default)]
    pub hooks: Vec<String>,
    /// `false` when the snapshot's target is not in the stack file.
    #[serde(default = "yes")]
    pub configured: bool,
    /// What the source kind recorded (`into`, `to`, `pgdata`, `method`, `keys`, …).
    #[serde(flatten)]
    pub kind: serde_json::Map<String, serde_json::Value>,
}

fn yes() -> bool {
    true
}

/// `repair`'s record: `repair index` or `repair snapshots`, with what it found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepairDetails {
    /// `index` or `snapshots`.
    pub what: String,
    #[serde(default)]
    pub dry_run: bool,
    /// index: packs read, packs added to the index, packs dropped from it, packs salvaged blob by blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packs_read: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packs_added: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs_dropped: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs_salvaged: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_files_removed: Option<u64>,
    /// snapshots: the snapshots removed (as the engine reports them) and damaged catalog files removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs_removed: Vec<String>,
}

/// A hook that failed outside the run it belongs to (operation `hook`; a backup's `after_backup`, a
/// restore's `after_restore`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HookDetails {
    pub phase: String,
}

/// `wal-push` and `wal-fetch` records (written only when they fail): the WAL file concerned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WalDetails {
    pub file: String,
}

/// The details of one run, by its operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Details {
    Point(PointDetails),
    Schedule(ScheduleDetails),
    Check(CheckDetails),
    Forget(ForgetDetails),
    Prune(PruneDetails),
    Copy(CopyDetails),
    Restore(RestoreDetails),
    Verify(RestoreDetails),
    Repair(RepairDetails),
    Hook(HookDetails),
    Wal(WalDetails),
    ObjectLock(ObjectLockDetails),
    /// A drill's record, typed by [`crate::drill::record::drills`] (which owns its shape and its
    /// judgement; `null` for a drill that failed before judging).
    Drill(serde_json::Value),
    /// Everything else (backup's details are the kind's facts), and records whose details do not fit
    /// their shape.
    Other(serde_json::Value),
}

impl Details {
    /// The typed details of `run`.
    pub fn of(run: &RunRecord) -> Details {
        let v = &run.details;
        fn typed<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Option<T> {
            T::deserialize(v).ok()
        }
        let typed_or_other = |d: Option<Details>| d.unwrap_or_else(|| Details::Other(v.clone()));
        match run.operation.as_str() {
            "point" => typed_or_other(typed(v).map(Details::Point)),
            "schedule" => typed_or_other(typed(v).map(Details::Schedule)),
            "check" => typed_or_other(typed(v).map(Details::Check)),
            "forget" => typed_or_other(typed(v).map(Details::Forget)),
            "prune" => typed_or_other(typed(v).map(Details::Prune)),
            "copy" => typed_or_other(typed(v).map(Details::Copy)),
            "restore" => typed_or_other(typed(v).map(Details::Restore)),
            "verify" => typed_or_other(typed(v).map(Details::Verify)),
            "repair" => typed_or_other(typed(v).map(Details::Repair)),
            "hook" => typed_or_other(typed(v).map(Details::Hook)),
            "wal-push" | "wal-fetch" => typed_or_other(typed(v).map(Details::Wal)),
            "object-lock" => typed_or_other(typed(v).map(Details::ObjectLock)),
            "drill" => Details::Drill(v.clone()),
            _ => Details::Other(v.clone()),
        }
    }

    /// The JSON stored for these details.
    pub fn to_value(&self) -> serde_json::Value {
        let v = match self {
            Details::Point(d) => serde_json::to_value(d),
            Details::Schedule(d) => serde_json::to_value(d),
            Details::Check(d) => serde_json::to_value(d),
            Details::Forget(d) => serde_json::to_value(d),
            Details::Prune(d) => serde_json::to_value(d),
            Details::Copy(d) => serde_json::to_value(d),
            Details::Restore(d) | Details::Verify(d) => serde_json::to_value(d),
            Details::Repair(d) => serde_json::to_value(d),
            Details::Hook(d) => serde_json::to_value(d),
            Details::Wal(d) => serde_json::to_value(d),
            Details::ObjectLock(d) => serde_json::to_value(d),
            Details::Drill(v) | Details::Other(v) => Ok(v.clone()),
        };
        v.expect("details serialise")
    }

    pub fn point(run: &RunRecord) -> Option<PointDetails> {
        match Details::of(run) {
            Details::Point(p) => Some(p),
            _ => None,
        }
    }

    pub fn schedule(run: &RunRecord) -> Option<ScheduleDetails> {
        match Details::of(run) {
            Details::Schedule(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use bunker_engine::catalog::RunStatus;
    use serde_json::json;

    use super::*;

    fn run(op: &str, details: serde_json::Value) -> RunRecord {
        let mut r = RunRecord::new(op, chrono::Utc::now(), RunStatus::Success);
        r.details = details;
        r
    }

    #[test]
    fn records_of_every_age_read() {
        // A point record from before `snapshots` and `failed` existed.
        let p = Details::point(&run("point", json!({"point": "20261101T000000Z-abcd", "targets": ["db"]}))).unwrap();
        assert_eq!((p.point.as_str(), p.targets.len(), p.snapshots.len()), ("20261101T000000Z-abcd", 1, 0));
        // A newer one with a field this version does not know.
        let p = Details::point(&run("point", json!({"point": "x", "targets": [], "from_the_future": 1}))).unwrap();
        assert_eq!(p.point, "x");
        // A schedule record before `check_part`: the part comes from its command.
        let s = Details::schedule(&run(
            "schedule",
            json!({"job": "weekly-check", "kind": "check", "commands": ["check --read-data-subset 3/7"], "exit_code": 0}),
        ))
        .unwrap();
        assert_eq!(s.check_part(), Some(3));
        let s = ScheduleDetails { job: "c".into(), check_part: Some(5), ..Default::default() };
        assert_eq!(s.check_part(), Some(5));
        // A restore's kind-specific fields are kept beside the common ones; older records are configured.
        let Details::Restore(r) =
            Details::of(&run("restore", json!({"into": "postgres://x", "verified": true, "hooks": ["after_restore"]})))
        else {
            panic!("a restore")
        };
        assert!(r.verified && r.configured);
        assert_eq!(r.kind["into"], "postgres://x");
        // Details that do not fit are kept as they are, never an error.
        assert!(matches!(Details::of(&run("point", json!({"point": 7}))), Details::Other(_)));
        assert!(matches!(Details::of(&run("drill", json!(null))), Details::Drill(serde_json::Value::Null)));
        assert!(matches!(Details::of(&run("backup", json!({"phase": "after_backup"}))), Details::Other(_)));
    }

    #[test]
    fn details_round_trip() {
        let d = Details::Copy(CopyDetails { to: "offsite".into(), snapshots: 2, bytes: 9, ..Default::default() });
        let r = run("copy", d.to_value());
        assert_eq!(Details::of(&r), d);
        let d = Details::Point(PointDetails { point: "p".into(), targets: vec!["db".into()], ..Default::default() });
        assert_eq!(Details::of(&run("point", d.to_value())), d);
    }

    #[test]
    fn repair_hook_and_wal_records_read_by_their_shapes() {
        let index = RepairDetails {
            what: "index".into(),
            packs_read: Some(3),
            packs_dropped: vec!["ab".into()],
            ..Default::default()
        };
        let r = run("repair", Details::Repair(index.clone()).to_value());
        assert_eq!(Details::of(&r), Details::Repair(index));
        // An older repair record with fields this version does not know still reads.
        let older = run("repair", json!({"what": "snapshots", "removed": [{"id": "x"}], "future": 1}));
        assert!(matches!(Details::of(&older), Details::Repair(d) if d.what == "snapshots" && d.removed.len() == 1));
        let hook = run("hook", json!({"phase": "after_backup"}));
        assert_eq!(Details::of(&hook), Details::Hook(HookDetails { phase: "after_backup".into() }));
        let wal = run("wal-fetch", json!({"file": "000000010000000000000003"}));
        assert!(matches!(Details::of(&wal), Details::Wal(w) if w.file.ends_with("03")));
        // A restore's kind facts sit beside its own fields.
        let restore = run("restore", json!({"verified": true, "hooks": ["after_restore"], "into": "db"}));
        let Details::Restore(d) = Details::of(&restore) else { panic!() };
        assert!(d.verified && d.configured && d.kind["into"] == "db", "{d:?}");
    }
}
