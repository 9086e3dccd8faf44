"""Stopping a relay from outside it: the client left (HTTP), or never answered a close frame
(WebSocket)."""

from __future__ import annotations

import asyncio


class Interrupt:
    """Cancels the task that made it (from another task), and tells that cancellation apart
    from anyone else's: `absorbed()` in `except CancelledError` says whether it was ours alone."""

    def __init__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.fired = False

    def fire(self) -> None:
        if not self.fired:
            self.fired = True
            self.task.cancel()

    def absorbed(self) -> bool:
        return self.fired and self.task.uncancel() == 0
