-- pgshard walkthrough, run by `make demo` against the local cluster (see README.md).
\echo '== The workers this coordinator knows (conninfo and passwords stay hidden):'
SELECT name, host, port, dbname FROM pgshard.workers;
\echo '== Health of every worker, checked concurrently over the coordinator''s connections:'
SELECT name, reachable, server_version, round(latency_ms::numeric, 3) AS latency_ms, error
FROM pgshard.check_workers();

\echo '== Start over if an earlier demo left t_user behind.'
SET client_min_messages = warning;
SELECT pgshard.unshard_table(table_name) FROM pgshard.tables WHERE table_name::text IN ('t_user', 't_plan');
DROP TABLE IF EXISTS t_user, t_plan;
RESET client_min_messages;

\echo '== t_user: one logical table, 4 shards on 2 workers, placed by SipHash of user_id.'
\echo '== tel is encrypted on the coordinator (AES-256-GCM): workers only ever hold ciphertext.'
CREATE TABLE t_user (user_id bigint PRIMARY KEY, name text NOT NULL, tel pgshard.encrypted_text);
CREATE INDEX t_user_tel ON t_user USING hash (tel);   -- on the shards: an index on the blind-index tag
INSERT INTO t_user VALUES (1, 'ann', '+1-555-0100');   -- a row that exists before sharding moves too
SELECT pgshard.shard_table('t_user', 'user_id', shard_count => 4);
SELECT * FROM pgshard.tables;
SELECT shard_id, hash_min, hash_max, worker, shard_name FROM pgshard.shards WHERE table_name = 't_user'::regclass;

\echo '== Inserting: each row is routed to the shard its key hashes to.'
INSERT INTO t_user VALUES (2, 'bob', '+1-555-0101'), (3, 'cy', NULL), (4, 'dee', '+1-555-0103'),
                          (5, 'eve', '+1-555-0104'), (6, 'fay', '+1-555-0105');
INSERT INTO t_user SELECT g, 'user' || g, NULL FROM generate_series(7, 12) g;

\echo '== A routed SELECT: the shard key pins one shard on one worker.'
SELECT * FROM t_user WHERE user_id = 4;
EXPLAIN (COSTS OFF) SELECT * FROM t_user WHERE user_id = 4;
\echo '== Without the key, every shard is queried concurrently and the rows merged.'
SELECT * FROM t_user ORDER BY user_id;

\echo '== Aggregates run on the shards: each returns partial counts and sums per group, the'
\echo '== coordinator combines them (avg is a total sum over a total count).'
SELECT tel IS NULL AS no_tel, count(*), avg(user_id) FROM t_user GROUP BY 1 ORDER BY 1;
EXPLAIN (COSTS OFF) SELECT tel IS NULL AS no_tel, count(*), avg(user_id) FROM t_user GROUP BY 1;
\echo '== Where each row physically landed, read on the workers themselves:'
SELECT s.worker, s.shard_name, w.result AS user_ids
FROM pgshard.shards s,
LATERAL pgshard.run_command_on_workers(
    format('SELECT string_agg(user_id::text, '','' ORDER BY user_id) FROM %s', s.shard_name)) w
WHERE s.table_name = 't_user'::regclass AND w.worker = s.worker
ORDER BY s.shard_id;
\echo '== ... which is what pgshard.shard_for says for each key:'
SELECT user_id, f.shard_id, f.worker FROM t_user, LATERAL pgshard.shard_for('t_user', user_id) f ORDER BY 1;
\echo '== The coordinator''s own t_user holds no rows:'
SELECT pg_relation_size('t_user') AS coordinator_bytes;

\echo '== Equality on the encrypted column: the blind-index tag is compared on the workers.'
SELECT * FROM t_user WHERE tel = '+1-555-0103';
EXPLAIN (VERBOSE, COSTS OFF) SELECT user_id FROM t_user WHERE tel = '+1-555-0103';
\echo '== What a worker holds for tel: an envelope (version, key id, tag, nonce, ciphertext).'
SELECT s.worker, s.shard_name, w.result AS stored_tel
FROM pgshard.shards s,
LATERAL pgshard.run_command_on_workers(
    format('SELECT left(tel::text, 60) || ''...'' FROM %s WHERE user_id = 4', s.shard_name)) w
WHERE s.table_name = 't_user'::regclass AND w.worker = s.worker
  AND s.shard_id = (SELECT shard_id FROM pgshard.shard_for('t_user', 4::bigint));
\echo '== A reference table: a full copy on every worker, written to all copies atomically.'
CREATE TABLE t_plan (plan_id int PRIMARY KEY, label text NOT NULL);
INSERT INTO t_plan VALUES (0, 'free'), (1, 'basic');
SELECT pgshard.reference_table('t_plan');
INSERT INTO t_plan VALUES (2, 'premium');
SELECT worker, shard_name FROM pgshard.shards WHERE table_name = 't_plan'::regclass;
\echo '== Joined to a sharded table, it runs on each shard with the copy on the shard''s worker.'
SELECT p.label, count(*) FROM t_user u JOIN t_plan p ON p.plan_id = u.user_id % 3 GROUP BY 1 ORDER BY 1;
EXPLAIN (COSTS OFF) SELECT u.user_id, p.label FROM t_user u JOIN t_plan p ON p.plan_id = u.user_id % 3;

\echo '== The data keys (wrapped by the master key of pgshard.key_file) and what they protect:'
SELECT key_id, state FROM pgshard.data_keys ORDER BY key_id;
SELECT * FROM pgshard.key_usage;

\echo '== Growing the cluster: a third worker joins, and a rebalance moves shards onto it online.'
\! tests/cluster.sh start-node 3
SELECT pgshard.add_worker('w3', format('host=127.0.0.1 port=%s dbname=pgshard user=postgres',
                                       current_setting('port')::int + 3))
WHERE NOT EXISTS (SELECT FROM pgshard.workers WHERE name = 'w3');
SELECT worker, count(*) AS shards FROM pgshard.shards WHERE table_name = 't_user'::regclass GROUP BY 1 ORDER BY 1;
\echo '== The plan first (dry run), then the moves, each online, each committed on its own.'
CALL pgshard.rebalance(dry_run => true);
CALL pgshard.rebalance();
SELECT worker, count(*) AS shards FROM pgshard.shards WHERE table_name = 't_user'::regclass GROUP BY 1 ORDER BY 1;
SELECT * FROM t_user WHERE user_id IN (1, 4, 9) ORDER BY user_id;
\echo '== The old copies stay until no statement can be reading them; then:'
SELECT pgshard.cleanup_orphaned_shards() AS old_copies_dropped;

