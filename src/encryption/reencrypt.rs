//! Online re-encryption of a table's values under the current data key, batch by batch.
//!
//! `CALL pgshard.reencrypt(table, batch_size)` loops over `reencrypt_batch`, committing after
//! each batch, so it holds row locks only briefly, can be interrupted at any point and rerun:
//! a batch picks rows that still have a value under an older key.
//! Local tables are rewritten with an UPDATE; shards are rewritten on their workers, the
//! coordinator decrypting and encrypting the envelopes it reads (tags do not change).

use pgrx::prelude::*;
use pgrx::PgRelation;
use pgshard_core::envelope;
use tokio_postgres::SimpleQueryMessage;

use super::usage::encrypted_columns;
use crate::error::{spi_failed, PgShardError};
use crate::metadata::{self, qualified_name, quote_ident, AsSuperuser, Shard};
use crate::xact::{self, Access};

extension_sql!(
    r#"
CREATE PROCEDURE pgshard.reencrypt(rel regclass, batch_size integer DEFAULT 10000)
LANGUAGE plpgsql AS $$
DECLARE
    done bigint := 0;
    rewritten bigint;
    to_go bigint;
BEGIN
    to_go := pgshard.reencrypt_start(rel);
    COMMIT;
    LOOP
        rewritten := pgshard.reencrypt_batch(rel, batch_size);
        EXIT WHEN rewritten = 0;
        done := done + rewritten;
        to_go := greatest(to_go - rewritten, 0);
        COMMIT;
        RAISE NOTICE 'reencrypt %: % rows rewritten, about % to go', rel, done, to_go;
    END LOOP;
    PERFORM pgshard.reencrypt_finish(rel);
    COMMIT;
    RAISE NOTICE 'reencrypt %: done, % rows rewritten', rel, done;
END
$$;
COMMENT ON PROCEDURE pgshard.reencrypt(regclass, integer) IS
  'Rewrites the encrypted values of a table under the current data key, committing after each batch';
"#,
    name = "reencrypt_procedure",
    requires = [
        "encryption",
        reencrypt_start,
        reencrypt_batch,
        reencrypt_finish
    ]
);

/// The table's encrypted columns (quoted), or an error when it has none.
fn columns_of(rel: pg_sys::Oid) -> Vec<String> {
    let columns: Vec<String> = encrypted_columns(Some(rel))
        .into_iter()
        .map(|(_, c)| quote_ident(&c))
        .collect();
    if columns.is_empty() {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("table {} has no encrypted columns", qualified_name(rel)),
        )
        .hint("pgshard.reencrypt rewrites columns of the pgshard.encrypted_* types.")
        .raise()
    }
    columns
}

fn check_owner(rel: pg_sys::Oid) {
    // SAFETY: ownership check of an existing relation by the current user.
    let owner = unsafe { pg_sys::pg_class_ownercheck(rel, pg_sys::GetUserId()) };
    if !owner {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "must be owner of table {} to re-encrypt it",
                qualified_name(rel)
            ),
        )
        .raise()
    }
}

/// The worker-side condition "this envelope is not under key `current`".
fn stale_on_worker(column: &str, current: u32) -> String {
    format!(
        "substring({column} FROM {} FOR 4) <> {}",
        envelope::KEY_ID_SQL_FROM,
        super::bytea_literal(&current.to_be_bytes())
    )
}

