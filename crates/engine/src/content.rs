//! Recipients repositories: content sealed for age recipients, so that a backup host can write it
//! but never read it back.
//!
//! In such a repository the master key (opened by any password slot, a *write key*) still seals the
//! metadata (index, snapshots, catalog, pack headers) and keys blob IDs and the chunker: a backup
//! deduplicates as before. Content (every blob in a pack, every named object such as archived WAL)
//! is sealed instead with a **content key**: 32 random bytes made by the process that writes, stored
//! once as `content-keys/<id>` encrypted for the repository's age recipients (the `age` format), and
//! forgotten when the process ends. A sealed content buffer is `content key id (32) || seal(key, …)`.
//! Reading content needs an age identity matching one recipient: it opens the content key files.
//! FORMAT.md ("Recipients repositories") is the contract; DESIGN.md says what a write-only host sees.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use age::secrecy::SecretString;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;
use rand::RngCore;

use crate::crypto::{open_with_aead, seal_with_aead, ContentSealer, SEAL_OVERHEAD};
use crate::error::{Error, Result};
use crate::id::FileId;
use crate::storage::Storage;

/// Where content key files live.
pub const CONTENT_KEY_DIR: &str = "content-keys";
/// Bytes a content seal adds before the sealed buffer: the content key's ID.
pub const KEY_ID_LEN: usize = 32;

pub fn content_key_path(id: &FileId) -> String {
    format!("{CONTENT_KEY_DIR}/{id}")
}

/// One parsed recipient, and the text it came from (kept in key slots).
pub struct Recipient {
    pub text: String,
    inner: Box<dyn age::Recipient + Send + Sync>,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipient({})", self.text)
    }
}

/// Parses an age recipient (`age1…`) or an SSH public key (`ssh-ed25519 …`, `ssh-rsa …`).
pub fn parse_recipient(text: &str) -> Result<Recipient> {
    let text = text.trim();
    let shown: String = text.chars().take(24).collect();
    let inner: Box<dyn age::Recipient + Send + Sync> = if text.starts_with("age1") {
        Box::new(text.parse::<age::x25519::Recipient>().map_err(|e| {
            Error::invalid(
                "recipient",
                format!("{shown}…: not a valid age recipient ({e}); `age-keygen -y KEYFILE` prints one"),
            )
        })?)
    } else if text.starts_with("ssh-") {
        Box::new(text.parse::<age::ssh::Recipient>().map_err(|e| {
            Error::invalid(
                "recipient",
                format!("{shown}…: not an SSH public key age can use ({e:?}); use ssh-ed25519 or ssh-rsa"),
            )
        })?)
    } else {
        return Err(Error::invalid(
            "recipient",
            format!("{shown:?} is neither an age recipient (age1…) nor an SSH public key (ssh-ed25519 …, ssh-rsa …)"),
        ));
    };
    Ok(Recipient { text: text.to_string(), inner })
}

/// The recipients of a recipients file: one per line, `#` comments and blank lines skipped (age's format).
pub fn read_recipients_file(path: &Path) -> Result<Vec<Recipient>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let list = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(parse_recipient)
        .collect::<Result<Vec<_>>>()?;
    if list.is_empty() {
        return Err(Error::invalid("recipients file", format!("{} holds no recipient", path.display())));
    }
    Ok(list)
}

/// Encrypts `plaintext` for every recipient (binary age format).
pub fn encrypt_for(recipients: &[Recipient], plaintext: &[u8]) -> Result<Vec<u8>> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r.inner.as_ref() as &dyn age::Recipient))
        .map_err(|e| Error::invalid("recipients", e.to_string()))?;
    let mut out = Vec::with_capacity(plaintext.len() + 256 * recipients.len());
    let mut w = encryptor.wrap_output(&mut out).map_err(|e| Error::io("age", e))?;
    w.write_all(plaintext).map_err(|e| Error::io("age", e))?;
    w.finish().map_err(|e| Error::io("age", e))?;
    Ok(out)
}

/// The age identities of one identity file.
pub struct Identities {
    /// Where they came from, for messages.
    pub source: String,
    list: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({}, {} keys)", self.source, self.list.len())
    }
}

