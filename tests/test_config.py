"""lagmon.config and `lagmon check-config`: a table of bad configurations, then the good cases."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from lagmon import cli, config
from lagmon.config import MASK, ConfigError

PASSWORD = "pa55-W0rd-never-shown"
DELETE = object()
EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"


def base_config() -> dict:
    """A minimal valid configuration; "{tmp}" in a string is replaced by the test's tmp dir."""
    return {
        "kafka": {"bootstrap_servers": "broker1:9092,broker2:9092"},
        "monitoring": {"sample_interval_seconds": 60, "offline_sample_interval_seconds": 1800},
        "database": {"path": "{tmp}/state.db"},
        "output": {"json_path": "{tmp}/lag.json"},
        "exclude": {"topics": ["__consumer_offsets"], "groups": []},
    }


def _fill(value, tmp: Path):
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp))
    if isinstance(value, list):
        return [_fill(item, tmp) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, tmp) for key, item in value.items()}
    return value


def build(changes: dict, tmp: Path) -> dict:
    """base_config() with {"section.key": value} (or {"section": value}) applied; DELETE removes."""
    data = copy.deepcopy(base_config())
    for dotted, value in changes.items():
        section, _, key = dotted.partition(".")
        target, name = (data.setdefault(section, {}), key) if key else (data, section)
        if value is DELETE:
            target.pop(name, None)
        else:
            target[name] = value
    return _fill(data, tmp)


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("LAGMON_TEST_PASSWORD", PASSWORD)
    monkeypatch.delenv("LAGMON_TEST_UNSET", raising=False)
    return tmp_path


def write(tmp: Path, data) -> str:
    path = tmp / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


SASL = {
    "kafka.security_protocol": "SASL_PLAINTEXT",
    "kafka.sasl_mechanism": "PLAIN",
    "kafka.sasl_username": "lagmon",
    "kafka.sasl_password": "${LAGMON_TEST_PASSWORD}",
}


def sasl(**changes) -> dict:
    return {**SASL, **{f"kafka.{key}": value for key, value in changes.items()}}


