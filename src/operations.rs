//! Growing the cluster: `pgshard.move_shard` moves a shard group (a shard and its co-located
//! shards) to another worker online, and `pgshard.cleanup_orphaned_shards` drops what moves
//! leave behind.
//!
//! A move copies with PostgreSQL's logical replication between the two workers: a publication
//! of the group's shard tables on the source, a subscription on the target that copies them and
//! then streams every later change. Reads and writes go on meanwhile. For the switch, the move
//! takes the group's write lock (`metadata::lock_shard_group`), which waits for the writers in
//! flight and holds new ones back; once the target has applied everything (a marker row written
//! on the source after the pause shows up on the target), the placements change in the caller's
//! transaction and its commit ends the pause. Writers that waited then write at the new place.
//! The old shard tables stay on the source, listed in `pgshard.orphaned_shard`, for statements
//! planned before the switch, until `cleanup_orphaned_shards` drops them.
//!
//! If anything fails before the switch, the catalog still names the source, which kept every
//! write: the move is retried or its leftovers are removed with one call.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use pgrx::prelude::*;
use tokio_postgres::SimpleQueryMessage;

use crate::ddl::ShardKeys;
use crate::error::{require_superuser, spi_failed, PgShardError};
use crate::metadata::{self, AsSuperuser, Shard, ShardedTable};
use crate::progress::Progress;
use crate::remote::{self, Worker};
use pgshard_core::leftovers::Leftover;
use pgshard_core::progress::Phase;

/// How often a move looks at the target's progress while it copies.
const POLL: Duration = Duration::from_millis(100);
/// How often it looks for a marker: while writes are paused, every millisecond counts.
const MARKER_POLL: Duration = Duration::from_millis(2);

/// Moves the shard `shard_id`, with the shards co-located with it, to the worker `to_worker`;
/// returns how many shards moved and how many rows they held when the copy had caught up, how long writes to them were paused at the switch,
/// and how long the whole move took.
#[pg_extern(volatile)]
fn move_shard(
    shard_id: i64,
    to_worker: &str,
) -> TableIterator<
    'static,
    (
        name!(shards_moved, i32),
        name!(rows_moved, i64),
        name!(write_pause_ms, f64),
        name!(seconds, f64),
    ),
> {
    let (group, _superuser) = ShardGroup::begin(shard_id, "move", c"pgshard.move_shard()");
    let workers = crate::workers::all_workers();
    let target = workers[worker_named(&workers, to_worker)].clone();
    let source = group.shards[0].1.worker.clone();
    if source.id == target.id {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("shard {shard_id} is already on worker \"{to_worker}\""),
            "pgshard.shards shows where each shard is.",
        )
    }
    let name = format!("pgshard_move_{shard_id}");
    let marker = format!("public.{name}_marker");
    let moving = Move {
        source: source.clone(),
        target: target.clone(),
        name: name.clone(),
        marker: marker.clone(),
        target_tables: group
            .shards
            .iter()
            .map(|(_, s)| s.relation.clone())
            .collect(),
    };
    // Leftovers of an earlier attempt that failed.
    moving.clean_up();
    let started = Instant::now();
    let progress = Progress::begin("move", shard_id);
    let result = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        group.copy_and_switch(&moving, shard_id, &progress)
    }))
    .catch_others(|error| {
        moving.clean_up();
        error.rethrow()
    })
    .execute();
    moving.clean_up_replication();
    let seconds = started.elapsed().as_secs_f64();
    let pause_ms = result.pause.as_secs_f64() * 1000.0;
    notice(&format!(
        "moved shard group of shard {shard_id} ({} shard{}, {} rows) from worker \"{}\" to \"{}\" in {seconds:.1} s; writes to it were paused for {pause_ms:.0} ms",
        group.shards.len(),
        if group.shards.len() == 1 { "" } else { "s" },
        result.rows,
        source.name,
        target.name,
    ));
    TableIterator::once((group.shards.len() as i32, result.rows, pause_ms, seconds))
}

