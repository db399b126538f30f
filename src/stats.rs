//! Shard statistics: the statements routed to each shard since the last reset, counted by
//! every backend in shared memory, and the views `pgshard.shard_stats` and `pgshard.hotspots`.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use pgshard_core::stats::ShardCounters;

use crate::error::require_superuser;

/// Shards with counters at most (about 200 kB of shared memory); more are counted as dropped.
const SLOTS: usize = 8192;

#[derive(Clone, Copy, Default)]
pub struct Counters(ShardCounters<SLOTS>);

// SAFETY: plain fixed-size data without pointers, as shared memory requires.
unsafe impl PGRXSharedMemory for Counters {}

// SAFETY: a static named once, initialised by `pg_shmem_init!` in `_PG_init`.
static COUNTERS: PgLwLock<Counters> = unsafe { PgLwLock::new(c"pgshard shard counters") };

/// Reserves the counters' shared memory; called from `_PG_init` while preloading.
#[allow(unexpected_cfgs)]
pub fn init() {
    pg_shmem_init!(COUNTERS);
}

/// Counts one statement routed to each of `shard_ids` (a read or a write).
pub fn count(shard_ids: impl IntoIterator<Item = i64>, write: bool) {
    // Without preloading there is no shared memory (and no routing either).
    if !crate::loaded_at_startup() {
        return;
    }
    let mut counters = COUNTERS.exclusive();
    for shard_id in shard_ids {
        counters.0.add(shard_id, u64::from(!write), u64::from(write));
    }
}

/// The counters: statements routed to each shard since the last reset (or server start).
#[pg_extern(volatile)]
fn shard_counters() -> TableIterator<
    'static,
    (
        name!(shard_id, i64),
        name!(reads, i64),
        name!(writes, i64),
    ),
> {
    crate::ensure_preloaded();
    let counters = COUNTERS.share();
    let rows: Vec<_> = counters
        .0
        .iter()
        .map(|s| (s.shard_id, s.reads as i64, s.writes as i64))
        .collect();
    TableIterator::new(rows)
}

/// Sets every shard's counters back to zero.
#[pg_extern(volatile)]
fn reset_shard_stats() {
    require_superuser("reset shard statistics");
    crate::ensure_preloaded();
    *COUNTERS.exclusive() = Counters::default();
}

extension_sql!(
    r#"
CREATE VIEW pgshard.shard_stats AS
SELECT s.shard_id, s.table_name, s.worker, s.row_estimate, s.bytes,
       coalesce(c.reads, 0) AS reads, coalesce(c.writes, 0) AS writes,
       coalesce(c.reads, 0) + coalesce(c.writes, 0) AS statements
FROM pgshard.shards s LEFT JOIN pgshard.shard_counters() c USING (shard_id);
GRANT SELECT ON pgshard.shard_stats TO PUBLIC;

-- Shards of hash-sharded tables whose statements or size are more than twice the mean of their
-- table's shards.
CREATE VIEW pgshard.hotspots AS
SELECT shard_id, table_name, worker, statements,
       round(statements / nullif(mean_statements, 0), 2) AS load_vs_mean,
       bytes, round(bytes / nullif(mean_bytes, 0), 2) AS size_vs_mean,
       concat_ws(', ', CASE WHEN statements > 2 * mean_statements THEN 'load' END,
                       CASE WHEN bytes > 2 * mean_bytes THEN 'size' END) AS why
FROM (SELECT st.*, avg(st.statements) OVER (PARTITION BY st.table_name) AS mean_statements,
             avg(st.bytes) OVER (PARTITION BY st.table_name) AS mean_bytes
      FROM pgshard.shard_stats st
      JOIN pgshard.sharded_table t ON t.table_oid = st.table_name
      WHERE t.kind = 'hash') x
WHERE statements > 2 * mean_statements OR bytes > 2 * mean_bytes;
GRANT SELECT ON pgshard.hotspots TO PUBLIC;
"#,
    name = "stats_views",
    requires = [shard_counters, "table_views"]
);