fn stale_condition(columns: &[String], current: u32, on_worker: bool) -> String {
    columns
        .iter()
        .map(|c| {
            if on_worker {
                stale_on_worker(c, current)
            } else {
                format!("pgshard.key_id({c}) <> {current}")
            }
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn current_key() -> u32 {
    super::keys::with_keyring(|ring| ring.current(envelope::Kind::Text).0)
}

/// Runs one statement on a shard in the current transaction and returns its rows.
fn on_shard(shard: &Shard, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut connection = xact::connection(&shard.worker, Access::Write);
    let results = xact::run_scripts(std::slice::from_mut(&mut connection), vec![sql.to_string()]);
    let messages = results
        .into_iter()
        .next()
        .expect("one script")
        .unwrap_or_else(|e| {
            crate::remote::query_error(&e).raise_for(&shard.worker.name, "re-encrypt on")
        });
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Rows that still hold a value under an older key.
fn rows_to_go(rel: pg_sys::Oid, columns: &[String], current: u32) -> i64 {
    match metadata::sharded_table(rel) {
        Some(table) => table
            .shards
            .iter()
            .map(|shard| {
                let sql = format!(
                    "SELECT count(*) FROM {} WHERE {}",
                    shard.relation,
                    stale_condition(columns, current, true)
                );
                on_shard(shard, &sql)[0][0]
                    .as_deref()
                    .and_then(|n| n.parse::<i64>().ok())
                    .unwrap_or(0)
            })
            .sum(),
        None => {
            let _superuser = AsSuperuser::enter();
            Spi::get_one::<i64>(&format!(
                "SELECT count(*) FROM ONLY {} WHERE {}",
                qualified_name(rel),
                stale_condition(columns, current, false)
            ))
            .unwrap_or_else(|e| spi_failed("could not count values to re-encrypt", e))
            .unwrap_or(0)
        }
    }
}

/// Starts (or restarts) re-encrypting `rel`: records progress and returns the rows to go.
#[pg_extern(volatile)]
fn reencrypt_start(rel: PgRelation) -> i64 {
    let rel = rel.oid();
    check_owner(rel);
    let columns = columns_of(rel);
    let current = current_key();
    let to_go = rows_to_go(rel, &columns, current);
    let _superuser = AsSuperuser::enter();
    Spi::run_with_args(
        "INSERT INTO pgshard.reencrypt_progress AS p (relation, state, to_key, rows_done, rows_to_go) \
         VALUES ($1, 'running', $2, 0, $3) \
         ON CONFLICT (relation) DO UPDATE SET state = 'running', to_key = $2, rows_done = 0, \
           rows_to_go = $3, started_at = now(), updated_at = now()",
        &[rel.into(), (current as i32).into(), to_go.into()],
    )
    .unwrap_or_else(|e| spi_failed("could not record re-encryption progress", e));
    to_go
}

/// Rewrites up to `batch_size` rows of `rel` that hold values under an older key; returns how
/// many it rewrote (0 when none is left).
#[pg_extern(volatile)]
fn reencrypt_batch(rel: PgRelation, batch_size: i32) -> i64 {
    let rel = rel.oid();
    check_owner(rel);
    if batch_size < 1 {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("batch_size must be at least 1, not {batch_size}"),
        )
        .raise()
    }
    let columns = columns_of(rel);
    let current = current_key();
    let rewritten = match metadata::sharded_table(rel) {
        Some(table) => {
            let mut left = i64::from(batch_size);
            for shard in &table.shards {
                if left == 0 {
                    break;
                }
                left -= rewrite_shard(shard, &columns, current, left);
            }
            i64::from(batch_size) - left
        }
        None => rewrite_local(rel, &columns, current, batch_size),
    };
    let _superuser = AsSuperuser::enter();
    Spi::run_with_args(
        "UPDATE pgshard.reencrypt_progress SET rows_done = rows_done + $2, \
           rows_to_go = greatest(rows_to_go - $2, 0), updated_at = now() WHERE relation = $1",
        &[rel.into(), rewritten.into()],
    )
    .unwrap_or_else(|e| spi_failed("could not record re-encryption progress", e));
    rewritten
}

#[pg_extern(volatile)]
fn reencrypt_finish(rel: PgRelation) {
    let rel = rel.oid();
    check_owner(rel);
    let _superuser = AsSuperuser::enter();
    Spi::run_with_args(
        "UPDATE pgshard.reencrypt_progress SET state = 'done', rows_to_go = 0, updated_at = now() \
         WHERE relation = $1",
        &[rel.into()],
    )
    .unwrap_or_else(|e| spi_failed("could not record re-encryption progress", e));
}

fn rewrite_local(rel: pg_sys::Oid, columns: &[String], current: u32, batch_size: i32) -> i64 {
    let table = qualified_name(rel);
    let assignments: Vec<String> = columns
        .iter()
        .map(|c| format!("{c} = pgshard.reencrypt_value({c})"))
        .collect();
    let sql = format!(
        "UPDATE ONLY {table} SET {} WHERE ctid = ANY (ARRAY(SELECT ctid FROM ONLY {table} \
         WHERE {} LIMIT {batch_size} FOR UPDATE)) RETURNING 1",
        assignments.join(", "),
        stale_condition(columns, current, false)
    );
    Spi::connect_mut(|client| client.update(&sql, None, &[]).map(|rows| rows.len() as i64))
        .unwrap_or_else(|e| spi_failed("could not re-encrypt rows", e))
}

/// Rewrites up to `limit` rows of one shard; returns how many.
fn rewrite_shard(shard: &Shard, columns: &[String], current: u32, limit: i64) -> i64 {
    let select = format!(
        "SELECT ctid, {} FROM {} WHERE {} LIMIT {limit} FOR UPDATE",
        columns
            .iter()
            .map(|c| format!("encode({c}, 'hex')"))
            .collect::<Vec<_>>()
            .join(", "),
        shard.relation,
        stale_condition(columns, current, true)
    );
    let rows = on_shard(shard, &select);
    if rows.is_empty() {
        return 0;
    }
    let values: Vec<String> = rows
        .iter()
        .map(|row| {
            let mut items = vec![format!(
                "{}::tid",
                pgshard_core::layout::quote_literal(row[0].as_deref().expect("ctid"))
            )];
            for value in &row[1..] {
                let rewritten = value
                    .as_deref()
                    .and_then(|hex_text| hex::decode(hex_text).ok())
                    .and_then(|sealed| super::types::reencrypt(&sealed));
                items.push(match rewritten {
                    Some(sealed) => super::bytea_literal(&sealed),
                    None => "NULL::bytea".into(),
                });
            }
            format!("({})", items.join(", "))
        })
        .collect();
    let names: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
    let update = format!(
        "UPDATE {} AS s SET {} FROM (VALUES {}) AS v(row_id, {}) WHERE s.ctid = v.row_id",
        shard.relation,
        columns
            .iter()
            .zip(&names)
            .map(|(c, v)| format!("{c} = coalesce(v.{v}, s.{c})"))
            .collect::<Vec<_>>()
            .join(", "),
        values.join(", "),
        names.join(", ")
    );
    on_shard(shard, &update);
    rows.len() as i64
}
