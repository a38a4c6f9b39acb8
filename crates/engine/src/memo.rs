//! A warm host's memo of what recent listings found, so that reading commands (`status`, `points`,
//! `snapshots`, a restore's planning) do not list every snapshot each time they run.
//!
//! Listing `snapshots/` (or the whole repository, for its size) grows with the history: at 5,000
//! snapshots it is the larger part of every command on S3. What it finds changes only when a snapshot
//! is written or removed, and every command that does either writes a run record *after* doing it
//! (backup, copy, forget, repair, prune). So a memo is kept under the **catalog's fingerprint** (the
//! run records and segments listed, two small listings): while the fingerprint is the one the memo was
//! taken under, nothing recorded has changed what the memo holds.
//!
//! What it can miss: a change whose writer died before writing its record (a backup killed between its
//! snapshot and its record; a forget killed between the delete and its record). Such a snapshot shows
//! (or stops showing) at the next real listing, at most [`max_age`] later (10 minutes by default,
//! `BUNKER_LISTING_MAX_AGE=SECONDS`, `0` always lists). Only readers use the memo: every command that
//! deletes or decides what to keep (forget, prune, check, repair, copy) lists for itself. The memo lives
//! in the cache directory (`listings.json`), holds file IDs and sizes, nothing readable, and a process
//! that writes a snapshot or a run record forgets it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::FileId;
use crate::repository::{FileKind, Repository};

const FILE: &str = "listings.json";

#[derive(Serialize, Deserialize, Default)]
struct Memos {
    #[serde(default)]
    entries: BTreeMap<String, Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    /// The catalog's fingerprint when the listing was made (taken before it).
    catalog: String,
    at: DateTime<Utc>,
    value: serde_json::Value,
}

/// How long a memo is trusted at most (`BUNKER_LISTING_MAX_AGE` seconds; `None` when `0`).
pub fn max_age() -> Option<Duration> {
    let secs = std::env::var("BUNKER_LISTING_MAX_AGE").ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(600);
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// The fingerprint of one catalog listing: which loose records and segments it found.
pub(crate) fn fingerprint(loose: &[FileId], segments: &[FileId]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"bunker catalog listing v1\n");
    for (tag, ids) in [(b"r", loose), (b"s", segments)] {
        let mut ids = ids.to_vec();
        ids.sort();
        for id in ids {
            h.update(tag);
            h.update(id.to_hex().as_bytes());
        }
    }
    h.finalize().to_hex()[..32].to_string()
}

impl Repository {
    /// `compute()` (a listing, or what is derived from one), or what it returned when this host last
    /// ran it under the same catalog fingerprint, less than [`max_age`] ago. Without a cache directory
    /// (`BUNKER_CACHE_DIR=off`) it always computes. See the module's documentation for what it can miss;
    /// never use it to decide what to delete.
    pub fn recent<T: Serialize + DeserializeOwned>(
        &self,
        what: &str,
        compute: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let (Some(dir), Some(max)) = (self.cache_dir(), max_age()) else { return compute() };
        // Taken before the listing: a record written after it can only make the memo look older.
        let catalog = self.catalog_fingerprint()?;
        let path = dir.join(FILE);
        let read =
            || -> Memos { std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default() };
        if let Some(e) = read().entries.remove(what) {
            let age = Utc::now().signed_duration_since(e.at);
            let fresh = age >= chrono::Duration::zero() && age.to_std().is_ok_and(|a| a < max);
            if e.catalog == catalog && fresh {
                if let Ok(v) = serde_json::from_value(e.value) {
                    return Ok(v);
                }
            }
        }
        let value = compute()?;
        if let Ok(json) = serde_json::to_value(&value) {
            let mut memos = read();
            memos.entries.insert(what.to_string(), Entry { catalog, at: Utc::now(), value: json });
            if let Err(e) = write_atomically(dir, &path, &memos) {
                tracing::debug!("listing memo not kept: {e}");
            }
        }
        Ok(value)
    }

    /// The fingerprint of the catalog as this process last listed it, or as it is now (two listings).
    pub(crate) fn catalog_fingerprint(&self) -> Result<String> {
        if let Some(f) = self.seen_catalog() {
            return Ok(f);
        }
        // Loose records before segments, as every catalog reader lists them.
        let loose = self.list_files(FileKind::Run)?;
        let segments = self.list_files(FileKind::RunSegment)?;
        let f = fingerprint(&loose, &segments);
        self.note_catalog(Some(f.clone()));
        Ok(f)
    }

    /// Forgets the memo: this process changed what a listing would find.
    pub(crate) fn forget_listings(&self) {
        self.note_catalog(None);
        if let Some(dir) = self.cache_dir() {
            let _ = std::fs::remove_file(dir.join(FILE));
        }
    }
}

