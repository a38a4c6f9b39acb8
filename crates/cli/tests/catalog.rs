//! The catalog at scale: a fold killed at any step loses no record and duplicates none; a damaged segment
//! is reported, hides nothing loose, and `repair` removes it. (Copies of folded history: `copy.rs`.)

mod common;

use std::collections::BTreeSet;

use common::*;

fn folding_repo() -> Repo {
    // Writers fold once more than five records are loose.
    let repo = Repo::uninitialised(None, vec![("BUNKER_FOLD_AFTER".into(), "5".into())], Vec::new());
    repo.ok(&["init"]);
    repo
}

/// Every run record's ID, checking none is listed twice.
fn record_ids(repo: &Repo) -> BTreeSet<String> {
    let rows = repo.json(&["history"]);
    let ids: Vec<String> = rows.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let set: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "a record is listed twice: {ids:?}");
    set
}

fn files(repo: &Repo, dir: &str) -> usize {
    std::fs::read_dir(repo.path.join(dir)).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn a_fold_killed_at_any_step_leaves_every_record_readable_exactly_once() {
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), b"the sixth backup").unwrap();
    for point in ["fold-segment-written", "fold-run-deleted", "fold-run-deleted#4"] {
        let repo = folding_repo();
        for n in 0..5 {
            repo.backup_bytes(&format!("s{n}"), format!("backup {n}").as_bytes());
        }
        assert_eq!(files(&repo, "catalog/runs"), 0, "five loose records are not enough to fold");
        let five = record_ids(&repo);
        assert_eq!(five.len(), 5);

        // The sixth backup saves its record, then folds, and is killed in the middle of it.
        repo.kill_at(point, &["backup", "--stdin", "--name", "s5"], Some(input.path()));
        let six = record_ids(&repo);
        assert_eq!(six.len(), 6, "killed at {point}");
        assert!(six.is_superset(&five), "killed at {point}");
        assert_eq!(files(&repo, "catalog/runs"), 1, "killed at {point}");
        assert_eq!(repo.snapshot_count(), 6);

        // prune's fold finishes the job (the killed backup's lock is stale: its process is gone).
        repo.ok(&["prune"]);
        let seven = record_ids(&repo);
        assert_eq!(seven.len(), 7, "after {point}: the six and prune's own");
        assert!(seven.is_superset(&six));
        assert_eq!(files(&repo, "runs"), 1, "after {point}: only prune's own record is loose");
        assert_eq!(files(&repo, "catalog/runs"), 1, "after {point}: one segment for the month");
        repo.ok(&["check"]);
    }
}

#[test]
fn a_replaced_segment_killed_before_its_delete_is_read_once() {
    let repo = folding_repo();
    for n in 0..6 {
        repo.backup_bytes(&format!("s{n}"), format!("backup {n}").as_bytes());
    }
    assert_eq!(files(&repo, "catalog/runs"), 1);
    for n in 6..11 {
        repo.backup_bytes(&format!("s{n}"), format!("backup {n}").as_bytes());
    }
    let before = record_ids(&repo);
    // The twelfth backup folds again: a new segment for the month, then the old one goes.
    let input = tempfile::NamedTempFile::new().unwrap();
    repo.kill_at("fold-segment-written", &["backup", "--stdin", "--name", "s11"], Some(input.path()));
    assert_eq!(files(&repo, "catalog/runs"), 2, "old and new segment side by side");
    let after = record_ids(&repo);
    assert_eq!(after.len(), 12);
    assert!(after.is_superset(&before));
    // prune folds too, and tidies what the killed fold left.
    repo.ok(&["prune"]);
    assert_eq!(files(&repo, "catalog/runs"), 1);
    assert_eq!(files(&repo, "runs"), 1, "only prune's own record is loose");
    assert_eq!(record_ids(&repo).len(), 13, "the twelve and prune's own");
}

