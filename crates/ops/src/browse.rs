//! What a snapshot holds and how one item changed: `bunker ls` (every file, object… a snapshot can name,
//! by a glob or a path) and `bunker versions` (one item across a target's snapshots, so "the logo as of
//! last Tuesday" is one command). Both go through the kind's [`bunker_sources::Kind::list`]; they read
//! content (trees, manifests), so a write-only host is refused with the identity error.

use bunker_engine::restorer::Restorer;
use bunker_engine::{Repository, Snapshot};
use bunker_sources::{Item, Selector};
use serde::Serialize;

use crate::Result;

/// `ls`: the snapshot `selector` names and the items `pattern` picks (all without one).
pub fn list(repo: &Repository, selector: &str, pattern: Option<&str>) -> Result<(Snapshot, Vec<Item>)> {
    let snapshots = repo.load_recent_snapshots()?;
    let snap = repo.select(&snapshots, selector)?.clone();
    refuse_write_only(repo, &snap)?;
    let (index, _) = repo.load_index()?;
    let restorer = Restorer::new(repo, &index);
    let mut items = bunker_sources::kind_of_snapshot(&snap).list(&restorer, &snap)?;
    if let Some(p) = pattern {
        let selector = Selector::parse(p)?;
        items.retain(|i| i.matches(&selector));
        if items.is_empty() {
            return Err(crate::fail(format!(
                "{p:?} matches nothing in snapshot {} ({}); `bunker ls {}` lists everything",
                snap.short_id(),
                snap.name,
                snap.short_id()
            )));
        }
    }
    Ok((snap, items))
}

/// One version of an item: the snapshot it is in and the item there.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    pub snapshot: String,
    pub time: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    pub item: Item,
    /// Whether it differs from the version before (by size, ETag or checksum); the oldest is a change.
    pub changed: bool,
}

/// `versions`: `path` in every snapshot named `name` (a target, or `TARGET/…` for one of its several
/// snapshots), oldest first; snapshots without it are left out.
pub fn versions(repo: &Repository, name: &str, path: &str) -> Result<Vec<Version>> {
    let snapshots: Vec<Snapshot> = repo.load_recent_snapshots()?.into_iter().filter(|s| s.name == name).collect();
    let Some(first) = snapshots.first() else {
        return Err(crate::fail(format!("no snapshot named {name:?}; `bunker snapshots` lists them")));
    };
    refuse_write_only(repo, first)?;
    let (index, _) = repo.load_index()?;
    let restorer = Restorer::new(repo, &index);
    let mut out: Vec<Version> = Vec::new();
    for snap in &snapshots {
        let items = bunker_sources::kind_of_snapshot(snap).list(&restorer, snap)?;
        let Some(item) = items.into_iter().find(|i| i.path == path) else { continue };
        // An object by its size, ETag and checksum; a file (no ETag) by its size and mtime.
        let key = |i: &Item| (i.size, i.etag.clone(), i.detail.clone(), i.etag.is_none().then(|| i.modified.clone()));
        let changed = out.last().is_none_or(|prev| key(&prev.item) != key(&item));
        out.push(Version { snapshot: snap.id().to_hex(), time: snap.time, item, changed });
    }
    if out.is_empty() {
        return Err(crate::fail(format!(
            "{path:?} is in none of the {} snapshots of {name}; `bunker ls {name}:latest` lists what the newest holds",
            snapshots.len()
        )));
    }
    Ok(out)
}

fn refuse_write_only(repo: &Repository, snap: &Snapshot) -> Result<()> {
    if repo.reads_content() {
        return Ok(());
    }
    Err(bunker_engine::Error::NeedsIdentity {
        what: format!("the listing of snapshot {} ({})", snap.short_id(), snap.name),
    }
    .into())
}
