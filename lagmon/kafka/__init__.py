"""Kafka access for lagmon: the ONLY package that imports confluent_kafka.

    unavailable.py  KafkaUnavailable and its kinds (KINDS), without confluent_kafka
    errors.py       error classification
    settings.py     client_properties: KafkaSettings -> librdkafka properties
    client.py       KafkaClient: topics, groups, committed, heads (admin requests, poll loops)
    anchors.py      message_time / message_times: message timestamps read by an assign()-only consumer
    isolated.py     IsolatedKafkaClient: every call in a worker process (librdkafka#5040)
    worker.py       that worker process
    protocol.py     KafkaSource: what the sampler needs, satisfied by the clients and test fakes

Importing this package does not load librdkafka: KafkaClient, client_properties and
ANCHOR_GROUP_ID are imported on first use, so a process that only catches KafkaUnavailable or
drives an IsolatedKafkaClient (the sampler) never maps librdkafka and its TLS libraries.

What is secret, and its masking, comes from lagmon.secrets.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lagmon.kafka.isolated import IsolatedKafkaClient
from lagmon.kafka.protocol import KafkaSource
from lagmon.kafka.unavailable import KINDS, KafkaUnavailable
from lagmon.secrets import MASK

if TYPE_CHECKING:
    from lagmon.kafka.anchors import ANCHOR_GROUP_ID
    from lagmon.kafka.client import KafkaClient
    from lagmon.kafka.settings import client_properties

__all__ = [
    "ANCHOR_GROUP_ID",
    "KINDS",
    "MASK",
    "IsolatedKafkaClient",
    "KafkaClient",
    "KafkaSource",
    "KafkaUnavailable",
    "client_properties",
]

_LAZY = {
    "ANCHOR_GROUP_ID": "lagmon.kafka.anchors",
    "KafkaClient": "lagmon.kafka.client",
    "client_properties": "lagmon.kafka.settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lagmon.kafka' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # mypy: both real clients satisfy the sampler's protocol

    def _satisfy(plain: KafkaClient, isolated: IsolatedKafkaClient) -> tuple[KafkaSource, KafkaSource]:
        return plain, isolated
