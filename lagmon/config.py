"""lagmon configuration: defaults, parse, validate.

- defaults live in the dataclasses below (a field without a default is required);
- parse turns YAML text into a mapping (syntax errors name the line and column);
- validate runs one small converter per key, then the cross-key rules.

Every problem is collected and reported together, one per line, as
``config error: <section>.<key>: <rule> (got <value>)``. A password is never
printed. Loading a configuration never connects to anything; it only looks at
the file system (directories of the output paths, the CA file).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from lagmon.config_rules import (
    FAILED,
    MECHANISMS,
    PROTOCOLS,
    check_intervals,
    check_librdkafka_duplicates,
    check_output_paths,
    check_relative_paths,
    check_security,
    problem,
)
from lagmon.convert import (
    Invalid,
    boolean,
    bootstrap_servers,
    count_at_least,
    expand,
    expand_all,
    file_in_existing_directory,
    kind_of,
    librdkafka_properties,
    nonnegative_seconds,
    one_of,
    optional,
    patterns,
    positive_seconds,
    string,
)
from lagmon.secrets import MASK, is_secret

__all__ = ["MASK", "Config", "ConfigError", "expand", "is_secret", "load", "masked", "parse"]


class ConfigError(Exception):
    """The configuration is unusable; .errors holds one "config error: ..." line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# --------------------------------------------------------------------------- defaults


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None
    request_timeout_seconds: float = 10.0
    librdkafka: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class MonitoringSettings:
    sample_interval_seconds: float = 60
    offline_sample_interval_seconds: float = 1800
    report_interval_seconds: float = 60
    housekeeping_interval_seconds: float = 900
    max_entries_per_partition: int = 300
    max_commit_entries_per_partition: int = 100
    offline_detection_consecutive_samples: int = 5
    recovering_minimum_duration_seconds: float = 900
    online_lag_threshold_seconds: float = 600
    absent_group_retention_seconds: float = 604800


@dataclass(frozen=True)
class DatabaseSettings:
    path: str


@dataclass(frozen=True)
class OutputSettings:
    json_path: str
    prometheus_path: str | None = None  # Prometheus textfile (node_exporter's textfile collector)
    prometheus_partitions: bool = False  # per-partition series in that file (cardinality)


@dataclass(frozen=True)
class ExcludeSettings:
    topics: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    kafka: KafkaSettings
    monitoring: MonitoringSettings
    database: DatabaseSettings
    output: OutputSettings
    exclude: ExcludeSettings
    warnings: tuple[str, ...] = ()


# section name -> (dataclass, {key: converter}); the keys are exactly the dataclass fields.
SCHEMA: dict[str, tuple[type, dict[str, Callable[[Any], Any]]]] = {
    "kafka": (
        KafkaSettings,
        {
            "bootstrap_servers": bootstrap_servers,
            "security_protocol": one_of(PROTOCOLS),
            "sasl_mechanism": optional(one_of(MECHANISMS)),
            "sasl_username": optional(string),
            "sasl_password": optional(string),
            "ssl_ca_location": optional(string),
            "request_timeout_seconds": positive_seconds,
            "librdkafka": librdkafka_properties,
        },
    ),
    "monitoring": (
        MonitoringSettings,
        {
            "sample_interval_seconds": positive_seconds,
            "offline_sample_interval_seconds": positive_seconds,
            "report_interval_seconds": positive_seconds,
            "housekeeping_interval_seconds": positive_seconds,
            "max_entries_per_partition": count_at_least(2),
            "max_commit_entries_per_partition": count_at_least(2),
            "offline_detection_consecutive_samples": count_at_least(1),
            "recovering_minimum_duration_seconds": nonnegative_seconds,
            "online_lag_threshold_seconds": nonnegative_seconds,
            "absent_group_retention_seconds": positive_seconds,
        },
    ),
    "database": (DatabaseSettings, {"path": file_in_existing_directory}),
    "output": (
        OutputSettings,
        {
            "json_path": file_in_existing_directory,
            "prometheus_path": optional(file_in_existing_directory),
            "prometheus_partitions": boolean,
        },
    ),
    "exclude": (ExcludeSettings, {"topics": patterns, "groups": patterns}),
}
assert all([f.name for f in dataclasses.fields(cls)] == list(keys) for cls, keys in SCHEMA.values())


