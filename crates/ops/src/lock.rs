//! The locks operations take: shared for what reads, and none where the repository cannot take one.

use std::time::Duration;

use bunker_engine::lock::{acquire, LockGuard};
use bunker_engine::Repository;

use crate::Result;

/// How a command may lock: `--no-lock`, `--retry-lock`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockPolicy {
    pub no_lock: bool,
    pub retry: Duration,
}

/// The shared lock of an operation that only reads (restore, drill, check…), or none: with `--no-lock`,
/// and by itself, with a warning, when the repository refuses the lock's write for good (a read-only
/// mount, a full disk, read-only credentials, Object Lock). Reading back what is there matters more
/// than keeping a concurrent prune away; a held exclusive lock of another process still stops us.
pub fn read_lock(repo: &Repository, policy: LockPolicy, operation: &str) -> Result<Option<LockGuard>> {
    if policy.no_lock {
        return Ok(None);
    }
    match acquire(repo.storage(), false, operation, policy.retry) {
        Ok(guard) => Ok(Some(guard)),
        Err(e) if e.refuses_writes() => {
            if let Some(holder) = bunker_engine::lock::live_exclusive(repo.storage())? {
                return Err(bunker_engine::Error::Locked { mode: " exclusively", holder }.into());
            }
            tracing::warn!(
                "cannot write a lock into the repository ({e}); reading without one, as with --no-lock (a prune running meanwhile could remove what this reads)"
            );
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
