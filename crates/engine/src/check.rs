//! `check`: is every snapshot restorable from what is stored? Structure first (index files open, every
//! indexed pack exists with the size its index implies, every snapshot's trees load and every blob they
//! name is indexed); with `read_data`, every byte of the chosen packs (name = hash of bytes, header matches
//! the index, every blob opens and hashes to its ID). Damage is reported by pack with the snapshots it hits.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::Result;
use crate::id::FileId;
use crate::pack::{expected_pack_size, open_blob, pack_id_from_path, pack_path, parse_header};
use crate::repository::{FileKind, Repository};
use crate::restorer::Restorer;
use crate::walk::{collect_blobs, BlobSet};

#[derive(Debug, Clone, Copy)]
pub enum ReadData {
    None,
    All,
    /// A percentage of packs, chosen at random.
    Subset(f64),
    /// Part `n` (1-based) of `of` fixed parts, by pack ID: checking parts 1 to `of` in turn reads every
    /// pack once (the daemon's rotating check).
    Part {
        n: u32,
        of: u32,
    },
}

/// Whether `pack` falls in part `n` of `of` (by the first four bytes of its ID, which are uniform).
pub fn in_part(pack: &FileId, n: u32, of: u32) -> bool {
    let head = u32::from_be_bytes([pack.0[0], pack.0[1], pack.0[2], pack.0[3]]);
    of > 0 && head % of == (n.max(1) - 1) % of
}

#[derive(Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub snapshots: usize,
    pub packs: usize,
    pub packs_read: usize,
    pub blobs: usize,
    /// Problems that make data unreadable.
    pub errors: Vec<String>,
    /// Harmless findings (orphan packs left by interrupted backups…).
    pub warnings: Vec<String>,
    /// Damaged pack → snapshots that need it.
    pub damaged_packs: BTreeMap<String, Vec<String>>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

