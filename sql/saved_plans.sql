--
-- Saved plans survive DROP and CREATE EXTENSION in the same session: every
-- SQL function that keeps a plan is called, the extension is dropped and
-- created again (new OIDs for its types, tables and functions), and each is
-- called again.  A plan that kept an old OID would fail with "cache lookup
-- failed".
--
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS inbox_outbox;
CREATE EXTENSION inbox_outbox;
RESET client_min_messages;

CREATE FUNCTION use_every_plan() RETURNS TABLE (step text, ok boolean)
LANGUAGE plpgsql AS $$
BEGIN
	step := 'publish text';
	ok := outbox_publish('t', 'k', 'p'::text) IS NOT NULL; RETURN NEXT;
	step := 'publish bytea';
	ok := outbox_publish('t', 'k', '\x00'::bytea, '{"h": "v"}') IS NOT NULL; RETURN NEXT;
	step := 'publish jsonb';
	ok := outbox_publish('t', NULL, '{"a": 1}'::jsonb) IS NOT NULL; RETURN NEXT;
	step := 'claim text';
	ok := inbox_try_claim('event-1', 'consumer'); RETURN NEXT;
	step := 'claim ulid';
	ok := inbox_try_claim(gen_ulid(), 'consumer'); RETURN NEXT;
	step := 'duplicate absorbed';
	ok := NOT inbox_try_claim('event-1', 'consumer'); RETURN NEXT;
	step := 'prune';
	ok := (SELECT deleted FROM inbox_outbox.inbox_prune_once(interval '0', 100, '-infinity')) = 0;
	RETURN NEXT;
	step := 'outbox rows';
	ok := (SELECT count(*) FROM inbox_outbox.outbox) = 3; RETURN NEXT;
END
$$;

SELECT * FROM use_every_plan();

-- the ulid type, the tables and the functions get new OIDs
SELECT 'ulid'::regtype::oid AS old_ulid \gset
DROP EXTENSION inbox_outbox;
CREATE EXTENSION inbox_outbox;
SELECT 'ulid'::regtype::oid <> :old_ulid AS new_ulid_type;
SELECT * FROM use_every_plan();

DROP FUNCTION use_every_plan();
