//! The restore route against a real repository in a temporary directory, without starting bunker: by
//! name, by ID prefix, by `latest` and by recovery point it runs the target's hooks, verifies, and
//! records the run; a snapshot whose target left the stack file restores with a warning and no hooks.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunker_engine::archiver::Archiver;
use bunker_engine::backup::{Backup, SnapshotDraft};
use bunker_engine::catalog::{RunRecord, RunStatus};
use bunker_engine::config::InitOptions;
use bunker_engine::snapshot::Root;
use bunker_engine::storage::{Location, Storage};
use bunker_engine::{lock, Repository};
use bunker_ops::lock::LockPolicy;
use bunker_ops::restore::{restore, restore_point, RestoreRequest};
use bunker_sources::{Destination, HomeBase, RestoreOptions};

/// Collects what an operation reports.
#[derive(Default)]
struct Collect(Mutex<Vec<String>>);

impl bunker_ops::Events for Collect {
    fn progress(&self, line: &str) {
        self.0.lock().unwrap().push(format!("progress: {line}"));
    }
    fn warning(&self, line: &str) {
        self.0.lock().unwrap().push(format!("warning: {line}"));
    }
}

struct Site {
    dir: tempfile::TempDir,
    repo: Repository,
    log: PathBuf,
}

impl Site {
    fn new() -> Site {
        std::env::set_var("BUNKER_KDF_MEMORY_KIB", "1024");
        std::env::set_var("BUNKER_CACHE_DIR", "off");
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("www");
        std::fs::create_dir_all(source.join("conf")).unwrap();
        std::fs::write(source.join("conf/app.env"), b"MODE=production\n").unwrap();
        std::fs::write(source.join("index.html"), vec![b'x'; 100_000]).unwrap();
        let storage = Storage::create(&Location::Local(dir.path().join("repo"))).unwrap();
        let repo = Repository::init(storage, "pw", &InitOptions::default()).unwrap();
        let log = dir.path().join("hooks.log");
        Site { dir, repo, log }
    }

    /// A backup of the `www` directory as a snapshot `name`, with tags.
    fn back_up(&self, name: &str, tags: &[&str]) -> String {
        let guard = lock::acquire(self.repo.storage(), false, "test", Duration::ZERO).unwrap();
        let (index, _) = self.repo.load_index().unwrap();
        let backup = Backup::start(&self.repo, &guard, Arc::new(index));
        let exclude = bunker_sources::files::globs(&[]).unwrap();
        let root = Archiver::new(&backup, &exclude).save_paths(&[self.dir.path().join("www")]).unwrap();
        let draft = SnapshotDraft {
            name: name.into(),
            kind: "files".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        backup.commit(Root::Tree { tree: root }, draft).unwrap().id().to_hex()
    }

    fn config(&self, before: &str) -> bunker_config::Config {
        let line = format!(
            "echo \\\"$BUNKER_PHASE $BUNKER_STATUS $BUNKER_SNAPSHOT $BUNKER_SNAPSHOT_ID\\\" >> {}",
            self.log.display()
        );
        let text = format!(
            "[targets.web]\ntype = \"files\"\npaths = [\"{}\"]\nbefore_restore = \"{before}{line}\"\nafter_restore = \"{line}\"\n",
            self.dir.path().join("www").display()
        );
        bunker_config::Config::parse(&text, &self.dir.path().join("bunker.toml")).unwrap()
    }

    fn hooks(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
    }

    fn restore_runs(&self) -> Vec<RunRecord> {
        let mut runs: Vec<RunRecord> =
            self.repo.load_runs().unwrap().into_iter().filter(|r| r.operation == "restore").collect();
        runs.sort_by_key(|r| r.started);
        runs
    }
}

fn no_wal(_: &str) -> Result<String, bunker_sources::SourceError> {
    Err(bunker_sources::fail("no WAL here"))
}

fn request<'a>(selector: &'a str, to: &Path) -> RestoreRequest<'a> {
    RestoreRequest {
        selector,
        destination: Some(Destination::Dir(to.to_path_buf())),
        options: RestoreOptions::default(),
        wal_fetch: &no_wal,
    }
}

