-- revision: 8881c85c9009
-- message: Initial MODAX schema
-- created: 2025-12-09T14:00:00Z
--
-- The four models of the MODAX migration guide (sensor_data, safety_status,
-- devices, ai_analysis) exactly as SQLAlchemy's Base.metadata.create_all()
-- creates them on PostgreSQL with the guide's naming convention, so that a
-- site created by the guide's Alembic setup and one created by schemad do not
-- differ (tests/modax/modax_schema_test.sh compares the two with pg_dump).
--   Integer primary key   -> SERIAL (sequence <table>_id_seq, owned by the column)
--   String(50)/(100)      -> character varying(50)/(100)
--   ARRAY(Float), Float   -> double precision[], double precision
--   DateTime(timezone)    -> timestamp with time zone
--   JSON, Boolean         -> json, boolean
--   server_default=now()  -> DEFAULT now() (created_at only; default= and
--                            onupdate= are client-side and make no DDL)
--   primary keys          -> pk_<table>; index=True -> ix_<table>_<column>,
--                            unique=True with index=True -> one unique index

-- +upgrade
CREATE TABLE sensor_data (
    id SERIAL NOT NULL,
    device_id VARCHAR(50) NOT NULL,
    timestamp TIMESTAMP WITH TIME ZONE NOT NULL,
    motor_currents FLOAT[] NOT NULL,
    vibration FLOAT[] NOT NULL,
    temperatures FLOAT[] NOT NULL,
    current_mean FLOAT,
    current_std FLOAT,
    current_max FLOAT,
    vibration_mean FLOAT,
    vibration_std FLOAT,
    vibration_max FLOAT,
    temperature_mean FLOAT,
    temperature_max FLOAT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    CONSTRAINT pk_sensor_data PRIMARY KEY (id)
);
CREATE INDEX ix_sensor_data_device_id ON sensor_data (device_id);
CREATE INDEX ix_sensor_data_timestamp ON sensor_data (timestamp);
CREATE INDEX ix_sensor_data_device_time ON sensor_data (device_id, timestamp);

CREATE TABLE safety_status (
    id SERIAL NOT NULL,
    device_id VARCHAR(50) NOT NULL,
    timestamp TIMESTAMP WITH TIME ZONE NOT NULL,
    emergency_stop BOOLEAN NOT NULL,
    door_closed BOOLEAN NOT NULL,
    overload_detected BOOLEAN NOT NULL,
    temperature_ok BOOLEAN NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    CONSTRAINT pk_safety_status PRIMARY KEY (id)
);
CREATE INDEX ix_safety_status_device_id ON safety_status (device_id);
CREATE INDEX ix_safety_status_timestamp ON safety_status (timestamp);
CREATE INDEX ix_safety_status_device_time ON safety_status (device_id, timestamp);

CREATE TABLE devices (
    id SERIAL NOT NULL,
    device_id VARCHAR(50) NOT NULL,
    device_type VARCHAR(50) NOT NULL,
    location VARCHAR(100),
    is_active BOOLEAN,
    last_seen TIMESTAMP WITH TIME ZONE,
    config JSON,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT pk_devices PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_devices_device_id ON devices (device_id);

CREATE TABLE ai_analysis (
    id SERIAL NOT NULL,
    device_id VARCHAR(50) NOT NULL,
    timestamp TIMESTAMP WITH TIME ZONE NOT NULL,
    anomalies_detected BOOLEAN NOT NULL,
    anomaly_confidence FLOAT,
    anomaly_types JSON,
    wear_estimate FLOAT,
    wear_confidence FLOAT,
    estimated_cycles_remaining INTEGER,
    recommendations JSON,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    CONSTRAINT pk_ai_analysis PRIMARY KEY (id)
);
CREATE INDEX ix_ai_analysis_device_id ON ai_analysis (device_id);
CREATE INDEX ix_ai_analysis_timestamp ON ai_analysis (timestamp);

-- +downgrade
-- Dropping a table drops its indexes, its primary key and the sequence that
-- its SERIAL column owns.
DROP TABLE ai_analysis;
DROP TABLE devices;
DROP TABLE safety_status;
DROP TABLE sensor_data;
