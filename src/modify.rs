//! Writing sharded tables: INSERT, UPDATE and DELETE.
//!
//! INSERT is planned by PostgreSQL as usual (so defaults, sequences and identity columns are
//! evaluated once, on the coordinator, and INSERT … SELECT may read anything); the planner hook
//! then replaces the ModifyTable node by a pgshard node that hashes each new row's shard key and
//! sends the rows to their shards in multi-row INSERTs, with ON CONFLICT and RETURNING pushed.
//!
//! UPDATE and DELETE without other tables are sent whole to the shards: to the one shard the
//! shard key pins, else to every shard concurrently. Their SET and WHERE must be expressions a
//! worker can evaluate (with parameters and stable functions computed on the coordinator first).

use std::collections::VecDeque;

use futures_util::future::join_all;
use pgrx::prelude::*;
use tokio_postgres::SimpleQueryMessage;

use crate::deparse::{list_ints, list_nodes, list_pointers, make_list, Deparser, Sql};
use crate::error::PgShardError;
use crate::execution::{
    column_decoder, column_names, decode_columns, decode_pins, drop_with_memory_context,
    encode_columns, encode_pins, explain_text, init_expressions, list_to_strings, live_columns,
    store_text_row, strings_to_list, workers_of, KeyPin, Statement,
};
use crate::metadata::{self, cstr, quote_ident, ShardedTable};
use crate::planner::refuse_sharded;
use crate::remote;
use crate::rows::{TextDecoder, TextEncoder};
use crate::scan::{self, Methods};
use crate::xact::{self, Access};

static MODIFY_METHODS: Methods<pg_sys::CustomScanMethods> = Methods(pg_sys::CustomScanMethods {
    CustomName: c"pgshard modify".as_ptr(),
    CreateCustomScanState: Some(create_state),
});

static EXEC_METHODS: Methods<pg_sys::CustomExecMethods> = Methods(pg_sys::CustomExecMethods {
    CustomName: c"pgshard modify".as_ptr(),
    BeginCustomScan: Some(begin),
    ExecCustomScan: Some(exec),
    EndCustomScan: Some(end),
    ReScanCustomScan: None,
    MarkPosCustomScan: None,
    RestrPosCustomScan: None,
    EstimateDSMCustomScan: None,
    InitializeDSMCustomScan: None,
    ReInitializeDSMCustomScan: None,
    InitializeWorkerCustomScan: None,
    ShutdownCustomScan: None,
    ExplainCustomScan: Some(explain),
});

/// Rows per multi-row INSERT sent to one shard.
const INSERT_BATCH_ROWS: usize = 1000;

pub fn register() {
    // SAFETY: registers a static method table under its unique name.
    unsafe { pg_sys::RegisterCustomScanMethods(&MODIFY_METHODS.0) }
}

/// Whether `plan` is a pgshard write node (used by the planner guard).
pub unsafe fn is_pgshard_modify(plan: *mut pg_sys::Plan) -> bool {
    (*plan).type_ == pg_sys::NodeTag::T_CustomScan
        && std::ptr::eq(
            (*(plan as *mut pg_sys::CustomScan)).methods,
            &MODIFY_METHODS.0,
        )
}

/// The sharded table a statement writes to, if any.
pub unsafe fn sharded_target(parse: *mut pg_sys::Query) -> Option<(u32, pg_sys::Oid)> {
    let command = (*parse).commandType;
    if !matches!(
        command,
        pg_sys::CmdType::CMD_INSERT | pg_sys::CmdType::CMD_UPDATE | pg_sys::CmdType::CMD_DELETE
    ) || (*parse).resultRelation <= 0
    {
        return None;
    }
    let rti = (*parse).resultRelation as u32;
    let rte = *list_pointers((*parse).rtable).get(rti as usize - 1)? as *mut pg_sys::RangeTblEntry;
    metadata::first_sharded([(*rte).relid]).map(|oid| (rti, oid))
}

/// What the statement sends, stored in the plan's custom_private as strings:
/// `[kind, key pins, columns, parts…]`, with custom_exprs holding the holes then the pins.
struct Private {
    kind: String,
    pins: Vec<KeyPin>,
    /// Live columns, in attribute order.
    columns: Vec<i16>,
    parts: Vec<String>,
}

