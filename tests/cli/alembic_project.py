#!/usr/bin/python3
"""Writes an Alembic project for `schemactl import-alembic`'s test
(tests/cli/import_alembic_test.sh): every shape the importer must carry over.

    alembic_project.py DIR

DIR/alembic.ini, DIR/alembic/env.py (Alembic's own generic template: an
offline branch with literal_binds and the named paramstyle, an online branch
with engine_from_config; the URL from $DATABASE_URL, else sqlalchemy.url)
and DIR/alembic/versions/*.py:

    r0 (core)           root, branch label `core`; downgrade() raises
                        NotImplementedError: irreversible
    a1 -> r0            a column, a comment with '%' in it, rows by op.bulk_insert
    b1 (reports)        a second root, branch label `reports`, depends_on a1
    b2 -> b1            op.execute("COMMIT") then CREATE INDEX CONCURRENTLY
                        (and the same around DROP INDEX CONCURRENTLY)
    a2 -> a1            a column with a server default
    m1 -> (a2, b2)      merge point, with an index of its own
    d1 -> m1            data migration: reads the rows and updates each
                        (cannot render offline); its downgrade has a '%'
    e1 -> d1            depends_on b1; an index CONCURRENTLY in an
                        autocommit_block

Run Alembic on it with `python3 -m alembic -c DIR/alembic.ini ...` and
DATABASE_URL set.
"""
import os
import sys

ALEMBIC_INI = """[alembic]
script_location = %(here)s/alembic
prepend_sys_path = .
sqlalchemy.url = postgresql://localhost/unused

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console
qualname =

[logger_sqlalchemy]
level = WARN
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""

# Alembic 1.8's generic env.py, with the URL from the environment (as the
# MODAX guide's get_url() takes it from the application's settings).
ENV_PY = '''import os
from logging.config import fileConfig

from sqlalchemy import engine_from_config
from sqlalchemy import pool

from alembic import context

config = context.config

if config.config_file_name is not None:
    fileConfig(config.config_file_name)

target_metadata = None


def get_url():
    return os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")


def run_migrations_offline() -> None:
    context.configure(
        url=get_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    configuration = config.get_section(config.config_ini_section)
    configuration["sqlalchemy.url"] = get_url()
    connectable = engine_from_config(
        configuration,
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )

    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)

        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''

HEADER = '''"""{message}

Revision ID: {rev}
Revises: {revises}
Create Date: {date}

"""
from alembic import op
import sqlalchemy as sa


revision = {rev!r}
down_revision = {down!r}
branch_labels = {labels!r}
depends_on = {depends!r}

'''

REVISIONS = [
    dict(rev="0a0000000000", down=None, labels=("core",), depends=None,
         message="Create users", date="2025-11-03 10:00:00.000000",
         body='''
def upgrade():
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
    )


def downgrade():
    raise NotImplementedError("the first schema is not taken back")
'''),
    dict(rev="a10000000000", down="0a0000000000", labels=None, depends=None,
         message="Users get an email and three rows", date="2025-11-04 10:00:00.000000",
         body='''
def upgrade():
    op.add_column("users", sa.Column("email", sa.String(100)))
    op.execute("COMMENT ON COLUMN users.email IS '100% unique, %(not)s a parameter'")
    users = sa.table("users", sa.column("name", sa.String), sa.column("email", sa.String))
    op.bulk_insert(users, [{"name": "Ada", "email": None},
                           {"name": "Grace", "email": None},
                           {"name": "Linus", "email": "linus@kernel.example"}])


def downgrade():
    op.execute("DELETE FROM users WHERE name IN ('Ada', 'Grace', 'Linus')")
    op.drop_column("users", "email")
'''),
    dict(rev="b10000000000", down=None, labels=("reports",), depends="a10000000000",
         message="Reports of users", date="2025-11-05 10:00:00.000000",
         body='''
def upgrade():
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("body", sa.Text()),
    )


def downgrade():
    op.drop_table("reports")
'''),
    dict(rev="b20000000000", down="b10000000000", labels=None, depends=None,
         message="Index reports.user_id concurrently", date="2025-11-06 10:00:00.000000",
         body='''
def upgrade():
    op.execute("COMMIT")
    op.create_index("ix_reports_user_id", "reports", ["user_id"], postgresql_concurrently=True)


def downgrade():
    op.execute("COMMIT")
    op.drop_index("ix_reports_user_id", table_name="reports", postgresql_concurrently=True)
'''),
    dict(rev="a20000000000", down="a10000000000", labels=None, depends=None,
         message="Users are active by default", date="2025-11-07 10:00:00.000000",
         body='''
def upgrade():
    op.add_column("users", sa.Column("active", sa.Boolean(), server_default=sa.true(),
                                     nullable=False))


def downgrade():
    op.drop_column("users", "active")
'''),
    dict(rev="3e0000000000", down=("a20000000000", "b20000000000"), labels=None, depends=None,
         message="Merge users and reports", date="2025-11-08 10:00:00.000000",
         body='''
def upgrade():
    op.create_index("ix_users_name", "users", ["name"])


def downgrade():
    op.drop_index("ix_users_name", table_name="users")
'''),
    dict(rev="d10000000000", down="3e0000000000", labels=None, depends=None,
         message="Fill in missing emails", date="2025-11-09 10:00:00.000000",
         body='''
def upgrade():
    # The data migration the importer cannot render offline: it reads rows.
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, name FROM users WHERE email IS NULL ORDER BY id"))
    for user_id, name in rows.fetchall():
        conn.execute(sa.text("UPDATE users SET email = :email WHERE id = :id"),
                     {"email": name.lower() + "@example.com", "id": user_id})


def downgrade():
    op.execute("UPDATE users SET email = NULL WHERE email LIKE '%@example.com'")
'''),
    dict(rev="e10000000000", down="d10000000000", labels=None, depends="b10000000000",
         message="Index users.email concurrently", date="2025-11-10 10:00:00.000000",
         body='''
def upgrade():
    with op.get_context().autocommit_block():
        op.create_index("ix_users_email", "users", ["email"], postgresql_concurrently=True)


def downgrade():
    with op.get_context().autocommit_block():
        op.drop_index("ix_users_email", table_name="users", postgresql_concurrently=True)
'''),
]


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = argv[0]
    versions = os.path.join(root, "alembic", "versions")
    os.makedirs(versions, exist_ok=True)
    with open(os.path.join(root, "alembic.ini"), "w") as f:
        f.write(ALEMBIC_INI)
    with open(os.path.join(root, "alembic", "env.py"), "w") as f:
        f.write(ENV_PY)
    for r in REVISIONS:
        down = r["down"]
        revises = ", ".join(down) if isinstance(down, tuple) else (down or "")
        name = "%s_%s.py" % (r["rev"], r["message"].lower().replace(" ", "_").replace(".", "_"))
        with open(os.path.join(versions, name), "w") as f:
            f.write(HEADER.format(revises=revises, **r) + r["body"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
