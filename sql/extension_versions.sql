--
-- The objects of each version of the extension, in the manner of
-- pg_stat_statements' oldextversions test.  A new version adds an upgrade
-- script, and here ALTER EXTENSION ... UPDATE TO it and the listing once
-- more: the output shows what the update adds, changes or drops, and
-- test/t/005_upgrade_paths.pl checks that every update ends where a fresh
-- CREATE EXTENSION does.  The listing leaves out the row and array types
-- that come with tables and types, which PostgreSQL 18 records as members
-- and earlier versions do not.
--
CREATE FUNCTION pg_temp.members() RETURNS SETOF text LANGUAGE sql AS $$
	SELECT pg_describe_object(d.classid, d.objid, 0) COLLATE "C"
	FROM pg_depend d
	WHERE d.refclassid = 'pg_extension'::regclass
	  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'inbox_outbox')
	  AND d.deptype = 'e'
	  AND NOT EXISTS (SELECT FROM pg_type t
					  WHERE d.classid = 'pg_type'::regclass AND t.oid = d.objid
						AND (t.typrelid <> 0 OR t.typcategory = 'A'))
	ORDER BY 1
$$;

-- 1.0
SELECT extversion FROM pg_extension WHERE extname = 'inbox_outbox';
SELECT * FROM pg_temp.members();
