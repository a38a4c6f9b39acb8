//! The backup pipeline: source bytes → chunker → workers (hash, dedup, compress, seal) → packer →
//! uploaders → storage. Channels are bounded everywhere, so memory stays flat whatever the input size and
//! a slow storage slows the reader rather than filling RAM. Nothing becomes visible until `commit`
//! writes the index for the new packs and then the snapshot, in that order.

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};

use crate::chunker::{Chunker, ChunkerParams};
use crate::crypto::Crypto;
use crate::error::{Error, Result};
use crate::failpoint::pause_point;
use crate::id::{BlobId, FileId, IdBuildHasher};
use crate::index::Index;
use crate::lock::LockGuard;
use crate::pack::{pack_path, seal_blob, BlobKind, PackBuilder, PackedBlob, SealedBlob};
use crate::repository::Repository;
use crate::snapshot::{Root, Snapshot, SnapshotStats};
use crate::storage::Storage;
use crate::tree::{Content, CHUNKS_PER_LIST, INLINE_CHUNKS};

/// What a finished backup records besides its content.
#[derive(Debug, Clone, Default)]
pub struct SnapshotDraft {
    pub name: String,
    pub kind: String,
    pub tags: Vec<String>,
    pub meta: serde_json::Value,
    pub parent: Option<FileId>,
    pub warnings: Vec<String>,
}

#[derive(Default)]
struct Counters {
    bytes_read: AtomicU64,
    bytes_new: AtomicU64,
    bytes_stored: AtomicU64,
    chunks: AtomicU64,
    chunks_new: AtomicU64,
    files: AtomicU64,
}

struct Shared {
    crypto: Crypto,
    known: Arc<Index>,
    pending: Mutex<HashSet<BlobId, IdBuildHasher>>,
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    written: Mutex<Vec<(FileId, Vec<PackedBlob>)>>,
    /// Buffers of uploaded data packs, handed back to the packer: fresh 20 MiB buffers cost page faults.
    spare_buffers: Mutex<Vec<Vec<u8>>>,
    counters: Counters,
}

impl Shared {
    fn fail(&self, e: Error) {
        self.failed.store(true, Ordering::SeqCst);
        let mut slot = self.error.lock().expect("error slot");
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    fn take_error(&self) -> Error {
        self.error
            .lock()
            .expect("error slot")
            .take()
            .unwrap_or_else(|| Error::Corrupt("backup pipeline stopped".into()))
    }
}

struct Job {
    data: Bytes,
    kind: BlobKind,
    /// zstd level for this blob, if it is new.
    level: i32,
    reply: Sender<BlobId>,
}

/// zstd's level for [`Backup::save_stream_fine_fast`]: about four times the speed of level 3 on data that
/// is already compressed in places, for some 4% more stored.
pub const FAST_COMPRESSION_LEVEL: i32 = -3;

/// A stream whose chunks are submitted but not all stored yet.
pub struct PendingStream {
    ids: Vec<BlobId>,
    waiting: VecDeque<Receiver<BlobId>>,
    size: u64,
}

impl PendingStream {
    /// Chunks still in the pipeline.
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }
}

/// One backup in progress. Drop it without `commit` and nothing but orphan packs remains.
pub struct Backup<'r> {
    repo: &'r Repository,
    lock: &'r LockGuard,
    shared: Arc<Shared>,
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    in_flight: usize,
    started: Instant,
}

