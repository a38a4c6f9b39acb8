//! `bunker copy --to NAME`: snapshots (with the packs they need), the WAL archive and the catalog, copied
//! incrementally into a secondary repository of the stack file (`[repositories.NAME]`), created on first
//! use with the primary's master key under the secondary's own password. The mechanism is
//! [`bunker_engine::copy`]; this resolves the secondary, opens and locks both sides, prints and records.

use anyhow::{bail, Context as _, Result};
use bunker_config::RepositoryConfig;
use bunker_engine::copy::{self, CopyReport};
use bunker_engine::lock::acquire;
use bunker_engine::storage::{Location, Storage};
use bunker_engine::{Error, Repository};
use bunker_ops::details::{CopyDetails, Details};

use crate::cli::CopyArgs;
use crate::context::Context;
use crate::exit;
use crate::output::{json, size, Progress};
use crate::runs::{Finish, Run};

/// The secondary's password when the stack file gives none (it is never asked for on a terminal).
const PASSWORD_VAR: &str = "BUNKER_SECONDARY_PASSWORD";

pub fn run(ctx: &Context, args: CopyArgs) -> Result<i32> {
    let secondary = secondary(ctx, &args.to)?;
    let password = secondary_password(&args.to, secondary)?;
    let location = Location::parse(&secondary.url).with_context(|| format!("[repositories.{}] url", args.to))?;
    let src = ctx.open()?;
    if args.dry_run {
        return copy_and_print(ctx, &src, &args, secondary, &location, &password, None);
    }
    let mut run = Run::start("copy");
    run.details(&Details::Copy(CopyDetails { to: args.to.clone(), ..Default::default() }));
    let outcome = copy_and_print(ctx, &src, &args, secondary, &location, &password, Some(&mut run));
    run.finish(&src, outcome.as_ref().copied());
    outcome
}

fn copy_and_print(
    ctx: &Context,
    src: &Repository,
    args: &CopyArgs,
    secondary: &RepositoryConfig,
    location: &Location,
    password: &str,
    run: Option<&mut Run>,
) -> Result<i32> {
    let _src_lock = ctx.read_lock(src, "copy")?;
    if let Some(name) = &args.name {
        // Before the secondary is created for nothing.
        if !src.load_snapshots()?.iter().any(|s| &s.name == name) {
            bail!(Error::NoSnapshot(name.clone()));
        }
    }
    let (dst, created) = destination(src, location, password, args, secondary)?;
    // Shared: the destination must not be pruned while packs land in it unindexed. A dry run writes
    // nothing there, not even a lock.
    let dst_lock = match &dst {
        Some(d) if !args.dry_run => Some(
            acquire(d.storage(), false, "copy", ctx.global.retry_lock)
                .with_context(|| format!("locking the secondary {}", args.to))?,
        ),
        _ => None,
    };
    let plan = copy::plan(src, dst.as_ref(), args.name.as_deref())?;
    let report = match (&dst, &dst_lock) {
        (Some(dst), Some(lock)) => {
            let progress = Progress::new(ctx.progress(), "copying");
            copy::execute(src, dst, lock, &plan, &mut |bytes| progress.set(bytes))?
        }
        _ => plan.report(true),
    };
    // A secondary under S3 Object Lock: what its kept snapshots reuse of older packs stays locked ahead.
    let extended = match &dst {
        Some(d) if !args.dry_run && d.config().object_lock.is_some() => Some(
            bunker_engine::objectlock::extend(d, false)
                .with_context(|| format!("extending the Object Lock of the secondary {}", args.to))?,
        ),
        _ => None,
    };
    if let Some(run) = run {
        run.details(&Details::Copy(CopyDetails {
            to: args.to.clone(),
            snapshots: report.snapshots as u64,
            packs: report.packs as u64,
            objects: report.objects as u64,
            runs: report.runs as u64,
            bytes: report.bytes,
        }));
        run.bytes(report.bytes, report.bytes);
    }
    if ctx.global.json {
        let mut value = serde_json::to_value(&report).expect("report serialises");
        value["to"] = args.to.clone().into();
        value["created"] = created.into();
        json(&value);
    } else {
        println!("{}", summary(&report, &args.to, created));
        if let Some(x) = &extended {
            println!(
                "object lock: extended {} of {} objects of {} that its snapshots need",
                x.extended, x.objects, args.to
            );
        }
    }
    Ok(exit::OK)
}

