"""TLS for real: the sampler and reporter against a broker's SSL and SASL_SSL (SCRAM-SHA-512)
listeners, with librdkafka's hostname verification on (its default, not changed here).

This module starts its OWN brokers (testing.broker.Broker), never the shared one:
  main     127.0.0.1:29192 PLAINTEXT, 29193 SASL_PLAINTEXT, 29194 controller, 29195 SSL,
           29196 SASL_SSL (SCRAM-SHA-512 users created at format), for the whole module;
  expired  127.0.0.1:29197 PLAINTEXT, 29198 controller, 29199 SSL serving an expired
           certificate, only during its test.
Certificates come from testing.tls (openssl, keytool) in a directory of the test session.
Traffic (producer, consumer group) uses the PLAINTEXT listener; lagmon uses the TLS ones.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from testing.broker import USERS, Broker, TlsListeners
from testing.fetch import Failure
from testing.probe import quiet_logger
from testing.stages import StageProcess, write_config
from testing.tls import Certs, make_certs
from testing.traffic import LagConsumer, SteadyProducer, create_topic, entry, read_report, unique, wait_for
from tests.test_faults import log_records, loud

HOST = "127.0.0.1"
PORT, SASL_PORT, CONTROLLER_PORT = 29192, 29193, 29194
SSL_PORT, SASL_SSL_PORT = 29195, 29196
EXPIRED_PORT, EXPIRED_CONTROLLER_PORT = 29197, 29198
EXPIRED_SSL_PORT = 29199
START_TIMEOUT_NOTE = "a first start may fetch the jars with Maven"
TMP = Path(os.environ.get("TMPDIR") or "/tmp")


def _workdir(port: int) -> Path:
    # Fixed, so a broker left behind by an aborted run of this module is stopped first.
    return TMP / f"lagmon-tls-kafka-{port}"


def _start(broker: Broker) -> None:
    broker.stop()
    try:
        broker.start()
    except Failure as exc:
        broker.stop()
        pytest.fail(f"could not start the TLS test broker ({START_TIMEOUT_NOTE}): {exc}", pytrace=False)


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    try:
        return make_certs(tmp_path_factory.mktemp("tls-certs"))
    except Failure as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def tls_broker(certs):
    tls = TlsListeners(certs.keystore, certs.password, SSL_PORT, SASL_SSL_PORT, truststore=certs.truststore)
    broker = Broker(PORT, SASL_PORT, CONTROLLER_PORT, workdir=_workdir(PORT), tls=tls)
    started = time.monotonic()
    _start(broker)
    # Ready means PLAINTEXT answers; a fresh JVM's first TLS handshakes can take seconds more
    # on a loaded machine, which would show as one timeout of the first sample.
    for bootstrap, props in (
        (broker.ssl_bootstrap, ssl_kafka(certs)),
        (broker.sasl_ssl_bootstrap, scram_kafka(certs, USERS["lagmon"])),
    ):
        wait_for(
            lambda b=bootstrap, p=props: tls_answers(b, p),
            90,
            interval=1,
            what=f"TLS metadata from {bootstrap}",
        )
    print(f"TLS broker ready in {time.monotonic() - started:.1f} s")
    try:
        yield broker
    finally:
        broker.stop()


# ----------------------------------------------------------------------------- helpers


def ssl_kafka(certs: Certs, ca: Path | None = None) -> dict:
    return {"security_protocol": "SSL", "ssl_ca_location": str(ca or certs.ca_pem)}


def scram_kafka(certs: Certs, password: str) -> dict:
    return {
        "security_protocol": "SASL_SSL",
        "ssl_ca_location": str(certs.ca_pem),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "lagmon",
        "sasl_password": password,
    }


def tls_answers(bootstrap: str, kafka: dict) -> bool:
    """One metadata request over the TLS listener with lagmon's settings."""
    from confluent_kafka.admin import AdminClient

    conf = {"bootstrap.servers": bootstrap, "log_level": 0, "logger": quiet_logger()}
    conf.update({k.replace("_", "."): v for k, v in kafka.items()})
    try:
        return bool(AdminClient(conf).list_topics(timeout=10).brokers)
    except Exception:
        return False


