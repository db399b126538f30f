//! Splitting aggregates over a sharded table into per-shard partial aggregates and a
//! coordinator step that combines them (the recipes are in `pgshard_core::combine`).
//!
//! Before planning, a query such as
//!
//! ```sql
//! SELECT g, avg(x) FROM t WHERE w GROUP BY g HAVING count(*) > 1 ORDER BY 2
//! ```
//!
//! whose grouping does not include the shard key becomes
//!
//! ```sql
//! SELECT p.g, pgshard.avg_of(sum(p.s), pgshard.sum_counts(p.n)) FROM
//!   (SELECT g, sum(x) AS s, count(x) AS n, count(*) AS c FROM t WHERE w GROUP BY g) p
//! GROUP BY p.g HAVING pgshard.sum_counts(p.c) > 1 ORDER BY 2
//! ```
//!
//! The inner query is a correct query by itself, and its groups combine into the outer query's
//! however its rows are split. It is marked (`PARTIAL_QUERY_ID`) so that the grouped scan
//! (`aggregate.rs`) may run it on every shard: a group with rows on several shards then gives
//! several partial rows, which the outer query combines on the coordinator. If the grouped scan
//! cannot push it (a filter or an expression that must run on the coordinator), PostgreSQL
//! computes it on the coordinator and the answer is the same.
//!
//! DISTINCT aggregates (`count(DISTINCT x)`) are split by grouping the inner query by `x` too;
//! the outer query applies the aggregate itself to the distinct values. GROUP BY without
//! aggregates and `SELECT DISTINCT` are split alike: each shard returns its distinct groups and
//! the outer query removes the duplicates across shards.

use std::ffi::c_void;
use std::rc::Rc;

use pgrx::prelude::*;
use pgshard_core::combine::{self, ArgType, Recipe};

use crate::deparse::{list_nodes, make_list};
use crate::execution::palloc_string;
use crate::execution::KeyPin;
use crate::metadata::{self, cstr, ShardedTable};

/// Marks an inner query whose grouping may run per shard (ASCII "pgshard" and 1).
pub const PARTIAL_QUERY_ID: u64 = 0x7067_7368_6172_6401;

