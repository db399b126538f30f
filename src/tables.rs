//! Sharding and unsharding tables: `pgshard.shard_table`, `unshard_table`, `shard_for`, and the
//! views `pgshard.tables` and `pgshard.shards`.
//!
//! `shard_table` checks everything it can before it touches a worker, then creates the shard
//! tables and copies the rows inside the coordinator transaction's remote transactions, so an
//! error at any step leaves no shard table and no metadata anywhere.

use std::rc::Rc;

use futures_util::StreamExt;
use pgrx::prelude::*;
use pgrx::{AnyElement, PgRelation};
use pgshard_core::hashing::{HashRange, KeyFamily};
use pgshard_core::{ddl, layout};

use crate::ddl::ShardKeys;
use crate::error::{spi_failed, PgShardError};
use crate::execution::workers_of;
use crate::guc;
use crate::metadata::{self, cstr, quote_ident, AsSuperuser, Shard, ShardedTable};
use crate::remote::{self, Worker};
use crate::rows::TextEncoder;
use crate::shard_copy::ShardCopy;
use crate::xact::{self, Access};

extension_sql!(
    r#"
CREATE VIEW pgshard.tables AS
SELECT t.table_oid AS table_name, t.shard_key::text AS shard_key,
       coalesce(c.shard_count, 1) AS shard_count, t.colocation_id, t.kind
FROM pgshard.sharded_table t LEFT JOIN pgshard.colocation c USING (colocation_id)
ORDER BY t.table_oid::oid;
GRANT SELECT ON pgshard.tables TO PUBLIC;

CREATE VIEW pgshard.shards AS
SELECT s.shard_id, s.table_oid AS table_name, s.hash_min, s.hash_max, w.name AS worker,
       z.shard_name, z.row_estimate, z.bytes
FROM pgshard.shard s
JOIN pgshard.placement p USING (shard_id)
JOIN pgshard.worker w USING (worker_id)
LEFT JOIN pgshard.shard_sizes() z ON z.shard_id = s.shard_id AND z.worker = w.name
ORDER BY s.table_oid::oid, s.hash_min, w.worker_id;
GRANT SELECT ON pgshard.shards TO PUBLIC;
"#,
    name = "table_views",
    requires = [shard_sizes, "catalog"]
);

/// Largest amount of COPY data buffered for one shard before it is sent.
const COPY_FLUSH_BYTES: usize = 1 << 20;

