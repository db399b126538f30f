//! The worker registry: `pgshard.add_worker`, `remove_worker`, `check_workers`,
//! `run_command_on_workers`, and the catalog table and view behind them.

use std::time::Instant;

use futures_util::future::join_all;
use pgrx::prelude::*;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::error::{require_superuser, spi_failed, PgShardError};
use crate::guc;
use crate::remote::{self, RemoteError, Worker};

extension_sql!(
    r#"
-- The public face of pgshard.worker: where each worker is, never its password or options.
-- The view runs with its owner's rights, so it can read the table that PUBLIC cannot.
CREATE VIEW pgshard.workers AS
SELECT w.name, a.host, a.port, a.dbname, w.added_at
FROM pgshard.worker w, LATERAL pgshard.conninfo_address(w.conninfo) a
ORDER BY w.worker_id;
GRANT SELECT ON pgshard.workers TO PUBLIC;
REVOKE EXECUTE ON FUNCTION pgshard.run_command_on_workers(text) FROM PUBLIC;
"#,
    name = "workers_view",
    requires = [conninfo_address, run_command_on_workers]
);

/// Longest worker name accepted; names show up in errors, views and (later) shard metadata.
const MAX_WORKER_NAME: usize = 63;

/// Splits a conninfo into the parts the `pgshard.workers` view shows.
#[pg_extern(immutable, parallel_safe)]
fn conninfo_address(
    conninfo: &str,
) -> TableIterator<
    'static,
    (
        name!(host, String),
        name!(port, i32),
        name!(dbname, Option<String>),
    ),
> {
    // A conninfo in the catalog was valid when added; tolerate anything else rather than make
    // the whole view fail.
    let row = pgshard_core::conninfo::parse(conninfo)
        .map(|config| pgshard_core::conninfo::public_address(&config))
        .map(|a| (a.host, i32::from(a.port), a.dbname))
        .unwrap_or_else(|_| (String::new(), 0, None));
    TableIterator::once(row)
}

/// Registers a worker after checking that it can be reached and queried.
#[pg_extern(volatile)]
fn add_worker(name: &str, conninfo: &str) -> i32 {
    require_superuser("add workers");
    validate_worker_name(name);
    if find_worker(name).is_some() {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("worker \"{name}\" already exists"),
        )
        .hint(
            "Choose another name, or remove the existing worker with pgshard.remove_worker first.",
        )
        .raise()
    }

    refuse_second_registration(name, conninfo);

    // The id is not known before the insert; the check uses a provisional one and the healthy
    // connection is cached under the real id afterwards.
    let mut worker = Worker {
        id: 0,
        name: name.to_string(),
        conninfo: conninfo.to_string(),
    };
    let config = remote::worker_config(&worker).unwrap_or_else(|e| e.raise_for(name, "use"));
    let (client, encoding) = remote::wait(
        async {
            let client = remote::connect(config.clone()).await?;
            let messages = client
                .simple_query("SELECT current_setting('server_encoding')")
                .await
                .map_err(|e| remote::query_error(&e))?;
            Ok::<_, RemoteError>((client, first_value(&messages).unwrap_or_default()))
        },
        &[],
    )
    .unwrap_or_else(|e| e.raise_for(name, "connect to"));
    // Shards receive values as UTF-8 text; another database encoding would convert (or refuse)
    // what the coordinator stores.
    if encoding != "UTF8" {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "the database of worker \"{name}\" has encoding {encoding}; pgshard needs UTF8"
            ),
        )
        .hint("Give a database created with ENCODING 'UTF8'.")
        .raise()
    }

    // Transactions that write on several workers may keep their commit decision here.
    let created = remote::wait(
        async {
            client
                .simple_query(crate::recovery::CREATE_WORKER_DECISION_TABLE)
                .await
        },
        &[],
    );
    if let Err(e) = created {
        let mut error = remote::query_error(&e);
        error.hint = "The worker's role needs CREATE on the worker database (pgshard keeps a \
                      pgshard.commit_decision table there, and creates each shard's schema).";
        error.raise_for(name, "prepare")
    }

    worker.id = Spi::get_one_with_args::<i32>(
        "INSERT INTO pgshard.worker (name, conninfo) VALUES ($1, $2) RETURNING worker_id",
        &[name.into(), conninfo.into()],
    )
    .unwrap_or_else(|e| spi_failed("could not record the worker", e))
    .expect("INSERT … RETURNING returns a row");
    remote::give_back(worker.id, &config, client);
    crate::tables::copy_reference_tables_to(&worker);
    worker.id
}

