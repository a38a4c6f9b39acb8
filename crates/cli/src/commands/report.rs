//! `bunker report`: [`bunker_ops::report`] over a period (30 days by default), printed.

use anyhow::Result;
use bunker_ops::report::summarise;
use chrono::Utc;

use crate::cli::ReportArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size};

pub fn run(ctx: &Context, args: ReportArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let runs = repo.load_runs()?;
    let now = Utc::now();
    let lines = summarise(&runs, args.since, now, args.target.as_deref());
    let days = (now - args.since).num_seconds() as f64 / 86_400.0;
    let stored: f64 = lines.iter().map(|l| l.stored_per_day).sum();
    if ctx.global.json {
        json(&serde_json::json!({
            "since": args.since,
            "until": now,
            "days": days,
            "lines": lines,
            "stored_per_day": stored,
        }));
        return Ok(exit::OK);
    }
    println!("since {} ({days:.1} days)", args.since.format("%Y-%m-%d %H:%M UTC"));
    println!(
        "{:<20} {:<10} {:>5} {:>8} {:>9} {:>11} {:>11} {:>11}",
        "target", "operation", "runs", "success", "avg time", "avg read", "avg stored", "stored/day"
    );
    for l in &lines {
        println!(
            "{:<20} {:<10} {:>5} {:>7.1}% {:>8.1}s {:>11} {:>11} {:>11}",
            l.target,
            l.operation,
            l.runs,
            l.success_rate * 100.0,
            l.avg_duration_secs,
            size(l.avg_bytes_read as u64),
            size(l.avg_bytes_stored as u64),
            size(l.stored_per_day as u64),
        );
    }
    if lines.is_empty() {
        println!("no runs in this period");
    } else {
        println!("storage added: {} per day", size(stored as u64));
    }
    Ok(exit::OK)
}
