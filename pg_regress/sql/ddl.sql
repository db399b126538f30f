--
-- Schema changes of sharded and reference tables reach every shard (every copy) in the
-- statement's distributed transaction; what the shards cannot follow is refused before
-- anything changes.
--
-- Each distinct shard table definition found on the workers, and how many shards have it
-- (shard ids in names shown as _N): one row means every shard looks the same.
CREATE FUNCTION shard_shapes(t regclass) RETURNS TABLE (shard_definition text, shards bigint)
LANGUAGE sql AS $f$
  SELECT regexp_replace(w.result, '_[0-9]{6,}\M', '_N', 'g'), count(*)
  FROM pgshard.shards s,
  LATERAL pgshard.run_command_on_workers(format($q$
    SELECT concat_ws(' | ',
      (SELECT string_agg(format('%%I %%s%%s', attname, format_type(atttypid, atttypmod),
                                CASE WHEN attnotnull THEN ' not null' ELSE '' END), ', ' ORDER BY attnum)
         FROM pg_attribute WHERE attrelid = %1$L::regclass AND attnum > 0 AND NOT attisdropped),
      (SELECT string_agg(format('%%I %%s', conname, pg_get_constraintdef(oid)), ', ' ORDER BY conname)
         FROM pg_constraint WHERE conrelid = %1$L::regclass),
      (SELECT string_agg(pg_get_indexdef(indexrelid), ', ' ORDER BY indexrelid::regclass::text)
         FROM pg_index WHERE indrelid = %1$L::regclass))
  $q$, s.shard_name)) w
  WHERE s.table_name = t AND w.worker = s.worker
  GROUP BY 1 ORDER BY 1
$f$;

CREATE TABLE owners (owner_id bigint PRIMARY KEY, name text);
CREATE TABLE items (item_id bigint NOT NULL, owner_id bigint NOT NULL, label text,
                    PRIMARY KEY (owner_id, item_id));
CREATE TABLE kinds (kind_id int PRIMARY KEY, label text);
SELECT pgshard.shard_table('owners', 'owner_id', shard_count => 4);
SELECT pgshard.shard_table('items', 'owner_id', colocate_with => 'owners');
SELECT pgshard.reference_table('kinds');
INSERT INTO owners SELECT g, 'owner ' || g FROM generate_series(1, 20) g;
INSERT INTO items SELECT g, 1 + g % 20, 'item ' || g FROM generate_series(1, 100) g;
INSERT INTO kinds VALUES (1, 'small'), (2, 'large');
SELECT * FROM shard_shapes('items');

-- A transaction block that changed a sharded table and then failed: ROLLBACK undoes the change
-- everywhere, and the session goes on.
BEGIN;
ALTER TABLE items ADD COLUMN doomed int;
SELECT x FROM (VALUES (1), (0)) v(x) WHERE 1 / x > 5;
ROLLBACK;
SELECT count(*) AS doomed_columns FROM pg_attribute WHERE attrelid = 'items'::regclass AND attname = 'doomed';
SELECT * FROM shard_shapes('items');
-- A failed block that changed pgshard's catalog (as shard_table, remove_worker or a move do):
-- on its ROLLBACK the utility hook read the catalog, whose cached copy the abort had dropped,
-- in the failed transaction; the locks it took outlived it, and a later statement crashed the
-- coordinator (PANIC: failed to re-find shared lock object).
BEGIN;
SELECT pgshard.invalidate_metadata(0::oid);
SELECT x FROM (VALUES (1), (0)) v(x) WHERE 1 / x > 5;
ROLLBACK;
SELECT count(*) AS sharded_tables FROM pgshard.tables;
SELECT count(*) AS items FROM items;

-- ADD COLUMN: a constant default fills the rows already on the shards, as PostgreSQL does.
ALTER TABLE items ADD COLUMN qty int DEFAULT 7 NOT NULL, ADD COLUMN note text;
SELECT count(*), sum(qty), count(note) FROM items;
SELECT * FROM shard_shapes('items');
-- Defaults are evaluated on the coordinator; the shards keep none.
INSERT INTO items (item_id, owner_id, label) VALUES (101, 1, 'item 101') RETURNING qty, note;
ALTER TABLE items ALTER COLUMN note SET DEFAULT 'none';
INSERT INTO items (item_id, owner_id, label) VALUES (102, 2, 'item 102') RETURNING qty, note;
ALTER TABLE items ALTER COLUMN note DROP DEFAULT;

-- Constraints: CHECK, a foreign key to a reference table, a foreign key between co-located
-- tables on the shard key. Each shard's key references the shard (or copy) on its own worker.
ALTER TABLE items ADD CONSTRAINT qty_positive CHECK (qty > 0);
ALTER TABLE items ADD COLUMN kind_id int REFERENCES kinds,
  ADD CONSTRAINT items_owner_fk FOREIGN KEY (owner_id) REFERENCES owners ON DELETE CASCADE;
