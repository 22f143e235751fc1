"""The converters of lagmon's configuration, one per kind of value, and ${VAR} expansion.

Each converter takes the raw YAML value (after ${VAR} expansion) and returns the typed value,
or raises Invalid(rule, bad_value); lagmon.config adds "<section>.<key>" and masks secrets.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from lagmon.secrets import is_secret

NO_VALUE = object()


class Invalid(ValueError):
    def __init__(self, rule: str, value: Any = NO_VALUE):
        self.rule, self.value = rule, value
        super().__init__(rule if value is NO_VALUE else f"{rule} (got {show(value)})")


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def kind_of(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a string, not {kind_of(value)} (quote it in YAML)", value)
    return value


def _nonempty_string(value: Any) -> str:
    if not string(value).strip():
        raise Invalid("must be a non-empty string", value)
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"must be a number of seconds, not {kind_of(value)}", value)
    if not math.isfinite(value):
        raise Invalid("must be a finite number of seconds", value)
    return value


def positive_seconds(value: Any) -> float:
    if _seconds(value) <= 0:
        raise Invalid("must be > 0", value)
    return value


def nonnegative_seconds(value: Any) -> float:
    if _seconds(value) < 0:
        raise Invalid("must be >= 0", value)
    return value


def count_at_least(minimum: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be an integer, not {kind_of(value)}", value)
        if value < minimum:
            raise Invalid(f"must be >= {minimum}", value)
        return value

    convert.__name__ = f"count_at_least_{minimum}"
    return convert


def one_of(options: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = string(value).strip().upper()
        if text not in options:
            raise Invalid(f"must be one of {', '.join(options)}", value)
        return text

    return convert


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, not {kind_of(value)}", value)
    return value


def optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def bootstrap_servers(value: Any) -> str:
    """Comma-separated host:port entries; returns them with the blanks around commas removed."""
    entries = [entry.strip() for entry in string(value).split(",")]
    if not value.strip():
        raise Invalid("must be a non-empty comma-separated list of host:port", value)
    for entry in entries:
        host, colon, port = entry.rpartition(":")
        if not colon or not host or any(c.isspace() for c in host):
            raise Invalid(f"entry {entry!r} must be host:port", value)
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            raise Invalid(f"entry {entry!r}: write an IPv6 address as [addr]:port", value)
        if not (port.isdigit() and 1 <= int(port) <= 65535):
            raise Invalid(f"entry {entry!r} has an invalid port (must be 1..65535)", value)
    return ",".join(entries)


def file_in_existing_directory(value: Any) -> str:
    path = _nonempty_string(value)
    if os.path.isdir(path):
        raise Invalid("must be a file path, not a directory", value)
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise Invalid(f"directory {directory!r} does not exist", value)
    return path


def patterns(value: Any) -> tuple[str, ...]:
    """Exact names or shell-style globs (fnmatch)."""
    if not isinstance(value, list):
        raise Invalid(f"must be a list of names or shell-style patterns, not {kind_of(value)}", value)
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise Invalid(f"item {index} must be a non-empty string", item)
    return tuple(value)


def librdkafka_properties(value: Any) -> dict[str, str]:
    """Any librdkafka property -> scalar; values become strings (booleans "true"/"false")."""
    if not isinstance(value, dict):
        raise Invalid(f"must be a mapping of librdkafka property to value, not {kind_of(value)}", value)
    properties = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name.strip():
            raise Invalid("property names must be non-empty strings", name)
        if isinstance(item, bool):
            properties[name] = "true" if item else "false"
        elif isinstance(item, (str, int, float)):
            properties[name] = str(item)
        else:
            rule = f"property {name!r} must be a string, number or boolean, not {kind_of(item)}"
            raise Invalid(rule) if is_secret(name) else Invalid(rule, item)
    return properties


_REFERENCE = re.compile(r"\$(?:(\$)|\{([^}]*)\}|(\{))")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand(text: str, environ: Mapping[str, str] = os.environ) -> str:
    """Replace every ${VAR} with the environment's value; "$$" is a literal "$"."""

    def replace(match: re.Match) -> str:
        if match.group(1):
            return "$"
        if match.group(3):
            raise Invalid("unterminated '${' (write '$$' for a literal '$')")
        name = match.group(2)
        if not _VARIABLE_NAME.fullmatch(name):
            raise Invalid(f"invalid environment variable name in '${{{name}}}'")
        if name not in environ:
            raise Invalid(f"environment variable {name!r} is not set")
        return environ[name]

    return _REFERENCE.sub(replace, text)


def expand_all(value: Any) -> Any:
    if isinstance(value, str):
        return expand(value)
    if isinstance(value, list):
        return [expand_all(item) for item in value]
    if isinstance(value, dict):
        return {key: expand_all(item) for key, item in value.items()}
    return value
