//! Byte ranges of a stored stream read back exactly, whatever chunk boundaries they cross.

use std::sync::Arc;
use std::time::Duration;

use bunker_engine::backup::{Backup, SnapshotDraft};
use bunker_engine::chunker::ChunkerParams;
use bunker_engine::config::InitOptions;
use bunker_engine::restorer::Restorer;
use bunker_engine::snapshot::Root;
use bunker_engine::storage::{Location, Storage};
use bunker_engine::{lock, Repository};

#[test]
fn any_range_of_a_stream_reads_back_exactly() {
    std::env::set_var("BUNKER_KDF_MEMORY_KIB", "1024");
    std::env::set_var("BUNKER_CACHE_DIR", "off");
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::create(&Location::Local(dir.path().join("repo"))).unwrap();
    let small = ChunkerParams { min_size: 4096, avg_size: 8192, max_size: 16384 };
    let repo = Repository::init(storage, "pw", &InitOptions { chunker: small, ..Default::default() }).unwrap();
    let guard = lock::acquire(repo.storage(), false, "test", Duration::ZERO).unwrap();

    // Pseudo-random bytes, so chunk boundaries fall at irregular offsets.
    let mut state = 0x9e3779b97f4a7c15u64;
    let data: Vec<u8> = (0..300_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let (index, _) = repo.load_index().unwrap();
    let backup = Backup::start(&repo, &guard, Arc::new(index));
    let (content, size) = backup.save_stream(&data[..]).unwrap();
    backup.commit(Root::Stream { size, content: content.clone() }, SnapshotDraft::default()).unwrap();

    let (index, _) = repo.load_index().unwrap();
    let restorer = Restorer::new(&repo, &index);
    let map = restorer.stream_map(&content).unwrap();
    assert_eq!(map.len(), data.len() as u64);
    assert!(restorer.chunk_ids(&content).unwrap().len() > 10, "the test needs many chunks");
    for (start, end) in
        [(0, 0), (0, 1), (0, 300_000), (1, 299_999), (8191, 8193), (100_000, 200_000), (299_999, 300_000)]
    {
        let mut out = Vec::new();
        let n = restorer.dump_range(&map, start..end, &mut out).unwrap();
        assert_eq!(n, end - start);
        assert_eq!(out, &data[start as usize..end as usize], "range {start}..{end}");
    }
    let err = restorer.dump_range(&map, 0..300_001, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("outside a stream of 300000 bytes"), "{err}");
}
