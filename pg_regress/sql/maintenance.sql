--
-- VACUUM and ANALYZE of distributed tables run on every shard (every copy of a reference
-- table) after the coordinator's own tables, with the same options and columns.
--
-- Per shard that its worker has: manual vacuums and analyzes so far (autovacuum counts
-- apart), and whether the row estimate ANALYZE leaves is the number of rows really there.
CREATE FUNCTION shard_upkeep(t regclass)
RETURNS TABLE (worker text, vacuums bigint, analyzes bigint, estimate_is_exact boolean)
LANGUAGE sql AS $f$
  SELECT s.worker, split_part(w.result, ',', 1)::bigint, split_part(w.result, ',', 2)::bigint,
         split_part(w.result, ',', 3)::bigint = split_part(w.result, ',', 4)::bigint
  FROM pgshard.shards s,
  LATERAL pgshard.run_command_on_workers(format($q$
    SELECT concat_ws(',', n.vacuum_count, n.analyze_count, c.reltuples::bigint,
                     (SELECT count(*) FROM %1$s))
    FROM pg_stat_user_tables n JOIN pg_class c ON c.oid = n.relid
    WHERE n.relid = %1$L::regclass
  $q$, s.shard_name)) w
  WHERE s.table_name = t AND w.worker = s.worker AND w.success
  ORDER BY s.shard_id
$f$;
-- The same, summed up per table.
CREATE FUNCTION upkeep(t regclass)
RETURNS TABLE (shards bigint, vacuumed bigint, analyzed bigint, all_estimates_exact boolean)
LANGUAGE sql AS $f$
  SELECT count(*), count(*) FILTER (WHERE vacuums > 0), count(*) FILTER (WHERE analyzes > 0),
         bool_and(estimate_is_exact)
  FROM shard_upkeep(t)
$f$;

CREATE TABLE readings (sensor_id bigint NOT NULL, taken_at int NOT NULL, value numeric);
SELECT pgshard.shard_table('readings', 'sensor_id', shard_count => 4);
INSERT INTO readings SELECT g % 37, g, g * 0.5 FROM generate_series(1, 2000) g;
CREATE TABLE units (unit_id int PRIMARY KEY, label text);
SELECT pgshard.reference_table('units');
INSERT INTO units VALUES (1, 'celsius'), (2, 'kelvin');
CREATE TABLE notes (id int, body text);
INSERT INTO notes VALUES (1, 'local');
SELECT * FROM upkeep('readings');

-- ANALYZE: every shard gathers statistics (a table this small is read whole, so the row
-- estimate is the exact count), and the shards are not vacuumed.
ANALYZE readings;
SELECT * FROM upkeep('readings');
SELECT count(*) AS shards_with_statistics FROM pgshard.shards s,
  LATERAL pgshard.run_command_on_workers(format(
    $$SELECT count(*) FROM pg_stats WHERE tablename = %L$$, split_part(s.shard_name, '.', 2))) w
  WHERE s.table_name = 'readings'::regclass AND w.worker = s.worker AND w.result::int = 3;

-- VACUUM, with options, a column list and a local table in the same statement.
VACUUM (VERBOSE false, ANALYZE, INDEX_CLEANUP auto, PARALLEL 1) readings (sensor_id, value), notes;
SELECT * FROM shard_upkeep('readings');
-- The old syntax, and a reference table: every copy.
VACUUM FREEZE ANALYZE units;
SELECT * FROM upkeep('units');

-- No table named: every distributed table's shards.
CREATE TABLE later (id bigint, note text);
SELECT pgshard.shard_table('later', 'id', shard_count => 2);
INSERT INTO later SELECT g, 'n' FROM generate_series(1, 50) g;
ANALYZE;
SELECT * FROM upkeep('later');
VACUUM;
SELECT * FROM upkeep('later');

-- VACUUM cannot run in a transaction block, and nothing reaches the shards.
BEGIN;
VACUUM readings;
ROLLBACK;
SELECT sum(vacuums) AS vacuums_so_far FROM shard_upkeep('readings');

-- ANALYZE in a transaction block runs in its distributed transaction: it reaches shards the
-- transaction itself created.
BEGIN;
CREATE TABLE fresh (id bigint, v int);
SELECT pgshard.shard_table('fresh', 'id', shard_count => 2);
INSERT INTO fresh SELECT g, g FROM generate_series(1, 100) g;
ANALYZE fresh (v);
COMMIT;
SELECT * FROM upkeep('fresh');
-- So does ANALYZE in a function, whose statement is one transaction.
CREATE FUNCTION make_and_analyze() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  CREATE TABLE fresher (id bigint, v int);
  PERFORM pgshard.shard_table('fresher', 'id', shard_count => 2);
  INSERT INTO fresher SELECT g, g FROM generate_series(1, 100) g;
  ANALYZE fresher;