impl Identities {
    /// Decrypts an age file with these identities. `what` names it in errors.
    pub fn decrypt(&self, ciphertext: &[u8], what: &str) -> Result<Vec<u8>> {
        let decryptor = age::Decryptor::new_buffered(ciphertext)
            .map_err(|e| Error::Corrupt(format!("{what}: not an age file ({e})")))?;
        let reader = decryptor.decrypt(self.list.iter().map(|i| i.as_ref() as &dyn age::Identity));
        let mut reader = match reader {
            Ok(r) => r,
            Err(age::DecryptError::NoMatchingKeys) => {
                return Err(Error::Identity(format!(
                    "the identity in {} is not one of the recipients {what} is encrypted for: use the identity file whose public key was given to `bunker init --recipient`",
                    self.source
                )))
            }
            Err(e) => return Err(Error::Corrupt(format!("{what}: {e}"))),
        };
        let mut out = Vec::new();
        reader.read_to_end(&mut out).map_err(|e| Error::Corrupt(format!("{what}: {e}")))?;
        Ok(out)
    }
}

/// Whether an identity file is itself passphrase-protected (an age file, binary or armored) and so needs
/// a passphrase to load.
pub fn is_passphrase_protected(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else { return false };
    is_age_file(&bytes) || ssh_key_is_encrypted(&bytes)
}

fn is_age_file(bytes: &[u8]) -> bool {
    bytes.starts_with(b"age-encryption.org/") || bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
}

fn is_ssh_key(bytes: &[u8]) -> bool {
    bytes.starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----") || bytes.starts_with(b"-----BEGIN RSA PRIVATE KEY-----")
}

fn ssh_key_is_encrypted(bytes: &[u8]) -> bool {
    is_ssh_key(bytes) && matches!(age::ssh::Identity::from_buffer(bytes, None), Ok(age::ssh::Identity::Encrypted(_)))
}

/// Loads an identity file: age's (`AGE-SECRET-KEY-1…` lines, as `age-keygen` writes), the same
/// protected by a passphrase (`age -p`, binary or armored), or an SSH private key (OpenSSH or PEM RSA,
/// encrypted or not). Every failure is one line naming the file ([`Error::Identity`], exit 12).
pub fn load_identities(path: &Path, passphrase: Option<&str>) -> Result<Identities> {
    let source = path.display().to_string();
    let fail = |why: String| Error::Identity(format!("identity file {source}: {why}"));
    let bytes = std::fs::read(path)
        .map_err(|e| fail(format!("cannot read it ({e}); check --identity / BUNKER_IDENTITY_FILE")))?;
    let need_passphrase = || {
        fail("it is passphrase-protected: set BUNKER_IDENTITY_PASSPHRASE (or BUNKER_IDENTITY_PASSPHRASE_FILE), or run on a terminal to be asked".into())
    };
    let list: Vec<Box<dyn age::Identity + Send + Sync>> = if is_age_file(&bytes) {
        let Some(pass) = passphrase else { return Err(need_passphrase()) };
        let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(&bytes[..]))
            .map_err(|e| fail(format!("damaged ({e})")))?;
        if !decryptor.is_scrypt() {
            return Err(fail("it is encrypted for a recipient, not with a passphrase: decrypt it first".into()));
        }
        let id = age::scrypt::Identity::new(SecretString::from(pass.to_string()));
        let mut reader = decryptor.decrypt(std::iter::once(&id as &dyn age::Identity)).map_err(|e| match e {
            age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed
            | age::DecryptError::NoMatchingKeys => fail("wrong passphrase".into()),
            other => fail(format!("cannot decrypt it ({other})")),
        })?;
        let mut plain = Vec::new();
        reader.read_to_end(&mut plain).map_err(|e| fail(format!("damaged ({e})")))?;
        parse_identity_lines(&plain).map_err(fail)?
    } else if is_ssh_key(&bytes) {
        match age::ssh::Identity::from_buffer(&bytes[..], Some(source.clone())) {
            Ok(age::ssh::Identity::Unencrypted(key)) => vec![Box::new(age::ssh::Identity::from(key))],
            Ok(age::ssh::Identity::Encrypted(key)) => {
                let Some(pass) = passphrase else { return Err(need_passphrase()) };
                let key =
                    key.decrypt(SecretString::from(pass.to_string())).map_err(|_| fail("wrong passphrase".into()))?;
                vec![Box::new(age::ssh::Identity::from(key))]
            }
            Ok(age::ssh::Identity::Unsupported(_)) => {
                return Err(fail("an SSH key of a kind age cannot use (use ssh-ed25519 or ssh-rsa)".into()))
            }
            Err(e) => return Err(fail(format!("damaged SSH private key ({e})"))),
        }
    } else {
        parse_identity_lines(&bytes).map_err(fail)?
    };
    Ok(Identities { source, list })
}

