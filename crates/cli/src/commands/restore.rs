//! `bunker restore`: flags → a destination and options → the one restore route of
//! [`bunker_ops::restore`] (hooks, the kind's restore and verification, the catalog run) → what it
//! printed. By name, ID, `latest` or `--point`, it is the same route.

use anyhow::{anyhow, bail, Context as _, Result};
use bunker_ops::restore::{PointReport, RestoreReport, RestoreRequest};
use bunker_sources::postgres::wal;
use bunker_sources::{Destination, HomeBase, Recovery, RecoveryTarget, RestoreOptions, TargetAction};

use crate::cli::{PitrArgs, RestoreArgs};
use crate::context::Context;
use crate::exit;
use crate::output::json;
use crate::runs::{code_of, Printer};

pub fn run(ctx: &Context, args: RestoreArgs) -> Result<i32> {
    let config = ctx.config()?.map(|l| &l.config);
    let repo = ctx.open()?;
    let ask = |question: &str| crate::context::confirm(question);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let options = RestoreOptions {
        force: args.force,
        jobs: args.jobs,
        no_verify: args.no_verify,
        with_globals: args.with_globals,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        match_keys: args.match_keys.clone(),
        db: args.db,
        dry_run: args.dry_run,
        delete_extra: args.delete_extra,
        recovery: recovery(&args.pitr)?,
        confirm: if terminal { Some(&ask) } else { None },
    };
    let wal_fetch = |target: &str| wal_fetch_command(ctx, target).map_err(|e| bunker_sources::fail(exit::one_line(&e)));
    let request =
        RestoreRequest { selector: args.snapshot(), destination: destination(&args), options, wal_fetch: &wal_fetch };
    if let Some(point) = &args.point {
        let Some(config) = config else {
            bail!("restore --point puts each target back where the stack file says it lives; give --config PATH")
        };
        let base = HomeBase { files: args.to.clone(), pgdata: args.pitr.pgdata.clone(), several_data_dirs: false };
        let report =
            bunker_ops::restore::restore_point(config, &repo, ctx.lock_policy(), point, &base, &request, &Printer)?;
        return Ok(print_point(ctx, &report, args.dry_run));
    }
    let report = bunker_ops::restore::restore(config, &repo, ctx.lock_policy(), &request, &Printer)?;
    print(ctx, &report);
    Ok(code_of(report.status))
}

/// The destination the flags name, if any (without: where the snapshot's target lives).
fn destination(args: &RestoreArgs) -> Option<Destination> {
    if args.point.is_some() {
        return None;
    }
    if let Some(path) = &args.rdb_file {
        return Some(Destination::RdbFile(path.clone()));
    }
    if let Some(command) = &args.exec {
        return Some(Destination::Exec(command.clone()));
    }
    match (&args.to, &args.into, &args.pitr.pgdata) {
        (Some(to), _, _) => Some(Destination::Dir(to.clone())),
        (None, Some(into), _) => Some(Destination::Into(into.clone())),
        (None, None, Some(pgdata)) => Some(Destination::DataDir(pgdata.clone())),
        (None, None, None) => None,
    }
}

fn print(ctx: &Context, report: &RestoreReport) {
    if ctx.global.json {
        json(&report.restored.json);
        return;
    }
    for line in &report.restored.lines {
        println!("{line}");
    }
    for w in &report.restored.warnings {
        eprintln!("{w}");
    }
}

/// One line per snapshot of the point (or one JSON document), then the summary; returns the worst exit code.
fn print_point(ctx: &Context, report: &PointReport, dry_run: bool) -> i32 {
    let mut code = exit::OK;
    let mut results = Vec::new();
    for m in &report.members {
        let c = match &m.outcome {
            Ok(r) => code_of(r.status),
            Err(e) => {
                eprintln!("bunker: error: restore of {} failed: {e}", m.name);
                exit::code_for_operation(e)
            }
        };
        if let (Ok(r), false) = (&m.outcome, ctx.global.json) {
            print(ctx, r);
        }
        code = exit::worse(code, c);
        results.push(serde_json::json!({
            "snapshot": m.snapshot,
            "name": m.name,
            "into": m.into,
            "exit_code": c,
            "error": m.outcome.as_ref().err().map(|e| e.to_string()),
            "result": m.outcome.as_ref().ok().map(|r| r.restored.json.clone()),
        }));
    }
    // Restored around a damaged file elsewhere (3) is restored.
    let failed = results.iter().filter(|r| r["exit_code"] != exit::OK && r["exit_code"] != exit::INCOMPLETE).count();
    if ctx.global.json {
        json(
            &serde_json::json!({ "point": report.point, "time": report.time, "until": report.until.to_rfc3339(), "restored": results }),
        );
    } else {
        if dry_run {
            println!(
                "recovery point {}: would restore {} of {} snapshots (dry run: nothing was changed)",
                report.point,
                results.len() - failed,
                results.len()
            );
        } else {
            println!(
                "recovery point {}: {} of {} snapshots restored",
                report.point,
                results.len() - failed,
                results.len()
            );
        }
    }
    code
}

