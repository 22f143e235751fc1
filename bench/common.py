"""Shared helpers for lagmon's benchmarks: a private Kafka broker, statistics, tables.

The benchmarks start their own single-node broker (testing.broker.Broker) on ports
39092 (PLAINTEXT), 39093 (SASL) and 39094 (controller), with their own work directory, so
they never touch a broker somebody else (the test suite) runs. `--bootstrap HOST:PORT`
uses an existing broker instead and leaves it alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from testing.broker import Broker
from testing.fetch import Failure

REPO = Path(__file__).resolve().parent.parent
PORT, SASL_PORT, CONTROLLER_PORT = 39092, 39093, 39094
BENCH_TMP = Path(os.environ.get("TMPDIR") or "/tmp") / "lagmon-bench"
BROKER_WORKDIR = BENCH_TMP / f"kafka-{PORT}"


def header(name: str) -> None:
    """One line saying what was measured: the lagmon commit (and uncommitted files), the machine."""

    def git(*a):
        try:
            return subprocess.run(
                ["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [line[3:] for line in git("status", "--porcelain", "--", "lagmon", "processes").splitlines()]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {name}: lagmon {git('rev-parse', '--short', 'HEAD') or '?'}"
        f"{' + uncommitted ' + ', '.join(dirty) if dirty else ''}; {os.cpu_count()} CPUs, "
        f"load average {load:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        flush=True,
    )


def broker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap", default=None, help="use this running broker instead of starting one on port 39092"
    )
    parser.add_argument(
        "--keep-broker",
        action="store_true",
        help="leave the broker this benchmark started running (reuse it with --bootstrap)",
    )


def broker() -> Broker:
    """The benchmarks' private broker (its work directory is created)."""
    return Broker(PORT, SASL_PORT, CONTROLLER_PORT, BROKER_WORKDIR)


@contextlib.contextmanager
def kafka(args: argparse.Namespace) -> Iterator[str]:
    """Bootstrap servers: --bootstrap as given, else a broker of our own (stopped afterwards
    unless --keep-broker, or unless it was already running from our work directory)."""
    if args.bootstrap:
        yield args.bootstrap
        return
    own = broker()
    running = own.status() != "stopped"
    if not running:
        started = time.monotonic()
        try:
            own.start()
        except Failure as exc:
            sys.exit(f"bench: could not start Kafka on port {PORT} (exit {exc.code}):\n{exc}")
        print(
            f"# started Kafka on {own.bootstrap} in {time.monotonic() - started:.1f} s "
            f"(workdir {BROKER_WORKDIR})",
            flush=True,
        )
    try:
        yield own.bootstrap
    finally:
        if not running and not args.keep_broker:
            own.stop()


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else math.nan


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None) -> str:
    """A GitHub-markdown table (readable in a terminal too)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [
        max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)
    ]
    lines = []
    if title:
        lines.append(f"\n{title}\n")
    lines.append("| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=False)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        lines.append(
            "| "
            + " | ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths, strict=False))
            + " |"
        )
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    try:
        float(text.rstrip("x%").replace(",", ""))
        return True
    except ValueError:
        return text in ("-", "inf")


def mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.1f}"


def peak_rss(command: list[str], *, log: Path | None = None, timeout: float = 300.0) -> dict:
    """Run command through bench.peak_rss: {"exit", "wall", "cpu", "rss_mb"} of that child alone."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.peak_rss",
            "--log",
            str(log or os.devnull),
            "--timeout",
            str(timeout),
            "--cwd",
            str(REPO),
            "--",
            *command,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
    )
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"bench.peak_rss failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def written_bytes() -> int:
    """Bytes this process has passed to write() (from /proc/self/io wchar)."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _cli() -> int:
    """`python -m bench.common start|stop|status`: the benchmarks' private broker (for run_all.sh)."""
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command not in ("start", "stop", "status"):
        print("usage: python -m bench.common start|stop|status", file=sys.stderr)
        return 2
    try:
        own = broker()
        if command == "start":
            print(own.start())
        elif command == "stop":
            own.stop()
        else:
            state = own.status()
            print(f"{state} ({own.bootstrap}, {own.workdir})", file=sys.stderr)
            return 0 if state != "stopped" else 1
    except Failure as exc:
        print(f"kafka_broker: error: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