def descendants_argv(pid: int) -> list[str]:
    """The command lines of pid and all its descendants (read from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out: list[str] = []
    todo = [pid]
    while todo and len(out) < 100:
        p = todo.pop()
        try:
            out.append(
                (Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")).decode(errors="replace")
            )
        except OSError:
            continue
        todo.extend(children.get(p, []))
    return out


def key_material(certs: Certs) -> list[str]:
    """Lines of the private keys' base64 bodies: none may show up anywhere."""
    lines = []
    for name in ("broker.key", "expired.key", "ca.key"):
        body = [ln for ln in (certs.directory / name).read_text().splitlines() if ln and "-----" not in ln]
        lines += body[1:3]
    return lines


def sampler_error(report: dict | None) -> str | None:
    return (((report or {}).get("monitor") or {}).get("stages") or {}).get("sampler", {}).get("last_error")


class Stages:
    """The real sampler and reporter on one config; their argv is captured while they run."""

    def __init__(self, directory: Path, bootstrap: str, kafka: dict):
        self.directory = directory
        self.config = write_config(directory, bootstrap, kafka={**kafka, "request_timeout_seconds": 5})
        self.sampler = StageProcess("sampler", self.config)
        self.reporter = StageProcess("reporter", self.config)
        self.argv: list[str] = []

    def capture_argv(self) -> None:
        self.argv = descendants_argv(self.sampler.proc.pid) + descendants_argv(self.reporter.proc.pid)

    def report(self) -> dict | None:
        return read_report(self.directory / "lag.json")

    def stop(self) -> tuple[int, int]:
        return self.sampler.stop(), self.reporter.stop()


def assert_no_secret(stages: Stages, secrets: list[str]) -> None:
    texts = {
        "sampler log": stages.sampler.log(),
        "reporter log": stages.reporter.log(),
        "lag.json": (stages.directory / "lag.json").read_text(),
        "argv": "\n".join(stages.argv),
    }
    assert stages.argv, "no argv captured"
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:3]}...) appears in the {where}"


# ----------------------------------------------------------------------------- end to end


@pytest.mark.kafka
@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_tls_end_to_end(tls_broker, certs, tmp_path, protocol):
    """SSL, and SASL_SSL with SCRAM-SHA-512, with hostname verification on: a real group's
    lag reaches lag.json and the sampler reports no error."""
    if protocol == "SSL":
        bootstrap, kafka = tls_broker.ssl_bootstrap, ssl_kafka(certs)
    else:
        bootstrap, kafka = tls_broker.sasl_ssl_bootstrap, scram_kafka(certs, USERS["lagmon"])
    assert "ssl.endpoint.identification.algorithm" not in str(kafka)  # librdkafka's default: https
    topic, group = unique("tls-topic"), unique("tls-group")
    create_topic(tls_broker.bootstrap, topic, partitions=2)
    producer = SteadyProducer(tls_broker.bootstrap, topic, 2, rate=20)
    consumer = LagConsumer(tls_broker.bootstrap, group, topic, delay=3.0)
    producer.start()
    consumer.start()
    stages = Stages(tmp_path, bootstrap, kafka)
    try:
        e = wait_for(
            lambda: (
                (e := entry(stages.report(), group, topic))
                and e["lag_seconds"] >= 2
                and e["partitions_monitored"] == 2
                and e
            ),
            90,
            what=f"{group} with a lag of ~3 s on both partitions in lag.json over {protocol}",
        )
        stages.capture_argv()
        report = stages.report()
    finally:
        codes = stages.stop()
        consumer.stop()
        producer.stop()
    assert codes == (0, 0), stages.sampler.log()[-3000:]
    assert 2 <= e["lag_seconds"] <= 20, e
    assert e["partitions_monitored"] == 2, e
    assert report is not None, "no lag.json"
    assert sampler_error(report) is None, report.get("monitor")
    loud_failures = loud(log_records(stages.sampler.log()), r"\bfail|\berror|\bssl\b|\bcertificate")
    assert loud_failures == [], loud_failures
    assert_no_secret(stages, [USERS["lagmon"], certs.password, *key_material(certs)])


# ----------------------------------------------------------------------------- failures


