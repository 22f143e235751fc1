"""The Kafka broker jars (fetched once with Maven into a cache) and the Java that runs them.

The jars come from Maven Central through scripts/kafka-pom.xml and are cached in
${LAGMON_KAFKA_CACHE:-~/.cache/lagmon/kafka}/<version>/lib. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

FETCH_TIMEOUT = 900.0  # seconds for one Maven run
POM = Path(__file__).resolve().parent.parent / "scripts" / "kafka-pom.xml"
COMPLETE_MARKER = ".complete"


class Failure(Exception):
    """A clear, user-facing error: message and exit code (1 failure, 2 prerequisite or usage)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def log(message: str) -> None:
    print(f"kafka_broker: {message}", file=sys.stderr, flush=True)


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
        out = subprocess.run([java, "-version"], check=False, capture_output=True, text=True, timeout=60)
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
            out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=FETCH_TIMEOUT)
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
