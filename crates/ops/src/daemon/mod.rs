//! `bunker daemon`: runs the stack file's `[schedules]` for one repository.
//!
//! Each job runs as a child `bunker` process (backup, forget --prune, check, copy, drill), so a job is
//! exactly what a user would run by hand, records its own catalog runs, and cannot take the daemon down
//! with it; the daemon then records a `schedule` run (the job's name, its command and exit code), which
//! is what a restarted daemon reads to find a fire time it missed. Health evaluation (`status` jobs) and
//! metrics run in-process. One daemon per repository: it holds `locks/singleton-daemon` while it runs.
//!
//! Signals: SIGTERM or SIGINT stop the loop; a running job is passed one SIGTERM and given the time it
//! needs to stop cleanly (it records itself as interrupted), then the daemon records it and exits 0.
//! A second signal exits at once. SIGHUP reloads the stack file (a broken one is reported and the old
//! one kept).

pub mod metrics;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bunker_config::{Config, JobKind, Schedule};
use bunker_engine::catalog::RunRecord;
use bunker_engine::segment::RunLog;
use bunker_engine::Repository;
use chrono::{DateTime, Utc};

use crate::codes as exit;
use crate::details::{Details, ScheduleDetails};
use crate::health::Level;
use crate::runs::Run;
use crate::status::{judge, StatusReport, Stored};
use crate::{fail, Events, Result};
use plan::{random_jitter, Plan};

/// The catalog operation of the daemon's own record of each job it ran.
pub const OPERATION: &str = "schedule";
/// Set in a job's environment: the schedule's name (commands use it to leave pings to the daemon).
pub const JOB_ENV: &str = "BUNKER_DAEMON_JOB";
/// How long the loop sleeps between looks at the clock and the signals.
const TICK: Duration = Duration::from_millis(200);
/// How long the repository's size, as `status` shows it, may be reused between refreshes.
const STORED_MAX_AGE: Duration = Duration::from_secs(600);

/// What the loop publishes for the HTTP side to hand out (`/metrics`, `/status`, `/healthz`).
pub struct Published {
    pub metrics: String,
    pub status: Option<serde_json::Value>,
    /// The loop's last sign of life.
    pub heartbeat: Instant,
}

pub type Shared = Arc<RwLock<Published>>;

pub fn shared() -> Shared {
    Arc::new(RwLock::new(Published { metrics: String::new(), status: None, heartbeat: Instant::now() }))
}

/// What the loop runs with; the binary opens the repository, holds the daemon's singleton lock and
/// serves `published`.
pub struct Setup<'a> {
    pub repo: Repository,
    /// The password the jobs get (in their environment, never on a command line).
    pub password: String,
    pub config_path: PathBuf,
    pub config: Config,
    /// `--repo` as given, passed on to the jobs.
    pub repo_location: Option<String>,
    /// `--identity` as given (a recipients repository), passed on to the jobs as `BUNKER_IDENTITY_FILE`.
    pub identity: Option<PathBuf>,
    /// The `bunker` executable the jobs run.
    pub exe: PathBuf,
    /// How often metrics and status are refreshed between jobs.
    pub refresh: Duration,
    /// Run jobs whose fire time passed while the daemon was down.
    pub catch_up: bool,
    pub published: Shared,
    /// Set by SIGHUP: reload the stack file.
    pub hangup: Arc<AtomicBool>,
    pub events: &'a dyn Events,
}