unsafe fn store(cscan: *mut pg_sys::CustomScan, private: &Private, values: Vec<*mut pg_sys::Node>) {
    let header = [
        private.kind.clone(),
        encode_pins(private.pins.iter().copied()),
        encode_columns(&private.columns),
    ];
    (*cscan).custom_private =
        strings_to_list(header.into_iter().chain(private.parts.iter().cloned()));
    for value in &values {
        pg_sys::fix_opfuncids(*value);
    }
    (*cscan).custom_exprs = make_list(values);
}

unsafe fn load(cscan: *mut pg_sys::CustomScan) -> Private {
    let strings = list_to_strings((*cscan).custom_private);
    Private {
        kind: strings[0].clone(),
        pins: decode_pins(&strings[1]),
        columns: decode_columns(&strings[2]),
        parts: strings[3..].to_vec(),
    }
}

fn unsupported(table: pg_sys::Oid, what: &str, why: &str) -> ! {
    let name = metadata::qualified_name(table);
    PgShardError::new(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("{what} is not supported on sharded table {name} yet"),
    )
    .detail(why.to_string())
    .hint("See docs/routing.md for the statements pgshard routes to the shards.")
    .raise()
}

/// The ON CONFLICT clause of an INSERT, deparsed before planning (the planner rewrites it).
pub unsafe fn on_conflict_sql(parse: *mut pg_sys::Query, rti: u32, relid: pg_sys::Oid) -> Sql {
    let mut sql = Sql::default();
    let conflict = (*parse).onConflict;
    if conflict.is_null() {
        return sql;
    }
    let table = metadata::sharded_table(relid).expect("sharded");
    let deparser = Deparser {
        excluded: (*conflict).exclRelIndex as u32,
        ..Deparser::table(rti, relid)
    };
    let fail = |why: &str| -> ! { unsupported(relid, "this INSERT … ON CONFLICT", why) };
    sql.push(" ON CONFLICT");
    let elems = list_nodes((*conflict).arbiterElems);
    if !elems.is_empty() {
        let mut has_key = false;
        sql.push(" (");
        for (i, elem) in elems.iter().enumerate() {
            let elem = *elem as *mut pg_sys::InferenceElem;
            let expr = (*elem).expr;
            if (*expr).type_ == pg_sys::NodeTag::T_Var
                && (*(expr as *mut pg_sys::Var)).varattno == table.key_attnum
            {
                has_key = true;
            }
            if i > 0 {
                sql.push(", ");
            }
            match deparser.deparse(expr) {
                Some(part) => sql.append(part),
                None => fail("Its conflict target cannot be sent to the workers."),
            }
        }
        sql.push(")");
        // A reference table's copies are whole: any unique index decides the conflict.
        if !has_key && !table.reference {
            fail(
                "The conflict target must include the shard key: uniqueness is enforced per shard.",
            );
        }
        if !(*conflict).arbiterWhere.is_null() {
            sql.push(" WHERE ");
            match deparser.deparse((*conflict).arbiterWhere) {
                Some(part) => sql.append(part),
                None => fail("Its conflict target's WHERE cannot be sent to the workers."),
            }
        }
    } else if (*conflict).constraint != pg_sys::InvalidOid {
        // Constraints backed by indexes carry the shard id in their name on the workers;
        // the name is filled in per shard (see `shard_sql`).
        sql.push(" ON CONSTRAINT ");
        sql.push(&format!(
            "\u{1}{}\u{1}",
            cstr(pg_sys::get_constraint_name((*conflict).constraint))
        ));
    }
    if (*conflict).action == pg_sys::OnConflictAction::ONCONFLICT_NOTHING {
        sql.push(" DO NOTHING");
        return sql;
    }
    sql.push(" DO UPDATE SET ");
    // The target's columns are written `r<rti>.column` (the INSERT names its target so), not
    // to be taken for EXCLUDED's.
    let deparser = Deparser {
        qualify_first: true,
        ..deparser
    };
    let set = assignments(&deparser, (*conflict).onConflictSet, &table, || {
        fail("ON CONFLICT DO UPDATE cannot change the shard key.")
    });
    match set {
        Some(part) => sql.append(part),
        None => fail("Its SET uses an expression that cannot run on the workers."),
    }
    if !(*conflict).onConflictWhere.is_null() {
        sql.push(" WHERE ");
        match deparser.deparse((*conflict).onConflictWhere) {
            Some(part) => sql.append(part),
            None => fail("Its WHERE uses an expression that cannot run on the workers."),
        }
    }
    sql
}