# (id, changes to base_config() -- or raw YAML text, or None for "no file" --, expected text in stderr)
BAD = [
    (
        "unknown-key-suggestion",
        {"kafka.bootstrap_server": "x:1"},
        ["kafka.bootstrap_server", "did you mean 'bootstrap_servers'?"],
    ),
    ("unknown-key-no-suggestion", {"monitoring.colour": "blue"}, ["monitoring.colour", "unknown key"]),
    (
        "unknown-key-other-section",
        {"kafka.json_path": "/x"},
        ["kafka.json_path", "belongs in section 'output'"],
    ),
    ("unknown-section", {"monitorng": {}}, ["monitorng", "did you mean 'monitoring'?"]),
    ("section-not-mapping", {"monitoring": [1, 2]}, ["monitoring", "must be a mapping"]),
    (
        "sample-interval-zero",
        {"monitoring.sample_interval_seconds": 0},
        ["monitoring.sample_interval_seconds", "must be > 0 (got 0)"],
    ),
    (
        "sample-interval-negative",
        {"monitoring.sample_interval_seconds": -1},
        ["monitoring.sample_interval_seconds"],
    ),
    (
        "offline-below-sample",
        {"monitoring.sample_interval_seconds": 120, "monitoring.offline_sample_interval_seconds": 60},
        ["monitoring.offline_sample_interval_seconds", "must be >= monitoring.sample_interval_seconds (120)"],
    ),
    (
        "offline-zero",
        {"monitoring.offline_sample_interval_seconds": 0},
        ["monitoring.offline_sample_interval_seconds"],
    ),
    (
        "report-interval-zero",
        {"monitoring.report_interval_seconds": 0},
        ["monitoring.report_interval_seconds"],
    ),
    (
        "housekeeping-negative",
        {"monitoring.housekeeping_interval_seconds": -5},
        ["monitoring.housekeeping_interval_seconds"],
    ),
    (
        "max-entries-one",
        {"monitoring.max_entries_per_partition": 1},
        ["monitoring.max_entries_per_partition", "must be >= 2 (got 1)"],
    ),
    (
        "max-commit-entries-one",
        {"monitoring.max_commit_entries_per_partition": 1},
        ["monitoring.max_commit_entries_per_partition", "must be >= 2"],
    ),
    (
        "consecutive-zero",
        {"monitoring.offline_detection_consecutive_samples": 0},
        ["monitoring.offline_detection_consecutive_samples", "must be >= 1"],
    ),
    (
        "recovering-negative",
        {"monitoring.recovering_minimum_duration_seconds": -1},
        ["monitoring.recovering_minimum_duration_seconds", "must be >= 0"],
    ),
    (
        "threshold-negative",
        {"monitoring.online_lag_threshold_seconds": -0.5},
        ["monitoring.online_lag_threshold_seconds", "must be >= 0 (got -0.5)"],
    ),
    (
        "retention-zero",
        {"monitoring.absent_group_retention_seconds": 0},
        ["monitoring.absent_group_retention_seconds"],
    ),
    ("request-timeout-zero", {"kafka.request_timeout_seconds": 0}, ["kafka.request_timeout_seconds"]),
    (
        "seconds-infinite",
        "monitoring: {report_interval_seconds: .inf}",
        ["monitoring.report_interval_seconds", "finite"],
    ),
    (
        "bool-for-count",
        {"monitoring.max_entries_per_partition": True},
        ["monitoring.max_entries_per_partition", "not a boolean (got True)"],
    ),
    (
        "bool-for-seconds",
        {"monitoring.sample_interval_seconds": True},
        ["monitoring.sample_interval_seconds", "boolean"],
    ),
    (
        "string-for-count",
        {"monitoring.max_entries_per_partition": "300"},
        ["monitoring.max_entries_per_partition", "not a string (got '300')"],
    ),
    (
        "string-for-seconds",
        {"monitoring.report_interval_seconds": "60"},
        ["monitoring.report_interval_seconds"],
    ),
    (
        "float-for-count",
        {"monitoring.offline_detection_consecutive_samples": 5.0},
        ["monitoring.offline_detection_consecutive_samples", "not a float (got 5.0)"],
    ),
    (
        "missing-bootstrap",
        {"kafka.bootstrap_servers": DELETE},
        ["kafka.bootstrap_servers", "required key is missing"],
    ),
    ("missing-kafka-section", {"kafka": DELETE}, ["kafka.bootstrap_servers"]),
    ("null-bootstrap", {"kafka.bootstrap_servers": None}, ["kafka.bootstrap_servers", "is required"]),
    ("missing-database-path", {"database": DELETE}, ["database.path"]),
    ("missing-json-path", {"output.json_path": DELETE}, ["output.json_path"]),
    ("json-dir-missing", {"output.json_path": "{tmp}/nope/lag.json"}, ["output.json_path", "does not exist"]),
    ("database-dir-missing", {"database.path": "{tmp}/nope/state.db"}, ["database.path", "does not exist"]),
    ("json-path-is-directory", {"output.json_path": "{tmp}"}, ["output.json_path", "not a directory"]),
    ("bootstrap-empty", {"kafka.bootstrap_servers": " "}, ["kafka.bootstrap_servers", "non-empty"]),
    (
        "bootstrap-port-too-big",
        {"kafka.bootstrap_servers": "b1:9092,b2:99999"},
        ["kafka.bootstrap_servers", "entry 'b2:99999' has an invalid port"],
    ),
    ("bootstrap-port-zero", {"kafka.bootstrap_servers": "b1:0"}, ["kafka.bootstrap_servers", "1..65535"]),
    (
        "bootstrap-port-not-number",
        {"kafka.bootstrap_servers": "b1:http"},
        ["kafka.bootstrap_servers", "invalid port"],
    ),
    ("bootstrap-no-port", {"kafka.bootstrap_servers": "broker1"}, ["kafka.bootstrap_servers", "host:port"]),
    (
        "bootstrap-trailing-comma",
        {"kafka.bootstrap_servers": "b1:9092,"},
        ["kafka.bootstrap_servers", "entry ''"],
    ),
    (
        "bootstrap-list",
        {"kafka.bootstrap_servers": ["b1:9092"]},
        ["kafka.bootstrap_servers", "must be a string"],
    ),
    (
        "bad-protocol",
        {"kafka.security_protocol": "TLS"},
        ["kafka.security_protocol", "must be one of PLAINTEXT"],
    ),
    ("bad-mechanism", sasl(sasl_mechanism="MD5"), ["kafka.sasl_mechanism", "SCRAM-SHA-512"]),
    ("sasl-missing-mechanism", sasl(sasl_mechanism=DELETE), ["kafka.sasl_mechanism", "is required when"]),
    (
        "sasl-missing-username",
        sasl(sasl_username=DELETE),
        ["kafka.sasl_username", "is required when sasl_mechanism is PLAIN"],
    ),
    (
        "scram-missing-password",
        sasl(sasl_mechanism="SCRAM-SHA-256", sasl_password=DELETE),
        ["kafka.sasl_password", "SCRAM-SHA-256"],
    ),
    ("sasl-empty-password", sasl(sasl_password=""), ["kafka.sasl_password", "is required"]),
    ("username-not-string", sasl(sasl_username=1234), ["kafka.sasl_username", "quote it"]),
    (
        "ssl-missing-ca",
        {"kafka.security_protocol": "SSL"},
        ["kafka.ssl_ca_location", "is required when security_protocol is SSL"],
    ),
    (
        "ssl-ca-not-found",
        {"kafka.security_protocol": "ssl", "kafka.ssl_ca_location": "{tmp}/missing.pem"},
        ["kafka.ssl_ca_location", "file does not exist"],
    ),
    ("sasl-ssl-missing-ca", sasl(security_protocol="SASL_SSL"), ["kafka.ssl_ca_location", "SASL_SSL"]),
    (
        "unset-variable",
        {"database.path": "${LAGMON_TEST_UNSET}/state.db"},
        ["database.path", "environment variable 'LAGMON_TEST_UNSET' is not set"],
    ),
    ("unterminated-variable", {"kafka.sasl_username": "${LAGMON"}, ["kafka.sasl_username", "unterminated"]),
    (
        "bad-variable-name",
        {"output.json_path": "${1X}/lag.json"},
        ["output.json_path", "invalid environment variable"],
    ),
    ("exclude-not-list", {"exclude.topics": "__consumer_offsets"}, ["exclude.topics", "must be a list"]),
    (
        "exclude-item-not-string",
        {"exclude.groups": ["ok", 7]},
        ["exclude.groups", "item 1 must be a non-empty string"],
    ),
    ("exclude-item-empty", {"exclude.topics": [""]}, ["exclude.topics", "item 0"]),
    ("exclude-not-mapping", {"exclude": ["a"]}, ["exclude", "must be a mapping"]),
    (
        "librdkafka-not-mapping",
        {"kafka.librdkafka": ["client.id=x"]},
        ["kafka.librdkafka", "must be a mapping"],
    ),
    ("librdkafka-nested", {"kafka.librdkafka": {"client.id": {"a": 1}}}, ["kafka.librdkafka", "'client.id'"]),
    ("librdkafka-null", {"kafka.librdkafka": {"client.id": None}}, ["kafka.librdkafka", "'client.id'"]),
    (
        "yaml-syntax",
        "kafka:\n  bootstrap_servers: [a:1\ndatabase: {path: x}\n",
        ["config.yaml: line 3", "invalid YAML"],
    ),
    ("yaml-tab", "kafka:\n\tbootstrap_servers: a:1\n", ["config.yaml: line 2, column 1"]),
    (
        "yaml-duplicate-key",
        "kafka:\n  bootstrap_servers: a:1\n  bootstrap_servers: b:1\n",
        ["line 3", "duplicate key 'bootstrap_servers'"],
    ),
    ("missing-file", None, ["config.yaml: file not found"]),
    ("empty-file", "", ["config.yaml: file is empty"]),
    ("comments-only", "# nothing here\n", ["file is empty"]),
    ("top-level-list", "- kafka\n- database\n", ["top level must be a mapping"]),
]


