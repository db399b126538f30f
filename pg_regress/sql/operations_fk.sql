--
-- Moves and splits of tables with foreign keys: between co-located tables (each shard
-- references the co-located shard of its range on its worker) and to reference tables (each
-- shard references its worker's copy). The new shards get the keys, the old ones lose them,
-- and the rows stay whole while writes go on.
--
SELECT setval('pgshard.shard_shard_id_seq', 900001, false);
\set VERBOSITY sqlstate
-- (fk_region is made before the table it references: a worker added later must give a copy
-- its keys only once the copies they reference exist there.)
CREATE TABLE fk_region (region int PRIMARY KEY, name text, zone int NOT NULL);
CREATE TABLE fk_zone (zone int PRIMARY KEY);
SELECT pgshard.reference_table('fk_region');
SELECT pgshard.reference_table('fk_zone');
INSERT INTO fk_zone VALUES (1), (2);
INSERT INTO fk_region VALUES (1, 'north', 1), (2, 'south', 2), (3, 'east', 2);
ALTER TABLE fk_region ADD CONSTRAINT region_zone FOREIGN KEY (zone) REFERENCES fk_zone (zone);
CREATE TABLE fk_customer (cid int PRIMARY KEY, region int NOT NULL);
CREATE TABLE fk_order (cid int NOT NULL, order_no int NOT NULL, amount int NOT NULL,
                       PRIMARY KEY (cid, order_no));
SELECT pgshard.shard_table('fk_customer', 'cid', shard_count => 2);
SELECT pgshard.shard_table('fk_order', 'cid', colocate_with => 'fk_customer');
ALTER TABLE fk_customer ADD CONSTRAINT customer_region
  FOREIGN KEY (region) REFERENCES fk_region (region);
ALTER TABLE fk_order ADD CONSTRAINT order_customer
  FOREIGN KEY (cid) REFERENCES fk_customer (cid) ON DELETE CASCADE;
INSERT INTO fk_customer SELECT g, 1 + g % 2 FROM generate_series(1, 20000) g;
INSERT INTO fk_order SELECT 1 + g % 20000, g, g % 100 FROM generate_series(1, 60000) g;

-- The foreign keys the workers have on the shard tables, checked against the catalog: per
-- table and key, the shards that have it, whether each references a table on its own worker,
-- and whether that is the co-located shard of its range (or the reference table's copy).
CREATE VIEW fk_on_workers AS
SELECT w.worker, k->>0 AS shard_table, k->>1 AS key_name, k->>2 AS referenced
FROM pgshard.run_command_on_workers($$SELECT coalesce(json_agg(json_build_array(
       c.relnamespace::regnamespace || '.' || c.relname, k.conname,
       r.relnamespace::regnamespace || '.' || r.relname)), '[]')
     FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
     WHERE k.contype = 'f' AND c.relname LIKE 'fk\_%'$$) w,
     json_array_elements(w.result::json) k;
CREATE VIEW fk_layout AS
SELECT s.table_name, k.key_name, count(*) AS shards,
       bool_and(r.worker = s.worker) AS on_its_worker,
       bool_and(r.hash_min = s.hash_min OR r.table_name = 'fk_region'::regclass) AS colocated_or_copy
FROM pgshard.shards s
LEFT JOIN fk_on_workers k ON k.worker = s.worker AND k.shard_table = s.shard_name
LEFT JOIN pgshard.shards r ON r.worker = k.worker AND r.shard_name = k.referenced
WHERE s.table_name IN ('fk_customer'::regclass, 'fk_order'::regclass)
GROUP BY 1, 2 ORDER BY 1, 2;
-- Foreign keys on shard tables that no placement names (old or leftover shards).
CREATE VIEW fk_stray AS
SELECT count(*) AS stray_keys FROM fk_on_workers k
WHERE NOT EXISTS (SELECT FROM pgshard.shards s WHERE s.worker = k.worker AND s.shard_name = k.shard_table);
\set intact 'SELECT (SELECT count(*) FROM fk_customer) AS customers, (SELECT count(*) FROM fk_order) AS orders, (SELECT sum(amount) FROM fk_order) AS amount, (SELECT count(*) FROM fk_order o JOIN fk_customer c USING (cid)) AS orders_with_customer'
SELECT * FROM fk_layout;
:intact;

SELECT min(shard_id) AS fk_shard FROM pgshard.shards WHERE table_name = 'fk_customer'::regclass \gset
SELECT worker AS first_worker, CASE worker WHEN 'w1' THEN 'w2' ELSE 'w1' END AS other_worker
FROM pgshard.shards WHERE shard_id = :fk_shard \gset
-- Customers of the first shard: one in region 3, and a key no customer has.
SELECT min(g) AS east_cid FROM generate_series(20001, 21000) g, LATERAL pgshard.shard_for('fk_customer', g) f
WHERE f.shard_id = :fk_shard \gset
SELECT max(g) AS missing_cid FROM generate_series(20001, 21000) g, LATERAL pgshard.shard_for('fk_customer', g) f
WHERE f.shard_id = :fk_shard \gset
SELECT min(c.cid) AS moved_cid FROM fk_customer c, LATERAL pgshard.shard_for('fk_customer', c.cid) f
WHERE f.shard_id = :fk_shard \gset
INSERT INTO fk_customer VALUES (:east_cid, 3);

\set wait_for_held 'DO $$ BEGIN FOR i IN 1..300 LOOP PERFORM 1 FROM pgshard.operation_progress WHERE phase = $p$catching up$p$; EXIT WHEN FOUND; PERFORM pg_sleep(0.1); END LOOP; END $$'
\set wait_for_none 'DO $$ BEGIN FOR i IN 1..300 LOOP PERFORM 1 FROM pgshard.operation_progress; EXIT WHEN NOT FOUND; PERFORM pg_sleep(0.1); END LOOP; END $$'
-- A split held before its switch: its halves get the key to fk_region only at the switch, so
-- that a reference write meanwhile does not act on rows they have not caught up with. Here a
-- customer leaves region 3, then region 3 is deleted, while the halves still hold the customer
-- in region 3 (until the switch's last round). The split is then cancelled.
\! (PGOPTIONS="-c pgshard.inject_fault=pause_before_switch" psql -X -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "SELECT * FROM pgshard.split_shard($(psql -X -At -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "SELECT min(shard_id) FROM pgshard.shards WHERE table_name = 'fk_customer'::regclass"), 'w2')" > "$PGSHARD_CLUSTER_DIR/held_fk_split.log" 2>&1 &)
:wait_for_held;
UPDATE fk_customer SET region = 1 WHERE cid = :east_cid;
DELETE FROM fk_region WHERE region = 3;
SELECT pg_cancel_backend(pid) FROM pgshard.operation_progress;
:wait_for_none;
\! grep -o "ERROR:  canceling statement due to user request" "$PGSHARD_CLUSTER_DIR/held_fk_split.log"
INSERT INTO fk_region VALUES (3, 'east', 2);
UPDATE fk_customer SET region = 3 WHERE cid = :east_cid;
-- A move cancelled before its switch removes the tables it made on the target, although they
-- reference each other.
\! (PGOPTIONS="-c pgshard.inject_fault=pause_before_switch" psql -X -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "SELECT * FROM pgshard.move_shard($(psql -X -At -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "SELECT s.shard_id || ', ' || quote_literal(CASE s.worker WHEN 'w1' THEN 'w2' ELSE 'w1' END) FROM pgshard.shards s WHERE s.shard_id = (SELECT min(shard_id) FROM pgshard.shards WHERE table_name = 'fk_customer'::regclass)"))" > "$PGSHARD_CLUSTER_DIR/held_fk_move.log" 2>&1 &)
:wait_for_held;
SELECT pg_cancel_backend(pid) FROM pgshard.operation_progress;
:wait_for_none;
\! grep -o "ERROR:  canceling statement due to user request" "$PGSHARD_CLUSTER_DIR/held_fk_move.log"
SELECT (SELECT sum(result::int) FROM pgshard.run_command_on_workers(
          $q$SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname ~ '^fk_(customer|order)_[0-9]+$'$q$))
       - (SELECT count(*) FROM pgshard.shards
          WHERE table_name IN ('fk_customer'::regclass, 'fk_order'::regclass)) AS tables_no_placement_names;
SELECT * FROM fk_stray;

-- The move: the moved shards reference each other and the target's copy of fk_region; the old
-- ones keep no key.
SET client_min_messages = warning;
SELECT shards_moved, rows_moved FROM pgshard.move_shard(:fk_shard, :'other_worker');
RESET client_min_messages;
SELECT * FROM fk_layout;
SELECT * FROM fk_stray;
:intact;
-- The keys hold on the new place: an order without its customer, a customer without its
-- region, a region still used.
INSERT INTO fk_order VALUES (:missing_cid, 1, 1);
INSERT INTO fk_customer VALUES (:missing_cid, 9);
DELETE FROM fk_region WHERE region = 1;
-- A region that only moved rows used can go once they have (the old shard, which still holds
-- its copy of them, no longer references the old worker's copy of fk_region).
DELETE FROM fk_customer WHERE cid = :east_cid;
DELETE FROM fk_region WHERE region = 3;
-- ON DELETE CASCADE between the moved shards.
SELECT count(*) AS orders_of_moved_customer FROM fk_order WHERE cid = :moved_cid;
DELETE FROM fk_customer WHERE cid = :moved_cid;
SELECT count(*) AS orders_of_moved_customer FROM fk_order WHERE cid = :moved_cid;
:intact;

-- The split, the upper half going back to the first worker, while customers change region
-- all along: each change re-copies its customer into the new halves, which must not take the
-- customer's orders with it (the halves are filled with triggers off).
\! printf '\\set cid random(1, 20000)\nUPDATE fk_customer SET region = 3 - region WHERE cid = :cid;\n' > "$PGSHARD_CLUSTER_DIR/fk_writes.sql"
\! pgbench -n -c 2 -j 2 -T 5 --max-tries=10 -f "$PGSHARD_CLUSTER_DIR/fk_writes.sql" -h 127.0.0.1 -p "$PGSHARD_PORT" pgshard > "$PGSHARD_CLUSTER_DIR/fk_split_pgbench.log" 2>&1 & sleep 1
SET client_min_messages = warning;
SELECT upper_shard_id AS upper_shard, shards_split, rows_copied > 0 AS copied
FROM pgshard.split_shard(:fk_shard, :'first_worker') \gset
RESET client_min_messages;
SELECT :shards_split AS shards_split, :'copied' AS copied;
\! sleep 5; grep -o "number of failed transactions: [0-9]*" "$PGSHARD_CLUSTER_DIR/fk_split_pgbench.log"
SELECT * FROM fk_layout;
SELECT * FROM fk_stray;
:intact;
SELECT max(g) AS missing_upper_cid FROM generate_series(20001, 30000) g, LATERAL pgshard.shard_for('fk_customer', g) f
WHERE f.shard_id = :upper_shard \gset
INSERT INTO fk_order VALUES (:missing_upper_cid, 1, 1);
INSERT INTO fk_order VALUES (:missing_cid, 1, 1);
INSERT INTO fk_customer VALUES (:missing_upper_cid, 2);
INSERT INTO fk_order VALUES (:missing_upper_cid, 1, 1);
DELETE FROM fk_customer WHERE cid = :missing_upper_cid;
SELECT count(*) AS orders_of_deleted_customer FROM fk_order WHERE cid = :missing_upper_cid;

-- A worker added later gets the reference copies with the key between them, and a shard moved
-- there references its copies. (The new worker is a second database of w1's server, so the
-- shard moved there comes from w2: a subscription cannot be made to its own server's slot.)
\set w1 'host=127.0.0.1 user=postgres port=' :worker_1_port
\c pgshard - 127.0.0.1 :worker_1_port
CREATE DATABASE regress_fk;
\c pgshard - 127.0.0.1 :coordinator_port
SELECT pgshard.add_worker('w3', :'w1' || ' dbname=regress_fk') > 0 AS added;
SELECT shard_table, key_name, referenced FROM fk_on_workers WHERE worker = 'w3' ORDER BY 1, 2;
SELECT min(shard_id) AS w2_shard FROM pgshard.shards WHERE table_name = 'fk_customer'::regclass AND worker = 'w2' \gset
SET client_min_messages = warning;
SELECT shards_moved FROM pgshard.move_shard(:w2_shard, 'w3');
RESET client_min_messages;
SELECT * FROM fk_layout;
SELECT k.worker, k.key_name, k.referenced LIKE 'public.fk_region_%' AS references_copy FROM fk_on_workers k
JOIN pgshard.shards s ON s.worker = k.worker AND s.shard_name = k.shard_table WHERE s.shard_id = :w2_shard;
SELECT * FROM fk_stray;
:intact;
SET client_min_messages = warning;
SELECT shards_moved FROM pgshard.move_shard(:w2_shard, 'w2');
RESET client_min_messages;
SELECT pgshard.cleanup_orphaned_shards() AS old_tables_dropped;
SELECT pgshard.remove_worker('w3');
\c pgshard - 127.0.0.1 :worker_1_port
DROP DATABASE regress_fk WITH (FORCE);
\c pgshard - 127.0.0.1 :coordinator_port

-- The old shards go without complaint; nothing is left behind.
SELECT pgshard.cleanup_orphaned_shards() AS old_tables_dropped;
SELECT (SELECT sum(result::int) FROM pgshard.run_command_on_workers(
          $q$SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname ~ '^fk_(customer|order)_[0-9]+$'$q$))
       - (SELECT count(*) FROM pgshard.shards
          WHERE table_name IN ('fk_customer'::regclass, 'fk_order'::regclass)) AS tables_no_placement_names;
SELECT * FROM fk_stray;
:intact;
DROP VIEW fk_layout, fk_stray, fk_on_workers;
DROP TABLE fk_order, fk_customer, fk_region, fk_zone;