SELECT * FROM shard_shapes('items');
-- The workers enforce them.
INSERT INTO items (item_id, owner_id, label, qty) VALUES (200, 1, 'bad qty', 0);
INSERT INTO items (item_id, owner_id, label, kind_id) VALUES (201, 1, 'bad kind', 3);
INSERT INTO items (item_id, owner_id, label, kind_id) VALUES (202, 1, 'good kind', 2);
INSERT INTO items (item_id, owner_id, label) VALUES (203, 999, 'no owner');
DELETE FROM owners WHERE owner_id = 2;
SELECT count(*) AS items_of_owner_2 FROM items WHERE owner_id = 2;

-- Column types (USING runs on the shards), NOT NULL, renames.
ALTER TABLE items ALTER COLUMN qty TYPE bigint,
  ALTER COLUMN label TYPE varchar(20) USING upper(label);
SELECT item_id, label, qty FROM items WHERE owner_id = 1 ORDER BY item_id LIMIT 3;
UPDATE items SET note = 'n' WHERE note IS NULL;
ALTER TABLE items ALTER COLUMN note SET NOT NULL;
ALTER TABLE items RENAME COLUMN note TO remark;
SELECT * FROM shard_shapes('items');
ALTER TABLE items ALTER COLUMN remark DROP NOT NULL;

-- Indexes: expression, partial, unique with the shard key, concurrently; dropped again.
CREATE INDEX items_label_idx ON items (lower(label)) WHERE qty > 1;
CREATE UNIQUE INDEX items_owner_label ON items (owner_id, label);
CREATE INDEX CONCURRENTLY items_kind_idx ON items (kind_id);
CREATE INDEX CONCURRENTLY ON items (remark);
SELECT * FROM shard_shapes('items');
DROP INDEX items_owner_label;
DROP INDEX CONCURRENTLY items_remark_idx;
SELECT * FROM shard_shapes('items');

-- A CREATE UNIQUE INDEX CONCURRENTLY that a shard refuses (duplicates): the shard indexes
-- already built are dropped again and the coordinator's is left invalid, as a failed one is in
-- PostgreSQL; DROP INDEX clears it.
CREATE TABLE dupes (id bigint NOT NULL, code text);
SELECT pgshard.shard_table('dupes', 'id', shard_count => 2);
INSERT INTO dupes VALUES (1, 'a'), (1, 'a'), (2, 'b');
CREATE UNIQUE INDEX CONCURRENTLY dupes_code ON dupes (id, code);
SELECT indisvalid FROM pg_index WHERE indexrelid = 'dupes_code'::regclass;
SELECT * FROM shard_shapes('dupes');
DROP INDEX dupes_code;
DROP TABLE dupes;

-- Refused before anything changes: the shards could not follow, or the change would break
-- routing or a guarantee.
CREATE UNIQUE INDEX items_label_unique ON items (label);
ALTER TABLE items ADD CONSTRAINT item_id_unique UNIQUE (item_id);
ALTER TABLE items DROP COLUMN owner_id;
ALTER TABLE items ALTER COLUMN owner_id TYPE text;
ALTER TABLE items SET UNLOGGED;
ALTER TABLE items SET ACCESS METHOD heap;
ALTER TABLE items SET (fillfactor = 70);
ALTER TABLE items ADD COLUMN total bigint GENERATED ALWAYS AS (qty * 2) STORED;
ALTER TABLE items ADD COLUMN seq serial;
ALTER TABLE items ADD CONSTRAINT item_kind_fk FOREIGN KEY (kind_id) REFERENCES kinds ON DELETE SET DEFAULT;
CREATE TABLE loners (loner_id bigint PRIMARY KEY);
SELECT pgshard.shard_table('loners', 'loner_id', shard_count => 2);
ALTER TABLE items ADD FOREIGN KEY (owner_id) REFERENCES loners;
CREATE TABLE pairs (owner_id bigint, other_id bigint);
SELECT pgshard.shard_table('pairs', 'owner_id', colocate_with => 'owners');
ALTER TABLE pairs ADD FOREIGN KEY (other_id) REFERENCES owners;
ALTER TABLE kinds ADD FOREIGN KEY (kind_id) REFERENCES owners;
CREATE TABLE local_notes (owner_id bigint REFERENCES owners);
CREATE TABLE local_notes (owner_id bigint);
ALTER TABLE local_notes ADD FOREIGN KEY (owner_id) REFERENCES owners;
ALTER TABLE items ADD FOREIGN KEY (owner_id) REFERENCES local_notes (owner_id);
CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END $$;
CREATE TRIGGER noop BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION noop();
-- A worker refuses (NULLs in a column made NOT NULL): the other subcommand is undone too,
-- on the coordinator and on every shard.
UPDATE items SET remark = NULL WHERE item_id = 3;
ALTER TABLE items ADD COLUMN extra int, ALTER COLUMN remark SET NOT NULL;
-- A rolled-back transaction leaves the shards as they were.
BEGIN;
ALTER TABLE items DROP COLUMN remark;
ALTER TABLE kinds ADD COLUMN weight int;
ROLLBACK;
SELECT attname FROM pg_attribute WHERE attrelid = 'items'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
SELECT * FROM shard_shapes('items');
SELECT * FROM shard_shapes('kinds');

