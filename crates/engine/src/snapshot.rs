//! Snapshots: `snapshots/<id>`, sealed JSON manifests. A snapshot is written last, after its packs and
//! their index, so its presence proves everything it names was stored.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{BlobId, FileId};
use crate::tree::Content;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The snapshot's ID: BLAKE3 of its stored file. Not stored inside the manifest.
    #[serde(skip)]
    pub id: Option<FileId>,
    pub time: chrono::DateTime<chrono::Utc>,
    pub host: String,
    /// The target it belongs to (`--name`, or a `bunker.toml` target).
    pub name: String,
    /// What produced it: `stream`, `files`, and later `postgres-logical`, `redis-rdb`…
    pub kind: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form facts from the source (server versions, row counts…), verified against on restore.
    #[serde(default)]
    pub meta: serde_json::Value,
    pub root: Root,
    pub stats: SnapshotStats,
    pub parent: Option<FileId>,
    /// Things that could not be read; a snapshot with any is incomplete (exit code 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub bunker_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Root {
    Stream { size: u64, content: Content },
    Tree { tree: BlobId },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Plaintext bytes of blobs this snapshot added to the repository.
    pub bytes_new: u64,
    /// Stored (compressed, sealed) bytes of those blobs.
    pub bytes_stored: u64,
    pub chunks: u64,
    pub chunks_new: u64,
    pub files: u64,
    pub duration_secs: f64,
}

impl Snapshot {
    pub fn id(&self) -> FileId {
        self.id.expect("a loaded or saved snapshot has an ID")
    }

    pub fn short_id(&self) -> String {
        self.id.map(|i| i.short()).unwrap_or_else(|| "unsaved".into())
    }
}

pub fn snapshot_path(id: &FileId) -> String {
    format!("snapshots/{id}")
}

/// Resolves a selector: a full ID or unique prefix, `latest`, `NAME` (its latest), or `NAME:latest` /
/// `NAME:PREFIX`.
pub fn select<'a>(snapshots: &'a [Snapshot], selector: &str) -> Result<&'a Snapshot> {
    if !selector.contains(':') && snapshots.iter().any(|s| s.name == selector) {
        return select(snapshots, &format!("{selector}:latest"));
    }
    let (name, what) = match selector.rsplit_once(':') {
        Some((n, w)) => (Some(n), w),
        None => (None, selector),
    };
    let candidates = snapshots.iter().filter(|s| name.is_none_or(|n| s.name == n));
    if what == "latest" {
        return candidates.max_by_key(|s| s.time).ok_or_else(|| Error::NoSnapshot(selector.to_string()));
    }
    let what = what.to_ascii_lowercase();
    if what.is_empty() || !what.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::NoSnapshot(selector.to_string()));
    }
    let mut found = candidates.filter(|s| s.id().to_hex().starts_with(&what));
    match (found.next(), found.next()) {
        (Some(s), None) => Ok(s),
        (Some(_), Some(_)) => Err(Error::AmbiguousSnapshot(selector.to_string())),
        (None, _) => Err(Error::NoSnapshot(selector.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: u8, name: &str, minutes: i64) -> Snapshot {
        Snapshot {
            id: Some(FileId([id; 32])),
            time: chrono::DateTime::from_timestamp(1_700_000_000 + minutes * 60, 0).unwrap(),
            host: "h".into(),
            name: name.into(),
            kind: "stream".into(),
            tags: vec![],
            meta: serde_json::Value::Null,
            root: Root::Stream { size: 0, content: Content::default() },
            stats: SnapshotStats::default(),
            parent: None,
            warnings: vec![],
            bunker_version: "t".into(),
        }
    }

    #[test]
    fn selectors() {
        let s = vec![snap(0xab, "db", 1), snap(0xac, "db", 2), snap(0x11, "files", 3)];
        assert_eq!(select(&s, "latest").unwrap().name, "files");
        assert_eq!(select(&s, "db:latest").unwrap().id(), FileId([0xac; 32]));
        assert_eq!(select(&s, "11").unwrap().name, "files");
        assert_eq!(select(&s, "abab").unwrap().id(), FileId([0xab; 32]));
        assert!(matches!(select(&s, "a"), Err(Error::AmbiguousSnapshot(_))));
        assert!(matches!(select(&s, "ff"), Err(Error::NoSnapshot(_))));
        assert!(matches!(select(&s, "nope:latest"), Err(Error::NoSnapshot(_))));
        assert!(matches!(select(&s, "db:11"), Err(Error::NoSnapshot(_))));
        assert_eq!(select(&s, "db").unwrap().id(), FileId([0xac; 32]), "a bare name is its latest snapshot");
    }
}
