//! `copy`: snapshots with the packs they need, named objects (the WAL archive) and the catalog, carried
//! from one repository to another that holds the same master key under its own password (a secondary:
//! offsite, another region), incrementally and byte for byte.
//!
//! Blob IDs are keyed, and every file sealed, with keys derived from the master key, so a repository that
//! shares it can take the source's files as they are: nothing is re-encrypted and deduplication carries
//! over. Every file is checked against its name on the way (BLAKE3 of the bytes for packs, snapshots and
//! run records; the seal and the content ID for objects), so damage in the source is never propagated.
//!
//! What to copy is decided per blob: the snapshots the destination lacks are walked in the source, and
//! the source packs holding blobs the destination's index does not list are copied whole and described
//! by new index files in the destination. The write order is a backup's: packs (indexed in batches as
//! they land), objects, snapshots, run records; an interrupted copy leaves only packs that the next copy
//! indexes instead of sending again. Nothing in the destination is ever deleted or overwritten with other
//! content; its retention is its own business.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use serde::Serialize;

use crate::config::{InitOptions, RepoConfig, CONFIG_PATH};
use crate::error::{Error, Result};
use crate::failpoint::pause_point;
use crate::id::FileId;
use crate::index::Index;
use crate::keys;
use crate::lock::LockGuard;
use crate::pack::{expected_pack_size, open_payload, pack_path, parse_header, PackBuilder, PackedBlob, SealedBlob};
use crate::repository::{FileKind, Repository};
use crate::restorer::Restorer;
use crate::snapshot::Snapshot;
use crate::storage::{Location, Storage};
use crate::walk::{collect_blobs, BlobSet};

/// Packs described by one index file of the destination: an interrupted copy keeps what was indexed.
const PACKS_PER_INDEX: usize = 256;
/// Bytes of packs held in memory at once (each transfer holds one whole pack).
const IN_FLIGHT_BYTES: u64 = 128 << 20;
/// The object format's associated-data prefix (FORMAT.md, "Named objects"): an object is verified in
/// transit by opening it, and its seal names its full path, which a copy keeps.
const OBJECT_AAD_PREFIX: &[u8] = b"bunker/object/v1\0";
const OBJECT_ID_LEN: usize = 32;

/// What a copy will transfer, decided before anything is written.
#[derive(Debug, Default, Clone)]
pub struct CopyPlan {
    /// Snapshots the destination lacks, oldest first.
    pub snapshots: Vec<FileId>,
    /// Snapshots (of the chosen name, if any) the destination has already.
    pub snapshots_present: usize,
    /// Packs to transfer, with their size.
    pub packs: Vec<(FileId, u64)>,
    /// Every pack the new index files describe: those transferred, and those already stored in the
    /// destination without an index entry (an interrupted copy's).
    pub index: Vec<(FileId, Vec<PackedBlob>)>,
    /// Named objects (`objects/…` paths) to transfer, with their size.
    pub objects: Vec<(String, u64)>,
    /// Files of run records to transfer (`runs/<id>`, `catalog/runs/<id>`), with their size.
    pub runs: Vec<(String, u64)>,
    /// Sizes of the snapshot files to transfer.
    snapshot_bytes: u64,
}

/// What a copy did, or with `dry_run` would do.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CopyReport {
    pub dry_run: bool,
    pub snapshots: usize,
    pub snapshots_present: usize,
    pub packs: usize,
    pub pack_bytes: u64,
    /// Packs already in the destination (left by an interrupted copy) that only needed an index entry.
    pub packs_indexed: usize,
    pub index_files: usize,
    pub objects: usize,
    pub object_bytes: u64,
    pub runs: usize,
    /// Every byte read from the source and written to the destination.
    pub bytes: u64,
}

impl CopyPlan {
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
            && self.index.is_empty()
            && self.packs.is_empty()
            && self.objects.is_empty()
            && self.runs.is_empty()
    }

    /// The report of carrying the plan out completely.
    pub fn report(&self, dry_run: bool) -> CopyReport {
        let pack_bytes = self.packs.iter().map(|(_, s)| s).sum();
        let object_bytes = self.objects.iter().map(|(_, s)| s).sum();
        let run_bytes: u64 = self.runs.iter().map(|(_, s)| s).sum();
        CopyReport {
            dry_run,
            snapshots: self.snapshots.len(),
            snapshots_present: self.snapshots_present,
            packs: self.packs.len(),
            pack_bytes,
            packs_indexed: self.index.len() - self.packs.len(),
            index_files: self.index.len().div_ceil(PACKS_PER_INDEX),
            objects: self.objects.len(),
            object_bytes,
            runs: self.runs.len(),
            bytes: pack_bytes + object_bytes + run_bytes + self.snapshot_bytes,
        }
    }
}

