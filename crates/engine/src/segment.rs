//! Catalog segments: many small sealed files (run records, snapshots) folded into few, so that a reader on
//! a fresh host makes tens of requests, not one per run the repository ever recorded.
//!
//! A segment is a sealed file under `catalog/runs/` or `catalog/snapshots/`, content-named like every
//! other, holding the plaintext JSON of the files it folds, verbatim (fields a newer bunker wrote survive
//! an older one's fold), each under its original file ID, for one month (`period`).
//!
//! - **Runs** are folded and then deleted: a run's record lives in exactly one of `runs/<id>` or a segment,
//!   or in both for the moment between a fold's write and its deletes. Readers take the union, each ID once.
//! - **Snapshots** stay where they are (their file is what a snapshot *is*: forget deletes it, copy copies
//!   it); a segment only keeps a copy of their content, so a reader lists `snapshots/` and fetches only the
//!   files no segment summarises. A summary of a forgotten snapshot is ignored (it is not in the listing)
//!   and dropped the next time its month is folded.
//!
//! A fold writes the month's new segment, durably, and only then deletes what it folded: the segments of
//! that month it read, and (for runs) the loose records it read. It never deletes a file it could not read.
//! A crash at any step leaves every record readable (in the old files, the new segment, or both); two folds
//! at once at worst leave two segments with the same records, which the next fold merges. FORMAT.md
//! documents the format and these steps.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::catalog::{decode_run, RunRecord};
use crate::error::{Error, Result};
use crate::failpoint::pause_point;
use crate::id::FileId;
use crate::repository::{decode_snapshot, FileKind, Repository};
use crate::snapshot::Snapshot;
use crate::storage::Location;

impl Repository {
    /// Every run record that can be read, oldest first. A damaged record or segment is skipped and
    /// recorded in [`Repository::damage`]; the rest of the history stays readable.
    pub fn load_runs(&self) -> Result<Vec<RunRecord>> {
        let mut log = RunLog::default();
        log.refresh(self)?;
        Ok(log.runs)
    }

    /// The run records of `operations` only, oldest first: for a reader that needs a few kinds (recovery
    /// points) of a long history. Other records are recognised by their operation without being
    /// decoded, so the cost is a scan of the catalog's text, not a parse of every record. Damage is
    /// handled as by [`Self::load_runs`].
    pub fn load_runs_of(&self, operations: &[&str]) -> Result<Vec<RunRecord>> {
        let state = read_state(self, Of::Runs, &HashSet::new(), |loose, _, covered| {
            loose.iter().filter(|id| !covered.contains(id)).copied().collect()
        })?;
        self.prune_cache(FileKind::Run, &state.loose);
        self.note_unfolded(FileKind::Run, state.loose.len());
        let wanted = |raw: &RawValue| operation_of(raw.get()).is_none_or(|op| operations.contains(&op.as_ref()));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let decoded = par_map(&state.segments, cores, |seg| {
            seg.entries
                .iter()
                .filter(|e| wanted(&e.record))
                .map(|e| (e.id, decode_run(&e.id, e.record.get().as_bytes())))
                .collect::<Vec<_>>()
        });
        let loose = state
            .loose_read
            .iter()
            .filter(|(_, raw)| wanted(raw))
            .map(|(id, raw)| (*id, decode_run(id, raw.get().as_bytes())));
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (id, r) in decoded.into_iter().flatten().chain(loose) {
            match r {
                Ok(r) if operations.contains(&r.operation.as_str()) && seen.insert(id) => out.push(r),
                Ok(_) => {}
                Err(e) => self.damage().report(FileKind::Run, &id, &e),
            }
        }
        out.sort_by_key(|r| (r.started, r.id));
        Ok(out)
    }

    /// All snapshots that can be read, oldest first. A damaged snapshot file is skipped and recorded in
    /// [`Repository::damage`]: it never hides the others.
    pub fn load_snapshots(&self) -> Result<Vec<Snapshot>> {
        self.decode_snapshots(snapshots(self)?)
    }

    /// [`Self::load_snapshots`] as of this host's recent listing when the catalog has not changed since
    /// ([`crate::memo`]): for commands that only read. Never for one that deletes or decides what to keep.
    pub fn load_recent_snapshots(&self) -> Result<Vec<Snapshot>> {
        self.decode_snapshots(recent_snapshots(self)?)
    }

    fn decode_snapshots(&self, raw: Vec<Raw>) -> Result<Vec<Snapshot>> {
        let mut out = Vec::new();
        for (id, raw) in raw {
            match decode_snapshot(&id, raw.get().as_bytes()) {
                Ok(s) => out.push(s),
                Err(e) => self.damage().report(FileKind::Snapshot, &id, &e),
            }
        }
        out.sort_by_key(|s| (s.time, s.id));
        Ok(out)
    }
}

/// The run history as a long-lived reader keeps it (the daemon, between its refreshes): each
/// [`RunLog::refresh`] lists the catalog (two requests) and reads and decodes only the files it has not
/// seen. Catalog files are content-named, so a file once read never changes; one no longer listed
/// (folded, repaired, dropped by retention) takes its records with it unless another file holds them.
/// Records written by other hosts appear at the next refresh. [`Repository::load_runs`] is one refresh
/// of an empty log.
#[derive(Default)]
pub struct RunLog {
    /// The record IDs each read file holds: a loose record (one) or a segment (many).
    files: HashMap<FileId, Vec<FileId>>,
    /// How many read files hold each record.
    holders: HashMap<FileId, u32>,
    /// Listed files that could not be read (recorded in the damage log once): not read again while listed.
    damaged: HashSet<FileId>,
    /// Every record once, oldest first.
    runs: Vec<RunRecord>,
    /// Per operation, the indexes in `runs` of its records, oldest first.
    by_operation: HashMap<String, Vec<usize>>,
    /// The records the last refresh brought, and whether it took any away.
    added: HashSet<FileId>,
    removed: bool,
}

/// What one [`RunLog::refresh`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// Catalog files listed (loose records and segments).
    pub listed: usize,
    /// Files read because they were new (damaged ones included).
    pub read: usize,
    /// Whether records came or went.
    pub changed: bool,
}