/// How a physical PostgreSQL restore recovers, from the flags.
fn recovery(p: &PitrArgs) -> Result<Recovery> {
    let action = TargetAction::parse(&p.target_action)
        .ok_or_else(|| anyhow!("--target-action {:?} is not one of promote, pause, shutdown", p.target_action))?;
    // None: latest; Some(0): the base backup's own ("current"), known once it is chosen.
    let timeline = match p.timeline.as_deref() {
        None | Some("latest") => None,
        Some("current") => Some(0),
        Some(t) => Some(t.parse::<u32>().map_err(|_| anyhow!("--timeline {t:?} is not latest, current or a number"))?),
    };
    Ok(Recovery {
        target: recovery_target(p)?,
        timeline,
        action,
        start: if p.start { Some((p.port.expect("clap requires --port with --start"), p.start_timeout)) } else { None },
        keep_archiving: p.keep_archiving,
        restore_command: p.restore_command.clone(),
    })
}

fn recovery_target(p: &PitrArgs) -> Result<RecoveryTarget> {
    Ok(if let Some(t) = &p.to_time {
        RecoveryTarget::Time(parse_time(t)?)
    } else if let Some(l) = &p.to_lsn {
        RecoveryTarget::Lsn(
            wal::parse_lsn(l).ok_or_else(|| anyhow!("--to-lsn {l:?} is not a WAL location like 0/3000148"))?,
        )
    } else if let Some(x) = p.to_xid {
        RecoveryTarget::Xid(x)
    } else if let Some(n) = &p.to_name {
        RecoveryTarget::Name(n.clone())
    } else if p.immediate {
        RecoveryTarget::Immediate
    } else {
        RecoveryTarget::Latest
    })
}

/// RFC 3339, or `YYYY-MM-DD HH:MM:SS[.frac][+TZ]` as PostgreSQL prints times; local time without a zone.
fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::FixedOffset>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%#z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, fmt) {
            return Ok(t);
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            if let Some(t) = naive.and_local_timezone(chrono::Local).earliest() {
                return Ok(t.fixed_offset());
            }
        }
    }
    bail!("--to-time {s:?} is not a time like 2026-11-21T10:15:00Z or \"2026-11-21 10:15:00+01\"")
}

/// The restore_command PostgreSQL will run: this bunker, the same repository and stack file, and the
/// password from a file (never the password itself in postgresql.auto.conf).
fn wal_fetch_command(ctx: &Context, target: &str) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find bunker's own path for restore_command")?;
    let mut cmd = String::new();
    let from_config = ctx
        .config()?
        .and_then(|c| c.config.repository.as_ref())
        .is_some_and(|r| r.password.is_some() || r.password_file.is_some());
    if let Ok(file) = std::env::var("BUNKER_PASSWORD_FILE") {
        let abs = std::fs::canonicalize(&file).with_context(|| format!("BUNKER_PASSWORD_FILE {file}"))?;
        cmd.push_str(&format!("BUNKER_PASSWORD_FILE={} ", shell_quote(&abs.display().to_string())));
    } else if std::env::var_os("BUNKER_PASSWORD").is_some() || !from_config {
        bail!(
            "restore_command needs the repository password without a prompt: set BUNKER_PASSWORD_FILE (its path goes into restore_command) or password_file in the stack file, or give --restore-command"
        );
    }
    if let Ok(dir) = std::env::var("BUNKER_CACHE_DIR") {
        cmd.push_str(&format!("BUNKER_CACHE_DIR={} ", shell_quote(&dir)));
    }
    cmd.push_str(&shell_quote(&exe.display().to_string()));
    if let Some(repo) = &ctx.global.repo {
        let repo = match std::fs::canonicalize(repo) {
            Ok(abs) => abs.display().to_string(),
            Err(_) => repo.clone(),
        };
        cmd.push_str(&format!(" --repo {}", shell_quote(&repo)));
    }
    if let Some(loaded) = ctx.config()? {
        let abs = std::fs::canonicalize(&loaded.path).unwrap_or_else(|_| loaded.path.clone());
        cmd.push_str(&format!(" --config {}", shell_quote(&abs.display().to_string())));
    }
    cmd.push_str(&format!(" wal-fetch --target {} %f %p", shell_quote(target)));
    if matches!(ctx.location()?, bunker_engine::storage::Location::S3(_))
        && std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("AWS_"))
    {
        tracing::warn!(
            "restore_command runs in PostgreSQL's environment, without this shell's AWS_* variables: make sure the server's user finds S3 credentials (~/.aws, or the server's environment), or recovery stops at its first segment"
        );
    }
    Ok(cmd)
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-:=+@".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_the_forms_people_paste() {
        let utc = |s: &str| parse_time(s).unwrap().with_timezone(&chrono::Utc).to_rfc3339();
        assert_eq!(utc("2026-11-21T10:15:00Z"), "2026-11-21T10:15:00+00:00");
        assert_eq!(utc("2026-11-21 10:15:00.123456+01"), "2026-11-21T09:15:00.123456+00:00");
        assert_eq!(utc("2026-11-21 10:15:00+01:00"), "2026-11-21T09:15:00+00:00");
        assert!(parse_time("2026-11-21 10:15:00").is_ok());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/usr/bin/bunker"), "/usr/bin/bunker");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
