use anyhow::Result;
use bunker_engine::catalog::RunStatus;

use crate::cli::HistoryArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size};

pub fn run(ctx: &Context, args: HistoryArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let runs: Vec<_> = repo
        .load_runs()?
        .into_iter()
        .filter(|r| {
            args.target.as_ref().is_none_or(|t| {
                r.target.as_ref().is_some_and(|name| {
                    name == t || name.strip_prefix(t.as_str()).is_some_and(|rest| rest.starts_with('/'))
                })
            })
        })
        .filter(|r| args.operation.as_ref().is_none_or(|op| &r.operation == op))
        .filter(|r| args.since.is_none_or(|since| r.started >= since))
        .filter(|r| !args.failed || r.status != RunStatus::Success)
        .collect();
    if ctx.global.json {
        let rows: Vec<_> = runs
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).expect("serialisable");
                v["id"] = r.id.map(|id| id.to_hex()).into();
                v["duration_secs"] = r.duration_secs().into();
                v
            })
            .collect();
        json(&rows);
        return Ok(exit::OK);
    }
    println!(
        "{:<20} {:<9} {:<20} {:<11} {:>9} {:>11} {:>11} {:<10} error",
        "started", "operation", "target", "status", "duration", "read", "stored", "snapshot"
    );
    for r in &runs {
        println!(
            "{:<20} {:<9} {:<20} {:<11} {:>8.1}s {:>11} {:>11} {:<10} {}",
            r.started.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S"),
            r.operation,
            r.target.as_deref().unwrap_or("-"),
            r.status.as_str(),
            r.duration_secs(),
            size(r.bytes_read),
            size(r.bytes_stored),
            r.snapshot.as_deref().map(|s| &s[..8.min(s.len())]).unwrap_or("-"),
            r.error.as_deref().unwrap_or("")
        );
    }
    let failed = runs.iter().filter(|r| r.status != RunStatus::Success).count();
    println!("{} runs, {failed} not successful", runs.len());
    Ok(exit::OK)
}
