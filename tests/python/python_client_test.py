"""schemad_client (client/python) against a real schemad and PostgreSQL.

Run by python_client_test.sh with the package installed by pip into a
virtual environment; needs SCHEMAD_BINARY (the schemad to start) and
SCHEMAD_TEST_PG_DIR (a cluster of tests/testing/pg_cluster.sh). Without
them it FAILS; it never skips. One schemad on 127.0.0.1:0 with a bearer
tokens file serves four fresh databases of the cluster.
"""
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

import schemad_client
from schemad_client import schemad_pb2

PSQL = "/usr/lib/postgresql/15/bin/psql"
TOKEN = "py-migrator-token-0123456789"
WRONG_TOKEN = "py-wrong-token-9876543210"
REVISIONS = {
    "r1.sql": "-- revision: r1\n\n-- +upgrade\nCREATE TABLE public.r1 (id int);\n\n"
              "-- +downgrade\nDROP TABLE public.r1;\n",
    "r2.sql": "-- revision: r2\n-- revises: r1\n\n-- +upgrade\nCREATE TABLE public.r2 (id int);\n\n"
              "-- +downgrade\nDROP TABLE public.r2;\n",
}
SITES = ("site-wait", "site-upgrade", "site-token", "site-late")

state = {}  # set up once for the module: server address, DSNs, the process


def required_env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set (python_client_test.sh sets it)")
    return value


def psql(dsn, sql):
    result = subprocess.run([PSQL, "-X", "-qAt", dsn, "-c", sql], capture_output=True, text=True,
                            timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"psql: {sql}: {result.stderr.strip()}")
    return result.stdout.strip()


def setUpModule():
    required_env("SCHEMAD_BINARY")  # fail early, before creating databases
    pg_dir = pathlib.Path(required_env("SCHEMAD_TEST_PG_DIR"))
    password = (pg_dir / "password").read_text().strip()
    port = (pg_dir / "port").read_text().strip()
    admin = f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
    work = pathlib.Path(tempfile.mkdtemp(prefix="schemad-python-"))
    state["work"] = work
    (work / "set").mkdir()
    for name, text in REVISIONS.items():
        (work / "set" / name).write_text(text)
    databases = []
    state["dsn"] = {}
    suffix = f"{os.getpid()}_{int(time.time() * 1000) % 100000}"
    for site in SITES:
        database = f"python_{site.replace('-', '_')}_{suffix}"
        psql(admin, f"CREATE DATABASE {database}")
        dsn = admin.rsplit("/", 1)[0] + "/" + database
        state["dsn"][site] = dsn
        dsn_file = work / f"{site}.dsn"
        dsn_file.write_text(dsn + "\n")
        dsn_file.chmod(0o600)  # schemad refuses secret files others can read
        databases.append(f"{{name: {site}, migration_set: py, dsn_file: {dsn_file.name}}}")
    tokens = work / "tokens"
    tokens.write_text(f"{TOKEN} migrator python-control-layer\n")
    tokens.chmod(0o600)
    state["databases"] = ", ".join(databases)
    state["process"], state["server"] = start_schemad("main", "127.0.0.1:0")


def start_schemad(name, listen):
    """Starts schemad (config NAME.yaml listening on LISTEN, every site) and
    returns the process and its address; the process is running, and
    listening once its "schemad listening on" line is out (polled here)."""
    work = state["work"]
    (work / f"{name}.yaml").write_text(
        f"listen: {listen}\n"
        "tokens_file: tokens\n"
        "migration_sets: [{name: py, directory: set}]\n"
        f"databases: [{state['databases']}]\n")
    with open(work / f"{name}.out", "w") as out, open(work / f"{name}.err", "w") as err:
        process = subprocess.Popen(
            [required_env("SCHEMAD_BINARY"), "--config", str(work / f"{name}.yaml"),
             "--log-level", "warn"], stdout=out, stderr=err)
    end = time.monotonic() + 30
    while time.monotonic() < end:  # poll for "schemad listening on HOST:PORT"
        for line in (work / f"{name}.out").read_text().splitlines():
            if line.startswith("schemad listening on "):
                return process, line.removeprefix("schemad listening on ")
        if process.poll() is not None:
            break
        time.sleep(0.05)
    stop_schemad(process, name)
    raise RuntimeError(f"schemad did not start: {(work / f'{name}.err').read_text()}")


