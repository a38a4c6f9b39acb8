//! Repository locks: `locks/exclusive` (prune, key changes) and `locks/shared-<random>` (backup, restore,
//! check). Each side writes its own lock first and then looks for the other, so of two racing processes
//! at least one sees the other and backs off. The exclusive lock is created only if absent
//! (`If-None-Match` on S3, a hard link locally), so two exclusive holders cannot both win.
//!
//! A lock is refreshed every [`REFRESH`]; one older than [`EXPIRY`], or held by a dead process on this
//! host (same boot and PID namespace, so a container's PIDs are never misread), is stale and ignored
//! (then removed by whoever finds it). Each lock carries a random token: a holder re-reads its lock before
//! committing or deleting anything ([`LockGuard::verify`]) and stops if it was lost or taken over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::hostname;
use crate::storage::Storage;

pub const REFRESH: Duration = Duration::from_secs(5 * 60);
pub const EXPIRY: Duration = Duration::from_secs(30 * 60);
const EXCLUSIVE_PATH: &str = "locks/exclusive";
/// Prefix of locks that only keep a second copy of a long-running process away (`locks/singleton-daemon`):
/// they conflict with nothing else, so the daemon's own backups and prunes can lock as usual.
const SINGLETON_PREFIX: &str = "locks/singleton-";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub time: chrono::DateTime<chrono::Utc>,
    pub exclusive: bool,
    pub host: String,
    pub pid: u32,
    pub operation: String,
    #[serde(default)]
    pub token: String,
    /// `/proc/sys/kernel/random/boot_id` and the PID namespace: only when both match ours does a dead
    /// PID prove the holder is gone.
    #[serde(default)]
    pub boot_id: String,
    #[serde(default)]
    pub pid_namespace: String,
    /// Set by a holder that could not delete its lock (append-only credentials: PUT and GET, no
    /// DELETE): the file stays, marked released, and counts as no lock at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

impl LockInfo {
    fn new(exclusive: bool, operation: &str) -> Self {
        LockInfo {
            time: chrono::Utc::now(),
            exclusive,
            host: hostname(),
            pid: std::process::id(),
            operation: operation.into(),
            token: hex::encode(rand::random::<[u8; 16]>()),
            boot_id: boot_id(),
            pid_namespace: pid_namespace(),
            released: false,
        }
    }

    /// Whether the lock holds nobody back: released, expired, or its holder is dead.
    pub fn is_stale(&self) -> bool {
        if self.released {
            return true;
        }
        let age = chrono::Utc::now().signed_duration_since(self.time);
        if age.to_std().map(|a| a > EXPIRY).unwrap_or(false) {
            return true;
        }
        if self.host != hostname() || self.boot_id.is_empty() || self.pid_namespace != pid_namespace() {
            return false;
        }
        // Same host: a different boot means the holder died with the machine.
        self.boot_id != boot_id() || !process_alive(self.pid)
    }

