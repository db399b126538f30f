//! Executor glue shared by the pgshard scan and write nodes: their state's lifetime, plan
//! payloads, rows from workers into slots, and EXPLAIN lines.

use std::ffi::CString;

use pgrx::prelude::*;

use crate::deparse::{list_nodes, list_pointers, make_list};
use crate::metadata::{cstr, quote_ident, Shard};
use crate::remote::Worker;
use crate::rows::TextDecoder;
use pgshard_core::statements;

/// How a pushed filter pins the shard key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KeyPin {
    /// `key = value`
    Equals,
    /// `key = ANY(array)`
    AnyOf,
}

/// Pins as stored in a plan (one letter each).
pub fn encode_pins(pins: impl IntoIterator<Item = KeyPin>) -> String {
    pins.into_iter()
        .map(|p| if p == KeyPin::Equals { 'e' } else { 'a' })
        .collect()
}

pub fn decode_pins(text: &str) -> Vec<KeyPin> {
    text.chars()
        .map(|c| {
            if c == 'e' {
                KeyPin::Equals
            } else {
                KeyPin::AnyOf
            }
        })
        .collect()
}

/// Attribute numbers as stored in a plan (comma-separated).
pub fn encode_columns(columns: &[i16]) -> String {
    columns
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn decode_columns(text: &str) -> Vec<i16> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("attribute number"))
        .collect()
}

/// Strings as a List of String nodes, for a plan's custom_private.
///
/// # Safety
/// Allocates in the current memory context.
pub unsafe fn strings_to_list(strings: impl IntoIterator<Item = String>) -> *mut pg_sys::List {
    make_list(
        strings
            .into_iter()
            .map(|s| pg_sys::makeString(palloc_string(&s))),
    )
}

/// A copy of `text` in the current memory context, as PostgreSQL nodes hold their strings
/// (freed with the context; never with Rust's allocator).
///
/// # Safety
/// Allocates in the current memory context.
pub unsafe fn palloc_string(text: &str) -> *mut std::ffi::c_char {
    let text = CString::new(text.replace('\0', "")).expect("NULs removed");
    pg_sys::pstrdup(text.as_ptr())
}

/// # Safety
/// `list` must be a List of String nodes.
pub unsafe fn list_to_strings(list: *mut pg_sys::List) -> Vec<String> {
    list_pointers(list)
        .into_iter()
        .map(|s| cstr((*(s as *mut pg_sys::String)).sval))
        .collect()
}

/// Initialises a plan's expressions for evaluation by `parent`.
///
/// # Safety
/// `list` must hold executable expressions of `parent`'s plan.
pub unsafe fn init_expressions(
    list: *mut pg_sys::List,
    parent: *mut pg_sys::PlanState,
) -> (Vec<*mut pg_sys::ExprState>, Vec<*mut pg_sys::Node>) {
    let nodes = list_nodes(list);
    let states = nodes
        .iter()
        .map(|expr| pg_sys::ExecInitExpr(*expr as *mut pg_sys::Expr, parent))
        .collect();
    (states, nodes)
}

/// A decoder for some columns of a relation.
///
/// # Safety
/// `desc` must be the relation's descriptor and `columns` live attribute numbers of it.
pub unsafe fn column_decoder(desc: pg_sys::TupleDesc, columns: &[i16]) -> TextDecoder {
    TextDecoder::new(columns.iter().map(|&attno| {
        let attr = (*desc).attrs.as_ptr().add(attno as usize - 1);
        ((*attr).atttypid, (*attr).atttypmod)
    }))
}

/// Hands `*state` (a boxed Rust value owned by an executor node) to the current memory
/// context: it is dropped when the executor's memory goes, on success and on error alike.
///
/// # Safety
/// `state` must point into memory of the current context and hold NULL or a `Box<T>` pointer.
pub unsafe fn drop_with_memory_context<T>(state: *mut *mut T) {
    unsafe extern "C-unwind" fn drop_state<T>(arg: *mut std::ffi::c_void) {
        let state = arg as *mut *mut T;
        if !(*state).is_null() {
            drop(Box::from_raw(*state));
            *state = std::ptr::null_mut();
        }
    }
    let callback = pg_sys::palloc0(std::mem::size_of::<pg_sys::MemoryContextCallback>())
        as *mut pg_sys::MemoryContextCallback;
    (*callback).func = Some(drop_state::<T>);
    (*callback).arg = state.cast();
    pg_sys::MemoryContextRegisterResetCallback(pg_sys::CurrentMemoryContext, callback);
}

/// Stores a row received as text into `slot` (the relation's row type): `columns` get the
/// decoded values, allocated in `memory`; every other column is NULL.
///
/// # Safety
/// `slot` must have the relation's descriptor; `decoder` must decode `columns`.
pub unsafe fn store_text_row<'a>(
    slot: *mut pg_sys::TupleTableSlot,
    columns: &[i16],
    decoder: &mut TextDecoder,
    memory: pg_sys::MemoryContext,
    value: impl Fn(usize) -> Option<&'a str>,
) {
    pg_sys::ExecClearTuple(slot);
    let natts = (*(*slot).tts_tupleDescriptor).natts as usize;
    for i in 0..natts {
        *(*slot).tts_isnull.add(i) = true;
        *(*slot).tts_values.add(i) = pg_sys::Datum::from(0);
    }
    let previous = pg_sys::MemoryContextSwitchTo(memory);
    for (i, &attno) in columns.iter().enumerate() {
        let (datum, is_null) = decoder.datum(i, value(i));
        *(*slot).tts_values.add(attno as usize - 1) = datum;
        *(*slot).tts_isnull.add(attno as usize - 1) = is_null;
    }
    pg_sys::MemoryContextSwitchTo(previous);
    pg_sys::ExecStoreVirtualTuple(slot);
}

