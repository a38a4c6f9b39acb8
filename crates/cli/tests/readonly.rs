//! Reading needs no write access: a repository on a read-only mount, one its user may not write, one
//! on a full disk and one behind read-only S3 credentials still lists, restores, checks and drills
//! (each reader goes on without its lock, with a warning); what must write fails at once with one line
//! that names the cause; a full disk leaves nothing in `tmp/`, and everything works once space is back.
//!
//! Mounts (a read-only bind mount, a small tmpfs) need root, as CI runs; as another user those tests
//! say so and return.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::moto::{Gate, Moto};
use common::{mixed_data, random_data, Repo};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A mount point that is unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn run(args: &[&str]) -> bool {
        Command::new("mount").args(args).output().is_ok_and(|o| o.status.success())
    }

    fn read_only_bind(from: &Path, at: &Path) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        let (f, a) = (from.to_str().unwrap(), at.to_str().unwrap());
        if !Self::run(&["--bind", f, a]) {
            return None;
        }
        let m = Mount(at.to_path_buf());
        Self::run(&["-o", "remount,ro,bind", a]).then_some(m)
    }

    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        Self::run(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", at.to_str().unwrap()])
            .then(|| Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A stack of a files target and a command target, backed up once as a recovery point.
fn stack(repo: &Repo) -> (PathBuf, PathBuf) {
    let files = repo.root.join("files");
    std::fs::create_dir_all(files.join("conf")).unwrap();
    std::fs::write(files.join("conf/app.env"), b"MODE=production\n").unwrap();
    std::fs::write(files.join("big.bin"), mixed_data(1 << 20, 3)).unwrap();
    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[targets.files]\ntype = \"files\"\npaths = [\"{}\"]\n\n[targets.search]\ntype = \"command\"\nbackup = \"seq 1 5000\"\n",
            files.display()
        ),
    )
    .unwrap();
    let o = repo.cmd(&["backup", "--all"]).env("BUNKER_CONFIG", &config).output().unwrap();
    assert!(o.status.success(), "backup --all: {}", stderr(&o));
    (config, files)
}

