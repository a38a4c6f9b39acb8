//! The one route every restore takes, whatever named the snapshot (`NAME`, `NAME:latest`,
//! `NAME:PREFIX`, an ID or prefix, `latest`, a recovery point): the snapshot is resolved first; its
//! target is taken from the snapshot itself (the part of its name before `/`) and looked up in the stack
//! file; its kind (`bunker_sources::Kind`) restores and verifies it; the target's `before_restore` and
//! `after_restore` hooks run around it; and one `restore` run is recorded in the catalog.
//! A snapshot whose target is no longer in the stack file restores with a warning that no hooks or
//! verification options are known.

use bunker_config::{Config, TargetConfig};
use bunker_engine::catalog::RunStatus;
use bunker_engine::{Repository, Snapshot};
use bunker_sources::{Destination, HomeBase, RestoreJob, RestoreOptions, Restored};

use crate::details::{Details, HookDetails, RestoreDetails};
use crate::hooks::{self, HookEnv, Phase};
use crate::lock::{read_lock, LockPolicy};
use crate::points::{self, target_of};
use crate::runs::Run;
use crate::{fail, Error, Events, Result};

/// A restore as asked for.
pub struct RestoreRequest<'a> {
    /// How the user named the snapshot (shown to hooks as `BUNKER_SNAPSHOT`).
    pub selector: &'a str,
    /// Where to; `None`: where its target lives according to the stack file.
    pub destination: Option<Destination>,
    pub options: RestoreOptions<'a>,
    /// The `restore_command` that fetches a target's WAL through bunker (physical PostgreSQL).
    pub wal_fetch: &'a (dyn Fn(&str) -> Result<String, bunker_sources::SourceError> + Sync),
}

/// What one restore did.
#[derive(Debug)]
pub struct RestoreReport {
    pub snapshot: String,
    pub name: String,
    pub target: String,
    /// The kind that restored it (`postgres`, `redis`, …).
    pub kind: &'static str,
    /// The target's section was found in the stack file (hooks and verification options known).
    pub configured: bool,
    /// The hooks that ran, in order (`before_restore`, `after_restore`).
    pub hooks: Vec<&'static str>,
    pub restored: Restored,
    /// How the run was recorded: success, warning (an after hook failed), failed (verification).
    pub status: RunStatus,
}

/// Restores the snapshot `request.selector` names. The run is recorded whatever happens; an error
/// is returned only when nothing could be restored (after recording it).
pub fn restore(
    config: Option<&Config>,
    repo: &Repository,
    lock: LockPolicy,
    request: &RestoreRequest<'_>,
    events: &dyn Events,
) -> Result<RestoreReport> {
    let mut run = Run::start("restore");
    run.target(request.selector);
    let resolved = (|| {
        let guard = read_lock(repo, lock, "restore")?;
        let snapshots = repo.load_snapshots()?;
        let index = repo.load_index()?.0;
        Ok::<_, Error>((guard, snapshots, index))
    })();
    let (_guard, snapshots, index) = match resolved {
        Ok(r) => r,
        Err(e) => return Err(record_failure(run, repo, e, events)),
    };
    let snap = match repo.select(&snapshots, request.selector) {
        Ok(s) => s,
        Err(e) => return Err(record_failure(run, repo, e.into(), events)),
    };
    let pinned = pinned(request.selector, snap);
    let one = One { snapshot: snap, snapshots: &snapshots, index: &index, pinned, selector: request.selector };
    restore_one(config, repo, &one, request.destination.clone(), &HomeBase::default(), request, run, events)
}

/// Whether the selector names this very snapshot (an ID) rather than a name's newest.
fn pinned(selector: &str, snap: &Snapshot) -> bool {
    !(selector == "latest" || selector == snap.name || selector == format!("{}:latest", snap.name))
}

struct One<'a> {
    snapshot: &'a Snapshot,
    snapshots: &'a [Snapshot],
    index: &'a bunker_engine::index::Index,
    pinned: bool,
    selector: &'a str,
}

fn record_failure(mut run: Run, repo: &Repository, e: Error, events: &dyn Events) -> Error {
    run.problem(e.to_string());
    run.record(repo, crate::runs::status_of(&e), Some(e.to_string()), events);
    e
}

