//! Physical base backups, WAL archiving through `bunker wal-push` as a real cluster's archive_command,
//! and point-in-time restores started with `--start`, all against scratch clusters. bunker runs as the
//! `postgres` user here, as it does on a database host (archive_command runs as the server's user).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bunker_scratch::{free_port, PgBinaries, ScratchPostgres};

/// A work directory owned by `postgres` with a repository, its password file and a stack file.
struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    as_postgres: bool,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn chown_postgres(p: &Path) {
    if is_root() {
        let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(p).status().unwrap().success();
        assert!(ok, "chown {}", p.display());
    }
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::Builder::new().prefix("bunker-pitr-").tempdir().unwrap();
        let root = dir.path().to_path_buf();
        // The postgres user runs bunker (and its server runs archive_command), but the build directory may
        // sit where it cannot go (a clone in a 0700 temp directory): bunker is linked, or copied, here.
        std::fs::create_dir(root.join("bin")).unwrap();
        let bin = root.join("bin/bunker");
        if std::fs::hard_link(env!("CARGO_BIN_EXE_bunker"), &bin).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_bunker"), &bin).unwrap();
        }
        std::fs::write(root.join("password"), common::PASSWORD).unwrap();
        let config = root.join("bunker.toml");
        let site = Site { _dir: dir, config, root, as_postgres: is_root() };
        site.write_config(None);
        chown_postgres(&site.root);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(site.root.join("password"), std::fs::Permissions::from_mode(0o600)).unwrap();
        site
    }

    /// bunker, where the postgres user can run it.
    fn bin(&self) -> PathBuf {
        self.root.join("bin/bunker")
    }

    fn write_config(&self, port: Option<u16>) {
        self.write_config_with(port, "");
    }

    fn write_config_with(&self, port: Option<u16>, extra: &str) {
        let mut text = format!(
            "[repository]\nurl = \"{}\"\npassword_file = \"{}\"\n",
            self.root.join("repo").display(),
            self.root.join("password").display()
        );
        if let Some(port) = port {
            text.push_str(&format!(
                "\n[targets.main]\ntype = \"postgres\"\nmode = \"physical\"\nurl = \"postgresql://postgres@127.0.0.1:{port}/postgres\"\narchive_timeout = \"60s\"\n{extra}"
            ));
        }
        std::fs::write(&self.config, text).unwrap();
        chown_postgres(&self.config);
    }

    /// The environment every bunker invocation gets, also the server's archive/restore commands.
    fn env_prefix(&self) -> String {
        format!("BUNKER_CACHE_DIR={} BUNKER_KDF_MEMORY_KIB=1024", self.root.join("cache").display())
    }

    fn archive_command(&self) -> String {
        format!(
            "archive_command = '{} {} --config {} wal-push --target main %p'",
            self.env_prefix(),
            self.bin().display(),
            self.config.display()
        )
    }

    /// bunker as the `postgres` user (when the tests run as root), as on a database host.
    fn cmd(&self, args: &[&str]) -> Command {
        if !self.as_postgres {
            return self.cmd_as_self(args, "cache");
        }
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(self.bin());
        self.setup(c, args, "cache")
    }

    /// bunker as whoever runs the tests (root on CI): a restore by root must hand the data directory to
    /// its owner. Its own cache, which the postgres user could not write to.
    fn cmd_as_self(&self, args: &[&str], cache: &str) -> Command {
        self.setup(Command::new(self.bin()), args, cache)
    }

    fn setup(&self, mut c: Command, args: &[&str], cache: &str) -> Command {
        c.args(args)
            .env("BUNKER_CONFIG", &self.config)
            .env("BUNKER_PASSWORD_FILE", self.root.join("password"))
            .env("BUNKER_CACHE_DIR", self.root.join(cache))
            .env("BUNKER_KDF_MEMORY_KIB", "1024")
            .env_remove("BUNKER_REPO")
            .env_remove("BUNKER_PASSWORD")
            .current_dir(&self.root)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "bunker {args:?} failed ({}): {}", out.status, text(&out.stderr));
        text(&out.stdout)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// psql against a restored cluster's socket (its data directory).
fn sql(bins: &PgBinaries, socket_dir: &Path, port: u16, query: &str) -> String {
    let out = Command::new(bins.bin("psql"))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!("host={} port={port} user=postgres dbname=postgres", socket_dir.display()))
        .args(["-c", query])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "psql {query}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

fn stop(bins: &PgBinaries, pgdata: &Path) {
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bins.bin("pg_ctl"));
        c
    } else {
        Command::new(bins.bin("pg_ctl"))
    };
    let out = c.arg("-D").arg(pgdata).args(["-m", "fast", "-w", "stop"]).current_dir("/").output().unwrap();
    assert!(out.status.success(), "pg_ctl stop: {}", text(&out.stderr));
}

