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
}

/// What `init` chooses.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub compression_level: i32,
    pub pack_size: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions { chunker: ChunkerParams::default(), compression_level: 3, pack_size: 16 * 1024 * 1024 }
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
