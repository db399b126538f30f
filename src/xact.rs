//! Remote transactions: the connections a coordinator transaction uses on each worker, and
//! their commit or rollback when the coordinator transaction ends.
//!
//! Every statement of one coordinator transaction reaches a worker over the same connection, so
//! it reads its own writes. A remote transaction block is opened lazily: for the first write on
//! a worker, or the first read inside a transaction block. Reads of a single autocommit
//! statement run without one.
//!
//! At commit, a transaction that wrote on one worker commits there with a plain COMMIT. One
//! that wrote on several prepares on each (PREPARE TRANSACTION) before the coordinator commits
//! and commits the prepared transactions after it, so that a failure before the coordinator's
//! commit rolls back everywhere. A coordinator crash between the two steps leaves prepared
//! transactions behind (the transactions issue adds the commit record and their recovery).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::join_all;
use pgrx::prelude::*;
use tokio_postgres::{Client, Config};

use crate::error::PgShardError;
use crate::remote::{self, RemoteError, Worker};

/// What a statement is about to do on a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A connection in use by the current coordinator transaction.
struct RemoteTransaction {
    worker: Worker,
    config: Config,
    client: Rc<Client>,
    /// A remote transaction block is open (BEGIN was sent).
    began: bool,
    /// Something was written in it.
    wrote: bool,
    /// Prepared under this global transaction id at pre-commit.
    prepared: Option<String>,
}

thread_local! {
    static OPEN: RefCell<Vec<RemoteTransaction>> = const { RefCell::new(Vec::new()) };
}

/// Longest wait for a worker to finish a COMMIT, ROLLBACK or COMMIT PREPARED sent while the
/// coordinator transaction ends (interrupts are held off then, so it must be bounded).
const END_WAIT: Duration = Duration::from_secs(10);

/// A connection for the current statement, with the text to send before its first statement.
pub struct Connection {
    pub worker: Worker,
    pub client: Rc<Client>,
    /// `BEGIN …;` when this statement opens the remote transaction block, else empty.
    pub begin: String,
}

impl Connection {
    /// `sql` prefixed with the BEGIN this connection still needs (one round trip for both);
    /// later statements on the connection are sent as they are.
    pub fn prefixed(&mut self, sql: &str) -> String {
        format!("{}{sql}", std::mem::take(&mut self.begin))
    }
}

/// The connection to `worker_id` among `connections`.
pub fn connection_to(connections: &mut [Connection], worker_id: i32) -> &mut Connection {
    connections
        .iter_mut()
        .find(|c| c.worker.id == worker_id)
        .expect("connected to every worker of the statement")
}

/// Runs one script per connection (each prefixed with the BEGIN it still needs), all
/// concurrently, cancelling them if the statement is cancelled.
pub fn run_scripts(
    connections: &mut [Connection],
    scripts: Vec<String>,
) -> Vec<Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>> {
    let scripts: Vec<String> = connections
        .iter_mut()
        .zip(scripts)
        .map(|(conn, script)| conn.prefixed(&script))
        .collect();
    let tokens: Vec<_> = connections
        .iter()
        .map(|c| c.client.cancel_token())
        .collect();
    let runs = connections
        .iter()
        .zip(&scripts)
        .map(|(conn, script)| conn.client.simple_query(script));
    remote::wait(join_all(runs), &tokens)
}

/// Registers the transaction callbacks; called from `_PG_init`.
pub fn register() {
    // SAFETY: registering callbacks with static functions is what the API is for.
    unsafe { pg_sys::RegisterXactCallback(Some(on_transaction_event), std::ptr::null_mut()) }
}

/// The connection to `worker` for the current transaction, connecting (or reusing a cached
/// connection) on first use and opening the remote transaction block when `access` needs it.
pub fn connection(worker: &Worker, access: Access) -> Connection {
    connections(std::slice::from_ref(worker), access)
        .pop()
        .expect("one connection per worker")
}

