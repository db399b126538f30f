//! The coordinator's own table of a sharded table (its "shell"): it keeps the table's name,
//! columns and constraints for PostgreSQL and for users, and never holds a row.
//!
//! `shard_table` gives the shell the table access method `pgshard_shell`. It is heap in every
//! way but two:
//! - In a session where pgshard was not preloaded (someone removed it from
//!   shared_preload_libraries), no hook replaces scans and writes of sharded tables, so reading
//!   the shell would silently return no rows and writing it would lose them. Opening a shell
//!   loads this library (the access method's handler lives here), and then every scan, index
//!   fetch and insert of the shell fails with an error saying why.
//! - Index builds read tables through `heap_getnext`, which accepts only heap's own method table;
//!   a shell is always empty, so its index builds read nothing.

use pgrx::prelude::*;

use crate::error::PgShardError;
use crate::metadata::qualified_name;

extension_sql!(
    r#"
CREATE FUNCTION pgshard.shell_am_handler(internal) RETURNS table_am_handler
LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_shell_am_handler';
COMMENT ON FUNCTION pgshard.shell_am_handler(internal) IS
  'Access method of the coordinator tables of sharded tables (pgshard_shell)';
CREATE ACCESS METHOD pgshard_shell TYPE TABLE HANDLER pgshard.shell_am_handler;
"#,
    name = "shell_access_method",
    requires = ["catalog"]
);

/// The access method's name, as `ALTER TABLE … SET ACCESS METHOD` takes it.
pub const ACCESS_METHOD: &str = "pgshard_shell";

/// The method table: heap's, with the overrides above. Built once per backend.
static mut SHELL_METHODS: Option<pg_sys::TableAmRoutine> = None;

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_pgshard_shell_am_handler() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// The table access method handler (`pgshard.shell_am_handler`).
///
/// # Safety
/// Called by PostgreSQL's function manager.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn pgshard_shell_am_handler(
    _fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: backends are single-threaded; the table is written once, before any use.
    let methods = &mut *std::ptr::addr_of_mut!(SHELL_METHODS);
    let routine = methods.get_or_insert_with(|| {
        let mut routine = *pg_sys::GetHeapamTableAmRoutine();
        routine.index_build_range_scan = Some(index_build_range_scan);
        routine.index_validate_scan = Some(index_validate_scan);
        if !crate::loaded_at_startup() {
            routine.scan_begin = Some(scan_begin_refused);
            routine.index_fetch_begin = Some(index_fetch_begin_refused);
            routine.tuple_insert = Some(tuple_insert_refused);
            routine.tuple_insert_speculative = Some(tuple_insert_speculative_refused);
            routine.multi_insert = Some(multi_insert_refused);
        }
        routine
    });
    pg_sys::Datum::from(routine as *mut pg_sys::TableAmRoutine)
}

/// The error of every refused access: the session cannot reach the table's rows.
unsafe fn refuse(rel: pg_sys::Relation) -> ! {
    PgShardError::new(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!(
            "sharded table {} cannot be read or written: pgshard is not loaded in this session",
            qualified_name((*rel).rd_id)
        ),
    )
    .hint(
        "The rows live on the workers and only pgshard reaches them. Add pgshard to \
         shared_preload_libraries in postgresql.conf and restart the server.",
    )
    .raise()
}

#[pg_guard]
unsafe extern "C-unwind" fn scan_begin_refused(
    rel: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    nkeys: i32,
    key: *mut pg_sys::ScanKeyData,
    pscan: pg_sys::ParallelTableScanDesc,
    flags: u32,
) -> pg_sys::TableScanDesc {
    // ANALYZE (also autovacuum's) reads the shell's empty heap; that misleads nobody.
    if flags & pg_sys::ScanOptions::SO_TYPE_ANALYZE == 0 {
        refuse(rel)
    }
    let heap = &*pg_sys::GetHeapamTableAmRoutine();
    heap.scan_begin.expect("heap scans")(rel, snapshot, nkeys, key, pscan, flags)
}

#[pg_guard]
unsafe extern "C-unwind" fn index_fetch_begin_refused(
    rel: pg_sys::Relation,
) -> *mut pg_sys::IndexFetchTableData {
    refuse(rel)
}

#[pg_guard]
unsafe extern "C-unwind" fn tuple_insert_refused(
    rel: pg_sys::Relation,
    _slot: *mut pg_sys::TupleTableSlot,
    _cid: pg_sys::CommandId,
    _options: i32,
    _bistate: *mut pg_sys::BulkInsertStateData,
) {
    refuse(rel)
}

#[pg_guard]
unsafe extern "C-unwind" fn tuple_insert_speculative_refused(
    rel: pg_sys::Relation,
    _slot: *mut pg_sys::TupleTableSlot,
    _cid: pg_sys::CommandId,
    _options: i32,
    _bistate: *mut pg_sys::BulkInsertStateData,
    _token: u32,
) {
    refuse(rel)
}

#[pg_guard]
unsafe extern "C-unwind" fn multi_insert_refused(
    rel: pg_sys::Relation,
    _slots: *mut *mut pg_sys::TupleTableSlot,
    _count: i32,
    _cid: pg_sys::CommandId,
    _options: i32,
    _bistate: *mut pg_sys::BulkInsertStateData,
) {
    refuse(rel)
}

/// Whether the shell's heap has no block at all (true after `shard_table`, which empties it,
/// and whenever it is rewritten).
unsafe fn shell_is_empty(rel: pg_sys::Relation) -> bool {
    pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) == 0
}

/// An index on a shell indexes nothing; a shell that holds blocks is refused rather than
/// indexed wrongly.
#[pg_guard]
unsafe extern "C-unwind" fn index_build_range_scan(
    table_rel: pg_sys::Relation,
    _index_rel: pg_sys::Relation,
    _index_info: *mut pg_sys::IndexInfo,
    _allow_sync: bool,
    _anyvisible: bool,
    _progress: bool,
    _start_blockno: pg_sys::BlockNumber,
    _numblocks: pg_sys::BlockNumber,
    _callback: pg_sys::IndexBuildCallback,
    _callback_state: *mut std::ffi::c_void,
    scan: pg_sys::TableScanDesc,
) -> f64 {
    if !scan.is_null() {
        let methods = &*(*(*scan).rs_rd).rd_tableam;
        methods.scan_end.expect("heap scans")(scan);
    }
    if !shell_is_empty(table_rel) {
        not_empty(table_rel)
    }
    0.0
}

#[pg_guard]
unsafe extern "C-unwind" fn index_validate_scan(
    table_rel: pg_sys::Relation,
    _index_rel: pg_sys::Relation,
    _index_info: *mut pg_sys::IndexInfo,
    _snapshot: pg_sys::Snapshot,
    _state: *mut pg_sys::ValidateIndexState,
) {
    if !shell_is_empty(table_rel) {
        not_empty(table_rel)
    }
}

unsafe fn not_empty(rel: pg_sys::Relation) -> ! {
    PgShardError::new(
        PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
        format!(
            "the coordinator table of sharded table {} holds data",
            qualified_name((*rel).rd_id)
        ),
    )
    .hint("pgshard never writes rows there, and they are not part of the sharded table; please report how they got there.")
    .raise()
}
