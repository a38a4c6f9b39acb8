use anyhow::Result;
use bunker_engine::check::{check, ReadData};

use crate::cli::CheckArgs;
use crate::context::Context;
use crate::exit;
use crate::output::json;

pub fn run(ctx: &Context, args: CheckArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let _lock = ctx.lock(&repo, false, "check")?;
    let mode = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(p)) => ReadData::Subset(p),
        _ => ReadData::None,
    };
    let report = check(&repo, mode)?;
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