impl<'r> Backup<'r> {
    /// Starts the pipeline's threads. `known` is the repository's index: blobs in it are not stored again.
    /// `lock` is the shared lock the backup runs under; it is verified before anything becomes visible.
    pub fn start(repo: &'r Repository, lock: &'r LockGuard, known: Arc<Index>) -> Backup<'r> {
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let uploaders = match repo.storage().location() {
            crate::storage::Location::Local(_) => 2,
            crate::storage::Location::S3(_) => 4,
        };
        let shared = Arc::new(Shared {
            crypto: repo.crypto().clone(),
            known,
            pending: Mutex::new(HashSet::default()),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            written: Mutex::new(Vec::new()),
            spare_buffers: Mutex::new(Vec::new()),
            counters: Counters::default(),
        });
        let (job_tx, job_rx) = bounded::<Job>(workers * 2);
        let (blob_tx, blob_rx) = bounded::<SealedBlob>(workers * 2);
        let (pack_tx, pack_rx) = bounded::<PackBuilder>(1);
        let mut threads = Vec::new();
        for _ in 0..workers {
            let (rx, tx, shared) = (job_rx.clone(), blob_tx.clone(), shared.clone());
            threads.push(spawn("bunker-worker", move || worker(rx, tx, shared)));
        }
        drop(blob_tx);
        let pack_size = repo.config().pack_size as usize;
        let packer_shared = shared.clone();
        threads.push(spawn("bunker-packer", move || packer(blob_rx, pack_tx, pack_size, packer_shared)));
        for _ in 0..uploaders {
            let (rx, shared, storage) = (pack_rx.clone(), shared.clone(), repo.storage().clone());
            threads.push(spawn("bunker-upload", move || uploader(rx, shared, storage)));
        }
        Backup { repo, lock, shared, jobs: Some(job_tx), threads, in_flight: workers * 4, started: Instant::now() }
    }

    /// The repository the backup goes to.
    pub fn repository(&self) -> &'r Repository {
        self.repo
    }

    /// Bytes read so far, for progress display.
    pub fn bytes_read(&self) -> u64 {
        self.shared.counters.bytes_read.load(Ordering::Relaxed)
    }

    pub fn count_file(&self) {
        self.shared.counters.files.fetch_add(1, Ordering::Relaxed);
    }

    fn submit(&self, data: Bytes, kind: BlobKind, level: i32) -> Result<Receiver<BlobId>> {
        if self.shared.failed.load(Ordering::Relaxed) {
            return Err(self.shared.take_error());
        }
        let (reply, rx) = bounded(1);
        let jobs = self.jobs.as_ref().expect("pipeline running");
        jobs.send(Job { data, kind, level, reply }).map_err(|_| self.shared.take_error())?;
        Ok(rx)
    }

    fn wait(&self, rx: Receiver<BlobId>) -> Result<BlobId> {
        rx.recv().map_err(|_| self.shared.take_error())
    }

    /// Chunks and stores everything `reader` yields; returns its content list and length.
    pub fn save_stream(&self, reader: impl Read) -> Result<(Content, u64)> {
        let pending = self.submit_stream(reader, None)?;
        self.finish_stream(pending)
    }

    /// Like [`Backup::save_stream`], with chunks 16 times smaller than the repository's (64 KiB on
    /// average by default), for inputs whose changes are scattered thinly across their whole length
    /// (database dumps): far less is stored again for a few changed rows, for slightly worse compression.
    /// Readers need not know: a content list is a list of chunks of any size.
    pub fn save_stream_fine(&self, reader: impl Read) -> Result<(Content, u64)> {
        let pending = self.submit_chunks(reader, self.repo.config().chunker.fine(), None)?;
        self.finish_stream(pending)
    }

    /// Like [`Backup::save_stream_fine`], compressed at [`FAST_COMPRESSION_LEVEL`] rather than the
    /// repository's level: for inputs their producer has already compressed in places (a Redis RDB
    /// compresses its strings with LZF), where a stronger level costs several times the CPU for little.
    /// Readers need not know: every blob records how it is compressed.
    pub fn save_stream_fine_fast(&self, reader: impl Read) -> Result<(Content, u64)> {
        let pending =
            self.submit_with_level(reader, self.repo.config().chunker.fine(), None, FAST_COMPRESSION_LEVEL)?;
        self.finish_stream(pending)
    }

    /// Reads and submits all of `reader`'s chunks without waiting for the last of them to be stored, so
    /// the next file can be read meanwhile (many small files would otherwise run one at a time).
    /// `size_hint` is the input's length when known. Finish with [`Backup::finish_stream`].
    pub fn submit_stream(&self, reader: impl Read, size_hint: Option<u64>) -> Result<PendingStream> {
        self.submit_chunks(reader, self.repo.config().chunker, size_hint)
    }

    /// [`Backup::submit_stream`] with other chunk sizes (see [`ChunkerParams::fixed`]).
    pub fn submit_chunks(
        &self,
        reader: impl Read,
        params: ChunkerParams,
        size_hint: Option<u64>,
    ) -> Result<PendingStream> {
        self.submit_with_level(reader, params, size_hint, self.repo.config().compression_level)
    }

    fn submit_with_level(
        &self,
        reader: impl Read,
        params: ChunkerParams,
        size_hint: Option<u64>,
        level: i32,
    ) -> Result<PendingStream> {
        let mut chunker = Chunker::new(reader, params, self.repo.crypto().chunker_seed());
        if let Some(len) = size_hint {
            chunker = chunker.with_size_hint(len);
        }
        let mut pending = PendingStream { ids: Vec::new(), waiting: VecDeque::new(), size: 0 };
        while let Some(chunk) = chunker.next_chunk().map_err(Error::Input)? {
            crate::interrupt::check()?;
            pending.size += chunk.len() as u64;
            self.shared.counters.bytes_read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            pending.waiting.push_back(self.submit(chunk, BlobKind::Data, level)?);
            if pending.waiting.len() >= self.in_flight {
                pending.ids.push(self.wait(pending.waiting.pop_front().expect("non-empty"))?);
            }
        }
        Ok(pending)
    }

    /// Waits for a submitted stream's chunks; returns its content list and length.
    pub fn finish_stream(&self, pending: PendingStream) -> Result<(Content, u64)> {
        let PendingStream { mut ids, waiting, size } = pending;
        for rx in waiting {
            ids.push(self.wait(rx)?);
        }
        Ok((self.store_content(ids)?, size))
    }

    /// Stores one metadata blob (a tree, a chunk list) and returns its ID.
    pub fn save_meta(&self, bytes: Vec<u8>) -> Result<BlobId> {
        let rx = self.submit(Bytes::from(bytes), BlobKind::Meta, self.repo.config().compression_level)?;
        self.wait(rx)
    }

    /// A content list for these chunk IDs: inline when short, else moved into chunk-list blobs.
    pub fn store_content(&self, ids: Vec<BlobId>) -> Result<Content> {
        if ids.len() <= INLINE_CHUNKS {
            return Ok(Content::Chunks(ids));
        }
        let mut lists = Vec::new();
        for group in ids.chunks(CHUNKS_PER_LIST) {
            let raw: Vec<u8> = group.iter().flat_map(|id| id.0).collect();
            lists.push(self.save_meta(raw)?);
        }
        Ok(Content::Lists(lists))
    }

    /// Stops the threads, waiting for every pack to be uploaded; returns what they wrote.
    fn drain(&mut self) -> Result<Vec<(FileId, Vec<PackedBlob>)>> {
        self.jobs.take();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                self.shared.fail(Error::Corrupt("a backup pipeline thread panicked".into()));
            }
        }
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(self.shared.take_error());
        }
        Ok(std::mem::take(&mut *self.shared.written.lock().expect("written")))
    }

    /// Makes the backup visible: index for the new packs, then the snapshot.
    pub fn commit(mut self, root: Root, draft: SnapshotDraft) -> Result<Snapshot> {
        crate::interrupt::check()?;
        let written = self.drain()?;
        if !written.is_empty() {
            pause_point("backup-before-index");
            self.lock.verify()?;
            self.repo.save_index(&written)?;
        }
        pause_point("backup-before-snapshot");
        crate::interrupt::check()?;
        self.lock.verify()?;
        let c = &self.shared.counters;
        let mut snapshot = Snapshot {
            id: None,
            time: chrono::Utc::now(),
            host: crate::keys::hostname(),
            name: draft.name,
            kind: draft.kind,
            tags: draft.tags,
            meta: draft.meta,
            root,
            stats: SnapshotStats {
                bytes_read: c.bytes_read.load(Ordering::SeqCst),
                bytes_new: c.bytes_new.load(Ordering::SeqCst),
                bytes_stored: c.bytes_stored.load(Ordering::SeqCst),
                chunks: c.chunks.load(Ordering::SeqCst),
                chunks_new: c.chunks_new.load(Ordering::SeqCst),
                files: c.files.load(Ordering::SeqCst),
                duration_secs: self.started.elapsed().as_secs_f64(),
            },
            parent: draft.parent,
            warnings: draft.warnings,
            bunker_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        self.repo.save_snapshot(&mut snapshot)?;
        Ok(snapshot)
    }
}

