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
use pgshard_core::twophase::{self, Gid, Origin, Resolution, WorkerDecision};
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

/// Creates, on a worker being added, the table where the last writer of a multi-worker
/// transaction records its commit decision (see `xact`). Every role may insert, but only as
/// itself (`made_by`), and recovery honours a "committed" row only from the role the
/// coordinator connects as; every role may read. Kept if it exists: several coordinator
/// databases may share a worker database.
pub const CREATE_WORKER_DECISION_TABLE: &str = r#"DO $pgshard$
BEGIN
  IF to_regclass('pgshard.commit_decision') IS NULL THEN
    CREATE SCHEMA IF NOT EXISTS pgshard;
    CREATE TABLE pgshard.commit_decision (
      gid text PRIMARY KEY,
      committed boolean NOT NULL,
      made_by name NOT NULL DEFAULT current_user,
      decided_at timestamptz NOT NULL DEFAULT now()
    );
    ALTER TABLE pgshard.commit_decision ENABLE ROW LEVEL SECURITY;
    CREATE POLICY read ON pgshard.commit_decision FOR SELECT USING (true);
    CREATE POLICY decide ON pgshard.commit_decision FOR INSERT WITH CHECK (made_by = current_user);
    GRANT USAGE ON SCHEMA pgshard TO PUBLIC;
    GRANT SELECT, INSERT ON pgshard.commit_decision TO PUBLIC;
  END IF;
END
$pgshard$"#;

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
    TableIterator::new(recover().report)
}

/// What one recovery run did and left.
pub struct Recovery {
    /// One row per prepared transaction handled: the worker, its gid, and `committed`,
    /// `rolled back`, or the error.
    pub report: Vec<(String, String, String)>,
    /// Prepared transactions left as they are (still running, or their outcome not known yet,
    /// or their resolution failed), by worker id.
    pub unresolved: Vec<(i32, Gid)>,
    /// The workers that could not be reached: their prepared transactions are unknown.
    pub unreached: Vec<Worker>,
}

/// A prepared transaction found on a worker, and what to do with it.
struct InDoubt {
    worker: usize,
    gid: Gid,
    resolution: Resolution,
}

/// What recovery knows of one reachable worker.
struct Reached {
    client: remote::PooledClient,
    /// Rows of its `pgshard.commit_decision` made by this coordinator database, read before
    /// any worker's prepared transactions were listed.
    decisions: Vec<String>,
    /// Its prepared transactions made by this coordinator database.
    prepared: Vec<Gid>,
}

/// Raises unless the transaction runs at READ COMMITTED: recovery must see commit records
/// written after it started. `function` names what runs it.
pub fn require_read_committed(function: &str) {
    // SAFETY: a plain global of the current transaction.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            format!("{function} must run at READ COMMITTED isolation"),
        )
        .hint(
            "It must see commit records written after it started; run it outside this transaction.",
        )
        .raise()
    }
}

