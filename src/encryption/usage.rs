//! Which data keys the stored values use: the `pgshard.key_usage` view, and the check that a
//! key is unused before it is retired.

use pgrx::prelude::*;

use crate::error::spi_failed;
use crate::metadata::{qualified_name, quote_ident, AsSuperuser};

/// The encrypted columns of ordinary tables (sharded tables included): (table, column).
pub fn encrypted_columns(table: Option<pg_sys::Oid>) -> Vec<(pg_sys::Oid, String)> {
    let _superuser = AsSuperuser::enter();
    Spi::connect(|client| {
        client
            .select(
                "SELECT a.attrelid, a.attname::text FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE t.typnamespace = 'pgshard'::regnamespace \
                   AND t.typname IN ('encrypted_text', 'encrypted_bytea', 'encrypted_int8', \
                                     'encrypted_numeric', 'encrypted_timestamptz') \
                   AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped \
                   AND ($1::oid IS NULL OR a.attrelid = $1) \
                 ORDER BY a.attrelid, a.attnum",
                None,
                &[table.into()],
            )?
            .into_iter()
            .map(|row| {
                Ok((
                    row.get::<pg_sys::Oid>(1)?.expect("attrelid"),
                    row.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .unwrap_or_else(|e| spi_failed("could not list encrypted columns", e))
}

/// (key id, values) of one column.
fn column_usage(table: pg_sys::Oid, column: &str) -> Vec<(i32, i64)> {
    let sql = format!(
        "SELECT pgshard.key_id({c}), count(*) FROM ONLY {t} WHERE {c} IS NOT NULL GROUP BY 1",
        c = quote_ident(column),
        t = qualified_name(table)
    );
    let _superuser = AsSuperuser::enter();
    Spi::connect(|client| {
        client
            .select(&sql, None, &[])?
            .into_iter()
            .map(|row| {
                Ok((
                    row.get::<i32>(1)?.unwrap_or_default(),
                    row.get::<i64>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .unwrap_or_else(|e| spi_failed("could not count encrypted values", e))
}

/// How many stored values each data key protects, per column.
#[pg_extern(volatile)]
fn key_usage() -> TableIterator<
    'static,
    (
        name!(key_id, i32),
        name!(relation, String),
        name!(column_name, String),
        name!(value_count, i64),
    ),
> {
    let mut rows = Vec::new();
    for (table, column) in encrypted_columns(None) {
        let name = qualified_name(table);
        for (key_id, count) in column_usage(table, &column) {
            rows.push((key_id, name.clone(), column.clone(), count));
        }
    }
    rows.sort();
    TableIterator::new(rows)
}

/// "table.column: n" for every column with values under `key_id`.
pub fn usage_of_key(key_id: i32) -> Vec<(String, i64)> {
    encrypted_columns(None)
        .into_iter()
        .flat_map(|(table, column)| {
            column_usage(table, &column)
                .into_iter()
                .filter(|(k, _)| *k == key_id)
                .map(move |(_, n)| {
                    (
                        format!("{}.{}", qualified_name(table), quote_ident(&column)),
                        n,
                    )
                })
        })
        .collect()
}

extension_sql!(
    r#"
CREATE VIEW pgshard.key_usage AS
    SELECT u.key_id, k.state, u.relation, u.column_name, u.value_count
    FROM pgshard.key_usage() u LEFT JOIN pgshard.keys k USING (key_id);
REVOKE ALL ON pgshard.key_usage FROM PUBLIC;
REVOKE ALL ON FUNCTION pgshard.key_usage() FROM PUBLIC;
"#,
    name = "key_usage_view",
    requires = ["encryption", key_usage]
);
