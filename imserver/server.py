"""The server launcher: `python -m imserver.server [daphne's flags] imserver.asgi:application`.

It serves with the ASGI server that the ASGI_SERVER setting names, each with the same flags and the same behaviour
around the application:
- slow WebSocket readers are closed with 4008 once WS_MAX_QUEUED_BYTES of pushes wait for them;
- SIGTERM stops listening, closes WebSockets with 1012, lets the HTTP requests in flight finish (their connections
  close after the response), cancels the send statements still running after WS_SHUTDOWN_GRACE, and exits within
  WS_SHUTDOWN_GRACE + WS_SHUTDOWN_EXIT_MARGIN;
- one JSON access line per HTTP request and per WebSocket event, paths without their query string.

daphne (imserver.server_daphne) is the design's server and what `make run` serves; uvicorn (imserver.server_uvicorn,
with uvloop and httptools) costs less CPU per request and is the production launcher's. What both share is here."""
import ctypes
import logging
import os
import sys
import threading
import time

logger = logging.getLogger("imserver.server")  # not __main__ when run with -m
access_logger = logging.getLogger("imserver.access")

SLOW_READER = 4008  # API.md: the client reads too slowly
RESTARTING = 1012  # API.md: server restarting

# glibc keeps the freed blocks of a dropped backlog in its heap, so the resident memory would stay at its peak;
# handing them back after a slow reader's close costs about 1 ms (8 slow readers: 12.6 MB kept without it, none
# with it). Other C libraries have no malloc_trim.
_malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)


def give_memory_back() -> None:
    if _malloc_trim is not None:
        _malloc_trim(0)


def log_http(method: str, path: str, status: int, seconds: float, size: int, client: str | None) -> None:
    """The access line of one HTTP request; the path loses its query string, which may carry a token."""
    path = path.split("?", 1)[0]
    access_logger.info("%s %s %s", method, path, status, extra={
        "method": method, "path": path, "status": status, "duration_ms": round(seconds * 1000, 1), "size": size,
        "client": client})


def log_websocket(event: str, path: str, client: str | None) -> None:
    """The access line of one WebSocket event: connecting, connected, rejected or disconnected."""
    path = path.split("?", 1)[0]
    access_logger.info("WebSocket %s %s", event, path, extra={
        "method": "WEBSOCKET", "event": event, "path": path, "client": client})


def start_watchdog() -> None:
    """From SIGTERM on, whatever hangs (a request thread waiting for the stopped event loop would keep the
    interpreter from exiting for ever: seen under load), the process leaves at WS_SHUTDOWN_GRACE +
    WS_SHUTDOWN_EXIT_MARGIN."""
    from django.conf import settings

    bound = settings.WS_SHUTDOWN_GRACE + settings.WS_SHUTDOWN_EXIT_MARGIN
    watchdog = threading.Timer(bound, exit_now, kwargs={"code": 1, "bound": bound})
    watchdog.daemon = True
    watchdog.start()


def log_draining(websockets: int, requests: int) -> None:
    logger.info("Shutting down: stopped listening, closing %d WebSocket connections with 1012, finishing %d HTTP "
                "requests", websockets, requests)


async def drain(done, in_flight, sleep) -> None:
    """Wait at most WS_SHUTDOWN_GRACE seconds until `done()`; then the send statements still running in PostgreSQL
    are cancelled, and the requests waiting for them (`in_flight()`) get WS_SHUTDOWN_CANCEL_WAIT seconds to answer their
    503, storing nothing; the rest is cut off. `sleep` is the server's own (Twisted's or asyncio's)."""
    from django.conf import settings

    from imserver import asyncdb

    deadline = time.monotonic() + settings.WS_SHUTDOWN_GRACE
    while time.monotonic() < deadline and not done():
        await sleep(0.05)
    left = in_flight()
    if left:
        logger.warning("Shutting down: %d HTTP requests still running after %.1f s are cancelled", len(left),
                       settings.WS_SHUTDOWN_GRACE)
    if asyncdb.cancel_running():
        deadline = time.monotonic() + settings.WS_SHUTDOWN_CANCEL_WAIT
        while time.monotonic() < deadline and in_flight():
            await sleep(0.02)


def close_pools() -> None:
    """The database pools are per process, not per thread: PostgreSQL sees each connection end cleanly."""
    from django.db import connections

    for connection in connections.all():
        if connection.vendor == "postgresql" and connection.settings_dict["OPTIONS"].get("pool"):
            connection.close_pool()


def exit_now(code: int = 0, bound: float | None = None) -> None:
    """Leave the process without joining its threads: after the drain, a thread still running a request's sync code
    holds nothing that outlives the process (its transaction rolls back, its client retries elsewhere), and the
    event loop's statements still running were cancelled (asyncdb.cancel_running)."""
    if code:
        logger.warning("Shutting down: not stopped within %.1f s; exiting now", bound or 0)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main():
    from django.conf import settings

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imserver.settings")
    if settings.ASGI_SERVER == "uvicorn":
        from imserver import server_uvicorn as engine
    else:
        # Imported before anything else of Twisted: it installs Twisted's asyncio reactor.
        from imserver import server_daphne as engine
    if settings.AI_TASKS_IN_PROCESS:  # the embedded system: no Celery beat sweeps the AI records
        from ai_bridge.inprocess import sweeper_start

        sweeper_start()
    engine.main()


if __name__ == "__main__":
    main()
