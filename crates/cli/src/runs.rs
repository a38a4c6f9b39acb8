//! Every run of a command that touches data leaves a record in the repository's catalog
//! ([`bunker_engine::catalog`]), whether it succeeded or not: `bunker history` reads them back.

use bunker_engine::catalog::{RunRecord, RunStatus};
use bunker_engine::Repository;

use crate::exit;

/// A run in progress; the command fills in what it learns and `finish` records it.
pub struct Run {
    record: RunRecord,
}

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

    /// Replaces the details with one document (a drill's record).
    pub fn detail_all(&mut self, details: serde_json::Value) {
        self.record.details = details;
    }

    /// Why a run that returned an exit code other than 0 did not succeed (e.g. which checks failed).
    pub fn problem(&mut self, what: String) {
        self.record.error = Some(what);
    }

    /// Records how the run ended: its exit code, or the error that stopped it, then sends the notification
    /// it raises, if any. Both are best effort: a repository that cannot take the record or a destination
    /// that cannot take the notification is a warning, never a second failure.
    pub fn finish(mut self, repo: &Repository, outcome: Result<i32, &anyhow::Error>) {
        let r = &mut self.record;
        r.ended = chrono::Utc::now();
        r.status = match outcome {
            Ok(exit::OK) => RunStatus::Success,
            Ok(exit::INCOMPLETE) => RunStatus::Warning,
            Ok(exit::INTERRUPTED) => RunStatus::Interrupted,
            Ok(_) => RunStatus::Failed,
            Err(e) if exit::code_for(e) == exit::INTERRUPTED => RunStatus::Interrupted,
            Err(_) => RunStatus::Failed,
        };
        if let Err(e) = outcome {
            r.error = Some(exit::one_line(e));
        }
        let damaged = repo.damage().list();
        if r.status == RunStatus::Success && !damaged.is_empty() {
            r.status = RunStatus::Warning;
            let paths: Vec<&str> = damaged.iter().map(|d| d.path.as_str()).collect();
            r.error.get_or_insert_with(|| format!("skipped damaged repository files: {}", paths.join(", ")));
        }
        if let Err(e) = repo.save_run(r) {
            let why = if e.refuses_writes() { " (the repository takes no writes)" } else { "" };
            tracing::warn!("could not record the {} run in the catalog{why}: {e}", r.operation);
        }
        crate::notify::run_finished(repo, r);
    }
}
