--
-- COPY with sharded and reference tables: rows parsed and hashed on the coordinator, streamed
-- to their shards in batches; all or nothing; COPY TO reads through the shards.
--
SELECT setval('pgshard.shard_shard_id_seq', 800001, false);
CREATE TABLE events (id bigserial PRIMARY KEY, kind text NOT NULL, score int DEFAULT 7,
                     amount numeric(12,2), at timestamptz, tel pgshard.encrypted_text);
SELECT pgshard.shard_table('events', 'id', shard_count => 4);
-- Rows per shard on the workers themselves, and whether each matches pgshard.shard_for.
\set per_shard 'SELECT count(*) AS shards, sum(w.result::bigint) AS rows_on_workers, bool_and(w.result::bigint = (SELECT count(*) FROM events e, LATERAL pgshard.shard_for($$events$$, e.id) f WHERE f.shard_id = s.shard_id)) AS all_where_shard_for_says FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(format($$SELECT count(*) FROM %s$$, s.shard_name)) w WHERE s.table_name = $$events$$::regclass AND w.worker = s.worker'

-- Small COPYs from STDIN: defaults and sequences are filled in on the coordinator.
COPY events (kind, score, tel) FROM STDIN;
login	1	+1 555 0100
logout	\N	+1 555 0101
login	3	\N
\.
COPY events (id, kind, amount) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';', NULL 'none', FORCE_NULL (amount));
id;kind;amount
100;"a;b";none
101;x;"none"
102;y;12.5
\.
SELECT id, kind, score, amount, tel FROM events ORDER BY id;
-- WHERE filters the input rows.
COPY events (id, kind, score) FROM STDIN WHERE score > 5;
200	low	1
201	high	9
\.
SELECT id, kind, score FROM events WHERE id >= 200 ORDER BY id;
-- Bad input changes nothing: the error names the line, as PostgreSQL's COPY does.
COPY events (id, kind, score) FROM STDIN;
300	fine	1
301	bad	notanumber
\.
COPY events (id, kind) FROM STDIN (FORMAT csv);
400,fine
,no key
\.
COPY events (id, kind) FROM STDIN (FORMAT csv);
500,fine
501,
\.
SELECT count(*) FROM events;
:per_shard;

-- 100,000 rows in each format, from files the server writes first.
CREATE TABLE source AS
SELECT g AS id, CASE g % 3 WHEN 0 THEN 'view' WHEN 1 THEN 'click' ELSE 'vüe, "quoted"' END AS kind,
       g % 100 AS score, (g % 1000) / 4.0 AS amount,
       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute' AS at
FROM generate_series(1000, 100999) g;
COPY source TO '/tmp/pgshard_regress_copy.txt';
COPY (SELECT id + 100000, kind, score, amount, at FROM source) TO '/tmp/pgshard_regress_copy.csv' (FORMAT csv, HEADER true, DELIMITER '|');
COPY (SELECT (id + 200000)::bigint, kind, score, amount::numeric(12,2), at FROM source) TO '/tmp/pgshard_regress_copy.bin' (FORMAT binary);
COPY events (id, kind, score, amount, at) FROM '/tmp/pgshard_regress_copy.txt';
:per_shard;
COPY events (id, kind, score, amount, at) FROM '/tmp/pgshard_regress_copy.csv' (FORMAT csv, HEADER true, DELIMITER '|');
COPY events (id, kind, score, amount, at) FROM '/tmp/pgshard_regress_copy.bin' (FORMAT binary);
:per_shard;
SELECT count(*), count(DISTINCT id), sum(score), sum(amount), min(at), max(at) FROM events WHERE id >= 1000;
SELECT count(*) * 3, sum(score) * 3, sum(amount) * 3, min(at), max(at) FROM source;
SELECT kind, count(*) FROM events WHERE id >= 1000 GROUP BY kind ORDER BY kind;
-- Every column given, no WHERE, no CHECK: each row's fields go to its shard as the COPY reader
-- split them; only the shard key (and encrypted columns) are read on the coordinator. The
-- first full batch starts the workers loading while the rest is read.
SELECT last_value AS shard_seq_value, is_called AS shard_seq_called FROM pgshard.shard_shard_id_seq \gset
CREATE TABLE bulk (id bigint, kind text NOT NULL, score int, amount numeric(12,2), at timestamptz);
SELECT pgshard.shard_table('bulk', 'id', shard_count => 4);
\set bulk_per_shard 'SELECT count(*) AS shards, sum(w.result::bigint) AS rows_on_workers, bool_and(w.result::bigint = (SELECT count(*) FROM bulk b, LATERAL pgshard.shard_for($$bulk$$, b.id) f WHERE f.shard_id = s.shard_id)) AS all_where_shard_for_says FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(format($$SELECT count(*) FROM %s$$, s.shard_name)) w WHERE s.table_name = $$bulk$$::regclass AND w.worker = s.worker'
COPY bulk FROM '/tmp/pgshard_regress_copy.txt';
COPY bulk FROM '/tmp/pgshard_regress_copy.csv' (FORMAT csv, HEADER true, DELIMITER '|');
:bulk_per_shard;
SELECT count(*), count(DISTINCT id), sum(score), sum(amount), min(at), max(at),
       md5(string_agg(kind, ',' ORDER BY id)) = (SELECT md5(string_agg(kind, ',' ORDER BY id)) FROM (SELECT id, kind FROM source UNION ALL SELECT id + 100000, kind FROM source) s) AS same_kinds