    fn describe(&self) -> String {
        format!(
            "{} (pid {} on {}, since {})",
            self.operation,
            self.pid,
            self.host,
            self.time.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
}

fn process_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A held lock, refreshed in the background and removed on drop.
pub struct LockGuard {
    storage: Storage,
    path: String,
    token: String,
    state: Arc<RefreshState>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

struct RefreshState {
    stop: AtomicBool,
    /// Set when a refresh found the lock gone or someone else's.
    lost: AtomicBool,
    last_refresh: std::sync::Mutex<Instant>,
}

impl LockGuard {
    /// Fails unless the lock is still ours and was refreshed recently enough that no one can have
    /// judged it stale. Call before making anything visible or deleting anything.
    pub fn verify(&self) -> Result<()> {
        let lost = |why: &str| Error::LockLost { path: self.path.clone(), why: why.to_string() };
        if self.state.lost.load(Ordering::SeqCst) {
            return Err(lost("another process removed or replaced it"));
        }
        if self.state.last_refresh.lock().expect("refresh time").elapsed() > EXPIRY / 2 {
            return Err(lost("it could not be refreshed in time"));
        }
        match read_lock(&self.storage, &self.path)? {
            Some(info) if info.token == self.token => Ok(()),
            Some(_) => Err(lost("another process replaced it")),
            None => Err(lost("another process removed it")),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.refresher.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        // Only remove the lock if it is still ours.
        match read_lock(&self.storage, &self.path) {
            Ok(Some(info)) if info.token != self.token => return,
            Ok(None) => return,
            _ => {}
        }
        if let Err(e) = release(&self.storage, &self.path) {
            tracing::warn!("could not remove lock {}: {e}", self.path);
        }
    }
}

/// Removes one of our locks; where this host may not delete (append-only credentials), overwrites it
/// with a released marker instead (a PUT), which every reader takes as no lock. A host with full
/// credentials removes the markers (`prune`, any exclusive lock, `unlock`).
fn release(storage: &Storage, path: &str) -> Result<()> {
    match storage.delete(path) {
        Err(e) if e.refuses_writes() => {
            let marker = LockInfo { released: true, token: String::new(), ..LockInfo::new(false, "released") };
            storage.write(path, serde_json::to_vec(&marker).expect("lock serialises").into())?;
            tracing::debug!("lock {path} marked released (this host may not delete)");
            Ok(())
        }
        other => other,
    }
}

/// Removes someone else's stale lock. Where this host may not delete, it is left: stale, it holds
/// nobody back, and a host with full credentials removes it.
fn remove_stale(storage: &Storage, path: &str) -> Result<()> {
    match storage.delete(path) {
        Err(e) if e.refuses_writes() => {
            tracing::debug!("stale lock {path} left in place (this host may not delete)");
            Ok(())
        }
        other => other,
    }
}

/// Every lock in the repository with its path; unreadable lock files are reported as stale ones.
pub fn list_locks(storage: &Storage) -> Result<Vec<(String, Option<LockInfo>)>> {
    let mut out = Vec::new();
    for obj in storage.list("locks")? {
        let info = match storage.read(&obj.path) {
            Ok(b) => serde_json::from_slice::<LockInfo>(&b).ok(),
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        out.push((obj.path, info));
    }
    Ok(out)
}

/// A reader that could not write its own shared lock still must not read under a live exclusive one (a
/// prune deleting what it reads): the holder's description, if there is one.
pub fn live_exclusive(storage: &Storage) -> Result<Option<String>> {
    Ok(read_lock(storage, EXCLUSIVE_PATH)?.filter(|i| !i.is_stale()).map(|i| i.describe()))
}

/// Removes stale locks (all locks with `all`); returns how many were removed.
pub fn remove_locks(storage: &Storage, all: bool) -> Result<usize> {
    let mut n = 0;
    for (path, info) in list_locks(storage)? {
        if all || info.as_ref().is_none_or(|i| i.is_stale()) {
            storage.delete(&path)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Takes a lock, retrying for up to `retry_for` while another process holds a conflicting one.
pub fn acquire(storage: &Storage, exclusive: bool, operation: &str, retry_for: Duration) -> Result<LockGuard> {
    let deadline = Instant::now() + retry_for;
    let mut delay = Duration::from_millis(200);
    loop {
        match try_acquire(storage, exclusive, operation)? {
            Ok(guard) => return Ok(guard),
            Err(holder) => {
                if Instant::now() + delay > deadline {
                    return Err(Error::Locked { mode: if exclusive { "" } else { " exclusively" }, holder });
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Takes the repository's one `locks/singleton-NAME` (e.g. `daemon`): refused while another live
/// process holds it, whatever the rest of the repository's locks. Stale holders are replaced as for the
/// exclusive lock.
pub fn acquire_singleton(storage: &Storage, name: &str, operation: &str) -> Result<LockGuard> {
    let info = LockInfo::new(true, operation);
    let bytes = serde_json::to_vec(&info).expect("lock serialises");
    let path = format!("{SINGLETON_PREFIX}{name}");
    if !create_exclusive(storage, &path, &bytes, &info.token)? {
        match read_lock(storage, &path)? {
            Some(other) if !other.is_stale() => {
                return Err(Error::Locked { mode: " as a singleton", holder: other.describe() });
            }
            _ => {
                tracing::info!("replacing stale lock {path}");
                let created = match storage.delete(&path) {
                    Ok(()) => create_exclusive(storage, &path, &bytes, &info.token)?,
                    // Append-only credentials: the stale lock cannot go, so it is overwritten; two
                    // processes doing so at once are told apart by the settle-and-reread below.
                    Err(e) if e.refuses_writes() => {
                        storage.write(&path, bytes.clone().into())?;
                        true
                    }
                    Err(e) => return Err(e),
                };
                let settled = created && {
                    std::thread::sleep(Duration::from_millis(500));
                    read_lock(storage, &path)?.is_some_and(|mine| mine.token == info.token)
                };
                if !settled {
                    let holder = read_lock(storage, &path)?.map(|o| o.describe()).unwrap_or_default();
                    return Err(Error::Locked { mode: " as a singleton", holder });
                }
            }
        }
    }
    Ok(start_refresher(storage.clone(), path, info))
}

/// One attempt: `Ok(Err(holder))` when a live conflicting lock exists.
fn try_acquire(storage: &Storage, exclusive: bool, operation: &str) -> Result<Result<LockGuard, String>> {
    let info = LockInfo::new(exclusive, operation);
    let bytes = serde_json::to_vec(&info).expect("lock serialises");
    let path = if exclusive {
        EXCLUSIVE_PATH.to_string()
    } else {
        format!("locks/shared-{}", hex::encode(rand::random::<[u8; 16]>()))
    };
    if exclusive {
        if !create_exclusive(storage, &path, &bytes, &info.token)? {
            match read_lock(storage, &path)? {
                Some(other) if !other.is_stale() => return Ok(Err(other.describe())),
                _ => {
                    // Stale or vanished meanwhile: clear it and try once more. Two processes breaking the
                    // same stale lock at once both get here; the settle-and-reread below lets only the
                    // one whose lock survived go on.
                    storage.delete(&path)?;
                    if !create_exclusive(storage, &path, &bytes, &info.token)? {
                        let holder = read_lock(storage, &path)?.map(|o| o.describe()).unwrap_or_default();
                        return Ok(Err(holder));
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    match read_lock(storage, &path)? {
                        Some(mine) if mine.token == info.token => {}
                        other => return Ok(Err(other.map(|o| o.describe()).unwrap_or_default())),
                    }
                }
            }
        }
    } else {
        storage.write(&path, bytes.clone().into())?;
    }
    // Look for a conflicting live lock written by someone else: any other for an exclusive lock, only
    // the exclusive one for a shared lock (so shared lockers read one file, however many released
    // markers an append-only host has left).
    for obj in storage.list("locks")? {
        let other_path = obj.path;
        let conflicts = exclusive || other_path == EXCLUSIVE_PATH;
        if other_path == path || other_path.starts_with(SINGLETON_PREFIX) || !conflicts {
            continue;
        }
        let other = match storage.read(&other_path) {
            Ok(b) => serde_json::from_slice::<LockInfo>(&b).ok(),
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        match other {
            Some(o) if !o.is_stale() => {
                release(storage, &path)?;
                return Ok(Err(o.describe()));
            }
            _ => {
                tracing::info!("removing stale lock {other_path}");
                remove_stale(storage, &other_path)?;
            }
        }
    }
    Ok(Ok(start_refresher(storage.clone(), path, info)))
}

/// Creates the exclusive lock if absent. A retried create whose first attempt did land (its response was
/// lost) finds our own lock there: that is success, not a conflict.
fn create_exclusive(storage: &Storage, path: &str, bytes: &[u8], token: &str) -> Result<bool> {
    if storage.create_new(path, bytes.to_vec().into())? {
        return Ok(true);
    }
    Ok(read_lock(storage, path)?.is_some_and(|l| l.token == token))
}

fn read_lock(storage: &Storage, path: &str) -> Result<Option<LockInfo>> {
    match storage.read(path) {
        Ok(b) => Ok(serde_json::from_slice(&b).ok()),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn start_refresher(storage: Storage, path: String, mut info: LockInfo) -> LockGuard {
    let state = Arc::new(RefreshState {
        stop: AtomicBool::new(false),
        lost: AtomicBool::new(false),
        last_refresh: std::sync::Mutex::new(Instant::now()),
    });
    let token = info.token.clone();
    let refresher = {
        let (storage, path, state) = (storage.clone(), path.clone(), state.clone());
        std::thread::spawn(move || loop {
            std::thread::park_timeout(REFRESH);
            if state.stop.load(Ordering::SeqCst) {
                return;
            }
            match read_lock(&storage, &path) {
                Ok(Some(current)) if current.token == info.token => {}
                Ok(_) => {
                    tracing::error!("lock {path} was removed or taken over by another process");
                    state.lost.store(true, Ordering::SeqCst);
                    return;
                }
                Err(e) => {
                    tracing::warn!("could not read lock {path} to refresh it: {e}");
                    continue;
                }
            }
            info.time = chrono::Utc::now();
            let bytes = serde_json::to_vec(&info).expect("lock serialises");
            match storage.write(&path, bytes.into()) {
                Ok(()) => *state.last_refresh.lock().expect("refresh time") = Instant::now(),
                Err(e) => tracing::warn!("could not refresh lock {path}: {e}"),
            }
        })
    };
    LockGuard { storage, path, token, state, refresher: Some(refresher) }
}
