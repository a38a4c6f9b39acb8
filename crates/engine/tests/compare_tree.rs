//! A restored directory is compared with its snapshot byte for byte, without reading the repository again.

use std::sync::Arc;
use std::time::Duration;

use bunker_engine::archiver::Archiver;
use bunker_engine::backup::{Backup, SnapshotDraft};
use bunker_engine::compare::compare_tree;
use bunker_engine::config::InitOptions;
use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::Root;
use bunker_engine::storage::{Location, Storage};
use bunker_engine::{lock, Repository};

#[test]
fn a_restored_tree_matches_and_every_kind_of_difference_is_named() {
    std::env::set_var("BUNKER_KDF_MEMORY_KIB", "1024");
    std::env::set_var("BUNKER_CACHE_DIR", "off");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    std::fs::create_dir_all(source.join("sub")).unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(source.join("big.bin"), &big).unwrap();
    std::fs::write(source.join("sub/small.txt"), b"hello").unwrap();
    std::os::unix::fs::symlink("sub/small.txt", source.join("link")).unwrap();

    let storage = Storage::create(&Location::Local(dir.path().join("repo"))).unwrap();
    let repo = Repository::init(storage, "pw", &InitOptions::default()).unwrap();
    let guard = lock::acquire(repo.storage(), false, "test", Duration::ZERO).unwrap();
    let (index, _) = repo.load_index().unwrap();
    let backup = Backup::start(&repo, &guard, Arc::new(index));
    let exclude = globset::GlobSet::empty();
    let root = Archiver::new(&backup, &exclude).save_paths(std::slice::from_ref(&source)).unwrap();
    backup
        .commit(
            Root::Tree { tree: root },
            SnapshotDraft { name: "f".into(), kind: "files".into(), ..Default::default() },
        )
        .unwrap();

    let (index, _) = repo.load_index().unwrap();
    let to = dir.path().join("restored");
    Restorer::new(&repo, &index).restore_tree(&root, &to, None, false).unwrap();
    let same = compare_tree(&repo, &index, &root, &to).unwrap();
    assert!(same.matches(), "{:?}", same.differences);
    assert_eq!((same.files, same.dirs, same.symlinks), (2, 2, 1));
    assert_eq!(same.bytes, big.len() as u64 + 5);

    // One flipped byte deep in the big file, a file the snapshot lacks, and a missing one.
    let mut changed = big.clone();
    changed[2_500_000] ^= 1;
    std::fs::write(to.join("source/big.bin"), &changed).unwrap();
    std::fs::write(to.join("source/extra"), b"x").unwrap();
    std::fs::remove_file(to.join("source/sub/small.txt")).unwrap();
    let found = compare_tree(&repo, &index, &root, &to).unwrap();
    assert!(!found.matches());
    let all = found.differences.join("\n");
    assert!(all.contains("source/big.bin: differs from byte"), "{all}");
    assert!(all.contains("source/extra: not in the snapshot"), "{all}");
    assert!(all.contains("source/sub/small.txt: missing"), "{all}");
}
