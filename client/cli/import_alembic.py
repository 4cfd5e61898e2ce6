"""schemactl import-alembic's driver: renders an Alembic project's revisions.

schemactl embeds this file (client/CMakeLists.txt makes a header of it), writes
it to a private temporary directory and runs it with the project's Python
(`--python`, default `python3`):

    python3 -B import_alembic.py < request.json > answer.json

The request is one JSON object on stdin; the answer ONE JSON object on
stdout (anything else the project prints, from env.py's logging to a stray
print(), is sent to stderr). Every answer has "protocol": 1; a failure is
{"protocol": 1, "error": {"kind", "message", "revision", "path"}}, kind
being one of no_alembic, config, env, step, capture, driver.

Requests:

  {"mode": "render", "config": "alembic.ini", "name": "alembic", "x": ["key=value"]}
      Every revision of the project, oldest first (parents and dependencies
      before their children), each step rendered offline on its own, the way
      `alembic upgrade --sql A:B` renders it, through the project's env.py:
        {"id", "down_revisions", "branch_labels", "depends_on", "message",
         "create_date" (ISO 8601, or null), "path",
         "upgrade": {"sql", "obtained": "offline"} or
                    {"sql": null, "obtained": "needs_online", "error"},
         "downgrade": the same, or {"sql": null, "obtained": "irreversible",
                    "reason"},
         "warnings": [...]}
      plus "heads", "alembic", "sqlalchemy", "python", "script_location",
      "version_table" (as env.py configures it) and
      "transaction_per_migration".

  {"mode": "capture", "config", "name", "x", "revision", "directions":
   ["upgrade"] | ["downgrade"] | ["upgrade", "downgrade"], "conninfo"}
      Runs the revision's upgrade() and/or downgrade(), in that order, on the
      database of the libpq conninfo (a scratch database schemactl created
      and built up to the revision's parents), each in a transaction that
      commits, and answers the SQL they executed:
        {"upgrade": {"sql", "obtained": "captured"}, "downgrade": {"sql",
         "obtained": "captured"} or {"sql": null, "obtained": "irreversible",
         "reason"}}
      A failing upgrade() is an error (kind "capture").

How one step is rendered offline. Alembic's CLI spells a start as one
revision (`upgrade A:B --sql`); a merge starts from several and a revision
with depends_on from its parents, so the driver does what alembic.command
does, from Python: an EnvironmentContext(config, script, fn=...,
as_sql=True, starting_rev=<the step's parents>), the project's env.py run
by ScriptDirectory.run_env(), and a fn that returns exactly that one
RevisionStep. The step's upgrade()/downgrade() is wrapped so that unique
marker comments bracket its output: what Alembic writes around it (BEGIN,
COMMIT, the alembic_version DDL and DML, "-- Running upgrade" lines) is
outside the markers and dropped. Transaction control inside the step (an
op.execute("COMMIT") before CREATE INDEX CONCURRENTLY, an autocommit_block)
stays in the SQL: schemactl strips it with PostgreSQL's parser and makes the
revision non-transactional.

env.py's configure() is adjusted in offline mode only, as the driver's own
choice and whatever env.py says: literal_binds=True and the named
paramstyle (so a '%' in SQL is not doubled to '%%'), and a connection
handed to configure() is replaced by its dialect. An env.py that connects
to a database even in offline mode still does so, as with `alembic upgrade
--sql`.

Online capture never goes through env.py's online branch, which may
connect anywhere (a production URL from the application's settings): env.py
runs once offline (for its imports and configure() options), then the step
runs on a MigrationContext the driver configures on the conninfo's
database itself. Every statement SQLAlchemy sends is recorded, with its
parameters rendered by psycopg2's mogrify; commits and begins inside the
step are recorded as COMMIT and BEGIN.
"""

import datetime
import functools
import inspect
import io
import json
import os
import re
import secrets
import sys
import traceback

PROTOCOL = 1


