//! The write-ahead log archive: `archive_command` pushes each finished segment (and `.history`,
//! `.backup` and `.partial` files) into the repository as a write-once object named
//! `wal/<target>/<file name>`; `restore_command` fetches them back, a batch ahead; `wal verify` walks
//! every timeline for gaps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bunker_engine::objects::PutOutcome;
use bunker_engine::{Error, Repository};

/// The object namespace of archived WAL.
pub const NAMESPACE: &str = "wal";

/// A file name PostgreSQL archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WalName {
    /// `TTTTTTTTXXXXXXXXYYYYYYYY`, optionally `.partial` (the last, incomplete segment of a timeline
    /// that was promoted away from).
    Segment { segment: Segment, partial: bool },
    /// `TTTTTTTT.history`: how a timeline branched off its parent.
    History { timeline: u32 },
    /// `<segment>.<offset>.backup`: the backup history file of a base backup.
    Backup { segment: Segment, offset: u32 },
}

/// One WAL segment: timeline, and its position counted in segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub timeline: u32,
    /// `log * segments_per_log + seg`: the segment number on the timeline.
    pub number: u64,
}

/// PostgreSQL's default segment size; others are read from the segments themselves.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

impl Segment {
    pub fn parse(name: &str, segment_size: u64) -> Option<Segment> {
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let timeline = u32::from_str_radix(&name[0..8], 16).ok()?;
        let log = u64::from_str_radix(&name[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
        let per_log = per_log(segment_size);
        (timeline > 0 && seg < per_log).then_some(Segment { timeline, number: log * per_log + seg })
    }

    pub fn name(&self, segment_size: u64) -> String {
        let per_log = per_log(segment_size);
        format!("{:08X}{:08X}{:08X}", self.timeline, self.number / per_log, self.number % per_log)
    }

    /// The segment holding `lsn` on `timeline`.
    pub fn of_lsn(timeline: u32, lsn: u64, segment_size: u64) -> Segment {
        Segment { timeline, number: lsn / segment_size }
    }

    pub fn next(&self) -> Segment {
        Segment { timeline: self.timeline, number: self.number + 1 }
    }
}

fn per_log(segment_size: u64) -> u64 {
    0x1_0000_0000 / segment_size
}

impl WalName {
    pub fn parse(name: &str, segment_size: u64) -> Option<WalName> {
        if let Some(seg) = Segment::parse(name, segment_size) {
            return Some(WalName::Segment { segment: seg, partial: false });
        }
        if let Some(base) = name.strip_suffix(".partial") {
            return Segment::parse(base, segment_size).map(|segment| WalName::Segment { segment, partial: true });
        }
        if let Some(tli) = name.strip_suffix(".history") {
            if tli.len() == 8 && tli.bytes().all(|b| b.is_ascii_hexdigit()) {
                return u32::from_str_radix(tli, 16).ok().map(|timeline| WalName::History { timeline });
            }
        }
        if let Some(rest) = name.strip_suffix(".backup") {
            let (seg, off) = rest.split_once('.')?;
            let offset = u32::from_str_radix(off, 16).ok().filter(|_| off.len() == 8)?;
            return Segment::parse(seg, segment_size).map(|segment| WalName::Backup { segment, offset });
        }
        None
    }
}

/// Parses `X/Y` into an LSN.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// What the long header at the start of a WAL segment says (`XLogLongPageHeaderData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub timeline: u32,
    pub system_identifier: u64,
    pub segment_size: u32,
}

/// Reads a segment's long page header; `None` when the bytes do not start with one (an all-zero,
/// recycled file).
pub fn segment_header(bytes: &[u8]) -> Option<SegmentHeader> {
    const XLP_LONG_HEADER: u16 = 0x0002;
    if bytes.len() < 40 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes(bytes[o..o + 2].try_into().expect("2 bytes"));
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let magic = u16_at(0);
    let info = u16_at(2);
    // Magic numbers of PostgreSQL 9.6 (0xD093) onwards grow by one per WAL format change.
    if !(0xD093..0xD200).contains(&magic) || info & XLP_LONG_HEADER == 0 {
        return None;
    }
    let segment_size = u32_at(32);
    // PostgreSQL allows powers of two from 1 MiB to 1 GiB; anything else is not a segment header.
    if !segment_size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&segment_size) {
        return None;
    }
    Some(SegmentHeader {
        timeline: u32_at(4),
        system_identifier: u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes")),
        segment_size,
    })
}

