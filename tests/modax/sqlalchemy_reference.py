#!/usr/bin/python3
"""The SQLAlchemy reference for migrations/modax: the MODAX guide's models,
created on a database the way the guide's own (Alembic) setup would.

    sqlalchemy_reference.py DSN [--upto N] [--via models|alembic] [--echo]

DSN is a libpq URL (postgresql://user:pass@host:port/db). The database should
be empty; the script creates the schema that the guide's site has after the
first N of its migrations (N = 1..5, default 5 = head):

  1  initial schema        Base.metadata.create_all() of the guide's models
  2  quality_score         "Adding a Column" (sensor_data.quality_score)
  3  last_seen index       "Adding an Index" (ix_device_last_seen), built
                           CONCURRENTLY (as migrations/modax does; the result
                           is the same index)
  4  device_type data      "Data Migration" (no schema change)
  5  batch example         "Use Transactions" (sensor_data.quality + ix_quality)

Two independent ways to get there (--via):

  models   (default) create_all() of the guide's models extended by what
           steps 2..N add, as a developer would write them into the models
           after those migrations (new columns last, named indexes). This is
           the guide's CI "Verify schema" step: Base.metadata.create_all().
  alembic  a real Alembic environment (env.py as in the guide, without its
           app config) whose five revisions carry migrations/modax's ids:
           the first runs create_all() of the guide's models exactly as
           printed, the others the guide's migration bodies verbatim
           (op.add_column, op.create_index, the Session data migration,
           op.batch_alter_table); then `alembic upgrade <id of step N>`.
           The database is what a site that followed the guide with Alembic
           looks like, alembic_version included, so it is also the starting
           point for adopting such a site with schemad.

Needs Debian's python3-sqlalchemy (1.4) and python3-psycopg2; --via alembic
also python3-alembic. Run with /usr/bin/python3 (the system interpreter).
"""
import argparse
import os
import sys

# SQLAlchemy 1.4 warns once about 2.0 for the guide's declarative_base import.
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")

from sqlalchemy import create_engine  # noqa: E402

# --------------------------------------------------------------------------
# The guide's models (MODAX_DATABASE_MIGRATION_GUIDE.md, "Step 4: Define
# SQLAlchemy Models"), verbatim except that the four modules are one file:
# `from . import Base` and the package's imports are this module's globals.
# --------------------------------------------------------------------------

# models/__init__.py
"""SQLAlchemy models for MODAX database"""
from sqlalchemy import MetaData
from sqlalchemy.ext.declarative import declarative_base

# Use consistent naming convention
metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s"
})

Base = declarative_base(metadata=metadata)

# models/sensor_data.py
"""Sensor data models"""
from sqlalchemy import Column, Integer, String, Float, DateTime, Boolean, ARRAY, Index
from sqlalchemy.sql import func


class SensorData(Base):
    """Sensor readings from field devices"""
    __tablename__ = 'sensor_data'

    id = Column(Integer, primary_key=True)
    device_id = Column(String(50), nullable=False, index=True)
    timestamp = Column(DateTime(timezone=True), nullable=False, index=True)

    # Sensor readings
    motor_currents = Column(ARRAY(Float), nullable=False)
    vibration = Column(ARRAY(Float), nullable=False)
    temperatures = Column(ARRAY(Float), nullable=False)

    # Aggregated data
    current_mean = Column(Float)
    current_std = Column(Float)
    current_max = Column(Float)
    vibration_mean = Column(Float)
    vibration_std = Column(Float)
    vibration_max = Column(Float)
    temperature_mean = Column(Float)
    temperature_max = Column(Float)

    # Metadata
    created_at = Column(DateTime(timezone=True), server_default=func.now())

    # Composite index for time-series queries
    __table_args__ = (
        Index('ix_sensor_data_device_time', 'device_id', 'timestamp'),
    )


class SafetyStatus(Base):
    """Safety status readings"""
    __tablename__ = 'safety_status'

    id = Column(Integer, primary_key=True)
    device_id = Column(String(50), nullable=False, index=True)
    timestamp = Column(DateTime(timezone=True), nullable=False, index=True)

    emergency_stop = Column(Boolean, nullable=False)
    door_closed = Column(Boolean, nullable=False)
    overload_detected = Column(Boolean, nullable=False)
    temperature_ok = Column(Boolean, nullable=False)

    created_at = Column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index('ix_safety_status_device_time', 'device_id', 'timestamp'),
    )


# models/device.py
"""Device models"""
from sqlalchemy import Column, Integer, String, DateTime, Boolean, JSON
from sqlalchemy.sql import func


class Device(Base):
    """Registered devices"""
    __tablename__ = 'devices'

    id = Column(Integer, primary_key=True)
    device_id = Column(String(50), unique=True, nullable=False, index=True)
    device_type = Column(String(50), nullable=False)
    location = Column(String(100))

    # Status
    is_active = Column(Boolean, default=True)
    last_seen = Column(DateTime(timezone=True))

    # Configuration
    config = Column(JSON)  # Device-specific configuration

    # Metadata
    created_at = Column(DateTime(timezone=True), server_default=func.now())
    updated_at = Column(DateTime(timezone=True), onupdate=func.now())


# models/ai_analysis.py
"""AI analysis results models"""
from sqlalchemy import Column, Integer, String, DateTime, Float, Boolean, JSON
from sqlalchemy.sql import func


