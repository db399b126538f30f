//! Reading sharded tables: a CustomScan that takes the place of every scan of a sharded table.
//!
//! Planning (`set_rel_pathlist_hook`): the only path left for a sharded table is this scan.
//! It pushes the filters that are safe to push (see `deparse`) and fetches only the columns the
//! query needs; PostgreSQL evaluates everything else on the coordinator, so any query shape
//! (joins, aggregates, subqueries, window functions) gets the right answer.
//!
//! Pruning: filters `key = value` and `key = ANY(array)`, with values that are constants,
//! parameters or other coordinator-evaluable expressions, are evaluated when the scan starts
//! (so a generic plan of a prepared statement prunes with the bound parameters), hashed, and
//! only the shards that can hold matching rows are queried.
//!
//! Execution: one query per shard, sent to all workers at once; rows are streamed back and
//! merged as they arrive.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::c_char;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use futures_util::stream::{Stream, StreamExt};
use futures_util::FutureExt;
use pgrx::prelude::*;
use tokio_postgres::{CancelToken, SimpleQueryMessage, SimpleQueryRow};

use crate::deparse::{self, list_nodes, list_pointers, make_list, Deparser, Sql};
use crate::error::PgShardError;
use crate::execution::{
    column_decoder, column_names, decode_columns, decode_pins, drop_with_memory_context,
    encode_columns, encode_pins, explain_text, init_expressions, list_to_strings, store_text_row,
    strings_to_list, workers_of, KeyPin, Statement,
};
use crate::metadata::{self, cstr, Shard, ShardedTable};
use crate::remote;
use crate::rows::TextDecoder;
use crate::xact::{self, Access};

/// Method tables hold C string pointers; they are immutable and shared by all backends' code.
pub struct Methods<T>(pub T);
// SAFETY: never written after initialisation; the pointers are to static C strings.
unsafe impl<T> Sync for Methods<T> {}

static PATH_METHODS: Methods<pg_sys::CustomPathMethods> = Methods(pg_sys::CustomPathMethods {
    CustomName: c"pgshard scan".as_ptr(),
    PlanCustomPath: Some(plan_scan),
    ReparameterizeCustomPathByChild: None,
});

static SCAN_METHODS: Methods<pg_sys::CustomScanMethods> = Methods(pg_sys::CustomScanMethods {
    CustomName: c"pgshard scan".as_ptr(),
    CreateCustomScanState: Some(create_scan_state),
});

static EXEC_METHODS: Methods<pg_sys::CustomExecMethods> = Methods(pg_sys::CustomExecMethods {
    CustomName: c"pgshard scan".as_ptr(),
    BeginCustomScan: Some(begin_scan),
    ExecCustomScan: Some(exec_scan),
    EndCustomScan: Some(end_scan),
    ReScanCustomScan: Some(end_scan),
    MarkPosCustomScan: None,
    RestrPosCustomScan: None,
    EstimateDSMCustomScan: None,
    InitializeDSMCustomScan: None,
    ReInitializeDSMCustomScan: None,
    InitializeWorkerCustomScan: None,
    ShutdownCustomScan: None,
    ExplainCustomScan: Some(explain_scan),
});

/// Cost of starting a remote query; high enough that the planner does not rescan shards in a
/// nested loop when it can hash or materialize instead.
const REMOTE_STARTUP_COST: f64 = 1000.0;
const REMOTE_ROW_COST: f64 = 0.02;

/// Pushed queries (`pushed.rs`) run with the same executor methods.
static AGGREGATE_SCAN_METHODS: Methods<pg_sys::CustomScanMethods> =
    Methods(pg_sys::CustomScanMethods {
        CustomName: c"pgshard aggregate".as_ptr(),
        CreateCustomScanState: Some(create_scan_state),
    });

static JOIN_SCAN_METHODS: Methods<pg_sys::CustomScanMethods> = Methods(pg_sys::CustomScanMethods {
    CustomName: c"pgshard join".as_ptr(),
    CreateCustomScanState: Some(create_scan_state),
});

pub fn pushed_scan_methods(join: bool) -> *const pg_sys::CustomScanMethods {
    if join {
        &JOIN_SCAN_METHODS.0
    } else {
        &AGGREGATE_SCAN_METHODS.0
    }
}

/// Whether `plan` is a pgshard scan (used by the planner guard).
pub unsafe fn is_pgshard_scan(plan: *mut pg_sys::Plan) -> bool {
    (*plan).type_ == pg_sys::NodeTag::T_CustomScan
        && std::ptr::eq(
            (*(plan as *mut pg_sys::CustomScan)).methods,
            &SCAN_METHODS.0,
        )
}

/// Registers the scan so that plans holding it can be copied and read back; from `_PG_init`.
pub fn register() {
    // SAFETY: registers static method tables under their unique names.
    unsafe {
        pg_sys::RegisterCustomScanMethods(&SCAN_METHODS.0);
        pg_sys::RegisterCustomScanMethods(&AGGREGATE_SCAN_METHODS.0);
        pg_sys::RegisterCustomScanMethods(&JOIN_SCAN_METHODS.0);
    }
}

