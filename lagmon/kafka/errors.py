"""KafkaUnavailable and the classification of confluent-kafka errors into its kinds.

"auth"         credentials or TLS rejected: raised as soon as librdkafka reports it;
"unreachable"  no connection within request_timeout_seconds (the last connection error
               is named);
"timeout"      connected, but no answer within request_timeout_seconds;
"error"        anything else (bad client configuration, unexpected broker error).
"""

from __future__ import annotations

import re

from confluent_kafka import KafkaError, KafkaException

KINDS = ("unreachable", "auth", "timeout", "error")

AUTH_CODES = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL}
CONNECT_CODES = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
NOT_CONNECTED = CONNECT_CODES | {
    KafkaError._TIMED_OUT,
    KafkaError._TIMED_OUT_QUEUE,
    KafkaError._WAIT_COORD,
    KafkaError.REQUEST_TIMED_OUT,
}


class KafkaUnavailable(Exception):
    """Kafka could not answer. `.kind` is one of KINDS; the message never holds a secret."""

    def __init__(self, message: str, *, kind: str = "error"):
        if kind not in KINDS:
            raise ValueError(f"KafkaUnavailable kind must be one of {KINDS} (got {kind!r})")
        super().__init__(message)
        self.kind = kind


def _code(exc: BaseException | None) -> int | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].code()
    return None


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        err = exc.args[0]
        return f"{err.name()}: {err.str()}"
    return repr(exc) if exc is not None else "no answer"


def _all_unconnected(failures: list[BaseException]) -> bool:
    return bool(failures) and all(_code(f) in NOT_CONNECTED for f in failures)


# librdkafka ends connection errors with e.g. "(after 304ms in state AUTH_REQ, 2 identical error(s)
# suppressed)": timings that differ on every retry would make one outage look like many.
_TIMING_RE = re.compile(r" \(after \d+ms in state [A-Z_]+(?:, \d+ identical error\(s\) suppressed)?\)")


def _untimed(text: str) -> str:
    return _TIMING_RE.sub("", text)
