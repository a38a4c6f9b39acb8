//! A snapshot can never make a restore write outside its target, whatever names its trees hold.

use std::sync::Arc;
use std::time::Duration;

use bunker_engine::backup::{Backup, SnapshotDraft};
use bunker_engine::config::InitOptions;
use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::Root;
use bunker_engine::storage::{Location, Storage};
use bunker_engine::tree::{Node, NodeKind, Tree};
use bunker_engine::{lock, Error, Repository};

#[test]
fn restore_refuses_entry_names_that_leave_the_target() {
    std::env::set_var("BUNKER_KDF_MEMORY_KIB", "1024");
    std::env::set_var("BUNKER_CACHE_DIR", "off");
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::create(&Location::Local(dir.path().join("repo"))).unwrap();
    let repo = Repository::init(storage, "pw", &InitOptions::default()).unwrap();
    let guard = lock::acquire(repo.storage(), false, "test", Duration::ZERO).unwrap();

    for (i, evil) in ["../escaped", "/tmp/abs-escape", "a/../../escaped", "..", ".", ""].into_iter().enumerate() {
        let (index, _) = repo.load_index().unwrap();
        let backup = Backup::start(&repo, &guard, Arc::new(index));
        let (content, size) = backup.save_stream(&b"not yours"[..]).unwrap();
        let node = |name: &str, kind| Node {
            name: name.into(),
            name_bytes: None,
            kind,
            mode: 0o644,
            mtime: 0,
            mtime_nsec: 0,
            uid: 0,
            gid: 0,
        };
        let inner = Tree { nodes: vec![node(evil, NodeKind::File { size, content })] };
        let inner_id = backup.save_meta(serde_json::to_vec(&inner).unwrap()).unwrap();
        let root = Tree { nodes: vec![node("sub", NodeKind::Dir { subtree: inner_id })] };
        let root_id = backup.save_meta(serde_json::to_vec(&root).unwrap()).unwrap();
        let draft = SnapshotDraft { name: format!("evil{i}"), kind: "files".into(), ..Default::default() };
        backup.commit(Root::Tree { tree: root_id }, draft).unwrap();

        let (index, _) = repo.load_index().unwrap();
        let target = dir.path().join(format!("target{i}"));
        let err = Restorer::new(&repo, &index).restore_tree(&root_id, &target, None, false).unwrap_err();
        assert!(matches!(err, Error::Corrupt(ref m) if m.contains("unsafe entry name")), "{evil:?}: {err}");
        assert!(!dir.path().join("escaped").exists(), "{evil:?} escaped the target");
        assert!(!std::path::Path::new("/tmp/abs-escape").exists(), "{evil:?} escaped the target");
    }
}
