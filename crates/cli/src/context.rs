//! What every verb needs: the repository location, the password, the repository, its lock.

use std::io::{IsTerminal, Read};

use anyhow::{bail, Context as _, Result};
use bunker_engine::content::{is_passphrase_protected, load_identities, Identities};
use bunker_engine::lock::{acquire, LockGuard};
use bunker_engine::repository::DamageLog;
use bunker_engine::storage::{Location, Storage};
use bunker_engine::Repository;

use crate::cli::Global;

pub struct Context {
    pub global: Global,
    config: std::sync::OnceLock<Option<bunker_config::LoadedConfig>>,
    /// The age identity of `--identity` / `BUNKER_IDENTITY_FILE`, loaded once.
    identity: std::sync::OnceLock<std::sync::Arc<Identities>>,
    /// The damage logs of the repositories this command opened: a command that completed around a
    /// damaged file exits 3 ("done, with problems").
    damage: std::sync::Mutex<Vec<DamageLog>>,
}

impl Context {
    pub fn new(global: Global) -> Self {
        Context { global, config: std::sync::OnceLock::new(), identity: Default::default(), damage: Default::default() }
    }

    /// The damaged repository files this command skipped, each once.
    /// (A command made of several runs, `restore --point`, opens the repository once per run.)
    pub fn damaged(&self) -> Vec<bunker_engine::repository::Damaged> {
        let mut all: Vec<_> = self.damage.lock().expect("damage logs").iter().flat_map(|d| d.list()).collect();
        all.sort_by(|a, b| a.path.cmp(&b.path));
        all.dedup_by(|a, b| a.path == b.path);
        all
    }

    /// The stack file, if there is one (`--config`, `$BUNKER_CONFIG`, `./bunker.toml`).
    pub fn config(&self) -> Result<Option<&bunker_config::LoadedConfig>> {
        if self.config.get().is_none() {
            let loaded = bunker_config::Config::discover(self.global.config.as_deref())?;
            let _ = self.config.set(loaded);
        }
        Ok(self.config.get().expect("just set").as_ref())
    }

    /// `--repo` / `$BUNKER_REPO`, else the stack file's `[repository] url`.
    pub fn location(&self) -> Result<Location> {
        if let Some(spec) = &self.global.repo {
            return Ok(Location::parse(spec)?);
        }
        match self.config()?.and_then(|c| c.config.repository.as_ref()) {
            Some(repo) => Ok(Location::parse(&repo.url)?),
            None => bail!(bunker_engine::Error::NoRepository { location: "(none given)".into() }),
        }
    }

    /// The repository password: `$BUNKER_PASSWORD`, `$BUNKER_PASSWORD_FILE`, the stack file's
    /// `password` / `password_file`, else a prompt.
    pub fn repository_password(&self, prompt: &str, confirm: bool) -> Result<String> {
        Ok(self.stored_or_given_password(prompt, confirm)?.0)
    }

    /// The password, and whether it is stored on this host anyway (a password file, the stack file): only
    /// then may the session-key cache keep a fast-to-test copy of the key beside it.
    fn stored_or_given_password(&self, prompt: &str, confirm: bool) -> Result<(String, bool)> {
        if std::env::var_os("BUNKER_PASSWORD").is_none() && std::env::var_os("BUNKER_PASSWORD_FILE").is_none() {
            if let Some(loaded) = self.config()? {
                if let Some(repo) = loaded.config.repository.as_ref() {
                    if let Some(secret) = &repo.password {
                        // Written into the stack file, or an environment variable it names.
                        let literal =
                            std::fs::read_to_string(&loaded.path).map(|t| t.contains(secret.expose())).unwrap_or(false);
                        return Ok((secret.expose().to_string(), literal));
                    }
                    if let Some(file) = &repo.password_file {
                        let text = std::fs::read_to_string(file)
                            .with_context(|| format!("cannot read password_file {}", file.display()))?;
                        return Ok((text.trim_end_matches(['\n', '\r']).to_string(), true));
                    }
                }
            }
        }
        let stored =
            std::env::var_os("BUNKER_PASSWORD").is_none() && std::env::var_os("BUNKER_PASSWORD_FILE").is_some();
        Ok((password("BUNKER_PASSWORD", "BUNKER_PASSWORD_FILE", prompt, confirm)?, stored))
    }

    pub fn storage(&self) -> Result<Storage> {
        Ok(Storage::open(&self.location()?)?)
    }

    pub fn open(&self) -> Result<Repository> {
        Ok(self.open_keeping_password()?.0)
    }

