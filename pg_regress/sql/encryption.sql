-- Transparent column encryption: the five encrypted types on local and sharded tables, the
-- blind index pushed to the workers, keys and rotation, tampering, and who may see the key.
\set VERBOSITY default

-- Round trip of every type: NULL, empty, unicode, large values, extreme numbers.
CREATE TABLE enc_local (
    id int PRIMARY KEY,
    t pgshard.encrypted_text,
    b pgshard.encrypted_bytea,
    i pgshard.encrypted_int8,
    n pgshard.encrypted_numeric,
    ts pgshard.encrypted_timestamptz
);
INSERT INTO enc_local VALUES
    (1, 'héllo ☃ 日本語', '\x0001ff', 9223372036854775807, 1.50, '2024-01-02 03:04:05+00'),
    (2, '', '\x', -9223372036854775808, -0.000001, 'infinity'),
    (3, NULL, NULL, NULL, NULL, NULL),
    (4, 'it''s "quoted" \ back', '\xdeadbeef', 0, 'NaN', '-infinity'),
    (5, repeat('long ', 20000), decode(repeat('ab', 50000), 'hex'), 42,
        12345678901234567890123456789012345678901234567890.0000000001, '1970-01-01 00:00:00+00');
SELECT id, left(t, 20) AS t, length(t) AS t_len, left(b::text, 12) AS b, length(b) AS b_len,
       i, n, ts
FROM enc_local ORDER BY id;
-- The plaintext type's functions and operators work through the implicit cast.
SELECT id, upper(t), i - 1, n * 2, date_trunc('day', ts) FROM enc_local WHERE id IN (1, 4) ORDER BY id;
-- Casts both ways, and assignment from the plaintext type.
SELECT 'abc'::text::pgshard.encrypted_text::text, 7::bigint::pgshard.encrypted_int8::bigint;
CREATE TEMP TABLE plain_source AS SELECT 'from text'::text AS t, 99::bigint AS i;
INSERT INTO enc_local (id, t, i) SELECT 6, t, i FROM plain_source;
SELECT t, i FROM enc_local WHERE id = 6;
-- Stored values are envelopes: 50 bytes of overhead, a fresh nonce per value.
SELECT length(pgshard.envelope(t)) - octet_length(t::text) AS overhead,
       pgshard.envelope(t) <> pgshard.envelope('héllo ☃ 日本語'::pgshard.encrypted_text) AS fresh_nonce,
       pgshard.blind_index(t) = pgshard.blind_index('héllo ☃ 日本語'::pgshard.encrypted_text) AS same_tag
FROM enc_local WHERE id = 1;
-- Bad input gets the plaintext type's error.
SELECT 'abc'::pgshard.encrypted_int8;
SELECT '99999999999999999999'::pgshard.encrypted_int8;
SELECT 'not a time'::pgshard.encrypted_timestamptz;
SELECT '1.2.3'::pgshard.encrypted_numeric;
SELECT '\xZZ'::pgshard.encrypted_bytea;

