//! What bunker backs up, and how each kind of snapshot comes back. Each source kind lives in its own
//! module and implements [`Kind`] (plan a backup, restore, verify, drill, retention, health); the engine
//! sees only the bytes and trees its [`Source`]s hand it. The kinds are listed once, in [`KINDS`]: adding
//! one (MySQL…) is one new module and one line there (see README.md of this crate).

pub mod command;
pub mod drill;
pub mod files;
pub mod kind;
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

pub use kind::{
    Destination, HomeBase, Item, Kind, Recovery, RecoveryTarget, RestoreJob, RestoreOptions, Restored, Selector,
    TargetAction,
};

/// Every source kind, each registered in one line.
pub static KINDS: &[&dyn Kind] = &[&postgres::Postgres, &redis::Redis, &s3::S3, &files::Files, &command::CommandKind];

/// The kind of a stack file's `type = "…"`.
pub fn kind_named(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// The kind a target of the stack file is, or an error naming the known types.
pub fn kind_of_target(target: &bunker_config::TargetConfig) -> Result<&'static dyn Kind, SourceError> {
    kind_named(&target.kind).ok_or_else(|| {
        let hint = if target.kind.starts_with("redis") { " (a rediss:// URL goes with type = \"redis\")" } else { "" };
        let known: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
        SourceError::Config(format!(
            "target {}: unknown type {:?}; known types: {}{hint}",
            target.name,
            target.kind,
            known.join(", ")
        ))
    })
}

/// The kind that restores a snapshot: the one that lists its snapshot kind, else (a kind written by
/// another version) by its shape.
pub fn kind_of_snapshot(snapshot: &bunker_engine::Snapshot) -> &'static dyn Kind {
    let known = KINDS.iter().copied().find(|k| k.snapshot_kinds().contains(&snapshot.kind.as_str()));
    known.unwrap_or(match &snapshot.root {
        // A kind this version does not know: restored by its shape, as a tree or as a stream.
        bunker_engine::snapshot::Root::Tree { .. } => &files::Files,
        bunker_engine::snapshot::Root::Stream { .. } => &command::CommandKind,
    })
}

/// The sources a `bunker.toml` target backs up.
pub fn plan_target(target: &bunker_config::TargetConfig) -> Result<Vec<Planned>, SourceError> {
    kind_of_target(target)?.plan(target)
}

/// A size in binary units, as bunker prints sizes (`512 B`, `1.50 MiB`).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// A failure described in one line (what failed, what to do).
pub fn fail(message: impl Into<String>) -> SourceError {
    SourceError::Failed(message.into())
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
    #[error(transparent)]
    Scratch(#[from] bunker_scratch::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Failed(String),
    /// A person declined a confirmation prompt: nothing was changed.
    #[error("{0}")]
    Cancelled(String),
}

impl SourceError {
    /// The engine error behind this one, if any (for exit codes: a lock, a wrong password…).
    pub fn engine(&self) -> Option<&bunker_engine::Error> {
        match self {
            SourceError::Engine(e) => Some(e),
            _ => None,
        }
    }
}
