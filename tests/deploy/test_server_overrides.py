"""What imserver/server_daphne.py relies on in daphne, autobahn and Twisted is still there, with the expected shape.

A failure here after an upgrade means: read the new version of the named method, then fix the launcher."""
import inspect

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.protocol import WebSocketProtocol as AutobahnProtocol
from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.http_protocol import WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.internet import abstract
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web import http

import imserver.server_daphne
from imserver.server_daphne import FlowControlledWebSocketProtocol


def source(function) -> str:
    return inspect.getsource(function)


def ordered(text: str, *parts: str) -> bool:
    positions = [text.find(part) for part in parts]
    return -1 not in positions and positions == sorted(positions)


def test_daphne_cli_builds_server_class_with_an_access_logger():
    run = source(CommandLineInterface.run)
    assert "self.server_class(" in run and "AccessLogGenerator(access_log_stream)" in run
    assert "action_logger=" in run
    stream = object()
    assert AccessLogGenerator(stream).stream is stream
    assert imserver.server_daphne.CommandLineInterface.server_class is imserver.server_daphne.Server


def test_daphne_server_hooks():
    parameters = inspect.signature(Server.__init__).parameters
    assert {"action_logger", "ready_callable"} <= set(parameters)
    run = source(Server.run)
    # The protocol is swapped in from ready_callable: after the factory exists, before the reactor runs.
    assert ordered(run, "self.ws_factory = WebSocketFactory(", "self.ready_callable()", "reactor.run(")
    assert "listener.addCallback(self.listen_success)" in run
    # Twisted's own access line, silenced on daphne's HTTP factory, is written by HTTPFactory.log.
    assert ordered(run, "self.http_factory = HTTPFactory(", "self.ready_callable()")
    assert list(inspect.signature(http.HTTPFactory.log).parameters) == ["self", "request"]
    assert "self.channel.factory.log(self)" in source(http.Request.finish)
    assert 'addSystemEventTrigger("before", "shutdown", self.kill_all_applications)' in run
    assert list(inspect.signature(Server.listen_success).parameters) == ["self", "port"]
    # Shutdown reads daphne's connection table: protocol -> {"disconnected", "application_instance"}.
    assert 'self.connections[protocol]["disconnected"]' in source(Server.protocol_disconnected)
    assert 'self.connections[protocol]["application_instance"]' in source(Server.create_application)
    assert 'details["application_instance"]' in source(Server.kill_all_applications)
    assert 'del self.connections[protocol]' in source(Server.application_checker)


def test_daphne_access_log_details():
    reply = source(WebRequest.handle_reply)
    for key in ('"path"', '"status"', '"method"', '"client"', '"time_taken"', '"size"'):
        assert key in reply
    assert '"path": self.request.path' in source(WebSocketProtocol.onOpen)


def test_daphne_upgrade_hands_the_http_transport_to_the_factory_protocol():
    process = source(WebRequest.process)
    assert ordered(process, "self.server.ws_factory.buildProtocol(", "protocol.makeConnection(transport)")
    factory = WebSocketFactory(object())
    assert factory.protocol is WebSocketProtocol
    factory.protocol = FlowControlledWebSocketProtocol
    assert isinstance(factory.buildProtocol(None), FlowControlledWebSocketProtocol)
    # twisted.web's channel is still the transport's producer when daphne moves the transport.
    channel, transport = http.HTTPChannel(), StringTransport()
    channel.makeConnection(transport)
    assert transport.producer is channel
    channel.setTimeout(None)


def test_daphne_websocket_protocol_paths():
    assert "self.sendMessage(" in source(WebSocketProtocol.serverSend)
    on_close = source(WebSocketProtocol.onClose)
    assert "self.server.protocol_disconnected(self)" in on_close and '"websocket.disconnect"' in on_close
    assert "self.sendCloseFrame(code=1011)" in source(WebSocketProtocol.handle_exception)


def test_autobahn_shapes():
    assert list(inspect.signature(AutobahnProtocol.sendMessage).parameters) == [
        "self", "payload", "isBinary", "fragmentSize", "sync", "doNotCompress"]
    assert list(inspect.signature(AutobahnProtocol.sendCloseFrame).parameters)[:2] == ["self", "code"]
    assert "3000 <= code <= 4999" in source(AutobahnProtocol.sendClose)  # why 1012 goes through sendCloseFrame
    assert "self.unregisterProducer()" in source(AutobahnProtocol.dropConnection)  # why connectionLost drops
    assert {AutobahnProtocol.STATE_OPEN, AutobahnProtocol.STATE_CLOSING, AutobahnProtocol.STATE_CLOSED} == {3, 2, 0}
    # A peer that never answers a close is dropped after this many seconds, which frees its buffer.
    assert WebSocketServerFactory().closeHandshakeTimeout > 0
    assert "onCloseHandshakeTimeout" in source(AutobahnProtocol.sendCloseFrame)


