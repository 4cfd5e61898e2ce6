-- revision: 413d03294339
-- revises: 21f8db53a483
-- message: Add sensor_data.quality with its index
-- created: 2025-12-13T09:00:00Z
-- lint_ignore: create-index-not-concurrently
--
-- The guide's batch example ("Use Transactions"):
--   with op.batch_alter_table('sensor_data') as batch_op:
--       batch_op.add_column(sa.Column('quality', sa.Float()))
--       batch_op.create_index('ix_quality', ['quality'])
-- Both changes commit together or not at all (a transactional revision).
-- The index is built with a plain CREATE INDEX, which blocks writes to
-- sensor_data while it builds, as the guide's version does; on a large table
-- put such an index in its own non-transactional revision with CONCURRENTLY
-- (like b2578802cadc). `lint_ignore` records that this is deliberate: in the
-- header, it changes no checksum of databases that applied the revision.

-- +upgrade
ALTER TABLE sensor_data ADD COLUMN quality FLOAT;
CREATE INDEX ix_quality ON sensor_data (quality);

-- +downgrade
DROP INDEX ix_quality;
ALTER TABLE sensor_data DROP COLUMN quality;
