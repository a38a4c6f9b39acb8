//! `bunker verify SNAPSHOT --against DB`: a database checked against a PostgreSQL snapshot's recorded
//! row counts, foreign keys and the target's assertions, without restoring anything.

use anyhow::{bail, Result};
use bunker_engine::Repository;
use bunker_sources::postgres::{self, verify::verify, LogicalMeta};

use crate::cli::VerifyArgs;
use crate::context::Context;
use crate::exit;
use crate::output::json;
use crate::runs::{Finish, Run};

pub fn run(ctx: &Context, args: VerifyArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let mut run = Run::start("verify");
    run.target(&args.snapshot);
    let outcome = verify_against(ctx, &repo, &args, &mut run);
    run.finish(&repo, outcome.as_ref().copied());
    outcome
}

fn verify_against(ctx: &Context, repo: &Repository, args: &VerifyArgs, run: &mut Run) -> Result<i32> {
    let snapshots = repo.load_snapshots()?;
    let snap = repo.select(&snapshots, &args.snapshot)?;
    run.target(&snap.name);
    run.snapshot(&snap.id());
    if snap.kind != postgres::logical::KIND {
        bail!("snapshot {} is a {} snapshot, not a PostgreSQL one", snap.short_id(), snap.kind);
    }
    let meta: LogicalMeta = bunker_sources::drill::facts(snap, "PostgreSQL")?;
    let target = bunker_ops::points::target_of(&snap.name);
    let settings = match ctx.config()?.and_then(|c| c.config.target(target)) {
        Some(t) if t.kind == "postgres" => Some(postgres::settings(t)?),
        _ => None,
    };
    let against = postgres::database(settings.as_ref(), &args.against)?;
    run.detail("against", against.display().into());
    let assertions = settings.as_ref().map(|s| s.assertions.as_slice()).unwrap_or(&[]);
    let report = verify(&against, &meta.tables, assertions)?;
    let failures = report.failures();
    if !failures.is_empty() {
        run.problem(format!("verification failed: {}", failures.join("; ")));
    }
    if ctx.global.json {
        json(&serde_json::json!({ "ok": failures.is_empty(), "failures": failures, "report": report }));
    } else {
        for line in postgres::report_lines(&report) {
            println!("{line}");
        }
        for f in &failures {
            eprintln!("mismatch: {f}");
        }
    }
    Ok(if failures.is_empty() { exit::OK } else { exit::FAILURE })
}
