"""The daphne engine of the server launcher (imserver/server.py, ASGI_SERVER=daphne): daphne with slow WebSocket
readers closed (4008), a graceful SIGTERM (1012 closes, in-flight requests finished, an exit within WS_SHUTDOWN_GRACE +
WS_SHUTDOWN_EXIT_MARGIN) and a JSON access log.

Every override of daphne, autobahn or Twisted internals lives here; tests/deploy/test_server_overrides.py fails when an
upgrade changes what they touch."""
from daphne import server as daphne_server  # isort:skip - installs Twisted's asyncio reactor before anything else

import logging
import sys
import weakref
from collections import deque

from daphne.cli import CommandLineInterface as DaphneCommandLineInterface
from daphne.http_protocol import WebRequest
from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings
from twisted.internet import defer, interfaces, reactor, task
from zope.interface import implementer

from imserver import server as launcher


@implementer(interfaces.IPushProducer)
class FlowControlledWebSocketProtocol(WebSocketProtocol):
    """daphne's WebSocket protocol as the streaming producer of its transport: while the transport's buffer is
    full, outgoing messages wait here, and past WS_MAX_QUEUED_BYTES the connection is closed with 4008.

    Without it Twisted buffers every push to a client that never reads, for as long as it stays connected (73 such
    sockets and 600 pushes took daphne from 175 to 263 MB resident, never given back; 8 sockets and 930 pushes of
    3,000 characters: 117 to 136 MB and growing). With it each holds at most WS_MAX_QUEUED_BYTES plus the
    transport's 64 KiB until autobahn's closing-handshake timeout drops it (the same 8: peak 129 MB, 121 MB after
    the closes, where a run without slow readers ends too)."""

    paused = False
    closed_slow = False

    def connectionMade(self):
        """autobahn's, with this protocol as the transport's producer."""
        self.held: deque[tuple[bytes, tuple, dict]] = deque()
        self.held_bytes = 0
        self.max_held_bytes = settings.WS_MAX_QUEUED_BYTES
        # daphne hands over the transport of the HTTP connection it upgrades, and twisted.web's HTTPChannel
        # registered itself as that transport's producer; a transport takes one (a second raises RuntimeError),
        # so the channel gives way to us. Unregistering none is a no-op.
        self.transport.unregisterProducer()
        self.transport.registerProducer(self, True)
        super().connectionMade()

    def connectionLost(self, reason):
        """autobahn's, then what is held is dropped and a slow reader's backlog goes back to the system."""
        super().connectionLost(reason)
        # Not left to stopProducing: autobahn unregisters us before it drops a connection.
        self._drop_held()
        if self.closed_slow:
            launcher.give_memory_back()

    def pauseProducing(self):
        """The transport's buffer passed its bufferSize: hold outgoing messages from now on."""
        self.paused = True

    def resumeProducing(self):
        """The transport's buffer has drained: send what is held, in order, until it fills again."""
        self.paused = False
        while self.held and not self.paused and self.state == self.STATE_OPEN:
            payload, args, kwargs = self.held.popleft()
            self.held_bytes -= len(payload)
            super().sendMessage(payload, *args, **kwargs)

    def stopProducing(self):
        """The connection is gone: nothing held will ever leave."""
        self._drop_held()

    def sendMessage(self, payload, *args, **kwargs):
        """autobahn's sendMessage (daphne's serverSend calls it), holding whole messages while paused."""
        # Closing (4008, 1012 or the client's close): autobahn would raise Disconnected into the consumer, whose
        # pushes keep coming until its websocket.disconnect, and a consumer that raises never gets that.
        if self.state != self.STATE_OPEN:
            return
        if not self.paused and not self.held:
            return super().sendMessage(payload, *args, **kwargs)
        self.held.append((payload, args, kwargs))
        self.held_bytes += len(payload)
        if self.held_bytes > self.max_held_bytes:
            launcher.logger.warning("WebSocket client reads too slowly: closed with 4008",
                                    extra={"client": self._client(), "held_bytes": self.held_bytes})
            self.closed_slow = True
            self.close_with(launcher.SLOW_READER)

    def close_with(self, code: int):
        """Drop what is held and start the closing handshake with `code`; a peer that does not answer is
        dropped after autobahn's closeHandshakeTimeout, which frees the transport's buffer too."""
        self._drop_held()
        if self.state == self.STATE_OPEN:
            # sendCloseFrame, not sendClose: autobahn's sendClose refuses 1012 (1000 and 3000-4999 only);
            # daphne itself closes with 1011 this way.
            self.sendCloseFrame(code=code)

    def _drop_held(self):
        self.held.clear()
        self.held_bytes = 0

    def _client(self):
        return f"{self.client_addr[0]}:{self.client_addr[1]}" if self.client_addr else None


