//! Redis: `mode = "rdb"` fetches a consistent snapshot over the replication protocol (as a replica would)
//! and stores the RDB file itself; `mode = "keys"` dumps key by key (SCAN, DUMP, PTTL) for servers that
//! refuse replication. Restores go into a live server with RESTORE (an RDB snapshot through a scratch
//! `redis-server` that loads it), or write the RDB file for a data directory.

pub mod keys;
pub mod rdb;
pub mod resp;
pub mod restore;
pub mod sync;
pub mod url;

mod kind;
pub use kind::Redis;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use bunker_engine::backup::Backup;
use bunker_engine::snapshot::Root;
use serde::{Deserialize, Serialize};

use self::rdb::DbCount;
use self::resp::Conn;
use self::url::RedisUrl;
use crate::{Captured, Planned, Source, SourceError};

/// Snapshot kinds.
pub const KIND_RDB: &str = "redis-rdb";
pub const KIND_KEYS: &str = "redis-keys";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Rdb,
    Keys,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisOptions {
    url: String,
    #[serde(default)]
    mode: Option<String>,
}

/// What a Redis snapshot records (its `meta`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisMeta {
    pub mode: String,
    pub redis_version: String,
    /// The RDB format version (rdb mode).
    #[serde(default)]
    pub rdb_version: Option<u32>,
    pub used_memory: u64,
    /// Keys and keys with a TTL per database, as of the snapshot.
    pub databases: BTreeMap<u32, DbCount>,
    /// The counts come from the snapshot itself (false: from the server's INFO just before it, when the
    /// RDB held a type this bunker cannot walk).
    pub exact_counts: bool,
}

impl RedisMeta {
    pub fn total_keys(&self) -> u64 {
        self.databases.values().map(|d| d.keys).sum()
    }
}

pub struct RedisSource {
    pub url: RedisUrl,
    pub mode: Mode,
}

/// The target's connection settings, for restore and verify.
pub fn settings(target: &bunker_config::TargetConfig) -> Result<RedisUrl, SourceError> {
    let opts: RedisOptions = target.options()?;
    RedisUrl::parse(&opts.url)
}

/// A `type = "redis"` target: one snapshot of the whole server.
pub fn plan(target: &bunker_config::TargetConfig) -> Result<Vec<Planned>, SourceError> {
    let opts: RedisOptions = target.options()?;
    let mode = match opts.mode.as_deref() {
        None | Some("rdb") => Mode::Rdb,
        Some("keys") => Mode::Keys,
        Some(other) => {
            return Err(SourceError::Config(format!(
                "target {}: mode {other:?} is not \"rdb\" or \"keys\"",
                target.name
            )))
        }
    };
    let url = RedisUrl::parse(&opts.url)?;
    Ok(vec![Planned { snapshot_name: target.name.clone(), source: Box::new(RedisSource { url, mode }) }])
}

fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| l.trim().strip_prefix(name).and_then(|v| v.strip_prefix(':')).map(str::to_owned))
}

/// `redis_version` and `used_memory` from INFO.
fn server_facts(conn: &mut Conn) -> Result<(String, u64), SourceError> {
    let info = conn.call_ok(&[b"INFO", b"server"])?.into_bytes().unwrap_or_default();
    let memory = conn.call_ok(&[b"INFO", b"memory"])?.into_bytes().unwrap_or_default();
    let (info, memory) = (String::from_utf8_lossy(&info), String::from_utf8_lossy(&memory));
    Ok((
        info_field(&info, "redis_version").unwrap_or_default(),
        info_field(&memory, "used_memory").and_then(|m| m.parse().ok()).unwrap_or(0),
    ))
}

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

impl Source for RedisSource {
    fn kind(&self) -> &'static str {
        match self.mode {
            Mode::Rdb => KIND_RDB,
            Mode::Keys => KIND_KEYS,
        }
    }

    fn backup(&mut self, backup: &Backup<'_>) -> Result<Captured, SourceError> {
        let mut conn = Conn::open(&self.url, CONNECT_TIMEOUT)?;
        let (redis_version, used_memory) = server_facts(&mut conn)?;
        match self.mode {
            Mode::Rdb => {
                let before = keys::keyspace(&mut conn)?;
                let payload = sync::start(&mut conn)?;
                let (content, size, summary) = store_scanned(backup, payload)?;
                let exact = summary.complete;
                if !exact {
                    tracing::warn!(
                        "the RDB could not be walked to its end ({}); key counts are the server's, taken just before",
                        summary.stopped.as_deref().unwrap_or("?")
                    );
                }
                let meta = RedisMeta {
                    mode: "rdb".into(),
                    redis_version,
                    rdb_version: Some(summary.version),
                    used_memory,
                    databases: if exact {
                        summary.dbs.into_iter().filter(|(_, c)| c.keys > 0).collect()
                    } else {
                        before
                    },
                    exact_counts: exact,
                };
                Ok(Captured {
                    root: Root::Stream { content, size },
                    meta: serde_json::to_value(&meta).expect("meta serialises"),
                    warnings: Vec::new(),
                })
            }
            Mode::Keys => {
                let (reader, mut writer) =
                    std::io::pipe().map_err(|e| SourceError::Tool { tool: "pipe".into(), detail: e.to_string() })?;
                let producer = std::thread::spawn(move || {
                    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut writer);
                    let counts = keys::dump_all(&mut conn, &mut out);
                    let flushed = std::io::Write::flush(&mut out);
                    drop(out);
                    drop(writer);
                    counts.and_then(|c| {
                        flushed
                            .map(|_| c)
                            .map_err(|e| SourceError::Tool { tool: "redis key dump".into(), detail: e.to_string() })
                    })
                });
                let stored = backup.save_stream_fine_fast(reader);
                let counts = producer.join().expect("key dump thread")?;
                let (content, size) = stored?;
                let meta = RedisMeta {
                    mode: "keys".into(),
                    redis_version,
                    rdb_version: None,
                    used_memory,
                    databases: counts,
                    exact_counts: true,
                };
                Ok(Captured {
                    root: Root::Stream { content, size },
                    meta: serde_json::to_value(&meta).expect("meta serialises"),
                    warnings: Vec::new(),
                })
            }
        }
    }
}

/// Stores a stream while a second thread walks the same bytes with the RDB reader.
fn store_scanned(
    backup: &Backup<'_>,
    input: impl Read,
) -> Result<(bunker_engine::tree::Content, u64, rdb::RdbSummary), SourceError> {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(16);
    let scanner = std::thread::spawn(move || rdb::scan(ChannelReader { rx, buf: Vec::new(), at: 0 }));
    let tee = Tee { inner: input, tx: Some(tx) };
    let stored = backup.save_stream_fine_fast(tee);
    let summary = scanner.join().expect("RDB reader thread");
    let (content, size) = stored?;
    Ok((content, size, summary))
}

/// Passes reads through and sends a copy of each to the scanner (which, once it gives up, is not fed).
struct Tee<R> {
    inner: R,
    tx: Option<crossbeam_channel::Sender<Vec<u8>>>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(tx) = &self.tx {
                if tx.send(buf[..n].to_vec()).is_err() {
                    self.tx = None;
                }
            }
        } else {
            self.tx = None;
        }
        Ok(n)
    }
}

struct ChannelReader {
    rx: crossbeam_channel::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
