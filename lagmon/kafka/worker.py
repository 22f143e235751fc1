"""The sampler's Kafka worker: `python -m lagmon.kafka.worker FD PARENT_PID`, started by
lagmon.kafka.isolated (never by hand). It holds the only librdkafka client of the sampler and
answers its calls over the socket FD, one frame per call (lagmon.kafka.isolated.send/recv).

The first frame is the settings (a dict, so that no secret is in argv and lagmon.config is not
imported here); the answer says whether the client could be created. Then each request is
(method, args, kwargs) and each answer one of

    ("ok", result, requests)
    ("unavailable", text, kind, requests)      KafkaUnavailable
    ("error", text, requests)                  any other exception of the client

where requests counts the broker requests the call made. It exits when the socket closes
(the sampler closed it or died), when its parent dies (lagmon.instance.watch_parent: a request
in flight does not keep it alive) and on SIGTERM (the default action: supervisord stops the
sampler's whole process group). SIGINT (Ctrl-C reaches the process group) is ignored.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import types
from typing import Any

from lagmon import instance, memory
from lagmon.kafka.isolated import CALLS, CRASH, recv, send
from lagmon.kafka.unavailable import KafkaUnavailable


def serve(conn: socket.socket) -> None:
    from lagmon.kafka.client import KafkaClient  # loads librdkafka: only this process does

    settings = types.SimpleNamespace(**recv(conn))
    try:
        client = KafkaClient(settings, logger=logging.getLogger("lagmon.sampler.kafka"))  # type: ignore[arg-type]
    except KafkaUnavailable as exc:
        send(conn, ("unavailable", str(exc), exc.kind, 0))
        return
    send(conn, ("ok", None, 0))
    try:
        while True:
            try:
                method, args, kwargs = recv(conn)
            except (EOFError, OSError):
                break
            answer(conn, client, method, args, kwargs)
            memory.trim()  # the answer's objects and pickle, freed, back to the kernel
    finally:
        client.close()


def answer(conn: socket.socket, client: Any, method: str, args: tuple, kwargs: dict) -> None:
    if method == CRASH:  # test hook: die inside a call as librdkafka#5040 does
        os.kill(os.getpid(), signal.SIGSEGV)
    before = client.requests
    try:
        if method not in CALLS:
            raise ValueError(f"unknown call {method!r}")
        result = getattr(client, method)(*args, **kwargs)
    except KafkaUnavailable as exc:
        send(conn, ("unavailable", str(exc), exc.kind, client.requests - before))
    except Exception as exc:
        send(conn, ("error", f"{type(exc).__name__}: {client._scrub(str(exc))}", client.requests - before))
    else:
        send(conn, ("ok", result, client.requests - before))


def main(argv: list[str]) -> int:
    fd, parent = int(argv[0]), int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The sampler SIGKILLed (or orphaned and gone): exit at once, no one will read the answers.
    instance.watch_parent(lambda: os._exit(0), parent=parent)
    # stderr is the sampler's (supervisord's per-stage log): same shape as the stage's lines.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    conn = socket.socket(fileno=fd)
    try:
        serve(conn)
    except (EOFError, OSError):
        pass  # the sampler went away mid-handshake
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
