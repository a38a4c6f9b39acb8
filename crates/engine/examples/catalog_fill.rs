//! Grows a repository's history for `bench/scale.sh`: `catalog_fill REPOSITORY RUNS SNAPSHOTS`, with the
//! password in `BUNKER_PASSWORD`. The repository must hold at least one real snapshot per target (a
//! `bunker backup --all`); each new snapshot is a copy of its target's newest one (the same root, so no
//! data is added) an hour earlier than the last, tagged with a recovery point every tenth round, and each
//! gets the run record a backup leaves. The other records are what a daemon's year adds: schedule runs,
//! checks, forgets, copies, restores and drills, with the details those operations write. Only files a
//! real bunker writes are written, through the engine's own API, many at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use bunker_engine::catalog::{RunRecord, RunStatus};
use bunker_engine::storage::{Location, Storage};
use bunker_engine::{Repository, Snapshot};
use chrono::{Duration, Utc};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, repo, runs, snapshots] = &args[..] else {
        eprintln!("usage: catalog_fill REPOSITORY RUNS SNAPSHOTS (password in BUNKER_PASSWORD)");
        std::process::exit(2);
    };
    let (runs, snapshots): (usize, usize) = (runs.parse().expect("RUNS"), snapshots.parse().expect("SNAPSHOTS"));
    let password = std::env::var("BUNKER_PASSWORD").expect("BUNKER_PASSWORD");
    let storage = Storage::open(&Location::parse(repo).expect("location")).expect("storage");
    let repo = Repository::open(storage, &password).expect("open");

    let existing = repo.load_snapshots().expect("snapshots");
    let mut newest: BTreeMap<String, Snapshot> = BTreeMap::new();
    for s in existing {
        newest.insert(s.name.clone(), s);
    }
    assert!(!newest.is_empty(), "back up every target once first");
    let targets: Vec<Snapshot> = newest.into_values().collect();
    let oldest = repo.load_runs().expect("runs").first().map(|r| r.started).unwrap_or_else(Utc::now);

    // Work items: (hours before the oldest record, what to write).
    enum Item {
        Snapshot { target: usize, point: Option<String> },
        Point { id: String, targets: Vec<String> },
        Other(&'static str),
    }
    let mut items: Vec<(i64, Item)> = Vec::new();
    let rounds = snapshots.div_ceil(targets.len());
    let mut made = 0;
    for round in 0..rounds {
        let hours = round as i64 + 1;
        let point = (round % 10 == 0).then(|| {
            let t = oldest - Duration::hours(hours);
            format!("{}-{:04x}", t.format("%Y%m%dT%H%M%SZ"), round % 0xffff)
        });
        for t in 0..targets.len() {
            if made < snapshots {
                items.push((hours, Item::Snapshot { target: t, point: point.clone() }));
                made += 1;
            }
        }
        if let Some(id) = point {
            items.push((hours, Item::Point { id, targets: targets.iter().map(|s| s.name.clone()).collect() }));
        }
    }
    let others = ["schedule", "schedule", "schedule", "check", "forget", "copy", "restore", "drill"];
    let mut n = 0;
    // Every item writes one run record (a snapshot's is its backup's).
    while items.len() < runs {
        items.push(((n / 4) as i64 + 1, Item::Other(others[n % others.len()])));
        n += 1;
    }

    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let workers = std::env::var("FILL_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((hours, item)) = items.get(i) else { break };
                let started = oldest - Duration::hours(*hours) - Duration::seconds(i as i64 % 3600);
                let ended = started + Duration::seconds(2 + (i as i64 % 40));
                let record = |op: &str, target: Option<String>, snapshot: Option<String>, details| {
                    let mut r = RunRecord::new(op, started, RunStatus::Success);
                    r.ended = ended;
                    r.target = target;
                    r.snapshot = snapshot;
                    r.details = details;
                    if i.is_multiple_of(97) {
                        r.status = RunStatus::Failed;
                        r.error = Some("connection refused (a failure, for the history)".into());
                    }
                    repo.save_run(&mut r).expect("save run");
                };
                match item {
                    Item::Snapshot { target, point } => {
                        let mut s = targets[*target].clone();
                        s.time = started;
                        s.tags = point.iter().map(|p| format!("point:{p}")).collect();
                        s.parent = None;
                        repo.save_snapshot(&mut s).expect("save snapshot");
                        let mut r = RunRecord::new("backup", started, RunStatus::Success);
                        r.ended = ended;
                        r.target = Some(s.name.clone());
                        r.snapshot = Some(s.id().to_hex());
                        r.bytes_read = s.stats.bytes_read;
                        repo.save_run(&mut r).expect("save run");
                    }
                    Item::Point { id, targets } => record(
                        "point",
                        None,
                        None,
                        json!({"point": id, "targets": targets, "snapshots": [], "failed": []}),
                    ),
                    Item::Other("schedule") => record(
                        "schedule",
                        None,
                        None,
                        json!({"job": "hourly", "kind": "backup", "commands": ["backup --all"], "exit_code": 0}),
                    ),
                    Item::Other("check") => record("check", None, None, json!({"read_data": "1/7", "packs_read": 3})),
                    Item::Other("forget") => {
                        record("forget", None, None, json!({"dry_run": false, "removed": 0, "kept": snapshots}))
                    }
                    Item::Other("copy") => record(
                        "copy",
                        None,
                        None,
                        json!({"to": "offsite", "snapshots": 10, "packs": 2, "objects": 0, "runs": 40, "bytes": 123456}),
                    ),
                    Item::Other(op) => record(op, Some(targets[i % targets.len()].name.clone()), None, json!({})),
                }
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d.is_multiple_of(2000) {
                    eprintln!("catalog_fill: {d} of {} written", items.len());
                }
            });
        }
    });
    eprintln!("catalog_fill: {} run records and {made} snapshots written", items.len());
}
