"""schemad's Python client: wait_for_head, status, history and streamed upgrades.

The Python counterpart of the C++ SDK (client/sdk/schemad/client.h) for
control layers written in Python. Every error is a SchemadError naming the
database and the server; no message ever contains the bearer token.
"""
import datetime
import random
import time
from dataclasses import dataclass
from typing import Iterator, List, Optional, Union

import grpc

from schemad_client._generated.schemad.v1 import schemad_pb2, schemad_pb2_grpc

# Codes worth another EnsureHead attempt (as the C++ SDK's WaitForHead):
# schemad or the database unreachable, lock_timeout or deadlock, server
# overloaded, the lock wait or this attempt ran out.
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED,
              grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED)
_INITIAL_BACKOFF = 0.1  # seconds
_MAX_BACKOFF = 5.0
_MULTIPLIER = 2.0
_JITTER = 0.2  # each sleep is backoff * (1 +- jitter), uniformly
_STILL_RUNNING_TIMEOUT = 1.0  # what wait_for_head spends, past its deadline, asking what runs
_DEFAULT_TIMEOUT = 30.0  # unary calls
_OPERATION_TIMEOUT = 24 * 3600.0  # streamed upgrades
_MIN_CONNECT_TIMEOUT_MS = 2000
_MAX_RESPONSE_BYTES = 64 << 20
# As the C++ SDK's channel: gRPC's own reconnect backoff follows the retry
# policy, so a retried call finds a fresh connection attempt rather than a
# wait of up to 2 minutes (gRPC's default) after schemad comes up. The minimum
# is also gRPC's connect timeout: a slow handshake on a loaded host must not
# be abandoned. Responses are bounded by the server; a large migration set's
# description can still pass gRPC's default of 4 MiB.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", int(_INITIAL_BACKOFF * 1000)),
    ("grpc.min_reconnect_backoff_ms", max(int(_INITIAL_BACKOFF * 1000), _MIN_CONNECT_TIMEOUT_MS)),
    ("grpc.max_reconnect_backoff_ms", int(_MAX_BACKOFF * 1000)),
    ("grpc.max_receive_message_length", _MAX_RESPONSE_BYTES),
]

Seconds = Union[float, int, datetime.timedelta]


@dataclass(frozen=True)
class Tls:
    """TLS to schemad. Every field is optional: Tls() uses the system's roots.

    root_ca_file: PEM CAs that sign the server's certificate.
    cert_file, key_file: PEM client certificate and key (mutual TLS).
    server_name: name to verify instead of the target's host.
    """
    root_ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    server_name: Optional[str] = None


class SchemadError(Exception):
    """A failed call: `code` is the gRPC status code (see schemad.proto for
    what each means), `database` and `server` what it was about, `details`
    the server's message. str() names all of them."""

    def __init__(self, code: grpc.StatusCode, server: str, database: str, details: str):
        self.code = code
        self.server = server
        self.database = database
        self.details = details
        super().__init__(f"database {database} on schemad {server}: {code.name}: {details}")


class WaitForHeadTimeout(SchemadError):
    """wait_for_head's deadline passed before the database reached head."""


def _seconds(value: Seconds) -> float:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return float(value)


def _read_file(path: Optional[str], what: str) -> Optional[bytes]:
    if not path:
        return None
    try:
        with open(path, "rb") as file:
            return file.read(1 << 20)  # PEM files are small; bound the read
    except OSError as error:
        raise ValueError(f"schemad TLS {what} {path}: {error.strerror}") from None