fn object_name(target: &str, file: &str) -> String {
    format!("{target}/{file}")
}

/// What `wal-push` did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub file: String,
    pub bytes: u64,
    pub outcome: PutOutcome,
}

/// Archives one file PostgreSQL hands to `archive_command`. A segment is checked first: it must be
/// whole and its header must not name a later timeline than its file name (a truncated or foreign file
/// is refused, never stored).
pub fn push(repo: &Repository, target: &str, path: &Path) -> Result<Pushed, Error> {
    use std::io::Read;
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::invalid("WAL file", format!("{}: no file name", path.display())))?
        .to_string();
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut head = Vec::with_capacity(8192);
    (&mut f).take(8192).read_to_end(&mut head).map_err(|e| Error::io(path, e))?;
    let header = segment_header(&head);
    let kind = WalName::parse(&file, DEFAULT_SEGMENT_SIZE).or_else(|| {
        // Non-default segment sizes: trust the header's size to parse the name.
        header.and_then(|h| WalName::parse(&file, h.segment_size as u64))
    });
    let Some(kind) = kind else {
        return Err(Error::invalid(
            "WAL file",
            format!(
                "{file:?} is not a WAL segment, .history, .backup or .partial file name; archive_command must pass %p"
            ),
        ));
    };
    if let WalName::Segment { segment, partial: false } = kind {
        let header = header.ok_or_else(|| {
            Error::invalid("WAL segment", format!("{file} does not start with a WAL page header; not archived"))
        })?;
        // The first segment of a new timeline starts with its parent's pages (copied up to the switch
        // point), so its header may name an older timeline, never a newer one.
        if header.timeline > segment.timeline || len != header.segment_size as u64 {
            return Err(Error::invalid(
                "WAL segment",
                format!(
                    "{file} holds {len} bytes of timeline {} (its header says {} bytes); not archived",
                    header.timeline, header.segment_size
                ),
            ));
        }
    }
    if let Some(header) = header {
        check_system(repo, target, header.system_identifier)?;
    }
    let name = object_name(target, &file);
    // A repeat (a push retried, or pushed ahead by --parallel) costs a 32-byte read and a hash of the
    // file read in steps; a new segment is read once.
    if let Some(stored) = repo.object_content_id(NAMESPACE, &name)? {
        let id = repo.object_id_of(std::io::Cursor::new(&head).chain(&mut f)).map_err(|e| Error::io(path, e))?;
        if id == stored {
            return Ok(Pushed { file, bytes: len, outcome: PutOutcome::AlreadyStored });
        }
        return Err(Error::ObjectConflict { path: format!("objects/{NAMESPACE}/{name}") });
    }
    let mut bytes = head;
    f.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    let outcome = repo.put_object(NAMESPACE, &name, &bytes)?;
    Ok(Pushed { file, bytes: bytes.len() as u64, outcome })
}

/// The first segment pushed for a target records its cluster's system identifier
/// (`<target>/SYSTEM_IDENTIFIER`); segments of another cluster are refused from then on. Costs a 32-byte
/// read per push.
fn check_system(repo: &Repository, target: &str, system_identifier: u64) -> Result<(), Error> {
    let name = object_name(target, "SYSTEM_IDENTIFIER");
    let text = system_identifier.to_string();
    match repo.object_matches(NAMESPACE, &name, &repo.object_id(text.as_bytes()))? {
        Some(true) => Ok(()),
        None => repo.put_object(NAMESPACE, &name, text.as_bytes()).map(|_| ()).map_err(|e| match e {
            Error::ObjectConflict { .. } => foreign(target, system_identifier),
            other => other,
        }),
        Some(false) => Err(foreign(target, system_identifier)),
    }
}

