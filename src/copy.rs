//! COPY with sharded and reference tables.
//!
//! `COPY t FROM …`: PostgreSQL's own COPY reader splits the input on the coordinator (every
//! format and option it has, with its errors and their `COPY t, line n` context). When nothing
//! needs the values on the coordinator, the raw fields go on as they are (`copy_fields.rs`);
//! otherwise the reader converts each row, fills in defaults and sequences, and applies the
//! WHERE clause. Each row is hashed to its shard and buffered per shard, and full buffers go to
//! their shards with `COPY … FROM STDIN` while reading goes on (see `shard_copy.rs`), so memory
//! stays bounded whatever the input size. Everything happens in the coordinator transaction's
//! remote transactions: a failed COPY leaves no row anywhere.
//!
//! `COPY t TO …` runs as `COPY (SELECT columns FROM t) TO …`, read through the pgshard scan.

use std::ffi::CString;

use pgrx::prelude::*;

use crate::copy_fields::RawFields;
use crate::deparse::{list_pointers, make_list};
use crate::error::PgShardError;
use crate::execution::{column_names, live_columns, palloc_string};
use crate::metadata::{self, cstr, quote_ident};
use crate::rows::TextEncoder;
use crate::shard_copy::ShardCopy;

unsafe extern "C-unwind" {
    /// PostgreSQL's own context callback of COPY FROM (`COPY t, line n, column c: …`), taken
    /// as the C function (pgrx wraps its binding in a Rust one).
    #[link_name = "CopyFromErrorCallback"]
    fn copy_from_error_callback(arg: *mut std::ffi::c_void);
}

/// The text of a String node (a column name in a list of names).
unsafe fn string_value(node: *mut pg_sys::Node) -> *mut std::ffi::c_char {
    (*(node as *mut pg_sys::String)).sval
}

/// Largest amount of COPY data buffered for one shard before it is sent.
const FLUSH_BYTES: usize = 1 << 20;

/// The sharded or reference table a COPY statement names, if any.
///
/// # Safety
/// `stmt` must be a valid CopyStmt.
pub unsafe fn distributed_target(stmt: *mut pg_sys::CopyStmt) -> Option<pg_sys::Oid> {
    if (*stmt).relation.is_null() {
        return None;
    }
    let oid = pg_sys::RangeVarGetRelidExtended(
        (*stmt).relation,
        pg_sys::NoLock as i32,
        pg_sys::RVROption::RVR_MISSING_OK,
        None,
        std::ptr::null_mut(),
    );
    metadata::first_sharded([oid])
}

