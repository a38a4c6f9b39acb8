//! Recovery points: `backup --all` / `--group G` backs up several targets as one point, whose ID (its
//! start time, plus four random hex digits) every snapshot of it carries as the tag `point:ID`, and
//! whose run in the catalog (operation `point`) lists the targets it meant to take, the snapshots it
//! took and the targets that failed. `bunker points` lists them.

use anyhow::{bail, Result};

use crate::cli::{BackupArgs, RestoreArgs};
use crate::context::Context;
use crate::exit;
use crate::output::json;
use crate::runs::Run;

pub const TAG_PREFIX: &str = "point:";

/// A new point's ID: `20261121T223000Z-3fa2`, sortable and readable; its tail (from the sub-second time
/// and the process) tells apart points started in the same second.
fn new_point_id(now: chrono::DateTime<chrono::Utc>) -> String {
    let tail = (now.timestamp_subsec_nanos() ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{}-{tail:04x}", now.format("%Y%m%dT%H%M%SZ"))
}

/// The targets of `--all` or `--group NAME`, in the stack file's order.
fn targets(ctx: &Context, args: &BackupArgs) -> Result<Vec<String>> {
    let Some(loaded) = ctx.config()? else {
        bail!("no stack file: --all and --group back up its targets; give --config PATH or set BUNKER_CONFIG")
    };
    let all: Vec<String> = loaded.config.targets.iter().map(|t| t.name.clone()).collect();
    let Some(group) = &args.group else {
        if all.is_empty() {
            bail!("{} has no targets to back up", loaded.path.display());
        }
        return Ok(all);
    };
    let groups = loaded.config.extra.get("groups").and_then(|g| g.as_table());
    let Some(members) = groups.and_then(|g| g.get(group)) else {
        let known: Vec<&str> = groups.map(|g| g.keys().map(String::as_str).collect()).unwrap_or_default();
        bail!(
            "{} has no group {group:?} (its groups: {}); add it under [groups] as {group} = [\"target\", …]",
            loaded.path.display(),
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        );
    };
    let Some(list) = members.as_array() else { bail!("[groups] {group} must be a list of target names") };
    let mut out = Vec::new();
    for m in list {
        let Some(name) = m.as_str() else { bail!("[groups] {group} must be a list of target names") };
        if !all.iter().any(|t| t == name) {
            bail!("[groups] {group} names {name:?}, which is no target of {}", loaded.path.display());
        }
        out.push(name.to_string());
    }
    if out.is_empty() {
        bail!("[groups] {group} is empty");
    }
    Ok(out)
}

/// `backup --all` / `--group`: every target in turn as one recovery point. A target that fails does not
/// stop the others; the exit code is the worst of them.
pub fn back_up_point(ctx: &Context, args: &BackupArgs) -> Result<i32> {
    let targets = targets(ctx, args)?;
    let repo = ctx.open()?;
    let lock = ctx.lock(&repo, false, "backup")?;
    let started = chrono::Utc::now();
    let point = new_point_id(started);
    let mut run = Run::start("point");
    run.detail("point", point.clone().into());
    run.detail("targets", targets.clone().into());
    let mut saved = Vec::new();
    let mut failed = Vec::new();
    let mut code = exit::OK;
    for target in &targets {
        let mut tags = args.tags.clone();
        tags.push(format!("{TAG_PREFIX}{point}"));
        let one = BackupArgs { target: Some(target.clone()), tags, ..Default::default() };
        match super::backup::back_up_target(ctx, &repo, &lock, &one) {
            Ok((snaps, c)) => {
                if c != exit::OK && c != exit::INCOMPLETE {
                    failed.push(target.clone());
                }
                code = exit::worse(code, c);
                saved.extend(snaps);
            }
            Err(e) => {
                eprintln!("bunker: error: backup of {target} failed: {}", exit::one_line(&e));
                failed.push(target.clone());
                code = exit::worse(code, exit::code_for(&e));
                if exit::code_for(&e) == exit::INTERRUPTED {
                    break;
                }
            }
        }
    }
    let ids: Vec<String> = saved.iter().map(|s| s.id().to_hex()).collect();
    run.detail("snapshots", ids.into());
    run.detail("failed", failed.clone().into());
    if !failed.is_empty() {
        run.problem(format!("{} of {} targets failed: {}", failed.len(), targets.len(), failed.join(", ")));
    }
    let bytes_read = saved.iter().map(|s| s.stats.bytes_read).sum();
    run.bytes(bytes_read, saved.iter().map(|s| s.stats.bytes_stored).sum());
    run.finish(&repo, Ok(code));
    if ctx.global.json {
        let snaps: Vec<_> =
            saved.iter().map(|s| serde_json::json!({"id": s.id().to_hex(), "name": s.name, "time": s.time})).collect();
        json(
            &serde_json::json!({ "point": point, "time": started, "targets": targets, "snapshots": snaps, "failed": failed }),
        );
    } else {
        super::backup::print_saved(ctx, &saved);
        println!(
            "recovery point {point}: {} of {} targets saved{}",
            targets.len() - failed.len(),
            targets.len(),
            if failed.is_empty() { String::new() } else { format!("; failed: {}", failed.join(", ")) }
        );
    }
    Ok(code)
}

/// `bunker points`: each recovery point, newest last: its time, targets, the snapshots of it that
/// remain, and whether it is complete (every target it meant to take has a snapshot in it).
pub fn list(ctx: &Context) -> Result<i32> {
    let repo = ctx.open()?;
    let snapshots = repo.load_snapshots()?;
    let runs = repo.load_runs()?;
    let mut rows = Vec::new();
    for r in runs.iter().filter(|r| r.operation == "point") {
        let Some(point) = r.details.get("point").and_then(|p| p.as_str()) else { continue };
        let tag = format!("{TAG_PREFIX}{point}");
        let wanted: Vec<String> = r.details["targets"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let members: Vec<_> = snapshots.iter().filter(|s| s.tags.contains(&tag)).collect();
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|t| !members.iter().any(|s| s.name == **t || s.name.starts_with(&format!("{t}/"))))
            .collect();
        let complete = missing.is_empty() && members.iter().all(|s| s.warnings.is_empty());
        rows.push(serde_json::json!({
            "point": point,
            "time": r.started,
            "status": r.status,
            "complete": complete,
            "targets": wanted,
            "missing": missing,
            "snapshots": members.iter().map(|s| serde_json::json!({"id": s.id().to_hex(), "name": s.name, "time": s.time})).collect::<Vec<_>>(),
        }));
    }
    if ctx.global.json {
        json(&rows);
    } else {
        for row in &rows {
            let missing = row["missing"].as_array().map(|m| m.len()).unwrap_or(0);
            println!(
                "{}  {}  {} snapshots{}",
                row["point"].as_str().unwrap_or_default(),
                if row["complete"] == true { "complete  " } else { "INCOMPLETE" },
                row["snapshots"].as_array().map(|s| s.len()).unwrap_or(0),
                if missing > 0 { format!(", missing: {}", row["missing"]) } else { String::new() }
            );
        }
        println!("{} recovery points", rows.len());
    }
    Ok(exit::OK)
}

/// `restore --point P`: every snapshot of the point, each where its target lives (see `RestoreArgs::point`),
/// one after the other through the ordinary `restore` (hooks, verification and catalog runs included).
/// A target that cannot be restored does not stop the others; the exit code is the worst.
pub fn restore_point(ctx: &Context, args: &RestoreArgs) -> Result<i32> {
    let wanted = args.point.as_deref().expect("called with --point");
    let Some(loaded) = ctx.config()? else {
        bail!("restore --point puts each target back where the stack file says it lives; give --config PATH")
    };
    let config = &loaded.config;
    let repo = ctx.open()?;
    let runs = repo.load_runs()?;
    let points: Vec<_> = runs.iter().filter(|r| r.operation == "point").collect();
    let run = match wanted {
        "latest" => points.iter().max_by_key(|r| r.started),
        id => points.iter().find(|r| r.details.get("point").and_then(|p| p.as_str()) == Some(id)),
    };
    let Some(run) = run else { bail!("no recovery point {wanted:?}; `bunker points` lists them") };
    let point = run.details["point"].as_str().unwrap_or_default().to_string();
    let tag = format!("{TAG_PREFIX}{point}");
    let snapshots = repo.load_snapshots()?;
    drop(repo);
    let mut members: Vec<_> = snapshots.iter().filter(|s| s.tags.contains(&tag)).collect();
    members.sort_by_key(|s| s.time);
    if members.is_empty() {
        bail!("recovery point {point} has no snapshots left (forgotten?)");
    }
    // Physical PostgreSQL is recovered to the point's end: by then every snapshot of it was taken.
    let until = run.ended.to_rfc3339();
    let physical: Vec<&str> = members
        .iter()
        .filter(|s| s.kind == bunker_sources::postgres::physical::KIND)
        .map(|s| s.name.as_str())
        .collect();
    let has_globals = |target: &str| {
        members
            .iter()
            .any(|s| s.kind == bunker_sources::postgres::globals::KIND && s.name.starts_with(&format!("{target}/")))
    };
    let mut code = exit::OK;
    let mut results = Vec::new();
    for snap in &members {
        let base = snap.name.split('/').next().unwrap_or(&snap.name);
        if snap.kind == bunker_sources::postgres::globals::KIND {
            continue; // applied with each database of its target (--with-globals)
        }
        let mut one = RestoreArgs { point: None, snapshot: Some(snap.id().to_hex()), ..args.clone() };
        // The recovery target is the point's; how to start the restored cluster stays the caller's.
        one.pitr = crate::cli::PitrArgs {
            target_action: args.pitr.target_action.clone(),
            start: args.pitr.start,
            port: args.pitr.port,
            start_timeout: args.pitr.start_timeout,
            keep_archiving: args.pitr.keep_archiving,
            restore_command: args.pitr.restore_command.clone(),
            ..Default::default()
        };
        one.to = None;
        let target = config.target(base);
        let destination: Result<String> = (|| {
            let Some(target) = target else { bail!("{} is no target of the stack file", snap.name) };
            match target.kind.as_str() {
                "postgres" if snap.kind == bunker_sources::postgres::physical::KIND => {
                    let Some(dir) = &args.pitr.pgdata else {
                        bail!("give --pgdata DIR to restore the physical PostgreSQL target {base}")
                    };
                    let dir = if physical.len() > 1 { dir.join(base) } else { dir.clone() };
                    one.snapshot = Some(format!("{}:{}", snap.name, snap.id().to_hex()));
                    one.pitr.pgdata = Some(dir.clone());
                    one.pitr.to_time = Some(until.clone());
                    Ok(format!("{} recovered to {until}", dir.display()))
                }
                "postgres" => {
                    let meta: bunker_sources::postgres::logical::LogicalMeta =
                        serde_json::from_value(snap.meta.clone())?;
                    one.into = Some(meta.database.clone());
                    one.with_globals = has_globals(base);
                    Ok(format!("database {}", meta.database))
                }
                "redis" => {
                    let Some(url) = target.options.get("url").and_then(|u| u.as_str()) else {
                        bail!("target {base} has no url")
                    };
                    one.into = Some(url.to_string());
                    Ok("its Redis server".to_string())
                }
                "s3" => {
                    let (spec, _) = bunker_sources::s3::spec(target)?;
                    let mut url = format!("s3://{}/{}?region={}", spec.bucket, spec.prefix, spec.region);
                    if let Some(endpoint) = &spec.endpoint {
                        url.push_str(&format!("&endpoint={endpoint}&path-style={}", spec.path_style));
                    }
                    one.into = Some(url);
                    Ok(spec.display())
                }
                "files" => {
                    let Some(dir) = &args.to else {
                        bail!("give --to DIR to restore the files target {base} into DIR/{base}")
                    };
                    one.to = Some(dir.join(&snap.name));
                    Ok(dir.join(&snap.name).display().to_string())
                }
                "command" => {
                    one.exec = Some(None);
                    Ok("its restore command".to_string())
                }
                other => bail!("restoring {other} targets of a point is not supported"),
            }
        })();
        let (outcome, printed) = crate::output::collect_json(|| {
            destination.and_then(|dest| {
                eprintln!("bunker: restoring {} ({}) into {dest}", snap.name, snap.short_id());
                super::restore::run(ctx, one)
            })
        });
        let c = match &outcome {
            Ok(c) => *c,
            Err(e) => {
                eprintln!("bunker: error: restore of {} failed: {}", snap.name, exit::one_line(e));
                exit::code_for(e)
            }
        };
        results.push(serde_json::json!({
            "snapshot": snap.id().to_hex(),
            "name": snap.name,
            "exit_code": c,
            "error": outcome.as_ref().err().map(exit::one_line),
            "result": printed.into_iter().next_back(),
        }));
        code = exit::worse(code, c);
        if c == exit::INTERRUPTED {
            break;
        }
    }
    let failed = results.iter().filter(|r| r["exit_code"] != 0).count();
    if ctx.global.json {
        json(&serde_json::json!({ "point": point, "time": run.started, "until": until, "restored": results }));
    } else {
        println!("recovery point {point}: {} of {} snapshots restored", results.len() - failed, results.len());
    }
    Ok(code)
}
