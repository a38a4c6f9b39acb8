//! Write-once named objects: files a source keeps by name beside its snapshots, each stored whole
//! (compressed and sealed, not chunked), such as a database's write-ahead log segments. They are not
//! deduplicated and reference no pack, so storing one needs neither the index nor a lock, and costs one
//! upload: this is the path for commands that must start and finish in milliseconds.
//!
//! `objects/<namespace>/<name>` holds `content id (32) || sealed(zstd(bytes))`. The content ID is the
//! keyed BLAKE3 hash of the bytes (as for blobs: it reveals nothing), stored in the clear before the
//! sealed part so that "is this the same content?" costs a 32-byte read. The associated data binds the
//! sealed part to its full path, so an object moved or renamed fails to open.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::repository::Repository;

const AAD_PREFIX: &[u8] = b"bunker/object/v1\0";
const ID_LEN: usize = 32;

/// What storing an object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored; this many bytes went to storage.
    Stored { stored_bytes: u64 },
    /// An object of that name with the same content was already there; nothing was written.
    AlreadyStored,
}

/// One stored object, as a listing shows it.
#[derive(Debug, Clone)]
pub struct ObjectEntry {
    /// The name below the namespace (may contain `/`).
    pub name: String,
    pub stored_bytes: u64,
    pub modified: Option<std::time::SystemTime>,
}

fn object_path(namespace: &str, name: &str) -> Result<String> {
    for (what, part) in [("object namespace", namespace), ("object name", name)] {
        if part.is_empty()
            || part.starts_with('/')
            || part.ends_with('/')
            || part.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::invalid(what, format!("{part:?} is not a relative name without empty, . or .. parts")));
        }
    }
    Ok(format!("objects/{namespace}/{name}"))
}

fn aad(path: &str) -> Vec<u8> {
    let mut a = AAD_PREFIX.to_vec();
    a.extend_from_slice(path.as_bytes());
    a
}

impl Repository {
    /// The content ID an object with these bytes would have.
    pub fn object_id(&self, bytes: &[u8]) -> BlobId {
        self.crypto().blob_id(bytes)
    }

    /// The content ID of what `reader` yields, read in 1 MiB steps (no copy of the whole in memory).
    pub fn object_id_of(&self, reader: impl std::io::Read) -> std::io::Result<BlobId> {
        let mut hasher = self.crypto().id_hasher();
        hasher.update_reader(reader)?;
        Ok(BlobId(*hasher.finalize().as_bytes()))
    }

    /// Whether an object of that name is stored (one metadata request).
    pub fn object_exists(&self, namespace: &str, name: &str) -> Result<bool> {
        self.storage().exists(&object_path(namespace, name)?)
    }

    /// Whether `namespace/name` is stored, and if so whether with content ID `id`: `None` when absent.
    /// Costs one 32-byte read.
    pub fn object_matches(&self, namespace: &str, name: &str, id: &BlobId) -> Result<Option<bool>> {
        Ok(self.object_content_id(namespace, name)?.map(|stored| stored == *id))
    }

    /// The content ID of the stored `namespace/name`, `None` when absent. Costs one 32-byte read.
    pub fn object_content_id(&self, namespace: &str, name: &str) -> Result<Option<BlobId>> {
        self.stored_object_id(&object_path(namespace, name)?)
    }

    /// Stores `bytes` as `namespace/name`, once: if an object of that name exists with the same content,
    /// succeeds without writing; with other content, fails and leaves the stored one untouched. The
    /// object appears whole or not at all (a temp file and a link locally, a conditional PUT on S3), so
    /// concurrent puts of the same content are safe and one of different content never overwrites.
    pub fn put_object(&self, namespace: &str, name: &str, bytes: &[u8]) -> Result<PutOutcome> {
        let path = object_path(namespace, name)?;
        let id = self.object_id(bytes);
        if let Some(existing) = self.stored_object_id(&path)? {
            return same_or_refuse(&path, &existing, &id);
        }
        let compressed = compress(bytes, self.config().compression_level).map_err(|e| Error::io("zstd", e))?;
        let mut stored = Vec::with_capacity(ID_LEN + compressed.len() + crate::crypto::SEAL_OVERHEAD);
        stored.extend_from_slice(&id.0);
        stored.extend_from_slice(&self.crypto().seal_content(&compressed, &aad(&path))?);
        let stored_bytes = stored.len() as u64;
        if self.storage().create_new(&path, Bytes::from(stored))? {
            return Ok(PutOutcome::Stored { stored_bytes });
        }
        // Another process stored it between our look and our write.
        match self.stored_object_id(&path)? {
            Some(existing) => same_or_refuse(&path, &existing, &id),
            None => Err(Error::Corrupt(format!("{path}: creation reported a conflict but nothing is there"))),
        }
    }

    /// The content ID recorded at the head of a stored object, or `None` when there is none.
    fn stored_object_id(&self, path: &str) -> Result<Option<BlobId>> {
        match self.storage().read_range(path, 0, ID_LEN as u64) {
            Ok(head) => Ok(Some(BlobId(head[..].try_into().expect("32 bytes")))),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(Error::Corrupt(_)) => Err(Error::Corrupt(format!("{path}: shorter than an object header"))),
            Err(e) => Err(e),
        }
    }

