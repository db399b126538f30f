//! The remote path: connections from this backend to workers over tokio-postgres.
//!
//! Each backend owns one current-thread tokio runtime, created on first use (never in
//! `_PG_init`, which runs in the postmaster before it forks). Futures run only inside
//! [`wait`], on the backend's own thread, and never call PostgreSQL functions; between polls,
//! [`wait`] watches PostgreSQL's interrupt flags so that a query cancel or statement_timeout
//! cancels the remote work and returns promptly.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::pin::pin;
use std::ptr::addr_of;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use pgrx::prelude::*;
use tokio::runtime::Runtime;
use tokio_postgres::{CancelToken, Client, Config, NoTls};

use crate::error::PgShardError;
use crate::guc;

/// How often a wait wakes up to look at the backend's interrupt flags.
const INTERRUPT_POLL: Duration = Duration::from_millis(10);

/// A registered worker as the remote path needs it.
#[derive(Debug, Clone)]
pub struct Worker {
    pub id: i32,
    pub name: String,
    pub conninfo: String,
}

/// Connections are per worker and per role: a session that switches role must not reuse a
/// connection authenticated as another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConnectionKey {
    worker_id: i32,
    user: String,
}

thread_local! {
    static RUNTIME: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("could not build the tokio runtime for pgshard");
    static CONNECTIONS: RefCell<HashMap<ConnectionKey, PooledClient>> =
        RefCell::new(HashMap::new());
    /// Each worker's conninfo as last parsed, with its parse: routing a statement looks a
    /// connection up by worker and role, and should not parse the conninfo again to do it.
    static PARSED: RefCell<HashMap<i32, (String, Config)>> = RefCell::new(HashMap::new());
}

/// A connection that is kept between statements, with the statements prepared on it.
pub struct PooledClient {
    client: Client,
    pub statements: RefCell<pgshard_core::statements::StatementCache>,
    /// When it last went back to the cache: see [`take_cached`].
    idle_since: Instant,
}

impl PooledClient {
    /// Runs `execute` (a query on this connection), first sending `prepare` when it is given:
    /// pipelined, so the EXECUTE goes out before the PREPARE's answer is back. The statement is
    /// recorded as prepared only when its PREPARE succeeded; a failed PREPARE is the error.
    pub async fn after_prepare<T>(
        &self,
        prepare: Option<(String, pgshard_core::statements::Pending)>,
        execute: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, tokio_postgres::Error> {
        let Some((prepare, pending)) = prepare else {
            return execute.await;
        };
        let (prepared, executed) =
            futures_util::future::join(self.client.simple_query(&prepare), execute).await;
        prepared?;
        self.statements.borrow_mut().confirm(pending);
        executed
    }
}

impl From<Client> for PooledClient {
    fn from(client: Client) -> Self {
        PooledClient {
            client,
            statements: RefCell::default(),
            idle_since: Instant::now(),
        }
    }
}

impl Deref for PooledClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// Why a worker could not be used, with the SQLSTATE to report it under.
#[derive(Debug)]
pub struct RemoteError {
    pub code: PgSqlErrorCode,
    pub message: String,
    /// The worker's own DETAIL, when it sent one.
    pub detail: Option<String>,
    pub hint: &'static str,
}

const HINT_UNREACHABLE: &str =
    "Check that the worker is running and that its conninfo (host, port, dbname, \
     user, password) is right; pgshard.check_workers() shows every worker's health.";
const HINT_REMOTE_LOCK: &str = "A lock on the worker was not granted within \
     pgshard.remote_lock_timeout (or the coordinator's lock_timeout, if shorter); this is also \
     how a deadlock between transactions on different workers ends. Retry the transaction.";
const HINT_CONNINFO: &str = "Give a libpq-style conninfo such as \
     'host=10.0.0.11 port=5432 dbname=app user=pgshard' or a postgresql:// URL.";

impl RemoteError {
    /// A failure to establish a connection. Reported as 08001 whatever the worker said: codes
    /// such as 28P01 or 3D000 would otherwise read as failures of the client's own session. The
    /// worker's SQLSTATE is kept in the detail.
    fn from_connect(err: &tokio_postgres::Error) -> Self {
        let mut error = RemoteError::from_postgres(
            err,
            PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
        );
        error.code = PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION;
        error.hint = HINT_UNREACHABLE;
        if let Some(db) = err.as_db_error() {
            let reported = format!("The worker reported SQLSTATE {}.", db.code().code());
            error.detail = Some(match error.detail.take() {
                Some(detail) => format!("{detail} {reported}"),
                None => reported,
            });
        }
        error
    }

