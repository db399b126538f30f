--
-- A table registered as sharded is never read or written locally: until routing lands, every
-- statement on it is refused with a clear error (the coordinator's copy holds no rows, so a
-- local answer would be silently wrong). The catalog is written by hand here because
-- pgshard.shard_table is not built yet.
--
CREATE TABLE guarded (id bigint PRIMARY KEY, note text);
CREATE VIEW guarded_view AS SELECT id FROM guarded;
PREPARE guarded_by_id (bigint) AS SELECT * FROM guarded WHERE id = $1;
EXECUTE guarded_by_id(1);
BEGIN;
INSERT INTO pgshard.colocation (shard_count, key_family) VALUES (1, 'integer') RETURNING colocation_id AS colocation \gset
INSERT INTO pgshard.sharded_table VALUES ('guarded', 'id', :colocation);
INSERT INTO pgshard.shard (table_oid, hash_min, hash_max)
  VALUES ('guarded', -9223372036854775808, 9223372036854775807) RETURNING shard_id \gset
INSERT INTO pgshard.placement SELECT :shard_id, worker_id FROM pgshard.worker WHERE name = 'w1';
COMMIT;
SELECT * FROM guarded;
SELECT count(*) FROM guarded WHERE id IN (SELECT 1);
SELECT * FROM guarded_view;
WITH x AS (SELECT * FROM guarded) SELECT * FROM x;
SELECT EXISTS (SELECT 1 FROM guarded);
INSERT INTO guarded VALUES (1, 'one');
UPDATE guarded SET note = 'x';
DELETE FROM guarded;
-- A plan cached before the table became sharded is invalidated with it.
EXECUTE guarded_by_id(1);
COPY guarded FROM '/dev/null';
COPY guarded TO STDOUT;
TRUNCATE guarded;
-- Other tables are untouched.
CREATE TABLE local_table (id int);
INSERT INTO local_table VALUES (1);
SELECT * FROM local_table;
-- A worker holding placements cannot be removed.
SELECT pgshard.remove_worker('w1');
-- Unregistered, the table is a plain table again (in this session and in new ones).
BEGIN;
DELETE FROM pgshard.placement WHERE shard_id = :shard_id;
DELETE FROM pgshard.sharded_table WHERE table_oid = 'guarded'::regclass;
DELETE FROM pgshard.colocation WHERE colocation_id = :colocation;
COMMIT;
SELECT * FROM guarded;
EXECUTE guarded_by_id(1);
DROP VIEW guarded_view;
DROP TABLE guarded, local_table;
