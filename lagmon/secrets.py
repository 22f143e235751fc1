"""The one rule for what lagmon treats as secret, and how a secret is hidden.

`is_secret(name)` decides by a setting's or librdkafka property's name; `MASK` replaces a
secret value wherever lagmon shows one (check-config, config errors, Kafka error messages,
logs, stage_state.last_error, lag.json); `scrub(text, values)` masks every occurrence of
the given secret values in a text. config.py and lagmon.kafka both use this module.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

__all__ = ["MASK", "is_secret", "scrub", "secret_values"]

MASK = "********"
# Names that hold a secret without saying "password" or "secret": a private key in PEM,
# the OAUTHBEARER configuration (it can carry a client secret or an unsecured token).
_SECRET_NAMES = ("ssl.key.pem", "sasl.oauthbearer.config")


def is_secret(name: str) -> bool:
    """True for keys whose value must never be shown (sasl_password, librdkafka *password*/*secret*,
    ssl.key.pem, sasl.oauthbearer.config)."""
    lowered = name.lower()
    return "password" in lowered or "secret" in lowered or lowered in _SECRET_NAMES


def secret_values(properties: Mapping[str, object]) -> tuple[str, ...]:
    """The non-empty values of the secret keys in `properties`, longest first."""
    found = {str(v) for key, v in properties.items() if is_secret(str(key)) and v not in (None, "")}
    return tuple(sorted(found, key=lambda v: (-len(v), v)))


def scrub(text: str, values: Iterable[str]) -> str:
    """`text` with every occurrence of each secret value replaced by MASK.

    A value is masked where it stands as a token (not inside a longer run of letters and
    digits), so a short password cannot garble an ordinary word; longer values are masked first."""
    pattern = _pattern(tuple(sorted({v for v in values if v}, key=lambda v: (-len(v), v))))
    return pattern.sub(MASK, text) if pattern is not None else text


@functools.lru_cache(maxsize=32)
def _pattern(values: tuple[str, ...]) -> re.Pattern[str] | None:
    if not values:
        return None
    return re.compile("|".join(rf"(?<![A-Za-z0-9]){re.escape(v)}(?![A-Za-z0-9])" for v in values))
