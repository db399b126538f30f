//! The catalog: metadata tables in schema `pgshard` (SQL in `sql/catalog.sql`), and a
//! per-backend cache of which tables are sharded, consulted on every planned statement.
//!
//! The cache is invalidated through PostgreSQL's relcache invalidation: a trigger on
//! `pgshard.sharded_table` invalidates the catalog table and the affected table at commit, in
//! every backend; plans cached before a table became sharded are invalidated with it.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use pgrx::prelude::*;
use pgshard_core::hashing::{HashRange, KeyFamily};

use crate::error::spi_failed;
use crate::remote::Worker;

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
-- Shards and placements change when shards move or split: the same invalidation.
CREATE TRIGGER shard_changed
    AFTER INSERT OR UPDATE OR DELETE ON pgshard.shard
    FOR EACH ROW EXECUTE FUNCTION pgshard.sharded_table_changed();
CREATE FUNCTION pgshard.placement_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed bigint := CASE WHEN TG_OP = 'DELETE' THEN OLD.shard_id ELSE NEW.shard_id END;
BEGIN
    PERFORM pgshard.invalidate_metadata(s.table_oid::oid) FROM pgshard.shard s
    WHERE s.shard_id = changed;
    RETURN NULL;
END $$;
CREATE TRIGGER placement_changed
    AFTER INSERT OR UPDATE OR DELETE ON pgshard.placement
    FOR EACH ROW EXECUTE FUNCTION pgshard.placement_changed();
"#,
    name = "metadata_invalidation",
    requires = [invalidate_metadata]
);

/// What this backend knows of the catalog; `None` until first needed and after invalidation.
struct Snapshot {
    /// `pgshard.sharded_table`'s own oid: an invalidation of it clears the snapshot.
    catalog_oid: pg_sys::Oid,
    sharded: HashSet<pg_sys::Oid>,
    /// Sharded tables whose shards were needed, loaded on first use.
    tables: HashMap<pg_sys::Oid, Rc<ShardedTable>>,
}

/// A distributed table as routing needs it: a hash-sharded table, or a reference table.
#[derive(Debug)]
pub struct ShardedTable {
    pub oid: pg_sys::Oid,
    /// A reference table: one shard copied to every worker. It has no shard key (`key_name`
    /// is empty, `key_attnum` 0, no co-location group) and `shards` lists its copies, one per
    /// worker in worker order; reads use the first, writes go to all.
    pub reference: bool,
    pub key_name: String,
    pub key_attnum: i16,
    pub key_type: pg_sys::Oid,
    pub key_family: KeyFamily,
    pub colocation_id: i32,
    /// Ordered by hash range; together they cover the whole hash space.
    pub shards: Vec<Shard>,
}

/// One shard and where it lives.
#[derive(Debug, Clone)]
pub struct Shard {
    pub id: i64,
    pub range: HashRange,
    pub worker: Worker,
    /// The shard table's name on its worker, schema-qualified and quoted.
    pub relation: String,
}

impl ShardedTable {
    /// The index in `shards` of the shard that holds rows whose key hashes to `hash`.
    /// (Runs for every routed row: a binary search, nothing allocated.)
    pub fn shard_index_for_hash(&self, hash: i64) -> usize {
        pgshard_core::hashing::range_index_by(&self.shards, |s| s.range, hash)
            .expect("the shards of a table cover the whole hash space")
    }

    /// The shard that holds rows whose key hashes to `hash`.
    pub fn shard_for_hash(&self, hash: i64) -> &Shard {
        &self.shards[self.shard_index_for_hash(hash)]
    }

    /// How many shards the table has (a reference table has one, however many copies).
    pub fn shard_count(&self) -> usize {
        if self.reference {
            1
        } else {
            self.shards.len()
        }
    }

    /// A reference table's copy on `worker_id`.
    pub fn copy_on(&self, worker_id: i32) -> Option<&Shard> {
        debug_assert!(self.reference);
        self.shards.iter().find(|s| s.worker.id == worker_id)
    }
}