/// Restores the latest base backup without starting it and checks the files with pg_verifybackup against
/// the backup's manifest (WAL is not parsed: recovery settings and pg_wal are outside its scope).
fn restore_and_verify_files(site: &Site, bins: &PgBinaries, name: &str) {
    let d = site.root.join(name);
    site.ok(&["restore", "main", "--pgdata", d.to_str().unwrap()]);
    let out = Command::new(bins.bin("pg_verifybackup")).arg("--no-parse-wal").arg(&d).output().unwrap();
    assert!(out.status.success(), "pg_verifybackup: {}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("backup successfully verified"), "{}", text(&out.stdout));
}

/// Switches to a new WAL segment and waits until the finished one is archived.
fn switch_and_wait(pg: &ScratchPostgres) -> String {
    let seg = pg.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())").unwrap();
    let started = Instant::now();
    loop {
        let last = pg.psql("postgres", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").unwrap();
        if last.as_str() >= seg.as_str() {
            return seg;
        }
        let failed = pg.psql("postgres", "SELECT coalesce(last_failed_wal, '') FROM pg_stat_archiver").unwrap();
        assert!(started.elapsed() < Duration::from_secs(60), "{seg} not archived (last failed: {failed})");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server bunker started on a restored directory; stopped (immediately) if a test fails first.
struct Started(PathBuf, PgBinaries, bool);

impl Started {
    fn stop(mut self) {
        stop(&self.1, &self.0);
        self.2 = true;
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if !self.2 {
            let mut c = if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(self.1.bin("pg_ctl"));
                c
            } else {
                Command::new(self.1.bin("pg_ctl"))
            };
            let _ = c.arg("-D").arg(&self.0).args(["-m", "immediate", "-w", "stop"]).current_dir("/").output();
        }
    }
}

/// Restores into a new data directory, starts it, and returns (pgdata, port, the JSON report).
fn restore(site: &Site, name: &str, extra: &[&str]) -> (PathBuf, u16, serde_json::Value) {
    let pgdata = site.root.join(name);
    let port = free_port().unwrap();
    let port_s = port.to_string();
    let mut args =
        vec!["restore", "main", "--pgdata", pgdata.to_str().unwrap(), "--start", "--port", &port_s, "--json"];
    args.extend_from_slice(extra);
    let out = site.ok(&args);
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    (pgdata, port, report)
}

fn batches(bins: &PgBinaries, pgdata: &Path, port: u16) -> String {
    sql(bins, pgdata, port, "SELECT string_agg(DISTINCT batch, '' ORDER BY batch) FROM t")
}

#[test]
fn point_in_time_restores_reach_exactly_their_targets_across_timelines() {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let site = Site::new();
    site.ok(&["init"]);
    let pg = ScratchPostgres::start_with(&bins, &["archive_mode = on", &site.archive_command()]).unwrap();
    site.write_config(Some(pg.port()));

    pg.psql("postgres", "CREATE TABLE t (id serial PRIMARY KEY, batch text NOT NULL, pad text)").unwrap();
    pg.psql("postgres", "INSERT INTO t (batch, pad) SELECT 'Z', repeat('z', 200) FROM generate_series(1, 20000)")
        .unwrap();
    pg.psql("postgres", "DELETE FROM t WHERE batch = 'Z'").unwrap();
    let backup: serde_json::Value = serde_json::from_str(&site.ok(&["backup", "main", "--json"])).unwrap();
    assert_eq!(backup["name"], "main");
    let snaps: serde_json::Value = serde_json::from_str(&site.ok(&["snapshots", "--json"])).unwrap();
    let meta = &snaps[0]["meta"];
    assert_eq!(snaps[0]["kind"], "postgres-physical");
    assert!(meta["backup_label"].as_str().unwrap().contains("START WAL LOCATION"), "{meta}");
    assert_eq!(
        meta["system_identifier"],
        pg.psql("postgres", "SELECT system_identifier FROM pg_control_system()").unwrap()
    );
    restore_and_verify_files(&site, &bins, "verified");

    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'A' FROM generate_series(1, 100)").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t1 = pg.psql("postgres", "SELECT clock_timestamp()").unwrap();
    pg.psql("postgres", "SELECT pg_create_restore_point('p1')").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'B' FROM generate_series(1, 100)").unwrap();
    let lsn = pg.psql("postgres", "SELECT pg_current_wal_insert_lsn()").unwrap();
    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'C' FROM generate_series(1, 100)").unwrap();
    switch_and_wait(&pg);
    let verify = site.ok(&["wal", "verify"]);
    assert!(verify.contains("continuous from every base backup"), "{verify}");

    let (d, port, report) = restore(&site, "to-time", &["--to-time", &t1]);
    let g = Started(d.clone(), bins.clone(), false);
    assert_eq!(batches(&bins, &d, port), "A", "{report}");
    assert!(report["reached"]["stop_line"].as_str().unwrap().contains("recovery stopping"), "{report}");
    g.stop();

    let (d, port, _) = restore(&site, "to-lsn", &["--to-lsn", &lsn]);
    let g = Started(d.clone(), bins.clone(), false);
    assert_eq!(batches(&bins, &d, port), "AB");
    g.stop();

    let (d, port, _) = restore(&site, "latest", &[]);
    let g = Started(d.clone(), bins.clone(), false);
    assert_eq!(batches(&bins, &d, port), "ABC");
    g.stop();

    // The check restores above kept their new timelines out of the archive (the default). This one
    // archives (--keep-archiving): to p1 and promoted, timeline 2 goes into the same target; batch D
    // lives only there.
    let (d, port, report) = restore(&site, "to-name", &["--to-name", "p1", "--keep-archiving"]);
    let g = Started(d.clone(), bins.clone(), false);
    assert_eq!(batches(&bins, &d, port), "A");
    assert_eq!(report["reached"]["timeline"], 2, "{report}");
    sql(&bins, &d, port, "INSERT INTO t (batch) SELECT 'D' FROM generate_series(1, 100)");
    let seg = sql(&bins, &d, port, "SELECT pg_walfile_name(pg_switch_wal())");
    let started = Instant::now();
    while sql(&bins, &d, port, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < seg {
        let log = std::fs::read_to_string(d.join("log/bunker-recovery.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        assert!(started.elapsed() < Duration::from_secs(60), "timeline 2 not archived: {tail:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    g.stop();
    // Latest now follows timeline 2 (A then D, never B or C) and promotes to timeline 3.
    let (d, port, report) = restore(&site, "latest-tl2", &[]);
    let g = Started(d.clone(), bins.clone(), false);
    assert_eq!(batches(&bins, &d, port), "AD", "{report}");
    assert_eq!(report["reached"]["timeline"], 3, "{report}");
    g.stop();
    // Timeline 1 can still be chosen explicitly.
    let (d, port, _) = restore(&site, "tl1", &["--timeline", "1"]);
    let g = Started(d.clone(), bins.clone(), false);
    assert_eq!(batches(&bins, &d, port), "ABC");
    g.stop();

    // A non-empty data directory is refused, and its files are left alone.
    let out = site.run(&["restore", "main", "--pgdata", d.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not empty"), "{}", text(&out.stderr));
    assert!(d.join("PG_VERSION").is_file());
    let history = site.ok(&["history", "--operation", "restore", "--json"]);
    assert!(history.contains("recovery_target"), "{history}");

    // A damaged segment: wal verify names it, and a restore that needs it fails naming it. Timeline 1
    // first grows past the segments the others branched from, so the victim sits mid-timeline.
    for _ in 0..2 {
        pg.psql("postgres", "INSERT INTO t (batch) SELECT 'E' FROM generate_series(1, 100)").unwrap();
        switch_and_wait(&pg);
    }
    let wal_dir = site.root.join("repo/objects/wal/main");
    let first = snaps[0]["meta"]["start_wal"].as_str().unwrap().to_string();
    let mut names: Vec<String> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.starts_with("00000001") && n.as_str() > first.as_str())
        .collect();
    names.sort();
    let victim = names[0].clone();
    let path = wal_dir.join(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    let out = site.run(&["wal", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains(&format!("damaged {victim}")), "{}", text(&out.stdout));
    let port = free_port().unwrap().to_string();
    let broken = site.root.join("broken");
    let out = site.run(&[
        "restore",
        "main",
        "--pgdata",
        broken.to_str().unwrap(),
        "--timeline",
        "1",
        "--start",
        "--port",
        &port,
    ]);
    assert!(!out.status.success(), "restore past a damaged segment succeeded");
    let err = text(&out.stderr);
    assert!(err.contains(&victim), "{err}");
    // A missing one: named by wal verify, and a restore refuses before starting anything.
    std::fs::remove_file(&path).unwrap();
    let out = site.run(&["wal", "verify"]);
    assert!(text(&out.stdout).contains(&format!("missing {victim}")), "{}", text(&out.stdout));
    let missing = site.root.join("missing");
    let out = site.run(&["restore", "main", "--pgdata", missing.to_str().unwrap(), "--timeline", "1"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(&victim), "{}", text(&out.stderr));
}

#[test]
fn wal_push_is_idempotent_safe_under_concurrency_and_never_stores_a_partial_segment() {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let site = Site::new();
    site.ok(&["init"]);
    let pg = ScratchPostgres::start(&bins).unwrap();
    pg.psql("postgres", "CREATE TABLE x AS SELECT g FROM generate_series(1, 10000) g").unwrap();
    // A real segment, copied out under the name of one PostgreSQL has not written yet.
    let seg = pg.psql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())").unwrap();
    let real = std::fs::read(pg.data_dir().join("pg_wal").join(&seg)).unwrap();
    let staging = site.root.join("staging");
    std::fs::create_dir(&staging).unwrap();
    let name = "0000000100000000000000F0";
    let file = staging.join(name);
    std::fs::write(&file, &real).unwrap();
    chown_postgres(&staging);
    let f = file.to_str().unwrap();

    let children: Vec<_> = (0..4)
        .map(|_| site.cmd(&["wal-push", "--target", "main", f]).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "concurrent push: {}", text(&out.stderr));
    }
    site.ok(&["wal-push", "--target", "main", f]);
    let stored = site.root.join("repo/objects/wal/main");
    // The segment, and the system identifier of the cluster it came from.
    assert_eq!(std::fs::read_dir(&stored).unwrap().count(), 2);
    let back = site.root.join("staging/back");
    site.ok(&["wal-fetch", "--target", "main", "--prefetch", "0", name, back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), real);

    // Different content under an archived name: refused, the archived copy untouched.
    let mut other = real.clone();
    other[8192 * 3] ^= 1;
    std::fs::write(&file, &other).unwrap();
    let before = std::fs::read(stored.join(name)).unwrap();
    let out = site.run(&["wal-push", "--target", "main", f]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("different content"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(stored.join(name)).unwrap(), before);

    // A segment of another cluster (another system identifier in its header) is refused.
    let mut foreign = real.clone();
    foreign[24] ^= 0x5A;
    std::fs::write(staging.join("0000000100000000000000F3"), &foreign).unwrap();
    chown_postgres(&staging);
    let out = site.run(&["wal-push", "--target", "main", staging.join("0000000100000000000000F3").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("system identifier"), "{}", text(&out.stderr));
    assert!(!stored.join("0000000100000000000000F3").exists());

    // Not archived: exit 1, and nothing written.
    let nothing = site.root.join("staging/nothing");
    let out = site.run(&["wal-fetch", "--target", "main", "000000010000000000000077", nothing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!nothing.exists());

    // A truncated segment is refused before anything is stored.
    std::fs::write(staging.join("0000000100000000000000F1"), &real[..real.len() / 2]).unwrap();
    let out = site.run(&["wal-push", "--target", "main", staging.join("0000000100000000000000F1").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stored.join("0000000100000000000000F1").exists());

    // The repository unreachable: non-zero exit (PostgreSQL will retry), no partial object.
    std::fs::write(staging.join("0000000100000000000000F2"), &real).unwrap();
    chown_postgres(&staging);
    let out = site
        .cmd(&["wal-push", "--target", "main", staging.join("0000000100000000000000F2").to_str().unwrap()])
        .env("BUNKER_REPO", "s3://nothing-here/repo?endpoint=http://127.0.0.1:9&region=us-east-1")
        .env("BUNKER_RETRY_MIN_DELAY_MS", "1")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!stored.join("0000000100000000000000F2").exists());
    // An unreadable archive makes wal-fetch exit above 125, so PostgreSQL aborts instead of promoting.
    let mut damaged = std::fs::read(stored.join(name)).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    std::fs::write(stored.join(name), damaged).unwrap();
    let out = site.run(&["wal-fetch", "--target", "main", name, back.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
}

#[test]
fn forgetting_base_backups_expires_the_wal_only_they_needed() {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let site = Site::new();
    site.ok(&["init"]);
    let pg = ScratchPostgres::start_with(&bins, &["archive_mode = on", &site.archive_command()]).unwrap();
    site.write_config(Some(pg.port()));
    pg.psql("postgres", "CREATE TABLE t (id serial PRIMARY KEY, batch text NOT NULL)").unwrap();
    site.ok(&["backup", "main"]);
    for _ in 0..3 {
        pg.psql("postgres", "INSERT INTO t (batch) SELECT 'A' FROM generate_series(1, 1000)").unwrap();
        switch_and_wait(&pg);
    }
    site.ok(&["backup", "main"]);
    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'B' FROM generate_series(1, 10)").unwrap();
    switch_and_wait(&pg);
    let snaps: serde_json::Value = serde_json::from_str(&site.ok(&["snapshots", "--json"])).unwrap();
    let second_start = snaps[1]["meta"]["start_wal"].as_str().unwrap().to_string();
    let wal_dir = site.root.join("repo/objects/wal/main");
    let archived = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&wal_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert!(archived().iter().any(|n| n.as_str() < second_start.as_str()));

    let dry = site.ok(&["forget", "--keep-last", "1", "--dry-run"]);
    assert!(dry.contains("would remove"), "{dry}");
    assert!(archived().iter().any(|n| n.as_str() < second_start.as_str()), "a dry run deleted WAL");
    site.ok(&["forget", "--keep-last", "1"]);
    let left = archived();
    assert!(left.iter().all(|n| n.as_str() >= second_start.as_str()), "{left:?} (kept from {second_start})");
    assert!(left.contains(&second_start));
    site.ok(&["wal", "verify"]);
    let (d, port, _) = restore(&site, "after-forget", &[]);
    let g = Started(d.clone(), bins.clone(), false);
    assert_eq!(sql(&bins, &d, port, "SELECT count(*) FROM t"), "3010");
    g.stop();
}

#[test]
fn a_base_backup_streamed_over_the_replication_protocol_restores_like_a_local_one() {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let site = Site::new();
    site.ok(&["init"]);
    let pg = ScratchPostgres::start_with(&bins, &["archive_mode = on", &site.archive_command()]).unwrap();
    site.write_config_with(Some(pg.port()), "method = \"replication\"\n");
    pg.psql("postgres", "CREATE TABLE t (id serial PRIMARY KEY, batch text NOT NULL)").unwrap();
    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'A' FROM generate_series(1, 5000)").unwrap();
    site.ok(&["backup", "main"]);
    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'B' FROM generate_series(1, 5000)").unwrap();
    switch_and_wait(&pg);
    let snaps: serde_json::Value = serde_json::from_str(&site.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(snaps[0]["meta"]["method"], "replication");
    assert!(snaps[0]["meta"]["backup_label"].as_str().unwrap().contains("BACKUP METHOD: streamed"), "{}", snaps[0]);
    restore_and_verify_files(&site, &bins, "verified");
    let manifest = site.ok(&["dump", "main", "backup_manifest"]);
    assert!(manifest.contains("PostgreSQL-Backup-Manifest-Version"), "{manifest}");
    // A second streamed base backup of an unchanged cluster stores next to nothing.
    let second: serde_json::Value = serde_json::from_str(&site.ok(&["backup", "main", "--json"])).unwrap();
    let read = second["stats"]["bytes_read"].as_u64().unwrap();
    let stored = second["stats"]["bytes_stored"].as_u64().unwrap();
    assert!(stored * 20 < read, "stored {stored} of {read}");
    // Restored by the user running the tests (root on CI), started as the files' owner.
    let d = site.root.join("streamed");
    let port = free_port().unwrap();
    let out = site
        .cmd_as_self(
            &["restore", "main", "--pgdata", d.to_str().unwrap(), "--start", "--port", &port.to_string()],
            "cache-self",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let g = Started(d.clone(), bins.clone(), false);
    assert_eq!(sql(&bins, &d, port, "SELECT count(*) FROM t"), "10000");
    g.stop();
}

#[test]
fn restore_point_recovers_a_physical_target_to_the_points_end() {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let site = Site::new();
    site.ok(&["init"]);
    let pg = ScratchPostgres::start_with(&bins, &["archive_mode = on", &site.archive_command()]).unwrap();
    site.write_config(Some(pg.port()));
    pg.psql("postgres", "CREATE TABLE t (id serial PRIMARY KEY, batch text NOT NULL)").unwrap();
    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'A' FROM generate_series(1, 1000)").unwrap();
    let point: serde_json::Value = serde_json::from_str(&site.ok(&["--json", "backup", "--all"])).unwrap();
    let id = point["point"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1100));
    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'B' FROM generate_series(1, 1000)").unwrap();
    switch_and_wait(&pg);

    let d = site.root.join("at-point");
    let port = free_port().unwrap();
    let out = site
        .cmd_as_self(
            &["restore", "--point", &id, "--pgdata", d.to_str().unwrap(), "--start", "--port", &port.to_string()],
            "cache-self",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let g = Started(d.clone(), bins.clone(), false);
    assert_eq!(batches(&bins, &d, port), "A", "recovered to the point's end, before batch B");
    g.stop();
}

#[test]
fn a_drill_recovers_a_physical_target_to_the_points_end_in_a_scratch_cluster() {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let site = Site::new();
    site.ok(&["init"]);
    let pg = ScratchPostgres::start_with(&bins, &["archive_mode = on", &site.archive_command()]).unwrap();
    site.write_config(Some(pg.port()));
    pg.psql("postgres", "CREATE TABLE parent (id int PRIMARY KEY)").unwrap();
    pg.psql("postgres", "CREATE TABLE t (id serial PRIMARY KEY, batch text NOT NULL, p int REFERENCES parent)")
        .unwrap();
    pg.psql(
        "postgres",
        "INSERT INTO parent VALUES (1); INSERT INTO t (batch, p) SELECT 'A', 1 FROM generate_series(1, 1000)",
    )
    .unwrap();
    site.ok(&["backup", "--all"]);
    std::thread::sleep(Duration::from_millis(1100));
    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'B' FROM generate_series(1, 500)").unwrap();
    switch_and_wait(&pg);

    let out = site.cmd_as_self(&["--json", "drill"], "cache-self").output().unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let drill: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let target = &drill["targets"][0];
    assert_eq!(target["kind"], "postgres-physical", "{drill:#}");
    let checks = target["checks"].to_string();
    assert!(checks.contains("promoted to time"), "{checks}");
    // The point's end comes before batch B: 1 parent row and 1000 of batch A.
    assert!(checks.contains("1001 rows"), "{checks}");
    assert!(checks.contains("foreign keys") && checks.contains("1 foreign keys without orphans"), "{checks}");
    assert!(target["live_rpo_seconds"].as_f64().is_some_and(|s| s < 600.0), "{target:#}");
    assert!(target["bytes"].as_u64().unwrap() > 16 << 20, "base backup and WAL counted: {target:#}");
}

/// A cluster with page checksums: a base backup of intact pages passes (every page of every relation is
/// checked against PostgreSQL's own checksum), and one damaged page on disk is named, file and block,
/// in a warning (exit 3), the backup kept.
#[test]
fn a_local_base_backup_verifies_page_checksums_and_names_a_damaged_page() {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let site = Site::new();
    site.ok(&["init"]);
    let pg = ScratchPostgres::start_with_checksums(&bins, &["archive_mode = on", &site.archive_command()]).unwrap();
    site.write_config(Some(pg.port()));
    assert_eq!(pg.psql("postgres", "SHOW data_checksums").unwrap(), "on");
    pg.psql("postgres", "CREATE TABLE t (id int PRIMARY KEY, pad text)").unwrap();
    pg.psql("postgres", "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 3000) g").unwrap();
    pg.psql("postgres", "VACUUM t").unwrap();
    pg.psql("postgres", "CHECKPOINT").unwrap();
    let clean = site.run(&["backup", "main"]);
    assert_eq!(clean.status.code(), Some(0), "intact pages pass: {}", text(&clean.stderr));
    let rel = pg.psql("postgres", "SELECT pg_relation_filepath('t')").unwrap();
    let file = pg.data_dir().join(&rel);
    let mut bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() >= 3 * 8192, "{rel} has several pages");
    bytes[8192 + 5000] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let damaged = site.run(&["backup", "main"]);
    let err = text(&damaged.stderr);
    assert_eq!(damaged.status.code(), Some(3), "{err}");
    assert!(err.contains(&rel) && err.contains("page checksum verification failed for block 1"), "{err}");
}

#[test]
fn every_route_to_a_physical_restore_runs_the_targets_hooks_verifies_and_records_it() {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let site = Site::new();
    site.ok(&["init"]);
    let pg = ScratchPostgres::start_with(&bins, &["archive_mode = on", &site.archive_command()]).unwrap();
    let log = site.root.join("hooks.log");
    let line = format!(
        "echo \\\"$BUNKER_PHASE $BUNKER_TARGET $BUNKER_STATUS d$BUNKER_DRILL $BUNKER_SNAPSHOT_ID\\\" >> {}",
        log.display()
    );
    site.write_config_with(
        Some(pg.port()),
        &format!("before_restore = \"{line}\"\nafter_restore = \"{line}\"\ndrill_after_restore = true\n"),
    );
    pg.psql("postgres", "CREATE TABLE t (id serial PRIMARY KEY, batch text NOT NULL)").unwrap();
    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'A' FROM generate_series(1, 100)").unwrap();
    site.ok(&["backup", "--all"]);
    // Recovery to the point's end needs WAL written after it.
    std::thread::sleep(Duration::from_millis(1100));
    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'B' FROM generate_series(1, 100)").unwrap();
    switch_and_wait(&pg);
    let snaps: serde_json::Value = serde_json::from_str(&site.ok(&["--json", "snapshots"])).unwrap();
    let id = snaps[0]["id"].as_str().unwrap().to_string();
    let lines = || {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        t.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>()
    };
    for (route, selector) in [("name", vec!["main"]), ("id", vec![&id[..12]]), ("point", vec!["--point", "latest"])] {
        let d = site.root.join(format!("route-{route}"));
        let port = free_port().unwrap().to_string();
        let mut args = vec!["restore"];
        args.extend(&selector);
        args.extend(["--pgdata", d.to_str().unwrap(), "--start", "--port", &port]);
        let out = site.cmd_as_self(&args, "cache-self").output().unwrap();
        assert!(out.status.success(), "{route}: {}{}", text(&out.stdout), text(&out.stderr));
        Started(d.clone(), bins.clone(), false).stop();
        let seen = lines();
        assert!(seen.contains(&format!("before_restore main d {id}")), "{route}: {seen:#?}");
        assert!(seen.contains(&format!("after_restore main success d {id}")), "{route}: {seen:#?}");
        // The restore ran as root and wrote its run record as root: read it back as root too.
        let history =
            site.cmd_as_self(&["--json", "history", "--operation", "restore"], "cache-self").output().unwrap();
        assert!(history.status.success(), "{}", text(&history.stderr));
        let runs: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
        let run = runs.as_array().unwrap().last().unwrap();
        assert_eq!((run["target"].as_str(), run["snapshot"].as_str()), (Some("main"), Some(id.as_str())), "{run:#}");
        assert_eq!(run["status"], "success", "{route}: {run:#}");
        assert_eq!(run["details"]["verified"], true, "{route}: recovery reached its target: {run:#}");
        assert_eq!(run["details"]["hooks"], serde_json::json!(["before_restore", "after_restore"]), "{run:#}");
    }
    // In a drill the target opted in: its after_restore runs against the scratch cluster, flagged.
    let out = site.cmd_as_self(&["--json", "drill"], "cache-self").output().unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let seen = lines();
    assert!(seen.contains(&"after_restore main success d1".to_string()), "{seen:#?}");
    assert!(!seen.iter().any(|l| l.starts_with("before_restore")), "{seen:#?}");
}

/// A database host with a write-only key (a recipients repository): its base backups and its
/// archive_command work, but neither it nor anyone without the identity can read them back; with the
/// identity (kept where the postgres user cannot read it) the drill recovers the point in a scratch cluster.
#[test]
fn a_write_only_database_host_archives_and_only_the_identity_recovers() {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let site = Site::new();
    let safe = tempfile::tempdir().unwrap();
    let common::AgeKey { identity, public } = common::age_key_in(safe.path(), "identity.txt");
    site.ok(&["init", "--recipient", &public]);
    let pg = ScratchPostgres::start_with(&bins, &["archive_mode = on", &site.archive_command()]).unwrap();
    site.write_config(Some(pg.port()));
    pg.psql("postgres", "CREATE TABLE t (id serial PRIMARY KEY, batch text NOT NULL, payload jsonb)").unwrap();
    pg.psql(
        "postgres",
        "INSERT INTO t (batch, payload) SELECT 'A', jsonb_build_object('n', g) FROM generate_series(1, 1000) g",
    )
    .unwrap();
    site.ok(&["backup", "--all"]);
    std::thread::sleep(Duration::from_millis(1100));
    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'B' FROM generate_series(1, 500)").unwrap();
    let seg = switch_and_wait(&pg);
    let out = site.run(&["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("write-only"), "{}", text(&out.stdout));

    // The host cannot read back the WAL it archived (PostgreSQL would abort recovery: 126), nor drill.
    let back = site.root.join("back");
    let out = site.run(&["wal-fetch", "--target", "main", "--prefetch", "0", &seg, back.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--identity"), "{}", text(&out.stderr));
    assert!(!back.exists());
    let out = site.cmd_as_self(&["drill"], "cache-self").output().unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", text(&out.stderr));

    // The identity recovers the point: 1000 rows of batch A, as of the base backup's end.
    let out =
        site.cmd_as_self(&["--json", "drill"], "cache-self").env("BUNKER_IDENTITY_FILE", &identity).output().unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let drill: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = drill["targets"][0]["checks"].to_string();
    assert!(checks.contains("1000 rows"), "{checks}");
    let out = site
        .cmd_as_self(&["wal-fetch", "--target", "main", "--prefetch", "0", &seg, back.to_str().unwrap()], "cache-self")
        .env("BUNKER_IDENTITY_FILE", &identity)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&back).unwrap().len(), 16 << 20);
}

/// A database host with append-only S3 credentials (every delete answered 403) and a write-only key:
/// its base backup and its archive_command (`wal-push`, run by the server as the postgres user) work
/// through the gate and leave no lock that holds anyone back; the identity, with full credentials
/// elsewhere, recovers the point in a drill.
#[test]
fn an_append_only_write_only_database_host_archives_wal_to_s3() {
    use common::moto::{is_delete, Gate, Moto};
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let moto = Moto::start();
    moto.create_bucket("backups");
    let gate = Gate::start(moto.port, is_delete);
    let site = Site::new();
    let safe = tempfile::tempdir().unwrap();
    let common::AgeKey { identity, public } = common::age_key_in(safe.path(), "identity.txt");
    let aws = "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
               AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent";
    let url = |endpoint: &str| format!("s3://backups/repo?endpoint={endpoint}&region=us-east-1&path-style=true");
    let config = |endpoint: &str, port: u16| {
        format!(
            "[repository]\nurl = \"{}\"\npassword_file = \"{}\"\n\n[targets.main]\ntype = \"postgres\"\nmode = \"physical\"\n\
             url = \"postgresql://postgres@127.0.0.1:{port}/postgres\"\narchive_timeout = \"60s\"\n",
            url(endpoint),
            site.root.join("password").display()
        )
    };
    let archive = format!(
        "archive_command = '{aws} {} {} --config {} wal-push --target main %p'",
        site.env_prefix(),
        site.bin().display(),
        site.config.display()
    );
    let pg = ScratchPostgres::start_with(&bins, &["archive_mode = on", &archive]).unwrap();
    std::fs::write(&site.config, config(&gate.endpoint(), pg.port())).unwrap();
    chown_postgres(&site.config);
    let with_aws = |mut c: Command| {
        for pair in aws.split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap();
            c.env(k, v);
        }
        c
    };
    let ok = |args: &[&str]| {
        let out = with_aws(site.cmd(args)).output().unwrap();
        assert!(out.status.success(), "bunker {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    ok(&["init", "--recipient", &public]);
    pg.psql("postgres", "CREATE TABLE t (id serial PRIMARY KEY, batch text NOT NULL, doc jsonb)").unwrap();
    pg.psql(
        "postgres",
        "INSERT INTO t (batch, doc) SELECT 'A', jsonb_build_object('n', g) FROM generate_series(1, 1000) g",
    )
    .unwrap();
    ok(&["backup", "--all"]);
    ok(&["backup", "--all"]);
    std::thread::sleep(Duration::from_millis(1100));
    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'B' FROM generate_series(1, 500)").unwrap();
    switch_and_wait(&pg);
    assert!(ok(&["status"]).contains("write-only"));
    assert!(gate.refused() > 0, "the host tried to delete (its locks) and was refused");
    assert!(!moto.list_keys("backups", "repo/objects/wal/main/").is_empty(), "WAL archived through the gate");

    // Elsewhere: full credentials and the identity recover the point (1000 rows of batch A).
    std::fs::write(&site.config, config(&moto.endpoint(), pg.port())).unwrap();
    let out = with_aws(site.cmd_as_self(&["--json", "drill"], "cache-self"))
        .env("BUNKER_IDENTITY_FILE", &identity)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let drill: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(drill["targets"][0]["checks"].to_string().contains("1000 rows"), "{drill:#}");
}

/// moto's IAM, enforced (`INITIAL_NO_AUTH_ACTION_COUNT`): a database host whose key may only get, put and
/// list (no `s3:DeleteObject`) takes base backups and archives WAL through the server's archive_command,
/// and `status` works there; the delete it is refused (prune) fails at once with a line naming the
/// credentials. An administrator's key then recovers the point in a drill.
#[test]
fn an_iam_key_without_delete_backs_up_and_archives_wal() {
    use common::moto::{workspace, Gate, Moto};
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    // Six unsigned requests create the two users, their keys and their policies; every later one is
    // checked against them.
    let moto = Moto::start_with_env(common::moto::free_port(), &[("INITIAL_NO_AUTH_ACTION_COUNT", "6")]);
    let setup = r#"
import boto3, json, sys
ep = sys.argv[1]
iam = boto3.client("iam", endpoint_url=ep, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
def user(name, actions):
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
    return key
admin = user("admin", "s3:*")
host = user("db-host", ["s3:GetObject", "s3:PutObject", "s3:ListBucket"])
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                  aws_access_key_id=admin["AccessKeyId"], aws_secret_access_key=admin["SecretAccessKey"])
s3.create_bucket(Bucket="backups")
print(admin["AccessKeyId"], admin["SecretAccessKey"], host["AccessKeyId"], host["SecretAccessKey"])
"#;
    let out =
        Command::new(workspace().join(".venv/bin/python")).arg("-c").arg(setup).arg(moto.endpoint()).output().unwrap();
    assert!(out.status.success(), "setup: {}", text(&out.stderr));
    let keys: Vec<String> = text(&out.stdout).split_whitespace().map(str::to_string).collect();
    let gate = Gate::start_encoding_queries(moto.port);
    let (admin, host) = ((keys[0].clone(), keys[1].clone()), (keys[2].clone(), keys[3].clone()));
    let aws = |(id, secret): &(String, String)| {
        format!(
            "AWS_ACCESS_KEY_ID={id} AWS_SECRET_ACCESS_KEY={secret} AWS_EC2_METADATA_DISABLED=true \
             AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent BUNKER_RETRY_MIN_DELAY_MS=10"
        )
    };
    let site = Site::new();
    let archive = format!(
        "archive_command = '{} {} {} --config {} wal-push --target main %p'",
        aws(&host),
        site.env_prefix(),
        site.bin().display(),
        site.config.display()
    );
    let pg = ScratchPostgres::start_with(&bins, &["archive_mode = on", &archive]).unwrap();
    std::fs::write(
        &site.config,
        format!(
            "[repository]\nurl = \"s3://backups/repo?endpoint={}&region=us-east-1&path-style=true\"\npassword_file = \"{}\"\n\n\
             [targets.main]\ntype = \"postgres\"\nmode = \"physical\"\n\
             url = \"postgresql://postgres@127.0.0.1:{}/postgres\"\narchive_timeout = \"60s\"\n",
            gate.endpoint(),
            site.root.join("password").display(),
            pg.port()
        ),
    )
    .unwrap();
    chown_postgres(&site.config);
    let with = |key: &(String, String), mut c: Command| {
        for pair in aws(key).split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap();
            c.env(k, v);
        }
        c.env("BUNKER_CACHE_DIR", "off");
        c
    };
    let ok = |key: &(String, String), args: &[&str]| {
        let out = with(key, site.cmd(args)).output().unwrap();
        assert!(out.status.success(), "bunker {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    ok(&admin, &["init"]);
    pg.psql("postgres", "CREATE TABLE t (id serial PRIMARY KEY, batch text NOT NULL, doc jsonb)").unwrap();
    pg.psql(
        "postgres",
        "INSERT INTO t (batch, doc) SELECT 'A', jsonb_build_object('n', g) FROM generate_series(1, 1000) g",
    )
    .unwrap();
    ok(&host, &["backup", "--all"]);
    ok(&host, &["backup", "--all"]);
    // A commit after the point, archived: recovery to the point's time sees it and stops there.
    std::thread::sleep(Duration::from_millis(1100));
    pg.psql("postgres", "INSERT INTO t (batch) SELECT 'B' FROM generate_series(1, 500)").unwrap();
    switch_and_wait(&pg);
    assert!(ok(&host, &["status"]).contains("main"));
    // The archive holds every segment from the base backups on (read with the host's key too).
    let verified = ok(&host, &["wal", "verify", "main"]);
    assert!(!verified.contains("gap") && !verified.contains("missing"), "{verified}");

    // What needs a delete is refused, at once, with a line about the credentials.
    let started = Instant::now();
    let out = with(&host, site.cmd(&["prune"])).output().unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("AccessDenied") || err.contains("access denied") || err.contains("credentials"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "a refused delete was retried: {err}");

    // The administrator recovers the point.
    let out = with(&admin, site.cmd_as_self(&["--json", "drill"], "cache-admin")).output().unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let drill: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(drill["targets"][0]["checks"].to_string().contains("1000 rows"), "{drill:#}");
}
