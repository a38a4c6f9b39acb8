//! `bunker daemon` end to end: one-second schedules against a scratch Redis and an unreachable
//! PostgreSQL, `/metrics`, `/healthz` and `/status`, a webhook for the failure, the per-repository lock,
//! SIGHUP reload and a clean SIGTERM.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bunker_scratch::ScratchRedis;
use common::moto::http;
use common::receiver::Receiver;
use common::*;

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    std::panic::catch_unwind(|| http(port, "GET", path, b"")).ok().map(|(status, text)| {
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    })
}

/// `bunker daemon` on the stack file, serving on `listen`, refreshing every second.
fn start_daemon(repo: &Repo, cfg: &std::path::Path, listen: u16) -> Child {
    let listen = format!("127.0.0.1:{listen}");
    repo.cmd(&["--config", cfg.to_str().unwrap(), "daemon", "--listen", &listen, "--refresh", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stop(mut daemon: Child, signal: i32) -> std::process::Output {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, signal) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.wait_with_output().unwrap()
}

#[test]
fn daemon_runs_schedules_serves_metrics_and_reports_failures() {
    let repo = Repo::new();
    let redis = ScratchRedis::start().unwrap();
    let hook = Receiver::start();
    let dead_port = bunker_scratch::free_port().unwrap();
    let listen = bunker_scratch::free_port().unwrap();
    let cfg = repo.root.join("bunker.toml");
    let stack = |schedules: &str| {
        format!(
            "[repository]\nurl = \"{}\"\n\n\
             [targets.cache]\ntype = \"redis\"\nurl = \"{}\"\n\n\
             [targets.db]\ntype = \"postgres\"\nurl = \"postgresql://postgres@127.0.0.1:{dead_port}/app\"\n\n\
             [groups]\ngood = [\"cache\"]\nbad = [\"db\"]\n\n\
             [[notifications.webhook]]\nurl = \"{}\"\n\n{schedules}",
            repo.path.display(),
            redis.url(),
            hook.url("/hook/secret-token"),
        )
    };
    let schedules = "[schedules.quick]\nrun = \"backup\"\ngroup = \"good\"\ncron = \"* * * * * *\"\n\n\
                     [schedules.broken]\nrun = \"backup\"\ngroup = \"bad\"\ncron = \"*/2 * * * * *\"\n\n\
                     [schedules]\nstatus = \"* * * * * *\"\n";
    std::fs::write(&cfg, stack(schedules)).unwrap();
    let check = repo.cmd(&["--config", cfg.to_str().unwrap(), "config", "check"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    let daemon = start_daemon(&repo, &cfg, listen);

    // The backup happens and /metrics shows it, then changes with the next one.
    let first = wait_until(Duration::from_secs(90), "a first successful backup in /metrics", || {
        let (_, text) = get(listen, "/metrics")?;
        metric(&text, "bunker_last_success_timestamp_seconds{target=\"cache\"}")
    });
    let (status, text) = get(listen, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE bunker_runs_total counter"), "{text}");
    assert!(metric(&text, "bunker_repository_size_bytes").unwrap() > 0.0, "{text}");
    assert!(text.contains("bunker_job_next_run_timestamp_seconds{schedule=\"quick\"}"), "{text}");
    wait_until(Duration::from_secs(60), "a later backup to move the metric", || {
        let (_, text) = get(listen, "/metrics")?;
        metric(&text, "bunker_last_success_timestamp_seconds{target=\"cache\"}").filter(|t| *t > first)
    });

    // The unreachable database: a failed run, a webhook with the expected JSON, and the metrics.
    let failure = hook
        .wait_for(Duration::from_secs(60), |r| r.text().contains("\"failure\"") && r.text().contains("\"db\""))
        .expect("a failure webhook for db");
    assert_eq!((failure.method.as_str(), failure.path.as_str()), ("POST", "/hook/secret-token"));
    let event: serde_json::Value = failure.json();
    assert_eq!(event["event"], "failure");
    assert_eq!(event["operation"], "backup");
    assert_eq!(event["target"], "db");
    assert_eq!(event["status"], "failed");
    assert!(event["error"].as_str().unwrap().contains("connect"), "{event}");
    let text = wait_until(Duration::from_secs(30), "failures in /metrics", || {
        let (_, text) = get(listen, "/metrics")?;
        metric(&text, "bunker_runs_total{target=\"db\",operation=\"backup\",status=\"failed\"}")
            .filter(|n| *n >= 1.0)
            .map(|_| text)
    });
    assert!(metric(&text, "bunker_consecutive_failures{target=\"db\"}").unwrap() >= 1.0, "{text}");
    assert_eq!(metric(&text, "bunker_target_health{target=\"db\"}"), Some(2.0), "never succeeded: critical");
    assert_eq!(metric(&text, "bunker_health_level{target=\"db\"}"), Some(2.0), "{text}");
    // The [health] thresholds the shipped alerts compare against (the defaults here).
    assert_eq!(metric(&text, "bunker_health_warning_after_seconds{target=\"db\"}"), Some(26.0 * 3600.0), "{text}");
    assert_eq!(metric(&text, "bunker_health_wal_critical_after_seconds{target=\"cache\"}"), Some(3600.0), "{text}");

    let (status, body) = get(listen, "/healthz").unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = get(listen, "/status").unwrap();
    assert_eq!(status, 200);
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["level"], "critical");
    assert_eq!(report["targets"].as_array().unwrap().len(), 2);
    // The status job noticed db is critical and said so.
    hook.wait_for(Duration::from_secs(30), |r| r.text().contains("\"warning\"") && r.text().contains("critical"))
        .expect("a health notification for db");

    // One daemon per repository.
    let second = repo.cmd(&["--config", cfg.to_str().unwrap(), "daemon"]).output().unwrap();
    assert_eq!(second.status.code(), Some(11), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another bunker daemon"));

    // SIGHUP reloads: without the broken job, no more db runs are started.
    std::fs::write(&cfg, stack("[schedules.quick]\nrun = \"backup\"\ngroup = \"good\"\ncron = \"* * * * * *\"\n"))
        .unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGHUP) };
    let runs_of = |job: &str| -> usize {
        let runs = repo.json(&["--json", "history", "--operation", "schedule"]);
        runs.as_array().unwrap().iter().filter(|r| r["details"]["job"] == job).count()
    };
    std::thread::sleep(Duration::from_secs(3));
    let broken_runs = runs_of("broken");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(runs_of("broken"), broken_runs, "the reloaded config has no broken job");
    assert!(runs_of("quick") >= 2);

    // SIGTERM: a clean stop, exit 0, the lock released.
    let out = stop(daemon, libc::SIGTERM);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("reloaded"), "{stderr}");
    assert!(!stderr.contains("secret-token"), "the webhook's token leaked: {stderr}");
    let locks: Vec<_> = std::fs::read_dir(repo.path.join("locks")).unwrap().collect();
    assert!(locks.is_empty(), "locks left behind: {locks:?}");

    // Every run is in the catalog, whose records live in the repository.
    let backups = repo.json(&["--json", "history", "--operation", "backup"]);
    let backups = backups.as_array().unwrap();
    assert!(backups.iter().any(|r| r["target"] == "cache" && r["status"] == "success"));
    assert!(backups.iter().any(|r| r["target"] == "db" && r["status"] == "failed"));
}

#[test]
fn daemon_refuses_a_stack_file_without_schedules() {
    let repo = Repo::new();
    let cfg = repo.root.join("bunker.toml");
    std::fs::write(&cfg, format!("[repository]\nurl = \"{}\"\n", repo.path.display())).unwrap();
    let o = repo.cmd(&["--config", cfg.to_str().unwrap(), "daemon"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no [schedules]"));
}

/// A daemon keeps the catalog in memory and reads only what is new: runs another host records (its own
/// cache, folding the catalog under the daemon's feet) show up at the next refresh, each once.
#[test]
fn daemon_notices_records_another_host_wrote() {
    let repo = Repo::new();
    let listen = bunker_scratch::free_port().unwrap();
    let cfg = repo.root.join("bunker.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository]\nurl = \"{}\"\n\n[targets.app]\ntype = \"command\"\nbackup = \"printf app-data\"\n\
             restore = \"cat >/dev/null\"\n\n[schedules]\nstatus = \"0 0 4 1 1 *\"\n",
            repo.path.display()
        ),
    )
    .unwrap();
    let daemon = start_daemon(&repo, &cfg, listen);
    wait_until(Duration::from_secs(60), "the daemon's first refresh", || {
        let (_, text) = get(listen, "/metrics")?;
        metric(&text, "bunker_catalog_records")
    });

    // The other host: its own cache, and a writer that folds past two loose records.
    let other_cache = repo.root.join("other-host-cache");
    let backup = |n: usize| {
        for _ in 0..n {
            let out = repo
                .cmd(&["--config", cfg.to_str().unwrap(), "backup", "app"])
                .env("BUNKER_CACHE_DIR", &other_cache)
                .env("BUNKER_FOLD_AFTER", "2")
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    };
    backup(1);
    let first = wait_until(Duration::from_secs(30), "the other host's backup in /metrics", || {
        let (_, text) = get(listen, "/metrics")?;
        metric(&text, "bunker_last_success_timestamp_seconds{target=\"app\"}")
    });
    backup(4);
    let history = repo.json(&["history"]).as_array().unwrap().len();
    assert!(
        std::fs::read_dir(repo.path.join("catalog/runs")).map(|d| d.count()).unwrap_or(0) >= 1,
        "the other host folded the catalog"
    );
    let text = wait_until(Duration::from_secs(30), "every record, each once, in /metrics", || {
        let (_, text) = get(listen, "/metrics")?;
        let records = metric(&text, "bunker_catalog_records")?;
        let last = metric(&text, "bunker_last_success_timestamp_seconds{target=\"app\"}")?;
        (records as usize == history && last > first).then_some(text)
    });
    assert_eq!(
        metric(&text, "bunker_runs_total{target=\"app\",operation=\"backup\",status=\"success\"}"),
        Some(5.0),
        "{text}"
    );
    assert!(metric(&text, "bunker_daemon_refresh_cpu_seconds").is_some(), "{text}");
    let out = stop(daemon, libc::SIGTERM);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A write-only backup host (a recipients repository's password): the daemon's backup jobs run and
/// `/metrics` says the host's key cannot read the content back.
#[test]
fn a_write_only_hosts_daemon_backs_up_and_exports_its_protection() {
    let keys = tempfile::tempdir().unwrap();
    let key = age_key_in(keys.path(), "identity.txt");
    let repo = Repo::with_init_args(&["--recipient", &key.public]);
    let listen = bunker_scratch::free_port().unwrap();
    let cfg = repo.root.join("bunker.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository]\nurl = \"{}\"\n\n[targets.app]\ntype = \"command\"\nbackup = \"seq 1 5000\"\n\n\
             [schedules.often]\nrun = \"backup\"\ncron = \"* * * * * *\"\n",
            repo.path.display()
        ),
    )
    .unwrap();
    let daemon = start_daemon(&repo, &cfg, listen);
    let text = wait_until(Duration::from_secs(60), "a backup and the protection in /metrics", || {
        let (_, text) = get(listen, "/metrics")?;
        metric(&text, "bunker_last_success_timestamp_seconds{target=\"app\"}")?;
        metric(&text, "bunker_repository_write_only").filter(|v| *v == 1.0).map(|_| text)
    });
    assert_eq!(metric(&text, "bunker_repository_recipients"), Some(1.0), "{text}");
    let out = stop(daemon, libc::SIGTERM);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // What it wrote, only the identity reads.
    let dump = repo.cmd(&["dump", "app:latest"]).env("BUNKER_IDENTITY_FILE", &key.identity).output().unwrap();
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    assert!(dump.stdout.starts_with(b"1\n2\n3\n"));
    assert_eq!(repo.run(&["dump", "app:latest"]).status.code(), Some(12));
}
