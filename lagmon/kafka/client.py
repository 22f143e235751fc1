"""KafkaClient: every admin request lagmon makes, with the poll loops that make an auth
failure surface at once rather than after the request timeout.

One AdminClient answers everything a sample needs (topics, groups, committed offsets,
head offsets); message timestamps come from the AnchorReads mixin (anchors.py).
Failures surface as KafkaUnavailable (errors.py) with a `kind`. Messages name the bootstrap
servers (and for "auth" the security protocol and SASL mechanism), never a secret: every
configured secret (lagmon.secrets.is_secret) is masked in them and in the log lines.

librdkafka's own log lines go to `<logger>.librdkafka` at DEBUG, never to stderr.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from lagmon import secrets
from lagmon.kafka.anchors import AnchorReads
from lagmon.kafka.errors import (
    AUTH_CODES,
    CONNECT_CODES,
    NOT_CONNECTED,
    _all_unconnected,
    _code,
    _describe,
    _untimed,
    auth_failure_text,
)
from lagmon.kafka.settings import client_properties
from lagmon.kafka.unavailable import KafkaUnavailable

if TYPE_CHECKING:
    from lagmon.config import KafkaSettings

GRACE_SECONDS = 1.0  # our wait beyond librdkafka's own request timeout
MIN_REQUEST_SECONDS = 0.1  # librdkafka's request timeout when the deadline is (nearly) spent
POLL_SLICE = 0.05  # how often the admin client is polled while futures are pending


class _LibrdkafkaLog:
    """`logger=` target for librdkafka: forwards at DEBUG, keeps the last connection failure."""

    def __init__(self, logger: logging.Logger, scrub: Callable[[str], str]):
        self.logger = logger
        self.scrub = scrub
        self.last_failure: str | None = None  # newest connection FAIL line, e.g. "Disconnected..."

    def log(self, level: int, msg: str, *args: Any) -> None:
        text = self.scrub(msg % args if args else msg)
        if text.startswith("FAIL ") and "]: " in text:
            self.last_failure = text.split("]: ", 1)[1]
        self.logger.debug("%s", text)


class KafkaClient(AnchorReads):
    """All broker requests lagmon makes. Not thread-safe: one client per stage."""

    def __init__(self, k: KafkaSettings, *, logger: logging.Logger | None = None):
        self.settings = k
        self.log = logger or logging.getLogger("lagmon.kafka")
        self.timeout = float(k.request_timeout_seconds)
        self.requests = 0
        self._props = client_properties(k)
        self._secrets = secrets.secret_values(self._props)
        self._bootstrap = k.bootstrap_servers
        self._rdlog = _LibrdkafkaLog(self.log.getChild("librdkafka"), self._scrub)
        self._auth_error: KafkaError | None = None  # cleared by any successful answer
        self._connect_error: KafkaError | None = None  # idem
        self._fatal_error: KafkaError | None = None
        self._consumer: Consumer | None = None
        try:
            self._admin: AdminClient | None = AdminClient(self._config())
        except (KafkaException, ValueError, TypeError) as exc:
            raise KafkaUnavailable(
                self._scrub(f"kafka client for {self._bootstrap} could not be created: {exc}"), kind="error"
            ) from None

    # ------------------------------------------------------------------ public API

    def topics(self, *, deadline: float | None = None) -> tuple[dict[str, int], set[str]]:
        """({topic: partition count} for every topic listed without an error, {topics listed
        with an error}). A topic with an error (e.g. its leader is being elected) is unknown
        for now, not gone. Waits at most the request timeout, and never past `deadline`
        (time.monotonic(), as for every request below)."""
        admin = self._admin_client()
        what = "listing topics"
        deadline = self._until(deadline)
        slice_ = 0.5
        while True:
            # list_topics() blocks without serving error_cb, so ask in growing slices and
            # poll in between: a rejected password is seen within about half a second.
            self._check(what)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # list_topics says _TRANSPORT whenever no connection was usable in time;
                # error_cb tells whether connecting actually failed (unreachable) or not.
                raise self._unavailable(what, None)
            started = time.monotonic()
            self.requests += 1
            try:
                metadata = admin.list_topics(timeout=min(slice_, remaining))
                break
            except KafkaException as exc:
                if _code(exc) not in NOT_CONNECTED:
                    raise self._unavailable(what, exc) from None
            slice_ = min(slice_ * 2, 5.0)
            admin.poll(max(0.0, min(0.1 - (time.monotonic() - started), deadline - time.monotonic())))
        self._answered()
        known = {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}
        return known, {name for name, t in metadata.topics.items() if t.error is not None}

    def groups(self, *, deadline: float | None = None) -> tuple[set[str], bool]:
        """(group ids, complete). complete is False when some broker did not answer."""
        admin = self._admin_client()
        self.requests += 1
        future = admin.list_consumer_groups(request_timeout=self._request_timeout(deadline))
        result = self._wait({"groups": future}, "listing consumer groups", deadline)["groups"]
        if isinstance(result, BaseException):
            raise self._unavailable("listing consumer groups", result)
        failures = [KafkaException(e) if isinstance(e, KafkaError) else e for e in result.errors]
        if not result.valid and _all_unconnected(failures):
            # No broker answered (ListGroups asks each one): not "no groups".
            raise self._unavailable("listing consumer groups", failures[0])
        self._answered()
        return {g.group_id for g in result.valid}, not result.errors

    def committed(
        self, groups: Iterable[str], *, deadline: float | None = None
    ) -> tuple[dict[str, dict[tuple[str, int], int]], dict[str, str]]:
        """Committed offsets of every group, all requests in flight at once.

        Returns ({group: {(topic, partition): offset}}, {group: error text}). Partitions
        without a commit are omitted; a group without any commit maps to {}.
        """
        wanted = list(dict.fromkeys(groups))
        if not wanted:
            return {}, {}
        admin = self._admin_client()
        futures = {}
        for group in wanted:  # list_consumer_group_offsets takes ONE group per call
            self.requests += 1
            futures[group] = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)],
                request_timeout=self._request_timeout(deadline),
                require_stable=False,
            )[group]
        results = self._wait(futures, f"fetching committed offsets of {len(wanted)} group(s)", deadline)
        offsets: dict[str, dict[tuple[str, int], int]] = {}
        errors: dict[str, str] = {}
        failures = []
        for group, result in results.items():
            if isinstance(result, BaseException):
                failures.append(result)
                errors[group] = self._scrub(_describe(result))
                continue
            offsets[group] = {
                (tp.topic, tp.partition): tp.offset
                for tp in result.topic_partitions
                if tp.error is None and tp.offset >= 0
            }
        if any(_code(f) in NOT_CONNECTED for f in failures):
            self._renew_admin(f"{len(failures)} committed-offsets request(s) got no answer")
        if not offsets and _all_unconnected(failures):
            raise self._unavailable(f"fetching committed offsets of {len(wanted)} group(s)", failures[0])
        if offsets:
            self._answered()
        return offsets, errors

    def heads(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> dict[tuple[str, int], int]:
        """High watermarks (read_uncommitted) in ONE batched request; failed partitions omitted."""
        wanted = list(dict.fromkeys((str(t), int(p)) for t, p in partitions))
        if not wanted:
            return {}
        what = f"listing head offsets of {len(wanted)} partition(s)"
        futures = self._issue_list_offsets(wanted, OffsetSpec.latest(), what, deadline)
        results = self._collect_offsets(futures, what, deadline)
        return {tp: r.offset for tp, r in results.items() if not isinstance(r, BaseException)}

    def heads_and_log_starts(
        self, partitions: Iterable[tuple[str, int]], *, deadline: float | None = None
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        """(high watermarks, log start offsets): heads() and a batched ListOffsets for
        OffsetSpec.earliest(), both requests in flight at once; failed partitions omitted
        from each. The heads raise as heads() does; a failed log-start request only leaves
        its dict empty (the heads are what a sample needs)."""
        wanted = list(dict.fromkeys((str(t), int(p)) for t, p in partitions))
        if not wanted:
            return {}, {}
        what = f"listing head offsets of {len(wanted)} partition(s)"
        latest = self._issue_list_offsets(wanted, OffsetSpec.latest(), what, deadline)
        try:
            earliest = self._issue_list_offsets(
                wanted, OffsetSpec.earliest(), "listing log start offsets", deadline
            )
        except KafkaUnavailable as exc:
            self.log.debug("log start offsets not requested: %s", exc)
            earliest = {}
        heads = self._collect_offsets(latest, what, deadline)
        starts = self._wait(earliest, "listing log start offsets", deadline) if earliest else {}
        return (
            {tp: r.offset for tp, r in heads.items() if not isinstance(r, BaseException)},
            {tp: r.offset for tp, r in starts.items() if not isinstance(r, BaseException) and r.offset >= 0},
        )

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as exc:
                self.log.debug("closing the anchor consumer: %s", self._scrub(str(exc)))
        if self._admin is not None:
            self._admin.poll(0)
            self._admin = None

    def __enter__(self) -> KafkaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"client.id": "lagmon"}
        config.update(self._props)
        config["error_cb"] = self._on_error
        config["logger"] = self._rdlog
        return config

    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            raise KafkaUnavailable(f"kafka client for {self._bootstrap} is closed", kind="error")
        return self._admin

    def _on_error(self, err: KafkaError) -> None:
        code = err.code()
        if code in AUTH_CODES:
            self._auth_error = err
        elif code in CONNECT_CODES:
            # Keep the specific cause ("Connection refused") over "1/1 brokers are down".
            if code != KafkaError._ALL_BROKERS_DOWN or self._connect_error is None:
                self._connect_error = err
        if err.fatal():
            self._fatal_error = err
        self._rdlog.logger.debug("error_cb: %s", self._scrub(err.str()))

    def _renew_admin(self, why: str) -> None:
        """Replace the AdminClient. After a broker restart librdkafka (2.16) can leave an admin
        client's group-coordinator requests stuck: every later OffsetFetch times out while
        metadata requests work (compare librdkafka#5511). A new client finds the coordinator."""
        if self._admin is None:
            return
        try:
            admin = AdminClient(self._config())
        except (KafkaException, ValueError, TypeError) as exc:
            self.log.debug(
                "could not renew the kafka admin client (%s): %s", self._scrub(why), self._scrub(str(exc))
            )
            return
        self.log.debug("renewed the kafka admin client: %s", self._scrub(why))
        self._admin = admin

    def _answered(self) -> None:
        """A broker answered: earlier connection and auth failures are over."""
        self._auth_error = None
        self._connect_error = None
        self._rdlog.last_failure = None

    def _check(self, what: str) -> None:
        """Serve callbacks; raise at once on an authentication or fatal error."""
        if self._admin is not None:
            self._admin.poll(0)
        if self._auth_error is not None:
            raise self._auth_failure(what)
        if self._fatal_error is not None:
            raise KafkaUnavailable(
                self._scrub(
                    f"kafka client for {self._bootstrap} failed fatally "
                    f"while {what}: {self._fatal_error.str()}"
                ),
                kind="error",
            )

    def _until(self, deadline: float | None, grace: float = 0.0) -> float:
        """When a wait that starts now ends: after the request timeout (plus grace), or at
        `deadline` (time.monotonic()) if that comes first."""
        own = time.monotonic() + self.timeout + grace
        return own if deadline is None else min(own, deadline)

    def _request_timeout(self, deadline: float | None) -> float:
        """librdkafka's request_timeout for a request sent now: never past `deadline`."""
        return max(MIN_REQUEST_SECONDS, self._until(deadline) - time.monotonic())

    def _wait(
        self, futures: dict[Any, concurrent.futures.Future], what: str, deadline: float | None = None
    ) -> dict[Any, Any]:
        """Wait for all futures while polling, at most the request timeout (plus grace) and never
        past `deadline`; key -> result or exception."""
        deadline = self._until(deadline, GRACE_SECONDS)
        pending = set(futures.values())
        while pending:
            _done, pending = concurrent.futures.wait(pending, timeout=POLL_SLICE)
            self._check(what)
            if pending and time.monotonic() >= deadline:
                break
        timed_out = KafkaException(
            KafkaError(KafkaError._TIMED_OUT, f"no answer within {self.timeout:g} s or the sample's deadline")
        )
        # Never cancel a pending future: confluent-kafka completes it later from its own thread.
        return {key: (f.exception() or f.result()) if f.done() else timed_out for key, f in futures.items()}

    def _issue_list_offsets(
        self, keys: list[tuple[str, int]], spec: OffsetSpec, what: str, deadline: float | None = None
    ) -> dict:
        """One batched ListOffsets request (read_uncommitted); (topic, partition) -> future."""
        admin = self._admin_client()
        self.requests += 1
        request = {TopicPartition(t, p): spec for t, p in keys}
        try:
            futures = admin.list_offsets(
                request,
                isolation_level=IsolationLevel.READ_UNCOMMITTED,
                request_timeout=self._request_timeout(deadline),
            )
        except KafkaException as exc:
            raise self._unavailable(what, exc) from None
        return {(tp.topic, tp.partition): f for tp, f in futures.items()}

    def _collect_offsets(self, futures: dict, what: str, deadline: float | None = None) -> dict:
        """Wait for ListOffsets futures; raise only if every one failed for lack of a connection."""
        results = self._wait(futures, what, deadline)
        failures = [r for r in results.values() if isinstance(r, BaseException)]
        if len(failures) == len(results) and _all_unconnected(failures):
            raise self._unavailable(what, failures[0])
        if len(failures) < len(results):
            self._answered()
        return results

    def _auth_failure(self, what: str) -> KafkaUnavailable:
        text = auth_failure_text(
            self._auth_error, bootstrap=self._bootstrap, props=self._props, what=what, timeout=self.timeout
        )
        return KafkaUnavailable(self._scrub(text), kind="auth")

    def _unavailable(self, what: str, exc: BaseException | None) -> KafkaUnavailable:
        """Classify a failure (after the timeout, or an error the broker returned)."""
        if self._auth_error is not None:
            return self._auth_failure(what)
        code = _code(exc)
        protocol = self.settings.security_protocol
        if self._connect_error is not None or code in CONNECT_CODES:
            cause = self._connect_error.str() if self._connect_error is not None else _describe(exc)
            if (
                self._connect_error is None or self._connect_error.code() == KafkaError._ALL_BROKERS_DOWN
            ) and self._rdlog.last_failure:
                cause = f"{cause}; {self._rdlog.last_failure}"
            cause = _untimed(cause)
            kind, text = (
                "unreachable",
                (
                    f"kafka unreachable at {self._bootstrap} ({protocol}): no answer "
                    f"within {self.timeout:g} s while {what}; last error: {cause}"
                ),
            )
        elif exc is None or code in NOT_CONNECTED:
            kind, text = (
                "timeout",
                (
                    f"kafka at {self._bootstrap} ({protocol}) did not answer within "
                    f"{self.timeout:g} s while {what}"
                ),
            )
        else:
            kind, text = (
                "error",
                f"kafka at {self._bootstrap} ({protocol}) failed while {what}: {_describe(exc)}",
            )
        return KafkaUnavailable(self._scrub(text), kind=kind)

    def _scrub(self, text: str) -> str:
        """text with every configured secret masked and its control characters escaped (a group
        id or topic in it cannot forge a log line): for every message and log line of this module."""
        return _printable(secrets.scrub(text, self._secrets))


def _printable(text: str) -> str:
    """Non-printable characters escaped as repr() does (as lagmon.stages.runtime.printable)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
