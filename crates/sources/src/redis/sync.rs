//! A consistent RDB from a live server over the replication protocol, as `redis-cli --rdb` gets it:
//! `REPLCONF capa eof`, `REPLCONF rdb-only 1`, `SYNC`, then the payload framed either as `$<len>` or,
//! when the server streams it without a file (diskless), as `$EOF:<40-byte mark>` … mark. Newlines the
//! server sends while it prepares the snapshot are keep-alives.

use std::io::{BufRead, Read};

use super::resp::{Conn, Reply};
use crate::SourceError;

const MARK_LEN: usize = 40;

/// Why a server refused the replication handshake, with what to do.
fn refused(conn: &Conn, what: &str, e: &str) -> SourceError {
    SourceError::Query {
        target: conn.display.clone(),
        detail: format!(
            "{what} refused ({e}): this server does not allow replication (managed Redis usually renames SYNC away, \
             or the user lacks the permission); set mode = \"keys\" on the target to back it up key by key instead"
        ),
    }
}

/// Starts the transfer and returns a reader over exactly the RDB bytes.
pub fn start(conn: &mut Conn) -> Result<RdbPayload<'_>, SourceError> {
    if let Reply::Error(e) = conn.call(&[b"REPLCONF", b"capa", b"eof"])? {
        return Err(refused(conn, "REPLCONF", &e));
    }
    // Redis 7: no replication stream after the snapshot. Older servers do not know it: harmless.
    let _ = conn.call(&[b"REPLCONF", b"rdb-only", b"1"])?;
    conn.send(&[b"SYNC"])?;
    conn.flush()?;
    let target = conn.display.clone();
    let lost =
        move |e: std::io::Error| SourceError::Connect { target: target.clone(), detail: format!("during SYNC: {e}") };
    let raw = conn.raw();
    let header = loop {
        let mut line = Vec::new();
        raw.read_until(b'\n', &mut line).map_err(&lost)?;
        if line.is_empty() {
            return Err(lost(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )));
        }
        if line == b"\n" || line == b"\r\n" {
            continue; // keep-alive while the server forks and writes
        }
        break String::from_utf8_lossy(&line).trim_end().to_string();
    };
    if let Some(e) = header.strip_prefix('-') {
        return Err(refused(conn, "SYNC", e));
    }
    let framing = if let Some(mark) = header.strip_prefix("$EOF:") {
        if mark.len() != MARK_LEN {
            return Err(SourceError::Query {
                target: conn.display.clone(),
                detail: format!("bad SYNC header {header:?}"),
            });
        }
        Framing::Mark { mark: mark.as_bytes().to_vec(), pending: Vec::new(), start: 0, done: false }
    } else if let Some(len) = header.strip_prefix('$').and_then(|l| l.parse::<u64>().ok()) {
        Framing::Length { left: len }
    } else {
        return Err(SourceError::Query {
            target: conn.display.clone(),
            detail: format!("unexpected SYNC reply {header:?}"),
        });
    };
    Ok(RdbPayload { inner: conn.raw(), framing })
}

enum Framing {
    Length {
        left: u64,
    },
    /// `pending[start..]`: bytes read but not yet handed out; the last MARK_LEN of them may be the start
    /// of the end mark.
    Mark {
        mark: Vec<u8>,
        pending: Vec<u8>,
        start: usize,
        done: bool,
    },
}

pub struct RdbPayload<'c> {
    inner: &'c mut dyn BufRead,
    framing: Framing,
}

impl Read for RdbPayload<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.framing {
            Framing::Length { left } => {
                if *left == 0 || out.is_empty() {
                    return Ok(0);
                }
                let want = out.len().min(*left as usize);
                let n = self.inner.read(&mut out[..want])?;
                if n == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "RDB transfer cut short"));
                }
                *left -= n as u64;
                Ok(n)
            }
            Framing::Mark { mark, pending, start, done } => loop {
                let held = pending.len() - *start;
                let ready = if *done { held } else { held.saturating_sub(MARK_LEN) };
                if ready > 0 || *done || out.is_empty() {
                    let n = ready.min(out.len());
                    out[..n].copy_from_slice(&pending[*start..*start + n]);
                    *start += n;
                    return Ok(n);
                }
                // At most MARK_LEN bytes are held: moving them to the front is cheap.
                pending.drain(..*start);
                *start = 0;
                let buf = self.inner.fill_buf()?;
                if buf.is_empty() {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "RDB transfer cut short"));
                }
                let old = pending.len();
                pending.extend_from_slice(buf);
                let taken = buf.len();
                self.inner.consume(taken);
                // The mark can only end in what just arrived; anything after it is not ours.
                let from = old.saturating_sub(MARK_LEN - 1);
                if let Some(at) = memchr::memmem::find(&pending[from..], mark) {
                    pending.truncate(from + at);
                    *done = true;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(framing: Framing, wire: &[u8], read_size: usize) -> Vec<u8> {
        let mut inner = std::io::BufReader::with_capacity(7, wire);
        let mut p = RdbPayload { inner: &mut inner, framing };
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            let n = p.read(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn both_framings_yield_exactly_the_rdb() {
        let rdb: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mark = b"0123456789abcdef0123456789abcdef01234567".to_vec();
        let mut wire = rdb.clone();
        wire.extend_from_slice(&mark);
        wire.extend_from_slice(b"*1\r\n$4\r\nPING\r\n"); // the replication stream that may follow
        for read_size in [1, 3, 40, 41, 4096] {
            let got = payload(
                Framing::Mark { mark: mark.clone(), pending: Vec::new(), start: 0, done: false },
                &wire,
                read_size,
            );
            assert_eq!(got, rdb, "read size {read_size}");
            let got = payload(Framing::Length { left: rdb.len() as u64 }, &wire, read_size);
            assert_eq!(got, rdb);
        }
    }
}
