//! pgshard: makes this PostgreSQL server the coordinator of a sharded, encrypted database.
//!
//! The crate is a thin shell: PostgreSQL glue lives here, decision logic lives in the
//! `pgshard-core` crate where it is unit-tested without a server.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;

mod aggregate;
mod copy;
mod copy_fields;
mod ddl;
mod deparse;
mod encryption;
mod error;
mod execution;
mod guc;
mod hashing;
mod join;
mod maintenance;
mod metadata;
mod modify;
mod operations;
mod partial;
mod planner;
mod progress;
mod pushed;
mod recovery;
mod remote;
mod rows;
mod scan;
mod shard_copy;
mod shell;
mod split;
mod stats;
mod tables;
mod utility;
mod workers;
mod xact;

::pgrx::pg_module_magic!(name, version);

/// Set when `_PG_init` ran from `shared_preload_libraries`. Backends forked from the postmaster
/// inherit it; a backend that loads the library later (CREATE EXTENSION without preload) sees
/// `false`.
static LOADED_AT_STARTUP: AtomicBool = AtomicBool::new(false);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a plain global the server sets while it loads preload libraries.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    LOADED_AT_STARTUP.store(preloading, Ordering::Relaxed);
    guc::register();
    metadata::register_invalidation();
    xact::register();
    encryption::register();
    scan::register();
    modify::register();
    if preloading {
        stats::init();
        progress::init();
        planner::install();
        utility::install();
        recovery::register_launcher();
    }
}

/// Whether this backend's pgshard came from `shared_preload_libraries` (hooks installed).
pub fn loaded_at_startup() -> bool {
    LOADED_AT_STARTUP.load(Ordering::Relaxed)
}

/// Refuses to create the extension unless the library was preloaded: the planner, executor and
/// transaction hooks must be in every backend from its start, or a session could read the empty
/// coordinator tables of sharded tables and get silently wrong answers.
#[pg_extern]
fn ensure_preloaded() {
    if !loaded_at_startup() {
        error::PgShardError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pgshard must be loaded via shared_preload_libraries",
        )
        .hint(
            "Add pgshard to shared_preload_libraries in postgresql.conf \
             (shared_preload_libraries = 'pgshard') and restart the server.",
        )
        .raise()
    }
}

extension_sql!(
    r#"
SELECT pgshard.ensure_preloaded();
"#,
    name = "preload_check",
    requires = [ensure_preloaded],
    finalize
);