class AccessLog:
    """daphne's action logger, as records of the `imserver.access` logger: JSON lines like every other log."""

    def __init__(self, stream=None):
        if stream is not None and stream is not sys.stdout:
            # --access-log FILE: the same lines into that file, formatted as the console's are.
            handler = logging.StreamHandler(stream)
            for console in logging.getLogger().handlers[:1]:
                handler.setFormatter(console.formatter)
                handler.filters = list(console.filters)
            launcher.access_logger.addHandler(handler)
            launcher.access_logger.propagate = False

    def __call__(self, protocol, action, details):
        """One line per HTTP request and per WebSocket event."""
        path = str(details.get("path") or "")
        if protocol == "http" and action == "complete":
            launcher.log_http(details["method"], path, details["status"], details["time_taken"], details["size"],
                              details["client"])
        elif protocol == "websocket":
            launcher.log_websocket(action, path, details["client"])


class Server(daphne_server.Server):
    """daphne's Server with the protocol above, JSON access lines, and a graceful shutdown: it stops listening,
    closes WebSockets with 1012, lets in-flight HTTP requests finish (their connections close after the response)
    and waits for both at most WS_SHUTDOWN_GRACE seconds, then cancels the send statements still running in
    PostgreSQL; the process is gone WS_SHUTDOWN_EXIT_MARGIN seconds later at most."""

    draining = False

    def __init__(self, *args, action_logger=None, ready_callable=None, **kwargs):
        # daphne's command line passes an AccessLogGenerator (NCSA text on a stream) when there is an access log.
        if action_logger is not None:
            action_logger = AccessLog(getattr(action_logger, "stream", None))
        super().__init__(*args, action_logger=action_logger, ready_callable=self._ready, **kwargs)
        self.then_ready = ready_callable
        self.ports = []
        # Each open HTTP connection -> when it last received a byte; weak, for one upgraded to a WebSocket is not
        # told when it is lost.
        self.http_channels = weakref.WeakKeyDictionary()

    def _ready(self):
        # run() calls this once its factories exist and before the reactor runs: where our protocol goes in.
        self.ws_factory.protocol = FlowControlledWebSocketProtocol
        # A peer that does not answer our close (4008, 1012) is dropped after this: autobahn's default is 1 s.
        # A protocol failure (a message over --websocket-max-message-size, a bad frame) closes with its code (1009,
        # 1002) as uvicorn's engine does, instead of autobahn's default of dropping the TCP connection (1006).
        self.ws_factory.setProtocolOptions(closeHandshakeTimeout=settings.WS_CLOSE_TIMEOUT, failByDrop=False)
        # From verbosity 2 on, Twisted's own access line (full URI: the query string and its token) reaches the
        # log too; the JSON line of AccessLog replaces it.
        self.http_factory.log = lambda request: None
        build = self.http_factory.buildProtocol
        self.http_factory.buildProtocol = lambda addr: self._heard(build(addr))
        if self.then_ready is not None:
            self.then_ready()

    def listen_success(self, port):
        """daphne keeps the addresses only; shutdown needs the listening ports themselves."""
        self.ports.append(port)
        return super().listen_success(port)

    async def handle_reply(self, protocol, message):
        """daphne's; while draining, each HTTP response also closes its keep-alive connection, so that the client
        sends its next request to another server instead of to this one, about to exit."""
        if self.draining and message["type"] == "http.response.start" and isinstance(protocol, WebRequest):
            if protocol.channel is not None:
                protocol.channel.persistent = False  # Twisted closes the connection once this response is done
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        return await super().handle_reply(protocol, message)

    def kill_all_applications(self):
        """daphne's before-shutdown trigger (Twisted waits for the Deferred), preceded by the drain."""
        return defer.Deferred.fromCoroutine(self._shut_down())

    async def _shut_down(self):
        self.draining = True
        launcher.start_watchdog()
        try:
            await defer.DeferredList([defer.maybeDeferred(port.stopListening) for port in self.ports])
            sockets = [protocol for protocol in list(self.connections)
                       if isinstance(protocol, FlowControlledWebSocketProtocol)
                       and protocol.state == protocol.STATE_OPEN]
            launcher.log_draining(len(sockets), len(self._requests_in_flight()))
            for protocol in sockets:
                protocol.close_with(launcher.RESTARTING)
            # The close frames must leave before Twisted's shutdown tears the transports down, consumers get their
            # websocket.disconnect (leaving groups, releasing slots), and requests being served finish, before
            # daphne cancels what is left.
            await launcher.drain(
                lambda: all(self._finished(protocol) for protocol in sockets) and not self._requests_in_flight()
                and self._http_quiet(),
                self._requests_in_flight, lambda seconds: task.deferLater(reactor, seconds))
        finally:
            # daphne's kill_all_applications reads every entry's application_instance, which the request that
            # upgraded to a WebSocket never has: within a second of an upgrade it raised KeyError and cancelled
            # nothing. Such entries are finished; daphne's application_checker drops them the same way.
            for protocol, details in list(self.connections.items()):
                if "disconnected" in details and "application_instance" not in details:
                    del self.connections[protocol]
            await super().kill_all_applications()

    def _heard(self, channel):
        """Note when each HTTP connection last received a byte, for the drain (_http_quiet)."""
        received, lost = channel.dataReceived, channel.connectionLost

        def data_received(data):
            self.http_channels[channel] = reactor.seconds()
            received(data)

        def connection_lost(reason):
            self.http_channels.pop(channel, None)
            lost(reason)

        channel.dataReceived, channel.connectionLost = data_received, connection_lost
        self.http_channels[channel] = reactor.seconds()
        return channel

    def _http_quiet(self) -> bool:
        """No kept-alive connection has received a byte for HTTP_SHUTDOWN_IDLE_TIMEOUT: no request is on its way on
        one (a request that comes is answered, and its connection closed). One upgraded to a WebSocket hears nothing
        more here: it counts as quiet once its last HTTP byte is that old."""
        now = reactor.seconds()
        return all(now - heard >= settings.HTTP_SHUTDOWN_IDLE_TIMEOUT for heard in self.http_channels.values())

    def _requests_in_flight(self) -> list:
        # daphne adds a WebRequest when its request arrives and marks it disconnected once the response is sent.
        return [protocol for protocol, details in self.connections.items()
                if isinstance(protocol, WebRequest) and "disconnected" not in details]

    def _finished(self, protocol) -> bool:
        details = self.connections.get(protocol)
        if details is None:
            return True
        instance = details.get("application_instance")
        return "disconnected" in details and (instance is None or instance.done())


class CommandLineInterface(DaphneCommandLineInterface):
    """daphne's command line, every flag as is, starting the Server above; the flags the settings also name take
    their defaults from them, as the uvicorn engine's do."""

    server_class = Server

    def __init__(self):
        super().__init__()
        self.parser.set_defaults(ping_interval=settings.WS_PING_INTERVAL, ping_timeout=settings.WS_PING_TIMEOUT,
                                 websocket_max_message_size=settings.WS_MAX_MESSAGE_BYTES)


def main():
    """Serve until SIGTERM or SIGINT, then close the database pools and exit (see imserver.server.exit_now)."""
    CommandLineInterface.entrypoint()
    launcher.close_pools()
    launcher.exit_now()

