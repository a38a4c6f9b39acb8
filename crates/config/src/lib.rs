//! `bunker.toml`, the stack configuration: the repository, the targets to back up, and the sections that
//! say how they are run (groups, schedules, retention, health, notifications, drills).
//!
//! Loading is parse → check the shape → interpolate `${VAR}` in every string value → build the typed parts.
//! This crate knows nothing about what a postgres or files target contains: each target keeps its keys as a
//! raw table, and the source named by its `type` reads them with [`TargetConfig::options`]. Errors point at
//! the file and line (the `spans` module says how lines are found) and never contain a configured value.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

mod catalog;
mod drill;
mod error;
mod groups;
mod health;
mod interpolate;
mod notifications;
mod repository;
mod retention;
mod schedules;
mod spans;
mod target;

pub use catalog::CatalogConfig;
pub use drill::{DrillConfig, Objectives};
pub use error::{Error, Result};
pub use groups::GroupConfig;
pub use health::HealthConfig;
pub use interpolate::Env;
pub use notifications::{EmailConfig, Events, HealthchecksConfig, NotificationsConfig, SlackConfig, WebhookConfig};
pub use repository::{RepositoryConfig, Secret};
pub use retention::{RetentionConfig, DEFAULT_MIN_AGE};
pub use schedules::{JobKind, Schedule, DEFAULT_CHECK_PARTS};
pub use target::{is_valid_name, Hooks, TargetConfig, MAX_NAME_LEN};

use spans::{Document, KeyPath};

/// The file looked for in the current directory when neither an explicit path nor `BUNKER_CONFIG` is given.
pub const FILE_NAME: &str = "bunker.toml";

/// The environment variable naming the config file.
pub const ENV_VAR: &str = "BUNKER_CONFIG";

/// Top-level sections that later features will read. They are accepted now, kept raw in [`Config::extra`],
/// so a config written for a newer bunker still loads in this one. None at present.
pub const TOLERATED_SECTIONS: &[&str] = &[];

/// A parsed `bunker.toml`.
#[derive(Clone, Default, PartialEq)]
pub struct Config {
    /// `[repository]`, if the file has one (otherwise flags or the environment must say where it is).
    pub repository: Option<RepositoryConfig>,
    /// `[repositories.NAME]`: secondary repositories (`bunker copy --to NAME`), in file order.
    pub secondaries: Vec<(String, RepositoryConfig)>,
    /// The targets, in the order the file names them.
    pub targets: Vec<TargetConfig>,
    /// `[retention]`: every target's policy unless it overrides keys with its own `retention`. Holds only
    /// rules in force (a `keep_* = 0` there is left out); read a target's policy with
    /// [`Config::retention_for`].
    pub retention: Option<RetentionConfig>,
    /// `[health]`: its thresholds, or the defaults.
    pub health: HealthConfig,
    /// `[catalog]`: how long run records are kept (forever by default).
    pub catalog: CatalogConfig,
    /// `[groups]`: named sets of targets, in file order (look one up with [`Config::group`]).
    pub groups: Vec<GroupConfig>,
    /// `[schedules]`: the daemon's jobs, in file order.
    pub schedules: Vec<Schedule>,
    /// `[notifications]`: where failures, recoveries and warnings are sent.
    pub notifications: NotificationsConfig,
    /// `[drill]`: objectives, smoke tests and scratch storage of `bunker drill`.
    pub drill: DrillConfig,
    /// The [`TOLERATED_SECTIONS`] present in the file, interpolated but otherwise unread.
    pub extra: BTreeMap<String, toml::Value>,
}

/// A config together with the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    /// The config file; absolute when found by [`Config::discover`].
    pub path: PathBuf,
    pub config: Config,
}