@pytest.mark.parametrize("changes, expected", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_config_exits_2_naming_the_key(tmp, capsys, changes, expected):
    if changes is None:
        path = str(tmp / "config.yaml")
    else:
        path = write(tmp, changes if isinstance(changes, str) else build(changes, tmp))
    assert cli.main(["check-config", "--config", path]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    for text in expected:
        assert text in err
    assert all(line.startswith("config error: ") for line in err.splitlines())
    assert PASSWORD not in err


def test_all_errors_are_reported_together(tmp, capsys):
    changes = {
        "kafka.bootstrap_servers": "nohost",
        "kafka.sasl_mechanism": "MD5",
        "kafka.colour": 1,
        "monitoring.sample_interval_seconds": 0,
        "monitoring.max_entries_per_partition": 1.5,
        "database.path": DELETE,
        "output.json_path": "{tmp}/nope/lag.json",
        "exclude.topics": "x",
        "extra": 1,
    }
    path = write(tmp, build(changes, tmp))
    assert cli.main(["check-config", "--config", path]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 9, lines
    for key in (
        "extra",
        "kafka.colour",
        "kafka.bootstrap_servers",
        "kafka.sasl_mechanism",
        "monitoring.sample_interval_seconds",
        "monitoring.max_entries_per_partition",
        "database.path",
        "output.json_path",
        "exclude.topics",
    ):
        assert sum(f" {key}: " in line for line in lines) == 1, key


def test_config_error_lists_lines(tmp):
    with pytest.raises(ConfigError) as info:
        config.parse(yaml.safe_dump(build({"monitoring.report_interval_seconds": -1, "kafka.x": 1}, tmp)))
    assert info.value.errors == [
        "config error: kafka.x: unknown key (known keys: bootstrap_servers, security_protocol, sasl_mechanism, "
        "sasl_username, sasl_password, ssl_ca_location, request_timeout_seconds, librdkafka)",
        "config error: monitoring.report_interval_seconds: must be > 0 (got -1)",
    ]
    assert str(info.value) == "\n".join(info.value.errors)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"kafka.sasl_password": 123456}, id="password-not-string"),
        pytest.param(
            {
                "kafka.sasl_password": PASSWORD,
                "kafka.security_protocol": "SASL_SSL",
                "kafka.sasl_mechanism": "PLAIN",
            },
            id="errors-next-to-password",
        ),
        pytest.param({"kafka.sasl_pasword": PASSWORD}, id="misspelt-password-key"),
        pytest.param({"kafka.librdkafka": {"ssl.key.password": [PASSWORD]}}, id="librdkafka-secret"),
        pytest.param(
            {"kafka.sasl_password": PASSWORD, "kafka.sasl_username": "u"}, id="ignored-password-warning"
        ),
    ],
)
def test_password_never_printed(tmp, capsys, changes):
    path = write(tmp, build({**changes, "monitoring.report_interval_seconds": 0}, tmp))
    assert cli.main(["check-config", "--config", path]) == 2
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err and "123456" not in err
    for line in err.splitlines():
        if line.startswith("config error: kafka.sasl_password: must"):
            assert line.endswith(f"(got {MASK})")


