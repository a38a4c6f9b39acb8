//! Loading whole files: discovery, the example config, and each kind of error with its line.

use std::collections::HashMap;
use std::fs;

use serde::Deserialize;

use super::*;

const EXAMPLE: &str = r#"[repository]
url = "s3://bucket/prefix?endpoint=http://127.0.0.1:9000"
password = "${BUNKER_PASSWORD}"

[targets.app-db]
type = "postgres"
url = "postgresql://app:${DB_PASSWORD}@${DB_HOST:-db}:5432/app"
mode = "logical"
databases = ["app", "${EXTRA_DB:-audit}"]

[[targets.app-db.assert]]
name = "users exist"
sql = "SELECT count(*) > 0 FROM users"
expect = "t"

[targets.uploads]
type = "files"
paths = ["/srv/uploads"]
"#;

fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config> {
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::parse_with_env(text, Path::new("/etc/bunker/bunker.toml"), &|name| env.get(name).cloned())
}

fn error(text: &str, vars: &[(&str, &str)]) -> String {
    parse(text, vars).unwrap_err().to_string()
}

#[test]
fn example_loads() {
    let config = parse(EXAMPLE, &[("BUNKER_PASSWORD", "hunter2"), ("DB_PASSWORD", "s3cret")]).unwrap();
    let repo = config.repository.as_ref().unwrap();
    assert_eq!(repo.url, "s3://bucket/prefix?endpoint=http://127.0.0.1:9000");
    assert_eq!(repo.password.as_ref().unwrap().expose(), "hunter2");
    assert_eq!(repo.password_file, None);

    let names: Vec<_> = config.targets.iter().map(|t| (t.name.as_str(), t.kind.as_str(), t.line)).collect();
    assert_eq!(names, [("app-db", "postgres", 5), ("uploads", "files", 16)], "file order, header lines");
    let db = config.target("app-db").unwrap();
    assert_eq!(db.options["url"].as_str(), Some("postgresql://app:s3cret@db:5432/app"));
    assert_eq!(db.options["databases"][1].as_str(), Some("audit"));
    assert_eq!(db.options["assert"][0]["expect"].as_str(), Some("t"));
    assert!(!db.options.contains_key("type"), "type is taken out of the options");
    assert_eq!(db.origin, Path::new("/etc/bunker/bunker.toml"));
    assert!(config.extra.is_empty());
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let config = parse(EXAMPLE, &[("BUNKER_PASSWORD", "hunter2"), ("DB_PASSWORD", "s3cret")]).unwrap();
    let shown = format!("{config:?} {config:#?}");
    assert!(!shown.contains("hunter2") && !shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("app-db") && shown.contains("***"));
}

#[test]
fn unset_variable_names_variable_line_and_key() {
    assert_eq!(
        error(EXAMPLE, &[("BUNKER_PASSWORD", "x")]),
        "/etc/bunker/bunker.toml:7: environment variable DB_PASSWORD is not set (used in targets.app-db.url); \
         export it or write ${DB_PASSWORD:-DEFAULT}"
    );
    let text = "[targets.a]\ntype = \"files\"\npaths = [\n  \"/x\",\n  \"${NOPE}\",\n]\n";
    let message = error(text, &[]);
    assert!(message.starts_with("/etc/bunker/bunker.toml:5: environment variable NOPE"), "{message}");
    assert!(message.contains("(used in targets.a.paths[1])"), "{message}");
    let text = "[targets.a]\ntype = \"files\"\n\n[[targets.a.hook]]\nrun = { cmd = [\"${NOPE}\"] }\n";
    assert!(
        error(text, &[]).contains(":5: environment variable NOPE is not set (used in targets.a.hook[0].run.cmd[0])")
    );
}

