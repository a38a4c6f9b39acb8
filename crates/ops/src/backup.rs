//! Backing up: a target's snapshots (each its own catalog run) between its `before_backup` and
//! `after_backup` hooks, and a recovery point (`--all`, `--group`): every target in turn, each snapshot
//! tagged `point:ID`, with a `point` run listing what it meant to take, took and missed. A target that
//! fails does not stop the others; the exit code is the worst (see [`crate::codes::worse`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bunker_config::{Config, Hooks};
use bunker_engine::backup::{Backup, SnapshotDraft};
use bunker_engine::catalog::RunStatus;
use bunker_engine::lock::LockGuard;
use bunker_engine::{Repository, Snapshot};
use bunker_sources::Planned;

use crate::codes;
use crate::details::{Details, PointDetails};
use crate::hooks::{self, HookEnv, Phase};
use crate::points::{new_point_id, targets_of, TAG_PREFIX};
use crate::runs::Run;
use crate::{fail, Events, Result};

/// What a target's backup saved, and the exit code it makes (3 when something could not be read or the
/// after hook failed; a failed snapshot's code when one of several failed).
#[derive(Debug)]
pub struct TargetBackup {
    pub saved: Vec<Snapshot>,
    pub code: i32,
}

/// A target of the stack file: its sources, its hooks.
pub fn back_up_target(
    config: &Config,
    origin: &std::path::Path,
    repo: &Repository,
    lock: &LockGuard,
    name: &str,
    tags: &[String],
    events: &dyn Events,
) -> Result<TargetBackup> {
    let planned = match config.target(name) {
        Some(target) => bunker_sources::plan_target(target).map_err(Into::into),
        None => {
            let known: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
            Err(fail(format!("{} has no target {name:?}; its targets: {}", origin.display(), known.join(", "))))
        }
    };
    let hooks = config.target(name).map(|t| &t.hooks);
    back_up_planned(repo, lock, name, planned, hooks, tags, events)
}

/// Snapshots planned for `name` (a target's, or standard input / paths), between `hooks`. A plan that
/// failed is recorded as a failed backup run.
pub fn back_up_planned(
    repo: &Repository,
    lock: &LockGuard,
    name: &str,
    planned: Result<Vec<Planned>>,
    hooks: Option<&Hooks>,
    tags: &[String],
    events: &dyn Events,
) -> Result<TargetBackup> {
    let plans = match planned {
        Ok(p) => p,
        Err(e) => {
            let mut run = Run::start("backup");
            run.target(name);
            run.record(repo, crate::runs::status_of(&e), Some(e.to_string()), events);
            return Err(e);
        }
    };
    let before = HookEnv { target: name, snapshot: None, status: None, extra: Vec::new() };
    if let Some(h) = hooks {
        if let Err(e) = hooks::run(h, Phase::BeforeBackup, &before, events) {
            let mut run = Run::start("backup");
            run.target(name);
            run.record(repo, crate::runs::status_of(&e), Some(e.to_string()), events);
            // Its after hook still runs, to undo what the before hook may have half done.
            after_hook(repo, hooks, name, "failed", "", events);
            return Err(e);
        }
    }
    // Each snapshot is its own run: one database failing does not stop the others of the target.
    let several = plans.len() > 1;
    let parents = Parents::default();
    let mut saved = Vec::new();
    let mut failures = Vec::new();
    for planned in plans {
        let mut run = Run::start("backup");
        run.target(&planned.snapshot_name);
        let snapshot_name = planned.snapshot_name.clone();
        let outcome = back_up(repo, lock, planned, tags, &parents, &mut run, events);
        match &outcome {
            Ok(s) => {
                let status = if s.warnings.is_empty() { RunStatus::Success } else { RunStatus::Warning };
                run.record(repo, status, None, events);
            }
            Err(e) => {
                run.record(repo, crate::runs::status_of(e), Some(e.to_string()), events);
            }
        }
        match outcome {
            Ok(snap) => saved.push(snap),
            Err(e) if !several => {
                after_hook(repo, hooks, &snapshot_name, "failed", "", events);
                return Err(e);
            }
            Err(e) => {
                events.progress(&format!("error: backup of {snapshot_name} failed: {e}"));
                failures.push(codes::of(&e));
                if codes::of(&e) == codes::INTERRUPTED {
                    break;
                }
            }
        }
    }
    let ids: Vec<String> = saved.iter().map(|s| s.id().to_hex()).collect();
    let status = if failures.is_empty() { "success" } else { "failed" };
    let after_ok = after_hook(repo, hooks, name, status, &ids.join(" "), events);
    if let Some(code) = failures.iter().find(|c| **c == codes::INTERRUPTED).or(failures.first()) {
        return Ok(TargetBackup { saved, code: *code });
    }
    let incomplete = !after_ok || saved.iter().any(|s| !s.warnings.is_empty());
    Ok(TargetBackup { saved, code: if incomplete { codes::INCOMPLETE } else { codes::OK } })
}