/// Shards a table: creates its shards on the workers and moves its rows into them.
#[pg_extern(volatile)]
fn shard_table(
    rel: PgRelation,
    shard_key: &str,
    shard_count: default!(Option<i32>, "NULL"),
    colocate_with: default!(Option<PgRelation>, "NULL"),
) {
    let table = lock_for_distribution(rel);
    let oid = table.oid;
    table.check_shardable();
    let key = table.key_column(shard_key);
    let family = crate::hashing::key_family(key.type_oid);
    table.check_unique_constraints(&key);
    table.check_no_null_keys(&key);

    let _superuser = AsSuperuser::enter();
    let colocation = colocate_with.map(|other| colocation_of(other.oid(), family, shard_count));
    let workers = workers_for("shard a table");
    let layout = match &colocation {
        Some(group) => group.layout.clone(),
        None => {
            let count = shard_count.unwrap_or_else(guc::shard_count);
            if !(1..=guc::MAX_SHARD_COUNT).contains(&count) {
                PgShardError::new(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!(
                        "shard_count must be between 1 and {}, not {count}",
                        guc::MAX_SHARD_COUNT
                    ),
                )
                .hint("A few shards per worker is usual; they can be split later.")
                .raise()
            }
            let ranges = pgshard_core::hashing::uniform_ranges(count as u32);
            let spread = layout::spread(ranges.len(), workers.len());
            ranges
                .into_iter()
                .zip(spread)
                .map(|(range, w)| (range, workers[w].clone()))
                .collect()
        }
    };

    // Shard ids first: they name the shard tables.
    let ids: Vec<i64> = Spi::connect(|client| {
        client
            .select(
                "SELECT nextval('pgshard.shard_shard_id_seq') FROM generate_series(1, $1)",
                None,
                &[(layout.len() as i32).into()],
            )?
            .into_iter()
            .map(|row| row.get::<i64>(1).map(|v| v.expect("nextval is not NULL")))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap_or_else(|e| spi_failed("could not allocate shard ids", e));
    let shards: Vec<Shard> = layout
        .iter()
        .zip(&ids)
        .map(|((range, worker), &id)| Shard {
            id,
            range: *range,
            worker: worker.clone(),
            relation: metadata::shard_relation(&table.schema, &table.name, id),
        })
        .collect();

    create_shard_tables(&table, &shards);
    let sharded = Rc::new(ShardedTable {
        oid,
        reference: false,
        key_name: key.name.clone(),
        key_attnum: key.attnum,
        key_type: key.type_oid,
        key_family: family,
        colocation_id: 0,
        shards,
    });
    move_rows_into_shards(&table, &sharded);
    Spi::run(&format!(
        "TRUNCATE ONLY {0}; ALTER TABLE {0} SET ACCESS METHOD {1}",
        table.qualified,
        crate::shell::ACCESS_METHOD
    ))
    .unwrap_or_else(|e| spi_failed("could not empty the table", e));
    record_metadata(&sharded, colocation.map(|c| c.id), family);
}

/// Makes a table a reference table: a full copy of it on every worker, so that sharded tables
/// join it where their shards are.
#[pg_extern(volatile)]
fn reference_table(rel: PgRelation) {
    let table = lock_for_distribution(rel);
    let oid = table.oid;
    table.check_shardable();

    let _superuser = AsSuperuser::enter();
    let workers = workers_for("make a reference table");
    let id = Spi::get_one::<i64>("SELECT nextval('pgshard.shard_shard_id_seq')")
        .unwrap_or_else(|e| spi_failed("could not allocate a shard id", e))
        .expect("nextval is not NULL");
    let whole = pgshard_core::hashing::uniform_ranges(1)[0];
    let copies: Vec<Shard> = workers
        .into_iter()
        .map(|worker| Shard {
            id,
            range: whole,
            worker,
            relation: metadata::shard_relation(&table.schema, &table.name, id),
        })
        .collect();
    create_shard_tables(&table, &copies);
    let reference = Rc::new(ShardedTable {
        oid,
        reference: true,
        key_name: String::new(),
        key_attnum: 0,
        key_type: pg_sys::InvalidOid,
        key_family: KeyFamily::Integer,
        colocation_id: 0,
        shards: copies,
    });
    move_rows_into_shards(&table, &reference);
    Spi::run(&format!(
        "TRUNCATE ONLY {0}; ALTER TABLE {0} SET ACCESS METHOD {1}",
        table.qualified,
        crate::shell::ACCESS_METHOD
    ))
    .unwrap_or_else(|e| spi_failed("could not empty the table", e));
    record_metadata(&reference, None, KeyFamily::Integer);
}

/// Moves a sharded table's rows back into the coordinator's table and drops its shards.
#[pg_extern(volatile)]
fn unshard_table(rel: PgRelation) {
    let table = lock_for_distribution(rel);
    let oid = table.oid;
    table.check_owner();
    let sharded =
        metadata::sharded_table(oid).unwrap_or_else(|| raise_not_sharded(&table.qualified));
    // The rows coming back would be checked against shells, or leave shards pointing at a
    // table that is no longer on the workers.
    if let Some(key) = first_text(
        "SELECT format('%I on %s', conname, conrelid::regclass) FROM pg_constraint \
         WHERE contype = 'f' AND (conrelid = $1 OR confrelid = $1) LIMIT 1",
        &[oid.into()],
    ) {
        refuse(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot unshard table {}: foreign key {key} involves it", table.qualified),
            "Drop the foreign keys between it and other distributed tables first.",
        )
    }
    forget_metadata(&sharded);
    Spi::run(&format!(
        "ALTER TABLE {} SET ACCESS METHOD heap",
        table.qualified
    ))
    .unwrap_or_else(|e| spi_failed("could not make the table a plain table again", e));
    let columns = table.column_list();
    // Shards hold encrypted values as envelopes: they come back as such (authenticated), not
    // as plaintext to encrypt again. The setting is local to this transaction.
    let envelope_io = first_text("SELECT current_setting('pgshard.envelope_io')", &[]);
    Spi::run("SELECT set_config('pgshard.envelope_io', 'on', true)")
        .unwrap_or_else(|e| spi_failed("could not read encrypted values back", e));
    // A reference table's copies hold the same rows: one is read back.
    let sources = if sharded.reference {
        &sharded.shards[..1]
    } else {
        &sharded.shards[..]
    };
    for shard in sources {
        copy_shard_back(&table, &columns, shard);
    }
    Spi::run_with_args(
        "SELECT set_config('pgshard.envelope_io', $1, true)",
        &[envelope_io.unwrap_or_else(|| "off".into()).into()],
    )
    .unwrap_or_else(|e| spi_failed("could not read encrypted values back", e));
    run_on_shard_workers(&sharded.shards, "drop shards on", |shard| {
        format!("DROP TABLE {};", shard.relation)
    });
}

/// Removes a table's rows from the catalog (its shards and placements go with it, and its
/// co-location group when it was the last member).
fn forget_metadata(sharded: &ShardedTable) {
    let _superuser = AsSuperuser::enter();
    Spi::run_with_args(
        "DELETE FROM pgshard.sharded_table WHERE table_oid = $1",
        &[sharded.oid.into()],
    )
    .unwrap_or_else(|e| spi_failed("could not remove the metadata", e));
    Spi::run_with_args(
        "DELETE FROM pgshard.colocation c WHERE colocation_id = $1 \
         AND NOT EXISTS (SELECT 1 FROM pgshard.sharded_table t WHERE t.colocation_id = c.colocation_id)",
        &[sharded.colocation_id.into()],
    )
    .unwrap_or_else(|e| spi_failed("could not remove the colocation group", e));
}

/// TRUNCATE of distributed tables: every shard (every copy) is truncated in the statement's
/// remote transactions, one TRUNCATE per worker naming all of them (shards that reference each
/// other by foreign keys can only be truncated together), with CASCADE when the statement has
/// it; PostgreSQL then truncates the coordinator's tables. A role without the TRUNCATE right
/// gets PostgreSQL's own error, before any shard is touched.
pub fn truncate_shards(oids: &[pg_sys::Oid], cascade: bool) {
    let mut shards: Vec<Shard> = Vec::new();
    for &oid in oids {
        // SAFETY: a rights check, then the lock TRUNCATE takes anyway.
        unsafe {
            if pg_sys::pg_class_aclcheck(oid, pg_sys::GetUserId(), pg_sys::ACL_TRUNCATE as _)
                != pg_sys::AclResult::ACLCHECK_OK
            {
                return;
            }
            pg_sys::LockRelationOid(oid, pg_sys::AccessExclusiveLock as i32);
        }
        let Some(sharded) = metadata::sharded_table(oid) else {
            continue;
        };
        if sharded.reference {
            metadata::lock_reference_writes(oid);
        }
        shards.extend(sharded.shards.iter().cloned());
    }
    if shards.is_empty() {
        return;
    }
    run_on_workers_of(&shards, "truncate shards on", |on_worker| {
        let names: Vec<&str> = on_worker.iter().map(|s| s.relation.as_str()).collect();
        format!(
            "TRUNCATE {}{};",
            names.join(", "),
            if cascade { " CASCADE" } else { "" }
        )
    });
}

/// DROP TABLE of a distributed table: its shards (every copy) are dropped in the statement's
/// remote transactions and its metadata removed; PostgreSQL then drops the coordinator's table.
/// A role that does not own the table gets PostgreSQL's own error, before any shard is touched.
pub fn drop_shards(oid: pg_sys::Oid) {
    // SAFETY: an ownership check.
    if unsafe { !pg_sys::pg_class_ownercheck(oid, pg_sys::GetUserId()) } {
        return;
    }
    drop_shards_of(oid);
}

/// Drops the shards of a distributed table that the current statement drops, and its metadata;
/// the caller has checked that the statement may drop it.
pub fn drop_shards_of(oid: pg_sys::Oid) {
    // SAFETY: the lock DROP takes anyway.
    unsafe { pg_sys::LockRelationOid(oid, pg_sys::AccessExclusiveLock as i32) };
    let Some(sharded) = metadata::sharded_table(oid) else {
        return;
    };
    forget_metadata(&sharded);
    run_on_shard_workers(&sharded.shards, "drop shards on", |shard| {
        // CASCADE: the shards' foreign keys to it go, as the coordinator's do (PostgreSQL has
        // refused the statement unless it has CASCADE or nothing depends on the table).
        format!("DROP TABLE IF EXISTS {} CASCADE;", shard.relation)
    });
}

/// Every (table, type) such that a distributed table has a column built from the type: of the
/// type itself, an array of it, or a domain over it (at any depth).
const DISTRIBUTED_COLUMN_TYPES: &str = "WITH RECURSIVE parts(relid, type_oid) AS ( \
       SELECT a.attrelid, a.atttypid FROM pgshard.sharded_table t \
       JOIN pg_attribute a ON a.attrelid = t.table_oid AND a.attnum > 0 AND NOT a.attisdropped \
     UNION \
       SELECT p.relid, x.part FROM parts p JOIN pg_type ty ON ty.oid = p.type_oid, \
       LATERAL (VALUES (CASE WHEN ty.typtype = 'd' THEN ty.typbasetype END), \
                       (CASE WHEN ty.typcategory = 'A' THEN ty.typelem END)) x(part) \
       WHERE x.part IS NOT NULL AND x.part <> 0) \
     SELECT p.relid::regclass::text AS table_name, p.type_oid::regtype::text AS type_name \
     FROM parts p JOIN pg_class c ON c.oid = p.relid JOIN pg_type ty ON ty.oid = p.type_oid";

/// A distributed table with a column built from type `type_oid` (the type, an array of it, a
/// domain over it), by name.
pub fn sharded_table_using_type(type_oid: pg_sys::Oid) -> Option<String> {
    first_distributed_column_type("p.type_oid = $1::oid", i64::from(type_oid.to_u32()))
        .map(|(table, _)| table)
}

/// A distributed table outside `schemas` with a column built from a type in one of them, and
/// that type, by name: dropping those schemas would drop the column on the coordinator only.
pub fn sharded_table_using_types_in(schemas: &[pg_sys::Oid]) -> Option<(String, String)> {
    let schemas: Vec<i64> = schemas.iter().map(|s| i64::from(s.to_u32())).collect();
    first_distributed_column_type(
        "ty.typnamespace::int8 = ANY ($1) AND c.relnamespace::int8 <> ALL ($1)",
        schemas,
    )
}

/// The first (table, type) of [`DISTRIBUTED_COLUMN_TYPES`] meeting `condition` on `$1`.
fn first_distributed_column_type<'a>(
    condition: &str,
    argument: impl Into<pgrx::datum::DatumWithOid<'a>>,
) -> Option<(String, String)> {
    let _superuser = AsSuperuser::enter();
    Spi::connect(|client| {
        let rows = client.select(
            &format!("{DISTRIBUTED_COLUMN_TYPES} WHERE {condition} ORDER BY 1, 2 LIMIT 1"),
            None,
            &[argument.into()],
        )?;
        rows.into_iter()
            .next()
            .map(|row| Ok((row.get::<String>(1)?, row.get::<String>(2)?)))
            .transpose()
    })
    .unwrap_or_else(|e: pgrx::spi::SpiError| spi_failed("could not read the distributed tables", e))
    .and_then(|(table, type_name)| table.zip(type_name))
}

/// The distributed tables that DROP OWNED BY `roles` drops: those they own, and with CASCADE
/// those in the schemas they own.
pub fn dropped_with_owned(roles: &[pg_sys::Oid], cascade: bool) -> Vec<pg_sys::Oid> {
    let roles: Vec<i64> = roles.iter().map(|r| i64::from(r.to_u32())).collect();
    let _superuser = AsSuperuser::enter();
    Spi::connect(|client| {
        client
            .select(
                "SELECT t.table_oid FROM pgshard.sharded_table t \
                 JOIN pg_class c ON c.oid = t.table_oid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relowner::int8 = ANY ($1) OR ($2 AND n.nspowner::int8 = ANY ($1))",
                None,
                &[roles.into(), cascade.into()],
            )?
            .into_iter()
            .map(|row| row.get::<pg_sys::Oid>(1).map(|oid| oid.unwrap_or_default()))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap_or_else(|e| spi_failed("could not read the distributed tables", e))
}

/// The shard a key value belongs to in a sharded table, and the worker that holds it.
#[pg_extern(stable)]
fn shard_for(
    rel: PgRelation,
    key: AnyElement,
) -> TableIterator<'static, (name!(shard_id, i64), name!(worker, String))> {
    let oid = rel.oid();
    let sharded =
        metadata::sharded_table(oid).unwrap_or_else(|| raise_not_sharded(&relation_name(oid)));
    if sharded.reference {
        refuse(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!(
                "{} is a reference table: every worker holds all its rows",
                relation_name(oid)
            ),
            "pgshard.shards lists its copies.",
        )
    }
    let family = crate::hashing::key_family(key.oid());
    if family != sharded.key_family {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "a {} value cannot be a key of {}, whose shard key {} is of the {} family",
                type_name(key.oid()),
                relation_name(oid),
                sharded.key_name,
                sharded.key_family.name()
            ),
        )
        .hint("Cast the value to the shard key's type.")
        .raise()
    }
    let hash = crate::hashing::hash_datum(key.datum(), key.oid());
    let shard = sharded.shard_for_hash(hash);
    TableIterator::once((shard.id, shard.worker.name.clone()))
}

