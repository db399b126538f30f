--
-- Aggregation on sharded tables: pushed whole to each shard when the grouping includes the
-- shard key (or the key is pinned), split into per-shard partial aggregates combined on the
-- coordinator otherwise, and computed on the coordinator when it cannot be split exactly.
--
SELECT setval('pgshard.shard_shard_id_seq', 500001, false);
CREATE TABLE sales (id bigint PRIMARY KEY, region text, qty int, amount numeric(12,2),
                    weight float8, paid bool, note text);
SELECT pgshard.shard_table('sales', 'id', shard_count => 4);
INSERT INTO sales
SELECT g, (ARRAY['north', 'south', 'east', 'wëst', NULL])[g % 5 + 1],
       CASE WHEN g % 13 = 0 THEN NULL ELSE g % 17 END,
       CASE WHEN g % 11 = 0 THEN NULL ELSE (g * 7 % 1000) / 4.0 END,
       g / 8.0, g % 3 <> 0, 'n' || (g % 4)
FROM generate_series(1, 2000) g;
CREATE TABLE sales_local AS SELECT * FROM sales;

-- Pinned to one key: the whole query runs on that key's shard.
EXPLAIN (COSTS OFF) SELECT count(*), sum(amount) FROM sales WHERE id = 42;
SELECT count(*), sum(amount) FROM sales WHERE id = 42;
-- Grouped by the shard key: pushed whole, HAVING included.
EXPLAIN (COSTS OFF, VERBOSE) SELECT id, sum(qty) FROM sales GROUP BY id HAVING sum(qty) > 15;
SELECT id, sum(qty) FROM sales GROUP BY id HAVING sum(qty) > 15 ORDER BY id LIMIT 5;
-- ... and so are ORDER BY and LIMIT over those final groups: each shard returns its first
-- groups, the coordinator picks the global first among them.
EXPLAIN (COSTS OFF) SELECT id, sum(amount) FROM sales GROUP BY id ORDER BY sum(amount) DESC NULLS LAST, id LIMIT 3;
SELECT id, sum(amount) FROM sales GROUP BY id ORDER BY sum(amount) DESC NULLS LAST, id LIMIT 3;
SELECT id, sum(amount) FROM sales_local GROUP BY id ORDER BY sum(amount) DESC NULLS LAST, id LIMIT 3;
-- Grouped by another column: each shard computes partial aggregates, the coordinator combines
-- them (avg as a total sum over a total count).
EXPLAIN (COSTS OFF, VERBOSE)
SELECT region, count(*), avg(amount), max(weight) FROM sales GROUP BY region ORDER BY region;
SELECT region, count(*), avg(amount), max(weight) FROM sales GROUP BY region ORDER BY region;
SELECT region, count(*), avg(amount), max(weight) FROM sales_local GROUP BY region ORDER BY region;
-- Grouped by an expression: the shards compute it (its columns are not needed here).
EXPLAIN (COSTS OFF) SELECT qty % 3 = 0 AS div3, count(*) FROM sales GROUP BY 1;
SELECT qty % 3 = 0 AS div3, count(*) FROM sales GROUP BY 1 ORDER BY 1;
-- CASE (searched and simple), COALESCE, NULLIF and GREATEST run on the shards, inside the
-- aggregates and in the filter: the shards send one partial row each, not their rows.
EXPLAIN (COSTS OFF, VERBOSE)
SELECT sum(CASE WHEN paid THEN amount ELSE 0 END), count(CASE qty WHEN 1 THEN 1 END),
       max(greatest(qty, 3)), sum(coalesce(nullif(qty, 2), 0))
FROM sales WHERE CASE region WHEN 'north' THEN qty > 1 ELSE true END;
SELECT sum(CASE WHEN paid THEN amount ELSE 0 END), count(CASE qty WHEN 1 THEN 1 END),
       max(greatest(qty, 3)), sum(coalesce(nullif(qty, 2), 0))
FROM sales WHERE CASE region WHEN 'north' THEN qty > 1 ELSE true END;
SELECT sum(CASE WHEN paid THEN amount ELSE 0 END), count(CASE qty WHEN 1 THEN 1 END),
       max(greatest(qty, 3)), sum(coalesce(nullif(qty, 2), 0))