/// Splits every qualifying query of the tree, subqueries, CTEs and sublinks included.
///
/// # Safety
/// `query` must be an analysed query the planner is about to plan (it may be modified).
pub unsafe fn split_aggregates(query: *mut pg_sys::Query) {
    pg_sys::query_tree_walker(query, Some(visit), std::ptr::null_mut(), 0);
    if let Some(split) = plan_split(query) {
        split.apply(query);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn visit(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    if (*node).type_ == pg_sys::NodeTag::T_Query {
        split_aggregates(node as *mut pg_sys::Query);
        return false;
    }
    pg_sys::expression_tree_walker(node, Some(visit), context)
}

/// One aggregate of the query and how it is computed after the split.
struct SplitAggregate {
    original: *mut pg_sys::Aggref,
    /// The coordinator's expression, with `Var`s of the inner query's columns.
    replacement: *mut pg_sys::Node,
}

/// A decided split: the inner query's columns and the outer query's replacements.
struct Split {
    /// Inner columns: (expression over the table, column name, group ref or 0).
    columns: Vec<(*mut pg_sys::Node, String, u32)>,
    /// Inner GROUP BY clauses (the query's, plus one for a DISTINCT aggregate's argument).
    group_clauses: Vec<*mut pg_sys::SortGroupClause>,
    /// Group expressions of the query and their inner column (0-based).
    groups: Vec<(*mut pg_sys::Node, usize)>,
    aggregates: Vec<SplitAggregate>,
}

/// The split of `query`, or `None` when it does not qualify: a SELECT with aggregates over one
/// sharded table, not grouped by its shard key or pinned to one key (those are pushed whole),
/// whose every aggregate has an exact recipe.
unsafe fn plan_split(query: *mut pg_sys::Query) -> Option<Split> {
    let q = &*query;
    if q.commandType != pg_sys::CmdType::CMD_SELECT
        || !q.utilityStmt.is_null()
        || !q.groupingSets.is_null()
        || q.hasSubLinks
        || !q.rowMarks.is_null()
        || !q.cteList.is_null()
        || !q.setOperations.is_null()
        || q.queryId == PARTIAL_QUERY_ID
    {
        return None;
    }
    // What is grouped: GROUP BY, or SELECT DISTINCT's columns (DISTINCT x is GROUP BY x when
    // nothing in the select list is computed after grouping).
    let distinct_only = !q.hasAggs
        && q.groupClause.is_null()
        && !q.distinctClause.is_null()
        && !q.hasDistinctOn
        && !q.hasWindowFuncs
        && !q.hasTargetSRFs;
    let grouping = if distinct_only {
        q.distinctClause
    } else if q.hasAggs || !q.groupClause.is_null() {
        q.groupClause
    } else {
        return None;
    };
    // One sharded table, or several of one co-location group (whose join the grouped scan
    // pushes when it is on their keys); explicit JOINs add join entries to the range table.
    let mut tables: Vec<(u32, Rc<ShardedTable>)> = Vec::new();
    for (i, rte) in list_nodes(q.rtable).into_iter().enumerate() {
        let rte = rte as *mut pg_sys::RangeTblEntry;
        match (*rte).rtekind {
            pg_sys::RTEKind::RTE_JOIN => continue,
            pg_sys::RTEKind::RTE_RELATION if (*rte).tablesample.is_null() => {
                tables.push((i as u32 + 1, metadata::sharded_table((*rte).relid)?));
            }
            _ => return None,
        }
    }
    // Reference tables join the sharded ones wherever their shards are.
    let sharded: Vec<&Rc<ShardedTable>> = tables
        .iter()
        .map(|(_, t)| t)
        .filter(|t| !t.reference)
        .collect();
    let colocated = sharded
        .iter()
        .all(|t| t.colocation_id == sharded[0].colocation_id);
    if sharded.is_empty()
        || !colocated
        || metadata::one_task(tables.iter().map(|(_, t)| &**t))
        || has_outer_references(query)
    {
        return None;
    }
    // Several sharded tables: only when conditions equate their keys, all of them connected
    // (the join then runs on the shards).
    if sharded.len() > 1 {
        let conditions: Vec<_> = join_conditions(q.jointree as *mut pg_sys::Node)
            .into_iter()
            .map(|c| pg_sys::flatten_join_alias_vars(query, c))
            .collect();
        let mut reached: Vec<bool> = tables.iter().map(|(_, t)| t.reference).collect();
        let first = tables.iter().position(|(_, t)| !t.reference)?;
        reached[first] = true;
        let mut grew = true;
        while grew {
            grew = false;
            for i in 0..tables.len() {
                for j in 0..tables.len() {
                    if !reached[i] || reached[j] {
                        continue;
                    }
                    let sides = crate::join::JoinSides {
                        outer_varno: tables[i].0,
                        inner_varno: tables[j].0,
                        outer: &tables[i].1,
                        inner: &tables[j].1,
                    };
                    if conditions.iter().any(|c| sides.equates_keys(*c)) {
                        reached[j] = true;
                        grew = true;
                    }
                }
            }
        }
        if reached.contains(&false) {
            return None;
        }
    }
    let is_key = |expr: *mut pg_sys::Node| {
        let expr = pg_sys::flatten_join_alias_vars(query, expr);
        tables
            .iter()
            .any(|(varno, table)| crate::scan::is_key(expr, *varno, table))
    };
    // Pinned to one key: the whole grouped query runs on that key's shard.
    for clause in conjuncts((*q.jointree).quals) {
        for (varno, table) in &tables {
            if let Some((KeyPin::Equals, _)) = crate::scan::key_pin(clause, *varno, table) {
                if !distinct_only {
                    return None;
                }
            }
        }
    }

    let mut split = Split {
        columns: Vec::new(),
        group_clauses: Vec::new(),
        groups: Vec::new(),
        aggregates: Vec::new(),
    };
    let mut next_ref = 0;
    for clause in list_nodes(grouping) {
        let clause = clause as *mut pg_sys::SortGroupClause;
        let entry = pg_sys::get_sortgroupref_tle((*clause).tleSortGroupRef, q.targetList);
        let expr = (*entry).expr as *mut pg_sys::Node;
        if !distinct_only && is_key(expr) {
            return None;
        }
        // Grouped by something that reads no column: the shards could not group by it (see
        // aggregate.rs); the coordinator groups.
        if !pg_sys::contain_var_clause(expr) && (*expr).type_ != pg_sys::NodeTag::T_Const {
            return None;
        }
        let name = if (*entry).resname.is_null() {
            format!("group{}", split.columns.len() + 1)
        } else {
            cstr((*entry).resname)
        };
        split.groups.push((expr, split.columns.len()));
        split.columns.push((expr, name, (*entry).ressortgroupref));
        split.group_clauses.push(clause);
        next_ref = next_ref.max((*entry).ressortgroupref);
    }

    let mut found = crate::aggregate::Aggregates::outside(Vec::new());
    for entry in list_nodes(q.targetList) {
        found.find_in((*(entry as *mut pg_sys::TargetEntry)).expr.cast());
    }
    found.find_in(q.havingQual);
    let aggregates = found
        .aggregates
        .into_iter()
        .map(|a| a as *mut pg_sys::Aggref);

    let mut distinct_arg: Option<*mut pg_sys::Node> = None;
    for original in aggregates {
        if split
            .aggregates
            .iter()
            .any(|a| pg_sys::equal(a.original.cast(), original.cast()))
        {
            continue;
        }
        let a = &*original;
        if a.aggfnoid.to_u32() >= pg_sys::FirstNormalObjectId
            || a.aggkind as u8 != b'n'
            || a.aggvariadic
            || !a.aggdirectargs.is_null()
        {
            return None;
        }
        let name = cstr(pg_sys::get_func_name(a.aggfnoid));
        let args = aggregate_args(original);
        let replacement = if !a.aggdistinct.is_null() {
            // Grouping the inner query by the argument leaves each distinct value once per
            // group; the aggregate itself then runs on the coordinator.
            let varying: Vec<_> = args.iter().filter(|e| !is_const(**e)).copied().collect();
            if !a.aggfilter.is_null() || varying.len() != 1 {
                return None;
            }
            let arg = varying[0];
            match distinct_arg {
                Some(seen) if !pg_sys::equal(seen.cast(), arg.cast()) => return None,
                _ => distinct_arg = Some(arg),
            }
            let column = match split
                .groups
                .iter()
                .find(|(e, _)| pg_sys::equal((*e).cast(), arg.cast()))
            {
                Some((_, column)) => *column,
                None => {
                    next_ref += 1;
                    let clause = distinct_clause(original, arg)?;
                    (*clause).tleSortGroupRef = next_ref;
                    split.group_clauses.push(clause);
                    split.groups.push((arg, split.columns.len()));
                    split.columns.push((arg, "distinct_arg".into(), next_ref));
                    split.columns.len() - 1
                }
            };
            let copy = pg_sys::copyObjectImpl(original.cast()) as *mut pg_sys::Aggref;
            for entry in list_nodes((*copy).args) {
                let entry = entry as *mut pg_sys::TargetEntry;
                if pg_sys::equal((*entry).expr.cast(), arg.cast()) {
                    (*entry).expr = split.column_var(column).cast();
                }
            }
            copy as *mut pg_sys::Node
        } else {
            if !a.aggorder.is_null() {
                return None;
            }
            let arg_type = if a.aggstar {
                ArgType::Other
            } else {
                arg_type(pg_sys::exprType(*args.first()?))
            };
            // string_agg's delimiter must be the same for every partial and the combination.
            if args.len() > 1 && (name != "string_agg" || !is_const(args[1])) {
                return None;
            }
            let recipe = combine::recipe(&name, arg_type)?;
            let partials: Vec<usize> = combine::partials(recipe, &name)
                .iter()
                .map(|partial| split.partial_column(original, partial))
                .collect();
            split.combination(original, recipe, &partials, &args)
        };
        split.aggregates.push(SplitAggregate {
            original,
            replacement,
        });
    }
    // Split only what the shards can run: otherwise the coordinator aggregates the rows once,
    // not twice.
    let deparser = crate::deparse::Deparser::tables(
        &tables
            .iter()
            .map(|(varno, table)| (*varno, table.oid))
            .collect::<Vec<_>>(),
    );
    let pushable = |node: *mut pg_sys::Node| {
        deparser
            .deparse(pg_sys::flatten_join_alias_vars(query, node))
            .is_some()
    };
    if !split.columns.iter().all(|(expr, _, _)| pushable(*expr))
        || !conjuncts((*q.jointree).quals).into_iter().all(pushable)
    {
        return None;
    }
    Some(split)
}

impl Split {
    /// A `Var` of an inner column, as the outer query sees it.
    unsafe fn column_var(&self, column: usize) -> *mut pg_sys::Var {
        let expr = self.columns[column].0;
        pg_sys::makeVar(
            1,
            column as i16 + 1,
            pg_sys::exprType(expr),
            pg_sys::exprTypmod(expr),
            pg_sys::exprCollation(expr),
            0,
        )
    }

    /// The inner column holding the per-shard aggregate `partial` of `original`'s arguments
    /// and FILTER, added if it is not there yet.
    unsafe fn partial_column(&mut self, original: *mut pg_sys::Aggref, partial: &str) -> usize {
        let mut aggregate = pg_sys::copyObjectImpl(original.cast()) as *mut pg_sys::Aggref;
        let name = cstr(pg_sys::get_func_name((*original).aggfnoid));
        if partial == combine::SUM_NUMERIC || partial == combine::SUM_SQUARES {
            // sum(x::numeric) or sum(x::numeric * x::numeric), with the original's FILTER.
            let arg = aggregate_args(original)[0];
            let value = || as_numeric(pg_sys::copyObjectImpl(arg.cast()).cast());
            let summed = if partial == combine::SUM_SQUARES {
                numeric_product(value(), value())
            } else {
                value()
            };
            let filter = (*original).aggfilter;
            aggregate = self::aggregate(
                function("pg_catalog", "sum", &[pg_sys::NUMERICOID]),
                &[summed],
            ) as *mut pg_sys::Aggref;
            (*aggregate).aggfilter = pg_sys::copyObjectImpl(filter.cast()).cast();
        } else if partial != name {
            let arg_types: Vec<pg_sys::Oid> = list_oids((*original).aggargtypes);
            let function = if partial == "count" && (*original).aggstar {
                function("pg_catalog", "count", &[])
            } else {
                let any = if partial == "count" {
                    vec![pg_sys::ANYOID]
                } else {
                    arg_types.clone()
                };
                function("pg_catalog", partial, &any)
            };
            (*aggregate).aggfnoid = function;
            (*aggregate).aggtype = pg_sys::get_func_rettype(function);
            (*aggregate).aggcollid = pg_sys::InvalidOid;
        }
        (*aggregate).aggtranstype = pg_sys::InvalidOid;
        if let Some(column) = self
            .columns
            .iter()
            .position(|(e, _, _)| pg_sys::equal((*e).cast(), aggregate.cast()))
        {
            return column;
        }
        self.columns.push((
            aggregate.cast(),
            format!("partial_{}", partial.replace(' ', "_")),
            0,
        ));
        self.columns.len() - 1
    }

    /// The coordinator's expression combining the partial columns of `original`.
    unsafe fn combination(
        &self,
        original: *mut pg_sys::Aggref,
        recipe: Recipe,
        partials: &[usize],
        args: &[*mut pg_sys::Node],
    ) -> *mut pg_sys::Node {
        let var = |i: usize| self.column_var(partials[i]) as *mut pg_sys::Node;
        let var_type = |i: usize| pg_sys::exprType(var(i));
        let bigint = [pg_sys::INT8OID];
        let sum_counts =
            |i: usize| aggregate(function("pgshard", "sum_counts", &bigint), &[var(i)]);
        match recipe {
            Recipe::Same => {
                let copy = pg_sys::copyObjectImpl(original.cast()) as *mut pg_sys::Aggref;
                let mut new_args = vec![var(0)];
                new_args.extend(
                    args[1..]
                        .iter()
                        .map(|a| pg_sys::copyObjectImpl((*a).cast()).cast()),
                );
                (*copy).args = target_entries(&new_args);
                (*copy).aggargtypes = oid_list(new_args.iter().map(|a| pg_sys::exprType(*a)));
                (*copy).aggfilter = std::ptr::null_mut();
                (*copy).aggtranstype = pg_sys::InvalidOid;
                copy.cast()
            }
            Recipe::SumCounts => sum_counts(0),
            Recipe::SumInt8 => aggregate(function("pgshard", "sum_int8", &bigint), &[var(0)]),
            Recipe::SumNumeric => aggregate(
                function("pg_catalog", "sum", &[pg_sys::NUMERICOID]),
                &[var(0)],
            ),
            Recipe::AvgExact | Recipe::AvgFloat8 => {
                let total = aggregate(function("pg_catalog", "sum", &[var_type(0)]), &[var(0)]);
                let total_type = pg_sys::exprType(total);
                let avg_of = function("pgshard", "avg_of", &[total_type, pg_sys::INT8OID]);
                pg_sys::makeFuncExpr(
                    avg_of,
                    pg_sys::get_func_rettype(avg_of),
                    make_list([total, sum_counts(1)]),
                    pg_sys::InvalidOid,
                    pg_sys::InvalidOid,
                    pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
                )
                .cast()
            }
            Recipe::Variance { sample, root } => {
                let numeric = [pg_sys::NUMERICOID];
                let total =
                    |i: usize| aggregate(function("pg_catalog", "sum", &numeric), &[var(i)]);
                let variance_of = function(
                    "pgshard",
                    "variance_of",
                    &[
                        pg_sys::INT8OID,
                        pg_sys::NUMERICOID,
                        pg_sys::NUMERICOID,
                        pg_sys::BOOLOID,
                        pg_sys::BOOLOID,
                    ],
                );
                let flag = |b: bool| pg_sys::makeBoolConst(b, false);
                pg_sys::makeFuncExpr(
                    variance_of,
                    pg_sys::NUMERICOID,
                    make_list([sum_counts(0), total(1), total(2), flag(sample), flag(root)]),
                    pg_sys::InvalidOid,
                    pg_sys::InvalidOid,
                    pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
                )
                .cast()
            }
            Recipe::ArrayCat => {
                let cat = aggregate(
                    function("pgshard", "array_cat_agg", &[pg_sys::ANYCOMPATIBLEARRAYOID]),
                    &[var(0)],
                ) as *mut pg_sys::Aggref;
                (*cat).aggtype = (*original).aggtype;
                (*cat).aggcollid = (*original).aggcollid;
                cat.cast()
            }
        }
    }

    /// Rewrites `query` into the outer query over the inner one.
    unsafe fn apply(self, query: *mut pg_sys::Query) {
        // The outer expressions first: if one reads a column outside the groups and the
        // aggregates (which cannot happen in valid SQL, but costs nothing to check), the query
        // is left as it was.
        let mut context = Replace {
            split: &self,
            failed: false,
        };
        let context_ptr = &mut context as *mut Replace as *mut c_void;
        let mut targets = Vec::new();
        for entry in list_nodes((*query).targetList) {
            let entry = pg_sys::flatCopyTargetEntry(entry as *mut pg_sys::TargetEntry);
            (*entry).expr = replace((*entry).expr.cast(), context_ptr).cast();
            targets.push(entry);
        }
        let having = replace((*query).havingQual, context_ptr);
        if context.failed {
            return;
        }

        let inner = pg_sys::copyObjectImpl(query.cast()) as *mut pg_sys::Query;
        let entries: Vec<*mut pg_sys::TargetEntry> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (expr, name, group_ref))| {
                let entry = pg_sys::makeTargetEntry(
                    pg_sys::copyObjectImpl((*expr).cast()).cast(),
                    i as i16 + 1,
                    palloc_string(name),
                    false,
                );
                (*entry).ressortgroupref = *group_ref;
                entry
            })
            .collect();
        (*inner).targetList = make_list(entries);
        (*inner).groupClause = make_list(
            self.group_clauses
                .iter()
                .map(|c| pg_sys::copyObjectImpl((*c).cast()) as *mut pg_sys::SortGroupClause),
        );
        (*inner).hasAggs = self
            .columns
            .iter()
            .any(|(e, _, _)| pg_sys::contain_agg_clause(*e));
        (*inner).havingQual = std::ptr::null_mut();
        (*inner).sortClause = std::ptr::null_mut();
        (*inner).distinctClause = std::ptr::null_mut();
        (*inner).hasDistinctOn = false;
        (*inner).windowClause = std::ptr::null_mut();
        (*inner).hasWindowFuncs = false;
        (*inner).hasTargetSRFs = false;
        (*inner).limitCount = std::ptr::null_mut();
        (*inner).limitOffset = std::ptr::null_mut();
        (*inner).limitOption = pg_sys::LimitOption::LIMIT_OPTION_COUNT;
        (*inner).canSetTag = false;
        (*inner).queryId = PARTIAL_QUERY_ID;

        let names = make_list(
            self.columns
                .iter()
                .map(|(_, name, _)| pg_sys::makeString(palloc_string(name))),
        );
        let rte = pg_sys::palloc0(std::mem::size_of::<pg_sys::RangeTblEntry>())
            as *mut pg_sys::RangeTblEntry;
        (*rte).type_ = pg_sys::NodeTag::T_RangeTblEntry;
        (*rte).rtekind = pg_sys::RTEKind::RTE_SUBQUERY;
        (*rte).subquery = inner;
        (*rte).eref = pg_sys::makeAlias(c"pgshard_partial".as_ptr(), names);
        (*rte).inFromCl = true;
        let reference =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::RangeTblRef>()) as *mut pg_sys::RangeTblRef;
        (*reference).type_ = pg_sys::NodeTag::T_RangeTblRef;
        (*reference).rtindex = 1;

        (*query).rtable = make_list([rte]);
        (*query).jointree = pg_sys::makeFromExpr(make_list([reference]), std::ptr::null_mut());
        (*query).targetList = make_list(targets);
        (*query).havingQual = having;
        (*query).hasAggs = !self.aggregates.is_empty();
    }
}

