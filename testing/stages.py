"""lagmon's stages as real OS processes, and the config file they read.

write_config() is the one writer of a test or benchmark lagmon config: by default (fast=True)
with short intervals so a stage acts within seconds; fast=False writes only what is given.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
FAST_MONITORING = {
    "sample_interval_seconds": 1,
    "offline_sample_interval_seconds": 2,
    "report_interval_seconds": 1,
    "housekeeping_interval_seconds": 5,
    "offline_detection_consecutive_samples": 3,
    "recovering_minimum_duration_seconds": 2,
    "online_lag_threshold_seconds": 5,
}


def config_dict(
    directory: Path | str,
    bootstrap: str = "127.0.0.1:9",
    *,
    monitoring: dict | None = None,
    exclude: dict | None = None,
    kafka: dict | None = None,
    database: dict | None = None,
    fast: bool = True,
) -> dict:
    """A lagmon config (as a dict) keeping its database and report in `directory`.

    fast: kafka.request_timeout_seconds 5, the FAST_MONITORING intervals and an empty exclude
    section under what is given; without it only the given keys are set."""
    directory = Path(directory)
    cfg: dict = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            **({"request_timeout_seconds": 5} if fast else {}),
            **(kafka or {}),
        }
    }
    mon = {**(FAST_MONITORING if fast else {}), **(monitoring or {})}
    if mon:
        cfg["monitoring"] = mon
    cfg["database"] = {"path": str(directory / "state.db"), **(database or {})}
    cfg["output"] = {"json_path": str(directory / "lag.json")}
    if fast or exclude is not None:
        cfg["exclude"] = exclude or {"topics": [], "groups": []}
    return cfg


def write_config(directory: Path | str, bootstrap: str = "127.0.0.1:9", **options) -> Path:
    """config_dict(directory, bootstrap, **options) written to directory/config.yaml; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config_dict(directory, bootstrap, **options)))
    return path


class StageProcess:
    """One lagmon stage as a real OS process (`python -m processes.<stage>`)."""

    def __init__(self, stage: str, config: Path, *, extra=(), env=None):
        self.stage = stage
        self.log_path = config.parent / f"{stage}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"processes.{stage}", "--config", str(config), "--debug", *extra],
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def stop(self, timeout: float = 40.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
