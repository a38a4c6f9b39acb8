//! Restoring Redis snapshots: into a live server with RESTORE (an RDB snapshot is first loaded by a
//! scratch `redis-server`, then copied key by key), or as an RDB file for a data directory. Then the
//! restore is checked: keys per database against the snapshot, and a sample of values and TTLs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use bunker_engine::restorer::Restorer;
use bunker_engine::tree::Content;

use super::keys::{self, Frame};
use super::rdb::DbCount;
use super::resp::{Conn, Reply};
use super::url::RedisUrl;
use super::{RedisMeta, CONNECT_TIMEOUT};
use crate::SourceError;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Keys whose value and TTL are compared after a restore.
const SAMPLE: usize = 200;

#[derive(Debug, Default, serde::Serialize)]
pub struct DbCheck {
    pub db: u32,
    /// In the snapshot.
    pub recorded: u64,
    /// With a TTL in the snapshot (these may have expired since).
    pub recorded_expiring: u64,
    /// Restored now (expired keys are not).
    pub restored: u64,
    /// In the target afterwards (DBSIZE).
    pub present: u64,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct RedisRestoreReport {
    pub databases: Vec<DbCheck>,
    /// With `--match` / `--db`: the keys picked (then each database's `recorded` is its picked keys).
    #[serde(skip_serializing_if = "is_zero")]
    pub picked: u64,
    pub sampled: usize,
    /// Sampled keys whose value or TTL differs, or that are missing.
    pub mismatches: Vec<String>,
    pub problems: Vec<String>,
}

impl RedisRestoreReport {
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty() && self.problems.is_empty()
    }
}

/// Writes an RDB snapshot as a file (for a server's data directory).
pub fn write_rdb_file(
    restorer: &Restorer<'_>,
    content: &Content,
    path: &Path,
    force: bool,
) -> Result<u64, SourceError> {
    if path.metadata().map(|m| m.len() > 0).unwrap_or(false) && !force {
        return Err(SourceError::Config(format!("{} exists; pass --force to replace it", path.display())));
    }
    let tmp = path.with_extension("rdb.bunker-tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| bunker_engine::Error::io(&tmp, e))?;
    let n = restorer.dump(content, &mut f)?;
    f.sync_all().map_err(|e| bunker_engine::Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| bunker_engine::Error::io(path, e))?;
    Ok(n)
}

/// Which keys a restore takes: those `--match` (a glob, Redis-style: `session:*`) picks, in the
/// database `--db` names. No pattern and no database: every key.
#[derive(Default)]
pub struct KeyFilter {
    pattern: Option<globset::GlobMatcher>,
    db: Option<u32>,
}

impl KeyFilter {
    pub fn new(pattern: Option<&str>, db: Option<u32>) -> Result<KeyFilter, SourceError> {
        let pattern = match pattern {
            Some(p) => Some(
                globset::GlobBuilder::new(p)
                    .literal_separator(false)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| bunker_engine::Error::invalid("--match", format!("{p:?}: {e}")))?
                    .compile_matcher(),
            ),
            None => None,
        };
        Ok(KeyFilter { pattern, db })
    }

    pub fn is_all(&self) -> bool {
        self.pattern.is_none() && self.db.is_none()
    }

    pub fn picks(&self, f: &Frame) -> bool {
        self.db.is_none_or(|db| db == f.db)
            && self.pattern.as_ref().is_none_or(|p| p.is_match(String::from_utf8_lossy(&f.key).as_ref()))
    }
}

/// Runs `consume` over the snapshot's keys, as frames: a key stream as stored, or an RDB loaded by a
/// scratch `redis-server` whose keys are dumped (the server is stopped afterwards).
pub fn with_frames<T>(
    restorer: &Restorer<'_>,
    content: &Content,
    meta: &RedisMeta,
    consume: impl FnOnce(&mut dyn Iterator<Item = std::io::Result<Frame>>) -> Result<T, SourceError>,
) -> Result<T, SourceError> {
    std::thread::scope(|scope| -> Result<T, SourceError> {
        let (reader, mut writer) =
            std::io::pipe().map_err(|e| SourceError::Tool { tool: "pipe".into(), detail: e.to_string() })?;
        let producer = if meta.mode == "keys" {
            scope.spawn(move || -> Result<(), SourceError> {
                restorer.dump(content, &mut writer)?;
                Ok(())
            })
        } else {
            let rdb = tempfile::Builder::new()
                .prefix("bunker-redis-")
                .suffix(".rdb")
                .tempfile()
                .map_err(|e| SourceError::Tool { tool: "temp file".into(), detail: e.to_string() })?;
            restorer.dump(content, &mut rdb.as_file())?;
            let scratch = bunker_scratch::ScratchRedis::start_with(Some(rdb.path()), &[])
                .map_err(|e| SourceError::Tool { tool: "redis-server".into(), detail: e.to_string() })?;
            drop(rdb);
            scope.spawn(move || -> Result<(), SourceError> {
                let mut from = Conn::open(&RedisUrl::parse(&scratch.url())?, CONNECT_TIMEOUT)?;
                let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut writer);
                keys::dump_all(&mut from, &mut out)?;
                out.flush().map_err(|e| SourceError::Tool { tool: "pipe".into(), detail: e.to_string() })?;
                drop(scratch);
                Ok(())
            })
        };
        let frames = keys::frames(reader)
            .map_err(|e| SourceError::Tool { tool: "redis key stream".into(), detail: e.to_string() });
        let consumed = frames.and_then(|mut frames| {
            let r = consume(&mut frames);
            // Drain what the consumer left, so the producer is not stuck on a full pipe.
            for _ in frames.by_ref() {}
            r
        });
        let produced = producer.join().expect("Redis frame producer thread");
        let consumed = consumed?;
        produced?;
        Ok(consumed)
    })
}

