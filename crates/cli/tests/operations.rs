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