/// `set_rel_pathlist_hook` body: replaces every path of a sharded table by the pgshard scan.
///
/// # Safety
/// Called by the planner with valid arguments.
pub unsafe fn replace_paths(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    rte: *mut pg_sys::RangeTblEntry,
) {
    if (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION
        || (*rte).relkind as u8 != b'r'
        || metadata::first_sharded([(*rte).relid]).is_none()
        || pg_sys::is_dummy_rel(rel)
    {
        return;
    }
    if !(*rte).tablesample.is_null() {
        crate::planner::refuse_sharded((*rte).relid, "TABLESAMPLE");
    }
    let _ = root;
    let path = remote_path(rel, (*rel).rows, &PATH_METHODS.0);
    (*rel).pathlist = std::ptr::null_mut();
    (*rel).partial_pathlist = std::ptr::null_mut();
    (*rel).cheapest_parameterized_paths = std::ptr::null_mut();
    pg_sys::add_path(rel, path as *mut pg_sys::Path);
}

/// A path of `rel` run by one remote query per shard (group): a remote start-up cost, then
/// a cost per returned row.
///
/// # Safety
/// `rel` must be the relation being planned.
pub unsafe fn remote_path(
    rel: *mut pg_sys::RelOptInfo,
    rows: f64,
    methods: *const pg_sys::CustomPathMethods,
) -> *mut pg_sys::CustomPath {
    let path =
        pg_sys::palloc0(std::mem::size_of::<pg_sys::CustomPath>()) as *mut pg_sys::CustomPath;
    (*path).path.type_ = pg_sys::NodeTag::T_CustomPath;
    (*path).path.pathtype = pg_sys::NodeTag::T_CustomScan;
    (*path).path.parent = rel;
    (*path).path.pathtarget = (*rel).reltarget;
    (*path).path.rows = rows;
    (*path).path.startup_cost = REMOTE_STARTUP_COST;
    (*path).path.total_cost = REMOTE_STARTUP_COST + rows * REMOTE_ROW_COST;
    (*path).methods = methods;
    path
}

/// A CustomScan plan node (its payload is filled in by the caller).
///
/// # Safety
/// Allocates in the current memory context.
pub unsafe fn custom_scan(
    targetlist: *mut pg_sys::List,
    qual: *mut pg_sys::List,
    scanrelid: u32,
    methods: *const pg_sys::CustomScanMethods,
) -> *mut pg_sys::CustomScan {
    let cscan =
        pg_sys::palloc0(std::mem::size_of::<pg_sys::CustomScan>()) as *mut pg_sys::CustomScan;
    (*cscan).scan.plan.type_ = pg_sys::NodeTag::T_CustomScan;
    (*cscan).scan.plan.targetlist = targetlist;
    (*cscan).scan.plan.qual = qual;
    (*cscan).scan.scanrelid = scanrelid;
    (*cscan).methods = methods;
    cscan
}

#[pg_guard]
unsafe extern "C-unwind" fn plan_scan(
    _root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    _best_path: *mut pg_sys::CustomPath,
    tlist: *mut pg_sys::List,
    clauses: *mut pg_sys::List,
    _custom_plans: *mut pg_sys::List,
) -> *mut pg_sys::Plan {
    let varno = (*rel).relid;
    let rte = *(*_root).simple_rte_array.add(varno as usize);
    let relid = (*rte).relid;
    let table = metadata::sharded_table(relid).expect("planned as sharded");
    // A write the planner hook did not route (inside WITH, or MERGE) reaches here as a scan of
    // its target; it needs row identities a remote row does not have.
    let parse = (*_root).parse;
    if (*parse).resultRelation as u32 == varno
        && (*parse).commandType != pg_sys::CmdType::CMD_SELECT
    {
        crate::planner::refuse_sharded(
            relid,
            "this UPDATE, DELETE or MERGE (inside WITH, or MERGE)",
        );
    }
    for rowmark in list_pointers((*_root).rowMarks) {
        if (*(rowmark as *mut pg_sys::PlanRowMark)).rti == varno {
            crate::planner::refuse_sharded(relid, "SELECT FOR UPDATE/SHARE");
        }
    }
    let deparser = Deparser::table(varno, relid);

    let mut remote = Sql::default();
    let mut local: Vec<*mut pg_sys::Node> = Vec::new();
    let mut pins: Vec<(KeyPin, *mut pg_sys::Node)> = Vec::new();
    for rinfo in list_pointers(clauses) {
        let rinfo = rinfo as *mut pg_sys::RestrictInfo;
        let clause = (*rinfo).clause as *mut pg_sys::Node;
        match ((*rinfo).pseudoconstant, deparser.deparse(clause)) {
            (false, Some(sql)) => {
                remote.push(if remote.parts.len() == 1 && remote.parts[0].is_empty() {
                    " WHERE "
                } else {
                    " AND "
                });
                remote.append(sql);
                if let Some(pin) = key_pin(clause, varno, &table) {
                    pins.push(pin);
                }
            }
            _ => local.push(clause),
        }
    }

    if local.is_empty() {
        if let Some(tail) = pushed_order_and_limit(_root, &deparser) {
            remote.append(tail);
        }
    }

    // Columns to fetch: those the target list and the local filters read.
    let mut attrs: *mut pg_sys::Bitmapset = std::ptr::null_mut();
    pg_sys::pull_varattnos(tlist as *mut pg_sys::Node, varno, &mut attrs);
    for clause in &local {
        pg_sys::pull_varattnos(*clause, varno, &mut attrs);
    }
    let natts = (*rel).max_attr;
    let mut columns: Vec<i16> = Vec::new();
    let mut member = -1;
    loop {
        member = pg_sys::bms_next_member(attrs, member);
        if member < 0 {
            break;
        }
        let attno = member + pg_sys::FirstLowInvalidHeapAttributeNumber;
        if attno == 0 {
            columns = (1..=natts).collect();
            break;
        }
        if attno < 0 {
            PgShardError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "system column \"{}\" is not available on sharded table {}",
                    cstr(pg_sys::get_attname(relid, attno as i16, false)),
                    metadata::qualified_name(table.oid)
                ),
            )
            .hint("Rows of a sharded table live on workers; select its own columns instead.")
            .raise()
        }
        columns.push(attno as i16);
    }
    columns.retain(|&a| !pg_sys::get_attname(relid, a, true).is_null());
    columns.sort_unstable();
    columns.dedup();

    let cscan = custom_scan(tlist, make_list(local), varno, &SCAN_METHODS.0);

    // custom_private: [relids, markers, pins, columns, at least one shard, SQL parts…];
    // custom_exprs: the SQL holes, then the pins.
    let header = [
        relid.to_u32().to_string(),
        String::new(),
        encode_pins(pins.iter().map(|(p, _)| *p)),
        encode_columns(&columns),
        String::new(),
    ];
    (*cscan).custom_private =
        strings_to_list(header.into_iter().chain(remote.parts.iter().cloned()));
    (*cscan).custom_exprs = make_list(
        remote
            .values
            .iter()
            .copied()
            .chain(pins.iter().map(|(_, v)| *v)),
    );
    cscan as *mut pg_sys::Plan
}

