"""IsolatedKafkaClient: committed() in a long-lived child process (crash isolation)."""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from lagmon.kafka.client import KafkaClient
from lagmon.kafka.errors import KafkaUnavailable

if TYPE_CHECKING:
    from lagmon.config import KafkaSettings


def _committed_worker(settings: KafkaSettings, conn: Connection) -> None:
    """Child process: answers committed() requests from the sampler over a pipe, until the
    pipe closes (the parent closed it or died) or the parent dies (instance.watch_parent: a
    request in flight does not keep it alive). SIGINT (Ctrl-C reaches the whole process
    group) is ignored; SIGTERM ends it, as multiprocessing does at the parent's exit."""
    import signal

    from lagmon import instance

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The sampler SIGKILLed (or orphaned and gone): exit at once, no one will read the answers.
    instance.watch_parent(lambda: os._exit(0))
    # stderr is the sampler's (supervisord's per-stage log): same shape as the stage's lines.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if os.environ.get("LAGMON_TEST_CRASH_COMMITTED"):  # test hook: crash like librdkafka#5040
        os.kill(os.getpid(), signal.SIGSEGV)
    client = KafkaClient(settings, logger=logging.getLogger("lagmon.sampler.offsets"))
    while True:
        try:
            groups, deadline = conn.recv()
        except (EOFError, OSError):
            break
        before = client.requests
        try:
            offsets, errors = client.committed(groups, deadline=deadline)
            conn.send(("ok", offsets, errors, client.requests - before))
        except KafkaUnavailable as exc:
            conn.send(("unavailable", str(exc), exc.kind, client.requests - before))
    client.close()


# The parent's wait beyond the child's own (the child stops at the same deadline, then answers).
ANSWER_GRACE_SECONDS = 1.0
# Without a deadline: the child waits at most the request timeout per burst; allow for its start.
START_ALLOWANCE_SECONDS = 30.0


class IsolatedKafkaClient(KafkaClient):
    """KafkaClient whose committed() runs in a long-lived child process.

    librdkafka (2.16 and earlier, librdkafka#5040) can crash the whole process with SIGSEGV
    when OffsetFetch gets NOT_COORDINATOR, as when a group coordinator moves during a broker
    restart. In the child such a crash costs one sample (reported as an error, logged once
    per outage); the child is started again for the next sample. The sampler stays up."""

    def __init__(self, k: KafkaSettings, *, logger: logging.Logger | None = None):
        super().__init__(k, logger=logger)
        self._worker: BaseProcess | None = None
        self._conn: Connection | None = None

    def _start_worker(self) -> Connection:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        worker = ctx.Process(
            target=_committed_worker, args=(self.settings, child), name="lagmon-offsets", daemon=True
        )
        self._worker = worker
        worker.start()
        child.close()
        self._conn = parent
        # At exit multiprocessing SIGTERMs daemonic children and joins them, but the worker
        # ignores SIGTERM: stop it first (atexit runs the last registered handler first).
        atexit.unregister(self._stop_worker)
        atexit.register(self._stop_worker)
        return parent

    def _stop_worker(self) -> int | None:
        worker, conn = self._worker, self._conn
        self._worker = self._conn = None
        if conn is not None:
            conn.close()
        if worker is None:
            return None
        worker.join(2)
        if worker.is_alive():
            worker.kill()
            worker.join(2)
        return worker.exitcode

    def committed(
        self, groups: Iterable[str], *, deadline: float | None = None
    ) -> tuple[dict[str, dict[tuple[str, int], int]], dict[str, str]]:
        """As KafkaClient.committed, in the child. `deadline` (time.monotonic(), the same clock in
        both processes) bounds the child's requests and this wait (plus ANSWER_GRACE_SECONDS)."""
        wanted = list(dict.fromkeys(groups))
        if not wanted:
            return {}, {}
        what = f"fetching committed offsets of {len(wanted)} group(s)"
        conn = self._conn
        if conn is None or self._worker is None or not self._worker.is_alive():
            conn = self._start_worker()
        try:
            conn.send((wanted, deadline))
            if deadline is None:
                wait = self.timeout + START_ALLOWANCE_SECONDS
            else:
                wait = max(0.0, deadline - time.monotonic()) + ANSWER_GRACE_SECONDS
            if not conn.poll(wait):
                self._stop_worker()
                raise KafkaUnavailable(f"kafka at {self._bootstrap}: {what} timed out", kind="timeout")
            answer = conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            code = self._stop_worker()
            how = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
            if code == -15:
                raise KafkaUnavailable(
                    f"kafka at {self._bootstrap}: {what}: interrupted (the client "
                    "process was stopped by SIGTERM)",
                    kind="error",
                ) from None
            raise KafkaUnavailable(
                f"kafka at {self._bootstrap}: {what}: the client process crashed ({how}); a known "
                "librdkafka crash when a group coordinator moves (librdkafka#5040); retrying",
                kind="error",
            ) from None
        self.requests += answer[-1]
        if answer[0] == "ok":
            return answer[1], answer[2]
        raise KafkaUnavailable(answer[1], kind=answer[2])

    def close(self) -> None:
        self._stop_worker()
        super().close()
