//! `bunker backup TARGET` for PostgreSQL targets of a stack file, against scratch clusters.

mod common;

use bunker_scratch::{PgBinaries, ScratchPostgres};
use common::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_postgres_target_is_backed_up_per_database_from_the_stack_file() {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let pg = ScratchPostgres::start(&bins).unwrap();
    for db in ["app", "billing"] {
        pg.psql("postgres", &format!("CREATE DATABASE {db}")).unwrap();
        pg.psql(db, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g")
            .unwrap();
    }
    let repo = Repo::new();
    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nurl = \"{}\"\npassword = \"${{APP_BACKUP_PASSWORD}}\"\n\n\
             [targets.main-db]\ntype = \"postgres\"\nurl = \"postgresql://postgres@127.0.0.1:${{PGPORT_UNDER_TEST}}/app\"\n\n\
             [targets.all-dbs]\ntype = \"postgres\"\nurl = \"{}\"\ndatabases = [\"app\", \"billing\"]\n",
            repo.path.display(),
            pg.url("postgres")
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        repo.cmd(args)
            .env_remove("BUNKER_REPO")
            .env_remove("BUNKER_PASSWORD")
            .env("BUNKER_CONFIG", &config)
            .env("APP_BACKUP_PASSWORD", PASSWORD)
            .env("PGPORT_UNDER_TEST", pg.port().to_string())
            .output()
            .unwrap()
    };
    let out = run(&["backup", "main-db", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let one: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(one["name"], "main-db");

    let out = run(&["backup", "all-dbs", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let many: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = many.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["all-dbs/app", "all-dbs/billing"]);

    let snaps = repo.snapshots();
    let main = snaps.iter().find(|s| s["name"] == "main-db").unwrap();
    assert_eq!(main["kind"], "postgres-logical");
    assert_eq!(main["meta"]["database"], "app");
    assert_eq!(main["meta"]["tables"][0]["rows"], 500);
    // The stored dump is a pg_dump custom-format archive.
    assert_eq!(&repo.dump("main-db:latest")[..5], b"PGDMP");

    // ls: what the dump holds, from its TOC, with the recorded row count and the table's bytes in it.
    pg.psql("app", "CREATE SCHEMA crm; CREATE TABLE crm.contacts (id serial PRIMARY KEY, doc jsonb); CREATE VIEW crm.v AS SELECT id FROM crm.contacts")
        .unwrap();
    pg.psql("app", "SELECT lo_from_bytea(0, 'blob')").unwrap();
    let out = run(&["backup", "main-db"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["--json", "ls", "main-db:latest"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = listed["items"].as_array().unwrap();
    let find =
        |path: &str| items.iter().find(|i| i["path"] == path).unwrap_or_else(|| panic!("{path} not in {listed}"));
    assert_eq!(find("public.t")["kind"], "table");
    assert_eq!(find("public.t")["detail"], "500 rows");
    assert!(find("public.t")["size"].as_u64().unwrap() > 1000, "{listed}");
    assert_eq!(find("crm")["kind"], "schema");
    assert_eq!(find("crm.contacts_id_seq")["kind"], "sequence");
    assert_eq!(find("crm.v")["kind"], "view");
    assert!(items.iter().any(|i| i["kind"] == "large-object"), "{listed}");
    let out = run(&["ls", "main-db:latest", "crm.*"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("crm.contacts") && !text.contains("public.t"), "{text}");

    let out = run(&["backup", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no target \"nope\"") && stderr(&out).contains("main-db"), "{}", stderr(&out));
    let out = run(&["backup", "main-db"]);
    assert!(out.status.success());
    // An unset variable in the stack file is named with its line.
    let unset = repo
        .cmd(&["backup", "main-db"])
        .env("BUNKER_CONFIG", &config)
        .env("APP_BACKUP_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert_eq!(unset.status.code(), Some(1));
    assert!(
        stderr(&unset).contains("bunker.toml:") && stderr(&unset).contains("PGPORT_UNDER_TEST"),
        "{}",
        stderr(&unset)
    );
    // An unreachable server: a clear error and no new snapshot.
    let before = repo.snapshot_count();
    let bad = repo
        .cmd(&["backup", "main-db"])
        .env("BUNKER_CONFIG", &config)
        .env("APP_BACKUP_PASSWORD", PASSWORD)
        .env("PGPORT_UNDER_TEST", bunker_scratch::free_port().unwrap().to_string())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("cannot connect"), "{}", stderr(&bad));
    assert_eq!(repo.snapshot_count(), before);
}

#[test]
fn restore_verifies_refuses_non_empty_targets_and_verify_names_what_is_wrong() {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let source = ScratchPostgres::start(&bins).unwrap();
    source.psql("postgres", "CREATE DATABASE app").unwrap();
    source
        .psql(
            "app",
            "CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL);
             CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers(id), total numeric);
             INSERT INTO customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 300) g;
             INSERT INTO orders SELECT g, 1 + g % 300, g FROM generate_series(1, 900) g;
             INSERT INTO orders VALUES (901, NULL, 1);",
        )
        .unwrap();
    let scratch = ScratchPostgres::start(&bins).unwrap();
    let repo = Repo::new();
    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[targets.app]\ntype = \"postgres\"\nurl = \"{}\"\n\n\
             [[targets.app.assert]]\nname = \"has customers\"\nsql = \"SELECT count(*) > 0 FROM customers\"\nexpect = \"t\"\n\n\
             [[targets.app.assert]]\nname = \"no test accounts\"\nsql = \"SELECT count(*) FROM customers WHERE email LIKE '%@test.invalid'\"\nexpect = \"0\"\n",
            source.url("app")
        ),
    )
    .unwrap();
    let run = |args: &[&str]| repo.cmd(args).env("BUNKER_CONFIG", &config).output().unwrap();
    let out = run(&["backup", "app"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let into = scratch.url("restored");
    let out = run(&["restore", "app", "--into", &into, "--jobs", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("row counts 2/2 tables") && text.contains("assertions 2/2"), "{text}");
    assert_eq!(scratch.psql("restored", "SELECT count(*) FROM orders").unwrap(), "901");

    // Not into a database that holds tables, unless --force.
    let out = run(&["restore", "app", "--into", &into]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not empty") && stderr(&out).contains("--force"), "{}", stderr(&out));
    let out = run(&["restore", "app", "--into", &into, "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(scratch.psql("restored", "SELECT count(*) FROM customers").unwrap(), "300");

    // Damage it: a row deleted, an orphan slipped in past the constraint, an assertion broken.
    scratch
        .psql(
            "restored",
            "DELETE FROM orders WHERE id IN (5, 6);
             ALTER TABLE orders DISABLE TRIGGER ALL;
             INSERT INTO orders VALUES (999, 12345, 1);
             ALTER TABLE orders ENABLE TRIGGER ALL;
             INSERT INTO customers VALUES (1000, 'qa@test.invalid');",
        )
        .unwrap();
    let out = run(&["verify", "app", "--against", &into]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("foreign key orders_customer_id_fkey on orders: 1 orphaned rows"), "{err}");
    assert!(err.contains("assertion \"no test accounts\" returned \"1\""), "{err}");
    assert!(err.contains("table public.customers has 301 rows, expected 300"), "{err}");
    assert!(err.contains("table public.orders has 900 rows, expected 901"), "{err}");
    let report: serde_json::Value =
        serde_json::from_slice(&run(&["verify", "app", "--against", &into, "--json"]).stdout).unwrap();
    assert_eq!(report["ok"], false);
    // The untouched source still verifies.
    let out = run(&["verify", "app", "--against", &source.url("app")]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The catalog holds every run: the refused restore and the failed verifications name what was wrong.
    let runs = repo.json(&["history", "--target", "app"]);
    let summary: Vec<(&str, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["operation"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("backup", "success"),
            ("restore", "success"),
            ("restore", "failed"),
            ("restore", "success"),
            ("verify", "failed"),
            ("verify", "failed"),
            ("verify", "success")
        ]
    );
    let runs = runs.as_array().unwrap();
    assert!(runs[2]["error"].as_str().unwrap().contains("not empty"), "{runs:?}");
    assert_eq!(runs[1]["details"]["method"], "direct");
    assert_eq!(runs[3]["details"]["method"], "file");
    assert!(runs[4]["error"].as_str().unwrap().contains("orders_customer_id_fkey"), "{runs:?}");
    let verify_runs = repo.json(&["history", "--operation", "verify", "--failed", "--since", "1h"]);
    assert_eq!(verify_runs.as_array().unwrap().len(), 2);
}

#[test]
fn passwords_come_from_the_stack_file_and_a_wrong_one_is_a_clear_error() {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let pg = ScratchPostgres::start(&bins).unwrap();
    pg.psql("postgres", "CREATE DATABASE app").unwrap();
    pg.require_password("backup", "Tr0ub4dor&3").unwrap();
    let repo = Repo::new();
    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        format!(
            "[targets.app]\ntype = \"postgres\"\nurl = \"postgresql://backup:${{DB_PASSWORD}}@127.0.0.1:{}/app\"\n",
            pg.port()
        ),
    )
    .unwrap();
    let run = |pw: &str| {
        repo.cmd(&["backup", "app"])
            .env("BUNKER_CONFIG", &config)
            .env("DB_PASSWORD", pw)
            .env_remove("PGPASSWORD")
            .env("PGPASSFILE", "/nonexistent")
            .output()
            .unwrap()
    };
    let out = run("Tr0ub4dor&3");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run("wrong-horse");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("password authentication failed") && err.contains("backup@127.0.0.1"), "{err}");
    assert!(!err.contains("wrong-horse") && !err.contains("Tr0ub4dor"), "a password leaked: {err}");
    assert_eq!(repo.snapshot_count(), 1);

    // Both runs are in the catalog: the failed one with its error, and no password anywhere.
    let runs = repo.json(&["history"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!((runs[0]["operation"].as_str(), runs[0]["status"].as_str()), (Some("backup"), Some("success")));
    assert!(runs[0]["snapshot"].is_string() && runs[0]["bytes_stored"].as_u64() > Some(0), "{runs:?}");
    assert_eq!((runs[1]["target"].as_str(), runs[1]["status"].as_str()), (Some("app"), Some("failed")));
    assert!(runs[1]["snapshot"].is_null());
    assert!(runs[1]["error"].as_str().unwrap().contains("password authentication failed"), "{runs:?}");
    let text = String::from_utf8(repo.ok(&["history", "--failed"])).unwrap();
    assert!(text.contains("failed") && text.contains("1 runs, 1 not successful"), "{text}");
    assert!(!text.contains("wrong-horse") && !text.contains("Tr0ub4dor"), "a password leaked: {text}");
}

#[test]
fn all_databases_bring_their_roles_and_restores_keep_owners_with_globals() {
    let bins = PgBinaries::newest().expect("PostgreSQL server binaries");
    let pg = ScratchPostgres::start(&bins).unwrap();
    pg.psql("postgres", "CREATE ROLE app_owner LOGIN").unwrap();
    pg.psql("postgres", "CREATE DATABASE app OWNER app_owner").unwrap();
    pg.psql("app", "CREATE TABLE t (id int); ALTER TABLE t OWNER TO app_owner; INSERT INTO t VALUES (1), (2)").unwrap();
    let target = ScratchPostgres::start(&bins).unwrap();
    let repo = Repo::new();
    let config = repo.root.join("bunker.toml");
    std::fs::write(
        &config,
        format!("[targets.cluster]\ntype = \"postgres\"\nurl = \"{}\"\ndatabases = \"all\"\n", pg.url("postgres")),
    )
    .unwrap();
    let run = |args: &[&str]| repo.cmd(args).env("BUNKER_CONFIG", &config).output().unwrap();
    let out = run(&["backup", "cluster"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut names: Vec<String> = repo.snapshots().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    assert_eq!(names, ["cluster/app", "cluster/globals", "cluster/postgres"]);

    let out = run(&["restore", "cluster/app", "--into", &target.url("app"), "--with-globals"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(target.psql("app", "SELECT tableowner FROM pg_tables WHERE tablename = 't'").unwrap(), "app_owner");
    assert_eq!(target.psql("app", "SELECT count(*) FROM t").unwrap(), "2");
}
