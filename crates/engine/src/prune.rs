//! `prune`: delete what no snapshot needs. Under the exclusive lock: find every blob the snapshots use;
//! keep packs that are (nearly) fully used, repack the used blobs of the rest (and merge small packs) into new packs, write one new
//! index for everything kept, and only then delete the old index files and the unneeded packs. A crash at
//! any point leaves either the old index (all packs still there) or the new one (all its packs written):
//! nothing referenced is ever lost; leftovers are removed by the next prune.

use std::collections::HashSet;

use crate::error::Result;
use crate::failpoint::pause_point;
use crate::id::{FileId, IdBuildHasher};
use crate::lock::LockGuard;
use crate::pack::{
    expected_pack_size, open_blob, pack_id_from_path, pack_path, BlobKind, PackBuilder, PackedBlob, SealedBlob,
};
use crate::repository::Repository;
use crate::restorer::Restorer;
use crate::walk::{collect_blobs, BlobSet};

/// A stored object's path and size.
type Sized = (String, u64);

/// Packs with less than this share of used bytes are repacked; the others are kept as they are.
const REPACK_BELOW_USED: f64 = 0.8;

/// Packs smaller than this share of the pack size are merged when there are two or more (a backup of a
/// small target, or of little change, writes a small pack; without merging, the pack count would grow
/// with the number of runs rather than with the data).
const SMALL_PACK_SHARE: u64 = 8;

#[derive(Debug, Default, serde::Serialize)]
pub struct PruneReport {
    pub packs_kept: usize,
    pub packs_repacked: usize,
    /// Of the repacked packs, those that were only small (fully used, merged with other small ones).
    pub small_packs_merged: usize,
    pub packs_deleted: usize,
    pub blobs_kept: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    /// Temp files left by writers that died (older than the lock expiry).
    pub temp_files_removed: usize,
    /// About how much the prune writes before it deletes (repacked blobs, the new index, its lock).
    pub bytes_to_write: u64,
    pub dry_run: bool,
    /// Under Object Lock: unneeded packs left because they (or an index file listing them) are still
    /// retained, index files left for the same reason, and the earliest date one of them is released.
    pub packs_retained: usize,
    pub index_files_retained: usize,
    pub locked_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The catalog's fold, which prune does last (see [`crate::segment`]).
    pub catalog: crate::segment::FoldReport,
}

/// Prunes under `lock`, which must be the exclusive lock; it is verified before each destructive step.
pub fn prune(repo: &Repository, lock: &LockGuard, dry_run: bool) -> Result<PruneReport> {
    prune_under(repo, Some(lock), dry_run)
}

/// What a prune would do, without a lock (nothing is written or deleted): for a repository that cannot
/// take the exclusive lock's write, to say how much space the prune needs and would free.
pub fn estimate(repo: &Repository) -> Result<PruneReport> {
    prune_under(repo, None, true)
}

/// Deletes the temp files writers that died left in `tmp/` (older than the lock expiry, so no live
/// writer owns one): safe without a lock, and the first thing to free on a full disk. Returns how many
/// and their bytes.
pub fn remove_stale_temp_files(repo: &Repository) -> Result<(usize, u64)> {
    let stale = repo.storage().stale_temp_files(crate::lock::EXPIRY)?;
    for t in &stale {
        repo.storage().delete(&t.path)?;
    }
    Ok((stale.len(), stale.iter().map(|t| t.size).sum()))
}

