"""The portal over time, CI-sized: two minutes of mixed traffic on `uvicorn --workers 2` (see
tests/soak.py; `make soak` runs the same for 30 minutes and keeps the samples)."""

from __future__ import annotations

from pathlib import Path

from .soak import FD_GROWTH, RSS_GROWTH_MIB, soak_portal
from .traffic import report

SECONDS = 120
WARMUP = 40  # the heap fills its arenas and caches: growth before this is not a leak
EVERY = 2


def test_mixed_traffic_for_two_minutes_leaves_memory_and_open_files_flat(tmp_path: Path) -> None:
    """Pages by cookie and token, refusals, sign-ins and sign-outs on fresh connections,
    WebSockets opened, closed, dropped and refused: every answer right, no worker replaced, and
    each worker's RSS (< 15 MiB) and open descriptors (< 20) no higher at the end than after
    warm-up (a leak per request, per connection or per socket would climb past both)."""
    soak = soak_portal(tmp_path, seconds=SECONDS, warmup=WARMUP, every=EVERY)
    print(report("soak", soak.figures()))
    assert soak.events["sign-in and out"] > 0 and soak.events["websocket closed"] > 0, soak.events
    assert soak.events["websocket dropped"] > 0 and soak.events["websocket refused"] > 0
    assert soak.problems() == [], (soak.problems(), RSS_GROWTH_MIB, FD_GROWTH, soak.figures())
