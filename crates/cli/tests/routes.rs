//! Every route to a restore is the same route. For every source kind (logical PostgreSQL, Redis in rdb
//! and keys mode, S3, files, a command; physical PostgreSQL is in `postgres_pitr.rs`), restoring by
//! name, by bare ID, by recovery point and in a drill runs the target's `before_restore` and
//! `after_restore` hooks with the snapshot's ID (in a drill: its own `after_restore` only where it opts
//! in, with `BUNKER_DRILL=1`), verifies what landed, and records one `restore` run in the catalog.
//! Then two applications' groups drill with their own smoke tests, each seeing only its own targets.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Output;

use bunker_scratch::{PgBinaries, ScratchPostgres, ScratchRedis};
use common::moto::Moto;
use common::*;

const KINDS: [&str; 6] = ["db", "cache", "keys", "media", "files", "search"];
/// The targets whose own `after_restore` opts in to drills.
const OPTED_IN: [&str; 3] = ["db", "keys", "search"];

struct Stack {
    repo: Repo,
    config: PathBuf,
    tmp: PathBuf,
    log: PathBuf,
    moto: Moto,
    redis: ScratchRedis,
    redis_keys: ScratchRedis,
    pg: ScratchPostgres,
}

fn fill_redis(r: &ScratchRedis, prefix: &str) {
    let commands: Vec<String> = (0..50).map(|i| format!("SET {prefix}:{i} value-{i}")).collect();
    redis_commands(r.port(), &commands);
}

impl Stack {
    fn new(extra: &str) -> Stack {
        let repo = Repo::new();
        let tmp = repo.root.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        for dir in [&repo.root, &tmp] {
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let log = repo.root.join("hooks.log");
        let files = repo.root.join("files");
        std::fs::create_dir_all(files.join("conf")).unwrap();
        std::fs::write(files.join("conf/app.env"), b"MODE=production\n").unwrap();
        std::fs::write(files.join("data.bin"), mixed_data(200 << 10, 3)).unwrap();
        let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
        let pg = ScratchPostgres::start(&bins).unwrap();
        pg.psql("postgres", "CREATE DATABASE app").unwrap();
        pg.psql(
            "app",
            "CREATE TABLE owners (id int PRIMARY KEY, name text NOT NULL);
             CREATE TABLE projects (id int PRIMARY KEY, owner int REFERENCES owners(id), doc jsonb);
             INSERT INTO owners SELECT g, 'o' || g FROM generate_series(1, 50) g;
             INSERT INTO projects SELECT g, 1 + g % 50, jsonb_build_object('n', g) FROM generate_series(1, 300) g;",
        )
        .unwrap();
        let redis = ScratchRedis::start().unwrap();
        fill_redis(&redis, "session");
        let redis_keys = ScratchRedis::start().unwrap();
        fill_redis(&redis_keys, "cart");
        let moto = Moto::start();
        moto.create_bucket("media");
        for (key, body) in [("logo.png", &b"png bytes"[..]), ("docs/a.txt", b"alpha"), ("docs/b.txt", b"beta")] {
            let (status, text) = common::moto::http(moto.port, "PUT", &format!("/media/{key}"), body);
            assert_eq!(status, 200, "{text}");
        }
        // Every hook appends one line: phase, target, status, drill flag, the snapshot's full ID.
        let hooks = |name: &str| {
            let line = format!(
                "echo \\\"$BUNKER_PHASE $BUNKER_TARGET $BUNKER_STATUS d$BUNKER_DRILL $BUNKER_SNAPSHOT_ID\\\" >> {}",
                log.display()
            );
            format!(
                "before_restore = \"{line}\"\nafter_restore = \"{line}\"\ndrill_after_restore = {}\n",
                OPTED_IN.contains(&name)
            )
        };
        let text = format!(
            "[repository]\nurl = \"{repo}\"\n\n\
             [targets.db]\ntype = \"postgres\"\nurl = \"{pg}\"\n{db}\n\
             [targets.cache]\ntype = \"redis\"\nurl = \"{redis}\"\n{cache}\n\
             [targets.keys]\ntype = \"redis\"\nmode = \"keys\"\nurl = \"{redis_keys}\"\n{keys}\n\
             [targets.media]\ntype = \"s3\"\nbucket = \"media\"\nprefix = \"\"\nendpoint = \"{ep}\"\n\
             access_key_id = \"testing\"\nsecret_access_key = \"testing\"\n{media}\n\
             [targets.files]\ntype = \"files\"\npaths = [\"{files}\"]\n{files_hooks}\n\
             [targets.search]\ntype = \"command\"\nbackup = \"seq 1 5000\"\nrestore = \"wc -l > {restored}\"\n{search}\n\
             {extra}",
            repo = repo.path.display(),
            pg = pg.url("app"),
            db = hooks("db"),
            redis = redis.url(),
            cache = hooks("cache"),
            redis_keys = redis_keys.url(),
            keys = hooks("keys"),
            ep = moto.endpoint(),
            media = hooks("media"),
            files = files.display(),
            files_hooks = hooks("files"),
            restored = repo.root.join("search.restored").display(),
            search = hooks("search"),
        );
        let config = repo.root.join("bunker.toml");
        std::fs::write(&config, text).unwrap();
        Stack { repo, config, tmp, log, moto, redis, redis_keys, pg }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.repo
            .cmd(args)
            .env("BUNKER_CONFIG", &self.config)
            .env("TMPDIR", &self.tmp)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "bunker {args:?}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        serde_json::from_str(&self.ok(&full)).unwrap()
    }

    /// The hook lines written since the last call, emptied.
    fn hook_lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
    }

