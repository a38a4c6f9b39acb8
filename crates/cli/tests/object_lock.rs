//! S3 Object Lock against moto (versioning and Object Lock enabled on the bucket, which moto enforces):
//! every lasting object is written with a retain-until date (checked with boto3, an independent
//! client), a delete of a locked object is refused by S3 and reported at once, prune leaves what is
//! still retained, `object-lock extend` moves the dates of what kept snapshots reference only, and once
//! a lock ends, forget and prune remove every version of what is no longer needed.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::moto::{workspace, Moto};
use common::Repo;

/// boto3 against moto: `create BUCKET` (Object Lock enabled), `plain BUCKET`, `retention BUCKET PREFIX`
/// (a JSON map key → [mode, retain-until] of every current object), `versions BUCKET PREFIX` (a JSON map
/// key → number of versions and delete markers), `bypass-delete BUCKET KEY` (every version, bypassing
/// governance retention: what an administrator allowed to may do).
const HELPER: &str = r#"
import boto3, json, sys
ep, cmd, bucket = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
if cmd == "create":
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
elif cmd == "plain":
    s3.create_bucket(Bucket=bucket)
elif cmd == "retention":
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=sys.argv[4]):
        for o in page.get("Contents", []):
            h = s3.head_object(Bucket=bucket, Key=o["Key"])
            until = h.get("ObjectLockRetainUntilDate")
            out[o["Key"]] = [h.get("ObjectLockMode"), until.isoformat() if until else None]
    print(json.dumps(out))
elif cmd == "versions":
    out = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=sys.argv[4]):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            out[v["Key"]] = out.get(v["Key"], 0) + 1
    print(json.dumps(out))
elif cmd == "bypass-delete":
    key = sys.argv[4]
    for v in s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", []):
        if v["Key"] == key:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=v["VersionId"], BypassGovernanceRetention=True)
"#;

fn helper(moto: &Moto, args: &[&str]) -> String {
    let python = workspace().join(".venv/bin/python");
    let out = Command::new(python).arg("-c").arg(HELPER).arg(moto.endpoint()).args(args).output().unwrap();
    assert!(out.status.success(), "helper {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

type Locks = std::collections::BTreeMap<String, (Option<String>, Option<DateTime<Utc>>)>;

fn retention(moto: &Moto, prefix: &str) -> Locks {
    retention_in(moto, "locked", prefix)
}

fn retention_in(moto: &Moto, bucket: &str, prefix: &str) -> Locks {
    let v: serde_json::Value = serde_json::from_str(&helper(moto, &["retention", bucket, prefix])).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, e)| {
            let mode = e[0].as_str().map(str::to_string);
            let until = e[1].as_str().map(|t| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc));
            (k.clone(), (mode, until))
        })
        .collect()
}

fn versions(moto: &Moto, prefix: &str) -> std::collections::BTreeMap<String, u64> {
    serde_json::from_str(&helper(moto, &["versions", "locked", prefix])).unwrap()
}

fn s3(moto: &Moto, bucket: &str, prefix: &str) -> Repo {
    let url = format!("s3://{bucket}/{prefix}?endpoint={}&region=us-east-1&path-style=true", moto.endpoint());
    Repo::s3(url, &[("BUNKER_RETRY_MIN_DELAY_MS", "10"), ("BUNKER_CACHE_DIR", "off")])
}

fn is_short_lived(key: &str) -> bool {
    ["/locks/", "/runs/", "/catalog/"].iter().any(|d| key.contains(d))
}

fn pack_keys(locks: &Locks) -> Vec<String> {
    locks.keys().filter(|k| k.contains("/data/")).cloned().collect()
}