class AIAnalysis(Base):
    """AI analysis results"""
    __tablename__ = 'ai_analysis'

    id = Column(Integer, primary_key=True)
    device_id = Column(String(50), nullable=False, index=True)
    timestamp = Column(DateTime(timezone=True), nullable=False, index=True)

    # Analysis results
    anomalies_detected = Column(Boolean, nullable=False)
    anomaly_confidence = Column(Float)
    anomaly_types = Column(JSON)  # List of detected anomaly types

    wear_estimate = Column(Float)
    wear_confidence = Column(Float)
    estimated_cycles_remaining = Column(Integer)

    recommendations = Column(JSON)  # List of optimization recommendations

    created_at = Column(DateTime(timezone=True), server_default=func.now())

# ------------------------------------------------------------ end of guide

# migrations/modax's revision ids, oldest first. --via alembic gives the
# Alembic revisions the same ids, as an Alembic history re-expressed for
# schemad must (docs/user-guide.md, adopting an Alembic database).
REVISIONS = ['8881c85c9009', '46da7734804f', 'b2578802cadc', '21f8db53a483', '413d03294339']
STEPS = len(REVISIONS)


def extend_models(upto):
    """--via models: the model changes that go with migrations 2..upto.

    Declarative appends a Column assigned to a mapped class to the end of its
    table, which is where ALTER TABLE ... ADD COLUMN puts it too.
    """
    import sqlalchemy as sa
    if upto >= 2:  # Adding a Column
        SensorData.quality_score = sa.Column(sa.Float(), nullable=True)
    if upto >= 3:  # Adding an Index (explicit name: the convention does not rename it)
        sa.Index('ix_device_last_seen', Device.__table__.c.last_seen)
    # 4: the data migration changes no model.
    if upto >= 5:  # Use Transactions (batch example)
        SensorData.quality = sa.Column(sa.Float())
        sa.Index('ix_quality', SensorData.__table__.c.quality)


def alembic_upgrade(op, step):
    """Step `step` (1-based) of the guide's history as an Alembic upgrade()."""
    import sqlalchemy as sa
    if step == 1:
        # The initial migration: the guide's models as they are.
        Base.metadata.create_all(op.get_bind())
    elif step == 2:
        # "Adding a Column", verbatim.
        op.add_column('sensor_data',
            sa.Column('quality_score', sa.Float(), nullable=True))
    elif step == 3:
        # "Adding an Index" (the guide's name), built CONCURRENTLY, which
        # PostgreSQL refuses in a transaction block: Alembic's autocommit_block.
        with op.get_context().autocommit_block():
            op.create_index('ix_device_last_seen', 'devices', ['last_seen'],
                            postgresql_concurrently=True)
    elif step == 4:
        # "Data Migration", verbatim but for `from models import Device`.
        from sqlalchemy import orm
        bind = op.get_bind()
        session = orm.Session(bind=bind)
        session.execute(
            "UPDATE devices SET device_type = 'ESP32' WHERE device_type IS NULL"
        )
        session.commit()
    elif step == 5:
        # "Use Transactions" (the batch example), verbatim.
        with op.batch_alter_table('sensor_data') as batch_op:
            batch_op.add_column(sa.Column('quality', sa.Float()))
            batch_op.create_index('ix_quality', ['quality'])


ENV_PY = """
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
connectable = engine_from_config(config.get_section(config.config_ini_section),
                                 prefix='sqlalchemy.', poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""

VERSION_PY = """
import sqlalchemy_reference as ref
from alembic import op

revision = {revision!r}
down_revision = {down_revision!r}
branch_labels = None
depends_on = None


def upgrade():
    ref.alembic_upgrade(op, {step})


def downgrade():
    raise NotImplementedError('not needed by the reference')
"""


def run_alembic(url, upto):
    """--via alembic: a real Alembic environment, `alembic upgrade REV`."""
    import tempfile
    from alembic import command
    from alembic.config import Config

    sys.modules.setdefault('sqlalchemy_reference', sys.modules[__name__])
    with tempfile.TemporaryDirectory() as script_dir:
        os.mkdir(os.path.join(script_dir, 'versions'))
        with open(os.path.join(script_dir, 'env.py'), 'w') as f:
            f.write(ENV_PY)
        for step, revision in enumerate(REVISIONS, start=1):
            down = REVISIONS[step - 2] if step > 1 else None
            with open(os.path.join(script_dir, 'versions', revision + '.py'), 'w') as f:
                f.write(VERSION_PY.format(revision=revision, down_revision=down, step=step))
        config = Config()
        config.set_main_option('script_location', script_dir)
        config.set_main_option('sqlalchemy.url', url.replace('%', '%%'))
        command.upgrade(config, REVISIONS[upto - 1])


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dsn")
    parser.add_argument("--upto", type=int, default=STEPS, choices=range(1, STEPS + 1))
    parser.add_argument("--via", choices=("models", "alembic"), default="models")
    parser.add_argument("--echo", action="store_true", help="print the SQL SQLAlchemy runs (--via models)")
    args = parser.parse_args(argv)

    dsn = args.dsn
    if dsn.startswith("postgres://"):
        dsn = "postgresql://" + dsn[len("postgres://"):]
    if dsn.startswith("postgresql://"):
        dsn = "postgresql+psycopg2://" + dsn[len("postgresql://"):]

    if args.via == "models":
        engine = create_engine(dsn, echo=args.echo)
        extend_models(args.upto)
        Base.metadata.create_all(engine)
        engine.dispose()
    else:
        run_alembic(dsn, args.upto)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
