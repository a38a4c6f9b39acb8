//! pg_dump's custom archive format, as far as a parallel restore needs it: the header, the table of
//! contents (TOC), and where each entry's data block lies in the stream.
//!
//! pg_dump writing to a pipe cannot go back and fill in the TOC's data offsets, so `pg_restore -j` would
//! have to scan the whole archive for every table. Instead, the backup watches the stream go by
//! ([`LayoutScanner`]) and records where the TOC ends and where each data block starts and ends
//! ([`ArchiveLayout`], kept in the snapshot's facts). A restore then reads each block straight out of the
//! repository, and can patch the offsets into a TOC ([`Toc::set_offsets`]).
//!
//! The layout follows `pg_backup_archiver.c` / `pg_backup_custom.c` for archive versions 1.12–1.16
//! (PostgreSQL 9.0 to 17): integers are a sign byte and `int_size` little-endian bytes, strings an
//! integer length (−1 for NULL) and the bytes; a data block is a type byte, the entry's dump ID, then
//! length-prefixed chunks ending with a zero length (large-object blocks: per object its OID, then chunks,
//! ending with OID 0).

use serde::{Deserialize, Serialize};

const MAGIC: &[u8] = b"PGDMP";
const FORMAT_CUSTOM: u8 = 1;
const BLOCK_DATA: u8 = 1;
const BLOCK_LARGE_OBJECTS: u8 = 3;
const OFFSET_SET: u8 = 2;
const OFFSET_NO_DATA: u8 = 3;

/// TOC entry sections, as pg_dump numbers them.
pub const SECTION_PRE_DATA: i64 = 2;
pub const SECTION_DATA: i64 = 3;
pub const SECTION_POST_DATA: i64 = 4;

/// Where the parts of a custom-format archive lie in the stored stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveLayout {
    /// Bytes of header and TOC; the first data block starts here.
    pub toc_end: u64,
    /// Every data block in stream order.
    pub blocks: Vec<DataBlock>,
}

/// One data block: `[dump ID, offset, length]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataBlock(pub i64, pub u64, pub u64);

impl DataBlock {
    pub fn dump_id(&self) -> i64 {
        self.0
    }
    pub fn offset(&self) -> u64 {
        self.1
    }
    pub fn len(&self) -> u64 {
        self.2
    }
    pub fn is_empty(&self) -> bool {
        self.2 == 0
    }
    pub fn end(&self) -> u64 {
        self.1 + self.2
    }
}

/// One TOC entry, with what restoring needs to know of it.
#[derive(Debug, Clone)]
pub struct TocEntry {
    pub dump_id: i64,
    pub desc: String,
    pub tag: String,
    pub section: i64,
    /// The schema it lives in (none for schemas themselves, large objects, …).
    pub namespace: Option<String>,
    /// Where the entry's data-offset field (flag byte, then `off_size` bytes) lies in the archive.
    offset_field: usize,
    pub has_data: bool,
}

/// The parsed header and TOC of an archive.
#[derive(Debug, Clone)]
pub struct Toc {
    pub version: (u8, u8, u8),
    int_size: usize,
    off_size: usize,
    pub entries: Vec<TocEntry>,
    /// Bytes of header and TOC.
    pub end: usize,
}

#[derive(Debug)]
enum Fault {
    /// The buffer ends before the TOC does.
    Short,
    Bad(String),
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    int_size: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, Fault> {
        let b = *self.buf.get(self.pos).ok_or(Fault::Short)?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], Fault> {
        let end = self.pos.checked_add(n).ok_or_else(|| Fault::Bad("length overflows".into()))?;
        let s = self.buf.get(self.pos..end).ok_or(Fault::Short)?;
        self.pos = end;
        Ok(s)
    }

    fn int(&mut self) -> Result<i64, Fault> {
        let negative = self.byte()? != 0;
        let mut value = 0i64;
        for (i, b) in self.bytes(self.int_size)?.iter().enumerate() {
            if i < 8 {
                value |= (*b as i64) << (8 * i);
            }
        }
        Ok(if negative { -value } else { value })
    }

    fn string(&mut self) -> Result<Option<String>, Fault> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| Fault::Bad(format!("string length {len}")))?;
        Ok(Some(String::from_utf8_lossy(self.bytes(len)?).into_owned()))
    }
}

/// Parses the header and TOC at the start of `buf`. `Ok(None)`: `buf` ends before the TOC does.
pub fn parse_toc(buf: &[u8]) -> Result<Option<Toc>, String> {
    match parse(buf) {
        Ok(toc) => Ok(Some(toc)),
        Err(Fault::Short) => Ok(None),
        Err(Fault::Bad(why)) => Err(why),
    }
}