/// `col = expr, …` for the assignments of a target list (UPDATE's SET, ON CONFLICT DO
/// UPDATE's SET); `None` when an expression cannot run on the workers. Assigning the shard key
/// calls `key_assigned`, which raises.
unsafe fn assignments(
    deparser: &Deparser,
    target_list: *mut pg_sys::List,
    table: &ShardedTable,
    key_assigned: impl Fn(),
) -> Option<Sql> {
    let mut sql = Sql::default();
    let entries = list_pointers(target_list)
        .into_iter()
        .map(|entry| entry as *mut pg_sys::TargetEntry)
        .filter(|entry| !(**entry).resjunk);
    for (i, entry) in entries.enumerate() {
        if (*entry).resno == table.key_attnum {
            key_assigned();
            unreachable!("key_assigned raises");
        }
        if i > 0 {
            sql.push(", ");
        }
        sql.push(&quote_ident(&cstr(pg_sys::get_attname(
            table.oid,
            (*entry).resno,
            false,
        ))));
        sql.push(" = ");
        sql.append(deparser.deparse((*entry).expr as *mut pg_sys::Node)?);
    }
    Some(sql)
}

/// Replaces the ModifyTable at the top of a planned INSERT by the pgshard insert node.
pub unsafe fn route_insert(planned: *mut pg_sys::PlannedStmt, relid: pg_sys::Oid, conflict: Sql) {
    let top = (*planned).planTree;
    if (*top).type_ != pg_sys::NodeTag::T_ModifyTable {
        refuse_sharded(relid, "this INSERT");
    }
    let modify = top as *mut pg_sys::ModifyTable;
    let rti = list_ints((*modify).resultRelations)[0];
    let cscan =
        pg_sys::palloc0(std::mem::size_of::<pg_sys::CustomScan>()) as *mut pg_sys::CustomScan;
    (*cscan).scan.plan = (*modify).plan;
    (*cscan).scan.plan.type_ = pg_sys::NodeTag::T_CustomScan;
    (*cscan).scan.plan.lefttree = std::ptr::null_mut();
    (*cscan).scan.plan.righttree = std::ptr::null_mut();
    (*cscan).scan.plan.qual = std::ptr::null_mut();
    (*cscan).scan.scanrelid = rti;
    (*cscan).methods = &MODIFY_METHODS.0;
    (*cscan).custom_plans = make_list([(*modify).plan.lefttree]);
    let kind = if (*planned).hasReturning {
        "insert-returning"
    } else {
        "insert"
    };
    let private = Private {
        kind: kind.to_string(),
        pins: Vec::new(),
        columns: live_columns(relid),
        parts: conflict.parts,
    };
    store(cscan, &private, conflict.values);
    (*planned).planTree = cscan as *mut pg_sys::Plan;
}

