//! Drills: restore a recovery point into scratch servers and directories on this host, verify it
//! against what the backup recorded, run the user's smoke tests against the restored stack, measure
//! RTO and RPO, and record the result in the catalog.
//!
//! The flow: choose the point (`latest`, an ID, or without points each target's newest snapshot) →
//! one thread per target: provision → restore → verify ([`targets`]) → `[drill] after_restore` hooks
//! with the scratch endpoints in `BUNKER_DRILL_*` → judge against the objectives ([`record`]) → record,
//! print, report ([`html`]) → tear down ([`scratch`]) unless `--keep`. A drill never writes to a
//! production server or bucket: everything it restores goes to what it provisioned.

pub mod html;
pub mod record;
mod scratch;
mod targets;

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use bunker_engine::Snapshot;

use crate::cli::DrillArgs;
use crate::context::Context;
use crate::exit;
use crate::hooks::{self, HookEnv, Phase};
use crate::output::{json, size};
use crate::runs::Run;
use record::{secs, DrillRecord, HookResult, TargetDrill};
use scratch::Teardown;
use targets::TargetJob;

/// What is drilled: the point and each target's snapshots.
struct Chosen<'a> {
    point: Option<String>,
    /// When the point started (or the oldest snapshot drilled was taken).
    time: chrono::DateTime<chrono::Utc>,
    /// Physical PostgreSQL recovers to here: the point's end.
    until: Option<chrono::DateTime<chrono::Utc>>,
    targets: BTreeMap<String, Vec<&'a Snapshot>>,
}

pub fn run(ctx: &Context, args: &DrillArgs) -> Result<i32> {
    let loaded = ctx.config()?;
    let config = loaded.map(|l| &l.config);
    let repo = ctx.open()?;
    let mut run = Run::start("drill");
    // What the drill reads must not be pruned away under it; a read-only repository drills without one.
    let lock = ctx.read_lock(&repo, "drill");
    let outcome = lock.and_then(|_lock| drill(args, config, &repo, &mut run));
    let code = match &outcome {
        Ok((record, _)) if record.passed => exit::OK,
        Ok(_) => exit::FAILURE,
        Err(_) => exit::FAILURE,
    };
    match outcome {
        Ok((record, teardown)) => {
            run.detail_all(serde_json::to_value(&record).expect("record serialises"));
            run.bytes(record.bytes_restored, 0);
            if !record.passed {
                run.problem(format!("drill failed: {}", record.problems.join("; ")));
            }
            let code = if bunker_engine::interrupt::requested() { exit::INTERRUPTED } else { code };
            run.finish(&repo, Ok(code));
            drop(teardown);
            print(ctx, &record);
            if let Some(path) = args.report.as_ref().or(config.and_then(|c| c.drill.report.as_ref())) {
                write_report(&repo, path)?;
                let shown = format!("report: {}", path.display());
                if ctx.global.json {
                    eprintln!("bunker: {shown}");
                } else {
                    println!("{shown}");
                }
            }
            Ok(code)
        }
        Err(e) => {
            run.finish(&repo, Err(&e));
            Err(e)
        }
    }
}

