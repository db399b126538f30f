//! Remote transactions: the connections a coordinator transaction uses on each worker, and
//! their commit or rollback when the coordinator transaction ends.
//!
//! Every statement of one coordinator transaction reaches a worker over the same connection, so
//! it reads its own writes. A remote transaction block is opened lazily: for the first write on
//! a worker, or the first read inside a transaction block. Reads of a single autocommit
//! statement run without one.
//!
//! At commit, a transaction that wrote on one worker commits there with a plain COMMIT. One
//! that wrote on several prepares on each (PREPARE TRANSACTION), then writes a commit record
//! per prepared transaction into `pgshard.commit_record` in the coordinator's own transaction,
//! and commits the prepared transactions after the coordinator committed. A failure before the
//! coordinator's commit rolls back everywhere; a crash or a worker failure after it leaves
//! prepared transactions that `recovery` commits, because their commit record exists.
//!
//! Savepoints: the coordinator's subtransactions (SAVEPOINT, PL/pgSQL exception blocks) are
//! mirrored on the workers lazily: a remote transaction gets `SAVEPOINT`s for the open levels
//! before its next statement, and a rolled-back level is rolled back on the workers that had
//! it (`ROLLBACK TO SAVEPOINT`) before their next statement or their commit.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::join_all;
use pgrx::prelude::*;
use tokio_postgres::Config;

use pgshard_core::twophase::{Gid, Origin};

use crate::error::PgShardError;
use crate::guc;
use crate::remote::{self, PooledClient, Worker};

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
    client: Rc<PooledClient>,
    /// A remote transaction block is open (BEGIN was sent).
    began: bool,
    /// Something was written in it.
    wrote: bool,
    /// Prepared under this global transaction id at pre-commit.
    prepared: Option<Gid>,
    /// Coordinator subtransactions that have a savepoint in this remote transaction, outermost
    /// first.
    savepoints: Vec<pg_sys::SubTransactionId>,
    /// Statements owed before the next one (rollbacks to savepoints).
    owed: String,
}

thread_local! {
    static OPEN: RefCell<Vec<RemoteTransaction>> = const { RefCell::new(Vec::new()) };
    /// The coordinator's open subtransactions, outermost first.
    static SUBTRANSACTIONS: RefCell<Vec<pg_sys::SubTransactionId>> = const { RefCell::new(Vec::new()) };
    /// Set by a fault point: the current two-phase commit is abandoned as if the coordinator
    /// had died, leaving its prepared transactions to recovery.
    static ABANDONED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The deciding worker committed: the prepared transactions are committed even if the
    /// coordinator transaction aborts after that.
    static DECIDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The deciding worker's COMMIT was lost with its connection: the prepared transactions
    /// are left to recovery, which reads the decision there.
    static IN_DOUBT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Work on workers that waits until the coordinator transaction has committed.
    static AFTER_COMMIT: RefCell<Vec<AfterCommit>> = const { RefCell::new(Vec::new()) };
}

/// The name of a coordinator subtransaction's savepoint on the workers.
fn savepoint_name(subtransaction: pg_sys::SubTransactionId) -> String {
    format!("pgshard_savepoint_{subtransaction}")
}

/// Longest wait for a worker to finish a COMMIT, ROLLBACK or COMMIT PREPARED sent while the
/// coordinator transaction ends (interrupts are held off then, so it must be bounded).
const END_WAIT: Duration = Duration::from_secs(10);

/// A connection for the current statement, with the text to send before its first statement.
pub struct Connection {
    pub worker: Worker,
    pub client: Rc<PooledClient>,
    /// What must run before this statement: `BEGIN …;` when it opens the remote transaction
    /// block, owed rollbacks to savepoints, and savepoints of open subtransactions.
    pub begin: String,
}

impl Connection {
    /// `sql` prefixed with what this connection still needs (one round trip for all); later
    /// statements on the connection are sent as they are.
    pub fn prefixed(&mut self, sql: &str) -> String {
        format!("{}{sql}", std::mem::take(&mut self.begin))
    }
}

