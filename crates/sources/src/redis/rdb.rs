//! Reads an RDB file as it streams by and counts what it holds: the RDB version, the server's AUX fields
//! (redis-ver, used-mem…), and the keys and keys with a TTL of every database, exactly as of the
//! snapshot. Values are skipped, not decoded: each type's layout is walked only far enough to find its
//! end. A type this reader does not know (a newer Redis's) ends the count early; the summary then says
//! it is incomplete and bunker falls back to the server's own counts.

use std::collections::BTreeMap;
use std::io::Read;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DbCount {
    pub keys: u64,
    pub expires: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RdbSummary {
    pub version: u32,
    pub aux: BTreeMap<String, String>,
    pub dbs: BTreeMap<u32, DbCount>,
    /// The whole file was walked to its EOF marker.
    pub complete: bool,
    /// Why not, when not.
    pub stopped: Option<String>,
}

struct Reader<R> {
    inner: R,
}

type R<T> = Result<T, String>;

impl<Rd: Read> Reader<Rd> {
    fn bytes<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b).map_err(|e| format!("truncated: {e}"))?;
        Ok(b)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.bytes::<1>()?[0])
    }
    fn skip(&mut self, n: u64) -> R<()> {
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink()).map_err(|e| e.to_string())?;
        if copied == n {
            Ok(())
        } else {
            Err("truncated".into())
        }
    }
    /// A length, or (`Err` side of the inner result) a special string encoding.
    fn length_or_encoding(&mut self) -> R<Result<u64, u8>> {
        let first = self.u8()?;
        Ok(match first >> 6 {
            0 => Ok((first & 0x3F) as u64),
            1 => Ok((((first & 0x3F) as u64) << 8) | self.u8()? as u64),
            2 => match first {
                0x80 => Ok(u32::from_be_bytes(self.bytes()?) as u64),
                0x81 => Ok(u64::from_be_bytes(self.bytes()?)),
                other => return Err(format!("bad length byte {other:#x}")),
            },
            _ => Err(first & 0x3F),
        })
    }
    fn length(&mut self) -> R<u64> {
        self.length_or_encoding()?.map_err(|e| format!("an encoded string where a length was expected ({e})"))
    }
    fn string(&mut self) -> R<Vec<u8>> {
        match self.length_or_encoding()? {
            Ok(n) => {
                if n > 1 << 32 {
                    return Err(format!("string of {n} bytes"));
                }
                let mut b = vec![0u8; n as usize];
                self.inner.read_exact(&mut b).map_err(|e| format!("truncated: {e}"))?;
                Ok(b)
            }
            Err(0) => Ok((self.u8()? as i8).to_string().into_bytes()),
            Err(1) => Ok(i16::from_le_bytes(self.bytes()?).to_string().into_bytes()),
            Err(2) => Ok(i32::from_le_bytes(self.bytes()?).to_string().into_bytes()),
            Err(3) => {
                let compressed = self.length()?;
                let _uncompressed = self.length()?;
                self.skip(compressed)?;
                Ok(Vec::new())
            }
            Err(e) => Err(format!("unknown string encoding {e}")),
        }
    }
    fn skip_string(&mut self) -> R<()> {
        match self.length_or_encoding()? {
            Ok(n) => self.skip(n),
            Err(0) => self.skip(1),
            Err(1) => self.skip(2),
            Err(2) => self.skip(4),
            Err(3) => {
                let compressed = self.length()?;
                self.length()?;
                self.skip(compressed)
            }
            Err(e) => Err(format!("unknown string encoding {e}")),
        }
    }
    fn skip_strings(&mut self, n: u64) -> R<()> {
        for _ in 0..n {
            self.skip_string()?;
        }
        Ok(())
    }

    /// Skips one value of `kind`.
    fn skip_value(&mut self, kind: u8) -> R<()> {
        match kind {
            0 => self.skip_string(),
            1 | 2 | 14 => {
                let n = self.length()?;
                self.skip_strings(n)
            }
            3 => {
                for _ in 0..self.length()? {
                    self.skip_string()?;
                    let len = self.u8()?;
                    if len < 253 {
                        self.skip(len as u64)?;
                    }
                }
                Ok(())
            }
            4 => {
                let n = self.length()?;
                self.skip_strings(n * 2)
            }
            5 => {
                for _ in 0..self.length()? {
                    self.skip_string()?;
                    self.skip(8)?;
                }
                Ok(())
            }
            7 => self.skip_module(),
            9..=13 | 16 | 17 | 20 => self.skip_string(),
            18 => {
                for _ in 0..self.length()? {
                    self.length()?;
                    self.skip_string()?;
                }
                Ok(())
            }
            15 | 19 | 21 => self.skip_stream(kind),
            other => Err(format!("value type {other} (a newer Redis?)")),
        }
    }

    fn skip_module(&mut self) -> R<()> {
        self.length()?; // module id
        loop {
            match self.length()? {
                0 => return Ok(()),
                1 | 2 => {
                    self.length()?;
                }
                3 => self.skip(4)?,
                4 => self.skip(8)?,
                5 => self.skip_string()?,
                op => return Err(format!("module value opcode {op}")),
            }
        }
    }

    fn skip_stream(&mut self, kind: u8) -> R<()> {
        let listpacks = self.length()?;
        self.skip_strings(listpacks * 2)?;
        let fields = if kind >= 19 { 8 } else { 3 };
        for _ in 0..fields {
            self.length()?;
        }
        for _ in 0..self.length()? {
            self.skip_string()?; // group name
            self.length()?;
            self.length()?; // last id
            if kind >= 19 {
                self.length()?; // entries read
            }
            for _ in 0..self.length()? {
                self.skip(16 + 8)?; // id, delivery time
                self.length()?; // delivery count
            }
            for _ in 0..self.length()? {
                self.skip_string()?; // consumer name
                self.skip(if kind >= 21 { 16 } else { 8 })?;
                let pel = self.length()?;
                self.skip(pel * 16)?;
            }
        }
        Ok(())
    }
}

