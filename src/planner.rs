//! The planner hook. For now it guards: a statement that touches a sharded table is refused
//! with a clear error, because the coordinator's copy of a sharded table holds no rows and
//! planning it locally would return a silently wrong (empty) answer. Routing replaces the
//! refusal as it lands.

use std::ffi::c_char;

use pgrx::prelude::*;

use crate::error::PgShardError;
use crate::metadata;

static mut PREVIOUS_PLANNER: pg_sys::planner_hook_type = None;

/// Installs the hook; called from `_PG_init` in the postmaster.
pub fn install() {
    // SAFETY: hooks are installed once, single-threaded, while the library loads.
    unsafe {
        PREVIOUS_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(pgshard_planner);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn pgshard_planner(
    parse: *mut pg_sys::Query,
    query_string: *const c_char,
    cursor_options: i32,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    // (See utility.rs for why the previous hook and the standard planner are two calls.)
    let planned = match PREVIOUS_PLANNER {
        Some(previous) => previous(parse, query_string, cursor_options, bound_params),
        None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
    };
    // The final range table holds the relations of every subquery, CTE, sublink and expanded
    // view. (relationOids would not do: it also lists regclass constants such as 'tab'::regclass.)
    if let Some(table) = metadata::first_sharded(relations_in_range_table((*planned).rtable)) {
        refuse_sharded(table, "this statement");
    }
    planned
}

/// The oids of the plain relations in a flattened range table.
unsafe fn relations_in_range_table(rtable: *mut pg_sys::List) -> Vec<pg_sys::Oid> {
    if rtable.is_null() {
        return Vec::new();
    }
    let list = &*rtable;
    (0..list.length as usize)
        .map(|i| (*list.elements.add(i)).ptr_value as *mut pg_sys::RangeTblEntry)
        .filter(|rte| (**rte).rtekind == pg_sys::RTEKind::RTE_RELATION)
        .map(|rte| (*rte).relid)
        .collect()
}

/// Raises the "not supported on sharded table" error.
pub fn refuse_sharded(table: pg_sys::Oid, what: &str) -> ! {
    PgShardError::new(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("{what} is not supported on sharded table {} yet", relation_name(table)),
    )
    .hint("pgshard does not route statements on sharded tables yet; see docs/routing.md for what is supported.")
    .raise()
}

fn relation_name(oid: pg_sys::Oid) -> String {
    // SAFETY: catalog lookups for a relation named by a plan or lookup in this transaction.
    unsafe {
        let namespace = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid));
        let name = pg_sys::get_rel_name(oid);
        if name.is_null() || namespace.is_null() {
            return format!("with oid {}", oid.to_u32());
        }
        let qualified = pg_sys::quote_qualified_identifier(namespace, name);
        std::ffi::CStr::from_ptr(qualified)
            .to_string_lossy()
            .into_owned()
    }
}
