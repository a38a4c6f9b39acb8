//! The catalog: one record per run of bunker (backup, restore, verify, check, prune…), successful or not,
//! stored in the repository itself so that the history survives the loss of the host that made it.
//! Records are sealed files under `runs/`, immutable like snapshots: a run writes its record once, when
//! it ends. The engine stores and lists them; what a run means is the caller's business.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::FileId;
use crate::repository::{FileKind, Repository};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Success,
    /// Finished, but something could not be read or a check did not pass.
    Warning,
    Failed,
    Interrupted,
    /// Stopped before changing anything because a person said no (a declined confirmation prompt).
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Success => "success",
            RunStatus::Warning => "warning",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// The record's ID: BLAKE3 of its stored file. Not stored inside the record.
    #[serde(skip)]
    pub id: Option<FileId>,
    /// What ran: `backup`, `restore`, `verify`, `check`, `prune`…
    pub operation: String,
    /// The target (or snapshot name) it concerned, when it concerned one.
    pub target: Option<String>,
    /// The snapshot it made or read, when there is one.
    pub snapshot: Option<String>,
    pub host: String,
    pub started: chrono::DateTime<chrono::Utc>,
    pub ended: chrono::DateTime<chrono::Utc>,
    pub status: RunStatus,
    /// Bytes read from the source (backup) or from the repository (restore, check).
    #[serde(default)]
    pub bytes_read: u64,
    /// Bytes the run added to the repository.
    #[serde(default)]
    pub bytes_stored: u64,
    /// The one-line error of a failed run.
    pub error: Option<String>,
    /// Anything else the operation wants to keep (e.g. where a restore went, how it was verified).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    pub bunker_version: String,
}

impl RunRecord {
    /// A record of `operation` that started at `started` and ends now.
    pub fn new(operation: &str, started: chrono::DateTime<chrono::Utc>, status: RunStatus) -> RunRecord {
        RunRecord {
            id: None,
            operation: operation.into(),
            target: None,
            snapshot: None,
            host: crate::keys::hostname(),
            started,
            ended: chrono::Utc::now(),
            status,
            bytes_read: 0,
            bytes_stored: 0,
            error: None,
            details: serde_json::Value::Null,
            bunker_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    pub fn duration_secs(&self) -> f64 {
        (self.ended - self.started).num_milliseconds() as f64 / 1000.0
    }
}

/// A run record's plaintext, once its seal checked out: what does not decode is another version's.
pub(crate) fn decode_run(id: &FileId, plain: &[u8]) -> Result<RunRecord> {
    let mut run: RunRecord =
        serde_json::from_slice(plain).map_err(|e| Error::UnknownContent(format!("run record {}: {e}", id.short())))?;
    run.id = Some(*id);
    Ok(run)
}

impl Repository {
    /// Stores a run's record. Needs no lock: a new, content-named file never conflicts with another.
    pub fn save_run(&self, run: &mut RunRecord) -> Result<FileId> {
        let json = serde_json::to_vec(run).expect("run record serialises");
        let id = self.save_file(FileKind::Run, &json)?;
        run.id = Some(id);
        Ok(id)
    }
}
