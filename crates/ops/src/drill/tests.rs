//! Drill selection and smoke-test scoping, without processes: snapshots and point records built in
//! memory, the stack file parsed from text.

use bunker_engine::catalog::{RunRecord, RunStatus};
use bunker_engine::snapshot::Root;
use bunker_engine::tree::Content;
use bunker_engine::{FileId, Snapshot};
use chrono::{DateTime, Duration, Utc};

use super::record::{DrillRecord, TargetDrill};
use super::*;

fn t0() -> DateTime<Utc> {
    "2026-12-01T10:00:00Z".parse().unwrap()
}

fn snap(name: &str, kind: &str, minutes: i64, point: Option<&str>) -> Snapshot {
    Snapshot {
        id: Some(FileId::of(format!("{name}{minutes}{point:?}").as_bytes())),
        time: t0() + Duration::minutes(minutes),
        host: "h".into(),
        name: name.into(),
        kind: kind.into(),
        tags: point.map(|p| vec![format!("point:{p}")]).unwrap_or_default(),
        meta: serde_json::json!({}),
        root: Root::Stream { size: 0, content: Content::Chunks(Vec::new()) },
        stats: Default::default(),
        parent: None,
        warnings: Vec::new(),
        bunker_version: "test".into(),
    }
}

fn point_run(id: &str, minutes: i64, targets: &[&str]) -> RunRecord {
    let mut r = RunRecord::new("point", t0() + Duration::minutes(minutes), RunStatus::Success);
    r.ended = r.started + Duration::minutes(1);
    r.details = serde_json::json!({ "point": id, "targets": targets, "snapshots": ["x"] });
    r
}

/// A point at minute 0 with db and cache, then a standalone backup of db at minute 30.
fn history() -> (Vec<Snapshot>, Vec<RunRecord>) {
    let snapshots = vec![
        snap("db", "postgres-logical", 0, Some("P1")),
        snap("cache", "redis-rdb", 0, Some("P1")),
        snap("db", "postgres-logical", 30, None),
        // An incomplete snapshot is never drilled as "the newest".
        {
            let mut s = snap("db", "postgres-logical", 40, None);
            s.warnings.push("a table could not be read".into());
            s
        },
    ];
    (snapshots, vec![point_run("P1", 0, &["db", "cache"])])
}

#[test]
fn without_a_choice_the_newest_point_is_drilled() {
    let (snapshots, runs) = history();
    let c = choose(None, &[], false, &snapshots, &runs).unwrap();
    assert_eq!(c.point.as_deref(), Some("P1"));
    assert_eq!(c.targets.keys().collect::<Vec<_>>(), ["cache", "db"]);
    assert_eq!(c.targets["db"][0].time, t0());
    assert_eq!(c.until, Some(t0() + Duration::minutes(1)));
}

#[test]
fn chosen_targets_drill_their_newest_complete_snapshot_not_the_points() {
    let (snapshots, runs) = history();
    let c = choose(None, &["db".to_string()], true, &snapshots, &runs).unwrap();
    assert_eq!(c.point, None);
    assert_eq!(c.targets.keys().collect::<Vec<_>>(), ["db"]);
    assert_eq!(c.targets["db"][0].time, t0() + Duration::minutes(30), "the standalone backup is newer");
    assert_eq!(c.time, t0() + Duration::minutes(30), "the RPO is that snapshot's age");
    assert_eq!(c.until, None, "physical targets recover to the end of the archive");
    // With the point named, the point's snapshot it is.
    let c = choose(Some("latest"), &["db".to_string()], true, &snapshots, &runs).unwrap();
    assert_eq!(c.point.as_deref(), Some("P1"));
    assert_eq!(c.targets["db"][0].time, t0());
}

#[test]
fn a_target_without_a_snapshot_is_named() {
    let (snapshots, runs) = history();
    let e = choose(None, &["media".to_string()], true, &snapshots, &runs).unwrap_err().to_string();
    assert!(e.contains("\"media\"") && e.contains("--targets"), "{e}");
    let e = choose(Some("P9"), &[], false, &snapshots, &runs).unwrap_err().to_string();
    assert!(e.contains("no recovery point \"P9\""), "{e}");
    let e = choose(None, &[], false, &[], &[]).unwrap_err().to_string();
    assert!(e.contains("no complete snapshot"), "{e}");
}

const TWO_APPS: &str = r#"
[targets.shop_db]
type = "command"
backup = "true"
[targets.shop_files]
type = "files"
paths = ["/srv/shop"]
[targets.blog_db]
type = "command"
backup = "true"
after_restore = "reindex blog"
[targets.search]
type = "command"
backup = "true"
after_restore = "rebuild index"
drill_after_restore = true

