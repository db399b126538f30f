//! VACUUM and ANALYZE of distributed tables, from the utility hook: PostgreSQL's statement runs
//! on the coordinator's (empty) tables, then every shard of each distributed table named (every
//! distributed table, when none is named) runs the same command. The statement each shard runs
//! is built by `pgshard_core::maintenance`.
//!
//! VACUUM cannot run in a transaction block, on the workers either: it runs there outside
//! transactions, each worker's shards one after another, the workers in parallel. ANALYZE alone
//! inside a transaction block or a function runs in the distributed transaction (so it sees
//! shards the transaction created), and otherwise like VACUUM.

use pgrx::prelude::*;
use pgshard_core::maintenance::{Maintenance, OptionValue};

use crate::deparse::list_pointers;
use crate::error::PgShardError;
use crate::execution::workers_of;
use crate::metadata::{self, cstr, quote_ident, LatestSnapshot};
use crate::remote;
use crate::xact::{self, Access};

/// A VACUUM or ANALYZE the shards will run once PostgreSQL has run it on the coordinator.
pub struct Pending {
    maintenance: Maintenance,
    /// The distributed tables and the quoted columns given for each (empty: all).
    tables: Vec<(pg_sys::Oid, Vec<String>)>,
    /// Run by the client, not from inside a function (where ANALYZE may run too).
    top_level: bool,
}

/// Looks at a utility statement before PostgreSQL runs it; `Some` for a VACUUM or ANALYZE
/// that the shards of distributed tables must follow.
///
/// # Safety
/// `statement` must be NULL or a valid parse tree of a utility statement.
pub unsafe fn prepare(statement: *mut pg_sys::Node, top_level: bool) -> Option<Pending> {
    if statement.is_null()
        || (*statement).type_ != pg_sys::NodeTag::T_VacuumStmt
        || !metadata::any_sharded()
    {
        return None;
    }
    let stmt = statement as *mut pg_sys::VacuumStmt;
    let relations = list_pointers((*stmt).rels);
    let tables: Vec<(pg_sys::Oid, Vec<String>)> = if relations.is_empty() {
        metadata::sharded_table_oids()
            .into_iter()
            .map(|oid| (oid, Vec::new()))
            .collect()
    } else {
        relations
            .into_iter()
            .filter_map(|relation| {
                let relation = relation as *mut pg_sys::VacuumRelation;
                let oid = crate::ddl::relation_oid((*relation).relation)?;
                metadata::first_sharded([oid])?;
                let columns = list_pointers((*relation).va_cols)
                    .into_iter()
                    .map(|name| quote_ident(&cstr((*(name as *mut pg_sys::String)).sval)))
                    .collect();
                Some((oid, columns))
            })
            .collect()
    };
    // PostgreSQL skips, with a warning, the tables the user may not vacuum or analyze; their
    // shards are skipped too (the workers would not know: pgshard connects as its own role).
    let tables: Vec<_> = tables
        .into_iter()
        .filter(|(oid, _)| may_maintain(*oid))
        .collect();
    if tables.is_empty() {
        return None;
    }
    let options = list_pointers((*stmt).options)
        .into_iter()
        .map(|option| option_of(option as *mut pg_sys::DefElem))
        .collect();
    Some(Pending {
        maintenance: Maintenance {
            vacuum: (*stmt).is_vacuumcmd,
            options,
        },
        tables,
        top_level,
    })
}

/// An option's name and value, as PostgreSQL's own statement reads it.
unsafe fn option_of(option: *mut pg_sys::DefElem) -> (String, Option<OptionValue>) {
    let name = cstr((*option).defname);
    let arg = (*option).arg;
    if arg.is_null() {
        return (name, None);
    }
    let text = cstr(pg_sys::defGetString(option));
    let value = match (*arg).type_ {
        pg_sys::NodeTag::T_Integer | pg_sys::NodeTag::T_Float => OptionValue::Number(text),
        _ => OptionValue::Text(text),
    };
    (name, Some(value))
}

/// Whether the current user may vacuum the table as PostgreSQL decides it: its owner (or a
/// member of the owning role, or a superuser) or the database's owner.
fn may_maintain(oid: pg_sys::Oid) -> bool {
    // SAFETY: ownership checks of the current user.
    unsafe {
        let user = pg_sys::GetUserId();
        pg_sys::pg_class_ownercheck(oid, user)
            || pg_sys::pg_database_ownercheck(pg_sys::MyDatabaseId, user)
    }
}

/// Runs the statement on the shards of every table PostgreSQL has just processed.
pub fn apply(pending: Pending) {
    // VACUUM leaves no active snapshot; the catalog reads need one.
    let _latest = LatestSnapshot::push();
    let maintenance = &pending.maintenance;
    let mut shards = Vec::new();
    for (oid, columns) in &pending.tables {
        // Moves and splits take this lock: the shards stay where they are until the end.
        if !metadata::lock_against_operations(*oid, !maintenance.skip_locked()) {
            PgShardError::new(
                PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                format!(
                    "skipping the shards of {}: lock not available",
                    metadata::qualified_name(*oid)
                ),
            )
            .hint("Another VACUUM or ANALYZE of the table, a shard move or split, or a schema change holds it; run the statement again later.")
            .warn();
            continue;
        }
        // Dropped since PostgreSQL's own statement ran (it released its lock): nothing to do.
        let Some(table) = metadata::sharded_table(*oid) else {
            continue;
        };
        for shard in &table.shards {
            shards.push((
                shard.clone(),
                maintenance.statement(&shard.relation, columns),
            ));
        }
    }
    if shards.is_empty() {
        return;
    }
    let workers = workers_of(shards.iter().map(|(shard, _)| shard));
    let scripts: Vec<Vec<String>> = workers
        .iter()
        .map(|worker| {
            shards
                .iter()
                .filter(|(shard, _)| shard.worker.id == worker.id)
                .map(|(_, statement)| statement.clone())
                .collect()
        })
        .collect();
    let doing = if maintenance.vacuum {
        "vacuum shards on"
    } else {
        "analyze shards on"
    };
    // SAFETY: reads the transaction state of this backend.
    let in_transaction = unsafe { pg_sys::IsTransactionBlock() } || !pending.top_level;
    if maintenance.outside_transactions(in_transaction) {
        if let Err((worker, error)) = remote::run_outside_transactions(&workers, &scripts) {
            error.raise_for(&worker, doing);
        }
        return;
    }
    let mut connections = xact::connections(&workers, Access::Write);
    let joined = connections
        .iter()
        .map(|c| {
            let index = workers.iter().position(|w| w.id == c.worker.id);
            scripts[index.expect("a connection per worker")].join("; ")
        })
        .collect();
    let results = xact::run_scripts(&mut connections, joined);
    for (connection, result) in connections.iter().zip(results) {
        if let Err(e) = result {
            remote::query_error(&e).raise_for(&connection.worker.name, doing);
        }
    }
}