/// Each shard placement's worker, qualified name there, row estimate and size, asked of every
/// worker concurrently. A worker that cannot be reached gives NULL estimates rather than an error, so
/// that the view stays usable while a worker is down.
#[pg_extern(volatile)]
fn shard_sizes() -> TableIterator<
    'static,
    (
        name!(shard_id, i64),
        name!(worker, String),
        name!(shard_name, String),
        name!(row_estimate, Option<i64>),
        name!(bytes, Option<i64>),
    ),
> {
    let tables: Vec<Rc<ShardedTable>> = metadata::sharded_table_oids()
        .into_iter()
        .filter_map(metadata::sharded_table)
        .collect();
    let shards: Vec<&Shard> = tables.iter().flat_map(|t| t.shards.iter()).collect();
    let workers = workers_of(shards.iter().copied());
    let mut connections = xact::connections(&workers, Access::Read);
    let queries: Vec<String> = connections
        .iter()
        .map(|conn| {
            let names: Vec<String> = shards
                .iter()
                .filter(|s| s.worker.id == conn.worker.id)
                .map(|s| layout::quote_literal(&s.relation))
                .collect();
            format!(
                "SELECT n, greatest(c.reltuples::bigint, pg_stat_get_live_tuples(c.oid)), \
                 pg_total_relation_size(c.oid) \
                 FROM unnest(ARRAY[{}]::text[]) n LEFT JOIN pg_class c ON c.oid = to_regclass(n)",
                names.join(",")
            )
        })
        .collect();
    let results = xact::run_scripts(&mut connections, queries);
    // Keyed by worker and name: a reference table's copies share their name.
    let mut sizes = std::collections::HashMap::new();
    for (conn, result) in connections.iter().zip(results) {
        for message in result.into_iter().flatten() {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                let parse = |i| row.get(i).and_then(|v: &str| v.parse::<i64>().ok());
                sizes.insert(
                    (conn.worker.id, row.get(0).unwrap_or_default().to_string()),
                    (parse(1), parse(2)),
                );
            }
        }
    }
    let rows: Vec<_> = shards
        .iter()
        .map(|s| {
            let (estimate, bytes) = sizes
                .get(&(s.worker.id, s.relation.clone()))
                .copied()
                .unwrap_or((None, None));
            (
                s.id,
                s.worker.name.clone(),
                s.relation.clone(),
                estimate,
                bytes,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Locks a table being sharded, made a reference table or unsharded, and describes it.
fn lock_for_distribution(rel: PgRelation) -> TableInfo {
    crate::ensure_preloaded();
    require_utf8_database();
    let oid = rel.oid();
    drop(rel);
    // Owner first: any role could otherwise queue an exclusive lock on any table (pg_class).
    // SAFETY: an ownership check of the current user.
    if unsafe { !pg_sys::pg_class_ownercheck(oid, pg_sys::GetUserId()) } {
        describe(oid).check_owner();
    }
    // SAFETY: takes the strongest lock: the table changes meaning for every session.
    unsafe { pg_sys::LockRelationOid(oid, pg_sys::AccessExclusiveLock as i32) };
    describe(oid)
}

/// Refuses a coordinator database whose encoding is not UTF8: values travel to and from the
/// workers as UTF-8 text, and text shard keys are hashed as their UTF-8 bytes.
fn require_utf8_database() {
    // SAFETY: reads the database's encoding, set for the life of the backend.
    let (encoding, name) = unsafe {
        (
            pg_sys::GetDatabaseEncoding(),
            std::ffi::CStr::from_ptr(pg_sys::GetDatabaseEncodingName()).to_string_lossy(),
        )
    };
    if encoding != pg_sys::pg_enc::PG_UTF8 as i32 {
        refuse(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("this database's encoding is {name}; pgshard needs a UTF8 database"),
            "Create the database with ENCODING 'UTF8' (CREATE DATABASE … TEMPLATE template0 \
             ENCODING 'UTF8') and load the data there.",
        )
    }
}

/// The registered workers; raises when there is none (`doing` says what needed them).
fn workers_for(doing: &str) -> Vec<Worker> {
    let workers = crate::workers::all_workers();
    if workers.is_empty() {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("cannot {doing}: there are no workers"),
        )
        .hint("Register workers with pgshard.add_worker(name, conninfo) first.")
        .raise()
    }
    workers
}

/// What shard_table needs to know of the table.
pub(crate) struct TableInfo {
    pub(crate) oid: pg_sys::Oid,
    pub(crate) schema: String,
    pub(crate) name: String,
    /// Quoted and qualified.
    pub(crate) qualified: String,
}

/// The shard key column.
struct KeyColumn {
    name: String,
    attnum: i16,
    type_oid: pg_sys::Oid,
    not_null: bool,
}

pub(crate) fn describe(oid: pg_sys::Oid) -> TableInfo {
    let (schema, name) = metadata::schema_and_name(oid);
    TableInfo {
        oid,
        qualified: format!("{}.{}", quote_ident(&schema), quote_ident(&name)),
        schema,
        name,
    }
}

fn relation_name(oid: pg_sys::Oid) -> String {
    metadata::qualified_name(oid)
}

fn type_name(oid: pg_sys::Oid) -> String {
    // SAFETY: format_type_be works for any oid.
    unsafe { cstr(pg_sys::format_type_be(oid)) }
}

fn raise_not_sharded(table: &str) -> ! {
    PgShardError::new(
        PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
        format!("table {table} is not sharded"),
    )
    .hint("pgshard.tables lists the sharded tables.")
    .raise()
}

/// The first column of the first row of a catalog query, `None` when there is no row.
fn first_text(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> Option<String> {
    match Spi::get_one_with_args::<String>(sql, args) {
        Ok(value) => value,
        Err(pgrx::spi::SpiError::InvalidPosition) => None,
        Err(e) => spi_failed("could not inspect the table", e),
    }
}

fn refuse(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    PgShardError::new(code, message).hint(hint).raise()
}

impl TableInfo {
    fn check_owner(&self) {
        // SAFETY: an ownership check of the current user.
        if !unsafe { pg_sys::pg_class_ownercheck(self.oid, pg_sys::GetUserId()) } {
            refuse(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("must be owner of table {}", self.qualified),
                "Only the table's owner (or a superuser) can shard or unshard it.",
            )
        }
    }

    /// Everything about the table itself that rules out sharding it.
    fn check_shardable(&self) {
        let q = &self.qualified;
        // SAFETY: plain catalog lookups.
        let (kind, persistence) = unsafe {
            (
                pg_sys::get_rel_relkind(self.oid) as u8,
                pg_sys::get_rel_persistence(self.oid) as u8,
            )
        };
        match kind {
            b'r' => {}
            b'p' => refuse(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("cannot shard partitioned table {q}"),
                "Shard a plain table; pgshard's shards take the place of partitions.",
            ),
            _ => refuse(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("{q} is not a table"),
                "Only plain tables can be sharded.",
            ),
        }
        if persistence == b't' {
            refuse(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("cannot shard temporary table {}", quote_ident(&self.name)),
                "Temporary tables live in one session; shard a permanent table.",
            );
        }
        self.check_owner();
        if metadata::first_sharded([self.oid]).is_some() {
            refuse(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("table {q} is already sharded"),
                "pgshard.shards shows its shards; pgshard.unshard_table() undoes sharding.",
            );
        }
        let first = |sql: &str| first_text(sql, &[self.oid.into()]);
        if let Some(other) = first(
            "SELECT format('%s (constraint %I)', conrelid::regclass, conname) FROM pg_constraint \
             WHERE confrelid = $1 AND contype = 'f' AND conrelid <> $1 LIMIT 1",
        ) {
            refuse(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("cannot shard table {q}: it is referenced by a foreign key from {other}"),
                "A local table cannot reference rows that move to workers; drop the foreign key first.",
            );
        }
        if let Some(name) = first(
            "SELECT conname::text FROM pg_constraint WHERE conrelid = $1 AND contype = 'f' LIMIT 1",
        ) {
            refuse(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("cannot shard table {q}: foreign key \"{name}\" is not supported on sharded tables yet"),
                "Drop the foreign key before sharding the table.",
            );
        }
        if let Some(name) = first(
            "SELECT conname::text FROM pg_constraint WHERE conrelid = $1 AND contype = 'x' LIMIT 1",
        ) {
            refuse(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("cannot shard table {q}: exclusion constraint \"{name}\" is not supported on sharded tables"),
                "An exclusion constraint can only be checked within one shard; drop it first.",
            );
        }
        if let Some(other) = first(
            "SELECT (CASE WHEN inhrelid = $1 THEN inhparent ELSE inhrelid END)::regclass::text \
             FROM pg_inherits WHERE inhrelid = $1 OR inhparent = $1 LIMIT 1",
        ) {
            refuse(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("cannot shard table {q}: it is in an inheritance hierarchy with {other}"),
                "Only stand-alone tables can be sharded.",
            );
        }
        if let Some(column) = first(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 \
             AND NOT attisdropped AND attgenerated <> '' LIMIT 1",
        ) {
            refuse(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("cannot shard table {q}: generated column \"{column}\" is not supported on sharded tables yet"),
                "Compute the value in the application or a view instead.",
            );
        }
        if let Some(trigger) = first(
            "SELECT tgname::text FROM pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal LIMIT 1",
        ) {
            refuse(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "cannot shard table {q}: trigger \"{trigger}\" would not fire on sharded rows"
                ),
                "Drop the trigger first; triggers on sharded tables are not supported.",
            );
        }
        let policies = Spi::get_one_with_args::<bool>(
            "SELECT relrowsecurity FROM pg_class WHERE oid = $1",
            &[self.oid.into()],
        )
        .unwrap_or_else(|e| spi_failed("could not inspect the table", e))
        .unwrap_or(false);
        if policies {
            refuse(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "cannot shard table {q}: row level security is not supported on sharded tables"
                ),
                "Disable row level security on the table first.",
            );
        }
    }

    fn key_column(&self, key: &str) -> KeyColumn {
        let row = Spi::get_three_with_args::<i16, pg_sys::Oid, bool>(
            "SELECT attnum, atttypid, attnotnull FROM pg_attribute \
             WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
            &[self.oid.into(), key.into()],
        );
        match row {
            Ok((Some(attnum), Some(type_oid), Some(not_null))) => KeyColumn {
                name: key.to_string(),
                attnum,
                type_oid,
                not_null,
            },
            Ok(_) | Err(pgrx::spi::SpiError::InvalidPosition) => refuse(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!(
                    "column \"{key}\" of table {} does not exist",
                    self.qualified
                ),
                "The shard key must be one of the table's columns, named exactly (case matters).",
            ),
            Err(e) => spi_failed("could not inspect the table", e),
        }
    }

    /// Uniqueness can only be enforced within one shard, so every primary key, unique
    /// constraint and unique index must include the shard key.
    fn check_unique_constraints(&self, key: &KeyColumn) {
        if let Some(offender) = self.unique_without_key(key.attnum) {
            PgShardError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "cannot shard table {} by \"{}\": {offender} does not include the shard key",
                    self.qualified, key.name
                ),
            )
            .detail("Uniqueness can only be enforced within a shard, so a unique constraint must include the shard key.")
            .hint("Add the shard key to the constraint, or choose a shard key that it includes.")
            .raise()
        }
    }

    /// A primary key, unique constraint or unique index that does not include column
    /// `key_attnum`, described for a message.
    pub(crate) fn unique_without_key(&self, key_attnum: i16) -> Option<String> {
        first_text(
            "SELECT CASE WHEN c.conname IS NULL THEN format('unique index %I', i.relname) \
                    ELSE format('constraint %I', c.conname) END \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid \
             WHERE x.indrelid = $1 AND x.indisunique AND NOT ($2 = ANY (x.indkey::int2[])) LIMIT 1",
            &[self.oid.into(), key_attnum.into()],
        )
    }

    fn check_no_null_keys(&self, key: &KeyColumn) {
        if key.not_null {
            return;
        }
        let has_nulls = Spi::get_one::<bool>(&format!(
            "SELECT EXISTS (SELECT 1 FROM ONLY {} WHERE {} IS NULL)",
            self.qualified,
            quote_ident(&key.name)
        ))
        .unwrap_or_else(|e| spi_failed("could not inspect the table", e))
        .unwrap_or(false);
        if has_nulls {
            PgShardError::new(
                PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
                format!(
                    "cannot shard table {}: shard key \"{}\" is NULL in some rows",
                    self.qualified, key.name
                ),
            )
            .detail("A row with a NULL shard key belongs to no shard.")
            .hint("Fill in or delete those rows, and consider making the column NOT NULL.")
            .raise()
        }
    }

    /// The table's live columns, quoted, comma-separated, in attribute order.
    fn column_list(&self) -> String {
        Spi::get_one_with_args::<String>(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
            &[self.oid.into()],
        )
        .unwrap_or_else(|e| spi_failed("could not inspect the table", e))
        .unwrap_or_default()
    }

    /// CREATE TABLE and CREATE INDEX statements for one shard table.
    pub(crate) fn shard_ddl(&self, shard: &Shard) -> String {
        let shape = self.shape();
        let tag_indexes = self.tag_indexes();
        let mut elements: Vec<String> = shape
            .columns
            .iter()
            .map(|c| {
                let not_null = if c.not_null { " NOT NULL" } else { "" };
                format!("{} {}{not_null}", c.name, c.shard_type)
            })
            .collect();
        let mut indexes = String::new();
        for constraint in shape.constraints.iter().filter(|c| c.kind != 'f') {
            match self.shard_constraint(constraint, shard, &tag_indexes) {
                ShardConstraint::Element(element) => elements.push(element),
                ShardConstraint::Index(ddl) => indexes.push_str(&ddl),
            }
        }
        let mut ddl = format!(
            "CREATE SCHEMA IF NOT EXISTS {};\nCREATE TABLE {} ({});\n",
            quote_ident(&self.schema),
            shard.relation,
            elements.join(", ")
        );
        for index in &shape.indexes {
            ddl.push_str(&self.shard_index(&index.name, shard, false, &tag_indexes));
        }
        ddl.push_str(&indexes);
        ddl
    }

    /// What the shards must match of the table: its columns (with their shard types), table
    /// constraints, and the indexes that back no constraint.
    pub(crate) fn shape(&self) -> ddl::Shape {
        let rows = |sql: &str| -> Vec<(i16, String, String, bool)> {
            Spi::connect(|client| {
                client
                    .select(sql, None, &[self.oid.into()])?
                    .into_iter()
                    .map(|row| {
                        Ok((
                            row.get::<i16>(1)?.unwrap_or_default(),
                            row.get::<String>(2)?.unwrap_or_default(),
                            row.get::<String>(3)?.unwrap_or_default(),
                            row.get::<bool>(4)?.unwrap_or_default(),
                        ))
                    })
                    .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
            })
            .unwrap_or_else(|e| spi_failed("could not read the table definition", e))
        };
        // A shard column of a domain (or an array of one) has the base type, whose collation is
        // the default (100): the domain's own collation must then be written out.
        let columns = rows(
            "SELECT a.attnum, quote_ident(a.attname), \
               pgshard.shard_column_type(a.atttypid, a.atttypmod) \
               || CASE WHEN a.attcollation <> 0 AND a.attcollation <> \
                    (CASE WHEN t.typtype = 'd' OR (t.typcategory = 'A' AND e.typtype = 'd') \
                     THEN 100 ELSE t.typcollation END) \
                  THEN ' COLLATE ' || quote_ident(n.nspname) || '.' || quote_ident(c.collname) ELSE '' END, \
               a.attnotnull \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_type e ON e.oid = t.typelem \
             LEFT JOIN pg_collation c ON c.oid = a.attcollation \
             LEFT JOIN pg_namespace n ON n.oid = c.collnamespace \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .into_iter()
        .map(|(attnum, name, shard_type, not_null)| ddl::Column {
            attnum,
            name,
            shard_type,
            not_null,
        })
        .collect();
        let constraints = rows(
            "SELECT 0::int2, conname::text, contype::text || ' ' || pg_get_constraintdef(oid), false \
             FROM pg_constraint WHERE conrelid = $1 AND contype IN ('c', 'p', 'u', 'f', 'x') \
             ORDER BY contype, conname",
        )
        .into_iter()
        .map(|(_, name, kind_and_definition, _)| {
            let (kind, definition) = kind_and_definition
                .split_once(' ')
                .expect("contype, a space, the definition");
            ddl::Constraint {
                name,
                kind: kind.chars().next().unwrap_or('?'),
                definition: definition.to_string(),
            }
        })
        .collect();
        let indexes = rows(
            "SELECT 0::int2, i.relname::text, pg_get_indexdef(x.indexrelid), false \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             WHERE x.indrelid = $1 AND NOT EXISTS \
               (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid AND c.conrelid = $1) \
             ORDER BY x.indexrelid",
        )
        .into_iter()
        .map(|(_, name, definition, _)| ddl::Index { name, definition })
        .collect();
        ddl::Shape {
            columns,
            constraints,
            indexes,
        }
    }

    /// A CHECK, PRIMARY KEY or UNIQUE constraint on a shard: an element of its table (keys
    /// are named after the shard, since their index names are unique per schema), or, for a
    /// key over an encrypted column, a unique index on the tag.
    pub(crate) fn shard_constraint(
        &self,
        constraint: &ddl::Constraint,
        shard: &Shard,
        tag_indexes: &[TagIndex],
    ) -> ShardConstraint {
        if let Some(index) = tag_indexes
            .iter()
            .find(|index| index.constraint.as_deref() == Some(&constraint.name))
        {
            let name = layout::shard_relation_name(&constraint.name, shard.id);
            return ShardConstraint::Index(index.shard_ddl(&name, &shard.relation, false));
        }
        let name = match constraint.kind {
            'c' => constraint.name.clone(),
            'p' | 'u' => layout::shard_relation_name(&constraint.name, shard.id),
            _ => refuse(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "constraint \"{}\" of {} cannot be enforced on the shards",
                    constraint.name, self.qualified
                ),
                "Exclusion constraints can only be checked within one shard; they are not supported on distributed tables.",
            ),
        };
        ShardConstraint::Element(format!(
            "CONSTRAINT {} {}",
            quote_ident(&name),
            constraint.definition
        ))
    }

    /// CREATE INDEX for an index (named `index_name`, backing no constraint) on one shard,
    /// named after the shard; an index over an encrypted column indexes its tag.
    pub(crate) fn shard_index(
        &self,
        index_name: &str,
        shard: &Shard,
        concurrently: bool,
        tag_indexes: &[TagIndex],
    ) -> String {
        let shard_index = layout::shard_relation_name(index_name, shard.id);
        let (index, definition) = Spi::get_two_with_args::<pg_sys::Oid, String>(
            "SELECT x.indexrelid, pg_get_indexdef(x.indexrelid) FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = $1 AND i.relname = $2",
            &[self.oid.into(), index_name.into()],
        )
        .unwrap_or_else(|e| spi_failed("could not read the table's indexes", e));
        let (Some(index), Some(definition)) = (index, definition) else {
            PgShardError::new(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!("index {index_name} of {} not found", self.qualified),
            )
            .raise()
        };
        if let Some(tag_index) = tag_indexes.iter().find(|t| t.oid == index) {
            return tag_index.shard_ddl(&shard_index, &shard.relation, concurrently);
        }
        let rewritten = layout::rewrite_index_definition(
            &definition,
            &quote_ident(index_name),
            &self.qualified,
            &quote_ident(&shard_index),
            &shard.relation,
        )
        .unwrap_or_else(|| {
            refuse(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "cannot copy index {index_name} of {} to the shards: {definition}",
                    self.qualified
                ),
                "Drop the index, shard the table, and create the index again.",
            )
        });
        let rewritten = if concurrently {
            rewritten.replacen(" INDEX ", " INDEX CONCURRENTLY ", 1)
        } else {
            rewritten
        };
        format!("{rewritten};\n")
    }

    /// Indexes (constraint-backed ones included) with an encrypted key column: on a shard,
    /// where the column is the bytea envelope, they index the blind-index tag instead, so
    /// that equality and uniqueness mean equal plaintexts.
    pub(crate) fn tag_indexes(&self) -> Vec<TagIndex> {
        let indexes: Vec<(pg_sys::Oid, Option<String>, bool, String, Option<String>, Vec<i16>, i16)> =
            Spi::connect(|client| {
                client
                    .select(
                        "SELECT x.indexrelid, \
                           (SELECT conname::text FROM pg_constraint c WHERE c.conindid = x.indexrelid \
                              AND c.conrelid = x.indrelid AND c.contype IN ('p', 'u')), \
                           x.indisunique, a.amname::text, pg_get_expr(x.indpred, x.indrelid), \
                           x.indkey::int2[], x.indnkeyatts \
                         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
                         JOIN pg_am a ON a.oid = i.relam WHERE x.indrelid = $1 ORDER BY x.indexrelid",
                        None,
                        &[self.oid.into()],
                    )?
                    .into_iter()
                    .map(|row| {
                        Ok((
                            row.get::<pg_sys::Oid>(1)?.expect("indexrelid"),
                            row.get::<String>(2)?,
                            row.get::<bool>(3)?.unwrap_or(false),
                            row.get::<String>(4)?.unwrap_or_default(),
                            row.get::<String>(5)?,
                            row.get::<Vec<i16>>(6)?.unwrap_or_default(),
                            row.get::<i16>(7)?.unwrap_or_default(),
                        ))
                    })
                    .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
            })
            .unwrap_or_else(|e| spi_failed("could not read the table's indexes", e));
        let encrypted = |attnum: i16| -> bool {
            // SAFETY: catalog lookup of a column of this table.
            attnum > 0
                && crate::encryption::kind_of_type(unsafe { pg_sys::get_atttype(self.oid, attnum) })
                    .is_some()
        };
        let column_name = |attnum: i16| -> String {
            // SAFETY: catalog lookup of a column of this table.
            quote_ident(&cstr(unsafe {
                pg_sys::get_attname(self.oid, attnum, false)
            }))
        };
        indexes
            .into_iter()
            .filter(|(_, _, _, _, _, keys, key_count)| {
                keys[..*key_count as usize].iter().any(|a| encrypted(*a))
            })
            .map(
                |(oid, constraint, unique, method, predicate, keys, key_count)| {
                    let key_columns = keys[..key_count as usize]
                        .iter()
                        .enumerate()
                        .map(|(position, attnum)| {
                            if encrypted(*attnum) {
                                format!(
                                    "substring({} FROM {} FOR {})",
                                    column_name(*attnum),
                                    pgshard_core::envelope::TAG_SQL_FROM,
                                    pgshard_core::envelope::TAG_LEN
                                )
                            } else {
                                first_text(
                                    "SELECT pg_get_indexdef($1, $2, false)",
                                    &[oid.into(), (position as i32 + 1).into()],
                                )
                                .unwrap_or_default()
                            }
                        })
                        .collect();
                    let included = keys[key_count as usize..]
                        .iter()
                        .map(|a| column_name(*a))
                        .collect();
                    TagIndex {
                        oid,
                        constraint,
                        unique,
                        method,
                        predicate,
                        key_columns,
                        included,
                    }
                },
            )
            .collect()
    }
}