/// The drill proper; its scratch resources come back with the record, for the caller to tear down
/// once the run is recorded.
fn drill(
    args: &DrillArgs,
    config: Option<&bunker_config::Config>,
    repo: &bunker_engine::Repository,
    run: &mut Run,
) -> Result<(DrillRecord, Teardown)> {
    let started = chrono::Utc::now();
    let clock = std::time::Instant::now();
    let snapshots = repo.load_snapshots()?;
    let runs = repo.load_runs()?;
    let mut chosen = choose(&args.point, &snapshots, &runs)?;
    let wanted: Vec<String> = if !args.targets.is_empty() {
        args.targets.clone()
    } else {
        config.map(|c| c.drill.targets.clone()).unwrap_or_default()
    };
    if !wanted.is_empty() {
        if let Some(missing) = wanted.iter().find(|t| !chosen.targets.contains_key(*t)) {
            bail!(
                "{} has no snapshot of {missing:?} (it holds: {}); check --targets or [drill] targets",
                chosen.point.as_deref().map(|p| format!("recovery point {p}")).unwrap_or("the repository".into()),
                chosen.targets.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        chosen.targets.retain(|t, _| wanted.contains(t));
    }
    if let Some(p) = &chosen.point {
        run.detail("point", p.clone().into());
    }
    let drill_id = format!("drill-{}-{:04x}", started.format("%Y%m%dT%H%M%SZ"), std::process::id() & 0xffff);
    let (index, _) = repo.load_index()?;
    let jobs: Vec<TargetJob<'_>> = chosen
        .targets
        .iter()
        .map(|(name, snaps)| TargetJob {
            repo,
            index: &index,
            name: name.clone(),
            snapshots: snaps.clone(),
            config: config.and_then(|c| c.target(name)),
            pitr_until: chosen.until,
            scratch_s3: config.and_then(|c| c.drill.scratch_s3.clone()),
            drill_id: drill_id.clone(),
        })
        .collect();
    eprintln!(
        "bunker: drilling {} ({}) into scratch instances: {}",
        chosen.point.as_deref().map(|p| format!("recovery point {p}")).unwrap_or("the newest snapshots".into()),
        chosen.time.format("%Y-%m-%d %H:%M:%S UTC"),
        jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    // Independent targets in parallel, each on its own thread.
    let results: Vec<(TargetDrill, Teardown)> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|job| {
                scope.spawn(move || {
                    let mut out = TargetDrill {
                        target: job.name.clone(),
                        snapshots: job.snapshots.iter().map(|s| s.id().to_hex()).collect(),
                        rpo_seconds: age(started, job.snapshots.iter().map(|s| s.time).min()),
                        rto_objective_seconds: job.config.and_then(|c| c.objectives.rto).map(|d| d.as_secs_f64()),
                        rpo_objective_seconds: job.config.and_then(|c| c.objectives.rpo).map(|d| d.as_secs_f64()),
                        ..Default::default()
                    };
                    let mut teardown = Teardown::default();
                    if let Err(e) = targets::drill(job, &mut out, &mut teardown.0) {
                        out.error = Some(exit::one_line(&e));
                    }
                    let verdict =
                        if out.error.is_none() && out.checks.iter().all(|c| c.passed) { "ok" } else { "FAILED" };
                    eprintln!("bunker: {} {verdict}: restored and verified in {}", out.target, secs(out.rto_seconds));
                    (out, teardown)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("target drill thread")).collect()
    });
    let rto = clock.elapsed().as_secs_f64();
    let (targets, teardowns): (Vec<TargetDrill>, Vec<Teardown>) = results.into_iter().unzip();
    let mut teardown = Teardown::default();
    for mut t in teardowns {
        teardown.0.append(&mut t.0);
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
        record.hooks = run_hooks(&c.drill, &record);
    }
    record.judge();
    if args.keep {
        record.kept = std::mem::take(&mut teardown.0).into_iter().map(scratch::Scratch::keep).collect();
    }
    Ok((record, teardown))
}

/// The point to drill: the newest (`latest`) or the one named; without any point, `latest` means the
/// newest complete snapshot of every name.
fn choose<'a>(
    wanted: &str,
    snapshots: &'a [Snapshot],
    runs: &[bunker_engine::catalog::RunRecord],
) -> Result<Chosen<'a>> {
    let points: Vec<_> = runs.iter().filter(|r| r.operation == "point").collect();
    let by_target = |members: Vec<&'a Snapshot>| {
        let mut map: BTreeMap<String, Vec<&'a Snapshot>> = BTreeMap::new();
        for s in members {
            map.entry(s.name.split('/').next().unwrap_or(&s.name).to_string()).or_default().push(s);
        }
        map
    };
    let point = match wanted {
        "latest" => points
            .iter()
            .filter(|r| r.details.get("snapshots").is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty())))
            .max_by_key(|r| r.started),
        id => Some(
            points
                .iter()
                .find(|r| r.details.get("point").and_then(|p| p.as_str()) == Some(id))
                .ok_or_else(|| anyhow!("no recovery point {id:?}; `bunker points` lists them"))?,
        ),
    };
    match point {
        Some(r) => {
            let id = r.details["point"].as_str().unwrap_or_default().to_string();
            let tag = format!("{}{id}", crate::commands::POINT_TAG_PREFIX);
            let members: Vec<&Snapshot> = snapshots.iter().filter(|s| s.tags.contains(&tag)).collect();
            if members.is_empty() {
                bail!("recovery point {id} has no snapshots left (forgotten?); drill another with --point ID");
            }
            Ok(Chosen { point: Some(id), time: r.started, until: Some(r.ended), targets: by_target(members) })
        }
        None => {
            let mut newest: BTreeMap<&str, &Snapshot> = BTreeMap::new();
            for s in snapshots.iter().filter(|s| s.warnings.is_empty()) {
                if newest.get(s.name.as_str()).is_none_or(|n| n.time < s.time) {
                    newest.insert(&s.name, s);
                }
            }
            if newest.is_empty() {
                bail!("the repository holds no complete snapshot to drill: back the stack up first (`bunker backup --all`)");
            }
            let time = newest.values().map(|s| s.time).min().expect("non-empty");
            Ok(Chosen { point: None, time, until: None, targets: by_target(newest.into_values().collect()) })
        }
    }
}

fn age(now: chrono::DateTime<chrono::Utc>, then: Option<chrono::DateTime<chrono::Utc>>) -> f64 {
    then.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0).unwrap_or(0.0)
}

