#!/usr/bin/env python3
"""Fetch, start, stop and check a real single-node Apache Kafka broker (KRaft).

For lagmon's tests and for trying lagmon by hand. Standard library only.

    python scripts/kafka_broker.py fetch  [--version V]
    python scripts/kafka_broker.py start  [--version V] [--port 19092] [--sasl-port 19093]
                                          [--controller-port 19094] [--workdir DIR]
    python scripts/kafka_broker.py stop   [--port 19092] [--workdir DIR] [--keep-data]
    python scripts/kafka_broker.py status [--port 19092] [--workdir DIR]

The broker jars come from Maven Central through scripts/kafka-pom.xml and are cached in
${LAGMON_KAFKA_CACHE:-~/.cache/lagmon/kafka}/<version>/lib. The default version is
DEFAULT_VERSION; LAGMON_KAFKA_VERSION overrides it, --version overrides both.

Listeners (all on 127.0.0.1):
    PLAINTEXT       --port             (default 19092)
    SASL_PLAINTEXT  --sasl-port        (default 19093), mechanism PLAIN,
                    users admin/admin-secret and lagmon/lagmon-secret
    CONTROLLER      --controller-port  (default 19094)

`stop` deletes the data directory and `start` formats a fresh one, unless --keep-data is given:
`stop --keep-data` leaves it, and `start --keep-data` reuses an already formatted one (same
cluster id, topics and committed offsets), so a broker can be restarted in place.

Exit codes: 0 ok; 1 failure (broker did not start, not running for `status`);
2 a prerequisite is missing (java, mvn) or bad usage.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

DEFAULT_VERSION = "4.4.0"
HOST = "127.0.0.1"
USERS = {"admin": "admin-secret", "lagmon": "lagmon-secret"}
READY_TIMEOUT = 90.0  # seconds from launching java until the broker answers
STOP_TIMEOUT = 30.0  # seconds between SIGTERM and SIGKILL
FETCH_TIMEOUT = 900.0  # seconds for one Maven run
FORMAT_TIMEOUT = 120.0  # seconds for kafka.tools.StorageTool format
HEAP = "-Xmx512m"
OFFSETS_PARTITIONS = 4  # __consumer_offsets partitions: few, so the coordinator loads fast
WARM_TIMEOUT = 60.0  # seconds for the group coordinator to load after the broker answers

POM = Path(__file__).resolve().with_name("kafka-pom.xml")
COMPLETE_MARKER = ".complete"


class Failure(Exception):
    """A clear, user-facing error: message and exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def log(message: str) -> None:
    print(f"kafka_broker: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- paths and prerequisites


def cache_root() -> Path:
    return Path(os.environ.get("LAGMON_KAFKA_CACHE") or "~/.cache/lagmon/kafka").expanduser()


def lib_dir(version: str) -> Path:
    return cache_root() / version / "lib"


def major(version: str) -> int:
    match = re.match(r"(\d+)\.", version)
    if not match:
        raise Failure(f"invalid Kafka version {version!r} (expected like 4.4.0 or 3.9.1)", 2)
    return int(match.group(1))


def java_command() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise Failure(
            "prerequisite missing: java (a Java 17+ runtime) is not on PATH and JAVA_HOME "
            "is not set; install one, e.g. `apt-get install openjdk-17-jre-headless`",
            2,
        )
    return found


def java_major(java: str) -> int:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Failure(f"prerequisite broken: `{java} -version` failed: {exc}", 2) from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise Failure(f"prerequisite broken: cannot read the version from `{java} -version`", 2)
    first = int(match.group(1))
    return int(match.group(2) or 0) if first == 1 else first


def check_java(version: str) -> str:
    java = java_command()
    need = 17 if major(version) >= 4 else 11
    have = java_major(java)
    if have < need:
        raise Failure(
            f"prerequisite missing: Kafka {version} needs Java {need}+, {java} is Java {have}; "
            "set JAVA_HOME to a newer JDK",
            2,
        )
    return java


# ---------------------------------------------------------------- fetch


def fetched(version: str) -> bool:
    lib = lib_dir(version)
    return (lib / COMPLETE_MARKER).is_file() and any(lib.glob("kafka_2.13-*.jar"))


def fetch(version: str) -> Path:
    """Resolve the broker jars into the cache (once). Returns the lib directory."""
    lib = lib_dir(version)
    if fetched(version):
        return lib
    mvn = shutil.which("mvn")
    if not mvn:
        raise Failure(
            "prerequisite missing: mvn (Apache Maven 3.6+) is not on PATH; it fetches the "
            "Kafka jars from Maven Central; install it, e.g. `apt-get install maven`",
            2,
        )
    lib.parent.mkdir(parents=True, exist_ok=True)
    with _locked(lib.parent / ".fetch.lock"):
        if fetched(version):  # another process fetched it while we waited
            return lib
        shutil.rmtree(lib, ignore_errors=True)
        profile = "kafka4" if major(version) >= 4 else "kafka3"
        cmd = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={lib}",
            f"-Dkafka.version={version}",
            "-P",
            profile,
        ]
        log(f"fetching Kafka {version} jars with Maven into {lib}")
        started = time.monotonic()
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=FETCH_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise Failure(
                f"Maven did not finish fetching Kafka {version} within {FETCH_TIMEOUT:.0f} s"
            ) from exc
        if out.returncode != 0 or not any(lib.glob("kafka_2.13-*.jar")):
            shutil.rmtree(lib.parent, ignore_errors=True)
            raise Failure(
                f"Maven could not fetch org.apache.kafka:kafka_2.13:{version} "
                f"(exit {out.returncode}); command: {' '.join(cmd)}\n"
                f"{_maven_errors(out.stdout + out.stderr)}"
            )
        (lib / COMPLETE_MARKER).write_text(version + "\n")
        jars = list(lib.glob("*.jar"))
        size = sum(p.stat().st_size for p in jars) / 1e6
        log(f"fetched {len(jars)} jars ({size:.0f} MB) in {time.monotonic() - started:.1f} s")
    return lib


