//! `type = "command"` targets and the hooks every target can have.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn config(repo: &Repo, targets: &str) -> std::path::PathBuf {
    let path = repo.root.join("bunker.toml");
    std::fs::write(&path, format!("[repository]\nurl = \"{}\"\n\n{targets}", repo.path.display())).unwrap();
    path
}

fn out(o: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn a_command_output_is_a_snapshot_and_feeds_its_restore_command() {
    let repo = Repo::new();
    let restored = repo.root.join("restored.txt");
    let cfg = config(
        &repo,
        "[targets.search]\ntype = \"command\"\nbackup = \"printf 'doc 1\\\\ndoc 2\\\\n'; echo progress >&2\"\nrestore = \"cat > \\\"$RESTORED\\\"\"\n\n\
         [targets.broken]\ntype = \"command\"\nbackup = \"echo partial; echo index locked >&2; exit 3\"\n",
    );
    let run = |args: &[&str]| repo.cmd(args).env("BUNKER_CONFIG", &cfg).env("RESTORED", &restored).output().unwrap();

    let o = run(&["backup", "search"]);
    assert!(o.status.success(), "{:?}", out(&o));
    assert_eq!(repo.dump("search"), b"doc 1\ndoc 2\n");
    let o = run(&["restore", "search", "--exec"]);
    assert!(o.status.success(), "{:?}", out(&o));
    assert_eq!(std::fs::read(&restored).unwrap(), b"doc 1\ndoc 2\n");
    // A command given on the line instead, and one that fails.
    let o = run(&["restore", "search", "--exec", "wc -l > \"$RESTORED\""]);
    assert!(o.status.success(), "{:?}", out(&o));
    assert_eq!(std::fs::read_to_string(&restored).unwrap().trim(), "2");
    let o = run(&["restore", "search", "--exec", "exit 4"]);
    assert!(!o.status.success());
    assert!(out(&o).1.contains("exit status: 4"), "{:?}", out(&o));

    // A failing command: a failed run, its stderr in the error, and no snapshot.
    let o = run(&["backup", "broken"]);
    assert_eq!(o.status.code(), Some(1));
    let (_, err) = out(&o);
    assert!(err.contains("exit status: 3") && err.contains("index locked"), "{err}");
    assert!(repo.snapshots().iter().all(|s| s["name"] != "broken"));
    let history = out(&run(&["history", "--failed", "--json"])).0;
    assert!(history.contains("broken") && history.contains("index locked"), "{history}");
}

#[test]
fn hooks_run_around_backups_and_restores_with_their_policy() {
    let repo = Repo::new();
    let data = repo.root.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("app.conf"), "x = 1\n").unwrap();
    let log = repo.root.join("hooks.log");
    let record = "echo \\\"$BUNKER_PHASE $BUNKER_TARGET $BUNKER_STATUS $BUNKER_SNAPSHOT\\\" >> \\\"$HOOK_LOG\\\"";
    let cfg = config(
        &repo,
        &format!(
            "[targets.conf]\ntype = \"files\"\npaths = [\"{d}\"]\nbefore_backup = \"{record}\"\nafter_backup = \"{record}\"\n\
             before_restore = \"{record}\"\nafter_restore = \"{record}; exit $AFTER_RESTORE_EXIT\"\n\n\
             [targets.guarded]\ntype = \"files\"\npaths = [\"{d}\"]\nbefore_backup = \"echo refusing >&2; exit 7\"\nafter_backup = \"{record}\"\n\n\
             [targets.slow]\ntype = \"files\"\npaths = [\"{d}\"]\nbefore_backup = \"sleep 30\"\nhook_timeout = \"1s\"\n\n\
             [targets.failing]\ntype = \"command\"\nbackup = \"exit 2\"\nbefore_backup = \"{record}\"\nafter_backup = \"{record}\"\n\n\
             [targets.daemon]\ntype = \"files\"\npaths = [\"{d}\"]\nbefore_backup = \"sleep 60 &\"\n",
            d = data.display()
        ),
    );
    let run = |args: &[&str], after_restore: &str| {
        repo.cmd(args)
            .env("BUNKER_CONFIG", &cfg)
            .env("HOOK_LOG", &log)
            .env("AFTER_RESTORE_EXIT", after_restore)
            .output()
            .unwrap()
    };
    let lines = || std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>();

    let o = run(&["backup", "conf", "--json"], "0");
    assert!(o.status.success(), "{:?}", out(&o));
    let id = serde_json::from_str::<serde_json::Value>(&out(&o).0).unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(lines(), vec!["before_backup conf  ".to_string(), format!("after_backup conf success {id}")]);

    // A failing before hook cancels the backup; the after hook still runs, told it failed.
    std::fs::remove_file(&log).unwrap();
    let o = run(&["backup", "guarded"], "0");
    assert!(!o.status.success());
    assert!(
        out(&o).1.contains("before_backup hook of guarded failed") && out(&o).1.contains("refusing"),
        "{:?}",
        out(&o)
    );
    assert!(repo.snapshots().iter().all(|s| s["name"] != "guarded"));
    assert_eq!(lines(), vec!["after_backup guarded failed ".to_string()]);

    // A hook past its timeout is killed, with what it ran.
    let started = Instant::now();
    let o = run(&["backup", "slow"], "0");
    assert!(!o.status.success());
    assert!(out(&o).1.contains("did not finish within 1s"), "{:?}", out(&o));
    assert!(started.elapsed() < Duration::from_secs(15));

    // A backup that fails still runs its after hook, told so.
    std::fs::remove_file(&log).unwrap();
    let o = run(&["backup", "failing"], "0");
    assert!(!o.status.success());
    assert_eq!(lines(), vec!["before_backup failing  ".to_string(), "after_backup failing failed ".to_string()]);
    // A hook that leaves a process in the background holding its output does not hang bunker.
    let started = Instant::now();
    let o = run(&["backup", "daemon"], "0");
    assert!(o.status.success(), "{:?}", out(&o));
    assert!(started.elapsed() < Duration::from_secs(20));

    // Restore hooks; a failing after hook leaves the restore done and exits 3.
    let _ = std::fs::remove_file(&log);
    let to = repo.root.join("restored");
    let o = run(&["restore", "conf", "--to", to.to_str().unwrap()], "5");
    assert_eq!(o.status.code(), Some(3), "{:?}", out(&o));
    assert!(out(&o).1.contains("after_restore hook of conf failed"), "{:?}", out(&o));
    assert!(to.join("data/app.conf").is_file());
    assert_eq!(lines(), vec!["before_restore conf  conf".to_string(), "after_restore conf success conf".to_string()]);
    let history = out(&run(&["history", "--json"], "0")).0;
    assert!(history.contains("after_restore"), "{history}");
}