-- Reference tables: every copy follows.
ALTER TABLE kinds ADD COLUMN weight int DEFAULT 1, ADD CONSTRAINT weight_positive CHECK (weight > 0);
CREATE INDEX ON kinds (lower(label));
SELECT * FROM shard_shapes('kinds');
SELECT * FROM kinds ORDER BY kind_id;

-- A shard key of int4 can become int8: both hash alike, so no row moves.
CREATE TABLE widen (id int PRIMARY KEY, v text);
SELECT pgshard.shard_table('widen', 'id', shard_count => 3);
INSERT INTO widen SELECT g, 'v' || g FROM generate_series(1, 30) g;
ALTER TABLE widen ALTER COLUMN id TYPE bigint;
SELECT * FROM widen WHERE id = 17;
SELECT count(*) FROM widen WHERE id = ANY (ARRAY[1, 2, 3, 29, 30]);
SELECT * FROM shard_shapes('widen');
-- Renaming the shard key keeps routing.
ALTER TABLE widen RENAME COLUMN id TO widen_id;
SELECT table_name, shard_key FROM pgshard.tables WHERE table_name = 'widen'::regclass;
SELECT * FROM widen WHERE widen_id = 17;
SELECT w.result AS rows_17_where_shard_for_says
FROM pgshard.shard_for('widen', 17::bigint) f JOIN pgshard.shards s USING (shard_id),
  LATERAL pgshard.run_command_on_workers(format('SELECT count(*) FROM %s WHERE widen_id = 17', s.shard_name)) w
WHERE w.worker = s.worker;

-- Encrypted columns: an index (or key) on one becomes an index on its tag on every shard.
CREATE TABLE contacts (contact_id bigint NOT NULL, tel pgshard.encrypted_text);
SELECT pgshard.shard_table('contacts', 'contact_id', shard_count => 2);
INSERT INTO contacts VALUES (1, '555-0101'), (2, '555-0102');
CREATE INDEX contacts_tel_idx ON contacts (tel);
ALTER TABLE contacts ADD CONSTRAINT contacts_key UNIQUE (contact_id, tel);
SELECT * FROM shard_shapes('contacts');
INSERT INTO contacts VALUES (1, '555-0101');
ALTER TABLE contacts ALTER COLUMN tel TYPE text;
ALTER TABLE contacts ADD COLUMN email pgshard.encrypted_text DEFAULT 'x@example.com';
ALTER TABLE contacts DROP CONSTRAINT contacts_key;
SELECT * FROM shard_shapes('contacts');

-- Renames and SET SCHEMA: the shard tables follow, and the table keeps working.
ALTER TABLE items RENAME TO goods;
ALTER TABLE goods RENAME CONSTRAINT items_pkey TO goods_pkey;
ALTER INDEX items_label_idx RENAME TO goods_label_idx;
ALTER TABLE goods RENAME CONSTRAINT qty_positive TO goods_qty_positive;
CREATE SCHEMA store;
ALTER TABLE goods SET SCHEMA store;
SELECT count(*), sum(qty) FROM store.goods;
SELECT g.label, o.name FROM store.goods g JOIN owners o USING (owner_id) WHERE owner_id = 3 ORDER BY item_id LIMIT 2;
SELECT * FROM shard_shapes('store.goods');

-- Sequences and identity columns are evaluated on the coordinator: ids are unique across
-- shards. TRUNCATE … RESTART IDENTITY resets them there.
CREATE TABLE tickets (ticket_id bigint GENERATED ALWAYS AS IDENTITY, tenant int NOT NULL, serial_no bigserial);
SELECT pgshard.shard_table('tickets', 'tenant', shard_count => 4);
INSERT INTO tickets (tenant) SELECT g % 7 FROM generate_series(1, 500) g;
INSERT INTO tickets (tenant) SELECT g % 5 FROM generate_series(1, 500) g;
SELECT count(*), count(DISTINCT ticket_id), min(ticket_id), max(ticket_id), count(DISTINCT serial_no) FROM tickets;
TRUNCATE tickets RESTART IDENTITY;
INSERT INTO tickets (tenant) VALUES (1), (2) RETURNING ticket_id, serial_no;

