--
-- Moving shards online: pgbench TPC-B writes on while a shard group moves to the other
-- worker; afterwards no row is lost or doubled, the bank invariant holds, and every row is on
-- the worker pgshard.shard_for names.
--
DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history;
\! pgbench -i -s 1 -q -h 127.0.0.1 -p "$PGSHARD_PORT" pgshard > /dev/null 2>&1
SELECT pgshard.shard_table('pgbench_accounts', 'aid', shard_count => 4);
-- History is co-located with the accounts: their shards move together.
SELECT pgshard.shard_table('pgbench_history', 'aid', colocate_with => 'pgbench_accounts');
SELECT pgshard.shard_table('pgbench_tellers', 'tid', shard_count => 4);
SELECT pgshard.shard_table('pgbench_branches', 'bid', shard_count => 4);
\set invariant 'SELECT (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT sum(abalance) FROM pgbench_accounts) AS tellers_match, (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(abalance) FROM pgbench_accounts) AS branches_match, (SELECT sum(delta) FROM pgbench_history) = (SELECT sum(abalance) FROM pgbench_accounts) AS history_matches'
\set accounts_intact 'SELECT count(*) AS accounts, count(DISTINCT aid) AS distinct_aids FROM pgbench_accounts'
-- Rows of the accounts' first shard, counted on the worker that holds it, against shard_for.
\set where_shard_for_says 'SELECT s.worker, w.result::bigint AS rows_on_worker, w.result::bigint = (SELECT count(*) FROM pgbench_accounts a, LATERAL pgshard.shard_for($$pgbench_accounts$$, a.aid) f WHERE f.shard_id = s.shard_id) AS all_where_shard_for_says FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(format($$SELECT count(*) FROM %s$$, s.shard_name)) w WHERE s.shard_id = :first_shard AND w.worker = s.worker'
SELECT min(shard_id) AS first_shard FROM pgshard.shards WHERE table_name = 'pgbench_accounts'::regclass \gset
:where_shard_for_says;

-- The move, while 4 pgbench clients run TPC-B for 8 seconds.
\! pgbench -n -c 4 -j 2 -T 8 -h 127.0.0.1 -p "$PGSHARD_PORT" pgshard > "$PGSHARD_CLUSTER_DIR/move_pgbench.log" 2>&1 & sleep 2
SET client_min_messages = warning;
SELECT shards_moved, rows_moved > 0 AS moved_rows, write_pause_ms < 5000 AS paused_briefly
FROM pgshard.move_shard(:first_shard, 'w2');
RESET client_min_messages;
\! sleep 7; grep -o "number of failed transactions: [0-9]*" "$PGSHARD_CLUSTER_DIR/move_pgbench.log"; grep -c "aborted" "$PGSHARD_CLUSTER_DIR/move_pgbench.log"
:accounts_intact;
SELECT * FROM (:invariant) i;
SELECT s.table_name, s.worker FROM pgshard.shards s JOIN pgshard.shard t USING (shard_id)
WHERE t.hash_min = (SELECT hash_min FROM pgshard.shard WHERE shard_id = :first_shard)
  AND s.table_name IN ('pgbench_accounts'::regclass, 'pgbench_history'::regclass) ORDER BY 1;
:where_shard_for_says;
-- Writes after the move go to the new place; the old copy waits as an orphan.
SELECT min(a.aid) AS moved_aid FROM pgbench_accounts a, LATERAL pgshard.shard_for('pgbench_accounts', a.aid) f
WHERE f.shard_id = :first_shard \gset
UPDATE pgbench_accounts SET filler = 'written after the move' WHERE aid = :moved_aid;
SELECT w.worker, w.result AS written_there FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(
  format($$SELECT count(*) FROM %s WHERE aid = %s AND filler LIKE 'written after%%'$$, s.shard_name, :moved_aid)) w
WHERE s.shard_id = :first_shard ORDER BY 1;
SELECT w.name AS worker, o.relation FROM pgshard.orphaned_shard o JOIN pgshard.worker w USING (worker_id) ORDER BY 2;