/// A constraint as a shard has it (see `TableInfo::shard_constraint`).
pub(crate) enum ShardConstraint {
    /// `CONSTRAINT name definition`, for CREATE TABLE or ALTER TABLE … ADD.
    Element(String),
    /// A statement creating a unique index on the tag.
    Index(String),
}

/// An index over an encrypted column, as its shards have it (see `TableInfo::tag_indexes`).
pub(crate) struct TagIndex {
    oid: pg_sys::Oid,
    /// The primary key or unique constraint it backs.
    constraint: Option<String>,
    unique: bool,
    method: String,
    predicate: Option<String>,
    key_columns: Vec<String>,
    included: Vec<String>,
}

impl TagIndex {
    fn shard_ddl(&self, name: &str, relation: &str, concurrently: bool) -> String {
        let mut ddl = format!(
            "CREATE {}INDEX {}{} ON {relation} USING {} ({})",
            if self.unique { "UNIQUE " } else { "" },
            if concurrently { "CONCURRENTLY " } else { "" },
            quote_ident(name),
            quote_ident(&self.method),
            self.key_columns.join(", ")
        );
        if !self.included.is_empty() {
            ddl.push_str(&format!(" INCLUDE ({})", self.included.join(", ")));
        }
        if let Some(predicate) = &self.predicate {
            ddl.push_str(&format!(" WHERE {predicate}"));
        }
        ddl.push_str(";\n");
        ddl
    }
}

