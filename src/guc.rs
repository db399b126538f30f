//! Settings (GUCs) of pgshard, registered in `_PG_init`.

use std::time::Duration;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `pgshard.connect_timeout`: how long to wait for a worker to accept a connection and answer
/// its startup, so that a dead host cannot hang a statement.
static CONNECT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5000);

/// `pgshard.shard_count`: shards per table when `shard_table` is not given a count.
static SHARD_COUNT: GucSetting<i32> = GucSetting::<i32>::new(8);

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
        c"pgshard.connect_timeout",
        c"Time allowed to connect to a worker, including its startup handshake.",
        c"A worker that does not complete a connection in this time is reported unreachable.",
        &CONNECT_TIMEOUT_MS,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
}

pub fn connect_timeout() -> Duration {
    Duration::from_millis(CONNECT_TIMEOUT_MS.get().max(1) as u64)
}

pub fn shard_count() -> i32 {
    SHARD_COUNT.get()
}