/// Opens the repository in `storage` as a destination for `src`: `password` must open one of its key
/// slots, and the key it opens must be `src`'s master key (the destination was made by
/// [`create_secondary`] from `src`, or from a repository sharing its key).
pub fn open_secondary(src: &Repository, storage: Storage, password: &str) -> Result<Repository> {
    refuse_same_location(src, &storage)?;
    let dst = Repository::open(storage, password)?;
    if !src.recipients().is_empty() && dst.recipients() != src.recipients() {
        return Err(Error::invalid(
            "secondary",
            format!(
                "{} does not seal content for the same age recipients as this repository; nothing was written: a \
                 recipients repository copies only to a secondary made from it",
                dst.storage().location()
            ),
        ));
    }
    if dst.master_key().as_bytes() != src.master_key().as_bytes() {
        return Err(Error::invalid(
            "secondary",
            format!(
                "{} was not created by `bunker copy` from this repository (its master key differs); nothing was \
                 written: give the secondary an empty location",
                dst.storage().location()
            ),
        ));
    }
    Ok(dst)
}

/// Creates a destination for `src` in `storage`, which must hold no repository: `src`'s master key sealed
/// under `password` (the destination's own key slot) and `src`'s chunker, compression and pack size, so
/// that a backup made straight into it (after a failover) cuts and deduplicates like the source. It gets a
/// repository ID of its own: the ID names local caches (index, snapshots, the session key), which must not
/// be shared by two repositories whose contents differ.
pub fn create_secondary(src: &Repository, storage: Storage, password: &str) -> Result<Repository> {
    create_secondary_for(src, storage, password, &[], None)
}

/// [`create_secondary`]; with `recipients`, from a password repository, a recipients secondary: the same
/// master key (blob IDs, snapshots and the catalog carry over as they are) with content re-sealed for
/// the recipients on the way (see [`execute`]). This is how a history moves into a recipients repository.
/// With `object_lock`, the secondary is created under S3 Object Lock (its bucket must have it enabled):
/// what is copied into it is retained for that long.
pub fn create_secondary_for(
    src: &Repository,
    storage: Storage,
    password: &str,
    recipients: &[crate::content::Recipient],
    object_lock: Option<crate::config::ObjectLock>,
) -> Result<Repository> {
    refuse_same_location(src, &storage)?;
    if storage.exists(CONFIG_PATH)? {
        return open_secondary(src, storage, password);
    }
    if let Some(lock) = &object_lock {
        lock.validate()?;
    }
    let storage = storage.with_object_lock(object_lock)?;
    if object_lock.is_some() && !storage.bucket_lock_enabled()? {
        return Err(Error::invalid(
            "object lock",
            format!(
                "the bucket of {} does not have S3 Object Lock enabled: create it with Object Lock, or drop object_lock",
                storage.location()
            ),
        ));
    }
    if !recipients.is_empty() && !src.recipients().is_empty() {
        return Err(Error::invalid(
            "recipients",
            "this repository already seals content for its own recipients, which its secondaries keep; drop --recipient",
        ));
    }
    let c = src.config();
    let config = RepoConfig::new(&InitOptions {
        chunker: c.chunker,
        compression_level: c.compression_level,
        pack_size: c.pack_size,
        // A secondary's lock is its own (a year for monthly copies, say), not the source's.
        object_lock,
    });
    let key = match recipients {
        [] => src.repo_key().clone(),
        given => keys::RepoKey {
            master: src.master_key().clone(),
            recipients: given.iter().map(|r| r.text.clone()).collect(),
        },
    };
    let key_id = keys::add_key(&storage, &key, password)?;
    if recipients.is_empty() {
        // A recipients repository's identity slots come along as they are: the same identities open both.
        for (id, file) in keys::list_keys(src.storage())? {
            if file.kdf == "age" {
                storage.write(&keys::key_path(&id), src.storage().read(&keys::key_path(&id))?)?;
            }
        }
    } else {
        keys::add_identity_slot(&storage, &key, recipients)?;
    }
    let bytes = serde_json::to_vec_pretty(&config).expect("config serialises");
    if !storage.create_new(CONFIG_PATH, bytes.into())? {
        // Another copy created it meanwhile: ours is one key slot too many, and theirs decides.
        let _ = storage.delete(&keys::key_path(&key_id));
    }
    open_secondary(src, storage, password)
}