/// A co-location group to join: its id and its shards' ranges and workers.
struct Colocation {
    id: i32,
    layout: Vec<(HashRange, Worker)>,
}

fn colocation_of(other: pg_sys::Oid, family: KeyFamily, shard_count: Option<i32>) -> Colocation {
    // The group's layout cannot change under the new table while it is created (a running
    // move or split is waited for).
    metadata::lock_against_operations(other, true);
    let other_name = relation_name(other);
    let sharded = metadata::sharded_table(other).unwrap_or_else(|| {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("cannot co-locate with table {other_name}: it is not sharded"),
            "Shard that table first, or leave colocate_with out.",
        )
    });
    if sharded.reference {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("cannot co-locate with table {other_name}: it is a reference table"),
            "Every worker holds all of a reference table's rows; sharded tables join it without co-location.",
        )
    }
    if sharded.key_family != family {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "cannot co-locate with table {other_name}: its shard key is of type {}, which does not hash like the new shard key",
                type_name(sharded.key_type)
            ),
        )
        .detail(format!(
            "Keys of the {} family and the {} family never land on the same shard.",
            sharded.key_family.name(),
            family.name()
        ))
        .hint("Co-locate tables whose shard keys have the same type (int2, int4 and int8 hash alike).")
        .raise()
    }
    if let Some(count) = shard_count {
        if count as usize != sharded.shards.len() {
            refuse(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "cannot co-locate with table {other_name} using {count} shards: it has {}",
                    sharded.shards.len()
                ),
                "Leave shard_count out when using colocate_with.",
            );
        }
    }
    Colocation {
        id: sharded.colocation_id,
        layout: sharded
            .shards
            .iter()
            .map(|s| (s.range, s.worker.clone()))
            .collect(),
    }
}

