"""Paths that supervisord would misread: spaces, `%`, quotes, non-ASCII (issue 11, item 6).

supervisord expands `%(name)s` in every value and splits `command=` with shlex. An unescaped
`%s` in a path made it expand its whole dictionary, the environment included, into each
stage's argv and logs, leaking a SASL password read through `${VAR}`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml

from lagmon import supervisor
from testing.stages import write_config
from testing.traffic import read_report, wait_for
from tests.test_supervisord import STAGES, cmdlines, deploy, wait_running  # noqa: F401 (fixture)

HOSTILE = "a b%s %(ENV_HOME)s 'q\" ü"
SECRET = "pw-0f3c9a-never-shown"


def argv(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return [a.decode() for a in fh.read().split(b"\0") if a]


@pytest.mark.parametrize(
    "name",
    ["plain", "with space", "pct%s", "pct%(ENV_HOME)s", 'q\'uote "x"', "ü ñ"],
)
def test_rendered_command_splits_back_to_the_literal_path(name, tmp_path):
    from supervisor.options import ServerOptions
    from supervisor.process import Subprocess

    value = str(tmp_path / name)
    os.mkdir(value)

    layout = supervisor.Layout(
        python="/usr/bin/python3", directory=value, config=value + "/c.yaml", log_dir=value,
        run_dir=value, nodaemon=True,
    )  # fmt: skip
    text = supervisor.render(layout)
    with tempfile.NamedTemporaryFile("w", suffix=".conf", encoding="utf-8", delete=False) as fh:
        fh.write(text)
    try:
        opts = ServerOptions()
        opts.configfile = fh.name
        opts.process_config(do_usage=False)
        for group in opts.process_group_configs:
            for proc in group.process_configs:
                assert proc.directory == value
                assert proc.stdout_logfile == f"{value}/{proc.name}.log"
                _, args = Subprocess(proc).get_execv_args()
                assert args == [
                    "/usr/bin/python3",
                    "-m",
                    f"processes.{proc.name}",
                    "--config",
                    value + "/c.yaml",
                ]
    finally:
        os.unlink(fh.name)


def test_a_newline_in_a_path_is_refused():
    layout = supervisor.Layout(
        python="/usr/bin/python3", directory="/x", config="/x/a\nb", log_dir="/x", run_dir="/x", nodaemon=True
    )
    with pytest.raises(ValueError, match="newline"):
        supervisor.render(layout)


@pytest.mark.supervisord
def test_lagmon_run_with_hostile_paths_keeps_argv_exact_and_secrets_out(deploy, monkeypatch):  # noqa: F811
    base = Path(tempfile.mkdtemp(prefix="lm", dir="/tmp")) / HOSTILE
    config = write_config(
        base,
        "127.0.0.1:9",
        kafka={
            "request_timeout_seconds": 1,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "lagmon",
            "sasl_password": "${LAGMON_TEST_PASSWORD}",
        },
    )
    assert yaml.safe_load(config.read_text())["database"]["path"].startswith(str(base))
    monkeypatch.setenv("LAGMON_TEST_PASSWORD", SECRET)
    d = deploy(config, base / "run")
    pids = wait_running(d.conf)
    for stage in STAGES:
        assert argv(pids[stage])[1:] == ["-m", f"processes.{stage}", "--config", str(config)]
    report = wait_for(lambda: read_report(base / "lag.json"), 30, what="lag.json in the hostile directory")
    assert "monitor" in report
    leaked = {pid: cmd for pid, cmd in cmdlines().items() if SECRET in cmd}
    assert not leaked, leaked
    for log in (base / "run" / "logs").glob("*.log"):
        assert SECRET not in log.read_text(errors="replace"), log.name