-- Moving back before the cleanup replaces the stale copy, which is no orphan any more.
SET client_min_messages = warning;
SELECT shards_moved FROM pgshard.move_shard(:first_shard, 'w1');
RESET client_min_messages;
SELECT w.name AS worker, o.relation FROM pgshard.orphaned_shard o JOIN pgshard.worker w USING (worker_id) ORDER BY 2;
SELECT pgshard.cleanup_orphaned_shards();
SELECT w.worker, w.result AS copies_of_first_shard FROM pgshard.shards s,
  LATERAL pgshard.run_command_on_workers(format($$SELECT count(*) FROM pg_class WHERE oid = to_regclass(%L)$$, s.shard_name)) w
WHERE s.shard_id = :first_shard ORDER BY 1;
:where_shard_for_says;
:accounts_intact;
SELECT * FROM (:invariant) i;

-- Refused: nothing changes.
SELECT worker AS first_worker FROM pgshard.shards WHERE shard_id = :first_shard \gset
SELECT * FROM pgshard.move_shard(:first_shard, :'first_worker');
SELECT * FROM pgshard.move_shard(:first_shard, 'nowhere');
SELECT * FROM pgshard.move_shard(1, 'w2');
BEGIN;
SELECT * FROM pgshard.move_shard(:first_shard, 'w2');
ROLLBACK;
CREATE TABLE moved_ref (id int PRIMARY KEY);
SELECT pgshard.reference_table('moved_ref');
SELECT shard_id AS ref_shard FROM pgshard.shards WHERE table_name = 'moved_ref'::regclass LIMIT 1 \gset
SELECT * FROM pgshard.move_shard(:ref_shard, 'w2');
CREATE ROLE regress_mover;
SET ROLE regress_mover;
SELECT * FROM pgshard.move_shard(:first_shard, 'w2');
RESET ROLE;
DROP TABLE moved_ref;
-- Draining a worker under the same load moves every shard group off it, move by move;
-- rebalancing then spreads them again by size.
\! pgbench -n -c 4 -j 2 -T 8 -h 127.0.0.1 -p "$PGSHARD_PORT" pgshard > "$PGSHARD_CLUSTER_DIR/drain_pgbench.log" 2>&1 & sleep 1
SET client_min_messages = warning;
CALL pgshard.drain_worker('w2');
RESET client_min_messages;
\! sleep 8; grep -o "number of failed transactions: [0-9]*" "$PGSHARD_CLUSTER_DIR/drain_pgbench.log"; grep -c "aborted" "$PGSHARD_CLUSTER_DIR/drain_pgbench.log"
SELECT worker, count(*) AS shards FROM pgshard.shards WHERE table_name::text LIKE 'pgbench%' GROUP BY 1 ORDER BY 1;
:accounts_intact;
SELECT * FROM (:invariant) i;
SELECT count(*) > 0 AS moves_planned FROM pgshard.rebalance_plan();
SET client_min_messages = warning;
CALL pgshard.rebalance();
RESET client_min_messages;
SELECT count(DISTINCT worker) AS workers_with_shards,
       max(bytes) < 2 * min(bytes) AS within_a_factor_two
FROM (SELECT worker, sum(bytes) AS bytes FROM pgshard.shards GROUP BY 1) b;
:accounts_intact;
SELECT * FROM (:invariant) i;
SELECT pgshard.cleanup_orphaned_shards() > 0 AS old_copies_dropped;
SELECT * FROM pgshard.rebalance_plan(drain => 'nowhere');

-- Nothing was left behind on the workers by the moves.
SELECT worker, result AS replication_leftovers FROM pgshard.run_command_on_workers(
  $$SELECT (SELECT count(*) FROM pg_subscription) + (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_class WHERE relname LIKE 'pgshard_move%')$$) ORDER BY 1;