/// Drops the shard tables that moves and splits left on their old workers, and what
/// interrupted moves and splits left anywhere (their new shard tables, replication, capture
/// triggers and log entries); returns how many tables it dropped. Statements planned before a
/// move or split may still read the old tables for a moment, so only those orphaned at least
/// `min_age` ago are dropped. Refused while a move, split or schema change runs.
#[pg_extern(volatile)]
fn cleanup_orphaned_shards(min_age: default!(pgrx::datum::Interval, "'0'")) -> i64 {
    require_superuser("clean up shards");
    let _superuser = AsSuperuser::enter();
    // What a running operation is making would look like leftovers: wait for none.
    for oid in metadata::sharded_table_oids() {
        if !metadata::lock_against_operations(oid, false) {
            refuse(
                PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                format!(
                    "cannot clean up shards while {} is being moved, split or changed",
                    metadata::qualified_name(oid)
                ),
                "pgshard.operation_progress shows running moves and splits; retry when they end.",
            )
        }
    }
    let leftovers = remove_leftovers();
    let orphans = orphaned_shards(min_age);
    if orphans.is_empty() {
        return leftovers;
    }
    let workers = crate::workers::all_workers();
    let shards: Vec<Shard> = orphans
        .iter()
        .filter_map(|(worker_id, relation)| {
            let worker = workers.iter().find(|w| w.id == *worker_id)?;
            Some(Shard {
                id: 0,
                range: pgshard_core::hashing::uniform_ranges(1)[0],
                worker: worker.clone(),
                relation: relation.clone(),
            })
        })
        .collect();
    crate::tables::run_on_shard_workers(&shards, "drop moved shards on", |shard| {
        // CASCADE: foreign keys between old shards of one group go with them. Dropping a key
        // locks the reference copy it references: bounded.
        format!(
            "SET LOCAL lock_timeout = '10s'; DROP TABLE IF EXISTS {} CASCADE;",
            shard.relation
        )
    });
    for (worker_id, relation) in &orphans {
        Spi::run_with_args(
            "DELETE FROM pgshard.orphaned_shard WHERE worker_id = $1 AND relation = $2",
            &[(*worker_id).into(), relation.as_str().into()],
        )
        .unwrap_or_else(|e| spi_failed("could not update pgshard.orphaned_shard", e));
    }
    leftovers + orphans.len() as i64
}

