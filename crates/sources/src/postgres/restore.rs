//! Restoring a logical snapshot: into a new or empty database (created when missing), in parallel with
//! `pg_restore -j`. A database that already holds tables is only written with `force`, which drops what
//! the dump recreates (`--clean --if-exists`).

use std::path::Path;
use std::process::Stdio;

use super::conn::{error_text, ConnInfo};
use super::tools::PgTools;
use crate::SourceError;

pub struct RestoreOptions<'a> {
    pub jobs: usize,
    pub force: bool,
    /// Keep object owners and privileges (the roles must exist, e.g. restored with the globals).
    pub keep_owners: bool,
    pub pg_bin_dir: Option<&'a Path>,
    /// Asked (with a description of the target) before replacing a non-empty database without `force`;
    /// `None` refuses outright.
    pub confirm: Option<&'a dyn Fn(&str) -> bool>,
}

/// Restores the custom-format archive at `dump` into the database `into`.
pub fn restore(dump: &Path, into: &ConnInfo, opts: &RestoreOptions<'_>) -> Result<(), SourceError> {
    let mut admin = into.with_dbname("postgres").connect()?;
    let target = into.display();
    let sql_err = |e: postgres::Error| SourceError::Query { target: target.clone(), detail: error_text(&e) };
    let major: i32 =
        admin.query_one("SELECT current_setting('server_version_num')::int / 10000", &[]).map_err(sql_err)?.get(0);
    let exists: bool = admin
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", &[&into.dbname])
        .map_err(sql_err)?
        .get(0);
    if !exists {
        let quoted = format!("\"{}\"", into.dbname.replace('"', "\"\""));
        admin.batch_execute(&format!("CREATE DATABASE {quoted}")).map_err(sql_err)?;
    }
    let mut force = opts.force;
    if exists {
        let tables = user_relations(into)?;
        if tables > 0 && !force {
            let what = format!("database {} is not empty ({tables} tables)", into.display());
            match opts.confirm {
                Some(ask) if ask(&what) => force = true,
                _ => {
                    return Err(SourceError::Config(format!("{what}; pass --force to replace what the dump contains")))
                }
            }
        }
    }
    drop(admin);
    let tools = PgTools::find(major as u32, opts.pg_bin_dir)?;
    let mut cmd = into.tool(tools.bin("pg_restore"));
    cmd.args(["--exit-on-error", "--format=custom"]).arg(format!("--jobs={}", opts.jobs.max(1)));
    if force {
        cmd.args(["--clean", "--if-exists"]);
    }
    if !opts.keep_owners {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
    cmd.arg(dump).stdout(Stdio::null());
    let out = cmd.output().map_err(|e| SourceError::Tool { tool: "pg_restore".into(), detail: e.to_string() })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        return Err(SourceError::Tool {
            tool: "pg_restore".into(),
            detail: tail[tail.len().saturating_sub(3)..].join(" | "),
        });
    }
    Ok(())
}

/// Tables, views and sequences outside the system schemas.
fn user_relations(conn: &ConnInfo) -> Result<i64, SourceError> {
    let mut client = conn.connect()?;
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%'",
            &[],
        )
        .map_err(|e| SourceError::Query { target: conn.display(), detail: error_text(&e) })?;
    Ok(row.get(0))
}