fn parse_identity_lines(bytes: &[u8]) -> std::result::Result<Vec<Box<dyn age::Identity + Send + Sync>>, String> {
    let mut out: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
    for (n, line) in bytes.lines().enumerate() {
        let line = line.map_err(|_| "not text: damaged, or not an identity file".to_string())?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.parse::<age::x25519::Identity>() {
            Ok(id) => out.push(Box::new(id)),
            // Never echo the line: it may be a damaged secret key.
            Err(_) => return Err(format!("line {} is not an age identity (AGE-SECRET-KEY-1…): damaged?", n + 1)),
        }
    }
    if out.is_empty() {
        return Err("it holds no identity (expected AGE-SECRET-KEY-1… lines, as age-keygen writes)".into());
    }
    Ok(out)
}

/// The content keys of a recipients repository, as one process holds them: the one it writes with
/// (made on first use, its file written before anything sealed with it), and those it opened with an
/// identity. Shared by every clone of the repository's [`crate::crypto::Crypto`].
pub struct Content {
    storage: Storage,
    recipients: Vec<Recipient>,
    identities: Option<Arc<Identities>>,
    opened: Mutex<HashMap<FileId, Arc<XChaCha20Poly1305>>>,
    writing: Mutex<Option<(FileId, Arc<XChaCha20Poly1305>)>>,
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Content({} recipients, identity: {})", self.recipients.len(), self.identities.is_some())
    }
}

impl Content {
    pub fn new(storage: Storage, recipients: Vec<Recipient>, identities: Option<Arc<Identities>>) -> Self {
        Content { storage, recipients, identities, opened: Default::default(), writing: Default::default() }
    }

    pub fn recipients(&self) -> &[Recipient] {
        &self.recipients
    }

    /// This process's content key, made (and its file written, encrypted for the recipients) on first use.
    fn writer(&self) -> Result<(FileId, Arc<XChaCha20Poly1305>)> {
        let mut slot = self.writing.lock().expect("content writer");
        if let Some((id, aead)) = slot.as_ref() {
            return Ok((*id, aead.clone()));
        }
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        // Stored before anything is sealed with it: a blob is never written that no key file opens.
        let file = encrypt_for(&self.recipients, &key)?;
        let id = FileId::of(&file);
        self.storage.write(&content_key_path(&id), file.into())?;
        let aead = Arc::new(XChaCha20Poly1305::new((&key).into()));
        *slot = Some((id, aead.clone()));
        Ok((id, aead))
    }
}

impl ContentSealer for Content {
    fn has_identity(&self) -> bool {
        self.identities.is_some()
    }

    /// Seals content: `content key id || seal(content key, plaintext, aad)`.
    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let (id, aead) = self.writer()?;
        let mut out = Vec::with_capacity(KEY_ID_LEN + plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&seal_with_aead(&aead, plaintext, aad));
        Ok(out)
    }

    /// Opens content sealed by [`ContentSealer::seal`], by this process or (with an identity) any other.
    fn open(&self, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>> {
        if sealed.len() < KEY_ID_LEN + SEAL_OVERHEAD {
            return Err(Error::Corrupt(format!("{what}: {} bytes is too short to be sealed content", sealed.len())));
        }
        let (head, rest) = sealed.split_at(KEY_ID_LEN);
        let id = FileId(head.try_into().expect("32 bytes"));
        let aead = self.key(&id, what)?;
        open_with_aead(&aead, rest, aad, what)
    }
}