    fn from_postgres(err: &tokio_postgres::Error, fallback: PgSqlErrorCode) -> Self {
        match err.as_db_error() {
            // The worker answered: its own error, not a connection problem, so no hint about
            // reaching it.
            Some(db) => RemoteError {
                code: sqlstate_code(db.code().code()).unwrap_or(fallback),
                message: db.message().to_string(),
                detail: db.detail().map(str::to_owned),
                hint: if db.code().code() == "55P03" {
                    HINT_REMOTE_LOCK
                } else {
                    ""
                },
            },
            None => RemoteError {
                code: fallback,
                message: pgshard_core::describe_error(err),
                detail: None,
                hint: HINT_UNREACHABLE,
            },
        }
    }

    pub fn timed_out(what: &str, after: Duration) -> Self {
        RemoteError {
            code: PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            message: format!("{what} timed out after {} ms", after.as_millis()),
            detail: None,
            hint: HINT_UNREACHABLE,
        }
    }

    /// Raises this error as a PostgreSQL ERROR that names the worker.
    pub fn raise_for(self, worker: &str, doing: &str) -> ! {
        let error = PgShardError::new(
            self.code,
            format!("could not {doing} worker \"{worker}\": {}", self.message),
        );
        let error = match self.detail {
            Some(detail) => error.detail(detail),
            None => error,
        };
        if self.hint.is_empty() {
            error.raise()
        } else {
            error.hint(self.hint).raise()
        }
    }
}

/// Maps a five-character SQLSTATE from a worker onto pgrx's error-code enum.
/// Codes PostgreSQL 15 does not know (a user's RAISE … SQLSTATE, a newer server's) give `None`.
fn sqlstate_code(sqlstate: &str) -> Option<PgSqlErrorCode> {
    let packed = pgshard_core::sqlstate::pack(sqlstate)?;
    let code = PgSqlErrorCode::from(packed);
    (code as i32 == packed).then_some(code)
}

/// The role a connection to a worker authenticates as: the conninfo's `user`, else the
/// current role's name (the way libpq falls back to the local user).
fn connection_user(config: &Config) -> String {
    if let Some(user) = config.get_user() {
        return user.to_string();
    }
    // SAFETY: reads the current role of this backend.
    role_name(unsafe { pg_sys::GetUserId() }).expect("the current role exists")
}

/// The name of role `role`, `None` when there is no such role.
fn role_name(role: pg_sys::Oid) -> Option<String> {
    // SAFETY: GetUserNameFromId with noerr returns NULL for a missing role, or a palloc'd
    // C string.
    unsafe {
        let name = pg_sys::GetUserNameFromId(role, true);
        (!name.is_null()).then(|| {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        })
    }
}

/// The coordinator role named `name` (an oid), or 0 when there is none.
pub fn role_oid(name: &str) -> u32 {
    let Ok(name) = std::ffi::CString::new(name) else {
        return 0;
    };
    // SAFETY: a catalog lookup with a valid C string; missing_ok, so it does not raise.
    unsafe { pg_sys::get_role_oid(name.as_ptr(), true).to_u32() }
}

/// The role a connection made for coordinator role `role` authenticates as on `worker` (see
/// [`connection_user`]); `None` when the conninfo names no user and the role is gone.
pub fn connection_user_for_role(worker: &Worker, role: u32) -> Option<String> {
    let config = pgshard_core::conninfo::parse(&worker.conninfo).ok()?;
    match config.get_user() {
        Some(user) => Some(user.to_string()),
        None => role_name(pg_sys::Oid::from(role)),
    }
}

/// Builds the tokio-postgres configuration for a worker: parsed, the role and timeouts filled
/// in. Host names are resolved by [`connect`], when a connection is opened.
pub fn worker_config(worker: &Worker) -> Result<Config, RemoteError> {
    let cached = PARSED.with(|parsed| {
        let parsed = parsed.borrow();
        let (conninfo, config) = parsed.get(&worker.id)?;
        (*conninfo == worker.conninfo).then(|| config.clone())
    });
    let mut config = match cached {
        Some(config) => config,
        None => {
            let config =
                pgshard_core::conninfo::parse(&worker.conninfo).map_err(|e| RemoteError {
                    code: PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    message: format!("invalid conninfo: {e}"),
                    detail: None,
                    hint: HINT_CONNINFO,
                })?;
            PARSED.with(|parsed| {
                let entry = (worker.conninfo.clone(), config.clone());
                parsed.borrow_mut().insert(worker.id, entry)
            });
            config
        }
    };
    let user = connection_user(&config);
    config.user(user);
    config.connect_timeout(guc::connect_timeout());
    if config.get_application_name().is_none() {
        config.application_name("pgshard");
    }
    Ok(config)
}

/// Opens a connection. The whole handshake (TCP connect, startup, authentication) is bounded by
/// `pgshard.connect_timeout`: tokio-postgres bounds only the TCP connect, and a host that
/// accepts connections but never answers must not hang the statement.
pub async fn connect(mut config: Config) -> Result<Client, RemoteError> {
    pgshard_core::conninfo::resolve_hosts(&mut config).map_err(|e| RemoteError {
        code: PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
        message: e.to_string(),
        detail: None,
        hint: HINT_UNREACHABLE,
    })?;
    let timeout = guc::connect_timeout();
    let attempt = async {
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| RemoteError::from_connect(&e))?;
        // The connection task runs whenever this backend waits in `wait`; it ends when the
        // client is dropped or the server closes the socket.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(RemoteError::timed_out("connection", timeout)),
    }
}

