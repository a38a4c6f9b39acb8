//! `bunker copy --to NAME`: a secondary repository of the stack file, created on first use with its own
//! password, filled incrementally, readable on its own; on local disk and on S3 (moto), and after a kill.

mod common;

use std::path::{Path, PathBuf};

use common::moto::Moto;
use common::*;

const SECONDARY_PASSWORD: &str = "offsite: a different passphrase";

/// The primary's stack file with `[repositories]` sections after its `[repository]`.
fn stack(primary: &Repo, secondaries: &str) -> PathBuf {
    let path = primary.root.join("bunker.toml");
    std::fs::write(&path, format!("[repository]\nurl = \"{}\"\n\n{secondaries}", primary.path.display())).unwrap();
    path
}

/// A local secondary `offsite` (and a second one, `dr`) inside the primary's scratch directory.
fn with_offsite(primary: &Repo) -> (PathBuf, PathBuf) {
    let dir = primary.root.join("offsite");
    let cfg = stack(
        primary,
        &format!(
            "[repositories.offsite]\nurl = \"{}\"\npassword = \"{SECONDARY_PASSWORD}\"\n\n\
             [repositories.dr]\nurl = \"{}\"\npassword = \"dr-secret-42\"\n",
            dir.display(),
            primary.root.join("dr").display()
        ),
    );
    (cfg, dir)
}

/// The secondary as a repository of its own: its location and ONLY its password.
fn secondary(location: &str, env: &[(&str, &str)]) -> Repo {
    let mut all = vec![("BUNKER_PASSWORD".to_string(), SECONDARY_PASSWORD.to_string())];
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Repo::uninitialised(Some(location.to_string()), all, Vec::new())
}

fn copy(primary: &Repo, cfg: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--config", cfg.to_str().unwrap(), "--json", "copy", "--to", "offsite"];
    args.extend_from_slice(extra);
    serde_json::from_slice(&primary.ok(&args)).expect("copy --json")
}