FROM bulk;
SELECT count(*) * 2, sum(score) * 2, sum(amount) * 2 FROM source;
-- A bad value near the end, read while the workers load: the worker's error names the input
-- line, and nothing is copied.
COPY (SELECT id + 300000, kind, CASE WHEN id = 99990 THEN 'ninety' ELSE score::text END, amount, at FROM source)
    TO '/tmp/pgshard_regress_copy_late.txt';
COPY bulk FROM '/tmp/pgshard_regress_copy_late.txt';
-- A bad shard key there is the coordinator's error, with COPY's own context.
COPY (SELECT CASE WHEN id = 99990 THEN 'key' ELSE (id + 300000)::text END, kind, score, amount, at FROM source)
    TO '/tmp/pgshard_regress_copy_late.txt';
COPY bulk FROM '/tmp/pgshard_regress_copy_late.txt';
-- A NULL in a NOT NULL column or the key gets the error a local COPY gives; so do a missing
-- and an extra field.
COPY bulk FROM STDIN;
1	a	1	1	2026-01-01
2	\N	1	1	2026-01-01
\.
COPY bulk FROM STDIN (FORMAT csv, HEADER);
id,kind,score,amount,at
1,"two
lines",1,1,2026-01-01
,a,1,1,2026-01-01
\.
COPY bulk FROM STDIN;
1	a	1
\.
COPY bulk FROM STDIN;
1	a	1	1	2026-01-01	extra
\.
-- Cancelled while the workers load (the timeout ends it wherever it is): nothing is copied,
-- and the session goes on.
COPY (SELECT id + 300000 + 100000 * k, kind, score, amount, at FROM source, generate_series(0, 4) k)
    TO '/tmp/pgshard_regress_copy_late.txt';
SET statement_timeout = '150ms';
COPY bulk FROM '/tmp/pgshard_regress_copy_late.txt';
RESET statement_timeout;
:bulk_per_shard;
COPY bulk FROM STDIN;
900001	tab\there	1	1.5	2026-01-01 00:00:00+00
900002	back\\slash	\N	\N	\N
\.
SELECT id, kind, score, amount FROM bulk WHERE id > 900000 ORDER BY id;
-- Encrypted columns are encrypted on the way here too: the workers get envelopes.
CREATE TABLE bulk_tel (id int, tel pgshard.encrypted_text);
SELECT pgshard.shard_table('bulk_tel', 'id', shard_count => 2);
COPY bulk_tel FROM STDIN (FORMAT csv);
1,+1 555 0199
2,
3,"+1 555 0199"
\.
SELECT sum(w.result::int) AS rows_with_plaintext_on_workers, count(*) AS shards
FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(format(
    $$SELECT count(*) FROM %s WHERE position(convert_to('555 0199', 'UTF8') IN tel) > 0$$, s.shard_name)) w
WHERE s.table_name = 'bulk_tel'::regclass AND w.worker = s.worker;
SELECT id, tel FROM bulk_tel WHERE tel = '+1 555 0199' ORDER BY id;
SELECT id, tel IS NULL AS tel_is_null FROM bulk_tel ORDER BY id;
DROP TABLE bulk_tel;
DROP TABLE bulk;
-- (The shard ids the suites below print stay as they were.)
SELECT setval('pgshard.shard_shard_id_seq', :shard_seq_value, :'shard_seq_called') AS shard_seq_value \gset

-- A bad value at input line 50,000 of 100,000: nothing is copied to any shard.
COPY (SELECT id + 300000, kind, CASE WHEN id = 50999 THEN 'fifty thousand' ELSE score::text END, amount, at FROM source)
    TO '/tmp/pgshard_regress_copy_bad.txt';
COPY events (id, kind, score, amount, at) FROM '/tmp/pgshard_regress_copy_bad.txt';
:per_shard;
-- ... also when the failure comes from a worker (here a CHECK constraint added to the shards).
\c pgshard - 127.0.0.1 :worker_1_port
DO $$ DECLARE t text; BEGIN
  FOR t IN SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE tablename LIKE 'events\_8%' LOOP
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT score_small CHECK (score < 1000)', t);
  END LOOP; END $$;