/// [`open_secondary`], or [`create_secondary`] when `storage` holds no repository; `true` when created.
pub fn open_or_create_secondary(src: &Repository, storage: Storage, password: &str) -> Result<(Repository, bool)> {
    open_or_create_secondary_for(src, storage, password, &[], None)
}

/// [`open_or_create_secondary`], creating a recipients secondary for `recipients` (see
/// [`create_secondary_for`]); an existing secondary must seal for exactly those when any are given.
/// `object_lock` applies only to a secondary created now (an existing one keeps its own).
pub fn open_or_create_secondary_for(
    src: &Repository,
    storage: Storage,
    password: &str,
    recipients: &[crate::content::Recipient],
    object_lock: Option<crate::config::ObjectLock>,
) -> Result<(Repository, bool)> {
    match Repository::read_config(&storage) {
        Ok(_) => {
            let dst = open_secondary(src, storage, password)?;
            let given: Vec<&str> = recipients.iter().map(|r| r.text.as_str()).collect();
            if !given.is_empty() && given != dst.recipients().iter().map(String::as_str).collect::<Vec<_>>() {
                return Err(Error::invalid(
                    "recipients",
                    format!(
                        "the secondary {} seals for other recipients than --recipient gives",
                        dst.storage().location()
                    ),
                ));
            }
            Ok((dst, false))
        }
        Err(Error::NoRepository { .. }) => {
            Ok((create_secondary_for(src, storage, password, recipients, object_lock)?, true))
        }
        Err(e) => Err(e),
    }
}

fn refuse_same_location(src: &Repository, storage: &Storage) -> Result<()> {
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let same = match (src.storage().location(), storage.location()) {
        (Location::Local(a), Location::Local(b)) => canonical(a) == canonical(b),
        (a, b) => a == b,
    };
    if same {
        return Err(Error::invalid(
            "secondary",
            format!("{} is the primary repository itself; give the secondary another location", storage.location()),
        ));
    }
    Ok(())
}

/// Decides what `dst` lacks of `src` (all of it when `dst` is `None`: a destination not created yet).
/// With `name`, only snapshots of that name are considered, with the packs their blobs need, and only
/// objects below `<namespace>/<name>/` (that target's WAL); run records are always copied.
pub fn plan(src: &Repository, dst: Option<&Repository>, name: Option<&str>) -> Result<CopyPlan> {
    let dst_files = |dir: &str| match dst {
        Some(d) => listing(d.storage(), dir),
        None => Ok(HashMap::new()),
    };
    // Snapshots are listed before the index is read: a backup committing meanwhile writes its index
    // first, so every snapshot seen here has its blobs in the index read below.
    let src_snapshots = file_listing(src.storage(), FileKind::Snapshot)?;
    let dst_snapshots = dst_files(FileKind::Snapshot.dir())?;
    let listing = src.load_pack_listing()?;
    if let Some((id, e)) = listing.unreadable.first() {
        return Err(Error::Corrupt(format!(
            "index {id} of the primary cannot be read ({e}); run `bunker check` there before copying"
        )));
    }
    let src_index = listing.index();

    let mut plan = CopyPlan::default();
    let mut chosen: Vec<(Snapshot, u64)> = Vec::new();
    for (id, size) in &src_snapshots {
        let present = dst_snapshots.contains_key(&format!("snapshots/{id}"));
        if present && name.is_none() {
            plan.snapshots_present += 1;
            continue;
        }
        let snapshot = src.load_snapshot(id)?;
        if name.is_some_and(|n| snapshot.name != n) {
            continue;
        }
        if present {
            plan.snapshots_present += 1;
        } else {
            chosen.push((snapshot, *size));
        }
    }
    chosen.sort_by_key(|(s, _)| s.time);

    // Every blob the chosen snapshots use, the destination's index does not list: the source packs that
    // hold them are copied whole. Already-copied subtrees are walked again on purpose: a tree blob in the
    // destination proves nothing about its children (a prune there may have dropped unused ones).
    let restorer = Restorer::new(src, &src_index);
    let mut used = BlobSet::default();
    for (snapshot, _) in &chosen {
        crate::interrupt::check()?;
        collect_blobs(&restorer, snapshot, &mut used)?;
    }
    let dst_index = match dst {
        Some(d) => d.load_index()?.0,
        None => Index::new(),
    };
    let mut wanted = BTreeSet::new();
    for blob in used.iter().filter(|b| !dst_index.contains(b)) {
        let loc = src_index.get(blob).ok_or_else(|| {
            Error::Corrupt(format!(
                "blob {} that a snapshot to copy needs is in no index of the primary; run `bunker check` there",
                blob.short()
            ))
        })?;
        wanted.insert(loc.pack);
    }
    let dst_packs = dst_files("data")?;
    for pack in wanted {
        let blobs = listing.packs.get(&pack).cloned().unwrap_or_default();
        let size = expected_pack_size(&blobs);
        if dst_packs.get(&pack_path(&pack)) != Some(&size) {
            plan.packs.push((pack, size));
        }
        plan.index.push((pack, blobs));
    }
    plan.snapshot_bytes = chosen.iter().map(|(_, size)| size).sum();
    plan.snapshots = chosen.into_iter().map(|(s, _)| s.id()).collect();

    let dst_objects = dst_files("objects")?;
    plan.objects = listing_sorted(src.storage(), "objects")?
        .into_iter()
        .filter(|(path, _)| !dst_objects.contains_key(path) && name.is_none_or(|n| object_of(path, n)))
        .collect();
    // Run records the destination has (loose or folded) are not sent again; a segment is sent when the
    // destination lacks any record in it.
    let dst_runs: HashSet<FileId> = match dst {
        Some(d) => d.load_runs()?.into_iter().filter_map(|r| r.id).collect(),
        None => HashSet::new(),
    };
    let mut sizes = self::listing(src.storage(), FileKind::Run.dir())?;
    sizes.extend(self::listing(src.storage(), FileKind::RunSegment.dir())?);
    plan.runs = crate::segment::run_files(src)?
        .into_iter()
        .filter(|(_, ids)| ids.iter().any(|id| !dst_runs.contains(id)))
        .map(|(path, _)| {
            let size = sizes.get(&path).copied().unwrap_or(0);
            (path, size)
        })
        .collect();
    Ok(plan)
}

