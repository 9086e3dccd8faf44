"""The portal's Prometheus metrics (the list, with types and labels: docs/operations.md).

A request costs a dictionary update, not a call into prometheus_client: `observe.py` counts each
answer into plain dictionaries here, and `flush()` hands the sums over once a second (and before
a scrape on the public listener). Events that are rare by nature (sign-ins, database errors) go
straight to their counters.

With several workers, prometheus_client's multiprocess mode adds up every worker's numbers: when
`PROMETHEUS_MULTIPROC_DIR` names a directory (set by whoever starts uvicorn, and emptied by it
before each start: the portal cannot know whether it is the first worker), each worker writes
its numbers there and a scrape, whichever worker answers it, reads them all. Without it each
worker counts for itself alone, which is right for one worker only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from .db.engine import Database
from .db.models import Session, utcnow
from .exceptions import DatabaseUnavailable
from .settings import MetricsSettings

if TYPE_CHECKING:
    from .directory import Directory
    from .sockets import SocketRegistry

logger = logging.getLogger("portal_asgi.metrics")

# Read when prometheus_client chose its mode (at its import, just above), not later: a variable
# set afterwards would not change how values are stored.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None

FLUSH_EVERY = 1.0  # seconds between hand-overs of the per-request counts
SESSIONS_EVERY = 60.0  # seconds between counts of open sessions when nothing signed in or out
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))
LAG = "portal_feed_lag_seconds"
LAST_POLL = "portal_feed_last_poll_timestamp_seconds"


class _Histogram(Histogram):
    """A Histogram that takes a second's observations at once. prometheus_client has no public
    call for it (its maintainers point to custom collectors, which multiprocess mode cannot add
    up), so this adds to the sum and bucket values `observe()` itself adds to;
    tests/test_metrics.py checks it against `observe()`."""

    def add(self, total: float, counts: list[int]) -> None:
        self._sum.inc(total)
        for bucket, count in zip(self._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


class Tally:
    """One (mount, method, status)'s requests since the last flush: how many, and for HTTP the
    sum of their durations and a count per bucket (bucket i: at most BUCKETS[i])."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * len(BUCKETS)


