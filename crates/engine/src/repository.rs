//! An open repository: storage, config, derived keys, and the sealed files (index, snapshots) that
//! describe its packs. Everything below `data/` is written by the backup pipeline; everything else here.

use std::collections::BTreeMap;
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::config::{InitOptions, RepoConfig, CONFIG_PATH};
use crate::crypto::{Crypto, MasterKey};
use crate::error::{Error, Result};
use crate::id::{BlobId, FileId};
use crate::index::{self, Index};
use crate::keys;
use crate::pack::{open_blob, pack_path};
use crate::snapshot::{snapshot_path, Snapshot};
use crate::storage::Storage;

/// Sealed, zstd-compressed repository files other than packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Index,
    Snapshot,
    /// Run records of the catalog.
    Run,
    /// Segments of folded run records ([`crate::segment`]).
    RunSegment,
    /// Segments summarising snapshots ([`crate::segment`]).
    SnapshotSegment,
}

impl FileKind {
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshots",
            FileKind::Run => "runs",
            FileKind::RunSegment => "catalog/runs",
            FileKind::SnapshotSegment => "catalog/snapshots",
        }
    }

    fn aad(self) -> &'static [u8] {
        match self {
            FileKind::Index => b"bunker/index/v1",
            FileKind::Snapshot => b"bunker/snapshot/v1",
            FileKind::Run => b"bunker/run/v1",
            FileKind::RunSegment => b"bunker/catalog/runs/v1",
            FileKind::SnapshotSegment => b"bunker/catalog/snapshots/v1",
        }
    }
}

pub struct Repository {
    storage: Storage,
    config: RepoConfig,
    crypto: Crypto,
    key_id: FileId,
    key: keys::RepoKey,
    cache_dir: Option<PathBuf>,
    damage: DamageLog,
    /// How many files of a kind (runs, snapshots) the last read found outside any catalog segment.
    unfolded: Arc<Mutex<BTreeMap<&'static str, usize>>>,
    /// The catalog's fingerprint as this process last listed it (see [`crate::memo`]).
    catalog_seen: Arc<Mutex<Option<String>>>,
}

/// A repository file that could not be opened: it fails authentication, does not match its name, or
/// does not decode. Readers skip it (see [`Repository::damaged`]); `bunker repair` gets rid of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damaged {
    /// Its path in the repository (`snapshots/<id>`, `index/<id>`, `runs/<id>`, `keys/<id>`).
    pub path: String,
    pub problem: String,
    /// What it costs, where that is known (the snapshot it was; the restores an index file can break).
    pub affects: String,
}

/// Damaged files seen by one process, each once; shared by every handle on the repository.
#[derive(Debug, Clone, Default)]
pub struct DamageLog(Arc<Mutex<BTreeMap<String, Damaged>>>);

impl DamageLog {
    /// Records a damaged file, warning the first time it is seen.
    pub fn report(&self, kind: FileKind, id: &FileId, problem: &Error) {
        let path = format!("{}/{id}", kind.dir());
        let affects = match kind {
            FileKind::Snapshot => format!("snapshot {} cannot be listed or restored", id.short()),
            FileKind::Index => {
                "snapshots whose blobs only it lists cannot be restored until `bunker repair index`".to_string()
            }
            FileKind::Run => "one record of the catalog's history is missing".to_string(),
            FileKind::RunSegment => "the run records folded into it are missing from the catalog's history".to_string(),
            FileKind::SnapshotSegment => {
                "nothing is lost (snapshots are read from their own files instead), only time".to_string()
            }
        };
        self.insert(Damaged { path, problem: problem.to_string(), affects });
    }

    pub fn insert(&self, damaged: Damaged) {
        // Warned once per process, also when a command opens the repository several times.
        static WARNED: Mutex<std::collections::BTreeSet<String>> = Mutex::new(std::collections::BTreeSet::new());
        let mut seen = self.0.lock().expect("damage log");
        if seen.contains_key(&damaged.path) {
            return;
        }
        if WARNED.lock().expect("warned").insert(damaged.path.clone()) {
            tracing::warn!(
                "skipping damaged {}: {} ({}; `bunker check` lists every damaged file, `bunker repair` removes them)",
                damaged.path,
                damaged.problem,
                damaged.affects
            );
        }
        seen.insert(damaged.path.clone(), damaged);
    }

