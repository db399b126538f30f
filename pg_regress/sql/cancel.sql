--
-- A statement waiting on a worker returns promptly when cancelled, and the remote statement is
-- cancelled too.
--
-- Per-worker results and errors of run_command_on_workers.
SELECT * FROM pgshard.run_command_on_workers('SELECT 6 * 7');
SELECT * FROM pgshard.run_command_on_workers('SELECT 1/0');
SELECT * FROM pgshard.run_command_on_workers('CREATE TABLE regress_cancel_probe (a int)');
SELECT * FROM pgshard.run_command_on_workers('DROP TABLE regress_cancel_probe');
-- A row without columns.
SELECT * FROM pgshard.run_command_on_workers('SELECT FROM pg_class LIMIT 1');
-- Session changes made by a command do not leak into the next one on the cached connection.
SELECT * FROM pgshard.run_command_on_workers($$SET application_name = 'leaky'$$);
SELECT * FROM pgshard.run_command_on_workers($$SELECT current_setting('application_name')$$);
SELECT * FROM pgshard.run_command_on_workers('BEGIN');
SELECT * FROM pgshard.run_command_on_workers('SELECT now() = statement_timestamp() AS own_transaction');
-- statement_timeout while the workers run a long statement.
SET statement_timeout = '300ms';
SELECT clock_timestamp() AS started \gset
SELECT * FROM pgshard.run_command_on_workers('SELECT pg_sleep(20)');
RESET statement_timeout;
SELECT clock_timestamp() - :'started' < interval '5 seconds' AS returned_promptly;
SELECT pg_sleep(0.2);
SELECT * FROM pgshard.run_command_on_workers(
  $$SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)' AND state = 'active'$$);
-- pg_cancel_backend from another session.
-- (A background shell retries until it has cancelled the statement, for at most 10 s.)
\! (for i in $(seq 1 100); do sleep 0.1; n=$(psql -X -qtA -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(21)%' AND state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()" 2>/dev/null); case "$n" in ''|0) ;; *) break ;; esac; done) > /dev/null 2>&1 &
SELECT clock_timestamp() AS started \gset
SELECT * FROM pgshard.run_command_on_workers('SELECT pg_sleep(21)');
SELECT clock_timestamp() - :'started' < interval '5 seconds' AS returned_promptly;
SELECT pg_sleep(0.2);
SELECT * FROM pgshard.run_command_on_workers(
  $$SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(21)' AND state = 'active'$$);
-- statement_timeout while a connection attempt hangs (worker 2 paused).
\! pid=$(head -n 1 "$PGSHARD_CLUSTER_DIR/worker_2/postmaster.pid"); kill -STOP $pid; pkill -STOP -P $pid
SET pgshard.connect_timeout = '60s';
SET statement_timeout = '500ms';
SELECT clock_timestamp() AS started \gset
SELECT name, reachable FROM pgshard.check_workers();
RESET statement_timeout;
SELECT clock_timestamp() - :'started' < interval '5 seconds' AS returned_promptly;
\! pid=$(head -n 1 "$PGSHARD_CLUSTER_DIR/worker_2/postmaster.pid"); kill -CONT $pid; pkill -CONT -P $pid
RESET pgshard.connect_timeout;
SELECT name, reachable FROM pgshard.check_workers() ORDER BY name;
