//! Blobs and packs. A blob is one chunk of data (or one piece of metadata), compressed when that helps and
//! sealed with its own ID as associated data. A pack is many sealed blobs back to back, then a sealed header
//! listing them, then the header's length as a little-endian u32. Its name is the BLAKE3 of its bytes.

use bytes::Bytes;

use crate::crypto::Crypto;
use crate::error::{Error, Result};
use crate::id::{BlobId, FileId};

const HEADER_MAGIC: &[u8; 4] = b"BKPK";
const HEADER_VERSION: u8 = 1;
const HEADER_AAD: &[u8] = b"bunker/pack-header/v1";
const HEADER_ENTRY_LEN: usize = 32 + 1 + 1 + 4 + 4 + 4;

/// Data blobs hold content; metadata blobs hold trees and chunk lists. They never share a pack, so
/// metadata can be read (and cached) without touching data packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Data = 0,
    Meta = 1,
}

impl BlobKind {
    fn from_u8(v: u8) -> Result<Self> {
        match v {
            0 => Ok(BlobKind::Data),
            1 => Ok(BlobKind::Meta),
            _ => Err(Error::Corrupt(format!("unknown blob kind {v}"))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None = 0,
    Zstd = 1,
}

impl Compression {
    fn from_u8(v: u8) -> Result<Self> {
        match v {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zstd),
            _ => Err(Error::Corrupt(format!("unknown compression {v}"))),
        }
    }
}

/// A blob ready to be appended to a pack.
pub struct SealedBlob {
    pub id: BlobId,
    pub kind: BlobKind,
    pub compression: Compression,
    pub raw_length: u32,
    pub bytes: Vec<u8>,
}

/// Where a blob sits inside its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedBlob {
    pub id: BlobId,
    pub kind: BlobKind,
    pub compression: Compression,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

/// Compresses (keeping the raw bytes when zstd does not shrink them) and seals one blob.
pub fn seal_blob(
    crypto: &Crypto,
    compressor: &mut zstd::bulk::Compressor<'_>,
    id: BlobId,
    kind: BlobKind,
    plaintext: &[u8],
) -> Result<SealedBlob> {
    let compressed = if looks_incompressible(compressor, plaintext) {
        None
    } else {
        compressor.compress(plaintext).ok().filter(|c| c.len() < plaintext.len())
    };
    let (compression, payload) = match &compressed {
        Some(c) => (Compression::Zstd, c.as_slice()),
        None => (Compression::None, plaintext),
    };
    let bytes = crypto.seal_content(payload, &id.0)?;
    Ok(SealedBlob { id, kind, compression, raw_length: plaintext.len() as u32, bytes })
}

const SAMPLE: usize = 16 * 1024;

/// zstd spends as long failing on random bytes (encrypted or already-compressed data) as it does
/// succeeding on text. For large blobs, compress three small samples first (start, middle, end): if
/// none of them shrinks by 2%, the blob is stored raw without a full attempt. Costs ~5% of a full
/// attempt; a blob that is random only in places still gets compressed, because one sample is enough.
fn looks_incompressible(compressor: &mut zstd::bulk::Compressor<'_>, data: &[u8]) -> bool {
    if data.len() < 16 * SAMPLE {
        return false;
    }
    let mid = data.len() / 2 - SAMPLE / 2;
    [0, mid, data.len() - SAMPLE].iter().all(|&at| {
        let sample = &data[at..at + SAMPLE];
        compressor.compress(sample).map(|c| c.len() * 50 >= sample.len() * 49).unwrap_or(false)
    })
}

/// Opens a blob read from a pack and checks that its content hashes to its ID.
pub fn open_blob(crypto: &Crypto, blob: &PackedBlob, sealed: &[u8]) -> Result<Vec<u8>> {
    let what = format!("blob {}", blob.id.short());
    let payload = crypto.open_content(sealed, &blob.id.0, &what)?;
    plaintext_of(crypto, blob, payload, &what)
}

/// Opens a blob to its stored payload (compressed or not, as `blob.compression` says), checked against
/// its ID: for re-sealing it elsewhere without compressing it again.
pub fn open_payload(crypto: &Crypto, blob: &PackedBlob, sealed: &[u8]) -> Result<Vec<u8>> {
    let what = format!("blob {}", blob.id.short());
    let payload = crypto.open_content(sealed, &blob.id.0, &what)?;
    if blob.compression == Compression::None {
        return plaintext_of(crypto, blob, payload, &what);
    }
    plaintext_of(crypto, blob, payload.clone(), &what)?;
    Ok(payload)
}

fn plaintext_of(crypto: &Crypto, blob: &PackedBlob, payload: Vec<u8>, what: &str) -> Result<Vec<u8>> {
    let plaintext = match blob.compression {
        Compression::None => payload,
        Compression::Zstd => zstd::bulk::decompress(&payload, blob.raw_length as usize)
            .map_err(|e| Error::Corrupt(format!("{what}: zstd: {e}")))?,
    };
    if plaintext.len() != blob.raw_length as usize || crypto.blob_id(&plaintext) != blob.id {
        return Err(Error::Corrupt(format!("{what}: content does not match its ID")));
    }
    Ok(plaintext)
}

/// The storage path of a pack: `data/<first two hex digits>/<id>`.
pub fn pack_path(id: &FileId) -> String {
    let hex = id.to_hex();
    format!("data/{}/{}", &hex[..2], hex)
}

/// The exact size of a pack holding these blobs (as its index lists them).
pub fn expected_pack_size(blobs: &[PackedBlob]) -> u64 {
    let data_end = blobs.iter().map(|b| b.offset as u64 + b.length as u64).max().unwrap_or(0);
    data_end + (crate::crypto::SEAL_OVERHEAD + 9 + HEADER_ENTRY_LEN * blobs.len() + 4) as u64
}

/// The pack ID in a storage path `data/xx/<id>`, if it is one.
pub fn pack_id_from_path(path: &str) -> Option<FileId> {
    path.strip_prefix("data/").and_then(|rest| rest.rsplit('/').next()).and_then(|name| FileId::from_hex(name).ok())
}

/// A pack being filled.
pub struct PackBuilder {
    pub kind: BlobKind,
    buf: Vec<u8>,
    blobs: Vec<PackedBlob>,
}

impl PackBuilder {
    pub fn new(kind: BlobKind, capacity: usize) -> Self {
        Self::reusing(kind, Vec::with_capacity(capacity))
    }

    /// A pack filling a buffer that held an earlier pack (its memory is already mapped).
    pub fn reusing(kind: BlobKind, mut buf: Vec<u8>) -> Self {
        buf.clear();
        PackBuilder { kind, buf, blobs: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    pub fn add(&mut self, blob: SealedBlob) {
        self.blobs.push(PackedBlob {
            id: blob.id,
            kind: blob.kind,
            compression: blob.compression,
            offset: self.buf.len() as u32,
            length: blob.bytes.len() as u32,
            raw_length: blob.raw_length,
        });
        self.buf.extend_from_slice(&blob.bytes);
    }

    /// Appends the sealed header and trailer; returns the pack's name, bytes and contents.
    pub fn finish(mut self, crypto: &Crypto) -> (FileId, Bytes, Vec<PackedBlob>) {
        let mut header = Vec::with_capacity(9 + self.blobs.len() * HEADER_ENTRY_LEN);
        header.extend_from_slice(HEADER_MAGIC);
        header.push(HEADER_VERSION);
        header.extend_from_slice(&(self.blobs.len() as u32).to_le_bytes());
        for b in &self.blobs {
            header.extend_from_slice(&b.id.0);
            header.push(b.kind as u8);
            header.push(b.compression as u8);
            header.extend_from_slice(&b.offset.to_le_bytes());
            header.extend_from_slice(&b.length.to_le_bytes());
            header.extend_from_slice(&b.raw_length.to_le_bytes());
        }
        let sealed = crypto.seal(&header, HEADER_AAD);
        self.buf.extend_from_slice(&sealed);
        self.buf.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let id = FileId::of(&self.buf);
        (id, Bytes::from(self.buf), self.blobs)
    }
}

/// Reads the header of a whole pack, checking that it is consistent with the pack's size.
pub fn parse_header(crypto: &Crypto, pack: &[u8], name: &str) -> Result<Vec<PackedBlob>> {
    let (start, len) = header_span(pack.len() as u64, &pack[pack.len().saturating_sub(4)..], name)?;
    let (start, len) = (start as usize, len as usize);
    parse_sealed_header(crypto, &pack[start..start + len], start as u64, name)
}

/// Where a pack's sealed header lies (offset, length), from the pack's size and its last 4 bytes: what
/// `repair index` reads of a pack, two ranged reads and not the whole pack.
pub fn header_span(pack_size: u64, last4: &[u8], name: &str) -> Result<(u64, u64)> {
    let corrupt = |why: String| Error::Corrupt(format!("pack {name}: {why}"));
    let Ok(tail) = <[u8; 4]>::try_from(last4) else {
        return Err(corrupt("too short to hold a header".into()));
    };
    let header_len = u32::from_le_bytes(tail) as u64;
    if pack_size < 4 || header_len + 4 > pack_size {
        return Err(corrupt(format!("header length {header_len} exceeds pack size {pack_size}")));
    }
    Ok((pack_size - 4 - header_len, header_len))
}

/// Opens a pack's sealed header, found at `header_start` (where the blobs' data must end).
pub fn parse_sealed_header(crypto: &Crypto, sealed: &[u8], header_start: u64, name: &str) -> Result<Vec<PackedBlob>> {
    let corrupt = |why: String| Error::Corrupt(format!("pack {name}: {why}"));
    let header = crypto.open(sealed, HEADER_AAD, &format!("pack {name} header"))?;
    if header.len() < 9 || &header[..4] != HEADER_MAGIC || header[4] != HEADER_VERSION {
        return Err(corrupt("bad header magic or version".into()));
    }
    let count = u32::from_le_bytes(header[5..9].try_into().expect("4 bytes")) as usize;
    if header.len() != 9 + count * HEADER_ENTRY_LEN {
        return Err(corrupt("header length does not match its entry count".into()));
    }
    let mut blobs = Vec::with_capacity(count);
    for e in header[9..].chunks_exact(HEADER_ENTRY_LEN) {
        let u32_at = |i: usize| u32::from_le_bytes(e[i..i + 4].try_into().expect("4 bytes"));
        let blob = PackedBlob {
            id: BlobId(e[..32].try_into().expect("32 bytes")),
            kind: BlobKind::from_u8(e[32])?,
            compression: Compression::from_u8(e[33])?,
            offset: u32_at(34),
            length: u32_at(38),
            raw_length: u32_at(42),
        };
        if blob.offset as u64 + blob.length as u64 > header_start {
            return Err(corrupt(format!("blob {} lies outside the pack's data", blob.id.short())));
        }
        blobs.push(blob);
    }
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn samples_decide_only_when_all_are_incompressible() {
        let mut zc = zstd::bulk::Compressor::new(3).unwrap();
        let random: Vec<u8> = (0..1 << 20).map(|_| rand::random()).collect();
        assert!(looks_incompressible(&mut zc, &random));
        let mut mixed = random.clone();
        mixed[..64 * 1024].fill(b'a');
        assert!(!looks_incompressible(&mut zc, &mixed), "a compressible start must be noticed");
        assert!(!looks_incompressible(&mut zc, &vec![0u8; 1 << 20]));
        assert!(!looks_incompressible(&mut zc, &random[..1000]), "small blobs always get a full attempt");
    }

    #[test]
    fn pack_round_trip_and_incompressible_blobs_stored_raw() {
        let crypto = Crypto::new(&MasterKey::generate());
        let mut zc = zstd::bulk::Compressor::new(3).unwrap();
        let text = b"hello hello hello hello hello hello hello hello".repeat(100);
        let random: Vec<u8> = (0..5000).map(|_| rand::random()).collect();
        let mut pb = PackBuilder::new(BlobKind::Data, 0);
        for data in [&text[..], &random[..]] {
            pb.add(seal_blob(&crypto, &mut zc, crypto.blob_id(data), BlobKind::Data, data).unwrap());
        }
        let (id, bytes, blobs) = pb.finish(&crypto);
        assert_eq!(id, FileId::of(&bytes));
        let parsed = parse_header(&crypto, &bytes, "t").unwrap();
        assert_eq!(parsed, blobs);
        assert_eq!(parsed[0].compression, Compression::Zstd);
        assert_eq!(parsed[1].compression, Compression::None);
        for (b, data) in parsed.iter().zip([&text[..], &random[..]]) {
            let sealed = &bytes[b.offset as usize..(b.offset + b.length) as usize];
            assert_eq!(open_blob(&crypto, b, sealed).unwrap(), data);
        }
        // A blob's ciphertext read back as another blob fails.
        let b0 = &parsed[0];
        let mut swapped = parsed[1];
        swapped.id = b0.id;
        let sealed1 = &bytes[parsed[1].offset as usize..(parsed[1].offset + parsed[1].length) as usize];
        assert!(open_blob(&crypto, &swapped, sealed1).is_err());
        // Truncation is detected.
        assert!(parse_header(&crypto, &bytes[..bytes.len() - 10], "t").is_err());
    }
}
