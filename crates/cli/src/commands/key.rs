use anyhow::{bail, Result};
use bunker_engine::keys::{add_key, key_path, list_keys};

use crate::cli::KeyCommand;
use crate::context::{password, Context};
use crate::exit;
use crate::output::json;

pub fn run(ctx: &Context, cmd: KeyCommand) -> Result<i32> {
    let repo = ctx.open()?;
    let storage = repo.storage();
    match cmd {
        KeyCommand::Add { write_only } => {
            if write_only && repo.recipients().is_empty() {
                bail!(
                    "--write-only: {} is a password repository, whose every key reads its content; create a recipients \
                     repository (`bunker init --recipient age1…`) for write-only backup hosts",
                    storage.location()
                );
            }
            let _lock = ctx.lock(&repo, false, "key add")?;
            let pw = password("BUNKER_NEW_PASSWORD", "BUNKER_NEW_PASSWORD_FILE", "new password: ", true)?;
            let id = add_key(storage, repo.repo_key(), &pw)?;
            let kind = if repo.recipients().is_empty() { "" } else { " (write-only)" };
            println!("added key {}{kind}", id.short());
        }
        KeyCommand::List => {
            let keys = list_keys(storage)?;
            if ctx.global.json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|(id, k)| serde_json::json!({"id": id.to_hex(), "current": *id == repo.key_id(), "created": k.created, "host": k.host, "username": k.username, "kind": slot_kind(k)}))
                    .collect();
                json(&rows);
            } else {
                for (id, k) in keys {
                    let mark = if id == repo.key_id() { "*" } else { " " };
                    println!(
                        "{mark} {}  {}  {:<10}  {}@{}",
                        id.short(),
                        k.created.format("%Y-%m-%d %H:%M:%S"),
                        slot_kind(&k),
                        k.username,
                        k.host
                    );
                }
            }
        }
        KeyCommand::Remove { id } => {
            let _lock = ctx.lock(&repo, true, "key remove")?;
            // Every file under keys/, damaged ones too: removing those is how a damaged key goes.
            let keys: Vec<bunker_engine::FileId> = storage
                .list("keys")?
                .iter()
                .filter_map(|o| o.path.strip_prefix("keys/").and_then(|n| bunker_engine::FileId::from_hex(n).ok()))
                .collect();
            let matches: Vec<_> = keys.iter().filter(|k| k.to_hex().starts_with(&id.to_ascii_lowercase())).collect();
            let target = match matches.as_slice() {
                [one] => **one,
                [] => bail!("no key matches {id:?}; `bunker key list` shows them"),
                _ => bail!("{id:?} matches several keys; give more characters"),
            };
            if target == repo.key_id() {
                bail!(
                    "key {} is the one in use; open the repository with another password to remove it",
                    target.short()
                );
            }
            storage.delete(&key_path(&target))?;
            println!("removed key {}", target.short());
        }
        KeyCommand::Passwd => {
            if list_keys(storage)?.iter().any(|(id, k)| *id == repo.key_id() && k.kdf == "age") {
                bail!("the repository was opened with an identity, not a password: `bunker key add` adds a password");
            }
            let _lock = ctx.lock(&repo, true, "key passwd")?;
            let pw = password("BUNKER_NEW_PASSWORD", "BUNKER_NEW_PASSWORD_FILE", "new password: ", true)?;
            let id = add_key(storage, repo.repo_key(), &pw)?;
            storage.delete(&key_path(&repo.key_id()))?;
            println!("password changed (key {} replaces {})", id.short(), repo.key_id().short());
        }
    }
    Ok(exit::OK)
}

/// What a slot opens: `password` (everything, a password repository), `write-only` (a recipients
/// repository's password), `identity` (the slot age identities open).
fn slot_kind(k: &bunker_engine::keys::KeyFile) -> &'static str {
    match (k.kdf.as_str(), k.write_only) {
        ("age", _) => "identity",
        (_, true) => "write-only",
        _ => "password",
    }
}