-- Splitting a shard online: the same load runs while the accounts' first shard group (accounts
-- and history) is split, the upper half going to the other worker. Writers that queued behind
-- the switch were routed by the old ranges: they get a serialization failure, which pgbench
-- retries (--max-tries); none fails for good.
SELECT min(shard_id) AS first_shard FROM pgshard.shards WHERE table_name = 'pgbench_accounts'::regclass \gset
SELECT worker AS first_worker, CASE worker WHEN 'w1' THEN 'w2' ELSE 'w1' END AS other_worker
FROM pgshard.shards WHERE shard_id = :first_shard \gset
\! pgbench -n -c 4 -j 2 -T 8 --max-tries=10 -h 127.0.0.1 -p "$PGSHARD_PORT" pgshard > "$PGSHARD_CLUSTER_DIR/split_pgbench.log" 2>&1 & sleep 2
SET client_min_messages = warning;
SELECT lower_shard_id AS lower_shard, upper_shard_id AS upper_shard, shards_split,
       rows_copied >= 25000 AS copied_rows, write_pause_ms < 5000 AS paused_briefly
FROM pgshard.split_shard(:first_shard, :'other_worker') \gset
RESET client_min_messages;
SELECT :shards_split AS shards_split, :'copied_rows' AS copied_rows, :'paused_briefly' AS paused_briefly;
\! sleep 7; grep -o "number of failed transactions: [0-9]*" "$PGSHARD_CLUSTER_DIR/split_pgbench.log"; grep -c "aborted" "$PGSHARD_CLUSTER_DIR/split_pgbench.log"
:accounts_intact;
SELECT * FROM (:invariant) i;
-- The old range is now two: the lower half stayed, the upper half moved, for both tables.
SELECT s.table_name, s.shard_id = :lower_shard AS lower, s.worker = :'first_worker' AS on_first_worker,
       t.hash_max - t.hash_min AS width
FROM pgshard.shards s JOIN pgshard.shard t USING (shard_id)
WHERE t.table_oid IN ('pgbench_accounts'::regclass, 'pgbench_history'::regclass)
  AND t.hash_min BETWEEN (SELECT hash_min FROM pgshard.shard WHERE shard_id = :lower_shard)
                     AND (SELECT hash_max FROM pgshard.shard WHERE shard_id = :upper_shard)
ORDER BY 1, 2 DESC;
SELECT table_name, shard_count FROM pgshard.tables WHERE table_name::text LIKE 'pgbench_a%' OR table_name::text LIKE 'pgbench_h%' ORDER BY 1;
-- Every row of every shard of both tables is where shard_for says, on its worker.
\set rows_where_shard_for_says 'SELECT bool_and(w.result::bigint = (SELECT count(*) FROM pgbench_accounts a, LATERAL pgshard.shard_for($$pgbench_accounts$$, a.aid) f WHERE f.shard_id = s.shard_id)) AS accounts_where_shard_for_says, sum(w.result::bigint) AS accounts_on_workers FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(format($$SELECT count(*) FROM %s$$, s.shard_name)) w WHERE s.table_name = $$pgbench_accounts$$::regclass AND w.worker = s.worker'
:rows_where_shard_for_says;
SELECT bool_and(w.result::bigint = (SELECT count(*) FROM pgbench_history h, LATERAL pgshard.shard_for('pgbench_history', h.aid) f WHERE f.shard_id = s.shard_id)) AS history_where_shard_for_says,
       sum(w.result::bigint) = (SELECT count(*) FROM pgbench_history) AS history_not_doubled
FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(format($$SELECT count(*) FROM %s$$, s.shard_name)) w
WHERE s.table_name = 'pgbench_history'::regclass AND w.worker = s.worker;
-- Co-located joins still meet on one worker after the split.
SELECT count(*) = (SELECT count(*) FROM pgbench_history) AS history_joins_accounts
FROM pgbench_history h JOIN pgbench_accounts a USING (aid);
-- A split in place (same worker) at a given point, then a table co-located later gets the
-- new layout.
SELECT hash_min AS upper_min, hash_max AS upper_max, hash_min + 1000 AS point
FROM pgshard.shard WHERE shard_id = :upper_shard \gset
SET client_min_messages = warning;
SELECT shards_split FROM pgshard.split_shard(:upper_shard, split_point => :point);
RESET client_min_messages;
SELECT count(*) AS shards, count(DISTINCT worker) AS workers FROM pgshard.shards s JOIN pgshard.shard t USING (shard_id)
WHERE s.table_name = 'pgbench_accounts'::regclass AND t.hash_min BETWEEN :upper_min AND :upper_max;
:rows_where_shard_for_says;
CREATE TABLE split_later (aid int PRIMARY KEY, note text);
SELECT pgshard.shard_table('split_later', 'aid', colocate_with => 'pgbench_accounts');
SELECT (SELECT array_agg(hash_min ORDER BY hash_min) FROM pgshard.shard WHERE table_oid = 'split_later'::regclass)
     = (SELECT array_agg(hash_min ORDER BY hash_min) FROM pgshard.shard WHERE table_oid = 'pgbench_accounts'::regclass) AS same_layout;
DROP TABLE split_later;
-- Keys that COPY's text format escapes are sorted right (text key, split in place).
CREATE TABLE split_text (k text PRIMARY KEY, v int);
SELECT pgshard.shard_table('split_text', 'k', shard_count => 1);
INSERT INTO split_text SELECT 'key ' || i || E'\t\\\n' || repeat('é', i % 3), i FROM generate_series(1, 500) i;
SELECT shard_id AS text_shard FROM pgshard.shards WHERE table_name = 'split_text'::regclass \gset
SET client_min_messages = warning;
SELECT shards_split, rows_copied FROM pgshard.split_shard(:text_shard);
RESET client_min_messages;
SELECT s.worker, w.result::bigint AS rows_on_worker,
       w.result::bigint = (SELECT count(*) FROM split_text t, LATERAL pgshard.shard_for('split_text', t.k) f WHERE f.shard_id = s.shard_id) AS where_shard_for_says
FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(format($$SELECT count(*) FROM %s$$, s.shard_name)) w
WHERE s.table_name = 'split_text'::regclass AND w.worker = s.worker ORDER BY 2;
SELECT count(*), sum(v), count(*) FILTER (WHERE strpos(k, E'\t\\\n') > 0) AS escaped FROM split_text;
-- Refused: nothing changes.
SELECT * FROM pgshard.split_shard(:text_shard);
SELECT shard_id AS small_shard FROM pgshard.shard WHERE table_oid = 'split_text'::regclass ORDER BY hash_min LIMIT 1 \gset
SELECT * FROM pgshard.split_shard(:small_shard, split_point => 9223372036854775807);
SELECT * FROM pgshard.split_shard(:small_shard, 'nowhere');
BEGIN;
SELECT * FROM pgshard.split_shard(:small_shard);
ROLLBACK;
SELECT count(*) AS split_text_shards FROM pgshard.shards WHERE table_name = 'split_text'::regclass;
DROP TABLE split_text;
SELECT pgshard.cleanup_orphaned_shards() > 0 AS old_shards_dropped;
SELECT worker, result AS split_leftovers FROM pgshard.run_command_on_workers(
  $$SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgshard_split%') + (SELECT count(*) FROM public.pgshard_split_log)$$) ORDER BY 1;

-- Interrupted operations. A split held before its switch (test-build fault) shows in
-- pgshard.operation_progress; a second operation on the same shards is refused meanwhile. Its
-- session is then terminated (as in a coordinator crash, no cleanup runs): the old shards
-- still serve every row, one call of cleanup_orphaned_shards removes what it left, and the
-- split is retried.
SELECT min(shard_id) AS first_shard FROM pgshard.shards WHERE table_name = 'pgbench_accounts'::regclass \gset
\! (PGOPTIONS="-c pgshard.inject_fault=pause_before_switch" psql -X -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "SELECT * FROM pgshard.split_shard($(psql -X -At -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "SELECT min(shard_id) FROM pgshard.shards WHERE table_name = 'pgbench_accounts'::regclass"), 'w2')" > "$PGSHARD_CLUSTER_DIR/held_split.log" 2>&1 &)
\set wait_for_held 'DO $$ BEGIN FOR i IN 1..300 LOOP PERFORM 1 FROM pgshard.operation_progress WHERE phase = $p$catching up$p$; EXIT WHEN FOUND; PERFORM pg_sleep(0.1); END LOOP; END $$'
\set wait_for_none 'DO $$ BEGIN FOR i IN 1..300 LOOP PERFORM 1 FROM pgshard.operation_progress; EXIT WHEN NOT FOUND; PERFORM pg_sleep(0.1); END LOOP; END $$'
:wait_for_held;
SELECT operation, shard_id = :first_shard AS first_shard, phase, rows_copied = rows_total AS all_copied,
       rows_total > 25000 AS counted, rows_to_go, started_at <= now() AS started
FROM pgshard.operation_progress;
SELECT * FROM pgshard.split_shard(:first_shard);
SELECT * FROM pgshard.move_shard(:first_shard, 'w1');
SELECT pgshard.cleanup_orphaned_shards();
SELECT pg_terminate_backend(pid) FROM pgshard.operation_progress;
:wait_for_none;
SELECT count(*) AS shards_of_first_group FROM pgshard.shards WHERE shard_id = :first_shard;
:accounts_intact;
SELECT * FROM (:invariant) i;
:rows_where_shard_for_says;
SELECT (SELECT sum(result::int) FROM pgshard.run_command_on_workers(
          $q$SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgshard_split%'$q$)) AS capture_triggers,
       (SELECT sum(result::int) FROM pgshard.run_command_on_workers(
          $q$SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname ~ '^pgbench_(accounts|history)_[0-9]+$'$q$))
       - (SELECT count(*) FROM pgshard.shards
          WHERE table_name IN ('pgbench_accounts'::regclass, 'pgbench_history'::regclass)) AS tables_no_placement_names;
SET client_min_messages = warning;
SELECT pgshard.cleanup_orphaned_shards() AS tables_dropped;
RESET client_min_messages;
SELECT (SELECT sum(result::int) FROM pgshard.run_command_on_workers(
          $q$SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgshard_split%'$q$)) AS capture_triggers,
       (SELECT sum(result::int) FROM pgshard.run_command_on_workers(
          $q$SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname ~ '^pgbench_(accounts|history)_[0-9]+$'$q$))
       - (SELECT count(*) FROM pgshard.shards
          WHERE table_name IN ('pgbench_accounts'::regclass, 'pgbench_history'::regclass)) AS tables_no_placement_names;
SET client_min_messages = warning;
SELECT shards_split FROM pgshard.split_shard(:first_shard, 'w2');
RESET client_min_messages;
:accounts_intact;
:rows_where_shard_for_says;
-- The same for a move held before its switch: a retried move first removes what the
-- interrupted one left (subscription, slot, publication, tables), and succeeds.
SELECT min(shard_id) AS first_shard FROM pgshard.shards WHERE table_name = 'pgbench_accounts'::regclass \gset
SELECT CASE worker WHEN 'w1' THEN 'w2' ELSE 'w1' END AS other_worker FROM pgshard.shards WHERE shard_id = :first_shard \gset
\! (PGOPTIONS="-c pgshard.inject_fault=pause_before_switch" psql -X -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "SELECT * FROM pgshard.move_shard($(psql -X -At -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "SELECT s.shard_id || ', ' || quote_literal(CASE s.worker WHEN 'w1' THEN 'w2' ELSE 'w1' END) FROM pgshard.shards s WHERE s.shard_id = (SELECT min(shard_id) FROM pgshard.shards WHERE table_name = 'pgbench_accounts'::regclass)"))" > "$PGSHARD_CLUSTER_DIR/held_move.log" 2>&1 &)
:wait_for_held;
SELECT operation, shard_id = :first_shard AS first_shard, phase, rows_copied = rows_total AS all_copied, rows_to_go
FROM pgshard.operation_progress;
SELECT pg_terminate_backend(pid) FROM pgshard.operation_progress;
:wait_for_none;
:accounts_intact;
SET client_min_messages = warning;
SELECT shards_moved FROM pgshard.move_shard(:first_shard, :'other_worker');
RESET client_min_messages;
:accounts_intact;
SELECT * FROM (:invariant) i;
:rows_where_shard_for_says;
-- A worker failing in the middle: a split from w1 to w2 is held, w2 stops, the split is
-- cancelled (its cleanup cannot reach w2). The shards on w1 serve meanwhile; once w2 is back,
-- one cleanup call removes the new tables left there, and the retried split succeeds.
SELECT min(shard_id) AS w1_shard FROM pgshard.shards WHERE table_name = 'pgbench_accounts'::regclass AND worker = 'w1' \gset
SELECT min(a.aid) AS w1_aid FROM pgbench_accounts a, LATERAL pgshard.shard_for('pgbench_accounts', a.aid) f WHERE f.worker = 'w1' \gset
\! (PGOPTIONS="-c pgshard.inject_fault=pause_before_switch" psql -X -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "SELECT * FROM pgshard.split_shard($(psql -X -At -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "SELECT min(shard_id) FROM pgshard.shards WHERE table_name = 'pgbench_accounts'::regclass AND worker = 'w1'"), 'w2')" > "$PGSHARD_CLUSTER_DIR/failed_split.log" 2>&1 &)
:wait_for_held;
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_2" -w -m immediate stop > /dev/null
SELECT pg_cancel_backend(pid) FROM pgshard.operation_progress;
:wait_for_none;
SELECT abalance IS NOT NULL AS served_from_w1 FROM pgbench_accounts WHERE aid = :w1_aid;
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_2" -l "$PGSHARD_CLUSTER_DIR/worker_2/server.log" -w start > /dev/null
\! grep -o "ERROR:  canceling statement due to user request" "$PGSHARD_CLUSTER_DIR/failed_split.log"
SELECT count(*) AS shards_of_w1_group FROM pgshard.shards WHERE shard_id = :w1_shard;
:accounts_intact;
SELECT * FROM (:invariant) i;
SET client_min_messages = warning;
SELECT pgshard.cleanup_orphaned_shards() >= 2 AS new_tables_dropped;
SELECT shards_split FROM pgshard.split_shard(:w1_shard, 'w2');
RESET client_min_messages;
:accounts_intact;
:rows_where_shard_for_says;
SELECT pgshard.cleanup_orphaned_shards() > 0 AS old_copies_dropped;
SELECT worker, result AS leftovers FROM pgshard.run_command_on_workers(
  $$SELECT (SELECT count(*) FROM pg_subscription) + (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_class WHERE relname LIKE 'pgshard_move%') + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgshard_split%')$$) ORDER BY 1;

-- Shard statistics: the statements routed to each shard since the reset (shared memory, all
-- sessions), and the shards far above their table's mean.
SELECT pgshard.reset_shard_stats();
SELECT shard_id AS hot_shard FROM pgshard.shard_for('pgbench_accounts', 1) \gset
DO $$ BEGIN FOR i IN 1..20 LOOP PERFORM abalance FROM pgbench_accounts WHERE aid = 1; END LOOP; END $$;
UPDATE pgbench_accounts SET filler = filler WHERE aid = 1;
SELECT count(*) FROM pgbench_accounts;
SELECT shard_id = :hot_shard AS hot_shard, reads, writes, statements, bytes > 0 AS sized
FROM pgshard.shard_stats WHERE table_name = 'pgbench_accounts'::regclass ORDER BY 1 DESC, shard_id;
SELECT shard_id = :hot_shard AS hot_shard, load_vs_mean FROM pgshard.hotspots
WHERE table_name = 'pgbench_accounts'::regclass AND why LIKE '%load%';
SET ROLE regress_mover;
SELECT count(*) > 0 AS anyone_can_look FROM pgshard.shard_stats;
SELECT pgshard.reset_shard_stats();
RESET ROLE;
DROP ROLE regress_mover;
DROP TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history;