class Descriptor(abstract.FileDescriptor):
    """A transport's buffering and producer logic, without a socket or a reactor."""

    def __init__(self):
        super().__init__()
        self.connected = True

    def startWriting(self):
        pass

    def stopWriting(self):
        pass

    def stopReading(self):
        pass

    def writeSomeData(self, data):
        return len(data)


class Producer:
    def __init__(self):
        self.calls = []

    def pauseProducing(self):
        self.calls.append("pause")

    def resumeProducing(self):
        self.calls.append("resume")

    def stopProducing(self):
        self.calls.append("stop")


def test_twisted_transport_flow_control():
    transport, producer = Descriptor(), Producer()
    transport.registerProducer(Producer(), True)  # as twisted.web's HTTPChannel does
    with pytest.raises(RuntimeError):
        transport.registerProducer(producer, True)
    transport.unregisterProducer()
    transport.registerProducer(producer, True)
    transport.write(b"x" * transport.bufferSize)
    assert producer.calls == []
    transport.write(b"x")
    assert producer.calls == ["pause"]
    transport.doWrite()  # the buffer drains
    assert producer.calls == ["pause", "resume"]
    transport.connectionLost(Failure(ConnectionError()))
    assert producer.calls == ["pause", "resume", "stop"]


# --- uvicorn (imserver/server_uvicorn.py) ---------------------------------------------------------------------------


def test_uvicorn_server_hooks():
    import uvicorn
    from uvicorn.server import ServerState

    # Our shutdown replaces uvicorn's, which serving awaits after its main loop; the signals it captured are
    # raised again when serving ends unless the list is emptied.
    assert ordered(source(uvicorn.Server._serve), "await self.main_loop()", "await self.shutdown(sockets=sockets)")
    assert "signal.raise_signal(captured_signal)" in source(uvicorn.Server.capture_signals)
    assert "self._captured_signals.append(sig)" in source(uvicorn.Server.handle_exit)
    assert "self.servers" in source(uvicorn.Server.startup)
    state = ServerState()
    assert isinstance(state.connections, set) and isinstance(state.tasks, set)
    # Protocol classes go in as they are; the application is loaded before serving.
    config = source(uvicorn.Config.load)
    assert "self.http_protocol_class = self.http" in config and "self.ws_protocol_class = self.ws" in config
    assert "if not config.loaded:" in source(uvicorn.Server._serve)


def test_uvicorn_httptools_protocol_paths():
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

    headers_complete = source(HttpToolsProtocol.on_headers_complete)
    # The cycle of a request is made with the protocol's scope, and its task reads cycle.send only once it runs.
    assert ordered(headers_complete, "self.cycle = RequestResponseCycle(", "scope=self.scope",
                   "self.loop.create_task(self.cycle.run_asgi(app))")
    assert "self.scope, self.receive, self.send" in source(RequestResponseCycle.run_asgi)
    send = source(RequestResponseCycle.send)
    assert "if not self.keep_alive:" in send and "self.transport.close()" in send
    assert "self.response_complete = True" in send
    # Head and body are written through the cycle's own transport attribute, which _HeadHeld stands in for.
    assert "self.transport = transport" in source(RequestResponseCycle.__init__)
    assert 'self.transport.write(b"".join(content))' in send and "self.transport.write(body)" in send
    # uvicorn's own shutdown, which ours replaces: it closes idle keep-alive connections at once.
    assert "self.transport.close()" in source(HttpToolsProtocol.shutdown)


def test_uvicorn_websocket_protocol_paths():
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.server import ServerProtocol

    init = source(WebSocketsSansIOProtocol.__init__)
    for attribute in ("self.queue", "self.handshake_initiated", "self.handshake_complete", "self.close_sent",
                      "self.conn = ServerProtocol("):
        assert attribute in init
    assert '"client": self.client' in source(WebSocketsSansIOProtocol.handle_connect)
    assert "self.loop.create_task(self.run_asgi())" in source(WebSocketsSansIOProtocol.handle_connect)
    send = source(WebSocketsSansIOProtocol.send)
    # Writes go straight to the transport, never waiting for the client: why the backlog is bounded here.
    assert "self.transport.write(b\"\".join(output))" in send and "drain" not in send
    assert '"Unexpected ASGI message' in send  # why sends after a close are dropped before uvicorn sees them
    # No pings of its own: ours are the only ones.
    assert "send_ping" not in inspect.getsource(inspect.getmodule(WebSocketsSansIOProtocol))
    for method in ("send_close", "send_ping", "data_to_send"):
        assert callable(getattr(ServerProtocol, method))
