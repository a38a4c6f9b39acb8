//! Content-defined chunking (FastCDC 2020) over any `Read`, yielding zero-copy slices of large read
//! buffers. A cut is only taken once the whole window after it was seen, so boundaries never depend on
//! how the input arrived (pipe sizes, read lengths): the same content always chunks the same way.

use std::io::Read;

use bytes::{Bytes, BytesMut};
use fastcdc::v2020::{FastCDC, Normalization};
use serde::{Deserialize, Serialize};

/// Chunk size bounds, chosen at `init` and recorded in the repository config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams { min_size: 512 * 1024, avg_size: 1024 * 1024, max_size: 4 * 1024 * 1024 }
    }
}

impl ChunkerParams {
    /// Bounds `FINE_FACTOR` times smaller (kept within FastCDC's limits), for inputs whose day-to-day
    /// changes are scattered thinly across their whole length, like database dumps.
    pub fn fine(self) -> ChunkerParams {
        use fastcdc::v2020::*;
        ChunkerParams {
            min_size: (self.min_size / FINE_FACTOR).clamp(MINIMUM_MIN, MINIMUM_MAX),
            avg_size: (self.avg_size / FINE_FACTOR).clamp(AVERAGE_MIN, AVERAGE_MAX),
            max_size: (self.max_size / FINE_FACTOR).clamp(MAXIMUM_MIN, MAXIMUM_MAX),
        }
    }

    /// Fixed-size chunks of `size` bytes (the last one shorter), for files changed in place a page at a
    /// time, like a database's relation files: a changed page changes exactly one chunk, and no content
    /// ever shifts.
    pub fn fixed(size: u32) -> ChunkerParams {
        ChunkerParams { min_size: size, avg_size: size, max_size: size }
    }

    fn is_fixed(&self) -> bool {
        self.min_size == self.max_size
    }

    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::*;
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunk sizes min {} / avg {} / max {} are out of range (min {MINIMUM_MIN}..={MINIMUM_MAX}, avg {AVERAGE_MIN}..={AVERAGE_MAX}, max {MAXIMUM_MIN}..={MAXIMUM_MAX}, min ≤ avg ≤ max)",
                self.min_size, self.avg_size, self.max_size
            ))
        }
    }
}

/// How much smaller [`ChunkerParams::fine`] chunks are.
pub const FINE_FACTOR: u32 = 16;

/// The first buffer of an input of unknown length. Many streams are small (a command's output, an
/// object); a full read buffer (tens of MiB, zero-filled) for each of them would cost more than the rest
/// of their backup. Longer inputs continue with full-size buffers after it.
const FIRST_READ: usize = 1 << 20;