/// Every reading route on a repository that refuses writes: all succeed, each says once that it reads
/// without a lock; a backup fails at once naming `cause`.
fn reads_work(run: &dyn Fn(&[&str]) -> Output, files: &Path, scratch: &Path, cause: &str) {
    let seq: String = (1..=5000).map(|i| format!("{i}\n")).collect();
    let o = run(&["dump", "search:latest"]);
    assert!(o.status.success(), "dump: {}", stderr(&o));
    assert_eq!(o.stdout, seq.as_bytes());
    assert!(stderr(&o).contains("reading without one"), "dump says it reads without a lock: {}", stderr(&o));
    let into = scratch.join("restored");
    let o = run(&["restore", "files:latest", "--to", into.to_str().unwrap()]);
    assert!(o.status.success(), "restore: {}", stderr(&o));
    assert_eq!(std::fs::read(into.join("files/big.bin")).unwrap(), std::fs::read(files.join("big.bin")).unwrap());
    for args in [
        &["snapshots"][..],
        &["check", "--read-data"],
        &["stats"],
        &["history"],
        &["points"],
        &["status"],
        &["--no-lock", "dump", "search:latest"],
    ] {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    let o = run(&["--json", "drill"]);
    assert!(o.status.success(), "drill: {}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    let drill: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(drill["passed"], true, "{drill}");
    let started = Instant::now();
    let o = run(&["backup", "search"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "backup into a repository that refuses writes: {err}");
    assert!(err.contains(cause), "the error names the cause ({cause}): {err}");
    assert!(started.elapsed() < Duration::from_secs(10), "a permanent refusal was retried");
}

#[test]
fn a_read_only_mount_lists_restores_checks_and_drills() {
    if !is_root() {
        eprintln!("skipped: a read-only bind mount needs root");
        return;
    }
    let repo = Repo::new();
    let (config, files) = stack(&repo);
    let ro = repo.root.join("ro");
    let Some(_mount) = Mount::read_only_bind(&repo.path, &ro) else {
        panic!("cannot make a read-only bind mount (as root)");
    };
    let scratch = repo.root.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let run = |args: &[&str]| {
        repo.cmd(args)
            .env("BUNKER_REPO", &ro)
            .env("BUNKER_CONFIG", &config)
            .env("BUNKER_CACHE_DIR", "off")
            .env("TMPDIR", &scratch)
            .output()
            .unwrap()
    };
    reads_work(&run, &files, &scratch, "read-only file system");
}

#[test]
fn a_repository_its_user_cannot_write_still_restores() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let repo = Repo::uninitialised(None, vec![("BUNKER_CACHE_DIR".into(), "off".into())], Vec::new());
    let nobody = |args: &[&str]| repo.cmd_as_nobody(args).output().unwrap();
    let data = random_data(300_000, 8);
    let input = repo.root.join("input");
    std::fs::write(&input, &data).unwrap();
    std::fs::set_permissions(&input, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    assert!(nobody(&["init"]).status.success());
    let o = nobody(&["backup", "--path", input.to_str().unwrap(), "--name", "doc"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let st = Command::new("chmod").args(["-R", "a-w"]).arg(&repo.path).status().unwrap();
    assert!(st.success());
    let out = repo.root.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let o = nobody(&["restore", "doc:latest", "--to", out.to_str().unwrap()]);
    assert!(o.status.success(), "restore: {}", stderr(&o));
    assert_eq!(std::fs::read(out.join("input")).unwrap(), data);
    assert!(nobody(&["check", "--read-data"]).status.success());
    let o = nobody(&["backup", "--path", input.to_str().unwrap(), "--name", "doc"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no permission") && !err.contains("AWS_"), "a local permission error, no AWS hint: {err}");
    let _ = Command::new("chmod").args(["-R", "u+w"]).arg(&repo.path).status();
}

fn temp_files(repo: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(repo.join("tmp")).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

#[test]
fn a_full_disk_fails_fast_leaves_nothing_and_recovers() {
    if !is_root() {
        eprintln!("skipped: a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = Mount::tmpfs(&dir.path().join("disk"), "12m") else {
        panic!("cannot mount a tmpfs (as root)");
    };
    let path = dir.path().join("disk/repo");
    let repo = Repo::uninitialised(Some(path.to_string_lossy().into_owned()), Vec::new(), Vec::new());
    repo.ok(&["init"]);
    let small = mixed_data(2 << 20, 1);
    repo.backup_bytes("small", &small);
    let old = repo.backup_bytes("old", &random_data(2 << 20, 2));
    repo.backup_bytes("old", &random_data(2 << 20, 5));
    // Too big for what is left.
    let input = dir.path().join("big");
    std::fs::write(&input, random_data(12 << 20, 3)).unwrap();
    let started = Instant::now();
    let o =
        repo.cmd(&["backup", "--stdin", "--name", "big"]).stdin(std::fs::File::open(&input).unwrap()).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("disk is full"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "ENOSPC was retried");
    assert_eq!(temp_files(&path), Vec::<PathBuf>::new(), "a failed write leaves no temp file");
    assert_eq!(repo.dump("small:latest"), small);
    // A temp file a writer killed outright left long ago: check reports it, prune removes it.
    let stale = path.join("tmp/write-0123456789abcdef");
    std::fs::write(&stale, vec![7u8; 100_000]).unwrap();
    assert!(Command::new("touch").args(["-d", "2 hours ago"]).arg(&stale).status().unwrap().success());
    let o = repo.run(&["check"]);
    assert!(o.status.success() && stderr(&o).contains("tmp/write-0123456789abcdef"), "{}", stderr(&o));
    // Forget the old snapshot, then fill the disk to the last byte: prune says what it needs.
    repo.ok(&["forget", "--keep-last", "1", "--name", "old", "--min-age", "0s"]);
    assert!(repo.snapshots().iter().all(|s| s["id"] != old.as_str()));
    let filler = dir.path().join("disk/filler");
    let _ = Command::new("dd").args(["if=/dev/zero", "bs=64k"]).arg(format!("of={}", filler.display())).output();
    let o = repo.run(&["prune"]);
    let err = stderr(&o);
    if !o.status.success() {
        assert!(err.contains("free that much") && err.contains("would then free"), "prune on a full disk: {err}");
    }
    assert_eq!(repo.dump("small:latest"), small, "reading still works on a full disk");
    std::fs::remove_file(&filler).unwrap();
    repo.ok(&["prune"]);
    assert!(!stale.exists(), "prune removed the stale temp file");
    let again = random_data(1 << 20, 4);
    repo.backup_bytes("again", &again);
    assert_eq!(repo.dump("again:latest"), again);
    repo.ok(&["check", "--read-data"]);
}

#[test]
fn read_only_s3_credentials_list_restore_check_and_drill() {
    let moto = Moto::start();
    moto.create_bucket("backups");
    let s3 = |endpoint: String| {
        let url = format!("s3://backups/repo?endpoint={endpoint}&region=us-east-1&path-style=true");
        Repo::s3(url, &[("AWS_SECRET_ACCESS_KEY", "testing-secret-XYZ"), ("BUNKER_CACHE_DIR", "off")])
    };
    let writer = s3(moto.endpoint());
    writer.ok(&["init"]);
    let (config, files) = stack(&writer);
    let gate = Gate::start(moto.port, |method, _| !matches!(method, "GET" | "HEAD"));
    let reader = s3(format!("http://127.0.0.1:{}", gate.port));
    let scratch = reader.root.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let run = |args: &[&str]| reader.cmd(args).env("BUNKER_CONFIG", &config).env("TMPDIR", &scratch).output().unwrap();
    reads_work(&run, &files, &scratch, "AccessDenied");
    assert!(gate.refused() > 0, "the gate refused no write: nothing was tested");
    let o = run(&["-vv", "snapshots"]);
    assert!(o.status.success());
    assert!(!stderr(&o).contains("testing-secret-XYZ"), "the secret key in the debug log");
}
