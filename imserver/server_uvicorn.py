"""The uvicorn engine of the server launcher (imserver/server.py, ASGI_SERVER=uvicorn): uvicorn on uvloop, with
httptools for HTTP and websockets' sans-I/O protocol for WebSockets, taking daphne's flags and behaving as the daphne
engine does: slow WebSocket readers closed with 4008, server pings, a graceful SIGTERM (1012 closes, in-flight
requests finished, an exit within WS_SHUTDOWN_GRACE + WS_SHUTDOWN_EXIT_MARGIN) and the JSON access log.

Every override of uvicorn internals lives here; tests/deploy/test_server_overrides.py fails when an upgrade changes
what they touch."""
import argparse
import asyncio
import logging
import time

import uvicorn
from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from imserver import server as launcher


class FlowControlledWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, with what daphne's engine adds to autobahn's:

    - a client that reads too slowly is closed with 4008 once more than WS_MAX_QUEUED_BYTES wait in the transport
      for it (uvicorn's writes never wait: without this, every push to a client that never reads stays in memory for
      as long as it stays connected), and dropped if it has not taken the close frame WS_CLOSE_TIMEOUT later;
    - a ping every --ping-interval seconds, and a client silent for --ping-timeout seconds after one is dropped
      (uvicorn's sans-I/O protocol sends none);
    - sends and closes from the application once the connection is closing are dropped, as daphne drops them:
      uvicorn would raise into the consumer, which then never gets its websocket.disconnect;
    - SIGTERM's 1012 close drops a client that does not take it within WS_CLOSE_TIMEOUT too."""

    ping_interval: float | None = None
    ping_timeout: float | None = None
    closed_slow = False
    logged = ""  # the last access-log event of this connection

    def connection_made(self, transport):
        super().connection_made(transport)
        self.heard_at = self.loop.time()
        self.timers: list[asyncio.TimerHandle] = []

    def connection_lost(self, exc):
        for timer in self.timers:
            timer.cancel()
        self._log("disconnected")
        super().connection_lost(exc)
        if self.closed_slow:
            launcher.give_memory_back()

    def data_received(self, data: bytes) -> None:
        self.heard_at = self.loop.time()  # a pong, or anything else the client says, shows it is still there
        super().data_received(data)

    def handle_connect(self, event):
        super().handle_connect(event)
        if not self.close_sent:  # not refused by websockets itself (a malformed handshake)
            self._log("connecting")

    async def send(self, message):
        kind = message["type"]
        if self.handshake_complete and (self.close_sent or self.transport.is_closing()) \
                and kind in ("websocket.send", "websocket.close"):
            return
        answered = self.handshake_complete
        await super().send(message)
        if not answered and self.handshake_complete:
            if kind == "websocket.accept":
                self._log("connected")
                if self.ping_interval:
                    self._later(self.ping_interval, self._ping)
            else:
                self._log("rejected")
        elif kind == "websocket.close":
            self._log("disconnected")
            self._later(settings.WS_CLOSE_TIMEOUT, self.transport.abort)
        elif kind == "websocket.send" and self.transport.get_write_buffer_size() > settings.WS_MAX_QUEUED_BYTES:
            launcher.logger.warning("WebSocket client reads too slowly: closed with 4008", extra={
                "client": _address(self.client), "held_bytes": self.transport.get_write_buffer_size()})
            self.closed_slow = True
            self.close_with(launcher.SLOW_READER)

    def close_with(self, code: int) -> None:
        """Send the close frame with `code`, tell the application the connection is gone, and drop the client if it
        has not taken the frame WS_CLOSE_TIMEOUT later (which frees what waits in the transport for it)."""
        if self.close_sent or self.transport.is_closing():
            return
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code})
        self.conn.send_close(code)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self._log("disconnected")
        self.transport.close()  # once the buffer has left
        self._later(settings.WS_CLOSE_TIMEOUT, self.transport.abort)

    def shutdown(self) -> None:
        """uvicorn's (1012, or 500 to a handshake not yet answered) through close_with."""
        if self.handshake_complete:
            self.close_with(launcher.RESTARTING)
        else:
            super().shutdown()

    def _ping(self) -> None:
        if self.close_sent or self.transport.is_closing():
            return
        pinged_at = self.loop.time()
        self.conn.send_ping(b"")
        self.transport.write(b"".join(self.conn.data_to_send()))
        if self.ping_timeout:
            self._later(self.ping_timeout, self._pong_due, pinged_at)
        self._later(self.ping_interval, self._ping)

    def _pong_due(self, pinged_at: float) -> None:
        if self.heard_at < pinged_at and not self.transport.is_closing():
            self.transport.abort()  # the consumer gets its websocket.disconnect from connection_lost

    def _log(self, event: str) -> None:
        """daphne's sequence, each event once: connecting, then connected or rejected, then disconnected."""
        if event in _NEXT_EVENTS.get(self.logged, ()):
            self.logged = event
            launcher.log_websocket(event, self.scope["path"], _address(self.scope["client"]))

    def _later(self, delay: float, callback, *args) -> None:
        self.timers = [timer for timer in self.timers if not timer.cancelled() and timer.when() > self.loop.time()]
        self.timers.append(self.loop.call_later(delay, callback, *args))


class DrainingHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the access line of each request, and daphne's engine's drain: after
    SIGTERM every response closes its keep-alive connection (uvicorn would close the idle ones at once, and a request
    already on its way on one would be lost)."""

    draining = False  # set on the class by Server.shutdown

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.heard_at = self.loop.time()

    def data_received(self, data: bytes) -> None:
        self.heard_at = self.loop.time()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:  # a WebSocket upgrade: no cycle of its own
            return
        if DrainingHttpProtocol.draining:
            cycle.keep_alive = False
        cycle.started_at = time.perf_counter()
        cycle.size = 0
        cycle.status = None
        send = cycle.send

        async def logged_send(message):
            if message["type"] == "http.response.start":
                cycle.status = message["status"]
                if DrainingHttpProtocol.draining:
                    cycle.keep_alive = False
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
                if not isinstance(cycle.transport, _HeadHeld):
                    cycle.transport = _HeadHeld(cycle.transport)
                await send(message)
                return
            if message["type"] == "http.response.body":
                cycle.size += len(message.get("body", b""))
            try:
                await send(message)
            finally:
                held = cycle.transport
                if isinstance(held, _HeadHeld):
                    cycle.transport = held.transport
                    held.release()
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                launcher.log_http(cycle.scope["method"], cycle.scope["path"], cycle.status,
                                  time.perf_counter() - cycle.started_at, cycle.size, _address(cycle.scope["client"]))

        cycle.send = logged_send

    def shutdown(self) -> None:
        """An idle connection stays open until its next request is answered, or until the drain ends."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False

    def in_flight(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def quiet(self, now: float) -> bool:
        """Nothing in flight, and no byte for HTTP_SHUTDOWN_IDLE_TIMEOUT: no request is on its way on it."""
        return not self.in_flight() and now - self.heard_at >= settings.HTTP_SHUTDOWN_IDLE_TIMEOUT


class _HeadHeld:
    """A response's transport from its head to its first body part, which leave together in one write: uvicorn
    writes the head as soon as it has it, and two writes cost the server a second system call and the client a
    second wake-up (on loopback the kernel hands the bytes over inside the writer's call). A close first sends what
    is held."""

    __slots__ = ("held", "transport")

    def __init__(self, transport):
        self.transport, self.held = transport, []

    def write(self, data) -> None:
        self.held.append(data)

    def release(self) -> None:
        """Write what is held; to a client already gone, nothing (uvicorn's own sends then write nothing either)."""
        if self.held and not self.transport.is_closing():
            self.transport.write(b"".join(self.held))
        self.held.clear()

    def close(self) -> None:
        self.release()
        self.transport.close()

    def __getattr__(self, name):
        return getattr(self.transport, name)


class Server(uvicorn.Server):
    """uvicorn's Server with the drain of daphne's engine: it stops listening, closes WebSockets with 1012, lets the
    HTTP requests in flight finish and waits for both at most WS_SHUTDOWN_GRACE seconds, then cancels the send
    statements still running in PostgreSQL; the process is gone WS_SHUTDOWN_EXIT_MARGIN seconds later at most."""

    async def shutdown(self, sockets=None):
        DrainingHttpProtocol.draining = True
        launcher.start_watchdog()
        for server in self.servers:
            server.close()
        connections = list(self.server_state.connections)
        websockets = [c for c in connections if isinstance(c, FlowControlledWebSocketProtocol)]
        launcher.log_draining(len(websockets), len(self._requests_in_flight()))
        for connection in connections:
            connection.shutdown()
        # The close frames leave, consumers get their websocket.disconnect (leaving groups, releasing slots), and
        # the requests being served finish.
        await launcher.drain(self._finished, self._requests_in_flight, asyncio.sleep)
        tasks = list(self.server_state.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=settings.WS_SHUTDOWN_CANCEL_WAIT)
        for connection in list(self.server_state.connections):
            connection.transport.close()
        launcher.logger.info("Shutting down: %d application instances cancelled", len(tasks))
        # uvicorn would raise the signal again once serving ends, which kills the process before the pools close;
        # main() exits with 0 instead, as daphne's engine does.
        self._captured_signals.clear()

    def _finished(self) -> bool:
        """No application task is left (each HTTP request and WebSocket has one), nor a WebSocket, nor a kept-alive
        connection that a request may still come on (DrainingHttpProtocol.quiet)."""
        now = asyncio.get_running_loop().time()
        return not self.server_state.tasks and all(
            isinstance(c, DrainingHttpProtocol) and c.quiet(now) for c in self.server_state.connections)

    def _requests_in_flight(self) -> list:
        return [c for c in self.server_state.connections if isinstance(c, DrainingHttpProtocol) and c.in_flight()]


_NEXT_EVENTS = {"": ("connecting",), "connecting": ("connected", "rejected"), "connected": ("disconnected",)}


def _address(client) -> str | None:
    return f"{client[0]}:{client[1]}" if client else None


def arguments(argv=None) -> argparse.Namespace:
    """The flags of daphne's command line that the deployment passes."""
    parser = argparse.ArgumentParser(prog="python -m imserver.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("-b", "--bind", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    parser.add_argument("--proxy-headers", action="store_true",
                        help="take the client's address and scheme from X-Forwarded-For and X-Forwarded-Proto")
    parser.add_argument("--ping-interval", type=float, default=settings.WS_PING_INTERVAL)
    parser.add_argument("--ping-timeout", type=float, default=settings.WS_PING_TIMEOUT)
    parser.add_argument("--websocket-max-message-size", type=int, default=settings.WS_MAX_MESSAGE_BYTES,
                        help="bytes of one incoming WebSocket message past which the connection is closed (1009)")
    parser.add_argument("application", help="the ASGI application, as module:attribute")
    return parser.parse_args(argv)


def main(argv=None):
    """Serve until SIGTERM or SIGINT, then close the database pools and exit (see imserver.server.exit_now)."""
    args = arguments(argv)
    FlowControlledWebSocketProtocol.ping_interval = args.ping_interval or None
    FlowControlledWebSocketProtocol.ping_timeout = args.ping_timeout
    config = uvicorn.Config(
        args.application, host=args.bind, port=args.port, loop="uvloop", http=DrainingHttpProtocol,
        ws=FlowControlledWebSocketProtocol, lifespan="off", log_config=None, access_log=False, server_header=False,
        proxy_headers=args.proxy_headers, forwarded_allow_ips="*" if args.proxy_headers else None,
        ws_max_size=args.websocket_max_message_size or None, timeout_keep_alive=settings.HTTP_KEEPALIVE_TIMEOUT)
    config.load()  # the application, and with it Django's logging
    # uvicorn's own lines at INFO carry WebSocket paths with their query string, which holds a token; the access
    # lines above replace them.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    launcher.logger.info("Serving on http://%s:%d with uvicorn", args.bind, args.port)
    Server(config).run()
    launcher.close_pools()
    launcher.exit_now()