-- Equality, IN, GROUP BY, DISTINCT and joins compare tags; numerics compare by value.
INSERT INTO enc_local (id, t, n) VALUES (7, 'héllo ☃ 日本語', 1.5000), (8, '', 1.5);
SELECT id FROM enc_local WHERE t = 'héllo ☃ 日本語' ORDER BY id;
SELECT id FROM enc_local WHERE t <> '' ORDER BY id;
SELECT id FROM enc_local WHERE n = 1.5 ORDER BY id;
SELECT id FROM enc_local WHERE n = '1.5000' ORDER BY id;  -- tags of canonical numerics
SELECT id FROM enc_local WHERE t IN ('', 'from text') ORDER BY id;
SELECT t, count(*) FROM enc_local WHERE length(t) < 30 GROUP BY t ORDER BY t;
SELECT count(DISTINCT n) AS distinct_n, count(DISTINCT t) AS distinct_t FROM enc_local;
SET enable_sort = off;  -- a hash aggregate, hashing tags
SELECT n, count(*) FROM enc_local GROUP BY n ORDER BY count(*) DESC, n NULLS FIRST;
RESET enable_sort;
SELECT a.id, b.id FROM enc_local a JOIN enc_local b ON a.t = b.t AND a.id < b.id ORDER BY 1, 2;
-- Ranges, ORDER BY and LIKE decrypt (on the coordinator).
SELECT id, i FROM enc_local WHERE i > 0 ORDER BY i;
SELECT id FROM enc_local WHERE ts BETWEEN '2000-01-01' AND 'infinity' ORDER BY ts;
SELECT id FROM enc_local WHERE t LIKE 'h%' ORDER BY id;
SELECT min(n), max(n), min(ts), max(i) FROM enc_local WHERE n <> 'NaN';
-- Hash and btree indexes on encrypted columns.
CREATE INDEX enc_local_t_hash ON enc_local USING hash (t);
CREATE INDEX enc_local_i ON enc_local (i);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM enc_local WHERE t = 'from text';
SELECT id FROM enc_local WHERE t = 'from text';
SELECT id FROM enc_local WHERE i < 1 ORDER BY id;
RESET enable_seqscan;

-- Sharded: workers hold bytea envelopes; equality runs there on the tags.
CREATE TABLE t_user (user_id bigint PRIMARY KEY, name text, tel pgshard.encrypted_text,
                     balance pgshard.encrypted_numeric);
CREATE INDEX t_user_tel ON t_user USING hash (tel);
CREATE UNIQUE INDEX t_user_tel_unique ON t_user (user_id, tel);
SELECT pgshard.shard_table('t_user', 'user_id', shard_count => 4);
INSERT INTO t_user SELECT g, 'user ' || g, '+1-555-' || lpad(g::text, 4, '0'), g * 1.25
FROM generate_series(1, 40) g;
INSERT INTO t_user VALUES (41, 'shared phone', '+1-555-0007', NULL), (42, 'no phone', NULL, 0);
SELECT * FROM t_user WHERE tel = '+1-555-0007' ORDER BY user_id;
EXPLAIN (VERBOSE, COSTS OFF) SELECT user_id FROM t_user WHERE tel = '+1-555-0007';
SELECT user_id FROM t_user WHERE tel IN ('+1-555-0003', '+1-555-0004', 'nobody') ORDER BY 1;
EXPLAIN (VERBOSE, COSTS OFF) SELECT user_id FROM t_user WHERE tel IN ('+1-555-0003', '+1-555-0004');
SELECT count(*) FROM t_user WHERE tel <> '+1-555-0007';
SELECT user_id FROM t_user WHERE tel = '+1-555-0009' AND user_id = 9;
EXPLAIN (VERBOSE, COSTS OFF) SELECT user_id FROM t_user WHERE tel = '+1-555-0009' AND user_id = 9;
-- A parameter of the encrypted type is encrypted once and its tag compared on the workers.
PREPARE by_tel(pgshard.encrypted_text) AS SELECT user_id FROM t_user WHERE tel = $1 ORDER BY 1;
EXECUTE by_tel('+1-555-0007');
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE by_tel('+1-555-0007');
-- Under a generic plan the tag is a parameter of the statement prepared on the workers.
SET plan_cache_mode = force_generic_plan;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE by_tel('+1-555-0007');
EXECUTE by_tel('+1-555-0007');
EXECUTE by_tel('+1-555-0008');
EXECUTE by_tel('+1-555-0007');
EXECUTE by_tel('none');
RESET plan_cache_mode;
-- Ranges, LIKE and ORDER BY are evaluated on the coordinator, never pushed as byte order.
EXPLAIN (VERBOSE, COSTS OFF) SELECT user_id FROM t_user WHERE tel LIKE '%0007';
SELECT user_id FROM t_user WHERE tel LIKE '%0007' ORDER BY 1;
EXPLAIN (VERBOSE, COSTS OFF) SELECT user_id, tel FROM t_user ORDER BY tel DESC LIMIT 3;
SELECT user_id, tel FROM t_user ORDER BY tel DESC LIMIT 3;
SELECT user_id FROM t_user WHERE balance > 48 ORDER BY 1;
SELECT tel, count(*) FROM t_user GROUP BY tel HAVING count(*) > 1;
SELECT sum(balance), avg(balance) FROM t_user;
-- Joins on encrypted columns, sharded with local.
CREATE TABLE blocked (tel pgshard.encrypted_text);
INSERT INTO blocked VALUES ('+1-555-0002'), ('+1-555-0007'), ('+1-999-0000');
SELECT u.user_id FROM t_user u JOIN blocked b ON u.tel = b.tel ORDER BY 1;
SELECT count(*) FROM t_user u WHERE NOT EXISTS (SELECT 1 FROM blocked b WHERE b.tel = u.tel);
-- Writes: UPDATE by tag, DELETE by tag, INSERT ... RETURNING decrypts on the coordinator.
UPDATE t_user SET tel = '+1-555-9999' WHERE tel = '+1-555-0040';
SELECT user_id, tel FROM t_user WHERE user_id = 40;
DELETE FROM t_user WHERE tel = '+1-555-9999' RETURNING user_id, tel;
INSERT INTO t_user VALUES (40, 'back', '+1-555-0040', 50) RETURNING tel, balance;