/// Shows section names but not the values of `extra`, which may hold tokens (webhook URLs, …).
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("repository", &self.repository)
            .field("secondaries", &self.secondaries)
            .field("targets", &self.targets)
            .field("retention", &self.retention)
            .field("groups", &self.groups.iter().map(|g| &g.name).collect::<Vec<_>>())
            .field("schedules", &self.schedules.iter().map(|s| &s.name).collect::<Vec<_>>())
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Config {
    /// Finds and loads the config file: `explicit` if given, else `$BUNKER_CONFIG` if set (and not empty),
    /// else `./bunker.toml` if it exists, else `Ok(None)`. A file named explicitly or by the variable must exist.
    pub fn discover(explicit: Option<&Path>) -> Result<Option<LoadedConfig>> {
        let cwd = std::env::current_dir().map_err(Error::CurrentDir)?;
        Self::discover_in(explicit, std::env::var_os(ENV_VAR), &cwd)
    }

    /// [`Config::discover`] with the variable's value and the current directory passed in (for tests, and for
    /// callers that have them already). Relative paths are taken from `cwd`; `${VAR}` reads the process
    /// environment.
    pub fn discover_in(
        explicit: Option<&Path>,
        env_value: Option<OsString>,
        cwd: &Path,
    ) -> Result<Option<LoadedConfig>> {
        let env_value = env_value.filter(|v| !v.is_empty());
        let (path, required_by) = match (explicit, env_value) {
            (Some(path), _) => (cwd.join(path), Some("on the command line")),
            (None, Some(path)) => (cwd.join(path), Some("by BUNKER_CONFIG")),
            (None, None) => (cwd.join(FILE_NAME), None),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match required_by {
                    Some(by) => Err(Error::Missing { path, by }),
                    None => Ok(None),
                }
            }
            Err(source) => return Err(Error::Read { path, source }),
        };
        let config = Self::parse(&text, &path)?;
        Ok(Some(LoadedConfig { path, config }))
    }

    /// Parses a config's text, interpolating from the process environment. `origin` is the file's path: it
    /// prefixes error messages and its directory anchors relative paths.
    pub fn parse(text: &str, origin: &Path) -> Result<Config> {
        Self::parse_with_env(text, origin, &|name| std::env::var(name).ok())
    }

    /// [`Config::parse`] with variables looked up through `env` (`None`: unset). Fails with the first
    /// error in file order.
    pub fn parse_with_env(text: &str, origin: &Path, env: Env) -> Result<Config> {
        let (config, mut errors) = Self::build(text, origin, env);
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => {
                errors.sort_by_key(Error::line);
                Err(errors.remove(0))
            }
        }
    }

    /// Every error of a config's text, in file order (`bunker config check`): each section, target,
    /// secondary repository and job is read on its own, so one mistake does not hide the next; then the
    /// names sections use of each other (groups, schedules) are checked. Empty when the file is good.
    pub fn check_with_env(text: &str, origin: &Path, env: Env) -> Vec<Error> {
        Self::check_keeping(text, origin, env).1
    }

    /// [`Config::check_with_env`], also handing back what could be read (the targets without errors of
    /// their own, whatever else is wrong in the file), so that their sources can check their options too.
    pub fn check_keeping(text: &str, origin: &Path, env: Env) -> (Option<Config>, Vec<Error>) {
        let (config, mut errors) = Self::build(text, origin, env);
        if let Some(config) = &config {
            if let Ok(doc) = Document::parse(text, origin) {
                errors.extend(config.cross_references(&doc));
            }
        }
        errors.sort_by_key(Error::line);
        (config, errors)
    }

    /// Reads everything it can; returns the config when the file parsed as TOML at all, and every error.
    fn build(text: &str, origin: &Path, env: Env) -> (Option<Config>, Vec<Error>) {
        let mut errors = Vec::new();
        let doc = match Document::parse(text, origin) {
            Ok(doc) => doc,
            Err(e) => return (None, vec![e]),
        };
        let mut table = match doc.table() {
            Ok(t) => t,
            Err(e) => return (None, vec![e]),
        };
        errors.extend(check_sections(&table, &doc));
        table.retain(|key, _| is_known_section(key));
        for (key, value) in table.iter_mut() {
            let mut path = KeyPath::key(key);
            if let Err((path, e)) = interpolate::value(value, &mut path, env) {
                errors.push(interpolation_error(&doc, &path, e));
            }
        }

        let base = origin.parent().unwrap_or(Path::new(""));
        let repository = match table.remove("repository") {
            Some(toml::Value::Table(section)) => {
                keep(&mut errors, RepositoryConfig::from_table(&section, &doc, base, &KeyPath::key("repository")))
            }
            Some(other) => keep(&mut errors, Err(not_a_table(&doc, &KeyPath::key("repository"), &other))),
            None => None,
        };
        let mut secondaries = Vec::new();
        match table.remove("repositories") {
            Some(toml::Value::Table(section)) => {
                for (name, value) in &section {
                    let path = KeyPath::key("repositories").child(name);
                    let line = doc.key_line(&path);
                    let parsed = if !is_valid_name(name) {
                        Err(Error::Invalid {
                            path: doc.path.clone(),
                            line,
                            key: path.to_string(),
                            detail: "invalid repository name; use letters, digits, '.', '_' or '-'".into(),
                        })
                    } else {
                        match value {
                            toml::Value::Table(t) => RepositoryConfig::from_table(t, &doc, base, &path),
                            other => Err(not_a_table(&doc, &path, other)),
                        }
                    };
                    if let Some(repo) = keep(&mut errors, parsed) {
                        secondaries.push((line, name.clone(), repo));
                    }
                }
            }
            Some(other) => {
                keep(&mut errors, Err::<(), _>(not_a_table(&doc, &KeyPath::key("repositories"), &other)));
            }
            None => {}
        }
        secondaries.sort_by_key(|(line, _, _)| *line);
        let secondaries = secondaries.into_iter().map(|(_, name, repo)| (name, repo)).collect();
        let mut targets = Vec::new();
        match table.remove("targets") {
            Some(toml::Value::Table(section)) => {
                for (name, value) in &section {
                    targets.extend(keep(&mut errors, TargetConfig::from_entry(name, value, &doc, origin)));
                }
            }
            Some(other) => {
                keep(&mut errors, Err::<(), _>(not_a_table(&doc, &KeyPath::key("targets"), &other)));
            }
            None => {}
        }
        targets.sort_by_key(|t| t.line);
        let retention = match table.remove("retention") {
            Some(value) => keep(&mut errors, RetentionConfig::from_value(&value, &doc, &KeyPath::key("retention")))
                .map(|r| r.in_force()),
            None => None,
        };
        let groups = match table.remove("groups") {
            Some(value) => groups::from_value(&value, &doc, &mut errors),
            None => Vec::new(),
        };
        let health = match table.remove("health") {
            Some(value) => keep(&mut errors, HealthConfig::from_value(&value, &doc)).unwrap_or_default(),
            None => HealthConfig::default(),
        };
        let catalog = match table.remove("catalog") {
            Some(value) => keep(&mut errors, CatalogConfig::from_value(&value, &doc)).unwrap_or_default(),
            None => CatalogConfig::default(),
        };
        let schedules = match table.remove("schedules") {
            Some(value) => schedules::from_value(&value, &doc, &mut errors),
            None => Vec::new(),
        };
        let notifications = match table.remove("notifications") {
            Some(value) => keep(&mut errors, NotificationsConfig::from_value(&value, &doc)).unwrap_or_default(),
            None => NotificationsConfig::default(),
        };
        let drill = match table.remove("drill") {
            Some(value) => keep(&mut errors, DrillConfig::from_value(&value, &doc, base)).unwrap_or_default(),
            None => DrillConfig::default(),
        };
        let config = Config {
            drill,
            repository,
            secondaries,
            targets,
            retention,
            health,
            catalog,
            groups,
            schedules,
            notifications,
            extra: table.into_iter().collect(),
        };
        (Some(config), errors)
    }

    /// Names one section uses of another: groups and `[drill] targets` name targets, backup jobs name
    /// groups, copy jobs name secondary repositories.
    fn cross_references(&self, doc: &Document) -> Vec<Error> {
        let mut errors = Vec::new();
        for group in &self.groups {
            for name in group.targets.iter().filter(|name| self.target(name).is_none()) {
                let path = KeyPath::key("groups").child(&group.name);
                errors.push(Error::Invalid {
                    path: doc.path.clone(),
                    // The list's line, in either spelling (`web = […]` or `targets = […]`).
                    line: doc.value_line(&path.child("targets")),
                    key: path.to_string(),
                    detail: format!("names {name:?}, which is no target"),
                });
            }
        }
        for name in &self.drill.targets {
            if self.target(name).is_none() {
                let path = KeyPath::key("drill").child("targets");
                errors.push(Error::Invalid {
                    path: doc.path.clone(),
                    line: doc.value_line(&path),
                    key: path.to_string(),
                    detail: format!("names {name:?}, which is no target"),
                });
            }
        }
        for job in &self.schedules {
            let path = KeyPath::key("schedules").child(&job.name);
            let invalid = |detail: String| Error::Invalid {
                path: doc.path.clone(),
                line: job.line,
                key: path.to_string(),
                detail,
            };
            if let Some(group) = &job.group {
                // A group with an error of its own is left out of `groups` but is in the file.
                if self.group(group).is_none() && !doc.contains(&KeyPath::key("groups").child(group)) {
                    errors.push(invalid(format!("group {group:?} is not in [groups]")));
                }
            }
            if let Some(to) = &job.to {
                if self.secondary(to).is_none() {
                    errors.push(invalid(format!("{to:?} is no [repositories.NAME] of this file")));
                }
            }
            if job.kind == JobKind::Copy && job.to.is_none() && self.secondaries.is_empty() {
                errors.push(invalid("there is no [repositories.NAME] to copy to".into()));
            }
        }
        errors
    }

    /// The secondary repository called `name`.
    pub fn secondary(&self, name: &str) -> Option<&RepositoryConfig> {
        self.secondaries.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&GroupConfig> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The target called `name`.
    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The target a snapshot name belongs to: `NAME`, or `NAME/part` for targets that take several
    /// snapshots (one per database).
    pub fn target_of_snapshot(&self, snapshot_name: &str) -> Option<&TargetConfig> {
        let base = snapshot_name.split('/').next().unwrap_or(snapshot_name);
        self.target(base)
    }

    /// The retention policy of `target`: `[retention]` with the target's own keys over it, the rules
    /// either switches off (`keep_* = 0`, `retention = "none"`) left out; `None` when neither says anything.
    /// A policy left without rules ([`RetentionConfig::has_rules`] false) keeps every snapshot.
    pub fn retention_for(&self, target: &TargetConfig) -> Option<RetentionConfig> {
        match (&self.retention, &target.retention) {
            (None, None) => None,
            (Some(d), None) => Some(d.in_force()),
            (None, Some(t)) => Some(t.in_force()),
            (Some(d), Some(t)) => Some(d.overridden_by(t).in_force()),
        }
    }
}

