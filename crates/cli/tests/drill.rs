//! Drills against real servers: a stack of scratch PostgreSQL, Redis, files and a command is backed up as
//! a recovery point, then drilled into scratch instances the drill provisions itself.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use bunker_scratch::{PgBinaries, ScratchPostgres, ScratchRedis};
use common::*;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A stack's sources and its stack file; the drill's scratch instances go under `tmp` (TMPDIR).
struct Stack {
    repo: Repo,
    config: PathBuf,
    tmp: PathBuf,
    _pg: Option<ScratchPostgres>,
    _redis: Option<ScratchRedis>,
}

impl Stack {
    fn new(with_pg: bool, with_redis: bool, extra: &str) -> Stack {
        Self::with_init(&[], with_pg, with_redis, extra)
    }

    /// [`Stack::new`] in a repository made by `bunker init INIT_ARGS`.
    fn with_init(init_args: &[&str], with_pg: bool, with_redis: bool, extra: &str) -> Stack {
        let repo = Repo::with_init_args(init_args);
        let tmp = repo.root.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        // Scratch PostgreSQL runs as the postgres user, which must reach its directory.
        for dir in [&repo.root, &tmp] {
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let files = repo.root.join("files");
        std::fs::create_dir_all(files.join("conf")).unwrap();
        std::fs::write(files.join("conf/app.env"), b"DATABASE_URL=postgres://app\n").unwrap();
        std::fs::write(files.join("big.bin"), mixed_data(3 << 20, 7)).unwrap();
        let mut text = format!(
            "[repository]\nurl = \"{}\"\n\n[targets.files]\ntype = \"files\"\npaths = [\"{}\"]\n\n\
             [targets.search]\ntype = \"command\"\nbackup = \"seq 1 20000\"\n\n",
            repo.path.display(),
            files.display()
        );
        let pg = with_pg.then(|| {
            let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
            let pg = ScratchPostgres::start(&bins).unwrap();
            pg.psql("postgres", "CREATE DATABASE app").unwrap();
            pg.psql(
                "app",
                "CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL);
                 CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers(id), total numeric);
                 INSERT INTO customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 500) g;
                 INSERT INTO orders SELECT g, 1 + g % 500, g FROM generate_series(1, 2000) g;",
            )
            .unwrap();
            text.push_str(&format!(
                "[targets.db]\ntype = \"postgres\"\nurl = \"{}\"\nrto_objective = \"10m\"\n\n\
                 [[targets.db.assert]]\nname = \"has customers\"\nsql = \"SELECT count(*) > 0 FROM customers\"\nexpect = \"t\"\n\n",
                pg.url("app")
            ));
            pg
        });
        let redis = with_redis.then(|| {
            let r = ScratchRedis::start().unwrap();
            let mut commands: Vec<String> = (0..300).map(|i| format!("SET key:{i} value-{i}")).collect();
            commands.push("HSET user:1 name ada lang rust".into());
            redis_commands(r.port(), &commands);
            text.push_str(&format!("[targets.cache]\ntype = \"redis\"\nurl = \"{}\"\n\n", r.url()));
            r
        });
        text.push_str(extra);
        let config = repo.root.join("bunker.toml");
        std::fs::write(&config, text).unwrap();
        Stack { repo, config, tmp, _pg: pg, _redis: redis }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.repo.cmd(args).env("BUNKER_CONFIG", &self.config).env("TMPDIR", &self.tmp).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> (Option<i32>, serde_json::Value) {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let o = self.run(&full);
        let v = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}\n{}", String::from_utf8_lossy(&o.stdout), stderr(&o)));
        (o.status.code(), v)
    }

    /// The drill left nothing behind: no directory in TMPDIR, no process running from one.
    fn assert_torn_down(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.tmp).unwrap().flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "scratch directories left behind: {left:?}");
        let tmp = self.tmp.display().to_string();
        for p in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(!cmdline.contains(&tmp), "scratch process left running: {cmdline}");
        }
    }
}

