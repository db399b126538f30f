--
-- Remote queries that take values computed when the statement runs (parameters, now()) are
-- prepared once per worker connection and then sent as EXECUTE: the worker skips their parse
-- and plan. run_command_on_workers uses this session's own (idle) worker connections, so it
-- sees their prepared statements; it ends with DISCARD ALL, which deallocates them.
--
SELECT setval('pgshard.shard_shard_id_seq', 900001, false);
\set statements 'SELECT worker, result AS prepared FROM pgshard.run_command_on_workers($$SELECT count(*) FROM pg_prepared_statements WHERE name ~ ''^pgshard_''$$) ORDER BY 1'
CREATE TABLE acct (id int PRIMARY KEY, owner text, balance numeric, opened date);
CREATE TABLE acct_local (id int PRIMARY KEY, owner text, balance numeric, opened date);
INSERT INTO acct SELECT g, 'owner ' || g, g * 10, date '2026-01-01' + g FROM generate_series(1, 100) g;
INSERT INTO acct_local SELECT * FROM acct;
SELECT pgshard.shard_table('acct', 'id', shard_count => 4);
:statements;

-- A generic plan on the coordinator has the parameter as a value hole: prepared on the worker.
SET plan_cache_mode = force_generic_plan;
PREPARE by_id(int) AS SELECT owner, balance FROM acct WHERE id = $1;
PREPARE by_id_local(int) AS SELECT owner, balance FROM acct_local WHERE id = $1;
EXPLAIN (COSTS OFF, VERBOSE) EXECUTE by_id(7);
EXECUTE by_id(7);
EXECUTE by_id(7);
EXECUTE by_id(8);
-- One statement per shard queried (ids 7 and 8 are on two shards here).
:statements;
-- The same answers as the local table, for every id and one that is not there.
DO $$
DECLARE a record; b record; bad int := 0;
BEGIN
    FOR i IN 0..101 LOOP
        EXECUTE format('EXECUTE by_id(%s)', i) INTO a;
        EXECUTE format('EXECUTE by_id_local(%s)', i) INTO b;
        IF a IS DISTINCT FROM b THEN bad := bad + 1; END IF;
    END LOOP;
    RAISE NOTICE 'mismatches: %', bad;
END $$;
:statements;
-- DISCARD ALL (at the end of run_command_on_workers) removed them; they are prepared again.
EXECUTE by_id(7);
:statements;

-- A column's type changes: the workers' statements are prepared anew. The coordinator's
-- statement keeps its result type (text), but the worker's (which selects the column) does
-- not: executing the old one would fail with "cached plan must not change result type".
PREPARE balance_text(int) AS SELECT balance::text FROM acct WHERE id = $1;
EXECUTE balance_text(9);
EXECUTE balance_text(9);
ALTER TABLE acct ALTER COLUMN balance TYPE float8;
EXECUTE balance_text(9);
EXECUTE balance_text(9);
ALTER TABLE acct ALTER COLUMN balance TYPE numeric(10, 2);
EXECUTE balance_text(9);

-- An error on the worker while executing leaves the statement usable, in and out of
-- transaction blocks.
PREPARE ratio(numeric) AS SELECT count(*) FROM acct WHERE id = 10 AND balance::numeric / $1 > 30;
EXECUTE ratio(0);
EXECUTE ratio(2);
EXECUTE ratio(0);
BEGIN;
EXECUTE ratio(4);
EXECUTE ratio(0);
ROLLBACK;
BEGIN;
EXECUTE ratio(3);
UPDATE acct SET balance = balance + 1 WHERE id = 9;
EXECUTE balance_text(9);
ROLLBACK;
EXECUTE balance_text(9);
EXECUTE ratio(3);

-- Values of other expressions evaluated on the coordinator are parameters too.
RESET plan_cache_mode;
SELECT count(*) FROM acct WHERE opened < now()::date + 1;
SELECT count(*) FROM acct WHERE opened < now()::date + 1;
SELECT count(*) FROM acct WHERE id = ANY (array[1, 2, 3, 4, 5]::int[] || length(current_user) * 0 + 6);
SELECT count(*) FROM acct WHERE owner = 'owner ' || (2 + 3)::text;

-- pgshard.prepare_on_workers = off sends the values as literals.
:statements;
SET pgshard.prepare_on_workers = off;
SET plan_cache_mode = force_generic_plan;
EXECUTE balance_text(7);
EXECUTE balance_text(8);
:statements;
RESET pgshard.prepare_on_workers;
EXECUTE balance_text(7);
:statements;

-- Many different statements: a connection keeps at most 256, then deallocates them all and
-- starts over (300 different queries with a value hole, on one shard, leave 300 - 256 on its
-- worker).
DO $$
DECLARE n bigint; total bigint := 0;
BEGIN
    FOR i IN 1..300 LOOP
        EXECUTE format('SELECT count(*) FROM acct WHERE id = 5 AND balance > -%s AND opened < now()::date + 1', i) INTO n;
        total := total + n;
    END LOOP;
    RAISE NOTICE 'rows: %', total;