/// Plans an UPDATE or DELETE on a sharded table as one statement per shard.
pub unsafe fn plan_update_delete(
    parse: *mut pg_sys::Query,
    rti: u32,
    relid: pg_sys::Oid,
) -> *mut pg_sys::PlannedStmt {
    let table = metadata::sharded_table(relid).expect("sharded");
    let command = (*parse).commandType;
    let what = if command == pg_sys::CmdType::CMD_UPDATE {
        "this UPDATE"
    } else {
        "this DELETE"
    };
    let fail = |why: &str| -> ! { unsupported(relid, what, why) };
    let from = list_nodes((*(*parse).jointree).fromlist);
    if from.len() != 1 || list_pointers((*parse).rtable).len() != 1 {
        fail("It reads other tables (FROM / USING); only the table itself can be read.");
    }
    if (*parse).hasSubLinks || !(*parse).cteList.is_null() {
        fail("It uses a subquery or a WITH clause.");
    }
    let deparser = Deparser::table(rti, relid);
    let mut sql = Sql::default();
    if command == pg_sys::CmdType::CMD_UPDATE {
        sql.push(" SET ");
        let set = assignments(&deparser, (*parse).targetList, &table, || {
            PgShardError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("cannot update shard key column \"{}\"", table.key_name),
            )
            .detail("Changing the shard key would move the row to another shard.")
            .hint("Delete the row and insert it again with the new key.")
            .raise()
        });
        match set {
            Some(part) => sql.append(part),
            None => fail("Its SET uses an expression that cannot run on the workers (a volatile or user-defined function, or another table's column)."),
        }
    }
    let quals = (*(*parse).jointree).quals;
    let mut pins = Vec::new();
    if !quals.is_null() {
        sql.push(" WHERE ");
        match deparser.deparse(quals) {
            Some(part) => sql.append(part),
            None => fail("Its WHERE uses an expression that cannot run on the workers (a volatile or user-defined function)."),
        }
        for clause in list_nodes(pg_sys::make_ands_implicit(quals as *mut pg_sys::Expr)) {
            if let Some(pin) = scan::key_pin(clause, rti, &table) {
                pins.push(pin);
            }
        }
    }
    let returning = !(*parse).returningList.is_null();
    let columns = live_columns(relid);
    let cscan = crate::scan::custom_scan(
        (*parse).returningList,
        std::ptr::null_mut(),
        rti,
        &MODIFY_METHODS.0,
    );
    pg_sys::fix_opfuncids((*parse).returningList as *mut pg_sys::Node);
    let kind = match (command == pg_sys::CmdType::CMD_UPDATE, returning) {
        (true, false) => "update",
        (true, true) => "update-returning",
        (false, false) => "delete",
        (false, true) => "delete-returning",
    };
    let private = Private {
        kind: kind.to_string(),
        pins: pins.iter().map(|(p, _)| *p).collect(),
        columns,
        parts: sql.parts,
    };
    let values = sql
        .values
        .into_iter()
        .chain(pins.iter().map(|(_, v)| *v))
        .collect();
    store(cscan, &private, values);

    let planned =
        pg_sys::palloc0(std::mem::size_of::<pg_sys::PlannedStmt>()) as *mut pg_sys::PlannedStmt;
    (*planned).type_ = pg_sys::NodeTag::T_PlannedStmt;
    (*planned).commandType = command;
    (*planned).queryId = (*parse).queryId;
    (*planned).hasReturning = returning;
    (*planned).canSetTag = (*parse).canSetTag;
    (*planned).planTree = cscan as *mut pg_sys::Plan;
    (*planned).rtable = (*parse).rtable;
    (*planned).relationOids = pg_sys::lappend_oid(std::ptr::null_mut(), relid);
    (*planned).stmt_location = (*parse).stmt_location;
    (*planned).stmt_len = (*parse).stmt_len;
    planned
}

#[repr(C)]
struct ModifyNode {
    css: pg_sys::CustomScanState,
    state: *mut ModifyExec,
}

struct ModifyExec {
    table: std::rc::Rc<ShardedTable>,
    private: Private,
    values: Vec<*mut pg_sys::ExprState>,
    value_nodes: Vec<*mut pg_sys::Node>,
    /// Whether statements are prepared on the workers, and the parameter types of the SQL
    /// holes (empty for an INSERT, whose parameters take their columns' types).
    parameter_types: Option<String>,
    /// RETURNING rows waiting to be emitted, as text of every live column.
    returned: VecDeque<Vec<Option<String>>>,
    decoder: TextDecoder,
    done: bool,
    /// (shard id, worker, statement) of the last run, for EXPLAIN ANALYZE.
    sent: Vec<(i64, String, String)>,
}

#[pg_guard]
unsafe extern "C-unwind" fn create_state(_cscan: *mut pg_sys::CustomScan) -> *mut pg_sys::Node {
    let node = pg_sys::palloc0(std::mem::size_of::<ModifyNode>()) as *mut ModifyNode;
    (*node).css.ss.ps.type_ = pg_sys::NodeTag::T_CustomScanState;
    (*node).css.methods = &EXEC_METHODS.0;
    node as *mut pg_sys::Node
}