impl RunLog {
    /// Brings the history up to date with the repository: two listings, then only the new files.
    pub fn refresh(&mut self, repo: &Repository) -> Result<Refreshed> {
        let known: HashSet<FileId> = self.files.keys().chain(&self.damaged).copied().collect();
        let state = read_state(repo, Of::Runs, &known, |loose, _, covered| {
            // A loose record that a segment holds (a fold that has not deleted it yet) is not read.
            loose
                .iter()
                .filter(|id| !known.contains(id) && !covered.contains(id) && !self.holders.contains_key(id))
                .copied()
                .collect()
        })?;
        repo.prune_cache(FileKind::Run, &state.loose);
        repo.note_unfolded(FileKind::Run, state.loose.len());
        let listed: HashSet<FileId> = state.loose.iter().chain(&state.segment_ids).copied().collect();
        let mut out = Refreshed { listed: listed.len(), read: state.segments.len(), changed: false };

        // Files gone since the last refresh release their records.
        let gone_files: Vec<FileId> = self.files.keys().filter(|id| !listed.contains(id)).copied().collect();
        let mut released: HashSet<FileId> = HashSet::new();
        for file in gone_files {
            for r in self.files.remove(&file).unwrap_or_default() {
                let n = self.holders.get_mut(&r).expect("a held record is counted");
                *n -= 1;
                if *n == 0 {
                    self.holders.remove(&r);
                    released.insert(r);
                }
            }
        }
        self.damaged.retain(|id| listed.contains(id));
        for id in &state.unreadable {
            out.read += 1;
            self.damaged.insert(*id);
        }

        // New files bring their records; a record another file already holds is kept once.
        let mut fresh: Vec<RunRecord> = Vec::new();
        let mut add = |records: Vec<RunRecord>, holders: &mut HashMap<FileId, u32>| -> Vec<FileId> {
            let mut ids = Vec::with_capacity(records.len());
            for r in records {
                let id = r.id.expect("a decoded record has its ID");
                ids.push(id);
                let n = holders.entry(id).or_insert(0);
                *n += 1;
                if *n == 1 && !released.remove(&id) {
                    fresh.push(r);
                }
            }
            ids
        };
        // Decoding is most of a cold read's CPU (thousands of records a segment): one segment per core.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let decoded = par_map(&state.segments, cores, |seg| {
            seg.entries.iter().map(|e| (e.id, decode_run(&e.id, e.record.get().as_bytes()))).collect::<Vec<_>>()
        });
        for (seg, entries) in state.segments.iter().zip(decoded) {
            let mut records = Vec::with_capacity(entries.len());
            for (id, r) in entries {
                match r {
                    Ok(r) => records.push(r),
                    Err(err) => repo.damage().report(FileKind::Run, &id, &err),
                }
            }
            let ids = add(records, &mut self.holders);
            self.files.insert(seg.file, ids);
        }
        let mut opened: HashSet<FileId> = HashSet::new();
        for (id, raw) in state.loose_read {
            out.read += 1;
            opened.insert(id);
            match decode_run(&id, raw.get().as_bytes()) {
                Ok(r) => {
                    let ids = add(vec![r], &mut self.holders);
                    self.files.insert(id, ids);
                }
                Err(e) => {
                    repo.damage().report(FileKind::Run, &id, &e);
                    self.damaged.insert(id);
                }
            }
        }
        // Wanted loose files that did not open (damaged, recorded by the read, or gone since listed).
        for id in &state.loose {
            if !known.contains(id) && !opened.contains(id) && !self.holders.contains_key(id) {
                out.read += 1;
                self.damaged.insert(*id);
            }
        }

        self.added = fresh.iter().filter_map(|r| r.id).collect();
        self.removed = !released.is_empty();
        // A record released by one file and brought back by another (a fold) stays; the rest go.
        if !released.is_empty() {
            self.runs.retain(|r| !r.id.is_some_and(|id| released.contains(&id)));
            out.changed = true;
        }
        if !fresh.is_empty() {
            self.runs.extend(fresh);
            // Stable, and mostly sorted already: new records are appended as one sorted run.
            self.runs.sort_by_key(|r| (r.started, r.id));
            out.changed = true;
        }
        if out.changed {
            self.by_operation.clear();
            for (i, r) in self.runs.iter().enumerate() {
                // A handful of operations over thousands of records: allocate a key only for a new one.
                match self.by_operation.get_mut(r.operation.as_str()) {
                    Some(v) => v.push(i),
                    None => {
                        self.by_operation.insert(r.operation.clone(), vec![i]);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every record, oldest first (by start).
    pub fn runs(&self) -> &[RunRecord] {
        &self.runs
    }

    /// What the last [`Self::refresh`] changed: the records it brought (oldest first), and whether it
    /// also took records away (forgotten by retention, a damaged segment). For a reader that keeps
    /// figures derived from the history up to date without going over all of it again.
    pub fn last_change(&self) -> (Vec<&RunRecord>, bool) {
        let added = if self.added.is_empty() {
            Vec::new()
        } else {
            self.runs.iter().filter(|r| r.id.is_some_and(|id| self.added.contains(&id))).collect()
        };
        (added, self.removed)
    }

    /// The records of one operation, oldest first.
    pub fn of_operation<'a>(&'a self, operation: &str) -> impl DoubleEndedIterator<Item = &'a RunRecord> + 'a {
        self.by_operation.get(operation).into_iter().flatten().map(|&i| &self.runs[i])
    }

    /// The newest record of `operation` for `target` (any target when `None`).
    pub fn newest(&self, operation: &str, target: Option<&str>) -> Option<&RunRecord> {
        self.of_operation(operation).rev().find(|r| target.is_none() || r.target.as_deref() == target)
    }

    /// The records that started at or after `t`, oldest first.
    pub fn since(&self, t: chrono::DateTime<chrono::Utc>) -> &[RunRecord] {
        let i = self.runs.partition_point(|r| r.started < t);
        &self.runs[i..]
    }
}

/// Loose run records past which a writer folds the catalog (`BUNKER_FOLD_AFTER` overrides; 0 never).
pub const FOLD_AFTER: usize = 200;

/// Snapshots without a summary past which a writer folds their summaries.
pub const SUMMARISE_AFTER: usize = 50;

/// What a segment folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Of {
    Runs,
    Snapshots,
}

impl Of {
    fn loose(self) -> FileKind {
        match self {
            Of::Runs => FileKind::Run,
            Of::Snapshots => FileKind::Snapshot,
        }
    }
    fn segments(self) -> FileKind {
        match self {
            Of::Runs => FileKind::RunSegment,
            Of::Snapshots => FileKind::SnapshotSegment,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct SegmentFile {
    version: u32,
    of: Of,
    /// `YYYY-MM`: the month of the runs' start, or of the snapshots' time.
    period: String,
    entries: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    id: FileId,
    record: Box<RawValue>,
}

/// One segment as read: its file, its month, its entries.
struct Segment {
    file: FileId,
    period: String,
    entries: Vec<Entry>,
}

/// A run record's operation, read without parsing the record: bunker writes `operation` first, so the
/// text starts `{"operation":"NAME"`; anything else (another writer's field order, an escape) is parsed
/// for it. `None`: not a record at all (its decoding reports the damage).
fn operation_of(json: &str) -> Option<std::borrow::Cow<'_, str>> {
    if let Some(rest) = json.strip_prefix("{\"operation\":\"") {
        if let Some(end) = rest.find('"') {
            let name = &rest[..end];
            if !name.contains('\\') {
                return Some(std::borrow::Cow::Borrowed(name));
            }
        }
    }
    #[derive(Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        operation: std::borrow::Cow<'a, str>,
    }
    serde_json::from_str::<Peek<'_>>(json).ok().map(|p| p.operation)
}

/// The plaintext JSON of a catalog file, under its ID.
pub(crate) type Raw = (FileId, Box<RawValue>);

/// Everything a reader of one kind has: loose files (by ID) and the segments, as listed and read.
struct State {
    loose: Vec<FileId>,
    loose_read: Vec<Raw>,
    /// Every listed segment.
    segment_ids: Vec<FileId>,
    /// The listed segments that were read (all but the ones the caller already knew, and the damaged).
    segments: Vec<Segment>,
    /// Listed segments that could not be read (damaged: recorded in the damage log).
    unreadable: Vec<FileId>,
}

/// How many requests may be in flight at once: S3 is latency-bound, a local disk is not.
pub(crate) fn read_workers(repo: &Repository) -> usize {
    workers(repo)
}

fn workers(repo: &Repository) -> usize {
    let n = std::env::var("BUNKER_READ_CONCURRENCY").ok().and_then(|v| v.parse().ok());
    n.unwrap_or(match repo.storage().location() {
        Location::S3(_) => 32,
        Location::Local(_) => 8,
    })
    .clamp(1, 256)
}

/// Runs `f` on every item, up to `workers` at a time, and returns the results in the items' order.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], workers: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 || workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    let slots: Vec<std::sync::Mutex<&mut Option<R>>> = out.iter_mut().map(std::sync::Mutex::new).collect();
    std::thread::scope(|s| {
        for _ in 0..workers.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                **slots[i].lock().expect("slot") = Some(r);
            });
        }
    });
    drop(slots);
    out.into_iter().map(|r| r.expect("every item ran")).collect()
}