/// `COPY t [(columns)] TO …` as `COPY (SELECT columns FROM t) TO …`: a copy of the statement
/// that PostgreSQL then runs as usual.
///
/// # Safety
/// `stmt` must be a valid CopyStmt naming a distributed table, `COPY … TO`.
pub unsafe fn as_query_copy(
    stmt: *mut pg_sys::CopyStmt,
    relid: pg_sys::Oid,
) -> *mut pg_sys::CopyStmt {
    let names = if (*stmt).attlist.is_null() {
        column_names(relid, &live_columns(relid))
    } else {
        list_pointers((*stmt).attlist)
            .into_iter()
            .map(|name| quote_ident(&cstr(string_value(name.cast()))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let select = format!("SELECT {names} FROM {}", metadata::qualified_name(relid));
    let text = CString::new(select).expect("no NUL in names");
    let parsed = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
    let raw = list_pointers(parsed)[0] as *mut pg_sys::RawStmt;
    let copy = pg_sys::copyObjectImpl(stmt.cast()) as *mut pg_sys::CopyStmt;
    (*copy).relation = std::ptr::null_mut();
    (*copy).attlist = std::ptr::null_mut();
    (*copy).query = (*raw).stmt;
    copy
}

/// Runs `COPY t FROM …` into a distributed table; returns the number of rows copied.
///
/// # Safety
/// `stmt` must be a valid CopyStmt naming a distributed table, `COPY … FROM`.
pub unsafe fn copy_from(stmt: *mut pg_sys::CopyStmt, query_string: *const std::ffi::c_char) -> u64 {
    let s = &*stmt;
    let pipe = s.filename.is_null();
    check_server_file_rights(pipe, s.is_program);

    let rel = pg_sys::table_openrv(s.relation, pg_sys::RowExclusiveLock as i32);
    let relid = (*rel).rd_id;
    let table = metadata::sharded_table(relid)
        .unwrap_or_else(|| crate::planner::refuse_sharded(relid, "COPY"));
    let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
    (*pstate).p_sourcetext = query_string;
    let nsitem = pg_sys::addRangeTableEntryForRelation(
        pstate,
        rel,
        pg_sys::RowExclusiveLock as i32,
        std::ptr::null_mut(),
        false,
        false,
    );
    let fields = input_columns(rel, s.attlist);
    check_insert_rights((*nsitem).p_rte, &fields);
    let qual = where_clause(pstate, nsitem, s.whereClause);
    if table.reference {
        metadata::lock_reference_writes(relid);
    }

    let cstate = pg_sys::BeginCopyFrom(
        pstate,
        rel,
        std::ptr::null_mut(),
        s.filename,
        s.is_program,
        None,
        s.attlist,
        s.options,
    );
    let estate = pg_sys::CreateExecutorState();
    let econtext = pg_sys::CreateExprContext(estate);
    let qual_state = if qual.is_null() {
        std::ptr::null_mut()
    } else {
        pg_sys::ExecPrepareQual(qual, estate)
    };
    let desc = (*rel).rd_att;
    // NOT NULL and CHECK constraints are checked here, as COPY into a local table does, so a
    // violation names the input line rather than a worker (the shards check again).
    let constraints = if (*desc).constr.is_null() {
        std::ptr::null_mut()
    } else {
        let info = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
            as *mut pg_sys::ResultRelInfo;
        (*info).type_ = pg_sys::NodeTag::T_ResultRelInfo;
        pg_sys::InitResultRelInfo(info, rel, 0, std::ptr::null_mut(), 0);
        info
    };
    let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsVirtual);
    let live = live_columns(relid);
    let raw = qual.is_null()
        && plain_constraints(desc)
        && crate::copy_fields::raw_options(s.options)
        && {
            let mut given = fields.clone();
            given.sort_unstable();
            given == live
        };

    // Errors while reading (the input's and ours, such as a NULL shard key) name the input
    // line, as COPY's own do. The context is set only while a row is read: a worker's error
    // names the line of its row itself (see ShardCopy), the last line read would mislead.
    let callback = pg_sys::palloc0(std::mem::size_of::<pg_sys::ErrorContextCallback>())
        as *mut pg_sys::ErrorContextCallback;
    (*callback).callback = Some(copy_from_error_callback);
    (*callback).arg = cstate.cast();
    let reading = || {
        (*callback).previous = pg_sys::error_context_stack;
        pg_sys::error_context_stack = callback;
    };
    let read = || pg_sys::error_context_stack = (*callback).previous;

    let row_memory = (*econtext).ecxt_per_tuple_memory;
    let mut processed: u64 = 0;
    if raw {
        let columns = column_names(relid, &fields);
        let mut copy = ShardCopy::new(&table, &columns, FLUSH_BYTES);
        copy.track_input_lines();
        let mut reader = RawFields::new(&table, rel, &fields, s.options);
        copy.load(|copy| {
            pg_sys::MemoryContextReset(row_memory);
            let previous = pg_sys::MemoryContextSwitchTo(row_memory);
            reading();
            let row = reader.next(cstate, slot, constraints, estate);
            read();
            if let Some(row) = &row {
                copy.push_from_line(row.targets.clone(), reader.values(), row.line);
                processed += 1;
            }
            pg_sys::MemoryContextSwitchTo(previous);
            row.is_some()
        });
    } else {
        let mut encoder = TextEncoder::new(desc);
        let columns = column_names(relid, &live);
        let copy = ShardCopy::new(&table, &columns, FLUSH_BYTES);
        copy.load(|copy| loop {
            pg_sys::MemoryContextReset(row_memory);
            let previous = pg_sys::MemoryContextSwitchTo(row_memory);
            reading();
            pg_sys::ExecClearTuple(slot);
            let more =
                pg_sys::NextCopyFrom(cstate, econtext, (*slot).tts_values, (*slot).tts_isnull);
            if !more {
                read();
                pg_sys::MemoryContextSwitchTo(previous);
                return false;
            }
            pg_sys::ExecStoreVirtualTuple(slot);
            (*econtext).ecxt_scantuple = slot;
            if !qual_state.is_null() && !pg_sys::ExecQual(qual_state, econtext) {
                read();
                pg_sys::MemoryContextSwitchTo(previous);
                continue;
            }
            if !constraints.is_null() {
                pg_sys::ExecConstraints(constraints, slot, estate);
            }
            let targets = crate::hashing::row_shards(&table, slot);
            let values: Vec<Option<String>> = live
                .iter()
                .map(|&a| encoder.text(slot, a as usize - 1))
                .collect();
            read();
            pg_sys::MemoryContextSwitchTo(previous);
            copy.push_texts(targets, &values);
            processed += 1;
            return true;
        });
    }

    pg_sys::EndCopyFrom(cstate);
    pg_sys::ExecDropSingleTupleTableSlot(slot);
    pg_sys::FreeExecutorState(estate);
    pg_sys::table_close(rel, pg_sys::NoLock as i32);
    processed
}

/// The columns the input gives, in input order: the column list, else every live column.
unsafe fn input_columns(rel: pg_sys::Relation, attlist: *mut pg_sys::List) -> Vec<i16> {
    if attlist.is_null() {
        return live_columns((*rel).rd_id);
    }
    list_pointers(attlist)
        .into_iter()
        .map(|name| {
            let name = string_value(name.cast());
            let attnum = pg_sys::attnameAttNum(rel, name, false);
            if attnum == pg_sys::InvalidAttrNumber as i32 {
                PgShardError::new(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!(
                        "column \"{}\" of relation \"{}\" does not exist",
                        cstr(name),
                        cstr((*(*rel).rd_rel).relname.data.as_ptr())
                    ),
                )
                .raise()
            }
            attnum as i16
        })
        .collect()
}

/// No CHECK constraint and no generated column: NOT NULL is all the coordinator checks.
unsafe fn plain_constraints(desc: pg_sys::TupleDesc) -> bool {
    let constr = (*desc).constr;
    constr.is_null() || ((*constr).num_check == 0 && !(*constr).has_generated_stored)
}

/// COPY from a server file or program needs the rights PostgreSQL asks for them.
unsafe fn check_server_file_rights(pipe: bool, program: bool) {
    if pipe {
        return;
    }
    let (role, what) = if program {
        (
            pg_sys::ROLE_PG_EXECUTE_SERVER_PROGRAM,
            "COPY from an external program",
        )
    } else {
        (pg_sys::ROLE_PG_READ_SERVER_FILES, "COPY from a file")
    };
    if !pg_sys::has_privs_of_role(pg_sys::GetUserId(), pg_sys::Oid::from(role)) {
        let role_name = if program {
            "pg_execute_server_program"
        } else {
            "pg_read_server_files"
        };
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be superuser or have privileges of the {role_name} role to {what}"),
        )
        .hint(
            "Anyone can COPY to stdout or from stdin. psql's \\copy command also works for anyone.",
        )
        .raise()
    }
}

/// INSERT on the table, or on each column copied, as COPY FROM requires.
unsafe fn check_insert_rights(rte: *mut pg_sys::RangeTblEntry, attnums: &[i16]) {
    (*rte).requiredPerms = pg_sys::ACL_INSERT as pg_sys::AclMode;
    for &attnum in attnums {
        (*rte).insertedCols = pg_sys::bms_add_member(
            (*rte).insertedCols,
            i32::from(attnum) - pg_sys::FirstLowInvalidHeapAttributeNumber,
        );
    }
    pg_sys::ExecCheckRTPerms(make_list([rte.cast::<pg_sys::Node>()]), true);
}

/// COPY FROM's WHERE clause, transformed as PostgreSQL does it, as an implicit-AND list (NULL
/// when there is none).
unsafe fn where_clause(
    pstate: *mut pg_sys::ParseState,
    nsitem: *mut pg_sys::ParseNamespaceItem,
    clause: *mut pg_sys::Node,
) -> *mut pg_sys::List {
    if clause.is_null() {
        return std::ptr::null_mut();
    }
    pg_sys::addNSItemToQuery(pstate, nsitem, false, true, true);
    let mut expr =
        pg_sys::transformExpr(pstate, clause, pg_sys::ParseExprKind::EXPR_KIND_COPY_WHERE);
    expr = pg_sys::coerce_to_boolean(pstate, expr, palloc_string("WHERE"));
    pg_sys::assign_expr_collations(pstate, expr);
    expr = pg_sys::eval_const_expressions(std::ptr::null_mut(), expr);
    expr = pg_sys::canonicalize_qual(expr.cast(), false).cast();
    pg_sys::make_ands_implicit(expr.cast())
}