    /// Each target's snapshot ID (the newest of its main snapshot).
    fn ids(&self) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        for s in self.json(&["snapshots"]).as_array().unwrap() {
            out.insert(s["name"].as_str().unwrap().to_string(), s["id"].as_str().unwrap().to_string());
        }
        out
    }

    /// The destination flags of a single restore of `target`, into somewhere new.
    fn destination(&self, target: &str, route: &str) -> Vec<String> {
        let dir = |what: &str| self.repo.root.join(format!("{what}-{route}")).display().to_string();
        match target {
            "db" => vec!["--into".into(), format!("app_{route}")],
            "cache" => vec!["--into".into(), self.redis.url(), "--force".into()],
            "keys" => vec!["--into".into(), self.redis_keys.url(), "--force".into()],
            "media" => vec!["--into".into(), format!("s3://media/copy-{route}?endpoint={}", self.moto.endpoint())],
            "files" => vec!["--to".into(), dir("files")],
            "search" => vec!["--exec".into()],
            other => panic!("{other}"),
        }
    }
}

/// The restore runs of the catalog, newest last.
fn restore_runs(stack: &Stack) -> Vec<serde_json::Value> {
    stack.json(&["history", "--operation", "restore"]).as_array().unwrap().clone()
}

fn assert_hooks_ran(lines: &[String], target: &str, id: &str, route: &str) {
    let before = format!("before_restore {target} d {id}");
    let after = format!("after_restore {target} success d {id}");
    assert!(lines.contains(&before), "{route}: {target}'s before_restore did not run with its ID: {lines:#?}");
    assert!(lines.contains(&after), "{route}: {target}'s after_restore did not run with its ID: {lines:#?}");
}

fn assert_recorded(runs: &[serde_json::Value], target: &str, id: &str, route: &str) {
    let run = runs
        .iter()
        .rev()
        .find(|r| r["target"] == target && r["snapshot"] == id)
        .unwrap_or_else(|| panic!("{route}: no restore run of {target} {id}: {runs:#?}"));
    assert_eq!(run["status"], "success", "{route}: {run:#}");
    assert_eq!(run["details"]["verified"], true, "{route}: {target} was not verified: {run:#}");
    assert_eq!(run["details"]["hooks"], serde_json::json!(["before_restore", "after_restore"]), "{route}: {run:#}");
}

