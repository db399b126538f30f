//! The planner hooks.
//!
//! `set_rel_pathlist_hook` gives every scan of a sharded table to the pgshard scan (`scan.rs`).
//! The planner hook then checks the finished plan: the coordinator's copy of a sharded table
//! holds no rows, so any other access to it (a write not routed yet, a row lock, a scan some
//! other code path produced) would be a silently wrong answer and is refused instead.

use std::ffi::c_char;

use pgrx::prelude::*;

use crate::aggregate;
use crate::deparse::{list_ints, list_pointers};
use crate::error::PgShardError;
use crate::join;
use crate::metadata;
use crate::modify;
use crate::partial;
use crate::scan;

static mut PREVIOUS_PLANNER: pg_sys::planner_hook_type = None;
static mut PREVIOUS_SET_REL_PATHLIST: pg_sys::set_rel_pathlist_hook_type = None;
static mut PREVIOUS_UPPER_PATHS: pg_sys::create_upper_paths_hook_type = None;
static mut PREVIOUS_JOIN_PATHLIST: pg_sys::set_join_pathlist_hook_type = None;

/// Installs the hooks; called from `_PG_init` in the postmaster.
pub fn install() {
    // SAFETY: hooks are installed once, single-threaded, while the library loads.
    unsafe {
        PREVIOUS_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(pgshard_planner);
        PREVIOUS_SET_REL_PATHLIST = pg_sys::set_rel_pathlist_hook;
        pg_sys::set_rel_pathlist_hook = Some(pgshard_set_rel_pathlist);
        PREVIOUS_UPPER_PATHS = pg_sys::create_upper_paths_hook;
        pg_sys::create_upper_paths_hook = Some(pgshard_upper_paths);
        PREVIOUS_JOIN_PATHLIST = pg_sys::set_join_pathlist_hook;
        pg_sys::set_join_pathlist_hook = Some(pgshard_join_pathlist);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn pgshard_set_rel_pathlist(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    rti: pg_sys::Index,
    rte: *mut pg_sys::RangeTblEntry,
) {
    if let Some(previous) = PREVIOUS_SET_REL_PATHLIST {
        previous(root, rel, rti, rte);
    }
    scan::replace_paths(root, rel, rte);
}

#[pg_guard]
unsafe extern "C-unwind" fn pgshard_join_pathlist(
    root: *mut pg_sys::PlannerInfo,
    joinrel: *mut pg_sys::RelOptInfo,
    outerrel: *mut pg_sys::RelOptInfo,
    innerrel: *mut pg_sys::RelOptInfo,
    jointype: pg_sys::JoinType::Type,
    extra: *mut pg_sys::JoinPathExtraData,
) {
    if let Some(previous) = PREVIOUS_JOIN_PATHLIST {
        previous(root, joinrel, outerrel, innerrel, jointype, extra);
    }
    join::add_join_path(root, joinrel, outerrel, innerrel, jointype, extra);
}

#[pg_guard]
unsafe extern "C-unwind" fn pgshard_upper_paths(
    root: *mut pg_sys::PlannerInfo,
    stage: pg_sys::UpperRelationKind::Type,
    input_rel: *mut pg_sys::RelOptInfo,
    output_rel: *mut pg_sys::RelOptInfo,
    extra: *mut std::ffi::c_void,
) {
    if let Some(previous) = PREVIOUS_UPPER_PATHS {
        previous(root, stage, input_rel, output_rel, extra);
    }
    if stage == pg_sys::UpperRelationKind::UPPERREL_GROUP_AGG {
        aggregate::add_grouped_path(root, input_rel, output_rel, extra.cast());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn pgshard_planner(
    parse: *mut pg_sys::Query,
    query_string: *const c_char,
    cursor_options: i32,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    let target = modify::sharded_target(parse);
    let mut conflict = None;
    if let Some((rti, relid)) = target {
        if (*parse).commandType != pg_sys::CmdType::CMD_INSERT {
            return modify::plan_update_delete(parse, rti, relid);
        }
        conflict = Some(modify::on_conflict_sql(parse, rti, relid));
    }
    if metadata::any_sharded() {
        partial::split_aggregates(parse);
    }
    // (See utility.rs for why the previous hook and the standard planner are two calls.)
    let planned = match PREVIOUS_PLANNER {
        Some(previous) => previous(parse, query_string, cursor_options, bound_params),
        None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
    };
    if let (Some((_, relid)), Some(conflict)) = (target, conflict) {
        modify::route_insert(planned, relid, conflict);
    }
    let rtable = list_pointers((*planned).rtable);
    let sharded_rti = |rti: u32| -> Option<pg_sys::Oid> {
        let rte = *rtable.get((rti as usize).checked_sub(1)?)? as *mut pg_sys::RangeTblEntry;
        ((*rte).rtekind == pg_sys::RTEKind::RTE_RELATION)
            .then(|| metadata::first_sharded([(*rte).relid]))
            .flatten()
    };
    // Cheap exit for the common case of a plan without sharded tables.
    if !(1..=rtable.len() as u32).any(|rti| sharded_rti(rti).is_some()) {
        return planned;
    }
    for rowmark in list_pointers((*planned).rowMarks) {
        let rowmark = rowmark as *mut pg_sys::PlanRowMark;
        if let Some(table) = sharded_rti((*rowmark).rti) {
            refuse_sharded(table, "SELECT FOR UPDATE/SHARE");
        }
    }
    let mut plans = vec![(*planned).planTree];
    plans.extend(
        list_pointers((*planned).subplans)
            .into_iter()
            .map(|p| p as *mut pg_sys::Plan),
    );
    while let Some(plan) = plans.pop() {
        if plan.is_null() {
            continue;
        }
        check_plan_node(plan, &sharded_rti);
        plans.extend(children(plan));
    }
    planned
}

/// Refuses a plan node that would touch the coordinator's (empty) copy of a sharded table.
unsafe fn check_plan_node(
    plan: *mut pg_sys::Plan,
    sharded_rti: &impl Fn(u32) -> Option<pg_sys::Oid>,
) {
    use pg_sys::NodeTag::*;
    match (*plan).type_ {
        T_SeqScan | T_SampleScan | T_IndexScan | T_IndexOnlyScan | T_BitmapHeapScan | T_TidScan
        | T_TidRangeScan => {
            if let Some(table) = sharded_rti((*(plan as *mut pg_sys::Scan)).scanrelid) {
                refuse_sharded(table, "this kind of scan");
            }
        }
        T_CustomScan if !scan::is_pgshard_scan(plan) && !modify::is_pgshard_modify(plan) => {
            if let Some(table) = sharded_rti((*(plan as *mut pg_sys::Scan)).scanrelid) {
                refuse_sharded(table, "another extension's scan");
            }
        }
        T_ModifyTable => {
            let modify = plan as *mut pg_sys::ModifyTable;
            for rti in list_ints((*modify).resultRelations) {
                if let Some(table) = sharded_rti(rti) {
                    let what = match (*modify).operation {
                        pg_sys::CmdType::CMD_INSERT => "INSERT",
                        pg_sys::CmdType::CMD_UPDATE => "UPDATE",
                        pg_sys::CmdType::CMD_DELETE => "DELETE",
                        _ => "MERGE",
                    };
                    refuse_sharded(table, what);
                }
            }
        }
        _ => {}
    }
}

/// The child plans of a plan node.
unsafe fn children(plan: *mut pg_sys::Plan) -> Vec<*mut pg_sys::Plan> {
    use pg_sys::NodeTag::*;
    let mut out = vec![(*plan).lefttree, (*plan).righttree];
    let list = match (*plan).type_ {
        T_Append => (*(plan as *mut pg_sys::Append)).appendplans,
        T_MergeAppend => (*(plan as *mut pg_sys::MergeAppend)).mergeplans,
        T_BitmapAnd => (*(plan as *mut pg_sys::BitmapAnd)).bitmapplans,
        T_BitmapOr => (*(plan as *mut pg_sys::BitmapOr)).bitmapplans,
        T_CustomScan => (*(plan as *mut pg_sys::CustomScan)).custom_plans,
        T_SubqueryScan => {
            out.push((*(plan as *mut pg_sys::SubqueryScan)).subplan);
            std::ptr::null_mut()
        }
        _ => std::ptr::null_mut(),
    };
    out.extend(
        list_pointers(list)
            .into_iter()
            .map(|p| p as *mut pg_sys::Plan),
    );
    out
}

/// Raises the "not supported on sharded table" error.
pub fn refuse_sharded(table: pg_sys::Oid, what: &str) -> ! {
    PgShardError::new(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!(
            "{what} is not supported on sharded table {} yet",
            metadata::qualified_name(table)
        ),
    )
    .hint("See docs/routing.md for what pgshard routes to the shards.")
    .raise()
}
