//! Every run of an operation that touches data leaves a record in the repository's catalog
//! ([`bunker_engine::catalog`]), whether it succeeded or not: `bunker history` reads them back.

use bunker_engine::catalog::{RunRecord, RunStatus};
use bunker_engine::Repository;

use crate::Events;

/// A run in progress; the operation fills in what it learns and [`Run::record`] stores it.
pub struct Run {
    record: RunRecord,
}

/// Operations that never fold the catalog after recording themselves (see [`Run::record`]).
const RECOVERY_PATH: &[&str] = &["restore", "verify", "drill", "hook", "wal-push", "wal-fetch"];

impl Run {
    pub fn start(operation: &str) -> Run {
        Run { record: RunRecord::new(operation, chrono::Utc::now(), RunStatus::Success) }
    }

    pub fn target(&mut self, name: &str) {
        self.record.target = Some(name.to_string());
    }

    pub fn snapshot(&mut self, id: &bunker_engine::FileId) {
        self.record.snapshot = Some(id.to_hex());
    }

    pub fn bytes(&mut self, read: u64, stored: u64) {
        self.record.bytes_read = read;
        self.record.bytes_stored = stored;
    }

    pub fn detail(&mut self, key: &str, value: serde_json::Value) {
        if !self.record.details.is_object() {
            self.record.details = serde_json::json!({});
        }
        self.record.details[key] = value;
    }

    /// Sets the details to a typed document.
    pub fn details(&mut self, details: &crate::details::Details) {
        self.record.details = details.to_value();
    }

    /// Replaces the details with one document (a drill's record).
    pub fn detail_all(&mut self, details: serde_json::Value) {
        self.record.details = details;
    }

    /// Why a run that did not succeed did not (e.g. which checks failed).
    pub fn problem(&mut self, what: String) {
        self.record.error = Some(what);
    }

    /// Records how the run ended, then tells `events` (which sends the notification it raises). Both
    /// are best effort: a repository that cannot take the record is a warning, never a second failure.
    /// A run that succeeded around damaged repository files is a warning.
    pub fn record(
        mut self,
        repo: &Repository,
        status: RunStatus,
        error: Option<String>,
        events: &dyn Events,
    ) -> RunRecord {
        let r = &mut self.record;
        r.ended = chrono::Utc::now();
        r.status = status;
        if error.is_some() {
            r.error = error;
        }
        let damaged = repo.damage().list();
        if r.status == RunStatus::Success && !damaged.is_empty() {
            r.status = RunStatus::Warning;
            let paths: Vec<&str> = damaged.iter().map(|d| d.path.as_str()).collect();
            r.error.get_or_insert_with(|| format!("skipped damaged repository files: {}", paths.join(", ")));
        }
        match repo.save_run(r) {
            // A writer folds the catalog when enough loose records have piled up (one listing to know);
            // commands on the way to a recovery never do: their time is the RTO.
            Ok(_) if !RECOVERY_PATH.contains(&r.operation.as_str()) => bunker_engine::segment::fold_if_due(repo),
            Ok(_) => {}
            Err(e) => {
                let why = if e.refuses_writes() { " (the repository takes no writes)" } else { "" };
                events.warning(&format!("could not record the {} run in the catalog{why}: {e}", r.operation));
            }
        }
        events.run_finished(repo, r);
        self.record
    }
}

/// The status of a run that ended in `error`: interrupted, cancelled (a declined prompt), or failed.
pub fn status_of(error: &crate::Error) -> RunStatus {
    match error {
        _ if error.is_interrupted() => RunStatus::Interrupted,
        crate::Error::Source(bunker_sources::SourceError::Cancelled(_)) => RunStatus::Cancelled,
        _ => RunStatus::Failed,
    }
}