-- On the workers: bytea columns, indexes on the tag, no plaintext.
SELECT 't_user_' || min(shard_id) AS shard_a, 't_user_' || max(shard_id) AS shard_b
FROM pgshard.shard JOIN pgshard.placement USING (shard_id) JOIN pgshard.worker USING (worker_id)
WHERE table_oid = 't_user'::regclass AND name = 'w1' \gset
\c pgshard - 127.0.0.1 :worker_1_port
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = ('public.' || :'shard_a')::regclass AND attnum > 0 ORDER BY attnum;
SELECT regexp_replace(indexdef, '_\d+', '_N', 'g') FROM pg_indexes
WHERE tablename = :'shard_a' ORDER BY 1;
SELECT count(*) AS rows, count(*) FILTER (WHERE position('+1-555'::bytea IN tel) > 0) AS plaintext
FROM (SELECT tel FROM :shard_a UNION ALL SELECT tel FROM :shard_b) s;
SELECT DISTINCT get_byte(tel, 0) AS version, get_byte(tel, 1) AS kind, length(tel) AS len
FROM :shard_a WHERE tel IS NOT NULL;
-- Envelopes come back as bytea text, which the coordinator decodes itself when it is hex (the
-- default); a worker set to the escape form is read through byteain, with the same values.
ALTER DATABASE pgshard SET bytea_output = escape;
\c pgshard - 127.0.0.1 :coordinator_port
SELECT user_id, tel, balance FROM t_user WHERE user_id IN (1, 2, 3, 4, 41, 42) ORDER BY user_id;
COPY (SELECT user_id, tel FROM t_user WHERE user_id BETWEEN 5 AND 8 ORDER BY user_id) TO STDOUT;
\c pgshard - 127.0.0.1 :worker_1_port
ALTER DATABASE pgshard RESET bytea_output;
\c pgshard - 127.0.0.1 :coordinator_port

-- Sharding by an encrypted column hashes its tag: equal plaintexts land on one shard, and
-- equality on the key is routed to that shard without decrypting anything.
CREATE TABLE by_tel (tel pgshard.encrypted_text PRIMARY KEY, note text);
INSERT INTO by_tel SELECT '+1-555-' || g, 'note ' || g FROM generate_series(1, 20) g;
SELECT pgshard.shard_table('by_tel', 'tel', shard_count => 4);
SELECT key_family FROM pgshard.colocation c JOIN pgshard.sharded_table t USING (colocation_id)
WHERE t.table_oid = 'by_tel'::regclass;
SELECT note FROM by_tel WHERE tel = '+1-555-7';
EXPLAIN (COSTS OFF) SELECT note FROM by_tel WHERE tel = '+1-555-7';
INSERT INTO by_tel VALUES ('+1-555-7', 'duplicate');
SELECT count(*) FROM by_tel WHERE tel IN ('+1-555-3', '+1-555-4', '+1-555-99');
-- Every row is physically on the shard its key's tag hashes to.
SELECT s.shard_id, w.result::int AS rows_on_worker,
       (SELECT count(*) FROM by_tel b, pgshard.shard_for('by_tel', b.tel) f
        WHERE f.shard_id = s.shard_id) AS rows_by_shard_for
