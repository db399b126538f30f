//! The utility hook. COPY with a sharded or reference table is routed (`copy.rs`). TRUNCATE and
//! DROP TABLE on one would act on the coordinator's empty table only (and DROP TABLE would strand
//! the shards), so they are refused until they are routed to the shards.

use std::ffi::c_char;

use pgrx::prelude::*;

use crate::metadata;
use crate::planner::refuse_sharded;

static mut PREVIOUS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

/// Installs the hook; called from `_PG_init` in the postmaster.
pub fn install() {
    // SAFETY: hooks are installed once, single-threaded, while the library loads.
    unsafe {
        PREVIOUS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(pgshard_utility);
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn pgshard_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let mut pstmt = pstmt;
    let mut read_only_tree = read_only_tree;
    let statement = (*pstmt).utilityStmt;
    if !statement.is_null() && (*statement).type_ == pg_sys::NodeTag::T_CopyStmt {
        let copy = statement as *mut pg_sys::CopyStmt;
        if let Some(relid) = crate::copy::distributed_target(copy) {
            if (*copy).is_from {
                let processed = crate::copy::copy_from(copy, query_string);
                if !qc.is_null() {
                    (*qc).commandTag = pg_sys::CommandTag::CMDTAG_COPY;
                    (*qc).nprocessed = processed;
                }
                return;
            }
            // COPY … TO runs as COPY (SELECT …) TO, on a copy of the statement.
            pstmt = pg_sys::copyObjectImpl(pstmt.cast()).cast();
            (*pstmt).utilityStmt = crate::copy::as_query_copy(copy, relid).cast();
            read_only_tree = false;
        }
    }
    guard((*pstmt).utilityStmt);
    // Two calls rather than one function pointer: pgrx exposes standard_ProcessUtility as a
    // guarded Rust function, not as a value of the hook's C-ABI type.
    match PREVIOUS_UTILITY {
        Some(previous) => previous(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
        None => pg_sys::standard_ProcessUtility(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
    }
}

unsafe fn guard(statement: *mut pg_sys::Node) {
    if statement.is_null() {
        return;
    }
    let (what, relations): (&str, Vec<*mut pg_sys::RangeVar>) = match (*statement).type_ {
        pg_sys::NodeTag::T_TruncateStmt => {
            let truncate = statement as *mut pg_sys::TruncateStmt;
            let list = (*truncate).relations;
            let relations = if list.is_null() {
                Vec::new()
            } else {
                (0..(*list).length as usize)
                    .map(|i| (*(*list).elements.add(i)).ptr_value as *mut pg_sys::RangeVar)
                    .collect()
            };
            ("TRUNCATE", relations)
        }
        pg_sys::NodeTag::T_DropStmt => {
            let drop = statement as *mut pg_sys::DropStmt;
            if (*drop).removeType != pg_sys::ObjectType::OBJECT_TABLE {
                return;
            }
            // Each object is a List of String names (schema-qualified or not).
            let relations = crate::deparse::list_pointers((*drop).objects)
                .into_iter()
                .map(|names| pg_sys::makeRangeVarFromNameList(names as *mut pg_sys::List))
                .collect();
            ("DROP TABLE", relations)
        }
        _ => return,
    };
    let oids = relations
        .into_iter()
        .filter(|relation| !relation.is_null())
        .map(|relation| {
            pg_sys::RangeVarGetRelidExtended(
                relation,
                pg_sys::NoLock as i32,
                pg_sys::RVROption::RVR_MISSING_OK,
                None,
                std::ptr::null_mut(),
            )
        })
        .filter(|oid| *oid != pg_sys::InvalidOid);
    if let Some(table) = metadata::first_sharded(oids) {
        refuse_sharded(table, what);
    }
}
