"""lagmon.report: the atomic write of the report file (readers never see a partial file)."""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import sys
import textwrap

import pytest

from lagmon import report
from lagmon.report import (
    ConsumerRow,
    build_report,
    write_atomic,
    write_report,
)

T0 = float(calendar.timegm((2026, 2, 18, 12, 0, 0)))  # 2026-02-18T12:00:00Z


def row(group="g", topic="t", lag=300):
    return ConsumerRow(group, topic, lag, 3, "online", "fine", 8, T0, False)


# ----------------------------------------------------------------- atomic write


def _leftovers(d):
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def test_write_atomic_writes_and_sets_mode(tmp_path):
    p = tmp_path / "out.json"
    write_atomic(str(p), b"{}", mode=0o640)
    assert p.read_bytes() == b"{}"
    assert (os.stat(p).st_mode & 0o777) == 0o640
    write_atomic(str(p), b"[1]")
    assert p.read_bytes() == b"[1]"
    assert (os.stat(p).st_mode & 0o777) == 0o644
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fail_in", ["fsync", "replace", "write"])
def test_write_atomic_cleans_up_on_error(tmp_path, monkeypatch, fail_in):
    p = tmp_path / "out.json"
    p.write_bytes(b'{"old": 1}')

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report.os, fail_in, boom)
    with pytest.raises(OSError):
        write_atomic(str(p), b'{"new": 2}')
    monkeypatch.undo()
    assert p.read_bytes() == b'{"old": 1}'
    assert os.listdir(tmp_path) == ["out.json"]


def test_write_atomic_wrong_data_type_cleans_up(tmp_path):
    with pytest.raises(TypeError):
        write_atomic(str(tmp_path / "x.json"), "not bytes")  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_write_atomic_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(str(tmp_path / "nope" / "x.json"), b"{}")


def test_write_report_serialization_failure_leaves_old_file(tmp_path):
    p = tmp_path / "lag.json"
    write_report(str(p), build_report([row()], generated_at=T0))
    before = p.read_bytes()
    with pytest.raises(TypeError):
        write_report(str(p), {"bad": object()})
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["lag.json"]
    assert json.loads(before)["consumers"][0]["lag_seconds"] == 300


READER = textwrap.dedent(
    """
    import json, os, sys, time
    path, done = sys.argv[1], sys.argv[2]
    reads = bad = empty = 0
    sizes = set()
    print("ready", flush=True)
    deadline = time.monotonic() + 2.0
    while reads < 20000 and time.monotonic() < deadline and not os.path.exists(done):
        with open(path, "rb") as f:
            data = f.read()
        reads += 1
        if not data:
            empty += 1
            continue
        try:
            doc = json.loads(data)
            sizes.add(len(doc["consumers"]))
        except Exception:
            bad += 1
    print(json.dumps({"reads": reads, "bad": bad, "empty": empty, "distinct": len(sizes)}), flush=True)
    """
)


def test_concurrent_reader_never_sees_partial_file(tmp_path):
    p = tmp_path / "lag.json"
    done = tmp_path / "done"
    write_report(str(p), build_report([], generated_at=T0))
    proc = subprocess.Popen(
        [sys.executable, "-c", READER, str(p), str(done)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        for i in range(500):
            rows = [row(f"g{j}", "t", j * 61) for j in range(i % 40)]
            write_report(str(p), build_report(rows, generated_at=T0 + i))
        done.touch()
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = json.loads(out)
    assert result["reads"] > 0
    assert result["distinct"] > 1, "reader never overlapped the writer"
    assert result["bad"] == 0 and result["empty"] == 0, result
    assert _leftovers(tmp_path) == []
