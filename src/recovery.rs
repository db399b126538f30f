//! Recovery of two-phase commits: commit records, `pgshard.recover_transactions()`, and the
//! background worker that runs it.
//!
//! A coordinator transaction that prepared on several workers writes one commit record per
//! prepared transaction in its own transaction, so the records exist exactly when it committed.
//! A prepared transaction left on a worker (the coordinator crashed between its commit and
//! COMMIT PREPARED, or the worker was unreachable then) is committed when its record exists and
//! rolled back when it does not, unless its coordinator transaction is still running. Records
//! whose prepared transaction is gone are deleted.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::join_all;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;
use pgshard_core::twophase::{self, Gid, Resolution};
use tokio_postgres::SimpleQueryMessage;

use crate::error::{spi_failed, PgShardError};
use crate::metadata::AsSuperuser;
use crate::remote::{self, Worker};
use crate::{guc, workers};

extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION pgshard.recover_transactions() FROM PUBLIC;
"#,
    name = "recovery_grants",
    requires = [recover_transactions]
);

const INSERT_COMMIT_RECORDS: &str =
    "INSERT INTO pgshard.commit_record (gid, worker_id) SELECT * FROM unnest($1::text[], $2::int[])";

thread_local! {
    /// The insert of commit records, planned once per backend: every two-phase commit runs it,
    /// and parsing and planning it each time cost more than the insert. Leaked on purpose: a
    /// kept plan must not be freed by a destructor running while the backend exits. The plan
    /// cache re-plans it when `pgshard.commit_record` changes.
    static INSERT_COMMIT_RECORDS_PLAN: std::cell::Cell<Option<&'static pgrx::spi::OwnedPreparedStatement>> =
        const { std::cell::Cell::new(None) };
}

/// Writes the commit records of the transactions just prepared; from pre-commit, in the
/// coordinator transaction itself.
pub fn write_commit_records(prepared: &[Gid]) {
    let _superuser = AsSuperuser::enter();
    let gids: Vec<String> = prepared.iter().map(|g| g.to_string()).collect();
    let workers: Vec<i32> = prepared.iter().map(|g| g.worker).collect();
    // Pre-commit runs after the statement's snapshot is gone; SPI needs one.
    // SAFETY: pushed and popped around the insert; an error aborts the transaction, which
    // pops every active snapshot.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    Spi::connect_mut(|client| {
        let plan = match INSERT_COMMIT_RECORDS_PLAN.get() {
            Some(plan) => plan,
            None => {
                let types = [
                    PgOid::from(pg_sys::TEXTARRAYOID),
                    PgOid::from(pg_sys::INT4ARRAYOID),
                ];
                let plan = client.prepare_mut(INSERT_COMMIT_RECORDS, &types)?.keep();
                let plan: &'static _ = Box::leak(Box::new(plan));
                INSERT_COMMIT_RECORDS_PLAN.set(Some(plan));
                plan
            }
        };
        client
            .update(plan, None, &[gids.into(), workers.into()])
            .map(|_| ())
    })
    .unwrap_or_else(|e| spi_failed("could not write the commit records", e));
    // SAFETY: pops the snapshot pushed above.
    unsafe { pg_sys::PopActiveSnapshot() };
}

