//! PostgreSQL page checksums, checked as a local base backup reads the relation files (as pgBackRest
//! and WAL-G do), so corruption at the source is found at backup time, not at restore time.
//!
//! The checksum is PostgreSQL's own (`src/include/storage/checksum_impl.h`): 32 parallel FNV-1a-like
//! hashes over the 8 KiB page read as little-endian `u32`s, with `pd_checksum` taken as zero, folded by
//! xor, mixed with the block number and reduced to 1..=65535. Pages that are new (all zeros, or
//! `pd_upper` = 0) have no checksum; a page whose LSN is at or past the backup's start LSN is being
//! rewritten while we read it (a torn page is expected there, WAL replay repairs it) and is skipped.

use std::path::{Path, PathBuf};

use bunker_engine::archiver::{Inspect, InspectFile};

pub const BLOCK_SIZE: usize = 8192;
#[cfg(test)]
const BLOCKS_PER_SEGMENT: u64 = 131072;
const N_SUMS: usize = 32;
const FNV_PRIME: u32 = 16777619;
const BASE_OFFSETS: [u32; N_SUMS] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C, 0xF8D4474F,
    0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB, 0xE58F764B, 0x187636BC,
    0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4, 0x783125BB, 0x6CA8EAA2, 0xE407EAC6,
    0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];

/// PostgreSQL's checksum of `page` (8 KiB) as block `blkno` of its relation.
pub fn page_checksum(page: &[u8], blkno: u32) -> u16 {
    debug_assert_eq!(page.len(), BLOCK_SIZE);
    let mut sums = BASE_OFFSETS;
    let comp = |sum: &mut u32, value: u32| {
        let tmp = *sum ^ value;
        *sum = tmp.wrapping_mul(FNV_PRIME) ^ (tmp >> 17);
    };
    for (row, words) in page.chunks_exact(4 * N_SUMS).enumerate() {
        for (j, w) in words.chunks_exact(4).enumerate() {
            let mut value = u32::from_le_bytes(w.try_into().expect("4 bytes"));
            // pd_checksum (bytes 8..10 of the page: the low half of word 2) counts as zero.
            if row == 0 && j == 2 {
                value &= 0xFFFF_0000;
            }
            comp(&mut sums[j], value);
        }
    }
    for _ in 0..2 {
        for s in sums.iter_mut() {
            comp(s, 0);
        }
    }
    let folded = sums.iter().fold(0u32, |acc, s| acc ^ s) ^ blkno;
    ((folded % 65535) + 1) as u16
}