# ------------------------------------------------------------------------------------ good cases


def load(tmp: Path, changes: dict | None = None) -> config.Config:
    return config.load(write(tmp, build(changes or {}, tmp)))


def test_defaults_applied(tmp):
    cfg = config.load(
        write(
            tmp,
            {
                "kafka": {"bootstrap_servers": "b:9092"},
                "database": {"path": f"{tmp}/s.db"},
                "output": {"json_path": f"{tmp}/l.json"},
            },
        )
    )
    assert cfg.kafka == config.KafkaSettings(bootstrap_servers="b:9092")
    assert cfg.kafka.security_protocol == "PLAINTEXT" and cfg.kafka.request_timeout_seconds == 10
    assert cfg.kafka.librdkafka == {}
    assert cfg.monitoring == config.MonitoringSettings()
    assert (
        cfg.monitoring.sample_interval_seconds,
        cfg.monitoring.offline_sample_interval_seconds,
        cfg.monitoring.report_interval_seconds,
        cfg.monitoring.housekeeping_interval_seconds,
        cfg.monitoring.max_entries_per_partition,
        cfg.monitoring.max_commit_entries_per_partition,
        cfg.monitoring.offline_detection_consecutive_samples,
        cfg.monitoring.recovering_minimum_duration_seconds,
        cfg.monitoring.online_lag_threshold_seconds,
        cfg.monitoring.absent_group_retention_seconds,
    ) == (60, 1800, 60, 900, 300, 100, 5, 900, 600, 604800)
    assert cfg.exclude == config.ExcludeSettings(topics=(), groups=())
    assert cfg.warnings == ()


def test_null_sections_and_keys_mean_defaults(tmp):
    cfg = load(tmp, {"monitoring": None, "exclude.topics": None, "kafka.sasl_mechanism": None})
    assert cfg.monitoring == config.MonitoringSettings() and cfg.exclude.topics == ()


