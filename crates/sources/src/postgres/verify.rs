//! Verification of a restored (or any) database against what a logical snapshot recorded: exact row
//! count per table, no orphans behind any foreign key, and the user's assertions from `bunker.toml`.

use serde::{Deserialize, Serialize};

use super::conn::{error_text, ConnInfo};
use super::logical::TableRows;
use crate::SourceError;

/// `[[targets.NAME.assert]]`: a query whose first value must equal `expect` (compared as text).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    pub name: String,
    pub sql: String,
    pub expect: String,
}

#[derive(Debug, Serialize)]
pub struct TableCheck {
    pub table: String,
    pub expected: i64,
    /// `None` when the table is missing.
    pub actual: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct ForeignKeyCheck {
    pub constraint: String,
    pub table: String,
    pub orphans: i64,
}

#[derive(Debug, Serialize)]
pub struct AssertionCheck {
    pub name: String,
    pub expected: String,
    pub actual: Result<String, String>,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub database: String,
    pub tables: Vec<TableCheck>,
    pub foreign_keys: Vec<ForeignKeyCheck>,
    pub assertions: Vec<AssertionCheck>,
}

impl VerifyReport {
    /// One line per failed check, naming the table, constraint or assertion.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.tables {
            match t.actual {
                None => out.push(format!("table {} is missing (expected {} rows)", t.table, t.expected)),
                Some(n) if n != t.expected => {
                    out.push(format!("table {} has {n} rows, expected {}", t.table, t.expected))
                }
                _ => {}
            }
        }
        for fk in &self.foreign_keys {
            if fk.orphans > 0 {
                out.push(format!("foreign key {} on {}: {} orphaned rows", fk.constraint, fk.table, fk.orphans));
            }
        }
        for a in &self.assertions {
            match &a.actual {
                Ok(v) if *v == a.expected => {}
                Ok(v) => out.push(format!("assertion {:?} returned {v:?}, expected {:?}", a.name, a.expected)),
                Err(e) => out.push(format!("assertion {:?} failed: {e}", a.name)),
            }
        }
        out
    }

    pub fn is_ok(&self) -> bool {
        self.failures().is_empty()
    }
}

/// Checks the database at `conn` against the row counts `tables` recorded (none for a database no dump
/// described, e.g. a recovered base backup: then foreign keys and assertions only) and `assertions`.
pub fn verify(conn: &ConnInfo, tables: &[TableRows], assertions: &[Assertion]) -> Result<VerifyReport, SourceError> {
    let mut client = conn.connect()?;
    let target = conn.display();
    let sql_err = |e: postgres::Error| SourceError::Query { target: target.clone(), detail: error_text(&e) };
    // One snapshot for every count, like the backup's.
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").map_err(sql_err)?;
    let mut checked = Vec::with_capacity(tables.len());
    for t in tables {
        let name = super::logical::quote_pair(&t.schema, &t.table);
        let exists: bool = client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]).map_err(sql_err)?.get(0);
        let actual = if exists {
            Some(client.query_one(&format!("SELECT count(*) FROM ONLY {name}"), &[]).map_err(sql_err)?.get(0))
        } else {
            None
        };
        checked.push(TableCheck { table: format!("{}.{}", t.schema, t.table), expected: t.rows, actual });
    }
    let fks = client
        .query(
            "SELECT con.conname, con.conrelid::regclass::text, con.confrelid::regclass::text, \
                    array(SELECT quote_ident(a.attname) FROM unnest(con.conkey) WITH ORDINALITY k(n, i) \
                          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i), \
                    array(SELECT quote_ident(a.attname) FROM unnest(con.confkey) WITH ORDINALITY k(n, i) \
                          JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i) \
             FROM pg_constraint con WHERE con.contype = 'f' ORDER BY 2, 1",
            &[],
        )
        .map_err(sql_err)?;
    let mut foreign_keys = Vec::with_capacity(fks.len());
    for fk in fks {
        let (name, child, parent): (String, String, String) = (fk.get(0), fk.get(1), fk.get(2));
        let (cols, refs): (Vec<String>, Vec<String>) = (fk.get(3), fk.get(4));
        // MATCH SIMPLE: a row with any NULL in the key references nothing.
        let not_null = cols.iter().map(|c| format!("c.{c} IS NOT NULL")).collect::<Vec<_>>().join(" AND ");
        let join = cols.iter().zip(&refs).map(|(c, r)| format!("p.{r} = c.{c}")).collect::<Vec<_>>().join(" AND ");
        let sql = format!(
            "SELECT count(*) FROM ONLY {child} c WHERE {not_null} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {join})"
        );
        let orphans: i64 = client.query_one(&sql, &[]).map_err(sql_err)?.get(0);
        foreign_keys.push(ForeignKeyCheck { constraint: name, table: child, orphans });
    }
    let _ = client.batch_execute("COMMIT");
    let mut checks = Vec::with_capacity(assertions.len());
    for a in assertions {
        let actual = client.simple_query(&a.sql).map_err(|e| error_text(&e)).and_then(|msgs| {
            msgs.into_iter()
                .find_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
                    _ => None,
                })
                .ok_or_else(|| "the query returned no row".to_string())
        });
        checks.push(AssertionCheck { name: a.name.clone(), expected: a.expect.clone(), actual });
    }
    Ok(VerifyReport { database: conn.dbname.clone(), tables: checked, foreign_keys, assertions: checks })
}
