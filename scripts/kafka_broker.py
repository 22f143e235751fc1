#!/usr/bin/env python3
"""Fetch, start, stop and check a real single-node Apache Kafka broker (KRaft).

For lagmon's tests and for trying lagmon by hand. Standard library only. The command-line
front of testing.broker.Broker (run it from anywhere; it finds the repo it lives in).

    python scripts/kafka_broker.py fetch  [--version V]
    python scripts/kafka_broker.py start  [--version V] [--port 19092] [--sasl-port 19093]
                                          [--controller-port 19094] [--workdir DIR]
    python scripts/kafka_broker.py stop   [--port 19092] [--workdir DIR] [--keep-data]
    python scripts/kafka_broker.py status [--port 19092] [--workdir DIR]

The broker jars come from Maven Central through scripts/kafka-pom.xml and are cached in
${LAGMON_KAFKA_CACHE:-~/.cache/lagmon/kafka}/<version>/lib. The default version is
testing.broker.DEFAULT_VERSION; LAGMON_KAFKA_VERSION overrides it, --version overrides both.

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
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: its own directory is on sys.path, not the repo
    sys.path.insert(0, str(REPO))

from testing.broker import DEFAULT_VERSION, HEAP_MB, HOST, Broker, default_version  # noqa: E402
from testing.fetch import Failure, log  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("command", choices=["fetch", "start", "stop", "status"])
    parser.add_argument(
        "--version",
        default=default_version(),
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
        "--heap-mb", type=int, default=HEAP_MB, help=f"the broker's maximum heap (default {HEAP_MB})"
    )
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="stop: keep the data directory; start: reuse it if already formatted",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    broker = Broker(
        args.port, args.sasl_port, args.controller_port, args.workdir, args.version, heap_mb=args.heap_mb
    )
    if args.command == "fetch":
        started = time.monotonic()
        lib = broker.fetch()
        print(f"Kafka {broker.version}: {lib} ({time.monotonic() - started:.1f} s)")
    elif args.command == "start":
        print(broker.start(keep_data=args.keep_data))
    elif args.command == "stop":
        broker.stop(keep_data=args.keep_data)
    else:
        state = broker.status()
        if state == "running":
            print(f"running pid {broker.pid} {broker.bootstrap}")
        elif state == "other":
            print(f"a broker not started from {broker.workdir} answers on {broker.bootstrap}")
        else:
            print(f"not running ({HOST}:{args.port}, {broker.workdir})")
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_args(sys.argv[1:] if argv is None else argv))
    except Failure as exc:
        log(f"error: {exc}")
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