fn prune_under(repo: &Repository, lock: Option<&LockGuard>, dry_run: bool) -> Result<PruneReport> {
    if !repo.reads_content() {
        // What snapshots use is in their trees and chunk lists, which are content: prune runs where the
        // identity is (DESIGN.md, "Recipients repositories").
        return Err(crate::Error::NeedsIdentity {
            what: "the trees prune walks to find what snapshots still use".into(),
        });
    }
    let storage = repo.storage();
    let listing = repo.load_pack_listing()?;
    if let Some((id, e)) = listing.unreadable.first() {
        // Deleting with part of the index unknown could delete packs that only it lists.
        return Err(crate::Error::Corrupt(format!(
            "index {id} cannot be read ({e}); refusing to prune (packs only it lists would be deleted): run `bunker repair index` first"
        )));
    }
    let index = listing.index();
    let index_files = listing.files;
    let listing_by = listing.listed_by;
    let listed = listing.packs;
    let mut used = BlobSet::default();
    let restorer = Restorer::new(repo, &index);
    let snapshots = repo.load_snapshots()?;
    if let Some(d) = repo.damage().list().into_iter().find(|d| d.path.starts_with("snapshots/")) {
        // Its data would look unused and be deleted, while the file might still be put back from a copy.
        return Err(crate::Error::Corrupt(format!(
            "{} cannot be read ({}); refusing to prune (the data only it uses would be deleted): put it back from a copy of the repository, or remove it with `bunker repair snapshots`, then prune",
            d.path, d.problem
        )));
    }
    for snap in snapshots {
        collect_blobs(&restorer, &snap, &mut used).map_err(|e| match e {
            crate::Error::Corrupt(m) => crate::Error::Corrupt(format!(
                "snapshot {} ({}): {m}; refusing to prune: `bunker repair snapshots` removes snapshots whose data is gone",
                snap.short_id(),
                snap.name
            )),
            other => other,
        })?;
    }

    let stored = storage.list("data")?;
    let stored_sizes: std::collections::HashMap<FileId, u64> =
        stored.iter().filter_map(|o| pack_id_from_path(&o.path).map(|id| (id, o.size))).collect();
    let mut report = PruneReport { dry_run, ..Default::default() };
    let mut keep: Vec<(FileId, Vec<PackedBlob>)> = Vec::new();
    let mut repack: Vec<(FileId, Vec<PackedBlob>)> = Vec::new();
    let mut placed: HashSet<_, IdBuildHasher> = HashSet::default();
    let mut small: Vec<(FileId, Vec<PackedBlob>)> = Vec::new();
    let small_below = u64::from(repo.config().pack_size) / SMALL_PACK_SHARE;
    for (pack, blobs) in listed.iter().map(|(p, b)| (*p, b.clone())) {
        // Only intact packs (present, of the size their index implies) can hold what stays.
        if stored_sizes.get(&pack) != Some(&expected_pack_size(&blobs)) {
            tracing::warn!("pack {pack} is missing or damaged; prune will not rely on it");
            continue;
        }
        // A blob stored twice (concurrent backups) is kept once: in the first pack that has it.
        let (needed, _): (Vec<PackedBlob>, Vec<PackedBlob>) =
            blobs.iter().partition(|b| used.contains(&b.id) && !placed.contains(&b.id));
        let total: u64 = blobs.iter().map(|b| b.length as u64).sum();
        let needed_bytes: u64 = needed.iter().map(|b| b.length as u64).sum();
        report.blobs_removed += blobs.len() - needed.len();
        if needed.is_empty() {
            continue;
        }
        placed.extend(needed.iter().map(|b| b.id));
        report.blobs_kept += needed.len();
        if needed.len() == blobs.len() && total < small_below {
            small.push((pack, needed));
        } else if needed.len() == blobs.len() || (needed_bytes as f64) >= REPACK_BELOW_USED * total as f64 {
            keep.push((pack, blobs));
        } else {
            repack.push((pack, needed));
        }
    }
    // Small packs of one kind (data, trees) are merged when there are two or more: one small pack of
    // each kind is what merging leaves, and stays.
    for kind in [BlobKind::Data, BlobKind::Meta] {
        let (of_kind, rest): (Vec<_>, Vec<_>) =
            small.into_iter().partition(|(_, blobs)| blobs.first().is_some_and(|b| b.kind == kind));
        small = rest;
        if of_kind.len() >= 2 {
            report.small_packs_merged += of_kind.len();
            repack.extend(of_kind);
        } else {
            keep.extend(of_kind);
        }
    }
    keep.extend(small);
    // Under Object Lock: what is still retained cannot be deleted, so it is neither repacked (its blobs
    // would be stored twice) nor deleted, and an index file still retained keeps every pack it lists.
    let mut pinned: HashSet<FileId> = HashSet::new();
    let mut retained_index: HashSet<FileId> = HashSet::new();
    if storage.object_lock().is_some() {
        let kept: HashSet<FileId> = keep.iter().map(|(p, _)| *p).collect();
        let mut paths: Vec<String> = index_files.iter().map(|id| format!("index/{id}")).collect();
        paths.extend(
            stored
                .iter()
                .filter(|o| pack_id_from_path(&o.path).is_some_and(|id| !kept.contains(&id)))
                .map(|o| o.path.clone()),
        );
        let retained = crate::objectlock::retained(storage, &paths, crate::segment::read_workers(repo))?;
        report.locked_until = retained.values().min().copied();
        for id in &index_files {
            if retained.contains_key(&format!("index/{id}")) {
                retained_index.insert(*id);
            }
        }
        for (pack, by) in &listing_by {
            if by.iter().any(|f| retained_index.contains(f)) {
                pinned.insert(*pack);
            }
        }
        pinned.extend(retained.keys().filter_map(|p| pack_id_from_path(p)));
        let mut still = Vec::new();
        for (pack, needed) in repack {
            match listed.get(&pack).filter(|_| pinned.contains(&pack)) {
                Some(all) => {
                    if needed.len() == all.len() {
                        report.small_packs_merged -= 1;
                    }
                    keep.push((pack, all.clone()));
                }
                None => still.push((pack, needed)),
            }
        }
        repack = still;
        report.index_files_retained = retained_index.len();
    }
    if let Some(lost) = used.iter().find(|b| !placed.contains(*b)) {
        let n = used.iter().filter(|b| !placed.contains(*b)).count();
        return Err(crate::Error::Corrupt(format!(
            "{n} blobs that snapshots need are in no intact pack (first: {}); run `bunker check --read-data`; refusing to prune",
            lost.short()
        )));
    }
    let kept_packs: HashSet<FileId> = keep.iter().map(|(p, _)| *p).collect();
    let (deferred, doomed): (Vec<Sized>, Vec<Sized>) = stored
        .iter()
        .filter(|o| pack_id_from_path(&o.path).is_some_and(|id| !kept_packs.contains(&id)))
        .map(|o| (o.path.clone(), o.size))
        .partition(|(p, _)| pack_id_from_path(p).is_some_and(|id| pinned.contains(&id)));
    report.packs_retained = deferred.len();
    report.packs_kept = keep.len();
    report.packs_repacked = repack.len();
    report.packs_deleted = doomed.len();
    report.bytes_freed = doomed.iter().map(|(_, s)| s).sum();
    // New packs for the repacked blobs, then one index listing every pack kept (46 bytes a blob).
    let repacked: u64 = repack.iter().flat_map(|(_, b)| b).map(|b| b.length as u64 + 46).sum();
    report.bytes_to_write = repacked + 4096 + 46 * report.blobs_kept as u64 + 36 * (keep.len() + repack.len()) as u64;
    let stale_tmp = storage.stale_temp_files(crate::lock::EXPIRY)?;
    report.temp_files_removed = stale_tmp.len();
    report.bytes_freed += stale_tmp.iter().map(|t| t.size).sum::<u64>();
    if dry_run {
        return Ok(report);
    }
    let lock = lock.expect("a prune that deletes holds the exclusive lock");

    // 0. Temp files their writers left when they died: they free space before anything is written.
    remove_stale_temp_files(repo)?;
    if storage.object_lock().is_some() && repack.is_empty() && doomed.is_empty() {
        // Nothing to repack or delete: a new index would only add one more file the lock keeps.
        report.index_files_retained = 0;
        if report.packs_retained == 0 {
            report.locked_until = None;
        }
        report.catalog = crate::segment::fold(repo)?;
        return Ok(report);
    }
    // 1. Copy still-needed blobs out of sparse packs (sealed bytes are reused after checking them).
    lock.verify()?;
    let written = repack_blobs(repo, &repack, false)?;
    report.bytes_freed = report.bytes_freed.saturating_sub(written.iter().map(|(_, _, size)| size).sum());
    pause_point("prune-after-repack");
    // 2. One index for everything that stays.
    let mut new_index = keep;
    new_index.extend(written.into_iter().map(|(id, blobs, _)| (id, blobs)));
    lock.verify()?;
    let new_id = if new_index.is_empty() { None } else { Some(repo.save_index(&new_index)?) };
    pause_point("prune-after-index");
    // 3. Old index files, then 4. packs nothing indexes any more.
    lock.verify()?;
    for id in index_files.iter().filter(|id| Some(**id) != new_id && !retained_index.contains(id)) {
        match storage.delete(&format!("index/{id}")) {
            // Locked since it was looked at (extended meanwhile): it keeps its packs, like the others.
            Err(crate::Error::Retained { .. }) => {
                report.index_files_retained += 1;
                pinned.extend(listing_by.iter().filter(|(_, by)| by.contains(id)).map(|(p, _)| *p));
            }
            r => r?,
        }
    }
    pause_point("prune-after-index-delete");
    let new_packs: HashSet<FileId> = new_index.iter().map(|(p, _)| *p).collect();
    for (path, size) in doomed {
        let id = pack_id_from_path(&path);
        if id.is_some_and(|id| new_packs.contains(&id)) {
            continue;
        }
        if id.is_some_and(|id| pinned.contains(&id)) {
            report.packs_retained += 1;
            report.packs_deleted -= 1;
            report.bytes_freed = report.bytes_freed.saturating_sub(size);
            continue;
        }
        match storage.delete(&path) {
            Err(crate::Error::Retained { .. }) => {
                report.packs_retained += 1;
                report.packs_deleted -= 1;
                report.bytes_freed = report.bytes_freed.saturating_sub(size);
            }
            r => r?,
        }
        pause_point("prune-pack-deleted");
    }
    // 5. The catalog: loose run records into monthly segments, snapshot summaries brought up to date.
    report.catalog = crate::segment::fold(repo)?;
    Ok(report)
}

