"""IsolatedKafkaClient: every Kafka call of the sampler in one long-lived worker process.

librdkafka (2.16 and earlier, librdkafka#5040) can crash the whole process with SIGSEGV when
OffsetFetch gets NOT_COORDINATOR, as when a group coordinator moves during a broker restart,
and a call stuck inside librdkafka cannot be interrupted by a signal. In the worker
(lagmon.kafka.worker, a plain `python -m` subprocess) such a crash costs one sample (reported
as an error, logged once per outage) and a call that outlives its deadline is ended by killing
the worker; a new worker answers the next call. The sampler stays up, answers SIGTERM, and
never loads librdkafka itself: its memory is the sampler's data alone.

The worker is a subprocess rather than a multiprocessing child, so no resource tracker runs
beside it, and it imports only the Kafka client (not lagmon.config or the sampler).
Frames on the socket between them are a 4-byte length and a pickle (both ends are lagmon).
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lagmon.kafka.unavailable import KafkaUnavailable

if TYPE_CHECKING:
    from lagmon.config import KafkaSettings

# The parent's wait beyond the child's own (the child stops at the same deadline, then answers).
ANSWER_GRACE_SECONDS = 1.0
# Without a deadline: the worker waits at most the request timeout per call; allow for its start.
START_ALLOWANCE_SECONDS = 30.0
STOP_SECONDS = 2.0  # how long close() waits for the worker to exit before killing it
CALLS = ("topics", "groups", "committed", "heads", "heads_and_log_starts", "message_times")
CRASH = "crash"  # test hook (LAGMON_TEST_CRASH_COMMITTED): the worker dies as librdkafka#5040 does
SETTINGS = (
    "bootstrap_servers",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_ca_location",
    "request_timeout_seconds",
    "librdkafka",
)
MALLOC_ARENA_MAX = "2"  # the worker's, unless the environment sets one
_HEADER = struct.Struct("!I")
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def send(conn: socket.socket, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    conn.sendall(_HEADER.pack(len(data)))
    conn.sendall(data)  # not header + data: that would copy a committed answer of many MB


def _read(conn: socket.socket, n: int, until: float | None) -> bytearray:
    """Exactly n bytes, received into one buffer (no chunks joined: one copy of the frame)."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        if until is not None:
            remaining = until - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            conn.settimeout(remaining)
        count = conn.recv_into(view[got:])
        if not count:
            raise EOFError
        got += count
    return buf


def recv(conn: socket.socket, until: float | None = None) -> Any:
    """The next frame; TimeoutError at `until` (time.monotonic()), EOFError when the peer is gone."""
    try:  # a socket timeout is a TimeoutError
        (size,) = _HEADER.unpack(_read(conn, _HEADER.size, until))
        return pickle.loads(_read(conn, size, until))
    finally:
        if until is not None:
            conn.settimeout(None)


