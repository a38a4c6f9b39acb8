use anyhow::Result;
use bunker_engine::check::{check, ReadData};
use bunker_ops::details::{CheckDetails, Details};

use crate::cli::{CheckArgs, DataSubset};
use crate::context::Context;
use crate::exit;
use crate::output::json;
use crate::runs::{Finish, Run};

/// `bunker check`: the repository's structure and, with `--read-data[-subset]`, its bytes. Recorded in
/// the catalog (operation `check`, with the part read), which `status` and the daemon's rotation read.
pub fn run(ctx: &Context, args: CheckArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let mut run = Run::start("check");
    let outcome = check_and_print(ctx, &repo, &args, &mut run);
    run.finish(&repo, outcome.as_ref().copied());
    outcome
}

fn check_and_print(ctx: &Context, repo: &bunker_engine::Repository, args: &CheckArgs, run: &mut Run) -> Result<i32> {
    let _lock = ctx.read_lock(repo, "check")?;
    let mode = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(DataSubset::Percent(p))) => ReadData::Subset(p),
        (false, Some(DataSubset::Part { n, of })) => ReadData::Part { n, of },
        _ => ReadData::None,
    };
    let mut details = CheckDetails {
        read_data: match mode {
            ReadData::None => "none".to_string(),
            ReadData::All => "all".to_string(),
            ReadData::Subset(p) => format!("{p}%"),
            ReadData::Part { n, of } => format!("{n}/{of}"),
        },
        packs_read: 0,
    };
    run.details(&Details::Check(details.clone()));
    let report = check(repo, mode)?;
    details.packs_read = report.packs_read as u64;
    run.details(&Details::Check(details));
    if !report.is_ok() {
        run.problem(format!("{} errors: {}", report.errors.len(), report.errors.first().cloned().unwrap_or_default()));
    }
    if ctx.global.json {
        json(&report);
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        for (pack, snaps) in &report.damaged_packs {
            let who = if snaps.is_empty() { "no snapshot".to_string() } else { snaps.join(", ") };
            eprintln!("damaged pack {pack} affects: {who}");
        }
        println!(
            "checked {} snapshots, {} packs ({} read), {} blobs: {}",
            report.snapshots,
            report.packs,
            report.packs_read,
            report.blobs,
            if report.is_ok() { "no errors".to_string() } else { format!("{} errors", report.errors.len()) }
        );
    }
    Ok(if report.is_ok() { exit::OK } else { exit::FAILURE })
}