#[test]
fn interpolation_reaches_every_string_but_no_key() {
    let text = r#"
[targets."${A}"]
type = "${KIND:-files}"
nested = { list = [["${A}"], { x = "$${A}" }] }

[groups]
keep = ["${A}"]
"#;
    let config = parse(text, &[("A", "val")]).unwrap_err().to_string();
    assert!(config.contains("invalid target name \"${A}\""), "keys are not interpolated: {config}");

    let config = parse(&text.replace(r#"[targets."${A}"]"#, "[targets.t]"), &[("A", "val")]).unwrap();
    let t = &config.targets[0];
    assert_eq!(t.kind, "files");
    assert_eq!(t.options["nested"]["list"][0][0].as_str(), Some("val"));
    assert_eq!(t.options["nested"]["list"][1]["x"].as_str(), Some("${A}"));
    assert_eq!(config.group("keep").unwrap().targets, ["val"]);
}

#[test]
fn malformed_reference_is_reported_without_the_value() {
    let message = error("[repository]\nurl = \"/r\"\npassword = \"abc${oops\"\n", &[]);
    assert!(message.starts_with("/etc/bunker/bunker.toml:3: an unclosed ${ in repository.password;"), "{message}");
    assert!(!message.contains("abc"));
}

#[test]
fn bad_target_names_are_rejected_with_their_line() {
    for name in ["\"-lead\"", "\"has space\"", "\"a/b\"", &format!("\"{}\"", "x".repeat(65))] {
        let message = error(&format!("\n[targets.{name}]\ntype = \"files\"\n"), &[]);
        assert!(message.starts_with("/etc/bunker/bunker.toml:2: invalid target name"), "{message}");
    }
    let message = error("[targets]\nok = { type = \"files\" }\n\"bad name\" = { type = \"files\" }\n", &[]);
    assert!(message.starts_with("/etc/bunker/bunker.toml:3: invalid target name \"bad name\""), "{message}");
}

#[test]
fn targets_need_a_type() {
    let message = error("[targets.a]\npaths = []\n", &[]);
    assert!(message.starts_with("/etc/bunker/bunker.toml:1: targets.a.type is missing;"), "{message}");
    let message = error("[targets.a]\npaths = []\ntype = \"\"\n", &[]);
    assert!(message.starts_with("/etc/bunker/bunker.toml:3: targets.a.type is empty"), "{message}");
    let message = error("[targets.a]\ntype = 3\n", &[]);
    assert!(message.starts_with("/etc/bunker/bunker.toml:2: targets.a.type must be a string, not integer"));
    let message = error("[targets]\na = \"files\"\n", &[]);
    assert!(message.starts_with("/etc/bunker/bunker.toml:2: targets.a must be a table"), "{message}");
    let message = error("targets = 1\n", &[]);
    assert!(message.starts_with("/etc/bunker/bunker.toml:1: targets must be a table"), "{message}");
}

#[test]
fn repository_checks() {
    let message = error("[repository]\nurl = \"/r\"\npassword = \"pw\"\npassword_file = \"/pw\"\n", &[]);
    assert_eq!(message, "/etc/bunker/bunker.toml:1: [repository] sets both password and password_file; keep only one");
    let message = error("[repository]\npassword_file = \"/pw\"\n", &[]);
    assert!(message.starts_with("/etc/bunker/bunker.toml:1: repository.url is missing;"), "{message}");
    let message = error("[repository]\nurl = \"/r\"\npasword = \"hunter2\"\n", &[]);
    assert_eq!(
        message,
        "/etc/bunker/bunker.toml:3: unknown key repository.pasword; expected one of url, password, password_file, object_lock or object_lock_mode"
    );
    let message = error("[repository]\nurl = \"/r\"\npassword = \"${P:-}\"\n", &[]);
    assert!(message.starts_with("/etc/bunker/bunker.toml:3: repository.password is empty"), "{message}");
    let message = error("[repository]\nurl = [\"/r\"]\n", &[]);
    assert!(message.starts_with("/etc/bunker/bunker.toml:2: repository.url must be a string, not array"));
    assert!(parse("[targets]\n", &[]).unwrap().repository.is_none(), "no [repository] is fine");
}

#[test]
fn secrets_stay_out_of_errors() {
    let text = "[repository]\nurl = \"/r\"\npassword = \"hunter2\"\npassword_file = \"/pw\"\n";
    assert!(!error(text, &[]).contains("hunter2"));
    let text = "[repository]\nurl = \"/r\"\npassword = 42\n";
    assert!(!error(text, &[]).contains("42\""));
    let text = "[targets.db]\ntype = \"x\"\nport = \"hunter2\"\n";
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Opts {
        port: u16,
    }
    let message = parse(text, &[]).unwrap().targets[0].options::<Opts>().unwrap_err().to_string();
    assert!(
        message.starts_with("/etc/bunker/bunker.toml:1: target db: port: invalid type: a string, expected u16"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn syntax_errors_give_line_and_column() {
    let message = error("[repository]\nurl = \"/r\"\npassword = oops\n", &[]);
    assert!(message.starts_with("/etc/bunker/bunker.toml:3:12: "), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    let message = error("[targets.a]\ntype = \"x\"\n[targets.a]\ntype = \"y\"\n", &[]);
    assert!(message.starts_with("/etc/bunker/bunker.toml:3:"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
}

#[test]
fn unknown_sections_are_rejected() {
    assert_eq!(
        error("[repository]\nurl = \"/r\"\n\n[foo]\nx = 1\n", &[]),
        "/etc/bunker/bunker.toml:4: unknown section [foo]; expected repository, repositories, targets, retention, \
         health, schedules, notifications, groups or drill"
    );
    assert!(error("stray = 1\n", &[]).starts_with("/etc/bunker/bunker.toml:1: unknown section [stray]"));
    let config = parse("[retention]\nkeep_daily = 7\n[health]\n[groups]\nweb = [\"a\"]\n", &[]).unwrap();
    assert!(config.extra.is_empty(), "groups are read, not kept raw");
    assert!(TOLERATED_SECTIONS.is_empty());
    assert_eq!(config.retention.as_ref().and_then(|r| r.keep_daily), Some(7));
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let text = "[repository]\nurl = \"./repo\"\npassword_file = \"secrets/pw\"\n";
    let repo = parse(text, &[]).unwrap().repository.unwrap();
    assert_eq!(repo.url, "/etc/bunker/repo");
    assert_eq!(repo.password_file.as_deref(), Some(Path::new("/etc/bunker/secrets/pw")));

    let text = "[repository]\nurl = \"file://repo\"\npassword_file = \"/abs/pw\"\n";
    let repo = parse(text, &[]).unwrap().repository.unwrap();
    assert_eq!(repo.url, "file:///etc/bunker/repo");
    assert_eq!(repo.password_file.as_deref(), Some(Path::new("/abs/pw")));

    let text = "[repository]\nurl = \"${BASE}/repo\"\n";
    assert_eq!(parse(text, &[("BASE", "data")]).unwrap().repository.unwrap().url, "/etc/bunker/data/repo");
    assert_eq!(parse(text, &[("BASE", "/var")]).unwrap().repository.unwrap().url, "/var/repo");
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct PgOptions {
    url: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    databases: Option<toml::Value>,
}

#[test]
fn options_deserialise_into_a_source_struct() {
    let text = "\n[targets.app-db]\ntype = \"postgres\"\nurl = \"pg://x\"\nmode = \"logical\"\n";
    let options: PgOptions = parse(text, &[]).unwrap().targets[0].options().unwrap();
    assert_eq!(options, PgOptions { url: "pg://x".into(), mode: Some("logical".into()), databases: None });
}

#[test]
fn options_errors_name_target_key_and_line() {
    let text = "\n[targets.app-db]\ntype = \"postgres\"\nurl = \"pg://x\"\ndatabse = \"all\"\n";
    let message = parse(text, &[]).unwrap().targets[0].options::<PgOptions>().unwrap_err().to_string();
    assert_eq!(
        message,
        "/etc/bunker/bunker.toml:2: target app-db: unknown option \"databse\" \
         (expected one of url, mode, databases); check the spelling"
    );
    let text = "[targets.app-db]\ntype = \"postgres\"\n";
    let message = parse(text, &[]).unwrap().targets[0].options::<PgOptions>().unwrap_err().to_string();
    assert_eq!(message, "/etc/bunker/bunker.toml:1: target app-db: missing option \"url\"; add it to [targets.NAME]");
}

#[test]
fn options_errors_name_nested_keys() {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        databases: Vec<String>,
        tls: Option<Tls>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Tls {
        mode: String,
    }
    let message = |body: &str| {
        let text = format!("[targets.a]\ntype = \"x\"\n{body}\n");
        parse(&text, &[]).unwrap().targets[0].options::<Outer>().unwrap_err().to_string()
    };
    assert_eq!(
        message("databases = [\"a\", 3]"),
        "/etc/bunker/bunker.toml:1: target a: databases[1]: invalid type: integer `3`, expected a string"
    );
    assert_eq!(
        message("databases = []\ntls = { mdoe = \"x\" }"),
        "/etc/bunker/bunker.toml:1: target a: tls: unknown option \"mdoe\" (expected mode); check the spelling"
    );
}

#[test]
fn discovery_order() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let write = |name: &str, repo: &str| {
        let path = cwd.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("[repository]\nurl = \"{repo}\"\n")).unwrap();
        path
    };
    let url = |found: Option<LoadedConfig>| found.unwrap().config.repository.unwrap().url;

    assert!(Config::discover_in(None, None, cwd).unwrap().is_none(), "nothing anywhere is fine");
    write(FILE_NAME, "/from-cwd");
    let found = Config::discover_in(None, None, cwd).unwrap().unwrap();
    assert_eq!(found.path, cwd.join(FILE_NAME));
    assert_eq!(url(Some(found)), "/from-cwd");

    write("env/b.toml", "/from-env");
    assert_eq!(url(Config::discover_in(None, Some("env/b.toml".into()), cwd).unwrap()), "/from-env");
    assert_eq!(url(Config::discover_in(None, Some("".into()), cwd).unwrap()), "/from-cwd", "empty = unset");

    let explicit = write("explicit/c.toml", "relative");
    let found = Config::discover_in(Some(&explicit), Some("env/b.toml".into()), cwd).unwrap();
    assert_eq!(url(found), cwd.join("explicit/relative").display().to_string(), "explicit wins; paths from its dir");
}

#[test]
fn discovery_requires_named_files() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    fs::write(cwd.join(FILE_NAME), "[targets]\n").unwrap();

    let err = Config::discover_in(Some(Path::new("missing.toml")), None, cwd).unwrap_err();
    assert!(matches!(&err, Error::Missing { by: "on the command line", .. }), "{err}");
    assert!(err.to_string().contains("missing.toml (named on the command line) does not exist"), "{err}");
    let err = Config::discover_in(None, Some("gone.toml".into()), cwd).unwrap_err();
    assert!(err.to_string().contains("gone.toml (named by BUNKER_CONFIG) does not exist"), "{err}");

    fs::write(cwd.join(FILE_NAME), "[bogus]\n").unwrap();
    let err = Config::discover_in(None, None, cwd).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("{}:1: unknown section [bogus]; expected repository, repositories, targets, retention, health, schedules, notifications, groups or drill", cwd.join(FILE_NAME).display())
    );
}

#[test]
fn hooks_are_taken_out_of_every_target_and_checked() {
    let text = "[targets.app]\ntype = \"files\"\npaths = [\"/srv\"]\nbefore_backup = \"maint on\"\nafter_backup = \"maint off\"\nhook_timeout = \"30s\"\n";
    let config = parse(text, &[]).unwrap();
    let app = config.target("app").unwrap();
    assert_eq!(app.hooks.before_backup.as_deref(), Some("maint on"));
    assert_eq!(app.hooks.after_backup.as_deref(), Some("maint off"));
    assert_eq!(app.hooks.before_restore, None);
    assert_eq!(app.hooks.timeout, std::time::Duration::from_secs(30));
    assert!(!app.options.contains_key("before_backup") && !app.options.contains_key("hook_timeout"));
    let plain = parse("[targets.app]\ntype = \"files\"\npaths = [\"/srv\"]\n", &[]).unwrap();
    assert_eq!(plain.target("app").unwrap().hooks.timeout, std::time::Duration::from_secs(300));
    let e = error("[targets.app]\ntype = \"files\"\nafter_restore = 5\n", &[]);
    assert!(e.contains(":3:") && e.contains("after_restore"), "{e}");
    let e = error("[targets.app]\ntype = \"files\"\nhook_timeout = \"soon\"\n", &[]);
    assert!(e.contains(":3:") && e.contains("hook_timeout"), "{e}");
}

#[test]
fn retention_defaults_and_per_target_overrides() {
    let text = "[retention]\nkeep_daily = 7\nkeep_weekly = 4\nkeep_within = \"2d\"\n\n\
                [targets.db]\ntype = \"postgres\"\nurl = \"postgresql://x\"\nretention = { keep_daily = 30, min_age = \"0s\" }\n\n\
                [targets.media]\ntype = \"files\"\npaths = [\"/srv\"]\n";
    let c = parse(text, &[]).unwrap();
    let db = c.retention_for(c.target("db").unwrap()).unwrap();
    assert_eq!((db.keep_daily, db.keep_weekly), (Some(30), Some(4)));
    assert_eq!(db.keep_within, Some(std::time::Duration::from_secs(2 * 86400)));
    assert_eq!(db.floor(), std::time::Duration::ZERO);
    let media = c.retention_for(c.target("media").unwrap()).unwrap();
    assert_eq!(media.keep_daily, Some(7));
    assert_eq!(media.floor(), DEFAULT_MIN_AGE);
    assert!(!c.target("db").unwrap().options.contains_key("retention"), "retention left in the source's options");
    assert_eq!(c.target_of_snapshot("db/app").unwrap().name, "db");
    assert!(c.target_of_snapshot("other").is_none());
}

#[test]
fn retention_errors_name_the_line_and_key() {
    let e = error("[retention]\nkeep_daily = 7\nkeep_dayly = 3\n", &[]);
    assert!(e.contains("bunker.toml:3:") && e.contains("retention.keep_dayly") && e.contains("keep_daily"), "{e}");
    let e = error("[retention]\nkeep_last = -1\n", &[]);
    assert!(e.contains(":2:") && e.contains("0 or more"), "{e}");
    let e = error("[retention]\nkeep_within = \"never\"\n", &[]);
    assert!(e.contains(":2:") && e.contains("retention.keep_within") && e.contains("\"none\""), "{e}");
    let e = error("[retention]\nmin_age = \"none\"\n", &[]);
    assert!(e.contains(":2:") && e.contains("retention.min_age"), "min_age is turned off with \"0s\": {e}");
    let e = error("[targets.x]\ntype = \"files\"\nretention = \"nothing\"\n", &[]);
    assert_eq!(
        e,
        "/etc/bunker/bunker.toml:3: targets.x.retention must be a table (e.g. { keep_daily = 7, keep_weekly = 4 }) \
         or \"none\", not another string"
    );
    let e = error("[targets.x]\ntype = \"files\"\nretention = 0\n", &[]);
    assert!(e.contains(":3:") && e.contains("or \"none\", not integer"), "{e}");
    let e = error("[targets.x]\ntype = \"files\"\npaths = [\"/\"]\nretention = { min_age = \"a week\" }\n", &[]);
    assert!(e.contains(":4:") && e.contains("targets.x.retention.min_age") && e.contains("30d"), "{e}");
    let e = error("retention = 3\n", &[]);
    assert!(e.contains(":1:") && e.contains("must be a table"), "{e}");
}

#[test]
fn health_thresholds_default_and_parse() {
    assert_eq!(parse("", &[]).unwrap().health, HealthConfig::default());
    let c = parse("[health]\nwarning_after = \"2h\"\ncritical_after = \"6h\"\n", &[]).unwrap();
    assert_eq!(c.health.warning_after, std::time::Duration::from_secs(7200));
    let e = error("[health]\nwarning_after = 5\n", &[]);
    assert!(e.contains(":2:") && e.contains("health.warning_after"), "{e}");
    let e = error("[health]\nwarning_after = \"9h\"\ncritical_after = \"1h\"\n", &[]);
    assert!(e.contains("at least"), "{e}");
    assert_eq!(HealthConfig::default().failures_warning, 3);
    assert_eq!(parse("[health]\nfailures_warning = 0\n", &[]).unwrap().health.failures_warning, 0);
    let e = error("[health]\nfailures_warning = \"many\"\n", &[]);
    assert!(e.contains("health.failures_warning") && e.contains("count"), "{e}");
}

#[test]
fn check_reports_every_error_in_file_order() {
    let text = r#"[repository]
url = "/r"
colour = "blue"

[targets.ok]
type = "files"

[targets."bad name"]
type = "files"

[targets.untyped]
paths = []

[groups]
web = ["ok", "ghost"]

[schedules]
backup = "0 25 * * *"
check = "0 5 * * 0"
[schedules.hourly]
run = "backup"
group = "nope"
cron = "0 * * * *"
[schedules.offsite]
run = "copy"
cron = "0 2 * * *"

[bogus]
"#;
    let errors: Vec<String> = Config::check_with_env(text, Path::new("/etc/bunker/bunker.toml"), &|_| None)
        .iter()
        .map(|e| e.to_string())
        .collect();
    let lines: Vec<&str> = errors.iter().map(|e| e.split(':').nth(1).unwrap()).collect();
    assert_eq!(lines, ["3", "8", "11", "15", "18", "20", "24", "28"], "{errors:#?}");
    assert!(errors[0].contains("unknown key repository.colour"));
    assert!(errors[3].contains("groups.web") && errors[3].contains("\"ghost\""));
    assert!(errors[4].contains("schedules.backup"));
    assert!(errors[5].contains("group \"nope\""));
    assert!(errors[6].contains("no [repositories.NAME]"));
    assert!(errors[7].contains("unknown section [bogus]"));
    let good = "[repository]\nurl = \"/r\"\n[targets.a]\ntype = \"files\"\n[schedules]\nbackup = \"0 1 * * *\"\n";
    assert!(Config::check_with_env(good, Path::new("/b.toml"), &|_| None).is_empty());
}

#[test]
fn the_drill_section_and_target_objectives() {
    let text = r#"
[targets.db]
type = "postgres"
url = "postgresql://db/app"
rto_objective = "5m"

[drill]
rto_objective = "15m"
rpo_objective = "26h"
targets = ["db"]
after_restore = "./smoke.sh"
report = "reports/drill.html"
"#;
    let config = parse(text, &[]).unwrap();
    let d = &config.drill;
    assert_eq!(d.rto_objective, Some(std::time::Duration::from_secs(900)));
    assert_eq!(d.rpo_objective, Some(std::time::Duration::from_secs(26 * 3600)));
    assert_eq!((d.targets.clone(), d.after_restore.clone()), (vec!["db".to_string()], vec!["./smoke.sh".to_string()]));
    assert_eq!(d.hook_timeout, std::time::Duration::from_secs(600));
    assert!(d.report.as_ref().unwrap().ends_with("reports/drill.html") && d.report.as_ref().unwrap().is_absolute());
    let db = config.target("db").unwrap();
    assert_eq!(db.objectives.rto, Some(std::time::Duration::from_secs(300)));
    assert!(!db.options.contains_key("rto_objective"), "objectives are not the source's options");

    let err = error("[drill]\nrto_objective = 15\n", &[]);
    assert!(err.contains(":2:") && err.contains("drill.rto_objective") && err.contains("duration"), "{err}");
    let err = error("[drill]\nrpo = \"1h\"\n", &[]);
    assert!(err.contains("unknown key") || err.contains("drill.rpo"), "{err}");
    let err = error("[targets.db]\ntype = \"files\"\nrpo_objective = \"soon\"\n", &[]);
    assert!(err.contains(":3:") && err.contains("rpo_objective"), "{err}");
}

#[test]
fn retention_rules_switched_off_are_left_out_of_the_policy() {
    let text = "[retention]\nkeep_daily = 7\nkeep_weekly = 4\nkeep_within = \"2d\"\nkeep_yearly = 0\nmin_age = \"3d\"\n\n\
                [targets.db]\ntype = \"files\"\nretention = { keep_daily = 0, keep_within = \"0s\", keep_last = 3 }\n\n\
                [targets.logs]\ntype = \"files\"\nretention = { keep_within = \"none\", keep_weekly = 0, keep_daily = 0 }\n\n\
                [targets.media]\ntype = \"files\"\nretention = \"none\"\n\n\
                [targets.web]\ntype = \"files\"\n";
    let c = parse(text, &[]).unwrap();
    let policy = |name: &str| c.retention_for(c.target(name).unwrap()).unwrap();
    assert_eq!(c.retention.as_ref().unwrap().keep_yearly, None, "keep_yearly = 0 in [retention]: no rule");

    let db = policy("db");
    assert_eq!(
        db,
        RetentionConfig {
            keep_last: Some(3),
            keep_weekly: Some(4),
            min_age: Some(std::time::Duration::from_secs(3 * 86400)),
            ..Default::default()
        },
        "keep_daily and keep_within unset over [retention], keep_weekly inherited"
    );
    assert!(db.has_rules());

    let logs = policy("logs");
    assert!(!logs.has_rules(), "every inherited rule switched off: {logs:?}");
    assert_eq!(
        logs,
        RetentionConfig { min_age: Some(std::time::Duration::from_secs(3 * 86400)), ..Default::default() }
    );

    let media = policy("media");
    assert!(!media.has_rules(), "retention = \"none\": {media:?}");
    assert_eq!(media.floor(), std::time::Duration::from_secs(3 * 86400), "the floor is still [retention]'s");
    assert_eq!(c.target("media").unwrap().retention, Some(RetentionConfig::none()));

    assert_eq!(policy("web").keep_daily, Some(7));
    for t in &c.targets {
        let p = c.retention_for(t).unwrap();
        let counts = [p.keep_last, p.keep_hourly, p.keep_daily, p.keep_weekly, p.keep_monthly, p.keep_yearly];
        assert!(!counts.contains(&Some(0)) && p.keep_within != Some(std::time::Duration::ZERO), "{}: {p:?}", t.name);
    }

    // Without [retention], a target that switches everything off still has a (ruleless) policy.
    let c = parse("[targets.a]\ntype = \"files\"\nretention = \"none\"\n[targets.b]\ntype = \"files\"\n", &[]).unwrap();
    let a = c.retention_for(c.target("a").unwrap()).unwrap();
    assert!(!a.has_rules() && a.min_age.is_none() && a.floor() == DEFAULT_MIN_AGE, "{a:?}");
    assert_eq!(c.retention_for(c.target("b").unwrap()), None);
    let zeros =
        RetentionConfig { keep_last: Some(0), keep_within: Some(std::time::Duration::ZERO), ..Default::default() };
    assert!(!zeros.has_rules(), "a zero is no rule, even on a policy as written");
    assert!(!RetentionConfig::none().has_rules());
}

#[test]
fn groups_in_both_spellings() {
    let text = r#"[targets.db]
type = "files"
[targets.files]
type = "files"

[groups]
nightly = ["db", "files"]

[groups.web]
targets = ["files"]
after_restore = "curl -fsS http://localhost/${PATH_PART:-health}"

[groups.all]
targets = ["db", "files"]
after_restore = ["./a.sh", "./b.sh"]
"#;
    let c = parse(text, &[]).unwrap();
    let shape: Vec<_> = c.groups.iter().map(|g| (g.name.as_str(), g.line)).collect();
    assert_eq!(shape, [("nightly", 7), ("web", 9), ("all", 13)], "file order, lines of their keys");
    assert_eq!(
        c.group("nightly"),
        Some(&GroupConfig {
            name: "nightly".into(),
            targets: vec!["db".into(), "files".into()],
            after_restore: vec![],
            line: 7
        })
    );
    let web = c.group("web").unwrap();
    assert_eq!(web.targets, ["files"]);
    assert_eq!(web.after_restore, ["curl -fsS http://localhost/health"], "interpolated");
    assert_eq!(c.group("all").unwrap().after_restore, ["./a.sh", "./b.sh"]);
    assert!(c.group("nope").is_none());
    assert!(c.extra.is_empty());
    let shown = format!("{:?}", c.group("web").unwrap());
    assert!(!shown.contains("curl") && shown.contains("1 command(s)"), "commands stay out of Debug: {shown}");
    assert!(Config::check_with_env(text, Path::new("/b.toml"), &|_| None).is_empty());
    assert!(parse("[targets.a]\ntype = \"files\"\n", &[]).unwrap().groups.is_empty());
}

#[test]
fn group_errors_name_the_line_and_what_is_accepted() {
    let e = error("[groups.web]\ntargets = [\"a\"]\nafter_restor = \"x\"\n", &[]);
    assert_eq!(
        e,
        "/etc/bunker/bunker.toml:3: unknown key groups.web.after_restor; expected one of targets or after_restore"
    );
    let e = error("[groups.web]\nafter_restore = \"x\"\n", &[]);
    assert!(e.starts_with("/etc/bunker/bunker.toml:1: groups.web.targets is missing; add targets ="), "{e}");
    let e = error("[groups]\nweb = []\n", &[]);
    assert_eq!(e, "/etc/bunker/bunker.toml:2: groups.web: must be a non-empty list of target names");
    let e = error("[groups]\nweb = \"db\"\n", &[]);
    assert_eq!(e, "/etc/bunker/bunker.toml:2: groups.web: must be a non-empty list of target names");
    let e = error("[groups]\nweb = [\"db\", 3]\n", &[]);
    assert_eq!(e, "/etc/bunker/bunker.toml:2: groups.web: must be a list of target names");
    let e = error("[groups.web]\n\ntargets = []\n", &[]);
    assert_eq!(e, "/etc/bunker/bunker.toml:3: groups.web.targets: must be a non-empty list of target names");
    let e = error("[groups.web]\ntargets = [\"a\"]\nafter_restore = 5\n", &[]);
    assert!(e.starts_with("/etc/bunker/bunker.toml:3: groups.web.after_restore must be a command or a list"), "{e}");
    let e = error("groups = [\"a\"]\n", &[]);
    assert!(e.starts_with("/etc/bunker/bunker.toml:1: groups must be a table"), "{e}");
    let e = error("[[groups]]\nname = \"g\"\n", &[]);
    assert!(e.starts_with("/etc/bunker/bunker.toml:1: groups must be a table"), "{e}");
}

#[test]
fn check_reports_group_errors_beside_the_others() {
    let text = r#"[targets.db]
type = "files"

[groups.web]
targets = ["db", "ghost"]

[groups]
broken = []
bad = { targets = ["db"], extra = 1 }

[schedules.a]
run = "backup"
group = "broken"
cron = "0 * * * *"
[schedules.b]
run = "backup"
group = "missing"
cron = "0 * * * *"

[targets.x]
type = 3
"#;
    let errors: Vec<String> =
        Config::check_with_env(text, Path::new("/b.toml"), &|_| None).iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors,
        [
            "/b.toml:5: groups.web: names \"ghost\", which is no target",
            "/b.toml:8: groups.broken: must be a non-empty list of target names",
            "/b.toml:9: unknown key groups.bad.extra; expected one of targets or after_restore",
            "/b.toml:15: schedules.b: group \"missing\" is not in [groups]",
            "/b.toml:21: targets.x.type must be a string, not integer",
        ],
        "a group with an error of its own is not also reported as missing by the job naming it"
    );
    let (config, _) = Config::check_keeping(text, Path::new("/b.toml"), &|_| None);
    let names: Vec<_> = config.unwrap().groups.iter().map(|g| g.name.clone()).collect();
    assert_eq!(names, ["web"], "what could be read is handed back");
}

#[test]
fn targets_opt_in_to_after_restore_in_drills() {
    let c = parse("[targets.a]\ntype = \"files\"\nafter_restore = \"reindex\"\ndrill_after_restore = true\n[targets.b]\ntype = \"files\"\n", &[]).unwrap();
    let a = c.target("a").unwrap();
    assert!(a.hooks.drill_after_restore);
    assert_eq!(a.hooks.after_restore.as_deref(), Some("reindex"));
    assert!(!a.options.contains_key("drill_after_restore"), "not a source option");
    assert!(!c.target("b").unwrap().hooks.drill_after_restore, "off by default");
    let c = parse("[targets.a]\ntype = \"files\"\ndrill_after_restore = false\n", &[]).unwrap();
    assert!(!c.target("a").unwrap().hooks.drill_after_restore);
    let e = error("[targets.a]\ntype = \"files\"\n\ndrill_after_restore = \"yes\"\n", &[]);
    assert_eq!(e, "/etc/bunker/bunker.toml:4: targets.a.drill_after_restore must be true or false, not string");
}
