//! One module per verb. Each parses nothing and decides little: it opens what it needs, locks, calls the
//! engine, and prints.

mod backup;
mod check;
mod config;
mod copy;
mod daemon;
mod drill;
mod drills;
mod dump;
mod forget;
mod history;
mod init;
mod key;
mod ls;
mod objectlock;
mod points;
mod prune;
mod repair;
mod report;
mod restore;
mod snapshots;
mod stats;
pub(crate) mod status;
mod unlock;
mod verify;
mod wal;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::context::Context;

/// Runs a command; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let ctx = Context::new(cli.global);
    bunker_ops::notify::install(ctx.config().ok().flatten().map(|loaded| &loaded.config));
    // What a command that completed around damaged files exits with: "done, with problems". PostgreSQL
    // reads wal-push's and wal-fetch's codes, and status has a scale of its own (a warning there).
    let around_damage = match &cli.command {
        Command::WalPush(_) | Command::WalFetch(_) | Command::Daemon(_) | Command::Repair(_) => None,
        Command::Status => Some(crate::exit::FAILURE),
        _ => Some(crate::exit::INCOMPLETE),
    };
    let code = dispatch(&ctx, cli.command)?;
    let damaged = ctx.damaged();
    match around_damage {
        Some(instead) if code == crate::exit::OK && !damaged.is_empty() => {
            // Each file was warned about when first met; this line sums them up.
            eprintln!(
                "bunker: done, skipping {} damaged repository file(s) ({}); `bunker check` names them, `bunker repair` removes them",
                damaged.len(),
                damaged.iter().map(|d| d.path.as_str()).collect::<Vec<_>>().join(", ")
            );
            Ok(instead)
        }
        _ => Ok(code),
    }
}

fn dispatch(ctx: &Context, command: Command) -> Result<i32> {
    match command {
        Command::Init(a) => init::run(ctx, a),
        Command::Backup(a) => backup::run(ctx, a),
        Command::Snapshots(a) => snapshots::run(ctx, a),
        Command::Dump(a) => dump::run(ctx, a),
        Command::Restore(a) => restore::run(ctx, *a),
        Command::Verify(a) => verify::run(ctx, a),
        Command::Check(a) => check::run(ctx, a),
        Command::History(a) => history::run(ctx, a),
        Command::Forget(a) => forget::run(ctx, a),
        Command::Prune(a) => prune::run(ctx, a),
        Command::Repair(c) => repair::run(ctx, c),
        Command::Stats => stats::run(ctx),
        Command::Status => status::run(ctx),
        Command::Points => points::list(ctx),
        Command::Report(a) => report::run(ctx, a),
        Command::Copy(a) => copy::run(ctx, a),
        Command::Daemon(a) => daemon::run(ctx, a),
        Command::Drill(a) => drill::run(ctx, a),
        Command::Drills(a) => drills::run(ctx, a),
        Command::Config(c) => config::run(ctx, c),
        Command::Key(k) => key::run(ctx, k),
        Command::Ls(a) => ls::list(ctx, a),
        Command::Versions(a) => ls::versions(ctx, a),
        Command::ObjectLock(c) => objectlock::run(ctx, c),
        Command::Unlock(a) => unlock::run(ctx, a),
        Command::WalPush(a) => wal::push(ctx, a),
        Command::WalFetch(a) => wal::fetch(ctx, a),
        Command::Wal(c) => wal::run(ctx, c),
    }
}