/// The secondary, opened (and created on first use); `None` on a dry run when it does not exist yet.
/// `true` when it was (or, dry, would be) created.
fn destination(
    src: &Repository,
    location: &Location,
    password: &str,
    args: &CopyArgs,
    secondary: &RepositoryConfig,
) -> Result<(Option<Repository>, bool)> {
    let storage = match Storage::open(location) {
        Ok(s) => s,
        Err(Error::NoRepository { .. }) if args.dry_run => return Ok((None, true)),
        Err(Error::NoRepository { .. }) => Storage::create(location)?,
        Err(e) => return Err(e.into()),
    };
    if args.dry_run {
        match Repository::read_config(&storage) {
            Err(Error::NoRepository { .. }) => return Ok((None, true)),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
    }
    let mut recipients = args
        .recipients
        .iter()
        .filter(|r| !r.trim().is_empty())
        .map(|r| bunker_engine::content::parse_recipient(r))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if let Some(file) = &args.recipients_file {
        recipients.extend(bunker_engine::content::read_recipients_file(file)?);
    }
    let object_lock = match secondary.object_lock {
        Some(period) => Some(bunker_engine::config::ObjectLock {
            mode: bunker_engine::config::LockMode::parse(
                secondary.object_lock_mode.as_deref().unwrap_or("governance"),
            )?,
            period_secs: period.as_secs().max(1),
        }),
        None => None,
    };
    match copy::open_or_create_secondary_for(src, storage, password, &recipients, object_lock) {
        Ok((dst, created)) => Ok((Some(dst), created)),
        Err(e @ Error::WrongPassword { .. }) => Err(anyhow::Error::new(e).context(format!(
            "the password of [repositories.{}] does not open the secondary (another repository? then give the \
             secondary an empty location)",
            args.to
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `[repositories.NAME]` of the stack file, or an error listing the configured names.
fn secondary<'c>(ctx: &'c Context, name: &str) -> Result<&'c RepositoryConfig> {
    let Some(loaded) = ctx.config()? else {
        bail!(
            "no stack file, so no secondary repository {name:?}: add [repositories.{name}] with url and password \
             (or password_file) to bunker.toml, or pass --config FILE"
        );
    };
    if let Some(repo) = loaded.config.secondary(name) {
        return Ok(repo);
    }
    let names: Vec<&str> = loaded.config.secondaries.iter().map(|(n, _)| n.as_str()).collect();
    if names.is_empty() {
        bail!(
            "{} defines no secondary repository {name:?}: add [repositories.{name}] with url and password (or \
             password_file)",
            loaded.path.display()
        );
    }
    bail!("no secondary repository {name:?} in {}; configured: {}", loaded.path.display(), names.join(", "))
}

/// The secondary's password: the stack file's `password` or `password_file`, else `$BUNKER_SECONDARY_PASSWORD`.
fn secondary_password(name: &str, repo: &RepositoryConfig) -> Result<String> {
    if let Some(secret) = &repo.password {
        return Ok(secret.expose().to_string());
    }
    if let Some(file) = &repo.password_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read password_file {} of [repositories.{name}]", file.display()))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_string());
    }
    match std::env::var(PASSWORD_VAR) {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => bail!(
            "no password for the secondary repository {name}: set password or password_file in \
             [repositories.{name}], or {PASSWORD_VAR} (bunker never asks for it)"
        ),
    }
}

/// "copied 3 snapshots, 12 packs (190 MiB), 40 run records to offsite; 5 snapshots already there".
fn summary(r: &CopyReport, to: &str, created: bool) -> String {
    let mut parts =
        vec![count(r.snapshots, "snapshot"), format!("{} ({})", count(r.packs, "pack"), size(r.pack_bytes))];
    if r.objects > 0 {
        parts.push(format!("{} ({})", count(r.objects, "WAL file"), size(r.object_bytes)));
    }
    parts.push(count(r.runs, "run record"));
    let (verb, create) = if r.dry_run { ("would copy", "would create") } else { ("copied", "created") };
    let head = if created { format!("{create} {to}; ") } else { String::new() };
    let present = match r.snapshots_present {
        0 => String::new(),
        1 => "; 1 snapshot already there".to_string(),
        n => format!("; {n} snapshots already there"),
    };
    let indexed = match r.packs_indexed {
        0 => String::new(),
        n => format!(" ({} already there from an interrupted copy, indexed)", count(n, "pack")),
    };
    format!("{head}{verb} {} to {to}{indexed}{present}", parts.join(", "))
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