class Failure(Exception):
    """An error the answer reports: kind, message, and where."""

    def __init__(self, kind, message, revision=None, path=None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.revision = revision
        self.path = path


def describe(error):
    """`Type: message` of an exception, and the innermost frame outside
    Alembic, SQLAlchemy and this driver ("at versions/x.py:12")."""
    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    text = re.sub(r"\s+", " ", text)
    where = None
    for frame in traceback.extract_tb(error.__traceback__):
        name = os.path.abspath(frame.filename)
        if name.startswith(LIBRARIES) or name == os.path.abspath(__file__) or "<" in name:
            continue
        where = "%s:%d" % (display_path(name), frame.lineno)
    if len(text) > 2000:
        text = text[:2000] + "..."
    return text + (" (at %s)" % where if where else "")


def library_dirs():
    """The directories of Alembic and SQLAlchemy (frames there are not the
    project's)."""
    dirs = []
    for name in ("alembic", "sqlalchemy"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            dirs.append(os.path.dirname(os.path.abspath(module.__file__)) + os.sep)
    return tuple(dirs) or ("\0",)


LIBRARIES = ("\0",)


def display_path(path):
    """`path` relative to the working directory when it is below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def create_date(module):
    """The "Create Date:" of a revision's docstring as ISO 8601 (UTC with Z
    when it carries a zone, as written otherwise), or None."""
    doc = getattr(module, "__doc__", None) or ""
    match = re.search(r"^\s*Create Date:\s*(.+?)\s*$", doc, re.MULTILINE)
    if not match:
        return None
    text = match.group(1)
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        return text
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.replace(microsecond=0).isoformat() + "Z"
    return value.replace(microsecond=0).isoformat()


class Project:
    """The Alembic project of a request: config, script directory, and the
    configure() options env.py used."""

    def __init__(self, request):
        try:
            import alembic  # noqa: F401
            import sqlalchemy  # noqa: F401
            from alembic.config import Config
            from alembic.runtime.environment import EnvironmentContext
            from alembic.script import ScriptDirectory
        except ImportError as e:
            raise Failure("no_alembic", "%s cannot import Alembic (%s); run schemactl with "
                          "--python naming the project's interpreter (its virtualenv's "
                          "bin/python), where Alembic and what env.py imports are installed"
                          % (sys.executable, e))
        import alembic as alembic_module
        import sqlalchemy as sqlalchemy_module
        global LIBRARIES
        LIBRARIES = library_dirs()
        self.alembic_version = alembic_module.__version__
        self.sqlalchemy_version = sqlalchemy_module.__version__
        self.EnvironmentContext = EnvironmentContext
        path = request["config"]
        if not os.path.isfile(path):
            raise Failure("config", "%s: no such file" % path)
        # `alembic -x KEY=VALUE`: env.py reads them with context.get_x_argument().
        import argparse
        cmd_opts = argparse.Namespace(x=list(request.get("x") or []) or None)
        self.config = Config(path, ini_section=request.get("name") or "alembic",
                             cmd_opts=cmd_opts)
        if not self.config.file_config.has_section(self.config.config_ini_section):
            raise Failure("config", "%s has no [%s] section" % (path, self.config.config_ini_section))
        try:
            self.script = ScriptDirectory.from_config(self.config)
        except Exception as e:
            raise Failure("config", "%s: %s" % (path, describe(e)))
        self.options = {}  # what env.py last passed to configure()
        self.original_configure = EnvironmentContext.configure
        self._patch_configure()

    def _patch_configure(self):
        project = self
        original = self.original_configure
        signature = inspect.signature(original)

        @functools.wraps(original)
        def configure(env, *args, **kw):
            bound = signature.bind(env, *args, **kw)
            values = dict(bound.arguments)
            values.pop("self", None)
            extra = values.pop("kw", {}) or {}
            values.update(extra)
            if not env.is_offline_mode():
                return original(env, **values)
            project.options = dict(values)
            connection = values.pop("connection", None)
            url = values.get("url")
            if connection is not None:
                values["dialect_name"] = connection.dialect.name
            elif url is None and values.get("dialect_name") is None:
                values["dialect_name"] = "postgresql"
            backend = values.get("dialect_name")
            if url is not None:
                from sqlalchemy.engine import url as sqla_url
                backend = sqla_url.make_url(url).get_backend_name()
            if backend != "postgresql":
                raise Failure("env", "env.py configures the %r dialect; schemad runs on "
                              "PostgreSQL" % backend)
            dialect_opts = dict(values.get("dialect_opts") or {})
            dialect_opts["paramstyle"] = "named"
            values["dialect_opts"] = dialect_opts
            values["literal_binds"] = True
            values.pop("output_buffer", None)
            values.pop("starting_rev", None)
            return original(env, **values)

        self.EnvironmentContext.configure = configure

    def run_env(self, fn, as_sql, **kw):
        """Runs env.py with `fn` as the migration function; returns what it
        wrote (offline)."""
        buffer = io.StringIO()
        with self.EnvironmentContext(self.config, self.script, fn=fn, as_sql=as_sql,
                                     output_buffer=buffer, **kw):
            self.script.run_env()
        return buffer.getvalue()

    def version_table(self):
        table = self.options.get("version_table") or "alembic_version"
        schema = self.options.get("version_table_schema")
        return "%s.%s" % (schema, table) if schema else table


def listing(project):
    """Runs env.py once offline with no steps, so that its imports and
    sys.path changes are in place before the revision files load (as in
    `alembic upgrade`), then loads every revision."""
    scripts = {}

    def collect(rev, context):
        try:
            for script in project.script.walk_revisions():
                scripts[script.revision] = script
        except Exception as e:
            raise Failure("config", "cannot load the Alembic revisions of %s: %s" % (
                display_path(project.script.versions), describe(e)))
        return []

    try:
        project.run_env(collect, as_sql=True)
    except Failure:
        raise
    except Exception as e:
        raise Failure("env", "env.py (%s) failed in offline mode: %s" % (
            display_path(project.script.env_py_location), describe(e)))
    return scripts


def upgrade_order(scripts):
    """Revision ids, each after its down revisions and dependencies;
    otherwise in the order Alembic walks them from base."""
    walked = list(reversed(list(scripts)))
    done, order = set(), []

    def visit(rev, stack):
        if rev in done:
            return
        if rev in stack:
            raise Failure("config", "revision %s is part of a cycle" % rev)
        stack.add(rev)
        script = scripts[rev]
        for parent in list(to_tuple(script.down_revision)) + list(
                getattr(script, "_resolved_dependencies", ()) or ()):
            if parent in scripts:
                visit(parent, stack)
        stack.discard(rev)
        done.add(rev)
        order.append(rev)

    for rev in walked:
        visit(rev, set())
    return order


def to_tuple(value):
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def depends_on(project, script):
    """depends_on as written, partial ids written out in full; branch labels
    stay labels."""
    out = []
    labels = set()
    for other in project.script.revision_map._revision_map.values():
        if other is not None and hasattr(other, "branch_labels"):
            labels.update(other._orig_branch_labels or ())
    for dep in to_tuple(script.dependencies):
        if dep in labels:
            out.append(dep)
        else:
            out.append(project.script.get_revision(dep).revision)
    return out


def render_offline(project, script, upgrade):
    """One step of `script` rendered offline; (sql or None, exception or None)."""
    from alembic import op
    from alembic.runtime.migration import MigrationStep

    revision_map = project.script.revision_map
    token = secrets.token_hex(8)
    begin = "-- schemad-import-begin-%s" % token
    end = "-- schemad-import-end-%s" % token
    failure = []
    step = (MigrationStep.upgrade_from_script(revision_map, script) if upgrade
            else MigrationStep.downgrade_from_script(revision_map, script))
    real = step.migration_fn

    @functools.wraps(real)
    def wrapped(*args, **kw):
        impl = op.get_context().impl
        impl.static_output(begin)
        try:
            real(*args, **kw)
        except Exception as e:  # the step's own failure: reported, not fatal
            failure.append(e)
        finally:
            impl.static_output(end)

    step.migration_fn = wrapped
    if upgrade:
        start = to_tuple(script.down_revision) or None
        destination = script.revision
    else:
        start = (script.revision,)
        destination = ",".join(to_tuple(script.down_revision)) or "base"
    try:
        output = project.run_env(lambda rev, context: [step], as_sql=True,
                                 starting_rev=start, destination_rev=destination)
    except Failure:
        raise
    except Exception as e:
        if failure:
            return None, failure[0]
        raise Failure("env", "env.py (%s) failed rendering %s of %s: %s" % (
            display_path(project.script.env_py_location),
            "the upgrade" if upgrade else "the downgrade", script.revision, describe(e)),
            script.revision, display_path(script.path))
    if failure:
        return None, failure[0]
    first = output.find(begin + "\n")
    last = output.find(end + "\n")
    if first < 0 or last < first:
        raise Failure("env", "env.py (%s) did not run the step of %s (no context.run_migrations()"
                      " in its offline branch?)" % (
                          display_path(project.script.env_py_location), script.revision),
                      script.revision, display_path(script.path))
    return output[first + len(begin) + 1:last].strip() + "\n", None


def render(project):
    scripts = listing(project)
    revisions = []
    for rev in upgrade_order(scripts):
        script = scripts[rev]
        path = display_path(script.path)
        warnings = []
        entry = {
            "id": script.revision,
            "down_revisions": list(to_tuple(script.down_revision)),
            "branch_labels": list(script._orig_branch_labels or ()),
            "depends_on": depends_on(project, script),
            "message": script.doc or "",
            "create_date": create_date(script.module),
            "path": path,
            "warnings": warnings,
        }
        for name in ("upgrade", "downgrade"):
            if not callable(getattr(script.module, name, None)):
                raise Failure("step", "%s has no %s() function" % (path, name), rev, path)
        sql, error = render_offline(project, script, True)
        if error is None:
            entry["upgrade"] = {"sql": sql, "obtained": "offline"}
        else:
            entry["upgrade"] = {"sql": None, "obtained": "needs_online", "error": describe(error)}
        sql, error = render_offline(project, script, False)
        if error is None:
            entry["downgrade"] = {"sql": sql, "obtained": "offline"}
        elif isinstance(error, NotImplementedError):
            entry["downgrade"] = {"sql": None, "obtained": "irreversible",
                                  "reason": "downgrade() raises " + describe(error)}
        else:
            entry["downgrade"] = {"sql": None, "obtained": "needs_online", "error": describe(error)}
        revisions.append(entry)
    return {
        "protocol": PROTOCOL,
        "alembic": project.alembic_version,
        "sqlalchemy": project.sqlalchemy_version,
        "python": sys.executable,
        "script_location": display_path(project.script.dir),
        "version_table": project.version_table(),
        "transaction_per_migration": bool(project.options.get("transaction_per_migration")),
        "heads": sorted(project.script.get_heads()),
        "revisions": revisions,
    }


def capture(project, request):
    scripts = listing(project)
    rev = request["revision"]
    if rev not in scripts:
        raise Failure("capture", "no revision %s in the project" % rev, rev)
    script = scripts[rev]
    path = display_path(script.path)
    try:
        import psycopg2
        from sqlalchemy import create_engine, event, pool
    except ImportError as e:
        raise Failure("no_alembic", "%s cannot import psycopg2 (%s), which running a step on the "
                      "scratch database needs" % (sys.executable, e), rev, path)
    conninfo = request["conninfo"]
    engine = create_engine("postgresql+psycopg2://", creator=lambda: psycopg2.connect(conninfo),
                           poolclass=pool.NullPool)
    recording = []
    statements = []

    @event.listens_for(engine, "before_cursor_execute")
    def before(conn, cursor, statement, parameters, context, executemany):
        if not recording:
            return
        if context is not None and getattr(context, "no_parameters", False):
            statements.append(statement)
            return
        for params in (parameters if executemany else [parameters]):
            try:
                statements.append(cursor.mogrify(statement, params).decode("utf-8"))
            except Exception:
                statements.append(statement)

    @event.listens_for(engine, "commit")
    def commit(conn):
        if recording:
            statements.append("COMMIT")

    @event.listens_for(engine, "begin")
    def begin(conn):
        if recording:
            statements.append("BEGIN")

    online = {k: v for k, v in project.options.items() if k in (
        "transactional_ddl", "version_table", "version_table_schema", "include_schemas",
        "render_as_batch")}
    answer = {"protocol": PROTOCOL}
    with engine.connect() as connection:
        with project.EnvironmentContext(project.config, project.script,
                                        fn=lambda rev, context: [], as_sql=False) as env:
            project.original_configure(env, connection=connection, **online)
            from alembic.operations import Operations
            context = env.get_context()
            with Operations.context(context):
                for direction in request["directions"]:
                    fn = getattr(script.module, direction)
                    del statements[:]
                    try:
                        with context.begin_transaction():
                            recording.append(True)
                            try:
                                fn()
                            finally:
                                recording.clear()
                    except Exception as e:
                        if direction == "downgrade":
                            answer["downgrade"] = {
                                "sql": None, "obtained": "irreversible",
                                "reason": "downgrade() raises offline and on the scratch "
                                          "database: " + describe(e)}
                            continue
                        raise Failure("capture", "revision %s (%s): upgrade() failed on the "
                                      "scratch database: %s" % (rev, path, describe(e)), rev, path)
                    sql = "".join(s.strip().rstrip(";") + ";\n\n" for s in statements
                                  if s.strip())
                    answer[direction] = {"sql": sql, "obtained": "captured"}
    engine.dispose()
    return answer


def main():
    answer_stream = os.fdopen(os.dup(1), "w", encoding="utf-8")
    # What the project prints goes to stderr: stdout carries the answer only.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        try:
            request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
        except ValueError as e:
            raise Failure("driver", "the request on stdin is not JSON: %s" % e)
        project = Project(request)
        if request.get("mode") == "render":
            answer = render(project)
        elif request.get("mode") == "capture":
            answer = capture(project, request)
        else:
            raise Failure("driver", "unknown mode %r" % request.get("mode"))
    except Failure as e:
        answer = {"protocol": PROTOCOL, "error": {"kind": e.kind, "message": e.message,
                                                  "revision": e.revision, "path": e.path}}
    except Exception as e:
        traceback.print_exc()
        answer = {"protocol": PROTOCOL, "error": {"kind": "driver", "message": describe(e),
                                                  "revision": None, "path": None}}
    answer_stream.write(json.dumps(answer))
    answer_stream.write("\n")
    answer_stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