END $$;
:statements;

-- Writes: UPDATE and DELETE that take values, and every single-row INSERT (its row is the
-- statement's parameters, typed by the worker from its columns), against the same writes on
-- the local table.
:statements;
PREPARE add_to(int, numeric) AS UPDATE acct SET balance = balance + $2 WHERE id = $1;
PREPARE add_to_local(int, numeric) AS UPDATE acct_local SET balance = balance + $2 WHERE id = $1;
PREPARE close_acct(int) AS DELETE FROM acct WHERE id = $1 RETURNING id, owner;
PREPARE close_acct_local(int) AS DELETE FROM acct_local WHERE id = $1 RETURNING id, owner;
PREPARE open_acct(int, text) AS INSERT INTO acct (id, owner, balance, opened) VALUES ($1, $2, 0, date '2026-06-01')
    ON CONFLICT (id) DO UPDATE SET owner = acct.owner || '+' RETURNING id, owner;
PREPARE open_acct_local(int, text) AS INSERT INTO acct_local (id, owner, balance, opened) VALUES ($1, $2, 0, date '2026-06-01')
    ON CONFLICT (id) DO UPDATE SET owner = acct_local.owner || '+' RETURNING id, owner;
EXECUTE add_to(10, 5);
EXECUTE add_to_local(10, 5);
EXECUTE open_acct(10, 'dup');
EXECUTE open_acct_local(10, 'dup');
EXECUTE open_acct(101, 'o''neil');
EXECUTE open_acct_local(101, 'o''neil');
EXECUTE close_acct(101);
EXECUTE close_acct_local(101);
INSERT INTO acct VALUES (102, E'tab\there', NULL, NULL);
INSERT INTO acct_local VALUES (102, E'tab\there', NULL, NULL);
:statements;
DO $$
DECLARE a text; b text;
BEGIN
    FOR i IN 1..120 LOOP
        EXECUTE format('EXECUTE add_to(%s, %s)', i, i % 7);
        EXECUTE format('EXECUTE add_to_local(%s, %s)', i, i % 7);
        IF i % 3 = 0 THEN
            EXECUTE format('EXECUTE close_acct(%s)', i) INTO a;
            EXECUTE format('EXECUTE close_acct_local(%s)', i) INTO b;
            IF a IS DISTINCT FROM b THEN RAISE NOTICE 'delete % returned % and %', i, a, b; END IF;
        END IF;
        IF i % 5 = 0 THEN
            EXECUTE format('EXECUTE open_acct(%s, %L)', i + 200, 'opened ' || i) INTO a;
            EXECUTE format('EXECUTE open_acct_local(%s, %L)', i + 200, 'opened ' || i) INTO b;
            IF a IS DISTINCT FROM b THEN RAISE NOTICE 'insert % returned % and %', i, a, b; END IF;
        END IF;
        INSERT INTO acct (id, owner) VALUES (i + 1000, 'plain ' || i);
        INSERT INTO acct_local (id, owner) VALUES (i + 1000, 'plain ' || i);
    END LOOP;
END $$;
SELECT (SELECT count(*) FROM acct) AS sharded_rows,
       (SELECT count(*) FROM (SELECT * FROM acct EXCEPT SELECT * FROM acct_local) d) AS only_sharded,
       (SELECT count(*) FROM (SELECT * FROM acct_local EXCEPT SELECT * FROM acct) d) AS only_local;
-- A write that fails on the worker: the statement stays usable, nothing half-done.
EXECUTE open_acct(NULL, 'no key');
INSERT INTO acct (id, owner, balance) VALUES (104, 'first', 1);
INSERT INTO acct (id, owner, balance) VALUES (104, 'again', 2);
BEGIN;
INSERT INTO acct (id, owner, balance) VALUES (105, 'in block', 3);
INSERT INTO acct (id, owner, balance) VALUES (104, 'again', 2);
ROLLBACK;
INSERT INTO acct (id, owner, balance) VALUES (105, 'after', 4);
SELECT id, owner, balance FROM acct WHERE id IN (104, 105) ORDER BY id;
-- A parameter of another array type than the column's (an array coercion, computed on the
-- coordinator as a whole): the shards are pruned and the value is written.
ALTER TABLE acct ADD COLUMN tags bigint[];
PREPARE set_tags(int, int[]) AS UPDATE acct SET tags = $2 WHERE id = $1;
EXECUTE set_tags(4, ARRAY[1, 2]);
PREPARE by_ids(int[]) AS SELECT id, tags FROM acct WHERE id = ANY ($1::bigint[]) ORDER BY id;
EXPLAIN (COSTS OFF) EXECUTE by_ids(ARRAY[4, 5]);
EXECUTE by_ids(ARRAY[4, 5]);
RESET plan_cache_mode;
DEALLOCATE ALL;
DROP TABLE acct, acct_local;
