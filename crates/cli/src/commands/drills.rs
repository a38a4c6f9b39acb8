//! `bunker drills`: the drills the catalog records, newest last, whichever host ran them; with
//! `--report FILE`, the HTML report of the newest one with the RTO history of those listed. A listing:
//! it exits 0 even when drills failed (`bunker drill` is the one whose exit code says).

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Utc};

use crate::cli::DrillsArgs;
use crate::context::Context;
use crate::exit;
use crate::output::json;
use bunker_ops::drill::html;
use bunker_ops::drill::record::{self, secs, StoredDrill};

pub fn run(ctx: &Context, args: DrillsArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let drills = select(record::drills(&repo.load_runs_of(&["drill"])?), args.since);
    if let Some(path) = &args.report {
        let Some(newest) = drills.last() else { bail!("no drill in the catalog yet: run `bunker drill`") };
        std::fs::write(path, html::render(newest, &drills))
            .with_context(|| format!("writing the drill report to {}", path.display()))?;
    }
    if ctx.global.json {
        json(&drills);
    } else if drills.is_empty() {
        println!("no drills yet: run `bunker drill`");
    } else {
        for d in &drills {
            println!("{}", line(d));
        }
        println!("{}", summary(&drills));
    }
    if let Some(path) = &args.report {
        // Not on stdout with --json: that is one JSON document.
        if ctx.global.json {
            eprintln!("report: {}", path.display());
        } else {
            println!("report: {}", path.display());
        }
    }
    Ok(exit::OK)
}

/// The drills that started at or after `since`, oldest first.
fn select(mut drills: Vec<StoredDrill>, since: Option<DateTime<Utc>>) -> Vec<StoredDrill> {
    drills.retain(|d| since.is_none_or(|s| d.started >= s));
    drills.sort_by_key(|d| d.started);
    drills
}

/// `2026-11-20 03:00  FAILED  nightly  1/2 targets  RTO 3m30s (objective 10m00s)  RPO 1h00m  db …: row counts: …`
fn line(d: &StoredDrill) -> String {
    let started = d.started.format("%Y-%m-%d %H:%M");
    let verdict = html::verdict(d);
    let Some(r) = &d.record else {
        return format!("{started}  {verdict:<11}  {}", d.error.as_deref().unwrap_or("no drill record"));
    };
    let point = r.point.as_deref().unwrap_or("newest snapshots");
    let passed = r.targets.iter().filter(|t| t.passed).count();
    let objective = |o: Option<f64>| o.map(|o| format!(" (objective {})", secs(o))).unwrap_or_default();
    let mut out = format!(
        "{started}  {verdict:<11}  {point}  {passed}/{} targets  RTO {}{}  RPO {}{}",
        r.targets.len(),
        secs(r.rto_seconds),
        objective(r.rto_objective_seconds),
        secs(r.rpo_seconds),
        objective(r.rpo_objective_seconds),
    );
    if let Some(first) = r.problems.first().or(d.error.as_ref()) {
        out.push_str("  ");
        out.push_str(first);
        if r.problems.len() > 1 {
            out.push_str(&format!(" (+{} more)", r.problems.len() - 1));
        }
    }
    out
}

/// `3 drills, 2 passed; last passed at 2026-11-19 03:00 UTC`
fn summary(drills: &[StoredDrill]) -> String {
    let passed: Vec<&StoredDrill> = drills.iter().filter(|d| html::verdict(d) == "PASSED").collect();
    let last = match passed.last() {
        Some(d) => format!("last passed at {}", d.started.format("%Y-%m-%d %H:%M UTC")),
        None => "none passed".into(),
    };
    format!("{} drill{}, {} passed; {last}", drills.len(), if drills.len() == 1 { "" } else { "s" }, passed.len())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use bunker_ops::drill::record::{DrillRecord, TargetDrill};

    fn drill(day: u32, passed: Option<bool>) -> StoredDrill {
        let started = Utc.with_ymd_and_hms(2026, 11, day, 3, 0, 0).unwrap();
        let record = passed.map(|passed| DrillRecord {
            point: day.is_multiple_of(2).then(|| format!("p{day}")),
            passed,
            rto_seconds: 210.0,
            rto_objective_seconds: Some(600.0),
            rpo_seconds: 3600.0,
            targets: vec![
                TargetDrill { target: "db".into(), passed, ..Default::default() },
                TargetDrill { target: "cache".into(), passed: true, ..Default::default() },
            ],
            problems: if passed { vec![] } else { vec!["db: row counts: off by one".into(), "RPO".into()] },
            ..Default::default()
        });
        StoredDrill {
            started,
            ended: started,
            host: "h".into(),
            status: if passed == Some(true) { "success" } else { "failed" }.into(),
            error: passed.is_none().then(|| "no recovery point".into()),
            record,
        }
    }

    #[test]
    fn lines_say_the_verdict_point_targets_objectives_and_first_problem() {
        assert_eq!(
            line(&drill(20, Some(false))),
            "2026-11-20 03:00  FAILED       p20  1/2 targets  RTO 3m30s (objective 10m00s)  RPO 1h00m  \
             db: row counts: off by one (+1 more)"
        );
        assert_eq!(
            line(&drill(21, Some(true))),
            "2026-11-21 03:00  PASSED       newest snapshots  2/2 targets  RTO 3m30s (objective 10m00s)  RPO 1h00m"
        );
        assert_eq!(line(&drill(22, None)), "2026-11-22 03:00  FAILED       no recovery point");
    }

    #[test]
    fn selection_is_since_and_oldest_first_and_summary_counts() {
        let all = vec![drill(22, None), drill(19, Some(true)), drill(10, Some(true)), drill(20, Some(false))];
        let since = Utc.with_ymd_and_hms(2026, 11, 15, 0, 0, 0).unwrap();
        let picked = select(all, Some(since));
        let days: Vec<_> = picked.iter().map(|d| d.started.format("%d").to_string()).collect();
        assert_eq!(days, ["19", "20", "22"]);
        assert_eq!(summary(&picked), "3 drills, 1 passed; last passed at 2026-11-19 03:00 UTC");
        assert_eq!(summary(&picked[1..2]), "1 drill, 0 passed; none passed");
    }
}
