#!/usr/bin/python3
"""The SQLAlchemy reference for migrations/modax: the MODAX guide's models,
created on a database the way the guide's own (Alembic) setup would.

    sqlalchemy_reference.py DSN [--upto N] [--via models|alembic] [--echo]
    sqlalchemy_reference.py --write-project DIR

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

--write-project DIR writes the guide's Alembic project on disk instead, for
`schemactl import-alembic` (tests/cli/import_alembic_test.sh): DIR/alembic.ini,
DIR/alembic/env.py as the guide's "Step 5" (offline and online branches, the
URL from $DATABASE_URL in place of the application's settings), DIR/models.py
(the guide's models, from this file, copied beside it) and the five
revisions, each with the downgrade the guide writes for its pattern (the
data migration's is `pass`). Run Alembic on it with
`python3 -m alembic -c DIR/alembic.ini upgrade REV` and DATABASE_URL set.

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


def alembic_downgrade(op, step):
    """The downgrade of step `step` (1-based), as the guide writes each
    pattern's."""
    if step == 1:
        Base.metadata.drop_all(op.get_bind())
    elif step == 2:
        op.drop_column('sensor_data', 'quality_score')
    elif step == 3:
        with op.get_context().autocommit_block():
            op.drop_index('ix_device_last_seen', table_name='devices',
                          postgresql_concurrently=True)
    elif step == 4:
        pass  # Cannot reverse data changes
    elif step == 5:
        with op.batch_alter_table('sensor_data') as batch_op:
            batch_op.drop_index('ix_quality')
            batch_op.drop_column('quality')


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


# --write-project: the guide's env.py ("Step 5: Configure Alembic
# Environment"), with get_url() reading $DATABASE_URL (else sqlalchemy.url)
# where the guide reads its application's settings.
GUIDE_ENV_PY = '''"""Alembic environment configuration"""
from logging.config import fileConfig
from sqlalchemy import engine_from_config, pool
from alembic import context
import sys
import os

# Add parent directory to path
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

# Import models and config
from models import Base

# Alembic Config object
config = context.config

# Setup logging
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

# Set target metadata
target_metadata = Base.metadata

# Get database URL from application config
def get_url():
    """Get database URL from application configuration"""
    return os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")

def run_migrations_offline() -> None:
    """Run migrations in 'offline' mode"""
    url = get_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )

    with context.begin_transaction():
        context.run_migrations()

def run_migrations_online() -> None:
    """Run migrations in 'online' mode"""
    configuration = config.get_section(config.config_ini_section)
    configuration['sqlalchemy.url'] = get_url()

    connectable = engine_from_config(
        configuration,
        prefix='sqlalchemy.',
        poolclass=pool.NullPool,
    )

    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata
        )

        with context.begin_transaction():
            context.run_migrations()

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''

GUIDE_ALEMBIC_INI = """[alembic]
script_location = %(here)s/alembic
sqlalchemy.url = postgresql://modax:password@localhost:5432/modax

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""

GUIDE_MODELS_PY = """# The guide's models package, from tests/modax/sqlalchemy_reference.py.
from sqlalchemy_reference import Base, SensorData, SafetyStatus, Device, AIAnalysis  # noqa: F401
"""

GUIDE_VERSION_PY = '''"""{message}

Revision ID: {revision}
Revises: {down_revision_text}
Create Date: {date}

"""
import sqlalchemy_reference as ref
from alembic import op

revision = {revision!r}
down_revision = {down_revision!r}
branch_labels = None
depends_on = None


def upgrade():
    ref.alembic_upgrade(op, {step})


def downgrade():
    ref.alembic_downgrade(op, {step})
'''

GUIDE_MESSAGES = ['Initial MODAX schema', 'Add sensor_data.quality_score',
                  'Index devices.last_seen concurrently', 'Set device_type to ESP32 where NULL',
                  'Add sensor_data.quality with its index']


def write_project(root):
    """--write-project: the guide's Alembic project, on disk."""
    import shutil
    versions = os.path.join(root, 'alembic', 'versions')
    os.makedirs(versions, exist_ok=True)
    shutil.copyfile(os.path.abspath(__file__), os.path.join(root, 'sqlalchemy_reference.py'))
    with open(os.path.join(root, 'models.py'), 'w') as f:
        f.write(GUIDE_MODELS_PY)
    with open(os.path.join(root, 'alembic.ini'), 'w') as f:
        f.write(GUIDE_ALEMBIC_INI)
    with open(os.path.join(root, 'alembic', 'env.py'), 'w') as f:
        f.write(GUIDE_ENV_PY)
    for step, revision in enumerate(REVISIONS, start=1):
        down = REVISIONS[step - 2] if step > 1 else None
        message = GUIDE_MESSAGES[step - 1]
        name = '%s_%s.py' % (revision, message.lower().replace(' ', '_').replace('.', '_'))
        with open(os.path.join(versions, name), 'w') as f:
            f.write(GUIDE_VERSION_PY.format(
                message=message, revision=revision, down_revision=down,
                down_revision_text=down or '', step=step,
                date='2025-12-%02d 09:00:00.000000' % (8 + step)))


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
    if argv[:1] == ["--write-project"] and len(argv) == 2:
        write_project(argv[1])
        return 0
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