/// Runs the schedules until interrupted.
pub fn run(setup: Setup<'_>) -> Result<()> {
    let mut config = setup.config.clone();
    let events = setup.events;
    let mut daemon = Daemon {
        repo_location: setup.repo_location,
        identity: setup.identity,
        repo: setup.repo,
        password: setup.password,
        config_path: setup.config_path,
        published: setup.published,
        health: BTreeMap::new(),
        exe: setup.exe,
        events,
        log: RunLog::default(),
        stored: None,
    };
    let hangup = setup.hangup;
    daemon.read_log();
    let mut plan =
        Plan::new(&config.schedules, Utc::now(), &last_started(daemon.log.runs()), setup.catch_up, &mut random_jitter);
    for job in &plan.jobs {
        let next = job.next.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or("never".into());
        events.progress(&format!(
            "{} ({}, \"{}\"): next run {next}",
            job.schedule.name,
            job.schedule.kind.as_str(),
            job.schedule.cron
        ));
    }
    daemon.refresh(&config, &plan);
    let mut refreshed = Instant::now();

    while !bunker_engine::interrupt::requested() {
        daemon.beat();
        if hangup.swap(false, Ordering::SeqCst) {
            match reload(&daemon.config_path) {
                Ok(new) => {
                    daemon.read_log();
                    plan = Plan::new(
                        &new.schedules,
                        Utc::now(),
                        &last_started(daemon.log.runs()),
                        false,
                        &mut random_jitter,
                    );
                    crate::notify::install(Some(&new));
                    config = new;
                    events.progress(&format!("reloaded {} ({} jobs)", daemon.config_path.display(), plan.jobs.len()));
                }
                Err(e) => events.progress(&format!("kept the running configuration: {e}")),
            }
        }
        let now = Utc::now();
        if let Some(i) = plan.due(now) {
            let schedule = plan.jobs[i].schedule.clone();
            let started = Utc::now();
            let code = daemon.run_job(&config, &schedule);
            plan.ran(i, started, Utc::now(), code, &mut random_jitter);
            daemon.refresh(&config, &plan);
            refreshed = Instant::now();
            continue;
        }
        if refreshed.elapsed() >= setup.refresh {
            daemon.refresh(&config, &plan);
            refreshed = Instant::now();
        }
        std::thread::sleep(TICK);
    }
    events.progress("stopped");
    Ok(())
}

fn reload(path: &std::path::Path) -> Result<Config> {
    Ok(Config::discover(Some(path))?.ok_or_else(|| fail("the stack file disappeared"))?.config)
}

/// A drill job's command line: the latest point, the stack file's `[drill]` targets (the command reads
/// them itself), and the HTML report where `[drill] report` says.
fn drill_command(config: &Config) -> Result<Vec<String>> {
    let mut args = vec!["drill".to_string()];
    if let Some(report) = &config.drill.report {
        let Some(path) = report.to_str() else {
            return Err(fail(format!(
                "[drill] report {} is no UTF-8 path; choose another file name",
                report.display()
            )));
        };
        args.extend(["--report".to_string(), path.to_string()]);
    }
    Ok(args)
}

/// Each job's last start, from the daemon's records in the catalog.
fn last_started(runs: &[RunRecord]) -> HashMap<String, DateTime<Utc>> {
    let mut out: HashMap<String, DateTime<Utc>> = HashMap::new();
    for r in runs.iter().filter(|r| r.operation == OPERATION) {
        if let Some(job) = crate::details::Details::schedule(r).map(|s| s.job) {
            let slot = out.entry(job).or_insert(r.started);
            *slot = (*slot).max(r.started);
        }
    }
    out
}

struct Daemon<'a> {
    repo_location: Option<String>,
    identity: Option<PathBuf>,
    repo: Repository,
    password: String,
    config_path: PathBuf,
    published: Shared,
    /// Each target's level at the last health evaluation: only changes are notified.
    health: BTreeMap<String, Level>,
    exe: PathBuf,
    events: &'a dyn Events,
    /// The catalog as last read: each refresh reads only what is new (records from jobs, other hosts).
    log: RunLog,
    /// What the repository holds and when it was listed: kept up to date from new backup records
    /// ([`Stored::after`]), listed again when another record may have changed it (forget, prune, copy,
    /// repair), and at least every [`STORED_MAX_AGE`] (archived WAL grows it without a run record).
    stored: Option<(Stored, Instant)>,
}

