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

-- variance / stddev of integers and numerics from the totals of count(x), sum(x::numeric) and
-- sum(x::numeric * x::numeric): PostgreSQL's numeric_stddev_internal step for step, with the
-- same operations at the same scales — (N·Σx² − (Σx)²) / (N·(N−1)) (N·N for the population),
-- 0 when the numerator is not positive, NaN for NaN or infinite input, and the square root
-- rounded to the quotient's scale.
CREATE FUNCTION pgshard.sqrt_at_scale(v numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN round(sqrt(v), scale(v));

CREATE FUNCTION pgshard.variance_from(n bigint, numerator numeric, sample boolean, root boolean)
    RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN n IS NULL OR n = 0 OR (sample AND n = 1) THEN NULL
        WHEN numerator = 'NaN' THEN 'NaN'::numeric
        WHEN numerator <= 0 THEN 0::numeric
        WHEN root THEN pgshard.sqrt_at_scale(numerator / (n::numeric * CASE WHEN sample THEN n - 1 ELSE n END))
        ELSE numerator / (n::numeric * CASE WHEN sample THEN n - 1 ELSE n END)
    END;

CREATE FUNCTION pgshard.variance_of(n bigint, sx numeric, sxx numeric, sample boolean, root boolean)
    RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN pgshard.variance_from(n, n::numeric * sxx - sx * sx, sample, root);
