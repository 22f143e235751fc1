"""The configuration's cross-key rules (lagmon.config runs them after each key's own check),
and the protocol and mechanism names they know. Each problem becomes one line of lagmon.config's
``config error: <section>.<key>: <rule> (got <value>)`` form; a password is never printed."""

from __future__ import annotations

import os
from typing import Any

from lagmon.convert import NO_VALUE, show
from lagmon.secrets import MASK

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER")
USER_PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
# librdkafka properties that duplicate a first-class kafka.* key (the passthrough wins).
LIBRDKAFKA_DUPLICATES = {
    "bootstrap.servers": "bootstrap_servers",
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl.username": "sasl_username",
    "sasl.password": "sasl_password",
    "ssl.ca.location": "ssl_ca_location",
}


FAILED = object()  # the key's own value was invalid (already reported): skip cross-key rules


def problem(where: str, rule: str, value: Any = NO_VALUE, secret: bool = False) -> str:
    if value is NO_VALUE:
        return f"config error: {where}: {rule}"
    shown = MASK if secret and value not in (None, "") else show(value)
    return f"config error: {where}: {rule} (got {shown})"


def check_intervals(m: dict[str, Any], errors: list[str]) -> None:
    sample, offline = m["sample_interval_seconds"], m["offline_sample_interval_seconds"]
    if sample is not FAILED and offline is not FAILED and offline < sample:
        errors.append(
            problem(
                "monitoring.offline_sample_interval_seconds",
                f"must be >= monitoring.sample_interval_seconds ({sample})",
                offline,
            )
        )


def check_security(k: dict[str, Any], errors: list[str], warnings: list[str]) -> None:
    """The spec's SASL/TLS note: what is required, and what is set but ignored."""
    protocol, mechanism = k["security_protocol"], k["sasl_mechanism"]
    if protocol is FAILED:
        return
    credentials = ("sasl_username", "sasl_password")
    given = [key for key in credentials if k[key] not in (None, "", FAILED)]
    if protocol in SASL_PROTOCOLS and mechanism is None:
        errors.append(
            problem(
                "kafka.sasl_mechanism",
                f"is required when security_protocol is {protocol} (one of {', '.join(MECHANISMS)})",
                None,
            )
        )
    elif protocol in SASL_PROTOCOLS and mechanism in USER_PASSWORD_MECHANISMS:
        for key in credentials:
            if k[key] in (None, ""):
                errors.append(
                    problem(f"kafka.{key}", f"is required when sasl_mechanism is {mechanism}", k[key])
                )
    elif protocol in SASL_PROTOCOLS and mechanism is not FAILED and given:
        warnings.append(f"{_names(given)} set but not used by sasl_mechanism {mechanism}; ignored")
    elif protocol not in SASL_PROTOCOLS:
        unused = [key for key in ("sasl_mechanism", *credentials) if k[key] not in (None, "", FAILED)]
        if unused:
            text = f"{_names(unused)} set but security_protocol is {protocol} (no SASL), so ignored"
            if len(given) == 1:
                missing = "sasl_password" if given == ["sasl_username"] else "sasl_username"
                text += f"; the SASL credentials are also incomplete (kafka.{missing} is missing)"
            warnings.append(text)
    check_ca(protocol, k["ssl_ca_location"], errors, warnings)


def check_ca(protocol: str, ca: Any, errors: list[str], warnings: list[str]) -> None:
    if ca is FAILED:
        return
    if protocol in TLS_PROTOCOLS and not ca:
        errors.append(
            problem("kafka.ssl_ca_location", f"is required when security_protocol is {protocol}", ca)
        )
    elif protocol in TLS_PROTOCOLS and not os.path.isfile(ca):
        errors.append(problem("kafka.ssl_ca_location", "file does not exist", ca))
    elif protocol not in TLS_PROTOCOLS and ca:
        warnings.append(f"kafka.ssl_ca_location set but security_protocol is {protocol} (no TLS), so ignored")


def check_librdkafka_duplicates(k: dict[str, Any], warnings: list[str]) -> None:
    if k["librdkafka"] is FAILED:
        return
    for name in k["librdkafka"]:
        if name in LIBRDKAFKA_DUPLICATES:
            key = LIBRDKAFKA_DUPLICATES[name]
            warnings.append(f"kafka.librdkafka property {name!r} overrides kafka.{key}")


def check_output_paths(o: dict[str, Any], errors: list[str], warnings: list[str]) -> None:
    json_path, prom_path = o["json_path"], o["prometheus_path"]
    if not isinstance(prom_path, str):
        return
    if isinstance(json_path, str) and os.path.realpath(json_path) == os.path.realpath(prom_path):
        errors.append(problem("output.prometheus_path", "must differ from output.json_path", prom_path))
    elif not prom_path.endswith(".prom"):
        warnings.append(
            f"output.prometheus_path {prom_path!r} does not end in .prom: "
            "node_exporter's textfile collector reads only *.prom files"
        )


def check_relative_paths(values: dict[str, Any], warnings: list[str]) -> None:
    for section, key in (("database", "path"), ("output", "json_path"), ("output", "prometheus_path")):
        path = (values[section] or {}).get(key, FAILED)
        if isinstance(path, str) and not os.path.isabs(path):
            warnings.append(
                f"{section}.{key} {path!r} is relative: each lagmon process resolves it "
                "against its own working directory"
            )


def _names(keys: list[str]) -> str:
    return ", ".join(f"kafka.{key}" for key in keys)
