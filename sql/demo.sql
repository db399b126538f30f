-- pgshard walkthrough, run by `make demo` against the local cluster (see README.md).
\echo '== The workers this coordinator knows (conninfo and passwords stay hidden):'
SELECT name, host, port, dbname FROM pgshard.workers;
\echo '== Health of every worker, checked concurrently over the coordinator''s connections:'
SELECT name, reachable, server_version, round(latency_ms::numeric, 3) AS latency_ms, error
FROM pgshard.check_workers();