FROM pgshard.shards s,
     LATERAL pgshard.run_command_on_workers(format('SELECT count(*) FROM %s', s.shard_name)) w
WHERE s.table_name = 'by_tel'::regclass AND w.worker = s.worker ORDER BY s.shard_id;
SELECT pgshard.unshard_table('by_tel');
SELECT count(*) FROM by_tel;
DROP TABLE by_tel;

-- Unsharding brings the envelopes back as they are.
CREATE TABLE enc_roundtrip (id int PRIMARY KEY, secret pgshard.encrypted_text);
INSERT INTO enc_roundtrip VALUES (1, 'round'), (2, 'trip'), (3, NULL);
SELECT pgshard.shard_table('enc_roundtrip', 'id', shard_count => 2);
SELECT pgshard.unshard_table('enc_roundtrip');
SELECT * FROM enc_roundtrip ORDER BY id;
SELECT id FROM enc_roundtrip WHERE secret = 'trip';

-- Key rotation: new values under the new key, reencrypt moves the old ones, then retire.
SELECT key_id, state FROM pgshard.data_keys ORDER BY key_id;
SELECT pgshard.rotate_key();
INSERT INTO t_user VALUES (43, 'after rotation', '+1-555-0043', 43);
SELECT pgshard.key_id(tel) AS key, count(*) FROM t_user WHERE tel IS NOT NULL GROUP BY 1 ORDER BY 1;
SELECT * FROM pgshard.key_usage ORDER BY relation, column_name, key_id;
SELECT pgshard.retire_key(1);
SELECT pgshard.retire_key(2);
CALL pgshard.reencrypt('t_user', 15);
SELECT relation, state, to_key, rows_done, rows_to_go FROM pgshard.reencrypt_progress;
CALL pgshard.reencrypt('enc_local');
CALL pgshard.reencrypt('enc_roundtrip');
CALL pgshard.reencrypt('blocked');
SELECT * FROM pgshard.key_usage WHERE key_id = 1;
-- Every value is still readable and still found by its tag.
SELECT count(*), count(tel), sum(balance) FROM t_user;
SELECT user_id FROM t_user WHERE tel = '+1-555-0007' ORDER BY 1;
SELECT id, left(t, 10), i, n FROM enc_local ORDER BY id;
-- Rerunning finds nothing left to do.
CALL pgshard.reencrypt('t_user');
SELECT pgshard.retire_key(1);
SELECT key_id, state, retired_at IS NOT NULL AS retired FROM pgshard.data_keys ORDER BY key_id;
SELECT pgshard.reencrypt_batch('t_user', 0);
CREATE TABLE no_secrets (x int);
CALL pgshard.reencrypt('no_secrets');
DROP TABLE no_secrets;