class Client:
    """One channel to schemad (share it: it is the warm connection).

    server: gRPC target ("host:port", "dns:///name:port", "unix:///path").
    token: bearer token (sent as `authorization: Bearer ...`), or None.
    tls: None (plaintext), True (TLS with the system's roots) or a Tls.
    who: free-form caller label recorded in schemad_history ("site-a-control-layer").
    """

    def __init__(self, server: str, token: Optional[str] = None,
                 tls: Union[None, bool, Tls] = None, who: Optional[str] = None):
        if not server:
            raise ValueError("schemad server address is empty")
        self.server = server
        self._token = token
        self._metadata = []
        if token:
            self._metadata.append(("authorization", f"Bearer {token}"))
        if who:
            self._metadata.append(("x-schemad-who", who))
        options = list(_CHANNEL_OPTIONS)
        if tls is None or tls is False:
            self._channel = grpc.insecure_channel(server, options=options)
        else:
            config = Tls() if tls is True else tls
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read_file(config.root_ca_file, "root_ca_file"),
                private_key=_read_file(config.key_file, "key_file"),
                certificate_chain=_read_file(config.cert_file, "cert_file"))
            if config.server_name:
                options.append(("grpc.ssl_target_name_override", config.server_name))
            self._channel = grpc.secure_channel(server, credentials, options=options)
        self._stub = schemad_pb2_grpc.SchemadStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _error(self, error: grpc.RpcError, database: str) -> SchemadError:
        details = error.details() or ""
        if self._token:  # the server never echoes it; make sure nothing else does
            details = details.replace(self._token, "<token>")
        return SchemadError(error.code(), self.server, database, details)

    def _unary(self, method, request, database: str, timeout: Optional[Seconds]):
        try:
            return method(request, timeout=_seconds(timeout if timeout is not None else
                                                    _DEFAULT_TIMEOUT),
                          metadata=self._metadata)
        except grpc.RpcError as error:
            raise self._error(error, database) from None

    def status(self, database: str, timeout: Optional[Seconds] = None) -> schemad_pb2.DatabaseStatus:
        """The database's version rows against its migration set (role reader)."""
        return self._unary(self._stub.GetStatus, schemad_pb2.GetStatusRequest(database=database),
                           database, timeout)

    def history(self, database: str, limit: int = 100,
                timeout: Optional[Seconds] = None) -> List[schemad_pb2.HistoryEntry]:
        """The database's schemad_history rows, newest first, at most `limit` (role reader)."""
        response = self._unary(self._stub.History,
                               schemad_pb2.HistoryRequest(database=database, limit=limit),
                               database, timeout)
        return list(response.entries)

    def ensure_head(self, database: str, no_apply: bool = False,
                    timeout: Optional[Seconds] = None) -> schemad_pb2.EnsureHeadResponse:
        """One EnsureHead call, no retries (role migrator; reader with no_apply)."""
        return self._unary(self._stub.EnsureHead,
                           schemad_pb2.EnsureHeadRequest(database=database, no_apply=no_apply),
                           database, timeout)

    def upgrade(self, database: str, target: str = "heads",
                timeout: Optional[Seconds] = None) -> Iterator[schemad_pb2.OperationEvent]:
        """Upgrades to `target`, yielding the operation's events (`accepted`
        first, `finished` last). Raises SchemadError when the operation fails.
        Never sent twice: it waits for an unreachable server until `timeout`
        (default 24 h). Closing the generator stops following the operation
        but does not cancel it (role migrator)."""
        call = self._stub.Upgrade(
            schemad_pb2.UpgradeRequest(database=database, target=target),
            timeout=_seconds(timeout if timeout is not None else _OPERATION_TIMEOUT),
            metadata=self._metadata, wait_for_ready=True)
        try:
            for event in call:
                yield event
        except grpc.RpcError as error:
            raise self._error(error, database) from None
        finally:
            call.cancel()  # no-op once the stream has ended

    def _still_running(self, database: str) -> str:
        """"; still running on the server: operation op-... (...)", or ""."""
        try:
            response = self._stub.ListOperations(
                schemad_pb2.ListOperationsRequest(database=database, running_only=True, limit=1),
                timeout=_STILL_RUNNING_TIMEOUT, metadata=self._metadata)
        except grpc.RpcError:
            return ""
        if not response.operations:
            return ""
        op = response.operations[0]
        kind = schemad_pb2.OperationKind.Name(op.kind).removeprefix("OPERATION_KIND_").lower()
        state = schemad_pb2.OperationState.Name(op.state).removeprefix("OPERATION_STATE_").lower()
        out = f"; still running on the server: operation {op.operation_id} ({kind}"
        if op.target:
            out += f" {op.target}"
        if op.who:
            out += f", by {op.who}"
        out += f"), {state}"
        if op.current_revision:
            out += f" revision {op.current_revision}, step {op.step_index + 1} of {op.step_count}"
        return out

    def wait_for_head(self, database: str, deadline: Seconds) -> schemad_pb2.EnsureHeadResponse:
        """See the module-level wait_for_head."""
        total = _seconds(deadline)
        end = time.monotonic() + total
        backoff = _INITIAL_BACKOFF
        last: Optional[SchemadError] = None
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                # Only worth asking when the server answered or kept the call.
                still_running = ("" if last is not None and last.code == grpc.StatusCode.UNAVAILABLE
                                 else self._still_running(database))
                details = f"did not reach head within {total:g} s{still_running}"
                if last is not None:
                    details += f"; last error: {last.code.name}: {last.details}"
                raise WaitForHeadTimeout(grpc.StatusCode.DEADLINE_EXCEEDED, self.server, database,
                                         details)
            try:
                return self.ensure_head(database, timeout=remaining)
            except SchemadError as error:
                if error.code not in _RETRYABLE:
                    raise
                # A call cut short by this wait's own deadline says less than
                # the error before it (e.g. UNAVAILABLE: nobody listens).
                cut_short = (error.code == grpc.StatusCode.DEADLINE_EXCEEDED
                             and time.monotonic() >= end)
                if last is None or not cut_short:
                    last = error
            sleep = backoff * random.uniform(1 - _JITTER, 1 + _JITTER)
            time.sleep(max(0.0, min(sleep, end - time.monotonic())))
            backoff = min(backoff * _MULTIPLIER, _MAX_BACKOFF)


