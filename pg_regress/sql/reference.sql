--
-- Reference tables: a full copy on every worker. Reads go to one copy, writes to every copy
-- in one distributed transaction, and sharded tables join them where their shards are.
--
SELECT setval('pgshard.shard_shard_id_seq', 700001, false);
\set w1 'host=127.0.0.1 user=postgres port=' :worker_1_port
-- What each worker's copy holds: its row count, and whether its rows are the same as worker
-- w1's (a digest of them; encrypted values are the same ciphertext on every copy).
\set copies 'SELECT worker, split_part(result, $$ $$, 1) AS rows, split_part(result, $$ $$, 2) = first_value(split_part(result, $$ $$, 2)) OVER (ORDER BY worker) AS same_rows_as_w1 FROM (SELECT s.worker, w.result FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(format($$SELECT count(*) || $q$ $q$ || md5(coalesce(string_agg(r::text, $q$,$q$ ORDER BY r::text), $q$none$q$)) FROM %s r$$, s.shard_name)) w WHERE s.table_name = $$nation$$::regclass AND w.worker = s.worker) x ORDER BY 1'
CREATE TABLE nation (n_id int PRIMARY KEY, name text NOT NULL, region text, tel pgshard.encrypted_text);
INSERT INTO nation VALUES (1, 'France', 'EU', '+33 1'), (2, 'Japan', 'AS', '+81 3'),
    (3, 'Brazil', 'SA', NULL), (4, 'Kenya', NULL, '+254 20'), (5, 'Perú', 'SA', '+51 1'),
    (6, 'Éire', 'EU', NULL);
SELECT pgshard.reference_table('nation');
SELECT * FROM pgshard.tables;
SELECT shard_id, table_name, hash_min, hash_max, worker, shard_name FROM pgshard.shards;
-- Every worker holds every row, encrypted columns as ciphertext.
:copies;
SELECT worker, result AS type_and_rows_with_plaintext FROM pgshard.run_command_on_workers(
    $$SELECT format_type(atttypid, NULL) || ' ' || (SELECT count(*) FROM public.nation_700001 WHERE position(convert_to('+33 1', 'UTF8') IN tel) > 0)
      FROM pg_attribute WHERE attrelid = 'public.nation_700001'::regclass AND attname = 'tel'$$) ORDER BY 1;

-- What cannot be done with a reference table.
SELECT pgshard.reference_table('nation');
SELECT * FROM pgshard.shard_for('nation', 1);
CREATE TABLE other (id int PRIMARY KEY);
SELECT pgshard.shard_table('other', 'id', colocate_with => 'nation');
CREATE TEMP TABLE temp_ref (id int);
SELECT pgshard.reference_table('temp_ref');
SELECT pgshard.reference_table('pgshard.workers');
SELECT * FROM pgshard.tables;

-- Reads: one copy answers, whole queries included.
EXPLAIN (COSTS OFF) SELECT * FROM nation WHERE region = 'EU';
SELECT n_id, name, region, tel FROM nation ORDER BY n_id;
SELECT n_id FROM nation WHERE tel = '+81 3';
EXPLAIN (COSTS OFF) SELECT region, count(*) FROM nation GROUP BY region;
SELECT region, count(*) FROM nation GROUP BY region ORDER BY region NULLS FIRST;

-- Writes go to every copy; the statement's count and RETURNING rows are one copy's.
INSERT INTO nation VALUES (7, 'Chad', 'AF', '+235') RETURNING n_id, name, tel;
INSERT INTO nation SELECT g, 'Land ' || g, 'XX', NULL FROM generate_series(10, 2509) g;
UPDATE nation SET region = 'AF' WHERE n_id = 4 RETURNING *;
UPDATE nation SET name = name || '!' WHERE region = 'XX' AND n_id % 100 = 0;
DELETE FROM nation WHERE n_id > 2000;
INSERT INTO nation VALUES (1, 'X', 'Y') ON CONFLICT (n_id) DO UPDATE SET name = excluded.name || nation.name RETURNING n_id, name;
INSERT INTO nation VALUES (1, 'X', 'Y') ON CONFLICT DO NOTHING;
EXPLAIN (COSTS OFF, VERBOSE) UPDATE nation SET region = 'EU' WHERE n_id = 6;
:copies;
-- Prepared writes.
PREPARE rename(int, text) AS UPDATE nation SET name = $2 WHERE n_id = $1;
EXECUTE rename(2, 'Nippon');
EXECUTE rename(3, 'Brasil');
EXECUTE rename(5, 'Peru');
EXECUTE rename(6, 'Ireland');
EXECUTE rename(7, 'Tchad');
EXECUTE rename(1, 'France');
SELECT n_id, name FROM nation WHERE n_id < 10 ORDER BY 1;
:copies;