/// The old shard tables (worker, relation) orphaned at least `min_age` ago.
fn orphaned_shards(min_age: pgrx::datum::Interval) -> Vec<(i32, String)> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT worker_id, relation FROM pgshard.orphaned_shard \
                 WHERE orphaned_at <= now() - $1 ORDER BY worker_id, relation",
                None,
                &[min_age.into()],
            )?
            .into_iter()
            .map(|row| {
                Ok((
                    row.get::<i32>(1)?.expect("NOT NULL"),
                    row.get::<String>(2)?.expect("NOT NULL"),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .unwrap_or_else(|e| spi_failed("could not read pgshard.orphaned_shard", e))
}

/// Removes, on every worker, what interrupted moves and splits left (nothing runs, the caller
/// made sure): subscriptions, publications, slots and marker tables of moves; capture triggers
/// and log entries of splits; and shard tables that no placement or orphan names there.
/// Returns how many shard tables it dropped.
fn remove_leftovers() -> i64 {
    let workers = crate::workers::all_workers();
    let mut known: HashSet<(i32, String)> = HashSet::new();
    let mut names: Vec<(String, String)> = Vec::new();
    for oid in metadata::sharded_table_oids() {
        if let Some(table) = metadata::sharded_table(oid) {
            known.extend(table.shards.iter().map(|s| (s.worker.id, s.relation.clone())));
            names.push(metadata::schema_and_name(oid));
        }
    }
    let orphaned: HashSet<(i32, String)> = orphaned_shards(
        pgrx::datum::Interval::new(0, 0, 0).expect("a zero interval"),
    )
    .into_iter()
    .collect();
    let found: Vec<Vec<Leftover>> = workers
        .iter()
        .map(|worker| leftovers_on(worker, &known, &orphaned, &names))
        .collect();
    for (worker, leftovers) in workers.iter().zip(&found) {
        let removed: Vec<String> = leftovers.iter().filter_map(Leftover::description).collect();
        if !removed.is_empty() {
            notice(&format!(
                "removing leftovers of interrupted operations on worker \"{}\": {}",
                worker.name,
                removed.join(", ")
            ));
        }
    }
    for first in [true, false] {
        for (worker, leftovers) in workers.iter().zip(&found) {
            for leftover in leftovers.iter().filter(|l| l.goes_first() == first) {
                for statement in leftover.statements() {
                    remote::run_best_effort(
                        worker,
                        &["SET lock_timeout = '10s'".to_string(), statement],
                    );
                }
            }
        }
    }
    found
        .iter()
        .flatten()
        .filter(|l| matches!(l, Leftover::ShardTable(_)))
        .count() as i64
}

/// What interrupted operations left on `worker`: every object named like a move's or a
/// split's, and the shard tables (a sharded table's name, `_`, a shard id) that neither a
/// placement nor an orphan entry (`known`) names there. A finished split's trigger is not one:
/// it goes with its orphaned old shard.
fn leftovers_on(
    worker: &Worker,
    known: &HashSet<(i32, String)>,
    orphaned: &HashSet<(i32, String)>,
    names: &[(String, String)],
) -> Vec<Leftover> {
    let found = Direct::open(worker).run(
        "SELECT 'table', n.nspname, c.relname, substring(c.relname from '_([0-9]+)$') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND c.relname ~ '_[0-9]+$' \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         UNION ALL SELECT 'subscription', quote_ident(subname), NULL, NULL FROM pg_subscription \
           WHERE subname LIKE 'pgshard\\_move\\_%' \
         UNION ALL SELECT 'publication', quote_ident(pubname), NULL, NULL FROM pg_publication \
           WHERE pubname LIKE 'pgshard\\_move\\_%' \
         UNION ALL SELECT 'slot', slot_name, NULL, NULL FROM pg_replication_slots \
           WHERE slot_name LIKE 'pgshard\\_move\\_%' AND NOT active \
         UNION ALL SELECT 'marker', 'public.' || quote_ident(relname), NULL, NULL FROM pg_class \
           WHERE relname LIKE 'pgshard\\_move\\_%\\_marker' AND relkind = 'r' \
         UNION ALL SELECT 'trigger', quote_ident(t.tgname), \
           quote_ident(n.nspname) || '.' || quote_ident(c.relname), NULL \
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.tgname LIKE 'pgshard\\_split\\_%' \
         UNION ALL SELECT 'log', NULL, NULL, NULL \
           WHERE to_regclass('public.pgshard_split_log') IS NOT NULL",
        "look for leftovers on",
    );
    let here = |relation: &str| (worker.id, relation.to_string());
    found
        .iter()
        .filter_map(|message| {
            let SimpleQueryMessage::Row(row) = message else {
                return None;
            };
            let name = || row.get(1).unwrap_or_default().to_string();
            match row.get(0)? {
                "table" => {
                    let (schema, relname) = (row.get(1)?, row.get(2)?);
                    let id: i64 = row.get(3)?.parse().ok()?;
                    let relation = names
                        .iter()
                        .filter(|(s, t)| {
                            s == schema
                                && id >= 100001
                                && pgshard_core::layout::shard_relation_name(t, id) == relname
                        })
                        .map(|(s, t)| metadata::shard_relation(s, t, id))
                        .next()?;
                    (!known.contains(&here(&relation)) && !orphaned.contains(&here(&relation)))
                        .then_some(Leftover::ShardTable(relation))
                }
                "subscription" => Some(Leftover::Subscription(name())),
                "publication" => Some(Leftover::Publication(name())),
                "slot" => Some(Leftover::Slot(name())),
                "marker" => Some(Leftover::Marker(name())),
                "trigger" => {
                    let table = row.get(2)?;
                    (!orphaned.contains(&here(table))).then(|| Leftover::Trigger {
                        name: name(),
                        table: table.to_string(),
                    })
                }
                _ => Some(Leftover::SplitLog),
            }
        })
        .collect()
}

/// The shards that move together: one per table of the co-location group, with one hash range.
pub(crate) struct ShardGroup {
    /// (table, its shard), in table oid order.
    pub(crate) shards: Vec<(std::rc::Rc<ShardedTable>, Shard)>,
}

impl ShardGroup {
    /// Takes the group's write lock: waits for the writers in flight and holds new ones back
    /// until this transaction ends.
    pub(crate) fn pause_writes(&self) {
        let (first_table, first_shard) = &self.shards[0];
        let index = first_table
            .shards
            .iter()
            .position(|s| s.id == first_shard.id)
            .expect("the shard is in its table");
        metadata::lock_shard_group(first_table, index, pg_sys::ExclusiveLock);
    }

    /// Holds back the writers of the reference tables that the group's tables reference,
    /// until this transaction ends, after those in flight: a switch adds the new shards' keys
    /// to them and, once committed, drops the old shards' (see [`ShardKeys`]), which on a
    /// worker must not wait for a reference writer that itself waits for the group's write
    /// lock. Both are coordinator locks, so a writer that holds the group's and then wants the
    /// reference table's is a deadlock PostgreSQL detects; taken before the group's, the
    /// writers in flight finish before the group's writes pause.
    ///
    /// The reference tables those reference are held back too, and so on: a delete that
    /// cascades from one of them into a referenced table would reach the shards as well.
    pub(crate) fn hold_back_reference_writes(&self) {
        let references = |table: &ShardedTable| {
            crate::ddl::referenced_reference_tables(&crate::tables::describe(table.oid), table)
        };
        let mut referenced: Vec<pg_sys::Oid> = Vec::new();
        let mut pending: Vec<pg_sys::Oid> = self
            .shards
            .iter()
            .flat_map(|(table, _)| references(table))
            .collect();
        while let Some(oid) = pending.pop() {
            if referenced.contains(&oid) {
                continue;
            }
            referenced.push(oid);
            if let Some(reference) = metadata::sharded_table(oid) {
                pending.extend(references(&reference));
            }
        }
        referenced.sort_unstable_by_key(|oid| oid.to_u32());
        for oid in referenced {
            metadata::lock_reference_writes(oid);
        }
    }

    /// The group's shard of co-located table `table`.
    pub(crate) fn shard_of(&self, table: &ShardedTable) -> &Shard {
        &self
            .shards
            .iter()
            .find(|(member, _)| member.oid == table.oid)
            .expect("a foreign key between sharded tables joins co-located tables")
            .1
    }

    /// Once the switch of a move or split (`operation`, of shard `shard_id`) has committed, the
    /// old shards lose their foreign keys: an old shard that still referenced its worker's
    /// reference copy would refuse the deletion there of a row that only its stale rows use.
    /// (They go with the old shards in `cleanup_orphaned_shards` otherwise.) Queued before the
    /// pause, so that its catalog reads do not lengthen it; an abort forgets it.
    pub(crate) fn drop_old_foreign_keys_after_commit(&self, operation: &str, shard_id: i64) {
        let drops: Vec<String> = self
            .shards
            .iter()
            .filter_map(|(table, shard)| {
                let names = crate::ddl::foreign_key_names(&crate::tables::describe(table.oid));
                crate::ddl::drop_foreign_keys(&shard.relation, &names)
            })
            .collect();
        if drops.is_empty() {
            return;
        }
        let worker = &self.shards[0].1.worker;
        // Dropping a key locks the table it references, AccessExclusive: bounded, so that a
        // long read of an old shard or of the reference copy does not hold the copy's readers
        // back for long (the group's writers wait too: this runs before the commit lets go of
        // the locks).
        let statements = std::iter::once("SET lock_timeout = '500ms'".to_string())
            .chain(drops)
            .collect();
        crate::xact::after_commit(
            worker,
            statements,
            format!(
                "pgshard: the {operation} of shard {shard_id} is done, but its old shards on worker \"{}\" still have their foreign keys; deleting a referenced row can fail there until pgshard.cleanup_orphaned_shards() drops them",
                worker.name
            ),
        );
    }
}

/// What a finished copy and switch report.
struct Moved {
    rows: i64,
    pause: Duration,
}

impl ShardGroup {
    /// The start of every move and split (`operation`, run by SQL function `function`):
    /// superuser only, never inside a transaction block (the write pause would last until the
    /// caller's COMMIT); the group is found and locked, and the catalog read as superuser while
    /// the returned guard lives.
    pub(crate) fn begin(
        shard_id: i64,
        operation: &str,
        function: &std::ffi::CStr,
    ) -> (ShardGroup, AsSuperuser) {
        require_superuser(&format!("{operation} shards"));
        metadata::prevent_in_transaction_block(function);
        let superuser = AsSuperuser::enter();
        (ShardGroup::find(shard_id, operation), superuser)
    }

    /// The group of shard `shard_id`, locked against other moves and splits, schema changes and
    /// TRUNCATE of its tables; `operation` ("move", "split") names what refusals refuse.
    fn find(shard_id: i64, operation: &str) -> ShardGroup {
        let table_oid = Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT table_oid::oid FROM pgshard.shard WHERE shard_id = $1",
            &[shard_id.into()],
        )
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            refuse(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("shard {shard_id} does not exist"),
                "pgshard.shards lists the shards.",
            )
        });
        let table = metadata::sharded_table(table_oid).expect("a shard's table is distributed");
        if table.reference {
            refuse(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!(
                    "shard {shard_id} is a copy of reference table {}: every worker has one",
                    metadata::qualified_name(table_oid)
                ),
                "Reference tables are copied to new workers by pgshard.add_worker.",
            )
        }
        let range = table
            .shards
            .iter()
            .find(|s| s.id == shard_id)
            .expect("the shard is in its table")
            .range;
        let mut shards = Vec::new();
        for oid in metadata::sharded_table_oids() {
            let Some(member) = metadata::sharded_table(oid) else {
                continue;
            };
            if member.reference || member.colocation_id != table.colocation_id {
                continue;
            }
            if !metadata::lock_against_operations(oid, false) {
                refuse(
                    PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                    format!(
                        "cannot {operation} shard {shard_id}: {} is being changed by another operation",
                        metadata::qualified_name(oid)
                    ),
                    "Wait for the other move, split, schema change or TRUNCATE to finish, then retry.",
                )
            }
            let shard = member
                .shards
                .iter()
                .find(|s| s.range == range)
                .expect("co-located tables share their ranges")
                .clone();
            shards.push((member, shard));
        }
        ShardGroup { shards }
    }

    /// Creates the shard tables on the target, copies and streams the rows, pauses the group's
    /// writes, waits for the last change, and switches the placements (in this transaction).
    fn copy_and_switch(&self, moving: &Move, shard_id: i64, progress: &Progress) -> Moved {
        let source = Direct::open(&moving.source);
        let target = Direct::open(&moving.target);
        // Rows at the start, per shard: what the progress view counts a finished copy as.
        let counted = source.run(
            &format!(
                "SELECT {}",
                self.shards
                    .iter()
                    .map(|(_, s)| format!("(SELECT count(*) FROM {})", s.relation))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "count rows on",
        );
        let counts: Vec<i64> = counted
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..self.shards.len())
                        .map(|i| row.get(i).and_then(|v| v.parse().ok()).unwrap_or(0))
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default();
        let total = counts.iter().sum();
        progress.rows_total(total);
        notice(&format!(
            "move of shard {shard_id}: creating {} shard table{} on worker \"{}\"",
            self.shards.len(),
            if self.shards.len() == 1 { "" } else { "s" },
            moving.target.name
        ));
        // The keys between the group's tables are added once every table exists. Logical
        // replication applies the rows with triggers off (session_replication_role = replica),
        // so the order in which they arrive does not matter; the source enforced the keys when
        // they were written. Keys to reference tables wait for the switch (see ShardKeys).
        let mut ddl = String::new();
        let mut foreign_keys = String::new();
        let mut reference_keys = String::new();
        for (table, shard) in &self.shards {
            let on_target = Shard {
                worker: moving.target.clone(),
                ..shard.clone()
            };
            let info = crate::tables::describe(table.oid);
            ddl.push_str(&info.shard_ddl(&on_target));
            let keys = |kind| {
                crate::ddl::shard_foreign_keys(&info, table, &on_target, kind, &|referenced| {
                    self.shard_of(referenced).relation.clone()
                })
            };
            foreign_keys.push_str(&keys(ShardKeys::Colocated));
            reference_keys.push_str(&keys(ShardKeys::ReferenceUnchecked));
        }
        let marker_ddl = format!("CREATE TABLE {} (v bigint);", moving.marker);
        target.run(
            &format!("{ddl}{foreign_keys}{marker_ddl}"),
            "create shards on",
        );
        // Logical replication needs a replica identity to send UPDATE and DELETE: a shard
        // without a primary key sends whole rows while it is published.
        let mut identities = String::new();
        for (table, shard) in &self.shards {
            let keyed = Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1 AND indisprimary)",
                &[table.oid.into()],
            )
            .ok()
            .flatten()
            .unwrap_or(false);
            if !keyed {
                identities.push_str(&format!(
                    "ALTER TABLE {} REPLICA IDENTITY FULL;",
                    shard.relation
                ));
            }
        }
        if !identities.is_empty() {
            source.run(&identities, "prepare shards on");
        }
        source.run(
            &format!(
                "{marker_ddl} CREATE PUBLICATION {} FOR TABLE {}, {};",
                moving.name,
                moving.target_tables.join(", "),
                moving.marker
            ),
            "publish shards on",
        );
        notice(&format!(
            "move of shard {shard_id}: copying rows from worker \"{}\" (reads and writes go on)",
            moving.source.name
        ));
        target.run(
            &format!(
                "CREATE SUBSCRIPTION {0} CONNECTION {1} PUBLICATION {0} WITH (slot_name = {0})",
                moving.name,
                pgshard_core::layout::quote_literal(&moving.source.conninfo)
            ),
            "subscribe on",
        );
        progress.phase(Phase::Copying);
        let tables = self.shards.len() + 1;
        loop {
            // Tables in sync, and rows copied: those of the tables copied (counted on the
            // source at the start) plus those the copies under way have processed.
            let followed = target.run(
                &format!(
                    "SELECT count(*) FILTER (WHERE r.srsubstate = 'r'), \
                       string_agg(quote_ident(n.nspname) || '.' || quote_ident(c.relname), ' ') \
                         FILTER (WHERE r.srsubstate IN ('r', 's')), \
                       coalesce(sum(p.tuples_processed), 0) \
                     FROM pg_subscription s JOIN pg_subscription_rel r ON r.srsubid = s.oid \
                     JOIN pg_class c ON c.oid = r.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                     LEFT JOIN pg_stat_progress_copy p ON p.relid = r.srrelid \
                     WHERE s.subname = '{}'",
                    moving.name
                ),
                "follow the copy on",
            );
            let row = followed.iter().find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            });
            let ready = row
                .and_then(|r| r.get(0))
                .and_then(|v| v.parse::<usize>().ok());
            let copied_tables: Vec<&str> = row
                .and_then(|r| r.get(1))
                .map(|v| v.split(' ').collect())
                .unwrap_or_default();
            let in_flight = row
                .and_then(|r| r.get(2))
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
            let done: i64 = self
                .shards
                .iter()
                .zip(&counts)
                .filter(|((_, s), _)| copied_tables.contains(&s.relation.as_str()))
                .map(|(_, count)| count)
                .sum();
            progress.rows_copied(done + in_flight);
            if ready == Some(tables) {
                break;
            }
            target.sleep(POLL);
        }
        notice(&format!(
            "move of shard {shard_id}: rows copied; catching up with the changes made meanwhile"
        ));
        progress.phase(Phase::CatchingUp);
        moving.wait_for_marker(&source, &target, 1);
        // Counted before the pause, which must stay short (rows written during the switch are
        // not in the count).
        let mut rows = 0;
        for (_, shard) in &self.shards {
            rows += target
                .first_value(
                    &format!("SELECT count(*) FROM {}", shard.relation),
                    "count rows on",
                )
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
        }
        progress.rows_copied(rows);
        pause_for_tests(&target);
        // The switch: writers of the group wait from here until this transaction commits.
        progress.phase(Phase::Switching);
        self.drop_old_foreign_keys_after_commit("move", shard_id);
        self.hold_back_reference_writes();
        let paused = Instant::now();
        self.pause_writes();
        moving.wait_for_marker(&source, &target, 2);
        target.add_reference_keys(&reference_keys);
        for (_, shard) in &self.shards {
            Spi::run_with_args(
                "UPDATE pgshard.placement SET worker_id = $2 WHERE shard_id = $1 AND worker_id = $3",
                &[shard.id.into(), moving.target.id.into(), moving.source.id.into()],
            )
            .unwrap_or_else(|e| spi_failed("could not switch the placement", e));
            // The old table is now an orphan; a stale orphan of the same name on the target
            // (left by an earlier move away from it, and replaced above) no longer is.
            Spi::run_with_args(
                "DELETE FROM pgshard.orphaned_shard WHERE worker_id = $1 AND relation = $2",
                &[moving.target.id.into(), shard.relation.as_str().into()],
            )
            .unwrap_or_else(|e| spi_failed("could not update pgshard.orphaned_shard", e));
            Spi::run_with_args(
                "INSERT INTO pgshard.orphaned_shard (worker_id, relation) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
                &[moving.source.id.into(), shard.relation.as_str().into()],
            )
            .unwrap_or_else(|e| spi_failed("could not record the old shard", e));
        }
        Moved {
            rows,
            pause: paused.elapsed(),
        }
    }
}