/// Context of `replace`.
struct Replace<'a> {
    split: &'a Split,
    failed: bool,
}

/// Mutator: group expressions become the inner query's columns, aggregates their combination.
#[pg_guard]
unsafe extern "C-unwind" fn replace(
    node: *mut pg_sys::Node,
    context: *mut c_void,
) -> *mut pg_sys::Node {
    if node.is_null() {
        return node;
    }
    let ctx = &mut *(context as *mut Replace);
    if let Some((_, column)) = ctx
        .split
        .groups
        .iter()
        .find(|(e, _)| pg_sys::equal((*e).cast(), node.cast()))
    {
        return ctx.split.column_var(*column).cast();
    }
    match (*node).type_ {
        pg_sys::NodeTag::T_Aggref => {
            match ctx
                .split
                .aggregates
                .iter()
                .find(|a| pg_sys::equal(a.original.cast(), node.cast()))
            {
                Some(a) => pg_sys::copyObjectImpl(a.replacement.cast()).cast(),
                None => {
                    ctx.failed = true;
                    node
                }
            }
        }
        pg_sys::NodeTag::T_Var if (*(node as *mut pg_sys::Var)).varlevelsup == 0 => {
            ctx.failed = true;
            node
        }
        _ => {
            // SAFETY: PostgreSQL ≤ 15 declares the mutator without arguments and calls it with
            // (node, context); this is that function.
            let mutator: unsafe extern "C-unwind" fn() -> *mut pg_sys::Node =
                std::mem::transmute(replace as unsafe extern "C-unwind" fn(_, _) -> _);
            pg_sys::expression_tree_mutator(node, Some(mutator), context)
        }
    }
}

