use anyhow::{bail, Result};
use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::{select, Root};
use bunker_engine::Repository;
use bunker_sources::files::globs;
use bunker_sources::postgres::restore::StoredArchive;

use crate::cli::RestoreArgs;
use crate::context::Context;
use crate::exit;
use crate::hooks::{self, HookEnv, Phase};
use crate::output::{json, size};
use crate::runs::Run;

pub fn run(ctx: &Context, args: RestoreArgs) -> Result<i32> {
    if args.point.is_some() {
        return super::points::restore_point(ctx, &args);
    }
    let repo = ctx.open()?;
    // The target's hooks, when the snapshot is named after a target of the stack file.
    let target = args.snapshot().split([':', '/']).next().unwrap_or(args.snapshot()).to_string();
    let hooks = ctx.config()?.and_then(|c| c.config.target(&target)).map(|t| t.hooks.clone());
    let Some(hooks) = hooks else { return restore(ctx, &repo, &args) };
    let env = |status| HookEnv { target: &target, snapshot: Some(args.snapshot()), status, extra: Vec::new() };
    if let Err(e) = hooks::run(&hooks, Phase::BeforeRestore, &env(None)) {
        let mut run = Run::start("restore");
        run.target(&target);
        run.finish(&repo, Err(&e));
        let _ = hooks::run(&hooks, Phase::AfterRestore, &env(Some("failed")));
        return Err(e);
    }
    let outcome = restore(ctx, &repo, &args);
    let status = if matches!(outcome, Ok(exit::OK)) { "success" } else { "failed" };
    match hooks::run(&hooks, Phase::AfterRestore, &env(Some(status))) {
        Ok(_) => outcome,
        Err(e) => {
            eprintln!("bunker: warning: {}", exit::one_line(&e));
            let mut run = Run::start("hook");
            run.target(&target);
            run.detail("phase", "after_restore".into());
            run.finish(&repo, Err(&e));
            outcome.map(|code| if code == exit::OK { exit::INCOMPLETE } else { code })
        }
    }
}

fn restore(ctx: &Context, repo: &Repository, args: &RestoreArgs) -> Result<i32> {
    let mut run = Run::start("restore");
    run.target(args.snapshot());
    if let Some(path) = &args.rdb_file {
        let outcome = super::redis::write_rdb(ctx, repo, args, path, &mut run);
        run.finish(repo, outcome.as_ref().copied());
        return outcome;
    }
    if let Some(command) = &args.exec {
        let outcome = restore_exec(ctx, repo, args, command.as_deref(), &mut run);
        run.finish(repo, outcome.as_ref().copied());
        return outcome;
    }
    let outcome = match (&args.to, &args.into, &args.pitr.pgdata) {
        (Some(to), _, _) => restore_files(ctx, repo, args, to, &mut run),
        (None, Some(into), _) => restore_database(ctx, repo, args, into, &mut run),
        (None, None, Some(pgdata)) => super::pitr::restore(ctx, repo, args, pgdata, &mut run),
        (None, None, None) => unreachable!("clap requires --to, --into, --pgdata or --rdb-file"),
    };
    run.finish(repo, outcome.as_ref().copied());
    outcome
}