fn parse(buf: &[u8]) -> Result<Toc, Fault> {
    let mut c = Cursor { buf, pos: 0, int_size: 4 };
    if c.bytes(MAGIC.len())? != MAGIC {
        return Err(Fault::Bad("not a pg_dump archive (no PGDMP magic)".into()));
    }
    let version = (c.byte()?, c.byte()?, c.byte()?);
    let v = (version.0, version.1);
    if !((1, 12)..=(1, 16)).contains(&v) {
        return Err(Fault::Bad(format!("archive version {}.{} is not one bunker reads", v.0, v.1)));
    }
    c.int_size = c.byte()? as usize;
    let off_size = c.byte()? as usize;
    if !(1..=16).contains(&c.int_size) || !(1..=16).contains(&off_size) {
        return Err(Fault::Bad(format!("integer size {} / offset size {off_size}", c.int_size)));
    }
    if c.byte()? != FORMAT_CUSTOM {
        return Err(Fault::Bad("not a custom-format archive".into()));
    }
    if v >= (1, 15) {
        c.byte()?; // compression algorithm
    } else {
        c.int()?; // compression level
    }
    for _ in 0..7 {
        c.int()?; // creation time: sec, min, hour, mday, mon, year, isdst
    }
    c.string()?; // database name
    c.string()?; // server version
    c.string()?; // pg_dump version

    let count = c.int()?;
    if count < 0 {
        return Err(Fault::Bad(format!("TOC entry count {count}")));
    }
    let mut entries = Vec::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        let dump_id = c.int()?;
        if dump_id <= 0 {
            return Err(Fault::Bad(format!("TOC entry ID {dump_id}")));
        }
        c.int()?; // had dumper
        c.string()?; // catalog table OID
        c.string()?; // OID
        let tag = c.string()?.unwrap_or_default();
        let desc = c.string()?.unwrap_or_default();
        let section = c.int()?;
        c.string()?; // defn
        c.string()?; // drop statement
        c.string()?; // copy statement
        let namespace = c.string()?.filter(|n| !n.is_empty());
        c.string()?; // tablespace
        if v >= (1, 14) {
            c.string()?; // table access method
        }
        if v >= (1, 16) {
            c.int()?; // relkind
        }
        c.string()?; // owner
        c.string()?; // "with oids"
        while c.string()?.is_some() {} // dependencies, ending with NULL
        let offset_field = c.pos;
        let state = c.byte()?;
        c.bytes(off_size)?;
        entries.push(TocEntry {
            dump_id,
            desc,
            tag,
            section,
            namespace,
            offset_field,
            has_data: state != OFFSET_NO_DATA,
        });
    }
    Ok(Toc { version, int_size: c.int_size, off_size, entries, end: c.pos })
}

impl Toc {
    /// Writes each block's offset into the TOC at the start of `archive`, so that pg_restore can seek to
    /// the blocks instead of scanning for them.
    pub fn set_offsets(&self, archive: &mut [u8], blocks: &[DataBlock]) {
        let by_id: std::collections::HashMap<i64, &TocEntry> = self.entries.iter().map(|e| (e.dump_id, e)).collect();
        for block in blocks {
            let Some(entry) = by_id.get(&block.dump_id()) else { continue };
            let field = &mut archive[entry.offset_field..entry.offset_field + 1 + self.off_size];
            field[0] = OFFSET_SET;
            for (i, b) in field[1..].iter_mut().enumerate() {
                *b = if i < 8 { (block.offset() >> (8 * i)) as u8 } else { 0 };
            }
        }
    }
}

/// Watches an archive stream go by and works out its [`ArchiveLayout`]. Anything it does not understand
/// makes [`LayoutScanner::finish`] return `None`; the archive itself is never affected.
pub struct LayoutScanner {
    /// Bytes seen before the TOC was parsed.
    head: Vec<u8>,
    next_attempt: usize,
    int_size: usize,
    pos: u64,
    state: Walk,
    /// Bytes of a partly seen integer.
    partial: Vec<u8>,
    current: Option<(i64, u64)>,
    layout: ArchiveLayout,
    failed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    Toc,
    BlockType,
    BlockId {
        large_objects: bool,
    },
    /// Large-object blocks: the next object's OID, or 0 for the end of the block.
    ObjectId,
    ChunkLength {
        large_objects: bool,
    },
    Chunk {
        left: u64,
        large_objects: bool,
    },
}