/// Whether the query reads anything of an enclosing query (a correlated subquery): the inner
/// query would be one level deeper and such references would need renumbering.
unsafe fn has_outer_references(query: *mut pg_sys::Query) -> bool {
    #[pg_guard]
    unsafe extern "C-unwind" fn walk(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
        if node.is_null() {
            return false;
        }
        match (*node).type_ {
            pg_sys::NodeTag::T_Var => (*(node as *mut pg_sys::Var)).varlevelsup > 0,
            pg_sys::NodeTag::T_Aggref => {
                (*(node as *mut pg_sys::Aggref)).agglevelsup > 0
                    || pg_sys::expression_tree_walker(node, Some(walk), context)
            }
            pg_sys::NodeTag::T_PlaceHolderVar | pg_sys::NodeTag::T_GroupingFunc => true,
            _ => pg_sys::expression_tree_walker(node, Some(walk), context),
        }
    }
    pg_sys::query_tree_walker(query, Some(walk), std::ptr::null_mut(), 0)
}

/// The AND-ed conditions of a FROM clause: WHERE and the ON of its inner joins.
unsafe fn join_conditions(node: *mut pg_sys::Node) -> Vec<*mut pg_sys::Node> {
    match (*node).type_ {
        pg_sys::NodeTag::T_FromExpr => {
            let from = node as *mut pg_sys::FromExpr;
            let mut out = conjuncts((*from).quals);
            for item in list_nodes((*from).fromlist) {
                out.extend(join_conditions(item));
            }
            out
        }
        pg_sys::NodeTag::T_JoinExpr
            if (*(node as *mut pg_sys::JoinExpr)).jointype == pg_sys::JoinType::JOIN_INNER =>
        {
            let join = node as *mut pg_sys::JoinExpr;
            let mut out = conjuncts((*join).quals);
            out.extend(join_conditions((*join).larg));
            out.extend(join_conditions((*join).rarg));
            out
        }
        pg_sys::NodeTag::T_JoinExpr => {
            let join = node as *mut pg_sys::JoinExpr;
            conjuncts((*join).quals)
        }
        _ => Vec::new(),
    }
}

