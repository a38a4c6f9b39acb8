//! Bad input and faults: wrong passwords, damaged packs, crashes at every step of backup and prune,
//! locks held by others. Each must end in a clear error and nothing referenced lost.

mod common;

use common::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn wrong_password_missing_repository_and_unknown_version() {
    let repo = Repo::new();
    let out = repo.cmd(&["snapshots"]).env("BUNKER_PASSWORD", "nope").output().unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong password"));
    assert!(!stderr(&out).contains("nope"), "the password leaked into the error");

    let out = repo.cmd(&["snapshots"]).env("BUNKER_REPO", repo.root.join("nothing-here")).output().unwrap();
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(stderr(&out).contains("bunker init"));
    assert!(!repo.root.join("nothing-here").exists(), "looking for a repository created a directory");

    let config = repo.path.join("config");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    v["version"] = 7.into();
    std::fs::write(&config, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = repo.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("version 7 is not supported"), "{}", stderr(&out));

    let out = repo.run(&["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"));
}

#[test]
fn password_file_and_key_slots() {
    let repo = Repo::new();
    let id = repo.backup_bytes("x", b"hello");
    let pwfile = repo.root.join("pw");
    std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
    let out =
        repo.cmd(&["dump", &id]).env_remove("BUNKER_PASSWORD").env("BUNKER_PASSWORD_FILE", &pwfile).output().unwrap();
    assert_eq!(out.stdout, b"hello");

    repo.cmd(&["key", "add"]).env("BUNKER_NEW_PASSWORD", "second").output().unwrap();
    let keys = repo.json(&["key", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert_eq!(repo.cmd(&["dump", &id]).env("BUNKER_PASSWORD", "second").output().unwrap().stdout, b"hello");
    // The key in use cannot be removed; the other can, from the second password.
    let current =
        keys.as_array().unwrap().iter().find(|k| k["current"] == true).unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(repo.run(&["key", "remove", &current[..8]]).status.code(), Some(1));
    let out = repo.cmd(&["key", "remove", &current[..8]]).env("BUNKER_PASSWORD", "second").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(repo.run(&["snapshots"]).status.code(), Some(12));
    // passwd replaces the key in use.
    let out = repo
        .cmd(&["key", "passwd"])
        .env("BUNKER_PASSWORD", "second")
        .env("BUNKER_NEW_PASSWORD", "third")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(repo.cmd(&["snapshots"]).env("BUNKER_PASSWORD", "second").output().unwrap().status.code(), Some(12));
    assert_eq!(repo.cmd(&["dump", &id]).env("BUNKER_PASSWORD", "third").output().unwrap().stdout, b"hello");
}

#[test]
fn flipped_byte_and_truncated_pack_are_found_and_named() {
    let repo = Repo::with_init_args(&["--pack-size-mib", "1"]);
    let a = repo.backup_bytes("a", &random_data(6 << 20, 1));
    let b = repo.backup_bytes("b", &random_data(6 << 20, 2));
    repo.ok(&["check", "--read-data"]);
    let packs = repo.packs();
    assert!(packs.len() >= 4);

    // Flip one byte in the middle of a data pack of a: plain check can't see it, --read-data must.
    let a_bytes = random_data(6 << 20, 1);
    let victim = packs
        .iter()
        .find(|p| {
            std::fs::metadata(p).unwrap().len() > 100_000 && {
                let mut bytes = std::fs::read(p).unwrap();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x40;
                std::fs::write(p, &bytes).unwrap();
                let broken = repo.run(&["dump", &a]).stdout != a_bytes;
                if !broken {
                    bytes[mid] ^= 0x40;
                    std::fs::write(p, &bytes).unwrap();
                }
                broken
            }
        })
        .expect("a pack holding a's data");
    let name = victim.file_name().unwrap().to_str().unwrap().to_string();
    assert!(repo.run(&["check"]).status.success(), "structure alone cannot see a flipped byte");
    let out = repo.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&name), "pack not named: {err}");
    assert!(err.contains(&format!("affects: {}", &a[..8])), "snapshot not named: {err}");
    let subset = repo.run(&["check", "--read-data-subset", "100%"]);
    assert_eq!(subset.status.code(), Some(1));
    assert!(stderr(&subset).contains(&name), "{}", stderr(&subset));
    let report: serde_json::Value =
        serde_json::from_slice(&repo.run(&["check", "--read-data", "--json"]).stdout).unwrap();
    assert_eq!(report["damaged_packs"][&name][0].as_str().unwrap()[..8], a[..8]);
    // Reading the damaged data fails loudly rather than returning wrong bytes.
    let out = repo.run(&["dump", &a]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("damaged data"), "{}", stderr(&out));

    // Truncate a pack of b: even the structural check sees its size is wrong.
    let b_bytes = random_data(6 << 20, 2);
    let victim_b = packs
        .iter()
        .filter(|p| *p != victim)
        .find(|p| {
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(p, &bytes[..bytes.len() - 1000]).unwrap();
            let broken = repo.run(&["dump", &b]).stdout != b_bytes;
            if !broken {
                std::fs::write(p, &bytes).unwrap();
            }
            broken
        })
        .expect("a pack holding b's data");
    let name_b = victim_b.file_name().unwrap().to_str().unwrap();
    let out = repo.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(name_b) && stderr(&out).contains(&b[..8]), "{}", stderr(&out));
}