/// ORDER BY … LIMIT n for every shard, when the query reads only this table and applies
/// nothing between the scan and its own Sort/Limit that could drop or multiply rows (every filter
/// pushed; no grouping, aggregates, window functions, DISTINCT or set-returning functions).
/// Each shard then returns at most OFFSET + LIMIT rows, its own first ones; the coordinator keeps
/// its Sort and Limit and picks the global first ones among them. WITH TIES is pushed as is: a
/// shard's first n with ties hold every row of the global first n with ties that it has.
/// The sort keys must sort the same on a worker: pushable expressions, the type's default
/// ordering operators, and no locale-dependent collation.
unsafe fn pushed_order_and_limit(
    root: *mut pg_sys::PlannerInfo,
    deparser: &Deparser,
) -> Option<Sql> {
    let plain_single_table = pg_sys::bms_membership((*root).all_baserels)
        == pg_sys::BMS_Membership::BMS_SINGLETON
        && plain_select(root);
    if !plain_single_table {
        return None;
    }
    order_and_limit(root, deparser)
}

/// Whether nothing between the scan or join of a query and its own Sort/Limit can drop or
/// multiply rows: a SELECT without grouping, aggregates, window functions, DISTINCT,
/// set-returning functions, set operations or row locks.
///
/// # Safety
/// `root` must be the query being planned.
pub unsafe fn plain_select(root: *mut pg_sys::PlannerInfo) -> bool {
    let parse = (*root).parse;
    (*parse).commandType == pg_sys::CmdType::CMD_SELECT
        && !(*parse).hasAggs
        && !(*parse).hasWindowFuncs
        && !(*parse).hasTargetSRFs
        && (*parse).groupClause.is_null()
        && (*parse).groupingSets.is_null()
        && (*parse).havingQual.is_null()
        && (*parse).distinctClause.is_null()
        && (*parse).setOperations.is_null()
        && (*parse).rowMarks.is_null()
}

/// ` ORDER BY … LIMIT offset+n` (or `FETCH FIRST … WITH TIES`) of the query, when the sort keys
/// sort alike on a worker and LIMIT and OFFSET are constants; for a remote query whose rows are
/// final rows of the query (see `pushed_order_and_limit` and the grouped scan).
///
/// # Safety
/// `root` must be the query being planned.
pub unsafe fn order_and_limit(root: *mut pg_sys::PlannerInfo, deparser: &Deparser) -> Option<Sql> {
    let parse = (*root).parse;
    let count = const_int8((*parse).limitCount)?;
    let offset = if (*parse).limitOffset.is_null() {
        0
    } else {
        const_int8((*parse).limitOffset)?
    };
    let limit = count.max(0).checked_add(offset.max(0))?;

    let mut sql = Sql::default();
    for (i, clause) in list_pointers((*parse).sortClause).into_iter().enumerate() {
        let clause = clause as *mut pg_sys::SortGroupClause;
        let entry = pg_sys::get_sortgroupref_tle((*clause).tleSortGroupRef, (*parse).targetList);
        let expr = (*entry).expr as *mut pg_sys::Node;
        let direction = deparse::sort_direction(clause, expr)?;
        sql.push(if i == 0 { " ORDER BY " } else { ", " });
        sql.append(deparser.deparse(expr)?);
        sql.push(&direction);
    }
    if (*parse).limitOption == pg_sys::LimitOption::LIMIT_OPTION_WITH_TIES {
        sql.push(&format!(" FETCH FIRST {limit} ROWS WITH TIES"));
    } else {
        sql.push(&format!(" LIMIT {limit}"));
    }
    Some(sql)
}