/// Whether this transaction has written on `worker_id` (its remote transaction will prepare
/// or commit there).
pub fn wrote_on(worker_id: i32) -> bool {
    OPEN.with(|open| {
        open.borrow()
            .iter()
            .any(|t| t.worker.id == worker_id && t.wrote)
    })
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
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_transaction_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subtransaction_event), std::ptr::null_mut());
    }
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
        let connecting = missing.iter().map(|worker| remote::cached_or_new(worker));
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
                    savepoints: Vec::new(),
                    owed: String::new(),
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
                let mut begin = if !t.began && (access == Access::Write || in_block) {
                    t.began = true;
                    begin_statement()
                } else {
                    std::mem::take(&mut t.owed)
                };
                if t.began {
                    SUBTRANSACTIONS.with(|open| {
                        for &sub in open.borrow().iter() {
                            if !t.savepoints.contains(&sub) {
                                begin.push_str(&format!("SAVEPOINT {};", savepoint_name(sub)));
                                t.savepoints.push(sub);
                            }
                        }
                    });
                }
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
    format!(
        "BEGIN ISOLATION LEVEL {level}{mode}; SET LOCAL lock_timeout = {};",
        guc::remote_lock_timeout_ms()
    )
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subtransaction_event(
    event: pg_sys::SubXactEvent::Type,
    subtransaction: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_START_SUB => {
            SUBTRANSACTIONS.with(|open| open.borrow_mut().push(subtransaction))
        }
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
            // The remote savepoint stays; it is gone with its parent's.
            SUBTRANSACTIONS.with(|open| open.borrow_mut().retain(|&s| s != subtransaction))
        }
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
            SUBTRANSACTIONS.with(|open| open.borrow_mut().retain(|&s| s != subtransaction));
            // No network here (this runs while an error is being cleaned up): the rollback is
            // owed and sent before the connection's next statement, or before its commit.
            OPEN.with(|open| {
                for t in open.borrow_mut().iter_mut() {
                    if let Some(at) = t.savepoints.iter().position(|&s| s == subtransaction) {
                        let name = savepoint_name(subtransaction);
                        t.owed.push_str(&format!(
                            "ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name};"
                        ));
                        t.savepoints.truncate(at);
                    }
                }
            });
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_transaction_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT => pre_commit(),
        pg_sys::XactEvent::XACT_EVENT_COMMIT => {
            finish(true);
            run_after_commit(true);
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT => {
            finish(false);
            run_after_commit(false);
        }
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => refuse_prepare(),
        _ => {}
    }
}

fn refuse_prepare() {
    // Work queued for after a commit could not run at a COMMIT PREPARED.
    let queued = AFTER_COMMIT.with(|queue| !queue.borrow().is_empty());
    let touched = queued || OPEN.with(|open| open.borrow().iter().any(|t| t.began));
    if touched {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "cannot PREPARE a transaction that used sharded tables",
        )
        .hint("Commit the transaction instead; pgshard makes its writes atomic across workers.")
        .raise()
    }
}

