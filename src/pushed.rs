//! Queries pushed whole to each shard, or to each group of co-located shards: the grouped scan
//! (`aggregate.rs`) and the join scan (`join.rs`) build one at planning time; it becomes a
//! CustomScan without a scan relation, whose `custom_scan_tlist` says what each returned column
//! is, and runs with the pgshard scan's executor (`scan.rs`).

use pgrx::prelude::*;

use crate::deparse::{list_nodes, make_list, Sql};
use crate::execution::{encode_columns, encode_pins, list_to_strings, strings_to_list, KeyPin};
use crate::scan::{self, Methods};

/// What the pushed query computes, for EXPLAIN's node name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Aggregate,
    Join,
}

static PATH_METHODS: Methods<pg_sys::CustomPathMethods> = Methods(pg_sys::CustomPathMethods {
    CustomName: c"pgshard pushed query".as_ptr(),
    PlanCustomPath: Some(plan_pushed),
    ReparameterizeCustomPathByChild: None,
});

/// A query for one shard (group), with holes for the shard tables' names.
pub struct PushedQuery {
    pub kind: Kind,
    /// The tables whose shards the query reads; shards are pruned by the first one's pins.
    pub tables: Vec<pg_sys::Oid>,
    pub sql: Sql,
    /// The hole of each table's shard name, in `tables` order.
    pub markers: Vec<usize>,
    pub pins: Vec<(KeyPin, *mut pg_sys::Node)>,
    /// What each returned column is.
    pub columns: Vec<*mut pg_sys::Node>,
    /// Conditions checked on the coordinator over the returned rows.
    pub local: Vec<*mut pg_sys::Node>,
    /// Query one shard even when the filters select none (an aggregate without GROUP BY
    /// returns a row over no rows).
    pub at_least_one: bool,
    /// For a join of two tables: what the grouping step needs to push an aggregate over it.
    pub join: Option<JoinInfo>,
    /// For an inner join of any number of tables: what a join with another table or the
    /// grouping step needs.
    pub inner_join: Option<InnerJoin>,
}

/// An inner join of co-located tables: their range-table indexes and every condition (join
/// conditions and the tables' filters).
#[derive(Clone)]
pub struct InnerJoin {
    pub varnos: Vec<u32>,
    pub clauses: Vec<*mut pg_sys::Node>,
}

/// The inner join a path of a join relation pushes, if it is one.
///
/// # Safety
/// `path` must be a valid path.
pub unsafe fn pushed_inner_join(path: *mut pg_sys::Path) -> Option<InnerJoin> {
    let private = pushed_private(path)?;
    let info = list_nodes(*private.get(6)? as *mut pg_sys::List);
    if info.is_empty() {
        return None;
    }
    Some(InnerJoin {
        varnos: list_nodes(info[0] as *mut pg_sys::List)
            .into_iter()
            .map(|n| (*(n as *mut pg_sys::Integer)).ival as u32)
            .collect(),
        clauses: list_nodes(info[1] as *mut pg_sys::List),
    })
}

/// The private list of a pushed query's path.
unsafe fn pushed_private(path: *mut pg_sys::Path) -> Option<Vec<*mut pg_sys::Node>> {
    if (*path).type_ != pg_sys::NodeTag::T_CustomPath
        || !std::ptr::eq(
            (*(path as *mut pg_sys::CustomPath)).methods,
            &PATH_METHODS.0,
        )
    {
        return None;
    }
    Some(list_nodes(
        (*(path as *mut pg_sys::CustomPath)).custom_private,
    ))
}

/// How a pushed join was formed: range-table indexes of its two tables, join type and
/// conditions.
#[derive(Clone, Copy)]
pub struct JoinInfo {
    pub outer: u32,
    pub inner: u32,
    pub jointype: pg_sys::JoinType::Type,
    pub restrictlist: *mut pg_sys::List,
}

/// The join a path of a join relation pushes, if it is a pushed join.
///
/// # Safety
/// `path` must be a valid path.
pub unsafe fn pushed_join(path: *mut pg_sys::Path) -> Option<JoinInfo> {
    let private = pushed_private(path)?;
    let info = list_nodes(*private.get(5)? as *mut pg_sys::List);
    if info.is_empty() {
        return None;
    }
    let int = |node: *mut pg_sys::Node| (*(node as *mut pg_sys::Integer)).ival;
    Some(JoinInfo {
        outer: int(info[0]) as u32,
        inner: int(info[1]) as u32,
        jointype: int(info[2]) as pg_sys::JoinType::Type,
        restrictlist: info[3] as *mut pg_sys::List,
    })
}

