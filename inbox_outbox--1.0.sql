/* inbox_outbox--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION inbox_outbox" to load this file. \quit

--
-- The ulid type.  Its 16 bytes have uuid's layout, so binary I/O,
-- comparison, hashing and sort support are PostgreSQL's uuid functions, and
-- the casts to and from uuid need no function.
--

CREATE TYPE @extschema@.ulid;

CREATE FUNCTION @extschema@.ulid_in(cstring) RETURNS @extschema@.ulid
	AS 'MODULE_PATHNAME', 'ulid_in'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION @extschema@.ulid_out(@extschema@.ulid) RETURNS cstring
	AS 'MODULE_PATHNAME', 'ulid_out'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION @extschema@.ulid_recv(internal) RETURNS @extschema@.ulid
	AS 'uuid_recv'
	LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION @extschema@.ulid_send(@extschema@.ulid) RETURNS bytea
	AS 'uuid_send'
	LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE @extschema@.ulid (
	INTERNALLENGTH = 16,
	INPUT = @extschema@.ulid_in,
	OUTPUT = @extschema@.ulid_out,
	RECEIVE = @extschema@.ulid_recv,
	SEND = @extschema@.ulid_send,
	ALIGNMENT = char,
	STORAGE = plain,
	CATEGORY = 'U'
);

COMMENT ON TYPE @extschema@.ulid IS
	'universally unique lexicographically sortable identifier';

CREATE CAST (@extschema@.ulid AS uuid) WITHOUT FUNCTION;
CREATE CAST (uuid AS @extschema@.ulid) WITHOUT FUNCTION AS ASSIGNMENT;

-- comparison

CREATE FUNCTION @extschema@.ulid_eq(@extschema@.ulid, @extschema@.ulid) RETURNS boolean
	AS 'uuid_eq' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_ne(@extschema@.ulid, @extschema@.ulid) RETURNS boolean
	AS 'uuid_ne' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_lt(@extschema@.ulid, @extschema@.ulid) RETURNS boolean
	AS 'uuid_lt' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_le(@extschema@.ulid, @extschema@.ulid) RETURNS boolean
	AS 'uuid_le' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_gt(@extschema@.ulid, @extschema@.ulid) RETURNS boolean
	AS 'uuid_gt' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_ge(@extschema@.ulid, @extschema@.ulid) RETURNS boolean
	AS 'uuid_ge' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_cmp(@extschema@.ulid, @extschema@.ulid) RETURNS integer
	AS 'uuid_cmp' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_sortsupport(internal) RETURNS void
	AS 'uuid_sortsupport' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ulid_hash(@extschema@.ulid) RETURNS integer
	AS 'uuid_hash' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_hash_extended(@extschema@.ulid, bigint) RETURNS bigint
	AS 'uuid_hash_extended' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;

CREATE OPERATOR @extschema@.= (
	LEFTARG = @extschema@.ulid, RIGHTARG = @extschema@.ulid,
	FUNCTION = @extschema@.ulid_eq,
	COMMUTATOR = OPERATOR(@extschema@.=), NEGATOR = OPERATOR(@extschema@.<>),
	RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES
);
CREATE OPERATOR @extschema@.<> (
	LEFTARG = @extschema@.ulid, RIGHTARG = @extschema@.ulid,
	FUNCTION = @extschema@.ulid_ne,
	COMMUTATOR = OPERATOR(@extschema@.<>), NEGATOR = OPERATOR(@extschema@.=),
	RESTRICT = neqsel, JOIN = neqjoinsel
);
CREATE OPERATOR @extschema@.< (
	LEFTARG = @extschema@.ulid, RIGHTARG = @extschema@.ulid,
	FUNCTION = @extschema@.ulid_lt,
	COMMUTATOR = OPERATOR(@extschema@.>), NEGATOR = OPERATOR(@extschema@.>=),
	RESTRICT = scalarltsel, JOIN = scalarltjoinsel
);
CREATE OPERATOR @extschema@.<= (
	LEFTARG = @extschema@.ulid, RIGHTARG = @extschema@.ulid,
	FUNCTION = @extschema@.ulid_le,
	COMMUTATOR = OPERATOR(@extschema@.>=), NEGATOR = OPERATOR(@extschema@.>),
	RESTRICT = scalarlesel, JOIN = scalarlejoinsel
);
CREATE OPERATOR @extschema@.> (
	LEFTARG = @extschema@.ulid, RIGHTARG = @extschema@.ulid,
	FUNCTION = @extschema@.ulid_gt,
	COMMUTATOR = OPERATOR(@extschema@.<), NEGATOR = OPERATOR(@extschema@.<=),
	RESTRICT = scalargtsel, JOIN = scalargtjoinsel
);
CREATE OPERATOR @extschema@.>= (
	LEFTARG = @extschema@.ulid, RIGHTARG = @extschema@.ulid,
	FUNCTION = @extschema@.ulid_ge,
	COMMUTATOR = OPERATOR(@extschema@.<=), NEGATOR = OPERATOR(@extschema@.<),
	RESTRICT = scalargesel, JOIN = scalargejoinsel
);

CREATE OPERATOR CLASS @extschema@.ulid_ops
	DEFAULT FOR TYPE @extschema@.ulid USING btree AS
		OPERATOR 1 @extschema@.<,
		OPERATOR 2 @extschema@.<=,
		OPERATOR 3 @extschema@.=,
		OPERATOR 4 @extschema@.>=,
		OPERATOR 5 @extschema@.>,
		FUNCTION 1 @extschema@.ulid_cmp(@extschema@.ulid, @extschema@.ulid),
		FUNCTION 2 @extschema@.ulid_sortsupport(internal);

CREATE OPERATOR CLASS @extschema@.ulid_hash_ops
	DEFAULT FOR TYPE @extschema@.ulid USING hash AS
		OPERATOR 1 @extschema@.=,
		FUNCTION 1 @extschema@.ulid_hash(@extschema@.ulid),
		FUNCTION 2 @extschema@.ulid_hash_extended(@extschema@.ulid, bigint);

--
-- Generation and time.  gen_ulid() is PARALLEL RESTRICTED: without
-- preloading, its order holds within one backend only, and a parallel worker
-- is another backend.
--

CREATE FUNCTION @extschema@.gen_ulid() RETURNS @extschema@.ulid
	AS 'MODULE_PATHNAME', 'gen_ulid'
	LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION @extschema@.gen_ulid() IS
	'new ULID, greater than every ULID generated before by this server';

CREATE FUNCTION @extschema@.gen_ulid(timestamptz) RETURNS @extschema@.ulid
	AS 'MODULE_PATHNAME', 'gen_ulid_at'
	LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.gen_ulid(timestamptz) IS
	'new ULID for the given time, with fresh random bits';

CREATE FUNCTION @extschema@.ulid_timestamp(@extschema@.ulid) RETURNS timestamptz
	AS 'MODULE_PATHNAME', 'ulid_timestamp'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;

CREATE FUNCTION @extschema@.ulid_min(timestamptz) RETURNS @extschema@.ulid
	AS 'MODULE_PATHNAME', 'ulid_min'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.ulid_min(timestamptz) IS
	'smallest ULID of the millisecond that contains the given time';

CREATE FUNCTION @extschema@.ulid_max(timestamptz) RETURNS @extschema@.ulid
	AS 'MODULE_PATHNAME', 'ulid_max'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.ulid_max(timestamptz) IS
	'largest ULID of the millisecond that contains the given time';

--
-- Parameters as drivers send them.  PgJDBC's setString and SQLAlchemy's
-- String bind an id as varchar; setObject(UUID), psycopg's uuid.UUID and
-- pgx's pgtype.UUID bind it as uuid.  Comparisons take them through
-- cross-type operators in the ulid operator families, so that an index on
-- a ulid column serves them and an untyped literal still resolves to
-- ulid = ulid; INSERT and UPDATE take them through assignment casts.  No
-- cast is implicit: an implicit text -> ulid cast would make text operators
-- ambiguous.  See docs/design.md, "Parameters as drivers send them".
--

-- ulid and the text form of a ulid (varchar reaches these through its
-- binary coercion to text); src/ulid_ops.c
CREATE FUNCTION @extschema@.ulid_text_eq(@extschema@.ulid, text) RETURNS boolean
	AS 'MODULE_PATHNAME', 'ulid_text_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ulid_text_ne(@extschema@.ulid, text) RETURNS boolean
	AS 'MODULE_PATHNAME', 'ulid_text_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ulid_text_lt(@extschema@.ulid, text) RETURNS boolean
	AS 'MODULE_PATHNAME', 'ulid_text_lt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ulid_text_le(@extschema@.ulid, text) RETURNS boolean
	AS 'MODULE_PATHNAME', 'ulid_text_le' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ulid_text_gt(@extschema@.ulid, text) RETURNS boolean
	AS 'MODULE_PATHNAME', 'ulid_text_gt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ulid_text_ge(@extschema@.ulid, text) RETURNS boolean
	AS 'MODULE_PATHNAME', 'ulid_text_ge' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ulid_text_cmp(@extschema@.ulid, text) RETURNS integer
	AS 'MODULE_PATHNAME', 'ulid_text_cmp' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.text_ulid_eq(text, @extschema@.ulid) RETURNS boolean
	AS 'MODULE_PATHNAME', 'text_ulid_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.text_ulid_ne(text, @extschema@.ulid) RETURNS boolean
	AS 'MODULE_PATHNAME', 'text_ulid_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.text_ulid_lt(text, @extschema@.ulid) RETURNS boolean
	AS 'MODULE_PATHNAME', 'text_ulid_lt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.text_ulid_le(text, @extschema@.ulid) RETURNS boolean
	AS 'MODULE_PATHNAME', 'text_ulid_le' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.text_ulid_gt(text, @extschema@.ulid) RETURNS boolean
	AS 'MODULE_PATHNAME', 'text_ulid_gt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.text_ulid_ge(text, @extschema@.ulid) RETURNS boolean
	AS 'MODULE_PATHNAME', 'text_ulid_ge' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.text_ulid_cmp(text, @extschema@.ulid) RETURNS integer
	AS 'MODULE_PATHNAME', 'text_ulid_cmp' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ulid_text_text_cmp(text, text) RETURNS integer
	AS 'MODULE_PATHNAME', 'ulid_text_text_cmp' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ulid_text_hash(text) RETURNS integer
	AS 'MODULE_PATHNAME', 'ulid_text_hash' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ulid_text_hash_extended(text, bigint) RETURNS bigint
	AS 'MODULE_PATHNAME', 'ulid_text_hash_extended' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- ulid and uuid: the same bytes, so uuid's own functions
CREATE FUNCTION @extschema@.ulid_uuid_eq(@extschema@.ulid, uuid) RETURNS boolean
	AS 'uuid_eq' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_uuid_ne(@extschema@.ulid, uuid) RETURNS boolean
	AS 'uuid_ne' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_uuid_lt(@extschema@.ulid, uuid) RETURNS boolean
	AS 'uuid_lt' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_uuid_le(@extschema@.ulid, uuid) RETURNS boolean
	AS 'uuid_le' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_uuid_gt(@extschema@.ulid, uuid) RETURNS boolean
	AS 'uuid_gt' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_uuid_ge(@extschema@.ulid, uuid) RETURNS boolean
	AS 'uuid_ge' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_uuid_cmp(@extschema@.ulid, uuid) RETURNS integer
	AS 'uuid_cmp' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.uuid_ulid_eq(uuid, @extschema@.ulid) RETURNS boolean
	AS 'uuid_eq' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.uuid_ulid_ne(uuid, @extschema@.ulid) RETURNS boolean
	AS 'uuid_ne' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.uuid_ulid_lt(uuid, @extschema@.ulid) RETURNS boolean
	AS 'uuid_lt' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.uuid_ulid_le(uuid, @extschema@.ulid) RETURNS boolean
	AS 'uuid_le' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.uuid_ulid_gt(uuid, @extschema@.ulid) RETURNS boolean
	AS 'uuid_gt' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.uuid_ulid_ge(uuid, @extschema@.ulid) RETURNS boolean
	AS 'uuid_ge' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.uuid_ulid_cmp(uuid, @extschema@.ulid) RETURNS integer
	AS 'uuid_cmp' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_uuid_hash(uuid) RETURNS integer
	AS 'uuid_hash' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION @extschema@.ulid_uuid_hash_extended(uuid, bigint) RETURNS bigint
	AS 'uuid_hash_extended' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;

-- Not MERGES: a merge join would need text and uuid sort operators in the
-- ulid btree family, and text's own order is not a ULID's.
CREATE OPERATOR @extschema@.= (
	LEFTARG = @extschema@.ulid, RIGHTARG = text, FUNCTION = @extschema@.ulid_text_eq,
	COMMUTATOR = OPERATOR(@extschema@.=), NEGATOR = OPERATOR(@extschema@.<>),
	RESTRICT = eqsel, JOIN = eqjoinsel, HASHES);
CREATE OPERATOR @extschema@.<> (
	LEFTARG = @extschema@.ulid, RIGHTARG = text, FUNCTION = @extschema@.ulid_text_ne,
	COMMUTATOR = OPERATOR(@extschema@.<>), NEGATOR = OPERATOR(@extschema@.=),
	RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR @extschema@.< (
	LEFTARG = @extschema@.ulid, RIGHTARG = text, FUNCTION = @extschema@.ulid_text_lt,
	COMMUTATOR = OPERATOR(@extschema@.>), NEGATOR = OPERATOR(@extschema@.>=),
	RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR @extschema@.<= (
	LEFTARG = @extschema@.ulid, RIGHTARG = text, FUNCTION = @extschema@.ulid_text_le,
	COMMUTATOR = OPERATOR(@extschema@.>=), NEGATOR = OPERATOR(@extschema@.>),
	RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR @extschema@.> (
	LEFTARG = @extschema@.ulid, RIGHTARG = text, FUNCTION = @extschema@.ulid_text_gt,
	COMMUTATOR = OPERATOR(@extschema@.<), NEGATOR = OPERATOR(@extschema@.<=),
	RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR @extschema@.>= (
	LEFTARG = @extschema@.ulid, RIGHTARG = text, FUNCTION = @extschema@.ulid_text_ge,
	COMMUTATOR = OPERATOR(@extschema@.<=), NEGATOR = OPERATOR(@extschema@.<),
	RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR @extschema@.= (
	LEFTARG = text, RIGHTARG = @extschema@.ulid, FUNCTION = @extschema@.text_ulid_eq,
	COMMUTATOR = OPERATOR(@extschema@.=), NEGATOR = OPERATOR(@extschema@.<>),
	RESTRICT = eqsel, JOIN = eqjoinsel, HASHES);
CREATE OPERATOR @extschema@.<> (
	LEFTARG = text, RIGHTARG = @extschema@.ulid, FUNCTION = @extschema@.text_ulid_ne,
	COMMUTATOR = OPERATOR(@extschema@.<>), NEGATOR = OPERATOR(@extschema@.=),
	RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR @extschema@.< (
	LEFTARG = text, RIGHTARG = @extschema@.ulid, FUNCTION = @extschema@.text_ulid_lt,
	COMMUTATOR = OPERATOR(@extschema@.>), NEGATOR = OPERATOR(@extschema@.>=),
	RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR @extschema@.<= (
	LEFTARG = text, RIGHTARG = @extschema@.ulid, FUNCTION = @extschema@.text_ulid_le,
	COMMUTATOR = OPERATOR(@extschema@.>=), NEGATOR = OPERATOR(@extschema@.>),
	RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR @extschema@.> (
	LEFTARG = text, RIGHTARG = @extschema@.ulid, FUNCTION = @extschema@.text_ulid_gt,
	COMMUTATOR = OPERATOR(@extschema@.<), NEGATOR = OPERATOR(@extschema@.<=),
	RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR @extschema@.>= (
	LEFTARG = text, RIGHTARG = @extschema@.ulid, FUNCTION = @extschema@.text_ulid_ge,
	COMMUTATOR = OPERATOR(@extschema@.<=), NEGATOR = OPERATOR(@extschema@.<),
	RESTRICT = scalargesel, JOIN = scalargejoinsel);

CREATE OPERATOR @extschema@.= (
	LEFTARG = @extschema@.ulid, RIGHTARG = uuid, FUNCTION = @extschema@.ulid_uuid_eq,
	COMMUTATOR = OPERATOR(@extschema@.=), NEGATOR = OPERATOR(@extschema@.<>),
	RESTRICT = eqsel, JOIN = eqjoinsel, HASHES);
CREATE OPERATOR @extschema@.<> (
	LEFTARG = @extschema@.ulid, RIGHTARG = uuid, FUNCTION = @extschema@.ulid_uuid_ne,
	COMMUTATOR = OPERATOR(@extschema@.<>), NEGATOR = OPERATOR(@extschema@.=),
	RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR @extschema@.< (
	LEFTARG = @extschema@.ulid, RIGHTARG = uuid, FUNCTION = @extschema@.ulid_uuid_lt,
	COMMUTATOR = OPERATOR(@extschema@.>), NEGATOR = OPERATOR(@extschema@.>=),
	RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR @extschema@.<= (
	LEFTARG = @extschema@.ulid, RIGHTARG = uuid, FUNCTION = @extschema@.ulid_uuid_le,
	COMMUTATOR = OPERATOR(@extschema@.>=), NEGATOR = OPERATOR(@extschema@.>),
	RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR @extschema@.> (
	LEFTARG = @extschema@.ulid, RIGHTARG = uuid, FUNCTION = @extschema@.ulid_uuid_gt,
	COMMUTATOR = OPERATOR(@extschema@.<), NEGATOR = OPERATOR(@extschema@.<=),
	RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR @extschema@.>= (
	LEFTARG = @extschema@.ulid, RIGHTARG = uuid, FUNCTION = @extschema@.ulid_uuid_ge,
	COMMUTATOR = OPERATOR(@extschema@.<=), NEGATOR = OPERATOR(@extschema@.<),
	RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR @extschema@.= (
	LEFTARG = uuid, RIGHTARG = @extschema@.ulid, FUNCTION = @extschema@.uuid_ulid_eq,
	COMMUTATOR = OPERATOR(@extschema@.=), NEGATOR = OPERATOR(@extschema@.<>),
	RESTRICT = eqsel, JOIN = eqjoinsel, HASHES);
CREATE OPERATOR @extschema@.<> (
	LEFTARG = uuid, RIGHTARG = @extschema@.ulid, FUNCTION = @extschema@.uuid_ulid_ne,
	COMMUTATOR = OPERATOR(@extschema@.<>), NEGATOR = OPERATOR(@extschema@.=),
	RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR @extschema@.< (
	LEFTARG = uuid, RIGHTARG = @extschema@.ulid, FUNCTION = @extschema@.uuid_ulid_lt,
	COMMUTATOR = OPERATOR(@extschema@.>), NEGATOR = OPERATOR(@extschema@.>=),
	RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR @extschema@.<= (
	LEFTARG = uuid, RIGHTARG = @extschema@.ulid, FUNCTION = @extschema@.uuid_ulid_le,
	COMMUTATOR = OPERATOR(@extschema@.>=), NEGATOR = OPERATOR(@extschema@.>),
	RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR @extschema@.> (
	LEFTARG = uuid, RIGHTARG = @extschema@.ulid, FUNCTION = @extschema@.uuid_ulid_gt,
	COMMUTATOR = OPERATOR(@extschema@.<), NEGATOR = OPERATOR(@extschema@.<=),
	RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR @extschema@.>= (
	LEFTARG = uuid, RIGHTARG = @extschema@.ulid, FUNCTION = @extschema@.uuid_ulid_ge,
	COMMUTATOR = OPERATOR(@extschema@.<=), NEGATOR = OPERATOR(@extschema@.<),
	RESTRICT = scalargesel, JOIN = scalargejoinsel);

ALTER OPERATOR FAMILY @extschema@.ulid_ops USING btree ADD
	OPERATOR 1 @extschema@.< (@extschema@.ulid, text),
	OPERATOR 2 @extschema@.<= (@extschema@.ulid, text),
	OPERATOR 3 @extschema@.= (@extschema@.ulid, text),
	OPERATOR 4 @extschema@.>= (@extschema@.ulid, text),
	OPERATOR 5 @extschema@.> (@extschema@.ulid, text),
	FUNCTION 1 (@extschema@.ulid, text) @extschema@.ulid_text_cmp(@extschema@.ulid, text),
	OPERATOR 1 @extschema@.< (text, @extschema@.ulid),
	OPERATOR 2 @extschema@.<= (text, @extschema@.ulid),
	OPERATOR 3 @extschema@.= (text, @extschema@.ulid),
	OPERATOR 4 @extschema@.>= (text, @extschema@.ulid),
	OPERATOR 5 @extschema@.> (text, @extschema@.ulid),
	FUNCTION 1 (text, @extschema@.ulid) @extschema@.text_ulid_cmp(text, @extschema@.ulid),
	OPERATOR 1 @extschema@.< (@extschema@.ulid, uuid),
	OPERATOR 2 @extschema@.<= (@extschema@.ulid, uuid),
	OPERATOR 3 @extschema@.= (@extschema@.ulid, uuid),
	OPERATOR 4 @extschema@.>= (@extschema@.ulid, uuid),
	OPERATOR 5 @extschema@.> (@extschema@.ulid, uuid),
	FUNCTION 1 (@extschema@.ulid, uuid) @extschema@.ulid_uuid_cmp(@extschema@.ulid, uuid),
	OPERATOR 1 @extschema@.< (uuid, @extschema@.ulid),
	OPERATOR 2 @extschema@.<= (uuid, @extschema@.ulid),
	OPERATOR 3 @extschema@.= (uuid, @extschema@.ulid),
	OPERATOR 4 @extschema@.>= (uuid, @extschema@.ulid),
	OPERATOR 5 @extschema@.> (uuid, @extschema@.ulid),
	FUNCTION 1 (uuid, @extschema@.ulid) @extschema@.uuid_ulid_cmp(uuid, @extschema@.ulid),
	-- "id = ANY ($1)" with a text[] or uuid[] parameter sorts the elements
	-- with these; no text = text or uuid = uuid operator joins the family
	FUNCTION 1 (text, text) @extschema@.ulid_text_text_cmp(text, text),
	FUNCTION 1 (uuid, uuid) pg_catalog.uuid_cmp(uuid, uuid);

ALTER OPERATOR FAMILY @extschema@.ulid_hash_ops USING hash ADD
	OPERATOR 1 @extschema@.= (@extschema@.ulid, text),
	OPERATOR 1 @extschema@.= (text, @extschema@.ulid),
	FUNCTION 1 (text, text) @extschema@.ulid_text_hash(text),
	FUNCTION 2 (text, text) @extschema@.ulid_text_hash_extended(text, bigint),
	OPERATOR 1 @extschema@.= (@extschema@.ulid, uuid),
	OPERATOR 1 @extschema@.= (uuid, @extschema@.ulid),
	FUNCTION 1 (uuid, uuid) @extschema@.ulid_uuid_hash(uuid),
	FUNCTION 2 (uuid, uuid) @extschema@.ulid_uuid_hash_extended(uuid, bigint);

-- INSERT and UPDATE of a ulid column from a varchar or text value (uuid's
-- cast, above, is an assignment cast too)
CREATE CAST (text AS @extschema@.ulid) WITH INOUT AS ASSIGNMENT;
CREATE CAST (varchar AS @extschema@.ulid) WITH INOUT AS ASSIGNMENT;

-- ulid_timestamp() of an id bound as varchar or text, or as uuid
CREATE FUNCTION @extschema@.ulid_timestamp(text) RETURNS timestamptz
	LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
	RETURN @extschema@.ulid_timestamp($1::@extschema@.ulid);
CREATE FUNCTION @extschema@.ulid_timestamp(uuid) RETURNS timestamptz
	AS 'MODULE_PATHNAME', 'ulid_timestamp'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;

--
-- min(ulid) and max(ulid), answered from a btree index when there is one
--
CREATE FUNCTION @extschema@.ulid_smaller(@extschema@.ulid, @extschema@.ulid) RETURNS @extschema@.ulid
	AS 'MODULE_PATHNAME', 'ulid_smaller' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ulid_larger(@extschema@.ulid, @extschema@.ulid) RETURNS @extschema@.ulid
	AS 'MODULE_PATHNAME', 'ulid_larger' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE AGGREGATE @extschema@.min(@extschema@.ulid) (
	SFUNC = @extschema@.ulid_smaller, STYPE = @extschema@.ulid,
	COMBINEFUNC = @extschema@.ulid_smaller, SORTOP = OPERATOR(@extschema@.<),
	PARALLEL = SAFE);
CREATE AGGREGATE @extschema@.max(@extschema@.ulid) (
	SFUNC = @extschema@.ulid_larger, STYPE = @extschema@.ulid,
	COMBINEFUNC = @extschema@.ulid_larger, SORTOP = OPERATOR(@extschema@.>),
	PARALLEL = SAFE);

--
-- The outbox.  Tables and views live in the fixed schema inbox_outbox, so
-- they never clash with an application's own "outbox" table; functions an
-- application calls go into the extension's schema.
--

-- CREATE EXTENSION inbox_outbox SCHEMA inbox_outbox puts everything in the
-- one schema, which exists already: it must then be a superuser's, and no
-- other role may create objects in it, since whoever can could plant
-- look-alikes beside the outbox.  Never adopt a schema of that name that
-- someone else made, either: in any other case, creating it must succeed.
DO $$
BEGIN
	IF '@extschema@' OPERATOR(pg_catalog.<>) 'inbox_outbox' THEN
		CREATE SCHEMA inbox_outbox;
		COMMENT ON SCHEMA inbox_outbox IS 'tables and views of the inbox_outbox extension';
	ELSIF EXISTS (SELECT FROM pg_catalog.pg_namespace n
				  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
				  WHERE n.nspname OPERATOR(pg_catalog.=) 'inbox_outbox' AND NOT r.rolsuper)
		OR EXISTS (SELECT FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
				   WHERE n.nspname OPERATOR(pg_catalog.=) 'inbox_outbox'
					 AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
					 AND NOT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r
									   WHERE r.oid OPERATOR(pg_catalog.=) a.grantee), false)) THEN
		RAISE EXCEPTION 'schema "inbox_outbox" must belong to a superuser, and only superusers may create objects in it'
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Create the schema as a superuser, or create the extension in another schema.';
	END IF;
END
$$;

CREATE FUNCTION inbox_outbox.valid_topic(text) RETURNS boolean
	AS 'MODULE_PATHNAME', 'outbox_valid_topic'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION inbox_outbox.valid_headers(jsonb) RETURNS boolean
	AS 'MODULE_PATHNAME', 'outbox_valid_headers'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TABLE inbox_outbox.outbox (
	id				@extschema@.ulid PRIMARY KEY DEFAULT @extschema@.gen_ulid(),
	topic			text NOT NULL CONSTRAINT outbox_topic_check
						CHECK (inbox_outbox.valid_topic(topic)),
	key				text,
	payload			bytea,
	headers			jsonb CONSTRAINT outbox_headers_check
						CHECK (inbox_outbox.valid_headers(headers)),
	created_at		timestamptz NOT NULL DEFAULT clock_timestamp(),
	attempts		integer NOT NULL DEFAULT 0,
	last_error		text,
	next_attempt_at timestamptz
);

COMMENT ON TABLE inbox_outbox.outbox IS
	'events waiting to be published to Kafka; a row is deleted once Kafka acknowledged it';

-- The relay deletes from the low end of the primary key and reads from there
-- again: vacuum soon, so that its reads do not walk dead index entries.
ALTER TABLE inbox_outbox.outbox SET (
	autovacuum_vacuum_scale_factor = 0.0,
	autovacuum_vacuum_threshold = 20000,
	autovacuum_vacuum_cost_delay = 0
);

-- Failed rows, for holding back later rows of their key.
CREATE INDEX outbox_retry ON inbox_outbox.outbox (topic, key, id)
	INCLUDE (next_attempt_at) WHERE attempts > 0;

CREATE TABLE inbox_outbox.outbox_dead_letter (
	id				@extschema@.ulid PRIMARY KEY,
	topic			text NOT NULL,
	key				text,
	payload			bytea,
	headers			jsonb,
	created_at		timestamptz NOT NULL,
	attempts		integer NOT NULL,
	last_error		text NOT NULL,
	failed_at		timestamptz NOT NULL DEFAULT clock_timestamp()
);

COMMENT ON TABLE inbox_outbox.outbox_dead_letter IS
	'events Kafka refused for good; redrive with outbox_redrive() or drop with outbox_discard()';

-- Pending and dead events are data: pg_dump keeps them.
SELECT pg_catalog.pg_extension_config_dump('inbox_outbox.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('inbox_outbox.outbox_dead_letter', '');

CREATE FUNCTION inbox_outbox.outbox_wakeup() RETURNS trigger
	AS 'MODULE_PATHNAME', 'outbox_wakeup'
	LANGUAGE C;

CREATE TRIGGER outbox_wakeup AFTER INSERT ON inbox_outbox.outbox
	FOR EACH STATEMENT EXECUTE FUNCTION inbox_outbox.outbox_wakeup();

--
-- Publishing
--

CREATE FUNCTION @extschema@.outbox_publish(topic text, key text, payload bytea,
										   headers jsonb DEFAULT NULL)
	RETURNS @extschema@.ulid
	AS 'MODULE_PATHNAME', 'outbox_publish'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.outbox_publish(text, text, bytea, jsonb) IS
	'publish an event to Kafka when the current transaction commits; returns its id';

CREATE FUNCTION @extschema@.outbox_publish(topic text, key text, payload text,
										   headers jsonb DEFAULT NULL)
	RETURNS @extschema@.ulid
	LANGUAGE sql VOLATILE PARALLEL UNSAFE
	RETURN @extschema@.outbox_publish(topic, key, pg_catalog.convert_to(payload, 'UTF8'), headers);

COMMENT ON FUNCTION @extschema@.outbox_publish(text, text, text, jsonb) IS
	'publish an event with a text payload (sent as UTF-8) when the current transaction commits';

CREATE FUNCTION @extschema@.outbox_publish(topic text, key text, payload jsonb,
										   headers jsonb DEFAULT NULL)
	RETURNS @extschema@.ulid
	LANGUAGE sql VOLATILE PARALLEL UNSAFE
	RETURN @extschema@.outbox_publish(topic, key, pg_catalog.convert_to(payload::text, 'UTF8'), headers);

COMMENT ON FUNCTION @extschema@.outbox_publish(text, text, jsonb, jsonb) IS
	'publish an event with a JSON payload (sent as UTF-8 text) when the current transaction commits';

--
-- Dead letters
--

CREATE FUNCTION @extschema@.outbox_redrive(ids @extschema@.ulid[] DEFAULT NULL)
	RETURNS bigint
	LANGUAGE sql VOLATILE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH moved AS (
		DELETE FROM inbox_outbox.outbox_dead_letter d
		WHERE ids IS NULL OR d.id OPERATOR(@extschema@.=) ANY (ids)
		RETURNING d.id, d.topic, d.key, d.payload, d.headers, d.created_at
	), redriven AS (
		INSERT INTO inbox_outbox.outbox (id, topic, key, payload, headers, created_at)
		SELECT m.id, m.topic, m.key, m.payload, m.headers, m.created_at FROM moved m
		RETURNING 1
	)
	SELECT count(*) FROM redriven;
END;

COMMENT ON FUNCTION @extschema@.outbox_redrive(@extschema@.ulid[]) IS
	'move dead letters (all when ids is NULL) back into the outbox with their original ids';

CREATE FUNCTION @extschema@.outbox_discard(ids @extschema@.ulid[])
	RETURNS bigint
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH gone AS (
		DELETE FROM inbox_outbox.outbox_dead_letter d
		WHERE d.id OPERATOR(@extschema@.=) ANY (ids)
		RETURNING 1
	)
	SELECT count(*) FROM gone;
END;

COMMENT ON FUNCTION @extschema@.outbox_discard(@extschema@.ulid[]) IS
	'delete the given dead letters for good';

--
-- Relay status
--

CREATE FUNCTION inbox_outbox.relay_worker(
	OUT pid integer, OUT state text, OUT delivery text,
	OUT published bigint, OUT failed bigint,
	OUT dead_lettered bigint, OUT last_error text, OUT last_error_at timestamptz)
	RETURNS record
	AS 'MODULE_PATHNAME', 'relay_worker'
	LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

CREATE VIEW inbox_outbox.relay_status AS
SELECT pg_catalog.current_database() AS database,
	   w.pid,
	   w.state,
	   w.delivery,
	   p.pending,
	   pg_catalog.now() - p.oldest AS oldest_pending_age,
	   w.published,
	   w.failed,
	   (SELECT pg_catalog.count(*) FROM inbox_outbox.outbox_dead_letter) AS dead_letters,
	   w.last_error,
	   w.last_error_at
FROM inbox_outbox.relay_worker() w,
	 LATERAL (SELECT pg_catalog.count(*) AS pending, pg_catalog.min(o.created_at) AS oldest
			  FROM inbox_outbox.outbox o) p;

COMMENT ON VIEW inbox_outbox.relay_status IS
	'the relay of the current database: state, backlog, totals since it started, last error';

--
-- Start this database's relay once the transaction that creates the
-- extension commits.
--

CREATE FUNCTION inbox_outbox.relay_launcher_wakeup() RETURNS void
	AS 'MODULE_PATHNAME', 'relay_launcher_wakeup'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- ... and stop it promptly once a DROP EXTENSION commits.
CREATE FUNCTION inbox_outbox.relay_ddl_wakeup() RETURNS event_trigger
	AS 'MODULE_PATHNAME', 'relay_ddl_wakeup'
	LANGUAGE C;

CREATE EVENT TRIGGER inbox_outbox_drop_extension ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION')
	EXECUTE FUNCTION inbox_outbox.relay_ddl_wakeup();

--
-- The relay's read bound (src/outbox_floor.c): every transaction that writes
-- an outbox row records the lowest id it wrote, so that the relay can read
-- from there instead of walking the rows it deleted.  Enabled ALWAYS so that
-- it fires under session_replication_role = replica too, and named to fire
-- after any other BEFORE trigger, so that it sees the id that is written.
--
CREATE FUNCTION inbox_outbox.outbox_floor() RETURNS trigger
	AS 'MODULE_PATHNAME', 'outbox_floor'
	LANGUAGE C;
REVOKE ALL ON FUNCTION inbox_outbox.outbox_floor() FROM PUBLIC;

CREATE TRIGGER zz_outbox_floor BEFORE INSERT OR UPDATE OF id ON inbox_outbox.outbox
	FOR EACH ROW EXECUTE FUNCTION inbox_outbox.outbox_floor();
ALTER TABLE inbox_outbox.outbox ENABLE ALWAYS TRIGGER zz_outbox_floor;

--
-- The inbox: one narrow row per claimed (consumer, event id).
--

CREATE TABLE inbox_outbox.inbox (
	consumer	text NOT NULL,
	event_id	text NOT NULL,
	claimed_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (consumer, event_id)
);

COMMENT ON TABLE inbox_outbox.inbox IS
	'claims of inbox_try_claim(); kept for inbox_outbox.inbox_retention';

-- Retention deletes the oldest claims first, in batches that each start
-- where the last one ended.  A btree, not BRIN: once pruning frees pages,
-- new claims refill them, and a BRIN range would then span old and new
-- claims for good and match every search.  Claims arrive in time order, so
-- its inserts go to the rightmost leaf.
CREATE INDEX inbox_claimed_at ON inbox_outbox.inbox (claimed_at);

SELECT pg_catalog.pg_extension_config_dump('inbox_outbox.inbox', '');

CREATE FUNCTION @extschema@.inbox_try_claim(event_id text, consumer text DEFAULT 'default')
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'inbox_try_claim'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.inbox_try_claim(text, text) IS
	'true for the first claim of an event id by a consumer, false for a duplicate; released if the transaction rolls back';

CREATE FUNCTION @extschema@.inbox_try_claim(event_id @extschema@.ulid, consumer text DEFAULT 'default')
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'inbox_try_claim_ulid'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.inbox_try_claim(@extschema@.ulid, text) IS
	'claim a ULID event id, under its 26-character text form';

CREATE FUNCTION @extschema@.inbox_try_claim(event_id uuid, consumer text DEFAULT 'default')
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'inbox_try_claim_ulid'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.inbox_try_claim(uuid, text) IS
	'claim a uuid event id, under the ULID text form of its 128 bits';

--
-- Retention
--

CREATE FUNCTION inbox_outbox.inbox_prune_once(retention interval, batch_size integer,
											  from_claimed_at timestamptz,
											  OUT deleted bigint, OUT newest timestamptz)
	AS 'MODULE_PATHNAME', 'inbox_prune_once'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION inbox_outbox.inbox_prune_once(interval, integer, timestamptz) IS
	'one batch of inbox_prune(): delete up to batch_size expired claims claimed at or after from_claimed_at, oldest first; newest is where the next batch starts';

-- After each batch the procedure rests twice as long as the batch took, so
-- a large prune takes at most about a third of one core and of the WAL
-- rate it could reach (as the relay's does).
CREATE PROCEDURE @extschema@.inbox_prune(retention interval DEFAULT NULL,
										 batch_size integer DEFAULT 10000)
	LANGUAGE plpgsql
	-- no SET search_path here: it would forbid the COMMITs; all names are qualified
AS $$
DECLARE
	keep interval := coalesce(retention,
							  pg_catalog.current_setting('inbox_outbox.inbox_retention')::interval);
	done bigint;
	next_from timestamptz := '-infinity';
	started timestamptz;
BEGIN
	IF pg_catalog.current_setting('inbox_outbox.inbox_retention') OPERATOR(pg_catalog.=) '-1'
	   AND retention IS NULL THEN
		RETURN;
	END IF;
	LOOP
		started := pg_catalog.clock_timestamp();
		SELECT p.deleted, p.newest INTO done, next_from
		FROM inbox_outbox.inbox_prune_once(keep, batch_size, next_from) p;
		COMMIT;
		EXIT WHEN done OPERATOR(pg_catalog.<) batch_size;
		PERFORM pg_catalog.pg_sleep(pg_catalog.date_part('epoch',
										pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started)
									OPERATOR(pg_catalog.*) 2);
	END LOOP;
END
$$;

COMMENT ON PROCEDURE @extschema@.inbox_prune(interval, integer) IS
	'delete claims older than the retention, in batches that each commit (CALL it outside a transaction block)';

--
-- Observability
--

CREATE FUNCTION inbox_outbox.inbox_duplicates(OUT consumer text, OUT duplicates bigint)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'inbox_duplicates'
	LANGUAGE C VOLATILE STRICT PARALLEL SAFE ROWS 10;

CREATE VIEW inbox_outbox.inbox_consumers AS
SELECT coalesce(c.consumer, d.consumer) AS consumer,
	   coalesce(c.claims, 0) AS claims,
	   c.oldest_claim,
	   coalesce(d.duplicates, 0) AS duplicates_absorbed
FROM (SELECT i.consumer, pg_catalog.count(*) AS claims, pg_catalog.min(i.claimed_at) AS oldest_claim
	  FROM inbox_outbox.inbox i GROUP BY i.consumer) c
FULL JOIN inbox_outbox.inbox_duplicates() d ON d.consumer = c.consumer;

COMMENT ON VIEW inbox_outbox.inbox_consumers IS
	'per consumer: claims held, the oldest claim, duplicates absorbed since server start';

--
-- The database the outbox publishes for: this server's system identifier
-- and this database's OID.  A copy of the database takes its pending
-- events along (pg_dump dumps the outbox, CREATE DATABASE ... TEMPLATE
-- copies it), and the relay publishes only while every row here names the
-- database it runs in; inbox_outbox.adopt_outbox() makes a copy publish, or
-- discards what it copied.  pg_dump dumps these rows too, so a restore adds
-- the source's row beside the one CREATE EXTENSION recorded: no unique key,
-- so that the restore never fails on it.  The name sorts before "outbox":
-- pg_dump loads a schema's tables in name order, so a serial restore
-- commits this table's rows before the restored events.  REPLICA IDENTITY
-- FULL, so that adopting the outbox of a database that publishes the table
-- (FOR ALL TABLES) can delete its rows.  See src/outbox_identity.c.
--

CREATE TABLE inbox_outbox.database_identity (
	system_identifier	bigint NOT NULL,
	database_oid		oid NOT NULL,
	recorded_at			timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE inbox_outbox.database_identity IS
	'the database the outbox publishes for; a copy of the database pauses its relay until inbox_outbox.adopt_outbox()';
ALTER TABLE inbox_outbox.database_identity REPLICA IDENTITY FULL;

INSERT INTO inbox_outbox.database_identity (system_identifier, database_oid)
SELECT c.system_identifier, d.oid
FROM pg_catalog.pg_control_system() c, pg_catalog.pg_database d
WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database();

SELECT pg_catalog.pg_extension_config_dump('inbox_outbox.database_identity', '');

-- A change here (adopt_outbox(), a restore) wakes the relay at commit.
CREATE TRIGGER database_identity_wakeup
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON inbox_outbox.database_identity
	FOR EACH STATEMENT EXECUTE FUNCTION inbox_outbox.outbox_wakeup();

CREATE FUNCTION inbox_outbox.adopt_outbox(discard_pending boolean DEFAULT false,
										  OUT pending bigint, OUT discarded bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'adopt_outbox'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION inbox_outbox.adopt_outbox(boolean) IS
	'make this database the one its outbox publishes for, after a restore, a template copy or pg_upgrade; with discard_pending, delete the copied pending events first';
REVOKE ALL ON FUNCTION inbox_outbox.adopt_outbox(boolean) FROM PUBLIC;

--
-- outbox_publish() with the headers as JSON text: PgJDBC's setString binds
-- varchar, which has no implicit cast to jsonb.  An untyped headers
-- argument resolves here too (text is the preferred type), and is read
-- as jsonb all the same.  Not STRICT: a NULL payload is a tombstone.
--
CREATE FUNCTION @extschema@.outbox_publish(topic text, key text, payload bytea, headers text)
	RETURNS @extschema@.ulid
	LANGUAGE sql VOLATILE PARALLEL UNSAFE
	RETURN @extschema@.outbox_publish(topic, key, payload, headers::jsonb);
CREATE FUNCTION @extschema@.outbox_publish(topic text, key text, payload text, headers text)
	RETURNS @extschema@.ulid
	LANGUAGE sql VOLATILE PARALLEL UNSAFE
	RETURN @extschema@.outbox_publish(topic, key, payload, headers::jsonb);
CREATE FUNCTION @extschema@.outbox_publish(topic text, key text, payload jsonb, headers text)
	RETURNS @extschema@.ulid
	LANGUAGE sql VOLATILE PARALLEL UNSAFE
	RETURN @extschema@.outbox_publish(topic, key, payload, headers::jsonb);
COMMENT ON FUNCTION @extschema@.outbox_publish(text, text, bytea, text) IS
	'publish an event whose headers are given as JSON text';
COMMENT ON FUNCTION @extschema@.outbox_publish(text, text, text, text) IS
	'publish an event with a text payload (sent as UTF-8) whose headers are given as JSON text';
COMMENT ON FUNCTION @extschema@.outbox_publish(text, text, jsonb, text) IS
	'publish an event with a JSON payload whose headers are given as JSON text';
REVOKE ALL ON FUNCTION @extschema@.outbox_publish(text, text, bytea, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.outbox_publish(text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.outbox_publish(text, text, jsonb, text) FROM PUBLIC;

--
-- Exactly-once mode (inbox_outbox.delivery = 'exactly_once'): while its one
-- row exists, a Kafka transaction of this database's relay may hold rows
-- that are still in the outbox, and the relay recovers them from the last
-- committed progress record before it publishes anything (in either mode).
-- record_offset is the offset of the last record whose rows are deleted.
-- Not configuration: pg_dump leaves it out, and a copy's relay discards a
-- row written under another database's transactional id.  See
-- docs/exactly_once.md.
--

CREATE TABLE inbox_outbox.relay_progress (
	single				boolean PRIMARY KEY DEFAULT true CONSTRAINT relay_progress_single CHECK (single),
	transactional_id	text NOT NULL,
	topic				text NOT NULL,
	record_offset		bigint,
	since				timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE inbox_outbox.relay_progress IS
	'exactly-once mode: the relay''s transactional id, its progress topic and the last progress record whose events are deleted';

--
-- Ingestion (docs/ingest.md): subscriptions that consume Kafka topics into
-- this database through a handler.  A worker per subscription (and per
-- inbox_outbox.subscribe(workers => n)) claims each event in the inbox under
-- the consumer name 'ingest:' || the subscription's name (a name no
-- inbox_try_claim() caller can collide with by accident), calls the handler
-- as the subscription's owner,
-- and moves the partition's next offset, all in one transaction per batch,
-- so that the offsets here always match the handler's committed effects.
-- The functions are in src/ingest_admin.c, the worker in src/ingest.c.
-- Only those functions write these tables; they are not granted to anyone.
--

-- handler is the function's schema-qualified signature, as text: pg_upgrade
-- refuses tables with regprocedure columns (function OIDs are not kept).
CREATE TABLE inbox_outbox.subscription (
	name			text PRIMARY KEY,
	owner			regrole NOT NULL,
	topics			text[] NOT NULL,
	handler			text NOT NULL,
	start_from		text NOT NULL,
	event_id		text NOT NULL,
	batch_size		integer NOT NULL,
	max_attempts	integer NOT NULL,
	on_gap			text NOT NULL,
	workers			integer NOT NULL,
	enabled			boolean NOT NULL DEFAULT true,
	created_at		timestamptz NOT NULL DEFAULT clock_timestamp()
);

COMMENT ON TABLE inbox_outbox.subscription IS
	'Kafka topics consumed into this database; change with subscribe(), unsubscribe(), subscription_pause() and subscription_resume()';

-- The next offset to read of every partition a subscription has read or
-- was told to start from.  high_watermark is Kafka's, as the worker saw it
-- at the partition's last commit (for the lag in ingest_status).
CREATE TABLE inbox_outbox.subscription_offset (
	subscription	text NOT NULL,
	topic			text NOT NULL,
	partition		integer NOT NULL,
	next_offset		bigint NOT NULL,
	high_watermark	bigint,
	updated_at		timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (subscription, topic, partition)
);

COMMENT ON TABLE inbox_outbox.subscription_offset IS
	'the next Kafka offset each subscription reads, per partition; moved in the transaction of the handler''s effects';

CREATE TABLE inbox_outbox.ingest_dead_letter (
	id				@extschema@.ulid PRIMARY KEY DEFAULT @extschema@.gen_ulid(),
	subscription	text NOT NULL,
	topic			text NOT NULL,
	partition		integer NOT NULL,
	"offset"		bigint NOT NULL,
	event_id		text,
	key				bytea,
	payload			bytea,
	headers			jsonb,
	ts				timestamptz,
	attempts		integer NOT NULL,
	sqlstate		text NOT NULL,
	error			text NOT NULL,
	failed_at		timestamptz NOT NULL DEFAULT clock_timestamp()
);

COMMENT ON TABLE inbox_outbox.ingest_dead_letter IS
	'messages the handler failed on inbox_outbox.subscription.max_attempts times; ingest_redrive() or ingest_discard()';

CREATE INDEX ingest_dead_letter_partition
	ON inbox_outbox.ingest_dead_letter (subscription, topic, partition);

-- Offsets Kafka no longer had when a subscription asked for them: the
-- messages in [from_offset, to_offset) were never read.
CREATE TABLE inbox_outbox.ingest_gap (
	subscription	text NOT NULL,
	topic			text NOT NULL,
	partition		integer NOT NULL,
	from_offset		bigint NOT NULL,
	to_offset		bigint,
	action			text NOT NULL,
	detected_at		timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (subscription, topic, partition, from_offset)
);

COMMENT ON TABLE inbox_outbox.ingest_gap IS
	'retention gaps a subscription met, and what it did (on_gap)';

-- Subscriptions, their offsets and dead letters are data: pg_dump keeps
-- them.  A restored copy does not consume until adopt_outbox() says it is
-- the database (see database_identity).
SELECT pg_catalog.pg_extension_config_dump('inbox_outbox.subscription', '');
SELECT pg_catalog.pg_extension_config_dump('inbox_outbox.subscription_offset', '');
SELECT pg_catalog.pg_extension_config_dump('inbox_outbox.ingest_dead_letter', '');
SELECT pg_catalog.pg_extension_config_dump('inbox_outbox.ingest_gap', '');

CREATE FUNCTION @extschema@.subscribe(name text, topics text[], handler regprocedure,
									  start_from text DEFAULT 'earliest',
									  event_id text DEFAULT 'header:event_id',
									  batch_size integer DEFAULT 500,
									  max_attempts integer DEFAULT 5,
									  on_gap text DEFAULT 'stop',
									  workers integer DEFAULT 1)
	RETURNS void
	AS 'MODULE_PATHNAME', 'ingest_subscribe'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.subscribe(text, text[], regprocedure, text, text, integer, integer, text, integer) IS
	'consume Kafka topics into this database through a handler run as the calling role; starts at commit';

CREATE FUNCTION @extschema@.unsubscribe(name text) RETURNS void
	AS 'MODULE_PATHNAME', 'ingest_unsubscribe'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.unsubscribe(text) IS
	'stop a subscription for good and forget its offsets, inbox claims and dead letters';

CREATE FUNCTION @extschema@.subscription_pause(name text) RETURNS void
	AS 'MODULE_PATHNAME', 'ingest_pause'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.subscription_resume(name text) RETURNS void
	AS 'MODULE_PATHNAME', 'ingest_resume'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.subscription_pause(text) IS
	'stop consuming at commit; the offsets stay';
COMMENT ON FUNCTION @extschema@.subscription_resume(text) IS
	'consume again from the stored offsets';

CREATE FUNCTION @extschema@.subscription_seek(name text, topic text, partition integer,
											  next_offset bigint)
	RETURNS void
	AS 'MODULE_PATHNAME', 'ingest_seek'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.subscription_seek(text, text, integer, bigint) IS
	'set the next offset a subscription reads in one partition; takes effect at commit';

CREATE FUNCTION @extschema@.ingest_redrive(ids @extschema@.ulid[] DEFAULT NULL)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'ingest_redrive'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.ingest_discard(ids @extschema@.ulid[])
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'ingest_discard'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.ingest_redrive(@extschema@.ulid[]) IS
	'run the handler again for dead letters (all of the caller''s when NULL), in the calling transaction, as each subscription''s owner';
COMMENT ON FUNCTION @extschema@.ingest_discard(@extschema@.ulid[]) IS
	'delete dead letters of subscriptions the caller owns';

CREATE FUNCTION inbox_outbox.ingest_workers(
	OUT subscription text, OUT worker integer, OUT pid integer, OUT state text,
	OUT consumed bigint, OUT duplicates bigint, OUT dead_lettered bigint,
	OUT last_commit_at timestamptz, OUT last_error text, OUT last_error_at timestamptz)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'ingest_workers'
	LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

CREATE VIEW inbox_outbox.ingest_status AS
SELECT s.name AS subscription,
	   o.topic,
	   o.partition,
	   o.next_offset,
	   o.high_watermark,
	   pg_catalog.int8larger(o.high_watermark OPERATOR(pg_catalog.-) o.next_offset, 0) AS lag,
	   CASE WHEN NOT s.enabled THEN 'paused'
			WHEN EXISTS (SELECT FROM inbox_outbox.ingest_gap g
						 WHERE g.subscription OPERATOR(pg_catalog.=) s.name
						   AND g.topic OPERATOR(pg_catalog.=) o.topic
						   AND g.partition OPERATOR(pg_catalog.=) o.partition
						   AND g.action OPERATOR(pg_catalog.=) 'stopped')
			THEN 'stopped: gap'
			ELSE COALESCE(w.state, 'stopped') END AS state,
	   w.pid,
	   o.updated_at AS last_commit_at,
	   (SELECT pg_catalog.count(*) FROM inbox_outbox.ingest_dead_letter d
		WHERE d.subscription OPERATOR(pg_catalog.=) s.name
		  AND d.topic OPERATOR(pg_catalog.=) o.topic
		  AND d.partition OPERATOR(pg_catalog.=) o.partition) AS dead_letters,
	   w.last_error,
	   w.last_error_at
FROM inbox_outbox.subscription s
	 JOIN inbox_outbox.subscription_offset o
	   ON o.subscription OPERATOR(pg_catalog.=) s.name
	 LEFT JOIN inbox_outbox.ingest_workers() w
	   ON w.subscription OPERATOR(pg_catalog.=) s.name
	  AND w.worker OPERATOR(pg_catalog.=) (o.partition OPERATOR(pg_catalog.%) s.workers);

COMMENT ON VIEW inbox_outbox.ingest_status IS
	'every partition of every subscription: next offset, lag as of its last commit, the state and pid of its worker, dead letters';

--
-- What each kind of role needs, in one place: the grant and revoke
-- functions below read these lists, and docs/security.md prints them.
-- Objects are held by OID (a regclass or regprocedure constant is resolved
-- when this function is created) and named at each call, so that a schema
-- renamed since, and a look-alike made under the old name, change nothing.
--

CREATE FUNCTION inbox_outbox.role_privileges(kind text,
											 OUT privilege text, OUT object text)
	RETURNS SETOF record
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT p.privilege, p.objtype OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) p.name
	FROM (VALUES
		(1, 'publisher', 'USAGE', 'SCHEMA', '@extschema@'::regnamespace::text),
		(2, 'publisher', 'USAGE', 'SCHEMA', 'inbox_outbox'::regnamespace::text),
		(3, 'publisher', 'EXECUTE', 'FUNCTION', '@extschema@.outbox_publish(text, text, bytea, jsonb)'::regprocedure::text),
		(4, 'publisher', 'EXECUTE', 'FUNCTION', '@extschema@.outbox_publish(text, text, text, jsonb)'::regprocedure::text),
		(5, 'publisher', 'EXECUTE', 'FUNCTION', '@extschema@.outbox_publish(text, text, jsonb, jsonb)'::regprocedure::text),
		(6, 'publisher', 'EXECUTE', 'FUNCTION', '@extschema@.outbox_publish(text, text, bytea, text)'::regprocedure::text),
		(7, 'publisher', 'EXECUTE', 'FUNCTION', '@extschema@.outbox_publish(text, text, text, text)'::regprocedure::text),
		(8, 'publisher', 'EXECUTE', 'FUNCTION', '@extschema@.outbox_publish(text, text, jsonb, text)'::regprocedure::text),
		(9, 'publisher', 'INSERT', 'TABLE', 'inbox_outbox.outbox'::regclass::text),
		(10, 'publisher', 'SELECT (id, created_at)', 'TABLE', 'inbox_outbox.outbox'::regclass::text),
		(11, 'publisher', 'EXECUTE', 'FUNCTION', 'inbox_outbox.valid_topic(text)'::regprocedure::text),
		(12, 'publisher', 'EXECUTE', 'FUNCTION', 'inbox_outbox.valid_headers(jsonb)'::regprocedure::text),
		(13, 'consumer', 'USAGE', 'SCHEMA', '@extschema@'::regnamespace::text),
		(14, 'consumer', 'USAGE', 'SCHEMA', 'inbox_outbox'::regnamespace::text),
		(15, 'consumer', 'EXECUTE', 'FUNCTION', '@extschema@.inbox_try_claim(text, text)'::regprocedure::text),
		(16, 'consumer', 'EXECUTE', 'FUNCTION', '@extschema@.inbox_try_claim(@extschema@.ulid, text)'::regprocedure::text),
		(17, 'consumer', 'EXECUTE', 'FUNCTION', '@extschema@.inbox_try_claim(uuid, text)'::regprocedure::text),
		(18, 'consumer', 'INSERT', 'TABLE', 'inbox_outbox.inbox'::regclass::text),
		(19, 'monitor', 'USAGE', 'SCHEMA', 'inbox_outbox'::regnamespace::text),
		(20, 'monitor', 'SELECT', 'TABLE', 'inbox_outbox.relay_status'::regclass::text),
		(21, 'monitor', 'SELECT', 'TABLE', 'inbox_outbox.inbox_consumers'::regclass::text),
		(22, 'monitor', 'EXECUTE', 'FUNCTION', 'inbox_outbox.relay_worker()'::regprocedure::text),
		(23, 'monitor', 'EXECUTE', 'FUNCTION', 'inbox_outbox.inbox_duplicates()'::regprocedure::text),
		(24, 'relay', 'USAGE', 'SCHEMA', '@extschema@'::regnamespace::text),
		(25, 'relay', 'USAGE', 'SCHEMA', 'inbox_outbox'::regnamespace::text),
		(26, 'relay', 'SELECT, UPDATE, DELETE', 'TABLE', 'inbox_outbox.outbox'::regclass::text),
		(27, 'relay', 'SELECT, INSERT, UPDATE', 'TABLE', 'inbox_outbox.outbox_dead_letter'::regclass::text),
		(28, 'relay', 'SELECT, DELETE', 'TABLE', 'inbox_outbox.inbox'::regclass::text),
		(29, 'relay', 'EXECUTE', 'FUNCTION', 'inbox_outbox.valid_topic(text)'::regprocedure::text),
		(30, 'relay', 'EXECUTE', 'FUNCTION', 'inbox_outbox.valid_headers(jsonb)'::regprocedure::text),
		(31, 'relay', 'SELECT, INSERT', 'TABLE', 'inbox_outbox.database_identity'::regclass::text),
		(32, 'relay', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE', 'inbox_outbox.relay_progress'::regclass::text),
		(33, 'monitor', 'SELECT', 'TABLE', 'inbox_outbox.ingest_status'::regclass::text),
		(34, 'monitor', 'EXECUTE', 'FUNCTION', 'inbox_outbox.ingest_workers()'::regprocedure::text),
		(35, 'subscriber', 'USAGE', 'SCHEMA', '@extschema@'::regnamespace::text),
		(36, 'subscriber', 'USAGE', 'SCHEMA', 'inbox_outbox'::regnamespace::text),
		(37, 'subscriber', 'EXECUTE', 'FUNCTION', '@extschema@.subscribe(text, text[], regprocedure, text, text, integer, integer, text, integer)'::regprocedure::text),
		(38, 'subscriber', 'EXECUTE', 'FUNCTION', '@extschema@.unsubscribe(text)'::regprocedure::text),
		(39, 'subscriber', 'EXECUTE', 'FUNCTION', '@extschema@.subscription_pause(text)'::regprocedure::text),
		(40, 'subscriber', 'EXECUTE', 'FUNCTION', '@extschema@.subscription_resume(text)'::regprocedure::text),
		(41, 'subscriber', 'EXECUTE', 'FUNCTION', '@extschema@.subscription_seek(text, text, integer, bigint)'::regprocedure::text),
		(42, 'subscriber', 'EXECUTE', 'FUNCTION', '@extschema@.ingest_redrive(@extschema@.ulid[])'::regprocedure::text),
		(43, 'subscriber', 'EXECUTE', 'FUNCTION', '@extschema@.ingest_discard(@extschema@.ulid[])'::regprocedure::text)
	) AS p(n, kind, privilege, objtype, name)
	WHERE p.kind OPERATOR(pg_catalog.=) role_privileges.kind
	ORDER BY p.n;
END;

COMMENT ON FUNCTION inbox_outbox.role_privileges(text) IS
	'the privileges that grant_publisher, grant_consumer, grant_monitor, grant_relay and grant_subscriber hand out';

-- Grant or revoke one kind's privileges.  A revoke leaves the two schemas
-- alone (the role may still need them for objects of its own), and gives
-- back what another kind the role still holds needs too (a publisher and a
-- relay both need the CHECK functions).  A role holds a kind while it has
-- that kind's mark: the privilege no other kind has.
CREATE FUNCTION inbox_outbox.change_privileges(grant_them boolean, kind text, role regrole)
	RETURNS void
	LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p record;
	other text;
	found_kind boolean := false;
BEGIN
	FOR p IN SELECT * FROM inbox_outbox.role_privileges(kind) LOOP
		found_kind := true;
		IF grant_them THEN
			EXECUTE pg_catalog.format('GRANT %s ON %s TO %s', p.privilege, p.object, role);
		ELSIF p.object OPERATOR(pg_catalog.!~~) 'SCHEMA %' THEN
			EXECUTE pg_catalog.format('REVOKE %s ON %s FROM %s', p.privilege, p.object, role);
		END IF;
	END LOOP;
	IF NOT found_kind THEN
		RAISE EXCEPTION 'unknown kind of role "%"', kind
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The kinds are publisher, consumer, monitor, relay and subscriber.';
	END IF;
	IF grant_them THEN
		RETURN;
	END IF;
	FOR other IN
		SELECT m.kind
		FROM (VALUES ('publisher', 'inbox_outbox.outbox'::regclass, 'INSERT'),
					 ('consumer', 'inbox_outbox.inbox'::regclass, 'INSERT'),
					 ('monitor', 'inbox_outbox.relay_status'::regclass, 'SELECT'),
					 ('relay', 'inbox_outbox.outbox'::regclass, 'DELETE')) AS m(kind, rel, mark)
		WHERE m.kind OPERATOR(pg_catalog.<>) change_privileges.kind
		  AND EXISTS (SELECT FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
					  WHERE c.oid OPERATOR(pg_catalog.=) m.rel
						AND a.grantee OPERATOR(pg_catalog.=) role::oid
						AND a.privilege_type OPERATOR(pg_catalog.=) m.mark)
	LOOP
		PERFORM inbox_outbox.change_privileges(true, other, role);
	END LOOP;
END
$$;

REVOKE ALL ON FUNCTION inbox_outbox.role_privileges(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.change_privileges(boolean, text, regrole) FROM PUBLIC;

CREATE FUNCTION inbox_outbox.grant_publisher(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(true, 'publisher', role);
CREATE FUNCTION inbox_outbox.revoke_publisher(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(false, 'publisher', role);
CREATE FUNCTION inbox_outbox.grant_consumer(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(true, 'consumer', role);
CREATE FUNCTION inbox_outbox.revoke_consumer(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(false, 'consumer', role);
CREATE FUNCTION inbox_outbox.grant_monitor(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(true, 'monitor', role);
CREATE FUNCTION inbox_outbox.revoke_monitor(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(false, 'monitor', role);
CREATE FUNCTION inbox_outbox.grant_relay(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(true, 'relay', role);
CREATE FUNCTION inbox_outbox.revoke_relay(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(false, 'relay', role);

CREATE FUNCTION inbox_outbox.grant_subscriber(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(true, 'subscriber', role);
CREATE FUNCTION inbox_outbox.revoke_subscriber(role regrole) RETURNS void
	LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	RETURN inbox_outbox.change_privileges(false, 'subscriber', role);

COMMENT ON FUNCTION inbox_outbox.grant_subscriber(regrole) IS
	'let a role create subscriptions (their handlers run as that role) and manage its own';
COMMENT ON FUNCTION inbox_outbox.revoke_subscriber(regrole) IS
	'take back what grant_subscriber gave (schema usage stays; its subscriptions keep running)';

COMMENT ON FUNCTION inbox_outbox.grant_publisher(regrole) IS
	'let a role call outbox_publish() and insert into inbox_outbox.outbox';
COMMENT ON FUNCTION inbox_outbox.grant_consumer(regrole) IS
	'let a role call inbox_try_claim()';
COMMENT ON FUNCTION inbox_outbox.grant_monitor(regrole) IS
	'let a role read inbox_outbox.relay_status and inbox_outbox.inbox_consumers';
COMMENT ON FUNCTION inbox_outbox.grant_relay(regrole) IS
	'give a role what the relay needs when inbox_outbox.relay_role names it';
COMMENT ON FUNCTION inbox_outbox.revoke_publisher(regrole) IS
	'take back what grant_publisher gave (schema usage stays)';
COMMENT ON FUNCTION inbox_outbox.revoke_consumer(regrole) IS
	'take back what grant_consumer gave (schema usage stays)';
COMMENT ON FUNCTION inbox_outbox.revoke_monitor(regrole) IS
	'take back what grant_monitor gave (schema usage stays)';
COMMENT ON FUNCTION inbox_outbox.revoke_relay(regrole) IS
	'take back what grant_relay gave (schema usage stays)';

-- Only superusers and the extension's owner, who owns everything granted.
REVOKE ALL ON FUNCTION inbox_outbox.grant_publisher(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.revoke_publisher(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.grant_consumer(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.revoke_consumer(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.grant_monitor(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.revoke_monitor(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.grant_relay(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.revoke_relay(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.grant_subscriber(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.revoke_subscriber(regrole) FROM PUBLIC;

--
-- Least privilege.  PUBLIC keeps the ulid type, its operators and its
-- functions; everything else is handed out per role by the grant_*
-- functions below.  Without a grant, a role cannot publish, claim, or read
-- or write any table of the extension.
--

REVOKE ALL ON FUNCTION @extschema@.outbox_publish(text, text, bytea, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.outbox_publish(text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.outbox_publish(text, text, jsonb, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.outbox_redrive(@extschema@.ulid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.outbox_discard(@extschema@.ulid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.inbox_try_claim(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.inbox_try_claim(@extschema@.ulid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.inbox_try_claim(uuid, text) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.inbox_prune(interval, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.subscribe(text, text[], regprocedure, text, text, integer, integer, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.unsubscribe(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.subscription_pause(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.subscription_resume(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.subscription_seek(text, text, integer, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ingest_redrive(@extschema@.ulid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ingest_discard(@extschema@.ulid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.ingest_workers() FROM PUBLIC;

REVOKE ALL ON FUNCTION inbox_outbox.valid_topic(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.valid_headers(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.outbox_wakeup() FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.relay_worker() FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.relay_launcher_wakeup() FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.relay_ddl_wakeup() FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.inbox_prune_once(interval, integer, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION inbox_outbox.inbox_duplicates() FROM PUBLIC;

-- Wake the launcher (see above) for this database.
SELECT inbox_outbox.relay_launcher_wakeup();