/// Before the coordinator commits: commit a single writer in one phase; with several writers,
/// prepare them and record the outcome, on the coordinator when its own transaction writes
/// (`pgshard.commit_record`, committed with it), else on the last writer, which commits in one
/// phase with a row in its `pgshard.commit_decision`. An error here aborts the coordinator
/// transaction, and the abort rolls back every worker (ROLLBACK PREPARED where it prepared),
/// unless the last writer has committed: then the prepared ones are committed whatever the
/// coordinator does.
fn pre_commit() {
    let (ending, last) = OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let writers: Vec<usize> = (0..open.len())
            .filter(|&i| open[i].began && open[i].wrote)
            .collect();
        let origin = match writers.last() {
            Some(&last) if writers.len() > 1 => Some(multi_writer_origin(&open[last])),
            _ => None,
        };
        // The decider commits last, on its own; everyone else ends together first.
        let decider = match origin {
            Some(Origin::Worker { .. }) => writers.last().copied(),
            _ => None,
        };
        let gid_of = |t: &RemoteTransaction| {
            origin.filter(|_| t.wrote).map(|origin| Gid {
                system: system_identifier(),
                database: database_id(),
                origin,
                worker: t.worker.id,
            })
        };
        let mut ending = Vec::new();
        for (i, t) in open.iter_mut().enumerate() {
            if !t.began || Some(i) == decider {
                continue;
            }
            let gid = gid_of(t);
            let end = match &gid {
                Some(gid) => format!("PREPARE TRANSACTION '{gid}'"),
                None => "COMMIT".to_string(),
            };
            ending.push(Ending {
                client: Rc::clone(&t.client),
                worker: t.worker.name.clone(),
                statement: format!("{}{end}", std::mem::take(&mut t.owed)),
                gid,
            });
        }
        let last = decider.map(|i| {
            let t = &mut open[i];
            Ending {
                client: Rc::clone(&t.client),
                worker: t.worker.name.clone(),
                statement: std::mem::take(&mut t.owed),
                gid: None,
            }
        });
        (ending, last)
    });
    end_remote_transactions(&ending);
    let prepared: Vec<Gid> = ending.iter().filter_map(|w| w.gid).collect();
    if prepared.is_empty() {
        return;
    }
    if guc::injected_fault().as_deref() == Some("abandon_after_prepare") {
        ABANDONED.with(|a| a.set(true));
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "pgshard.inject_fault: abandoning the commit after PREPARE TRANSACTION",
        )
        .hint("Test builds only. pgshard.recover_transactions() rolls the prepared transactions back.")
        .raise()
    }
    match last {
        Some(last) => commit_deciding_worker(last, &prepared),
        None => crate::recovery::write_commit_records(&prepared),
    }
}

/// A remote transaction's end as sent at pre-commit.
struct Ending {
    client: Rc<PooledClient>,
    worker: String,
    statement: String,
    gid: Option<Gid>,
}

/// Sends each ending (COMMIT or PREPARE TRANSACTION) concurrently, records what got prepared
/// or committed, then raises the first failure, so that the abort that follows rolls back
/// exactly what is still open.
fn end_remote_transactions(ending: &[Ending]) {
    if ending.is_empty() {
        return;
    }
    let tokens: Vec<_> = ending.iter().map(|w| w.client.cancel_token()).collect();
    let runs = ending.iter().map(|w| w.client.simple_query(&w.statement));
    let results = remote::wait(join_all(runs), &tokens);
    let mut failure = None;
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        for (w, result) in ending.iter().zip(results) {
            let t = open
                .iter_mut()
                .find(|t| t.worker.name == w.worker)
                .expect("worker in OPEN");
            match result {
                Ok(_) if w.gid.is_some() => t.prepared = w.gid,
                Ok(_) => t.began = false,
                Err(e) => {
                    // A worker whose COMMIT or PREPARE failed has ended its transaction.
                    t.began = false;
                    failure.get_or_insert((w.worker.clone(), remote::query_error(&e)));
                }
            }
        }
    });
    if let Some((worker, error)) = failure {
        error.raise_for(&worker, "commit on");
    }
}