def _maven_errors(output: str) -> str:
    """The informative [ERROR] lines of Maven's output (not its boilerplate)."""
    boiler = (
        "re-run maven",
        "for more information",
        "[help",
        "to see the full stack",
        "after correcting",
        "-> [help",
    )
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in output.splitlines()]
    errors = [
        line
        for line in lines
        if line.startswith("[ERROR]") and line[7:].strip() and not line[7:].strip().lower().startswith(boiler)
    ]
    return "\n".join(errors[:5] or lines[-10:])


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl

    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def port_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def metadata_ok(bootstrap: str, timeout: float = 5.0) -> bool | None:
    """A real Metadata request via confluent_kafka; None when it is not importable."""
    try:
        from confluent_kafka.admin import AdminClient  # type: ignore
    except ImportError:
        return None
    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "log_level": 0,
            "logger": _quiet_logger(),
            "socket.connection.setup.timeout.ms": 3000,
        }
    )
    try:
        md = admin.list_topics(timeout=timeout)
        return bool(md.brokers)
    except Exception:
        return False


def _quiet_logger():
    import logging

    logger = logging.getLogger("kafka_broker.probe")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


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


def java_string_hash(text: str) -> int:
    """Java's String.hashCode() (UTF-16 code units), as a signed 32-bit int."""
    h = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def coordinator_partition(group: str, partitions: int) -> int:
    """Which __consumer_offsets partition holds `group` (Kafka: Utils.abs(hashCode) % n)."""
    h = java_string_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def warm_group_coordinator(bootstrap: str, timeout: float = WARM_TIMEOUT) -> bool | None:
    """Wait until every __consumer_offsets partition has a loaded group coordinator.

    librdkafka 2.16's AdminClient crashes the whole process (SIGSEGV, librdkafka issue
    #5040) when an OffsetFetch answer says NOT_COORDINATOR, which a fresh broker does
    while __consumer_offsets is created and loaded. DescribeGroups handles that error, so
    describe one group per coordinator partition until all answer. None when
    confluent_kafka is not importable; False on timeout.
    """
    try:
        from confluent_kafka import KafkaException  # type: ignore
        from confluent_kafka.admin import AdminClient  # type: ignore
    except ImportError:
        return None
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _quiet_logger(), "log_level": 0})
    names = ["lagmon-warmup-0"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ok = True
        for future in admin.describe_consumer_groups(names, request_timeout=5).values():
            try:
                future.result(timeout=10)
            except Exception:
                ok = False
        try:
            md = admin.list_topics(timeout=5).topics.get("__consumer_offsets")
        except KafkaException:
            md = None
        if md is not None and md.error is None and md.partitions:
            count = len(md.partitions)
            wanted: dict[int, str] = {}
            for i in range(100 * count):
                name = f"lagmon-warmup-{i}"
                wanted.setdefault(coordinator_partition(name, count), name)
                if len(wanted) == count:
                    break
            if ok and set(names) == set(wanted.values()):
                return True
            names = sorted(wanted.values())
        time.sleep(0.2)
    return False


def log_tail(workdir: Path, lines: int = 30) -> str:
    try:
        text = (workdir / "broker.log").read_text(errors="replace")
    except OSError:
        return "(no broker.log)"
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------- commands


def cmd_fetch(args) -> int:
    started = time.monotonic()
    lib = fetch(args.version)
    print(f"Kafka {args.version}: {lib} ({time.monotonic() - started:.1f} s)")
    return 0


def cmd_start(args) -> int:
    workdir, port = args.workdir, args.port
    bootstrap = f"{HOST}:{port}"
    pid = read_pid(workdir)
    if our_broker(pid, workdir):
        if wait_ready(pid, port, workdir, READY_TIMEOUT):
            log(f"already running (pid {pid}, {workdir})")
            print(bootstrap)
            return 0
        raise Failure(
            f"broker pid {pid} is running but does not answer on {bootstrap}; "
            f"run `stop` first. Log tail:\n{log_tail(workdir)}"
        )
    for p in (port, args.sasl_port, args.controller_port):
        if port_open(p, timeout=0.5):
            raise Failure(f"port {HOST}:{p} is already in use by a process not started from {workdir}")

    java = check_java(args.version)
    lib = fetch(args.version)
    classpath = f"{lib}/*"

    data = workdir / "data"
    reuse = args.keep_data and (data / "meta.properties").is_file()
    if not reuse:
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
    props = workdir / "server.properties"
    props.write_text(server_properties(workdir, port, args.sasl_port, args.controller_port))
    if major(args.version) >= 4:
        logcfg = workdir / "log4j2.properties"
        logcfg.write_text(LOG4J2)
        log_opt = f"-Dlog4j2.configurationFile={logcfg}"
    else:
        logcfg = workdir / "log4j.properties"
        logcfg.write_text(LOG4J1)
        log_opt = f"-Dlog4j.configuration=file:{logcfg}"
    jvm = [
        java,
        HEAP,
        "-Xms128m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={workdir / 'logs'}",
        log_opt,
        "-cp",
        classpath,
    ]

    started = time.monotonic()
    if reuse:
        log(f"reusing the formatted data directory {data}")
    else:
        fmt = jvm + ["kafka.tools.StorageTool", "format", "-t", random_cluster_id(), "-c", str(props)]
        try:
            out = subprocess.run(fmt, capture_output=True, text=True, timeout=FORMAT_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise Failure(f"formatting the storage did not finish within {FORMAT_TIMEOUT:.0f} s") from exc
        if out.returncode != 0:
            raise Failure(
                f"formatting the storage failed (exit {out.returncode}):\n"
                + "\n".join((out.stdout + out.stderr).strip().splitlines()[-20:])
            )

    with open(workdir / "broker.log", "wb") as logfile:
        proc = subprocess.Popen(
            jvm + ["kafka.Kafka", str(props)],
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            cwd=str(workdir),
            start_new_session=True,
        )
    (workdir / "broker.pid").write_text(f"{proc.pid}\n")
    if not wait_ready(proc.pid, port, workdir, READY_TIMEOUT, proc):
        code = proc.poll()
        state = f"exited with {code}" if code is not None else f"did not answer within {READY_TIMEOUT:.0f} s"
        stop_pid(proc.pid, workdir)
        raise Failure(
            f"Kafka {args.version} broker {state}; log {workdir / 'broker.log'}:\n{log_tail(workdir)}"
        )
    warm = warm_group_coordinator(bootstrap)
    if warm is None:
        log(
            "confluent_kafka is not importable here: the group coordinator was not warmed up, so a "
            "first committed-offsets request may still meet NOT_COORDINATOR (run with the venv python)"
        )
    elif warm is False:
        stop_pid(proc.pid, workdir)
        raise Failure(
            f"Kafka {args.version} answers but its group coordinator did not load within "
            f"{WARM_TIMEOUT:.0f} s; log {workdir / 'broker.log'}:\n{log_tail(workdir)}"
        )
    log(
        f"Kafka {args.version} ready in {time.monotonic() - started:.1f} s "
        f"(pid {proc.pid}, workdir {workdir}; SASL_PLAINTEXT/PLAIN on {HOST}:{args.sasl_port})"
    )
    print(bootstrap)
    return 0


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
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            log(f"broker pid {pid} ignored SIGTERM for {STOP_TIMEOUT:.0f} s; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Alive and not a zombie (reaps our own child if it is one)."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def cmd_stop(args) -> int:
    workdir = args.workdir
    pid = read_pid(workdir)
    if our_broker(pid, workdir):
        stop_pid(pid, workdir)
        log(f"stopped broker pid {pid}")
    else:
        log(f"no broker running from {workdir}")
    (workdir / "broker.pid").unlink(missing_ok=True)
    if not args.keep_data:
        shutil.rmtree(workdir / "data", ignore_errors=True)
    return 0


def cmd_status(args) -> int:
    workdir = args.workdir
    pid = read_pid(workdir)
    if our_broker(pid, workdir) and answering(args.port, workdir):
        print(f"running pid {pid} {HOST}:{args.port}")
        return 0
    if port_open(args.port):
        ok = metadata_ok(f"{HOST}:{args.port}")
        if ok:
            print(f"a broker not started from {workdir} answers on {HOST}:{args.port}")
            return 0
    print(f"not running ({HOST}:{args.port}, {workdir})")
    return 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["fetch", "start", "stop", "status"])
    parser.add_argument(
        "--version",
        default=os.environ.get("LAGMON_KAFKA_VERSION") or DEFAULT_VERSION,
        help=f"Kafka version (default $LAGMON_KAFKA_VERSION or {DEFAULT_VERSION})",
    )
    parser.add_argument("--port", type=int, default=19092, help="PLAINTEXT port")
    parser.add_argument("--sasl-port", type=int, default=19093, help="SASL_PLAINTEXT (PLAIN) port")
    parser.add_argument("--controller-port", type=int, default=19094, help="KRaft controller port")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="data, log and pid files (default ${TMPDIR:-/tmp}/lagmon-kafka-<port>)",
    )
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="stop: keep the data directory; start: reuse it if already formatted",
    )
    args = parser.parse_args(argv)
    if args.workdir is None:
        args.workdir = Path(os.environ.get("TMPDIR") or "/tmp") / f"lagmon-kafka-{args.port}"
    args.workdir = args.workdir.expanduser().resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    major(args.version)
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        return {"fetch": cmd_fetch, "start": cmd_start, "stop": cmd_stop, "status": cmd_status}[args.command](
            args
        )
    except Failure as exc:
        log(f"error: {exc}")
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
