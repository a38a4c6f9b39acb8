//! Fixtures the engine's unit tests share: a throwaway local repository and a stream snapshot in it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::backup::{Backup, SnapshotDraft};
use crate::config::InitOptions;
use crate::lock::acquire;
use crate::snapshot::Root;
use crate::storage::{Location, Storage};
use crate::{FileId, Repository};

/// A new repository in `dir` under `password`, with a cheap KDF and no cache.
pub fn init_with(dir: &Path, password: &str) -> Repository {
    std::env::set_var("BUNKER_KDF_MEMORY_KIB", "1024");
    std::env::set_var("BUNKER_CACHE_DIR", "off");
    let storage = Storage::create(&Location::Local(dir.to_path_buf())).unwrap();
    Repository::init(storage, password, &InitOptions::default()).unwrap()
}

/// [`init_with`] password `pw`.
pub fn init(dir: &Path) -> Repository {
    init_with(dir, "pw")
}

/// Backs up `data` as a stream snapshot named `name`; returns its ID.
pub fn stream(repo: &Repository, name: &str, data: &[u8]) -> FileId {
    let lock = acquire(repo.storage(), false, "test", Duration::ZERO).unwrap();
    let (index, _) = repo.load_index().unwrap();
    let b = Backup::start(repo, &lock, Arc::new(index));
    let (content, size) = b.save_stream(data).unwrap();
    let draft = SnapshotDraft { name: name.into(), kind: "stream".into(), ..Default::default() };
    b.commit(Root::Stream { size, content }, draft).unwrap().id()
}