-- All or nothing: a copy that refuses the write (here a constraint only worker 2's copy
-- has) fails the statement, and no copy keeps it.
\c pgshard - 127.0.0.1 :worker_2_port
ALTER TABLE public.nation_700001 ADD CONSTRAINT only_here CHECK (n_id <> 5000);
\c pgshard - 127.0.0.1 :coordinator_port
INSERT INTO nation VALUES (5000, 'Nowhere');
BEGIN;
INSERT INTO nation VALUES (4999, 'Somewhere');
UPDATE nation SET n_id = 5000 WHERE n_id = 4999;
COMMIT;
SELECT count(*) FROM nation WHERE n_id IN (4999, 5000);
:copies;
\c pgshard - 127.0.0.1 :worker_2_port
ALTER TABLE public.nation_700001 DROP CONSTRAINT only_here;
\c pgshard - 127.0.0.1 :coordinator_port
-- ROLLBACK undoes every copy; inside the transaction, reads see its own writes.
BEGIN;
DELETE FROM nation WHERE n_id >= 10;
SELECT count(*) FROM nation;
ROLLBACK;
SELECT count(*) FROM nation;
-- Writers of a reference table take turns (each copy's row locks are on its own worker, so
-- two writers could otherwise wait for each other across workers unseen): a lock held on the
-- coordinator until the transaction ends.
BEGIN;
UPDATE nation SET region = region WHERE n_id = 1;
SELECT locktype, classid = 'nation'::regclass::oid AS on_nation, objsubid, mode, granted
FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
COMMIT;
DELETE FROM nation WHERE n_id >= 10;

-- Joins with sharded tables run where the shards are, each with the copy on its worker.
CREATE TABLE customer (c_id int PRIMARY KEY, n_id int, name text);
CREATE TABLE purchase (c_id int, p_id int, amount numeric, PRIMARY KEY (c_id, p_id));
INSERT INTO customer SELECT c, CASE WHEN c % 9 = 0 THEN NULL ELSE c % 8 END, 'customer ' || c FROM generate_series(1, 60) c;
INSERT INTO purchase SELECT c, p, c * p / 4.0 FROM generate_series(1, 60) c, generate_series(1, 3) p WHERE p <= c % 4;
SELECT pgshard.shard_table('customer', 'c_id', shard_count => 4),
       pgshard.shard_table('purchase', 'c_id', colocate_with => 'customer');