impl Daemon<'_> {
    /// Brings the run log up to date; whether it could (an unreadable repository keeps the last one).
    fn read_log(&mut self) -> bool {
        match self.log.refresh(&self.repo) {
            Ok(r) => {
                if r.changed {
                    let (added, removed) = self.log.last_change();
                    self.stored = match self.stored.take() {
                        Some((s, at)) if !removed => s.after(&added).map(|s| (s, at)),
                        _ => None,
                    };
                }
                true
            }
            Err(e) => {
                tracing::warn!("could not read the catalog: {e}");
                false
            }
        }
    }

    fn beat(&self) {
        if let Ok(mut p) = self.published.write() {
            p.heartbeat = Instant::now();
        }
    }

    /// Re-reads what is new in the catalog and publishes metrics and status. A repository that cannot
    /// be read leaves the last published values and is logged. The refresh's CPU time is published too
    /// (`bunker_daemon_refresh_cpu_seconds`): it stays small however long the history grows.
    fn refresh(&mut self, config: &Config, plan: &Plan) -> Option<StatusReport> {
        let cpu = metrics::process_cpu_seconds();
        if !self.read_log() {
            return None;
        }
        let report = match self.status(config) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("could not judge health to refresh the metrics: {e}");
                None
            }
        };
        let mut text = metrics::render(report.as_ref(), self.log.runs(), &plan.jobs);
        let spent = metrics::process_cpu_seconds() - cpu;
        text.push_str(&metrics::render_refresh(spent, self.log.runs().len()));
        if let Ok(mut p) = self.published.write() {
            p.metrics = text;
            if let Some(r) = &report {
                p.status = serde_json::to_value(r).ok();
            }
            p.heartbeat = Instant::now();
        }
        report
    }

    /// The health report from the run log as read last (the repository is listed only when it changed).
    fn status(&mut self, config: &Config) -> Result<StatusReport> {
        let stored = match self.stored {
            Some((s, at)) if at.elapsed() < STORED_MAX_AGE => s,
            _ => self.stored.insert((Stored::of(&self.repo)?, Instant::now())).0,
        };
        judge(Some(config), &self.repo, self.log.runs(), Utc::now(), stored)
    }

    /// Runs one job; returns its exit code.
    fn run_job(&mut self, config: &Config, schedule: &Schedule) -> i32 {
        self.events.progress(&format!("running {} ({})", schedule.name, schedule.kind.as_str()));
        if schedule.kind == JobKind::Status {
            return self.evaluate_health(config);
        }
        crate::notify::ping_start(&schedule.name);
        let mut record = Run::start(OPERATION);
        let check_part = (schedule.kind == JobKind::Check).then(|| self.next_check_part(schedule));
        let mut details = ScheduleDetails {
            job: schedule.name.clone(),
            kind: schedule.kind.as_str().to_string(),
            check_part,
            ..Default::default()
        };
        let commands = match self.commands(config, schedule, check_part) {
            Ok(c) => c,
            Err(e) => {
                let code = exit::FAILURE;
                self.events.progress(&format!("{} failed: {e}", schedule.name));
                details.exit_code = Some(code);
                record.details(&Details::Schedule(details));
                record.record(&self.repo, exit::run_status(code), Some(e.to_string()), self.events);
                crate::notify::ping_finish(&schedule.name, code);
                return code;
            }
        };
        let mut worst = exit::OK;
        let mut ran = Vec::new();
        for args in commands {
            ran.push(args.join(" "));
            let code = self.run_child(&schedule.name, &args);
            worst = exit::worse(worst, code);
            if code == exit::INTERRUPTED || bunker_engine::interrupt::requested() {
                worst = exit::INTERRUPTED;
                break;
            }
        }
        details.commands = ran;
        details.exit_code = Some(worst);
        record.details(&Details::Schedule(details));
        if worst != exit::OK {
            record.problem(format!("{} exited with code {worst}", schedule.name));
        }
        record.record(&self.repo, exit::run_status(worst), None, self.events);
        crate::notify::ping_finish(&schedule.name, worst);
        self.events.progress(&format!("{} ended with exit code {worst}", schedule.name));
        worst
    }

    /// The `bunker` command lines a job runs, in order.
    fn commands(&self, config: &Config, schedule: &Schedule, check_part: Option<u32>) -> Result<Vec<Vec<String>>> {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Ok(match schedule.kind {
            JobKind::Backup => {
                let mut commands = match &schedule.group {
                    Some(group) => vec![owned(&["backup", "--group", group])],
                    None => vec![owned(&["backup", "--all"])],
                };
                // Under S3 Object Lock, what the new snapshots reuse of old packs stays locked ahead.
                if self.repo.config().object_lock.is_some() {
                    commands.push(owned(&["object-lock", "extend"]));
                }
                commands
            }
            JobKind::Forget => vec![owned(&["--retry-lock", "30m", "forget", "--prune"])],
            JobKind::Check => {
                let part = check_part.unwrap_or(1);
                vec![owned(&["check", "--read-data-subset", &format!("{part}/{}", schedule.parts)])]
            }
            JobKind::Copy => {
                let names: Vec<String> = match &schedule.to {
                    Some(to) => vec![to.clone()],
                    None => config.secondaries.iter().map(|(n, _)| n.clone()).collect(),
                };
                if names.is_empty() {
                    return Err(fail(format!(
                        "copy job {}: the stack file has no [repositories.NAME] to copy to",
                        schedule.name
                    )));
                }
                names.iter().map(|n| owned(&["copy", "--to", n])).collect()
            }
            JobKind::Drill => vec![drill_command(config)?],
            JobKind::Status => Vec::new(),
        })
    }

    /// The rotating data check moves on by one part from the part its last run read.
    fn next_check_part(&mut self, schedule: &Schedule) -> u32 {
        self.read_log();
        let last = self
            .log
            .of_operation(OPERATION)
            .filter_map(|r| Some((r.started, Details::schedule(r)?)))
            .filter(|(_, s)| s.job == schedule.name)
            .max_by_key(|(started, _)| *started)
            .and_then(|(_, s)| s.check_part());
        match last {
            Some(n) => n % schedule.parts + 1,
            None => 1,
        }
    }

    /// Runs `bunker ARGS` as a job's child, in its own process group (a terminal's Ctrl-C reaches only
    /// the daemon, which passes on one SIGTERM), and waits for it while keeping the heartbeat.
    fn run_child(&self, job: &str, args: &[String]) -> i32 {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(&self.exe);
        command.arg("--config").arg(&self.config_path);
        if let Some(repo) = &self.repo_location {
            command.env("BUNKER_REPO", repo);
        }
        if let Some(identity) = &self.identity {
            command.env("BUNKER_IDENTITY_FILE", identity);
        }
        command.args(args).env("BUNKER_PASSWORD", &self.password).env(JOB_ENV, job).process_group(0);
        let mut child: Child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.events.progress(&format!("cannot start {}: {e}", self.exe.display()));
                return exit::FAILURE;
            }
        };
        let mut forwarded = false;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    use std::os::unix::process::ExitStatusExt;
                    return status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                }
                Ok(None) => {}
                Err(e) => {
                    self.events.progress(&format!("lost track of job {job}: {e}"));
                    return exit::FAILURE;
                }
            }
            if bunker_engine::interrupt::requested() && !forwarded {
                self.events.progress(&format!("asking job {job} to stop"));
                // SAFETY: sending a signal to our own child's PID has no memory effects.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                forwarded = true;
            }
            self.beat();
            std::thread::sleep(TICK);
        }
    }

    /// A `status` job: judge every target and notify the ones whose level changed.
    fn evaluate_health(&mut self, config: &Config) -> i32 {
        if !self.read_log() {
            self.events.progress("cannot read the catalog to judge health");
            return exit::FAILURE;
        }
        let report = match self.status(config) {
            Ok(r) => r,
            Err(e) => {
                self.events.progress(&format!("cannot judge health: {e}"));
                return exit::FAILURE;
            }
        };
        for t in &report.targets {
            let before = self.health.insert(t.target.clone(), t.level).unwrap_or(Level::Ok);
            if before != t.level {
                let level = format!("{:?}", t.level).to_lowercase();
                crate::notify::health_changed(&t.target, &level, &t.reasons.join("; "));
            }
        }
        report.level.exit_code()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(text: &str) -> Config {
        Config::parse_with_env(text, Path::new("/etc/bunker/bunker.toml"), &|_| None).unwrap()
    }

    #[test]
    fn drill_jobs_run_bunker_drill_with_the_configured_report() {
        let plain = config("[schedules]\ndrill = \"0 4 * * 0\"\n");
        assert_eq!(plain.schedules[0].kind, JobKind::Drill);
        assert_eq!(drill_command(&plain).unwrap(), ["drill"]);
        let reported = config("[schedules]\ndrill = \"0 4 * * 0\"\n\n[drill]\nreport = \"reports/drill.html\"\n");
        assert_eq!(drill_command(&reported).unwrap(), ["drill", "--report", "/etc/bunker/reports/drill.html"]);
    }
}