#[test]
fn a_damaged_segment_is_reported_never_hides_loose_records_and_repair_removes_it() {
    let repo = folding_repo();
    for n in 0..6 {
        repo.backup_bytes(&format!("s{n}"), b"x");
    }
    let seg = std::fs::read_dir(repo.path.join("catalog/runs")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let name = format!("catalog/runs/{}", seg.file_name().unwrap().to_string_lossy());

    let later = repo.backup_bytes("later", b"y");
    let out = repo.run(&["--json", "history"]);
    assert_eq!(out.status.code(), Some(3), "done, around a damaged file: {}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&name), "the damaged segment is named: {stderr}");
    assert!(
        rows.as_array().unwrap().iter().any(|r| r["snapshot"].as_str() == Some(later.as_str())),
        "the loose record of the later backup is still listed: {rows}"
    );

    let check = repo.run(&["check"]);
    assert!(!check.status.success());
    let said = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(said.contains(&name), "check names the damaged segment: {said}");
    repo.ok(&["repair", "snapshots"]);
    assert!(!seg.exists(), "repair removed the damaged segment");
    repo.ok(&["check"]);
}

/// `[catalog] keep`: prune drops run records older than it, but keeps each target's newest (and newest
/// successful) record of an operation, and drills and failures about snapshots still in the repository.
#[test]
fn catalog_keep_drops_old_history_but_not_what_kept_snapshots_need() {
    use bunker_engine::catalog::{RunRecord, RunStatus};
    use bunker_engine::storage::{Location, Storage};

    let repo = Repo::new();
    let kept = repo.backup_bytes("kept", b"a snapshot that stays");
    let engine =
        bunker_engine::Repository::open(Storage::open(&Location::Local(repo.path.clone())).unwrap(), PASSWORD).unwrap();
    let days = |n: i64| chrono::Utc::now() - chrono::Duration::days(n);
    let save = |op: &str, target: &str, age: i64, status: RunStatus, snapshot: Option<&str>, details| {
        let mut r = RunRecord::new(op, days(age), status);
        r.ended = days(age);
        r.target = Some(target.into());
        r.snapshot = snapshot.map(str::to_string);
        r.details = details;
        engine.save_run(&mut r).unwrap().to_hex()
    };
    let null = serde_json::Value::Null;
    let on = |id: &str| serde_json::json!({"targets": [{"target": "kept", "snapshots": [id]}]});
    let old_backup = save("backup", "gone", 800, RunStatus::Success, None, null.clone());
    let newest_of_gone = save("backup", "gone", 700, RunStatus::Success, None, null.clone());
    let failed_verify = save("verify", "kept", 900, RunStatus::Failed, Some(&kept), null.clone());
    let old_drill = save("drill", "", 900, RunStatus::Success, None, on(&kept[..12]));
    let drill_of_gone = save("drill", "", 890, RunStatus::Success, None, on("00112233445566"));
    let _recent_drill = save("drill", "", 1, RunStatus::Success, None, on(&kept));
    let before = record_ids(&repo);

    let cfg = repo.root.join("bunker.toml");
    std::fs::write(&cfg, "[catalog]\nkeep = \"1y\"\n").unwrap();
    let dry = String::from_utf8(repo.ok(&["--config", cfg.to_str().unwrap(), "prune", "--dry-run"])).unwrap();
    assert!(dry.contains("would drop 2 run records older than 1year"), "{dry}");
    assert_eq!(record_ids(&repo).len(), before.len() + 1, "a dry run drops nothing (it adds its own record)");

    let out = String::from_utf8(repo.ok(&["--config", cfg.to_str().unwrap(), "prune"])).unwrap();
    assert!(out.contains("dropped 2 run records"), "{out}");
    let after = record_ids(&repo);
    for gone in [&old_backup, &drill_of_gone] {
        assert!(!after.contains(gone), "{gone} should be gone: {after:?}");
    }
    for stays in [&newest_of_gone, &failed_verify, &old_drill] {
        assert!(after.contains(stays), "{stays} should stay");
    }
    let ops = |repo: &Repo| -> Vec<String> {
        repo.json(&["history"])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["operation"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        after.len(),
        before.len() + 2 - 2,
        "the two dropped, the two prunes' own records added: {:?}",
        ops(&repo)
    );
    repo.ok(&["check"]);
    // Without the setting nothing more goes (check and prune add their own records).
    repo.ok(&["prune"]);
    assert_eq!(record_ids(&repo).len(), after.len() + 2, "{:?}", ops(&repo));
}

#[test]
fn a_backup_names_its_parent_from_the_catalog_and_falls_back_to_a_listing() {
    let repo = Repo::new();
    let parent_of = |id: &str| {
        let snaps = repo.snapshots();
        let s = snaps.iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("{id} not listed: {snaps:?}"));
        s["parent"].as_str().map(str::to_string)
    };
    let first = repo.backup_bytes("app", b"one");
    let other = repo.backup_bytes("db", b"other");
    let second = repo.backup_bytes("app", b"two");
    assert_eq!(parent_of(&first), None);
    assert_eq!(parent_of(&other), None, "another name is another chain");
    assert_eq!(parent_of(&second).as_deref(), Some(first.as_str()), "the newest backup record's snapshot");

    // The newest record names a snapshot that is gone (removed behind bunker's back, or by a host
    // whose forget died before its record): the listing finds the newest snapshot left.
    std::fs::remove_file(repo.path.join("snapshots").join(&second)).unwrap();
    let third = repo.backup_bytes("app", b"three");
    assert_eq!(parent_of(&third).as_deref(), Some(first.as_str()));
    let fourth = repo.backup_bytes("app", b"four");
    assert_eq!(parent_of(&fourth).as_deref(), Some(third.as_str()));
}
