"""A real single-node Apache Kafka broker (KRaft) for lagmon's tests, benchmarks and trials.

    broker = Broker(port=19092, sasl_port=19093, controller_port=19094)
    broker.start()            # fetches the jars once, formats a fresh data directory, waits
    broker.bootstrap          # "127.0.0.1:19092" (PLAINTEXT)
    broker.sasl_bootstrap     # "127.0.0.1:19093" (SASL_PLAINTEXT, mechanism PLAIN)
    broker.stop()

Listeners (all on 127.0.0.1): PLAINTEXT on `port`; SASL_PLAINTEXT on `sasl_port` with users
admin/admin-secret and lagmon/lagmon-secret; CONTROLLER on `controller_port`.
Optional TLS listeners (testing.tls makes the certificates), given a `tls=TlsListeners(...)`:
SSL on its `ssl_port` and SASL_SSL (mechanism SCRAM-SHA-512) on its `sasl_ssl_port`, both
serving the PKCS12 `keystore`; the SCRAM users (`scram_users`, default the USERS above) are
written into the metadata log when the storage is formatted (`StorageTool format
--add-scram`, Kafka 3.5+), so they exist from the broker's first answer.
    broker.ssl_bootstrap / broker.sasl_ssl_bootstrap    # "127.0.0.1:<port>"
Data, log and pid files live in `workdir` (default ${TMPDIR:-/tmp}/lagmon-kafka-<port>).
`stop()` deletes the data directory and `start()` formats a fresh one, unless keep_data=True:
then stop leaves it and start reuses an already formatted one (same cluster id, topics and
committed offsets), so a broker can be restarted in place.
Errors are raised as testing.fetch.Failure (message and exit code). scripts/kafka_broker.py is
the command-line front.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from testing.fetch import Failure, check_java, fetch, log, major
from testing.probe import HOST, WARM_TIMEOUT, metadata_ok, port_open, warm_group_coordinator

DEFAULT_VERSION = "4.4.0"
USERS = {"admin": "admin-secret", "lagmon": "lagmon-secret"}
READY_TIMEOUT = 90.0  # seconds from launching java until the broker answers
STOP_TIMEOUT = 30.0  # seconds between SIGTERM and SIGKILL
FORMAT_TIMEOUT = 120.0  # seconds for kafka.tools.StorageTool format
HEAP_MB = 512  # the broker's maximum heap; a cluster of many thousand partitions needs more
OFFSETS_PARTITIONS = 4  # __consumer_offsets partitions: few, so the coordinator loads fast


@dataclass(frozen=True)
class TlsListeners:
    """The optional TLS listeners of a Broker (None: that listener is not opened)."""

    keystore: Path | str  # PKCS12 with the broker's key and certificate chain
    password: str  # the keystore's (and truststore's) password
    ssl_port: int | None = None
    sasl_ssl_port: int | None = None  # SASL_SSL with SCRAM-SHA-512
    truststore: Path | str | None = None  # PKCS12; only needed to verify client certificates
    scram_users: dict[str, str] = field(default_factory=lambda: dict(USERS))

    def ports(self) -> list[int]:
        return [p for p in (self.ssl_port, self.sasl_ssl_port) if p is not None]


def default_version() -> str:
    """$LAGMON_KAFKA_VERSION, else DEFAULT_VERSION."""
    return os.environ.get("LAGMON_KAFKA_VERSION") or DEFAULT_VERSION


def default_workdir(port: int) -> Path:
    return Path(os.environ.get("TMPDIR") or "/tmp") / f"lagmon-kafka-{port}"


class Broker:
    """One broker: its version, ports and work directory (created here)."""

    def __init__(
        self,
        port: int = 19092,
        sasl_port: int | None = 19093,  # None: no SASL_PLAINTEXT listener
        controller_port: int = 19094,
        workdir: Path | str | None = None,
        version: str | None = None,
        tls: TlsListeners | None = None,
        heap_mb: int = HEAP_MB,
    ):
        self.port, self.sasl_port, self.controller_port = port, sasl_port, controller_port
        if not 128 <= heap_mb <= 16384:
            raise Failure(f"heap of {heap_mb} MB: must be 128 to 16384 MB", 2)
        self.heap_mb = heap_mb
        self.tls = tls
        self.version = version or default_version()
        major(self.version)  # a bad version fails here, before anything is touched
        self.workdir = Path(workdir or default_workdir(port)).expanduser().resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"{HOST}:{self.sasl_port}"

    @property
    def ssl_bootstrap(self) -> str:
        if self.tls is None or self.tls.ssl_port is None:
            raise Failure("this broker has no SSL listener (no tls= with an ssl_port)")
        return f"{HOST}:{self.tls.ssl_port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        if self.tls is None or self.tls.sasl_ssl_port is None:
            raise Failure("this broker has no SASL_SSL listener (no tls= with a sasl_ssl_port)")
        return f"{HOST}:{self.tls.sasl_ssl_port}"

    @property
    def pid(self) -> int | None:
        """The pid of the broker started from this workdir, if it is alive."""
        pid = read_pid(self.workdir)
        return pid if our_broker(pid, self.workdir) else None

    def fetch(self) -> Path:
        """The broker jars in the cache (fetched with Maven once); returns their directory."""
        return fetch(self.version)

    def status(self) -> str:
        """ "running" (ours, answering), "other" (a broker not started from workdir answers on
        the port) or "stopped"."""
        if self.pid and answering(self.port, self.workdir):
            return "running"
        if port_open(self.port) and metadata_ok(self.bootstrap):
            return "other"
        return "stopped"

    def warm_group_coordinator(self, timeout: float = WARM_TIMEOUT) -> bool | None:
        return warm_group_coordinator(self.bootstrap, timeout)

    def start(self, keep_data: bool = False) -> str:
        """Start the broker (or find it already running from workdir); returns the bootstrap."""
        workdir, port = self.workdir, self.port
        pid = read_pid(workdir)
        if our_broker(pid, workdir):
            assert pid is not None
            if wait_ready(pid, port, workdir, READY_TIMEOUT):
                log(f"already running (pid {pid}, {workdir})")
                return self.bootstrap
            raise Failure(
                f"broker pid {pid} is running but does not answer on {self.bootstrap}; "
                f"run `stop` first. Log tail:\n{log_tail(workdir)}"
            )
        ports = (port, self.sasl_port, self.controller_port, *(self.tls.ports() if self.tls else []))
        for p in [p for p in ports if p is not None]:
            if port_open(p, timeout=0.5):
                raise Failure(f"port {HOST}:{p} is already in use by a process not started from {workdir}")

        java = check_java(self.version)
        lib = self.fetch()
        data = workdir / "data"
        reuse = keep_data and (data / "meta.properties").is_file()
        if not reuse:
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir(parents=True)
        props = workdir / "server.properties"
        text = server_properties(workdir, port, self.sasl_port or 0, self.controller_port)
        if self.sasl_port is None:
            text = without_sasl_plaintext(text)
        if self.tls is not None:
            text = tls_properties(text, self.tls)
        props.write_text(text)
        props.chmod(0o600)  # it may hold the keystore password
        jvm = [
            java,
            f"-Xmx{self.heap_mb}m",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={workdir / 'logs'}",
            self._log_option(),
            "-cp",
            f"{lib}/*",
        ]

        started = time.monotonic()
        if reuse:
            log(f"reusing the formatted data directory {data}")
        else:
            self._format(jvm, props)
        with open(workdir / "broker.log", "wb") as logfile:
            proc = subprocess.Popen(
                jvm + ["kafka.Kafka", str(props)],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                cwd=str(workdir),
                start_new_session=True,
            )
        self._proc = proc  # held, so no stray Popen is collected while the broker runs
        (workdir / "broker.pid").write_text(f"{proc.pid}\n")
        if not wait_ready(proc.pid, port, workdir, READY_TIMEOUT, proc):
            code = proc.poll()
            state = (
                f"exited with {code}" if code is not None else f"did not answer within {READY_TIMEOUT:.0f} s"
            )
            stop_pid(proc.pid, workdir)
            raise Failure(
                f"Kafka {self.version} broker {state}; log {workdir / 'broker.log'}:\n{log_tail(workdir)}"
            )
        warm = self.warm_group_coordinator()
        if warm is None:
            log(
                "confluent_kafka is not importable here: the group coordinator was not warmed up, so a "
                "first committed-offsets request may still meet NOT_COORDINATOR (run with the venv python)"
            )
        elif warm is False:
            stop_pid(proc.pid, workdir)
            raise Failure(
                f"Kafka {self.version} answers but its group coordinator did not load within "
                f"{WARM_TIMEOUT:.0f} s; log {workdir / 'broker.log'}:\n{log_tail(workdir)}"
            )
        log(
            f"Kafka {self.version} ready in {time.monotonic() - started:.1f} s "
            f"(pid {proc.pid}, workdir {workdir}; SASL_PLAINTEXT/PLAIN on {self.sasl_bootstrap})"
        )
        return self.bootstrap

    def stop(self, keep_data: bool = False) -> bool:
        """Stop the broker started from workdir; True if one was running. Deletes the data
        directory unless keep_data."""
        pid = self.pid
        if pid:
            stop_pid(pid, self.workdir)
            log(f"stopped broker pid {pid}")
        else:
            log(f"no broker running from {self.workdir}")
        (self.workdir / "broker.pid").unlink(missing_ok=True)
        if not keep_data:
            shutil.rmtree(self.workdir / "data", ignore_errors=True)
        self._proc = None
        return pid is not None

    def _log_option(self) -> str:
        if major(self.version) >= 4:
            logcfg = self.workdir / "log4j2.properties"
            logcfg.write_text(LOG4J2)
            return f"-Dlog4j2.configurationFile={logcfg}"
        logcfg = self.workdir / "log4j.properties"
        logcfg.write_text(LOG4J1)
        return f"-Dlog4j.configuration=file:{logcfg}"

    def _format(self, jvm: list[str], props: Path) -> None:
        fmt = jvm + ["kafka.tools.StorageTool", "format", "-t", random_cluster_id(), "-c", str(props)]
        if self.tls is not None and self.tls.sasl_ssl_port is not None:
            if major(self.version) == 3 and int(self.version.split(".")[1]) < 5:
                raise Failure(f"SCRAM users at format time need Kafka 3.5+ (this is {self.version})", 2)
            for user, password in self.tls.scram_users.items():
                fmt += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        try:
            out = subprocess.run(fmt, check=False, capture_output=True, text=True, timeout=FORMAT_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise Failure(f"formatting the storage did not finish within {FORMAT_TIMEOUT:.0f} s") from exc
        if out.returncode != 0:
            raise Failure(
                f"formatting the storage failed (exit {out.returncode}):\n"
                + "\n".join((out.stdout + out.stderr).strip().splitlines()[-20:])
            )


# ---------------------------------------------------------------- configuration files


def server_properties(workdir: Path, port: int, sasl_port: int, controller_port: int) -> str:
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="admin" password="admin-secret" '
        + " ".join(f'user_{u}="{p}"' for u, p in USERS.items())
        + ";"
    )
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # A static quorum works the same for 3.9 and 4.x and needs no --standalone at format.
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": (
            f"PLAINTEXT://{HOST}:{port},SASL_PLAINTEXT://{HOST}:{sasl_port},"
            f"CONTROLLER://{HOST}:{controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port},SASL_PLAINTEXT://{HOST}:{sasl_port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
        "log.dirs": str(workdir / "data"),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": str(OFFSETS_PARTITIONS),
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Tests create their topics explicitly; nothing should appear by accident.
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        "log.segment.bytes": str(1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def without_sasl_plaintext(text: str) -> str:
    """server_properties' text without its SASL_PLAINTEXT listener."""
    props = dict(line.split("=", 1) for line in text.splitlines() if line)
    for key in ("listeners", "advertised.listeners", "listener.security.protocol.map"):
        props[key] = ",".join(e for e in props[key].split(",") if not e.startswith("SASL_PLAINTEXT"))
    for key in [k for k in props if k.startswith("listener.name.sasl_plaintext.") or k.startswith("sasl.")]:
        del props[key]
    return "".join(f"{k}={v}\n" for k, v in props.items())


