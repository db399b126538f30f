--
-- Shard-key hashing: the published test vectors (docs/routing.md), computed in SQL.
--
-- Integer types of every width hash alike.
SELECT pgshard.shard_hash(1::int2) AS int2, pgshard.shard_hash(1::int4) AS int4, pgshard.shard_hash(1::int8) AS int8;
SELECT pgshard.shard_hash(2) AS "2", pgshard.shard_hash(42) AS "42", pgshard.shard_hash(-1) AS "-1";
-- Text hashes its UTF-8 bytes; varchar like text.
SELECT pgshard.shard_hash('ann'::text) AS ann, pgshard.shard_hash('ann'::varchar) AS ann_varchar,
       pgshard.shard_hash('Zoë'::text) AS zoe;
SELECT pgshard.shard_hash('550e8400-e29b-41d4-a716-446655440000'::uuid) AS uuid;
-- Numerics equal in value hash alike.
SELECT pgshard.shard_hash(12.50) AS "12.50", pgshard.shard_hash(12.5) AS "12.5", pgshard.shard_hash(12.500::numeric(10,3)) AS "12.500";
SELECT pgshard.shard_hash(date '2024-01-01') AS date, pgshard.shard_hash(true) AS bool;
-- timestamp and timestamptz are separate families (one is wall-clock time, the other an instant).
SELECT pgshard.shard_hash(timestamp '2024-01-01 00:00') <> pgshard.shard_hash(timestamptz '2024-01-01 00:00+00') AS families_differ;
SELECT pgshard.shard_hash('\x0102'::bytea) = pgshard.shard_hash('\x0102'::bytea) AS bytea_stable;
-- NULL has no hash.
SELECT pgshard.shard_hash(NULL::int) IS NULL AS null_is_null;
-- Types that cannot be shard keys.
SELECT pgshard.shard_hash(1.5::float8);
SELECT pgshard.shard_hash(point '(1,2)');
