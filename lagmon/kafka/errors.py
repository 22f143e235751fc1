"""The classification of confluent-kafka errors into its kinds.

"auth"         credentials or TLS rejected: raised as soon as librdkafka reports it;
"unreachable"  no connection within request_timeout_seconds (the last connection error
               is named);
"timeout"      connected, but no answer within request_timeout_seconds;
"error"        anything else (bad client configuration, unexpected broker error).
"""

from __future__ import annotations

import os
import re

from confluent_kafka import KafkaError, KafkaException

AUTH_CODES = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL}
CONNECT_CODES = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
NOT_CONNECTED = CONNECT_CODES | {
    KafkaError._TIMED_OUT,
    KafkaError._TIMED_OUT_QUEUE,
    KafkaError._WAIT_COORD,
    KafkaError.REQUEST_TIMED_OUT,
}


def _code(exc: BaseException | None) -> int | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].code()
    return None


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        err = exc.args[0]
        return f"{err.name()}: {err.str()}"
    return repr(exc) if exc is not None else "no answer"


def _all_unconnected(failures: list[BaseException]) -> bool:
    return bool(failures) and all(_code(f) in NOT_CONNECTED for f in failures)


# librdkafka ends connection errors with e.g. "(after 304ms in state AUTH_REQ, 2 identical error(s)
# suppressed)": timings that differ on every retry would make one outage look like many.
_TIMING_RE = re.compile(r" \(after \d+ms in state [A-Z_]+(?:, \d+ identical error\(s\) suppressed)?\)")


def _untimed(text: str) -> str:
    return _TIMING_RE.sub("", text)


# ---------------------------------------------------------------- authentication and TLS failures

# librdkafka says "certificate verify failed: broker certificate could not be verified, verify that
# ssl.ca.location is correctly configured ..." whatever OpenSSL's reason was (a wrong CA, an
# expired certificate, a hostname mismatch): the reason is found by a TLS handshake of our own.
_VERIFY_FAILED = "certificate verify failed"
_TLS_BROKER_RE = re.compile(r"\b(?:sasl_)?ssl://\[?([^\]/\s]+?)\]?:(\d+)/", re.IGNORECASE)
TLS_PROBE_TIMEOUT = 5.0  # seconds at most for our own diagnostic handshake
# X509_V_ERR_* codes -> what they mean for an operator
_VERIFY_HINTS = {
    2: "the broker's certificate is not signed by a CA in ssl.ca.location",
    18: "the broker's certificate is self-signed and not in ssl.ca.location",
    19: "the broker's certificate is not signed by a CA in ssl.ca.location",
    20: "the broker's certificate is not signed by a CA in ssl.ca.location",
    21: "the broker's certificate is not signed by a CA in ssl.ca.location",
    9: "the broker's certificate is not valid yet (check the clocks)",
    10: "the broker's certificate must be renewed",
    62: "the broker's certificate does not name the host lagmon connects to "
    "(ssl.endpoint.identification.algorithm is https)",
}


def tls_verify_reason(text: str, props: dict[str, str], timeout: float) -> str | None:
    """OpenSSL's reason for librdkafka's "certificate verify failed" in `text`, found by one TLS
    handshake with the broker named in it, verified like librdkafka would (ssl.ca.location or
    ssl.ca.pem, else the system CAs; the host name checked unless
    ssl.endpoint.identification.algorithm is none). None when `text` is no verification
    failure or our handshake does not fail verification."""
    import socket
    import ssl

    match = _TLS_BROKER_RE.search(text)
    if _VERIFY_FAILED not in text or not match:
        return None
    host, port = match.group(1), int(match.group(2))
    try:
        ctx = ssl.create_default_context()
        location, pem = props.get("ssl.ca.location"), props.get("ssl.ca.pem")
        if pem:
            ctx = ssl.create_default_context(cadata=pem)
        elif location and location != "probe":
            is_dir = os.path.isdir(location)
            ctx = ssl.create_default_context(
                cafile=None if is_dir else location, capath=location if is_dir else None
            )
        if props.get("ssl.endpoint.identification.algorithm", "https").lower() == "none":
            ctx.check_hostname = False
        raw = socket.create_connection((host, port), timeout=min(timeout, TLS_PROBE_TIMEOUT))
        with raw, ctx.wrap_socket(raw, server_hostname=host):
            return None
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or str(exc)
        hint = _VERIFY_HINTS.get(exc.verify_code)
        return f"{_VERIFY_FAILED}: {reason}" + (f" ({hint})" if hint else "")
    except (OSError, ValueError):
        return None


def auth_failure_text(
    err: KafkaError | None, *, bootstrap: str, props: dict[str, str], what: str, timeout: float
) -> str:
    """The message of a "auth" KafkaUnavailable: TLS failures say "TLS handshake failed" and
    name OpenSSL's reason; SASL failures say "authentication failed" and name the mechanism
    and user. Secrets are masked by the caller."""
    protocol = props.get("security.protocol", "PLAINTEXT")
    raw = _untimed(err.str()) if err is not None else "rejected"
    if err is not None and err.code() == KafkaError._SSL:
        reason = tls_verify_reason(raw, props, timeout)
        cause = reason or raw.split(": ", 1)[-1]  # without librdkafka's "ssl://host:port/id: " prefix
        ca = props.get("ssl.ca.location") or ("ssl.ca.pem" if props.get("ssl.ca.pem") else "the system CAs")
        return (
            f"kafka TLS handshake failed at {bootstrap} (security.protocol {protocol}, "
            f"CA {ca}) while {what}: {cause}"
        )
    mechanism = props.get("sasl.mechanism") or "none"
    user = f", user {props['sasl.username']!r}" if props.get("sasl.username") else ""
    return (
        f"kafka authentication failed at {bootstrap} (security.protocol {protocol}, "
        f"sasl.mechanism {mechanism}{user}) while {what}: {raw}"
    )
