--
-- Routed statements on a sharded table: INSERT, SELECT (router, IN pruning, all shards),
-- UPDATE, DELETE, RETURNING, ON CONFLICT, prepared statements, transactions.
--
SELECT setval('pgshard.shard_shard_id_seq', 200001, false);
CREATE TABLE t_user (user_id bigserial PRIMARY KEY, name text NOT NULL, tel text, created date DEFAULT date '2026-01-01');
SELECT pgshard.shard_table('t_user', 'user_id', shard_count => 4);
INSERT INTO t_user (name, tel) VALUES ('ann', '+1-555-0100');
INSERT INTO t_user (name, tel) VALUES ('bob', NULL), ('cy', '+1-555-0102'), ('dee', '+1-555-0103') RETURNING user_id, name;
INSERT INTO t_user (name) SELECT 'user ' || g FROM generate_series(5, 100) g;
INSERT INTO t_user VALUES (NULL, 'nokey');
INSERT INTO t_user (user_id, name) VALUES (1, 'again');
-- Where the rows landed, per worker, matches shard_for.
SELECT s.worker, count(*) AS rows,
       count(*) FILTER (WHERE (SELECT f.shard_id FROM pgshard.shard_for('t_user', k::bigint) f) <> s.shard_id) AS misplaced
FROM pgshard.shards s,
LATERAL pgshard.run_command_on_workers(format('SELECT string_agg(user_id::text, '','') FROM %s', s.shard_name)) w,
LATERAL unnest(string_to_array(w.result, ',')) k
WHERE s.table_name = 't_user'::regclass AND w.worker = s.worker GROUP BY 1 ORDER BY 1;
SELECT count(*) FROM ONLY t_user WHERE false;

-- Router: the shard key pinned to one value queries one shard.
SELECT * FROM t_user WHERE user_id = 1;
EXPLAIN (COSTS OFF) SELECT * FROM t_user WHERE user_id = 1;
EXPLAIN (COSTS OFF) SELECT name FROM t_user WHERE user_id IN (1, 2, 3) AND tel IS NOT NULL;
SELECT user_id, name FROM t_user WHERE user_id IN (1, 2, 3) ORDER BY 1;
SELECT user_id FROM t_user WHERE user_id = ANY ('{4,5,NULL}'::bigint[]) ORDER BY 1;
SELECT count(*) FROM t_user WHERE user_id = 1 AND user_id = 2;
-- Every shard, filters pushed.
EXPLAIN (COSTS OFF, VERBOSE) SELECT name FROM t_user WHERE name LIKE 'user 9%';
SELECT count(*), min(user_id), max(user_id), count(tel) FROM t_user;
SELECT name FROM t_user WHERE name LIKE 'user 9%' ORDER BY user_id LIMIT 3 OFFSET 1;
SELECT created, count(*) FROM t_user GROUP BY 1;
-- ORDER BY and LIMIT: each shard returns its own first OFFSET + LIMIT rows, the coordinator
-- merges them; not pushed when a filter stays on the coordinator or rows are grouped.
EXPLAIN (COSTS OFF, VERBOSE) SELECT user_id, name FROM t_user WHERE tel IS NOT NULL ORDER BY user_id DESC LIMIT 3 OFFSET 2;
SELECT user_id, name FROM t_user WHERE tel IS NOT NULL ORDER BY user_id DESC LIMIT 3 OFFSET 2;
EXPLAIN (COSTS OFF) SELECT user_id FROM t_user ORDER BY created, user_id FETCH FIRST 2 ROWS WITH TIES;
EXPLAIN (COSTS OFF) SELECT user_id FROM t_user LIMIT 1;
EXPLAIN (COSTS OFF) SELECT user_id FROM t_user WHERE name > 'user 95' ORDER BY user_id LIMIT 3;
EXPLAIN (COSTS OFF) SELECT name FROM t_user ORDER BY name LIMIT 3;
EXPLAIN (COSTS OFF) SELECT created, count(*) FROM t_user GROUP BY 1 ORDER BY 1 LIMIT 1;
-- A collation-dependent comparison stays on the coordinator.
EXPLAIN (COSTS OFF) SELECT * FROM t_user WHERE name > 'user 95';
-- Prepared statements: the generic plan prunes with each execution's parameter.
PREPARE by_id(bigint) AS SELECT name FROM t_user WHERE user_id = $1;
EXECUTE by_id(1); EXECUTE by_id(2); EXECUTE by_id(3); EXECUTE by_id(4); EXECUTE by_id(5);
EXECUTE by_id(6);
EXPLAIN (COSTS OFF) EXECUTE by_id(7);
EXPLAIN (COSTS OFF, ANALYZE, TIMING OFF, SUMMARY OFF) EXECUTE by_id(7);
PREPARE by_ids(bigint[]) AS SELECT user_id FROM t_user WHERE user_id = ANY ($1) ORDER BY 1;
EXECUTE by_ids('{1,2}'); EXECUTE by_ids('{3}'); EXECUTE by_ids('{}'); EXECUTE by_ids('{4,5,6}');
EXECUTE by_ids('{7,8}'); EXECUTE by_ids('{9,10,11}');

