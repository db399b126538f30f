--
-- A statement waiting on a worker returns promptly when cancelled, and the remote statement is
-- cancelled too.
--
-- Per-worker results and errors of run_command_on_workers.
SELECT * FROM pgshard.run_command_on_workers('SELECT 6 * 7');
SELECT * FROM pgshard.run_command_on_workers('SELECT 1/0');
SELECT * FROM pgshard.run_command_on_workers('CREATE TABLE regress_cancel_probe (a int)');
SELECT * FROM pgshard.run_command_on_workers('DROP TABLE regress_cancel_probe');
-- statement_timeout while the workers run a long statement.
SET statement_timeout = '300ms';
SELECT clock_timestamp() AS started \gset
SELECT * FROM pgshard.run_command_on_workers('SELECT pg_sleep(20)');
RESET statement_timeout;
SELECT clock_timestamp() - :'started' < interval '5 seconds' AS returned_promptly;
SELECT pg_sleep(0.2);
SELECT * FROM pgshard.run_command_on_workers(
  $$SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)'$$);
-- pg_cancel_backend from another session.
\! (sleep 0.5; psql -X -q -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(21)%' AND backend_type = 'client backend' AND pid <> pg_backend_pid()" > /dev/null) &
SELECT clock_timestamp() AS started \gset
SELECT * FROM pgshard.run_command_on_workers('SELECT pg_sleep(21)');
SELECT clock_timestamp() - :'started' < interval '5 seconds' AS returned_promptly;
SELECT pg_sleep(0.2);
SELECT * FROM pgshard.run_command_on_workers(
  $$SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(21)'$$);
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