-- Inner join, pruned by the sharded table's key.
EXPLAIN (COSTS OFF, VERBOSE)
SELECT c.c_id, n.name FROM customer c JOIN nation n ON n.n_id = c.n_id WHERE c.c_id = 17;
SELECT c.c_id, n.name FROM customer c JOIN nation n ON n.n_id = c.n_id WHERE c.c_id IN (17, 18, 19) ORDER BY 1;
-- An aggregate over a join of co-located tables and reference tables: split, then combined.
EXPLAIN (COSTS OFF)
SELECT n.region, count(*), sum(p.amount) FROM customer c JOIN purchase p USING (c_id) JOIN nation n ON n.n_id = c.n_id GROUP BY n.region;
SELECT n.region, count(*), sum(p.amount) FROM customer c JOIN purchase p USING (c_id) JOIN nation n ON n.n_id = c.n_id GROUP BY n.region ORDER BY 1;
-- Left join keeping the sharded side; semi and anti joins into the reference table.
EXPLAIN (COSTS OFF) SELECT c.c_id, n.name FROM customer c LEFT JOIN nation n ON n.n_id = c.n_id;
SELECT count(*), count(n.name) FROM customer c LEFT JOIN nation n ON n.n_id = c.n_id;
EXPLAIN (COSTS OFF) SELECT count(*) FROM customer c WHERE NOT EXISTS (SELECT 1 FROM nation n WHERE n.n_id = c.n_id);
SELECT c_id FROM customer c WHERE NOT EXISTS (SELECT 1 FROM nation n WHERE n.n_id = c.n_id) ORDER BY 1;
SELECT count(*) FROM customer c WHERE n_id IN (SELECT n_id FROM nation WHERE region = 'EU');
-- Keeping the reference side (each worker would return its rows again): the rows are pulled
-- and PostgreSQL joins them here.
EXPLAIN (COSTS OFF) SELECT n.name, count(c.c_id) FROM nation n LEFT JOIN customer c ON c.n_id = n.n_id GROUP BY n.name;
SELECT n.name, count(c.c_id) FROM nation n LEFT JOIN customer c ON c.n_id = n.n_id GROUP BY n.name ORDER BY 1;
SELECT n.name FROM nation n WHERE EXISTS (SELECT 1 FROM customer c WHERE c.n_id = n.n_id) ORDER BY 1;
-- Two reference tables: one copy answers the whole join.
CREATE TABLE region (code text PRIMARY KEY, label text);
INSERT INTO region VALUES ('EU', 'Europe'), ('AS', 'Asia'), ('SA', 'South America'), ('AF', 'Africa');
SELECT pgshard.reference_table('region');
EXPLAIN (COSTS OFF) SELECT n.name, r.label FROM nation n FULL JOIN region r ON r.code = n.region;
SELECT n.name, r.label FROM nation n FULL JOIN region r ON r.code = n.region ORDER BY 1, 2;
SELECT r.label, count(*), sum(p.amount) FROM customer c JOIN purchase p USING (c_id)
JOIN nation n ON n.n_id = c.n_id JOIN region r ON r.code = n.region GROUP BY r.label ORDER BY 1;
-- A transaction that writes a reference table and a sharded table commits both or neither.
BEGIN;
UPDATE nation SET region = 'AS' WHERE n_id = 1;
UPDATE customer SET name = 'moved' WHERE c_id = 1;
ROLLBACK;
SELECT (SELECT region FROM nation WHERE n_id = 1), (SELECT name FROM customer WHERE c_id = 1);

-- A worker added later gets a copy of every reference table; a removed worker's copies are
-- no longer used (and left there: the worker may be gone).
\c pgshard - 127.0.0.1 :worker_1_port
CREATE DATABASE regress_reference;
\c pgshard - 127.0.0.1 :coordinator_port
SELECT pgshard.add_worker('w3', :'w1' || ' dbname=regress_reference') > 0 AS added;
SELECT table_name, worker FROM pgshard.shards WHERE table_name IN ('nation'::regclass, 'region'::regclass) ORDER BY 1, 2;
:copies;
UPDATE nation SET region = 'OC' WHERE n_id = 7;
:copies;
SELECT pgshard.remove_worker('w3');
-- Added again, it gets fresh copies.
SELECT pgshard.add_worker('w3', :'w1' || ' dbname=regress_reference') > 0 AS added;
:copies;
SELECT pgshard.remove_worker('w3');
\c pgshard - 127.0.0.1 :worker_1_port
DROP DATABASE regress_reference;
\c pgshard - 127.0.0.1 :coordinator_port

-- Unsharding brings the rows back from one copy and drops every copy.
SELECT pgshard.unshard_table('region');
SELECT * FROM region ORDER BY code;
SELECT pgshard.unshard_table('nation');
SELECT n_id, name, region, tel FROM nation ORDER BY n_id;
SELECT worker, result FROM pgshard.run_command_on_workers($$SELECT to_regclass('public.nation_700001') IS NULL$$) ORDER BY 1;
SELECT pgshard.unshard_table(t) FROM unnest(ARRAY['customer', 'purchase']) t;
DROP TABLE nation, region, customer, purchase, other;
