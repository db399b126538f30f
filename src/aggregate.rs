//! Aggregation pushed to the shards: the grouped scan.
//!
//! At the planner's grouping step (`create_upper_paths_hook`, UPPERREL_GROUP_AGG) over one
//! sharded table, the whole `SELECT groups, aggregates FROM shard WHERE … GROUP BY … HAVING …`
//! runs on each shard when that is the same as running it once over the table:
//! - the grouping includes the shard key (a group's rows are all on one shard), or
//! - a filter pins the key to one value, or the table has a single shard, or
//! - the query is the inner, per-shard part of a split aggregate (`partial.rs`), whose
//!   partial rows the outer query combines on the coordinator.
//!
//! The scan (a CustomScan without a scan relation, `custom_scan_tlist` listing the group
//! expressions and aggregates) then returns the workers' rows; expressions over them that
//! cannot be pushed are computed on the coordinator. Encrypted group columns are grouped by
//! their blind-index tag, each group returning one of its envelopes.

use pgrx::prelude::*;

use crate::deparse::{list_nodes, make_list, Deparser, Sql};
use crate::encryption;
use crate::execution::{strings_to_list, KeyPin};
use crate::metadata::{self, cstr, quote_ident, ShardedTable};
use crate::scan::{self, Methods};

extension_sql_file!(
    "../sql/aggregates.sql",
    name = "aggregates",
    requires = ["catalog"]
);

static PATH_METHODS: Methods<pg_sys::CustomPathMethods> = Methods(pg_sys::CustomPathMethods {
    CustomName: c"pgshard aggregate".as_ptr(),
    PlanCustomPath: Some(plan_grouped),
    ReparameterizeCustomPathByChild: None,
});

/// Whether `expr` is the shard key column of the table scanned as `varno`.
///
/// # Safety
/// `expr` must be a valid expression.
pub unsafe fn is_key(expr: *mut pg_sys::Node, varno: u32, table: &ShardedTable) -> bool {
    let mut node = expr;
    while (*node).type_ == pg_sys::NodeTag::T_RelabelType {
        node = (*(node as *mut pg_sys::RelabelType)).arg as *mut pg_sys::Node;
    }
    if (*node).type_ != pg_sys::NodeTag::T_Var {
        return false;
    }
    let var = node as *mut pg_sys::Var;
    (*var).varno as u32 == varno && (*var).varattno == table.key_attnum && (*var).varlevelsup == 0
}

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
    if (*input_rel).reloptkind != pg_sys::RelOptKind::RELOPT_BASEREL || extra.is_null() {
        return;
    }
    let parse = (*root).parse;
    if !(*parse).groupingSets.is_null()
        || !(*root).hasHavingQual && (*parse).groupClause.is_null() && !(*parse).hasAggs
    {
        return;
    }
    let varno = (*input_rel).relid;
    let rte = *(*root).simple_rte_array.add(varno as usize);
    if (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION {
        return;
    }
    let Some(table) = metadata::sharded_table((*rte).relid) else {
        return;
    };
    let Some(grouped) = GroupedQuery::build(root, input_rel, output_rel, extra, varno, &table)
    else {
        return;
    };

    let path =
        pg_sys::palloc0(std::mem::size_of::<pg_sys::CustomPath>()) as *mut pg_sys::CustomPath;
    (*path).path.type_ = pg_sys::NodeTag::T_CustomPath;
    (*path).path.pathtype = pg_sys::NodeTag::T_CustomScan;
    (*path).path.parent = output_rel;
    (*path).path.pathtarget = (*output_rel).reltarget;
    let rows = list_nodes((*output_rel).pathlist)
        .first()
        .map(|p| (*(*p as *mut pg_sys::Path)).rows)
        .unwrap_or(1.0)
        .max(1.0);
    (*path).path.rows = rows;
    (*path).path.startup_cost = scan::REMOTE_STARTUP_COST;
    (*path).path.total_cost = scan::REMOTE_STARTUP_COST + rows * scan::REMOTE_ROW_COST;
    (*path).methods = &PATH_METHODS.0;
    (*path).custom_private = grouped.into_private();
    // The grouping is done on the shards or not at all: the coordinator's own paths would
    // aggregate the same rows after bringing them all over.
    (*output_rel).pathlist = std::ptr::null_mut();
    (*output_rel).partial_pathlist = std::ptr::null_mut();
    pg_sys::add_path(output_rel, path as *mut pg_sys::Path);
}