    /// Opens the repository and hands back the password that opened it, for a process that starts others
    /// (the daemon's jobs) which must not ask again.
    pub fn open_keeping_password(&self) -> Result<(Repository, String)> {
        let storage = self.storage()?;
        // Refuse a missing repository or unknown format before asking for a password.
        let config = Repository::read_config(&storage)?;
        let identity = self.identity()?;
        if let Some(ids) = &identity {
            // An identity opens a recipients repository by itself: no password to give or type.
            if !self.password_given()? {
                if let Some(repo) = Repository::open_by_identity(storage.clone(), config.clone(), ids.clone())? {
                    self.damage.lock().expect("damage logs").push(repo.damage().clone());
                    return Ok((repo, String::new()));
                }
            }
        }
        let (password, stored) = self.stored_or_given_password("repository password: ", false)?;
        crate::redact::register(&password);
        let repo = Repository::open_read_with(storage, config, &password, stored, identity)?;
        self.damage.lock().expect("damage logs").push(repo.damage().clone());
        Ok((repo, password))
    }

    /// Whether a password is given without asking for one (the environment, the stack file).
    fn password_given(&self) -> Result<bool> {
        // Empty: what a daemon opened by identity alone hands its jobs.
        let set = |v: &str| std::env::var_os(v).is_some_and(|p| !p.is_empty());
        if set("BUNKER_PASSWORD") || set("BUNKER_PASSWORD_FILE") {
            return Ok(true);
        }
        Ok(self
            .config()?
            .and_then(|c| c.config.repository.as_ref())
            .is_some_and(|r| r.password.is_some() || r.password_file.is_some()))
    }

    /// The identity of `--identity` / `BUNKER_IDENTITY_FILE`, if one is given: loaded once, asking for its
    /// passphrase (`BUNKER_IDENTITY_PASSPHRASE`, `BUNKER_IDENTITY_PASSPHRASE_FILE`, else the terminal)
    /// when it is passphrase-protected.
    pub fn identity(&self) -> Result<Option<std::sync::Arc<Identities>>> {
        let Some(path) = &self.global.identity else { return Ok(None) };
        if let Some(ids) = self.identity.get() {
            return Ok(Some(ids.clone()));
        }
        let passphrase = if is_passphrase_protected(path) {
            let given = std::env::var_os("BUNKER_IDENTITY_PASSPHRASE").is_some()
                || std::env::var_os("BUNKER_IDENTITY_PASSPHRASE_FILE").is_some();
            let terminal = std::io::stdin().is_terminal() || std::fs::File::open("/dev/tty").is_ok();
            if given || terminal {
                let prompt = format!("passphrase of identity file {}: ", path.display());
                let p = password("BUNKER_IDENTITY_PASSPHRASE", "BUNKER_IDENTITY_PASSPHRASE_FILE", &prompt, false)?;
                crate::redact::register(&p);
                Some(p)
            } else {
                None
            }
        } else {
            None
        };
        let ids = std::sync::Arc::new(load_identities(path, passphrase.as_deref())?);
        let _ = self.identity.set(ids.clone());
        Ok(Some(ids))
    }

    /// The lock of a command that writes (shared for backup, exclusive for prune, forget, repair).
    pub fn lock(&self, repo: &Repository, exclusive: bool, operation: &str) -> Result<LockGuard> {
        Ok(acquire(repo.storage(), exclusive, operation, self.global.retry_lock)?)
    }

    /// How this command may lock (`--no-lock`, `--retry-lock`), for operations that lock themselves.
    pub fn lock_policy(&self) -> bunker_ops::lock::LockPolicy {
        bunker_ops::lock::LockPolicy { no_lock: self.global.no_lock, retry: self.global.retry_lock }
    }

    /// The shared lock of a command that only reads (dump, check, stats…), or none: see
    /// [`bunker_ops::lock::read_lock`].
    pub fn read_lock(&self, repo: &Repository, operation: &str) -> Result<Option<LockGuard>> {
        Ok(bunker_ops::lock::read_lock(repo, self.lock_policy(), operation)?)
    }

    pub fn progress(&self) -> bool {
        !self.global.json && !self.global.quiet
    }
}

/// A password from `VAR`, else the file named by `FILE_VAR`, else a prompt on the terminal.
pub fn password(var: &str, file_var: &str, prompt: &str, confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var(var) {
        return Ok(p);
    }
    if let Ok(path) = std::env::var(file_var) {
        let mut s = String::new();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_string(&mut s))
            .with_context(|| format!("cannot read the password file named by {file_var} ({path})"))?;
        return Ok(s.trim_end_matches(['\n', '\r']).to_string());
    }
    if !std::io::stdin().is_terminal() && std::fs::File::open("/dev/tty").is_err() {
        bail!("no password: set {var} or {file_var}, or run on a terminal to be asked");
    }
    let p = rpassword::prompt_password(prompt).context("cannot read the password from the terminal")?;
    if confirm && rpassword::prompt_password("again: ").context("cannot read the password")? != p {
        bail!("the two passwords differ");
    }
    Ok(p)
}

/// Asks a yes/no question on the terminal; anything but "y"/"yes" is no.
pub fn confirm(question: &str) -> bool {
    use std::io::{BufRead, Write};
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
