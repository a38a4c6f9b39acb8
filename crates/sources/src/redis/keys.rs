//! Key-by-key dumps for servers that refuse replication (managed Redis): SCAN, then `DUMP` and `PTTL`
//! pipelined, written as a stream of frames; restored with `RESTORE … ABSTTL`, pipelined.
//!
//! Stream format: the line `BUNKER-REDIS-KEYS 1\n`, then per key `db (u32) | key length (u32) | key |
//! expires at (i64 ms since the epoch, -1 none) | payload length (u32) | DUMP payload`, all little-endian,
//! ended by a frame whose db is `u32::MAX`. Not a point-in-time copy: keys written during the scan may
//! or may not be in it.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use super::rdb::DbCount;
use super::resp::{Conn, Reply};
use crate::SourceError;

pub const MAGIC: &[u8] = b"BUNKER-REDIS-KEYS 1\n";
const END: u32 = u32::MAX;
/// Keys per pipelined round trip.
const BATCH: usize = 500;

pub struct Frame {
    pub db: u32,
    pub key: Vec<u8>,
    /// Milliseconds since the epoch; -1 for no expiry.
    pub expires_at: i64,
    pub payload: Vec<u8>,
}

pub fn write_frame(out: &mut impl Write, f: &Frame) -> std::io::Result<()> {
    out.write_all(&f.db.to_le_bytes())?;
    out.write_all(&(f.key.len() as u32).to_le_bytes())?;
    out.write_all(&f.key)?;
    out.write_all(&f.expires_at.to_le_bytes())?;
    out.write_all(&(f.payload.len() as u32).to_le_bytes())?;
    out.write_all(&f.payload)
}

pub fn write_end(out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(&END.to_le_bytes())
}

/// Reads the next frame; `None` at the end frame.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Frame>> {
    let mut u32b = [0u8; 4];
    r.read_exact(&mut u32b)?;
    let db = u32::from_le_bytes(u32b);
    if db == END {
        return Ok(None);
    }
    r.read_exact(&mut u32b)?;
    let mut key = vec![0u8; u32::from_le_bytes(u32b) as usize];
    r.read_exact(&mut key)?;
    let mut i64b = [0u8; 8];
    r.read_exact(&mut i64b)?;
    r.read_exact(&mut u32b)?;
    let mut payload = vec![0u8; u32::from_le_bytes(u32b) as usize];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame { db, key, expires_at: i64::from_le_bytes(i64b), payload }))
}

/// The databases that hold keys, from `INFO keyspace` (`db3:keys=10,expires=2,avg_ttl=0`).
pub fn keyspace(conn: &mut Conn) -> Result<BTreeMap<u32, DbCount>, SourceError> {
    let info = conn.call_ok(&[b"INFO", b"keyspace"])?.into_bytes().unwrap_or_default();
    Ok(parse_keyspace(&String::from_utf8_lossy(&info)))
}

pub fn parse_keyspace(info: &str) -> BTreeMap<u32, DbCount> {
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some((db, rest)) = line.trim().split_once(':') else { continue };
        let Some(n) = db.strip_prefix("db").and_then(|n| n.parse().ok()) else { continue };
        let field = |name: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')).and_then(|v| v.parse().ok()))
        };
        out.insert(n, DbCount { keys: field("keys").unwrap_or(0), expires: field("expires").unwrap_or(0) });
    }
    out
}

/// Dumps every key of every database into `out`; returns what was written per database.
pub fn dump_all(conn: &mut Conn, out: &mut impl Write) -> Result<BTreeMap<u32, DbCount>, SourceError> {
    let io = |e: std::io::Error| SourceError::Tool { tool: "redis key dump".into(), detail: e.to_string() };
    out.write_all(MAGIC).map_err(io)?;
    let mut counts = BTreeMap::new();
    for db in keyspace(conn)?.into_keys() {
        conn.call_ok(&[b"SELECT", db.to_string().as_bytes()])?;
        let count: &mut DbCount = counts.entry(db).or_default();
        let mut cursor = b"0".to_vec();
        loop {
            bunker_engine::interrupt::check()?;
            let reply = conn.call_ok(&[b"SCAN", &cursor, b"COUNT", b"1000"])?;
            let Reply::Array(Some(mut parts)) = reply else {
                return Err(conn.query_error(&[b"SCAN"], "unexpected reply"));
            };
            let keys = match parts.pop() {
                Some(Reply::Array(Some(k))) => k,
                _ => Vec::new(),
            };
            cursor = parts.pop().and_then(Reply::into_bytes).unwrap_or_else(|| b"0".to_vec());
            for batch in keys.chunks(BATCH) {
                let names: Vec<Vec<u8>> = batch.iter().cloned().filter_map(Reply::into_bytes).collect();
                for k in &names {
                    conn.send(&[b"DUMP", k])?;
                    conn.send(&[b"PTTL", k])?;
                }
                conn.flush()?;
                for k in names {
                    let payload = conn.read_reply()?;
                    let expires = conn.read_reply()?;
                    if let Reply::Error(e) = &payload {
                        return Err(conn.query_error(&[b"DUMP"], e));
                    }
                    if let Reply::Error(e) = &expires {
                        return Err(conn.query_error(&[b"PTTL"], e));
                    }
                    // A key that expired or was deleted between SCAN and DUMP is simply not there.
                    let Some(payload) = payload.into_bytes() else { continue };
                    let expires_at = match expires.as_int() {
                        Some(ttl) if ttl >= 0 => chrono::Utc::now().timestamp_millis() + ttl,
                        // Expired between DUMP and PTTL: gone, not permanent.
                        Some(-2) => continue,
                        _ => -1,
                    };
                    write_frame(out, &Frame { db, key: k, expires_at, payload }).map_err(io)?;
                    count.keys += 1;
                    if expires_at >= 0 {
                        count.expires += 1;
                    }
                }
            }
            if cursor == b"0" {
                break;
            }
        }
    }
    write_end(out).map_err(io)?;
    Ok(counts)
}

