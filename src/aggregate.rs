//! Aggregation pushed to the shards: the grouped scan.
//!
//! At the planner's grouping step (`create_upper_paths_hook`, UPPERREL_GROUP_AGG) over one
//! sharded table or a pushed join of co-located ones (`join.rs`), the whole
//! `SELECT groups, aggregates FROM shard(s) WHERE … GROUP BY … HAVING …` runs on each shard (pair)
//! when that is the same as running it once over the table(s):
//! - the grouping includes the shard key (a group's rows are all on one shard; over a join,
//!   the key of a side whose rows the join keeps), or
//! - a filter pins the key to one value, or the table has a single shard, or
//! - the query is the inner, per-shard part of a split aggregate (`partial.rs`), whose
//!   partial rows the outer query combines on the coordinator.
//!
//! The scan (a CustomScan without a scan relation, `custom_scan_tlist` listing the group
//! expressions and aggregates) then returns the workers' rows; expressions over them that
//! cannot be pushed are computed on the coordinator. Encrypted group columns are grouped by
//! their blind-index tag, each group returning one of its envelopes.

use pgrx::prelude::*;

use std::rc::Rc;

use crate::deparse::{list_nodes, Deparser, Sql};
use crate::encryption;
use crate::execution::KeyPin;
use crate::metadata::ShardedTable;
use crate::pushed::{Kind, PushedQuery};
use crate::scan;

extension_sql_file!(
    "../sql/aggregates.sql",
    name = "aggregates",
    requires = ["catalog"]
);

/// `create_upper_paths_hook` body for the grouping step.
///
/// # Safety
/// Called by the planner with valid arguments.
pub unsafe fn add_grouped_path(
    root: *mut pg_sys::PlannerInfo,
    input_rel: *mut pg_sys::RelOptInfo,
    output_rel: *mut pg_sys::RelOptInfo,
    extra: *mut pg_sys::GroupPathExtraData,
) {
    let parse = (*root).parse;
    if extra.is_null()
        || !(*parse).groupingSets.is_null()
        || !(*root).hasHavingQual && (*parse).groupClause.is_null() && !(*parse).hasAggs
    {
        return;
    }
    let source = match (*input_rel).reloptkind {
        pg_sys::RelOptKind::RELOPT_BASEREL => table_source(root, input_rel),
        pg_sys::RelOptKind::RELOPT_JOINREL => join_source(root, input_rel),
        _ => None,
    };
    let Some(query) = source.and_then(|source| grouped_query(root, output_rel, extra, source))
    else {
        return;
    };
    let rows = list_nodes((*output_rel).pathlist)
        .first()
        .map(|p| (*(*p as *mut pg_sys::Path)).rows)
        .unwrap_or(1.0);
    let path = query.into_path(output_rel, rows);
    // The grouping is done on the shards or not at all: the coordinator's own paths would
    // aggregate the same rows after bringing them all over.
    (*output_rel).pathlist = std::ptr::null_mut();
    (*output_rel).partial_pathlist = std::ptr::null_mut();
    pg_sys::add_path(output_rel, path);
}

/// What the grouping reads: one sharded table, or a pushed join of co-located ones.
struct Source {
    deparser: Deparser,
    /// FROM … WHERE …, with the shard-name holes, tables and key pins.
    body: PushedQuery,
    /// Keys a group of which is on one shard (group): grouping by one pushes the whole query.
    keys: Vec<(u32, Rc<ShardedTable>)>,
    single_shard: bool,
}

unsafe fn table_source(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
) -> Option<Source> {
    let varno = (*rel).relid;
    let table = scan::sharded_table_at(root, varno)?;
    let deparser = Deparser::table(varno, table.oid);
    let mut body = PushedQuery::new(Kind::Aggregate, vec![table.oid]);
    body.sql.push(" FROM ");
    body.push_shard_name(0);
    let clauses = list_nodes((*rel).baserestrictinfo)
        .into_iter()
        .map(|r| (*(r as *mut pg_sys::RestrictInfo)).clause as *mut pg_sys::Node);
    for (i, clause) in clauses.enumerate() {
        body.sql.push(if i == 0 { " WHERE " } else { " AND " });
        body.sql.append(deparser.deparse(clause)?);
        body.pins.extend(scan::key_pin(clause, varno, &table));
    }
    Some(Source {
        deparser,
        body,
        single_shard: crate::metadata::one_task([&*table]),
        keys: vec![(varno, table)],
    })
}