/// The top-level AND-ed conditions of a WHERE clause.
unsafe fn conjuncts(node: *mut pg_sys::Node) -> Vec<*mut pg_sys::Node> {
    if node.is_null() {
        return Vec::new();
    }
    if (*node).type_ == pg_sys::NodeTag::T_BoolExpr
        && (*(node as *mut pg_sys::BoolExpr)).boolop == pg_sys::BoolExprType::AND_EXPR
    {
        return list_nodes((*(node as *mut pg_sys::BoolExpr)).args)
            .into_iter()
            .flat_map(|n| conjuncts(n))
            .collect();
    }
    vec![node]
}

/// The argument expressions of an aggregate (not its ORDER BY-only entries).
unsafe fn aggregate_args(aggregate: *mut pg_sys::Aggref) -> Vec<*mut pg_sys::Node> {
    list_nodes((*aggregate).args)
        .into_iter()
        .map(|e| e as *mut pg_sys::TargetEntry)
        .filter(|e| !(**e).resjunk)
        .map(|e| (*e).expr as *mut pg_sys::Node)
        .collect()
}

/// The DISTINCT clause of an aggregate for its argument `arg`, copied.
unsafe fn distinct_clause(
    aggregate: *mut pg_sys::Aggref,
    arg: *mut pg_sys::Node,
) -> Option<*mut pg_sys::SortGroupClause> {
    for clause in list_nodes((*aggregate).aggdistinct) {
        let clause = clause as *mut pg_sys::SortGroupClause;
        let entry = pg_sys::get_sortgroupref_tle((*clause).tleSortGroupRef, (*aggregate).args);
        if pg_sys::equal((*entry).expr.cast(), arg.cast()) {
            return Some(pg_sys::copyObjectImpl(clause.cast()) as *mut pg_sys::SortGroupClause);
        }
    }
    None
}