\c pgshard - 127.0.0.1 :worker_2_port
DO $$ DECLARE t text; BEGIN
  FOR t IN SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE tablename LIKE 'events\_8%' LOOP
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT score_small CHECK (score < 1000)', t);
  END LOOP; END $$;
\c pgshard - 127.0.0.1 :coordinator_port
COPY (SELECT id + 400000, kind, CASE WHEN id = 99000 THEN 5000 ELSE score END, amount, at FROM source)
    TO '/tmp/pgshard_regress_copy_bad.txt';
\set VERBOSITY terse
COPY events (id, kind, score, amount, at) FROM '/tmp/pgshard_regress_copy_bad.txt';
\set VERBOSITY default
:per_shard;
-- The table's own CHECK and NOT NULL constraints are checked on the coordinator as well, so
-- the error names the input line, as COPY into a local table does.
ALTER TABLE events ADD CONSTRAINT kind_known CHECK (kind <> 'forbidden');
COPY events (id, kind, score) FROM STDIN;
500001	fine	1
500002	forbidden	2
\.
COPY events (id, kind, score) FROM STDIN;
500003	fine	3
500004	\N	4
\.
ALTER TABLE events DROP CONSTRAINT kind_known;
SELECT count(*) AS copied_after_constraint_errors FROM events WHERE id > 500000;

-- Encrypted columns are encrypted on the way: workers hold envelopes.
SELECT sum(w.result::int) AS rows_with_plaintext_on_workers
FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(format(
    $$SELECT count(*) FROM %s WHERE position(convert_to('+1 555 0100', 'UTF8') IN tel) > 0$$, s.shard_name)) w
WHERE s.table_name = 'events'::regclass AND w.worker = s.worker;
SELECT id, tel FROM events WHERE tel = '+1 555 0100';

-- COPY TO reads through the shards: the table, a column list, a query.
COPY (SELECT * FROM events WHERE id < 300 ORDER BY id) TO STDOUT;
COPY (SELECT id, tel FROM events WHERE id < 300 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true);
COPY events TO '/tmp/pgshard_regress_copy_out.txt';
CREATE TEMP TABLE back (LIKE events);
ALTER TABLE back ALTER COLUMN tel TYPE text;
COPY back FROM '/tmp/pgshard_regress_copy_out.txt';
SELECT count(*), sum(score), count(tel) FROM back;

-- Reference tables: every copy gets every row.
CREATE TABLE kinds (kind text PRIMARY KEY, label text);
SELECT pgshard.reference_table('kinds');
COPY kinds FROM STDIN (FORMAT csv);
view,Page view
click,Click
"vüe, ""quoted""",Odd
\.
SELECT w.worker, w.result AS rows FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(format($$SELECT count(*) FROM %s$$, s.shard_name)) w
WHERE s.table_name = 'kinds'::regclass AND w.worker = s.worker ORDER BY 1;
SELECT k.label, count(*) FROM events e JOIN kinds k USING (kind) GROUP BY 1 ORDER BY 1;
COPY kinds TO STDOUT;
COPY kinds (label) TO STDOUT (FORMAT csv);

-- A column the table does not have is refused before any row is read.
COPY events (id, no_such_column) FROM '/tmp/pgshard_regress_copy.txt';

-- Rights: INSERT on the table for COPY FROM STDIN, and the server-file roles for files.
CREATE ROLE regress_copier;
GRANT SELECT ON events TO regress_copier;
SET ROLE regress_copier;
SELECT count(*) FROM events WHERE id < 300;
COPY events (id, kind) FROM STDIN;
900001	refused
\.
COPY events (id, kind) FROM '/tmp/pgshard_regress_copy.txt';
RESET ROLE;
GRANT INSERT ON events TO regress_copier;
GRANT USAGE ON SEQUENCE events_id_seq TO regress_copier;
SET ROLE regress_copier;
COPY events (id, kind) FROM STDIN;
900000	by copier
\.
RESET ROLE;
SELECT id, kind FROM events WHERE id = 900000;

\! rm -f /tmp/pgshard_regress_copy_late.txt /tmp/pgshard_regress_copy.txt /tmp/pgshard_regress_copy.csv /tmp/pgshard_regress_copy.bin /tmp/pgshard_regress_copy_bad.txt /tmp/pgshard_regress_copy_out.txt
SELECT pgshard.unshard_table('kinds');
SELECT pgshard.unshard_table('events');
DROP TABLE events, kinds, source;
DROP ROLE regress_copier;