-- Tampering on a worker is detected: a flipped bit, a truncated value, another type's value.
\c pgshard - 127.0.0.1 :worker_1_port
SELECT min(user_id) AS victim FROM :shard_a \gset
UPDATE :shard_a SET tel = set_byte(tel, 40, get_byte(tel, 40) # 1) WHERE user_id = :victim;
\c pgshard - 127.0.0.1 :coordinator_port
SELECT user_id, tel FROM t_user ORDER BY user_id;
\c pgshard - 127.0.0.1 :worker_1_port
UPDATE :shard_a SET tel = substring(tel FROM 1 FOR 30) WHERE user_id = :victim;
\c pgshard - 127.0.0.1 :coordinator_port
SELECT user_id, tel FROM t_user ORDER BY user_id;
\c pgshard - 127.0.0.1 :worker_1_port
UPDATE :shard_a SET tel = balance WHERE user_id = :victim;
\c pgshard - 127.0.0.1 :coordinator_port
SELECT user_id, tel FROM t_user ORDER BY user_id;
DELETE FROM t_user WHERE user_id = :victim;

-- Envelope I/O: a dump that stays encrypted, restored only when it authenticates.
CREATE TABLE enc_copy (LIKE enc_local);
SET pgshard.envelope_io = on;
SELECT left(format('%s', t), 14) AS version_kind_key FROM enc_local WHERE id = 1;
COPY enc_local TO '/tmp/pgshard_regress_envelopes.copy';
COPY enc_copy FROM '/tmp/pgshard_regress_envelopes.copy';
INSERT INTO enc_copy (id, t) VALUES (100, '\x0102');
INSERT INTO enc_copy (id, t) VALUES (100, 'plaintext');
-- (Two hex digits of the ciphertext changed: to 00 if they happen to be ff already.)
SELECT overlay(x PLACING CASE WHEN substr(x, 100, 2) = 'ff' THEN '00' ELSE 'ff' END FROM 100 FOR 2) AS tampered
FROM (SELECT format('%s', t) AS x FROM enc_local WHERE id = 1) s \gset
\set VERBOSITY terse
INSERT INTO enc_copy (id, t) VALUES (100, :'tampered');
\set VERBOSITY default
RESET pgshard.envelope_io;
SELECT (SELECT count(*) FROM enc_copy) AS copied,
       (SELECT count(*) FROM enc_copy c JOIN enc_local l USING (id)
        WHERE c.t IS NOT DISTINCT FROM l.t AND c.b IS NOT DISTINCT FROM l.b
          AND c.n IS NOT DISTINCT FROM l.n AND c.ts IS NOT DISTINCT FROM l.ts) AS equal;

-- Key file errors: unset, missing, readable by others, malformed, another master key.
SET pgshard.key_file = '';
SELECT 'x'::pgshard.encrypted_text;
SET pgshard.key_file = '/nonexistent/master.key';
SELECT t FROM enc_local WHERE id = 1;
\! head -c 32 /dev/urandom > "$PGSHARD_CLUSTER_DIR/other.key"; chmod 644 "$PGSHARD_CLUSTER_DIR/other.key"
SELECT set_config('pgshard.key_file', current_setting('data_directory') || '/../other.key', false) IS NOT NULL AS set;
SELECT t FROM enc_local WHERE id = 1;
\! chmod 600 "$PGSHARD_CLUSTER_DIR/other.key"
SELECT t FROM enc_local WHERE id = 1;
\! echo "not a key" > "$PGSHARD_CLUSTER_DIR/other.key"
SELECT t FROM enc_local WHERE id = 1;
RESET pgshard.key_file;
SELECT left(t, 5) FROM enc_local WHERE id = 1;

-- Non-superusers cannot see the key file setting, the keys or the usage, nor manage keys.
CREATE ROLE regress_enc_user;
GRANT SELECT ON enc_local TO regress_enc_user;
SET ROLE regress_enc_user;
SHOW pgshard.key_file;
SELECT count(*) FROM pg_settings WHERE name = 'pgshard.key_file';
SELECT current_setting('pgshard.key_file');
SELECT * FROM pgshard.keys;
SELECT * FROM pgshard.key_usage;
SELECT key_id, state FROM pgshard.data_keys ORDER BY key_id;
SELECT pgshard.rotate_key();
SET pgshard.key_file = '/tmp/x';
-- Nor mark another role's table as re-encrypted.
SELECT pgshard.reencrypt_finish('enc_local');
-- They can read what they are granted: decryption needs no privilege on the keys.
SELECT left(t, 5) FROM enc_local WHERE id = 1;
RESET ROLE;
DROP OWNED BY regress_enc_user;
DROP ROLE regress_enc_user;

SELECT pgshard.unshard_table('t_user');
DROP TABLE t_user, enc_local, enc_copy, enc_roundtrip, blocked;