/// The names a move creates on the two workers.
struct Move {
    source: Worker,
    target: Worker,
    /// Publication, subscription and replication slot.
    name: String,
    /// A one-column table, published with the shards, whose rows mark a point in the source's
    /// changes.
    marker: String,
    /// The group's shard tables (their names are the same on the target).
    target_tables: Vec<String>,
}

impl Move {
    /// Writes marker `round` on the source and waits until the target has applied it: every
    /// change committed on the source before it has then been applied too (logical
    /// replication applies in commit order).
    fn wait_for_marker(&self, source: &Direct, target: &Direct, round: i64) {
        source.run(
            &format!("INSERT INTO {} VALUES ({round})", self.marker),
            "mark the changes on",
        );
        loop {
            let seen = target.first_value(
                &format!("SELECT count(*) FROM {} WHERE v = {round}", self.marker),
                "follow the changes on",
            );
            if seen.as_deref() == Some("1") {
                return;
            }
            target.sleep(MARKER_POLL);
        }
    }

    /// Removes the subscription (and with it the replication slot), the publication and the
    /// markers; the shard tables on the target stay (they are the new placement).
    fn clean_up_replication(&self) {
        remote::run_best_effort(
            &self.target,
            &[
                format!("DROP SUBSCRIPTION IF EXISTS {}", self.name),
                format!("DROP TABLE IF EXISTS {}", self.marker),
            ],
        );
        remote::run_best_effort(
            &self.source,
            &[
                format!("DROP PUBLICATION IF EXISTS {}", self.name),
                format!("DROP TABLE IF EXISTS {}", self.marker),
                format!(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                     WHERE slot_name = '{}' AND NOT active",
                    self.name
                ),
            ],
        );
    }

