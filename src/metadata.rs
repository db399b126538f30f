//! The catalog: metadata tables in schema `pgshard` (SQL in `sql/catalog.sql`), and a
//! per-backend cache of which tables are sharded, consulted on every planned statement.
//!
//! The cache is invalidated through PostgreSQL's relcache invalidation: a trigger on
//! `pgshard.sharded_table` invalidates the catalog table and the affected table at commit, in
//! every backend; plans cached before a table became sharded are invalidated with it.

use std::cell::RefCell;
use std::collections::HashSet;

use pgrx::prelude::*;

use crate::error::spi_failed;

extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);

extension_sql!(
    r#"
CREATE FUNCTION pgshard.sharded_table_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pgshard.invalidate_metadata(OLD.table_oid::oid);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pgshard.invalidate_metadata(NEW.table_oid::oid);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sharded_table_changed
    AFTER INSERT OR UPDATE OR DELETE ON pgshard.sharded_table
    FOR EACH ROW EXECUTE FUNCTION pgshard.sharded_table_changed();
"#,
    name = "metadata_invalidation",
    requires = [invalidate_metadata]
);

/// What this backend knows of the catalog; `None` until first needed and after invalidation.
struct Snapshot {
    /// `pgshard.sharded_table`'s own oid: an invalidation of it clears the snapshot.
    catalog_oid: pg_sys::Oid,
    sharded: HashSet<pg_sys::Oid>,
}

thread_local! {
    static SNAPSHOT: RefCell<Option<Snapshot>> = const { RefCell::new(None) };
    /// Set while the snapshot loads: the load's own SPI query is planned too.
    static LOADING: RefCell<bool> = const { RefCell::new(false) };
}

/// Queues relcache invalidations for a table and the catalog, delivered at commit.
#[pg_extern(volatile)]
fn invalidate_metadata(table_oid: pg_sys::Oid) {
    // SAFETY: both calls only queue invalidation messages; the table may already be dropped,
    // so its oid is checked first (invalidating a missing relation raises an error).
    unsafe {
        let exists = pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(table_oid),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        );
        if exists {
            pg_sys::CacheInvalidateRelcacheByRelid(table_oid);
        }
        if let Some(catalog) = catalog_oid() {
            pg_sys::CacheInvalidateRelcacheByRelid(catalog);
        }
    }
}

/// Registers the relcache callback; called from `_PG_init`.
pub fn register_invalidation() {
    // SAFETY: registering a callback with a static function is what the API is for.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(
            Some(on_relcache_invalidation),
            pg_sys::Datum::from(0),
        )
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    SNAPSHOT.with(|snapshot| {
        let mut snapshot = snapshot.borrow_mut();
        let stale = match snapshot.as_ref() {
            Some(s) => {
                relid == pg_sys::InvalidOid || relid == s.catalog_oid || s.sharded.contains(&relid)
            }
            None => false,
        };
        if stale {
            *snapshot = None;
        }
    });
}

fn catalog_oid() -> Option<pg_sys::Oid> {
    // SAFETY: looks a relation up by name in the pgshard schema; returns InvalidOid when absent.
    let oid = unsafe {
        let schema = pg_sys::get_namespace_oid(c"pgshard".as_ptr(), true);
        if schema == pg_sys::InvalidOid {
            return None;
        }
        pg_sys::get_relname_relid(c"sharded_table".as_ptr(), schema)
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// Whether any of `relation_oids` is a sharded table; returns the first one that is.
pub fn first_sharded(relation_oids: impl IntoIterator<Item = pg_sys::Oid>) -> Option<pg_sys::Oid> {
    if LOADING.with(|loading| *loading.borrow()) {
        return None;
    }
    ensure_loaded()?;
    SNAPSHOT.with(|snapshot| {
        let snapshot = snapshot.borrow();
        let sharded = &snapshot.as_ref()?.sharded;
        relation_oids.into_iter().find(|oid| sharded.contains(oid))
    })
}

/// Loads the snapshot if needed; `None` when the extension does not exist in this database
/// (then nothing is sharded and nothing is cached, so CREATE EXTENSION is seen at once).
fn ensure_loaded() -> Option<()> {
    if SNAPSHOT.with(|snapshot| snapshot.borrow().is_some()) {
        return Some(());
    }
    // SAFETY: a catalog lookup by name.
    let extension = unsafe { pg_sys::get_extension_oid(c"pgshard".as_ptr(), true) };
    if extension == pg_sys::InvalidOid {
        return None;
    }
    // During CREATE EXTENSION the catalog table may not exist yet.
    let catalog_oid = catalog_oid()?;
    // Reset on every way out, including an error unwinding through here.
    struct Loading;
    impl Drop for Loading {
        fn drop(&mut self) {
            LOADING.with(|loading| *loading.borrow_mut() = false);
        }
    }
    LOADING.with(|loading| *loading.borrow_mut() = true);
    let loading = Loading;
    let sharded = Spi::connect(|client| {
        client
            .select(
                "SELECT table_oid::oid FROM pgshard.sharded_table",
                None,
                &[],
            )?
            .into_iter()
            .map(|row| {
                row.get::<pg_sys::Oid>(1)
                    .map(|oid| oid.expect("table_oid is NOT NULL"))
            })
            .collect::<Result<HashSet<_>, _>>()
    });
    drop(loading);
    let sharded = sharded.unwrap_or_else(|e| spi_failed("could not read pgshard.sharded_table", e));
    SNAPSHOT.with(|snapshot| {
        *snapshot.borrow_mut() = Some(Snapshot {
            catalog_oid,
            sharded,
        })
    });
    Some(())
}

/// Number of shard placements on a worker.
pub fn placements_on_worker(worker_id: i32) -> i64 {
    Spi::get_one_with_args::<i64>(
        "SELECT count(*) FROM pgshard.placement WHERE worker_id = $1",
        &[worker_id.into()],
    )
    .unwrap_or_else(|e| spi_failed("could not read pgshard.placement", e))
    .unwrap_or(0)
}
