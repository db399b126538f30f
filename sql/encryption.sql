-- Transparent column encryption: the data keys, the encrypted types and their operators.
-- See docs/encryption.md for the envelope format and the threat model.

-- Data keys, each wrapped (AES-256-GCM) by the master key of pgshard.key_file. One is current:
-- new values are encrypted under it. A retired key's material is erased.
CREATE TABLE pgshard.keys (
    key_id int PRIMARY KEY CHECK (key_id > 0),
    state text NOT NULL CHECK (state IN ('current', 'active', 'retired')),
    wrapped bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz,
    CHECK ((state = 'retired') = (wrapped IS NULL))
);
CREATE UNIQUE INDEX keys_one_current ON pgshard.keys (state) WHERE state = 'current';
REVOKE ALL ON pgshard.keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgshard.keys', '');

-- The keys without their material, for everyone.
CREATE VIEW pgshard.data_keys AS
    SELECT key_id, state, created_at, retired_at FROM pgshard.keys;
GRANT SELECT ON pgshard.data_keys TO PUBLIC;

-- Progress of pgshard.reencrypt, one row per table, updated as each batch commits.
CREATE TABLE pgshard.reencrypt_progress (
    relation regclass PRIMARY KEY,
    state text NOT NULL CHECK (state IN ('running', 'done')),
    to_key int NOT NULL,
    rows_done bigint NOT NULL DEFAULT 0,
    rows_to_go bigint,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT ON pgshard.reencrypt_progress TO PUBLIC;

-- One set of objects per encrypted type. The C functions behind each type are named after it
-- (pgshard_encrypted_text_in, ...); comparisons read the type from the value itself.
-- Operators live in schema public (when it exists) so that `tel = '...'` finds them with the
-- usual search_path; without them, comparisons fall back to the implicit cast to the plaintext
-- type, which is correct but decrypts.
DO $encryption$
DECLARE
    t record;
    ops text := CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public')
                     THEN 'public' ELSE 'pgshard' END;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('text', 'text'), ('bytea', 'bytea'), ('int8', 'bigint'), ('numeric', 'numeric'),
        ('timestamptz', 'timestamp with time zone')) AS v(suffix, base)
    LOOP
        EXECUTE format($sql$
            CREATE TYPE pgshard.encrypted_%1$s;
            CREATE FUNCTION pgshard.encrypted_%1$s_in(cstring, oid, integer)
                RETURNS pgshard.encrypted_%1$s STABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_%1$s_in';
            CREATE FUNCTION pgshard.encrypted_%1$s_out(pgshard.encrypted_%1$s)
                RETURNS cstring STABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_%1$s_out';
            CREATE FUNCTION pgshard.encrypted_%1$s_recv(internal, oid, integer)
                RETURNS pgshard.encrypted_%1$s STABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_%1$s_recv';
            CREATE FUNCTION pgshard.encrypted_%1$s_send(pgshard.encrypted_%1$s)
                RETURNS bytea STABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_%1$s_send';
            CREATE TYPE pgshard.encrypted_%1$s (
                INPUT = pgshard.encrypted_%1$s_in, OUTPUT = pgshard.encrypted_%1$s_out,
                RECEIVE = pgshard.encrypted_%1$s_recv, SEND = pgshard.encrypted_%1$s_send,
                INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = external);
            COMMENT ON TYPE pgshard.encrypted_%1$s IS
                '%2$s encrypted with AES-256-GCM, with a blind index for equality';

            CREATE FUNCTION pgshard.encrypt(%2$s) RETURNS pgshard.encrypted_%1$s
                STABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_%1$s_encrypt';
            CREATE FUNCTION pgshard.decrypt(pgshard.encrypted_%1$s) RETURNS %2$s
                STABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_%1$s_decrypt';
            CREATE CAST (%2$s AS pgshard.encrypted_%1$s)
                WITH FUNCTION pgshard.encrypt(%2$s) AS ASSIGNMENT;
            CREATE CAST (pgshard.encrypted_%1$s AS %2$s)
                WITH FUNCTION pgshard.decrypt(pgshard.encrypted_%1$s) AS IMPLICIT;

            CREATE FUNCTION pgshard.key_id(pgshard.encrypted_%1$s) RETURNS integer
                IMMUTABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_key_id';
            CREATE FUNCTION pgshard.reencrypt_value(pgshard.encrypted_%1$s)
                RETURNS pgshard.encrypted_%1$s VOLATILE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_reencrypt_value';
            CREATE FUNCTION pgshard.blind_index(pgshard.encrypted_%1$s) RETURNS bytea
                IMMUTABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_blind_index';
            CREATE FUNCTION pgshard.envelope(pgshard.encrypted_%1$s) RETURNS bytea
                IMMUTABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_envelope';
        $sql$, t.suffix, t.base);

        -- Comparisons: = and <> compare blind-index tags; the order decrypts.
        EXECUTE format($sql$
            CREATE FUNCTION pgshard.encrypted_eq(pgshard.encrypted_%1$s, pgshard.encrypted_%1$s)
                RETURNS boolean IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_eq';
            CREATE FUNCTION pgshard.encrypted_ne(pgshard.encrypted_%1$s, pgshard.encrypted_%1$s)
                RETURNS boolean IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_ne';
            CREATE FUNCTION pgshard.encrypted_hash(pgshard.encrypted_%1$s)
                RETURNS integer IMMUTABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_hash';
            CREATE FUNCTION pgshard.encrypted_cmp(pgshard.encrypted_%1$s, pgshard.encrypted_%1$s)
                RETURNS integer IMMUTABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_cmp';
            CREATE FUNCTION pgshard.encrypted_lt(pgshard.encrypted_%1$s, pgshard.encrypted_%1$s)
                RETURNS boolean IMMUTABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_lt';
            CREATE FUNCTION pgshard.encrypted_le(pgshard.encrypted_%1$s, pgshard.encrypted_%1$s)
                RETURNS boolean IMMUTABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_le';
            CREATE FUNCTION pgshard.encrypted_gt(pgshard.encrypted_%1$s, pgshard.encrypted_%1$s)
                RETURNS boolean IMMUTABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_gt';
            CREATE FUNCTION pgshard.encrypted_ge(pgshard.encrypted_%1$s, pgshard.encrypted_%1$s)
                RETURNS boolean IMMUTABLE STRICT PARALLEL SAFE
                LANGUAGE c AS 'MODULE_PATHNAME', 'pgshard_encrypted_ge';

            CREATE OPERATOR %2$s.= (LEFTARG = pgshard.encrypted_%1$s,
                RIGHTARG = pgshard.encrypted_%1$s, FUNCTION = pgshard.encrypted_eq,
                COMMUTATOR = OPERATOR(%2$s.=), NEGATOR = OPERATOR(%2$s.<>),
                RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES);
            CREATE OPERATOR %2$s.<> (LEFTARG = pgshard.encrypted_%1$s,
                RIGHTARG = pgshard.encrypted_%1$s, FUNCTION = pgshard.encrypted_ne,
                COMMUTATOR = OPERATOR(%2$s.<>), NEGATOR = OPERATOR(%2$s.=),
                RESTRICT = neqsel, JOIN = neqjoinsel);
            CREATE OPERATOR %2$s.< (LEFTARG = pgshard.encrypted_%1$s,
                RIGHTARG = pgshard.encrypted_%1$s, FUNCTION = pgshard.encrypted_lt,
                COMMUTATOR = OPERATOR(%2$s.>), NEGATOR = OPERATOR(%2$s.>=),
                RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
            CREATE OPERATOR %2$s.<= (LEFTARG = pgshard.encrypted_%1$s,
                RIGHTARG = pgshard.encrypted_%1$s, FUNCTION = pgshard.encrypted_le,
                COMMUTATOR = OPERATOR(%2$s.>=), NEGATOR = OPERATOR(%2$s.>),
                RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
            CREATE OPERATOR %2$s.> (LEFTARG = pgshard.encrypted_%1$s,
                RIGHTARG = pgshard.encrypted_%1$s, FUNCTION = pgshard.encrypted_gt,
                COMMUTATOR = OPERATOR(%2$s.<), NEGATOR = OPERATOR(%2$s.<=),
                RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
            CREATE OPERATOR %2$s.>= (LEFTARG = pgshard.encrypted_%1$s,
                RIGHTARG = pgshard.encrypted_%1$s, FUNCTION = pgshard.encrypted_ge,
                COMMUTATOR = OPERATOR(%2$s.<=), NEGATOR = OPERATOR(%2$s.<),
                RESTRICT = scalargesel, JOIN = scalargejoinsel);

            CREATE OPERATOR CLASS pgshard.encrypted_%1$s_ops
                DEFAULT FOR TYPE pgshard.encrypted_%1$s USING btree AS
                OPERATOR 1 %2$s.<, OPERATOR 2 %2$s.<=, OPERATOR 3 %2$s.=,
                OPERATOR 4 %2$s.>=, OPERATOR 5 %2$s.>,
                FUNCTION 1 pgshard.encrypted_cmp(pgshard.encrypted_%1$s, pgshard.encrypted_%1$s);
            CREATE OPERATOR CLASS pgshard.encrypted_%1$s_hash_ops
                DEFAULT FOR TYPE pgshard.encrypted_%1$s USING hash AS
                OPERATOR 1 %2$s.=,
                FUNCTION 1 pgshard.encrypted_hash(pgshard.encrypted_%1$s);
        $sql$, t.suffix, ops);
    END LOOP;
END
$encryption$;

-- Assignment casts from the types that PostgreSQL itself assigns to the plaintext types, so
-- that `INSERT … VALUES (1, 42)` works into an encrypted_int8 or encrypted_numeric column.
CREATE CAST (varchar AS pgshard.encrypted_text) WITH FUNCTION pgshard.encrypt(text) AS ASSIGNMENT;
DO $casts$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT * FROM (VALUES
        ('character', 'text', 'text'),
        ('smallint', 'int8', 'bigint'), ('integer', 'int8', 'bigint'),
        ('smallint', 'numeric', 'numeric'), ('integer', 'numeric', 'numeric'),
        ('bigint', 'numeric', 'numeric'), ('real', 'numeric', 'numeric'),
        ('double precision', 'numeric', 'numeric'),
        ('date', 'timestamptz', 'timestamp with time zone'),
        ('timestamp without time zone', 'timestamptz', 'timestamp with time zone'))
        AS v(source, suffix, base)
    LOOP
        EXECUTE format($sql$
            CREATE FUNCTION pgshard.encrypted_%2$s(%1$s) RETURNS pgshard.encrypted_%2$s
                STABLE STRICT PARALLEL SAFE LANGUAGE sql
                AS 'SELECT pgshard.encrypt($1::%3$s)';
            CREATE CAST (%1$s AS pgshard.encrypted_%2$s)
                WITH FUNCTION pgshard.encrypted_%2$s(%1$s) AS ASSIGNMENT;
        $sql$, c.source, c.suffix, c.base);
    END LOOP;
END
$casts$;
