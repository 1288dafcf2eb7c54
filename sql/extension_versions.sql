--
-- The objects of each version of the extension.  A new version adds an
-- upgrade script, and here ALTER EXTENSION ... UPDATE TO it and \dx+ once
-- more: the listing shows what the update adds, changes or drops, and
-- test/t/005_upgrade_paths.pl checks that every update ends where a fresh
-- CREATE EXTENSION does.
--
SELECT extversion FROM pg_extension WHERE extname = 'inbox_outbox';
SELECT version FROM pg_available_extension_versions
WHERE name = 'inbox_outbox' ORDER BY version;

-- 1.0
\dx+ inbox_outbox