#[pg_guard]
unsafe extern "C-unwind" fn begin(
    node: *mut pg_sys::CustomScanState,
    estate: *mut pg_sys::EState,
    eflags: i32,
) {
    let node = node as *mut ModifyNode;
    let cscan = (*node).css.ss.ps.plan as *mut pg_sys::CustomScan;
    for child in list_pointers((*cscan).custom_plans) {
        let state = pg_sys::ExecInitNode(child as *mut pg_sys::Plan, estate, eflags);
        (*node).css.custom_ps = pg_sys::lappend((*node).css.custom_ps, state.cast());
    }
    let relid = (*(*node).css.ss.ss_currentRelation).rd_id;
    let table =
        metadata::sharded_table(relid).unwrap_or_else(|| refuse_sharded(relid, "this statement"));
    let private = load(cscan);
    let (values, value_nodes) = init_expressions((*cscan).custom_exprs, &mut (*node).css.ss.ps);
    let decoder = column_decoder(
        (*(*node).css.ss.ss_currentRelation).rd_att,
        &private.columns,
    );
    let holes = private.parts.len() - 1;
    let parameter_types = if private.kind.starts_with("insert") {
        // A single-row INSERT sends its row as the parameters; one whose ON CONFLICT takes
        // values would make a new statement for each.
        (holes == 0 && crate::guc::prepare_on_workers()).then(String::new)
    } else {
        Statement::parameter_types(&value_nodes[..holes])
    };
    (*node).state = Box::into_raw(Box::new(ModifyExec {
        table,
        private,
        values,
        value_nodes,
        parameter_types,
        returned: VecDeque::new(),
        decoder,
        done: false,
        sent: Vec::new(),
    }));
    drop_with_memory_context(&mut (*node).state);
}

/// A write to one shard: its SQL with the values as literals, and the same as a statement to
/// prepare on the worker when it takes values.
struct ShardStatement {
    index: usize,
    sql: String,
    prepared: Option<Statement>,
}

impl ModifyExec {
    fn returning(&self) -> bool {
        self.private.kind.ends_with("-returning")
    }

    /// A statement's SQL for one shard: holes filled, constraint names given the shard id.
    fn shard_sql(&self, template: &str, shard_id: i64) -> String {
        let mut out = String::new();
        for (i, piece) in template.split('\u{1}').enumerate() {
            if i % 2 == 1 {
                out.push_str(&quote_ident(&pgshard_core::layout::shard_relation_name(
                    piece, shard_id,
                )));
            } else {
                out.push_str(piece);
            }
        }
        out
    }

    fn returning_clause(&self) -> String {
        if self.returning() {
            format!(
                " RETURNING {}",
                column_names(self.table.oid, &self.private.columns)
            )
        } else {
            String::new()
        }
    }

    /// Sends statements (shard index, SQL), all at once, and collects counts and rows. A
    /// reference table's copies all get the same statement; the first copy's count and rows
    /// are the statement's.
    unsafe fn send(&mut self, statements: Vec<ShardStatement>, estate: *mut pg_sys::EState) {
        if statements.is_empty() {
            return;
        }
        if self.table.reference {
            metadata::lock_reference_writes(self.table.oid);
        }
        let indexes: Vec<usize> = statements.iter().map(|s| s.index).collect();
        self.table = metadata::lock_for_writing(&self.table, &indexes);
        crate::stats::count(indexes.iter().map(|&i| self.table.shards[i].id), true);
        let workers = workers_of(statements.iter().map(|s| &self.table.shards[s.index]));
        let mut connections = xact::connections(&workers, Access::Write);
        let tokens: Vec<_> = connections
            .iter()
            .map(|c| c.client.cancel_token())
            .collect();
        let runs: Vec<_> = statements
            .iter()
            .map(|statement| {
                let connection = xact::connection_to(
                    &mut connections,
                    self.table.shards[statement.index].worker.id,
                );
                let (prepare, sql) = match &statement.prepared {
                    Some(prepared) => prepared.sends(connection),
                    None => (None, connection.prefixed(&statement.sql)),
                };
                let client = std::rc::Rc::clone(&connection.client);
                async move {
                    client
                        .after_prepare(prepare, client.simple_query(&sql))
                        .await
                }
            })
            .collect();
        let results = remote::wait(join_all(runs), &tokens);
        for (ShardStatement { index: i, sql, .. }, result) in statements.into_iter().zip(results) {
            let shard = &self.table.shards[i];
            self.sent.push((shard.id, shard.worker.name.clone(), sql));
            let counted = !self.table.reference || i == 0;
            match result {
                Ok(messages) => {
                    for message in messages.into_iter().filter(|_| counted) {
                        match message {
                            SimpleQueryMessage::Row(row) => self.returned.push_back(
                                (0..self.private.columns.len())
                                    .map(|c| row.get(c).map(str::to_owned))
                                    .collect(),
                            ),
                            SimpleQueryMessage::CommandComplete(n) => (*estate).es_processed += n,
                            _ => {}
                        }
                    }
                }
                Err(e) => remote::query_error(&e).raise_for(&shard.worker.name, "write to"),
            }
        }
    }

