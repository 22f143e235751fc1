"""A real node_exporter and a real Prometheus on loopback, for tests: processes this
module starts and stops by pid, each with its own temporary directory.

    with NodeExporter(textfile_dir) as exporter, Prometheus([exporter.target]) as prom:
        prom.wait_for("lagmon_report_consumers")
        prom.query('lagmon_consumer_lag_seconds{group_id="g"}')

Binaries are Debian's ``prometheus`` (prometheus, promtool) and
``prometheus-node-exporter`` packages; ``ensure_installed()`` installs them with
apt-get when one is missing (root only; otherwise it raises with the command to
run).  The packages' own services are not used: if installing started one, it
is stopped again by its pid file.  Ports are free loopback ports picked at start
(never the default 9090/9100).  Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-node-exporter": "prometheus-node-exporter",
}
# services the Debian packages may start on install (init script name -> its pid file)
SERVICES = {
    "prometheus": "/run/prometheus/prometheus.pid",
    "prometheus-node-exporter": "/run/prometheus/prometheus-node-exporter.pid",
}
INSTALL_TIMEOUT = 900.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class PrometheusToolError(RuntimeError):
    """A binary is missing and cannot be installed, or a process did not come up in time."""


def _missing() -> list[str]:
    return [name for name in PACKAGES if shutil.which(name) is None]


def ensure_installed() -> dict[str, str]:
    """{binary: path} for promtool, prometheus and prometheus-node-exporter, installing
    the Debian packages first when one is missing."""
    missing = _missing()
    if missing:
        packages = sorted({PACKAGES[name] for name in missing})
        command = "apt-get update -qq && apt-get install -y -qq " + " ".join(packages)
        if os.geteuid() != 0:
            raise PrometheusToolError(f"missing {', '.join(missing)}; install them as root: `{command}`")
        running_before = {name for name, pidfile in SERVICES.items() if _pid_from(pidfile) is not None}
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            out = subprocess.run(
                ["sh", "-c", command],
                check=False,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                env=env,
            )
        except subprocess.TimeoutExpired as exc:
            raise PrometheusToolError(f"`{command}` did not finish within {INSTALL_TIMEOUT:.0f} s") from exc
        if out.returncode != 0:
            raise PrometheusToolError(f"`{command}` failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
        stop_package_services(keep=running_before)
        still = _missing()
        if still:
            raise PrometheusToolError(f"still missing after `{command}`: {', '.join(still)}")
    return {name: str(shutil.which(name)) for name in PACKAGES}


def _pid_from(pidfile: str) -> int | None:
    try:
        pid = int(Path(pidfile).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def stop_package_services(keep: Iterable[str] = ()) -> None:
    """Stop a service the packages started on install (found by its pid file), except those in keep."""
    for name, pidfile in SERVICES.items():
        if name in keep or _pid_from(pidfile) is None:
            continue
        if shutil.which("service"):
            subprocess.run(
                ["service", name, "stop"], check=False, capture_output=True, timeout=STOP_TIMEOUT * 3
            )
        pid = _pid_from(pidfile)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)


def promtool(*args: str, stdin: bytes | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run promtool (installing it if needed); returns the completed process (output as bytes)."""
    binary = ensure_installed()["promtool"]
    return subprocess.run(
        [binary, *args], input=stdin, capture_output=True, timeout=120, cwd=cwd, check=False
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class _Process:
    """One child process owned by pid, started in its own session, logging to a file."""

    name = "process"

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"lagmon-{self.name}-"))
        self.process: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.target}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready_path(self) -> str:
        raise NotImplementedError

    def log(self) -> str:
        try:
            return (self.workdir / "output.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def start(self, timeout: float = START_TIMEOUT) -> None:
        with open(self.workdir / "output.log", "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusToolError(
                    f"{self.name} exited with {self.process.returncode} at start; output:\n{self.log()}"
                )
            try:
                status, _ = http_get(self.base_url + self.ready_path(), timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise PrometheusToolError(
            f"{self.name} not ready on {self.target} within {timeout:.0f} s:\n{self.log()}"
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NodeExporter(_Process):
    """node_exporter with only the textfile collector, reading ``textfile_dir``."""

    name = "node-exporter"

    def __init__(self, textfile_dir: str | os.PathLike) -> None:
        self.textfile_dir = str(textfile_dir)
        super().__init__()

    def command(self) -> list[str]:
        return [
            ensure_installed()["prometheus-node-exporter"],
            f"--web.listen-address={self.target}",
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={self.textfile_dir}",
        ]

    def ready_path(self) -> str:
        return "/metrics"

    def metrics(self) -> str:
        return http_get(self.base_url + "/metrics")[1].decode("utf-8", "replace")


class Prometheus(_Process):
    """Prometheus scraping ``targets`` every second (job "node"), with its own data directory;
    ``rule_files`` are loaded and evaluated every second."""

    name = "prometheus"

    def __init__(self, targets: Sequence[str], rule_files: Sequence[str | os.PathLike] = ()) -> None:
        self.targets = list(targets)
        self.rule_files = [str(Path(path).resolve()) for path in rule_files]
        super().__init__()

    def command(self) -> list[str]:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": self.rule_files,
            "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": self.targets}]}],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        return [
            ensure_installed()["prometheus"],
            f"--config.file={path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.target}",
            "--storage.tsdb.retention.time=1h",
        ]

    def ready_path(self) -> str:
        return "/-/ready"

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/<path>; the decoded JSON (status "success" or "error")."""
        url = f"{self.base_url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        return json.loads(http_get(url, timeout=10.0)[1])

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns a non-empty result; that result (bounded by timeout)."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = self.query(expr)
            if last.get("status") == "success" and last["data"]["result"]:
                return last["data"]["result"]
            time.sleep(0.2)
        raise PrometheusToolError(f"{expr!r} still empty after {timeout:.0f} s (last answer {last})")