/// The value of an int8 constant (LIMIT and OFFSET are int8); `None` for anything else, and for
/// NULL, which means no limit.
unsafe fn const_int8(node: *mut pg_sys::Node) -> Option<i64> {
    if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_Const {
        return None;
    }
    let c = node as *mut pg_sys::Const;
    if (*c).constisnull || (*c).consttype != pg_sys::INT8OID {
        return None;
    }
    Some((*c).constvalue.value() as i64)
}

/// Whether `expr` is the shard key column of `table` scanned as `varno` (under any relabelling).
///
/// # Safety
/// `expr` must be a valid expression.
pub unsafe fn is_key(expr: *mut pg_sys::Node, varno: u32, table: &ShardedTable) -> bool {
    if table.reference {
        return false;
    }
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

/// The sharded table scanned as range-table entry `varno`, if it is one.
///
/// # Safety
/// `root` must be the query being planned and `varno` one of its range-table entries.
pub unsafe fn sharded_table_at(
    root: *mut pg_sys::PlannerInfo,
    varno: u32,
) -> Option<Rc<ShardedTable>> {
    let rte = *(*root).simple_rte_array.add(varno as usize);
    if (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION {
        return None;
    }
    metadata::sharded_table((*rte).relid)
}

/// `key = value` or `key = ANY(array)` with a coordinator-evaluable value of the key's family.
pub unsafe fn key_pin(
    clause: *mut pg_sys::Node,
    varno: u32,
    table: &ShardedTable,
) -> Option<(KeyPin, *mut pg_sys::Node)> {
    let (opno, args, pin) = match (*clause).type_ {
        pg_sys::NodeTag::T_OpExpr => {
            let op = clause as *mut pg_sys::OpExpr;
            ((*op).opno, (*op).args, KeyPin::Equals)
        }
        pg_sys::NodeTag::T_ScalarArrayOpExpr => {
            let op = clause as *mut pg_sys::ScalarArrayOpExpr;
            if !(*op).useOr {
                return None;
            }
            ((*op).opno, (*op).args, KeyPin::AnyOf)
        }
        _ => return None,
    };
    let args = list_nodes(args);
    if args.len() != 2 || cstr(pg_sys::get_opname(opno)) != "=" {
        return None;
    }
    let key = |node: *mut pg_sys::Node| is_key(node, varno, table);
    let value = match (key(args[0]), key(args[1]), pin) {
        (true, false, _) => args[1],
        (false, true, KeyPin::Equals) => args[0],
        _ => return None,
    };
    if !deparse::coordinator_evaluable(value) && (*value).type_ != pg_sys::NodeTag::T_Const {
        return None;
    }
    let mut value_type = pg_sys::exprType(value);
    if pin == KeyPin::AnyOf {
        value_type = pg_sys::get_element_type(value_type);
    }
    let family = crate::hashing::family_of_type(value_type)?;
    (family == table.key_family).then_some((pin, value))
}

/// The executor node: PostgreSQL's CustomScanState followed by a pointer to the Rust state.
#[repr(C)]
struct ScanNode {
    css: pg_sys::CustomScanState,
    state: *mut ScanExec,
}

/// One query on one shard.
pub struct Task {
    pub shard: Shard,
    /// The query with its values as literals (what EXPLAIN shows and errors quote).
    pub sql: String,
    /// The same query as a statement to prepare on the worker, when it takes values.
    pub statement: Option<Statement>,
    pub rows: u64,
    /// Time from the start of the read to the task's last row (EXPLAIN ANALYZE).
    pub elapsed: Option<Duration>,
}

type RowStream =
    Pin<Box<dyn Stream<Item = (usize, Result<SimpleQueryMessage, tokio_postgres::Error>)>>>;

/// The socket side of a remote read: messages not yet handed to the executor.
struct ReadState {
    stream: Option<RowStream>,
    tokens: Vec<CancelToken>,
    buffer: VecDeque<(usize, Result<SimpleQueryMessage, tokio_postgres::Error>)>,
    workers: Vec<i32>,
    started: Instant,
    /// When each task's last message arrived.
    finished_after: Vec<Option<Duration>>,
}

thread_local! {
    /// Reads in progress. A worker's one connection answers its queries in order, and an
    /// unread answer holds back the ones after it; so a read that starts on a connection
    /// whose earlier read is unfinished (the inner side of a nested loop, a merge join) first
    /// takes that read's remaining messages into memory.
    static READS: RefCell<Vec<Weak<RefCell<ReadState>>>> = const { RefCell::new(Vec::new()) };
}

/// Unfinished reads other than `except` that use any of `workers`.
fn unfinished_reads_on(
    workers: &[i32],
    except: Option<&Rc<RefCell<ReadState>>>,
) -> Vec<Rc<RefCell<ReadState>>> {
    READS.with(|reads| {
        let mut reads = reads.borrow_mut();
        reads.retain(|r| r.strong_count() > 0);
        reads
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|r| except.is_none_or(|e| !Rc::ptr_eq(e, r)))
            .filter(|r| {
                let r = r.borrow();
                r.stream.is_some() && r.workers.iter().any(|w| workers.contains(w))
            })
            .collect()
    })
}

impl ReadState {
    /// Takes up to a batch of messages from the sockets into the buffer.
    fn fetch_batch(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let batch = remote::wait(
            async {
                let mut batch = Vec::new();
                let Some(first) = stream.next().await else {
                    return batch;
                };
                batch.push(Some(first));
                while batch.len() < FETCH_BATCH {
                    match stream.next().now_or_never() {
                        Some(Some(item)) => batch.push(Some(item)),
                        Some(None) => {
                            batch.push(None);
                            break;
                        }
                        None => break,
                    }
                }
                batch
            },
            &self.tokens,
        );
        if batch.is_empty() || batch.last().is_some_and(|b| b.is_none()) {
            self.stream = None;
        }
        for (index, message) in batch.into_iter().flatten() {
            if let Ok(SimpleQueryMessage::CommandComplete(_)) = message {
                self.finished_after[index] = Some(self.started.elapsed());
            }
            self.buffer.push_back((index, message));
        }
    }

    /// Takes every remaining message into the buffer.
    fn drain(&mut self) {
        while self.stream.is_some() {
            self.fetch_batch();
        }
    }
}

/// Remote queries of one statement, running concurrently, their rows merged as they come.
pub struct RemoteRows {
    pub tasks: Vec<Task>,
    read: Rc<RefCell<ReadState>>,
    pulled: u64,
    /// `pgshard.max_pulled_rows` when the read started.
    limit: Option<u64>,
}

/// Most rows taken from the sockets in one go before they are handed to the executor.
const FETCH_BATCH: usize = 1000;

impl RemoteRows {
    /// Sends every task's query (workers concurrently; a worker's tasks pipelined on its one
    /// connection).
    pub fn start(tasks: Vec<Task>, access: Access) -> Self {
        crate::stats::count(tasks.iter().map(|t| t.shard.id), access == Access::Write);
        let workers = workers_of(tasks.iter().map(|t| &t.shard));
        let worker_ids: Vec<i32> = workers.iter().map(|w| w.id).collect();
        for earlier in unfinished_reads_on(&worker_ids, None) {
            earlier.borrow_mut().drain();
        }
        let mut connections = xact::connections(&workers, access);
        let tokens: Vec<CancelToken> = connections
            .iter()
            .map(|c| c.client.cancel_token())
            .collect();
        let sends: Vec<_> = tasks
            .iter()
            .map(|task| {
                let connection = xact::connection_to(&mut connections, task.shard.worker.id);
                let (prepare, sql) = match &task.statement {
                    Some(statement) => statement.sends(connection),
                    None => (None, connection.prefixed(&task.sql)),
                };
                let client = Rc::clone(&connection.client);
                async move {
                    client
                        .after_prepare(prepare, client.simple_query_raw(&sql))
                        .await
                }
            })
            .collect();
        let started = Instant::now();
        let sent = remote::wait(futures_util::future::join_all(sends), &tokens);
        let mut streams = Vec::new();
        for (task, result) in tasks.iter().zip(sent) {
            match result {
                Ok(stream) => streams.push(Box::pin(stream)),
                Err(e) => remote::query_error(&e).raise_for(&task.shard.worker.name, "query"),
            }
        }
        let read = Rc::new(RefCell::new(ReadState {
            stream: Some(Box::pin(pgshard_core::merge::Merged::new(streams))),
            tokens,
            buffer: VecDeque::new(),
            workers: worker_ids,
            started,
            finished_after: vec![None; tasks.len()],
        }));
        READS.with(|reads| reads.borrow_mut().push(Rc::downgrade(&read)));
        RemoteRows {
            tasks,
            read,
            pulled: 0,
            limit: crate::guc::max_pulled_rows(),
        }
    }

    /// The next row of any task, with the task's index; `None` when all are done.
    pub fn next(&mut self) -> Option<(usize, SimpleQueryRow)> {
        loop {
            let item = {
                let mut read = self.read.borrow_mut();
                if read.buffer.is_empty() {
                    read.fetch_batch();
                }
                if read.buffer.is_empty() && read.stream.is_none() {
                    return None;
                }
                read.buffer.pop_front()
            };
            let Some((index, message)) = item else {
                continue;
            };
            match message {
                Ok(SimpleQueryMessage::Row(row)) => {
                    self.tasks[index].rows += 1;
                    self.pulled += 1;
                    if let Some(limit) = self.limit.filter(|l| self.pulled > *l) {
                        self.refuse_beyond(limit);
                    }
                    return Some((index, row));
                }
                Ok(_) => {}
                Err(e) => {
                    let worker = self.tasks[index].shard.worker.name.clone();
                    remote::query_error(&e).raise_for(&worker, "query");
                }
            }
        }
    }

    /// Command tags' row counts are not needed; a stream dropped before its end leaves its
    /// connection busy, so an unfinished read is read to its end (inside a transaction block,
    /// where the connection must be kept, or when another read shares the connection) or its
    /// connection is closed.
    pub fn stop(&mut self) {
        let workers = self.read.borrow().workers.clone();
        if self.read.borrow().stream.is_some()
            && unfinished_reads_on(&workers, Some(&self.read)).is_empty()
            && xact::discard_idle_readers(&workers)
        {
            self.read.borrow_mut().stream = None;
        }
        // The rest is read to keep the connection usable, not returned: it is not counted
        // against pgshard.max_pulled_rows, but an error in it is still raised.
        self.read.borrow_mut().drain();
        let rest = std::mem::take(&mut self.read.borrow_mut().buffer);
        for (index, message) in rest {
            if let Err(e) = message {
                let worker = self.tasks[index].shard.worker.name.clone();
                remote::query_error(&e).raise_for(&worker, "query");
            }
        }
        self.note_times();
    }

    /// Raises the error of a read that brought more than `pgshard.max_pulled_rows` rows.
    fn refuse_beyond(&self, limit: u64) -> ! {
        let first = &self.tasks[0];
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "a read of {} shard(s) brought more than {limit} rows to the coordinator",
                self.tasks.len()
            ),
        )
        .detail(format!("The first task was: {}", first.sql))
        .hint("Raise pgshard.max_pulled_rows (0 = no limit), or filter on columns the workers can evaluate.")
        .raise()
    }

    /// Copies into the tasks the times at which they finished.
    pub fn note_times(&mut self) {
        let finished_after = self.read.borrow().finished_after.clone();
        for (task, elapsed) in self.tasks.iter_mut().zip(finished_after) {
            task.elapsed = elapsed;
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn create_scan_state(cscan: *mut pg_sys::CustomScan) -> *mut pg_sys::Node {
    let node = pg_sys::palloc0(std::mem::size_of::<ScanNode>()) as *mut ScanNode;
    (*node).css.ss.ps.type_ = pg_sys::NodeTag::T_CustomScanState;
    (*node).css.methods = &EXEC_METHODS.0;
    let _ = cscan;
    node as *mut pg_sys::Node
}

/// The Rust side of a running scan.
struct ScanExec {
    /// The table scanned, or the co-located tables joined (pruned by the first).
    tables: Vec<Rc<ShardedTable>>,
    pins: Vec<KeyPin>,
    columns: Vec<i16>,
    /// What the remote queries of a table scan select: the columns, or NULL when none is
    /// needed.
    select_list: String,
    /// The SQL after the shard's name (table scans), or all of it with the name of the shard
    /// of table k at hole `markers[k]` (pushed queries).
    parts: Vec<String>,
    markers: Vec<usize>,
    /// Query one shard even when the filters select none (an aggregate without GROUP BY
    /// returns a row over no rows).
    at_least_one: bool,
    /// ExprStates of the SQL holes, then of the pins' values.
    values: Vec<*mut pg_sys::ExprState>,
    value_nodes: Vec<*mut pg_sys::Node>,
    /// The parameter types of the SQL holes when the queries are prepared on the workers.
    parameter_types: Option<String>,
    decoder: TextDecoder,
    rows: Option<RemoteRows>,
    /// Tasks of the last run, kept for EXPLAIN ANALYZE.
    finished: Vec<Task>,
}

#[pg_guard]
unsafe extern "C-unwind" fn begin_scan(
    node: *mut pg_sys::CustomScanState,
    _estate: *mut pg_sys::EState,
    _eflags: i32,
) {
    let node = node as *mut ScanNode;
    let cscan = (*node).css.ss.ps.plan as *mut pg_sys::CustomScan;
    let strings = list_to_strings((*cscan).custom_private);
    let relids: Vec<pg_sys::Oid> = strings[0]
        .split(',')
        .map(|r| pg_sys::Oid::from(r.parse::<u32>().expect("relid in plan")))
        .collect();
    let tables: Vec<Rc<ShardedTable>> = relids
        .iter()
        .map(|relid| {
            metadata::sharded_table(*relid).unwrap_or_else(|| {
                PgShardError::new(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("table with oid {} is no longer sharded", relid.to_u32()),
                )
                .hint("Run the statement again.")
                .raise()
            })
        })
        .collect();
    let relid = relids[0];
    let (markers, pins, columns, at_least_one, parts) = (
        strings[1]
            .split(',')
            .filter(|m| !m.is_empty())
            .map(|m| m.parse::<usize>().expect("marker in plan"))
            .collect::<Vec<_>>(),
        decode_pins(&strings[2]),
        decode_columns(&strings[3]),
        !strings[4].is_empty(),
        &strings[5..],
    );
    let (values, value_nodes) = init_expressions((*cscan).custom_exprs, &mut (*node).css.ss.ps);
    // The scan row: the table's row type, or the grouped scan's columns.
    let decoder = column_decoder(
        (*(*node).css.ss.ss_ScanTupleSlot).tts_tupleDescriptor,
        &columns,
    );
    let select_list = if !markers.is_empty() {
        String::new()
    } else if columns.is_empty() {
        "NULL".to_string()
    } else {
        column_names(relid, &columns)
    };
    let holes = values.len() - pins.len();
    let parameter_types = Statement::parameter_types(&value_nodes[..holes]);
    (*node).state = Box::into_raw(Box::new(ScanExec {
        tables,
        pins,
        columns,
        select_list,
        parts: parts.to_vec(),
        markers,
        at_least_one,
        values,
        value_nodes,
        parameter_types,
        decoder,
        rows: None,
        finished: Vec::new(),
    }));
    drop_with_memory_context(&mut (*node).state);
}

/// Evaluates an expression of the running plan.
pub unsafe fn evaluate(
    state: *mut pg_sys::ExprState,
    econtext: *mut pg_sys::ExprContext,
) -> (pg_sys::Datum, bool) {
    let mut is_null = false;
    let eval = (*state).evalfunc.expect("initialised expression");
    let datum = eval(state, econtext, &mut is_null);
    (datum, is_null)
}

impl ScanExec {
    /// The table whose shards make the tasks: the first hash-sharded one (the others are
    /// co-located with it), else the first reference table.
    fn driving_table(&self) -> &ShardedTable {
        self.tables
            .iter()
            .find(|t| !t.reference)
            .unwrap_or(&self.tables[0])
    }

    /// The shards to query and their SQL, from the current parameter values.
    unsafe fn tasks(&self, econtext: *mut pg_sys::ExprContext) -> Vec<Task> {
        let holes = self.values.len() - self.pins.len();
        let rendered = render_values(&self.values[..holes], &self.value_nodes[..holes], econtext);
        let table = self.driving_table();
        let mut selected = pruned_shards(
            table,
            &self.pins,
            &self.values[holes..],
            &self.value_nodes[holes..],
            econtext,
        );
        if table.reference {
            // Reference tables only: one copy answers.
            selected = vec![false; table.shards.len()];
            selected[0] = true;
        }
        if self.at_least_one && !selected.contains(&true) {
            selected[0] = true;
        }
        (0..table.shards.len())
            .filter(|i| selected[*i])
            .map(|i| {
                let shard = &table.shards[i];
                // Co-located shards share their range and, but for a move in progress, their
                // worker; reference tables are read from their copy on the shard's worker.
                let relations: Vec<&str> = self
                    .tables
                    .iter()
                    .map(|t| {
                        if t.reference {
                            return reference_copy(t, shard).relation.as_str();
                        }
                        let other = &t.shards[i];
                        if other.worker.id != shard.worker.id || other.range != shard.range {
                            PgShardError::new(
                                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                                format!(
                                    "shards {} and {} of co-located tables are not on the same worker",
                                    shard.id, other.id
                                ),
                            )
                            .hint("A shard move may be in progress; run the statement again.")
                            .raise()
                        }
                        other.relation.as_str()
                    })
                    .collect();
                let statement = self.parameter_types.as_ref().map(|types| {
                    let query = self.sql(Statement::placeholder, &relations);
                    Statement::typed(types, &query, &rendered)
                });
                Task {
                    shard: shard.clone(),
                    sql: self.sql(|i| rendered[i].clone(), &relations),
                    statement,
                    rows: 0,
                    elapsed: None,
                }
            })
            .collect()
    }

    /// The remote SQL with value hole `i` filled by `value(i)`, on the shard tables
    /// `relations` (one per table).
    fn sql(&self, value: impl Fn(usize) -> String, relations: &[&str]) -> String {
        if self.markers.is_empty() {
            return format!(
                "SELECT {} FROM {}{}",
                self.select_list,
                relations[0],
                Sql::render(&self.parts, value)
            );
        }
        Sql::render(&self.parts, |hole| {
            match self.markers.iter().position(|m| *m == hole) {
                Some(table) => relations[table].to_string(),
                None => value(hole - self.markers.iter().filter(|m| **m < hole).count()),
            }
        })
    }
}

/// The copy of reference table `table` on the worker of `shard`.
fn reference_copy<'a>(table: &'a ShardedTable, shard: &Shard) -> &'a Shard {
    table.copy_on(shard.worker.id).unwrap_or_else(|| {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "reference table {} has no copy on worker \"{}\"",
                metadata::qualified_name(table.oid),
                shard.worker.name
            ),
        )
        .hint("A worker may be being added; run the statement again.")
        .raise()
    })
}