    /// INSERT: reads every new row from the child plan, sorts them by shard, and sends them.
    unsafe fn run_insert(&mut self, node: *mut ModifyNode) {
        let child =
            *list_pointers((*node).css.custom_ps).first().expect("child") as *mut pg_sys::PlanState;
        let estate = (*node).css.ss.ps.state;
        let relid = self.table.oid;
        let mut encoder = TextEncoder::new((*(*node).css.ss.ss_currentRelation).rd_att);
        let holes = self.private.parts.len() - 1;
        let econtext = (*node).css.ss.ps.ps_ExprContext;
        let rendered =
            scan::render_values(&self.values[..holes], &self.value_nodes[..holes], econtext);
        let conflict = Sql::render(&self.private.parts, |i| rendered[i].clone());
        let columns = column_names(relid, &self.private.columns);
        let returning = self.returning_clause();
        // Reading the child may itself query shards over the same connections: the rows are
        // held until it is done, so a write never waits behind a read still streaming.
        let child_reads_shards = plan_reads_shards((*child).plan);
        let rti = (*((*node).css.ss.ps.plan as *mut pg_sys::CustomScan))
            .scan
            .scanrelid;
        let mut batches: Vec<Vec<String>> = vec![Vec::new(); self.table.shards.len()];
        let placeholders = (0..self.private.columns.len())
            .map(Statement::placeholder)
            .collect::<Vec<_>>()
            .join(", ");
        let flush = |this: &mut Self, batches: &mut Vec<Vec<String>>, only_full: bool| {
            let statements: Vec<ShardStatement> = batches
                .iter_mut()
                .enumerate()
                .filter(|(_, b)| !b.is_empty() && (!only_full || b.len() >= INSERT_BATCH_ROWS))
                .map(|(i, b)| {
                    let shard = &this.table.shards[i];
                    let insert = |values: &str| {
                        format!(
                            "INSERT INTO {} AS r{rti} ({columns}) VALUES {values}{}{returning}",
                            shard.relation,
                            this.shard_sql(&conflict, shard.id)
                        )
                    };
                    let sql = insert(&b.join(", "));
                    // One row (the usual OLTP insert): its values are the parameters.
                    let prepared = match (&this.parameter_types, b.as_slice()) {
                        (Some(_), [row]) => Some(Statement {
                            key: format!(" AS {}", insert(&format!("({placeholders})"))),
                            args: row.clone(),
                        }),
                        _ => None,
                    };
                    b.clear();
                    ShardStatement {
                        index: i,
                        sql,
                        prepared,
                    }
                })
                .collect();
            this.send(statements, estate);
        };
        loop {
            let slot = pg_sys::ExecProcNode(child);
            if slot.is_null() || (*slot).tts_flags & pg_sys::TTS_FLAG_EMPTY as u16 != 0 {
                break;
            }
            pg_sys::slot_getallattrs(slot);
            let values: Vec<String> = self
                .private
                .columns
                .iter()
                .map(|&a| match encoder.text(slot, a as usize - 1) {
                    Some(text) => pgshard_core::layout::quote_literal(&text),
                    None => "NULL".to_string(),
                })
                .collect();
            let row = format!("({})", values.join(", "));
            let mut full = false;
            for index in crate::hashing::row_shards(&self.table, slot) {
                batches[index].push(row.clone());
                full |= batches[index].len() >= INSERT_BATCH_ROWS;
            }
            if !child_reads_shards && full {
                flush(self, &mut batches, true);
            }
        }
        flush(self, &mut batches, false);
    }