def test_boundaries_accepted(tmp):
    cfg = load(
        tmp,
        {
            "monitoring.max_entries_per_partition": 2,
            "monitoring.max_commit_entries_per_partition": 2,
            "monitoring.offline_detection_consecutive_samples": 1,
            "monitoring.recovering_minimum_duration_seconds": 0,
            "monitoring.online_lag_threshold_seconds": 0,
            "monitoring.sample_interval_seconds": 30,
            "monitoring.offline_sample_interval_seconds": 30,
        },
    )
    assert cfg.monitoring.max_entries_per_partition == 2
    assert cfg.monitoring.offline_sample_interval_seconds == cfg.monitoring.sample_interval_seconds == 30


def test_float_seconds_accepted(tmp):
    cfg = load(
        tmp,
        {
            "monitoring.sample_interval_seconds": 0.5,
            "monitoring.absent_group_retention_seconds": 1e5,
            "kafka.request_timeout_seconds": 2.5,
        },
    )
    assert cfg.monitoring.sample_interval_seconds == 0.5
    assert cfg.monitoring.absent_group_retention_seconds == 100000.0
    assert cfg.kafka.request_timeout_seconds == 2.5


def test_variable_expansion_and_dollar_escape(tmp, monkeypatch):
    monkeypatch.setenv("LAGMON_TEST_DIR", str(tmp))
    monkeypatch.setenv("LAGMON_TEST_HOST", "kafka.internal")
    cfg = load(
        tmp,
        {
            "kafka.bootstrap_servers": "${LAGMON_TEST_HOST}:9092,${LAGMON_TEST_HOST}:9093",
            "database.path": "${LAGMON_TEST_DIR}/state.db",
            "exclude.groups": ["cost$$-${LAGMON_TEST_HOST}"],
            "kafka.librdkafka": {"client.id": "lag$$mon"},
        },
    )
    assert cfg.kafka.bootstrap_servers == "kafka.internal:9092,kafka.internal:9093"
    assert cfg.database.path == f"{tmp}/state.db"
    assert cfg.exclude.groups == ("cost$-kafka.internal",)
    assert cfg.kafka.librdkafka == {"client.id": "lag$mon"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("plain", "plain"),
        ("a$b", "a$b"),
        ("$$", "$"),
        ("$${X}", "${X}"),
        ("${X}${X}", "xx"),
        ("<${X}>", "<x>"),
    ],
)
def test_expand(text, expected):
    assert config.expand(text, {"X": "x"}) == expected