/// The relation files of a data directory (`base/<db>/<relfilenode>[_fsm|_vm|_init][.<segment>]`,
/// `global/<relfilenode>…`) and the block number their first page has (segments of
/// `blocks_per_segment` blocks: the cluster's `segment_size`).
fn relation_file(rel: &Path, blocks_per_segment: u64) -> Option<u64> {
    let mut parts = rel.iter().map(|p| p.to_str());
    let name = match (parts.next()?, parts.next()?, parts.next()) {
        (Some("base"), Some(db), Some(Some(name))) if db.bytes().all(|b| b.is_ascii_digit()) => name,
        (Some("global"), Some(name), None) => name,
        _ => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    let (stem, segment) = match name.split_once('.') {
        Some((stem, seg)) => (stem, seg.parse::<u64>().ok()?),
        None => (name, 0),
    };
    let node = stem.strip_suffix("_fsm").or(stem.strip_suffix("_vm")).or(stem.strip_suffix("_init")).unwrap_or(stem);
    (!node.is_empty() && node.bytes().all(|b| b.is_ascii_digit())).then_some(segment * blocks_per_segment)
}

/// Whether a page passes: new (no checksum yet), being rewritten (LSN at or past `start_lsn`), or its
/// checksum matches.
fn page_ok(page: &[u8], blkno: u64, start_lsn: u64) -> bool {
    let lsn = (u64::from(u32::from_le_bytes(page[0..4].try_into().expect("4"))) << 32)
        | u64::from(u32::from_le_bytes(page[4..8].try_into().expect("4")));
    let upper = u16::from_le_bytes(page[14..16].try_into().expect("2"));
    let stored = u16::from_le_bytes(page[8..10].try_into().expect("2"));
    upper == 0 || lsn >= start_lsn || page_checksum(page, blkno as u32) == stored
}

/// Checks the pages of every relation file a base backup reads.
pub struct PageChecks {
    /// The backup's start LSN: pages at or past it are being written and are not checked.
    pub start_lsn: u64,
    /// The cluster's `segment_size`, in blocks.
    pub blocks_per_segment: u64,
    /// Where the files are, to read a failing page once more (a read torn by a concurrent write).
    pub data_dir: PathBuf,
}

impl Inspect for PageChecks {
    fn file(&self, rel: &Path) -> Option<Box<dyn InspectFile>> {
        let first_block = relation_file(rel, self.blocks_per_segment)?;
        Some(Box::new(FilePages {
            rel: rel.display().to_string(),
            path: self.data_dir.join(rel),
            start_lsn: self.start_lsn,
            first_block,
            block: first_block,
            partial: Vec::with_capacity(BLOCK_SIZE),
            failed: Vec::new(),
        }))
    }
}

struct FilePages {
    rel: String,
    path: PathBuf,
    start_lsn: u64,
    first_block: u64,
    block: u64,
    partial: Vec<u8>,
    failed: Vec<u64>,
}

impl FilePages {
    fn page(&mut self, page: &[u8]) {
        let blkno = self.block;
        self.block += 1;
        if !page_ok(page, blkno, self.start_lsn) {
            self.failed.push(blkno);
        }
    }

    /// Reads a failing page again: one whose write raced our read passes now.
    fn still_fails(&self, blkno: u64) -> bool {
        use std::os::unix::fs::FileExt;
        let mut page = vec![0u8; BLOCK_SIZE];
        let at = (blkno - self.first_block) * BLOCK_SIZE as u64;
        match std::fs::File::open(&self.path).and_then(|f| f.read_exact_at(&mut page, at)) {
            Ok(()) => !page_ok(&page, blkno, self.start_lsn),
            // Truncated or gone meanwhile (a dropped relation): WAL replay takes care of it.
            Err(_) => false,
        }
    }
}

impl InspectFile for FilePages {
    fn update(&mut self, mut bytes: &[u8]) {
        if !self.partial.is_empty() {
            let need = (BLOCK_SIZE - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..need]);
            bytes = &bytes[need..];
            if self.partial.len() == BLOCK_SIZE {
                let page = std::mem::take(&mut self.partial);
                self.page(&page);
                self.partial = page;
                self.partial.clear();
            }
        }
        let mut pages = bytes.chunks_exact(BLOCK_SIZE);
        for page in pages.by_ref() {
            self.page(page);
        }
        self.partial.extend_from_slice(pages.remainder());
    }

    fn finish(self: Box<Self>) -> Vec<String> {
        // A trailing partial page is a relation being extended as we read: not checked.
        let failed: Vec<u64> = self.failed.iter().copied().filter(|b| self.still_fails(*b)).collect();
        if failed.is_empty() {
            return Vec::new();
        }
        let blocks: Vec<String> = failed.iter().take(10).map(|b| b.to_string()).collect();
        let more = if failed.len() > 10 { format!(" and {} more", failed.len() - 10) } else { String::new() };
        vec![format!(
            "{}: page checksum verification failed for block {}{more}: the source's data is damaged there (PostgreSQL will refuse to read it); check it with pg_checksums or amcheck",
            self.rel,
            blocks.join(", ")
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_files_are_recognised_with_their_first_block() {
        assert_eq!(relation_file(Path::new("base/16384/16385"), BLOCKS_PER_SEGMENT), Some(0));
        assert_eq!(relation_file(Path::new("base/16384/16385.2"), BLOCKS_PER_SEGMENT), Some(2 * BLOCKS_PER_SEGMENT));
        assert_eq!(relation_file(Path::new("base/1/1259_fsm"), BLOCKS_PER_SEGMENT), Some(0));
        assert_eq!(relation_file(Path::new("global/1262_vm"), BLOCKS_PER_SEGMENT), Some(0));
        assert_eq!(relation_file(Path::new("base/1/pg_internal.init"), BLOCKS_PER_SEGMENT), None);
        assert_eq!(relation_file(Path::new("base/1/PG_VERSION"), BLOCKS_PER_SEGMENT), None);
        assert_eq!(relation_file(Path::new("global/pg_control"), BLOCKS_PER_SEGMENT), None);
        assert_eq!(relation_file(Path::new("pg_xact/0000"), BLOCKS_PER_SEGMENT), None);
    }

    #[test]
    fn a_page_with_its_checksum_passes_and_a_flipped_byte_fails() {
        let mut page = vec![0u8; BLOCK_SIZE];
        page[0..8].copy_from_slice(&[0, 0, 0, 0, 0x28, 0x01, 0x00, 0x01]);
        page[12..14].copy_from_slice(&40u16.to_le_bytes());
        page[14..16].copy_from_slice(&8000u16.to_le_bytes());
        for (i, b) in page[8000..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let sum = page_checksum(&page, 7);
        page[8..10].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(page_checksum(&page, 7), sum, "pd_checksum itself does not count");
        let mut checks = FilePages {
            rel: "base/1/2".into(),
            path: PathBuf::from("/nonexistent"),
            start_lsn: u64::MAX,
            first_block: 7,
            block: 7,
            partial: Vec::new(),
            failed: Vec::new(),
        };
        // Block 7 in two reads, then the same page stamped as block 8, then block 9 with a flipped byte.
        checks.update(&page[..100]);
        checks.update(&page[100..]);
        let eight = page_checksum(&page, 8);
        page[8..10].copy_from_slice(&eight.to_le_bytes());
        checks.update(&page);
        assert!(checks.failed.is_empty(), "{:?}", checks.failed);
        let nine = page_checksum(&page, 9);
        page[8..10].copy_from_slice(&nine.to_le_bytes());
        page[4000] ^= 1;
        checks.update(&page);
        assert_eq!(checks.failed, [9]);
        // A page being rewritten (LSN past the backup's start) is not checked.
        checks.start_lsn = 1;
        checks.update(&page);
        assert_eq!(checks.failed, [9]);
    }
}