    /// Removes everything an unfinished move made: replication, and the shard tables on the
    /// target, which no placement names (the catalog still points at the source).
    fn clean_up(&self) {
        // A subscription whose source cannot be reached is dropped without its slot.
        remote::run_best_effort(
            &self.target,
            &[
                format!("ALTER SUBSCRIPTION {} DISABLE", self.name),
                format!("DROP SUBSCRIPTION IF EXISTS {}", self.name),
                format!("ALTER SUBSCRIPTION {} SET (slot_name = NONE)", self.name),
                format!("DROP SUBSCRIPTION IF EXISTS {}", self.name),
            ],
        );
        self.clean_up_replication();
        // CASCADE: the foreign keys between the group's tables go with them.
        let drops: Vec<String> = std::iter::once("SET lock_timeout = '10s'".to_string())
            .chain(
                self.target_tables
                    .iter()
                    .map(|t| format!("DROP TABLE IF EXISTS {t} CASCADE")),
            )
            .collect();
        remote::run_best_effort(&self.target, &drops);
    }
}

/// A connection to one worker outside the coordinator's transaction: each statement commits
/// on its own (logical replication is set up that way).
pub(crate) struct Direct {
    pub(crate) worker: Worker,
    pub(crate) client: remote::PooledClient,
}

impl Direct {
    pub(crate) fn open(worker: &Worker) -> Direct {
        match remote::wait(remote::cached_or_new(worker), &[]) {
            Ok((client, _)) => Direct {
                worker: worker.clone(),
                client,
            },
            Err(e) => e.raise_for(&worker.name, "connect to"),
        }
    }

