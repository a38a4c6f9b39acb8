//! The damage matrix: a repository with several snapshots of two kinds (streams, a file tree), and one
//! file of each kind (snapshot, index, run record, pack, key, config) damaged in each of four ways (a
//! flipped byte, truncated, 4 KiB zeroed, deleted), with the local cache off and warm. For every case:
//! what still works (the other snapshots restore byte-identical, a new backup succeeds and restores,
//! the history reads), what `check` and `check --read-data` say, and that `repair index` and `repair
//! snapshots` bring the repository back to one `check --read-data` accepts, every snapshot that could
//! be recovered restoring.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{mixed_data, random_data, Repo};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Snapshot,
    Index,
    Run,
    Pack,
    Key,
    Config,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Damage {
    Flip,
    Truncate,
    Zero4k,
    Delete,
}

/// The template every case starts from, and the files its victim's backup wrote.
struct Template {
    repo: Repo,
    keep1: Vec<u8>,
    keep3: Vec<u8>,
    victim: Vec<u8>,
    tree: PathBuf,
    victim_files: Vec<(Kind, PathBuf)>,
    extra_key: PathBuf,
}

fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.insert(e.path());
        }
    }
    out
}

fn template() -> Template {
    let repo = Repo::new();
    let keep1 = mixed_data(700_000, 1);
    repo.backup_bytes("keep1", &keep1);
    let tree = repo.root.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("a.txt"), mixed_data(300_000, 2)).unwrap();
    std::fs::write(tree.join("sub/b.bin"), random_data(200_000, 3)).unwrap();
    repo.ok(&["backup", "--path", tree.to_str().unwrap(), "--name", "tree"]);
    let before = files_under(&repo.path);
    let victim = random_data(1_500_000, 4);
    repo.backup_bytes("victim", &victim);
    let added: Vec<PathBuf> = files_under(&repo.path).difference(&before).cloned().collect();
    let keep3 = mixed_data(500_000, 5);
    repo.backup_bytes("keep3", &keep3);
    let keys_before = files_under(&repo.path.join("keys"));
    repo.cmd(&["key", "add"]).env("BUNKER_NEW_PASSWORD", "another password").output().unwrap();
    let extra_key = files_under(&repo.path.join("keys")).difference(&keys_before).next().cloned().expect("a new key");
    let mut victim_files = Vec::new();
    for p in added {
        let rel = p.strip_prefix(&repo.path).unwrap().to_string_lossy().into_owned();
        let kind = match rel.split('/').next().unwrap() {
            "snapshots" => Kind::Snapshot,
            "index" => Kind::Index,
            "runs" => Kind::Run,
            "data" => Kind::Pack,
            _ => continue,
        };
        victim_files.push((kind, p));
    }
    for k in [Kind::Snapshot, Kind::Index, Kind::Run, Kind::Pack] {
        assert_eq!(victim_files.iter().filter(|(kind, _)| *kind == k).count(), 1, "the victim wrote one {k:?}");
    }
    // Warm the cache: index and snapshot files read once.
    repo.ok(&["snapshots"]);
    repo.ok(&["dump", "keep1:latest"]);
    Template { repo, keep1, keep3, victim, tree, victim_files, extra_key }
}

