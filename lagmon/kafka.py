"""Kafka access for lagmon: the ONLY module that imports confluent_kafka.

One AdminClient answers everything a sample needs (topics, groups, committed offsets,
head offsets); a Consumer is created lazily, only to read one message's timestamp
(`message_time`), with assign() and no commits, so it never forms a visible group.

Failures surface as KafkaUnavailable with a `kind`:
    "auth"         credentials or TLS rejected: raised as soon as librdkafka reports it
                   (the admin client is polled while waiting, so error_cb sees it),
                   not after the request timeout;
    "unreachable"  no connection within request_timeout_seconds (the last connection error
                   is named);
    "timeout"      connected, but no answer within request_timeout_seconds;
    "error"        anything else (bad client configuration, unexpected broker error).
Messages name the bootstrap servers (and for "auth" the security protocol and SASL
mechanism), never a password: every configured secret is masked in them.

librdkafka's own log lines go to `<logger>.librdkafka` at DEBUG, never to stderr.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import os
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

if TYPE_CHECKING:
    from lagmon.config import KafkaSettings

__all__ = ["ANCHOR_GROUP_ID", "KafkaClient", "KafkaUnavailable", "client_properties"]

KINDS = ("unreachable", "auth", "timeout", "error")
# The message_time consumer needs a group.id (confluent-kafka refuses a Consumer without one)
# but it only assign()s and never commits, so no group of this name appears on the broker.
ANCHOR_GROUP_ID = "lagmon-anchor-reader"
MASK = "********"
GRACE_SECONDS = 1.0  # our wait beyond librdkafka's own request timeout
POLL_SLICE = 0.05  # how often the admin client is polled while futures are pending

_AUTH_CODES = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL}
_CONNECT_CODES = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
_NOT_CONNECTED = _CONNECT_CODES | {
    KafkaError._TIMED_OUT,
    KafkaError._TIMED_OUT_QUEUE,
    KafkaError._WAIT_COORD,
    KafkaError.REQUEST_TIMED_OUT,
}


class KafkaUnavailable(Exception):
    """Kafka could not answer. `.kind` is one of KINDS; the message never holds a password."""

    def __init__(self, message: str, *, kind: str = "error"):
        if kind not in KINDS:
            raise ValueError(f"KafkaUnavailable kind must be one of {KINDS} (got {kind!r})")
        super().__init__(message)
        self.kind = kind


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


def _secrets(props: dict[str, str]) -> list[str]:
    found = [v for key, v in props.items() if v and ("password" in key.lower() or "secret" in key.lower())]
    return sorted(set(found), key=len, reverse=True)


class _LibrdkafkaLog:
    """`logger=` target for librdkafka: forwards at DEBUG, keeps the last connection failure."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self.last_failure: str | None = None  # newest connection FAIL line, e.g. "Disconnected..."

    def log(self, level: int, msg: str, *args: Any) -> None:
        text = msg % args if args else msg
        if text.startswith("FAIL ") and "]: " in text:
            self.last_failure = text.split("]: ", 1)[1]
        self.logger.debug("%s", text)