/// Carries out `plan` (made by [`plan`] for the same two repositories) under `dst_lock`, a lock on the
/// destination that is verified before each index and snapshot is written. `progress` is called on this
/// thread with the bytes copied so far.
pub fn execute(
    src: &Repository,
    dst: &Repository,
    dst_lock: &LockGuard,
    plan: &CopyPlan,
    progress: &mut dyn FnMut(u64),
) -> Result<CopyReport> {
    let mut report = CopyReport { snapshots_present: plan.snapshots_present, ..Default::default() };
    let transfers = transfers(src, dst);

    // A password repository's history going into a recipients secondary: content is re-sealed there.
    let reseal = src.recipients() != dst.recipients();

    // 0. A recipients repository's content keys, before any pack or object sealed with them.
    if !reseal && !src.recipients().is_empty() && !plan.is_empty() {
        let theirs = listing(dst.storage(), crate::content::CONTENT_KEY_DIR)?;
        for (path, _) in listing_sorted(src.storage(), crate::content::CONTENT_KEY_DIR)? {
            if !theirs.contains_key(&path) {
                report.bytes += copy_named_file(src, dst, &path)?;
            }
        }
    }

    // 1. Packs, then index files for them: a batch is indexed once all its packs are stored.
    let sending: HashSet<FileId> = plan.packs.iter().map(|(p, _)| *p).collect();
    let listed: HashMap<FileId, &Vec<PackedBlob>> = plan.index.iter().map(|(p, b)| (*p, b)).collect();
    let mut pending: Vec<(FileId, Vec<PackedBlob>)> =
        plan.index.iter().filter(|(p, _)| !sending.contains(p)).cloned().collect();
    report.packs_indexed = pending.len();
    let flush = |pending: &mut Vec<(FileId, Vec<PackedBlob>)>, report: &mut CopyReport| -> Result<()> {
        if !pending.is_empty() {
            dst_lock.verify()?;
            dst.save_index(pending)?;
            report.index_files += 1;
            pending.clear();
        }
        Ok(())
    };
    parallel(
        &plan.packs,
        transfers,
        |(id, size)| match reseal {
            false => copy_pack(src, dst, id, *size).map(|size| (*id, None, size)),
            true => reseal_pack(src, dst, id).map(|(new, blobs, size)| (new, Some(blobs), size)),
        },
        |(id, _), (stored, blobs, size)| {
            report.packs += 1;
            report.pack_bytes += size;
            report.bytes += size;
            progress(report.bytes);
            let blobs = blobs.unwrap_or_else(|| listed.get(id).map(|b| b.to_vec()).unwrap_or_default());
            pending.push((stored, blobs));
            if pending.len() >= PACKS_PER_INDEX {
                flush(&mut pending, &mut report)?;
            }
            Ok(())
        },
    )?;
    flush(&mut pending, &mut report)?;
    pause_point("copy-after-index");

    // 2. Named objects: before snapshots, which may need them (a base backup its WAL).
    parallel(
        &plan.objects,
        transfers,
        |(path, _)| if reseal { reseal_object(src, dst, path) } else { copy_object(src, dst, path) },
        |_, copied| {
            if let Some(size) = copied {
                report.objects += 1;
                report.object_bytes += size;
                report.bytes += size;
                progress(report.bytes);
            }
            Ok(())
        },
    )?;

    // 3. Snapshots, only now that everything they name is stored and indexed.
    let snapshots: Vec<String> = plan.snapshots.iter().map(|id| format!("snapshots/{id}")).collect();
    let copy_snapshot = |path: &String| {
        dst_lock.verify()?;
        copy_named_file(src, dst, path)
    };
    parallel(&snapshots, transfers, copy_snapshot, |_, size| {
        report.snapshots += 1;
        report.bytes += size;
        progress(report.bytes);
        pause_point("copy-snapshot-written");
        Ok(())
    })?;

    // 4. The catalog.
    let runs: Vec<String> = plan.runs.iter().map(|(path, _)| path.clone()).collect();
    parallel(
        &runs,
        transfers,
        |path| copy_named_file(src, dst, path),
        |_, size| {
            report.runs += 1;
            report.bytes += size;
            progress(report.bytes);
            Ok(())
        },
    )?;
    Ok(report)
}