-- UPDATE and DELETE.
UPDATE t_user SET tel = '+1-555-0101' WHERE user_id = 2 RETURNING user_id, name, tel;
EXPLAIN (COSTS OFF, ANALYZE, TIMING OFF, SUMMARY OFF) UPDATE t_user SET tel = tel || '#' WHERE user_id = 2;
UPDATE t_user SET tel = 'none' WHERE tel IS NULL;
SELECT count(*) FILTER (WHERE tel = 'none') AS none, count(*) FILTER (WHERE tel IS NULL) AS null_tel FROM t_user;
UPDATE t_user SET user_id = 1000 WHERE user_id = 3;
UPDATE t_user SET tel = random()::text WHERE user_id = 3;
DELETE FROM t_user WHERE user_id IN (3, 4) RETURNING user_id, name;
DELETE FROM t_user WHERE name LIKE 'user 1%';
SELECT count(*) FROM t_user;
PREPARE rename(bigint, text) AS UPDATE t_user SET name = $2 WHERE user_id = $1;
EXECUTE rename(5, 'e'); EXECUTE rename(5, 'ee'); EXECUTE rename(5, 'eee'); EXECUTE rename(5, 'eeee');
EXECUTE rename(5, 'eeeee'); EXECUTE rename(6, 'f');
SELECT user_id, name FROM t_user WHERE user_id IN (5, 6) ORDER BY 1;
-- Stable functions and parameters are evaluated once on the coordinator.
UPDATE t_user SET created = current_date - 1 WHERE user_id = 6 RETURNING created = current_date - 1 AS yesterday;

-- ON CONFLICT with a conflict target that includes the shard key.
INSERT INTO t_user (user_id, name) VALUES (1, 'dup') ON CONFLICT (user_id) DO NOTHING;
INSERT INTO t_user (user_id, name) VALUES (1, 'dup') ON CONFLICT DO NOTHING;
INSERT INTO t_user (user_id, name) VALUES (1, 'ann'), (2000, 'new') ON CONFLICT (user_id) DO UPDATE SET name = excluded.name || '!' RETURNING user_id, name;
INSERT INTO t_user (user_id, name) VALUES (1, 'x') ON CONFLICT ON CONSTRAINT t_user_pkey DO UPDATE SET tel = 'conflict' RETURNING user_id, tel;
-- The existing row's columns next to EXCLUDED's of the same name.
INSERT INTO t_user AS u (user_id, name) VALUES (1, 'x') ON CONFLICT (user_id) DO UPDATE SET name = excluded.name || u.name WHERE u.user_id = excluded.user_id RETURNING user_id, name;

-- Transactions: a transaction reads its own writes; ROLLBACK undoes them on every worker.
BEGIN;
INSERT INTO t_user (user_id, name) SELECT g, 'tx' FROM generate_series(3001, 3010) g;
SELECT count(*) FROM t_user WHERE name = 'tx';
UPDATE t_user SET tel = 'in tx' WHERE name = 'tx';
SELECT count(*) FROM t_user WHERE tel = 'in tx';
ROLLBACK;
SELECT count(*) FROM t_user WHERE name = 'tx';
BEGIN;
INSERT INTO t_user (user_id, name) SELECT g, 'tx' FROM generate_series(3001, 3010) g;
COMMIT;
SELECT count(*) FROM t_user WHERE name = 'tx';
-- An error on one shard aborts the statement on all of them.
INSERT INTO t_user (user_id, name) VALUES (4001, 'a'), (4002, 'b'), (4003, 'c'), (1, 'dup');
SELECT count(*) FROM t_user WHERE user_id BETWEEN 4001 AND 4003;

-- Text keys, including non-ASCII ones.
CREATE TABLE words (word text PRIMARY KEY, n int);
SELECT pgshard.shard_table('words', 'word', shard_count => 3);
INSERT INTO words VALUES ('apple', 1), ('Äpfel', 2), ('日本語', 3), ('emoji 🎉', 4), ('', 5);
SELECT * FROM words WHERE word = '日本語';
SELECT * FROM words WHERE word IN ('Äpfel', 'emoji 🎉', 'missing') ORDER BY n;
SELECT w.word, w.n, (pgshard.shard_for('words', w.word)).worker FROM words w ORDER BY n;
SELECT pgshard.unshard_table('words');
DROP TABLE words;
SELECT pgshard.unshard_table('t_user');
DROP TABLE t_user;