/// After a crash: every snapshot that exists restores exactly, check is clean, and work goes on.
fn assert_intact(repo: &Repo, expected: &[(&str, &[u8])]) {
    let out = repo.run(&["check", "--read-data"]);
    assert!(out.status.success(), "check after crash: {}", stderr(&out));
    for (sel, data) in expected {
        assert_eq!(&repo.dump(sel)[..], *data, "{sel}");
    }
}

#[test]
fn kill_9_during_backup_never_leaves_a_snapshot_or_loses_data() {
    let repo = Repo::with_init_args(&["--pack-size-mib", "1"]);
    let base = mixed_data(6 << 20, 1);
    repo.backup_bytes("db", &base);
    let input = repo.root.join("next");
    std::fs::write(&input, mixed_data(12 << 20, 2)).unwrap();
    for point in ["backup-pack-uploaded#2", "backup-before-index", "backup-before-snapshot"] {
        repo.kill_at(point, &["backup", "--stdin", "--name", "db"], Some(&input));
        assert_eq!(repo.snapshot_count(), 1, "a snapshot appeared after a kill at {point}");
        assert_intact(&repo, &[("db:latest", &base)]);
    }
    // The dead backups' locks are stale (their process is gone) and the next backup works.
    let next = std::fs::read(&input).unwrap();
    let id = repo.backup_bytes("db", &next);
    assert_intact(&repo, &[(&id, &next), ("db:latest", &next)]);
    // Prune collects the orphans; nothing is in no index afterwards.
    repo.ok(&["prune"]);
    let out = repo.run(&["check", "--read-data"]);
    assert!(out.status.success() && !stderr(&out).contains("in no index"), "{}", stderr(&out));
    assert_intact(&repo, &[(&id, &next)]);
}

#[test]
fn kill_9_during_prune_at_each_step_loses_nothing_referenced() {
    for point in ["prune-after-repack", "prune-after-index", "prune-after-index-delete", "prune-pack-deleted#1"] {
        // Small chunks and packs, so prune has packs to delete and packs to repack.
        let repo = Repo::with_init_args(&["--pack-size-mib", "1", "--chunk-sizes", "16384,65536,262144"]);
        let old = mixed_data(4 << 20, 10);
        let mut new = old.clone();
        new[1 << 20..3 << 20].copy_from_slice(&random_data(2 << 20, 11));
        repo.backup_bytes("db", &old);
        repo.backup_bytes("db", &new);
        let keep = repo.backup_bytes("other", &random_data(1 << 20, 12));
        repo.ok(&["forget", "--keep-last", "1"]);
        let plan = repo.json(&["prune", "--dry-run"]);
        assert!(plan["packs_deleted"].as_u64().unwrap() > 0, "{plan}");
        assert!(plan["packs_repacked"].as_u64().unwrap() > 0, "{plan}");

        repo.kill_at(point, &["prune"], None);
        assert_intact(&repo, &[("db:latest", &new), (&keep, &random_data(1 << 20, 12))]);
        repo.ok(&["prune"]);
        assert_intact(&repo, &[("db:latest", &new), (&keep, &random_data(1 << 20, 12))]);
        let after = repo.json(&["prune", "--dry-run"]);
        assert_eq!(after["packs_deleted"], 0, "second prune left garbage after a kill at {point}: {after}");
        repo.backup_bytes("db", &old);
    }
}