fn foreign(target: &str, system_identifier: u64) -> Error {
    Error::invalid(
        "WAL segment",
        format!(
            "it comes from the cluster with system identifier {system_identifier}, not the one target {target} archives; \
             a restored copy or another server is archiving under this target: give it its own --target, or set archive_mode = off there"
        ),
    )
}

/// The `.ready` files after `file` in `pg_wal/archive_status`, oldest first, at most `n`: segments
/// PostgreSQL will ask to archive next, which `wal-push --parallel` pushes ahead.
pub fn ready_after(wal_dir: &Path, file: &str, n: usize) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(wal_dir.join("archive_status")) else { return Vec::new() };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".ready")).map(str::to_owned))
        .filter(|n| n.as_str() > file && Segment::parse(n, DEFAULT_SEGMENT_SIZE).is_some())
        .collect();
    names.sort();
    names.truncate(n);
    names.into_iter().map(|n| wal_dir.join(n)).collect()
}

/// What `wal-fetch` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Written to the destination, from the repository or from the prefetch spool.
    Found { from_spool: bool },
    /// Not archived: recovery has reached the end of the archive.
    NotArchived,
}

/// Fetches `file` into `dest` for `restore_command`. On a miss in `spool`, the next `prefetch` segments
/// of the same timeline are fetched too, in parallel, and kept in `spool` for the calls that follow.
pub fn fetch(
    repo: &Repository,
    target: &str,
    file: &str,
    dest: &Path,
    spool: &Path,
    prefetch: usize,
) -> Result<Fetched, Error> {
    let spooled = spool.join(file);
    if spooled.is_file() && std::fs::rename(&spooled, dest).is_ok() {
        return Ok(Fetched::Found { from_spool: true });
    }
    let Some(bytes) = repo.get_object(NAMESPACE, &object_name(target, file))? else {
        return Ok(Fetched::NotArchived);
    };
    let segment_size = segment_header(&bytes).map(|h| h.segment_size as u64).unwrap_or(DEFAULT_SEGMENT_SIZE);
    let ahead: Vec<String> = match WalName::parse(file, segment_size) {
        Some(WalName::Segment { segment, partial: false }) if prefetch > 0 => {
            let mut s = segment;
            (0..prefetch)
                .map(|_| {
                    s = s.next();
                    s.name(segment_size)
                })
                .collect()
        }
        _ => Vec::new(),
    };
    std::thread::scope(|scope| -> Result<(), Error> {
        let workers: Vec<_> = ahead
            .iter()
            .map(|name| scope.spawn(move || (name, repo.get_object(NAMESPACE, &object_name(target, name)))))
            .collect();
        write_atomically(dest, &bytes)?;
        if !workers.is_empty() {
            std::fs::create_dir_all(spool).map_err(|e| Error::io(spool, e))?;
            forget_spooled_before(spool, file);
        }
        for w in workers {
            match w.join().expect("prefetch thread") {
                (name, Ok(Some(b))) => write_atomically(&spool.join(name), &b)?,
                (_, Ok(None)) => {}
                // A segment ahead that cannot be read now is fetched (and reported) when its turn comes.
                (name, Err(e)) => tracing::debug!("prefetch of {name} failed: {e}"),
            }
        }
        Ok(())
    })?;
    Ok(Fetched::Found { from_spool: false })
}