fn arg_type(type_oid: pg_sys::Oid) -> ArgType {
    match type_oid {
        pg_sys::INT2OID | pg_sys::INT4OID => ArgType::SmallInt,
        pg_sys::INT8OID => ArgType::BigInt,
        pg_sys::NUMERICOID => ArgType::Numeric,
        pg_sys::FLOAT8OID => ArgType::Float8,
        pg_sys::FLOAT4OID | pg_sys::MONEYOID | pg_sys::INTERVALOID => ArgType::SelfSumming,
        _ => ArgType::Other,
    }
}

unsafe fn is_const(node: *mut pg_sys::Node) -> bool {
    (*node).type_ == pg_sys::NodeTag::T_Const
}

/// `expr::numeric` (itself when it is numeric already), as an implicit cast.
unsafe fn as_numeric(expr: *mut pg_sys::Node) -> *mut pg_sys::Node {
    let from = pg_sys::exprType(expr);
    if from == pg_sys::NUMERICOID {
        return expr;
    }
    pg_sys::makeFuncExpr(
        function("pg_catalog", "numeric", &[from]),
        pg_sys::NUMERICOID,
        make_list([expr]),
        pg_sys::InvalidOid,
        pg_sys::InvalidOid,
        pg_sys::CoercionForm::COERCE_IMPLICIT_CAST,
    )
    .cast()
}