/// The commit records as they are now (a fresh snapshot: read-write SPI in READ COMMITTED
/// takes one per statement), as (gid, worker id).
fn commit_records() -> Vec<(String, i32)> {
    Spi::connect_mut(|client| {
        client
            .update(
                "SELECT gid, worker_id FROM pgshard.commit_record",
                None,
                &[],
            )?
            .into_iter()
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<i32>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .unwrap_or_else(|e| spi_failed("could not read pgshard.commit_record", e))
}

/// Commits or rolls back the prepared transactions this coordinator database left on the
/// workers, and deletes the commit records that are no longer needed. One row per prepared
/// transaction handled: the worker, its gid, and `committed`, `rolled back`, or the error.
#[pg_extern(volatile)]
fn recover_transactions() -> TableIterator<
    'static,
    (
        name!(worker, String),
        name!(gid, String),
        name!(action, String),
    ),
> {
    TableIterator::new(recover())
}

/// A prepared transaction found on a worker, and what to do with it.
struct InDoubt {
    worker: usize,
    gid: Gid,
    resolution: Resolution,
}

pub fn recover() -> Vec<(String, String, String)> {
    // SAFETY: a plain global of the current transaction.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            "pgshard.recover_transactions() must run at READ COMMITTED isolation",
        )
        .hint(
            "It must see commit records written after it started; run it outside this transaction.",
        )
        .raise()
    }
    let _superuser = AsSuperuser::enter();
    // SAFETY: plain reads of this server's identity.
    let (system, database) =
        unsafe { (pg_sys::GetSystemIdentifier(), pg_sys::MyDatabaseId.to_u32()) };
    // Records read before the workers are asked: a record whose transaction is not prepared on
    // its worker any more was finished (a transaction prepares before its record exists).
    let records_before = commit_records();
    let workers = workers::all_workers();
    let listings = list_prepared(&workers);

    let mut in_doubt: Vec<InDoubt> = Vec::new();
    for (index, listing) in listings.iter().enumerate() {
        if let Some((_, gids)) = listing {
            for gid in gids.iter().filter(|g| g.made_by(system, database)) {
                // A transaction counts as running until it has released its locks: it sends
                // its own COMMIT PREPARED after it stops being in progress but before that, and
                // a recovery racing it would find the prepared transaction busy.
                // SAFETY: a lock test that never waits, on a transaction id of this server.
                let running = unsafe {
                    !pg_sys::ConditionalXactLockTableWait(pg_sys::TransactionId::from(
                        gid.xid as u32,
                    ))
                };
                in_doubt.push(InDoubt {
                    worker: index,
                    gid: *gid,
                    resolution: if running {
                        Resolution::Leave
                    } else {
                        Resolution::RollBack
                    },
                });
            }
        }
    }
    // Read after the running checks: a transaction that committed since is seen with its record.
    let records_now: HashSet<String> = commit_records().into_iter().map(|(g, _)| g).collect();
    for item in &mut in_doubt {
        let running = item.resolution == Resolution::Leave;
        item.resolution = twophase::resolve(running, records_now.contains(&item.gid.to_string()));
    }

    let mut report = Vec::new();
    let mut resolved: HashSet<String> = HashSet::new();
    let ends = listings.iter().enumerate().map(|(index, listing)| {
        let statements: Vec<(Gid, String)> = in_doubt
            .iter()
            .filter(|d| d.worker == index)
            .filter_map(|d| match d.resolution {
                Resolution::Commit => Some((d.gid, format!("COMMIT PREPARED '{}'", d.gid))),
                Resolution::RollBack => Some((d.gid, format!("ROLLBACK PREPARED '{}'", d.gid))),
                Resolution::Leave => None,
            })
            .collect();
        let client = listing.as_ref().map(|(c, _)| c);
        async move {
            let mut outcomes = Vec::new();
            if let Some(client) = client {
                for (gid, statement) in statements {
                    let outcome = client
                        .simple_query(&statement)
                        .await
                        .map_err(|e| remote::query_error(&e).message);
                    outcomes.push((gid, statement, outcome));
                }
            }
            outcomes
        }
    });
    let outcomes = remote::wait(join_all(ends), &[]);
    for (index, worker_outcomes) in outcomes.into_iter().enumerate() {
        for (gid, statement, outcome) in worker_outcomes {
            let action = match outcome {
                Ok(_) => {
                    resolved.insert(gid.to_string());
                    if statement.starts_with("COMMIT") {
                        "committed".to_string()
                    } else {
                        "rolled back".to_string()
                    }
                }
                Err(message) => {
                    pgrx::warning!(
                        "pgshard: {statement} failed on worker \"{}\": {message}",
                        workers[index].name
                    );
                    format!("failed: {message}")
                }
            };
            report.push((workers[index].name.clone(), gid.to_string(), action));
        }
    }

    // Records no longer needed: their transaction is not prepared on a worker that answered.
    let finished: Vec<String> = records_before
        .into_iter()
        .filter(|(gid, worker_id)| {
            let Some(index) = workers.iter().position(|w| w.id == *worker_id) else {
                return true; // the worker was removed
            };
            match &listings[index] {
                Some((_, gids)) => {
                    resolved.contains(gid) || !gids.iter().any(|g| &g.to_string() == gid)
                }
                None => false,
            }
        })
        .map(|(gid, _)| gid)
        .collect();
    if !finished.is_empty() {
        Spi::run_with_args(
            "DELETE FROM pgshard.commit_record WHERE gid = ANY ($1)",
            &[finished.into()],
        )
        .unwrap_or_else(|e| spi_failed("could not delete commit records", e));
    }
    for (worker, listing) in workers.iter().zip(listings) {
        if let Some((client, _)) = listing {
            if let Ok(config) = remote::worker_config(worker) {
                remote::give_back(worker.id, &config, client);
            }
        }
    }
    report
}

