//! Key files: `keys/<id>`, each wrapping the master key with a key derived from one password by
//! argon2id. Any key file opens the repository; adding or removing one never touches data.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use crate::crypto::{open_with, seal_with, MasterKey};
use crate::error::{Error, Result};
use crate::id::FileId;
use crate::storage::Storage;

const KEY_AAD: &[u8] = b"bunker/key/v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    pub created: chrono::DateTime<chrono::Utc>,
    pub host: String,
    pub username: String,
    pub kdf: String,
    /// argon2id memory in KiB, iterations, lanes.
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub salt: String,
    /// hex of the sealed master key.
    pub data: String,
}

/// KDF cost: 64 MiB, 3 passes, one lane (OWASP's argon2id baseline is 19 MiB/2 passes; we go above it).
/// `BUNKER_KDF_MEMORY_KIB` lowers it for throwaway repositories (tests); it is recorded in each key file.
fn kdf_params() -> (u32, u32, u32) {
    let m = std::env::var("BUNKER_KDF_MEMORY_KIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64 * 1024);
    (m, 3, 1)
}

fn derive(password: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<[u8; 32]> {
    let params = Params::new(m, t, p, Some(32)).map_err(|e| Error::Corrupt(format!("key file KDF parameters: {e}")))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, &mut out)
        .map_err(|e| Error::Corrupt(format!("argon2id: {e}")))?;
    Ok(out)
}

pub fn key_path(id: &FileId) -> String {
    format!("keys/{id}")
}

/// Writes a new key file wrapping `master` under `password`; returns its ID.
pub fn add_key(storage: &Storage, master: &MasterKey, password: &str) -> Result<FileId> {
    if password.is_empty() {
        return Err(Error::invalid("password", "empty; set BUNKER_PASSWORD, BUNKER_PASSWORD_FILE or type one"));
    }
    let (m, t, p) = kdf_params();
    let salt: [u8; 16] = rand::random();
    let wrapping = derive(password, &salt, m, t, p)?;
    let file = KeyFile {
        created: chrono::Utc::now(),
        host: hostname(),
        username: std::env::var("USER").unwrap_or_default(),
        kdf: "argon2id".into(),
        m_cost: m,
        t_cost: t,
        p_cost: p,
        salt: hex::encode(salt),
        data: hex::encode(seal_with(&wrapping, master.as_bytes(), KEY_AAD)),
    };
    let bytes = serde_json::to_vec_pretty(&file).expect("key file serialises");
    let id = FileId::of(&bytes);
    storage.write(&key_path(&id), bytes.into())?;
    Ok(id)
}

pub fn list_keys(storage: &Storage) -> Result<Vec<(FileId, KeyFile)>> {
    let mut out = Vec::new();
    for obj in storage.list("keys")? {
        let Some(name) = obj.path.strip_prefix("keys/") else { continue };
        let Ok(id) = FileId::from_hex(name) else { continue };
        let bytes = storage.read(&obj.path)?;
        let file: KeyFile =
            serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt(format!("key file {name}: {e}")))?;
        out.push((id, file));
    }
    out.sort_by_key(|(_, f)| f.created);
    Ok(out)
}

/// Tries every key file with `password`; returns the master key and the ID of the key that opened it.
pub fn unlock(storage: &Storage, password: &str) -> Result<(MasterKey, FileId)> {
    for (id, file) in list_keys(storage)? {
        if file.kdf != "argon2id" {
            continue;
        }
        let Ok(salt) = hex::decode(&file.salt) else { continue };
        let Ok(sealed) = hex::decode(&file.data) else { continue };
        // A key file with unusable parameters is skipped, not fatal: another slot may open the repository.
        let Ok(wrapping) = derive(password, &salt, file.m_cost, file.t_cost, file.p_cost) else {
            tracing::warn!("key {} has unusable KDF parameters; skipped", id.short());
            continue;
        };
        if let Some(master) = open_with(&wrapping, &sealed, KEY_AAD) {
            let bytes: [u8; 32] = master
                .try_into()
                .map_err(|_| Error::Corrupt(format!("key file {}: master key has the wrong length", id.short())))?;
            return Ok((MasterKey::from_bytes(bytes), id));
        }
    }
    Err(Error::WrongPassword { location: storage.location().to_string() })
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
