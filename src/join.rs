//! Joins of co-located sharded tables pushed to the shards: the join scan.
//!
//! Two sharded tables of one co-location group have the same hash ranges, shard for shard, on
//! the same workers. When they are joined on an equality of their shard keys, every pair of
//! matching rows is in one pair of co-located shards, so the join runs on each pair where it
//! lives (inner, left, right and full joins, and the semi and anti joins of EXISTS / IN /
//! NOT EXISTS), all pairs at once, and the coordinator concatenates the results. Filters of
//! either table go with it (into ON for the nullable side of an outer join). Joins of more than
//! two tables push their co-located pairs and finish on the coordinator.

use std::rc::Rc;

use pgrx::prelude::*;

use crate::deparse::{list_nodes, Deparser, Sql};
use crate::encryption;
use crate::metadata::{cstr, ShardedTable};
use crate::pushed::{InnerJoin, JoinInfo, Kind, PushedQuery};
use crate::scan;
use crate::scan::{is_key, sharded_table_at};

/// `set_join_pathlist_hook` body.
///
/// # Safety
/// Called by the planner with valid arguments.
pub unsafe fn add_join_path(
    root: *mut pg_sys::PlannerInfo,
    joinrel: *mut pg_sys::RelOptInfo,
    outerrel: *mut pg_sys::RelOptInfo,
    innerrel: *mut pg_sys::RelOptInfo,
    jointype: pg_sys::JoinType::Type,
    extra: *mut pg_sys::JoinPathExtraData,
) {
    let base =
        |rel: *mut pg_sys::RelOptInfo| (*rel).reloptkind == pg_sys::RelOptKind::RELOPT_BASEREL;
    if !base(outerrel) || !base(innerrel) {
        if jointype == pg_sys::JoinType::JOIN_INNER {
            add_inner_join_path(root, joinrel, outerrel, innerrel, (*extra).restrictlist);
        }
        return;
    }
    let (Some(outer), Some(inner)) = (
        sharded_table_at(root, (*outerrel).relid),
        sharded_table_at(root, (*innerrel).relid),
    ) else {
        return;
    };
    if !colocated(&[&outer, &inner]) {
        return;
    }
    let sides = JoinSides {
        outer_varno: (*outerrel).relid,
        inner_varno: (*innerrel).relid,
        outer: &outer,
        inner: &inner,
    };
    let restrictlist = (*extra).restrictlist;
    let Some(body) = sides.body(root, joinrel, outerrel, innerrel, jointype, restrictlist) else {
        return;
    };
    // A semi or anti join's output has no column of its inner side in scope (an anti join made
    // of a LEFT JOIN may still list them, as NULLs): those are not pushed.
    let semi_or_anti = matches!(
        jointype,
        pg_sys::JoinType::JOIN_SEMI | pg_sys::JoinType::JOIN_ANTI
    );
    let deparser = if semi_or_anti {
        sides.outer_only_deparser()
    } else {
        sides.deparser()
    };
    let Some(mut query) = select_columns(joinrel, &deparser) else {
        return;
    };
    query.append(body);
    push_final_order(root, joinrel, &deparser, &mut query);
    query.join = Some(JoinInfo {
        outer: sides.outer_varno,
        inner: sides.inner_varno,
        jointype,
        restrictlist,
    });
    if jointype == pg_sys::JoinType::JOIN_INNER {
        let mut clauses = clauses_of(restrictlist);
        clauses.extend(restrictions(outerrel));
        clauses.extend(restrictions(innerrel));
        query.inner_join = Some(InnerJoin {
            varnos: vec![sides.outer_varno, sides.inner_varno],
            clauses,
        });
    }
    let path = query.into_path(joinrel, (*joinrel).rows);
    pg_sys::add_path(joinrel, path);
}

/// `SELECT` and the columns of a join relation's target (plain columns only), the start of
/// its pushed query.
unsafe fn select_columns(
    joinrel: *mut pg_sys::RelOptInfo,
    deparser: &Deparser,
) -> Option<PushedQuery> {
    let mut query = PushedQuery::new(Kind::Join, Vec::new());
    query.sql.push("SELECT ");
    let columns = list_nodes((*(*joinrel).reltarget).exprs);
    if columns.is_empty() {
        query.sql.push("NULL");
    }
    for (i, column) in columns.iter().enumerate() {
        if (**column).type_ != pg_sys::NodeTag::T_Var {
            return None;
        }
        if i > 0 {
            query.sql.push(", ");
        }
        query.sql.append(deparser.deparse(*column)?);
    }
    query.columns = columns;
    Some(query)
}