/// [`plan`] and [`execute`] in one.
pub fn copy(src: &Repository, dst: &Repository, dst_lock: &LockGuard, name: Option<&str>) -> Result<CopyReport> {
    let plan = plan(src, Some(dst), name)?;
    execute(src, dst, dst_lock, &plan, &mut |_| {})
}

/// Transfers at once: more against S3 (latency-bound), bounded by memory (each holds one whole pack).
fn transfers(src: &Repository, dst: &Repository) -> usize {
    let remote = [src, dst].iter().any(|r| matches!(r.storage().location(), Location::S3(_)));
    let by_memory = (IN_FLIGHT_BYTES / u64::from(src.config().pack_size.max(1))) as usize;
    (if remote { 8 } else { 4 }).min(by_memory).max(1)
}

fn copy_pack(src: &Repository, dst: &Repository, id: &FileId, size: u64) -> Result<u64> {
    let path = pack_path(id);
    let bytes = src.storage().read(&path)?;
    if bytes.len() as u64 != size || FileId::of(&bytes) != *id {
        return Err(damaged(src, &path, "its content does not match its name"));
    }
    dst.storage().write(&path, bytes)?;
    pause_point("copy-pack-written");
    Ok(size)
}

/// Copies a content-named file (snapshot, run record) after checking its bytes against its name.
/// Copies a pack's blobs into a new pack of `dst`, each opened with the source's key (and checked against
/// its ID) and sealed again with the destination's content key, compressed as it was. Returns the new
/// pack's ID, its blobs and size.
fn reseal_pack(src: &Repository, dst: &Repository, id: &FileId) -> Result<(FileId, Vec<PackedBlob>, u64)> {
    let path = pack_path(id);
    let bytes = src.storage().read(&path)?;
    if FileId::of(&bytes) != *id {
        return Err(damaged(src, &path, "its content does not match its name"));
    }
    let blobs = parse_header(src.crypto(), &bytes, &id.to_hex())
        .map_err(|_| damaged(src, &path, "its header does not open"))?;
    let kind = blobs.first().map(|b| b.kind).unwrap_or(crate::pack::BlobKind::Data);
    let mut pb = PackBuilder::new(kind, bytes.len() + bytes.len() / 8);
    for b in &blobs {
        let sealed = bytes
            .get(b.offset as usize..b.offset as usize + b.length as usize)
            .ok_or_else(|| damaged(src, &path, "a blob lies past its end"))?;
        let payload = open_payload(src.crypto(), b, sealed).map_err(|e| match e {
            e @ (Error::NeedsIdentity { .. } | Error::Identity(_)) => e,
            _ => damaged(src, &path, &format!("blob {} does not open to its ID", b.id.short())),
        })?;
        pb.add(SealedBlob {
            id: b.id,
            kind: b.kind,
            compression: b.compression,
            raw_length: b.raw_length,
            bytes: dst.crypto().seal_content(&payload, &b.id.0)?,
        });
    }
    let (new, data, blobs) = pb.finish(dst.crypto());
    let size = data.len() as u64;
    dst.storage().write(&pack_path(&new), data)?;
    Ok((new, blobs, size))
}

