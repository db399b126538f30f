//! Settings (GUCs) of pgshard, registered in `_PG_init`.

use std::time::Duration;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;

/// `pgshard.connect_timeout`: how long to wait for a worker to accept a connection and answer
/// its startup, so that a dead host cannot hang a statement.
static CONNECT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5000);

/// `pgshard.shard_count`: shards per table when `shard_table` is not given a count.
static SHARD_COUNT: GucSetting<i32> = GucSetting::<i32>::new(8);

/// `pgshard.recovery_interval`: seconds between runs of the background transaction recovery
/// (0 turns it off).
static RECOVERY_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(60);

/// `pgshard.remote_lock_timeout`: the lock_timeout of remote transactions, which bounds a
/// distributed deadlock (two transactions waiting for each other on different workers, which
/// no single worker can see).
static REMOTE_LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `pgshard.inject_fault` (test builds only): makes the coordinator abandon a two-phase commit
/// at a chosen point, as if it had crashed there.
#[cfg(feature = "fault_injection")]
static INJECT_FAULT: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(None);

/// `pgshard.key_file`: the file holding the 32-byte master key of column encryption. Hidden
/// from non-superusers, like the other settings that point at secrets.
static KEY_FILE: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(None);

/// `pgshard.envelope_io`: encrypted values are written and read as their ciphertext envelope
/// instead of their plaintext, so that dumps stay encrypted.
static ENVELOPE_IO: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `pgshard.max_pulled_rows`: most rows one remote read may bring to the coordinator
/// (0 = no limit), so that a query the shards cannot finish fails clearly instead of pulling a
/// whole table.
static MAX_PULLED_ROWS: GucSetting<i32> = GucSetting::<i32>::new(0);

/// `pgshard.prepare_on_workers`: remote statements that take values computed at execution time
/// (parameters, `now()`) and single-row INSERTs are prepared once per worker connection and
/// then executed by name, which spares the worker their parse and plan.
static PREPARE_ON_WORKERS: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Most shards a table may have; each is a table on a worker.
pub const MAX_SHARD_COUNT: i32 = 4096;

pub fn register() {
    GucRegistry::define_int_guc(
        c"pgshard.shard_count",
        c"Number of shards shard_table() creates when it is not given a count.",
        c"Each shard is a table on a worker; tables sharded with colocate_with take the other table's count.",
        &SHARD_COUNT,
        1,
        MAX_SHARD_COUNT,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgshard.max_pulled_rows",
        c"Most rows one read of sharded tables may bring to the coordinator (0 = no limit).",
        c"A statement whose read exceeds it fails; filters, aggregates and joins that run on the workers bring fewer rows.",
        &MAX_PULLED_ROWS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgshard.connect_timeout",
        c"Time allowed to connect to a worker, including its startup handshake.",
        c"A worker that does not complete a connection in this time is reported unreachable.",
        &CONNECT_TIMEOUT_MS,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pgshard.recovery_interval",
        c"Seconds between runs of pgshard's background recovery of two-phase commits (0 = off).",
        c"The background worker runs pgshard.recover_transactions() in every database that has pgshard.",
        &RECOVERY_INTERVAL_S,
        0,
        i32::MAX / 1000,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pgshard.remote_lock_timeout",
        c"Longest wait for a lock on a worker (0 = no limit).",
        c"Bounds distributed deadlocks, which no single worker detects. The coordinator's lock_timeout applies when it is shorter.",
        &REMOTE_LOCK_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"pgshard.key_file",
        c"File holding the master key of pgshard's column encryption (32 bytes, or 64 hex digits).",
        c"The file must not be readable by group or others. Only superusers can see or change this setting.",
        &KEY_FILE,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_bool_guc(
        c"pgshard.envelope_io",
        c"Encrypted columns are output and input as their ciphertext envelope (hex) instead of their plaintext.",
        c"For dumps that stay encrypted: input then accepts only envelopes that authenticate under this database's keys.",
        &ENVELOPE_IO,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pgshard.prepare_on_workers",
        c"Prepares remote statements that take values (and single-row INSERTs) on the workers, and executes them by name.",
        c"Turn it off when the workers are reached through a pooler that does not keep prepared statements (transaction pooling).",
        &PREPARE_ON_WORKERS,
        GucContext::Userset,
        GucFlags::default(),
    );
    #[cfg(feature = "fault_injection")]
    GucRegistry::define_string_guc(
        c"pgshard.inject_fault",
        c"Test builds only: abandon two-phase commits at a point (abandon_after_prepare, abandon_after_commit), or pause 3 s before COMMIT PREPARED (pause_before_commit_prepared); make a move or split wait up to a minute before its switch (pause_before_switch).",
        c"",
        &INJECT_FAULT,
        GucContext::Suset,
        GucFlags::default(),
    );
}

pub fn recovery_interval() -> Option<Duration> {
    let seconds = RECOVERY_INTERVAL_S.get();
    (seconds > 0).then(|| Duration::from_secs(seconds as u64))
}

/// The lock_timeout for remote transactions, in milliseconds (0 = none): the shorter of
/// `pgshard.remote_lock_timeout` and the coordinator's own lock_timeout.
pub fn remote_lock_timeout_ms() -> i32 {
    // SAFETY: a plain global of this backend's settings.
    let local = unsafe { pg_sys::LockTimeout };
    match (REMOTE_LOCK_TIMEOUT_MS.get(), local) {
        (0, l) => l,
        (r, 0) => r,
        (r, l) => r.min(l),
    }
}

/// The fault point to simulate a crash at, if any (always none outside test builds).
pub fn injected_fault() -> Option<String> {
    #[cfg(feature = "fault_injection")]
    {
        INJECT_FAULT
            .get()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
    }
    #[cfg(not(feature = "fault_injection"))]
    {
        None
    }
}

/// The master key file, when set.
pub fn key_file() -> Option<String> {
    KEY_FILE
        .get()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
}

/// Whether `pgshard.key_file` is `path`, looked at without copying the setting (this runs for
/// every encrypted value).
pub fn key_file_is(path: &str) -> bool {
    // SAFETY: the setting's storage is NULL or a C string PostgreSQL keeps until it changes.
    let raw = unsafe { *KEY_FILE.as_ptr() };
    !raw.is_null() && unsafe { std::ffi::CStr::from_ptr(raw) }.to_bytes() == path.as_bytes()
}

pub fn prepare_on_workers() -> bool {
    PREPARE_ON_WORKERS.get()
}

pub fn envelope_io() -> bool {
    ENVELOPE_IO.get()
}

pub fn connect_timeout() -> Duration {
    Duration::from_millis(CONNECT_TIMEOUT_MS.get().max(1) as u64)
}

pub fn shard_count() -> i32 {
    SHARD_COUNT.get()
}

/// The row limit of one remote read, if any.
pub fn max_pulled_rows() -> Option<u64> {
    let limit = MAX_PULLED_ROWS.get();
    (limit > 0).then_some(limit as u64)
}
