"""Helpers shared by the tests: one of each (config files, raw SQLite reads, a fake clock,
report entries, lag inputs built from a history).

The config writer and the report lookup are testing.stages.write_config and
testing.traffic.entry (the benchmarks use them too); they are re-exported here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import yaml

from lagmon import config
from testing.stages import config_dict, write_config
from testing.traffic import entry
from tests.histories import lag, lag_input

__all__ = ["Clock", "entry", "lag", "lag_input", "make_config", "raw", "write_config"]

T0 = 1_700_000_000.0  # the time of a history's last row when it has none


def make_config(directory: Path | str, bootstrap: str = "127.0.0.1:9", **options) -> config.Config:
    """The validated Config of write_config(directory, bootstrap, fast=False, **options), without
    writing a file: only the given keys are set, the rest are lagmon's defaults."""
    options.setdefault("fast", False)
    return config.parse(yaml.safe_dump(config_dict(directory, bootstrap, **options)))


def raw(path: Path | str, sql: str, params=(), *, readonly: bool = True) -> list[tuple]:
    """Rows of one SQL statement on the SQLite file at path, on a connection of its own
    (read-only unless readonly=False), closed afterwards."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    else:
        conn = sqlite3.connect(path, timeout=5)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


class Clock:
    """A fake clock: calling it returns t, which the test moves."""

    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t