/// Copies a named object, opened with the source's key and stored again sealed for `dst`'s recipients.
fn reseal_object(src: &Repository, dst: &Repository, path: &str) -> Result<Option<u64>> {
    let (namespace, name) = path
        .strip_prefix("objects/")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| damaged(src, path, "it is not an object path"))?;
    let Some(bytes) = src.get_object(namespace, name)? else { return Ok(None) };
    match dst.put_object(namespace, name, &bytes)? {
        crate::objects::PutOutcome::Stored { stored_bytes } => Ok(Some(stored_bytes)),
        crate::objects::PutOutcome::AlreadyStored => Ok(None),
    }
}

fn copy_named_file(src: &Repository, dst: &Repository, path: &str) -> Result<u64> {
    let bytes = src.storage().read(path)?;
    let name = path.rsplit('/').next().unwrap_or_default();
    if FileId::from_hex(name).ok() != Some(FileId::of(&bytes)) {
        return Err(damaged(src, path, "its content does not match its name"));
    }
    let size = bytes.len() as u64;
    dst.storage().write(path, bytes)?;
    Ok(size)
}

/// Copies a named object, verified (its seal opens for its path, its content hashes to its recorded ID),
/// created only if absent. `None` when the destination had it already (another copy got there first).
fn copy_object(src: &Repository, dst: &Repository, path: &str) -> Result<Option<u64>> {
    let stored = src.storage().read(path)?;
    verify_object(src, path, &stored)?;
    let head: [u8; OBJECT_ID_LEN] = stored[..OBJECT_ID_LEN].try_into().expect("verified length");
    let size = stored.len() as u64;
    if dst.storage().create_new(path, stored)? {
        return Ok(Some(size));
    }
    match dst.storage().read_range(path, 0, OBJECT_ID_LEN as u64) {
        Ok(theirs) if theirs[..] == head => Ok(None),
        Ok(_) => Err(Error::ObjectConflict { path: format!("{path} (in the secondary)") }),
        Err(e) => Err(e),
    }
}

fn verify_object(src: &Repository, path: &str, stored: &Bytes) -> Result<()> {
    if stored.len() < OBJECT_ID_LEN {
        return Err(damaged(src, path, "it is shorter than an object header"));
    }
    let (head, sealed) = stored.split_at(OBJECT_ID_LEN);
    let mut aad = OBJECT_AAD_PREFIX.to_vec();
    aad.extend_from_slice(path.as_bytes());
    let compressed = src.crypto().open_content(sealed, &aad, path).map_err(|e| match e {
        e @ (Error::NeedsIdentity { .. } | Error::Identity(_)) => e,
        _ => damaged(src, path, "its seal does not open"),
    })?;
    let mut hasher = src.crypto().id_hasher();
    zstd::stream::Decoder::new(&compressed[..])
        .and_then(|d| hasher.update_reader(d).map(|_| ()))
        .map_err(|e| damaged(src, path, &format!("zstd: {e}")))?;
    if hasher.finalize().as_bytes()[..] != *head {
        return Err(damaged(src, path, "its content does not match its recorded ID"));
    }
    Ok(())
}

fn damaged(src: &Repository, path: &str, why: &str) -> Error {
    Error::Corrupt(format!(
        "{path} in {}: {why}; nothing more was copied: run `bunker check --read-data` on the primary",
        src.storage().location()
    ))
}

/// Whether an object path `objects/<namespace>/<rest>` belongs to target `name` (`rest` = `name/…`).
fn object_of(path: &str, name: &str) -> bool {
    path.strip_prefix("objects/")
        .and_then(|r| r.split_once('/'))
        .and_then(|(_, rest)| rest.strip_prefix(name))
        .is_some_and(|tail| tail.starts_with('/'))
}

/// Path → size of every file below `dir`.
fn listing(storage: &Storage, dir: &str) -> Result<HashMap<String, u64>> {
    Ok(storage.list(dir)?.into_iter().map(|o| (o.path, o.size)).collect())
}

fn listing_sorted(storage: &Storage, dir: &str) -> Result<Vec<(String, u64)>> {
    let mut out: Vec<(String, u64)> = storage.list(dir)?.into_iter().map(|o| (o.path, o.size)).collect();
    out.sort();
    Ok(out)
}

/// The content-named files of `kind`, with their sizes, sorted by ID.
fn file_listing(storage: &Storage, kind: FileKind) -> Result<Vec<(FileId, u64)>> {
    let prefix = format!("{}/", kind.dir());
    let mut out: Vec<(FileId, u64)> = storage
        .list(kind.dir())?
        .into_iter()
        .filter_map(|o| Some((FileId::from_hex(o.path.strip_prefix(&prefix)?).ok()?, o.size)))
        .collect();
    out.sort();
    Ok(out)
}

