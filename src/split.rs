//! Splitting shards online: `pgshard.split_shard` cuts a shard group's hash range in two, for
//! every co-located table, and places the upper half on another worker (or the same one).
//!
//! Workers cannot compute pgshard's hash, so the coordinator does the sorting: it reads each
//! old shard with `COPY … TO STDOUT`, hashes every row's key and streams the row into the new
//! lower or upper shard (two new shard tables per table; the old one is left whole, as an
//! orphan, like a moved shard). Changes made meanwhile are captured on the source worker by a
//! trigger that logs the keys written (in `public.pgshard_split_log`); the coordinator then
//! re-copies those keys, round after round, until few are left. For the switch it takes the
//! group's write lock, copies the last keys, and replaces the old shards by the new ones in
//! the catalog in its own transaction, whose commit ends the pause. Reads never stop: until the
//! switch they read the old shards, which stay complete.
//!
//! A key is re-copied whole (delete every row with that key in the new shards, copy every row
//! with it from the old one), so a round is idempotent and rows without a primary key are
//! handled alike. The log is read by marking entries with their round: an entry committed after
//! a round's mark is seen by the next round.

use std::collections::HashSet;
use std::ffi::CString;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use pgshard_core::hashing::{split_range, HashRange, SplitError};
use tokio_postgres::SimpleQueryMessage;

use crate::ddl::ShardKeys;
use crate::error::spi_failed;
use crate::hashing::KeyTextHasher;
use crate::metadata::{self, quote_ident, Shard, ShardedTable};
use crate::operations::{notice, pause_for_tests, refuse, worker_named, Direct, ShardGroup};
use crate::progress::Progress;
use crate::remote::{self, Worker};
use pgshard_core::progress::Phase;

/// Rounds of catching up end once a round re-copies at most this many keys.
const FEW_KEYS: usize = 500;
/// And after this many rounds at most, if writes keep coming faster.
const MAX_ROUNDS: i32 = 20;
/// Rows are sent to a new shard in chunks of about this size.
const CHUNK_BYTES: usize = 1 << 20;

/// The helpers a split installs on the source worker (once; later splits reuse them): the log
/// of changed keys, and the trigger function that fills it. The function's arguments are the
/// split's shard id, the table's position in the group and the key column's name.
const CAPTURE_SETUP: &str = "
CREATE TABLE IF NOT EXISTS public.pgshard_split_log (
    split bigint NOT NULL, tbl int NOT NULL, key text, round int);
CREATE INDEX IF NOT EXISTS pgshard_split_log_split_round ON public.pgshard_split_log (split, round);
CREATE OR REPLACE FUNCTION public.pgshard_split_capture() RETURNS trigger
LANGUAGE plpgsql AS $capture$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO public.pgshard_split_log (split, tbl, key)
        VALUES (TG_ARGV[0]::bigint, TG_ARGV[1]::int, to_jsonb(OLD) ->> TG_ARGV[2]);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO public.pgshard_split_log (split, tbl, key)
        VALUES (TG_ARGV[0]::bigint, TG_ARGV[1]::int, to_jsonb(NEW) ->> TG_ARGV[2]);
    END IF;
    RETURN NULL;
END $capture$;
";

/// Splits the shard `shard_id` and its co-located shards at the middle of their hash range
/// (or after hash value `split_point`); the upper halves go to `to_worker` (default: the same
/// worker). Returns the new shards of the named shard's table, how many shards were split, the
/// rows copied, how long writes to the group were paused at the switch, and the duration.
#[pg_extern(volatile)]
fn split_shard(
    shard_id: i64,
    to_worker: default!(Option<&str>, "NULL"),
    split_point: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(lower_shard_id, i64),
        name!(upper_shard_id, i64),
        name!(shards_split, i32),
        name!(rows_copied, i64),
        name!(write_pause_ms, f64),
        name!(seconds, f64),
    ),