/// Unregisters a worker.
#[pg_extern(volatile)]
fn remove_worker(name: &str) {
    require_superuser("remove workers");
    let worker = find_worker(name).unwrap_or_else(|| raise_unknown_worker(name));
    let placements = crate::metadata::placements_on_worker(worker.id);
    if placements > 0 {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            format!("worker \"{name}\" still holds {placements} shard placement(s)"),
        )
        .hint("Move its shards to other workers or unshard their tables before removing it.")
        .raise()
    }
    refuse_writing_on(&worker);
    // Reference copies first: their writers in flight are waited for, so that recovery then
    // sees every transaction that may still prepare on the worker or be decided by it.
    let left_behind = crate::tables::forget_reference_copies_on(&worker);
    refuse_while_in_doubt(&worker);
    if !left_behind.is_empty() {
        pgrx::notice!(
            "the copies of reference tables on worker \"{name}\" are no longer used and were left in place: {}",
            left_behind.join(", ")
        );
    }
    Spi::run_with_args(
        "DELETE FROM pgshard.worker WHERE worker_id = $1",
        &[worker.id.into()],
    )
    .unwrap_or_else(|e| spi_failed("could not remove the worker", e));
    remote::forget_worker(worker.id);
}

/// Refuses to remove a worker in a transaction that wrote on it: its remote transaction there
/// would prepare or commit after the worker is gone.
fn refuse_writing_on(worker: &Worker) {
    if crate::xact::wrote_on(worker.id) {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            format!(
                "cannot remove worker \"{}\" in a transaction that wrote on it",
                worker.name
            ),
        )
        .hint("Remove the worker in a transaction of its own.")
        .raise()
    }
}

/// Refuses to remove a worker that prepared transactions still need: ones prepared on it, or
/// ones whose commit decision it holds (recovery could no longer find the outcome). Recovery
/// runs first, so only transactions still running or of unknown outcome remain.
fn refuse_while_in_doubt(worker: &Worker) {
    crate::recovery::require_read_committed("pgshard.remove_worker()");
    let recovery = crate::recovery::recover();
    let itself_unreached = recovery.unreached.iter().any(|w| w.id == worker.id);
    if itself_unreached {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_WARNING,
            format!(
                "worker \"{}\" cannot be reached: prepared transactions of this coordinator on it, if any, stay as they are",
                worker.name
            ),
        )
        .hint("Before reusing its database, resolve its pgshard_ prepared transactions by hand (pg_prepared_xacts).")
        .warn();
        // Its decisions cannot be read anyway: transactions on reachable workers that need
        // them are among the unresolved ones below.
    }
    let needing: Vec<String> = recovery
        .unresolved
        .iter()
        .filter(|(on, gid)| *on == worker.id || gid.decider() == Some(worker.id))
        .map(|(_, gid)| gid.to_string())
        .collect();
    if needing.is_empty() {
        // Another worker that could not be asked may hold transactions the worker decides
        // (unless the worker is unreachable itself: its decisions are unreadable anyway).
        let unknown: Vec<String> = recovery
            .unreached
            .iter()
            .filter(|w| w.id != worker.id)
            .map(|w| format!("\"{}\"", w.name))
            .collect();
        if !itself_unreached && !unknown.is_empty() {
            PgShardError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
                format!(
                    "cannot remove worker \"{}\" while worker(s) {} cannot be reached",
                    worker.name,
                    unknown.join(", ")
                ),
            )
            .detail("Prepared transactions there may need the commit decisions it holds.")
            .hint("Remove it once the other workers can be reached again.")
            .raise()
        }
        return;
    }
    PgShardError::new(
        PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
        format!(
            "worker \"{}\" is part of {} prepared transaction(s) that are not resolved yet",
            worker.name,
            needing.len()
        ),
    )
    .detail(format!("Prepared transactions: {}.", needing.join(", ")))
    .hint("They are still committing, their outcome cannot be read yet (a worker is down), or resolving them failed (see the warnings). Remove the worker again once they are finished; if a worker is gone for good, resolve them by hand first (COMMIT PREPARED or ROLLBACK PREPARED on the workers that hold them).")
    .raise()
}

