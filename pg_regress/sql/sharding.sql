--
-- shard_table: metadata, shard tables on the workers, rows moved, and errors that leave
-- everything as it was.
--
\set shard_tables 'SELECT w.worker, w.result FROM pgshard.run_command_on_workers($$SELECT coalesce(string_agg(relname, '','' ORDER BY relname), ''none'') FROM pg_class WHERE relkind = ''r'' AND relname ~ ''^(t_user|t_order|bad|part|tmp)_[0-9]+$''$$) w ORDER BY 1'
CREATE TABLE t_user (user_id bigint PRIMARY KEY, name text NOT NULL CHECK (name <> ''), tel text, joined date DEFAULT current_date);
CREATE INDEX t_user_name_idx ON t_user (lower(name)) WHERE tel IS NOT NULL;
INSERT INTO t_user SELECT g, 'user ' || g, CASE WHEN g % 4 = 0 THEN NULL ELSE '+1-555-' || g END, date '2024-01-01' + g
FROM generate_series(1, 200) g;

-- Errors, each leaving no metadata and no shard table behind.
SELECT pgshard.shard_table('t_user', 'nope');
SELECT pgshard.shard_table('t_user', 'user_id', shard_count => 0);
SELECT pgshard.shard_table('t_user', 'user_id', colocate_with => 'pg_class');
CREATE TABLE bad (id float8 PRIMARY KEY);
SELECT pgshard.shard_table('bad', 'id');
DROP TABLE bad;
CREATE TABLE bad (id int, other int PRIMARY KEY);
SELECT pgshard.shard_table('bad', 'id');
DROP TABLE bad;
CREATE TABLE bad (id int, other int UNIQUE);
SELECT pgshard.shard_table('bad', 'id');
DROP TABLE bad;
CREATE TABLE bad (id int, note text);
INSERT INTO bad VALUES (1, 'a'), (NULL, 'b');
SELECT pgshard.shard_table('bad', 'id');
DROP TABLE bad;
CREATE TABLE part (id int) PARTITION BY HASH (id);
SELECT pgshard.shard_table('part', 'id');
DROP TABLE part;
CREATE TEMP TABLE tmp (id int);
SELECT pgshard.shard_table('tmp', 'id');
CREATE TABLE bad (id int PRIMARY KEY);
CREATE TABLE bad_child (id int REFERENCES bad);
SELECT pgshard.shard_table('bad', 'id');
DROP TABLE bad_child, bad;
CREATE ROLE regress_not_owner;
GRANT USAGE ON SCHEMA pgshard TO regress_not_owner;
SET ROLE regress_not_owner;
SELECT pgshard.shard_table('t_user', 'user_id');
RESET ROLE;
REVOKE USAGE ON SCHEMA pgshard FROM regress_not_owner;
DROP ROLE regress_not_owner;
BEGIN;
DELETE FROM pgshard.worker;
SELECT pgshard.shard_table('t_user', 'user_id');
ROLLBACK;
-- A failure on a worker (the shard table's name is taken there) also leaves nothing behind.
SELECT success FROM pgshard.run_command_on_workers('CREATE TABLE public.t_user_100001 (x int)');
SELECT pgshard.shard_table('t_user', 'user_id', shard_count => 4);
SELECT success FROM pgshard.run_command_on_workers('DROP TABLE IF EXISTS public.t_user_100001');
SELECT count(*) AS metadata_rows FROM pgshard.sharded_table;
:shard_tables;
SELECT count(*) FROM t_user;

-- Success.
SELECT setval('pgshard.shard_shard_id_seq', 100001, false);
SELECT pgshard.shard_table('t_user', 'user_id', shard_count => 4);
SELECT pgshard.shard_table('t_user', 'user_id');
SELECT * FROM pgshard.tables;
SELECT shard_id, table_name, hash_min, hash_max, worker, shard_name, bytes > 0 AS has_bytes FROM pgshard.shards;
\d t_user
SELECT count(*) AS local_rows FROM ONLY t_user WHERE false;
SELECT relpages = 0 AND pg_relation_size('t_user') = 0 AS coordinator_table_empty FROM pg_class WHERE relname = 't_user';
:shard_tables;
SELECT worker, result FROM pgshard.run_command_on_workers($$SELECT string_agg(indexdef, E'\n' ORDER BY indexdef) FROM pg_indexes WHERE tablename = 't_user_100001' OR tablename = 't_user_100002'$$) ORDER BY 1;
SELECT worker, result FROM pgshard.run_command_on_workers($$SELECT string_agg(conname || ': ' || pg_get_constraintdef(oid), E'\n' ORDER BY conname) FROM pg_constraint WHERE conrelid::regclass::text IN ('t_user_100001', 't_user_100002')$$) ORDER BY 1;
-- Physical check: read every shard table's keys on its worker; each key must be on the shard
-- that shard_for names, and every row must be somewhere.
SELECT s.shard_id, s.worker, count(*) AS keys,
       count(*) FILTER (WHERE (SELECT f.shard_id FROM pgshard.shard_for('t_user', k::bigint) f) <> s.shard_id) AS misplaced
FROM pgshard.shards s,
LATERAL pgshard.run_command_on_workers(format('SELECT string_agg(user_id::text, '','') FROM %s', s.shard_name)) w,
LATERAL unnest(string_to_array(w.result, ',')) k
WHERE s.table_name = 't_user'::regclass AND w.worker = s.worker
GROUP BY 1, 2 ORDER BY 1;
SELECT * FROM pgshard.shard_for('t_user', 1);
SELECT * FROM pgshard.shard_for('t_user', 1::int2);
SELECT * FROM pgshard.shard_for('t_user', 'one'::text);
SELECT * FROM pgshard.shard_for('pg_class', 1);

-- Co-location.
CREATE TABLE t_order (order_id bigint, user_id int NOT NULL, total numeric, PRIMARY KEY (user_id, order_id));
SELECT pgshard.shard_table('t_order', 'user_id', colocate_with => 't_user');
SELECT table_name, shard_count, colocation_id FROM pgshard.tables ORDER BY 1;
SELECT a.hash_min = b.hash_min AND a.worker = b.worker AS same_place, count(*)
FROM pgshard.shards a JOIN pgshard.shards b ON a.hash_min = b.hash_min
WHERE a.table_name = 't_user'::regclass AND b.table_name = 't_order'::regclass GROUP BY 1;
CREATE TABLE bad (id text PRIMARY KEY);
SELECT pgshard.shard_table('bad', 'id', colocate_with => 't_user');
SELECT pgshard.shard_table('bad', 'id', shard_count => 3, colocate_with => 't_order');
DROP TABLE bad;

-- unshard_table brings the rows home and drops the shards.
SELECT pgshard.unshard_table('t_order');
SELECT pgshard.unshard_table('t_order');
SELECT pgshard.unshard_table('t_user');
SELECT count(*), sum(user_id), count(tel), min(joined), max(joined) FROM t_user;
SELECT * FROM pgshard.tables;
:shard_tables;
DROP TABLE t_user, t_order;

-- Domain columns: the shards hold the base type (arrays of a domain, the base type's array),
-- and the coordinator checks the domain's constraints before any value leaves, on every path.
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN code AS varchar(5) CHECK (VALUE ~ '^[A-Z]+$');
CREATE TABLE tagged (id int PRIMARY KEY, p posint, ps posint[], c code, cs code[]);
SELECT pgshard.shard_table('tagged', 'id', shard_count => 2);
SELECT w.worker, w.result FROM pgshard.run_command_on_workers($$SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = (SELECT oid FROM pg_class WHERE relname ~ '^tagged_' LIMIT 1) AND attnum > 0$$) w ORDER BY 1;
INSERT INTO tagged VALUES (1, 1, '{1,2}', 'AB', '{X,Y}');
INSERT INTO tagged VALUES (2, -1, '{1}', 'AB', NULL);
INSERT INTO tagged VALUES (2, 1, '{-1}', 'AB', NULL);
INSERT INTO tagged VALUES (2, 1, '{1}', 'ab', NULL);
INSERT INTO tagged VALUES (2, 1, '{1}', 'AB', '{x}');
INSERT INTO tagged VALUES (2, 1, '{1}', 'ABCDEF', NULL);
INSERT INTO tagged VALUES (3, 3, '{3}', 'C', '{C}'), (4, 4, '{4,4}', 'D', '{D}');
INSERT INTO tagged VALUES (5, 5, '{5}', 'E', '{E}'), (6, -6, '{6}', 'F', '{F}');
UPDATE tagged SET ps = '{-5}' WHERE id = 1;
UPDATE tagged SET p = 7, ps = ARRAY[7, 8]::posint[] WHERE id = 1;
-- A domain value computed from columns would need the domain's check on the worker: refused.
UPDATE tagged SET p = p - 100 WHERE id = 1;
PREPARE set_p(int, int) AS UPDATE tagged SET p = $2 WHERE id = $1;
EXECUTE set_p(3, 30); EXECUTE set_p(3, 31); EXECUTE set_p(3, 32); EXECUTE set_p(3, 33); EXECUTE set_p(3, 34); EXECUTE set_p(3, 35);
EXECUTE set_p(3, -1);
PREPARE add_p(int, int) AS INSERT INTO tagged (id, p) VALUES ($1, $2);
EXECUTE add_p(10, 1); EXECUTE add_p(11, 1); EXECUTE add_p(12, 1); EXECUTE add_p(13, 1); EXECUTE add_p(14, 1); EXECUTE add_p(15, 1);
EXECUTE add_p(16, -1);
COPY tagged FROM STDIN;
20	1	{-7}	A	\N
\.
COPY tagged FROM STDIN (FORMAT csv);
21,1,"{1}",A,"{a}"
\.
COPY tagged FROM STDIN (FORMAT csv);
22,1,"{1}",A,"{B}"
\.
ALTER TABLE tagged ADD COLUMN extra posint;
UPDATE tagged SET extra = 9 WHERE id = 22;
UPDATE tagged SET extra = 0 WHERE id = 22;
SELECT * FROM tagged WHERE c = 'C' OR p > 5 OR extra IS NOT NULL ORDER BY id;
SELECT count(*), sum(p) FROM tagged;
-- A NOT NULL domain refuses NULL on COPY's raw-field path too, and as a new column of a table
-- whose rows are on the shards. PostgreSQL computes a domain column's default row by row, so
-- with rows on the shards it is refused like other such defaults.
CREATE DOMAIN required AS int NOT NULL;
CREATE TABLE needs (id int PRIMARY KEY, r required);
SELECT pgshard.shard_table('needs', 'id', shard_count => 2);
COPY needs FROM STDIN;
1	\N
\.
SELECT count(*) FROM needs;
ALTER TABLE tagged ADD COLUMN must required;
ALTER TABLE tagged ADD COLUMN must required DEFAULT 4;
-- The rows on the shards cannot be checked against a new domain constraint: refused while a
-- sharded table uses the domain, as is DROP DOMAIN … CASCADE (it would drop their columns on
-- the coordinator only). Dropping a constraint is fine.
ALTER DOMAIN posint ADD CONSTRAINT small CHECK (VALUE < 1000);
ALTER DOMAIN code SET NOT NULL;
ALTER DOMAIN posint DROP CONSTRAINT posint_check;
DROP DOMAIN code CASCADE;
DROP TYPE code CASCADE;
-- Also through a domain over the domain, and a schema dropped with a domain another schema's
-- sharded table uses.
CREATE SCHEMA dom_lib;
CREATE DOMAIN dom_lib.pct AS int CHECK (VALUE BETWEEN 0 AND 100);
CREATE DOMAIN half_pct AS dom_lib.pct CHECK (VALUE <= 50);
CREATE TABLE scored (id int PRIMARY KEY, score half_pct);
SELECT pgshard.shard_table('scored', 'id', shard_count => 2);
ALTER DOMAIN dom_lib.pct SET NOT NULL;
DROP SCHEMA dom_lib CASCADE;
DROP TABLE scored;
DROP SCHEMA dom_lib CASCADE;
-- A domain's collation is the shard column's.
CREATE DOMAIN c_text AS text COLLATE "C";
CREATE TABLE sorted (id int PRIMARY KEY, s c_text);
SELECT pgshard.shard_table('sorted', 'id', shard_count => 2);
SELECT w.worker, w.result FROM pgshard.run_command_on_workers($$SELECT string_agg(a.attname || ' ' || coalesce(c.collname, '-'), ', ' ORDER BY attnum) FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation WHERE attrelid = (SELECT oid FROM pg_class WHERE relname ~ '^sorted_' LIMIT 1) AND attnum > 0$$) w ORDER BY 1;
INSERT INTO sorted VALUES (1, 'a'), (2, 'B'), (3, 'b'), (4, 'A');
SELECT s FROM sorted ORDER BY s LIMIT 2;
SELECT min(s), max(s) FROM sorted WHERE s < 'a';
DROP TABLE needs, sorted;
DROP DOMAIN required, c_text CASCADE;
-- Enums, composite and range types created on the coordinator do not exist on the workers
-- (built-in ones do).
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE TABLE moods (id int PRIMARY KEY, m mood[]);
SELECT pgshard.shard_table('moods', 'id');
CREATE TYPE pair AS (a int, b int);
CREATE TABLE pairs (id int PRIMARY KEY, p pair);
SELECT pgshard.shard_table('pairs', 'id');
CREATE TABLE points (id int PRIMARY KEY, at point, span int4range);
SELECT pgshard.shard_table('points', 'id', shard_count => 2);
DROP TABLE tagged, moods, pairs, points;
DROP TYPE mood, pair;
DROP DOMAIN posint, code;

-- What pgshard reads and writes as superuser on behalf of a role ignores the role's search
-- path: a function of the role's placed first is not what runs (it would run as superuser).
CREATE ROLE regress_mallory;
CREATE SCHEMA mallory_tools AUTHORIZATION regress_mallory;
GRANT CREATE, USAGE ON SCHEMA public TO regress_mallory;
SET ROLE regress_mallory;
CREATE FUNCTION mallory_tools.generate_series(int, int) RETURNS SETOF int LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'mallory''s generate_series runs as %', current_user;
    RETURN QUERY SELECT * FROM pg_catalog.generate_series($1, $2);
END $$;
CREATE TABLE public.mallory_rows (id int PRIMARY KEY);
SET search_path = mallory_tools, pg_catalog, public;
SELECT pgshard.shard_table('public.mallory_rows', 'id', shard_count => 2);
RESET search_path;
SELECT table_name, shard_count FROM pgshard.tables WHERE table_name::text = 'mallory_rows';
DROP TABLE public.mallory_rows;
RESET ROLE;
DROP SCHEMA mallory_tools CASCADE;
REVOKE CREATE, USAGE ON SCHEMA public FROM regress_mallory;
DROP ROLE regress_mallory;