unsafe fn join_source(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
) -> Option<Source> {
    let paths = list_nodes((*rel).pathlist);
    if let Some(inner_join) = paths
        .iter()
        .find_map(|p| crate::pushed::pushed_inner_join(*p as *mut pg_sys::Path))
    {
        // An inner join keeps every side's rows: grouping by any key keeps groups together.
        let tables = crate::join::tables_of_inner_join(root, &inner_join)?;
        let (body, deparser) = crate::join::inner_join_body(&tables, &inner_join.clauses)?;
        return Some(Source {
            deparser,
            single_shard: crate::metadata::one_task(tables.iter().map(|(_, t)| &**t)),
            body,
            keys: tables,
        });
    }
    let info = paths
        .into_iter()
        .find_map(|p| crate::pushed::pushed_join(p as *mut pg_sys::Path))?;
    let join = crate::join::body_of(root, rel, info)?;
    Some(Source {
        deparser: join.deparser,
        single_shard: join.one_task,
        body: join.query,
        keys: join.preserved,
    })
}

/// The grouped query for one shard (group), or `None` when it cannot run on the shards.
unsafe fn grouped_query(
    root: *mut pg_sys::PlannerInfo,
    output_rel: *mut pg_sys::RelOptInfo,
    extra: *mut pg_sys::GroupPathExtraData,
    source: Source,
) -> Option<PushedQuery> {
    let parse = (*root).parse;
    let deparser = &source.deparser;

    // Columns: the group expressions, then the aggregates and columns the target and
    // HAVING read.
    let target = (*output_rel).reltarget;
    let exprs = list_nodes((*target).exprs);
    let group_refs: Vec<u32> = list_nodes((*parse).groupClause)
        .into_iter()
        .map(|c| (*(c as *mut pg_sys::SortGroupClause)).tleSortGroupRef)
        .collect();
    let mut columns: Vec<*mut pg_sys::Node> = Vec::new();
    for (i, expr) in exprs.iter().enumerate() {
        let group_ref = if (*target).sortgrouprefs.is_null() {
            0
        } else {
            *(*target).sortgrouprefs.add(i)
        };
        if group_ref != 0 && group_refs.contains(&group_ref) && !contains(&columns, *expr) {
            columns.push(*expr);
        }
    }
    let groups = columns.len();
    // A group expression that reads no column (`GROUP BY current_date`, a parameter) would be a
    // value computed on the coordinator and a column of the scan at once, which the scan's
    // plan references cannot tell apart: such queries are grouped on the coordinator.
    if columns.iter().any(|c| {
        (**c).type_ != pg_sys::NodeTag::T_Const && crate::deparse::coordinator_evaluable(*c)
    }) {
        return None;
    }
    let having = list_nodes((*extra).havingQual as *mut pg_sys::List);
    let mut found = Aggregates::outside(columns.clone());
    for expr in exprs.iter().chain(having.iter()) {
        found.find_in(*expr);
    }
    // A column outside the groups and the aggregates (functionally dependent on a grouped
    // primary key) is left to the coordinator.
    if found.loose_column {
        return None;
    }
    for aggregate in found.aggregates {
        if !contains(&columns, aggregate) {
            columns.push(aggregate);
        }
    }

    let partial = (*parse).queryId == crate::partial::PARTIAL_QUERY_ID;
    let key_grouped = columns[..groups].iter().any(|e| {
        source
            .keys
            .iter()
            .any(|(varno, table)| scan::is_key(*e, *varno, table))
    });
    let pinned = source.body.pins.iter().any(|(p, _)| *p == KeyPin::Equals);
    if !(partial || key_grouped || pinned || source.single_shard) {
        return None;
    }

    let mut query = PushedQuery::new(Kind::Aggregate, Vec::new());
    query.sql.push("SELECT ");
    for (i, expr) in columns.iter().enumerate() {
        if i > 0 {
            query.sql.push(", ");
        }
        if encryption::kind_of_type(pg_sys::exprType(*expr)).is_some() {
            // Grouped by the tag below; any envelope of the group decrypts to its value.
            query.sql.push("pg_catalog.min((");
            query.sql.append(encrypted_column(deparser, *expr)?);
            query.sql.push(")::text COLLATE \"C\")");
        } else {
            query.sql.append(deparser.deparse(*expr)?);
        }
    }
    query.append(source.body);
    for (i, expr) in columns[..groups].iter().enumerate() {
        query.sql.push(if i == 0 { " GROUP BY " } else { ", " });
        if encryption::kind_of_type(pg_sys::exprType(*expr)).is_some() {
            query.sql.push("substring(");
            query.sql.append(encrypted_column(deparser, *expr)?);
            query.sql.push(&format!(
                " FROM {} FOR {})",
                pgshard_core::envelope::TAG_SQL_FROM,
                pgshard_core::envelope::TAG_LEN
            ));
        } else {
            query.sql.push(&(i + 1).to_string());
        }
    }
    if groups == 0 && !(*parse).groupClause.is_null() {
        // Group expressions always reach the grouping target; if one did not, grouping on the
        // shards could not be written.
        return None;
    }
    let mut pushed_having = 0;
    for clause in having {
        match deparser.deparse(clause) {
            Some(condition) => {
                query.sql.push(if pushed_having == 0 {
                    " HAVING "
                } else {
                    " AND "
                });
                query.sql.append(condition);
                pushed_having += 1;
            }
            None => query.local.push(clause),
        }
    }
    // Final groups (pushed whole): each shard's first groups by the query's order hold the
    // global first ones, when nothing between the grouping and the LIMIT drops or adds rows.
    let final_groups = !partial
        && query.local.is_empty()
        && !(*parse).hasWindowFuncs
        && !(*parse).hasTargetSRFs
        && (*parse).distinctClause.is_null()
        && (*parse).setOperations.is_null()
        && (*parse).rowMarks.is_null();
    if final_groups {
        if let Some(tail) = scan::order_and_limit(root, deparser) {
            query.sql.append(tail);
        }
    }
    query.columns = columns;
    query.at_least_one = (*parse).groupClause.is_null();
    Some(query)
}