def stop_schemad(process, name):
    process.terminate()
    # A clean shutdown exits 0; a sanitizer report (asan preset) does not.
    if process.wait(timeout=60) != 0:
        raise RuntimeError(f"schemad exited {process.returncode} on SIGTERM: "
                           f"{(state['work'] / f'{name}.err').read_text()[-4000:]}")


def tearDownModule():
    process = state.get("process")
    try:
        if process is not None:
            stop_schemad(process, "main")
    finally:
        if "work" in state:
            shutil.rmtree(state["work"], ignore_errors=True)


def version_rows(site):
    return psql(state["dsn"][site],
                "SELECT coalesce(string_agg(version_num, ',' ORDER BY version_num), '') "
                "FROM public.alembic_version")


class PythonClientTest(unittest.TestCase):

    def test_installed_package_is_the_one_under_test(self):
        # python_client_test.sh runs from a directory without the source.
        self.assertIn("site-packages", schemad_client.__file__)

    def test_wait_for_head_brings_the_database_to_head(self):
        server = state["server"]
        before = schemad_client.status(server, "site-wait", token=TOKEN)
        self.assertEqual(before.state, schemad_pb2.DATABASE_STATE_BEHIND)
        self.assertEqual(before.pending, 2)
        self.assertFalse(before.at_head)

        response = schemad_client.wait_for_head(server, "site-wait", deadline=60, token=TOKEN,
                                                who="python-test")
        self.assertTrue(response.applied)
        self.assertEqual(list(response.heads), ["r2"])
        self.assertEqual(response.revisions_applied, 2)
        self.assertEqual(version_rows("site-wait"), "r2")

        after = schemad_client.status(server, "site-wait", token=TOKEN)
        self.assertEqual(after.state, schemad_pb2.DATABASE_STATE_AT_HEAD)
        self.assertTrue(after.at_head)
        self.assertEqual(list(after.current_heads), ["r2"])
        # At head: nothing applied again.
        again = schemad_client.wait_for_head(server, "site-wait", deadline=60, token=TOKEN)
        self.assertFalse(again.applied)
        self.assertEqual(list(again.heads), ["r2"])

        rows = schemad_client.history(server, "site-wait", token=TOKEN)
        self.assertEqual([(row.revision, row.direction, row.outcome) for row in rows],
                         [("r2", "up", "success"), ("r1", "up", "success")])
        self.assertTrue(all("python-control-layer" in row.who for row in rows), rows)
        self.assertEqual(rows[0].operation_id, response.operation_id)
        self.assertEqual(len(schemad_client.history(server, "site-wait", limit=1, token=TOKEN)), 1)

    def test_streamed_upgrade_yields_its_events(self):
        server = state["server"]
        events = list(schemad_client.upgrade(server, "site-upgrade", target="r1", token=TOKEN))
        kinds = [event.WhichOneof("event") for event in events]
        self.assertEqual(kinds[0], "accepted")
        self.assertEqual(kinds[-1], "finished")
        self.assertIn("revision_started", kinds)
        self.assertIn("revision_finished", kinds)
        self.assertEqual([e.sequence for e in events], list(range(len(events))))
        finished = events[-1].finished
        self.assertEqual(finished.state, schemad_pb2.OPERATION_STATE_SUCCEEDED)
        self.assertEqual(list(finished.heads), ["r1"])
        self.assertEqual(finished.revisions_run, 1)
        self.assertTrue(all(e.database == "site-upgrade" for e in events))
        self.assertEqual(version_rows("site-upgrade"), "r1")

        with schemad_client.Client(server, token=TOKEN) as client:
            started = [e.revision_started.revision for e in client.upgrade("site-upgrade")
                       if e.WhichOneof("event") == "revision_started"]
            self.assertEqual(started, ["r2"])
            self.assertTrue(client.status("site-upgrade").at_head)

    def test_unknown_database_is_an_error_naming_it(self):
        server = state["server"]
        with self.assertRaises(schemad_client.SchemadError) as raised:
            schemad_client.wait_for_head(server, "site-nowhere", deadline=60, token=TOKEN)
        self.assertEqual(raised.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertEqual(raised.exception.database, "site-nowhere")
        self.assertIn("database site-nowhere on schemad " + server, str(raised.exception))
        self.assertIn("NOT_FOUND", str(raised.exception))
        with self.assertRaises(schemad_client.SchemadError) as raised:
            schemad_client.status(server, "site-nowhere", token=TOKEN)
        self.assertIn("site-nowhere", str(raised.exception))
        with self.assertRaises(schemad_client.SchemadError) as raised:
            list(schemad_client.upgrade(server, "site-nowhere", token=TOKEN))
        self.assertEqual(raised.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertIn("site-nowhere", str(raised.exception))

    def test_wrong_token_is_rejected_without_echoing_it(self):
        server = state["server"]
        start = time.monotonic()
        with self.assertRaises(schemad_client.SchemadError) as raised:
            schemad_client.wait_for_head(server, "site-token", deadline=60, token=WRONG_TOKEN)
        self.assertLess(time.monotonic() - start, 30, "UNAUTHENTICATED is not worth retrying")
        error = raised.exception
        self.assertEqual(error.code, grpc.StatusCode.UNAUTHENTICATED)
        for text in (str(error), repr(error), error.details):
            self.assertNotIn(WRONG_TOKEN, text)
        self.assertIn("site-token", str(error))
        for call in (lambda: schemad_client.status(server, "site-token"),
                     lambda: schemad_client.history(server, "site-token", token=WRONG_TOKEN)):
            with self.assertRaises(schemad_client.SchemadError) as raised:
                call()
            self.assertEqual(raised.exception.code, grpc.StatusCode.UNAUTHENTICATED)
            self.assertNotIn(WRONG_TOKEN, str(raised.exception))
        self.assertEqual(version_rows_or_none("site-token"), None)  # nothing applied

    def test_wait_for_head_waits_for_a_schemad_that_starts_later(self):
        # wait_for_head starts while nothing listens on the port (UNAVAILABLE),
        # then schemad starts there: a later attempt brings the database to head.
        with socket.socket() as reserved:
            reserved.bind(("127.0.0.1", 0))
            port = reserved.getsockname()[1]
        result = {}

        def wait():
            try:
                result["response"] = schemad_client.wait_for_head(
                    f"127.0.0.1:{port}", "site-late", deadline=60, token=TOKEN)
            except schemad_client.SchemadError as error:
                result["error"] = error

        waiter = threading.Thread(target=wait)
        waiter.start()
        try:
            process, _ = start_schemad("late", f"127.0.0.1:{port}")
        except BaseException:
            waiter.join()
            raise
        try:
            waiter.join(timeout=90)
            self.assertFalse(waiter.is_alive())
            self.assertNotIn("error", result)
            self.assertTrue(result["response"].applied)
            self.assertEqual(version_rows("site-late"), "r2")
        finally:
            stop_schemad(process, "late")

    def test_wait_for_head_gives_up_at_its_deadline_when_the_server_is_unreachable(self):
        # A bound port nobody listens on: connections are refused (UNAVAILABLE).
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            server = f"127.0.0.1:{unused.getsockname()[1]}"
            start = time.monotonic()
            with self.assertRaises(schemad_client.WaitForHeadTimeout) as raised:
                schemad_client.wait_for_head(server, "site-wait", deadline=1.5, token=TOKEN)
            elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 1.5)
        self.assertLess(elapsed, 10)
        error = raised.exception
        self.assertIsInstance(error, schemad_client.SchemadError)
        self.assertEqual(error.code, grpc.StatusCode.DEADLINE_EXCEEDED)
        message = str(error)
        self.assertIn(f"database site-wait on schemad {server}", message)
        self.assertIn("did not reach head within 1.5 s", message)
        self.assertIn("last error: UNAVAILABLE", message)
        self.assertNotIn(TOKEN, message)


def version_rows_or_none(site):
    """The version rows, or None when there is no version table."""
    exists = psql(state["dsn"][site], "SELECT to_regclass('public.alembic_version') IS NOT NULL")
    return version_rows(site) if exists == "t" else None


if __name__ == "__main__":
    unittest.main()