-- TRUNCATE of tables tied by foreign keys: together, or with CASCADE.
TRUNCATE owners;
TRUNCATE owners, store.goods;
INSERT INTO owners VALUES (1, 'again');
INSERT INTO store.goods (item_id, owner_id, label, remark) VALUES (1, 1, 'again', 'r');
TRUNCATE owners CASCADE;
SELECT (SELECT count(*) FROM owners) AS owners, (SELECT count(*) FROM store.goods) AS goods;

-- A table with foreign keys cannot be unsharded; DROP … CASCADE removes the keys on the
-- shards too.
SELECT pgshard.unshard_table('owners');
DROP TABLE kinds;
DROP TABLE kinds CASCADE;
DROP TABLE owners CASCADE;
SELECT * FROM shard_shapes('store.goods');
DROP TABLE store.goods, loners, pairs, local_notes, widen, contacts, tickets;
DROP FUNCTION noop();
DROP FUNCTION shard_shapes(regclass);
DROP SCHEMA store;
-- Nothing left on the workers.
SELECT w.worker, w.result AS leftover_tables FROM pgshard.run_command_on_workers(
  $$SELECT count(*) FROM pg_class WHERE relname ~ '^(owners|items|goods|kinds|loners|pairs|widen|contacts|tickets)_[0-9]+$'$$) w
ORDER BY 1;
-- DROP SCHEMA … CASCADE and DROP OWNED BY drop sharded and reference tables too: their shards
-- go in the same transaction (rolled back with it), and no metadata is left behind.
\set schema_shards 'SELECT w.worker, w.result FROM pgshard.run_command_on_workers($$SELECT coalesce(string_agg(n.nspname || ''.'' || regexp_replace(c.relname, ''_[0-9]+$'', ''_N''), '','' ORDER BY c.relname), ''none'') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = ''r'' AND n.nspname IN (''gone'', ''kept'')$$) w ORDER BY 1'
CREATE SCHEMA gone;
CREATE TABLE gone.events (id bigint PRIMARY KEY, what text);
CREATE TABLE gone.kinds (kind text PRIMARY KEY);
SELECT pgshard.shard_table('gone.events', 'id', shard_count => 4);
SELECT pgshard.reference_table('gone.kinds');
INSERT INTO gone.events SELECT g, 'e' || g FROM generate_series(1, 20) g;
:schema_shards;
-- Refused without CASCADE, and rolled back: nothing changes.
DROP SCHEMA gone;
BEGIN;
DROP SCHEMA gone CASCADE;
ROLLBACK;
SELECT count(*) FROM gone.events;
:schema_shards;
DROP SCHEMA gone CASCADE;
:schema_shards;
SELECT count(*) AS shards_of_dropped_tables FROM pgshard.shard s
WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.table_oid);
SELECT count(*) AS metadata_of_dropped_tables FROM pgshard.sharded_table s
WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.table_oid);
CREATE ROLE regress_leaver;
CREATE SCHEMA kept;
GRANT CREATE, USAGE ON SCHEMA kept TO regress_leaver;
SET ROLE regress_leaver;
CREATE TABLE kept.mine (id int PRIMARY KEY);
SELECT pgshard.shard_table('kept.mine', 'id', shard_count => 2);
RESET ROLE;
CREATE TABLE kept.theirs (id int PRIMARY KEY);
SELECT pgshard.shard_table('kept.theirs', 'id', shard_count => 2);
:schema_shards;
-- A role that may not act for the owner is refused before any shard is touched.
SET ROLE regress_leaver;
DROP OWNED BY CURRENT_USER, postgres;
RESET ROLE;
:schema_shards;
DROP OWNED BY regress_leaver;
:schema_shards;
SELECT table_oid FROM pgshard.sharded_table WHERE table_oid::text LIKE 'kept.%';
DROP SCHEMA kept CASCADE;
-- With CASCADE, DROP OWNED BY also drops the schemas the role owns, with the tables in them
-- whoever owns those.
CREATE SCHEMA gone AUTHORIZATION regress_leaver;
CREATE TABLE gone.theirs (id int PRIMARY KEY);
SELECT pgshard.shard_table('gone.theirs', 'id', shard_count => 2);
:schema_shards;
DROP OWNED BY regress_leaver CASCADE;
:schema_shards;
SELECT count(*) AS metadata_of_dropped_tables FROM pgshard.sharded_table s
WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.table_oid);
DROP ROLE regress_leaver;
:schema_shards;
