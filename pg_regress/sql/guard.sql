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
TRUNCATE guarded;
DROP TABLE guarded;
DROP VIEW guarded_view;
-- Nothing above changed a row.
SELECT * FROM guarded ORDER BY id;
SELECT pgshard.unshard_table('guarded');
SELECT * FROM guarded ORDER BY id;
DROP TABLE guarded;
