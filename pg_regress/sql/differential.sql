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
-- Compares a query's rows on sharded tables (query a) and on local copies (query b), in order
-- when the query orders them.
CREATE FUNCTION compare(a_sql text, b_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    agg text := CASE WHEN a_sql ~* 'order by' THEN 'array_agg(r::text)' ELSE 'array_agg(r::text ORDER BY r::text)' END;
    a text[];
    b text[];
BEGIN
    EXECUTE format('SELECT %s FROM (%s) r', agg, a_sql) INTO a;
    EXECUTE format('SELECT %s FROM (%s) r', agg, b_sql) INTO b;
    IF a IS NOT DISTINCT FROM b THEN
        RETURN 'same (' || coalesce(cardinality(a), 0) || ' rows)';
    END IF;
    RETURN format('DIFFERENT: %s | %s', left(a::text, 300), left(b::text, 300));
END $$;
-- A query with {t} for the table, on a sharded copy and on the local copy.
CREATE FUNCTION diff(sharded text, q text) RETURNS text LANGUAGE sql
    RETURN compare(replace(q, '{t}', sharded), replace(q, '{t}', 'items_local'));
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
('SELECT grp, stddev(price), variance(price), var_pop(id), stddev_pop(k_num), stddev_samp(grp) FROM {t} GROUP BY grp'),
('SELECT stddev(id), var_samp(grp), stddev_samp(price) FILTER (WHERE flag), variance(DISTINCT grp) FROM {t}'),
('SELECT stddev(price), var_pop(price) FROM {t} WHERE id = 3'),
('SELECT grp, variance(price * 2 + 1) FROM {t} GROUP BY grp HAVING variance(price) > 100'),
('SELECT count(*) FROM {t} WHERE grp IS NULL GROUP BY flag'),
('SELECT grp, count(*) FROM {t} WHERE false GROUP BY grp'),
('SELECT count(*), sum(price), avg(id) FROM {t} WHERE id < 0'),
('SELECT x.grp, x.n FROM (SELECT grp, count(*) AS n FROM {t} GROUP BY grp) x WHERE x.n > 60'),
('SELECT grp FROM {t} GROUP BY grp ORDER BY grp NULLS FIRST'),
('SELECT flag, sum(price), sum(price * (1 - k_num / 1000)), avg(price), avg(k_num), count(*) FROM {t} WHERE k_date <= date ''2024-02-01'' GROUP BY flag ORDER BY flag'),
('SELECT id FROM {t} WHERE CASE WHEN grp > 3 THEN price > 50 WHEN grp IS NULL THEN flag ELSE note IS NULL END'),
('SELECT id FROM {t} WHERE CASE grp WHEN 1 THEN true WHEN 2 THEN flag END'),
('SELECT id, CASE grp WHEN 0 THEN ''zero'' WHEN 1 THEN note ELSE k_text END FROM {t} WHERE id % 7 = 1'),
('SELECT grp, sum(CASE WHEN flag THEN price ELSE 0 END), count(CASE WHEN note IS NULL THEN 1 END) FROM {t} GROUP BY grp'),
('SELECT sum(CASE grp WHEN 1 THEN 10 WHEN 2 THEN 2.5 ELSE 0 END), max(CASE WHEN id > 250 THEN k_date END), min(CASE WHEN flag THEN k_text END) FROM {t}'),
('SELECT CASE WHEN price > 50 THEN ''high'' WHEN price IS NULL THEN ''none'' ELSE ''low'' END AS band, count(*), avg(id) FROM {t} GROUP BY 1'),
('SELECT id FROM {t} WHERE CASE grp WHEN CASE WHEN id > 250 THEN 1 ELSE 2 END THEN true ELSE id = 3 END'),
('SELECT id, coalesce(price, grp, -1), coalesce(note, k_text) FROM {t} WHERE coalesce(grp, 9) > 4'),
('SELECT sum(coalesce(price, 0)), count(nullif(grp, 0)), sum(nullif(id % 4, 0)) FROM {t}'),
('SELECT id FROM {t} WHERE nullif(grp, 2) IS NULL'),
('SELECT grp, max(greatest(price, grp * 10.0, 5)), min(least(k_date, date ''2024-01-20'')) FROM {t} GROUP BY grp'),
('SELECT id FROM {t} WHERE greatest(grp, 2) = least(id % 5, 4)'),
('SELECT id, greatest(note, k_text), least(k_text, ''m'') FROM {t} WHERE id < 40');
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
-- A co-located schema (customers, orders, line items sharded by customer), a reference table
-- (nations), a local dimension table (parts), and analytic queries in the style of TPC-H, each
-- compared with local copies.
CREATE TABLE nations (nation text PRIMARY KEY, region text);
INSERT INTO nations VALUES ('FRANCE', 'EUROPE'), ('GERMANY', 'EUROPE'), ('JAPAN', 'ASIA'),
    ('CHINA', 'ASIA'), ('BRAZIL', 'AMERICA'), ('PERÚ', 'AMERICA'), ('ÉIRE', NULL);
CREATE TABLE parts (part int PRIMARY KEY, brand text, size int);
INSERT INTO parts SELECT p, 'Brand#' || (p % 7), p % 11 FROM generate_series(1, 60) p;
CREATE TABLE customers_l (cust_id int PRIMARY KEY, name text, nation text, segment text, balance numeric(12,2));
INSERT INTO customers_l
SELECT c, CASE c % 4 WHEN 0 THEN 'Zoë ' || c WHEN 1 THEN '顧客 ' || c ELSE 'Customer ' || c END,
       CASE WHEN c % 17 = 0 THEN NULL ELSE (ARRAY['FRANCE','GERMANY','JAPAN','CHINA','BRAZIL','PERÚ','ÉIRE','ATLANTIS'])[c % 8 + 1] END,
       (ARRAY['BUILDING','MACHINERY','AUTOMOBILE','HOUSEHOLD'])[c % 4 + 1],
       CASE WHEN c % 13 = 0 THEN NULL ELSE (c * 37 % 2000) - 500 END
FROM generate_series(1, 300) c;
CREATE TABLE orders_l (cust_id int NOT NULL, order_id int NOT NULL, odate date, status text, total numeric(12,2), PRIMARY KEY (cust_id, order_id));
INSERT INTO orders_l
SELECT c, o, date '2024-01-01' + (c * 7 + o * 3) % 90, (ARRAY['F','O','P','X'])[(c + o) % 4 + 1],
       CASE WHEN (c + o) % 19 = 0 THEN NULL ELSE (c * o * 13 % 5000) / 10.0 END
FROM generate_series(1, 250) c, generate_series(1, 5) o WHERE o <= c % 6;
CREATE TABLE lineitem_l (cust_id int NOT NULL, order_id int NOT NULL, line int NOT NULL, part int,
                         qty int, price numeric(12,2), discount numeric(4,2), shipdate date, returned bool);
INSERT INTO lineitem_l
SELECT o.cust_id, o.order_id, l, (o.cust_id + l * 7) % 60 + 1,
       CASE WHEN (o.cust_id + l) % 23 = 0 THEN NULL ELSE (o.cust_id * l) % 50 + 1 END,
       ((o.cust_id * 31 + l * 17) % 10000) / 10.0,
       ((o.cust_id + l) % 10) / 100.0,
       o.odate + (o.cust_id + l) % 40,
       CASE WHEN l % 5 = 0 THEN NULL ELSE (o.cust_id + l) % 3 = 0 END
FROM orders_l o, generate_series(1, 4) l WHERE l <= (o.cust_id + o.order_id) % 5;
CREATE TABLE customers (LIKE customers_l INCLUDING ALL);
CREATE TABLE orders (LIKE orders_l INCLUDING ALL);
CREATE TABLE lineitem (LIKE lineitem_l INCLUDING ALL);
INSERT INTO customers SELECT * FROM customers_l;
INSERT INTO orders SELECT * FROM orders_l;
INSERT INTO lineitem SELECT * FROM lineitem_l;
CREATE TABLE nations_r (LIKE nations INCLUDING ALL);
INSERT INTO nations_r SELECT * FROM nations;
SELECT pgshard.shard_table('customers', 'cust_id', shard_count => 6),
       pgshard.shard_table('orders', 'cust_id', colocate_with => 'customers'),
       pgshard.shard_table('lineitem', 'cust_id', colocate_with => 'customers'),
       pgshard.reference_table('nations_r');
CREATE FUNCTION diff_schema(q text) RETURNS text LANGUAGE sql
    RETURN compare(replace(replace(replace(replace(q, '{c}', 'customers'), '{o}', 'orders'), '{l}', 'lineitem'), '{n}', 'nations_r'),
                   replace(replace(replace(replace(q, '{c}', 'customers_l'), '{o}', 'orders_l'), '{l}', 'lineitem_l'), '{n}', 'nations'));
CREATE TABLE schema_corpus (n serial, q text);
INSERT INTO schema_corpus (q) VALUES
('SELECT * FROM {c}'),
('SELECT * FROM {o}'),
('SELECT * FROM {l}'),
('SELECT c.cust_id, c.name, o.order_id, o.total FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id'),
('SELECT c.cust_id, o.order_id FROM {c} c LEFT JOIN {o} o ON o.cust_id = c.cust_id'),
('SELECT c.cust_id, o.order_id FROM {c} c LEFT JOIN {o} o ON o.cust_id = c.cust_id AND o.status = ''F'''),
('SELECT c.cust_id, o.order_id FROM {c} c LEFT JOIN {o} o ON o.cust_id = c.cust_id WHERE o.order_id IS NULL'),
('SELECT o.cust_id, o.order_id, l.line FROM {o} o RIGHT JOIN {l} l ON l.cust_id = o.cust_id AND l.order_id = o.order_id AND o.status <> ''X'''),
('SELECT o.cust_id, o.order_id, l.cust_id, l.line FROM {o} o FULL JOIN {l} l ON l.cust_id = o.cust_id AND l.order_id = o.order_id'),
('SELECT cust_id, name FROM {c} c WHERE EXISTS (SELECT 1 FROM {o} o WHERE o.cust_id = c.cust_id AND o.total > 400)'),
('SELECT cust_id, name FROM {c} c WHERE NOT EXISTS (SELECT 1 FROM {o} o WHERE o.cust_id = c.cust_id)'),
('SELECT cust_id FROM {c} WHERE cust_id IN (SELECT cust_id FROM {l} WHERE qty > 45)'),
('SELECT cust_id FROM {c} WHERE cust_id NOT IN (SELECT cust_id FROM {o} WHERE status = ''P'')'),
('SELECT c.cust_id, o.order_id, l.line, l.qty FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id JOIN {l} l ON l.cust_id = o.cust_id AND l.order_id = o.order_id WHERE c.segment = ''BUILDING'''),
('SELECT c.cust_id, count(o.order_id) FROM {c} c LEFT JOIN {o} o ON o.cust_id = c.cust_id GROUP BY c.cust_id'),
('SELECT o.cust_id, o.order_id, count(l.line), sum(l.qty) FROM {o} o JOIN {l} l USING (cust_id, order_id) GROUP BY o.cust_id, o.order_id'),
('SELECT c.nation, count(*), sum(o.total) FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id GROUP BY c.nation'),
('SELECT o.status, sum(l.price * (1 - l.discount)) FROM {o} o JOIN {l} l USING (cust_id, order_id) GROUP BY o.status'),
('SELECT c.cust_id, o.order_id FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id WHERE c.cust_id = 42'),
('SELECT c.cust_id, o.order_id FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id WHERE o.cust_id IN (7, 8, 9)'),
('SELECT c.cust_id, o.order_id FROM {c} c LEFT JOIN {o} o ON o.cust_id = c.cust_id WHERE c.cust_id = 12'),
('SELECT c.cust_id, o.order_id FROM {c} c JOIN {o} o ON o.order_id = c.cust_id % 5 WHERE c.cust_id < 20'),
('SELECT c.cust_id, o.cust_id FROM {c} c JOIN {o} o ON o.total > c.balance AND o.cust_id = c.cust_id + 1 WHERE c.cust_id < 30'),
('SELECT a.cust_id, b.cust_id FROM {c} a JOIN {c} b ON a.cust_id = b.cust_id WHERE a.name LIKE ''Zoë%'''),
('SELECT a.cust_id, b.cust_id FROM {c} a JOIN {c} b ON a.nation = b.nation AND a.cust_id < b.cust_id WHERE a.cust_id < 20 AND b.cust_id < 40'),
('SELECT c.name, n.region FROM {c} c JOIN {n} n ON n.nation = c.nation'),
('SELECT c.name, n.region FROM {c} c LEFT JOIN {n} n ON n.nation = c.nation'),
('SELECT n.nation, count(c.cust_id) FROM {n} n LEFT JOIN {c} c ON c.nation = n.nation GROUP BY n.nation'),
('SELECT p.brand, sum(l.qty) FROM {l} l JOIN parts p ON p.part = l.part GROUP BY p.brand'),
('SELECT l.cust_id, l.line, p.size FROM {l} l JOIN parts p ON p.part = l.part AND p.size > 8 WHERE l.cust_id < 40'),
('SELECT c.segment, n.region, count(DISTINCT c.cust_id), sum(l.qty) FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id JOIN {l} l ON l.cust_id = o.cust_id AND l.order_id = o.order_id LEFT JOIN {n} n ON n.nation = c.nation GROUP BY 1, 2'),
-- TPC-H Q1 (pricing summary)
('SELECT returned, count(*) AS count_order, sum(qty) AS sum_qty, sum(price) AS sum_base, sum(price * (1 - discount)) AS sum_disc, avg(qty) AS avg_qty, avg(price) AS avg_price, avg(discount) AS avg_disc FROM {l} WHERE shipdate <= date ''2024-03-15'' GROUP BY returned ORDER BY returned'),
-- TPC-H Q3 (shipping priority)
('SELECT o.order_id, o.cust_id, sum(l.price * (1 - l.discount)) AS revenue, o.odate FROM {c} c JOIN {o} o ON c.cust_id = o.cust_id JOIN {l} l ON l.cust_id = o.cust_id AND l.order_id = o.order_id WHERE c.segment = ''BUILDING'' AND o.odate < date ''2024-02-15'' AND l.shipdate > date ''2024-02-15'' GROUP BY o.order_id, o.cust_id, o.odate ORDER BY revenue DESC, o.odate, o.cust_id, o.order_id LIMIT 10'),
-- TPC-H Q4 (order priority checking)
('SELECT o.status, count(*) AS order_count FROM {o} o WHERE o.odate >= date ''2024-01-15'' AND o.odate < date ''2024-03-01'' AND EXISTS (SELECT * FROM {l} l WHERE l.cust_id = o.cust_id AND l.order_id = o.order_id AND l.shipdate > o.odate + 20) GROUP BY o.status ORDER BY o.status'),
-- TPC-H Q5 (local supplier volume, with a local dimension)
('SELECT n.nation, sum(l.price * (1 - l.discount)) AS revenue FROM {c} c JOIN {o} o ON c.cust_id = o.cust_id JOIN {l} l ON l.cust_id = o.cust_id AND l.order_id = o.order_id JOIN {n} n ON n.nation = c.nation WHERE n.region = ''EUROPE'' GROUP BY n.nation ORDER BY revenue DESC'),
-- TPC-H Q6 (forecasting revenue change)
('SELECT sum(price * discount) AS revenue FROM {l} WHERE shipdate >= date ''2024-01-01'' AND shipdate < date ''2024-03-01'' AND discount BETWEEN 0.02 AND 0.06 AND qty < 24'),
-- TPC-H Q10 (returned item reporting)
('SELECT c.cust_id, c.name, sum(l.price * (1 - l.discount)) AS revenue, c.balance, c.nation FROM {c} c JOIN {o} o ON c.cust_id = o.cust_id JOIN {l} l ON l.cust_id = o.cust_id AND l.order_id = o.order_id WHERE l.returned GROUP BY c.cust_id, c.name, c.balance, c.nation ORDER BY revenue DESC, c.cust_id LIMIT 20'),
-- TPC-H Q12-like (shipping modes by status)
('SELECT o.status, sum(CASE WHEN l.qty > 25 THEN 1 ELSE 0 END) AS high, sum(CASE WHEN l.qty <= 25 THEN 1 ELSE 0 END) AS low FROM {o} o JOIN {l} l USING (cust_id, order_id) GROUP BY o.status ORDER BY o.status'),
-- TPC-H Q13 (customer distribution)
('SELECT c_count, count(*) AS custdist FROM (SELECT c.cust_id, count(o.order_id) AS c_count FROM {c} c LEFT JOIN {o} o ON c.cust_id = o.cust_id AND o.status <> ''X'' GROUP BY c.cust_id) s GROUP BY c_count ORDER BY custdist DESC, c_count DESC'),
-- TPC-H Q14 (promotion effect)
('SELECT round(100.00 * sum(CASE WHEN p.brand LIKE ''Brand#1%'' THEN l.price * (1 - l.discount) ELSE 0 END) / sum(l.price * (1 - l.discount)), 6) FROM {l} l JOIN parts p ON p.part = l.part WHERE l.shipdate >= date ''2024-02-01'''),
-- TPC-H Q18 (large volume customer)
('SELECT c.name, c.cust_id, o.order_id, o.odate, o.total, sum(l.qty) FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id JOIN {l} l ON l.cust_id = o.cust_id AND l.order_id = o.order_id GROUP BY c.name, c.cust_id, o.order_id, o.odate, o.total HAVING sum(l.qty) > 90 ORDER BY o.total DESC NULLS LAST, o.odate, c.cust_id, o.order_id'),
-- TPC-H Q22 (global sales opportunity)
('SELECT c.nation, count(*) AS numcust, sum(c.balance) AS totbal FROM {c} c WHERE c.balance > (SELECT avg(balance) FROM {c} WHERE balance > 0) AND NOT EXISTS (SELECT * FROM {o} o WHERE o.cust_id = c.cust_id) GROUP BY c.nation ORDER BY c.nation'),
('SELECT segment, count(*), avg(balance), min(balance), max(balance) FROM {c} GROUP BY segment'),
('SELECT segment, stddev(balance), var_pop(balance) FROM {c} GROUP BY segment'),
('SELECT o.status, stddev(l.qty), variance(l.price * (1 - l.discount)) FROM {o} o JOIN {l} l USING (cust_id, order_id) GROUP BY o.status'),
('SELECT nation, segment, count(*) FROM {c} GROUP BY nation, segment HAVING count(*) > 5'),
('SELECT cust_id, count(*), sum(total) FROM {o} GROUP BY cust_id HAVING count(*) >= 4'),
('SELECT status, count(DISTINCT cust_id), count(*), avg(total) FROM {o} GROUP BY status'),
('SELECT odate, count(*) FROM {o} GROUP BY odate ORDER BY count(*) DESC, odate LIMIT 5'),
('SELECT date_trunc(''month'', odate)::date, sum(total) FROM {o} GROUP BY 1'),
('SELECT part, sum(qty), count(*) FILTER (WHERE returned) FROM {l} GROUP BY part'),
('SELECT returned, count(*), sum(qty), bool_and(qty > 0), bool_or(discount = 0) FROM {l} GROUP BY returned'),
('SELECT cust_id, order_id, string_agg(line::text, ''-'' ORDER BY line) FROM {l} WHERE cust_id < 15 GROUP BY cust_id, order_id'),
('SELECT count(*), count(qty), count(DISTINCT qty), sum(qty), avg(qty) FROM {l}'),
('SELECT max(price), min(shipdate), max(shipdate) FROM {l} WHERE part = 5'),
('SELECT cust_id, order_id, line, qty FROM {l} ORDER BY qty DESC NULLS LAST, cust_id, order_id, line LIMIT 15'),
('SELECT cust_id, name FROM {c} ORDER BY balance NULLS FIRST, cust_id LIMIT 10 OFFSET 5'),
('SELECT DISTINCT nation FROM {c}'),
('SELECT DISTINCT ON (nation) nation, cust_id FROM {c} ORDER BY nation, cust_id DESC'),
('SELECT cust_id FROM {c} WHERE nation IS NULL UNION SELECT cust_id FROM {o} WHERE total IS NULL'),
('SELECT cust_id FROM {c} INTERSECT SELECT cust_id FROM {o}'),
('SELECT cust_id FROM {c} EXCEPT ALL SELECT cust_id FROM {o}'),
('SELECT cust_id, rank() OVER (PARTITION BY nation ORDER BY balance DESC NULLS LAST, cust_id) FROM {c}'),
('SELECT cust_id, order_id, sum(total) OVER (PARTITION BY cust_id ORDER BY order_id) FROM {o}'),
('SELECT o.cust_id, o.order_id, lag(o.total) OVER (ORDER BY o.cust_id, o.order_id) FROM {o} o WHERE o.cust_id < 50'),
('WITH big AS (SELECT cust_id, sum(total) AS t FROM {o} GROUP BY cust_id) SELECT c.name, big.t FROM {c} c JOIN big ON big.cust_id = c.cust_id WHERE big.t > 500'),
('WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT r.n, count(o.*) FROM r LEFT JOIN {o} o ON o.order_id = r.n GROUP BY r.n'),
('SELECT c.cust_id, (SELECT count(*) FROM {o} o WHERE o.cust_id = c.cust_id) FROM {c} c WHERE c.cust_id < 40'),
('SELECT c.cust_id, x.m FROM {c} c, LATERAL (SELECT max(total) AS m FROM {o} o WHERE o.cust_id = c.cust_id) x WHERE c.cust_id BETWEEN 100 AND 130'),
('SELECT c.cust_id FROM {c} c WHERE c.balance > ALL (SELECT total FROM {o} o WHERE o.cust_id = c.cust_id AND o.total IS NOT NULL) AND c.cust_id < 60'),
('SELECT c.cust_id, o.order_id, l.line FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id LEFT JOIN {l} l ON l.cust_id = o.cust_id AND l.order_id = o.order_id WHERE c.cust_id < 25'),
('SELECT o.cust_id, count(*) FROM {o} o JOIN {l} l ON l.cust_id = o.cust_id WHERE o.order_id = 1 GROUP BY o.cust_id'),
('SELECT c.name, o.order_id FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id WHERE c.name ~ ''^顧客'' AND o.status IN (''F'', ''O'')'),
('SELECT c.cust_id, o.order_id FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id WHERE random() < 2 AND c.cust_id < 10'),
('SELECT c.cust_id, o.order_id FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id AND upper(c.name) LIKE ''ZOË%'''),
('SELECT c.cust_id, o.order_id FROM {c} c JOIN {o} o ON c.cust_id = o.cust_id WHERE o.odate = (SELECT max(odate) FROM {o})'),
('SELECT count(*) FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id JOIN {l} l ON l.cust_id = c.cust_id'),
('SELECT count(*), sum(l.qty) FROM {o} o JOIN {l} l ON l.cust_id = o.cust_id AND l.order_id = o.order_id WHERE o.status = ''X'' AND l.returned IS NOT TRUE'),
('SELECT c.cust_id FROM {c} c WHERE c.cust_id = ANY (ARRAY(SELECT cust_id FROM {o} WHERE total > 480))'),
('SELECT nation, count(*) FROM {c} WHERE cust_id IN (SELECT o.cust_id FROM {o} o JOIN {l} l ON l.cust_id = o.cust_id AND l.order_id = o.order_id WHERE l.qty = 50) GROUP BY nation'),
('SELECT c.segment, percentile_disc(0.5) WITHIN GROUP (ORDER BY o.total) FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id GROUP BY c.segment'),
('SELECT c.cust_id, o.order_id FROM {c} c FULL JOIN {o} o ON o.cust_id = c.cust_id AND c.segment = ''HOUSEHOLD'' WHERE c.cust_id IS NULL OR o.cust_id IS NULL'),
('SELECT c.cust_id, o.order_id, o.status FROM {c} c LEFT JOIN {o} o ON o.cust_id = c.cust_id WHERE o.cust_id IS NULL'),
('SELECT c.cust_id FROM {c} c LEFT JOIN {o} o ON o.cust_id = c.cust_id WHERE o.cust_id IS NULL AND o.status IS DISTINCT FROM ''F'''),
('SELECT current_date > date ''2000-01-01'' AS later, count(*), sum(total) FROM {o} GROUP BY 1'),
('SELECT c.segment, count(*) FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id JOIN {l} l ON l.cust_id = o.cust_id AND l.order_id = o.order_id GROUP BY c.segment ORDER BY 2 DESC, 1'),
('SELECT DISTINCT c.nation, o.status FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id'),
('SELECT c.cust_id, o.order_id, o.total FROM {c} c JOIN {o} o ON o.cust_id = c.cust_id ORDER BY o.total DESC NULLS LAST, c.cust_id, o.order_id LIMIT 7'),
('SELECT c.cust_id, o.order_id FROM {c} c LEFT JOIN {o} o ON o.cust_id = c.cust_id ORDER BY o.order_id NULLS FIRST, c.cust_id DESC LIMIT 9 OFFSET 2'),
-- The reference table alone, and joined to the sharded tables in every shape.
('SELECT * FROM {n}'),
('SELECT region, count(*), string_agg(nation, '','' ORDER BY nation) FROM {n} GROUP BY region'),
('SELECT a.nation, b.nation FROM {n} a JOIN {n} b ON a.region = b.region AND a.nation < b.nation'),
('SELECT c.cust_id, n.region FROM {c} c JOIN {n} n ON n.nation = c.nation JOIN {o} o ON o.cust_id = c.cust_id WHERE o.status = ''F'''),
('SELECT n.region, sum(o.total), count(*) FROM {o} o JOIN {c} c USING (cust_id) JOIN {n} n ON n.nation = c.nation GROUP BY n.region ORDER BY 1 NULLS FIRST'),
('SELECT c.cust_id FROM {c} c WHERE c.nation IN (SELECT nation FROM {n} WHERE region = ''ASIA'')'),
('SELECT c.cust_id, c.nation FROM {c} c WHERE NOT EXISTS (SELECT 1 FROM {n} n WHERE n.nation = c.nation)'),
('SELECT n.nation FROM {n} n WHERE EXISTS (SELECT 1 FROM {c} c WHERE c.nation = n.nation AND c.balance > 1000)'),
('SELECT n.region, count(DISTINCT c.segment), count(c.cust_id) FROM {c} c RIGHT JOIN {n} n ON n.nation = c.nation GROUP BY n.region'),
('SELECT c.cust_id, n.nation FROM {c} c FULL JOIN {n} n ON n.nation = c.nation WHERE c.cust_id IS NULL OR c.cust_id < 10'),
('SELECT c.segment, n.region, p.brand, sum(l.qty) FROM {l} l JOIN {c} c USING (cust_id) JOIN {n} n ON n.nation = c.nation JOIN parts p ON p.part = l.part GROUP BY 1, 2, 3'),
('SELECT c.cust_id, n.region FROM {c} c LEFT JOIN {n} n ON n.nation = c.nation ORDER BY n.region NULLS FIRST, c.cust_id LIMIT 12'),
('SELECT n.region, avg(c.balance), min(c.name), max(o.odate) FROM {c} c JOIN {n} n ON n.nation = c.nation LEFT JOIN {o} o ON o.cust_id = c.cust_id AND o.total > 300 GROUP BY n.region'),
('SELECT c.cust_id, (SELECT region FROM {n} n WHERE n.nation = c.nation) FROM {c} c WHERE c.cust_id < 30');
SELECT n, diff_schema(q) FROM schema_corpus ORDER BY n;
-- Writes to the reference table (every copy) and to its local twin, then the same queries.
CREATE FUNCTION on_both_nations(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE replace(q, '{n}', 'nations_r');
    EXECUTE replace(q, '{n}', 'nations');
END $$;
SELECT on_both_nations('UPDATE {n} SET region = ''EUROPE'' WHERE region IS NULL');
SELECT on_both_nations('INSERT INTO {n} VALUES (''ATLANTIS'', ''OCEAN''), (''ÅLAND'', ''EUROPE'')');
SELECT on_both_nations('DELETE FROM {n} WHERE nation = ''CHINA''');
SELECT n, diff_schema(q) FROM schema_corpus WHERE q LIKE '%{n}%' ORDER BY n;
-- With statistics and visibility maps on every shard (VACUUM ANALYZE reaches the shards) and
-- on the local copies, the workers and the coordinator plan differently; the answers must not
-- change. Only the queries that differ are listed.
VACUUM ANALYZE customers, orders, lineitem, nations_r, customers_l, orders_l, lineitem_l, nations, parts;
SELECT count(*) AS shards_analyzed FROM pgshard.shards s,
  LATERAL pgshard.run_command_on_workers(format(
    $$SELECT analyze_count FROM pg_stat_user_tables WHERE relid = %L::regclass$$, s.shard_name)) w
  WHERE s.table_name IN ('customers'::regclass, 'orders'::regclass, 'lineitem'::regclass, 'nations_r'::regclass)
    AND w.worker = s.worker AND w.result::int > 0;
SELECT n, d FROM schema_corpus, LATERAL diff_schema(q) d WHERE d NOT LIKE 'same%' ORDER BY n;
SELECT (SELECT count(*) FROM corpus) + (SELECT count(*) FROM schema_corpus) AS queries_in_the_corpus;
-- Co-located joins and pushed aggregates show in EXPLAIN.
EXPLAIN (COSTS OFF) SELECT o.status, sum(l.price * (1 - l.discount)) FROM orders o JOIN lineitem l USING (cust_id, order_id) GROUP BY o.status;
SELECT pgshard.unshard_table(t) FROM unnest(ARRAY['customers', 'orders', 'lineitem']) t;
SELECT pgshard.unshard_table('nations_r');
DROP TABLE customers, orders, lineitem, customers_l, orders_l, lineitem_l, nations, nations_r, parts, schema_corpus;
DROP FUNCTION diff_schema(text), on_both_nations(text);
SELECT pgshard.unshard_table(name) FROM (VALUES ('by_id'), ('by_text'), ('by_uuid'), ('by_num'), ('by_date'), ('by_ts')) t(name);
DROP TABLE by_id, by_text, by_uuid, by_num, by_date, by_ts, items_local, corpus;
DROP FUNCTION diff(text, text), on_both(text), sharded_copy(text, text, int), compare(text, text);