def tls_properties(text: str, tls: TlsListeners) -> str:
    """server_properties' text with the SSL and SASL_SSL listeners of `tls` added."""
    props = dict(line.split("=", 1) for line in text.splitlines() if line)
    names = [("SSL", tls.ssl_port), ("SASL_SSL", tls.sasl_ssl_port)]
    extra = [f"{name}://{HOST}:{p}" for name, p in names if p is not None]
    props["listeners"] += "".join(f",{e}" for e in extra)
    props["advertised.listeners"] += "".join(f",{e}" for e in extra)
    props["listener.security.protocol.map"] += "".join(f",{n}:{n}" for n, p in names if p is not None)
    props["ssl.keystore.type"] = "PKCS12"
    props["ssl.keystore.location"] = str(Path(tls.keystore).resolve())
    props["ssl.keystore.password"] = tls.password
    props["ssl.key.password"] = tls.password
    if tls.truststore is not None:
        props["ssl.truststore.type"] = "PKCS12"
        props["ssl.truststore.location"] = str(Path(tls.truststore).resolve())
        props["ssl.truststore.password"] = tls.password
    props["ssl.client.auth"] = "none"
    if tls.sasl_ssl_port is not None:
        props["sasl.enabled.mechanisms"] = "PLAIN,SCRAM-SHA-512"
        props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] = "SCRAM-SHA-512"
        props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        )
    return "".join(f"{k}={v}\n" for k, v in props.items())


LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
"""

LOG4J1 = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


def random_cluster_id() -> str:
    """Same shape as Kafka's Uuid.randomUuid().toString(): 22 url-safe base64 chars."""
    for _ in range(100):
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text
    raise Failure("could not generate a cluster id")


# ---------------------------------------------------------------- process handling


def read_pid(workdir: Path) -> int | None:
    try:
        return int((workdir / "broker.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def our_broker(pid: int | None, workdir: Path) -> bool:
    """True if pid is alive and is the kafka.Kafka process started from this workdir."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in cmdline]
    return "kafka.Kafka" in args and str(workdir / "server.properties") in args


def answering(port: int, workdir: Path) -> bool:
    if not port_open(port):
        return False
    ok = metadata_ok(f"{HOST}:{port}")
    if ok is None:  # no confluent_kafka: trust the broker's own "started" line
        return _log_says_started(workdir)
    return ok


def _log_says_started(workdir: Path) -> bool:
    try:
        text = (workdir / "broker.log").read_text(errors="replace")
    except OSError:
        return False
    return "Kafka Server started" in text


def log_tail(workdir: Path, lines: int = 30) -> str:
    try:
        text = (workdir / "broker.log").read_text(errors="replace")
    except OSError:
        return "(no broker.log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(pid: int, port: int, workdir: Path, timeout: float, proc=None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if proc is None and not our_broker(pid, workdir):
            return False
        if answering(port, workdir):
            return True
        time.sleep(0.25)
    return False


def stop_pid(pid: int, workdir: Path) -> None:
    if our_broker(pid, workdir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.1)
        if alive(pid):
            log(f"broker pid {pid} ignored SIGTERM for {STOP_TIMEOUT:.0f} s; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and alive(pid):
                time.sleep(0.1)


def alive(pid: int) -> bool:
    """Alive and not a zombie (reaps our own child if it is one)."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
