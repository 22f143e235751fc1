"""The whole deployment's memory, and the time to the first useful report, on the
sampler-cost cluster (2,000 partitions, 1,000 groups of 2 topics x 10 partitions).

    .venv/bin/python -m bench.footprint --bootstrap 127.0.0.1:29092 [--prefix lagfoot]

Builds the cluster with bench.sampler_cost's Cluster (topics and groups named --prefix;
on the benchmark's own broker unless --bootstrap): every partition gets a few messages and
every group commits one message below the head on every partition, so every group-partition
lags and, on a fresh database, every lagging partition's commit sits below the head history:
its lag is known only once the message timestamp at the commit (an anchor) has been read.

Then it runs the real deployment, `python -m lagmon run --config CFG` (real supervisord and
the three stages) on a fresh database with lagmon's default intervals (or --sample-interval /
--report-interval), and measures:

  time to first useful report: from the start of `lagmon run` until lag.json lists every
    group/topic of the cluster with its lag (lag_seconds > 0, not a lower bound) and the
    database holds an anchor for every lagging partition's commit;
  footprint: VmRSS (from /proc/PID/status) of EVERY descendant of the `lagmon run` process
    (`lagmon run` itself, which execs into supervisord (lagmon.runner), every stage, the
    sampler's Kafka worker, anything else), each printed, and their sum, sampled
    every 0.5 s for --watch seconds after the first useful report; the sum's maximum is the
    figure judged against the goal (< 100 MB). PSS (smaps_rollup, shared pages divided among
    the processes sharing them) is printed beside it: a plain RSS sum counts the shared
    interpreter pages once per process.

At the end `lagmon run` is sent SIGTERM (supervisord stops the stages), any descendant still
alive after 30 s is killed by pid, and the topics and groups this run created are deleted
(--keep-cluster keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from bench.common import fmt, table, verdict
from bench.sampler_cost import Cluster
from testing.stages import write_config

GOAL_MB = 100.0
GOAL_FIRST_REPORT = 30.0
FIRST_REPORT_TIMEOUT = 600.0
STOP_TIMEOUT = 30.0
MESSAGES = 3  # per partition before the groups commit head - 1


def children_map() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(entry))
    return out


def descendants(root: int) -> list[int]:
    """root and every process below it."""
    kids = children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def proc_info(pid: int) -> dict | None:
    try:
        status = open(f"/proc/{pid}/status").read()
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    fields = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    pss = None
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    if "VmRSS" not in fields:  # a zombie
        return None
    return {
        "pid": pid,
        "name": describe(cmd),
        "rss": int(fields["VmRSS"].split()[0]) * 1024,
        "hwm": int(fields.get("VmHWM", "0 kB").split()[0]) * 1024,
        "pss": pss,
    }


def describe(cmd: str) -> str:
    if "supervisord" in cmd:
        return "supervisord (lagmon run)"
    for stage in ("sampler", "reporter", "housekeeper"):
        if f"lagmon-{stage}" in cmd or f"stages.{stage}" in cmd or f"processes.{stage}" in cmd:
            return stage
    if "lagmon.kafka.worker" in cmd:
        return "sampler's Kafka worker"
    if "resource_tracker" in cmd:
        return "multiprocessing resource tracker"
    if "multiprocessing" in cmd or "spawn_main" in cmd:
        return "multiprocessing child"
    return cmd[:60]


def only_prefix(prefix: str) -> list[str]:
    """Exclude patterns that leave only the names starting with prefix (the broker may be shared:
    other people's topics and groups are not part of this cluster)."""
    if not prefix.isalnum():
        raise SystemExit(f"bench.footprint: --prefix must be letters and digits (got {prefix!r})")
    return [prefix[:i] + "[!" + prefix[i] + "]*" for i in range(len(prefix))] + [
        prefix[:i] for i in range(1, len(prefix))
    ]


def report_ready(json_path: Path, expected: set[tuple[str, str]]) -> tuple[bool, str]:
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return False, "no lag.json yet"
    got = {(c["group_id"], c["topic"]): c for c in data.get("consumers", [])}
    missing = expected - got.keys()
    if missing:
        return False, f"{len(missing)} of {len(expected)} group/topics missing"
    unknown = [k for k in expected if got[k]["lag_seconds"] <= 0 or got[k]["lag_lower_bound"]]
    if unknown:
        return False, f"{len(unknown)} group/topics without a lag yet"
    return True, "every group/topic with its lag"


def anchors_complete(db: Path, lagging: set[tuple[str, int, int]]) -> bool:
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            have = set(conn.execute("SELECT topic, partition, offset FROM partition_anchors").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return lagging <= have


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.broker_args(parser)
    parser.add_argument("--prefix", default="lagfoot", help="topic and group name prefix")
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=20)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--sample-interval", type=float, default=None, help="default: lagmon's (60 s)")
    parser.add_argument("--report-interval", type=float, default=None, help="default: lagmon's (60 s)")
    parser.add_argument(
        "--watch", type=float, default=150.0, help="seconds of RSS sampling after the first report"
    )
    parser.add_argument("--keep-cluster", action="store_true", help="do not delete the topics and groups")
    args = parser.parse_args()
    common.header("bench/footprint.py")
    only_prefix(args.prefix)
    monitoring = {}
    if args.sample_interval:
        monitoring["sample_interval_seconds"] = args.sample_interval
    if args.report_interval:
        monitoring["report_interval_seconds"] = args.report_interval

    with common.kafka(args) as bootstrap:
        cluster = Cluster(bootstrap, args.prefix, args.topics, args.partitions, args.groups)
        listed = {g.group_id for g in cluster.admin.list_consumer_groups(request_timeout=30).result(60).valid}
        existing_topics = set(cluster.admin.list_topics(timeout=30).topics)
        ours_topics = [t for t in cluster.topics if t not in existing_topics]
        ours_groups = [g for g in cluster.groups if g not in listed]
        try:
            t0 = time.monotonic()
            created = cluster.ensure_topics()
            cluster.fill_to(MESSAGES)
            heads = cluster.heads()
            cluster.commit_all(heads, minus=1)
            lagging = set()
            expected = set()
            for i, g in enumerate(cluster.groups):
                for t, p in cluster.assignment(i):
                    lagging.add((t, p, heads[(t, p)] - 1))
                    expected.add((g, t))
            print(
                f"# cluster: {len(cluster.topics)} topics x {args.partitions} partitions, {len(cluster.groups)} "
                f"groups x 20 partitions, every group-partition one message behind ({len(lagging)} lagging "
                f"partition commits to anchor); topics created {created}; setup {time.monotonic() - t0:.1f} s",
                flush=True,
            )
            return run_deployment(args, bootstrap, monitoring, expected, lagging)
        finally:
            if not args.keep_cluster:
                cleanup(cluster, ours_topics, ours_groups)


def run_deployment(args, bootstrap: str, monitoring: dict, expected: set, lagging: set) -> int:
    common.BENCH_TMP.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fp-", dir=common.BENCH_TMP) as tmp:
        work = Path(tmp)
        exclude = only_prefix(args.prefix)
        cfg = write_config(
            work,
            bootstrap,
            fast=False,
            monitoring=monitoring or None,
            exclude={"topics": exclude, "groups": exclude},
        )
        log = open(work / "lagmon-run.log", "ab")
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "lagmon", "run", "--config", str(cfg), "--run-dir", str(work / "run")],
            cwd=common.REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        seen: dict[int, dict] = {}
        totals: list[tuple[int, int]] = []
        first_report = None
        why = ""
        try:
            deadline = started + FIRST_REPORT_TIMEOUT
            while first_report is None and time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"lagmon run exited {proc.returncode}; see {work / 'lagmon-run.log'}")
                sample_rss(proc.pid, seen, totals)
                ok, why = report_ready(work / "lag.json", expected)
                if ok and anchors_complete(work / "state.db", lagging):
                    first_report = time.monotonic() - started
                    break
                time.sleep(0.2)
            if first_report is None:
                print(f"no useful report within {FIRST_REPORT_TIMEOUT:.0f} s: {why}")
            print(
                f"# time to first useful report: {fmt(first_report, 1)} s; watching RSS for {args.watch:.0f} s",
                flush=True,
            )
            end = time.monotonic() + args.watch
            while time.monotonic() < end and proc.poll() is None:
                sample_rss(proc.pid, seen, totals)
                time.sleep(0.5)
            final = [i for i in (proc_info(p) for p in descendants(proc.pid)) if i is not None]
        finally:
            stop(proc)
            log.close()
        print_results(args, first_report, seen, totals, final, work)
    return 0


