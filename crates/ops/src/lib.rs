//! bunker's operations: what a verb does beyond reading or writing one snapshot. Backups of targets and
//! recovery points ([`backup`], [`points`]), the one route every restore takes ([`restore`]: the snapshot → its target → its kind →
//! hooks → restore → verify → catalog run), drills ([`drill`]), hooks ([`hooks`]) and run records
//! ([`runs`]), health and status ([`health`], [`status`]), notifications ([`notify`]) and the daemon's
//! planner and loop ([`daemon`]). Each takes the stack file, a repository and an [`Events`] sink and returns a report; it
//! prints nothing. The source kinds are reached only through `bunker_sources::Kind`.

pub mod backup;
pub mod browse;
pub mod codes;
pub mod daemon;
pub mod details;
pub mod drill;
pub mod health;
pub mod history;
pub mod hooks;
pub mod lock;
pub mod notify;
pub mod points;
pub mod report;
pub mod restore;
pub mod runs;
pub mod status;

use bunker_engine::catalog::RunRecord;
use bunker_engine::Repository;

/// What can go wrong in an operation; each message says what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] bunker_engine::Error),
    #[error(transparent)]
    Source(#[from] bunker_sources::SourceError),
    #[error(transparent)]
    Config(#[from] bunker_config::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The engine error behind this one, if any (for exit codes: a lock, a wrong password, an interrupt).
    pub fn engine(&self) -> Option<&bunker_engine::Error> {
        match self {
            Error::Engine(e) => Some(e),
            Error::Source(s) => s.engine(),
            _ => None,
        }
    }

    pub fn is_interrupted(&self) -> bool {
        matches!(self.engine(), Some(bunker_engine::Error::Interrupted))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure described in one line.
pub fn fail(message: impl Into<String>) -> Error {
    Error::Failed(message.into())
}

/// Where operations report what happens while they run. The binary prints; a test collects.
pub trait Events: Sync {
    /// A step a person watching wants to see ("restoring db (ab12cd34) into database app").
    fn progress(&self, line: &str);
    /// A problem that does not stop the operation.
    fn warning(&self, line: &str);
    /// A line a hook or smoke test printed.
    fn hook_output(&self, line: &str) {
        self.progress(&format!("  | {line}"));
    }
    /// A live byte counter for a long step (`backing up db`), when someone watches: called with the
    /// bytes so far every fraction of a second, dropped when the step ends.
    fn meter(&self, _what: &str) -> Option<Box<dyn Fn(u64) + Sync + '_>> {
        None
    }
    /// A run was recorded in the catalog (notifications go out from here).
    fn run_finished(&self, _repo: &Repository, _record: &RunRecord) {}
}

/// Events nobody looks at (tests, the daemon's quiet jobs).
pub struct Quiet;

impl Events for Quiet {
    fn progress(&self, _: &str) {}
    fn warning(&self, line: &str) {
        tracing::warn!("{line}");
    }
}