/// Restores a snapshot into the server at `target`. Refuses a target holding keys unless `force`
/// (then keys of the same name are replaced). With a `filter`, only the keys it picks (then the
/// snapshot's key counts do not apply: what it picked must all be back).
pub fn restore_into(
    restorer: &Restorer<'_>,
    content: &Content,
    meta: &RedisMeta,
    target: &RedisUrl,
    force: bool,
    filter: &KeyFilter,
) -> Result<RedisRestoreReport, SourceError> {
    let mut conn = Conn::open(target, CONNECT_TIMEOUT)?;
    let existing = keys::keyspace(&mut conn)?;
    let busy: Vec<String> =
        existing.iter().filter(|(_, c)| c.keys > 0).map(|(db, c)| format!("db{db} has {} keys", c.keys)).collect();
    // A selection goes into a live server (the sessions someone flushed): keys it does not pick are left
    // alone, and a picked key that exists is refused by RESTORE (BUSYKEY) unless `force`.
    if !busy.is_empty() && !force && filter.is_all() {
        return Err(SourceError::Config(format!(
            "{} is not empty ({}); restore into an empty server, or pass --force to replace keys of the same name",
            target.display(),
            busy.join(", ")
        )));
    }
    let mut sample = Sampler::default();
    let mut picked: BTreeMap<u32, DbCount> = BTreeMap::new();
    let now = chrono::Utc::now().timestamp_millis();
    let restored = with_frames(restorer, content, meta, |frames| {
        let mut chosen = frames
            .filter(|f| match f {
                Ok(f) => filter.picks(f),
                Err(_) => true,
            })
            .inspect(|f| {
                if let Ok(f) = f {
                    if f.expires_at < 0 || f.expires_at > now {
                        let c = picked.entry(f.db).or_default();
                        c.keys += 1;
                        c.expires += u64::from(f.expires_at >= 0);
                    }
                    sample.offer(f);
                }
            });
        keys::restore_frames(&mut chosen, &mut conn, force)
    })?;
    let after = keys::keyspace(&mut conn)?;
    let mut report = RedisRestoreReport::default();
    if !filter.is_all() {
        // A selection: every picked key (unexpired when read) must be restored.
        for (db, want) in &picked {
            let got = restored.get(db).map(|c| c.keys).unwrap_or(0);
            if got + want.expires < want.keys {
                report.problems.push(format!("db{db}: {got} of the {} picked keys restored", want.keys));
            }
            report.databases.push(DbCheck {
                db: *db,
                recorded: want.keys,
                recorded_expiring: want.expires,
                restored: got,
                present: after.get(db).map(|c| c.keys).unwrap_or(0),
            });
        }
        report.picked = picked.values().map(|c| c.keys).sum();
        report.sampled = sample.keys.len();
        report.mismatches = sample.compare(&mut conn)?;
        return Ok(report);
    }
    let dbs: std::collections::BTreeSet<u32> = meta.databases.keys().chain(restored.keys()).copied().collect();
    for db in dbs {
        let recorded = meta.databases.get(&db).cloned().unwrap_or_default();
        let check = DbCheck {
            db,
            recorded: recorded.keys,
            recorded_expiring: recorded.expires,
            restored: restored.get(&db).map(|c| c.keys).unwrap_or(0),
            present: after.get(&db).map(|c| c.keys).unwrap_or(0),
        };
        // Every key without a TTL must be back; keys with one may have expired since the snapshot.
        if check.restored + check.recorded_expiring < check.recorded {
            report.problems.push(format!(
                "db{db}: {} keys restored, the snapshot holds {} ({} with a TTL)",
                check.restored, check.recorded, check.recorded_expiring
            ));
        }
        // Keys restored with a TTL may expire during or right after the restore.
        let restored_expiring = restored.get(&db).map(|c| c.expires).unwrap_or(0);
        if check.present + restored_expiring < check.restored {
            report.problems.push(format!("db{db}: {} keys restored but {} present", check.restored, check.present));
        }
        report.databases.push(check);
    }
    report.sampled = sample.keys.len();
    report.mismatches = sample.compare(&mut conn)?;
    Ok(report)
}

