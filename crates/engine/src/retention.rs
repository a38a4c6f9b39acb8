//! Which snapshots a retention policy keeps, with restic's semantics: snapshots are grouped by name and
//! walked newest first; `keep_last` keeps the N newest; each `keep_<period>` keeps the newest snapshot of
//! each of the N most recent periods that have one; `keep_within` keeps all snapshots younger than the
//! duration, measured back from the group's newest snapshot. A snapshot kept by any rule is kept.
//!
//! Two guards sit above the rules, because day-based retention running on while backups silently fail
//! has cost people everything: nothing younger than `min_age` (measured from now) is ever removed, and
//! the newest complete snapshot of each name (one without warnings) is always kept, as is the newest.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Local, Timelike, Utc};

use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<Duration>,
    /// The floor: snapshots younger than this, as of `now`, are kept whatever the rules say.
    pub min_age: Option<Duration>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
            && self.keep_within.is_none()
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    pub snapshot: String,
    pub name: String,
    pub time: DateTime<Utc>,
    pub keep: bool,
    /// Rules that keep it (empty when it goes).
    pub reasons: Vec<String>,
}

type BucketFn = fn(DateTime<Local>) -> i64;

fn hour(t: DateTime<Local>) -> i64 {
    (t.year() as i64 * 1000 + t.ordinal() as i64) * 100 + t.hour() as i64
}
fn day(t: DateTime<Local>) -> i64 {
    t.year() as i64 * 1000 + t.ordinal() as i64
}
fn week(t: DateTime<Local>) -> i64 {
    let w = t.iso_week();
    w.year() as i64 * 100 + w.week() as i64
}
fn month(t: DateTime<Local>) -> i64 {
    t.year() as i64 * 100 + t.month() as i64
}
fn year(t: DateTime<Local>) -> i64 {
    t.year() as i64
}
fn each(_: DateTime<Local>) -> i64 {
    // keep-last: every snapshot is its own bucket; the counter does the work.
    i64::MIN
}