fn decode_segment(file: &FileId, of: Of, plain: &[u8]) -> Result<Segment> {
    let seg: SegmentFile = serde_json::from_slice(plain)
        .map_err(|e| Error::UnknownContent(format!("catalog segment {}: {e}", file.short())))?;
    if seg.version != 1 || seg.of != of {
        return Err(Error::UnknownContent(format!(
            "catalog segment {}: version {} of {:?} (this bunker reads version 1)",
            file.short(),
            seg.version,
            seg.of
        )));
    }
    Ok(Segment { file: *file, period: seg.period, entries: seg.entries })
}

fn raw_of(id: &FileId, kind: FileKind, plain: Vec<u8>) -> Result<Box<RawValue>> {
    let text = String::from_utf8(plain)
        .map_err(|_| Error::UnknownContent(format!("{} {}: not UTF-8 JSON", kind.dir(), id.short())))?;
    RawValue::from_string(text).map_err(|e| Error::UnknownContent(format!("{} {}: {e}", kind.dir(), id.short())))
}

/// Reads the segments of `of`, and the loose files `wanted` picks from the listing, in parallel. Damaged
/// files are skipped and recorded in the damage log.
///
/// Loose files are listed before segments: a fold writes its segment before it deletes the loose files
/// it folded, so a record missing from the first listing is in the second. A segment listed but gone
/// when read was replaced by a concurrent fold, whose new segment the listing may have missed: then
/// everything is read again.
///
/// Segments in `known` are listed but not read (a long-lived reader has them already); `wanted` gets
/// the loose listing, the segment listing and the IDs the segments just read hold.
fn read_state(
    repo: &Repository,
    of: Of,
    known: &HashSet<FileId>,
    wanted: impl Fn(&[FileId], &[FileId], &HashSet<FileId>) -> Vec<FileId>,
) -> Result<State> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match read_state_once(repo, of, known, &wanted)? {
            Some(state) => return Ok(state),
            None if attempt < 5 => tracing::debug!("a catalog segment was replaced while read; reading again"),
            None => {
                return Err(Error::Storage {
                    op: "read",
                    path: of.segments().dir().to_string(),
                    kind: opendal::ErrorKind::Unexpected,
                    detail: "catalog segments kept being replaced while read (folds running without pause?); try again"
                        .into(),
                })
            }
        }
    }
}

fn read_state_once(
    repo: &Repository,
    of: Of,
    known: &HashSet<FileId>,
    wanted: &impl Fn(&[FileId], &[FileId], &HashSet<FileId>) -> Vec<FileId>,
) -> Result<Option<State>> {
    let listed = list_of(repo, of)?;
    if of == Of::Runs {
        repo.note_catalog(Some(crate::memo::fingerprint(&listed.loose, &listed.segments)));
    }
    read_listed(repo, of, listed, known, wanted)
}

