--
-- Differential corpus: every query runs against sharded copies of a table and against a plain
-- local copy of the same rows, and must return the same rows (in the same order when the query
-- orders them).
--
SET client_min_messages = warning;
SELECT setval('pgshard.shard_shard_id_seq', 300001, false);
CREATE TABLE items_local (
    id bigint NOT NULL, k_text text NOT NULL, k_uuid uuid NOT NULL, k_num numeric NOT NULL,
    k_date date NOT NULL, k_ts timestamptz NOT NULL, grp int, price numeric(10,2), note text, flag bool);
INSERT INTO items_local
SELECT g,
       CASE g % 5 WHEN 0 THEN 'ümlaut ' || g WHEN 1 THEN '日本 ' || g WHEN 2 THEN 'emoji 🎉 ' || g ELSE 'plain ' || g END,
       md5(g::text)::uuid,
       g / 4.0,
       date '2024-01-01' + g % 40,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '37 minutes',
       CASE WHEN g % 7 = 0 THEN NULL ELSE g % 6 END,
       CASE WHEN g % 9 = 0 THEN NULL ELSE (g * 13 % 1000) / 10.0 END,
       CASE WHEN g % 3 = 0 THEN NULL WHEN g % 3 = 1 THEN 'note ' || g ELSE E'tab\there ''quoted'' \\ back' END,
       CASE WHEN g % 11 = 0 THEN NULL ELSE g % 2 = 0 END
FROM generate_series(1, 500) g;
CREATE FUNCTION sharded_copy(name text, key text, shards int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE items_local INCLUDING ALL)', name);
    EXECUTE format('INSERT INTO %I SELECT * FROM items_local', name);
    PERFORM pgshard.shard_table(name, key, shard_count => shards);
END $$;
SELECT sharded_copy('by_id', 'id', 8), sharded_copy('by_text', 'k_text', 5),
       sharded_copy('by_uuid', 'k_uuid', 4), sharded_copy('by_num', 'k_num', 4),
       sharded_copy('by_date', 'k_date', 3), sharded_copy('by_ts', 'k_ts', 4);