class IsolatedKafkaClient:
    """What KafkaClient does (the KafkaSource calls), each call in the worker process."""

    def __init__(self, k: KafkaSettings, *, logger: logging.Logger | None = None):
        self.settings = k
        self.log = logger or logging.getLogger("lagmon.kafka")
        self.timeout = float(k.request_timeout_seconds)
        self.requests = 0
        self._bootstrap = k.bootstrap_servers
        self._worker: subprocess.Popen | None = None
        self._conn: socket.socket | None = None
        self._start_worker()  # a client that cannot be created fails here, as in-process

    # ------------------------------------------------------------------ the calls

    def topics(self, *, deadline: float | None = None) -> tuple[dict[str, int], set[str]]:
        return self._call("topics", "listing topics", deadline)

    def groups(self, *, deadline: float | None = None) -> tuple[set[str], bool]:
        return self._call("groups", "listing consumer groups", deadline)

    def committed(
        self, groups: Iterable[str], *, deadline: float | None = None
    ) -> tuple[dict[str, dict[tuple[str, int], int]], dict[str, str]]:
        wanted = list(dict.fromkeys(groups))
        if not wanted:
            return {}, {}
        method = CRASH if os.environ.get("LAGMON_TEST_CRASH_COMMITTED") else "committed"
        return self._call(method, f"fetching committed offsets of {len(wanted)} group(s)", deadline, wanted)

    def heads(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> dict[tuple[str, int], int]:
        wanted = list(partitions)
        return self._call("heads", f"listing head offsets of {len(wanted)} partition(s)", deadline, wanted)

    def heads_and_log_starts(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        wanted = list(partitions)
        what = f"listing head and log start offsets of {len(wanted)} partition(s)"
        return self._call("heads_and_log_starts", what, deadline, wanted)

    def message_times(
        self,
        wanted: Iterable[tuple[str, int, int]],
        *,
        budget: float | None = None,
        deadline: float | None = None,
    ) -> dict[tuple[str, int, int], tuple[int, float] | None]:
        keys = list(wanted)
        what = f"reading the timestamps of {len(keys)} message(s)"
        return self._call("message_times", what, deadline, keys, budget=budget, extra=budget or 0.0)

    def close(self) -> None:
        self._stop_worker()

    def __enter__(self) -> IsolatedKafkaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the worker

    def _start_worker(self) -> socket.socket:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        # librdkafka's threads would each get a glibc malloc arena (64 MB reserved, partly touched).
        env.setdefault("MALLOC_ARENA_MAX", MALLOC_ARENA_MAX)
        try:
            worker = subprocess.Popen(
                [sys.executable, "-m", "lagmon.kafka.worker", str(child.fileno()), str(os.getpid())],
                stdin=subprocess.DEVNULL,
                pass_fds=(child.fileno(),),
                env=env,
            )
        finally:
            child.close()
        self._worker, self._conn = worker, parent
        # Stop it at exit too (the sampler's normal end closes the client; this covers the rest).
        atexit.unregister(self._stop_worker)
        atexit.register(self._stop_worker)
        what = f"creating the kafka client for {self._bootstrap}"
        try:
            settings = {name: getattr(self.settings, name, None) for name in SETTINGS}
            settings["librdkafka"] = dict(settings["librdkafka"] or {})  # a plain dict pickles
            send(parent, settings)
            self._answer(recv(parent, time.monotonic() + START_ALLOWANCE_SECONDS), what)
        except TimeoutError:
            self._stop_worker()
            raise KafkaUnavailable(f"kafka at {self._bootstrap}: {what} timed out", kind="timeout") from None
        except (EOFError, OSError):
            raise self._crashed(what) from None
        except KafkaUnavailable:
            self._stop_worker()
            raise
        return parent

    def _stop_worker(self) -> int | None:
        worker, conn = self._worker, self._conn
        self._worker = self._conn = None
        if conn is not None:
            conn.close()  # the worker reads EOF and exits
        if worker is None:
            return None
        try:
            return worker.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            worker.kill()
            return worker.wait(STOP_SECONDS)

    def _call(
        self, method: str, what: str, deadline: float | None, *args: Any, extra: float = 0.0, **kwargs: Any
    ) -> Any:
        """Run client.<method>(*args, deadline=deadline, **kwargs) in the worker. `deadline`
        (time.monotonic(), the same clock in both processes) bounds the worker's requests and
        this wait (plus ANSWER_GRACE_SECONDS); a worker that has not answered by then is killed."""
        conn = self._conn
        if conn is None or self._worker is None or self._worker.poll() is not None:
            self._stop_worker()
            conn = self._start_worker()
        if deadline is None:
            until = time.monotonic() + self.timeout + extra + START_ALLOWANCE_SECONDS
        else:
            until = max(time.monotonic(), deadline) + ANSWER_GRACE_SECONDS
        try:
            send(conn, (method, args, {"deadline": deadline, **kwargs}))
            answer = recv(conn, until)
        except TimeoutError:
            self._stop_worker()
            raise KafkaUnavailable(f"kafka at {self._bootstrap}: {what} timed out", kind="timeout") from None
        except (EOFError, OSError):
            raise self._crashed(what) from None
        return self._answer(answer, what)

    def _answer(self, answer: tuple, what: str) -> Any:
        self.requests += answer[-1]
        if answer[0] == "ok":
            return answer[1]
        if answer[0] == "unavailable":
            raise KafkaUnavailable(answer[1], kind=answer[2])
        raise KafkaUnavailable(f"kafka at {self._bootstrap}: {what}: {answer[1]}", kind="error")

    def _crashed(self, what: str) -> KafkaUnavailable:
        code = self._stop_worker()
        how = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
        if code == -15:
            return KafkaUnavailable(
                f"kafka at {self._bootstrap}: {what}: interrupted (the client process was stopped by SIGTERM)",
                kind="error",
            )
        return KafkaUnavailable(
            f"kafka at {self._bootstrap}: {what}: the client process crashed ({how}); a known "
            "librdkafka crash when a group coordinator moves (librdkafka#5040); retrying",
            kind="error",
        )
