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

-- Co-location groups: tables of one group have the same shard count, key family, hash ranges
-- and placements, so their rows with equal keys live on the same worker.
CREATE TABLE pgshard.colocation (
    colocation_id serial PRIMARY KEY,
    shard_count int NOT NULL CHECK (shard_count > 0),
    key_family text NOT NULL
);

-- Distributed tables: the coordinator's table is the logical table and holds no rows.
-- kind 'hash': rows spread over shards by the hash of shard_key, in a co-location group.
-- kind 'reference': one shard with a full copy on every worker (no key, no group).
CREATE TABLE pgshard.sharded_table (
    table_oid regclass PRIMARY KEY,
    kind text NOT NULL DEFAULT 'hash' CHECK (kind IN ('hash', 'reference')),
    shard_key name,
    colocation_id int REFERENCES pgshard.colocation,
    CHECK ((kind = 'hash') = (shard_key IS NOT NULL AND colocation_id IS NOT NULL))
);

-- Shards: one hash range of one sharded table.
CREATE TABLE pgshard.shard (
    shard_id bigserial PRIMARY KEY,
    table_oid regclass NOT NULL REFERENCES pgshard.sharded_table ON DELETE CASCADE,
    hash_min bigint NOT NULL,
    hash_max bigint NOT NULL,
    CHECK (hash_min <= hash_max),
    UNIQUE (table_oid, hash_min)
);
ALTER SEQUENCE pgshard.shard_shard_id_seq RESTART WITH 100001;

-- Placements: which worker holds each shard; a reference table's one shard has a placement
-- on every worker.
CREATE TABLE pgshard.placement (
    shard_id bigint NOT NULL REFERENCES pgshard.shard ON DELETE CASCADE,
    worker_id int NOT NULL REFERENCES pgshard.worker,
    PRIMARY KEY (shard_id, worker_id)
);
CREATE INDEX placement_worker_idx ON pgshard.placement (worker_id);

-- Commit records of two-phase commits: one per transaction prepared on a worker, written in the
-- coordinator transaction itself, so a record exists exactly when that transaction committed.
-- Recovery commits prepared transactions that have one, rolls back the others, and deletes
-- records whose prepared transaction is finished.
CREATE TABLE pgshard.commit_record (
    gid text PRIMARY KEY,
    worker_id int NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON pgshard.commit_record FROM PUBLIC;

-- Shard tables a move left behind on their old worker, dropped by
-- pgshard.cleanup_orphaned_shards() once no statement can still be reading them.
CREATE TABLE pgshard.orphaned_shard (
    worker_id int NOT NULL REFERENCES pgshard.worker,
    relation text NOT NULL,
    orphaned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker_id, relation)
);
REVOKE ALL ON pgshard.orphaned_shard FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('pgshard.colocation', '');
SELECT pg_catalog.pg_extension_config_dump('pgshard.colocation_colocation_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgshard.sharded_table', '');
SELECT pg_catalog.pg_extension_config_dump('pgshard.shard', '');
SELECT pg_catalog.pg_extension_config_dump('pgshard.shard_shard_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgshard.placement', '');
