//! Key files: `keys/<id>`, each wrapping the repository key with a key derived from one password by
//! argon2id, or (in a recipients repository) encrypted for the age recipients. Any key file opens the
//! repository; adding or removing one never touches data.
//!
//! The repository key is the master key, and in a recipients repository also the recipients that every
//! writer must seal content for ([`crate::content`]): they are sealed with the master key inside each
//! slot, so a writer cannot be made to seal for someone else by changing an unauthenticated file.

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
    /// `argon2id` (a password slot) or `age` (the slot an identity opens, in a recipients repository).
    pub kdf: String,
    /// A password slot of a recipients repository: it opens the write key only. Informative (what opens
    /// is decided by the sealed payload, not by this flag).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub write_only: bool,
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

/// What a key slot opens: the master key and, in a recipients repository, the recipients content is
/// sealed for (then the slot is a *write key*: it cannot open content).
#[derive(Clone)]
pub struct RepoKey {
    pub master: MasterKey,
    /// Empty for a password repository.
    pub recipients: Vec<String>,
}

impl RepoKey {
    pub fn password_only(master: MasterKey) -> Self {
        RepoKey { master, recipients: Vec::new() }
    }

    /// A slot's plaintext: the 32 bytes of the master key (a password repository, as every version wrote
    /// it), or JSON `{"master": hex, "recipients": […]}`.
    fn encode(&self) -> Vec<u8> {
        if self.recipients.is_empty() {
            return self.master.as_bytes().to_vec();
        }
        serde_json::to_vec(
            &serde_json::json!({"master": hex::encode(self.master.as_bytes()), "recipients": self.recipients}),
        )
        .expect("a key serialises")
    }

    fn decode(plain: &[u8], what: &str) -> Result<Self> {
        if let Ok(bytes) = <[u8; 32]>::try_from(plain) {
            return Ok(RepoKey::password_only(MasterKey::from_bytes(bytes)));
        }
        #[derive(Deserialize)]
        struct Payload {
            master: String,
            recipients: Vec<String>,
        }
        let bad = || Error::Corrupt(format!("{what}: the sealed key does not decode"));
        let p: Payload = serde_json::from_slice(plain).map_err(|_| bad())?;
        let master: [u8; 32] = hex::decode(&p.master).ok().and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
        if p.recipients.is_empty() {
            return Err(bad());
        }
        Ok(RepoKey { master: MasterKey::from_bytes(master), recipients: p.recipients })
    }
}

impl std::fmt::Debug for RepoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RepoKey(.., {} recipients)", self.recipients.len())
    }
}

/// Writes a new key file wrapping `key` under `password`; returns its ID.
pub fn add_key(storage: &Storage, key: &RepoKey, password: &str) -> Result<FileId> {
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
        write_only: !key.recipients.is_empty(),
        m_cost: m,
        t_cost: t,
        p_cost: p,
        salt: hex::encode(salt),
        data: hex::encode(seal_with(&wrapping, &key.encode(), KEY_AAD)),
    };
    write_key_file(storage, &file)
}

fn write_key_file(storage: &Storage, file: &KeyFile) -> Result<FileId> {
    let bytes = serde_json::to_vec_pretty(file).expect("key file serialises");
    let id = FileId::of(&bytes);
    storage.write(&key_path(&id), bytes.into())?;
    Ok(id)
}

/// Writes the slot an identity opens: `key` encrypted for `recipients` (age). Returns its ID.
pub fn add_identity_slot(storage: &Storage, key: &RepoKey, recipients: &[crate::content::Recipient]) -> Result<FileId> {
    let file = KeyFile {
        created: chrono::Utc::now(),
        host: hostname(),
        username: std::env::var("USER").unwrap_or_default(),
        kdf: "age".into(),
        write_only: false,
        m_cost: 0,
        t_cost: 0,
        p_cost: 0,
        salt: String::new(),
        data: hex::encode(crate::content::encrypt_for(recipients, &key.encode())?),
    };
    write_key_file(storage, &file)
}