#[allow(clippy::too_many_arguments)]
fn restore_one(
    config: Option<&Config>,
    repo: &Repository,
    one: &One<'_>,
    destination: Option<Destination>,
    base: &HomeBase,
    request: &RestoreRequest<'_>,
    mut run: Run,
    events: &dyn Events,
) -> Result<RestoreReport> {
    let snap = one.snapshot;
    let target_name = target_of(&snap.name);
    run.target(&snap.name);
    run.snapshot(&snap.id());
    if !repo.reads_content() {
        // A write-only host: refuse before any hook runs or any target is touched.
        let what = format!("snapshot {} ({})", snap.short_id(), snap.name);
        return Err(record_failure(run, repo, bunker_engine::Error::NeedsIdentity { what }.into(), events));
    }
    let kind = bunker_sources::kind_of_snapshot(snap);
    // A selection the kind cannot apply is refused, never ignored (a whole restore instead of one file).
    let options = &request.options;
    let given = [
        ("--include", !options.include.is_empty()),
        ("--exclude", !options.exclude.is_empty()),
        ("--match", options.match_keys.is_some()),
        ("--db", options.db.is_some()),
    ];
    for (flag, given) in given {
        if given && !kind.selects_by().contains(&flag) {
            let e = fail(format!(
                "{flag} does not apply to snapshot {} ({}): {}",
                snap.short_id(),
                snap.kind,
                match kind.selects_by() {
                    [] => "it is restored whole".to_string(),
                    flags => format!("it takes {}", flags.join(" and ")),
                }
            ));
            return Err(record_failure(run, repo, e, events));
        }
    }
    let target: Option<&TargetConfig> = config.and_then(|c| c.target(target_name));
    if config.is_some() && target.is_none() {
        events.warning(&format!(
            "{} is no target of the stack file (any more): restoring snapshot {} without hooks or verification options",
            target_name,
            snap.short_id()
        ));
    }
    let destination = match destination {
        Some(d) => Ok(d),
        None => match target {
            Some(t) => kind.home(snap, t, base).map_err(Error::from),
            None => Err(fail(format!(
                "give a destination for snapshot {} (--into, --to, --pgdata, --rdb-file or --exec): its target {target_name} is not in the stack file, so where it lives is not known",
                snap.short_id()
            ))),
        },
    };
    let destination = match destination {
        Ok(d) => d,
        Err(e) => return Err(record_failure(run, repo, e, events)),
    };
    let id = snap.id().to_hex();
    let job = RestoreJob {
        repo,
        index: one.index,
        snapshots: one.snapshots,
        snapshot: snap,
        pinned: one.pinned,
        target_name,
        target,
        destination: &destination,
        options: &request.options,
        wal_fetch: request.wal_fetch,
    };
    if request.options.dry_run {
        // A dry run changes nothing: no hook, no catalog run, and only kinds that preview their
        // restore (read the destination, write nothing) are asked; for the others it says where.
        let into = shown(&destination);
        let hooks: Vec<&'static str> = match target.map(|t| &t.hooks) {
            Some(h) => [(Phase::BeforeRestore, "before_restore"), (Phase::AfterRestore, "after_restore")]
                .into_iter()
                .filter(|(p, _)| p.command(h).is_some())
                .map(|(_, name)| name)
                .collect(),
            None => Vec::new(),
        };
        let mut line = format!("would restore {} ({}) into {into}", snap.short_id(), snap.name);
        if !hooks.is_empty() {
            line.push_str(&format!(", running its {} hooks", hooks.join(" and ")));
        }
        let restored = if kind.previews_restore() {
            let mut r = kind.restore(&job)?;
            r.lines.insert(0, line);
            r
        } else {
            bunker_sources::Restored {
                snapshot: None,
                into: into.clone(),
                bytes: 0,
                details: Vec::new(),
                lines: vec![line],
                warnings: Vec::new(),
                json: serde_json::json!({"dry_run": true, "into": into, "hooks": hooks}),
                verified: false,
                problems: Vec::new(),
            }
        };
        return Ok(RestoreReport {
            snapshot: id,
            name: snap.name.clone(),
            target: target_name.to_string(),
            kind: kind.name(),
            configured: target.is_some(),
            hooks: Vec::new(),
            restored,
            status: RunStatus::Success,
        });
    }
    let hooks = target.map(|t| &t.hooks);
    let env = |status| HookEnv {
        target: target_name,
        snapshot: Some(one.selector),
        status,
        extra: vec![("BUNKER_SNAPSHOT_ID".into(), id.clone())],
    };
    let mut ran = Vec::new();
    if let Some(h) = hooks {
        match hooks::run(h, Phase::BeforeRestore, &env(None), events) {
            Ok(true) => ran.push("before_restore"),
            Ok(false) => {}
            Err(e) => {
                let _ = hooks::run(h, Phase::AfterRestore, &env(Some("failed")), events);
                return Err(record_failure(run, repo, e, events));
            }
        }
    }
    let outcome = kind.restore(&job);
    let succeeded = matches!(&outcome, Ok(r) if r.problems.is_empty());
    let after = match hooks {
        Some(h) => hooks::run(h, Phase::AfterRestore, &env(Some(if succeeded { "success" } else { "failed" })), events),
        None => Ok(false),
    };
    let restored = match outcome {
        Ok(r) => r,
        Err(e) => {
            let e = Error::from(e);
            if let Err(hook) = after {
                events.warning(&hook.to_string());
            }
            return Err(record_failure(run, repo, e, events));
        }
    };
    if let Some(id) = &restored.snapshot {
        run.snapshot(id);
    }
    run.bytes(restored.bytes, 0);
    let mut details = RestoreDetails {
        verified: restored.verified,
        configured: target.is_some(),
        kind: restored.details.iter().cloned().collect(),
        hooks: Vec::new(),
    };
    let mut status = if restored.problems.is_empty() { RunStatus::Success } else { RunStatus::Failed };
    if !restored.problems.is_empty() {
        run.problem(restored.problems.join("; "));
    }
    match after {
        Ok(true) => ran.push("after_restore"),
        Ok(false) => {}
        Err(e) => {
            ran.push("after_restore");
            events.warning(&e.to_string());
            let mut hook_run = Run::start("hook");
            hook_run.target(target_name);
            hook_run.details(&Details::Hook(HookDetails { phase: "after_restore".into() }));
            hook_run.record(repo, RunStatus::Failed, Some(e.to_string()), events);
            if status == RunStatus::Success {
                status = RunStatus::Warning;
            }
        }
    }
    details.hooks = ran.iter().map(|h| h.to_string()).collect();
    run.details(&Details::Restore(details));
    let recorded = run.record(repo, status, None, events);
    Ok(RestoreReport {
        snapshot: recorded.snapshot.clone().unwrap_or(id),
        name: snap.name.clone(),
        target: target_name.to_string(),
        kind: kind.name(),
        configured: target.is_some(),
        hooks: ran,
        restored,
        status: recorded.status,
    })
}