fn create_shard_tables(table: &TableInfo, shards: &[Shard]) {
    run_on_shard_workers(shards, "create shards on", |shard| table.shard_ddl(shard));
}

/// Runs one statement per shard, all of a worker's in one round trip, the workers concurrently,
/// inside the coordinator transaction's remote transactions.
pub(crate) fn run_on_shard_workers(shards: &[Shard], doing: &str, statement: impl Fn(&Shard) -> String) {
    run_on_workers_of(shards, doing, |on_worker| on_worker.iter().map(|s| statement(s)).collect());
}

/// Runs one script per worker of `shards`, built from that worker's shards, the workers
/// concurrently, inside the coordinator transaction's remote transactions.
pub fn run_on_workers_of(shards: &[Shard], doing: &str, script: impl Fn(&[&Shard]) -> String) {
    let mut connections = xact::connections(&workers_of(shards), Access::Write);
    let scripts: Vec<String> = connections
        .iter()
        .map(|conn| {
            let on_worker: Vec<&Shard> = shards
                .iter()
                .filter(|s| s.worker.id == conn.worker.id)
                .collect();
            script(&on_worker)
        })
        .collect();
    let results = xact::run_scripts(&mut connections, scripts);
    for (conn, result) in connections.iter().zip(results) {
        if let Err(e) = result {
            remote::query_error(&e).raise_for(&conn.worker.name, doing);
        }
    }
}