/// Whether one remote query covers every row of these tables: none of them is sharded over
/// more than one shard (a query over reference tables alone reads one copy).
pub fn one_task<'a>(tables: impl IntoIterator<Item = &'a ShardedTable>) -> bool {
    tables.into_iter().all(|t| t.shard_count() == 1)
}

thread_local! {
    static SNAPSHOT: RefCell<Option<Snapshot>> = const { RefCell::new(None) };
    /// Set while the snapshot loads: the load's own SPI query is planned too.
    static LOADING: RefCell<bool> = const { RefCell::new(false) };
    /// Counts the invalidations of the snapshot: what was derived from an older one (the
    /// statements prepared on workers) may be stale.
    static GENERATION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The generation of this backend's metadata: it changes whenever a sharded table (or the
/// catalog) is invalidated, by DDL, a shard move or split, or a table sharded or dropped.
pub fn generation() -> u64 {
    GENERATION.with(|g| g.get())
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
    register_relcache_callback(on_relcache_invalidation);
}

/// A relcache invalidation callback: called with the relation's oid (InvalidOid: all of them).
pub type RelcacheCallback = unsafe extern "C-unwind" fn(pg_sys::Datum, pg_sys::Oid);

/// Registers a per-backend cache's relcache callback; called from `_PG_init`.
pub fn register_relcache_callback(callback: RelcacheCallback) {
    // SAFETY: registering a callback with a static function is what the API is for.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(callback), pg_sys::Datum::from(0)) }
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
            GENERATION.with(|g| g.set(g.get() + 1));
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

/// Whether this database has any sharded table (cheap once the snapshot is loaded).
pub fn any_sharded() -> bool {
    if LOADING.with(|loading| *loading.borrow()) || ensure_loaded().is_none() {
        return false;
    }
    SNAPSHOT.with(|s| s.borrow().as_ref().is_some_and(|s| !s.sharded.is_empty()))
}

/// Loads the snapshot if needed; `None` when the extension does not exist in this database
/// (then nothing is sharded and nothing is cached, so CREATE EXTENSION is seen at once).
fn ensure_loaded() -> Option<()> {
    if SNAPSHOT.with(|snapshot| snapshot.borrow().is_some()) {
        return Some(());
    }
    // No catalog access outside a valid transaction: in a transaction block that failed, the
    // utility hook still sees its ROLLBACK, after the abort released the transaction's locks.
    // Locks taken then outlived the transaction, and the next one crashed the server (PANIC:
    // failed to re-find shared lock object). Nothing is sharded as far as such a statement
    // knows.
    // SAFETY: reads this backend's transaction state.
    if !unsafe { pg_sys::IsTransactionState() } {
        return None;
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
    // The catalog is not readable by ordinary roles; every role's statements need it.
    let superuser = AsSuperuser::enter();
    let latest = LatestSnapshot::push();
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
    drop(latest);
    drop(superuser);
    drop(loading);
    let sharded = sharded.unwrap_or_else(|e| spi_failed("could not read pgshard.sharded_table", e));
    SNAPSHOT.with(|snapshot| {
        *snapshot.borrow_mut() = Some(Snapshot {
            catalog_oid,
            sharded,
            tables: HashMap::new(),
        })
    });
    Some(())
}

/// Serializes writers of a reference table until the transaction ends. Each copy takes its
/// row locks on its own worker; two transactions writing the same rows could each win on a
/// different worker and wait for the other forever, unseen by any deadlock detector. The lock
/// is an advisory-type lock of the coordinator (class 0x7067, "pg"), distinct from the
/// `pg_advisory_lock` ones (classes 1 and 2), and it shows in `pg_locks`.
pub fn lock_reference_writes(table: pg_sys::Oid) {
    lock_coordinator(table.to_u32(), 0, 0x7067, pg_sys::ExclusiveLock);
}

/// Takes a transaction-scoped advisory-type lock of this database on the coordinator, in a
/// class of pgshard's own (`class`, shown as `objsubid` in `pg_locks`).
fn lock_coordinator(key1: u32, key2: u32, class: u16, mode: u32) {
    let tag = pg_sys::LOCKTAG {
        // SAFETY: a global of this backend.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: key1,
        locktag_field3: key2,
        locktag_field4: class,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    };
    // SAFETY: a transaction-scoped lock; an interrupt while waiting raises as usual.
    unsafe { pg_sys::LockAcquire(&tag, mode as i32, false, false) };
}

/// Takes the lock that moves and splits hold on a sharded table for their whole run, SHARE
/// UPDATE EXCLUSIVE: it conflicts with another move or split, DDL and TRUNCATE of the table,
/// not with reads and writes. Without `wait`, returns false at once when it is not free.
pub fn lock_against_operations(oid: pg_sys::Oid, wait: bool) -> bool {
    let mode = pg_sys::ShareUpdateExclusiveLock as i32;
    // SAFETY: a transaction-scoped relation lock; an interrupt while waiting raises as usual.
    unsafe {
        if wait {
            pg_sys::LockRelationOid(oid, mode);
            true
        } else {
            pg_sys::ConditionalLockRelationOid(oid, mode)
        }
    }
}

/// Raises unless the statement runs outside a transaction block (`function` names it).
pub fn prevent_in_transaction_block(function: &std::ffi::CStr) {
    // SAFETY: raises a regular error inside a transaction block, does nothing otherwise.
    unsafe { pg_sys::PreventInTransactionBlock(true, function.as_ptr()) };
}

/// Locks the writes of one shard group (the shards of a co-location group with one hash range)
/// until the transaction ends. Writers take it in RowExclusiveLock mode, so they never wait for
/// each other; moving the group takes ExclusiveLock, which waits for the writers in flight and
/// pauses new ones until the new placement is committed. An advisory-type coordinator lock
/// (field4 0x7068), shown in `pg_locks`.
pub fn lock_shard_group(table: &ShardedTable, shard_index: usize, mode: u32) {
    let min = table.shards[shard_index].range.min;
    let range_key = ((min >> 32) as u32) ^ (min as u32);
    lock_coordinator(table.colocation_id as u32, range_key, 0x7068, mode);
}

/// Locks the writes of the shard groups of `shard_indexes` (see [`lock_shard_group`]) and
/// returns the table as the catalog has it once they are held: a shard group that was moved
/// while this statement waited is written at its new place. A reference table is returned as
/// it is (its copies never move).
pub fn lock_for_writing(table: &Rc<ShardedTable>, shard_indexes: &[usize]) -> Rc<ShardedTable> {
    if table.reference {
        return Rc::clone(table);
    }
    let mut indexes = shard_indexes.to_vec();
    indexes.sort_unstable();
    indexes.dedup();
    for &index in &indexes {
        lock_shard_group(table, index, pg_sys::RowExclusiveLock);
    }
    // SAFETY: processes invalidations that arrived while waiting (a committed move's).
    unsafe { pg_sys::AcceptInvalidationMessages() };
    let current = sharded_table(table.oid).unwrap_or_else(|| Rc::clone(table));
    let same_ranges = current.shards.len() == table.shards.len()
        && current.shards.iter().zip(&table.shards).all(|(a, b)| a.range == b.range);
    if !same_ranges {
        crate::error::PgShardError::new(
            PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
            format!(
                "the shards of {} were split while this statement waited",
                qualified_name(table.oid)
            ),
        )
        .hint("Run the statement again.")
        .raise()
    }
    current
}

/// Number of placements of hash-sharded tables' shards on a worker (reference table copies
/// are not counted: other workers hold the same rows).
pub fn placements_on_worker(worker_id: i32) -> i64 {
    Spi::get_one_with_args::<i64>(
        "SELECT count(*) FROM pgshard.placement p JOIN pgshard.shard s USING (shard_id) \
         JOIN pgshard.sharded_table t USING (table_oid) WHERE p.worker_id = $1 AND t.kind = 'hash'",
        &[worker_id.into()],
    )
    .unwrap_or_else(|e| spi_failed("could not read pgshard.placement", e))
    .unwrap_or(0)
}

/// Every sharded table, in oid order.
pub fn sharded_table_oids() -> Vec<pg_sys::Oid> {
    if ensure_loaded().is_none() {
        return Vec::new();
    }
    let mut oids: Vec<pg_sys::Oid> = SNAPSHOT.with(|s| {
        s.borrow()
            .as_ref()
            .map(|snapshot| snapshot.sharded.iter().copied().collect())
            .unwrap_or_default()
    });
    oids.sort_by_key(|oid| oid.to_u32());
    oids
}

/// The sharded table `oid` with its shards, or `None` when it is not sharded.
pub fn sharded_table(oid: pg_sys::Oid) -> Option<Rc<ShardedTable>> {
    first_sharded([oid])?;
    if let Some(table) = SNAPSHOT.with(|s| s.borrow().as_ref()?.tables.get(&oid).cloned()) {
        return Some(table);
    }
    let table = Rc::new(load_table(oid));
    SNAPSHOT.with(|s| {
        if let Some(snapshot) = s.borrow_mut().as_mut() {
            snapshot.tables.insert(oid, Rc::clone(&table));
        }
    });
    Some(table)
}

/// Reads a sharded table's catalog rows. Runs as the bootstrap superuser: worker conninfos are
/// hidden from ordinary roles, yet their statements must reach the workers.
fn load_table(oid: pg_sys::Oid) -> ShardedTable {
    let _superuser = AsSuperuser::enter();
    let _latest = LatestSnapshot::push();
    let (kind, key_name, colocation_id) = Spi::get_three_with_args::<String, String, i32>(
        "SELECT kind, shard_key::text, colocation_id FROM pgshard.sharded_table WHERE table_oid = $1",
        &[oid.into()],
    )
    .unwrap_or_else(|e| spi_failed("could not read pgshard.sharded_table", e));
    let reference = kind.as_deref() == Some("reference");
    // Hash tables have both (a CHECK constraint says so); reference tables neither.
    let key_name = key_name.unwrap_or_default();
    let colocation_id = colocation_id.unwrap_or(0);
    // SAFETY: catalog lookups of a table that exists (it was just found in the catalog).
    let (key_attnum, key_type, schema, name) = unsafe {
        let (attnum, key_type) = if reference {
            (0, pg_sys::InvalidOid)
        } else {
            let key = std::ffi::CString::new(key_name.as_str()).expect("no NUL in a name");
            let attnum = pg_sys::get_attnum(oid, key.as_ptr());
            (attnum, pg_sys::get_atttype(oid, attnum))
        };
        let (schema, name) = schema_and_name(oid);
        (attnum, key_type, schema, name)
    };
    let shards = Spi::connect(|client| {
        client
            .select(
                "SELECT s.shard_id, s.hash_min, s.hash_max, w.worker_id, w.name, w.conninfo \
                 FROM pgshard.shard s JOIN pgshard.placement p USING (shard_id) \
                 JOIN pgshard.worker w USING (worker_id) \
                 WHERE s.table_oid = $1 ORDER BY s.hash_min, w.worker_id",
                None,
                &[oid.into()],
            )?
            .into_iter()
            .map(|row| {
                let id = row.get::<i64>(1)?.expect("NOT NULL");
                Ok(Shard {
                    id,
                    range: HashRange {
                        min: row.get::<i64>(2)?.expect("NOT NULL"),
                        max: row.get::<i64>(3)?.expect("NOT NULL"),
                    },
                    worker: Worker {
                        id: row.get::<i32>(4)?.expect("NOT NULL"),
                        name: row.get::<String>(5)?.expect("NOT NULL"),
                        conninfo: row.get::<String>(6)?.expect("NOT NULL"),
                    },
                    relation: shard_relation(&schema, &name, id),
                })
            })
            .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .unwrap_or_else(|e| spi_failed("could not read the shards", e));
    ShardedTable {
        oid,
        reference,
        key_name,
        key_attnum,
        key_type,
        // A reference table is never hashed; its family is never asked for.
        key_family: if reference {
            KeyFamily::Integer
        } else {
            crate::hashing::key_family(key_type)
        },
        colocation_id,
        shards,
    }
}

/// The quoted, qualified name of a shard table on its worker.
pub fn shard_relation(schema: &str, table: &str, shard_id: i64) -> String {
    format!(
        "{}.{}",
        quote_ident(schema),
        quote_ident(&pgshard_core::layout::shard_relation_name(table, shard_id))
    )
}

/// A relation's schema and name, unquoted (empty for a relation that does not exist).
pub fn schema_and_name(oid: pg_sys::Oid) -> (String, String) {
    // SAFETY: catalog lookups; both return NULL for a relation that does not exist.
    unsafe {
        (
            cstr(pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid))),
            cstr(pg_sys::get_rel_name(oid)),
        )
    }
}

/// A relation's schema-qualified, quoted name, as PostgreSQL prints it in messages.
pub fn qualified_name(oid: pg_sys::Oid) -> String {
    // SAFETY: catalog lookups; both return NULL for a relation that does not exist.
    unsafe {
        let name = pg_sys::get_rel_name(oid);
        let namespace = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid));
        if name.is_null() || namespace.is_null() {
            return format!("with oid {}", oid.to_u32());
        }
        cstr(pg_sys::quote_qualified_identifier(namespace, name))
    }
}

/// An identifier quoted the way PostgreSQL quotes it (only when needed).
pub fn quote_ident(name: &str) -> String {
    let name = std::ffi::CString::new(name).expect("no NUL in an identifier");
    // SAFETY: quote_identifier returns its argument or a palloc'd quoted copy.
    unsafe { cstr(pg_sys::quote_identifier(name.as_ptr())) }
}

/// Copies a C string returned by a PostgreSQL function (empty for NULL).
pub fn cstr(ptr: *const std::ffi::c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: a NUL-terminated string from PostgreSQL.
    unsafe { std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned() }
}

/// Reads the catalog with the latest snapshot until dropped, as PostgreSQL reads its own
/// catalogs: a statement that waited for a lock held by a placement change (a worker being
/// added) sees the change, though its own snapshot was taken before.
pub(crate) struct LatestSnapshot;

impl LatestSnapshot {
    pub(crate) fn push() -> Self {
        // SAFETY: pushes a copy of a fresh snapshot; popped in drop (an error unwinding through
        // here pops it too; transaction abort would clean it up anyway).
        unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
        LatestSnapshot
    }
}

impl Drop for LatestSnapshot {
    fn drop(&mut self) {
        // SAFETY: pops what `push` pushed (an error may already have emptied the stack).
        unsafe {
            if pg_sys::ActiveSnapshotSet() {
                pg_sys::PopActiveSnapshot()
            }
        }
    }
}

/// Runs catalog reads as the bootstrap superuser until dropped, with `search_path` set to
/// `pg_catalog, pg_temp`: the caller's search path must not choose which functions and
/// operators run with superuser rights (a role could otherwise put its own `generate_series`
/// or `=` first). An error raised meanwhile is safe too: aborting the (sub)transaction restores
/// the user id and the setting.
pub struct AsSuperuser {
    user: pg_sys::Oid,
    context: i32,
    guc_level: i32,
}

impl AsSuperuser {
    pub fn enter() -> Self {
        let mut user = pg_sys::InvalidOid;
        let mut context = 0;
        // SAFETY: saves and switches this backend's current user and search path, as a
        // SECURITY DEFINER function with SET search_path does.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
            pg_sys::SetUserIdAndSecContext(
                pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
                context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            );
            let guc_level = pg_sys::NewGUCNestLevel();
            pg_sys::set_config_option(
                c"search_path".as_ptr(),
                c"pg_catalog, pg_temp".as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
            AsSuperuser {
                user,
                context,
                guc_level,
            }
        }
    }
}

impl Drop for AsSuperuser {
    fn drop(&mut self) {
        // SAFETY: restores what `enter` saved, in reverse order.
        unsafe {
            pg_sys::AtEOXact_GUC(true, self.guc_level);
            pg_sys::SetUserIdAndSecContext(self.user, self.context);
        }
    }
}