/// Connects to every worker concurrently and reports its health; never raises for a worker
/// that is down, and never waits longer than `pgshard.connect_timeout` for one.
#[pg_extern(volatile)]
fn check_workers() -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(reachable, bool),
        name!(server_version, Option<String>),
        name!(latency_ms, Option<f64>),
        name!(error, Option<String>),
    ),
> {
    require_superuser("check workers");
    let workers = all_workers();
    let timeout = guc::connect_timeout();
    let checks = workers.iter().map(|worker| {
        let prepared = remote::worker_config(worker)
            .map(|config| (remote::take_cached(worker, &config), config));
        async move {
            let (cached, config) = prepared?;
            let connect_config = config.clone();
            let check = async move {
                // A cached connection may have died with its server; one retry on a fresh one.
                if let Some(client) = cached {
                    if let Ok(report) = ping(&client).await {
                        return Ok((client, report));
                    }
                }
                let client = remote::connect(connect_config).await?;
                let report = ping(&client).await?;
                Ok((client.into(), report))
            };
            match tokio::time::timeout(timeout, check).await {
                Ok(Ok((client, report))) => Ok((client, config, report)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(RemoteError::timed_out("health check", timeout)),
            }
        }
    });
    let results = remote::wait(join_all(checks), &[]);

    let rows: Vec<_> = workers
        .into_iter()
        .zip(results)
        .map(|(worker, result)| match result {
            Ok((client, config, (version, latency_ms))) => {
                remote::give_back(worker.id, &config, client);
                (worker.name, true, Some(version), Some(latency_ms), None)
            }
            Err(e) => (worker.name, false, None, None, Some(e.message)),
        })
        .collect();
    TableIterator::new(rows)
}

/// One round trip: the worker's version and how long the query took.
async fn ping(client: &Client) -> Result<(String, f64), RemoteError> {
    let started = Instant::now();
    let messages = client
        .simple_query("SELECT current_setting('server_version')")
        .await
        .map_err(|e| remote::query_error(&e))?;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let version = first_value(&messages).unwrap_or_default();
    Ok((version, latency_ms))
}

/// Runs a command on every worker, concurrently, each in its own transaction there (not atomic
/// across workers). One row per worker: whether it succeeded, and the first column of the first
/// row it returned, or the error message.
#[pg_extern(volatile)]
fn run_command_on_workers(
    command: &str,
) -> TableIterator<
    'static,
    (
        name!(worker, String),
        name!(success, bool),
        name!(result, Option<String>),
    ),
> {
    require_superuser("run commands on workers");
    let workers = all_workers();

    // Connect first (a cancel here only abandons connection attempts), then run with every
    // worker's cancel token at hand so that an interrupt stops the remote statements too.
    let connecting = workers.iter().map(|worker| {
        let prepared = remote::worker_config(worker)
            .map(|config| (remote::take_cached(worker, &config), config));
        async move {
            let (cached, config) = prepared?;
            // A cached connection may have died with its server since it was last used.
            if let Some(client) = cached {
                if client.simple_query("").await.is_ok() {
                    return Ok((client, config));
                }
            }
            let client = remote::connect(config.clone()).await?;
            Ok::<_, RemoteError>((client.into(), config))
        }
    });
    let connections: Vec<_> = remote::wait(join_all(connecting), &[])
        .into_iter()
        .zip(&workers)
        .map(|(result, worker)| result.unwrap_or_else(|e| e.raise_for(&worker.name, "connect to")))
        .collect();

    let cancel_tokens: Vec<_> = connections
        .iter()
        .map(|(client, _)| client.cancel_token())
        .collect();
    let runs = connections
        .iter()
        .map(|(client, _)| client.simple_query(command));
    let results = remote::wait(join_all(runs), &cancel_tokens);

    let rows: Vec<_> = workers
        .iter()
        .zip(results)
        .map(|(worker, result)| match result {
            Ok(messages) => (worker.name.clone(), true, first_value(&messages)),
            Err(e) => (
                worker.name.clone(),
                false,
                Some(remote::query_error(&e).message),
            ),
        })
        .collect();
    // The command may have left its session changed (SET, an open or failed transaction, a
    // half-done COPY). Only a connection that DISCARD ALL resets goes back to the cache;
    // DISCARD ALL fails inside a transaction block.
    let resets = connections
        .iter()
        .map(|(client, _)| client.simple_query("DISCARD ALL"));
    let reset = remote::wait(join_all(resets), &cancel_tokens);
    for ((worker, (client, config)), reset) in workers.iter().zip(connections).zip(reset) {
        if reset.is_ok() {
            // DISCARD ALL deallocated the statements pgshard had prepared on the connection.
            client.statements.borrow_mut().forget_all();
            remote::give_back(worker.id, &config, client);
        }
    }
    TableIterator::new(rows)
}

fn first_value(messages: &[SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|message| match message {
        // try_get: a row may have no columns at all (SELECT FROM …).
        SimpleQueryMessage::Row(row) => Some(row.try_get(0).ok().flatten().map(str::to_owned)),
        _ => None,
    })?
}

fn validate_worker_name(name: &str) {
    let well_formed = !name.is_empty()
        && name.len() <= MAX_WORKER_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !well_formed {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid worker name \"{name}\""),
        )
        .hint(format!(
            "Use 1 to {MAX_WORKER_NAME} characters from letters, digits, '_', '-' and '.'."
        ))
        .raise()
    }
}