[groups.shop]
targets = ["shop_db", "shop_files"]
after_restore = "curl shop"
[groups.blog]
targets = ["blog_db"]
after_restore = ["curl blog", "check blog"]

[drill]
after_restore = "stack smoke"
"#;

fn drilled(config: &str, targets: &[(&str, &str, &str)]) -> (bunker_config::Config, DrillRecord) {
    let config = bunker_config::Config::parse(config, std::path::Path::new("/tmp/bunker.toml")).unwrap();
    let record = DrillRecord {
        targets: targets
            .iter()
            .map(|(t, kind, into)| TargetDrill {
                target: t.to_string(),
                kind: kind.to_string(),
                restored_into: into.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    (config, record)
}

#[test]
fn each_group_smoke_test_runs_with_its_own_targets_only() {
    let (config, record) = drilled(
        TWO_APPS,
        &[
            ("blog_db", "command", "read and checked in memory"),
            ("search", "command", "read and checked in memory"),
            ("shop_db", "postgres-logical", "postgresql://postgres@127.0.0.1:5999/"),
            ("shop_files", "files", "/"),
        ],
    );
    let tests = smoke_tests(&config, None, &record);
    let scopes: Vec<(&str, &str)> = tests.iter().map(|t| (t.scope.as_str(), t.command.as_str())).collect();
    assert_eq!(
        scopes,
        [
            ("drill", "stack smoke"),
            ("group shop", "curl shop"),
            ("group blog", "curl blog"),
            ("group blog", "check blog"),
            ("target blog_db", "reindex blog"),
            ("target search", "rebuild index"),
        ]
    );
    let shop = &tests[1];
    assert_eq!(shop.targets, ["shop_db", "shop_files"]);
    let env = shop.environment(&record);
    let has = |k: &str| env.iter().any(|(n, _)| n == k);
    assert!(
        has("BUNKER_DRILL_TARGET_SHOP_DB") && has("BUNKER_DRILL_PG_URL") && has("BUNKER_DRILL_FILES_DIR"),
        "{env:?}"
    );
    assert!(!has("BUNKER_DRILL_TARGET_BLOG_DB"), "the shop's test never sees the blog: {env:?}");
    assert!(env.contains(&("BUNKER_DRILL".to_string(), "1".to_string())));
    let blog = tests[2].environment(&record);
    assert!(blog.iter().any(|(k, _)| k == "BUNKER_DRILL_TARGET_BLOG_DB"), "{blog:?}");
    assert!(!blog.iter().any(|(k, _)| k.contains("SHOP") || k == "BUNKER_DRILL_PG_URL"), "{blog:?}");
    // A target's own hook runs only where it opts in; otherwise it is listed, not run.
    assert!(tests[4].skipped.as_deref().is_some_and(|w| w.contains("drill_after_restore = true")));
    assert_eq!(tests[5].skipped, None);
    assert_eq!(tests[5].targets, ["search"]);
}

#[test]
fn a_group_drill_runs_that_groups_tests_and_not_the_stacks() {
    let (config, record) = drilled(TWO_APPS, &[("blog_db", "command", "x")]);
    let tests = smoke_tests(&config, Some("blog"), &record);
    let scopes: Vec<&str> = tests.iter().map(|t| t.scope.as_str()).collect();
    assert_eq!(scopes, ["group blog", "group blog", "target blog_db"]);
    // A group not wholly drilled does not run its test.
    let (config, record) = drilled(TWO_APPS, &[("shop_db", "postgres-logical", "x")]);
    let tests = smoke_tests(&config, None, &record);
    assert!(tests.iter().all(|t| t.scope != "group shop"), "{tests:?}");
}

#[test]
fn group_drills_choose_the_groups_targets() {
    let config = bunker_config::Config::parse(TWO_APPS, std::path::Path::new("/tmp/bunker.toml")).unwrap();
    let request = DrillRequest { group: Some("shop".into()), ..Default::default() };
    let (targets, newest) = scope(Some(&config), &request).unwrap();
    assert_eq!((targets, newest), (vec!["shop_db".to_string(), "shop_files".to_string()], true));
    let request = DrillRequest { group: Some("nope".into()), ..Default::default() };
    let e = scope(Some(&config), &request).unwrap_err().to_string();
    assert!(e.contains("\"nope\"") && e.contains("shop, blog"), "{e}");
}