/// What one reading of a catalog kind found listed: loose files, then segments.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Listed {
    loose: Vec<FileId>,
    segments: Vec<FileId>,
}

/// Loose files are listed before segments (see [`read_state`]).
fn list_of(repo: &Repository, of: Of) -> Result<Listed> {
    let loose = repo.list_files(of.loose())?;
    let segments = repo.list_files(of.segments())?;
    Ok(Listed { loose, segments })
}

/// [`read_state_once`] on a listing already made. `None`: a listed segment is gone (replaced by a fold).
fn read_listed(
    repo: &Repository,
    of: Of,
    listed: Listed,
    known: &HashSet<FileId>,
    wanted: &impl Fn(&[FileId], &[FileId], &HashSet<FileId>) -> Vec<FileId>,
) -> Result<Option<State>> {
    let workers = workers(repo);
    let Listed { loose, segments: seg_ids } = listed;
    let kind = of.segments();
    let to_read: Vec<FileId> = seg_ids.iter().filter(|id| !known.contains(id)).copied().collect();
    let read = par_map(&to_read, workers, |id| repo.load_file(kind, id).and_then(|p| decode_segment(id, of, &p)));
    let mut segments = Vec::with_capacity(to_read.len());
    let mut unreadable = Vec::new();
    for (id, r) in to_read.iter().zip(read) {
        match r {
            Ok(s) => segments.push(s),
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e @ (Error::Corrupt(_) | Error::UnknownContent(_))) => {
                repo.damage().report(kind, id, &e);
                unreadable.push(*id);
            }
            Err(e) => return Err(e),
        }
    }
    repo.prune_cache(kind, &seg_ids);
    let covered: HashSet<FileId> = segments.iter().flat_map(|s| s.entries.iter().map(|e| e.id)).collect();
    let fetch = wanted(&loose, &seg_ids, &covered);
    let lk = of.loose();
    let read = par_map(&fetch, workers, |id| repo.load_tolerant(lk, id, |p| raw_of(id, lk, p)));
    let mut loose_read = Vec::with_capacity(fetch.len());
    for (id, r) in fetch.iter().zip(read) {
        if let Some(raw) = r? {
            loose_read.push((*id, raw));
        }
    }
    Ok(Some(State { loose, loose_read, segment_ids: seg_ids, segments, unreadable }))
}

/// The files that hold run records, each with the IDs of the records in it: `runs/<id>` (one) and the
/// run segments (many), for `copy` to send only what the destination lacks.
pub fn run_files(repo: &Repository) -> Result<Vec<(String, Vec<FileId>)>> {
    let state = read_state(repo, Of::Runs, &HashSet::new(), |_, _, _| Vec::new())?;
    let mut out: Vec<(String, Vec<FileId>)> =
        state.loose.iter().map(|id| (format!("{}/{id}", FileKind::Run.dir()), vec![*id])).collect();
    for seg in state.segments {
        let ids = seg.entries.iter().map(|e| e.id).collect();
        out.push((format!("{}/{}", FileKind::RunSegment.dir(), seg.file), ids));
    }
    Ok(out)
}

/// Every listed snapshot's JSON: from a segment's summary where there is one, else from its own file.
pub(crate) fn snapshots(repo: &Repository) -> Result<Vec<Raw>> {
    let state = read_state(repo, Of::Snapshots, &HashSet::new(), unsummarised)?;
    Ok(snapshots_of(repo, state))
}

/// The loose snapshot files no segment summarises.
fn unsummarised(loose: &[FileId], _: &[FileId], covered: &HashSet<FileId>) -> Vec<FileId> {
    loose.iter().filter(|id| !covered.contains(id)).copied().collect()
}

/// [`snapshots`] as of a recent listing ([`Repository::recent`]); a listed file gone since (a fold
/// replaced a segment this host had not cached) makes it list again.
pub(crate) fn recent_snapshots(repo: &Repository) -> Result<Vec<Raw>> {
    let listed: Listed = repo.recent("snapshots", || list_of(repo, Of::Snapshots))?;
    match read_listed(repo, Of::Snapshots, listed, &HashSet::new(), &unsummarised)? {
        Some(state) => Ok(snapshots_of(repo, state)),
        None => {
            repo.forget_listings();
            snapshots(repo)
        }
    }
}