def test_security_normalised_and_sasl_accepted(tmp):
    cfg = load(
        tmp,
        sasl(security_protocol="sasl_ssl", sasl_mechanism="scram-sha-512", ssl_ca_location="{tmp}/ca.pem"),
    )
    assert (cfg.kafka.security_protocol, cfg.kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert cfg.kafka.sasl_password == PASSWORD and cfg.warnings == ()
    assert PASSWORD not in repr(cfg)


def test_bootstrap_servers_forms(tmp):
    cfg = load(tmp, {"kafka.bootstrap_servers": " b1:9092 , [::1]:65535,10.0.0.1:1"})
    assert cfg.kafka.bootstrap_servers == "b1:9092,[::1]:65535,10.0.0.1:1"


@pytest.mark.parametrize(
    "changes, expected",
    [
        pytest.param(
            {"kafka.sasl_username": "u"},
            [
                "kafka.sasl_username set but security_protocol is PLAINTEXT",
                "incomplete (kafka.sasl_password is missing)",
            ],
            id="user-no-password",
        ),
        pytest.param(
            {
                "kafka.sasl_mechanism": "PLAIN",
                "kafka.sasl_password": "${LAGMON_TEST_PASSWORD}",
                "kafka.security_protocol": "SSL",
                "kafka.ssl_ca_location": "{tmp}/ca.pem",
            },
            [
                "kafka.sasl_mechanism, kafka.sasl_password set but security_protocol is SSL (no SASL), so ignored"
            ],
            id="sasl-under-ssl",
        ),
        pytest.param(
            sasl(sasl_mechanism="GSSAPI"),
            ["kafka.sasl_username, kafka.sasl_password set but not used by sasl_mechanism GSSAPI"],
            id="gssapi-with-password",
        ),
        pytest.param(
            {"kafka.ssl_ca_location": "/nonexistent/ca.pem"},
            ["kafka.ssl_ca_location set but"],
            id="ca-unused",
        ),
        pytest.param(
            {"kafka.librdkafka": {"sasl.username": "x"}},
            ["'sasl.username' overrides kafka.sasl_username"],
            id="librdkafka-override",
        ),
        pytest.param(
            {"database.path": "state.db"}, ["database.path 'state.db' is relative"], id="relative-path"
        ),
    ],
)
def test_warnings(tmp, monkeypatch, capsys, changes, expected):
    monkeypatch.chdir(tmp)
    path = write(tmp, build(changes, tmp))
    assert cli.main(["check-config", "--config", path]) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == len(err.splitlines()) == 1
    for text in expected:
        assert text in warnings[0]
    assert PASSWORD not in err + out


def test_librdkafka_passthrough(tmp):
    cfg = load(
        tmp,
        {
            "kafka.librdkafka": {
                "client.id": "lagmon",
                "socket.keepalive.enable": True,
                "enable.sparse.connections": False,
                "retries": 3,
                "retry.backoff.ms": 0.5,
                "ssl.key.password": "${LAGMON_TEST_PASSWORD}",
            }
        },
    )
    assert cfg.kafka.librdkafka == {
        "client.id": "lagmon",
        "socket.keepalive.enable": "true",
        "enable.sparse.connections": "false",
        "retries": "3",
        "retry.backoff.ms": "0.5",
        "ssl.key.password": PASSWORD,
    }
    shown = config.masked(cfg)["kafka"]["librdkafka"]
    assert shown["ssl.key.password"] == MASK and shown["client.id"] == "lagmon"


def test_masked_is_plain_effective_config(tmp):
    cfg = load(tmp, sasl())
    shown = config.masked(cfg)
    assert list(shown) == ["kafka", "monitoring", "database", "output", "exclude"]
    assert shown["kafka"]["sasl_password"] == MASK and shown["kafka"]["sasl_username"] == "lagmon"
    assert shown["monitoring"]["max_entries_per_partition"] == 300
    assert shown["exclude"] == {"topics": ["__consumer_offsets"], "groups": []}
    assert PASSWORD not in repr(shown)
    assert config.masked(load(tmp))["kafka"]["sasl_password"] is None
    assert yaml.safe_load(yaml.safe_dump(shown)) == shown


def test_check_config_prints_masked_yaml(tmp, capsys):
    path = write(tmp, build(sasl(), tmp))
    assert cli.main(["check-config", "--config", path]) == 0
    out, err = capsys.readouterr()
    assert err == "" and PASSWORD not in out
    shown = yaml.safe_load(out)
    assert shown == config.masked(config.load(path))
    assert shown["kafka"]["sasl_password"] == MASK


def _example(tmp: Path) -> str:
    return (
        EXAMPLE.read_text()
        .replace("/var/lib/lagmon/", f"{tmp}/")
        .replace("/etc/lagmon/ca.pem", f"{tmp}/ca.pem")
    )


def test_example_config_passes(tmp, capsys):
    path = write(tmp, _example(tmp))
    assert cli.main(["check-config", "--config", path]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    shown = yaml.safe_load(out)
    assert (
        shown["database"]["path"] == f"{tmp}/state.db" and shown["output"]["json_path"] == f"{tmp}/lag.json"
    )
    assert shown["exclude"]["topics"] == ["__consumer_offsets", "__transaction_state"]


def test_example_sasl_block_passes_when_uncommented(tmp, monkeypatch):
    monkeypatch.setenv("LAGMON_SASL_PASSWORD", PASSWORD)
    text = _example(tmp).replace("security_protocol: PLAINTEXT", "security_protocol: SASL_SSL")
    text = re.sub(r"(?m)^  # (sasl_\w+|ssl_ca_location|librdkafka):", r"  \1:", text)
    text = re.sub(r"(?m)^  #   ", "    ", text)
    cfg = config.parse(text)
    assert cfg.kafka.sasl_password == PASSWORD and cfg.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert cfg.kafka.librdkafka["socket.keepalive.enable"] == "true"
    assert "${LAGMON_SASL_PASSWORD}" in EXAMPLE.read_text()


def test_parse_source_names_file_in_errors():
    with pytest.raises(ConfigError) as info:
        config.parse("kafka: [", source="inline.yaml")
    assert info.value.errors[0].startswith("config error: inline.yaml: line 1")


def test_loading_never_touches_the_network(tmp, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("config loading must not connect")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    assert load(tmp, sasl()).kafka.bootstrap_servers == "broker1:9092,broker2:9092"


@pytest.mark.parametrize(
    "argv, code",
    [
        ([], 2),
        (["bogus"], 2),
        (["check-config"], 2),
        (["check-config", "--config"], 2),
        (["--help"], 0),
    ],
)
def test_cli_usage(argv, code, capsys):
    assert cli.main(argv) == code
    capsys.readouterr()


def test_cli_dispatch_table_has_run_and_status(tmp):
    assert set(cli.COMMANDS) == {"check-config", "run", "status"}
    args = cli.build_parser().parse_args(["run", "--config", "x.yaml", "--debug"])
    assert (args.command, args.config, args.debug) == ("run", "x.yaml", True)
    assert cli.build_parser().parse_args(["status", "--config", "y"]).debug is False


# ------------------------------------------------------------------------------------ output.prometheus_*


def test_prometheus_keys_default_to_off(tmp):
    cfg = load(tmp)
    assert cfg.output.prometheus_path is None and cfg.output.prometheus_partitions is False
    assert config.masked(cfg)["output"] == {
        "json_path": f"{tmp}/lag.json",
        "prometheus_path": None,
        "prometheus_partitions": False,
    }


def test_prometheus_keys_accepted(tmp):
    cfg = load(tmp, {"output.prometheus_path": "{tmp}/lagmon.prom", "output.prometheus_partitions": True})
    assert cfg.output.prometheus_path == f"{tmp}/lagmon.prom" and cfg.output.prometheus_partitions is True
    assert cfg.warnings == ()


@pytest.mark.parametrize(
    "changes, expected",
    [
        pytest.param(
            {"output.prometheus_path": "{tmp}/nope/lagmon.prom"},
            "config error: output.prometheus_path: directory ",
            id="dir-missing",
        ),
        pytest.param(
            {"output.prometheus_path": "{tmp}"},
            "config error: output.prometheus_path: must be a file path, not a directory",
            id="is-directory",
        ),
        pytest.param(
            {"output.prometheus_path": "{tmp}/lag.json"},
            "config error: output.prometheus_path: must differ from output.json_path (got ",
            id="equal-to-json-path",
        ),
        pytest.param(
            {"output.prometheus_path": "{tmp}/./x/../lag.json"},
            "config error: output.prometheus_path: must differ from output.json_path (got ",
            id="same-file-other-spelling",
        ),
        pytest.param(
            {"output.prometheus_path": 5},
            "config error: output.prometheus_path: must be a string, not an integer",
            id="not-string",
        ),
        pytest.param(
            {"output.prometheus_partitions": "yes"},
            "config error: output.prometheus_partitions: must be true or false, not a string (got 'yes')",
            id="partitions-not-bool",
        ),
        pytest.param(
            {"output.prometheus_partitions": 1},
            "config error: output.prometheus_partitions: must be true or false, not an integer (got 1)",
            id="partitions-int",
        ),
    ],
)
def test_prometheus_keys_rejected(tmp, capsys, changes, expected):
    if "x/.." in str(changes.get("output.prometheus_path", "")):
        (tmp / "x").mkdir()
    path = write(tmp, build(changes, tmp))
    assert cli.main(["check-config", "--config", path]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(expected), err


def test_prometheus_path_relative_warns(tmp, monkeypatch):
    monkeypatch.chdir(tmp)
    cfg = load(tmp, {"output.prometheus_path": "lagmon.prom"})
    assert any("output.prometheus_path 'lagmon.prom' is relative" in w for w in cfg.warnings)


def test_example_documents_prometheus_keys():
    text = EXAMPLE.read_text()
    assert "# prometheus_path: " in text and "# prometheus_partitions: false" in text


def test_example_prometheus_keys_pass_when_uncommented(tmp):
    text = _example(tmp).replace("/var/lib/node_exporter/textfile/", f"{tmp}/")
    text = text.replace("  # prometheus_path:", "  prometheus_path:")
    text = text.replace("  # prometheus_partitions: false", "  prometheus_partitions: true")
    cfg = config.parse(text)
    assert cfg.output.prometheus_path == f"{tmp}/lagmon.prom" and cfg.output.prometheus_partitions is True


def test_prometheus_path_without_prom_suffix_warns(tmp):
    cfg = load(tmp, {"output.prometheus_path": "{tmp}/lagmon.txt"})
    assert cfg.warnings == (
        f"output.prometheus_path '{tmp}/lagmon.txt' does not end in .prom: "
        "node_exporter's textfile collector reads only *.prom files",
    )