/// The values of coordinator-evaluated expressions, as SQL literals.
pub unsafe fn render_values(
    states: &[*mut pg_sys::ExprState],
    nodes: &[*mut pg_sys::Node],
    econtext: *mut pg_sys::ExprContext,
) -> Vec<String> {
    states
        .iter()
        .zip(nodes)
        .map(|(state, node)| {
            let (datum, is_null) = evaluate(*state, econtext);
            deparse::literal(
                datum,
                is_null,
                pg_sys::exprType(*node),
                pg_sys::exprTypmod(*node),
            )
        })
        .collect()
}

/// Which shards can hold rows matching every pin (all of them when there is no pin).
pub unsafe fn pruned_shards(
    table: &ShardedTable,
    pins: &[KeyPin],
    states: &[*mut pg_sys::ExprState],
    nodes: &[*mut pg_sys::Node],
    econtext: *mut pg_sys::ExprContext,
) -> Vec<bool> {
    let mut selected: Vec<bool> = vec![true; table.shards.len()];
    for ((pin, state), node) in pins.iter().zip(states).zip(nodes) {
        let (datum, is_null) = evaluate(*state, econtext);
        let mut pinned = vec![false; table.shards.len()];
        if !is_null {
            let value_type = pg_sys::exprType(*node);
            let hashes: Vec<i64> = match pin {
                KeyPin::Equals => vec![crate::hashing::hash_datum(datum, value_type)],
                KeyPin::AnyOf => {
                    let element = pg_sys::get_element_type(value_type);
                    // NULL elements never equal a key.
                    array_elements(datum, element)
                        .into_iter()
                        .flatten()
                        .map(|d| crate::hashing::hash_datum(d, element))
                        .collect()
                }
            };
            for hash in hashes {
                pinned[table.shard_index_for_hash(hash)] = true;
            }
        }
        for (s, p) in selected.iter_mut().zip(pinned) {
            *s &= p;
        }
    }
    selected
}

