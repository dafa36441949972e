"""Waiting for a condition in tests: poll until true or fail naming what never happened."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout: float, what: str, *, interval: float = 0.05
) -> None:
    """Await `condition()` every `interval` seconds until it is true; AssertionError after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