#[test]
fn by_name_id_and_latest_the_targets_hooks_run_and_the_run_is_recorded() {
    let site = Site::new();
    let id = site.back_up("web", &[]);
    let config = site.config("");
    let events = Collect::default();
    for (n, selector) in ["web", "web:latest", &id[..10], "latest"].into_iter().enumerate() {
        let to = site.dir.path().join(format!("out{n}"));
        let report =
            restore(Some(&config), &site.repo, LockPolicy::default(), &request(selector, &to), &events).unwrap();
        assert_eq!(report.status, RunStatus::Success, "{selector}");
        assert_eq!(report.target, "web");
        assert_eq!(report.kind, "files");
        assert_eq!(report.hooks, ["before_restore", "after_restore"], "{selector}");
        assert!(report.restored.verified, "{selector}: compared with the snapshot");
        assert_eq!(std::fs::read(to.join("www/conf/app.env")).unwrap(), b"MODE=production\n");
        assert_eq!(
            site.hooks(),
            [format!("before_restore {selector} {id}"), format!("after_restore success {selector} {id}")],
            "{selector}"
        );
        let run = site.restore_runs().pop().unwrap();
        assert_eq!((run.target.as_deref(), run.snapshot.as_deref()), (Some("web"), Some(id.as_str())));
        assert_eq!(run.status, RunStatus::Success);
        assert_eq!(run.details["verified"], true);
        assert_eq!(run.details["hooks"], serde_json::json!(["before_restore", "after_restore"]));
    }
    assert_eq!(site.restore_runs().len(), 4);
}

#[test]
fn a_failing_before_hook_stops_the_restore_and_the_after_hook_still_runs() {
    let site = Site::new();
    let id = site.back_up("web", &[]);
    let config = site.config("exit 7; ");
    let to = site.dir.path().join("out");
    let e = restore(Some(&config), &site.repo, LockPolicy::default(), &request("web", &to), &Collect::default())
        .unwrap_err();
    assert!(e.to_string().contains("before_restore hook of web failed"), "{e}");
    assert!(!to.exists(), "nothing was restored");
    assert_eq!(site.hooks(), [format!("after_restore failed web {id}")]);
    let run = site.restore_runs().pop().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.unwrap().contains("before_restore"));
}

#[test]
fn a_snapshot_whose_target_left_the_stack_file_restores_with_a_warning_and_no_hooks() {
    let site = Site::new();
    site.back_up("old-site", &[]);
    let config = site.config("");
    let events = Collect::default();
    let to = site.dir.path().join("out");
    let report = restore(Some(&config), &site.repo, LockPolicy::default(), &request("old-site", &to), &events).unwrap();
    assert!(!report.configured && report.hooks.is_empty());
    assert!(site.hooks().is_empty());
    let said = events.0.lock().unwrap().join("\n");
    assert!(
        said.contains("warning: old-site is no target of the stack file") && said.contains("without hooks"),
        "{said}"
    );
    // Without a destination there is nowhere known to put it: a failed run naming the flags.
    let mut req = request("old-site", &to);
    req.destination = None;
    let e = restore(Some(&config), &site.repo, LockPolicy::default(), &req, &events).unwrap_err().to_string();
    assert!(e.contains("give a destination") && e.contains("--to"), "{e}");
    assert_eq!(site.restore_runs().last().unwrap().status, RunStatus::Failed);
}

#[test]
fn a_recovery_point_restores_each_snapshot_through_the_same_route() {
    let site = Site::new();
    let id = site.back_up("web", &["point:P1"]);
    let mut point = RunRecord::new("point", chrono::Utc::now(), RunStatus::Success);
    point.details = serde_json::json!({ "point": "P1", "targets": ["web"], "snapshots": [id] });
    site.repo.save_run(&mut point).unwrap();
    let config = site.config("");
    let dir = site.dir.path().join("back");
    let base = HomeBase { files: Some(dir.clone()), ..Default::default() };
    let req =
        RestoreRequest { selector: "", destination: None, options: RestoreOptions::default(), wal_fetch: &no_wal };
    let report =
        restore_point(&config, &site.repo, LockPolicy::default(), "latest", &base, &req, &Collect::default()).unwrap();
    assert_eq!(report.point, "P1");
    assert_eq!(report.members.len(), 1);
    let one = report.members[0].outcome.as_ref().unwrap();
    assert_eq!(one.hooks, ["before_restore", "after_restore"]);
    assert!(dir.join("web/www/index.html").is_file(), "files go to DIR/TARGET");
    assert_eq!(site.hooks(), [format!("before_restore {id} {id}"), format!("after_restore success {id} {id}")]);
    // An unknown point is named.
    let e =
        restore_point(&config, &site.repo, LockPolicy::default(), "P9", &base, &req, &Collect::default()).unwrap_err();
    assert!(e.to_string().contains("no recovery point \"P9\""), "{e}");
}
