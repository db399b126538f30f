--
-- What pgshard cannot route yet is refused with a clear error: the coordinator's copy of a
-- sharded table holds no rows, so running a statement on it locally would be silently wrong.
--
CREATE TABLE guarded (id bigint PRIMARY KEY, note text);
CREATE VIEW guarded_view AS SELECT id FROM guarded;
PREPARE guarded_by_id (bigint) AS SELECT * FROM guarded WHERE id = $1;
EXECUTE guarded_by_id(1);
SELECT pgshard.shard_table('guarded', 'id', shard_count => 2);
INSERT INTO guarded VALUES (1, 'one'), (2, 'two');
-- A plan cached before the table became sharded is invalidated with it, and now routes.
EXECUTE guarded_by_id(1);
SELECT * FROM guarded_view ORDER BY id;
SELECT * FROM guarded WHERE id = 1 FOR UPDATE;
SELECT ctid, * FROM guarded;
SELECT * FROM guarded TABLESAMPLE SYSTEM (50);
UPDATE guarded SET note = 'x' FROM (VALUES (1)) v(id) WHERE guarded.id = v.id;
UPDATE guarded SET note = (SELECT 'x');
DELETE FROM guarded WHERE id IN (SELECT 1);
UPDATE guarded SET note = random()::text;
WITH moved AS (DELETE FROM guarded RETURNING *) SELECT * FROM moved;
MERGE INTO guarded g USING (VALUES (1)) v(id) ON g.id = v.id WHEN MATCHED THEN DELETE;
-- COPY is routed (see the copy suite).
COPY guarded FROM '/dev/null';
COPY guarded TO STDOUT;
-- DROP TABLE that PostgreSQL refuses (a view depends on the table) leaves the shards.
DROP TABLE guarded;
DROP VIEW guarded_view;
-- Nothing above changed a row.
SELECT * FROM guarded ORDER BY id;
SELECT count(*) AS shards FROM pgshard.shards WHERE table_name = 'guarded'::regclass;

-- TRUNCATE empties every shard (and every copy of a reference table), in the transaction.
\set on_workers 'SELECT s.table_name, s.worker, sum(w.result::int) AS rows FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(format($$SELECT count(*) FROM %s$$, s.shard_name)) w WHERE s.table_name::text LIKE $$guarded%$$ AND w.worker = s.worker GROUP BY 1, 2 ORDER BY 1, 2'
CREATE TABLE guarded_ref (code int PRIMARY KEY);
INSERT INTO guarded_ref VALUES (1), (2), (3);
SELECT pgshard.reference_table('guarded_ref');
:on_workers;
BEGIN;
TRUNCATE guarded, guarded_ref;
SELECT (SELECT count(*) FROM guarded) AS guarded, (SELECT count(*) FROM guarded_ref) AS guarded_ref;
ROLLBACK;
:on_workers;
TRUNCATE guarded, guarded_ref;
:on_workers;
INSERT INTO guarded VALUES (3, 'three');
-- DROP TABLE drops every shard and the metadata with the coordinator's table.
DROP TABLE guarded, guarded_ref;
SELECT worker, result AS shard_tables_left FROM pgshard.run_command_on_workers(
    $$SELECT count(*) FROM pg_tables WHERE tablename ~ '^guarded(_ref)?_[0-9]+$'$$) ORDER BY 1;
SELECT count(*) AS tables_left FROM pgshard.tables;