    pub fn list(&self) -> Vec<Damaged> {
        self.0.lock().expect("damage log").values().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.lock().expect("damage log").is_empty()
    }

    /// Forgets what was seen: for `repair`, once the damaged files are gone.
    pub fn clear(&self) {
        self.0.lock().expect("damage log").clear();
    }
}

impl Repository {
    /// Creates a repository: config, first key. Refuses a location that already holds one.
    pub fn init(storage: Storage, password: &str, opts: &InitOptions) -> Result<Repository> {
        Self::init_for(storage, password, &[], opts)
    }

    /// [`Repository::init`]; with `recipients`, a recipients repository: content is sealed for them
    /// ([`crate::content`]), `password` opens a write key only, and a matching identity opens everything.
    pub fn init_for(
        storage: Storage,
        password: &str,
        recipients: &[crate::content::Recipient],
        opts: &InitOptions,
    ) -> Result<Repository> {
        opts.validate()?;
        if storage.exists(CONFIG_PATH)? {
            return Err(Error::AlreadyInitialised { location: storage.location().to_string() });
        }
        let storage = storage.with_object_lock(opts.object_lock)?;
        if opts.object_lock.is_some() && !storage.bucket_lock_enabled()? {
            return Err(Error::invalid(
                "object lock",
                "the bucket does not have S3 Object Lock enabled: create a bucket with it (`aws s3api create-bucket --object-lock-enabled-for-bucket`), or init without --object-lock",
            ));
        }
        let key = keys::RepoKey {
            master: MasterKey::generate(),
            recipients: recipients.iter().map(|r| r.text.clone()).collect(),
        };
        let key_id = keys::add_key(&storage, &key, password)?;
        let mut written = vec![key_id];
        if !recipients.is_empty() {
            match keys::add_identity_slot(&storage, &key, recipients) {
                Ok(id) => written.push(id),
                Err(e) => {
                    let _ = storage.delete(&keys::key_path(&key_id));
                    return Err(e);
                }
            }
        }
        let config = RepoConfig::new(opts);
        let bytes = serde_json::to_vec_pretty(&config).expect("config serialises");
        if !storage.create_new(CONFIG_PATH, bytes.into())? {
            for id in written {
                let _ = storage.delete(&keys::key_path(&id));
            }
            return Err(Error::AlreadyInitialised { location: storage.location().to_string() });
        }
        Self::assemble(storage, config, key, key_id, None)
    }

    /// Opens a repository: reads the config (refusing unknown versions), then unlocks a key.
    pub fn open(storage: Storage, password: &str) -> Result<Repository> {
        Self::open_with(storage, password, false)
    }

    /// [`Repository::open`], through the session-key cache when `session_cache` (see
    /// [`keys::unlock_cached`]): only for a password that is stored on this host anyway (a password file
    /// or the stack file), never a typed or environment one.
    pub fn open_with(storage: Storage, password: &str, session_cache: bool) -> Result<Repository> {
        let config = Self::read_config(&storage)?;
        Self::open_read(storage, config, password, session_cache)
    }

    /// [`Repository::open_with`] with the config [`Repository::read_config`] returned already (a caller
    /// that checked the repository before asking for its password reads it once).
    pub fn open_read(storage: Storage, config: RepoConfig, password: &str, session_cache: bool) -> Result<Repository> {
        Self::open_read_with(storage, config, password, session_cache, None)
    }

    /// [`Repository::open_read`], reading content with `identity` too (a recipients repository).
    pub fn open_read_with(
        storage: Storage,
        config: RepoConfig,
        password: &str,
        session_cache: bool,
        identity: Option<Arc<crate::content::Identities>>,
    ) -> Result<Repository> {
        let cache = cache_root().filter(|_| session_cache).map(|r| r.join(&config.id));
        let (key, key_id) = keys::unlock_cached(&storage, password, cache.as_deref())?;
        if let Some(ids) = &identity {
            if !key.recipients.is_empty() {
                // Refuse a wrong identity now, not at the first blob of a restore.
                keys::unlock_identity(&storage, ids)?;
            }
        }
        Self::assemble(storage, config, key, key_id, identity)
    }