fn snapshots_of(repo: &Repository, state: State) -> Vec<Raw> {
    repo.prune_cache(FileKind::Snapshot, &state.loose);
    let listed: HashSet<FileId> = state.loose.iter().copied().collect();
    let unsummarised = state.loose_read.len();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(listed.len());
    for seg in state.segments {
        for e in seg.entries {
            if listed.contains(&e.id) && seen.insert(e.id) {
                out.push((e.id, e.record));
            }
        }
    }
    out.extend(state.loose_read.into_iter().filter(|(id, _)| seen.insert(*id)));
    repo.note_unfolded(FileKind::Snapshot, unsummarised);
    out
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct FoldReport {
    /// Segments written.
    pub segments_written: usize,
    /// Older segments the new ones replace (deleted).
    pub segments_replaced: usize,
    /// Loose run records folded (and deleted).
    pub runs_folded: usize,
    /// Snapshots newly summarised.
    pub snapshots_summarised: usize,
    /// Segments that could not be read and were left alone (see `bunker check`).
    pub unreadable_segments: usize,
    /// Run records the history's retention dropped ([`fold_keeping`]).
    pub runs_dropped: usize,
}

impl std::ops::AddAssign for FoldReport {
    fn add_assign(&mut self, o: FoldReport) {
        self.segments_written += o.segments_written;
        self.segments_replaced += o.segments_replaced;
        self.runs_folded += o.runs_folded;
        self.snapshots_summarised += o.snapshots_summarised;
        self.unreadable_segments += o.unreadable_segments;
        self.runs_dropped += o.runs_dropped;
    }
}

#[derive(Deserialize)]
struct RunStamp {
    started: chrono::DateTime<chrono::Utc>,
}

#[derive(Deserialize)]
struct SnapshotStamp {
    time: chrono::DateTime<chrono::Utc>,
}

fn period_of(of: Of, raw: &RawValue) -> Option<String> {
    let t = match of {
        Of::Runs => serde_json::from_str::<RunStamp>(raw.get()).ok()?.started,
        Of::Snapshots => serde_json::from_str::<SnapshotStamp>(raw.get()).ok()?.time,
    };
    Some(t.format("%Y-%m").to_string())
}

/// Folds the catalog: every loose run record into its month's segment (then deleted), and every snapshot
/// without a summary into its month's summary. Needs the right to delete; takes no lock (see the module
/// docs for why two folds at once are safe).
pub fn fold(repo: &Repository) -> Result<FoldReport> {
    let mut report = fold_of(repo, Of::Runs, None, None)?;
    report += fold_of(repo, Of::Snapshots, None, None)?;
    Ok(report)
}

/// How many loose records one writer's fold takes at most: a writer folds on its way out, so its
/// extra time stays bounded however much piled up (prune folds everything).
pub const WRITER_FOLD_LIMIT: usize = 2000;

/// [`fold`], dropping the run records `keep` says no to (the history's retention, decided by the
/// caller): they leave their segment when it is rewritten, and their loose file is deleted. A record this
/// bunker cannot decode (a newer version's) is kept.
pub fn fold_keeping(repo: &Repository, keep: &dyn Fn(&RunRecord) -> bool) -> Result<FoldReport> {
    let mut report = fold_of(repo, Of::Runs, Some(keep), None)?;
    report += fold_of(repo, Of::Snapshots, None, None)?;
    Ok(report)
}

/// [`fold`], when enough has accumulated since the last one this process saw: for writers, after they
/// saved a record. A failure is logged, never the writer's failure (its record is saved).
pub fn fold_if_due(repo: &Repository) {
    let threshold = std::env::var("BUNKER_FOLD_AFTER").ok().and_then(|v| v.parse().ok()).unwrap_or(FOLD_AFTER);
    if threshold == 0 {
        return;
    }
    let runs_due = match repo.list_files(FileKind::Run) {
        Ok(l) => l.len() > threshold,
        Err(e) => {
            tracing::debug!("not folding the catalog: {e}");
            return;
        }
    };
    let snapshots_due = repo.unfolded(FileKind::Snapshot) > SUMMARISE_AFTER.min(threshold);
    if (runs_due || snapshots_due) && !may_delete(repo) {
        // Append-only credentials: a fold could write its segment but never remove what it folded,
        // and every writer after it would write another. `prune`, elsewhere, folds.
        tracing::debug!("not folding the catalog: this host may not delete");
        return;
    }
    let mut result = Ok(FoldReport::default());
    if runs_due {
        result = fold_of(repo, Of::Runs, None, Some(WRITER_FOLD_LIMIT));
    }
    if snapshots_due && result.is_ok() {
        result = fold_of(repo, Of::Snapshots, None, None);
    }
    match result {
        Ok(r) if r.segments_written > 0 => tracing::info!(
            "folded the catalog: {} run records and {} snapshots into {} segments",
            r.runs_folded,
            r.snapshots_summarised,
            r.segments_written
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(
            "could not fold the catalog ({e}); reads stay correct, only slower; `bunker prune` folds it, or set BUNKER_FOLD_AFTER=0 on hosts that may not delete"
        ),
    }
}

/// Whether this host may delete from the repository: a delete of a name nothing has (S3 checks the
/// permission before whether the key exists; a local directory before the file).
fn may_delete(repo: &Repository) -> bool {
    let probe = format!("tmp/delete-probe-{}", hex::encode(rand::random::<[u8; 8]>()));
    match repo.storage().delete(&probe) {
        Ok(()) | Err(Error::NotFound { .. }) => true,
        Err(e) => !e.refuses_writes(),
    }
}

/// Folds one kind; `limit` caps how many loose run records are taken (the rest stay loose for later).
pub(crate) fn fold_of(
    repo: &Repository,
    of: Of,
    keep: Option<&dyn Fn(&RunRecord) -> bool>,
    limit: Option<usize>,
) -> Result<FoldReport> {
    let state = read_state(repo, of, &HashSet::new(), |loose, _, covered| match of {
        // Every loose record is read: those a segment already holds are deleted once it is confirmed.
        Of::Runs => loose.iter().take(limit.unwrap_or(usize::MAX)).copied().collect(),
        Of::Snapshots => loose.iter().filter(|id| !covered.contains(id)).copied().collect(),
    })?;
    let mut report = FoldReport { unreadable_segments: state.unreadable.len(), ..Default::default() };
    let listed: HashSet<FileId> = state.loose.iter().copied().collect();

    // Month → (its segments, what is new for it).
    let mut months: BTreeMap<String, (Vec<Segment>, Vec<Raw>)> = BTreeMap::new();
    for seg in state.segments {
        months.entry(seg.period.clone()).or_default().0.push(seg);
    }
    for (id, raw) in state.loose_read {
        // A record without a readable time stays loose (another version's: it is still read as it is).
        if let Some(p) = period_of(of, &raw) {
            months.entry(p).or_default().1.push((id, raw));
        }
    }
    let dropped = |id: &FileId, raw: &RawValue| match keep {
        Some(keep) => decode_run(id, raw.get().as_bytes()).is_ok_and(|r| !keep(&r)),
        None => false,
    };
    for (period, (segments, new)) in months {
        let stale = |seg: &Segment| of == Of::Snapshots && seg.entries.iter().any(|e| !listed.contains(&e.id));
        let drops: HashSet<FileId> = segments
            .iter()
            .flat_map(|s| s.entries.iter().map(|e| (e.id, &*e.record)))
            .chain(new.iter().map(|(id, raw)| (*id, &**raw)))
            .filter(|(id, raw)| dropped(id, raw))
            .map(|(id, _)| id)
            .collect();
        // A month with one segment, nothing new, nothing forgotten or expired is as folded as it gets.
        if new.is_empty() && segments.len() <= 1 && !segments.iter().any(stale) && drops.is_empty() {
            continue;
        }
        let mut entries: BTreeMap<FileId, Box<RawValue>> = BTreeMap::new();
        for seg in &segments {
            for e in &seg.entries {
                if (of == Of::Runs || listed.contains(&e.id)) && !drops.contains(&e.id) {
                    entries.entry(e.id).or_insert_with(|| e.record.clone());
                }
            }
        }
        let newly = new.iter().filter(|(id, _)| !entries.contains_key(id) && !drops.contains(id)).count();
        let folded_loose: Vec<FileId> = new.iter().map(|(id, _)| *id).collect();
        for (id, raw) in new {
            if !drops.contains(&id) {
                entries.entry(id).or_insert(raw);
            }
        }
        report.runs_dropped += drops.len();
        // Loose records the month's one segment already holds (a fold that stopped before its deletes).
        let already = segments.len() == 1 && !segments.iter().any(stale) && newly == 0 && drops.is_empty();
        let written = if already {
            Some(segments[0].file)
        } else if entries.is_empty() {
            None
        } else {
            let file = SegmentFile {
                version: 1,
                of,
                period: period.clone(),
                entries: entries.into_iter().map(|(id, record)| Entry { id, record }).collect(),
            };
            let json = serde_json::to_vec(&file).expect("segment serialises");
            // Durable before anything it replaces goes: local writes are fsynced, S3 puts are.
            Some(repo.save_file(of.segments(), &json)?)
        };
        pause_point("fold-segment-written");
        report.segments_written += usize::from(written.is_some() && !already);
        for seg in segments.iter().filter(|s| Some(s.file) != written) {
            repo.storage().delete(&format!("{}/{}", of.segments().dir(), seg.file))?;
            report.segments_replaced += 1;
            pause_point("fold-segment-deleted");
        }
        match of {
            Of::Runs => {
                // In parallel: thousands of loose records are thousands of deletes.
                let deleted = par_map(&folded_loose, workers(repo), |id| {
                    let r = match repo.storage().delete(&format!("{}/{id}", FileKind::Run.dir())) {
                        // Written under S3 Object Lock by a bunker that locked the catalog too: it
                        // stays loose (readers skip what a segment covers) until its lock ends.
                        Err(Error::Retained { .. }) => Ok(()),
                        r => r,
                    };
                    pause_point("fold-run-deleted");
                    r
                });
                deleted.into_iter().collect::<Result<Vec<()>>>()?;
                report.runs_folded += folded_loose.len();
            }
            Of::Snapshots => report.snapshots_summarised += newly,
        }
    }
    repo.note_unfolded(of.loose(), 0);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::TimeZone;

    use super::*;

    use crate::catalog::{RunRecord, RunStatus};

    use crate::storage::Storage;
    use crate::testing::{init, stream as snapshot};

    fn record(repo: &Repository, month: u32, n: u32) -> FileId {
        let started = chrono::Utc.with_ymd_and_hms(2026, month, 1 + n % 27, 3, 0, n % 60).unwrap();
        let mut r = RunRecord::new("backup", started, RunStatus::Success);
        r.target = Some(format!("t{n}"));
        repo.save_run(&mut r).unwrap()
    }

    fn files(dir: &Path, sub: &str) -> usize {
        std::fs::read_dir(dir.join(sub)).map(|rd| rd.count()).unwrap_or(0)
    }

    fn ids(repo: &Repository) -> Vec<FileId> {
        let mut ids: Vec<FileId> = repo.load_runs().unwrap().into_iter().map(|r| r.id.unwrap()).collect();
        ids.sort();
        ids
    }

    #[test]
    fn an_older_catalog_folds_by_month_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(dir.path());
        let mut want: Vec<FileId> = (0..30).map(|n| record(&repo, 9 + n % 3, n)).collect();
        want.sort();
        let before: Vec<String> = repo.load_runs().unwrap().iter().map(|r| serde_json::to_string(r).unwrap()).collect();
        assert_eq!(ids(&repo), want);

        let r = fold(&repo).unwrap();
        assert_eq!((r.runs_folded, r.segments_written, r.segments_replaced), (30, 3, 0), "{r:?}");
        assert_eq!(files(dir.path(), "runs"), 0);
        assert_eq!(files(dir.path(), "catalog/runs"), 3);
        assert_eq!(ids(&repo), want, "the same records, under the same IDs");
        let after: Vec<String> = repo.load_runs().unwrap().iter().map(|r| serde_json::to_string(r).unwrap()).collect();
        assert_eq!(before, after, "and the same content, in the same order");

        // Nothing new: nothing to do. New records: merged into their month's segment.
        assert_eq!(fold(&repo).unwrap().segments_written, 0);
        want.push(record(&repo, 10, 99));
        want.sort();
        assert_eq!(ids(&repo), want, "loose and folded records read together");
        let r = fold(&repo).unwrap();
        assert_eq!((r.runs_folded, r.segments_written, r.segments_replaced), (1, 1, 1), "{r:?}");
        assert_eq!(files(dir.path(), "catalog/runs"), 3);
        assert_eq!(ids(&repo), want);
    }

    #[test]
    fn runs_of_some_operations_are_read_without_decoding_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(dir.path());
        for n in 0..12 {
            record(&repo, 9 + n % 2, n);
        }
        let mut point =
            RunRecord::new("point", chrono::Utc.with_ymd_and_hms(2026, 9, 3, 1, 0, 0).unwrap(), RunStatus::Success);
        point.details = serde_json::json!({"point": "p1", "targets": ["a"]});
        let point_id = repo.save_run(&mut point).unwrap();
        fold(&repo).unwrap();
        // One more, loose, after the fold.
        let mut late =
            RunRecord::new("point", chrono::Utc.with_ymd_and_hms(2026, 11, 1, 1, 0, 0).unwrap(), RunStatus::Failed);
        let late_id = repo.save_run(&mut late).unwrap();
        let got: Vec<FileId> = repo.load_runs_of(&["point"]).unwrap().iter().map(|r| r.id.unwrap()).collect();
        assert_eq!(got, vec![point_id, late_id]);
        assert_eq!(repo.load_runs_of(&["backup", "point"]).unwrap().len(), 14);
        assert!(repo.load_runs_of(&["drill"]).unwrap().is_empty());
        assert_eq!(repo.load_runs_of(&["point"]).unwrap()[0].details["point"], "p1");
        // Another writer's field order, or an escaped name, is parsed for the operation instead.
        assert_eq!(operation_of(r#"{"operation":"point","x":1}"#).as_deref(), Some("point"));
        assert_eq!(operation_of(r#"{"host":"h","operation":"drill"}"#).as_deref(), Some("drill"));
        assert_eq!(operation_of(r#"{"operation":"p\u006fint"}"#).as_deref(), Some("point"));
        assert_eq!(operation_of("not json"), None);
    }

    #[test]
    fn a_fold_that_stopped_before_its_deletes_leaves_each_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(dir.path());
        let want: Vec<FileId> = (0..10).map(|n| record(&repo, 11, n)).collect();
        let saved = dir.path().join("saved");
        std::fs::create_dir(&saved).unwrap();
        for id in &want {
            std::fs::copy(dir.path().join(format!("runs/{id}")), saved.join(id.to_hex())).unwrap();
        }
        fold(&repo).unwrap();
        let first = std::fs::read_dir(dir.path().join("catalog/runs")).unwrap().next().unwrap().unwrap().path();
        // As if the fold died after writing its segment: the loose records are all still there, and an
        // older segment of the month too (a second, concurrent fold's).
        for id in &want {
            std::fs::copy(saved.join(id.to_hex()), dir.path().join(format!("runs/{id}"))).unwrap();
        }
        let mut sorted = want.clone();
        sorted.sort();
        assert_eq!(ids(&repo), sorted);
        let r = fold(&repo).unwrap();
        assert_eq!(r.runs_folded, 10, "{r:?}");
        assert_eq!(r.segments_written, 0, "the one segment already held them all: {r:?}");
        assert_eq!(files(dir.path(), "runs"), 0);
        assert_eq!(ids(&repo), sorted);

        // Two folds at once: a second segment of the month with some of the same records.
        let state = read_state(&repo, Of::Runs, &HashSet::new(), |_, _, _| Vec::new()).unwrap();
        let some: Vec<Entry> = state.segments.into_iter().flat_map(|s| s.entries).take(4).collect();
        let other = SegmentFile { version: 1, of: Of::Runs, period: "2026-11".into(), entries: some };
        repo.save_file(FileKind::RunSegment, &serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(first.exists());
        assert_eq!(files(dir.path(), "catalog/runs"), 2);
        assert_eq!(ids(&repo), sorted, "each record once");
        let r = fold(&repo).unwrap();
        assert_eq!((r.segments_written, r.segments_replaced), (1, 2), "{r:?}");
        assert_eq!(files(dir.path(), "catalog/runs"), 1);
        assert_eq!(ids(&repo), sorted);
    }

    #[test]
    fn a_run_log_reads_only_what_is_new_and_sees_other_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(dir.path());
        for n in 0..20 {
            record(&repo, 9 + n % 2, n);
        }
        fold(&repo).unwrap();
        for n in 0..3 {
            record(&repo, 11, n);
        }
        let mut log = RunLog::default();
        let r = log.refresh(&repo).unwrap();
        assert_eq!((r.listed, r.read, r.changed), (5, 5, true), "two segments and three loose records: {r:?}");
        assert_eq!(log.runs().len(), 23);
        let r = log.refresh(&repo).unwrap();
        assert_eq!((r.read, r.changed), (0, false), "nothing new, nothing read: {r:?}");

        // Another host (its own handle on the repository) records a run: the next refresh reads that one.
        let other = Repository::open(Storage::open(&Location::Local(dir.path().to_path_buf())).unwrap(), "pw").unwrap();
        let mut check = RunRecord::new("check", chrono::Utc::now(), RunStatus::Failed);
        check.target = Some("t1".into());
        let id = other.save_run(&mut check).unwrap();
        let r = log.refresh(&repo).unwrap();
        assert_eq!((r.read, r.changed), (1, true), "{r:?}");
        assert_eq!(log.newest("check", None).and_then(|r| r.id), Some(id));
        assert_eq!(log.newest("check", Some("t1")).map(|r| r.status), Some(RunStatus::Failed));
        assert!(log.newest("check", Some("t2")).is_none());
        assert_eq!(log.of_operation("backup").count(), 23);
        assert_eq!(log.since(check.started).len(), 1, "runs since the check started: the check");

        // A fold moves records into a segment: one new file read, the history unchanged.
        let before: Vec<Option<FileId>> = log.runs().iter().map(|r| r.id).collect();
        fold(&repo).unwrap();
        let r = log.refresh(&repo).unwrap();
        assert!(r.read >= 1 && !r.changed, "{r:?}");
        assert_eq!(log.runs().iter().map(|r| r.id).collect::<Vec<_>>(), before);
        assert_eq!(log.runs().iter().map(|r| r.id).collect::<Vec<_>>(), ids_in_order(&repo), "as a fresh read");

        // A record whose file goes (repair, retention) leaves the log.
        let gone = log.runs()[0].id.unwrap();
        let seg = segment_holding(&repo, gone);
        repo.storage().delete(&format!("{}/{seg}", FileKind::RunSegment.dir())).unwrap();
        let r = log.refresh(&repo).unwrap();
        assert!(r.changed, "{r:?}");
        assert!(log.runs().iter().all(|r| r.id != Some(gone)));
        assert_eq!(log.runs().iter().map(|r| r.id).collect::<Vec<_>>(), ids_in_order(&repo));
        assert_eq!(log.of_operation("backup").count() + 1, log.runs().len());
    }

    #[test]
    fn a_writers_fold_takes_at_most_its_limit_and_leaves_the_rest_loose() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(dir.path());
        let mut want: Vec<FileId> = (0..10).map(|n| record(&repo, 9, n)).collect();
        want.sort();
        let r = fold_of(&repo, Of::Runs, None, Some(3)).unwrap();
        assert_eq!((r.runs_folded, r.segments_written), (3, 1), "{r:?}");
        assert_eq!(files(dir.path(), "runs"), 7);
        assert_eq!(ids(&repo), want);
        let r = fold(&repo).unwrap();
        assert_eq!((r.runs_folded, r.segments_written, r.segments_replaced), (7, 1, 1), "{r:?}");
        assert_eq!(files(dir.path(), "runs"), 0);
        assert_eq!(ids(&repo), want);
    }

    #[test]
    fn a_run_log_reads_a_damaged_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(dir.path());
        let bad = record(&repo, 9, 1);
        record(&repo, 9, 2);
        let path = dir.path().join(format!("runs/{bad}"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let mut log = RunLog::default();
        let r = log.refresh(&repo).unwrap();
        assert_eq!((r.read, log.runs().len()), (2, 1), "{r:?}");
        assert_eq!(repo.damage().list().len(), 1);
        let r = log.refresh(&repo).unwrap();
        assert_eq!((r.read, r.changed), (0, false), "the damaged file is not read again: {r:?}");
        assert_eq!(repo.damage().list().len(), 1, "nor reported again");
    }

    fn ids_in_order(repo: &Repository) -> Vec<Option<FileId>> {
        repo.load_runs().unwrap().iter().map(|r| r.id).collect()
    }

    fn segment_holding(repo: &Repository, id: FileId) -> FileId {
        let state = read_state(repo, Of::Runs, &HashSet::new(), |_, _, _| Vec::new()).unwrap();
        state.segments.into_iter().find(|s| s.entries.iter().any(|e| e.id == id)).unwrap().file
    }

    #[test]
    fn a_damaged_segment_is_reported_and_never_hides_loose_records() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(dir.path());
        for n in 0..5 {
            record(&repo, 9, n);
        }
        fold(&repo).unwrap();
        let seg = std::fs::read_dir(dir.path().join("catalog/runs")).unwrap().next().unwrap().unwrap().path();
        let mut bytes = std::fs::read(&seg).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&seg, bytes).unwrap();
        let fresh: Vec<FileId> = (0..3).map(|n| record(&repo, 9, 10 + n)).collect();

        let repo = Repository::open(Storage::open(&Location::Local(dir.path().to_path_buf())).unwrap(), "pw").unwrap();
        let mut want = fresh.clone();
        want.sort();
        assert_eq!(ids(&repo), want);
        let damaged = repo.damage().list();
        assert!(
            damaged.iter().any(|d| d.path.starts_with("catalog/runs/") && d.affects.contains("missing")),
            "{damaged:?}"
        );
        // A fold leaves what it cannot read alone (for `repair`), and folds the rest.
        let r = fold(&repo).unwrap();
        assert_eq!((r.unreadable_segments, r.runs_folded), (1, 3), "{r:?}");
        assert!(seg.exists());
        assert_eq!(ids(&repo), want);
    }

    #[test]
    fn fields_of_a_newer_version_survive_a_fold() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(dir.path());
        let mut r = RunRecord::new("backup", chrono::Utc::now(), RunStatus::Success);
        let mut v = serde_json::to_value(&r).unwrap();
        v["from_the_future"] = serde_json::json!({"kept": true});
        let id = repo.save_file(FileKind::Run, &serde_json::to_vec(&v).unwrap()).unwrap();
        r.id = Some(id);
        fold(&repo).unwrap();
        let state = read_state(&repo, Of::Runs, &HashSet::new(), |_, _, _| Vec::new()).unwrap();
        let raw: Vec<Entry> = state.segments.into_iter().flat_map(|s| s.entries).collect();
        assert_eq!(raw.len(), 1);
        assert_eq!(raw[0].id, id);
        assert!(raw[0].record.get().contains("\"from_the_future\":{\"kept\":true}"), "{}", raw[0].record.get());
    }

    #[test]
    fn snapshot_summaries_follow_the_listing() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init(dir.path());
        let made: Vec<FileId> = (0..6).map(|n| snapshot(&repo, &format!("s{n}"), &[n as u8; 100])).collect();
        let names = |repo: &Repository| repo.load_snapshots().unwrap().into_iter().map(|s| s.name).collect::<Vec<_>>();
        let before = names(&repo);
        assert_eq!(repo.unfolded(FileKind::Snapshot), 6);
        let r = fold(&repo).unwrap();
        assert_eq!((r.snapshots_summarised, r.segments_written), (6, 1), "{r:?}");
        assert_eq!(files(dir.path(), "snapshots"), 6, "snapshot files stay");
        assert_eq!(names(&repo), before);
        assert_eq!(repo.unfolded(FileKind::Snapshot), 0, "everything came from the summary");

        // A forgotten snapshot is gone from the list at once, and from the summary at the next fold.
        repo.delete_snapshot(&made[2]).unwrap();
        let after: Vec<String> = before.iter().filter(|n| *n != "s2").cloned().collect();
        assert_eq!(names(&repo), after);
        let r = fold(&repo).unwrap();
        assert_eq!((r.segments_written, r.segments_replaced), (1, 1), "{r:?}");
        assert_eq!(names(&repo), after);
        let s = repo.load_snapshots().unwrap();
        assert_eq!(s.iter().find(|s| s.name == "s4").unwrap().id, Some(made[4]));

        // A damaged summary costs nothing but time: the files are read instead.
        let seg = std::fs::read_dir(dir.path().join("catalog/snapshots")).unwrap().next().unwrap().unwrap().path();
        std::fs::write(&seg, b"garbage").unwrap();
        let repo = Repository::open(Storage::open(&Location::Local(dir.path().to_path_buf())).unwrap(), "pw").unwrap();
        assert_eq!(names(&repo), after);
    }

    #[test]
    fn par_map_keeps_the_order() {
        let items: Vec<u32> = (0..1000).collect();
        assert_eq!(par_map(&items, 16, |n| n * 2), items.iter().map(|n| n * 2).collect::<Vec<_>>());
    }
}
