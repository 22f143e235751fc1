"""Kafka access for lagmon: the ONLY package that imports confluent_kafka.

    errors.py    KafkaUnavailable and its kinds (KINDS), error classification
    settings.py  client_properties: KafkaSettings -> librdkafka properties
    client.py    KafkaClient: topics, groups, committed, heads (admin requests, poll loops)
    anchors.py   message_time / message_times: message timestamps read by an assign()-only consumer
    isolated.py  IsolatedKafkaClient: committed() in a child process (librdkafka#5040)
    protocol.py  KafkaSource: what the sampler needs, satisfied by the clients and test fakes

What is secret, and its masking, comes from lagmon.secrets.
"""

from typing import TYPE_CHECKING

from lagmon.kafka.anchors import ANCHOR_GROUP_ID
from lagmon.kafka.client import KafkaClient
from lagmon.kafka.errors import KINDS, KafkaUnavailable
from lagmon.kafka.isolated import IsolatedKafkaClient
from lagmon.kafka.protocol import KafkaSource
from lagmon.kafka.settings import client_properties
from lagmon.secrets import MASK

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

if TYPE_CHECKING:  # mypy: both real clients satisfy the sampler's protocol

    def _satisfy(plain: KafkaClient, isolated: IsolatedKafkaClient) -> tuple[KafkaSource, KafkaSource]:
        return plain, isolated
