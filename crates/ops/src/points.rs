//! Recovery points: `backup --all` / `--group G` backs up several targets as one point, whose ID (its
//! start time, plus four random hex digits) every snapshot of it carries as the tag `point:ID`, and
//! whose run in the catalog (operation `point`) lists the targets it meant to take, the snapshots it
//! took and the targets that failed. This module reads them back: which points exist, which snapshots
//! each still has, whether it is complete.

use bunker_config::Config;
use bunker_engine::catalog::{RunRecord, RunStatus};
use bunker_engine::Snapshot;

use crate::{fail, Result};

pub const TAG_PREFIX: &str = "point:";

/// A new point's ID: `20261121T223000Z-3fa2`, sortable and readable; its tail (from the sub-second time
/// and the process) tells apart points started in the same second.
pub fn new_point_id(now: chrono::DateTime<chrono::Utc>) -> String {
    let tail = (now.timestamp_subsec_nanos() ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{}-{tail:04x}", now.format("%Y%m%dT%H%M%SZ"))
}

/// One recovery point, from its run record and the snapshots that carry its tag.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point<'a> {
    pub point: String,
    /// When the point started and ended (physical PostgreSQL recovers to its end).
    pub time: chrono::DateTime<chrono::Utc>,
    #[serde(skip)]
    pub ended: chrono::DateTime<chrono::Utc>,
    pub status: RunStatus,
    /// Every target it meant to take has a complete snapshot in it.
    pub complete: bool,
    pub targets: Vec<String>,
    pub missing: Vec<String>,
    /// Its snapshots that remain, oldest first.
    #[serde(serialize_with = "brief")]
    pub snapshots: Vec<&'a Snapshot>,
}

fn brief<S: serde::Serializer>(snaps: &[&Snapshot], s: S) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(snaps.len()))?;
    for snap in snaps {
        seq.serialize_element(&serde_json::json!({"id": snap.id().to_hex(), "name": snap.name, "time": snap.time}))?;
    }
    seq.end()
}

/// The target a snapshot belongs to: its name up to the first `/` (`db/app` is a database of `db`).
pub fn target_of(snapshot_name: &str) -> &str {
    snapshot_name.split('/').next().unwrap_or(snapshot_name)
}

/// Every recovery point of the catalog, oldest first.
pub fn list<'a>(runs: &[RunRecord], snapshots: &'a [Snapshot]) -> Vec<Point<'a>> {
    let mut out: Vec<Point<'a>> =
        runs.iter().filter(|r| r.operation == "point").filter_map(|r| point(r, snapshots)).collect();
    out.sort_by_key(|p| p.time);
    out
}

fn point<'a>(r: &RunRecord, snapshots: &'a [Snapshot]) -> Option<Point<'a>> {
    let details = crate::details::Details::point(r)?;
    let id = details.point;
    let tag = format!("{TAG_PREFIX}{id}");
    let wanted = details.targets;
    let mut members: Vec<&Snapshot> = snapshots.iter().filter(|s| s.tags.contains(&tag)).collect();
    members.sort_by_key(|s| s.time);
    let missing: Vec<String> =
        wanted.iter().filter(|t| !members.iter().any(|s| target_of(&s.name) == t.as_str())).cloned().collect();
    let complete = missing.is_empty() && members.iter().all(|s| s.warnings.is_empty());
    Some(Point {
        point: id,
        time: r.started,
        ended: r.ended,
        status: r.status,
        complete,
        targets: wanted,
        missing,
        snapshots: members,
    })
}

/// The point `wanted` names: `latest` (the newest that still has snapshots) or an ID.
pub fn find<'a>(wanted: &str, runs: &[RunRecord], snapshots: &'a [Snapshot]) -> Result<Point<'a>> {
    let points = list(runs, snapshots);
    let found = match wanted {
        "latest" => points.into_iter().filter(|p| !p.snapshots.is_empty()).max_by_key(|p| p.time),
        id => points.into_iter().find(|p| p.point == id),
    };
    let Some(point) = found else {
        return Err(fail(format!("no recovery point {wanted:?}; `bunker points` lists them")));
    };
    if point.snapshots.is_empty() {
        return Err(fail(format!("recovery point {} has no snapshots left (forgotten?)", point.point)));
    }
    Ok(point)
}