/// The elements of an array datum, `None` for NULL elements.
pub unsafe fn array_elements(
    array: pg_sys::Datum,
    element_type: pg_sys::Oid,
) -> Vec<Option<pg_sys::Datum>> {
    let array = pg_sys::pg_detoast_datum(array.cast_mut_ptr()) as *mut pg_sys::ArrayType;
    let (mut len, mut byval, mut align) = (0i16, false, 0 as c_char);
    pg_sys::get_typlenbyvalalign(element_type, &mut len, &mut byval, &mut align);
    let mut values: *mut pg_sys::Datum = std::ptr::null_mut();
    let mut nulls: *mut bool = std::ptr::null_mut();
    let mut count = 0;
    pg_sys::deconstruct_array(
        array,
        element_type,
        len as i32,
        byval,
        align,
        &mut values,
        &mut nulls,
        &mut count,
    );
    (0..count as usize)
        .map(|i| (!*nulls.add(i)).then(|| *values.add(i)))
        .collect()
}

#[pg_guard]
unsafe extern "C-unwind" fn exec_scan(
    node: *mut pg_sys::CustomScanState,
) -> *mut pg_sys::TupleTableSlot {
    pg_sys::ExecScan(&mut (*node).ss, Some(next_row), Some(recheck_row))
}

