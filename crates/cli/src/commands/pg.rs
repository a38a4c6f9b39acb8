//! What restore and verify share for PostgreSQL snapshots: the target's settings from the stack file,
//! the database a `--into` / `--against` names, and the verification report.

use anyhow::{bail, Result};
use bunker_engine::Snapshot;
use bunker_sources::postgres::{self, Assertion, ConnInfo, LogicalMeta, VerifyReport};

use crate::context::Context;
use crate::exit;
use crate::output::json;
use crate::runs::Run;

pub struct PgSnapshot {
    pub meta: LogicalMeta,
    pub settings: Option<postgres::TargetSettings>,
}

/// The recorded facts of a logical snapshot and, when the stack file has its target, the target's settings.
pub fn load(ctx: &Context, snap: &Snapshot) -> Result<PgSnapshot> {
    if snap.kind != postgres::logical::KIND {
        bail!("snapshot {} is a {} snapshot, not a PostgreSQL one", snap.short_id(), snap.kind);
    }
    let meta: LogicalMeta = serde_json::from_value(snap.meta.clone())
        .map_err(|e| anyhow::anyhow!("snapshot {} has unreadable PostgreSQL facts: {e}", snap.short_id()))?;
    let target_name = snap.name.split('/').next().unwrap_or(&snap.name);
    let settings = match ctx.config()?.and_then(|c| c.config.target(target_name)) {
        Some(t) if t.kind == "postgres" => Some(postgres::settings(t)?),
        _ => None,
    };
    Ok(PgSnapshot { meta, settings })
}

/// The stack file's settings of a postgres target, when it has that target.
pub fn target_settings(ctx: &Context, target_name: &str) -> Result<Option<postgres::TargetSettings>> {
    Ok(match ctx.config()?.and_then(|c| c.config.target(target_name)) {
        Some(t) if t.kind == "postgres" => Some(postgres::settings(t)?),
        _ => None,
    })
}

impl PgSnapshot {
    /// A URL or keyword string as given; a bare name is a database on the target's server.
    pub fn database(&self, spec: &str) -> Result<ConnInfo> {
        if spec.contains("://") || spec.contains('=') {
            return Ok(ConnInfo::resolve(spec)?);
        }
        match &self.settings {
            Some(s) => Ok(s.conn.with_dbname(spec)),
            None => Ok(ConnInfo::resolve(&format!("dbname={spec}"))?),
        }
    }

    pub fn assertions(&self) -> &[Assertion] {
        self.settings.as_ref().map(|s| s.assertions.as_slice()).unwrap_or(&[])
    }
}

/// Prints a verification report and notes its mismatches in the run; returns the exit code (1 on any).
pub fn report(ctx: &Context, report: &VerifyReport, run: &mut Run) -> i32 {
    let failures = report.failures();
    if !failures.is_empty() {
        run.problem(format!("verification failed: {}", failures.join("; ")));
    }
    let code = if failures.is_empty() { exit::OK } else { exit::FAILURE };
    if ctx.global.json {
        json(&serde_json::json!({ "ok": failures.is_empty(), "failures": failures, "report": report }));
        return code;
    }
    let ok_tables = report.tables.iter().filter(|t| t.actual == Some(t.expected)).count();
    let ok_fks = report.foreign_keys.iter().filter(|f| f.orphans == 0).count();
    let ok_asserts = report.assertions.iter().filter(|a| a.actual.as_ref().is_ok_and(|v| *v == a.expected)).count();
    println!(
        "verified {}: row counts {}/{} tables, foreign keys {}/{} without orphans, assertions {}/{}",
        report.database,
        ok_tables,
        report.tables.len(),
        ok_fks,
        report.foreign_keys.len(),
        ok_asserts,
        report.assertions.len()
    );
    for f in &failures {
        eprintln!("mismatch: {f}");
    }
    code
}