/// Scans the coordinator's table once and copies each row into its shard.
fn move_rows_into_shards(table: &TableInfo, sharded: &Rc<ShardedTable>) {
    let columns = table.column_list();
    let copy = ShardCopy::new(sharded, &columns, COPY_FLUSH_BYTES);
    // SAFETY: a sequential scan of a table this transaction holds AccessExclusiveLock on, with
    // the transaction's snapshot; per-row allocations go to a context reset every row.
    unsafe {
        let rel = pg_sys::table_open(table.oid, pg_sys::NoLock as i32);
        let desc = (*rel).rd_att;
        let mut encoder = TextEncoder::new(desc);
        let snapshot = pg_sys::GetActiveSnapshot();
        let scan = pg_sys::table_beginscan(rel, snapshot, 0, std::ptr::null_mut());
        let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
        let row_context = pg_sys::AllocSetContextCreateExtended(
            pg_sys::CurrentMemoryContext,
            c"pgshard row".as_ptr(),
            0,
            8 * 1024,
            8 * 1024 * 1024,
        );
        let live: Vec<usize> = (0..(*desc).natts as usize)
            .filter(|&i| !encoder.is_dropped(i))
            .collect();
        copy.load(|copy| {
            let found = pg_sys::table_scan_getnextslot(
                scan,
                pg_sys::ScanDirection::ForwardScanDirection,
                slot,
            );
            if found {
                let previous = pg_sys::MemoryContextSwitchTo(row_context);
                pg_sys::slot_getallattrs(slot);
                let targets = crate::hashing::row_shards(sharded, slot);
                let values: Vec<Option<String>> =
                    live.iter().map(|&i| encoder.text(slot, i)).collect();
                pg_sys::MemoryContextSwitchTo(previous);
                pg_sys::MemoryContextReset(row_context);
                copy.push_texts(targets, &values);
            }
            found
        });
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        pg_sys::MemoryContextDelete(row_context);
    }
}