# --------------------------------------------------------------------------- parse


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def _read_yaml(text: str, source: str) -> dict:
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        context = f"{exc.context}: " if exc.context else ""
        raise ConfigError([f"config error: {source}: {where}invalid YAML: {context}{exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"config error: {source}: invalid YAML: {exc}"]) from None
    if data is None:
        raise ConfigError([f"config error: {source}: file is empty (expected sections: {', '.join(SCHEMA)})"])
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"config error: {source}: top level must be a mapping of sections "
                f"({', '.join(SCHEMA)}), not {kind_of(data)}"
            ]
        )
    return data


def load(path: str) -> Config:
    """Read and validate the YAML file at path; raises ConfigError listing every problem."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError([f"config error: {path}: file not found"]) from None
    except OSError as exc:  # a directory, permission denied, ...
        raise ConfigError([f"config error: {path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"config error: {path}: not UTF-8 text (byte {exc.start})"]) from None
    return parse(text, source=path)


def parse(text: str, source: str = "<config>") -> Config:
    """Validate YAML text; raises ConfigError listing every problem."""
    data = _read_yaml(text, source)
    errors: list[str] = []
    warnings: list[str] = []
    for name in data:
        if name not in SCHEMA:
            errors.append(_unknown(str(name), str(name), list(SCHEMA), "section"))
    values = {name: _section(name, data.get(name), errors) for name in SCHEMA}
    if values["monitoring"] is not None:
        check_intervals(values["monitoring"], errors)
    if values["kafka"] is not None:
        check_security(values["kafka"], errors, warnings)
        check_librdkafka_duplicates(values["kafka"], warnings)
    if values["output"] is not None:
        check_output_paths(values["output"], errors, warnings)
    check_relative_paths(values, warnings)
    if errors:
        raise ConfigError(errors)
    sections = {name: SCHEMA[name][0](**(values[name] or {})) for name in SCHEMA}  # None only with errors
    return Config(**sections, warnings=tuple(warnings))


# --------------------------------------------------------------------------- validate


def _unknown(where: str, key: str, known: list[str], kind: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    homes = [section for section, (_, keys) in SCHEMA.items() if key in keys]
    if close:
        hint = f"; did you mean {close[0]!r}?"
    elif homes:
        hint = f"; it belongs in section {homes[0]!r} ({homes[0]}.{key})"
    else:
        hint = f" (known {kind}s: {', '.join(known)})"
    return f"config error: {where}: unknown {kind}{hint}"


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return FAILED


def _section(name: str, raw: Any, errors: list[str]) -> dict[str, Any] | None:
    """{key: typed value, or FAILED}; None if the section is not a mapping. Null means "defaults"."""
    cls, converters = SCHEMA[name]
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        errors.append(problem(name, f"must be a mapping of keys to values, not {kind_of(raw)}", raw))
        return None
    for key in raw:
        if key not in converters:
            errors.append(_unknown(f"{name}.{key}", str(key), list(converters), "key"))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        where, raw_value = f"{name}.{f.name}", raw.get(f.name)
        if raw_value is None:
            values[f.name] = _default(f)
            if values[f.name] is FAILED:
                errors.append(problem(where, "is required" if f.name in raw else "required key is missing"))
            continue
        try:
            values[f.name] = converters[f.name](expand_all(raw_value))
        except Invalid as exc:
            errors.append(problem(where, exc.rule, exc.value, secret=is_secret(f.name)))
            values[f.name] = FAILED
    return values


# --------------------------------------------------------------------------- show


def masked(cfg: Config) -> dict:
    """The effective configuration (defaults filled in) as plain data, secrets replaced by MASK."""
    out: dict[str, dict[str, Any]] = {}
    for name in SCHEMA:
        section = getattr(cfg, name)
        plain: dict[str, Any] = {}
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = {key: MASK if is_secret(key) else item for key, item in value.items()}
            elif is_secret(f.name) and value is not None:
                value = MASK
            plain[f.name] = value
        out[name] = plain
    return out