impl Content {
    /// The content key `id`: this process's own, one opened already, or its file opened with the identity.
    fn key(&self, id: &FileId, what: &str) -> Result<Arc<XChaCha20Poly1305>> {
        if let Some((own, aead)) = self.writing.lock().expect("content writer").as_ref() {
            if own == id {
                return Ok(aead.clone());
            }
        }
        if let Some(aead) = self.opened.lock().expect("content keys").get(id) {
            return Ok(aead.clone());
        }
        let Some(identities) = &self.identities else {
            return Err(Error::NeedsIdentity { what: what.to_string() });
        };
        let path = content_key_path(id);
        let file = match self.storage.read(&path) {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => {
                return Err(Error::Corrupt(format!(
                    "{what}: its content key {path} is missing (restore content-keys/ from a copy of the repository)"
                )))
            }
            Err(e) => return Err(e),
        };
        if FileId::of(&file) != *id {
            return Err(Error::Corrupt(format!("{what}: its content key {path} does not match its name")));
        }
        let key = identities.decrypt(&file, &path)?;
        let key: [u8; 32] = key.try_into().map_err(|_| Error::Corrupt(format!("{path}: a content key is 32 bytes")))?;
        let aead = Arc::new(XChaCha20Poly1305::new((&key).into()));
        self.opened.lock().expect("content keys").insert(*id, aead.clone());
        Ok(aead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(dir: &Path) -> Storage {
        Storage::create(&crate::storage::Location::parse(dir.to_str().unwrap()).unwrap()).unwrap()
    }

    fn identity_file(dir: &Path) -> (std::path::PathBuf, String) {
        let id = age::x25519::Identity::generate();
        let path = dir.join("identity.txt");
        use age::secrecy::ExposeSecret;
        std::fs::write(&path, format!("# created: test\n{}\n", id.to_string().expose_secret())).unwrap();
        (path, id.to_public().to_string())
    }

    #[test]
    fn content_written_by_one_process_opens_only_with_the_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let st = storage(&tmp.path().join("repo"));
        let (id_path, public) = identity_file(tmp.path());
        let writer = Content::new(st.clone(), vec![parse_recipient(&public).unwrap()], None);
        let sealed = writer.seal(b"dump bytes", b"aad").unwrap();
        // The writer reads back what it wrote while it runs…
        assert_eq!(writer.open(&sealed, b"aad", "t").unwrap(), b"dump bytes");
        // …but another process with the same write key and no identity cannot.
        let later = Content::new(st.clone(), vec![parse_recipient(&public).unwrap()], None);
        assert!(matches!(later.open(&sealed, b"aad", "t"), Err(Error::NeedsIdentity { .. })));
        // With the identity it can, and the associated data still binds.
        let ids = Arc::new(load_identities(&id_path, None).unwrap());
        let reader = Content::new(st.clone(), vec![], Some(ids));
        assert_eq!(reader.open(&sealed, b"aad", "t").unwrap(), b"dump bytes");
        assert!(matches!(reader.open(&sealed, b"other", "t"), Err(Error::Corrupt(_))));
        // One content key file per writing process.
        assert_eq!(st.list(CONTENT_KEY_DIR).unwrap().len(), 1);
        writer.seal(b"more", b"aad").unwrap();
        assert_eq!(st.list(CONTENT_KEY_DIR).unwrap().len(), 1);
    }

    #[test]
    fn a_wrong_or_damaged_identity_is_one_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let st = storage(&tmp.path().join("repo"));
        let (_, public) = identity_file(tmp.path());
        let sealed = Content::new(st.clone(), vec![parse_recipient(&public).unwrap()], None).seal(b"x", b"a").unwrap();
        let other = tmp.path().join("other.txt");
        use age::secrecy::ExposeSecret;
        std::fs::write(&other, age::x25519::Identity::generate().to_string().expose_secret()).unwrap();
        let wrong = Content::new(st.clone(), vec![], Some(Arc::new(load_identities(&other, None).unwrap())));
        let err = wrong.open(&sealed, b"a", "t").unwrap_err();
        assert!(matches!(err, Error::Identity(_)), "{err}");
        assert!(err.to_string().contains("not one of the recipients"), "{err}");

        let damaged = tmp.path().join("damaged.txt");
        std::fs::write(&damaged, "AGE-SECRET-KEY-1NOTAKEY\n").unwrap();
        let err = load_identities(&damaged, None).unwrap_err();
        assert!(matches!(err, Error::Identity(_)) && err.to_string().contains("line 1"), "{err}");
        assert!(!err.to_string().contains("NOTAKEY"), "a secret line is never echoed: {err}");
        let err = load_identities(&tmp.path().join("missing"), None).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }

    #[test]
    fn a_passphrase_protected_identity_needs_its_passphrase() {
        let tmp = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        use age::secrecy::ExposeSecret;
        let plain = format!("{}\n", id.to_string().expose_secret());
        let enc = age::Encryptor::with_user_passphrase(SecretString::from("correct horse".to_string()));
        let mut bytes = Vec::new();
        let mut w = enc.wrap_output(&mut bytes).unwrap();
        w.write_all(plain.as_bytes()).unwrap();
        w.finish().unwrap();
        let path = tmp.path().join("identity.age");
        std::fs::write(&path, &bytes).unwrap();
        assert!(is_passphrase_protected(&path));
        let err = load_identities(&path, None).unwrap_err();
        assert!(err.to_string().contains("BUNKER_IDENTITY_PASSPHRASE"), "{err}");
        let err = load_identities(&path, Some("wrong")).unwrap_err();
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        let ids = load_identities(&path, Some("correct horse")).unwrap();
        let sealed = encrypt_for(&[parse_recipient(&id.to_public().to_string()).unwrap()], b"k").unwrap();
        assert_eq!(ids.decrypt(&sealed, "t").unwrap(), b"k");
    }

    #[test]
    fn recipients_are_checked() {
        assert!(parse_recipient("age1nope").is_err());
        assert!(parse_recipient("hello").unwrap_err().to_string().contains("neither"));
        let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";
        assert_eq!(parse_recipient(ssh).unwrap().text, ssh);
    }
}