/// Walks an RDB stream to its end (or as far as it understands it).
pub fn scan(input: impl Read) -> RdbSummary {
    let mut r = Reader { inner: input };
    let mut s = RdbSummary::default();
    if let Err(e) = walk(&mut r, &mut s) {
        s.stopped = Some(e);
    }
    // Whatever is left is read, so a producer writing into a pipe never blocks on us.
    let _ = std::io::copy(&mut r.inner, &mut std::io::sink());
    s
}

fn walk<Rd: Read>(r: &mut Reader<Rd>, s: &mut RdbSummary) -> R<()> {
    let header: [u8; 9] = r.bytes()?;
    if &header[..5] != b"REDIS" {
        return Err("not an RDB file (no REDIS magic)".into());
    }
    s.version = std::str::from_utf8(&header[5..]).ok().and_then(|v| v.parse().ok()).ok_or("bad RDB version")?;
    let mut db = 0u32;
    let mut expiring = false;
    loop {
        let op = r.u8()?;
        match op {
            0xFF => {
                s.complete = true;
                return Ok(());
            }
            0xFA => {
                let k = String::from_utf8_lossy(&r.string()?).into_owned();
                let v = String::from_utf8_lossy(&r.string()?).into_owned();
                s.aux.insert(k, v);
            }
            0xFE => {
                db = r.length()? as u32;
                s.dbs.entry(db).or_default();
            }
            0xFB => {
                r.length()?;
                r.length()?;
            }
            0xFD => {
                r.skip(4)?;
                expiring = true;
            }
            0xFC => {
                r.skip(8)?;
                expiring = true;
            }
            0xF8 => {
                r.length()?;
            }
            0xF9 => {
                r.u8()?;
            }
            0xF5 => {
                r.skip_string()?; // a function library
            }
            0xF7 => return Err("module auxiliary data".into()),
            0xF6 => return Err("pre-release functions".into()),
            kind => {
                r.skip_string()?; // the key
                r.skip_value(kind)?;
                let count = s.dbs.entry(db).or_default();
                count.keys += 1;
                if expiring {
                    count.expires += 1;
                }
                expiring = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &[u8]) {
        assert!(s.len() < 64);
        out.push(s.len() as u8);
        out.extend_from_slice(s);
    }

    #[test]
    fn counts_keys_and_expiries_per_database() {
        let mut rdb = b"REDIS0010".to_vec();
        rdb.push(0xFA);
        string(&mut rdb, b"redis-ver");
        string(&mut rdb, b"7.0.15");
        rdb.extend_from_slice(&[0xFE, 0, 0xFB, 2, 1]);
        rdb.push(0); // string
        string(&mut rdb, b"k1");
        rdb.extend_from_slice(&[0xC0, 7]); // int8-encoded value
        rdb.push(0xFC);
        rdb.extend_from_slice(&1_700_000_000_000u64.to_le_bytes());
        rdb.push(4); // hash of one field
        string(&mut rdb, b"h");
        rdb.push(1);
        string(&mut rdb, b"f");
        string(&mut rdb, b"v");
        rdb.extend_from_slice(&[0xFE, 3]);
        rdb.push(3); // zset, one member with an infinite score
        string(&mut rdb, b"z");
        rdb.push(1);
        string(&mut rdb, b"m");
        rdb.push(254);
        rdb.push(0xFF);
        rdb.extend_from_slice(&[0; 8]);
        let s = scan(&rdb[..]);
        assert!(s.complete, "{:?}", s.stopped);
        assert_eq!(s.version, 10);
        assert_eq!(s.aux["redis-ver"], "7.0.15");
        assert_eq!(s.dbs[&0], DbCount { keys: 2, expires: 1 });
        assert_eq!(s.dbs[&3], DbCount { keys: 1, expires: 0 });
        let cut = scan(&rdb[..rdb.len() - 12]);
        assert!(!cut.complete && cut.stopped.is_some());
        assert!(scan(&b"NOTREDIS0"[..]).stopped.unwrap().contains("not an RDB"));
    }
}