/// Runs the after_backup hook; a failure is reported and recorded (as a run of operation `hook`), and
/// turns the backup's exit code into a warning. Returns whether it succeeded (or there was none).
fn after_hook(
    repo: &Repository,
    hooks: Option<&Hooks>,
    target: &str,
    status: &str,
    snapshots: &str,
    events: &dyn Events,
) -> bool {
    let Some(h) = hooks else { return true };
    let env = HookEnv { target, snapshot: Some(snapshots), status: Some(status), extra: Vec::new() };
    match hooks::run(h, Phase::AfterBackup, &env, events) {
        Ok(_) => true,
        Err(e) => {
            events.progress(&format!("warning: {e}"));
            let mut run = Run::start("hook");
            run.target(target);
            run.details(&crate::details::Details::Hook(crate::details::HookDetails { phase: "after_backup".into() }));
            run.record(repo, RunStatus::Failed, Some(e.to_string()), events);
            false
        }
    }
}

/// The parents of the snapshots one target's backup writes: each name's newest snapshot.
///
/// The catalog says which it is (the newest successful backup record of the name names its snapshot),
/// and one request confirms that snapshot is still there, so a backup's fixed cost does not grow with
/// the number of snapshots. A name the catalog does not know that way (a repository older than its
/// records, snapshots only copied in, a record of a forgotten snapshot) falls back to listing them all.
#[derive(Default)]
struct Parents {
    /// Per snapshot name, the snapshot its newest successful backup record names; `None` when the
    /// catalog could not be read.
    recorded: std::sync::OnceLock<Option<std::collections::HashMap<String, bunker_engine::FileId>>>,
}

impl Parents {
    fn of(&self, repo: &Repository, name: &str) -> Result<Option<bunker_engine::FileId>> {
        // A damaged catalog file is warned about, not made this backup's problem (a backup did not read
        // the catalog before it looked up parents there); a damaged snapshot in the fallback listing
        // still is, as it always was.
        let recorded = self.recorded.get_or_init(|| match repo.with_own_damage_log().load_runs() {
            Ok(runs) => Some(
                runs.into_iter()
                    .filter(|r| r.operation == "backup" && matches!(r.status, RunStatus::Success | RunStatus::Warning))
                    .filter_map(|r| Some((r.target?, bunker_engine::FileId::from_hex(r.snapshot.as_deref()?).ok()?)))
                    // Oldest first: the newest record of a name wins.
                    .collect(),
            ),
            Err(e) => {
                tracing::debug!("finding parents by listing snapshots: the catalog did not read ({e})");
                None
            }
        });
        if let Some(id) = recorded.as_ref().and_then(|m| m.get(name)) {
            match repo.has_file(bunker_engine::repository::FileKind::Snapshot, id) {
                Ok(true) => return Ok(Some(*id)),
                Ok(false) => {}
                Err(e) => tracing::debug!("finding the parent of {name} by listing: {e}"),
            }
        }
        Ok(repo.load_snapshots()?.into_iter().filter(|s| s.name == name).max_by_key(|s| s.time).and_then(|s| s.id))
    }
}

