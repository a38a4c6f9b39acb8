use std::collections::BTreeSet;

use anyhow::Result;
use bunker_config::{Config, HealthConfig};
use bunker_engine::catalog::{RunRecord, RunStatus};
use bunker_engine::Repository;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::context::Context;
use crate::health::{self, Level, TargetHealth};
use crate::output::{json, size};

/// What `bunker status --json` prints and the daemon serves at `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub level: Level,
    pub time: DateTime<Utc>,
    pub targets: Vec<TargetHealth>,
    pub repository: RepositorySummary,
    pub last_check: Option<RunBrief>,
    pub last_drill: Option<RunBrief>,
    pub thresholds: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepositorySummary {
    pub stored_bytes: u64,
    pub snapshots: usize,
    pub growth_7d_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunBrief {
    pub ended: DateTime<Utc>,
    pub status: RunStatus,
    pub error: Option<String>,
}

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

/// Judges every target of the stack file (without one, every target the catalog has seen backed up)
/// from `runs` as of `now`.
pub fn gather(
    stack: Option<&Config>,
    repo: &Repository,
    runs: &[RunRecord],
    now: DateTime<Utc>,
) -> Result<StatusReport> {
    let thresholds = stack.map(|s| s.health.clone()).unwrap_or_default();
    let by_target = health::runs_by_target(runs);
    let targets: Vec<String> = match stack {
        Some(s) => s.targets.iter().map(|t| t.name.clone()).collect(),
        None => by_target
            .iter()
            .filter(|(_, rs)| rs.iter().any(|r| r.operation == "backup"))
            .map(|(t, _)| t.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let mut judged: Vec<TargetHealth> = Vec::new();
    for target in &targets {
        // What the target keeps beside its snapshots (archived WAL), as its kind reports it.
        let live = match stack.and_then(|s| s.target(target)) {
            Some(t) => match bunker_sources::kind_of_target(t) {
                Ok(kind) => kind.live_data(repo, t)?,
                Err(_) => None,
            },
            None => None,
        };
        let wal = live.map(|l| l.newest.and_then(|t| t.elapsed().ok()).filter(|_| l.files > 0));
        let none = Vec::new();
        let runs = by_target.get(target).unwrap_or(&none);
        judged.push(health::evaluate_target(target, runs, now, &thresholds, wal));
    }
    let stats = bunker_engine::stats::stats(repo)?;
    let week = now - chrono::Duration::days(7);
    let growth_7d_bytes: u64 = runs.iter().filter(|r| r.ended > week).map(|r| r.bytes_stored).sum();
    let last = |op: &str| -> Option<RunBrief> {
        runs.iter().filter(|r| r.operation == op).max_by_key(|r| r.ended).map(|r| RunBrief {
            ended: r.ended,
            status: r.status,
            error: r.error.clone(),
        })
    };
    Ok(StatusReport {
        level: judged.iter().map(|t| t.level).max().unwrap_or(Level::Ok),
        time: now,
        repository: RepositorySummary { stored_bytes: stats.stored_bytes, snapshots: stats.snapshots, growth_7d_bytes },
        last_check: last("check"),
        last_drill: last("drill"),
        thresholds: thresholds_json(&thresholds),
        targets: judged,
    })
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
    for (what, r) in [("check", &report.last_check), ("drill", &report.last_drill)] {
        match r {
            Some(r) => println!("last {what}: {} ({})", r.ended.format("%Y-%m-%d %H:%M UTC"), r.status.as_str()),
            None => println!("last {what}: never"),
        }
    }
    println!("overall: {}", format!("{:?}", report.level).to_lowercase());
}

fn thresholds_json(t: &HealthConfig) -> serde_json::Value {
    serde_json::json!({
        "warning_after_secs": t.warning_after.as_secs(),
        "critical_after_secs": t.critical_after.as_secs(),
        "wal_warning_after_secs": t.wal_warning_after.as_secs(),
        "wal_critical_after_secs": t.wal_critical_after.as_secs(),
    })
}