fn copy_dir(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

fn damage(path: &Path, how: Damage) {
    let mut bytes = std::fs::read(path).unwrap();
    match how {
        Damage::Flip => {
            let i = bytes.len() / 2;
            bytes[i] ^= 0x40;
        }
        Damage::Truncate => bytes.truncate(bytes.len() / 2),
        Damage::Zero4k => {
            let start = bytes.len() / 4;
            let end = (start + 4096).min(bytes.len());
            bytes[start..end].fill(0);
        }
        Damage::Delete => {
            std::fs::remove_file(path).unwrap();
            return;
        }
    }
    std::fs::write(path, bytes).unwrap();
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The files of a tree restored from `tree:latest` are those of the template's tree.
fn tree_restores(case: &Repo, t: &Template) -> bool {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = case.root.join(format!("restored-tree-{n}"));
    let out = case.run(&["restore", "tree:latest", "--to", dir.to_str().unwrap()]);
    if ![0, 3].contains(&code(&out)) {
        eprintln!("tree restore: {}", stderr(&out));
        return false;
    }
    ["a.txt", "sub/b.bin"]
        .iter()
        .all(|f| std::fs::read(dir.join("tree").join(f)).ok() == std::fs::read(t.tree.join(f)).ok())
}

fn dumps(case: &Repo, selector: &str, want: &[u8]) -> bool {
    let out = case.run(&["dump", selector]);
    [0, 3].contains(&code(&out)) && out.stdout == want
}

/// What must keep working around any damaged file other than the config and the only key.
fn others_work(case: &Repo, t: &Template, label: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let listed = case.run(&["snapshots", "--json"]);
    let names: Vec<String> = serde_json::from_slice::<serde_json::Value>(&listed.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect();
    for want in ["keep1", "tree", "keep3"] {
        if !names.iter().any(|n| n == want) {
            failures.push(format!("{label}: {want} is not listed ({})", stderr(&listed)));
        }
    }
    if !dumps(case, "keep1:latest", &t.keep1) || !dumps(case, "keep3:latest", &t.keep3) {
        failures.push(format!("{label}: a stream snapshot beside the damage does not restore"));
    }
    if !tree_restores(case, t) {
        failures.push(format!("{label}: the tree snapshot beside the damage does not restore"));
    }
    let fresh = mixed_data(400_000, 77);
    let input = case.root.join("fresh-input");
    std::fs::write(&input, &fresh).unwrap();
    let out = case
        .cmd(&["backup", "--stdin", "--name", "fresh"])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    if ![0, 3].contains(&code(&out)) || !dumps(case, "fresh:latest", &fresh) {
        failures.push(format!("{label}: a new backup does not succeed and restore: {}", stderr(&out)));
    }
    let history = case.run(&["history"]);
    if ![0, 3].contains(&code(&history)) {
        failures.push(format!("{label}: history fails: {}", stderr(&history)));
    }
    for (verb, args) in [("stats", vec!["stats"]), ("forget", vec!["forget", "--keep-last", "5", "--dry-run"])] {
        let out = case.run(&args);
        if ![0, 3].contains(&code(&out)) {
            failures.push(format!("{label}: {verb} fails: {}", stderr(&out)));
        }
    }
    failures
}

#[test]
fn damage_matrix() {
    let t = template();
    let mut cases = 0;
    let mut survived = 0;
    let mut repaired = 0;
    let mut failures: Vec<String> = Vec::new();
    let kinds = [Kind::Snapshot, Kind::Index, Kind::Run, Kind::Pack, Kind::Key, Kind::Config];
    let damages = [Damage::Flip, Damage::Truncate, Damage::Zero4k, Damage::Delete];
    for kind in kinds {
        for how in damages {
            for cold in [true, false] {
                cases += 1;
                let label = format!("{kind:?}/{how:?}/{}", if cold { "cold" } else { "warm" });
                let env = if cold { vec![("BUNKER_CACHE_DIR".to_string(), "off".to_string())] } else { Vec::new() };
                let case = Repo::uninitialised(None, env, Vec::new());
                copy_dir(&t.repo.path, &case.path);
                copy_dir(&t.repo.root.join("cache"), &case.root.join("cache"));
                let file = match kind {
                    Kind::Key => case.path.join(t.extra_key.strip_prefix(&t.repo.path).unwrap()),
                    Kind::Config => case.path.join("config"),
                    _ => {
                        let (_, p) = t.victim_files.iter().find(|(k, _)| *k == kind).unwrap();
                        case.path.join(p.strip_prefix(&t.repo.path).unwrap())
                    }
                };
                damage(&file, how);

                if kind == Kind::Config {
                    // Nothing opens without the config; what matters is a clear word and nothing lost.
                    let out = case.run(&["snapshots"]);
                    let err = stderr(&out);
                    let clear = out.status.success() || (err.lines().count() == 1 && err.contains("config"));
                    std::fs::copy(t.repo.path.join("config"), &file).unwrap();
                    let back = others_work(&case, &t, &label);
                    if clear && back.is_empty() && dumps(&case, "victim:latest", &t.victim) {
                        survived += 1;
                        repaired += 1;
                    } else {
                        failures.push(format!(
                            "{label}: config damage: clear={clear} ({err}); after putting it back: {back:?}"
                        ));
                    }
                    continue;
                }

                let around = others_work(&case, &t, &label);
                if around.is_empty() {
                    survived += 1;
                } else {
                    failures.extend(around);
                }

                // What check says: a damaged file is an error (a deleted run record or key is simply
                // gone; a pack's bytes are only read with --read-data).
                let check = case.run(&["check"]);
                let read_data = case.run(&["check", "--read-data"]);
                let silent_loss = matches!((kind, how), (Kind::Snapshot | Kind::Run | Kind::Key, Damage::Delete));
                let structural = !matches!((kind, how), (Kind::Pack, Damage::Flip | Damage::Zero4k));
                if silent_loss {
                    if code(&check) != 0 {
                        failures.push(format!("{label}: check fails on a merely missing file: {}", stderr(&check)));
                    }
                } else {
                    if structural && code(&check) != 1 {
                        failures.push(format!("{label}: check exits {} on a damaged file", code(&check)));
                    }
                    if code(&read_data) != 1 {
                        failures.push(format!("{label}: check --read-data exits {}", code(&read_data)));
                    }
                }

                // Repair: a damaged key file is removed by its ID; then the index from the packs (reading
                // them whole), then the snapshots.
                if kind == Kind::Key && how != Damage::Delete {
                    let id = file.file_name().unwrap().to_string_lossy()[..8].to_string();
                    let out = case.run(&["key", "remove", &id]);
                    if code(&out) != 0 {
                        failures.push(format!("{label}: key remove of the damaged key: {}", stderr(&out)));
                    }
                }
                let ri = case.run(&["repair", "index", "--read-data"]);
                let rs = case.run(&["repair", "snapshots"]);
                let after = case.run(&["check", "--read-data"]);
                let victim_back = dumps(&case, "victim:latest", &t.victim);
                // The victim is recoverable unless its snapshot file or its only pack was damaged.
                let recoverable = matches!(kind, Kind::Index | Kind::Run | Kind::Key);
                let still = others_work(&case, &t, &format!("{label} after repair"));
                let ok = code(&ri) == 0
                    && code(&rs) == 0
                    && code(&after) == 0
                    && (victim_back || !recoverable)
                    && still.is_empty();
                if ok {
                    repaired += 1;
                } else {
                    failures.push(format!(
                        "{label}: after repair index ({}: {}), repair snapshots ({}: {}): check --read-data {} ({}); victim restores: {victim_back} (recoverable: {recoverable}); {still:?}",
                        code(&ri),
                        stderr(&ri),
                        code(&rs),
                        stderr(&rs),
                        code(&after),
                        String::from_utf8_lossy(&after.stdout),
                    ));
                }
            }
        }
    }
    eprintln!("damage matrix: {cases} cases, {survived} survived, {repaired} repaired");
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
    assert_eq!((survived, repaired), (cases, cases));
}

/// The only key file damaged or gone: one line that says so, not "wrong password".
#[test]
fn a_lost_only_key_is_named() {
    let repo = Repo::new();
    repo.backup_bytes("a", b"some data");
    let key = std::fs::read_dir(repo.path.join("keys")).unwrap().next().unwrap().unwrap().path();
    damage(&key, Damage::Truncate);
    let out = repo.run(&["snapshots"]);
    let err = stderr(&out);
    assert!(err.contains("no key file") && !err.contains("wrong password"), "{err}");
    std::fs::remove_file(&key).unwrap();
    let err = stderr(&repo.run(&["snapshots"]));
    assert!(err.contains("no key file") && !err.contains("wrong password"), "{err}");
}

/// A damaged snapshot asked for by its ID: the error says it is damaged, not that it does not exist.
#[test]
fn a_damaged_snapshot_asked_for_by_id_is_named() {
    let repo = Repo::new();
    let id = repo.backup_bytes("a", &mixed_data(100_000, 9));
    repo.backup_bytes("b", &mixed_data(100_000, 10));
    damage(&repo.path.join("snapshots").join(&id), Damage::Flip);
    let out = repo.cmd(&["dump", &id[..8]]).env("BUNKER_CACHE_DIR", "off").output().unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(err.contains("damaged") && err.contains("repair snapshots"), "{err}");
    // Prune would delete the data only that snapshot used: it refuses until the file is dealt with.
    let out = repo.cmd(&["prune"]).env("BUNKER_CACHE_DIR", "off").output().unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("refusing to prune") && stderr(&out).contains("repair snapshots"));
    repo.ok(&["repair", "snapshots"]);
    repo.ok(&["prune"]);
    repo.ok(&["check", "--read-data"]);
}

/// A repository whose second backup's index file is gone and whose third snapshot is damaged.
fn damaged_repository() -> (Repo, Vec<u8>, Vec<u8>, String) {
    let repo = Repo::new();
    let a = mixed_data(600_000, 11);
    let b = random_data(900_000, 12);
    repo.backup_bytes("a", &a);
    let before = files_under(&repo.path.join("index"));
    repo.backup_bytes("b", &b);
    let b_index = files_under(&repo.path.join("index")).difference(&before).next().cloned().unwrap();
    let c = repo.backup_bytes("c", &mixed_data(300_000, 13));
    std::fs::remove_file(&b_index).unwrap();
    damage(&repo.path.join("snapshots").join(&c), Damage::Zero4k);
    (repo, a, b, c)
}

/// `repair index` and `repair snapshots` killed at each step leave a repository whose snapshots all
/// restore, and running them again finishes the job; the catalog records what was removed.
#[test]
fn repairs_are_crash_safe() {
    for point in ["repair-index-after-write", "repair-index-file-deleted", "repair-snapshot-deleted"] {
        let (repo, a, b, c) = damaged_repository();
        if point.starts_with("repair-index") {
            repo.kill_at(point, &["repair", "index"], None);
            // Done around the damaged snapshot: exit 3, the data whole.
            let out = repo.run(&["dump", "a:latest"]);
            assert_eq!((code(&out), out.stdout == a), (3, true), "{point}: {}", stderr(&out));
            repo.ok(&["repair", "index"]);
        } else {
            repo.ok(&["repair", "index"]);
            repo.kill_at(point, &["repair", "snapshots"], None);
        }
        assert!(dumps(&repo, "b:latest", &b), "{point}");
        repo.ok(&["repair", "snapshots"]);
        repo.ok(&["check", "--read-data"]);
        assert_eq!(repo.dump("a:latest"), a);
        assert_eq!(repo.dump("b:latest"), b);
        if point == "repair-snapshot-deleted" {
            continue;
        }
        let history = repo.json(&["history", "--operation", "repair"]);
        let removed: Vec<_> = history
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["details"]["removed"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["id"].as_str().map(String::from))
            .collect();
        assert!(removed.contains(&c), "the catalog records what repair removed: {history}");
    }
}