#[test]
fn every_route_to_a_restore_runs_the_same_hooks_verification_and_catalog_run() {
    let stack = Stack::new("");
    stack.ok(&["backup", "--all"]);
    let ids = stack.ids();
    assert_eq!(ids.len(), KINDS.len(), "{ids:?}");

    for route in ["name", "id"] {
        for target in KINDS {
            let id = &ids[target];
            let selector = if route == "name" { target.to_string() } else { id[..12].to_string() };
            let mut args = vec!["restore".to_string(), selector];
            args.extend(stack.destination(target, route));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            stack.ok(&args);
            let lines = stack.hook_lines();
            assert_hooks_ran(&lines, target, id, route);
            assert_eq!(lines.len(), 2, "{route}: {target}: {lines:#?}");
            assert_recorded(&restore_runs(&stack), target, id, route);
        }
    }
    // What the command target's restore command received, the routes above fed it.
    let fed = std::fs::read_to_string(stack.repo.root.join("search.restored")).unwrap();
    assert_eq!(fed.trim(), "5000");

    // A dry run of the point changes nothing anywhere: no hook, no restore, no catalog run; each
    // target says where it would go.
    let dir = stack.repo.root.join("point");
    std::fs::remove_file(stack.repo.root.join("search.restored")).unwrap();
    let runs_before = restore_runs(&stack).len();
    let dry = stack.ok(&["restore", "--point", "latest", "--to", dir.to_str().unwrap(), "--dry-run"]);
    assert!(dry.contains(&format!("would restore {0} of {0} snapshots", KINDS.len())), "{dry}");
    assert!(
        dry.contains("would restore") && dry.contains("running its before_restore and after_restore hooks"),
        "{dry}"
    );
    assert!(stack.hook_lines().is_empty(), "a dry run ran hooks");
    assert!(!stack.repo.root.join("search.restored").exists(), "a dry run fed the restore command");
    assert!(!dir.exists(), "a dry run wrote files");
    assert_eq!(restore_runs(&stack).len(), runs_before, "a dry run recorded restores");

    // A recovery point: every target back where it lives, through the same route.
    let point = stack.json(&["restore", "--point", "latest", "--to", dir.to_str().unwrap(), "--force"]);
    let restored = point["restored"].as_array().unwrap();
    assert_eq!(restored.len(), KINDS.len(), "{point:#}");
    assert!(restored.iter().all(|r| r["exit_code"] == 0), "{point:#}");
    let lines = stack.hook_lines();
    let runs = restore_runs(&stack);
    for target in KINDS {
        assert_hooks_ran(&lines, target, &ids[target], "point");
        assert_recorded(&runs, target, &ids[target], "point");
    }
    assert!(dir.join("files/files/conf/app.env").is_file(), "files go to DIR/TARGET (then the path backed up)");

    // A drill: a target's own after_restore only where it opts in, against the scratch copy.
    let drill = stack.json(&["drill"]);
    assert_eq!(drill["passed"], true, "{drill:#}");
    let lines = stack.hook_lines();
    for target in KINDS {
        let id = &ids[target];
        let ran = lines.contains(&format!("after_restore {target} success d1"));
        assert_eq!(ran, OPTED_IN.contains(&target), "{target}: {lines:#?}");
        assert!(!lines.iter().any(|l| l.starts_with(&format!("before_restore {target}"))), "{lines:#?}");
        let hook = drill["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["scope"] == format!("target {target}"))
            .unwrap_or_else(|| panic!("{target}'s hook is not in the drill record: {drill:#}"));
        assert_eq!(hook["ran"], OPTED_IN.contains(&target), "{hook:#}");
        let t = drill["targets"].as_array().unwrap().iter().find(|t| t["target"] == target).unwrap();
        assert!(t["snapshots"].as_array().unwrap().iter().any(|s| s == id.as_str()), "{t:#}");
        assert!(!t["checks"].as_array().unwrap().is_empty(), "{target} was verified in the drill: {t:#}");
    }
    let text = stack.ok(&["drill", "--targets", "cache"]);
    assert!(text.contains("(target cache): not run"), "{text}");
}

#[test]
fn a_stack_of_two_applications_drills_each_group_with_its_own_smoke_test() {
    // Each smoke test fails if it sees the other application's endpoints.
    let extra = "[groups.shop]\ntargets = [\"db\", \"files\"]\n\
         after_restore = \"test -n \\\"$BUNKER_DRILL_PG_URL\\\" && test -n \\\"$BUNKER_DRILL_TARGET_FILES\\\" && test -z \\\"$BUNKER_DRILL_TARGET_SEARCH\\\" && test -z \\\"$BUNKER_DRILL_REDIS_URL\\\"\"\n\n\
         [groups.blog]\ntargets = [\"search\", \"cache\"]\n\
         after_restore = [\"test -n \\\"$BUNKER_DRILL_TARGET_SEARCH\\\" && test -n \\\"$BUNKER_DRILL_REDIS_URL\\\" && test -z \\\"$BUNKER_DRILL_PG_URL\\\"\"]\n";
    let stack = Stack::new(extra);
    stack.ok(&["backup", "--group", "shop"]);
    stack.ok(&["backup", "--group", "blog"]);
    // The whole stack: both groups' tests run, each with its own targets only, and pass.
    let drill = stack.json(&["drill", "--targets", "db,files,search,cache"]);
    assert_eq!(drill["passed"], true, "{drill:#}");
    let group_tests: Vec<(&str, bool)> = drill["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["scope"].as_str().unwrap().starts_with("group "))
        .map(|h| (h["scope"].as_str().unwrap(), h["passed"] == true))
        .collect();
    assert_eq!(group_tests, [("group shop", true), ("group blog", true)], "{drill:#}");
    // One group: its targets, its newest snapshots, its test only.
    let drill = stack.json(&["drill", "--group", "blog"]);
    assert_eq!(drill["passed"], true, "{drill:#}");
    let names: Vec<&str> = drill["targets"].as_array().unwrap().iter().map(|t| t["target"].as_str().unwrap()).collect();
    assert_eq!(names, ["cache", "search"]);
    let scopes: Vec<&str> = drill["hooks"].as_array().unwrap().iter().map(|h| h["scope"].as_str().unwrap()).collect();
    assert!(scopes.contains(&"group blog") && !scopes.contains(&"group shop"), "{scopes:?}");
    // The newest point is the blog's; drilling the shop's targets by name takes their newest snapshots.
    let drill = stack.json(&["drill", "--targets", "db"]);
    assert_eq!(drill["point"], serde_json::Value::Null, "{drill:#}");
    let o = stack.run(&["drill", "--group", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no group \"nope\"") && err.contains("shop, blog"), "{err}");
}

#[test]
fn a_declined_prompt_is_recorded_as_cancelled_and_changes_nothing() {
    let stack = Stack::new("");
    stack.ok(&["backup", "db"]);
    stack.pg.psql("app", "INSERT INTO owners VALUES (999, 'after the backup')").unwrap();
    // The prompt needs a terminal: `script` gives the restore one, and "n" is the answer.
    let base = stack.repo.cmd(&[]);
    let mut c = std::process::Command::new("script");
    c.args(["-qec", &format!("{} restore db --into app", env!("CARGO_BIN_EXE_bunker")), "/dev/null"]);
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.env("BUNKER_CONFIG", &stack.config).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("Replace what the dump contains?") && text.contains("cancelled"), "{text}");
    assert_eq!(stack.pg.psql("app", "SELECT name FROM owners WHERE id = 999").unwrap(), "after the backup");
    let run = restore_runs(&stack).pop().unwrap();
    assert_eq!(run["status"], "cancelled", "{run:#}");
    // The after hook still ran, and was told it did not succeed.
    assert!(stack.hook_lines().iter().any(|l| l.starts_with("after_restore db failed")));
}