pub fn recover() -> Recovery {
    require_read_committed("pgshard.recover_transactions()");
    let _superuser = AsSuperuser::enter();
    // SAFETY: plain reads of this server's identity.
    let (system, database, started) = unsafe {
        (
            pg_sys::GetSystemIdentifier(),
            pg_sys::MyDatabaseId.to_u32(),
            pg_sys::PgStartTime,
        )
    };
    // Records and decisions read before the workers are asked: one whose transaction is not
    // prepared on its worker any more was finished (a transaction prepares before its record or
    // decision exists).
    let records_before = commit_records();
    let workers = workers::all_workers();
    let reached = reach_workers(&workers, system, database);

    let mut in_doubt: Vec<InDoubt> = Vec::new();
    for (index, reached) in reached.iter().enumerate() {
        for gid in reached.iter().flat_map(|r| &r.prepared) {
            // A transaction counts as running until it has released its locks: it sends its
            // own COMMIT PREPARED after it stops being in progress but before that, and a
            // recovery racing it would find the prepared transaction busy.
            let running = match gid.origin {
                // SAFETY: a lock test that never waits, on a transaction id of this server.
                Origin::Coordinator { xid } => unsafe {
                    !pg_sys::ConditionalXactLockTableWait(pg_sys::TransactionId::from(xid as u32))
                },
                Origin::Worker {
                    started: made_at,
                    backend,
                    lxid,
                    ..
                } => {
                    let vxid = pg_sys::VirtualTransactionId {
                        backendId: backend,
                        localTransactionId: lxid,
                    };
                    // SAFETY: a lock test that never waits; the ids are of this postmaster's
                    // backends when its start time matches.
                    made_at == started
                        && backend > 0
                        && unsafe { !pg_sys::VirtualXactLock(vxid, false) }
                }
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
    // Read after the running checks: a transaction that committed since is seen with its
    // record, or its decision.
    let records_now: HashSet<String> = commit_records().into_iter().map(|(g, _)| g).collect();
    let decisions = settle_worker_decisions(&workers, &reached, &in_doubt);
    for item in &mut in_doubt {
        let running = item.resolution == Resolution::Leave;
        let gid = item.gid.to_string();
        item.resolution = match item.gid.origin {
            Origin::Coordinator { .. } => twophase::resolve(running, records_now.contains(&gid)),
            Origin::Worker { .. } => twophase::resolve_by_worker(
                running,
                decisions
                    .get(&gid)
                    .map_or(WorkerDecision::Unknown, |(decision, _)| *decision),
            ),
        };
        if let (false, Some((WorkerDecision::CommittedByOtherRole, made_by))) =
            (running, decisions.get(&gid))
        {
            let decider = match item.gid.origin {
                Origin::Worker { decider, .. } => workers
                    .iter()
                    .find(|w| w.id == decider)
                    .map_or(String::new(), |w| w.name.clone()),
                Origin::Coordinator { .. } => String::new(),
            };
            PgShardError::new(
                PgSqlErrorCode::ERRCODE_WARNING,
                format!(
                    "pgshard: a prepared transaction on worker \"{}\" is left in doubt: its \
                     commit decision on worker \"{decider}\" was written by role \"{made_by}\", \
                     not by the role the coordinator connects as",
                    workers[item.worker].name
                ),
            )
            .detail(format!("The prepared transaction is {gid}."))
            .hint(
                "If that role wrote it on the coordinator's behalf, run COMMIT PREPARED with \
                 this gid on the worker; otherwise ROLLBACK PREPARED.",
            )
            .warn();
        }
    }

    let mut report = Vec::new();
    let mut resolved: HashSet<String> = HashSet::new();
    let ends = reached.iter().enumerate().map(|(index, reached)| {
        let statements: Vec<(Gid, String)> = in_doubt
            .iter()
            .filter(|d| d.worker == index)
            .filter_map(|d| match d.resolution {
                Resolution::Commit => Some((d.gid, format!("COMMIT PREPARED '{}'", d.gid))),
                Resolution::RollBack => Some((d.gid, format!("ROLLBACK PREPARED '{}'", d.gid))),
                Resolution::Leave => None,
            })
            .collect();
        let client = reached.as_ref().map(|r| &r.client);
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
    let unresolved = in_doubt
        .iter()
        .filter(|d| !resolved.contains(&d.gid.to_string()))
        .map(|d| (workers[d.worker].id, d.gid))
        .collect();
    let unreached = workers
        .iter()
        .zip(&reached)
        .filter(|(_, r)| r.is_none())
        .map(|(w, _)| w.clone())
        .collect();

    // A record or decision is no longer needed when its transaction is not prepared on a
    // worker that answered (or was resolved just now), or its worker was removed.
    let finished = |gid: &str, worker_id: i32| {
        let Some(index) = workers.iter().position(|w| w.id == worker_id) else {
            return true;
        };
        match &reached[index] {
            Some(r) => resolved.contains(gid) || !r.prepared.iter().any(|g| g.to_string() == gid),
            None => false,
        }
    };
    let finished_records: Vec<String> = records_before
        .into_iter()
        .filter(|(gid, worker_id)| finished(gid, *worker_id))
        .map(|(gid, _)| gid)
        .collect();
    if !finished_records.is_empty() {
        Spi::run_with_args(
            "DELETE FROM pgshard.commit_record WHERE gid = ANY ($1)",
            &[finished_records.into()],
        )
        .unwrap_or_else(|e| spi_failed("could not delete commit records", e));
    }
    let mut finished_decisions: Vec<Vec<String>> = reached
        .iter()
        .map(|r| {
            r.iter()
                .flat_map(|r| &r.decisions)
                .filter(|gid| Gid::parse(gid).is_some_and(|g| finished(gid, g.worker)))
                .cloned()
                .collect()
        })
        .collect();
    // Decisions settled in this run, for transactions resolved in it.
    for item in &in_doubt {
        if let Origin::Worker { decider, .. } = item.gid.origin {
            let gid = item.gid.to_string();
            if let Some(index) = workers.iter().position(|w| w.id == decider) {
                if resolved.contains(&gid) && !finished_decisions[index].contains(&gid) {
                    finished_decisions[index].push(gid);
                }
            }
        }
    }
    let deletes = finished_decisions.iter().map(|gids| {
        (!gids.is_empty()).then(|| {
            format!(
                "DELETE FROM pgshard.commit_decision WHERE gid = ANY ({}) \
                 AND (committed OR decided_at < now() - interval '{ROLLED_BACK_KEPT}')",
                text_array(gids)
            )
        })
    });
    let deleted = run_on_reached(&reached, deletes.collect());
    for (worker, result) in workers.iter().zip(deleted) {
        if let Err(message) = result {
            pgrx::warning!(
                "pgshard: could not delete finished commit decisions on worker \"{}\": {message}",
                worker.name
            );
        }
    }
    for (worker, reached) in workers.iter().zip(reached) {
        if let Some(reached) = reached {
            if let Ok(config) = remote::worker_config(worker) {
                remote::give_back(worker.id, &config, reached.client);
            }
        }
    }
    Recovery {
        report,
        unresolved,
        unreached,
    }
}

/// How long a "rolled back" decision stays after its transaction was rolled back: the
/// coordinator's own decision may still be on its way (a crashed coordinator's last bytes can
/// be delivered until TCP gives up, about 15 minutes), and must find it and fail.
const ROLLED_BACK_KEPT: &str = "1 hour";

/// `gids` (rendered by [`Gid`], so digits, letters, `_`, `.` and `-`) as a SQL text array.
fn text_array(gids: &[String]) -> String {
    let quoted: Vec<String> = gids
        .iter()
        .map(|g| format!("'{}'", g.replace('\'', "''")))
        .collect();
    format!("ARRAY[{}]::text[]", quoted.join(", "))
}

/// Connects to every worker, reads its commit decisions of this coordinator database, then
/// (once every worker's decisions are read) lists its prepared transactions of this coordinator
/// database. `None` (with a warning) for a worker that cannot be reached: its transactions wait
/// for the next run.
fn reach_workers(workers: &[Worker], system: u64, database: u32) -> Vec<Option<Reached>> {
    let pattern = Gid::like_pattern(system, database);
    let read_decisions =
        format!("SELECT gid FROM pgshard.commit_decision WHERE gid LIKE '{pattern}'");
    let connecting = workers.iter().map(|worker| {
        let connecting = remote::cached_or_new(worker);
        let read_decisions = &read_decisions;
        async move {
            let (client, _) = connecting.await?;
            let mut decisions_unreadable = None;
            let decisions = match client.simple_query(read_decisions).await {
                // Rows are insertable by any role: only what parses as a gid of this
                // coordinator database is kept, as rendered here.
                Ok(messages) => gids_made_by(&messages, system, database)
                    .iter()
                    .map(|gid| gid.to_string())
                    .collect(),
                // A worker registered before decisions existed has none: its table is created
                // now (transactions it would decide fail until then, and roll back).
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                    if let Err(e) = client.simple_query(CREATE_WORKER_DECISION_TABLE).await {
                        decisions_unreadable = Some(remote::query_error(&e).message);
                    }
                    Vec::new()
                }
                // The worker's prepared transactions decided elsewhere are still recovered.
                Err(e) => {
                    decisions_unreadable = Some(remote::query_error(&e).message);
                    Vec::new()
                }
            };
            Ok::<_, remote::RemoteError>((client, decisions, decisions_unreadable))
        }
    });
    let connected: Vec<_> = remote::wait(join_all(connecting), &[])
        .into_iter()
        .zip(workers)
        .map(|(connected, worker)| {
            connected.map(|(client, decisions, unreadable)| {
                if let Some(message) = unreadable {
                    pgrx::warning!(
                        "pgshard: could not read the commit decisions on worker \"{}\": {message}",
                        worker.name
                    );
                }
                (client, decisions)
            })
        })
        .collect();
    let pattern = &pattern;
    let lists = connected.into_iter().map(|connected| async move {
        let (client, decisions) = connected?;
        let messages = client
            .simple_query(&format!(
                "SELECT gid FROM pg_catalog.pg_prepared_xacts WHERE gid LIKE '{pattern}' \
                 AND database = current_database()"
            ))
            .await
            .map_err(|e| remote::query_error(&e))?;
        let prepared = gids_made_by(&messages, system, database);
        Ok::<_, remote::RemoteError>(Reached {
            client,
            decisions,
            prepared,
        })
    });
    let results = remote::wait(join_all(lists), &[]);
    workers
        .iter()
        .zip(results)
        .map(|(worker, result)| match result {
            Ok(reached) => Some(reached),
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

/// For the worker-decided transactions that are not running, the decision on each deciding
/// worker, settled first: recovery inserts a "rolled back" row for the gid unless one exists.
/// If the coordinator's own insert is under way, that waits for it; if it has not arrived yet,
/// it will fail on the key, and that worker roll back. Either way the row read afterwards is
/// the outcome.
fn settle_worker_decisions(
    workers: &[Worker],
    reached: &[Option<Reached>],
    in_doubt: &[InDoubt],
) -> std::collections::HashMap<String, (WorkerDecision, String)> {
    // Per deciding worker: its gids, and the role the coordinator connects there as for each.
    let mut asked: Vec<Vec<(String, Option<String>)>> = vec![Vec::new(); workers.len()];
    for item in in_doubt
        .iter()
        .filter(|d| d.resolution != Resolution::Leave)
    {
        if let Origin::Worker { decider, role, .. } = item.gid.origin {
            match workers.iter().position(|w| w.id == decider) {
                Some(index) => {
                    let expected = remote::connection_user_for_role(&workers[index], role);
                    asked[index].push((item.gid.to_string(), expected));
                }
                None => PgShardError::new(
                    PgSqlErrorCode::ERRCODE_WARNING,
                    format!(
                        "pgshard: prepared transaction {} is left in doubt: its deciding worker \
                         (id {decider}) was removed",
                        item.gid
                    ),
                )
                .hint("Re-add that worker, or commit or roll it back by hand.")
                .warn(),
            }
        }
    }
    let settling = asked.iter().map(|asked| {
        (!asked.is_empty()).then(|| {
            let gids: Vec<String> = asked.iter().map(|(g, _)| g.clone()).collect();
            let gids = text_array(&gids);
            format!(
                "INSERT INTO pgshard.commit_decision (gid, committed) \
                 SELECT unnest({gids}), false ON CONFLICT (gid) DO NOTHING; \
                 SELECT gid, committed, made_by FROM pgshard.commit_decision \
                 WHERE gid = ANY ({gids})"
            )
        })
    });
    let settled = run_on_reached(reached, settling.collect());
    let mut decisions = std::collections::HashMap::new();
    for ((worker, asked), result) in workers.iter().zip(&asked).zip(settled) {
        let messages = match result {
            Ok(messages) => messages,
            Err(message) => {
                pgrx::warning!(
                    "pgshard: could not read the commit decisions on worker \"{}\": {message}",
                    worker.name
                );
                continue;
            }
        };
        for message in &messages {
            let SimpleQueryMessage::Row(row) = message else {
                continue;
            };
            let (Some(gid), Some(committed), Some(made_by)) = (row.get(0), row.get(1), row.get(2))
            else {
                continue;
            };
            let expected = asked
                .iter()
                .find(|(g, _)| g == gid)
                .and_then(|(_, e)| e.as_deref());
            let decision = match (committed == "t", expected == Some(made_by)) {
                (false, _) => WorkerDecision::RolledBack,
                (true, true) => WorkerDecision::Committed,
                (true, false) => WorkerDecision::CommittedByOtherRole,
            };
            decisions.insert(gid.to_string(), (decision, made_by.to_string()));
        }
    }
    decisions
}

/// The gids of coordinator database `database` of server `system` among the first column of
/// `messages`; anything else there is ignored.
fn gids_made_by(messages: &[SimpleQueryMessage], system: u64, database: u32) -> Vec<Gid> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).and_then(Gid::parse),
            _ => None,
        })
        .filter(|gid| gid.made_by(system, database))
        .collect()
}

/// Runs `statements[i]` (if any) on reached worker `i`, all concurrently; a worker not
/// reached, or without a statement, answers with no messages.
fn run_on_reached(
    reached: &[Option<Reached>],
    statements: Vec<Option<String>>,
) -> Vec<Result<Vec<SimpleQueryMessage>, String>> {
    let runs = reached.iter().zip(statements).map(|(reached, statement)| {
        let client = reached.as_ref().map(|r| &r.client);
        async move {
            match (client, statement) {
                (Some(client), Some(statement)) => client
                    .simple_query(&statement)
                    .await
                    .map_err(|e| remote::query_error(&e).message),
                _ => Ok(Vec::new()),
            }
        }
    });
    remote::wait(join_all(runs), &[])
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
        for (worker, gid, action) in recover().report {
            pgrx::log!("pgshard recovery: {action} {gid} on worker \"{worker}\"");
        }
    });
}
