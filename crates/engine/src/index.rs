//! The index: which pack holds each blob. On disk, `index/<id>` files each list some packs and their
//! blobs; in memory, one hash table keyed by blob ID with a 20-byte value (about 60 bytes per blob with
//! the table's overhead), so ten million chunks (10 TiB at 1 MiB) fit in well under a gigabyte.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::id::{BlobId, FileId, IdBuildHasher};
use crate::pack::{BlobKind, Compression, PackedBlob};

const MAGIC: &[u8; 4] = b"BKIX";
const VERSION: u8 = 1;
const ENTRY_LEN: usize = 32 + 1 + 1 + 4 + 4 + 4;

#[derive(Debug, Clone, Copy)]
struct Entry {
    pack: u32,
    offset: u32,
    length: u32,
    raw_length: u32,
    /// bit 0: kind (0 data, 1 meta); bit 1: zstd-compressed.
    flags: u8,
}

/// A blob's full location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: FileId,
    pub blob: PackedBlob,
}

#[derive(Default)]
pub struct Index {
    packs: Vec<FileId>,
    pack_numbers: HashMap<FileId, u32>,
    blobs: HashMap<BlobId, Entry, IdBuildHasher>,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_pack(&mut self, pack: FileId, blobs: &[PackedBlob]) {
        let next = self.packs.len() as u32;
        let number = *self.pack_numbers.entry(pack).or_insert_with(|| {
            self.packs.push(pack);
            next
        });
        self.blobs.reserve(blobs.len());
        for b in blobs {
            let flags = (b.kind as u8) | (((b.compression == Compression::Zstd) as u8) << 1);
            self.blobs.insert(
                b.id,
                Entry { pack: number, offset: b.offset, length: b.length, raw_length: b.raw_length, flags },
            );
        }
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.blobs.get(id).map(|e| BlobLocation { pack: self.packs[e.pack as usize], blob: packed(*id, e) })
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    pub fn has_pack(&self, pack: &FileId) -> bool {
        self.pack_numbers.contains_key(pack)
    }

    /// Every blob with its location, grouped by nothing in particular.
    pub fn iter(&self) -> impl Iterator<Item = BlobLocation> + '_ {
        self.blobs.iter().map(|(id, e)| BlobLocation { pack: self.packs[e.pack as usize], blob: packed(*id, e) })
    }

    /// The index's content grouped by pack, as index files store it.
    pub fn by_pack(&self) -> Vec<(FileId, Vec<PackedBlob>)> {
        let mut groups: Vec<Vec<PackedBlob>> = vec![Vec::new(); self.packs.len()];
        for (id, e) in &self.blobs {
            groups[e.pack as usize].push(packed(*id, e));
        }
        self.packs
            .iter()
            .zip(groups)
            .filter(|(_, g)| !g.is_empty())
            .map(|(p, mut g)| {
                g.sort_by_key(|b| b.offset);
                (*p, g)
            })
            .collect()
    }
}

fn packed(id: BlobId, e: &Entry) -> PackedBlob {
    PackedBlob {
        id,
        kind: if e.flags & 1 == 1 { BlobKind::Meta } else { BlobKind::Data },
        compression: if e.flags & 2 == 2 { Compression::Zstd } else { Compression::None },
        offset: e.offset,
        length: e.length,
        raw_length: e.raw_length,
    }
}

/// Serialises the plaintext of an index file.
pub fn encode(packs: &[(FileId, Vec<PackedBlob>)]) -> Vec<u8> {
    let n: usize = packs.iter().map(|(_, b)| 36 + b.len() * ENTRY_LEN).sum();
    let mut out = Vec::with_capacity(9 + n);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for (pack, blobs) in packs {
        out.extend_from_slice(&pack.0);
        out.extend_from_slice(&(blobs.len() as u32).to_le_bytes());
        for b in blobs {
            out.extend_from_slice(&b.id.0);
            out.push(b.kind as u8);
            out.push(b.compression as u8);
            out.extend_from_slice(&b.offset.to_le_bytes());
            out.extend_from_slice(&b.length.to_le_bytes());
            out.extend_from_slice(&b.raw_length.to_le_bytes());
        }
    }
    out
}

/// Parses the plaintext of an index file.
pub fn decode(bytes: &[u8], name: &str) -> Result<Vec<(FileId, Vec<PackedBlob>)>> {
    let corrupt = || Error::Corrupt(format!("index {name}: malformed"));
    let mut r = Cursor { bytes, pos: 0 };
    if r.take(4).ok_or_else(corrupt)? != MAGIC || r.take(1).ok_or_else(corrupt)? != [VERSION] {
        return Err(Error::Corrupt(format!("index {name}: bad magic or unsupported version")));
    }
    let pack_count = r.u32().ok_or_else(corrupt)?;
    let mut packs = Vec::with_capacity(pack_count.min(1 << 20) as usize);
    for _ in 0..pack_count {
        let pack = FileId(r.take(32).ok_or_else(corrupt)?.try_into().expect("32"));
        let n = r.u32().ok_or_else(corrupt)?;
        let mut blobs = Vec::with_capacity(n.min(1 << 20) as usize);
        for _ in 0..n {
            let e = r.take(ENTRY_LEN).ok_or_else(corrupt)?;
            let u32_at = |i: usize| u32::from_le_bytes(e[i..i + 4].try_into().expect("4"));
            blobs.push(PackedBlob {
                id: BlobId(e[..32].try_into().expect("32")),
                kind: match e[32] {
                    0 => BlobKind::Data,
                    1 => BlobKind::Meta,
                    k => return Err(Error::Corrupt(format!("index {name}: unknown blob kind {k}"))),
                },
                compression: match e[33] {
                    0 => Compression::None,
                    1 => Compression::Zstd,
                    c => return Err(Error::Corrupt(format!("index {name}: unknown compression {c}"))),
                },
                offset: u32_at(34),
                length: u32_at(38),
                raw_length: u32_at(42),
            });
        }
        packs.push((pack, blobs));
    }
    if r.pos != bytes.len() {
        return Err(corrupt());
    }
    Ok(packs)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().expect("4")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(i: u8, kind: BlobKind) -> PackedBlob {
        PackedBlob {
            id: BlobId([i; 32]),
            kind,
            compression: Compression::Zstd,
            offset: i as u32 * 100,
            length: 100,
            raw_length: 300,
        }
    }

    #[test]
    fn encode_decode_and_lookup() {
        let p1 = FileId([1; 32]);
        let p2 = FileId([2; 32]);
        let packs =
            vec![(p1, vec![blob(1, BlobKind::Data), blob(2, BlobKind::Data)]), (p2, vec![blob(3, BlobKind::Meta)])];
        let decoded = decode(&encode(&packs), "t").unwrap();
        assert_eq!(decoded, packs);
        let mut idx = Index::new();
        for (p, b) in &decoded {
            idx.add_pack(*p, b);
        }
        assert_eq!(idx.get(&BlobId([3; 32])).unwrap(), BlobLocation { pack: p2, blob: blob(3, BlobKind::Meta) });
        assert!(!idx.contains(&BlobId([9; 32])));
        assert_eq!(idx.by_pack(), packs);
        assert!(decode(&encode(&packs)[..50], "t").is_err());
    }

    #[test]
    fn in_memory_entry_is_compact() {
        // 32-byte key + 20-byte value: with hashbrown's 1 control byte and 7/8 load, ≈ 60 bytes per blob.
        assert!(std::mem::size_of::<(BlobId, Entry)>() <= 52);
    }
}