/// Each worker's connection and its pgshard prepared transactions; `None` (with a warning) for
/// a worker that cannot be reached: its transactions wait for the next run.
fn list_prepared(workers: &[Worker]) -> Vec<Option<(remote::PooledClient, Vec<Gid>)>> {
    let lists = workers.iter().map(|worker| {
        let connecting = remote::cached_or_new(worker);
        async move {
            let (client, _) = connecting.await?;
            let messages = client
                .simple_query(
                    "SELECT gid FROM pg_catalog.pg_prepared_xacts WHERE gid LIKE 'pgshard\\_%'",
                )
                .await
                .map_err(|e| remote::query_error(&e))?;
            let gids = messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => row.get(0).and_then(Gid::parse),
                    _ => None,
                })
                .collect();
            Ok::<_, remote::RemoteError>((client, gids))
        }
    });
    let results = remote::wait(join_all(lists), &[]);
    workers
        .iter()
        .zip(results)
        .map(|(worker, result)| match result {
            Ok(listing) => Some(listing),
            Err(e) => {
                pgrx::warning!(
                    "pgshard: could not list the prepared transactions of worker \"{}\": {}",
                    worker.name,
                    e.message
                );
                None
            }
        })
        .collect()
}

/// Registers the recovery launcher; from `_PG_init` while preloading.
pub fn register_launcher() {
    BackgroundWorkerBuilder::new("pgshard recovery launcher")
        .set_type("pgshard recovery launcher")
        .set_library("pgshard")
        .set_function("pgshard_recovery_launcher")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

/// The launcher: every `pgshard.recovery_interval`, runs recovery in each database that
/// accepts connections, one database at a time, each in a short-lived worker of its own
/// (a backend serves one database).
///
/// # Safety
/// Called by the postmaster as a background worker's entry point.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn pgshard_recovery_launcher(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    loop {
        let interval = guc::recovery_interval().unwrap_or(Duration::from_secs(10));
        if !BackgroundWorker::wait_latch(Some(interval)) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        }
        if guc::recovery_interval().is_none() {
            continue;
        }
        for database in BackgroundWorker::transaction(|| connectable_databases()) {
            let launched = BackgroundWorkerBuilder::new("pgshard recovery")
                .set_type("pgshard recovery")
                .set_library("pgshard")
                .set_function("pgshard_recovery_worker")
                .enable_spi_access()
                .set_extra(&database)
                .set_notify_pid(pg_sys::MyProcPid)
                .load_dynamic();
            match launched {
                Ok(worker) => {
                    let _ = worker.wait_for_shutdown();
                }
                Err(_) => {
                    pgrx::log!("pgshard: no background worker slot for recovery; retrying later");
                    break;
                }
            }
        }
    }
}

/// The databases a worker can connect to (not templates), read from the shared catalog
/// (the launcher is connected to no database).
unsafe fn connectable_databases() -> Vec<String> {
    let mut names = Vec::new();
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, lock);
    let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
    loop {
        let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
        if tuple.is_null() {
            break;
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
        if (*form).datallowconn && !(*form).datistemplate {
            names.push(crate::metadata::cstr((*form).datname.data.as_ptr()));
        }
    }
    pg_sys::heap_endscan(scan);
    pg_sys::table_close(rel, lock);
    names
}

/// One database's recovery run (a dynamic background worker).
///
/// # Safety
/// Called by the postmaster as a background worker's entry point.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn pgshard_recovery_worker(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let database = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    BackgroundWorker::transaction(|| {
        let installed = Spi::get_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgshard')",
        )
        .ok()
        .flatten()
        .unwrap_or(false);
        if !installed {
            return;
        }
        for (worker, gid, action) in recover() {
            pgrx::log!("pgshard recovery: {action} {gid} on worker \"{worker}\"");
        }
    });
}