def wait_for_head(server: str, database: str, deadline: Seconds, token: Optional[str] = None,
                  tls: Union[None, bool, Tls] = None,
                  who: Optional[str] = None) -> schemad_pb2.EnsureHeadResponse:
    """Makes sure `database` is at the head of its migration set before
    `deadline` (seconds or a timedelta) passes: calls EnsureHead, which
    applies pending revisions when the server allows it, and calls again
    while schemad or the database is unavailable, the lock is busy or an
    attempt ran out (exponential backoff with jitter). Returns the last
    EnsureHeadResponse (`applied`, `heads`...).

    Raises WaitForHeadTimeout (code DEADLINE_EXCEEDED) when the deadline
    passes, naming the database, the server, the operation still running on
    the server if any, and the last error; SchemadError at once for any other
    error (NOT_FOUND unknown database, UNAUTHENTICATED, PERMISSION_DENIED,
    FAILED_PRECONDITION behind but not allowed to apply, ...)."""
    with Client(server, token=token, tls=tls, who=who) as client:
        return client.wait_for_head(database, deadline)


def status(server: str, database: str, token: Optional[str] = None,
           tls: Union[None, bool, Tls] = None) -> schemad_pb2.DatabaseStatus:
    """The database's status (state, current and graph heads, pending count)."""
    with Client(server, token=token, tls=tls) as client:
        return client.status(database)


def history(server: str, database: str, limit: int = 100, token: Optional[str] = None,
            tls: Union[None, bool, Tls] = None) -> List[schemad_pb2.HistoryEntry]:
    """The database's schemad_history rows, newest first."""
    with Client(server, token=token, tls=tls) as client:
        return client.history(database, limit)


def upgrade(server: str, database: str, target: str = "heads", token: Optional[str] = None,
            tls: Union[None, bool, Tls] = None,
            who: Optional[str] = None) -> Iterator[schemad_pb2.OperationEvent]:
    """Upgrades `database` to `target`, yielding its OperationEvents."""
    with Client(server, token=token, tls=tls, who=who) as client:
        yield from client.upgrade(database, target)