    /// A connection of its own, never shared with statements of the coordinator's
    /// transaction (an operation that reads and writes one worker at once needs several).
    pub(crate) fn open_new(worker: &Worker) -> Direct {
        let connected = remote::worker_config(worker)
            .and_then(|config| remote::wait(remote::connect(config), &[]));
        match connected {
            Ok(client) => Direct {
                worker: worker.clone(),
                client: client.into(),
            },
            Err(e) => e.raise_for(&worker.name, "connect to"),
        }
    }

    pub(crate) fn run(&self, sql: &str, doing: &str) -> Vec<SimpleQueryMessage> {
        let token = [self.client.cancel_token()];
        remote::wait(self.client.simple_query(sql), &token)
            .unwrap_or_else(|e| remote::query_error(&e).raise_for(&self.worker.name, doing))
    }

    pub(crate) fn first_value(&self, sql: &str, doing: &str) -> Option<String> {
        self.run(sql, doing).into_iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
    }

    /// Adds a switch's keys to reference tables (see `ShardKeys`), if any. Nothing of pgshard's
    /// writes the copies then; what could hold them is an in-doubt prepared transaction, and
    /// the pause must not wait long for it (the operation fails instead).
    pub(crate) fn add_reference_keys(&self, keys: &str) {
        if !keys.is_empty() {
            self.run(
                &format!("SET lock_timeout = '2s'; {keys} RESET lock_timeout;"),
                "add foreign keys on",
            );
        }
    }