pub struct Chunker<R> {
    reader: R,
    params: ChunkerParams,
    seed: u64,
    buf: Bytes,
    pos: usize,
    eof: bool,
    read_size: usize,
    /// Size of the first buffer: the input's length when known, else [`FIRST_READ`].
    first_read: Option<usize>,
    /// Earlier buffers, reused once every chunk cut from them is gone (no zero-filling, no page faults).
    retired: Vec<Bytes>,
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R, params: ChunkerParams, seed: u64) -> Self {
        let read_size = (params.max_size as usize * 4).max(8 << 20);
        Chunker {
            reader,
            params,
            seed,
            buf: Bytes::new(),
            pos: 0,
            eof: false,
            read_size,
            first_read: Some(FIRST_READ.min(read_size)),
            retired: Vec::new(),
        }
    }

    /// For input of a known length (a file): a small input gets a buffer its size (plus one byte, to see
    /// the end in one read) instead of a full read buffer.
    pub fn with_size_hint(mut self, len: u64) -> Self {
        self.first_read = Some((len as usize).saturating_add(1).min(self.read_size));
        self
    }

    /// The next chunk, `None` at the end of input.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            let avail = self.buf.len() - self.pos;
            if avail >= self.params.max_size as usize || (self.eof && avail > 0) {
                if self.params.is_fixed() {
                    let len = avail.min(self.params.max_size as usize);
                    let chunk = self.buf.slice(self.pos..self.pos + len);
                    self.pos += len;
                    return Ok(Some(chunk));
                }
                let data = &self.buf[self.pos..];
                let cdc = FastCDC::with_level_and_seed(
                    data,
                    self.params.min_size,
                    self.params.avg_size,
                    self.params.max_size,
                    Normalization::Level1,
                    self.seed,
                );
                let (_, len) = cdc.cut(0, data.len());
                let chunk = self.buf.slice(self.pos..self.pos + len);
                self.pos += len;
                return Ok(Some(chunk));
            }
            if self.eof {
                return Ok(None);
            }
            self.refill()?;
        }
    }

    /// Moves the unconsumed tail into a fresh (or recycled) buffer and fills the rest from the reader.
    fn refill(&mut self) -> std::io::Result<()> {
        let tail_len = self.buf.len() - self.pos;
        let want = self.first_read.take().unwrap_or(self.read_size).max(tail_len * 2);
        let mut next = self.recycled(want).unwrap_or_else(|| {
            let mut b = BytesMut::with_capacity(want);
            b.resize(want, 0);
            b
        });
        next[..tail_len].copy_from_slice(&self.buf[self.pos..]);
        let mut filled = tail_len;
        while filled < next.len() {
            match self.reader.read(&mut next[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        next.truncate(filled);
        let old = std::mem::replace(&mut self.buf, next.freeze());
        if self.retired.len() < 4 && !old.is_empty() {
            self.retired.push(old);
        }
        self.pos = 0;
        Ok(())
    }

    /// A retired buffer of at least `len` bytes that no chunk refers to any more. Its bytes are already
    /// initialised, so it is reused as it is: no zero-filling, no fresh pages from the kernel.
    fn recycled(&mut self, len: usize) -> Option<BytesMut> {
        let at = self.retired.iter().position(|b| b.len() >= len && b.is_unique())?;
        let mut buf = self.retired.swap_remove(at).try_into_mut().ok()?;
        buf.truncate(len);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per read, like a pipe.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn chunks(data: &[u8], step: usize, params: ChunkerParams) -> Vec<Bytes> {
        let mut c = Chunker::new(Trickle(data, step), params, 42);
        let mut out = Vec::new();
        while let Some(ch) = c.next_chunk().unwrap() {
            out.push(ch);
        }
        out
    }

    #[test]
    fn boundaries_do_not_depend_on_read_sizes() {
        let params = ChunkerParams { min_size: 4096, avg_size: 16384, max_size: 65536 };
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let a = chunks(&data, 1 << 20, params);
        let b = chunks(&data, 4093, params);
        assert_eq!(a, b);
        assert_eq!(a.concat(), data);
        assert!(a.iter().all(|c| c.len() <= 65536));
        assert!(a[..a.len() - 1].iter().all(|c| c.len() >= 4096));
    }

    #[test]
    fn size_hints_change_buffers_not_boundaries() {
        let params = ChunkerParams { min_size: 4096, avg_size: 16384, max_size: 65536 };
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
        let plain = chunks(&data, 1 << 20, params);
        for hint in [0, 10, 999_999, 1_000_000, 5_000_000] {
            let mut c = Chunker::new(&data[..], params, 42).with_size_hint(hint);
            let mut out = Vec::new();
            while let Some(ch) = c.next_chunk().unwrap() {
                out.push(ch);
            }
            assert_eq!(out, plain, "hint {hint}");
        }
    }

    #[test]
    fn fixed_chunks_are_aligned_whatever_the_reads() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for step in [1000, 65536, 1 << 20] {
            let out = chunks(&data, step, ChunkerParams::fixed(65536));
            let lens: Vec<usize> = out.iter().map(|c| c.len()).collect();
            assert_eq!(lens, [65536, 65536, 65536, 65536, 300_000 - 4 * 65536], "step {step}");
            assert_eq!(out.concat(), data);
        }
    }

    #[test]
    fn empty_and_tiny_inputs() {
        let p = ChunkerParams::default();
        assert!(chunks(&[], 10, p).is_empty());
        assert_eq!(chunks(&[7], 10, p), vec![Bytes::from_static(&[7])]);
    }

    #[test]
    fn default_params_are_valid() {
        ChunkerParams::default().validate().unwrap();
        assert!(ChunkerParams { min_size: 10, avg_size: 5, max_size: 1 }.validate().is_err());
    }
}