fn forget_spooled_before(spool: &Path, file: &str) {
    let Ok(rd) = std::fs::read_dir(spool) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.as_str() < file || name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = dest.with_extension(format!("bunker-{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, dest).map_err(|e| Error::io(dest, e))
}

/// The archive of one target as a listing shows it: segments per timeline, and the other files.
#[derive(Debug, Default)]
pub struct ArchiveListing {
    pub segments: BTreeMap<u32, BTreeSet<u64>>,
    pub partial: BTreeSet<Segment>,
    pub histories: BTreeSet<u32>,
    /// The newest archived file's upload time.
    pub newest: Option<std::time::SystemTime>,
    pub newest_segment: Option<Segment>,
    pub files: usize,
    pub stored_bytes: u64,
    pub segment_size: u64,
}

pub fn list(repo: &Repository, target: &str, segment_size: u64) -> Result<ArchiveListing, Error> {
    let prefix = format!("{target}/");
    let mut out = ArchiveListing { segment_size, ..Default::default() };
    for o in repo.list_objects(NAMESPACE, &prefix)? {
        let file = &o.name[prefix.len()..];
        out.files += 1;
        out.stored_bytes += o.stored_bytes;
        if o.modified > out.newest {
            out.newest = o.modified;
        }
        match WalName::parse(file, segment_size) {
            Some(WalName::Segment { segment, partial: false }) => {
                out.segments.entry(segment.timeline).or_default().insert(segment.number);
                if out.newest_segment.is_none_or(|n| segment.number >= n.number) {
                    out.newest_segment = Some(segment);
                }
            }
            Some(WalName::Segment { segment, partial: true }) => {
                out.partial.insert(segment);
            }
            Some(WalName::History { timeline }) => {
                out.histories.insert(timeline);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Deletes the archived WAL that no retained base backup needs: segments, `.partial` and `.backup` files
/// before `keep_from` (the oldest retained base backup's first segment), on every timeline (WAL
/// positions only grow across timelines). Timeline history files are kept: they are tiny, and recovery
/// needs them to follow timelines. Returns the names deleted (or, with `dry_run`, that would be).
pub fn expire(
    repo: &Repository,
    target: &str,
    keep_from: Segment,
    segment_size: u64,
    dry_run: bool,
) -> Result<Vec<String>, Error> {
    let prefix = format!("{target}/");
    let mut deleted = Vec::new();
    for o in repo.list_objects(NAMESPACE, &prefix)? {
        let file = &o.name[prefix.len()..];
        let old = match WalName::parse(file, segment_size) {
            Some(WalName::Segment { segment, .. }) | Some(WalName::Backup { segment, .. }) => {
                segment.number < keep_from.number
            }
            _ => false,
        };
        if old {
            if !dry_run {
                match repo.delete_object(NAMESPACE, &o.name) {
                    // Still under S3 Object Lock retention: a later forget expires it.
                    Err(bunker_engine::Error::Retained { .. }) => continue,
                    r => r?,
                }
            }
            deleted.push(file.to_string());
        }
    }
    Ok(deleted)
}

/// One line of a timeline history file: `parent switchpoint reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineSwitch {
    pub parent: u32,
    pub switchpoint: u64,
}

/// Parses a `.history` file: the switch points of every ancestor timeline, oldest first.
pub fn parse_history(text: &str) -> Vec<TimelineSwitch> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let parent = f.next()?.parse().ok()?;
            let switchpoint = parse_lsn(f.next()?)?;
            Some(TimelineSwitch { parent, switchpoint })
        })
        .collect()
}

/// The timeline history of `timeline` as archived (empty for timeline 1 or a missing file).
pub fn history(repo: &Repository, target: &str, timeline: u32) -> Result<Vec<TimelineSwitch>, Error> {
    if timeline <= 1 {
        return Ok(Vec::new());
    }
    let name = object_name(target, &format!("{timeline:08X}.history"));
    Ok(repo.get_object(NAMESPACE, &name)?.map(|b| parse_history(&String::from_utf8_lossy(&b))).unwrap_or_default())
}

/// A stretch of segments that must be archived for a base backup to be replayed forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub first: Segment,
    pub last: Segment,
}

/// The segments needed to replay from a base backup's first segment (`start`) through its last
/// (`stop`) and on to the newest archived segment of the timeline recovery follows: `follow`, else the
/// newest archived timeline, whose history leads back to the backup's (a timeline that does not descend
/// from the backup's is not followed: recovery would stay on the backup's own).
pub fn needed(
    repo: &Repository,
    target: &str,
    listing: &ArchiveListing,
    start: Segment,
    stop: Segment,
    follow: Option<u32>,
) -> Result<Vec<Segment>, Error> {
    let newest_tli =
        follow.unwrap_or_else(|| listing.segments.keys().copied().max().unwrap_or(start.timeline)).max(start.timeline);
    // (timeline, first, last) stretches: a parent timeline up to the segment before its switch point
    // (recovery reads the switch segment from the child), then the child from there.
    let mut chain: Vec<(u32, u64, Option<u64>)> = Vec::new();
    let mut from = start.number;
    let segment_size = listing.segment_size;
    let mut on_path = newest_tli == start.timeline;
    if !on_path {
        for sw in history(repo, target, newest_tli)? {
            // A timeline that left the backup's before the backup ended does not hold its history.
            on_path |= sw.parent == start.timeline && sw.switchpoint / segment_size >= stop.number;
            if on_path {
                let switch_segment = sw.switchpoint / segment_size;
                if switch_segment > from {
                    chain.push((sw.parent, from, Some(switch_segment - 1)));
                    from = switch_segment;
                }
            }
        }
    }
    let last_tli = if on_path { newest_tli } else { start.timeline };
    if !on_path {
        from = start.number;
        chain.clear();
    }
    chain.push((last_tli, from, None));
    let mut out = Vec::new();
    for (tli, first, last) in chain {
        let newest = listing.segments.get(&tli).and_then(|s| s.last().copied()).unwrap_or(first);
        let mut last = last.unwrap_or(newest);
        if tli == stop.timeline {
            last = last.max(stop.number);
        }
        out.extend((first..=last).map(|number| Segment { timeline: tli, number }));
    }
    Ok(out)
}

/// The newest archived timeline that holds a base backup's history (it, or one that branched off its
/// line after `stop`): what `recovery_target_timeline = 'latest'` should mean for that backup. PostgreSQL's
/// own "latest" takes the newest timeline outright, and refuses to start when that one branched off
/// before the backup (a restored copy that was promoted and archived, say).
pub fn newest_reachable_timeline(
    repo: &Repository,
    target: &str,
    listing: &ArchiveListing,
    start: Segment,
    stop: Segment,
) -> Result<u32, Error> {
    let mut candidates: Vec<u32> =
        listing.segments.keys().chain(listing.histories.iter()).copied().filter(|t| *t > start.timeline).collect();
    candidates.sort_unstable_by(|a, b| b.cmp(a));
    candidates.dedup();
    for tli in candidates {
        let descends = history(repo, target, tli)?
            .iter()
            .any(|sw| sw.parent == start.timeline && sw.switchpoint / listing.segment_size >= stop.number);
        if descends {
            return Ok(tli);
        }
    }
    Ok(start.timeline)
}

/// The needed segments the archive does not list, as stretches.
pub fn gaps(listing: &ArchiveListing, needed: &[Segment]) -> Vec<Gap> {
    let mut gaps: Vec<Gap> = Vec::new();
    for seg in needed {
        if listing.segments.get(&seg.timeline).is_some_and(|s| s.contains(&seg.number)) {
            continue;
        }
        match gaps.last_mut() {
            Some(g) if g.last.timeline == seg.timeline && g.last.number + 1 == seg.number => g.last = *seg,
            _ => gaps.push(Gap { first: *seg, last: *seg }),
        }
    }
    gaps
}

impl Gap {
    pub fn describe(&self, segment_size: u64) -> String {
        if self.first == self.last {
            self.first.name(segment_size)
        } else {
            format!("{}..{}", self.first.name(segment_size), self.last.name(segment_size))
        }
    }
}

/// Reads every segment in `segments` back (authenticated, hash-checked), `threads` at a time; returns
/// those that cannot be read, with why.
pub fn damaged(
    repo: &Repository,
    target: &str,
    segments: &[Segment],
    segment_size: u64,
    threads: usize,
) -> Vec<(Segment, String)> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let bad = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(seg) = segments.get(i) else { break };
                let name = object_name(target, &seg.name(segment_size));
                match repo.get_object(NAMESPACE, &name) {
                    Ok(Some(_)) | Ok(None) => {}
                    Err(e) => bad.lock().expect("bad list").push((*seg, e.to_string())),
                }
            });
        }
    });
    let mut bad = bad.into_inner().expect("bad list");
    bad.sort_by_key(|(s, _)| *s);
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_count_across_logs() {
        let s = Segment::parse("0000000100000002000000FF", DEFAULT_SEGMENT_SIZE).unwrap();
        assert_eq!(s, Segment { timeline: 1, number: 2 * 256 + 255 });
        assert_eq!(s.next().name(DEFAULT_SEGMENT_SIZE), "000000010000000300000000");
        assert_eq!(Segment::parse("000000010000000200000100", DEFAULT_SEGMENT_SIZE), None);
        // 64 MiB segments: 64 per log.
        let big = Segment::parse("00000002000000010000003F", 64 << 20).unwrap();
        assert_eq!(big.next().name(64 << 20), "000000020000000200000000");
        assert_eq!(Segment::of_lsn(1, parse_lsn("2/FF000028").unwrap(), DEFAULT_SEGMENT_SIZE), s);
        assert_eq!(format_lsn(parse_lsn("16/B374D848").unwrap()), "16/B374D848");
    }

    #[test]
    fn archived_file_kinds() {
        let seg = Segment { timeline: 1, number: 3 };
        assert_eq!(
            WalName::parse("000000010000000000000003", DEFAULT_SEGMENT_SIZE),
            Some(WalName::Segment { segment: seg, partial: false })
        );
        assert_eq!(
            WalName::parse("000000010000000000000003.partial", DEFAULT_SEGMENT_SIZE),
            Some(WalName::Segment { segment: seg, partial: true })
        );
        assert_eq!(WalName::parse("0000000A.history", DEFAULT_SEGMENT_SIZE), Some(WalName::History { timeline: 10 }));
        assert_eq!(
            WalName::parse("000000010000000000000003.00000028.backup", DEFAULT_SEGMENT_SIZE),
            Some(WalName::Backup { segment: seg, offset: 0x28 })
        );
        for bad in ["RECOVERYXLOG", "00000001000000000000003", "0000000G0000000000000003", "x.history", ""] {
            assert_eq!(WalName::parse(bad, DEFAULT_SEGMENT_SIZE), None, "{bad}");
        }
    }

    #[test]
    fn history_files_parse() {
        let h = "1\t0/3000158\tno recovery target specified\n\n2\t0/5000000\tat restore point \"p1\"\n";
        assert_eq!(
            parse_history(h),
            vec![
                TimelineSwitch { parent: 1, switchpoint: 0x3000158 },
                TimelineSwitch { parent: 2, switchpoint: 0x5000000 }
            ]
        );
    }

    #[test]
    fn segment_headers() {
        let mut page = vec![0u8; 8192];
        page[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        page[2..4].copy_from_slice(&0x0007u16.to_le_bytes());
        page[4..8].copy_from_slice(&3u32.to_le_bytes());
        page[24..32].copy_from_slice(&7_300_000_000_000_000_000u64.to_le_bytes());
        page[32..36].copy_from_slice(&(16u32 << 20).to_le_bytes());
        assert_eq!(
            segment_header(&page),
            Some(SegmentHeader { timeline: 3, system_identifier: 7_300_000_000_000_000_000, segment_size: 16 << 20 })
        );
        assert_eq!(segment_header(&[0u8; 8192]), None);
    }

    fn repo(dir: &Path) -> Repository {
        std::env::set_var("BUNKER_KDF_MEMORY_KIB", "1024");
        let loc = bunker_engine::storage::Location::Local(dir.to_path_buf());
        let storage = bunker_engine::storage::Storage::create(&loc).unwrap();
        Repository::init(storage, "pw", &Default::default()).unwrap()
    }

    #[test]
    fn timelines_that_branched_off_before_a_backup_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let seg = |t: u32, n: u64| Segment { timeline: t, number: n };
        // Timeline 1: segments 2..=9. Timeline 2 branched at segment 3 (before a backup at 5..6),
        // timeline 3 branched from 1 at segment 8 (after it).
        let mut files = Vec::new();
        for n in 2..=9 {
            files.push(seg(1, n).name(DEFAULT_SEGMENT_SIZE));
        }
        files.push(seg(2, 3).name(DEFAULT_SEGMENT_SIZE));
        files.push(seg(2, 4).name(DEFAULT_SEGMENT_SIZE));
        files.push(seg(3, 8).name(DEFAULT_SEGMENT_SIZE));
        files.push(seg(3, 9).name(DEFAULT_SEGMENT_SIZE));
        for f in &files {
            repo.put_object(NAMESPACE, &format!("db/{f}"), f.as_bytes()).unwrap();
        }
        repo.put_object(NAMESPACE, "db/00000002.history", b"1\t0/3000100\tbranch\n").unwrap();
        repo.put_object(NAMESPACE, "db/00000003.history", b"1\t0/8000100\tbranch\n").unwrap();
        let listing = list(&repo, "db", DEFAULT_SEGMENT_SIZE).unwrap();
        let (start, stop) = (seg(1, 5), seg(1, 6));
        assert_eq!(newest_reachable_timeline(&repo, "db", &listing, start, stop).unwrap(), 3);
        // Along timeline 3: 5..=7 on timeline 1, then 8..=9 on 3; nothing missing.
        let along3 = needed(&repo, "db", &listing, start, stop, Some(3)).unwrap();
        assert_eq!(along3, vec![seg(1, 5), seg(1, 6), seg(1, 7), seg(3, 8), seg(3, 9)]);
        assert!(gaps(&listing, &along3).is_empty());
        // Timeline 2 does not hold this backup's history: its own timeline is walked instead.
        let along2 = needed(&repo, "db", &listing, start, stop, Some(2)).unwrap();
        assert_eq!(along2.first(), Some(&seg(1, 5)));
        assert!(along2.iter().all(|s| s.timeline == 1));
        // A missing segment is a gap, named by its stretch.
        repo.delete_object(NAMESPACE, &format!("db/{}", seg(1, 6).name(DEFAULT_SEGMENT_SIZE))).unwrap();
        repo.delete_object(NAMESPACE, &format!("db/{}", seg(1, 7).name(DEFAULT_SEGMENT_SIZE))).unwrap();
        let listing = list(&repo, "db", DEFAULT_SEGMENT_SIZE).unwrap();
        let g = gaps(&listing, &needed(&repo, "db", &listing, start, stop, Some(3)).unwrap());
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].describe(DEFAULT_SEGMENT_SIZE), "000000010000000000000006..000000010000000000000007");
        // Expiry keeps history files and everything from the oldest backup's start on.
        let gone = expire(&repo, "db", seg(1, 5), DEFAULT_SEGMENT_SIZE, false).unwrap();
        assert_eq!(gone.len(), 5, "{gone:?}");
        assert_eq!(list(&repo, "db", DEFAULT_SEGMENT_SIZE).unwrap().histories.len(), 2);
    }
}
