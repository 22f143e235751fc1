"""Run a command and print its peak RSS and CPU time as one JSON line on stdout.

    python -m bench.peak_rss -- python -m processes.reporter --config CFG --once

Why a launcher: a child's ru_maxrss (from wait4 or RUSAGE_CHILDREN) starts at the RSS its
parent had when it forked, because Linux carries the pre-exec memory's high-water mark
over exec. Measured from a big benchmark process, every stage would look as big as the
benchmark. This launcher is small, so the child's figure is the child's own (and includes
any of its children it waited for, e.g. the sampler's Kafka worker).
The command's own output goes to --log (default: discarded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", default=os.devnull)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--cwd", default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with open(args.log, "ab") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=args.cwd)
        deadline = time.monotonic() + args.timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
    print(
        json.dumps(
            {
                "exit": os.waitstatus_to_exitcode(status),
                "wall": time.perf_counter() - started,
                "cpu": usage.ru_utime + usage.ru_stime,
                "rss_mb": usage.ru_maxrss * 1024 / 1e6,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