/// `r`'s value, or `None` with its error kept.
fn keep<T>(errors: &mut Vec<Error>, r: Result<T>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

fn is_known_section(key: &str) -> bool {
    matches!(
        key,
        "repository"
            | "repositories"
            | "targets"
            | "retention"
            | "health"
            | "catalog"
            | "groups"
            | "schedules"
            | "notifications"
            | "drill"
    ) || TOLERATED_SECTIONS.contains(&key)
}

/// Every top-level key other than the known sections. Done before interpolation, so a misspelt section
/// is reported as such rather than through a variable inside it.
fn check_sections(table: &toml::Table, doc: &Document) -> Vec<Error> {
    table
        .keys()
        .filter(|key| !is_known_section(key))
        .map(|name| Error::UnknownSection {
            path: doc.path.clone(),
            line: doc.key_line(&KeyPath::key(name)),
            name: name.clone(),
        })
        .collect()
}

fn interpolation_error(doc: &Document, path: &KeyPath, error: interpolate::ExpandError) -> Error {
    let (line, key) = (doc.value_line(path), path.to_string());
    match error {
        interpolate::ExpandError::Unset(var) => Error::UnsetVariable { path: doc.path.clone(), line, var, key },
        interpolate::ExpandError::Malformed(problem) => {
            Error::BadInterpolation { path: doc.path.clone(), line, key, problem }
        }
    }
}

fn not_a_table(doc: &Document, key: &KeyPath, value: &toml::Value) -> Error {
    Error::WrongType {
        path: doc.path.clone(),
        line: doc.key_line(key),
        key: key.to_string(),
        expected: "a table ([section])",
        found: value.type_str(),
    }
}

#[cfg(test)]
mod tests;
