"""Waiting on what a test can observe, and showing that something did not happen.

Absence cannot be observed, only bounded: wait for the last thing that should happen, then watch for a short,
named grace period during which whatever must not happen would have shown up, failing at the moment it does."""
import asyncio
import inspect
import time

ABSENCE_GRACE = 0.5  # seconds: in-process work (a thread-pool AI task, a push) that was wrongly started shows by then
LIVE_ABSENCE_GRACE = 1.0  # seconds: the same across real processes (a worker's task, a push through Redis)
POLL = 0.05


def wait_for(predicate, timeout: float = 10.0):
    """The first truthy value of `predicate()` within `timeout` seconds, else AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(POLL)
    raise AssertionError("condition not met in time")


async def wait_for_async(predicate, timeout: float = 10.0):
    """`wait_for` for a scenario's event loop, the loop running meanwhile; `predicate()` may be awaitable."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(POLL / 2)
    raise AssertionError("condition not met in time")


def assert_stays(predicate, grace: float = ABSENCE_GRACE, what: str = "condition") -> None:
    """`predicate()` holds throughout `grace` seconds; fails as soon as it does not."""
    deadline = time.monotonic() + grace
    while True:
        assert predicate(), f"{what} stopped holding"
        if time.monotonic() >= deadline:
            return
        time.sleep(POLL)


async def assert_stays_async(predicate, grace: float = LIVE_ABSENCE_GRACE, what: str = "condition") -> None:
    """`assert_stays` for a scenario's event loop: the loop (and the clients' readers) keeps running."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while True:
        assert predicate(), f"{what} stopped holding"
        if loop.time() >= deadline:
            return
        await asyncio.sleep(POLL / 2)


async def assert_nothing_arrives(*clients, match=lambda frame: True, grace: float = LIVE_ABSENCE_GRACE) -> None:
    """None of the live clients (tests.support.wsclient.Client) receives another frame that `match`es within `grace`
    seconds from now; fails at the first one."""
    marks = [len(client.frames) for client in clients]

    def quiet():
        stray = [(c.name, f) for c, mark in zip(clients, marks) for f in c.frames[mark:] if match(f)]
        assert not stray, f"unexpected frames {stray}"
        return True

    await assert_stays_async(quiet, grace, "silence")
