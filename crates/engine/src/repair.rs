//! `repair`: bring a damaged repository back to one that `check` accepts, keeping every snapshot that
//! can still be restored. Both run under the exclusive lock and are crash-safe by their order, like
//! `prune`: nothing is deleted before what replaces it is written.
//!
//! - [`repair_index`] rebuilds the index from the packs themselves: every pack ends with a sealed header
//!   listing its blobs, so an index file lost or damaged costs nothing that is stored. Packs a readable
//!   index lists with the size it implies are taken as listed (or read too, with `read_all_packs`); the
//!   others are read (two ranged reads each). One new index is written, then the old files are deleted.
//!   A crash in between leaves two listings of the same packs, which are identical (FORMAT.md allows it).
//!   With `read_data` every pack is read whole; the blobs of one that no longer matches its name that
//!   still open are copied into new packs (written before the index), and the damaged pack is left out.
//! - [`repair_snapshots`] removes snapshot files that cannot be opened, snapshots that name a tree or
//!   blob no intact pack holds, and run records of the catalog that cannot be opened. It refuses while an
//!   index file is damaged or a pack is not of its indexed size (run `repair index` first): a blob that
//!   could still be saved would be taken for lost, and a restorable snapshot removed. A file that opens
//!   but is written in a form this bunker does not read (a newer one's) is never removed.

use crate::error::{Error, Result};
use crate::failpoint::pause_point;
use crate::id::FileId;
use crate::index::Index;
use crate::lock::LockGuard;
use crate::pack::{expected_pack_size, header_span, pack_path, parse_sealed_header, PackedBlob};
use crate::repository::{FileKind, Repository};
use crate::restorer::Restorer;
use crate::walk::{collect_blobs, BlobSet};

#[derive(Debug, Default, serde::Serialize)]
pub struct IndexRepair {
    /// Packs in `data/`.
    pub packs: usize,
    /// Packs whose header was read.
    pub packs_read: usize,
    /// Packs no readable index listed, indexed again from their header.
    pub packs_added: usize,
    /// Packs left out of the new index, each with why: missing, or a header that cannot be read.
    pub packs_dropped: Vec<String>,
    /// Damaged packs (`read_data`) whose intact blobs were copied into new packs.
    pub packs_salvaged: Vec<String>,
    /// Old index files deleted (or, dry run, that would be).
    pub index_files_removed: usize,
    /// Damaged index files among them.
    pub damaged_index_files: Vec<String>,
    pub blobs: usize,
    /// Whether anything needed changing.
    pub changed: bool,
    pub dry_run: bool,
}