    /// Opens a recipients repository with an age identity alone (no password): what an offline restore
    /// host does. `Ok(None)`: the repository has no recipients, so it opens with its password instead.
    pub fn open_by_identity(
        storage: Storage,
        config: RepoConfig,
        identity: Arc<crate::content::Identities>,
    ) -> Result<Option<Repository>> {
        let Some((key, key_id)) = keys::unlock_identity(&storage, &identity)? else { return Ok(None) };
        Self::assemble(storage, config, key, key_id, Some(identity)).map(Some)
    }

    pub fn read_config(storage: &Storage) -> Result<RepoConfig> {
        match storage.read(CONFIG_PATH) {
            Ok(b) => RepoConfig::parse(&b),
            Err(Error::NotFound { .. }) if !storage.list("keys")?.is_empty() => Err(Error::Corrupt(format!(
                "{}: the config file is missing, though key files are there: put `config` back from a copy of this repository (it holds no secret)",
                storage.location()
            ))),
            Err(Error::NotFound { .. }) => Err(Error::NoRepository { location: storage.location().to_string() }),
            Err(e) => Err(e),
        }
    }

    fn assemble(
        storage: Storage,
        config: RepoConfig,
        key: keys::RepoKey,
        key_id: FileId,
        identity: Option<Arc<crate::content::Identities>>,
    ) -> Result<Repository> {
        let cache_dir = cache_root().map(|r| r.join(&config.id));
        let storage = storage.with_object_lock(config.object_lock)?;
        let mut crypto = Crypto::new(&key.master);
        if !key.recipients.is_empty() {
            let recipients =
                key.recipients.iter().map(|r| crate::content::parse_recipient(r)).collect::<Result<Vec<_>>>().map_err(
                    |e| Error::Corrupt(format!("key {}: a recorded recipient does not parse: {e}", key_id.short())),
                )?;
            crypto = crypto.with_content(crate::content::Content::new(storage.clone(), recipients, identity));
        }
        Ok(Repository {
            crypto,
            storage,
            config,
            key_id,
            key,
            cache_dir,
            damage: DamageLog::default(),
            unfolded: Default::default(),
            catalog_seen: Default::default(),
        })
    }

    /// The same repository reading everything from storage, never from the local cache (for `check`,
    /// which must see what the repository holds).
    pub fn without_cache(&self) -> Repository {
        Repository {
            storage: self.storage.clone(),
            config: self.config.clone(),
            crypto: self.crypto.clone(),
            key_id: self.key_id,
            key: self.key.clone(),
            cache_dir: None,
            damage: self.damage.clone(),
            unfolded: self.unfolded.clone(),
            catalog_seen: self.catalog_seen.clone(),
        }
    }

    /// The same repository, keeping its own log of damaged files: for a lookup that is not the command's
    /// business (a backup finding its parent), whose damage is warned about but does not make the
    /// command "done, with problems".
    pub fn with_own_damage_log(&self) -> Repository {
        Repository { damage: DamageLog::default(), cache_dir: self.cache_dir.clone(), ..self.without_cache() }
    }

    /// Another handle on the same repository with its own cache directory: another host, in tests.
    #[cfg(test)]
    pub(crate) fn with_cache(&self, dir: &Path) -> Repository {
        Repository { cache_dir: Some(dir.to_path_buf()), catalog_seen: Default::default(), ..self.without_cache() }
    }

    /// The damaged files this process has skipped so far, each once (shared with [`Self::without_cache`]).
    /// A command that completed around some is "done, with problems".
    pub fn damage(&self) -> &DamageLog {
        &self.damage
    }

    pub(crate) fn note_unfolded(&self, kind: FileKind, n: usize) {
        self.unfolded.lock().expect("unfolded").insert(kind.dir(), n);
    }