/// Connections to several workers at once; new connections are opened concurrently.
pub fn connections(workers: &[Worker], access: Access) -> Vec<Connection> {
    // SAFETY: reads the transaction state of this backend.
    let in_block = unsafe { pg_sys::IsTransactionBlock() };
    let missing: Vec<&Worker> = workers
        .iter()
        .filter(|w| !OPEN.with(|open| open.borrow().iter().any(|t| t.worker.id == w.id)))
        .collect();
    if !missing.is_empty() {
        let connecting = missing.iter().map(|worker| {
            let prepared = remote::worker_config(worker)
                .map(|config| (remote::take_cached(worker, &config), config));
            async move {
                let (cached, config) = prepared?;
                let client = match cached {
                    Some(client) => client,
                    None => remote::connect(config.clone()).await?,
                };
                Ok::<_, RemoteError>((client, config))
            }
        });
        let results = remote::wait(join_all(connecting), &[]);
        for (worker, result) in missing.into_iter().zip(results) {
            let (client, config) =
                result.unwrap_or_else(|e| e.raise_for(&worker.name, "connect to"));
            OPEN.with(|open| {
                open.borrow_mut().push(RemoteTransaction {
                    worker: worker.clone(),
                    config,
                    client: Rc::new(client),
                    began: false,
                    wrote: false,
                    prepared: None,
                })
            });
        }
    }
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        workers
            .iter()
            .map(|worker| {
                let t = open
                    .iter_mut()
                    .find(|t| t.worker.id == worker.id)
                    .expect("connected above");
                let begin = if !t.began && (access == Access::Write || in_block) {
                    t.began = true;
                    begin_statement()
                } else {
                    String::new()
                };
                t.wrote |= access == Access::Write;
                Connection {
                    worker: t.worker.clone(),
                    client: Rc::clone(&t.client),
                    begin,
                }
            })
            .collect()
    })
}

/// BEGIN with the coordinator transaction's isolation level and read-only state.
fn begin_statement() -> String {
    // SAFETY: plain globals of the current transaction.
    let (level, read_only) = unsafe { (pg_sys::XactIsoLevel, pg_sys::XactReadOnly) };
    let level = match level as u32 {
        pg_sys::XACT_SERIALIZABLE => "SERIALIZABLE",
        pg_sys::XACT_REPEATABLE_READ => "REPEATABLE READ",
        _ => "READ COMMITTED",
    };
    let mode = if read_only { " READ ONLY" } else { "" };
    format!("BEGIN ISOLATION LEVEL {level}{mode};")
}

#[pg_guard]
unsafe extern "C-unwind" fn on_transaction_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT => pre_commit(),
        pg_sys::XactEvent::XACT_EVENT_COMMIT => finish(true),
        pg_sys::XactEvent::XACT_EVENT_ABORT => finish(false),
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => refuse_prepare(),
        _ => {}
    }
}

fn refuse_prepare() {
    let touched = OPEN.with(|open| open.borrow().iter().any(|t| t.began));
    if touched {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "cannot PREPARE a transaction that used sharded tables",
        )
        .hint("Commit the transaction instead; pgshard makes its writes atomic across workers.")
        .raise()
    }
}

