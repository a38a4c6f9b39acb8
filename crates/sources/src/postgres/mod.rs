//! PostgreSQL: logical dumps today; physical base backups and WAL archiving join here later.

pub mod archive;
pub mod basebackup;
pub mod conn;
pub mod globals;
pub mod logical;
pub mod manifest;
pub mod pages;
pub mod physical;
pub mod pitr;
pub mod restore;
pub mod tools;
pub mod verify;
pub mod wal;

mod drill;
mod kind;
pub use kind::{base_backups, database, physical_targets, report_lines, Postgres};
pub use physical::PhysicalMeta;

pub use conn::ConnInfo;
pub use logical::{LogicalDatabase, LogicalMeta};
pub use verify::{Assertion, VerifyReport};

use std::path::PathBuf;

use crate::{Planned, SourceError};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresOptions {
    url: String,
    #[serde(default = "logical")]
    mode: String,
    #[serde(default)]
    databases: Option<Databases>,
    pg_bin_dir: Option<PathBuf>,
    /// Also back up roles and tablespaces (always on with `databases = "all"`).
    #[serde(default)]
    globals: bool,
    /// Checked by `verify` and after restores.
    #[serde(default, rename = "assert")]
    assertions: Vec<Assertion>,
    /// Physical mode: the data directory, when it is not where the server says it is.
    data_dir: Option<PathBuf>,
    /// Physical mode: how long a base backup waits for its last WAL segment to be archived (e.g. "2m").
    archive_timeout: Option<String>,
    /// Physical mode: "auto" (default), "local" or "replication".
    method: Option<String>,
}

/// Chunk size for a data directory's files in base backups (local or streamed): eight 8 KiB pages.
pub const DATA_CHUNK_SIZE: u32 = 64 * 1024;

/// The snapshot name suffix of a target's roles and tablespaces (`TARGET/globals`).
pub const GLOBALS: &str = "globals";

/// What restore and verify need from a `type = "postgres"` target's settings.
pub struct TargetSettings {
    pub mode: String,
    pub conn: ConnInfo,
    pub pg_bin_dir: Option<PathBuf>,
    pub assertions: Vec<Assertion>,
}

/// Reads a postgres target's settings (its connection, tools directory and assertions).
pub fn settings(target: &bunker_config::TargetConfig) -> Result<TargetSettings, SourceError> {
    let opts: PostgresOptions = target.options()?;
    Ok(TargetSettings {
        mode: opts.mode,
        conn: ConnInfo::resolve(&opts.url)?,
        pg_bin_dir: opts.pg_bin_dir,
        assertions: opts.assertions,
    })
}

fn logical() -> String {
    "logical".into()
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Databases {
    All(String),
    List(Vec<String>),
}

/// A `type = "postgres"` target: one snapshot per database (named `TARGET` for a single database,
/// `TARGET/DB` when there are several).
pub fn plan(target: &bunker_config::TargetConfig) -> Result<Vec<Planned>, SourceError> {
    let opts: PostgresOptions = target.options()?;
    match opts.mode.as_str() {
        "logical" => {}
        "physical" => return plan_physical(target, opts),
        other => {
            return Err(SourceError::Config(format!(
                "target {}: mode {other:?} is not one of \"logical\", \"physical\"",
                target.name
            )))
        }
    }
    let conn = ConnInfo::resolve(&opts.url)?;
    let all = matches!(&opts.databases, Some(Databases::All(a)) if a == "all");
    let databases = match opts.databases {
        None => vec![conn.dbname.clone()],
        Some(Databases::List(list)) if !list.is_empty() => list,
        Some(Databases::List(_)) => {
            return Err(SourceError::Config(format!("target {}: databases is empty", target.name)))
        }
        Some(Databases::All(all)) if all == "all" => list_databases(&conn)?,
        Some(Databases::All(other)) => {
            return Err(SourceError::Config(format!(
                "target {}: databases = {other:?}; use a list of names or \"all\"",
                target.name
            )))
        }
    };
    let with_globals = opts.globals || all;
    if with_globals && databases.iter().any(|d| d == GLOBALS) {
        return Err(SourceError::Config(format!(
            "target {}: a database named {GLOBALS:?} clashes with the roles snapshot {}/{GLOBALS}; list databases without it or split the target",
            target.name, target.name
        )));
    }
    let several = databases.len() > 1 || with_globals;
    let mut planned: Vec<Planned> = databases
        .into_iter()
        .map(|db| Planned {
            snapshot_name: if several { format!("{}/{db}", target.name) } else { target.name.clone() },
            source: Box::new(LogicalDatabase { conn: conn.with_dbname(&db), pg_bin_dir: opts.pg_bin_dir.clone() }),
        })
        .collect();
    if with_globals {
        planned.push(Planned {
            snapshot_name: format!("{}/{GLOBALS}", target.name),
            source: Box::new(globals::Globals { conn, pg_bin_dir: opts.pg_bin_dir }),
        });
    }
    Ok(planned)
}

/// A `mode = "physical"` target: one base backup of the whole cluster, named after the target.
fn plan_physical(target: &bunker_config::TargetConfig, opts: PostgresOptions) -> Result<Vec<Planned>, SourceError> {
    let archive_timeout = match &opts.archive_timeout {
        None => std::time::Duration::from_secs(120),
        Some(t) => humantime::parse_duration(t).map_err(|e| {
            SourceError::Config(format!("target {}: archive_timeout {t:?}: {e} (write e.g. \"2m\")", target.name))
        })?,
    };
    let method = match opts.method.as_deref() {
        None => physical::Method::Auto,
        Some(m) => physical::Method::parse(m).ok_or_else(|| {
            SourceError::Config(format!(
                "target {}: method {m:?} is not one of \"auto\", \"local\", \"replication\"",
                target.name
            ))
        })?,
    };
    let source = physical::PhysicalCluster {
        target: target.name.clone(),
        conn: ConnInfo::resolve(&opts.url)?,
        data_dir: opts.data_dir,
        archive_timeout,
        method,
        pg_bin_dir: opts.pg_bin_dir,
    };
    Ok(vec![Planned { snapshot_name: target.name.clone(), source: Box::new(source) }])
}

/// Every database that accepts connections, templates left out.
fn list_databases(conn: &ConnInfo) -> Result<Vec<String>, SourceError> {
    let mut client = conn.connect()?;
    let rows = client
        .query("SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY 1", &[])
        .map_err(|e| SourceError::Query { target: conn.display(), detail: conn::error_text(&e) })?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}