impl Default for LayoutScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl LayoutScanner {
    pub fn new() -> Self {
        LayoutScanner {
            head: Vec::new(),
            next_attempt: 4096,
            int_size: 4,
            pos: 0,
            state: Walk::Toc,
            partial: Vec::new(),
            current: None,
            layout: ArchiveLayout { toc_end: 0, blocks: Vec::new() },
            failed: false,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        if self.state == Walk::Toc {
            self.head.extend_from_slice(bytes);
            // Re-parse only when the buffer has doubled: a large TOC costs linear time, not quadratic.
            if self.head.len() < self.next_attempt {
                return;
            }
            self.parse_head();
            return;
        }
        self.walk(bytes);
    }

    /// Parses the TOC from the bytes seen so far and walks whatever follows it.
    fn parse_head(&mut self) {
        match parse(&self.head) {
            Ok(toc) => {
                self.int_size = toc.int_size;
                self.layout.toc_end = toc.end as u64;
                self.pos = toc.end as u64;
                self.state = Walk::BlockType;
                let rest = std::mem::take(&mut self.head).split_off(toc.end);
                self.walk(&rest);
            }
            Err(Fault::Short) => self.next_attempt = self.head.len() * 2,
            Err(Fault::Bad(why)) => self.fail(&why),
        }
    }

    fn walk(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.failed {
            let used = self.step(bytes);
            bytes = &bytes[used..];
        }
    }

    /// Takes what it can of `bytes` for the current state; returns how many it took.
    fn step(&mut self, bytes: &[u8]) -> usize {
        match self.state {
            Walk::Toc => unreachable!("the TOC is parsed from the head buffer"),
            Walk::Chunk { left, large_objects } => {
                let take = left.min(bytes.len() as u64);
                self.pos += take;
                self.state = if take == left {
                    Walk::ChunkLength { large_objects }
                } else {
                    Walk::Chunk { left: left - take, large_objects }
                };
                take as usize
            }
            Walk::BlockType => {
                let start = self.pos;
                self.pos += 1;
                let large_objects = match bytes[0] {
                    BLOCK_DATA => false,
                    BLOCK_LARGE_OBJECTS => true,
                    other => {
                        self.fail(&format!("unknown block type {other} at byte {start}"));
                        return 1;
                    }
                };
                self.current = Some((0, start));
                self.state = Walk::BlockId { large_objects };
                1
            }
            _ => {
                let need = 1 + self.int_size - self.partial.len();
                let take = need.min(bytes.len());
                self.partial.extend_from_slice(&bytes[..take]);
                self.pos += take as u64;
                if self.partial.len() == 1 + self.int_size {
                    let value = self.take_int();
                    self.on_int(value);
                }
                take
            }
        }
    }

    fn take_int(&mut self) -> i64 {
        let mut c = Cursor { buf: &self.partial, pos: 0, int_size: self.int_size };
        let v = c.int().expect("a whole integer was buffered");
        self.partial.clear();
        v
    }

    fn on_int(&mut self, value: i64) {
        self.state = match self.state {
            Walk::BlockId { large_objects } => {
                if let Some(current) = &mut self.current {
                    current.0 = value;
                }
                if large_objects {
                    Walk::ObjectId
                } else {
                    Walk::ChunkLength { large_objects }
                }
            }
            Walk::ObjectId if value == 0 => self.end_block(),
            Walk::ObjectId => Walk::ChunkLength { large_objects: true },
            Walk::ChunkLength { large_objects } if value == 0 => {
                if large_objects {
                    Walk::ObjectId
                } else {
                    self.end_block()
                }
            }
            Walk::ChunkLength { large_objects } if value > 0 => Walk::Chunk { left: value as u64, large_objects },
            Walk::ChunkLength { .. } => {
                self.fail(&format!("negative chunk length {value}"));
                Walk::BlockType
            }
            other => other,
        };
    }

    fn end_block(&mut self) -> Walk {
        if let Some((id, start)) = self.current.take() {
            self.layout.blocks.push(DataBlock(id, start, self.pos - start));
        }
        Walk::BlockType
    }

    fn fail(&mut self, why: &str) {
        tracing::debug!("archive layout not recorded: {why}");
        self.failed = true;
    }

    /// The layout, when the stream ended cleanly between blocks.
    pub fn finish(mut self) -> Option<ArchiveLayout> {
        if self.state == Walk::Toc && !self.failed {
            self.parse_head();
        }
        (!self.failed && self.state == Walk::BlockType && self.partial.is_empty()).then_some(self.layout)
    }
}

/// A reader that shows every byte it passes on to a [`LayoutScanner`].
pub struct Scanned<R> {
    inner: R,
    pub scanner: LayoutScanner,
}

impl<R> Scanned<R> {
    pub fn new(inner: R) -> Self {
        Scanned { inner, scanner: LayoutScanner::new() }
    }
}

impl<R: std::io::Read> std::io::Read for Scanned<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scanner.feed(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an archive the way pg_dump 15 (version 1.14) writes one to a pipe.
    struct Writer(Vec<u8>);

    impl Writer {
        fn int(&mut self, v: i64) {
            self.0.push((v < 0) as u8);
            self.0.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        }
        fn string(&mut self, s: Option<&str>) {
            match s {
                None => self.int(-1),
                Some(s) => {
                    self.int(s.len() as i64);
                    self.0.extend_from_slice(s.as_bytes());
                }
            }
        }
        fn entry(&mut self, id: i64, desc: &str, section: i64, data: bool) {
            self.int(id);
            self.int(data as i64);
            self.string(Some("1259"));
            self.string(Some("16384"));
            self.string(Some("t"));
            self.string(Some(desc));
            self.int(section);
            for s in ["CREATE ...", "DROP ...", "", "public", ""] {
                self.string(Some(s));
            }
            self.string(Some("heap"));
            self.string(Some("owner"));
            self.string(Some("false"));
            self.string(Some("1"));
            self.string(None);
            self.0.push(if data { 1 } else { OFFSET_NO_DATA });
            self.0.extend_from_slice(&[0; 8]);
        }
    }

    fn archive() -> (Vec<u8>, ArchiveLayout) {
        let mut w = Writer(Vec::new());
        w.0.extend_from_slice(b"PGDMP");
        w.0.extend_from_slice(&[1, 14, 0, 4, 8, FORMAT_CUSTOM]);
        w.int(0);
        for v in [1, 2, 3, 4, 5, 2026, 0] {
            w.int(v);
        }
        for s in ["app", "15.1", "15.1"] {
            w.string(Some(s));
        }
        w.int(3);
        w.entry(1, "TABLE", SECTION_PRE_DATA, false);
        w.entry(2, "TABLE DATA", SECTION_DATA, true);
        w.entry(3, "BLOBS", SECTION_DATA, true);
        let toc_end = w.0.len() as u64;
        let first = w.0.len() as u64;
        w.0.push(BLOCK_DATA);
        w.int(2);
        for row in ["1\tone\n", "2\ttwo\n"] {
            w.int(row.len() as i64);
            w.0.extend_from_slice(row.as_bytes());
        }
        w.int(0);
        let second = w.0.len() as u64;
        w.0.push(BLOCK_LARGE_OBJECTS);
        w.int(3);
        for oid in [16500, 16501] {
            w.int(oid);
            w.int(3);
            w.0.extend_from_slice(b"abc");
            w.int(0);
        }
        w.int(0);
        let end = w.0.len() as u64;
        let layout = ArchiveLayout {
            toc_end,
            blocks: vec![DataBlock(2, first, second - first), DataBlock(3, second, end - second)],
        };
        (w.0, layout)
    }

    #[test]
    fn the_layout_is_found_whatever_the_read_sizes() {
        let (bytes, expected) = archive();
        for piece in [1, 2, 7, 64, 4096, bytes.len()] {
            let mut scanner = LayoutScanner::new();
            scanner.next_attempt = 1;
            for part in bytes.chunks(piece) {
                scanner.feed(part);
            }
            assert_eq!(scanner.finish(), Some(expected.clone()), "pieces of {piece}");
        }
        // An archive smaller than the first parse attempt is parsed at `finish`.
        let mut scanner = LayoutScanner::new();
        scanner.feed(&bytes);
        assert_eq!(scanner.finish(), Some(expected));
    }

    #[test]
    fn a_truncated_or_unknown_archive_has_no_layout() {
        let (bytes, _) = archive();
        let mut scanner = LayoutScanner::new();
        scanner.next_attempt = 1;
        scanner.feed(&bytes[..bytes.len() - 3]);
        assert_eq!(scanner.finish(), None);
        let mut scanner = LayoutScanner::new();
        scanner.next_attempt = 1;
        scanner.feed(b"-- plain SQL, not an archive\n");
        assert_eq!(scanner.finish(), None);
    }

    #[test]
    fn the_toc_parses_and_takes_offsets() {
        let (mut bytes, layout) = archive();
        let toc = parse_toc(&bytes).unwrap().unwrap();
        assert_eq!(toc.end as u64, layout.toc_end);
        assert_eq!(toc.version, (1, 14, 0));
        let descs: Vec<(&str, i64, bool)> =
            toc.entries.iter().map(|e| (e.desc.as_str(), e.section, e.has_data)).collect();
        assert_eq!(descs, [("TABLE", 2, false), ("TABLE DATA", 3, true), ("BLOBS", 3, true)]);
        assert!(parse_toc(&bytes[..toc.end - 1]).unwrap().is_none());
        toc.set_offsets(&mut bytes, &layout.blocks);
        let patched = parse_toc(&bytes).unwrap().unwrap();
        let field = patched.entries[2].offset_field;
        assert_eq!(bytes[field], OFFSET_SET);
        assert_eq!(u64::from_le_bytes(bytes[field + 1..field + 9].try_into().unwrap()), layout.blocks[1].offset());
    }
}