FROM sales_local WHERE CASE region WHEN 'north' THEN qty > 1 ELSE true END;
-- GREATEST of text depends on the collation: computed on the coordinator from the rows.
EXPLAIN (COSTS OFF) SELECT max(greatest(note, region)) FROM sales;
-- No grouping at all: one partial row per shard.
EXPLAIN (COSTS OFF) SELECT count(*), sum(qty), avg(qty), min(note COLLATE "C"), bool_or(paid) FROM sales;
SELECT count(*), sum(qty), avg(qty), min(note COLLATE "C"), bool_or(paid) FROM sales;
-- DISTINCT aggregates: the shards group by the argument too.
EXPLAIN (COSTS OFF) SELECT region, count(DISTINCT qty) FROM sales GROUP BY region;
SELECT region, count(DISTINCT qty), sum(DISTINCT qty), count(*) FROM sales GROUP BY region ORDER BY 1;
SELECT region, count(DISTINCT qty), sum(DISTINCT qty), count(*) FROM sales_local GROUP BY region ORDER BY 1;
-- FILTER, expressions over aggregates, parameters, HAVING on a combined aggregate.
SELECT paid, count(*) FILTER (WHERE qty > 8) AS big, sum(qty * 2) + 1 AS s, round(avg(weight)::numeric, 6) AS w
FROM sales GROUP BY paid HAVING count(*) > 100 ORDER BY paid;
SELECT paid, count(*) FILTER (WHERE qty > 8) AS big, sum(qty * 2) + 1 AS s, round(avg(weight)::numeric, 6) AS w
FROM sales_local GROUP BY paid HAVING count(*) > 100 ORDER BY paid;
PREPARE by_note(int) AS SELECT note, count(*) FILTER (WHERE qty > $1), sum(amount) FROM sales GROUP BY note ORDER BY note;
EXECUTE by_note(10);
-- SELECT DISTINCT and GROUP BY without aggregates: each shard returns its distinct rows, the
-- coordinator removes the duplicates across shards.
EXPLAIN (COSTS OFF) SELECT DISTINCT region, paid FROM sales;
SELECT DISTINCT region, paid FROM sales ORDER BY 1, 2;
SELECT DISTINCT region, paid FROM sales_local ORDER BY 1, 2;
SELECT note FROM sales WHERE qty > 15 GROUP BY note ORDER BY note;
-- A prepared statement pinned by a parameter: its generic plan (after five executions) prunes
-- with each execution's value.
PREPARE pinned(bigint) AS SELECT count(*), sum(amount) FROM sales WHERE id = $1;
PREPARE pinned_local(bigint) AS SELECT count(*), sum(amount) FROM sales_local WHERE id = $1;
CREATE TEMP TABLE pinned_runs (i int, sharded text, local text);
DO $$
DECLARE a text; b text;
BEGIN
    FOR i IN 1..8 LOOP
        EXECUTE format('EXECUTE pinned(%s)', i * 97) INTO a;
        EXECUTE format('EXECUTE pinned_local(%s)', i * 97) INTO b;
        INSERT INTO pinned_runs VALUES (i, a, b);
    END LOOP;
