--
-- check_workers: health of every worker, never hanging on a dead one.
--
SELECT name, reachable, server_version ~ '^\d+' AS has_version, latency_ms >= 0 AS has_latency, error
FROM pgshard.check_workers() ORDER BY name;
-- Worker 2 stopped: reported unreachable (its cached connection is found dead and dropped).
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_2" -w -m fast stop > /dev/null
SELECT name, reachable, server_version IS NULL AS no_version, latency_ms IS NULL AS no_latency,
       error ~ 'Connection refused' AS refused
FROM pgshard.check_workers() ORDER BY name;
-- Back up: reachable again through a new connection.
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_2" -l "$PGSHARD_CLUSTER_DIR/worker_2/server.log" -w start > /dev/null
SELECT name, reachable, error FROM pgshard.check_workers() ORDER BY name;
-- Worker 2 hung (every process of it paused): the TCP connection is accepted by the kernel
-- but nothing answers. The check gives up after pgshard.connect_timeout.
\! pid=$(head -n 1 "$PGSHARD_CLUSTER_DIR/worker_2/postmaster.pid"); kill -STOP $pid; pkill -STOP -P $pid
SET pgshard.connect_timeout = '1s';
SELECT clock_timestamp() AS started \gset
SELECT name, reachable, error ~ 'timed out after 1000 ms' AS timed_out FROM pgshard.check_workers() ORDER BY name;
SELECT clock_timestamp() - :'started' < interval '3 seconds' AS within_timeout;
-- Again with no cached connection: the connection attempt itself times out.
SELECT clock_timestamp() AS started \gset
SELECT name, reachable, error ~ 'timed out after 1000 ms' AS timed_out FROM pgshard.check_workers() ORDER BY name;
SELECT clock_timestamp() - :'started' < interval '3 seconds' AS within_timeout;
\! pid=$(head -n 1 "$PGSHARD_CLUSTER_DIR/worker_2/postmaster.pid"); kill -CONT $pid; pkill -CONT -P $pid
RESET pgshard.connect_timeout;
SELECT name, reachable, error FROM pgshard.check_workers() ORDER BY name;
-- The setting has a unit and a floor.
SET pgshard.connect_timeout = 0;
SET pgshard.connect_timeout = '2min';
SHOW pgshard.connect_timeout;
RESET pgshard.connect_timeout;
SHOW pgshard.connect_timeout;