pub fn check(repo: &Repository, read_data: ReadData) -> Result<CheckReport> {
    if !matches!(read_data, ReadData::None) && !repo.reads_content() {
        return Err(crate::Error::NeedsIdentity { what: "the packs' content `check --read-data` verifies".into() });
    }
    // Verify what the repository holds, not what this host cached of it.
    let repo = &repo.without_cache();
    let mut report = CheckReport::default();
    // Snapshots are listed before the index: a backup committing meanwhile adds an index file first,
    // so every snapshot seen here has its blobs in an index read below.
    let snapshot_ids = repo.list_files(FileKind::Snapshot)?;
    let listing = repo.load_pack_listing()?;
    for (id, e) in &listing.unreadable {
        report.errors.push(format!("index {id}: {e}"));
    }
    let index = listing.index();
    report.blobs = index.blob_count();

    // Packs: present, and of the size their index entries imply.
    let stored: HashMap<String, u64> = repo.storage().list("data")?.into_iter().map(|o| (o.path, o.size)).collect();
    let by_pack: Vec<(FileId, Vec<crate::pack::PackedBlob>)> = listing.packs.into_iter().collect();
    report.packs = by_pack.len();
    let mut damaged: BTreeSet<FileId> = BTreeSet::new();
    for (pack, blobs) in &by_pack {
        let expected = expected_pack_size(blobs);
        match stored.get(&pack_path(pack)) {
            None => {
                report.errors.push(format!("pack {pack} is missing"));
                damaged.insert(*pack);
            }
            Some(&size) if size != expected => {
                report
                    .errors
                    .push(format!("pack {pack} is {size} bytes, its index says {expected} (truncated or altered)"));
                damaged.insert(*pack);
            }
            Some(_) => {}
        }
    }
    for path in stored.keys() {
        if pack_id_from_path(path).is_none_or(|id| !index.has_pack(&id)) {
            report
                .warnings
                .push(format!("{path} is in no index (left by an interrupted backup; `bunker prune` removes it)"));
        }
    }

    // Snapshots: each one's blobs, and which packs each needs.
    let restorer = Restorer::new(repo, &index);
    let mut pack_users: HashMap<FileId, Vec<String>> = HashMap::new();
    let mut unwalked = 0usize;
    for id in snapshot_ids {
        report.snapshots += 1;
        let snap = match repo.load_snapshot(&id) {
            Ok(s) => s,
            Err(e) => {
                report.errors.push(format!("snapshot {id}: {e}"));
                continue;
            }
        };
        let label = format!("{} ({})", id.short(), snap.name);
        let mut used = BlobSet::default();
        match collect_blobs(&restorer, &snap, &mut used) {
            Ok(()) => {}
            // A write-only host: the blobs named in the snapshot file are checked, not those below.
            Err(crate::Error::NeedsIdentity { .. }) => unwalked += 1,
            Err(e) => report.errors.push(format!("snapshot {label}: {e}")),
        }
        let mut packs = BTreeSet::new();
        for blob in &used {
            match index.get(blob) {
                Some(loc) => {
                    packs.insert(loc.pack);
                }
                None => report.errors.push(format!("snapshot {label}: blob {} is not in any index", blob.short())),
            }
        }
        for p in packs {
            pack_users.entry(p).or_default().push(label.clone());
        }
    }

    if unwalked > 0 {
        report.warnings.push(format!(
            "{unwalked} snapshot(s) were checked only as far as their snapshot file: their trees and chunk lists are sealed for the recipients (--identity FILE checks them whole)"
        ));
    }

    // The catalog and the key files: each damaged one named (readers skip them).
    repo.load_runs()?;
    repo.load_snapshots()?;
    for d in repo.damage().list().into_iter().filter(|d| d.path.starts_with("runs/") || d.path.starts_with("catalog/"))
    {
        report.errors.push(format!("{}: {} ({})", d.path, d.problem, d.affects));
    }
    let (keys, damaged_keys) = crate::keys::read_keys(repo.storage())?;
    report.errors.extend(damaged_keys);
    if !keys.iter().any(|(id, _)| *id == repo.key_id()) {
        report
            .warnings
            .push(format!("the key that opened the repository ({}) is no longer listed", repo.key_id().short()));
    }
    for t in repo.storage().stale_temp_files(crate::lock::EXPIRY)? {
        report
            .warnings
            .push(format!("{} ({} bytes) was left by a writer that died; `bunker prune` removes it", t.path, t.size));
    }

    // Data: read packs and verify every byte.
    let chosen: Vec<&(FileId, Vec<crate::pack::PackedBlob>)> = match read_data {
        ReadData::None => Vec::new(),
        ReadData::All => by_pack.iter().collect(),
        ReadData::Subset(pct) => by_pack.iter().filter(|_| rand::random::<f64>() * 100.0 < pct).collect(),
        ReadData::Part { n, of } => by_pack.iter().filter(|(pack, _)| in_part(pack, n, of)).collect(),
    };
    for (pack, blobs) in chosen {
        crate::interrupt::check()?;
        if damaged.contains(pack) {
            continue;
        }
        report.packs_read += 1;
        if let Err(problem) = verify_pack(repo, pack, blobs) {
            report.errors.push(problem);
            damaged.insert(*pack);
        }
    }
    for pack in damaged {
        let users = pack_users.remove(&pack).unwrap_or_default();
        report.damaged_packs.insert(pack.to_hex(), users);
    }
    Ok(report)
}

fn verify_pack(
    repo: &Repository,
    pack: &FileId,
    indexed: &[crate::pack::PackedBlob],
) -> std::result::Result<(), String> {
    let bytes = repo.storage().read(&pack_path(pack)).map_err(|e| format!("pack {pack}: {e}"))?;
    if FileId::of(&bytes) != *pack {
        return Err(format!("pack {pack}: content does not match its name (altered or truncated)"));
    }
    let mut header = parse_header(repo.crypto(), &bytes, &pack.to_hex()).map_err(|e| e.to_string())?;
    header.sort_by_key(|b| b.offset);
    if header != indexed {
        return Err(format!("pack {pack}: header does not match the index"));
    }
    for b in &header {
        let sealed = &bytes[b.offset as usize..(b.offset + b.length) as usize];
        open_blob(repo.crypto(), b, sealed).map_err(|e| format!("pack {pack}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_pack_once() {
        let of = 7;
        for i in 0u32..500 {
            let id = FileId(*blake3::hash(&i.to_le_bytes()).as_bytes());
            let hits: Vec<u32> = (1..=of).filter(|&n| in_part(&id, n, of)).collect();
            assert_eq!(hits.len(), 1, "pack {i} is in exactly one part");
        }
    }
}