END $$;
SELECT count(*) AS runs, count(*) FILTER (WHERE sharded IS DISTINCT FROM local) AS mismatches FROM pinned_runs;
EXPLAIN (COSTS OFF) EXECUTE pinned(3);
-- Grouped by values that read no column (computed on the coordinator): grouped there.
SELECT current_date = current_date AS today, count(*) FROM sales GROUP BY 1;
SELECT current_date IS NOT NULL AS today, count(*) FROM sales WHERE id = 5 GROUP BY 1;
PREPARE labelled(text) AS SELECT $1 AS label, count(*) FROM sales GROUP BY 1;
EXECUTE labelled('a');
EXECUTE labelled('b');
EXECUTE labelled('c');
EXECUTE labelled('d');
EXECUTE labelled('e');
EXECUTE labelled('f');
-- Aggregates over no rows, and filters that select no shard, still give their one row.
SELECT count(*), sum(qty), avg(amount), array_agg(id) FROM sales WHERE qty < 0;
SELECT count(*), max(id) FROM sales WHERE id = 1 AND id = 2;
SELECT count(*), max(id) FROM sales WHERE id = NULL;
-- stddev and variance of integers and numerics are split exactly: count, sum and sum of
-- squares in numeric per shard, PostgreSQL's own arithmetic on the totals.
EXPLAIN (COSTS OFF) SELECT region, stddev(qty) FROM sales GROUP BY region;
SELECT region, stddev(qty), var_samp(amount), var_pop(qty), stddev_pop(amount), variance(id) FROM sales GROUP BY region ORDER BY 1;
SELECT region, stddev(qty), var_samp(amount), var_pop(qty), stddev_pop(amount), variance(id) FROM sales_local GROUP BY region ORDER BY 1;
SELECT stddev(amount), var_pop(amount) FROM sales WHERE id = 5;
-- Groups with NaN, infinities, one row, equal values, no values: as PostgreSQL computes them.
CREATE TABLE stats_local (id int, g text, x numeric);
INSERT INTO stats_local VALUES (1, 'nan', 1.5), (2, 'nan', 'NaN'), (3, 'nan', 2), (4, 'inf', 'Infinity'),
    (5, 'inf', 3), (6, 'one', 7.25), (7, 'equal', 2.50), (8, 'equal', 2.5), (9, 'equal', 2.500),
    (10, 'none', NULL), (11, 'plain', 1), (12, 'plain', 2.25), (13, 'plain', -3.125), (14, '-inf', '-Infinity'), (15, '-inf', 1);
CREATE TABLE stats AS SELECT * FROM stats_local;
SELECT pgshard.shard_table('stats', 'id', shard_count => 3);
SELECT g, stddev(x), variance(x), stddev_pop(x), var_pop(x) FROM stats GROUP BY g ORDER BY g;
SELECT g, stddev(x), variance(x), stddev_pop(x), var_pop(x) FROM stats_local GROUP BY g ORDER BY g;
SELECT pgshard.unshard_table('stats');
DROP TABLE stats, stats_local;
-- Aggregates without an exact split are computed on the coordinator over the rows (float
-- statistics: partial sums added in another order could round differently).
EXPLAIN (COSTS OFF) SELECT region, stddev(qty::float8) FROM sales GROUP BY region;
SELECT region, string_agg(id::text, ',' ORDER BY id DESC) FILTER (WHERE id < 30) FROM sales GROUP BY region ORDER BY 1;
-- ... and so is an order that depends on the locale (min of text under a non-C collation).
EXPLAIN (COSTS OFF) SELECT min(region) FROM sales;
SELECT min(region), max(region COLLATE "C") FROM sales;
-- Encrypted columns are grouped by their blind-index tag on the shards.
CREATE TABLE cards (id int PRIMARY KEY, holder pgshard.encrypted_text, pin pgshard.encrypted_int8);
SELECT pgshard.shard_table('cards', 'id', shard_count => 2);
INSERT INTO cards SELECT g, 'holder ' || (g % 4), g % 3 FROM generate_series(1, 40) g;
EXPLAIN (COSTS OFF, VERBOSE) SELECT holder, count(*) FROM cards GROUP BY holder;
SELECT holder, count(*), count(DISTINCT pin) FROM cards GROUP BY holder ORDER BY holder;
SELECT count(DISTINCT holder), count(holder) FROM cards;
-- Subqueries, CTEs and views with aggregates are split too.
CREATE VIEW region_totals AS SELECT region, sum(amount) AS total FROM sales GROUP BY region;
SELECT * FROM region_totals ORDER BY region;
WITH t AS (SELECT paid, count(*) AS n FROM sales GROUP BY paid) SELECT sum(n) FROM t;
SELECT (SELECT max(qty) FROM sales) AS m, (SELECT count(*) FROM sales WHERE note = 'n1') AS c;
DROP VIEW region_totals;
SELECT pgshard.unshard_table('sales'), pgshard.unshard_table('cards');
DROP TABLE sales, sales_local, cards;
