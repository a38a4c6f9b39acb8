//! `bunker restore TARGET --pgdata DIR [--to-…] [--start --port P]`: a physical PostgreSQL target
//! restored to a point in time.

use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::Root;
use bunker_engine::Repository;
use bunker_sources::postgres::pitr::{self, RecoverySettings, RecoveryTarget, TargetAction};
use bunker_sources::postgres::tools::PgTools;
use bunker_sources::postgres::wal;

use crate::cli::{PitrArgs, RestoreArgs};
use crate::context::Context;
use crate::exit;
use crate::output::{json, size};
use crate::runs::Run;

pub fn restore(ctx: &Context, repo: &Repository, args: &RestoreArgs, pgdata: &Path, run: &mut Run) -> Result<i32> {
    let p = &args.pitr;
    let target = recovery_target(p)?;
    let action = TargetAction::parse(&p.target_action)
        .ok_or_else(|| anyhow!("--target-action {:?} is not one of promote, pause, shutdown", p.target_action))?;
    // None: latest; Some(0): the base backup's own ("current"), known once it is chosen.
    let timeline = match p.timeline.as_deref() {
        None | Some("latest") => None,
        Some("current") => Some(0),
        Some(t) => Some(t.parse::<u32>().map_err(|_| anyhow!("--timeline {t:?} is not latest, current or a number"))?),
    };
    let (name, pinned) = match args.snapshot().split_once(':') {
        Some((n, "latest")) => (n.to_string(), None),
        Some((n, id)) => (n.to_string(), Some(id.to_string())),
        None => (args.snapshot().to_string(), None),
    };
    run.target(&name);
    run.detail("pgdata", serde_json::json!(pgdata));
    run.detail("recovery_target", target.describe().into());
    pitr::check_data_dir(pgdata, args.force)?;
    let _lock = ctx.read_lock(repo, "restore")?;
    let bases = super::wal::base_backups(repo, &name)?;
    let chosen = match &pinned {
        Some(id) => bases
            .iter()
            .position(|(s, _)| s.id().to_hex().starts_with(id.as_str()))
            .ok_or_else(|| anyhow!("{name} has no base backup {id}; `bunker snapshots --name {name}` lists them"))?,
        None => {
            let metas: Vec<_> = bases.iter().map(|(_, m)| m.clone()).collect();
            pitr::choose_base(&metas, &target, timeline.filter(|t| *t > 0)).map_err(|e| anyhow!("{name}: {e}"))?
        }
    };
    let (snap, meta) = &bases[chosen];
    run.snapshot(&snap.id());
    let Root::Tree { tree } = &snap.root else { bail!("snapshot {} holds no data directory", snap.short_id()) };
    let timeline = pitr::replay_timeline(repo, &name, meta, &target, timeline)?;
    run.detail("timeline", timeline.into());
    let restore_command = match &p.restore_command {
        Some(c) => c.clone(),
        None => wal_fetch_command(ctx, &name)?,
    };
    let started = std::time::Instant::now();
    let (index, _) = repo.load_index()?;
    if args.force && pgdata.exists() {
        pitr::empty_data_dir(pgdata)?;
    }
    let stats = Restorer::new(repo, &index).restore_tree(tree, pgdata, None, args.force)?;
    run.bytes(stats.bytes, 0);
    let comment = format!(
        "base backup {} of {} ({}), to {}, at {}",
        snap.short_id(),
        name,
        meta.stop_time.format("%Y-%m-%d %H:%M:%S UTC"),
        target.describe(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    pitr::configure(
        pgdata,
        &RecoverySettings {
            target: &target,
            timeline: Some(&timeline.to_string()),
            action,
            restore_command: &restore_command,
            archive_off: !p.keep_archiving,
            comment: &comment,
        },
    )?;
    let restored_secs = started.elapsed().as_secs_f64();
    if !ctx.global.json {
        println!(
            "restored base backup {} of {name} (taken {}, {}) into {} in {restored_secs:.1}s; recovery to {} configured",
            snap.short_id(),
            meta.stop_time.format("%Y-%m-%d %H:%M:%S UTC"),
            size(stats.bytes),
            pgdata.display(),
            target.describe()
        );
    }
    let mut report = serde_json::json!({
        "snapshot": snap.id().to_hex(), "pgdata": pgdata, "bytes": stats.bytes, "files": stats.files,
        "base_backup_stop_lsn": meta.stop_lsn, "recovery_target": target.describe(), "restore_seconds": restored_secs,
    });
    if p.start {
        let port = p.port.expect("clap requires --port with --start");
        let major = (meta.server_version_num / 10000) as u32;
        let settings = super::pg::target_settings(ctx, &name)?;
        let tools = PgTools::find(major, settings.as_ref().and_then(|s| s.pg_bin_dir.as_deref()))?;
        let reached = pitr::start_and_wait(pgdata, &tools.bin("pg_ctl"), port, action, p.start_timeout)?;
        run.detail("reached", serde_json::to_value(&reached).expect("serialises"));
        if !ctx.global.json {
            println!(
                "recovery {} after {:.1}s: {}{}{}",
                reached.state,
                reached.seconds,
                reached.stop_line.as_deref().unwrap_or("replayed all archived WAL"),
                reached.last_transaction.as_deref().map(|t| format!("; last transaction at {t}")).unwrap_or_default(),
                reached.timeline.map(|t| format!("; new timeline {t}")).unwrap_or_default(),
            );
            if reached.state != "shut down" {
                println!("PostgreSQL is running on port {port}, socket directory {}", pgdata.display());
            }
        }
        report["reached"] = serde_json::to_value(&reached).expect("serialises");
    }
    if ctx.global.json {
        json(&report);
    }
    Ok(exit::OK)
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