/// Whether the catalog has any recovery point at all.
pub fn any(runs: &[RunRecord]) -> bool {
    runs.iter().any(|r| r.operation == "point")
}

/// The targets of `--all` (`group` `None`) or `--group NAME`, in the stack file's order.
pub fn targets_of(config: &Config, origin: &std::path::Path, group: Option<&str>) -> Result<Vec<String>> {
    let all: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
    let Some(group) = group else {
        if all.is_empty() {
            return Err(fail(format!("{} has no targets to back up", origin.display())));
        }
        return Ok(all);
    };
    let Some(g) = config.group(group) else {
        let known: Vec<&str> = config.groups.iter().map(|g| g.name.as_str()).collect();
        return Err(fail(format!(
            "{} has no group {group:?} (its groups: {}); add it under [groups] as {group} = [\"target\", …]",
            origin.display(),
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )));
    };
    Ok(g.targets.clone())
}

#[cfg(test)]
mod tests {
    use bunker_engine::snapshot::Root;
    use bunker_engine::tree::Content;
    use bunker_engine::FileId;

    use super::*;

    fn snap(name: &str, point: &str, warnings: &[&str]) -> Snapshot {
        Snapshot {
            id: Some(FileId::of(format!("{name}{point}").as_bytes())),
            time: chrono::Utc::now(),
            host: "h".into(),
            name: name.into(),
            kind: "stream".into(),
            tags: vec![format!("{TAG_PREFIX}{point}")],
            meta: serde_json::json!({}),
            root: Root::Stream { size: 0, content: Content::Chunks(Vec::new()) },
            stats: Default::default(),
            parent: None,
            warnings: warnings.iter().map(|w| w.to_string()).collect(),
            bunker_version: "test".into(),
        }
    }

    fn run(point: &str, minutes: i64, targets: &[&str]) -> RunRecord {
        let mut r =
            RunRecord::new("point", chrono::Utc::now() + chrono::Duration::minutes(minutes), RunStatus::Success);
        r.details = serde_json::json!({ "point": point, "targets": targets });
        r
    }

    #[test]
    fn a_point_is_complete_when_every_target_has_a_complete_snapshot() {
        let snapshots = vec![
            snap("db/app", "A", &[]),
            snap("db/globals", "A", &[]),
            snap("files", "A", &[]),
            snap("db", "B", &["a table could not be read"]),
        ];
        let runs = vec![run("A", 0, &["db", "files"]), run("B", 1, &["db", "cache"]), run("C", 2, &["db"])];
        let points = list(&runs, &snapshots);
        let brief: Vec<(&str, bool, Vec<String>, usize)> =
            points.iter().map(|p| (p.point.as_str(), p.complete, p.missing.clone(), p.snapshots.len())).collect();
        assert_eq!(
            brief,
            [
                ("A", true, vec![], 3),
                ("B", false, vec!["cache".to_string()], 1),
                ("C", false, vec!["db".to_string()], 0)
            ]
        );
        // `latest` is the newest point that still has snapshots; a forgotten one is named.
        assert_eq!(find("latest", &runs, &snapshots).unwrap().point, "B");
        let e = find("C", &runs, &snapshots).unwrap_err().to_string();
        assert!(e.contains("no snapshots left"), "{e}");
        assert!(find("D", &runs, &snapshots).unwrap_err().to_string().contains("`bunker points` lists them"));
    }

    #[test]
    fn point_ids_sort_by_time_and_targets_are_the_name_before_the_slash() {
        let t: chrono::DateTime<chrono::Utc> = "2026-11-21T22:30:00Z".parse().unwrap();
        assert!(new_point_id(t).starts_with("20261121T223000Z-"));
        assert_eq!(new_point_id(t).len(), "20261121T223000Z-3fa2".len());
        assert_eq!(target_of("db/app"), "db");
        assert_eq!(target_of("files"), "files");
    }
}