/// Before the coordinator commits: commit a single writer, or prepare several. An error here
/// aborts the coordinator transaction, and the abort rolls back every worker.
fn pre_commit() {
    let work: Vec<(Rc<Client>, String, String, bool)> = OPEN.with(|open| {
        let open = open.borrow();
        let writers = open.iter().filter(|t| t.began && t.wrote).count();
        // SAFETY: plain catalog/state reads; an xid is assigned if the transaction has none,
        // which is allowed before commit.
        let (system, xid) = if writers > 1 {
            unsafe { (pg_sys::GetSystemIdentifier(), pg_sys::GetTopTransactionId()) }
        } else {
            (0, pg_sys::TransactionId::from(0))
        };
        open.iter()
            .filter(|t| t.began)
            .map(|t| {
                let statement = if writers > 1 && t.wrote {
                    let gid = format!("pgshard_{system}_{}_{}", xid.into_inner(), t.worker.id);
                    format!("PREPARE TRANSACTION '{gid}'")
                } else {
                    "COMMIT".to_string()
                };
                (
                    Rc::clone(&t.client),
                    t.worker.name.clone(),
                    statement,
                    writers > 1 && t.wrote,
                )
            })
            .collect()
    });
    if work.is_empty() {
        return;
    }
    let tokens: Vec<_> = work.iter().map(|(c, ..)| c.cancel_token()).collect();
    let runs = work
        .iter()
        .map(|(client, _, statement, _)| client.simple_query(statement));
    let results = remote::wait(join_all(runs), &tokens);
    // Record what got prepared or committed before raising, so that the abort that follows
    // rolls back exactly what is still open.
    let mut failure = None;
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        for ((_, worker, statement, prepares), result) in work.iter().zip(results) {
            let t = open
                .iter_mut()
                .find(|t| &t.worker.name == worker)
                .expect("worker in OPEN");
            match result {
                Ok(_) if *prepares => {
                    t.prepared = Some(
                        statement["PREPARE TRANSACTION '".len()..statement.len() - 1].to_string(),
                    )
                }
                Ok(_) => t.began = false,
                Err(e) => {
                    // A worker whose COMMIT or PREPARE failed has ended its transaction.
                    t.began = false;
                    failure.get_or_insert((worker.clone(), remote::query_error(&e)));
                }
            }
        }
    });
    if let Some((worker, error)) = failure {
        error.raise_for(&worker, "commit on");
    }
}

/// After the coordinator committed or aborted: finish every remote transaction, then put the
/// healthy connections back in the cache. Never raises: the coordinator's outcome is decided.
fn finish(committed: bool) {
    let open = OPEN.with(|open| std::mem::take(&mut *open.borrow_mut()));
    if open.is_empty() {
        return;
    }
    let ends = open.iter().map(|t| {
        let statement = match (&t.prepared, committed) {
            (Some(gid), true) => Some(format!("COMMIT PREPARED '{gid}'")),
            (Some(gid), false) => Some(format!("ROLLBACK PREPARED '{gid}'")),
            // Still open at commit means it was never used for anything to commit.
            (None, _) if t.began => Some("ROLLBACK".to_string()),
            (None, _) => None,
        };
        let client = Rc::clone(&t.client);
        async move {
            match statement {
                Some(statement) => tokio::time::timeout(END_WAIT, client.simple_query(&statement))
                    .await
                    .map_err(|_| "timed out".to_string())
                    .and_then(|r| r.map(|_| ()).map_err(|e| remote::query_error(&e).message))
                    .map_err(|message| (statement, message)),
                None => Ok(()),
            }
        }
    });
    let results = remote::wait(join_all(ends), &[]);
    for (t, result) in open.into_iter().zip(results) {
        match result {
            Ok(()) => {
                if let Ok(client) = Rc::try_unwrap(t.client) {
                    remote::give_back(t.worker.id, &t.config, client);
                }
            }
            Err((statement, message)) => {
                // The connection is in an unknown state: it is dropped, which closes it.
                pgrx::warning!(
                    "pgshard: {statement} failed on worker \"{}\": {message}",
                    t.worker.name
                );
            }
        }
    }
}

/// Closes the connections to `worker_ids` if none of them is in a remote transaction block
/// (a read that is abandoned halfway leaves its connection busy; closing it is the fastest way
/// out). Returns whether they were closed; connections inside a block are kept.
pub fn discard_idle_readers(worker_ids: &[i32]) -> bool {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let all_idle = open
            .iter()
            .filter(|t| worker_ids.contains(&t.worker.id))
            .all(|t| !t.began);
        if all_idle {
            open.retain(|t| !worker_ids.contains(&t.worker.id));
        }
        all_idle
    })
}