/// ORDER BY … LIMIT of the query, when this join is its whole FROM clause and its rows are the
/// query's final rows (see `scan::plain_select`): each shard group returns its first rows.
unsafe fn push_final_order(
    root: *mut pg_sys::PlannerInfo,
    joinrel: *mut pg_sys::RelOptInfo,
    deparser: &Deparser,
    query: &mut PushedQuery,
) {
    if pg_sys::bms_equal((*joinrel).relids, (*root).all_baserels) && scan::plain_select(root) {
        if let Some(tail) = scan::order_and_limit(root, deparser) {
            query.sql.append(tail);
        }
    }
}

/// Whether the hash-sharded ones among tables have the same hash ranges, shard for shard
/// (reference tables have a copy wherever any shard is).
fn colocated(tables: &[&ShardedTable]) -> bool {
    let sharded: Vec<&&ShardedTable> = tables.iter().filter(|t| !t.reference).collect();
    sharded.iter().all(|t| {
        t.colocation_id == sharded[0].colocation_id
            && t.shards.len() == sharded[0].shards.len()
            && t.shards
                .iter()
                .zip(&sharded[0].shards)
                .all(|(a, b)| a.range == b.range)
    })
}

/// Whether a join with a reference table runs on the shards (see `pgshard_core::reference`);
/// `None` when both sides are sharded.
fn reference_join_allowed(
    outer: &ShardedTable,
    inner: &ShardedTable,
    jointype: pg_sys::JoinType::Type,
) -> Option<bool> {
    use pg_sys::JoinType::*;
    use pgshard_core::reference::{join_runs_on_shards, JoinKind};
    let kind = match jointype {
        JOIN_INNER => JoinKind::Inner,
        JOIN_LEFT => JoinKind::Left,
        JOIN_RIGHT => JoinKind::Right,
        JOIN_FULL => JoinKind::Full,
        JOIN_SEMI => JoinKind::Semi,
        JOIN_ANTI => JoinKind::Anti,
        // Unique-ified semi joins: never pushed with a reference table; between sharded
        // tables, decided by their keys (and refused further on).
        _ if outer.reference || inner.reference => return Some(false),
        _ => return None,
    };
    join_runs_on_shards(outer.reference, inner.reference, kind)
}

unsafe fn clauses_of(restrictinfos: *mut pg_sys::List) -> Vec<*mut pg_sys::Node> {
    list_nodes(restrictinfos)
        .into_iter()
        .map(|r| (*(r as *mut pg_sys::RestrictInfo)).clause as *mut pg_sys::Node)
        .collect()
}

/// A relation's own filters.
unsafe fn restrictions(rel: *mut pg_sys::RelOptInfo) -> Vec<*mut pg_sys::Node> {
    clauses_of((*rel).baserestrictinfo)
}

/// The inner join a relation is (a table, or a pushed inner join), if any.
unsafe fn inner_join_of(rel: *mut pg_sys::RelOptInfo) -> Option<InnerJoin> {
    match (*rel).reloptkind {
        pg_sys::RelOptKind::RELOPT_BASEREL => Some(InnerJoin {
            varnos: vec![(*rel).relid],
            clauses: restrictions(rel),
        }),
        pg_sys::RelOptKind::RELOPT_JOINREL => list_nodes((*rel).pathlist)
            .into_iter()
            .find_map(|p| crate::pushed::pushed_inner_join(p as *mut pg_sys::Path)),
        _ => None,
    }
}

