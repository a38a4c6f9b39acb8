//! Keys and sealing. One random 256-bit master key per repository; every other key is derived from it
//! with BLAKE3's key derivation, so a key file only ever wraps those 32 bytes.
//!
//! A sealed buffer is `nonce (24) || ciphertext || tag (16)` from XChaCha20-Poly1305 with a random nonce.
//! The associated data binds a ciphertext to its role (a blob to its ID, a file to its kind), so a blob
//! moved to another place, or a file renamed to another kind, fails to open.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::error::{Error, Result};

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed buffer adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

const CONTEXT_ENCRYPTION: &str = "bunker 2026-11 repository encryption key";
const CONTEXT_BLOB_ID: &str = "bunker 2026-11 blob id key";
const CONTEXT_CHUNKER: &str = "bunker 2026-11 chunker gear seed";

/// The repository's master key material. Never written anywhere unwrapped.
#[derive(Clone)]
pub struct MasterKey(pub(crate) [u8; 32]);

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        MasterKey(k)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0 = [0u8; 32];
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// What seals content in place of the repository key: a recipients repository's content keys
/// (implemented by `content::Content`, which depends on this module, not the other way round).
pub trait ContentSealer: Send + Sync {
    /// Seals `plaintext` (`content key id || sealed`).
    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>>;
    /// Opens what [`ContentSealer::seal`] sealed, here or (with an identity) in another process.
    fn open(&self, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>>;
    /// Whether content written by other processes can be opened (an identity is at hand).
    fn has_identity(&self) -> bool;
}

/// The keys derived from the master key, ready for use on hot paths; in a recipients repository, also
/// the content keys that seal blobs and named objects instead.
#[derive(Clone)]
pub struct Crypto {
    aead: XChaCha20Poly1305,
    id_key: [u8; 32],
    chunker_seed: u64,
    content: Option<std::sync::Arc<dyn ContentSealer>>,
}

impl Crypto {
    pub fn new(master: &MasterKey) -> Self {
        let enc = blake3::derive_key(CONTEXT_ENCRYPTION, &master.0);
        let id_key = blake3::derive_key(CONTEXT_BLOB_ID, &master.0);
        let seed = blake3::derive_key(CONTEXT_CHUNKER, &master.0);
        Crypto {
            aead: XChaCha20Poly1305::new((&enc).into()),
            id_key,
            chunker_seed: u64::from_le_bytes(seed[..8].try_into().expect("8 bytes")),
            content: None,
        }
    }

    /// The same keys, sealing content with `content` instead (a recipients repository).
    pub fn with_content(mut self, content: impl ContentSealer + 'static) -> Self {
        self.content = Some(std::sync::Arc::new(content));
        self
    }

    /// Whether content (blobs, named objects) can be opened here: always in a password repository; in a
    /// recipients repository only with an identity (else only what this process wrote itself).
    pub fn reads_content(&self) -> bool {
        self.content.as_ref().is_none_or(|c| c.has_identity())
    }

    /// Seals content (a blob's payload, a named object): with the repository key, or in a recipients
    /// repository with this process's content key (`content key id || sealed`).
    pub fn seal_content(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        match &self.content {
            Some(c) => c.seal(plaintext, aad),
            None => Ok(self.seal(plaintext, aad)),
        }
    }

    /// Opens what [`Crypto::seal_content`] sealed. Without an identity, a recipients repository's content
    /// fails with [`Error::NeedsIdentity`] (unless this process wrote it).
    pub fn open_content(&self, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>> {
        match &self.content {
            Some(c) => c.open(sealed, aad, what),
            None => self.open(sealed, aad, what),
        }
    }

    /// The ID of a blob: keyed BLAKE3 of its plaintext, so IDs reveal nothing about content.
    pub fn blob_id(&self, plaintext: &[u8]) -> crate::BlobId {
        crate::BlobId(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    /// An incremental hasher producing blob IDs, for input read in pieces.
    pub fn id_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.id_key)
    }

    /// Seed of the chunker's gear table: secret, so chunk boundaries do not fingerprint known content.
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// Seals `plaintext` into a new buffer (`nonce || ct || tag`).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        seal_with_aead(&self.aead, plaintext, aad)
    }

    /// Opens a sealed buffer; fails if it was altered or sealed for another role.
    pub fn open(&self, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>> {
        open_with_aead(&self.aead, sealed, aad, what)
    }
}

/// Seals with a key given directly (used to wrap the master key in key files).
pub fn seal_with(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    seal_with_aead(&XChaCha20Poly1305::new(key.into()), plaintext, aad)
}

/// Opens a buffer sealed by [`seal_with`]; `None` when the key is wrong or the buffer altered.
pub fn open_with(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    open_with_aead(&XChaCha20Poly1305::new(key.into()), sealed, aad, "key").ok()
}

/// [`Crypto::seal`] with a cipher given directly (a content key).
pub(crate) fn seal_with_aead(aead: &XChaCha20Poly1305, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = aead
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, &mut out[NONCE_LEN..])
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
    out.extend_from_slice(&tag);
    out
}

/// [`Crypto::open`] with a cipher given directly (a content key).
pub(crate) fn open_with_aead(aead: &XChaCha20Poly1305, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(Error::Corrupt(format!("{what}: {} bytes is too short to be sealed", sealed.len())));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut buf = ct.to_vec();
    aead.decrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut buf, tag.into())
        .map_err(|_| Error::Corrupt(format!("{what}: authentication failed (altered or not ours)")))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let c = Crypto::new(&MasterKey::generate());
        let sealed = c.seal(b"hello", b"role-a");
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(c.open(&sealed, b"role-a", "t").unwrap(), b"hello");
        assert!(c.open(&sealed, b"role-b", "t").is_err());
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN + 1] ^= 1;
        assert!(c.open(&flipped, b"role-a", "t").is_err());
        assert!(c.open(&sealed[..10], b"role-a", "t").is_err());
    }

    #[test]
    fn ids_are_keyed() {
        let a = Crypto::new(&MasterKey::generate());
        let b = Crypto::new(&MasterKey::generate());
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x").0, *blake3::hash(b"x").as_bytes());
    }
}