/// A stream snapshot fed to a command: the one given, else its target's `restore` command.
fn restore_exec(
    ctx: &Context,
    repo: &Repository,
    args: &RestoreArgs,
    given: Option<&str>,
    run: &mut Run,
) -> Result<i32> {
    let _lock = ctx.read_lock(repo, "restore")?;
    let snapshots = repo.load_snapshots()?;
    let snap = repo.select(&snapshots, args.snapshot())?;
    run.target(&snap.name);
    run.snapshot(&snap.id());
    let command = match given {
        Some(c) => c.to_string(),
        None => {
            let target = ctx.config()?.and_then(|c| c.config.target(&snap.name));
            let configured = match target {
                Some(t) if t.kind == "command" => bunker_sources::command::restore_command(t)?,
                _ => None,
            };
            configured.ok_or_else(|| {
                anyhow::anyhow!(
                    "no restore command for {}: add restore = \"…\" to [targets.{}] or give one with --exec COMMAND",
                    snap.name,
                    snap.name
                )
            })?
        }
    };
    let Root::Stream { content, .. } = &snap.root else {
        bail!("snapshot {} is a file tree; restore it with --to DIR", snap.short_id())
    };
    let (index, _) = repo.load_index()?;
    let restorer = Restorer::new(repo, &index);
    let started = std::time::Instant::now();
    let bytes = bunker_sources::command::run_restore(&command, |stdin| Ok(restorer.dump(content, stdin)?))?;
    run.bytes(bytes, 0);
    if ctx.global.json {
        json(&serde_json::json!({ "snapshot": snap.id().to_hex(), "bytes": bytes }));
    } else {
        println!(
            "fed snapshot {} ({}) to the restore command in {:.1}s",
            snap.short_id(),
            size(bytes),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(exit::OK)
}

/// A PostgreSQL snapshot into a database (roles first with --with-globals), then verification.
fn restore_database(ctx: &Context, repo: &Repository, args: &RestoreArgs, into: &str, run: &mut Run) -> Result<i32> {
    let _lock = ctx.read_lock(repo, "restore")?;
    let snapshots = repo.load_snapshots()?;
    let snap = repo.select(&snapshots, args.snapshot())?;
    run.target(&snap.name);
    run.snapshot(&snap.id());
    if snap.kind.starts_with("redis-") {
        return super::redis::restore_into(ctx, repo, args, snap, into, run);
    }
    if snap.kind == bunker_sources::s3::KIND {
        return super::s3::restore_into(ctx, repo, args, snap, into, run);
    }
    let pg = super::pg::load(ctx, snap)?;
    let target = pg.database(into)?;
    run.detail("into", target.display().into());
    let Root::Stream { content, .. } = &snap.root else { bail!("snapshot {} holds no dump stream", snap.short_id()) };
    let started = std::time::Instant::now();
    let (index, _) = repo.load_index()?;
    let restorer = Restorer::new(repo, &index);
    if args.with_globals {
        let target_name = snap.name.split('/').next().unwrap_or(&snap.name);
        let globals_name = format!("{target_name}/{}", bunker_sources::postgres::GLOBALS);
        let globals = select(&snapshots, &format!("{globals_name}:latest")).map_err(|_| {
            anyhow::anyhow!(
                "no roles snapshot {globals_name}: back the target up with databases = \"all\" or globals = true"
            )
        })?;
        let Root::Stream { content, .. } = &globals.root else {
            bail!("snapshot {} holds no script", globals.short_id())
        };
        let mut script = tempfile::Builder::new().prefix("bunker-globals-").suffix(".sql").tempfile()?;
        restorer.dump(content, script.as_file_mut())?;
        let major = (pg.meta.server_version_num / 10000) as u32;
        let pg_bin_dir = pg.settings.as_ref().and_then(|s| s.pg_bin_dir.as_deref());
        let skipped = bunker_sources::postgres::globals::apply(script.path(), &target, pg_bin_dir, major)?;
        if skipped > 0 {
            tracing::warn!("{skipped} statements of the roles script failed (usually: the role already exists)");
        }
    }
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    let ask = |what: &str| crate::context::confirm(&format!("{what}. Replace what the dump contains?"));
    let opts = bunker_sources::postgres::restore::RestoreOptions {
        jobs,
        force: args.force,
        keep_owners: args.with_globals,
        pg_bin_dir: pg.settings.as_ref().and_then(|s| s.pg_bin_dir.as_deref()),
        confirm: if std::io::IsTerminal::is_terminal(&std::io::stdin()) { Some(&ask) } else { None },
    };
    let archive = StoredArchive { restorer: &restorer, content, layout: pg.meta.archive.as_ref() };
    let restored = bunker_sources::postgres::restore::restore(&archive, &target, &opts)?;
    run.bytes(restored.bytes, 0);
    run.detail("method", restored.method.into());
    if !ctx.global.json {
        println!(
            "restored snapshot {} ({}) into {} with {jobs} jobs ({}) in {:.1}s",
            snap.short_id(),
            size(restored.bytes),
            target.display(),
            restored.method,
            started.elapsed().as_secs_f64()
        );
    }
    if args.no_verify {
        if ctx.global.json {
            json(&serde_json::json!({ "snapshot": snap.id().to_hex(), "into": target.display(), "verified": false }));
        }
        return Ok(exit::OK);
    }
    let report = bunker_sources::postgres::verify::verify(&target, &pg.meta.tables, pg.assertions())?;
    run.detail("verified", true.into());
    Ok(super::pg::report(ctx, &report, run))
}

fn restore_files(
    ctx: &Context,
    repo: &Repository,
    args: &RestoreArgs,
    to: &std::path::Path,
    run: &mut Run,
) -> Result<i32> {
    let include = if args.include.is_empty() { None } else { Some(globs(&args.include)?) };
    run.detail("to", serde_json::json!(to));
    bunker_engine::restorer::ensure_empty_or_absent(to, args.force)?;
    let _lock = ctx.read_lock(repo, "restore")?;
    let snapshots = repo.load_snapshots()?;
    let snap = repo.select(&snapshots, args.snapshot())?;
    run.target(&snap.name);
    run.snapshot(&snap.id());
    let Root::Tree { tree } = &snap.root else {
        bail!(
            "snapshot {} is a stream; write it out with `bunker dump {} > FILE`, or restore a PostgreSQL dump with --into",
            snap.short_id(),
            args.snapshot()
        );
    };
    let (index, _) = repo.load_index()?;
    let started = std::time::Instant::now();
    let stats = Restorer::new(repo, &index).restore_tree(tree, to, include.as_ref(), args.force)?;
    run.bytes(stats.bytes, 0);
    if include.is_some() && stats.files + stats.dirs + stats.symlinks == 0 {
        bail!(
            "--include {} matched nothing in snapshot {}; patterns match paths below the snapshot's roots (e.g. 'conf/**', 'www/index.html')",
            args.include.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", "),
            snap.short_id()
        );
    }
    if ctx.global.json {
        json(&serde_json::json!({ "snapshot": snap.id().to_hex(), "to": to, "stats": stats }));
    } else {
        println!(
            "restored snapshot {} into {}: {} files, {} directories, {} symlinks, {} in {:.1}s",
            snap.short_id(),
            to.display(),
            stats.files,
            stats.dirs,
            stats.symlinks,
            size(stats.bytes),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(exit::OK)
}