/// Converts a failure of a statement sent to a worker.
pub fn query_error(err: &tokio_postgres::Error) -> RemoteError {
    RemoteError::from_postgres(err, PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE)
}

/// A cached connection idle for less than this is reused without first looking for a close
/// from its worker. No worker restarts this fast, so what can be missed is a worker going down
/// (the statement fails anyway) or a worker backend terminated within the window (the statement
/// fails with a connection error, as it would had the close come a moment later). The look
/// costs three system calls, which a session sending statement after statement (a point SELECT
/// takes a tenth of this) should not pay each time.
const STALE_CHECK_AFTER: Duration = Duration::from_millis(10);

/// Takes the cached connection to a worker for the current role out of the cache, if any. The
/// caller owns it while it works and gives it back with [`give_back`] when it is still healthy;
/// one that is dropped instead (on error, or when a statement is cancelled) is closed.
pub fn take_cached(worker: &Worker, config: &Config) -> Option<PooledClient> {
    let key = ConnectionKey {
        worker_id: worker.id,
        user: config.get_user().unwrap_or_default().to_string(),
    };
    let client = CONNECTIONS.with(|cache| cache.borrow_mut().remove(&key))?;
    if client.idle_since.elapsed() >= STALE_CHECK_AFTER {
        // Let the connection task read what arrived while the connection sat idle: a worker
        // that restarted has closed the socket, and the connection must be dropped, not reused.
        RUNTIME.with(|runtime| {
            runtime.block_on(async {
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
            })
        });
    }
    (!client.is_closed()).then_some(client)
}

/// A connection to `worker` for the current role: the cached one when it is still open, else a
/// new one (the future connects). The caller owns it; see [`take_cached`] and [`give_back`].
pub fn cached_or_new(
    worker: &Worker,
) -> impl Future<Output = Result<(PooledClient, Config), RemoteError>> {
    let prepared = worker_config(worker).map(|config| (take_cached(worker, &config), config));
    async move {
        let (cached, config) = prepared?;
        let client = match cached {
            Some(client) => client,
            None => connect(config.clone()).await?.into(),
        };
        Ok((client, config))
    }
}

/// Returns a healthy connection to the cache.
pub fn give_back(worker_id: i32, config: &Config, client: impl Into<PooledClient>) {
    let mut client = client.into();
    client.idle_since = Instant::now();
    if client.is_closed() {
        return;
    }
    let key = ConnectionKey {
        worker_id,
        user: config.get_user().unwrap_or_default().to_string(),
    };
    CONNECTIONS.with(|cache| cache.borrow_mut().insert(key, client));
}

/// Closes every cached connection to a worker (when it is removed).
pub fn forget_worker(worker_id: i32) {
    CONNECTIONS.with(|cache| {
        cache
            .borrow_mut()
            .retain(|key, _| key.worker_id != worker_id)
    });
    PARSED.with(|parsed| parsed.borrow_mut().remove(&worker_id));
}

fn interrupt_pending() -> bool {
    // SAFETY: plain flags set by signal handlers; read volatile, as CHECK_FOR_INTERRUPTS does.
    unsafe { std::ptr::read_volatile(addr_of!(pg_sys::InterruptPending)) != 0 }
}