END $$;
SELECT make_and_analyze();
SELECT * FROM upkeep('fresher');

-- ... and in the implicit transaction of a multi-statement query string.
CREATE TABLE implicit (id bigint, v int);
INSERT INTO implicit SELECT g, g FROM generate_series(1, 100) g;
SELECT pgshard.shard_table('implicit', 'id', shard_count => 2) \; ANALYZE implicit;
SELECT * FROM upkeep('implicit');
-- Statistics gathered in a transaction that rolls back are gone with it.
CREATE TABLE undone (id bigint, v int);
SELECT pgshard.shard_table('undone', 'id', shard_count => 2);
INSERT INTO undone SELECT g, g FROM generate_series(1, 100) g;
BEGIN;
ANALYZE undone;
ROLLBACK;
\set undone_statistics 'SELECT sum(w.result::int) AS statistics_rows FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(format($$SELECT count(*) FROM pg_stats WHERE tablename = %L$$, split_part(s.shard_name, $$.$$, 2))) w WHERE s.table_name = $$undone$$::regclass AND w.worker = s.worker'
:undone_statistics;
-- In a read-only transaction ANALYZE runs outside it (a read-only transaction could not
-- record the decision of a commit on two workers).
BEGIN READ ONLY;
ANALYZE undone;
COMMIT;
:undone_statistics;
SELECT * FROM upkeep('undone');

-- SKIP_LOCKED: with the table's lock held by another session, PostgreSQL skips the
-- coordinator's table and pgshard its shards, each with a warning.
CREATE EXTENSION dblink;
SELECT dblink_connect('holder', format('host=127.0.0.1 port=%s dbname=%s', current_setting('port'), current_database()));
SELECT dblink_exec('holder', 'BEGIN');
SELECT dblink_exec('holder', 'LOCK TABLE units IN SHARE UPDATE EXCLUSIVE MODE');
SELECT sum(vacuums) AS units_vacuums FROM shard_upkeep('units');
VACUUM (SKIP_LOCKED) units;
SELECT sum(vacuums) AS units_vacuums FROM shard_upkeep('units');
SELECT dblink_exec('holder', 'COMMIT');
VACUUM (SKIP_LOCKED) units;
SELECT sum(vacuums) AS units_vacuums FROM shard_upkeep('units');
SELECT dblink_disconnect('holder');
DROP EXTENSION dblink;

-- A role that may not vacuum the table: PostgreSQL skips it with a warning, and so do the
-- shards.
CREATE ROLE regress_upkeep;
GRANT SELECT ON readings TO regress_upkeep;
SET ROLE regress_upkeep;
VACUUM readings;
ANALYZE readings;
RESET ROLE;
SELECT sum(vacuums) AS vacuums_so_far, sum(analyzes) AS analyzes_so_far
FROM shard_upkeep('readings');

-- A missing table is PostgreSQL's error, before anything runs.
VACUUM readings, no_such_table;
SELECT sum(vacuums) AS vacuums_so_far FROM shard_upkeep('readings');

-- A shard the worker has lost: the error names the worker.
SELECT count(*) FROM pgshard.shards s,
  LATERAL pgshard.run_command_on_workers(format('ALTER TABLE %s RENAME TO lost_shard', s.shard_name)) w
  WHERE s.table_name = 'later'::regclass AND w.worker = s.worker AND w.success
    AND s.shard_id = (SELECT min(shard_id) FROM pgshard.shards WHERE table_name = 'later'::regclass);
\set VERBOSITY sqlstate
VACUUM later;
\set VERBOSITY default
SELECT regexp_replace(:'LAST_ERROR_MESSAGE', '_[0-9]+', '_N') AS error;
-- The other worker's shard was vacuumed: VACUUM is not transactional, here as in PostgreSQL.
SELECT count(*) FILTER (WHERE vacuums = 2) AS shards_vacuumed_again FROM shard_upkeep('later');
SELECT count(*) FROM pgshard.shards s,
  LATERAL pgshard.run_command_on_workers(format('ALTER TABLE lost_shard RENAME TO %s', split_part(s.shard_name, '.', 2))) w
  WHERE s.table_name = 'later'::regclass AND w.worker = s.worker AND w.success
    AND s.shard_id = (SELECT min(shard_id) FROM pgshard.shards WHERE table_name = 'later'::regclass);
VACUUM later;
SELECT worker, vacuums FROM shard_upkeep('later');

DROP TABLE readings, units, notes, later, fresh, fresher, implicit, undone;
DROP FUNCTION make_and_analyze();
DROP FUNCTION upkeep(regclass);
DROP FUNCTION shard_upkeep(regclass);
DROP ROLE regress_upkeep;