/// An inner join of a pushed inner join with a table or another pushed inner join, all
/// co-located, when a condition equates a key of each side: pushed as one query over every
/// table, `FROM a r1, b r2, c r3 WHERE …`.
unsafe fn add_inner_join_path(
    root: *mut pg_sys::PlannerInfo,
    joinrel: *mut pg_sys::RelOptInfo,
    outerrel: *mut pg_sys::RelOptInfo,
    innerrel: *mut pg_sys::RelOptInfo,
    restrictlist: *mut pg_sys::List,
) {
    let (Some(left), Some(right)) = (inner_join_of(outerrel), inner_join_of(innerrel)) else {
        return;
    };
    let (Some(left_tables), Some(right_tables)) = (
        tables_of_inner_join(root, &left),
        tables_of_inner_join(root, &right),
    ) else {
        return;
    };
    let join_clauses = clauses_of(restrictlist);
    // Reference tables join anything; two sides with sharded tables join on their keys.
    let has_sharded = |tables: &[(u32, Rc<ShardedTable>)]| tables.iter().any(|(_, t)| !t.reference);
    let must_equate = has_sharded(&left_tables) && has_sharded(&right_tables);
    let equated = !must_equate
        || left_tables.iter().any(|(lv, lt)| {
            right_tables.iter().any(|(rv, rt)| {
                if lt.reference || rt.reference {
                    return false;
                }
                let sides = JoinSides {
                    outer_varno: *lv,
                    inner_varno: *rv,
                    outer: lt,
                    inner: rt,
                };
                pg_sys::exprs_known_equal(root, key_var(*lv, lt), key_var(*rv, rt))
                    || join_clauses.iter().any(|c| sides.equates_keys(*c))
            })
        });
    let mut tables = left_tables;
    tables.extend(right_tables);
    if !equated || !colocated(&tables.iter().map(|(_, t)| &**t).collect::<Vec<_>>()) {
        return;
    }
    let mut clauses = left.clauses;
    clauses.extend(right.clauses);
    clauses.extend(join_clauses);
    let join = InnerJoin {
        varnos: tables.iter().map(|(v, _)| *v).collect(),
        clauses,
    };
    let Some((body, deparser)) = inner_join_body(&tables, &join.clauses) else {
        return;
    };
    let Some(mut query) = select_columns(joinrel, &deparser) else {
        return;
    };
    query.append(body);
    push_final_order(root, joinrel, &deparser, &mut query);
    query.inner_join = Some(join);
    let path = query.into_path(joinrel, (*joinrel).rows);
    pg_sys::add_path(joinrel, path);
}

/// `FROM a r1, b r2 … WHERE …` of an inner join of co-located tables, and a deparser for
/// expressions over them; the tables' key filters prune (all keys are equal).
pub unsafe fn inner_join_body(
    tables: &[(u32, Rc<ShardedTable>)],
    clauses: &[*mut pg_sys::Node],
) -> Option<(PushedQuery, Deparser)> {
    let deparser = Deparser::tables(&tables.iter().map(|(v, t)| (*v, t.oid)).collect::<Vec<_>>());
    let mut body = PushedQuery::new(Kind::Join, tables.iter().map(|(_, t)| t.oid).collect());
    body.sql.push(" FROM ");
    for (i, (varno, _)) in tables.iter().enumerate() {
        if i > 0 {
            body.sql.push(", ");
        }
        body.push_shard_name(i);
        body.sql.push(&format!(" r{varno}"));
    }
    if !clauses.is_empty() {
        body.sql.push(" WHERE ");
        body.sql.append(and_all(&deparser, clauses)?);
    }
    for clause in clauses {
        for (varno, table) in tables {
            body.pins.extend(scan::key_pin(*clause, *varno, table));
        }
    }
    Some((body, deparser))
}

/// The tables of a pushed inner join.
pub unsafe fn tables_of_inner_join(
    root: *mut pg_sys::PlannerInfo,
    join: &InnerJoin,
) -> Option<Vec<(u32, Rc<ShardedTable>)>> {
    join.varnos
        .iter()
        .map(|v| Some((*v, sharded_table_at(root, *v)?)))
        .collect()
}

/// The FROM … WHERE … of a pushed join, to which the join scan adds its columns and the
/// grouped scan its groups and aggregates.
pub struct JoinBody {
    pub query: PushedQuery,
    pub deparser: Deparser,
    /// The sides whose rows the join keeps (so a group of their key is on one shard pair).
    pub preserved: Vec<(u32, Rc<ShardedTable>)>,
    /// Whether the join runs as one remote query (no side has more than one shard).
    pub one_task: bool,
}

/// The body of the join `info` of `joinrel`, rebuilt for the grouping step.
///
/// # Safety
/// Called by the planner with the relations of `info`.
pub unsafe fn body_of(
    root: *mut pg_sys::PlannerInfo,
    joinrel: *mut pg_sys::RelOptInfo,
    info: JoinInfo,
) -> Option<JoinBody> {
    let outerrel = *(*root).simple_rel_array.add(info.outer as usize);
    let innerrel = *(*root).simple_rel_array.add(info.inner as usize);
    let (outer, inner) = (
        sharded_table_at(root, info.outer)?,
        sharded_table_at(root, info.inner)?,
    );
    let sides = JoinSides {
        outer_varno: info.outer,
        inner_varno: info.inner,
        outer: &outer,
        inner: &inner,
    };
    let body = sides.body(
        root,
        joinrel,
        outerrel,
        innerrel,
        info.jointype,
        info.restrictlist,
    )?;
    use pg_sys::JoinType::*;
    let mut preserved = Vec::new();
    if matches!(
        info.jointype,
        JOIN_INNER | JOIN_LEFT | JOIN_SEMI | JOIN_ANTI
    ) {
        preserved.push((info.outer, Rc::clone(&outer)));
    }
    if matches!(info.jointype, JOIN_INNER | JOIN_RIGHT) {
        preserved.push((info.inner, Rc::clone(&inner)));
    }
    let deparser = if matches!(info.jointype, JOIN_SEMI | JOIN_ANTI) {
        sides.outer_only_deparser()
    } else {
        sides.deparser()
    };
    Some(JoinBody {
        query: body,
        deparser,
        preserved,
        one_task: crate::metadata::one_task([&*outer, &*inner]),
    })
}