/// Commits the deciding worker in one phase, with one `pgshard.commit_decision` row per
/// prepared transaction in the same transaction: once that COMMIT returns, the prepared
/// transactions are to be committed. An ERROR from the worker means its transaction rolled
/// back (so does everything else, with the coordinator's abort); no answer (a lost connection,
/// or none within the wait) leaves the outcome unknown, and the prepared transactions are left
/// for recovery, which reads (or settles) the decision on that worker.
fn commit_deciding_worker(last: Ending, prepared: &[Gid]) {
    let rows: Vec<String> = prepared
        .iter()
        .map(|gid| format!("('{gid}', true)"))
        .collect();
    let statement = format!(
        "{}INSERT INTO pgshard.commit_decision (gid, committed) VALUES {}; COMMIT",
        last.statement,
        rows.join(", ")
    );
    // What this transaction wrote to the coordinator's WAL without an xid (a sequence's
    // nextval, which the workers' rows may hold) must be durable before the workers commit:
    // the coordinator's own commit will not flush it.
    // SAFETY: reads this backend's last WAL position and flushes up to it; cheap when flushed.
    unsafe {
        if pg_sys::XactLastRecEnd != 0 {
            pg_sys::XLogFlush(pg_sys::XactLastRecEnd);
        }
    }
    // In doubt until the worker answers; an error raised in between (none is expected) leaves
    // the prepared transactions to recovery instead of rolling them back.
    IN_DOUBT.with(|d| d.set(true));
    let answer = {
        // The answer decides the transaction: a cancel or termination must not cut the wait
        // short and leave the outcome unknown, so interrupts wait (bounded) until it is in.
        let _held = InterruptsHeld::hold();
        // (The timer is made inside the runtime, as tokio requires.)
        remote::wait(
            async { tokio::time::timeout(END_WAIT, last.client.simple_query(&statement)).await },
            &[],
        )
    };
    let answer = match answer {
        Ok(result) if guc::injected_fault().as_deref() != Some("decision_unanswered") => {
            Some(result)
        }
        // Timed out (or, in tests, as if it had).
        _ => None,
    };
    let refused = matches!(&answer, Some(Err(e)) if is_error_severity(e));
    let committed = matches!(answer, Some(Ok(_)));
    if committed {
        DECIDED.with(|d| d.set(true));
    }
    if committed || refused {
        IN_DOUBT.with(|d| d.set(false));
    }
    OPEN.with(|open| {
        if let Some(t) = open
            .borrow_mut()
            .iter_mut()
            .find(|t| t.worker.name == last.worker)
        {
            // Unless it committed, a ROLLBACK ends whatever is left (after a refusal the
            // block stays open, aborted); a closed connection is skipped.
            t.began = !committed;
        }
    });
    match answer {
        Some(Ok(_)) => {}
        Some(Err(e)) if refused => {
            let mut error = remote::query_error(&e);
            if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
                error.hint = "The worker has no pgshard.commit_decision table (it was registered \
                              by an older pgshard); pgshard.recover_transactions(), which the \
                              background worker runs, creates it.";
            }
            error.raise_for(&last.worker, "commit on")
        }
        _ => PgShardError::new(
            PgSqlErrorCode::ERRCODE_T_R_STATEMENT_COMPLETION_UNKNOWN,
            format!(
                "no answer from worker \"{}\" while it committed (the connection was lost, or \
                 it did not answer within {} s); whether the transaction committed is not known",
                last.worker,
                END_WAIT.as_secs()
            ),
        )
        .hint(
            "pgshard.recover_transactions() (run every pgshard.recovery_interval) finishes it on \
             every worker as that worker decided; check the data before retrying.",
        )
        .raise(),
    }
}

/// Whether a worker's error is of ERROR severity (its transaction rolled back), read from the
/// untranslated severity field when the worker sends it.
fn is_error_severity(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| match d.parsed_severity() {
        Some(severity) => severity == tokio_postgres::error::Severity::Error,
        None => d.severity() == "ERROR",
    })
}

/// PostgreSQL's HOLD_INTERRUPTS while alive: cancel and termination requests wait (they stay
/// pending and are served after).
struct InterruptsHeld;

impl InterruptsHeld {
    fn hold() -> InterruptsHeld {
        // SAFETY: this backend's holdoff counter, restored on drop (also while unwinding).
        unsafe { pg_sys::InterruptHoldoffCount += 1 };
        InterruptsHeld
    }
}

impl Drop for InterruptsHeld {
    fn drop(&mut self) {
        // SAFETY: undoes `hold`.
        unsafe { pg_sys::InterruptHoldoffCount -= 1 };
    }
}

/// Where a transaction that wrote on several workers records its outcome. When the
/// coordinator transaction writes too, its own commit must flush anyway and carries the commit
/// records; otherwise `last_writer` decides, which saves the coordinator a flush and that
/// worker a PREPARE and COMMIT PREPARED.
fn multi_writer_origin(last_writer: &RemoteTransaction) -> Origin {
    // SAFETY: plain state reads of the current transaction; an xid is assigned (allowed
    // before commit) only when the transaction already has one at top level.
    unsafe {
        if pg_sys::GetTopTransactionIdIfAny() != pg_sys::InvalidTransactionId {
            return Origin::Coordinator {
                xid: pg_sys::GetTopFullTransactionId().value,
            };
        }
        Origin::Worker {
            started: pg_sys::PgStartTime,
            backend: pg_sys::MyBackendId,
            lxid: (*pg_sys::MyProc).lxid,
            role: remote::role_oid(last_writer.config.get_user().unwrap_or_default()),
            decider: last_writer.worker.id,
        }
    }
}