-- Compares a query (with {t} for the table) on a sharded copy and on the local copy.
CREATE FUNCTION diff(sharded text, q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    agg text := CASE WHEN q ~* 'order by' THEN 'array_agg(r::text)' ELSE 'array_agg(r::text ORDER BY r::text)' END;
    a text[];
    b text[];
BEGIN
    EXECUTE format('SELECT %s FROM (%s) r', agg, replace(q, '{t}', sharded)) INTO a;
    EXECUTE format('SELECT %s FROM (%s) r', agg, replace(q, '{t}', 'items_local')) INTO b;
    IF a IS NOT DISTINCT FROM b THEN
        RETURN 'same (' || coalesce(cardinality(a), 0) || ' rows)';
    END IF;
    RETURN format('DIFFERENT: %s | %s', left(a::text, 300), left(b::text, 300));
END $$;
CREATE TABLE corpus (n serial, q text);
INSERT INTO corpus (q) VALUES
('SELECT * FROM {t}'),
('SELECT id, note FROM {t} WHERE id = 17'),
('SELECT * FROM {t} WHERE id = 0'),
('SELECT id FROM {t} WHERE id IN (1, 2, 3, 250, 499, 1000)'),
('SELECT id FROM {t} WHERE id = ANY (ARRAY[5, 6, NULL]::bigint[])'),
('SELECT id FROM {t} WHERE id BETWEEN 100 AND 120'),
('SELECT id FROM {t} WHERE id > 480 OR id < 5'),
('SELECT id FROM {t} WHERE NOT (id < 490)'),
('SELECT id, grp FROM {t} WHERE grp IS NULL'),
('SELECT id, grp FROM {t} WHERE grp IS NOT NULL AND grp = 3'),
('SELECT id, price FROM {t} WHERE price > 50.5'),
('SELECT id, price FROM {t} WHERE price IS NULL'),
('SELECT id, note FROM {t} WHERE note LIKE ''note 1%'''),
('SELECT id, note FROM {t} WHERE note = E''tab\there ''''quoted'''' \\ back'''),
('SELECT id, flag FROM {t} WHERE flag'),
('SELECT id, flag FROM {t} WHERE flag IS NOT TRUE'),
('SELECT id, flag FROM {t} WHERE flag IS UNKNOWN'),
('SELECT id, k_text FROM {t} WHERE k_text = ''日本 11'''),
('SELECT id, k_text FROM {t} WHERE k_text IN (''ümlaut 10'', ''emoji 🎉 12'', ''nope'')'),
('SELECT id, k_text FROM {t} WHERE k_text > ''plain 50'''),
('SELECT id, k_text FROM {t} WHERE upper(k_text) LIKE ''ÜMLAUT 1%'''),
('SELECT id, k_text FROM {t} WHERE length(k_text) = 9'),
('SELECT id FROM {t} WHERE k_uuid = md5(''42'')::uuid'),
('SELECT id FROM {t} WHERE k_num = 10.25'),
('SELECT id FROM {t} WHERE k_num = 10.250'),
('SELECT id FROM {t} WHERE k_num IN (1, 2.5, 3.75)'),
('SELECT id FROM {t} WHERE k_date = ''2024-01-05'''),
('SELECT id FROM {t} WHERE k_date < date ''2024-01-03'''),
('SELECT id FROM {t} WHERE k_ts = timestamptz ''2024-01-01 00:37:00+00'''),
('SELECT id FROM {t} WHERE k_ts >= timestamptz ''2024-01-10 00:00:00+00'' AND k_ts < timestamptz ''2024-01-11 00:00:00+00'''),
('SELECT id FROM {t} WHERE k_ts < now()'),
('SELECT count(*) FROM {t}'),
('SELECT count(*), count(grp), count(DISTINCT grp), sum(price), avg(price), min(note), max(k_ts) FROM {t}'),
('SELECT grp, count(*), sum(price) FROM {t} GROUP BY grp'),
('SELECT grp, count(*) FROM {t} GROUP BY grp HAVING count(*) > 70'),
('SELECT flag, bool_and(grp > 2), bool_or(price > 90) FROM {t} GROUP BY flag'),
('SELECT k_date, string_agg(id::text, '','' ORDER BY id) FROM {t} GROUP BY k_date'),
('SELECT grp, stddev(price)::numeric(20,6), variance(price)::numeric(20,6) FROM {t} GROUP BY grp'),
('SELECT count(*) FILTER (WHERE flag), count(*) FILTER (WHERE note IS NULL) FROM {t}'),
('SELECT DISTINCT grp FROM {t}'),
('SELECT DISTINCT ON (grp) grp, id FROM {t} ORDER BY grp, id'),
('SELECT id, price FROM {t} ORDER BY price DESC NULLS LAST, id LIMIT 10'),
('SELECT id FROM {t} ORDER BY id LIMIT 5 OFFSET 100'),
('SELECT id, note FROM {t} WHERE note IS NOT NULL ORDER BY note, id LIMIT 7'),
('SELECT id, k_text FROM {t} ORDER BY k_text COLLATE "C", id LIMIT 10'),
('SELECT id, k_text FROM {t} ORDER BY k_text DESC, id LIMIT 6'),
('SELECT id, grp FROM {t} ORDER BY grp DESC NULLS FIRST, id DESC LIMIT 12 OFFSET 3'),
('SELECT id, price FROM {t} WHERE flag ORDER BY price * 2 - id, id LIMIT 8'),
('SELECT grp FROM {t} ORDER BY grp NULLS FIRST FETCH FIRST 3 ROWS WITH TIES'),
('SELECT count(*) FROM (SELECT id FROM {t} LIMIT 7) s'),
('SELECT id FROM {t} WHERE upper(k_text) > ''PLAIN'' ORDER BY id LIMIT 4'),
('SELECT id, row_number() OVER (PARTITION BY grp ORDER BY id) FROM {t} WHERE id < 60'),
('SELECT id, sum(price) OVER (ORDER BY id) FROM {t} WHERE id <= 30 ORDER BY id'),
('SELECT a.id, b.id FROM {t} a JOIN {t} b ON a.id = b.id + 1 WHERE a.id < 20'),
('SELECT a.id, b.grp FROM {t} a LEFT JOIN {t} b ON b.id = a.grp WHERE a.id < 30'),
('SELECT id FROM {t} WHERE id IN (SELECT grp FROM {t} WHERE grp IS NOT NULL)'),
('SELECT id FROM {t} t1 WHERE EXISTS (SELECT 1 FROM {t} t2 WHERE t2.id = t1.id * 2) AND id < 40'),
('SELECT id FROM {t} t1 WHERE NOT EXISTS (SELECT 1 FROM {t} t2 WHERE t2.id = t1.id + 250)'),
('WITH g AS (SELECT grp, max(id) AS m FROM {t} GROUP BY grp) SELECT * FROM g'),
('SELECT (SELECT count(*) FROM {t}) AS total, (SELECT max(id) FROM {t} WHERE grp = 1) AS m'),
('SELECT x.id, x.n FROM (SELECT id, count(*) OVER () AS n FROM {t} WHERE grp = 2) x WHERE x.id % 10 = 0'),
('SELECT id FROM {t} WHERE id < 10 UNION SELECT id FROM {t} WHERE id > 495'),
('SELECT grp FROM {t} INTERSECT SELECT grp FROM {t} WHERE flag'),
('SELECT id FROM {t} WHERE id < 20 EXCEPT SELECT id FROM {t} WHERE id % 2 = 0'),
('SELECT id, l.x FROM {t}, LATERAL (SELECT {t}.id * 2 AS x) l WHERE id < 5'),
('SELECT id, g FROM {t}, generate_series(1, 2) g WHERE id < 4'),
('SELECT id FROM {t} WHERE random() < 2 AND id < 10'),
('SELECT id, coalesce(note, ''-'') FROM {t} WHERE id % 50 = 0'),
('SELECT id, CASE WHEN price > 50 THEN ''high'' ELSE ''low'' END FROM {t} WHERE id < 25'),
('SELECT id, price * 2 + 1 FROM {t} WHERE price * 2 + 1 > 150'),
('SELECT id FROM {t} WHERE abs(k_num - 50) < 1'),
('SELECT id FROM {t} WHERE k_ts::date = date ''2024-01-02'''),
('SELECT i.id FROM {t} i JOIN items_local l ON l.id = i.id WHERE l.grp = 4 AND i.flag'),
-- Aggregation: pushed whole (grouped by the key, or pinned), split into partial aggregates, or
-- computed on the coordinator.
('SELECT grp, avg(price), sum(k_num), count(note) FROM {t} GROUP BY grp'),
('SELECT flag, grp, count(*), max(price), min(k_date) FROM {t} GROUP BY flag, grp'),
('SELECT k_date, count(*), sum(id) FROM {t} GROUP BY k_date HAVING sum(id) > 3000'),
('SELECT grp, count(DISTINCT k_date), sum(DISTINCT grp) FROM {t} GROUP BY grp'),
('SELECT count(DISTINCT note), count(DISTINCT k_text) FROM {t}'),
('SELECT grp % 2, avg(id), avg(k_num) FROM {t} GROUP BY grp % 2'),
('SELECT note IS NULL, count(*), avg(price) FILTER (WHERE flag) FROM {t} GROUP BY 1'),
('SELECT grp, sum(price) / count(*), sum(price * 2) FROM {t} GROUP BY grp ORDER BY 2 DESC NULLS LAST, grp LIMIT 3'),
('SELECT max(k_ts), min(k_ts), max(k_uuid::text), min(k_text) FROM {t}'),
('SELECT grp, bool_and(flag), bool_or(flag), every(price > 10) FROM {t} GROUP BY grp'),
('SELECT grp, array_length(array_agg(id), 1), length(string_agg(note, '';'')) FROM {t} GROUP BY grp'),
('SELECT grp, array_agg(id ORDER BY id) FROM {t} WHERE id < 50 GROUP BY grp'),
('SELECT extract(dow FROM k_date), count(*) FROM {t} GROUP BY 1'),
('SELECT date_trunc(''day'', k_ts AT TIME ZONE ''UTC''), count(*), sum(price) FROM {t} GROUP BY 1'),
('SELECT count(*) FROM {t} WHERE price > (SELECT avg(price) FROM {t})'),
('SELECT grp, count(*) FROM {t} GROUP BY grp HAVING avg(price) > 49'),
('SELECT sum(id)::numeric / count(*) FROM {t}'),
('SELECT grp, rank() OVER (ORDER BY count(*) DESC, grp) FROM {t} GROUP BY grp'),
('SELECT grp, sum(count(*)) OVER () FROM {t} GROUP BY grp'),
('SELECT DISTINCT count(*) OVER (PARTITION BY grp) FROM {t}'),
('SELECT k_text, count(*) FROM {t} GROUP BY k_text HAVING count(*) > 0 ORDER BY k_text COLLATE "C" LIMIT 20'),
('SELECT id, sum(price) FROM {t} GROUP BY id HAVING sum(price) > 99'),
('SELECT id % 10, note IS NULL, count(*) FROM {t} GROUP BY 1, 2'),
('SELECT round(avg(price::float8)::numeric, 8), round(sum(price::float8)::numeric, 6) FROM {t}'),
('SELECT grp, round(avg(id::float8)::numeric, 8) FROM {t} GROUP BY grp'),
('SELECT count(*), sum(grp) FROM {t} WHERE id = 17'),
('SELECT count(*), max(id) FROM {t} WHERE k_text = ''plain 3'''),
('SELECT grp, count(*) FROM {t} WHERE id IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10) GROUP BY grp'),
('SELECT 1 AS one, count(*) FROM {t} GROUP BY 1'),
('SELECT count(*) FROM {t} GROUP BY grp HAVING grp > 2'),
('SELECT max(id) - min(id), count(*) FILTER (WHERE id % 2 = 0) FROM {t}'),
('SELECT grp, min(note COLLATE "C"), max(note COLLATE "C") FROM {t} GROUP BY grp'),
('SELECT grp, json_agg(id ORDER BY id)::text FROM {t} WHERE id < 20 GROUP BY grp'),
('SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY price) FROM {t}'),
('SELECT mode() WITHIN GROUP (ORDER BY grp) FROM {t}'),
('SELECT grp, count(*) FROM {t} GROUP BY ROLLUP (grp)'),
('SELECT grp, flag, count(*) FROM {t} GROUP BY GROUPING SETS ((grp), (flag), ())'),
('SELECT count(*) FROM (SELECT DISTINCT grp, flag FROM {t}) s'),
('SELECT grp, sum(price) FROM {t} GROUP BY grp ORDER BY sum(price) DESC NULLS LAST, grp'),
('SELECT avg(k_num), sum(k_num), min(k_num), max(k_num) FROM {t}'),
('SELECT sum(price) FILTER (WHERE note LIKE ''note%''), count(DISTINCT grp) FILTER (WHERE flag) FROM {t}'),
('SELECT grp, count(DISTINCT flag), count(DISTINCT k_date) FROM {t} GROUP BY grp'),
('SELECT count(DISTINCT (grp, flag)) FROM {t}'),
('SELECT sum(id) FROM {t} WHERE random() < 2'),
('SELECT grp, count(*) * (random() * 0) FROM {t} GROUP BY grp'),
('SELECT avg(interval ''1 day'' * grp), sum(interval ''1 hour'' * grp) FROM {t}'),
('SELECT grp, stddev_pop(id), var_pop(price), corr(id, price)::numeric(20,10) FROM {t} GROUP BY grp'),
('SELECT count(*) FROM {t} WHERE grp IS NULL GROUP BY flag'),
('SELECT grp, count(*) FROM {t} WHERE false GROUP BY grp'),
('SELECT count(*), sum(price), avg(id) FROM {t} WHERE id < 0'),
('SELECT x.grp, x.n FROM (SELECT grp, count(*) AS n FROM {t} GROUP BY grp) x WHERE x.n > 60'),
('SELECT grp FROM {t} GROUP BY grp ORDER BY grp NULLS FIRST'),
('SELECT flag, sum(price), sum(price * (1 - k_num / 1000)), avg(price), avg(k_num), count(*) FROM {t} WHERE k_date <= date ''2024-02-01'' GROUP BY flag ORDER BY flag');
SELECT c.n, t.name, diff(t.name, c.q)
FROM corpus c, (VALUES ('by_id'), ('by_text')) t(name) ORDER BY c.n, t.name;
SELECT count(*) AS corpus_size FROM corpus;
-- Filters on each supported key type pin the right shards.
SELECT t.name, diff(t.name, q.q)
FROM (VALUES ('by_uuid', 'SELECT id FROM {t} WHERE k_uuid IN (md5(''1'')::uuid, md5(''2'')::uuid)'),
             ('by_uuid', 'SELECT id FROM {t} WHERE k_uuid = md5(''300'')::uuid'),
             ('by_num', 'SELECT id FROM {t} WHERE k_num = 12.50'),
             ('by_num', 'SELECT id FROM {t} WHERE k_num = ANY (ARRAY[0.25, 0.5, 125])'),
             ('by_date', 'SELECT id FROM {t} WHERE k_date = date ''2024-01-07'''),
             ('by_date', 'SELECT id FROM {t} WHERE k_date IN (''2024-01-01'', ''2024-02-01'')'),
             ('by_ts', 'SELECT id FROM {t} WHERE k_ts = timestamptz ''2024-01-01 01:14:00+00'''),
             ('by_ts', 'SELECT id FROM {t} WHERE k_ts = ''2024-01-01 02:14:00+01'''),
             ('by_text', 'SELECT id FROM {t} WHERE k_text = ''emoji 🎉 7'''),
             ('by_text', 'SELECT id FROM {t} WHERE k_text = ANY (''{"plain 3","plain 4","日本 6"}'')')) AS q(name, q),
     LATERAL (SELECT q.name) t(name)
ORDER BY 1, 2;
-- Prepared statements with changing parameters (generic plans after five executions).
PREPARE s_by_id(bigint) AS SELECT id, note FROM by_id WHERE id = $1;
PREPARE l_by_id(bigint) AS SELECT id, note FROM items_local WHERE id = $1;
PREPARE s_by_text(text) AS SELECT id FROM by_text WHERE k_text = $1;
PREPARE l_by_text(text) AS SELECT id FROM items_local WHERE k_text = $1;
CREATE TEMP TABLE prepared_results (n int, sharded text, local text);
DO $$
DECLARE i int; a text; b text;
BEGIN
    FOR i IN 1..12 LOOP
        EXECUTE format('EXECUTE s_by_id(%s)', i * 37) INTO a;
        EXECUTE format('EXECUTE l_by_id(%s)', i * 37) INTO b;
        INSERT INTO prepared_results VALUES (i, a, b);
        EXECUTE format('EXECUTE s_by_text(%L)', 'plain ' || (i * 5 + 3)) INTO a;
        EXECUTE format('EXECUTE l_by_text(%L)', 'plain ' || (i * 5 + 3)) INTO b;
        INSERT INTO prepared_results VALUES (100 + i, a, b);
    END LOOP;
END $$;
SELECT count(*) AS executions, count(*) FILTER (WHERE sharded IS DISTINCT FROM local) AS mismatches,
       count(*) FILTER (WHERE sharded IS NULL) AS empty FROM prepared_results;
-- UPDATE and DELETE, then the same SELECTs.
CREATE FUNCTION on_both(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE replace(q, '{t}', 'by_id');
    EXECUTE replace(q, '{t}', 'items_local');
END $$;
SELECT on_both('UPDATE {t} SET price = price + 1 WHERE grp = 2');
SELECT on_both('UPDATE {t} SET note = NULL WHERE id = 7');
SELECT on_both('UPDATE {t} SET note = note || ''!'', flag = NOT flag WHERE id IN (8, 9, 10)');
SELECT on_both('DELETE FROM {t} WHERE id > 450');
SELECT on_both('DELETE FROM {t} WHERE note LIKE ''note 2%''');
SELECT on_both('INSERT INTO {t} SELECT id + 1000, k_text || ''x'', k_uuid, k_num, k_date, k_ts, grp, price, note, flag FROM items_local WHERE id < 20');
SELECT diff('by_id', 'SELECT * FROM {t}');
SELECT diff('by_id', 'SELECT grp, count(*), sum(price) FROM {t} GROUP BY grp');
SELECT diff('by_id', 'SELECT id, note, flag FROM {t} WHERE id IN (7, 8, 9, 10, 1001) ORDER BY id');
SELECT pgshard.unshard_table(name) FROM (VALUES ('by_id'), ('by_text'), ('by_uuid'), ('by_num'), ('by_date'), ('by_ts')) t(name);
DROP TABLE by_id, by_text, by_uuid, by_num, by_date, by_ts, items_local, corpus;
DROP FUNCTION diff(text, text), on_both(text), sharded_copy(text, text, int);
