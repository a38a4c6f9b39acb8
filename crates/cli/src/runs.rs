//! Every run of a command that touches data leaves a record in the repository's catalog
//! ([`bunker_ops::runs`]); this adds how a command's exit code maps to the run's status, and the
//! event sink the binary gives operations (progress on stderr, notifications).

use bunker_engine::catalog::{RunRecord, RunStatus};
use bunker_engine::Repository;

use crate::exit;

pub use bunker_ops::runs::Run;

/// The binary's [`bunker_ops::Events`]: progress and hook output on stderr (stdout stays for the
/// result, and `--json`), warnings through the log, notifications when a run is recorded.
pub struct Printer;

impl bunker_ops::Events for Printer {
    fn progress(&self, line: &str) {
        eprintln!("bunker: {line}");
    }
    fn warning(&self, line: &str) {
        tracing::warn!("{line}");
    }
    fn hook_output(&self, line: &str) {
        eprintln!("  | {line}");
    }
    fn run_finished(&self, repo: &Repository, record: &RunRecord) {
        bunker_ops::notify::run_finished(repo, record);
    }
}

/// The run status of a command's outcome.
pub fn status_of(outcome: Result<i32, &anyhow::Error>) -> RunStatus {
    bunker_ops::codes::run_status(match outcome {
        Ok(code) => code,
        Err(e) => exit::code_for(e),
    })
}

/// What exit code a recorded run's status makes.
pub fn code_of(status: RunStatus) -> i32 {
    match status {
        RunStatus::Success => exit::OK,
        RunStatus::Warning => exit::INCOMPLETE,
        RunStatus::Interrupted => exit::INTERRUPTED,
        RunStatus::Cancelled => exit::CANCELLED,
        RunStatus::Failed => exit::FAILURE,
    }
}

/// Records how a command's run ended: its exit code, or the error that stopped it.
pub trait Finish {
    fn finish(self, repo: &Repository, outcome: Result<i32, &anyhow::Error>);
}

impl Finish for Run {
    fn finish(self, repo: &Repository, outcome: Result<i32, &anyhow::Error>) {
        let error = outcome.as_ref().err().map(|e| exit::one_line(e));
        self.record(repo, status_of(outcome), error, &Printer);
    }
}