/// A grouped query over one shard, ready to plan.
struct GroupedQuery {
    relid: pg_sys::Oid,
    /// The query, with a marker where the shard's name goes.
    sql: Sql,
    marker: usize,
    pins: Vec<(KeyPin, *mut pg_sys::Node)>,
    /// What each returned column is (the scan's `custom_scan_tlist`).
    columns: Vec<*mut pg_sys::Node>,
    /// HAVING conditions that stay on the coordinator.
    local: Vec<*mut pg_sys::Node>,
    /// Without GROUP BY the query returns one row even over no rows, so it needs one shard.
    ungrouped: bool,
}

impl GroupedQuery {
    /// The grouped query, or `None` when it cannot run on the shards.
    unsafe fn build(
        root: *mut pg_sys::PlannerInfo,
        input_rel: *mut pg_sys::RelOptInfo,
        output_rel: *mut pg_sys::RelOptInfo,
        extra: *mut pg_sys::GroupPathExtraData,
        varno: u32,
        table: &ShardedTable,
    ) -> Option<Self> {
        let parse = (*root).parse;
        let relid = table.oid;
        let deparser = Deparser {
            varno,
            relid,
            excluded: 0,
        };

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
        let having = list_nodes((*extra).havingQual as *mut pg_sys::List);
        let flags = (pg_sys::PVC_INCLUDE_AGGREGATES | pg_sys::PVC_RECURSE_PLACEHOLDERS) as i32;
        for expr in exprs.iter().chain(having.iter()) {
            for item in list_nodes(pg_sys::pull_var_clause(*expr, flags)) {
                if contains(&columns, item) {
                    continue;
                }
                // A column outside the groups and the aggregates (functionally dependent on a
                // grouped primary key) is left to the coordinator.
                if (*item).type_ != pg_sys::NodeTag::T_Aggref {
                    return None;
                }
                columns.push(item);
            }
        }

        let partial = (*parse).queryId == crate::partial::PARTIAL_QUERY_ID;
        let key_grouped = columns[..groups].iter().any(|e| is_key(*e, varno, table));
        let clauses: Vec<*mut pg_sys::Node> = list_nodes((*input_rel).baserestrictinfo)
            .into_iter()
            .map(|r| (*(r as *mut pg_sys::RestrictInfo)).clause as *mut pg_sys::Node)
            .collect();
        let pins: Vec<_> = clauses
            .iter()
            .filter_map(|c| scan::key_pin(*c, varno, table))
            .collect();
        let pinned = pins.iter().any(|(p, _)| *p == KeyPin::Equals);
        if !(partial || key_grouped || pinned || table.shards.len() == 1) {
            return None;
        }

        let mut sql = Sql::default();
        sql.push("SELECT ");
        for (i, expr) in columns.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            if encryption::kind_of_type(pg_sys::exprType(*expr)).is_some() {
                // Grouped by the tag below; any envelope of the group decrypts to its value.
                let column = encrypted_column(*expr, varno, relid)?;
                sql.push(&format!("pg_catalog.min({column}::text COLLATE \"C\")"));
            } else {
                sql.append(deparser.deparse(*expr)?);
            }
        }
        sql.push(" FROM ");
        let marker = sql.values.len();
        sql.parts.push(String::new());
        for (i, clause) in clauses.iter().enumerate() {
            sql.push(if i == 0 { " WHERE " } else { " AND " });
            sql.append(deparser.deparse(*clause)?);
        }
        for (i, expr) in columns[..groups].iter().enumerate() {
            sql.push(if i == 0 { " GROUP BY " } else { ", " });
            if encryption::kind_of_type(pg_sys::exprType(*expr)).is_some() {
                let column = encrypted_column(*expr, varno, relid)?;
                sql.push(&format!(
                    "substring({column} FROM {} FOR {})",
                    pgshard_core::envelope::TAG_SQL_FROM,
                    pgshard_core::envelope::TAG_LEN
                ));
            } else {
                sql.push(&(i + 1).to_string());
            }
        }
        if groups == 0 && !(*parse).groupClause.is_null() {
            // Grouped by constants only: one group, or none over no rows.
            sql.push(" GROUP BY ()");
        }
        let mut local = Vec::new();
        let mut pushed_having = 0;
        for clause in having {
            match deparser.deparse(clause) {
                Some(condition) => {
                    sql.push(if pushed_having == 0 {
                        " HAVING "
                    } else {
                        " AND "
                    });
                    sql.append(condition);
                    pushed_having += 1;
                }
                None => local.push(clause),
            }
        }
        Some(GroupedQuery {
            relid,
            sql,
            marker,
            pins,
            columns,
            local,
            ungrouped: (*parse).groupClause.is_null(),
        })
    }

    /// The path's private list: [strings (relid, marker, pins, ungrouped, SQL parts), SQL
    /// values, pin values, columns, local conditions].
    unsafe fn into_private(self) -> *mut pg_sys::List {
        let header = [
            self.relid.to_u32().to_string(),
            self.marker.to_string(),
            crate::execution::encode_pins(self.pins.iter().map(|(p, _)| *p)),
            if self.ungrouped { "1" } else { "" }.to_string(),
        ];
        make_list([
            strings_to_list(header.into_iter().chain(self.sql.parts)),
            make_list(self.sql.values),
            make_list(self.pins.iter().map(|(_, v)| *v)),
            make_list(self.columns),
            make_list(self.local),
        ])
    }
}