    /// Waits, answering interrupts (a cancelled move stops here).
    pub(crate) fn sleep(&self, pause: Duration) {
        remote::wait(async { tokio::time::sleep(pause).await }, &[]);
    }
}

/// Test builds: with `pgshard.inject_fault = 'pause_before_switch'`, an operation waits here up
/// to a minute, interruptible, so that a test can interrupt it between its copy and its switch.
pub(crate) fn pause_for_tests(connection: &Direct) {
    if crate::guc::injected_fault().as_deref() == Some("pause_before_switch") {
        for _ in 0..600 {
            connection.sleep(POLL);
        }
    }
}

/// The index in `workers` of the worker called `name`; raises when there is none.
pub(crate) fn worker_named(workers: &[Worker], name: &str) -> usize {
    workers
        .iter()
        .position(|w| w.name == name)
        .unwrap_or_else(|| {
            refuse(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("worker \"{name}\" does not exist"),
                "pgshard.workers lists the registered workers.",
            )
        })
}

pub(crate) fn notice(message: &str) {
    pgrx::notice!("{message}");
}

pub(crate) fn refuse(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    PgShardError::new(code, message).hint(hint).raise()
}

extension_sql!(
    r#"
CREATE PROCEDURE pgshard.rebalance(dry_run boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    planned record;
    moved record;
    moves int := 0;
BEGIN
    FOR planned IN SELECT * FROM pgshard.rebalance_plan() LOOP
        moves := moves + 1;
        IF dry_run THEN
            RAISE NOTICE 'planned: move shard % (%; % bytes) from % to %', planned.shard_id,
                planned.tables, planned.bytes, planned.from_worker, planned.to_worker;
        ELSE
            SELECT * INTO moved FROM pgshard.move_shard(planned.shard_id, planned.to_worker);
            RAISE NOTICE 'moved shard % (%) from % to %: % rows, writes paused % ms',
                planned.shard_id, planned.tables, planned.from_worker, planned.to_worker,
                moved.rows_moved, round(moved.write_pause_ms::numeric);
            -- Each move commits on its own: a later failure keeps the earlier ones.
            COMMIT;
        END IF;
    END LOOP;
    IF moves = 0 THEN
        RAISE NOTICE 'the workers hold fair shares already: nothing to move';
    END IF;
END $$;
REVOKE EXECUTE ON PROCEDURE pgshard.rebalance(boolean) FROM PUBLIC;

CREATE PROCEDURE pgshard.drain_worker(name text)
LANGUAGE plpgsql AS $$
DECLARE
    planned record;
    moved record;
BEGIN
    FOR planned IN SELECT * FROM pgshard.rebalance_plan(drain => name) LOOP
        SELECT * INTO moved FROM pgshard.move_shard(planned.shard_id, planned.to_worker);
        RAISE NOTICE 'moved shard % (%) from % to %: % rows, writes paused % ms',
            planned.shard_id, planned.tables, planned.from_worker, planned.to_worker,
            moved.rows_moved, round(moved.write_pause_ms::numeric);
        COMMIT;
    END LOOP;
    RAISE NOTICE 'worker % holds no shard now; pgshard.remove_worker(%) removes it', name, quote_literal(name);
END $$;
REVOKE EXECUTE ON PROCEDURE pgshard.drain_worker(text) FROM PUBLIC;
"#,
    name = "rebalance_procedures",
    requires = [rebalance_plan, move_shard]
);

/// The moves that would give every worker a fair share of the bytes (or, with `drain`, empty
/// that worker onto the others): one row per shard group to move, in order.
#[pg_extern(volatile)]
fn rebalance_plan(
    drain: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(shard_id, i64),
        name!(tables, String),
        name!(from_worker, String),
        name!(to_worker, String),
        name!(bytes, i64),
    ),
> {
    require_superuser("plan shard moves");
    let _superuser = AsSuperuser::enter();
    let workers = crate::workers::all_workers();
    let draining: Vec<usize> = drain
        .map(|name| worker_named(&workers, name))
        .into_iter()
        .collect();
    // One row per shard group: a representative shard, its tables, its worker, its bytes.
    let rows: Vec<(i64, String, i32, i64)> = Spi::connect(|client| {
        client
            .select(
                "SELECT min(s.shard_id), string_agg(DISTINCT s.table_oid::text, ', '), \
                   min(p.worker_id), coalesce(sum(z.bytes), 0)::bigint \
                 FROM pgshard.shard s JOIN pgshard.sharded_table t USING (table_oid) \
                 JOIN pgshard.placement p USING (shard_id) \
                 LEFT JOIN pgshard.shard_sizes() z ON z.shard_id = s.shard_id \
                 WHERE t.kind = 'hash' GROUP BY t.colocation_id, s.hash_min ORDER BY 1",
                None,
                &[],
            )?
            .into_iter()
            .map(|row| {
                Ok((
                    row.get::<i64>(1)?.expect("NOT NULL"),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<i32>(3)?.expect("NOT NULL"),
                    row.get::<i64>(4)?.unwrap_or(0),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .unwrap_or_else(|e| spi_failed("could not read the shards", e));
    let tables: std::collections::HashMap<i64, String> =
        rows.iter().map(|(id, t, _, _)| (*id, t.clone())).collect();
    let groups: Vec<pgshard_core::rebalance::Group> = rows
        .iter()
        .filter_map(|(shard_id, _, worker_id, bytes)| {
            Some(pgshard_core::rebalance::Group {
                shard_id: *shard_id,
                worker: workers.iter().position(|w| w.id == *worker_id)?,
                bytes: (*bytes).max(0) as u64,
            })
        })
        .collect();
    let moves = pgshard_core::rebalance::plan(&groups, workers.len(), &draining);
    TableIterator::new(
        moves
            .into_iter()
            .map(|m| {
                (
                    m.shard_id,
                    tables.get(&m.shard_id).cloned().unwrap_or_default(),
                    workers[m.from].name.clone(),
                    workers[m.to].name.clone(),
                    m.bytes as i64,
                )
            })
            .collect::<Vec<_>>(),
    )
}