impl PushedQuery {
    pub fn new(kind: Kind, tables: Vec<pg_sys::Oid>) -> Self {
        PushedQuery {
            kind,
            tables,
            sql: Sql::default(),
            markers: Vec::new(),
            pins: Vec::new(),
            columns: Vec::new(),
            local: Vec::new(),
            at_least_one: false,
            join: None,
            inner_join: None,
        }
    }

    /// Appends `body` (the FROM … WHERE … part of a query, with its own shard-name holes,
    /// tables and pins).
    pub fn append(&mut self, body: PushedQuery) {
        let shift = self.sql.parts.len() - 1;
        self.markers.extend(body.markers.iter().map(|m| m + shift));
        self.tables.extend(body.tables);
        self.pins.extend(body.pins);
        self.sql.append(body.sql);
    }

    /// Writes the name of the shard of `tables[table]` here (called in `tables` order).
    pub fn push_shard_name(&mut self, table: usize) {
        debug_assert_eq!(table, self.markers.len());
        self.markers.push(self.sql.parts.len() - 1);
        self.sql.parts.push(String::new());
    }

    /// A path producing `rel`'s target with this query.
    ///
    /// # Safety
    /// `rel` must be the relation being planned.
    pub unsafe fn into_path(self, rel: *mut pg_sys::RelOptInfo, rows: f64) -> *mut pg_sys::Path {
        let path = scan::remote_path(rel, rows.max(1.0), &PATH_METHODS.0);
        // [strings: kind, then the scan's header (relids, markers, pins, columns, at least one)
        //  and the SQL parts; the SQL values; the pins' values; the columns; local conditions]
        let all_columns: Vec<i16> = (1..=self.columns.len() as i16).collect();
        let header = [
            (if self.kind == Kind::Join {
                "join"
            } else {
                "aggregate"
            })
            .to_string(),
            join_numbers(self.tables.iter().map(|t| t.to_u32())),
            join_numbers(self.markers.iter().copied()),
            encode_pins(self.pins.iter().map(|(p, _)| *p)),
            encode_columns(&all_columns),
            if self.at_least_one { "1" } else { "" }.to_string(),
        ];
        let mut private = vec![
            strings_to_list(header.into_iter().chain(self.sql.parts)),
            make_list(self.sql.values),
            make_list(self.pins.iter().map(|(_, v)| *v)),
            make_list(self.columns),
            make_list(self.local),
        ];
        let int = |i: u32| pg_sys::makeInteger(i as i32) as *mut pg_sys::Node;
        private.push(match self.join {
            Some(join) => make_list([
                int(join.outer),
                int(join.inner),
                int(join.jointype),
                join.restrictlist as *mut pg_sys::Node,
            ]),
            None => std::ptr::null_mut(),
        });
        private.push(match self.inner_join {
            Some(join) => make_list([
                make_list(join.varnos.into_iter().map(int)) as *mut pg_sys::Node,
                make_list(join.clauses) as *mut pg_sys::Node,
            ]),
            None => std::ptr::null_mut(),
        });
        (*path).custom_private = make_list(private);
        path as *mut pg_sys::Path
    }
}

fn join_numbers<T: ToString>(numbers: impl Iterator<Item = T>) -> String {
    numbers.map(|n| n.to_string()).collect::<Vec<_>>().join(",")
}

#[pg_guard]
unsafe extern "C-unwind" fn plan_pushed(
    _root: *mut pg_sys::PlannerInfo,
    _rel: *mut pg_sys::RelOptInfo,
    best_path: *mut pg_sys::CustomPath,
    tlist: *mut pg_sys::List,
    _clauses: *mut pg_sys::List,
    _custom_plans: *mut pg_sys::List,
) -> *mut pg_sys::Plan {
    let private = list_nodes((*best_path).custom_private);
    let strings = list_to_strings(private[0] as *mut pg_sys::List);
    let columns = list_nodes(private[3] as *mut pg_sys::List);
    let scan_tlist = make_list(columns.iter().enumerate().map(|(i, expr)| {
        pg_sys::makeTargetEntry((*expr).cast(), i as i16 + 1, std::ptr::null_mut(), false)
    }));
    let cscan = scan::custom_scan(
        tlist,
        private[4] as *mut pg_sys::List,
        0,
        scan::pushed_scan_methods(strings[0] == "join"),
    );
    (*cscan).custom_scan_tlist = scan_tlist;
    (*cscan).custom_private = strings_to_list(strings[1..].iter().cloned());
    (*cscan).custom_exprs = make_list(
        list_nodes(private[1] as *mut pg_sys::List)
            .into_iter()
            .chain(list_nodes(private[2] as *mut pg_sys::List)),
    );
    cscan as *mut pg_sys::Plan
}
