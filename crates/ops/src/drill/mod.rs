//! Drills: restore a recovery point (or each target's newest snapshot) into scratch servers and
//! directories on this host, verify it against what the backup recorded, run the smoke tests against
//! the restored stack, measure RTO and RPO, and record the result in the catalog.
//!
//! The flow: choose what to drill ([`choose`]) → one thread per target: its kind provisions, restores
//! and verifies (`bunker_sources::Kind::drill`) → the smoke tests ([`smoke_tests`]: the stack's
//! `[drill] after_restore`, each group's, and a target's own `after_restore` where it opts in), each with
//! the scratch endpoints of the targets it concerns → judge against the objectives ([`record`]) → record
//! → tear down unless kept. A drill never writes to a production server or bucket.

pub mod html;
pub mod record;

use std::collections::BTreeMap;

use bunker_config::Config;
use bunker_engine::catalog::{RunRecord, RunStatus};
use bunker_engine::{Repository, Snapshot};
use bunker_sources::drill::{DrillJob, DrillOutcome, Scratch};

use crate::hooks::{self, HookEnv, Phase};
use crate::lock::{read_lock, LockPolicy};
use crate::points::{self, target_of};
use crate::runs::Run;
use crate::{fail, Events, Result};
use record::{DrillRecord, HookResult, TargetDrill};

/// What to drill.
#[derive(Debug, Clone, Default)]
pub struct DrillRequest {
    /// `--point`: `latest` or an ID. `None`: the newest point, or with `targets`/`group` each target's
    /// newest complete snapshot.
    pub point: Option<String>,
    /// `--targets`: only these.
    pub targets: Vec<String>,
    /// `--group`: the group's targets, and only the group's smoke tests.
    pub group: Option<String>,
    /// Leave the scratch resources in place.
    pub keep: bool,
}

/// What is drilled: the point and each target's snapshots.
#[derive(Debug)]
pub struct Chosen<'a> {
    pub point: Option<String>,
    /// When the point started (or the oldest snapshot drilled was taken).
    pub time: chrono::DateTime<chrono::Utc>,
    /// Physical PostgreSQL recovers to here: the point's end; `None`: to the end of the archive.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub targets: BTreeMap<String, Vec<&'a Snapshot>>,
}

/// Everything one drill provisioned; dropped, it is torn down newest first (a server before the
/// directory it runs in).
#[derive(Default)]
pub struct Teardown(Vec<Box<dyn Scratch>>);

impl Drop for Teardown {
    fn drop(&mut self) {
        while let Some(s) = self.0.pop() {
            drop(s);
        }
    }
}

/// A drill as recorded, and what it provisioned (torn down when dropped).
pub struct Drilled {
    pub record: DrillRecord,
    pub run: RunRecord,
    pub teardown: Teardown,
}

/// Runs a drill and records it in the catalog (also when it fails before it could judge).
pub fn run(
    config: Option<&Config>,
    repo: &Repository,
    lock: LockPolicy,
    request: &DrillRequest,
    events: &dyn Events,
) -> Result<Drilled> {
    let mut run = Run::start("drill");
    // What the drill reads must not be pruned away under it; a read-only repository drills without one.
    let outcome = read_lock(repo, lock, "drill").and_then(|_lock| drill(config, repo, request, events));
    match outcome {
        Ok((record, teardown)) => {
            if let Some(p) = &record.point {
                run.detail("point", p.clone().into());
            }
            run.detail_all(serde_json::to_value(&record).expect("record serialises"));
            run.bytes(record.bytes_restored, 0);
            let status = if bunker_engine::interrupt::requested() {
                RunStatus::Interrupted
            } else if record.passed {
                RunStatus::Success
            } else {
                RunStatus::Failed
            };
            let error = (!record.passed).then(|| format!("drill failed: {}", record.problems.join("; ")));
            let recorded = run.record(repo, status, error, events);
            Ok(Drilled { record, run: recorded, teardown })
        }
        Err(e) => {
            run.record(repo, crate::runs::status_of(&e), Some(e.to_string()), events);
            Err(e)
        }
    }
}

