//! Operating bunker from the stack file: retention per target with its floor, and health.

mod common;

use common::*;

fn stack(repo: &Repo, body: &str) -> std::path::PathBuf {
    let path = repo.root.join("bunker.toml");
    std::fs::write(&path, format!("[repository]\nurl = \"{}\"\n\n{body}", repo.path.display())).unwrap();
    path
}

fn count(repo: &Repo, name: &str) -> usize {
    repo.snapshots().iter().filter(|s| s["name"] == name).count()
}

#[test]
fn forget_follows_the_stack_files_retention_with_its_floor() {
    let repo = Repo::new();
    let cfg = stack(
        &repo,
        "[retention]\nkeep_last = 1\n\n\
         [targets.web]\ntype = \"command\"\nbackup = \"date +%N\"\n\n\
         [targets.search]\ntype = \"command\"\nbackup = \"date +%N\"\nretention = { keep_last = 2, min_age = \"0s\" }\n",
    );
    let run = |args: &[&str]| repo.cmd(args).env("BUNKER_CONFIG", &cfg).output().unwrap();
    for _ in 0..3 {
        assert!(run(&["backup", "web"]).status.success());
        assert!(run(&["backup", "search"]).status.success());
    }
    repo.backup_bytes("adhoc", b"one");
    repo.backup_bytes("adhoc", b"two");

    // web: keep_last 1, but the 7-day floor keeps all three; search: its own policy, no floor;
    // adhoc is no target of the stack file: kept.
    let dry = run(&["forget", "--dry-run"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert_eq!((count(&repo, "web"), count(&repo, "search")), (3, 3), "a dry run removed snapshots");
    let o = run(&["--json", "forget"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let reasons = |name: &str| -> Vec<String> {
        out["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["name"] == name)
            .flat_map(|d| d["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()))
            .collect()
    };
    assert_eq!((count(&repo, "web"), count(&repo, "search"), count(&repo, "adhoc")), (3, 2, 2));
    assert!(reasons("web").iter().filter(|r| *r == "younger than min_age").count() == 3, "{:?}", reasons("web"));
    assert!(reasons("adhoc").iter().all(|r| r == "not a target of the stack file"));

    // --min-age lowers the floor for one run.
    assert!(run(&["forget", "--min-age", "0s"]).status.success());
    assert_eq!((count(&repo, "web"), count(&repo, "search"), count(&repo, "adhoc")), (1, 2, 2));
}

#[test]
fn forget_without_any_policy_refuses() {
    let repo = Repo::new();
    let cfg = stack(&repo, "[targets.web]\ntype = \"command\"\nbackup = \"echo 1\"\n");
    let o = repo.cmd(&["forget"]).env("BUNKER_CONFIG", &cfg).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("[retention]"));
}

#[test]
fn status_judges_each_target_from_the_catalog_and_exits_by_level() {
    let repo = Repo::new();
    let flag = repo.root.join("fail");
    let cfg = stack(
        &repo,
        &format!("[targets.web]\ntype = \"command\"\nbackup = \"test ! -e '{}' && echo data\"\n", flag.display()),
    );
    let run = |args: &[&str]| repo.cmd(args).env("BUNKER_CONFIG", &cfg).output().unwrap();
    let status = || {
        let o = run(&["--json", "status"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
            panic!("status --json: {} {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
        });
        (o.status.code(), v)
    };

    // Never backed up: critical.
    let (code, v) = status();
    assert_eq!(code, Some(2));
    assert_eq!(v["targets"][0]["reasons"][0], "no successful backup yet");

    // Backed up: ok, with the time of the success and the repository's size.
    assert!(run(&["backup", "web"]).status.success());
    let (code, v) = status();
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["level"], "ok");
    assert!(v["targets"][0]["last_success_age_secs"].as_f64().unwrap() < 600.0);
    assert!(v["repository"]["stored_bytes"].as_u64().unwrap() > 0);

    // Two failures since: a warning naming them and the last error.
    std::fs::write(&flag, "").unwrap();
    assert!(!run(&["backup", "web"]).status.success());
    assert!(!run(&["backup", "web"]).status.success());
    let (code, v) = status();
    assert_eq!(code, Some(1), "{v}");
    let t = &v["targets"][0];
    assert_eq!((t["consecutive_failures"].as_u64(), t["failures_7d"].as_u64()), (Some(2), Some(2)));
    assert!(t["reasons"][0].as_str().unwrap().contains("2 failed backup(s)"), "{t}");
    let text = String::from_utf8_lossy(&run(&["status"]).stdout).into_owned();
    assert!(text.contains("WARNING") && text.contains("web") && text.contains("overall: warning"), "{text}");

    // The catalog lives in the repository: without the local cache, the same judgement.
    std::fs::remove_dir_all(repo.root.join("cache")).unwrap();
    let (code, v) = status();
    assert_eq!(code, Some(1));
    assert_eq!(v["targets"][0]["consecutive_failures"].as_u64(), Some(2));
    let history = run(&["--json", "history", "--target", "web"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&history.stdout).unwrap().as_array().unwrap().len(), 3);
}

#[test]
fn backup_all_takes_one_recovery_point_and_points_lists_it() {
    let repo = Repo::new();
    let flag = repo.root.join("fail");
    let data = repo.root.join("etc");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("app.conf"), "x = 1\n").unwrap();
    let cfg = stack(
        &repo,
        &format!(
            "[groups]\nnightly = [\"search\", \"config\"]\n\n\
             [targets.search]\ntype = \"command\"\nbackup = \"echo index\"\n\n\
             [targets.config]\ntype = \"files\"\npaths = [\"{}\"]\n\n\
             [targets.queue]\ntype = \"command\"\nbackup = \"test ! -e '{}' && echo jobs\"\n",
            data.display(),
            flag.display()
        ),
    );
    let run = |args: &[&str]| repo.cmd(args).env("BUNKER_CONFIG", &cfg).output().unwrap();
    let o = run(&["--json", "backup", "--all"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let point: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = point["point"].as_str().unwrap().to_string();
    assert_eq!(point["snapshots"].as_array().unwrap().len(), 3);
    let tagged = repo.snapshots().iter().filter(|s| s["tags"].to_string().contains(&format!("point:{id}"))).count();
    assert_eq!(tagged, 3, "every snapshot of the point carries its tag");

    // A group, with one target failing in --all: the others still land, the point is incomplete.
    assert!(run(&["backup", "--group", "nightly"]).status.success());
    std::fs::write(&flag, "").unwrap();
    let o = run(&["backup", "--all"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 of 3 targets saved; failed: queue"));
    let o = run(&["--json", "points"]);
    let points: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(points.len(), 3);
    assert_eq!(points[0]["point"], id.as_str());
    assert_eq!((points[0]["complete"].as_bool(), points[1]["complete"].as_bool()), (Some(true), Some(true)));
    assert_eq!(points[1]["targets"], serde_json::json!(["search", "config"]));
    assert_eq!(points[2]["complete"], false);
    assert_eq!(points[2]["missing"], serde_json::json!(["queue"]));

    let o = run(&["backup", "--group", "weekly"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no group \"weekly\" (its groups: nightly)"));
}

#[test]
fn restore_point_puts_every_target_back() {
    let repo = Repo::new();
    let redis = bunker_scratch::ScratchRedis::start().unwrap();
    let redis_cli = |args: &[&str]| {
        let o = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port().to_string()])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    redis_cli(&["SET", "session:1", "alice"]);
    redis_cli(&["SET", "session:2", "bob"]);
    let data = repo.root.join("etc");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("app.conf"), "x = 1\n").unwrap();
    let index = repo.root.join("index.json");
    std::fs::write(&index, "{\"docs\": 3}").unwrap();
    let restored_index = repo.root.join("restored-index.json");
    let cfg = stack(
        &repo,
        &format!(
            "[targets.search]\ntype = \"command\"\nbackup = \"cat '{}'\"\nrestore = \"cat > '{}'\"\n\n\
             [targets.config]\ntype = \"files\"\npaths = [\"{}\"]\n\n\
             [targets.cache]\ntype = \"redis\"\nurl = \"{}\"\n",
            index.display(),
            restored_index.display(),
            data.display(),
            redis.url()
        ),
    );
    let run = |args: &[&str]| repo.cmd(args).env("BUNKER_CONFIG", &cfg).output().unwrap();
    let o = run(&["--json", "backup", "--all"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["point"].as_str().unwrap().to_string();
    // A later point with other data: restoring the first must bring back the first's.
    std::fs::write(&index, "{\"docs\": 4}").unwrap();
    redis_cli(&["SET", "session:3", "carol"]);
    assert!(run(&["backup", "--all"]).status.success());
    redis_cli(&["FLUSHALL"]);

    // Files need --to; without it that target fails and the others are still restored.
    let o = run(&["restore", "--point", &id, "--force"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("give --to DIR to restore the files target config"));
    assert_eq!(std::fs::read_to_string(&restored_index).unwrap(), "{\"docs\": 3}");
    assert_eq!(redis_cli(&["DBSIZE"]), "2");

    let out = repo.root.join("out");
    let o = run(&["--json", "restore", "--point", &id, "--to", out.to_str().unwrap(), "--force"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["point"], id.as_str());
    assert_eq!(report["restored"].as_array().unwrap().len(), 3);
    let conf = std::fs::read_dir(out.join("config")).unwrap().count();
    assert!(conf > 0, "the files target was restored under --to/config");
    assert_eq!(redis_cli(&["GET", "session:1"]), "alice");
    assert_eq!(redis_cli(&["EXISTS", "session:3"]), "0", "the point's data, not the later one");

    let o = run(&["restore", "--point", "20200101T000000Z-0000"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no recovery point"));
}

#[test]
fn forget_keep_flags_respect_the_stack_files_floor() {
    let repo = Repo::new();
    let cfg = stack(
        &repo,
        "[retention]\nkeep_daily = 7\n\n\
         [targets.web]\ntype = \"command\"\nbackup = \"date +%N\"\n\n\
         [targets.search]\ntype = \"command\"\nbackup = \"date +%N\"\nretention = { min_age = \"0s\" }\n\n\
         [targets.media]\ntype = \"command\"\nbackup = \"date +%N\"\nretention = \"none\"\n",
    );
    let run = |args: &[&str]| {
        let o = repo.cmd(args).env("BUNKER_CONFIG", &cfg).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        o
    };
    for _ in 0..3 {
        run(&["backup", "web"]);
        run(&["backup", "search"]);
        run(&["backup", "media"]);
    }
    repo.backup_bytes("adhoc", b"one");
    repo.backup_bytes("adhoc", b"two");
    let counts = || (count(&repo, "web"), count(&repo, "search"), count(&repo, "media"), count(&repo, "adhoc"));
    // Command-line rules keep the stack file's floor: [retention]'s 7 days, search's own "0s".
    run(&["forget", "--keep-last", "1"]);
    assert_eq!(counts(), (3, 1, 3, 2));
    // "none" unsets every inherited rule: media keeps everything; adhoc is no target.
    let o = run(&["--json", "forget", "--min-age", "0s"]);
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(out["decisions"].as_array().unwrap().iter().filter(|d| d["name"] == "media").all(|d| d["keep"] == true));
    assert_eq!(counts(), (1, 1, 3, 2));
    run(&["forget", "--keep-last", "1", "--min-age", "0s"]);
    assert_eq!(counts(), (1, 1, 1, 1));
}