#[pg_guard]
unsafe extern "C-unwind" fn next_row(ss: *mut pg_sys::ScanState) -> *mut pg_sys::TupleTableSlot {
    let node = ss as *mut ScanNode;
    let state = &mut *(*node).state;
    let econtext = (*ss).ps.ps_ExprContext;
    if state.rows.is_none() {
        let tasks = state.tasks(econtext);
        state.rows = Some(RemoteRows::start(tasks, Access::Read));
    }
    let slot = (*ss).ss_ScanTupleSlot;
    pg_sys::ExecClearTuple(slot);
    let Some((_, row)) = state.rows.as_mut().expect("started").next() else {
        return slot;
    };
    store_text_row(
        slot,
        &state.columns,
        &mut state.decoder,
        (*econtext).ecxt_per_tuple_memory,
        |i| row.get(i),
    );
    slot
}

#[pg_guard]
unsafe extern "C-unwind" fn recheck_row(
    _ss: *mut pg_sys::ScanState,
    _slot: *mut pg_sys::TupleTableSlot,
) -> bool {
    true
}

unsafe fn finish_run(state: &mut ScanExec) {
    if let Some(mut rows) = state.rows.take() {
        rows.stop();
        state.finished = std::mem::take(&mut rows.tasks);
    }
}

/// End and rescan alike: finish the current run (a rescan starts a new one at the next row).
#[pg_guard]
unsafe extern "C-unwind" fn end_scan(node: *mut pg_sys::CustomScanState) {
    let node = node as *mut ScanNode;
    if let Some(state) = (*node).state.as_mut() {
        finish_run(state);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn explain_scan(
    node: *mut pg_sys::CustomScanState,
    _ancestors: *mut pg_sys::List,
    es: *mut pg_sys::ExplainState,
) {
    let node = node as *mut ScanNode;
    let Some(state) = (*node).state.as_mut() else {
        return;
    };
    if let Some(rows) = state.rows.as_mut() {
        rows.note_times();
    }
    let ran: &[Task] = match &state.rows {
        Some(rows) => &rows.tasks,
        None => &state.finished,
    };
    let all_constant = state
        .value_nodes
        .iter()
        .all(|n| (**n).type_ == pg_sys::NodeTag::T_Const);
    let planned;
    let tasks: &[Task] = if !ran.is_empty() || (*es).analyze {
        ran
    } else if all_constant {
        planned = state.tasks((*node).css.ss.ps.ps_ExprContext);
        &planned
    } else {
        &[]
    };
    let property = |name: &str, value: &str| explain_text(es, name, value);
    let shards = state.driving_table().shard_count();
    if tasks.is_empty() && !(*es).analyze {
        property(
            "Shards",
            &format!("{shards} (pruned when the statement runs)"),
        );
        let hole = |i: usize| format!("${{{}}}", i + 1);
        if !state.markers.is_empty() {
            let relations = vec!["<shard>"; state.tables.len()];
            property("Remote SQL", &state.sql(hole, &relations));
            return;
        }
        let template = Sql::render(&state.parts, hole);
        property(
            "Remote Filter",
            if template.is_empty() {
                "(none)"
            } else {
                template.trim_start()
            },
        );
        return;
    }
    property("Shards", &format!("{} of {shards}", tasks.len()));
    let show = if (*es).verbose {
        tasks.len()
    } else {
        tasks.len().min(1)
    };
    for task in &tasks[..show] {
        property(
            "Task",
            &format!(
                "shard {} on worker {}",
                task.shard.id, task.shard.worker.name
            ),
        );
        property("Remote SQL", &task.sql);
        if (*es).analyze {
            property("Rows", &task.rows.to_string());
            if (*es).timing {
                if let Some(elapsed) = task.elapsed {
                    property("Time", &format!("{:.3} ms", elapsed.as_secs_f64() * 1000.0));
                }
            }
        }
    }
}