    /// UPDATE / DELETE: one statement per selected shard.
    unsafe fn run_statement(&mut self, node: *mut ModifyNode) {
        let econtext = (*node).css.ss.ps.ps_ExprContext;
        let holes = self.private.parts.len() - 1;
        let rendered =
            scan::render_values(&self.values[..holes], &self.value_nodes[..holes], econtext);
        let body = Sql::render(&self.private.parts, |i| rendered[i].clone());
        let body_with_parameters = self.parameter_types.as_ref().map(|types| {
            (
                types,
                Sql::render(&self.private.parts, Statement::placeholder),
            )
        });
        let selected = scan::pruned_shards(
            &self.table,
            &self.private.pins,
            &self.values[holes..],
            &self.value_nodes[holes..],
            econtext,
        );
        let verb = if self.private.kind.starts_with("update") {
            "UPDATE "
        } else {
            "DELETE FROM "
        };
        let returning = self.returning_clause();
        let statements = self
            .table
            .shards
            .iter()
            .enumerate()
            .filter(|(i, _)| selected[*i])
            .map(|(i, shard)| ShardStatement {
                index: i,
                sql: format!("{verb}{}{body}{returning}", shard.relation),
                prepared: body_with_parameters.as_ref().map(|(types, body)| {
                    let query = format!("{verb}{}{body}{returning}", shard.relation);
                    Statement::typed(types, &query, &rendered)
                }),
            })
            .collect();
        self.send(statements, (*node).css.ss.ps.state);
    }
}

/// Whether a plan tree holds a pgshard scan.
unsafe fn plan_reads_shards(plan: *mut pg_sys::Plan) -> bool {
    if plan.is_null() {
        return false;
    }
    if scan::is_pgshard_scan(plan) {
        return true;
    }
    // Conservative: anything that is not a plain VALUES/Result is assumed to possibly read.
    !matches!(
        (*plan).type_,
        pg_sys::NodeTag::T_Result | pg_sys::NodeTag::T_ValuesScan
    ) || plan_reads_shards((*plan).lefttree)
}

#[pg_guard]
unsafe extern "C-unwind" fn exec(
    node: *mut pg_sys::CustomScanState,
) -> *mut pg_sys::TupleTableSlot {
    let node = node as *mut ModifyNode;
    let state = &mut *(*node).state;
    if !state.done {
        state.done = true;
        if state.private.kind.starts_with("insert") {
            state.run_insert(node);
        } else {
            state.run_statement(node);
        }
    }
    let Some(row) = state.returned.pop_front() else {
        return std::ptr::null_mut();
    };
    let slot = (*node).css.ss.ss_ScanTupleSlot;
    let econtext = (*node).css.ss.ps.ps_ExprContext;
    pg_sys::MemoryContextReset((*econtext).ecxt_per_tuple_memory);
    store_text_row(
        slot,
        &state.private.columns,
        &mut state.decoder,
        (*econtext).ecxt_per_tuple_memory,
        |i| row[i].as_deref(),
    );
    (*econtext).ecxt_scantuple = slot;
    let projection = (*node).css.ss.ps.ps_ProjInfo;
    if projection.is_null() {
        return slot;
    }
    pg_sys::ExecProject(projection)
}

#[pg_guard]
unsafe extern "C-unwind" fn end(node: *mut pg_sys::CustomScanState) {
    for child in list_pointers((*node).custom_ps) {
        pg_sys::ExecEndNode(child as *mut pg_sys::PlanState);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn explain(
    node: *mut pg_sys::CustomScanState,
    _ancestors: *mut pg_sys::List,
    es: *mut pg_sys::ExplainState,
) {
    let node = node as *mut ModifyNode;
    let Some(state) = (*node).state.as_ref() else {
        return;
    };
    let property = |name: &str, value: &str| explain_text(es, name, value);
    property(
        "Operation",
        &state.private.kind.replace("-returning", " … RETURNING"),
    );
    if state.sent.is_empty() {
        if state.table.reference {
            property(
                "Copies",
                &format!("{} (all written)", state.table.shards.len()),
            );
        } else {
            property(
                "Shards",
                &format!(
                    "{} (chosen when the statement runs)",
                    state.table.shards.len()
                ),
            );
        }
        return;
    }
    property("Statements", &state.sent.len().to_string());
    let show = if (*es).verbose { state.sent.len() } else { 1 };
    for (shard, worker, sql) in state.sent.iter().take(show) {
        property("Task", &format!("shard {shard} on worker {worker}"));
        let shown: String = if sql.len() > 300 && !(*es).verbose {
            format!(
                "{}…",
                &sql[..sql
                    .char_indices()
                    .nth(300)
                    .map(|(i, _)| i)
                    .unwrap_or(sql.len())]
            )
        } else {
            sql.clone()
        };
        property("Remote SQL", &shown);
    }
}
