//! The repository config: `config` at the root, plain JSON. It holds no secret (the chunker's gear seed
//! and all keys derive from the master key), so it can be read before a password is given, which lets an
//! unknown format version be refused before anything else is tried.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::error::{Error, Result};

pub const FORMAT_VERSION: u32 = 1;
pub const CONFIG_PATH: &str = "config";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoConfig {
    pub version: u32,
    /// Random repository ID: names the local cache directory.
    pub id: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub chunker: ChunkerParams,
    /// zstd level for blobs (1–22; 3 by default).
    pub compression_level: i32,
    /// Target pack size in bytes; packs close once they pass it.
    pub pack_size: u32,
    /// S3 Object Lock: every lasting object is written with a retain-until date this far ahead (absent:
    /// no lock). Older bunkers ignore the field, and so write without retention: upgrade every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
}

/// How a repository's objects are locked (S3 Object Lock, on a bucket created with it enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLock {
    pub mode: LockMode,
    /// The retention period in seconds: an object is written locked until now + period, and `object-lock
    /// extend` keeps what kept snapshots reference locked at least this far ahead.
    pub period_secs: u64,
}

/// S3's two retention modes: governance (users with `s3:BypassGovernanceRetention` may still delete or
/// shorten) and compliance (nobody can, not even the account's root, until the date passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    Governance,
    Compliance,
}

impl LockMode {
    /// The name S3 uses in headers and XML.
    pub fn s3_name(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "governance" => Ok(LockMode::Governance),
            "compliance" => Ok(LockMode::Compliance),
            _ => Err(Error::invalid("object lock mode", format!("{s:?} (use governance or compliance)"))),
        }
    }
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        })
    }
}

impl ObjectLock {
    /// The retention period, at least one second and at most 100 years (S3's own limit).
    pub fn validate(&self) -> Result<()> {
        if !(1..=100 * 365 * 86_400).contains(&self.period_secs) {
            return Err(Error::invalid(
                "object lock period",
                format!("{} s (use 1s–100y, e.g. 30d)", self.period_secs),
            ));
        }
        Ok(())
    }

    pub fn period(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.period_secs)
    }
}

/// What `init` chooses.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub compression_level: i32,
    pub pack_size: u32,
    pub object_lock: Option<ObjectLock>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            compression_level: 3,
            pack_size: 16 * 1024 * 1024,
            object_lock: None,
        }
    }
}

impl InitOptions {
    pub fn validate(&self) -> Result<()> {
        self.chunker.validate().map_err(|d| Error::invalid("chunker parameters", d))?;
        if !(1..=22).contains(&self.compression_level) {
            return Err(Error::invalid("compression level", format!("{} (use 1–22)", self.compression_level)));
        }
        if !(1 << 20..=256 << 20).contains(&self.pack_size) {
            return Err(Error::invalid("pack size", format!("{} bytes (use 1 MiB–256 MiB)", self.pack_size)));
        }
        if let Some(lock) = &self.object_lock {
            lock.validate()?;
        }
        Ok(())
    }
}

impl RepoConfig {
    pub fn new(opts: &InitOptions) -> Self {
        RepoConfig {
            version: FORMAT_VERSION,
            id: hex::encode(rand::random::<[u8; 16]>()),
            created: chrono::Utc::now(),
            chunker: opts.chunker,
            compression_level: opts.compression_level,
            pack_size: opts.pack_size,
            object_lock: opts.object_lock,
        }
    }

    /// Parses a config, refusing an unknown version before looking at any other field.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("config: not JSON: {e}")))?;
        let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
        }
        let config: RepoConfig = serde_json::from_value(value).map_err(|e| Error::Corrupt(format!("config: {e}")))?;
        // Unauthenticated input: the id names a local cache directory, so it must be plain hex.
        if config.id.len() != 32 || !config.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Corrupt(format!("config: repository id {:?} is not 32 hex digits", config.id)));
        }
        InitOptions {
            chunker: config.chunker,
            compression_level: config.compression_level,
            pack_size: config.pack_size,
            object_lock: config.object_lock,
        }
        .validate()
        .map_err(|e| Error::Corrupt(format!("config: {e}")))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_version_is_refused() {
        let c = RepoConfig::new(&InitOptions::default());
        let bytes = serde_json::to_vec(&c).unwrap();
        assert_eq!(RepoConfig::parse(&bytes).unwrap().id, c.id);
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["version"] = 99.into();
        let err = RepoConfig::parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { found: 99, .. }), "{err}");
        v["version"] = 1.into();
        v["id"] = "../../home/user".into();
        assert!(RepoConfig::parse(&serde_json::to_vec(&v).unwrap()).is_err(), "an id that is a path must be refused");
    }
}