/// A recipients repository end to end: what a write-only host can and cannot do, and what an identity opens.
#[cfg(test)]
mod repository_tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::InitOptions;
    use crate::restorer::Restorer;
    use crate::snapshot::Root;
    use crate::storage::Location;
    use crate::Repository;

    fn setup(dir: &Path) -> (Repository, std::path::PathBuf) {
        std::env::set_var("BUNKER_KDF_MEMORY_KIB", "1024");
        std::env::set_var("BUNKER_CACHE_DIR", "off");
        let id = age::x25519::Identity::generate();
        let id_path = dir.join("identity.txt");
        use age::secrecy::ExposeSecret;
        std::fs::write(&id_path, id.to_string().expose_secret()).unwrap();
        let storage = Storage::create(&Location::Local(dir.join("repo"))).unwrap();
        let recipients = vec![parse_recipient(&id.to_public().to_string()).unwrap()];
        let repo = Repository::init_for(storage, "write-pw", &recipients, &InitOptions::default()).unwrap();
        (repo, id_path)
    }

    fn reopen(dir: &Path, identity: Option<&Path>) -> Repository {
        let storage = Storage::open(&Location::Local(dir.join("repo"))).unwrap();
        let config = Repository::read_config(&storage).unwrap();
        let ids = identity.map(|p| Arc::new(load_identities(p, None).unwrap()));
        Repository::open_read_with(storage, config, "write-pw", false, ids).unwrap()
    }

    fn dump(repo: &Repository, id: &crate::FileId) -> crate::Result<Vec<u8>> {
        let snap = repo.load_snapshot(id)?;
        let (index, _) = repo.load_index()?;
        let Root::Stream { content, .. } = &snap.root else { panic!("a stream") };
        let mut out = Vec::new();
        Restorer::new(repo, &index).dump(content, &mut out)?;
        Ok(out)
    }

    #[test]
    fn a_write_only_host_backs_up_with_dedup_but_cannot_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, id_path) = setup(tmp.path());
        assert!(!repo.reads_content());
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let first = crate::testing::stream(&repo, "db", &data);

        // Another run of the same host: the key it wrote with is gone, the data is not readable…
        let later = reopen(tmp.path(), None);
        let snap = later.load_snapshot(&first).unwrap();
        assert_eq!(snap.name, "db", "metadata stays readable");
        let err = dump(&later, &first).unwrap_err();
        assert!(matches!(err, Error::NeedsIdentity { .. }), "{err}");
        assert!(err.to_string().contains("--identity"), "{err}");
        // …the raw pack bytes do not open with the write key either…
        let (index, _) = later.load_index().unwrap();
        let chunk = match &snap.root {
            Root::Stream { content: crate::tree::Content::Chunks(ids), .. } => ids[0],
            _ => panic!("chunks"),
        };
        let loc = index.get(&chunk).unwrap();
        let sealed = later
            .storage()
            .read_range(&crate::pack::pack_path(&loc.pack), loc.blob.offset as u64, loc.blob.length as u64)
            .unwrap();
        assert!(
            later.crypto().open(&sealed[KEY_ID_LEN..], &chunk.0, "blob").is_err(),
            "the master key opens no content"
        );
        assert!(later.crypto().open(&sealed, &chunk.0, "blob").is_err());

        // …but it still deduplicates: a second backup of the same data stores (almost) nothing.
        let before = stored_bytes(tmp.path());
        let second = crate::testing::stream(&later, "db", &data);
        let added = stored_bytes(tmp.path()) - before;
        assert!(added * 100 < data.len() as u64, "second backup added {added} bytes");

        // With the identity, every snapshot reads back byte for byte.
        let reader = reopen(tmp.path(), Some(&id_path));
        assert!(reader.reads_content());
        assert_eq!(dump(&reader, &first).unwrap(), data);
        assert_eq!(dump(&reader, &second).unwrap(), data);
        // An identity alone opens the repository (the offline restore host has no password).
        let storage = Storage::open(&Location::Local(tmp.path().join("repo"))).unwrap();
        let config = Repository::read_config(&storage).unwrap();
        let by_id = Repository::open_by_identity(storage, config, Arc::new(load_identities(&id_path, None).unwrap()))
            .unwrap()
            .expect("a recipients repository");
        assert_eq!(dump(&by_id, &first).unwrap(), data);
    }

    #[test]
    fn objects_are_content_and_a_wrong_identity_is_refused_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, _) = setup(tmp.path());
        repo.put_object("wal", "db/000000010000000000000001", b"wal bytes").unwrap();
        assert_eq!(repo.get_object("wal", "db/000000010000000000000001").unwrap().unwrap(), b"wal bytes");
        let later = reopen(tmp.path(), None);
        let err = later.get_object("wal", "db/000000010000000000000001").unwrap_err();
        assert!(matches!(err, Error::NeedsIdentity { .. }), "{err}");

        let other = tmp.path().join("other.txt");
        use age::secrecy::ExposeSecret;
        std::fs::write(&other, age::x25519::Identity::generate().to_string().expose_secret()).unwrap();
        let storage = Storage::open(&Location::Local(tmp.path().join("repo"))).unwrap();
        let config = Repository::read_config(&storage).unwrap();
        let ids = Some(Arc::new(load_identities(&other, None).unwrap()));
        let err = Repository::open_read_with(storage, config, "write-pw", false, ids).err().unwrap();
        assert!(matches!(err, Error::Identity(_)), "{err}");
    }

    #[test]
    fn a_secondary_of_a_recipients_repository_opens_with_the_same_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, id_path) = setup(tmp.path());
        let data = b"rows of a dump\n".repeat(5000);
        let snap = crate::testing::stream(&repo, "db", &data);
        repo.put_object("wal", "db/000000010000000000000001", b"wal bytes").unwrap();
        let ids = Arc::new(load_identities(&id_path, None).unwrap());
        let src = reopen(tmp.path(), Some(&id_path));
        let dst_storage = Storage::create(&Location::Local(tmp.path().join("secondary"))).unwrap();
        let dst = crate::copy::create_secondary(&src, dst_storage, "offsite-pw").unwrap();
        assert_eq!(dst.recipients(), src.recipients(), "the secondary seals for the same recipients");
        let lock = crate::lock::acquire(dst.storage(), false, "test", std::time::Duration::ZERO).unwrap();
        crate::copy::copy(&src, &dst, &lock, None).unwrap();
        drop(lock);
        // Without the identity the copy cannot verify what it carries.
        let blind = reopen(tmp.path(), None);
        let err = crate::copy::copy(
            &blind,
            &dst,
            &crate::lock::acquire(dst.storage(), false, "t", std::time::Duration::ZERO).unwrap(),
            None,
        );
        assert!(err.is_ok(), "nothing left to copy needs no identity: {err:?}");
        // The secondary stands alone: its own content-keys and identity slot, opened by the identity only.
        let storage = Storage::open(&Location::Local(tmp.path().join("secondary"))).unwrap();
        let config = Repository::read_config(&storage).unwrap();
        let far = Repository::open_by_identity(storage, config, ids).unwrap().expect("an identity slot was copied");
        assert_eq!(dump(&far, &snap).unwrap(), data);
        assert_eq!(far.get_object("wal", "db/000000010000000000000001").unwrap().unwrap(), b"wal bytes");
    }

    #[test]
    fn a_password_repositorys_history_moves_into_a_recipients_secondary_resealed() {
        let tmp = tempfile::tempdir().unwrap();
        let src = crate::testing::init(&tmp.path().join("old"));
        let data = b"an old dump, sealed with the password's key\n".repeat(20_000);
        let snap = crate::testing::stream(&src, "db", &data);
        src.put_object("wal", "db/000000010000000000000001", b"old wal").unwrap();
        let id = age::x25519::Identity::generate();
        let id_path = tmp.path().join("identity.txt");
        use age::secrecy::ExposeSecret;
        std::fs::write(&id_path, id.to_string().expose_secret()).unwrap();
        let recipients = vec![parse_recipient(&id.to_public().to_string()).unwrap()];
        let storage = Storage::create(&Location::Local(tmp.path().join("new"))).unwrap();
        let dst = crate::copy::create_secondary_for(&src, storage, "backup-host", &recipients, None).unwrap();
        let lock = crate::lock::acquire(dst.storage(), false, "test", std::time::Duration::ZERO).unwrap();
        let report = crate::copy::copy(&src, &dst, &lock, None).unwrap();
        assert_eq!((report.snapshots, report.objects), (1, 1), "{report:?}");
        // Again: nothing left to copy (blob IDs are the same on both sides).
        assert!(crate::copy::plan(&src, Some(&dst), None).unwrap().is_empty());
        drop(lock);

        let open = |identity: Option<&Path>| {
            let storage = Storage::open(&Location::Local(tmp.path().join("new"))).unwrap();
            let config = Repository::read_config(&storage).unwrap();
            let ids = identity.map(|p| Arc::new(load_identities(p, None).unwrap()));
            Repository::open_read_with(storage, config, "backup-host", false, ids).unwrap()
        };
        // The write key of the new repository reads none of the old history: it was sealed again.
        let blind = open(None);
        assert!(matches!(dump(&blind, &snap), Err(Error::NeedsIdentity { .. })));
        assert!(matches!(blind.get_object("wal", "db/000000010000000000000001"), Err(Error::NeedsIdentity { .. })));
        let reader = open(Some(&id_path));
        assert_eq!(dump(&reader, &snap).unwrap(), data);
        assert_eq!(reader.get_object("wal", "db/000000010000000000000001").unwrap().unwrap(), b"old wal");
        // A recipients repository never copies back into a password one.
        let back = Storage::create(&Location::Local(tmp.path().join("back"))).unwrap();
        let plain = crate::copy::create_secondary(&reader, back, "x").unwrap();
        assert_eq!(plain.recipients(), reader.recipients(), "its secondaries keep its recipients");
    }

    fn stored_bytes(dir: &Path) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| {
                            if e.path().is_dir() {
                                walk(&e.path())
                            } else {
                                e.metadata().map(|m| m.len()).unwrap_or(0)
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&dir.join("repo").join("data"))
    }
}
