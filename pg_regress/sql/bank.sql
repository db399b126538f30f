--
-- The bank invariant: pgbench TPC-B (its default script, several clients) on sharded pgbench
-- tables; afterwards every balance sum equals the sum of the history deltas. Then again while
-- a worker is killed (immediate stop) and restarted mid-run, after recovery.
--
\! pgbench -i -s 1 -q -h 127.0.0.1 -p "$PGSHARD_PORT" pgshard > /dev/null 2>&1
SELECT pgshard.shard_table('pgbench_accounts', 'aid', shard_count => 8);
SELECT pgshard.shard_table('pgbench_tellers', 'tid', shard_count => 8);
SELECT pgshard.shard_table('pgbench_branches', 'bid', shard_count => 8);
SELECT pgshard.shard_table('pgbench_history', 'aid', shard_count => 8);
SELECT table_name, shard_count FROM pgshard.tables WHERE table_name::text LIKE 'pgbench%' ORDER BY 1;
\set invariant 'SELECT (SELECT sum(abalance) FROM pgbench_accounts) AS accounts, (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT sum(abalance) FROM pgbench_accounts) AS tellers_match, (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(abalance) FROM pgbench_accounts) AS branches_match, (SELECT sum(delta) FROM pgbench_history) = (SELECT sum(abalance) FROM pgbench_accounts) AS history_matches, (SELECT count(*) FROM pgbench_history) > 50 AS ran'
\set accounts_intact 'SELECT count(*) AS accounts, count(DISTINCT aid) AS distinct_aids FROM pgbench_accounts'
\! pgbench -n -c 4 -j 2 -T 8 -h 127.0.0.1 -p "$PGSHARD_PORT" pgshard 2>&1 | grep -o "number of failed transactions: [0-9]*"
SELECT accounts IS NOT NULL AS summed, tellers_match, branches_match, history_matches, ran FROM (:invariant) s;
:accounts_intact;
-- A worker dies mid-run: clients whose transactions reach it fail and stop; no transaction is
-- half applied once recovery has finished what was prepared.
SELECT count(*) AS history_before FROM pgbench_history \gset
\! pgbench -n -c 4 -j 2 -T 6 -h 127.0.0.1 -p "$PGSHARD_PORT" pgshard > "$PGSHARD_CLUSTER_DIR/bank_kill.log" 2>&1 & p=$!; sleep 2; pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_2" -w -m immediate stop > /dev/null; sleep 1; pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_2" -l "$PGSHARD_CLUSTER_DIR/worker_2/server.log" -w start > /dev/null; wait $p; true
SELECT count(*) >= 0 AS recovered FROM pgshard.recover_transactions();
SELECT result AS prepared_left FROM pgshard.run_command_on_workers($$SELECT count(*) FROM pg_prepared_xacts$$) ORDER BY worker;
:accounts_intact;
SELECT accounts IS NOT NULL AS summed, tellers_match, branches_match, history_matches FROM (:invariant) s;
SELECT count(*) > :history_before AS ran_again FROM pgbench_history;