fn drill(
    config: Option<&Config>,
    repo: &Repository,
    request: &DrillRequest,
    events: &dyn Events,
) -> Result<(DrillRecord, Teardown)> {
    if !repo.reads_content() {
        // A write-only host: refuse before any scratch server is started.
        let what = "the snapshots a drill restores".to_string();
        return Err(bunker_engine::Error::NeedsIdentity { what }.into());
    }
    let started = chrono::Utc::now();
    let clock = std::time::Instant::now();
    let snapshots = repo.load_snapshots()?;
    let runs = repo.load_runs()?;
    let (wanted, by_target) = scope(config, request)?;
    let chosen = choose(request.point.as_deref(), &wanted, by_target, &snapshots, &runs)?;
    let drill_id = format!("drill-{}-{:04x}", started.format("%Y%m%dT%H%M%SZ"), std::process::id() & 0xffff);
    let (index, _) = repo.load_index()?;
    let scratch_s3 = config.and_then(|c| c.drill.scratch_s3.clone());
    events.progress(&format!(
        "drilling {} ({}) into scratch instances: {}",
        chosen.point.as_deref().map(|p| format!("recovery point {p}")).unwrap_or("the newest snapshots".into()),
        chosen.time.format("%Y-%m-%d %H:%M:%S UTC"),
        chosen.targets.keys().cloned().collect::<Vec<_>>().join(", ")
    ));
    // Independent targets in parallel, each on its own thread.
    let results: Vec<(TargetDrill, Vec<Box<dyn Scratch>>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = chosen
            .targets
            .iter()
            .map(|(name, snaps)| {
                let (index, scratch_s3, drill_id) = (&index, scratch_s3.as_deref(), drill_id.as_str());
                let target = config.and_then(|c| c.target(name));
                scope.spawn(move || {
                    let job = DrillJob {
                        repo,
                        index,
                        name,
                        snapshots: snaps,
                        config: target,
                        recover_until: chosen.until,
                        scratch_s3,
                        drill_id,
                    };
                    drill_target(&job, started, events)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("target drill thread")).collect()
    });
    let rto = clock.elapsed().as_secs_f64();
    let mut teardown = Teardown::default();
    let mut targets = Vec::new();
    for (t, mut scratch) in results {
        targets.push(t);
        teardown.0.append(&mut scratch);
    }
    let mut record = DrillRecord {
        point: chosen.point.clone(),
        point_time: chosen.time,
        rto_seconds: rto,
        rto_objective_seconds: config.and_then(|c| c.drill.rto_objective).map(|d| d.as_secs_f64()),
        rpo_seconds: targets.iter().map(|t| t.rpo_seconds).fold(0.0, f64::max),
        rpo_objective_seconds: config.and_then(|c| c.drill.rpo_objective).map(|d| d.as_secs_f64()),
        bytes_restored: targets.iter().map(|t| t.bytes).sum(),
        targets,
        ..Default::default()
    };
    bunker_engine::interrupt::check()?;
    if let Some(c) = config {
        record.hooks = smoke_tests(c, request.group.as_deref(), &record)
            .into_iter()
            .map(|test| test.run(&record, events))
            .collect();
    }
    record.judge();
    if request.keep {
        record.kept = std::mem::take(&mut teardown.0).into_iter().map(|s| s.keep()).collect();
    }
    Ok((record, teardown))
}

/// One target: its kind provisions, restores and verifies; timings and checks go into its record.
fn drill_target(
    job: &DrillJob<'_>,
    started: chrono::DateTime<chrono::Utc>,
    events: &dyn Events,
) -> (TargetDrill, Vec<Box<dyn Scratch>>) {
    let clock = std::time::Instant::now();
    let mut out = DrillOutcome::default();
    let result = job.main().and_then(|main| {
        out.kind = main.kind.clone();
        bunker_sources::kind_of_snapshot(main).drill(job, &mut out)
    });
    let rto = clock.elapsed().as_secs_f64();
    let t = TargetDrill {
        target: job.name.to_string(),
        kind: out.kind,
        snapshots: job.snapshots.iter().map(|s| s.id().to_hex()).collect(),
        restored_into: out.restored_into,
        rto_seconds: rto,
        provision_seconds: out.provision_seconds,
        restore_seconds: out.restore_seconds,
        verify_seconds: out.verify_seconds,
        bytes: out.bytes,
        throughput_bytes_per_second: if out.restore_seconds > 0.0 {
            out.bytes as f64 / out.restore_seconds
        } else {
            0.0
        },
        rto_objective_seconds: job.config.and_then(|c| c.objectives.rto).map(|d| d.as_secs_f64()),
        rpo_seconds: age(started, job.snapshots.iter().map(|s| s.time).min()),
        rpo_objective_seconds: job.config.and_then(|c| c.objectives.rpo).map(|d| d.as_secs_f64()),
        live_rpo_seconds: out.live_rpo_seconds,
        checks: out.checks,
        error: result.err().map(|e| e.to_string()),
        passed: false,
    };
    let verdict = if t.error.is_none() && t.checks.iter().all(|c| c.passed) { "ok" } else { "FAILED" };
    events.progress(&format!("{} {verdict}: restored and verified in {}", t.target, record::secs(t.rto_seconds)));
    (t, out.scratch)
}

/// The targets a drill is limited to (`--targets`, `--group`, `[drill] targets`; empty: all), and
/// whether that choice asks for each target's newest snapshot rather than a point.
fn scope(config: Option<&Config>, request: &DrillRequest) -> Result<(Vec<String>, bool)> {
    if let Some(group) = &request.group {
        let Some(c) = config else { return Err(fail("drill --group needs the stack file that defines the group")) };
        let Some(g) = c.group(group) else {
            let known: Vec<&str> = c.groups.iter().map(|g| g.name.as_str()).collect();
            return Err(fail(format!(
                "the stack file has no group {group:?} (its groups: {}); define it under [groups]",
                if known.is_empty() { "none".into() } else { known.join(", ") }
            )));
        };
        let mut targets = g.targets.clone();
        if !request.targets.is_empty() {
            targets.retain(|t| request.targets.contains(t));
        }
        return Ok((targets, true));
    }
    if !request.targets.is_empty() {
        return Ok((request.targets.clone(), true));
    }
    Ok((config.map(|c| c.drill.targets.clone()).unwrap_or_default(), false))
}

/// What to drill. An explicit point (`latest` or an ID) is that point, limited to `wanted`. Without
/// one: when the targets were chosen (`--targets`, `--group`), each one's newest complete snapshot (so
/// the newest backup is what is tested, and the RPO is its age); otherwise the newest point, and
/// without any point the newest complete snapshot of every name.
pub fn choose<'a>(
    point: Option<&str>,
    wanted: &[String],
    newest_per_target: bool,
    snapshots: &'a [Snapshot],
    runs: &[RunRecord],
) -> Result<Chosen<'a>> {
    let use_point = match point {
        Some(p) => Some(p),
        None if newest_per_target || !points::any(runs) => None,
        None => Some("latest"),
    };
    let mut chosen = match use_point {
        Some(p) => {
            let found = points::find(p, runs, snapshots).map_err(|e| match p {
                "latest" => fail(format!("{e}; drill another with --point ID")),
                _ => e,
            })?;
            Chosen {
                point: Some(found.point.clone()),
                time: found.time,
                until: Some(found.ended),
                targets: by_target(found.snapshots.clone()),
            }
        }
        None => {
            let mut newest: BTreeMap<&str, &Snapshot> = BTreeMap::new();
            for s in snapshots.iter().filter(|s| s.warnings.is_empty()) {
                if !wanted.is_empty() && !wanted.iter().any(|w| w == target_of(&s.name)) {
                    continue;
                }
                if newest.get(s.name.as_str()).is_none_or(|n| n.time < s.time) {
                    newest.insert(&s.name, s);
                }
            }
            if newest.is_empty() && wanted.is_empty() {
                return Err(fail(
                    "the repository holds no complete snapshot to drill: back the stack up first (`bunker backup --all`)",
                ));
            }
            let time = newest.values().map(|s| s.time).min().unwrap_or_else(chrono::Utc::now);
            Chosen { point: None, time, until: None, targets: by_target(newest.into_values().collect()) }
        }
    };
    if !wanted.is_empty() {
        if let Some(missing) = wanted.iter().find(|t| !chosen.targets.contains_key(*t)) {
            return Err(fail(format!(
                "{} has no complete snapshot of {missing:?} (it holds: {}); check --targets, --group or [drill] targets",
                chosen.point.as_deref().map(|p| format!("recovery point {p}")).unwrap_or("the repository".into()),
                chosen.targets.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        chosen.targets.retain(|t, _| wanted.contains(t));
        if use_point.is_none() {
            chosen.time = chosen.targets.values().flatten().map(|s| s.time).min().unwrap_or(chosen.time);
        }
    }
    Ok(chosen)
}

fn by_target(members: Vec<&Snapshot>) -> BTreeMap<String, Vec<&Snapshot>> {
    let mut map: BTreeMap<String, Vec<&Snapshot>> = BTreeMap::new();
    for s in members {
        map.entry(target_of(&s.name).to_string()).or_default().push(s);
    }
    map
}

fn age(now: chrono::DateTime<chrono::Utc>, then: Option<chrono::DateTime<chrono::Utc>>) -> f64 {
    then.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0).unwrap_or(0.0)
}

/// A smoke test to run after the targets are restored: whose it is, the targets whose scratch
/// endpoints it sees, and whether it may run.
#[derive(Debug, Clone, PartialEq)]
pub struct SmokeTest {
    pub command: String,
    /// `drill`, `group NAME` or `target NAME`.
    pub scope: String,
    pub targets: Vec<String>,
    pub timeout: std::time::Duration,
    /// `None`: runs; `Some(why)`: listed as not run.
    pub skipped: Option<String>,
}

/// The smoke tests of a drill of `record`'s targets: the stack's `[drill] after_restore` (unless only a
/// group is drilled), each group's whose targets were all drilled, and each drilled target's own
/// `after_restore` where it opts in with `drill_after_restore = true` (else listed as not run: it may
/// act on production).
pub fn smoke_tests(config: &Config, group: Option<&str>, record: &DrillRecord) -> Vec<SmokeTest> {
    let drilled: Vec<String> = record.targets.iter().map(|t| t.target.clone()).collect();
    let mut out = Vec::new();
    if group.is_none() {
        for command in &config.drill.after_restore {
            out.push(SmokeTest {
                command: command.clone(),
                scope: "drill".into(),
                targets: drilled.clone(),
                timeout: config.drill.hook_timeout,
                skipped: None,
            });
        }
    }
    for g in &config.groups {
        if group.is_some_and(|only| only != g.name) || !g.targets.iter().all(|t| drilled.contains(t)) {
            continue;
        }
        for command in &g.after_restore {
            out.push(SmokeTest {
                command: command.clone(),
                scope: format!("group {}", g.name),
                targets: g.targets.clone(),
                timeout: config.drill.hook_timeout,
                skipped: None,
            });
        }
    }
    for name in &drilled {
        let Some(t) = config.target(name) else { continue };
        let Some(command) = &t.hooks.after_restore else { continue };
        out.push(SmokeTest {
            command: command.clone(),
            scope: format!("target {name}"),
            targets: vec![name.clone()],
            timeout: t.hooks.timeout,
            skipped: (!t.hooks.drill_after_restore)
                .then(|| "not run in drills: it may act on production; set drill_after_restore = true to run it against the scratch copy".into()),
        });
    }
    out
}

impl SmokeTest {
    /// The environment it runs with: `BUNKER_DRILL=1`, the point, and the scratch endpoint of each of its
    /// targets (`BUNKER_DRILL_TARGET_<NAME>`, and the first of each kind in its kind's variable:
    /// `BUNKER_DRILL_PG_URL` ending in `/`, `BUNKER_DRILL_REDIS_URL`, `BUNKER_DRILL_S3`,
    /// `BUNKER_DRILL_FILES_DIR`).
    pub fn environment(&self, record: &DrillRecord) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("BUNKER_DRILL".into(), "1".into()),
            ("BUNKER_DRILL_POINT".into(), record.point.clone().unwrap_or_default()),
            ("BUNKER_DRILL_POINT_TIME".into(), record.point_time.to_rfc3339()),
        ];
        for t in record.targets.iter().filter(|t| self.targets.contains(&t.target)) {
            let upper: String = t
                .target
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
                .collect();
            env.push((format!("BUNKER_DRILL_TARGET_{upper}"), t.restored_into.clone()));
            let Some(var) = variable_of(&t.kind, &t.restored_into) else { continue };
            if !env.iter().any(|(k, _)| k == var) {
                env.push((var.to_string(), t.restored_into.clone()));
            }
        }
        env
    }

    fn run(&self, record: &DrillRecord, events: &dyn Events) -> HookResult {
        let shown = shown_command(&self.command);
        if let Some(why) = &self.skipped {
            return HookResult {
                command: shown,
                scope: self.scope.clone(),
                ran: false,
                passed: false,
                seconds: 0.0,
                detail: why.clone(),
            };
        }
        let started = std::time::Instant::now();
        let target = self.scope.strip_prefix("target ").unwrap_or("drill");
        let env = HookEnv { target, snapshot: None, status: Some("success"), extra: self.environment(record) };
        let outcome = hooks::run_command(&self.command, self.timeout, Phase::AfterRestore, &env, events);
        HookResult {
            command: shown,
            scope: self.scope.clone(),
            ran: true,
            passed: outcome.is_ok(),
            seconds: started.elapsed().as_secs_f64(),
            detail: match outcome {
                Ok(()) => "exit 0".into(),
                Err(e) => e.to_string(),
            },
        }
    }
}

/// The smoke-test variable of a drilled snapshot kind (a files tree's only when it is a directory).
fn variable_of(snapshot_kind: &str, restored_into: &str) -> Option<&'static str> {
    let kind = bunker_sources::KINDS.iter().find(|k| k.snapshot_kinds().contains(&snapshot_kind))?;
    let var = kind.smoke_variable()?;
    if var == "BUNKER_DRILL_FILES_DIR" && !std::path::Path::new(restored_into).is_dir() {
        return None;
    }
    Some(var)
}

/// A smoke test as the record shows it: its program only. The command line went through `${VAR}`
/// interpolation and may carry a token; the record is kept in the catalog and shown in reports.
fn shown_command(command: &str) -> String {
    let mut words = command.split_whitespace();
    let program = words.next().unwrap_or_default();
    if words.next().is_some() {
        format!("{program} …")
    } else {
        program.to_string()
    }
}

/// Writes the HTML report of the newest drill of the catalog, with its history.
pub fn write_report(repo: &Repository, path: &std::path::Path) -> Result<()> {
    let drills = record::drills(&repo.load_runs()?);
    let Some(newest) = drills.last() else { return Err(fail("the drill was not recorded; no report written")) };
    std::fs::write(path, html::render(newest, &drills))
        .map_err(|e| fail(format!("cannot write the report {}: {e}", path.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests;