    /// How many files of `kind` the last read found outside any catalog segment.
    pub(crate) fn unfolded(&self, kind: FileKind) -> usize {
        self.unfolded.lock().expect("unfolded").get(kind.dir()).copied().unwrap_or(0)
    }

    /// Opens a listed file, telling damage apart from failure: `Ok(None)` for a file that is damaged
    /// (recorded in [`Self::damage`]) or gone since it was listed (a concurrent forget or prune), an
    /// error for anything else (storage unreachable, …), which must not be taken for damage.
    pub(crate) fn load_tolerant<T>(
        &self,
        kind: FileKind,
        id: &FileId,
        decode: impl FnOnce(Vec<u8>) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.load_file(kind, id).and_then(decode) {
            Ok(v) => Ok(Some(v)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e @ (Error::Corrupt(_) | Error::UnknownContent(_))) => {
                self.damage.report(kind, id, &e);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }
    pub fn crypto(&self) -> &Crypto {
        &self.crypto
    }
    pub fn key_id(&self) -> FileId {
        self.key_id
    }
    pub fn master_key(&self) -> &MasterKey {
        &self.key.master
    }
    /// What this host's key slot opened: the master key and, in a recipients repository, the recipients.
    pub fn repo_key(&self) -> &keys::RepoKey {
        &self.key
    }
    /// The age recipients content is sealed for; empty for a password repository.
    pub fn recipients(&self) -> &[String] {
        &self.key.recipients
    }
    /// Whether this handle can read content: a password repository, or a recipients one opened with an
    /// identity. A write-only host (a recipients repository's password alone) cannot.
    pub fn reads_content(&self) -> bool {
        self.crypto.reads_content()
    }

    /// Seals and stores a file; its name is the hash of the stored bytes.
    pub fn save_file(&self, kind: FileKind, plaintext: &[u8]) -> Result<FileId> {
        let compressed =
            zstd::bulk::compress(plaintext, self.config.compression_level).map_err(|e| Error::io("zstd", e))?;
        let sealed = self.crypto.seal(&compressed, kind.aad());
        let id = FileId::of(&sealed);
        if matches!(kind, FileKind::Snapshot | FileKind::Run) {
            self.forget_listings();
        }
        self.storage.write(&format!("{}/{id}", kind.dir()), Bytes::from(sealed))?;
        Ok(id)
    }

    pub(crate) fn cache_dir(&self) -> Option<&std::path::Path> {
        self.cache_dir.as_deref()
    }

    pub(crate) fn seen_catalog(&self) -> Option<String> {
        self.catalog_seen.lock().expect("catalog fingerprint").clone()
    }

    pub(crate) fn note_catalog(&self, fingerprint: Option<String>) {
        *self.catalog_seen.lock().expect("catalog fingerprint") = fingerprint;
    }

    pub fn load_file(&self, kind: FileKind, id: &FileId) -> Result<Vec<u8>> {
        let path = format!("{}/{id}", kind.dir());
        let sealed = self.cached_read(&path)?;
        if FileId::of(&sealed) == *id {
            return self.open_file(kind, id, &sealed);
        }
        // A damaged cached copy: forget it and read the repository's.
        self.forget_cached(&path);
        self.open_file(kind, id, &self.storage.read(&path)?)
    }

    fn open_file(&self, kind: FileKind, id: &FileId, sealed: &[u8]) -> Result<Vec<u8>> {
        let what = format!("{} {}", kind.dir(), id.short());
        if FileId::of(sealed) != *id {
            return Err(Error::Corrupt(format!("{what}: content does not match its name")));
        }
        let compressed = self.crypto.open(sealed, kind.aad(), &what)?;
        zstd::stream::decode_all(&compressed[..]).map_err(|e| Error::Corrupt(format!("{what}: zstd: {e}")))
    }

    /// Whether the repository holds this file now (one request; the cache is not asked, it only says
    /// a file once was there).
    pub fn has_file(&self, kind: FileKind, id: &FileId) -> Result<bool> {
        self.storage.exists(&format!("{}/{id}", kind.dir()))
    }

    pub fn list_files(&self, kind: FileKind) -> Result<Vec<FileId>> {
        let prefix = format!("{}/", kind.dir());
        let mut ids: Vec<FileId> = self
            .storage
            .list(kind.dir())?
            .into_iter()
            .filter_map(|o| o.path.strip_prefix(&prefix).and_then(|n| FileId::from_hex(n).ok()))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Index and snapshot files are immutable and content-named, so a local copy is valid forever: read
    /// through a cache (still sealed, so it holds nothing readable without the key) and forget copies of
    /// files no longer in the repository.
    fn cached_read(&self, path: &str) -> Result<Bytes> {
        let Some(dir) = &self.cache_dir else { return self.storage.read(path) };
        let local = dir.join(path);
        if let Ok(b) = std::fs::read(&local) {
            return Ok(Bytes::from(b));
        }
        let bytes = self.storage.read(path)?;
        if let Some(parent) = local.parent() {
            if std::fs::create_dir_all(parent).is_ok() {
                let tmp = local.with_extension("tmp");
                if std::fs::write(&tmp, &bytes).is_ok() {
                    let _ = std::fs::rename(&tmp, &local);
                }
            }
        }
        Ok(bytes)
    }

    /// Loads every index file into memory. Returns the index and the IDs of the files it came from.
    /// Damaged index files are skipped (and recorded): a blob only they list is unknown, so a backup
    /// stores it again rather than trust a location nothing vouches for.
    pub fn load_index(&self) -> Result<(Index, Vec<FileId>)> {
        let files = self.list_files(FileKind::Index)?;
        let mut idx = Index::new();
        let mut read = Vec::with_capacity(files.len());
        for id in &files {
            let Some(packs) = self.load_tolerant(FileKind::Index, id, |p| index::decode(&p, &id.short()))? else {
                continue;
            };
            for (pack, blobs) in packs {
                idx.add_pack(pack, &blobs);
            }
            read.push(*id);
        }
        self.prune_cache(FileKind::Index, &files);
        Ok((idx, read))
    }

    fn forget_cached(&self, path: &str) {
        if let Some(dir) = &self.cache_dir {
            let _ = std::fs::remove_file(dir.join(path));
        }
    }

    /// Forgets cached copies of files of `kind` the repository no longer has.
    pub(crate) fn prune_cache(&self, kind: FileKind, live: &[FileId]) {
        let Some(dir) = &self.cache_dir else { return };
        let Ok(entries) = std::fs::read_dir(dir.join(kind.dir())) else { return };
        let live: std::collections::HashSet<String> = live.iter().map(|id| id.to_hex()).collect();
        for e in entries.flatten() {
            if !live.contains(e.file_name().to_string_lossy().as_ref()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Every pack as the index files list it. A blob stored twice (concurrent backups) is in two packs,
    /// and the in-memory [`Index`] keeps one location; checking and pruning need the full listings.
    /// Damaged index files are returned apart, for the caller to report or refuse; a storage failure is
    /// an error.
    pub fn load_pack_listing(&self) -> Result<PackListing> {
        let mut listing = PackListing { files: self.list_files(FileKind::Index)?, ..Default::default() };
        for id in listing.files.clone() {
            match self.load_file(FileKind::Index, &id).and_then(|p| index::decode(&p, &id.short())) {
                Ok(packs) => {
                    for (pack, blobs) in packs {
                        listing.listed_by.entry(pack).or_default().push(id);
                        listing.packs.entry(pack).or_insert(blobs);
                    }
                }
                Err(Error::NotFound { .. }) => listing.files.retain(|f| *f != id),
                Err(e @ Error::Corrupt(_)) => {
                    self.damage.report(FileKind::Index, &id, &e);
                    listing.unreadable.push((id, e));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(listing)
    }

    /// The packs under `data/`, with their sizes.
    pub fn stored_packs(&self) -> Result<std::collections::BTreeMap<FileId, u64>> {
        Ok(self
            .storage
            .list("data")?
            .into_iter()
            .filter_map(|o| crate::pack::pack_id_from_path(&o.path).map(|id| (id, o.size)))
            .collect())
    }

    pub fn save_index(&self, packs: &[(FileId, Vec<crate::pack::PackedBlob>)]) -> Result<FileId> {
        self.save_file(FileKind::Index, &index::encode(packs))
    }

    pub fn save_snapshot(&self, snapshot: &mut Snapshot) -> Result<FileId> {
        let json = serde_json::to_vec(snapshot).expect("snapshot serialises");
        let id = self.save_file(FileKind::Snapshot, &json)?;
        snapshot.id = Some(id);
        Ok(id)
    }

    pub fn load_snapshot(&self, id: &FileId) -> Result<Snapshot> {
        decode_snapshot(id, &self.load_file(FileKind::Snapshot, id)?)
    }

    /// [`crate::snapshot::select`], but a selector that names a snapshot whose file is damaged gets an
    /// error that says so (and how to get rid of it), not "no snapshot matches".
    pub fn select<'a>(&self, snapshots: &'a [Snapshot], selector: &str) -> Result<&'a Snapshot> {
        match crate::snapshot::select(snapshots, selector) {
            Err(Error::NoSnapshot(sel)) => {
                let prefix = sel.rsplit(':').next().unwrap_or(&sel).to_ascii_lowercase();
                let damaged = self.damage.list().into_iter().find(|d| {
                    prefix.len() >= 4
                        && prefix != "latest"
                        && d.path.strip_prefix("snapshots/").is_some_and(|id| id.starts_with(&prefix))
                });
                match damaged {
                    Some(d) => Err(Error::Corrupt(format!(
                        "{} is damaged ({}); `bunker repair snapshots` removes it, `bunker snapshots` lists the others",
                        d.path, d.problem
                    ))),
                    None => Err(Error::NoSnapshot(sel)),
                }
            }
            other => other,
        }
    }

    pub fn delete_snapshot(&self, id: &FileId) -> Result<()> {
        self.forget_listings();
        self.storage.delete(&snapshot_path(id))
    }

    /// Reads, opens and verifies one blob.
    pub fn read_blob(&self, index: &Index, id: &BlobId) -> Result<Vec<u8>> {
        let loc = index.get(id).ok_or_else(|| {
            let hint = if self.damage.list().iter().any(|d| d.path.starts_with("index/")) {
                "an index file is damaged: `bunker repair index` rebuilds the index from the packs"
            } else {
                "run `bunker check`"
            };
            Error::Corrupt(format!("blob {} is not in the index ({hint})", id.short()))
        })?;
        let sealed = self.storage.read_range(&pack_path(&loc.pack), loc.blob.offset as u64, loc.blob.length as u64)?;
        open_blob(&self.crypto, &loc.blob, &sealed).map_err(|e| match e {
            Error::Corrupt(m) => Error::Corrupt(format!("{m} (in pack {})", loc.pack)),
            other => other,
        })
    }
}

pub(crate) fn decode_snapshot(id: &FileId, plain: &[u8]) -> Result<Snapshot> {
    let mut s: Snapshot =
        serde_json::from_slice(plain).map_err(|e| Error::UnknownContent(format!("snapshot {}: {e}", id.short())))?;
    s.id = Some(*id);
    Ok(s)
}

#[derive(Default)]
pub struct PackListing {
    pub packs: std::collections::BTreeMap<FileId, Vec<crate::pack::PackedBlob>>,
    /// The index files read.
    pub files: Vec<FileId>,
    /// Which index files list each pack (most packs: one; after an interrupted prune: two).
    pub listed_by: std::collections::BTreeMap<FileId, Vec<FileId>>,
    pub unreadable: Vec<(FileId, Error)>,
}

impl PackListing {
    pub fn index(&self) -> Index {
        let mut idx = Index::new();
        for (pack, blobs) in &self.packs {
            idx.add_pack(*pack, blobs);
        }
        idx
    }
}

/// `BUNKER_CACHE_DIR`, else `$XDG_CACHE_HOME/bunker`, else `~/.cache/bunker`; `BUNKER_CACHE_DIR=off` disables.
fn cache_root() -> Option<PathBuf> {
    match std::env::var_os("BUNKER_CACHE_DIR") {
        Some(v) if v == "off" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("bunker")),
    }
}
