-- Coordinator-side steps of aggregates split across shards (see docs/routing.md): each shard
-- computes partial aggregates, the coordinator combines them with these. They are built on
-- PostgreSQL's own functions, and the SQL functions are inlined by the planner.

-- count: add the per-shard counts; 0 when there are none.
CREATE AGGREGATE pgshard.sum_counts(bigint) (sfunc = pg_catalog.int8pl, stype = bigint, initcond = '0');

-- sum of int2/int4: add the int8 per-shard sums; NULL when there are none.
CREATE AGGREGATE pgshard.sum_int8(bigint) (sfunc = pg_catalog.int8pl, stype = bigint);

-- array_agg: concatenate the per-shard arrays.
CREATE AGGREGATE pgshard.array_cat_agg(anycompatiblearray) (
    sfunc = pg_catalog.array_cat, stype = anycompatiblearray);

-- avg of integers and numerics: total sum / total count in numeric, as avg itself divides
-- (NULL over no rows, where the sum is NULL).
CREATE FUNCTION pgshard.avg_of(total numeric, n bigint) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN total / n::numeric;

-- avg of float8.
CREATE FUNCTION pgshard.avg_of(total double precision, n bigint) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN total / n::double precision;