/// Restores frames into `conn`, pipelined; keys whose expiry has passed are skipped. With `replace`,
/// existing keys are overwritten. Returns the keys restored per database.
pub fn restore_frames(
    frames: &mut dyn Iterator<Item = std::io::Result<Frame>>,
    conn: &mut Conn,
    replace: bool,
) -> Result<BTreeMap<u32, DbCount>, SourceError> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut counts: BTreeMap<u32, DbCount> = BTreeMap::new();
    let mut current_db: Option<u32> = None;
    let mut pending = 0usize;
    let finish = |conn: &mut Conn, pending: &mut usize| -> Result<(), SourceError> {
        conn.flush()?;
        for _ in 0..*pending {
            if let Reply::Error(e) = conn.read_reply()? {
                let hint = if e.contains("payload version") {
                    "; the target runs an older Redis than the snapshot's (restore into the same or a newer version)"
                } else if e.contains("BUSYKEY") {
                    "; pass --force to replace existing keys"
                } else {
                    ""
                };
                return Err(conn.query_error(&[b"RESTORE"], &format!("{e}{hint}")));
            }
        }
        *pending = 0;
        Ok(())
    };
    for frame in frames {
        let f = frame.map_err(|e| SourceError::Tool { tool: "redis key stream".into(), detail: e.to_string() })?;
        if f.expires_at >= 0 && f.expires_at <= now {
            continue;
        }
        if current_db != Some(f.db) {
            finish(conn, &mut pending)?;
            conn.call_ok(&[b"SELECT", f.db.to_string().as_bytes()])?;
            current_db = Some(f.db);
        }
        let ttl = if f.expires_at >= 0 { f.expires_at.to_string() } else { "0".into() };
        let mut args: Vec<&[u8]> = vec![b"RESTORE", &f.key, ttl.as_bytes(), &f.payload];
        if f.expires_at >= 0 {
            args.push(b"ABSTTL");
        }
        if replace {
            args.push(b"REPLACE");
        }
        conn.send(&args)?;
        pending += 1;
        let c = counts.entry(f.db).or_default();
        c.keys += 1;
        if f.expires_at >= 0 {
            c.expires += 1;
        }
        if pending >= BATCH {
            finish(conn, &mut pending)?;
        }
    }
    finish(conn, &mut pending)?;
    Ok(counts)
}

/// Frames from a key stream (after checking its magic line).
pub fn frames(mut r: impl Read) -> std::io::Result<impl Iterator<Item = std::io::Result<Frame>>> {
    let mut magic = vec![0u8; MAGIC.len()];
    r.read_exact(&mut magic)?;
    if magic != MAGIC {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a bunker Redis key stream"));
    }
    let mut ended = false;
    Ok(std::iter::from_fn(move || {
        if ended {
            return None;
        }
        match read_frame(&mut r) {
            Ok(Some(f)) => Some(Ok(f)),
            Ok(None) => {
                ended = true;
                None
            }
            Err(e) => {
                ended = true;
                Some(Err(e))
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_keyspace_parses() {
        let mut buf = MAGIC.to_vec();
        write_frame(&mut buf, &Frame { db: 3, key: b"\x00bin\xff".to_vec(), expires_at: 17, payload: vec![1, 2, 3] })
            .unwrap();
        write_end(&mut buf).unwrap();
        let got: Vec<Frame> = frames(&buf[..]).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].db, got[0].key.as_slice(), got[0].expires_at), (3, &b"\x00bin\xff"[..], 17));
        assert!(frames(&b"nope"[..]).is_err());
        let ks = parse_keyspace("# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=0\r\ndb5:keys=1,expires=0,avg_ttl=0\r\n");
        assert_eq!(ks[&0], DbCount { keys: 10, expires: 2 });
        assert_eq!(ks[&5], DbCount { keys: 1, expires: 0 });
    }
}