class KafkaClient:
    """All broker requests lagmon makes. Not thread-safe: one client per stage."""

    def __init__(self, k: KafkaSettings, *, logger: logging.Logger | None = None):
        self.settings = k
        self.log = logger or logging.getLogger("lagmon.kafka")
        self.timeout = float(k.request_timeout_seconds)
        self.requests = 0
        self._props = client_properties(k)
        secrets = _secrets(self._props)
        # Mask secrets where they stand as a token, so a short password cannot garble a word.
        self._secret_re = (
            re.compile("|".join(rf"(?<![A-Za-z0-9]){re.escape(x)}(?![A-Za-z0-9])" for x in secrets))
            if secrets
            else None
        )
        self._bootstrap = k.bootstrap_servers
        self._rdlog = _LibrdkafkaLog(self.log.getChild("librdkafka"))
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

    def topics(self) -> dict[str, int]:
        """topic -> partition count, for every topic listed without an error."""
        admin = self._admin_client()
        what = "listing topics"
        deadline = time.monotonic() + self.timeout
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
                if _code(exc) not in _NOT_CONNECTED:
                    raise self._unavailable(what, exc) from None
            slice_ = min(slice_ * 2, 5.0)
            admin.poll(max(0.0, min(0.1 - (time.monotonic() - started), deadline - time.monotonic())))
        self._answered()
        return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}

    def groups(self) -> tuple[set[str], bool]:
        """(group ids, complete). complete is False when some broker did not answer."""
        admin = self._admin_client()
        self.requests += 1
        future = admin.list_consumer_groups(request_timeout=self.timeout)
        result = self._wait({"groups": future}, "listing consumer groups")["groups"]
        if isinstance(result, BaseException):
            raise self._unavailable("listing consumer groups", result)
        failures = [KafkaException(e) if isinstance(e, KafkaError) else e for e in result.errors]
        if not result.valid and _all_unconnected(failures):
            # No broker answered (ListGroups asks each one): not "no groups".
            raise self._unavailable("listing consumer groups", failures[0])
        self._answered()
        return {g.group_id for g in result.valid}, not result.errors

    def committed(
        self, groups: Iterable[str]
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
                [ConsumerGroupTopicPartitions(group)], request_timeout=self.timeout, require_stable=False
            )[group]
        results = self._wait(futures, f"fetching committed offsets of {len(wanted)} group(s)")
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
        if any(_code(f) in _NOT_CONNECTED for f in failures):
            self._renew_admin(f"{len(failures)} committed-offsets request(s) got no answer")
        if not offsets and _all_unconnected(failures):
            raise self._unavailable(f"fetching committed offsets of {len(wanted)} group(s)", failures[0])
        if offsets:
            self._answered()
        return offsets, errors

    def heads(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """High watermarks (read_uncommitted) in ONE batched request; failed partitions omitted."""
        wanted = list(dict.fromkeys((str(t), int(p)) for t, p in partitions))
        if not wanted:
            return {}
        what = f"listing head offsets of {len(wanted)} partition(s)"
        results = self._collect_offsets(self._issue_list_offsets(wanted, OffsetSpec.latest(), what), what)
        return {tp: r.offset for tp, r in results.items() if not isinstance(r, BaseException)}

    def message_time(self, topic: str, partition: int, offset: int) -> tuple[int, float] | None:
        """(offset read, its timestamp in epoch seconds) of the message at `offset`, or of the
        next available one when `offset` is below the log start; None when the partition has
        no message at or after `offset` (or the message carries no timestamp)."""
        key = (str(topic), int(partition), int(offset))
        return self.message_times([key]).get(key)

    def message_times(
        self, wanted: Iterable[tuple[str, int, int]], *, budget: float | None = None
    ) -> dict[tuple[str, int, int], tuple[int, float] | None]:
        """message_time for many (topic, partition, offset) at once: one batched look-up of the
        log bounds, then every partition assigned together, so the fetches go out per broker in
        parallel. A partition asked for several offsets takes one round per offset. Keys not
        answered within `budget` seconds (default: the request timeout) are left out."""
        keys = sorted({(str(t), int(p), int(o)) for t, p, o in wanted})
        if not keys:
            return {}
        deadline = time.monotonic() + (self.timeout if budget is None else budget)
        parts = sorted({(t, p) for t, p, _ in keys})
        what = f"reading message timestamps on {len(parts)} partitions"
        earliest = self._collect_offsets(self._issue_list_offsets(parts, OffsetSpec.earliest(), what), what)
        latest = self._collect_offsets(self._issue_list_offsets(parts, OffsetSpec.latest(), what), what)
        result: dict[tuple[str, int, int], tuple[int, float] | None] = {}
        pending: dict[tuple[str, int], list[tuple[int, int]]] = {}  # partition -> [(start, offset asked)]
        for t, p, o in keys:
            lo, hi = earliest.get((t, p)), latest.get((t, p))
            if isinstance(lo, BaseException) or isinstance(hi, BaseException) or lo is None or hi is None:
                result[(t, p, o)] = None  # e.g. the topic or partition no longer exists
                continue
            begin = max(o, lo.offset)
            if begin >= hi.offset:
                result[(t, p, o)] = None
            else:
                pending.setdefault((t, p), []).append((begin, o))
        consumer = self._anchor_consumer()
        while pending and time.monotonic() < deadline:
            round_ = {tp: starts.pop(0) for tp, starts in pending.items()}
            pending = {tp: starts for tp, starts in pending.items() if starts}
            self.requests += 1
            consumer.assign([TopicPartition(t, p, begin) for (t, p), (begin, _o) in round_.items()])
            try:
                for tp, found in self._read_many(consumer, round_, deadline, what).items():
                    result[(tp[0], tp[1], round_[tp][1])] = found
            finally:
                consumer.unassign()
        return result

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as exc:
                self.log.debug("closing the anchor consumer: %s", exc)
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

    def _anchor_consumer(self) -> Consumer:
        if self._consumer is None:
            config = self._config()
            config.update(
                {
                    "group.id": ANCHOR_GROUP_ID,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_uncommitted",
                    "fetch.wait.max.ms": 10,  # short: a pending long-poll fetch delays the next assign()
                    "max.partition.fetch.bytes": 4096,  # one message is wanted; a bigger one still comes
                    "queued.max.messages.kbytes": 1024,
                }
            )
            try:
                self._consumer = Consumer(config)
            except (KafkaException, ValueError, TypeError) as exc:
                raise KafkaUnavailable(
                    self._scrub(f"kafka consumer for {self._bootstrap} could not be created: {exc}"),
                    kind="error",
                ) from None
        return self._consumer

    def _on_error(self, err: KafkaError) -> None:
        code = err.code()
        if code in _AUTH_CODES:
            self._auth_error = err
        elif code in _CONNECT_CODES:
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
            self.log.debug("could not renew the kafka admin client (%s): %s", why, self._scrub(str(exc)))
            return
        self.log.debug("renewed the kafka admin client: %s", why)
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

    def _wait(self, futures: dict[Any, concurrent.futures.Future], what: str) -> dict[Any, Any]:
        """Wait for all futures while polling; key -> result or exception."""
        deadline = time.monotonic() + self.timeout + GRACE_SECONDS
        pending = set(futures.values())
        while pending:
            _done, pending = concurrent.futures.wait(pending, timeout=POLL_SLICE)
            self._check(what)
            if pending and time.monotonic() >= deadline:
                break
        timed_out = KafkaException(KafkaError(KafkaError._TIMED_OUT, f"no answer within {self.timeout:g} s"))
        # Never cancel a pending future: confluent-kafka completes it later from its own thread.
        return {key: (f.exception() or f.result()) if f.done() else timed_out for key, f in futures.items()}

    def _issue_list_offsets(self, keys: list[tuple[str, int]], spec: OffsetSpec, what: str) -> dict:
        """One batched ListOffsets request (read_uncommitted); (topic, partition) -> future."""
        admin = self._admin_client()
        self.requests += 1
        request = {TopicPartition(t, p): spec for t, p in keys}
        try:
            futures = admin.list_offsets(
                request, isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=self.timeout
            )
        except KafkaException as exc:
            raise self._unavailable(what, exc) from None
        return {(tp.topic, tp.partition): f for tp, f in futures.items()}

    def _collect_offsets(self, futures: dict, what: str) -> dict:
        """Wait for ListOffsets futures; raise only if every one failed for lack of a connection."""
        results = self._wait(futures, what)
        failures = [r for r in results.values() if isinstance(r, BaseException)]
        if len(failures) == len(results) and _all_unconnected(failures):
            raise self._unavailable(what, failures[0])
        if len(failures) < len(results):
            self._answered()
        return results

    def _read_many(self, consumer: Consumer, starts: dict, deadline: float, what: str) -> dict:
        """The first message at or after each partition's start: {(topic, partition): (offset, ts) | None}."""
        found: dict[tuple[str, int], tuple[int, float] | None] = {}
        while len(found) < len(starts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if not found:
                    raise self._unavailable(what, None)
                return found
            for msg in consumer.consume(num_messages=max(1, len(starts)), timeout=min(0.2, remaining)):
                if self._auth_error is not None:
                    raise self._auth_failure(what)
                key = (msg.topic(), msg.partition())
                if key not in starts or key in found:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        found[key] = None  # only control records (transaction markers) were left
                    elif err.code() not in _NOT_CONNECTED:
                        raise KafkaUnavailable(
                            self._scrub(f"kafka at {self._bootstrap}: {what} failed: {err.str()}"),
                            kind="error",
                        )
                    continue
                if msg.offset() < starts[key][0]:
                    continue
                self._answered()
                ts_type, ts_ms = msg.timestamp()
                ok = ts_type != TIMESTAMP_NOT_AVAILABLE and ts_ms >= 0
                found[key] = (msg.offset(), ts_ms / 1000.0) if ok else None
            if self._auth_error is not None:
                raise self._auth_failure(what)
        return found

    def _auth_failure(self, what: str) -> KafkaUnavailable:
        k = self.settings
        user = f", user {k.sasl_username!r}" if k.sasl_username else ""
        cause = _untimed(self._auth_error.str()) if self._auth_error is not None else "rejected"
        return KafkaUnavailable(
            self._scrub(
                f"kafka authentication failed at {self._bootstrap} (security.protocol {k.security_protocol}, "
                f"sasl.mechanism {k.sasl_mechanism or 'none'}{user}) while {what}: {cause}"
            ),
            kind="auth",
        )

    def _unavailable(self, what: str, exc: BaseException | None) -> KafkaUnavailable:
        """Classify a failure (after the timeout, or an error the broker returned)."""
        if self._auth_error is not None:
            return self._auth_failure(what)
        code = _code(exc)
        protocol = self.settings.security_protocol
        if self._connect_error is not None or code in _CONNECT_CODES:
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
        elif exc is None or code in _NOT_CONNECTED:
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
        return self._secret_re.sub(MASK, text) if self._secret_re is not None else text


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
    return bool(failures) and all(_code(f) in _NOT_CONNECTED for f in failures)


# librdkafka ends connection errors with e.g. "(after 304ms in state AUTH_REQ, 2 identical error(s)
# suppressed)": timings that differ on every retry would make one outage look like many.
_TIMING_RE = re.compile(r" \(after \d+ms in state [A-Z_]+(?:, \d+ identical error\(s\) suppressed)?\)")


def _untimed(text: str) -> str:
    return _TIMING_RE.sub("", text)


# ---------------------------------------------------------------------- crash isolation


def _committed_worker(settings: KafkaSettings, conn) -> None:
    """Child process: answers committed() requests from the sampler over a pipe, until the
    pipe closes (the parent closed it or died). SIGINT (Ctrl-C reaches the whole process
    group) is ignored; SIGTERM ends it, as multiprocessing does at the parent's exit."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # stderr is the sampler's (supervisord's per-stage log): same shape as the stage's lines.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if os.environ.get("LAGMON_TEST_CRASH_COMMITTED"):  # test hook: crash like librdkafka#5040
        os.kill(os.getpid(), signal.SIGSEGV)
    client = KafkaClient(settings, logger=logging.getLogger("lagmon.sampler.offsets"))
    while True:
        try:
            groups = conn.recv()
        except (EOFError, OSError):
            break
        before = client.requests
        try:
            offsets, errors = client.committed(groups)
            conn.send(("ok", offsets, errors, client.requests - before))
        except KafkaUnavailable as exc:
            conn.send(("unavailable", str(exc), exc.kind, client.requests - before))
    client.close()


class IsolatedKafkaClient(KafkaClient):
    """KafkaClient whose committed() runs in a long-lived child process.

    librdkafka (2.16 and earlier, librdkafka#5040) can crash the whole process with SIGSEGV
    when OffsetFetch gets NOT_COORDINATOR, as when a group coordinator moves during a broker
    restart. In the child such a crash costs one sample (reported as an error, logged once
    per outage); the child is started again for the next sample. The sampler stays up."""

    def __init__(self, k: KafkaSettings, *, logger: logging.Logger | None = None):
        super().__init__(k, logger=logger)
        self._worker = None
        self._conn = None

    def _start_worker(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._worker = ctx.Process(
            target=_committed_worker, args=(self.settings, child), name="lagmon-offsets", daemon=True
        )
        self._worker.start()
        child.close()
        self._conn = parent
        # At exit multiprocessing SIGTERMs daemonic children and joins them, but the worker
        # ignores SIGTERM: stop it first (atexit runs the last registered handler first).
        atexit.unregister(self._stop_worker)
        atexit.register(self._stop_worker)

    def _stop_worker(self) -> int | None:
        worker, conn = self._worker, self._conn
        self._worker = self._conn = None
        if conn is not None:
            conn.close()
        if worker is None:
            return None
        worker.join(2)
        if worker.is_alive():
            worker.kill()
            worker.join(2)
        return worker.exitcode

    def committed(
        self, groups: Iterable[str]
    ) -> tuple[dict[str, dict[tuple[str, int], int]], dict[str, str]]:
        wanted = list(dict.fromkeys(groups))
        if not wanted:
            return {}, {}
        what = f"fetching committed offsets of {len(wanted)} group(s)"
        if self._worker is None or not self._worker.is_alive():
            self._start_worker()
        try:
            self._conn.send(wanted)
            # The child waits at most the request timeout per request burst; allow for its start.
            if not self._conn.poll(self.timeout + 30):
                self._stop_worker()
                raise KafkaUnavailable(f"kafka at {self._bootstrap}: {what} timed out", kind="timeout")
            answer = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            code = self._stop_worker()
            how = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
            if code == -15:
                raise KafkaUnavailable(
                    f"kafka at {self._bootstrap}: {what}: interrupted (the client "
                    "process was stopped by SIGTERM)",
                    kind="error",
                ) from None
            raise KafkaUnavailable(
                f"kafka at {self._bootstrap}: {what}: the client process crashed ({how}); a known "
                "librdkafka crash when a group coordinator moves (librdkafka#5040); retrying",
                kind="error",
            ) from None
        self.requests += answer[-1]
        if answer[0] == "ok":
            return answer[1], answer[2]
        raise KafkaUnavailable(answer[1], kind=answer[2])

    def close(self) -> None:
        self._stop_worker()
        super().close()