/// Copies the sealed bytes of `repack`'s blobs into new packs (checking each opens to its ID first).
/// With `salvage` (`repair index --read-data`), a blob that does not open or lies past the pack's end is
/// left behind instead of failing the whole run. Returns the new packs with their blobs and sizes.
pub(crate) fn repack_blobs(
    repo: &Repository,
    repack: &[(FileId, Vec<PackedBlob>)],
    salvage: bool,
) -> Result<Vec<(FileId, Vec<PackedBlob>, u64)>> {
    let pack_size = repo.config().pack_size as usize;
    let mut out = Vec::new();
    let mut open: [PackBuilder; 2] = [PackBuilder::new(BlobKind::Data, 0), PackBuilder::new(BlobKind::Meta, 0)];
    let flush = |pb: PackBuilder, out: &mut Vec<(FileId, Vec<PackedBlob>, u64)>| -> Result<()> {
        let (id, bytes, blobs) = pb.finish(repo.crypto());
        let size = bytes.len() as u64;
        repo.storage().write(&pack_path(&id), bytes)?;
        out.push((id, blobs, size));
        Ok(())
    };
    for (pack, blobs) in repack {
        crate::interrupt::check()?;
        let bytes = repo.storage().read(&pack_path(pack))?;
        for b in blobs {
            let opened = bytes
                .get(b.offset as usize..b.offset as usize + b.length as usize)
                .ok_or_else(|| crate::Error::Corrupt(format!("pack {pack}: blob {} lies past its end", b.id.short())))
                .and_then(|sealed| open_blob(repo.crypto(), b, sealed).map(|_| sealed));
            let sealed = match opened {
                Ok(sealed) => sealed,
                Err(crate::Error::Corrupt(_)) if salvage => continue,
                Err(e) => return Err(e),
            };
            let slot = &mut open[b.kind as usize];
            slot.add(SealedBlob {
                id: b.id,
                kind: b.kind,
                compression: b.compression,
                raw_length: b.raw_length,
                bytes: sealed.to_vec(),
            });
            if slot.len() >= pack_size {
                let full = std::mem::replace(slot, PackBuilder::new(b.kind, 0));
                flush(full, &mut out)?;
            }
        }
    }
    for pb in open {
        if !pb.is_empty() {
            flush(pb, &mut out)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {

    use std::time::Duration;

    use super::*;

    use crate::check::{check, ReadData};

    use crate::lock::acquire;
    use crate::snapshot::Root;

    use crate::testing::{init, stream as backup};

    fn dump(repo: &Repository, id: &crate::FileId) -> Vec<u8> {
        let (index, _) = repo.load_index().unwrap();
        let Root::Stream { content, .. } = repo.load_snapshot(id).unwrap().root else { panic!("a stream") };
        let mut out = Vec::new();
        Restorer::new(repo, &index).dump(&content, &mut out).unwrap();
        out
    }

    fn data(n: usize) -> Vec<u8> {
        (0..4096 + n * 7).map(|i| ((i * 31 + n * 17) % 251) as u8 ^ (n as u8)).collect()
    }

    #[test]
    fn small_packs_are_merged_and_everything_stays_restorable() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(dir.path());
        let ids: Vec<_> = (0..40).map(|n| backup(&repo, &format!("hourly{}", n % 4), &data(n))).collect();
        let before = repo.stored_packs().unwrap().len();
        assert!(before >= 40, "each backup wrote its own packs: {before}");

        let lock = acquire(repo.storage(), true, "prune", Duration::ZERO).unwrap();
        let r = prune(&repo, &lock, false).unwrap();
        drop(lock);
        assert_eq!(r.small_packs_merged, before, "{r:?}");
        let after = repo.stored_packs().unwrap().len();
        assert!(after <= 2, "one data pack and one tree pack hold it all: {after} packs");
        assert_eq!(repo.list_files(crate::repository::FileKind::Index).unwrap().len(), 1);
        let report = check(&repo, ReadData::All).unwrap();
        assert!(report.is_ok(), "{:?}", report.errors);
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(dump(&repo, id), data(n), "snapshot {n}");
        }

        // Merged packs are full-size or alone: a second prune has nothing to merge.
        let lock = acquire(repo.storage(), true, "prune", Duration::ZERO).unwrap();
        let r = prune(&repo, &lock, false).unwrap();
        assert_eq!((r.small_packs_merged, r.packs_repacked, r.packs_deleted), (0, 0, 0), "{r:?}");
    }
}