/// Whether `key` holds what `payload` (a DUMP) holds, whatever the order the server keeps it in: the
/// payload is restored beside it under a temporary name, both are read in a canonical order (sorted
/// members and fields), and the temporary key is deleted.
fn same_contents(conn: &mut Conn, key: &[u8], payload: &[u8]) -> Result<bool, SourceError> {
    let temp = format!("__bunker_verify:{}", hex::encode(rand_bytes()));
    if let Reply::Error(e) = conn.call(&[b"RESTORE", temp.as_bytes(), b"0", payload])? {
        return Err(conn.query_error(&[b"RESTORE"], &e));
    }
    let expected = canonical(conn, temp.as_bytes());
    conn.call(&[b"DEL", temp.as_bytes()])?;
    let actual = canonical(conn, key)?;
    Ok(expected? == actual)
}

fn rand_bytes() -> [u8; 8] {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    (t as u64 ^ std::process::id() as u64).to_le_bytes()
}

/// A key's type and contents in an order that does not depend on the server.
fn canonical(conn: &mut Conn, key: &[u8]) -> Result<(String, Vec<Vec<u8>>), SourceError> {
    let kind = String::from_utf8_lossy(&conn.call_ok(&[b"TYPE", key])?.into_bytes().unwrap_or_default()).into_owned();
    let flat = |r: Reply| -> Vec<Vec<u8>> {
        match r {
            Reply::Array(Some(items)) => items.into_iter().filter_map(Reply::into_bytes).collect(),
            other => other.into_bytes().into_iter().collect(),
        }
    };
    let mut items = match kind.as_str() {
        "string" => flat(conn.call_ok(&[b"GET", key])?),
        "list" => flat(conn.call_ok(&[b"LRANGE", key, b"0", b"-1"])?),
        "set" => flat(conn.call_ok(&[b"SMEMBERS", key])?),
        "zset" => flat(conn.call_ok(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"])?),
        "hash" => {
            let fields = flat(conn.call_ok(&[b"HGETALL", key])?);
            let mut pairs: Vec<&[Vec<u8>]> = fields.chunks(2).collect();
            pairs.sort();
            return Ok((kind, pairs.concat()));
        }
        _ => flat(conn.call_ok(&[b"DUMP", key])?),
    };
    if kind == "set" {
        items.sort();
    }
    Ok((kind, items))
}

/// Every n-th restored key, to compare afterwards.
#[derive(Default)]
struct Sampler {
    seen: usize,
    keys: Vec<(u32, Vec<u8>, i64, Vec<u8>)>,
}

impl Sampler {
    fn offer(&mut self, f: &Frame) {
        self.seen += 1;
        // Keep the first SAMPLE, then one in (seen / SAMPLE): spread over the whole keyspace.
        let stride = (self.seen / SAMPLE).max(1);
        if self.keys.len() < SAMPLE || self.seen.is_multiple_of(stride) && self.keys.len() < SAMPLE * 2 {
            self.keys.push((f.db, f.key.clone(), f.expires_at, f.payload.clone()));
        }
    }

    /// Compares each sampled key's value (its DUMP) and TTL in the target.
    fn compare(&self, conn: &mut Conn) -> Result<Vec<String>, SourceError> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut out = Vec::new();
        let mut db = None;
        for (key_db, key, expires_at, payload) in &self.keys {
            if *expires_at >= 0 && *expires_at <= now + 1000 {
                continue; // expired, or about to
            }
            if db != Some(*key_db) {
                conn.call_ok(&[b"SELECT", key_db.to_string().as_bytes()])?;
                db = Some(*key_db);
            }
            let name = String::from_utf8_lossy(key).into_owned();
            match conn.call(&[b"DUMP", key])? {
                Reply::Bulk(Some(d)) if &d == payload => {}
                Reply::Bulk(None) => out.push(format!("db{key_db} {name:?}: missing")),
                // Hash tables and sets dump in their server's iteration order: compare contents instead.
                _ if same_contents(conn, key, payload)? => {}
                _ => out.push(format!("db{key_db} {name:?}: value differs")),
            }
            let ttl = conn.call(&[b"PTTL", key])?.as_int().unwrap_or(-2);
            let want = if *expires_at >= 0 { *expires_at - now } else { -1 };
            let off = if want < 0 || ttl < 0 { want != ttl } else { (ttl - want).abs() > 5000 };
            if off {
                out.push(format!("db{key_db} {name:?}: TTL {ttl} ms, expected {want} ms"));
            }
        }
        Ok(out)
    }
}