/// An encrypted column read as a group (only plain columns are grouped on the shards: their
/// tag is in the stored envelope).
unsafe fn encrypted_column(deparser: &Deparser, expr: *mut pg_sys::Node) -> Option<Sql> {
    if (*expr).type_ != pg_sys::NodeTag::T_Var {
        return None;
    }
    deparser.deparse(expr)
}

/// The aggregates (of this query level) that expressions read outside their group
/// expressions, and whether they read a column outside both.
pub struct Aggregates {
    groups: Vec<*mut pg_sys::Node>,
    pub aggregates: Vec<*mut pg_sys::Node>,
    /// A column read outside the group expressions and the aggregates.
    pub loose_column: bool,
}

impl Aggregates {
    pub fn outside(groups: Vec<*mut pg_sys::Node>) -> Self {
        Aggregates {
            groups,
            aggregates: Vec::new(),
            loose_column: false,
        }
    }

    /// Collects the aggregates of `node`, not looking inside group expressions.
    ///
    /// # Safety
    /// `node` must be NULL or a valid expression.
    pub unsafe fn find_in(&mut self, node: *mut pg_sys::Node) {
        find_aggregates(node, self);
    }
}

unsafe fn find_aggregates(node: *mut pg_sys::Node, found: &mut Aggregates) {
    #[pg_guard]
    unsafe extern "C-unwind" fn walk(
        node: *mut pg_sys::Node,
        context: *mut std::ffi::c_void,
    ) -> bool {
        if node.is_null() {
            return false;
        }
        let found = &mut *(context as *mut Aggregates);
        if contains(&found.groups, node) {
            return false;
        }
        match (*node).type_ {
            pg_sys::NodeTag::T_Aggref => {
                found.aggregates.push(node);
                false
            }
            pg_sys::NodeTag::T_Var | pg_sys::NodeTag::T_PlaceHolderVar => {
                found.loose_column = true;
                false
            }
            _ => pg_sys::expression_tree_walker(node, Some(walk), context),
        }
    }
    walk(node, found as *mut Aggregates as *mut std::ffi::c_void);
}

unsafe fn contains(list: &[*mut pg_sys::Node], node: *mut pg_sys::Node) -> bool {
    list.iter().any(|n| pg_sys::equal((*n).cast(), node.cast()))
}