/// The two tables of a join: range-table indexes and tables.
pub struct JoinSides<'a> {
    pub outer_varno: u32,
    pub inner_varno: u32,
    pub outer: &'a ShardedTable,
    pub inner: &'a ShardedTable,
}

impl JoinSides<'_> {
    /// Deparses expressions over both tables, as `r<index>.column`.
    fn deparser(&self) -> Deparser {
        Deparser::tables(&[
            (self.outer_varno, self.outer.oid),
            (self.inner_varno, self.inner.oid),
        ])
    }

    /// Deparses expressions over the outer table only.
    fn outer_only_deparser(&self) -> Deparser {
        Deparser::table(self.outer_varno, self.outer.oid)
    }

    /// FROM … WHERE … for one pair of co-located shards, or `None` when the join cannot run
    /// there.
    unsafe fn body(
        &self,
        root: *mut pg_sys::PlannerInfo,
        joinrel: *mut pg_sys::RelOptInfo,
        outerrel: *mut pg_sys::RelOptInfo,
        innerrel: *mut pg_sys::RelOptInfo,
        jointype: pg_sys::JoinType::Type,
        restrictlist: *mut pg_sys::List,
    ) -> Option<PushedQuery> {
        use pg_sys::JoinType::*;
        let deparser = self.deparser();
        // Clauses above an outer join filter its result; a semi or anti join's output has no
        // column of its inner side, so every clause of it is a join condition.
        let outer_join = matches!(jointype, JOIN_LEFT | JOIN_RIGHT | JOIN_FULL);
        let mut join_clauses = Vec::new();
        let mut after_join = Vec::new();
        for rinfo in list_nodes(restrictlist) {
            let rinfo = rinfo as *mut pg_sys::RestrictInfo;
            let pushed_down = (*rinfo).is_pushed_down
                || !pg_sys::bms_is_subset((*rinfo).required_relids, (*joinrel).relids);
            let clause = (*rinfo).clause as *mut pg_sys::Node;
            // An anti join PostgreSQL made of `LEFT JOIN … WHERE inner IS NULL` keeps the other
            // WHERE conditions as filters of its null-extended rows: not a NOT EXISTS condition.
            if jointype == JOIN_ANTI && pushed_down {
                return None;
            }
            if outer_join && pushed_down {
                after_join.push(clause);
            } else {
                join_clauses.push(clause);
            }
        }
        match reference_join_allowed(self.outer, self.inner, jointype) {
            Some(allowed) => {
                if !allowed {
                    return None;
                }
            }
            None => {
                // The keys' equality is a join clause, or, when both keys equal one constant,
                // known from the planner's equivalence classes (which then drop the clause).
                let known_equal = matches!(jointype, JOIN_INNER | JOIN_SEMI)
                    && pg_sys::exprs_known_equal(
                        root,
                        key_var(self.outer_varno, self.outer),
                        key_var(self.inner_varno, self.inner),
                    );
                if !known_equal && !join_clauses.iter().any(|c| self.equates_keys(*c)) {
                    return None;
                }
            }
        }
        let (outer_filters, inner_filters) = (restrictions(outerrel), restrictions(innerrel));

        // Where each side's filters go, and which sides' key filters prune: a filter on the
        // nullable side of an outer join applies before the join (in ON), and cannot prune.
        let mut on = join_clauses.clone();
        let mut filters = after_join.clone();
        let (mut pin_outer, mut pin_inner) = (true, true);
        let (join_word, exists) = match jointype {
            JOIN_INNER => {
                filters.extend(&outer_filters);
                filters.extend(&inner_filters);
                ("JOIN", None)
            }
            JOIN_LEFT => {
                filters.extend(&outer_filters);
                on.extend(&inner_filters);
                pin_inner = false;
                ("LEFT JOIN", None)
            }
            JOIN_RIGHT => {
                filters.extend(&inner_filters);
                on.extend(&outer_filters);
                pin_outer = false;
                ("RIGHT JOIN", None)
            }
            JOIN_FULL if outer_filters.is_empty() && inner_filters.is_empty() => {
                (pin_outer, pin_inner) = (false, false);
                ("FULL JOIN", None)
            }
            JOIN_SEMI | JOIN_ANTI => {
                filters.extend(&outer_filters);
                on.extend(&inner_filters);
                if jointype == JOIN_ANTI {
                    pin_inner = false;
                    ("", Some("NOT EXISTS"))
                } else {
                    ("", Some("EXISTS"))
                }
            }
            _ => return None,
        };

        let mut query = PushedQuery::new(Kind::Join, vec![self.outer.oid, self.inner.oid]);
        query.sql.push(" FROM ");
        query.push_shard_name(0);
        let on_sql = and_all(&deparser, &on)?;
        match exists {
            None => {
                query
                    .sql
                    .push(&format!(" r{} {join_word} ", self.outer_varno));
                query.push_shard_name(1);
                query.sql.push(&format!(" r{} ON ", self.inner_varno));
                query.sql.append(on_sql);
                if !filters.is_empty() {
                    query.sql.push(" WHERE ");
                    query.sql.append(and_all(&deparser, &filters)?);
                }
            }
            Some(exists) => {
                query.sql.push(&format!(
                    " r{} WHERE {exists} (SELECT FROM ",
                    self.outer_varno
                ));
                query.push_shard_name(1);
                query.sql.push(&format!(" r{} WHERE ", self.inner_varno));
                query.sql.append(on_sql);
                query.sql.push(")");
                for filter in &filters {
                    query.sql.push(" AND ");
                    query.sql.append(deparser.deparse(*filter)?);
                }
            }
        }
        for (pins, varno, table, filters) in [
            (pin_outer, self.outer_varno, self.outer, &outer_filters),
            (pin_inner, self.inner_varno, self.inner, &inner_filters),
        ] {
            if pins {
                query.pins.extend(
                    filters
                        .iter()
                        .filter_map(|c| scan::key_pin(*c, varno, table)),
                );
            }
        }
        Some(query)
    }

    /// Whether `clause` is `outer key = inner key` (either way round), by the key type's own
    /// equality or, for encrypted keys, by their tags.
    pub unsafe fn equates_keys(&self, clause: *mut pg_sys::Node) -> bool {
        if (*clause).type_ != pg_sys::NodeTag::T_OpExpr {
            return false;
        }
        let op = clause as *mut pg_sys::OpExpr;
        let args = list_nodes((*op).args);
        if args.len() != 2 {
            return false;
        }
        let equality = match encryption::tag_comparison(pg_sys::get_opcode((*op).opno)) {
            Some(equal) => equal,
            None => {
                (*op).opno.to_u32() < pg_sys::FirstNormalObjectId
                    && cstr(pg_sys::get_opname((*op).opno)) == "="
            }
        };
        let (o, i) = (self.outer_varno, self.inner_varno);
        equality
            && ((is_key(args[0], o, self.outer) && is_key(args[1], i, self.inner))
                || (is_key(args[0], i, self.inner) && is_key(args[1], o, self.outer)))
    }
}

/// The shard key column of `table` scanned as `varno`, as the planner writes it.
unsafe fn key_var(varno: u32, table: &ShardedTable) -> *mut pg_sys::Node {
    let (mut type_oid, mut typmod, mut collation) = (pg_sys::InvalidOid, -1, pg_sys::InvalidOid);
    pg_sys::get_atttypetypmodcoll(
        table.oid,
        table.key_attnum,
        &mut type_oid,
        &mut typmod,
        &mut collation,
    );
    pg_sys::makeVar(varno as _, table.key_attnum, type_oid, typmod, collation, 0).cast()
}

/// `(a) AND (b) …` of pushable conditions; `None` if one is not pushable.
unsafe fn and_all(deparser: &Deparser, conditions: &[*mut pg_sys::Node]) -> Option<Sql> {
    let mut sql = Sql::default();
    if conditions.is_empty() {
        sql.push("true");
    }
    for (i, condition) in conditions.iter().enumerate() {
        if i > 0 {
            sql.push(" AND ");
        }
        sql.append(deparser.deparse(*condition)?);
    }
    Some(sql)
}