class Metrics:
    """This worker's metrics (one per Runtime: no module-level registry)."""

    def __init__(self, settings: MetricsSettings, *, multiprocess_dir: str | None = None) -> None:
        self.settings = settings
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None:
            os.makedirs(multiprocess_dir, exist_ok=True)  # created, never emptied: see above
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._requests = Counter(
            "portal_requests",
            "Requests answered, by mount, method and status.",
            ("mount", "method", "status"),
            registry=registry,
        )
        self._durations = _Histogram(
            "portal_request_duration_seconds",
            "Time from the request's arrival to the end of its answer, by mount (HTTP only).",
            ("mount",),
            buckets=BUCKETS,
            registry=registry,
        )
        self._refusals = Counter(
            "portal_refusals",
            "The portal's own refusals, by reason: the status, or the event that refused.",
            ("reason",),
            registry=registry,
        )
        self._logins = Counter(
            "portal_logins",
            "Sign-ins by provider and outcome.",
            ("provider", "outcome"),
            registry=registry,
        )
        self._database_errors = Counter(
            "portal_database_errors",
            "Times the database did not answer, by where the portal noticed.",
            ("where",),
            registry=registry,
        )
        self._upstream_errors = Counter(
            "portal_upstream_errors",
            "Upstream mounts that failed to answer, by mount and reason (refused, timeout, broken).",
            ("mount", "reason"),
            registry=registry,
        )
        self._websockets = Gauge(
            "portal_websockets_open",
            "Open WebSockets, by mount.",
            ("mount",),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self._sessions = Gauge(
            "portal_sessions_active",
            "Browser sessions neither revoked nor past their lifetime, counted in the database.",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self._last_poll = Gauge(
            LAST_POLL,
            "When the change feed last polled the database successfully (the oldest worker's).",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self._started = time.time()
        self._last_poll.set(self._started)  # until the first poll: the lag since this start
        # Filled per request by observe.py; handed over by flush().
        self.tallies: dict[tuple[str, str, int], Tally] = {}
        self.refusals: dict[str, int] = {}
        # what was last written to the gauges and counters fed by other objects' state
        self._open: dict[str, int] = {}
        self._polled: float | None = None
        self._feed_failures = 0
        self._sessions_due = 0.0  # time.monotonic() of the next count of open sessions
        self._directory_version = -1
        source: Collector = (
            self.registry
            if multiprocess_dir is None
            else MultiProcessCollector(None, multiprocess_dir)  # type: ignore[no-untyped-call]
        )
        self.exposition = CollectorRegistry(auto_describe=False)
        self.exposition.register(_WithLag(source))

    # Rare events, counted at once.

    def login(self, provider: str, outcome: str) -> None:
        """A sign-in's outcome: success, failed, banned, busy, unavailable."""
        self._logins.labels(provider, outcome).inc()
        if outcome == "success":
            self._sessions_due = 0.0  # count again at the next flush

    def database_error(self, where: str) -> None:
        self._database_errors.labels(where).inc()

    def upstream_error(self, mount: str, reason: str) -> None:
        """An upstream mount's failure (upstream/): `refused` (no connection: 502), `timeout`
        (504), `broken` (an answer that is not HTTP, or cut short: 502)."""
        self._upstream_errors.labels(mount, reason).inc()

    # The hand-over.

    def flush(self) -> None:
        """Hand the per-request counts over to prometheus_client."""
        tallies, self.tallies = self.tallies, {}
        refusals, self.refusals = self.refusals, {}
        durations: dict[str, Tally] = {}
        for (mount, method, status), tally in tallies.items():
            self._requests.labels(mount, method, str(status)).inc(tally.count)
            if method != "WEBSOCKET":  # a socket's lifetime is no request's duration
                into = durations.setdefault(mount, Tally())
                into.total += tally.total
                into.buckets = [a + b for a, b in zip(into.buckets, tally.buckets, strict=True)]
        for mount, tally in durations.items():
            self._durations.labels(mount).add(tally.total, tally.buckets)
        for reason, count in refusals.items():
            self._refusals.labels(reason).inc(count)

    def update(self, directory: Directory, sockets: SocketRegistry) -> None:
        """The gauges and counters that follow other parts' state: open sockets, the feed."""
        flush_open: dict[str, int] = dict.fromkeys(self._open, 0)
        for socket in sockets.sockets:
            if socket.code is None:
                flush_open[socket.mount] = flush_open.get(socket.mount, 0) + 1
        for mount, count in flush_open.items():
            if self._open.get(mount) != count:
                self._websockets.labels(mount).set(count)
        self._open = {mount: count for mount, count in flush_open.items() if count}
        if directory.last_poll is not None and directory.last_poll != self._polled:
            self._polled = directory.last_poll
            # monotonic (the feed's clock) to wall time, which a scrape compares across workers
            self._last_poll.set(time.time() - (time.monotonic() - directory.last_poll))
        failures = directory.failures - self._feed_failures
        if failures:
            self._feed_failures = directory.failures
            self._database_errors.labels("feed").inc(failures)

    def sessions_due(self, directory: Directory) -> bool:
        """Whether to count open sessions now: a sign-in here, a change in the feed (logouts,
        revocations), or a while since the last count (sessions reaching their end)."""
        return directory.loaded and (
            directory.version != self._directory_version or time.monotonic() >= self._sessions_due
        )

    async def count_sessions(self, db: Database, directory: Directory) -> None:
        self._directory_version = directory.version
        self._sessions_due = time.monotonic() + SESSIONS_EVERY
        try:
            self._sessions.set(await open_sessions(db))
        except (DatabaseUnavailable, SQLAlchemyError) as exc:
            self.database_error("metrics")
            logger.debug("open sessions not counted: %s", exc)

    # Scrapes.

    def scrape(self, accept: str = "") -> tuple[bytes, str]:
        """What a scrape answers (every worker's numbers in multiprocess mode), in the format
        its Accept asks for (Prometheus text, or OpenMetrics), and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.exposition), content_type

    async def run(
        self, db: Database, directory: Directory, sockets: SocketRegistry, stopping: asyncio.Event
    ) -> None:
        """Until `stopping`: never cancelled in the middle of a query, where the connection pool
        would log the interrupted rollback as an error."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), FLUSH_EVERY)
            try:
                self.flush()
                self.update(directory, sockets)
                if self.sessions_due(directory) and not stopping.is_set():
                    await self.count_sessions(db, directory)
            except Exception:  # a bug here must not end the hand-over for good
                logger.exception("metrics: hand-over failed")

    @contextlib.asynccontextmanager
    async def running(
        self, db: Database, directory: Directory, sockets: SocketRegistry
    ) -> AsyncIterator[None]:
        """Hand over once a second; listen on `[metrics] port` when set. At the end, the last
        counts are handed over and this worker's live gauges withdrawn."""
        if multiple_workers_without_directory():
            logger.warning(
                "metrics: PROMETHEUS_MULTIPROC_DIR is not set, so each worker's /metrics counts "
                "that worker alone (docs/operations.md)"
            )
        listener = self._listen()
        stopping = asyncio.Event()
        task = asyncio.create_task(
            self.run(db, directory, sockets, stopping), name="portal-asgi metrics"
        )
        try:
            yield
        finally:
            stopping.set()
            await task
            self.flush()
            if listener is not None:
                listener.shutdown()
                listener.server_close()
            if self.multiprocess_dir is not None:
                # its counters stay (they are totals); its gauges no longer describe anything
                mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def _listen(self) -> WSGIServer | None:
        port = self.settings.port
        if port is None:
            return None
        try:
            server, _thread = start_http_server(port, self.settings.host, self.exposition)
        except OSError as exc:
            # With several workers one binds it, and answers for all of them (multiprocess mode).
            worker = multiprocessing.parent_process() is not None
            (logger.info if worker else logger.warning)(
                "metrics: not listening on %s:%d (%s)%s",
                self.settings.host,
                port,
                exc.strerror or exc,
                "; another worker may have it" if worker else "",
            )
            return None
        logger.info("metrics: listening on %s:%d", self.settings.host, port)
        return server


async def open_sessions(db: Database, now: dt.datetime | None = None) -> int:
    """Browser sessions neither revoked nor past their lifetime (API tokens are not sessions)."""
    async with db.session() as session:
        query = select(func.count()).select_from(Session)
        query = query.where(
            Session.kind == "browser",
            Session.revoked_at.is_(None),
            Session.expires_at > (now or utcnow()),
        )
        return int(await session.scalar(query) or 0)


class _WithLag:
    """The metrics as they are, plus `portal_feed_lag_seconds`: seconds since the oldest last
    good poll of the change feed among the workers, computed at scrape time."""

    def __init__(self, source: Collector) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        last: float | None = None
        for family in self.source.collect():
            if family.name == LAST_POLL:
                last = min((s.value for s in family.samples), default=None)
            yield family
        yield from _lag(last)


def _lag(last: float | None) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        LAG, "Seconds since the change feed's last good poll (the most behind worker's)."
    )
    if last is not None:
        family.add_metric([], max(0.0, time.time() - last))
    yield family


def multiple_workers_without_directory() -> bool:
    """A uvicorn worker among several (a child of its supervisor) with no shared directory:
    each worker's /metrics would count itself alone."""
    return MULTIPROCESS_DIR is None and multiprocessing.parent_process() is not None
