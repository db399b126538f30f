-- Workers never hold plaintext written through encrypted columns: not in their table files, WAL
-- or server log (with every statement logged), whatever path the values take to them.
\set VERBOSITY default
\c pgshard - 127.0.0.1 :worker_1_port
ALTER SYSTEM SET log_statement = 'all';
SELECT pg_reload_conf();
\c pgshard - 127.0.0.1 :worker_2_port
ALTER SYSTEM SET log_statement = 'all';
SELECT pg_reload_conf();
\c pgshard - 127.0.0.1 :coordinator_port

-- Distinctive plaintexts: 'zebra-sapphire-…', 'octopus-card-…', 31415926.…, year 2089.
-- The plain column 'visible-label-…' is the control: it must be found.
CREATE TABLE secrets (
    id bigint PRIMARY KEY,
    label text,
    secret pgshard.encrypted_text,
    card pgshard.encrypted_bytea,
    amount pgshard.encrypted_numeric,
    born pgshard.encrypted_timestamptz,
    counter pgshard.encrypted_int8
);
CREATE INDEX secrets_secret ON secrets USING hash (secret);
-- Rows already in the table are moved to the shards by shard_table.
INSERT INTO secrets SELECT g, 'visible-label-' || g, 'zebra-sapphire-' || g,
    convert_to('octopus-card-' || g, 'UTF8'), 31415926.5358 + g,
    '2089-07-13 12:00:00+00'::timestamptz + g * interval '1 minute', 27182818284 + g
FROM generate_series(1, 100) g;
SELECT pgshard.shard_table('secrets', 'id', shard_count => 4);
-- Routed and multi-shard INSERTs, prepared statements, transactions over both workers.
INSERT INTO secrets SELECT g, 'visible-label-' || g, 'zebra-sapphire-' || g,
    convert_to('octopus-card-' || g, 'UTF8'), 31415926.5358 + g,
    '2089-07-13 12:00:00+00'::timestamptz + g * interval '1 minute', 27182818284 + g
FROM generate_series(101, 200) g;
PREPARE add_secret(bigint, text) AS INSERT INTO secrets (id, label, secret) VALUES ($1, 'visible-label-p', $2);
EXECUTE add_secret(201, 'zebra-sapphire-prepared');
BEGIN;
INSERT INTO secrets (id, label, secret) VALUES (202, 'visible-label-x', 'zebra-sapphire-xact-a');
INSERT INTO secrets (id, label, secret) VALUES (203, 'visible-label-x', 'zebra-sapphire-xact-b');
COMMIT;
INSERT INTO secrets (id, label, secret) VALUES (1, 'visible-label-upsert', 'zebra-sapphire-upsert')
ON CONFLICT (id) DO UPDATE SET secret = EXCLUDED.secret;
-- Updates, searches by equality and IN (tags go to the workers), parameters.
UPDATE secrets SET secret = 'zebra-sapphire-updated', amount = 31415926.99 WHERE id = 5;
UPDATE secrets SET card = convert_to('octopus-card-bulk', 'UTF8') WHERE id > 190;
SELECT id FROM secrets WHERE secret = 'zebra-sapphire-7';
SELECT id FROM secrets WHERE secret IN ('zebra-sapphire-8', 'zebra-sapphire-9') ORDER BY id;
PREPARE by_secret(pgshard.encrypted_text) AS SELECT id FROM secrets WHERE secret = $1;
EXECUTE by_secret('zebra-sapphire-10');
SELECT count(*) FROM secrets WHERE secret <> 'zebra-sapphire-11';
DELETE FROM secrets WHERE secret = 'zebra-sapphire-12';
-- Rotation and re-encryption rewrite every value on the workers.
SELECT pgshard.rotate_key() > 0 AS rotated;
CALL pgshard.reencrypt('secrets', 50);
-- Reads back on the coordinator are plaintext, as the application expects.
SELECT id, label, secret, convert_from(card, 'UTF8') AS card, amount, born, counter
FROM secrets WHERE id IN (1, 5, 100, 191) ORDER BY id;

\c pgshard - 127.0.0.1 :worker_1_port
CHECKPOINT;
ALTER SYSTEM RESET log_statement;
SELECT pg_reload_conf();
\c pgshard - 127.0.0.1 :worker_2_port
CHECKPOINT;
ALTER SYSTEM RESET log_statement;
SELECT pg_reload_conf();
\c pgshard - 127.0.0.1 :coordinator_port
-- Search each worker's data directory (table files, WAL, server.log) byte by byte.
\! for w in worker_1 worker_2; do n=$(grep -r -a -l -F -e zebra-sapphire -e octopus-card -e 31415926 -e 27182818 -e 2089-07-13 "$PGSHARD_CLUSTER_DIR/$w" | wc -l); echo "$w: files with an encrypted plaintext: $n"; done
\! for w in worker_1 worker_2; do grep -r -a -q -F visible-label "$PGSHARD_CLUSTER_DIR/$w/base" && grep -a -q -F visible-label "$PGSHARD_CLUSTER_DIR/$w/server.log" && echo "$w: control plaintext found in table files and log"; done

SELECT pgshard.unshard_table('secrets');
DROP TABLE secrets;
