"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile).

A hash costs a few hundred milliseconds of CPU. The server never runs one on its event loop:
`hash_in_thread` and `verify_in_thread` run it in a thread (argon2 releases the GIL). A worker's
`Hashing` has threads of its own, at a lower CPU priority than the event loop, bounds how many
hashes run at once and how many logins may wait for one, so that a flood of logins answers 503 at
once instead of queueing without end. `hash_password` and `verify_password` are the plain
blocking calls, for the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .exceptions import PortalError

_hasher = PasswordHasher()

THREAD_NAME = "portal-asgi hashing"
HASHING_NICENESS = 5  # added to a hashing thread's nice value (Linux)


class HashingBusy(PortalError):
    """As many password checks as the worker allows are running or waiting: try again shortly."""


@functools.cache
def _dummy_hash() -> str:
    """Verified when the username is unknown, so both cases take the same time (no user
    enumeration). Made on first use: hashing costs as much as a login, not worth paying at import."""
    return _hasher.hash("portal-asgi: no such user")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return (
            _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def _behind_the_event_loop() -> None:
    """Each hashing thread runs at a lower CPU priority than the thread serving requests: when
    hashes take every core, the logins wait, not the worker's other pages. Only on Linux, where a
    thread has a priority of its own (elsewhere this would lower the whole process)."""
    if sys.platform == "linux":
        thread = threading.get_native_id()
        with contextlib.suppress(OSError):
            nice = os.getpriority(os.PRIO_PROCESS, thread)
            os.setpriority(os.PRIO_PROCESS, thread, min(19, nice + HASHING_NICENESS))


class Hashing:
    """One worker's password hashing: at most `at_once` hashes at the same time, in threads of
    its own, and at most `waiting` more logins waiting for one; `admit()` refuses the next at
    once."""

    def __init__(self, *, at_once: int, waiting: int) -> None:
        self.capacity = at_once + waiting
        self.admitted = 0
        self.pool = ThreadPoolExecutor(
            at_once, thread_name_prefix=THREAD_NAME, initializer=_behind_the_event_loop
        )

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place for one login's password check; HashingBusy when none is free. Checked
        and taken without an await in between, so the event loop cannot let two tasks take the
        last place."""
        if self.admitted >= self.capacity:
            raise HashingBusy(f"{self.admitted} password checks running or waiting")
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self.pool, hash_password, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, verify_password, password_hash, password)


async def hash_in_thread(password: str, hashing: Hashing | None = None) -> str:
    """`hash_password` off the event loop: in `hashing`'s threads when given."""
    if hashing is not None:
        return await hashing.hash(password)
    return await asyncio.to_thread(hash_password, password)


async def verify_in_thread(
    password_hash: str | None, password: str, hashing: Hashing | None = None
) -> bool:
    """`verify_password` off the event loop: in `hashing`'s threads when given. An unknown user
    (`password_hash` None) takes this same path, through the dummy hash."""
    if hashing is not None:
        return await hashing.verify(password_hash, password)
    return await asyncio.to_thread(verify_password, password_hash, password)
