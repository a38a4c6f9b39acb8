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