/// Runs `work` on every item, `workers` at a time, and `done` on this thread as each finishes (in
/// completion order). The first error stops the rest: items not yet started are skipped, `done` is not
/// called again, and the error is returned once the busy workers have finished. Interrupts are checked
/// before each item.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> Result<R> + Sync,
    mut done: impl FnMut(&T, R) -> Result<()>,
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<R>)>();
        for _ in 0..workers.clamp(1, items.len()) {
            let (tx, next, stop, work) = (tx.clone(), &next, &stop, &work);
            scope.spawn(move || loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= items.len() {
                    return;
                }
                let result = crate::interrupt::check().and_then(|_| work(&items[i]));
                if tx.send((i, result)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut first_error = None;
        for (i, result) in rx {
            if first_error.is_some() {
                continue;
            }
            if let Err(e) = result.and_then(|r| done(&items[i], r)) {
                stop.store(true, Ordering::SeqCst);
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use std::time::Duration;

    use super::*;

    use crate::catalog::{RunRecord, RunStatus};
    use crate::check::{check, ReadData};
    use crate::lock::acquire;
    use crate::snapshot::Root;
    use crate::testing::{init_with as init, stream as backup};

    fn storage(dir: &Path) -> Storage {
        Storage::create(&Location::Local(dir.to_path_buf())).unwrap()
    }

    fn dump(repo: &Repository, id: &FileId) -> Vec<u8> {
        let (index, _) = repo.load_index().unwrap();
        let Root::Stream { content, .. } = repo.load_snapshot(id).unwrap().root else { panic!("a stream") };
        let mut out = Vec::new();
        Restorer::new(repo, &index).dump(&content, &mut out).unwrap();
        out
    }

    fn data(len: usize, seed: u8) -> Vec<u8> {
        let mut state = 0x9e3779b97f4a7c15u64 ^ u64::from(seed);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    fn run_copy(src: &Repository, dst: &Repository, name: Option<&str>) -> CopyReport {
        let lock = acquire(dst.storage(), false, "copy", Duration::ZERO).unwrap();
        copy(src, dst, &lock, name).unwrap()
    }

    fn files(dir: &Path, sub: &str) -> usize {
        walk(&dir.join(sub))
    }

    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum())
            .unwrap_or(0)
    }

    #[test]
    fn copies_everything_once_and_the_copy_stands_alone() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let src = init(a.path(), "primary");
        let one = backup(&src, "db", &data(3 << 20, 1));
        let two = backup(&src, "files", &data(2 << 20, 2));
        src.put_object("wal", "db/000000010000000000000001", &data(100_000, 3)).unwrap();
        src.save_run(&mut RunRecord::new("backup", chrono::Utc::now(), RunStatus::Success)).unwrap();

        // A dry run against a destination that does not exist yet plans everything.
        let planned = plan(&src, None, None).unwrap().report(true);
        let (dst, created) = open_or_create_secondary(&src, storage(b.path()), "secondary").unwrap();
        assert!(created);
        let r = run_copy(&src, &dst, None);
        assert_eq!((r.snapshots, r.packs, r.objects, r.runs, r.index_files), (2, 2, 1, 1, 1), "{r:?}");
        assert_eq!(r.bytes, planned.bytes, "the dry run foresaw every byte");
        assert_eq!(dst.config().chunker, src.config().chunker);
        assert_ne!(dst.config().id, src.config().id, "a repository ID of its own");

        // The secondary opens with its own password only, and holds everything.
        assert!(matches!(Repository::open(storage(b.path()), "primary"), Err(Error::WrongPassword { .. })));
        let alone = Repository::open(storage(b.path()), "secondary").unwrap();
        assert_eq!(dump(&alone, &one), data(3 << 20, 1));
        assert_eq!(dump(&alone, &two), data(2 << 20, 2));
        assert_eq!(alone.get_object("wal", "db/000000010000000000000001").unwrap().unwrap(), data(100_000, 3));
        assert_eq!(alone.load_runs().unwrap().len(), 1);
        let report = check(&alone, ReadData::All).unwrap();
        assert!(report.is_ok() && report.warnings.is_empty(), "{report:?}");

        // Nothing twice; then only what is new.
        let again = run_copy(&src, &dst, None);
        assert_eq!((again.snapshots, again.packs, again.objects, again.runs, again.bytes), (0, 0, 0, 0, 0));
        assert_eq!(again.snapshots_present, 2);
        backup(&src, "db", &[data(3 << 20, 1), data(1 << 20, 4)].concat());
        let third = run_copy(&src, &dst, None);
        assert_eq!((third.snapshots, third.packs, third.snapshots_present), (1, 1, 2), "{third:?}");
    }

    #[test]
    fn a_name_copies_its_snapshots_and_the_packs_they_need() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let src = init(a.path(), "primary");
        let db = backup(&src, "db", &data(1 << 20, 1));
        backup(&src, "files", &data(1 << 20, 2));
        src.put_object("wal", "db/1", b"one").unwrap();
        src.put_object("wal", "dbx/1", b"two").unwrap();
        let (dst, _) = open_or_create_secondary(&src, storage(b.path()), "secondary").unwrap();
        let r = run_copy(&src, &dst, Some("db"));
        assert_eq!((r.snapshots, r.packs, r.objects), (1, 1, 1), "{r:?}");
        assert_eq!(dst.list_files(FileKind::Snapshot).unwrap(), vec![db]);
        assert!(check(&dst, ReadData::All).unwrap().is_ok());
        let rest = run_copy(&src, &dst, None);
        assert_eq!((rest.snapshots, rest.packs, rest.objects, rest.snapshots_present), (1, 1, 1, 1), "{rest:?}");
    }

    #[test]
    fn another_repository_is_refused_untouched() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let src = init(a.path(), "pw");
        backup(&src, "db", &data(100_000, 1));
        init(b.path(), "pw");
        let before = walk(b.path());
        let err = open_or_create_secondary(&src, storage(b.path()), "pw").err().expect("refused");
        assert!(err.to_string().contains("was not created by `bunker copy` from this repository"), "{err}");
        assert_eq!(walk(b.path()), before);
        let err = open_or_create_secondary(&src, storage(a.path()), "pw").err().expect("refused");
        assert!(err.to_string().contains("primary repository itself"), "{err}");
    }

    #[test]
    fn a_damaged_pack_stops_the_copy_before_any_snapshot() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let src = init(a.path(), "pw");
        backup(&src, "db", &data(1 << 20, 1));
        let (pack, _) = src.load_index().unwrap().0.by_pack()[0].clone();
        let path = a.path().join(pack_path(&pack));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let (dst, _) = open_or_create_secondary(&src, storage(b.path()), "other").unwrap();
        let lock = acquire(dst.storage(), false, "copy", Duration::ZERO).unwrap();
        let err = copy(&src, &dst, &lock, None).unwrap_err();
        assert!(err.to_string().contains(&pack_path(&pack)), "{err}");
        assert_eq!((files(b.path(), "snapshots"), files(b.path(), "index"), files(b.path(), "data")), (0, 0, 0));
    }

    #[test]
    fn packs_left_by_an_interrupted_copy_are_indexed_not_sent_again() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let src = init(a.path(), "pw");
        let id = backup(&src, "db", &data(1 << 20, 1));
        backup(&src, "db", &data(1 << 20, 2));
        let (dst, _) = open_or_create_secondary(&src, storage(b.path()), "other").unwrap();
        // As if killed after one pack: it is stored, in no index, and no snapshot names it.
        let first = plan(&src, Some(&dst), None).unwrap();
        let (pack, _) = first.packs[0];
        std::fs::create_dir_all(b.path().join(pack_path(&pack)).parent().unwrap()).unwrap();
        std::fs::copy(a.path().join(pack_path(&pack)), b.path().join(pack_path(&pack))).unwrap();
        let r = run_copy(&src, &dst, None);
        assert_eq!((r.packs, r.packs_indexed, r.snapshots), (1, 1, 2), "{r:?}");
        assert_eq!(dump(&dst, &id), data(1 << 20, 1));
        assert!(check(&dst, ReadData::All).unwrap().is_ok());
    }

    #[test]
    fn an_object_of_other_content_in_the_destination_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let src = init(a.path(), "pw");
        src.put_object("wal", "db/1", b"primary").unwrap();
        let (dst, _) = open_or_create_secondary(&src, storage(b.path()), "other").unwrap();
        dst.put_object("wal", "db/1", b"something else").unwrap();
        // Planned as missing (a racing writer), then found taken with other content.
        let mut p = plan(&src, Some(&dst), None).unwrap();
        assert!(p.objects.is_empty(), "an object the destination has is not planned");
        p.objects.push(("objects/wal/db/1".into(), 0));
        let lock = acquire(dst.storage(), false, "copy", Duration::ZERO).unwrap();
        let err = execute(&src, &dst, &lock, &p, &mut |_| {}).unwrap_err();
        assert!(matches!(err, Error::ObjectConflict { .. }), "{err}");
        assert_eq!(dst.get_object("wal", "db/1").unwrap().unwrap(), b"something else");
    }
}
