"""Control characters (a group id or topic with a newline, an ESC) are escaped in every message
and log line of the Kafka module, as the stages do with lagmon.stages.runtime.printable."""

from __future__ import annotations

import logging
import socket

from lagmon.config import KafkaSettings
from lagmon.kafka import KafkaClient


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_librdkafka_lines_and_client_messages_escape_control_characters(caplog):
    k = KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed_port()}", request_timeout_seconds=1)
    with KafkaClient(k, logger=logging.getLogger("lagmon.test.printable")) as client:
        caplog.set_level(logging.DEBUG, logger="lagmon.test.printable")
        client._rdlog.log(7, "FAIL [rdkafka]: group %s\n2026-01-01 ERROR forged", "g\x1b[31m")
        assert client._scrub("group a\nb") == "group a\\nb"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("lagmon.test.printable")]
    assert lines and all("\n" not in line and "\x1b" not in line for line in lines), lines
    assert any("g\\x1b[31m\\n2026-01-01 ERROR forged" in line for line in lines), lines
    assert client._rdlog.last_failure is not None and "\n" not in client._rdlog.last_failure