/// Opens the repository key with an age identity, through the `age` slots. `Ok(None)`: the repository
/// has no such slot (a password repository: the identity is not needed).
pub fn unlock_identity(
    storage: &Storage,
    identities: &crate::content::Identities,
) -> Result<Option<(RepoKey, FileId)>> {
    let slots: Vec<_> = list_keys(storage)?.into_iter().filter(|(_, f)| f.kdf == "age").collect();
    if slots.is_empty() {
        return Ok(None);
    }
    let mut last = None;
    for (id, file) in slots {
        let Ok(data) = hex::decode(&file.data) else { continue };
        match identities.decrypt(&data, &key_path(&id)) {
            Ok(plain) => return Ok(Some((RepoKey::decode(&plain, &key_path(&id))?, id))),
            Err(e @ Error::Identity(_)) => last = Some(e),
            Err(e) => tracing::warn!("skipping key {}: {e}", id.short()),
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::Identity(format!("no recipient slot of {} opens (every one is damaged)", storage.location()))
    }))
}

pub fn list_keys(storage: &Storage) -> Result<Vec<(FileId, KeyFile)>> {
    let (keys, damaged) = read_keys(storage)?;
    for problem in damaged {
        tracing::warn!("skipping {problem}");
    }
    Ok(keys)
}

/// Key files by ID, oldest first.
pub type Keys = Vec<(FileId, KeyFile)>;

