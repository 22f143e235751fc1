"""KafkaSettings -> librdkafka properties."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lagmon.config import KafkaSettings


def client_properties(k: KafkaSettings) -> dict[str, str]:
    """librdkafka properties for the settings; the `librdkafka` passthrough wins."""
    props = {"bootstrap.servers": k.bootstrap_servers, "security.protocol": k.security_protocol}
    optional = {
        "sasl.mechanism": k.sasl_mechanism,
        "sasl.username": k.sasl_username,
        "sasl.password": k.sasl_password,
        "ssl.ca.location": k.ssl_ca_location,
    }
    props.update({key: str(value) for key, value in optional.items() if value is not None})
    for key, value in dict(k.librdkafka or {}).items():
        props[str(key)] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return props
