from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import LEVELS, RunningPortal, serve

MARIADB_URL = os.environ.get("PORTAL_TEST_MARIADB", "mysql+asyncmy://root@127.0.0.1:3306/test")


@pytest.fixture(scope="session")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPortal]:
    """One portal for the read-only tests, with a user at every level."""
    with serve(tmp_path_factory.mktemp("portal")) as running:
        for level in LEVELS:
            running.add_user(f"user-{level}", level, email=f"{level}@example.org")
        running.wait_until(
            lambda: all(
                running.portal.runtime is not None
                and running.portal.runtime.directory.user(f"user-{level}") is not None
                for level in LEVELS
            )
        )
        yield running


@pytest.fixture
def fresh_portal(tmp_path: Path) -> Iterator[RunningPortal]:
    """A portal of its own, for tests that change users, sessions or levels."""
    with serve(tmp_path) as running:
        yield running