/// The quoted name of an encrypted column read as a group (only plain columns are grouped on
/// the shards: their tag is in the stored envelope).
unsafe fn encrypted_column(
    expr: *mut pg_sys::Node,
    varno: u32,
    relid: pg_sys::Oid,
) -> Option<String> {
    if (*expr).type_ != pg_sys::NodeTag::T_Var {
        return None;
    }
    let var = expr as *mut pg_sys::Var;
    if (*var).varno as u32 != varno || (*var).varattno <= 0 || (*var).varlevelsup != 0 {
        return None;
    }
    Some(quote_ident(&cstr(pg_sys::get_attname(
        relid,
        (*var).varattno,
        false,
    ))))
}

unsafe fn contains(list: &[*mut pg_sys::Node], node: *mut pg_sys::Node) -> bool {
    list.iter().any(|n| pg_sys::equal((*n).cast(), node.cast()))
}

#[pg_guard]
unsafe extern "C-unwind" fn plan_grouped(
    _root: *mut pg_sys::PlannerInfo,
    _rel: *mut pg_sys::RelOptInfo,
    best_path: *mut pg_sys::CustomPath,
    tlist: *mut pg_sys::List,
    _clauses: *mut pg_sys::List,
    _custom_plans: *mut pg_sys::List,
) -> *mut pg_sys::Plan {
    let private = list_nodes((*best_path).custom_private);
    let strings = crate::execution::list_to_strings(private[0] as *mut pg_sys::List);
    let columns = list_nodes(private[3] as *mut pg_sys::List);
    let scan_tlist = make_list(columns.iter().enumerate().map(|(i, expr)| {
        pg_sys::makeTargetEntry((*expr).cast(), i as i16 + 1, std::ptr::null_mut(), false)
    }));
    let all_columns: Vec<i16> = (1..=columns.len() as i16).collect();
    // The scan's header (see scan.rs): relid, marker, pins, columns, at least one shard.
    let mut header = strings[..3].to_vec();
    header.push(crate::execution::encode_columns(&all_columns));
    header.extend(strings[3..].iter().cloned());

    let cscan =
        pg_sys::palloc0(std::mem::size_of::<pg_sys::CustomScan>()) as *mut pg_sys::CustomScan;
    (*cscan).scan.plan.type_ = pg_sys::NodeTag::T_CustomScan;
    (*cscan).scan.plan.targetlist = tlist;
    (*cscan).scan.plan.qual = private[4] as *mut pg_sys::List;
    (*cscan).scan.scanrelid = 0;
    (*cscan).custom_scan_tlist = scan_tlist;
    (*cscan).methods = scan::grouped_scan_methods();
    (*cscan).custom_private = strings_to_list(header);
    (*cscan).custom_exprs = make_list(
        list_nodes(private[1] as *mut pg_sys::List)
            .into_iter()
            .chain(list_nodes(private[2] as *mut pg_sys::List)),
    );
    cscan as *mut pg_sys::Plan
}
