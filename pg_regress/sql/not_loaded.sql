--
-- A session where pgshard is not preloaded must not read the empty coordinator table of a
-- sharded table, nor write rows into it: every access fails with an error saying why.
-- The coordinator is restarted without shared_preload_libraries, then restored.
--
CREATE TABLE t_shell (id int PRIMARY KEY, v text);
SELECT pgshard.shard_table('t_shell', 'id', shard_count => 2);
INSERT INTO t_shell VALUES (1, 'one'), (2, 'two'), (3, 'three');
SELECT amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.oid = 't_shell'::regclass;
-- The shell is an ordinary table for ANALYZE, VACUUM and CREATE INDEX, and holds nothing.
ANALYZE t_shell;
VACUUM t_shell;
CREATE INDEX t_shell_v ON t_shell (v);
DROP INDEX t_shell_v;
SELECT pg_relation_size('t_shell') AS shell_bytes;
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/coordinator" -l "$PGSHARD_CLUSTER_DIR/coordinator/server.log" -w -m fast restart -o "-c shared_preload_libraries=''" > /dev/null
\c pgshard - 127.0.0.1 :coordinator_port
SHOW shared_preload_libraries;
SELECT * FROM t_shell;
SELECT count(*) FROM t_shell WHERE id = 1;
INSERT INTO t_shell VALUES (4, 'four');
UPDATE t_shell SET v = 'x';
DELETE FROM t_shell;
COPY t_shell TO STDOUT;
COPY t_shell FROM STDIN;
5	five
\.
CREATE TABLE t_plain (id int);
SELECT pgshard.shard_table('t_plain', 'id');
DROP TABLE t_plain;
SELECT pgshard.unshard_table('t_shell');
-- ANALYZE still works (autovacuum must not fail on shells).
ANALYZE t_shell;
\! pg_ctl -D "$PGSHARD_CLUSTER_DIR/coordinator" -l "$PGSHARD_CLUSTER_DIR/coordinator/server.log" -w -m fast restart -o "-c shared_preload_libraries=pgshard" > /dev/null
\c pgshard - 127.0.0.1 :coordinator_port
SHOW shared_preload_libraries;
SELECT * FROM t_shell ORDER BY id;
-- unshard_table makes it a heap table again, with its rows.
SELECT pgshard.unshard_table('t_shell');
SELECT amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.oid = 't_shell'::regclass;
SELECT * FROM t_shell ORDER BY id;
DROP TABLE t_shell;
