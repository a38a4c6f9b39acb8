use anyhow::Result;
use bunker_engine::chunker::ChunkerParams;
use bunker_engine::config::{InitOptions, LockMode, ObjectLock};
use bunker_engine::content::{parse_recipient, read_recipients_file};
use bunker_engine::Repository;

use crate::cli::InitArgs;
use crate::context::Context;
use crate::exit;

pub fn run(ctx: &Context, args: InitArgs) -> Result<i32> {
    let chunker = match args.chunk_sizes {
        Some([min_size, avg_size, max_size]) => ChunkerParams { min_size, avg_size, max_size },
        None => ChunkerParams::default(),
    };
    // `--object-lock`, else `[repository] object_lock` of the stack file.
    let stack = ctx.config().ok().flatten().and_then(|l| l.config.repository.clone());
    let (period, mode) = match (args.object_lock, stack.as_ref().and_then(|r| r.object_lock)) {
        (Some(p), _) => (Some(p), args.object_lock_mode.clone()),
        (None, Some(p)) => {
            (Some(p), stack.and_then(|r| r.object_lock_mode).unwrap_or_else(|| "governance".to_string()))
        }
        (None, None) => (None, args.object_lock_mode.clone()),
    };
    let object_lock = match period {
        Some(period) => Some(ObjectLock {
            mode: LockMode::parse(&mode)?,
            period_secs: period.as_secs().max(u64::from(period.subsec_nanos() > 0)),
        }),
        None => None,
    };
    let opts =
        InitOptions { chunker, compression_level: args.compression, pack_size: args.pack_size_mib << 20, object_lock };
    opts.validate()?;
    let mut recipients = args
        .recipients
        .iter()
        .filter(|r| !r.trim().is_empty())
        .map(|r| parse_recipient(r))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if let Some(file) = &args.recipients_file {
        recipients.extend(read_recipients_file(file)?);
    }
    let storage = bunker_engine::storage::Storage::create(&ctx.location()?)?;
    let pw = ctx.repository_password("new repository password: ", true)?;
    let repo = Repository::init_for(storage, &pw, &recipients, &opts)?;
    if ctx.global.json {
        crate::output::json(&serde_json::json!({
            "location": repo.storage().location().to_string(),
            "id": repo.config().id,
            "key": repo.key_id().to_hex(),
            "recipients": repo.recipients(),
            "object_lock": repo.config().object_lock,
        }));
    } else if recipients.is_empty() {
        println!("created repository {} at {}", repo.config().id, repo.storage().location());
        println!("keep the password safe: without it the data cannot be read");
    } else {
        println!(
            "created repository {} at {}, its content sealed for {} age recipient(s)",
            repo.config().id,
            repo.storage().location(),
            recipients.len()
        );
        println!(
            "the password opens a write-only key (backups, status, history); dump, restore, drill, check --read-data \
             and copy need a matching identity (--identity FILE or BUNKER_IDENTITY_FILE): keep it off this host"
        );
    }
    if let Some(lock) = repo.config().object_lock.filter(|_| !ctx.global.json) {
        println!(
            "objects are written under S3 Object Lock ({} mode, {}); run `bunker object-lock extend` (the daemon does, after backups) to keep what kept snapshots need locked",
            lock.mode,
            humantime::format_duration(lock.period())
        );
    }
    Ok(exit::OK)
}
