//! Progress of long operations (shard moves and splits): each running operation keeps an entry
//! on a board in the coordinator's shared memory, shown by the view
//! `pgshard.operation_progress`; the entry goes when the operation ends, however it ends.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use pgshard_core::progress::{Board, Entry, Phase};

/// Operations that can report at once (more still run, unseen).
const ENTRIES: usize = 32;

#[derive(Clone, Copy, Default)]
pub struct Operations(Board<ENTRIES>);

// SAFETY: plain fixed-size data without pointers, as shared memory requires.
unsafe impl PGRXSharedMemory for Operations {}

// SAFETY: a static named once, initialised by `pg_shmem_init!` in `_PG_init`.
static BOARD: PgLwLock<Operations> = unsafe { PgLwLock::new(c"pgshard operation progress") };

/// Reserves the board's shared memory; called from `_PG_init` while preloading.
#[allow(unexpected_cfgs)]
pub fn init() {
    pg_shmem_init!(BOARD);
}

fn alive(pid: i32) -> bool {
    // SAFETY: looks the pid up in the process array (under its own lock).
    unsafe { !pg_sys::BackendPidGetProc(pid).is_null() }
}

fn my_pid() -> i32 {
    // SAFETY: a plain global of this backend.
    unsafe { pg_sys::MyProcPid }
}

/// This backend's entry on the board while an operation runs; dropped (also on error) it
/// leaves the board. A backend that dies leaves its entry, hidden and reused since its pid is
/// gone.
pub struct Progress {
    on_board: bool,
}

impl Progress {
    pub fn begin(operation: &str, shard_id: i64) -> Progress {
        // Without preloading there is no shared memory: the operation runs unseen.
        if !crate::loaded_at_startup() {
            return Progress { on_board: false };
        }
        // SAFETY: reads the clock.
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        let on_board = BOARD
            .exclusive()
            .0
            .begin(my_pid(), operation, shard_id, now, alive);
        Progress { on_board }
    }

    fn update(&self, change: impl FnOnce(&mut Entry)) {
        if self.on_board {
            BOARD.exclusive().0.update(my_pid(), change);
        }
    }

    pub fn phase(&self, phase: Phase) {
        self.update(|e| e.phase = phase);
    }

    pub fn rows_total(&self, rows: i64) {
        self.update(|e| e.rows_total = rows);
    }

    pub fn rows_copied(&self, rows: i64) {
        self.update(|e| e.rows_copied = rows);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.on_board {
            BOARD.exclusive().0.end(my_pid());
        }
    }
}

/// The running operations, as the board has them (start as microseconds since 2000-01-01).
#[pg_extern(volatile)]
fn operation_progress_entries() -> TableIterator<
    'static,
    (
        name!(pid, i32),
        name!(operation, String),
        name!(shard_id, i64),
        name!(phase, String),
        name!(rows_copied, i64),
        name!(rows_total, i64),
        name!(rows_to_go, i64),
        name!(started_us, i64),
    ),
> {
    crate::ensure_preloaded();
    let running = BOARD.share().0.running(alive);
    TableIterator::new(running.into_iter().map(|e| {
        (
            e.pid,
            e.operation().to_string(),
            e.shard_id,
            e.phase.name().to_string(),
            e.rows_copied,
            e.rows_total,
            e.rows_to_go(),
            e.started_at,
        )
    }))
}

extension_sql!(
    r#"
CREATE VIEW pgshard.operation_progress AS
SELECT pid, operation, shard_id, phase, rows_copied, rows_total, rows_to_go,
       timestamptz '2000-01-01 00:00:00+00' + started_us * interval '1 microsecond' AS started_at
FROM pgshard.operation_progress_entries();
GRANT SELECT ON pgshard.operation_progress TO PUBLIC;
"#,
    name = "progress_view",
    requires = [operation_progress_entries]
);