fn system_identifier() -> u64 {
    // SAFETY: a plain read of this server's identity.
    unsafe { pg_sys::GetSystemIdentifier() }
}

fn database_id() -> u32 {
    // SAFETY: a plain global of this backend.
    unsafe { pg_sys::MyDatabaseId.to_u32() }
}

/// After the coordinator committed or aborted: finish every remote transaction, then put the
/// healthy connections back in the cache. Never raises: the coordinator's outcome is decided.
fn finish(committed: bool) {
    SUBTRANSACTIONS.with(|open| open.borrow_mut().clear());
    let open = OPEN.with(|open| std::mem::take(&mut *open.borrow_mut()));
    let decided = DECIDED.with(|d| d.replace(false));
    if decided && !committed {
        PgShardError::new(
            PgSqlErrorCode::ERRCODE_WARNING,
            "pgshard: the transaction failed on the coordinator after the workers had decided \
             to commit; its writes on the workers are committed",
        )
        .hint("Do not retry it as a whole: check which of its writes are there.")
        .warn();
    }
    let committed = decided || committed;
    let in_doubt = IN_DOUBT.with(|d| d.replace(false));
    let abandoned = ABANDONED.with(|a| a.replace(false))
        || (committed
            && open.iter().any(|t| t.prepared.is_some())
            && guc::injected_fault().as_deref() == Some("abandon_after_commit"));
    if open.is_empty() || abandoned {
        // Abandoned: the connections close without a word, as if this backend had died; the
        // workers roll back what was not prepared and keep what was, for recovery.
        return;
    }
    if committed
        && open.iter().any(|t| t.prepared.is_some())
        && guc::injected_fault().as_deref() == Some("pause_before_commit_prepared")
    {
        // Widens the window in which a recovery run could race this commit (tests only).
        std::thread::sleep(Duration::from_secs(3));
    }
    let ends = open.iter().map(|t| {
        let statement = match (&t.prepared, committed) {
            (Some(_), _) if in_doubt => None,
            (Some(gid), true) => Some(format!("COMMIT PREPARED '{gid}'")),
            (Some(gid), false) => Some(format!("ROLLBACK PREPARED '{gid}'")),
            // Still open at commit means it was never used for anything to commit.
            (None, _) if t.began => Some("ROLLBACK".to_string()),
            (None, _) => None,
        };
        // A connection the worker closed (it died or restarted) has nothing left to end.
        let statement = statement.filter(|_| !t.client.is_closed() || t.prepared.is_some());
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

/// Statements for one worker, queued by [`after_commit`].
struct AfterCommit {
    /// How to connect, settled when the work was queued: the commit callback must not look
    /// anything up in the catalog, and the role the caller ran as then may be gone by now.
    config: Config,
    statements: Vec<String>,
    /// The warning given when they fail.
    failure: String,
}

/// Runs `statements` on `worker` once the coordinator transaction has committed, never if it
/// aborts: work that must not happen unless a catalog change of the transaction (a move's or a
/// split's switch) is durable. They run in the commit, before the transaction's locks are let
/// go, on a connection of their own, best effort (see [`remote::run_best_effort`]); when they
/// fail (the worker cannot be reached now), `failure` is given as a warning.
pub fn after_commit(worker: &Worker, statements: Vec<String>, failure: String) {
    let Ok(config) = remote::worker_config(worker) else {
        pgrx::warning!("{failure}");
        return;
    };
    AFTER_COMMIT.with(|queue| {
        queue.borrow_mut().push(AfterCommit {
            config,
            statements,
            failure,
        })
    });
}

/// Runs the queued work when the transaction committed, forgets it otherwise. Nothing here
/// may raise an error: the transaction is already committed.
fn run_after_commit(committed: bool) {
    let queued = AFTER_COMMIT.with(|queue| std::mem::take(&mut *queue.borrow_mut()));
    if !committed {
        return;
    }
    for work in queued {
        if !remote::run_best_effort_with(work.config, &work.statements) {
            pgrx::warning!("{}", work.failure);
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