#[test]
fn every_lasting_object_is_locked_and_only_referenced_ones_are_extended() {
    let moto = Moto::start();
    helper(&moto, &["create", "locked"]);
    helper(&moto, &["plain", "plain"]);

    // A bucket without Object Lock is refused with a line that says how to make one.
    let plain = s3(&moto, "plain", "repo");
    let o = plain.run(&["init", "--object-lock", "1d"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("does not have S3 Object Lock enabled"), "{err}");

    let repo = s3(&moto, "locked", "repo");
    let before_init = Utc::now();
    repo.ok(&["init", "--object-lock", "1d", "--object-lock-mode", "governance"]);
    let first = common::random_data(3 << 20, 1);
    let second = common::random_data(3 << 20, 2);
    let old = repo.backup_bytes("app", &first);
    let old_packs = pack_keys(&retention(&moto, "repo/"));
    let kept_snapshot = repo.backup_bytes("app", &second);
    let kept_packs: Vec<String> =
        pack_keys(&retention(&moto, "repo/")).into_iter().filter(|p| !old_packs.contains(p)).collect();
    assert!(!old_packs.is_empty() && !kept_packs.is_empty());

    // Every object but locks and the catalog carries a governance lock of about one day.
    let locks = retention(&moto, "repo/");
    let day = chrono::Duration::days(1);
    let mut lasting = 0;
    for (key, (mode, until)) in &locks {
        if is_short_lived(key) {
            assert_eq!((mode.as_deref(), until), (None, &None), "{key} is short-lived and must not be locked");
            continue;
        }
        lasting += 1;
        assert_eq!(mode.as_deref(), Some("GOVERNANCE"), "{key}");
        let until = until.unwrap_or_else(|| panic!("{key} has no retain-until date"));
        assert!(
            until >= before_init + day - chrono::Duration::seconds(2) && until <= Utc::now() + day,
            "{key}: {until}"
        );
    }
    assert!(lasting >= 7, "config, key, 2 snapshots, packs and index files: {locks:?}");
    assert!(locks.keys().any(|k| k.ends_with("/config")) && locks.keys().any(|k| k.contains("/keys/")));

    // S3 refuses to delete a locked snapshot: forget reports it and keeps it, at once (no retrying).
    let started = Instant::now();
    let o = repo.run(&["forget", "--name", "app", "--keep-last", "1", "--min-age", "0s"]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("kept 1 snapshots S3 Object Lock still retains"), "{out}");
    assert!(out.contains("locked until"), "{out}");
    assert!(!err.contains("retry"), "a refused delete was retried: {err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(repo.snapshot_count(), 2);

    // An administrator who may bypass governance removes the old snapshot: its pack is now unreferenced
    // but still locked, so prune leaves it (and says so), and the repository stays consistent.
    let snapshot_key = format!("repo/snapshots/{old}");
    helper(&moto, &["bypass-delete", "locked", &snapshot_key]);
    assert_eq!(repo.snapshot_count(), 1);
    let packs_before = pack_keys(&retention(&moto, "repo/"));
    let o = repo.run(&["prune"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains(&format!("object lock: left {} packs", old_packs.len())), "{out}");
    assert_eq!(pack_keys(&retention(&moto, "repo/")), packs_before, "a locked pack was deleted");
    repo.ok(&["check", "--read-data"]);
    let pruned: serde_json::Value = serde_json::from_slice(&repo.ok(&["history", "--json"])).unwrap();
    let prune_record = pruned.as_array().unwrap().iter().rev().find(|r| r["operation"] == "prune").unwrap();
    assert_eq!(prune_record["details"]["packs_retained"], old_packs.len(), "{prune_record}");

    // Extending moves the dates of what the kept snapshot references, and of nothing else.
    let before = retention(&moto, "repo/");
    let o = repo.run(&["object-lock", "extend"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = retention(&moto, "repo/");
    let mut moved = 0;
    for (key, (_, until)) in &after {
        if is_short_lived(key) {
            continue;
        }
        let was = before[key].1.unwrap();
        let now = until.unwrap();
        let is_pack = key.contains("/data/");
        let referenced = !is_pack || kept_packs.contains(key);
        if referenced && !key.contains("/index/") {
            assert!(now > was + chrono::Duration::hours(1), "{key} was not extended: {was} → {now}");
            moved += 1;
        } else if !referenced {
            assert_eq!(now, was, "{key} is referenced by no kept snapshot and must keep its date");
        }
    }
    assert!(moved >= 4, "{after:?}");
    let status: serde_json::Value = serde_json::from_slice(&repo.ok(&["status", "--json"])).unwrap();
    let lock = &status["repository"]["protection"]["object_lock"];
    assert_eq!(lock["mode"], "governance", "{status}");
    assert_eq!(lock["period_secs"], 86_400);
    let earliest = DateTime::parse_from_rfc3339(lock["earliest_until"].as_str().unwrap()).unwrap();
    assert!(earliest > Utc::now() + day - chrono::Duration::minutes(5), "{lock}");
    let text = String::from_utf8_lossy(&repo.ok(&["status"])).into_owned();
    assert!(text.contains("S3 Object Lock, governance mode, 1day, earliest lock end"), "{text}");

    // A second extension finds everything locked far enough ahead and moves nothing.
    let o = repo.run(&["object-lock", "extend", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["extended"], 0, "{report}");
    assert_eq!(repo.dump(&kept_snapshot[..8]), second);
}

/// Once a short lock ends, forget and prune delete every version of what is no longer needed (a plain
/// delete would leave the bytes behind a delete marker), and the rest restores intact.
#[test]
fn once_the_lock_ends_forget_and_prune_remove_every_version() {
    let moto = Moto::start();
    helper(&moto, &["create", "locked"]);
    let repo = s3(&moto, "locked", "short");
    repo.ok(&["init", "--object-lock", "3s"]);
    let first = common::random_data(2 << 20, 3);
    let second = common::random_data(2 << 20, 4);
    let old = repo.backup_bytes("app", &first);
    let old_packs: Vec<String> = versions(&moto, "short/data/").into_keys().collect();
    std::thread::sleep(Duration::from_secs(4));
    let new = repo.backup_bytes("app", &second);
    let o = repo.run(&["forget", "--name", "app", "--keep-last", "1", "--min-age", "0s", "--prune"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("removed 1 of 2 snapshots"), "{out}");
    let left = versions(&moto, "short/");
    for p in &old_packs {
        assert!(!left.contains_key(p), "pack {p} of the forgotten snapshot still has versions: {left:?}");
    }
    assert!(!left.contains_key(&format!("short/snapshots/{old}")), "{left:?}");
    repo.ok(&["check", "--read-data"]);
    assert_eq!(repo.dump(&new), second);
}

/// The daemon extends the lock after each backup job, and `/metrics` exports the lock and the earliest
/// lock end that extension left.
#[test]
fn the_daemon_extends_after_backups_and_exports_the_lock() {
    let moto = Moto::start();
    helper(&moto, &["create", "locked"]);
    let repo = s3(&moto, "locked", "daemon");
    repo.ok(&["init", "--object-lock", "2d", "--object-lock-mode", "compliance"]);
    let listen = bunker_scratch::free_port().unwrap();
    let cfg = repo.root.join("bunker.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository]\nurl = \"{}\"\n\n[targets.app]\ntype = \"command\"\nbackup = \"seq 1 5000\"\n\n\
             [schedules.often]\nrun = \"backup\"\ncron = \"* * * * * *\"\n",
            repo.location
        ),
    )
    .unwrap();
    let mut daemon = repo
        .cmd(&[
            "--config",
            cfg.to_str().unwrap(),
            "daemon",
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--refresh",
            "1s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let text = loop {
        assert!(Instant::now() < deadline, "no object-lock extension in /metrics");
        if let Some(text) = metrics(listen) {
            if text.contains("bunker_repository_object_lock_earliest_until_timestamp_seconds ") {
                break text;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let _ = daemon.wait();
    assert!(text.contains("bunker_repository_object_lock_seconds 172800"), "{text}");
    let earliest: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("bunker_repository_object_lock_earliest_until_timestamp_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(earliest > (Utc::now() + chrono::Duration::days(2) - chrono::Duration::minutes(10)).timestamp() as f64);
    let history: serde_json::Value = serde_json::from_slice(&repo.ok(&["history", "--json"])).unwrap();
    let ops: Vec<&str> = history.as_array().unwrap().iter().filter_map(|r| r["operation"].as_str()).collect();
    assert!(ops.contains(&"backup") && ops.contains(&"object-lock"), "{ops:?}");
    // Compliance mode: the snapshot the daemon took carries it.
    let locks = retention(&moto, "daemon/snapshots/");
    assert!(!locks.is_empty() && locks.values().all(|(m, _)| m.as_deref() == Some("COMPLIANCE")), "{locks:?}");
}

fn metrics(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.contains(" 200 ").then_some(out)
}

/// Monthly copies nobody can delete for a year: `[repositories.vault] object_lock = "365d"` creates the
/// secondary under a compliance lock on first copy, every object copied carries it, and the copy
/// restores from there.
#[test]
fn a_secondary_created_by_copy_is_locked_as_the_stack_file_says() {
    let moto = Moto::start();
    helper(&moto, &["create", "vault"]);
    let repo = Repo::new();
    let data = common::random_data(3 << 20, 5);
    let id = repo.backup_bytes("app", &data);
    let vault = format!("s3://vault/monthly?endpoint={}&region=us-east-1&path-style=true", moto.endpoint());
    let cfg = repo.root.join("bunker.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository]\nurl = \"{}\"\n\n[repositories.vault]\nurl = \"{vault}\"\npassword = \"vault-pw\"\n\
             object_lock = \"365d\"\nobject_lock_mode = \"compliance\"\n",
            repo.path.display()
        ),
    )
    .unwrap();
    let with_aws = |mut c: Command| {
        c.env("BUNKER_CONFIG", &cfg)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3");
        c
    };
    let o = with_aws(repo.cmd(&["copy", "--to", "vault"])).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("object lock: extended"), "{out}");
    let locks = retention_in(&moto, "vault", "monthly/");
    let year = Utc::now() + chrono::Duration::days(364);
    let mut lasting = 0;
    for (key, (mode, until)) in &locks {
        if is_short_lived(key) {
            continue;
        }
        lasting += 1;
        assert_eq!(mode.as_deref(), Some("COMPLIANCE"), "{key}");
        assert!(until.is_some_and(|u| u > year), "{key} is locked until {until:?} only");
    }
    assert!(lasting >= 5, "{locks:?}");
    let dumped = with_aws(repo.cmd(&["dump", &id[..8]]))
        .env("BUNKER_REPO", &vault)
        .env("BUNKER_PASSWORD", "vault-pw")
        .env("BUNKER_CACHE_DIR", "off")
        .output()
        .unwrap();
    assert!(dumped.status.success(), "{}", String::from_utf8_lossy(&dumped.stderr));
    assert_eq!(dumped.stdout, data);
}
