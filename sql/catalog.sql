-- pgshard's catalog: the metadata tables in schema pgshard. Runs first in the extension script
-- (pgrx "bootstrap"); functions and views that use these tables are created after it.

-- Objects of schema pgshard are visible to everyone unless an object says otherwise.
GRANT USAGE ON SCHEMA pgshard TO PUBLIC;

-- Registered workers. conninfo may hold a password: superusers only (see view pgshard.workers).
CREATE TABLE pgshard.worker (
    worker_id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    conninfo text NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON pgshard.worker FROM PUBLIC;

-- Keep the catalog in pg_dump output of the coordinator.
SELECT pg_catalog.pg_extension_config_dump('pgshard.worker', '');
SELECT pg_catalog.pg_extension_config_dump('pgshard.worker_worker_id_seq', '');
