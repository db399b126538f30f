--
-- Distributed transactions: rollback, errors, savepoints, two-phase commit (decided by the last
-- worker, or by commit records on the coordinator), recovery after faults, a worker killed
-- mid-transaction, remote lock waits and timeouts.
--
SELECT setval('pgshard.shard_shard_id_seq', 400001, false);
CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0));
SELECT pgshard.shard_table('acct', 'id', shard_count => 4);
INSERT INTO acct SELECT g, 100 FROM generate_series(1, 8) g;
-- Earlier suites left commit records (the background recovery cleans them every minute).
SELECT count(*) >= 0 AS recovered FROM pgshard.recover_transactions();
SELECT count(*) AS commit_records FROM pgshard.commit_record;
SELECT id, (SELECT worker FROM pgshard.shard_for('acct', id)) AS worker FROM generate_series(1, 8) id ORDER BY 1;
-- Sums read on the workers themselves, and the prepared transactions left there.
\set per_worker 'SELECT s.worker, sum(w.result::int) AS balance FROM pgshard.shards s, LATERAL pgshard.run_command_on_workers(format($$SELECT coalesce(sum(balance), 0) FROM %s$$, s.shard_name)) w WHERE s.table_name = $$acct$$::regclass AND w.worker = s.worker GROUP BY 1 ORDER BY 1'
\set prepared 'SELECT worker, result AS prepared FROM pgshard.run_command_on_workers($$SELECT count(*) FROM pg_prepared_xacts WHERE left(gid, 8) = $q$pgshard_$q$ AND true$$) ORDER BY 1'
\set decisions 'SELECT worker, result AS decisions FROM pgshard.run_command_on_workers($$SELECT count(*) FROM pgshard.commit_decision$$) ORDER BY 1'
:per_worker;

-- ROLLBACK of writes on both workers undoes them everywhere.
BEGIN;
UPDATE acct SET balance = balance + 1;
UPDATE acct SET balance = balance - 50 WHERE id IN (1, 2);
SELECT sum(balance) FROM acct;
ROLLBACK;
:per_worker;
-- An error on one shard aborts the statement on every shard (id 3 would go negative).
UPDATE acct SET balance = 40 WHERE id = 3;
UPDATE acct SET balance = balance - 50;
:per_worker;
BEGIN;
UPDATE acct SET balance = balance + 5 WHERE id = 1;
UPDATE acct SET balance = balance + 5 WHERE id = 2;
UPDATE acct SET balance = balance - 500 WHERE id = 4;
COMMIT;
:per_worker;