fn write_atomically(dir: &std::path::Path, path: &std::path::Path, memos: &Memos) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{FILE}.{}", hex::encode(rand::random::<[u8; 8]>())));
    std::fs::write(&tmp, serde_json::to_vec(memos).expect("memos serialise"))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeSet;

    use super::*;
    use crate::catalog::{RunRecord, RunStatus};
    use crate::segment::{fold, fold_of, Of};
    use crate::testing::{init, stream};

    fn record(repo: &Repository, operation: &str) {
        let mut r = RunRecord::new(operation, Utc::now(), RunStatus::Success);
        repo.save_run(&mut r).unwrap();
    }

    fn names(snapshots: Vec<crate::Snapshot>) -> BTreeSet<String> {
        snapshots.into_iter().map(|s| s.name).collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_memo_holds_while_the_catalog_is_unchanged_and_goes_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let writer = init(dir.path());
        record(&writer, "backup");
        let calls = Cell::new(0);
        let compute = || {
            calls.set(calls.get() + 1);
            Ok(calls.get())
        };
        // Each command on the reading host is a new handle with the same cache directory.
        assert_eq!(writer.with_cache(cache.path()).recent("x", compute).unwrap(), 1);
        assert_eq!(writer.with_cache(cache.path()).recent("x", compute).unwrap(), 1, "the memo");
        assert_eq!(writer.with_cache(cache.path()).recent("y", compute).unwrap(), 2, "another memo");
        // Another host records a run: the catalog changed, so the memo is not trusted.
        record(&writer, "forget");
        assert_eq!(writer.with_cache(cache.path()).recent("x", compute).unwrap(), 3);
        assert_eq!(writer.with_cache(cache.path()).recent("x", compute).unwrap(), 3);
        // An old memo is not trusted either.
        let path = cache.path().join(FILE);
        let mut memos: Memos = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        memos.entries.get_mut("x").unwrap().at = Utc::now() - chrono::Duration::hours(1);
        std::fs::write(&path, serde_json::to_vec(&memos).unwrap()).unwrap();
        assert_eq!(writer.with_cache(cache.path()).recent("x", compute).unwrap(), 4);
        // Without a cache directory (a fresh host) it always computes.
        assert_eq!(writer.recent("x", compute).unwrap(), 5);
        assert_eq!(writer.recent("x", compute).unwrap(), 6);
    }

    #[test]
    fn recent_snapshots_follow_what_other_hosts_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let writer = init(dir.path());
        let reader = || writer.with_cache(cache.path());
        let a = stream(&writer, "a", b"one");
        record(&writer, "backup");
        assert_eq!(names(reader().load_recent_snapshots().unwrap()), set(&["a"]));

        // A snapshot whose writer died before its record: the memo misses it (until it is too old),
        // a real listing does not.
        stream(&writer, "b", b"two");
        assert_eq!(names(reader().load_recent_snapshots().unwrap()), set(&["a"]));
        assert_eq!(names(reader().load_snapshots().unwrap()), set(&["a", "b"]));
        record(&writer, "backup");
        assert_eq!(names(reader().load_recent_snapshots().unwrap()), set(&["a", "b"]));

        // Forgotten elsewhere, then recorded: gone from the next read.
        writer.delete_snapshot(&a).unwrap();
        record(&writer, "forget");
        assert_eq!(names(reader().load_recent_snapshots().unwrap()), set(&["b"]));

        // A process that writes a snapshot forgets the memo at once.
        let host = reader();
        assert_eq!(names(host.load_recent_snapshots().unwrap()), set(&["b"]));
        stream(&host, "c", b"three");
        assert_eq!(names(host.load_recent_snapshots().unwrap()), set(&["b", "c"]));
    }

    #[test]
    fn a_memo_naming_a_segment_folded_away_lists_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let writer = init(dir.path());
        for n in 0..3 {
            stream(&writer, &format!("s{n}"), format!("data {n}").as_bytes());
        }
        record(&writer, "backup");
        fold(&writer).unwrap();
        let reader = || writer.with_cache(cache.path());
        assert_eq!(names(reader().load_recent_snapshots().unwrap()), set(&["s0", "s1", "s2"]));
        // A writer's fold after its record replaces the summary segment (no record of its own), and
        // this host's copy of the old one is gone (its cache was cleaned): the memo names a missing file.
        stream(&writer, "s3", b"data 3");
        let r = fold_of(&writer, Of::Snapshots, None, None).unwrap();
        assert_eq!((r.segments_written, r.segments_replaced), (1, 1), "{r:?}");
        let old = std::fs::read_dir(cache.path().join(FileKind::SnapshotSegment.dir())).unwrap();
        for e in old.flatten() {
            std::fs::remove_file(e.path()).unwrap();
        }
        assert_eq!(names(reader().load_recent_snapshots().unwrap()), set(&["s0", "s1", "s2", "s3"]));
    }
}