/// Every key file that parses, oldest first, and one line for each that does not (a damaged key file
/// is skipped: another slot may still open the repository).
pub fn read_keys(storage: &Storage) -> Result<(Keys, Vec<String>)> {
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    for obj in storage.list("keys")? {
        let Some(name) = obj.path.strip_prefix("keys/") else { continue };
        let Ok(id) = FileId::from_hex(name) else { continue };
        let bytes = match storage.read(&obj.path) {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        if FileId::of(&bytes) != id {
            damaged.push(format!(
                "key file {}: content does not match its name (damaged; `bunker key remove {}` removes it)",
                obj.path,
                id.short()
            ));
            continue;
        }
        match serde_json::from_slice::<KeyFile>(&bytes) {
            Ok(file) => out.push((id, file)),
            Err(e) => damaged.push(format!(
                "key file {}: {e} (damaged; `bunker key remove {}` removes it)",
                obj.path,
                id.short()
            )),
        }
    }
    out.sort_by_key(|(_, f)| f.created);
    Ok((out, damaged))
}

/// Tries every key file with `password`; returns the repository key and the ID of the key that opened it.
pub fn unlock(storage: &Storage, password: &str) -> Result<(RepoKey, FileId)> {
    let keys = list_keys(storage)?;
    if keys.is_empty() {
        return Err(Error::NoKey { location: storage.location().to_string() });
    }
    for (id, file) in keys {
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
        if let Some(plain) = open_with(&wrapping, &sealed, KEY_AAD) {
            return Ok((RepoKey::decode(&plain, &format!("key file {}", id.short()))?, id));
        }
    }
    Err(Error::WrongPassword { location: storage.location().to_string() })
}

/// A local copy of the unlocked master key, so that short commands run once per WAL segment skip the
/// argon2id derivation (~0.2 s): `<cache>/<repository id>/session-key`, mode 0600 in a 0700 directory,
/// written only for passwords stored on the host anyway (the caller decides), holding the master key
/// sealed under a key derived from the password by keyed BLAKE3 with a random salt. It is only honoured
/// while the key file it was unlocked with still exists, so `bunker key remove` and `key passwd` revoke
/// it. `BUNKER_KEY_CACHE=off` disables it. The cost: whoever can read that file can test passwords
/// against it fast, so it is only as strong as the password file beside it on the same host (see
/// DESIGN.md).
#[derive(Serialize, Deserialize)]
struct SessionKey {
    key_id: String,
    salt: String,
    data: String,
}

const SESSION_AAD: &[u8] = b"bunker/session-key/v1";
const SESSION_CONTEXT: &str = "bunker 2026-11 session key cache";

fn session_wrapping(password: &str, salt: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(SESSION_CONTEXT);
    h.update(&(salt.len() as u64).to_le_bytes());
    h.update(salt);
    h.update(password.as_bytes());
    *h.finalize().as_bytes()
}

fn session_cache_enabled() -> bool {
    std::env::var("BUNKER_KEY_CACHE").map(|v| v != "off").unwrap_or(true)
}

/// [`unlock`], through the session-key cache in `cache_dir` when there is one.
pub fn unlock_cached(
    storage: &Storage,
    password: &str,
    cache_dir: Option<&std::path::Path>,
) -> Result<(RepoKey, FileId)> {
    let Some(dir) = cache_dir.filter(|_| session_cache_enabled()) else { return unlock(storage, password) };
    let path = dir.join("session-key");
    if let Some((key, id)) = read_session(&path, password) {
        // The key file must still exist: removing it revokes every cached copy.
        if storage.exists(&key_path(&id)).unwrap_or(false) {
            return Ok((key, id));
        }
        let _ = std::fs::remove_file(&path);
    }
    let (key, id) = unlock(storage, password)?;
    if let Err(e) = write_session(dir, &path, password, &key, &id) {
        tracing::debug!("session key not cached: {e}");
    }
    Ok((key, id))
}

fn read_session(path: &std::path::Path, password: &str) -> Option<(RepoKey, FileId)> {
    let bytes = std::fs::read(path).ok()?;
    let s: SessionKey = serde_json::from_slice(&bytes).ok()?;
    let salt = hex::decode(&s.salt).ok()?;
    let sealed = hex::decode(&s.data).ok()?;
    let plain = open_with(&session_wrapping(password, &salt), &sealed, SESSION_AAD)?;
    Some((RepoKey::decode(&plain, "session key").ok()?, FileId::from_hex(&s.key_id).ok()?))
}

fn write_session(
    dir: &std::path::Path,
    path: &std::path::Path,
    password: &str,
    key: &RepoKey,
    id: &FileId,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // Also when it existed already, with looser bits (made by hand, or by an older bunker).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let salt: [u8; 16] = rand::random();
    let s = SessionKey {
        key_id: id.to_hex(),
        salt: hex::encode(salt),
        data: hex::encode(seal_with(&session_wrapping(password, &salt), &key.encode(), SESSION_AAD)),
    };
    // A fresh name, created exclusively and never through a symlink, so nothing planted there is reused.
    let tmp = dir.join(format!("session-key.{}", hex::encode(rand::random::<[u8; 8]>())));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(&s).expect("session key serialises"))?;
    drop(f);
    std::fs::rename(&tmp, path)
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

#[cfg(test)]
mod session_tests {
    use super::*;
    use crate::storage::{Location, Storage};

    #[test]
    fn session_cache_opens_only_with_the_password_and_a_live_key_file() {
        std::env::set_var("BUNKER_KDF_MEMORY_KIB", "1024");
        let repo = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let storage = Storage::create(&Location::Local(repo.path().to_path_buf())).unwrap();
        let master = MasterKey::generate();
        let id = add_key(&storage, &RepoKey::password_only(master.clone()), "right").unwrap();
        std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (m1, id1) = unlock_cached(&storage, "right", Some(cache.path())).unwrap();
        assert_eq!((m1.master.as_bytes(), id1), (master.as_bytes(), id));
        let file = cache.path().join("session-key");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(cache.path()).unwrap().permissions().mode() & 0o777, 0o700, "an existing dir");
        assert!(!std::fs::read_to_string(&file).unwrap().contains(&hex::encode(master.as_bytes())));
        // From the cache this time, and a wrong password still fails.
        assert_eq!(read_session(&file, "right").unwrap().0.master.as_bytes(), master.as_bytes());
        assert!(matches!(unlock_cached(&storage, "wrong", Some(cache.path())), Err(Error::WrongPassword { .. })));
        // Removing the key file revokes the cached copy.
        let other = add_key(&storage, &RepoKey::password_only(master.clone()), "other").unwrap();
        storage.delete(&key_path(&id)).unwrap();
        assert!(matches!(unlock_cached(&storage, "right", Some(cache.path())), Err(Error::WrongPassword { .. })));
        assert_eq!(unlock_cached(&storage, "other", Some(cache.path())).unwrap().1, other);
    }
}
