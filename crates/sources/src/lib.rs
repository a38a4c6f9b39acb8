//! What bunker backs up. Each source lives in its own module behind [`Source`]; the engine sees only the
//! bytes and trees they hand it. Adding a source (postgres, redis, s3, command…) means one new module and
//! one registration where the CLI builds sources from its configuration.

pub mod command;
pub mod files;
pub mod postgres;
pub mod redis;
pub mod s3;
pub mod stream;

use bunker_engine::backup::Backup;
use bunker_engine::snapshot::Root;

/// What a source produced: the snapshot's root, its facts, and anything it could not read.
#[derive(Debug)]
pub struct Captured {
    pub root: Root,
    /// Facts recorded in the snapshot and verified against on restore (versions, row counts…).
    pub meta: serde_json::Value,
    /// Non-fatal problems; any makes the snapshot incomplete.
    pub warnings: Vec<String>,
}

/// A thing bunker backs up.
pub trait Source {
    /// The snapshot kind it produces (`stream`, `files`, …).
    fn kind(&self) -> &'static str;

    /// Reads the source and stores it through `backup`. Nothing is visible until the caller commits.
    fn backup(&mut self, backup: &Backup<'_>) -> Result<Captured, SourceError>;
}

/// One snapshot to take for a configured target: its snapshot name and the source that reads it.
pub struct Planned {
    pub snapshot_name: String,
    pub source: Box<dyn Source>,
}

/// The sources a `bunker.toml` target backs up. Each source kind registers here, in one line.
pub fn plan_target(target: &bunker_config::TargetConfig) -> Result<Vec<Planned>, SourceError> {
    match target.kind.as_str() {
        "postgres" => postgres::plan(target),
        "files" => files::plan(target),
        "redis" => redis::plan(target),
        "command" => command::plan(target),
        "s3" => s3::plan(target),
        other => {
            let hint = if other.starts_with("redis") { " (a rediss:// URL goes with type = \"redis\")" } else { "" };
            Err(SourceError::Config(format!(
                "target {}: unknown type {other:?}; known types: postgres, redis, s3, files, command{hint}",
                target.name
            )))
        }
    }
}

/// What can go wrong reading a source; each message names the source and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Engine(#[from] bunker_engine::Error),
    #[error("{0}")]
    Config(String),
    #[error("cannot connect to {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error("query on {target} failed: {detail}")]
    Query { target: String, detail: String },
    #[error("{tool} failed: {detail}")]
    Tool { tool: String, detail: String },
    #[error(transparent)]
    Settings(#[from] bunker_config::Error),
}
