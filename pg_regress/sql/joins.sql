--
-- Joins: co-located tables joined on their shard keys run on each pair of co-located shards;
-- other joins bring the rows to the coordinator. EXPLAIN shows which.
--
SELECT setval('pgshard.shard_shard_id_seq', 600001, false);
CREATE TABLE accounts (acct int PRIMARY KEY, owner text);
CREATE TABLE entries (acct int, entry int, amount int, PRIMARY KEY (acct, entry));
CREATE TABLE notes (id int PRIMARY KEY, acct int, body text);
SELECT pgshard.shard_table('accounts', 'acct', shard_count => 3);
SELECT pgshard.shard_table('entries', 'acct', colocate_with => 'accounts');
SELECT pgshard.shard_table('notes', 'id', shard_count => 2);
INSERT INTO accounts SELECT a, 'owner ' || a FROM generate_series(1, 30) a;
INSERT INTO entries SELECT a, e, a * e FROM generate_series(1, 25) a, generate_series(1, 3) e;
INSERT INTO notes SELECT n, n % 35, 'note ' || n FROM generate_series(1, 40) n;

-- Pushed: inner, left (a filter on the nullable side goes into ON), full, semi, anti.
EXPLAIN (COSTS OFF, VERBOSE)
SELECT a.acct, e.amount FROM accounts a JOIN entries e ON e.acct = a.acct WHERE e.amount > 50;
SELECT count(*), sum(e.amount) FROM accounts a JOIN entries e ON e.acct = a.acct WHERE e.amount > 50;
EXPLAIN (COSTS OFF)
SELECT a.acct, e.entry FROM accounts a LEFT JOIN entries e ON e.acct = a.acct AND e.entry = 2 WHERE a.acct = 27;
SELECT a.acct, e.entry FROM accounts a LEFT JOIN entries e ON e.acct = a.acct AND e.entry = 2 WHERE a.acct IN (24, 27) ORDER BY 1;
SELECT count(*), count(a.acct), count(e.acct) FROM accounts a FULL JOIN entries e ON e.acct = a.acct;
EXPLAIN (COSTS OFF) SELECT count(*) FROM accounts a WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.acct = a.acct);
SELECT acct FROM accounts a WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.acct = a.acct) ORDER BY 1;
SELECT count(*) FROM accounts WHERE acct IN (SELECT acct FROM entries WHERE amount > 60);
-- LEFT JOIN … WHERE inner key IS NULL becomes an anti join in PostgreSQL: its inner columns
-- (NULLs) and its other WHERE conditions are evaluated on the coordinator.
SELECT a.acct, e.entry FROM accounts a LEFT JOIN entries e ON e.acct = a.acct WHERE e.acct IS NULL ORDER BY 1;
SELECT a.acct FROM accounts a LEFT JOIN entries e ON e.acct = a.acct WHERE e.acct IS NULL AND e.amount IS NULL ORDER BY 1;
-- ORDER BY … LIMIT over a pushed join: each shard pair returns its first rows.
EXPLAIN (COSTS OFF)
SELECT a.acct, e.amount FROM accounts a JOIN entries e USING (acct) ORDER BY e.amount DESC, a.acct LIMIT 4;
SELECT a.acct, e.amount FROM accounts a JOIN entries e USING (acct) ORDER BY e.amount DESC, a.acct LIMIT 4;
-- Not co-located, or not on the keys: both sides' rows are pulled and joined here.
EXPLAIN (COSTS OFF) SELECT a.acct, n.id FROM accounts a JOIN notes n ON n.acct = a.acct;
SELECT count(*) FROM accounts a JOIN notes n ON n.acct = a.acct;
EXPLAIN (COSTS OFF) SELECT count(*) FROM accounts a JOIN entries e ON e.entry = a.acct;
-- A nested loop that rescans one sharded table while another's read is still open on the same
-- workers (each worker has one connection per transaction): the open read is buffered first.
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SET enable_material = off;
EXPLAIN (COSTS OFF) SELECT n.id, a.owner FROM notes n JOIN accounts a ON a.acct = n.acct + 0 WHERE n.id <= 6;
SELECT n.id, a.owner FROM notes n JOIN accounts a ON a.acct = n.acct + 0 WHERE n.id <= 6 ORDER BY 1;
BEGIN;
SELECT count(*) FROM notes n JOIN accounts a ON a.acct = n.acct + 0;
COMMIT;
RESET enable_hashjoin;
RESET enable_mergejoin;
RESET enable_material;
-- Aggregates over a co-located join: pushed whole when grouped by a preserved side's key,
-- split into partial aggregates otherwise.
EXPLAIN (COSTS OFF) SELECT a.acct, count(*), sum(e.amount) FROM accounts a JOIN entries e USING (acct) GROUP BY a.acct;
EXPLAIN (COSTS OFF) SELECT e.entry, count(*), avg(e.amount) FROM accounts a JOIN entries e USING (acct) GROUP BY e.entry;
SELECT e.entry, count(*), avg(e.amount) FROM accounts a JOIN entries e USING (acct) GROUP BY e.entry ORDER BY 1;
SELECT a.acct, count(e.entry) FROM accounts a LEFT JOIN entries e USING (acct) GROUP BY a.acct HAVING count(e.entry) < 3 ORDER BY 1;
-- Three co-located tables joined on their keys run as one query per shard group, and so does
-- an aggregate over them.
EXPLAIN (COSTS OFF)
SELECT a.acct, e.entry, b.owner FROM accounts a JOIN entries e ON e.acct = a.acct JOIN accounts b ON b.acct = e.acct WHERE e.entry = 2;
SELECT count(*), sum(e.amount) FROM accounts a JOIN entries e ON e.acct = a.acct JOIN accounts b ON b.acct = e.acct WHERE e.entry = 2;
EXPLAIN (COSTS OFF)
SELECT e.entry, count(*) FROM accounts a JOIN entries e ON e.acct = a.acct JOIN entries f ON f.acct = a.acct GROUP BY e.entry;
SELECT e.entry, count(*) FROM accounts a JOIN entries e ON e.acct = a.acct JOIN entries f ON f.acct = a.acct GROUP BY e.entry ORDER BY 1;
-- pgshard.max_pulled_rows caps the rows one read may bring; pushed work stays under it.
SET pgshard.max_pulled_rows = 10;
SELECT count(*) FROM notes n JOIN accounts a ON a.acct = n.acct;
SELECT count(*), sum(e.amount) FROM accounts a JOIN entries e USING (acct) WHERE e.amount > 50;
SELECT count(*) FROM notes;
-- A read stopped early (LIMIT on the coordinator) reads the rest of its rows to keep its
-- connection usable inside a transaction block; those do not count against the limit.
BEGIN;
SELECT count(*) FROM (SELECT id FROM notes WHERE random() < 2 LIMIT 3) s;
COMMIT;
RESET pgshard.max_pulled_rows;
-- EXPLAIN ANALYZE shows the rows (and, with TIMING, the time) of every task.
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, VERBOSE)
SELECT a.acct FROM accounts a JOIN entries e USING (acct) WHERE e.entry = 1;
EXPLAIN (FORMAT JSON, COSTS OFF) SELECT count(*) FROM accounts a JOIN entries e USING (acct) WHERE a.acct = 3;
-- Co-located tables sharded by an encrypted key: the join compares blind-index tags.
CREATE TABLE people (email pgshard.encrypted_text PRIMARY KEY, name text);
CREATE TABLE logins (email pgshard.encrypted_text, at int);
SELECT pgshard.shard_table('people', 'email', shard_count => 2);
SELECT pgshard.shard_table('logins', 'email', colocate_with => 'people');
INSERT INTO people SELECT 'p' || g || '@example.com', 'person ' || g FROM generate_series(1, 10) g;
INSERT INTO logins SELECT 'p' || (g % 12) || '@example.com', g FROM generate_series(1, 30) g;
EXPLAIN (COSTS OFF, VERBOSE) SELECT p.name, l.at FROM people p JOIN logins l ON l.email = p.email;
SELECT p.name, count(l.at) FROM people p LEFT JOIN logins l ON l.email = p.email GROUP BY p.name ORDER BY p.name;
SELECT pgshard.unshard_table(t) FROM unnest(ARRAY['accounts', 'entries', 'notes', 'people', 'logins']) t;
DROP TABLE accounts, entries, notes, people, logins;
