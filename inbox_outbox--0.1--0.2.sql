/* inbox_outbox--0.1--0.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION inbox_outbox UPDATE TO '0.2'" to load this file. \quit

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
	OUT pid integer, OUT state text, OUT published bigint, OUT failed bigint,
	OUT dead_lettered bigint, OUT last_error text, OUT last_error_at timestamptz)
	RETURNS record
	AS 'MODULE_PATHNAME', 'relay_worker'
	LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

CREATE VIEW inbox_outbox.relay_status AS
SELECT pg_catalog.current_database() AS database,
	   w.pid,
	   w.state,
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
-- Start this database's relay once the transaction that creates or updates
-- the extension commits.
--

CREATE FUNCTION inbox_outbox.relay_launcher_wakeup() RETURNS void
	AS 'MODULE_PATHNAME', 'relay_launcher_wakeup'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;

SELECT inbox_outbox.relay_launcher_wakeup();

-- ... and stop it promptly once a DROP EXTENSION commits.
CREATE FUNCTION inbox_outbox.relay_ddl_wakeup() RETURNS event_trigger
	AS 'MODULE_PATHNAME', 'relay_ddl_wakeup'
	LANGUAGE C;

CREATE EVENT TRIGGER inbox_outbox_drop_extension ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION')
	EXECUTE FUNCTION inbox_outbox.relay_ddl_wakeup();
