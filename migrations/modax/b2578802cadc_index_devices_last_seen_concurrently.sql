-- revision: b2578802cadc
-- revises: 46da7734804f
-- message: Index devices.last_seen concurrently
-- created: 2025-12-11T09:00:00Z
-- transactional: false
--
-- The guide's "Adding an Index" pattern (index ix_device_last_seen on
-- devices.last_seen, the guide's explicit name), built CONCURRENTLY so that
-- writes to devices are not blocked while it builds. CREATE and DROP INDEX
-- CONCURRENTLY cannot run in a transaction block, hence transactional false:
-- schemad runs the statements one by one and marks the database in progress
-- first, so an interrupted build shows as needs-attention (see
-- docs/user-guide.md, failed-migration recovery).
--
-- A CONCURRENTLY build that fails leaves an INVALID index behind. The first
-- statement drops such a leftover, so after `schemactl resolve --rolled-back`
-- the revision can simply be run again.

-- +upgrade
DROP INDEX CONCURRENTLY IF EXISTS ix_device_last_seen;
CREATE INDEX CONCURRENTLY ix_device_last_seen ON devices (last_seen);

-- +downgrade
DROP INDEX CONCURRENTLY ix_device_last_seen;