/// `[drill] after_restore`, in turn, with every restored target's endpoint in the environment:
/// `BUNKER_DRILL_PG_URL` (ending in `/`: append the database), `BUNKER_DRILL_REDIS_URL`, `BUNKER_DRILL_S3`, `BUNKER_DRILL_FILES_DIR` (the
/// first of each kind) and `BUNKER_DRILL_TARGET_<NAME>` for each.
fn run_hooks(drill: &bunker_config::DrillConfig, record: &DrillRecord) -> Vec<HookResult> {
    if drill.after_restore.is_empty() {
        return Vec::new();
    }
    let mut env: Vec<(String, String)> = vec![
        ("BUNKER_DRILL_POINT".into(), record.point.clone().unwrap_or_default()),
        ("BUNKER_DRILL_POINT_TIME".into(), record.point_time.to_rfc3339()),
    ];
    for t in &record.targets {
        let var = |kind: &str| format!("BUNKER_DRILL_{kind}");
        let upper: String =
            t.target.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
        let endpoint = t.restored_into.clone();
        env.push((format!("BUNKER_DRILL_TARGET_{upper}"), endpoint.clone()));
        let kind = match t.kind.as_str() {
            k if k.starts_with("postgres") => "PG_URL",
            k if k.starts_with("redis") => "REDIS_URL",
            "s3" => "S3",
            _ if std::path::Path::new(&endpoint).is_dir() => "FILES_DIR",
            _ => continue,
        };
        if !env.iter().any(|(k, _)| *k == var(kind)) {
            env.push((var(kind), endpoint));
        }
    }
    drill
        .after_restore
        .iter()
        .map(|command| {
            let started = std::time::Instant::now();
            let hooks = bunker_config::Hooks {
                after_restore: Some(command.clone()),
                timeout: drill.hook_timeout,
                ..Default::default()
            };
            let env = HookEnv { target: "drill", snapshot: None, status: Some("success"), extra: env.clone() };
            let outcome = hooks::run(&hooks, Phase::AfterRestore, &env);
            HookResult {
                command: shown_command(command),
                passed: outcome.is_ok(),
                seconds: started.elapsed().as_secs_f64(),
                detail: match outcome {
                    Ok(_) => "exit 0".into(),
                    Err(e) => exit::one_line(&e),
                },
            }
        })
        .collect()
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

fn print(ctx: &Context, r: &DrillRecord) {
    if ctx.global.json {
        json(r);
        return;
    }
    println!(
        "drill of {} (taken {}): {}",
        r.point.as_deref().map(|p| format!("recovery point {p}")).unwrap_or("the newest snapshots".into()),
        r.point_time.format("%Y-%m-%d %H:%M:%S UTC"),
        if r.passed { "PASSED" } else { "FAILED" }
    );
    for t in &r.targets {
        println!(
            "  {:<16} {:<18} {:>8}  {:>10} restored at {:>7.1} MiB/s  RPO {}{}  {}",
            t.target,
            t.kind,
            secs(t.rto_seconds),
            size(t.bytes),
            t.throughput_bytes_per_second / (1 << 20) as f64,
            secs(t.rpo_seconds),
            t.live_rpo_seconds.map(|l| format!(" (live {})", secs(l))).unwrap_or_default(),
            if t.passed { "ok" } else { "FAILED" }
        );
        for c in &t.checks {
            println!("      {} {}: {}", if c.passed { "ok  " } else { "FAIL" }, c.name, c.detail);
        }
        if let Some(e) = &t.error {
            println!("      FAIL {e}");
        }
    }
    for h in &r.hooks {
        println!("  after_restore {:?}: {} in {}", h.command, if h.passed { "ok" } else { &h.detail }, secs(h.seconds));
    }
    let objective = |o: Option<f64>| o.map(|o| format!(" (objective {})", secs(o))).unwrap_or_default();
    println!(
        "  RTO {}{}, RPO {}{}, {} restored",
        secs(r.rto_seconds),
        objective(r.rto_objective_seconds),
        secs(r.rpo_seconds),
        objective(r.rpo_objective_seconds),
        size(r.bytes_restored)
    );
    for p in &r.problems {
        println!("  PROBLEM: {p}");
    }
    for k in &r.kept {
        println!("  kept: {k}");
    }
}

/// The HTML report of the drill just recorded, with the catalog's drill history.
fn write_report(repo: &bunker_engine::Repository, path: &std::path::Path) -> Result<()> {
    let drills = record::drills(&repo.load_runs()?);
    let Some(newest) = drills.last() else { bail!("the drill was not recorded; no report written") };
    std::fs::write(path, html::render(newest, &drills))
        .map_err(|e| anyhow!("cannot write the report {}: {e}", path.display()))?;
    Ok(())
}