def sample_rss(root: int, seen: dict[int, dict], totals: list[tuple[int, int]]) -> None:
    infos = [i for i in (proc_info(p) for p in descendants(root)) if i is not None]
    for i in infos:
        prev = seen.get(i["pid"])
        i["peak_rss"] = max(i["rss"], prev["peak_rss"] if prev else 0)
        seen[i["pid"]] = i
    totals.append((sum(i["rss"] for i in infos), sum(i["pss"] or 0 for i in infos)))


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to `lagmon run` (supervisord stops the stages); then SIGKILL, by pid, whatever of
    its descendants is left."""
    pids = descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if proc.poll() is None:
        proc.wait(10)


def cleanup(cluster: Cluster, topics: list[str], groups: list[str]) -> None:
    """Delete the topics and groups this run created (never the ones it found)."""
    errors = []
    if groups:
        for i in range(0, len(groups), 200):
            futures = cluster.admin.delete_consumer_groups(groups[i : i + 200], request_timeout=60)
            for g, f in futures.items():
                try:
                    f.result(120)
                except Exception as exc:
                    errors.append(f"group {g}: {exc}")
    if topics:
        futures = cluster.admin.delete_topics(topics, operation_timeout=60, request_timeout=60)
        for t, f in futures.items():
            try:
                f.result(120)
            except Exception as exc:
                errors.append(f"topic {t}: {exc}")
    print(
        f"# cleanup: deleted {len(groups)} groups and {len(topics)} topics"
        + (f"; {len(errors)} failed, first: {errors[0]}" if errors else "")
    )


def print_results(args, first_report, seen, totals, final, work: Path) -> None:
    rows = []
    for i in sorted(final, key=lambda x: x["pid"]):
        peak = seen.get(i["pid"], i).get("peak_rss", i["rss"])
        rows.append(
            (
                i["name"],
                i["pid"],
                common.mb(i["rss"]),
                common.mb(peak),
                common.mb(i["hwm"]),
                common.mb(i["pss"] or 0),
            )
        )
    now_rss = sum(i["rss"] for i in final)
    now_pss = sum(i["pss"] or 0 for i in final)
    max_rss = max((t[0] for t in totals), default=0)
    max_pss = max((t[1] for t in totals), default=0)
    rows.append(("TOTAL (sum)", len(final), common.mb(now_rss), common.mb(max_rss), "-", common.mb(now_pss)))
    print(
        table(
            ["process", "pid", "VmRSS MB at end", "max VmRSS MB seen", "VmHWM MB", "PSS MB at end"],
            rows,
            title=f"Every process under `lagmon run` after {args.watch:.0f} s of running (fresh database)",
        )
    )
    gone = [i for pid, i in seen.items() if pid not in {f["pid"] for f in final}]
    if gone:
        print(
            "\nprocesses seen earlier but gone at the end: "
            + ", ".join(f"{i['name']} pid {i['pid']} (max {common.mb(i['peak_rss'])} MB)" for i in gone)
        )
    print(
        f"\nfootprint: the sum of every lagmon process's VmRSS, max over the run {common.mb(max_rss)} MB "
        f"(PSS {common.mb(max_pss)} MB) against the goal < {GOAL_MB:.0f} MB: {verdict(max_rss / 1e6 < GOAL_MB)}"
    )
    print(
        f"time to first useful report (every group/topic with its lag, every lagging partition anchored): "
        f"{fmt(first_report, 1)} s against the goal < {GOAL_FIRST_REPORT:.0f} s: "
        f"{verdict(first_report is not None and first_report < GOAL_FIRST_REPORT)}"
    )
    mon = " and ".join(
        f"{k} {v:g} s"
        for k, v in (("sample interval", args.sample_interval), ("report interval", args.report_interval))
        if v
    )
    print(f"intervals: {mon or 'lagmon defaults (sample 60 s, report 60 s)'}; logs were in {work}")


if __name__ == "__main__":
    sys.exit(main())