/// `left * right` of two numerics.
unsafe fn numeric_product(left: *mut pg_sys::Node, right: *mut pg_sys::Node) -> *mut pg_sys::Node {
    let name = make_list([pg_sys::makeString(palloc_string("*"))]);
    let operator = pg_sys::OpernameGetOprid(name, pg_sys::NUMERICOID, pg_sys::NUMERICOID);
    let product = pg_sys::make_opclause(
        operator,
        pg_sys::NUMERICOID,
        false,
        left.cast(),
        right.cast(),
        pg_sys::InvalidOid,
        pg_sys::InvalidOid,
    ) as *mut pg_sys::OpExpr;
    (*product).opfuncid = pg_sys::get_opcode(operator);
    product.cast()
}

/// A function by schema, name and argument types (raises an error if it does not exist).
unsafe fn function(schema: &str, name: &str, args: &[pg_sys::Oid]) -> pg_sys::Oid {
    let names = make_list(
        [schema, name]
            .into_iter()
            .map(|part| pg_sys::makeString(palloc_string(part))),
    );
    pg_sys::LookupFuncName(names, args.len() as i32, args.as_ptr(), false)
}

/// A plain aggregate call `function(args)`, its types from the catalog.
unsafe fn aggregate(function: pg_sys::Oid, args: &[*mut pg_sys::Node]) -> *mut pg_sys::Node {
    let a = pg_sys::palloc0(std::mem::size_of::<pg_sys::Aggref>()) as *mut pg_sys::Aggref;
    (*a).xpr.type_ = pg_sys::NodeTag::T_Aggref;
    (*a).aggfnoid = function;
    (*a).aggtype = pg_sys::get_func_rettype(function);
    (*a).aggargtypes = oid_list(args.iter().map(|e| pg_sys::exprType(*e)));
    (*a).args = target_entries(args);
    (*a).aggkind = b'n' as _;
    (*a).aggsplit = pg_sys::AggSplit::AGGSPLIT_SIMPLE;
    (*a).aggno = -1;
    (*a).aggtransno = -1;
    (*a).location = -1;
    a.cast()
}

unsafe fn target_entries(exprs: &[*mut pg_sys::Node]) -> *mut pg_sys::List {
    make_list(exprs.iter().enumerate().map(|(i, e)| {
        pg_sys::makeTargetEntry((*e).cast(), i as i16 + 1, std::ptr::null_mut(), false)
    }))
}

unsafe fn oid_list(oids: impl IntoIterator<Item = pg_sys::Oid>) -> *mut pg_sys::List {
    let mut list = std::ptr::null_mut();
    for oid in oids {
        list = pg_sys::lappend_oid(list, oid);
    }
    list
}

unsafe fn list_oids(list: *mut pg_sys::List) -> Vec<pg_sys::Oid> {
    if list.is_null() {
        return Vec::new();
    }
    (0..(*list).length as usize)
        .map(|i| (*(*list).elements.add(i)).oid_value)
        .collect()
}