> {
    let (group, _superuser) = ShardGroup::begin(shard_id, "split", c"pgshard.split_shard()");
    let source = group.shards[0].1.worker.clone();
    let target = match to_worker {
        Some(name) => {
            let workers = crate::workers::all_workers();
            workers[worker_named(&workers, name)].clone()
        }
        None => source.clone(),
    };
    let range = group.shards[0].1.range;
    let (lower, upper) = split_range(range, split_point).unwrap_or_else(|e| {
        let message = match e {
            SplitError::TooSmall => {
                format!("shard {shard_id} cannot be split: its hash range {range} holds one value")
            }
            SplitError::OutOfRange => format!(
                "split point {} is not inside shard {shard_id}'s hash range {range} short of its end",
                split_point.unwrap_or_default()
            ),
        };
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            message,
            "The split point is the last hash value of the lower half: hash_min <= split_point < hash_max (pgshard.shards shows the ranges); leave it out to split in the middle.",
        )
    });
    let split = Split::plan(shard_id, &group, source, target, lower, upper);
    let progress = Progress::begin("split", shard_id);
    // Leftovers of an earlier attempt on this shard that failed.
    split.clean_up_capture();
    let started = Instant::now();
    let result = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        split.run(&group, &progress)
    }))
    .catch_others(|error| {
        split.clean_up();
        error.rethrow()
    })
    .execute();
    // The log's rows are no longer needed; the trigger goes with the old shards.
    remote::run_best_effort(
        &split.source,
        &[format!(
            "DELETE FROM public.pgshard_split_log WHERE split = {shard_id}"
        )],
    );
    let seconds = started.elapsed().as_secs_f64();
    let pause_ms = result.pause.as_secs_f64() * 1000.0;
    let named = split
        .tables
        .iter()
        .find(|t| t.old.id == shard_id)
        .expect("the named shard is in its group");
    notice(&format!(
        "split shard group of shard {shard_id} ({} shard{}, {} rows copied) into {} on worker \"{}\" and {} on worker \"{}\" in {seconds:.1} s; writes to it were paused for {pause_ms:.0} ms",
        split.tables.len(),
        if split.tables.len() == 1 { "" } else { "s" },
        result.rows,
        lower,
        split.source.name,
        upper,
        split.target.name,
    ));
    TableIterator::once((
        named.lower.id,
        named.upper.id,
        split.tables.len() as i32,
        result.rows,
        pause_ms,
        seconds,
    ))
}

/// One table's part of a split.
struct SplitTable {
    table: Rc<ShardedTable>,
    old: Shard,
    lower: Shard,
    upper: Shard,
    /// The columns, quoted, in the coordinator's order (the same on every shard).
    columns: String,
    /// The key's position among `columns`, its quoted name and its type on the shards.
    key_position: usize,
    key_column: String,
    key_shard_type: String,
}

struct Split {
    /// The shard named by the caller: it names the trigger and the log entries.
    id: i64,
    source: Worker,
    target: Worker,
    upper_min: i64,
    tables: Vec<SplitTable>,
}

/// One of the two new shards of a split shard.
#[derive(Clone, Copy)]
enum Half {
    Lower,
    Upper,
}

impl SplitTable {
    fn half(&self, half: Half) -> &Shard {
        match half {
            Half::Lower => &self.lower,
            Half::Upper => &self.upper,
        }
    }
}

/// What a finished split reports.
struct Done {
    rows: i64,
    pause: Duration,
}

/// The three connections a split works with: one reads the old shards (and runs the log's
/// statements), one writes the lower halves (on the source worker too), one the upper halves.
struct Connections {
    reader: Direct,
    lower: Direct,
    upper: Direct,
}

