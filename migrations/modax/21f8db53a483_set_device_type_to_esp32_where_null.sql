-- revision: 21f8db53a483
-- revises: b2578802cadc
-- message: Set device_type to ESP32 where NULL
-- created: 2025-12-12T09:00:00Z
--
-- The guide's "Data Migration" pattern: devices without a type become ESP32.
-- Not reversible for data: after it runs, nothing tells a row that was NULL
-- from one that was ESP32 all along. The downgrade section is therefore
-- present and empty, a deliberate no-op (the guide's `pass  # Cannot reverse
-- data changes`): downgrading past this revision is allowed and changes no
-- rows. (A file with no downgrade section at all would make downgrading past
-- it an error instead.)
--
-- With the guide's models devices.device_type is NOT NULL, so on a schema
-- created by this migration history no row matches; the statement matters for
-- sites whose devices table predates that constraint.

-- +upgrade
UPDATE devices SET device_type = 'ESP32' WHERE device_type IS NULL;

-- +downgrade
-- Deliberately empty: the data change above cannot be undone.