#[test]
fn a_held_lock_gives_exit_11_and_retry_lock_waits() {
    let repo = Repo::new();
    repo.backup_bytes("db", b"data");
    let mut prune = repo.pause_at("prune-after-index", &["prune"]);
    let out = repo.run(&["backup", "--path", repo.root.to_str().unwrap(), "--name", "x"]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(stderr(&out).contains("prune") && stderr(&out).contains("--retry-lock"), "{}", stderr(&out));
    // A second exclusive holder is refused too.
    assert_eq!(repo.run(&["prune"]).status.code(), Some(11));

    // With --retry-lock the backup waits for the holder to go.
    let waiter = repo.cmd(&["backup", "--stdin", "--name", "y", "--retry-lock", "30s"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    prune.kill().unwrap();
    prune.wait().unwrap();
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success(), "backup did not get the lock once its holder died");
    assert_eq!(repo.snapshot_count(), 2);
}

#[test]
fn forget_applies_policies_and_refuses_no_policy() {
    let repo = Repo::new();
    for i in 0..5u8 {
        repo.backup_bytes("db", &[i; 1000]);
    }
    repo.backup_bytes("files", b"f");
    assert_eq!(repo.run(&["forget"]).status.code(), Some(1));
    let plan = repo.json(&["forget", "--keep-last", "2", "--name", "db", "--dry-run"]);
    assert_eq!(plan["decisions"].as_array().unwrap().iter().filter(|d| d["keep"] == false).count(), 3);
    assert_eq!(repo.snapshot_count(), 6);
    repo.ok(&["forget", "--keep-last", "2", "--name", "db", "--prune"]);
    assert_eq!(repo.snapshot_count(), 3);
    assert_eq!(repo.dump("db:latest"), vec![4u8; 1000]);
    assert_eq!(repo.dump("files:latest"), b"f");
    repo.ok(&["check", "--read-data"]);
}

#[test]
fn bad_input_gets_one_line_errors() {
    let repo = Repo::new();
    for (args, needle) in [
        (vec!["backup", "--path", "/definitely/not/here", "--name", "x"], "/definitely/not/here"),
        (vec!["dump", "nosuch:latest"], "no snapshot matches"),
        (vec!["backup", "--path", "/tmp", "--name", "x", "--exclude", "a[b"], "glob"),
        (vec!["init", "--compression", "99"], "compression level"),
    ] {
        let out = repo.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    let out = repo.cmd(&["backup", "--stdin", "--name", "s", "--repo", "ftp://x"]).output().unwrap();
    assert!(stderr(&out).contains("unsupported scheme"));
}

#[test]
fn sigint_during_backup_exits_130_without_snapshot_or_lock() {
    use std::io::Write;
    let repo = Repo::new();
    let mut child = repo
        .cmd(&["backup", "--stdin", "--name", "db"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Feed some data, then interrupt while the input is still open.
    stdin.write_all(&random_data(20 << 20, 5)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    // The backup notices at its next chunk.
    let _ = stdin.write_all(&random_data(8 << 20, 6));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(repo.snapshot_count(), 0);
    assert_eq!(std::fs::read_dir(repo.path.join("locks")).map(|d| d.count()).unwrap_or(0), 0, "lock left behind");
    assert!(repo.run(&["check"]).status.success());
    // The catalog says what happened.
    let runs = repo.json(&["history"]);
    assert_eq!(runs[0]["status"], "interrupted", "{runs}");
    assert_eq!(runs[0]["target"], "db");
    assert!(runs[0]["snapshot"].is_null());
}

#[test]
fn a_backup_that_lost_its_lock_commits_nothing() {
    let repo = Repo::new();
    let input = repo.root.join("in");
    std::fs::write(&input, mixed_data(3 << 20, 3)).unwrap();
    let mut child = repo
        .cmd(&["backup", "--stdin", "--name", "db"])
        .env("BUNKER_PAUSE_AT", "backup-before-index")
        .env("BUNKER_PAUSE_FOR_MS", "1500")
        .stdin(std::fs::File::open(&input).unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it holds its lock and is about to commit, then take the lock away (as a prune that
    // wrongly judged it stale would).
    use std::io::BufRead;
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("paused at backup-before-index") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "backup ended before its commit");
    }
    for l in std::fs::read_dir(repo.path.join("locks")).unwrap().flatten() {
        std::fs::remove_file(l.path()).unwrap();
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{rest}");
    assert!(rest.contains("lost the repository lock"), "{rest}");
    assert_eq!(repo.snapshot_count(), 0);
}

#[test]
fn prune_refuses_when_a_needed_pack_is_missing() {
    let repo = Repo::with_init_args(&["--pack-size-mib", "1"]);
    let data = random_data(6 << 20, 4);
    repo.backup_bytes("db", &data);
    let packs = repo.packs();
    let victim = packs.iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    std::fs::remove_file(victim).unwrap();
    let out = repo.run(&["prune"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("refusing to prune"), "{}", stderr(&out));
    assert_eq!(repo.packs().len(), packs.len() - 1, "prune deleted packs although it refused");
}

#[test]
fn restore_with_force_replaces_symlinks_instead_of_writing_through_them() {
    let repo = Repo::new();
    let src = repo.root.join("src");
    std::fs::create_dir_all(src.join("conf")).unwrap();
    std::fs::write(src.join("conf/app.toml"), b"restored\n").unwrap();
    repo.ok(&["backup", "--path", src.to_str().unwrap(), "--name", "files"]);

    let victim = repo.root.join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    let victim_dir = repo.root.join("victim-dir");
    std::fs::create_dir(&victim_dir).unwrap();
    let out = repo.root.join("out");
    std::fs::create_dir_all(out.join("src")).unwrap();
    std::os::unix::fs::symlink(&victim_dir, out.join("src/conf")).unwrap();
    std::fs::create_dir_all(out.join("other")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("other/x")).unwrap();
    repo.ok(&["restore", "files:latest", "--to", out.to_str().unwrap(), "--force"]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    assert!(std::fs::read_dir(&victim_dir).unwrap().next().is_none(), "wrote through a symlinked directory");
    assert!(std::fs::symlink_metadata(out.join("src/conf")).unwrap().is_dir());
    assert_eq!(std::fs::read(out.join("src/conf/app.toml")).unwrap(), b"restored\n");
}

#[test]
fn unreadable_entries_make_an_incomplete_snapshot_with_exit_3() {
    // A file its reader may not open: as root, that takes another user (root reads everything).
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let repo = Repo::uninitialised(None, Vec::new(), Vec::new());
    let run = |args: &[&str]| if root { repo.cmd_as_nobody(args).output().unwrap() } else { repo.run(args) };
    assert!(run(&["init"]).status.success());
    let src = repo.root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("ok.txt"), b"fine").unwrap();
    std::fs::write(src.join("secret.key"), b"not yours").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(src.join("ok.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(src.join("secret.key"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = run(&["backup", "--path", src.to_str().unwrap(), "--name", "files"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("secret.key"), "{}", stderr(&out));
    let snaps: serde_json::Value = serde_json::from_slice(&run(&["snapshots", "--json"]).stdout).unwrap();
    assert_eq!(snaps[0]["warnings"].as_array().unwrap().len(), 1);
    let out_dir = repo.root.join("out");
    assert!(run(&["restore", "files:latest", "--to", out_dir.to_str().unwrap()]).status.success());
    assert_eq!(std::fs::read(out_dir.join("src/ok.txt")).unwrap(), b"fine");
}

#[test]
fn check_reads_the_repository_not_the_local_cache() {
    let repo = Repo::new();
    let id = repo.backup_bytes("db", b"cached");
    repo.ok(&["snapshots"]); // fills the cache
    let path = repo.path.join("snapshots").join(&id);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let out = repo.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "check trusted the cached copy");
    assert!(stderr(&out).contains(&id[..8]) || stderr(&out).contains(&id), "{}", stderr(&out));
}
