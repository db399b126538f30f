--
-- The worker registry: add_worker, remove_worker, the workers view.
--
-- The cluster registered two workers.
SELECT name, host, port - :coordinator_port AS port_offset, dbname FROM pgshard.workers;
\set w1 'host=127.0.0.1 user=postgres port=' :worker_1_port
\set w2 'host=127.0.0.1 user=postgres port=' :worker_2_port
-- A second database on worker 1 serves as a new worker.
SELECT success FROM pgshard.run_command_on_workers('SELECT 1');
\c pgshard - 127.0.0.1 :worker_1_port
CREATE DATABASE regress_extra;
CREATE DATABASE regress_secret;
CREATE DATABASE regress_latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C';
CREATE ROLE regress_password_user LOGIN PASSWORD 'right-password';
\c pgshard - 127.0.0.1 :coordinator_port
SELECT pgshard.add_worker('w3', :'w1' || ' dbname=regress_extra') > 0 AS added;
SELECT name, host, port - :coordinator_port AS port_offset, dbname FROM pgshard.workers ORDER BY name;
SELECT name FROM pgshard.check_workers() WHERE reachable ORDER BY name;
-- Duplicate name.
SELECT pgshard.add_worker('w3', :'w2' || ' dbname=pgshard');
-- The same server and database registered twice.
SELECT pgshard.add_worker('w1_again', :'w1' || ' dbname=pgshard');
-- Nothing listens there.
SELECT pgshard.add_worker('w_down', 'host=127.0.0.1 port=1 dbname=pgshard user=postgres');
-- Wrong database.
SELECT pgshard.add_worker('w_nodb', :'w1' || ' dbname=no_such_database');
-- Authentication failure.
SELECT pgshard.add_worker('w_auth', 'host=127.0.0.1 port=' || :worker_1_port || ' dbname=regress_secret user=regress_password_user password=wrong-password');
-- Bad conninfo and bad names.
SELECT pgshard.add_worker('w_bad', 'host=127.0.0.1 no_such_option=1');
SELECT pgshard.add_worker('w_bad', 'host=127.0.0.1 port=notaport');
-- (The resolver's own wording varies between machines; only the start is shown.)
DO $$
BEGIN
  PERFORM pgshard.add_worker('w_bad', 'host=no-such-host.invalid');
EXCEPTION WHEN sqlclient_unable_to_establish_sqlconnection THEN
  RAISE NOTICE '%', substring(SQLERRM FROM '^[^:]*: [^:]*');
END $$;
SELECT pgshard.add_worker('w_nohost', 'dbname=pgshard');
-- A database in another encoding than UTF8.
SELECT pgshard.add_worker('w_latin1', :'w1' || ' dbname=regress_latin1');
SELECT pgshard.add_worker('bad name', :'w1' || ' dbname=pgshard');
SELECT pgshard.add_worker('', :'w1' || ' dbname=pgshard');
-- None of the failures recorded anything.
SELECT name FROM pgshard.workers ORDER BY name;
-- A worker reached as a role that cannot create in the worker database is refused (pgshard
-- keeps its pgshard.commit_decision table there); nothing is recorded.
SELECT pgshard.add_worker('w_pw', 'host=127.0.0.1 port=' || :worker_1_port || ' dbname=regress_secret user=regress_password_user password=right-password') > 0 AS added;
SELECT count(*) AS recorded FROM pgshard.worker WHERE name = 'w_pw';
\c regress_secret - 127.0.0.1 :worker_1_port
GRANT CREATE ON DATABASE regress_secret TO regress_password_user;
\c pgshard - 127.0.0.1 :coordinator_port
-- A worker reached with a password; the password stays in the superuser-only catalog.
SELECT pgshard.add_worker('w_pw', 'host=127.0.0.1 port=' || :worker_1_port || ' dbname=regress_secret user=regress_password_user password=right-password') > 0 AS added;
SELECT name, reachable FROM pgshard.check_workers() WHERE name = 'w_pw';
-- add_worker created the decision table there: everyone may read it and insert as themselves.
SELECT result FROM pgshard.run_command_on_workers($$SELECT string_agg(format('%s %s', tableowner, rowsecurity), ',') FROM pg_tables WHERE schemaname = 'pgshard'$$) WHERE worker = 'w_pw';
SELECT count(*) AS conninfos_with_password FROM pgshard.worker WHERE conninfo LIKE '%password=%';
-- A non-superuser sees where workers are, never their conninfo, and cannot change them.
CREATE ROLE regress_plain;
SET ROLE regress_plain;
SELECT name, host, dbname FROM pgshard.workers ORDER BY name;
SELECT count(*) FROM pgshard.workers WHERE row(workers.*)::text LIKE '%password%';
SELECT conninfo FROM pgshard.worker;
SELECT pgshard.add_worker('w_sneaky', 'host=127.0.0.1 port=1');
SELECT pgshard.remove_worker('w3');
SELECT * FROM pgshard.check_workers();
SELECT * FROM pgshard.run_command_on_workers('SELECT 1');
RESET ROLE;
-- remove_worker
SELECT pgshard.remove_worker('w_pw');
SELECT pgshard.remove_worker('w3');
SELECT pgshard.remove_worker('w3');
SELECT name FROM pgshard.workers ORDER BY name;
-- A removed name can be used again.
SELECT pgshard.add_worker('w3', :'w1' || ' dbname=regress_extra') > 0 AS added;
SELECT pgshard.remove_worker('w3');
DROP ROLE regress_plain;
\c pgshard - 127.0.0.1 :worker_1_port
DROP DATABASE regress_extra WITH (FORCE);
DROP DATABASE regress_secret WITH (FORCE);
DROP DATABASE regress_latin1 WITH (FORCE);
DROP ROLE regress_password_user;
\c pgshard - 127.0.0.1 :coordinator_port
-- A coordinator database in another encoding than UTF8 cannot have sharded or reference tables.
CREATE DATABASE regress_latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C';
\c regress_latin1 - 127.0.0.1 :coordinator_port
SET client_min_messages = warning;
CREATE EXTENSION pgshard;
CREATE TABLE latin_items (id int PRIMARY KEY);
SELECT pgshard.shard_table('latin_items', 'id');
SELECT pgshard.reference_table('latin_items');
\c pgshard - 127.0.0.1 :coordinator_port
DROP DATABASE regress_latin1 WITH (FORCE);
-- In a database without the extension, the statements pgshard watches run as usual.
CREATE DATABASE regress_plain;
CREATE ROLE regress_plain_owner;
\c regress_plain - 127.0.0.1 :coordinator_port
CREATE SCHEMA plain_s;
CREATE DOMAIN plain_s.d AS int;
CREATE TABLE plain_s.t (x plain_s.d);
ALTER DOMAIN plain_s.d ADD CONSTRAINT positive CHECK (VALUE > 0);
DROP TYPE plain_s.d CASCADE;
DROP SCHEMA plain_s CASCADE;
DROP OWNED BY regress_plain_owner CASCADE;
\c pgshard - 127.0.0.1 :coordinator_port
DROP DATABASE regress_plain WITH (FORCE);
DROP ROLE regress_plain_owner;
-- Only a table's owner can shard it: anyone else is refused before any lock is taken.
CREATE ROLE regress_not_owner;
SET ROLE regress_not_owner;
SELECT pgshard.shard_table('pg_class', 'oid');
RESET ROLE;
DROP ROLE regress_not_owner;