fn checks(target: &serde_json::Value) -> Vec<(String, bool, String)> {
    target["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["name"].as_str().unwrap().to_string(), c["passed"] == true, c["detail"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn a_drill_of_a_good_point_passes_measures_runs_the_smoke_test_and_leaves_nothing() {
    let seen = tempfile::NamedTempFile::new().unwrap();
    let hook = format!(
        "[drill]\nrto_objective = \"15m\"\nrpo_objective = \"1h\"\n\
         after_restore = \"env | grep ^BUNKER_DRILL_ | sort > {0} && psql \\\"$BUNKER_DRILL_PG_URL\\\"app -tAc 'SELECT count(*) FROM orders' >> {0}\"\n",
        seen.path().display()
    );
    let stack = Stack::new(true, true, &hook);
    let o = stack.run(&["backup", "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = stack.repo.root.join("drill.html");
    let (code, drill) = stack.json(&["drill", "--report", report.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{drill:#}");
    assert_eq!(drill["passed"], true, "{drill:#}");
    assert!(drill["point"].is_string());
    let targets = drill["targets"].as_array().unwrap();
    let names: Vec<&str> = targets.iter().map(|t| t["target"].as_str().unwrap()).collect();
    assert_eq!(names, ["cache", "db", "files", "search"]);
    for t in targets {
        assert_eq!(t["passed"], true, "{t:#}");
        assert!(t["rto_seconds"].as_f64().unwrap() > 0.0);
        assert!(t["bytes"].as_u64().unwrap() > 0, "{t:#}");
    }
    let db = checks(&targets[1]);
    assert!(db.iter().any(|(n, ok, d)| n == "row counts" && *ok && d.starts_with("2/2 tables")), "{db:?}");
    assert!(db.iter().any(|(n, ok, d)| n == "foreign keys" && *ok && d.starts_with("1 foreign keys")), "{db:?}");
    assert!(db.iter().any(|(n, ok, _)| n == "assertion has customers" && *ok), "{db:?}");
    let cache = checks(&targets[0]);
    assert!(cache.iter().any(|(n, ok, d)| n == "keys db0" && *ok && d.starts_with("301 restored")), "{cache:?}");
    let files = checks(&targets[2]);
    assert!(files.iter().any(|(n, ok, d)| n == "file hashes" && *ok && d.starts_with("2 files")), "{files:?}");
    assert!(drill["rto_seconds"].as_f64().unwrap() >= targets[1]["rto_seconds"].as_f64().unwrap());
    assert_eq!(drill["rto_objective_seconds"], 900.0);
    assert!(drill["rpo_seconds"].as_f64().unwrap() < 600.0);

    // The smoke test saw the scratch endpoints and the restored data.
    let env = std::fs::read_to_string(seen.path()).unwrap();
    assert!(env.contains("BUNKER_DRILL_PG_URL=postgresql://postgres@127.0.0.1:"), "{env}");
    assert!(env.contains("BUNKER_DRILL_REDIS_URL=redis://127.0.0.1:"), "{env}");
    assert!(env.contains("BUNKER_DRILL_TARGET_FILES="), "{env}");
    assert!(env.trim_end().ends_with("2000"), "{env}");
    assert_eq!(drill["hooks"][0]["passed"], true);
    assert_eq!(drill["hooks"][0]["command"], "env …", "the record keeps the program only, never its arguments");

    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg") && html.contains("PASSED") && html.contains("files"), "report");

    // The catalog holds it: `bunker drills`, and `status` knows the last drill.
    let (code, drills) = stack.json(&["drills"]);
    assert_eq!(code, Some(0));
    assert_eq!(drills.as_array().unwrap().len(), 1);
    assert_eq!(drills[0]["status"], "success");
    assert_eq!(drills[0]["record"]["targets"].as_array().unwrap().len(), 4);
    stack.assert_torn_down();

    // --targets drills only those (the smoke test needs the database).
    let (code, two) = stack.json(&["drill", "--targets", "db,files"]);
    assert_eq!(code, Some(0), "{two:#}");
    assert_eq!(two["targets"].as_array().unwrap().len(), 2);
    let o = stack.run(&["drill", "--targets", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("\"nope\""), "{}", stderr(&o));
    stack.assert_torn_down();
}

#[test]
fn a_failing_assertion_fails_the_drill_and_names_it() {
    let stack = Stack::new(true, false, "");
    // An assertion the restored data cannot meet.
    let text = std::fs::read_to_string(&stack.config).unwrap()
        + "[[targets.db.assert]]\nname = \"no big orders\"\nsql = \"SELECT count(*) FROM orders WHERE total > 100\"\nexpect = \"0\"\n";
    std::fs::write(&stack.config, text).unwrap();
    assert!(stack.run(&["backup", "--all"]).status.success());
    let (code, drill) = stack.json(&["drill"]);
    assert_eq!(code, Some(1), "{drill:#}");
    assert_eq!(drill["passed"], false);
    let problems = drill["problems"].to_string();
    assert!(problems.contains("db snapshot") && problems.contains("assertion no big orders"), "{problems}");
    let db = drill["targets"].as_array().unwrap().iter().find(|t| t["target"] == "db").unwrap();
    assert_eq!(db["passed"], false);
    let files = drill["targets"].as_array().unwrap().iter().find(|t| t["target"] == "files").unwrap();
    assert_eq!(files["passed"], true, "other targets are judged on their own");
    let (_, drills) = stack.json(&["drills"]);
    assert_eq!(drills[0]["status"], "failed");
    stack.assert_torn_down();
}

#[test]
fn a_corrupted_pack_fails_the_drill_naming_the_target_and_snapshot() {
    let stack = Stack::new(false, false, "");
    assert!(stack.run(&["backup", "--all"]).status.success());
    // Damage the biggest pack (the 3 MiB file's data) in its middle.
    let pack = stack.repo.packs().into_iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&pack, bytes).unwrap();
    let snapshot = stack.repo.snapshots().into_iter().find(|s| s["name"] == "files").unwrap();
    let short = &snapshot["id"].as_str().unwrap()[..8];
    let (code, drill) = stack.json(&["drill"]);
    assert_eq!(code, Some(1), "{drill:#}");
    let problems = drill["problems"].to_string();
    assert!(problems.contains(&format!("files snapshot {short}")), "{problems}");
    let search = drill["targets"].as_array().unwrap().iter().find(|t| t["target"] == "search").unwrap();
    assert_eq!(search["passed"], true, "{search:#}");
    stack.assert_torn_down();
}

#[test]
fn missing_server_binaries_name_the_package() {
    let stack = Stack::new(true, false, "");
    assert!(stack.run(&["backup", "--all"]).status.success());
    let o = stack
        .repo
        .cmd(&["--json", "drill", "--targets", "db"])
        .env("BUNKER_CONFIG", &stack.config)
        .env("TMPDIR", &stack.tmp)
        .env("BUNKER_PG_SERVER_DIRS", "/nonexistent/pg-{major}/bin")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let drill: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let error = drill["targets"][0]["error"].as_str().unwrap().to_string();
    let major = PgBinaries::newest().unwrap().major;
    assert!(error.contains(&format!("install the postgresql-{major} package")), "{error}");
    stack.assert_torn_down();
}

#[test]
fn an_interrupted_drill_tears_everything_down_and_records_it() {
    let stack = Stack::new(true, true, "");
    assert!(stack.run(&["backup", "--all"]).status.success());
    let mut child = stack
        .repo
        .cmd(&["drill"])
        .env("BUNKER_CONFIG", &stack.config)
        .env("TMPDIR", &stack.tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a scratch server exists, then interrupt.
    let started = std::time::Instant::now();
    while !has_scratch(&stack.tmp) {
        assert!(started.elapsed().as_secs() < 60, "no scratch instance appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(!status.success(), "an interrupted drill must not pass");
    stack.assert_torn_down();
    let (_, drills) = stack.json(&["drills"]);
    let status = drills[0]["status"].as_str().unwrap();
    assert!(status == "interrupted" || status == "failed", "{drills:#}");
}

fn has_scratch(tmp: &Path) -> bool {
    std::fs::read_dir(tmp).map(|mut d| d.next().is_some()).unwrap_or(false)
}

#[test]
fn keep_leaves_the_scratch_instances_running_and_says_how_to_reach_them() {
    let stack = Stack::new(false, true, "");
    assert!(stack.run(&["backup", "--all"]).status.success());
    let (code, drill) = stack.json(&["drill", "--keep", "--targets", "cache,files"]);
    assert_eq!(code, Some(0), "{drill:#}");
    let kept: Vec<String> = drill["kept"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let redis =
        kept.iter().find(|k| k.starts_with("Redis: redis-cli -u redis://127.0.0.1:")).expect("the Redis server");
    let port: u16 = redis["Redis: redis-cli -u redis://127.0.0.1:".len()..].split(' ').next().unwrap().parse().unwrap();
    let files = kept.iter().find(|k| k.starts_with("directory ")).expect("the files directory");
    let dir = PathBuf::from(&files["directory ".len()..]);
    assert!(dir.join("restored").is_dir(), "{files}");

    // Still serving the restored keys after bunker exited; then stopped by hand, as the message says.
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("kept Redis is running");
    c.write_all(b"DBSIZE\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = c.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b":301\r\n");
    c.write_all(b"SHUTDOWN NOSAVE\r\n").unwrap();
    let _ = c.read(&mut buf);
    for e in std::fs::read_dir(&stack.tmp).unwrap().flatten() {
        std::fs::remove_dir_all(e.path()).unwrap();
    }
    stack.assert_torn_down();
}

#[test]
fn a_write_only_host_backs_up_the_stack_and_only_the_identity_drills_it() {
    let keys = tempfile::tempdir().unwrap();
    let AgeKey { identity, public } = age_key_in(keys.path(), "identity.txt");
    let stack = Stack::with_init(&["--recipient", &public], true, true, "");
    // The backup host: the whole stack, twice (PostgreSQL, Redis, files, a command), then its health.
    for _ in 0..2 {
        let o = stack.run(&["backup", "--all"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = stack.run(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = stack.run(&["points"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // It cannot drill, nor restore: one line, exit 12, no scratch server started.
    let o = stack.run(&["drill"]);
    assert_eq!(o.status.code(), Some(12), "{}", stderr(&o));
    assert!(stderr(&o).contains("--identity"), "{}", stderr(&o));
    stack.assert_torn_down();
    let o = stack.run(&["restore", "--point", "latest", "--dry-run"]);
    assert_eq!(o.status.code(), Some(12), "{}", stderr(&o));

    // With the identity (and no password), the drill restores every target and passes.
    let o = stack
        .repo
        .cmd(&["--json", "drill"])
        .env("BUNKER_CONFIG", &stack.config)
        .env("TMPDIR", &stack.tmp)
        .env_remove("BUNKER_PASSWORD")
        .env("BUNKER_IDENTITY_FILE", &identity)
        .output()
        .unwrap();
    let drill: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", String::from_utf8_lossy(&o.stdout), stderr(&o)));
    assert_eq!(o.status.code(), Some(0), "{drill:#}");
    assert_eq!(drill["passed"], true, "{drill:#}");
    assert_eq!(drill["targets"].as_array().unwrap().len(), 4, "{drill:#}");
    stack.assert_torn_down();
}
