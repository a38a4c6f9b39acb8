//! `stats`: what the repository holds and how well dedup and compression work.

use crate::error::Result;
use crate::repository::Repository;
use crate::snapshot::Root;

#[derive(Debug, Default, serde::Serialize)]
pub struct RepoStats {
    pub snapshots: usize,
    /// Bytes of every snapshot's content added up, as restores would write them.
    pub logical_bytes: u64,
    /// Plaintext bytes of the distinct data blobs stored (content only, not trees and chunk lists).
    pub unique_bytes: u64,
    /// Bytes the blobs take once compressed and sealed.
    pub blob_bytes: u64,
    /// Bytes of every file in the repository (packs, index, snapshots, keys…).
    pub stored_bytes: u64,
    pub packs: usize,
    pub blobs: usize,
    /// Write-once named objects (archived WAL) and the bytes they take.
    pub objects: usize,
    pub object_bytes: u64,
    /// logical / unique.
    pub dedup_ratio: f64,
    /// Plaintext of all blobs / their stored size.
    pub compression_ratio: f64,
}

pub fn stats(repo: &Repository) -> Result<RepoStats> {
    let (index, _) = repo.load_index()?;
    let snapshots = repo.load_snapshots()?;
    let mut s = RepoStats { snapshots: snapshots.len(), blobs: index.blob_count(), ..Default::default() };
    for snap in &snapshots {
        s.logical_bytes += match &snap.root {
            Root::Stream { size, .. } => *size,
            Root::Tree { .. } => snap.stats.bytes_read,
        };
    }
    let mut raw_bytes = 0u64;
    for loc in index.iter() {
        if loc.blob.kind == crate::pack::BlobKind::Data {
            s.unique_bytes += loc.blob.raw_length as u64;
        }
        raw_bytes += loc.blob.raw_length as u64;
        s.blob_bytes += loc.blob.length as u64;
    }
    let objects = repo.storage().list("")?;
    s.packs = objects.iter().filter(|o| o.path.starts_with("data/")).count();
    let named: Vec<_> = objects.iter().filter(|o| o.path.starts_with("objects/")).collect();
    s.objects = named.len();
    s.object_bytes = named.iter().map(|o| o.size).sum();
    s.stored_bytes = objects.iter().filter(|o| !o.path.starts_with("tmp/")).map(|o| o.size).sum();
    s.dedup_ratio = ratio(s.logical_bytes, s.unique_bytes);
    s.compression_ratio = ratio(raw_bytes, s.blob_bytes);
    Ok(s)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}