impl Drop for Backup<'_> {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            // Abandoned: stop the pipeline; uploaded packs stay unindexed orphans for `prune`.
            self.shared.failed.store(true, Ordering::SeqCst);
            let _ = self.drain();
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new().name(name.into()).spawn(f).expect("spawn pipeline thread")
}

fn worker(jobs: Receiver<Job>, blobs: Sender<SealedBlob>, shared: Arc<Shared>) {
    // One compressor per level asked for (usually one or two), each keeping its working memory.
    let mut compressors: Vec<(i32, zstd::bulk::Compressor<'static>)> = Vec::new();
    let c = &shared.counters;
    for job in jobs {
        if shared.failed.load(Ordering::Relaxed) {
            continue; // drain; dropping `reply` tells the waiter to look at the error
        }
        let id = shared.crypto.blob_id(&job.data);
        c.chunks.fetch_add((job.kind == BlobKind::Data) as u64, Ordering::Relaxed);
        let is_new = !shared.known.contains(&id) && shared.pending.lock().expect("pending").insert(id);
        if is_new {
            let at = match compressors.iter().position(|(level, _)| *level == job.level) {
                Some(at) => at,
                None => match zstd::bulk::Compressor::new(job.level) {
                    Ok(compressor) => {
                        compressors.push((job.level, compressor));
                        compressors.len() - 1
                    }
                    Err(e) => return shared.fail(Error::io("zstd", e)),
                },
            };
            let sealed = match seal_blob(&shared.crypto, &mut compressors[at].1, id, job.kind, &job.data) {
                Ok(sealed) => sealed,
                // A recipients repository's content key could not be stored.
                Err(e) => return shared.fail(e),
            };
            c.chunks_new.fetch_add((job.kind == BlobKind::Data) as u64, Ordering::Relaxed);
            c.bytes_new.fetch_add(job.data.len() as u64, Ordering::Relaxed);
            c.bytes_stored.fetch_add(sealed.bytes.len() as u64, Ordering::Relaxed);
            if blobs.send(sealed).is_err() {
                continue;
            }
        }
        let _ = job.reply.send(id);
    }
}

fn packer(blobs: Receiver<SealedBlob>, packs: Sender<PackBuilder>, pack_size: usize, shared: Arc<Shared>) {
    let capacity = pack_size + pack_size / 4;
    let fresh_data_pack = || match shared.spare_buffers.lock().expect("spare buffers").pop() {
        Some(buf) => PackBuilder::reusing(BlobKind::Data, buf),
        None => PackBuilder::new(BlobKind::Data, capacity),
    };
    let mut data = fresh_data_pack();
    let mut meta = PackBuilder::new(BlobKind::Meta, 0);
    for blob in blobs {
        let open = if blob.kind == BlobKind::Data { &mut data } else { &mut meta };
        open.add(blob);
        if open.len() >= pack_size {
            let next =
                if open.kind == BlobKind::Data { fresh_data_pack() } else { PackBuilder::new(BlobKind::Meta, 0) };
            let full = std::mem::replace(open, next);
            if packs.send(full).is_err() {
                return;
            }
        }
    }
    for pack in [data, meta] {
        if !pack.is_empty() && packs.send(pack).is_err() {
            return;
        }
    }
}

fn uploader(packs: Receiver<PackBuilder>, shared: Arc<Shared>, storage: Storage) {
    for pack in packs {
        if shared.failed.load(Ordering::Relaxed) {
            continue;
        }
        let kind = pack.kind;
        let (id, bytes, blobs) = pack.finish(&shared.crypto);
        let ours = bytes.clone();
        match storage.write(&pack_path(&id), bytes) {
            Ok(()) => {
                if let (BlobKind::Data, Ok(buf)) = (kind, ours.try_into_mut()) {
                    shared.spare_buffers.lock().expect("spare buffers").push(buf.into());
                }
                shared.written.lock().expect("written").push((id, blobs));
                pause_point("backup-pack-uploaded");
            }
            Err(e) => shared.fail(e),
        }
    }
}