/// One `name: value` line of EXPLAIN (a property in the structured formats).
///
/// # Safety
/// `es` must be the ExplainState of the running EXPLAIN.
pub unsafe fn explain_text(es: *mut pg_sys::ExplainState, name: &str, value: &str) {
    let name = CString::new(name).expect("no NUL");
    let value = CString::new(value.replace('\0', "")).expect("NULs removed");
    pg_sys::ExplainPropertyText(name.as_ptr(), value.as_ptr(), es);
}

/// The distinct workers of some shards, in first-seen order.
pub fn workers_of<'a>(shards: impl IntoIterator<Item = &'a Shard>) -> Vec<Worker> {
    let mut workers: Vec<Worker> = Vec::new();
    for shard in shards {
        if !workers.iter().any(|w| w.id == shard.worker.id) {
            workers.push(shard.worker.clone());
        }
    }
    workers
}

/// For each of `workers`, the statements `render` gives for its shards among `shards`, in
/// order: the scripts of `remote::run_outside_transactions`.
pub fn statements_per_worker(
    shards: &[Shard],
    workers: &[Worker],
    render: impl Fn(&Shard) -> Vec<String>,
) -> Vec<Vec<String>> {
    workers
        .iter()
        .map(|worker| {
            shards
                .iter()
                .filter(|s| s.worker.id == worker.id)
                .flat_map(&render)
                .collect()
        })
        .collect()
}

/// A relation's live (not dropped) columns, in attribute order.
///
/// # Safety
/// `relid` must be a relation this statement has locked.
pub unsafe fn live_columns(relid: pg_sys::Oid) -> Vec<i16> {
    let rel = pg_sys::RelationIdGetRelation(relid);
    let desc = (*rel).rd_att;
    let columns = (0..(*desc).natts as usize)
        .filter(|&i| !(*(*desc).attrs.as_ptr().add(i)).attisdropped)
        .map(|i| i as i16 + 1)
        .collect();
    pg_sys::RelationClose(rel);
    columns
}

/// Quoted names of some columns of a relation, comma-separated.
pub fn column_names(relid: pg_sys::Oid, columns: &[i16]) -> String {
    columns
        .iter()
        // SAFETY: names of live columns of a relation in use.
        .map(|&a| quote_ident(&cstr(unsafe { pg_sys::get_attname(relid, a, false) })))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A remote query as a statement with parameters: sent as `EXECUTE name(args)`, after a
/// `PREPARE name key` the first time on a connection.
pub struct Statement {
    /// `(parameter types) AS query with $1, $2, …`; without the types when the worker infers
    /// them (an INSERT's values take their columns' types).
    pub key: String,
    /// `(value literal, …)`.
    pub args: String,
}

impl Statement {
    /// The statement `query` (values written as [`Statement::placeholder`]) with parameters of
    /// `types`, executed with `values` (literals).
    pub fn typed(types: &str, query: &str, values: &[String]) -> Self {
        Statement {
            key: format!("({types}) AS {query}"),
            args: format!("({})", values.join(", ")),
        }
    }

    /// The placeholder of the value in hole `index` (0-based): `$1`, `$2`, …
    pub fn placeholder(index: usize) -> String {
        format!("${}", index + 1)
    }

    /// Whether statements whose value holes are `nodes` are prepared on the workers, and their
    /// parameter types if so: not when pgshard.prepare_on_workers is off, when there is no
    /// hole, or when a value's type is a pseudo-type.
    pub unsafe fn parameter_types(nodes: &[*mut pg_sys::Node]) -> Option<String> {
        if nodes.is_empty() || !crate::guc::prepare_on_workers() {
            return None;
        }
        let types: Option<Vec<String>> = nodes
            .iter()
            .map(|n| crate::deparse::parameter_type(*n))
            .collect();
        Some(types?.join(", "))
    }

    /// What to send for this statement on `connection`: a PREPARE to send first (with what to
    /// confirm once it succeeded), and the EXECUTE.
    pub fn sends(
        &self,
        connection: &mut crate::xact::Connection,
    ) -> (Option<(String, statements::Pending)>, String) {
        let lookup = connection
            .client
            .statements
            .borrow_mut()
            .lookup(&self.key, crate::metadata::generation());
        match lookup {
            statements::Lookup::Execute(name) => (
                None,
                connection.prefixed(&format!("EXECUTE {name}{}", self.args)),
            ),
            statements::Lookup::Prepare {
                name,
                deallocate_first,
                pending,
            } => {
                let deallocate = if deallocate_first {
                    "DEALLOCATE ALL;"
                } else {
                    ""
                };
                let prepare =
                    connection.prefixed(&format!("{deallocate}PREPARE {name}{}", self.key));
                (
                    Some((prepare, pending)),
                    format!("EXECUTE {name}{}", self.args),
                )
            }
        }
    }
}