/// One snapshot of a point restore, and how it went.
#[derive(Debug)]
pub struct PointMember {
    pub snapshot: String,
    pub name: String,
    /// Where it went, as shown.
    pub into: Option<String>,
    pub outcome: Result<RestoreReport>,
}

/// What `restore --point` did.
#[derive(Debug)]
pub struct PointReport {
    pub point: String,
    pub time: chrono::DateTime<chrono::Utc>,
    /// Physical PostgreSQL was recovered to here (the point's end).
    pub until: chrono::DateTime<chrono::Utc>,
    pub members: Vec<PointMember>,
}

/// `restore --point P`: every snapshot of the point, each where its target lives (the kind's home;
/// files under `base.files`, physical clusters under `base.pgdata`), through the same route as a single
/// restore (hooks, verification and catalog run each). A target that cannot be restored does not stop
/// the others; an interrupt does.
pub fn restore_point(
    config: &Config,
    repo: &Repository,
    lock: LockPolicy,
    wanted: &str,
    base: &HomeBase,
    request: &RestoreRequest<'_>,
    events: &dyn Events,
) -> Result<PointReport> {
    // A dry run reads metadata only and changes nothing: it takes no lock (a prune meanwhile could only
    // make its plan out of date).
    let lock = if request.options.dry_run { LockPolicy { no_lock: true, ..lock } } else { lock };
    let _guard = read_lock(repo, lock, "restore")?;
    // The index is needed before the first byte is restored, and reading it shares nothing with reading
    // the catalog: both at once, one request round and one core's decoding sooner.
    let (runs, index) = std::thread::scope(|scope| {
        let index = scope.spawn(|| repo.load_index());
        // Only the point records: the rest of a long history is not decoded.
        let runs = repo.load_runs_of(&["point"]);
        (runs, index.join().expect("the index reader does not panic"))
    });
    let runs = runs?;
    // A point is found from its record, so a memo of the listing is enough to plan it.
    let snapshots = repo.load_recent_snapshots()?;
    let point = points::find(wanted, &runs, &snapshots)?;
    if !repo.reads_content() {
        // A write-only host: one clear refusal for the point, not one per member.
        return Err(bunker_engine::Error::NeedsIdentity { what: format!("recovery point {}", point.point) }.into());
    }
    let index = index?.0;
    // Targets that go into data directories each get their own under `base.pgdata` when there are several.
    let probe = HomeBase { pgdata: Some("/".into()), ..Default::default() };
    let data_dirs: std::collections::BTreeSet<&str> = point
        .snapshots
        .iter()
        .filter(|s| {
            let home =
                config.target(target_of(&s.name)).map(|t| bunker_sources::kind_of_snapshot(s).home(s, t, &probe));
            matches!(home, Some(Ok(Destination::DataDir(_))))
        })
        .map(|s| target_of(&s.name))
        .collect();
    let base = HomeBase { several_data_dirs: data_dirs.len() > 1, ..base.clone() };
    let mut members = Vec::new();
    for snap in &point.snapshots {
        let kind = bunker_sources::kind_of_snapshot(snap);
        if kind.is_companion(snap) {
            continue; // restored with what it accompanies (a roles script with each database)
        }
        let target_name = target_of(&snap.name);
        let has_companion = point.snapshots.iter().any(|s| target_of(&s.name) == target_name && kind.is_companion(s));
        // The recovery target is the point's end: by then every snapshot of it was taken.
        let mut options = RestoreOptions {
            with_globals: has_companion,
            recovery: bunker_sources::Recovery {
                target: bunker_sources::RecoveryTarget::Time(point.ended.fixed_offset()),
                timeline: None,
                ..request.options.recovery.clone()
            },
            ..request.options.clone()
        };
        options.include.clear();
        options.exclude.clear();
        options.match_keys = None;
        options.db = None;
        let into = match config.target(target_name) {
            Some(t) => kind.home(snap, t, &base).map_err(Error::from),
            None => Err(fail(format!("{} is no target of the stack file", snap.name))),
        };
        let id = snap.id().to_hex();
        let one_request = RestoreRequest { selector: &id, destination: None, options, wal_fetch: request.wal_fetch };
        let outcome = match into {
            Ok(dest) => {
                if !request.options.dry_run {
                    events.progress(&format!("restoring {} ({}) into {}", snap.name, snap.short_id(), shown(&dest)));
                }
                let one = One { snapshot: snap, snapshots: &snapshots, index: &index, pinned: true, selector: &id };
                let run = Run::start("restore");
                let into = shown(&dest);
                (Some(into), restore_one(Some(config), repo, &one, Some(dest), &base, &one_request, run, events))
            }
            Err(e) => {
                let mut run = Run::start("restore");
                run.target(&snap.name);
                run.snapshot(&snap.id());
                (None, Err(record_failure(run, repo, e, events)))
            }
        };
        let interrupted = matches!(&outcome.1, Err(e) if e.is_interrupted());
        members.push(PointMember { snapshot: id, name: snap.name.clone(), into: outcome.0, outcome: outcome.1 });
        if interrupted {
            break;
        }
    }
    Ok(PointReport { point: point.point.clone(), time: point.time, until: point.ended, members })
}

/// A destination as a person reads it.
pub fn shown(d: &Destination) -> String {
    match d {
        Destination::Into(s) if s.starts_with("s3://") || s.starts_with("redis") => redact(s),
        Destination::Into(s) => format!("database {}", redact(s)),
        Destination::Dir(p) => p.display().to_string(),
        Destination::DataDir(p) => format!("{} (recovered)", p.display()),
        Destination::RdbFile(p) => p.display().to_string(),
        Destination::Exec(_) => "its restore command".into(),
    }
}

/// A URL without its password.
fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &s[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &s[..scheme + 3], &s[at..]),
                None => s.to_string(),
            }
        }
        _ => s.split('?').next().unwrap_or(s).to_string(),
    }
}