    /// Reads an object back, verified (authenticated, and its bytes hash to its recorded ID). `None` when
    /// the repository has no object of that name.
    pub fn get_object(&self, namespace: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let path = object_path(namespace, name)?;
        let stored = match self.storage().read(&path) {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if stored.len() < ID_LEN {
            return Err(Error::Corrupt(format!("{path}: shorter than an object header")));
        }
        let (head, sealed) = stored.split_at(ID_LEN);
        let compressed = self.crypto().open_content(sealed, &aad(&path), &path)?;
        let bytes =
            zstd::stream::decode_all(&compressed[..]).map_err(|e| Error::Corrupt(format!("{path}: zstd: {e}")))?;
        if self.object_id(&bytes).0[..] != *head {
            return Err(Error::Corrupt(format!("{path}: content does not match its recorded ID")));
        }
        Ok(Some(bytes))
    }

    /// Every object whose name starts with `prefix` (a directory-like prefix such as `main/`, or empty
    /// for all), sorted by name.
    pub fn list_objects(&self, namespace: &str, prefix: &str) -> Result<Vec<ObjectEntry>> {
        let root = format!("objects/{namespace}/");
        let dir = format!("{root}{prefix}");
        let dir = match dir.rfind('/') {
            Some(i) => dir[..i].to_string(),
            None => dir,
        };
        let mut out: Vec<ObjectEntry> = self
            .storage()
            .list(&dir)?
            .into_iter()
            .filter_map(|o| {
                let name = o.path.strip_prefix(&root)?;
                name.starts_with(prefix).then(|| ObjectEntry {
                    name: name.to_string(),
                    stored_bytes: o.size,
                    modified: o.modified,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes an object (succeeds if it is already gone).
    pub fn delete_object(&self, namespace: &str, name: &str) -> Result<()> {
        self.storage().delete(&object_path(namespace, name)?)
    }
}

/// zstd on every core for inputs worth it (a 16 MiB WAL segment compresses in half the time on two).
fn compress(bytes: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    if bytes.len() < (1 << 20) {
        return zstd::bulk::compress(bytes, level);
    }
    let workers = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let mut enc = zstd::stream::Encoder::new(Vec::with_capacity(bytes.len() / 2), level)?;
    enc.multithread(workers)?;
    enc.include_checksum(false)?;
    std::io::Write::write_all(&mut enc, bytes)?;
    enc.finish()
}

fn same_or_refuse(path: &str, existing: &BlobId, new: &BlobId) -> Result<PutOutcome> {
    if existing == new {
        Ok(PutOutcome::AlreadyStored)
    } else {
        Err(Error::ObjectConflict { path: path.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InitOptions;
    use crate::storage::{Location, Storage};

    fn repo(dir: &std::path::Path) -> Repository {
        std::env::set_var("BUNKER_KDF_MEMORY_KIB", "1024");
        let storage = Storage::create(&Location::Local(dir.to_path_buf())).unwrap();
        Repository::init(storage, "pw", &InitOptions::default()).unwrap()
    }

    #[test]
    fn write_once_read_back_and_refuse_other_content() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let data = vec![7u8; 100_000];
        assert!(matches!(repo.put_object("wal", "t/0001", &data).unwrap(), PutOutcome::Stored { .. }));
        assert_eq!(repo.put_object("wal", "t/0001", &data).unwrap(), PutOutcome::AlreadyStored);
        let other = vec![8u8; 100_000];
        let err = repo.put_object("wal", "t/0001", &other).unwrap_err();
        assert!(matches!(err, Error::ObjectConflict { .. }), "{err}");
        assert_eq!(repo.get_object("wal", "t/0001").unwrap().unwrap(), data);
        assert_eq!(repo.get_object("wal", "t/0002").unwrap(), None);
        repo.put_object("wal", "t/0002", b"x").unwrap();
        repo.put_object("wal", "u/0001", b"y").unwrap();
        let names: Vec<String> = repo.list_objects("wal", "t/").unwrap().into_iter().map(|o| o.name).collect();
        assert_eq!(names, ["t/0001", "t/0002"]);
        assert_eq!(repo.list_objects("wal", "").unwrap().len(), 3);
        repo.delete_object("wal", "t/0002").unwrap();
        assert_eq!(repo.get_object("wal", "t/0002").unwrap(), None);
        assert!(repo.put_object("wal", "../x", b"z").is_err());
    }

    #[test]
    fn a_moved_or_altered_object_fails_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        repo.put_object("wal", "a", b"hello world").unwrap();
        let a = dir.path().join("objects/wal/a");
        std::fs::copy(&a, dir.path().join("objects/wal/b")).unwrap();
        assert!(matches!(repo.get_object("wal", "b"), Err(Error::Corrupt(_))));
        let mut bytes = std::fs::read(&a).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&a, bytes).unwrap();
        assert!(matches!(repo.get_object("wal", "a"), Err(Error::Corrupt(_))));
    }
}