fn counts(v: &serde_json::Value) -> (u64, u64, u64) {
    (v["snapshots"].as_u64().unwrap(), v["packs"].as_u64().unwrap(), v["runs"].as_u64().unwrap())
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(files_under(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn site(root: &Path) -> PathBuf {
    let site = root.join("site");
    std::fs::create_dir_all(site.join("uploads/2026")).unwrap();
    std::fs::write(site.join("index.html"), b"<h1>hello</h1>\n").unwrap();
    std::fs::write(site.join("uploads/2026/photo.bin"), random_data(700_000, 9)).unwrap();
    site
}

#[test]
fn the_secondary_is_created_and_restores_with_its_own_password_only() {
    let primary = Repo::new();
    let db = mixed_data(3 << 20, 1);
    primary.backup_bytes("db", &db);
    primary.backup_bytes("cache", &random_data(1 << 20, 2));
    let tree = site(&primary.root);
    primary.ok(&["backup", "--path", tree.to_str().unwrap(), "--name", "site"]);
    let (cfg, dir) = with_offsite(&primary);
    let cfg_arg = cfg.to_str().unwrap();

    // A dry run says what would happen and creates nothing.
    let dry = primary.ok(&["--config", cfg_arg, "copy", "--to", "offsite", "--dry-run"]);
    let dry = String::from_utf8(dry).unwrap();
    assert!(dry.starts_with("would create offsite; would copy 3 snapshots, "), "{dry}");
    assert!(!dir.exists(), "a dry run created the secondary");

    let out = String::from_utf8(primary.ok(&["--config", cfg_arg, "copy", "--to", "offsite"])).unwrap();
    assert!(out.starts_with("created offsite; copied 3 snapshots, "), "{out}");
    assert!(out.contains(" run records to offsite"), "{out}");
    assert!(!out.contains(SECONDARY_PASSWORD));

    // Read back with nothing but the secondary's location and password.
    let sec = secondary(dir.to_str().unwrap(), &[]);
    assert_eq!(sec.snapshot_count(), 3);
    assert_eq!(sec.dump("db:latest"), db);
    assert_eq!(sec.dump("cache:latest"), random_data(1 << 20, 2));
    let restored = primary.root.join("restored");
    sec.ok(&["restore", "site:latest", "--to", restored.to_str().unwrap()]);
    assert_eq!(std::fs::read(restored.join("site/uploads/2026/photo.bin")).unwrap(), random_data(700_000, 9));
    assert_eq!(std::fs::read(restored.join("site/index.html")).unwrap(), b"<h1>hello</h1>\n");
    sec.ok(&["check", "--read-data"]);
    let history = sec.json(&["history"]);
    let backups = history.as_array().unwrap().iter().filter(|r| r["operation"] == "backup").count();
    assert_eq!(backups, 3, "the primary's catalog came along: {history}");

    // The primary's password does not open it: it has a key slot of its own.
    let with_primary_password = Repo::uninitialised(Some(dir.to_string_lossy().into_owned()), Vec::new(), Vec::new());
    assert_eq!(with_primary_password.run(&["snapshots"]).status.code(), Some(12));

    // The copy is in the primary's catalog.
    let runs = primary.json(&["history", "--operation", "copy"]);
    let run = &runs.as_array().unwrap()[0];
    assert_eq!((run["status"].as_str(), run["details"]["to"].as_str()), (Some("success"), Some("offsite")), "{run}");
    assert_eq!(run["details"]["snapshots"], 3);
}

#[test]
fn copies_are_incremental() {
    let primary = Repo::new();
    primary.backup_bytes("db", &mixed_data(2 << 20, 1));
    primary.backup_bytes("db", &mixed_data(2 << 20, 2));
    let (cfg, _) = with_offsite(&primary);
    let first = copy(&primary, &cfg, &[]);
    assert_eq!(counts(&first), (2, primary.packs().len() as u64, 2), "{first}");
    assert_eq!(first["created"], true);

    let before = primary.packs().len();
    primary.backup_bytes("db", &[mixed_data(2 << 20, 2), random_data(1 << 20, 3)].concat());
    let new_packs = (primary.packs().len() - before) as u64;
    let second = copy(&primary, &cfg, &[]);
    // The new snapshot, its new packs only, and two run records: the backup's and the first copy's.
    assert_eq!(counts(&second), (1, new_packs, 2), "{second}");
    assert_eq!((second["snapshots_present"].as_u64(), second["created"].as_bool()), (Some(2), Some(false)));

    let third = copy(&primary, &cfg, &[]);
    // Nothing but the record of the second copy, written in the primary after it ended.
    assert_eq!(counts(&third), (0, 0, 1), "{third}");
    assert_eq!(third["snapshots_present"], 3);
}

#[test]
fn an_unknown_name_or_a_foreign_repository_is_refused() {
    let primary = Repo::new();
    primary.backup_bytes("db", b"some data");
    let (cfg, dir) = with_offsite(&primary);
    let cfg_arg = cfg.to_str().unwrap();

    let o = primary.run(&["--config", cfg_arg, "copy", "--to", "elsewhere"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no secondary repository \"elsewhere\"") && stderr(&o).contains("offsite, dr"),
        "{}",
        stderr(&o)
    );

    // Another repository that the secondary's password happens to open: refused, nothing written.
    let other = secondary(dir.to_str().unwrap(), &[]);
    other.ok(&["init"]);
    other.backup_bytes("mine", b"other data");
    let before: Vec<(PathBuf, u64)> =
        files_under(&dir).into_iter().map(|p| (p.clone(), std::fs::metadata(&p).unwrap().len())).collect();
    let o = primary.run(&["--config", cfg_arg, "copy", "--to", "offsite"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("was not created by `bunker copy` from this repository"), "{}", stderr(&o));
    let after: Vec<(PathBuf, u64)> =
        files_under(&dir).into_iter().map(|p| (p.clone(), std::fs::metadata(&p).unwrap().len())).collect();
    assert_eq!(before, after, "the foreign repository was written to");

    // One whose key the secondary's password does not open: a wrong password (exit 12), named as such.
    let dr = Repo::uninitialised(Some(primary.root.join("dr").to_string_lossy().into_owned()), Vec::new(), Vec::new());
    dr.ok(&["init"]);
    let o = primary.run(&["--config", cfg_arg, "copy", "--to", "dr"]);
    assert_eq!(o.status.code(), Some(12), "{}", stderr(&o));
    assert!(stderr(&o).contains("[repositories.dr]") && !stderr(&o).contains("dr-secret-42"), "{}", stderr(&o));
    let failed = primary.json(&["history", "--operation", "copy", "--failed"]);
    assert_eq!(failed.as_array().unwrap().len(), 2, "failed copies are in the catalog: {failed}");
}

#[test]
fn an_interrupted_copy_leaves_no_snapshot_without_its_data_and_a_rerun_completes() {
    let primary = Repo::new();
    for seed in 1..=4 {
        primary.backup_bytes(&format!("s{seed}"), &random_data(1 << 20, seed));
    }
    let (cfg, dir) = with_offsite(&primary);
    let cfg_arg = cfg.to_str().unwrap();
    primary.kill_at("copy-pack-written#2", &["--config", cfg_arg, "copy", "--to", "offsite"], None);

    let sec = secondary(dir.to_str().unwrap(), &[]);
    let stored = files_under(&dir.join("data")).len();
    assert!(stored >= 2, "packs were copied before the kill");
    assert_eq!(sec.snapshot_count(), 0, "a snapshot was copied before its data was indexed");
    assert!(files_under(&dir.join("index")).is_empty());
    sec.ok(&["check"]);

    let rerun = copy(&primary, &cfg, &[]);
    assert_eq!(rerun["snapshots"], 4);
    assert_eq!(rerun["packs_indexed"].as_u64().unwrap() as usize, stored, "{rerun}");
    assert_eq!(rerun["packs"].as_u64().unwrap() as usize + stored, 4, "{rerun}");
    for seed in 1..=4 {
        assert_eq!(sec.dump(&format!("s{seed}:latest")), random_data(1 << 20, seed));
    }
    sec.ok(&["check", "--read-data"]);
}

#[test]
fn a_secondary_on_s3_takes_a_copy_and_restores_alone() {
    let moto = Moto::start();
    moto.create_bucket("offsite");
    let url = format!("s3://offsite/bunker?endpoint={}&region=us-east-1&path-style=true", moto.endpoint());
    let aws = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
    ];
    let primary = Repo::new();
    let db = mixed_data(3 << 20, 5);
    primary.backup_bytes("db", &db);
    primary.backup_bytes("db", &[db.clone(), random_data(500_000, 6)].concat());
    // No password in the stack file: the environment gives it.
    let cfg = stack(&primary, &format!("[repositories.offsite]\nurl = \"{url}\"\n"));
    let cfg_arg = cfg.to_str().unwrap();

    let o = primary.cmd(&["--config", cfg_arg, "copy", "--to", "offsite"]).envs(aws).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("BUNKER_SECONDARY_PASSWORD"), "{}", stderr(&o));

    let run = |args: &[&str]| {
        let o = primary.cmd(args).envs(aws).env("BUNKER_SECONDARY_PASSWORD", SECONDARY_PASSWORD).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let first = run(&["--config", cfg_arg, "--json", "copy", "--to", "offsite"]);
    assert_eq!((first["snapshots"].as_u64(), first["created"].as_bool()), (Some(2), Some(true)), "{first}");
    let again = run(&["--config", cfg_arg, "--json", "copy", "--to", "offsite"]);
    assert_eq!(counts(&again), (0, 0, 1), "{again}");

    let sec = secondary(&url, &aws);
    assert_eq!(sec.dump("db:latest"), [db.clone(), random_data(500_000, 6)].concat());
    let oldest = sec.snapshots()[0]["id"].as_str().unwrap().to_string();
    assert_eq!(sec.dump(&oldest), db);
    sec.ok(&["check", "--read-data"]);
}

#[test]
fn folded_history_is_copied_once() {
    // Writers fold once more than five records are loose.
    let primary = Repo::uninitialised(None, vec![("BUNKER_FOLD_AFTER".into(), "5".into())], Vec::new());
    primary.ok(&["init"]);
    for n in 0..8 {
        primary.backup_bytes(&format!("s{n}"), format!("{n}").as_bytes());
    }
    assert_eq!(std::fs::read_dir(primary.path.join("catalog/runs")).unwrap().count(), 1);
    let ids = |repo: &Repo| -> std::collections::BTreeSet<String> {
        let rows = repo.json(&["history"]);
        rows.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    };
    let ours = ids(&primary);
    let (cfg, dir) = with_offsite(&primary);
    let first = copy(&primary, &cfg, &[]);
    assert_eq!(counts(&first).0, 8, "{first}");
    let theirs = ids(&secondary(dir.to_str().unwrap(), &[]));
    assert!(theirs.is_superset(&ours), "the secondary has every record, folded ones too");
    // Nothing is sent twice: only the first copy's own record is new.
    let again = copy(&primary, &cfg, &[]);
    assert_eq!(counts(&again), (0, 0, 1), "{again}");
}
