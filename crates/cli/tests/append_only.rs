//! Append-only S3 credentials (`s3:PutObject`, `s3:GetObject`, `s3:ListBucket`, no `s3:DeleteObject`),
//! as a backup host should have: backups, their catalog records, status and the daemon work; locks are
//! released by marking them (a PUT) instead of deleting them, and the marks hold nobody back; writers do
//! not fold a catalog they could not clean up. A host with full credentials then prunes, folds and
//! removes the marks.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::moto::{Gate, Moto};
use common::Repo;

fn s3(endpoint: &str, extra: &[(&str, &str)]) -> Repo {
    let url = format!("s3://backups/repo?endpoint={endpoint}&region=us-east-1&path-style=true");
    let mut env = vec![("BUNKER_RETRY_MIN_DELAY_MS", "10")];
    env.extend_from_slice(extra);
    Repo::s3(url, &env)
}

use common::moto::is_delete as deletes;

fn lock_files(moto: &Moto) -> usize {
    moto.list_keys("backups", "repo/locks/").len()
}

#[test]
fn append_only_credentials_back_up_and_leave_nothing_that_blocks_a_prune() {
    let moto = Moto::start();
    moto.create_bucket("backups");
    let full = s3(&moto.endpoint(), &[]);
    full.ok(&["init"]);
    let gate = Gate::start(moto.port, deletes);
    // Writers would fold after 3 loose records; this host must not try.
    let host = s3(&gate.endpoint(), &[("BUNKER_FOLD_AFTER", "3"), ("BUNKER_CACHE_DIR", "off")]);

    let mut ids = Vec::new();
    for n in 0..6 {
        let o = host
            .cmd(&["backup", "--stdin", "--name", "app", "--json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(format!("backup number {n}").as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "backup {n} on the append-only host: {err}");
        assert!(!err.contains("WARN") && !err.contains("warning"), "backup {n} warned: {err}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    assert!(gate.refused() >= 6, "every lock release tried a delete first: {}", gate.refused());
    assert_eq!(lock_files(&moto), 6, "each backup left its lock, marked released");
    assert!(moto.list_keys("backups", "repo/catalog/runs/").is_empty(), "no writer folded");
    assert_eq!(moto.list_keys("backups", "repo/runs/").len(), 6);

    // Everything a backup host reads works, and the restore side (full credentials elsewhere) too.
    host.ok(&["status"]);
    host.ok(&["history"]);
    assert_eq!(host.snapshots().len(), 6);
    assert_eq!(full.dump(&format!("app:{}", &ids[5][..8])), b"backup number 5");

    // A prune with full credentials is not held back by the marks, and removes them.
    let t = Instant::now();
    let o = full.run(&["prune"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(t.elapsed() < Duration::from_secs(60));
    assert_eq!(lock_files(&moto), 0, "prune removed the released marks (and its own lock)");
    assert_eq!(moto.list_keys("backups", "repo/catalog/runs/").len(), 1, "prune folded the catalog");
    full.ok(&["check", "--read-data"]);

    // The daemon's singleton lock: stopped, it is marked released; a second start takes it over.
    let stack = host.root.join("bunker.toml");
    std::fs::write(
        &stack,
        format!(
            "[repository]\nurl = \"{}\"\n\n[targets.app]\ntype = \"command\"\nbackup = \"printf app\"\nrestore = \"cat >/dev/null\"\n\n[schedules]\nstatus = \"0 0 4 1 1 *\"\n",
            host.location
        ),
    )
    .unwrap();
    for round in 0..2 {
        let listen = format!("127.0.0.1:{}", common::moto::free_port());
        let mut d = host
            .cmd(&["--config", stack.to_str().unwrap(), "daemon", "--listen", &listen, "--refresh", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !moto.list_keys("backups", "repo/locks/").iter().any(|k| k.ends_with("singleton-daemon")) {
            assert!(Instant::now() < deadline, "round {round}: the daemon took no singleton lock");
            assert!(d.try_wait().unwrap().is_none(), "round {round}: the daemon exited");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
        let out = d.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("already running") && !err.contains("singleton"), "round {round}: {err}");
    }
}

/// Both protections at once, on S3 from a fresh host: append-only credentials and a write-only key. The
/// backup host adds snapshots it can neither read back nor delete; the identity, elsewhere, reads them.
#[test]
fn a_write_only_append_only_host_on_s3_cannot_read_or_delete_what_it_wrote() {
    let moto = Moto::start();
    moto.create_bucket("backups");
    let full = s3(&moto.endpoint(), &[("BUNKER_CACHE_DIR", "off")]);
    let key = common::age_key_in(&full.root, "identity.txt");
    let identity = key.identity.clone();
    full.ok(&["init", "--recipient", &key.public]);
    let gate = Gate::start(moto.port, deletes);
    let host = s3(&gate.endpoint(), &[("BUNKER_CACHE_DIR", "off")]);

    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i.wrapping_mul(2246822519) >> 9) as u8).collect();
    let first = host.backup_bytes("db", &data);
    let before = moto.list_keys("backups", "repo/data/").len();
    host.backup_bytes("db", &data);
    assert_eq!(moto.list_keys("backups", "repo/data/").len(), before, "the second backup deduplicates whole");
    assert_eq!(
        moto.list_keys("backups", "repo/content-keys/").len(),
        1,
        "a run that sealed nothing made no content key"
    );
    let status = host.run(&["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", String::from_utf8_lossy(&status.stderr));

    let out = host.run(&["dump", &first]);
    assert_eq!(out.status.code(), Some(12), "{}", String::from_utf8_lossy(&out.stderr));
    let out = host.run(&["forget", "--keep-last", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a delete must be refused: {err}");
    assert_eq!(host.snapshot_count(), 2, "nothing was deleted");

    let out = full
        .cmd(&["dump", &first])
        .env_remove("BUNKER_PASSWORD")
        .env("BUNKER_IDENTITY_FILE", &identity)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == data, "the identity reads back what the host wrote");
}
