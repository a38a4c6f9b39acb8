use anyhow::Result;
use bunker_ops::status::{gather, StatusReport};

use crate::context::Context;
use crate::output::{json, size};

/// `bunker status`: each target's health from the catalog (and, for physical PostgreSQL, the WAL
/// archive), the repository's size and growth, and the last check and drill. Exit 0 ok, 1 warning,
/// 2 critical.
pub fn run(ctx: &Context) -> Result<i32> {
    let stack = ctx.config()?.map(|s| &s.config);
    let repo = ctx.open()?;
    let runs = repo.load_runs()?;
    let report = gather(stack, &repo, &runs, chrono::Utc::now())?;
    if ctx.global.json {
        json(&report);
    } else {
        print(&report);
    }
    Ok(report.level.exit_code())
}

fn print(report: &StatusReport) {
    for t in &report.targets {
        let since = t
            .last_success_age_secs
            .map(|a| {
                format!("last success {} ago", humantime::format_duration(std::time::Duration::from_secs(a as u64)))
            })
            .unwrap_or_else(|| "never backed up".into());
        let wal = t.wal_archive_age_secs.map(|a| format!(", live RPO {a:.0} s")).unwrap_or_default();
        println!(
            "{:<8} {}: {since}{wal}, {} failed of {} in 7 days",
            format!("{:?}", t.level).to_uppercase(),
            t.target,
            t.failures_7d,
            t.runs_7d
        );
        for r in &t.reasons {
            println!("         - {r}");
        }
    }
    let repo = &report.repository;
    println!(
        "repository: {} in {} snapshots, +{} in 7 days",
        size(repo.stored_bytes),
        repo.snapshots,
        size(repo.growth_7d_bytes)
    );
    println!("protection: {}", repo.protection.describe());
    for (what, r) in [("check", &report.last_check), ("drill", &report.last_drill)] {
        match r {
            Some(r) => println!("last {what}: {} ({})", r.ended.format("%Y-%m-%d %H:%M UTC"), r.status.as_str()),
            None => println!("last {what}: never"),
        }
    }
    println!("overall: {}", format!("{:?}", report.level).to_lowercase());
}