fn cancel_or_die_pending() -> bool {
    // SAFETY: as above.
    unsafe {
        std::ptr::read_volatile(addr_of!(pg_sys::QueryCancelPending)) != 0
            || std::ptr::read_volatile(addr_of!(pg_sys::ProcDiePending)) != 0
    }
}

/// Runs `future` to completion on this backend's runtime while honouring interrupts.
///
/// Every few milliseconds the wait looks at the interrupt flags. On a query cancel (which is
/// also how statement_timeout and lock_timeout arrive) or a termination request, it asks each
/// worker behind `cancel_tokens` to cancel its running statement, then lets PostgreSQL process
/// the interrupt, which raises the usual "canceling statement …" error; the future is dropped
/// on the way out, closing any connection it owned.
pub fn wait<F: Future>(future: F, cancel_tokens: &[CancelToken]) -> F::Output {
    let mut future = pin!(future);
    let mut cancel_sent = false;
    RUNTIME.with(|runtime| loop {
        let polled =
            runtime.block_on(async { tokio::time::timeout(INTERRUPT_POLL, future.as_mut()).await });
        match polled {
            Ok(output) => return output,
            Err(_) if interrupt_pending() => {
                if !cancel_sent && cancel_or_die_pending() {
                    cancel_sent = true;
                    send_cancels(runtime, cancel_tokens);
                }
                pgrx::check_for_interrupts!();
            }
            Err(_) => {}
        }
    })
}

/// Longest wait for workers to acknowledge cancel requests: the statement is being abandoned
/// anyway, and a hung worker must not hold up the cancel (or a shutdown) on the coordinator.
const CANCEL_WAIT: Duration = Duration::from_secs(1);

/// Asks the workers to cancel what they are running for us; best effort.
fn send_cancels(runtime: &Runtime, tokens: &[CancelToken]) {
    if tokens.is_empty() {
        return;
    }
    let timeout = guc::connect_timeout().min(CANCEL_WAIT);
    runtime.block_on(async {
        let cancels = tokens.iter().map(|token| token.cancel_query(NoTls));
        let _ = tokio::time::timeout(timeout, join_all(cancels)).await;
    });
}

/// Runs each worker's statements one by one on a connection outside any transaction block,
/// the workers concurrently; the first failure with its worker's name.
pub fn run_outside_transactions(
    workers: &[Worker],
    scripts: &[Vec<String>],
) -> Result<(), (String, RemoteError)> {
    let connected = wait(join_all(workers.iter().map(cached_or_new)), &[]);
    let mut clients = Vec::new();
    for (worker, connection) in workers.iter().zip(connected) {
        match connection {
            Ok(connection) => clients.push(connection),
            Err(error) => return Err((worker.name.clone(), error)),
        }
    }
    let tokens: Vec<_> = clients.iter().map(|(c, _)| c.cancel_token()).collect();
    let runs = clients
        .iter()
        .zip(scripts)
        .map(|((client, _), script)| async move {
            for statement in script {
                client.simple_query(statement).await?;
            }
            Ok::<(), tokio_postgres::Error>(())
        });
    let results = wait(join_all(runs), &tokens);
    let mut failure = None;
    for ((worker, (client, config)), result) in workers.iter().zip(clients).zip(results) {
        match result {
            Ok(()) => give_back(worker.id, &config, client),
            Err(error) if failure.is_none() => {
                failure = Some((worker.name.clone(), query_error(&error)))
            }
            Err(_) => {}
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Runs statements on a worker outside any transaction, going on past their errors, on a
/// connection of its own, bounded in time and without processing interrupts: the cleanup after
/// an operation failed, which must neither raise nor hang. Returns whether every statement ran.
pub fn run_best_effort(worker: &Worker, statements: &[String]) -> bool {
    let Ok(config) = worker_config(worker) else {
        return false;
    };
    run_best_effort_with(config, statements)
}

/// [`run_best_effort`] with a connection configuration made beforehand: it looks nothing up in
/// the catalog, so it can run where a transaction is over.
pub fn run_best_effort_with(config: Config, statements: &[String]) -> bool {
    let bound = guc::connect_timeout().max(Duration::from_secs(10));
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            tokio::time::timeout(bound, async {
                let Ok(client) = connect(config).await else {
                    return false;
                };
                let mut all_ran = true;
                for statement in statements {
                    all_ran &= client.simple_query(statement).await.is_ok();
                }
                all_ran
            })
            .await
            .unwrap_or(false)
        })
    })
}