/// Rebuilds the index under `lock` (the exclusive lock; verified before each write and delete).
/// With `read_data`, every pack is read whole: one whose bytes no longer hash to its name is salvaged.
pub fn repair_index(
    repo: &Repository,
    lock: &LockGuard,
    read_all_packs: bool,
    read_data: bool,
    dry_run: bool,
) -> Result<IndexRepair> {
    if read_data && !repo.reads_content() {
        return Err(Error::NeedsIdentity { what: "the blobs `repair index --read-data` verifies".into() });
    }
    let repo = &repo.without_cache();
    let listing = repo.load_pack_listing()?;
    let stored = repo.stored_packs()?;
    let mut report = IndexRepair {
        packs: stored.len(),
        damaged_index_files: listing.unreadable.iter().map(|(id, e)| format!("index/{id}: {e}")).collect(),
        dry_run,
        ..Default::default()
    };
    let mut rebuilt: Vec<(FileId, Vec<PackedBlob>)> = Vec::with_capacity(stored.len());
    let mut salvage: Vec<(FileId, Vec<PackedBlob>)> = Vec::new();
    let mut differs = false;
    for (pack, &size) in &stored {
        crate::interrupt::check()?;
        let listed = listing.packs.get(pack);
        let trusted = listed.filter(|b| !read_all_packs && !read_data && expected_pack_size(b) == size);
        let blobs = match trusted {
            Some(blobs) => blobs.clone(),
            None => {
                report.packs_read += 1;
                match read_pack_header(repo, pack, size) {
                    Ok(blobs) => {
                        if listed.is_none() {
                            report.packs_added += 1;
                        }
                        differs |= listed != Some(&blobs);
                        blobs
                    }
                    Err(e @ Error::Corrupt(_)) => {
                        match listed {
                            // The index still says where its blobs are: save those that open.
                            Some(blobs) => salvage.push((*pack, blobs.clone())),
                            None => {
                                let what = if listed.is_some() { "its blobs are lost" } else { "it was in no index" };
                                report.packs_dropped.push(format!("pack {pack}: {e} ({what})"));
                            }
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if read_data && FileId::of(&repo.storage().read(&pack_path(pack))?) != *pack {
            salvage.push((*pack, blobs));
            continue;
        }
        rebuilt.push((*pack, blobs));
    }
    for pack in listing.packs.keys().filter(|p| !stored.contains_key(p)) {
        report.packs_dropped.push(format!("pack {pack} is missing (its blobs are lost)"));
    }
    report.changed =
        differs || !report.packs_dropped.is_empty() || !listing.unreadable.is_empty() || !salvage.is_empty();
    let old: Vec<FileId> = listing.files.clone();
    if !report.changed || dry_run {
        report.blobs = rebuilt.iter().chain(&salvage).map(|(_, b)| b.len()).sum();
        report.index_files_removed = if report.changed { old.len() } else { 0 };
        report.packs_salvaged = salvage
            .iter()
            .map(|(p, _)| format!("pack {p} is damaged: its blobs that still open would be saved"))
            .collect();
        return Ok(report);
    }
    report.index_files_removed = old.len();
    // Damaged packs: the blobs that still open go into new packs, written before the index that lists
    // them; the damaged pack is left out of it (and so removed by the next prune).
    lock.verify()?;
    for (pack, blobs) in &salvage {
        let saved = crate::prune::repack_blobs(repo, std::slice::from_ref(&(*pack, blobs.clone())), true)?;
        let n: usize = saved.iter().map(|(_, b, _)| b.len()).sum();
        report
            .packs_salvaged
            .push(format!("pack {pack} is damaged: {n} of its {} blobs saved into new packs", blobs.len()));
        rebuilt.extend(saved.into_iter().map(|(id, b, _)| (id, b)));
    }
    report.blobs = rebuilt.iter().map(|(_, b)| b.len()).sum();
    let new_id = if rebuilt.is_empty() { None } else { Some(repo.save_index(&rebuilt)?) };
    pause_point("repair-index-after-write");
    lock.verify()?;
    for id in old.iter().filter(|id| Some(**id) != new_id) {
        repo.storage().delete(&format!("{}/{id}", FileKind::Index.dir()))?;
        pause_point("repair-index-file-deleted");
    }
    Ok(report)
}

/// A pack's header, by two ranged reads: its last 4 bytes, then the sealed header they locate. The
/// entries come back sorted by offset, as index files list them.
pub fn read_pack_header(repo: &Repository, pack: &FileId, size: u64) -> Result<Vec<PackedBlob>> {
    let path = pack_path(pack);
    let name = pack.to_hex();
    if size < 4 {
        return Err(Error::Corrupt(format!("pack {name}: {size} bytes is too short to hold a header")));
    }
    let last4 = repo.storage().read_range(&path, size - 4, 4)?;
    let (start, len) = header_span(size, &last4, &name)?;
    let sealed = repo.storage().read_range(&path, start, len)?;
    let mut blobs = parse_sealed_header(repo.crypto(), &sealed, start, &name)?;
    blobs.sort_by_key(|b| b.offset);
    Ok(blobs)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RemovedSnapshot {
    pub id: String,
    /// Its name, when the file could still be read.
    pub name: Option<String>,
    pub why: String,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct SnapshotRepair {
    pub snapshots: usize,
    pub removed: Vec<RemovedSnapshot>,
    /// Run records and catalog segments that cannot be opened (`runs/<id>`, `catalog/…/<id>`: why).
    pub runs_removed: Vec<String>,
    pub dry_run: bool,
}

/// Removes snapshots that cannot be restored, under `lock` (the exclusive lock).
pub fn repair_snapshots(repo: &Repository, lock: &LockGuard, dry_run: bool) -> Result<SnapshotRepair> {
    if !repo.reads_content() {
        // Without the identity every tree would look unreadable, and every snapshot lost.
        return Err(Error::NeedsIdentity { what: "the trees `repair snapshots` walks".into() });
    }
    let repo = &repo.without_cache();
    let listing = repo.load_pack_listing()?;
    if let Some((id, e)) = listing.unreadable.first() {
        return Err(Error::Corrupt(format!(
            "index {id} cannot be read ({e}); run `bunker repair index` first, so that no snapshot whose blobs only it lists is taken for lost"
        )));
    }
    let stored = repo.stored_packs()?;
    // A pack that is there but not of its indexed size may still hold intact blobs: save them first.
    if let Some((pack, _)) =
        listing.packs.iter().find(|(p, b)| stored.get(*p).is_some_and(|size| *size != expected_pack_size(b)))
    {
        return Err(Error::Corrupt(format!(
            "pack {pack} is not the size its index says; run `bunker repair index --read-data` first, so that its intact blobs are saved before snapshots that need them are judged lost"
        )));
    }
    // Only blobs in packs that are there, of the size their index implies, count as stored.
    let mut index = Index::new();
    for (pack, blobs) in &listing.packs {
        if stored.get(pack) == Some(&expected_pack_size(blobs)) {
            index.add_pack(*pack, blobs);
        }
    }
    let restorer = Restorer::new(repo, &index);
    let ids = repo.list_files(FileKind::Snapshot)?;
    let mut report = SnapshotRepair { snapshots: ids.len(), dry_run, ..Default::default() };
    for id in ids {
        crate::interrupt::check()?;
        let snap = match repo.load_snapshot(&id) {
            Ok(s) => s,
            Err(Error::NotFound { .. }) => continue,
            Err(e @ Error::UnknownContent(_)) => {
                tracing::warn!("keeping snapshot {}: {e}", id.short());
                continue;
            }
            Err(e @ Error::Corrupt(_)) => {
                report.removed.push(RemovedSnapshot { id: id.to_hex(), name: None, why: e.to_string() });
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut used = BlobSet::default();
        let why = match collect_blobs(&restorer, &snap, &mut used) {
            Ok(()) => {
                let missing: Vec<_> = used.iter().filter(|b| !index.contains(b)).collect();
                missing.first().map(|first| {
                    format!("{} blobs it needs are in no intact pack (first: {})", missing.len(), first.short())
                })
            }
            Err(e @ (Error::Corrupt(_) | Error::NotFound { .. })) => Some(e.to_string()),
            Err(e) => return Err(e),
        };
        if let Some(why) = why {
            report.removed.push(RemovedSnapshot { id: id.to_hex(), name: Some(snap.name.clone()), why });
        }
    }
    let runs = repo.list_files(FileKind::Run)?;
    let mut damaged_runs = Vec::new();
    for id in runs {
        match repo.load_file(FileKind::Run, &id).and_then(|p| crate::catalog::decode_run(&id, &p)) {
            Ok(_) | Err(Error::NotFound { .. } | Error::UnknownContent(_)) => {}
            Err(e @ Error::Corrupt(_)) => {
                report.runs_removed.push(format!("runs/{id}: {e}"));
                damaged_runs.push((FileKind::Run, id));
            }
            Err(e) => return Err(e),
        }
    }
    // Damaged catalog segments: what they folded is lost already; snapshot summaries cost nothing.
    for kind in [FileKind::RunSegment, FileKind::SnapshotSegment] {
        for id in repo.list_files(kind)? {
            match repo.load_file(kind, &id) {
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e @ Error::Corrupt(_)) => {
                    report.runs_removed.push(format!("{}/{id}: {e}", kind.dir()));
                    damaged_runs.push((kind, id));
                }
                Err(e) => return Err(e),
            }
        }
    }
    if dry_run {
        return Ok(report);
    }
    for r in &report.removed {
        lock.verify()?;
        repo.storage().delete(&format!("{}/{}", FileKind::Snapshot.dir(), r.id))?;
        pause_point("repair-snapshot-deleted");
    }
    for (kind, id) in damaged_runs {
        lock.verify()?;
        repo.storage().delete(&format!("{}/{id}", kind.dir()))?;
    }
    Ok(report)
}