impl Split {
    fn plan(
        id: i64,
        group: &ShardGroup,
        source: Worker,
        target: Worker,
        lower: HashRange,
        upper: HashRange,
    ) -> Split {
        let ids: Vec<i64> = Spi::connect(|client| {
            client
                .select(
                    "SELECT nextval('pgshard.shard_shard_id_seq') FROM generate_series(1, $1)",
                    None,
                    &[(2 * group.shards.len() as i32).into()],
                )?
                .into_iter()
                .map(|row| row.get::<i64>(1).map(|v| v.expect("nextval is not NULL")))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_else(|e| spi_failed("could not allocate shard ids", e));
        let tables = group
            .shards
            .iter()
            .zip(ids.chunks(2))
            .map(|((table, old), ids)| {
                let (schema, name) = metadata::schema_and_name(table.oid);
                let half = |id: i64, range: HashRange, worker: &Worker| Shard {
                    id,
                    range,
                    worker: worker.clone(),
                    relation: metadata::shard_relation(&schema, &name, id),
                };
                let columns: Vec<(String, String)> = Spi::connect(|client| {
                    client
                        .select(
                            "SELECT quote_ident(attname), pgshard.shard_column_type(atttypid, atttypmod) \
                             FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 \
                             AND NOT attisdropped ORDER BY attnum",
                            None,
                            &[table.oid.into()],
                        )?
                        .into_iter()
                        .map(|row| {
                            Ok((
                                row.get::<String>(1)?.expect("NOT NULL"),
                                row.get::<String>(2)?.expect("NOT NULL"),
                            ))
                        })
                        .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
                })
                .unwrap_or_else(|e| spi_failed("could not read the table's columns", e));
                let key_column = quote_ident(&table.key_name);
                let key_position = columns
                    .iter()
                    .position(|(c, _)| *c == key_column)
                    .expect("the shard key is a column");
                SplitTable {
                    table: Rc::clone(table),
                    old: old.clone(),
                    lower: half(ids[0], lower, &source),
                    upper: half(ids[1], upper, &target),
                    columns: columns.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", "),
                    key_position,
                    key_shard_type: columns[key_position].1.clone(),
                    key_column,
                }
            })
            .collect();
        Split {
            id,
            source,
            target,
            upper_min: upper.min,
            tables,
        }
    }

    /// The keys of kind `keys` for table `t`'s new `half`.
    fn half_keys(
        &self,
        info: &crate::tables::TableInfo,
        t: &SplitTable,
        half: Half,
        keys: ShardKeys,
    ) -> String {
        crate::ddl::shard_foreign_keys(info, &t.table, t.half(half), keys, &|referenced| {
            self.part_of(referenced).half(half).relation.clone()
        })
    }

    /// The part of the split of co-located table `table`.
    fn part_of(&self, table: &ShardedTable) -> &SplitTable {
        self.tables
            .iter()
            .find(|t| t.table.oid == table.oid)
            .expect("a foreign key between sharded tables joins co-located tables")
    }

    fn trigger(&self) -> String {
        format!("pgshard_split_{}", self.id)
    }

    /// Creates the new shards and the capture, copies, catches up, pauses the group's writes,
    /// copies the last changes and switches the catalog (in this transaction).
    fn run(&self, group: &ShardGroup, progress: &Progress) -> Done {
        let connections = Connections {
            reader: Direct::open_new(&self.source),
            lower: Direct::open_new(&self.source),
            upper: Direct::open_new(&self.target),
        };
        notice(&format!(
            "split of shard {}: creating {} new shard tables",
            self.id,
            2 * self.tables.len()
        ));
        // Each half gets the table's keys to co-located tables, to their half of the same
        // range, once every half exists; keys to reference tables wait for the switch (see
        // ShardKeys). The halves are filled with triggers off (session_replication_role =
        // replica, as logical replication applies rows), so that the order of the copy and of
        // its rounds of re-copied keys does not matter: the old shards enforced the keys when
        // the rows were written.
        let mut lower_ddl = String::new();
        let mut upper_ddl = String::new();
        let mut lower_keys = String::new();
        let mut upper_keys = String::new();
        let mut reference_keys = [String::new(), String::new()];
        for t in &self.tables {
            let info = crate::tables::describe(t.table.oid);
            lower_ddl.push_str(&info.shard_ddl(&t.lower));
            upper_ddl.push_str(&info.shard_ddl(&t.upper));
            lower_keys.push_str(&self.half_keys(&info, t, Half::Lower, ShardKeys::Colocated));
            upper_keys.push_str(&self.half_keys(&info, t, Half::Upper, ShardKeys::Colocated));
            for (keys, half) in reference_keys.iter_mut().zip([Half::Lower, Half::Upper]) {
                keys.push_str(&self.half_keys(&info, t, half, ShardKeys::ReferenceUnchecked));
            }
        }
        let triggers_off = if lower_keys.is_empty() {
            ""
        } else {
            "SET session_replication_role = replica;"
        };
        connections.lower.run(
            &format!("{lower_ddl}{lower_keys}{triggers_off}"),
            "create shards on",
        );
        connections.upper.run(
            &format!("{upper_ddl}{upper_keys}{triggers_off}"),
            "create shards on",
        );

        // The capture exists before the first copy starts: every write the copy misses is
        // logged. Creating a trigger waits for the shard's writers in flight; bounded, so that
        // a stuck writer fails the split instead of stalling the group's writes behind it. One
        // transaction per trigger: holding one shard's lock while waiting for another's could
        // deadlock with a writer of both.
        connections.reader.run(
            &format!("{CAPTURE_SETUP} SET lock_timeout = '10s';"),
            "capture changes on",
        );
        for (i, t) in self.tables.iter().enumerate() {
            connections.reader.run(
                &format!(
                    "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW \
                     EXECUTE FUNCTION public.pgshard_split_capture('{}', '{i}', {})",
                    self.trigger(),
                    t.old.relation,
                    self.id,
                    pgshard_core::layout::quote_literal(&t.table.key_name),
                ),
                "capture changes on",
            );
        }
        connections
            .reader
            .run("RESET lock_timeout", "capture changes on");

        notice(&format!(
            "split of shard {}: copying rows from worker \"{}\" (reads and writes go on)",
            self.id, self.source.name
        ));
        let total = self.tables.iter().map(|t| {
            connections
                .reader
                .first_value(
                    &format!("SELECT count(*) FROM {}", t.old.relation),
                    "count rows on",
                )
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        });
        progress.rows_total(total.sum());
        progress.phase(Phase::Copying);
        let mut rows = 0;
        for t in &self.tables {
            let select = format!("SELECT {} FROM {}", t.columns, t.old.relation);
            rows += self.copy(&connections, t, &select, &|copied| {
                progress.rows_copied(rows + copied)
            });
        }
        progress.phase(Phase::CatchingUp);
        notice(&format!(
            "split of shard {}: {rows} rows copied; catching up with the changes made meanwhile",
            self.id
        ));
        let mut round = 1;
        loop {
            let (keys, copied) = self.catch_up(&connections, round, &|_| {});
            rows += copied;
            round += 1;
            if keys <= FEW_KEYS || round > MAX_ROUNDS {
                break;
            }
        }

        progress.rows_copied(rows);
        pause_for_tests(&connections.reader);
        // The switch: writers of the group wait from here until this transaction commits.
        progress.phase(Phase::Switching);
        group.drop_old_foreign_keys_after_commit("split", self.id);
        group.hold_back_reference_writes();
        let paused = Instant::now();
        group.pause_writes();
        loop {
            let (keys, copied) = self.catch_up(&connections, round, &|_| {});
            rows += copied;
            round += 1;
            if keys == 0 {
                break;
            }
        }
        connections.lower.add_reference_keys(&reference_keys[0]);
        connections.upper.add_reference_keys(&reference_keys[1]);
        self.switch_catalog();
        Done {
            rows,
            pause: paused.elapsed(),
        }
    }

    /// Marks the log entries committed so far with `round`, and re-copies their keys: deletes
    /// them from the new shards and copies their rows again. Returns the number of keys and the
    /// rows copied.
    fn catch_up(
        &self,
        connections: &Connections,
        round: i32,
        report: &dyn Fn(i64),
    ) -> (usize, i64) {
        let marked = connections.reader.run(
            &format!(
                "UPDATE public.pgshard_split_log SET round = {round} \
                 WHERE split = {} AND round IS NULL RETURNING tbl, key",
                self.id
            ),
            "read the changes on",
        );
        let mut keys: Vec<HashSet<String>> = vec![HashSet::new(); self.tables.len()];
        for message in marked {
            if let SimpleQueryMessage::Row(row) = message {
                let table: usize = row
                    .get(0)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(usize::MAX);
                if let (Some(set), Some(key)) = (keys.get_mut(table), row.get(1)) {
                    set.insert(key.to_string());
                }
            }
        }
        let mut copied = 0;
        for (i, (t, keys)) in self.tables.iter().zip(&keys).enumerate() {
            if keys.is_empty() {
                continue;
            }
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            for (writer, half) in [
                (&connections.lower, &t.lower),
                (&connections.upper, &t.upper),
            ] {
                let delete = format!(
                    "DELETE FROM {} WHERE {} = ANY ($1::text[]::{}[])",
                    half.relation, t.key_column, t.key_shard_type
                );
                let token = [writer.client.cancel_token()];
                if let Err(e) =
                    remote::wait(writer.client.execute(delete.as_str(), &[&keys]), &token)
                {
                    remote::query_error(&e)
                        .raise_for(&writer.worker.name, "re-copy changed rows on")
                }
            }
            let select = format!(
                "SELECT {} FROM {} WHERE {} IN (SELECT key::{} FROM public.pgshard_split_log \
                 WHERE split = {} AND tbl = {i} AND round = {round})",
                t.columns, t.old.relation, t.key_column, t.key_shard_type, self.id
            );
            copied += self.copy(connections, t, &select, report);
        }
        (keys.iter().map(HashSet::len).sum(), copied)
    }

    /// Copies the rows `select` reads from the old shard into the lower and upper new shards,
    /// each by its key's hash; returns how many, and reports the count so far to `report`
    /// after each batch.
    fn copy(
        &self,
        connections: &Connections,
        t: &SplitTable,
        select: &str,
        report: &dyn Fn(i64),
    ) -> i64 {
        let reader = &connections.reader;
        let tokens = [
            reader.client.cancel_token(),
            connections.lower.client.cancel_token(),
            connections.upper.client.cancel_token(),
        ];
        let out = format!("COPY ({select}) TO STDOUT");
        let stream =
            remote::wait(reader.client.copy_out(out.as_str()), &tokens).unwrap_or_else(|e| {
                remote::query_error(&e).raise_for(&reader.worker.name, "copy rows from")
            });
        let mut stream = Box::pin(stream.ready_chunks(256));
        let open = |writer: &Direct, half: &Shard| {
            let statement = format!("COPY {} ({}) FROM STDIN", half.relation, t.columns);
            let sink = remote::wait(
                writer.client.copy_in::<_, Bytes>(statement.as_str()),
                &tokens,
            )
            .unwrap_or_else(|e| {
                remote::query_error(&e).raise_for(&writer.worker.name, "copy rows to")
            });
            Box::pin(sink)
        };
        let mut sinks = [
            open(&connections.lower, &t.lower),
            open(&connections.upper, &t.upper),
        ];
        let writers = [&connections.lower, &connections.upper];
        let mut buffers: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let mut lines = pgshard_core::copytext::Lines::default();
        let mut hasher = KeyTextHasher::new(t.table.key_type);
        let mut rows = 0i64;
        let mut memory = PgMemoryContexts::new("pgshard split");
        while let Some(chunks) = remote::wait(stream.next(), &tokens) {
            // SAFETY: the key values read while hashing live in this context, reset per batch.
            unsafe {
                memory.switch_to(|_| {
                    for chunk in chunks {
                        let chunk = chunk.unwrap_or_else(|e| {
                            remote::query_error(&e).raise_for(&reader.worker.name, "copy rows from")
                        });
                        lines.feed(&chunk, |line| {
                            let body = &line[..line.len() - 1];
                            let key = match pgshard_core::copytext::field(body, t.key_position) {
                                Some(Some(key)) => key,
                                _ => panic!("a row of {} without its shard key", t.old.relation),
                            };
                            let key = CString::new(key).expect("COPY text holds no NUL byte");
                            let half = usize::from(hasher.hash(&key) >= self.upper_min);
                            buffers[half].extend_from_slice(line);
                            rows += 1;
                        });
                    }
                });
                memory.reset();
            }
            report(rows);
            for half in 0..2 {
                if buffers[half].len() >= CHUNK_BYTES {
                    let data = Bytes::from(std::mem::take(&mut buffers[half]));
                    send(&mut sinks[half], data, writers[half], &tokens);
                }
            }
        }
        for half in 0..2 {
            let data = Bytes::from(std::mem::take(&mut buffers[half]));
            if !data.is_empty() {
                send(&mut sinks[half], data, writers[half], &tokens);
            }
            if let Err(e) = remote::wait(sinks[half].as_mut().finish(), &tokens) {
                remote::query_error(&e).raise_for(&writers[half].worker.name, "copy rows to")
            }
        }
        rows
    }

    /// Replaces each old shard by its two halves in the catalog; the old shard tables become
    /// orphans, dropped by `pgshard.cleanup_orphaned_shards`.
    fn switch_catalog(&self) {
        for t in &self.tables {
            let run = |sql: &str, args: &[pgrx::datum::DatumWithOid]| {
                Spi::run_with_args(sql, args)
                    .unwrap_or_else(|e| spi_failed("could not switch to the new shards", e))
            };
            run(
                "DELETE FROM pgshard.shard WHERE shard_id = $1",
                &[t.old.id.into()],
            );
            for half in [&t.lower, &t.upper] {
                run(
                    "INSERT INTO pgshard.shard (shard_id, table_oid, hash_min, hash_max) \
                     VALUES ($1, $2::oid::regclass, $3, $4)",
                    &[
                        half.id.into(),
                        t.table.oid.into(),
                        half.range.min.into(),
                        half.range.max.into(),
                    ],
                );
                run(
                    "INSERT INTO pgshard.placement (shard_id, worker_id) VALUES ($1, $2)",
                    &[half.id.into(), half.worker.id.into()],
                );
            }
            run(
                "INSERT INTO pgshard.orphaned_shard (worker_id, relation) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
                &[self.source.id.into(), t.old.relation.as_str().into()],
            );
        }
        Spi::run_with_args(
            "UPDATE pgshard.colocation SET shard_count = shard_count + 1 WHERE colocation_id = $1",
            &[self.tables[0].table.colocation_id.into()],
        )
        .unwrap_or_else(|e| spi_failed("could not count the new shards", e));
    }

    /// Removes the capture from the old shards and its log entries.
    fn clean_up_capture(&self) {
        let mut statements = vec!["SET lock_timeout = '10s'".to_string()];
        for t in &self.tables {
            statements.push(format!(
                "DROP TRIGGER IF EXISTS {} ON {}",
                self.trigger(),
                t.old.relation
            ));
        }
        statements.push(format!(
            "DELETE FROM public.pgshard_split_log WHERE split = {}",
            self.id
        ));
        // Before the helpers exist, the DELETE fails harmlessly.
        remote::run_best_effort(&self.source, &statements);
    }

    /// Removes everything an unfinished split made: the capture and the new shard tables,
    /// which no placement names (the catalog still points at the old shards).
    fn clean_up(&self) {
        self.clean_up_capture();
        for (worker, halves) in [
            (
                &self.source,
                self.tables.iter().map(|t| &t.lower).collect::<Vec<_>>(),
            ),
            (&self.target, self.tables.iter().map(|t| &t.upper).collect()),
        ] {
            let drops: Vec<String> = std::iter::once("SET lock_timeout = '10s'".to_string())
                .chain(
                    halves
                        .iter()
                        .map(|s| format!("DROP TABLE IF EXISTS {} CASCADE", s.relation)),
                )
                .collect();
            remote::run_best_effort(worker, &drops);
        }
    }
}

/// Sends one chunk of rows into a COPY.
fn send(
    sink: &mut std::pin::Pin<Box<tokio_postgres::CopyInSink<Bytes>>>,
    data: Bytes,
    writer: &Direct,
    tokens: &[tokio_postgres::CancelToken],
) {
    if let Err(e) = remote::wait(sink.send(data), tokens) {
        remote::query_error(&e).raise_for(&writer.worker.name, "copy rows to")
    }
}