def _one_clear_line(stages: Stages, bootstrap: str, cause: str, headline: str, secrets: list[str]) -> None:
    """The sampler keeps running and retrying, logs ONE loud line naming the cause, and
    lag.json's monitor shows it; no secret anywhere."""
    try:
        wait_for(lambda: cause in (sampler_error(stages.report()) or ""), 60, what=f"{cause!r} in lag.json")
        stages.capture_argv()
        wait_for(
            lambda: len(re.findall(r"DEBUG \S+ step failed again", stages.sampler.log())) >= 2,
            60,
            what="the sampler retrying twice",
        )
        assert stages.sampler.proc.poll() is None, stages.sampler.log()
        report = stages.report()
    finally:
        codes = stages.stop()
    text = stages.sampler.log()
    assert codes == (0, 0), text[-3000:]
    failures = loud(log_records(text), r"\bauth|\bfail|\berror|\bcertificate|" + re.escape(bootstrap))
    assert len(failures) == 1, "want ONE loud line naming the cause:\n" + "\n".join(failures)
    assert cause in failures[0] and headline in failures[0] and bootstrap in failures[0], failures[0]
    error = sampler_error(report)
    assert error and cause in error and headline in error, report
    assert_no_secret(stages, secrets)


@pytest.mark.kafka
def test_wrong_ca(tls_broker, certs, tmp_path):
    stages = Stages(tmp_path, tls_broker.ssl_bootstrap, ssl_kafka(certs, certs.other_ca_pem))
    _one_clear_line(
        stages,
        tls_broker.ssl_bootstrap,
        "not signed by a CA in ssl.ca.location",
        "TLS handshake failed",
        [certs.password, *key_material(certs)],
    )
    assert "certificate verify failed: self-signed certificate in certificate chain" in stages.sampler.log()


@pytest.mark.kafka
def test_wrong_scram_password(tls_broker, certs, tmp_path):
    password = unique("Wr0ngScram")
    stages = Stages(tmp_path, tls_broker.sasl_ssl_bootstrap, scram_kafka(certs, password))
    _one_clear_line(
        stages,
        tls_broker.sasl_ssl_bootstrap,
        "SASL authentication error: Authentication failed",
        "authentication failed",
        [password, USERS["lagmon"], certs.password, *key_material(certs)],
    )
    assert "SCRAM-SHA-512" in stages.sampler.log()


@pytest.mark.kafka
def test_expired_broker_certificate(tls_broker, certs, tmp_path):
    """A second, short-lived broker serving a certificate that expired in 2020 (signed by the
    right CA, right names)."""
    tls = TlsListeners(certs.expired_keystore, certs.password, ssl_port=EXPIRED_SSL_PORT)
    broker = Broker(EXPIRED_PORT, None, EXPIRED_CONTROLLER_PORT, workdir=_workdir(EXPIRED_PORT), tls=tls)
    _start(broker)
    try:
        stages = Stages(tmp_path, broker.ssl_bootstrap, ssl_kafka(certs))
        _one_clear_line(
            stages,
            broker.ssl_bootstrap,
            "certificate verify failed: certificate has expired",
            "TLS handshake failed",
            [certs.password, *key_material(certs)],
        )
    finally:
        broker.stop()


# ----------------------------------------------------------------------------- the messages alone


def test_sasl_failure_text_names_mechanism_and_user():
    from confluent_kafka import KafkaError

    from lagmon.kafka.errors import auth_failure_text

    err = KafkaError(
        KafkaError._AUTHENTICATION,
        "sasl_ssl://h:1/bootstrap: SASL authentication error: x (after 3ms in state AUTH_REQ)",
    )
    props = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u"}
    text = auth_failure_text(err, bootstrap="h:1", props=props, what="listing topics", timeout=5)
    assert text == (
        "kafka authentication failed at h:1 (security.protocol SASL_SSL, sasl.mechanism SCRAM-SHA-512, "
        "user 'u') while listing topics: sasl_ssl://h:1/bootstrap: SASL authentication error: x"
    )


def test_tls_failure_other_than_verification_makes_no_probe(monkeypatch):
    import socket

    from confluent_kafka import KafkaError

    from lagmon.kafka.errors import auth_failure_text

    def no_connect(*args, **kwargs):
        raise AssertionError("no diagnostic handshake for an error that is no verification failure")

    monkeypatch.setattr(socket, "create_connection", no_connect)
    err = KafkaError(KafkaError._SSL, "ssl://127.0.0.1:9/bootstrap: SSL handshake failed: Disconnected")
    props = {"security.protocol": "SSL"}
    text = auth_failure_text(err, bootstrap="127.0.0.1:9", props=props, what="listing topics", timeout=5)
    assert text == (
        "kafka TLS handshake failed at 127.0.0.1:9 (security.protocol SSL, CA the system CAs) "
        "while listing topics: SSL handshake failed: Disconnected"
    )
