/* inbox_outbox--0.1.sql */

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
CREATE CAST (uuid AS @extschema@.ulid) WITHOUT FUNCTION;

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