/// Streams one shard's rows back into the coordinator's table, in batches of INSERTs.
fn copy_shard_back(table: &TableInfo, columns: &str, shard: &Shard) {
    const BATCH: usize = 500;
    let types: Vec<String> = Spi::connect(|client| {
        client
            .select(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                None,
                &[table.oid.into()],
            )?
            .into_iter()
            .map(|row| row.get::<String>(1).map(|t| t.unwrap_or_default()))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap_or_else(|e| spi_failed("could not inspect the table", e));
    let mut conn = xact::connection(&shard.worker, Access::Write);
    let sql = conn.prefixed(&format!("SELECT {columns} FROM {}", shard.relation));
    let token = [conn.client.cancel_token()];
    let stream = remote::wait(conn.client.simple_query_raw(&sql), &token).unwrap_or_else(|e| {
        remote::query_error(&e).raise_for(&shard.worker.name, "read shards from")
    });
    let mut stream = std::pin::pin!(stream);
    let mut batch: Vec<String> = Vec::new();
    let insert = |batch: &mut Vec<String>| {
        if batch.is_empty() {
            return;
        }
        Spi::run(&format!(
            "INSERT INTO {} ({columns}) VALUES {}",
            table.qualified,
            batch.join(", ")
        ))
        .unwrap_or_else(|e| spi_failed("could not insert rows back into the table", e));
        batch.clear();
    };
    loop {
        let next = remote::wait(stream.next(), &token);
        match next {
            None => break,
            Some(Err(e)) => {
                remote::query_error(&e).raise_for(&shard.worker.name, "read shards from")
            }
            Some(Ok(tokio_postgres::SimpleQueryMessage::Row(row))) => {
                let values: Vec<String> = (0..types.len())
                    .map(|i| match row.get(i) {
                        Some(text) => format!("{}::{}", layout::quote_literal(text), types[i]),
                        None => "NULL".to_string(),
                    })
                    .collect();
                batch.push(format!("({})", values.join(", ")));
                if batch.len() >= BATCH {
                    insert(&mut batch);
                }
            }
            Some(Ok(_)) => {}
        }
    }
    insert(&mut batch);
}

fn record_metadata(sharded: &ShardedTable, colocation_id: Option<i32>, family: KeyFamily) {
    if sharded.reference {
        Spi::run_with_args(
            "INSERT INTO pgshard.sharded_table (table_oid, kind) VALUES ($1, 'reference')",
            &[sharded.oid.into()],
        )
        .unwrap_or_else(|e| spi_failed("could not record the reference table", e));
        let shard = &sharded.shards[0];
        Spi::run_with_args(
            "INSERT INTO pgshard.shard (shard_id, table_oid, hash_min, hash_max) VALUES ($1, $2, $3, $4)",
            &[shard.id.into(), sharded.oid.into(), shard.range.min.into(), shard.range.max.into()],
        )
        .unwrap_or_else(|e| spi_failed("could not record the shard", e));
        for copy in &sharded.shards {
            record_placement(copy);
        }
        return;
    }
    let colocation_id = colocation_id.unwrap_or_else(|| {
        Spi::get_one_with_args::<i32>(
            "INSERT INTO pgshard.colocation (shard_count, key_family) VALUES ($1, $2) RETURNING colocation_id",
            &[(sharded.shards.len() as i32).into(), family.name().into()],
        )
        .unwrap_or_else(|e| spi_failed("could not record the colocation group", e))
        .expect("RETURNING gives a row")
    });
    Spi::run_with_args(
        "INSERT INTO pgshard.sharded_table (table_oid, shard_key, colocation_id) VALUES ($1, $2, $3)",
        &[sharded.oid.into(), sharded.key_name.as_str().into(), colocation_id.into()],
    )
    .unwrap_or_else(|e| spi_failed("could not record the sharded table", e));
    for shard in &sharded.shards {
        Spi::run_with_args(
            "INSERT INTO pgshard.shard (shard_id, table_oid, hash_min, hash_max) VALUES ($1, $2, $3, $4); ",
            &[shard.id.into(), sharded.oid.into(), shard.range.min.into(), shard.range.max.into()],
        )
        .unwrap_or_else(|e| spi_failed("could not record the shards", e));
        record_placement(shard);
    }
}

fn record_placement(shard: &Shard) {
    Spi::run_with_args(
        "INSERT INTO pgshard.placement (shard_id, worker_id) VALUES ($1, $2)",
        &[shard.id.into(), shard.worker.id.into()],
    )
    .unwrap_or_else(|e| spi_failed("could not record the placements", e));
}

/// Gives a newly added worker a copy of every reference table (created and filled in the
/// current transaction, so a failure leaves the worker without copies and unregistered).
/// Writers of each table wait meanwhile (they hold RowExclusiveLock on it from parse analysis
/// to commit, which ExclusiveLock conflicts with; readers are not blocked): the new copy misses
/// no write, and later writers see the new placement.
pub fn copy_reference_tables_to(worker: &Worker) {
    let references: Vec<Rc<ShardedTable>> = metadata::sharded_table_oids()
        .into_iter()
        .filter_map(metadata::sharded_table)
        .filter(|t| t.reference)
        .collect();
    let mut copies = Vec::with_capacity(references.len());
    for reference in &references {
        // SAFETY: a table lock held until the transaction ends.
        unsafe { pg_sys::LockRelationOid(reference.oid, pg_sys::ExclusiveLock as i32) };
        let table = describe(reference.oid);
        let source = &reference.shards[0];
        let copy = Shard {
            worker: worker.clone(),
            ..source.clone()
        };
        // A copy left behind when the worker was removed before is stale (CASCADE: with the
        // keys of other stale copies that reference it).
        run_on_shard_workers(std::slice::from_ref(&copy), "create copies on", |copy| {
            format!(
                "DROP TABLE IF EXISTS {} CASCADE;\n{}",
                copy.relation,
                table.shard_ddl(copy)
            )
        });
        crate::shard_copy::copy_between(source, &copy, &table.column_list());
        record_placement(&copy);
        copies.push(copy);
    }
    // The keys between the copies, once every copy is filled and placed (a key finds the copy
    // it references through the catalog), so that each is checked against complete copies.
    // A reference table's keys reference only reference tables.
    let foreign_keys: String = references
        .iter()
        .zip(&copies)
        .map(|(reference, copy)| {
            crate::ddl::shard_foreign_keys(
                &describe(reference.oid),
                reference,
                copy,
                ShardKeys::All,
                &|_| unreachable!("a reference table references no sharded table"),
            )
        })
        .collect();
    if !foreign_keys.is_empty() {
        run_on_workers_of(&copies, "add foreign keys on", |_| foreign_keys.clone());
    }
}

/// Forgets the copies of reference tables on a worker being removed; returns their names
/// there (the worker may be gone, so they are not dropped). Refuses when a copy is the last.
pub fn forget_reference_copies_on(worker: &Worker) -> Vec<String> {
    let mut names = Vec::new();
    for oid in metadata::sharded_table_oids() {
        let Some(reference) = metadata::sharded_table(oid).filter(|t| t.reference) else {
            continue;
        };
        let Some(copy) = reference.copy_on(worker.id) else {
            continue;
        };
        if reference.shards.len() == 1 {
            refuse(
                PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
                format!(
                    "worker \"{}\" holds the only copy of reference table {}",
                    worker.name,
                    relation_name(oid)
                ),
                "Add another worker first, or unshard the table with pgshard.unshard_table().",
            )
        }
        // Writers in flight hold this lock until their commit is decided: they are done with
        // the copy before it leaves the table, and later ones wait and go without it.
        metadata::lock_reference_writes(oid);
        Spi::run_with_args(
            "DELETE FROM pgshard.placement WHERE shard_id = $1 AND worker_id = $2",
            &[copy.id.into(), worker.id.into()],
        )
        .unwrap_or_else(|e| spi_failed("could not remove the placement", e));
        names.push(copy.relation.clone());
    }
    names
}