/// Two workers on the same server and database would hold each other's shards.
fn refuse_second_registration(name: &str, conninfo: &str) {
    let Ok(config) = pgshard_core::conninfo::parse(conninfo) else {
        return; // reported with its cause when the connection is configured
    };
    let address = pgshard_core::conninfo::public_address(&config);
    let twin = all_workers().into_iter().find(|worker| {
        pgshard_core::conninfo::parse(&worker.conninfo)
            .is_ok_and(|other| pgshard_core::conninfo::public_address(&other) == address)
    });
    if let Some(twin) = twin {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("worker \"{}\" already uses the server and database that worker \"{name}\" would use", twin.name),
        )
        .hint("Each worker must be its own database; see pgshard.workers.")
        .raise()
    }
}

fn raise_unknown_worker(name: &str) -> ! {
    PgShardError::new(
        PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
        format!("worker \"{name}\" does not exist"),
    )
    .hint("SELECT name FROM pgshard.workers lists the registered workers.")
    .raise()
}

fn find_worker(name: &str) -> Option<Worker> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT worker_id, name, conninfo FROM pgshard.worker WHERE name = $1",
            Some(1),
            &[name.into()],
        )?;
        rows.into_iter()
            .map(|row| worker_from_row(&row))
            .next()
            .transpose()
    })
    .unwrap_or_else(|e| spi_failed("could not read pgshard.worker", e))
}

pub fn all_workers() -> Vec<Worker> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT worker_id, name, conninfo FROM pgshard.worker ORDER BY worker_id",
                None,
                &[],
            )?
            .into_iter()
            .map(|row| worker_from_row(&row))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap_or_else(|e| spi_failed("could not read pgshard.worker", e))
}

fn worker_from_row(row: &pgrx::spi::SpiHeapTupleData) -> Result<Worker, pgrx::spi::SpiError> {
    Ok(Worker {
        id: row.get::<i32>(1)?.expect("worker_id is NOT NULL"),
        name: row.get::<String>(2)?.expect("name is NOT NULL"),
        conninfo: row.get::<String>(3)?.expect("conninfo is NOT NULL"),
    })
}