/// One planned snapshot: read its source into the repository (its parent is the name's newest
/// snapshot), commit it. Bytes read so far go to [`Events::meter`] while it runs.
fn back_up(
    repo: &Repository,
    lock: &LockGuard,
    planned: Planned,
    tags: &[String],
    parents: &Parents,
    run: &mut Run,
    events: &dyn Events,
) -> Result<Snapshot> {
    let Planned { snapshot_name, mut source } = planned;
    let (index, _) = repo.load_index()?;
    let parent = parents.of(repo, &snapshot_name)?;
    let backup = Backup::start(repo, lock, Arc::new(index));
    let meter = events.meter(&format!("backing up {snapshot_name}"));
    let done = AtomicBool::new(false);
    let captured = std::thread::scope(|scope| {
        if let Some(meter) = &meter {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    meter(backup.bytes_read());
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            });
        }
        let r = source.backup(&backup);
        done.store(true, Ordering::Relaxed);
        r
    });
    run.bytes(backup.bytes_read(), 0);
    let captured = captured?;
    drop(meter);
    for w in &captured.warnings {
        events.warning(w);
    }
    let draft = SnapshotDraft {
        name: snapshot_name,
        kind: source.kind().into(),
        tags: tags.to_vec(),
        meta: captured.meta,
        parent,
        warnings: captured.warnings,
    };
    let snap = backup.commit(captured.root, draft)?;
    run.snapshot(&snap.id());
    run.bytes(snap.stats.bytes_read, snap.stats.bytes_stored);
    Ok(snap)
}

/// What a recovery point's backup did.
#[derive(Debug)]
pub struct PointBackup {
    pub point: String,
    pub time: chrono::DateTime<chrono::Utc>,
    pub targets: Vec<String>,
    pub saved: Vec<Snapshot>,
    pub failed: Vec<String>,
    /// The worst of the targets' exit codes.
    pub code: i32,
}

/// `backup --all` (`group` `None`) or `--group NAME`: every target in turn as one recovery point.
pub fn back_up_point(
    config: &Config,
    origin: &std::path::Path,
    repo: &Repository,
    lock: &LockGuard,
    group: Option<&str>,
    tags: &[String],
    events: &dyn Events,
) -> Result<PointBackup> {
    let targets = targets_of(config, origin, group)?;
    let started = chrono::Utc::now();
    let point = new_point_id(started);
    let mut run = Run::start("point");
    let mut saved = Vec::new();
    let mut failed = Vec::new();
    let mut code = codes::OK;
    let mut tags = tags.to_vec();
    tags.push(format!("{TAG_PREFIX}{point}"));
    for target in &targets {
        match back_up_target(config, origin, repo, lock, target, &tags, events) {
            Ok(b) => {
                if b.code != codes::OK && b.code != codes::INCOMPLETE {
                    failed.push(target.clone());
                }
                code = codes::worse(code, b.code);
                saved.extend(b.saved);
            }
            Err(e) => {
                events.progress(&format!("error: backup of {target} failed: {e}"));
                failed.push(target.clone());
                code = codes::worse(code, codes::of(&e));
                if codes::of(&e) == codes::INTERRUPTED {
                    break;
                }
            }
        }
    }
    run.details(&Details::Point(PointDetails {
        point: point.clone(),
        targets: targets.clone(),
        snapshots: saved.iter().map(|s| s.id().to_hex()).collect(),
        failed: failed.clone(),
    }));
    if !failed.is_empty() {
        run.problem(format!("{} of {} targets failed: {}", failed.len(), targets.len(), failed.join(", ")));
    }
    let bytes_read = saved.iter().map(|s| s.stats.bytes_read).sum();
    run.bytes(bytes_read, saved.iter().map(|s| s.stats.bytes_stored).sum());
    run.record(repo, codes::run_status(code), None, events);
    Ok(PointBackup { point, time: started, targets, saved, failed, code })
}
