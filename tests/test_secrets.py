"""lagmon.secrets: one rule for what is secret, and the Kafka client's messages and logs obey it
(no broker needed: errors come from an unreachable loopback port or the client's own paths)."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException

from lagmon import config, secrets
from lagmon.config import KafkaSettings
from lagmon.kafka import KafkaClient, KafkaUnavailable

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvPEMSECRETxyz\n-----END PRIVATE KEY-----"
OAUTH = "principal=x secret=TOPSECRET"
LEAKS = ("PEMSECRET", "TOPSECRET", "hunter2")


def clean(text: str) -> bool:
    return not any(leak in text for leak in LEAKS)


@pytest.mark.parametrize(
    "name",
    [
        "sasl_password",
        "sasl.password",
        "ssl.key.password",
        "SSL.KEY.PEM",
        "ssl.key.pem",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.client.secret",
    ],
)
def test_secret_names(name):
    assert secrets.is_secret(name)


@pytest.mark.parametrize("name", ["sasl_username", "sasl.username", "bootstrap.servers", "ssl.ca.location"])
def test_ordinary_names(name):
    assert not secrets.is_secret(name)


def test_config_uses_the_one_rule():
    assert config.is_secret is secrets.is_secret and config.MASK == secrets.MASK


def test_secret_values_are_the_non_empty_secret_properties_longest_first():
    props = {"sasl.password": "pw", "ssl.key.pem": PEM, "sasl.username": "user", "ssl.key.password": ""}
    assert secrets.secret_values(props) == (PEM, "pw")


def test_scrub_masks_every_occurrence_as_a_token():
    text = f"a {OAUTH}; b {PEM}. again {OAUTH}, and pw but not pwned"
    out = secrets.scrub(text, [OAUTH, PEM, "pw", ""])
    assert out == (
        f"a {secrets.MASK}; b {secrets.MASK}. again {secrets.MASK}, and {secrets.MASK} but not pwned"
    )
    assert secrets.scrub("nothing to hide", []) == "nothing to hide"


def test_scrub_masks_the_longer_value_first():
    assert secrets.scrub("key abc-def", ["abc", "abc-def"]) == f"key {secrets.MASK}"


@pytest.fixture
def client():
    k = KafkaSettings(
        bootstrap_servers="127.0.0.1:1",
        sasl_password="hunter2",
        request_timeout_seconds=0.5,
        librdkafka={"ssl.key.pem": PEM, "sasl.oauthbearer.config": OAUTH},
    )
    c = KafkaClient(k)
    yield c
    c.close()


def test_unreachable_error_holds_no_secret(client):
    with pytest.raises(KafkaUnavailable) as info:
        client.topics()
    assert info.value.kind == "unreachable" and clean(str(info.value))


def test_client_error_messages_mask_every_configured_secret(client):
    # a broker or librdkafka error that quotes a configured value
    quoted = KafkaException(KafkaError(KafkaError._INVALID_ARG, f"bad value {PEM} / {OAUTH} / hunter2"))
    message = str(client._unavailable("listing topics", quoted))
    assert clean(message) and message.count(secrets.MASK) == 3
    assert clean(client._scrub(f"{OAUTH}\n{PEM}"))


def test_error_callback_and_librdkafka_log_lines_mask_secrets(client, caplog):
    caplog.set_level(logging.DEBUG, logger="lagmon.kafka")
    client._on_error(KafkaError(KafkaError._TRANSPORT, f"refused ({OAUTH})"))
    client._rdlog.log(3, "FAIL [thrd:x]: %s", f"rejected key {PEM}")
    assert client._rdlog.last_failure is not None and clean(client._rdlog.last_failure)
    message = str(client._unavailable("listing topics", None))
    assert "refused" in message and clean(message)
    assert caplog.records and all(clean(r.getMessage()) for r in caplog.records)
