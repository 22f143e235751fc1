"""Tools for tests that drive a real Kafka broker and real lagmon stages.

They live in the testing package (shared with bench/); this module keeps their old import path.
"""

from testing.stages import REPO, StageProcess, write_config
from testing.traffic import (
    LagConsumer,
    SteadyProducer,
    Truth,
    TruthRecorder,
    admin,
    create_topic,
    entry,
    read_report,
    unique,
    wait_for,
)

__all__ = [
    "REPO",
    "LagConsumer",
    "StageProcess",
    "SteadyProducer",
    "Truth",
    "TruthRecorder",
    "admin",
    "create_topic",
    "entry",
    "read_report",
    "unique",
    "wait_for",
    "write_config",
]
