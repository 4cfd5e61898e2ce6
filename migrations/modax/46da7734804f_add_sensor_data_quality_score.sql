-- revision: 46da7734804f
-- revises: 8881c85c9009
-- message: Add sensor_data.quality_score
-- created: 2025-12-10T09:00:00Z
--
-- The guide's "Adding a Column" pattern:
--   op.add_column('sensor_data', sa.Column('quality_score', sa.Float(), nullable=True))
-- A nullable column without a default: no table rewrite, only a brief
-- ACCESS EXCLUSIVE lock on sensor_data.

-- +upgrade
ALTER TABLE sensor_data ADD COLUMN quality_score FLOAT;

-- +downgrade
ALTER TABLE sensor_data DROP COLUMN quality_score;
