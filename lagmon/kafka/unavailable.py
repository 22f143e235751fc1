"""KafkaUnavailable and its kinds, without confluent_kafka: the sampler raises and catches it
but never loads librdkafka itself (every Kafka call runs in its worker, lagmon.kafka.isolated).

"auth"         credentials or TLS rejected: raised as soon as librdkafka reports it;
"unreachable"  no connection within request_timeout_seconds (the last connection error
               is named);
"timeout"      connected, but no answer within request_timeout_seconds;
"error"        anything else (bad client configuration, unexpected broker error).
"""

from __future__ import annotations

KINDS = ("unreachable", "auth", "timeout", "error")


class KafkaUnavailable(Exception):
    """Kafka could not answer. `.kind` is one of KINDS; the message never holds a secret."""

    def __init__(self, message: str, *, kind: str = "error"):
        if kind not in KINDS:
            raise ValueError(f"KafkaUnavailable kind must be one of {KINDS} (got {kind!r})")
        super().__init__(message)
        self.kind = kind
