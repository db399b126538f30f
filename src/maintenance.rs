//! VACUUM and ANALYZE of distributed tables, from the utility hook: PostgreSQL's statement runs
//! on the coordinator's (empty) tables, then every shard of each distributed table named (every
//! distributed table, when none is named) runs the same command. The statement each shard runs
//! is built by `pgshard_core::maintenance`.
//!
//! VACUUM cannot run in a transaction block, on the workers either: it runs there outside
//! transactions, each worker's shards one after another, the workers in parallel. ANALYZE alone
//! inside a transaction block or a function runs in the distributed transaction (so it sees
//! shards the transaction created), and otherwise like VACUUM.

use std::rc::Rc;

use pgrx::prelude::*;
use pgshard_core::maintenance::{Maintenance, OptionValue};

use crate::deparse::list_pointers;
use crate::error::PgShardError;
use crate::execution::{statements_per_worker, workers_of};
use crate::metadata::{self, cstr, quote_ident, Shard, ShardedTable};
use crate::remote;

/// A VACUUM or ANALYZE the shards will run once PostgreSQL has run it on the coordinator.
pub struct Pending {
    maintenance: Maintenance,
    /// The distributed tables and the quoted columns given for each (empty: all).
    tables: Vec<(pg_sys::Oid, Vec<String>)>,
    /// The statement is part of a larger transaction (a transaction block, or a function's
    /// statement), as PostgreSQL's `IsInTransactionBlock` tells it.
    in_outer_transaction: bool,
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
    // shards are skipped too (the workers would not know: pgshard connects as the conninfo's
    // user, which may own the shards).
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
        in_outer_transaction: pg_sys::IsInTransactionBlock(top_level),
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
    let maintenance = &pending.maintenance;
    let doing = if maintenance.vacuum {
        "vacuum shards on"
    } else {
        "analyze shards on"
    };
    // A read-only transaction cannot have created shards, and could not record a two-phase
    // commit's decision: its ANALYZE runs outside it.
    // SAFETY: reads a global of this backend.
    let read_only = unsafe { pg_sys::XactReadOnly };
    let outside = maintenance.outside_transactions(pending.in_outer_transaction && !read_only);
    for (oid, columns) in &pending.tables {
        let Some(table) = lock_table(*oid, maintenance) else {
            continue;
        };
        let statement = |shard: &Shard| maintenance.statement(&shard.relation, columns);
        if !outside {
            // In the transaction's remote transactions; the lock is held to its end.
            crate::tables::run_on_workers_of(&table.shards, doing, |shards| {
                shards
                    .iter()
                    .map(|s| statement(s))
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            continue;
        }
        // Table by table, as PostgreSQL's VACUUM does: each table's lock is held only while its
        // shards run (no lock order between tables to deadlock on, moves of the other tables
        // go on), and no snapshot is held while the workers work, which would hold back the
        // coordinator's cleanup horizon for the whole run.
        // SAFETY: drops this backend's catalog snapshot; the next catalog access takes a new one.
        unsafe { pg_sys::InvalidateCatalogSnapshot() };
        let workers = workers_of(&table.shards);
        let scripts = statements_per_worker(&table.shards, &workers, |s| vec![statement(s)]);
        let result = remote::run_outside_transactions(&workers, &scripts);
        // SAFETY: releases the lock lock_table took in this transaction.
        unsafe { pg_sys::UnlockRelationOid(*oid, pg_sys::ShareUpdateExclusiveLock as i32) };
        if let Err((worker, error)) = result {
            error.raise_for(&worker, doing);
        }
    }
}

/// Takes the lock moves and splits take on the table, so that its shards stay where they are,
/// and reads the table; `None` when it is skipped (its lock is not free under SKIP_LOCKED, or
/// it was dropped since PostgreSQL's statement ran).
fn lock_table(oid: pg_sys::Oid, maintenance: &Maintenance) -> Option<Rc<ShardedTable>> {
    if !metadata::lock_against_operations(oid, !maintenance.skip_locked()) {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
            format!(
                "skipping the shards of {}: lock not available",
                metadata::qualified_name(oid)
            ),
        )
        .hint("Autovacuum, another VACUUM or ANALYZE of the table, a shard move or split, or a schema change holds it; run the statement again later.")
        .warn();
        return None;
    }
    metadata::sharded_table(oid)
}