/// Applies `policy` to `snapshots` (any order) as of `now`; returns one decision per snapshot, newest
/// first per name.
pub fn apply(policy: &Policy, snapshots: &[Snapshot], now: DateTime<Utc>) -> Vec<Decision> {
    let mut groups: BTreeMap<&str, Vec<&Snapshot>> = BTreeMap::new();
    for s in snapshots {
        groups.entry(&s.name).or_default().push(s);
    }
    let mut out = Vec::new();
    for (_, mut group) in groups {
        group.sort_by_key(|s| std::cmp::Reverse(s.time));
        let newest = group[0].time;
        let mut rules: Vec<(&str, Option<u32>, BucketFn, Option<i64>)> = vec![
            ("last", policy.keep_last, each, None),
            ("hourly", policy.keep_hourly, hour, None),
            ("daily", policy.keep_daily, day, None),
            ("weekly", policy.keep_weekly, week, None),
            ("monthly", policy.keep_monthly, month, None),
            ("yearly", policy.keep_yearly, year, None),
        ];
        let newest_complete = group.iter().position(|s| s.warnings.is_empty());
        for (at, s) in group.into_iter().enumerate() {
            let local = s.time.with_timezone(&Local);
            let mut reasons = Vec::new();
            if at == 0 {
                reasons.push("newest".into());
            }
            if at > 0 && newest_complete == Some(at) {
                reasons.push("newest complete".into());
            }
            if policy.min_age.is_some_and(|floor| s.time > now - floor) {
                reasons.push("younger than min_age".into());
            }
            for (label, remaining, bucket, last) in rules.iter_mut() {
                let Some(n) = remaining else { continue };
                if *n == 0 {
                    continue;
                }
                let b = bucket(local);
                if *label == "last" || *last != Some(b) {
                    *n -= 1;
                    *last = Some(b);
                    reasons.push(label.to_string());
                }
            }
            if let Some(within) = policy.keep_within {
                if s.time > newest - within {
                    reasons.push("within".into());
                }
            }
            out.push(Decision {
                snapshot: s.id.map(|i| i.to_hex()).unwrap_or_default(),
                name: s.name.clone(),
                time: s.time,
                keep: !reasons.is_empty(),
                reasons,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::FileId;
    use crate::snapshot::{Root, SnapshotStats};
    use crate::tree::Content;

    fn snap(i: u8, time: DateTime<Utc>) -> Snapshot {
        Snapshot {
            id: Some(FileId([i; 32])),
            time,
            host: "h".into(),
            name: "db".into(),
            kind: "stream".into(),
            tags: vec![],
            meta: serde_json::Value::Null,
            root: Root::Stream { size: 0, content: Content::default() },
            stats: SnapshotStats::default(),
            parent: None,
            warnings: vec![],
            bunker_version: "t".into(),
        }
    }

    /// Four snapshots a day (every 6 h) for 60 days.
    fn series() -> Vec<Snapshot> {
        let start = DateTime::parse_from_rfc3339("2026-01-01T01:00:00Z").unwrap().with_timezone(&Utc);
        (0..240).map(|i| snap(i as u8, start + Duration::hours(6 * i))).collect()
    }

    fn end_of_series() -> DateTime<Utc> {
        series().last().unwrap().time
    }

    fn kept(policy: Policy) -> usize {
        apply(&policy, &series(), end_of_series() + Duration::days(30)).iter().filter(|d| d.keep).count()
    }

    #[test]
    fn restic_semantics() {
        assert_eq!(kept(Policy { keep_last: Some(5), ..Default::default() }), 5);
        assert_eq!(kept(Policy { keep_daily: Some(7), ..Default::default() }), 7);
        assert_eq!(kept(Policy { keep_hourly: Some(10), ..Default::default() }), 10);
        assert_eq!(kept(Policy { keep_monthly: Some(12), ..Default::default() }), 3, "Jan, Feb, Mar have snapshots");
        // last 3 + daily 3 overlap on the newest day.
        let overlap = kept(Policy { keep_last: Some(3), keep_daily: Some(3), ..Default::default() });
        assert!((3..=6).contains(&overlap));
        assert_eq!(kept(Policy { keep_within: Some(Duration::days(2)), ..Default::default() }), 8);
        // The newest snapshot is always the first kept by any count rule.
        let d = apply(&Policy { keep_daily: Some(1), ..Default::default() }, &series(), end_of_series());
        assert!(d[0].keep && d[0].time == series().last().unwrap().time);
    }

    #[test]
    fn nothing_younger_than_the_floor_goes() {
        // Backups every 6 h; forget runs 1 day after the last with keep-last 2 and a 7-day floor: the
        // 6 days of snapshots before "now - 7 days" fall to the rules, the 24 younger ones stay.
        let now = end_of_series() + Duration::days(1);
        let policy = Policy { keep_last: Some(2), min_age: Some(Duration::days(7)), ..Default::default() };
        let d = apply(&policy, &series(), now);
        let young = series().iter().filter(|s| s.time > now - Duration::days(7)).count();
        assert_eq!(young, 24);
        assert_eq!(d.iter().filter(|d| d.keep).count(), young);
        assert!(d.iter().filter(|d| d.time <= now - Duration::days(7)).all(|d| !d.keep));
        assert!(d.iter().filter(|d| d.keep).all(|d| d.reasons.iter().any(|r| r == "younger than min_age")));
        // Without the floor, keep-last alone.
        let d = apply(&Policy { keep_last: Some(2), ..Default::default() }, &series(), now);
        assert_eq!(d.iter().filter(|d| d.keep).count(), 2);
    }

    #[test]
    fn the_newest_complete_snapshot_is_never_removed() {
        // Backups silently incomplete for the last 10 days: keep-last 3 would keep only incomplete ones.
        let mut snaps = series();
        let n = snaps.len();
        for s in &mut snaps[n - 40..] {
            s.warnings = vec!["could not read table x".into()];
        }
        let last_good = snaps[n - 41].time;
        let d =
            apply(&Policy { keep_last: Some(3), ..Default::default() }, &snaps, end_of_series() + Duration::days(60));
        let kept: Vec<_> = d.iter().filter(|d| d.keep).collect();
        assert_eq!(kept.len(), 4);
        let good = kept.iter().find(|d| d.time == last_good).expect("the newest complete snapshot is kept");
        assert_eq!(good.reasons, ["newest complete"]);
        // The newest of all is kept too, whatever the rules (keep-within measured from it keeps it anyway).
        let d = apply(&Policy { keep_monthly: Some(0), ..Default::default() }, &snaps, end_of_series());
        assert!(d[0].keep && d[0].reasons.contains(&"newest".to_string()));
    }
}
