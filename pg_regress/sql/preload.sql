--
-- pgshard must be loaded through shared_preload_libraries.
--
-- The coordinator preloads it, so the check passes here.
SELECT pgshard.ensure_preloaded();
SELECT extname, extnamespace::regnamespace AS schema, extrelocatable FROM pg_extension WHERE extname = 'pgshard';
-- Moving the extension is refused: its objects live in schema pgshard.
ALTER EXTENSION pgshard SET SCHEMA public;
-- A worker is stock PostgreSQL without pgshard preloaded: CREATE EXTENSION fails with a hint,
-- and leaves nothing behind.
\c pgshard - 127.0.0.1 :worker_1_port
CREATE EXTENSION pgshard;
SELECT count(*) AS pgshard_extensions FROM pg_extension WHERE extname = 'pgshard';
-- What a worker holds of pgshard's own: the table add_worker created for commit decisions.
SELECT relname FROM pg_class WHERE relnamespace = 'pgshard'::regnamespace AND relkind = 'r';
\c pgshard - 127.0.0.1 :coordinator_port