-- A transaction that wrote on both workers commits with two-phase commit: PREPARE on w2 (id 1),
-- then w1 (id 3, the last writer) commits in one phase with the decision row in its own
-- transaction; no commit record on the coordinator. Recovery cleans the decision up.
:decisions;
BEGIN;
UPDATE acct SET balance = balance + 10 WHERE id = 1;
UPDATE acct SET balance = balance + 10 WHERE id = 3;
COMMIT;
SELECT count(*) AS commit_records FROM pgshard.commit_record;
:decisions;
:prepared;
SELECT * FROM pgshard.recover_transactions();
:decisions;
-- A decision row can only be written as oneself.
SELECT worker, result FROM pgshard.run_command_on_workers($$CREATE ROLE regress_forger$$) ORDER BY 1;
SELECT success, result FROM pgshard.run_command_on_workers($$BEGIN; SET LOCAL ROLE regress_forger; INSERT INTO pgshard.commit_decision VALUES ('pgshard_1_2_v3.4.5.6_7_8', true, 'postgres'); COMMIT$$) WHERE worker = 'w1';
-- The deciding worker refuses its decision (an error there): nothing commits anywhere, and the
-- transaction prepared on w2 is rolled back at once.
SELECT success FROM pgshard.run_command_on_workers($$CREATE FUNCTION public.regress_refuse() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RAISE EXCEPTION ''decisions refused''; END'; CREATE TRIGGER refuse BEFORE INSERT ON pgshard.commit_decision FOR EACH ROW EXECUTE FUNCTION public.regress_refuse()$$) WHERE worker = 'w1';
SELECT sum(balance) AS before FROM acct \gset
BEGIN;
UPDATE acct SET balance = balance + 10 WHERE id = 1;
UPDATE acct SET balance = balance + 10 WHERE id = 3;
COMMIT;
SELECT success FROM pgshard.run_command_on_workers($$DROP TRIGGER refuse ON pgshard.commit_decision; DROP FUNCTION public.regress_refuse()$$) WHERE worker = 'w1';
SELECT sum(balance) = :before AS unchanged FROM acct;
:prepared;
-- A deciding worker without the table (registered by an older pgshard): the transaction rolls
-- back with a hint; recovery creates the table, and the next transaction commits.
SELECT success FROM pgshard.run_command_on_workers($$DROP TABLE pgshard.commit_decision$$) WHERE worker = 'w1';
BEGIN;
UPDATE acct SET balance = balance + 10 WHERE id = 1;
UPDATE acct SET balance = balance + 10 WHERE id = 3;
COMMIT;
SELECT sum(balance) = :before AS unchanged FROM acct;
:prepared;
SELECT * FROM pgshard.recover_transactions();
SELECT result AS recreated FROM pgshard.run_command_on_workers($$SELECT count(*) FROM pg_policies WHERE tablename = 'commit_decision'$$) WHERE worker = 'w1';
BEGIN;
UPDATE acct SET balance = balance + 10 WHERE id = 1;
UPDATE acct SET balance = balance + 10 WHERE id = 3;
COMMIT;
SELECT sum(balance) - :before AS added FROM acct;
:decisions;
SELECT * FROM pgshard.recover_transactions();
-- A transaction that also writes on the coordinator decides there: its commit records are
-- written with it, both workers prepare, and recovery cleans the records up.
CREATE TABLE local_log (note text);
BEGIN;
INSERT INTO local_log VALUES ('both workers');
UPDATE acct SET balance = balance + 10 WHERE id = 1;
UPDATE acct SET balance = balance + 10 WHERE id = 3;
COMMIT;
SELECT count(*) AS commit_records FROM pgshard.commit_record;
:decisions;
SELECT * FROM pgshard.recover_transactions();
SELECT count(*) AS commit_records FROM pgshard.commit_record;
-- One worker written: a plain COMMIT, no record.
UPDATE acct SET balance = balance - 10 WHERE id = 1;
SELECT count(*) AS commit_records FROM pgshard.commit_record;
:per_worker;

-- Savepoints: rolled back on the workers they reached, kept elsewhere.
BEGIN;
UPDATE acct SET balance = balance + 1 WHERE id = 1;
SAVEPOINT a;
UPDATE acct SET balance = balance + 100;
SAVEPOINT b;
UPDATE acct SET balance = balance + 1000 WHERE id = 2;
ROLLBACK TO SAVEPOINT b;
SELECT id, balance FROM acct WHERE id IN (1, 2) ORDER BY 1;
ROLLBACK TO SAVEPOINT a;
UPDATE acct SET balance = balance + 1 WHERE id = 2;
SAVEPOINT c;
UPDATE acct SET balance = balance - 1000 WHERE id = 5;
ROLLBACK TO SAVEPOINT c;
RELEASE SAVEPOINT a;
UPDATE acct SET balance = balance + 1 WHERE id = 5;
COMMIT;
SELECT id, balance FROM acct ORDER BY 1;
-- PL/pgSQL exception blocks are subtransactions too.
DO $$
BEGIN
  UPDATE acct SET balance = balance + 2 WHERE id = 6;
  BEGIN
    UPDATE acct SET balance = balance + 1000;
    UPDATE acct SET balance = -1 WHERE id = 7;
  EXCEPTION WHEN check_violation THEN
    RAISE NOTICE 'inner block rolled back';
  END;
END $$;
SELECT id, balance FROM acct ORDER BY 1;
:per_worker;

-- Fault between the deciding worker's commit and COMMIT PREPARED: w1 committed (its part is
-- visible), the transaction prepared on w2 stays there (invisible) until recovery commits it
-- from w1's decision.
SET pgshard.inject_fault = 'abandon_after_commit';
UPDATE acct SET balance = balance + 1000;
RESET pgshard.inject_fault;
:prepared;
:decisions;
SELECT sum(balance) FROM acct;
SELECT action, count(*) FROM pgshard.recover_transactions() GROUP BY 1;
:prepared;
:decisions;
SELECT sum(balance) FROM acct;
-- No answer from the deciding worker (a lost connection, or none within 10 s; a cancel waits
-- for the answer): the coordinator cannot know whether it committed, so the prepared
-- transaction is left to recovery, which finds w2's decision (here it did commit) and commits it.
SELECT sum(balance) AS before FROM acct \gset
SET pgshard.inject_fault = 'decision_unanswered';
UPDATE acct SET balance = balance + 1;
RESET pgshard.inject_fault;
:prepared;
SELECT action, count(*) FROM pgshard.recover_transactions() GROUP BY 1;
SELECT sum(balance) - :before AS added FROM acct;
-- The same fault when the coordinator decides: both workers prepared, both committed by
-- recovery from the commit records.
BEGIN;
INSERT INTO local_log VALUES ('abandoned after commit');
SET LOCAL pgshard.inject_fault = 'abandon_after_commit';
UPDATE acct SET balance = balance + 1000;
COMMIT;
:prepared;
SELECT count(*) AS commit_records FROM pgshard.commit_record;
SELECT action, count(*) FROM pgshard.recover_transactions() GROUP BY 1;
:prepared;
SELECT sum(balance) FROM acct;
SELECT count(*) AS commit_records FROM pgshard.commit_record;
-- Fault after PREPARE, before the decision: the statement fails; recovery finds no decision
-- on w1, settles it as rolled back there (so a late decision could not land), and rolls back.
SET pgshard.inject_fault = 'abandon_after_prepare';
UPDATE acct SET balance = balance - 1000;
RESET pgshard.inject_fault;
:prepared;
SELECT action, count(*) FROM pgshard.recover_transactions() GROUP BY 1;
:prepared;
-- The "rolled back" row stays (for an hour): a decision arriving late cannot land.
:decisions;
SELECT success, result FROM pgshard.run_command_on_workers($$INSERT INTO pgshard.commit_decision (gid, committed) SELECT gid, true FROM pgshard.commit_decision WHERE NOT committed$$) WHERE worker = 'w2';
SELECT sum(balance) FROM acct;
-- A "committed" decision forged by another role on the deciding worker is not honoured: the
-- prepared transaction is left in doubt with a warning (the forged row blocks the real one,
-- so it cannot have committed, but an administrator decides). Without it, recovery rolls back.
SET pgshard.inject_fault = 'abandon_after_prepare';
UPDATE acct SET balance = balance - 1000;
RESET pgshard.inject_fault;
SELECT result AS gid FROM pgshard.run_command_on_workers($$SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'pgshard\_%'$$) WHERE worker = 'w1' \gset
SELECT success FROM pgshard.run_command_on_workers(format($$BEGIN; SET LOCAL ROLE regress_forger; INSERT INTO pgshard.commit_decision (gid, committed) VALUES (%L, true); COMMIT$$, :'gid')) WHERE worker = 'w2';
SELECT result AS decisions_on_w2 FROM pgshard.run_command_on_workers($$SELECT string_agg(made_by || ' ' || committed, ',') FROM pgshard.commit_decision$$) WHERE worker = 'w2';
-- (terse: the warning's detail names the gid, which differs from run to run)
\set VERBOSITY terse
SELECT action, count(*) FROM pgshard.recover_transactions() GROUP BY 1;
\set VERBOSITY default
:prepared;
SELECT success FROM pgshard.run_command_on_workers($$DELETE FROM pgshard.commit_decision WHERE made_by = 'regress_forger'$$) WHERE worker = 'w2';
SELECT action, count(*) FROM pgshard.recover_transactions() GROUP BY 1;
:prepared;
:decisions;
SELECT sum(balance) FROM acct;
-- Recovery needs READ COMMITTED (it must see records committed after it started).
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM pgshard.recover_transactions();
ROLLBACK;
-- Other prepared transactions on a worker are never touched.
SELECT result FROM pgshard.run_command_on_workers($$BEGIN; CREATE TABLE not_ours (x int); PREPARE TRANSACTION 'someone_else'$$) WHERE worker = 'w1';
SELECT * FROM pgshard.recover_transactions();
SELECT result FROM pgshard.run_command_on_workers($$SELECT string_agg(gid, ',') FROM pg_prepared_xacts$$) WHERE worker = 'w1';
SELECT result FROM pgshard.run_command_on_workers($$ROLLBACK PREPARED 'someone_else'$$) WHERE worker = 'w1';

-- A worker that holds the commit decision of a prepared transaction cannot be removed while
-- the transaction is unresolved: recovery could no longer read the outcome. Here a prepared
-- transaction on w1 names w_decider (another database of w1's server) as its decider and this
-- session's running transaction as its coordinator transaction.
CREATE EXTENSION dblink;
SELECT conninfo AS w1_conninfo FROM pgshard.worker WHERE name = 'w1' \gset
SELECT dblink_exec(:'w1_conninfo', 'CREATE DATABASE regress_decider');
SELECT pgshard.add_worker('w_decider', regexp_replace(:'w1_conninfo', 'dbname=\S+', 'dbname=regress_decider')) AS decider_id \gset
-- Not in a transaction that wrote on it (its remote transaction would prepare there).
CREATE TABLE decider_ref (id int PRIMARY KEY);
SELECT pgshard.reference_table('decider_ref');
BEGIN;
INSERT INTO decider_ref VALUES (1);
SELECT pgshard.remove_worker('w_decider');
ROLLBACK;
SELECT system_identifier AS sys, (SELECT oid FROM pg_database WHERE datname = current_database()) AS db,
  (SELECT oid FROM pg_roles WHERE rolname = current_user) AS role_oid,
  (SELECT worker_id FROM pgshard.worker WHERE name = 'w1') AS w1_id,
  regexp_replace(:'w1_conninfo', 'dbname=\S+', 'dbname=regress_decider') AS decider_conninfo
FROM pg_control_system() \gset
-- A prepared transaction in the other database of the same server is that worker's alone
-- (PostgreSQL lists every database's): recovery resolves it there and w1 leaves it.
SELECT dblink_exec(:'decider_conninfo', format('BEGIN; CREATE TABLE crafted (x int); PREPARE TRANSACTION %L',
  format('pgshard_%s_%s_v1.1.1.%s_%s_%s', :'sys', :'db', :'role_oid', :decider_id, :w1_id)));
SELECT worker, action FROM pgshard.recover_transactions();
BEGIN;
SELECT format('pgshard_%s_%s_v%s.%s.%s.%s_%s_%s', :'sys', :'db',
  (extract(epoch FROM pg_postmaster_start_time() - timestamptz '2000-01-01 00:00:00+00') * 1000000)::bigint,
  split_part(virtualtransaction, '/', 1), split_part(virtualtransaction, '/', 2),
  :'role_oid', :w1_id, :decider_id) AS crafted_gid
FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'virtualxid' \gset
SELECT dblink_exec(:'w1_conninfo', format('BEGIN; CREATE TABLE crafted (x int); PREPARE TRANSACTION %L', :'crafted_gid'));
\set VERBOSITY terse
SELECT pgshard.remove_worker('w_decider');
\set VERBOSITY default
ROLLBACK;
-- A writer of one of its reference copies still in flight is waited for (here until
-- lock_timeout): it may yet prepare there, or be decided by it.
SELECT dblink_connect('writer', format('host=127.0.0.1 port=%s dbname=%s', current_setting('port'), current_database()));
SELECT dblink_exec('writer', 'BEGIN; INSERT INTO decider_ref VALUES (2)');
SET lock_timeout = '300ms';
SELECT pgshard.remove_worker('w_decider');
RESET lock_timeout;
SELECT dblink_exec('writer', 'ROLLBACK');
SELECT dblink_disconnect('writer');
-- Once this transaction is over, recovery settles it (no decision: rolled back). While
-- another worker cannot be reached (it may hold transactions w_decider decides), the worker
-- stays; then it can go.
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_2" -w -m immediate stop > /dev/null
\set VERBOSITY terse
SELECT pgshard.remove_worker('w_decider');
\set VERBOSITY default
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_2" -l "$PGSHARD_CLUSTER_DIR/worker_2/server.log" -w start > /dev/null
-- A worker that is itself unreachable goes, with a warning about what may be left on it.
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_1" -w -m immediate stop > /dev/null
SELECT pgshard.remove_worker('w_decider');
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_1" -l "$PGSHARD_CLUSTER_DIR/worker_1/server.log" -w start > /dev/null
DROP TABLE decider_ref;
SELECT result AS crafted_left FROM pgshard.run_command_on_workers(format($$SELECT count(*) FROM pg_prepared_xacts WHERE gid = %L$$, :'crafted_gid')) WHERE worker = 'w1';
SELECT dblink_exec(:'w1_conninfo', 'DROP DATABASE regress_decider WITH (FORCE)');
DROP EXTENSION dblink;

-- A worker killed mid-transaction: the commit fails naming it; after its restart the broken
-- cached connection is not reused. When it is not the deciding worker, its PREPARE fails and
-- the other worker rolls back at once.
SELECT sum(balance) AS before FROM acct \gset
BEGIN;
UPDATE acct SET balance = balance + 7;
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_1" -w -m immediate stop > /dev/null
COMMIT;
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_1" -l "$PGSHARD_CLUSTER_DIR/worker_1/server.log" -w start > /dev/null
SELECT sum(balance) = :before AS unchanged FROM acct;
:prepared;
SELECT sum(balance) AS before FROM acct \gset
BEGIN;
UPDATE acct SET balance = balance + 7;
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_2" -w -m immediate stop > /dev/null
COMMIT;
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_2" -l "$PGSHARD_CLUSTER_DIR/worker_2/server.log" -w start > /dev/null
SELECT sum(balance) = :before AS unchanged FROM acct;
-- w2 was the deciding worker: its COMMIT was lost, so w1's prepared transaction waits for
-- recovery, which finds no decision on w2 and rolls it back.
:prepared;
SELECT action, count(*) FROM pgshard.recover_transactions() GROUP BY 1;
SELECT sum(balance) = :before AS unchanged FROM acct;
:prepared;
-- The deciding worker killed after its commit: while it is down recovery cannot read the
-- decision and leaves w1's prepared transaction; once it is back, recovery commits it.
SET pgshard.inject_fault = 'abandon_after_commit';
UPDATE acct SET balance = balance + 1;
RESET pgshard.inject_fault;
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_2" -w -m immediate stop > /dev/null
SELECT action, count(*) FROM pgshard.recover_transactions() GROUP BY 1;
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/worker_2" -l "$PGSHARD_CLUSTER_DIR/worker_2/server.log" -w start > /dev/null
SELECT action, count(*) FROM pgshard.recover_transactions() GROUP BY 1;
SELECT sum(balance) - :before AS added FROM acct;
:prepared;

-- Waits (at most 10 s) until the psql sessions started in the background below are done.
CREATE FUNCTION pg_temp.wait_for_background() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE 'BEGIN; UPDATE acct%' AND pid <> pg_backend_pid());
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
-- A recovery run while a committed transaction is still sending its own COMMIT PREPARED (held
-- there 3 s by a test fault) leaves it alone: it counts as running until it releases its locks.
SELECT sum(balance) AS before FROM acct \gset
\! psql -X -q -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "SET pgshard.inject_fault = 'pause_before_commit_prepared'" -c "BEGIN; UPDATE acct SET balance = balance + 1 WHERE id IN (1, 3); COMMIT;" > /dev/null 2>&1 &
SELECT pg_sleep(1);
SELECT count(*) AS resolved_during_its_commit FROM pgshard.recover_transactions();
SELECT pg_temp.wait_for_background();
SELECT sum(balance) - :before AS added FROM acct;
:prepared;
-- Remote lock waits: the coordinator's lock_timeout and statement_timeout reach the workers.
\! psql -X -q -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "BEGIN; UPDATE acct SET balance = balance + 1 WHERE id = 1; SELECT pg_sleep(3); ROLLBACK;" > /dev/null 2>&1 &
SELECT pg_sleep(0.5);
SET lock_timeout = '200ms';
UPDATE acct SET balance = 0 WHERE id = 1;
RESET lock_timeout;
SET statement_timeout = '300ms';
UPDATE acct SET balance = 0 WHERE id = 1;
RESET statement_timeout;
-- A distributed deadlock (id 1 is on w2, id 3 on w1, locked in opposite orders) ends at
-- pgshard.remote_lock_timeout; the other transaction then commits.
SELECT pg_temp.wait_for_background();
SET pgshard.remote_lock_timeout = '2s';
BEGIN;
UPDATE acct SET balance = balance + 1 WHERE id = 1;
\! psql -X -q -h 127.0.0.1 -p "$PGSHARD_PORT" -d pgshard -c "BEGIN; UPDATE acct SET balance = balance + 100 WHERE id = 3; SELECT pg_sleep(1); UPDATE acct SET balance = balance + 100 WHERE id = 1; COMMIT;" > /dev/null 2>&1 &
SELECT pg_sleep(1.5);
UPDATE acct SET balance = balance + 1 WHERE id = 3;
ROLLBACK;
RESET pgshard.remote_lock_timeout;
SELECT pg_temp.wait_for_background();
SELECT id, balance FROM acct WHERE id IN (1, 3) ORDER BY 1;
:prepared;

-- The coordinator restarted with in-doubt transactions: the background recovery (here every
-- second) commits them.
ALTER SYSTEM SET pgshard.recovery_interval = 1;
SET pgshard.inject_fault = 'abandon_after_commit';
UPDATE acct SET balance = balance + 1;
RESET pgshard.inject_fault;
:prepared;
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/coordinator" -l "$PGSHARD_CLUSTER_DIR/coordinator/server.log" -w -m fast restart -o "-c shared_preload_libraries=pgshard" > /dev/null
\c pgshard - 127.0.0.1 :coordinator_port
SELECT backend_type FROM pg_stat_activity WHERE backend_type = 'pgshard recovery launcher';
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    EXIT WHEN (SELECT bool_and(result = '0') FROM pgshard.run_command_on_workers('SELECT count(*) FROM pg_prepared_xacts'));
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
:prepared;
SELECT id, balance FROM acct WHERE id IN (1, 3) ORDER BY 1;
ALTER SYSTEM RESET pgshard.recovery_interval;
SELECT pg_reload_conf();
SELECT pgshard.unshard_table($$acct$$);
DROP TABLE acct;
DROP TABLE local_log;
SELECT worker, result FROM pgshard.run_command_on_workers($$DROP ROLE regress_forger$$) ORDER BY 1;
